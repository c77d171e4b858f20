"""Cycles, MAC utilization and simulation speed of GEMM jobs on the simulated RTL.

Usage: ``python benchmarks/bench_gemm.py [--sim verilator|icarus] [--config FILE]
[--shape M K N ...] [--minilm]``. Defaults: the embedded default design (16x16 ws), the shapes
256x256x256 and 64x64x64, and the MiniLM layer-0 Q/K/V projections (``--minilm``). Prints the
Verilator (or Icarus) build time, then per job: cycles (from the status beat), utilization =
M·K·N / (cycles · rows · cols), wall time of the simulation and simulated MACs per wall second.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from npugen.hw.config import load_config
from npugen.sim import run, runner


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim", choices=["verilator", "icarus"], default="verilator",
                    help="simulator (default: verilator)")
    ap.add_argument("--config", default=None, help="configuration TOML (default: embedded)")
    ap.add_argument("--shape", type=int, nargs=3, action="append", metavar=("M", "K", "N"),
                    help="job shape, repeatable (default: 256 256 256 and 64 64 64)")
    ap.add_argument("--minilm", action="store_true", help="also run the MiniLM Q/K/V projections")
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    shapes = args.shape or [(256, 256, 256), (64, 64, 64)]
    console = Console()
    rng = np.random.default_rng(0)
    Path("build").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir="build") as build:
        t0 = time.perf_counter()
        runner.build(cfg, args.sim, build, False)
        console.print(f"{args.sim} build of {cfg.name} ({cfg.rows}x{cfg.cols} {cfg.dataflow}): "
                      f"{time.perf_counter() - t0:.1f} s")
        jobs = []
        for m, k, n in shapes:
            a = rng.integers(-128, 128, (m, k), dtype=np.int8)
            b = rng.integers(-128, 128, (k, n), dtype=np.int8)
            jobs.append((f"random {m}x{k}x{n}", dict(a=a, b=b)))
        if args.minilm:
            from npugen.sim import realdata
            for job in realdata.qkv_jobs():
                jobs.append((f"MiniLM {job['name']}", realdata.gemm_args(job)))
        table = Table(title=f"GEMM on {cfg.name}, {args.sim}")
        for col in ("job", "MxKxN", "cycles", "utilization", "wall (s)", "MAC/s (wall)"):
            table.add_column(col, justify="right")
        for label, kw in jobs:
            a, b = kw["a"], kw["b"]
            t0 = time.perf_counter()
            _, stats = run.gemm(config=cfg, sim=args.sim, build_dir=build, **kw)
            wall = time.perf_counter() - t0
            macs = a.shape[0] * a.shape[1] * b.shape[1]
            table.add_row(label, f"{a.shape[0]}x{a.shape[1]}x{b.shape[1]}", str(stats["cycles"]),
                          f"{100 * stats['utilization']:.1f} %", f"{wall:.1f}",
                          f"{macs / wall:,.0f}")
        console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
