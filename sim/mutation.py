"""Mutation testing: how many realistic RTL bugs the regression catches (``npugen verify --mutants``).

The method of YosysHQ's mcy (https://github.com/YosysHQ/mcy): Yosys' ``mutate`` pass samples N
single-bit faults from the design's netlist, evenly over its cells, source lines and signals,
and each is put into the netlist behind a selector, so one simulator build serves every mutant:

1. The design's Verilog is emitted as ``npugen generate`` emits it, with Amaranth's ``src``
   attributes kept (:func:`npugen.hw.emit.annotated_verilog`; without them it is the emitted file
   byte for byte), so every mutant names the generator's Python line it comes from.
2. Yosys: ``read_verilog``, ``prep -flatten``, ``mutate -list N -seed S`` over the top's cells
   (for the ``npu`` top, the GEMM engine's: the softmax and attention units inside it are
   graded through their own tops), then ``mutate -ctrl mutsel W i`` for each mutant ``i`` (1..N)
   and ``write_verilog``. A wrapper module with the top's name and ports drives ``mutsel`` from
   the ``+npugen_mutant=<i>`` plusarg (0: the unmutated design).
3. The regression's fast tests (the bench of the top, as ``npugen verify`` runs it, without
   ``--full``) run first on mutant 0, which must pass every test; then on each mutant: the
   quickest test alone, then the others in one simulator run (a fresh simulator per test would
   cost more than most tests). A failing test *kills* the mutant (the report names the first
   failing test, quickest first); when all pass, it *survived*. A mutant whose run exceeds its time limit is killed by ``timeout`` (the
   regression would hang). Mutants run in parallel subprocesses.

Mutation kinds (Yosys ``mutate -mode``): ``inv`` inverts one bit of a cell's port; ``const0`` and
``const1`` tie it to 0 or 1; ``cnot0`` and ``cnot1`` invert it when another bit of the same port
(``ctrlbit``) is 0 or 1.

The score is killed / mutants. A surviving mutant is either *equivalent* (no input sequence
tells it from the design, for example a bit that no output depends on) or a gap in the
regression; ``docs/verification.md`` triages the survivors of the reference campaigns.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from npugen.hw.errors import CheckFailed, InputError

__all__ = ["KINDS", "BENCHES", "Mutant", "Outcome", "CampaignError", "campaign", "write_report",
           "markdown"]

#: What each ``mutate -mode`` does to the chosen bit.
KINDS = {
    "inv": "bit inverted",
    "const0": "bit tied to 0",
    "const1": "bit tied to 1",
    "cnot0": "bit inverted when bit {ctrlbit} of the port is 0",
    "cnot1": "bit inverted when bit {ctrlbit} of the port is 1",
}

#: The cocotb bench that grades each top (the one ``npugen verify`` and the tests run).
BENCHES = {
    "npu": "npugen.sim.benches.gemm_bench",
    "softmax": "npugen.sim.benches.softmax_bench",
    "attention": "npugen.sim.benches.attention_bench",
}

#: The plusarg that selects the mutant (0: none).
PLUSARG = "npugen_mutant"

#: A mutant's time limit: this many times the unmutated run of the tests it needs, plus
#: :data:`TIMEOUT_SLACK_S` (a mutant that makes a bench wait for its simulated-time limits
#: runs longer than the design, but not without bound).
TIMEOUT_FACTOR = 6
TIMEOUT_SLACK_S = 60.0


class CampaignError(CheckFailed, RuntimeError):
    """The campaign cannot grade the regression: the unmutated netlist fails a test, or Yosys
    failed. The message is one line and names the log."""


@dataclass(frozen=True)
class Mutant:
    """One mutation, as ``mutate -list`` describes it.

    Attributes
    ----------
    index : int
        1..N, the value of ``mutsel`` that enables it.
    kind : str
        A key of :data:`KINDS`.
    cell, port : str
        The flattened netlist cell and its port.
    portbit : int
        The bit of the port.
    ctrlbit : int or None
        The controlling bit for ``cnot0``/``cnot1``.
    wire : str or None
        The netlist signal on that port (``engine.requant.prod_1``), with ``wirebit``.
    wirebit : int or None
    src : tuple of str
        Source locations: ``hw/<file>.py:<line>`` (the generator) and ``<name>.src.v:<line>``
        (the annotated Verilog).
    command : str
        The Yosys ``mutate`` arguments.
    """

    index: int
    kind: str
    cell: str
    port: str
    portbit: int
    ctrlbit: int | None
    wire: str | None
    wirebit: int | None
    src: tuple[str, ...]
    command: str
    python: str | None = None

    @property
    def location(self) -> str:
        """The generator's Python line (:func:`python_source`) when known, else the first
        source location."""
        return self.python or (list(self.src) or ["?"])[0]

    @property
    def verilog(self) -> str | None:
        """The line of the annotated Verilog (``<name>.src.v:<line>``) the cell comes from."""
        v = [s for s in self.src if _VSRC_RE.match(s)]
        return v[0].rsplit(".", 2)[0] if v else None

    @property
    def scope(self) -> str:
        """The instance the cell sits in (``engine.requant``), from its flattened name."""
        if self.cell.startswith("$flatten"):
            return ".".join(re.findall(r"\\([^.\\$]+)\.", self.cell)) or "(top)"
        return self.cell.rsplit(".", 1)[0] if "." in self.cell.lstrip("\\") else "(top)"

    @property
    def signal(self) -> str:
        """``wire[bit]``, or ``cell.port[bit]`` when the port has no named wire."""
        if self.wire is not None:
            return f"{self.wire}[{self.wirebit}]"
        return f"{self.cell}.{self.port}[{self.portbit}]"

    @property
    def description(self) -> str:
        """The kind in words (:data:`KINDS`)."""
        return KINDS.get(self.kind, self.kind).format(ctrlbit=self.ctrlbit)


@dataclass
class Outcome:
    """What the regression did with one mutant.

    Attributes
    ----------
    mutant : Mutant
    status : {"killed", "survived"}
    killed_by : str or None
        The first failing test, ``"timeout"``, or ``"simulator"`` (crashed without results).
    tests_run : int
        Tests run on it.
    seconds : float
        Wall-clock time of its run.
    """

    mutant: Mutant
    status: str
    killed_by: str | None
    tests_run: int
    seconds: float


# --------------------------------------------------------------------------------------------
# mutant list and netlist

_INT_OPTS = {"portbit", "ctrlbit", "wirebit"}


def parse_mutation(index: int, line: str) -> Mutant:
    """A :class:`Mutant` from one line of ``mutate -list`` output.

    Raises
    ------
    ValueError
        If the line is not a ``mutate -mode ...`` command with a cell and a port.
    """
    words = shlex.split(line, posix=False)
    if words[:1] != ["mutate"] or len(words) % 2 != 1:
        raise ValueError(f"not a mutate command: {line!r}")
    opts: dict[str, list[str]] = {}
    for key, value in zip(words[1::2], words[2::2]):
        if not key.startswith("-"):
            raise ValueError(f"not a mutate command: {line!r}")
        opts.setdefault(key[1:], []).append(value)
    try:
        one = {k: (int(v[0]) if k in _INT_OPTS else v[0]) for k, v in opts.items() if k != "src"}
        return Mutant(index=index, kind=one["mode"], cell=one["cell"], port=one["port"],
                      portbit=one["portbit"], ctrlbit=one.get("ctrlbit"), wire=one.get("wire"),
                      wirebit=one.get("wirebit"), src=tuple(opts.get("src", ())),
                      command=" ".join(words[1:]))
    except KeyError as e:
        raise ValueError(f"mutate command without -{e.args[0]}: {line!r}") from None


def _yosys(folder: Path, script: str, name: str) -> None:
    """Run a Yosys script (file ``<name>.ys``) in ``folder``; its log is ``<name>.log``."""
    from npugen.hw.synth.tools import SynthError, run, yowasp

    (folder / f"{name}.ys").write_text(script)
    try:
        run(yowasp("yosys") + ["-q", f"{name}.ys"], folder, f"{name}.log", f"yosys {name}.ys")
    except SynthError as e:
        raise CampaignError(str(e)) from None


#: The cells to mutate per top, as a Yosys selection of the flattened netlist: every cell but
#: the memories (their ports' faults are the memory's own, and Yosys cannot write a memory whose
#: read-port reset is mutated); the GEMM engine's only for the ``npu`` top.
_SELECTION = {"npu": r"c:$flatten\engine.* c:engine.* %u t:$mem_v2 %d",
              "softmax": "t:* t:$mem_v2 %d", "attention": "t:* t:$mem_v2 %d"}


def _wrapper(name: str, ports: dict[str, tuple[str, int]], width: int) -> str:
    """The top-level module ``name``: the ports of the design, the mutated netlist inside, and
    ``mutsel`` from the plusarg."""
    decl, conn = [], []
    for port, (direction, w) in ports.items():
        rng = f"[{w - 1}:0] " if w > 1 else ""
        decl.append(f"  {direction} {rng}{port};")
        conn.append(f"    .{port}({port}),")
    return "\n".join([
        "// npugen mutation campaign: the design with its mutants behind mutsel.",
        f"module {name}({', '.join(ports)});",
        *decl,
        f"  reg [{width - 1}:0] mutsel;",
        "  initial begin",
        f'    if (!$value$plusargs("{PLUSARG}=%d", mutsel)) mutsel = 0;',
        "  end",
        f"  {name}__mutants core (",
        *conn,
        "    .mutsel(mutsel)",
        "  );",
        "endmodule",
        "",
    ])


def prepare(cfg, top: str, n: int, seed: int, work: Path) -> tuple[str, list[Mutant]]:
    """Write the mutated netlist of a design into ``work``; its top module and the mutants.

    Files: ``<name>.src.v`` (the annotated Verilog), ``design.il`` (flattened), ``mutations.txt``,
    ``mutants.v`` (module ``<name>__mutants`` with input ``mutsel``) and ``wrapper.v``.

    Raises
    ------
    CampaignError
        If Yosys fails, or finds no cell to mutate.
    """
    from npugen.hw.emit import verilog_ports, annotated_verilog, strip_src
    from npugen.sim.design import emitted

    ecfg, builder = emitted(cfg, top)
    name = ecfg.name
    text = annotated_verilog(ecfg, builder)
    src = f"{name}.src.v"
    (work / src).write_text(text)
    _yosys(work, "\n".join([
        f"read_verilog {src}",
        f"prep -top {name} -flatten",
        "write_rtlil design.il",
        f"mutate -list {n} -seed {seed} -o mutations.txt {_SELECTION[top]}".rstrip(),
        ""]), "list")
    lines = [ln for ln in (work / "mutations.txt").read_text().splitlines() if ln.strip()]
    if not lines:
        raise CampaignError(f"yosys found no cell to mutate in {name}")
    verilog = text.splitlines()
    mutants = [parse_mutation(i + 1, ln) for i, ln in enumerate(lines)]
    mutants = [replace(m, python=python_source(verilog, m.src)) for m in mutants]
    width = max(1, len(mutants).bit_length())
    _yosys(work, "\n".join([
        "read_rtlil design.il",
        *(f"mutate -ctrl mutsel {width} {m.index} {m.command}"
          for m in mutants),
        f"rename {name} {name}__mutants",
        "write_verilog -noattr mutants.v",
        ""]), "mutate")
    _, ports = verilog_ports(strip_src(text))
    (work / "wrapper.v").write_text(_wrapper(name, ports, width))
    return name, mutants


_HW_SRC_RE = re.compile(r'\(\* src = "(hw/[^"]+)" \*\)')
_VSRC_RE = re.compile(r"^(?P<file>[^:]+\.v):(?P<line>\d+)\.(?P<c0>\d+)-\d+\.(?P<c1>\d+)$")


def python_source(verilog: list[str], src: tuple[str, ...]) -> str | None:
    """The generator's line (``hw/<file>.py:<line>``) behind a mutant, from the annotated Verilog.

    Yosys tags a cell with the Verilog it came from and, when Amaranth said so, the Python line;
    a multiplexer of a process (``$procmux``) has only the Verilog. This follows it: the
    ``(* src *)`` attributes on or above that Verilog line; else the signal named there (a
    declaration), through the register or net it drives (``x <= $10``, ``assign x = $10``), to
    that signal's declaration; else the enclosing module's attribute (the component's
    ``elaborate``). None when nothing is found.

    Parameters
    ----------
    verilog : list of str
        The lines of :func:`npugen.hw.emit.annotated_verilog`.
    src : tuple of str
        The mutant's ``-src`` tags.
    """
    py = [s for s in src if s.startswith("hw/")]
    if py:
        return py[0]
    for tag in src:
        m = _VSRC_RE.match(tag)
        if m is None:
            continue
        n = int(m["line"]) - 1
        if not 0 <= n < len(verilog):
            continue
        start = max(i for i in range(n + 1) if verilog[i].startswith("module ") or i == 0)
        end = next((i for i in range(n, len(verilog)) if verilog[i].startswith("endmodule")),
                   len(verilog))
        body = range(start, end)

        def attrs_above(i: int) -> str | None:
            hit = _HW_SRC_RE.search(verilog[i])
            while hit is None and i > start and verilog[i - 1].lstrip().startswith("(*"):
                i -= 1
                hit = _HW_SRC_RE.search(verilog[i])
            return hit.group(1) if hit else None

        def declaration(name: str) -> str | None:
            decl = re.compile(rf"^\s*(?:reg|wire|input|output)\b[^;]*\s{re.escape(name)}\s*(?:;|=)")
            for i in body:
                if decl.match(verilog[i]):
                    return attrs_above(i)
            return None

        found = attrs_above(n)
        if found:
            return found
        token = verilog[n][int(m["c0"]) - 1:int(m["c1"])].strip()
        if token:
            drive = re.compile(rf"^\s*(?:assign\s+)?(\\?[\w.$]+)\s*(?:<=|=)\s*{re.escape(token)}\s*;")
            for i in body:
                d = drive.match(verilog[i])
                if d and d.group(1) != token:
                    found = declaration(d.group(1))
                    if found:
                        return found
            found = declaration(token)
            if found:
                return found
        hit = _HW_SRC_RE.search(verilog[start - 2] if start >= 2 else "") or \
            _HW_SRC_RE.search(verilog[start - 1] if start >= 1 else "")
        if hit:
            return hit.group(1)
    return None


# --------------------------------------------------------------------------------------------
# running the regression on the mutants

def _base_name(test: str) -> str:
    """``gemm_bench.test_backpressure/pattern=...`` -> ``test_backpressure``."""
    return test.split("/", 1)[0].rsplit(".", 1)[-1]


def _baseline(cfg, top: str, sim: str, seed: int, build_dir, sdir: Path, tdir: Path
              ) -> list[tuple[str, float]]:
    """Run the bench on mutant 0; the tests (base names) and their seconds, quickest first.

    Raises
    ------
    CampaignError
        If a test fails or none ran: the netlist is not the design, or the bench is broken.
    """
    from xml.etree import ElementTree

    from npugen.sim import runner

    run = runner.test(cfg, BENCHES[top], sim=sim, seed=seed, build_dir=build_dir,
                      test_dir=tdir, top=top, plusargs=[f"+{PLUSARG}=0"], sim_build=sdir)
    if not run.ok:
        raise CampaignError(f"the unmutated netlist fails its regression ({run.summary()}); "
                            f"log: {run.log}")
    seconds: dict[str, float] = {}
    for tc in ElementTree.parse(run.results).getroot().iter("testcase"):
        name = _base_name(tc.get("name", ""))
        seconds[name] = seconds.get(name, 0.0) + float(tc.get("time", 0) or 0)
    return sorted(seconds.items(), key=lambda kv: (kv[1], kv[0]))


def _worker(spec: dict) -> dict:
    """Run the tests of one mutant in order until one fails (in a subprocess of its own)."""
    from npugen.hw.config import load_config
    from npugen.sim import runner

    cfg = load_config(spec["config"])
    tdir = Path(spec["test_dir"])
    ran = 0
    tests = spec["tests"]
    for i, group in enumerate((tests[:1], tests[1:])):
        if not group:
            continue
        run = runner.test(cfg, BENCHES[spec["top"]], sim=spec["sim"], testcase=group,
                          seed=spec["seed"], build_dir=spec["build_dir"], test_dir=tdir / str(i),
                          top=spec["top"], plusargs=[f"+{PLUSARG}={spec['mutant']}"],
                          sim_build=spec["sim_build"])
        ran += run.tests
        if not run.ok:
            failed = {_base_name(f) for f in run.failed}
            first = next((t for t in group if t in failed), None)
            return {"killed_by": first or "simulator", "tests_run": ran}
    return {"killed_by": None, "tests_run": ran}


def _run_mutant(spec: dict, limit: float) -> dict:
    """:func:`_worker` in a fresh process (its own session, so a timeout stops the simulator
    too); ``killed_by`` is ``"timeout"`` when ``limit`` seconds ran out."""
    cmd = [sys.executable, "-m", "npugen.sim.mutation", json.dumps(spec)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"killed_by": "timeout", "tests_run": None}
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        # The worker itself failed (not a test: a simulator crash comes back as a result), so
        # the mutant is not graded; counting it as killed would inflate the score.
        tail = (err.strip().splitlines() or ["no output"])[-1]
        raise CampaignError(f"the worker of mutant {spec['mutant']} failed (exit "
                            f"{proc.returncode}): {tail}")
    return json.loads(lines[-1])


def campaign(cfg, *, mutants: int, seed: int = 1, top: str = "npu", sim: str = "icarus",
             jobs: int | None = None, build_dir=None,
             progress: Callable[[str], None] | None = None) -> dict:
    """Grade a design's regression with ``mutants`` mutants of its netlist.

    Parameters
    ----------
    cfg : npugen.hw.config.GemmConfig
        The design.
    mutants : int
        How many mutants to sample (``mutate -list``; Yosys may find fewer), >= 1.
    seed : int
        Seed of the sample and of the benches' random stimuli; the same seed gives the same
        mutants and outcomes.
    top : {"npu", "softmax", "attention"}
        The top to mutate, graded by its bench (:data:`BENCHES`).
    sim : {"verilator", "icarus"}
        The simulator.
    jobs : int or None
        Mutants run in parallel; None for the machine's CPU count.
    build_dir : path-like or None
        The build root (None: ``./build``); the campaign works in
        ``<design_dir>/mutants/<sim>-n<N>-s<seed>/``.
    progress : callable or None
        Called with one line per finished mutant (and per phase).

    Returns
    -------
    dict
        The report (see :func:`write_report`): design, top, simulator, seed, tests, counts,
        score, and every mutant's outcome.

    Raises
    ------
    npugen.hw.errors.InputError
        For ``mutants`` < 1, ``jobs`` < 1, an unknown top or simulator, or a top the
        configuration lacks.
    npugen.hw.tools.ToolNotFound
        If the simulator or Yosys is missing.
    CampaignError
        If Yosys fails or the unmutated netlist fails its regression.
    """
    from npugen.hw.tools import check_simulator
    from npugen.sim import runner
    from npugen.sim.design import emitted

    if not isinstance(mutants, int) or mutants < 1:
        raise InputError(f"--mutants must be a whole number of at least 1, not {mutants!r}")
    if jobs is not None and (not isinstance(jobs, int) or jobs < 1):
        raise InputError(f"--jobs must be a whole number of at least 1, not {jobs!r}")
    if top not in BENCHES:
        raise InputError(f"top must be one of {', '.join(BENCHES)}, not {top!r}")
    check_simulator(sim)
    ecfg, _ = emitted(cfg, top)
    say = progress or (lambda line: None)
    t0 = time.monotonic()
    work = runner.design_dir(cfg, build_dir, top) / "mutants" / f"{sim}-n{mutants}-s{seed}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    say(f"{ecfg.name}: sampling {mutants} mutants with Yosys mutate (seed {seed})")
    name, sample = prepare(cfg, top, mutants, seed, work)
    say(f"{ecfg.name}: compiling the mutated netlist for {runner.SIM_NAMES[sim]}")
    runner.compile_sources(name, sim, [work / "mutants.v", work / "wrapper.v"], work / sim)
    say(f"{ecfg.name}: running the regression on the unmutated netlist")
    tests = _baseline(cfg, top, sim, seed, build_dir, work / sim, work / "runs" / "m0")
    base_s = sum(s for _, s in tests)
    limit = TIMEOUT_FACTOR * base_s + TIMEOUT_SLACK_S
    say(f"{ecfg.name}: {len(tests)} tests pass in {base_s:.0f} s of simulation; "
        f"{len(sample)} mutants, {jobs or os.cpu_count()} at a time")
    cfg_file = runner.design_dir(cfg, build_dir, top) / "config.toml"

    def one(m: Mutant) -> Outcome:
        spec = {"config": str(cfg_file), "top": top, "sim": sim, "seed": seed,
                "build_dir": str(runner._default_build_dir(build_dir)),
                "sim_build": str(work / sim), "tests": [t for t, _ in tests],
                "mutant": m.index, "test_dir": str(work / "runs" / f"m{m.index}")}
        t = time.monotonic()
        r = _run_mutant(spec, limit)
        status = "survived" if r["killed_by"] is None else "killed"
        if status == "killed":
            shutil.rmtree(work / "runs" / f"m{m.index}", ignore_errors=True)
        return Outcome(m, status, r["killed_by"], r["tests_run"] or 0, time.monotonic() - t)

    outcomes: list[Outcome] = []
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        for o in pool.map(one, sample):
            outcomes.append(o)
            how = f"killed by {o.killed_by}" if o.status == "killed" else "SURVIVED"
            say(f"[{len(outcomes)}/{len(sample)}] mutant {o.mutant.index} "
                f"({o.mutant.kind} {o.mutant.location}): {how}")
    killed = sum(o.status == "killed" for o in outcomes)
    return {
        "design": ecfg.name,
        "top": top,
        "config_digest": cfg.digest(),
        "simulator": sim,
        "seed": seed,
        "requested": mutants,
        "mutants": len(outcomes),
        "killed": killed,
        "survived": len(outcomes) - killed,
        "score": killed / len(outcomes),
        "tests": [{"name": t, "seconds": round(s, 3)} for t, s in tests],
        "seconds": round(time.monotonic() - t0, 1),
        "outcomes": [{**asdict(o.mutant), "location": o.mutant.location,
                      "verilog": o.mutant.verilog, "scope": o.mutant.scope,
                      "signal": o.mutant.signal, "description": o.mutant.description,
                      "status": o.status, "killed_by": o.killed_by, "tests_run": o.tests_run,
                      "seconds": round(o.seconds, 1)} for o in outcomes],
        "work": str(work),
    }


# --------------------------------------------------------------------------------------------
# reports

def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def markdown(reports: list[dict], command: str | None = None) -> str:
    """The Markdown report of one or more campaigns (one per top): scores, what killed the
    mutants, and every survivor with its source location, kind and signal."""
    out = ["# Mutation campaign", ""]
    if command:
        out += [f"Command: `{command}`", ""]
    out += ["| top | design | simulator | seed | mutants | killed | timeouts | survived | score |"
            " time |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in reports:
        timeouts = sum(o["killed_by"] == "timeout" for o in r["outcomes"])
        out.append(f"| {r['top']} | {r['design']} | {r['simulator']} | {r['seed']} | "
                   f"{r['mutants']} | {r['killed']} | {timeouts} | {r['survived']} | "
                   f"{_pct(r['score'])} | {r['seconds']:.0f} s |")
    out.append("")
    out.append("Score: killed / mutants. A survivor is equivalent (no input sequence tells it "
               "from the design) or a gap in the regression; docs/verification.md triages them.")
    for r in reports:
        out += ["", f"## {r['design']} ({r['top']} top)", ""]
        kills: dict[str, int] = {}
        for o in r["outcomes"]:
            if o["killed_by"]:
                kills[o["killed_by"]] = kills.get(o["killed_by"], 0) + 1
        out.append(f"Netlist, annotated Verilog (`{r['design']}.src.v`, the *Verilog* column's "
                   f"file) and survivors' logs: `{r['work']}`.")
        out.append("")
        out.append("Tests, quickest first, with the mutants each killed first (a test whose "
                   "time is close to another's may swap places between runs): " + ", ".join(
            f"`{t['name']}` ({kills.get(t['name'], 0)})" for t in r["tests"]) +
            "".join(f", {k} ({v})" for k, v in sorted(kills.items())
                    if k in ("timeout", "simulator")) + ".")
        survivors = [o for o in r["outcomes"] if o["status"] == "survived"]
        out += ["", f"Survivors: {len(survivors)}.", ""]
        if survivors:
            out += ["| # | kind | what | location | Verilog | instance | signal |",
                    "|---:|---|---|---|---|---|---|"]
            for o in survivors:
                out.append(f"| {o['index']} | {o['kind']} | {o['description']} | "
                           f"{o['location']} | {o['verilog'] or ''} | {o['scope']} | "
                           f"`{o['signal']}` |")
    return "\n".join(out) + "\n"


def write_report(reports: list[dict], folder, command: str | None = None) -> tuple[Path, Path]:
    """Write ``mutation.json`` and ``mutation.md`` into ``folder`` (made when missing), each
    atomically; their paths.

    ``mutation.json``: ``{"command", "score", "mutants", "killed", "campaigns": [report...]}``,
    each report as :func:`campaign` returns it.
    """
    from npugen.hw.files import write_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = sum(r["mutants"] for r in reports)
    killed = sum(r["killed"] for r in reports)
    data = {"command": command, "mutants": n, "killed": killed,
            "score": killed / n if n else None, "campaigns": reports}
    js, md = folder / "mutation.json", folder / "mutation.md"
    write_atomic(js, (json.dumps(data, indent=1) + "\n").encode())
    write_atomic(md, markdown(reports, command).encode())
    return js, md


if __name__ == "__main__":          # the per-mutant worker (see _run_mutant)
    print(json.dumps(_worker(json.loads(sys.argv[1]))), flush=True)
