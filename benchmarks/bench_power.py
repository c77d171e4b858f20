"""Energy per MAC of generated arrays from gate-level switching, beside the bare MAC and the
minimal systolic PE: the table of docs/power.md.

For each configuration and job this runs :func:`npugen.sim.power.measure` (``npugen power``:
the ``asic`` flow's OSU 0.18 µm netlist simulated on Icarus on the job's streams, OpenSTA
annotated with the simulated activity) with and without cell delays, and prints one row per run:
power, energy per job, per useful MAC and per array slot (memories excluded), per MAC with the
memories, per token (MiniLM), the array's share, and the two references' pJ per MAC under the
same operands and clock with the design's ratio to them.

Usage::

    .venv/bin/python benchmarks/bench_power.py [--configs configs/power_4x4.toml,...]
        [--mkn 64,64,16] [--minilm] [--minilm-kn 64,32|all] [--no-delays] [--clock-mhz 100]
        [--out build/bench_power] [--reuse]

``--reuse`` prints the reports already in ``<out>/<name>/power/`` and measures nothing.
A script that prints figures, not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from npugen.hw.config import load_config
from npugen.sim import power
from npugen.sim.design import build_npu

COLUMNS = ("array", "job", "sim", "cycles", "mW", "pJ/job", "pJ/MAC", "pJ/MAC +mem", "pJ/slot",
           "array pJ/MAC",
           "pJ/token", "array share", "memories share", "bare MAC pJ", "min PE pJ",
           "x bare", "x min PE", "pins annotated", "command")


def row(r: dict) -> list[str]:
    e = r["energy_pj"]
    refs = r.get("references") or {}
    bare, pe = refs.get("bare_mac", {}), refs.get("min_pe", {})
    blocks = r["blocks"]

    def share(b: str) -> str:
        v = blocks.get(b, {}).get("share")
        return f"{100 * v:.1f} %" if v is not None else "–"
    return [f"{r['config']['rows']}x{r['config']['cols']}",
            f"{r['job']}" + (f" ({r['tokens']} tokens)" if r.get("tokens") else ""),
            "delays" if r["delays"] else "zero delay", f"{r['cycles']:,.0f}",
            f"{r['power_mw']['total']:.2f}", f"{e['job']:,.0f}", f"{e['per_mac']:.2f}",
            f"{e['per_mac_with_memories']:.2f}", f"{e['per_slot']:.2f}",
            f"{e['per_mac_array']:.2f}" if "per_mac_array" in e else
            f"{blocks['array']['energy_pj'] / r['macs']:.2f}",
            f"{e['per_token']:,.0f}" if e.get("per_token") else "–",
            share("array"), share("memories"),
            f"{bare.get('pj_per_mac', 0):.2f}" if bare else "–",
            f"{pe.get('pj_per_mac', 0):.2f}" if pe else "–",
            f"{bare.get('design_over_reference', 0):.1f}" if bare else "–",
            f"{pe.get('design_over_reference', 0):.1f}" if pe else "–",
            f"{100 * r['pins_annotated_share']:.1f} %", f"`{r['command']}`"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="configs/power_4x4.toml,configs/power_8x8.toml",
                    help="configuration files (default: %(default)s)")
    ap.add_argument("--mkn", default="64,64,16", help="M,K,N of the random job (default: "
                                                      "%(default)s)")
    ap.add_argument("--minilm", action="store_true",
                    help="also the MiniLM layer-0 Q projection (default off)")
    ap.add_argument("--minilm-kn", default="64,32",
                    help="its first K inputs and N outputs, every token; 'all' for the whole "
                         "projection, hours at gate level (default: %(default)s)")
    ap.add_argument("--no-delays", action="store_true", help="zero-delay runs only")
    ap.add_argument("--clock-mhz", type=float, default=power.DEFAULT_CLOCK_MHZ,
                    help="clock, MHz (default: %(default)s)")
    ap.add_argument("--out", default="build/bench_power", help="work folder (default: "
                                                               "%(default)s)")
    ap.add_argument("--reuse", action="store_true",
                    help="print the reports already in the work folder")
    args = ap.parse_args()
    mkn = tuple(int(v) for v in args.mkn.split(","))
    out = Path(args.out)
    rows = []
    for path in args.configs.split(","):
        cfg = load_config(path)
        kn = None if args.minilm_kn == "all" else tuple(int(v) for v in
                                                         args.minilm_kn.split(","))
        mq = {"minilm_q": True, "mkn": (None, *kn) if kn else None}
        jobs = [{"mkn": mkn}] + ([mq] if args.minilm else [])
        for job in jobs:
            for delays in ((False,) if args.no_delays else (False, True)):
                label = (("minilm_q" + (f"_k{kn[0]}_n{kn[1]}" if kn else ""))
                         if job.get("minilm_q") else
                         f"gemm_{mkn[0]}x{mkn[1]}x{mkn[2]}_s0") + ("_delays" if delays else "")
                report_path = out / cfg.name / "power" / f"{label}.json"
                if args.reuse:
                    if report_path.is_file():
                        rows.append(row(json.loads(report_path.read_text(encoding="utf-8"))))
                    else:
                        print(f"bench_power: no {report_path} (--reuse: not measured)",
                              file=sys.stderr)
                    continue
                cmd = (f"npugen power --config {path} "
                       + (("--minilm-q" + (f" --k {kn[0]} --n {kn[1]}" if kn else ""))
                          if job.get("minilm_q") else f"--m {mkn[0]} --k {mkn[1]} --n {mkn[2]}")
                       + (" --delays" if delays else "") + f" --clock-mhz {args.clock_mhz:g}"
                       + f" --out {out}")
                t0 = time.monotonic()
                print(f"bench_power: {cmd}", file=sys.stderr, flush=True)
                r = power.measure(cfg, **job, delays=delays, clock_mhz=args.clock_mhz, out=out,
                                  command=cmd, top=build_npu,
                                  progress=lambda m: print(f"  {m}", file=sys.stderr,
                                                           flush=True))
                print(f"  {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
                rows.append(row(r))
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
