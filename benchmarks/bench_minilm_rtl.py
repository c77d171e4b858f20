"""Wall time of all-MiniLM-L6-v2 through the simulated RTL (issue 20, item 5), and accuracy of
the RTL's embeddings against the float model.

Builds configs/minilm.toml's design for stream replay (sim/replay.py: the Verilog generated,
the harness compiled once), then runs npugen.sim.minilm.embed through all six layers: every
GEMM job on the engine, every attention head on the attention unit, each step checked against
the golden pipeline. Prints the build's and the run's wall time, the cycles per layer, the
simulated cycles per second, and per sentence the cosine to the float model (with the Spearman
rank correlation of the pairwise similarities for three sentences or more).

    python benchmarks/bench_minilm_rtl.py                      # one 20-token sentence
    python benchmarks/bench_minilm_rtl.py --file sim/data/sentences.txt   # the 22 shipped ones
    python benchmarks/bench_minilm_rtl.py --sim icarus --layers 1

``--build-dir`` (default: a fresh temporary folder, so the build is timed from scratch).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from npugen.sim import minilm as M
from npugen.sim import realdata as rd
from npugen.sim import replay


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", help="sentences, one per line (default: the demo's sentence)")
    ap.add_argument("--sim", default="verilator", choices=("verilator", "icarus"))
    ap.add_argument("--layers", type=int, default=M.LAYERS)
    ap.add_argument("--build-dir", default=None)
    args = ap.parse_args(argv)
    sentences = M.read_sentences(args.file) if args.file else [rd.DEFAULT_SENTENCE]
    cfg = M.minilm_config()
    build_dir = args.build_dir or tempfile.mkdtemp(prefix="npugen-bench-minilm-")
    t0 = time.monotonic()
    replay.build(cfg, args.sim, build_dir)
    t_build = time.monotonic() - t0
    t1 = time.monotonic()
    e, rep = M.embed(sentences, config=cfg, sim=args.sim, build_dir=build_dir,
                     layers=args.layers)
    t_all = time.monotonic() - t1
    total = sum(sum(r.values()) for r in rep["layer_cycles"])
    print(f"design {cfg.name} ({cfg.rows}x{cfg.cols} {cfg.dataflow}, attention d="
          f"{cfg.attention.d}), {args.sim}, {len(sentences)} sentence(s), "
          f"{sum(len(t) for t in rep['tokens'])} tokens, {args.layers} layer(s)")
    print(f"build (Verilog + harness compile): {t_build:.1f} s")
    print(f"embed: {t_all:.1f} s wall, of which {rep['wall_s']:.1f} s in the RTL pipeline "
          f"(replays and host steps; the rest: golden check and float model)")
    print(f"simulated: {total:,} cycles, {total / rep['wall_s']:,.0f} cycles per second of "
          f"the RTL pipeline")
    print(f"bit-exact with the golden pipeline: {'yes' if rep['bit_exact'] else 'NO'}")
    print("| layer | " + " | ".join(M.STEPS) + " | total |")
    print("|---|" + "---|" * (len(M.STEPS) + 1))
    for li, row in enumerate(rep["layer_cycles"]):
        print(f"| {li} | " + " | ".join(f"{row[s]:,}" for s in M.STEPS)
              + f" | {sum(row.values()):,} |")
    print("| sentence | tokens | cosine vs float |")
    print("|---|---|---|")
    for s, t, c in zip(sentences, rep["tokens"], rep["cosine"]):
        print(f"| {s} | {len(t)} | {c:.5f} |")
    print(f"min cosine {min(rep['cosine']):.5f}"
          + (f", Spearman of the pairwise similarities {rep['spearman']:.4f}"
             if rep["spearman"] is not None else ""))
    return 0 if rep["bit_exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
