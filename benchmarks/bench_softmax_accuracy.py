"""Accuracy of the OSI8 int8 softmax against float64, next to three published int8 designs.

Usage: ``python benchmarks/bench_softmax_accuracy.py [--seed S]`` (default seed 0). Prints one
markdown table (docs/osi8.md, test 14): for each case, the maximum and mean absolute error
``|y + 128 - 256 p|`` in LSB (1/256 of probability) of every output of every row, against the
float64 softmax ``p`` of the real scores ``c * s``, for

- OSI8 at F = 24 and F = 16 (B = 16), the golden model ``npugen.sim.golden.softmax_int8``, and the
  largest OSI8 error bound of the case at F = 24 (osi8.md, error bound);
- our emulations (benchmarks/_softmax_emulations.py) of TFLite's reference int8 softmax
  (also CMSIS-NN's and Ethos-U's structure), I-BERT's integer softmax as its authors' code
  computes it ("I-BERT code") and with i-exp exactly as the paper's Algorithm 2 writes it
  ("I-BERT Alg. 2"), and hls4ml's default ``stable`` softmax.

All designs see the same int8 rows. Cases: rows of uniformly random int8 scores at several
lengths N and scales c; peaked rows (one 127 and N - 1 copies of v, for every v in
[-128, 127]); uniform rows (all scores equal) at 4096 and 8192 keys. TFLite cells are marked
``*`` where some row's sum of exponentials reaches 512.0, so that the output stage shifts by
more than 31 bits: the current TFLite reference aborts there (``TFLITE_CHECK``), older builds
are undefined behaviour, and the emulation shows the exactly rounded shift; ``†`` where the
int32 sum itself overflows (4096.0) and wraps. Asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _softmax_emulations import (  # noqa: E402
    hls4ml_softmax_int8,
    ibert_paper_softmax_int8,
    ibert_softmax_int8,
    tflite_hazards,
    tflite_softmax_int8,
)

from npugen.sim.golden import softmax_int8  # noqa: E402

B = 16


def float_softmax_256(row, c):
    """``256 * softmax(c * row)`` in float64 (the reference, in LSB)."""
    x = np.asarray(row, dtype=np.float64) * c
    p = np.exp(x - x.max())
    return 256.0 * p / p.sum()


def osi8_bound(row, F, B):
    """Largest error osi8.md guarantees for this row (LSB), ignoring the p ~ 1 exception."""
    m, rescales = None, 0
    for start in range(0, len(row), B):
        t = int(max(row[start:start + B]))
        if m is None:
            m = t
        elif t > m:
            m, rescales = t, rescales + 1
    return 0.5 + (len(row) + 1 + 3 * rescales) / 2 ** (F - 7)


def cases(rng):
    """``(label, c, rows)`` for every case, rows as a list of int64 arrays."""
    for n, nrows in ((8, 64), (64, 64), (512, 16), (4096, 4), (8192, 4)):
        for c in (0.02, 0.05, 0.1, 0.25):
            rows = [rng.integers(-128, 128, n) for _ in range(nrows)]
            yield f"random N={n} c={c}", c, rows
    for n in (64, 8192):
        for c in (0.05, 0.25):
            rows = []
            for v in range(-128, 128):
                row = np.full(n, v, dtype=np.int64)
                row[rng.integers(n)] = 127
                rows.append(row)
            yield f"peaked N={n} c={c}", c, rows
    for n in (4096, 8192):
        yield f"uniform N={n} c=0.05", 0.05, [np.zeros(n, dtype=np.int64)]


DESIGNS = (
    ("OSI8 F=24", lambda row, c: softmax_int8(row, c, F=24, B=B)),
    ("OSI8 F=16", lambda row, c: softmax_int8(row, c, F=16, B=B)),
    ("TFLite", tflite_softmax_int8),
    ("I-BERT code", ibert_softmax_int8),
    ("I-BERT Alg. 2", ibert_paper_softmax_int8),
    ("hls4ml", hls4ml_softmax_int8),
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="random seed of the rows (default: 0)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    header = ["case", "OSI8 bound F=24"] + [name for name, _ in DESIGNS]
    print("Error vs float64 softmax, LSB (1/256): max / mean over all outputs of the case")
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for label, c, rows in cases(rng):
        refs = [float_softmax_256(row, c) for row in rows]
        bound = max(osi8_bound(row, 24, B) for row in rows)
        cells = [label, f"{bound:.3f}"]
        for name, fn in DESIGNS:
            errs = np.concatenate([np.abs(fn(row, c).astype(np.float64) + 128.0 - ref)
                                   for row, ref in zip(rows, refs)])
            mark = ""
            if name == "TFLite":
                hazards = set().union(*(tflite_hazards(row, c) for row in rows))
                mark = ("*" if "shift" in hazards else "") + ("†" if "wrap" in hazards else "")
            cells.append(f"{errs.max():.3f} / {errs.mean():.3f}{mark}")
        print("| " + " | ".join(cells) + " |", flush=True)
    print()
    print("OSI8 bound: osi8.md's error bound at F = 24, B = 16 for the worst row of the case; "
          "outputs with 256 p > 255.5 (p = 1 saturating at 127) may reach 1.0 instead.")
    print("TFLite * : some row's sum of exponentials reaches 512.0, so the output shift exceeds 31 "
          "bits; the reference kernel aborts (TFLITE_CHECK) and older builds are undefined; the "
          "emulation shifts exactly.")
    print("TFLite † : some row's int32 Q12.19 sum overflows (sum >= 4096.0) and wraps.")
    print(f"(seed {args.seed}; {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
