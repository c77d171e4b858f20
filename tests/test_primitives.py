"""dsp_primitive = "ecp5": the instantiated MULT18X18D blocks, npugen's simulation model of
them, and the flows that can and cannot take them (the GEMM regression on the model is
tests/test_gemm_rtl.py::test_bench_dsp_primitive)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from npugen.hw import emit
from npugen.hw.config import GemmConfig
from npugen.hw.errors import InputError
from npugen.hw.primitives import MODELS, models_for
from npugen.sim.design import build_npu

CFG = GemmConfig(name="dsp_2x3", rows=2, cols=3, k_max=64, acc_depth=16, res_depth=4,
                 dsp_primitive="ecp5")


def _instances(verilog: str) -> list[str]:
    """The parameter lists of every MULT18X18D instance."""
    return re.findall(r"MULT18X18D\s*#\((.*?)\)\s*\\?\w", verilog, re.S)


def test_generated_design_instantiates_registered_dsp_blocks(tmp_path):
    """One MULT18X18D per PE with input registers A and B and the output register on CLK0,
    the model beside the Verilog (not in the filelist a flow synthesizes), and lint clean with
    it; the portable default has neither."""
    folder = emit.generate(CFG, tmp_path, top=build_npu)
    text = (folder / "dsp_2x3.v").read_text()
    inst = _instances(text)
    assert len(inst) == CFG.rows * CFG.cols
    for params in inst:
        for reg in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_OUTPUT_CLK"):
            assert re.search(rf'\.{reg}\("CLK0"\)', params), (reg, params)
        assert re.search(r'\.REG_PIPELINE_CLK\("NONE"\)', params)
    assert (folder / "dsp_2x3_sim_models.v").read_text() == MODELS["MULT18X18D"]
    assert (folder / "dsp_2x3.f").read_text() == "dsp_2x3.v\n"
    assert "sim_models, rtl" in (folder / "dsp_2x3.core").read_text()
    ok, messages = emit.lint(folder / "dsp_2x3.v")
    assert ok, messages
    portable = emit.generate(GemmConfig(name="p_2x3", rows=2, cols=3, k_max=64, acc_depth=16,
                                        res_depth=4), tmp_path, top=build_npu)
    assert "MULT18X18D" not in (portable / "p_2x3.v").read_text()
    assert not (portable / "p_2x3_sim_models.v").exists()
    assert models_for(GemmConfig()) == {}


@pytest.mark.parametrize("target", ["asic", "generic", "ice40", "xilinx"])
def test_other_targets_refuse_the_primitive(target, tmp_path):
    from npugen.hw.synth.flow import area

    with pytest.raises(InputError, match=rf"^--target: '{target}' cannot map this design's ECP5 "
                                         r"MULT18X18D instances \(dsp_primitive = \"ecp5\"\)"):
        area(CFG, target, out=tmp_path, top=build_npu)
    assert not any(tmp_path.iterdir())


_MODEL_TB = """
module tb;
  reg clk = 0, ce = 1, rst = 0;
  reg signed [17:0] a = 0, b = 0;
  wire [35:0] p_reg, p_comb;
  MULT18X18D #(.REG_INPUTA_CLK("CLK0"), .REG_INPUTB_CLK("CLK0"), .REG_OUTPUT_CLK("CLK0"))
    r (%(ra)s, %(rb)s, .SIGNEDA(1'b1), .SIGNEDB(1'b1), .CLK0(clk), .CE0(ce), .RST0(rst),
       .CLK1(1'b0), .CLK2(1'b0), .CLK3(1'b0), .CE1(1'b0), .CE2(1'b0), .CE3(1'b0),
       .RST1(1'b0), .RST2(1'b0), .RST3(1'b0), %(rp)s);
  MULT18X18D c (%(ra)s, %(rb)s, .SIGNEDA(1'b1), .SIGNEDB(1'b1), .CLK0(clk), .CE0(ce),
       .RST0(rst), .CLK1(1'b0), .CLK2(1'b0), .CLK3(1'b0), .CE1(1'b0), .CE2(1'b0), .CE3(1'b0),
       .RST1(1'b0), .RST2(1'b0), .RST3(1'b0), %(cp)s);
  integer t;
  initial begin
    for (t = 0; t < 8; t = t + 1) begin
      // inputs for cycle t; sample the outputs just before the edge
      a = (t == 0) ? -18'sd131072 : (t * 1000 - 3500);
      b = (t == 0) ? -18'sd131072 : (-t * 77 + 200);
      ce = (t != 4);
      rst = (t == 6);
      #1 $display("%%0d %%0d %%0d", t, $signed(p_reg), $signed(p_comb));
      #4 clk = 1; #5 clk = 0;
    end
    $finish;
  end
endmodule
"""


def test_model_registers_and_products_on_icarus(tmp_path):
    """The model against hand-computed expectations: unregistered, P is A * B signed at once;
    registered, P(t) = A(t - 2) * B(t - 2), a cycle with CE0 low holds every register, and
    RST0 clears them synchronously; -2^17 * -2^17 = 2^34 fits the 36-bit P."""
    if shutil.which("iverilog") is None:
        pytest.skip("Icarus Verilog is not installed (Debian package: iverilog)")
    ra = ", ".join(f".A{k}(a[{k}])" for k in range(18))
    rb = ", ".join(f".B{k}(b[{k}])" for k in range(18))
    rp = ", ".join(f".P{k}(p_reg[{k}])" for k in range(36))
    cp = ", ".join(f".P{k}(p_comb[{k}])" for k in range(36))
    (tmp_path / "tb.v").write_text(_MODEL_TB % dict(ra=ra, rb=rb, rp=rp, cp=cp))
    (tmp_path / "model.v").write_text(MODELS["MULT18X18D"])
    subprocess.run(["iverilog", "-g2005", "-o", "tb.vvp", "-s", "tb", "tb.v", "model.v"],
                   cwd=tmp_path, check=True)
    out = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=tmp_path, check=True,
                         capture_output=True, text=True).stdout.split("\n")
    rows = [tuple(int(x) for x in line.split()) for line in out if line.strip()]
    a = [-(1 << 17)] + [t * 1000 - 3500 for t in range(1, 8)]
    b = [-(1 << 17)] + [-t * 77 + 200 for t in range(1, 8)]
    prod = [x * y for x, y in zip(a, b)]
    assert [r[2] for r in rows] == prod                       # REG_*_CLK "NONE": combinational
    # registered: inputs at edge t (end of cycle t), output register one edge later
    regs = {"a": 0, "b": 0, "p": 0}
    want = []
    for t in range(8):
        want.append(regs["p"])
        ce, rst = t != 4, t == 6
        if rst:
            regs = {"a": 0, "b": 0, "p": 0}
        elif ce:
            regs = {"a": a[t], "b": b[t], "p": regs["a"] * regs["b"]}
    assert [r[1] for r in rows] == want
    assert want[2] == 1 << 34
