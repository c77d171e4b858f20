"""Attention unit: cycles per head against the ideal bound, and the unit's area.

Prints, for each case, the cycles the RTL took (Verilator, status beats), the cycle model
(:func:`npugen.sim.perfmodel.attention_cycles`, which must agree exactly), the ideal bound
(MACs ÷ MACs per cycle = ``M·N / q_block``) and the utilization (ideal ÷ measured):

- all 12 heads of MiniLM-L6-v2 layer 0 on the default sentence (``npugen.sim.realdata``; the model
  files are fetched on first use, or the shipped fixture is used with ``--fixture``);
- random heads over 1024 and 4096 keys (``--keys``), d = 64, ``--queries`` queries.

With ``--area``, also the area of the attention unit (Yosys, generic target: the difference of
the estimates of a 1×1 design with and without the ``[attention]`` section, so the unit's
share is what is printed).

Usage::

    .venv/bin/python benchmarks/bench_attention.py [--keys 1024 4096] [--queries 16]
                                                   [--fixture] [--area] [--sim verilator]

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from npugen.hw.config import AttentionConfig, load_config  # noqa: E402
from npugen.sim import realdata, run  # noqa: E402
from npugen.sim.design import build_npu  # noqa: E402


def _row(label, m, n, d, cycles, model, ideal, wall):
    util = 100.0 * ideal / cycles
    same = "yes" if cycles == model else "NO"
    return (f"| {label} | {m} | {n} | {d} | {cycles} | {model} | {same} | {ideal:.0f} | "
            f"{util:.1f}% | {wall:.1f} |")


HEADER = ("| case | M | N | d | RTL cycles | model | model exact | ideal | utilization | "
          "wall s |\n|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")


def minilm(args) -> list[str]:
    """The 12 heads of MiniLM layer 0, one simulation, through sim.realdata's RTL path."""
    att = realdata.load_attention_fixture() if args.fixture else realdata.attention_heads()
    cfg = realdata._attention_config(load_config())
    t = time.time()
    rows = realdata.attention_rtl(att, run.attention, config=cfg, sim=args.sim)
    wall = time.time() - t
    out = []
    for h, o, st in rows:
        args_h = realdata.head_args(att, h)
        (m, d), n = args_h["q"].shape, args_h["k"].shape[0]
        out.append(_row(f"MiniLM head {h}", m, n, d, st["cycles"], st["model_cycles"],
                        st["ideal_cycles"], wall / len(rows)))
    return out


def long_context(args) -> list[str]:
    """Random heads over long contexts, default design plus [attention] d = 64."""
    base = load_config()
    cfg = dataclasses.replace(base, attention=AttentionConfig(d=64, heads=1, q_block=4))
    rng = np.random.default_rng(0)
    out = []
    for n in args.keys:
        m, d = args.queries, 64
        q = rng.integers(-128, 128, (m, d), dtype=np.int8)
        k = rng.integers(-128, 128, (n, d), dtype=np.int8)
        v = rng.integers(-128, 128, (n, d), dtype=np.int8)
        t = time.time()
        _, st = run.attention(q, k, v, scale_q=0.02, scale_k=0.02, scale_v=0.05, scale_out=0.05,
                              config=cfg, sim=args.sim)
        out.append(_row(f"random, {n} keys", m, n, d, st["cycles"], st["model_cycles"],
                        st["ideal_cycles"], time.time() - t))
    return out


def area(args) -> list[str]:
    from npugen.hw.synth.flow import area as synth_area
    base = load_config()
    small = dataclasses.replace(base, name="att_area0", rows=1, cols=1, k_max=64, acc_depth=2,
                                res_depth=4)
    lines = ["| design (generic target, hierarchical estimate) | cells | NAND2-eq | FF | "
             "memory bits |", "|---|---:|---:|---:|---:|"]
    figs = []
    for label, cfg in (("1x1 GEMM", small),
                       ("1x1 GEMM + attention d=32, q_block=4, heads=12",
                        dataclasses.replace(small, name="att_area1",
                                            attention=AttentionConfig(d=32, heads=12,
                                                                      q_block=4)))):
        t = time.time()
        rep = synth_area(cfg, "generic", out=ROOT / "build" / "bench_attention",
                         estimate_only=True, write=False, top=build_npu)
        e = rep["estimate"]
        figs.append(e)
        lines.append(f"| {label} | {e['cells']} | {e['nand2_eq']} | {e['ffs']} | "
                     f"{e['memory_bits']} |")
        print(f"  ({label}: {time.time() - t:.0f} s)", file=sys.stderr, flush=True)
    a, b = figs
    lines.append(f"| attention unit (difference) | {b['cells'] - a['cells']} | "
                 f"{b['nand2_eq'] - a['nand2_eq']:.1f} | {b['ffs'] - a['ffs']} | "
                 f"{b['memory_bits'] - a['memory_bits']} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, nargs="*", default=[1024, 4096])
    ap.add_argument("--queries", type=int, default=16)
    ap.add_argument("--sim", default="verilator", choices=["verilator", "icarus"])
    ap.add_argument("--fixture", action="store_true",
                    help="MiniLM heads from tests/fixtures (no model download)")
    ap.add_argument("--no-minilm", action="store_true")
    ap.add_argument("--area", action="store_true")
    args = ap.parse_args(argv)
    print(HEADER)
    if not args.no_minilm:
        for line in minilm(args):
            print(line, flush=True)
    for line in long_context(args):
        print(line, flush=True)
    if args.area:
        print()
        for line in area(args):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
