"""Processing elements: one int8 × int8 multiply-accumulate each, for both dataflows."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["WeightStationaryPE", "OutputStationaryPE"]


def _check_width(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not 16 <= value <= 64:
        raise ValueError(f"{name} must be an integer from 16 to 64, not {value!r}")
    return value


class WeightStationaryPE(wiring.Component):
    """Weight-stationary PE with two weight registers (double buffering).

    Each cycle: ``psum_out <= psum_in + a * w``, ``a_out <= a``, where ``w`` is the weight
    this cycle's ``a`` meets, ``w[sel]``; ``w_we[b]`` loads ``w_data`` into weight register
    ``b``. Two registers are generator parameters (docs/architecture.md gives each one's
    measured cost and gain):

    - ``product_reg``: ``prod <= a * w`` then ``psum_out <= psum_in + prod``: the multiplier
      and the adder are in separate cycles (the product in the DSP block's output register on
      an FPGA), and ``psum_in`` is expected one cycle after ``a``. Without it ``psum_in`` comes
      with ``a``.
    - ``weight_reg``: ``w`` is a register, ``w_cur``, selected one cycle ahead from
      ``sel_next`` (the ``sel`` of the next cycle) with a bypass for a weight written in that
      cycle, so the multiplier's operands both come straight from registers, with no weight
      multiplexer in front of it (the ECP5 critical path: docs/area.md). Without it ``w`` is
      ``w[sel]``, a multiplexer on ``sel`` (given with ``a``).

    The array gives ``sel_next`` (or ``sel``) to each PE on the diagonal wavefront of its
    activation (one delay line per array), so a whole array switches weight tiles with no
    bubble.

    Parameters
    ----------
    psum_width : int
        Width of the signed partial sum, bits (16 to 64). The array sizes each row's so that
        the ``r + 1`` products summed down to array row ``r`` cannot overflow:
        ``bit_length(16384 * (r + 1)) + 1``.
    pass_right : bool
        Register and output the activation for the PE to the right (false for the last column).
    product_reg, weight_reg : bool
        The product and weight registers above (default: both).
    dsp_primitive : str
        ``"none"`` or ``"ecp5"``: the product in an instantiated ECP5 ``MULT18X18D`` whose
        input registers hold ``w_cur`` and a copy of ``a`` and whose output register is
        ``prod`` (:func:`npugen.hw.primitives.ecp5_mult`; needs both registers). The copy of
        ``a`` loads from ``a_next``, so the product is the same in every cycle.

    Members
    -------
    a : In(signed(8))
    a_next : In(signed(8)), the ``a`` of the next cycle (with ``dsp_primitive``)
    sel_next : In(1), the weight register the next cycle's ``a`` meets (with ``weight_reg``)
    sel : In(1), the weight register this cycle's ``a`` meets (without ``weight_reg``)
    psum_in : In(signed(psum_width))
    w_we : In(2)
    w_data : In(signed(8))
    a_out : Out(signed(8)), one cycle after ``a`` (absent when ``pass_right`` is false)
    psum_out : Out(signed(psum_width)), :attr:`latency` cycles after ``a`` (2 with
        ``product_reg``, else 1), one after ``psum_in``
    """

    #: The area report's block (npugen.hw.blocks).
    report_block = "array"

    def __init__(self, *, psum_width: int, pass_right: bool = True, product_reg: bool = True,
                 weight_reg: bool = True, dsp_primitive: str = "none"):
        self.psum_width = _check_width("Partial sum width", psum_width)
        self.pass_right = bool(pass_right)
        self.product_reg = bool(product_reg)
        self.weight_reg = bool(weight_reg)
        if dsp_primitive not in ("none", "ecp5"):
            raise ValueError(f"DSP primitive must be 'none' or 'ecp5', not {dsp_primitive!r}")
        if dsp_primitive != "none" and not (self.product_reg and self.weight_reg):
            raise ValueError("An ECP5 DSP primitive PE needs the product and weight registers")
        self.dsp_primitive = dsp_primitive
        members = {
            "a": In(signed(8)), ("sel_next" if self.weight_reg else "sel"): In(1),
            "psum_in": In(signed(psum_width)), "w_we": In(2), "w_data": In(signed(8)),
            "psum_out": Out(signed(psum_width)),
        }
        if self.pass_right:
            members["a_out"] = Out(signed(8))
        if self.dsp_primitive != "none":
            members["a_next"] = In(signed(8))
        super().__init__(members)

    @property
    def latency(self) -> int:
        """Cycles from ``a`` to ``psum_out`` (from ``psum_in``: one): 2 with the product
        register, else 1."""
        return 2 if self.product_reg else 1

    def elaborate(self, platform):
        m = Module()
        w0 = Signal(signed(8))
        w1 = Signal(signed(8))
        with m.If(self.w_we[0]):
            m.d.sync += w0.eq(self.w_data)
        with m.If(self.w_we[1]):
            m.d.sync += w1.eq(self.w_data)
        if self.weight_reg:
            # w_cur(t) = w[sel(t)](t): sel one cycle early, and each register's value as it
            # will be after this cycle's write.
            w_next = Mux(self.sel_next, Mux(self.w_we[1], self.w_data, w1),
                         Mux(self.w_we[0], self.w_data, w0))
            w_cur = Signal(signed(8))
            m.d.sync += w_cur.eq(w_next)
        else:
            w_cur = Mux(self.sel, w1, w0)
        if self.dsp_primitive == "ecp5":
            # prod(t) = a(t - 1) * w_cur(t - 1), as below: the DSP's input registers load
            # a_next and w_next (the next a and w_cur) and its output register is prod.
            from npugen.hw.primitives import ecp5_mult
            prod = ecp5_mult(m, self.a_next, w_next, name="dsp")
        elif self.product_reg:
            prod = Signal(signed(16))
            m.d.sync += prod.eq(self.a * w_cur)
        else:
            prod = self.a * w_cur
        m.d.sync += self.psum_out.eq(self.psum_in + prod)
        if self.pass_right:
            m.d.sync += self.a_out.eq(self.a)
        return m


class OutputStationaryPE(wiring.Component):
    """Output-stationary PE: accumulates one output element over K steps.

    Each cycle with ``valid``: ``acc <= acc + a * b``; on the step marked ``last`` the finished
    sum goes to ``done`` and ``acc`` restarts from zero, so tiles follow each other with no gap.
    ``a``, ``valid`` and ``last`` pass right and ``b`` passes down, one register each.

    Parameters
    ----------
    acc_width : int
        Width of the signed accumulator, bits (16 to 64).
    pass_right, pass_down : bool
        Register and output ``a``/``valid``/``last`` (right) or ``b`` (down).

    Members
    -------
    a, b : In(signed(8))
    valid, last : In(1)
    a_out : Out(signed(8)); valid_out, last_out : Out(1)  (when ``pass_right``)
    b_out : Out(signed(8))  (when ``pass_down``)
    done : Out(signed(acc_width)), the last finished sum, held until the next ``last``
    """

    #: The area report's block (npugen.hw.blocks).
    report_block = "array"

    def __init__(self, *, acc_width: int, pass_right: bool = True, pass_down: bool = True):
        self.acc_width = _check_width("Accumulator width", acc_width)
        self.pass_right = bool(pass_right)
        self.pass_down = bool(pass_down)
        members = {
            "a": In(signed(8)), "b": In(signed(8)), "valid": In(1), "last": In(1),
            "done": Out(signed(acc_width)),
        }
        if self.pass_right:
            members.update({"a_out": Out(signed(8)), "valid_out": Out(1), "last_out": Out(1)})
        if self.pass_down:
            members["b_out"] = Out(signed(8))
        super().__init__(members)

    #: Cycles from the ``last`` step's inputs to ``done``.
    latency = 1

    def elaborate(self, platform):
        m = Module()
        acc = Signal(signed(self.acc_width))
        total = Signal(signed(self.acc_width))
        m.d.comb += total.eq(acc + self.a * self.b)
        with m.If(self.valid):
            with m.If(self.last):
                m.d.sync += [acc.eq(0), self.done.eq(total)]
            with m.Else():
                m.d.sync += acc.eq(total)
        if self.pass_right:
            m.d.sync += [self.a_out.eq(self.a), self.valid_out.eq(self.valid),
                         self.last_out.eq(self.last)]
        if self.pass_down:
            m.d.sync += self.b_out.eq(self.b)
        return m
