"""cocotb regression of the emitted Verilog, over configurations x simulators.

Every test generates (once, cached) the Verilog of a configuration, builds it for a simulator
(once, cached, file-locked so ``pytest -n auto`` is safe) and runs cocotb benches in its own
folder through :mod:`npugen.sim.runner`; a cocotb failure fails the pytest test with the failing bench
tests, the seed and the log path. Expected results always come from :mod:`npugen.sim.golden` inside the
bench (``sim/benches/tb.py``), never from the design.

Default (CI) subset, about 5 minutes on 2 cores with ``-n 2``:

- 4x4 ws and 4x4 os: the whole bench (``sim/benches/gemm_bench.py``) on Verilator and Icarus;
- the other configurations (1x1, 2x2, 4x8, 8x4 in both dataflows, plus a wide-accumulator and
  a small-memory variant): targeted bench tests on one simulator each;
- the embedded default (16x16 ws): a smoke job on both simulators;
- the Python API (:mod:`npugen.sim.run`) and the runner's own failure reporting.

``pytest --full`` (marker ``full``) adds the whole bench in its long variant (``NPUGEN_FULL=1``)
on every configuration and both simulators; a covering subset of it (:data:`COVERING` and the
default design on Verilator, marker ``covering``) runs without ``--full`` too.
``NPUGEN_SEED=<n>`` replays a seed.
"""

from __future__ import annotations


import numpy as np
import pytest

from npugen.hw.config import GemmConfig, load_config
from npugen.hw.tools import ToolNotFound
from npugen.sim import golden
import npugen.sim.runner as runner
from rtl_helpers import BUILD, covering_params, need_sim, run_bench, seed_for

pytestmark = pytest.mark.rtl


#: Small configurations of the matrix. Rounding alternates so both modes meet both dataflows,
#: and both meet both partial-product widths of the requantizer (requant_pp_bits 8, the
#: default, and 16); k_max is small so the K = k_max test stays quick.
CONFIGS = {
    "g1x1ws": GemmConfig(name="g1x1ws", rows=1, cols=1, dataflow="ws", k_max=64, acc_depth=16,
                         res_depth=4),
    "g1x1os": GemmConfig(name="g1x1os", rows=1, cols=1, dataflow="os", k_max=64, acc_depth=16,
                         res_depth=4, rounding="double", array_input_reg=False),
    "g2x2ws": GemmConfig(name="g2x2ws", rows=2, cols=2, dataflow="ws", k_max=64, acc_depth=4,
                         res_depth=4, rounding="double", requant_pp_bits=16),
    "g2x2os": GemmConfig(name="g2x2os", rows=2, cols=2, dataflow="os", k_max=64, acc_depth=16,
                         res_depth=4, requant_lanes=2),
    "g4x4ws": GemmConfig(name="g4x4ws", rows=4, cols=4, dataflow="ws", k_max=128, acc_depth=16,
                         res_depth=16),
    "g4x4os": GemmConfig(name="g4x4os", rows=4, cols=4, dataflow="os", k_max=128, acc_depth=16,
                         res_depth=16, rounding="double"),
    "g4x8ws": GemmConfig(name="g4x8ws", rows=4, cols=8, dataflow="ws", k_max=64, acc_depth=16,
                         res_depth=8, rounding="double", requant_lanes=3, pe_product_reg=False),
    "g4x8os": GemmConfig(name="g4x8os", rows=4, cols=8, dataflow="os", k_max=64, acc_depth=16,
                         res_depth=8, acc_width=40, requant_lanes=8),
    "g8x4ws": GemmConfig(name="g8x4ws", rows=8, cols=4, dataflow="ws", k_max=64, acc_depth=16,
                         res_depth=8, acc_width=40, requant_lanes=2, pe_weight_reg=False,
                         array_input_reg=False),
    "g8x4os": GemmConfig(name="g8x4os", rows=8, cols=4, dataflow="os", k_max=64, acc_depth=16,
                         res_depth=8, rounding="double"),
    # every PE's product in an instantiated ECP5 MULT18X18D, simulated with npugen's model
    # and the requantizer's 17 x 16-bit partial products, as the FPGA configurations
    "g4x4dsp": GemmConfig(name="g4x4dsp", rows=4, cols=4, dataflow="ws", k_max=128,
                          acc_depth=16, res_depth=16, dsp_primitive="ecp5",
                          requant_pp_bits=16),
    # both: the DSP blocks' activation copy follows the input register's hold on a bubble
    "g2x3dspiso": GemmConfig(name="g2x3dspiso", rows=2, cols=3, dataflow="ws", k_max=64,
                             acc_depth=16, res_depth=4, dsp_primitive="ecp5",
                             operand_isolation=True),
    # operand isolation (held operands on idle cycles), both dataflows: test_operand_isolation
    "g4x4wsiso": GemmConfig(name="g4x4wsiso", rows=4, cols=4, dataflow="ws", k_max=128,
                            acc_depth=16, res_depth=16, operand_isolation=True),
    "g2x2osiso": GemmConfig(name="g2x2osiso", rows=2, cols=2, dataflow="os", k_max=64,
                            acc_depth=16, res_depth=4, requant_lanes=2, operand_isolation=True),
}

#: The embedded default design (npu, 16x16 ws, k_max 4096).
DEFAULT = load_config()

#: Bench tests run on the configurations outside the 4x4 pair, by default.
TARGETED = ["test_small_shapes", "test_k_max_extremes", "test_accumulate_across_jobs",
            "test_weight_tiles_back_to_back", "test_random_jobs", "test_many_row_chunks",
            "test_parameter_bits", "test_rounding_ties_every_shift", "test_job_stream"]

#: Which simulator runs the targeted tests of each configuration by default (one each).
TARGETED_SIM = {"g2x3dspiso": "icarus", "g1x1ws": "icarus", "g1x1os": "verilator", "g2x2ws": "verilator",
                "g2x2os": "icarus", "g4x8ws": "verilator", "g4x8os": "verilator",
                "g8x4ws": "verilator", "g8x4os": "icarus"}

SIMS = list(runner.SIMULATORS)


def _run(cfg, sim, *, testcase=None, full=False, label="", waves=False):
    return run_bench(cfg, sim, build_dir=BUILD, top="npu", testcase=testcase,
                     full=full, label=label, waves=waves)


# --------------------------------------------------------------------------------------------
# default subset

@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("name", ["g4x4ws", "g4x4os"])
def test_bench_4x4(name, sim):
    """The whole bench on the 4x4 pair, both simulators."""
    run = _run(CONFIGS[name], sim, label="bench")
    assert run.tests >= 15


@pytest.mark.parametrize("sim", SIMS)
def test_bench_dsp_primitive(sim):
    """The whole bench on a 4x4 whose PEs instantiate ECP5 MULT18X18D blocks holding their
    registers (dsp_primitive = "ecp5"), against the golden model, both simulators: the model
    of hw/primitives.py and the activation copy loaded from a_next give every product in the
    cycle the portable PE gives it (the bench checks cycles against sim/perfmodel.py too)."""
    run = _run(CONFIGS["g4x4dsp"], sim, label="bench")
    assert run.tests >= 15


@pytest.mark.parametrize("name", sorted(TARGETED_SIM))
def test_targeted(name):
    """Targeted bench tests on each other configuration, on one simulator."""
    run = _run(CONFIGS[name], TARGETED_SIM[name], testcase=TARGETED, label="targeted")
    assert run.tests >= len(TARGETED)


@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("name", ["g4x4wsiso", "g2x2osiso"])
def test_operand_isolation(name, sim):
    """The targeted bench tests on the operand-isolation designs, both simulators: the held
    operands change no result (jobs with stalls, accumulation across jobs, row chunks)."""
    run = _run(CONFIGS[name], sim, testcase=TARGETED, label="iso")
    assert run.tests >= len(TARGETED)


@pytest.mark.parametrize("sim", SIMS)
def test_default_smoke(sim):
    """The embedded default design (16x16 ws): small shapes and back-to-back weight tiles."""
    run = _run(DEFAULT, sim, testcase=["test_small_shapes", "test_weight_tiles_back_to_back"],
               label="smoke")
    assert run.tests == 2


def test_run_api_matches_golden():
    """npugen.sim.run.gemm / gemm_many return what the golden model computes, with cycle counts."""
    from npugen.sim import run

    cfg = CONFIGS["g4x4ws"]
    rng = np.random.default_rng(seed_for("run-api"))
    a = rng.integers(-128, 128, (9, 13), dtype=np.int8)
    b = rng.integers(-128, 128, (13, 6), dtype=np.int8)
    bias = rng.integers(-1000, 1000, 6).astype(np.int32)
    c, stats = run.gemm(a, b, bias=bias, zp_a=-7, config=cfg, build_dir=BUILD)
    np.testing.assert_array_equal(c, golden.gemm_int8(a, b, bias=bias, zp_a=-7))
    assert c.dtype == np.int32
    assert stats["macs"] == 9 * 13 * 6 and stats["config"] == cfg.name
    assert stats["sim"] == "verilator" and stats["waves"] is None
    assert stats["model_cycles"] == stats["cycles"]     # sim/perfmodel.py
    assert stats["cycles"] >= 9 * 4                       # 4 K tiles of 9 activation rows
    assert stats["utilization"] == pytest.approx(9 * 13 * 6 / (stats["cycles"] * 16))

    sa, sb, so = np.float32(0.02), np.float32(0.004), np.float32(0.25)
    (c1, s1), (c2, s2) = run.gemm_many(
        [dict(a=a, b=b, bias=bias, scale_a=sa, scale_b=sb, scale_out=so, zp_out=3),
         dict(a=a[:2], b=b[:, :2], multiplier=np.array([1 << 30, 1 << 30]),
              shift=np.array([-12, -3]), act_min=0, act_max=100)],
        config=cfg, build_dir=BUILD)
    m0, sh = golden.effective_scale(sa, sb, so)
    want1 = golden.gemm_int8(a, b, bias=bias, multiplier=np.full(6, m0), shift=np.full(6, sh),
                             zp_out=3, rounding=cfg.rounding)
    np.testing.assert_array_equal(c1, want1)
    want2 = golden.gemm_int8(a[:2], b[:, :2], multiplier=[1 << 30, 1 << 30], shift=[-12, -3],
                             act_min=0, act_max=100, rounding=cfg.rounding)
    np.testing.assert_array_equal(c2, want2)
    assert c1.dtype == np.int8 and s1["cycles"] > 0 and s2["cycles"] > 0
    assert (s1["model_cycles"], s2["model_cycles"]) == (s1["cycles"], s2["cycles"])


def test_run_api_rejects_invalid_jobs_before_simulating():
    from npugen.sim import run

    with pytest.raises(ValueError, match="K = 65 exceeds this design's k_max = 64 .config key k_max"):
        run.gemm(np.zeros((1, 65), np.int8), np.zeros((65, 1), np.int8),
                 config=CONFIGS["g2x2ws"], build_dir=BUILD)
    with pytest.raises(ValueError, match="scale_a, scale_b and scale_out must be given together"):
        run.gemm(np.zeros((1, 1), np.int8), np.zeros((1, 1), np.int8), scale_a=0.5,
                 config=CONFIGS["g2x2ws"], build_dir=BUILD)


FAILING_BENCH = '''
import cocotb
from cocotb.triggers import Timer

@cocotb.test()
async def passes(dut):
    await Timer(1, "ns")

@cocotb.test()
async def fails(dut):
    await Timer(1, "ns")
    assert False, "deliberate failure"
'''


def test_runner_reports_a_failing_bench(tmp_path, monkeypatch, capsys):
    """A failing cocotb test makes TestRun.ok false, check() raise and verify() return 1."""
    (tmp_path / "npugen_failing_bench.py").write_text(FAILING_BENCH)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = CONFIGS["g1x1os"]
    run = runner.test(cfg, "npugen_failing_bench", sim="verilator", seed=1, build_dir=BUILD)
    assert not run.ok and run.tests == 2
    assert run.failed == ["npugen_failing_bench.fails"]
    assert run.passed == ["npugen_failing_bench.passes"]
    assert run.log.is_file() and "deliberate failure" in run.log.read_text()
    with pytest.raises(runner.TestFailed, match="1 passed, 1 failed"):
        run.check()
    monkeypatch.setattr(runner, "BENCH", "npugen_failing_bench")
    assert runner.verify(cfg, seed=1, build_dir=BUILD) == 1
    out = capsys.readouterr().out
    assert "FAIL npugen_failing_bench.fails" in out and "seed 1" in out


def test_missing_icarus_is_one_line(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolNotFound, match="iverilog") as exc:
        runner.build(CONFIGS["g1x1ws"], "icarus", BUILD)
    assert "\n" not in str(exc.value) and "apt-get install iverilog" in str(exc.value)
    assert runner.verify(CONFIGS["g1x1ws"], sim="icarus", build_dir=BUILD) == 2


def test_unknown_simulator():
    with pytest.raises(ValueError, match="Simulator must be one of verilator, icarus, not 'xsim'"):
        runner.build(CONFIGS["g1x1ws"], "xsim", BUILD)


@pytest.mark.parametrize("sim", SIMS)
def test_waves(sim):
    """--waves writes a trace into the test folder and reports its path."""
    run = _run(CONFIGS["g1x1ws"], sim, testcase="test_small_shapes", waves=True, label="waves")
    assert run.waves is not None and run.waves.is_file() and run.waves.stat().st_size > 0
    assert str(run.waves) in run.summary()


# --------------------------------------------------------------------------------------------
# --full

#: The long variants that run without --full too (marker ``covering``), each on a build the
#: default subset makes anyway: with test_full_default[verilator] (16x16 ws, single) they run
#: both dataflows in both roundings, 40-bit lanes and accumulator row chunks
#: (docs/verification.md).
COVERING = {("g4x4os", "verilator"),        # os, double
            ("g2x2ws", "verilator"),        # ws, double, acc_depth 4 < M (row chunks)
            ("g4x8os", "verilator")}        # os, single, acc_width 40


@pytest.mark.full
@pytest.mark.parametrize("name,sim", covering_params(
    [(n, s) for n in sorted(CONFIGS) for s in SIMS], COVERING))
def test_full_bench(name, sim):
    """The whole bench, long variant, on every configuration and simulator."""
    _run(CONFIGS[name], sim, full=True, label="full")


@pytest.mark.full
@pytest.mark.parametrize("sim", covering_params([(s,) for s in SIMS], {("verilator",)}))
def test_full_default(sim):
    """The whole bench, long variant, on the embedded default design (on Verilator also
    without --full: the shipped design's long run, on the build test_default_smoke makes)."""
    _run(DEFAULT, sim, full=True, label="full")


def _exact_multiple_pairs(count: int) -> list[tuple[int, int]]:
    """(acc, M0) with acc in [-127, -1] and M0 in [2^30, 2^31) such that ``double`` rounding's
    nudged product ``acc * M0 + (1 - 2^30)`` is a negative exact multiple of 2^31: acc * M0 is
    2^30 - 1 modulo 2^31 (numerics.md, SaturatingRoundingDoublingHighMul). Random jobs reach
    that about once in 2^31."""
    mod = 1 << 31
    out = []
    for acc in range(-1, -128, -2):
        m0 = ((1 << 30) - 1) * pow(acc % mod, -1, mod) % mod
        if m0 >= 1 << 30:
            assert (acc * m0 + 1 - (1 << 30)) % mod == 0
            out.append((acc, m0))
    return out[:count]


@pytest.mark.parametrize("sim", SIMS)
def test_double_rounding_exact_multiple_nudges(sim):
    """``double`` rounding where the nudged product is a negative exact multiple of 2^31, through
    the RTL on both simulators: its truncating division must not round it once more. Hand
    value: acc = -1, M0 = 2^30 + 1, sh = 0 gives nudged = -(2^30 + 1) + 1 - 2^30 = -2^31, so
    the doubling high multiply h = nudged / 2^31 = -1 exactly, and with sh = 0 no further
    rounding shift: y = -1 (a division that rounds the exact quotient once more gives 0)."""
    need_sim(sim)
    from npugen.sim import run
    cfg = CONFIGS["g2x2ws"]
    assert cfg.rounding == "double"
    pairs = _exact_multiple_pairs(8)
    assert pairs[0] == (-1, (1 << 30) + 1)
    shifts = np.array([0, -3])
    jobs = [dict(a=np.array([[acc], [acc + 2], [-acc]], np.int8), b=np.ones((1, 2), np.int8),
                 multiplier=np.full(2, m0), shift=shifts) for acc, m0 in pairs]
    out = run.gemm_many(jobs, config=cfg, sim=sim, build_dir=BUILD)
    for (acc, m0), job, (c, _) in zip(pairs, jobs, out):
        want = golden.gemm_int8(job["a"], job["b"], multiplier=job["multiplier"],
                                shift=shifts, rounding="double")
        np.testing.assert_array_equal(c, want, err_msg=f"acc={acc} M0={m0}")
    assert golden.requantize(np.array([-1]), (1 << 30) + 1, 0, rounding="double")[0] == -1
    assert out[0][0][0, 0] == -1
