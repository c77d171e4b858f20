"""Fused streaming attention (OSI8, ``docs/osi8.md``; interface ``docs/attention.md``).

One head of ``softmax(Q·Kᵀ·scale)·V`` in int8, streamed. The unit holds a block of ``q_block``
query rows; the keys and values of the whole context then stream past once, one key (a K row and
its V row) per cycle:

1. **Scores** (dedicated dot-product lanes): ``q_block × d`` int8 products per cycle, an adder tree
   per query, and the score requantizer (:class:`hw.requant.Requantizer`, numerics.md) give one
   int8 score per query and key.
2. **Tile buffer**: scores, their mask bits and the V rows are written into one of two tile slots
   of ``B`` keys; the running tile max per query is kept on the way in.
3. **Online max, rescale, accumulate** (osi8.md steps 1-3): when a tile is complete its max ``t``
   updates the running max ``m`` of each query; a query whose max grows has its denominator
   ``L`` and numerators ``A_c`` rescaled by ``r = E[t - m]`` (one multiplier per query, the
   ``d`` numerators in ``d`` cycles); then the tile is read back, one key per cycle:
   ``e = E[m - s]``, ``L += e``, ``A_c += e·(v_c - zp_v)`` for every channel, at full precision.
   The other slot fills meanwhile.
4. **Epilogue** (after the block's last key): ``q_c = round_div(A_c·2^G, L)`` through an exact
   pipelined restoring divider per query (one channel per cycle), then
   ``o_c = clamp(zp_o + rshift_round(q_c·M0_o, 31 + G - sh_o))``; one output row per query.

The state (``m``, ``L``, ``A``) is independent of the number of keys, up to ``N_max``.
"""

from __future__ import annotations

import math

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import isa
from .requant import LATENCY as REQUANT_LATENCY
from .requant import ROUNDING_MODES, Requantizer

__all__ = ["AttentionUnit", "attention_widths"]


def attention_widths(F: int, n_max: int, G: int, d: int) -> dict[str, int]:
    """Register widths of the attention unit, bits.

    ``W_L = ceil(log2(n_max·2^F + 1))`` (denominator, unsigned) and
    ``W_A = ceil(log2(255·n_max·2^F + 1)) + 1`` (numerators, signed), both from osi8.md;
    ``W_S``: the signed ``Q·Kᵀ`` dot product of ``d`` int8 pairs (at least 17, the requantizer's
    minimum); ``QB``: quotient bits of the output divider, from ``|A_c| <= 255·L + 128·R`` and
    ``L >= 2^F`` (so ``|A_c / L| < 255 + 128·255 / 2^F``).
    """
    W_L = math.ceil(math.log2(n_max * 2 ** F + 1))
    W_A = math.ceil(math.log2(255 * n_max * 2 ** F + 1)) + 1
    W_S = max(17, (16384 * d).bit_length() + 1)
    q_max = (255 * 2 ** F + 128 * 255) * 2 ** G // 2 ** F + 2
    return {"W_L": W_L, "W_A": W_A, "W_S": W_S, "QB": q_max.bit_length()}


def _check_int(name, v, lo, hi):
    if not isinstance(v, int) or isinstance(v, bool):
        raise TypeError(f"{name} must be an integer, not {v!r}")
    if not lo <= v <= hi:
        raise ValueError(f"{name} must be an integer from {lo} to {hi}, not {v!r}")


class AttentionUnit(wiring.Component):
    """OSI8 attention over one head: ``O = softmax(Q·Kᵀ)·V`` with int8 Q, K, V and O.

    Commands, parameters and stream order are ``docs/attention.md`` (format version 1).

    Parameters
    ----------
    d : int
        Head dimension, 1 to 256: int8 lanes of every Q, K, V and output beat.
    q_block : int
        Queries per block, 1 to 64: the keys and values stream once per block.
    heads : int
        Run-time LUTs held on chip, 1 to 256 (``heads × 256`` entries of ``F + 1`` bits).
    F, B, n_max, G : int
        OSI8 parameters: LUT fraction bits (8 to 30), key tile width (1 to 4096), longest
        context (1 to 2^24 keys), quotient fraction bits (1 to 30).
    rounding : str
        Score requantization rounding, ``"single"`` or ``"double"`` (numerics.md).
    rescale_lanes : int
        Numerators rescaled per cycle and query (a divisor of ``d``; default 1): a rescale takes
        ``d / rescale_lanes`` cycles and ``rescale_lanes`` multipliers per query.

    Members
    -------
    cmd : In(stream.Signature(unsigned(128)))
    status : Out(stream.Signature(unsigned(64)))
    param : In(stream.Signature(StructLayout({"data": unsigned(32), "last": 1})))
    q : In(stream.Signature(StructLayout({"data": ArrayLayout(signed(8), d), "last": 1})))
    k : In(stream.Signature(StructLayout({"data": ArrayLayout(signed(8), d),
        "mask": unsigned(q_block), "last": 1})))
        Taken in the same cycle as a ``v`` beat (ready waits for both valids).
    v : In(stream.Signature(StructLayout({"data": ArrayLayout(signed(8), d), "last": 1})))
    o : Out(stream.Signature(StructLayout({"data": ArrayLayout(signed(8), d), "last": 1})))

    Raises
    ------
    TypeError, ValueError
        For a parameter of the wrong type or value.
    """

    #: The area report's block (npugen.hw.blocks).
    report_block = "attention"

    def __init__(self, *, d: int = 64, q_block: int = 4, heads: int = 1, F: int = 24,
                 B: int = 16, n_max: int = 32768, G: int = 16, rounding: str = "single",
                 rescale_lanes: int = 1):
        for name, v, lo, hi in (("d", d, 1, 256), ("q_block", q_block, 1, 64),
                                ("heads", heads, 1, 256), ("F", F, 8, 30), ("B", B, 1, 4096),
                                ("N_max", n_max, 1, 1 << 24), ("G", G, 1, 30)):
            _check_int(name, v, lo, hi)
        _check_int("rescale_lanes", rescale_lanes, 1, d)
        if d % rescale_lanes:
            raise ValueError(f"rescale_lanes must divide d ({d}), not {rescale_lanes!r}")
        self.RL = rescale_lanes
        if rounding not in ROUNDING_MODES:
            raise ValueError(f"Rounding must be one of {ROUNDING_MODES!r}, not {rounding!r}")
        self.d, self.P, self.heads = d, q_block, heads
        self.F, self.B, self.n_max, self.G = F, B, n_max, G
        self.rounding = rounding
        w = attention_widths(F, n_max, G, d)
        self.W_L, self.W_A, self.W_S, self.QB = w["W_L"], w["W_A"], w["W_S"], w["QB"]
        self.out_depth = max(4, 3 * q_block)
        row = data.ArrayLayout(signed(8), d)
        super().__init__({
            "cmd": In(stream.Signature(unsigned(isa.CMD_WIDTH))),
            "status": Out(stream.Signature(unsigned(isa.STATUS_WIDTH))),
            "param": In(stream.Signature(data.StructLayout({
                "data": unsigned(isa.ATT_PARAM_WIDTH), "last": 1}))),
            "q": In(stream.Signature(data.StructLayout({"data": row, "last": 1}))),
            "k": In(stream.Signature(data.StructLayout({
                "data": row, "mask": unsigned(q_block), "last": 1}))),
            "v": In(stream.Signature(data.StructLayout({"data": row, "last": 1}))),
            "o": Out(stream.Signature(data.StructLayout({"data": row, "last": 1}))),
        })

    #: Tile slots of the tile buffer (a power of two): one fills, one is read back, and the
    #: others cover the score pipeline's latency so that one key per cycle keeps flowing.
    TILE_SLOTS = 4

    @property
    def score_latency(self) -> int:
        """Cycles from a key accepted to its score written into the tile buffer."""
        return 2 + REQUANT_LATENCY[self.rounding]    # products, adder tree, requantizer

    @property
    def div_latency(self) -> int:
        """Cycles from a numerator entering the divider to its output byte: input stage,
        ``QB`` quotient stages, sign fix-up, two output requantization stages."""
        return 1 + self.QB + 1 + 2

    @property
    def latencies(self) -> dict[str, int]:
        """Pipeline latencies, cycles."""
        return {"attention_score": self.score_latency, "attention_divider": self.div_latency}

    def elaborate(self, platform):
        m = Module()
        d, P, F, B, G = self.d, self.P, self.F, self.B, self.G
        WL, WA, WS, QB = self.W_L, self.W_A, self.W_S, self.QB
        f = isa.ATT_CMD_FIELDS
        IB = max(1, (B - 1).bit_length())      # bits of a key index within a tile
        NS = self.TILE_SLOTS

        def tile_addr(idx, slot):
            """Tile-buffer address of entry ``idx`` of ``slot``: ``slot * 2^IB + idx``."""
            idx = idx[:IB]
            return Cat(idx, Const(0, IB - len(idx)), slot)

        # -- job control ----------------------------------------------------------------------
        job_m = Signal(24)
        job_n = Signal(24)
        job_causal = Signal()
        job_lut = Signal()
        job_head = Signal(8)
        job_tag = Signal(8)
        zp_v = Signal(signed(8))
        zp_o = Signal(signed(8))
        m0_s = Signal(signed(32))
        sh_s = Signal(signed(8))
        m0_o = Signal(signed(32))
        k_o = Signal(range(63))          # 31 + G - sh_o, clamped to [1, 62]
        err = Signal(8)
        frame_err = Signal()
        param_err = Signal()
        cycles = Signal(32)
        rows_out = Signal(24)
        run_start = Signal()             # the parameter block is done: start the datapath

        cmd = self.cmd.payload
        fld = {name: cmd[fl.lsb:fl.lsb + fl.width] for name, fl in f.items()}
        reserved = isa.reserved_mask(f, isa.CMD_WIDTH)
        dec_err = Signal(8)
        hb = max(1, (self.heads - 1).bit_length())
        lut_loaded = Signal(self.heads)   # head h's table was loaded completely since reset
        with m.If(fld["opcode"] != isa.Opcode.ATTENTION):
            m.d.comb += dec_err.eq(isa.Error.BAD_OPCODE)
        with m.Elif(fld["version"] != isa.ISA_VERSION):
            m.d.comb += dec_err.eq(isa.Error.BAD_VERSION)
        with m.Elif((cmd & reserved) != 0):
            m.d.comb += dec_err.eq(isa.Error.BAD_RESERVED)
        with m.Elif((fld["m"] == 0) | (fld["n"] == 0) | (fld["n"] > self.n_max)
                    | (fld["head"] >= self.heads)):
            m.d.comb += dec_err.eq(isa.Error.BAD_SHAPE)
        with m.Elif(~fld["load_lut"] & ~lut_loaded.bit_select(fld["head"][:hb], 1)):
            m.d.comb += dec_err.eq(isa.Error.BAD_LUT)

        # The job's cycle count: from the command beat to the status beat being offered; it
        # holds while the status waits, so the status word is stable under backpressure.
        in_status = Signal()
        with m.If(~in_status):
            m.d.sync += cycles.eq(Mux(cycles == (1 << 32) - 1, cycles, cycles + 1))

        pbeat = Signal(range(isa.ATT_PARAM_BEATS + isa.ATT_LUT_BEATS))
        lut_depth = self.heads * 256
        m.submodules.lut_mem = lut = Memory(shape=unsigned(F + 1), depth=lut_depth, init=[])
        lut_w = lut.write_port()
        lut_r = [lut.read_port() for _ in range(P)]

        with m.FSM(name="job"):
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [cycles.eq(1), job_tag.eq(fld["tag"]), err.eq(dec_err),
                                 frame_err.eq(0), param_err.eq(0), pbeat.eq(0),
                                 job_m.eq(fld["m"]), job_n.eq(fld["n"]),
                                 job_causal.eq(fld["causal"]), job_lut.eq(fld["load_lut"]),
                                 job_head.eq(fld["head"]), zp_v.eq(fld["zp_v"]),
                                 zp_o.eq(fld["zp_o"]), rows_out.eq(0)]
                    with m.If(dec_err != 0):
                        m.next = "STATUS"
                    with m.Else():
                        with m.If(fld["load_lut"]):
                            # A table being rewritten is not usable until its load completes.
                            m.d.sync += lut_loaded.eq(
                                lut_loaded & ~(Const(1, self.heads) << fld["head"][:hb]))
                        m.next = "PARAM"
            with m.State("PARAM"):
                m.d.comb += self.param.ready.eq(1)
                word = self.param.payload.data
                with m.If(self.param.valid):
                    m.d.sync += pbeat.eq(pbeat + 1)
                    with m.Switch(pbeat):
                        with m.Case(0):
                            m.d.sync += m0_s.eq(word)
                            with m.If(word[31] | (~word[30] & (word != 0))):
                                m.d.sync += param_err.eq(1)
                        with m.Case(1):
                            sh = word[:8].as_signed()
                            m.d.sync += sh_s.eq(sh)
                            with m.If((sh < -31) | (sh > 30) | (word[8:] != 0)):
                                m.d.sync += param_err.eq(1)
                        with m.Case(2):
                            m.d.sync += m0_o.eq(word)
                            with m.If(word[31] | ~word[30]):
                                m.d.sync += param_err.eq(1)
                        with m.Case(3):
                            kk = Signal(signed(10))
                            m.d.comb += kk.eq(31 + G - word[:8].as_signed())
                            with m.If(word[8:] != 0):
                                m.d.sync += param_err.eq(1)
                            with m.If(kk < 1):
                                m.d.sync += [k_o.eq(1), param_err.eq(1)]
                            with m.Elif(kk > 62):
                                m.d.sync += [k_o.eq(62), param_err.eq(1)]
                            with m.Else():
                                m.d.sync += k_o.eq(kk)
                    lut_idx = (pbeat - isa.ATT_PARAM_BEATS)[:8]
                    m.d.comb += [
                        lut_w.addr.eq(Cat(lut_idx, job_head)),
                        lut_w.data.eq(Mux(word > (1 << F), 1 << F, word)),
                        lut_w.en.eq(job_lut & (pbeat >= isa.ATT_PARAM_BEATS)),
                    ]
                    last_beat = Mux(job_lut,
                                    pbeat == isa.ATT_PARAM_BEATS + isa.ATT_LUT_BEATS - 1,
                                    pbeat == isa.ATT_PARAM_BEATS - 1)
                    bad_last = self.param.payload.last != last_beat
                    with m.If(bad_last):
                        m.d.sync += frame_err.eq(1)
                    with m.If(last_beat):
                        m.d.comb += run_start.eq(1)
                        with m.If(job_lut & ~frame_err & ~bad_last):
                            m.d.sync += lut_loaded.eq(
                                lut_loaded | (Const(1, self.heads) << job_head[:hb]))
                        m.next = "RUN"
            with m.State("RUN"):
                with m.If(self.o.valid & self.o.ready & (rows_out == job_m - 1)):
                    m.next = "STATUS"
            with m.State("STATUS"):
                m.d.comb += in_status.eq(1)
                code = Mux(err != 0, err, Mux(frame_err, isa.Error.FRAME,
                                              Mux(param_err, isa.Error.BAD_PARAM, 0)))
                st = isa.STATUS_FIELDS
                word = ((code.as_unsigned() << st["error"].lsb)
                        | (Const(isa.ISA_VERSION, 8) << st["version"].lsb)
                        | (job_tag << st["tag"].lsb) | (cycles << st["cycles"].lsb))
                m.d.comb += [self.status.valid.eq(1), self.status.payload.eq(word)]
                with m.If(self.status.ready):
                    m.next = "IDLE"

        # -- front end: query block, keys and values ------------------------------------------
        q_regs = [Signal(data.ArrayLayout(signed(8), d), name=f"q{p}") for p in range(P)]
        fe_m0 = Signal(24)               # first query of the block
        fe_mq = Signal(range(P + 1))     # queries in the block
        fe_q = Signal(range(max(2, P)))  # Q beats taken
        fe_j = Signal(24)                # key index
        w_slot = Signal(range(NS))
        w_idx = Signal(range(B))
        slot_busy = Signal(NS)           # reserved by the front end, until the back end frees it
        busy_set = Signal(NS)
        busy_clr = Signal(NS)
        m.d.sync += slot_busy.eq((slot_busy | busy_set) & ~busy_clr)

        left = Signal(24)
        m.d.comb += left.eq(job_m - fe_m0)
        # Products of the accepted key (stage S1), then the adder tree (stage S2).
        s1_valid = Signal()
        s1_prod = [[Signal(signed(16), name=f"prod{p}_{c}") for c in range(d)] for p in range(P)]
        side = data.StructLayout({"valid": 1, "on": unsigned(P), "end_tile": 1,
                                  "end_block": 1, "slot": unsigned((NS - 1).bit_length()), "idx": unsigned(IB)})
        s1_side = Signal(side)
        m.d.sync += s1_side.valid.eq(0)

        m.submodules.v_mem = v_mem = Memory(shape=data.ArrayLayout(signed(8), d), depth=NS << IB,
                                            init=[])
        v_w = v_mem.write_port()
        v_r = v_mem.read_port()

        with m.FSM(name="front"):
            with m.State("IDLE"):
                with m.If(run_start):
                    m.d.sync += [fe_m0.eq(0), fe_q.eq(0), fe_j.eq(0),
                                 fe_mq.eq(Mux(job_m >= P, P, job_m))]
                    m.next = "LOADQ"
            with m.State("LOADQ"):
                m.d.comb += self.q.ready.eq(1)
                with m.If(self.q.valid):
                    for p in range(P):
                        with m.If(fe_q == p):
                            m.d.sync += q_regs[p].eq(self.q.payload.data)
                    last_q = fe_q == fe_mq - 1
                    with m.If(self.q.payload.last != last_q):
                        m.d.sync += frame_err.eq(1)
                    m.d.sync += fe_q.eq(fe_q + 1)
                    with m.If(last_q):
                        m.d.sync += [fe_q.eq(0), fe_j.eq(0)]
                        m.next = "KEYS"
            with m.State("KEYS"):
                slot_ok = (w_idx != 0) | ~slot_busy.bit_select(w_slot, 1)
                take = self.k.valid & self.v.valid & slot_ok
                m.d.comb += [self.k.ready.eq(take), self.v.ready.eq(take)]
                with m.If(take):
                    last_key = fe_j == job_n - 1
                    end_tile = (w_idx == B - 1) | last_key
                    with m.If((self.k.payload.last != last_key)
                              | (self.v.payload.last != last_key)):
                        m.d.sync += frame_err.eq(1)
                    with m.If(w_idx == 0):
                        m.d.comb += busy_set.eq(Const(1, NS) << w_slot)
                    m.d.comb += [v_w.addr.eq(tile_addr(w_idx, w_slot)),
                                 v_w.data.eq(self.v.payload.data), v_w.en.eq(1)]
                    for p in range(P):
                        for c in range(d):
                            m.d.sync += s1_prod[p][c].eq(q_regs[p][c] * self.k.payload.data[c])
                    on = []
                    for p in range(P):
                        ok = (p < fe_mq) & self.k.payload.mask[p]
                        ok &= ~job_causal | (fe_j <= fe_m0 + p)
                        on.append(ok)
                    m.d.sync += [s1_side.valid.eq(1), s1_side.on.eq(Cat(*on)),
                                 s1_side.end_tile.eq(end_tile), s1_side.end_block.eq(last_key),
                                 s1_side.slot.eq(w_slot), s1_side.idx.eq(w_idx),
                                 fe_j.eq(fe_j + 1)]
                    with m.If(end_tile):
                        m.d.sync += [w_idx.eq(0), w_slot.eq(w_slot + 1)]
                    with m.Else():
                        m.d.sync += w_idx.eq(w_idx + 1)
                    with m.If(last_key):
                        with m.If(left <= P):
                            m.next = "IDLE"
                        with m.Else():
                            m.d.sync += [fe_m0.eq(fe_m0 + P),
                                         fe_mq.eq(Mux(left - P >= P, P, left - P))]
                            m.next = "LOADQ"

        # Stage S2: one adder tree per query (balanced, so the sum is exactly W_S bits).
        s2_side = Signal(side)
        m.d.sync += s2_side.eq(s1_side)
        m.submodules.score_rq = rq = Requantizer(lanes=P, acc_width=WS, rounding=self.rounding)
        for p in range(P):
            terms = [t for t in s1_prod[p]]
            while len(terms) > 1:
                nxt = []
                for i in range(0, len(terms) - 1, 2):
                    nxt.append(terms[i] + terms[i + 1])
                if len(terms) % 2:
                    nxt.append(terms[-1])
                terms = nxt
            m.d.sync += rq.i_acc[p].eq(terms[0])
            m.d.comb += [rq.i_multiplier[p].eq(m0_s), rq.i_shift[p].eq(sh_s)]
        m.d.comb += [rq.i_valid.eq(s2_side.valid), rq.i_zp_out.eq(0), rq.i_act_min.eq(-128),
                     rq.i_act_max.eq(127)]
        # Side information travels beside the requantizer.
        chain = [s2_side]
        for i in range(rq.latency):
            s = Signal(side, name=f"score_side{i + 1}")
            m.d.sync += s.eq(chain[-1])
            chain.append(s)
        w_side = chain[-1]

        # -- tile buffer: scores and mask bits; per-slot tile max -----------------------------
        entry = data.StructLayout({"s": data.ArrayLayout(signed(8), P), "on": unsigned(P)})
        m.submodules.s_mem = s_mem = Memory(shape=entry, depth=NS << IB, init=[])
        s_w = s_mem.write_port()
        s_r = s_mem.read_port()
        m.d.comb += [s_w.addr.eq(tile_addr(w_side.idx, w_side.slot)), s_w.en.eq(w_side.valid)]
        m.d.comb += [s_w.data.on.eq(w_side.on)]
        for p in range(P):
            m.d.comb += s_w.data.s[p].eq(rq.o_data[p])
        run_max = [Signal(signed(8), name=f"run_max{p}") for p in range(P)]
        run_any = Signal(P)
        t_max = [[Signal(signed(8), name=f"tile{s}_max{p}") for p in range(P)] for s in range(NS)]
        t_any = [Signal(P, name=f"tile{s}_any") for s in range(NS)]
        t_count = [Signal(range(B + 1), name=f"tile{s}_count") for s in range(NS)]
        t_bend = [Signal(name=f"tile{s}_block_end") for s in range(NS)]
        t_ready = Signal(NS)
        ready_set = Signal(NS)
        m.d.sync += t_ready.eq((t_ready | ready_set) & ~busy_clr)
        new_max = [Signal(signed(8), name=f"fold_max{p}") for p in range(P)]
        new_any = Signal(P)
        for p in range(P):
            s = rq.o_data[p]
            on = w_side.on[p]
            m.d.comb += [new_max[p].eq(Mux(on & (~run_any[p] | (s > run_max[p])), s, run_max[p])),
                         new_any[p].eq(run_any[p] | on)]
        with m.If(w_side.valid):
            with m.If(w_side.end_tile):
                for s in range(NS):
                    with m.If(w_side.slot == s):
                        m.d.sync += [t_any[s].eq(new_any), t_count[s].eq(w_side.idx + 1),
                                     t_bend[s].eq(w_side.end_block)]
                        m.d.sync += [t_max[s][p].eq(new_max[p]) for p in range(P)]
                m.d.comb += ready_set.eq(Const(1, NS) << w_side.slot)
                m.d.sync += run_any.eq(0)
            with m.Else():
                m.d.sync += [run_any.eq(new_any)] + [run_max[p].eq(new_max[p]) for p in range(P)]

        # -- back end: online max, rescale, accumulate ---------------------------------------
        row_max = [Signal(signed(8), name=f"m{p}") for p in range(P)]
        m_valid = Signal(P)
        L = [Signal(unsigned(WL), name=f"L{p}") for p in range(P)]
        A = [[Signal(signed(WA), name=f"A{p}_{c}") for c in range(d)] for p in range(P)]
        r_slot = Signal(range(NS))
        r_next = Signal(range(NS))
        m.d.comb += r_next.eq(r_slot + 1)
        r_idx = Signal(range(B + 1))
        need = Signal(P)
        r_fac = [Signal(unsigned(F + 1), name=f"r{p}") for p in range(P)]
        cnt = Signal(range(d + 1))
        be_m0 = Signal(24)
        half = 1 << (F - 1)

        # Accumulate pipeline: issue (tile memories addressed) -> X1 (data; LUT addressed)
        # -> X2 (LUT data; A and L updated).
        issue = Signal()
        x1_valid = Signal()
        x2_valid = Signal()
        x2_on = Signal(P)
        x2_vd = [Signal(signed(9), name=f"vd{c}") for c in range(d)]
        m.d.sync += [x1_valid.eq(issue), x2_valid.eq(x1_valid)]
        pipe_empty = ~x1_valid & ~x2_valid
        m.d.comb += [s_r.addr.eq(tile_addr(r_idx, r_slot)), v_r.addr.eq(tile_addr(r_idx, r_slot))]
        m.d.sync += x2_on.eq(s_r.data.on)
        for c in range(d):
            m.d.sync += x2_vd[c].eq(v_r.data[c] - zp_v)
        lut_addr_rescale = Signal()
        for p in range(P):
            idx = Signal(unsigned(9), name=f"e_idx{p}")
            m.d.comb += idx.eq((row_max[p] - s_r.data.s[p])[:9])
            with m.If(lut_addr_rescale):
                t = Array(t_max[s][p] for s in range(NS))[r_slot]
                m.d.comb += lut_r[p].addr.eq(Cat((t - row_max[p])[:8], job_head))
            with m.Else():
                m.d.comb += lut_r[p].addr.eq(Cat(idx[:8], job_head))
        with m.If(x2_valid):
            for p in range(P):
                e = Mux(x2_on[p], lut_r[p].data, 0)
                m.d.sync += L[p].eq(L[p] + e)
                for c in range(d):
                    m.d.sync += A[p][c].eq(A[p][c] + e * x2_vd[c])

        # Tile start: the max update of osi8.md step 2 for slot `ns`.
        def tile_start(ns):
            need_p, new_m, new_v = [], [], []
            for p in range(P):
                t = Array(t_max[s][p] for s in range(NS))[ns]
                anyp = Array(t_any[s][p] for s in range(NS))[ns]
                need_p.append(anyp & m_valid[p] & (t > row_max[p]))
                new_m.append(Mux(anyp & (~m_valid[p] | (t > row_max[p])), t, row_max[p]))
                new_v.append(m_valid[p] | anyp)
            return Cat(*need_p), new_m, Cat(*new_v)

        need_now, newm_now, newv_now = tile_start(r_slot)
        need_nxt, newm_nxt, newv_nxt = tile_start(r_next)
        count = Array(t_count)[r_slot]
        bend = Array(t_bend)[r_slot]

        # Epilogue state, in two banks: a block's epilogue may start while the previous
        # block's channels are still in the divider (when q_block <= d, see below).
        epi_gen = Signal()                      # bank of the next epilogue
        bank_busy = Signal(2)                   # bank holds a block not yet pushed out
        bank_set = Signal(2)
        bank_clr = Signal(2)
        m.d.sync += bank_busy.eq((bank_busy | bank_set) & ~bank_clr)
        epi_m0 = [Signal(24, name=f"epi{g}_m0") for g in range(2)]
        epi_mq = [Signal(range(P + 1), name=f"epi{g}_mq") for g in range(2)]
        epi_empty = [Signal(P, name=f"epi{g}_empty") for g in range(2)]
        L_div = [[Signal(unsigned(WL), name=f"L_div{g}_{p}") for p in range(P)] for g in range(2)]
        div_in = Signal()
        div_last = Signal()
        m.submodules.o_fifo = fifo = SyncFIFOBuffered(width=8 * d + 1, depth=self.out_depth)
        be_left = Signal(24)
        m.d.comb += be_left.eq(job_m - be_m0)
        # Rows the output FIFO must have room for: P per busy bank, P for the new one. The push
        # of a block takes q_block cycles and the next block's outputs arrive d cycles later at
        # the earliest, so two banks overlap only when q_block <= d.
        reserved_rows = Mux(bank_busy[0], P, 0) + Mux(bank_busy[1], P, 0)
        epi_room = (fifo.level + reserved_rows + P <= self.out_depth) & ~bank_busy.bit_select(epi_gen, 1)
        if P > d:
            epi_room &= bank_busy == 0

        with m.FSM(name="back"):
            with m.State("IDLE"):
                with m.If(run_start):
                    m.d.sync += be_m0.eq(0)
                with m.If(t_ready.bit_select(r_slot, 1)):
                    with m.If(need_now == 0):
                        m.d.sync += [m_valid.eq(newv_now), r_idx.eq(0)]
                        m.d.sync += [row_max[p].eq(newm_now[p]) for p in range(P)]
                        m.next = "ACCUM"
                    with m.Elif(pipe_empty):
                        # Rescale: look up r = E[t - m] now, then rotate the numerators.
                        m.d.comb += lut_addr_rescale.eq(1)
                        m.d.sync += [m_valid.eq(newv_now), need.eq(need_now), r_idx.eq(0)]
                        m.d.sync += [row_max[p].eq(newm_now[p]) for p in range(P)]
                        m.next = "LUT"
            with m.State("LUT"):
                m.d.sync += [r_fac[p].eq(lut_r[p].data) for p in range(P)]
                m.d.sync += cnt.eq(0)
                m.next = "RESCALE"
            with m.State("RESCALE"):
                # RL numerators per cycle: the ring turns by RL, the first RL come back rescaled.
                RL = self.RL
                for p in range(P):
                    m.d.sync += [A[p][c].eq(A[p][c + RL]) for c in range(d - RL)]
                    for i in range(RL):
                        a0 = A[p][i]
                        scaled = Signal(signed(WA + F + 2), name=f"rescaled{p}_{i}")
                        m.d.comb += scaled.eq(a0 * r_fac[p] + half)
                        m.d.sync += A[p][d - RL + i].eq(Mux(need[p], scaled >> F, a0))
                    with m.If(cnt == 0):
                        lsc = Signal(unsigned(WL + F + 1), name=f"L_rescaled{p}")
                        m.d.comb += lsc.eq(L[p] * r_fac[p] + half)
                        with m.If(need[p]):
                            m.d.sync += L[p].eq(lsc >> F)
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(cnt == d // RL - 1):
                    m.next = "ACCUM"
            with m.State("ACCUM"):
                m.d.comb += issue.eq(1)
                m.d.sync += r_idx.eq(r_idx + 1)
                with m.If(r_idx == count - 1):
                    m.d.comb += busy_clr.eq(Const(1, NS) << r_slot)
                    m.d.sync += [r_slot.eq(r_next), r_idx.eq(0)]
                    with m.If(bend):
                        m.next = "EPI_WAIT"
                    with m.Elif(t_ready.bit_select(r_next, 1) & (need_nxt == 0)):
                        # The next tile needs no rescale: no bubble.
                        m.d.sync += m_valid.eq(newv_nxt)
                        m.d.sync += [row_max[p].eq(newm_nxt[p]) for p in range(P)]
                    with m.Else():
                        m.next = "IDLE"
            with m.State("EPI_WAIT"):
                with m.If(pipe_empty & epi_room):
                    m.d.comb += bank_set.eq(Mux(epi_gen, 0b10, 0b01))
                    m.d.sync += [m_valid.eq(0), cnt.eq(0)]
                    for g in range(2):
                        with m.If(epi_gen == g):
                            m.d.sync += [epi_m0[g].eq(be_m0),
                                         epi_mq[g].eq(Mux(be_left >= P, P, be_left)),
                                         epi_empty[g].eq(~m_valid)]
                            m.d.sync += [L_div[g][p].eq(L[p]) for p in range(P)]
                    m.d.sync += [L[p].eq(0) for p in range(P)]
                    m.next = "EPI"
            with m.State("EPI"):
                m.d.comb += [div_in.eq(1), div_last.eq(cnt == d - 1)]
                for p in range(P):
                    m.d.sync += [A[p][c].eq(A[p][c + 1]) for c in range(d - 1)]
                    m.d.sync += A[p][d - 1].eq(0)
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(cnt == d - 1):
                    m.d.sync += [be_m0.eq(be_m0 + P), epi_gen.eq(~epi_gen)]
                    m.next = "IDLE"

        # -- epilogue: exact division, output requantization, output rows ---------------------
        # q = round_div(A * 2^G, L) = floor((A * 2^(G+1) + L) / (2L)); with N' = A*2^(G+1) + L:
        # N' >= 0: q = N' // 2L; N' < 0: q = -((-N' - 1) // 2L) - 1 (floor of a negative).
        NW = WA + G + 2
        ctl_layout = data.StructLayout({"valid": 1, "gen": 1, "last": 1})
        ctl = [Signal(ctl_layout, name="div_ctl0")]
        d_neg = [[Signal(name=f"div_neg{p}_0") for p in range(P)]]
        d_rem = [[Signal(unsigned(NW), name=f"div_rem{p}_0") for p in range(P)]]
        d_q = [[Const(0, QB) for p in range(P)]]
        m.d.sync += [ctl[0].valid.eq(div_in), ctl[0].gen.eq(epi_gen), ctl[0].last.eq(div_last)]
        for p in range(P):
            num = Signal(signed(NW), name=f"div_num{p}")
            m.d.comb += num.eq((A[p][0] << (G + 1)) + Array(L_div[g][p] for g in range(2))[epi_gen])
            m.d.sync += [d_neg[0][p].eq(num < 0),
                         d_rem[0][p].eq(Mux(num < 0, -num - 1, num))]
        for k in range(QB):
            bit = QB - 1 - k
            c = Signal(ctl_layout, name=f"div_ctl{k + 1}")
            m.d.sync += c.eq(ctl[-1])
            negs, rems, qs = [], [], []
            for p in range(P):
                den = Cat(Const(0, 1 + bit), Mux(ctl[-1].gen, L_div[1][p], L_div[0][p]))  # 2L << bit
                ge = d_rem[-1][p] >= den
                r = Signal(unsigned(NW), name=f"div_rem{p}_{k + 1}")
                q = Signal(unsigned(QB), name=f"div_q{p}_{k + 1}")
                n = Signal(name=f"div_neg{p}_{k + 1}")
                m.d.sync += [r.eq(Mux(ge, d_rem[-1][p] - den, d_rem[-1][p])),
                             q.eq(d_q[-1][p] | (ge << bit)), n.eq(d_neg[-1][p])]
                negs.append(n), rems.append(r), qs.append(q)
            ctl.append(c), d_neg.append(negs), d_rem.append(rems), d_q.append(qs)
        # Sign fix-up (and zero for a query with no attended key).
        f_ctl = Signal(ctl_layout)
        m.d.sync += f_ctl.eq(ctl[-1])
        quot = [Signal(signed(QB + 1), name=f"quot{p}") for p in range(P)]
        for p in range(P):
            qv = d_q[-1][p]
            empty = Mux(ctl[-1].gen, epi_empty[1][p], epi_empty[0][p])
            m.d.sync += quot[p].eq(Mux(empty, 0, Mux(d_neg[-1][p], -qv - 1, qv)))
        # Output requantization: y = rshift_round(q * M0_o, k); o = clamp(zp_o + y).
        y_ctl = Signal(ctl_layout)
        m.d.sync += y_ctl.eq(f_ctl)
        prod = [Signal(signed(QB + 34), name=f"oprod{p}") for p in range(P)]
        for p in range(P):
            m.d.sync += prod[p].eq(quot[p] * m0_o)
        o_rows = [Signal(8 * d, name=f"orow{p}") for p in range(P)]
        push_rows = [Signal(8 * d, name=f"push_row{p}") for p in range(P)]
        push = Signal()
        push_gen = Signal()
        push_p = Signal(range(P + 1))
        for p in range(P):
            rounded = Signal(signed(QB + 35), name=f"oround{p}")
            m.d.comb += rounded.eq((prod[p] + (Const(1, 1) << (k_o - 1)[:6])) >> k_o)
            biased = Signal(signed(QB + 36), name=f"obias{p}")
            m.d.comb += biased.eq(rounded + zp_o)
            byte = Mux(biased < -128, -128, Mux(biased > 127, 127, biased))[:8]
            row = Cat(o_rows[p][8:], byte) if d > 1 else byte
            with m.If(y_ctl.valid):
                m.d.sync += o_rows[p].eq(row)
                with m.If(y_ctl.last):
                    m.d.sync += push_rows[p].eq(row)
        # The block's rows, complete after its last channel, go into the output FIFO.
        with m.If(y_ctl.valid & y_ctl.last):
            m.d.sync += [push.eq(1), push_p.eq(0), push_gen.eq(y_ctl.gen)]
        with m.If(push):
            m0_push = Mux(push_gen, epi_m0[1], epi_m0[0])
            mq_push = Mux(push_gen, epi_mq[1], epi_mq[0])
            for p in range(P):
                with m.If(push_p == p):
                    m.d.comb += fifo.w_data.eq(Cat(push_rows[p], m0_push + p == job_m - 1))
            m.d.comb += fifo.w_en.eq(1)
            m.d.sync += push_p.eq(push_p + 1)
            with m.If(push_p == mq_push - 1):
                m.d.sync += push.eq(0)
                m.d.comb += bank_clr.eq(Mux(push_gen, 0b10, 0b01))

        m.d.comb += [self.o.valid.eq(fifo.r_rdy), self.o.payload.data.eq(fifo.r_data[:8 * d]),
                     self.o.payload.last.eq(fifo.r_data[8 * d]), fifo.r_en.eq(self.o.ready)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += rows_out.eq(rows_out + 1)
        return m
