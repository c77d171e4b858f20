"""cocotb regression of the emitted OSI8 attention top (``npugen.hw.top.AttentionTop``), over
configurations x simulators, and ``npugen.sim.run.attention``.

Each bench test generates (once, cached) the standalone attention top of a configuration
(``npugen.sim.runner.build(..., top="attention")``, module ``<name>_attention``), builds it for a
simulator and runs ``sim/benches/attention_bench.py``, whose every check is against
``npugen.sim.golden.attention.attention_int8`` (bit-exact) and the status beats. Small sizes only:

======== === ======= ===== == == == ===== ======== =========================================
name     d   q_block heads F  B  G  N_max rounding default run
======== === ======= ===== == == == ===== ======== =========================================
a8p3h2   8   3       2     24 4  16 64    single   whole bench, Verilator and Icarus
a1p1h1   1   1       1     16 1  16 40    single   whole bench, Verilator
a8p2h3   8   2       3     20 5  12 32    double   whole bench, Icarus
======== === ======= ===== == == == ===== ======== =========================================

So d in {1, 8}, B = 1 and B not a power of 2, q_block 1 and not a power of 2, both roundings
and one and several heads are covered, and osi8.md test 10 streams N = N_max keys. ``pytest
--full`` (marker ``full``) runs the bench's long variant on every configuration and both
simulators; :data:`COVERING` runs it without ``--full`` too (marker ``covering``).
``NPUGEN_SEED=<n>`` replays a seed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import npugen.sim.runner as runner
from rtl_helpers import BUILD, covering_params, need_sim, run_bench, seed_for
from npugen.hw.config import AttentionConfig, GemmConfig, SoftmaxConfig, load_config
from npugen.sim.golden.attention import attention_int8, attention_params, calibrate_score_scale

pytestmark = pytest.mark.rtl

BENCH = "npugen.sim.benches.attention_bench"


def _cfg(name, *, d, q_block, heads, rounding="single", **sm) -> GemmConfig:
    # The GEMM parameters do not matter to the standalone attention top: small values.
    return GemmConfig(name=name, rows=2, cols=2, k_max=64, acc_depth=16, res_depth=4,
                      rounding=rounding, softmax=SoftmaxConfig(**sm),
                      attention=AttentionConfig(d=d, q_block=q_block, heads=heads))


CONFIGS = {
    "a8p3h2": _cfg("a8p3h2", d=8, q_block=3, heads=2, F=24, B=4, N_max=64),
    "a1p1h1": _cfg("a1p1h1", d=1, q_block=1, heads=1, F=16, B=1, N_max=40),
    "a8p2h3": _cfg("a8p2h3", d=8, q_block=2, heads=3, F=20, B=5, N_max=32, G=12,
                   rounding="double"),
    # the defaults of osi8.md (F 24, B 16, d 64) with long contexts (test 8: 1024 keys)
    "a64p2h1": _cfg("a64p2h1", d=64, q_block=2, heads=1, F=24, B=16, N_max=4096),
}

#: Default run: configuration -> simulators of the whole bench.
DEFAULT_RUN = {"a8p3h2": ("verilator", "icarus"), "a1p1h1": ("verilator",),
               "a8p2h3": ("icarus",), "a64p2h1": ("verilator",)}

SIMS = list(runner.SIMULATORS)

#: Every test of the bench (test_backpressure counts once per pattern).
BENCH_TESTS = 22


def _run(cfg, sim, *, testcase=None, full=False, label=""):
    return run_bench(cfg, sim, build_dir=BUILD, top="attention", bench=BENCH, testcase=testcase,
                     full=full, label=label)


# --------------------------------------------------------------------------------------------
# the bench

@pytest.mark.parametrize("name,sim", [(n, s) for n, sims in DEFAULT_RUN.items() for s in sims])
def test_bench(name, sim):
    """The whole bench on the covering subset."""
    run = _run(CONFIGS[name], sim, label="bench")
    assert run.tests == BENCH_TESTS and not run.failed


def test_attention_top_needs_an_attention_section():
    with pytest.raises(ValueError, match=r"configuration 'npu' has no \[attention\] section"):
        runner.build(load_config(), "verilator", BUILD, top="attention")
    cfg = CONFIGS["a8p3h2"]
    assert runner.design_dir(cfg, BUILD, top="attention").name == cfg.digest()[:16] + "-attention"
    assert "attention" in runner.TOPS


# -- sim.run.attention ------------------------------------------------------------------------

def _golden(q, k, v, scale_s, *, zp_v, zp_o, mask=None, causal=False, cfg=None):
    d = q.shape[-1]
    p = attention_params(0.02, 0.03, 0.05, scale_s, 0.02, d, zp_v=zp_v, zp_o=zp_o)
    sm = SoftmaxConfig() if cfg is None else cfg.osi8
    rounding = "single" if cfg is None else cfg.rounding
    return attention_int8(q, k, v, p, F=sm.F, B=sm.B, G=sm.G, mask=mask, causal=causal,
                          rounding=rounding)


def test_run_api_heads_match_golden():
    """npugen.sim.run.attention with 3-D input (two heads in one simulation) on the default design
    plus [attention] d = 4, heads = 2: each head equals the golden model; the calibrated score
    scales are reported; cycles add up."""
    from npugen.sim import run

    rng = np.random.default_rng(seed_for("run-api"))
    H, M, N, d = 2, 5, 19, 4
    q = rng.integers(-128, 128, (H, M, d), dtype=np.int8)
    k = rng.integers(-128, 128, (H, N, d), dtype=np.int8)
    v = rng.integers(-128, 128, (H, N, d), dtype=np.int8)
    out, stats = run.attention(q, k, v, scale_q=0.02, scale_k=0.03, scale_v=0.05,
                               scale_out=0.02, zp_v=3, zp_out=-2, causal=True, build_dir=BUILD)
    assert out.shape == (H, M, d) and out.dtype == np.int8
    assert stats["config"] == "npu_attention" and stats["heads"] == H and stats["waves"] is None
    assert len(stats["cycles_per_head"]) == H and stats["cycles"] == sum(stats["cycles_per_head"])
    assert all(c >= 4 + 256 + M + N for c in stats["cycles_per_head"])
    assert stats["model_cycles_per_head"] == stats["cycles_per_head"]      # exact cycle model
    for h in range(H):
        ss = calibrate_score_scale(q[h], k[h], 0.02, 0.03)
        assert stats["scale_s"][h] == ss
        np.testing.assert_array_equal(out[h], _golden(q[h], k[h], v[h], ss, zp_v=3, zp_o=-2,
                                                      causal=True))


def test_run_api_one_head_given_scale_and_mask():
    """2-D input, a given score scale and a padding mask, on a given configuration (one LUT
    slot for three heads: each head reloads it), on Icarus."""
    from npugen.sim import run

    need_sim("icarus")
    cfg = CONFIGS["a8p2h3"]
    cfg1 = dataclasses.replace(cfg, name="a8p2h1",
                               attention=AttentionConfig(d=8, q_block=2, heads=1))
    rng = np.random.default_rng(seed_for("run-api-2"))
    M, N, d = 3, 11, 8
    q = rng.integers(-128, 128, (M, d), dtype=np.int8)
    k = rng.integers(-128, 128, (N, d), dtype=np.int8)
    v = rng.integers(-128, 128, (N, d), dtype=np.int8)
    mask = rng.random(N) < 0.7
    out, stats = run.attention(q, k, v, scale_q=0.02, scale_k=0.03, scale_v=0.05,
                               scale_out=0.02, scale_s=0.05, mask=mask, config=cfg,
                               sim="icarus", build_dir=BUILD)
    assert out.shape == (M, d) and stats["scale_s"] == 0.05 and stats["heads"] == 1
    np.testing.assert_array_equal(out, _golden(q, k, v, 0.05, zp_v=0, zp_o=0, mask=mask,
                                               cfg=cfg))
    # three heads through one LUT slot
    qs, ks, vs = (np.stack([x, x[::-1], x]) for x in (q, k, v))
    out3, stats3 = run.attention(qs, ks, vs, scale_q=0.02, scale_k=0.03, scale_v=0.05,
                                 scale_out=0.02, config=cfg1, sim="icarus", build_dir=BUILD)
    assert stats3["model_cycles_per_head"] == stats3["cycles_per_head"]
    for h in range(3):
        np.testing.assert_array_equal(out3[h], _golden(qs[h], ks[h], vs[h],
                                                       stats3["scale_s"][h], zp_v=0, zp_o=0,
                                                       cfg=cfg1))


@pytest.mark.parametrize("kwargs,message", [
    (dict(q=np.zeros((2, 4), np.int16)), "q must have dtype int8, not int16"),
    (dict(q=np.zeros((2, 4, 4, 1), np.int8)), "q must be a 2-D"),
    (dict(k=np.zeros((2, 5, 4), np.int8)), "k must be 2-D like q"),
    (dict(v=np.zeros((6, 4), np.int8)), r"v must have the shape \(N, d\) = \(5, 4\) of k"),
    (dict(mask=np.ones(5, np.int8)), "mask must be a bool array"),
    (dict(mask=np.ones((3, 5), bool)), r"mask must have shape \(N,\) or \(M, N\)"),
    (dict(scale_s=[0.1, 0.2]), r"scale_s must be one number or a sequence of 1 \(one per head\), not 2"),
    (dict(k=np.zeros((0, 4), np.int8), v=np.zeros((0, 4), np.int8)),
     "k must hold at least one key"),
    (dict(config="a1"), r"q must have d = 1 columns \(the design's attention.d\)"),
    (dict(config="a1", q=np.zeros((2, 1), np.int8), k=np.zeros((41, 1), np.int8),
          v=np.zeros((41, 1), np.int8)), "N = 41 keys exceed this design's N_max = 40"),
    (dict(config=load_config()), r"configuration 'npu' has no \[attention\] section"),
    (dict(scale_out=1e-12), "scale_out is too small"),
])
def test_run_api_rejects_bad_input_before_building(kwargs, message, monkeypatch):
    from npugen.sim import run

    def no_build(*a, **k):
        raise AssertionError("built a design for bad input")
    monkeypatch.setattr(runner, "build", no_build)
    args = dict(q=np.zeros((2, 4), np.int8), k=np.zeros((5, 4), np.int8),
                v=np.zeros((5, 4), np.int8))
    args.update(kwargs)
    if args.get("config") == "a1":
        args["config"] = CONFIGS["a1p1h1"]
    with pytest.raises(ValueError, match=message) as info:
        run.attention(args.pop("q"), args.pop("k"), args.pop("v"), scale_q=0.02,
                      scale_k=0.03, scale_v=0.05, scale_out=args.pop("scale_out", 0.02),
                      build_dir=BUILD, **args)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------
# --full

#: The long variants that run without --full too (marker ``covering``), each on a build the
#: default run makes anyway: osi8.md's defaults (d 64, F 24, B 16, single rounding) with the
#: long variant's 4096 keys (only a64p2h1 has N_max >= 4096), and double rounding with three
#: heads, B = 5 and q_block 2 (docs/verification.md).
COVERING = {("a64p2h1", "verilator"), ("a8p2h3", "icarus")}


@pytest.mark.full
@pytest.mark.parametrize("name,sim", covering_params(
    [(n, s) for n in sorted(CONFIGS) for s in SIMS], COVERING))
def test_full_bench(name, sim):
    """The whole bench, long variant, on every configuration and simulator."""
    _run(CONFIGS[name], sim, full=True, label="full")
