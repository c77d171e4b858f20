# amaranth: UnusedElaboratable=no
"""Stress and corner-case tests of the GEMM engine in the Amaranth simulator.

Everything is checked against the golden models (``npugen.sim.golden``) through the host driver
(``npugen.sim.driver``): stream contract from ``docs/isa.md``, numerics from ``docs/numerics.md``.

The bench here is one cycle-accurate testbench coroutine (not one coroutine per stream) so that it
can insert valid bubbles on every input stream, hold commands eagerly while a job runs, pull the
synchronous reset in the middle of a job, override the data beats (tlast misplacement, garbage in
lanes whose tkeep bit is 0) and time every command and status handshake exactly.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.hdl import ResetInserter, Signal, Value
from amaranth.sim import Simulator

from npugen.hw import isa
from npugen.hw.config import GemmConfig
from npugen.hw.gemm import GemmEngine
from npugen.sim import driver
from npugen.sim.golden import gemm_int8, requantize

INT32_MAX = (1 << 31) - 1

# build_engine() only for its latencies leaves unelaborated objects behind
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

# ------------------------------------------------------------------------------------------------
# configurations


def cfg_of(rows, cols, dataflow, *, k_max=16, acc_width=None, rounding="single", acc_depth=4,
           res_depth=None, requant_lanes=None):
    """A GemmConfig (res_depth defaults to the smallest the config allows, requant_lanes to
    the derived ceil(cols / 4))."""
    if res_depth is None:
        res_depth = max(4, rows)
    return GemmConfig(rows=rows, cols=cols, dataflow=dataflow, k_max=k_max, acc_width=acc_width,
                      rounding=rounding, acc_depth=acc_depth, res_depth=res_depth,
                      requant_lanes=requant_lanes)


def engine_cfg(rows, cols, dataflow, *, k_max=16, acc_width=None, rounding="single", acc_depth=4,
               res_depth=None):
    """A config-like namespace for engine parameters GemmConfig does not allow (res_depth < 4):
    GemmEngine itself only requires res_depth >= rows."""
    from npugen.hw.config import derived_acc_width
    w = acc_width if acc_width is not None else derived_acc_width(k_max)
    return SimpleNamespace(rows=rows, cols=cols, dataflow=dataflow, k_max=k_max, acc_width=w,
                           acc_bits=w, lane_bits=8 * -(-w // 8), rounding=rounding,
                           acc_depth=acc_depth, res_depth=rows if res_depth is None else res_depth)


def build_engine(cfg):
    return GemmEngine.from_config(cfg)


def cid(cfg):
    return (f"{cfg.rows}x{cfg.cols}{cfg.dataflow}-{cfg.rounding[0]}"
            f"-D{cfg.acc_depth}-F{cfg.res_depth}-W{cfg.acc_bits}")


# ------------------------------------------------------------------------------------------------
# bench items


def pack_beat(stream, i):
    """Integer of beat ``i`` of a driver BeatStream in the StructLayout(data, keep, last)."""
    lanes = stream.lanes
    data = int.from_bytes(stream.data[i].tobytes(), "little")
    keep = int(sum(1 << j for j in range(lanes) if stream.keep[i, j]))
    return data | (keep << (8 * lanes)) | (int(stream.last[i]) << (9 * lanes))


def pack(data_bytes, keep_bits, last, lanes):
    data = int.from_bytes(bytes(int(x) & 0xFF for x in data_bytes), "little")
    keep = int(sum(1 << j for j, k in enumerate(keep_bits) if k))
    return data | (keep << (8 * lanes)) | (int(bool(last)) << (9 * lanes))


def beats_of(stream):
    return [pack_beat(stream, i) for i in range(len(stream))]


def set_last(word, lanes, last):
    bit = 1 << (9 * lanes)
    return (word | bit) if last else (word & ~bit)


@dataclass
class Job:
    """A job item: the driver's Streams, optionally with overridden data beats."""
    streams: driver.Streams
    act: list | None = None
    wgt: list | None = None


@dataclass
class Raw:
    """A raw command word with no data."""
    word: int


@dataclass
class Reset:
    """Assert the synchronous reset ``after`` cycles after the previous command was accepted
    (or after its first result beat when ``after_result`` is set), for ``length`` cycles."""
    after: int
    length: int = 2
    after_result: bool = False


@dataclass
class Outcome:
    status: driver.Status | None = None
    beats: list = field(default_factory=list)
    accepted: int | None = None        # cycle the command beat was accepted
    offered: int | None = None         # first cycle its status beat was offered
    aborted: bool = False


def run(cfg, items, *, res_ready=None, status_ready=None, act_valid=None, wgt_valid=None,
        cmd_valid=None, eager=False, max_cycles=60_000, idle_tail=40):
    """Run ``items`` (Job / Raw / Reset, or bare Streams) through a fresh engine.

    Returns one Outcome per Job/Raw item, in order. ``*_valid(cycle)`` give the chance to offer a
    beat (bubbles); ``res_ready``/``status_ready(cycle)`` the consumer's ready. ``eager``: offer
    the next command while the previous job still runs (the engine must hold it off).
    """
    items = [Job(it) if isinstance(it, driver.Streams) else it for it in items]
    dut = build_engine(cfg)
    rst = Signal()
    R, C = cfg.rows, cfg.cols
    out = [Outcome() for _ in items]
    always = (lambda c: True)
    res_ready = res_ready or always
    status_ready = status_ready or always
    act_valid, wgt_valid, cmd_valid = act_valid or always, wgt_valid or always, cmd_valid or always
    errors = []

    def data_until_reset(start):
        act, wgt = deque(), deque()
        for idx in range(start, len(items)):
            it = items[idx]
            if isinstance(it, Reset):
                break
            if isinstance(it, Job):
                act.extend((idx, w) for w in (it.act if it.act is not None
                                              else beats_of(it.streams.act)))
                wgt.extend((idx, w) for w in (it.wgt if it.wgt is not None
                                              else beats_of(it.streams.wgt)))
        return act, wgt

    cmd_payload = Value.cast(dut.cmd.payload)
    act_payload = Value.cast(dut.act.payload)
    wgt_payload = Value.cast(dut.wgt.payload)

    async def tb(ctx):
        act_q, wgt_q = data_until_reset(0)
        nxt = 0                 # next item to issue
        pending = deque()       # item indices whose command was accepted, status not yet seen
        cmd_hold = act_hold = wgt_hold = None
        last_accept = None
        first_result = None
        rst_left = 0
        reset_wait = None
        cycle = 0
        tail = None
        prev_res = prev_st = None
        while True:
            # -- reset handling ------------------------------------------------------------
            if rst_left == 0 and nxt < len(items) and isinstance(items[nxt], Reset):
                it = items[nxt]
                ref = first_result if it.after_result else last_accept
                if ref is not None and cycle >= ref + it.after:
                    rst_left = it.length
                    for idx in pending:
                        out[idx].aborted = True
                    pending.clear()
                    cmd_hold = act_hold = wgt_hold = None
                    act_q, wgt_q = data_until_reset(nxt + 1)
                    nxt += 1
            if rst_left:
                ctx.set(rst, 1)
                for p in (dut.cmd, dut.act, dut.wgt):
                    ctx.set(p.valid, 0)
                ctx.set(dut.res.ready, 0)
                ctx.set(dut.status.ready, 0)
                await ctx.tick()
                ctx.set(rst, 0)
                rst_left -= 1
                first_result = None
                prev_res = prev_st = None
                cycle += 1
                continue
            # -- offer beats -------------------------------------------------------------
            if (cmd_hold is None and nxt < len(items) and not isinstance(items[nxt], Reset)
                    and (eager or not pending) and cmd_valid(cycle)):
                it = items[nxt]
                cmd_hold = (nxt, it.word if isinstance(it, Raw) else it.streams.cmd)
            if act_hold is None and act_q and act_valid(cycle):
                act_hold = act_q.popleft()
            if wgt_hold is None and wgt_q and wgt_valid(cycle):
                wgt_hold = wgt_q.popleft()
            for port, pay, hold in ((dut.cmd, cmd_payload, cmd_hold),
                                    (dut.act, act_payload, act_hold),
                                    (dut.wgt, wgt_payload, wgt_hold)):
                ctx.set(port.valid, hold is not None)
                if hold is not None:
                    ctx.set(pay, hold[1])
            rr, sr = int(bool(res_ready(cycle))), int(bool(status_ready(cycle)))
            ctx.set(dut.res.ready, rr)
            ctx.set(dut.status.ready, sr)
            (_, _, c_rdy, a_rdy, w_rdy, rv, rdata, rkeep, rlast, sv, sdata) = \
                await ctx.tick().sample(dut.cmd.ready, dut.act.ready, dut.wgt.ready,
                                        dut.res.valid, dut.res.payload.data,
                                        dut.res.payload.keep, dut.res.payload.last,
                                        dut.status.valid, dut.status.payload)
            # -- handshakes --------------------------------------------------------------
            if cmd_hold is not None and c_rdy:
                idx = cmd_hold[0]
                out[idx].accepted = cycle
                pending.append(idx)
                last_accept = cycle
                cmd_hold = None
                nxt += 1
            if act_hold is not None and a_rdy:
                act_hold = None
            if wgt_hold is not None and w_rdy:
                wgt_hold = None
            if prev_res is not None and (not rv or (rdata, rkeep, rlast) != prev_res):
                errors.append(f"cycle {cycle}: result beat changed or withdrawn before ready")
            prev_res = (rdata, rkeep, rlast) if rv and not rr else None
            if prev_st is not None and (not sv or sdata != prev_st):
                errors.append(f"cycle {cycle}: status beat changed or withdrawn before ready")
            prev_st = sdata if sv and not sr else None
            if rv and rr:
                if not pending:
                    errors.append(f"cycle {cycle}: result beat with no job running")
                else:
                    out[pending[0]].beats.append((rdata, rkeep, rlast))
                    if first_result is None:
                        first_result = cycle
            if sv:
                if not pending:
                    errors.append(f"cycle {cycle}: status beat with no command pending")
                else:
                    o = out[pending[0]]
                    if o.offered is None:
                        o.offered = cycle
                    if sr:
                        o.status = driver.decode_status(sdata)
                        pending.popleft()
            cycle += 1
            done = (nxt >= len(items) and not pending and cmd_hold is None)
            if done:
                if act_q or wgt_q or act_hold or wgt_hold:
                    errors.append("data beats left unconsumed: "
                                  f"act {len(act_q) + (act_hold is not None)}, "
                                  f"wgt {len(wgt_q) + (wgt_hold is not None)}")
                    return
                if tail is None:
                    tail = cycle + idle_tail
                elif cycle >= tail:
                    return
            if cycle >= max_cycles:
                errors.append(f"timeout after {cycle} cycles: next item {nxt}, pending "
                              f"{list(pending)}, act left {len(act_q)}, wgt left {len(wgt_q)}")
                return

    sim = Simulator(ResetInserter(rst)(dut))
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert not errors, errors
    return [o for o, it in zip(out, items) if not isinstance(it, Reset)]


def decode(cfg, job, beats):
    L = cfg.lane_bits
    nbytes = L * cfg.cols // 8
    bs = [driver.Beat(int(d).to_bytes(nbytes, "little"), int(k), bool(l)) for d, k, l in beats]
    return driver.decode_results(bs, job, cfg)


def golden_of(job, cfg):
    return gemm_int8(job.a, job.b, bias=job.bias, zp_a=job.zp_a, multiplier=job.multiplier,
                     shift=job.shift, zp_out=job.zp_out, act_min=job.act_min,
                     act_max=job.act_max, rounding=cfg.rounding)


def raw_of(job):
    return gemm_int8(job.a, job.b, bias=job.bias, zp_a=job.zp_a)


def check_ok(cfg, streams, outcome, want=None):
    """Status OK, exact status timing, results equal the golden model."""
    job = streams.job
    assert outcome.status is not None, "no status"
    assert outcome.status.error == isa.Error.OK, outcome.status
    assert outcome.status.version == isa.ISA_VERSION
    assert outcome.status.tag == job.tag
    assert outcome.status.reserved == 0
    assert outcome.status.cycles == outcome.offered - outcome.accepted, \
        (outcome.status.cycles, outcome.accepted, outcome.offered)
    got = decode(cfg, job, outcome.beats)
    # isa.md: the data of the lanes past nc is 0
    plan = driver.result_plan(*job.shape[::2], cfg, bool(job.acc_out))
    L = cfg.lane_bits
    for i, (d, _, _) in enumerate(outcome.beats):
        assert int(d) >> (L * int(plan.ncols[i])) == 0, f"beat {i}: lanes past nc not 0"
    if want is None:
        want = golden_of(job, cfg)
    np.testing.assert_array_equal(got, want)


def rjob(rng, m, k, n, *, requant=False, bias_range=5000, **kw):
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    bias = rng.integers(-bias_range, bias_range, n).astype(np.int32)
    args = dict(zp_a=int(rng.integers(-128, 128)), tag=int(rng.integers(0, 256)))
    if requant:
        args.update(multiplier=rng.integers(1 << 30, 1 << 31, n), shift=rng.integers(-14, 1, n),
                    zp_out=int(rng.integers(-30, 30)), act_min=-110, act_max=120)
    args.update(kw)
    return driver.GemmJob(a, b, bias=bias, **args)


def bubbles(seed, p_on):
    """A valid pattern: offer a beat with probability ``p_on`` each cycle."""
    r = np.random.default_rng(seed)
    pat = r.random(200_000) < p_on
    return lambda c: bool(pat[c % len(pat)])


def stretches(seed, mean_low=40):
    """A ready pattern with long stretches held low."""
    r = np.random.default_rng(seed)
    pat = []
    while len(pat) < 200_000:
        pat += [1] * int(r.integers(1, 12)) + [0] * int(r.integers(1, 2 * mean_low))
    return lambda c: pat[c % len(pat)]


# ------------------------------------------------------------------------------------------------
# ws: row chunks, K tiles, column tiles, degenerate shapes


WS_A = cfg_of(2, 3, "ws", acc_depth=4)
WS_B = cfg_of(3, 2, "ws", acc_depth=2, rounding="double")


@pytest.mark.parametrize("cfg", [WS_A, WS_B], ids=cid)
@pytest.mark.parametrize("requant", [False, True], ids=["raw", "rq"])
def test_ws_row_chunks_k_tiles_col_tiles(cfg, requant):
    """M = acc_depth exactly, M > acc_depth with a last chunk of one row (mc = 1), several K
    tiles (K multiple of R and K = R + 1), 1 and 3+ column tiles (param slot reuse)."""
    R, C, D = cfg.rows, cfg.cols, cfg.acc_depth
    rng = np.random.default_rng(10 + requant)
    shapes = [(D, 2 * R, C), (D + 1, R + 1, C + 1), (2 * D + 1, 2 * R, 3 * C + 1),
              (1, R + 1, 3 * C), (3 * D, 1, 1), (1, 1, 1), (1, 3 * R, 1), (D - 1, R, 2 * C)]
    jobs = [rjob(rng, *s, requant=requant) for s in shapes]
    out = run(cfg, driver.encode_many(jobs, cfg), res_ready=bubbles(3, 0.8))
    for st, o in zip(driver.encode_many(jobs, cfg), out):
        check_ok(cfg, st, o)


@pytest.mark.parametrize("dataflow", ["ws", "os"])
@pytest.mark.parametrize("rounding", ["single", "double"])
def test_1x1_array(dataflow, rounding):
    cfg = cfg_of(1, 1, dataflow, rounding=rounding, acc_depth=2, k_max=8)
    rng = np.random.default_rng(20)
    shapes = [(1, 1, 1), (3, 8, 2), (5, 1, 3), (2, 3, 1)]
    jobs = [rjob(rng, *s, requant=i % 2 == 1) for i, s in enumerate(shapes)]
    streams = driver.encode_many(jobs, cfg)
    out = run(cfg, streams, res_ready=bubbles(4, 0.7), act_valid=bubbles(5, 0.7))
    for st, o in zip(streams, out):
        check_ok(cfg, st, o)


# ------------------------------------------------------------------------------------------------
# os: drain padding, ragged M


OS_A = cfg_of(3, 2, "os", acc_depth=8)
OS_B = cfg_of(4, 3, "os", acc_depth=4, rounding="double")


@pytest.mark.parametrize("cfg", [OS_A, OS_B], ids=cid)
def test_os_short_k_and_ragged_m(cfg):
    """K < rows (drain padding), K = 1, M not a multiple of rows, 3+ column tiles."""
    R, C = cfg.rows, cfg.cols
    rng = np.random.default_rng(30)
    shapes = [(R + 1, 1, C), (2 * R + 1, R - 1, 2 * C + 1), (1, 1, 1), (R, R, 3 * C),
              (3 * R - 1, 2, C + 1), (5, R + 2, 1), (1, 7, 3 * C + 2)]
    jobs = [rjob(rng, *s, requant=i % 2 == 0) for i, s in enumerate(shapes)]
    streams = driver.encode_many(jobs, cfg)
    out = run(cfg, streams, res_ready=bubbles(6, 0.85))
    for st, o in zip(streams, out):
        check_ok(cfg, st, o)


# ------------------------------------------------------------------------------------------------
# result backpressure with the smallest result FIFO


@pytest.mark.parametrize("cfg", [cfg_of(4, 2, "ws", res_depth=4, acc_depth=4),
                                 cfg_of(4, 3, "os", res_depth=4, acc_depth=4),
                                 cfg_of(4, 4, "ws", res_depth=4, acc_depth=8, rounding="double")],
                         ids=cid)
@pytest.mark.parametrize("pattern", ["random", "stretches"])
def test_min_res_depth_backpressure(cfg, pattern):
    R, C = cfg.rows, cfg.cols
    rng = np.random.default_rng(40)
    shapes = [(11, 2 * R + 1, C + 1), (1, 1, 1), (2 * R + 1, R, 2 * C), (9, 3, 3 * C)]
    jobs = [rjob(rng, *s, requant=i % 2 == 0) for i, s in enumerate(shapes)]
    streams = driver.encode_many(jobs, cfg)
    ready = bubbles(7, 0.3) if pattern == "random" else stretches(8)
    out = run(cfg, streams, res_ready=ready, status_ready=bubbles(9, 0.5))
    for st, o in zip(streams, out):
        check_ok(cfg, st, o)


@pytest.mark.parametrize("cfg", [engine_cfg(1, 2, "ws"), engine_cfg(1, 1, "os"),
                                 engine_cfg(3, 2, "ws"), engine_cfg(3, 2, "os")], ids=cid)
def test_res_depth_equal_rows_below_config_minimum(cfg):
    """GemmEngine accepts res_depth == rows even below GemmConfig's minimum of 4."""
    rng = np.random.default_rng(41)
    R, C = cfg.rows, cfg.cols
    shapes = [(7, R + 1, C + 1), (2 * R + 1, 1, 1), (5, 3, 2 * C)]
    jobs = [rjob(rng, *s, requant=i % 2 == 0) for i, s in enumerate(shapes)]
    streams = driver.encode_many(jobs, cfg)
    for ready in (None, bubbles(11, 0.4)):
        out = run(cfg, streams, res_ready=ready)
        for st, o in zip(streams, out):
            check_ok(cfg, st, o)


@pytest.mark.parametrize("cfg", [engine_cfg(2, 2, "ws"), engine_cfg(2, 2, "os")], ids=cid)
def test_res_depth_two(cfg):
    """rows = 2, res_depth = 2 (legal for GemmEngine): two rows in a row into an empty FIFO.

    Regression: SyncFIFOBuffered(depth=2) holds a fresh entry in its inner 1-deep FIFO for a
    cycle and refused the second credited row (fixed in 9e0af15: the FIFO is res_depth + 1)."""
    rng = np.random.default_rng(42)
    jobs = [rjob(rng, 4, 2, 2)]
    streams = driver.encode_many(jobs, cfg)
    out = run(cfg, streams, max_cycles=3000)
    check_ok(cfg, streams[0], out[0])


# ------------------------------------------------------------------------------------------------
# input-side valid gaps


@pytest.mark.parametrize("cfg", [WS_A, OS_A, cfg_of(2, 2, "ws", acc_depth=2, rounding="double")],
                         ids=cid)
def test_input_valid_gaps(cfg):
    R, C = cfg.rows, cfg.cols
    rng = np.random.default_rng(50)
    shapes = [(9, 2 * R + 1, 2 * C + 1), (1, 1, 1), (5, R, C), (3, R + 1, 3 * C)]
    jobs = [rjob(rng, *s, requant=i % 2 == 1) for i, s in enumerate(shapes)]
    streams = driver.encode_many(jobs, cfg)
    out = run(cfg, streams, act_valid=bubbles(51, 0.45), wgt_valid=bubbles(52, 0.35),
              cmd_valid=bubbles(53, 0.3), res_ready=bubbles(54, 0.6))
    for st, o in zip(streams, out):
        check_ok(cfg, st, o)


@pytest.mark.parametrize("cfg", [WS_A, OS_A], ids=cid)
def test_keep_zero_lanes_carry_garbage(cfg):
    """A lane whose tkeep bit is 0 reads as 0, whatever its tdata (isa.md): fill every such
    lane (ragged edges, and lanes cleared inside a beat where A or B is 0) with garbage."""
    rng = np.random.default_rng(55)
    R, C = cfg.rows, cfg.cols
    job = rjob(rng, 2 * R + 1, R + 1, C + 1, requant=True)
    job.a[rng.random(job.a.shape) < 0.3] = 0
    job.b[rng.random(job.b.shape) < 0.3] = 0
    st = driver.encode(job, cfg)
    g = np.random.default_rng(56)

    def garble(stream, zero_is_hole):
        words = []
        for i in range(len(stream)):
            data = stream.data[i].copy()
            keep = stream.keep[i].copy()
            holes = ~keep
            if zero_is_hole:
                holes |= keep & (data == 0) & (g.random(stream.lanes) < 0.7)
            keep &= ~holes
            data[holes] = g.integers(1, 256, int(holes.sum()))
            words.append(pack(data, keep, stream.last[i], stream.lanes))
        return words

    # Parameter and weight beats too: a zero byte with its keep bit cleared still reads as 0.
    out = run(cfg, [Job(st, act=garble(st.act, True), wgt=garble(st.wgt, True))])
    check_ok(cfg, st, out[0])


# ------------------------------------------------------------------------------------------------
# accumulation across jobs


@pytest.mark.parametrize("cfg", [WS_A, OS_A, cfg_of(2, 2, "ws", acc_depth=2),
                                 cfg_of(1, 1, "os", acc_depth=2)], ids=cid)
def test_acc_out_then_acc_in(cfg):
    """acc_out -> acc_in (raw), acc_out -> acc_in+acc_out -> acc_in requant (chain of 3), with
    several K tiles in ws, M = acc_depth and M = 1, N = cols and N = 1."""
    R, C, D = cfg.rows, cfg.cols, cfg.acc_depth
    rng = np.random.default_rng(60)
    j1 = rjob(rng, D, 2 * R + 1, C, acc_out=True)
    j2 = rjob(rng, D, R + 1, C, acc_in=True)
    j3 = rjob(rng, 1, 1, 1, acc_out=True)
    j4 = rjob(rng, 1, 3 * R, 1, acc_in=True, acc_out=True)
    j5 = rjob(rng, 1, R, 1, acc_in=True, requant=True)
    jobs = [j1, j2, j3, j4, j5]
    streams = driver.encode_many(jobs, cfg)
    out = run(cfg, streams, res_ready=bubbles(61, 0.7), act_valid=bubbles(62, 0.8))
    for st, o in zip(streams, out):
        if st.job.acc_out:
            assert o.status.ok and not o.beats and o.status.cycles == o.offered - o.accepted
    check_ok(cfg, streams[1], out[1], want=raw_of(j1) + raw_of(j2))
    s = raw_of(j3) + raw_of(j4) + raw_of(j5)
    want = requantize(s, j5.multiplier, j5.shift, zp_out=j5.zp_out, act_min=j5.act_min,
                      act_max=j5.act_max, rounding=cfg.rounding)
    check_ok(cfg, streams[4], out[4], want=want)


@pytest.mark.parametrize("dataflow", ["ws", "os"])
def test_acc_chain_wider_than_int32(dataflow):
    """acc_width = 40: a held accumulator plus a second job exceeds int32; raw lanes are 40 bits
    and the requantizer takes the wide value."""
    cfg = cfg_of(2, 2, dataflow, acc_width=40, acc_depth=4, k_max=4)
    k = 4
    b = np.full((k, 2), -128, dtype=np.int8)
    a = np.full((3, k), -128, dtype=np.int8)
    big = INT32_MAX - 128 * 128 * k
    j1 = driver.GemmJob(a, b, bias=np.array([big, -big], dtype=np.int32), acc_out=True)
    j2 = driver.GemmJob(a, b, bias=np.array([big, -big], dtype=np.int32), acc_in=True,
                        acc_out=True)
    j3 = driver.GemmJob(a, b, bias=np.array([big, big], dtype=np.int32), acc_in=True)
    j4 = driver.GemmJob(a, b, bias=np.array([big, -big], dtype=np.int32), acc_out=True)
    j5 = driver.GemmJob(a, b, bias=np.array([big, -big], dtype=np.int32), acc_in=True,
                        multiplier=np.array([(1 << 31) - 1, 1 << 30]), shift=np.array([-31, -31]))
    streams = driver.encode_many([j1, j2, j3, j4, j5], cfg)
    out = run(cfg, streams)
    want3 = raw_of(j1) + raw_of(j2) + raw_of(j3)
    assert want3.max() > INT32_MAX
    check_ok(cfg, streams[2], out[2], want=want3)
    s = raw_of(j4) + raw_of(j5)
    want5 = requantize(s, j5.multiplier, j5.shift, rounding=cfg.rounding)
    check_ok(cfg, streams[4], out[4], want=want5)


def _acc_cmd(m, n, k=1, acc_in=1, acc_out=0, requant=0):
    return isa.pack(isa.CMD_FIELDS, opcode=1, version=isa.ISA_VERSION, acc_in=acc_in, acc_out=acc_out,
                    requant=requant, m=m, k=k, n=n, act_min=-128, act_max=127)


@pytest.mark.parametrize("cfg", [WS_A, OS_A], ids=cid)
def test_acc_in_rejections(cfg):
    R, C, D = cfg.rows, cfg.cols, cfg.acc_depth
    rng = np.random.default_rng(65)
    plain = rjob(rng, 2, 3, C)
    held = rjob(rng, 2, 3, C, acc_out=True)
    held1 = rjob(rng, 3, 2, 1, acc_out=True)
    consume = rjob(rng, 3, 2, 1, acc_in=True)
    items = [
        Raw(_acc_cmd(2, C)),                        # nothing held at all (after power-up)
        driver.encode(plain, cfg),                  # a non-acc job
        Raw(_acc_cmd(2, C)),                        # ... drops nothing it could use
        driver.encode(held, cfg),                   # holds 2 x C
        Raw(_acc_cmd(3, C)),                        # different m
        Raw(_acc_cmd(2, C - 1 if C > 1 else 2)),    # different n
        Raw(_acc_cmd(D + 1, C, acc_in=0, acc_out=1)),   # acc_out with m > acc_depth
        Raw(_acc_cmd(D, C + 1, acc_in=0, acc_out=1)),   # acc_out with n > cols
        Raw(_acc_cmd(2, C, acc_in=0, acc_out=1, requant=1)),  # acc_out with requant
        driver.encode(held1, cfg),                  # holds 3 x 1
        driver.encode(consume, cfg, held=driver.encode(held1, cfg).bound),  # uses it
        Raw(_acc_cmd(3, 1)),                        # dropped by the acc_in job itself
        driver.encode(held1, cfg),                  # holds 3 x 1 again
        Reset(after=4),                             # reset mid acc_out job: nothing held
        Raw(_acc_cmd(3, 1)),
        driver.encode(held1, cfg),                  # holds 3 x 1 (after reset)
        Reset(after=200),                           # reset after it completed
        Raw(_acc_cmd(3, 1)),
    ]
    out = run(cfg, items)
    errs = [None if o.aborted else int(o.status.error) for o in out]
    BA, OK = int(isa.Error.BAD_ACC), int(isa.Error.OK)
    assert errs == [BA, OK, BA, OK, BA, BA, BA, BA, BA, OK, OK, BA, None, BA, OK, BA], errs
    for o, it in zip(out, [it for it in items if not isinstance(it, Reset)]):
        if isinstance(it, Raw):
            assert o.status.cycles == 1 and not o.beats and o.offered - o.accepted == 1
    check_ok(cfg, items[10], out[10], want=raw_of(held1) + raw_of(consume))


@pytest.mark.parametrize("cfg", [WS_A, OS_A], ids=cid)
def test_acc_bounds_accepted(cfg):
    """acc_out/acc_in with m == acc_depth and n == cols is accepted (boundary of BAD_ACC)."""
    rng = np.random.default_rng(66)
    j1 = rjob(rng, cfg.acc_depth, 2, cfg.cols, acc_out=True)
    j2 = rjob(rng, cfg.acc_depth, cfg.k_max, cfg.cols, acc_in=True)
    streams = driver.encode_many([j1, j2], cfg)
    out = run(cfg, streams)
    check_ok(cfg, streams[1], out[1], want=raw_of(j1) + raw_of(j2))


# ------------------------------------------------------------------------------------------------
# numerics at the edges


@pytest.mark.parametrize("dataflow", ["ws", "os"])
@pytest.mark.parametrize("rounding", ["single", "double"])
def test_requant_extremes(dataflow, rounding):
    """Multipliers 0, 2^30, 2^31 - 1, shifts -31 and 30, accumulators at +-(2^31 - 1) and
    rounding ties, zero points and clamps."""
    C = 4
    cfg = cfg_of(2, C, dataflow, rounding=rounding, k_max=8, acc_depth=4)
    rng = np.random.default_rng(70)
    mults = [0, 1 << 30, INT32_MAX, 1 << 30, INT32_MAX, (1 << 30) + 12345, 1 << 30, INT32_MAX]
    shifts = [-31, 30, -31, 0, -1, -30, -2, 30]
    jobs = []
    k = 8
    # accumulators exactly at +(2^31 - 1) and -(2^31 - 1): all-(-128) operands at K = k_max
    a = np.full((3, k), -128, dtype=np.int8)
    a[1] = 127
    b = np.full((k, 8), -128, dtype=np.int8)
    b[:, 4:] = 127
    bias = np.array([INT32_MAX - 16384 * k] * 4 + [-(INT32_MAX - 16256 * k)] * 4, dtype=np.int64)
    jobs.append(driver.GemmJob(a, b, bias=bias.astype(np.int32), multiplier=np.array(mults),
                               shift=np.array(shifts), zp_out=0))
    jobs.append(driver.GemmJob(a, b, bias=bias.astype(np.int32)))   # the same, raw
    # small accumulators: exact ties under M0 = 2^30 (halving) with shifts 0, -1, -2
    for zp_out, lo, hi in ((0, -128, 127), (-7, -7, 127), (5, -3, 6), (127, 127, 127),
                           (-128, -128, -100)):
        a = rng.integers(-4, 5, (5, 3)).astype(np.int8)
        bm = rng.integers(-3, 4, (3, 8)).astype(np.int8)
        jobs.append(driver.GemmJob(a, bm, bias=rng.integers(-9, 10, 8).astype(np.int32),
                                   zp_a=int(rng.integers(-3, 4)),
                                   multiplier=np.array([1 << 30] * 6 + [INT32_MAX, 0]),
                                   shift=np.array([0, -1, -2, 30, 1, -31, -31, 7]),
                                   zp_out=zp_out, act_min=lo, act_max=hi))
    streams = driver.encode_many(jobs, cfg)
    out = run(cfg, streams)
    assert int(golden_of(jobs[1], cfg).max()) == INT32_MAX
    assert int(golden_of(jobs[1], cfg).min()) == -INT32_MAX
    for st, o in zip(streams, out):
        check_ok(cfg, st, o)


@pytest.mark.parametrize("cfg", [cfg_of(3, 2, "ws", k_max=7), cfg_of(3, 2, "os", k_max=7),
                                 cfg_of(2, 2, "ws", k_max=5, acc_width=64),
                                 cfg_of(2, 2, "os", k_max=5, acc_width=33)], ids=cid)
def test_accumulator_at_bound_k_max(cfg):
    k = cfg.k_max
    a = np.full((4, k), -128, dtype=np.int8)
    b = np.full((k, 3), -128, dtype=np.int8)
    b[:, 1] = 127
    a[2] = 127
    limit = INT32_MAX
    bias = np.array([limit - 16384 * k, -(limit - 16384 * k), 0], dtype=np.int32)
    j = driver.GemmJob(a, b, bias=bias, zp_a=0)
    jq = driver.GemmJob(a, b, bias=bias, multiplier=np.array([INT32_MAX, 1 << 30, INT32_MAX]),
                        shift=np.array([-31, 30, -15]), zp_out=3, act_min=-120, act_max=121)
    streams = driver.encode_many([j, jq], cfg)
    out = run(cfg, streams)
    for st, o in zip(streams, out):
        check_ok(cfg, st, o)


# ------------------------------------------------------------------------------------------------
# FRAME errors and bad commands


def _frame_variants(st, cfg):
    """(name, act words, wgt words) with one tlast misplaced each."""
    act, wgt = beats_of(st.act), beats_of(st.wgt)
    R, C = cfg.rows, cfg.cols
    out = []
    ia = int(np.flatnonzero(st.act.last)[0])
    iw_param = isa.PARAM_BEATS - 1
    iw_tile = int(np.flatnonzero(st.wgt.last)[1])
    v = list(act); v[ia] = set_last(v[ia], R, 0); v[ia + 1] = set_last(v[ia + 1], R, 1)
    out.append(("act_late", v, wgt))
    v = list(act); v[ia - 1] = set_last(v[ia - 1], R, 1)
    out.append(("act_early", v, wgt))
    v = list(act); v[-1] = set_last(v[-1], R, 0)
    out.append(("act_missing", v, wgt))
    v = list(wgt); v[iw_param - 1] = set_last(v[iw_param - 1], C, 1)
    out.append(("param_early", act, v))
    v = list(wgt); v[iw_param] = set_last(v[iw_param], C, 0)
    out.append(("param_late", act, v))
    v = list(wgt); v[iw_tile] = set_last(v[iw_tile], C, 0); v[iw_tile + 1] = set_last(
        v[iw_tile + 1], C, 1)
    out.append(("wgt_late", act, v))
    v = list(wgt); v[iw_tile - 1] = set_last(v[iw_tile - 1], C, 1)
    out.append(("wgt_early", act, v))
    v = list(wgt); v[-1] = set_last(v[-1], C, 0)
    out.append(("wgt_missing", act, v))
    return out


@pytest.mark.parametrize("cfg", [WS_A, OS_A], ids=cid)
def test_frame_errors_then_correct_job(cfg):
    R, C = cfg.rows, cfg.cols
    rng = np.random.default_rng(80)
    job = rjob(rng, 5, 2 * R + 1, 2 * C, requant=True)
    good = rjob(rng, 4, R + 1, C + 1, requant=False)
    st = driver.encode(job, cfg)
    gst = driver.encode(good, cfg)
    items = []
    names = []
    for name, act, wgt in _frame_variants(st, cfg):
        items += [Job(st, act=act, wgt=wgt), gst]
        names.append(name)
    out = run(cfg, items, act_valid=bubbles(81, 0.7))
    for i, name in enumerate(names):
        bad, ok = out[2 * i], out[2 * i + 1]
        assert bad.status.error == isa.Error.FRAME, (name, bad.status)
        assert bad.status.cycles == bad.offered - bad.accepted
        assert len(bad.beats) == len(st.res), name       # the job ran to completion
        check_ok(cfg, gst, ok)


@pytest.mark.parametrize("cfg", [WS_A, OS_A], ids=cid)
def test_frame_acc_out_holds_nothing(cfg):
    rng = np.random.default_rng(82)
    j1 = rjob(rng, 3, 2, 1, acc_out=True)
    st = driver.encode(j1, cfg)
    act = beats_of(st.act)
    act[-1] = set_last(act[-1], cfg.rows, 0)
    items = [Job(st, act=act), Raw(_acc_cmd(3, 1))]
    out = run(cfg, items)
    assert out[0].status.error == isa.Error.FRAME
    assert out[1].status.error == isa.Error.BAD_ACC


@pytest.mark.parametrize("cfg", [WS_A, OS_A], ids=cid)
def test_commands_held_off_while_running(cfg):
    """Commands offered eagerly (bad ones among them) are accepted only in idle, one status per
    command in order, each bad one with cycles == 1, the jobs around them unaffected."""
    R, C = cfg.rows, cfg.cols
    rng = np.random.default_rng(90)
    j1 = rjob(rng, 7, R + 1, C + 1, requant=True, tag=17)
    j2 = rjob(rng, 3, 2, 1, tag=99)
    bad_shape = isa.pack(isa.CMD_FIELDS, opcode=1, version=isa.ISA_VERSION, m=1, k=cfg.k_max + 1, n=1, tag=5)
    bad_op = isa.pack(isa.CMD_FIELDS, opcode=2, version=isa.ISA_VERSION, m=1, k=1, n=1, tag=6)
    bad_n = isa.pack(isa.CMD_FIELDS, opcode=1, version=isa.ISA_VERSION, m=1, k=1, n=0, tag=7)
    items = [driver.encode(j1, cfg), Raw(bad_shape), Raw(bad_op), driver.encode(j2, cfg),
             Raw(bad_n), driver.encode(j1, cfg)]
    out = run(cfg, items, eager=True, status_ready=bubbles(91, 0.5), res_ready=bubbles(92, 0.6))
    assert [int(o.status.error) for o in out] == [0, 4, 1, 0, 4, 0]
    assert [o.status.tag for o in out] == [17, 5, 6, 99, 7, 17]
    for prev, o in zip(out, out[1:]):
        assert o.accepted > prev.offered          # accepted only after the previous status
    for o in (out[1], out[2], out[4]):
        assert o.status.cycles == 1 and not o.beats
    check_ok(cfg, items[0], out[0])
    check_ok(cfg, items[3], out[3])
    check_ok(cfg, items[5], out[5])


# ------------------------------------------------------------------------------------------------
# reset in the middle of a job


@pytest.mark.parametrize("cfg", [WS_A, OS_A, cfg_of(2, 2, "ws", acc_depth=2, res_depth=4)],
                         ids=cid)
@pytest.mark.parametrize("when", ["early", "mid", "results"])
def test_reset_mid_job_then_job(cfg, when):
    R, C = cfg.rows, cfg.cols
    rng = np.random.default_rng(100)
    big = rjob(rng, 9, 2 * R + 1, 2 * C + 1, requant=True)
    good = rjob(rng, 5, R + 1, C + 1, requant=True)
    good2 = rjob(rng, 3, 2, 1)
    rs = {"early": Reset(after=3), "mid": Reset(after=25),
          "results": Reset(after=2, after_result=True)}[when]
    items = [driver.encode(big, cfg), rs, driver.encode(good, cfg), driver.encode(good2, cfg)]
    out = run(cfg, items, res_ready=bubbles(101, 0.5))
    assert out[0].aborted and out[0].status is None
    check_ok(cfg, items[2], out[1])
    check_ok(cfg, items[3], out[2])


# ------------------------------------------------------------------------------------------------
# status cycle counts and throughput


@pytest.mark.parametrize("cfg", [cfg_of(2, 3, "ws", acc_depth=8, res_depth=16),
                                 cfg_of(4, 4, "ws", acc_depth=16, res_depth=32),
                                 cfg_of(3, 2, "os", acc_depth=8, res_depth=16)], ids=cid)
def test_status_cycles_sanity(cfg):
    R, C = cfg.rows, cfg.cols
    rng = np.random.default_rng(110)
    shapes = [(1, 1, 1), (5, 2 * R + 1, C + 1), (20, R, 3 * C)]
    jobs = [rjob(rng, *s, requant=True) for s in shapes]
    streams = driver.encode_many(jobs, cfg)
    out = run(cfg, streams, status_ready=bubbles(111, 0.3))
    for st, o in zip(streams, out):
        check_ok(cfg, st, o)
        m, k, n = st.job.shape
        assert o.status.cycles >= driver.cycles_lower_bound(st.job, cfg)
        if cfg.dataflow == "ws":
            assert o.status.cycles >= m * math.ceil(k / R) * math.ceil(n / C)


def _cycles(cfg, jobs, **kw):
    streams = driver.encode_many(jobs, cfg)
    out = run(cfg, streams, **kw)
    for st, o in zip(streams, out):
        check_ok(cfg, st, o)
    return [o.status.cycles for o in out]


# one requantizer lane per column: a requant row leaves the result FIFO in one cycle, so the
# job's end does not depend on how its rows drain through fewer lanes (docs/perf.md)
@pytest.mark.parametrize("cfg", [cfg_of(4, 4, "ws", acc_depth=64, res_depth=32, k_max=16,
                                        requant_lanes=4),
                                 cfg_of(2, 3, "ws", acc_depth=32, res_depth=16, k_max=16,
                                        requant_lanes=3),
                                 cfg_of(3, 2, "ws", acc_depth=64, res_depth=16, k_max=16,
                                        requant_lanes=2)],
                         ids=cid)
@pytest.mark.parametrize("requant", [False, True], ids=["raw", "rq"])
def test_ws_no_bubble_between_k_tiles(cfg, requant):
    """ws, several K tiles, M >= 2 (rows + cols): every extra K tile costs exactly M cycles (no
    bubble at a tile switch), and the whole job takes M * tiles + fill, the fill being the
    parameter block, the first weight tile and the pipeline (about R + C + back end)."""
    R, C = cfg.rows, cfg.cols
    rng = np.random.default_rng(120)
    for M in (2 * (R + C), 2 * (R + C) + 7):
        ks = [R, 2 * R, 3 * R - 1, 4 * R]
        jobs = [rjob(rng, M, k, C, requant=requant) for k in ks]
        cyc = _cycles(cfg, jobs)
        tiles = [math.ceil(k / R) for k in ks]
        for t, c in zip(tiles, cyc):
            assert c - cyc[0] == M * (t - 1), (M, tiles, cyc)
        eng = build_engine(cfg)
        fill = isa.PARAM_BEATS + R + eng.latencies["array"] + eng.latencies[
            "back_end_requant" if requant else "back_end_raw"] + 10
        for t, c in zip(tiles, cyc):
            assert c <= M * t + fill, (M, t, c, fill)


@pytest.mark.parametrize("cfg", [cfg_of(4, 4, "ws", acc_depth=16, res_depth=32, k_max=16),
                                 cfg_of(2, 3, "ws", acc_depth=16, res_depth=32, k_max=16)],
                         ids=cid)
def test_ws_row_chunks_and_two_col_tiles_no_bubble(cfg):
    """Row chunks (acc_depth >= 2 (R + C)) and a second column tile with 2 K tiles each: no
    bubble either."""
    R, C, D = cfg.rows, cfg.cols, cfg.acc_depth
    rng = np.random.default_rng(122)
    jobs = [rjob(rng, D, 2 * R, C), rjob(rng, 3 * D, 2 * R, C), rjob(rng, D, 2 * R, 2 * C)]
    cyc = _cycles(cfg, jobs)
    assert cyc[1] - cyc[0] == 2 * D * 2, cyc
    assert cyc[2] - cyc[0] == D * 2, cyc


@pytest.mark.parametrize("cfg", [cfg_of(4, 4, "ws", acc_depth=64, res_depth=32, k_max=32),
                                 cfg_of(2, 3, "ws", acc_depth=64, res_depth=32, k_max=32),
                                 cfg_of(3, 1, "ws", acc_depth=64, res_depth=32, k_max=32)],
                         ids=cid)
def test_ws_k_tile_switch_short_pass_as_documented(cfg):
    """architecture.md: a K-tile switch is bubble-free when each pass has at least C + kc + 2
    rows (kc = min(K, R)). The first version promised it from min(K, R) + 2 rows and bubbled
    (weight set held R + C cycles, found by this file; now C cycles, dcc5280)."""
    R, C = cfg.rows, cfg.cols
    rng = np.random.default_rng(121)
    M = C + R + 2
    cyc = _cycles(cfg, [rjob(rng, M, R, C), rjob(rng, M, 8 * R, C)])
    assert cyc[1] - cyc[0] == 7 * M, (M, cyc)


@pytest.mark.parametrize("cfg", [cfg_of(4, 4, "ws", acc_depth=64, res_depth=64, k_max=32),
                                 cfg_of(2, 3, "ws", acc_depth=64, res_depth=64, k_max=32)],
                         ids=cid)
def test_ws_column_tile_switch_as_documented(cfg):
    """architecture.md: column-tile switches (parameter block on s_axis_wgt, parameter slot freed
    when the column tile before last has left the back end) cost cycles only for passes shorter
    than roughly R + C + kc + 16 rows: from there on every column tile costs exactly its rows."""
    R, C = cfg.rows, cfg.cols
    rng = np.random.default_rng(123)
    M = R + C + R + 16
    cyc = _cycles(cfg, [rjob(rng, M, R, n) for n in (C, 2 * C, 3 * C, 5 * C)])
    assert [c - cyc[0] for c in cyc] == [0, M, 2 * M, 4 * M], (M, cyc)


# ------------------------------------------------------------------------------------------------
# more command decoding corners


@pytest.mark.parametrize("cfg", [WS_A, OS_A], ids=cid)
def test_command_field_corners(cfg):
    """Each reserved bit alone is BAD_RESERVED; k == k_max runs, k_max + 1 is BAD_SHAPE; a raw
    job ignores its clamp fields (act_min > act_max is only an error for requant); tag 255."""
    rng = np.random.default_rng(130)
    base = dict(opcode=1, version=isa.ISA_VERSION, m=1, k=1, n=1)
    items = [Raw(isa.pack(isa.CMD_FIELDS, **base) | (1 << b)) for b in range(19, 24)]
    items += [Raw(isa.pack(isa.CMD_FIELDS, **dict(base, k=cfg.k_max + 1))),
              Raw(isa.pack(isa.CMD_FIELDS, **dict(base, m=0))),
              Raw(isa.pack(isa.CMD_FIELDS, **dict(base, n=0))),
              Raw(isa.pack(isa.CMD_FIELDS, **dict(base, k=0))),
              Raw(isa.pack(isa.CMD_FIELDS, **dict(base, opcode=0))),
              Raw(isa.pack(isa.CMD_FIELDS, **dict(base, version=0))),
              Raw(isa.pack(isa.CMD_FIELDS, **dict(base, requant=1, act_min=-1, act_max=-2))),
              Raw(isa.pack(isa.CMD_FIELDS, **dict(base, acc_out=1, m=(1 << 24) - 1))),
              Raw(isa.pack(isa.CMD_FIELDS, **dict(base, acc_out=1, n=(1 << 24) - 1)))]
    want = [3] * 5 + [4, 4, 4, 4, 1, 2, 5, 6, 6]
    kmax = rjob(rng, 3, cfg.k_max, cfg.cols + 1, requant=True, tag=255)
    clamp = rjob(rng, 4, 3, 2, act_min=100, act_max=-100, tag=0)   # raw: clamp ignored
    items += [driver.encode(kmax, cfg), driver.encode(clamp, cfg)]
    out = run(cfg, items)
    assert [int(o.status.error) for o in out[:-2]] == want
    assert all(o.status.cycles == 1 and not o.beats for o in out[:-2])
    check_ok(cfg, items[-2], out[-2])
    check_ok(cfg, items[-1], out[-1])


# ------------------------------------------------------------------------------------------------
# reset at every point of a job


@pytest.mark.parametrize("cfg", [WS_A, OS_A], ids=cid)
def test_reset_sweep(cfg):
    """Reset 0..N cycles into a job (every FSM state: parameters, weight load, streaming, drain,
    results, status held), each time followed by a correct job."""
    R, C = cfg.rows, cfg.cols
    rng = np.random.default_rng(140)
    victim = driver.encode(rjob(rng, 5, R + 1, C + 1, requant=True), cfg)
    check = driver.encode(rjob(rng, 3, R + 1, C + 1, requant=True), cfg)
    items = []
    for after in list(range(0, 30, 2)) + [40, 55]:
        items += [victim, Reset(after=after, length=1 + after % 3), check]
    for after in (0, 1, 3):
        items += [victim, Reset(after=after, after_result=True), check]
    out = run(cfg, items, res_ready=bubbles(141, 0.6), status_ready=bubbles(142, 0.3))
    for i in range(0, len(out), 2):
        v, o = out[i], out[i + 1]
        if not v.aborted:
            check_ok(cfg, victim, v)
        check_ok(cfg, check, o)
    assert sum(out[i].aborted for i in range(0, len(out), 2)) >= 10


@pytest.mark.parametrize("cfg", [WS_A, OS_A], ids=cid)
def test_frame_extremes(cfg):
    """tlast on every beat / on no beat of both data streams, then a correct job; a FRAME job
    that was acc_in."""
    R, C = cfg.rows, cfg.cols
    rng = np.random.default_rng(150)
    st = driver.encode(rjob(rng, 4, R + 1, C + 1), cfg)
    good = driver.encode(rjob(rng, 3, 2, C, requant=True), cfg)
    allL = ([set_last(w, R, 1) for w in beats_of(st.act)],
            [set_last(w, C, 1) for w in beats_of(st.wgt)])
    noL = ([set_last(w, R, 0) for w in beats_of(st.act)],
           [set_last(w, C, 0) for w in beats_of(st.wgt)])
    h = rjob(rng, 2, 2, 1, acc_out=True)
    i = rjob(rng, 2, 3, 1, acc_in=True)
    hs, is_ = driver.encode_many([h, i], cfg)
    bad_i = beats_of(is_.wgt)
    bad_i[0] = set_last(bad_i[0], C, 1)
    items = [Job(st, act=allL[0], wgt=allL[1]), good, Job(st, act=noL[0], wgt=noL[1]), good,
             Job(st, act=allL[0]), good, Job(st, wgt=noL[1]), good,
             hs, Job(is_, wgt=bad_i), Raw(_acc_cmd(2, 1)), good]
    out = run(cfg, items, wgt_valid=bubbles(151, 0.6))
    F = int(isa.Error.FRAME)
    assert [int(o.status.error) for o in out] == [F, 0, F, 0, F, 0, F, 0, 0, F, 6, 0]
    for k in (1, 3, 5, 7, 11):
        check_ok(cfg, good, out[k])


# ------------------------------------------------------------------------------------------------
# randomized sequences


FUZZ_CFGS = [
    cfg_of(2, 3, "ws", acc_depth=4, k_max=12),
    cfg_of(3, 2, "os", acc_depth=4, k_max=12, rounding="double"),
    cfg_of(1, 2, "ws", acc_depth=2, k_max=6, rounding="double"),
    cfg_of(2, 1, "os", acc_depth=2, k_max=6),
    cfg_of(4, 4, "ws", acc_depth=8, k_max=9, res_depth=4, acc_width=36),
    cfg_of(4, 2, "os", acc_depth=8, k_max=9, res_depth=5),
    cfg_of(1, 3, "os", acc_depth=4, k_max=5),
    cfg_of(4, 2, "os", acc_depth=2, k_max=9, rounding="double"),
    cfg_of(4, 3, "ws", acc_depth=2, k_max=13),
    cfg_of(3, 1, "ws", acc_depth=4, k_max=7, acc_width=48, rounding="double"),
]


def _fuzz_jobs(rng, cfg, count):
    R, C, D = cfg.rows, cfg.cols, cfg.acc_depth
    jobs, held = [], None
    while len(jobs) < count:
        if held is not None and rng.random() < 0.7:
            m, n = held
            k = int(rng.integers(1, cfg.k_max + 1))
            acc_out = bool(rng.random() < 0.3)
            j = rjob(rng, m, k, n, requant=(not acc_out) and bool(rng.random() < 0.5),
                     acc_in=True, acc_out=acc_out, bias_range=1000)
            held = (m, n) if acc_out else None
        elif rng.random() < 0.25:
            m = int(rng.integers(1, D + 1))
            n = int(rng.integers(1, C + 1))
            j = rjob(rng, m, int(rng.integers(1, cfg.k_max + 1)), n, acc_out=True,
                     bias_range=1000)
            held = (m, n)
        else:
            m = int(rng.choice([1, 2, R, R + 1, D, D + 1, int(rng.integers(1, 3 * D + 2))]))
            k = int(rng.choice([1, R, R + 1, cfg.k_max, int(rng.integers(1, cfg.k_max + 1))]))
            n = int(rng.choice([1, C, C + 1, 3 * C, int(rng.integers(1, 3 * C + 2))]))
            j = rjob(rng, m, k, n, requant=bool(rng.random() < 0.5))
            if j.requant and rng.random() < 0.5:
                lo = int(rng.integers(-128, 128))
                j.act_min, j.act_max = lo, int(rng.integers(lo, 128))
                j.shift = rng.choice([-31, -20, -8, -1, 0, 1, 5, 30], n)
                j.multiplier = rng.choice([0, 1 << 30, INT32_MAX, (1 << 30) + 7777], n)
            held = None
        jobs.append(j)
    return jobs


def _fuzz(cfg, seed, count, max_cycles):
    rng = np.random.default_rng(seed)
    jobs = _fuzz_jobs(rng, cfg, count)
    streams = driver.encode_many(jobs, cfg)
    p = rng.random(4) * 0.65 + 0.3
    out = run(cfg, streams, act_valid=bubbles(seed, p[0]), wgt_valid=bubbles(seed + 1, p[1]),
              res_ready=stretches(seed, 10) if seed % 2 else bubbles(seed + 2, p[2]),
              cmd_valid=bubbles(seed + 3, p[3]), status_ready=bubbles(seed + 4, 0.5),
              eager=bool(seed % 3 == 0), max_cycles=max_cycles)
    acc = None
    for st, o in zip(streams, out):
        j = st.job
        raw = raw_of(j) + (acc if j.acc_in else 0)
        assert o.status.ok, o.status
        if j.acc_out:
            assert not o.beats and o.status.cycles == o.offered - o.accepted
            acc = raw
            continue
        want = raw if not j.requant else requantize(
            raw, j.multiplier, j.shift, zp_out=j.zp_out, act_min=j.act_min, act_max=j.act_max,
            rounding=cfg.rounding)
        check_ok(cfg, st, o, want=want)
        acc = None


@pytest.mark.parametrize("seed", range(len(FUZZ_CFGS)))
def test_fuzz_sequences(seed):
    """Random job sequences (shapes at the tile edges, acc chains, extreme requant parameters)
    with random bubbles on every input stream, backpressure and eager commands."""
    _fuzz(FUZZ_CFGS[seed], 1000 + seed, 10, 120_000)


@pytest.mark.full
@pytest.mark.parametrize("seed", [pytest.param(s, marks=pytest.mark.covering) if s < 110 else s
                                  for s in range(100, 148)])
def test_fuzz_sequences_full(seed):
    """The same with many more seeds (pytest --full). Seeds 100 to 109 run without --full too
    (marker ``covering``): each configuration of FUZZ_CFGS once in the longer variant, both
    result-ready patterns (seed % 2) and eager commands (seed % 3 == 0) among them."""
    _fuzz(FUZZ_CFGS[seed % len(FUZZ_CFGS)], seed, 12, 150_000)


# ------------------------------------------------------------------------------------------------
# one stream far ahead of the other: every "wait" guard of the ws loader and issuer


_AHEAD_WS = [cfg_of(4, 4, "ws", acc_depth=64, res_depth=8, k_max=12),
             cfg_of(2, 3, "ws", acc_depth=64, res_depth=4, k_max=12, rounding="double")]
_AHEAD_OS = cfg_of(3, 2, "os", acc_depth=64, res_depth=4, k_max=12)


# os takes one beat of each stream in the same cycle, so the two directions are the same case
# there: only "wgt ahead" is run for it.
@pytest.mark.parametrize("cfg,ahead",
                         [(c, a) for c in _AHEAD_WS for a in ("wgt", "act")]
                         + [(_AHEAD_OS, "wgt")],
                         ids=lambda v: cid(v) if not isinstance(v, str) else v)
def test_one_stream_far_ahead(cfg, ahead):
    """Long single-chunk passes with one K tile and 4+ column tiles: with a slow activation
    stream the weight loader runs as far ahead as the parameter slots and weight buffers let
    it (a parameter slot reused while its column tile is still in flight, a weight buffer
    reloaded while in use, would corrupt results); with a slow weight stream the issuer waits."""
    R, C = cfg.rows, cfg.cols
    rng = np.random.default_rng(160)
    shapes = [(36, R, 4 * C + 1), (29, R + 1, 3 * C), (21, 2 * R, 2 * C + 1)]
    jobs = [rjob(rng, *s, requant=i % 2 == 0, bias_range=1 << 20) for i, s in enumerate(shapes)]
    streams = driver.encode_many(jobs, cfg)
    slow = bubbles(161, 0.2)
    kw = dict(act_valid=slow) if ahead == "wgt" else dict(wgt_valid=slow)
    out = run(cfg, streams, res_ready=bubbles(162, 0.9), **kw)
    for st, o in zip(streams, out):
        check_ok(cfg, st, o)


@pytest.mark.parametrize("cfg", [cfg_of(4, 4, "os", acc_depth=16, res_depth=32, k_max=12),
                                 cfg_of(3, 2, "os", acc_depth=16, res_depth=32, k_max=12),
                                 cfg_of(1, 2, "os", acc_depth=16, res_depth=32, k_max=12)],
                         ids=cid)
def test_os_tile_timing(cfg):
    """os: a row tile costs max(K, R) cycles (K < R padded to R, isa.md; K >= R back to back),
    a column tile adds at most its parameter block on top."""
    R, C = cfg.rows, cfg.cols
    rng = np.random.default_rng(170)
    for k in sorted({1, max(R - 1, 1), R, 2 * R + 3}):
        jobs = [rjob(rng, R, k, C), rjob(rng, 5 * R, k, C), rjob(rng, R, k, 3 * C)]
        c1, c5, n3 = _cycles(cfg, jobs)
        assert c5 - c1 == 4 * max(k, R), (k, c1, c5)
        assert n3 - c1 <= 2 * (isa.PARAM_BEATS + max(k, R) + 2), (k, c1, n3)

