"""Mutation testing (``npugen verify --mutants``, :mod:`npugen.sim.mutation`).

- The Verilog the campaign mutates is the emitted design: stripping its ``src`` attributes gives
  the emitted ``<name>.v`` byte for byte.
- ``mutate -list`` lines parse into mutants; hand-written lines give the expected fields.
- A mutant's Python line is found from the annotated Verilog, on a hand-written snippet.
- End to end on a 2x2 design (Icarus): the unmutated netlist passes; every killed mutant fails
  its killing test when re-run alone with its selector and the same test passes with selector 0
  (the selector reaches the mutation, and a kill is the mutant's doing); the JSON and Markdown
  reports agree with the outcomes.
- The command line's errors: mutation options without ``--mutants``, ``--mutants 0``, a top the
  design lacks.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from npugen.hw import emit
from npugen.hw.config import AttentionConfig, GemmConfig, SoftmaxConfig
from npugen.sim import mutation, runner
from npugen.sim.design import emitted
from rtl_helpers import BUILD, need_sim

#: A small design: the campaign's end-to-end test samples a few of its mutants.
TINY = GemmConfig(name="mut2x2", rows=2, cols=2, dataflow="ws", k_max=32, acc_depth=4,
                  res_depth=4, rounding="double")


@pytest.mark.parametrize("top", ["npu", "softmax", "attention"])
def test_the_mutated_verilog_is_the_emitted_design(top):
    cfg = dataclasses.replace(TINY, softmax=SoftmaxConfig(lanes=2, N_max=64),
                              attention=AttentionConfig(d=4, q_block=2, heads=1))
    ecfg, builder = emitted(cfg, top)
    annotated = emit.annotated_verilog(ecfg, builder)
    files = emit.render(ecfg, builder)
    assert emit.strip_src(annotated).encode() == files[f"{ecfg.name}.v"]
    assert '(* src = "hw/' in annotated
    assert '(* src = "/' not in annotated          # no absolute path of this machine


def test_parse_mutation_fields():
    line = (r"mutate -mode cnot1 -module top -cell $flatten\engine.\requant.$add$top.src.v:10$3 "
            r"-port A -portbit 27 -ctrlbit 31 -wire engine.requant.prod_3 -wirebit 27 "
            r"-src hw/requant.py:162 -src top.src.v:10.5-10.20")
    m = mutation.parse_mutation(7, line)
    assert (m.index, m.kind, m.port, m.portbit, m.ctrlbit) == (7, "cnot1", "A", 27, 31)
    assert (m.wire, m.wirebit) == ("engine.requant.prod_3", 27)
    assert m.src == ("hw/requant.py:162", "top.src.v:10.5-10.20")
    assert m.scope == "engine.requant"
    assert m.verilog == "top.src.v:10"
    assert m.signal == "engine.requant.prod_3[27]"
    assert m.description == "bit inverted when bit 31 of the port is 1"
    assert m.command.startswith("-mode cnot1 -module top -cell ")
    plain = mutation.parse_mutation(1, r"mutate -mode const0 -module top -cell $procmux$9 "
                                       r"-port Y -portbit 0")
    assert plain.scope == "(top)" and plain.wire is None and plain.signal == "$procmux$9.Y[0]"
    with pytest.raises(ValueError, match="not a mutate command"):
        mutation.parse_mutation(1, "mutate -mode none extra")
    with pytest.raises(ValueError, match="without -cell"):
        mutation.parse_mutation(1, "mutate -mode inv -module top -port A -portbit 0")


#: Annotated Verilog as Amaranth writes it: a process's multiplexer (line 9) carries only its
#: Verilog line; the register it drives is declared under its Python line.
SNIPPET = """\
(* src = "hw/pe.py:70" *)
module \\t.engine.pe (clk, a);
  input clk;
  input [7:0] a;
  (* src = "hw/pe.py:81" *)
  reg [7:0] acc = 8'h00;
  reg [7:0] \\$5 ;
  always @* begin
    \\$5  = a;
  end
  always @(posedge clk)
    acc <= \\$5 ;
  reg [7:0] \\$6 ;
endmodule
""".splitlines()


def test_python_source_follows_the_verilog_to_the_generator():
    assert mutation.python_source(SNIPPET, ("hw/gemm.py:3", "t.src.v:9.5-9.8")) == "hw/gemm.py:3"
    # the multiplexer drives $5, which drives acc, declared at hw/pe.py:81
    assert mutation.python_source(SNIPPET, ("t.src.v:9.5-9.8",)) == "hw/pe.py:81"
    # the declaration itself carries the attribute
    assert mutation.python_source(SNIPPET, ("t.src.v:6.13-6.15",)) == "hw/pe.py:81"
    # a signal that drives nothing: the module's own line
    assert mutation.python_source(SNIPPET, ("t.src.v:13.13-13.16",)) == "hw/pe.py:70"
    assert mutation.python_source(SNIPPET, ("elsewhere",)) is None


@pytest.fixture(scope="module")
def tiny_campaign():
    need_sim("icarus")
    return mutation.campaign(TINY, mutants=6, seed=5, top="npu", sim="icarus", jobs=2,
                             build_dir=BUILD)


def test_campaign_kills_are_the_mutants_doing(tiny_campaign):
    r = tiny_campaign
    assert r["mutants"] == 6 and r["killed"] + r["survived"] == 6
    assert r["score"] == r["killed"] / 6
    names = [t["name"] for t in r["tests"]]
    assert names and "test_random_jobs" in names
    killed = [o for o in r["outcomes"] if o["status"] == "killed"]
    assert killed, "a sample of 6 mutants of a 2x2 engine with none killed: the selector is dead"
    work = r["work"]
    for o in killed[:2]:
        if o["killed_by"] in ("timeout", "simulator"):
            continue
        runs = {}
        for sel in (o["index"], 0):
            runs[sel] = runner.test(TINY, mutation.BENCHES["npu"], sim="icarus",
                                    testcase=o["killed_by"], seed=5, build_dir=BUILD,
                                    top="npu", plusargs=[f"+{mutation.PLUSARG}={sel}"],
                                    sim_build=f"{work}/icarus")
        assert not runs[o["index"]].ok, o
        assert runs[0].ok, runs[0].summary()


def test_campaign_reports(tiny_campaign, tmp_path):
    js, md = mutation.write_report([tiny_campaign], tmp_path, "npugen verify --mutants 6")
    data = json.loads(js.read_text())
    assert data["mutants"] == 6 and data["killed"] == tiny_campaign["killed"]
    text = md.read_text()
    survivors = [o for o in tiny_campaign["outcomes"] if o["status"] == "survived"]
    assert f"Survivors: {len(survivors)}." in text
    for o in survivors:
        assert (f"| {o['index']} | {o['kind']} | {o['description']} | {o['location']} |"
                in text)
    assert f"{100 * tiny_campaign['score']:.1f} %" in text


def test_a_failing_worker_is_an_error_not_a_kill(tmp_path):
    """A worker that cannot run (here: its configuration file is missing) must stop the
    campaign: counting it as a kill would inflate the score."""
    spec = {"config": str(tmp_path / "missing.toml"), "top": "npu", "sim": "icarus", "seed": 1,
            "build_dir": str(tmp_path), "sim_build": str(tmp_path / "icarus"),
            "tests": ["test_small_shapes"], "mutant": 3, "test_dir": str(tmp_path / "m3")}
    with pytest.raises(mutation.CampaignError, match="worker of mutant 3 failed"):
        mutation._run_mutant(spec, 120)


def _npugen(*args, cwd):
    return subprocess.run([sys.executable, "-m", "npugen.sim.cli", *args], cwd=cwd,
                          capture_output=True, text=True)


@pytest.mark.parametrize("args, message", [
    (["--top", "npu"], "--top: only with --mutants"),
    (["--jobs", "2", "--out", "x"], "--jobs, --out: only with --mutants"),
    (["--mutants", "0"], "'0' is not a positive integer"),
    (["--mutants", "2", "--full"], "drop --full"),
    (["--mutants", "2", "--fail-under", "101"], "not a percentage from 0 to 100"),
])
def test_cli_rejects_bad_mutation_options(args, message, tmp_path):
    proc = _npugen("verify", "--sim", "icarus", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert not (tmp_path / "build").exists() and not (tmp_path / "x").exists()


def test_cli_rejects_a_top_the_design_lacks(tmp_path):
    need_sim("icarus")
    proc = _npugen("verify", "--sim", "icarus", "--mutants", "2", "--top", "softmax",
                   cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "softmax" in proc.stderr and proc.stderr.count("\n") <= 2
