# amaranth: UnusedElaboratable=no
"""Fast checks of ``npugen.hw.attention.AttentionUnit`` in the Amaranth simulator, against the golden
model ``npugen.sim.golden.attention.attention_int8`` (bit-exact), and of its constructor.

The beats come from the host driver (``npugen.sim.driver.encode_attention``), so these tests also tie
the driver's stream order to the RTL without a Verilog simulator. Sizes are tiny (the Python
simulator evaluates every product of every lane); the RTL regression on emitted Verilog is
``tests/test_attention_rtl.py``.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.sim import Simulator

from npugen.hw import isa
from npugen.hw.attention import AttentionUnit, attention_widths
from npugen.sim.driver import AttentionJob, decode_status, encode_attention
from npugen.sim.golden.attention import attention_int8, attention_params, calibrate_score_scale

# Units made only for their properties, or whose constructor raises, are never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def _geometry(unit: AttentionUnit) -> SimpleNamespace:
    """The configuration attributes the driver reads, from a unit."""
    return SimpleNamespace(name="unit",
                           attention=SimpleNamespace(d=unit.d, heads=unit.heads, q_block=unit.P),
                           osi8=SimpleNamespace(F=unit.F, B=unit.B, N_max=unit.n_max, G=unit.G))


def simulate(unit: AttentionUnit, jobs, *, backpressure: bool = False, seed: int = 0):
    """Run encoded jobs back to back through ``unit``; return [(out int8 (M, d), Status)]."""
    cfg = _geometry(unit)
    streams = [encode_attention(j, cfg) for j in jobs]
    rng = random.Random(seed)
    rows: list[list[int]] = []
    lasts: list[bool] = []
    statuses = []
    d = unit.d

    async def feed_cmd_param(ctx):
        for s in streams:
            ctx.set(unit.cmd.payload, s.cmd)
            ctx.set(unit.cmd.valid, 1)
            await ctx.tick().until(unit.cmd.ready)
            ctx.set(unit.cmd.valid, 0)
            for i, w in enumerate(s.param.tolist()):
                ctx.set(unit.param.payload.data, w)
                ctx.set(unit.param.payload.last, i == len(s.param) - 1)
                ctx.set(unit.param.valid, 1)
                await ctx.tick().until(unit.param.ready)
            ctx.set(unit.param.valid, 0)

    async def feed_q(ctx):
        for s in streams:
            data = s.q.data.view(np.int8)
            for i in range(len(s.q)):
                if backpressure and rng.random() < 0.3:
                    await ctx.tick()
                ctx.set(unit.q.payload.data, [int(x) for x in data[i]])
                ctx.set(unit.q.payload.last, bool(s.q.last[i]))
                ctx.set(unit.q.valid, 1)
                await ctx.tick().until(unit.q.ready)
                ctx.set(unit.q.valid, 0)

    async def feed_kv(ctx):
        for s in streams:
            kd, vd = s.k.data.view(np.int8), s.v.data.view(np.int8)
            for j in range(len(s.k)):
                if backpressure and rng.random() < 0.3:
                    await ctx.tick()
                ctx.set(unit.k.payload.data, [int(x) for x in kd[j]])
                ctx.set(unit.k.payload.mask, int(s.k.user[j]))
                ctx.set(unit.k.payload.last, bool(s.k.last[j]))
                ctx.set(unit.v.payload.data, [int(x) for x in vd[j]])
                ctx.set(unit.v.payload.last, bool(s.v.last[j]))
                ctx.set(unit.k.valid, 1)
                ctx.set(unit.v.valid, 1)
                await ctx.tick().until(unit.k.ready)
                ctx.set(unit.k.valid, 0)
                ctx.set(unit.v.valid, 0)

    async def sink(ctx):
        ctx.set(unit.status.ready, 1)
        while True:
            ctx.set(unit.o.ready, (not backpressure) or rng.random() < 0.7)
            await ctx.tick()

    async def monitor(ctx):
        async for _, _, ov, ordy, od, ol, sv, sr, sd in ctx.tick().sample(
                unit.o.valid, unit.o.ready, unit.o.payload.data, unit.o.payload.last,
                unit.status.valid, unit.status.ready, unit.status.payload):
            if ov and ordy:
                rows.append([int(x) for x in od])
                lasts.append(bool(ol))
            if sv and sr:
                statuses.append(decode_status(int(sd)))
                if len(statuses) == len(streams):
                    return

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    for tb in (feed_cmd_param, feed_q, feed_kv):
        sim.add_testbench(tb, background=True)
    sim.add_testbench(sink, background=True)
    sim.add_testbench(monitor)
    sim.run()
    out, pos = [], 0
    for s, st in zip(streams, statuses):
        got = np.array(rows[pos:pos + s.m], dtype=np.int8).reshape(s.m, d)
        assert lasts[pos:pos + s.m] == [False] * (s.m - 1) + [True], "output tlast"
        pos += s.m
        out.append((got, st))
    assert pos == len(rows), "more output rows than the jobs' M"
    return out


def _job(rng, m, n, d, *, mask=None, causal=False, head=0, load_lut=True, spread=1.0,
         tag=0, zp_v=None, zp_o=None):
    q = rng.integers(-128, 128, (m, d), dtype=np.int8)
    k = rng.integers(-128, 128, (n, d), dtype=np.int8)
    v = rng.integers(-128, 128, (n, d), dtype=np.int8)
    ss = calibrate_score_scale(q, k, 0.02, 0.03) * spread
    p = attention_params(0.02, 0.03, 0.05, ss, 0.05 / float(rng.uniform(0.1, 0.6)), d,
                         zp_v=int(rng.integers(-30, 31)) if zp_v is None else zp_v,
                         zp_o=int(rng.integers(-20, 21)) if zp_o is None else zp_o)
    if mask == "general":
        mask = rng.random((m, n)) < 0.7
    elif mask == "padding":
        mask = rng.random(n) < 0.7
    return AttentionJob(q, k, v, p, mask=mask, causal=causal, head=head, load_lut=load_lut,
                        tag=tag)


def _check(unit, jobs, **kw):
    res = simulate(unit, jobs, **kw)
    for i, (job, (out, st)) in enumerate(zip(jobs, res)):
        assert st.error == isa.Error.OK and st.tag == job.tag, f"job {i}: status {st}"
        want = attention_int8(job.q, job.k, job.v, job.params, F=unit.F, B=unit.B, G=unit.G,
                              mask=job.mask, causal=job.causal, rounding=unit.rounding)
        np.testing.assert_array_equal(out, want, err_msg=f"job {i}")
    return res


@pytest.mark.parametrize("d,P,B,F,G,rounding,RL", [
    (1, 1, 1, 16, 16, "single", 1),      # d = 1, B = 1 (every key its own tile)
    (2, 3, 3, 24, 16, "double", 1),      # B and q_block not powers of 2
    (3, 2, 4, 20, 12, "single", 1),
    (4, 2, 2, 24, 16, "single", 2),      # two numerators rescaled per cycle
    (6, 3, 1, 24, 16, "single", 6),      # all at once (B = 1: many rescales)
])
def test_unit_matches_golden(d, P, B, F, G, rounding, RL):
    """Ragged query blocks and tiles, no mask, padding and general masks, causal."""
    rng = np.random.default_rng(d * 100 + P * 10 + B)
    unit = AttentionUnit(d=d, q_block=P, heads=2, F=F, B=B, n_max=64, G=G, rounding=rounding,
                         rescale_lanes=RL)
    jobs = [
        _job(rng, P + 1, 2 * B + 1, d, tag=1),
        _job(rng, 2 * P + 1, B + 2, d, mask="general", causal=True, head=1, tag=2,
             spread=0.5),
        _job(rng, 3, 5, d, mask="padding", tag=3, spread=2.0),
        _job(rng, 1, 1, d, tag=4),
    ]
    _check(unit, jobs)


def test_unit_heads_masks_and_backpressure():
    """Two heads: a LUT reused without reloading; a fully masked row gives zp_o; random
    stalls on every input and on the output."""
    rng = np.random.default_rng(7)
    unit = AttentionUnit(d=2, q_block=2, heads=2, F=24, B=3, n_max=16, G=16)
    a = _job(rng, 3, 7, 2, head=0, tag=10, zp_o=5)
    b = _job(rng, 2, 4, 2, head=1, tag=11, spread=0.3)
    mask = np.ones((3, 7), dtype=bool)
    mask[1] = False
    a.mask = mask
    again = AttentionJob(rng.integers(-128, 128, (3, 2), dtype=np.int8),
                         rng.integers(-128, 128, (5, 2), dtype=np.int8),
                         rng.integers(-128, 128, (5, 2), dtype=np.int8), a.params, head=0,
                         load_lut=False, tag=12)
    res = _check(unit, [a, b, again], backpressure=True, seed=3)
    assert np.all(res[0][0][1] == 5), "fully masked row is not zp_o"


def test_unit_bad_command_then_good_job():
    """A BAD_SHAPE command (n > N_max) consumes nothing; the next job is exact."""
    rng = np.random.default_rng(8)
    unit = AttentionUnit(d=1, q_block=2, heads=1, F=16, B=2, n_max=8, G=16)
    good = _job(rng, 3, 5, 1, tag=21)
    cfg = _geometry(unit)
    s = encode_attention(good, cfg)
    f = isa.ATT_CMD_FIELDS["n"]
    bad_word = (s.cmd & ~(((1 << f.width) - 1) << f.lsb)) | (9 << f.lsb)
    bad_word = (bad_word & ~(0xFF << 24)) | (20 << 24)
    statuses = []

    async def tb(ctx):
        ctx.set(unit.status.ready, 1)
        ctx.set(unit.cmd.payload, bad_word)
        ctx.set(unit.cmd.valid, 1)
        await ctx.tick().until(unit.cmd.ready)
        ctx.set(unit.cmd.valid, 0)
        for _ in range(20):
            assert not ctx.get(unit.param.ready), "a rejected command takes parameters"
            if ctx.get(unit.status.valid):
                statuses.append(decode_status(ctx.get(unit.status.payload)))
                await ctx.tick()
                break
            await ctx.tick()

    sim = Simulator(unit)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert statuses and statuses[0].error == isa.Error.BAD_SHAPE and statuses[0].tag == 20
    _check(unit, [good])


def test_widths_and_latencies():
    w = attention_widths(24, 32768, 16, 64)
    assert w["W_L"] == 40 and w["W_A"] == 48 and w["W_S"] == 22
    unit = AttentionUnit(d=4, q_block=2, heads=1, F=24, B=16, n_max=32768, G=16)
    assert unit.latencies == {"attention_score": unit.score_latency,
                              "attention_divider": unit.div_latency}
    assert unit.score_latency == 8     # products, adder tree, requantizer (6 stages)
    assert AttentionUnit(d=4, rounding="double").score_latency == 7      # (5 stages)
    assert unit.div_latency == unit.QB + 4


@pytest.mark.parametrize("kwargs,exc,message", [
    (dict(d=1.5), TypeError, "d must be an integer, not 1.5"),
    (dict(d=True), TypeError, "d must be an integer, not True"),
    (dict(d=0), ValueError, "d must be an integer from 1 to 256, not 0"),
    (dict(d=257), ValueError, "d must be an integer from 1 to 256, not 257"),
    (dict(q_block=65), ValueError, "q_block must be an integer from 1 to 64, not 65"),
    (dict(heads=0), ValueError, "heads must be an integer from 1 to 256, not 0"),
    (dict(heads="2"), TypeError, "heads must be an integer, not '2'"),
    (dict(F=7), ValueError, "F must be an integer from 8 to 30, not 7"),
    (dict(B=0), ValueError, "B must be an integer from 1 to 4096, not 0"),
    (dict(n_max=0), ValueError, "N_max must be an integer from 1 to 16777216, not 0"),
    (dict(G=31), ValueError, "G must be an integer from 1 to 30, not 31"),
    (dict(rounding="up"), ValueError, "Rounding must be one of"),
    (dict(d=6, rescale_lanes=4), ValueError, "rescale_lanes must divide d (6), not 4"),
    (dict(d=4, rescale_lanes=5), ValueError, "rescale_lanes must be an integer from 1 to 4, not 5"),
])
def test_constructor_errors(kwargs, exc, message):
    with pytest.raises(exc) as info:
        AttentionUnit(**kwargs)
    assert str(info.value).startswith(message)
