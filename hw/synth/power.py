"""Power of a mapped OSU 0.18 µm netlist from simulated switching activity (the flow's half).

``npugen power`` (:mod:`npugen.sim.power` drives it, docs/power.md) measures energy in five steps;
this module holds the four that know nothing of npugen's jobs:

1. :func:`load_netlist` reads the ``asic`` flow's flat netlist (Yosys JSON, liberty cells);
2. :func:`write_power_verilog` writes it as a flat gate-level module with one scalar wire per
   net bit (``n<bit>``) and one instance per cell (``c<index>``), every input port bit except the
   clock registered in a ``DFFPOSX1`` of its own (``r<index>``): Debian's OpenSTA keeps pin
   annotations only in cones driven by registers, and the wrapper's flip-flops are reported on
   their own (block ``inputs``), never in the design's figures;
3. (the simulation, on Icarus with the library's cell models, writes a VCD of that module over
   the job's window) :func:`vcd_activity` reads toggles and time high of every net bit;
4. :func:`sta_power` annotates every cell pin with its net's toggles per clock and duty
   (``sta::set_power_pin_activity``, the one way the 2019 OpenSTA of Debian takes pin
   activity: it has no ``read_vcd``/``read_saif``, and ``set_power_activity -pins`` fails) and
   reads the power of every instance.

:func:`cell_blocks` names the report block (:mod:`npugen.hw.blocks`) of every cell: a flip-flop by
its ``src`` attribute (the line of ``<name>.v``, hence the module), a memory's flip-flops by their
net names (``<module path>.<memory>[<word>]``: ``memory_map`` leaves them no ``src``), and the
gates ABC made by the nearest flip-flop they drive (as the area estimate does), those that only
feed a memory's flip-flops going to ``memories`` with them.

Units throughout: power in mW (OpenSTA's watts × 1000), energy in pJ, clock in MHz, time in ns.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from . import hier, tools
from .tools import SynthError

__all__ = ["Netlist", "load_netlist", "write_power_verilog", "vcd_activity", "Activity",
           "sta_power", "cell_blocks", "memory_prefixes", "CLOCK_PORT", "INPUT_BLOCK",
           "POWER_KINDS"]

#: The clock port of npugen's designs (and of the references here).
CLOCK_PORT = "aclk"
#: Report block of the input-register wrapper's flip-flops (not part of the design).
INPUT_BLOCK = "inputs"
#: OpenSTA's split of a cell's power, in its order.
POWER_KINDS = ("internal", "switching", "leakage")


# -- netlist ----------------------------------------------------------------------------------

@dataclass
class Netlist:
    """A flat mapped netlist as Yosys' JSON has it.

    Attributes
    ----------
    top : str
        The module's name.
    ports : list of (str, str, list)
        ``(name, direction, bits)``; a bit is a net number or a constant ``"0"``/``"1"``/``"x"``.
    cells : list of (str, str, dict, str)
        ``(Yosys name, liberty cell, {pin: bit}, src attribute)`` in the JSON's order; cell
        ``i`` is instance ``c<i>`` of :func:`write_power_verilog`'s module.
    names : dict of int to list of str
        The design's names of each net bit (``engine.acc_mem[3]``), public names first.
    """

    top: str
    ports: list
    cells: list
    names: dict = field(default_factory=dict)


def load_netlist(json_path: str | Path, top: str) -> Netlist:
    """Read module ``top`` of a Yosys JSON netlist of liberty cells (single-bit pins).

    Raises
    ------
    SynthError
        If the module is missing or a cell pin has more than one bit (not a liberty cell).
    """
    data = json.loads(Path(json_path).read_text(encoding="utf-8"))
    mods = data.get("modules", {})
    mod = mods.get(top) or mods.get("\\" + top)
    if mod is None:
        raise SynthError(f"{json_path}: no module {top}")
    ports = [(name, p["direction"], list(p["bits"])) for name, p in mod["ports"].items()]
    cells = []
    for cname, c in mod["cells"].items():
        if c["type"] == "$scopeinfo":
            continue
        conns = {}
        for pin, bits in c.get("connections", {}).items():
            if len(bits) != 1:
                raise SynthError(f"{json_path}: cell {cname} ({c['type']}) pin {pin} has "
                                 f"{len(bits)} bits: not a mapped netlist")
            conns[pin] = bits[0]
        cells.append((cname, c["type"].lstrip("\\"), conns,
                      str(c.get("attributes", {}).get("src", ""))))
    names: dict[int, list[str]] = {}
    for name, n in sorted(mod.get("netnames", {}).items(),
                          key=lambda kv: (kv[1].get("hide_name", 0), kv[0])):
        for i, b in enumerate(n["bits"]):
            if isinstance(b, int):
                names.setdefault(b, []).append(name if len(n["bits"]) == 1 else f"{name}[{i}]")
    return Netlist(top, ports, cells, names)


def _net(bit, clock_bits: dict[int, str]) -> str:
    if isinstance(bit, int):
        return clock_bits.get(bit, f"n{bit}")
    return {"0": "1'b0", "1": "1'b1"}.get(bit, "1'bx")


def write_power_verilog(nl: Netlist, path: str | Path, module: str = "power_top", *,
                        clock: str = CLOCK_PORT, register_inputs: bool = True
                        ) -> dict[str, Any]:
    """Write ``nl`` as one flat module of scalar nets for simulation and OpenSTA.

    Net bit ``b`` is wire ``n<b>``, cell ``i`` instance ``c<i>``; the clock port's net keeps the
    port's name. With ``register_inputs`` every other input port bit enters through a
    ``DFFPOSX1`` ``r<k>`` (clocked by ``clock``) whose output is the net the design reads: a
    testbench drives the port with what the design should see one cycle later.

    Returns
    -------
    dict
        ``inputs``: the number of input registers; ``cells``: the design's cells.

    Raises
    ------
    SynthError
        If the module has no ``clock`` port.
    """
    clock_bits = {}
    for name, d, bits in nl.ports:
        if name == clock:
            clock_bits = {bits[0]: name}
    if not clock_bits:
        raise SynthError(f"{nl.top}: no clock port {clock}")
    lines = [f"// Flat gate-level netlist of {nl.top} for npugen power (hw/synth/power.py)",
             "`timescale 1ns/10ps",
             f"module {module}({', '.join(n for n, _, _ in nl.ports)});"]
    wires: set[int] = set()
    body: list[str] = []
    nreg = 0
    for name, d, bits in nl.ports:
        width = f" [{len(bits) - 1}:0]" if len(bits) > 1 else ""
        lines.append(f"  {d}{width} {name};")
        for i, b in enumerate(bits):
            ref = f"{name}[{i}]" if len(bits) > 1 else name
            if d == "input" and name != clock and isinstance(b, int):
                if register_inputs:
                    body.append(f"  DFFPOSX1 r{nreg} (.CLK({clock}), .D({ref}), .Q(n{b}));")
                    nreg += 1
                else:
                    body.append(f"  assign n{b} = {ref};")
                wires.add(b)
            elif d == "output":
                if isinstance(b, int):
                    wires.add(b)
                body.append(f"  assign {ref} = {_net(b, clock_bits)};")
    for i, (_, ctype, conns, _) in enumerate(nl.cells):
        pins = ", ".join(f".{p}({_net(b, clock_bits)})" for p, b in conns.items())
        for b in conns.values():
            if isinstance(b, int) and b not in clock_bits:
                wires.add(b)
        body.append(f"  {ctype} c{i} ({pins});")
    lines += [f"  wire n{b};" for b in sorted(wires)]
    lines += body
    lines += ["endmodule", ""]
    Path(path).write_text("\n".join(lines), encoding="utf-8")
    return {"inputs": nreg, "cells": len(nl.cells)}


# -- blocks -----------------------------------------------------------------------------------

_MEM_DECL_RE = re.compile(r"^\s*reg\s*(?:\[[^\]]*\])?\s*(\\?\S+)\s*\[[^\]]*\]\s*;", re.M)


def memory_prefixes(verilog: str, top: str) -> list[str]:
    """Net name prefixes of the flip-flops ``memory_map`` makes of each memory of a design's
    Verilog: ``<module path>.<memory>[`` (``engine.accumulator.acc_mem[``), and the read
    registers Yosys merged into them (``$\\<module path>.<memory>$rdreg``)."""
    out = []
    for name, mod in hier.split_modules(verilog).items():
        path = name[len(top) + 1:] if name.startswith(top + ".") else ""
        for m in _MEM_DECL_RE.finditer(mod.text):
            mem = m.group(1).lstrip("\\")
            full = f"{path}.{mem}" if path else mem
            out += [f"{full}[", f"$\\{full}$"]
    return out


def cell_blocks(nl: Netlist, verilog: str, blocks: dict[str, str],
                lib_dirs: dict[str, dict[str, str]]) -> list[str]:
    """The report block of every cell of ``nl`` (in order).

    Parameters
    ----------
    nl : Netlist
        The flat netlist, synthesized from ``verilog``.
    verilog : str
        The design's Verilog (``<name>.v``), whose line numbers the ``src`` attributes give.
    blocks : dict of str to str
        Module to block (``manifest.json``'s ``blocks``).
    lib_dirs : dict
        Pin directions of the liberty cells.
    """
    from .flow import _line_blocks, src_block      # the area estimate's map of lines to blocks
    ranges = _line_blocks(verilog, blocks)
    vfile = f"{nl.top}.v"

    def block_of_src(src: str) -> str | None:
        return src_block(src, vfile, ranges)
    prefixes = tuple(memory_prefixes(verilog, nl.top))
    block: dict[int, str] = {}
    driver: dict[int, int] = {}
    mem_seeds = []
    for i, (_, ctype, conns, src) in enumerate(nl.cells):
        dirs = lib_dirs.get(ctype, {})
        outs = [b for p, b in conns.items() if dirs.get(p) == "output" and isinstance(b, int)]
        for b in outs:
            driver[b] = i
        if any(n.startswith(prefixes) for b in outs for n in nl.names.get(b, ())):
            mem_seeds.append(i)
            continue
        blk = block_of_src(src)
        if blk is not None:
            block[i] = blk
    # Seeds: the design's flip-flops first, the memories' last, so that logic at the same
    # distance from both (the accumulator's adder feeding its memory) stays with the logic.
    for i in mem_seeds:
        block[i] = "memories"
    queue = deque(list(k for k in block if k not in set(mem_seeds)) + mem_seeds)
    while queue:
        i = queue.popleft()
        _, ctype, conns, _ = nl.cells[i]
        dirs = lib_dirs.get(ctype, {})
        for p, b in conns.items():
            if dirs.get(p) == "output" or not isinstance(b, int):
                continue
            d = driver.get(b)
            if d is not None and d not in block:
                block[d] = block[i]
                queue.append(d)
    # The read side of a memory (its multiplexers) drives the design's registers, so the walk
    # above gives it their block: a gate whose inputs all come from memory flip-flops or such
    # gates goes to the memories.
    mem = {i for i, b in block.items() if b == "memories"}
    changed = True
    while changed:
        changed = False
        for i, (_, ctype, conns, _) in enumerate(nl.cells):
            if i in mem or ctype.startswith(("DFF", "LATCH")):
                continue
            dirs = lib_dirs.get(ctype, {})
            ins = [driver.get(b) for p, b in conns.items()
                   if dirs.get(p) != "output" and isinstance(b, int)]
            feeds = [d for d in ins if d is not None]
            if feeds and sum(d in mem for d in feeds) * 2 > len(feeds):
                mem.add(i)
                block[i] = "memories"
                changed = True
    return [block.get(i, "control") for i in range(len(nl.cells))]


# -- VCD --------------------------------------------------------------------------------------

@dataclass
class Activity:
    """Switching activity of the dumped nets over a window.

    Attributes
    ----------
    toggles : dict of str to int
        0↔1 transitions of each net bit (``n123``, ``s_axis_act_tdata[3]``), X and Z ignored.
    high : dict of str to float
        Time at 1, ns.
    span_ns : float
        The window: last time stamp minus first, ns.
    """

    toggles: dict
    high: dict
    span_ns: float

    def per_clock(self, name: str, period_ns: float) -> float:
        """Toggles of ``name`` per clock period (OpenSTA's activity unit)."""
        return self.toggles.get(name, 0) * period_ns / self.span_ns if self.span_ns else 0.0

    def duty(self, name: str) -> float:
        """Fraction of the window ``name`` was 1."""
        return min(1.0, self.high.get(name, 0.0) / self.span_ns) if self.span_ns else 0.0


_TIMESCALE = {"s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1.0, "ps": 1e-3, "fs": 1e-6}


def _vcd_tokens(f) -> Iterator[str]:
    for line in f:
        yield from line.split()


def vcd_activity(path: str | Path, scope: str) -> Activity:
    """Toggles and time high of every variable directly in ``scope`` (``tb.dut``) of a VCD.

    A small streaming reader (the VCD of a gate-level run has millions of changes): vectors
    are split into bits ``name[i]`` (``i`` from the declared range), scalars keep their name.

    Raises
    ------
    SynthError
        If the file has no such scope.
    """
    want = scope.split(".")
    stack: list[str] = []
    ids: dict[str, list[list[str]]] = {}     # per code, per bit, the names
    unit = 1.0
    with open(path, encoding="utf-8", errors="replace") as f:
        tok = _vcd_tokens(f)
        for t in tok:
            if t == "$timescale":
                spec = []
                for t2 in tok:
                    if t2 == "$end":
                        break
                    spec.append(t2)
                m = re.fullmatch(r"(\d+)\s*(\w+)", "".join(spec))
                if m:
                    unit = int(m.group(1)) * _TIMESCALE[m.group(2)]
            elif t == "$scope":
                next(tok)
                stack.append(next(tok))
                next(tok)
            elif t == "$upscope":
                stack.pop()
                next(tok)
            elif t == "$var":
                parts = []
                for t2 in tok:
                    if t2 == "$end":
                        break
                    parts.append(t2)
                if stack != want:
                    continue
                width, code, name = int(parts[1]), parts[2], parts[3]
                rng = "".join(parts[4:])
                if width == 1:
                    bits = [name + (rng if rng and ":" not in rng else "")]
                else:
                    m = re.fullmatch(r"\[(\d+):(\d+)\]", rng)
                    hi, lo = (int(m.group(1)), int(m.group(2))) if m else (width - 1, 0)
                    step = -1 if hi >= lo else 1
                    bits = [f"{name}[{i}]" for i in range(hi, lo + step, step)]
                if code in ids:                 # an alias of a variable already declared
                    for pos, nm in zip(ids[code], bits):
                        pos.append(nm)
                else:
                    ids[code] = [[nm] for nm in bits]
            elif t == "$enddefinitions":
                next(tok)
                break
        if not ids:
            raise SynthError(f"{path}: no variables in scope {scope}")
        # Scalars (nearly every net of a gate-level netlist) on a fast path: their value, the
        # time it was set, toggles and time at 1 in flat dicts; vectors through change().
        scal = {c for c, b in ids.items() if len(b) == 1}
        sval = {c: "x" for c in scal}
        ssince = {c: 0 for c in scal}
        stog = {c: 0 for c in scal}
        shigh = {c: 0 for c in scal}
        vecs = {c: b for c, b in ids.items() if c not in scal}
        value = {c: "x" * len(b) for c, b in vecs.items()}
        since = {c: 0 for c in vecs}
        toggles = {c: [0] * len(b) for c, b in vecs.items()}
        high = {c: [0] * len(b) for c, b in vecs.items()}
        now = None
        first = None

        def change(code: str, new: str) -> None:
            old = value[code]
            n = len(old)
            if len(new) < n:
                new = new.rjust(n, "0" if new[0] in "01" else new[0])
            dt = now - since[code]
            tg, hg = toggles[code], high[code]
            for i in range(n):
                o = old[i]
                if o == "1":
                    hg[i] += dt
                c = new[i]
                if c != o and o in "01" and c in "01":
                    tg[i] += 1
            value[code] = new
            since[code] = now
        for line in f:
            c0 = line[:1]
            if c0 == "0" or c0 == "1":
                code = line[1:].rstrip()
                old = sval.get(code)
                if old is not None:
                    if old == "1":
                        shigh[code] += now - ssince[code]
                        if c0 == "0":
                            stog[code] += 1
                    elif old == "0" and c0 == "1":
                        stog[code] += 1
                    sval[code] = c0
                    ssince[code] = now
                elif code in value:
                    change(code, c0)
            elif c0 == "#":
                now = int(line[1:])
                if first is None:
                    first = now
            elif c0 in ("x", "z", "X", "Z"):
                code = line[1:].rstrip()
                old = sval.get(code)
                if old is not None:
                    if old == "1":
                        shigh[code] += now - ssince[code]
                    sval[code] = "x"
                    ssince[code] = now
                elif code in value:
                    change(code, c0.lower())
            elif c0 in ("b", "B"):
                v, code = line[1:].split()
                if code in value:
                    change(code, v.lower())
        if now is None:
            now = first = 0
        for code in vecs:                       # close every variable's last interval
            change(code, value[code])
        for code in scal:
            if sval[code] == "1":
                shigh[code] += now - ssince[code]
    for code in scal:
        toggles[code] = [stog[code]]
        high[code] = [shigh[code]]
    out_t: dict[str, int] = {}
    out_h: dict[str, float] = {}
    for code, bits in ids.items():
        for names, tg, hg in zip(bits, toggles[code], high[code]):
            for name in names:
                out_t[name] = tg
                out_h[name] = hg * unit
    return Activity(out_t, out_h, (now - first) * unit)


# -- OpenSTA ----------------------------------------------------------------------------------

def sta_power(work: Path, verilog: str, module: str, nl: Netlist, act: Activity,
              clock_mhz: float, *, clock: str = CLOCK_PORT,
              lib_dirs: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Annotate every cell pin of ``module`` (``verilog``, in ``work``) with its net's activity
    and report the power of every instance with OpenSTA.

    Returns
    -------
    dict
        ``total_mw`` (internal, switching, leakage, total: mW), ``instances`` (name to the
        same four, mW), ``pins`` (cell pins other than the clock's), ``pins_annotated`` (of
        them, those whose net the simulation dumped), ``default_total_mw`` (OpenSTA's figure
        before annotation, its default activity 0.1), ``seconds``.

    Raises
    ------
    SynthError
        If OpenSTA fails or prints no power.
    """
    period = 1000.0 / clock_mhz
    clock_nets = {clock}
    ann: list[str] = []
    pins = annotated = 0

    def pin_line(inst: str, pin: str, net: str) -> None:
        nonlocal pins, annotated
        pins += 1
        if net in act.toggles:      # else (a net the simulation did not dump) OpenSTA's default
            annotated += 1
            ann.append(f"a {inst}/{pin} {act.per_clock(net, period):.6g} {act.duty(net):.6g}")
    nreg = 0
    for name, d, bits in nl.ports:
        if d == "input" and name != clock:
            for i, b in enumerate(bits):
                if isinstance(b, int):
                    ref = f"{name}[{i}]" if len(bits) > 1 else name
                    pin_line(f"r{nreg}", "D", ref)
                    pin_line(f"r{nreg}", "Q", f"n{b}")
                    nreg += 1
    for i, (_, ctype, conns, _) in enumerate(nl.cells):
        for p, b in conns.items():
            if not isinstance(b, int):
                continue
            net = f"n{b}"
            if net in clock_nets or (p == "CLK" and ctype.startswith(("DFF", "LATCH"))):
                continue
            pin_line(f"c{i}", p, net)
    (work / "activity.txt").write_text("\n".join(ann) + "\n", encoding="utf-8")
    script = "\n".join([
        f"read_liberty {tools.LIBERTY_NAME}",
        f"read_verilog {verilog}",
        f"link_design {module}",
        f"create_clock -name {clock} -period {period:.6g} [get_ports {clock}]",
        "set corner [sta::cmd_corner]",
        "puts \"== default [sta::design_power $corner]\"",
        "set f [open activity.txt r]",
        "while {[gets $f line] >= 0} {",
        "  if {[llength $line] == 4} {",
        "    sta::set_power_pin_activity [get_pins [lindex $line 1]] [lindex $line 2] "
        "[lindex $line 3]",
        "  }",
        "}",
        "close $f",
        "puts \"== annotated [sta::design_power $corner]\"",
        "set o [open instance_power.txt w]",
        "foreach inst [get_cells *] {",
        "  puts $o \"[get_full_name $inst] [sta::instance_power $inst $corner]\"",
        "}",
        "close $o",
        "puts \"== done\"",
        "exit", ""])
    (work / "power.tcl").write_text(script, encoding="utf-8")
    t0 = time.monotonic()
    text = tools.run([tools.sta_bin(), "-no_splash", "-exit", "power.tcl"], work,
                     "power.log", "OpenSTA (power)")
    errors = [ln.strip() for ln in text.splitlines() if ln.startswith("Error")]
    if errors or "== done" not in text:
        raise SynthError(f"OpenSTA (power): {errors[0] if errors else 'no report'} "
                         f"(log: {work / 'power.log'})")

    def totals(tag: str) -> dict[str, float]:
        m = re.search(rf"^== {tag} (.*)$", text, re.M)
        vals = [float(v) for v in m.group(1).split()]
        return _mw(vals[:4])
    insts: dict[str, dict[str, float]] = {}
    for line in (work / "instance_power.txt").read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 5:
            insts[parts[0]] = _mw([float(v) for v in parts[1:]])
    return {"total_mw": totals("annotated"), "default_total_mw": totals("default"),
            "instances": insts, "pins": pins, "pins_annotated": annotated,
            "seconds": round(time.monotonic() - t0, 1)}


def _mw(watts: list[float]) -> dict[str, float]:
    """OpenSTA's (internal, switching, leakage, total) in W as a dict in mW."""
    return {k: w * 1e3 for k, w in zip((*POWER_KINDS, "total"), watts)}


def group_power(insts: dict[str, dict[str, float]], blocks: list[str], nreg: int
                ) -> dict[str, dict[str, float]]:
    """Sum instance power (mW) by block: ``c<i>`` by ``blocks[i]``, ``r<k>`` to
    :data:`INPUT_BLOCK`."""
    out: dict[str, Counter] = {}
    for name, p in insts.items():
        if name.startswith("r"):
            blk = INPUT_BLOCK
        else:
            blk = blocks[int(name[1:])]
        acc = out.setdefault(blk, Counter())
        for k, v in p.items():
            acc[k] += v
    return {b: dict(c) for b, c in out.items()}
