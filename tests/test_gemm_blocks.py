# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the GEMM engine's sub-components (hw/gemm.py), each alone.

The whole engine is tested in tests/test_gemm_amaranth.py (golden model) and in the cocotb
regression; these tests hold each block to its own contract (docstring): the command decoder's
error codes and status, the parameter slots, each sequencer's beat order and tag timing for a
small job, the accumulator's sums against a model of its memory, the result queue's beats and
credits. Expected values come from the ISA (hw/isa.py, docs/isa.md) and from small Python
models written here, never from the blocks themselves.
"""

from __future__ import annotations

import inspect
import random
from dataclasses import dataclass

import pytest
import numpy as np
from amaranth.hdl import Fragment, Module, Value
from amaranth.lib import wiring
from amaranth.sim import Simulator

from npugen.hw import gemm, isa, pe, requant, systolic, top
from npugen.hw.config import GemmConfig
from npugen.hw.gemm import (Accumulator, CommandDecoder, GemmEngine, OutputStationarySequencer,
                            ParameterSlots, ResultQueue, WeightStationarySequencer)
from npugen.hw.requant import ROUNDING_MODES, Requantizer
from npugen.sim import perfmodel
from npugen.sim.golden import requantize


def _simulate(dut, *testbenches) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in testbenches:
        sim.add_testbench(tb)
    sim.run()


def _s8(v: int) -> int:
    """``v`` as a signed 8-bit value."""
    v &= 0xFF
    return v - 256 if v & 0x80 else v


def _wrap(v: int, bits: int) -> int:
    """``v`` modulo ``2**bits``, as a signed value."""
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


# -- command decoder --------------------------------------------------------------------------

K_MAX, ACC_DEPTH, COLS = 100, 8, 3


def _cmd(**fields) -> int:
    base = dict(opcode=isa.Opcode.GEMM, version=isa.ISA_VERSION, m=1, k=1, n=1)
    base.update(fields)
    return isa.pack(isa.CMD_FIELDS, **base)


_RESERVED = isa.reserved_mask(isa.CMD_FIELDS, isa.CMD_WIDTH)
_RESERVED_BITS = [b for b in range(isa.CMD_WIDTH) if _RESERVED >> b & 1]

MALFORMED = [
    ("opcode 0", _cmd(opcode=0), isa.Error.BAD_OPCODE),
    ("opcode attention", _cmd(opcode=isa.Opcode.ATTENTION), isa.Error.BAD_OPCODE),
    ("opcode and version", _cmd(opcode=0xFF, version=0), isa.Error.BAD_OPCODE),
    ("version 0", _cmd(version=0), isa.Error.BAD_VERSION),
    ("another version", _cmd(version=isa.ISA_VERSION + 1), isa.Error.BAD_VERSION),
    *[(f"reserved bit {b}", _cmd() | (1 << b), isa.Error.BAD_RESERVED) for b in _RESERVED_BITS],
    ("reserved before shape", _cmd(m=0) | (1 << _RESERVED_BITS[0]), isa.Error.BAD_RESERVED),
    ("m 0", _cmd(m=0), isa.Error.BAD_SHAPE),
    ("k 0", _cmd(k=0), isa.Error.BAD_SHAPE),
    ("n 0", _cmd(n=0), isa.Error.BAD_SHAPE),
    ("k above k_max", _cmd(k=K_MAX + 1), isa.Error.BAD_SHAPE),
    ("k largest", _cmd(k=2 ** 24 - 1), isa.Error.BAD_SHAPE),
    ("clamp", _cmd(requant=1, act_min=5, act_max=4), isa.Error.BAD_CLAMP),
    ("clamp extremes", _cmd(requant=1, act_min=127, act_max=-128), isa.Error.BAD_CLAMP),
    ("shape before clamp", _cmd(k=0, requant=1, act_min=5, act_max=4), isa.Error.BAD_SHAPE),
    ("acc_out m above acc_depth", _cmd(acc_out=1, m=ACC_DEPTH + 1), isa.Error.BAD_ACC),
    ("acc_out n above cols", _cmd(acc_out=1, n=COLS + 1), isa.Error.BAD_ACC),
    ("acc_in with nothing held", _cmd(acc_in=1), isa.Error.BAD_ACC),
    ("acc_out with requant", _cmd(acc_out=1, requant=1), isa.Error.BAD_ACC),
    ("clamp before acc", _cmd(acc_out=1, requant=1, act_min=1, act_max=0), isa.Error.BAD_CLAMP),
]


@dataclass
class _Status:
    error: int
    tag: int
    cycles: int      # the status beat's field
    offered: int     # cycles from the command beat to the status beat, counted by the bench


def _run_decoder(commands, *, done_after=None, frame_at=None):
    """Send ``commands`` one at a time to a CommandDecoder; for an accepted one, raise ``done``
    ``done_after[i]`` cycles after ``start`` (and ``frame_err`` at ``frame_at[i]`` cycles, if
    given). Returns the statuses and, per command, the ``new_job`` fields at ``start`` (or
    None) and the ``job`` fields the cycle after."""
    dut = CommandDecoder(cols=COLS, k_max=K_MAX, acc_depth=ACC_DEPTH)
    done_after = done_after or [3] * len(commands)
    frame_at = frame_at or [None] * len(commands)
    statuses, jobs = [], []

    def fields(ctx, view):
        return {name: ctx.get(view[name]) for name in gemm.JOB_LAYOUT.members}

    async def tb(ctx):
        ctx.set(dut.status.ready, 1)
        for i, word in enumerate(commands):
            ctx.set(dut.cmd.payload, word)
            ctx.set(dut.cmd.valid, 1)
            assert ctx.get(dut.cmd.ready)
            started = ctx.get(dut.start)
            new = fields(ctx, dut.new_job) if started else None
            await ctx.tick()
            ctx.set(dut.cmd.valid, 0)
            job = fields(ctx, dut.job) if started else None
            jobs.append((new, job))
            t = 1
            while not ctx.get(dut.status.valid):
                assert not ctx.get(dut.cmd.ready), "a command taken while a job runs"
                ctx.set(dut.done, int(started and t == done_after[i]))
                ctx.set(dut.frame_err, int(started and t == frame_at[i]))
                await ctx.tick()
                ctx.set(dut.done, 0)
                ctx.set(dut.frame_err, 0)
                t += 1
                assert t < 100, "no status"
            st = isa.unpack(isa.STATUS_FIELDS, ctx.get(dut.status.payload))
            assert st["version"] == isa.ISA_VERSION
            statuses.append(_Status(st["error"], st["tag"], st["cycles"], t))
            await ctx.tick()

    _simulate(dut, tb)
    return statuses, jobs


@pytest.mark.parametrize("word,error", [(w, e) for _, w, e in MALFORMED],
                         ids=[name for name, _, _ in MALFORMED])
def test_decoder_rejects_each_malformed_field(word, error):
    """Each malformed command gets its error code (docs/isa.md's order of checks), starts no
    job, and its status is offered the next cycle with ``cycles`` = 1; a valid command after
    it is accepted."""
    tag = 0x5A
    statuses, jobs = _run_decoder([word | (tag << isa.CMD_FIELDS["tag"].lsb), _cmd()])
    assert statuses[0] == _Status(int(error), tag, 1, CommandDecoder.latency)
    assert jobs[0] == (None, None)
    assert statuses[1].error == isa.Error.OK


def test_decoder_job_fields_status_and_cycles():
    """An accepted command's fields appear on ``new_job`` at ``start`` and on ``job`` from the
    next cycle (signed fields signed); its status comes ``latency`` cycles after ``done``,
    carrying the tag, and ``cycles`` is the distance from the command beat to the status."""
    want = dict(requant=1, acc_in=0, acc_out=0, m=70000, k=K_MAX, n=513, zp_out=-128,
                act_min=-7, act_max=127)
    statuses, jobs = _run_decoder([_cmd(tag=200, **want), _cmd(tag=1)], done_after=[17, 1])
    assert jobs[0] == (want, want)
    assert statuses[0] == _Status(isa.Error.OK, 200, 18, 17 + CommandDecoder.latency)
    assert statuses[1] == _Status(isa.Error.OK, 1, 2, 1 + CommandDecoder.latency)


def test_decoder_clamp_only_checked_for_requant_jobs():
    statuses, _ = _run_decoder([_cmd(act_min=5, act_max=4)])
    assert statuses[0].error == isa.Error.OK


def test_decoder_frame_error_and_held_accumulator():
    """``frame_err`` in any cycle of a job makes its status FRAME. An acc_out job that ends
    without one holds its shape: the next acc_in job of that shape is accepted, one of another
    shape is not, and any accepted job drops the hold."""
    cmds = [
        _cmd(acc_out=1, m=4, n=2),            # held (4, 2)
        _cmd(acc_in=1, m=4, n=3),             # BAD_ACC: other shape
        _cmd(acc_in=1, m=5, n=2),             # BAD_ACC: other shape
        _cmd(acc_in=1, acc_out=1, m=4, n=2),  # OK, holds (4, 2) again
        _cmd(acc_in=1, m=4, n=2),             # OK, then nothing held
        _cmd(acc_in=1, m=4, n=2),             # BAD_ACC
        _cmd(acc_out=1, m=4, n=2),            # FRAME: nothing held
        _cmd(acc_in=1, m=4, n=2),             # BAD_ACC
        _cmd(m=2),                            # FRAME raised in the cycle of done
    ]
    frame_at = [None, None, None, None, None, None, 2, None, 3]
    statuses, _ = _run_decoder(cmds, done_after=[3] * len(cmds), frame_at=frame_at)
    E = isa.Error
    assert [s.error for s in statuses] == [E.OK, E.BAD_ACC, E.BAD_ACC, E.OK, E.OK, E.BAD_ACC,
                                           E.FRAME, E.BAD_ACC, E.FRAME]


# -- parameter slots --------------------------------------------------------------------------

def _param_beats(bias, mult, shift):
    """The ``PARAM_BEATS`` beats of a parameter block, lane-sliced (docs/isa.md)."""
    beats = []
    for b in range(isa.PARAM_BEATS):
        if b < 4:
            beats.append([_s8(v >> (8 * b)) for v in bias])
        elif b < 8:
            beats.append([_s8(v >> (8 * (b - 4))) for v in mult])
        else:
            beats.append(list(shift))
    return beats


def test_parameter_slots_write_read_busy_free():
    C = 3
    dut = ParameterSlots(cols=C)
    rng = random.Random(7)
    blocks = [([rng.randint(-2 ** 31, 2 ** 31 - 1) for _ in range(C)],
               [rng.randint(1 << 30, (1 << 31) - 1) for _ in range(C)],
               [rng.randint(-31, 30) for _ in range(C)]) for _ in range(2)]
    blocks[0][0][0] = -(2 ** 31)

    async def tb(ctx):
        for s, block in enumerate(blocks):
            for b, lanes in enumerate(_param_beats(*block)):
                ctx.set(dut.w.en, 1)
                ctx.set(dut.w.slot, s)
                ctx.set(dut.w.beat, b)
                for c in range(C):
                    ctx.set(dut.w.data[c], lanes[c])
                assert ctx.get(dut.w.busy) == (0b01 if s else 0), "busy before the last beat"
                await ctx.tick()
            ctx.set(dut.w.en, 0)
            assert ctx.get(dut.w.busy) == (0b11 if s else 0b01)
        for s, (bias, mult, shift) in enumerate(blocks):
            ctx.set(dut.r.slot, s)
            ctx.set(dut.q.slot, 1 - s)
            assert [ctx.get(dut.r.bias[c]) for c in range(C)] == bias
            assert [ctx.get(dut.q.mult[c]) for c in range(C)] == blocks[1 - s][1]
            assert [ctx.get(dut.q.shift[c]) for c in range(C)] == blocks[1 - s][2]
        ctx.set(dut.r.free, 0b01)
        assert ctx.get(dut.w.busy) == 0b11
        await ctx.tick()
        ctx.set(dut.r.free, 0)
        assert ctx.get(dut.w.busy) == 0b10
        ctx.set(dut.q.free, 0b10)      # the drain's release frees a slot as well
        await ctx.tick()
        ctx.set(dut.q.free, 0)
        assert ctx.get(dut.w.busy) == 0

    _simulate(dut, tb)


# -- sequencers -------------------------------------------------------------------------------

def _pack(lanes, keep, last):
    n = len(lanes)
    word = 0
    for i, v in enumerate(lanes):
        word |= (v & 0xFF) << (8 * i)
    return word | (keep << (8 * n)) | (int(last) << (9 * n))


def _chunks(total, step):
    """``(start, size)`` of each piece of ``total`` cut into pieces of at most ``step``."""
    return [(s, min(step, total - s)) for s in range(0, total, step)]


class _SeqBench:
    """Drives a sequencer's streams (always valid), plays the decoder and the parameter slots
    (never busy) and records, per cycle, the array inputs, parameter writes and tags."""

    def __init__(self, dut, job, act_beats, wgt_beats, reserved=lambda cycle: 0):
        self.dut, self.job = dut, job
        self.act_beats, self.wgt_beats = act_beats, wgt_beats
        self.reserved = reserved
        self.log = []   # (cycle, dict of sampled values)

    async def _push(self, ctx, port, beats):
        for word in beats:
            ctx.set(Value.cast(port.payload), word)
            ctx.set(port.valid, 1)
            await ctx.tick().until(port.ready)
        ctx.set(port.valid, 0)

    async def tb_act(self, ctx):
        await ctx.tick()
        await self._push(ctx, self.dut.act, self.act_beats)

    async def tb_wgt(self, ctx):
        await ctx.tick()
        await self._push(ctx, self.dut.wgt, self.wgt_beats)

    async def tb_ctrl(self, ctx):
        d = self.dut
        await ctx.tick()
        ctx.set(d.start, 1)
        await ctx.tick()
        ctx.set(d.start, 0)
        for name, v in self.job.items():
            ctx.set(d.job[name], v)

    def monitor(self, signals, cycles):
        """A testbench that sets ``reserved`` and logs ``signals`` for ``cycles`` cycles."""
        values = [Value.cast(v) for v in signals.values()]

        async def tb(ctx):
            for cycle in range(cycles):
                ctx.set(self.dut.reserved, self.reserved(cycle))
                sampled = await ctx.tick().sample(*values)
                self.log.append((cycle, dict(zip(signals, sampled[2:]))))
        return tb


def _tag_of(value: int, layout) -> dict:
    out = {}
    for name, field in layout:
        out[name] = (value >> field.offset) & ((1 << field.width) - 1)
    return out


def _ws_expect(R, C, D, m, k, n, act, wgt_rows, params):
    """The ws job's parameter writes, weight writes and issued rows, in order, from the
    stream order of docs/isa.md. ``act[(j, c0, k0)]`` are the chunk's activation rows (full R
    lanes as sent), ``wgt_rows[(j, c0, k0)]`` its weight rows, ``params[j]`` its parameter
    beats."""
    pw, ww, rows = [], [], []
    tile = 0                          # K tiles so far: the weight set alternates
    nt = _chunks(n, C)
    for j, (n0, nc) in enumerate(nt):
        pw += [(j % 2, b, params[j][b]) for b in range(isa.PARAM_BEATS)]
        ch = _chunks(m, D)
        for ci, (m0, mc) in enumerate(ch):
            kt = _chunks(k, R)
            for ki, (k0, kc) in enumerate(kt):
                buf = tile % 2
                ww += [(r, buf, wgt_rows[(j, m0, k0)][r]) for r in range(kc)]
                last_k = ki == len(kt) - 1
                end = last_k and ci == len(ch) - 1
                for r in range(mc):
                    lanes = [v if i < kc else 0 for i, v in enumerate(act[(j, m0, k0)][r])]
                    tag = dict(valid=1, m=r, rows=1, nc=nc, first=int(ki == 0), last=int(last_k),
                               pslot=j % 2, ntile_end=int(end and r == mc - 1),
                               job_end=int(end and r == mc - 1 and j == len(nt) - 1))
                    rows.append((lanes, buf, tag))
                tile += 1
    return pw, ww, rows


@pytest.mark.parametrize("tag_delay", [0, 3])
@pytest.mark.parametrize("m,k,n", [(3, 3, 3), (1, 1, 1), (5, 2, 2)])
def test_ws_sequencer_beat_order(m, k, n, tag_delay):
    """A small job on a 2 x 2 ws sequencer with two-row chunks: the parameter blocks go to
    alternating slots, each K tile's weights to alternating weight sets, each row of A to
    the array with ``sel`` on its tile's set and its lanes past ``kc`` cleared (even with
    ``keep`` set), and each row's tag comes ``tag_delay`` cycles after the row."""
    R, C, D = 2, 2, 2
    dut = WeightStationarySequencer(rows=R, cols=C, acc_depth=D, res_depth=4,
                                    tag_delay=tag_delay)
    assert dut.latency == tag_delay
    rng = random.Random(m * 100 + k * 10 + n)
    act, wgt_rows, params = {}, {}, {}
    act_beats, wgt_beats = [], []
    for j, (n0, nc) in enumerate(_chunks(n, C)):
        params[j] = [[rng.randint(-128, 127) for _ in range(C)] for _ in range(isa.PARAM_BEATS)]
        wgt_beats += [_pack(b, (1 << C) - 1, i == isa.PARAM_BEATS - 1)
                      for i, b in enumerate(params[j])]
        for m0, mc in _chunks(m, D):
            for k0, kc in _chunks(k, R):
                w = [[rng.randint(-128, 127) if c < nc else 0 for c in range(C)]
                     for _ in range(kc)]
                wgt_rows[(j, m0, k0)] = w
                wgt_beats += [_pack(w[r], (1 << nc) - 1, r == kc - 1) for r in range(kc)]
                a = [[rng.randint(-128, 127) for _ in range(R)] for _ in range(mc)]
                act[(j, m0, k0)] = a
                # keep set on every lane: the sequencer clears lanes past kc itself.
                act_beats += [_pack(a[r], (1 << R) - 1, r == mc - 1) for r in range(mc)]
    pw, ww, rows = _ws_expect(R, C, D, m, k, n, act, wgt_rows, params)

    job = dict(m=m, k=k, n=n, requant=0, acc_in=0, acc_out=0, zp_out=0, act_min=0, act_max=0)
    bench = _SeqBench(dut, job, act_beats, wgt_beats)
    arr, par = dut.array, dut.param
    signals = {"act_take": dut.act.valid & dut.act.ready, "a": arr.a, "sel": arr.sel,
               "w_en": arr.w_en, "w_row": arr.w_row, "w_buf": arr.w_buf, "w_data": arr.w_data,
               "p_en": par.en, "p_slot": par.slot, "p_beat": par.beat, "p_data": par.data,
               "tag": dut.tag, "reserve": dut.reserve, "frame": dut.frame_err}
    cycles = 60 + 4 * len(act_beats) + 2 * len(wgt_beats)
    _simulate(dut, bench.tb_ctrl, bench.tb_act, bench.tb_wgt,
              bench.monitor(signals, cycles))

    def lanes(v, n_):
        return [_s8(v >> (8 * i)) for i in range(n_)]

    got_pw = [(s["p_slot"], s["p_beat"], lanes(s["p_data"], C)) for _, s in bench.log if s["p_en"]]
    got_ww = [(s["w_row"], s["w_buf"], lanes(s["w_data"], C)) for _, s in bench.log if s["w_en"]]
    issued = [(c, lanes(s["a"], R), s["sel"], s["reserve"]) for c, s in bench.log if s["act_take"]]
    layout = dut.tag.shape()
    tags = [(c, _tag_of(s["tag"], layout)) for c, s in bench.log if s["tag"] & 1]
    assert got_pw == [(s_, b, d) for s_, b, d in pw]
    assert got_ww == ww
    assert [(a, sel) for _, a, sel, _ in issued] == [(a, buf) for a, buf, _ in rows]
    assert [t for _, t in tags] == [t for _, _, t in rows]
    assert [c for c, _ in tags] == [c + tag_delay for c, *_ in issued]
    assert [res for *_, res in issued] == [t["last"] for _, _, t in rows]
    assert not any(s["frame"] for _, s in bench.log)


def test_ws_sequencer_waits_for_credits():
    """A row of the last K tile is not taken while ``res_depth`` entries are reserved; a row
    of an earlier K tile is."""
    R, C = 2, 1
    dut = WeightStationarySequencer(rows=R, cols=C, acc_depth=4, res_depth=2, tag_delay=0)
    job = dict(m=2, k=4, n=1, requant=0, acc_in=0, acc_out=0, zp_out=0, act_min=0, act_max=0)
    wgt = [_pack([1], 1, i == isa.PARAM_BEATS - 1) for i in range(isa.PARAM_BEATS)]
    wgt += [_pack([r + 1], 1, r == 1) for r in range(2)] * 2
    act = [_pack([1, 1], 3, r == 1) for r in range(2)] * 2
    full_until = 40
    bench = _SeqBench(dut, job, act, wgt, reserved=lambda c: 2 if c < full_until else 0)
    signals = {"take": dut.act.valid & dut.act.ready, "tag": dut.tag}
    _simulate(dut, bench.tb_ctrl, bench.tb_act, bench.tb_wgt,
              bench.monitor(signals, 80))
    layout = dut.tag.shape()
    taken = [(c, _tag_of(s["tag"], layout)["last"]) for c, s in bench.log if s["take"]]
    assert [last for _, last in taken] == [0, 0, 1, 1]
    assert all(c < full_until for c, last in taken if not last)
    assert all(c >= full_until for c, last in taken if last)


@pytest.mark.parametrize("tag_delay", [0, 2])
@pytest.mark.parametrize("m,k,n", [(3, 3, 3), (5, 1, 1), (2, 4, 2)])
def test_os_sequencer_beat_order(m, k, n, tag_delay):
    """A small job on a 2 x 2 os sequencer: each K step takes one beat of each stream into
    the array (A lanes past ``mr`` cleared, ``last`` on the tile's final step), final steps
    are at least ``rows`` cycles apart, and each tile's rows get their tags ``tag_delay + i``
    cycles after its final step."""
    R, C = 2, 2
    dut = OutputStationarySequencer(rows=R, cols=C, acc_depth=8, res_depth=4,
                                    tag_delay=tag_delay)
    rng = random.Random(m * 100 + k * 10 + n)
    act_beats, wgt_beats, steps, tiles = [], [], [], []
    nt = _chunks(n, C)
    for j, (n0, nc) in enumerate(nt):
        wgt_beats += [_pack([rng.randint(-128, 127) for _ in range(C)], (1 << C) - 1,
                            i == isa.PARAM_BEATS - 1) for i in range(isa.PARAM_BEATS)]
        mt = _chunks(m, R)
        for ti, (m0, mr) in enumerate(mt):
            for s in range(k):
                a = [rng.randint(-128, 127) for _ in range(R)]
                b = [rng.randint(-128, 127) for _ in range(C)]
                act_beats.append(_pack(a, (1 << R) - 1, s == k - 1))
                wgt_beats.append(_pack(b, (1 << C) - 1, s == k - 1))
                steps.append(([v if i < mr else 0 for i, v in enumerate(a)], b, int(s == k - 1)))
            end = ti == len(mt) - 1
            for i in range(mr):
                tiles.append(dict(valid=1, m=m0 + i, rows=mr, nc=nc, first=1, last=1,
                                  pslot=j % 2, ntile_end=int(end and i == mr - 1),
                                  job_end=int(end and i == mr - 1 and j == len(nt) - 1)))
    job = dict(m=m, k=k, n=n, requant=0, acc_in=0, acc_out=0, zp_out=0, act_min=0, act_max=0)
    bench = _SeqBench(dut, job, act_beats, wgt_beats)
    arr = dut.array
    signals = {"valid": arr.valid, "last": arr.last, "a": arr.a, "b": arr.b,
               "take_a": dut.act.valid & dut.act.ready, "take_w": dut.wgt.valid & dut.wgt.ready,
               "tag": dut.tag, "reserve": dut.reserve, "frame": dut.frame_err}
    _simulate(dut, bench.tb_ctrl, bench.tb_act, bench.tb_wgt,
              bench.monitor(signals, 100 + 3 * len(wgt_beats)))

    def lanes(v, n_):
        return [_s8(v >> (8 * i)) for i in range(n_)]

    got = [(c, lanes(s["a"], R), lanes(s["b"], C), s["last"], s["reserve"])
           for c, s in bench.log if s["valid"]]
    assert all(s["take_a"] == s["valid"] for _, s in bench.log if s["take_w"] or s["take_a"])
    assert [(a, b, last) for _, a, b, last, _ in got] == steps
    finals = [c for c, *_, last, _ in got if last]
    assert all(b - a >= R for a, b in zip(finals, finals[1:]))
    layout = dut.tag.shape()
    tags = [(c, _tag_of(s["tag"], layout)) for c, s in bench.log if s["tag"] & 1]
    assert [t for _, t in tags] == tiles
    want_cycles = []
    tile_rows = [t["rows"] for t in tiles if t["m"] % R == 0]
    for c, rows in zip(finals, tile_rows):
        want_cycles += [c + tag_delay + i for i in range(rows)]
    assert [c for c, _ in tags] == want_cycles
    assert [res for *_, last, res in got if last] == tile_rows
    assert not any(s["frame"] for _, s in bench.log)


def test_sequencer_flags_a_misplaced_tlast():
    """A weight beat with ``tlast`` where the stream order has none raises ``frame_err``."""
    dut = OutputStationarySequencer(rows=1, cols=1, acc_depth=2, res_depth=1, tag_delay=0)
    job = dict(m=1, k=2, n=1, requant=0, acc_in=0, acc_out=0, zp_out=0, act_min=0, act_max=0)
    wgt = [_pack([0], 1, i == 3) for i in range(isa.PARAM_BEATS)]   # tlast on beat 3, not 8
    wgt += [_pack([1], 1, s == 1) for s in range(2)]
    act = [_pack([1], 1, s == 1) for s in range(2)]
    bench = _SeqBench(dut, job, act, wgt)
    signals = {"frame": dut.frame_err, "take": dut.wgt.valid & dut.wgt.ready}
    _simulate(dut, bench.tb_ctrl, bench.tb_act, bench.tb_wgt,
              bench.monitor(signals, 40))
    takes = [s["frame"] for _, s in bench.log if s["take"]]
    assert takes == [0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0]   # beat 3 and beat 8 (tlast missing)


# -- accumulator ------------------------------------------------------------------------------

class _AccDut(wiring.Component):
    """An Accumulator with real parameter slots behind it (the slots loaded by the bench)."""

    def __init__(self, **kw):
        self.acc = Accumulator(**kw)
        self.slots = ParameterSlots(cols=kw["cols"])
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.acc = self.acc
        m.submodules.slots = self.slots
        wiring.connect(m, self.acc.params, self.slots.r)
        return m


@pytest.mark.parametrize("flags", [dict(requant=0, acc_in=0, acc_out=0),
                                   dict(requant=1, acc_in=1, acc_out=0),
                                   dict(requant=0, acc_in=1, acc_out=1)],
                         ids=["raw", "requant_acc_in", "acc_in_out"])
@pytest.mark.parametrize("isolate", [False, True], ids=["", "iso"])
def test_accumulator_against_a_memory_model(flags, isolate):
    """Random rows (accumulator row, first/last, slot, bubbles) back to back, the same row
    often coming round at once: every sum equals the model's
    ``c + (first ? bias + (acc_in ? acc : 0) : acc)`` modulo 2**acc_width, every write-back
    is seen by the next use of the row, and the flags come out beside it at s1,
    ``tag_lead + latency`` cycles after the tag."""
    R, C, W, D, CW = 2, 2, 32, 4, 17
    top_ = _AccDut(rows=R, cols=C, acc_width=W, acc_depth=D, c_width=CW, isolate=isolate)
    dut, slots = top_.acc, top_.slots
    rng = random.Random(sum(flags.values()) * 7 + flags["requant"])
    blocks = [([rng.randint(-2 ** 31, 2 ** 31 - 1) for _ in range(C)],
               [rng.randint(1 << 30, (1 << 31) - 1) for _ in range(C)],
               [rng.randint(-31, 30) for _ in range(C)]) for _ in range(2)]
    T = 120
    rows = []
    for t in range(T):
        if rng.random() < 0.2:
            rows.append(None)
        else:
            rows.append(dict(m=rng.choice([0, 0, 1, 3]), first=int(rng.random() < 0.3),
                             last=int(rng.random() < 0.4), pslot=rng.randint(0, 1),
                             ntile_end=int(rng.random() < 0.1), job_end=int(rng.random() < 0.1),
                             nc=rng.randint(1, C),
                             c=[rng.randint(-(1 << (CW - 1)), (1 << (CW - 1)) - 1)
                                for _ in range(C)]))
    lead, lat = Accumulator.tag_lead, Accumulator.latency
    layout = dut.tag.shape()

    def tag_word(row):
        if row is None:
            return 0
        word = 1
        for name in ("m", "rows", "nc", "first", "last", "pslot", "ntile_end", "job_end"):
            f = layout[name]
            word |= (row.get(name, 1) & ((1 << f.width) - 1)) << f.offset
        return word

    got = {}

    async def tb(ctx):
        for s, block in enumerate(blocks):
            for b, lanes in enumerate(_param_beats(*block)):
                ctx.set(slots.w.en, 1)
                ctx.set(slots.w.slot, s)
                ctx.set(slots.w.beat, b)
                for c in range(C):
                    ctx.set(slots.w.data[c], lanes[c])
                await ctx.tick()
        ctx.set(slots.w.en, 0)
        for name, v in flags.items():
            ctx.set(dut.job[name], v)
        for t in range(T + lead + lat + 1):
            ctx.set(Value.cast(dut.tag), tag_word(rows[t]) if t < T else 0)
            row = rows[t - lead] if 0 <= t - lead < T else None
            for c in range(C):
                ctx.set(dut.c[c], row["c"][c] if row else rng.randint(-5, 5))
            *_, s1_tag, s1_sum, fin, held, free = await ctx.tick().sample(
                *(Value.cast(v) for v in (dut.o_tag, dut.o_sum)),
                dut.o_finished, dut.o_held, dut.params.free)
            # Sampled at the end of cycle t: s1 holds the row whose tag was given at
            # t - lead - lat.
            got[t - lead - lat] = dict(tag=_tag_of(s1_tag, layout),
                                       sum=[_wrap(s1_sum >> (W * c), W) for c in range(C)],
                                       fin=fin, held=held, free=free)

    _simulate(top_, tb)
    mem = {}
    for t, row in enumerate(rows):
        g = got[t]
        if row is None:
            assert not g["tag"]["valid"] and not (g["fin"] or g["held"] or g["free"]), t
            continue
        bias = blocks[row["pslot"]][0]
        prev = mem.get(row["m"], [0] * C)     # the memory starts at zero (init=[])
        total = [_wrap(row["c"][c] + (bias[c] + (prev[c] if flags["acc_in"] else 0)
                                      if row["first"] else prev[c]), W) for c in range(C)]
        finished = row["last"] and not flags["acc_out"]
        if not finished:
            mem[row["m"]] = total
        assert g["sum"] == total, t
        assert g["tag"]["m"] == row["m"] and g["tag"]["nc"] == row["nc"]
        assert g["fin"] == int(finished)
        assert g["held"] == int(row["job_end"] and flags["acc_out"] == 1)
        # a requant job's slot is freed by the result queue's drain, not here
        assert g["free"] == (0 if flags["requant"] else row["ntile_end"] << row["pslot"])


@pytest.mark.parametrize("isolate", [False, True])
def test_accumulator_isolation_holds_the_read_address(isolate):
    """With operand isolation the accumulator memory's read address stays on the last row
    whose read was used, through a bubble and through a row that starts from the bias
    (``first`` without ``acc_in``), so the memory's read multiplexers do not switch. Seen at
    the ports: a bubble's (unused) sum at s1 is its ``c`` plus the word at the held address
    (row 3), where without isolation it is the word at the bubble tag's address, row 0."""
    R, C, W, D, CW = 2, 1, 32, 4, 17
    top_ = _AccDut(rows=R, cols=C, acc_width=W, acc_depth=D, c_width=CW, isolate=isolate)
    dut = top_.acc
    layout = dut.tag.shape()
    lead, lat = Accumulator.tag_lead, Accumulator.latency

    def tag_word(m, first):
        word = 1 | (m << layout["m"].offset) | (first << layout["first"].offset)
        return word | (1 << layout["nc"].offset)

    # row 0 := 100 and row 3 := 3000 (bias 0: the slots are zero), then row 3 is read
    # (3000 + 7), then a first row of row 1 (its read unused), then bubbles; the last one
    # comes after every write-back has reached the memory.
    seq = [(tag_word(0, 1), 100), (tag_word(3, 1), 3000), (tag_word(3, 0), 7),
           (tag_word(1, 1), 5), (0, 11), (0, 11), (0, 11), (0, 13)]
    sums = {}

    async def tb(ctx):
        for name in ("requant", "acc_in", "acc_out"):
            ctx.set(dut.job[name], 0)
        ctx.set(dut.job.acc_out, 1)          # every row is written back
        for t in range(len(seq) + lead + lat + 1):
            ctx.set(Value.cast(dut.tag), seq[t][0] if t < len(seq) else 0)
            row = seq[t - lead] if 0 <= t - lead < len(seq) else None
            ctx.set(dut.c[0], row[1] if row else 0)
            *_, s1_sum = await ctx.tick().sample(dut.o_sum[0])
            sums[t - lead - lat] = s1_sum

    _simulate(top_, tb)
    assert [sums[t] for t in range(4)] == [100, 3000, 3007, 5]
    # the last bubble: its c plus the word at the address the read port holds
    assert sums[7] == (3007 if isolate else 100) + 13


# -- result queue -----------------------------------------------------------------------------

class _QueueDut(wiring.Component):
    """A ResultQueue with real parameter slots behind it (loaded by the bench)."""

    def __init__(self, **kw):
        self.res = ResultQueue(**kw)
        self.slots = ParameterSlots(cols=kw["cols"])
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.res = self.res
        m.submodules.slots = self.slots
        wiring.connect(m, self.res.params, self.slots.q)
        return m


@pytest.mark.parametrize("requant,lanes,rounding,seed", [
    (False, 3, "single", 1), (True, 3, "single", 2), (True, 1, "double", 3),
    (True, 2, "single", 4), (True, 2, "double", 5)])
def test_result_queue_beats_and_credits(requant, lanes, rounding, seed):
    """Rows given at random cycles (within the credits) come out in order, one beat each,
    while the consumer's ``ready`` is random: a raw row's lanes sign-extended and cleared from
    ``nc`` on, ``keep`` covering ``nc`` lanes; a requant row's ``nc`` columns requantized with
    their parameter slot's multiplier and shift (the golden model, ``requantize``), packed in
    the low ``nc`` bytes, the rest 0, ``keep`` covering ``nc`` bytes. ``last`` where given;
    ``reserved`` counts reservations less beats taken; ``o_job_end`` marks a taken last beat;
    the drain frees a requant row's slot with the last slice of an ``ntile_end`` row, so
    ``ceil(nc / lanes)`` cycles after it reached the head at the earliest."""
    R, C, W, depth = 2, 5, 36, 4
    top_ = _QueueDut(rows=R, cols=C, acc_width=W, depth=depth, lanes=lanes, rounding=rounding)
    dut, slots = top_.res, top_.slots
    L = dut.lane_bits
    assert L == 40
    rng = random.Random(seed)
    blocks = [([0] * C, [rng.choice([0, 1 << 30, (1 << 31) - 1, rng.randint(1 << 30, (1 << 31) - 1)])
                         for _ in range(C)],
               [rng.randint(-31, 30) for _ in range(C)]) for _ in range(2)]
    zp, lo, hi = rng.randint(-20, 20), rng.randint(-128, -60), rng.randint(60, 127)
    N = 30
    written, taken, frees = [], [], []

    async def tb_in(ctx):
        for s, block in enumerate(blocks):
            for b, beat in enumerate(_param_beats(*block)):
                ctx.set(slots.w.en, 1)
                ctx.set(slots.w.slot, s)
                ctx.set(slots.w.beat, b)
                for c in range(C):
                    ctx.set(slots.w.data[c], beat[c])
                await ctx.tick()
        ctx.set(slots.w.en, 0)
        ctx.set(dut.job.requant, int(requant))
        ctx.set(dut.job.zp_out, zp)
        ctx.set(dut.job.act_min, lo)
        ctx.set(dut.job.act_max, hi)
        given = 0
        while given < N:
            go = ctx.get(dut.reserved) < depth and rng.random() < 0.7
            nc, last = rng.randint(1, C), int(given == N - 1 or rng.random() < 0.2)
            pslot, end = rng.randint(0, 1), int(rng.random() < 0.3)
            row = [rng.choice([rng.randint(-(1 << (W - 1)), (1 << (W - 1)) - 1),
                               rng.randint(-3000, 3000)]) for _ in range(C)]
            for port, v in ((dut.i_nc, nc), (dut.i_last, last), (dut.i_pslot, pslot),
                            (dut.i_ntile_end, end), (dut.reserve, int(go)),
                            (dut.i_valid, int(go))):
                ctx.set(port, v)
            for c in range(C):
                ctx.set(dut.i_sum[c], row[c])
            if go:
                written.append((row, nc, last, pslot, end))
                given += 1
            await ctx.tick()
        for port in (dut.i_valid, dut.reserve):
            ctx.set(port, 0)

    async def tb_out(ctx):
        t = outstanding = 0
        while len(taken) < N:
            ready = int(rng.random() < 0.6)
            ctx.set(dut.o.ready, ready)
            _, _, valid, word, keep, last, res, reserve, job_end, free = await ctx.tick().sample(
                dut.o.valid, dut.o.payload.data, dut.o.payload.keep, dut.o.payload.last,
                dut.reserved, dut.reserve, dut.o_job_end, dut.params.free)
            assert res == outstanding, t
            take = int(valid and ready)
            outstanding += reserve - take
            assert job_end == int(take and last)
            if free:
                frees.append(free)
            if take:
                taken.append((word, keep, last))
            t += 1
            assert t < 5000, "stuck"

    _simulate(top_, tb_in, tb_out)
    assert len(taken) == N
    for (row, nc, last, pslot, end), (word, keep, got_last) in zip(written, taken):
        assert got_last == last
        if requant:
            want = requantize(np.array([row[:nc]], dtype=object), blocks[pslot][1][:nc],
                              blocks[pslot][2][:nc], zp, lo, hi, rounding=rounding)[0]
            assert keep == (1 << nc) - 1
            assert [_s8(word >> (8 * c)) for c in range(nc)] == [int(v) for v in want]
            assert word >> (8 * nc) == 0
        else:
            assert keep == (1 << (nc * L // 8)) - 1
            assert [_wrap(word >> (L * c), L) for c in range(C)] == \
                [v if c < nc else 0 for c, v in enumerate(row)]
    want_frees = [1 << p for _, _, _, p, e in written if e] if requant else []
    assert frees == want_frees


@pytest.mark.parametrize("requant,lanes,nc,want", [
    (False, 1, 3, ResultQueue.latency),
    (True, 3, 3, ResultQueue.latency + 1 + 6),
    (True, 1, 3, ResultQueue.latency + 1 + 6 + 2),
    (True, 2, 3, ResultQueue.latency + 1 + 6 + 1),
    (True, 2, 2, ResultQueue.latency + 1 + 6)])
def test_result_queue_first_beat_latency(requant, lanes, nc, want):
    """A row written into the empty queue is offered ``latency`` (3) cycles later when raw;
    a requant row of ``nc`` columns 1 (the drain's slice register) + 6 (the requantizer,
    single rounding) +
    ``ceil(nc / lanes) - 1`` later."""
    top_ = _QueueDut(rows=1, cols=3, acc_width=32, depth=2, lanes=lanes)
    dut = top_.res

    async def tb(ctx):
        ctx.set(dut.job.requant, int(requant))
        ctx.set(dut.job.act_min, -128)
        ctx.set(dut.job.act_max, 127)
        ctx.set(dut.o.ready, 0)
        ctx.set(dut.reserve, 1)
        ctx.set(dut.i_valid, 1)
        for c in range(3):
            ctx.set(dut.i_sum[c], -3)
        ctx.set(dut.i_nc, nc)
        ctx.set(dut.i_last, 1)
        await ctx.tick()
        ctx.set(dut.i_valid, 0)
        ctx.set(dut.reserve, 0)
        for cycle in range(1, 20):
            if ctx.get(dut.o.valid):
                break
            await ctx.tick()
        assert cycle == want
        assert ctx.get(dut.o.payload.last)
        if not requant:
            assert ctx.get(dut.o.payload.data) & 0xFFFF_FFFF == (-3) & 0xFFFF_FFFF

    _simulate(top_, tb)


# -- constructors, metadata -------------------------------------------------------------------

@pytest.mark.parametrize("make,exc,msg", [
    (lambda: CommandDecoder(cols=0, k_max=1, acc_depth=2), ValueError,
     "Cols must be an integer from 1 to 64, not 0"),
    (lambda: CommandDecoder(cols=2, k_max=2 ** 24, acc_depth=2), ValueError,
     "k_max must be an integer from 1 to 16777215, not 16777216"),
    (lambda: CommandDecoder(cols=2, k_max=1, acc_depth=3), ValueError,
     "Accumulator depth must be a power of two >= 2, not 3"),
    (lambda: CommandDecoder(cols=2, k_max=True, acc_depth=2), TypeError,
     "k_max must be an integer, not True"),
    (lambda: ParameterSlots(cols="4"), TypeError, "Cols must be an integer, not '4'"),
    (lambda: WeightStationarySequencer(rows=2, cols=2, acc_depth=4, res_depth=1, tag_delay=0),
     ValueError, "Result FIFO depth must be an integer >= 2, not 1"),
    (lambda: OutputStationarySequencer(rows=2, cols=2, acc_depth=4, res_depth=2, tag_delay=-1),
     ValueError, "Tag delay must be an integer >= 0, not -1"),
    (lambda: OutputStationarySequencer(rows=2, cols=65, acc_depth=4, res_depth=2, tag_delay=0),
     ValueError, "Cols must be an integer from 1 to 64, not 65"),
    (lambda: Accumulator(rows=2, cols=2, acc_width=32, acc_depth=4, c_width=33), ValueError,
     "Array output width must be an integer from 2 to 32, not 33"),
    (lambda: Accumulator(rows=2, cols=2, acc_width=16, acc_depth=4, c_width=8), ValueError,
     "Accumulator width must be an integer from 17 to 64, not 16"),
    (lambda: ResultQueue(rows=2, cols=2, acc_width=32, depth=4, lanes=1.0), TypeError,
     "Requantizer lanes must be an integer, not 1.0"),
    (lambda: ResultQueue(rows=2, cols=2, acc_width=32, depth=4, lanes=3), ValueError,
     "Requantizer lanes must be an integer from 1 to 2, not 3"),
    (lambda: GemmEngine(rows=2, cols=2, requant_lanes=0), ValueError,
     "Requantizer lanes must be an integer from 1 to cols (2), not 0"),
    (lambda: Requantizer.latency_for("nearest"), ValueError,
     "Rounding must be one of ('single', 'double'), not 'nearest'"),
    (lambda: Requantizer(lanes=1, acc_width=32, pp_bits=4), ValueError,
     "Partial-product bits must be one of (8, 16), not 4"),
    (lambda: Requantizer(lanes=1, acc_width=32, pp_bits=16.0), ValueError,
     "Partial-product bits must be one of (8, 16), not 16.0"),
    (lambda: GemmEngine(rows=2, cols=2, requant_pp_bits=32), ValueError,
     "Partial-product bits must be one of (8, 16), not 32"),
    (lambda: Requantizer.product_stages(12), ValueError,
     "Partial-product bits must be one of (8, 16), not 12"),
])
def test_init_wrong_parameters(make, exc, msg):
    with pytest.raises(exc, match=msg.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_engine_latencies_from_its_blocks():
    """The manifest's latencies, hand-computed: the array R + C + 1 (its input register, the
    skew, the last PE's registers), R + C without the input register; the back end one cycle to s1
    (the FIFO write), the FIFO's two and its head register's one to the head, plus the drain's
    slice register and the requantizer's seven (single rounding, 8-bit partial products: the
    products, their pairs, their sum, two shift stages, the rounding, the clamp), six with
    16-bit partial products."""
    for rows, cols, dataflow in ((2, 3, "ws"), (4, 2, "os")):
        e = GemmEngine(rows=rows, cols=cols, dataflow=dataflow, k_max=64)
        Fragment.get(e, None)     # its sub-components were made in hw/gemm.py: use them
        assert e.latencies == {"array": rows + cols + 1, "back_end_raw": 4,
                               "back_end_requant": 12, "requant": 8}
        e = GemmEngine(rows=rows, cols=cols, dataflow=dataflow, k_max=64, requant_pp_bits=16)
        Fragment.get(e, None)
        assert e.latencies == {"array": rows + cols + 1, "back_end_raw": 4,
                               "back_end_requant": 11, "requant": 7}
        e = GemmEngine(rows=rows, cols=cols, dataflow=dataflow, k_max=64, array_input_reg=False)
        Fragment.get(e, None)
        assert e.latencies["array"] == rows + cols


def test_requant_latency_defined_once():
    """The cycle model's requantizer latency is the hardware's (hw/requant.py), for both
    partial-product widths (hand-counted stages)."""
    from types import SimpleNamespace
    for r in ROUNDING_MODES:
        assert perfmodel.REQUANT_LATENCY[r] == Requantizer.latency_for(r) \
            == Requantizer(lanes=1, acc_width=32, rounding=r).latency \
            == {"single": 6, "double": 5}[r]
        for bits, want in ((16, {"single": 6, "double": 5}), (8, {"single": 7, "double": 6})):
            cfg = SimpleNamespace(rounding=r, requant_pp_bits=bits)
            assert perfmodel.requant_latency(cfg) == Requantizer.latency_for(r, bits) \
                == Requantizer(lanes=1, acc_width=32, rounding=r, pp_bits=bits).latency \
                == want[r]
    with pytest.raises(ValueError, match="Partial-product bits"):
        Requantizer.latency_for("single", 12)


def _components(module):
    return [obj for _, obj in inspect.getmembers(module, inspect.isclass)
            if issubclass(obj, wiring.Component) and obj.__module__ == module.__name__]


def test_every_component_names_its_report_block():
    want = {"WeightStationaryPE": "array", "OutputStationaryPE": "array",
            "WeightStationaryArray": "array", "OutputStationaryArray": "array",
            "Requantizer": "requantizer"}
    seen = []
    for module in (pe, systolic, requant, gemm, top):
        for cls in _components(module):
            seen.append(cls.__name__)
            assert cls.report_block == want.get(cls.__name__, "control"), cls
    assert {"CommandDecoder", "ParameterSlots", "WeightStationarySequencer",
            "OutputStationarySequencer", "Accumulator", "ResultQueue", "GemmEngine",
            "NpuTop"} <= set(seen)


@pytest.mark.parametrize("dataflow", ["ws", "os"])
def test_engine_uses_its_dataflows_blocks(dataflow):
    cfg = GemmConfig(rows=2, cols=2, dataflow=dataflow, k_max=16, acc_depth=4, res_depth=4)
    e = GemmEngine.from_config(cfg)
    Fragment.get(e, None)
    seq, arr = {"ws": (WeightStationarySequencer, systolic.WeightStationaryArray),
                "os": (OutputStationarySequencer, systolic.OutputStationaryArray)}[dataflow]
    assert type(e._sequencer) is seq and type(e._array) is arr
    assert e._sequencer.latency + Accumulator.tag_lead == e._array.latency
