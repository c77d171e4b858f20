"""`npugen power` and hw.synth.power: energy from simulated switching, checked against hand
figures and physical properties.

- A tiny netlist (a register and three inverters) simulated on Icarus: its toggles counted from
  the stimulus, its power computed by hand from the liberty's tables (this file's own reader),
  against OpenSTA's figures after annotation.
- The 2 x 2 design (one ``asic`` synthesis per module): the array's dynamic energy with all-zero
  activations is at most half of that with random ones; the design's dynamic energy grows
  linearly with M; the job's results match the golden model (``measure`` checks them).
- The command's errors.

Skipped, naming the package, when Icarus, OpenSTA or the OSU liberty is missing (`.ci/run`
installs them).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from npugen.hw.config import GemmConfig
from npugen.hw.synth import power as pw
from npugen.hw.synth import tools
from npugen.hw.tools import ToolNotFound, icarus_bin

#: The smallest design with every block (as tests/test_area.py's).
CFG = GemmConfig(name="pwr2", rows=2, cols=2, k_max=64, acc_depth=16, res_depth=4)


def _require_tools() -> None:
    from npugen.sim import power
    try:
        power.check_tools()
    except ToolNotFound as e:
        pytest.skip(f"npugen power needs Debian packages: {e}")


# -- a liberty reader of this test's own ------------------------------------------------------

def _parse_liberty(path: Path) -> dict:
    """Groups, simple attributes and tables of a liberty file, as nested dicts."""
    text = path.read_text(encoding="utf-8", errors="replace")
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S).replace("\\\n", " ")
    tok = re.finditer(r'(\w+)\s*\(\s*"?([^")]*)"?\s*\)\s*\{|(\})|(\w+)\s*:\s*"?([^;"]*)"?\s*;'
                      r'|(\w+)\s*\(([^)]*)\)\s*;', text)
    root = {"_kind": "root", "_children": []}
    stack = [root]
    for t in tok:
        if t.group(1):
            node = {"_kind": t.group(1), "_name": t.group(2), "_children": []}
            stack[-1]["_children"].append(node)
            stack.append(node)
        elif t.group(3):
            stack.pop()
        elif t.group(4):
            stack[-1][t.group(4)] = t.group(5).strip()
        else:
            stack[-1][t.group(6)] = [[float(x) for x in s.split(",")]
                                     for s in re.findall(r'"([^"]*)"', t.group(7))]
    return root["_children"][0]


def _kids(node: dict, kind: str) -> list[dict]:
    return [c for c in node["_children"] if c["_kind"] == kind]


def _named(node: dict, kind: str, name: str) -> dict:
    return next(c for c in _kids(node, kind) if c["_name"] == name)


def _interp(xs: list[float], ys: list[float], x: float) -> float:
    """Linear, extrapolating beyond the ends (as OpenSTA does)."""
    i = 0 if x <= xs[0] else len(xs) - 2 if x >= xs[-1] else \
        max(j for j in range(len(xs) - 1) if xs[j] <= x)
    return ys[i] + (ys[i + 1] - ys[i]) * (x - xs[i]) / (xs[i + 1] - xs[i])


def _lookup(lib: dict, table: dict, values: dict[str, float]) -> float:
    """A table at ``values`` ({template variable: value}), bilinear."""
    tmpl = next(t for k in ("lu_table_template", "power_lut_template") for t in _kids(lib, k)
                if t["_name"] == table["_name"])
    v1 = tmpl["variable_1"]
    if "index_2" not in table:
        return _interp(table["index_1"][0], table["values"][0], values[v1])
    v2 = tmpl["variable_2"]
    col = [_interp(table["index_2"][0], row, values[v2]) for row in table["values"]]
    return _interp(table["index_1"][0], col, values[v1])


_HAND_TB = """`timescale 1ns/10ps
module tb;
  reg aclk = 1'b0;
  always #5 aclk = ~aclk;
  reg d = 1'b0;
  reg [{n1}:0] pattern = {n}'b{bits};
  integer i;
  wire q;
  power_top dut (.aclk(aclk), .d(d), .q(q));
  initial begin
    d = pattern[0];
    repeat (3) @(posedge aclk);
    #1;
    $dumpfile("activity.vcd");
    $dumpvars(1, tb.dut);
    for (i = 1; i < {n}; i = i + 1) begin
      @(posedge aclk);
      #1 d = pattern[i];
    end
    repeat (3) @(posedge aclk);
    #1 $finish;
  end
endmodule
"""


def test_hand_energy_matches_opensta(tmp_path):
    """A register and three inverters, toggled by a random pattern: OpenSTA's internal,
    switching and leakage power of the first two inverters, annotated from the simulation, equal
    the liberty's tables and the pattern's toggles by hand (0.1 %).

    By hand: inverter ``c`` switches its output ``t`` times in the window of ``T`` ns (the
    pattern's changes: zero delay); its load is the next inverter's input capacitance ``C``;
    the input's slews come from the driver's transition tables (the register's ``Q`` at the
    ideal clock's zero slew, the first inverter's ``Y``). Switching ``0.5 C V^2 t / T``;
    internal ``(E_rise(C, slew_rise) + E_fall(C, slew_fall)) t / T`` -- the Debian OpenSTA
    (2019) charges every transition the sum of the two tables, each at the input slew of its
    own edge (docs/power.md); leakage the cell's ``cell_leakage_power`` (nW).
    """
    _require_tools()
    rng = np.random.default_rng(7)
    pattern = rng.integers(0, 2, size=64)
    changes = int(np.count_nonzero(np.diff(pattern)))
    nl = pw.Netlist("hand", [("aclk", "input", [2]), ("d", "input", [3]),
                             ("q", "output", [6])],
                    [("c0", "INVX1", {"A": 3, "Y": 4}, ""), ("c1", "INVX1", {"A": 4, "Y": 5}, ""),
                     ("c2", "INVX1", {"A": 5, "Y": 6}, "")])
    info = pw.write_power_verilog(nl, tmp_path / "power_top.v")
    assert info == {"inputs": 1, "cells": 3}
    bits = "".join(str(int(b)) for b in pattern[::-1])
    (tmp_path / "tb.v").write_text(_HAND_TB.format(n=len(pattern), n1=len(pattern) - 1,
                                                   bits=bits), encoding="utf-8")
    models = tools.liberty_path().with_name("osu018_stdcells.v")
    subprocess.run([icarus_bin(), "-g2005", "-o", "sim.vvp", "tb.v", "power_top.v",
                    str(models)], cwd=tmp_path, check=True, capture_output=True)
    subprocess.run([str(Path(icarus_bin()).with_name("vvp")), "-n", "sim.vvp"], cwd=tmp_path,
                   check=True, capture_output=True)
    act = pw.vcd_activity(tmp_path / "activity.vcd", "tb.dut")
    # the register's output and every inverter's switch once per change of the pattern
    for net in ("n3", "n4", "n5", "n6"):
        assert act.toggles[net] == changes
    assert act.toggles["d"] == changes
    span = act.span_ns
    period = 10.0
    assert span == pytest.approx((len(pattern) + 2) * period)

    lib_path = tools.liberty_path()
    (tmp_path / tools.LIBERTY_NAME).write_bytes(lib_path.read_bytes())
    from npugen.hw.synth.flow import _liberty_pin_directions
    res = pw.sta_power(tmp_path, "power_top.v", "power_top", nl, act, 1000.0 / period,
                       lib_dirs=_liberty_pin_directions())
    assert res["pins"] == res["pins_annotated"] == 2 + 6

    lib = _parse_liberty(lib_path)
    volt = float(lib["nom_voltage"])
    inv = _named(lib, "cell", "INVX1")
    dff = _named(lib, "cell", "DFFPOSX1")
    cap = float(_named(inv, "pin", "A")["capacitance"])                # pF
    leak = float(inv["cell_leakage_power"]) * 1e-9                     # W

    def slews(cell: dict, out_pin: str, load: float, in_slew: dict) -> dict:
        timing = _kids(_named(cell, "pin", out_pin), "timing")[0]
        out = {}
        for edge in ("rise", "fall"):
            # a negative-unate arc's output edge follows the input's other edge
            src = in_slew[{"rise": "fall", "fall": "rise"}[edge]] \
                if timing.get("timing_sense") == "negative_unate" else in_slew[edge]
            out[edge] = _lookup(lib, _kids(timing, f"{edge}_transition")[0],
                                {"total_output_net_capacitance": load,
                                 "input_net_transition": src})
        return out
    s_q = slews(dff, "Q", cap, {"rise": 0.0, "fall": 0.0})           # the ideal clock
    s_y0 = slews(inv, "Y", cap, s_q)
    rate = changes / (span * 1e-9)                                     # transitions a second
    ip = _kids(_named(inv, "pin", "Y"), "internal_power")[0]
    for name, s_in in (("c0", s_q), ("c1", s_y0)):
        e = sum(_lookup(lib, _kids(ip, f"{edge}_power")[0],
                        {"total_output_net_capacitance": cap,
                         "input_transition_time": s_in[edge]}) for edge in ("rise", "fall"))
        hand = {"internal": e * 1e-12 * rate * 1e3,                    # pJ -> J, W -> mW
                "switching": 0.5 * cap * 1e-12 * volt ** 2 * rate * 1e3,
                "leakage": leak * 1e3}
        got = res["instances"][name]
        for kind in pw.POWER_KINDS:
            assert got[kind] == pytest.approx(hand[kind], rel=1e-3), (name, kind)
        # and as energy over the window, pJ
        assert sum(got[k] for k in pw.POWER_KINDS) * span == pytest.approx(
            sum(hand.values()) * span, rel=1e-3)
    blocks = pw.group_power(res["instances"], ["control"] * 3, info["inputs"])
    assert set(blocks) == {"control", pw.INPUT_BLOCK}


def test_vcd_reader_vectors(tmp_path):
    """Vector variables split into bits; X and Z are not toggles; duty is time at 1; an alias
    (two names, one code) gets the figures of its code; other scopes are left out."""
    (tmp_path / "t.vcd").write_text(
        "$timescale 1ps $end\n$scope module tb $end\n$scope module dut $end\n"
        "$var wire 2 ! v [1:0] $end\n$var wire 1 \" s $end\n$var wire 1 \" s_alias $end\n"
        "$upscope $end\n$var wire 1 # other $end\n$upscope $end\n$enddefinitions $end\n"
        "#0\nbx !\n0\"\n1#\n#1000\nb01 !\n1\"\n#2000\nb10 !\nz\"\n#4000\nb10 !\n0#\n",
        encoding="utf-8")
    act = pw.vcd_activity(tmp_path / "t.vcd", "tb.dut")
    assert act.span_ns == pytest.approx(4.0)
    assert act.toggles == {"v[1]": 1, "v[0]": 1, "s": 1, "s_alias": 1}
    assert act.duty("v[1]") == pytest.approx(0.5)
    assert act.duty("v[0]") == pytest.approx(0.25)
    assert act.duty("s") == pytest.approx(0.25)
    assert act.per_clock("v[1]", 2.0) == pytest.approx(0.5)


# -- the 2 x 2 design -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("power")


def _job(m: int, k: int, n: int, *, zero_a: bool = False, seed: int = 3):
    from npugen.sim.power import random_job
    job = random_job(32, k, n, seed)          # the same operands for every M: rows of one A
    job.a = np.zeros_like(job.a[:m]) if zero_a else job.a[:m]
    return job


def _dynamic(r: dict, block: str | None = None) -> float:
    """Internal plus switching energy of the job, pJ (of one block, or the design)."""
    p = r["blocks"][block]["power_mw"] if block else r["power_mw"]
    span = r["cycles"] * r["period_ns"]
    return (p["internal"] + p["switching"]) * span


_runs: dict[str, dict] = {}


def _measure(out: Path, label: str, job) -> dict:
    from npugen.sim.design import build_npu
    from npugen.sim.power import measure
    if label not in _runs:
        _runs[label] = measure(CFG, job=job, label=label, out=out, references=False,
                               top=build_npu)
    return _runs[label]


def test_report(out):
    """The report's figures agree with each other, every pin is annotated, the files are there."""
    _require_tools()
    r = _measure(out, "m8", _job(8, 8, 4))
    assert r["macs"] == 8 * 8 * 4 and (r["m"], r["k"], r["n"]) == (8, 8, 4)
    assert r["pins_annotated_share"] > 0.99
    assert set(r["blocks"]) >= {"array", "requantizer", "control", "memories", pw.INPUT_BLOCK}
    design = sum(v["power_mw"]["total"] for b, v in r["blocks"].items() if b != pw.INPUT_BLOCK)
    assert design == pytest.approx(r["power_mw"]["total"], rel=1e-4)
    e = r["energy_pj"]
    assert e["job"] == pytest.approx(r["power_mw"]["total"] * r["cycles"] * r["period_ns"],
                                     rel=1e-3)
    assert e["per_mac"] == pytest.approx(e["job_without_memories"] / r["macs"], rel=1e-3)
    assert e["job"] == pytest.approx(e["job_without_memories"] + e["memories"], abs=0.1)
    assert r["status_cycles"] <= r["cycles"] + 2
    folder = out / CFG.name / "power"
    assert (folder / "m8.json").is_file() and (folder / "m8.md").is_file()
    assert not (folder / "m8" / "activity.vcd").exists()         # removed once read


def test_zero_activations_halve_array_energy(out):
    """All-zero activations leave the array's multipliers and sums still: its dynamic energy
    is at most half of that with random activations (same weights, same job). What is left is
    mostly the flip-flops' clock pins, paid every cycle (the library has no clock gating): on an
    8-row job (111 cycles, the array busy for half of them) it was 51 %, so the job is 16 rows."""
    _require_tools()
    rand = _measure(out, "m16", _job(16, 8, 4))
    zero = _measure(out, "m16_zero", _job(16, 8, 4, zero_a=True))
    assert _dynamic(zero, "array") <= 0.5 * _dynamic(rand, "array")


def test_dynamic_energy_linear_in_m(out):
    """Each row of A adds the same dynamic energy: the increments from M = 8 to 16 and from
    16 to 32, per row, agree within 10 %."""
    _require_tools()
    e = {m: _dynamic(_measure(out, f"m{m}", _job(m, 8, 4))) for m in (8, 16, 32)}
    first = (e[16] - e[8]) / 8
    second = (e[32] - e[16]) / 16
    assert first > 0 and second > 0
    assert second == pytest.approx(first, rel=0.10)


# -- the command ------------------------------------------------------------------------------

def _err(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("argv, message", [
    (["--m", "4"], "npugen: error: --m also needs --k and --n"),
    (["--m", "4", "--k", "4"], "npugen: error: --m and --k also need --n"),
    (["--minilm-q", "--m", "4"],
     "npugen: error: --minilm-q: M is the sentence's tokens (20); give it without --m"),
    (["--minilm-q", "--n", "4"], "npugen: error: --n also needs --k"),
    (["--clock-mhz", "0"],
     "npugen: error: --clock-mhz: '0' is not allowed (a positive frequency in MHz)"),
    (["--clock-mhz", "fast"],
     "npugen: error: --clock-mhz: 'fast' is not allowed (a positive frequency in MHz)"),
    (["--m", "2", "--k", "5000", "--n", "2"],
     "npugen: error: --k 5000, more than this design's k_max = 4096 (config key k_max; the "
     "engine rejects the job: BAD_SHAPE)"),
])
def test_cli_errors(tmp_path, capsys, argv, message):
    from npugen.sim import cli
    assert cli.main(["power", *argv, "--out", str(tmp_path)]) == 2
    assert _err(capsys) == message
    assert not any(tmp_path.iterdir())                  # nothing written


def test_cli_default_job_is_the_library_default():
    from npugen.sim import cli, power
    assert cli.POWER_MKN == power.DEFAULT_MKN


def test_cli_bad_dimension(tmp_path, capsys):
    from npugen.sim import cli
    with pytest.raises(SystemExit) as e:
        cli.main(["power", "--m", "0", "--k", "1", "--n", "1", "--out", str(tmp_path)])
    assert e.value.code == 2
    assert "--m: '0' is not a positive integer" in capsys.readouterr().err


def test_cli_missing_tool(tmp_path, capsys, monkeypatch):
    """A missing simulator is one line naming Debian's package, exit 2, nothing written."""
    from npugen.sim import cli
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert cli.main(["power", "--out", str(tmp_path)]) == 2
    line = _err(capsys)
    assert line.startswith("npugen: error: ") and "apt-get install iverilog" in line
    assert not any(p.name != "nothing" for p in tmp_path.iterdir())


def test_cli_missing_liberty(tmp_path, capsys, monkeypatch):
    from npugen.sim import cli
    if not any(Path(p).is_file() for p in ("/usr/bin/iverilog", "/usr/local/bin/iverilog")):
        pytest.skip("needs iverilog to get as far as the liberty")
    monkeypatch.setattr(tools, "LIBERTY_PATHS", (str(tmp_path / "none.lib"),))
    assert cli.main(["power", "--out", str(tmp_path)]) == 2
    assert "qflow-tech-osu018" in _err(capsys)
