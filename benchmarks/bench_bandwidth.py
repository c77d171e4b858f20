"""All-MiniLM-L6-v2's layer GEMMs with throttled input streams (issue 20, item 4), from the
cycle-exact model (sim/perfmodel.py ``gemm_cycles(..., bandwidth=B)``, token-bucket sources,
docs/perf.md "Stream bandwidth"; tests/test_perfmodel.py holds it equal to the RTL with the
testbench throttling both streams the same way).

For the six GEMM jobs of one layer (Q, K, V requantized; O, FFN1, FFN2 raw) at M = 20 (a
sentence) and M = 1 (a decoding step) and B = 1, 4, 16, 64 bytes per cycle on each input
stream, prints the layer's cycles and the array's utilization (MACs / (rows · cols · cycles))
and the as-built cycles (every beat offered at once), on the embedded default (16 x 16 ws), on
configs/minilm.toml and, as a what-if, the default with ``dataflow = "os"``; then the stream
bound (per job the larger input stream's bytes / min(B, a beat's bytes),
``perfmodel.stream_bound``) and a per-job table for the default.

    PYTHONPATH=... python benchmarks/bench_bandwidth.py
"""

from __future__ import annotations

import dataclasses

from npugen.hw.config import load_config
from npugen.sim import minilm as M
from npugen.sim import perfmodel as pm

BANDWIDTHS = (1, 4, 16, 64)
TOKENS = (20, 1)


def designs():
    default = load_config()
    return [("default", default), ("configs/minilm.toml", M.minilm_config()),
            ("default, os (what-if)", dataclasses.replace(default, dataflow="os"))]


def layer(cfg, tokens, bandwidth):
    """Cycles and stream bound of one layer's six jobs, and their MACs."""
    cyc = bound = macs = 0
    for _, m, k, n, rq in M.layer_jobs(tokens):
        cyc += pm.gemm_cycles(cfg, m, k, n, requant=rq, bandwidth=bandwidth)
        if bandwidth is not None:
            bound += pm.stream_bound(cfg, m, k, n, bandwidth)
        macs += m * k * n
    return cyc, bound, macs


def main() -> None:
    print("One layer's six GEMM jobs; cycles (utilization); B in bytes/cycle on each input "
          "stream")
    print("| design | M | as built | " + " | ".join(f"B = {b}" for b in BANDWIDTHS) + " |")
    print("|---|---|---|" + "---|" * len(BANDWIDTHS))
    for name, cfg in designs():
        peak = cfg.rows * cfg.cols
        for t in TOKENS:
            cells = []
            for b in (None,) + BANDWIDTHS:
                cyc, _, macs = layer(cfg, t, b)
                cells.append(f"{cyc:,} ({100 * macs / (peak * cyc):.2f} %)")
            print(f"| {name} | {t} | " + " | ".join(cells) + " |")
    print()
    print("Stream bound of the layer (per job the larger of act, wgt bytes / min(B, beat "
          "bytes)), cycles")
    print("| design | M | " + " | ".join(f"B = {b}" for b in BANDWIDTHS) + " |")
    print("|---|---|" + "---|" * len(BANDWIDTHS))
    for name, cfg in designs():
        for t in TOKENS:
            print(f"| {name} | {t} | "
                  + " | ".join(f"{layer(cfg, t, b)[1]:,.0f}" for b in BANDWIDTHS) + " |")
    print()
    cfg = load_config()
    print("Per job on the default (16 x 16 ws): cycles at B, utilization")
    print("| M | job | MxKxN | act bytes | wgt bytes | as built | "
          + " | ".join(f"B = {b}" for b in BANDWIDTHS) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(BANDWIDTHS))
    for t in TOKENS:
        for r in M.roofline(cfg, t):
            cells = [f"{r['model_cycles']:,} ({100 * r['utilization']:.2f} %)"]
            for b in BANDWIDTHS:
                (rb,) = [x for x in M.roofline(cfg, t, b) if x["job"] == r["job"]]
                cells.append(f"{rb['bw_cycles']:,} ({100 * rb['utilization']:.2f} %)")
            print(f"| {t} | {r['job']} | {r['m']}x{r['k']}x{r['n']} | {r['act_bytes']:,} | "
                  f"{r['wgt_bytes']:,} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
