"""Per-channel requantization of accumulators to int8 (``docs/numerics.md``)."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Requantizer", "ROUNDING_MODES", "LATENCY", "PP_BITS"]

#: Rounding modes: ``single`` (TFLite single rounding, the LiteRT reference kernels) and
#: ``double`` (gemmlowp / classic TFLite and CMSIS-NN).
ROUNDING_MODES = ("single", "double")

#: Pipeline stages (:attr:`Requantizer.latency`) per rounding mode, with 16-bit partial
#: products (``pp_bits`` 16; 8 adds a stage).
LATENCY = {"single": 6, "double": 5}

#: Bits of ``M0`` per partial product (:class:`Requantizer`'s ``pp_bits``): 16, a 17 x 16-bit
#: product that fits one 18 x 18 DSP multiplier (FPGA), or 8, 17 x 8-bit products summed in
#: pairs a stage later (an ASIC's carry-save trees half as deep, for one more stage).
PP_BITS = (8, 16)

#: Bits of the accumulator per partial product of ``acc * M0``: a 17-bit unsigned chunk times a
#: 16-bit half of ``M0`` fits one 18 x 18 signed multiplier (ECP5 MULT18X18D, iCE40 SB_MAC16).
_CHUNK = 17

#: Bits kept of the value the last rounding step adds to, saturated to ``[-2^9, 2^9 - 1]``:
#: ``t = prod >> (30 - sh)`` before ``y = (t + 1) >> 1`` (``single``), ``h >> e`` before
#: ``y = (h >> e) + (rem > thr)`` (``double``). Exact for every input: ``zp_out``, ``act_min``
#: and ``act_max`` are in ``[-128, 127]``. ``single``: a ``t`` at or above ``2^9 - 1`` gives
#: ``y >= 256`` and ``y + zp_out >= 128 > act_max``, one at or below ``-2^9`` gives
#: ``y <= -256`` (floor) and ``y + zp_out <= -129 < act_min``. ``double``: ``y >= 511`` or
#: ``y <= -511``, further still. So the clamp returns ``act_max`` or ``act_min`` for the
#: saturated value as for the exact one, and nothing else changes.
_T_BITS = 10

#: Bits kept of ``single``'s coarse shift ``x = prod >> 8·q`` (``30 - sh = 8·q + f``,
#: ``0 <= f <= 7``), saturated before it is registered; the fine shift ``t = x >> f`` follows
#: in the next stage. Exact: ``x`` in ``[-2^16, 2^16 - 1]`` is kept whole; for ``x >= 2^16``
#: both ``x >> f`` and ``(2^16 - 1) >> f`` are at least ``2^16 >> 7 - 1 = 511``, and for
#: ``x < -2^16`` both are at most ``-2^16 >> 7 = -512``, so :data:`_T_BITS`' saturation of
#: ``t`` gives the same ``511`` or ``-512`` either way.
_X_BITS = _T_BITS + 7


#: Bits kept of ``double`` rounding's ``h`` (the high half, before the rounding divide by
#: ``2^e``, ``e = max(-sh, 0) <= 31``), saturated to ``[-2^41, 2^41 - 1]`` before it is
#: registered. Exact: for ``h >= 2^41`` both ``h >> e`` and the saturated ``(2^41 - 1) >> e``
#: are at least ``2^10 - 1``, so :data:`_T_BITS`' saturation makes both ``511`` and ``y`` is
#: ``511`` or ``512``; for ``h < -2^41`` both give ``-512`` and ``y`` is ``-512`` or
#: ``-511``; every such ``y`` clamps to ``act_max`` or ``act_min`` (see :data:`_T_BITS`).
_H_BITS = _T_BITS + 32


def _check_pp_bits(pp_bits) -> None:
    """Raise ValueError unless ``pp_bits`` is one of :data:`PP_BITS` (an int, not a bool)."""
    if type(pp_bits) is not int or pp_bits not in PP_BITS:
        raise ValueError(f"Partial-product bits must be one of {PP_BITS!r}, not {pp_bits!r}")


def _saturate(m: Module, v, name: str, bits: int = _T_BITS) -> Signal:
    """``v`` (signed) saturated to ``[-2^(T-1), 2^(T-1) - 1]``, ``T`` = ``bits``
    (:data:`_T_BITS` unless given), as a combinational signed ``T``-bit signal (``v`` itself,
    extended, when it is no wider)."""
    out = Signal(signed(bits), name=name)
    if len(v) <= bits:
        m.d.comb += out.eq(v)
        return out
    above = v[bits - 1:] != 0        # for v >= 0: v >= 2^(T-1)
    below = ~v[bits - 1:].all()       # for v < 0: v < -2^(T-1)
    with m.If(v[-1] & below):
        m.d.comb += out.eq(-(1 << (bits - 1)))
    with m.Elif(~v[-1] & above):
        m.d.comb += out.eq((1 << (bits - 1)) - 1)
    with m.Else():
        m.d.comb += out.eq(v[:bits].as_signed())
    return out


class Requantizer(wiring.Component):
    """Requantize ``lanes`` accumulators per cycle to int8, fully pipelined.

    Per lane ``i``, with ``M0 = multiplier[i]`` and ``sh = shift[i]``:

    - ``single`` (TFLite with single rounding, what the LiteRT reference kernels compute):
      ``y = (acc * M0 + 2**(30 - sh)) >> (31 - sh)``;
    - ``double`` (gemmlowp ``SaturatingRoundingDoublingHighMul`` then ``RoundingDivideByPOT``,
      computed exactly wide, with no saturation);

    then ``out = clamp(y + zp_out, act_min, act_max)``. Every intermediate is exact: the
    datapath widths grow with ``acc_width`` so no legal input wraps. (The last rounding step's
    input is saturated to 10 bits, and ``double``'s ``h`` to 42, before each is registered,
    where the clamp's result is already decided: the output is the same for every input,
    :data:`_T_BITS`, :data:`_H_BITS`.)

    Parameters
    ----------
    lanes : int
        Accumulators per beat (the array's ``cols``).
    acc_width : int
        Width of a signed accumulator, bits.
    rounding : str
        ``"single"`` or ``"double"``.
    input_reg : bool
        Register every input first (one more cycle of :attr:`latency`): a caller that
        multiplexes the inputs (the result queue's drain) keeps its multiplexers out of the
        multipliers' cycle, and the register sits in this module, where a flow can pack it
        into the DSP blocks' input registers.
    pp_bits : int
        Bits of ``M0`` per partial product (:data:`PP_BITS`). 16: each partial product is a
        17-bit chunk of the accumulator times a 16-bit half of ``M0``, one 18 x 18 DSP
        multiplier on an FPGA. 8: 17-bit chunks times bytes of ``M0`` (twice as many
        products, each with a carry-save tree of 8 rows instead of 16), summed in pairs in
        one more stage (one more cycle of :attr:`latency`): on OSU 0.18 µm the 4 x 4 design
        runs at 246.73 MHz register to register with 16, limited by this stage, and at 296.91
        with 8 (docs/area.md, "ASIC timing closure").

    Members
    -------
    i_valid : In(1)
        A beat is presented this cycle. There is no backpressure: the pipeline always advances.
    i_acc : In(ArrayLayout(signed(acc_width), lanes))
    i_multiplier : In(ArrayLayout(signed(32), lanes))
        ``M0`` in [2**30, 2**31) or 0.
    i_shift : In(ArrayLayout(signed(8), lanes))
        ``sh`` in [-31, 30]; other values give an unspecified (but X-free) result.
    i_zp_out, i_act_min, i_act_max : In(signed(8))
    o_valid : Out(1)
    o_data : Out(ArrayLayout(signed(8), lanes))
        Valid :attr:`latency` cycles after the corresponding input.

    Raises
    ------
    TypeError, ValueError
        For a parameter of the wrong type or value.
    """

    #: The area report's block (npugen.hw.blocks).
    report_block = "requantizer"

    def __init__(self, *, lanes: int, acc_width: int, rounding: str = "single",
                 input_reg: bool = False, pp_bits: int = 16):
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise ValueError(f"Lanes must be a positive integer, not {lanes!r}")
        if not isinstance(acc_width, int) or isinstance(acc_width, bool) or not 17 <= acc_width <= 64:
            raise ValueError(f"Accumulator width must be an integer from 17 to 64, not {acc_width!r}")
        if rounding not in ROUNDING_MODES:
            raise ValueError(f"Rounding must be one of {ROUNDING_MODES!r}, not {rounding!r}")
        _check_pp_bits(pp_bits)
        self.pp_bits = pp_bits
        self.lanes = lanes
        self.acc_width = acc_width
        self.rounding = rounding
        self.input_reg = bool(input_reg)
        super().__init__({
            "i_valid": In(1),
            "i_acc": In(data.ArrayLayout(signed(acc_width), lanes)),
            "i_multiplier": In(data.ArrayLayout(signed(32), lanes)),
            "i_shift": In(data.ArrayLayout(signed(8), lanes)),
            "i_zp_out": In(signed(8)),
            "i_act_min": In(signed(8)),
            "i_act_max": In(signed(8)),
            "o_valid": Out(1),
            "o_data": Out(data.ArrayLayout(signed(8), lanes)),
        })

    @property
    def latency(self) -> int:
        """Cycles from an input beat to its output beat (``single`` 6, ``double`` 5; one more
        with ``input_reg``, one more with ``pp_bits`` 8).

        Both: partial products of ``acc * M0`` (one multiplier block each; with ``pp_bits`` 8,
        the 17 x 8-bit products, then their pairs summed); their sum. Then
        ``single``: the shift by ``30 - sh`` in two stages, by ``8·q`` then by ``f``;
        ``(t + 1) >> 1``; zero point and clamp.
        ``double``: high half with nudge; rounding divide by a power of two; zero point and
        clamp."""
        return self.latency_for(self.rounding, self.pp_bits) + self.input_reg

    @staticmethod
    def latency_for(rounding: str, pp_bits: int = 16) -> int:
        """:attr:`latency` of a requantizer with rounding mode ``rounding`` and ``pp_bits``
        bits of ``M0`` per partial product, without its input register and without building
        one (the cycle model, ``sim/perfmodel.py``, reads it here).

        Raises
        ------
        ValueError
            For a rounding mode not in :data:`ROUNDING_MODES` or ``pp_bits`` not in
            :data:`PP_BITS`.
        """
        if rounding not in ROUNDING_MODES:
            raise ValueError(f"Rounding must be one of {ROUNDING_MODES!r}, not {rounding!r}")
        _check_pp_bits(pp_bits)
        return LATENCY[rounding] + (pp_bits == 8)

    @staticmethod
    def product_stages(pp_bits: int) -> int:
        """Registered stages of :meth:`_product`: 2 (``pp_bits`` 16) or 3 (8).

        Raises
        ------
        ValueError
            For ``pp_bits`` not in :data:`PP_BITS`.
        """
        _check_pp_bits(pp_bits)
        return 2 + (pp_bits == 8)

    @staticmethod
    def _product(m: Module, acc, mult, width: int, lane: int, pp_bits: int = 16) -> Signal:
        """``acc * mult`` (signed ``width`` x signed 32 bits, exact) in registered stages
        (:meth:`product_stages`): the partial products of 17-bit chunks of ``acc`` (unsigned,
        the top one signed) and ``pp_bits``-bit pieces of ``mult`` (unsigned, the top one
        signed), then their shifted sum. With ``pp_bits`` 16 each partial product fits an
        18 x 18 signed multiplier, so none needs an adder after its DSP block in the same
        cycle (a 32 x 32 product split by Yosys' mul2dsp did: the 4 x 4 ECP5 critical path,
        docs/area.md). With ``pp_bits`` 8 the 17 x 8-bit products (``pp8_<lane>_<chunk>_<byte>``)
        are registered, then summed in pairs into the 17 x 16-bit ones (``pp_<lane>_<chunk>_<half>``,
        a 33-bit add), a stage before the same shifted sum."""
        n = -(-width // _CHUNK)
        pieces = 32 // pp_bits
        terms = []
        for j in range(n):
            chunk = acc.as_unsigned()[_CHUNK * j:min(_CHUNK * (j + 1), width)]
            if j == n - 1:
                chunk = chunk.as_signed()
            for half in range(2):
                m_half = mult.as_unsigned()[:16] if half == 0 else mult[16:].as_signed()
                if pp_bits == 16:
                    e = chunk * m_half
                else:
                    parts = []
                    for b in range(2):
                        q = 2 * half + b
                        mpart = mult.as_unsigned()[8 * q:8 * q + 8]
                        if q == pieces - 1:
                            mpart = mpart.as_signed()
                        p8 = Signal((chunk * mpart).shape(), name=f"pp8_{lane}_{j}_{q}")
                        m.d.sync += p8.eq(chunk * mpart)
                        parts.append(p8)
                    e = parts[0] + (parts[1] << 8)
                # as wide as the 17 x 16-bit product it equals (the add's carry bit is a copy
                # of the sign)
                pp = Signal((chunk * m_half).shape(), name=f"pp_{lane}_{j}_{half}")
                m.d.sync += pp.eq(e)
                terms.append(pp << (_CHUNK * j + 16 * half))
        prod = Signal(signed(width + 32), name=f"prod_{lane}")
        m.d.sync += prod.eq(sum(terms[1:], terms[0]))
        return prod

    def _inputs(self, m: Module):
        """The inputs, registered once when ``input_reg``: ``(valid, acc, mult, shift, zp,
        act_min, act_max)``."""
        ins = (self.i_valid, self.i_acc, self.i_multiplier, self.i_shift, self.i_zp_out,
               self.i_act_min, self.i_act_max)
        if not self.input_reg:
            return ins
        names = ("valid", "acc", "mult", "shift", "zp", "act_min", "act_max")
        regs = tuple(Signal.like(v, name=f"in_{n}") for v, n in zip(ins, names))
        m.d.sync += [r.eq(v) for r, v in zip(regs, ins)]
        return regs

    def elaborate(self, platform):
        m = Module()
        W = self.acc_width
        n_stages = self.latency_for(self.rounding, self.pp_bits)
        i_valid, i_acc, i_mult, i_shift, i_zp, i_lo, i_hi = self._inputs(m)

        # Valid and the per-beat clamp parameters travel alongside the lanes.
        valid = [i_valid]
        zp, lo, hi = [i_zp], [i_lo], [i_hi]
        for s in range(1, n_stages + 1):
            v, z, a, b = (Signal(name=f"valid_s{s}"), Signal(signed(8), name=f"zp_s{s}"),
                          Signal(signed(8), name=f"act_min_s{s}"),
                          Signal(signed(8), name=f"act_max_s{s}"))
            m.d.sync += [v.eq(valid[-1]), z.eq(zp[-1]), a.eq(lo[-1]), b.eq(hi[-1])]
            valid.append(v), zp.append(z), lo.append(a), hi.append(b)
        m.d.comb += self.o_valid.eq(valid[-1])

        for i in range(self.lanes):
            acc, mult = i_acc[i], i_mult[i]
            # Stages 1 and 2 (to 3 with pp_bits 8): the wide product acc * M0 (W + 32 bits,
            # exact). The shift is delayed by one stage less, so that below prod and sh are
            # one stage apart as in a one-stage product.
            prod = self._product(m, acc, mult, W, i, self.pp_bits)
            sh = i_shift[i]
            for k in range(self.product_stages(self.pp_bits) - 2):
                sh_k = Signal(signed(8), name=f"shift_{i}_pp{k}")
                m.d.sync += sh_k.eq(sh)
                sh = sh_k
            sh0 = Signal(signed(8), name=f"shift_{i}_s0")
            m.d.sync += sh0.eq(sh)
            sh = sh0
            if self.rounding == "single":
                # y = (prod + 2^(30 - sh)) >> (31 - sh), 31 - sh in [1, 62], computed as
                # t = prod >> (30 - sh) (two stages after prod), y = (t + 1) >> 1 (the next): with
                # prod = t·2^u + r, 0 <= r < 2^u, both are floor((t + 1) / 2). The variable
                # shift and the carry chain sit in separate stages (Fmax).
                ushift = Signal(unsigned(6), name=f"ushift_{i}")
                m.d.sync += ushift.eq((30 - sh)[:6])
                # The stage after prod: the coarse shift by 8·q (an 8-way multiplexer per bit), saturated to
                # _X_BITS bits before it is registered (exact: see _X_BITS). A 64-bit shift by
                # 0 to 61 and the saturation test in one stage were the ECP5 critical path.
                coarse = Signal(signed(W + 32), name=f"coarse_{i}")
                m.d.comb += coarse.eq(prod >> Cat(Const(0, 3), ushift[3:6]))
                x = Signal(signed(_X_BITS), name=f"x_{i}")
                m.d.sync += x.eq(_saturate(m, coarse, f"x_sat_{i}", _X_BITS))
                fine = Signal(unsigned(3), name=f"fine_{i}")
                m.d.sync += fine.eq(ushift[:3])
                # The next stage: the fine shift by f, t saturated to _T_BITS bits before it is
                # registered (exact: see _T_BITS), so the register, the increment, y, the
                # zero-point add and the clamp are 10 to 11 bits wide, not W + 32 to W + 35.
                t = Signal(signed(_T_BITS), name=f"t_{i}")
                m.d.sync += t.eq(_saturate(m, x >> fine, f"t_sat_{i}"))
                y = Signal(signed(_T_BITS), name=f"y_{i}")
                m.d.sync += y.eq((t + 1) >> 1)
            else:
                sh1 = Signal(signed(8), name=f"shift_{i}_s1")
                m.d.sync += sh1.eq(sh)
                # The stage after prod: h = SaturatingRoundingDoublingHighMul(acc << max(sh, 0), M0), exact:
                # p = prod << lshift, h = trunc_toward_zero((p + nudge) / 2^31).
                lshift = Signal(unsigned(5), name=f"lshift_{i}")
                m.d.comb += lshift.eq(Mux(sh1 > 0, sh1, 0))
                p = Signal(signed(W + 32 + 31), name=f"p_{i}")
                m.d.comb += p.eq(prod << lshift)
                nudged = Signal(signed(W + 32 + 32), name=f"nudged_{i}")
                m.d.comb += nudged.eq(p + Mux(p >= 0, (1 << 30), 1 - (1 << 30)))
                # Truncating division by 2^31 toward zero, saturated to _H_BITS bits before
                # it is registered (exact: see _H_BITS).
                h_full = Signal(signed(W + 33), name=f"h_full_{i}")
                m.d.comb += h_full.eq(Mux(nudged >= 0, nudged >> 31,
                                          (nudged + ((1 << 31) - 1)) >> 31))
                h = Signal(signed(_H_BITS), name=f"h_{i}")
                m.d.sync += h.eq(_saturate(m, h_full, f"h_sat_{i}", _H_BITS))
                sh2 = Signal(signed(8), name=f"shift_{i}_s2")
                m.d.sync += sh2.eq(sh1)
                # The next stage: RoundingDivideByPOT(h, max(-sh, 0)), ties away from zero.
                e = Signal(unsigned(6), name=f"rshift_{i}")
                m.d.comb += e.eq(Mux(sh2 < 0, -sh2, 0))
                mask = Signal(unsigned(32), name=f"mask_{i}")
                m.d.comb += mask.eq((Const(1, 1) << e) - 1)
                rem = Signal(unsigned(32), name=f"rem_{i}")
                m.d.comb += rem.eq(h.as_unsigned()[:32] & mask)
                thr = Signal(unsigned(32), name=f"thr_{i}")
                m.d.comb += thr.eq((mask >> 1) + (h < 0))
                # As in single: h >> e saturated to _T_BITS bits before the rounding
                # increment (a y of 511 or more, or -511 or less, clamps as the exact one).
                hs = Signal(signed(_H_BITS), name=f"hs_{i}")
                m.d.comb += hs.eq(h >> e)
                y = Signal(signed(_T_BITS + 1), name=f"y_{i}")
                m.d.sync += y.eq(_saturate(m, hs, f"hs_sat_{i}") + (rem > thr))
            # Last stage: add the output zero point and clamp.
            s = n_stages - 1
            biased = Signal(signed(len(y) + 1), name=f"biased_{i}")
            m.d.comb += biased.eq(y + zp[s])
            out = self.o_data[i]
            with m.If(biased < lo[s]):
                m.d.sync += out.eq(lo[s])
            with m.Elif(biased > hi[s]):
                m.d.sync += out.eq(hi[s])
            with m.Else():
                m.d.sync += out.eq(biased)
        return m
