"""Vendor DSP primitives behind the ``dsp_primitive`` configuration key, and their simulation models.

The default design (``dsp_primitive = "none"``) is portable Verilog: every multiplier is a
``*`` that each flow maps. With ``dsp_primitive = "ecp5"`` every weight-stationary PE's product
is a Lattice ECP5 ``MULT18X18D`` instance (:func:`ecp5_mult`) that holds the PE's registers in
the DSP block itself: input register A (a copy of the activation register), input register B
(``w_cur``) and the output register (``prod``). Yosys maps a ``*`` on ECP5 to a combinational
``MULT18X18D`` and has no pass that packs registers into it, so the product's path otherwise
runs fabric flip-flop → routing → DSP → routing → fabric flip-flop (docs/area.md).

Yosys ships the primitive as a blackbox only (``share/ecp5/cells_bb.v``), so the simulators get
npugen's behavioural model, :data:`MODELS` (written from the primitive's documented behaviour
in Lattice's ECP5 sysDSP usage guide, FPGA-TN-02205: a signed or unsigned 18 × 18 product with
optional input and output registers, each on a selectable clock, clock enable and synchronous
reset). The model covers what npugen instantiates: ``REG_INPUTA/B_CLK`` and
``REG_OUTPUT_CLK`` ``"NONE"`` or ``"CLK0"`` to ``"CLK3"``, ``REG_PIPELINE_CLK`` ``"NONE"``,
``RESETMODE`` ``"SYNC"``; other settings stop the simulation at time 0 with a message. The
shift inputs (``SOURCEA``/``SOURCEB``) are ignored and the shift-register and cascade outputs
are driven 0.
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, ResetSignal, Signal, signed

__all__ = ["ecp5_mult", "MODELS", "models_for"]

_BITS = 18


def ecp5_mult(m, a, b, *, name: str) -> Signal:
    """Instantiate ``MULT18X18D`` computing ``a * b`` with registered inputs and output.

    Parameters
    ----------
    m : amaranth.hdl.Module
    a, b : signed Amaranth values, at most 18 bits each
        What the input registers A and B load every cycle (sign-extended to 18 bits).
    name : str
        The instance's name.

    Returns
    -------
    Signal, signed(len(a) + len(b))
        The output register: ``a * b`` of two cycles before (input register, then output
        register), reset to 0 by the ``sync`` domain's reset.
    """
    width = len(a) + len(b)
    p = Signal(2 * _BITS, name=f"{name}_p")
    out = Signal(signed(width), name=f"{name}_prod")
    a18, b18 = a.as_signed(), b.as_signed()
    ports = {f"i_A{k}": a18[min(k, len(a) - 1)] for k in range(_BITS)}
    ports.update({f"i_B{k}": b18[min(k, len(b) - 1)] for k in range(_BITS)})
    # The unused inputs (C, the shift inputs, clocks, enables and resets 1 to 3) stay
    # unconnected, at the block's defaults: tied to 0 they made one constant net that nextpnr
    # must route to every DSP block, and it failed to (LFE5U-12F, 20 blocks).
    ports.update({f"o_P{k}": p[k] for k in range(2 * _BITS)})
    # The shift-register and cascade outputs, unused, to nets of their own (no missing pins)
    for group in ("SROA", "SROB", "ROA", "ROB", "ROC"):
        unused = Signal(_BITS, name=f"{name}_{group.lower()}")
        ports.update({f"o_{group}{k}": unused[k] for k in range(_BITS)})
    ports["o_SIGNEDP"] = Signal(name=f"{name}_signedp")
    ports.update(i_CLK0=ClockSignal(), i_CE0=Const(1, 1), i_RST0=ResetSignal())
    m.submodules[name] = Instance(
        "MULT18X18D",
        p_REG_INPUTA_CLK="CLK0", p_REG_INPUTA_CE="CE0", p_REG_INPUTA_RST="RST0",
        p_REG_INPUTB_CLK="CLK0", p_REG_INPUTB_CE="CE0", p_REG_INPUTB_RST="RST0",
        p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE",
        p_REG_OUTPUT_CLK="CLK0", p_REG_OUTPUT_CE="CE0", p_REG_OUTPUT_RST="RST0",
        p_GSR="DISABLED", p_RESETMODE="SYNC", p_MULT_BYPASS="DISABLED",
        i_SIGNEDA=Const(1, 1), i_SIGNEDB=Const(1, 1), i_SOURCEA=Const(0, 1),
        i_SOURCEB=Const(0, 1), **ports)
    m.d.comb += out.eq(p[:width].as_signed())
    return out


def _port_list() -> list[str]:
    names = [f"A{k}" for k in range(17, -1, -1)] + [f"B{k}" for k in range(17, -1, -1)]
    names += [f"C{k}" for k in range(17, -1, -1)]
    names += ["SIGNEDA", "SIGNEDB", "SOURCEA", "SOURCEB"]
    names += [f"{p}{k}" for p in ("CLK", "CE", "RST") for k in range(3, -1, -1)]
    names += [f"{p}{k}" for p in ("SRIA", "SRIB", "SROA", "SROB", "ROA", "ROB", "ROC")
              for k in range(17, -1, -1)]
    names += [f"P{k}" for k in range(35, -1, -1)] + ["SIGNEDP"]
    return names


def _mult18x18d_model() -> str:
    ports = _port_list()
    outs = {n for n in ports if n.startswith(("SROA", "SROB", "ROA", "ROB", "ROC", "P"))
            or n == "SIGNEDP"}
    bus = lambda p, n=18: "{" + ", ".join(f"{p}{k}" for k in range(n - 1, -1, -1)) + "}"  # noqa
    L = ["// npugen: behavioural simulation model of the Lattice ECP5 MULT18X18D (npugen.hw.",
         "// primitives). For simulation only; synthesis uses the vendor primitive.",
         "module MULT18X18D(" + ", ".join(ports) + ");"]
    for pname, default in (
            ("REG_INPUTA_CLK", "NONE"), ("REG_INPUTA_CE", "CE0"), ("REG_INPUTA_RST", "RST0"),
            ("REG_INPUTB_CLK", "NONE"), ("REG_INPUTB_CE", "CE0"), ("REG_INPUTB_RST", "RST0"),
            ("REG_INPUTC_CLK", "NONE"), ("REG_INPUTC_CE", "CE0"), ("REG_INPUTC_RST", "RST0"),
            ("REG_PIPELINE_CLK", "NONE"), ("REG_PIPELINE_CE", "CE0"),
            ("REG_PIPELINE_RST", "RST0"), ("REG_OUTPUT_CLK", "NONE"),
            ("REG_OUTPUT_CE", "CE0"), ("REG_OUTPUT_RST", "RST0"), ("CLK0_DIV", "ENABLED"),
            ("CLK1_DIV", "ENABLED"), ("CLK2_DIV", "ENABLED"), ("CLK3_DIV", "ENABLED"),
            ("HIGHSPEED_CLK", "NONE"), ("GSR", "ENABLED"), ("CAS_MATCH_REG", "FALSE"),
            ("SOURCEB_MODE", "B_SHIFT"), ("MULT_BYPASS", "DISABLED"), ("RESETMODE", "SYNC")):
        L.append(f'  parameter {pname} = "{default}";')
    L.append("  " + "; ".join(f"{'output' if n in outs else 'input'} {n}" for n in ports) + ";")
    L += ["  wire [3:0] ce = {CE3, CE2, CE1, CE0};",
          "  wire [3:0] rst = {RST3, RST2, RST1, RST0};",
          f"  wire [17:0] a_in = {bus('A')};", f"  wire [17:0] b_in = {bus('B')};",
          "  reg [17:0] a_r = 18'd0, b_r = 18'd0;", "  reg [35:0] p_r = 36'd0;"]
    for tag, src, reg, w in (("INPUTA", "a_in", "a_r", 18), ("INPUTB", "b_in", "b_r", 18)):
        L += _register(tag, src, reg, w)
    L += ["  wire [17:0] a_v = (REG_INPUTA_CLK == \"NONE\") ? a_in : a_r;",
          "  wire [17:0] b_v = (REG_INPUTB_CLK == \"NONE\") ? b_in : b_r;",
          "  wire signed [18:0] a_s = {SIGNEDA & a_v[17], a_v};",
          "  wire signed [18:0] b_s = {SIGNEDB & b_v[17], b_v};",
          "  wire signed [37:0] prod = a_s * b_s;",
          "  wire [35:0] product = prod[35:0];"]
    L += _register("OUTPUT", "product", "p_r", 36)
    L += ["  wire [35:0] p_v = (REG_OUTPUT_CLK == \"NONE\") ? product : p_r;",
          f"  assign {bus('P', 36)} = p_v;",
          "  assign SIGNEDP = SIGNEDA ^ SIGNEDB;"]
    for p in ("SROA", "SROB", "ROA", "ROB", "ROC"):
        L.append(f"  assign {bus(p)} = 18'd0;")
    L += ["  initial begin",
          "    if (REG_PIPELINE_CLK != \"NONE\" || RESETMODE != \"SYNC\") begin",
          "      $display(\"MULT18X18D model (npugen): unsupported pipeline register or reset\");",
          "      $finish;",
          "    end",
          "  end",
          "endmodule", ""]
    return "\n".join(L)


def _register(tag: str, src: str, reg: str, width: int) -> list[str]:
    """A model register clocked by the clock its parameters name (CLK0..CLK3), with its clock
    enable and synchronous reset."""
    sel = lambda kind: (f"(REG_{tag}_{kind} == \"{kind}3\") ? 3 : (REG_{tag}_{kind} == "  # noqa
                        f"\"{kind}2\") ? 2 : (REG_{tag}_{kind} == \"{kind}1\") ? 1 : 0")
    out = []
    for k in range(4):
        out += [f"  always @(posedge CLK{k}) if (REG_{tag}_CLK == \"CLK{k}\") begin",
                f"    if (rst[{sel('RST')}]) {reg} <= {width}'d0;",
                f"    else if (ce[{sel('CE')}]) {reg} <= {src};",
                "  end"]
    return out


#: Simulation models of the primitives :func:`models_for` may need: module name -> Verilog.
MODELS = {"MULT18X18D": _mult18x18d_model()}


def models_for(cfg) -> dict[str, str]:
    """The simulation models a configuration's Verilog needs: ``{module: Verilog text}``,
    empty for ``dsp_primitive = "none"``."""
    if getattr(cfg, "dsp_primitive", "none") == "ecp5":
        return {"MULT18X18D": MODELS["MULT18X18D"]}
    return {}
