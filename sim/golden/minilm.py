"""Golden model of the whole all-MiniLM-L6-v2 encoder as the accelerator runs it.

The integer pipeline of ``docs/realdata.md`` ("The whole model"), bit-exact with the RTL run of
:mod:`npugen.sim.minilm`: every linear layer is an int8 GEMM job
(:func:`~npugen.sim.golden.gemm_int8`, TFLite per-channel weights; Q, K and V requantized to
int8, the attention output projection and both FFN layers returning raw int32 accumulators),
every attention head an OSI8 attention job (:func:`~npugen.sim.golden.attention_int8`), and what
the hardware does not do runs here, on the host:

- the residual stream between layers is kept in float64 on the host: each residual add and
  each LayerNorm is computed in **float, between a dequantize and a quantize** (the LayerNorm
  output is quantized to the next GEMM's int8 input; I-BERT's integer LayerNorm is not
  implemented);
- GELU is either the same float form (``gelu="float"``: dequantize, exact erf GELU, quantize) or
  I-BERT's integer GELU (``gelu="ibert"``, :func:`i_gelu`; Kim et al., "I-BERT: Integer-only BERT
  Quantization", ICML 2021, Algorithms 1-2), followed by an integer requantization to int8;
- mean pooling and L2 normalization are float, on the last hidden state.

The pipeline is written over *runners*, so one description serves the golden model and the RTL:
a GEMM runner takes a list of job dictionaries (the keyword arguments of
``npugen.sim.run.make_job``: with scales for a requantized job, without for a raw one) and
returns their outputs (int8, or raw accumulators); an attention runner
takes a list of per-sentence attention calls and returns their int8 outputs. All sentences
advance together, step by step: the tokens of every sentence are the rows of one GEMM job per
linear layer (the weights are shared, so a batch is one job, and more rows reuse each weight
tile), the Q, K and V jobs go to the runner in one call (one simulation on the RTL), and the
attention runner gets one call per sentence. The default runners are the golden models.

Like every golden model here, this module imports nothing from ``hw``.
"""

from __future__ import annotations

import math

import numpy as np

from .attention import attention_int8, attention_params
from .gemm import gemm_int8, effective_scale, quantize_multiplier, requantize

__all__ = [
    "LINEARS", "quantize", "dequantize", "layer_norm", "gelu", "i_poly", "i_erf", "i_gelu",
    "gelu_int8", "mean_pool", "l2_normalize", "golden_gemm_runner", "golden_attention_runner",
    "encode",
]

#: The six linear layers of a BERT layer, in the order the pipeline runs them: (name, input
#: size, output size) for all-MiniLM-L6-v2.
LINEARS = (("q", 384, 384), ("k", 384, 384), ("v", 384, 384), ("o", 384, 384),
           ("f1", 384, 1536), ("f2", 1536, 384))

# I-BERT's second-order erf approximation on [0, -b]: L(x) = a (x + b)^2 + 1 (ICML 2021, eq. 8)
_IB_A, _IB_B, _IB_C = -0.2888, -1.769, 1.0


def _round_half_away(v):
    v = np.asarray(v, dtype=np.float64)
    return np.where(v >= 0, np.floor(v + 0.5), np.ceil(v - 0.5))


def quantize(x, scale, zero_point: int) -> np.ndarray:
    """Per-tensor int8 quantization, TFLite's ``AffineQuantize``: ``round(x / S) + zp`` (float32
    division, ties away from zero), clamped to [-128, 127]. The rule of
    ``npugen.sim.realdata.quantize_activation``, restated here because golden models import
    nothing from ``hw`` (a test checks the two agree)."""
    q = _round_half_away(np.asarray(x, dtype=np.float32) / np.float32(scale)) + int(zero_point)
    return np.clip(q, -128, 127).astype(np.int8)


def dequantize(q, scale, zero_point=0) -> np.ndarray:
    """``S (q - zp)`` in float64."""
    return float(scale) * (np.asarray(q, dtype=np.float64) - float(zero_point))


def layer_norm(x, gamma, beta, eps: float = 1e-12) -> np.ndarray:
    """BERT's LayerNorm over the last axis (biased variance), in float64."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * np.asarray(gamma, np.float64) \
        + np.asarray(beta, np.float64)


_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x) -> np.ndarray:
    """Exact GELU, ``x/2 (1 + erf(x / sqrt 2))`` (BERT's ``hidden_act = "gelu"``), float64."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def i_poly(q, scale, a: float, b: float, c: float):
    """I-BERT Algorithm 1: integer evaluation of ``a (x + b)^2 + c`` for ``x = scale * q``.

    ``q_b = floor(b / S)``, ``q_c = floor(c / (a S^2))``, ``q_out = (q + q_b)^2 + q_c`` at scale
    ``S_out = a S^2`` (negative when ``a`` is).

    Returns
    -------
    (numpy.ndarray of int64, float)
    """
    q = np.asarray(q, dtype=np.int64)
    scale = np.asarray(scale, dtype=np.float64)
    q_b = np.floor(b / scale).astype(np.int64)
    q_c = np.floor(c / (a * scale * scale)).astype(np.int64)
    return (q + q_b) ** 2 + q_c, a * scale * scale


def i_erf(q, scale):
    """I-BERT Algorithm 2 (i-erf): integer ``erf`` of ``x = scale * q``.

    ``L(x) = sgn(x) [a (min(|x|, -b) + b)^2 + 1]`` with ``a = -0.2888``, ``b = -1.769``.

    Returns
    -------
    (numpy.ndarray of int64, float)
        ``q_erf`` and its scale ``S_erf = a S^2``.
    """
    q = np.asarray(q, dtype=np.int64)
    sgn = np.sign(q)
    clip = np.floor(-_IB_B / np.asarray(scale, dtype=np.float64)).astype(np.int64)
    q_abs = np.minimum(np.abs(q), clip)
    q_l, s_l = i_poly(q_abs, scale, _IB_A, _IB_B, _IB_C)
    return sgn * q_l, s_l


def i_gelu(q, scale):
    """I-BERT Algorithm 2 (i-GELU): integer GELU of ``x = scale * q``.

    ``q_erf, S_erf = i_erf(q, S / sqrt 2)``; ``q_1 = floor(1 / S_erf)``;
    ``q_out = q (q_erf + q_1)`` at scale ``S_out = S S_erf / 2``. Kim et al. report a maximum
    error of 1.8e-2 against the exact GELU (of the erf approximation, before quantization).

    Parameters
    ----------
    q : array_like of int
        The input integers (zero point already subtracted).
    scale : float or array_like
        Their scale ``S`` (positive), one value or one per channel (last axis).

    Returns
    -------
    (numpy.ndarray of int64, float)
        ``q_out`` and ``S_out`` (negative: ``a < 0``; the real value is ``S_out * q_out``).
    """
    q = np.asarray(q, dtype=np.int64)
    q_erf, s_erf = i_erf(q, scale / math.sqrt(2.0))
    q_1 = np.floor(1.0 / s_erf).astype(np.int64)
    return q * (q_erf + q_1), scale * s_erf / 2.0


def gelu_int8(acc, scale_in, scale_out, zp_out, *, smooth=None, mode: str = "float",
              rounding: str = "single") -> np.ndarray:
    """GELU of the FFN's first GEMM, from its raw int32 accumulators to the int8 input of the
    second GEMM.

    ``acc`` holds the raw accumulators of the ``384 -> 1536`` GEMM (zero point folded, bias
    added), real value ``scale_in[n] * acc`` per output channel ``n``. The result is quantized
    to ``(scale_out, zp_out)`` after division by the smoothing factors ``smooth[n]`` (folded into
    the next GEMM's weights; 1 when None).

    ``mode="float"``: ``quantize(gelu(scale_in * acc) / smooth)``, float64 between the
    dequantize and the quantize.
    ``mode="ibert"``: :func:`i_gelu` on the integers (per-channel scales), then an integer
    requantization to int8 with one TFLite multiplier and shift per channel for the real factor
    ``|S_gelu[n]| / (scale_out smooth[n])`` (:func:`~npugen.sim.golden.quantize_multiplier`,
    :func:`~npugen.sim.golden.requantize`).
    """
    acc = np.asarray(acc, dtype=np.int64)
    n = acc.shape[-1]
    scale_in = np.broadcast_to(np.asarray(scale_in, dtype=np.float64), (n,))
    smooth = np.ones(n) if smooth is None else np.asarray(smooth, dtype=np.float64)
    if mode == "float":
        return quantize(gelu(acc * scale_in) / smooth, scale_out, zp_out)
    if mode != "ibert":
        raise ValueError(f"GELU mode must be 'float' or 'ibert', not {mode!r}")
    q, s = i_gelu(acc, scale_in)
    q = -q                                  # S_gelu < 0 (a < 0): make the factor positive
    r = -s / (float(scale_out) * smooth)
    # factors below 2^-31 need a shift beyond the requantizer's range: pre-shift the integers
    # right by k bits (round half up) and scale the factor up by 2^k
    k = np.maximum(0, np.ceil(-np.log2(r)).astype(np.int64) - 30)
    half = np.where(k > 0, np.left_shift(np.int64(1), np.maximum(k - 1, 0)), 0)
    q = np.right_shift(q + half, k)
    r = r * np.exp2(k)
    mults = [quantize_multiplier(float(x)) for x in r]
    m0 = np.array([m for m, _ in mults], dtype=np.int64)
    sh = np.array([x for _, x in mults], dtype=np.int64)
    return requantize(q, m0, sh, zp_out=int(zp_out), rounding=rounding)


def mean_pool(h, mask=None) -> np.ndarray:
    """Mean of the token rows (sentence-transformers' ``Pooling``, mean over real tokens)."""
    h = np.asarray(h, dtype=np.float64)
    if mask is None:
        return h.mean(axis=0)
    m = np.asarray(mask, dtype=np.float64)[:, None]
    return (h * m).sum(axis=0) / max(m.sum(), 1e-9)


def l2_normalize(v) -> np.ndarray:
    """``v / max(||v||, 1e-12)`` along the last axis (torch's ``F.normalize``)."""
    v = np.asarray(v, dtype=np.float64)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


# --------------------------------------------------------------------------------------------
# runners


def golden_gemm_runner(jobs, *, rounding: str = "single"):
    """Run GEMM job dictionaries (``a``, ``b``, ``bias``, ``zp_a``, ``scale_a``, ``scale_b``,
    ``scale_out``, ``zp_out``) through :func:`~npugen.sim.golden.gemm_int8`; int8 outputs."""
    out = []
    for j in jobs:
        if j.get("scale_out") is None:      # a raw job: int64 accumulators
            out.append(np.asarray(gemm_int8(j["a"], j["b"], bias=j["bias"], zp_a=j["zp_a"])))
            continue
        m0, sh = effective_scale(j["scale_a"], j["scale_b"], j["scale_out"])
        out.append(np.asarray(gemm_int8(j["a"], j["b"], bias=j["bias"], zp_a=j["zp_a"],
                                        multiplier=m0, shift=sh, zp_out=j["zp_out"],
                                        rounding=rounding)))
    return out


def golden_attention_runner(calls, *, F: int = 24, B: int = 16, G: int = 16,
                            rounding: str = "single"):
    """Run attention calls through :func:`~npugen.sim.golden.attention_int8`, head by head.

    Each call is a dictionary with the keyword arguments of ``npugen.sim.run.attention``: ``q``,
    ``k``, ``v`` int8 ``(H, T, d)``, ``scale_q``, ``scale_k``, ``scale_v``, ``scale_out``,
    ``scale_s`` (H floats), ``zp_v``, ``zp_out``. Returns int8 ``(H, T, d)`` per call.
    """
    out = []
    for c in calls:
        d = c["q"].shape[2]
        heads = []
        for h in range(c["q"].shape[0]):
            p = attention_params(c["scale_q"], c["scale_k"], c["scale_v"], c["scale_s"][h],
                                 c["scale_out"], d, zp_v=c["zp_v"], zp_o=c["zp_out"])
            heads.append(attention_int8(c["q"][h], c["k"][h], c["v"][h], p, F=F, B=B, G=G,
                                        rounding=rounding))
        out.append(np.stack(heads).astype(np.int8))
    return out


# --------------------------------------------------------------------------------------------
# the pipeline


def _job(a, lin: dict) -> dict:
    job = {"a": a, "b": lin["b"], "bias": lin["bias"], "zp_a": int(lin["zp_a"])}
    if not lin.get("raw"):
        job.update(scale_a=lin["scale_a"], scale_b=lin["scale_b"],
                   scale_out=lin["scale_out"], zp_out=int(lin["zp_out"]))
    return job


def _deq(c, lin: dict) -> np.ndarray:
    """Real value of a GEMM output: raw accumulators at ``S_a S_w[n]``, or int8 at
    ``(S_out, zp_out)``."""
    if lin.get("raw"):
        return np.asarray(c, dtype=np.float64) * (
            np.float64(lin["scale_a"]) * np.asarray(lin["scale_b"], dtype=np.float64))
    return dequantize(c, lin["scale_out"], lin["zp_out"])


def _quant_in(x, lin: dict, q: dict) -> np.ndarray:
    """The int8 GEMM input: ``x`` divided by the linear's smoothing factors, quantized."""
    s = lin.get("smooth")
    return quantize(x if s is None else x / s, q["scale"], q["zp"])


def _split_heads(y, heads):
    t, c = y.shape
    return np.ascontiguousarray(y.reshape(t, heads, c // heads).transpose(1, 0, 2))


def encode(x0, model: dict, *, layers=None, gemm_runner=None, attention_runner=None,
           gelu_mode=None, rounding: str = "single", trace=None):
    """Run the quantized encoder on the embeddings of several sentences.

    Parameters
    ----------
    x0 : list of numpy.ndarray
        Per sentence, the float ``(T, 384)`` output of the embedding LayerNorm (host).
    model : dict
        The quantized model (``npugen.sim.minilm.quantize_model``): ``heads``, ``eps``,
        ``gelu``, and ``layers``, a list of per-layer dictionaries with ``x`` (``scale``,
        ``zp`` of the layer input), one job template per linear of :data:`LINEARS` (``b``,
        ``bias``, ``zp_a``, ``scale_a``, ``scale_b``, ``scale_out``, ``zp_out``), ``att``
        (``scale_s`` per head, ``scale_out``, ``zp_out`` of the context), ``ln1``, ``ln2``
        (``gamma``, ``beta``), ``h1`` (``scale``, ``zp``: quantization of the FFN input), ``g``
        (``scale``, ``zp``: quantization of the GELU output).
    layers : int, optional
        Run only the first ``layers`` layers (a slice); default all.
    gemm_runner, attention_runner : callable, optional
        See the module docstring; default the golden models.
    gelu_mode : {"float", "ibert"}, optional
        Default ``model["gelu"]``.
    rounding : str
        Requantization rounding of the host's integer GELU requantization.
    trace : dict, optional
        When given, receives per step the list of int8 outputs (``"L<l>.<step>"``).

    Returns
    -------
    list of numpy.ndarray
        Per sentence, the float64 ``(T, 384)`` hidden state after the last layer run.
    """
    gemm_runner = golden_gemm_runner if gemm_runner is None else gemm_runner
    attention_runner = (golden_attention_runner if attention_runner is None
                        else attention_runner)
    gelu_mode = model.get("gelu", "float") if gelu_mode is None else gelu_mode
    heads = int(model["heads"])
    eps = float(model.get("eps", 1e-12))
    h = [np.asarray(x, dtype=np.float64) for x in x0]
    n_layers = len(model["layers"]) if layers is None else int(layers)
    bounds = np.cumsum([0] + [x.shape[0] for x in h])

    def stack(parts):       # every sentence's tokens as the rows of one GEMM job
        return np.concatenate(parts, axis=0)

    def split(c):
        return [np.asarray(c)[bounds[i]:bounds[i + 1]] for i in range(len(h))]

    for li, L in enumerate(model["layers"][:n_layers]):
        def record(step, outs, li=li):
            if trace is not None:
                trace[f"L{li}.{step}"] = outs
        xq = [_quant_in(x, L["q"], L["x"]) for x in h]
        qkv = [split(o) for o in gemm_runner([_job(stack(xq), L[name])
                                              for name in ("q", "k", "v")])]
        qkv = [x for s in range(len(h)) for x in (qkv[0][s], qkv[1][s], qkv[2][s])]
        record("qkv", qkv)
        att = L["att"]
        calls = []
        for s in range(len(h)):
            q, k, v = qkv[3 * s: 3 * s + 3]
            calls.append({
                "q": _split_heads(q, heads), "k": _split_heads(k, heads),
                "v": _split_heads(v, heads),
                "scale_q": float(L["q"]["scale_out"]), "scale_k": float(L["k"]["scale_out"]),
                "scale_v": float(L["v"]["scale_out"]), "zp_v": int(L["v"]["zp_out"]),
                "scale_s": [float(x) for x in att["scale_s"]],
                "scale_out": float(att["scale_out"]), "zp_out": int(att["zp_out"]),
            })
        ctx = [np.asarray(o).transpose(1, 0, 2).reshape(o.shape[1], -1)
               for o in attention_runner(calls)]
        record("att", ctx)
        ao = split(gemm_runner([_job(stack(ctx), L["o"])])[0])
        record("o", ao)
        h1 = [layer_norm(_deq(a, L["o"]) + x,
                         L["ln1"]["gamma"], L["ln1"]["beta"], eps) for a, x in zip(ao, h)]
        h1q = [_quant_in(x, L["f1"], L["h1"]) for x in h1]
        f1 = split(gemm_runner([_job(stack(h1q), L["f1"])])[0])
        record("f1", f1)
        s_f1 = np.float64(L["f1"]["scale_a"]) * np.asarray(L["f1"]["scale_b"], np.float64)
        g = [gelu_int8(f, s_f1, L["g"]["scale"], L["g"]["zp"], smooth=L["f2"].get("smooth"),
                       mode=gelu_mode, rounding=rounding) for f in f1]
        record("gelu", g)
        f2 = split(gemm_runner([_job(stack(g), L["f2"])])[0])
        record("f2", f2)
        h = [layer_norm(_deq(f, L["f2"]) + x,
                        L["ln2"]["gamma"], L["ln2"]["beta"], eps) for f, x in zip(f2, h1)]
    return h
