"""cocotb regression of the emitted OSI8 softmax top (``npugen.hw.top.SoftmaxTop``), over
configurations x simulators, and ``npugen.sim.run.softmax`` / ``npugen run softmax``.

Each test generates (once, cached) the standalone softmax top of a configuration
(``npugen.sim.runner.build(..., top="softmax")``, module ``<name>_softmax``), builds it for a simulator
and runs the bench ``sim/benches/softmax_bench.py``, whose every check is against
``npugen.sim.golden.softmax_int8`` (bit-exact). The full grids of osi8.md (F x B, all 65536 pairs,
N up to 32768) run in the golden model (``tests/test_golden_softmax.py``); through the RTL a
covering subset of configurations runs the S tests at small sizes:

======== == == ===== ===== ================== ===============================================
name     F  B  lanes N_max LUT                default run
======== == == ===== ===== ================== ===============================================
s24b16l4 24 16 4     1024  run-time           whole bench, Verilator and Icarus
s16b1l1  16 1  1     1024  run-time           whole bench, Verilator
s20b4l2r 20 4  2     256   ROM, c = 0.0538... whole bench, Icarus
s24b8l8  24 8  8     1000  run-time           whole bench, Icarus
s30b2l2  30 2  2     2^24  run-time           whole bench, Icarus (W_L = 55 bits)
s8b64l4  8  64 4     300   run-time           whole bench, Verilator
npu      24 16 1     32768 run-time           smoke on both simulators; sim.run and the CLI
======== == == ===== ===== ================== ===============================================

So F in {16, 20, 24} (and 8, 30), B in {1, 4, 16} (and 2, 8, 64) and lanes in {1, 2, 4, 8} are
each covered by the default run, the ROM variant too (about 1 minute on 2 cores with ``-n 2``
from a cold build cache). ``pytest --full`` (marker ``full``) runs the bench's long variant
(``NPUGEN_FULL=1``) on every configuration and both simulators; :data:`COVERING` and the
default section on Verilator run it without ``--full`` too (marker ``covering``).
``NPUGEN_SEED=<n>`` replays a seed. Lanes stay at 8 or fewer: see ``build/rtl_bugs.md`` (the emitted Verilog grows
exponentially with the lanes).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from npugen.hw.config import GemmConfig, SoftmaxConfig, load_config
from npugen.sim.golden import softmax_int8
import npugen.sim.runner as runner
from rtl_helpers import BUILD, WORK, covering_params, need_sim, run_bench, seed_for

pytestmark = pytest.mark.rtl

BENCH = "npugen.sim.benches.softmax_bench"

#: The scale baked into the ROM variant (the near-tie scale of osi8.md S5).
ROM_SCALE = 0.05382167030057292


def _cfg(name, **sm) -> GemmConfig:
    # The GEMM parameters do not matter to the standalone softmax top: small values.
    return GemmConfig(name=name, rows=2, cols=2, k_max=64, acc_depth=16, res_depth=4,
                      softmax=SoftmaxConfig(**sm))


CONFIGS = {
    "s24b16l4": _cfg("s24b16l4", F=24, B=16, lanes=4, N_max=1024),
    "s16b1l1": _cfg("s16b1l1", F=16, B=1, lanes=1, N_max=1024),
    "s20b4l2r": _cfg("s20b4l2r", F=20, B=4, lanes=2, N_max=256, lut_rom_scale=ROM_SCALE),
    "s24b8l8": _cfg("s24b8l8", F=24, B=8, lanes=8, N_max=1000),
    "s30b2l2": _cfg("s30b2l2", F=30, B=2, lanes=2, N_max=1 << 24),
    "s8b64l4": _cfg("s8b64l4", F=8, B=64, lanes=4, N_max=300),
}

#: The embedded default with a default [softmax] section: what sim.run.softmax(config=None) and
#: `npugen run softmax` without --config build.
DEFAULT = dataclasses.replace(load_config(), softmax=SoftmaxConfig())

#: Default run: configuration -> simulators of the whole bench.
DEFAULT_RUN = {"s24b16l4": ("verilator", "icarus"), "s16b1l1": ("verilator",),
               "s20b4l2r": ("icarus",), "s24b8l8": ("icarus",), "s30b2l2": ("icarus",),
               "s8b64l4": ("verilator",)}

SIMS = list(runner.SIMULATORS)


def _run(cfg, sim, *, testcase=None, full=False, label=""):
    return run_bench(cfg, sim, build_dir=BUILD, top="softmax", bench=BENCH, testcase=testcase,
                     full=full, label=label)


#: Every test of the bench (test_backpressure counts once per pattern).
BENCH_TESTS = 20


# --------------------------------------------------------------------------------------------
# default subset

@pytest.mark.parametrize("name,sim", [(n, s) for n, sims in DEFAULT_RUN.items() for s in sims])
def test_bench(name, sim):
    """The whole bench on the covering subset."""
    run = _run(CONFIGS[name], sim, label="bench")
    assert run.tests == BENCH_TESTS and not run.failed


@pytest.mark.parametrize("sim", SIMS)
def test_default_smoke(sim):
    """The default [softmax] section (F = 24, B = 16, N_max = 32768, one lane): random rows,
    masks, the long equal row (N = 4096 of 32768 in the default run), throughput."""
    run = _run(DEFAULT, sim, testcase=["test_covering_random_rows", "test_s9_masks",
                                       "test_s10_long_equal_row", "test_throughput"],
               label="smoke")
    assert run.tests == 4


def test_softmax_top_needs_a_softmax_section():
    with pytest.raises(ValueError, match="configuration 'npu' has no \\[softmax\\] section"):
        runner.build(load_config(), "verilator", BUILD, top="softmax")
    with pytest.raises(ValueError,
                       match="Top must be one of npu, softmax, attention, not 'gemm'"):
        runner.design_dir(load_config(), BUILD, top="gemm")
    # the accelerator top keeps its cache folder; the softmax top has its own
    cfg = CONFIGS["s24b16l4"]
    assert runner.design_dir(cfg, BUILD) == BUILD / "_sim" / cfg.digest()[:16]
    assert runner.design_dir(cfg, BUILD, top="softmax").name == cfg.digest()[:16] + "-softmax"


# -- sim.run.softmax --------------------------------------------------------------------------

def test_run_api_matches_golden():
    """npugen.sim.run.softmax on the default design: rows and one row, masks, cycle counts."""
    from npugen.sim import run

    rng = np.random.default_rng(seed_for("run-api"))
    scores = rng.integers(-128, 128, (3, 37)).astype(np.int8)
    mask = rng.random((3, 37)) < 0.8
    mask[2] = False                                          # a fully masked row
    c = float(np.float32(0.0625))
    y, stats = run.softmax(scores, c, mask=mask, build_dir=BUILD)
    np.testing.assert_array_equal(y, softmax_int8(scores, c, F=24, B=16, mask=mask))
    assert y.dtype == np.int8 and y.shape == (3, 37) and np.all(y[2] == -128)
    assert stats["rows"] == 3 and stats["keys"] == 37 and stats["lanes"] == 1
    assert stats["sim"] == "verilator" and stats["config"] == "npu_softmax"
    assert stats["waves"] is None and stats["lut_cycles"] >= 256
    assert stats["cycles"] >= 2 * 3 * 37                     # every row streamed twice
    # the cycle model: 3 rows of 2·37 + min(37, 16) + 1 cycles, then 12 (divider, FIFO)
    assert stats["cycles"] == stats["model_cycles"] == 3 * (2 * 37 + 16 + 1) + 12
    assert stats["utilization"] == pytest.approx(2 * 3 * 37 / stats["cycles"])
    y1, s1 = run.softmax(scores[0], c, build_dir=BUILD)
    assert y1.shape == (37,)
    np.testing.assert_array_equal(y1, softmax_int8(scores[0], c, F=24, B=16))
    assert 2 * 37 <= s1["cycles"] < stats["cycles"]
    assert s1["cycles"] == s1["model_cycles"] == 2 * 37 + 16 + 1 + 12


def test_run_api_rom_and_waves_on_icarus():
    """A ROM design through sim.run.softmax, on Icarus, with a waveform."""
    from npugen.sim import run

    need_sim("icarus")
    cfg = CONFIGS["s20b4l2r"]
    rng = np.random.default_rng(seed_for("run-api-rom"))
    scores = rng.integers(-128, 128, (2, 9)).astype(np.int8)
    y, stats = run.softmax(scores, ROM_SCALE, config=cfg, sim="icarus", waves=True,
                           build_dir=BUILD)
    np.testing.assert_array_equal(y, softmax_int8(scores, ROM_SCALE, F=20, B=4))
    assert stats["lut_cycles"] == 0 and stats["lanes"] == 2
    # 2 rows of nb = 5 beats (2 lanes), B/P = 2: 2·(2·5 + 2 + 1) + 12
    assert stats["cycles"] == stats["model_cycles"] == 38
    assert stats["waves"] is not None and Path(stats["waves"]).stat().st_size > 0


@pytest.mark.parametrize("kwargs,exc,message", [
    (dict(scores=[[1, 2, 300]]), ValueError,
     r"scores must hold int8 values in \[-128, 127\]; scores\[0, 2\] = 300"),
    (dict(scores=np.zeros((2, 2, 2), np.int8)), ValueError, "scores must be a 1-D row"),
    (dict(scores=np.zeros((2, 0), np.int8)), ValueError,
     "scores must hold at least one key per row"),
    (dict(mask=np.ones((1, 3), np.int8)), ValueError, "mask must be a bool array"),
    (dict(mask=np.ones((1, 4), bool)), ValueError, "mask must have the shape of scores"),
    (dict(scale=0.0), ValueError, "c must be positive and finite"),
    (dict(scale="0.1"), TypeError, "c must be a real number"),
    (dict(config=CONFIGS["s8b64l4"], scores=np.zeros((1, 301), np.int8)), ValueError,
     r"rows of 301 keys exceed this design's softmax.N_max = 300"),
    (dict(config=CONFIGS["s20b4l2r"], scale=0.05), ValueError,
     "this design bakes the LUT of softmax.lut_rom_scale = 0.05382167030057292"),
    (dict(config=load_config()), ValueError, "configuration 'npu' has no \\[softmax\\] section"),
])
def test_run_api_rejects_bad_input_before_building(kwargs, exc, message, monkeypatch):
    from npugen.sim import run

    def no_build(*a, **k):
        raise AssertionError("built a design for bad input")
    monkeypatch.setattr(runner, "build", no_build)
    args = dict(scores=np.zeros((1, 3), np.int8), scale=0.1)
    args.update(kwargs)
    with pytest.raises(exc, match=message) as info:
        run.softmax(args.pop("scores"), args.pop("scale"), build_dir=BUILD, **args)
    assert "\n" not in str(info.value)


# -- npugen run softmax -----------------------------------------------------------------------

def _npugen(*args, cwd):
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "npugen.sim.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)


def test_cli_run_softmax(tmp_path):
    """`npugen run softmax` as a user runs it: a tiny case through Verilator (the default
    design, cached in ./build of the working folder: here the tests' shared build root)."""
    WORK.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed_for("cli"))
    scores = rng.integers(-128, 128, (2, 11)).astype(np.int8)
    mask = rng.random((2, 11)) < 0.7
    np.save(tmp_path / "s.npy", scores)
    np.save(tmp_path / "m.npy", mask)
    out = tmp_path / "p.npy"
    proc = _npugen("run", "softmax", "--scores", str(tmp_path / "s.npy"), "--scale", "0.1",
                   "--mask", str(tmp_path / "m.npy"), "--out", str(out), cwd=WORK)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    fields = dict(f.split("=") for f in lines[0].split())
    assert list(fields) == ["cycles", "model_cycles", "utilization"], lines[0]
    # 2 rows of 11 keys, one lane, B = 16: 2·(2·11 + 11 + 1) + 12 = 80, 44 of 80 slots busy
    assert fields == {"cycles": "80", "model_cycles": "80", "utilization": "55.0%"}, lines[0]
    c = float(np.float32(0.1))
    np.testing.assert_array_equal(np.load(out), softmax_int8(scores, c, F=24, B=16, mask=mask))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
    proc = _npugen("run", "softmax", "--scores", str(tmp_path / "s.npy"), "--scale", "0.1",
                   "--json", "--out", str(out), cwd=WORK)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["config"] == "npu_softmax" and record["rows"] == 2 and record["cycles"] > 0
    assert record["cycles"] == record["model_cycles"] == 80
    np.testing.assert_array_equal(np.load(out), softmax_int8(scores, c, F=24, B=16))


@pytest.mark.parametrize("extra,message", [
    (["--scale", "abc"], "--scale: 'abc' is not a number"),
    (["--scale", "-1"], "--scale: '-1' is not a positive number"),
    (["--scale", "0.1", "--scores", "{d}/none.npy"], "--scores: {d}/none.npy: no such file"),
    (["--scale", "0.1", "--scores", "{d}/bad.npy"],
     "scores must hold int8 values in [-128, 127]; scores[0, 2] = 300"),
    (["--scale", "0.1", "--mask", "{d}/s.npy"],
     "mask must be a bool array (True = attend), not an array of dtype int8"),
    (["--scale", "0.1", "--config", "{d}/nosm.toml"],
     "configuration 'nosm' has no [softmax] section"),
    (["--scale", "0.1", "--out", "{d}"], "--out: {d}: is a folder (--out names the file this "
                                           "command writes)"),
    (["--scale", "abc", "--out", "{d}/new/p.npy"], "--scale: 'abc' is not a number"),
])
def test_cli_run_softmax_bad_input(tmp_path, extra, message):
    """Bad input: one error line, exit code 2, nothing written."""
    np.save(tmp_path / "s.npy", np.zeros((1, 3), np.int8))
    np.save(tmp_path / "bad.npy", np.array([[1, 2, 300]]))
    (tmp_path / "nosm.toml").write_text('name = "nosm"\nrows = 2\ncols = 2\n')
    args = ["run", "softmax", "--scores", str(tmp_path / "s.npy"), "--out",
            str(tmp_path / "p.npy")]
    args += [a.format(d=tmp_path) for a in extra]
    proc = _npugen(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"npugen: error: {message.format(d=tmp_path)}\n"
    assert proc.stdout == "" and not (tmp_path / "p.npy").exists()
    assert not (tmp_path / "new").exists()          # no folder made for a failed command


# --------------------------------------------------------------------------------------------
# --full

#: The long variants that run without --full too (marker ``covering``), each on a build the
#: default run makes anyway: with test_full_default[verilator] (run-time LUT, one lane, the
#: default N_max = 32768 streamed whole) the ROM LUT on two lanes (docs/verification.md).
COVERING = {("s20b4l2r", "icarus")}


@pytest.mark.full
@pytest.mark.parametrize("name,sim", covering_params(
    [(n, s) for n in sorted(CONFIGS) for s in SIMS], COVERING))
def test_full_bench(name, sim):
    """The whole bench, long variant, on every configuration and simulator."""
    _run(CONFIGS[name], sim, full=True, label="full")


@pytest.mark.full
@pytest.mark.parametrize("sim", covering_params([(s,) for s in SIMS], {("verilator",)}))
def test_full_default(sim):
    """The whole bench, long variant (N = N_max = 32768 equal scores), on the default section
    (on Verilator also without --full)."""
    _run(DEFAULT, sim, full=True, label="full")


@pytest.mark.parametrize("sim", SIMS)
def test_masked_only_maximum_takes_no_part(sim):
    """Rows whose only maximum (127) is masked, at a coarse score scale (c = 0.5: every other key
    is at least 100 steps below it, where exp(-c * 100) is far below the LUT's resolution): the
    masked key must not enter the running max, or every kept key's exponent underflows to zero
    and the row comes out all -128 instead of a real distribution. The maximum sits first,
    last, in the middle and on a block boundary, through the RTL on both simulators."""
    from npugen.sim import run
    cfg = CONFIGS["s24b16l4"]
    n = 40
    rng = np.random.default_rng(seed_for("masked-max"))
    scores = rng.integers(-27, 1, (5, n)).astype(np.int8)
    mask = np.ones((5, n), dtype=bool)
    for row, pos in enumerate((0, n - 1, n // 2, cfg.softmax.B, cfg.softmax.B - 1)):
        scores[row, pos] = 127
        mask[row, pos] = False
    c = 0.5
    y, _ = run.softmax(scores, c, mask=mask, config=cfg, sim=sim, build_dir=BUILD)
    want = softmax_int8(scores, c, F=cfg.softmax.F, B=cfg.softmax.B, mask=mask)
    np.testing.assert_array_equal(y, want)
    # independent of the golden model: the masked key is -128 (probability 0) and the kept keys
    # carry a real distribution (their probabilities, 1/256 apart, sum to about 1)
    assert np.all(y[~mask] == -128)
    kept = np.where(mask, y.astype(np.int32) + 128, 0).sum(axis=1)
    assert np.all(np.abs(kept - 256) <= n), kept
