"""Streaming integer softmax (OSI8, ``docs/osi8.md``): int8 scores in, int8
probabilities out (scale 1/256, zero point -128).

Each row is streamed twice. Pass 1 computes the row state (the running max ``m`` and the
denominator ``L``) tile by tile with the online max and LUT rescale; pass 2 re-streams the same row
and turns each score into ``y = clamp(round_div(E[m - s] * 2^8, L) - 128, -128, 127)`` with an
exact divider. The state is the same whatever the row length (up to ``n_max`` keys); the row is
never stored, so the cost of the second pass is the host streaming the row again (no buffer).

:class:`SoftmaxUnit` is a composition of stages, each a component of its own:

- :class:`SoftmaxLut`: the table ``E[k]``, one synchronous read port per lane plus one for the
  rescale factor (run-time load or ROM);
- :class:`SoftmaxTileBuffer`: pass 1's two tile buffers and the running tile max;
- :class:`SoftmaxRowState`: the online max ``m``, the rescale and the denominator ``L``
  (osi8.md steps 1-3), and the LUT addresses of both passes;
- :class:`SoftmaxDivider`: the exact restoring divider ``round_div(e * 2^8, L)``;
- :class:`SoftmaxOutput`: quotient to int8 probability, the output FIFO and its credits.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["SoftmaxUnit", "softmax_widths", "ceil_log2", "SoftmaxLut", "SoftmaxTileBuffer",
           "SoftmaxRowState", "SoftmaxDivider", "SoftmaxOutput"]


def ceil_log2(x: int) -> int:
    """``ceil(log2(x))`` for an integer ``x >= 1``, exactly (no floating point: ``math.log2``
    rounds ``2^54 + 1`` down to ``2^54``)."""
    if not isinstance(x, int) or x < 1:
        raise ValueError(f"x must be a positive integer, not {x!r}")
    return (x - 1).bit_length()


def softmax_widths(F: int, n_max: int) -> dict[str, int]:
    """Register widths of osi8.md, bits: ``W_L = ceil(log2(n_max * 2^F + 1))`` (the denominator,
    unsigned: ``L <= n_max * 2^F``), ``W_A = ceil(log2(255 * n_max * 2^F + 1)) + 1`` (an
    attention numerator, signed) and ``W_E = F + 1`` (a LUT entry).

    The hardware side's only copy of these formulas (:func:`npugen.hw.attention.attention_widths`
    calls it); the golden model keeps its own (``npugen.sim.golden.softmax.widths``)."""
    return {"W_L": ceil_log2(n_max * 2 ** F + 1),
            "W_A": ceil_log2(255 * n_max * 2 ** F + 1) + 1, "W_E": F + 1}


def _beat_layout(P: int) -> data.StructLayout:
    """A pass-1 beat as the tile buffer keeps it: scores and ``on = keep & mask``."""
    return data.StructLayout({"data": data.ArrayLayout(signed(8), P), "on": unsigned(P)})


def _tile_beat_layout(P: int) -> data.StructLayout:
    """A beat read back from the tile buffer, with its tile's summary."""
    return data.StructLayout({"data": data.ArrayLayout(signed(8), P), "on": unsigned(P),
                              "first": 1, "last": 1, "row_end": 1, "max": signed(8), "any": 1})


def _ctl_layout(P: int) -> data.StructLayout:
    """Pass-2 side information travelling beside the divider."""
    return data.StructLayout({"valid": 1, "keep": unsigned(P), "on": unsigned(P), "last": 1})


class SoftmaxLut(wiring.Component):
    """The OSI8 exponent table ``E[0]`` … ``E[255]`` (``F + 1`` bits unsigned each, ``E[0] =
    2^F``), with ``ports`` synchronous read ports.

    Parameters
    ----------
    F : int
        LUT fraction bits.
    ports : int
        Read ports.
    rom : list of int or None
        256 entries to bake as a ROM, or None for a table loaded through :attr:`load`.

    Members
    -------
    load : In(stream.Signature(unsigned(32)))
        Only without ``rom``. Always ready; each beat writes the next entry (the index wraps
        after 256 beats and restarts at reset). An entry above ``2^F`` is stored as ``2^F``.
    addr : In(ArrayLayout(unsigned(8), ports))
        Read addresses ``k``.
    data : Out(ArrayLayout(unsigned(F + 1), ports))
        ``E[k]`` of the address of :attr:`latency` cycles before (not transparent to a write in
        the same cycle).
    """

    report_block = "softmax"

    #: Cycles from an address to its entry.
    latency = 1

    def __init__(self, *, F: int, ports: int, rom=None):
        self.F, self.ports, self.rom = F, ports, rom
        members = {"addr": In(data.ArrayLayout(unsigned(8), ports)),
                   "data": Out(data.ArrayLayout(unsigned(F + 1), ports))}
        if rom is None:
            members["load"] = In(stream.Signature(unsigned(32)))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        F = self.F
        m.submodules.mem = mem = Memory(shape=unsigned(F + 1), depth=256,
                                        init=self.rom if self.rom is not None else [])
        rd = [mem.read_port(transparent_for=()) for _ in range(self.ports)]
        for p, port in enumerate(rd):
            m.d.comb += [port.addr.eq(self.addr[p]), self.data[p].eq(port.data)]
        if self.rom is None:
            wr = mem.write_port()
            idx = Signal(8)
            entry = self.load.payload
            m.d.comb += [self.load.ready.eq(1), wr.addr.eq(idx),
                         wr.data.eq(Mux(entry > (1 << F), 1 << F, entry)),
                         wr.en.eq(self.load.valid)]
            with m.If(self.load.valid):
                m.d.sync += idx.eq(idx + 1)
        return m


class SoftmaxTileBuffer(wiring.Component):
    """Pass 1's input side: two tile buffers of ``B / lanes`` beats and the running tile max.

    One tile fills while the other is read back. A tile ends after ``B / lanes`` beats or on a
    beat with ``last``; its max over the attended lanes (``on``) and whether it has any are
    kept beside it.

    Parameters
    ----------
    lanes : int
        Scores per beat.
    B : int
        Key tile width, a multiple of ``lanes``.

    Members
    -------
    i : In(stream.Signature(StructLayout({"data": ArrayLayout(signed(8), lanes),
        "on": unsigned(lanes), "last": 1})))
        Pass-1 beats; ``on`` = keep & mask (True = attend), ``last`` ends the row. Ready while
        the slot being filled is free (ready does not depend on valid).
    o : Out(stream.Signature(StructLayout({"data", "on", "first", "last", "row_end",
        "max": signed(8), "any": 1})))
        The beats of complete tiles, in order, one per transfer: ``first``/``last`` mark a
        tile's first and last beat, ``row_end`` a tile that ends its row, ``max`` and ``any``
        the tile's max over its attended scores and whether it has one (unspecified ``max``
        without). A tile's beats become valid the cycle after its last beat is accepted
        (:attr:`latency`); a slot is free again the cycle after its last beat is read.
    """

    report_block = "softmax"

    #: Cycles from a tile's last beat accepted to its first beat valid on :attr:`o`.
    latency = 1

    def __init__(self, *, lanes: int, B: int):
        self.lanes, self.B = lanes, B
        P = lanes
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(signed(8), P), "on": unsigned(P), "last": 1}))),
            "o": Out(stream.Signature(_tile_beat_layout(P))),
        })

    def elaborate(self, platform):
        m = Module()
        P, B = self.lanes, self.B
        beats_per_tile = B // P
        beat_layout = _beat_layout(P)
        tiles = [[Signal(beat_layout, name=f"tile{s}_{j}") for j in range(beats_per_tile)]
                 for s in range(2)]
        t_full = Signal(2)
        t_set = Signal(2)
        t_clr = Signal(2)
        m.d.sync += t_full.eq((t_full | t_set) & ~t_clr)
        t_max = [Signal(signed(8), name=f"tile{s}_max") for s in range(2)]
        t_any = [Signal(name=f"tile{s}_any") for s in range(2)]
        t_beats = [Signal(range(beats_per_tile + 1), name=f"tile{s}_beats") for s in range(2)]
        t_rowend = [Signal(name=f"tile{s}_row_end") for s in range(2)]

        # -- write side ---------------------------------------------------------------------
        w_slot = Signal()
        w_beat = Signal(range(beats_per_tile))
        run_max = Signal(signed(8))
        run_any = Signal()
        on = self.i.payload.on
        # Max over this beat's attended lanes, folded with the tile's running max.
        # One named signal per step: Amaranth does not share repeated subexpressions, so an
        # expression that used the previous step twice would double in size with each lane.
        beat_max = run_max
        beat_any = run_any
        for p in range(P):
            lane = self.i.payload.data[p]
            take = on[p] & (~beat_any | (lane > beat_max))
            step_max = Signal(signed(8), name=f"beat_max{p}")
            step_any = Signal(name=f"beat_any{p}")
            m.d.comb += [step_max.eq(Mux(take, lane, beat_max)), step_any.eq(beat_any | on[p])]
            beat_max, beat_any = step_max, step_any

        m.d.comb += self.i.ready.eq(~t_full.bit_select(w_slot, 1))
        with m.If(self.i.valid & self.i.ready):
            for s in range(2):
                with m.If(w_slot == s):
                    for j in range(beats_per_tile):
                        with m.If(w_beat == j):
                            m.d.sync += [tiles[s][j].data.eq(self.i.payload.data),
                                         tiles[s][j].on.eq(on)]
            end_tile = (w_beat == beats_per_tile - 1) | self.i.payload.last
            with m.If(end_tile):
                for s in range(2):
                    with m.If(w_slot == s):
                        m.d.sync += [t_max[s].eq(beat_max), t_any[s].eq(beat_any),
                                     t_beats[s].eq(w_beat + 1),
                                     t_rowend[s].eq(self.i.payload.last)]
                m.d.comb += t_set.eq(Mux(w_slot, 0b10, 0b01))
                m.d.sync += [w_slot.eq(~w_slot), w_beat.eq(0), run_any.eq(0), run_max.eq(0)]
            with m.Else():
                m.d.sync += [w_beat.eq(w_beat + 1), run_max.eq(beat_max), run_any.eq(beat_any)]

        # -- read side ----------------------------------------------------------------------
        r_slot = Signal()
        r_beat = Signal(range(beats_per_tile + 1))
        slot_beats = Mux(r_slot, t_beats[1], t_beats[0])
        last_beat = r_beat == slot_beats - 1
        beat_sel = Signal(beat_layout)
        for s in range(2):
            for j in range(beats_per_tile):
                with m.If((r_slot == s) & (r_beat == j)):
                    m.d.comb += beat_sel.eq(tiles[s][j])
        o = self.o.payload
        m.d.comb += [self.o.valid.eq(t_full.bit_select(r_slot, 1)),
                     o.data.eq(beat_sel.data), o.on.eq(beat_sel.on),
                     o.first.eq(r_beat == 0), o.last.eq(last_beat),
                     o.row_end.eq(Mux(r_slot, t_rowend[1], t_rowend[0])),
                     o.max.eq(Mux(r_slot, t_max[1], t_max[0])),
                     o.any.eq(Mux(r_slot, t_any[1], t_any[0]))]
        with m.If(self.o.valid & self.o.ready):
            with m.If(last_beat):
                m.d.comb += t_clr.eq(Mux(r_slot, 0b10, 0b01))
                m.d.sync += [r_slot.eq(~r_slot), r_beat.eq(0)]
            with m.Else():
                m.d.sync += r_beat.eq(r_beat + 1)
        return m


class SoftmaxRowState(wiring.Component):
    """The row state of pass 1 (osi8.md steps 1-3): the online max ``m``, the rescale of the
    denominator by ``r = E[t - m]`` when a tile's max ``t`` exceeds ``m``, and the denominator
    ``L += E[m - s]`` over the attended scores; and the LUT addresses ``m - s`` of both passes.

    Two stages: A (a tile beat taken: ``m`` updated, the LUT addressed) and B (the LUT entries:
    ``L`` updated).

    Parameters
    ----------
    lanes : int
        Scores per beat.
    F : int
        LUT fraction bits.
    W_L : int
        Width of ``L``, bits (:func:`softmax_widths`).

    Members
    -------
    i : In(stream.Signature(tile beat layout))
        Beats of complete tiles from :class:`SoftmaxTileBuffer`; always ready.
    p2_data : In(ArrayLayout(signed(8), lanes))
        Pass-2 scores: while no tile beat is valid, :attr:`lut_addr` lane ``p`` is
        ``m - p2_data[p]`` (pass 2 never overlaps pass 1's accumulation).
    lut_addr : Out(ArrayLayout(unsigned(8), lanes + 1))
        LUT addresses: lanes ``0 … lanes-1`` the exponent index ``m - s`` (in [0, 255] for an
        attended score: the difference is formed in 9 bits), lane ``lanes`` the rescale index
        ``t - m`` (0 when idle).
    lut_data : In(ArrayLayout(unsigned(F + 1), lanes + 1))
        The LUT entries, one cycle after their addresses.
    row_reset : In(1)
        Clears ``m_valid``, ``L`` and ``done`` for the next row (the last pass-2 beat taken).
    m : Out(signed(8))
        Running max over the attended scores so far (meaningful with ``m_valid``).
    m_valid : Out(1)
        Some attended score was seen in this row.
    L : Out(unsigned(W_L))
        Denominator, in units of ``2^-F``.
    done : Out(1)
        ``m`` and ``L`` are final for the row: :attr:`latency` cycles after the beat of the
        tile marked ``row_end`` was taken, until :attr:`row_reset`.
    """

    report_block = "softmax"

    #: Cycles from a tile beat taken to its exponents added into ``L``.
    latency = 2

    def __init__(self, *, lanes: int, F: int, W_L: int):
        self.lanes, self.F, self.W_L = lanes, F, W_L
        P = lanes
        super().__init__({
            "i": In(stream.Signature(_tile_beat_layout(P))),
            "p2_data": In(data.ArrayLayout(signed(8), P)),
            "lut_addr": Out(data.ArrayLayout(unsigned(8), P + 1)),
            "lut_data": In(data.ArrayLayout(unsigned(F + 1), P + 1)),
            "row_reset": In(1),
            "m": Out(signed(8)),
            "m_valid": Out(1),
            "L": Out(unsigned(W_L)),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        P, F, WL = self.lanes, self.F, self.W_L
        m_max, m_valid, L, pass1_done = self.m, self.m_valid, self.L, self.done
        beat = self.i.payload
        m.d.comb += self.i.ready.eq(1)

        # Stage A: the max update of osi8.md step 2 on a tile's first beat.
        first = beat.first
        m_new = Signal(signed(8))
        rescale = Signal()
        with m.If(first & beat.any & m_valid & (beat.max > m_max)):
            m.d.comb += [m_new.eq(beat.max), rescale.eq(1)]
        with m.Elif(first & beat.any & ~m_valid):
            m.d.comb += m_new.eq(beat.max)
        with m.Else():
            m.d.comb += m_new.eq(m_max)

        # Stage B registers (after the LUT read).
        b_valid = Signal()
        b_on = Signal(P)
        b_rescale = Signal()
        b_rowend = Signal()
        # LUT addresses: pass-1 accumulate and pass-2 lookups never overlap (pass 2 waits for
        # done), so they share the read ports.
        s_idx = [Signal(unsigned(9), name=f"lut_idx{p}") for p in range(P)]
        with m.If(self.i.valid):
            m.d.sync += [m_max.eq(m_new), m_valid.eq(m_valid | (first & beat.any))]
            m.d.sync += [b_valid.eq(1), b_on.eq(beat.on), b_rescale.eq(rescale),
                         b_rowend.eq(beat.last & beat.row_end)]
            for p in range(P):
                # m - s needs 9 bits before it is known to be in [0, 255].
                m.d.comb += s_idx[p].eq((m_new - beat.data[p])[:9])
            m.d.comb += self.lut_addr[P].eq((beat.max - m_max)[:8])
        with m.Else():
            m.d.sync += [b_valid.eq(0), b_rescale.eq(0), b_rowend.eq(0)]
            for p in range(P):
                m.d.comb += s_idx[p].eq((m_max - self.p2_data[p])[:9])
        for p in range(P):
            m.d.comb += self.lut_addr[p].eq(s_idx[p][:8])

        # Stage B: L = (rescale ? rshift_round(L * r, F) : L) + sum of this beat's e.
        e_sum = sum((Mux(b_on[p], self.lut_data[p], 0) for p in range(P)), Const(0, 1))
        scaled = Signal(unsigned(WL + F + 1))
        m.d.comb += scaled.eq(L * self.lut_data[P] + (1 << (F - 1)))
        base = Mux(b_rescale, scaled >> F, L)
        with m.If(b_valid):
            m.d.sync += L.eq(base + e_sum)
            with m.If(b_rowend):
                m.d.sync += pass1_done.eq(1)
        with m.If(self.row_reset):
            m.d.sync += [pass1_done.eq(0), m_valid.eq(0), L.eq(0)]
        return m


class SoftmaxDivider(wiring.Component):
    """Exact pipelined restoring divider: ``q = round_div(e * 2^8, L) = floor((2 * e * 2^8 + L)
    / (2 * L))`` per lane, for ``0 <= e <= 2^F`` and ``e <= L`` (so ``q <= 256``), no
    backpressure.

    Parameters
    ----------
    lanes : int
        Numerators per beat (one divisor for all).
    F : int
        LUT fraction bits: the numerator ``e`` has ``F + 1`` bits.
    W_L : int
        Width of the divisor ``L``, bits.

    Members
    -------
    i_ctl : In(StructLayout({"valid": 1, "keep": lanes, "on": lanes, "last": 1}))
        Side information, delayed unchanged to :attr:`o_ctl`.
    i_num : In(ArrayLayout(unsigned(F + 1), lanes))
        Numerators ``e`` (unsigned, units of ``2^-F``).
    i_den : In(unsigned(W_L))
        Divisor ``L`` (unsigned, units of ``2^-F``), > 0 for a meaningful quotient (``L = 0``
        gives 511, no X).
    o_ctl : Out(StructLayout)
    o_quot : Out(ArrayLayout(unsigned(9), lanes))
        ``q`` (unsigned), :attr:`latency` cycles after the inputs.
    """

    report_block = "softmax"

    #: Stages of the divider, one per quotient bit (the quotient is at most 256).
    STAGES = 9

    @property
    def latency(self) -> int:
        """Cycles from the inputs to the quotient: one per quotient bit."""
        return self.STAGES

    def __init__(self, *, lanes: int, F: int, W_L: int):
        self.lanes, self.F, self.W_L = lanes, F, W_L
        P = lanes
        super().__init__({
            "i_ctl": In(_ctl_layout(P)),
            "i_num": In(data.ArrayLayout(unsigned(F + 1), P)),
            "i_den": In(unsigned(W_L)),
            "o_ctl": Out(_ctl_layout(P)),
            "o_quot": Out(data.ArrayLayout(unsigned(self.STAGES), P)),
        })

    def elaborate(self, platform):
        m = Module()
        P, WL = self.lanes, self.W_L
        q_layout = _ctl_layout(P)
        NW = WL + 10
        l1 = self.i_den
        den = Signal(unsigned(WL + 1), name="div_den")
        m.d.comb += den.eq(l1 << 1)
        ctl = [self.i_ctl]
        dens = [den]
        rems = [[Signal(unsigned(NW), name=f"div_rem{p}_0") for p in range(P)]]
        quots = [[Const(0, 9) for p in range(P)]]
        for p in range(P):
            m.d.comb += rems[0][p].eq((self.i_num[p] << 9) + l1)
        for k in range(self.STAGES):
            bit = self.STAGES - 1 - k
            c = Signal(q_layout, name=f"div_ctl{k + 1}")
            d = Signal(unsigned(WL + 1), name=f"div_den{k + 1}")
            m.d.sync += [c.eq(ctl[-1]), d.eq(dens[-1])]
            stage_rems, stage_q = [], []
            for p in range(P):
                r = Signal(unsigned(NW), name=f"div_rem{p}_{k + 1}")
                q = Signal(unsigned(9), name=f"div_q{p}_{k + 1}")
                shifted = dens[-1] << bit
                ge = rems[-1][p] >= shifted
                m.d.sync += [r.eq(Mux(ge, rems[-1][p] - shifted, rems[-1][p])),
                             q.eq(quots[-1][p] | (ge << bit))]
                stage_rems.append(r)
                stage_q.append(q)
            ctl.append(c)
            dens.append(d)
            rems.append(stage_rems)
            quots.append(stage_q)
        m.d.comb += self.o_ctl.eq(ctl[-1])
        m.d.comb += [self.o_quot[p].eq(quots[-1][p]) for p in range(P)]
        return m


class SoftmaxOutput(wiring.Component):
    """Pass 2's output side: quotient to int8 probability, the output FIFO and its credits.

    ``y = clamp(q - 128, -128, 127)`` for an attended key of a row with some attended key,
    -128 for the other keys of a valid lane, 0 outside ``keep``. Credits: a beat taken by the
    unit (:attr:`credit`) holds one of ``depth`` places until its result leaves :attr:`o`, so
    the FIFO never overflows.

    Parameters
    ----------
    lanes : int
        Probabilities per beat.
    depth : int
        Credits (beats in flight); the FIFO holds ``depth + 1`` beats.

    Members
    -------
    i_ctl : In(StructLayout({"valid": 1, "keep": lanes, "on": lanes, "last": 1}))
        ``valid`` writes the beat into the FIFO.
    i_quot : In(ArrayLayout(unsigned(9), lanes))
        Quotients ``q`` in [0, 256] from :class:`SoftmaxDivider`.
    o : Out(stream.Signature(StructLayout({"data": ArrayLayout(signed(8), lanes),
        "keep": unsigned(lanes), "last": 1})))
        Probabilities (scale 1/256, zero point -128); :attr:`latency` cycles from a beat
        written to it valid.
    credit : In(1)
        A pass-2 beat was taken: one credit used.
    room : Out(1)
        A credit is free (fewer than ``depth`` beats in flight).
    """

    report_block = "softmax"

    #: Cycles from a beat written into the FIFO to it valid on :attr:`o` (SyncFIFOBuffered).
    latency = 2

    def __init__(self, *, lanes: int, depth: int):
        self.lanes, self.depth = lanes, depth
        P = lanes
        super().__init__({
            "i_ctl": In(_ctl_layout(P)),
            "i_quot": In(data.ArrayLayout(unsigned(SoftmaxDivider.STAGES), P)),
            "o": Out(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(signed(8), P), "keep": unsigned(P),
                "last": unsigned(1)}))),
            "credit": In(1),
            "room": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        P = self.lanes
        outstanding = Signal(range(self.depth + 1))
        credit_give = Signal()
        m.d.sync += outstanding.eq(outstanding + self.credit - credit_give)
        m.d.comb += self.room.eq(outstanding < self.depth)

        out_layout = data.StructLayout({"data": data.ArrayLayout(signed(8), P),
                                        "keep": unsigned(P), "last": 1})
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=out_layout.size, depth=self.depth + 1)
        entry = Signal(out_layout)
        cf = self.i_ctl
        for p in range(P):
            q = self.i_quot[p]
            y = Mux(q >= 255, 127, q.as_signed() - 128)
            m.d.comb += entry.data[p].eq(Mux(cf.keep[p], Mux(cf.on[p], y, -128), 0))
        m.d.comb += [entry.keep.eq(cf.keep), entry.last.eq(cf.last),
                     fifo.w_data.eq(entry), fifo.w_en.eq(cf.valid)]
        out = Signal(out_layout)
        m.d.comb += [out.eq(fifo.r_data), self.o.valid.eq(fifo.r_rdy), fifo.r_en.eq(self.o.ready),
                     self.o.payload.data.eq(out.data), self.o.payload.keep.eq(out.keep),
                     self.o.payload.last.eq(out.last),
                     credit_give.eq(self.o.valid & self.o.ready)]
        return m


class SoftmaxUnit(wiring.Component):
    """OSI8 softmax over rows of int8 scores, ``lanes`` scores per beat.

    Parameters
    ----------
    lanes : int
        Scores per beat, 1 to 64; the key tile width ``B`` must be a multiple of it.
    F : int
        LUT fraction bits, 8 to 30 (osi8.md; default 24).
    B : int
        Key tile width of the online max (default 16).
    n_max : int
        Longest row, keys (default 32768); sets the width of ``L``.
    lut : list of int or None
        256 LUT entries to bake as a ROM (from ``npugen.sim.golden`` ``make_lut(c, F)``), or None for a
        LUT loaded at run time through :attr:`lut`.
    out_depth : int
        Result FIFO depth, beats (>= 4); about 16 keeps full throughput with a consumer that is
        always ready.

    Members
    -------
    lut : In(stream.Signature(unsigned(32)))
        Run-time LUT load (only without a baked ``lut``): 256 beats ``E[0]`` … ``E[255]``; the
        index wraps after 256 beats and restarts at reset. Load between rows only. An entry
        above ``2^F`` (not a valid OSI8 table) is stored as ``2^F``, so no table can overflow
        the denominator.
    i : In(stream.Signature(StructLayout({"data": ArrayLayout(signed(8), lanes),
        "keep": lanes, "mask": lanes, "last": 1})))
        Scores. ``keep`` marks the lanes that hold keys (a row may end mid-beat), ``mask`` the
        keys to attend (True = attend); ``last`` ends a pass. Each row is sent twice: pass 1,
        then pass 2 with identical beats.
    o : Out(stream.Signature(StructLayout({"data": ArrayLayout(signed(8), lanes),
        "keep": lanes, "last": 1})))
        Probabilities of pass 2, beat for beat; masked keys, and every key of a fully masked
        row, give -128; lanes outside ``keep`` give 0.

    Latency: a pass-2 beat's probabilities are written into the output FIFO :attr:`latency`
    cycles after the beat is accepted, and leave it 2 cycles later at the earliest.

    Raises
    ------
    TypeError, ValueError
        For a parameter of the wrong type or value.
    """

    #: The area report's block (npugen.hw.blocks).
    report_block = "softmax"

    def __init__(self, *, lanes: int = 1, F: int = 24, B: int = 16, n_max: int = 32768,
                 lut=None, out_depth: int = 16):
        for name, v, lo, hi in (("Lanes", lanes, 1, 64), ("F", F, 8, 30), ("B", B, 1, 4096),
                                ("N_max", n_max, 1, 1 << 24), ("Output depth", out_depth, 4, 4096)):
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"{name} must be an integer, not {v!r}")
            if not lo <= v <= hi:
                raise ValueError(f"{name} must be an integer from {lo} to {hi}, not {v!r}")
        if B % lanes:
            raise ValueError(f"B must be a multiple of lanes ({lanes}), not {B!r}")
        if lut is not None:
            lut = [int(x) for x in lut]
            if len(lut) != 256 or lut[0] != 1 << F or any(not 0 <= x <= 1 << F for x in lut):
                raise ValueError("lut must hold 256 entries in [0, 2**F] with lut[0] == 2**F")
        self.lanes, self.F, self.B, self.n_max = lanes, F, B, n_max
        self.rom = lut
        self.out_depth = out_depth
        self.W_L = softmax_widths(F, n_max)["W_L"]
        members = {
            "i": In(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(signed(8), lanes), "keep": unsigned(lanes),
                "mask": unsigned(lanes), "last": unsigned(1)}))),
            "o": Out(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(signed(8), lanes), "keep": unsigned(lanes),
                "last": unsigned(1)}))),
        }
        if lut is None:
            members["lut"] = In(stream.Signature(unsigned(32)))
        super().__init__(members)

    #: Stages of the exact divider (quotient bits: the quotient is at most 256).
    DIV_STAGES = SoftmaxDivider.STAGES

    @property
    def latency(self) -> int:
        """Cycles from a pass-2 beat accepted to its result entering the output FIFO: the LUT
        read (:attr:`SoftmaxLut.latency`) and the divider (:attr:`SoftmaxDivider.latency`)."""
        return SoftmaxLut.latency + self.DIV_STAGES

    def elaborate(self, platform):
        m = Module()
        P, F, B, WL = self.lanes, self.F, self.B, self.W_L

        m.submodules.lut = lut = SoftmaxLut(F=F, ports=P + 1, rom=self.rom)
        if self.rom is None:
            wiring.connect(m, wiring.flipped(self.lut), lut.load)
        m.submodules.tiles = tiles = SoftmaxTileBuffer(lanes=P, B=B)
        m.submodules.state = state = SoftmaxRowState(lanes=P, F=F, W_L=WL)
        m.submodules.divider = div = SoftmaxDivider(lanes=P, F=F, W_L=WL)
        m.submodules.output = out = SoftmaxOutput(lanes=P, depth=self.out_depth)

        # -- input: pass 1 into the tile buffer, pass 2 into the LUT and the divider ---------
        beat = self.i.payload
        on = Signal(P)
        m.d.comb += on.eq(beat.keep & beat.mask)
        phase2 = Signal()               # the input is in pass 2 of the current row
        p2_valid = Signal()             # a pass-2 beat enters the LUT read this cycle
        m.d.comb += [tiles.i.payload.data.eq(beat.data), tiles.i.payload.on.eq(on),
                     tiles.i.payload.last.eq(beat.last),
                     tiles.i.valid.eq(self.i.valid & ~phase2)]
        with m.If(~phase2):
            m.d.comb += self.i.ready.eq(tiles.i.ready)
            with m.If(self.i.valid & self.i.ready & beat.last):
                m.d.sync += phase2.eq(1)
        with m.Else():
            m.d.comb += self.i.ready.eq(state.done & out.room)
            with m.If(self.i.valid & self.i.ready):
                m.d.comb += [p2_valid.eq(1), out.credit.eq(1)]
                with m.If(beat.last):
                    m.d.comb += state.row_reset.eq(1)
                    m.d.sync += phase2.eq(0)

        # -- pass 1: tiles into the row state; the LUT serves both passes --------------------
        wiring.connect(m, tiles.o, state.i)
        m.d.comb += [state.p2_data.eq(beat.data), lut.addr.eq(state.lut_addr),
                     state.lut_data.eq(lut.data)]

        # -- pass 2: the side information and L wait one cycle beside the LUT read -----------
        c1 = Signal(div.i_ctl.shape())
        m.d.sync += [c1.valid.eq(p2_valid), c1.keep.eq(beat.keep),
                     c1.on.eq(on & Cat(state.m_valid for _ in range(P))),
                     c1.last.eq(beat.last)]
        # L travels with the beat: the row state is reset when the last pass-2 beat is accepted.
        l1 = Signal(unsigned(WL), name="div_L")
        m.d.sync += l1.eq(state.L)
        m.d.comb += [div.i_ctl.eq(c1), div.i_den.eq(l1),
                     div.i_num.eq(lut.data.as_value()[:P * (F + 1)]),
                     out.i_ctl.eq(div.o_ctl), out.i_quot.eq(div.o_quot)]
        wiring.connect(m, out.o, wiring.flipped(self.o))
        return m
