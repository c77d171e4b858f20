"""Our cycles (model and RTL) next to SCALE-Sim's for the same array, dataflow and GEMM.

Usage: ``python benchmarks/bench_scalesim.py [--rtl none|small|all] [--arrays 8,16]
[--scalesim-venv DIR] [--no-install] [--json FILE]``.

For 8x8 and 16x16 arrays, ws and os, on 8x8x8, 64x64x64 and 128x384x384 (M x K x N), prints a
Markdown table: the cycle-exact model (``npugen.sim.perfmodel.gemm_cycles``, a requantized job), the
RTL's own status cycles on Verilator (``npugen.sim.run.gemm_many``; ``--rtl small``, the default, runs
the two smaller shapes, ``all`` every shape — 128x384x384 on 8x8 is about 300 000 simulated
cycles), SCALE-Sim's "Total Cycles" and its documented formula (``docs/anchors.md``), the
utilizations, and one sentence per row on where the difference comes from.

SCALE-Sim is the PyPI package ``scalesim`` (3.x). It needs numpy < 2.4, so it lives in its own
virtual environment, by default ``build/scalesim-venv``, which this script creates when it is
missing (``--no-install`` to skip)::

    python3 -m venv build/scalesim-venv
    build/scalesim-venv/bin/pip install "numpy<2.4" scalesim

Its inputs are written by ``npugen.sim.perfmodel.write_scalesim`` (what ``npugen perf --scalesim``
writes) under ``build/perf/scalesim/``; results are cached there. When SCALE-Sim cannot be
installed or run, the table shows its formula only and says so. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from math import ceil
from pathlib import Path

import numpy as np

from npugen.hw.config import Dataflow, GemmConfig
from npugen.sim import perfmodel as pm

ROOT = Path(__file__).resolve().parents[1]
SHAPES = [(8, 8, 8), (64, 64, 64), (128, 384, 384)]
SMALL = {(8, 8, 8), (64, 64, 64)}

#: Run inside the SCALE-Sim venv: argv = cfg topology layout results; prints Total Cycles.
_RUNNER = r"""
import csv, sys, glob, os
from scalesim.scale_sim import scalesim
cfg, topo, layout, out = sys.argv[1:5]
s = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo, layout=layout,
             input_type_gemm=True)
s.run_scale(top_path=out)
(report,) = glob.glob(os.path.join(out, "*", "COMPUTE_REPORT.csv"))
with open(report) as f:
    rows = [[c.strip() for c in r] for r in csv.reader(f)]
head, vals = rows[0], rows[1]
print(int(vals[head.index("Total Cycles")]))
"""


def ensure_scalesim(venv: Path, install: bool) -> tuple[Path | None, str]:
    """The SCALE-Sim venv's python, creating the venv if allowed; (None, why) if unusable."""
    py = venv / "bin" / "python"
    ok = py.is_file() and subprocess.run([str(py), "-c", "import scalesim"],
                                         capture_output=True).returncode == 0
    if ok:
        return py, ""
    if not install:
        return None, f"scalesim is not installed in {venv} (--no-install)"
    print(f"installing scalesim into {venv} (numpy < 2.4) ...", file=sys.stderr, flush=True)
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(venv / "bin" / "pip"), "install", "-q", "numpy<2.4", "scalesim"]]
    for cmd in steps:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            return None, f"could not install scalesim: {' '.join(cmd)}: " \
                         f"{(r.stderr or r.stdout).strip().splitlines()[-1:]}"
    return py, ""


def run_scalesim(py: Path, cfg, m: int, k: int, n: int, cache: Path) -> int | None:
    """SCALE-Sim's Total Cycles of one GEMM (cached in ``cache``); None if it failed."""
    folder = cache / f"{cfg.rows}x{cfg.cols}{cfg.dataflow}_{m}x{k}x{n}"
    result = folder / "total_cycles.txt"
    if result.is_file():
        return int(result.read_text())
    files = pm.write_scalesim(cfg, m, k, n, folder)
    r = subprocess.run([str(py), "-c", _RUNNER, str(files["config"]), str(files["topology"]),
                        str(files["layout"]), str(folder / "results")],
                       capture_output=True, text=True, cwd=folder)
    if r.returncode:
        print(f"SCALE-Sim failed on {folder.name}: {r.stderr.strip()[-500:]}", file=sys.stderr)
        return None
    cycles = int(r.stdout.strip().splitlines()[-1])
    result.write_text(str(cycles))
    return cycles


def rtl_cycles(cfg, shapes) -> dict:
    """Status cycles of requantized jobs on Verilator (sim.run.gemm_many), by shape."""
    from npugen.sim import run
    rng = np.random.default_rng(0)
    jobs = []
    for m, k, n in shapes:
        jobs.append(dict(a=rng.integers(-128, 128, (m, k), dtype=np.int8),
                         b=rng.integers(-128, 128, (k, n), dtype=np.int8),
                         multiplier=np.full(n, 1 << 30), shift=np.full(n, -8)))
    out = run.gemm_many(jobs, config=cfg, build_dir=ROOT / "build")
    return {s: stats["cycles"] for s, (_, stats) in zip(shapes, out)}


def why(cfg, m: int, k: int, n: int, ours: int, theirs: int) -> str:
    """One sentence on where our cycles and SCALE-Sim's differ (numbers from docs/perf.md)."""
    R, C = cfg.rows, cfg.cols
    rq = pm.DRAIN_LATENCY + pm.requant_latency(cfg)
    nt = ceil(n / C)
    tail = R + C + 3 + rq          # last row in -> status: array, s0/s1, requantizer, FIFO, status
    return Dataflow(cfg.dataflow).pick(ws=_why_ws, os=_why_os)(cfg, m, k, n, ours, theirs, nt, tail)


def _why_ws(cfg, m, k, n, ours, theirs, nt, tail):
    """:func:`why` for a weight-stationary design."""
    R, C = cfg.rows, cfg.cols
    folds = ceil(k / R) * nt
    passes = ceil(m / cfg.acc_depth) * ceil(k / R) * nt
    stream = m * ceil(k / R) * nt
    head = 13 + min(k, R)       # accept, PARAM_WAIT, 9 parameter beats, BUF_WAIT, load, WAIT
    fill = 2 * R + C - 2
    if folds == 1:
        drain = ours - head - m - (tail - 1)
        return (f"one fold, nothing to overlap: SCALE-Sim's {theirs} cycles are the array's "
                f"preload, skew, {m} rows and drain; our {ours} run from command to status: "
                f"{head} before the first row (parameter block and its hand-over, the "
                f"weight tile), {m} rows, {tail - 1} after the last until its beat is read "
                f"(array, accumulate, result FIFO, requantizer)"
                + (f", and {drain} more while the rows wait for the requantizer's "
                   f"{pm._rq_lanes(cfg)} lanes (docs/perf.md)." if drain else "."))
    return (f"SCALE-Sim pays {fill} cycles of weight preload, skew and drain (2R+C-2) in each "
            f"of its {folds} folds ({folds * fill} in all; folds never overlap); we load the "
            f"next weight tile while the current one streams (double buffering) and switch "
            f"tiles on a diagonal wavefront, so our {passes} passes stream {stream} rows back "
            f"to back and the fill ({ours - stream} cycles: parameters, first tile, pipeline, "
            f"the last column tile's rows through the requantizer's {pm._rq_lanes(cfg)} lanes) "
            f"is paid once: {theirs - ours} fewer.")


def _why_os(cfg, m, k, n, ours, theirs, nt, tail):
    """:func:`why` for an output-stationary design."""
    R, C = cfg.rows, cfg.cols
    tiles = ceil(m / R) * nt
    stream = tiles * max(k, R)
    fill = R + C - 2
    if tiles == 1:
        drain = ours - 11 - k - (tail - 1 + m)
        return (f"one fold, nothing to overlap: SCALE-Sim's {theirs} cycles are skew, {k} steps "
                f"and drain; our {ours} run from command to status: 11 before the first K step "
                f"(parameter block), {k} steps, then {tail - 1 + m} until the beat of the last "
                f"of the {m} rows is read (array, drain, accumulate, result FIFO, requantizer)"
                + (f", and {drain} more while the rows wait for the requantizer's "
                   f"{pm._rq_lanes(cfg)} lanes (docs/perf.md)." if drain else "."))
    return (f"SCALE-Sim pays {fill} cycles of skew and drain (R+C-2) in each of its {tiles} folds "
            f"({tiles * fill} in all; folds never overlap); each of our row tiles drains while "
            f"the next one's K steps stream in (one tile per max(K, R) = {max(k, R)} cycles), "
            f"so we pay {stream} step cycles, 10 per column tile for its parameter block "
            f"({10 * nt}) and {ours - stream - 10 * nt} of pipeline and of the last rows' "
            f"requantization ({pm._rq_lanes(cfg)} lanes) once: {theirs - ours} fewer.")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rtl", choices=["none", "small", "all"], default="small",
                    help="which shapes also run on the RTL with Verilator (default: small)")
    ap.add_argument("--arrays", default="8,16",
                    help="square array sizes, comma-separated (default: 8,16)")
    ap.add_argument("--scalesim-venv", default=str(ROOT / "build" / "scalesim-venv"),
                    help="virtual environment holding scalesim (default: build/scalesim-venv)")
    ap.add_argument("--no-install", action="store_true",
                    help="do not create the SCALE-Sim venv when it is missing (default: create)")
    ap.add_argument("--json", default=None, help="also write the rows as JSON to this file")
    args = ap.parse_args(argv)

    py, reason = ensure_scalesim(Path(args.scalesim_venv), not args.no_install)
    cache = ROOT / "build" / "perf" / "scalesim"
    rows = []
    for size in [int(v) for v in args.arrays.split(",")]:
        for df in ("ws", "os"):
            cfg = GemmConfig(name=f"bench{size}x{size}{df}", rows=size, cols=size, dataflow=df)
            rtl_shapes = [s for s in SHAPES
                          if args.rtl == "all" or (args.rtl == "small" and s in SMALL)]
            rtl = rtl_cycles(cfg, rtl_shapes) if rtl_shapes else {}
            for m, k, n in SHAPES:
                model = pm.gemm_cycles(cfg, m, k, n)
                formula = pm.scalesim_formula(cfg, m, k, n)
                ss = run_scalesim(py, cfg, m, k, n, cache) if py else None
                ideal = pm.ideal_cycles(cfg, m, k, n)
                theirs = ss if ss is not None else formula
                rows.append(dict(array=f"{size}x{size}", dataflow=df, shape=f"{m}x{k}x{n}",
                                 model=model, rtl=rtl.get((m, k, n)), scalesim=ss,
                                 scalesim_formula=formula, util=ideal / model,
                                 util_scalesim=ideal / theirs,
                                 why=why(cfg, m, k, n, model, theirs)))
                print(f"{size}x{size} {df} {m}x{k}x{n}: model {model}, rtl "
                      f"{rtl.get((m, k, n), '-')}, scalesim {ss}", file=sys.stderr, flush=True)
    if py is None:
        print(f"SCALE-Sim could not be run ({reason}): its column shows its documented formula "
              f"(docs/anchors.md): folds = ceil(Sr/R)*ceil(Sc/C), "
              f"total = folds*per_fold - 1, "
              f"ws per_fold = 2R+C+M-2 (Sr=K, Sc=N), os per_fold = R+C+K-2 (Sr=M, Sc=N).\n")
    print("| array | dataflow | M×K×N | model | RTL | SCALE-Sim | SCALE-Sim formula | ours util. "
          "| SCALE-Sim util. |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        rtl = "–" if r["rtl"] is None else (f"{r['rtl']:,}" + ("" if r["rtl"] == r["model"]
                                                              else " (≠ model!)"))
        ss = "not run" if r["scalesim"] is None else f"{r['scalesim']:,}"
        print(f"| {r['array']} | {r['dataflow']} | {r['shape']} | {r['model']:,} | {rtl} | {ss} "
              f"| {r['scalesim_formula']:,} | {100 * r['util']:.1f} % "
              f"| {100 * r['util_scalesim']:.1f} % |")
    print()
    for r in rows:
        print(f"- {r['array']} {r['dataflow']} {r['shape']}: {r['why']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
