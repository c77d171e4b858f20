"""Stream replay: run pre-encoded jobs through a generated design at the simulator's own speed.

The cocotb benches (:mod:`npugen.sim.benches`) move every beat from Python, a few thousand
clock cycles a second; a whole all-MiniLM-L6-v2 sentence is close to a million cycles. This
module runs the same beats without Python in the loop: a generated Verilog harness
(:func:`harness`) instantiates the design's top, reads each input stream's beats from a text
file in the run folder, offers them with ``tvalid`` held high (no backpressure, every sink
always ready: the "as built" cycles of :mod:`npugen.sim.perfmodel`), and writes each output
stream's beats to a file. Python encodes the jobs (:mod:`npugen.sim.driver`) and decodes what
came back; the hardware's status beats carry the cycle counts.

Files, one per stream port ``<port>`` of the top (``s_axis_*`` sources, ``m_axis_*`` sinks):

- ``<port>.txt`` (sources): one beat per line, ``<gate> <hex>``. ``hex`` is the beat's signals
  packed as ``{tuser, tlast, tkeep, tdata}`` (``tdata`` in the low bits; absent signals take no
  bits). The beat is offered once ``gate`` status beats (all ``*status*`` sinks together) have
  come back: :func:`gemm_jobs` gates job ``i``'s beats on ``i`` statuses, as the cocotb runner
  :mod:`npugen.sim.benches.run_jobs` submits a job after the previous one's status;
  :func:`attention_jobs` queues every job at once (gate 0), as
  :mod:`npugen.sim.benches.run_attention` does.
- ``<port>.out`` (sinks): one line per accepted beat, the same packing, in hex.
- ``replay.done``: ``ok <cycles>`` once the expected number of status beats arrived (plus 16
  cycles), or ``timeout <cycles> <statuses>`` when the cycle budget ran out first: a hang of
  the design is an error, never a hang of the run.

The harness is compiled once per design and simulator (:func:`build`, cached beside the cocotb
builds of :func:`npugen.sim.runner.build`), Verilator as a ``--binary`` and Icarus as a
``.vvp``; each :func:`replay` is one process start on files. Tests check that a replay returns
what the cocotb runner returns, values and cycles (tests/test_replay.py).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from npugen.hw.errors import InputError
from npugen.hw.tools import check_simulator, icarus_bin, verilator_bin
from npugen.sim import runner
from npugen.sim.driver import (Beat, GemmJob, decode_results, decode_rows, decode_status,
                               encode_attention, encode_many)

__all__ = ["Port", "stream_ports", "harness", "build", "replay", "ReplayError", "gemm_jobs",
           "attention_jobs", "HARNESS_TOP"]

_log = logging.getLogger("npugen.sim.runner")

#: Module name of the generated harness.
HARNESS_TOP = "npugen_replay"

#: Reset cycles before the first beat is offered (as :class:`npugen.sim.benches.tb.TB`).
RESET_CYCLES = 8

#: Cycles run after the last expected status beat, so that nothing in flight is cut off.
TAIL_CYCLES = 16

#: Signals of a stream port in packing order, low bits first.
_FIELDS = ("tdata", "tkeep", "tlast", "tuser")

#: Verilator arguments of the harness build (warnings are :func:`npugen.hw.emit.lint`'s job).
VERILATOR_ARGS = ("--cc", "--exe", "--build", "-Wno-fatal", "-Wno-lint", "-Wno-style",
                  "--x-assign", "fast", "--x-initial", "fast", "-O3", "--build-jobs", "2")

#: The C++ main of the Verilator build: toggles the clock until ``$finish``.
_MAIN_CPP = """\
// npugen stream replay: clock for the Verilator build of the harness (npugen.sim.replay).
#include "V{top}.h"
#include "verilated.h"
int main(int argc, char** argv) {{
    VerilatedContext ctx;
    ctx.commandArgs(argc, argv);
    V{top} top{{&ctx}};
    top.aclk = 0;
    while (!ctx.gotFinish()) {{
        top.eval();
        ctx.timeInc(5);
        top.aclk = !top.aclk;
    }}
    top.final();
    return 0;
}}
"""

#: C++ optimisation of the harness build: the design is compiled once and run for ~10^6 cycles.
VERILATOR_OPT = tuple(v for v in runner.VERILATOR_MAKE_VARS if not v.startswith("OPT_FAST=")) \
    + ("OPT_FAST=-O1", "OPT_SLOW=-O0", "OPT_GLOBAL=-O1")


class ReplayError(RuntimeError):
    """A replay failed: the simulator crashed, timed out, or returned malformed beats."""


@dataclass(frozen=True)
class Port:
    """One AXI4-Stream port of a top.

    Attributes
    ----------
    name : str
        The prefix, e.g. ``"s_axis_act"``.
    source : bool
        True for an input stream (``s_axis_*``, the harness drives it), False for an output.
    widths : tuple of (str, int)
        The payload signals present, in packing order (:data:`_FIELDS`), with their widths in
        bits.
    """

    name: str
    source: bool
    widths: tuple[tuple[str, int], ...]

    @property
    def bits(self) -> int:
        """Packed payload width, bits."""
        return sum(w for _, w in self.widths)

    def offset(self, field: str) -> int:
        """Bit offset of ``field`` in the packed beat."""
        o = 0
        for f, w in self.widths:
            if f == field:
                return o
            o += w
        raise KeyError(field)

    def width(self, field: str) -> int:
        """Width of ``field`` in bits (0 when absent)."""
        return dict(self.widths).get(field, 0)

    @property
    def status(self) -> bool:
        """A status sink: its beats count toward the gates and the end of the run."""
        return not self.source and "status" in self.name


_DECL = re.compile(r"^\s*(input|output)\s*(?:\[(\d+):0\])?\s*(\w+)\s*;", re.M)


def stream_ports(verilog: str, top: str) -> list[Port]:
    """The stream ports of module ``top`` in a generated Verilog file.

    Parameters
    ----------
    verilog : str
        The design's Verilog (Amaranth's output: one ``input``/``output`` declaration per line).
    top : str
        The module.

    Returns
    -------
    list of Port
        In the order of the module's declarations.

    Raises
    ------
    InputError
        When the module is missing, or has a port other than ``aclk``, ``aresetn`` and
        ``{s,m}_axis_<name>_{tdata,tkeep,tlast,tuser,tvalid,tready}``.
    """
    m = re.search(rf"^module {re.escape(top)}\(.*?^endmodule", verilog, re.M | re.S)
    if m is None:
        raise InputError(f"module {top!r} not found in the Verilog")
    ports: dict[str, dict[str, int]] = {}
    for direction, msb, name in _DECL.findall(m.group(0)):
        if name in ("aclk", "aresetn"):
            continue
        pm = re.fullmatch(r"([sm]_axis_\w+)_(tdata|tkeep|tlast|tuser|tvalid|tready)", name)
        if pm is None:
            raise InputError(f"port {name!r} of {top} is not an AXI4-Stream signal")
        ports.setdefault(pm.group(1), {})[pm.group(2)] = int(msb) + 1 if msb else 1
    out = []
    for name, sigs in ports.items():
        if "tvalid" not in sigs or "tready" not in sigs or "tdata" not in sigs:
            raise InputError(f"stream {name} of {top} lacks tdata, tvalid or tready")
        out.append(Port(name, name.startswith("s_axis_"),
                        tuple((f, sigs[f]) for f in _FIELDS if f in sigs)))
    return out


def _vec(width: int) -> str:
    return f"[{width - 1}:0] " if width > 1 else ""


def harness(top: str, ports: Sequence[Port]) -> str:
    """Verilog-2005 text of the replay harness around module ``top`` (see the module doc).

    Plusargs: ``+budget=N`` (cycles after reset before giving up, default 1,000,000) and
    ``+statuses=N`` (status beats that end the run, default 0).
    """
    if not any(p.status for p in ports):
        raise InputError(f"{top} has no status stream to end a replay on")
    L = [f"// npugen stream replay harness around {top} (npugen.sim.replay). Test code, not",
         "// part of the design: reads <port>.txt, writes <port>.out and replay.done.",
         "`timescale 1ns/1ps",
         "// The clock: from the C++ main under Verilator (no --timing), from a delay under Icarus.",
         "`ifdef VERILATOR", f"module {HARNESS_TOP} (input aclk);", "`else",
         f"module {HARNESS_TOP};", "  reg aclk = 1'b0;", "  always #5 aclk = ~aclk;", "`endif",
         "  reg aresetn = 1'b0;", "  reg [3:0] reset_count = 4'd0;",
         "  integer cycle = 0;", "  integer budget;", "  integer want;", "  integer tail = 0;",
         "  integer done_fd;"]
    counts = [f"{p.name}_count" for p in ports if p.status]
    L += [f"  reg [31:0] {c} = 0;" for c in counts]
    L.append(f"  wire [31:0] statuses = {' + '.join(counts)};")
    conns = [".aclk(aclk)", ".aresetn(aresetn)"]
    for p in ports:
        n, w = p.name, p.bits
        for f, fw in p.widths:
            L.append(f"  wire {_vec(fw)}{n}_{f};")
            conns.append(f".{n}_{f}({n}_{f})")
        L.append(f"  wire {n}_tvalid, {n}_tready;")
        conns += [f".{n}_tvalid({n}_tvalid)", f".{n}_tready({n}_tready)"]
        L.append(f"  integer {n}_fd;")
        if p.source:
            L += [f"  reg [{w - 1}:0] {n}_beat, {n}_nbeat;",
                  f"  integer {n}_gate, {n}_ngate, {n}_rc;",
                  f"  reg {n}_have;",
                  f"  assign {{{', '.join(f'{n}_{f}' for f, _ in reversed(p.widths))}}} = "
                  f"{n}_beat;",
                  f"  assign {n}_tvalid = aresetn && {n}_have && statuses >= {n}_gate;",
                  "  initial begin",
                  f"    {n}_fd = $fopen(\"{n}.txt\", \"r\");",
                  f"    {n}_rc = $fscanf({n}_fd, \"%d %h\\n\", {n}_gate, {n}_beat);",
                  f"    {n}_have = {n}_rc == 2;",
                  "  end",
                  f"  always @(posedge aclk) if ({n}_tvalid && {n}_tready) begin",
                  f"    {n}_rc = $fscanf({n}_fd, \"%d %h\\n\", {n}_ngate, {n}_nbeat);",
                  f"    {n}_have <= {n}_rc == 2;",
                  f"    {n}_gate <= {n}_ngate;",
                  f"    {n}_beat <= {n}_nbeat;",
                  "  end"]
        else:
            fields = ", ".join(f"{n}_{f}" for f, _ in reversed(p.widths))
            L += [f"  assign {n}_tready = aresetn;",
                  f"  initial {n}_fd = $fopen(\"{n}.out\", \"w\");",
                  f"  always @(posedge aclk) if ({n}_tvalid && {n}_tready)",
                  f"    $fwrite({n}_fd, \"%h\\n\", {{{fields}}});"]
            if p.status:
                L.append(f"  always @(posedge aclk) if ({n}_tvalid && {n}_tready) "
                         f"{n}_count <= {n}_count + 1;")
    L += [f"  {top} dut (", "    " + ",\n    ".join(conns), "  );",
          "  initial begin",
          "    if (!$value$plusargs(\"budget=%d\", budget)) budget = 1000000;",
          "    if (!$value$plusargs(\"statuses=%d\", want)) want = 0;",
          "  end",
          f"  always @(posedge aclk) if (reset_count != 4'd{RESET_CYCLES}) begin",
          "    reset_count <= reset_count + 4'd1;",
          f"    aresetn <= reset_count == 4'd{RESET_CYCLES - 1};",
          "  end",
          "  always @(posedge aclk) if (aresetn) begin",
          "    cycle <= cycle + 1;",
          "    if (statuses >= want) tail <= tail + 1;",
          f"    if (tail == {TAIL_CYCLES} || cycle == budget) begin",
          "      done_fd = $fopen(\"replay.done\", \"w\");",
          "      if (tail == %d) $fwrite(done_fd, \"ok %%0d\\n\", cycle);" % TAIL_CYCLES,
          "      else $fwrite(done_fd, \"timeout %0d %0d\\n\", cycle, statuses);",
          "      $fclose(done_fd);"]
    L += [f"      $fclose({p.name}_fd);" for p in ports if not p.source]
    L += ["      $finish;", "    end", "  end", "endmodule", ""]
    return "\n".join(L)


def _design(cfg, build_dir) -> tuple[Path, Path, str]:
    """The design folder, its Verilog (generated when stale) and the top's module name."""
    ecfg, _ = runner.emitted(cfg, "npu")
    ddir = runner.design_dir(cfg, build_dir)
    with runner._locked(ddir / ".lock"):
        rtl, _ = runner._ensure_rtl(cfg, ddir, "npu")
    return ddir, rtl, ecfg.name


def build(cfg, sim: str = "verilator", build_dir=None) -> tuple[Path, list[Port]]:
    """Compile the replay harness around a configuration's top, or reuse the cached build.

    Parameters
    ----------
    cfg : hw.config.GemmConfig
    sim : {"verilator", "icarus"}
    build_dir : path-like or None
        The build root (default ``./build``); the harness goes to
        ``<design_dir>/replay-<sim>/`` (:func:`npugen.sim.runner.design_dir`).

    Returns
    -------
    (pathlib.Path, list of Port)
        The build folder and the top's stream ports.

    Raises
    ------
    npugen.hw.tools.ToolNotFound
        If the simulator is not installed.
    npugen.sim.runner.SimError
        If the build fails (naming its log).
    """
    check_simulator(sim)
    ddir, rtl, top = _design(cfg, build_dir)
    ports = stream_ports(rtl.read_text(), top)
    text = harness(top, ports)
    args = VERILATOR_ARGS + VERILATOR_OPT if sim == "verilator" else ("-g2005",)
    digest = hashlib.sha256(rtl.read_bytes() + text.encode() + repr(args).encode()
                            + _MAIN_CPP.encode()
                            + b"".join(p.read_bytes() for p in runner.sim_models(rtl))).hexdigest()
    sdir = ddir / f"replay-{sim}"
    with runner._locked(ddir / ".lock"):
        if (sdir / ".built").is_file() and (sdir / ".built").read_text() == digest:
            return sdir, ports
        t0 = time.monotonic()
        _log.info("compiling the replay harness of %s with %s (once per design)", top,
                  runner.SIM_NAMES[sim])
        tmp = Path(tempfile.mkdtemp(prefix=f".replay-{sim}.tmp-", dir=ddir))
        try:
            (tmp / "harness.v").write_text(text)
            log = ddir / f"replay-{sim}.build.log"
            if sim == "verilator":
                from npugen.hw.tools import verilator_env
                (tmp / "main.cpp").write_text(_MAIN_CPP.format(top=HARNESS_TOP))
                cmd = [verilator_bin(), *VERILATOR_ARGS, "--top-module", HARNESS_TOP,
                       "--Mdir", "obj", "-o", "../replay", "main.cpp", "harness.v", str(rtl),
                       *map(str, runner.sim_models(rtl))]
                env = verilator_env()
                env["MAKEFLAGS"] = " ".join(VERILATOR_OPT)
            else:
                cmd = [icarus_bin(), *args, "-s", HARNESS_TOP, "-o", "replay.vvp",
                       "harness.v", str(rtl), *map(str, runner.sim_models(rtl))]
                env = dict(os.environ)
            with open(log, "w") as f:
                rc = subprocess.run(cmd, cwd=tmp, env=env, stdout=f, stderr=subprocess.STDOUT)
            if rc.returncode != 0:
                raise runner.SimError(f"{sim} build of the replay harness of {top} failed; "
                                      f"see {log}")
            log.unlink(missing_ok=True)
            shutil.rmtree(tmp / "obj", ignore_errors=True)
            (tmp / ".built").write_text(digest)
            if sdir.exists():
                shutil.rmtree(sdir)
            os.rename(tmp, sdir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _log.info("built the replay harness of %s for %s in %.1f s", top, sim,
                  time.monotonic() - t0)
    return sdir, ports


def _hex_lines(gates: np.ndarray, words: Sequence[int]) -> str:
    return "".join(f"{int(g)} {w:x}\n" for g, w in zip(gates, words))


def _parse_hex(line: str) -> tuple[int, int]:
    """A sink line's value and the mask of its X/Z bits (Icarus prints ``x``/``z``)."""
    s = line.strip()
    if not re.fullmatch(r"[0-9a-fA-FxXzZ]+", s):
        raise ReplayError(f"malformed beat {s!r}")
    val = int(re.sub(r"[xXzZ]", "0", s), 16)
    xmask = int("".join("f" if c in "xXzZ" else "0" for c in s), 16)
    return val, xmask


def replay(cfg, sources: Mapping[str, tuple[Sequence[int], Sequence[int]]], statuses: int, *,
           sim: str = "verilator", build_dir=None, budget: int | None = None,
           keep: bool = False) -> dict:
    """Run one replay: offer the beats of each source port and collect every sink's beats.

    Parameters
    ----------
    cfg : hw.config.GemmConfig
    sources : mapping of port name to (gates, beats)
        Per source port (a :class:`Port` name such as ``"s_axis_act"``): the gate of each beat
        (status beats to wait for) and the packed beats as Python ints. Ports not given send
        nothing.
    statuses : int
        Status beats that end the run.
    sim, build_dir
        As :func:`build`.
    budget : int, optional
        Cycles after reset before the run is declared hung (default: 40 per source beat plus
        20,000).
    keep : bool
        Keep the run folder (it is removed otherwise).

    Returns
    -------
    dict
        ``sinks``: per sink port a list of (value, X mask) per beat; ``cycles``: the harness's
        cycles after reset; ``seconds``: the simulator's wall time; ``dir``: the run folder
        (removed unless ``keep``).

    Raises
    ------
    InputError
        For a port name the top does not have, or a beat wider than its port.
    ReplayError
        When the simulator fails or the budget runs out before ``statuses`` status beats.
    """
    sdir, ports = build(cfg, sim, build_dir)
    by_name = {p.name: p for p in ports}
    for name, (gates, beats) in sources.items():
        p = by_name.get(name)
        if p is None or not p.source:
            raise InputError(f"the top has no source stream {name!r}; it has "
                             f"{', '.join(q.name for q in ports if q.source)}")
        if len(gates) != len(beats):
            raise InputError(f"{name}: {len(gates)} gates for {len(beats)} beats")
        if any(int(b) >> p.bits for b in beats):
            raise InputError(f"{name}: a beat is wider than the port's {p.bits} bits")
    n_beats = sum(len(b) for _, b in sources.values())
    budget = 40 * n_beats + 20000 if budget is None else int(budget)
    runs = sdir.parent / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    tdir = Path(tempfile.mkdtemp(prefix=f"replay-{sim}-", dir=runs))
    try:
        for p in ports:
            if p.source:
                gates, beats = sources.get(p.name, ((), ()))
                (tdir / f"{p.name}.txt").write_text(_hex_lines(gates, beats))
        plus = [f"+budget={budget}", f"+statuses={int(statuses)}"]
        if sim == "verilator":
            cmd = [str(sdir / "replay"), *plus]
        else:
            cmd = ["vvp", "-n", str(sdir / "replay.vvp"), *plus]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, cwd=tdir, capture_output=True, text=True)
        seconds = time.monotonic() - t0
        done = tdir / "replay.done"
        if proc.returncode != 0 or not done.is_file():
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
            raise ReplayError(f"{sim} replay failed (exit {proc.returncode}): "
                              f"{' | '.join(tail) or 'no output'}")
        word = done.read_text().split()
        if word[0] != "ok":
            raise ReplayError(f"{sim} replay: {word[2]} of {statuses} status beats after "
                              f"{word[1]} cycles (budget {budget}): the design stalled")
        sinks = {p.name: [_parse_hex(s) for s in (tdir / f"{p.name}.out").read_text().split()]
                 for p in ports if not p.source}
        return {"sinks": sinks, "cycles": int(word[1]), "seconds": seconds, "dir": tdir}
    finally:
        if not keep:
            shutil.rmtree(tdir, ignore_errors=True)


def _pack(port: Port, **fields) -> np.ndarray:
    """Pack per-beat field values (Python ints, arrays of objects) into beats."""
    out = None
    for f, _ in port.widths:
        v = fields.get(f)
        if v is None:
            continue
        term = np.asarray([int(x) << port.offset(f) for x in v], dtype=object)
        out = term if out is None else out | term
    return out


def _bytes_to_ints(data: np.ndarray) -> list[int]:
    """Rows of a (beats, bytes) uint8 array as little-endian ints."""
    return [int.from_bytes(r.tobytes(), "little") for r in data]


def _keep_ints(keep: np.ndarray) -> list[int]:
    if keep.shape[1] == 0:
        return [0] * keep.shape[0]
    w = 1 << np.arange(keep.shape[1], dtype=object)
    return [int(x) for x in (keep.astype(object) * w).sum(axis=1)]


def _field(port: Port, value: int, field: str) -> int:
    return (value >> port.offset(field)) & ((1 << port.width(field)) - 1)


def _statuses(port: Port, beats, what: str) -> list:
    out = []
    for v, x in beats:
        if x:
            raise ReplayError(f"{what}: a status beat holds X/Z bits")
        out.append(decode_status(_field(port, v, "tdata")))
    return out


def gemm_jobs(jobs: Sequence[GemmJob], cfg, *, sim: str = "verilator",
              build_dir=None) -> list[tuple[np.ndarray | None, dict]]:
    """GEMM jobs back to back in one replay, as :func:`npugen.sim.run.gemm_many` runs them.

    Job ``i``'s beats are offered once ``i`` status beats came back (the cocotb runner's
    order). Returns per job the decoded ``C`` (None for an ``acc_out`` job) and ``{"cycles",
    "status"}`` (the status beat's cycle count and the decoded beat).

    Raises
    ------
    ValueError
        For a job the hardware cannot run (:func:`npugen.sim.driver.encode_many`).
    ReplayError
        For a failed run, an error status or a result count that does not match the plan.
    """
    streams = encode_many(jobs, cfg)
    _, ports = build(cfg, sim, build_dir)
    P = {p.name: p for p in ports}
    cmd_g, act_g, wgt_g = [], [], []
    cmd_w: list[int] = []
    act_d, act_k, act_l, wgt_d, wgt_k, wgt_l = [], [], [], [], [], []
    for i, s in enumerate(streams):
        cmd_g.append(i)
        cmd_w.append(int(s.cmd))
        for g, d, k, l, st in ((act_g, act_d, act_k, act_l, s.act),
                               (wgt_g, wgt_d, wgt_k, wgt_l, s.wgt)):
            g += [i] * len(st)
            d += _bytes_to_ints(st.data)
            k += _keep_ints(st.keep)
            l += [int(x) for x in st.last]
    srcs = {"s_axis_cmd": (cmd_g, list(_pack(P["s_axis_cmd"], tdata=cmd_w)))}
    for name, g, d, k, l in (("s_axis_act", act_g, act_d, act_k, act_l),
                             ("s_axis_wgt", wgt_g, wgt_d, wgt_k, wgt_l)):
        srcs[name] = (g, list(_pack(P[name], tdata=d, tkeep=k, tlast=l)) if d else [])
    r = replay(cfg, srcs, len(streams), sim=sim, build_dir=build_dir)
    status = _statuses(P["m_axis_status"], r["sinks"]["m_axis_status"], "GEMM replay")
    res_port = P["m_axis_res"]
    res = r["sinks"]["m_axis_res"]
    if len(status) != len(streams) or len(res) != sum(len(s.res) for s in streams):
        raise ReplayError(f"GEMM replay: {len(status)} statuses and {len(res)} result beats "
                          f"for {len(streams)} jobs")
    out, at = [], 0
    for i, (s, st) in enumerate(zip(streams, status)):
        if not st.ok:
            raise ReplayError(f"GEMM replay: job {i}: status {st}")
        beats = []
        for v, x in res[at:at + len(s.res)]:
            if _field(res_port, x, "tkeep") or _field(res_port, x, "tlast"):
                raise ReplayError(f"GEMM replay: job {i}: X/Z in a result beat's tkeep/tlast")
            data = _field(res_port, v, "tdata").to_bytes(res_port.width("tdata") // 8, "little")
            beats.append(Beat(data, _field(res_port, v, "tkeep"),
                              bool(_field(res_port, v, "tlast"))))
        at += len(s.res)
        c = decode_results(beats, s.job, cfg) if len(s.res) else None
        out.append((c, {"cycles": int(st.cycles), "status": st}))
    return out


def attention_jobs(jobs, cfg, *, sim: str = "verilator", build_dir=None,
                   prefix: str = "att_") -> list[tuple[np.ndarray, dict]]:
    """Attention jobs queued back to back in one replay (:mod:`npugen.sim.benches.run_attention`'s
    order) on the attention unit inside the top (ports ``s_axis_att_*``).

    Parameters
    ----------
    jobs : sequence of npugen.sim.driver.AttentionJob
        With ``load_lut`` planned by the caller.
    prefix : str
        The unit's port prefix after ``s_axis_``/``m_axis_``.

    Returns
    -------
    list of (numpy.ndarray, dict)
        Per job the int8 ``(M, d)`` output and ``{"cycles", "status"}``.

    Raises
    ------
    ReplayError
        For a failed run, an error status, or output framing that does not match M rows.
    """
    streams = [encode_attention(j, cfg) for j in jobs]
    _, ports = build(cfg, sim, build_dir)
    P = {p.name: p for p in ports}
    src = {n: ([], {"tdata": [], "tlast": [], "tuser": []}) for n in ("cmd", "param", "q", "k", "v")}
    for s in streams:
        src["cmd"][1]["tdata"].append(int(s.cmd))
        src["param"][1]["tdata"] += [int(w) for w in s.param]
        src["param"][1]["tlast"] += [int(x) for x in s.param_last]
        for n, rs in (("q", s.q), ("k", s.k), ("v", s.v)):
            src[n][1]["tdata"] += _bytes_to_ints(rs.data)
            src[n][1]["tlast"] += [int(x) for x in rs.last]
            if rs.user is not None:
                src[n][1]["tuser"] += [int(x) for x in rs.user]
    srcs = {}
    for n, (_, f) in src.items():
        port = P[f"s_axis_{prefix}{n}"]
        fields = {k: v for k, v in f.items() if v and port.width(k)}
        beats = list(_pack(port, **fields)) if f["tdata"] else []
        srcs[port.name] = ([0] * len(beats), beats)
    r = replay(cfg, srcs, len(streams), sim=sim, build_dir=build_dir)
    status = _statuses(P[f"m_axis_{prefix}status"], r["sinks"][f"m_axis_{prefix}status"],
                       "attention replay")
    o_port = P[f"m_axis_{prefix}o"]
    rows = r["sinks"][f"m_axis_{prefix}o"]
    if len(status) != len(streams) or len(rows) != sum(s.m for s in streams):
        raise ReplayError(f"attention replay: {len(status)} statuses and {len(rows)} output "
                          f"rows for {len(streams)} jobs")
    out, at = [], 0
    nbytes = o_port.width("tdata") // 8
    for i, (s, st) in enumerate(zip(streams, status)):
        if not st.ok:
            raise ReplayError(f"attention replay: job {i}: status {st}")
        beats = rows[at:at + s.m]
        at += s.m
        lasts = [_field(o_port, v, "tlast") for v, _ in beats]
        if lasts != [0] * (s.m - 1) + [1]:
            raise ReplayError(f"attention replay: job {i}: tlast not on row {s.m - 1} alone")
        data = b"".join(_field(o_port, v, "tdata").to_bytes(nbytes, "little")[:s.d]
                        for v, _ in beats)
        out.append((decode_rows(data, s.m, s.d), {"cycles": int(st.cycles), "status": st}))
    return out
