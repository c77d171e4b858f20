"""The stream replay harness (npugen.sim.replay): the same values and cycles as the golden
models, the cycle-exact models and the cocotb runner, on both simulators; a stalled design is an
error, never a hang."""

from __future__ import annotations

import numpy as np
import pytest

from rtl_helpers import BUILD, need_sim, seed_for
from npugen.hw.config import AttentionConfig, GemmConfig
from npugen.hw.errors import InputError
from npugen.sim import golden, perfmodel, replay
from npugen.sim import run as simrun
from npugen.sim.benches.tb import Model, random_job

#: A small engine with an attention unit in the same top (as configs/minilm.toml).
CFG = GemmConfig(name="replay_2x2", rows=2, cols=2, k_max=64, acc_depth=16, res_depth=4,
                 attention=AttentionConfig(d=8, q_block=2, heads=2))

SIMS = ["verilator", "icarus"]


def test_stream_ports_of_the_generated_top():
    """Every stream of the top, with the widths docs/isa.md and docs/attention.md give."""
    _, rtl, top = replay._design(CFG, BUILD)
    ports = {p.name: p for p in replay.stream_ports(rtl.read_text(), top)}
    assert set(ports) == {"s_axis_cmd", "s_axis_act", "s_axis_wgt", "m_axis_res",
                          "m_axis_status", "s_axis_att_cmd", "s_axis_att_param", "s_axis_att_q",
                          "s_axis_att_k", "s_axis_att_v", "m_axis_att_o", "m_axis_att_status"}
    act = ports["s_axis_act"]
    assert act.source and dict(act.widths) == {"tdata": 8 * CFG.rows, "tkeep": CFG.rows,
                                               "tlast": 1}
    assert act.offset("tkeep") == 8 * CFG.rows and act.offset("tlast") == 9 * CFG.rows
    assert dict(ports["s_axis_att_k"].widths) == {"tdata": 64, "tlast": 1, "tuser": 2}
    assert ports["m_axis_status"].status and ports["m_axis_att_status"].status
    assert not ports["m_axis_res"].status and not ports["s_axis_cmd"].status
    text = replay.harness(top, list(ports.values()))
    assert text == replay.harness(top, list(ports.values()))       # deterministic
    for name in ports:
        assert f".{name}_tvalid({name}_tvalid)" in text


def test_stream_ports_rejects_other_ports():
    v = "module t(aclk, go);\n  input aclk;\n  input go;\nendmodule\n"
    with pytest.raises(InputError, match="port 'go' of t is not an AXI4-Stream signal"):
        replay.stream_ports(v, "t")
    with pytest.raises(InputError, match="module 'u' not found"):
        replay.stream_ports(v, "u")


def _gemm_jobs(seed: int):
    rng = np.random.default_rng(seed)
    jobs = [random_job(rng, 5, 7, 3, requant=True), random_job(rng, 4, 9, 5, requant=False),
            random_job(rng, 3, 40, 2, requant=True), random_job(rng, 1, 1, 1, requant=False)]
    acc_out = random_job(rng, 3, 6, 2, requant=False)
    acc_out.acc_out = True
    acc_in = random_job(rng, 3, 5, 2, requant=True, zp_a=0)
    acc_in.acc_in = True
    acc_in.bias = None
    return jobs + [acc_out, acc_in]


@pytest.mark.rtl
@pytest.mark.parametrize("sim", SIMS)
def test_gemm_replay_equals_golden_model_and_cocotb(sim):
    """Results equal the golden model (held accumulator included), cycles equal
    perfmodel.gemm_cycles, and both equal what the cocotb runner returns for the same jobs."""
    need_sim(sim)
    jobs = _gemm_jobs(seed_for(f"replay-gemm-{sim}"))
    got = replay.gemm_jobs(jobs, CFG, sim=sim, build_dir=BUILD)
    model = Model(CFG)
    for job, (c, st) in zip(jobs, got):
        want = model.run(job)
        if want is None:
            assert c is None
        else:
            np.testing.assert_array_equal(c, want)
        m, k, n = job.shape
        assert st["cycles"] == perfmodel.gemm_cycles(CFG, m, k, n, requant=job.requant,
                                                     acc_in=job.acc_in, acc_out=job.acc_out)
    ref = simrun.gemm_many(jobs, config=CFG, sim=sim, build_dir=BUILD)
    for (c, st), (c2, st2) in zip(got, ref):
        assert st["cycles"] == st2["cycles"]
        assert (c is None and c2 is None) or np.array_equal(np.asarray(c, np.int64),
                                                            np.asarray(c2, np.int64))


@pytest.mark.rtl
@pytest.mark.parametrize("sim", SIMS)
def test_attention_replay_equals_golden_and_model(sim):
    """Two calls of three heads in one replay: every head equals golden.attention_int8, its
    cycles equal perfmodel.attention_cycles, and the second call reuses the LUT slots the
    first loaded (the slots' planning of run.plan_attention)."""
    need_sim(sim)
    rng = np.random.default_rng(seed_for(f"replay-att-{sim}"))
    loaded: dict = {}
    jobs = []
    for call in range(2):
        q, k, v = (rng.integers(-128, 128, (3, 5, 8), dtype=np.int8) for _ in range(3))
        _, js, _ = simrun.plan_attention(q, k, v, scale_q=0.05, scale_k=0.04, scale_v=0.03,
                                         scale_out=0.02, scale_s=[0.2, 0.3, 0.25], zp_v=3,
                                         zp_out=-2, config=CFG, loaded=loaded, tag0=3 * call)
        jobs += js
    # heads 0 and 2 share LUT slot 0 of the two: it reloads whenever its score scale changes
    assert [j.load_lut for j in jobs] == [True, True, True, True, False, True]
    got = replay.attention_jobs(jobs, CFG, sim=sim, build_dir=BUILD)
    o8 = CFG.osi8
    for job, (o, st) in zip(jobs, got):
        want = golden.attention_int8(job.q, job.k, job.v, job.params, F=o8.F, B=o8.B, G=o8.G,
                                     rounding=CFG.rounding)
        np.testing.assert_array_equal(o, want)
        m, n, _ = job.shape
        scores = golden.attention_scores(job.q, job.k, job.params, rounding=CFG.rounding)
        needs = perfmodel.attention_tile_needs(scores, golden.attention_mask(m, n), o8.B,
                                               CFG.attention.q_block)
        assert st["cycles"] == perfmodel.attention_cycles(CFG, m, n, needs,
                                                          load_lut=job.load_lut)
        assert st["status"].tag == job.tag


@pytest.mark.rtl
def test_replay_of_a_stalled_design_is_an_error():
    """A command whose data never comes: the run ends at the budget with an error that says
    the design stalled, not with a hang."""
    from npugen.sim.driver import encode

    cmd = encode(_gemm_jobs(1)[0], CFG).cmd
    with pytest.raises(replay.ReplayError, match=r"0 of 1 status beats after 2000 cycles "
                                                 r"\(budget 2000\): the design stalled"):
        replay.replay(CFG, {"s_axis_cmd": ([0], [cmd])}, 1, build_dir=BUILD, budget=2000)


@pytest.mark.rtl
def test_replay_rejects_a_port_the_top_lacks():
    with pytest.raises(InputError, match="the top has no source stream 's_axis_nope'"):
        replay.replay(CFG, {"s_axis_nope": ([0], [1])}, 1, build_dir=BUILD)
