"""QoR reports: ``qor/<target>.json`` (schema in ``docs/area.md``) and ``qor/<target>.md``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..files import write_atomic

__all__ = ["write", "markdown", "estimate_error", "HEADLINE"]

#: The figures compared between the flat run and the estimate, per target.
HEADLINE = {
    "generic": ("nand2_eq", "ffs", "cells"),
    "ecp5": ("luts", "ffs", "dsps", "brams"),
    "ice40": ("luts", "ffs", "dsps", "brams"),
    "xilinx": ("luts", "ffs", "dsps", "brams"),
    "asic": ("area_um2", "ffs", "cells"),
}

#: The report's name of each figure (``nand2_eq`` is 'NAND2 eq.').
LABELS = {"nand2_eq": "NAND2 eq.", "ffs": "FFs", "cells": "cells", "luts": "LUTs",
           "dsps": "DSPs", "brams": "block RAMs", "area_um2": "area µm²",
           "memory_bits": "memory bits", "lutram_cells": "LUT-RAM cells"}


def estimate_error(target: str, flat: dict, est: dict) -> dict[str, float | None]:
    """Relative error of the estimate against the flat run, per headline figure, percent."""
    out: dict[str, float | None] = {}
    for key in HEADLINE[target]:
        f, e = flat.get(key), est.get(key)
        if f is None or e is None:
            continue
        out[key] = round(100.0 * (e - f) / f, 2) if f else (0.0 if e == f else None)
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 100 else f"{v:g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def markdown(r: dict[str, Any]) -> str:
    """The report as Markdown."""
    t = r["target"]
    keys = [k for k in HEADLINE[t]]
    if t == "generic":
        keys.append("memory_bits")
    cfg = r["config"]
    lines = [f"# {r['name']}: area and timing, target `{t}`", "",
             f"{cfg['rows']} × {cfg['cols']} {cfg['dataflow']}, k_max {cfg['k_max']}, "
             f"acc_depth {cfg['acc_depth']}, res_depth {cfg['res_depth']}, "
             f"{r['macs']} MACs, peak {r['peak_gmacs']:g} GMAC/s at the configured "
             f"{cfg['clock_mhz']:g} MHz (`clock_mhz`: a target, not a measured Fmax).", ""]
    if r.get("command"):
        lines += [f"Command: `{r['command']}`", ""]
    lines += ["## Totals", "", "| figure | flat | hierarchical estimate | error |", "|---|---|---|---|"]
    flat, est, err = r.get("flat") or {}, r["estimate"], r.get("estimate_error") or {}
    for k in keys:
        e = err.get(k)
        lines.append(f"| {LABELS.get(k, k)} | {_fmt(flat.get(k))} | {_fmt(est.get(k))} | "
                     f"{'–' if e is None else f'{e:+.2f} %'} |")
    lines.append(f"| synthesis time, s | {_fmt(flat.get('seconds'))} | {_fmt(est.get('seconds'))} | |")
    if flat.get("with_wrapper"):
        w = flat["with_wrapper"]
        lines += ["", f"Placed with the pin wrapper (shift register in, XOR out): "
                      f"{w['luts']} LUTs, {w['ffs']} FFs in all."]
    lines += ["", "## Breakdown (hierarchical estimate)", "",
              "| block | " + " | ".join(LABELS.get(k, k) for k in keys) + " |",
              "|---|" + "---|" * len(keys)]
    for b, v in est.get("blocks", {}).items():
        lines.append(f"| {b} | " + " | ".join(_fmt(v.get(k)) for k in keys) + " |")
    if t == "asic":
        lines += ["", "The OSU 0.18 µm library has no SRAM macros: memories are flip-flops and "
                      "multiplexers here, reported in the `memories` row."]
    if t == "generic":
        lines += ["", "NAND2 equivalents are Yosys' CMOS transistor count (`stat -tech cmos`) "
                      "over 4; memories stay unmapped and are counted in bits."]
    if r.get("device"):
        d = r["device"]
        lines += ["", "## Device", "",
                  f"{d['name']}: {d['luts']} LUTs, {d['ffs']} FFs, {d['dsps']} DSPs, "
                  f"{d['brams']} block RAMs."]
    b = r.get("dsp_budget") or {}
    if b.get("needed_estimate"):
        lines += ["", f"DSP budget: {_fmt(b.get('applied'))} (given: {_fmt(b.get('given'))}); "
                      f"mapping every multiplier would take about {b['needed_estimate']}; "
                      f"{b['multipliers_in_luts']} module(s) have their multipliers in LUTs."]
    if r.get("pnr"):
        p = r["pnr"]
        if p.get("routed", True):
            head = (f"Fmax {_fmt(p['fmax_mhz'])} MHz (target {p['target_mhz']:g} MHz), "
                    f"nextpnr seed {p.get('seed', '?')}, {p['seconds']} s.")
        else:
            head = (f"**Not routed**: nextpnr stopped after {p['minutes_limit']:g} min "
                    f"(`--pnr-minutes`). Fmax after placement (nextpnr's estimate, not a "
                    f"routed figure): {_fmt(p['placed_fmax_mhz'])} MHz (target "
                    f"{p['target_mhz']:g} MHz), nextpnr seed {p.get('seed', '?')}.")
        lines += ["", "## Place and route", "", head, "",
                  "| resource | used | available |", "|---|---|---|"]
        for k, v in p["utilization"].items():
            lines.append(f"| {k} | {v['used']} | {v['available']} |")
        luts = (r.get("device") or {}).get("luts")
        comb = p["utilization"].get("TRELLIS_COMB", {}).get("available")
        if luts and comb and comb != luts:
            # LFE5U-12F: nextpnr places it on the -25F die (docs/area.md)
            lines += ["", f"nextpnr models the {r['device']['name']} on a larger die: "
                          f"`available` counts that die's slots ({comb:,}); the device has "
                          f"{luts:,} LUTs (Device above)."]
        cp = p.get("critical_path")
        if cp:
            lines += ["", f"Critical path: `{cp['from']}` → `{cp['to']}`, {cp['delay_ns']} ns "
                          f"({cp['logic_ns']} ns logic, {cp['routing_ns']} ns routing)."]
    if r.get("sta"):
        s = r["sta"]
        lines += ["", "## Static timing (OpenSTA)", "",
                  f"Clock {s['clock_mhz']:g} MHz ({s['period_ns']} ns)."]
        for label, k in (("worst path", "worst"), ("register to register", "reg2reg")):
            v = s.get(k)
            if v:
                ends = f"`{v.get('from')}` → `{v.get('to')}`"
                if v.get("from_register") or v.get("to_register"):
                    # The registers the path runs between; the cells are ABC's names.
                    ends = (f"`{v.get('from_register', v.get('from'))}` → "
                            f"`{v.get('to_register', v.get('to'))}` (cells {ends})")
                lines.append(f"- {label}: slack {v['slack_ns']} ns, {ends}")
        if s.get("fmax_mhz"):
            lines.append(f"- register-to-register Fmax: {s['fmax_mhz']} MHz")
        if s.get("paths"):
            # The worst path into each of the registers with the least slack (flow.STA_PATHS).
            lines += ["", "Worst register-to-register paths, one per end register (registers "
                          "named as in the RTL; the netlist is unplaced, with no wire load):",
                      "", "| # | slack ns | arrival ns | Fmax MHz | from | to |",
                      "|---|---|---|---|---|---|"]
            for i, v in enumerate(s["paths"], 1):
                fmax = 1000.0 / (s["period_ns"] - v["slack_ns"])
                lines.append(f"| {i} | {v['slack_ns']} | {_fmt(v.get('arrival_ns'))} | "
                             f"{fmax:.2f} | `{v.get('from_register', v.get('from'))}` | "
                             f"`{v.get('to_register', v.get('to'))}` |")
    lines += ["", "## Checks", "", "| check | result | detail |", "|---|---|---|"]
    for c in r["checks"]:
        lines.append(f"| {c['name']} | {'pass' if c['ok'] else 'FAIL'} | {c['detail']} |")
    lines += ["", "## Tools", "", "| tool | version |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in r["tools"].items()]
    return "\n".join(lines) + "\n"


def write(r: dict[str, Any], qor: Path) -> tuple[Path, Path]:
    """Write ``qor/<target>.json`` and ``qor/<target>.md`` atomically; return their paths."""
    qor.mkdir(parents=True, exist_ok=True)
    j, m = qor / f"{r['target']}.json", qor / f"{r['target']}.md"
    write_atomic(j, json.dumps(r, indent=2, sort_keys=True) + "\n")
    write_atomic(m, markdown(r))
    return j, m
