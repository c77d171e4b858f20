"""cocotb regression bench of the generated GEMM engine (``docs/isa.md``, ``docs/verification.md``).

Run through :mod:`npugen.sim.runner` (``npugen verify``, ``tests/test_gemm_rtl.py``), which passes the
configuration (``NPUGEN_CONFIG``), the seed (``NPUGEN_SEED``) and ``NPUGEN_FULL``. Every test
starts from a reset, checks every result against :mod:`npugen.sim.golden` (through
:class:`npugen.sim.benches.tb.Model`) and every status beat (error code, tag, version, a cycle count no
lower than the beats of the busiest stream), and ends with a correct job where a test provoked an
error or a reset.

Wherever a test runs with no backpressure pattern (every stream offers a beat whenever it has one,
every consumer is always ready), each status beat's ``cycles`` must also equal the cycle model
exactly: :func:`npugen.sim.perfmodel.gemm_cycles` for a job, :data:`npugen.sim.perfmodel.REJECT_CYCLES` for a
rejected command (:func:`_run`, :func:`_check_cycles`).
"""

from __future__ import annotations

import numpy as np

import cocotb
from cocotb.triggers import ClockCycles

from npugen.hw import isa
from npugen.hw.config import Dataflow
from npugen.sim.benches.tb import PATTERNS, TB, bench_full, random_job, requant_params, wait_high
from npugen.sim.driver import GemmJob, decode_results, encode
from npugen.sim.perfmodel import REJECT_CYCLES, gemm_cycles


def _cmd(cfg, **over) -> int:
    """A valid command word for a small raw job, with fields overridden."""
    f = dict(opcode=isa.Opcode.GEMM, version=isa.ISA_VERSION, m=1, k=1, n=1, act_min=-128,
             act_max=127)
    f.update(over)
    return isa.pack(isa.CMD_FIELDS, **f)


def _free(tb: TB) -> bool:
    """No backpressure pattern installed (:func:`_backpressure`)."""
    return getattr(tb, "pattern", "none") == "none"


def _backpressure(tb: TB, pattern: str) -> None:
    """:meth:`TB.backpressure` on sources and sinks, remembered for :func:`_check_cycles`."""
    tb.backpressure(pattern)
    tb.pattern = pattern


def _check_cycles(tb: TB, job: GemmJob | None, st) -> None:
    """With free streams, the status ``cycles`` equals the model: ``gemm_cycles`` of ``job``, or
    ``REJECT_CYCLES`` for a rejected command (``job`` None)."""
    if not _free(tb):
        return
    if job is None:
        assert st.cycles == REJECT_CYCLES, (
            f"rejected command tag {st.tag}: status cycles {st.cycles}, the model says "
            f"{REJECT_CYCLES}")
        return
    m, k, n = job.shape
    want = gemm_cycles(tb.cfg, m, k, n, requant=job.requant, acc_in=bool(job.acc_in),
                       acc_out=bool(job.acc_out))
    assert st.cycles == want, (
        f"job {m}x{k}x{n} tag {job.tag} ({'requant' if job.requant else 'raw'}"
        f"{', acc_in' if job.acc_in else ''}{', acc_out' if job.acc_out else ''}) on "
        f"{tb.cfg.name}: status cycles {st.cycles}, the model (sim.perfmodel.gemm_cycles) "
        f"says {want}")


async def _run(tb: TB, job: GemmJob, **kw):
    """:meth:`TB.run_job`, then :func:`_check_cycles` of its status."""
    r = await tb.run_job(job, **kw)
    _check_cycles(tb, job, r.status)
    return r


async def _reject(tb: TB, word: int, expect, tag: int):
    """:meth:`TB.run_command`, then :func:`_check_cycles` of its status."""
    st = await tb.run_command(word, expect, tag)
    _check_cycles(tb, None, st)
    return st


async def _sanity_job(tb: TB, tag: int = 0x5A) -> None:
    """A correct job after an error or a reset: ragged in every dimension, requantized."""
    R, C = tb.cfg.rows, tb.cfg.cols
    k = min(tb.cfg.k_max, R + 1)
    await _run(tb, random_job(tb.rng, R + 1, k, C + 1, requant=True, tag=tag))


def _check_idle(tb: TB) -> None:
    r, s = tb.res.count(), tb.status.count()
    assert (r, s) == (0, 0), f"{r} unexpected result frames and {s} status beats"


@cocotb.test()
async def test_small_shapes(dut):
    """M=5,K=1,N=2 and 5x6x7, raw and requant, then 1x1x1."""
    tb = TB(dut)
    await tb.start()
    for m, k, n in ((5, 1, 2), (5, 6, 7), (1, 1, 1)):
        k = min(k, tb.cfg.k_max)
        for requant in (False, True):
            await _run(tb, random_job(tb.rng, m, k, n, requant=requant))
    _check_idle(tb)


@cocotb.test()
async def test_k_max_extremes(dut):
    """K = k_max with all operands -128: the largest accumulator magnitudes, raw and requant.

    Column 0 sums (-128)·(-128) over k_max with a bias that lands exactly on 2**(W-1) - 1 when
    it fits int32; column 1 uses B = 127 and the mirrored negative bias; column 2 has B = -128
    and no bias. The requant pass runs the same accumulators through extreme multipliers and
    shifts.
    """
    tb = TB(dut)
    await tb.start()
    cfg = tb.cfg
    k = cfg.k_max
    n = min(cfg.cols, 3) if cfg.cols >= 3 else cfg.cols
    n = max(n, 1)
    m = 2
    limit = (1 << (cfg.acc_bits - 1)) - 1
    a = np.full((m, k), -128, np.int8)
    b = np.full((k, n), -128, np.int8)
    bias = np.zeros(n, np.int64)
    bias[0] = min(limit - 128 * 128 * k, (1 << 31) - 1)
    if n > 1:
        b[:, 1] = 127
        bias[1] = -min(limit - 128 * 127 * k, (1 << 31) - 1)
    job = GemmJob(a, b, bias=bias.astype(np.int32), tag=1)
    r = await _run(tb, job)
    if cfg.acc_bits == 32 and 128 * 128 * k <= limit:
        assert int(r.c[0, 0]) == limit, f"C[0,0] = {int(r.c[0, 0])}, expected {limit}"
    mult, shift = requant_params(tb.rng, k, n, extreme=n >= 4)
    if n < 4:
        mult[0], shift[0] = (1 << 31) - 1, -31
    job = GemmJob(a, b, bias=bias.astype(np.int32), multiplier=mult, shift=shift, tag=2,
                  zp_out=-3)
    await _run(tb, job)
    _check_idle(tb)


@cocotb.test()
async def test_accumulate_across_jobs(dut):
    """acc_out, then acc_in+acc_out, then acc_in (requant); held dropped by a plain job."""
    tb = TB(dut)
    await tb.start()
    cfg = tb.cfg
    m = min(cfg.acc_depth, cfg.rows + 2)
    n = cfg.cols
    k1, k2, k3 = (min(cfg.k_max, x) for x in (cfg.rows + 1, 3, 2 * cfg.rows))
    j1 = random_job(tb.rng, m, k1, n, requant=False, tag=10)
    j1.acc_out = True
    j2 = random_job(tb.rng, m, k2, n, requant=False, tag=11)
    j2.acc_in = j2.acc_out = True
    j3 = random_job(tb.rng, m, k3, n, requant=True, tag=12)
    j3.acc_in = True
    for j in (j1, j2, j3):
        await _run(tb, j)
    # the same chain ending raw
    j1.tag, j3 = 13, random_job(tb.rng, m, k3, n, requant=False, tag=14)
    j3.acc_in = True
    await _run(tb, j1)
    await _run(tb, j3)
    # j3 consumed the accumulator without acc_out: a further acc_in has nothing held
    word = _cmd(cfg, acc_in=1, m=m, k=1, n=n, tag=15)
    await _reject(tb, word, isa.Error.BAD_ACC, 15)
    # a held accumulator of another shape does not match
    j1.tag = 16
    await _run(tb, j1)
    await _reject(tb, _cmd(cfg, acc_in=1, m=max(1, m - 1), k=1, n=n, tag=17),
                         isa.Error.BAD_ACC, 17)
    tb.model.reset()
    await _sanity_job(tb)
    _check_idle(tb)


@cocotb.test()
async def test_weight_tiles_back_to_back(dut):
    """Two weight tiles with no bubble: B = [I; 2I] (K = 2R) against B = I (K = R).

    Expected count (docs/isa.md, docs/verification.md): the streams carry one beat per cycle and
    the array double-buffers weights, so the second tile costs exactly the beats it adds to its
    busiest stream: ``cycles(2R) - cycles(R) <= max(extra act beats, extra wgt beats)``, where
    ``cycles(R) = M + fill`` is measured (the upper bound ``M * tiles + fill``). M is chosen
    larger than R and at most ``acc_depth`` (one row chunk), so the activation stream is the
    busiest (ws: M more beats; os: one more R-step per row tile) and any cycle beyond it is a
    bubble between the tiles.
    """
    tb = TB(dut)
    await tb.start()
    cfg = tb.cfg
    R, C = cfg.rows, cfg.cols
    m = min(cfg.acc_depth, max(2 * R, 8))
    eye = np.eye(R, C, dtype=np.int8)
    a = tb.rng.integers(-64, 64, (m, R), dtype=np.int8)
    one = await _run(tb, GemmJob(a, eye, tag=1))
    s1 = encode(GemmJob(a, eye), cfg)
    if 2 * R > cfg.k_max:
        tb.log.info("k_max %d < 2R: one weight tile only, checked B = I", cfg.k_max)
        return
    a2 = tb.rng.integers(-42, 43, (m, 2 * R), dtype=np.int8)
    b2 = np.concatenate([eye, 2 * eye]).astype(np.int8)
    two = await _run(tb, GemmJob(a2, b2, tag=2))
    s2 = encode(GemmJob(a2, b2), cfg)
    extra = max(len(s2.act) - len(s1.act), len(s2.wgt) - len(s1.wgt))
    c1, c2 = one.status.cycles, two.status.cycles
    tb.log.info("M=%d: cycles one tile %d, two tiles %d; extra beats %d (act %d→%d, wgt %d→%d)",
                m, c1, c2, extra, len(s1.act), len(s2.act), len(s1.wgt), len(s2.wgt))
    if m > R:
        assert c2 - c1 <= extra, (f"second weight tile cost {c2 - c1} cycles, more than the "
                                  f"{extra} beats it adds: a bubble between tiles (M={m})")
    else:
        tb.log.info("acc_depth %d <= R: weight-bound, bubble check not applicable",
                    cfg.acc_depth)
    # Steady state: a third tile, with M large enough for a tile to drain from the array
    # (2(R + C) rows) and a result FIFO deep enough for full throughput (R + C + 8 beats).
    big = min(cfg.acc_depth, max(2 * R, 8, 2 * (R + C)))
    if 3 * R <= cfg.k_max and big >= 2 * (R + C) and cfg.res_depth >= R + C + 8:
        cyc = []
        streams = []
        for kt in (2, 3):
            ak = tb.rng.integers(-30, 31, (big, kt * R), dtype=np.int8)
            bk = np.concatenate([eye * (i + 1) for i in range(kt)]).astype(np.int8)
            cyc.append((await _run(tb, GemmJob(ak, bk, tag=kt))).status.cycles)
            streams.append(encode(GemmJob(ak, bk), cfg))
        extra = max(len(streams[1].act) - len(streams[0].act),
                    len(streams[1].wgt) - len(streams[0].wgt))
        tb.log.info("M=%d: cycles two tiles %d, three tiles %d; extra beats %d", big, *cyc,
                    extra)
        assert cyc[1] - cyc[0] <= extra, (f"third weight tile cost {cyc[1] - cyc[0]} cycles, "
                                          f"more than the {extra} beats it adds (M={big})")
    _check_idle(tb)


@cocotb.test()
async def test_random_jobs(dut):
    """Random shapes (ragged tiles, M beyond acc_depth sometimes), raw and requant."""
    tb = TB(dut)
    await tb.start()
    cfg = tb.cfg
    R, C = cfg.rows, cfg.cols
    count = 40 if bench_full() else 10
    for i in range(count):
        big = tb.rng.random() < (0.3 if bench_full() else 0.1)
        m = int(tb.rng.integers(1, (cfg.acc_depth + R + 2) if big else 3 * R + 2))
        k = int(tb.rng.integers(1, min(cfg.k_max, 4 * R + 2) + 1))
        n = int(tb.rng.integers(1, 3 * C + 2))
        await _run(tb, random_job(tb.rng, m, k, n, requant=bool(i % 2), tag=i))
    _check_idle(tb)


@cocotb.test()
async def test_many_row_chunks(dut):
    """M of 2.5 and 3.5 ``acc_depth`` (ws: three and four row chunks), two K tiles, two column
    tiles, raw and requant.

    A sequencer's row counter (``_Countdown``) precomputes the clip and ``last`` flag of the
    chunk after next when it advances: only a job of more than two chunks reads them, and only
    one of more than three reads a value it subtracted itself. The other tests' M stays at
    about two chunks or below, so a wrong precomputed flag or a wrong bit of the stored
    remainder ends the job a chunk early or late only here. The column tiles reload the counter
    from the running job (not the command), so both load paths run.
    """
    tb = TB(dut)
    await tb.start()
    cfg = tb.cfg
    R, C, D = cfg.rows, cfg.cols, cfg.acc_depth
    k = min(cfg.k_max, R + 1)
    for i, m in enumerate((5 * D // 2, 7 * D // 2)):
        for requant in (False, True):
            await _run(tb, random_job(tb.rng, m, k, C + 1, requant=requant,
                                      tag=2 * i + requant))
    _check_idle(tb)


@cocotb.test()
@cocotb.parametrize(pattern=[cocotb.Param(p, name=p) for p in PATTERNS])
async def test_backpressure(dut, pattern):
    """Jobs under a backpressure pattern on all sources and sinks."""
    tb = TB(dut)
    await tb.start()
    _backpressure(tb, pattern)
    cfg = tb.cfg
    R, C = cfg.rows, cfg.cols
    shapes = [(R + 1, min(cfg.k_max, 2 * R + 1), C + 1), (3, 1, 2), (2 * R, min(cfg.k_max, R), C)]
    if bench_full():
        shapes += [(3 * R + 1, min(cfg.k_max, 3 * R - 1), 2 * C + 1)] * 2
    for i, (m, k, n) in enumerate(shapes):
        await _run(tb, random_job(tb.rng, m, k, n, requant=bool(i % 2), tag=i))
    # back to back without waiting: queue two jobs before collecting either
    jobs = [random_job(tb.rng, R + 2, min(cfg.k_max, R + 3), C, requant=False, tag=40 + i)
            for i in range(2)]
    streams = [encode(j, cfg) for j in jobs]
    for s in streams:
        await tb.submit(s)
    for j, s in zip(jobs, streams):
        beats = await tb.recv_results(len(s.res), tb._budget(s))
        st = await tb.recv_status(tb._budget(s))
        assert st.ok and st.tag == j.tag, f"status {st}"
        _check_cycles(tb, s.job, st)
        want = tb.model.run(s.job)
        np.testing.assert_array_equal(decode_results(beats, s.job, cfg), want)
    _check_idle(tb)


@cocotb.test()
@cocotb.parametrize(pattern=[cocotb.Param(p, name=p) for p in ("none", "random")])
async def test_job_stream(dut, pattern):
    """Many jobs queued at once: raw, requant, accumulator chains, rejected commands.

    Everything is sent up front (commands and data back to back, so later commands and data wait
    on the engine's backpressure) and checked in order: rejected commands consume no data, a
    chain's held accumulator survives only until the next job, results come back in order.
    """
    tb = TB(dut)
    await tb.start()
    _backpressure(tb, pattern)
    cfg = tb.cfg
    R, C = cfg.rows, cfg.cols
    count = 48 if bench_full() else 14
    items = []                                # (kind, payload, tag)
    i = 0
    while len(items) < count:
        tag = len(items) & 0xFF
        roll = tb.rng.random()
        if roll < 0.15:
            bad = [(_cmd(cfg, opcode=3, tag=tag), isa.Error.BAD_OPCODE),
                   (_cmd(cfg, n=0, tag=tag), isa.Error.BAD_SHAPE),
                   (_cmd(cfg, requant=1, acc_out=1, tag=tag), isa.Error.BAD_ACC),
                   (_cmd(cfg, tag=tag) | (1 << 21), isa.Error.BAD_RESERVED)]
            items.append(("bad", bad[int(tb.rng.integers(len(bad)))], tag))
            continue
        if roll < 0.3 and len(items) + 2 <= count:
            m = int(tb.rng.integers(1, min(cfg.acc_depth, 2 * R + 1) + 1))
            n = int(tb.rng.integers(1, C + 1))
            j1 = random_job(tb.rng, m, int(tb.rng.integers(1, min(cfg.k_max, 2 * R + 2) + 1)),
                            n, requant=False, tag=tag)
            j1.acc_out = True
            j2 = random_job(tb.rng, m, int(tb.rng.integers(1, min(cfg.k_max, 2 * R + 2) + 1)),
                            n, requant=bool(tb.rng.integers(2)), tag=(tag + 1) & 0xFF)
            j2.acc_in = True
            items.append(("job", j1, j1.tag))
            items.append(("job", j2, j2.tag))
            continue
        big = tb.rng.random() < 0.2
        # a big ws job spans several accumulator chunks; an os job a few row tiles
        m_hi = Dataflow(cfg.dataflow).pick(ws=2 * cfg.acc_depth + 2 if big else 2 * R + 2,
                                           os=2 * R + 2)
        m = int(tb.rng.integers(1, m_hi))
        k = int(tb.rng.integers(1, min(cfg.k_max, 3 * R + 1) + 1))
        n = int(tb.rng.integers(1, 2 * C + 2))
        items.append(("job", random_job(tb.rng, m, k, n, requant=bool(tb.rng.integers(2)),
                                        tag=tag), tag))
    # encode (the model's held bounds are exact values, so chains pass the driver's check)
    streams = []
    held = None
    for kind, payload, tag in items:
        if kind == "bad":
            streams.append(None)
            continue
        job = payload
        bound = held if job.acc_in else None
        s = encode(job, cfg, held=bound)
        streams.append(s)
        held = s.bound if job.acc_out else None
    budget = 0
    for (kind, payload, tag), s in zip(items, streams):
        if kind == "bad":
            await tb.send_cmd(payload[0])
            budget += 200
        else:
            await tb.submit(s)
            budget += tb._budget(s)
    for (kind, payload, tag), s in zip(items, streams):
        if kind == "bad":
            st = await tb.recv_status(budget)
            assert st.error == payload[1] and st.tag == tag, (
                f"item tag {tag}: status {st}, expected {payload[1]!r}")
            _check_cycles(tb, None, st)
            continue
        beats = await tb.recv_results(len(s.res), budget) if len(s.res) else []
        st = await tb.recv_status(budget)
        m, k, n = s.job.shape
        assert st.ok and st.tag == tag, f"job {m}x{k}x{n} tag {tag}: status {st}"
        _check_cycles(tb, s.job, st)
        want = tb.model.run(s.job)
        if want is not None:
            got = decode_results(beats, s.job, cfg)
            if not np.array_equal(got, want):
                bad = np.argwhere(got != want)
                r, c = (int(x) for x in bad[0])
                raise AssertionError(
                    f"job {m}x{k}x{n} tag {tag}{' acc_in' if s.job.acc_in else ''}: "
                    f"{len(bad)} wrong, C[{r}, {c}] = {int(got[r, c])}, expected "
                    f"{int(want[r, c])} (seed {tb.seed})")
    _check_idle(tb)


@cocotb.test()
async def test_reset_mid_job(dut):
    """aresetn low in the middle of a job; afterwards a correct job."""
    tb = TB(dut)
    await tb.start()
    cfg = tb.cfg
    R, C = cfg.rows, cfg.cols
    job = random_job(tb.rng, 3 * R + 1, min(cfg.k_max, 3 * R + 1), 2 * C + 1, requant=False)
    s = encode(job, cfg)
    await tb.submit(s)
    await ClockCycles(dut.aclk, max(4, len(s.act) // 2))
    await tb.reset(5)
    await ClockCycles(dut.aclk, 3)
    _check_idle(tb)
    await _sanity_job(tb)
    # and once more, resetting while results stream out
    s = encode(job, cfg)
    await tb.submit(s)
    await wait_high(dut.aclk, dut.m_axis_res_tvalid, tb._budget(s))
    await ClockCycles(dut.aclk, 2)
    await tb.reset(3)
    await _sanity_job(tb, tag=0x5B)
    _check_idle(tb)


@cocotb.test()
async def test_tkeep_ragged_frames(dut):
    """Frames ending mid-beat: lanes with tkeep 0 carry random bytes and must read as 0."""
    tb = TB(dut)
    await tb.start()
    cfg = tb.cfg
    R, C = cfg.rows, cfg.cols
    for m, k, n in ((R + 1, min(cfg.k_max, R + 1), C + 1), (1, 1, 1),
                    (2 * R - 1, min(cfg.k_max, 2 * R - 1), 2 * C - 1)):
        await _run(tb, random_job(tb.rng, m, k, n, requant=False), garbage=True)
        await _run(tb, random_job(tb.rng, m, k, n, requant=True), garbage=True)
    _check_idle(tb)


@cocotb.test()
async def test_malformed_commands(dut):
    """Each malformed command gets its error code and consumes no data; then a correct job."""
    tb = TB(dut)
    await tb.start()
    cfg = tb.cfg
    E = isa.Error
    cases = [
        (_cmd(cfg, opcode=0x00), E.BAD_OPCODE),
        (_cmd(cfg, opcode=0x02), E.BAD_OPCODE),
        (_cmd(cfg, opcode=0xFF), E.BAD_OPCODE),
        (_cmd(cfg, version=0), E.BAD_VERSION),
        (_cmd(cfg, version=isa.ISA_VERSION + 1), E.BAD_VERSION),
        (_cmd(cfg, m=0), E.BAD_SHAPE),
        (_cmd(cfg, k=0), E.BAD_SHAPE),
        (_cmd(cfg, n=0), E.BAD_SHAPE),
        (_cmd(cfg, requant=1, act_min=5, act_max=4), E.BAD_CLAMP),
        (_cmd(cfg, requant=1, acc_out=1), E.BAD_ACC),
        (_cmd(cfg, acc_in=1), E.BAD_ACC),
        (_cmd(cfg, acc_out=1, m=cfg.acc_depth + 1), E.BAD_ACC),
        (_cmd(cfg, acc_out=1, n=cfg.cols + 1), E.BAD_ACC),
        (_cmd(cfg, acc_in=1, acc_out=1, n=cfg.cols + 1), E.BAD_ACC),
    ]
    if cfg.k_max < isa.CMD_FIELDS["k"].max:
        cases.append((_cmd(cfg, k=cfg.k_max + 1), E.BAD_SHAPE))
    for bit in range(19, 24):
        cases.append((_cmd(cfg) | (1 << bit), E.BAD_RESERVED))
    for i, (word, err) in enumerate(cases):
        tag = (0x80 + i) & 0xFF
        word = (word & ~(0xFF << 24)) | (tag << 24)
        await _reject(tb, word, err, tag)
    _check_idle(tb)
    await _sanity_job(tb)
    # a raw job ignores the clamp: act_min > act_max is not an error there
    job = random_job(tb.rng, 2, 3, 2, requant=False, tag=0x33)
    job.act_min, job.act_max = 5, 4
    await _run(tb, job)
    _check_idle(tb)


@cocotb.test()
async def test_frame_errors(dut):
    """tlast misplaced on a data stream → FRAME status; the next job is unaffected."""
    tb = TB(dut)
    await tb.start()
    cfg = tb.cfg
    R, C = cfg.rows, cfg.cols
    k = min(cfg.k_max, R + 1)
    m = R + 2
    variants = ["act_early", "act_missing", "wgt_param_early", "wgt_missing"]
    for i, v in enumerate(variants):
        job = random_job(tb.rng, m, k, C, requant=False, tag=0x70 + i)
        s = encode(job, cfg)
        act_last, wgt_last = s.act.last.copy(), s.wgt.last.copy()
        if v == "act_early":
            act_last[0] = True                      # first beat of a multi-beat tile
        elif v == "act_missing":
            first = int(np.flatnonzero(act_last)[0])
            if first == len(act_last) - 1:
                act_last[0] = True                  # only one tile: make an early one instead
            else:
                act_last[first] = False
        elif v == "wgt_param_early":
            wgt_last[3] = True
        else:
            first = int(np.flatnonzero(wgt_last)[1])  # end of the first weight tile
            if first == len(wgt_last) - 1:
                wgt_last[4] = True
            else:
                wgt_last[first] = False
        await tb.submit(s, act_last=act_last, wgt_last=wgt_last)
        budget = tb._budget(s)
        st = await tb.recv_status(budget)
        assert st.error == isa.Error.FRAME, f"{v}: status {st}, expected FRAME"
        assert st.tag == job.tag, f"{v}: status {st}"
        await ClockCycles(dut.aclk, 5)
        tb.drain()
        await _sanity_job(tb, tag=0x60 + i)
    _check_idle(tb)


def _near_tie(rng: np.random.Generator, rounding: str) -> tuple[int, int, int]:
    """``acc * M0`` within ``|acc|`` of the single-rounding tie at bit ``30 - shift``
    (``k * 2^e``, ``k`` odd): ``M0 = floor(k * 2^e / |acc|) + delta``, ``delta`` 0 or 1. Small
    ``|acc|`` (chains from about bit 8 up to the tie). Double rounding has the same tie for
    ``shift >= 0`` (its left shift comes first), so it gets those shifts only."""
    shifts = [0, 0, -1, -2, -3, -5, -8, -13, -16, -21, -31, 1, 2, 3]
    if rounding == "double":
        shifts = [s for s in shifts if s >= 0]
    while True:
        shift = int(rng.choice(shifts))
        e = 30 - shift
        if shift < 0:
            mag = int(rng.integers(2, 256)) << min(-shift, 22)
        else:
            mag = int(rng.integers(2, 256 >> (shift + 1)))
        lo = -(-mag * (1 << 30) // (1 << e))            # k >= |acc| * 2^(30 - e)
        hi = (2 * mag * (1 << 30)) // (1 << e)          # M0 < 2^31
        ks = [k for k in range(lo, min(hi, lo + 64, 250)) if k % 2 == 1]
        if not ks:
            continue
        k = int(rng.choice(ks))
        m0 = (k << e) // mag + int(rng.integers(0, 2))
        if (1 << 30) <= m0 < (1 << 31) and mag < (1 << 31):
            return (mag if rng.random() < 0.5 else -mag), m0, shift


def _exact_tie(rng: np.random.Generator, rounding: str) -> tuple[int, int, int]:
    """A large odd ``acc`` and ``M0 = (tie + d) * acc^-1 mod 2^b`` (``d`` in -2..2): ``acc * M0``
    is ``d`` away from the tie of the first rounding (``b = 31 - shift`` in single rounding, 31 in
    double), with every bit of ``acc``, ``M0`` and the partial products random."""
    while True:
        r = int(rng.integers(0, 9)) if rounding == "single" else \
            (0 if rng.random() < 0.5 else int(rng.integers(1, 24)))
        mod = 1 << (31 + (r if rounding == "single" else 0))
        lim = 1 << min(7 + r, 30)                      # |y| < 128: no clamp
        for _ in range(4096):
            acc = int(rng.integers(-lim, lim)) | 1
            m0 = ((mod // 2 + int(rng.integers(-2, 3))) * pow(acc, -1, mod)) % mod
            if (1 << 30) <= m0 < (1 << 31):
                return acc, m0, -r


def _second_tie(rng: np.random.Generator) -> tuple[int, int, int]:
    """Double rounding's second step at a tie: ``M0 = 2^30`` makes the first step exact
    (``h = acc / 2`` for even ``acc``), and ``h = (2j + 1) * 2^(r - 1) + d``, ``d`` in -1..1, sits
    at the rounding point of the right shift by ``r``."""
    r = int(rng.integers(1, 31))
    j = int(rng.integers(0, min(100, (1 << (30 - r)) - 1) + 1)) if r < 30 else 0
    h = (2 * j + 1) * (1 << (r - 1)) + int(rng.integers(-1, 2))
    h = min(h, (1 << 30) - 1)
    return (2 * h if rng.random() < 0.5 else -2 * h), 1 << 30, -r


def rounding_edge(rng: np.random.Generator, rounding: str) -> tuple[int, int, int]:
    """An ``(acc, M0, shift)`` whose requantization sits at a rounding tie (numerics.md): the
    long carry and borrow chains of a near tie make the int8 output depend on the bits of
    ``M0``, of the product and of its partial sums, which random jobs reach about once in 2^20.

    One of: :func:`_near_tie` (small ``acc``, single-rounding tie positions), :func:`_exact_tie`
    (large random ``acc``, within 2 of the first rounding's tie), :func:`_second_tie` (double:
    the right shift's tie), or ``acc = +-1`` under left shifts 4 to 7 (the product's bits above
    bit 23 reach the output). The output stays inside int8 (no clamp hides a wrong bit).
    """
    kind = int(rng.integers(0, 5))
    if kind == 0:
        return _near_tie(rng, rounding)
    if kind in (1, 2) or (kind == 3 and rounding == "single"):
        return _exact_tie(rng, rounding)
    if kind == 3:
        return _second_tie(rng)
    return int(rng.choice([-1, 1])), int(rng.integers(1 << 30, 1 << 31)), int(rng.integers(4, 8))


@cocotb.test()
async def test_parameter_bits(dut):
    """Every bit of every parameter slot and column takes both values, and requantized
    products sit at their rounding ties (:func:`rounding_edge`), on ``2C`` columns (both slots).

    Raw jobs with ``A = 0`` return the bias exactly: a random full-range int32 bias and its
    complement. Requant jobs with ``A = 0`` requantize ``acc = bias``, one near-tie case per
    column: a wrong bit of ``bias``, ``M0``, ``shift`` or of the product's partial sums moves the
    product across the tie and the int8 result by one.
    """
    tb = TB(dut)
    await tb.start()
    cfg = tb.cfg
    n = 2 * cfg.cols
    zero_a = np.zeros((1, 1), np.int8)
    zero_b = np.zeros((1, n), np.int8)
    bias = tb.rng.integers(-(1 << 31), 1 << 31, n, dtype=np.int64).astype(np.int32)
    for i, b in enumerate((bias, ~bias)):                  # accumulators are >= 32 bits
        await _run(tb, GemmJob(zero_a, zero_b, bias=b, tag=i))
    jobs = 96 if bench_full() else 48
    for j in range(jobs):
        cases = [rounding_edge(tb.rng, cfg.rounding) for _ in range(n)]
        acc, m0, sh = (np.array(v, np.int64) for v in zip(*cases))
        await _run(tb, GemmJob(zero_a, zero_b, bias=acc.astype(np.int32), multiplier=m0,
                               shift=sh, tag=j))
    # acc = 0 under the largest left shifts: the product's lowest bits reach the output
    # (single: t = prod >> (30 - shift)), where any nonzero product clamps.
    for j in range(2):
        sh = tb.rng.integers(26, 31, n)
        m0 = tb.rng.integers(1 << 30, 1 << 31, n)
        await _run(tb, GemmJob(zero_a, zero_b, bias=np.zeros(n, np.int32), multiplier=m0,
                               shift=sh, tag=100 + j))
    _check_idle(tb)


@cocotb.test()
async def test_rounding_ties_every_shift(dut):
    """Every requantizer lane rounds a tie, a tie - 1 and a tie + 1 at every right shift
    0..30 (double: 1..30), positive and negative, in both parameter slots.

    ``M0 = 2^30`` makes the product a plain shift of ``acc`` (single: ``y = round(acc / 2^(r+1))``
    with ties at ``acc = (2j + 1) 2^r``; double: the first step gives ``h = acc / 2`` exactly for
    even ``acc``, the second rounds ``h / 2^r`` with ties at ``h = (2j + 1) 2^(r-1)``), so the
    three rows ``acc = T - u, T, T + u`` (``u`` = 1 single, 2 double) land on each side of the
    tie of the shift under test: a wrong bit of the shift decode, the rounding threshold or
    the remainder mask moves one of them. Job ``j``'s column ``c`` tests ``r = (j + c) mod 31``,
    column ``C + c`` (the other slot) the same ``r`` negated.
    """
    tb = TB(dut)
    await tb.start()
    cfg = tb.cfg
    C = cfg.cols
    double = cfg.rounding == "double"
    u = 2 if double else 1
    a = np.array([[-u], [0], [u]], np.int8)
    b = np.ones((1, 2 * C), np.int8)
    for j in range(31):
        r = np.array([(j + c) % 31 for c in range(C)] * 2)
        if double:
            r = np.maximum(r, 1)
        # the tie (2j + 1) * 2^r (double: 2h with h = (2j + 1) * 2^(r-1)), inside int32
        top = np.maximum((((1 << 31) - 1 - u) >> r) - 1, 0) // 2   # largest j
        odd = 2 * (tb.rng.integers(0, 8, 2 * C) % (np.minimum(top, 7) + 1)) + 1
        tie = odd.astype(np.int64) << r
        sign = np.array([1] * C + [-1] * C)
        await _run(tb, GemmJob(a, b, bias=(sign * tie).astype(np.int32),
                               multiplier=np.full(2 * C, 1 << 30), shift=-r, tag=j))
    _check_idle(tb)


@cocotb.test()
async def test_no_x_after_reset(dut):
    """After reset no output is X/Z (valid, ready, and data while valid); meaningful on Icarus."""
    tb = TB(dut)
    await tb.start(x_check=True)
    await ClockCycles(dut.aclk, 5)
    for s in (dut.m_axis_res_tvalid, dut.m_axis_status_tvalid, dut.s_axis_cmd_tready,
              dut.s_axis_act_tready, dut.s_axis_wgt_tready):
        assert s.value.is_resolvable, f"{s._name} = {s.value} after reset"
    assert not bool(dut.m_axis_res_tvalid.value), "result valid while idle"
    assert not bool(dut.m_axis_status_tvalid.value), "status valid while idle"
    await _run(tb, random_job(tb.rng, 3, min(tb.cfg.k_max, 3), 3, requant=True))
    _check_idle(tb)
