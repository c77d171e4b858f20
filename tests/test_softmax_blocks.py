# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the softmax unit's stages (hw/softmax.py), each on its own,
against the golden model (sim.golden.softmax) or hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from npugen.hw.softmax import (SoftmaxDivider, SoftmaxLut, SoftmaxOutput, SoftmaxRowState,
                               SoftmaxTileBuffer, SoftmaxUnit, softmax_widths)
from npugen.sim.golden.softmax import make_lut, round_div, softmax_state

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def _run(dut, *testbenches):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in testbenches:
        sim.add_testbench(tb)
    sim.run()


def test_report_blocks():
    """Every stage, and the unit, counts toward the "softmax" block of the area report."""
    for cls in (SoftmaxUnit, SoftmaxLut, SoftmaxTileBuffer, SoftmaxRowState, SoftmaxDivider,
                SoftmaxOutput):
        assert cls.report_block == "softmax"


def test_unit_latency_is_its_stages():
    unit = SoftmaxUnit(lanes=2, B=4)
    assert unit.latency == SoftmaxLut.latency + SoftmaxDivider(lanes=1, F=8, W_L=9).latency == 10


@pytest.mark.parametrize("rom", [False, True], ids=["load", "rom"])
def test_lut_load_and_read(rom):
    F = 16
    lut = make_lut(0.05, F)
    dut = SoftmaxLut(F=F, ports=3, rom=lut if rom else None)
    assert hasattr(dut, "load") != rom
    stored = list(lut)
    if not rom:
        loaded = list(lut)
        loaded[7] = (1 << F) + 5                       # above 2^F: stored as 2^F
        stored[7] = 1 << F
    addrs = [(0, 255, 7), (1, 2, 3), (128, 7, 0), (254, 100, 255)]

    async def tb(ctx):
        if not rom:
            for e in loaded:
                ctx.set(dut.load.payload, e)
                ctx.set(dut.load.valid, 1)
                assert ctx.get(dut.load.ready)
                await ctx.tick()
            ctx.set(dut.load.valid, 0)
        for a in addrs:
            for p, k in enumerate(a):
                ctx.set(dut.addr[p], k)
            await ctx.tick().repeat(dut.latency)
            assert [ctx.get(dut.data[p]) for p in range(3)] == [stored[k] for k in a]

    _run(dut, tb)


def _tiles(row, mask, lanes, B):
    """The tiles of one pass as the tile buffer should hand them out: per tile, its beats
    (data, on) and the max/any over its attended scores."""
    beats = []
    for s in range(0, len(row), lanes):
        d = [int(x) for x in row[s:s + lanes]] + [0] * (lanes - len(row[s:s + lanes]))
        on = sum(1 << i for i, x in enumerate(mask[s:s + lanes]) if x)
        beats.append((d, on))
    bpt = B // lanes
    tiles = []
    for t in range(0, len(beats), bpt):
        tb = beats[t:t + bpt]
        att = [d[i] for d, on in tb for i in range(lanes) if on >> i & 1]
        tiles.append((tb, max(att) if att else None))
    return beats, tiles


def test_tile_buffer_tiles_and_tile_max():
    lanes, B = 2, 4
    dut = SoftmaxTileBuffer(lanes=lanes, B=B)
    rng = np.random.default_rng(3)
    rows = [(rng.integers(-128, 128, n), rng.random(n) < 0.7) for n in (7, 2, 9, 4)]
    rows.append((np.array([5, 6, 7]), np.zeros(3, dtype=bool)))     # a fully masked row
    expected = []
    for row, mask in rows:
        _, tiles = _tiles(row, mask, lanes, B)
        for k, (tb, mx) in enumerate(tiles):
            for j, (d, on) in enumerate(tb):
                expected.append((d, on, j == 0, j == len(tb) - 1, k == len(tiles) - 1, mx))
    got = []

    async def feed(ctx):
        for row, mask in rows:
            beats, _ = _tiles(row, mask, lanes, B)
            for n, (d, on) in enumerate(beats):
                ctx.set(dut.i.payload.data, d)
                ctx.set(dut.i.payload.on, on)
                ctx.set(dut.i.payload.last, n == len(beats) - 1)
                ctx.set(dut.i.valid, 1)
                await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def drain(ctx):
        cyc = 0
        while len(got) < len(expected):
            ready = cyc % 3 != 1
            ctx.set(dut.o.ready, ready)
            _, _, valid, p = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            cyc += 1
            assert cyc < 1000
            if valid and ready:
                got.append(([p.data[i] for i in range(lanes)], p.on, bool(p.first),
                             bool(p.last), bool(p.row_end), p.max if p.any else None))

    _run(dut, feed, drain)
    assert got == expected


def test_tile_buffer_latency():
    """A tile's first beat is valid :attr:`latency` cycle after its last beat is accepted."""
    dut = SoftmaxTileBuffer(lanes=1, B=2)

    async def tb(ctx):
        for n, x in enumerate((3, -4)):
            ctx.set(dut.i.payload.data, [x])
            ctx.set(dut.i.payload.on, 1)
            ctx.set(dut.i.valid, 1)
            assert ctx.get(dut.i.ready) and not ctx.get(dut.o.valid)
            await ctx.tick()
        ctx.set(dut.i.valid, 0)
        # The last tick accepted the tile's last beat: this is the cycle after it.
        assert dut.latency == 1
        assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload.max) == 3
        assert ctx.get(dut.o.payload.first) and ctx.get(dut.i.ready)   # the other slot is free

    _run(dut, tb)


@pytest.mark.parametrize("lanes,B,F", [(1, 1, 16), (2, 4, 24), (4, 8, 12)])
def test_row_state_matches_golden_state(lanes, B, F):
    c = 0.07
    lut = make_lut(c, F)
    n_max = 64
    WL = softmax_widths(F, n_max)["W_L"]
    dut = SoftmaxRowState(lanes=lanes, F=F, W_L=WL)
    rng = np.random.default_rng(lanes + B)
    rows = [(np.arange(-128, 128, 9), np.ones(29, dtype=bool)),        # a rescale per tile
            (rng.integers(-128, 128, 23), rng.random(23) < 0.8),
            (np.array([127, -128, 0]), np.array([False, True, True])),
            (np.array([1, 2]), np.zeros(2, dtype=bool))]                 # nothing attended

    async def tb(ctx):
        for row, mask in rows:
            _, tiles = _tiles(row, mask, lanes, B)
            beats = []
            for k, (tbeats, mx) in enumerate(tiles):
                for j, (d, on) in enumerate(tbeats):
                    beats.append((d, on, j == 0, j == len(tbeats) - 1, k == len(tiles) - 1, mx))
            for d, on, first, last, row_end, mx in beats:
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload.data, d)
                ctx.set(dut.i.payload.on, on)
                ctx.set(dut.i.payload.first, first)
                ctx.set(dut.i.payload.last, last)
                ctx.set(dut.i.payload.row_end, row_end)
                ctx.set(dut.i.payload.max, mx if mx is not None else 0)
                ctx.set(dut.i.payload.any, mx is not None)
                assert ctx.get(dut.i.ready)
                addrs = [ctx.get(dut.lut_addr[p]) for p in range(lanes + 1)]
                await ctx.tick()
                ctx.set(dut.i.valid, 0)
                for p, a in enumerate(addrs):       # the LUT: one cycle behind its address
                    ctx.set(dut.lut_data[p], lut[a])
            for _ in range(dut.latency):
                addrs = [ctx.get(dut.lut_addr[p]) for p in range(lanes + 1)]
                await ctx.tick()
                for p, a in enumerate(addrs):
                    ctx.set(dut.lut_data[p], lut[a])
            m_gold, L_gold = softmax_state(row, c, F=F, B=B, mask=mask)
            assert ctx.get(dut.done)
            assert ctx.get(dut.L) == L_gold
            assert bool(ctx.get(dut.m_valid)) == (m_gold is not None)
            if m_gold is not None:
                assert ctx.get(dut.m) == m_gold
                # Pass-2 addressing while idle: m - s, in [0, 255] for s <= m.
                ctx.set(dut.p2_data, [int(row[0])] * lanes)
                if mask[0]:
                    assert ctx.get(dut.lut_addr[0]) == m_gold - int(row[0])
            ctx.set(dut.row_reset, 1)
            await ctx.tick()
            ctx.set(dut.row_reset, 0)
            assert (ctx.get(dut.done), ctx.get(dut.m_valid), ctx.get(dut.L)) == (0, 0, 0)

    _run(dut, tb)


def test_divider_is_exact_round_div():
    F, WL, P = 24, 40, 3
    dut = SoftmaxDivider(lanes=P, F=F, W_L=WL)
    assert dut.latency == 9
    rng = np.random.default_rng(5)
    cases = [([1, 0, 512], 512, 0b101, 0b011, 1),               # tie 1/2 -> 1; 0; e = L
             ([1 << F, 1 << (F - 1), 3], 1 << F, 0b111, 0b110, 0),
             ([1 << F] * 3, (1 << 40) - 1, 0b001, 0b111, 1)]  # the widest L
    for _ in range(20):
        L = int(rng.integers(1 << F, 1 << 36))
        cases.append(([int(rng.integers(0, (1 << F) + 1)) for _ in range(P)], L,
                      int(rng.integers(0, 8)), int(rng.integers(0, 8)), int(rng.integers(0, 2))))
    got = []

    async def feed(ctx):
        for e, L, keep, on, last in cases:
            ctx.set(dut.i_num, e)
            ctx.set(dut.i_den, L)
            ctx.set(dut.i_ctl, {"valid": 1, "keep": keep, "on": on, "last": last})
            await ctx.tick()
        ctx.set(dut.i_ctl.valid, 0)

    async def check(ctx):
        await ctx.tick().repeat(dut.latency)         # the first result, latency cycles later
        for _ in cases:
            c = ctx.get(dut.o_ctl)
            got.append(([ctx.get(dut.o_quot[p]) for p in range(P)], c.keep, c.on, c.last,
                        c.valid))
            await ctx.tick()

    _run(dut, feed, check)
    for (e, L, keep, on, last), g in zip(cases, got):
        assert g == ([round_div(x * 256, L) for x in e], keep, on, last, 1)


def test_output_maps_quotients_and_counts_credits():
    P, depth = 3, 4
    dut = SoftmaxOutput(lanes=P, depth=depth)
    beats = [([0, 1, 128], 0b111, 0b111, 0), ([254, 255, 256], 0b111, 0b111, 0),
             ([200, 200, 200], 0b011, 0b110, 1), ([7, 7, 7], 0b000, 0b000, 1)]

    def expect(q, keep, on, last):
        y = [(0 if not keep >> i & 1 else -128 if not on >> i & 1 else min(q[i] - 128, 127))
             for i in range(P)]
        return y, keep, last

    async def tb(ctx):
        assert ctx.get(dut.room)
        for n in range(depth):                          # take every credit
            ctx.set(dut.credit, 1)
            await ctx.tick()
        ctx.set(dut.credit, 0)
        assert not ctx.get(dut.room)
        for q, keep, on, last in beats:
            ctx.set(dut.i_quot, q)
            ctx.set(dut.i_ctl, {"valid": 1, "keep": keep, "on": on, "last": last})
            await ctx.tick()
        ctx.set(dut.i_ctl.valid, 0)
        await ctx.tick().repeat(dut.latency)
        got = []
        ctx.set(dut.o.ready, 1)
        for _ in beats:
            assert ctx.get(dut.o.valid)
            p = ctx.get(dut.o.payload)
            got.append(([p.data[i] for i in range(P)], p.keep, p.last))
            await ctx.tick()
        assert not ctx.get(dut.o.valid)
        assert ctx.get(dut.room)                        # every credit came back
        assert got == [expect(*b) for b in beats]

    _run(dut, tb)
