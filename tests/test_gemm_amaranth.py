# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the GEMM engine and its blocks against the golden models.

These run the Amaranth design directly (no Verilog, no cocotb), fast enough for small arrays; the
cocotb regression (tests/test_gemm_rtl.py) runs the emitted Verilog on Verilator and Icarus.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.hdl import Value
from amaranth.sim import Simulator

from npugen.hw import isa
from npugen.hw.config import GemmConfig
from npugen.hw.gemm import GemmEngine
from npugen.hw.pe import OutputStationaryPE, WeightStationaryPE
from npugen.hw.requant import Requantizer
from npugen.hw.systolic import OutputStationaryArray, WeightStationaryArray
from npugen.sim import driver
from npugen.sim.golden import gemm_int8, requantize


def _simulate(dut, *testbenches) -> None:
    """Run ``testbenches`` on ``dut`` with a 100 MHz clock until they return."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in testbenches:
        sim.add_testbench(tb)
    sim.run()


def _pack_beat(stream, i, lanes):
    """Integer of beat ``i`` of a driver BeatStream, in the StructLayout(data, keep, last)."""
    data = int.from_bytes(stream.data[i].tobytes(), "little")
    keep = int(sum(1 << j for j in range(lanes) if stream.keep[i, j]))
    return data | (keep << (8 * lanes)) | (int(stream.last[i]) << (9 * lanes))


def run_engine(cfg, jobs, *, res_ready=None, max_cycles=200_000, raw_cmds=()):
    """Run jobs (and raw command words with no data) through the engine in the Amaranth
    simulator. Returns a list of (status, result beats) in order."""
    dut = GemmEngine.from_config(cfg)
    R, C = cfg.rows, cfg.cols
    items = [("raw", w) for w in raw_cmds] + [("job", st) for st in driver.encode_many(jobs, cfg)]
    results = []

    async def push(ctx, port, words):
        for w in words:
            ctx.set(Value.cast(port.payload), w)
            ctx.set(port.valid, 1)
            await ctx.tick().until(port.ready)
        ctx.set(port.valid, 0)

    async def tb_cmd(ctx):
        for kind, item in items:
            cmd = item if kind == "raw" else item.cmd
            await push(ctx, dut.cmd, [cmd])
            # Wait for this command's status before sending the next one.
            await ctx.tick().until(dut.status.valid & dut.status.ready)

    async def tb_act(ctx):
        for kind, item in items:
            if kind == "job":
                await push(ctx, dut.act, [_pack_beat(item.act, i, R) for i in range(len(item.act))])

    async def tb_wgt(ctx):
        for kind, item in items:
            if kind == "job":
                await push(ctx, dut.wgt, [_pack_beat(item.wgt, i, C) for i in range(len(item.wgt))])

    async def tb_out(ctx):
        ctx.set(dut.status.ready, 1)
        beats = []
        pattern = res_ready or (lambda c: 1)
        cycle = 0
        while len(results) < len(items):
            ready = pattern(cycle)
            ctx.set(dut.res.ready, ready)
            _, _, rv, rdata, rkeep, rlast, sv, sdata = await ctx.tick().sample(
                dut.res.valid, dut.res.payload.data, dut.res.payload.keep, dut.res.payload.last,
                dut.status.valid, dut.status.payload)
            if rv and ready:
                beats.append((rdata, rkeep, rlast))
            if sv:
                results.append((driver.decode_status(sdata), beats))
                beats = []
            cycle += 1
            assert cycle < max_cycles, "timeout"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb_cmd)
    sim.add_testbench(tb_act)
    sim.add_testbench(tb_wgt)
    sim.add_testbench(tb_out)
    sim.run()
    return results


def decode(cfg, job, beats):
    L = cfg.lane_bits
    nbytes = L * cfg.cols // 8
    out = [driver.Beat(int(d).to_bytes(nbytes, "little"), int(k), bool(l)) for d, k, l in beats]
    return driver.decode_results(out, job, cfg)


def random_job(rng, m, k, n, requant):
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    bias = rng.integers(-5000, 5000, n).astype(np.int32)
    kw = {}
    if requant:
        kw = dict(multiplier=rng.integers(1 << 30, 1 << 31, n), shift=rng.integers(-12, 2, n),
                  zp_out=int(rng.integers(-20, 20)), act_min=-100, act_max=110)
    return driver.GemmJob(a, b, bias=bias, zp_a=int(rng.integers(-128, 128)), **kw)


def golden_of(job, cfg):
    return gemm_int8(job.a, job.b, bias=job.bias, zp_a=job.zp_a, multiplier=job.multiplier,
                     shift=job.shift, zp_out=job.zp_out, act_min=job.act_min,
                     act_max=job.act_max, rounding=cfg.rounding)


CONFIGS = [
    GemmConfig(rows=2, cols=3, dataflow="ws", k_max=64, acc_depth=16, res_depth=8),
    GemmConfig(rows=3, cols=2, dataflow="os", k_max=64, acc_depth=16, res_depth=8),
    GemmConfig(rows=2, cols=2, dataflow="ws", k_max=64, acc_depth=4, res_depth=4,
               rounding="double"),
    GemmConfig(rows=1, cols=1, dataflow="os", k_max=16, acc_depth=4, res_depth=4,
               rounding="double"),
    GemmConfig(rows=3, cols=5, dataflow="ws", k_max=64, acc_depth=8, res_depth=4,
               requant_lanes=2, pe_product_reg=False, pe_weight_reg=False,
               array_input_reg=False),
    GemmConfig(rows=2, cols=5, dataflow="os", k_max=64, acc_depth=8, res_depth=4,
               requant_lanes=3, rounding="double", array_input_reg=False),
    GemmConfig(rows=2, cols=3, dataflow="ws", k_max=64, acc_depth=16, res_depth=8,
               operand_isolation=True),
    GemmConfig(rows=3, cols=2, dataflow="os", k_max=64, acc_depth=16, res_depth=8,
               operand_isolation=True),
]
#: The operand-isolation configurations of CONFIGS (the first two with the key set).
ISO_CONFIGS = CONFIGS[-2:]


def _cfg_id(c):
    pe = (("" if c.pe_product_reg else "-noprod") + ("" if c.pe_weight_reg else "-nowcur")
          + ("" if c.array_input_reg else "-noinreg") + ("-iso" if c.operand_isolation else ""))
    return f"{c.rows}x{c.cols}{c.dataflow}{c.rounding}-L{c.rq_lanes}{pe}"


@pytest.mark.parametrize("cfg", CONFIGS, ids=_cfg_id)
def test_engine_random_jobs(cfg):
    rng = np.random.default_rng(1)
    shapes = [(5, 7, 4), (1, 1, 1), (9, 3, 5), (2, 8, 1)]
    jobs = [random_job(rng, *s, requant=i % 2 == 0) for i, s in enumerate(shapes)]
    out = run_engine(cfg, jobs, res_ready=lambda c: (c * 7919) % 5 != 0)
    for job, (status, beats) in zip(jobs, out):
        assert status.error == isa.Error.OK, status
        np.testing.assert_array_equal(decode(cfg, job, beats), golden_of(job, cfg))


@pytest.mark.parametrize("cfg", CONFIGS[:2], ids=lambda c: c.dataflow)
def test_engine_errors_then_job(cfg):
    rng = np.random.default_rng(2)
    bad = [
        isa.pack(isa.CMD_FIELDS, opcode=7, version=isa.ISA_VERSION, m=1, k=1, n=1),
        isa.pack(isa.CMD_FIELDS, opcode=1, version=isa.ISA_VERSION + 1, m=1, k=1, n=1),
        isa.pack(isa.CMD_FIELDS, opcode=1, version=isa.ISA_VERSION, m=0, k=1, n=1),
        isa.pack(isa.CMD_FIELDS, opcode=1, version=isa.ISA_VERSION, m=1, k=cfg.k_max + 1, n=1),
        isa.pack(isa.CMD_FIELDS, opcode=1, version=isa.ISA_VERSION, m=1, k=1, n=1) | (1 << 20),
        isa.pack(isa.CMD_FIELDS, opcode=1, version=isa.ISA_VERSION, requant=1, m=1, k=1, n=1, act_min=5,
                 act_max=4),
        isa.pack(isa.CMD_FIELDS, opcode=1, version=isa.ISA_VERSION, acc_in=1, m=1, k=1, n=1),
    ]
    want = [isa.Error.BAD_OPCODE, isa.Error.BAD_VERSION, isa.Error.BAD_SHAPE,
            isa.Error.BAD_SHAPE, isa.Error.BAD_RESERVED, isa.Error.BAD_CLAMP, isa.Error.BAD_ACC]
    job = random_job(rng, 4, 5, 3, requant=True)
    out = run_engine(cfg, [job], raw_cmds=bad)
    assert [int(s.error) for s, _ in out[:-1]] == [int(w) for w in want]
    assert all(s.cycles == 1 and not beats for s, beats in out[:-1])
    status, beats = out[-1]
    assert status.ok
    np.testing.assert_array_equal(decode(cfg, job, beats), golden_of(job, cfg))


@pytest.mark.parametrize("cfg", CONFIGS[:2] + ISO_CONFIGS, ids=_cfg_id)
def test_engine_accumulate_across_jobs(cfg):
    rng = np.random.default_rng(3)
    j1 = random_job(rng, 5, 6, cfg.cols, requant=False)
    j1.acc_out = True
    j2 = random_job(rng, 5, 4, cfg.cols, requant=False)
    j2.acc_in = True
    out = run_engine(cfg, [j1, j2])
    assert out[0][0].ok and not out[0][1]
    assert out[1][0].ok
    want = golden_of(j1, cfg) + golden_of(j2, cfg)
    np.testing.assert_array_equal(decode(cfg, j2, out[1][1]), want)


@pytest.mark.parametrize("pp_bits", [16, 8])
@pytest.mark.parametrize("W", [17, 18, 32, 34, 35, 48, 51, 52, 64])
def test_requantizer_product_is_exact(W, pp_bits):
    """The registered product (17-bit chunks of acc times 16-bit halves of M0, or bytes of M0
    summed in pairs a stage later) equals Python's acc * M0 for every sign combination, the
    extremes and the chunk and byte boundaries, two cycles after its inputs (three with
    ``pp_bits`` 8)."""
    from amaranth.hdl import Module, Signal, signed

    class Dut:
        def __init__(self):
            self.acc = Signal(signed(W))
            self.mult = Signal(signed(32))
            self.prod = None

        def elaborate(self, platform):
            m = Module()
            self.prod = Requantizer._product(m, self.acc, self.mult, W, 0, pp_bits)
            return m

    dut = Dut()
    frag = dut.elaborate(None)
    rng = random.Random(W)
    lo, hi = -(1 << (W - 1)), (1 << (W - 1)) - 1
    accs = [lo, hi, 0, -1, 1] + [v for b in (16, 17, 33, 34, 50, 51) if b < W - 1
                                  for v in ((1 << b) - 1, 1 << b, -(1 << b))]
    accs += [rng.randint(lo, hi) for _ in range(60)]
    mults = [0, 1 << 30, (1 << 31) - 1, -(1 << 31), -1, 0xFFFF, 0x10000, 0xFF, 0x100,
             0xFFFFFF, 0x1000000, -0x1000000, 0x7F80FF01]
    mults += [rng.randint(-(1 << 31), (1 << 31) - 1) for _ in range(20)]
    pairs = [(a, b) for a in accs for b in rng.sample(mults, 6)]
    got = []

    stages = {16: 2, 8: 3}[pp_bits]     # hand-counted: partial products, (pairs,) sum
    assert Requantizer.product_stages(pp_bits) == stages

    async def tb(ctx):
        for i in range(len(pairs) + stages):
            if i < len(pairs):
                ctx.set(dut.acc, pairs[i][0])
                ctx.set(dut.mult, pairs[i][1])
            await ctx.tick()
            if i >= stages - 1:
                got.append(ctx.get(dut.prod))

    sim = Simulator(frag)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    # Pair i is set before tick i + 1 (partial products) and read after tick i + stages (prod).
    assert got[:len(pairs)] == [a * b for a, b in pairs]


def _check_requantizer(dut: Requantizer, vectors: list) -> None:
    """Stream ``vectors`` (``(accs, multipliers, shifts, zp_out, act_min, act_max)``, one beat
    each, ``dut.lanes`` lanes) through ``dut`` back to back and compare every output beat
    with the golden ``requantize``."""
    lanes = dut.lanes
    got = []

    async def tb(ctx):
        for vec in vectors + [None] * dut.latency:
            if vec is None:
                ctx.set(dut.i_valid, 0)
            else:
                accs, mults, shifts, zp, lo, hi = vec
                ctx.set(dut.i_valid, 1)
                for i in range(lanes):
                    ctx.set(dut.i_acc[i], accs[i])
                    ctx.set(dut.i_multiplier[i], mults[i])
                    ctx.set(dut.i_shift[i], shifts[i])
                ctx.set(dut.i_zp_out, zp)
                ctx.set(dut.i_act_min, lo)
                ctx.set(dut.i_act_max, hi)
            await ctx.tick()
            if ctx.get(dut.o_valid):
                got.append([ctx.get(dut.o_data[i]) for i in range(lanes)])

    _simulate(dut, tb)
    assert len(got) == len(vectors)
    for (accs, mults, shifts, zp, lo, hi), y in zip(vectors, got):
        want = requantize(np.array(accs, dtype=np.int64), np.array(mults), np.array(shifts),
                          zp_out=zp, act_min=lo, act_max=hi, rounding=dut.rounding)
        assert list(want) == y, (accs, mults, shifts, zp, lo, hi)


@pytest.mark.parametrize("rounding", ["single", "double"])
def test_requantizer_at_the_saturation_edge(rounding):
    """Every result from y = -700 to 700 around the clamp, with the zero point and the
    activation range at their extremes: where the datapath saturates the last rounding step's
    input (``t`` in ``single``, ``h >> e`` in ``double``) to 10 bits (``npugen.hw.requant._T_BITS``),
    at -512 and 511.
    With M0 = 2^30, sh = 0 gives t = acc and y = floor((acc + 1) / 2); sh = 1 gives t = 2 acc
    and y = acc; sh = -1 gives y = round(acc / 4). sh = -2 and -5 put y = round(acc / 2^(1 - sh))
    at +-512, where ``double``'s rounding increment (rem > thr) carries a saturated
    ``h >> e`` = 511 to 512 (and -512 to -511)."""
    lanes = 4
    dut = Requantizer(lanes=lanes, acc_width=32, rounding=rounding)
    rng = random.Random(11)
    clamps = [(0, -128, 127), (-128, -128, 127), (127, -128, 127), (-128, 0, 0),
              (127, 0, 0), (0, -128, -128), (0, 127, 127), (-128, 127, 127), (127, -128, -128)]
    vectors = []
    for sh in (0, 1, -1, -2, -5):
        accs = {0: list(range(-1400, 1401)), 1: list(range(-700, 701)),
                -1: list(range(-700, 701))}.get(sh)
        if accs is None:
            edge = 512 << (1 - sh)
            accs = [v for c in (-edge, edge) for v in range(c - 200, c + 201)]
        accs += [-(1 << 31), (1 << 31) - 1]
        for k in range(0, len(accs), lanes):
            chunk = (accs[k:k + lanes] + [0] * lanes)[:lanes]
            zp, lo, hi = clamps[(k // lanes) % len(clamps)] if k % 3 else (
                rng.randint(-128, 127), *sorted(rng.sample(range(-128, 128), 2)))
            vectors.append((chunk, [1 << 30] * lanes, [sh] * lanes, zp, lo, hi))
    _check_requantizer(dut, vectors)


@pytest.mark.parametrize("pp_bits", [16, 8])
@pytest.mark.parametrize("rounding", ["single", "double"])
def test_requantizer_at_the_wide_saturation_edges(rounding, pp_bits):
    """64-bit accumulators where the registers narrowed before the last rounding step saturate
    (``npugen.hw.requant._T_BITS``, ``_H_BITS``): ``double``'s ``h`` (about ``acc · M0 /
    2^31``) at and around ``+-2^41`` with every right shift ``e`` that can bring it down
    (``sh`` from -31 to -20, and 0), and ``single``'s shifted product at ``+-2^9`` for the same
    shifts; both multipliers' extremes. Against the golden model, which is exact."""
    lanes = 4
    dut = Requantizer(lanes=lanes, acc_width=64, rounding=rounding, pp_bits=pp_bits)
    accs = []
    for b in (40, 41, 42, 43, 50, 62):
        for d in (-2, -1, 0, 1, 2):
            accs += [(1 << b) + d, -(1 << b) + d]
    for sh in range(-31, -19):      # single: y = acc·M0 / 2^(31 - sh) near +-2^9
        for d in (-2, -1, 0, 1):
            accs += [(1 << (10 - sh)) + d, -(1 << (10 - sh)) + d]
    accs += [(1 << 63) - 1, -(1 << 63)]
    vectors = []
    for sh in [-31, -30, -25, -21, -20, 0, 1]:
        for mult in (1 << 30, (1 << 31) - 1):
            for k in range(0, len(accs), lanes):
                chunk = (accs[k:k + lanes] + [0] * lanes)[:lanes]
                for zp in (-128, 3, 127):       # a saturated y must clamp from any zero point
                    vectors.append((chunk, [mult] * lanes, [sh] * lanes, zp, -128, 127))
    _check_requantizer(dut, vectors)


def test_requantizer_single_coarse_shift_saturation_edges():
    """``single``'s shift by ``30 - sh = 8·q + f`` in two stages, the coarse one saturated to
    17 bits (``npugen.hw.requant._X_BITS``): products whose coarse shift ``acc·M0 >> 8·q``
    lies at and around ``+-2^16`` (the saturation's edges) for every ``q`` a shift in
    ``[-31, 30]`` reaches (from 2, below which no 64-bit accumulator gets there with
    ``M0 >= 2^30``) and every fine shift ``f``, with both multiplier extremes. Against the golden
    model, which is exact."""
    lanes = 4
    dut = Requantizer(lanes=lanes, acc_width=64, rounding="single")
    vectors = []
    for q in range(2, 8):
        for f in range(8):
            ushift = 8 * q + f
            if ushift > 61:
                continue
            sh = 30 - ushift
            for mult in (1 << 30, (1 << 31) - 1):
                accs = []
                for k in ((1 << 16) - 1, 1 << 16, -(1 << 16), -(1 << 16) - 1):
                    # acc·mult >> 8q near k: acc = k·2^(8q) / mult, rounded, and its neighbours
                    a0 = (k << (8 * q)) // mult
                    accs += [a0 + d for d in (-1, 0, 1, 2)]
                for j in range(0, len(accs), lanes):
                    for zp in (-128, 0, 127):   # a saturated y must clamp from any zero point
                        vectors.append((accs[j:j + lanes], [mult] * lanes, [sh] * lanes, zp,
                                        -128, 127))
    _check_requantizer(dut, vectors)


@pytest.mark.parametrize("pp_bits", [16, 8])
@pytest.mark.parametrize("rounding", ["single", "double"])
@pytest.mark.parametrize("W", [32, 35, 48, 64])
def test_requantizer_matches_golden(rounding, W, pp_bits):
    """Widths that split ``acc`` into 2, 3 and 4 17-bit chunks for the partial products,
    the chunk boundaries (bits 16/17, 33/34) and the extremes of each width, with both
    partial-product widths (the latency each declares is the one ``_check_requantizer``
    waits for)."""
    lanes = 4
    dut = Requantizer(lanes=lanes, acc_width=W, rounding=rounding, pp_bits=pp_bits)
    rng = random.Random(5 + W)
    lo_acc, hi_acc = -(1 << (W - 1)), (1 << (W - 1)) - 1
    edges = [v for b in (16, 17, 33, 34, 50, 51) if b < W - 1
             for v in ((1 << b) - 1, 1 << b, -(1 << b), -(1 << b) - 1)]
    vectors = []
    for _ in range(200):
        accs = [rng.choice([lo_acc, hi_acc, rng.randint(lo_acc, hi_acc),
                            rng.randint(-3000, 3000), rng.choice(edges)])
                for _ in range(lanes)]
        mults = [rng.choice([0, 1 << 30, (1 << 31) - 1, rng.randint(1 << 30, (1 << 31) - 1)])
                 for _ in range(lanes)]
        shifts = [rng.choice([-31, 30, rng.randint(-31, 30), rng.randint(-8, 2)])
                  for _ in range(lanes)]
        zp = rng.randint(-128, 127)
        lo = rng.randint(-128, 0)
        hi = rng.randint(lo, 127)
        vectors.append((accs, mults, shifts, zp, lo, hi))
    _check_requantizer(dut, vectors)


def test_ws_array_latency_and_weight_switch():
    """Row t uses weight tile t % 2; the result leaves exactly ``latency`` cycles later."""
    R, C = 3, 2
    dut = WeightStationaryArray(rows=R, cols=C)
    rng = np.random.default_rng(4)
    w = rng.integers(-128, 128, (2, R, C))
    a = rng.integers(-128, 128, (6, R))
    got = {}

    async def tb(ctx):
        for buf in range(2):
            for r in range(R):
                ctx.set(dut.w_en, 1)
                ctx.set(dut.w_row, r)
                ctx.set(dut.w_buf, buf)
                for c in range(C):
                    ctx.set(dut.w_data[c], int(w[buf, r, c]))
                await ctx.tick()
        ctx.set(dut.w_en, 0)
        ctx.set(dut.sel_next, 0)     # sel_next is the next cycle's sel
        await ctx.tick()
        for t in range(len(a) + dut.latency):
            if t < len(a):
                for r in range(R):
                    ctx.set(dut.a[r], int(a[t, r]))
            ctx.set(dut.sel, t % 2)
            ctx.set(dut.sel_next, (t + 1) % 2)
            await ctx.tick()
            got[t + 1] = [ctx.get(dut.c[c]) for c in range(C)]

    _simulate(dut, tb)
    for t in range(len(a)):
        want = [int(v) for v in a[t] @ w[t % 2]]
        assert got[t + dut.latency] == want
    assert dut.c[0].shape().width == (16384 * R).bit_length() + 1


@pytest.mark.parametrize("isolate", [False, True])
def test_ws_array_bubble_operands(isolate):
    """A bubble (``a_valid`` 0, its lanes 0) after a row of A: without operand isolation the
    array computes the bubble's zeros (its row of C is 0); with it the input register keeps
    the last row, so the PEs see the same operands again and the bubble's row of C repeats
    the last one (same weights). The rows themselves are exact either way."""
    R, C = 3, 2
    dut = WeightStationaryArray(rows=R, cols=C, isolate=isolate)
    rng = np.random.default_rng(5)
    w = rng.integers(-128, 128, (R, C))
    a = rng.integers(-128, 128, (2, R))
    rows = [a[0], None, None, a[1], None]       # None: a bubble
    got = {}

    async def tb(ctx):
        for r in range(R):
            ctx.set(dut.w_en, 1)
            ctx.set(dut.w_row, r)
            ctx.set(dut.w_buf, 0)
            for c in range(C):
                ctx.set(dut.w_data[c], int(w[r, c]))
            await ctx.tick()
        ctx.set(dut.w_en, 0)
        await ctx.tick()
        for t in range(len(rows) + dut.latency):
            row = rows[t] if t < len(rows) else None
            for r in range(R):
                ctx.set(dut.a[r], 0 if row is None else int(row[r]))
            if isolate:
                ctx.set(dut.a_valid, row is not None)
            await ctx.tick()
            got[t + 1] = [ctx.get(dut.c[c]) for c in range(C)]

    _simulate(dut, tb)
    out = [got[t + dut.latency] for t in range(len(rows))]
    c0, c1 = ([int(v) for v in x @ w] for x in a)
    assert out[0] == c0 and out[3] == c1
    assert out[1] == out[2] == (c0 if isolate else [0] * C)
    assert out[4] == (c1 if isolate else [0] * C)


@pytest.mark.parametrize("isolate", [False, True])
def test_os_array_holds_operands_on_invalid_steps(isolate):
    """An output-stationary array with invalid K steps (``valid`` 0, lanes 0) between valid
    ones: the sums are exact with operand isolation too, where the input register keeps the
    last valid step's lanes through the invalid ones (a PE only accumulates on ``valid``, so
    the held lanes are not seen at the ports)."""
    R, C = 2, 2
    dut = OutputStationaryArray(rows=R, cols=C, acc_width=32, isolate=isolate)
    assert dut.isolate is isolate
    rng = np.random.default_rng(6)
    steps = [(rng.integers(-128, 128, R), rng.integers(-128, 128, C)), None, None,
             (rng.integers(-128, 128, R), rng.integers(-128, 128, C)), None]
    got = []

    async def tb(ctx):
        valid_steps = [x for x in steps if x is not None]
        for t in range(len(steps) + dut.latency + R + 2):
            step = steps[t] if t < len(steps) else None
            for r in range(R):
                ctx.set(dut.a[r], 0 if step is None else int(step[0][r]))
            for c in range(C):
                ctx.set(dut.b[c], 0 if step is None else int(step[1][c]))
            ctx.set(dut.valid, step is not None)
            ctx.set(dut.last, step is not None and step is valid_steps[-1])
            await ctx.tick()
            got.append([ctx.get(dut.c[c]) for c in range(C)])

    _simulate(dut, tb)
    a = np.array([x[0] for x in steps if x is not None])
    b = np.array([x[1] for x in steps if x is not None])
    want = a.T @ b            # C[i][n] = sum_k A[i][k] B[k][n], lane i of the column of A
    # the last step entered at cycle len(steps) - 2; got[t] is sampled after cycle t
    first = len(steps) - 2 + dut.latency - 1
    for i in range(R):
        assert got[first + i] == [int(v) for v in want[i]], i


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_operand_isolation_needs_the_input_register():
    for make in (lambda: WeightStationaryArray(rows=2, cols=2, input_reg=False, isolate=True),
                 lambda: OutputStationaryArray(rows=2, cols=2, acc_width=32, input_reg=False,
                                               isolate=True)):
        with pytest.raises(ValueError, match="Operand isolation needs the input register"):
            make()
    with pytest.raises(ValueError, match="Operand isolation needs the array's input register"):
        GemmEngine(rows=2, cols=2, array_input_reg=False, operand_isolation=True)


@pytest.mark.parametrize("R,C", [(1, 1), (3, 2), (4, 4)])
def test_ws_array_weight_writes_at_any_cycle(R, C):
    """Random weight writes every cycle, to either tile, including the one in use.

    Independent model of the array's contract (class docstring): a write presented at cycle
    ``t'`` reaches column ``n`` at ``t' + n``, and a row of A entering at ``t`` meets PE
    ``(r, n)`` at ``t + r + n``; so row ``t`` sees, in PE ``(r, n)`` of tile ``sel``, the last
    write to that register presented before cycle ``t + r``. This exercises the PE's weight
    bypass (a weight written the cycle before it is used) and ``sel_next``.
    """
    dut = WeightStationaryArray(rows=R, cols=C)
    rng = np.random.default_rng(10 * R + C)
    T = 60
    a = rng.integers(-128, 128, (T, R))
    sel = rng.integers(0, 2, T)
    w_en = rng.integers(0, 2, T)
    w_row = rng.integers(0, R, T)
    w_buf = rng.integers(0, 2, T)
    w_data = rng.integers(-128, 128, (T, C))
    got = {}

    async def tb(ctx):
        ctx.set(dut.sel_next, int(sel[0]))
        await ctx.tick()
        for t in range(T + dut.latency):
            if t < T:
                for r in range(R):
                    ctx.set(dut.a[r], int(a[t, r]))
                ctx.set(dut.w_en, int(w_en[t]))
                ctx.set(dut.w_row, int(w_row[t]))
                ctx.set(dut.w_buf, int(w_buf[t]))
                for c in range(C):
                    ctx.set(dut.w_data[c], int(w_data[t, c]))
            else:
                ctx.set(dut.w_en, 0)
            ctx.set(dut.sel, int(sel[t]) if t < T else 0)
            ctx.set(dut.sel_next, int(sel[t + 1]) if t + 1 < T else 0)
            await ctx.tick()
            got[t + 1] = [ctx.get(dut.c[c]) for c in range(C)]

    _simulate(dut, tb)

    def weight(b, r, n, before):
        hits = [t for t in range(min(before, T)) if w_en[t] and w_row[t] == r and w_buf[t] == b]
        return int(w_data[hits[-1], n]) if hits else 0

    for t in range(T):
        want = [sum(int(a[t, r]) * weight(int(sel[t]), r, n, t + r) for r in range(R))
                for n in range(C)]
        assert got[t + dut.latency] == want, t


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_pe_parameter_errors():
    with pytest.raises(ValueError, match="Partial sum width must be an integer from 16 to 64, not 8"):
        WeightStationaryPE(psum_width=8)
    with pytest.raises(TypeError, match="Accumulator width must be an integer, not '32'"):
        OutputStationaryPE(acc_width="32")
    with pytest.raises(ValueError, match="Rows must be an integer from 1 to 64, not 0"):
        OutputStationaryArray(rows=0, cols=2, acc_width=32)
    with pytest.raises(ValueError, match="Result FIFO depth must be an integer >= rows"):
        GemmEngine(rows=8, cols=8, res_depth=4)
