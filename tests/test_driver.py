"""Checks of the host driver (sim/driver.py) without RTL.

The reference here is a small, separate interpreter of the stream format written from
docs/isa.md alone: it consumes the command beat, the weight beats (parameter blocks included)
and the activation beats in the documented order, checking every ``tkeep`` and ``tlast``,
accumulates with Python integers, requantizes with :mod:`npugen.sim.golden`, and emits result beats
lane by lane. ``encode`` → interpreter must equal :func:`npugen.sim.golden.gemm_int8`, and
``decode_results`` of the interpreter's beats must too.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from npugen.hw import isa
from npugen.hw.config import GemmConfig
from npugen.sim import golden
from npugen.sim.driver import (Beat, GemmJob, column_bounds, decode_results, decode_status, encode,
                        encode_many, result_plan)


# ------------------------------------------------------------------------------------------
# the reference interpreter (docs/isa.md, written independently of sim/driver.py)

class _Reader:
    """Pops beats off one stream, checking tkeep and tlast as the spec places them."""

    def __init__(self, beats, lanes, name):
        self.beats = list(beats)
        self.pos = 0
        self.lanes = lanes
        self.name = name

    def take(self, valid_lanes, last):
        beat = self.beats[self.pos]
        self.pos += 1
        assert len(beat.data) == self.lanes, f"{self.name}: beat width"
        assert beat.keep == (1 << valid_lanes) - 1, f"{self.name} beat {self.pos - 1}: tkeep"
        assert beat.last == last, f"{self.name} beat {self.pos - 1}: tlast"
        values = []
        for i in range(self.lanes):
            byte = beat.data[i] if (beat.keep >> i) & 1 else 0
            values.append(byte - 256 if byte >= 128 else byte)
        return values, beat.data

    def done(self):
        assert self.pos == len(self.beats), f"{self.name}: {len(self.beats) - self.pos} beats left"


def interpret(cmd, act_beats, wgt_beats, cfg, held=None):
    """Run one job the way docs/isa.md describes it.

    Returns (result beats, C as a list of lists or None for acc_out, accumulator or None).
    """
    f = isa.unpack(isa.CMD_FIELDS, cmd)
    assert f["opcode"] == isa.Opcode.GEMM and f["version"] == isa.ISA_VERSION
    assert cmd & isa.reserved_mask(isa.CMD_FIELDS, isa.CMD_WIDTH) == 0
    m, k, n = f["m"], f["k"], f["n"]
    R, C = cfg.rows, cfg.cols
    act = _Reader(act_beats, R, "act")
    wgt = _Reader(wgt_beats, C, "wgt")
    acc = [[0] * n for _ in range(m)]
    bias = [0] * n
    mult = [0] * n
    shift = [0] * n

    for n0 in range(0, n, C):
        nc = min(C, n - n0)
        raw = [wgt.take(nc, b == isa.PARAM_BEATS - 1)[1] for b in range(isa.PARAM_BEATS)]
        for c in range(nc):
            bias[n0 + c] = int.from_bytes(bytes(raw[b][c] for b in range(4)), "little",
                                          signed=True)
            mult[n0 + c] = int.from_bytes(bytes(raw[b][c] for b in range(4, 8)), "little",
                                          signed=True)
            shift[n0 + c] = raw[8][c] - 256 if raw[8][c] >= 128 else raw[8][c]
        if cfg.dataflow == "ws":
            for m0 in range(0, m, cfg.acc_depth):
                mc = min(cfg.acc_depth, m - m0)
                for k0 in range(0, k, R):
                    kc = min(R, k - k0)
                    tile = [wgt.take(nc, r == kc - 1)[0] for r in range(kc)]
                    for i in range(mc):
                        a_row = act.take(kc, i == mc - 1)[0]
                        for c in range(nc):
                            acc[m0 + i][n0 + c] += sum(a_row[r] * tile[r][c] for r in range(kc))
        else:
            for m0 in range(0, m, R):
                mr = min(R, m - m0)
                w_cols = [wgt.take(nc, kk == k - 1)[0] for kk in range(k)]
                a_cols = [act.take(mr, kk == k - 1)[0] for kk in range(k)]
                for kk in range(k):
                    for i in range(mr):
                        for c in range(nc):
                            acc[m0 + i][n0 + c] += a_cols[kk][i] * w_cols[kk][c]
    act.done()
    wgt.done()
    for i in range(m):
        for j in range(n):
            acc[i][j] += bias[j] + (held[i][j] if f["acc_in"] else 0)
    if f["acc_out"]:
        return [], None, acc

    if f["requant"]:
        q = golden.requantize(np.array(acc, dtype=np.int64), np.array(mult, dtype=np.int64),
                              np.array(shift, dtype=np.int64), zp_out=f["zp_out"],
                              act_min=f["act_min"], act_max=f["act_max"],
                              rounding=cfg.rounding)
        c_out = [[int(x) for x in row] for row in np.asarray(q)]
    else:
        c_out = acc
    lane = cfg.lane_bits // 8
    beats = []
    groups = cfg.acc_depth if cfg.dataflow == "ws" else R
    order = []
    for n0 in range(0, n, C):
        nc = min(C, n - n0)
        for m0 in range(0, m, groups):
            for i in range(m0, min(m, m0 + groups)):
                order.append((i, n0, nc))
    for idx, (i, n0, nc) in enumerate(order):
        if f["requant"]:    # docs/isa.md: nc int8 bytes packed, the rest of the beat 0
            data = bytes(v & 0xFF for v in c_out[i][n0:n0 + nc]) + bytes(C * lane - nc)
            keep = (1 << nc) - 1
        else:               # nc sign-extended lanes of L bits, the other lanes 0
            data = b"".join(
                (c_out[i][n0 + c] if c < nc else 0).to_bytes(lane, "little", signed=True)
                for c in range(C))
            keep = (1 << (nc * lane)) - 1
        beats.append(Beat(data, keep, idx == len(order) - 1))
    return beats, c_out, None


# ------------------------------------------------------------------------------------------
# helpers

def cfg_(rows=4, cols=4, dataflow="ws", **kw):
    kw.setdefault("k_max", 256)
    kw.setdefault("acc_depth", 16)
    return GemmConfig(name="t", rows=rows, cols=cols, dataflow=dataflow, **kw)


def rand_job(rng, m, k, n, requant, *, zp_a=None, bias=True, clamp=True):
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    job = GemmJob(a, b)
    if bias:
        job.bias = rng.integers(-(1 << 20), 1 << 20, n, dtype=np.int32)
    job.zp_a = int(rng.integers(-128, 128)) if zp_a is None else zp_a
    if requant:
        job.multiplier = rng.integers(1 << 30, 1 << 31, n, dtype=np.int64)
        job.multiplier[rng.random(n) < 0.1] = 0
        job.shift = rng.integers(-20, 4, n, dtype=np.int64)
        job.zp_out = int(rng.integers(-128, 128))
        if clamp:
            lo = int(rng.integers(-128, 0))
            job.act_min, job.act_max = lo, int(rng.integers(lo, 128))
    job.tag = int(rng.integers(0, 256))
    return job


def golden_of(job, cfg):
    return golden.gemm_int8(job.a, job.b, bias=job.bias, zp_a=job.zp_a,
                            multiplier=job.multiplier, shift=job.shift, zp_out=job.zp_out,
                            act_min=job.act_min, act_max=job.act_max, rounding=cfg.rounding)


def run_through(job, cfg):
    s = encode(job, cfg)
    beats, c_interp, _ = interpret(s.cmd, s.act.beats(), s.wgt.beats(), cfg)
    return s, beats, c_interp


CONFIGS = [
    dict(rows=1, cols=1), dict(rows=2, cols=2), dict(rows=4, cols=4), dict(rows=4, cols=8),
    dict(rows=8, cols=4), dict(rows=3, cols=5), dict(rows=16, cols=16),
]


# ------------------------------------------------------------------------------------------
# encode → interpret == golden

@pytest.mark.parametrize("dataflow", ["ws", "os"])
@pytest.mark.parametrize("geom", CONFIGS, ids=lambda g: f"{g['rows']}x{g['cols']}")
@pytest.mark.parametrize("requant", [False, True], ids=["raw", "requant"])
def test_encode_matches_golden(geom, dataflow, requant):
    cfg = cfg_(dataflow=dataflow, **geom)
    rng = np.random.default_rng(hash((geom["rows"], geom["cols"], dataflow, requant)) & 0xFFFF)
    R, C = cfg.rows, cfg.cols
    shapes = [(1, 1, 1), (5, 1, 2), (5, 6, 7), (R, R, C), (R + 1, R + 1, C + 1),
              (2 * R - 1, 3 * R + 1, 2 * C + 1), (17, 9, 3), (3, 2 * R, 2)]
    for _ in range(4):
        shapes.append(tuple(int(x) for x in rng.integers(1, 3 * max(R, C) + 2, 3)))
    for m, k, n in shapes:
        job = rand_job(rng, m, k, n, requant)
        s, beats, c_interp = run_through(job, cfg)
        want = golden_of(job, cfg)
        np.testing.assert_array_equal(np.array(c_interp), want, err_msg=f"{m}x{k}x{n}")
        got = decode_results(beats, job, cfg)
        assert got.dtype == (np.int8 if requant else np.int64)
        np.testing.assert_array_equal(got, want, err_msg=f"decode {m}x{k}x{n}")
        assert len(beats) == len(s.res)
        assert isa.unpack(isa.CMD_FIELDS, s.cmd)["tag"] == job.tag


@pytest.mark.parametrize("rounding", ["single", "double"])
def test_requant_both_roundings_and_ties(rounding):
    cfg = cfg_(rows=4, cols=4, rounding=rounding)
    # hand-made ties: acc = bias only (A = 0), multiplier 2**30 (= 0.5), shift 0 → acc/2
    n = 8
    bias = np.array([1, -1, 3, -3, 5, -5, 255, -255], dtype=np.int32)
    job = GemmJob(np.zeros((2, 3), np.int8), np.ones((3, n), np.int8), bias=bias,
                  multiplier=np.full(n, 1 << 30), shift=np.zeros(n, np.int64))
    s, beats, c_interp = run_through(job, cfg)
    want = golden_of(job, cfg)
    np.testing.assert_array_equal(decode_results(beats, job, cfg), want)
    np.testing.assert_array_equal(np.array(c_interp), want)
    # shifts at both ends of their range, multiplier 0 flushes to zp_out
    rng = np.random.default_rng(7)
    job = rand_job(rng, 6, 7, 5, True)
    job.shift = np.array([-31, 30, 0, -1, 1])
    job.multiplier = np.array([1 << 30, (1 << 31) - 1, 0, 1 << 30, 1 << 30])
    s, beats, _ = run_through(job, cfg)
    np.testing.assert_array_equal(decode_results(beats, job, cfg), golden_of(job, cfg))


def test_ws_m_larger_than_acc_depth():
    cfg = cfg_(rows=4, cols=4, dataflow="ws", acc_depth=16)
    rng = np.random.default_rng(3)
    for m in (16, 17, 40):
        job = rand_job(rng, m, 9, 6, requant=False)
        s, beats, c_interp = run_through(job, cfg)
        np.testing.assert_array_equal(decode_results(beats, job, cfg), golden_of(job, cfg))
        # the activation stream carries each row once per K tile per column tile
        assert len(s.act) == m * 3 * 2
        # weights are resent per row chunk
        chunks = -(-m // 16)
        assert len(s.wgt) == 2 * (isa.PARAM_BEATS + chunks * 9)


def test_os_row_tiles_and_padding_lanes():
    cfg = cfg_(rows=4, cols=4, dataflow="os")
    rng = np.random.default_rng(4)
    job = rand_job(rng, 6, 3, 5, requant=False)
    s = encode(job, cfg)
    # 2 column tiles x 2 row tiles x k beats of act; lanes past the ragged edge are 0 and unkept
    assert len(s.act) == 2 * 2 * 3
    last_tile = s.act.beats()[-3:]
    assert all(b.keep == 0b11 and b.data[2:] == b"\0\0" for b in last_tile)
    assert [b.last for b in s.act.beats()] == [False, False, True] * 4


def test_accumulator_chain():
    rng = np.random.default_rng(5)
    for dataflow in ("ws", "os"):
        cfg = cfg_(rows=4, cols=4, dataflow=dataflow)
        m, n = 6, 4
        j1 = rand_job(rng, m, 5, n, requant=False)
        j1.acc_out = True
        j2 = rand_job(rng, m, 7, n, requant=True)
        j2.acc_in = True
        j3 = rand_job(rng, m, 3, n, requant=False)
        s1, s2, s3 = encode_many([j1, j2, j3], cfg)
        assert len(s1.res) == 0
        beats, _, held = interpret(s1.cmd, s1.act.beats(), s1.wgt.beats(), cfg)
        assert beats == []
        beats, _, _ = interpret(s2.cmd, s2.act.beats(), s2.wgt.beats(), cfg, held=held)
        acc = (golden.gemm_int8(j1.a, j1.b, bias=j1.bias, zp_a=j1.zp_a).astype(np.int64)
               + golden.gemm_int8(j2.a, j2.b, bias=j2.bias, zp_a=j2.zp_a).astype(np.int64))
        want = golden.requantize(acc, j2.multiplier, j2.shift, zp_out=j2.zp_out,
                                 act_min=j2.act_min, act_max=j2.act_max, rounding=cfg.rounding)
        np.testing.assert_array_equal(decode_results(beats, j2, cfg), want)
        f = isa.unpack(isa.CMD_FIELDS, s2.cmd)
        assert (f["acc_in"], f["acc_out"], f["requant"]) == (1, 0, 1)
        beats, _, _ = interpret(s3.cmd, s3.act.beats(), s3.wgt.beats(), cfg)
        np.testing.assert_array_equal(decode_results(beats, j3, cfg), golden_of(j3, cfg))


def test_wide_accumulator_lanes():
    # k_max 131072 needs W = 33 bits, lanes of L = 40 bits
    cfg = cfg_(rows=2, cols=3, k_max=131072)
    assert (cfg.acc_bits, cfg.lane_bits) == (33, 40)
    k = 131072
    a = np.full((1, k), -128, np.int8)
    b = np.full((k, 2), -128, np.int8)
    job = GemmJob(a, b)
    s = encode(job, cfg)
    assert len(s.res) == 1
    # a raw lane of 2**31 does not fit int32: build its result beat by hand (5 bytes per lane)
    v = 128 * 128 * k
    data = v.to_bytes(5, "little", signed=True) * 2 + bytes(5)
    got = decode_results([Beat(data, (1 << 10) - 1, True)], job, cfg)
    np.testing.assert_array_equal(got, golden_of(job, cfg))
    assert got[0, 0] == 1 << 31


# ------------------------------------------------------------------------------------------
# stream layout details

def test_parameter_block_layout():
    cfg = cfg_(rows=2, cols=3)
    bias = np.array([0x01020304, -2, 7], dtype=np.int32)
    b = np.zeros((1, 3), np.int8)
    job = GemmJob(np.zeros((1, 1), np.int8), b, bias=bias,
                  multiplier=np.array([1 << 30, 0, (1 << 31) - 1]), shift=np.array([-31, 30, 0]))
    s = encode(job, cfg)
    p = s.wgt.beats()[:isa.PARAM_BEATS]
    assert [bt.last for bt in p] == [False] * 8 + [True]
    assert p[0].data == bytes([0x04, 0xFE, 7]) and p[3].data == bytes([0x01, 0xFF, 0])
    assert p[7].data == bytes([0x40, 0, 0x7F]) and p[4].data == bytes([0, 0, 0xFF])
    assert p[8].data == bytes([(-31) & 0xFF, 30, 0])


def test_zero_point_folded_into_bias():
    cfg = cfg_()
    b = np.array([[1, -2], [3, 4]], np.int8)
    job = GemmJob(np.zeros((1, 2), np.int8), b, bias=np.array([10, 20], np.int32), zp_a=-5)
    s = encode(job, cfg)
    np.testing.assert_array_equal(s.bias, [10 + 5 * 4, 20 + 5 * 2])


def test_frames_group_by_tlast():
    cfg = cfg_(rows=4, cols=4)
    job = GemmJob(np.ones((3, 5), np.int8), np.ones((5, 2), np.int8))
    s = encode(job, cfg)
    frames = s.act.frames()
    assert len(frames) == 2           # two K tiles, three rows each
    data, keep = frames[1]
    assert len(data) == 3 * 4 and keep == [1, 0, 0, 0] * 3


def test_decode_status():
    word = isa.pack(isa.STATUS_FIELDS, error=4, version=1, tag=0xA5, cycles=(1 << 32) - 1)
    st = decode_status(word)
    assert st.error == isa.Error.BAD_SHAPE and not st.ok
    assert (st.version, st.tag, st.cycles, st.reserved) == (1, 0xA5, (1 << 32) - 1, 0)
    assert decode_status(isa.pack(isa.STATUS_FIELDS, error=0, version=1)).ok
    assert decode_status(99).error == 99


def test_decode_results_rejects_wrong_beats():
    cfg = cfg_(rows=2, cols=2)
    job = GemmJob(np.ones((3, 2), np.int8), np.ones((2, 3), np.int8))
    s, beats, _ = run_through(job, cfg)
    with pytest.raises(ValueError, match="Expected 6 result beats"):
        decode_results(beats[:-1], job, cfg)
    bad = list(beats)
    bad[0] = bad[0]._replace(last=True)
    with pytest.raises(ValueError, match="Result beat 0: tlast"):
        decode_results(bad, job, cfg)
    bad = list(beats)
    bad[-1] = bad[-1]._replace(keep=0xFF)
    with pytest.raises(ValueError, match="Result beat 5: tkeep 0xff, expected 0xf"):
        decode_results(bad, job, cfg)
    rq = dataclasses.replace(job, multiplier=np.full(3, 1 << 30), shift=np.zeros(3, np.int64))
    bad = [bytes([5, 1, 7, 0]) + bytes(4) for i in range(6)]     # byte 2 past nc = 2
    with pytest.raises(ValueError, match="Result beat 0 byte 2: 7, expected 0 past the row's 2"):
        decode_results(bad, rq, cfg)
    # raw bytes arrays decode too
    arr = np.frombuffer(b"".join(b.data for b in beats), np.uint8).reshape(6, 8)
    np.testing.assert_array_equal(decode_results(arr, job, cfg), golden_of(job, cfg))


def test_result_plan_order():
    cfg = cfg_(rows=2, cols=2, dataflow="os")
    p = result_plan(3, 3, cfg)
    assert p.row.tolist() == [0, 1, 2, 0, 1, 2]
    assert p.col0.tolist() == [0, 0, 0, 2, 2, 2]
    assert p.ncols.tolist() == [2, 2, 2, 1, 1, 1]
    assert p.last.tolist() == [False] * 5 + [True]
    assert len(result_plan(3, 3, cfg, acc_out=True)) == 0


# ------------------------------------------------------------------------------------------
# validation

def _job(**kw):
    base = dict(a=np.zeros((2, 3), np.int8), b=np.zeros((3, 4), np.int8))
    base.update(kw)
    return GemmJob(**base)


RQ = dict(multiplier=np.full(4, 1 << 30), shift=np.zeros(4, np.int64))

BAD_JOBS = [
    (dict(a=np.zeros((2, 3), np.int16)), "A must have dtype int8, not int16"),
    (dict(b=np.zeros((3, 4), np.float32)), "B must have dtype int8, not float32"),
    (dict(a=np.zeros(3, np.int8)), "A must be 2-D, not 1-D"),
    (dict(b=np.zeros((2, 4), np.int8)), "A is 2x3 but B is 2x4: the inner dimensions differ"),
    (dict(a=np.zeros((0, 3), np.int8)), "M, K and N must be at least 1, not M=0"),
    (dict(a=np.zeros((2, 0), np.int8), b=np.zeros((0, 4), np.int8)), "must be at least 1"),
    (dict(a=np.zeros((1, 257), np.int8), b=np.zeros((257, 1), np.int8)),
     r"K = 257 exceeds this design's k_max = 256 \(config key k_max; the engine rejects the "
     r"job: BAD_SHAPE\)"),
    (dict(bias=np.zeros(3, np.int32)), r"bias must have shape \(4,\), not \(3,\)"),
    (dict(bias=np.zeros(4, np.float64)), "bias must have an integer dtype, not float64"),
    (dict(bias=np.array([0, 0, 1 << 31, 0])), r"bias\[2\] = 2147483648 is outside"),
    (dict(zp_a=128), r"zp_a must be in \[-128, 127\], not 128"),
    (dict(zp_a=1.5), "zp_a must be an integer"),
    (dict(zp_b=3), "zp_b must be 0: asymmetric weights are not supported"),
    (dict(zp_out=-129), r"zp_out must be in \[-128, 127\]"),
    (dict(tag=256), r"tag must be in \[0, 255\], not 256"),
    (dict(multiplier=np.full(4, 1 << 30)), "multiplier and shift must be given together"),
    (dict(shift=np.zeros(4)), "multiplier and shift must be given together"),
    (dict(multiplier=np.array([1 << 30, 5, 0, 1 << 30]), shift=np.zeros(4, np.int64)),
     r"multiplier\[1\] = 5 must be 0 or in \[2\*\*30, 2\*\*31\)"),
    (dict(multiplier=np.full(4, 1 << 31), shift=np.zeros(4, np.int64)),
     r"multiplier\[0\] = 2147483648 is outside \[0, 2147483647\]"),
    (dict(multiplier=np.full(4, 1 << 30), shift=np.array([0, 0, 31, 0])),
     r"shift\[2\] = 31 is outside \[-31, 30\]"),
    (dict(multiplier=np.full(4, 1 << 30), shift=np.array([0, -32, 0, 0])),
     r"shift\[1\] = -32 is outside \[-31, 30\]"),
    (dict(act_min=5, act_max=4, **RQ), "act_min=5 must not exceed act_max=4"),
    (dict(acc_out=True, **RQ), "acc_out keeps raw accumulators: it cannot be a requant job"),
    (dict(acc_out=True, a=np.zeros((17, 3), np.int8)), "acc_out needs M <= acc_depth=16, not M=17"),
    (dict(acc_out=True, b=np.zeros((3, 5), np.int8)), "acc_out needs N <= cols=4, not N=5"),
    (dict(acc_in=True), "acc_in needs a held accumulator"),
    (dict(b=np.full((3, 4), 1, np.int8), zp_a=-128, bias=np.array([0, 0, 0, (1 << 31) - 200])),
     r"bias'\[3\] = .* does not fit the int32 parameter block"),
]


@pytest.mark.parametrize("kw,msg", BAD_JOBS, ids=lambda x: x if isinstance(x, str) else None)
def test_validation_messages(kw, msg):
    cfg = cfg_(rows=4, cols=4)
    with pytest.raises(ValueError, match=msg):
        encode(_job(**kw), cfg)


def test_act_min_above_act_max_is_fine_for_raw_jobs():
    # the clamp only applies to requant jobs (BAD_CLAMP is for requant jobs only)
    encode(_job(act_min=5, act_max=4), cfg_())


def test_encode_many_chain_errors():
    cfg = cfg_()
    with pytest.raises(ValueError, match="job 0: acc_in must follow an acc_out job"):
        encode_many([_job(acc_in=True)], cfg)
    with pytest.raises(ValueError, match="job 1: acc_in must follow an acc_out job"):
        encode_many([_job(), _job(acc_in=True)], cfg)
    with pytest.raises(ValueError, match="job 1: acc_in job is 3x4 but the held accumulator is 2x4"):
        encode_many([_job(acc_out=True), _job(acc_in=True, a=np.zeros((3, 3), np.int8))], cfg)


@pytest.mark.parametrize("sign", [1, -1])
def test_overflow_check_exact_boundary(sign):
    # W = 32: |bias'| + 128 * sum|B| must be <= 2**31 - 1
    cfg = cfg_(k_max=4096)
    assert cfg.acc_bits == 32
    k = 4096
    b = np.full((k, 3), -128, np.int8)
    worst = 128 * 128 * k                      # 2**26
    limit = (1 << 31) - 1
    ok_bias = np.array([0, sign * (limit - worst), 5], np.int64)
    a = np.full((1, k), -128, np.int8)
    s = encode(GemmJob(a, b, bias=ok_bias.astype(np.int32)), cfg)
    assert s.bound[1] == limit
    bad_bias = ok_bias.copy()
    bad_bias[1] += sign
    with pytest.raises(ValueError, match=re.escape(
            f"Accumulator overflow possible in column n=1: |bias'| + 128*sum|B[:, 1]| = "
            f"{limit + 1} > 2**31 - 1 = {limit} (acc_bits=32)")):
        encode(GemmJob(a, b, bias=bad_bias.astype(np.int32)), cfg)


def test_overflow_check_counts_the_folded_zero_point():
    cfg = cfg_(k_max=4096)
    k = 4096
    b = np.full((k, 1), 127, np.int8)
    limit = (1 << 31) - 1
    colsum = 127 * k
    # bias' = bias - zp_a * colsum; with zp_a = -1 the folded bias grows by colsum
    ok = limit - 128 * colsum - colsum
    a = np.zeros((1, k), np.int8)
    encode(GemmJob(a, b, bias=np.array([ok], np.int32), zp_a=-1), cfg)
    with pytest.raises(ValueError, match="column n=0"):
        encode(GemmJob(a, b, bias=np.array([ok + 1], np.int32), zp_a=-1), cfg)
    assert column_bounds(b, np.array([ok + colsum]))[0] == limit


def test_overflow_check_counts_the_held_accumulator():
    cfg = cfg_(k_max=4096)
    k = 4096
    b = np.full((k, 2), -128, np.int8)
    a = np.zeros((2, k), np.int8)
    half = ((1 << 31) - 1) // 2                # two jobs of bound 'half' fit, one more does not
    bias = np.array([half - (1 << 26), 0], np.int32)
    j1 = GemmJob(a, b, bias=bias, acc_out=True)
    j2 = GemmJob(a, b, bias=bias, acc_in=True)
    encode_many([j1, j2], cfg)
    j2b = GemmJob(a, b, bias=bias + np.array([2, 0], np.int32), acc_in=True)
    with pytest.raises(ValueError, match="job 1: Accumulator overflow possible in column n=0: "
                                         r".* including the held accumulator"):
        encode_many([j1, j2b], cfg)


def test_overflow_boundary_with_wide_accumulator():
    # k_max = 131072 → W = 33: 128*128*K = 2**31 needs the 33rd bit and is accepted
    cfg = cfg_(k_max=131072)
    k = 131072
    b = np.full((k, 1), -128, np.int8)
    s = encode(GemmJob(np.zeros((1, k), np.int8), b, bias=np.array([(1 << 31) - 1], np.int32)),
               cfg)
    assert s.bound == [(1 << 32) - 1]


# ------------------------------------------------------------------------------------------
# attention jobs (docs/attention.md)

from types import SimpleNamespace  # noqa: E402

from npugen.sim.driver import AttentionJob, decode_rows, encode_attention  # noqa: E402
from npugen.sim.golden.attention import AttentionParams  # noqa: E402


def _att_cfg(d=2, heads=2, q_block=2, N_max=8, F=16, G=16):
    return SimpleNamespace(name="att", attention=SimpleNamespace(d=d, heads=heads,
                                                                 q_block=q_block),
                           osi8=SimpleNamespace(F=F, B=4, N_max=N_max, G=G))


_ATT_PARAMS = AttentionParams(score_multiplier=1 << 30, score_shift=-5, c=0.25, zp_v=-3,
                              out_multiplier=(1 << 30) + 7, out_shift=2, zp_o=4)


def _att_job(**kw):
    q = np.array([[1, -2], [3, 4], [-128, 127]], dtype=np.int8)
    k = np.array([[5, 6], [-7, 8]], dtype=np.int8)
    v = np.array([[9, -10], [11, 12]], dtype=np.int8)
    mask = np.array([[True, False], [True, True], [False, True]])
    args = dict(q=q, k=k, v=v, params=_ATT_PARAMS, mask=mask, causal=True, head=1,
                tag=0x5A)
    args.update(kw)
    return AttentionJob(**args)


def test_attention_command_word_by_hand():
    s = encode_attention(_att_job(), _att_cfg())
    want = (0x02 | 2 << 8 | 1 << 16 | 1 << 17 | 0x5A << 24 | 3 << 32 | 2 << 56 | 1 << 80
            | 0xFD << 88 | 4 << 96)
    assert s.cmd == want
    assert isa.unpack(isa.ATT_CMD_FIELDS, s.cmd) == {
        "opcode": 2, "version": 2, "causal": 1, "load_lut": 1, "tag": 0x5A, "m": 3, "n": 2,
        "head": 1, "zp_v": -3, "zp_o": 4}
    assert s.cmd & isa.reserved_mask(isa.ATT_CMD_FIELDS, isa.CMD_WIDTH) == 0


def test_attention_parameter_block_and_lut():
    s = encode_attention(_att_job(), _att_cfg())
    assert s.param[:4].tolist() == [1 << 30, 0xFB, (1 << 30) + 7, 2]
    assert len(s.param) == isa.ATT_PARAM_BEATS + isa.ATT_LUT_BEATS
    assert s.param[4:].tolist() == golden.make_lut(0.25, 16)
    assert s.param_last.tolist() == [False] * 259 + [True]
    assert s.param_bytes()[:8] == (1 << 30).to_bytes(4, "little") + b"\xfb\x00\x00\x00"
    s = encode_attention(_att_job(load_lut=False), _att_cfg())
    assert s.param.tolist() == [1 << 30, 0xFB, (1 << 30) + 7, 2]
    assert isa.unpack(isa.ATT_CMD_FIELDS, s.cmd)["load_lut"] == 0


def test_attention_row_beats_in_stream_order():
    """Two query blocks (2 + 1 queries): Q rows per block, then the keys and values of each
    block, tuser = the block's mask bits (0 for lanes p >= mq; causal is not in tuser)."""
    job = _att_job()
    s = encode_attention(job, _att_cfg())
    assert s.q.data.view(np.int8).tolist() == job.q.tolist()
    assert s.q.last.tolist() == [False, True, True]
    assert s.k.data.view(np.int8).tolist() == job.k.tolist() * 2
    assert s.v.data.view(np.int8).tolist() == job.v.tolist() * 2
    assert s.k.last.tolist() == s.v.last.tolist() == [False, True, False, True]
    assert s.k.user.tolist() == [0b11, 0b10, 0b00, 0b01]
    assert s.v.user is None and s.q.user is None
    assert s.k.frames() == [(bytes([5, 6, 249, 8]), [3, 3, 2, 2]),
                            (bytes([5, 6, 249, 8]), [0, 0, 1, 1])]
    assert s.q.frames() == [(bytes([1, 254, 3, 4]), None), (bytes([128, 127]), None)]
    assert s.m == 3 and s.d == 2
    # a padding mask (N,) applies to every query; None attends everything
    s = encode_attention(_att_job(mask=np.array([False, True])), _att_cfg())
    assert s.k.user.tolist() == [0b00, 0b11, 0b00, 0b01]
    s = encode_attention(_att_job(mask=None), _att_cfg(q_block=3))
    assert s.k.user.tolist() == [0b111, 0b111] and s.q.last.tolist() == [False, False, True]
    # an extra tlast cuts a frame
    assert len(s.k.frames(last=np.array([True, True]))) == 2


def test_decode_rows():
    assert decode_rows(bytes([1, 255, 128, 0]), 2, 2).tolist() == [[1, -1], [-128, 0]]
    with pytest.raises(ValueError, match="Expected 2 output rows of 2 bytes"):
        decode_rows(b"\x00" * 3, 2, 2)


@pytest.mark.parametrize("kw,cfg,msg", [
    (dict(q=np.zeros((3, 2), np.int16)), {}, "q must have dtype int8, not int16"),
    (dict(q=np.zeros(2, np.int8)), {}, r"q must be a 2-D \(M, d\) array"),
    (dict(q=np.zeros((3, 3), np.int8)), {},
     r"q must have d = 2 columns \(the design's attention.d\), not shape \(3, 3\)"),
    (dict(k=np.zeros((2, 3), np.int8)), {}, "k must have d = 2 columns like q"),
    (dict(v=np.zeros((3, 2), np.int8)), {}, r"v must have the shape \(N, d\) = \(2, 2\) of k"),
    (dict(q=np.zeros((0, 2), np.int8), mask=None), {}, "q must hold at least one query"),
    (dict(k=np.zeros((0, 2), np.int8), v=np.zeros((0, 2), np.int8), mask=None), {},
     "k must hold at least one key"),
    (dict(k=np.zeros((9, 2), np.int8), v=np.zeros((9, 2), np.int8), mask=None), {},
     "N = 9 keys exceed this design's N_max = 8"),
    (dict(head=2), {}, r"head must be in \[0, 1\], not 2"),
    (dict(head=-1), {}, r"head must be in \[0, 1\], not -1"),
    (dict(tag=256), {}, r"tag must be in \[0, 255\], not 256"),
    (dict(F=20), {}, "F = 20 differs from this design's F = 16"),
    (dict(mask=np.ones((3, 2), np.int8)), {}, "mask must be a bool array"),
    (dict(mask=np.ones((2, 2), bool)), {}, r"mask must have shape \(M, N\) = \(3, 2\)"),
    (dict(params=None), {}, "params must be an AttentionParams, not NoneType"),
    (dict(params=dataclasses.replace(_ATT_PARAMS, out_shift=50)), {},
     r"params: out_shift = 50 gives k = 31 \+ G - out_shift = -3 for G = 16"),
])
def test_attention_validation_messages(kw, cfg, msg):
    with pytest.raises(ValueError, match=msg) as info:
        encode_attention(_att_job(**kw), _att_cfg(**cfg))
    assert "\n" not in str(info.value)


def test_attention_needs_an_attention_section():
    with pytest.raises(ValueError, match=r"configuration 'plain' has no \[attention\] section"):
        encode_attention(_att_job(), SimpleNamespace(name="plain", attention=None))


# -- sim.run.make_job: per-channel multiplier/shift --------------------------------------------

@pytest.mark.parametrize("multiplier,shift,message", [
    (np.ones((2, 2), np.int64) << 30, 0,
     r"multiplier must be one value or N = 4 values \(one per output channel\), not shape \(2, 2\)"),
    (1 << 30, np.zeros(3, np.int64),
     r"shift must be one value or N = 4 values \(one per output channel\), not shape \(3,\)"),
    (np.full(4, 2.0 ** 30), 0, "multiplier must be integers, not dtype float64"),
    (1 << 30, np.zeros(4, bool), "shift must be integers, not dtype bool"),
    (1 << 30, np.full(4, 2**64 - 1, np.uint64), "shift = 18446744073709551615 is out of range"),
])
def test_make_job_rejects_malformed_multipliers(multiplier, shift, message):
    from npugen.sim import run
    a = np.zeros((2, 3), np.int8)
    b = np.zeros((3, 4), np.int8)
    with pytest.raises(ValueError, match=f"^{message}$"):
        run.make_job(a, b, multiplier=multiplier, shift=shift)


def test_make_job_broadcasts_one_multiplier_to_every_channel():
    from npugen.sim import run
    job = run.make_job(np.zeros((2, 3), np.int8), np.zeros((3, 4), np.int8),
                       multiplier=np.array([1 << 30]), shift=-2)
    assert job.multiplier.tolist() == [1 << 30] * 4 and job.shift.tolist() == [-2] * 4


def test_make_job_names_a_wrong_length_scale_b():
    from npugen.sim import run
    with pytest.raises(ValueError, match=r"^scale_b must be one value or N = 4 values \(one per "
                                         r"output channel\), not shape \(2,\)$"):
        run.make_job(np.zeros((2, 3), np.int8), np.zeros((3, 4), np.int8), scale_a=0.1,
                     scale_b=np.array([0.5, 0.25], np.float32), scale_out=0.3)
