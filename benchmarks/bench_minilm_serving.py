"""Serving figures of all-MiniLM-L6-v2 on configs/minilm.toml (issue 20), from the cycle-exact
models (sim/perfmodel.py; the RTL meets them when jobs run back to back).

Prints per layer the cycles of each step (Q/K/V GEMMs, the 12 attention heads, the O
projection, FFN1, FFN2) for one sentence (realdata.DEFAULT_SENTENCE, 20 tokens) and for the 22
shipped sentences as one batch, the utilization of the GEMM engine, and tokens per second at
two clocks measured elsewhere (docs/area.md): 280 MHz, the default clock_mhz, which the 4 x 4
and 8 x 8 GEMM designs meet on OSU 0.18 um with the asic flow (an estimate from
an unplaced netlist; the 16 x 16 was not timed flat, its requantizer lanes and PEs are the same
circuits; the attention unit was not timed, and its score requantizer keeps the 17 x 16-bit
partial products that limited the GEMM designs to about 247 MHz), and 55.89 MHz, nextpnr's Fmax after placement on an ECP5 LFE5U-85F (not routed).

    PYTHONPATH=... python benchmarks/bench_minilm_serving.py
"""

from __future__ import annotations

from npugen.sim import minilm as M
from npugen.sim import realdata as rd

CLOCKS = (("ASIC OSU 0.18 um, 280 MHz met by the 4x4 and 8x8 GEMM designs, unplaced estimate",
           280.0),
          ("ECP5 after placement, not routed", 55.89))
STEPS = ("qkv", "attention", "o", "f1", "f2")


def main() -> None:
    cfg = M.minilm_config()
    for label, sentences in (("one sentence", [rd.DEFAULT_SENTENCE]),
                             ("22 sentences, one batch", M.read_sentences(M.SENTENCES_PATH))):
        r = M.serving(sentences, cfg)
        print(f"{label}: {r['tokens']} tokens on {cfg.name} ({cfg.rows}x{cfg.cols} "
              f"{cfg.dataflow}, attention d={cfg.attention.d} q_block={cfg.attention.q_block})")
        print("| layer | " + " | ".join(STEPS) + " | total |")
        print("|---|" + "---|" * (len(STEPS) + 1))
        for li, row in enumerate(r["layers"]):
            print(f"| {li} | " + " | ".join(f"{row[s]:,}" for s in STEPS)
                  + f" | {sum(row.values()):,} |")
        gemm = sum(row[s] for row in r["layers"] for s in STEPS if s != "attention")
        gemm_macs = 6 * sum(m * k * n for _, m, k, n, _ in M.layer_jobs(r["tokens"]))
        print(f"total {r['total']:,} cycles; GEMM engine utilization "
              f"{100 * gemm_macs / (gemm * cfg.rows * cfg.cols):.1f} %; attention "
              f"{100 * sum(row['attention'] for row in r['layers']) / r['total']:.1f} % of "
              f"the cycles")
        for name, mhz in CLOCKS:
            sec = r["total"] / (mhz * 1e6)
            print(f"  at {mhz} MHz ({name}): {1e3 * sec:.2f} ms, "
                  f"{r['tokens'] / sec:,.0f} tokens/s")
        print()


if __name__ == "__main__":
    main()
