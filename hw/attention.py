"""Fused streaming attention (OSI8, ``docs/osi8.md``; interface ``docs/attention.md``).

One head of ``softmax(Q·Kᵀ·scale)·V`` in int8, streamed. The unit holds a block of ``q_block``
query rows; the keys and values of the whole context then stream past once, one key (a K row and
its V row) per cycle:

1. **Scores** (dedicated dot-product lanes): ``q_block × d`` int8 products per cycle, an adder tree
   per query, and the score requantizer (:class:`npugen.hw.requant.Requantizer`, numerics.md) give one
   int8 score per query and key.
2. **Tile buffer**: scores, their mask bits and the V rows are written into one of four tile slots
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

:class:`AttentionUnit` is a composition of stages, each a component of its own:
:class:`AttentionJobControl` (commands, parameter block, status), :class:`AttentionLut` (the
heads' exponent tables), :class:`AttentionFrontEnd` (the query block and the key/value tile
sequencer), :class:`AttentionScores` (score datapath), :class:`AttentionTileBuffer` (tile slots
and tile max), :class:`AttentionBackEnd` (online max, rescale and epilogue sequencer),
:class:`AttentionAccumulator` (the ``L`` and ``A_c`` registers), :class:`AttentionDivider`
(exact divider), :class:`AttentionOutputRequant` (output requantizer) and
:class:`AttentionOutputQueue` (output rows and FIFO).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import isa
from .requant import LATENCY as REQUANT_LATENCY
from .requant import ROUNDING_MODES, Requantizer
from .softmax import softmax_widths

__all__ = ["AttentionUnit", "attention_widths", "AttentionJobControl", "AttentionLut",
           "AttentionFrontEnd", "AttentionScores", "AttentionTileBuffer", "AttentionBackEnd",
           "AttentionAccumulator", "AttentionDivider", "AttentionOutputRequant",
           "AttentionOutputQueue"]


def attention_widths(F: int, n_max: int, G: int, d: int) -> dict[str, int]:
    """Register widths of the attention unit, bits.

    ``W_L = ceil(log2(n_max·2^F + 1))`` (denominator, unsigned) and
    ``W_A = ceil(log2(255·n_max·2^F + 1)) + 1`` (numerators, signed), both from osi8.md through
    :func:`npugen.hw.softmax.softmax_widths` (the hardware side's one copy of the formulas);
    ``W_S``: the signed ``Q·Kᵀ`` dot product of ``d`` int8 pairs (at least 17, the requantizer's
    minimum); ``QB``: quotient bits of the output divider, from ``|A_c| <= 255·L + 128·R`` and
    ``L >= 2^F`` (so ``|A_c / L| < 255 + 128·255 / 2^F``).
    """
    w = softmax_widths(F, n_max)
    W_S = max(17, (16384 * d).bit_length() + 1)
    q_max = (255 * 2 ** F + 128 * 255) * 2 ** G // 2 ** F + 2
    return {"W_L": w["W_L"], "W_A": w["W_A"], "W_S": W_S, "QB": q_max.bit_length()}


def _check_int(name, v, lo, hi):
    if not isinstance(v, int) or isinstance(v, bool):
        raise TypeError(f"{name} must be an integer, not {v!r}")
    if not lo <= v <= hi:
        raise ValueError(f"{name} must be an integer from {lo} to {hi}, not {v!r}")


def _row(d: int) -> data.ArrayLayout:
    return data.ArrayLayout(signed(8), d)


def _index_bits(B: int) -> int:
    """Bits of a key index within a tile."""
    return max(1, (B - 1).bit_length())


def _side_layout(P: int, B: int, slots: int) -> data.StructLayout:
    """What travels beside a key's score: the mask bits of its queries (``on``), whether it
    ends its tile and its block (the context's last key), and its tile-buffer slot and index."""
    return data.StructLayout({"on": unsigned(P), "end_tile": 1, "end_block": 1,
                              "slot": unsigned((slots - 1).bit_length()),
                              "idx": unsigned(_index_bits(B))})


def _epi_ctl_layout() -> data.StructLayout:
    """Control beside an epilogue channel: valid, the bank (``gen``), the block's last channel."""
    return data.StructLayout({"valid": 1, "gen": 1, "last": 1})


class AttentionJobControl(wiring.Component):
    """Job control: decodes a command, takes the parameter block (and the head's LUT), starts
    the datapath and returns the status (``docs/attention.md``, format version 1).

    A malformed command (opcode, version, reserved bits, shape, an unloaded head) skips to its
    status; a framing error (:attr:`param`'s ``last`` here, Q/K/V's through
    :attr:`frame_err`) or a bad parameter runs the job and reports it. The status carries the
    job's cycle count, from the command beat to the status offered (held while it waits).

    Parameters
    ----------
    heads : int
        LUT slots.
    n_max : int
        Longest context (keys).
    F, G : int
        LUT fraction bits, quotient fraction bits.

    Members
    -------
    cmd : In(stream.Signature(unsigned(128)))
    status : Out(stream.Signature(unsigned(64)))
    param : In(stream.Signature(StructLayout({"data": unsigned(32), "last": 1})))
    start : Out(1)
        One cycle: the parameter block is complete, the datapath starts.
    m, n : Out(24)
        Queries and keys of the job.
    causal : Out(1)
    head : Out(8)
        The job's LUT slot.
    zp_v, zp_o : Out(signed(8))
    m0_s : Out(signed(32))
    sh_s : Out(signed(8))
        Score multiplier and shift (numerics.md).
    m0_o : Out(signed(32))
    k_o : Out(range(63))
        Output multiplier and total right shift ``31 + G - sh_o``, clamped to [1, 62].
    lut_w_en : Out(1)
    lut_w_head, lut_w_idx : Out(8)
    lut_w_data : Out(unsigned(F + 1))
        LUT entry writes of the parameter block (all 0 when not writing); an entry above
        ``2^F`` (not a valid OSI8 table) is written as ``2^F``.
    frame_err : In(1)
        A Q, K or V beat had a wrong ``last``.
    row_out : In(1)
        An output row was transferred.
    """

    report_block = "attention"

    def __init__(self, *, heads: int, n_max: int, F: int, G: int):
        self.heads, self.n_max, self.F, self.G = heads, n_max, F, G
        super().__init__({
            "cmd": In(stream.Signature(unsigned(isa.CMD_WIDTH))),
            "status": Out(stream.Signature(unsigned(isa.STATUS_WIDTH))),
            "param": In(stream.Signature(data.StructLayout({
                "data": unsigned(isa.ATT_PARAM_WIDTH), "last": 1}))),
            "start": Out(1), "m": Out(24), "n": Out(24), "causal": Out(1), "head": Out(8),
            "zp_v": Out(signed(8)), "zp_o": Out(signed(8)),
            "m0_s": Out(signed(32)), "sh_s": Out(signed(8)),
            "m0_o": Out(signed(32)), "k_o": Out(range(63)),
            "lut_w_en": Out(1), "lut_w_head": Out(8), "lut_w_idx": Out(8),
            "lut_w_data": Out(unsigned(F + 1)),
            "frame_err": In(1), "row_out": In(1),
        })

    def _decode(self, m, fld, cmd, lut_loaded, hb):
        """The command's error code (0: accepted)."""
        dec_err = Signal(8)
        reserved = isa.reserved_mask(isa.ATT_CMD_FIELDS, isa.CMD_WIDTH)
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
        return dec_err

    def _param_word(self, m, pbeat, word, param_err):
        """Parameter beats 0-3: ``M0_s``, ``sh_s``, ``M0_o``, ``sh_o``, each range-checked."""
        with m.Switch(pbeat):
            with m.Case(0):
                m.d.sync += self.m0_s.eq(word)
                with m.If(word[31] | (~word[30] & (word != 0))):
                    m.d.sync += param_err.eq(1)
            with m.Case(1):
                sh = word[:8].as_signed()
                m.d.sync += self.sh_s.eq(sh)
                with m.If((sh < -31) | (sh > 30) | (word[8:] != 0)):
                    m.d.sync += param_err.eq(1)
            with m.Case(2):
                m.d.sync += self.m0_o.eq(word)
                with m.If(word[31] | ~word[30]):
                    m.d.sync += param_err.eq(1)
            with m.Case(3):
                kk = Signal(signed(10))
                m.d.comb += kk.eq(31 + self.G - word[:8].as_signed())
                with m.If(word[8:] != 0):
                    m.d.sync += param_err.eq(1)
                with m.If(kk < 1):
                    m.d.sync += [self.k_o.eq(1), param_err.eq(1)]
                with m.Elif(kk > 62):
                    m.d.sync += [self.k_o.eq(62), param_err.eq(1)]
                with m.Else():
                    m.d.sync += self.k_o.eq(kk)

    def elaborate(self, platform):
        m = Module()
        F = self.F
        job_lut = Signal()
        job_tag = Signal(8)
        err = Signal(8)
        frame_err = Signal()
        param_err = Signal()
        cycles = Signal(32)
        rows_out = Signal(24)
        cmd = self.cmd.payload
        fld = {name: cmd[fl.lsb:fl.lsb + fl.width] for name, fl in isa.ATT_CMD_FIELDS.items()}
        hb = max(1, (self.heads - 1).bit_length())
        lut_loaded = Signal(self.heads)   # head h's table was loaded completely since reset
        dec_err = self._decode(m, fld, cmd, lut_loaded, hb)

        # The job's cycle count: from the command beat to the status beat being offered; it
        # holds while the status waits, so the status word is stable under backpressure.
        in_status = Signal()
        with m.If(~in_status):
            m.d.sync += cycles.eq(Mux(cycles == (1 << 32) - 1, cycles, cycles + 1))

        pbeat = Signal(range(isa.ATT_PARAM_BEATS + isa.ATT_LUT_BEATS))
        with m.FSM(name="job"):
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [cycles.eq(1), job_tag.eq(fld["tag"]), err.eq(dec_err),
                                 frame_err.eq(0), param_err.eq(0), pbeat.eq(0),
                                 self.m.eq(fld["m"]), self.n.eq(fld["n"]),
                                 self.causal.eq(fld["causal"]), job_lut.eq(fld["load_lut"]),
                                 self.head.eq(fld["head"]), self.zp_v.eq(fld["zp_v"]),
                                 self.zp_o.eq(fld["zp_o"]), rows_out.eq(0)]
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
                    self._param_word(m, pbeat, word, param_err)
                    m.d.comb += [self.lut_w_idx.eq((pbeat - isa.ATT_PARAM_BEATS)[:8]),
                                 self.lut_w_head.eq(self.head),
                                 self.lut_w_data.eq(Mux(word > (1 << F), 1 << F, word)),
                                 self.lut_w_en.eq(job_lut & (pbeat >= isa.ATT_PARAM_BEATS))]
                    last_beat = Mux(job_lut,
                                    pbeat == isa.ATT_PARAM_BEATS + isa.ATT_LUT_BEATS - 1,
                                    pbeat == isa.ATT_PARAM_BEATS - 1)
                    bad_last = self.param.payload.last != last_beat
                    with m.If(bad_last):
                        m.d.sync += frame_err.eq(1)
                    with m.If(last_beat):
                        m.d.comb += self.start.eq(1)
                        with m.If(job_lut & ~frame_err & ~bad_last):
                            m.d.sync += lut_loaded.eq(
                                lut_loaded | (Const(1, self.heads) << self.head[:hb]))
                        m.next = "RUN"
            with m.State("RUN"):
                with m.If(self.row_out & (rows_out == self.m - 1)):
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
        with m.If(self.frame_err):
            m.d.sync += frame_err.eq(1)
        with m.If(self.row_out):
            m.d.sync += rows_out.eq(rows_out + 1)
        return m


class AttentionLut(wiring.Component):
    """The heads' exponent tables: ``heads × 256`` entries ``E[k]`` of ``F + 1`` bits
    (unsigned, ``E[0] = 2^F``), one write port and ``ports`` synchronous read ports.

    Parameters
    ----------
    heads : int
        Tables.
    F : int
        LUT fraction bits.
    ports : int
        Read ports (one per query of a block).

    Members
    -------
    w_en : In(1)
    w_head, w_idx : In(8)
    w_data : In(unsigned(F + 1))
        Writes entry ``w_idx`` of table ``w_head``.
    r_head : In(8)
        The table all read ports use.
    r_idx : In(ArrayLayout(unsigned(8), ports))
    r_data : Out(ArrayLayout(unsigned(F + 1), ports))
        ``E[r_idx]``, :attr:`latency` cycle after the address (not transparent to a write).
    """

    report_block = "attention"

    #: Cycles from a read address to its entry.
    latency = 1

    def __init__(self, *, heads: int, F: int, ports: int):
        self.heads, self.F, self.ports = heads, F, ports
        super().__init__({
            "w_en": In(1), "w_head": In(8), "w_idx": In(8), "w_data": In(unsigned(F + 1)),
            "r_head": In(8),
            "r_idx": In(data.ArrayLayout(unsigned(8), ports)),
            "r_data": Out(data.ArrayLayout(unsigned(F + 1), ports)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=unsigned(self.F + 1), depth=self.heads * 256, init=[])
        w = mem.write_port()
        rd = [mem.read_port(transparent_for=()) for _ in range(self.ports)]
        m.d.comb += [w.addr.eq(Cat(self.w_idx, self.w_head)), w.data.eq(self.w_data),
                     w.en.eq(self.w_en)]
        for p, port in enumerate(rd):
            m.d.comb += [port.addr.eq(Cat(self.r_idx[p], self.r_head)),
                         self.r_data[p].eq(port.data)]
        return m


class AttentionFrontEnd(wiring.Component):
    """The query block and the key/value tile sequencer.

    After :attr:`start` it takes the first block's query rows (up to ``q_block``), then the
    job's ``n`` keys, one K beat and one V beat per cycle (both valid and the tile slot free),
    assigning each key a tile slot and index; then the next block's queries, and so on until
    all ``m`` queries have seen every key. A key's mask bit for query ``p`` is its ``mask[p]``
    AND ``p`` is in the block AND, for a causal job, key index <= query index.

    Parameters
    ----------
    d : int
        Head dimension.
    q_block : int
        Queries per block.
    B : int
        Key tile width.
    slots : int
        Tile slots.

    Members
    -------
    q, k, v : In(stream.Signature(...))
        The unit's Q, K and V streams (:class:`AttentionUnit`); K and V are taken together.
    start : In(1)
    m, n : In(24)
    causal : In(1)
        The job, from :class:`AttentionJobControl`.
    frame_err : Out(1)
        A Q, K or V beat's ``last`` differs from the expected one.
    q_rows : Out(ArrayLayout(ArrayLayout(signed(8), d), q_block))
        The current block's query rows.
    key_valid : Out(1)
        A key is taken this cycle (K and V ready).
    key : Out(ArrayLayout(signed(8), d))
    value : Out(ArrayLayout(signed(8), d))
        Its K and V rows.
    side : Out(StructLayout({"on", "end_tile", "end_block", "slot", "idx"}))
        Its mask bits, whether it ends its tile and the block's keys, its slot and index.
    release : In(slots)
        Slots the back end has finished with (one-hot); a slot is reserved from its first key
        until released.
    """

    report_block = "attention"

    def __init__(self, *, d: int, q_block: int, B: int, slots: int):
        self.d, self.P, self.B, self.NS = d, q_block, B, slots
        row = _row(d)
        super().__init__({
            "q": In(stream.Signature(data.StructLayout({"data": row, "last": 1}))),
            "k": In(stream.Signature(data.StructLayout({
                "data": row, "mask": unsigned(q_block), "last": 1}))),
            "v": In(stream.Signature(data.StructLayout({"data": row, "last": 1}))),
            "start": In(1), "m": In(24), "n": In(24), "causal": In(1),
            "frame_err": Out(1),
            "q_rows": Out(data.ArrayLayout(row, q_block)),
            "key_valid": Out(1), "key": Out(row), "value": Out(row),
            "side": Out(_side_layout(q_block, B, slots)),
            "release": In(slots),
        })

    def elaborate(self, platform):
        m = Module()
        P, B, NS = self.P, self.B, self.NS
        q_regs = self.q_rows
        fe_m0 = Signal(24)               # first query of the block
        fe_mq = Signal(range(P + 1))     # queries in the block
        fe_q = Signal(range(max(2, P)))  # Q beats taken
        fe_j = Signal(24)                # key index
        w_slot = Signal(range(NS))
        w_idx = Signal(range(B))
        slot_busy = Signal(NS)           # reserved by the front end, until the back end frees it
        busy_set = Signal(NS)
        m.d.sync += slot_busy.eq((slot_busy | busy_set) & ~self.release)
        left = Signal(24)
        m.d.comb += left.eq(self.m - fe_m0)
        # The key's side information (sampled when it is taken).
        last_key = fe_j == self.n - 1
        end_tile = (w_idx == B - 1) | last_key
        on = []
        for p in range(P):
            ok = (p < fe_mq) & self.k.payload.mask[p]
            ok &= ~self.causal | (fe_j <= fe_m0 + p)
            on.append(ok)
        side = self.side
        m.d.comb += [self.key.eq(self.k.payload.data), self.value.eq(self.v.payload.data),
                     side.on.eq(Cat(*on)), side.end_tile.eq(end_tile),
                     side.end_block.eq(last_key), side.slot.eq(w_slot), side.idx.eq(w_idx)]

        with m.FSM(name="front"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [fe_m0.eq(0), fe_q.eq(0), fe_j.eq(0),
                                 fe_mq.eq(Mux(self.m >= P, P, self.m))]
                    m.next = "LOADQ"
            with m.State("LOADQ"):
                m.d.comb += self.q.ready.eq(1)
                with m.If(self.q.valid):
                    for p in range(P):
                        with m.If(fe_q == p):
                            m.d.sync += q_regs[p].eq(self.q.payload.data)
                    last_q = fe_q == fe_mq - 1
                    with m.If(self.q.payload.last != last_q):
                        m.d.comb += self.frame_err.eq(1)
                    m.d.sync += fe_q.eq(fe_q + 1)
                    with m.If(last_q):
                        m.d.sync += [fe_q.eq(0), fe_j.eq(0)]
                        m.next = "KEYS"
            with m.State("KEYS"):
                slot_ok = (w_idx != 0) | ~slot_busy.bit_select(w_slot, 1)
                take = self.k.valid & self.v.valid & slot_ok
                m.d.comb += [self.k.ready.eq(take), self.v.ready.eq(take),
                             self.key_valid.eq(take)]
                with m.If(take):
                    with m.If((self.k.payload.last != last_key)
                              | (self.v.payload.last != last_key)):
                        m.d.comb += self.frame_err.eq(1)
                    with m.If(w_idx == 0):
                        m.d.comb += busy_set.eq(Const(1, NS) << w_slot)
                    m.d.sync += fe_j.eq(fe_j + 1)
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
        return m


class AttentionScores(wiring.Component):
    """Score datapath: for a key row ``k`` and the block's query rows ``q_p``, the int8 scores
    ``clamp(requantize(q_p · k, M0_s, sh_s, zp = 0), -128, 127)`` (numerics.md), one key per
    cycle, no backpressure.

    Stages: the ``q_block × d`` int8 products (signed 16 bits), a balanced adder tree per query
    (``W_S`` bits signed, exact), then :class:`npugen.hw.requant.Requantizer` (5 stages).

    Parameters
    ----------
    d : int
        Head dimension.
    q_block : int
        Queries per block.
    W_S : int
        Width of a dot product (:func:`attention_widths`).
    side : Layout
        Side information delayed beside the scores.
    rounding : str
        ``"single"`` or ``"double"``.

    Members
    -------
    i_valid : In(1)
    i_q : In(ArrayLayout(ArrayLayout(signed(8), d), q_block))
    i_k : In(ArrayLayout(signed(8), d))
    i_side : In(side)
    m0_s : In(signed(32))
    sh_s : In(signed(8))
        Score multiplier and shift, held during the job.
    o_valid : Out(1)
    o_side : Out(side)
    o_score : Out(ArrayLayout(signed(8), q_block))
        :attr:`latency` cycles after the inputs.
    """

    report_block = "attention"

    @staticmethod
    def latency_of(rounding: str) -> int:
        """Latency for a rounding mode: products, adder tree, requantizer."""
        return 2 + REQUANT_LATENCY[rounding]

    @property
    def latency(self) -> int:
        """Cycles from a key's inputs to its scores."""
        return self.latency_of(self.rounding)

    def __init__(self, *, d: int, q_block: int, W_S: int, side, rounding: str = "single"):
        self.d, self.P, self.W_S, self.side_layout, self.rounding = d, q_block, W_S, side, rounding
        super().__init__({
            "i_valid": In(1),
            "i_q": In(data.ArrayLayout(_row(d), q_block)),
            "i_k": In(_row(d)),
            "i_side": In(side),
            "m0_s": In(signed(32)), "sh_s": In(signed(8)),
            "o_valid": Out(1),
            "o_side": Out(side),
            "o_score": Out(data.ArrayLayout(signed(8), q_block)),
        })

    def elaborate(self, platform):
        m = Module()
        d, P = self.d, self.P
        vside = data.StructLayout({"valid": 1, "side": self.side_layout})
        # Stage S1: the products of the accepted key.
        s1_prod = [[Signal(signed(16), name=f"prod{p}_{c}") for c in range(d)] for p in range(P)]
        s1_side = Signal(vside)
        m.d.sync += s1_side.valid.eq(self.i_valid)
        with m.If(self.i_valid):
            m.d.sync += s1_side.side.eq(self.i_side)
            for p in range(P):
                for c in range(d):
                    m.d.sync += s1_prod[p][c].eq(self.i_q[p][c] * self.i_k[c])

        # Stage S2: one adder tree per query (balanced, so the sum is exactly W_S bits).
        s2_side = Signal(vside)
        m.d.sync += s2_side.eq(s1_side)
        # 17 x 16-bit partial products: latency_of counts LATENCY (hw/requant.py)
        m.submodules.requant = rq = Requantizer(lanes=P, acc_width=self.W_S,
                                                rounding=self.rounding, pp_bits=16)
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
            m.d.comb += [rq.i_multiplier[p].eq(self.m0_s), rq.i_shift[p].eq(self.sh_s)]
        m.d.comb += [rq.i_valid.eq(s2_side.valid), rq.i_zp_out.eq(0), rq.i_act_min.eq(-128),
                     rq.i_act_max.eq(127)]
        # Side information travels beside the requantizer.
        chain = [s2_side]
        for i in range(rq.latency):
            s = Signal(vside, name=f"score_side{i + 1}")
            m.d.sync += s.eq(chain[-1])
            chain.append(s)
        m.d.comb += [self.o_valid.eq(chain[-1].valid), self.o_side.eq(chain[-1].side),
                     self.o_score.eq(rq.o_data)]
        return m


class AttentionTileBuffer(wiring.Component):
    """Tile slots of ``B`` keys (V rows, the queries' scores and mask bits) and, per slot, the
    tile's max per query.

    A key's V row is written when it is taken, its scores :attr:`AttentionScores.latency`
    cycles later; the running max of each query over the attended scores is folded in on the
    way, and a slot is marked ready (with its max, ``any``, key count and whether it ends the
    block) the cycle after its last score is written, until released.

    Parameters
    ----------
    d : int
        Head dimension.
    q_block : int
        Queries per block.
    B : int
        Key tile width.
    slots : int
        Tile slots (a power of two).

    Members
    -------
    v_en : In(1)
    v_slot : In(range(slots))
    v_idx : In(index bits)
    v_data : In(ArrayLayout(signed(8), d))
        A V row write.
    s_valid : In(1)
    s_side : In(side layout)
    s_score : In(ArrayLayout(signed(8), q_block))
        A key's scores, mask bits (``s_side.on``), slot and index.
    release : In(slots)
        One-hot: the back end is done with a slot.
    ready : Out(slots)
        Slots holding a complete tile.
    t_max : Out(ArrayLayout(ArrayLayout(signed(8), q_block), slots))
    t_any : Out(ArrayLayout(unsigned(q_block), slots))
    t_count : Out(ArrayLayout(unsigned(range(B + 1)), slots))
    t_bend : Out(slots)
        Per slot: tile max and whether it has an attended key, per query; keys; whether the
        tile ends the block.
    r_slot : In(range(slots))
    r_idx : In(index bits)
    r_on : Out(unsigned(q_block))
    r_score : Out(ArrayLayout(signed(8), q_block))
    r_v : Out(ArrayLayout(signed(8), d))
        Read-back of a key, :attr:`latency` cycle after its address.
    """

    report_block = "attention"

    #: Cycles from a read address to its data.
    latency = 1

    def __init__(self, *, d: int, q_block: int, B: int, slots: int):
        self.d, self.P, self.B, self.NS = d, q_block, B, slots
        P, IB = q_block, _index_bits(B)
        super().__init__({
            "v_en": In(1), "v_slot": In(range(slots)), "v_idx": In(IB), "v_data": In(_row(d)),
            "s_valid": In(1), "s_side": In(_side_layout(P, B, slots)),
            "s_score": In(data.ArrayLayout(signed(8), P)),
            "release": In(slots), "ready": Out(slots),
            "t_max": Out(data.ArrayLayout(data.ArrayLayout(signed(8), P), slots)),
            "t_any": Out(data.ArrayLayout(unsigned(P), slots)),
            "t_count": Out(data.ArrayLayout(range(B + 1), slots)),
            "t_bend": Out(slots),
            "r_slot": In(range(slots)), "r_idx": In(IB),
            "r_on": Out(P), "r_score": Out(data.ArrayLayout(signed(8), P)), "r_v": Out(_row(d)),
        })

    def elaborate(self, platform):
        m = Module()
        d, P, NS = self.d, self.P, self.NS
        IB = _index_bits(self.B)

        def tile_addr(idx, slot):
            """Address of entry ``idx`` of ``slot``: ``slot * 2^IB + idx``."""
            return Cat(idx, Const(0, IB - len(idx)), slot)

        m.submodules.v_mem = v_mem = Memory(shape=_row(d), depth=NS << IB, init=[])
        v_w = v_mem.write_port()
        v_r = v_mem.read_port(transparent_for=())
        with m.If(self.v_en):
            m.d.comb += [v_w.addr.eq(tile_addr(self.v_idx, self.v_slot)),
                         v_w.data.eq(self.v_data), v_w.en.eq(1)]
        entry = data.StructLayout({"s": data.ArrayLayout(signed(8), P), "on": unsigned(P)})
        m.submodules.s_mem = s_mem = Memory(shape=entry, depth=NS << IB, init=[])
        s_w = s_mem.write_port()
        s_r = s_mem.read_port(transparent_for=())
        w_side = self.s_side
        m.d.comb += [s_w.addr.eq(tile_addr(w_side.idx, w_side.slot)), s_w.en.eq(self.s_valid),
                     s_w.data.on.eq(w_side.on), s_w.data.s.eq(self.s_score)]
        raddr = tile_addr(self.r_idx, self.r_slot)
        m.d.comb += [s_r.addr.eq(raddr), v_r.addr.eq(raddr), self.r_on.eq(s_r.data.on),
                     self.r_score.eq(s_r.data.s), self.r_v.eq(v_r.data)]

        # Tile max per query, folded in as the scores arrive.
        run_max = [Signal(signed(8), name=f"run_max{p}") for p in range(P)]
        run_any = Signal(P)
        t_max, t_any, t_count, t_bend = self.t_max, self.t_any, self.t_count, self.t_bend
        ready_set = Signal(NS)
        m.d.sync += self.ready.eq((self.ready | ready_set) & ~self.release)
        new_max = [Signal(signed(8), name=f"fold_max{p}") for p in range(P)]
        new_any = Signal(P)
        for p in range(P):
            s = self.s_score[p]
            on = w_side.on[p]
            m.d.comb += [new_max[p].eq(Mux(on & (~run_any[p] | (s > run_max[p])), s, run_max[p])),
                         new_any[p].eq(run_any[p] | on)]
        with m.If(self.s_valid):
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
        return m


class AttentionBackEnd(wiring.Component):
    """Sequencer of the back end: the online max (osi8.md steps 1-2), the rescale, the tile
    read-back and the epilogue.

    For each ready tile slot, in order: the new max ``m`` of each query from the tile's max
    ``t``; if some query's max grows (``t > m`` with ``m`` valid), it waits for the accumulate
    pipeline to drain, reads ``r = E[t - m]`` (state LUT) and has the accumulator rescale
    (``d / rescale_lanes`` cycles); then it reads the tile back, one key per cycle, addressing
    ``E[m - s]``. A tile that needs no rescale follows the previous one with no bubble. After
    the block's last tile, once the pipeline is empty and the output queue has room, it hands
    ``L`` to the divider bank (``epi_load``) and shifts the ``d`` numerators out, one channel
    per cycle (``div_in``).

    Parameters
    ----------
    d, q_block, B, slots, rescale_lanes : int
        As :class:`AttentionUnit` (``slots`` tile slots).

    Members
    -------
    start : In(1)
    m : In(24)
        The job starts; its number of queries.
    t_ready, t_max, t_any, t_count, t_bend : In
        The tile slots (:class:`AttentionTileBuffer`).
    release : Out(slots)
        One-hot, one cycle: the slot's last key was read.
    r_slot : Out(range(slots))
    r_idx : Out(range(B + 1))
        Tile read address.
    x1_score : In(ArrayLayout(signed(8), q_block))
        The scores read back (one cycle after the address).
    lut_idx : Out(ArrayLayout(unsigned(8), q_block))
        LUT index per query: ``m - s`` of the key read back, or ``t - m`` for a rescale.
    issue : Out(1)
        A key is read back for accumulation.
    pipe_empty : In(1)
    load_r, rescale, rescale_first : Out(1)
    need : Out(q_block)
        Accumulator control: latch ``r``; rescale (first cycle); which queries rescale.
    epi_load : Out(1)
    epi_gen : Out(1)
    epi_m0 : Out(24)
    epi_mq : Out(range(q_block + 1))
    epi_empty : Out(q_block)
        The block's epilogue starts in bank ``epi_gen``: its first query, queries, and the
        queries with no attended key.
    room : In(1)
        The output queue can take the block.
    div_in, div_last : Out(1)
        A numerator channel enters the divider; the block's last channel.
    """

    report_block = "attention"

    def __init__(self, *, d: int, q_block: int, B: int, slots: int, rescale_lanes: int = 1):
        self.d, self.P, self.B, self.NS, self.RL = d, q_block, B, slots, rescale_lanes
        P, NS = q_block, slots
        super().__init__({
            "start": In(1), "m": In(24),
            "t_ready": In(NS),
            "t_max": In(data.ArrayLayout(data.ArrayLayout(signed(8), P), NS)),
            "t_any": In(data.ArrayLayout(unsigned(P), NS)),
            "t_count": In(data.ArrayLayout(range(B + 1), NS)),
            "t_bend": In(NS),
            "release": Out(NS), "r_slot": Out(range(NS)), "r_idx": Out(range(B + 1)),
            "x1_score": In(data.ArrayLayout(signed(8), P)),
            "lut_idx": Out(data.ArrayLayout(unsigned(8), P)),
            "issue": Out(1), "pipe_empty": In(1),
            "load_r": Out(1), "rescale": Out(1), "rescale_first": Out(1), "need": Out(P),
            "epi_load": Out(1), "epi_gen": Out(1), "epi_m0": Out(24),
            "epi_mq": Out(range(P + 1)), "epi_empty": Out(P), "room": In(1),
            "div_in": Out(1), "div_last": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        d, P, NS = self.d, self.P, self.NS
        row_max = [Signal(signed(8), name=f"m{p}") for p in range(P)]
        m_valid = Signal(P)
        r_slot, r_idx, need, epi_gen = self.r_slot, self.r_idx, self.need, self.epi_gen
        r_next = Signal(range(NS))
        m.d.comb += r_next.eq(r_slot + 1)
        cnt = Signal(range(d + 1))
        be_m0 = Signal(24)
        t_max = self.t_max

        lut_addr_rescale = Signal()
        for p in range(P):
            idx = Signal(unsigned(9), name=f"e_idx{p}")
            m.d.comb += idx.eq((row_max[p] - self.x1_score[p])[:9])
            with m.If(lut_addr_rescale):
                t = Array(t_max[s][p] for s in range(NS))[r_slot]
                m.d.comb += self.lut_idx[p].eq((t - row_max[p])[:8])
            with m.Else():
                m.d.comb += self.lut_idx[p].eq(idx[:8])

        # Tile start: the max update of osi8.md step 2 for slot `ns`.
        def tile_start(ns):
            need_p, new_m, new_v = [], [], []
            for p in range(P):
                t = Array(t_max[s][p] for s in range(NS))[ns]
                anyp = Array(self.t_any[s][p] for s in range(NS))[ns]
                need_p.append(anyp & m_valid[p] & (t > row_max[p]))
                new_m.append(Mux(anyp & (~m_valid[p] | (t > row_max[p])), t, row_max[p]))
                new_v.append(m_valid[p] | anyp)
            return Cat(*need_p), new_m, Cat(*new_v)

        need_now, newm_now, newv_now = tile_start(r_slot)
        need_nxt, newm_nxt, newv_nxt = tile_start(r_next)
        count = Array(self.t_count[s] for s in range(NS))[r_slot]
        bend = Array(self.t_bend[s] for s in range(NS))[r_slot]
        be_left = Signal(24)
        m.d.comb += [be_left.eq(self.m - be_m0), self.epi_m0.eq(be_m0),
                     self.epi_mq.eq(Mux(be_left >= P, P, be_left)), self.epi_empty.eq(~m_valid)]

        with m.FSM(name="back"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += be_m0.eq(0)
                with m.If(self.t_ready.bit_select(r_slot, 1)):
                    with m.If(need_now == 0):
                        m.d.sync += [m_valid.eq(newv_now), r_idx.eq(0)]
                        m.d.sync += [row_max[p].eq(newm_now[p]) for p in range(P)]
                        m.next = "ACCUM"
                    with m.Elif(self.pipe_empty):
                        # Rescale: look up r = E[t - m] now, then rotate the numerators.
                        m.d.comb += lut_addr_rescale.eq(1)
                        m.d.sync += [m_valid.eq(newv_now), need.eq(need_now), r_idx.eq(0)]
                        m.d.sync += [row_max[p].eq(newm_now[p]) for p in range(P)]
                        m.next = "LUT"
            with m.State("LUT"):
                m.d.comb += self.load_r.eq(1)
                m.d.sync += cnt.eq(0)
                m.next = "RESCALE"
            with m.State("RESCALE"):
                m.d.comb += [self.rescale.eq(1), self.rescale_first.eq(cnt == 0)]
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(cnt == d // self.RL - 1):
                    m.next = "ACCUM"
            with m.State("ACCUM"):
                m.d.comb += self.issue.eq(1)
                m.d.sync += r_idx.eq(r_idx + 1)
                with m.If(r_idx == count - 1):
                    m.d.comb += self.release.eq(Const(1, NS) << r_slot)
                    m.d.sync += [r_slot.eq(r_next), r_idx.eq(0)]
                    with m.If(bend):
                        m.next = "EPI_WAIT"
                    with m.Elif(self.t_ready.bit_select(r_next, 1) & (need_nxt == 0)):
                        # The next tile needs no rescale: no bubble.
                        m.d.sync += m_valid.eq(newv_nxt)
                        m.d.sync += [row_max[p].eq(newm_nxt[p]) for p in range(P)]
                    with m.Else():
                        m.next = "IDLE"
            with m.State("EPI_WAIT"):
                with m.If(self.pipe_empty & self.room):
                    m.d.comb += self.epi_load.eq(1)
                    m.d.sync += [m_valid.eq(0), cnt.eq(0)]
                    m.next = "EPI"
            with m.State("EPI"):
                m.d.comb += [self.div_in.eq(1), self.div_last.eq(cnt == d - 1)]
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(cnt == d - 1):
                    m.d.sync += [be_m0.eq(be_m0 + P), epi_gen.eq(~epi_gen)]
                    m.next = "IDLE"
        return m


class AttentionAccumulator(wiring.Component):
    """The state of a block's queries: denominators ``L`` (``W_L`` bits unsigned) and numerators
    ``A_c`` (``W_A`` bits signed, ``d`` per query), all in units of ``2^-F``, and the operations
    on them.

    - Accumulate (a 2-stage pipeline behind :attr:`issue`: the tile buffer's data, then the LUT
      entries): ``e = on ? E[m - s] : 0``, ``L += e``, ``A_c += e·(v_c - zp_v)`` for every query
      and channel.
    - Rescale (:attr:`rescale`, ``d / rescale_lanes`` cycles after :attr:`load_r` latched
      ``r = E[t - m]``): ``A_c = rshift_round(A_c·r, F)``, and ``L`` likewise on the first
      cycle, for the queries in :attr:`need`; the numerators rotate by ``rescale_lanes`` per
      cycle, so after the rescale they are back in place.
    - Epilogue: :attr:`clear_L` zeroes ``L`` (after it was handed on); :attr:`shift` shifts the
      numerators out one channel per cycle (:attr:`a_head`), zeros in.

    Parameters
    ----------
    d, q_block, F, W_L, W_A, rescale_lanes : int

    Members
    -------
    issue : In(1)
        A key is read back from the tile buffer this cycle.
    pipe_empty : Out(1)
        No key in the accumulate pipeline.
    x1_on : In(unsigned(q_block))
    x1_v : In(ArrayLayout(signed(8), d))
        The key's mask bits and V row, one cycle after :attr:`issue`.
    zp_v : In(signed(8))
    e : In(ArrayLayout(unsigned(F + 1), q_block))
        LUT entries: ``E[m - s]`` two cycles after :attr:`issue`; ``r`` with :attr:`load_r`.
    load_r, rescale, rescale_first, clear_L, shift : In(1)
    need : In(unsigned(q_block))
    L : Out(ArrayLayout(unsigned(W_L), q_block))
    a_head : Out(ArrayLayout(signed(W_A), q_block))
        ``A_0`` of each query (the channel :attr:`shift` moves out next).
    """

    report_block = "attention"

    #: Cycles from :attr:`issue` to the key's terms added into ``L`` and ``A``.
    latency = 2

    def __init__(self, *, d: int, q_block: int, F: int, W_L: int, W_A: int,
                 rescale_lanes: int = 1):
        self.d, self.P, self.F, self.W_L, self.W_A, self.RL = d, q_block, F, W_L, W_A, rescale_lanes
        P = q_block
        super().__init__({
            "issue": In(1), "pipe_empty": Out(1),
            "x1_on": In(P), "x1_v": In(_row(d)), "zp_v": In(signed(8)),
            "e": In(data.ArrayLayout(unsigned(F + 1), P)),
            "load_r": In(1), "rescale": In(1), "rescale_first": In(1), "need": In(P),
            "clear_L": In(1), "shift": In(1),
            "L": Out(data.ArrayLayout(unsigned(W_L), P)),
            "a_head": Out(data.ArrayLayout(signed(W_A), P)),
        })

    def elaborate(self, platform):
        m = Module()
        d, P, F, WL, WA, RL = self.d, self.P, self.F, self.W_L, self.W_A, self.RL
        L = [self.L[p] for p in range(P)]
        A = [[Signal(signed(WA), name=f"A{p}_{c}") for c in range(d)] for p in range(P)]
        m.d.comb += [self.a_head[p].eq(A[p][0]) for p in range(P)]
        r_fac = [Signal(unsigned(F + 1), name=f"r{p}") for p in range(P)]
        half = 1 << (F - 1)
        # Accumulate pipeline: issue (tile memories addressed) -> X1 (data; LUT addressed)
        # -> X2 (LUT data; A and L updated).
        x1_valid = Signal()
        x2_valid = Signal()
        x2_on = Signal(P)
        x2_vd = [Signal(signed(9), name=f"vd{c}") for c in range(d)]
        m.d.sync += [x1_valid.eq(self.issue), x2_valid.eq(x1_valid), x2_on.eq(self.x1_on)]
        m.d.comb += self.pipe_empty.eq(~x1_valid & ~x2_valid)
        for c in range(d):
            m.d.sync += x2_vd[c].eq(self.x1_v[c] - self.zp_v)
        with m.If(x2_valid):
            for p in range(P):
                e = Mux(x2_on[p], self.e[p], 0)
                m.d.sync += L[p].eq(L[p] + e)
                for c in range(d):
                    m.d.sync += A[p][c].eq(A[p][c] + e * x2_vd[c])
        with m.If(self.load_r):
            m.d.sync += [r_fac[p].eq(self.e[p]) for p in range(P)]
        with m.If(self.rescale):
            # RL numerators per cycle: the ring turns by RL, the first RL come back rescaled.
            for p in range(P):
                m.d.sync += [A[p][c].eq(A[p][c + RL]) for c in range(d - RL)]
                for i in range(RL):
                    a0 = A[p][i]
                    scaled = Signal(signed(WA + F + 2), name=f"rescaled{p}_{i}")
                    m.d.comb += scaled.eq(a0 * r_fac[p] + half)
                    m.d.sync += A[p][d - RL + i].eq(Mux(self.need[p], scaled >> F, a0))
                with m.If(self.rescale_first):
                    lsc = Signal(unsigned(WL + F + 1), name=f"L_rescaled{p}")
                    m.d.comb += lsc.eq(L[p] * r_fac[p] + half)
                    with m.If(self.need[p]):
                        m.d.sync += L[p].eq(lsc >> F)
        with m.If(self.clear_L):
            m.d.sync += [L[p].eq(0) for p in range(P)]
        with m.If(self.shift):
            for p in range(P):
                m.d.sync += [A[p][c].eq(A[p][c + 1]) for c in range(d - 1)]
                m.d.sync += A[p][d - 1].eq(0)
        return m


class AttentionDivider(wiring.Component):
    """Exact pipelined divider of the epilogue: ``q = round_div(A·2^G, L) = floor((A·2^(G+1) +
    L) / 2L)`` per query, signed, restoring on the magnitude with a sign fix-up; 0 for a query
    with no attended key. One channel per cycle, no backpressure.

    The divisors sit in two banks, so a block's channels may enter while the previous block's
    are still in the pipeline: :attr:`load` fills bank :attr:`load_gen`, and each channel
    names its bank (``i_ctl.gen``).

    Parameters
    ----------
    q_block, G, W_L, W_A, QB : int
        Queries, quotient fraction bits, widths of ``L`` and ``A``, quotient bits
        (:func:`attention_widths`).

    Members
    -------
    load : In(1)
    load_gen : In(1)
    load_L : In(ArrayLayout(unsigned(W_L), q_block))
    load_empty : In(unsigned(q_block))
        Bank load: the block's denominators and its queries with no attended key.
    i_ctl : In(StructLayout({"valid": 1, "gen": 1, "last": 1}))
        Side information, delayed unchanged to :attr:`o_ctl`.
    i_num : In(ArrayLayout(signed(W_A), q_block))
        Numerators ``A_c``.
    o_ctl : Out(StructLayout)
    o_quot : Out(ArrayLayout(signed(QB + 1), q_block))
        ``q`` (exact for ``|q| < 2^QB``), :attr:`latency` cycles after the inputs.
    """

    report_block = "attention"

    @staticmethod
    def latency_of(QB: int) -> int:
        """Input stage, ``QB`` quotient stages, sign fix-up."""
        return 1 + QB + 1

    @property
    def latency(self) -> int:
        """Cycles from a channel's inputs to its quotient."""
        return self.latency_of(self.QB)

    def __init__(self, *, q_block: int, G: int, W_L: int, W_A: int, QB: int):
        self.P, self.G, self.W_L, self.W_A, self.QB = q_block, G, W_L, W_A, QB
        P = q_block
        super().__init__({
            "load": In(1), "load_gen": In(1),
            "load_L": In(data.ArrayLayout(unsigned(W_L), P)), "load_empty": In(P),
            "i_ctl": In(_epi_ctl_layout()),
            "i_num": In(data.ArrayLayout(signed(W_A), P)),
            "o_ctl": Out(_epi_ctl_layout()),
            "o_quot": Out(data.ArrayLayout(signed(QB + 1), P)),
        })

    def elaborate(self, platform):
        m = Module()
        P, G, WL, WA, QB = self.P, self.G, self.W_L, self.W_A, self.QB
        L_div = [[Signal(unsigned(WL), name=f"L_div{g}_{p}") for p in range(P)] for g in range(2)]
        epi_empty = [Signal(P, name=f"epi{g}_empty") for g in range(2)]
        with m.If(self.load):
            for g in range(2):
                with m.If(self.load_gen == g):
                    m.d.sync += epi_empty[g].eq(self.load_empty)
                    m.d.sync += [L_div[g][p].eq(self.load_L[p]) for p in range(P)]
        # With N' = A*2^(G+1) + L: N' >= 0: q = N' // 2L; N' < 0: q = -((-N' - 1) // 2L) - 1.
        NW = WA + G + 2
        ctl_layout = _epi_ctl_layout()
        ctl = [Signal(ctl_layout, name="div_ctl0")]
        d_neg = [[Signal(name=f"div_neg{p}_0") for p in range(P)]]
        d_rem = [[Signal(unsigned(NW), name=f"div_rem{p}_0") for p in range(P)]]
        d_q = [[Const(0, QB) for p in range(P)]]
        m.d.sync += ctl[0].eq(self.i_ctl)
        for p in range(P):
            num = Signal(signed(NW), name=f"div_num{p}")
            m.d.comb += num.eq((self.i_num[p] << (G + 1))
                               + Array(L_div[g][p] for g in range(2))[self.i_ctl.gen])
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
        m.d.sync += self.o_ctl.eq(ctl[-1])
        for p in range(P):
            qv = d_q[-1][p]
            empty = Mux(ctl[-1].gen, epi_empty[1][p], epi_empty[0][p])
            m.d.sync += self.o_quot[p].eq(Mux(empty, 0, Mux(d_neg[-1][p], -qv - 1, qv)))
        return m


class AttentionOutputRequant(wiring.Component):
    """Output requantizer: ``o = clamp(zp_o + rshift_round(q·M0_o, k_o), -128, 127)`` per query
    (``rshift_round(x, k) = (x + 2^(k-1)) >> k``, arithmetic), no backpressure.

    Parameters
    ----------
    q_block, QB : int
        Queries; quotient bits (the input is ``QB + 1`` bits signed).

    Members
    -------
    i_ctl : In(StructLayout({"valid": 1, "gen": 1, "last": 1}))
    i_quot : In(ArrayLayout(signed(QB + 1), q_block))
    m0_o : In(signed(32))
        Multiplier, in [2^30, 2^31).
    k_o : In(range(63))
        Right shift, in [1, 62].
    zp_o : In(signed(8))
    o_ctl : Out(StructLayout)
    o_byte : Out(ArrayLayout(signed(8), q_block))
        :attr:`latency` cycle after the inputs (the product is registered; rounding, zero point
        and clamp follow combinationally).
    """

    report_block = "attention"

    #: Cycles from a quotient to its byte.
    latency = 1

    def __init__(self, *, q_block: int, QB: int):
        self.P, self.QB = q_block, QB
        super().__init__({
            "i_ctl": In(_epi_ctl_layout()),
            "i_quot": In(data.ArrayLayout(signed(QB + 1), q_block)),
            "m0_o": In(signed(32)), "k_o": In(range(63)), "zp_o": In(signed(8)),
            "o_ctl": Out(_epi_ctl_layout()),
            "o_byte": Out(data.ArrayLayout(signed(8), q_block)),
        })

    def elaborate(self, platform):
        m = Module()
        P, QB = self.P, self.QB
        m.d.sync += self.o_ctl.eq(self.i_ctl)
        prod = [Signal(signed(QB + 34), name=f"oprod{p}") for p in range(P)]
        for p in range(P):
            m.d.sync += prod[p].eq(self.i_quot[p] * self.m0_o)
            rounded = Signal(signed(QB + 35), name=f"oround{p}")
            m.d.comb += rounded.eq((prod[p] + (Const(1, 1) << (self.k_o - 1)[:6])) >> self.k_o)
            biased = Signal(signed(QB + 36), name=f"obias{p}")
            m.d.comb += biased.eq(rounded + self.zp_o)
            m.d.comb += self.o_byte[p].eq(
                Mux(biased < -128, -128, Mux(biased > 127, 127, biased))[:8])
        return m


class AttentionOutputQueue(wiring.Component):
    """Output rows: collects a block's ``d`` channels into one row per query, pushes the block's
    rows into the output FIFO (one per cycle, ``last`` on the job's last row) and keeps the
    FIFO from overflowing: a block may start its epilogue only when :attr:`room` says the FIFO
    can take its rows.

    Parameters
    ----------
    d, q_block : int
    depth : int
        FIFO depth, rows (at least ``3 · q_block``).

    Members
    -------
    i_ctl : In(StructLayout({"valid": 1, "gen": 1, "last": 1}))
    i_byte : In(ArrayLayout(signed(8), q_block))
        One channel of the block's queries; ``last`` on its last channel.
    m : In(24)
        The job's queries (for ``last``).
    reserve : In(1)
    reserve_gen : In(1)
    reserve_m0 : In(24)
    reserve_mq : In(range(q_block + 1))
        A block's epilogue starts in bank ``reserve_gen``: its first query and queries.
    gen : In(1)
        The bank the next block will use.
    room : Out(1)
        That bank is free and the FIFO has room for every reserved block and one more.
    o : Out(stream.Signature(StructLayout({"data": ArrayLayout(signed(8), d), "last": 1})))
        Output rows. A block's rows are complete in the row registers :attr:`latency` cycle
        after its last channel and are written into the FIFO one per cycle from then on; each
        is valid here 2 cycles after its write (``SyncFIFOBuffered``).
    """

    report_block = "attention"

    #: Cycles from a block's last channel to its rows complete (the row register), the cycle
    #: its first row is written into the FIFO.
    latency = 1

    def __init__(self, *, d: int, q_block: int, depth: int):
        self.d, self.P, self.depth = d, q_block, depth
        super().__init__({
            "i_ctl": In(_epi_ctl_layout()),
            "i_byte": In(data.ArrayLayout(signed(8), q_block)),
            "m": In(24),
            "reserve": In(1), "reserve_gen": In(1), "reserve_m0": In(24),
            "reserve_mq": In(range(q_block + 1)), "gen": In(1), "room": Out(1),
            "o": Out(stream.Signature(data.StructLayout({"data": _row(d), "last": 1}))),
        })

    def elaborate(self, platform):
        m = Module()
        d, P = self.d, self.P
        bank_busy = Signal(2)                   # bank holds a block not yet pushed out
        bank_set = Signal(2)
        bank_clr = Signal(2)
        m.d.sync += bank_busy.eq((bank_busy | bank_set) & ~bank_clr)
        epi_m0 = [Signal(24, name=f"epi{g}_m0") for g in range(2)]
        epi_mq = [Signal(range(P + 1), name=f"epi{g}_mq") for g in range(2)]
        with m.If(self.reserve):
            m.d.comb += bank_set.eq(Mux(self.reserve_gen, 0b10, 0b01))
            for g in range(2):
                with m.If(self.reserve_gen == g):
                    m.d.sync += [epi_m0[g].eq(self.reserve_m0), epi_mq[g].eq(self.reserve_mq)]
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=8 * d + 1, depth=self.depth)
        # Rows the output FIFO must have room for: P per busy bank, P for the new one. The push
        # of a block takes q_block cycles and the next block's outputs arrive d cycles later at
        # the earliest, so two banks overlap only when q_block <= d.
        reserved_rows = Mux(bank_busy[0], P, 0) + Mux(bank_busy[1], P, 0)
        room = ((fifo.level + reserved_rows + P <= self.depth)
                & ~bank_busy.bit_select(self.gen, 1))
        if P > d:
            room &= bank_busy == 0
        m.d.comb += self.room.eq(room)

        y_ctl = self.i_ctl
        o_rows = [Signal(8 * d, name=f"orow{p}") for p in range(P)]
        push_rows = [Signal(8 * d, name=f"push_row{p}") for p in range(P)]
        push = Signal()
        push_gen = Signal()
        push_p = Signal(range(P + 1))
        for p in range(P):
            byte = self.i_byte[p].as_unsigned()
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
                    m.d.comb += fifo.w_data.eq(Cat(push_rows[p], m0_push + p == self.m - 1))
            m.d.comb += fifo.w_en.eq(1)
            m.d.sync += push_p.eq(push_p + 1)
            with m.If(push_p == mq_push - 1):
                m.d.sync += push.eq(0)
                m.d.comb += bank_clr.eq(Mux(push_gen, 0b10, 0b01))
        m.d.comb += [self.o.valid.eq(fifo.r_rdy), self.o.payload.eq(fifo.r_data),
                     fifo.r_en.eq(self.o.ready)]
        return m


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
        """Cycles from a key accepted to its score written into the tile buffer
        (:attr:`AttentionScores.latency`)."""
        return AttentionScores.latency_of(self.rounding)

    @property
    def div_latency(self) -> int:
        """Cycles from a numerator entering the divider to its output byte: input stage,
        ``QB`` quotient stages, sign fix-up (:attr:`AttentionDivider.latency`), two output
        requantization stages (:attr:`AttentionOutputRequant.latency`, the product; and
        :attr:`AttentionOutputQueue.latency`, the output row register)."""
        return (AttentionDivider.latency_of(self.QB) + AttentionOutputRequant.latency
                + AttentionOutputQueue.latency)

    @property
    def latencies(self) -> dict[str, int]:
        """Pipeline latencies, cycles."""
        return {"attention_score": self.score_latency, "attention_divider": self.div_latency}

    def elaborate(self, platform):
        m = Module()
        d, P, F, B, G, NS = self.d, self.P, self.F, self.B, self.G, self.TILE_SLOTS
        m.submodules.job = job = AttentionJobControl(heads=self.heads, n_max=self.n_max, F=F,
                                                     G=G)
        m.submodules.lut = lut = AttentionLut(heads=self.heads, F=F, ports=P)
        m.submodules.front = fe = AttentionFrontEnd(d=d, q_block=P, B=B, slots=NS)
        m.submodules.scores = sc = AttentionScores(d=d, q_block=P, W_S=self.W_S,
                                                   side=_side_layout(P, B, NS),
                                                   rounding=self.rounding)
        m.submodules.tiles = tb = AttentionTileBuffer(d=d, q_block=P, B=B, slots=NS)
        m.submodules.back = be = AttentionBackEnd(d=d, q_block=P, B=B, slots=NS,
                                                  rescale_lanes=self.RL)
        m.submodules.acc = acc = AttentionAccumulator(d=d, q_block=P, F=F, W_L=self.W_L,
                                                      W_A=self.W_A, rescale_lanes=self.RL)
        m.submodules.divider = div = AttentionDivider(q_block=P, G=G, W_L=self.W_L,
                                                      W_A=self.W_A, QB=self.QB)
        m.submodules.out_requant = orq = AttentionOutputRequant(q_block=P, QB=self.QB)
        m.submodules.out_queue = oq = AttentionOutputQueue(d=d, q_block=P,
                                                           depth=self.out_depth)

        # Job control: commands, parameters (and the LUT), status.
        for name in ("cmd", "param", "q", "k", "v"):
            target = job if name in ("cmd", "param") else fe
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(target, name))
        wiring.connect(m, job.status, wiring.flipped(self.status))
        m.d.comb += [lut.w_en.eq(job.lut_w_en), lut.w_head.eq(job.lut_w_head),
                     lut.w_idx.eq(job.lut_w_idx), lut.w_data.eq(job.lut_w_data),
                     lut.r_head.eq(job.head),
                     job.frame_err.eq(fe.frame_err), job.row_out.eq(self.o.valid & self.o.ready)]

        # Front end: keys into the score datapath, V rows and scores into the tile buffer.
        m.d.comb += [fe.start.eq(job.start), fe.m.eq(job.m), fe.n.eq(job.n),
                     fe.causal.eq(job.causal), fe.release.eq(be.release),
                     sc.i_valid.eq(fe.key_valid), sc.i_q.eq(fe.q_rows), sc.i_k.eq(fe.key),
                     sc.i_side.eq(fe.side), sc.m0_s.eq(job.m0_s), sc.sh_s.eq(job.sh_s),
                     tb.v_en.eq(fe.key_valid), tb.v_slot.eq(fe.side.slot),
                     tb.v_idx.eq(fe.side.idx), tb.v_data.eq(fe.value),
                     tb.s_valid.eq(sc.o_valid), tb.s_side.eq(sc.o_side),
                     tb.s_score.eq(sc.o_score)]

        # Back end: tiles read back through the LUT into the accumulator.
        m.d.comb += [be.start.eq(job.start), be.m.eq(job.m), be.t_ready.eq(tb.ready),
                     be.t_max.eq(tb.t_max), be.t_any.eq(tb.t_any), be.t_count.eq(tb.t_count),
                     be.t_bend.eq(tb.t_bend), tb.release.eq(be.release),
                     tb.r_slot.eq(be.r_slot), tb.r_idx.eq(be.r_idx),
                     be.x1_score.eq(tb.r_score), lut.r_idx.eq(be.lut_idx),
                     acc.issue.eq(be.issue), be.pipe_empty.eq(acc.pipe_empty),
                     acc.x1_on.eq(tb.r_on), acc.x1_v.eq(tb.r_v), acc.zp_v.eq(job.zp_v),
                     acc.e.eq(lut.r_data), acc.load_r.eq(be.load_r),
                     acc.rescale.eq(be.rescale), acc.rescale_first.eq(be.rescale_first),
                     acc.need.eq(be.need), acc.clear_L.eq(be.epi_load),
                     acc.shift.eq(be.div_in)]

        # Epilogue: divider, output requantizer, output rows.
        m.d.comb += [div.load.eq(be.epi_load), div.load_gen.eq(be.epi_gen),
                     div.load_L.eq(acc.L), div.load_empty.eq(be.epi_empty),
                     div.i_ctl.valid.eq(be.div_in), div.i_ctl.gen.eq(be.epi_gen),
                     div.i_ctl.last.eq(be.div_last), div.i_num.eq(acc.a_head),
                     orq.i_ctl.eq(div.o_ctl), orq.i_quot.eq(div.o_quot), orq.m0_o.eq(job.m0_o),
                     orq.k_o.eq(job.k_o), orq.zp_o.eq(job.zp_o),
                     oq.i_ctl.eq(orq.o_ctl), oq.i_byte.eq(orq.o_byte), oq.m.eq(job.m),
                     oq.reserve.eq(be.epi_load), oq.reserve_gen.eq(be.epi_gen),
                     oq.reserve_m0.eq(be.epi_m0), oq.reserve_mq.eq(be.epi_mq),
                     oq.gen.eq(be.epi_gen), be.room.eq(oq.room)]
        wiring.connect(m, oq.o, wiring.flipped(self.o))
        return m
