"""Where a `npugen power` run's power goes, register by register: the data-dependent split of
docs/power.md ("One lever").

Reads a run's per-instance power (``<out>/<name>/power/<label>/instance_power.txt``) and the
design's flat netlist (``<out>/<name>/qor/asic/asic_flat.json``), names every flip-flop by its
output net (the RTL's register name, indices folded: ``engine.array.pe_#_#.prod``), gives every
other cell to the nearest flip-flop it drives (as the report's blocks do), and prints per group:
its power, its power less the clock-only power of its flip-flops (what switches with the data),
its cells and flip-flops, largest data-dependent first.

The clock-only power of a flip-flop is what a flip-flop whose output never toggled in the run
cost (``--clock-uw``; by default measured from the run itself: every ``DFFPOSX1`` of the OSU
0.18 µm library costs the same then, its ``CLK`` internal power).

Usage::

    .venv/bin/python benchmarks/power_split.py build/p/npu_4x4 gemm_64x64x16_s0 [--top 12]

A script that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict, deque
from pathlib import Path

from npugen.hw.synth import flow
from npugen.hw.synth import power as pw


def _group(name: str) -> str:
    """A register's group: its name without bit index, Yosys suffix or numbers."""
    name = re.sub(r"\[\d+\]$", "", name)
    name = re.sub(r"\$.*", "", name)
    return re.sub(r"\d+", "#", name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("design", help="the design folder, <out>/<name>")
    ap.add_argument("label", help="the run's label (gemm_64x64x16_s0, minilm_q_k64_n32, ...)")
    ap.add_argument("--top", type=int, default=12, help="groups to print (default: %(default)s)")
    ap.add_argument("--clock-uw", type=float, default=None,
                    help="clock-only power of a flip-flop, µW (default: from the run)")
    args = ap.parse_args()
    d = Path(args.design)
    name = d.name
    nl = pw.load_netlist(d / "qor/asic/asic_flat.json", name)
    verilog = (d / "qor/asic" / f"{name}.v").read_text(encoding="utf-8")
    lib = flow._liberty_pin_directions()
    blocks = pw.cell_blocks(nl, verilog, flow.design_blocks(d), lib)
    power = {}                                   # cell index -> total mW
    for line in open(d / "power" / args.label / "instance_power.txt", encoding="utf-8"):
        p = line.split()
        if p and p[0].startswith("c") and p[0][1:].isdigit():
            power[int(p[0][1:])] = float(p[4]) * 1e3
    toggled = set()
    for line in open(d / "power" / args.label / "activity.txt", encoding="utf-8"):
        p = line.split()
        if (len(p) == 4 and p[0] == "a" and p[1].startswith("c") and p[1].endswith("/Q")
                and float(p[2]) > 0):
            toggled.add(int(p[1][1:-2]))
    group, driver, ffs = {}, {}, []
    for i, (_, ctype, conns, _) in enumerate(nl.cells):
        dirs = lib.get(ctype, {})
        outs = [b for p, b in conns.items() if dirs.get(p) == "output" and isinstance(b, int)]
        for b in outs:
            driver[b] = i
        if ctype.startswith("DFF"):
            ffs.append(i)
            names = nl.names.get(outs[0], []) if outs else []
            public = [n for n in names if not n.startswith("$")] or names or ["?"]
            group[i] = _group(public[0])
    queue = deque(ffs)
    while queue:
        i = queue.popleft()
        _, ctype, conns, _ = nl.cells[i]
        dirs = lib.get(ctype, {})
        for p, b in conns.items():
            if dirs.get(p) == "output" or not isinstance(b, int):
                continue
            k = driver.get(b)
            if k is not None and k not in group:
                group[k] = group[i]
                queue.append(k)
    clock = args.clock_uw
    if clock is None:
        idle = [power[i] for i in ffs if i not in toggled and i in power]
        clock = 1e3 * min(idle) if idle else 0.0
    agg = defaultdict(lambda: [0.0, 0, 0])
    for i in range(len(nl.cells)):
        key = (blocks[i], group.get(i, "(no register)"))
        agg[key][0] += power.get(i, 0.0)
        agg[key][1] += 1
        agg[key][2] += int(nl.cells[i][1].startswith("DFF"))
    total = sum(v[0] for v in agg.values())
    n_ff = sum(v[2] for v in agg.values())
    data = {k: v[0] - v[2] * clock / 1e3 for k, v in agg.items()}
    dtotal = sum(data.values())
    print(f"{name} {args.label}: {total:.2f} mW; flip-flops' clock pins {n_ff:,} x "
          f"{clock:.2f} µW = {n_ff * clock / 1e3:.2f} mW; data-dependent {dtotal:.2f} mW")
    print("| block | register group | mW | data-dependent mW | share of it | cells | flip-flops |")
    print("|---|---|---|---|---|---|---|")
    for key in sorted(agg, key=lambda k: -data[k])[:args.top]:
        v = agg[key]
        print(f"| {key[0]} | `{key[1]}` | {v[0]:.2f} | {data[key]:.2f} | "
              f"{100 * data[key] / dtotal:.1f} % | {v[1]:,} | {v[2]:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
