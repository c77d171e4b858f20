# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of the OSI8 softmax unit (hw/softmax.py) against sim.golden."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Value
from amaranth.sim import Simulator

from npugen.hw.softmax import SoftmaxUnit
from npugen.sim.golden.softmax import make_lut, softmax_int8


def _beats(row, mask, lanes):
    """Beats (data, keep, mask, last) of one pass over a row."""
    n = len(row)
    beats = []
    for start in range(0, n, lanes):
        d = [int(x) for x in row[start:start + lanes]]
        mk = [bool(x) for x in mask[start:start + lanes]]
        keep = (1 << len(d)) - 1
        mbits = sum(1 << i for i, x in enumerate(mk) if x)
        d += [0] * (lanes - len(d))
        beats.append((d, keep, mbits, start + lanes >= n))
    return beats


def run_softmax(rows, masks, c, *, lanes=1, F=24, B=4, n_max=1024, rom=False,
                out_ready=lambda cyc: 1, in_gap=lambda cyc: False):
    lut = make_lut(c, F)
    dut = SoftmaxUnit(lanes=lanes, F=F, B=B, n_max=n_max, lut=lut if rom else None)
    got = []

    def pack(d, keep, mbits, last):
        word = 0
        for i, x in enumerate(d):
            word |= (x & 0xFF) << (8 * i)
        return word | (keep << (8 * lanes)) | (mbits << (9 * lanes)) | (int(last) << (10 * lanes))

    async def tb_in(ctx):
        if not rom:
            for e in lut:
                ctx.set(dut.lut.payload, e)
                ctx.set(dut.lut.valid, 1)
                await ctx.tick().until(dut.lut.ready)
            ctx.set(dut.lut.valid, 0)
        cyc = 0
        for row, mask in zip(rows, masks):
            for _ in range(2):
                for beat in _beats(row, mask, lanes):
                    while in_gap(cyc):
                        ctx.set(dut.i.valid, 0)
                        await ctx.tick()
                        cyc += 1
                    ctx.set(Value.cast(dut.i.payload), pack(*beat))
                    ctx.set(dut.i.valid, 1)
                    await ctx.tick().until(dut.i.ready)
                    cyc += 1
                ctx.set(dut.i.valid, 0)

    async def tb_out(ctx):
        cyc = 0
        for row in rows:
            out = []
            while True:
                r = out_ready(cyc)
                ctx.set(dut.o.ready, r)
                _, _, v, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
                cyc += 1
                assert cyc < 200_000, "timeout"
                if v and r:
                    keep = payload.keep
                    out += [payload.data[i] for i in range(lanes) if keep >> i & 1]
                    if payload.last:
                        break
            got.append(out)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb_in)
    sim.add_testbench(tb_out)
    sim.run()
    return got


def _golden(rows, masks, c, F, B):
    return [list(softmax_int8(np.array(r, dtype=np.int8), c, F=F, B=B,
                              mask=np.array(mk, dtype=bool))) for r, mk in zip(rows, masks)]


@pytest.mark.parametrize("lanes,B,rom", [(1, 4, False), (2, 4, True), (4, 16, False), (1, 1, True)])
def test_softmax_unit_matches_golden(lanes, B, rom):
    rng = np.random.default_rng(lanes * 10 + B)
    c = 0.05
    rows, masks = [], []
    for n in (1, 2, 3, 5, 8, 17, 40):
        rows.append(rng.integers(-128, 128, n))
        masks.append(rng.random(n) < 0.8)
    rows.append(np.array([127, -128, -128, -128]))          # one-hot, index 255
    masks.append(np.ones(4, dtype=bool))
    rows.append(np.array([5, 127, 3, 9]))                     # fully masked row
    masks.append(np.zeros(4, dtype=bool))
    rows.append(np.array([-10, 127, 0, 28, -128, 127]))       # 127 in a masked slot
    masks.append(np.array([1, 0, 1, 1, 1, 1], dtype=bool))
    rows.append(np.arange(-128, 128, 3))                       # increasing: many rescales
    masks.append(np.ones(len(rows[-1]), dtype=bool))
    got = run_softmax(rows, masks, c, lanes=lanes, B=B, rom=rom,
                      out_ready=lambda cyc: (cyc * 7) % 5 != 0, in_gap=lambda cyc: cyc % 11 == 3)
    assert got == _golden(rows, masks, c, 24, B)


@pytest.mark.parametrize("F", [16, 20])
def test_softmax_unit_other_F(F):
    rng = np.random.default_rng(F)
    rows = [rng.integers(-128, 128, n) for n in (3, 12, 33)]
    masks = [np.ones(len(r), dtype=bool) for r in rows]
    assert run_softmax(rows, masks, 0.1, lanes=2, F=F, B=4) == _golden(rows, masks, 0.1, F, 4)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_softmax_parameter_errors():
    with pytest.raises(ValueError, match="B must be a multiple of lanes \\(4\\), not 6"):
        SoftmaxUnit(lanes=4, B=6)
    with pytest.raises(ValueError, match="F must be an integer from 8 to 30, not 40"):
        SoftmaxUnit(F=40)
    with pytest.raises(TypeError, match="Lanes must be an integer, not 1.5"):
        SoftmaxUnit(lanes=1.5)


@pytest.mark.parametrize("rom", [False, True], ids=["lut-stream", "lut-rom"])
def test_softmax_tops_generate_and_lint_clean(tmp_path, rom):
    """The standalone softmax top and the accelerator top with a [softmax] section convert, carry
    the AXI4-Stream ports, and pass verilator --lint-only -Wall with the documented waivers."""
    import dataclasses
    import json

    from npugen.hw import emit
    from npugen.hw.config import GemmConfig, SoftmaxConfig
    from npugen.hw.top import NpuTop, SoftmaxTop

    sm = SoftmaxConfig(lanes=2, B=4, lut_rom_scale=0.05 if rom else None)
    cfg = GemmConfig(name="acc", rows=2, cols=2, k_max=64, acc_depth=16, res_depth=8, softmax=sm)
    lut = make_lut(0.05, 24) if rom else None
    for name, top in (("acc", lambda c: NpuTop(c, softmax_lut=lut)),
                      ("acc_softmax", lambda c: SoftmaxTop(c, lut=lut))):
        folder = emit.generate(dataclasses.replace(cfg, name=name), tmp_path, top=top)
        ports = {p["name"]: p["width"] for p in json.loads((folder / "manifest.json").read_text())["ports"]}
        assert ports["s_axis_score_tdata"] == 16 and ports["s_axis_score_tuser"] == 2
        assert ports["m_axis_prob_tkeep"] == 2
        assert ("s_axis_lut_tdata" in ports) == (not rom)
        ok, messages = emit.lint(folder / f"{name}.v")
        assert ok, "\n".join(messages)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_softmax_rom_needs_the_golden_lut():
    from npugen.hw.config import GemmConfig, SoftmaxConfig
    from npugen.hw.top import SoftmaxTop
    cfg = GemmConfig(rows=2, cols=2, softmax=SoftmaxConfig(lut_rom_scale=0.05))
    with pytest.raises(ValueError, match="softmax.lut_rom_scale and a baked LUT go together"):
        SoftmaxTop(cfg)
    with pytest.raises(ValueError, match="has no \\[softmax\\] section"):
        SoftmaxTop(GemmConfig(rows=2, cols=2))


def test_softmax_verilog_grows_linearly_with_lanes():
    """Regression: the pass-1 max tree once doubled in size per lane (79 MB of Verilog at 16
    lanes). Sixteen lanes must stay within a few times the 4-lane design."""
    from amaranth.back import verilog
    small = len(verilog.convert(SoftmaxUnit(lanes=4, B=16), name="s", emit_src=False))
    large = len(verilog.convert(SoftmaxUnit(lanes=16, B=16), name="s", emit_src=False))
    assert large < 4 * small
