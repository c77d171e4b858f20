"""The GEMM engine: command decode, tile sequencing, systolic array, accumulation, requantization.

The binary interface (command, status, stream orders) is ``docs/isa.md``; the numerics are
``docs/numerics.md``. :class:`GemmEngine` only wires its sub-components, in the order a job's
data passes through them (``docs/architecture.md`` has the block diagram):

- :class:`CommandDecoder`: checks each command beat (error codes), keeps the running job's
  fields and the held-accumulator state, counts the job's cycles and sends its status;
- :class:`ParameterSlots`: the two parameter slots (per-column bias, multiplier and shift of a
  column tile), written from the weight stream and freed by the back end;
- :class:`WeightStationarySequencer` or :class:`OutputStationarySequencer` (the design's
  dataflow picks one): takes the activation and weight streams apart into parameter blocks,
  weight tiles and rows (or K steps) for the array, tags each row of C with where it goes, and
  takes result credits;
- the systolic array (:mod:`npugen.hw.systolic`);
- the back end: :class:`Accumulator` (adds the bias and the accumulator memory's row, writes
  partial sums back) and :class:`ResultQueue` (the result FIFO, its credits, the drain of
  requant rows through the :class:`~npugen.hw.requant.Requantizer`'s ``requant_lanes`` lanes,
  and the result stream).

Flow control: input streams are never stalled by the array itself. A cycle with no input beat is
a bubble that flows through the array tagged invalid. Results never stall the array either: a row
that will produce a result is only injected while the result FIFO has room reserved for it
(credits), so ``m_axis_res`` backpressure turns into input backpressure, never into data loss.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, EnableInserter, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import isa
from .config import Dataflow, GemmConfig, derived_acc_width
from .requant import ROUNDING_MODES, Requantizer
from .systolic import OutputStationaryArray, WeightStationaryArray, check_dims

__all__ = ["GemmEngine", "CommandDecoder", "ParameterSlots", "WeightStationarySequencer",
           "OutputStationarySequencer", "Accumulator", "ResultQueue", "JOB_LAYOUT",
           "beat_layout", "tag_layout", "param_write_signature",
           "param_read_signature", "param_drain_signature"]


def _field_shape(field: isa.Field):
    return signed(field.width) if field.signed else unsigned(field.width)


#: A command beat's fields where ``hw/isa.py`` puts them (reserved bits are in no field).
_CMD_LAYOUT = data.FlexibleLayout(isa.CMD_WIDTH, {
    name: data.Field(_field_shape(f), f.lsb) for name, f in isa.CMD_FIELDS.items()})

#: The fields of a command that the engine keeps while its job runs (``hw/isa.py``).
JOB_LAYOUT = data.StructLayout({
    name: _field_shape(isa.CMD_FIELDS[name])
    for name in ("requant", "acc_in", "acc_out", "m", "k", "n", "zp_out", "act_min", "act_max")})


def beat_layout(lanes: int) -> data.StructLayout:
    """One beat of an int8 input stream (``act``, ``wgt``): ``data`` (``lanes`` signed int8
    lanes), ``keep`` (one bit per lane; a lane whose bit is 0 reads as 0) and ``last``."""
    return data.StructLayout({"data": data.ArrayLayout(signed(8), lanes),
                              "keep": unsigned(lanes), "last": unsigned(1)})


def tag_layout(rows: int, cols: int, acc_depth: int) -> data.StructLayout:
    """The tag that travels beside a row of C (or, before an os tile is expanded into rows,
    beside the tile): where the row goes and what finishes with it."""
    return data.StructLayout({
        "valid": 1,
        "m": unsigned((acc_depth - 1).bit_length()),  # accumulator memory row
        "rows": unsigned(rows.bit_length()),   # os: valid rows of the tile
        "nc": unsigned(cols.bit_length()),     # valid columns of the tile
        "first": 1,      # first K tile: start from the bias
        "last": 1,       # last K tile: the row is finished
        "pslot": 1,      # parameter slot
        "ntile_end": 1,  # the column tile's last row: frees its parameter slot
        "job_end": 1,    # the job's last row
    })


def _check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    """``value`` if it is an integer in ``[lo, hi]``; else ``TypeError`` or ``ValueError``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f"from {lo} to {hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be an integer {bound}, not {value!r}")
    return value


def _check_depth(name: str, value) -> int:
    _check_int(name, value, 2)
    if value & (value - 1):
        raise ValueError(f"{name} must be a power of two >= 2, not {value!r}")
    return value


def _delay(m: Module, value, cycles: int, name: str):
    """``value`` delayed by ``cycles`` registers ``<name>_d1`` ... (``value`` itself for 0)."""
    for d in range(cycles):
        reg = Signal(value.shape(), name=f"{name}_d{d + 1}")
        m.d.sync += reg.eq(value)
        value = reg
    return value


# -- command decoder --------------------------------------------------------------------------

class CommandDecoder(wiring.Component):
    """Command decoder and job state: checks each command beat, keeps the running job's fields,
    counts its cycles and sends its status (``docs/isa.md``).

    A command beat is taken only while no job runs and no status waits. It is checked in the
    cycle it is taken, in this order: ``opcode`` (``BAD_OPCODE``), ``version``
    (``BAD_VERSION``), reserved bits (``BAD_RESERVED``), ``m``, ``k``, ``n`` zero or
    ``k > k_max`` (``BAD_SHAPE``), a requant job's ``act_min > act_max`` (``BAD_CLAMP``),
    then the accumulator rules (``BAD_ACC``: ``acc_in``/``acc_out`` with ``m > acc_depth`` or
    ``n > cols``; ``acc_in`` unless the accumulator held matches ``m`` and ``n``; ``acc_out``
    with ``requant``). The first failing check names the error. A rejected command starts no
    job; its status (``cycles`` = 1) is offered the next cycle. An accepted one raises
    :attr:`start` for that cycle and runs until :attr:`done`; its status is offered the cycle
    after ``done``: ``FRAME`` if :attr:`frame_err` was raised during the job, else ``OK``.
    A finished ``acc_out`` job without a framing error leaves its ``m`` and ``n`` as the held
    accumulator (which only that job's ``acc_in`` successor can use: any accepted job drops it).

    Parameters
    ----------
    cols : int
        Columns of the array (``n`` of an ``acc_in``/``acc_out`` job), 1 to 64.
    k_max : int
        Largest ``k`` a command may ask for, 1 to 2**24 - 1.
    acc_depth : int
        Rows of the accumulator memory (largest ``m`` of an ``acc_in``/``acc_out`` job).

    Members
    -------
    cmd : In(stream.Signature(unsigned(128)))
        Command beats (``isa.CMD_FIELDS``).
    status : Out(stream.Signature(unsigned(64)))
        One status beat per command (``isa.STATUS_FIELDS``); ``cycles`` counts ``aclk`` cycles
        from the cycle the command was taken to the cycle the status is first offered,
        saturating at 2**32 - 1.
    start : Out(1)
        One cycle: a command passed every check and was taken; its job runs from the next cycle.
    new_job : Out(JOB_LAYOUT)
        The fields of the command beat on :attr:`cmd` (combinational; meaningful with
        :attr:`start`). ``m``, ``k``, ``n`` unsigned, ``zp_out``, ``act_min``, ``act_max``
        signed int8.
    job : Out(JOB_LAYOUT)
        The running job's fields: registered at :attr:`start`, held until the next one.
    done : In(1)
        One cycle: the running job is complete (its last result beat taken, or for ``acc_out``
        its last row written).
    frame_err : In(1)
        A data beat's ``tlast`` was not where the stream order puts it (any cycle of the job).

    Raises
    ------
    TypeError, ValueError
        For a parameter of the wrong type or value.
    """

    #: The area report's block (npugen.hw.blocks).
    report_block = "control"
    #: Cycles from a rejected command beat, or from :attr:`done`, to its status beat.
    latency = 1

    def __init__(self, *, cols: int, k_max: int, acc_depth: int):
        self.cols = _check_int("Cols", cols, 1, 64)
        self.k_max = _check_int("k_max", k_max, 1, 2 ** 24 - 1)
        self.acc_depth = _check_depth("Accumulator depth", acc_depth)
        super().__init__({
            "cmd": In(stream.Signature(unsigned(isa.CMD_WIDTH))),
            "status": Out(stream.Signature(unsigned(isa.STATUS_WIDTH))),
            "start": Out(1),
            "new_job": Out(JOB_LAYOUT),
            "job": Out(JOB_LAYOUT),
            "done": In(1),
            "frame_err": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        word = self.cmd.payload
        f = data.View(_CMD_LAYOUT, word)
        reserved = isa.reserved_mask(isa.CMD_FIELDS, isa.CMD_WIDTH)
        m.d.comb += [self.new_job[name].eq(f[name]) for name in JOB_LAYOUT.members]
        job = self.job
        job_tag = Signal(8)
        # The accumulator left by the last acc_out job, if any: its shape.
        held = Signal()
        held_m = Signal(24)
        held_n = Signal(24)

        err = Signal(8)
        acc_job = f.acc_in | f.acc_out
        with m.If(f.opcode != isa.Opcode.GEMM):
            m.d.comb += err.eq(isa.Error.BAD_OPCODE)
        with m.Elif(f.version != isa.ISA_VERSION):
            m.d.comb += err.eq(isa.Error.BAD_VERSION)
        with m.Elif((word & reserved) != 0):
            m.d.comb += err.eq(isa.Error.BAD_RESERVED)
        with m.Elif((f.m == 0) | (f.k == 0) | (f.n == 0) | (f.k > self.k_max)):
            m.d.comb += err.eq(isa.Error.BAD_SHAPE)
        with m.Elif(f.requant & (f.act_min > f.act_max)):
            m.d.comb += err.eq(isa.Error.BAD_CLAMP)
        with m.Elif((acc_job & ((f.m > self.acc_depth) | (f.n > self.cols)))
                    | (f.acc_in & ~(held & (held_m == f.m) & (held_n == f.n)))
                    | (f.acc_out & f.requant)):
            m.d.comb += err.eq(isa.Error.BAD_ACC)

        frame_err = Signal()      # sticky per job
        cycles = Signal(32)
        status_err = Signal(8)
        with m.FSM(name="job"):
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += cycles.eq(1)
                    m.d.sync += job_tag.eq(f.tag)
                    with m.If(err != 0):
                        m.d.sync += status_err.eq(err)
                        m.next = "STATUS"
                    with m.Else():
                        m.d.comb += self.start.eq(1)
                        m.d.sync += job.eq(self.new_job)
                        m.d.sync += [held.eq(0), frame_err.eq(0)]
                        m.next = "RUN"
            with m.State("RUN"):
                m.d.sync += cycles.eq(cycles + (cycles != 0xFFFF_FFFF))
                with m.If(self.frame_err):
                    m.d.sync += frame_err.eq(1)
                with m.If(self.done):
                    framing = frame_err | self.frame_err
                    m.d.sync += status_err.eq(Mux(framing, isa.Error.FRAME, isa.Error.OK))
                    with m.If(job.acc_out & ~framing):
                        m.d.sync += [held.eq(1), held_m.eq(job.m), held_n.eq(job.n)]
                    m.next = "STATUS"
            with m.State("STATUS"):
                m.d.comb += [
                    self.status.valid.eq(1),
                    self.status.payload.eq(Cat(status_err, Const(isa.ISA_VERSION, 8),
                                               job_tag, Const(0, 8), cycles)),
                ]
                with m.If(self.status.ready):
                    m.next = "IDLE"
        return m


# -- parameter slots --------------------------------------------------------------------------

def param_write_signature(cols: int) -> wiring.Signature:
    """The write side of :class:`ParameterSlots`, as its writer (a sequencer) sees it.

    ``en``: store ``data`` (one int8 lane per column) as beat ``beat`` of slot ``slot``'s
    parameter block (``docs/isa.md``: beats 0-3 the bias bytes, 4-7 the multiplier bytes,
    little-endian, 8 the shift); ``busy`` (in): bit ``s`` is set while slot ``s`` holds a block
    the back end has not finished with.
    """
    return wiring.Signature({
        "en": Out(1), "slot": Out(1), "beat": Out(range(isa.PARAM_BEATS)),
        "data": Out(data.ArrayLayout(signed(8), cols)),
        "busy": In(2),
    })


def param_read_signature(cols: int) -> wiring.Signature:
    """The bias read side of :class:`ParameterSlots`, as its reader (the accumulator) sees it.

    ``slot``: which slot ``bias`` (in, combinational) shows; ``free``: bit ``s`` releases slot
    ``s`` (a raw job's column tile has passed its last row's bias add).
    """
    return wiring.Signature({
        "slot": Out(1), "free": Out(2),
        "bias": In(data.ArrayLayout(signed(32), cols)),
    })


def param_drain_signature(cols: int) -> wiring.Signature:
    """The requantizer-parameter read side of :class:`ParameterSlots`, as its reader (the
    result queue's drain) sees it.

    ``slot``: which slot ``mult`` and ``shift`` (in, combinational) show; ``free``: bit ``s``
    releases slot ``s`` (a requant job's column tile has sent its last row's last slice into
    the requantizer).
    """
    return wiring.Signature({
        "slot": Out(1), "free": Out(2),
        "mult": In(data.ArrayLayout(signed(32), cols)),
        "shift": In(data.ArrayLayout(signed(8), cols)),
    })


class ParameterSlots(wiring.Component):
    """Two parameter slots, each holding a column tile's per-column bias, requantizer
    multiplier ``M0`` and shift, so that the next column tile's block loads while the
    current one is used.

    A slot is written one beat at a time through :attr:`w` (``isa.PARAM_BEATS`` beats, in
    any order; writing its last beat, ``isa.PARAM_BEATS - 1``, marks the slot busy from the
    next cycle) and stays busy until the back end frees it through :attr:`r` or :attr:`q`
    (the slot is free from the cycle after). A writer waits for ``busy`` to clear before it
    writes a slot. The reads are combinational: ``r.bias`` shows slot ``r.slot``, ``q.mult``
    and ``q.shift`` slot ``q.slot``.

    Parameters
    ----------
    cols : int
        Columns (lanes), 1 to 64.

    Members
    -------
    w : In(param_write_signature(cols))
    r : In(param_read_signature(cols))
        ``bias`` signed int32 per column (the accumulator).
    q : In(param_drain_signature(cols))
        ``mult`` signed int32 and ``shift`` signed int8 per column (the requantizer's drain).

    Raises
    ------
    TypeError, ValueError
        For a parameter of the wrong type or value.
    """

    #: The area report's block (npugen.hw.blocks).
    report_block = "control"

    def __init__(self, *, cols: int):
        self.cols = _check_int("Cols", cols, 1, 64)
        super().__init__({"w": In(param_write_signature(cols)),
                          "r": In(param_read_signature(cols)),
                          "q": In(param_drain_signature(cols))})

    def elaborate(self, platform):
        m = Module()
        C = self.cols
        bias = [[Signal(signed(32), name=f"bias{s}_{c}") for c in range(C)] for s in range(2)]
        mult = [[Signal(signed(32), name=f"mult{s}_{c}") for c in range(C)] for s in range(2)]
        shift = [[Signal(signed(8), name=f"shift{s}_{c}") for c in range(C)] for s in range(2)]
        busy = Signal(2)
        busy_set = Signal(2)
        m.d.sync += busy.eq((busy | busy_set) & ~(self.r.free | self.q.free))
        m.d.comb += self.w.busy.eq(busy)

        w = self.w
        with m.If(w.en):
            with m.If(w.beat == isa.PARAM_BEATS - 1):
                m.d.comb += busy_set.eq(Mux(w.slot, 0b10, 0b01))
            for s in range(2):
                with m.If(w.slot == s):
                    with m.Switch(w.beat):
                        for b in range(isa.PARAM_BEATS):
                            with m.Case(b):
                                for c in range(C):
                                    if b < 4:
                                        dst = bias[s][c].as_unsigned()[8 * b:8 * b + 8]
                                    elif b < 8:
                                        dst = mult[s][c].as_unsigned()[8 * (b - 4):8 * (b - 4) + 8]
                                    else:
                                        dst = shift[s][c]
                                    m.d.sync += dst.eq(w.data[c])

        r, q = self.r, self.q
        for c in range(C):
            m.d.comb += [r.bias[c].eq(Mux(r.slot, bias[1][c], bias[0][c])),
                         q.mult[c].eq(Mux(q.slot, mult[1][c], mult[0][c])),
                         q.shift[c].eq(Mux(q.slot, shift[1][c], shift[0][c]))]
        return m


# -- sequencers -------------------------------------------------------------------------------

class _Countdown:
    """A sequencer's 24-bit "left" counter (rows, columns or K left of a job) with
    ``min(left, step)`` and ``left <= step`` kept in registers beside it, so that the
    comparisons are made when the counter is loaded, not on the paths that read it (the
    2 x 2 ECP5 critical path ran from ``is_k_left`` through ``min(k, R)`` into PE (0, 0)).

    The next value, ``left - step``, and its clip and flag are kept in registers too, so that
    :meth:`advance` only moves them across and makes the one after: a subtraction and a
    comparison side by side, then a multiplexer (the 4 x 4 ECP5 critical path ran from
    ``is_k_left`` through the subtraction, then the comparison, into ``is_k_left_clip``:
    11.2 ns). ``fresh`` is set by :meth:`load` and cleared by :meth:`advance`: ``left`` still
    holds the value loaded (``left == job.k`` without a 24-bit comparison).

    With ``lanes``, ``lanes[r]`` is the register ``r < min(left, step)`` (a thermometer code of
    the clip), made like the clip: the issuers' lane masks, so that no comparison stands
    between the clip register and an activation lane's multiplexer in front of the array (the
    4 x 4 ECP5 critical path after the change above ran from ``is_k_left_clip`` through
    ``r < kc`` into PE (0, 0)'s multiplier: 10.5 ns).

    ``load`` must be the only way the counter is written."""

    def __init__(self, name: str, step: int, lanes: bool = False):
        self.step = step
        self.lanes = Signal(step, name=f"{name}_lanes") if lanes else None
        self._next_lanes = Signal(step, name=f"{name}_next_lanes") if lanes else None
        self.left = Signal(24, name=name)
        self.clip = Signal(range(step + 1), name=f"{name}_clip")
        self.last = Signal(init=1, name=f"{name}_last")     # consistent with left = 0
        self.fresh = Signal(name=f"{name}_fresh")
        # left - step (mod 2**24) and, while left > step, its clip and flag; when
        # left <= step no advance reads them, so their value then does not matter.
        self._next = Signal(24, name=f"{name}_next", init=(-step) % (1 << 24))
        self._next_clip = Signal(range(step + 1), name=f"{name}_next_clip")
        self._next_last = Signal(init=1, name=f"{name}_next_last")

    def _clip_last(self, v, bound):
        """``(min(v - bound + step, step), v <= bound)`` for ``v >= bound - step``: the
        difference in the clip's few bits only, beside the comparison."""
        low = (v - (bound - self.step))[:len(self.clip)] if bound > self.step else v[:len(self.clip)]
        return Mux(v <= bound, low, self.step), v <= bound

    def load(self, m, value):
        """``left <= value`` next cycle (``value`` in [0, 2**24)), with its clip and flag."""
        s = self.step
        clip, last = self._clip_last(value, s)
        nclip, nlast = self._clip_last(value, 2 * s)
        m.d.sync += [self.left.eq(value), self.clip.eq(clip), self.last.eq(last),
                     self.fresh.eq(1), self._next.eq(value - s),
                     self._next_clip.eq(nclip), self._next_last.eq(nlast)]
        if self.lanes is not None:
            m.d.sync += [self.lanes.eq(self._thermometer(clip)),
                         self._next_lanes.eq(self._thermometer(nclip))]

    def _thermometer(self, clip):
        return Cat(clip > r for r in range(self.step))

    def advance(self, m):
        """``left <= left - step`` (only when ``~last``)."""
        s = self.step
        nclip, nlast = self._clip_last(self._next, 2 * s)
        m.d.sync += [self.left.eq(self._next), self.clip.eq(self._next_clip),
                     self.last.eq(self._next_last), self.fresh.eq(0),
                     self._next.eq(self._next - s),
                     self._next_clip.eq(nclip), self._next_last.eq(nlast)]
        if self.lanes is not None:
            m.d.sync += [self.lanes.eq(self._next_lanes),
                         self._next_lanes.eq(self._thermometer(nclip))]


class _Sequencer(wiring.Component):
    """What both sequencers share: their constructor, the members other than ``array``, the
    lane masks and the ``PARAM_WAIT``/``PARAM`` states (see the subclasses)."""

    #: The area report's block (npugen.hw.blocks).
    report_block = "control"

    def __init__(self, *, rows: int, cols: int, acc_depth: int, res_depth: int,
                 tag_delay: int, array_members: dict):
        check_dims(rows, cols)
        self.rows, self.cols = rows, cols
        self.acc_depth = _check_depth("Accumulator depth", acc_depth)
        self.res_depth = _check_int("Result FIFO depth", res_depth, rows)
        self.tag_delay = _check_int("Tag delay", tag_delay, 0)
        super().__init__({
            "act": In(stream.Signature(beat_layout(rows))),
            "wgt": In(stream.Signature(beat_layout(cols))),
            "start": In(1),
            "job": In(JOB_LAYOUT),
            "param": Out(param_write_signature(cols)),
            "array": Out(wiring.Signature(array_members)),
            "tag": Out(tag_layout(rows, cols, acc_depth)),
            "reserved": In(range(res_depth + 1)),
            "reserve": Out(range(rows + 1)),
            "frame_err": Out(1),
        })

    @property
    def latency(self) -> int:
        """Cycles from a row of C's injection (ws: its row of A taken on :attr:`act`; os: its
        tile's last K step, for the tile's first row) to its tag on :attr:`tag`: the
        ``tag_delay`` parameter."""
        return self.tag_delay

    def _started(self, m) -> Signal:
        """The cycle after :attr:`start`, when ``job`` holds the new job's fields: the job
        counters are loaded then, from those registers, not at ``start`` from the command port
        (the port's path through the decoder's checks into the counters' subtractions was the
        ASIC design's worst input path, and ``decoder.held_m`` into ``is_k_left_next`` an ECP5
        one). No state reads a counter before the cycle after that: the loader spends ``start``'s
        next cycle in ``PARAM_WAIT``, the issuer in ``WAIT``, the os sequencer in
        ``PARAM_WAIT``."""
        started = Signal(name="started")
        m.d.sync += started.eq(self.start)
        return started

    def _lanes(self, m):
        """The activation and weight lanes, a lane whose ``keep`` bit is 0 read as 0."""
        act, wgt = self.act.payload, self.wgt.payload
        act_lanes = [Mux(act.keep[r], act.data[r], 0) for r in range(self.rows)]
        wgt_lanes = [Mux(wgt.keep[c], wgt.data[c], 0) for c in range(self.cols)]
        m.d.comb += [self.param.data[c].eq(wgt_lanes[c]) for c in range(self.cols)]
        return act_lanes, wgt_lanes

    def _param_states(self, m, slot, beat, frame, then):
        """The ``PARAM_WAIT`` and ``PARAM`` states of a sequencer's FSM: wait until parameter
        slot ``slot`` is free, store the parameter block from the weight stream into it
        (``beat`` counts its beats, ``frame`` flags a misplaced ``tlast``), then go to state
        ``then``."""
        with m.State("PARAM_WAIT"):
            with m.If(~self.param.busy.bit_select(slot, 1)):
                m.d.sync += beat.eq(0)
                m.next = "PARAM"
        with m.State("PARAM"):
            m.d.comb += self.wgt.ready.eq(1)
            with m.If(self.wgt.valid):
                m.d.comb += self.param.en.eq(1)
                m.d.comb += frame.eq(self.wgt.payload.last != (beat == isa.PARAM_BEATS - 1))
                m.d.sync += beat.eq(beat + 1)
                with m.If(beat == isa.PARAM_BEATS - 1):
                    m.next = then


class WeightStationarySequencer(_Sequencer):
    """Sequencer of a weight-stationary array (:class:`npugen.hw.systolic.WeightStationaryArray`).

    Two processes. The loader takes the weight stream apart: for each column tile a parameter
    block into the free parameter slot, then for each row chunk of at most ``acc_depth`` rows
    and each K tile of ``kc = min(R, k - k0)`` rows its ``kc`` weight beats, into the array's
    free weight set (``w_en``, ``w_row``, ``w_buf``). The issuer sends the chunk's rows of A
    into the array, one per cycle, with ``sel`` on the set loaded for them, and tags each
    (``tag_layout``): its accumulator-memory row, its valid columns, first and last K tile,
    parameter slot, and whether it ends the column tile and the job. Weight sets are double
    buffered: the loader fills one while the issuer streams through the other, so a K-tile
    switch costs no cycle when the weights keep up (docs/architecture.md).

    Transfer rules: ``act``, ``wgt``: a beat is taken when ``valid`` and ``ready`` (``ready``
    never waits for ``valid``); an activation beat whose row of C will be a result (last K
    tile, not ``acc_out``) is taken only while fewer than ``res_depth`` result entries are
    reserved, and raises ``reserve`` to 1 in its cycle. A ``tlast`` not on a parameter block's
    beat 8, a K tile's last weight beat or a chunk's last activation beat raises
    ``frame_err`` (the job runs on, counting beats by its shape). Both processes start at
    ``start`` and load their counters from ``job``'s shape the cycle after (:meth:`_started`).

    Parameters
    ----------
    rows, cols : int
        Array size, 1 to 64 each.
    acc_depth : int
        Rows of the accumulator memory (a power of two, >= 2): the largest row chunk.
    res_depth : int
        Result FIFO entries, >= ``rows``.
    tag_delay : int
        Cycles from a row's injection to its tag on ``tag``, >= 0: the array's latency less
        :attr:`Accumulator.tag_lead`.
    isolate : bool
        Give the array ``a_valid`` (a row of A is injected this cycle) for its operand
        isolation (``WeightStationaryArray(isolate=True)``; default: False).

    Members
    -------
    act : In(stream.Signature(beat_layout(rows)))
    wgt : In(stream.Signature(beat_layout(cols)))
    start : In(1); job : In(JOB_LAYOUT)
        From :class:`CommandDecoder`: ``job`` holds the job's fields from the cycle after
        ``start``.
    param : Out(param_write_signature(cols))
        To :class:`ParameterSlots`.
    array : Out(Signature(a, [a_valid,] sel, sel_next, w_en, w_row, w_buf, w_data))
        The array's inputs (:class:`npugen.hw.systolic.WeightStationaryArray`), combinational from the
        streams; ``a`` lanes past ``kc`` are 0; ``a_valid`` (with ``isolate``) marks a row.
    tag : Out(tag_layout(rows, cols, acc_depth))
        The tag of the row injected :attr:`latency` cycles before (``valid`` 0 for a bubble).
    reserved : In(range(res_depth + 1))
        Result FIFO entries reserved (:class:`ResultQueue`).
    reserve : Out(range(rows + 1))
        Entries to reserve this cycle (0 or 1).
    frame_err : Out(1)

    Raises
    ------
    TypeError, ValueError
        For a parameter of the wrong type or value.
    """

    def __init__(self, *, rows: int, cols: int, acc_depth: int, res_depth: int,
                 tag_delay: int, isolate: bool = False):
        self.isolate = bool(isolate)
        super().__init__(rows=rows, cols=cols, acc_depth=acc_depth, res_depth=res_depth,
                         tag_delay=tag_delay, array_members={
                             "a": Out(data.ArrayLayout(signed(8), rows)),
                             **({"a_valid": Out(1)} if self.isolate else {}),
                             "sel": Out(1), "sel_next": Out(1),
                             "w_en": Out(1), "w_row": Out(range(max(rows, 2))), "w_buf": Out(1),
                             "w_data": Out(data.ArrayLayout(signed(8), cols)),
                         })

    def elaborate(self, platform):
        m = Module()
        act_lanes, wgt_lanes = self._lanes(m)
        # Bit b of wbuf_full: weight set b holds a tile the issuer has not finished with. The
        # loader sets it (wbuf_set) with a tile's last row, the issuer clears it (wbuf_clr)
        # with the last row of A that uses the tile. Weight loads are skewed like the rows of A
        # (hw/systolic.py), so a set can be reloaded from the cycle after that row entered.
        wbuf_full = Signal(2)
        wbuf_set = Signal(2)
        wbuf_clr = Signal(2)
        m.d.sync += wbuf_full.eq((wbuf_full | wbuf_set) & ~wbuf_clr)
        frame_ld = Signal()
        frame_is = Signal()
        m.d.comb += self.frame_err.eq(frame_ld | frame_is)
        started = self._started(m)
        self._loader(m, wgt_lanes, wbuf_full, wbuf_set, frame_ld, started)
        tag = self._issuer(m, act_lanes, wbuf_full, wbuf_clr, frame_is, started)
        if self.isolate:
            m.d.comb += self.array.a_valid.eq(tag.valid)
        # The tag delay line: each row's tag, tag_delay cycles after the row.
        m.d.comb += self.tag.eq(_delay(m, tag, self.tag_delay, "tag"))
        return m

    def _loader(self, m, wgt_lanes, wbuf_full, wbuf_set, frame, started):
        """The loader: parameter blocks and weight tiles from the weight stream, each tile
        into the free weight set."""
        R, C, D = self.rows, self.cols, self.acc_depth
        array, job = self.array, self.job
        l_n = _Countdown("ld_n_left", C)
        l_m = _Countdown("ld_m_left", D)
        l_k = _Countdown("ld_k_left", R)
        l_buf = Signal(name="ld_buf")
        l_slot = Signal(name="ld_slot")
        l_beat = Signal(range(max(R, isa.PARAM_BEATS) + 1), name="ld_beat")
        l_kc = l_k.clip
        m.d.comb += [self.param.slot.eq(l_slot), self.param.beat.eq(l_beat)]
        with m.If(started):
            l_n.load(m, job.n)
            l_m.load(m, job.m)
            l_k.load(m, job.k)
        with m.FSM(name="ws_loader"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [l_buf.eq(0), l_slot.eq(0)]
                    m.next = "PARAM_WAIT"
            self._param_states(m, l_slot, l_beat, frame, then="BUF_WAIT")
            with m.State("BUF_WAIT"):
                with m.If(~wbuf_full.bit_select(l_buf, 1)):
                    m.d.sync += l_beat.eq(0)
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += self.wgt.ready.eq(1)
                with m.If(self.wgt.valid):
                    last_beat = l_beat == l_kc - 1
                    m.d.comb += [
                        array.w_en.eq(1), array.w_row.eq(l_beat), array.w_buf.eq(l_buf),
                        frame.eq(self.wgt.payload.last != last_beat),
                    ]
                    m.d.comb += [array.w_data[c].eq(wgt_lanes[c]) for c in range(C)]
                    m.d.sync += l_beat.eq(l_beat + 1)
                    with m.If(last_beat):
                        m.d.comb += wbuf_set.eq(Mux(l_buf, 0b10, 0b01))
                        m.d.sync += [l_buf.eq(~l_buf), l_beat.eq(0)]
                        with m.If(~l_k.last):
                            l_k.advance(m)
                            m.next = "BUF_WAIT"
                        with m.Else():
                            l_k.load(m, job.k)
                            with m.If(~l_m.last):
                                l_m.advance(m)
                                m.next = "BUF_WAIT"
                            with m.Else():
                                l_m.load(m, job.m)
                                with m.If(~l_n.last):
                                    l_n.advance(m)
                                    m.d.sync += l_slot.eq(~l_slot)
                                    m.next = "PARAM_WAIT"
                                with m.Else():
                                    m.next = "IDLE"

    def _issuer(self, m, act_lanes, wbuf_full, wbuf_clr, frame, started):
        """The issuer: rows of A into the array, one per cycle, on the weight set loaded for
        them; returns the tag of the row injected this cycle."""
        R, C, D = self.rows, self.cols, self.acc_depth
        array, job = self.array, self.job
        i_n = _Countdown("is_n_left", C)
        i_m = _Countdown("is_m_left", D)
        i_k = _Countdown("is_k_left", R, lanes=True)
        i_buf = Signal(name="is_buf")
        i_slot = Signal(name="is_slot")
        i_row = Signal(range(D), name="is_row")
        mc, nc = i_m.clip, i_n.clip
        last_k, last_m, last_n = i_k.last, i_m.last, i_n.last
        last_row = i_row == mc - 1
        producing = last_k & ~job.acc_out
        room = ~producing | (self.reserved < self.res_depth)
        # The array takes the tile of this cycle's row of A and of the next one: i_buf and
        # its next value.
        i_buf_clear = Signal()
        i_buf_flip = Signal()
        i_buf_next = Signal()
        m.d.comb += i_buf_next.eq(Mux(i_buf_clear, 0, i_buf ^ i_buf_flip))
        m.d.sync += i_buf.eq(i_buf_next)
        m.d.comb += [array.sel.eq(i_buf), array.sel_next.eq(i_buf_next)]
        tag = Signal(self.tag.shape())      # the tag of the row injected now

        def goto_next(next_ready):
            with m.If(next_ready):
                m.next = "ROWS"
            with m.Else():
                m.next = "WAIT"

        with m.If(started):
            i_n.load(m, job.n)
            i_m.load(m, job.m)
            i_k.load(m, job.k)
        with m.FSM(name="ws_issuer"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.comb += i_buf_clear.eq(1)
                    m.d.sync += [i_slot.eq(0), i_row.eq(0)]
                    m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(wbuf_full.bit_select(i_buf, 1)):
                    m.next = "ROWS"
            with m.State("ROWS"):
                m.d.comb += self.act.ready.eq(room)
                with m.If(self.act.valid & room):
                    m.d.comb += [array.a[r].eq(Mux(i_k.lanes[r], act_lanes[r], 0))
                                 for r in range(R)]
                    m.d.comb += [
                        tag.valid.eq(1), tag.m.eq(i_row), tag.rows.eq(1), tag.nc.eq(nc),
                        tag.first.eq(i_k.fresh), tag.last.eq(last_k), tag.pslot.eq(i_slot),
                        tag.ntile_end.eq(last_row & last_k & last_m),
                        tag.job_end.eq(last_row & last_k & last_m & last_n),
                        self.reserve.eq(producing),
                        frame.eq(self.act.payload.last != last_row),
                    ]
                    m.d.sync += i_row.eq(i_row + 1)
                    with m.If(last_row):
                        m.d.comb += wbuf_clr.eq(Mux(i_buf, 0b10, 0b01))
                        m.d.comb += i_buf_flip.eq(1)
                        m.d.sync += i_row.eq(0)
                        # Go straight on when the next weight tile is already loaded: no bubble.
                        next_ready = wbuf_full.bit_select(~i_buf, 1)
                        with m.If(~last_k):
                            i_k.advance(m)
                            goto_next(next_ready)
                        with m.Else():
                            i_k.load(m, job.k)
                            with m.If(~last_m):
                                i_m.advance(m)
                                goto_next(next_ready)
                            with m.Else():
                                i_m.load(m, job.m)
                                with m.If(~last_n):
                                    i_n.advance(m)
                                    m.d.sync += i_slot.eq(~i_slot)
                                    goto_next(next_ready)
                                with m.Else():
                                    m.next = "IDLE"
        return tag


class OutputStationarySequencer(_Sequencer):
    """Sequencer of an output-stationary array (:class:`npugen.hw.systolic.OutputStationaryArray`).

    For each column tile: a parameter block into the free parameter slot; then for each row
    tile of ``mr = min(R, m - m0)`` rows, the job's ``k`` K steps, each one activation beat (a
    column of A, lanes past ``mr`` read as 0) and one weight beat (a row of B) taken in the
    same cycle, with ``last`` on the tile's final step. The tile's tag (``rows = mr``) then
    goes down a delay line and is expanded into one tag per row: row ``i`` of the tile gets
    its tag on ``tag`` :attr:`latency` ``+ i`` cycles after the final step, as the array
    drains it.

    Transfer rules: both streams' beats are taken together (``act.ready`` waits for
    ``wgt.valid`` and the other way round; never for its own ``valid``). A tile's final step
    waits until the previous tile's final step is ``rows`` cycles old (the drain) and, for a
    tile whose rows are results (not ``acc_out``), until ``reserved + mr <= res_depth``; it
    then raises ``reserve`` to ``mr`` in its cycle. A ``tlast`` not on a parameter block's beat
    8 or a tile's final step raises ``frame_err``.

    Parameters
    ----------
    rows, cols : int
        Array size, 1 to 64 each.
    acc_depth : int
        Rows of the accumulator memory (a power of two, >= 2).
    res_depth : int
        Result FIFO entries, >= ``rows``.
    tag_delay : int
        Cycles from a tile's final K step to its first row's tag on ``tag``, >= 0: the array's
        latency less :attr:`Accumulator.tag_lead`.

    Members
    -------
    act : In(stream.Signature(beat_layout(rows)))
    wgt : In(stream.Signature(beat_layout(cols)))
    start : In(1); job : In(JOB_LAYOUT)
        From :class:`CommandDecoder`: ``job`` holds the job's fields from the cycle after
        ``start``.
    param : Out(param_write_signature(cols))
        To :class:`ParameterSlots`.
    array : Out(Signature(a, b, valid, last))
        The array's inputs (:class:`npugen.hw.systolic.OutputStationaryArray`), combinational from the
        streams.
    tag : Out(tag_layout(rows, cols, acc_depth))
        One tag per row of C, ``m`` its accumulator-memory row (``rows`` still the tile's).
    reserved : In(range(res_depth + 1))
    reserve : Out(range(rows + 1))
    frame_err : Out(1)

    Raises
    ------
    TypeError, ValueError
        For a parameter of the wrong type or value.
    """

    def __init__(self, *, rows: int, cols: int, acc_depth: int, res_depth: int,
                 tag_delay: int):
        super().__init__(rows=rows, cols=cols, acc_depth=acc_depth, res_depth=res_depth,
                         tag_delay=tag_delay, array_members={
                             "a": Out(data.ArrayLayout(signed(8), rows)),
                             "b": Out(data.ArrayLayout(signed(8), cols)),
                             "valid": Out(1), "last": Out(1),
                         })

    def elaborate(self, platform):
        m = Module()
        R, C, D = self.rows, self.cols, self.acc_depth
        array, job = self.array, self.job
        act_lanes, wgt_lanes = self._lanes(m)
        o_n = _Countdown("os_n_left", C)
        o_m = _Countdown("os_m_left", R, lanes=True)
        o_m0 = Signal((D - 1).bit_length(), name="os_m0")
        o_kb = Signal(24, name="os_k_step")
        o_slot = Signal(name="os_slot")
        o_beat = Signal(range(isa.PARAM_BEATS + 1), name="os_beat")
        m.d.comb += [self.param.slot.eq(o_slot), self.param.beat.eq(o_beat)]
        # Cycles since the last tile's final K step entered (saturating at R): the drain of a
        # tile needs R cycles before the next tile's sums are parked.
        since = Signal(range(R + 1), name="os_since_last")
        issued_last = Signal()
        with m.If(issued_last):
            m.d.sync += since.eq(1)
        with m.Elif(since != R):
            m.d.sync += since.eq(since + 1)

        mr, nc = o_m.clip, o_n.clip
        last_m, last_n = o_m.last, o_n.last
        last_step = o_kb == job.k - 1
        producing = ~job.acc_out
        room = ~last_step | ((since == R) & (~producing | (self.reserved + mr <= self.res_depth)))
        frame_a = Signal()
        frame_w = Signal()
        frame_p = Signal()
        m.d.comb += self.frame_err.eq(frame_a | frame_w | frame_p)
        tile = Signal(self.tag.shape())     # the tag of the tile whose final step is now
        with m.If(self._started(m)):
            o_n.load(m, job.n)
            o_m.load(m, job.m)
        with m.FSM(name="os_sequencer"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [o_m0.eq(0), o_kb.eq(0), o_slot.eq(0), since.eq(R)]
                    m.next = "PARAM_WAIT"
            self._param_states(m, o_slot, o_beat, frame_p, then="TILE")
            with m.State("TILE"):
                # One K step takes one beat of each stream, in the same cycle.
                m.d.comb += [self.act.ready.eq(self.wgt.valid & room),
                             self.wgt.ready.eq(self.act.valid & room)]
                with m.If(self.act.valid & self.wgt.valid & room):
                    m.d.comb += [array.a[r].eq(Mux(o_m.lanes[r], act_lanes[r], 0))
                                 for r in range(R)]
                    m.d.comb += [array.b[c].eq(wgt_lanes[c]) for c in range(C)]
                    m.d.comb += [
                        array.valid.eq(1), array.last.eq(last_step),
                        frame_a.eq(self.act.payload.last != last_step),
                        frame_w.eq(self.wgt.payload.last != last_step),
                    ]
                    m.d.sync += o_kb.eq(o_kb + 1)
                    with m.If(last_step):
                        m.d.comb += [
                            issued_last.eq(1),
                            tile.valid.eq(1), tile.m.eq(o_m0), tile.rows.eq(mr),
                            tile.nc.eq(nc), tile.first.eq(1), tile.last.eq(1),
                            tile.pslot.eq(o_slot), tile.ntile_end.eq(last_m),
                            tile.job_end.eq(last_m & last_n),
                            self.reserve.eq(Mux(producing, mr, 0)),
                        ]
                        m.d.sync += o_kb.eq(0)
                        with m.If(~last_m):
                            o_m.advance(m)
                            m.d.sync += o_m0.eq(o_m0 + R)
                        with m.Else():
                            o_m.load(m, job.m)
                            m.d.sync += o_m0.eq(0)
                            with m.If(~last_n):
                                o_n.advance(m)
                                m.d.sync += o_slot.eq(~o_slot)
                                m.next = "PARAM_WAIT"
                            with m.Else():
                                m.next = "IDLE"

        # The tile's tag, tag_delay cycles after its final step, expanded into one tag per row.
        self._row_tags(m, _delay(m, tile, self.tag_delay, "tag"))
        return m

    def _row_tags(self, m, tile):
        """Drive :attr:`tag` from ``tile``, the tag of a tile (``valid`` in one cycle): one tag
        per row, row ``i`` of the tile ``i`` cycles later (it leaves the array ``i`` cycles
        after row 0)."""
        R = self.rows
        ex_tag = Signal(tile.shape())
        ex_row = Signal(range(R + 1))
        base = Signal(tile.shape())
        row = Signal(range(R + 1))
        with m.If(tile.valid):
            m.d.comb += [base.eq(tile), row.eq(0)]
            m.d.sync += [ex_tag.eq(tile), ex_row.eq(1)]
        with m.Else():
            m.d.comb += [base.eq(ex_tag), row.eq(ex_row)]
            with m.If(ex_row != 0):
                m.d.sync += ex_row.eq(Mux(ex_row == R - 1, 0, ex_row + 1))
        if R == 1:
            m.d.sync += ex_row.eq(0)
        row_valid = (tile.valid | (ex_row != 0)) & base.valid & (row < base.rows)
        is_last_row = row == base.rows - 1
        m.d.comb += [
            self.tag.eq(base),
            self.tag.valid.eq(row_valid),
            self.tag.m.eq(base.m + row),
            self.tag.ntile_end.eq(base.ntile_end & is_last_row),
            self.tag.job_end.eq(base.job_end & is_last_row),
        ]


# -- back end ---------------------------------------------------------------------------------

class Accumulator(wiring.Component):
    """The back end's accumulate stages: adds each row of C leaving the array to the bias or
    to its accumulator-memory row, writes partial sums back and hands finished rows on.

    Stages, for a row whose tag is on :attr:`tag` at cycle ``t``: the accumulator memory is
    read at ``t`` (its data registered at ``t + 1``, so no adder follows the RAM in the same
    cycle); at ``t + 2`` (s0) the row of C is on :attr:`c` and ``s0 = c + (first ? bias +
    (acc_in ? acc : 0) : acc)`` is formed (``acc`` the row's accumulator, ``bias`` from the
    row's parameter slot), modulo ``2**acc_width``; at ``t + 3`` (s1) the sum is on
    :attr:`o_sum` and, unless the row is finished (last K tile of a job without ``acc_out``),
    written back to the accumulator memory. A row written back is seen by a read of the same
    row at any later cycle (the memory is transparent, then bypassed, then forwarded), so rows
    may follow each other with no gap. The tag is given :attr:`tag_lead` cycles before its
    row of C: the sequencer's delay line is that much shorter than the array.

    Parameters
    ----------
    rows, cols : int
        Array size, 1 to 64 each (``tag_layout``).
    acc_width : int
        Accumulator width, bits, 17 to 64.
    acc_depth : int
        Rows of the accumulator memory, a power of two >= 2.
    c_width : int
        Width of the array's signed output lanes, bits, at most ``acc_width``.
    isolate : bool
        Operand isolation (default: False): the accumulator memory's read address keeps its
        last value in a cycle whose read is not used (no row, or a row that starts from the
        bias alone: ``first`` without ``acc_in``), so the memory's read multiplexers do not
        switch for it. ``bits(acc_depth - 1)`` flip-flops and their multiplexers; no
        cycle.

    Members
    -------
    tag : In(tag_layout(rows, cols, acc_depth))
        The row's tag (``valid`` 0: no row), :attr:`tag_lead` cycles before its row of C.
    c : In(ArrayLayout(signed(c_width), cols))
        The row of C, from the array (unqualified: the tag says whether it is a row).
    job : In(JOB_LAYOUT)
        The running job (``acc_in``, ``acc_out``, ``requant``); must not change while its rows
        are in these stages.
    params : Out(param_read_signature(cols))
        The row's parameter slot: the bias read at s0; for a job without ``requant`` the slot
        is freed when its column tile's last row (``ntile_end``) is at s1 (a requant job's
        slot is freed by the result queue, which reads its multipliers and shifts later).
    o_sum : Out(ArrayLayout(signed(acc_width), cols))
        The row's sum at s1, :attr:`latency` cycle after :attr:`c`.
    o_tag : Out(tag_layout(rows, cols, acc_depth))
        The row's tag at s1.
    o_finished : Out(1)
        A finished row of a job with results (not ``acc_out``) is at s1 (for the result queue).
    o_held : Out(1)
        The last row of an ``acc_out`` job is written at s1.

    Raises
    ------
    TypeError, ValueError
        For a parameter of the wrong type or value.
    """

    #: The area report's block (npugen.hw.blocks); its memory counts toward ``memories``.
    report_block = "control"
    #: Cycles a row's tag comes before its row of C: the accumulator memory's read and the
    #: register after it.
    tag_lead = 2
    #: Cycles from a row of C at :attr:`c` to its sum at :attr:`o_sum`.
    latency = 1

    def __init__(self, *, rows: int, cols: int, acc_width: int, acc_depth: int, c_width: int,
                 isolate: bool = False):
        check_dims(rows, cols)
        self.rows, self.cols = rows, cols
        self.isolate = bool(isolate)
        self.acc_width = _check_int("Accumulator width", acc_width, 17, 64)
        self.acc_depth = _check_depth("Accumulator depth", acc_depth)
        self.c_width = _check_int("Array output width", c_width, 2, acc_width)
        tags = tag_layout(rows, cols, acc_depth)
        super().__init__({
            "tag": In(tags),
            "c": In(data.ArrayLayout(signed(c_width), cols)),
            "job": In(JOB_LAYOUT),
            "params": Out(param_read_signature(cols)),
            "o_sum": Out(data.ArrayLayout(signed(acc_width), cols)),
            "o_tag": Out(tags),
            "o_finished": Out(1),
            "o_held": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        C, W = self.cols, self.acc_width
        job, params = self.job, self.params
        tag_early = self.tag
        acc_layout = data.ArrayLayout(signed(W), C)
        m.submodules.acc_mem = acc_mem = Memory(shape=acc_layout, depth=self.acc_depth, init=[])
        wr = acc_mem.write_port()
        rd = acc_mem.read_port(transparent_for=(wr,))
        # The row's accumulator is read two cycles before s0 and the block RAM's data is
        # registered (rd_q), so that no adder follows the RAM's clock-to-out in the same cycle
        # (the 2 x 2 ECP5 critical path, docs/area.md). Writes reach s0 from: the memory (up to
        # the cycle before the read), the read port's transparency (the read's cycle), rd_q's
        # bypass (the cycle after: the row at s1 then), and the forward below (s0's cycle).
        if self.isolate:
            # The read's data is used at s0 only by a row that keeps its accumulator (the
            # keep_prev below): otherwise the address stays where it was.
            addr_q = Signal.like(rd.addr, name="rd_addr_held")
            used = tag_early.valid & (~tag_early.first | job.acc_in)
            m.d.comb += rd.addr.eq(Mux(used, tag_early.m, addr_q))
            m.d.sync += addr_q.eq(rd.addr)
        else:
            m.d.comb += rd.addr.eq(tag_early.m)

        tag_pre = Signal(tag_early.shape())
        m.d.sync += tag_pre.eq(tag_early)
        t0 = Signal(tag_early.shape())
        m.d.sync += t0.eq(tag_pre)
        t1 = self.o_tag
        s1_sum = self.o_sum
        s1_writes = Signal()
        m.d.comb += s1_writes.eq(t1.valid & (~t1.last | job.acc_out))
        # Forward the row being written back when the same accumulator row comes round on the
        # very next cycle: a one-row pass behind a stalled activation stream, with both weight
        # sets loaded, does that (found by review, 2026-11-30; the comment here used to say it
        # never happened).
        # Both selects of s0's sum (forward, keep_prev) are made a cycle early from t0 and
        # tag_pre and registered: each drives C x W multiplexers, and computed at s0 they put
        # a comparison and the job's flags in front of that fan-out and the adder (the 8 x 8
        # ECP5 critical path ran from job_acc_out through forward into s1_sum: 11.7 ns, 8.5 of
        # it routing). t0 and t1 follow tag_pre and t0 every cycle, and the job's flags do not
        # change while its rows are in the back end.
        forward = Signal()
        m.d.sync += forward.eq(t0.valid & (~t0.last | job.acc_out) & (t0.m == tag_pre.m))
        rd_q = Signal(acc_layout)
        m.d.sync += rd_q.eq(Mux(s1_writes & (t1.m == tag_pre.m), s1_sum, rd.data))
        prev = Signal(acc_layout)
        m.d.comb += prev.eq(Mux(forward, s1_sum, rd_q))
        s0_sum = Signal(acc_layout)
        # s0_sum = c + (first ? bias + (acc_in ? prev : 0) : prev), summed as
        # (first & ~acc_in ? 0 : prev) + (c + (first ? bias : 0)): the same value modulo 2^W,
        # with one adder instead of two after the accumulator memory's read port (the 2 x 2
        # ECP5 critical path: block RAM clock-to-out, then two W-bit carry chains). One
        # expression: written as two named sums, Yosys 0.70's ABC9 reintegration fails an
        # assertion on the flat ECP5 netlist.
        keep_prev = Signal()
        m.d.sync += keep_prev.eq(~tag_pre.first | job.acc_in)
        m.d.comb += params.slot.eq(t0.pslot)
        for c in range(C):
            m.d.comb += s0_sum[c].eq(Mux(keep_prev, prev[c], 0)
                                     + (self.c[c] + Mux(t0.first, params.bias[c], 0)))
        m.d.sync += [t1.eq(t0), s1_sum.eq(s0_sum)]
        m.d.comb += [wr.en.eq(s1_writes), wr.addr.eq(t1.m), wr.data.eq(s1_sum)]
        for s in range(2):
            m.d.comb += params.free[s].eq(t1.valid & t1.ntile_end & (t1.pslot == s)
                                          & ~job.requant)

        m.d.comb += [self.o_finished.eq(t1.valid & t1.last & ~job.acc_out),
                     self.o_held.eq(t1.valid & t1.job_end & job.acc_out)]
        return m


class ResultQueue(wiring.Component):
    """The result FIFO, the requantizer's drain and the result stream.

    Each cycle the queue takes at most one finished row from :class:`Accumulator` (its ``nc``
    valid columns' accumulators, the others written as 0) into the result FIFO, and sends the
    FIFO's rows on :attr:`o`, one beat each (``docs/isa.md``):

    - a raw job's row as ``C`` lanes of ``lane_bits = 8 * ceil(acc_width / 8)`` bits, each
      sign-extended, in the cycle it reaches the FIFO's head;
    - a requant job's row through the requantizer's ``lanes`` lanes (the *drain*): its
      ``P = ceil(nc / lanes)`` slices of ``lanes`` columns are issued in ``P`` consecutive
      cycles with the multipliers and shifts of their columns (the row's parameter slot,
      :attr:`params`; the slot is freed with its column tile's last row's last slice), each
      registered (:attr:`drain_latency`) and then requantized
      (:class:`~npugen.hw.requant.Requantizer`), the int8 results are collected, and the
      beat is offered when the last slice leaves the requantizer: ``nc`` int8 values packed
      in the beat's low ``nc`` bytes, the other bytes 0. The requantizer and the collection
      stall while an offered beat is not taken, so no result is lost.

    So the FIFO is the drain buffer: rows finished faster than ``lanes`` columns a cycle wait
    in it while later passes compute. Credits: a sequencer reserves an entry for each row that
    will produce a result before it injects the row (:attr:`reserve`), and an entry stays
    reserved until its beat is taken on :attr:`o`, so the rows in flight always find room and
    the FIFO never overflows; :attr:`reserved` is the count. ``keep`` marks the beat's valid
    bytes; ``last`` the job's last row.

    Parameters
    ----------
    rows : int
        Array rows: the most entries reserved in one cycle (1 to 64).
    cols : int
        Columns, 1 to 64.
    acc_width : int
        Width of an accumulator, bits, 17 to 64.
    depth : int
        FIFO entries (the credits), >= ``rows``.
    lanes : int
        Requantizer lanes, 1 to ``cols``.
    rounding : str
        The requantizer's rounding mode (:data:`~npugen.hw.requant.ROUNDING_MODES`).
    pp_bits : int
        Bits of ``M0`` per partial product of the requantizer
        (:data:`~npugen.hw.requant.PP_BITS`).

    Members
    -------
    i_valid : In(1)
        A finished row is on :attr:`i_sum` (one cycle; the FIFO always has room, by the
        credits).
    i_sum : In(ArrayLayout(signed(acc_width), cols))
    i_nc : In(range(cols + 1)); i_last, i_pslot, i_ntile_end : In(1)
        The row's valid columns, whether it is the job's last row, its parameter slot and
        whether it ends its column tile.
    job : In(JOB_LAYOUT)
        The running job (``requant``, ``zp_out``, ``act_min``, ``act_max``); it does not change
        while its rows are queued.
    params : Out(param_drain_signature(cols))
        The parameter slots' multipliers and shifts.
    o : Out(stream.Signature(StructLayout({"data": lane_bits * cols,
        "keep": lane_bits * cols // 8, "last": 1})))
        The result stream; ``valid`` does not wait for ``ready``.
    reserve : In(range(rows + 1))
        Entries to reserve this cycle.
    reserved : Out(range(depth + 1))
        Entries reserved and not yet taken on :attr:`o`.
    o_job_end : Out(1)
        A beat with ``last`` was taken on :attr:`o` this cycle.

    Raises
    ------
    TypeError, ValueError
        For a parameter of the wrong type or value.
    """

    #: The area report's block (npugen.hw.blocks); the FIFO's storage counts toward
    #: ``memories``, the requantizer toward ``requantizer``.
    report_block = "control"
    #: Cycles from a row given (written into the empty FIFO) to its head: ``SyncFIFOBuffered``'s
    #: inner FIFO, its output register (the memory's read register), then the head register.
    #: A raw row's beat is offered then; a requant row's first slice is issued then.
    latency = 3
    #: Cycles of the requantizer's input register (``Requantizer(input_reg=True)``), which a
    #: slice enters at its issue at the head.
    drain_latency = 1

    def __init__(self, *, rows: int, cols: int, acc_width: int, depth: int, lanes: int,
                 rounding: str = "single", pp_bits: int = 16):
        check_dims(rows, cols)
        self.rows, self.cols = rows, cols
        self.acc_width = _check_int("Accumulator width", acc_width, 17, 64)
        self.depth = _check_int("Result FIFO depth", depth, rows)
        self.lanes = _check_int("Requantizer lanes", lanes, 1, cols)
        self.lane_bits = L = 8 * ((acc_width + 7) // 8)
        self.requant = Requantizer(lanes=lanes, acc_width=acc_width, rounding=rounding,
                                   input_reg=True, pp_bits=pp_bits)
        super().__init__({
            "i_valid": In(1),
            "i_sum": In(data.ArrayLayout(signed(acc_width), cols)),
            "i_nc": In(range(cols + 1)),
            "i_last": In(1),
            "i_pslot": In(1),
            "i_ntile_end": In(1),
            "job": In(JOB_LAYOUT),
            "params": Out(param_drain_signature(cols)),
            "o": Out(stream.Signature(data.StructLayout({
                "data": unsigned(L * cols), "keep": unsigned(L * cols // 8),
                "last": unsigned(1)}))),
            "reserve": In(range(rows + 1)),
            "reserved": Out(range(depth + 1)),
            "o_job_end": Out(1),
        })

    @property
    def slices(self) -> int:
        """Most cycles a requant row spends at the FIFO's head: ``ceil(cols / lanes)``."""
        return -(-self.cols // self.lanes)

    def _entry_layout(self) -> data.StructLayout:
        return data.StructLayout({
            "acc": data.ArrayLayout(signed(self.acc_width), self.cols),
            "nc": unsigned(self.cols.bit_length()), "last": 1, "pslot": 1, "ntile_end": 1})

    def elaborate(self, platform):
        m = Module()
        C = self.cols
        entry = self._entry_layout()
        # One entry more than the credits: SyncFIFOBuffered is a SyncFIFO of depth - 1 plus an
        # output register, and an entry in transit between the two would otherwise block a
        # write that the credits allow.
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=entry.size, depth=self.depth + 1)
        w_entry = Signal(entry)
        m.d.comb += [w_entry.acc[c].eq(Mux(c < self.i_nc, self.i_sum[c], 0)) for c in range(C)]
        m.d.comb += [w_entry.nc.eq(self.i_nc), w_entry.last.eq(self.i_last),
                     w_entry.pslot.eq(self.i_pslot), w_entry.ntile_end.eq(self.i_ntile_end),
                     fifo.w_data.eq(w_entry), fifo.w_en.eq(self.i_valid)]
        # The head register: the row at the queue's head, loaded from the FIFO's read register
        # whenever it is empty or its row leaves (``pop``). Everything the head's row decides
        # (the beat, the drain's slices, the FIFO's read enable, the job's end) starts at a
        # flip-flop: on an FPGA the read register is the block RAM's own output, whose
        # clock-to-out (about 4 ns on ECP5) left no room for logic after it.
        head = Signal(entry, name="head")
        head_valid = Signal(name="head_valid")
        pop = Signal()
        load = fifo.r_rdy & (~head_valid | pop)
        m.d.comb += fifo.r_en.eq(load)
        with m.If(load):
            m.d.sync += [head.eq(fifo.r_data), head_valid.eq(1)]
        with m.Elif(pop):
            m.d.sync += head_valid.eq(0)

        o = self.o
        # The drain's pipeline (requantizer, slice tags, collection) moves unless a requant
        # beat is offered and not taken.
        advance = Signal()
        rq_offer = Signal()
        m.d.comb += advance.eq(~(rq_offer & ~o.ready))
        m.submodules.requant = rq = EnableInserter(advance)(self.requant)
        with m.If(self.job.requant):
            self._drain(m, head, head_valid, pop, rq, advance, rq_offer)
        with m.Else():
            # A raw row: its lanes sign-extended, in the cycle it is at the head.
            raw = [Signal(signed(self.lane_bits), name=f"raw_lane{c}") for c in range(C)]
            m.d.comb += [raw[c].eq(head.acc[c]) for c in range(C)]
            lane_bytes = self.lane_bits // 8
            m.d.comb += [
                o.valid.eq(head_valid), pop.eq(o.ready),
                o.payload.data.eq(Cat(raw)), o.payload.last.eq(head.last),
                o.payload.keep.eq(Cat((b // lane_bytes) < head.nc
                                      for b in range(lane_bytes * C))),
            ]

        taken = o.valid & o.ready
        m.d.sync += self.reserved.eq(self.reserved + self.reserve - taken)
        m.d.comb += self.o_job_end.eq(taken & o.payload.last)
        return m

    def _drain(self, m, head, head_valid, pop, rq, advance, rq_offer):
        """A requant job's rows: the head row's slices into the requantizer ``rq`` (with the
        enable ``advance``), their int8 results collected into the beat on :attr:`o`, offered
        (``rq_offer``) with the row's last slice, when the row leaves the head (``pop``)."""
        C, Lq, P = self.cols, self.lanes, self.slices
        o, q, job = self.o, self.params, self.job
        # the head row's next slice (one bit even when P is 1: no zero-width signal)
        piece = Signal(range(max(P, 2)), name="drain_slice")
        last_piece = Signal(name="drain_last_slice")
        if P == 1:
            m.d.comb += last_piece.eq(1)
        else:
            # slice s is the row's last when nc <= (s + 1)·Lq (always for the last one)
            m.d.comb += last_piece.eq(Cat(
                (piece == s) & (head.nc <= (s + 1) * Lq) if (s + 1) * Lq < C else piece == s
                for s in range(P)).any())
        issue = head_valid & advance
        m.d.comb += [q.slot.eq(head.pslot),
                     rq.i_zp_out.eq(job.zp_out), rq.i_act_min.eq(job.act_min),
                     rq.i_act_max.eq(job.act_max)]
        # The slice goes into the requantizer's input register (drain_latency): the slice and
        # slot multiplexers then follow the FIFO's read port, not the requantizer's multipliers
        # (the ECP5 critical path ran from the block RAM's output through them into a DSP).
        m.d.comb += rq.i_valid.eq(issue)
        for lane in range(Lq):
            with m.Switch(piece):
                for s in range(P):
                    c = s * Lq + lane
                    if c < C:
                        with m.Case(s):
                            m.d.comb += [rq.i_acc[lane].eq(head.acc[c]),
                                         rq.i_multiplier[lane].eq(q.mult[c]),
                                         rq.i_shift[lane].eq(q.shift[c])]
        with m.If(issue):
            m.d.sync += piece.eq(Mux(last_piece, 0, piece + 1))
            with m.If(last_piece):
                m.d.comb += pop.eq(1)
                m.d.comb += q.free.eq(Mux(head.ntile_end, Mux(head.pslot, 0b10, 0b01), 0))

        # The slice's place in its row travels beside it through the register and the
        # requantizer.
        tag = data.StructLayout({"piece": range(max(P, 2)), "last_piece": 1,
                                 "nc": range(C + 1), "last": 1})
        now = Signal(tag)
        m.d.comb += [now.piece.eq(piece), now.last_piece.eq(last_piece), now.nc.eq(head.nc),
                     now.last.eq(head.last)]
        for d in range(self.requant.latency):
            reg = Signal(tag, name=f"drain_tag_d{d + 1}")
            with m.If(advance):
                m.d.sync += reg.eq(now)
            now = reg
        # Collect the row's int8 results; the last slice's go straight into the beat.
        collected = Signal(data.ArrayLayout(signed(8), C), name="drain_row")
        out = [Signal(signed(8), name=f"drain_out{c}") for c in range(C)]
        for c in range(C):
            s, lane = divmod(c, Lq)
            here = now.piece == s
            m.d.comb += out[c].eq(Mux(now.nc > c, Mux(here, rq.o_data[lane], collected[c]), 0))
            with m.If(advance & rq.o_valid & here):
                m.d.sync += collected[c].eq(rq.o_data[lane])
        m.d.comb += [
            rq_offer.eq(rq.o_valid & now.last_piece),
            o.valid.eq(rq_offer), o.payload.last.eq(now.last),
            o.payload.data.eq(Cat(out)),
            o.payload.keep.eq(Cat(c < now.nc for c in range(C))),
        ]


# -- the engine -------------------------------------------------------------------------------

class GemmEngine(wiring.Component):
    """Int8 GEMM engine on a ``rows`` × ``cols`` systolic array.

    Wires its sub-components (the module docstring lists them; docs/architecture.md draws
    them): the command decoder, the parameter slots, the dataflow's sequencer and array, and
    the back end (accumulator, requantizer, result queue).

    Parameters
    ----------
    rows, cols : int
        Array size, 1 to 64 each.
    dataflow : str
        ``"ws"`` (weight-stationary, double-buffered weight tiles, K tiled by ``rows`` and
        accumulated in the accumulator memory) or ``"os"`` (output-stationary, K streamed).
    k_max : int
        Largest ``k`` a command may ask for, 1 to 2**24 - 1.
    acc_width : int
        Accumulator width, bits; at least :func:`npugen.hw.config.derived_acc_width` ``(k_max)``, at most 64.
    rounding : str
        Requantization rounding, ``"single"`` or ``"double"`` (numerics.md).
    acc_depth : int
        Rows of the accumulator memory (a power of two, >= 2): the largest row chunk of a ws job
        and the largest ``m`` of an ``acc_in``/``acc_out`` job.
    res_depth : int
        Depth of the result FIFO, beats; at least ``rows``. Full throughput with a result
        consumer that is always ready needs about the pipeline latency (``rows + cols + 8``),
        and with ``requant_lanes < cols`` room for the finished rows that wait for the
        requantizer (docs/perf.md).
    requant_lanes : int or None
        Requantizer lanes, 1 to ``cols`` (None: ``ceil(cols / 4)``, as ``requant_lanes`` of
        :class:`npugen.hw.config.GemmConfig`): a requant row is drained through them in
        ``ceil(nc / requant_lanes)`` cycles (:class:`ResultQueue`).
    requant_pp_bits : int
        Bits of ``M0`` per partial product of the requantizer (8 or 16, as ``requant_pp_bits``
        of :class:`npugen.hw.config.GemmConfig`; ``pp_bits`` of
        :class:`~npugen.hw.requant.Requantizer`): 8 adds a cycle to a requant row's latency.
    pe_product_reg, pe_weight_reg : bool
        A weight-stationary PE's product and weight registers
        (:class:`~npugen.hw.pe.WeightStationaryPE`; default: both). The output-stationary PE has
        neither: an ``os`` engine requires both True.
    array_input_reg : bool
        The array registers its inputs before the skew (``input_reg`` of
        :class:`~npugen.hw.systolic.WeightStationaryArray` and
        :class:`~npugen.hw.systolic.OutputStationaryArray`; default True): no sequencer logic
        reaches a PE's multiplier in the same cycle, for one cycle of array latency.
    dsp_primitive : str
        ``"none"`` or ``"ecp5"`` (ws only): each PE's product in an instantiated ECP5
        ``MULT18X18D`` holding its registers (:class:`~npugen.hw.pe.WeightStationaryPE`).
    operand_isolation : bool
        Hold operands nobody uses (default False; needs ``array_input_reg``): the array's
        input register keeps the last row of A (os: A and B lanes) on a bubble, and the
        accumulator memory's read address keeps its value when the read is not used
        (``isolate`` of the arrays and of :class:`Accumulator`). Same results, same cycles.

    Members
    -------
    cmd : In(stream.Signature(unsigned(128)))
    status : Out(stream.Signature(unsigned(64)))
    act : In(stream.Signature(StructLayout({"data": ArrayLayout(signed(8), rows),
        "keep": rows, "last": 1})))
    wgt : In(stream.Signature(StructLayout({"data": ArrayLayout(signed(8), cols),
        "keep": cols, "last": 1})))
    res : Out(stream.Signature(StructLayout({"data": lane_bits * cols,
        "keep": lane_bits * cols // 8, "last": 1})))

    Raises
    ------
    TypeError, ValueError
        For a parameter of the wrong type or value.
    """

    #: The area report's block (npugen.hw.blocks), the sub-components naming their own.
    report_block = "control"

    def __init__(self, *, rows: int, cols: int, dataflow: str = "ws", k_max: int = 4096,
                 acc_width: int | None = None, rounding: str = "single", acc_depth: int = 512,
                 res_depth: int = 64, requant_lanes: int | None = None,
                 requant_pp_bits: int = GemmConfig.requant_pp_bits,
                 pe_product_reg: bool = True, pe_weight_reg: bool = True,
                 array_input_reg: bool = True, dsp_primitive: str = "none",
                 operand_isolation: bool = False):
        check_dims(rows, cols)
        if dataflow not in {d.value for d in Dataflow}:
            raise ValueError(f"Dataflow must be 'ws' or 'os', not {dataflow!r}")
        if not isinstance(k_max, int) or isinstance(k_max, bool) or not 1 <= k_max < 2 ** 24:
            raise ValueError(f"k_max must be an integer from 1 to {2 ** 24 - 1}, not {k_max!r}")
        need = derived_acc_width(k_max)
        if acc_width is None:
            acc_width = need
        if not isinstance(acc_width, int) or not need <= acc_width <= 64:
            raise ValueError(f"Accumulator width must be an integer from {need} to 64 for "
                             f"k_max {k_max}, not {acc_width!r}")
        if rounding not in ROUNDING_MODES:
            raise ValueError(f"Rounding must be one of {ROUNDING_MODES!r}, not {rounding!r}")
        if (not isinstance(acc_depth, int) or acc_depth < 2 or acc_depth & (acc_depth - 1)):
            raise ValueError(f"Accumulator depth must be a power of two >= 2, not {acc_depth!r}")
        if not isinstance(res_depth, int) or res_depth < rows:
            raise ValueError(f"Result FIFO depth must be an integer >= rows ({rows}), "
                             f"not {res_depth!r}")
        self.rows, self.cols, self.dataflow = rows, cols, Dataflow(dataflow)
        self.k_max, self.acc_width, self.rounding = k_max, acc_width, rounding
        if requant_lanes is None:
            requant_lanes = -(-cols // 4)
        if (not isinstance(requant_lanes, int) or isinstance(requant_lanes, bool)
                or not 1 <= requant_lanes <= cols):
            raise ValueError(f"Requantizer lanes must be an integer from 1 to cols ({cols}), "
                             f"not {requant_lanes!r}")
        if dsp_primitive != "none" and self.dataflow.pick(ws=False, os=True):
            raise ValueError("DSP primitive PEs are weight-stationary only")
        if not (pe_product_reg and pe_weight_reg) and self.dataflow.pick(ws=False, os=True):
            raise ValueError("An output-stationary PE has no product or weight register to "
                             "leave out (pe_product_reg and pe_weight_reg are ws-only)")
        if operand_isolation and not array_input_reg:
            raise ValueError("Operand isolation needs the array's input register "
                             "(array_input_reg), which holds the operands")
        self.acc_depth, self.res_depth = acc_depth, res_depth
        self.requant_lanes = requant_lanes
        self.lane_bits = 8 * ((acc_width + 7) // 8)
        iso = bool(operand_isolation)

        # The one place the dataflow chooses: the array and the sequencer that feeds it.
        array_cls, seq_cls, array_kw, seq_kw = self.dataflow.pick(
            ws=(WeightStationaryArray, WeightStationarySequencer,
                {"product_reg": pe_product_reg, "weight_reg": pe_weight_reg,
                 "dsp_primitive": dsp_primitive},
                {"isolate": iso} if iso else {}),
            os=(OutputStationaryArray, OutputStationarySequencer, {"acc_width": acc_width}, {}))
        self._array = array_cls(rows=rows, cols=cols, input_reg=array_input_reg, isolate=iso,
                                **array_kw)
        self._sequencer = seq_cls(rows=rows, cols=cols, acc_depth=acc_depth,
                                  res_depth=res_depth,
                                  tag_delay=self._array.latency - Accumulator.tag_lead, **seq_kw)
        self._decoder = CommandDecoder(cols=cols, k_max=k_max, acc_depth=acc_depth)
        self._params = ParameterSlots(cols=cols)
        self._accumulator = Accumulator(rows=rows, cols=cols, acc_width=acc_width,
                                        acc_depth=acc_depth,
                                        c_width=self._array.c.shape().elem_shape.width,
                                        isolate=iso)
        self._results = ResultQueue(rows=rows, cols=cols, acc_width=acc_width, depth=res_depth,
                                    lanes=requant_lanes, rounding=rounding,
                                    pp_bits=requant_pp_bits)
        super().__init__({
            "cmd": In(stream.Signature(unsigned(isa.CMD_WIDTH))),
            "status": Out(stream.Signature(unsigned(isa.STATUS_WIDTH))),
            "act": In(stream.Signature(beat_layout(rows))),
            "wgt": In(stream.Signature(beat_layout(cols))),
            "res": Out(self._results.o.signature),
        })

    @classmethod
    def from_config(cls, cfg) -> "GemmEngine":
        """Build the engine of a :class:`npugen.hw.config.GemmConfig` (or a namespace with its
        fields; ``requant_lanes`` absent or None is derived)."""
        return cls(rows=cfg.rows, cols=cfg.cols, dataflow=cfg.dataflow, k_max=cfg.k_max,
                   acc_width=cfg.acc_bits, rounding=cfg.rounding, acc_depth=cfg.acc_depth,
                   res_depth=cfg.res_depth, requant_lanes=getattr(cfg, "requant_lanes", None),
                   requant_pp_bits=getattr(cfg, "requant_pp_bits", GemmConfig.requant_pp_bits),
                   pe_product_reg=getattr(cfg, "pe_product_reg", True),
                   pe_weight_reg=getattr(cfg, "pe_weight_reg", True),
                   array_input_reg=getattr(cfg, "array_input_reg", True),
                   dsp_primitive=getattr(cfg, "dsp_primitive", "none"),
                   operand_isolation=getattr(cfg, "operand_isolation", False))

    @property
    def latencies(self) -> dict[str, int]:
        """Pipeline latencies, cycles.

        ``array``: a ws row of A (or, in os, a tile's last K step) entering the array to its
        (first) row of C leaving it; ``back_end_raw``: that row to its result beat offered
        (accumulate, the result FIFO) when the FIFO is empty; ``back_end_requant``: the same for a requant
        row of at most ``requant_lanes`` columns (one slice through the requantizer; each
        further slice adds a cycle); ``requant``: the requantizer alone.
        """
        back_end = self._accumulator.latency + self._results.latency
        rq = self._results.requant.latency      # its input register included
        return {
            "array": self._array.latency,
            "back_end_raw": back_end,
            "back_end_requant": back_end + rq,
            "requant": rq,
        }

    def elaborate(self, platform):
        m = Module()
        m.submodules.decoder = dec = self._decoder
        m.submodules.params = params = self._params
        m.submodules.sequencer = seq = self._sequencer
        m.submodules.array = array = self._array
        m.submodules.accumulator = acc = self._accumulator
        m.submodules.results = res = self._results

        # Commands in, status out; the job's start, fields and end.
        wiring.connect(m, wiring.flipped(self.cmd), dec.cmd)
        wiring.connect(m, dec.status, wiring.flipped(self.status))
        m.d.comb += [seq.start.eq(dec.start), seq.job.eq(dec.job),
                     acc.job.eq(dec.job), dec.frame_err.eq(seq.frame_err),
                     dec.done.eq(res.o_job_end | acc.o_held)]

        # Data streams into the sequencer, and from it the array, the parameter slots and the
        # row tags.
        wiring.connect(m, wiring.flipped(self.act), seq.act)
        wiring.connect(m, wiring.flipped(self.wgt), seq.wgt)
        wiring.connect(m, seq.param, params.w)
        m.d.comb += [getattr(array, name).eq(getattr(seq.array, name))
                     for name in seq.array.signature.members]
        m.d.comb += [acc.tag.eq(seq.tag), acc.c.eq(array.c)]

        # Back end: accumulate, queue, requantize (or not); credits back to the sequencer.
        wiring.connect(m, acc.params, params.r)
        wiring.connect(m, res.params, params.q)
        m.d.comb += [
            res.i_valid.eq(acc.o_finished), res.i_sum.eq(acc.o_sum),
            res.i_nc.eq(acc.o_tag.nc), res.i_last.eq(acc.o_tag.job_end),
            res.i_pslot.eq(acc.o_tag.pslot), res.i_ntile_end.eq(acc.o_tag.ntile_end),
            res.job.eq(dec.job),
            res.reserve.eq(seq.reserve), seq.reserved.eq(res.reserved),
        ]
        wiring.connect(m, res.o, wiring.flipped(self.res))
        return m
