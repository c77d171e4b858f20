"""npugen.sim.cli: the npugen command, as a user runs it (a subprocess) and in-process with stand-ins
for the sim modules that it calls."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from npugen.hw import __version__
from npugen.sim import cli

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def npugen(*args: str, cwd: Path | None = None, env: dict | None = None):
    """Run ``python -m npugen.sim.cli`` as a user would."""
    base = dict(os.environ)
    if env:
        base.update(env)
    return subprocess.run([sys.executable, "-m", "npugen.sim.cli", *args], cwd=cwd, env=base,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)


def one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("npugen: error: ")
    return lines[0]


# -- as a subprocess ----------------------------------------------------------------------------

def test_version():
    proc = npugen("--version")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"npugen {__version__}\n", "")


def test_version_has_one_definition():
    """pyproject.toml takes the version from npugen.hw.__version__; the metadata agrees."""
    from importlib import metadata
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "npugen.hw.__version__"}
    assert metadata.version("npugen") == __version__


def test_setuptools_builds_outside_build(monkeypatch):
    """`pip wheel .` and `pip install .` keep setuptools' intermediate files (build/lib,
    build/bdist.*) out of build/, where npugen writes its designs: setup.cfg moves build_base,
    and every build folder setuptools derives from it follows."""
    from setuptools.dist import Distribution

    monkeypatch.chdir(ROOT)
    dist = Distribution({"name": "npugen"})
    dist.parse_config_files(filenames=[f for f in ["setup.cfg"] if Path(f).is_file()])
    build = dist.get_command_obj("build")
    build.ensure_finalized()
    base = (ROOT / build.build_base).resolve()
    ours = (ROOT / "build").resolve()
    assert base != ours and ours not in base.parents
    for folder in (build.build_lib, build.build_temp, build.build_scripts):
        assert base in (ROOT / folder).resolve().parents
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert f"{Path(build.build_base).name}/" in ignored


def test_help():
    proc = npugen("--help")
    assert proc.returncode == 0
    for command in ("generate", "verify", "run", "demo"):
        assert command in proc.stdout


def test_no_command_is_a_usage_error():
    proc = npugen()
    assert proc.returncode == 2 and "usage: npugen" in proc.stderr


@pytest.mark.parametrize("args, usage", [
    (("generate", "--bogus"), "usage: npugen generate"),
    (("run", "gemm", "--a", "a.npy", "--b", "b.npy", "--out", "c.npy", "--bogus"),
     "usage: npugen run gemm"),
])
def test_unknown_option_shows_its_commands_usage(args, usage):
    proc = npugen(*args)
    assert proc.returncode == 2
    assert proc.stderr.startswith(usage), proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].endswith("error: unrecognized arguments: --bogus")


def test_importing_the_cli_loads_no_simulator_or_hdl():
    """`npugen --help` starts fast: the CLI module imports the heavy modules inside commands."""
    code = ("import sys, npugen.sim.cli; print(sorted(m for m in ('amaranth', 'cocotb', 'numpy', "
            "'npugen.sim.runner', 'npugen.sim.run', 'npugen.sim.golden') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout == "[]\n"


@pytest.mark.parametrize("text,message", [
    ("rows = 0\n", "rows: 0 is not allowed (an integer from 1 to 64)"),
    ('dataflow = "is"\n', 'dataflow: "is" is not allowed ("ws" or "os")'),
    ("rows = 4.0\n", "rows: 4.0 is not allowed (an integer from 1 to 64)"),
    ("colums = 4\n", "colums: unknown key (allowed: name, rows, cols, dataflow, k_max, "
                     "acc_width, rounding, requant_lanes, requant_pp_bits, pe_product_reg, pe_weight_reg, array_input_reg, dsp_primitive, operand_isolation, acc_depth, res_depth, clock_mhz, softmax, attention)"),
    ("[softmax]\nF = 7\n", "softmax.F: 7 is not allowed (an integer from 8 to 30)"),
])
@pytest.mark.parametrize("command", [["generate"], ["verify"], ["demo"]], ids=lambda c: c[0])
def test_bad_config_is_one_line_exit_2_and_writes_nothing(tmp_path, text, message, command):
    (tmp_path / "bad.toml").write_text(text)
    proc = npugen(*command, "--config", "bad.toml", *(["--out", "out"] if command == ["generate"]
                                                    else []), cwd=tmp_path)
    assert proc.returncode == 2
    assert one_error_line(proc.stderr) == f"npugen: error: bad.toml: {message}"
    assert proc.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def test_invalid_toml_is_one_line(tmp_path):
    (tmp_path / "bad.toml").write_text("rows = = 4\n")
    proc = npugen("generate", "--config", "bad.toml", cwd=tmp_path)
    assert proc.returncode == 2
    assert one_error_line(proc.stderr).startswith("npugen: error: bad.toml: invalid TOML: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def test_missing_config_file(tmp_path):
    proc = npugen("generate", "--config", "missing.toml", cwd=tmp_path)
    assert proc.returncode == 2
    assert one_error_line(proc.stderr) == \
        "npugen: error: missing.toml: No such file or directory"
    assert list(tmp_path.iterdir()) == []


def test_generate_a_real_design_and_lint_it(tmp_path):
    (tmp_path / "c.toml").write_text('name = "tiny"\nrows = 2\ncols = 2\ndataflow = "os"\n'
                                     "k_max = 64\nacc_depth = 16\nres_depth = 8\n")
    proc = npugen("generate", "--config", "c.toml", "--out", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == str(Path("out") / "tiny")
    assert [x.strip() for x in lines[1:9]] == sorted(
        ["manifest.json", "report.md", "tiny.core", "tiny.f", "tiny.h", "tiny.sdc", "tiny.v",
         "tiny.vlt"])
    assert lines[9].startswith("lint: clean (Verilator ")
    assert proc.stderr == ""
    assert (tmp_path / "out" / "tiny" / "tiny.v").is_file()


def test_generate_without_lint(tmp_path):
    (tmp_path / "c.toml").write_text('rows = 2\ncols = 2\ndataflow = "os"\nres_depth = 8\n')
    proc = npugen("generate", "--config", "c.toml", "--no-lint", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not [x for x in proc.stdout.splitlines() if x.startswith("lint:")]
    assert (tmp_path / "build" / "npu" / "manifest.json").is_file()


def test_missing_icarus_names_the_debian_package(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = npugen("verify", "--sim", "icarus", env={"PATH": str(empty)}, cwd=tmp_path)
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert "iverilog" in line and "Debian" in line
    assert proc.stdout == ""


# -- the parser -----------------------------------------------------------------------------------

def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:                  # noqa: SLF001 - argparse has no public walk
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_every_option_help_shows_its_default():
    for parser in _parsers(cli.build_parser()):
        for action in parser._actions:              # noqa: SLF001
            if not action.option_strings or isinstance(action, (argparse._HelpAction,
                                                                argparse._VersionAction)):
                continue
            assert "(default: " in action.help or "(required)" in action.help, \
                f"{parser.prog} {action.option_strings}"
            if action.required:
                assert "(required)" in action.help


def test_run_gemm_has_exactly_the_documented_options():
    gemm = next(p for p in _parsers(cli.build_parser()) if p.prog.endswith("run gemm"))
    options = {s for a in gemm._actions for s in a.option_strings} - {"-h", "--help"}
    assert options == {"--a", "--b", "--bias", "--zp-a", "--scale-a", "--scale-b", "--scale-out",
                       "--multiplier", "--shift", "--zp-out", "--act-min", "--act-max",
                       "--config", "--sim", "--waves", "--json", "--out"}


# -- in-process, with stand-ins for the sim modules ---------------------------------------------

@pytest.fixture
def fake_sim(monkeypatch):
    """Stand-ins for sim.runner, sim.run and sim.realdata that record their calls."""
    calls: dict[str, list] = {"verify": [], "gemm": [], "demo": [], "attention": [],
                              "demo_layer0": []}
    result = {"verify": 0, "demo": 0, "gemm_error": None}

    runner = types.ModuleType("npugen.sim.runner")

    def verify(cfg, *, sim, seed, waves, full):
        calls["verify"].append(dict(cfg=cfg, sim=sim, seed=seed, waves=waves, full=full))
        return result["verify"]
    runner.verify = verify

    run = types.ModuleType("npugen.sim.run")

    def gemm(a, b, **kwargs):
        calls["gemm"].append(dict(a=a, b=b, **kwargs))
        if result["gemm_error"] is not None:
            raise result["gemm_error"]
        c = (a.astype(np.int64) @ b.astype(np.int64)).astype(np.int32)
        return c, {"cycles": np.int64(1234), "model_cycles": 1230, "utilization": 0.4567,
                   "macs": a.shape[0] * b.size}
    run.gemm = gemm

    def attention(q, k, v, **kwargs):
        calls["attention"].append(dict(q=q, k=k, v=v, **kwargs))
        return np.full(q.shape, kwargs["zp_out"], dtype=np.int8), {
            "cycles": np.int64(321), "model_cycles": 321, "utilization": 0.25}
    run.attention = attention

    realdata = types.ModuleType("npugen.sim.realdata")

    def demo_layer0(cfg, *, sim):
        calls["demo_layer0"].append(dict(cfg=cfg, sim=sim))
        return result["demo"]
    realdata.demo = demo_layer0

    minilm = types.ModuleType("npugen.sim.minilm")

    def demo(cfg, *, sim):
        calls["demo"].append(dict(cfg=cfg, sim=sim))
        return result["demo"]
    minilm.demo = demo
    minilm.minilm_config = lambda: "the minilm config"

    import npugen.sim as sim
    for name, module in (("runner", runner), ("run", run), ("realdata", realdata),
                         ("minilm", minilm)):
        monkeypatch.setitem(sys.modules, f"npugen.sim.{name}", module)
        monkeypatch.setattr(sim, name, module, raising=False)
    return calls, result


@pytest.fixture
def arrays(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.integers(-128, 128, (3, 5), dtype=np.int8)
    b = rng.integers(-128, 128, (5, 4), dtype=np.int8)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    return tmp_path, a, b


def test_verify_calls_the_runner(fake_sim, capsys):
    calls, result = fake_sim
    assert cli.main(["verify", "--seed", "7", "--waves", "--full"]) == 0
    (call,) = calls["verify"]
    assert call["sim"] == "verilator" and call["seed"] == 7 and call["waves"] and call["full"]
    assert call["cfg"].name == "npu" and call["cfg"].rows == 16
    assert capsys.readouterr().out == "seed: 7\n"
    result["verify"] = 1
    assert cli.main(["verify", "--seed", "7"]) == 1


def test_verify_without_seed_prints_the_chosen_one(fake_sim, capsys):
    calls, _ = fake_sim
    assert cli.main(["verify"]) == 0
    seed = calls["verify"][0]["seed"]
    assert isinstance(seed, int) and capsys.readouterr().out == f"seed: {seed}\n"


def test_demo_calls_minilm_and_layer0_realdata(fake_sim, tmp_path):
    calls, result = fake_sim
    (tmp_path / "c.toml").write_text("rows = 4\ncols = 4\n")
    assert cli.main(["demo", "--config", str(tmp_path / "c.toml")]) == 0
    assert calls["demo"][0]["cfg"].rows == 4 and calls["demo"][0]["sim"] == "verilator"
    assert cli.main(["demo", "--sim", "icarus"]) == 0
    assert calls["demo"][1] == {"cfg": "the minilm config", "sim": "icarus"}
    assert calls["demo_layer0"] == []
    assert cli.main(["demo", "--layer0"]) == 0
    assert calls["demo_layer0"][0]["cfg"].name == "npu" and len(calls["demo"]) == 2
    result["demo"] = 1
    assert cli.main(["demo"]) == 1
    assert cli.main(["demo", "--layer0"]) == 1


def test_missing_sim_module_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "npugen.sim.minilm", None)       # import raises ImportError
    assert cli.main(["demo"]) == 1
    err = capsys.readouterr().err
    assert one_error_line(err).startswith("npugen: error: cannot import npugen.sim.minilm: ")


def test_import_error_inside_the_library_is_one_line(fake_sim, monkeypatch, capsys):
    import npugen.sim as sim

    def demo(cfg, *, sim):
        raise ModuleNotFoundError("No module named 'npugen.sim.run'", name="npugen.sim.run")
    monkeypatch.setattr(sim.minilm, "demo", demo)
    assert cli.main(["demo"]) == 1
    assert one_error_line(capsys.readouterr().err) == \
        "npugen: error: a part of npugen cannot be imported: No module named 'npugen.sim.run'"


def test_run_gemm_raw(fake_sim, arrays, capsys):
    calls, _ = fake_sim
    d, a, b = arrays
    assert cli.main(["run", "gemm", "--a", str(d / "a.npy"), "--b", str(d / "b.npy"),
                     "--out", str(d / "c.npy")]) == 0
    assert capsys.readouterr().out == "cycles=1234 model_cycles=1230 utilization=45.7%\n"
    c = np.load(d / "c.npy")
    np.testing.assert_array_equal(c, a.astype(np.int64) @ b.astype(np.int64))
    (call,) = calls["gemm"]
    np.testing.assert_array_equal(call["a"], a)
    assert call["bias"] is None and call["zp_a"] == 0 and call["zp_out"] == 0
    assert (call["act_min"], call["act_max"]) == (-128, 127)
    assert call["sim"] == "verilator" and call["waves"] is False
    assert call["config"].rows == 16
    for key in ("scale_a", "scale_b", "scale_out", "multiplier", "shift"):
        assert key not in call or call[key] is None
    assert sorted(p.name for p in d.iterdir()) == ["a.npy", "b.npy", "c.npy"]   # no temp file


def test_run_gemm_scales_are_float32(fake_sim, arrays, capsys):
    calls, _ = fake_sim
    d, a, b = arrays
    np.save(d / "sb.npy", np.array([0.5, 0.25, 0.125, 1.0], dtype=np.float32))
    assert cli.main(["run", "gemm", "--a", str(d / "a.npy"), "--b", str(d / "b.npy"),
                     "--scale-a", "0.1", "--scale-b", str(d / "sb.npy"), "--scale-out", "0.3",
                     "--zp-a", "-3", "--zp-out", "5", "--act-min", "-100", "--act-max", "100",
                     "--out", str(d / "c.npy"), "--json"]) == 0
    (call,) = calls["gemm"]
    assert call["scale_a"] == float(np.float32(0.1)) != 0.1
    assert call["scale_out"] == float(np.float32(0.3))
    np.testing.assert_array_equal(call["scale_b"], [0.5, 0.25, 0.125, 1.0])
    assert (call["zp_a"], call["zp_out"], call["act_min"], call["act_max"]) == (-3, 5, -100, 100)
    record = json.loads(capsys.readouterr().out)
    assert record == {"cycles": 1234, "model_cycles": 1230, "utilization": 0.4567,
                      "macs": 60, "out": str(d / "c.npy")}


def test_run_gemm_scalar_scale_b_and_multipliers(fake_sim, arrays):
    calls, _ = fake_sim
    d, a, b = arrays
    base = ["run", "gemm", "--a", str(d / "a.npy"), "--b", str(d / "b.npy"),
            "--out", str(d / "c.npy")]
    assert cli.main(base + ["--scale-a", "1", "--scale-b", "0.02", "--scale-out", "2"]) == 0
    assert calls["gemm"][-1]["scale_b"] == float(np.float32(0.02))
    np.save(d / "m.npy", np.full(4, 1 << 30, dtype=np.int32))
    np.save(d / "s.npy", np.zeros(4, dtype=np.int8))
    assert cli.main(base + ["--multiplier", str(d / "m.npy"), "--shift", str(d / "s.npy")]) == 0
    np.testing.assert_array_equal(calls["gemm"][-1]["multiplier"], np.full(4, 1 << 30))


@pytest.mark.parametrize("extra,message", [
    (["--scale-a", "0.1"], "--scale-a also needs --scale-b and --scale-out"),
    (["--shift", "s.npy"], "--shift also needs --multiplier"),
    (["--scale-a", "1", "--scale-b", "1", "--scale-out", "1", "--multiplier", "m.npy",
      "--shift", "s.npy"], "give either --scale-a/--scale-b/--scale-out or "
                           "--multiplier/--shift, not both"),
    (["--scale-a", "x", "--scale-b", "1", "--scale-out", "1"], "--scale-a: 'x' is not a number"),
    (["--scale-a", "1", "--scale-out", "1"], "--scale-a and --scale-out also need --scale-b"),
    (["--zp-a", "300"], "--zp-a: 300 is outside [-128, 127]"),
    (["--zp-out", "-129"], "--zp-out: -129 is outside [-128, 127]"),
    (["--a", "f.npy"], "--a: must hold int8 integers, not an array of dtype float64"),
    (["--b", "a3.npy"], "--b: must be a 2-D (K, N) array, not shape (2, 2, 2)"),
    (["--b", "a.npy"], "--b: has 3 rows but --a has K = 5 columns (A is M x K, B is K x N)"),
    (["--bias", "missing.npy"], "--bias: missing.npy: no such file"),
    (["--bias", "a.txt"], "--bias: a.txt: not a NumPy .npy file (write one with numpy.save)"),
    (["--bias", "."], "--bias: .: is a folder, not a .npy file"),
])
def test_run_gemm_bad_arguments_write_nothing(fake_sim, arrays, capsys, monkeypatch, extra,
                                              message):
    calls, _ = fake_sim
    d, _, _ = arrays
    monkeypatch.chdir(d)
    (d / "a.txt").write_text("1 2 3\n")
    np.save(d / "f.npy", np.zeros((3, 4)))
    np.save(d / "a3.npy", np.zeros((2, 2, 2), np.int8))
    before = sorted(p.name for p in d.iterdir())
    assert cli.main(["run", "gemm", "--a", "a.npy", "--b", "b.npy", "--out", "c.npy",
                     *extra]) == 2
    assert one_error_line(capsys.readouterr().err) == f"npugen: error: {message}"
    assert calls["gemm"] == []
    assert sorted(p.name for p in d.iterdir()) == before


def test_run_gemm_library_input_error_is_one_line(fake_sim, arrays, capsys):
    from npugen.hw.errors import InputError
    calls, result = fake_sim
    d, _, _ = arrays
    result["gemm_error"] = InputError("k = 5000 exceeds k_max = 4096\n(second line)")
    assert cli.main(["run", "gemm", "--a", str(d / "a.npy"), "--b", str(d / "b.npy"),
                     "--out", str(d / "c.npy")]) == 2
    assert one_error_line(capsys.readouterr().err) == \
        "npugen: error: k = 5000 exceeds k_max = 4096 (second line)"
    assert not (d / "c.npy").exists()


def test_run_gemm_keeps_the_previous_result_on_failure(fake_sim, arrays):
    from npugen.hw.errors import InputError
    _, result = fake_sim
    d, _, _ = arrays
    np.save(d / "c.npy", np.arange(3))
    result["gemm_error"] = InputError("bad")
    assert cli.main(["run", "gemm", "--a", str(d / "a.npy"), "--b", str(d / "b.npy"),
                     "--out", str(d / "c.npy")]) == 2
    np.testing.assert_array_equal(np.load(d / "c.npy"), np.arange(3))


def test_run_gemm_makes_the_out_folder(fake_sim, arrays, capsys):
    """--out names the file of a command that writes one array; missing folders are made (as
    every command does), but not for a command that fails."""
    d, a, b = arrays
    assert cli.main(["run", "gemm", "--a", str(d / "a.npy"), "--b", str(d / "b.npy"),
                     "--out", str(d / "new" / "deeper" / "c.npy")]) == 0
    np.testing.assert_array_equal(np.load(d / "new" / "deeper" / "c.npy"),
                                  a.astype(np.int32) @ b.astype(np.int32))
    assert cli.main(["run", "gemm", "--a", str(d / "missing.npy"), "--b", str(d / "b.npy"),
                     "--out", str(d / "other" / "c.npy")]) == 2
    assert not (d / "other").exists()
    assert cli.main(["run", "gemm", "--a", str(d / "a.npy"), "--b", str(d / "b.npy"),
                     "--out", str(d / "new")]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_k_beyond_k_max_is_worded_once(fake_sim, tmp_path, capsys):
    """run gemm and perf name the option and the config key, in the same words."""
    (tmp_path / "c.toml").write_text("rows = 2\ncols = 2\nk_max = 64\n")
    np.save(tmp_path / "a.npy", np.ones((2, 100), np.int8))
    np.save(tmp_path / "b.npy", np.ones((100, 2), np.int8))
    cfg = ["--config", str(tmp_path / "c.toml")]
    assert cli.main(["run", "gemm", "--a", str(tmp_path / "a.npy"), "--b",
                     str(tmp_path / "b.npy"), "--out", str(tmp_path / "c.npy"), *cfg]) == 2
    gemm = one_error_line(capsys.readouterr().err)
    assert cli.main(["perf", "--m", "2", "--k", "100", "--n", "2", *cfg]) == 2
    perf = one_error_line(capsys.readouterr().err)
    tail = ", more than this design's k_max = 64 (config key k_max; the engine rejects the job: " \
           "BAD_SHAPE)"
    assert gemm == "npugen: error: --a has K = 100 columns" + tail
    assert perf == "npugen: error: --k 100" + tail


@pytest.mark.parametrize("option,value", [("--scale-a", "0"), ("--scale-out", "-1")])
def test_scales_name_the_option(fake_sim, arrays, capsys, option, value):
    d, _, _ = arrays
    scales = {"--scale-a": "0.5", "--scale-b": "0.25", "--scale-out": "2", option: value}
    assert cli.main(["run", "gemm", "--a", str(d / "a.npy"), "--b", str(d / "b.npy"),
                     "--out", str(d / "c.npy"), *[x for kv in scales.items() for x in kv]]) == 2
    assert one_error_line(capsys.readouterr().err) == \
        f"npugen: error: {option}: {value!r} is not a positive number"


# -- run attention ------------------------------------------------------------------------------

def test_run_attention_has_exactly_the_documented_options():
    att = next(p for p in _parsers(cli.build_parser()) if p.prog.endswith("run attention"))
    options = {s for a in att._actions for s in a.option_strings} - {"-h", "--help"}
    assert options == {"--q", "--k", "--v", "--scale-q", "--scale-k", "--scale-v",
                       "--scale-out", "--scale-s", "--zp-v", "--zp-out", "--mask", "--causal",
                       "--config", "--sim", "--waves", "--json", "--out"}


@pytest.fixture
def qkv(tmp_path):
    rng = np.random.default_rng(2)
    q = rng.integers(-127, 128, (3, 8), dtype=np.int8)
    k = rng.integers(-127, 128, (5, 8), dtype=np.int8)
    v = rng.integers(-128, 128, (5, 8), dtype=np.int8)
    for name, arr in (("q", q), ("k", k), ("v", v)):
        np.save(tmp_path / f"{name}.npy", arr)
    return tmp_path, q, k, v


_ATT_SCALES = ["--scale-q", "0.05", "--scale-k", "0.04", "--scale-v", "0.02",
               "--scale-out", "0.01"]


def _att_args(d, *extra):
    return ["run", "attention", "--q", str(d / "q.npy"), "--k", str(d / "k.npy"),
            "--v", str(d / "v.npy"), *_ATT_SCALES, "--out", str(d / "o.npy"), *extra]


def test_run_attention_calibrates_and_prints_the_score_scale(fake_sim, qkv, capsys):
    from npugen.sim import golden

    calls, _ = fake_sim
    d, q, k, v = qkv
    assert cli.main(_att_args(d, "--zp-v", "-3", "--zp-out", "4")) == 0
    (call,) = calls["attention"]
    want = golden.calibrate_score_scale(q, k, float(np.float32(0.05)), float(np.float32(0.04)))
    assert call["scale_s"] == want
    assert call["scale_q"] == float(np.float32(0.05)) != 0.05       # float32, like run gemm
    assert (call["zp_v"], call["zp_out"], call["mask"], call["causal"]) == (-3, 4, None, False)
    assert call["config"] is None and call["sim"] == "verilator" and call["waves"] is False
    np.testing.assert_array_equal(call["v"], v)
    assert capsys.readouterr().out.splitlines() == [
        f"scale_s={want!r} (calibrated: max|Q.K^T| * scale_q * scale_k / sqrt(8) / 127)",
        "cycles=321 model_cycles=321 utilization=25.0%"]
    np.testing.assert_array_equal(np.load(d / "o.npy"), np.full((3, 8), 4))
    assert sorted(p.name for p in d.iterdir()) == ["k.npy", "o.npy", "q.npy", "v.npy"]


def test_run_attention_given_scale_mask_causal_json(fake_sim, qkv, capsys, tmp_path):
    calls, _ = fake_sim
    d, q, k, v = qkv
    np.save(d / "m.npy", np.array([True, False, True, True, True]))
    (tmp_path / "c.toml").write_text("[attention]\nd = 8\n")
    assert cli.main(_att_args(d, "--scale-s", "0.1", "--mask", str(d / "m.npy"), "--causal",
                              "--config", str(tmp_path / "c.toml"), "--json")) == 0
    (call,) = calls["attention"]
    assert call["scale_s"] == float(np.float32(0.1))
    assert call["mask"].tolist() == [True, False, True, True, True] and call["causal"] is True
    assert call["config"].attention.d == 8
    record = json.loads(capsys.readouterr().out)
    assert record == {"cycles": 321, "model_cycles": 321, "utilization": 0.25,
                      "scale_s": float(np.float32(0.1)), "out": str(d / "o.npy")}


@pytest.mark.parametrize("setup,extra,message", [
    (None, ["--scale-s", "0"], "--scale-s: '0' is not a positive number"),
    (None, ["--zp-v", "128"], "--zp-v: 128 is outside [-128, 127]"),
    (None, ["--zp-out", "-129"], "--zp-out: -129 is outside [-128, 127]"),
    ({"q": np.zeros((3, 8), dtype=np.float32)}, [],
     "--q: must hold int8 integers, not an array of dtype float32"),
    ({"q": np.full((3, 8), 200, dtype=np.int16)}, [],
     "--q: values must lie in [-128, 127], not [200, 200]"),
    ({"k": np.zeros((5, 7), dtype=np.int8)}, [],
     "--k: must have shape (N, 8) with N >= 1 (d of --q), not (5, 7)"),
    ({"v": np.zeros((4, 8), dtype=np.int8)}, [],
     "--v: must have the shape of --k, (5, 8), not (4, 8)"),
    ({"v": np.zeros(8, dtype=np.int8)}, [], "--v: must be a 2-D (N, d) array, not shape (8,)"),
    ({"m": np.ones((3, 4), dtype=bool)}, ["--mask", "m.npy"],
     "--mask: must have shape (M, N) = (3, 5) or (N,) = (5,), not (3, 4)"),
    ({"m": np.ones(5, dtype=np.int8)}, ["--mask", "m.npy"],
     "--mask: must be a bool array, not dtype int8"),
    (None, ["--mask", "nope.npy"], "--mask: nope.npy: no such file"),
    (None, ["--scale-s", "1e-30"],
     "score multiplier scale_q * scale_k / (sqrt(d) * scale_s) = "),
])
def test_run_attention_bad_input_writes_nothing(fake_sim, qkv, capsys, monkeypatch, setup,
                                                extra, message):
    calls, _ = fake_sim
    d, _, _, _ = qkv
    monkeypatch.chdir(d)
    for name, arr in (setup or {}).items():
        np.save(d / f"{name}.npy", arr)
    before = sorted(p.name for p in d.iterdir())
    assert cli.main(["run", "attention", "--q", "q.npy", "--k", "k.npy", "--v", "v.npy",
                     *_ATT_SCALES, "--out", "o.npy", *extra]) == 2
    assert one_error_line(capsys.readouterr().err).startswith(f"npugen: error: {message}")
    assert calls["attention"] == []
    assert sorted(p.name for p in d.iterdir()) == before


def test_run_attention_missing_scale_is_a_usage_error(qkv):
    d, _, _, _ = qkv
    proc = npugen("run", "attention", "--q", str(d / "q.npy"), "--k", str(d / "k.npy"),
                  "--v", str(d / "v.npy"), "--out", str(d / "o.npy"))
    assert proc.returncode == 2 and "--scale-q" in proc.stderr
    assert not (d / "o.npy").exists()


@pytest.mark.rtl
def test_run_attention_through_the_rtl(tmp_path):
    """One small head through the simulated attention unit, bit-exact with the golden model."""
    from npugen.sim import golden

    rng = np.random.default_rng(5)
    q = rng.integers(-127, 128, (5, 4), dtype=np.int8)
    k = rng.integers(-127, 128, (6, 4), dtype=np.int8)
    v = rng.integers(-128, 128, (6, 4), dtype=np.int8)
    mask = np.array([True, True, False, True, True, True])
    for name, arr in (("q", q), ("k", k), ("v", v), ("m", mask)):
        np.save(tmp_path / f"{name}.npy", arr)
    (tmp_path / "c.toml").write_text('name = "attcli"\n[attention]\nd = 4\nheads = 1\n'
                                     'q_block = 2\n')
    proc = npugen("run", "attention", "--q", "q.npy", "--k", "k.npy", "--v", "v.npy",
                  "--scale-q", "0.05", "--scale-k", "0.04", "--scale-v", "0.02",
                  "--scale-out", "0.01", "--zp-v", "3", "--zp-out", "-2", "--mask", "m.npy",
                  "--config", "c.toml", "--out", "o.npy", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("scale_s=") and lines[-1].startswith("cycles=")
    fields = dict(f.split("=") for f in lines[-1].split())
    assert int(fields["cycles"]) > 0 and fields["model_cycles"] == fields["cycles"]
    f32 = lambda x: float(np.float32(x))  # noqa: E731
    s_s = golden.calibrate_score_scale(q, k, f32(0.05), f32(0.04))
    p = golden.attention_params(f32(0.05), f32(0.04), f32(0.02), s_s, f32(0.01), 4, zp_v=3,
                                zp_o=-2)
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"),
                                  golden.attention_int8(q, k, v, p, mask=mask))


def test_simulator_build_progress_goes_to_stderr(capsys):
    """A design's first simulator build takes minutes: the runner logs it, and the command
    shows the runner's log on stderr as ``npugen: ...`` lines, once however often main runs."""
    cli._log_to_stderr()
    cli._log_to_stderr()
    logging.getLogger("npugen.sim.runner").info("compiling %s for %s", "npu", "verilator")
    captured = capsys.readouterr()
    assert captured.err == "npugen: compiling npu for verilator\n"
    assert captured.out == ""


@pytest.mark.rtl
def test_runner_logs_a_build_only_when_it_compiles(tmp_path, caplog):
    """npugen.sim.runner.build says when it compiles and when it is done, and nothing on a cached
    build (what `npugen run` shows on its first call for a design)."""
    from npugen.hw.config import GemmConfig
    from npugen.sim import runner
    cfg = GemmConfig(name="logged", rows=1, cols=2, k_max=16, acc_depth=4, res_depth=4)
    with caplog.at_level(logging.INFO, logger="npugen.sim.runner"):
        runner.build(cfg, "verilator", tmp_path)
    msgs = [r.getMessage() for r in caplog.records if r.name == "npugen.sim.runner"]
    assert msgs[0] == "generating the Verilog of logged"
    assert msgs[1].startswith("compiling logged with Verilator")
    assert msgs[2].startswith("built logged for verilator in ")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="npugen.sim.runner"):
        runner.build(cfg, "verilator", tmp_path)
    assert [r for r in caplog.records if r.name == "npugen.sim.runner"] == []
