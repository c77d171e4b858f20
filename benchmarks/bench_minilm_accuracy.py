"""What each int8 recipe choice of the whole-model pipeline costs in accuracy (issue 20).

Runs the golden integer pipeline (:func:`npugen.sim.minilm.golden_embed`, no RTL) on the shipped
sentences (``sim/data/sentences.txt``) under several recipes and prints a Markdown table: the
smallest and mean cosine of an embedding to the float model's, and the Spearman correlation of
the pairwise cosine similarities with the float model's. The first row is the default recipe;
each other row changes one choice. Scales are calibrated on ``sim/data/calibration.txt`` unless
the row says otherwise.

    PYTHONPATH=... python benchmarks/bench_minilm_accuracy.py

Takes about two minutes on one core (the float model and ~15 s per recipe).
"""

from __future__ import annotations

from npugen.sim import minilm as M

RECIPES = (
    ("default: per-channel weights, raw int32 residual outputs, float GELU and LayerNorm, "
     "calibrated on calibration.txt", {}, "held-out"),
    ("weights per tensor", {"weights": "tensor"}, "held-out"),
    ("O-projection and FFN2 outputs requantized to int8 (not raw int32)",
     {"raw_residual": False}, "held-out"),
    ("I-BERT integer GELU (i-GELU + integer requantization)", {"gelu": "ibert"}, "held-out"),
    ("SmoothQuant alpha = 0.5 on the GEMM inputs", {"smooth": 0.5}, "held-out"),
    ("calibrated on 2 sentences only", {}, "two"),
    ("calibrated on the reported sentences themselves", {}, "self"),
)


def main() -> None:
    sentences = M.read_sentences(M.SENTENCES_PATH)
    cal = M.read_sentences(M.CALIBRATION_PATH)
    ref = M.float_embed(sentences)
    ranges = {"held-out": None, "two": M.calibrate(cal[:2]), "self": M.calibrate(sentences)}
    print(f"{len(sentences)} sentences (sim/data/sentences.txt), {len(cal)} calibration "
          f"sentences (sim/data/calibration.txt); LayerNorm is float in every row")
    print()
    print("| recipe | min cosine | mean cosine | Spearman (pairs) |")
    print("|---|---|---|---|")
    for label, recipe, calib in RECIPES:
        model = (M.default_model(**recipe) if ranges[calib] is None
                 else M.quantize_model(ranges[calib], **recipe))
        e = M.golden_embed(sentences, model)
        c = M.cosines(e, ref)
        print(f"| {label} | {c.min():.4f} | {c.mean():.4f} | "
              f"{M.pairwise_spearman(e, ref):.4f} |", flush=True)


if __name__ == "__main__":
    main()
