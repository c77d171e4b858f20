"""Cycles of each requantizer lane count (``requant_lanes``) by the cycle-exact model.

For a design (default: the embedded default, 16 x 16 ws) this prints, for each lane count, the
status cycles of requant GEMM jobs at K = 16, 64 and 384 (M = N = 256), of 256³ and of the
MiniLM projection (20 x 384 x 384), and each against one lane per column (``requant_lanes =
cols``, one slice per row: the drain never waits). The model (``npugen.sim.perfmodel``) equals
the RTL's status cycles on every configuration of the regression (tests/test_perfmodel.py), so
these are the RTL's cycles with streams that always have a beat and a consumer that is always
ready.

Usage::

    .venv/bin/python benchmarks/bench_lanes.py [--config FILE] [--lanes 1,2,4,8,16]
        [--res-depth D,D]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from npugen.hw.config import load_config
from npugen.sim.perfmodel import gemm_cycles, utilization

#: (label, m, k, n) of the jobs tabulated.
JOBS = [("K=16", 256, 16, 256), ("K=64", 256, 64, 256), ("K=384", 256, 384, 256),
        ("256³", 256, 256, 256), ("64³", 64, 64, 64), ("MiniLM proj.", 20, 384, 384)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=None, help="design TOML (default: the embedded default)")
    ap.add_argument("--lanes", default=None,
                    help="lane counts, comma-separated (default: the divisors of cols)")
    ap.add_argument("--res-depth", default=None,
                    help="res_depth values, comma-separated (default: the config's)")
    args = ap.parse_args()
    base = load_config(args.config)
    lanes = ([int(x) for x in args.lanes.split(",")] if args.lanes else
             [d for d in range(1, base.cols + 1) if base.cols % d == 0])
    depths = ([int(x) for x in args.res_depth.split(",")] if args.res_depth else
              [base.res_depth])
    print("command: .venv/bin/python benchmarks/bench_lanes.py " + " ".join(sys.argv[1:]))
    print(f"design: {base.rows}x{base.cols} {base.dataflow}, acc_depth {base.acc_depth}, "
          f"{base.rounding} rounding; requant jobs; cycles (against requant_lanes = "
          f"{base.cols}); utilization")
    print()
    print("| requant_lanes | res_depth | " + " | ".join(j[0] for j in JOBS) + " |")
    print("|---|---|" + "---|" * len(JOBS))
    for depth in depths:
        full = dataclasses.replace(base, requant_lanes=base.cols, res_depth=depth)
        ref = {label: gemm_cycles(full, m, k, n) for label, m, k, n in JOBS}
        for lane in lanes:
            cfg = dataclasses.replace(base, requant_lanes=lane, res_depth=depth)
            cells = []
            for label, m, k, n in JOBS:
                c = gemm_cycles(cfg, m, k, n)
                cells.append(f"{c:,} ({100 * (c / ref[label] - 1):+.1f} %; "
                             f"{100 * utilization(cfg, m, k, n, c):.1f} %)")
            print(f"| {lane} | {depth} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
