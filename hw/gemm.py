"""The GEMM engine: command decode, tile sequencing, systolic array, accumulation, requantization.

The binary interface (command, status, stream orders) is ``docs/isa.md``; the numerics are
``docs/numerics.md``. Both dataflows share one back end: the array delivers finished rows of a
C tile, tagged with where they go; the back end adds the bias (and the held or partial
accumulator from the accumulator memory), writes partial sums back, and sends finished rows
through the requantizer (or raw) into the result FIFO.

Flow control: input streams are never stalled by the array itself. A cycle with no input beat is
a bubble that flows through the array tagged invalid. Results never stall the array either: a row
that will produce a result is only injected while the result FIFO has room reserved for it
(credits), so ``m_axis_res`` backpressure turns into input backpressure, never into data loss.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import isa
from .requant import ROUNDING_MODES, Requantizer
from .systolic import OutputStationaryArray, WeightStationaryArray, check_dims

__all__ = ["GemmEngine", "acc_width_for"]


def acc_width_for(k_max: int) -> int:
    """Accumulator width that no legal ``k_max``-term int8 dot product can overflow, bits.

    ``max(32, bit_length(16384 * k_max) + 1)`` (numerics.md: the only product reaching +2^14 is
    (-128)·(-128)).
    """
    return max(32, (16384 * k_max).bit_length() + 1)


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


class GemmEngine(wiring.Component):
    """Int8 GEMM engine on a ``rows`` × ``cols`` systolic array.

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
        Accumulator width, bits; at least :func:`acc_width_for` ``(k_max)``, at most 64.
    rounding : str
        Requantization rounding, ``"single"`` or ``"double"`` (numerics.md).
    acc_depth : int
        Rows of the accumulator memory (a power of two, >= 2): the largest row chunk of a ws job
        and the largest ``m`` of an ``acc_in``/``acc_out`` job.
    res_depth : int
        Depth of the result FIFO, beats; at least ``rows``. Full throughput with a result
        consumer that is always ready needs about the pipeline latency (``rows + cols + 8``).

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

    #: The area report's block (npugen.hw.blocks).
    report_block = "control"

    def __init__(self, *, rows: int, cols: int, dataflow: str = "ws", k_max: int = 4096,
                 acc_width: int | None = None, rounding: str = "single", acc_depth: int = 512,
                 res_depth: int = 64):
        check_dims(rows, cols)
        if dataflow not in ("ws", "os"):
            raise ValueError(f"Dataflow must be 'ws' or 'os', not {dataflow!r}")
        if not isinstance(k_max, int) or isinstance(k_max, bool) or not 1 <= k_max < 2 ** 24:
            raise ValueError(f"k_max must be an integer from 1 to {2 ** 24 - 1}, not {k_max!r}")
        need = acc_width_for(k_max)
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
        self.rows, self.cols, self.dataflow = rows, cols, dataflow
        self.k_max, self.acc_width, self.rounding = k_max, acc_width, rounding
        self.acc_depth, self.res_depth = acc_depth, res_depth
        self.lane_bits = 8 * ((acc_width + 7) // 8)
        self._requant = Requantizer(lanes=cols, acc_width=acc_width, rounding=rounding)
        if dataflow == "ws":
            self._array = WeightStationaryArray(rows=rows, cols=cols)
        else:
            self._array = OutputStationaryArray(rows=rows, cols=cols, acc_width=acc_width)

        def beat(lanes):
            return data.StructLayout({"data": data.ArrayLayout(signed(8), lanes),
                                      "keep": unsigned(lanes), "last": unsigned(1)})
        super().__init__({
            "cmd": In(stream.Signature(unsigned(isa.CMD_WIDTH))),
            "status": Out(stream.Signature(unsigned(isa.STATUS_WIDTH))),
            "act": In(stream.Signature(beat(rows))),
            "wgt": In(stream.Signature(beat(cols))),
            "res": Out(stream.Signature(data.StructLayout({
                "data": unsigned(self.lane_bits * cols),
                "keep": unsigned(self.lane_bits * cols // 8),
                "last": unsigned(1)}))),
        })

    @classmethod
    def from_config(cls, cfg) -> "GemmEngine":
        """Build the engine of a :class:`hw.config.GemmConfig`."""
        return cls(rows=cfg.rows, cols=cfg.cols, dataflow=cfg.dataflow, k_max=cfg.k_max,
                   acc_width=cfg.acc_bits, rounding=cfg.rounding, acc_depth=cfg.acc_depth,
                   res_depth=cfg.res_depth)

    @property
    def latencies(self) -> dict[str, int]:
        """Pipeline latencies, cycles.

        ``array``: a ws row of A (or, in os, a tile's last K step) entering the array to its
        (first) row of C leaving it; ``back_end``: that row to the result FIFO's input
        (accumulate, then requantize or not); ``requant``: the requantizer alone.
        """
        return {
            "array": self._array.latency,
            "back_end_raw": 2,
            "back_end_requant": 2 + self._requant.latency,
            "requant": self._requant.latency,
        }

    # -- helpers ---------------------------------------------------------------------------

    def _tag_layout(self):
        R, C = self.rows, self.cols
        return data.StructLayout({
            "valid": 1,
            "m": unsigned((self.acc_depth - 1).bit_length()),  # accumulator memory row
            "rows": unsigned((R).bit_length()),   # os: valid rows of the tile
            "nc": unsigned(C.bit_length()),       # valid columns of the tile
            "first": 1,      # first K tile: start from the bias
            "last": 1,       # last K tile: the row is finished
            "pslot": 1,      # parameter slot
            "ntile_end": 1,  # the column tile's last row: frees its parameter slot
            "job_end": 1,    # the job's last row
        })

    def elaborate(self, platform):
        m = Module()
        R, C, W = self.rows, self.cols, self.acc_width
        m.submodules.array = array = self._array
        m.submodules.requant = rq = self._requant

        # -- command decode -----------------------------------------------------------------
        word = self.cmd.payload
        f = {}
        for name, fld in isa.CMD_FIELDS.items():
            v = word[fld.lsb:fld.lsb + fld.width]
            f[name] = v.as_signed() if fld.signed else v
        reserved = isa.reserved_mask(isa.CMD_FIELDS, isa.CMD_WIDTH)

        job = {name: Signal.like(f[name], name=f"job_{name}")
               for name in ("requant", "acc_in", "acc_out", "tag", "m", "k", "n",
                            "zp_out", "act_min", "act_max")}
        held = Signal()
        held_m = Signal(24)
        held_n = Signal(24)

        err = Signal(8)
        acc_job = f["acc_in"] | f["acc_out"]
        with m.If(f["opcode"] != isa.Opcode.GEMM):
            m.d.comb += err.eq(isa.Error.BAD_OPCODE)
        with m.Elif(f["version"] != isa.ISA_VERSION):
            m.d.comb += err.eq(isa.Error.BAD_VERSION)
        with m.Elif((word & reserved) != 0):
            m.d.comb += err.eq(isa.Error.BAD_RESERVED)
        with m.Elif((f["m"] == 0) | (f["k"] == 0) | (f["n"] == 0) | (f["k"] > self.k_max)):
            m.d.comb += err.eq(isa.Error.BAD_SHAPE)
        with m.Elif(f["requant"] & (f["act_min"] > f["act_max"])):
            m.d.comb += err.eq(isa.Error.BAD_CLAMP)
        with m.Elif((acc_job & ((f["m"] > self.acc_depth) | (f["n"] > C)))
                    | (f["acc_in"] & ~(held & (held_m == f["m"]) & (held_n == f["n"])))
                    | (f["acc_out"] & f["requant"])):
            m.d.comb += err.eq(isa.Error.BAD_ACC)

        start = Signal()          # one cycle: an accepted, valid command
        done = Signal()           # one cycle: the running job has finished
        frame_err = Signal()      # sticky per job
        frame_set = Signal()
        cycles = Signal(32)
        status_err = Signal(8)

        with m.FSM(name="job"):
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += cycles.eq(1)
                    m.d.sync += job["tag"].eq(f["tag"])
                    with m.If(err != 0):
                        m.d.sync += status_err.eq(err)
                        m.next = "STATUS"
                    with m.Else():
                        m.d.comb += start.eq(1)
                        m.d.sync += [job[k].eq(f[k]) for k in job]
                        m.d.sync += [held.eq(0), frame_err.eq(0)]
                        m.next = "RUN"
            with m.State("RUN"):
                m.d.sync += cycles.eq(cycles + (cycles != 0xFFFF_FFFF))
                with m.If(frame_set):
                    m.d.sync += frame_err.eq(1)
                with m.If(done):
                    m.d.sync += status_err.eq(Mux(frame_err | frame_set, isa.Error.FRAME,
                                                  isa.Error.OK))
                    with m.If(job["acc_out"] & ~frame_err & ~frame_set):
                        m.d.sync += [held.eq(1), held_m.eq(job["m"]), held_n.eq(job["n"])]
                    m.next = "STATUS"
            with m.State("STATUS"):
                m.d.comb += [
                    self.status.valid.eq(1),
                    self.status.payload.eq(Cat(status_err, Const(isa.ISA_VERSION, 8),
                                               job["tag"], Const(0, 8), cycles)),
                ]
                with m.If(self.status.ready):
                    m.next = "IDLE"

        # -- parameter slots (bias, multiplier, shift per column), double-buffered ------------
        bias = [[Signal(signed(32), name=f"bias{s}_{c}") for c in range(C)] for s in range(2)]
        mult = [[Signal(signed(32), name=f"mult{s}_{c}") for c in range(C)] for s in range(2)]
        shift = [[Signal(signed(8), name=f"shift{s}_{c}") for c in range(C)] for s in range(2)]
        pslot_busy = Signal(2)
        pslot_set = Signal(2)
        pslot_clr = Signal(2)
        m.d.sync += pslot_busy.eq((pslot_busy | pslot_set) & ~pslot_clr)

        wgt_lanes = [Mux(self.wgt.payload.keep[c], self.wgt.payload.data[c], 0) for c in range(C)]
        act_lanes = [Mux(self.act.payload.keep[r], self.act.payload.data[r], 0) for r in range(R)]

        def load_param(slot, beat):
            """Store the current wgt beat as parameter beat ``beat`` of slot ``slot``."""
            for s in range(2):
                with m.If(slot == s):
                    with m.Switch(beat):
                        for b in range(isa.PARAM_BEATS):
                            with m.Case(b):
                                for c in range(C):
                                    if b < 4:
                                        dst = bias[s][c].as_unsigned()[8 * b:8 * b + 8]
                                    elif b < 8:
                                        dst = mult[s][c].as_unsigned()[8 * (b - 4):8 * (b - 4) + 8]
                                    else:
                                        dst = shift[s][c]
                                    m.d.sync += dst.eq(wgt_lanes[c])

        def param_states(slot, beat, frame, then):
            """The ``PARAM_WAIT`` and ``PARAM`` states of a sequencer: wait until parameter slot
            ``slot`` is free, store the parameter block from the weight stream into it (``beat``
            counts its beats, ``frame`` flags a misplaced ``tlast``), then go to state ``then``."""
            with m.State("PARAM_WAIT"):
                with m.If(~pslot_busy.bit_select(slot, 1)):
                    m.d.sync += beat.eq(0)
                    m.next = "PARAM"
            with m.State("PARAM"):
                m.d.comb += self.wgt.ready.eq(1)
                with m.If(self.wgt.valid):
                    load_param(slot, beat)
                    m.d.comb += frame.eq(self.wgt.payload.last != (beat == isa.PARAM_BEATS - 1))
                    m.d.sync += beat.eq(beat + 1)
                    with m.If(beat == isa.PARAM_BEATS - 1):
                        m.d.comb += pslot_set.eq(Mux(slot, 0b10, 0b01))
                        m.next = then

        # -- sequencing: the array's input side -----------------------------------------------
        tag_layout = self._tag_layout()
        tag_in = Signal(tag_layout)         # the tag of the row (ws) / tile (os) injected now
        outstanding = Signal(range(self.res_depth + 1))   # result FIFO entries reserved
        credit_take = Signal(range(R + 1))
        credit_give = Signal()

        if self.dataflow == "ws":
            self._ws_sequencer(m, f, job, start, array, tag_in, wgt_lanes, act_lanes,
                               param_states, outstanding, credit_take, frame_set)
            tags = [tag_in]
            for d in range(array.latency - 1):
                t = Signal(tag_layout, name=f"tag_d{d + 1}")
                m.d.sync += t.eq(tags[-1])
                tags.append(t)
            tag_early = tags[array.latency - 2]     # two cycles before the row leaves the array
            tag_pre = tags[array.latency - 1]       # one cycle before
        else:
            self._os_sequencer(m, f, job, start, array, tag_in, wgt_lanes, act_lanes,
                               param_states, outstanding, credit_take, frame_set)
            tags = [tag_in]
            for d in range(array.latency - 1):
                t = Signal(tag_layout, name=f"tag_d{d + 1}")
                m.d.sync += t.eq(tags[-1])
                tags.append(t)
            tile = tags[array.latency - 2]
            # Expand a tile's tag into one tag per row (row i leaves the array i cycles after
            # row 0), two cycles before the row leaves the array: tag_early; tag_pre is it
            # registered.
            ex_tag = Signal(tag_layout)
            ex_row = Signal(range(R + 1))
            base = Signal(tag_layout)
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
            tag_early = Signal(tag_layout)
            row_valid = (tile.valid | (ex_row != 0)) & base.valid & (row < base.rows)
            is_last_row = row == base.rows - 1
            m.d.comb += [
                tag_early.eq(base),
                tag_early.valid.eq(row_valid),
                tag_early.m.eq(base.m + row),
                tag_early.ntile_end.eq(base.ntile_end & is_last_row),
                tag_early.job_end.eq(base.job_end & is_last_row),
            ]
            tag_pre = Signal(tag_layout)
            m.d.sync += tag_pre.eq(tag_early)

        # -- back end: s0 (accumulate) -> s1 (write back / requantize / raw) -> FIFO -----------
        acc_layout = data.ArrayLayout(signed(W), C)
        m.submodules.acc_mem = acc_mem = Memory(shape=acc_layout, depth=self.acc_depth, init=[])
        wr = acc_mem.write_port()
        rd = acc_mem.read_port(transparent_for=(wr,))
        # The row's accumulator is read two cycles before s0 and the block RAM's data is
        # registered (rd_q), so that no adder follows the RAM's clock-to-out in the same cycle
        # (the 2 x 2 ECP5 critical path, docs/area.md). Writes reach s0 from: the memory (up to
        # the cycle before the read), the read port's transparency (the read's cycle), rd_q's
        # bypass (the cycle after: the row at s1 then), and the forward below (s0's cycle).
        m.d.comb += rd.addr.eq(tag_early.m)

        t0 = Signal(tag_layout)
        m.d.sync += t0.eq(tag_pre)
        t1 = Signal(tag_layout)
        s1_sum = Signal(acc_layout)
        s1_writes = Signal()
        m.d.comb += s1_writes.eq(t1.valid & (~t1.last | job["acc_out"]))
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
        m.d.sync += forward.eq(t0.valid & (~t0.last | job["acc_out"]) & (t0.m == tag_pre.m))
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
        m.d.sync += keep_prev.eq(~tag_pre.first | job["acc_in"])
        for c in range(C):
            b = Mux(t0.pslot, bias[1][c], bias[0][c])
            m.d.comb += s0_sum[c].eq(Mux(keep_prev, prev[c], 0)
                                     + (array.c[c] + Mux(t0.first, b, 0)))
        m.d.sync += [t1.eq(t0), s1_sum.eq(s0_sum)]
        m.d.comb += [wr.en.eq(s1_writes), wr.addr.eq(t1.m), wr.data.eq(s1_sum)]
        for s in range(2):
            m.d.comb += pslot_clr[s].eq(t1.valid & t1.ntile_end & (t1.pslot == s))

        finished = t1.valid & t1.last & ~job["acc_out"]
        m.d.comb += [
            rq.i_valid.eq(finished & job["requant"]),
            rq.i_acc.eq(s1_sum),
            rq.i_zp_out.eq(job["zp_out"]),
            rq.i_act_min.eq(job["act_min"]),
            rq.i_act_max.eq(job["act_max"]),
        ]
        # The row's multiplier and shift, selected from its parameter slot a cycle ahead (at s0)
        # and registered beside s1_sum, so that the slot mux is not in front of the
        # requantizer's product (the 4 x 4 ECP5 critical path, docs/area.md). The slot cannot
        # change in between: it stays busy until the tile's last row has passed s1.
        for c in range(C):
            rq_mult = Signal(signed(32), name=f"rq_mult_{c}")
            rq_shift = Signal(signed(8), name=f"rq_shift_{c}")
            m.d.sync += [
                rq_mult.eq(Mux(t0.pslot, mult[1][c], mult[0][c])),
                rq_shift.eq(Mux(t0.pslot, shift[1][c], shift[0][c])),
            ]
            m.d.comb += [rq.i_multiplier[c].eq(rq_mult), rq.i_shift[c].eq(rq_shift)]
        # The requantizer's row tags.
        rq_tags = [t1]
        for d in range(rq.latency):
            t = Signal(tag_layout, name=f"rq_tag_d{d + 1}")
            m.d.sync += t.eq(rq_tags[-1])
            rq_tags.append(t)
        rq_tag = rq_tags[-1]

        L = self.lane_bits
        fifo_layout = data.StructLayout({"data": unsigned(L * C), "nc": unsigned(C.bit_length()),
                                         "last": 1})
        # One entry more than the credits: SyncFIFOBuffered is a SyncFIFO of depth - 1 plus an
        # output register, and an entry in transit between the two would otherwise block a
        # write that the credits allow.
        m.submodules.res_fifo = fifo = SyncFIFOBuffered(width=fifo_layout.size,
                                                        depth=self.res_depth + 1)
        w_entry = Signal(fifo_layout)
        lanes = [Signal(signed(L), name=f"res_lane{c}") for c in range(C)]
        # Result lanes are L bits wide in both modes; an int8 result is sign-extended.
        with m.If(rq.o_valid):
            m.d.comb += [lanes[c].eq(Mux(c < rq_tag.nc, rq.o_data[c], 0)) for c in range(C)]
            m.d.comb += [w_entry.nc.eq(rq_tag.nc), w_entry.last.eq(rq_tag.job_end),
                         fifo.w_en.eq(1)]
        with m.Elif(finished & ~job["requant"]):
            m.d.comb += [lanes[c].eq(Mux(c < t1.nc, s1_sum[c], 0)) for c in range(C)]
            m.d.comb += [w_entry.nc.eq(t1.nc), w_entry.last.eq(t1.job_end), fifo.w_en.eq(1)]
        m.d.comb += w_entry.data.eq(Cat(lanes))
        m.d.comb += fifo.w_data.eq(w_entry)

        r_entry = Signal(fifo_layout)
        m.d.comb += [r_entry.eq(fifo.r_data), self.res.valid.eq(fifo.r_rdy),
                     fifo.r_en.eq(self.res.ready),
                     self.res.payload.data.eq(r_entry.data),
                     self.res.payload.last.eq(r_entry.last)]
        keep = [(byte // (L // 8)) < r_entry.nc for byte in range(L * C // 8)]
        m.d.comb += self.res.payload.keep.eq(Cat(keep))

        m.d.comb += credit_give.eq(self.res.valid & self.res.ready)
        m.d.sync += outstanding.eq(outstanding + credit_take - credit_give)

        m.d.comb += done.eq((credit_give & self.res.payload.last)
                            | (t1.valid & t1.job_end & job["acc_out"]))
        return m

    # -- weight-stationary sequencing ---------------------------------------------------------

    def _ws_sequencer(self, m, f, job, start, array, tag_in, wgt_lanes, act_lanes, param_states,
                      outstanding, credit_take, frame_set):
        R, C, D = self.rows, self.cols, self.acc_depth
        wbuf_full = Signal(2)
        wbuf_set = Signal(2)
        wbuf_clr = Signal(2)
        m.d.sync += wbuf_full.eq((wbuf_full | wbuf_set) & ~wbuf_clr)
        # Weight loads are skewed like the rows of A (hw/systolic.py), so a weight tile can be
        # reloaded from the cycle after its last row of A entered the array.
        frame_ld = Signal()
        frame_is = Signal()
        m.d.comb += frame_set.eq(frame_ld | frame_is)

        # Loader: parameter blocks and weight tiles from the weight stream.
        l_n = _Countdown("ld_n_left", C)
        l_m = _Countdown("ld_m_left", D)
        l_k = _Countdown("ld_k_left", R)
        l_buf = Signal(name="ld_buf")
        l_slot = Signal(name="ld_slot")
        l_beat = Signal(range(max(R, isa.PARAM_BEATS) + 1), name="ld_beat")
        l_kc = l_k.clip
        with m.FSM(name="ws_loader"):
            with m.State("IDLE"):
                with m.If(start):
                    l_n.load(m, f["n"])
                    l_m.load(m, f["m"])
                    l_k.load(m, f["k"])
                    m.d.sync += [l_buf.eq(0), l_slot.eq(0)]
                    m.next = "PARAM_WAIT"
            param_states(l_slot, l_beat, frame_ld, then="BUF_WAIT")
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
                        frame_ld.eq(self.wgt.payload.last != last_beat),
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
                            l_k.load(m, job["k"])
                            with m.If(~l_m.last):
                                l_m.advance(m)
                                m.next = "BUF_WAIT"
                            with m.Else():
                                l_m.load(m, job["m"])
                                with m.If(~l_n.last):
                                    l_n.advance(m)
                                    m.d.sync += l_slot.eq(~l_slot)
                                    m.next = "PARAM_WAIT"
                                with m.Else():
                                    m.next = "IDLE"

        # Issuer: rows of A into the array, one per cycle, tagged.
        i_n = _Countdown("is_n_left", C)
        i_m = _Countdown("is_m_left", D)
        i_k = _Countdown("is_k_left", R, lanes=True)
        i_buf = Signal(name="is_buf")
        i_slot = Signal(name="is_slot")
        i_row = Signal(range(D), name="is_row")
        mc, nc = i_m.clip, i_n.clip
        last_k, last_m, last_n = i_k.last, i_m.last, i_n.last
        last_row = i_row == mc - 1
        producing = last_k & ~job["acc_out"]
        room = ~producing | (outstanding < self.res_depth)
        # The array takes the tile of this cycle's row of A and of the next one: i_buf and
        # its next value.
        i_buf_clear = Signal()
        i_buf_flip = Signal()
        i_buf_next = Signal()
        m.d.comb += i_buf_next.eq(Mux(i_buf_clear, 0, i_buf ^ i_buf_flip))
        m.d.sync += i_buf.eq(i_buf_next)
        m.d.comb += [array.sel.eq(i_buf), array.sel_next.eq(i_buf_next)]

        def goto_next(next_ready):
            with m.If(next_ready):
                m.next = "ROWS"
            with m.Else():
                m.next = "WAIT"

        with m.FSM(name="ws_issuer"):
            with m.State("IDLE"):
                with m.If(start):
                    i_n.load(m, f["n"])
                    i_m.load(m, f["m"])
                    i_k.load(m, f["k"])
                    m.d.comb += i_buf_clear.eq(1)
                    m.d.sync += [i_slot.eq(0), i_row.eq(0)]
                    m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(wbuf_full.bit_select(i_buf, 1)):
                    m.next = "ROWS"
            with m.State("ROWS"):
                m.d.comb += self.act.ready.eq(room)
                with m.If(self.act.valid & room):
                    m.d.comb += [array.a[r].eq(Mux(i_k.lanes[r], act_lanes[r], 0)) for r in range(R)]
                    m.d.comb += [
                        tag_in.valid.eq(1), tag_in.m.eq(i_row), tag_in.rows.eq(1),
                        tag_in.nc.eq(nc),
                        tag_in.first.eq(i_k.fresh), tag_in.last.eq(last_k),
                        tag_in.pslot.eq(i_slot),
                        tag_in.ntile_end.eq(last_row & last_k & last_m),
                        tag_in.job_end.eq(last_row & last_k & last_m & last_n),
                        credit_take.eq(producing),
                        frame_is.eq(self.act.payload.last != last_row),
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
                            i_k.load(m, job["k"])
                            with m.If(~last_m):
                                i_m.advance(m)
                                goto_next(next_ready)
                            with m.Else():
                                i_m.load(m, job["m"])
                                with m.If(~last_n):
                                    i_n.advance(m)
                                    m.d.sync += i_slot.eq(~i_slot)
                                    goto_next(next_ready)
                                with m.Else():
                                    m.next = "IDLE"

    # -- output-stationary sequencing ---------------------------------------------------------

    def _os_sequencer(self, m, f, job, start, array, tag_in, wgt_lanes, act_lanes, param_states,
                      outstanding, credit_take, frame_set):
        R, C, D = self.rows, self.cols, self.acc_depth
        o_n = _Countdown("os_n_left", C)
        o_m = _Countdown("os_m_left", R, lanes=True)
        o_m0 = Signal((D - 1).bit_length(), name="os_m0")
        o_kb = Signal(24, name="os_k_step")
        o_slot = Signal(name="os_slot")
        o_beat = Signal(range(isa.PARAM_BEATS + 1), name="os_beat")
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
        last_step = o_kb == job["k"] - 1
        producing = ~job["acc_out"]
        room = ~last_step | ((since == R) & (~producing | (outstanding + mr <= self.res_depth)))
        frame_a = Signal()
        frame_w = Signal()
        frame_p = Signal()
        m.d.comb += frame_set.eq(frame_a | frame_w | frame_p)
        with m.FSM(name="os_sequencer"):
            with m.State("IDLE"):
                with m.If(start):
                    o_n.load(m, f["n"])
                    o_m.load(m, f["m"])
                    m.d.sync += [o_m0.eq(0), o_kb.eq(0), o_slot.eq(0), since.eq(R)]
                    m.next = "PARAM_WAIT"
            param_states(o_slot, o_beat, frame_p, then="TILE")
            with m.State("TILE"):
                # One K step takes one beat of each stream, in the same cycle.
                m.d.comb += [self.act.ready.eq(self.wgt.valid & room),
                             self.wgt.ready.eq(self.act.valid & room)]
                with m.If(self.act.valid & self.wgt.valid & room):
                    m.d.comb += [array.a[r].eq(Mux(o_m.lanes[r], act_lanes[r], 0)) for r in range(R)]
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
                            tag_in.valid.eq(1), tag_in.m.eq(o_m0), tag_in.rows.eq(mr),
                            tag_in.nc.eq(nc), tag_in.first.eq(1), tag_in.last.eq(1),
                            tag_in.pslot.eq(o_slot), tag_in.ntile_end.eq(last_m),
                            tag_in.job_end.eq(last_m & last_n),
                            credit_take.eq(Mux(producing, mr, 0)),
                        ]
                        m.d.sync += o_kb.eq(0)
                        with m.If(~last_m):
                            o_m.advance(m)
                            m.d.sync += o_m0.eq(o_m0 + R)
                        with m.Else():
                            o_m.load(m, job["m"])
                            m.d.sync += o_m0.eq(0)
                            with m.If(~last_n):
                                o_n.advance(m)
                                m.d.sync += o_slot.eq(~o_slot)
                                m.next = "PARAM_WAIT"
                            with m.Else():
                                m.next = "IDLE"
