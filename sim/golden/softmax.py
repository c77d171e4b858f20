"""Integer golden model of the OSI8 streaming softmax (``docs/osi8.md``).

OSI8 computes an int8 softmax of one row of int8 scores in two passes. The first pass streams
the row once, in tiles of ``B`` keys, keeping only a running maximum ``m`` and a denominator
``L`` that is rescaled through the LUT whenever the maximum grows (online softmax); the second
pass turns each score into ``round(256 * E[m - s_j] / L) - 128``. Every rule here is one line of
osi8.md, named where it is implemented; the generated RTL must match this model integer for
integer, for the same ``B`` (the tile order is part of the result).

All arithmetic is exact and runs on Python integers: the rescale product ``L * r`` needs up to
``W_L + F`` bits (64 at the defaults), beyond int64. Nothing wraps. The LUT is computed
in decimal arithmetic from the exact binary value of the float64 scale, so the same ``c``
gives the same table on every machine.

The first pass (:func:`_online_pass`) also carries the attention numerators ``A_c`` of
osi8.md, so the attention model (issue 5) reuses the same loop; the standalone softmax passes
no values.

This module imports nothing from ``hw``: it is the independent reference the generated hardware
is checked against, and the source of the LUT handed to the generator.
"""

from __future__ import annotations

import decimal
import functools
import math
import numbers
from typing import NamedTuple

import numpy as np

__all__ = [
    "LUT_SIZE",
    "SOFTMAX_F_MIN",
    "SOFTMAX_F_MAX",
    "SOFTMAX_G_MAX",
    "make_lut",
    "rshift_round",
    "round_div",
    "widths",
    "softmax_state",
    "softmax_int8",
]

#: Entries of the exponential LUT: one per score difference ``m - s_j`` in [0, 255].
LUT_SIZE = 256
#: Accepted range of the LUT fraction bits ``F``: a sanity range, not a recommendation. F >= 8
#: gives the table at least the output's 8 fraction bits; above 30 an entry no longer fits a
#: 32-bit word. osi8.md's bound stays within 1 LSB up to N = 213 keys at F = 16, and up to
#: N = 32768 (0.76 LSB) at the default F = 24.
SOFTMAX_F_MIN, SOFTMAX_F_MAX = 8, 30
#: Largest quotient fraction bits ``G``: with the largest requantization shift (sh = 30), the
#: output shift ``k = 31 + G - sh`` must stay at most 62 (osi8.md, compile-time constant 2).
SOFTMAX_G_MAX = 61

_INT8_MIN, _INT8_MAX = -128, 127
# Decimal digits of the exponentials in make_lut (osi8.md asks for at least 50).
_LUT_DIGITS = 60
# Enough digits to hold c * k exactly: a float64 has at most 767 significant decimal digits,
# and k < 2^8 adds at most 3.
_EXACT_DIGITS = 800


# --------------------------------------------------------------------------------------------
# validation


def _check_int(name, value, lo=None, hi=None):
    """One integer parameter: ``TypeError`` for a wrong type, ``ValueError`` for its range."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        lo_s = "-inf" if lo is None else str(lo)
        hi_s = "inf" if hi is None else str(hi)
        raise ValueError(f"{name} must be in [{lo_s}, {hi_s}], not {value}")
    return value


def _check_scale(c):
    """The softmax scale ``c = S_s``: a positive, finite real, returned as a Python float."""
    if isinstance(c, (bool, np.bool_)) or not isinstance(c, numbers.Real):
        raise TypeError(f"c must be a real number, not {c!r}")
    c = float(c)  # exact for float32 and float64; an int converts exactly below 2^53
    if not math.isfinite(c) or c <= 0:
        raise ValueError(f"c must be positive and finite, not {c!r}")
    return c


def _check_scores(scores, mask):
    """Validate ``scores`` (1-D or 2-D int8 values) and ``mask``; return int64 and bool arrays.

    Both come back 2-D (a 1-D row becomes one row); ``mask`` is ``None`` when absent.
    """
    arr = np.asarray(scores)
    if arr.dtype.kind not in "iu" and arr.dtype != object and arr.size:  # [] is float64
        raise ValueError(f"scores must hold int8 values in [-128, 127], not an array of dtype "
                         f"{arr.dtype}")
    if arr.ndim not in (1, 2):
        raise ValueError(f"scores must be a 1-D row (N,) or a 2-D array of rows (rows, N), "
                         f"not shape {arr.shape}")
    if arr.dtype == object:
        for v in arr.ravel():
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
                raise ValueError(f"scores must hold integers, found {v!r}")
    if arr.size:
        bad = (arr < _INT8_MIN) | (arr > _INT8_MAX)
        if np.any(bad):
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"scores must hold int8 values in [-128, 127]; "
                             f"scores[{', '.join(map(str, idx))}] = {arr[idx]}")
    arr64 = arr.astype(np.int64)
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype != np.bool_:
            raise ValueError(f"mask must be a bool array (True = attend), not an array of dtype "
                             f"{m.dtype}")
        if m.shape != arr.shape:
            raise ValueError(f"mask must have the shape of scores {arr.shape}, not {m.shape}")
        mask = m if m.ndim == 2 else m[None, :]
    rows = arr64 if arr.ndim == 2 else arr64[None, :]
    return rows, mask


# --------------------------------------------------------------------------------------------
# rounding helpers (osi8.md, "Datapath for one query row")


def rshift_round(x, n):
    """Rounding arithmetic right shift: ``(x + 2^(n-1)) >> n``.

    osi8.md, rounding helpers: ties go toward +inf (``0.5 -> 1``, ``-0.5 -> 0``,
    ``-1.5 -> -1``). This is the LUT rescale ``L = rshift_round(L * r, F)`` and the attention
    output shift.

    Parameters
    ----------
    x : int
        Any integer (Python or NumPy), any magnitude.
    n : int
        Shift, at least 1.

    Returns
    -------
    int
        ``floor(x / 2^n + 1/2)``, a Python int.

    Raises
    ------
    TypeError
        If ``x`` or ``n`` is not an integer.
    ValueError
        If ``n`` is below 1.
    """
    x = _check_int("x", x)
    n = _check_int("n", n, 1)
    return (x + (1 << (n - 1))) >> n


def round_div(n, d):
    """Exact rounding division: ``floor((2n + d) / (2d))`` for ``d > 0``.

    osi8.md, rounding helpers: the quotient ``n / d`` rounded to nearest, ties toward +inf
    (``1/2 -> 1``, ``-1/2 -> 0``). This is the softmax output divider and the attention
    ``q_c = round_div(A_c * 2^G, L)``.

    Parameters
    ----------
    n : int
        Numerator, any integer.
    d : int
        Denominator, at least 1.

    Returns
    -------
    int
        ``floor(n / d + 1/2)``, a Python int.

    Raises
    ------
    TypeError
        If ``n`` or ``d`` is not an integer.
    ValueError
        If ``d`` is below 1.
    """
    n = _check_int("n", n)
    d = _check_int("d", d, 1)
    return (2 * n + d) // (2 * d)


# --------------------------------------------------------------------------------------------
# compile-time constants (osi8.md, "Compile-time constants")


@functools.lru_cache(maxsize=64)
def _lut(c, F):
    """The LUT as a tuple (cached: the tables are immutable and cost a few milliseconds)."""
    scale = decimal.Decimal(1 << F)
    c_exact = decimal.Decimal(c)  # the exact binary value of the float64
    exact = decimal.Context(prec=_EXACT_DIGITS, rounding=decimal.ROUND_HALF_EVEN,
                            Emin=-999999, Emax=999999, traps=[decimal.Overflow,
                                                              decimal.InvalidOperation])
    work = decimal.Context(prec=_LUT_DIGITS, rounding=decimal.ROUND_HALF_EVEN,
                           Emin=-999999, Emax=999999, traps=[decimal.Overflow,
                                                             decimal.InvalidOperation])
    table = [1 << F]  # exp(0) = 1 exactly
    for k in range(1, LUT_SIZE):
        x = exact.multiply(c_exact, k)  # exact: enough digits for any float64 times k < 256
        e = work.exp(exact.minus(x))  # correctly rounded to _LUT_DIGITS digits
        v = exact.multiply(e, scale)  # exact
        table.append(int(v.to_integral_value(rounding=decimal.ROUND_HALF_EVEN, context=exact)))
    return tuple(table)


def make_lut(c, F=24):
    """The OSI8 exponential LUT for score scale ``c`` and ``F`` fraction bits.

    ``E[k] = round_half_even(2^F * exp(-c * k))`` for ``k = 0 ... 255`` (osi8.md, compile-time
    constant 1). ``c * k`` is formed exactly from the exact binary value of the float64 ``c``;
    ``exp`` is evaluated in 60-digit decimal arithmetic (Python ``decimal``, correctly rounded,
    in a private context: the caller's decimal context has no effect), then scaled by ``2^F``
    and rounded half to even. The table is therefore identical on every machine.

    Parameters
    ----------
    c : float
        Real score scale ``S_s`` (osi8.md: the 1/sqrt(d) factor and any temperature are already
        folded in); positive and finite. numpy.float32 is converted exactly.
    F : int, optional
        LUT fraction bits, in [8, 30]; default 24.

    Returns
    -------
    list of int, length 256
        Python ints. ``E[0] = 2^F``; ``E`` is non-increasing; every entry is in
        ``[0, 2^F]`` and so fits ``F + 1`` unsigned bits. Entries reach 0 once
        ``exp(-c * k) < 2^-(F+1)``.

    Raises
    ------
    TypeError
        If ``c`` is not a real number or ``F`` not an integer.
    ValueError
        If ``c`` is not positive and finite, or ``F`` is outside [8, 30].
    """
    c = _check_scale(c)
    F = _check_int("F", F, SOFTMAX_F_MIN, SOFTMAX_F_MAX)
    return list(_lut(c, F))


def widths(F=24, N_max=32768, G=16):
    """Register widths of the OSI8 datapath (osi8.md, compile-time constant 3).

    Parameters
    ----------
    F : int, optional
        LUT fraction bits, in [8, 30]; default 24.
    N_max : int, optional
        Longest supported row in keys, at least 1; default 32768.
    G : int, optional
        Quotient fraction bits of the attention divider, in [0, 61]; default 16. It is
        validated here for the generator's sake but enters neither width below.

    Returns
    -------
    dict
        ``W_L``: bits of the unsigned denominator ``L``,
        ``ceil(log2(N_max * 2^F + 1))`` (``L <= N_max * 2^F``: each term is at most
        ``E[0] = 2^F`` and a rescale never increases ``L``). ``W_A``: bits of a signed
        attention numerator ``A_c``, ``ceil(log2(255 * N_max * 2^F + 1)) + 1``
        (``|v - zp_v| <= 255``). 40 and 48 at the defaults.

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is out of its range.
    """
    F = _check_int("F", F, SOFTMAX_F_MIN, SOFTMAX_F_MAX)
    N_max = _check_int("N_max", N_max, 1)
    _check_int("G", G, 0, SOFTMAX_G_MAX)
    # ceil(log2(y + 1)) == y.bit_length() for y >= 0
    return {"W_L": (N_max << F).bit_length(), "W_A": (255 * N_max << F).bit_length() + 1}


# --------------------------------------------------------------------------------------------
# the first pass (osi8.md, "Datapath for one query row", steps 1-3)


class _State(NamedTuple):
    m: int | None  # running maximum, None while no key has been seen (the "valid" flag)
    L: int  # denominator
    A: list | None  # attention numerators A_c, or None for the standalone softmax
    rescales: int  # number of max updates t > m (the R of the error bound)


def _online_pass(row, valid, lut, F, B, values=None):
    """Stream one row in tiles of ``B`` keys: online max, LUT rescale, accumulation.

    osi8.md, datapath steps 1-3, in tile order. For each tile of ``B`` consecutive positions:
    ``t`` is the max of its unmasked scores (a fully masked tile is skipped); if ``t > m`` the
    state is rescaled by ``r = E[t - m]`` with ``rshift_round(. * r, F)`` and ``m = t``; then
    each unmasked key adds ``e_j = E[m - s_j]`` to ``L`` and ``e_j * values[j][c]`` to
    ``A_c``.

    Parameters
    ----------
    row : sequence of int, length N
        int8 scores (already validated).
    valid : sequence of bool, length N, or None
        True where the key is attended; ``None`` means every key.
    lut : sequence of int, length 256
        The table of :func:`make_lut`.
    F : int
        LUT fraction bits (the rescale shift).
    B : int
        Tile width in keys, at least 1.
    values : sequence of sequence of int, shape (N, d), or None
        Per key, the value vector ``v_jc - zp_v`` of attention; ``None`` for the softmax.

    Returns
    -------
    _State
        ``(m, L, A, rescales)``; ``m`` is ``None`` and ``L`` 0 when no key is unmasked.
    """
    n = len(row)
    m = None
    L = 0
    A = None if values is None else [0] * (len(values[0]) if n else 0)
    rescales = 0
    half = 1 << (F - 1)
    for start in range(0, n, B):
        stop = min(start + B, n)
        keys = range(start, stop) if valid is None else [j for j in range(start, stop)
                                                          if valid[j]]
        if not keys:
            continue  # step 1: a fully masked tile is skipped
        t = max(row[j] for j in keys)
        if m is None:
            m = t
        elif t > m:  # step 2: the max grows; rescale by r = E[t - m]
            r = lut[t - m]
            L = (L * r + half) >> F  # rshift_round(L * r, F)
            if A is not None:
                A = [(a * r + half) >> F for a in A]
            m = t
            rescales += 1
        # step 3: m - s_j is in [0, 255] here (m >= every score seen so far)
        if A is None:
            L += sum(lut[m - row[j]] for j in keys)
        else:
            for j in keys:
                e = lut[m - row[j]]
                L += e
                vj = values[j]
                for ch in range(len(A)):
                    A[ch] += e * vj[ch]
    return _State(m, L, A, rescales)


def _params(c, F, B):
    c = _check_scale(c)
    F = _check_int("F", F, SOFTMAX_F_MIN, SOFTMAX_F_MAX)
    B = _check_int("B", B, 1)
    return _lut(c, F), F, B


def softmax_state(row, c, F=24, B=16, mask=None):
    """The first-pass state ``(m, L)`` of one row: what the second pass divides by.

    osi8.md, datapath steps 1-3 (see :func:`softmax_int8`), for the RTL tests that check the
    state registers and for the second pass of :func:`softmax_int8`.

    Parameters
    ----------
    row : array_like of int, shape (N,)
        int8 scores; any integer dtype with values in [-128, 127].
    c : float
        Score scale ``S_s``, positive and finite.
    F : int, optional
        LUT fraction bits, in [8, 30]; default 24.
    B : int, optional
        Tile width in keys, at least 1; default 16.
    mask : array_like of bool, shape (N,), or None
        True where the key is attended (the PyTorch convention); ``None`` attends to all.

    Returns
    -------
    tuple (m, L)
        ``m``: the row maximum over unmasked keys, a Python int in [-128, 127], or ``None``
        when no key is unmasked. ``L``: the denominator, a Python int in
        ``[2^F, N * 2^F]`` (0 when no key is unmasked), in units of ``2^-F``.

    Raises
    ------
    TypeError
        If ``c``, ``F`` or ``B`` has the wrong type.
    ValueError
        If ``row`` is not 1-D int8 data, ``mask`` is not a bool array of its shape, or a
        parameter is out of range.
    """
    lut, F, B = _params(c, F, B)
    arr = np.asarray(row)
    if arr.ndim != 1:
        raise ValueError(f"row must be a 1-D array of scores (N,), not shape {arr.shape}")
    rows, masks = _check_scores(arr, mask)
    valid = None if masks is None else masks[0].tolist()
    st = _online_pass(rows[0].tolist(), valid, lut, F, B)
    return st.m, st.L


def softmax_int8(scores, c, F=24, B=16, mask=None):
    """OSI8 int8 softmax of each row, bit-exact with the generated RTL.

    First pass (osi8.md, datapath steps 1-3): the row is streamed in tiles of ``B`` keys; the
    state is the running max ``m`` and the denominator ``L = sum_j E[m - s_j]`` (units of
    ``2^-F``), rescaled with ``L = rshift_round(L * E[t - m], F)`` whenever a tile max ``t``
    exceeds ``m``. Masked keys are skipped (never a finite additive constant); a fully masked
    tile changes nothing. Second pass (osi8.md, standalone softmax):
    ``y_j = clamp(round_div(E[m - s_j] * 2^8, L) - 128, -128, 127)``. Masked positions and
    every position of a fully masked row output -128.

    The output is int8 with scale 1/256 and zero point -128 (TFLite convention): ``y + 128``
    estimates ``256 * p_j``; p = 1 saturates at 127. With ``R`` max updates over ``N`` unmasked
    keys, ``|y + 128 - 256 p| <= 0.5 + (N + 1 + 3R) / 2^(F-7)`` LSB, except where
    ``256 p > 255.5`` (then at most 1); osi8.md, error bound.

    Parameters
    ----------
    scores : array_like of int, shape (N,) or (rows, N)
        int8 scores, one row or a batch of independent rows; any integer dtype with values in
        [-128, 127]. Any zero point: only differences of scores matter, so it cancels.
    c : float
        Score scale ``S_s`` (real score ``S_s * (s - zp_s)``), positive and finite.
    F : int, optional
        LUT fraction bits, in [8, 30]; default 24.
    B : int, optional
        Tile width in keys, at least 1; default 16. Part of the result: it sets where the max
        updates (and their roundings) happen.
    mask : array_like of bool, same shape as ``scores``, or None
        True where the key is attended (the PyTorch convention); ``None`` attends to all.

    Returns
    -------
    numpy.ndarray of int8, same shape as ``scores``
        The probabilities ``y``, in [-128, 127].

    Raises
    ------
    TypeError
        If ``c`` is not a real number, or ``F`` or ``B`` not an integer.
    ValueError
        If ``scores`` is not 1-D or 2-D int8 data, ``mask`` is not a bool array of its shape,
        or ``c``, ``F`` or ``B`` is out of range. Each message names the argument.
    """
    lut, F, B = _params(c, F, B)
    rows, masks = _check_scores(scores, mask)
    n_rows = rows.shape[0]
    m = np.zeros(n_rows, dtype=np.int64)
    L = np.ones(n_rows, dtype=np.int64)
    alive = np.zeros(n_rows, dtype=bool)  # rows with at least one unmasked key
    valid_rows = [None] * n_rows if masks is None else masks.tolist()
    for i, (row, valid) in enumerate(zip(rows.tolist(), valid_rows)):
        st = _online_pass(row, valid, lut, F, B)
        if st.m is not None:
            m[i], L[i], alive[i] = st.m, st.L, True
    # Second pass, all rows at once in int64: E * 2^9 <= 2^(F + 10) and L <= N * 2^F stay far
    # below 2^62. Masked keys (whose score may exceed m) and dead rows are overwritten below.
    e = np.array(lut, dtype=np.int64)[np.clip(m[:, None] - rows, 0, LUT_SIZE - 1)]
    y = (e * 512 + L[:, None]) // (2 * L[:, None]) - 128  # round_div(E * 2^8, L) - 128
    y = np.clip(y, _INT8_MIN, _INT8_MAX)
    keep = alive[:, None] if masks is None else alive[:, None] & masks
    out = np.where(keep, y, _INT8_MIN)
    return out.reshape(np.shape(scores)).astype(np.int8)
