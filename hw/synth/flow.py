"""Area and timing of a generated design with open tools: :func:`area`.

Each target runs two syntheses of the same Verilog:

- the **flat** run synthesizes the whole design flattened, as a user's flow would; its totals
  are the reported figures, and on ``ecp5``/``ice40`` it is placed and routed with nextpnr (Fmax,
  placed utilization), on ``asic`` timed with OpenSTA;
- the **hierarchical estimate** synthesizes each distinct module once (:mod:`hw.synth.hier`),
  memories moved into modules of their own, and composes totals by instance count. It gives the
  per-block breakdown (array, requantizer, control, memories) and, for large arrays, figures in
  minutes where the flat run takes hours. ``estimate_only`` skips the flat run.

Reports (:mod:`hw.synth.report`) go to ``<out>/<name>/qor/<target>.json`` and ``.md``; the tools'
scripts, logs and netlists to ``<out>/<name>/qor/<target>/``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import GemmConfig
from . import devices as devs
from . import hier, tools
from .tools import SynthError, ToolNotFound

__all__ = ["TARGETS", "area", "NoDeviceFits", "QOR_VERSION", "design_folder"]

#: Targets of :func:`area`.
TARGETS = ("generic", "ecp5", "ice40", "xilinx", "asic")

#: Version of the layout of the QoR JSON report.
QOR_VERSION = 1

#: Multiplier block of each target: name and the widest signed operands it takes.
DSP_CELLS = {"ecp5": ("MULT18X18D", 18, 18), "ice40": ("SB_MAC16", 16, 16),
             "xilinx": ("DSP48E1", 25, 18)}


class NoDeviceFits(ValueError):
    """The design fits no device of the family (or not the one asked for)."""


# -- design -----------------------------------------------------------------------------------

def design_folder(cfg: GemmConfig, out: str | os.PathLike[str]) -> Path:
    """``<out>/<name>/`` holding the design of ``cfg``, generated unless already there.

    A folder whose manifest has the same configuration digest and npugen version is reused (with
    its ``qor/``); otherwise :func:`hw.emit.generate` writes it afresh.
    """
    from ..emit import generate
    folder = Path(out) / cfg.name
    manifest = folder / "manifest.json"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        if (data.get("config_digest") == cfg.digest()
                and data.get("tools", {}).get("npugen") == __version__
                and (folder / f"{cfg.name}.v").is_file()):
            return folder
    except (OSError, ValueError):
        pass
    return generate(cfg, out)


# -- resources per target ---------------------------------------------------------------------

def _lut_equiv(target: str, cells: Counter) -> int:
    """Logic cells a target's cell counts occupy, in the device's LUT units."""
    if target == "ecp5":
        # CCU2C is two LUT4s with carry; a TRELLIS_DPR16X4 (16x4 LUT RAM) takes two LUT4s of
        # its slice for the RAM and two for the write port.
        return cells["LUT4"] + 2 * cells["CCU2C"] + 4 * cells["TRELLIS_DPR16X4"]
    if target == "ice40":
        return cells["SB_LUT4"]
    if target == "xilinx":
        return sum(n for t, n in cells.items()
                   if re.fullmatch(r"LUT[1-6]", t) or t.startswith(("SRL", "RAM32", "RAM64",
                                                                    "RAM128", "RAM256")))
    return 0


def _ffs(target: str, cells: Counter) -> int:
    if target == "ecp5":
        return cells["TRELLIS_FF"]
    if target == "ice40":
        return sum(n for t, n in cells.items() if t.startswith("SB_DFF"))
    if target == "xilinx":
        return sum(n for t, n in cells.items() if re.fullmatch(r"FD[CPRS]E(_1)?", t))
    if target == "asic":
        return sum(n for t, n in cells.items() if t.startswith(("DFF", "LATCH")))
    return sum(n for t, n in cells.items()
               if t.startswith(("$_DFF", "$_SDFF", "$_DFFE", "$_SDFFE", "$_DLATCH")))


def _dsps(target: str, cells: Counter) -> int:
    if target in DSP_CELLS:
        return cells[DSP_CELLS[target][0]]
    return 0


def _brams(target: str, cells: Counter) -> dict[str, int]:
    names = {"ecp5": ("DP16KD", "PDPW16KD"), "ice40": ("SB_RAM40_4K", "SB_SPRAM256KA"),
             "xilinx": ("RAMB18E1", "RAMB36E1")}.get(target, ())
    return {t: cells[t] for t in names if cells[t]}


def _lutrams(target: str, cells: Counter) -> dict[str, int]:
    if target == "ecp5":
        return {t: n for t, n in cells.items() if t == "TRELLIS_DPR16X4" and n}
    if target == "xilinx":
        return {t: n for t, n in cells.items() if t.startswith(("RAM32", "RAM64", "RAM128",
                                                                "RAM256")) and n}
    return {}


#: Transistors of Yosys' internal gates in static CMOS, as ``stat -tech cmos`` counts them; a
#: NAND2 is 4, so NAND2 equivalents are transistors / 4.
CMOS_TRANSISTORS = {"$_NOT_": 2, "$_BUF_": 4, "$_NAND_": 4, "$_NOR_": 4, "$_DFF_P_": 16}


@functools.lru_cache(maxsize=None)
def _liberty_areas() -> dict[str, float]:
    """Area of each cell of the liberty file, µm²."""
    text = tools.liberty_path().read_text(encoding="utf-8", errors="replace")
    out = {}
    for m in re.finditer(r"^\s*cell\s*\(\s*\"?(\w+)\"?\s*\)", text, re.M):
        a = re.search(r"^\s*area\s*:\s*([\d.]+)", text[m.end():], re.M)
        if a:
            out[m.group(1)] = float(a.group(1))
    return out


def _summary(target: str, cells: Counter, *, area_um2: float | None = None,
             transistors: float | None = None, mem_bits: int = 0) -> dict[str, Any]:
    """The headline figures of a set of cells."""
    if target == "asic":
        # From the cells themselves: Yosys' per-module area may include submodules.
        areas = _liberty_areas()
        area_um2 = sum(areas.get(t, 0.0) * n for t, n in cells.items())
    if target == "generic":
        transistors = sum(CMOS_TRANSISTORS.get(t, 0) * n for t, n in cells.items())
    out: dict[str, Any] = {"cells": sum(n for t, n in cells.items() if t != "$scopeinfo"),
                           "ffs": _ffs(target, cells)}
    if target in ("ecp5", "ice40", "xilinx"):
        out["luts"] = _lut_equiv(target, cells)
        out["dsps"] = _dsps(target, cells)
        out["brams"] = sum(_brams(target, cells).values())
        out["lutram_cells"] = sum(_lutrams(target, cells).values())
    if target == "generic":
        out["nand2_eq"] = round(transistors / 4, 1) if transistors is not None else None
        out["memory_bits"] = mem_bits
    if target == "asic":
        out["area_um2"] = round(area_um2, 1) if area_um2 is not None else None
    return out


# -- Yosys scripts ----------------------------------------------------------------------------

def _synth_cmd(target: str, top: str, flat: bool, dsp: bool, clock_mhz: float = 200.0,
               between: list[str] | None = None) -> list[str]:
    nf = "" if flat else " -noflatten"
    # ABC maps for this delay target (ps) and buffers and sizes high-fanout nets for it.
    period_ps = int(round(1e6 / clock_mhz))
    if target == "generic":
        return [f"synth{' -flatten' if flat else ''} -top {top} -run begin:fine",
                "opt -fast", "techmap", "opt -fast",
                "dfflegalize -cell $_DFF_P_ 01", "abc -g cmos2", "opt_clean"]
    if target == "asic":
        lib = tools.LIBERTY_NAME
        # Memories become flip-flops (the library has no SRAM); enables and resets become
        # logic, so that one ABC run maps all of it and dfflibmap finds plain flip-flops.
        return [f"synth{' -flatten' if flat else ''} -top {top} -run begin:fine",
                "opt -fast", "memory_map", "opt -fast", "techmap", "opt -fast",
                "dfflegalize -cell $_DFF_P_ 01", f"abc -D {period_ps} -liberty {lib}",
                f"dfflibmap -liberty {lib}", "opt_clean"]
    if target == "ecp5":
        cmd = f"synth_ecp5 -top {top}{nf}{'' if dsp else ' -nodsp'}"
    elif target == "ice40":
        cmd = f"synth_ice40 -top {top}{nf}{' -dsp' if dsp else ''}"
    elif target == "xilinx":
        cmd = (f"synth_xilinx -top {top} -family xc7{' -flatten' if flat else ''}"
               f"{'' if dsp else ' -nodsp'}")
    else:
        raise ValueError(target)
    if not between:
        return [cmd]
    # The budget's commands go after the cell libraries are read and before flattening.
    label = {"ecp5": "coarse", "ice40": "flatten", "xilinx": "prepare"}[target]
    return [f"{cmd} -run begin:{label}", *between, f"{cmd} -run {label}:"]


def _stat_cmd(target: str) -> str:
    if target == "asic":
        return f"tee -q -o stat.json stat -liberty {tools.LIBERTY_NAME} -json"
    if target == "generic":
        return "tee -q -o stat.json stat -tech cmos -json"
    return "tee -q -o stat.json stat -json"


def _sel(modules: list[str], cell: str = "t:$mul") -> str:
    return " ".join(f"{m}/{cell}" for m in modules)


def _run_yosys(work: Path, script: list[str], tag: str) -> dict:
    (work / f"{tag}.ys").write_text("\n".join(script) + "\n", encoding="utf-8")
    stat = work / "stat.json"
    if stat.exists():
        stat.unlink()
    tools.run(tools.yowasp("yosys") + ["-q", "-l", f"{tag}.log", "-s", f"{tag}.ys"], work,
              f"{tag}.out", f"Yosys ({tag}, {work})")
    data = json.loads(stat.read_text(encoding="utf-8"))
    stat.replace(work / f"{tag}_stat.json")
    return data


def _cells(entry: dict) -> Counter:
    return Counter({t: int(n) for t, n in entry.get("num_cells_by_type", {}).items()})


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return 0.0


def _mem_bits(netlist_json: Path) -> dict[str, int]:
    """Bits of each unmapped ``$mem_v2`` cell in a Yosys JSON netlist, by module."""
    out: Counter = Counter()
    data = json.loads(netlist_json.read_text(encoding="utf-8"))
    for mname, mod in data.get("modules", {}).items():
        for cell in mod.get("cells", {}).values():
            if cell.get("type") == "$mem_v2":
                p = cell["parameters"]
                out[mname] += int(p["SIZE"], 2) * int(p["WIDTH"], 2)
    return dict(out)


# -- DSP budget -------------------------------------------------------------------------------

def _dsp_plan(target: str, cfg: GemmConfig, modules: list[str], budget: int | None
              ) -> tuple[set[str], int]:
    """Which modules' multipliers go to LUTs under a budget of ``budget`` DSP blocks.

    PE multipliers come first (one block each), in row-major order, then the requantizer (all
    its lanes or none), whose cost is estimated from mul2dsp's splitting of signed operands.

    Returns
    -------
    lut_modules : set of str
        Modules whose ``$mul`` cells must not map to DSP blocks.
    need : int
        DSP blocks that mapping every multiplier would take (estimate).
    """
    pes = sorted((m for m in modules if re.search(r"\.array\.pe_\d+_\d+$", m)),
                 key=lambda m: tuple(int(x) for x in m.rsplit("pe_", 1)[1].split("_")))
    rq = [m for m in modules if m.endswith(".engine.requant")]
    if target not in DSP_CELLS:
        return set(), 0
    _, a, b = DSP_CELLS[target]
    w = cfg.acc_bits
    per_lane = math.ceil(w / (a - 1)) * math.ceil(32 / (b - 1))
    need = len(pes) + per_lane * cfg.cols * len(rq)
    if budget is None or budget >= need:
        return set(), need
    lut = set(pes[budget:])
    left = max(0, budget - len(pes))
    if left < per_lane * cfg.cols:
        lut.update(rq)
    return lut, need


def _lutmul_cmds(lut_modules: set[str]) -> list[str]:
    """Yosys commands that keep the ``$mul`` cells of ``lut_modules`` out of mul2dsp: they become
    ``$__soft_mul``, which mul2dsp skips and synthesis turns back into ``$mul`` for LUTs."""
    if not lut_modules:
        return []
    return [f"chtype -set $__soft_mul {_sel(sorted(lut_modules))}"]


# -- the runs ---------------------------------------------------------------------------------

def _prep(work: Path, cfg: GemmConfig, design: Path, target: str) -> None:
    work.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(design / f"{cfg.name}.v", work / f"{cfg.name}.v")
    shutil.copyfile(design / f"{cfg.name}.sdc", work / f"{cfg.name}.sdc")
    if target == "asic":
        shutil.copyfile(tools.liberty_path(), work / tools.LIBERTY_NAME)


def _flat_run(work: Path, cfg: GemmConfig, target: str, lut_modules: set[str], dsp_on: bool,
              wrapper: str | None = None) -> dict[str, Any]:
    top = cfg.name
    script = [f"read_verilog {top}.v"]
    if wrapper:
        script += [f"read_verilog {wrapper}"]
    synth_top = "npugen_ooc" if wrapper else top
    script += [f"hierarchy -top {synth_top}", "proc"]
    if wrapper:
        # The wrapper only feeds the pins; the design inside stays one module for its counts.
        script += [f"setattr -mod -set keep_hierarchy 1 {top}", "rename -hide w:*"]
    script += _synth_cmd(target, synth_top, True, dsp_on, cfg.clock_mhz,
                         _lutmul_cmds(lut_modules))
    script += [_stat_cmd(target), f"write_json {target}_flat.json"]
    if target == "asic":
        script += [f"write_verilog -noattr -noexpr {top}_asic.v"]
    t0 = time.monotonic()
    stat = _run_yosys(work, script, "flat")
    seconds = time.monotonic() - t0
    key = f"\\{top}" if f"\\{top}" in stat["modules"] else top
    mod = stat["modules"].get(key) or next(iter(stat["modules"].values()))
    cells = _cells(mod)
    res = {"seconds": round(seconds, 1), "cell_types": dict(sorted(cells.items()))}
    mem_bits = sum(_mem_bits(work / f"{target}_flat.json").values()) if target == "generic" else 0
    res.update(_summary(target, cells, area_um2=_num(mod.get("area")) or None,
                        transistors=_num(mod.get("estimated_num_transistors")),
                        mem_bits=mem_bits))
    if wrapper:
        total = _cells(stat["design"])
        res["with_wrapper"] = _summary(target, total)
    return res


def _block_of(module: str, top: str) -> str:
    """The report block a module's own cells belong to."""
    rest = module[len(top):]
    if rest.endswith("_mem") or "$mem" in rest:
        return "memories"
    if rest.startswith(".engine.array"):
        return "array"
    if rest.startswith(".engine.requant"):
        return "requantizer"
    return "control"


def _kept(reps: list[str], top: str) -> list[str]:
    """Modules the estimate synthesizes once each, hierarchy kept: the array and its PEs (the
    part that grows as R · C). The rest (top, engine, requantizer, result FIFO: each
    instantiated once) is flattened into the top, so that it is mapped in the same context as
    in the flat run."""
    return sorted(m for m in reps if m == f"{top}.engine.array"
                  or m.startswith(f"{top}.engine.array."))


_SRC_RE = re.compile(r"^([^|:]+):(\d+)")


def _line_blocks(text: str, top: str) -> list[tuple[int, int, str]]:
    """(first line, last line, block) of every module of a Verilog text, 1-based lines."""
    out = []
    for name, mod in hier.split_modules(text).items():
        start = text.find(mod.text.lstrip("\n")[:200])
        if start < 0:
            continue
        first = text.count("\n", 0, start) + 1
        last = first + mod.text.count("\n")
        out.append((first, last, _block_of(name, top)))
    return out


def _attribute(netlist: Path, top: str, vfile: str, ranges: list[tuple[int, int, str]],
               submodules: set[str]) -> dict[str, Counter]:
    """Own cells of the flattened top, by report block.

    A cell whose ``src`` attribute points into a module of ``vfile`` belongs to that module's
    block; a cell without one (the LUTs or gates ABC made) belongs to the block of the nearest
    cell it drives (a backward walk from the attributed cells); what is left, to ``control``.
    """
    data = json.loads(netlist.read_text(encoding="utf-8"))
    mods = data["modules"]
    mod = mods.get(top) or mods.get("\\" + top)
    cells = {n: c for n, c in mod["cells"].items()
             if c["type"].lstrip("\\") not in submodules and c["type"] != "$scopeinfo"}

    def block_of_src(src: str) -> str | None:
        for part in src.split("|"):
            m = _SRC_RE.match(part)
            if m and m.group(1).endswith(vfile):
                line = int(m.group(2))
                for a, b, blk in ranges:
                    if a <= line <= b:
                        return blk
        return None

    block: dict[str, str] = {}
    driver: dict[int, str] = {}
    for n, c in cells.items():
        b = block_of_src(str(c.get("attributes", {}).get("src", "")))
        if b is not None:
            block[n] = b
        dirs = c.get("port_directions", {})
        for port, bits in c.get("connections", {}).items():
            if dirs.get(port) == "output":
                for bit in bits:
                    if isinstance(bit, int):
                        driver[bit] = n
    queue = list(block)
    i = 0
    while i < len(queue):
        n = queue[i]
        i += 1
        c = cells[n]
        dirs = c.get("port_directions", {})
        for port, bits in c.get("connections", {}).items():
            if dirs.get(port) == "output":
                continue
            for bit in bits:
                d = driver.get(bit) if isinstance(bit, int) else None
                if d is not None and d not in block:
                    block[d] = block[n]
                    queue.append(d)
    out: dict[str, Counter] = {}
    for n, c in cells.items():
        out.setdefault(block.get(n, "control"), Counter())[c["type"]] += 1
    return out


def _boundary_duplicates(netlist: Path, top: str, target: str, submodules: set[str]
                         ) -> Counter:
    """Flip-flops of the hierarchical netlist that duplicate another one across a module boundary,
    by (report block of the instance they are in, cell type).

    Two flip-flops of the same type and parameters whose inputs (data, clock, enable, reset) are
    the same nets once the ports are followed up the hierarchy hold the same value; the flat
    run merges them (``opt_merge``), the hierarchical run cannot see across the boundary (a PE
    registering a control signal the engine registers too). Of each such group all but the one
    nearest the top are counted here.
    """
    data = json.loads(netlist.read_text(encoding="utf-8"))
    mods = {k.lstrip("\\"): v for k, v in data["modules"].items()}
    groups: dict[tuple, list[str]] = {}

    def walk(name: str, path: str, portmap: dict[int, Any]) -> None:
        mod = mods[name]

        def net(bit):
            if not isinstance(bit, int):
                return bit
            return portmap.get(bit, (path, bit))
        for cname, c in mod.get("cells", {}).items():
            ctype = c["type"].lstrip("\\")
            dirs = c.get("port_directions", {})
            if ctype in submodules:
                child = mods[ctype]
                cmap = {}
                for port, bits in c.get("connections", {}).items():
                    cbits = child.get("ports", {}).get(port, {}).get("bits", [])
                    for cb, pb in zip(cbits, bits):
                        if isinstance(cb, int):
                            cmap[cb] = net(pb)
                walk(ctype, f"{path}.{cname}", cmap)
            elif _ffs(target, Counter({ctype: 1})):
                ins = tuple(sorted((p, tuple(net(b) for b in bits))
                                   for p, bits in c.get("connections", {}).items()
                                   if dirs.get(p) != "output"))
                params = tuple(sorted(c.get("parameters", {}).items()))
                groups.setdefault((ctype, params, ins), []).append(path)
    walk(top, top, {})
    out: Counter = Counter()
    for (ctype, _, _), paths in groups.items():
        # Duplicates inside one module stay in both runs: only other modules' copies count.
        by_path = Counter(paths)
        if len(by_path) > 1:
            for p in sorted(by_path, key=lambda q: (q.count("."), q))[1:]:
                out[(_block_of(p, top), ctype)] += by_path[p]
    return out


def _hier_run(work: Path, cfg: GemmConfig, target: str, lut_modules: set[str], dsp_on: bool
              ) -> dict[str, Any]:
    top = cfg.name
    verilog = (work / f"{top}.v").read_text(encoding="utf-8")
    variant = {m: "lutmul" for m in lut_modules}
    text, rep, counts = hier.dedupe(verilog, top, variant)
    (work / f"{top}_hier.v").write_text(text, encoding="utf-8")
    reps_lut = sorted({rep[m] for m in lut_modules})
    kept = _kept(sorted(set(rep.values())), top)
    script = [f"read_verilog {top}_hier.v", f"hierarchy -top {top}", "proc"]
    if kept:
        script += [f"setattr -mod -set keep_hierarchy 1 {' '.join(kept)}"]
    script += ["rename -hide w:*"]
    synth = _synth_cmd(target, top, True, dsp_on, cfg.clock_mhz, _lutmul_cmds(set(reps_lut)))
    if target in ("generic", "asic"):
        # Memories into a module of their own, reported on their own, once the coarse steps
        # have made them as in the flat run (read registers merged into the memories). FPGA
        # targets keep them in place, so that the RAM inference sees them as the flat run
        # does, and report the RAM primitives as the memories.
        synth[1:1] = ["setattr -set submod \"mem\" t:$mem_v2", "submod"]
    script += synth
    script += [_stat_cmd(target), f"write_json {target}_hier.json"]
    t0 = time.monotonic()
    stat = _run_yosys(work, script, "hier")
    seconds = time.monotonic() - t0
    mem_bits = _mem_bits(work / f"{target}_hier.json") if target == "generic" else {}
    # Instance counts of the modules Yosys reports, new memory modules included.
    mods = {k.lstrip("\\"): v for k, v in stat["modules"].items()}
    # The top's own cells (engine, requantizer, FIFO, flattened together) by block.
    top_split = _attribute(work / f"{target}_hier.json", top, f"{top}_hier.v",
                           _line_blocks(text, top), set(mods))
    n_inst = Counter()

    def walk(name: str, n: int) -> None:
        n_inst[name] += n
        for t, k in _cells(mods[name]).items():
            if t.lstrip("\\") in mods:
                walk(t.lstrip("\\"), n * k)
    walk(top, 1)
    blocks: dict[str, dict] = {}
    total_cells: Counter = Counter()
    total_area = 0.0
    total_tr = 0.0
    total_mem = 0
    block_acc: dict[str, tuple[Counter, float, float, int]] = {}
    for name, n in n_inst.items():
        own = Counter({t: k for t, k in _cells(mods[name]).items() if t.lstrip("\\") not in mods})
        scaled = Counter({t: k * n for t, k in own.items()})
        area = _num(mods[name].get("area")) * n
        tr = _num(mods[name].get("estimated_num_transistors")) * n
        mb = mem_bits.get("\\" + name, mem_bits.get(name, 0)) * n
        parts = ({b: Counter({t: k * n for t, k in c.items()}) for b, c in top_split.items()}
                 if name == top else {_block_of(name, top): scaled})
        total_area += area
        total_tr += tr
        total_mem += mb
        for b, part in parts.items():
            ram = Counter({t: k for t, k in part.items()
                           if t in _brams(target, part) or t in _lutrams(target, part)})
            if ram:
                c, a_, t_, m_ = block_acc.get("memories", (Counter(), 0.0, 0.0, 0))
                block_acc["memories"] = (c + ram, a_, t_, m_)
                part = part - ram
            c, a_, t_, m_ = block_acc.get(b, (Counter(), 0.0, 0.0, 0))
            block_acc[b] = (c + part, a_ + area, t_ + tr, m_ + mb)
            area = tr = mb = 0            # counted once, with the first part
        total_cells += scaled
    # Flip-flops the flat run merges across module boundaries are not in its netlist: take them
    # out of the estimate too.
    dups = _boundary_duplicates(work / f"{target}_hier.json", top, target, set(mods))
    for (b, ctype), k in dups.items():
        c, a_, t_, m_ = block_acc[b]
        block_acc[b] = (c - Counter({ctype: k}), a_, t_, m_)
        total_cells -= Counter({ctype: k})
    for b in ("array", "requantizer", "control", "memories"):
        if b in block_acc:
            c, a_, t_, m_ = block_acc[b]
            blocks[b] = _summary(target, c, area_um2=a_, transistors=t_, mem_bits=m_)
    res = {"seconds": round(seconds, 1),
           "distinct_modules": len(mods), "instances": sum(n_inst.values()),
           "cell_types": dict(sorted(total_cells.items())), "blocks": blocks,
           "boundary_duplicate_ffs": sum(dups.values())}
    res.update(_summary(target, total_cells, area_um2=total_area, transistors=total_tr,
                        mem_bits=total_mem))
    return res


# -- iCE40 pins -------------------------------------------------------------------------------

def _ooc_wrapper(cfg: GemmConfig, design: Path) -> str:
    """A wrapper that gives the design three pins: every input comes from a shift register fed
    by one pin, every output goes into one XOR-reduced register. iCE40 packages have far fewer
    pins than the design has port bits, and nextpnr-ice40 has no out-of-context mode."""
    ports = json.loads((design / "manifest.json").read_text(encoding="utf-8"))["ports"]
    ins = [p for p in ports if p["direction"] == "input" and p["name"] not in ("aclk", "aresetn")]
    outs = [p for p in ports if p["direction"] == "output"]
    n_in = sum(p["width"] for p in ins)
    n_out = sum(p["width"] for p in outs)
    conns = [".aclk(clk)", ".aresetn(rst_n)"]
    pos = 0
    for p in ins:
        conns.append(f".{p['name']}(sr[{pos + p['width'] - 1}:{pos}])")
        pos += p["width"]
    pos = 0
    for p in outs:
        conns.append(f".{p['name']}(o[{pos + p['width'] - 1}:{pos}])")
        pos += p["width"]
    return "\n".join([
        "// npugen: pins of the design for place-and-route on a small package (hw/synth/flow.py)",
        "module npugen_ooc(input clk, input rst_n, input din, output reg dout);",
        f"  reg [{n_in - 1}:0] sr;",
        f"  wire [{n_out - 1}:0] o;",
        f"  always @(posedge clk) sr <= {{sr[{n_in - 2}:0], din}};" if n_in > 1 else
        "  always @(posedge clk) sr <= din;",
        "  always @(posedge clk) dout <= ^o;",
        f"  {cfg.name} dut(" + ", ".join(conns) + ");",
        "endmodule", ""])


# -- place and route --------------------------------------------------------------------------

def _fits(dev: devs.Device, s: dict) -> bool:
    return s["luts"] <= dev.luts and s["ffs"] <= dev.ffs and s["dsps"] <= dev.dsps and \
        s["brams"] <= dev.brams


def _need(s: dict) -> str:
    return f"{s['luts']} LUTs, {s['ffs']} FFs, {s['dsps']} DSPs, {s['brams']} block RAMs"


def _pnr(work: Path, cfg: GemmConfig, family: str, dev: devs.Device, json_name: str,
         ooc: bool, seed: int = 1) -> dict[str, Any]:
    cmd = tools.yowasp(f"nextpnr-{family}") + [
        *dev.flags, "--json", json_name, "--report", "pnr_report.json",
        "--freq", f"{cfg.clock_mhz:g}", "--timing-allow-fail", "--seed", str(seed),
        "-q", "-l", "pnr.log"]
    if ooc:
        cmd.append("--out-of-context")
    if family == "ice40":
        cmd.append("--pcf-allow-unconstrained")
    t0 = time.monotonic()
    tools.run(cmd, work, "pnr.out", f"nextpnr-{family} on {dev.name}")
    seconds = time.monotonic() - t0
    rep = json.loads((work / "pnr_report.json").read_text(encoding="utf-8"))
    fmax = rep.get("fmax", {})
    clk = fmax.get("aclk") or fmax.get("clk") or (next(iter(fmax.values())) if fmax else {})
    util = {k: v for k, v in rep.get("utilization", {}).items() if v.get("used")}
    crit = None
    for cp in rep.get("critical_paths", []):
        if cp.get("from", "").startswith("posedge") and cp.get("to", "").startswith("posedge"):
            path = cp.get("path", [])
            if path:
                crit = {"from": path[0].get("from", {}).get("cell"),
                        "to": path[-1].get("to", {}).get("cell"),
                        "delay_ns": round(sum(p.get("delay", 0) for p in path), 3),
                        "logic_ns": round(sum(p.get("delay", 0) for p in path
                                              if p.get("type") == "logic"), 3),
                        "routing_ns": round(sum(p.get("delay", 0) for p in path
                                                if p.get("type") == "routing"), 3)}
            break
    return {"device": dev.as_dict(), "seconds": round(seconds, 1),
            "fmax_mhz": round(clk.get("achieved", 0.0), 2) if clk else None,
            "target_mhz": cfg.clock_mhz, "utilization": util, "critical_path": crit}


# -- static timing ----------------------------------------------------------------------------

_SLACK_RE = re.compile(r"^\s*(-?[\d.]+)\s+slack \((MET|VIOLATED)\)", re.M)
_ARRIVAL_RE = re.compile(r"^\s*(-?[\d.]+)\s+data arrival time", re.M)
_POINT_RE = re.compile(r"^Startpoint: (\S+).*?^Endpoint: (\S+)", re.M | re.S)


def _sta(work: Path, cfg: GemmConfig) -> dict[str, Any]:
    top = cfg.name
    period = 1000.0 / cfg.clock_mhz
    script = "\n".join([
        f"read_liberty {tools.LIBERTY_NAME}",
        f"read_verilog {top}_asic.v",
        f"link_design {top}",
        f"read_sdc {top}.sdc",
        "puts \"== worst\"",
        "report_checks -path_delay max -digits 3",
        "puts \"== reg2reg\"",
        "report_checks -path_delay max -digits 3 -from [all_registers -clock_pins] "
        "-to [all_registers -data_pins]",
        "exit", ""])
    (work / "sta.tcl").write_text(script, encoding="utf-8")
    t0 = time.monotonic()
    text = tools.run([tools.sta_bin(), "-no_splash", "-exit", "sta.tcl"], work, "sta.log",
                     "OpenSTA")
    seconds = time.monotonic() - t0
    if "== reg2reg" not in text:
        raise SynthError(f"OpenSTA printed no report (log: {work / 'sta.log'})")
    worst, r2r = text.split("== reg2reg", 1)

    def parse(part: str) -> dict[str, Any] | None:
        m = _SLACK_RE.search(part)
        if m is None:
            return None
        out = {"slack_ns": float(m.group(1))}
        a = _ARRIVAL_RE.search(part)
        if a:
            out["arrival_ns"] = float(a.group(1))
        p = _POINT_RE.search(part)
        if p:
            out["from"], out["to"] = p.group(1), p.group(2)
        return out
    w, r = parse(worst), parse(r2r)
    res: dict[str, Any] = {"seconds": round(seconds, 1), "clock_mhz": cfg.clock_mhz,
                           "period_ns": round(period, 3), "worst": w, "reg2reg": r}
    if r is not None:
        res["fmax_mhz"] = round(1000.0 / (period - r["slack_ns"]), 2)
    return res


# -- checks -----------------------------------------------------------------------------------

_FINE_GENERIC = {"$_NAND_", "$_NOR_", "$_NOT_", "$_DFF_P_", "$_BUF_", "$mem_v2", "$scopeinfo"}


def _unmapped(target: str, cell_types: dict[str, int], lib_cells: set[str] | None) -> list[str]:
    if target == "generic":
        return sorted(t for t in cell_types if t not in _FINE_GENERIC)
    if target == "asic" and lib_cells is not None:
        return sorted(t for t in cell_types if t not in lib_cells and t != "$scopeinfo")
    return sorted(t for t in cell_types if t.startswith("$") and t != "$scopeinfo")


def _liberty_cells() -> set[str]:
    text = tools.liberty_path().read_text(encoding="utf-8", errors="replace")
    return set(re.findall(r"^\s*cell\s*\(\s*\"?(\w+)\"?\s*\)", text, re.M))


def _checks(target: str, cfg: GemmConfig, flat: dict | None, est: dict) -> list[dict]:
    lib = _liberty_cells() if target == "asic" else None
    out = []
    for label, run in (("flat", flat), ("estimate", est)):
        if run is None:
            continue
        bad = _unmapped(target, run["cell_types"], lib)
        out.append({"name": f"no unmapped coarse cells ({label})", "ok": not bad,
                    "detail": "none" if not bad else ", ".join(bad)})
    if flat is not None:
        out.append({"name": "same flip-flop count flat and hierarchical",
                    "ok": flat["ffs"] == est["ffs"],
                    "detail": f"flat {flat['ffs']}, hierarchical {est['ffs']}"})
    if target in ("ecp5", "xilinx", "ice40"):
        run = flat or est
        types = run["cell_types"]
        brams = _brams(target, Counter(types))
        lutram = _lutrams(target, Counter(types))
        mem = est.get("blocks", {}).get("memories")
        ff_in_mem = mem["ffs"] if mem else 0
        bram_name = {"ecp5": "DP16KD", "xilinx": "RAMB", "ice40": "SB_RAM40_4K"}[target]
        # The accumulator memory is the one large enough to need block RAM.
        acc_bits = cfg.acc_depth * cfg.cols * cfg.acc_bits
        need_bram = acc_bits > 4096
        ok = (not need_bram or bool(brams)) and ff_in_mem <= 2 * (cfg.acc_bits * cfg.cols
                                                                  + cfg.lane_bits * cfg.cols + 64)
        detail = (", ".join(f"{n} {t}" for t, n in {**brams, **lutram}.items()) or "none")
        detail += f"; {ff_in_mem} FFs in memory modules (read registers)"
        if not need_bram:
            detail += f"; the accumulator memory ({acc_bits} bits) is small enough for LUT RAM"
        out.append({"name": f"memories mapped to RAM ({bram_name}), not LUTs and FFs",
                    "ok": ok, "detail": detail})
    return out


# -- public -----------------------------------------------------------------------------------

def tool_versions(target: str) -> dict[str, str]:
    """Versions of every tool that makes a target's figures."""
    import amaranth
    out = {"npugen": __version__, "amaranth": amaranth.__version__}
    out.update(tools.yosys_version())
    if target in ("ecp5", "ice40"):
        out.update(tools.nextpnr_version(target))
    if target == "asic":
        out.update(tools.liberty_version())
        out.update(tools.sta_version())
    return out


def check_target(target: str, *, pnr: bool = True, sta: bool = True) -> None:
    """Fail early, with one line naming the package, when a target's tools are missing.

    Raises
    ------
    ValueError
        For an unknown target.
    ToolNotFound
        For a missing tool.
    """
    if target not in TARGETS:
        raise ValueError(f"--target: {target!r} is not a target (choose from "
                         f"{', '.join(TARGETS)})")
    tools.yowasp("yosys")
    if target in ("ecp5", "ice40") and pnr:
        tools.yowasp(f"nextpnr-{target}")
    if target == "asic":
        tools.liberty_path()
        if sta:
            tools.sta_bin()


def area(cfg: GemmConfig, target: str = "generic", *, out: str | os.PathLike[str] = "build",
         device: str | None = None, dsp: int | None = None, estimate_only: bool = False,
         pnr: bool = True, command: str | None = None, write: bool = True,
         progress=None) -> dict[str, Any]:
    """Synthesize ``cfg`` for ``target`` and report its area (and, where the target has it,
    timing).

    Parameters
    ----------
    cfg : GemmConfig
        The design.
    target : str
        One of :data:`TARGETS`.
    out : path-like
        Folder of design folders (``<out>/<name>/``, made with :func:`hw.emit.generate` when
        missing or stale); the reports go to ``<out>/<name>/qor/``.
    device : str or None
        ``ecp5``/``ice40``: the device to place on; None picks the smallest that fits.
    dsp : int or None
        ``ecp5``/``ice40``/``xilinx``: at most this many DSP blocks; the multipliers beyond it
        (PE multipliers first, then the requantizer's) go to LUTs. None: as many as the device
        has (all of them for ``xilinx``).
    estimate_only : bool
        Only the hierarchical estimate: no flat run, no place-and-route, no timing.
    pnr : bool
        Place and route (``ecp5``/``ice40``) or time (``asic``) the flat netlist.
    command : str or None
        The command line to record in the report.
    write : bool
        Write the JSON and Markdown reports.
    progress : callable or None
        Called with a short message before each step.

    Returns
    -------
    dict
        The report (schema: ``docs/area.md``).

    Raises
    ------
    ValueError
        For an unknown target or device, or a negative DSP budget.
    NoDeviceFits
        If the design fits no device of the family, or not the one given.
    hw.tools.ToolNotFound
        If a tool is missing.
    SynthError
        If a tool fails.
    """
    from . import report as rpt
    say = progress or (lambda msg: None)
    check_target(target, pnr=pnr and not estimate_only, sta=pnr and not estimate_only)
    if dsp is not None and (not isinstance(dsp, int) or isinstance(dsp, bool) or dsp < 0):
        raise ValueError(f"--dsp: {dsp!r} is not allowed (a non-negative integer)")
    family_devices = devs.DEVICES.get(target)
    dev_fixed = devs.device_by_name(target, device) if device and family_devices else None
    if device and not family_devices:
        raise ValueError(f"--device: target {target} has no devices (only ecp5 and ice40)")

    t_start = time.monotonic()
    say("generating the design")
    design = design_folder(cfg, out)
    qor = design / "qor"
    work = qor / target
    if work.exists():
        shutil.rmtree(work)
    _prep(work, cfg, design, target)
    modules = list(hier.split_modules((work / f"{cfg.name}.v").read_text(encoding="utf-8")))

    def budget_for(dev: devs.Device | None) -> int | None:
        if dsp is not None:
            return dsp if dev is None else min(dsp, dev.dsps)
        return dev.dsps if dev is not None else None

    candidates = [dev_fixed] if dev_fixed else list(family_devices or [None])
    report: dict[str, Any] = {
        "qor_version": QOR_VERSION, "name": cfg.name, "target": target,
        "config": json.loads(json.dumps(cfg.to_dict(resolved=True), default=str)),
        "config_digest": cfg.digest(),
        "macs": cfg.rows * cfg.cols,
        "peak_gmacs": round(cfg.rows * cfg.cols * cfg.clock_mhz / 1000, 3),
        "command": command or "", "tools": tool_versions(target),
    }
    wrapper = None
    if target == "ice40":
        wrapper = "npugen_ooc.v"
        (work / wrapper).write_text(_ooc_wrapper(cfg, design), encoding="utf-8")

    est = flat = None
    cache: dict[int | None, tuple[dict, dict | None, set[str], int, bool]] = {}
    chosen = None
    tried = []
    flat_done: dict[int | None, dict] = {}
    for dev in candidates:
        budget = budget_for(dev)
        if budget not in cache:
            lut_modules, need = _dsp_plan(target, cfg, modules, budget)
            dsp_on = target in DSP_CELLS and budget != 0 and (target != "ice40" or (
                dev is not None and dev.dsps > 0) or (dev is None and budget))
            if not dsp_on:              # -nodsp: every multiplier goes to LUTs anyway
                lut_modules = set()
            say(f"synthesizing the hierarchical estimate ({target})")
            e = _hier_run(work, cfg, target, lut_modules, dsp_on)
            cache[budget] = (e, None, lut_modules, need, dsp_on)
        est, flat, lut_modules, need, dsp_on = cache[budget]
        # The flat run (slow) only for a device the estimate fits, or when there is no device
        # to choose; a device the estimate does not fit is skipped without it. The estimate
        # slightly overestimates, so a design it rules out does not fit flat either but by
        # the margin of its error.
        if not estimate_only and (dev is None or _fits(dev, est) or wrapper):
            if budget not in flat_done:
                say(f"synthesizing flat ({target})")
                flat_done[budget] = _flat_run(work, cfg, target, lut_modules, dsp_on, wrapper)
            flat = flat_done[budget]
        if dev is None:
            break
        figures = flat if flat is not None else est
        placed = figures.get("with_wrapper", figures)
        if _fits(dev, placed):
            chosen = dev
            break
        tried.append(f"{dev.name} ({dev.luts} LUTs, {dev.ffs} FFs, {dev.dsps} DSPs, "
                     f"{dev.brams} block RAMs)")
    report["dsp_budget"] = {"given": dsp, "applied": budget_for(chosen) if family_devices
                            else dsp, "needed_estimate": need,
                            "multipliers_in_luts": len(lut_modules)}
    report["estimate"] = est
    report["flat"] = flat
    if family_devices:
        figures = flat if flat is not None else est
        if chosen is None:
            placed = figures.get("with_wrapper", figures)
            which = f"the {dev_fixed.name}" if dev_fixed else f"any {target} device"
            raise NoDeviceFits(
                f"{cfg.name} does not fit {which}: it needs {_need(placed)}; "
                f"tried {'; '.join(tried)}")
        report["device"] = chosen.as_dict()
        if pnr and not estimate_only:
            say(f"placing and routing on {chosen.name}")
            report["pnr"] = _pnr(work, cfg, target, chosen,
                                 "ice40_flat.json" if target == "ice40" else f"{target}_flat.json",
                                 ooc=(target == "ecp5"))
    if target == "asic" and pnr and not estimate_only:
        say("timing with OpenSTA")
        report["sta"] = _sta(work, cfg)
    if flat is not None:
        report["estimate_error"] = rpt.estimate_error(target, flat, est)
    report["checks"] = _checks(target, cfg, flat, est)
    report["seconds"] = round(time.monotonic() - t_start, 1)
    if write:
        rpt.write(report, qor)
    return report
