"""Integer golden model of the int8 GEMM job and its requantization.

Every function here implements one rule of ``docs/numerics.md`` and nothing else. All arithmetic
is exact: int8 operands are widened to int64 before they are multiplied, and wherever an
intermediate could leave the int64 range (wide accumulators, the left shift of the ``double``
rounding mode) the computation runs on Python integers held in NumPy object arrays. Nothing ever
wraps silently.

This module imports nothing from ``hw``: it is the independent reference the generated hardware is
checked against, and the source of the requantization constants handed to the generator.

External references, named where each rule is implemented:

- TFLite ``QuantizeMultiplier`` (``tensorflow/lite/kernels/internal/quantization_util.cc``):
  real multiplier to ``(M0, shift)``.
- TFLite int8 FULLY_CONNECTED / CONV_2D ``Prepare`` (``PopulateConvolutionQuantizationParams``):
  the effective scale ``S_a * S_w[n] / S_out`` computed in double from float32 scales.
- TFLite ``MultiplyByQuantizedMultiplier`` built with ``TFLITE_SINGLE_ROUNDING``
  (``tensorflow/lite/kernels/internal/common.h``): the ``single`` rounding mode.
- gemmlowp ``SaturatingRoundingDoublingHighMul`` and ``RoundingDivideByPOT``
  (``gemmlowp/fixedpoint/fixedpoint.h``), as composed by TFLite's classic
  ``MultiplyByQuantizedMultiplier``: the ``double`` rounding mode.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = [
    "INT8_MIN",
    "INT8_MAX",
    "INT32_MIN",
    "INT32_MAX",
    "SHIFT_MIN",
    "SHIFT_MAX",
    "MULTIPLIER_MIN",
    "MULTIPLIER_MAX",
    "ROUNDING_MODES",
    "matmul_int8",
    "real_multiplier",
    "quantize_multiplier",
    "effective_scale",
    "multiply_by_quantized_multiplier",
    "requantize",
    "fold_zero_point",
    "acc_width_for",
    "check_accumulator_bound",
    "gemm_int8",
]

INT8_MIN, INT8_MAX = -128, 127
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
#: Legal range of the requantization shift ``sh`` (numerics.md, step 4).
SHIFT_MIN, SHIFT_MAX = -31, 30
#: Legal non-zero multipliers ``M0`` lie in ``[MULTIPLIER_MIN, MULTIPLIER_MAX]``; 0 is also legal.
MULTIPLIER_MIN, MULTIPLIER_MAX = 1 << 30, (1 << 31) - 1
#: The rounding modes of the requantizer; ``"single"`` is the default.
ROUNDING_MODES = ("single", "double")

# Working values whose magnitude stays below this bound are computed in int64; anything larger
# runs on Python integers. The margin (2^62, not 2^63) keeps negation and the +1 of rounding
# constants safely inside int64.
_INT64_SAFE = 1 << 62


# --------------------------------------------------------------------------------------------
# validation helpers


def _first_bad(arr, bad):
    """Return ``(index, value)`` of the first ``True`` in ``bad`` for an error message."""
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    where = f"[{', '.join(map(str, idx))}]" if idx else ""
    return where, arr[idx] if idx else arr[()]


def _int_array(name, value):
    """``value`` as an array of exact integers: int64, or object (Python int) if it needs more.

    Raises ``ValueError`` naming ``name`` if ``value`` holds anything but integers (bools and
    floats included, even integral floats: a float accumulator is a bug upstream).
    """
    arr = np.asarray(value)
    if arr.dtype.kind in "iu":
        if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
            return arr.astype(object)  # elements become Python ints
        return arr.astype(np.int64, copy=False)
    if arr.dtype == object:
        flat = arr.ravel()
        for v in flat:
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
                raise ValueError(f"{name} must hold integers, found {v!r}")
        out = np.empty(arr.shape, dtype=object)
        out.ravel()[:] = [int(v) for v in flat]  # normalise NumPy integers to Python ints
        return out
    raise ValueError(f"{name} must hold integers, not an array of dtype {arr.dtype}")


def _check_range(name, arr, lo, hi, rule):
    """Raise ``ValueError`` unless every element of ``arr`` lies in ``[lo, hi]``.

    The message reads ``"<name> <rule> [lo, hi]; <name>[i, j] = v"`` for the first offender.
    """
    if arr.size == 0:
        return
    bad = (arr < lo) | (arr > hi)
    if np.any(bad):
        where, v = _first_bad(arr, bad)
        raise ValueError(f"{name} {rule} [{lo}, {hi}]; {name}{where} = {v}")


def _int8_matrix(name, value, dims):
    """Validate an int8 matrix operand and return it widened to int64."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu" and arr.dtype != object:
        raise ValueError(
            f"{name} must hold int8 values in [-128, 127], not an array of dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D {dims} array, not shape {arr.shape}")
    arr = _int_array(name, arr)
    _check_range(name, arr, INT8_MIN, INT8_MAX, "must hold int8 values in")
    return arr.astype(np.int64, copy=False)


def _check_int(name, value, lo=None, hi=None):
    """Validate one integer parameter: ``TypeError`` for a wrong type, ``ValueError`` for range."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        lo_s = "-inf" if lo is None else str(lo)
        hi_s = "inf" if hi is None else str(hi)
        raise ValueError(f"{name} must be in [{lo_s}, {hi_s}], not {value}")
    return value


def _check_rounding(rounding):
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"rounding must be 'single' or 'double', not {rounding!r}")
    return rounding


def _check_activation(zp_out, act_min, act_max):
    zp_out = _check_int("zp_out", zp_out, INT8_MIN, INT8_MAX)
    act_min = _check_int("act_min", act_min, INT8_MIN, INT8_MAX)
    act_max = _check_int("act_max", act_max, INT8_MIN, INT8_MAX)
    if act_min > act_max:
        raise ValueError(f"act_min must not exceed act_max, got act_min={act_min}, "
                         f"act_max={act_max}")
    return zp_out, act_min, act_max


def _requant_params(multiplier, shift):
    """Validate per-channel ``(M0, sh)``: scalars or 1-D arrays, returned as int64 arrays."""
    m = _int_array("multiplier", multiplier)
    s = _int_array("shift", shift)
    for name, arr in (("multiplier", m), ("shift", s)):
        if arr.ndim > 1:
            raise ValueError(f"{name} must be a scalar or a 1-D per-channel array, "
                             f"not shape {arr.shape}")
    if m.size:
        bad = (m != 0) & ((m < MULTIPLIER_MIN) | (m > MULTIPLIER_MAX))
        if np.any(bad):
            where, v = _first_bad(m, bad)
            raise ValueError(f"multiplier must be 0 or in [2^30, 2^31 - 1] = "
                             f"[{MULTIPLIER_MIN}, {MULTIPLIER_MAX}]; multiplier{where} = {v}")
    _check_range("shift", s, SHIFT_MIN, SHIFT_MAX, "must be in")
    return m.astype(np.int64), s.astype(np.int64)


def _check_channels(acc_shape, m, s):
    """Check ``(M0, sh)`` broadcast along the last axis of the accumulators."""
    for name, arr in (("multiplier", m), ("shift", s)):
        if arr.ndim == 1 and arr.shape[0] != 1 and len(acc_shape) >= 1 \
                and arr.shape[0] != acc_shape[-1]:
            raise ValueError(f"{name} has {arr.shape[0]} channels but acc has "
                             f"{acc_shape[-1]} along its last axis")
    if m.ndim == 1 and s.ndim == 1 and m.shape[0] != s.shape[0] and 1 not in (m.shape[0],
                                                                            s.shape[0]):
        raise ValueError(f"multiplier has {m.shape[0]} channels but shift has {s.shape[0]}")


def _max_abs(arr):
    if arr.size == 0:
        return 0
    return max(abs(int(arr.min())), abs(int(arr.max())))


# --------------------------------------------------------------------------------------------
# GEMM


def matmul_int8(a, b):
    """Exact product of two int8 matrices.

    Parameters
    ----------
    a : array_like of int, shape (M, K)
        Activations. Any integer dtype is accepted; every value must lie in [-128, 127].
    b : array_like of int, shape (K, N)
        Weights, same rule.

    Returns
    -------
    numpy.ndarray of int64, shape (M, N)
        ``sum_k a[m, k] * b[k, n]``, exact (numerics.md, GEMM). Each product is at most 2^14 in
        magnitude, so int64 holds any K below 2^49; nothing wraps.

    Raises
    ------
    ValueError
        If ``a`` or ``b`` is not a 2-D integer array, holds a value outside [-128, 127] (the
        message names the argument and the first offending element), or if the inner dimensions
        differ.
    """
    a64 = _int8_matrix("a", a, "(M, K)")
    b64 = _int8_matrix("b", b, "(K, N)")
    if a64.shape[1] != b64.shape[0]:
        raise ValueError(f"a has shape {a64.shape} and b has shape {b64.shape}: a's K = "
                         f"{a64.shape[1]} columns must equal b's {b64.shape[0]} rows")
    return a64 @ b64  # NumPy integer matmul: exact, no BLAS, no float


def fold_zero_point(bias, b, zp_a):
    """Fold the activation zero point into the bias, as the host driver does.

    ``bias'[n] = bias[n] - zp_a * sum_k b[k, n]`` (numerics.md, GEMM), so that
    ``(A - zp_a) @ B + bias == A @ B + bias'`` exactly.

    Parameters
    ----------
    bias : array_like of int, shape (N,), or None
        int32 bias (real scale ``S_a * S_w[n]``). ``None`` means zero.
    b : array_like of int, shape (K, N)
        int8 weights.
    zp_a : int
        Activation zero point in [-128, 127].

    Returns
    -------
    numpy.ndarray of int64, shape (N,)
        The folded bias. It can exceed the int32 range (by up to ``128 * 128 * K``).

    Raises
    ------
    TypeError
        If ``zp_a`` is not an integer.
    ValueError
        If ``zp_a`` is outside [-128, 127], ``b`` is not an int8 matrix, or ``bias`` is not a
        length-N vector of int32 values.
    """
    zp_a = _check_int("zp_a", zp_a, INT8_MIN, INT8_MAX)
    b64 = _int8_matrix("b", b, "(K, N)")
    n = b64.shape[1]
    if bias is None:
        bias64 = np.zeros(n, dtype=np.int64)
    else:
        bias64 = _int_array("bias", bias)
        if bias64.shape != (n,):
            raise ValueError(f"bias must have shape ({n},) to match b's N = {n} columns, "
                             f"not {bias64.shape}")
        _check_range("bias", bias64, INT32_MIN, INT32_MAX, "must hold int32 values in")
        bias64 = bias64.astype(np.int64)
    return bias64 - zp_a * b64.sum(axis=0)


def acc_width_for(k_max):
    """Accumulator width the hardware needs for dot products of up to ``k_max`` terms.

    ``W = max(32, bit_length(16384 * k_max) + 1)`` (numerics.md, GEMM): the largest product is
    (-128) * (-128) = 2^14, so ``k_max`` of them need ``bit_length(2^14 * k_max) + 1`` signed
    bits. ``k_max = 131071`` fits 32 bits; ``k_max = 131072`` needs 33.

    Parameters
    ----------
    k_max : int
        Largest K the configuration accepts, at least 1.

    Returns
    -------
    int
        The accumulator width W in bits.

    Raises
    ------
    TypeError
        If ``k_max`` is not an integer.
    ValueError
        If ``k_max`` is below 1.
    """
    k_max = _check_int("k_max", k_max, 1)
    return max(32, (16384 * k_max).bit_length() + 1)


def check_accumulator_bound(bias_folded, b, acc_width):
    """Reject a job whose accumulators could overflow, whatever its activations.

    The driver rule of numerics.md: for every output channel n,
    ``|bias'[n]| + 128 * sum_k |b[k, n]| <= 2^(W-1) - 1``. The left side bounds every partial
    sum the array can form in any order (each ``|a * b|`` is at most ``128 * |b|``), so an
    accepted job never wraps. The bound is evaluated with Python integers.

    Parameters
    ----------
    bias_folded : array_like of int, shape (N,)
        The folded bias ``bias'`` (:func:`fold_zero_point`); any magnitude.
    b : array_like of int, shape (K, N)
        int8 weights.
    acc_width : int
        Accumulator width W in bits, at least 2.

    Raises
    ------
    TypeError
        If ``acc_width`` is not an integer.
    ValueError
        If ``acc_width`` is below 2, the shapes disagree, or a column can overflow; the message
        names the first such column and its bound.
    """
    acc_width = _check_int("acc_width", acc_width, 2)
    b64 = _int8_matrix("b", b, "(K, N)")
    bias = _int_array("bias_folded", bias_folded)
    n = b64.shape[1]
    if bias.shape != (n,):
        raise ValueError(f"bias_folded must have shape ({n},) to match b's N = {n} columns, "
                         f"not {bias.shape}")
    limit = (1 << (acc_width - 1)) - 1
    colabs = np.abs(b64).sum(axis=0)  # exact in int64: at most 128 * K per column
    for col in range(n):
        need = abs(int(bias[col])) + 128 * int(colabs[col])
        if need > limit:
            raise ValueError(
                f"column {col} can overflow the {acc_width}-bit accumulator: |bias'[{col}]| + "
                f"128 * sum_k |B[k, {col}]| = {need} > 2^{acc_width - 1} - 1 = {limit}")


# --------------------------------------------------------------------------------------------
# scales and multipliers


def _scale_array(name, value, allow_vector):
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real number or array of them, not {value!r}")
    if arr.ndim > (1 if allow_vector else 0):
        raise ValueError(f"{name} must be a {'scalar or 1-D array' if allow_vector else 'scalar'}"
                         f", not shape {arr.shape}")
    # float32 -> float64 is exact: this is the "promote before multiplying" of numerics.md.
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr) | (arr <= 0)
    if np.any(bad):
        where, v = _first_bad(arr, bad)
        raise ValueError(f"{name} must be positive and finite; {name}{where} = {v}")
    return arr


def real_multiplier(scale_a, scale_w, scale_out):
    """Real requantization multiplier ``r = S_a * S_w[n] / S_out``, in double precision.

    float32 scales (as models store them) are promoted to float64 *before* the product, then
    ``(S_a * S_w) / S_out`` is evaluated left to right in IEEE double, exactly as TFLite's
    ``PopulateConvolutionQuantizationParams`` and FULLY_CONNECTED ``Prepare`` do
    (numerics.md, requantization step 1). A float32 product would round to 24 bits and can give
    a different ``M0``.

    Parameters
    ----------
    scale_a : float or numpy.float32
        Activation scale.
    scale_w : float, numpy.float32, or array_like of float, shape (N,)
        Weight scale, per tensor or per output channel.
    scale_out : float or numpy.float32
        Output scale.

    Returns
    -------
    float or numpy.ndarray of float64, shape (N,)
        ``r``, a float when ``scale_w`` is a scalar.

    Raises
    ------
    TypeError
        If a scale is not a real number.
    ValueError
        If a scale is not positive and finite, or has the wrong number of dimensions.
    """
    sa = _scale_array("scale_a", scale_a, False)
    sw = _scale_array("scale_w", scale_w, True)
    so = _scale_array("scale_out", scale_out, False)
    r = (sa * sw) / so
    return float(r) if r.ndim == 0 else r


def _quantize_one(r):
    if isinstance(r, (bool, np.bool_)) or not isinstance(r, numbers.Real):
        raise TypeError(f"real multiplier must be a real number, not {r!r}")
    r = float(r)  # exact for np.float32
    if not math.isfinite(r) or r < 0:
        raise ValueError(f"real multiplier must be finite and non-negative, not {r!r}")
    q, e = math.frexp(r)  # r = q * 2^e, q in [0.5, 1) (or 0)
    x = math.ldexp(q, 31)  # exact: q * 2^31
    m0 = math.floor(x)
    if x - m0 >= 0.5:  # round half away from zero (TfLiteRound = std::round); x >= 0 here
        m0 += 1
    if m0 == 1 << 31:
        m0, e = 1 << 30, e + 1
    if e < -31:  # below 2^-32 every product shifts out: flush the channel to the zero point
        m0, e = 0, 0
    if e > SHIFT_MAX:
        raise ValueError(
            f"real multiplier {r!r} needs shift {e}, outside the supported range "
            f"[{SHIFT_MIN}, {SHIFT_MAX}]: the requantization scale must be below 2^30 "
            f"(TFLite would silently saturate it; npugen rejects it)")
    return m0, e


def quantize_multiplier(r):
    """Fixed-point multiplier and shift of a real multiplier, as TFLite's ``QuantizeMultiplier``.

    numerics.md, requantization steps 2-4:

    1. ``q, e = frexp(r)``; ``M0 = round_half_away(q * 2^31)``;
    2. if ``M0 == 2^31``: ``M0 = 2^30``, ``e += 1``;
    3. if ``e < -31``: ``M0 = 0``, ``e = 0`` (the channel flushes to the zero point); ``sh = e``;
    4. a shift outside [-31, 30] is rejected (TFLite instead saturates shifts above 30).

    Then ``r ~= M0 * 2^(sh - 31)`` with ``M0`` in [2^30, 2^31) or 0.

    Parameters
    ----------
    r : float or array_like of float
        Non-negative real multiplier(s), normally from :func:`real_multiplier`. A float32 value
        is promoted to double exactly.

    Returns
    -------
    (int, int) or (numpy.ndarray of int64, numpy.ndarray of int64)
        ``(M0, sh)``; arrays of the shape of ``r`` when ``r`` is an array.

    Raises
    ------
    TypeError
        If ``r`` is not a real number.
    ValueError
        If ``r`` is negative, not finite, or needs a shift above 30 (``r`` of about 2^30 or
        more).
    """
    if isinstance(r, np.ndarray) or isinstance(r, (list, tuple)):
        arr = np.asarray(r)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"real multiplier must be a real number, not {r!r}")
        pairs = [_quantize_one(float(v)) for v in arr.ravel()]
        m0 = np.array([p[0] for p in pairs], dtype=np.int64).reshape(arr.shape)
        sh = np.array([p[1] for p in pairs], dtype=np.int64).reshape(arr.shape)
        return m0, sh
    return _quantize_one(r)


def effective_scale(scale_a, scale_w, scale_out):
    """Per-channel requantization ``(M0, sh)`` of a layer, straight from its three scales.

    ``quantize_multiplier(real_multiplier(scale_a, scale_w, scale_out))``: float32 scales are
    promoted to double before ``S_a * S_w[n] / S_out`` is formed (numerics.md step 1, TFLite
    ``PopulateConvolutionQuantizationParams``), then each channel goes through TFLite's
    ``QuantizeMultiplier`` (steps 2-4).

    Parameters
    ----------
    scale_a : float or numpy.float32
        Activation scale.
    scale_w : float, numpy.float32, or array_like of float, shape (N,)
        Weight scale, per tensor or per output channel.
    scale_out : float or numpy.float32
        Output scale.

    Returns
    -------
    multiplier : numpy.ndarray of int64
        ``M0``, 0 or in [2^30, 2^31); shape (N,) for per-channel ``scale_w``, 0-d otherwise.
    shift : numpy.ndarray of int64
        ``sh`` in [-31, 30], same shape.

    Raises
    ------
    TypeError, ValueError
        As :func:`real_multiplier` and :func:`quantize_multiplier`.
    """
    r = real_multiplier(scale_a, scale_w, scale_out)
    m0, sh = quantize_multiplier(np.asarray(r, dtype=np.float64))
    return np.asarray(m0, dtype=np.int64), np.asarray(sh, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# requantization


def _trunc_div_pow2(t, n):
    """``t / 2^n`` truncated toward zero (C integer division), for int64 or object arrays."""
    return np.where(t >= 0, t >> n, -((-t) >> n))


def _rescale(acc, m, s, rounding):
    """Exact ``acc * M0 * 2^(sh - 31)`` rounded per ``rounding``; int64 or object array."""
    amax, mmax = _max_abs(acc), _max_abs(m)
    if rounding == "single":
        bound = amax * mmax + (1 << (30 - int(s.min()) if s.size else 30))
    else:
        lsh = max(int(s.max()), 0) if s.size else 0
        bound = ((amax << lsh) * mmax) + (1 << 30)
    dt = np.int64 if bound < _INT64_SAFE else object
    # Work on flat 1-D arrays: NumPy returns bare Python ints from 0-d object arithmetic.
    shape = np.broadcast_shapes(acc.shape, m.shape, s.shape)
    acc, m, s = (np.broadcast_to(v, shape).reshape(-1).astype(dt) for v in (acc, m, s))
    return _rescale_flat(acc, m, s, rounding, dt).reshape(shape)


def _rescale_flat(acc, m, s, rounding, dt):
    one = np.ones((), dtype=dt)
    if rounding == "single":
        # TFLite MultiplyByQuantizedMultiplier, TFLITE_SINGLE_ROUNDING:
        #   total_shift = 31 - shift; round = 1 << (total_shift - 1);
        #   result = (x * M0 + round) >> total_shift   (64-bit, arithmetic shift)
        total = 31 - s
        return (acc * m + (one << (total - 1))) >> total
    # classic TFLite / gemmlowp, with x = acc << left_shift kept exact (no int32 wrap)
    left = np.maximum(s, 0)
    right = np.maximum(-s, 0)
    x = acc << left
    # gemmlowp SaturatingRoundingDoublingHighMul(x, M0): the saturating case (both operands
    # INT32_MIN) cannot occur because M0 >= 0.
    p = x * m
    nudge = np.where(p >= 0, one << 30, one - (one << 30))
    h = _trunc_div_pow2(p + nudge, 31)
    # gemmlowp RoundingDivideByPOT(h, right)
    mask = (one << right) - one
    rem = h & mask
    thr = (mask >> 1) + (h < 0).astype(dt)
    return (h >> right) + (rem > thr).astype(dt)


def multiply_by_quantized_multiplier(acc, multiplier, shift, rounding="single"):
    """Exact scaled accumulator ``y`` before the zero point and the clamp.

    ``single`` (TFLite ``MultiplyByQuantizedMultiplier`` built with ``TFLITE_SINGLE_ROUNDING``):
    ``y = (acc * M0 + 2^(30 - sh)) >> (31 - sh)``, one rounding with ties toward +infinity.
    The LiteRT interpreter's reference FULLY_CONNECTED kernel agrees with it except on exact
    ties (that kernel rounds ``acc * r`` in float64, ties away from zero; see
    tests/test_golden_xcheck.py).

    ``double`` (gemmlowp, classic TFLite and CMSIS-NN): ``x = acc << max(sh, 0)`` exact and wide
    (where int32 would overflow, TFLite is undefined and this is the exact extension);
    ``h = SaturatingRoundingDoublingHighMul(x, M0)`` (ties toward +infinity);
    ``y = RoundingDivideByPOT(h, max(-sh, 0))`` (ties away from zero). The PyPI LiteRT
    interpreter's reference CONV_2D kernel computes exactly this, ties included.

    Parameters
    ----------
    acc : array_like of int, any shape (..., N)
        Accumulators. Any integer magnitude is accepted (W-bit accumulators may be wider than
        32 bits).
    multiplier : int or array_like of int, shape (N,)
        ``M0`` per output channel (last axis of ``acc``): 0 or in [2^30, 2^31).
    shift : int or array_like of int, shape (N,)
        ``sh`` per output channel, in [-31, 30].
    rounding : {"single", "double"}
        The requantizer's rounding mode.

    Returns
    -------
    numpy.ndarray
        ``y`` with the broadcast shape of ``acc`` and the parameters: int64 when every
        intermediate fits comfortably in int64, otherwise an object array of Python ints.

    Raises
    ------
    ValueError
        For a bad ``rounding``, a non-integer ``acc``, or a multiplier, shift or channel count
        out of range.
    """
    rounding = _check_rounding(rounding)
    acc_arr = _int_array("acc", acc)
    m, s = _requant_params(multiplier, shift)
    _check_channels(acc_arr.shape, m, s)
    y = _rescale(acc_arr, m, s, rounding)
    if y.dtype == object and (y.size == 0 or _max_abs(y) <= np.iinfo(np.int64).max):
        y = y.astype(np.int64)
    return y


def requantize(acc, multiplier, shift, zp_out=0, act_min=-128, act_max=127, rounding="single"):
    """Requantize accumulators to int8 (numerics.md, requantization).

    ``out = clamp(y + zp_out, act_min, act_max)`` where ``y`` is
    :func:`multiply_by_quantized_multiplier` of ``acc`` in the chosen rounding mode:

    - ``"single"``: ``y = (acc * M0 + 2^(30 - sh)) >> (31 - sh)`` (TFLite
      ``MultiplyByQuantizedMultiplier``, single rounding).
    - ``"double"``: ``y = RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(
      acc << max(sh, 0), M0), max(-sh, 0))`` (gemmlowp), with the left shift exact and wide.

    All intermediates are exact (Python ints where int64 could overflow).

    Parameters
    ----------
    acc : array_like of int, shape (..., N)
        Accumulators, any integer magnitude.
    multiplier : int or array_like of int, shape (N,)
        ``M0`` per output channel (the last axis of ``acc``): 0 or in [2^30, 2^31).
    shift : int or array_like of int, shape (N,)
        ``sh`` per output channel, in [-31, 30].
    zp_out : int
        Output zero point in [-128, 127].
    act_min, act_max : int
        Fused-activation clamp, a sub-range of [-128, 127] with ``act_min <= act_max`` (none,
        ReLU and ReLU6 all become such a clamp).
    rounding : {"single", "double"}
        Rounding mode; ``"single"`` is the default.

    Returns
    -------
    numpy.ndarray of int8
        Broadcast shape of ``acc`` and the per-channel parameters.

    Raises
    ------
    TypeError
        If ``zp_out``, ``act_min`` or ``act_max`` is not an integer.
    ValueError
        If ``rounding`` is not ``"single"`` or ``"double"``; ``acc`` holds non-integers;
        ``multiplier`` is neither 0 nor in [2^30, 2^31); ``shift`` is outside [-31, 30]; the
        channel counts disagree; ``zp_out``, ``act_min`` or ``act_max`` is outside [-128, 127];
        or ``act_min > act_max``.
    """
    rounding = _check_rounding(rounding)
    zp_out, act_min, act_max = _check_activation(zp_out, act_min, act_max)
    y = multiply_by_quantized_multiplier(acc, multiplier, shift, rounding)
    flat = y.reshape(-1)  # 1-D: 0-d object arithmetic would fall back to bare Python ints
    out = np.minimum(np.maximum(flat + zp_out, act_min), act_max)
    return out.astype(np.int64).astype(np.int8).reshape(y.shape)


def gemm_int8(a, b, bias=None, zp_a=0, multiplier=None, shift=None, zp_out=0, act_min=-128,
              act_max=127, rounding="single", *, acc_width=None):
    """Reference result of one int8 GEMM job.

    ``C = A @ B + bias - zp_a * colsum(B)`` (exact int64; numerics.md, GEMM), then, if
    ``multiplier`` is given, :func:`requantize` per output channel; otherwise the raw
    accumulators are returned.

    Parameters
    ----------
    a : array_like of int, shape (M, K)
        int8 activations, real value ``S_a * (a - zp_a)``.
    b : array_like of int, shape (K, N)
        int8 symmetric weights.
    bias : array_like of int, shape (N,), or None
        int32 bias at scale ``S_a * S_w[n]``; ``None`` means zero.
    zp_a : int
        Activation zero point in [-128, 127], folded into the bias (:func:`fold_zero_point`).
    multiplier, shift : int or array_like of int, shape (N,), or None
        Requantization ``(M0, sh)`` (:func:`effective_scale`). Both or neither.
    zp_out, act_min, act_max, rounding
        As :func:`requantize`; used only when ``multiplier`` is given.
    acc_width : int, optional
        If given, the job is first checked with :func:`check_accumulator_bound` for a W-bit
        accumulator, as the driver does.

    Returns
    -------
    numpy.ndarray, shape (M, N)
        int8 if requantized, else int64 raw accumulators.

    Raises
    ------
    ValueError
        For invalid operands or parameters (see :func:`matmul_int8`, :func:`fold_zero_point`,
        :func:`requantize`), for only one of ``multiplier`` / ``shift``, or for a job that
        could overflow ``acc_width`` bits.
    """
    if (multiplier is None) != (shift is None):
        raise ValueError("multiplier and shift must be given together (or both omitted for "
                         "raw accumulators)")
    product = matmul_int8(a, b)
    folded = fold_zero_point(bias, b, zp_a)
    if acc_width is not None:
        check_accumulator_bound(folded, b, acc_width)
    acc = product + folded[np.newaxis, :]
    if multiplier is None:
        return acc
    return requantize(acc, multiplier, shift, zp_out, act_min, act_max, rounding)
