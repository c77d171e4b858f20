# amaranth: UnusedElaboratable=no
"""The cycle model (``sim/perfmodel.py``) against the RTL's own cycle counts.

The expectation is the hardware: every job runs through the GEMM engine in the Amaranth
simulator (a few also through the emitted Verilog on Verilator, marked ``rtl``) with both input
streams always valid and the result and status consumers always ready, and the model must equal
the status beat's ``cycles`` exactly. The bench also times each command and status handshake
itself and checks ``cycles == offered - accepted`` (``docs/isa.md``), so the model is held to the
interface definition, not only to the engine's counter.
"""

from __future__ import annotations

import json
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.hdl import Fragment, Value
from amaranth.sim import Simulator

from npugen.hw import isa
from npugen.hw.config import GemmConfig, SoftmaxConfig, derived_acc_width
from npugen.hw.gemm import GemmEngine
from npugen.hw.softmax import SoftmaxUnit
from npugen.sim import driver
from npugen.sim import perfmodel
from npugen.sim.perfmodel import gemm_cycles, ideal_cycles, utilization
from npugen.sim.perfmodel import (SOFTMAX_PASS2_LATENCY, softmax_closed_form, softmax_cycles,
                           softmax_row_cycles, softmax_utilization)
from rtl_helpers import BUILD       # the tests' shared simulator builds, outside the source tree

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def _pack(stream, i):
    """Beat ``i`` of a driver BeatStream as the integer of StructLayout(data, keep, last)."""
    lanes = stream.lanes
    data = int.from_bytes(stream.data[i].tobytes(), "little")
    keep = int(sum(1 << j for j in range(lanes) if stream.keep[i, j]))
    return data | (keep << (8 * lanes)) | (int(stream.last[i]) << (9 * lanes))


def _rate(r):
    """A bytes-per-cycle rate as a Fraction (floats through their decimal repr)."""
    return Fraction(repr(r)) if isinstance(r, float) else Fraction(r)


def measure(cfg, jobs, max_cycles=200_000, bandwidth=None):
    """Run ``jobs`` back to back on a fresh engine; consumers always ready.

    One testbench drives every port cycle by cycle: the command of job ``i`` is offered from the
    cycle after job ``i - 1``'s status was accepted; ``m_axis_res`` and ``m_axis_status`` are
    always ready. With ``bandwidth`` None, ``s_axis_act`` and ``s_axis_wgt`` offer their next
    beat (of whichever job) in every cycle. With a ``bandwidth`` (bytes per cycle, one rate or
    ``(act, wgt)``) each input stream's source is a token bucket (docs/perf.md, "Stream
    bandwidth"), emulated here cycle by cycle: it offers only the running job's beats; its
    level is 0 in the cycle the job's command is accepted; it offers a beat while the level
    holds a whole beat (``rows`` bytes on ``act``, ``cols`` on ``wgt``), and at the end of each
    cycle of the job the level loses a beat's bytes if one was transferred, gains the rate, and
    is capped at two beats.

    Returns
    -------
    list of (driver.Status, int, int)
        Per job: the decoded status, and the cycles between the command's acceptance and the
        status beat's first offer, as seen by the bench (the RTL's counter must equal it), and
        the number of result beats received.
    """
    dut = GemmEngine.from_config(cfg)
    streams = driver.encode_many(jobs, cfg)
    cmds = [s.cmd for s in streams]
    act = [_pack(s.act, i) for s in streams for i in range(len(s.act))]
    wgt = [_pack(s.wgt, i) for s in streams for i in range(len(s.wgt))]
    out = []
    cmd_p, act_p, wgt_p = (Value.cast(p.payload) for p in (dut.cmd, dut.act, dut.wgt))
    if bandwidth is not None:
        return _measure_throttled(cfg, dut, streams, bandwidth, max_cycles)

    async def tb(ctx):
        ctx.set(dut.res.ready, 1)
        ctx.set(dut.status.ready, 1)
        ci = ai = wi = 0
        running = False
        accepted = None
        beats = 0
        cycle = 0
        while len(out) < len(jobs):
            cv = not running and ci < len(cmds)
            ctx.set(dut.cmd.valid, cv)
            if cv:
                ctx.set(cmd_p, cmds[ci])
            av, wv = ai < len(act), wi < len(wgt)
            ctx.set(dut.act.valid, av)
            if av:
                ctx.set(act_p, act[ai])
            ctx.set(dut.wgt.valid, wv)
            if wv:
                ctx.set(wgt_p, wgt[wi])
            _, _, c_rdy, a_rdy, w_rdy, rv, sv, sdata = await ctx.tick().sample(
                dut.cmd.ready, dut.act.ready, dut.wgt.ready, dut.res.valid, dut.status.valid,
                dut.status.payload)
            if cv and c_rdy:
                ci += 1
                running, accepted, beats = True, cycle, 0
            ai += bool(av and a_rdy)
            wi += bool(wv and w_rdy)
            beats += bool(rv)
            if sv:
                out.append((driver.decode_status(sdata), cycle - accepted, beats))
                running = False
            cycle += 1
            assert cycle < max_cycles, "timeout"
        assert ai == len(act) and wi == len(wgt), "data beats left unconsumed"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return out


def _measure_throttled(cfg, dut, streams, bandwidth, max_cycles):
    """:func:`measure` with token-bucket sources (see there)."""
    rates = bandwidth if isinstance(bandwidth, tuple) else (bandwidth, bandwidth)
    rate = [_rate(r) for r in rates]
    beat = [cfg.rows, cfg.cols]                  # bytes of an act beat, of a wgt beat
    jobs = [([_pack(s.act, i) for i in range(len(s.act))],
             [_pack(s.wgt, i) for i in range(len(s.wgt))]) for s in streams]
    ports = [(dut.act, Value.cast(dut.act.payload)), (dut.wgt, Value.cast(dut.wgt.payload))]
    cmd_p = Value.cast(dut.cmd.payload)
    out = []

    async def tb(ctx):
        ctx.set(dut.res.ready, 1)
        ctx.set(dut.status.ready, 1)
        ci = 0
        running = False
        accepted = None
        beats = 0
        level = [Fraction(0), Fraction(0)]
        pos = [0, 0]
        cycle = 0
        while len(out) < len(streams):
            cv = not running and ci < len(streams)
            ctx.set(dut.cmd.valid, cv)
            if cv:
                ctx.set(cmd_p, streams[ci].cmd)
            offer = [False, False]
            for s, (port, payload) in enumerate(ports):
                data = jobs[ci - 1][s] if running else []
                offer[s] = running and pos[s] < len(data) and level[s] >= beat[s]
                ctx.set(port.valid, offer[s])
                if offer[s]:
                    ctx.set(payload, data[pos[s]])
            _, _, c_rdy, a_rdy, w_rdy, rv, sv, sdata = await ctx.tick().sample(
                dut.cmd.ready, dut.act.ready, dut.wgt.ready, dut.res.valid, dut.status.valid,
                dut.status.payload)
            taken = [offer[0] and a_rdy, offer[1] and w_rdy]
            for s in (0, 1):
                pos[s] += taken[s]
                if running:
                    level[s] = min(level[s] - beat[s] * taken[s] + rate[s], 2 * beat[s])
            beats += bool(rv)
            if sv:
                assert pos == [len(jobs[ci - 1][0]), len(jobs[ci - 1][1])], \
                    "data beats left unconsumed"
                out.append((driver.decode_status(sdata), cycle - accepted, beats))
                running = False
            if cv and c_rdy:
                ci += 1
                running, accepted, beats, pos = True, cycle, 0, [0, 0]
                # the job's cycle 0: the level was 0 in it, it gains the rate at its end
                level = [min(rate[s], 2 * beat[s]) for s in (0, 1)]
            cycle += 1
            assert cycle < max_cycles, "timeout"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return out


def _job(rng, m, k, n, *, requant, acc_in=False, acc_out=False):
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    kw = {}
    if requant:
        kw = dict(multiplier=rng.integers(1 << 30, 1 << 31, n), shift=rng.integers(-12, 2, n))
    return driver.GemmJob(a, b, bias=rng.integers(-500, 500, n).astype(np.int32),
                          acc_in=acc_in, acc_out=acc_out, **kw)


def _cfg(rows, cols, dataflow, *, rounding="single", acc_depth=4, res_depth=None, k_max=64,
         requant_lanes=None):
    """A design; ``res_depth`` None is the smallest the engine allows (``rows``), which
    GemmConfig does not (it asks for at least 4), so that one is a namespace;
    ``requant_lanes`` None is derived (``ceil(cols / 4)``)."""
    if res_depth is not None and res_depth >= max(4, rows):
        return GemmConfig(rows=rows, cols=cols, dataflow=dataflow, k_max=k_max,
                          rounding=rounding, acc_depth=acc_depth, res_depth=res_depth,
                          requant_lanes=requant_lanes)
    w = derived_acc_width(k_max)
    return SimpleNamespace(rows=rows, cols=cols, dataflow=dataflow, k_max=k_max, acc_width=w,
                           acc_bits=w, lane_bits=8 * -(-w // 8), rounding=rounding,
                           acc_depth=acc_depth, res_depth=rows if res_depth is None else res_depth,
                           requant_lanes=requant_lanes)


def _shapes(cfg):
    """The regression's shapes for one design: corners, K at multiples of rows +-1, N at cols
    +-1, M around acc_depth (row chunks), short passes (M = 1, 2, 3) and long ones."""
    R, C, D = cfg.rows, cfg.cols, cfg.acc_depth
    long_m = 2 * (R + C) + 3
    s = [(1, 1, 1), (5, 1, 2), (5, 6, 7),
         (3, max(R - 1, 1), C), (4, R, C + 1), (2, R + 1, max(C - 1, 1)),
         (1, 2 * R + 1, 2 * C + 1), (3, 3 * R - 1, C), (2, 2 * R, 3 * C),
         (max(D - 1, 1), R + 1, C), (D, 2 * R, C + 1), (D + 1, 2, 2 * C),
         (2 * D + 1, R + 2, C - 1 if C > 1 else 2),
         (long_m, 2 * R + 1, 2 * C), (long_m, 1, C + 1)]
    return [(m, k, n) for m, k, n in s if k <= cfg.k_max]


def _check(cfg, jobs, out, bandwidth=None):
    assert len(out) == len(jobs)
    for job, (status, seen, beats) in zip(jobs, out):
        m, k, n = job.shape
        flags = dict(requant=job.requant, acc_in=bool(job.acc_in), acc_out=bool(job.acc_out))
        assert status.error == isa.Error.OK, (job.shape, status)
        assert status.cycles == seen, (job.shape, status.cycles, seen)
        want = gemm_cycles(cfg, m, k, n, bandwidth=bandwidth, **flags)
        assert status.cycles == want, (job.shape, flags, "rtl", status.cycles, "model", want)
        assert beats == (0 if job.acc_out else len(driver.result_plan(m, n, cfg).ncols))


CONFIGS = [
    # (rows, cols, dataflow, rounding, acc_depth, res_depth): res_depth None = rows, the
    # smallest the engine takes (result credits bind); large = never binds.
    (1, 1, "ws", "single", 2, None, None),
    (1, 1, "os", "double", 2, 8, None),
    (2, 2, "ws", "double", 4, 4, None),
    (2, 2, "os", "single", 4, None, 2),
    (2, 3, "ws", "single", 4, 16, 2),
    (2, 3, "os", "double", 8, 4, None),
    (3, 2, "ws", "double", 8, 5, 2),
    (3, 2, "os", "single", 4, 16, None),
    (4, 4, "ws", "single", 8, 32, None),
    (4, 4, "os", "double", 4, 4, 4),
    (4, 8, "ws", "double", 4, 8, 3),
    (4, 8, "os", "single", 8, 32, 8),
    (8, 4, "ws", "single", 4, 32, 3),
    (8, 4, "os", "double", 8, 8, None),
    (4, 8, "ws", "single", 8, 16, 8),
    (3, 5, "os", "single", 8, 16, 2),
]


def _cid(c):
    return f"{c[0]}x{c[1]}{c[2]}-{c[3][0]}-D{c[4]}-F{c[5] or c[0]}-L{c[6] or -(-c[1] // 4)}"


@pytest.mark.parametrize("spec", CONFIGS, ids=_cid)
def test_model_equals_rtl_cycles(spec):
    """Every shape of the regression, alternately raw and requant, plus an acc_out -> acc_in
    chain: model == status cycles == measured handshake distance."""
    R, C, df, rounding, D, F, lanes = spec
    cfg = _cfg(R, C, df, rounding=rounding, acc_depth=D, res_depth=F, requant_lanes=lanes)
    rng = np.random.default_rng(CONFIGS.index(spec))
    jobs = [_job(rng, *s, requant=i % 2 == 1) for i, s in enumerate(_shapes(cfg))]
    m, n = min(D, 3 * R + 1), min(C, 3)
    jobs += [_job(rng, m, 2 * R + 1, n, requant=False, acc_out=True),
             _job(rng, m, 3, n, requant=True, acc_in=True),
             _job(rng, D, 1, C, requant=False, acc_out=True),
             _job(rng, D, R + 1, C, requant=False, acc_in=True)]
    _check(cfg, jobs, measure(cfg, jobs))


@pytest.mark.parametrize("product_reg,weight_reg", [(False, True), (True, False),
                                                    (False, False)])
def test_model_equals_rtl_without_pe_registers(product_reg, weight_reg):
    """A ws design without the PE's product and/or weight register: the array is a cycle
    shorter without the product register, and the model follows; back-to-back weight tiles
    (the weight register's select) and a credit-bound FIFO, raw and requant."""
    cfg = GemmConfig(rows=3, cols=4, dataflow="ws", k_max=64, acc_depth=8, res_depth=4,
                     requant_lanes=2, pe_product_reg=product_reg, pe_weight_reg=weight_reg)
    rng = np.random.default_rng(11 + 2 * product_reg + weight_reg)
    shapes = [(1, 1, 1), (5, 7, 9), (9, 3, 4), (4, 10, 5), (17, 2, 3)]
    jobs = [_job(rng, *s, requant=i % 2 == 0) for i, s in enumerate(shapes)]
    _check(cfg, jobs, measure(cfg, jobs))


@pytest.mark.parametrize("dataflow", ["ws", "os"])
def test_model_equals_rtl_without_array_input_register(dataflow):
    """Without the array's input register (``array_input_reg`` false) the array is a cycle
    shorter in both dataflows, and the model follows: several column tiles, a credit-bound
    FIFO, raw and requant, one and several slices a row."""
    cfg = GemmConfig(rows=3, cols=4, dataflow=dataflow, k_max=64, acc_depth=8, res_depth=4,
                     requant_lanes=2, array_input_reg=False)
    rng = np.random.default_rng(5)
    shapes = [(1, 1, 1), (5, 7, 9), (9, 3, 4), (4, 10, 2), (17, 2, 3)]
    jobs = [_job(rng, *s, requant=i % 2 == 0) for i, s in enumerate(shapes)]
    _check(cfg, jobs, measure(cfg, jobs))


@pytest.mark.parametrize("dataflow", ["ws", "os"])
def test_model_equals_rtl_with_operand_isolation(dataflow):
    """Operand isolation (``operand_isolation``) holds operands on idle cycles and adds no
    cycle: the model, which does not read the key, stays exact. Several column tiles, row
    chunks, a credit-bound FIFO, raw and requant, throttled inputs (bubbles) too."""
    cfg = GemmConfig(rows=3, cols=4, dataflow=dataflow, k_max=64, acc_depth=8, res_depth=4,
                     requant_lanes=2, operand_isolation=True)
    rng = np.random.default_rng(13)
    shapes = [(1, 1, 1), (5, 7, 9), (9, 3, 4), (4, 10, 2), (17, 2, 3)]
    jobs = [_job(rng, *s, requant=i % 2 == 0) for i, s in enumerate(shapes)]
    _check(cfg, jobs, measure(cfg, jobs))
    _check(cfg, jobs[1:3], measure(cfg, jobs[1:3], bandwidth=1.5), bandwidth=1.5)


def test_model_equals_rtl_credit_bound_long_passes():
    """A design whose result FIFO is far shallower than the pipeline (credits bind in every
    producing pass), with short and long passes and several column tiles, both dataflows."""
    for df, lanes in (("ws", 2), ("os", 5), ("ws", 5)):
        cfg = _cfg(3, 5, df, acc_depth=16, res_depth=None, rounding="double",
                   requant_lanes=lanes)
        rng = np.random.default_rng(7)
        shapes = [(16, 7, 11), (9, 3, 6), (17, 1, 5), (40, 4, 10), (2, 9, 16)]
        jobs = [_job(rng, *s, requant=i % 2 == 0) for i, s in enumerate(shapes)]
        _check(cfg, jobs, measure(cfg, jobs))


# -- throttled input streams (docs/perf.md, "Stream bandwidth") ---------------------------------

#: Bytes per cycle on (act, wgt): below, at and above a beat's bytes, fractional, mixed.
BANDWIDTHS = [0.5, 1, 3, 7.5, (1, 2.5), (2.5, 0.75), "2/3"]
THROTTLE_CONFIGS = [
    # 3x4 ws, two requantizer lanes (a row drains in two slices), a 4-deep result FIFO (the
    # credits bind), row chunks of 4
    dict(rows=3, cols=4, dataflow="ws", acc_depth=4, res_depth=4, requant_lanes=2),
    # 2x3 os, credits that bind (res_depth 2 = rows)
    dict(rows=2, cols=3, dataflow="os", acc_depth=8, res_depth=None, requant_lanes=None),
]


@pytest.mark.parametrize("bandwidth", BANDWIDTHS, ids=str)
@pytest.mark.parametrize("spec", THROTTLE_CONFIGS, ids=lambda c: f"{c['rows']}x{c['cols']}"
                         f"{c['dataflow']}")
def test_model_equals_rtl_cycles_throttled(spec, bandwidth):
    """Both input streams throttled to ``bandwidth`` bytes per cycle by token-bucket sources
    in the testbench: model == status cycles == measured handshake distance, for K < R,
    K > R (several K tiles), N > C (several column tiles, parameter blocks between them),
    M > acc_depth (row chunks) and M > R (row tiles), raw and requant, and an acc_out ->
    acc_in chain."""
    cfg = _cfg(spec["rows"], spec["cols"], spec["dataflow"], acc_depth=spec["acc_depth"],
               res_depth=spec["res_depth"], requant_lanes=spec["requant_lanes"])
    R, C, D = cfg.rows, cfg.cols, cfg.acc_depth
    rng = np.random.default_rng(BANDWIDTHS.index(bandwidth))
    shapes = [(1, 1, 1), (5, R - 1, C), (2 * D + 1, 2 * R + 1, 2 * C + 1), (3, 3 * R, C + 1),
              (D + 1, R, 2 * C), (2 * R + 3, 1, C - 1)]
    jobs = [_job(rng, *s, requant=i % 2 == 1) for i, s in enumerate(shapes)]
    jobs += [_job(rng, min(D, 3), R + 1, C, requant=False, acc_out=True),
             _job(rng, min(D, 3), 2, C, requant=True, acc_in=True)]
    out = measure(cfg, jobs, bandwidth=bandwidth)
    _check(cfg, jobs, out, bandwidth)
    # the throttle is seen: below a beat's bytes the jobs take longer than unthrottled
    rates = bandwidth if isinstance(bandwidth, tuple) else (bandwidth, bandwidth)
    slow = perfmodel.stream_rate(rates[0]) < R or perfmodel.stream_rate(rates[1]) < C
    free = [gemm_cycles(cfg, *j.shape, requant=j.requant, acc_in=bool(j.acc_in),
                        acc_out=bool(j.acc_out)) for j in jobs]
    got = [status.cycles for status, _, _ in out]
    assert (got != free) == slow, (got, free)


def test_throttled_model_properties():
    """No simulation: a rate of at least a beat's bytes changes nothing; the cycles never fall
    as the rate falls; a stream-bound job takes at least its bytes over the rate; the stream
    beats are the driver's."""
    for df in ("ws", "os"):
        cfg = GemmConfig(rows=4, cols=8, dataflow=df, k_max=64, acc_depth=8, res_depth=16)
        for m, k, n in [(1, 1, 1), (9, 13, 17), (20, 64, 24), (3, 5, 40)]:
            base = gemm_cycles(cfg, m, k, n)
            assert gemm_cycles(cfg, m, k, n, bandwidth=(4, 8)) == base
            assert gemm_cycles(cfg, m, k, n, bandwidth=100.0) == base
            prev = base
            for b in (7, 5, 3, 2, 1, 0.5, 0.25):
                cyc = gemm_cycles(cfg, m, k, n, bandwidth=b)
                assert cyc >= prev and cyc >= perfmodel.stream_bound(cfg, m, k, n, b)
                prev = cyc
            rng = np.random.default_rng(0)
            (s,) = driver.encode_many([_job(rng, m, k, n, requant=True)], cfg)
            assert perfmodel.stream_beats(cfg, m, k, n) == (len(s.act), len(s.wgt))
    with pytest.raises(ValueError, match="positive number"):
        gemm_cycles(cfg, 1, 1, 1, bandwidth=0)
    with pytest.raises(ValueError, match="positive number"):
        gemm_cycles(cfg, 1, 1, 1, bandwidth=(1, "x"))
    with pytest.raises(ValueError, match="one rate or"):
        gemm_cycles(cfg, 1, 1, 1, bandwidth=(1, 2, 3))


# -- through the emitted Verilog on Verilator ----------------------------------------------------


#: Two designs of the cocotb regression (tests/test_gemm_rtl.py; same names and parameters, so
#: the same cached builds): 2x2 ws whose result FIFO binds (res_depth 4) with row chunks
#: (acc_depth 4), and 4x4 os.
RTL_WS = GemmConfig(name="g2x2ws", rows=2, cols=2, dataflow="ws", k_max=64, acc_depth=4,
                    res_depth=4, rounding="double")
RTL_OS = GemmConfig(name="g4x4os", rows=4, cols=4, dataflow="os", k_max=128, acc_depth=16,
                    res_depth=16, rounding="double")


def _rtl_jobs(cfg, shapes, seed):
    rng = np.random.default_rng(seed)
    return [_job(rng, *s, requant=i % 2 == 0) for i, s in enumerate(shapes)]


@pytest.mark.rtl
def test_model_equals_verilator_cycles():
    """npugen.sim.run.gemm_many / gemm on Verilator: status cycles == model (and the stats carry it)."""
    from npugen.sim import run

    shapes = [(1, 1, 1), (5, 1, 2), (5, 6, 7), (4, 3, 3), (9, 4, 1), (2, 5, 5), (19, 7, 4)]
    jobs = _rtl_jobs(RTL_WS, shapes, 31)
    rng = np.random.default_rng(32)
    jobs += [_job(rng, 3, 5, 2, requant=False, acc_out=True),
             _job(rng, 3, 2, 2, requant=True, acc_in=True)]
    for job, (_, stats) in zip(jobs, run.gemm_many(jobs, config=RTL_WS, build_dir=BUILD)):
        m, k, n = job.shape
        want = gemm_cycles(RTL_WS, m, k, n, requant=job.requant, acc_in=job.acc_in,
                           acc_out=job.acc_out)
        assert stats["cycles"] == want == stats["model_cycles"], (job.shape, stats, want)

    (job,) = _rtl_jobs(RTL_OS, [(9, 3, 6)], 33)
    _, stats = run.gemm(job.a, job.b, bias=job.bias, multiplier=job.multiplier,
                        shift=job.shift, config=RTL_OS, build_dir=BUILD)
    assert stats["cycles"] == gemm_cycles(RTL_OS, 9, 3, 6) == stats["model_cycles"], stats


# -- properties of the model itself (no simulation) --------------------------------------------


def test_model_rejects_what_the_engine_rejects():
    cfg = GemmConfig(rows=4, cols=4, k_max=32, acc_depth=8)
    with pytest.raises(ValueError, match="k_max"):
        gemm_cycles(cfg, 1, 33, 1)
    with pytest.raises(ValueError, match="positive integer"):
        gemm_cycles(cfg, 0, 1, 1)
    with pytest.raises(ValueError, match="acc_depth"):
        gemm_cycles(cfg, 9, 1, 1, requant=False, acc_out=True)
    with pytest.raises(ValueError, match="requant"):
        gemm_cycles(cfg, 2, 1, 1, requant=True, acc_out=True)


def test_latencies_match_the_engine():
    """The model's pipeline constants are the engine's own (``GemmEngine.latencies``)."""
    for df in ("ws", "os"):
        for rounding in ("single", "double"):
            cfg = GemmConfig(rows=3, cols=5, dataflow=df, rounding=rounding)
            eng = GemmEngine.from_config(cfg)
            Fragment.get(eng, None)     # elaborated, so its sub-components are used
            lat = perfmodel.latencies(cfg)
            assert lat["array"] == eng.latencies["array"]
            assert lat["requant"] == eng.latencies["requant"]
            # The engine's back end counts to the beat offered (a row of at most requant_lanes
            # columns): the write at t1, FIFO_LATENCY cycles to the head, the requantizer.
            for rq, key in ((True, "back_end_requant"), (False, "back_end_raw")):
                lat = perfmodel.latencies(cfg, requant=rq)
                assert lat["result"] == lat["array"] + eng.latencies[key]


def test_utilization_and_ideal():
    cfg = GemmConfig(rows=8, cols=8)
    assert ideal_cycles(cfg, 64, 64, 64) == 4096
    cyc = gemm_cycles(cfg, 64, 64, 64)
    assert utilization(cfg, 64, 64, 64) == pytest.approx(4096 / cyc)
    assert utilization(cfg, 64, 64, 64, cycles=8192) == 0.5
    assert 0 < utilization(cfg, 64, 64, 64) < 1


def test_closed_forms_equal_the_recurrence_where_they_apply():
    """docs/perf.md's closed forms (perfmodel.closed_form) against the recurrence that the RTL
    tests hold: equal wherever the stated conditions hold, and they hold for most large jobs."""
    import itertools
    applied = 0
    for (R, C), D, df in itertools.product([(1, 1), (2, 3), (4, 8), (8, 4), (16, 16)],
                                           (2, 64), ("ws", "os")):
        for F in (max(4, R), 2 * R + C + 7, 128):
            cfg = SimpleNamespace(rows=R, cols=C, dataflow=df, rounding="double", acc_depth=D,
                                  res_depth=F, k_max=4096)
            for m, k, n in itertools.product([1, 5, 17, 100], [1, R + 1, 5 * R], [1, C + 1,
                                                                                  3 * C + 2]):
                for rq in (False, True):
                    cf = perfmodel.closed_form(cfg, m, k, n, requant=rq)
                    if cf is not None:
                        applied += 1
                        assert cf == gemm_cycles(cfg, m, k, n, requant=rq), (cfg, m, k, n, rq)
    assert applied > 500
    big = GemmConfig(rows=16, cols=16, requant_lanes=16)
    assert perfmodel.closed_form(big, 128, 384, 384) == gemm_cycles(big, 128, 384, 384)
    # rows drained in several slices: no closed form for requant jobs, raw ones keep theirs
    default = GemmConfig(rows=16, cols=16)
    assert perfmodel.closed_form(default, 128, 384, 384) is None
    assert perfmodel.closed_form(default, 128, 384, 384, requant=False) == \
        gemm_cycles(default, 128, 384, 384, requant=False)


def test_scalesim_formula_matches_the_documented_examples():
    """docs/anchors.md: 8x8 on 128x384x384 ws 345 599, os 305 663; 16x16 on 64^3 ws
    1 759, os 1 503 (what scalesim 3.0 reports as Total Cycles)."""
    def cyc(R, df, m, k, n):
        return perfmodel.scalesim_formula(GemmConfig(rows=R, cols=R, dataflow=df), m, k, n)
    assert cyc(8, "ws", 128, 384, 384) == 345_599
    assert cyc(8, "os", 128, 384, 384) == 305_663
    assert cyc(16, "ws", 64, 64, 64) == 1_759
    assert cyc(16, "os", 64, 64, 64) == 1_503


# -- npugen perf and npugen report ----------------------------------------------------------------


def test_cli_perf_scalesim(tmp_path, capsys):
    import configparser

    from npugen.sim import cli
    (tmp_path / "d.toml").write_text('name = "p8"\nrows = 8\ncols = 8\ndataflow = "os"\n')
    assert cli.main(["perf", "--config", str(tmp_path / "d.toml"), "--m", "128", "--k", "384",
                     "--n", "384", "--scalesim", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    cfg = GemmConfig(name="p8", rows=8, cols=8, dataflow="os")
    want = gemm_cycles(cfg, 128, 384, 384)
    assert out[1].startswith(f"model_cycles={want} ideal_cycles=294912 utilization=")
    assert out[2].startswith("scalesim_formula_cycles=305663 ")
    folder = tmp_path / "p8" / "perf"
    lines = (folder / "gemm.csv").read_text().splitlines()
    assert lines == ["Layer, M, N, K,", "gemm, 128, 384, 384,"]     # M, N, K; trailing comma
    ini = configparser.ConfigParser()
    ini.read(folder / "scalesim.cfg")
    arch = ini["architecture_presets"]
    assert (arch["ArrayHeight"], arch["ArrayWidth"], arch["Dataflow"]) == ("8", "8", "os")
    assert ini["run_presets"]["InterfaceBandwidth"] == "CALC"
    assert (folder / "layout.csv").is_file()


def test_cli_perf_bandwidth(capsys):
    """``npugen perf --bandwidth B``: the throttled cycles beside the as-built ones, exact
    rates (3/2 is 1.5), a bad rate is one error line."""
    from npugen.sim import cli
    assert cli.main(["perf", "--m", "5", "--k", "40", "--n", "33", "--bandwidth", "3/2"]) == 0
    out = capsys.readouterr().out.splitlines()
    cfg = GemmConfig()
    want = gemm_cycles(cfg, 5, 40, 33, bandwidth=1.5)
    assert want > gemm_cycles(cfg, 5, 40, 33)
    assert out[2].startswith(f"bandwidth=3/2 bytes/cycle on each input stream: "
                             f"model_cycles={want} stream_bound=")
    assert cli.main(["perf", "--m", "5", "--k", "40", "--n", "33", "--bandwidth", "-1"]) == 2
    assert capsys.readouterr().err.startswith("npugen: error: --bandwidth: must be a positive")


def test_cli_perf_rejects_bad_jobs(capsys):
    from npugen.sim import cli
    assert cli.main(["perf", "--m", "1", "--k", "5000", "--n", "1"]) == 2
    assert capsys.readouterr().err.startswith(
        "npugen: error: --k 5000, more than this design's k_max = 4096")
    with pytest.raises(SystemExit):
        cli.main(["perf", "--m", "0", "--k", "1", "--n", "1"])


def test_cli_report(tmp_path, capsys):
    """A page per design: parameters, ports (from the signature: no manifest here), the QoR of
    a qor/*.json, the model's grid and the plot."""
    from npugen.sim import cli
    (tmp_path / "d.toml").write_text('name = "r2"\nrows = 2\ncols = 3\nk_max = 64\n')
    qor = tmp_path / "r2" / "qor"
    qor.mkdir(parents=True)
    (qor / "generic.json").write_text(json.dumps(
        {"target": "generic", "estimate": {"nand2_eq": 1234.5, "ffs": 99}, "flat": None}))
    assert cli.main(["report", "--config", str(tmp_path / "d.toml"), "--out",
                     str(tmp_path)]) == 0
    rdir = tmp_path / "r2" / "report"
    assert capsys.readouterr().out.split() == [str(rdir / f) for f in
                                                ("report.md", "report.html", "utilization.png")]
    md = (rdir / "report.md").read_text()
    assert "| `rows` | 2 |" in md and "| `s_axis_wgt_tdata` | input | 24 |" in md
    assert "| nand2_eq | 1,234.5 |" in md and "| ffs | 99 |" in md
    cfg = GemmConfig(name="r2", rows=2, cols=3, k_max=64)
    c = gemm_cycles(cfg, 64, 64, 64)
    assert "| 64 | 64 | " in md and f"{c:,} (" in md
    assert "| 1 | 64 |" in md and "| 1 | 1024 |" not in md       # k > k_max is left out
    html_text = (rdir / "report.html").read_text()
    assert html_text.startswith("<!DOCTYPE html>") and "<code>s_axis_wgt_tdata</code>" in html_text
    assert (rdir / "utilization.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_plot_has_points_in_every_panel_when_k_max_is_small():
    """The sweep's fixed K is clamped to k_max: with k_max = 64 (configs/tiny_2x2.toml) the M and
    N panels used to fix K = 256 and were empty."""
    from npugen.sim.report import SWEEP_FIXED, sweeps
    cfg = GemmConfig(name="t", rows=2, cols=2, k_max=64, acc_depth=16, res_depth=4)
    panels = sweeps(cfg)
    assert len(panels) == 4
    for label, points in panels:
        assert points, label
        assert all(k <= cfg.k_max for _, _, k, _ in points)
    fixed_k = {k for _, _, k, _ in panels[1][1]} | {k for _, _, k, _ in panels[3][1]}
    assert fixed_k == {64}
    assert panels[1][0] == "M (K = 64, N = 256)" and panels[2][0] == "K (M = N = 256)"
    big = sweeps(GemmConfig(rows=2, cols=2, k_max=4096))
    assert {k for _, _, k, _ in big[1][1]} == {SWEEP_FIXED}
    assert big[1][0] == f"M (K = N = {SWEEP_FIXED})"


def test_report_parameters_read_like_the_generated_report(tmp_path):
    """`npugen report` and `npugen generate`'s report.md show the parameters the same way:
    `280`, not `280.0`; `none (no [attention] section)` for both absent sections, never
    `None`."""
    from npugen.hw import emit
    from npugen.sim.report import write_report
    cfg = GemmConfig(name="t", rows=2, cols=2, k_max=64, acc_depth=16, res_depth=4)
    md = write_report(cfg, tmp_path)[0].read_text()
    assert "| `clock_mhz` | 280 |" in md and "280.0" not in md
    assert "| `softmax` | none (no [softmax] section) |" in md
    assert "| `attention` | none (no [attention] section) |" in md
    assert "None" not in md
    generated = emit.render(cfg)["report.md"].decode()
    rows = [line for line in generated.splitlines() if line.startswith("| `")][:12]
    assert rows and all(line in md for line in rows)


# -- softmax (hw/softmax.py) --------------------------------------------------------------------

def measure_softmax(P, B, lengths, *, out_depth=16, max_cycles=200_000):
    """Run rows through a fresh ``SoftmaxUnit`` in the Amaranth simulator, each row twice, back
    to back: the score stream offers a beat in every cycle, the output is always ready.

    Returns the cycles from the cycle the first score beat is accepted to the cycle the last
    probability beat is accepted, both counted. Scores, masks and the LUT do not change the
    timing: zeros, every lane kept and attended, a ROM LUT.
    """
    from npugen.sim.golden import make_lut

    dut = SoftmaxUnit(lanes=P, F=16, B=B, n_max=1 << 16, lut=make_lut(0.1, 16),
                      out_depth=out_depth)
    lasts = []
    for n in lengths:
        nb = -(-n // P)
        lasts += ([False] * (nb - 1) + [True]) * 2
    outs = sum(-(-n // P) for n in lengths)
    got = {}

    async def tb(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.payload.keep, (1 << P) - 1)
        ctx.set(dut.i.payload.mask, (1 << P) - 1)
        i = seen = 0
        first = None
        for cycle in range(max_cycles):
            valid = i < len(lasts)
            ctx.set(dut.i.valid, valid)
            if valid:
                ctx.set(dut.i.payload.last, lasts[i])
            took = valid and ctx.get(dut.i.ready)
            out = ctx.get(dut.o.valid)
            await ctx.tick()
            if took:
                first = cycle if first is None else first
                i += 1
            if out:
                seen += 1
                if seen == outs:
                    got["cycles"] = cycle - first + 1
                    return
        raise AssertionError(f"{seen} of {outs} probability beats in {max_cycles} cycles")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return got["cycles"]


def _sm(P, B, D=16):
    return SimpleNamespace(lanes=P, B=B, out_depth=D)


def test_softmax_model_hand_computed():
    """Small cases worked out from hw/softmax.py by hand (docs/perf.md, Softmax).

    One lane, B = 16, one key: pass 1 at cycle 0; its one-beat tile accumulated at 1; stage B
    updates L at 2; pass1_done seen at 3, the pass-2 beat accepted at 3; it enters the output
    FIFO 10 cycles later (stage A' + 9 divider stages) and is offered 2 after that, at 15: 16
    cycles. A row of 16 keys (one tile): pass 1 at 0-15, accumulated at 16-31, pass 2 at 33-48,
    the last probability at 60: 61. Longer rows pay one tile (B/P beats) + 1 between the
    passes whatever their length.
    """
    assert SOFTMAX_PASS2_LATENCY == 12 == 1 + SoftmaxUnit.DIV_STAGES + perfmodel.FIFO_LATENCY
    assert softmax_cycles(_sm(1, 16), 1) == 16
    assert softmax_cycles(_sm(1, 16), 16) == 61
    assert softmax_cycles(_sm(1, 16), 64) == 2 * 64 + 16 + 1 + 12 == 157
    assert softmax_cycles(_sm(4, 16), 37, rows=3) == 3 * (2 * 10 + 4 + 1) + 12 == 87
    assert softmax_cycles(_sm(1, 16), [1, 16, 64]) == 4 + 49 + 145 + 12
    # the default design: one lane, B = 16, N = 32768
    cfg = GemmConfig(softmax=SoftmaxConfig())
    assert softmax_cycles(cfg, 32768) == 65536 + 17 + 12
    assert softmax_row_cycles(cfg, 37) == 91
    # Credits of a 4-deep FIFO (one lane, B = 1, 8 keys): pass 2 starts at 8 + 1 + 1 = 10,
    # 4 beats (10-13) take the 4 credits, each held until 12 cycles after its beat, so the next
    # 4 go at 23-26; the last probability at 38: 39 cycles.
    assert softmax_cycles(_sm(1, 1, 4), 8) == 39
    assert softmax_closed_form(_sm(1, 1, 4), 8) is None
    assert softmax_closed_form(_sm(1, 1, 13), 8) == softmax_cycles(_sm(1, 1, 13), 8) == 30
    assert softmax_utilization(_sm(1, 16), 64) == pytest.approx(128 / 157)
    with pytest.raises(ValueError, match="positive number of keys"):
        softmax_cycles(cfg, 0)
    with pytest.raises(ValueError, match="no \\[softmax\\] section"):
        softmax_cycles(GemmConfig(), 4)


#: (lanes, B) of the unit x output FIFO depths: every tile shape of the RTL regression's
#: configurations (tests/test_softmax_rtl.py) and the default, credits binding (4, 11, 12) or not.
SOFTMAX_UNITS = [(1, 16), (4, 16), (1, 1), (2, 4), (8, 8), (2, 2), (4, 64)]


@pytest.mark.parametrize("P,B", SOFTMAX_UNITS, ids=[f"l{p}b{b}" for p, b in SOFTMAX_UNITS])
def test_softmax_model_equals_rtl_cycles(P, B):
    """softmax_cycles == the Amaranth simulation of SoftmaxUnit, cycle for cycle: rows shorter
    than a beat, a tile, one tile ± 1, several tiles and ragged; mixed lengths back to back;
    output FIFO depths from 4 (credits bind) to 16 (the built unit)."""
    for D in (16, 13, 12, 4):
        sets = [sorted({1, P, P + 1, max(1, B - 1), B, B + 1, 3 * B + 1, 6 * B + P}),
                [1] * 4, [3 * B + 2] * 3]
        for lengths in sets:
            got = measure_softmax(P, B, lengths, out_depth=D)
            assert got == softmax_cycles(_sm(P, B, D), lengths), (P, B, D, lengths, got)
            cf = softmax_closed_form(_sm(P, B, D), lengths)
            assert cf is None if D <= 12 else cf == got


@pytest.mark.rtl
def test_softmax_model_equals_verilator_cycles():
    """npugen.sim.run.softmax on the default design through Verilator: cycles == model_cycles ==
    softmax_cycles (the cocotb bench asserts the same in every run_rows without backpressure,
    tests/test_softmax_rtl.py)."""
    from npugen.sim import run

    rng = np.random.default_rng(41)
    cfg = GemmConfig(softmax=SoftmaxConfig())
    for shape in [(1, 1), (4, 15), (2, 130)]:
        scores = rng.integers(-128, 128, shape).astype(np.int8)
        _, stats = run.softmax(scores, 0.1, build_dir=BUILD)
        want = softmax_cycles(cfg, shape[1], rows=shape[0])
        assert stats["cycles"] == stats["model_cycles"] == want, (shape, stats)
