"""Generation time, Verilog size and Verilator lint time of square arrays, 4x4 to 32x32.

Usage: ``python benchmarks/bench_generate.py [--sizes 4 8 16 32] [--dataflow ws|os] [--lint]``.
Prints a table; asserts nothing. Each design is generated into a temporary folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from npugen.hw.config import load_config
from npugen.hw.emit import generate
from npugen.hw.tools import verilator_bin, verilator_env


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16, 32],
                    help="array sizes N (NxN) (default: 4 8 16 32)")
    ap.add_argument("--dataflow", choices=["ws", "os"], default="ws", help="(default: ws)")
    ap.add_argument("--lint", action="store_true", help="also time verilator --lint-only")
    args = ap.parse_args(argv)
    base = load_config()
    table = Table(title=f"npugen generate, {args.dataflow}, k_max={base.k_max}")
    for col in ("array", "generate (s)", "Verilog (KiB)", "Verilog lines") + (
            ("lint (s)",) if args.lint else ()):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            cfg = dataclasses.replace(base, name=f"npu{n}x{n}", rows=n, cols=n,
                                      dataflow=args.dataflow, res_depth=max(base.res_depth, n))
            t0 = time.perf_counter()
            out = generate(cfg, tmp)
            gen = time.perf_counter() - t0
            v = Path(out) / f"{cfg.name}.v"
            text = v.read_text()
            row = [f"{n}x{n}", f"{gen:.1f}", f"{len(text.encode()) / 1024:.0f}",
                   f"{text.count(chr(10))}"]
            if args.lint:
                t0 = time.perf_counter()
                subprocess.run([verilator_bin(), "--lint-only", v.name], cwd=v.parent,
                               env=verilator_env(), capture_output=True)
                row.append(f"{time.perf_counter() - t0:.1f}")
            table.add_row(*row)
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
