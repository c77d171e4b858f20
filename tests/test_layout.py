"""The package as a whole: one import package, one dependency direction, one builder.

- The wheel installs ``npugen`` only (``npugen.hw``, ``npugen.sim``): installed into a folder of
  its own and run from outside the repository, it generates a design and runs a GEMM on it, and
  no top-level ``hw`` or ``sim`` can be imported.
- No module under ``hw/`` imports the checking side (``sim``), directly or relatively.
- Every component of the generator declares its report block (``npugen.hw.blocks``), and the
  manifest maps every Verilog module of a design to one.
- Width formulas kept twice on purpose (hardware and golden side) agree.
- One builder (``npugen.sim.design``) builds every top, the baked softmax LUT included, for
  every command.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from npugen.hw.blocks import REPORT_BLOCKS, BlockError, module_blocks
from npugen.hw.config import GemmConfig, SoftmaxConfig, parse_toml
from npugen.hw.errors import InputError, MissingSectionError, NpugenError
from npugen.sim import design

ROOT = Path(__file__).resolve().parent.parent


# -- one dependency direction -------------------------------------------------------------------

def _imports(text: str, package: list[str]) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the source ``text`` of a module of the
    package ``package`` (``["npugen", "hw", "synth"]``)."""
    out = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            out += [(node.lineno, f"{name}.{a.name}") for a in node.names]
    return out


def _checking_side(name: str) -> bool:
    return name == "sim" or name.startswith("sim.") or name == "npugen.sim" \
        or name.startswith("npugen.sim.")


def test_hardware_never_imports_the_checking_side():
    bad = []
    for p in sorted((ROOT / "hw").rglob("*.py")):
        package = ["npugen", "hw", *p.relative_to(ROOT / "hw").parts[:-1]]
        bad += [f"{p.relative_to(ROOT)}:{line} imports {name}"
                for line, name in _imports(p.read_text(encoding="utf-8"), package)
                if _checking_side(name)]
    assert bad == []


@pytest.mark.parametrize("text", ["from ...sim import golden\n", "import npugen.sim.run\n",
                                  "from npugen.sim.golden import make_lut\n",
                                  "from ... import sim\n", "import sim\n"])
def test_the_import_walk_sees_every_spelling(text):
    """The check above catches each way a module of hw/synth/ could import the checking side."""
    assert any(_checking_side(n) for _, n in _imports(text, ["npugen", "hw", "synth"]))
    assert not any(_checking_side(n) for _, n in _imports("from .. import isa\n",
                                                          ["npugen", "hw", "synth"]))


# -- report blocks ------------------------------------------------------------------------------

BLOCK_CONFIGS = {
    "ws": GemmConfig(name="lay_ws", rows=2, cols=3, k_max=64, acc_depth=16, res_depth=4),
    "os_double": GemmConfig(name="lay_os", rows=3, cols=2, dataflow="os", rounding="double",
                            k_max=64, acc_depth=16, res_depth=4),
    "units": parse_toml('name = "lay_units"\nrows = 2\ncols = 2\nk_max = 64\nacc_depth = 16\n'
                        'res_depth = 4\n[softmax]\nlanes = 2\nB = 8\n[attention]\nd = 4\n'),
}


@pytest.mark.parametrize("key", sorted(BLOCK_CONFIGS))
def test_every_module_maps_to_a_block(key, tmp_path):
    """The manifest names the block of every module of the Verilog, and only those."""
    from npugen.hw import emit
    cfg = BLOCK_CONFIGS[key]
    folder = emit.generate(cfg, tmp_path, top=design.build_npu)
    manifest = json.loads((folder / "manifest.json").read_text())
    text = (folder / f"{cfg.name}.v").read_text()
    modules = {m.lstrip("\\") for m in re.findall(r"^module\s+([^\s(]+)", text, re.M)}
    assert set(manifest["blocks"]) == modules
    assert set(manifest["blocks"].values()) <= set(REPORT_BLOCKS) - {"memories"}
    assert manifest["blocks"][cfg.name] == "control"
    assert all(b == "array" for m, b in manifest["blocks"].items() if ".pe_" in m)
    if key == "units":
        # a unit claims its subtree: the attention unit's own requantizer is "attention"
        assert {b for m, b in manifest["blocks"].items()
                if m.startswith(f"{cfg.name}.attention")} == {"attention"}
        assert {b for m, b in manifest["blocks"].items()
                if m.startswith(f"{cfg.name}.softmax")} == {"softmax"}
        assert "requantizer" in manifest["blocks"].values()


def test_a_component_without_a_block_is_an_error():
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In

    class Orphan(wiring.Component):       # a generator block that forgot report_block
        def __init__(self):
            super().__init__({"x": In(1)})

        def elaborate(self, platform):
            return Module()
    Orphan.__module__ = "npugen.hw.orphan"

    class Parent(wiring.Component):
        report_block = "control"

        def __init__(self):
            super().__init__({"x": In(1)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.orphan = Orphan()
            return m
    with pytest.raises(BlockError, match="Orphan declares no report_block"):
        module_blocks(Parent(), "p")


# -- one builder --------------------------------------------------------------------------------

LUT_TOML = ('name = "lay_lut"\nrows = 2\ncols = 2\nk_max = 16\nacc_depth = 4\nres_depth = 4\n'
            '[softmax]\nlanes = 2\nB = 4\nN_max = 64\nlut_rom_scale = 0.0625\n')


def test_builder_bakes_the_golden_lut():
    from npugen.sim.golden import make_lut
    cfg = parse_toml(LUT_TOML)
    assert design.softmax_lut(cfg) == make_lut(0.0625, cfg.softmax.F)
    assert design.softmax_lut(GemmConfig()) is None
    assert design.emitted(cfg, "softmax")[0].name == "lay_lut_softmax"
    with pytest.raises(MissingSectionError, match=r"'npu' has no \[attention\] section"):
        design.emitted(GemmConfig(), "attention")
    with pytest.raises(InputError, match="Top must be one of npu, softmax, attention"):
        design.builder("gpu")


def _npugen(*args, cwd):
    return subprocess.run([sys.executable, "-m", "npugen.sim.cli", *args], cwd=cwd,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)


@pytest.mark.rtl
def test_every_command_builds_a_baked_lut_design(tmp_path):
    """generate, verify, run softmax and an area estimate on a design with a baked LUT."""
    (tmp_path / "c.toml").write_text(LUT_TOML)
    cfg = ["--config", "c.toml"]
    proc = _npugen("generate", *cfg, "--no-lint", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = _npugen("area", *cfg, "--estimate", "--quiet", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["estimate"]["blocks"]["softmax"]["cells"] > 0
    rng = np.random.default_rng(3)
    scores = rng.integers(-128, 128, (3, 20), dtype=np.int8)
    np.save(tmp_path / "s.npy", scores)
    proc = _npugen("run", "softmax", "--scores", "s.npy", "--scale", "0.0625", "--out",
                   "p.npy", *cfg, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    from npugen.sim.golden import softmax_int8
    sm = SoftmaxConfig(lanes=2, B=4, N_max=64, lut_rom_scale=0.0625)
    want = softmax_int8(scores, 0.0625, F=sm.F, B=sm.B)
    assert np.array_equal(np.load(tmp_path / "p.npy"), want)
    proc = _npugen("verify", *cfg, "--seed", "5", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- one root exception ---------------------------------------------------------------------------

def test_errors_share_one_root_and_exit_codes():
    from npugen.hw.config import ConfigError
    from npugen.hw.emit import EmitError
    from npugen.hw.synth import NoDeviceFits, SynthError
    from npugen.hw.tools import ToolNotFound
    from npugen.sim.runner import SimError, TestFailed
    from npugen.sim.run import SimulationError
    codes = {ConfigError: 2, NoDeviceFits: 2, ToolNotFound: 2, MissingSectionError: 2,
             SynthError: 1, EmitError: 1, SimError: 1, TestFailed: 1, SimulationError: 1}
    for cls, code in codes.items():
        assert issubclass(cls, NpugenError) and cls.exit_code == code, cls
    assert issubclass(ConfigError, ValueError)       # the Python API still catches ValueError


def test_an_internal_bug_is_not_bad_input(monkeypatch, capsys):
    """A ValueError that npugen did not raise on purpose is a traceback (exit 1), not exit 2."""
    from npugen.sim import cli

    def broken(args):
        raise ValueError("an internal bug")
    monkeypatch.setattr(cli, "cmd_config", broken)
    with pytest.raises(ValueError, match="an internal bug"):
        cli.main(["config"])


def test_config_prints_the_embedded_default(capsys):
    from npugen.hw.config import default_toml, load_config
    from npugen.sim import cli
    assert cli.main(["config"]) == 0
    out = capsys.readouterr().out
    assert out == default_toml() and parse_toml(out) == load_config(None)
    assert "npugen config" in cli.build_parser().format_help()


# -- the wheel ------------------------------------------------------------------------------------

@pytest.mark.rtl
def test_the_wheel_installs_npugen_only(tmp_path):
    """Build the wheel, install it alone into a folder, and use it from outside the repo."""
    import shutil
    src = tmp_path / "src"            # a copy of what git tracks, so the checkout stays clean
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, src / f)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels),
                    str(src)], check=True, capture_output=True)
    assert not (src / "build").exists()     # setuptools' own build/lib goes elsewhere
    (wheel,) = wheels.glob("npugen-*.whl")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(site), str(wheel)], check=True, capture_output=True)
    assert sorted(p.name for p in site.iterdir() if not p.name.endswith(".dist-info")) \
        == ["bin", "npugen"]
    assert (site / "npugen" / "__init__.py").is_file()      # a regular package
    user = tmp_path / "user"
    user.mkdir()
    (user / "sim.py").write_text("raise SystemExit('the user sim.py was imported')\n")
    # a folder named npugen (a clone's layout) must not shadow the installed package
    (user / "npugen" / "hw").mkdir(parents=True)
    (user / "npugen" / "hw" / "__init__.py").write_text("raise SystemExit('shadowed')\n")
    env = dict(os.environ, PYTHONPATH=str(site))
    code = ("import importlib, npugen.hw, npugen.sim.cli as c; print(npugen.hw.__file__);"
            "print(c.__file__);"
            "import importlib.util as u; print(u.find_spec('hw'))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=user, env=env, capture_output=True,
                          text=True, check=True)
    hw_file, cli_file, hw_spec = proc.stdout.splitlines()
    assert hw_file.startswith(str(site)) and cli_file.startswith(str(site))
    assert hw_spec == "None"
    proc = subprocess.run([sys.executable, "-c", "import sim"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "No module named 'sim'" in proc.stderr
    npugen = [sys.executable, str(site / "bin" / "npugen")]
    proc = subprocess.run([*npugen, "config"], cwd=user, env=env, capture_output=True,
                          text=True, check=True)
    (user / "tiny.toml").write_text(proc.stdout.replace('name = "npu"', 'name = "whl"')
                                    .replace("rows = 16", "rows = 2").replace("cols = 16", "cols = 2")
                                    .replace("k_max = 4096", "k_max = 64"))
    proc = subprocess.run([*npugen, "generate", "--config", "tiny.toml"], cwd=user, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (user / "build" / "whl" / "whl.v").is_file()
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (3, 5), dtype=np.int8)
    b = rng.integers(-128, 128, (5, 2), dtype=np.int8)
    np.save(user / "a.npy", a)
    np.save(user / "b.npy", b)
    proc = subprocess.run([*npugen, "run", "gemm", "--config", "tiny.toml", "--a", "a.npy",
                           "--b", "b.npy", "--out", "c.npy"], cwd=user, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(np.load(user / "c.npy"), a.astype(np.int32) @ b.astype(np.int32))


# -- width formulas: one copy on each side, equal over every accepted value ----------------------

def test_accumulator_width_agrees_with_the_golden_model():
    """hw.config.derived_acc_width (the hardware's one copy) and the golden model's own
    acc_width_for, over the k_max the configuration accepts (1 to 2**24 - 1): every value up to
    2**16, every power of two with its neighbours up to 2**24 (where a width can step), and
    5,000 random values (all 2**24 take minutes)."""
    from npugen.hw.config import derived_acc_width
    from npugen.sim.golden import acc_width_for
    k_hi = (1 << 24) - 1
    with pytest.raises(InputError):
        GemmConfig(k_max=k_hi + 1)
    assert GemmConfig(k_max=k_hi).k_max == k_hi
    rng = np.random.default_rng(24)
    ks = {*range(1, 1 << 16), *(p + d for p in (1 << j for j in range(25)) for d in (-1, 0, 1)),
          *(int(k) for k in rng.integers(1, k_hi + 1, 5000))}
    diff = [k for k in sorted(ks) if 1 <= k <= k_hi and derived_acc_width(k) != acc_width_for(k)]
    assert diff == []
