"""Systolic arrays of :mod:`npugen.hw.pe` elements, with input skew and output deskew."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .pe import OutputStationaryPE, WeightStationaryPE

__all__ = ["WeightStationaryArray", "OutputStationaryArray", "check_dims"]


def check_dims(rows, cols, limit: int = 64) -> None:
    """Check array dimensions.

    Raises
    ------
    TypeError
        If ``rows`` or ``cols`` is not an integer.
    ValueError
        If either is outside 1 .. ``limit``.
    """
    for name, v in (("Rows", rows), ("Cols", cols)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{name} must be an integer, not {v!r}")
        if not 1 <= v <= limit:
            raise ValueError(f"{name} must be an integer from 1 to {limit}, not {v!r}")


def _delay_taps(m: Module, value, cycles: int, name: str, hold=None) -> list:
    """``value`` and its copies delayed by 1 to ``cycles`` registers (``name_d1``, ...). With
    ``hold`` (a 1-bit signal), the first register loads only while ``hold`` is 0 and keeps its
    value otherwise (operand isolation: the registers after it then shift a constant)."""
    taps = [value]
    for d in range(cycles):
        reg = Signal.like(value, name=f"{name}_d{d + 1}")
        if d == 0 and hold is not None:
            with m.If(~hold):
                m.d.sync += reg.eq(value)
        else:
            m.d.sync += reg.eq(taps[-1])
        taps.append(reg)
    return taps


def _delay(m: Module, value, cycles: int, name: str, hold=None):
    """Return ``value`` delayed by ``cycles`` registers (``hold``: see :func:`_delay_taps`)."""
    return _delay_taps(m, value, cycles, name, hold)[-1]


def _check_isolate(isolate, input_reg: bool) -> bool:
    """``isolate`` as a bool; it needs the input register that holds the operands.

    Raises
    ------
    ValueError
        If ``isolate`` is true without ``input_reg``.
    """
    if isolate and not input_reg:
        raise ValueError("Operand isolation needs the input register (input_reg) that holds "
                         "the operands")
    return bool(isolate)


class WeightStationaryArray(wiring.Component):
    """``rows`` × ``cols`` weight-stationary array: ``c[n] = sum_r a[r] * W[sel][r][n]``.

    Row ``r`` of a weight tile (``K`` index) sits in PE row ``r``, column ``n`` (``N`` index) in
    PE column ``n``. One row of A enters per cycle, unskewed; the array skews it (row ``r`` by
    ``r`` cycles), partial sums flow down the columns, and the outputs are deskewed (column ``n``
    delayed by ``cols - 1 - n``) so one full row of C leaves per cycle, :attr:`latency` cycles
    after its row of A entered. There is no stall: a cycle with no data is a bubble, which the
    caller tracks itself. Two weight tiles are held; ``sel`` picks one per row of A, and
    ``sel_next`` is the ``sel`` of the next cycle (each PE selects its weight into a register a
    cycle before the multiply, so it needs the tile a cycle ahead). The caller keeps ``sel`` in
    a register and gives its next value as ``sel_next``: the array then starts its ``sel``
    delay line from that register instead of repeating it (a copy of it here would be merged
    by a flat synthesis but not across the boundary by the hierarchical estimate).
    ``sel`` travels through registers, so after a reset rows of A see tile 0 until a ``sel``
    given after the reset has reached them (``rows + cols - 2`` cycles at most).

    Weight loads are skewed too: a load presented at cycle ``t`` reaches column ``n`` at
    ``t + n``. A row of A entering at ``t`` meets column ``n`` of array row ``r`` at ``t + r + n``,
    so a weight tile may be reloaded from the cycle after its last row of A entered, and used by a
    row of A entering the cycle after its last load.

    Parameters
    ----------
    rows, cols : int
        Array size, 1 to 64 each.
    product_reg, weight_reg : bool
        The PEs' product and weight (``w_cur``) registers
        (:class:`~npugen.hw.pe.WeightStationaryPE`; default: both).
    input_reg : bool
        Register every input (the row of A, ``sel``, the weight load) once before the skew, so
        that no logic of the caller's reaches a PE's multiplier in the same cycle (default:
        True; one cycle of :attr:`latency`, ``8 · (rows + cols) + 3 + bits(rows)`` flip-flops).
    dsp_primitive : str
        The PEs' ``dsp_primitive`` (:class:`~npugen.hw.pe.WeightStationaryPE`; ``"ecp5"``
        needs ``input_reg``): each PE gets as ``a_next`` the input of the PE on its left, the
        first column the input of its last skew register.
    isolate : bool
        Operand isolation (default: False): the input register keeps the last row of A in a
        cycle whose ``a_valid`` is 0 instead of loading the bubble's lanes, so the skew, the
        PEs' activation, product and partial-sum registers and the multipliers see the same
        operands again and do not switch (a bubble's row of C is then the last row's
        products with the weights of the bubble's cycle, not 0: the caller ignores it either
        way). Needs ``input_reg``; adds the member ``a_valid`` and no cycle.

    Members
    -------
    a : In(ArrayLayout(signed(8), rows))
        One row of A (``K`` lanes).
    a_valid : In(1)
        (with ``isolate``) :attr:`a` is a row of A, not a bubble.
    sel : In(1)
        Weight tile used by this cycle's row of A.
    sel_next : In(1)
        ``sel`` of the next cycle.
    w_en : In(1)
        Load ``w_data`` into row ``w_row`` of weight tile ``w_buf``.
    w_row : In(range(max(rows, 2)))
        (one bit even at ``rows = 1``: Verilog has no zero-width port)
    w_buf : In(1)
    w_data : In(ArrayLayout(signed(8), cols))
    c : Out(ArrayLayout(signed(psum_width), cols))
        One row of C; ``psum_width = bit_length(16384 * rows) + 1`` bits, exact.
    """

    #: The area report's block (npugen.hw.blocks).
    report_block = "array"

    def __init__(self, *, rows: int, cols: int, product_reg: bool = True,
                 weight_reg: bool = True, input_reg: bool = True, isolate: bool = False,
                 dsp_primitive: str = "none"):
        check_dims(rows, cols)
        self.rows, self.cols = rows, cols
        self.product_reg, self.weight_reg = bool(product_reg), bool(weight_reg)
        self.input_reg = bool(input_reg)
        if dsp_primitive != "none" and not self.input_reg:
            raise ValueError("An array of DSP primitive PEs needs the input register")
        self.dsp_primitive = dsp_primitive
        self.isolate = _check_isolate(isolate, self.input_reg)
        self.psum_width = (16384 * rows).bit_length() + 1
        super().__init__({
            "a": In(data.ArrayLayout(signed(8), rows)),
            **({"a_valid": In(1)} if self.isolate else {}),
            "sel": In(1),
            "sel_next": In(1),
            "w_en": In(1),
            "w_row": In(range(max(rows, 2))),
            "w_buf": In(1),
            "w_data": In(data.ArrayLayout(signed(8), cols)),
            "c": Out(data.ArrayLayout(signed(self.psum_width), cols)),
        })

    @property
    def latency(self) -> int:
        """Cycles from a row of A at :attr:`a` to its row of C at :attr:`c`: ``rows + cols``
        with the PEs' product register (the skew, ``rows - 1 + cols - 1``, and the last PE's
        product and sum registers), one less without, one more with the input register."""
        return self.rows + self.cols - (0 if self.product_reg else 1) + self.input_reg

    def elaborate(self, platform):
        m = Module()
        R, C = self.rows, self.cols
        # The input register delays everything by one cycle (i): the activations, the weight
        # loads and sel alike, so their timing relative to each other is unchanged.
        i = int(self.input_reg)
        # Weight loads are skewed like the activations: column c takes its weight c cycles after
        # column 0, so a weight register is rewritten on the same diagonal wavefront on which the
        # last row of A using it has passed, and a tile can be reloaded right after its last use.
        load = []
        en, row, buf = self.w_en, self.w_row, self.w_buf
        for c in range(C):
            if c + i:
                en, row, buf = (_delay(m, v, 1, f"w_{n}_col{c}")
                                for v, n in ((en, "en"), (row, "row"), (buf, "buf")))
            load.append((en, row, buf, _delay(m, self.w_data[c], c + i, f"w_data_col{c}")))
        # A PE on anti-diagonal d needs, as its sel_next, the sel_next given d cycles before:
        # sel_next itself for d = 0, sel for d = 1, sel delayed by d - 1 registers after that.
        # One delay line for the array, tapped per anti-diagonal (d + 1 with the input
        # register). (Passed from PE to PE beside the activation, as before 2026-11-30, the
        # copies on one anti-diagonal were the same flip-flop: the flat synthesis merged them,
        # the per-module estimate could not.)
        sel_taps = [self.sel_next, self.sel]
        for d in range(2, R + C + i):
            tap = Signal(name=f"sel_diag{d}")
            m.d.sync += tap.eq(sel_taps[-1])
            sel_taps.append(tap)
        psum_above = [0] * C
        hold = ~self.a_valid if self.isolate else None
        for r in range(R):
            taps = _delay_taps(m, self.a[r], r + i, f"skew_a{r}", hold)
            a = taps[-1]
            # a_next: what `a` will be next cycle (the DSP primitive's copy of the activation
            # register loads it): the input of the last skew register, which for the first
            # register is the held value on a bubble under operand isolation.
            if len(taps) > 2 or (len(taps) == 2 and hold is None):
                a_next = taps[-2]
            elif len(taps) == 2:
                a_next = Mux(hold, taps[-1], taps[0])
            else:
                a_next = None
            for c in range(C):
                en_c, row_c, buf_c, data_c = load[c]
                we = Signal(2, name=f"w_we_{r}_{c}")
                hit = en_c & (row_c == r)
                m.d.comb += we.eq(Cat(hit & ~buf_c, hit & buf_c))
                # Row r's partial sums hold r + 1 products: each row only as wide as that
                # needs (the last row: psum_width).
                pe = WeightStationaryPE(psum_width=(16384 * (r + 1)).bit_length() + 1,
                                        pass_right=c < C - 1, product_reg=self.product_reg,
                                        weight_reg=self.weight_reg,
                                        dsp_primitive=self.dsp_primitive)
                if self.dsp_primitive != "none":
                    m.d.comb += pe.a_next.eq(a_next)
                m.submodules[f"pe_{r}_{c}"] = pe
                # without w_cur the PE selects with this cycle's sel: one tap further on
                sel_pin = pe.sel_next if self.weight_reg else pe.sel
                m.d.comb += [pe.a.eq(a), sel_pin.eq(sel_taps[r + c + i + (not self.weight_reg)]),
                             pe.psum_in.eq(psum_above[c]), pe.w_we.eq(we),
                             pe.w_data.eq(data_c)]
                if c < C - 1:
                    a_next, a = a, pe.a_out
                psum_above[c] = pe.psum_out
        for c in range(C):
            m.d.comb += self.c[c].eq(_delay(m, psum_above[c], C - 1 - c, f"deskew_c{c}"))
        return m


class OutputStationaryArray(wiring.Component):
    """``rows`` × ``cols`` output-stationary array: PE ``(r, n)`` accumulates one C element.

    Each cycle one K step enters: a column of A (``rows`` lanes, lane ``i`` = row ``m0 + i`` of
    the tile) and a row of B (``cols`` lanes), with ``valid`` and ``last`` (the tile's final K
    step). The array skews both, and on ``last`` each PE parks its sum; the column's sums are then
    shifted out through a drain chain and deskewed, so the tile's rows leave one per cycle, lane
    ``i`` at :attr:`latency` ``+ i`` cycles after the ``last`` step entered. Consecutive ``last``
    steps must be at least ``rows`` cycles apart (the drain needs them). Lane ``i`` of A is
    wired to PE row ``rows - 1 - i`` so that the drain emits lane 0 first.

    Parameters
    ----------
    rows, cols : int
        Array size, 1 to 64 each.
    acc_width : int
        Accumulator width, bits.
    input_reg : bool
        Register every input (``a``, ``b``, ``valid``, ``last``) once before the skew, so that
        no logic of the caller's reaches a PE's multiplier in the same cycle (default: True;
        one cycle of :attr:`latency`, ``8 · (rows + cols) + 2`` flip-flops).
    isolate : bool
        Operand isolation (default: False): the input register keeps the last A and B lanes
        in a cycle whose ``valid`` is 0, so the skew and the PEs' multipliers see the same
        operands again and do not switch (a PE only accumulates on ``valid``). Needs
        ``input_reg``; no cycle.

    Members
    -------
    a : In(ArrayLayout(signed(8), rows))
    b : In(ArrayLayout(signed(8), cols))
    valid, last : In(1)
    c : Out(ArrayLayout(signed(acc_width), cols))
        One row of C per cycle during the drain (unqualified: the caller knows when).
    """

    #: The area report's block (npugen.hw.blocks).
    report_block = "array"

    def __init__(self, *, rows: int, cols: int, acc_width: int, input_reg: bool = True,
                 isolate: bool = False):
        check_dims(rows, cols)
        self.rows, self.cols, self.acc_width = rows, cols, acc_width
        self.input_reg = bool(input_reg)
        self.isolate = _check_isolate(isolate, self.input_reg)
        super().__init__({
            "a": In(data.ArrayLayout(signed(8), rows)),
            "b": In(data.ArrayLayout(signed(8), cols)),
            "valid": In(1),
            "last": In(1),
            "c": Out(data.ArrayLayout(signed(acc_width), cols)),
        })

    @property
    def latency(self) -> int:
        """Cycles from the ``last`` K step at the inputs to the first row (lane 0) at :attr:`c`:
        ``rows + cols``, one more with the input register."""
        return self.rows + self.cols + self.input_reg

    def elaborate(self, platform):
        m = Module()
        R, C, W = self.rows, self.cols, self.acc_width
        i = int(self.input_reg)     # the input register: one cycle more on every input
        pes = [[None] * C for _ in range(R)]
        hold = ~self.valid if self.isolate else None
        b_above = [_delay(m, self.b[c], c + i, f"skew_b{c}", hold) for c in range(C)]
        for r in range(R):
            lane = R - 1 - r
            a = _delay(m, self.a[lane], r + i, f"skew_a{r}", hold)
            valid = _delay(m, self.valid, r + i, f"skew_valid{r}")
            last = _delay(m, self.last, r + i, f"skew_last{r}")
            for c in range(C):
                pe = OutputStationaryPE(acc_width=W, pass_right=(c < C - 1) or (r == R - 1),
                                        pass_down=r < R - 1)
                pes[r][c] = pe
                m.submodules[f"pe_{r}_{c}"] = pe
                m.d.comb += [pe.a.eq(a), pe.b.eq(b_above[c]), pe.valid.eq(valid),
                             pe.last.eq(last)]
                if pe.pass_right:
                    a, valid, last = pe.a_out, pe.valid_out, pe.last_out
                if pe.pass_down:
                    b_above[c] = pe.b_out
        # Drain: when the last step has left PE (R-1, c), load column c's chain from the parked
        # sums, then shift it down one row per cycle; the bottom of the chain is lane 0 first.
        for c in range(C):
            bottom = pes[R - 1][c]
            load = Signal(name=f"drain_load{c}")
            m.d.comb += load.eq(bottom.valid_out & bottom.last_out)
            above = None
            for r in range(R):
                link = Signal(signed(W), name=f"drain_{r}_{c}")
                with m.If(load):
                    m.d.sync += link.eq(pes[r][c].done)
                with m.Else():
                    m.d.sync += link.eq(above if above is not None else 0)
                above = link
            m.d.comb += self.c[c].eq(_delay(m, above, C - 1 - c, f"deskew_c{c}"))
        return m
