# amaranth: UnusedElaboratable=no
"""Adversarial review of the fused OSI8 attention unit (``hw/attention.py``) and its host side.

Everything here runs in the Amaranth simulator through one cycle-driven harness
(:func:`run_raw`): every source is an AXI4-Stream master that holds ``tvalid`` and its payload
until the handshake, and K and V are driven by *independent* sources, so they may arrive at
different times. The harness also checks the unit's masters (``m_axis_o``, ``m_axis_status``)
keep ``tvalid`` and ``tdata`` stable until accepted, and it stops with ``hang`` when nothing
completes within a watchdog.

Tests that pass are checks that held up; a real bug is ``xfail(strict=True)`` naming it (see
build/rtl_bugs.md, "attention review").
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.hdl import ResetInserter, Signal
from amaranth.sim import Simulator

from npugen.hw import isa
from npugen.hw.attention import AttentionUnit
from npugen.sim.driver import AttentionJob, decode_status, encode_attention
from npugen.sim.golden.attention import (AttentionParams, attention_int8, attention_mask,
                                  attention_params, attention_scores, calibrate_score_scale)

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


# --------------------------------------------------------------------------------------------
# harness


def geometry(unit: AttentionUnit) -> SimpleNamespace:
    return SimpleNamespace(name="unit",
                           attention=SimpleNamespace(d=unit.d, heads=unit.heads, q_block=unit.P),
                           osi8=SimpleNamespace(F=unit.F, B=unit.B, N_max=unit.n_max, G=unit.G))


@dataclass
class Beats:
    """Raw beats of every input stream (all jobs concatenated)."""
    cmd: list = field(default_factory=list)      # int
    param: list = field(default_factory=list)    # (word, last)
    q: list = field(default_factory=list)        # (row, last)
    k: list = field(default_factory=list)        # (row, mask, last)
    v: list = field(default_factory=list)        # (row, last)
    rows: list = field(default_factory=list)     # output rows per job (for splitting)

    def add(self, s):
        self.cmd.append(s.cmd)
        self.param += [(int(w), i == len(s.param) - 1) for i, w in enumerate(s.param.tolist())]
        qd, kd, vd = s.q.data.view(np.int8), s.k.data.view(np.int8), s.v.data.view(np.int8)
        self.q += [([int(x) for x in qd[i]], bool(s.q.last[i])) for i in range(len(s.q))]
        self.k += [([int(x) for x in kd[j]], int(s.k.user[j]), bool(s.k.last[j]))
                   for j in range(len(s.k))]
        self.v += [([int(x) for x in vd[j]], bool(s.v.last[j])) for j in range(len(s.v))]
        self.rows.append(s.m)
        return self


def beats_for(unit, jobs):
    b = Beats()
    for j in jobs:
        b.add(encode_attention(j, geometry(unit)))
    return b


@dataclass
class Result:
    rows: list            # (cycle, row, last)
    statuses: list        # (cycle, Status)
    hang: bool
    cycles: int
    violations: list      # AXI rule violations seen on the unit's masters
    taken: dict           # beats taken per input stream


def run_raw(unit, beats: Beats, *, gaps=None, o_ready=None, status_ready=None, seed=0,
            watchdog=2000, reset=None, n_status=None, extra=0):
    """Drive ``unit`` cycle by cycle.

    gaps : dict stream -> probability that a source idles instead of offering its next beat.
    o_ready, status_ready : callable(cycle, rng) -> bool; default always ready.
    reset : dict cycle -> list of stream names whose pointers are reset to given positions
        (see ``reset_plan``); here a callable(cycle) -> None or dict(new pointers), asserting
        the synchronous reset for that cycle.
    """
    rng = random.Random(seed)
    gaps = gaps or {}
    rst = Signal()
    dut = ResetInserter({"sync": rst})(unit)
    streams = {"cmd": beats.cmd, "param": beats.param, "q": beats.q, "k": beats.k,
               "v": beats.v}
    ports = {"cmd": unit.cmd, "param": unit.param, "q": unit.q, "k": unit.k, "v": unit.v}
    ptr = {s: 0 for s in streams}
    holding = {s: False for s in streams}
    out = Result([], [], False, 0, [], {})
    n_status = len(beats.cmd) if n_status is None else n_status

    def drive(ctx, s):
        port, lst, i = ports[s], streams[s], ptr[s]
        if i >= len(lst):
            ctx.set(port.valid, 0)
            holding[s] = False
            return
        if not holding[s]:
            if rng.random() < gaps.get(s, 0.0):
                ctx.set(port.valid, 0)
                return
            holding[s] = True
        beat = lst[i]
        if s == "cmd":
            ctx.set(port.payload, beat)
        elif s == "param":
            ctx.set(port.payload.data, beat[0])
            ctx.set(port.payload.last, beat[1])
        elif s == "k":
            ctx.set(port.payload.data, beat[0])
            ctx.set(port.payload.mask, beat[1])
            ctx.set(port.payload.last, beat[2])
        else:
            ctx.set(port.payload.data, beat[0])
            ctx.set(port.payload.last, beat[1])
        ctx.set(port.valid, 1)

    async def tb(ctx):
        idle = 0
        prev_o = prev_s = None
        cyc = 0
        after_done = None
        while True:
            new = reset(cyc) if reset else None
            if new is not None:
                ctx.set(rst, 1)
                for s in streams:
                    ctx.set(ports[s].valid, 0)
                    holding[s] = False
                ptr.update(new)
                prev_o = prev_s = None
                await ctx.tick()
                ctx.set(rst, 0)
                cyc += 1
                continue
            for s in streams:
                drive(ctx, s)
            ordy = o_ready(cyc, rng) if o_ready else True
            srdy = status_ready(cyc, rng) if status_ready else True
            ctx.set(unit.o.ready, ordy)
            ctx.set(unit.status.ready, srdy)
            sample = [ports[s].ready for s in streams] + [
                unit.o.valid, unit.o.payload.data, unit.o.payload.last,
                unit.status.valid, unit.status.payload]
            _, _, *vals = await ctx.tick().sample(*sample)
            cyc += 1
            readys = vals[:len(streams)]
            ov, od, ol, sv, sd = vals[len(streams):]
            progress = False
            for s, r in zip(streams, readys):
                if r and holding[s]:
                    ptr[s] += 1
                    holding[s] = False
                    progress = True
            # the unit's masters: valid and payload held until the handshake
            if prev_o is not None and not ov:
                out.violations.append(f"cycle {cyc}: o.valid dropped without handshake")
            if prev_o is not None and ov and prev_o != (list(od), ol):
                out.violations.append(f"cycle {cyc}: o payload changed while valid")
            if prev_s is not None and not sv:
                out.violations.append(f"cycle {cyc}: status.valid dropped without handshake")
            if prev_s is not None and sv and prev_s != int(sd):
                out.violations.append(f"cycle {cyc}: status payload changed while valid")
            prev_o = (list(od), ol) if (ov and not ordy) else None
            prev_s = int(sd) if (sv and not srdy) else None
            if ov and ordy:
                out.rows.append((cyc, [int(x) for x in od], bool(ol)))
                progress = True
            if sv and srdy:
                out.statuses.append((cyc, decode_status(int(sd))))
                progress = True
            idle = 0 if progress else idle + 1
            if len(out.statuses) >= n_status:
                after_done = cyc if after_done is None else after_done
                if cyc - after_done >= extra:
                    break
            if idle > watchdog:
                out.hang = True
                break
        out.cycles = cyc
        out.taken = dict(ptr)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return out


def split(unit, beats, res):
    """Output rows per job as int8 arrays (checks tlast placement)."""
    outs, pos = [], 0
    for m in beats.rows:
        chunk = res.rows[pos:pos + m]
        assert [r[2] for r in chunk] == [False] * (m - 1) + [True], "output tlast"
        outs.append(np.array([r[1] for r in chunk], dtype=np.int8).reshape(m, unit.d))
        pos += m
    return outs


def golden(unit, job):
    return attention_int8(job.q, job.k, job.v, job.params, F=unit.F, B=unit.B, G=unit.G,
                          mask=job.mask, causal=job.causal, rounding=unit.rounding)


def check_jobs(unit, jobs, **kw):
    beats = beats_for(unit, jobs)
    res = run_raw(unit, beats, **kw)
    assert not res.hang, f"hang: {res.taken}"
    assert not res.violations, res.violations[:3]
    outs = split(unit, beats, res)
    for i, (job, out, (_, st)) in enumerate(zip(jobs, outs, res.statuses)):
        assert st.error == isa.Error.OK and st.tag == job.tag, f"job {i}: {st}"
        np.testing.assert_array_equal(out, golden(unit, job), err_msg=f"job {i}")
    return res, outs


def rand_job(rng, m, n, d, *, mask=None, causal=False, head=0, load_lut=True, spread=1.0,
             tag=0, zp_v=None, zp_o=None, out_scale=None):
    q = rng.integers(-128, 128, (m, d), dtype=np.int8)
    k = rng.integers(-128, 128, (n, d), dtype=np.int8)
    v = rng.integers(-128, 128, (n, d), dtype=np.int8)
    ss = calibrate_score_scale(q, k, 0.02, 0.03) * spread
    so = 0.05 / float(rng.uniform(0.1, 0.6)) if out_scale is None else out_scale
    p = attention_params(0.02, 0.03, 0.05, ss, so, d,
                         zp_v=int(rng.integers(-30, 31)) if zp_v is None else zp_v,
                         zp_o=int(rng.integers(-20, 21)) if zp_o is None else zp_o)
    if isinstance(mask, str) and mask == "general":
        mask = rng.random((m, n)) < 0.7
    elif isinstance(mask, str) and mask == "padding":
        mask = rng.random(n) < 0.7
    return AttentionJob(q, k, v, p, mask=mask, causal=causal, head=head, load_lut=load_lut,
                        tag=tag)


def direct_job(scores, vals, *, c=0.05, zp_v=0, zp_o=0, m0_o=1 << 30, sh_o=1, mask=None,
               causal=False, q=None, head=0, load_lut=True, tag=0, m0_s=1 << 30, sh_s=1):
    """A job whose scores are given directly: lane 0 of Q is 1 and lane 0 of K holds the
    score, with the identity score multiplier (M0_s = 2^30, sh_s = 1)."""
    vals = np.asarray(vals, dtype=np.int8)
    n, d = vals.shape
    if q is None:
        q = np.zeros((1, d), np.int8)
        q[0, 0] = 1
    k = np.zeros((n, d), np.int8)
    k[:, 0] = scores
    p = AttentionParams(score_multiplier=m0_s, score_shift=sh_s, c=c, zp_v=zp_v,
                        out_multiplier=m0_o, out_shift=sh_o, zp_o=zp_o)
    return AttentionJob(np.asarray(q, np.int8), k, vals, p, mask=mask, causal=causal,
                        head=head, load_lut=load_lut, tag=tag)


# --------------------------------------------------------------------------------------------
# fixed bugs (review findings 1 and 2)


def test_status_payload_stable_while_valid():
    """Review finding 1: the status word (its cycle count included) holds still while the
    status waits for tready, and the count does not depend on the status consumer."""
    rng = np.random.default_rng(1)
    unit = AttentionUnit(d=2, q_block=2, heads=1, F=16, B=2, n_max=8, G=16)
    job = rand_job(rng, 3, 5, 2, tag=9)
    beats = beats_for(unit, [job])
    fast = run_raw(AttentionUnit(d=2, q_block=2, heads=1, F=16, B=2, n_max=8, G=16), beats)
    # the status consumer is busy for 10 cycles once the status is offered (~cycle fast.cycles)
    slow = run_raw(unit, beats, status_ready=lambda c, r: c >= fast.cycles + 10)
    assert not slow.hang
    assert slow.violations == []
    assert slow.statuses[0][1].cycles == fast.statuses[0][1].cycles


# --------------------------------------------------------------------------------------------
# risks / undocumented behaviour


def test_unloaded_head_is_rejected():
    """Review finding 2: load_lut = 0 on a head whose table was never loaded is rejected
    with BAD_LUT and consumes no data beat."""
    rng = np.random.default_rng(9)
    unit = AttentionUnit(d=2, q_block=2, heads=2, F=16, B=2, n_max=8, G=16)
    job = rand_job(rng, 3, 5, 2, tag=3, head=1, load_lut=False, zp_o=5)
    res = run_raw(unit, beats_for(unit, [job]), n_status=1)
    (_, st), = res.statuses
    assert st.error == isa.Error.BAD_LUT and st.tag == 3
    assert res.taken.get("param", 0) == res.taken.get("q", 0) == res.taken.get("k", 0) == 0
    # loading it makes the same head usable; a later job may then reuse it
    loaded = dataclasses.replace(job, load_lut=True, tag=4)
    reuse = dataclasses.replace(job, tag=5)
    check_jobs(AttentionUnit(d=2, q_block=2, heads=2, F=16, B=2, n_max=8, G=16),
               [loaded, reuse])


def test_k_before_v_source_deadlocks():
    """Revealing: K and V are taken in one joint handshake (tready = K.tvalid & V.tvalid &
    room). A host that sends a block's K beats before its V beats (the order the "Stream
    order" section lists them in) never gets its first K beat accepted. Legal AXI4-Stream, but
    the two streams must come from independent (or deeply buffered) sources."""
    rng = np.random.default_rng(2)
    unit = AttentionUnit(d=1, q_block=1, heads=1, F=16, B=2, n_max=8, G=16)
    job = rand_job(rng, 1, 4, 1)
    beats = beats_for(unit, [job])
    # the V source only starts once every K beat is accepted: model it as V never valid
    res = run_raw(unit, beats, gaps={"v": 1.0}, watchdog=200)
    assert res.hang and res.taken["k"] == 0 and res.taken["v"] == 0


# --------------------------------------------------------------------------------------------
# what held up


def test_kv_independent_arrival_and_backpressure_everywhere():
    """K and V from independent sources with different stall rates, stalls on Q, param, cmd,
    the output and the status; q_block > d (epilogue bank rule), B = 1, ragged blocks/tiles."""
    rng = np.random.default_rng(11)
    for d, P, B in ((1, 4, 1), (2, 3, 2)):
        jobs = [rand_job(rng, m, n, d, tag=i, head=i % 2, causal=bool(i % 2),
                         mask=("general", None, "padding")[i % 3],
                         spread=float(rng.choice([0.2, 1, 4])))
                for i, (m, n) in enumerate([(1, 1), (P, 9), (2 * P + 1, B + 1), (1, 12)])]
        unit = AttentionUnit(d=d, q_block=P, heads=2, F=16, B=B, n_max=12, G=16)
        check_jobs(unit, jobs, seed=d, gaps={"k": 0.3, "v": 0.7, "q": 0.4, "param": 0.2,
                                             "cmd": 0.5},
                   o_ready=lambda c, r: (c // 23) % 2 == 0)


def test_reserved_bits_each_rejected_and_consume_nothing():
    rng = np.random.default_rng(9)
    unit = AttentionUnit(d=2, q_block=2, heads=2, F=16, B=2, n_max=8, G=16)
    good = rand_job(rng, 3, 5, 2, tag=200)
    b = beats_for(unit, [good])
    mask = isa.reserved_mask(isa.ATT_CMD_FIELDS, isa.CMD_WIDTH)
    bits = [i for i in range(isa.CMD_WIDTH) if mask >> i & 1]
    assert bits == list(range(18, 24)) + list(range(104, 128))
    bad = [((b.cmd[0] | (1 << i)) & ~(0xFF << 24)) | (i << 24) for i in bits]
    res = run_raw(unit, Beats(cmd=bad + b.cmd, param=b.param, q=b.q, k=b.k, v=b.v,
                              rows=b.rows))
    assert not res.hang
    assert [(s.error, s.tag) for _, s in res.statuses] == (
        [(isa.Error.BAD_RESERVED, i) for i in bits] + [(isa.Error.OK, 200)])
    np.testing.assert_array_equal(split(unit, b, res)[0], golden(unit, good))


@pytest.mark.parametrize("stream", ["param", "q", "k", "v"])
@pytest.mark.parametrize("mode", ["early", "missing"])
def test_frame_error_each_stream_then_clean_job(stream, mode):
    rng = np.random.default_rng(hash((stream, mode)) & 0xFFFF)
    unit = AttentionUnit(d=2, q_block=2, heads=2, F=16, B=2, n_max=8, G=16)
    j1, good = rand_job(rng, 3, 5, 2, tag=1), rand_job(rng, 3, 5, 2, tag=7)
    bb = beats_for(unit, [j1, good])
    lst = getattr(bb, stream)
    idx = next(i for i, x in enumerate(lst) if x[-1])     # first tlast of job 1
    pos, val = (idx - 1, True) if mode == "early" else (idx, False)
    beat = list(lst[pos])
    beat[-1] = val
    lst[pos] = tuple(beat)
    res = run_raw(unit, bb)
    assert not res.hang
    assert [(s.error, s.tag) for _, s in res.statuses] == [(isa.Error.FRAME, 1),
                                                          (isa.Error.OK, 7)]
    np.testing.assert_array_equal(split(unit, bb, res)[1], golden(unit, good))


@pytest.mark.parametrize("index,raw", [(1, 31), (1, -32), (3, 47), (3, -16)])
def test_bad_param_runs_and_next_job_clean(index, raw):
    """sh_s outside [-31, 30]; sh_o giving k = 0 and k = 63 (G = 16)."""
    rng = np.random.default_rng(index * 100 + raw)
    unit = AttentionUnit(d=2, q_block=2, heads=1, F=16, B=2, n_max=8, G=16)
    j1, j2 = rand_job(rng, 3, 5, 2, tag=1), rand_job(rng, 2, 3, 2, tag=2)
    b = beats_for(unit, [j1, j2])
    b.param[index] = (raw & 0xFF, b.param[index][1])
    res = run_raw(unit, b)
    assert not res.hang
    assert [(s.error, s.tag) for _, s in res.statuses] == [(isa.Error.BAD_PARAM, 1),
                                                          (isa.Error.OK, 2)]
    np.testing.assert_array_equal(split(unit, b, res)[1], golden(unit, j2))


def test_reset_in_every_phase_then_clean_job():
    """Synchronous reset at cycles spread over a whole job (PARAM with the LUT, LOADQ, KEYS,
    RESCALE, EPI, output pushes with a stalled output), then a clean job from scratch."""
    rng = np.random.default_rng(5)
    mk = lambda: AttentionUnit(d=2, q_block=2, heads=2, F=16, B=2, n_max=16, G=16)  # noqa
    a = rand_job(rng, 5, 9, 2, tag=1, spread=3.0, mask="general", causal=True)
    good = rand_job(rng, 3, 7, 2, tag=2, head=1)
    stall = lambda c, r: (c // 7) % 3 != 0  # noqa: E731
    ba = beats_for(mk(), [a])
    alone = run_raw(mk(), ba, o_ready=stall)
    both = beats_for(mk(), [a, good])
    starts = {"cmd": 1, "param": len(ba.param), "q": len(ba.q), "k": len(ba.k),
              "v": len(ba.v)}
    # cycles 0 .. 260: the LUT load; the rest the datapath and the output
    for x in [3, 150, 262, 266, 272, 280, 290, 300, 310, 320, 330, alone.cycles - 4]:
        unit = mk()
        res = run_raw(unit, both, reset=lambda c, x=x: dict(starts) if c == x else None,
                      n_status=1, o_ready=stall, watchdog=600)
        assert not res.hang, x
        st = [s for c, s in res.statuses if c > x]
        rows = [r[1] for r in res.rows if r[0] > x]
        assert [(s.error, s.tag) for s in st] == [(isa.Error.OK, 2)], x
        np.testing.assert_array_equal(np.array(rows, np.int8), golden(unit, good), str(x))


def test_overflow_corners_small_F_many_rescales():
    """F = 8 with N_max = 257 (W_A = 25: 255·N_max·2^F = 2^24 - 2^8, the thinnest margin),
    B = 1 and increasing scores (255 max updates), V at ±max against zp_v at the opposite
    extreme, G = 30 and 1, output shift k = 1 and 62, tiny and large LUT scales."""
    cases = []
    n = 257
    for G in (30, 1):
        jobs = []
        for c, (zp_v, vv) in ((1e-6, (127, -128)), (0.3, (-128, 127))):
            sc = np.clip(np.arange(n) - 128, -128, 127)
            jobs.append(direct_job(sc, [[vv]] * n, c=c, zp_v=zp_v, sh_o=G + 30,
                                   tag=len(jobs)))                      # k = 1
            jobs.append(direct_job(np.full(n, 5), [[vv]] * n, c=c, zp_v=zp_v, sh_o=G - 31,
                                   zp_o=-128, tag=len(jobs)))            # k = 62
        cases.append((G, jobs))
    for G, jobs in cases:
        unit = AttentionUnit(d=1, q_block=1, heads=1, F=8, B=1, n_max=n, G=G)
        assert (unit.W_A, unit.W_L) == (25, 17)
        check_jobs(unit, jobs, watchdog=3000)


def test_negative_rounding_ties():
    """Divider ties (4 equal scores, G = 1: A·2^G/L = x.5, negative) and output ties
    (M0_o = 2^30, k = 31: q/2), driven directly."""
    from npugen.sim.golden.attention import attention_state
    rng = np.random.default_rng(4)
    jobs, ties = [], 0
    for it in range(14):
        sc = np.full(4, int(rng.integers(-128, 128)))
        j = direct_job(sc, rng.integers(-128, 128, (4, 2)), c=0.1,
                       zp_v=int(rng.integers(-128, 128)),
                       m0_o=(1 << 30) if it % 2 else int(rng.integers(1 << 30, 1 << 31)),
                       sh_o=1, zp_o=int(rng.integers(-5, 5)), tag=it)
        st = attention_state(j.q, j.k, j.v, j.params, F=8, B=2)[0]
        ties += sum(a < 0 and ((a << 2) + st.L) % (2 * st.L) == 0 for a in st.A)
        jobs.append(j)
    assert ties >= 3
    check_jobs(AttentionUnit(d=2, q_block=1, heads=1, F=8, B=2, n_max=8, G=1), jobs)


@pytest.mark.parametrize("rounding", ["single", "double"])
def test_score_requant_extremes(rounding):
    """M0_s = 0 (all scores 0), sh_s = -31 and 30, the extreme dot product 3·16384."""
    rng = np.random.default_rng(2)
    jobs = []
    for m0 in (0, (1 << 31) - 1):
        for sh in (-31, 0, 30):
            q = rng.integers(-128, 128, (2, 3), dtype=np.int8)
            k = rng.integers(-128, 128, (5, 3), dtype=np.int8)
            q[0], k[0] = -128, -128
            p = AttentionParams(score_multiplier=m0, score_shift=sh, c=0.05, zp_v=-128,
                                out_multiplier=(1 << 31) - 1,
                                out_shift=int(rng.integers(-10, 10)), zp_o=127)
            jobs.append(AttentionJob(q, k, rng.integers(-128, 128, (5, 3), dtype=np.int8), p,
                                     tag=len(jobs)))
    check_jobs(AttentionUnit(d=3, q_block=2, heads=1, F=20, B=2, n_max=8, G=16,
                             rounding=rounding), jobs)


def test_mask_corners():
    """Exactly one attended key; a masked 127 that is the only 127 (must not move the max);
    causal with M > N and M < N; a fully masked query next to live ones."""
    rng = np.random.default_rng(6)
    n = 7
    sc = rng.integers(-40, 40, n)
    sc[3] = 127
    vals = rng.integers(-128, 128, (n, 2))
    q = np.zeros((3, 2), np.int8)
    q[:, 0] = 1
    one = np.zeros((3, n), bool)
    one[0, 5] = True                         # query 0: exactly one key
    one[1] = True
    one[1, 3] = False                        # query 1: the only 127 masked
    # query 2: nothing
    jobs = [direct_job(sc, vals, q=q, mask=one, c=0.2, zp_o=7, tag=0),
            direct_job(sc, vals, q=np.ones((9, 2), np.int8), causal=True, c=0.05, tag=1),
            direct_job(sc, vals, q=np.ones((2, 2), np.int8), causal=True, c=0.05, tag=2)]
    unit = AttentionUnit(d=2, q_block=2, heads=1, F=16, B=3, n_max=8, G=16)
    _, outs = check_jobs(unit, jobs)
    assert np.all(outs[0][2] == 7)


def _cfg(unit):
    return SimpleNamespace(name="u", rounding=unit.rounding,
                           attention=SimpleNamespace(d=unit.d, q_block=unit.P, heads=unit.heads,
                                                     rescale_width=unit.RL),
                           osi8=SimpleNamespace(F=unit.F, B=unit.B, N_max=unit.n_max,
                                                G=unit.G))


def test_cycle_model_edge_shapes():
    """perfmodel.attention_cycles equals the status cycles: fully masked tiles, q_block > d,
    tiles of one key, a rescale on the last tile of a block followed by another block."""
    from npugen.sim import perfmodel
    rng = np.random.default_rng(3)
    cases = []
    # q_block > d, B = 1, fully masked leading tiles
    u = AttentionUnit(d=1, q_block=3, heads=1, F=16, B=1, n_max=16, G=12)
    mask = np.ones((7, 9), bool)
    mask[:, :4] = False
    cases.append((u, rand_job(rng, 7, 9, 1, mask=mask, spread=3.0)))
    # rescale on the last tile of each block (increasing scores), several blocks
    u = AttentionUnit(d=2, q_block=2, heads=1, F=16, B=3, n_max=16, G=12, rescale_lanes=1)
    j = direct_job(np.array([-5, -4, -3, 0, 1, 2, 9, 10]), rng.integers(-128, 128, (8, 2)),
                   q=np.ones((5, 2), np.int8))
    cases.append((u, j))
    # n = 1 and n not a multiple of B, load_lut = 0 (head preloaded by the same job first)
    u = AttentionUnit(d=3, q_block=2, heads=1, F=16, B=4, n_max=16, G=12, rescale_lanes=3)
    j = rand_job(rng, 4, 1, 3)
    cases.append((u, j))
    cases.append((u, rand_job(rng, 5, 11, 3, mask="general", spread=5.0)))
    for unit, job in cases:
        beats = beats_for(unit, [job])
        res = run_raw(unit, beats)
        assert not res.hang
        np.testing.assert_array_equal(split(unit, beats, res)[0], golden(unit, job))
        s = attention_scores(job.q, job.k, job.params, rounding=unit.rounding)
        msk = attention_mask(len(job.q), len(job.k), job.mask, job.causal)
        needs = perfmodel.attention_tile_needs(s, msk, unit.B, unit.P)
        assert res.statuses[0][1].cycles == perfmodel.attention_cycles(
            _cfg(unit), len(job.q), len(job.k), needs, load_lut=job.load_lut)
