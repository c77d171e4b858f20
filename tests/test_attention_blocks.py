# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the attention unit's stages (hw/attention.py), each on its own,
against the golden model (sim.golden.attention, sim.golden.softmax helpers) or hand values."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import unsigned
from amaranth.lib import data
from amaranth.sim import Simulator

from npugen.hw import isa
from npugen.hw.attention import (AttentionAccumulator, AttentionBackEnd, AttentionDivider,
                                 AttentionFrontEnd, AttentionJobControl, AttentionLut,
                                 AttentionOutputQueue, AttentionOutputRequant, AttentionScores,
                                 AttentionTileBuffer, AttentionUnit, attention_widths)
from npugen.sim.golden.attention import attention_params, attention_scores
from npugen.sim.golden.softmax import make_lut, round_div, rshift_round

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

STAGES = (AttentionJobControl, AttentionLut, AttentionFrontEnd, AttentionScores,
          AttentionTileBuffer, AttentionBackEnd, AttentionAccumulator, AttentionDivider,
          AttentionOutputRequant, AttentionOutputQueue)


def _run(dut, *testbenches):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in testbenches:
        sim.add_testbench(tb)
    sim.run()


def test_report_blocks():
    """Every stage, and the unit, counts toward the "attention" block of the area report."""
    for cls in STAGES + (AttentionUnit,):
        assert cls.report_block == "attention"


def test_unit_latencies_are_its_stages():
    for rounding in ("single", "double"):
        unit = AttentionUnit(d=4, rounding=rounding)
        # products, adder tree, requantizer (6 stages single, 5 double)
        assert unit.score_latency == AttentionScores.latency_of(rounding) == {
            "single": 8, "double": 7}[rounding]
        assert unit.div_latency == (AttentionDivider.latency_of(unit.QB)
                                    + AttentionOutputRequant.latency
                                    + AttentionOutputQueue.latency) == unit.QB + 4


# -- job control ------------------------------------------------------------------------------

def _cmd(**kw):
    kw.setdefault("opcode", isa.Opcode.ATTENTION)
    kw.setdefault("version", isa.ISA_VERSION)
    return isa.pack(isa.ATT_CMD_FIELDS, **kw)


def _status(word):
    return isa.unpack(isa.STATUS_FIELDS, word)


def test_job_control_decodes_params_loads_lut_and_reports():
    F, G = 16, 16
    dut = AttentionJobControl(heads=2, n_max=64, F=F, G=G)
    lut = make_lut(0.1, F)
    lut_sent = list(lut)
    lut_sent[9] = (1 << F) + 3                          # clamped to 2^F when written
    params = [1 << 30, (-2) & 0xFF, (1 << 30) + 5, 3]
    writes = []

    async def tb(ctx):
        # An unloaded head without load_lut: rejected at once.
        ctx.set(dut.cmd.payload, _cmd(m=1, n=1, head=0, tag=7))
        ctx.set(dut.cmd.valid, 1)
        await ctx.tick()
        ctx.set(dut.cmd.valid, 0)
        assert ctx.get(dut.status.valid)
        st = _status(ctx.get(dut.status.payload))
        assert (st["error"], st["tag"], st["cycles"]) == (isa.Error.BAD_LUT, 7, 1)
        ctx.set(dut.status.ready, 1)
        await ctx.tick()
        ctx.set(dut.status.ready, 0)
        # A job that loads head 1's table.
        ctx.set(dut.cmd.payload, _cmd(m=3, n=5, head=1, tag=9, causal=1, load_lut=1,
                                      zp_v=-3, zp_o=4))
        ctx.set(dut.cmd.valid, 1)
        await ctx.tick()
        ctx.set(dut.cmd.valid, 0)
        beats = params + lut_sent
        for i, w in enumerate(beats):
            ctx.set(dut.param.payload.data, w)
            ctx.set(dut.param.payload.last, i == len(beats) - 1)
            ctx.set(dut.param.valid, 1)
            assert ctx.get(dut.param.ready)
            if ctx.get(dut.lut_w_en):
                writes.append((ctx.get(dut.lut_w_head), ctx.get(dut.lut_w_idx),
                               ctx.get(dut.lut_w_data)))
            assert ctx.get(dut.start) == (i == len(beats) - 1)
            await ctx.tick()
        ctx.set(dut.param.valid, 0)
        assert (ctx.get(dut.m), ctx.get(dut.n), ctx.get(dut.causal), ctx.get(dut.head)) == \
            (3, 5, 1, 1)
        assert (ctx.get(dut.zp_v), ctx.get(dut.zp_o)) == (-3, 4)
        assert (ctx.get(dut.m0_s), ctx.get(dut.sh_s)) == (1 << 30, -2)
        assert (ctx.get(dut.m0_o), ctx.get(dut.k_o)) == ((1 << 30) + 5, 31 + G - 3)
        for _ in range(3):                               # the job's three output rows
            assert not ctx.get(dut.status.valid)
            ctx.set(dut.row_out, 1)
            await ctx.tick()
        ctx.set(dut.row_out, 0)
        assert ctx.get(dut.status.valid)
        st = _status(ctx.get(dut.status.payload))
        assert (st["error"], st["tag"]) == (0, 9)
        assert st["cycles"] == 1 + len(beats) + 3
        ctx.set(dut.status.ready, 1)
        await ctx.tick()
        # Head 1 is now usable without a load; a framing error is reported after the job.
        ctx.set(dut.status.ready, 0)
        ctx.set(dut.cmd.payload, _cmd(m=1, n=1, head=1, tag=3))
        ctx.set(dut.cmd.valid, 1)
        await ctx.tick()
        ctx.set(dut.cmd.valid, 0)
        for i, w in enumerate(params):
            ctx.set(dut.param.payload.data, w)
            ctx.set(dut.param.payload.last, i == len(params) - 1)
            ctx.set(dut.param.valid, 1)
            await ctx.tick()
        ctx.set(dut.param.valid, 0)
        ctx.set(dut.frame_err, 1)
        await ctx.tick()
        ctx.set(dut.frame_err, 0)
        ctx.set(dut.row_out, 1)
        await ctx.tick()
        ctx.set(dut.row_out, 0)
        assert _status(ctx.get(dut.status.payload))["error"] == isa.Error.FRAME

    _run(dut, tb)
    assert writes == [(1, k, min(e, 1 << F)) for k, e in enumerate(lut_sent)]


def test_lut_tables_per_head():
    F = 12
    dut = AttentionLut(heads=3, F=F, ports=2)
    tables = {h: make_lut(0.05 * (h + 1), F) for h in range(3)}

    async def tb(ctx):
        for h, t in tables.items():
            for k, e in enumerate(t):
                ctx.set(dut.w_en, 1)
                ctx.set(dut.w_head, h)
                ctx.set(dut.w_idx, k)
                ctx.set(dut.w_data, e)
                await ctx.tick()
        ctx.set(dut.w_en, 0)
        for h in (2, 0, 1):
            for ks in ((0, 255), (17, 3)):
                ctx.set(dut.r_head, h)
                ctx.set(dut.r_idx, list(ks))
                await ctx.tick().repeat(dut.latency)
                assert [ctx.get(dut.r_data[p]) for p in range(2)] == [tables[h][k] for k in ks]

    _run(dut, tb)


# -- front end and scores ---------------------------------------------------------------------

def test_front_end_sequences_keys_into_tiles_with_mask_bits():
    d, P, B, NS = 2, 2, 2, 4
    dut = AttentionFrontEnd(d=d, q_block=P, B=B, slots=NS)
    M, N = 3, 3
    rng = np.random.default_rng(1)
    q = rng.integers(-128, 128, (M, d))
    k = rng.integers(-128, 128, (N, d))
    v = rng.integers(-128, 128, (N, d))
    user = [0b11, 0b01, 0b11]                  # the keys' mask bits (tuser)
    seen = []

    async def feed_q(ctx):
        for blk in ((0, 1), (2,)):
            for n, i in enumerate(blk):
                ctx.set(dut.q.payload.data, [int(x) for x in q[i]])
                ctx.set(dut.q.payload.last, n == len(blk) - 1)
                ctx.set(dut.q.valid, 1)
                await ctx.tick().until(dut.q.ready)
            ctx.set(dut.q.valid, 0)

    async def feed_kv(ctx):
        ctx.set(dut.m, M)
        ctx.set(dut.n, N)
        ctx.set(dut.causal, 1)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for blk in range(2):
            for j in range(N):
                ctx.set(dut.k.payload.data, [int(x) for x in k[j]])
                ctx.set(dut.k.payload.mask, user[j])
                ctx.set(dut.k.payload.last, j == N - 1)
                ctx.set(dut.v.payload.data, [int(x) for x in v[j]])
                ctx.set(dut.v.payload.last, j == N - 1)
                ctx.set(dut.k.valid, 1)
                ctx.set(dut.v.valid, 1)
                while not ctx.get(dut.key_valid):
                    await ctx.tick()
                s = ctx.get(dut.side)
                rows = ctx.get(dut.q_rows)
                seen.append((blk, j, s.on, s.end_tile, s.end_block, s.slot, s.idx,
                             list(ctx.get(dut.key)), list(ctx.get(dut.value)),
                             [list(rows[p]) for p in range(P)], ctx.get(dut.frame_err)))
                await ctx.tick()
            ctx.set(dut.k.valid, 0)
            ctx.set(dut.v.valid, 0)

    _run(dut, feed_q, feed_kv)
    expected = []
    slot = 0
    for blk, m0 in ((0, 0), (1, 2)):
        mq = min(P, M - m0)
        for j in range(N):
            on = sum(1 << p for p in range(P)
                     if p < mq and user[j] >> p & 1 and j <= m0 + p)
            idx = j % B
            end_tile = idx == B - 1 or j == N - 1
            expected.append((blk, j, on, end_tile, j == N - 1, slot % NS, idx,
                             [int(x) for x in k[j]], [int(x) for x in v[j]],
                             [[int(x) for x in q[m0 + p]] for p in range(mq)]
                             + ([list(map(int, q[1]))] if mq < P else []), 0))
            if end_tile:
                slot += 1
    assert seen == expected


@pytest.mark.parametrize("rounding", ["single", "double"])
def test_scores_match_golden_requantized_dot_products(rounding):
    d, P, N = 5, 2, 12
    W_S = attention_widths(24, 1024, 16, d)["W_S"]
    side = data.StructLayout({"tag": unsigned(6)})
    dut = AttentionScores(d=d, q_block=P, W_S=W_S, side=side, rounding=rounding)
    rng = np.random.default_rng(7)
    q = rng.integers(-128, 128, (P, d), dtype=np.int8)
    k = rng.integers(-128, 128, (N, d), dtype=np.int8)
    k[0] = -128                                       # the extremes
    q[0] = -128
    params = attention_params(0.02, 0.03, 0.05, 0.01, 0.1, d=d)
    want = attention_scores(q, k, params, rounding=rounding)
    got = {}

    async def feed(ctx):
        ctx.set(dut.m0_s, params.score_multiplier)
        ctx.set(dut.sh_s, params.score_shift)
        ctx.set(dut.i_q, [[int(x) for x in q[p]] for p in range(P)])
        for j in range(N):
            ctx.set(dut.i_k, [int(x) for x in k[j]])
            ctx.set(dut.i_side, {"tag": j})
            ctx.set(dut.i_valid, j % 3 != 2)          # some idle cycles
            await ctx.tick()
        ctx.set(dut.i_valid, 0)

    async def check(ctx):
        for cyc in range(N + dut.latency + 2):
            if ctx.get(dut.o_valid):
                j = ctx.get(dut.o_side.tag)
                assert cyc - j == dut.latency        # the key's scores, latency cycles later
                got[j] = [ctx.get(dut.o_score[p]) for p in range(P)]
            await ctx.tick()

    _run(dut, feed, check)
    assert got == {j: [int(want[p, j]) for p in range(P)] for j in range(N) if j % 3 != 2}


# -- tile buffer ------------------------------------------------------------------------------

def test_tile_buffer_tile_max_ready_and_read_back():
    d, P, B, NS = 2, 2, 3, 4
    dut = AttentionTileBuffer(d=d, q_block=P, B=B, slots=NS)
    # (slot, idx, scores, on, end_tile, end_block, v row)
    keys = [(0, 0, [5, -7], 0b11, 0, 0, [1, 2]), (0, 1, [9, 100], 0b01, 0, 0, [3, 4]),
            (0, 2, [-3, -8], 0b11, 1, 0, [5, 6]),
            (1, 0, [7, 7], 0b00, 0, 0, [7, 8]), (1, 1, [-128, 4], 0b10, 1, 1, [9, 10])]

    async def tb(ctx):
        for slot, idx, s, on, et, eb, vv in keys:
            ctx.set(dut.v_en, 1)
            ctx.set(dut.v_slot, slot)
            ctx.set(dut.v_idx, idx)
            ctx.set(dut.v_data, vv)
            ctx.set(dut.s_valid, 1)
            ctx.set(dut.s_side, {"on": on, "end_tile": et, "end_block": eb, "slot": slot,
                                 "idx": idx})
            ctx.set(dut.s_score, s)
            await ctx.tick()
        ctx.set(dut.v_en, 0)
        ctx.set(dut.s_valid, 0)
        assert ctx.get(dut.ready) == 0b0011
        # slot 0: query 0 max over keys 0, 1, 2 = 9; query 1 over keys 0, 2 = -7
        assert [ctx.get(dut.t_max[0][p]) for p in range(P)] == [9, -7]
        assert (ctx.get(dut.t_any[0]), ctx.get(dut.t_count[0]), ctx.get(dut.t_bend) & 1) == \
            (0b11, 3, 0)
        # slot 1: query 0 has no attended key; query 1 max = 4
        assert ctx.get(dut.t_max[1][1]) == 4
        assert (ctx.get(dut.t_any[1]), ctx.get(dut.t_count[1]), ctx.get(dut.t_bend) >> 1 & 1) == \
            (0b10, 2, 1)
        for slot, idx, s, on, et, eb, vv in keys:
            ctx.set(dut.r_slot, slot)
            ctx.set(dut.r_idx, idx)
            await ctx.tick().repeat(dut.latency)
            assert [ctx.get(dut.r_score[p]) for p in range(P)] == s
            assert ctx.get(dut.r_on) == on and list(ctx.get(dut.r_v)) == vv
        ctx.set(dut.release, 0b0001)
        await ctx.tick()
        ctx.set(dut.release, 0)
        assert ctx.get(dut.ready) == 0b0010

    _run(dut, tb)


# -- back end sequencer -----------------------------------------------------------------------

def test_back_end_sequence_by_hand():
    """One query, d = 2, tiles of 2 keys: tile 0 (max 5, first: no rescale), tile 1 (max 9 > 5:
    rescale by E[4], ends the block), then the epilogue. The control trace is written out."""
    d, P, B, NS = 2, 1, 2, 4
    dut = AttentionBackEnd(d=d, q_block=P, B=B, slots=NS)
    names = ("issue", "release", "load_r", "rescale", "rescale_first", "epi_load", "div_in",
             "div_last")
    trace = []

    async def tb(ctx):
        ctx.set(dut.m, 1)
        ctx.set(dut.pipe_empty, 1)
        ctx.set(dut.room, 1)
        ctx.set(dut.x1_score, [3])
        ctx.set(dut.t_max, [[5], [9], [0], [0]])
        ctx.set(dut.t_any, [1, 1, 0, 0])
        ctx.set(dut.t_count, [2, 2, 0, 0])
        ctx.set(dut.t_bend, 0b0010)
        ctx.set(dut.t_ready, 0b0001)
        ready = 0b0001
        for cyc in range(16):
            row = tuple(ctx.get(getattr(dut, n)) for n in names)
            trace.append(row)
            if cyc == 1:
                assert ctx.get(dut.lut_idx[0]) == 5 - 3    # accumulating: m - s, m = 5
            ready &= ~ctx.get(dut.release)
            if cyc == 2:
                ready |= 0b0010                            # tile 1 arrives
            if cyc == 3:
                # deciding the rescale: the LUT is addressed with t - m = 9 - 5
                assert ctx.get(dut.lut_idx[0]) == 4
            await ctx.tick()
            ctx.set(dut.t_ready, ready)
        assert ctx.get(dut.epi_gen) == 1                   # the next block uses the other bank

    _run(dut, tb)
    E = dict.fromkeys(names, 0)

    def row(**kw):
        return tuple({**E, **kw}[n] for n in names)

    expected = [row(),                                      # IDLE: tile 0 ready, no rescale
                row(issue=1), row(issue=1, release=1),      # ACCUM keys 0, 1
                row(),                                      # IDLE: tile 1 ready, rescale
                row(load_r=1),                              # LUT: r latched
                row(rescale=1, rescale_first=1), row(rescale=1),    # RESCALE, d cycles
                row(issue=1), row(issue=1, release=2),      # ACCUM keys 0, 1 of tile 1
                row(epi_load=1),                            # EPI_WAIT: hand L on
                row(div_in=1), row(div_in=1, div_last=1),   # EPI: d channels
                row(), row(), row(), row()]
    assert trace == expected


# -- accumulator ------------------------------------------------------------------------------

def test_accumulator_accumulate_rescale_shift_out():
    d, P, F = 2, 2, 8
    dut = AttentionAccumulator(d=d, q_block=P, F=F, W_L=20, W_A=30)
    zp_v = 3
    keys = [(0b11, [10, -5], [256, 100]), (0b01, [-128, 127], [200, 77]),
            (0b10, [0, 1], [5, 256])]
    L = [0, 0]
    A = [[0, 0], [0, 0]]
    for on, vv, e in keys:
        for p in range(P):
            ep = e[p] if on >> p & 1 else 0
            L[p] += ep
            for c in range(d):
                A[p][c] += ep * (vv[c] - zp_v)
    r = [181, 99]
    need = 0b01
    L_r = [rshift_round(L[0] * r[0], F), L[1]]
    A_r = [[rshift_round(a * r[0], F) for a in A[0]], A[1]]

    async def tb(ctx):
        ctx.set(dut.zp_v, zp_v)
        sched = {}
        for n, (on, vv, e) in enumerate(keys):     # issue at n, data at n + 1, e at n + 2
            sched.setdefault(n, {})["issue"] = 1
            sched.setdefault(n + 1, {})["x1"] = (on, vv)
            sched.setdefault(n + 2, {})["e"] = e
        for cyc in range(len(keys) + dut.latency + 1):
            s = sched.get(cyc, {})
            ctx.set(dut.issue, s.get("issue", 0))
            if "x1" in s:
                ctx.set(dut.x1_on, s["x1"][0])
                ctx.set(dut.x1_v, s["x1"][1])
            if "e" in s:
                ctx.set(dut.e, s["e"])
            assert ctx.get(dut.pipe_empty) == (cyc == 0 or cyc > len(keys) + 1)
            await ctx.tick()
        assert [ctx.get(dut.L[p]) for p in range(P)] == L
        assert [ctx.get(dut.a_head[p]) for p in range(P)] == [A[0][0], A[1][0]]
        ctx.set(dut.e, r)
        ctx.set(dut.load_r, 1)
        await ctx.tick()
        ctx.set(dut.load_r, 0)
        ctx.set(dut.need, need)
        for c in range(d):
            ctx.set(dut.rescale, 1)
            ctx.set(dut.rescale_first, c == 0)
            await ctx.tick()
        ctx.set(dut.rescale, 0)
        assert [ctx.get(dut.L[p]) for p in range(P)] == L_r
        ctx.set(dut.clear_L, 1)
        ctx.set(dut.shift, 1)
        heads = []
        for c in range(d):
            heads.append([ctx.get(dut.a_head[p]) for p in range(P)])
            await ctx.tick()
            ctx.set(dut.clear_L, 0)
        ctx.set(dut.shift, 0)
        assert heads == [[A_r[0][c], A_r[1][c]] for c in range(d)]
        assert [ctx.get(dut.L[p]) for p in range(P)] == [0, 0]
        assert [ctx.get(dut.a_head[p]) for p in range(P)] == [0, 0]   # zeros shifted in

    _run(dut, tb)


# -- epilogue ---------------------------------------------------------------------------------

def test_divider_is_exact_round_div_in_two_banks():
    F, G, n_max = 12, 8, 256
    w = attention_widths(F, n_max, G, 4)
    P = 2
    dut = AttentionDivider(q_block=P, G=G, W_L=w["W_L"], W_A=w["W_A"], QB=w["QB"])
    assert dut.latency == w["QB"] + 2
    rng = np.random.default_rng(11)
    banks = {0: ([1 << F, 37 << F], 0b00), 1: ([(n_max << F) - 1, 3 << F], 0b10)}
    chans = []
    for n in range(24):
        g = n // 6 % 2
        Ls = banks[g][0]
        a = [int(rng.integers(-255 * Ls[p], 255 * Ls[p] + 1)) for p in range(P)]
        chans.append((g, a))
    chans[0] = (0, [-(1 << F) // 2 >> G, 255 << F])        # ties and the largest quotient
    got = []

    async def tb(ctx):
        for g, (Ls, empty) in banks.items():
            ctx.set(dut.load, 1)
            ctx.set(dut.load_gen, g)
            ctx.set(dut.load_L, Ls)
            ctx.set(dut.load_empty, empty)
            await ctx.tick()
        ctx.set(dut.load, 0)
        for cyc in range(len(chans) + dut.latency):
            if cyc < len(chans):
                g, a = chans[cyc]
                ctx.set(dut.i_ctl, {"valid": 1, "gen": g, "last": cyc == len(chans) - 1})
                ctx.set(dut.i_num, a)
            else:
                ctx.set(dut.i_ctl.valid, 0)
            if cyc >= dut.latency:
                c = ctx.get(dut.o_ctl)
                assert c.valid and c.gen == chans[cyc - dut.latency][0]
                got.append([ctx.get(dut.o_quot[p]) for p in range(P)])
            await ctx.tick()
        got.append([ctx.get(dut.o_quot[p]) for p in range(P)])

    _run(dut, tb)
    for (g, a), q in zip(chans, got):
        Ls, empty = banks[g]
        assert q == [0 if empty >> p & 1 else round_div(a[p] << G, Ls[p]) for p in range(P)]


def test_output_requant_matches_formula():
    QB, P = 24, 3
    dut = AttentionOutputRequant(q_block=P, QB=QB)
    rng = np.random.default_rng(2)
    cases = [([0, 1 << 16, -(1 << 16)], (1 << 30), 17, 0),     # 0; +-0.5 ties at k = 17
             ([(1 << QB) - 1, -(1 << QB), 12345], (1 << 31) - 1, 1, -5)]
    for _ in range(20):
        cases.append(([int(rng.integers(-(1 << QB), 1 << QB)) for _ in range(P)],
                      int(rng.integers(1 << 30, 1 << 31)), int(rng.integers(1, 63)),
                      int(rng.integers(-128, 128))))

    async def tb(ctx):
        for q, m0, k, zp in cases:
            ctx.set(dut.i_quot, q)
            ctx.set(dut.m0_o, m0)
            ctx.set(dut.k_o, k)
            ctx.set(dut.zp_o, zp)
            ctx.set(dut.i_ctl, {"valid": 1, "gen": 1, "last": 0})
            await ctx.tick().repeat(dut.latency)
            assert ctx.get(dut.o_ctl.valid) and ctx.get(dut.o_ctl.gen)
            want = [max(-128, min(127, zp + rshift_round(x * m0, k))) for x in q]
            assert [ctx.get(dut.o_byte[p]) for p in range(P)] == want

    _run(dut, tb)


def test_output_queue_rows_last_and_room():
    d, P, depth = 2, 2, 6
    dut = AttentionOutputQueue(d=d, q_block=P, depth=depth)
    M = 3
    blocks = [(0, 0, 2, [[1, -2], [3, -4]]), (1, 2, 1, [[5, 6], [0, 0]])]   # gen, m0, mq, bytes
    rows = []

    async def tb(ctx):
        ctx.set(dut.m, M)
        ctx.set(dut.o.ready, 0)
        for gen, m0, mq, bytes_ in blocks:
            ctx.set(dut.gen, gen)
            assert ctx.get(dut.room)
            ctx.set(dut.reserve, 1)
            ctx.set(dut.reserve_gen, gen)
            ctx.set(dut.reserve_m0, m0)
            ctx.set(dut.reserve_mq, mq)
            await ctx.tick()
            ctx.set(dut.reserve, 0)
            assert not ctx.get(dut.room)                 # that bank is busy now
            ctx.set(dut.gen, 1 - gen)
            assert ctx.get(dut.room)                     # the other bank: 2 + 2 rows of 6
            ctx.set(dut.gen, gen)
            for c in range(d):                            # channel c of every query
                ctx.set(dut.i_ctl, {"valid": 1, "gen": gen, "last": c == d - 1})
                ctx.set(dut.i_byte, [bytes_[p][c] for p in range(P)])
                await ctx.tick()
            ctx.set(dut.i_ctl.valid, 0)
            await ctx.tick().repeat(dut.latency + mq)
        ctx.set(dut.o.ready, 1)
        for _ in range(8):
            if ctx.get(dut.o.valid):
                p = ctx.get(dut.o.payload)
                rows.append(([p.data[c] for c in range(d)], p.last))
            await ctx.tick()
        ctx.set(dut.gen, 0)
        assert ctx.get(dut.room)

    _run(dut, tb)
    assert rows == [([1, -2], 0), ([3, -4], 0), ([5, 6], 1)]
