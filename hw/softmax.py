"""Streaming integer softmax (OSI8, ``docs/osi8.md``): int8 scores in, int8
probabilities out (scale 1/256, zero point -128).

Each row is streamed twice. Pass 1 computes the row state (the running max ``m`` and the
denominator ``L``) tile by tile with the online max and LUT rescale; pass 2 re-streams the same row
and turns each score into ``y = clamp(round_div(E[m - s] * 2^8, L) - 128, -128, 127)`` with an
exact divider. The state is the same whatever the row length (up to ``n_max`` keys); the row is
never stored, so the cost of the second pass is the host streaming the row again (no buffer).
"""

from __future__ import annotations

import math

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["SoftmaxUnit", "softmax_widths"]


def softmax_widths(F: int, n_max: int) -> dict[str, int]:
    """Register widths of osi8.md, bits: ``W_L = ceil(log2(n_max * 2^F + 1))`` (the denominator,
    unsigned) and ``W_E = F + 1`` (a LUT entry)."""
    return {"W_L": math.ceil(math.log2(n_max * 2 ** F + 1)), "W_E": F + 1}


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
        256 LUT entries to bake as a ROM (from ``sim.golden`` ``make_lut(c, F)``), or None for a
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
                raise ValueError(f"lut must hold 256 entries in [0, 2**F] with lut[0] == 2**F")
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
    DIV_STAGES = 9

    @property
    def latency(self) -> int:
        """Cycles from a pass-2 beat accepted to its result entering the output FIFO."""
        return 1 + self.DIV_STAGES

    def elaborate(self, platform):
        m = Module()
        P, F, B, WL = self.lanes, self.F, self.B, self.W_L
        beats_per_tile = B // P

        # -- LUT ------------------------------------------------------------------------------
        m.submodules.lut_mem = lut = Memory(shape=unsigned(F + 1), depth=256,
                                            init=self.rom if self.rom is not None else [])
        rd = [lut.read_port() for _ in range(P + 1)]     # P lanes + the rescale factor
        if self.rom is None:
            wr = lut.write_port()
            lut_idx = Signal(8)
            entry = self.lut.payload
            m.d.comb += [self.lut.ready.eq(1), wr.addr.eq(lut_idx),
                         wr.data.eq(Mux(entry > (1 << F), 1 << F, entry)),
                         wr.en.eq(self.lut.valid)]
            with m.If(self.lut.valid):
                m.d.sync += lut_idx.eq(lut_idx + 1)

        # -- row state ------------------------------------------------------------------------
        m_max = Signal(signed(8))       # running max m
        m_valid = Signal()              # some unmasked key seen
        L = Signal(unsigned(WL))        # denominator
        pass1_done = Signal()           # L and m are final for the current row

        # -- pass 1, input side: tile buffers (two), running tile max -----------------------
        beat_layout = data.StructLayout({"data": data.ArrayLayout(signed(8), P),
                                         "on": unsigned(P)})   # on = keep & mask
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

        w_slot = Signal()
        w_beat = Signal(range(beats_per_tile))
        run_max = Signal(signed(8))
        run_any = Signal()
        phase2 = Signal()               # the input is in pass 2 of the current row

        on = Signal(P)
        m.d.comb += on.eq(self.i.payload.keep & self.i.payload.mask)
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

        # -- pass 2, input side: credits for the output FIFO ---------------------------------
        outstanding = Signal(range(self.out_depth + 1))
        credit_take = Signal()
        credit_give = Signal()
        m.d.sync += outstanding.eq(outstanding + credit_take - credit_give)

        p2_valid = Signal()             # a pass-2 beat enters stage A' this cycle
        row_reset = Signal()
        with m.If(~phase2):
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
                    m.d.sync += [w_slot.eq(~w_slot), w_beat.eq(0), run_any.eq(0),
                                 run_max.eq(0)]
                    with m.If(self.i.payload.last):
                        m.d.sync += phase2.eq(1)
                with m.Else():
                    m.d.sync += [w_beat.eq(w_beat + 1), run_max.eq(beat_max),
                                 run_any.eq(beat_any)]
        with m.Else():
            room = outstanding < self.out_depth
            m.d.comb += self.i.ready.eq(pass1_done & room)
            with m.If(self.i.valid & self.i.ready):
                m.d.comb += [p2_valid.eq(1), credit_take.eq(1)]
                with m.If(self.i.payload.last):
                    m.d.comb += row_reset.eq(1)
                    m.d.sync += phase2.eq(0)

        # -- pass 1, accumulate side ----------------------------------------------------------
        r_slot = Signal()
        r_beat = Signal(range(beats_per_tile + 1))
        a_valid = Signal()                  # stage A holds a beat
        cur = [Signal(beat_layout, name=f"acc_beat{s}") for s in range(1)][0]
        first = r_beat == 0
        slot_max = Mux(r_slot, t_max[1], t_max[0])
        slot_any = Mux(r_slot, t_any[1], t_any[0])
        slot_beats = Mux(r_slot, t_beats[1], t_beats[0])
        slot_rowend = Mux(r_slot, t_rowend[1], t_rowend[0])
        m_new = Signal(signed(8))
        rescale = Signal()
        with m.If(first & slot_any & m_valid & (slot_max > m_max)):
            m.d.comb += [m_new.eq(slot_max), rescale.eq(1)]
        with m.Elif(first & slot_any & ~m_valid):
            m.d.comb += m_new.eq(slot_max)
        with m.Else():
            m.d.comb += m_new.eq(m_max)
        beat_sel = Signal(beat_layout)
        for s in range(2):
            for j in range(beats_per_tile):
                with m.If((r_slot == s) & (r_beat == j)):
                    m.d.comb += beat_sel.eq(tiles[s][j])

        # Stage B registers (after the LUT read).
        b_valid = Signal()
        b_on = Signal(P)
        b_rescale = Signal()
        b_rowend = Signal()
        # LUT addresses: pass-1 accumulate and pass-2 lookups never overlap (pass 2 waits for
        # pass1_done), so they share the read ports.
        s_idx = [Signal(unsigned(9), name=f"lut_idx{p}") for p in range(P)]
        processing = t_full.bit_select(r_slot, 1)
        with m.If(processing):
            m.d.comb += a_valid.eq(1)
            m.d.sync += [m_max.eq(m_new), m_valid.eq(m_valid | (first & slot_any))]
            last_beat = r_beat == slot_beats - 1
            with m.If(last_beat):
                m.d.comb += t_clr.eq(Mux(r_slot, 0b10, 0b01))
                m.d.sync += [r_slot.eq(~r_slot), r_beat.eq(0)]
            with m.Else():
                m.d.sync += r_beat.eq(r_beat + 1)
            m.d.sync += [b_valid.eq(1), b_on.eq(beat_sel.on), b_rescale.eq(rescale),
                         b_rowend.eq(last_beat & slot_rowend)]
            for p in range(P):
                # m - s needs 9 bits before it is known to be in [0, 255].
                m.d.comb += s_idx[p].eq((m_new - beat_sel.data[p])[:9])
            m.d.comb += rd[P].addr.eq((slot_max - m_max)[:8])
        with m.Else():
            m.d.sync += [b_valid.eq(0), b_rescale.eq(0), b_rowend.eq(0)]
            for p in range(P):
                m.d.comb += s_idx[p].eq((m_max - self.i.payload.data[p])[:9])
        for p in range(P):
            m.d.comb += rd[p].addr.eq(s_idx[p][:8])

        # Stage B: L = (rescale ? rshift_round(L * r, F) : L) + sum of this beat's e.
        e_sum = sum((Mux(b_on[p], rd[p].data, 0) for p in range(P)), Const(0, 1))
        scaled = Signal(unsigned(WL + F + 1))
        m.d.comb += scaled.eq(L * rd[P].data + (1 << (F - 1)))
        base = Mux(b_rescale, scaled >> F, L)
        with m.If(b_valid):
            m.d.sync += L.eq(base + e_sum)
            with m.If(b_rowend):
                m.d.sync += pass1_done.eq(1)
        with m.If(row_reset):
            m.d.sync += [pass1_done.eq(0), m_valid.eq(0), L.eq(0)]

        # -- pass 2: LUT (stage A'), then the exact divider ------------------------------------
        # y = round_div(e * 2^8, L) = floor((2 * e * 2^8 + L) / (2 * L)), at most 256.
        q_layout = data.StructLayout({"valid": 1, "keep": unsigned(P), "on": unsigned(P),
                                      "last": 1})
        c1 = Signal(q_layout)
        m.d.sync += [c1.valid.eq(p2_valid), c1.keep.eq(self.i.payload.keep),
                     c1.on.eq(on & Cat(m_valid for _ in range(P))),
                     c1.last.eq(self.i.payload.last)]
        NW = WL + 10
        # L travels with the beat: the row state is reset when the last pass-2 beat is accepted.
        l1 = Signal(unsigned(WL), name="div_L")
        m.d.sync += l1.eq(L)
        den = Signal(unsigned(WL + 1), name="div_den")
        m.d.comb += den.eq(l1 << 1)
        ctl = [c1]
        dens = [den]
        rems = [[Signal(unsigned(NW), name=f"div_rem{p}_0") for p in range(P)]]
        quots = [[Const(0, 9) for p in range(P)]]
        for p in range(P):
            m.d.comb += rems[0][p].eq((rd[p].data << 9) + l1)
        for k in range(self.DIV_STAGES):
            bit = self.DIV_STAGES - 1 - k
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

        out_layout = data.StructLayout({"data": data.ArrayLayout(signed(8), P),
                                        "keep": unsigned(P), "last": 1})
        m.submodules.out_fifo = fifo = SyncFIFOBuffered(width=out_layout.size,
                                                        depth=self.out_depth + 1)
        entry = Signal(out_layout)
        cf = ctl[-1]
        for p in range(P):
            q = quots[-1][p]
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
