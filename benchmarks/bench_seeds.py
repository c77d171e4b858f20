"""nextpnr's Fmax over placement seeds: how much of an FPGA figure is placement luck.

Runs the ``npugen area`` flow once on the design (flat synthesis, the device it picks, place and
route with the first seed; the report goes to ``<out>/<name>/qor/<target>.json`` as usual),
then places and routes the same netlist on the same device with each further seed, and prints
one row per seed (Fmax, critical path, seconds) and the spread (min, median, max). The report's
figure is the first seed's, which ``npugen area --seed`` (default 1) fixes.

Usage::

    .venv/bin/python benchmarks/bench_seeds.py [--config FILE] [--target ecp5]
        [--seeds 1,2,3] [--pnr-minutes MIN] [--out build/bench_seeds]

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from npugen.hw.config import load_config
from npugen.hw.synth import area
from npugen.hw.synth import devices as devs
from npugen.hw.synth import flow
from npugen.sim.design import build_npu


def _row(seed: int, p: dict) -> str:
    cp = p.get("critical_path") or {}
    path = (f"{cp.get('from')} → {cp.get('to')} ({cp.get('delay_ns')} ns: "
            f"{cp.get('logic_ns')} logic, {cp.get('routing_ns')} routing)" if cp else "–")
    fmax = (f"{p['fmax_mhz']}" if p.get("routed") else
            f"not routed in {p.get('minutes_limit')} min (placed: {p.get('placed_fmax_mhz')})")
    return f"| {seed} | {fmax} | {path} | {p.get('seconds')} |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=None, help="design TOML (default: the embedded default)")
    ap.add_argument("--target", default="ecp5", choices=("ecp5", "ice40"),
                    help="FPGA target (default: %(default)s)")
    ap.add_argument("--seeds", default="1,2,3", help="nextpnr seeds (default: %(default)s)")
    ap.add_argument("--pnr-minutes", type=float, default=flow.PNR_MINUTES,
                    help="stop each nextpnr run after MIN minutes (default: %(default)g)")
    ap.add_argument("--out", default="build/bench_seeds",
                    help="work folder (default: %(default)s)")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    cfg = load_config(args.config)
    print("command: .venv/bin/python benchmarks/bench_seeds.py " + " ".join(sys.argv[1:]))
    t0 = time.monotonic()
    r = area(cfg, args.target, out=args.out, seed=seeds[0], pnr_minutes=args.pnr_minutes,
             top=build_npu, command="bench_seeds")
    dev = devs.DEVICES[args.target][[d.name for d in devs.DEVICES[args.target]]
                                    .index(r["device"]["name"])]
    fig = r["flat"]
    print(f"design {cfg.name}: {cfg.rows}x{cfg.cols} {cfg.dataflow}, clock_mhz "
          f"{cfg.clock_mhz:g}; {dev.name}: {fig['luts']:,} LUT4, {fig['ffs']:,} FF, "
          f"{fig['dsps']} DSP, {fig['brams']} BRAM; synthesis and first run "
          f"{time.monotonic() - t0:.0f} s\n")
    print("| seed | Fmax MHz | critical path | nextpnr s |")
    print("|---|---|---|---|")
    runs = {seeds[0]: r["pnr"]}
    print(_row(seeds[0], r["pnr"]))
    sys.stdout.flush()
    work = Path(args.out) / cfg.name / "qor" / args.target
    json_name = "ice40_flat.json" if args.target == "ice40" else f"{args.target}_flat.json"
    for seed in seeds[1:]:
        runs[seed] = flow._pnr(work, cfg, args.target, dev, json_name,
                               ooc=args.target == "ecp5", seed=seed, minutes=args.pnr_minutes)
        print(_row(seed, runs[seed]))
        sys.stdout.flush()
    fmax = [p["fmax_mhz"] for p in runs.values() if p.get("routed")]
    if fmax:
        print(f"\nFmax over {len(fmax)} routed seeds: min {min(fmax)}, median "
              f"{statistics.median(fmax):g}, max {max(fmax)} MHz (target {cfg.clock_mhz:g}; "
              f"{sum(f >= cfg.clock_mhz for f in fmax)} of {len(fmax)} meet it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
