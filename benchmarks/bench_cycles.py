"""Cycles of the standard GEMM jobs for each value of one configuration key, by the cycle-exact model.

For a design (default: the embedded default, 16 x 16 ws) and its 4 x 4 and 8 x 8 variants
(``--sizes``), this prints the status cycles of requantized jobs of 256³, 64³, 8³ and of
MiniLM's projections (20 tokens: Q/K/V/O 20 x 384 x 384, FFN1 20 x 384 x 1536, FFN2
20 x 1536 x 384; one token: 1 x 384 x 384) for each value of a key (``--key``, ``--values``),
and the difference to the first value: the table a change that trades cycles for clock or area
quotes (docs/perf.md, "The requantizer's partial products"). The model
(``npugen.sim.perfmodel``) equals the RTL's status cycles on every configuration of the
regression (tests/test_perfmodel.py), so these are the RTL's cycles with streams that always
have a beat and a consumer that is always ready.

Usage::

    .venv/bin/python benchmarks/bench_cycles.py [--config FILE] [--sizes 4,8,16]
        [--key requant_pp_bits] [--values 16,8]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from npugen.hw.config import ConfigError, load_config
from npugen.sim.perfmodel import gemm_cycles, utilization

#: (label, m, k, n) of the jobs tabulated.
JOBS = [("256³", 256, 256, 256), ("64³", 64, 64, 64), ("8³", 8, 8, 8),
        ("MiniLM Q/K/V/O 20×384×384", 20, 384, 384), ("FFN1 20×384×1536", 20, 384, 1536),
        ("FFN2 20×1536×384", 20, 1536, 384), ("1 token 1×384×384", 1, 384, 384)]


def _value(text: str):
    """A value of ``--values`` as TOML would read it: an int, a float, a bool or a string."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text, text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=None, help="design TOML (default: the embedded default)")
    ap.add_argument("--sizes", default="4,8,16",
                    help="square array sizes, comma-separated (default 4,8,16)")
    ap.add_argument("--key", default="requant_pp_bits", help="configuration key to vary")
    ap.add_argument("--values", default="16,8",
                    help="its values, comma-separated; the first is the reference (default 16,8)")
    args = ap.parse_args()
    try:
        base = load_config(args.config)
        sizes = [int(s) for s in args.sizes.split(",")]
        values = [_value(v) for v in args.values.split(",")]
        designs = [(n, [dataclasses.replace(base, rows=n, cols=n, **{args.key: v})
                        for v in values]) for n in sizes]
    except (ConfigError, TypeError, ValueError) as e:
        print(f"bench_cycles: {e}", file=sys.stderr)
        return 2
    print("command: .venv/bin/python benchmarks/bench_cycles.py " + " ".join(sys.argv[1:]))
    print(f"design: {base.name}'s keys but the array ({base.dataflow}, acc_depth "
          f"{base.acc_depth}, res_depth {base.res_depth}, {base.rounding} rounding); requant "
          f"jobs; status cycles for {args.key} = {', '.join(map(str, values))}; "
          f"the change against the first; utilization")
    print()
    print("| array | job | " + " | ".join(f"{args.key} = {v}" for v in values) + " |")
    print("|---|---|" + "---|" * len(values))
    for n, cfgs in designs:
        for label, m, k, n_ in JOBS:
            ref = gemm_cycles(cfgs[0], m, k, n_)
            cells = []
            for i, cfg in enumerate(cfgs):
                c = gemm_cycles(cfg, m, k, n_)
                u = 100 * utilization(cfg, m, k, n_, c)
                cells.append(f"{c:,} ({u:.2f} %)" if i == 0 else
                             f"{c:,} ({c - ref:+,}; {u:.2f} %)")
            print(f"| {n}×{n} | {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
