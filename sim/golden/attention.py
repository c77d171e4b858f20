"""Integer golden model of the fused OSI8 attention unit (``docs/osi8.md``, ``docs/attention.md``).

One head of ``softmax(Q·Kᵀ / sqrt(d)) · V`` in int8, bit-exact with the generated RTL:

1. **Scores** (numerics.md): the exact int32 products ``Q·Kᵀ`` of the symmetric int8 Q and K are
   requantized to int8 with ``(M0_s, sh_s)``, zero point 0, clamp [-128, 127], in the design's
   rounding mode. The factor 1/sqrt(d) (and any temperature) is folded into that multiplier, so
   one score step is worth ``c = S_s`` (osi8.md, inputs).
2. **One query row** (osi8.md, "Datapath for one query row"): the keys stream in tiles of ``B``;
   the running max ``m``, the denominator ``L`` and the numerators ``A_c`` are rescaled through
   the LUT ``E`` when the max grows, and every attended key adds ``e_j = E[m - s_j]`` to ``L``
   and ``e_j · (v_jc - zp_v)`` to ``A_c``. The loop is :func:`npugen.sim.golden.softmax._online_pass`,
   shared with the softmax model.
3. **Output** (osi8.md, "Attention output"): ``q_c = round_div(A_c · 2^G, L)``;
   ``o_c = clamp(zp_o + rshift_round(q_c · M0_o, k), -128, 127)`` with ``k = 31 + G - sh_o``;
   a query with no attended key outputs ``zp_o``.

The probabilities are never rounded to int8: they stay at ``F`` fraction bits inside ``A_c`` and
``L``. All arithmetic runs on Python integers (``A_c · r`` needs ``W_A + F`` bits, beyond
int64); nothing wraps.

This module imports nothing from ``hw``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .gemm import (
    INT8_MAX,
    INT8_MIN,
    MULTIPLIER_MAX,
    MULTIPLIER_MIN,
    SHIFT_MAX,
    SHIFT_MIN,
    _check_rounding,
    _int8_matrix,
    quantize_multiplier,
    requantize,
)
from .softmax import (
    SOFTMAX_F_MAX,
    SOFTMAX_F_MIN,
    SOFTMAX_G_MAX,
    _check_int,
    _lut,
    _online_pass,
)

__all__ = [
    "ATTENTION_K_MIN",
    "ATTENTION_K_MAX",
    "AttentionParams",
    "AttentionRowState",
    "attention_params",
    "calibrate_score_scale",
    "attention_mask",
    "attention_scores",
    "attention_int8",
    "attention_state",
    "attention_rescales",
    "attention_tile_rescales",
    "attention_float",
]

#: Legal range of the output shift ``k = 31 + G - sh_o`` (osi8.md, compile-time constant 2).
ATTENTION_K_MIN, ATTENTION_K_MAX = 1, 62

# Below every int8 score: marks a masked key (and a fully masked tile) in the tile-max arrays.
_MASKED = -1024


# --------------------------------------------------------------------------------------------
# parameters


def _check_real(name, value):
    """A positive, finite real (a scale), returned as a Python float (float32 converts exactly)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, not {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be positive and finite, not {value!r}")
    return value


def _check_multiplier(name, value, allow_zero):
    value = _check_int(name, value)
    if (value == 0 and allow_zero) or MULTIPLIER_MIN <= value <= MULTIPLIER_MAX:
        return value
    zero = "0 or " if allow_zero else ""
    raise ValueError(f"{name} must be {zero}in [2^30, 2^31 - 1] = [{MULTIPLIER_MIN}, "
                     f"{MULTIPLIER_MAX}], not {value}")


@dataclass(frozen=True)
class AttentionParams:
    """Run-time parameters of one attention job: what the parameter block and command carry.

    Every field is checked when the object is made (``TypeError`` for a wrong type,
    ``ValueError`` for a wrong value, one line naming the field). :func:`attention_params`
    derives them from the tensors' scales.

    Parameters
    ----------
    score_multiplier : int
        ``M0_s``: fixed-point multiplier of the score requantization, 0 or in [2^30, 2^31)
        (numerics.md; parameter beat 0). With ``score_shift`` it represents the real multiplier
        ``S_q · S_k / (sqrt(d) · S_s) = M0_s · 2^(sh_s - 31)``; 0 makes every score 0.
    score_shift : int
        ``sh_s`` in [-31, 30] (parameter beat 1).
    c : float
        The LUT scale ``c = S_s``: the real value of one int8 score step, 1/sqrt(d) included
        (osi8.md, inputs); positive and finite. The LUT is ``make_lut(c, F)``; a float32 value
        is converted exactly.
    zp_v : int
        Zero point of V, int8 in [-128, 127] (command bits 95:88). V's real value is
        ``S_v · (v - zp_v)``.
    out_multiplier : int
        ``M0_o`` in [2^30, 2^31) (parameter beat 2): with ``out_shift``,
        ``S_v / S_o = M0_o · 2^(sh_o - 31)`` (osi8.md, compile-time constant 2).
    out_shift : int
        ``sh_o`` (parameter beat 3). The output shift ``k = 31 + G - sh_o`` must lie in
        [1, 62]; it depends on ``G``, so :func:`attention_int8` checks it.
    zp_o : int
        Zero point of the output, int8 in [-128, 127] (command bits 103:96); also the output of
        a query with no attended key.

    Raises
    ------
    TypeError
        If a field has the wrong type (an integer field given a float or a bool, ``c`` not a
        real number).
    ValueError
        If a field is out of its range.
    """

    score_multiplier: int
    score_shift: int
    c: float
    zp_v: int
    out_multiplier: int
    out_shift: int
    zp_o: int

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen dataclass)
        set_("score_multiplier", _check_multiplier("score_multiplier", self.score_multiplier,
                                                   True))
        set_("score_shift", _check_int("score_shift", self.score_shift, SHIFT_MIN, SHIFT_MAX))
        set_("c", _check_real("c", self.c))
        set_("zp_v", _check_int("zp_v", self.zp_v, INT8_MIN, INT8_MAX))
        set_("out_multiplier", _check_multiplier("out_multiplier", self.out_multiplier, False))
        set_("out_shift", _check_int("out_shift", self.out_shift))
        set_("zp_o", _check_int("zp_o", self.zp_o, INT8_MIN, INT8_MAX))

    def output_shift(self, G=16):
        """``k = 31 + G - out_shift``, checked to lie in [1, 62] (osi8.md, constant 2).

        Raises
        ------
        ValueError
            If ``k`` is outside [1, 62] for this ``G``.
        """
        G = _check_int("G", G, 0, SOFTMAX_G_MAX)
        k = 31 + G - self.out_shift
        if not ATTENTION_K_MIN <= k <= ATTENTION_K_MAX:
            raise ValueError(f"out_shift = {self.out_shift} gives k = 31 + G - out_shift = {k} "
                             f"for G = {G}, outside [{ATTENTION_K_MIN}, {ATTENTION_K_MAX}]")
        return k


def attention_params(scale_q, scale_k, scale_v, scale_s, scale_out, d, zp_v=0, zp_o=0):
    """:class:`AttentionParams` of a head from its scales, 1/sqrt(d) folded into the scores.

    - Score multiplier (numerics.md, requantization steps 1-4): every scale is promoted to
      float64 (float32 exactly), then ``r_s = (S_q * S_k) / (sqrt(d) * S_s)`` is evaluated in
      that order in IEEE double (``sqrt`` correctly rounded) and quantized with
      :func:`~npugen.sim.golden.gemm.quantize_multiplier` to ``(M0_s, sh_s)``.
    - LUT scale ``c = S_s``: one int8 score step is worth ``S_s`` (1/sqrt(d) included).
    - Output multiplier ``r_o = S_v / S_o`` quantized the same way to ``(M0_o, sh_o)``.

    Parameters
    ----------
    scale_q, scale_k : float
        Scales of the symmetric int8 Q and K.
    scale_v : float
        Scale of V (zero point ``zp_v``).
    scale_s : float
        Score scale ``S_s``: the real value (after 1/sqrt(d)) of one int8 score step. Without a
        better choice, :func:`calibrate_score_scale`.
    scale_out : float
        Output scale ``S_o``.
    d : int
        Head dimension, at least 1.
    zp_v, zp_o : int
        Zero points of V and of the output, in [-128, 127].

    Returns
    -------
    AttentionParams

    Raises
    ------
    TypeError
        If a scale is not a real number, or ``d``, ``zp_v`` or ``zp_o`` not an integer.
    ValueError
        If a scale is not positive and finite, ``d < 1``, a zero point is outside [-128, 127],
        the score multiplier needs a shift above 30, or ``S_v / S_o`` is below 2^-32 (``M0_o``
        would flush to 0, which the output stage does not accept).
    """
    sq, sk, sv = (_check_real(n, x) for n, x in (("scale_q", scale_q), ("scale_k", scale_k),
                                                  ("scale_v", scale_v)))
    ss = _check_real("scale_s", scale_s)
    so = _check_real("scale_out", scale_out)
    d = _check_int("d", d, 1)
    r_s = (sq * sk) / (math.sqrt(d) * ss)
    try:
        m0_s, sh_s = quantize_multiplier(r_s)
    except ValueError:
        raise ValueError(f"score multiplier scale_q * scale_k / (sqrt(d) * scale_s) = {r_s!r} "
                         f"needs a shift above {SHIFT_MAX}: scale_s is too small") from None
    r_o = sv / so
    try:
        m0_o, sh_o = quantize_multiplier(r_o)
    except ValueError:
        raise ValueError(f"output multiplier scale_v / scale_out = {r_o!r} needs a shift above "
                         f"{SHIFT_MAX}: scale_out is too small") from None
    if m0_o == 0:
        raise ValueError(f"output multiplier scale_v / scale_out = {r_o!r} is below 2^-32: "
                         f"scale_out is too large")
    return AttentionParams(score_multiplier=m0_s, score_shift=sh_s, c=ss, zp_v=zp_v,
                           out_multiplier=m0_o, out_shift=sh_o, zp_o=zp_o)


# --------------------------------------------------------------------------------------------
# operands


def _check_qk(q, k):
    """Q (M, d) and K (N, d), symmetric int8; returned as int64 arrays."""
    q64 = _int8_matrix("q", q, "(M, d)")
    k64 = _int8_matrix("k", k, "(N, d)")
    if q64.shape[1] < 1:
        raise ValueError(f"q must have at least one column (d >= 1), not shape {q64.shape}")
    if k64.shape[1] != q64.shape[1]:
        raise ValueError(f"k must have d = {q64.shape[1]} columns like q, not shape "
                         f"{k64.shape}")
    return q64, k64


def _check_v(v, n, d):
    v64 = _int8_matrix("v", v, "(N, d)")
    if v64.shape != (n, d):
        raise ValueError(f"v must have shape (N, d) = {(n, d)} like k, not {v64.shape}")
    return v64


def _check_params(params):
    if not isinstance(params, AttentionParams):
        raise TypeError(f"params must be an AttentionParams, not {type(params).__name__}")
    return params


def _check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, not {value!r}")
    return bool(value)


def attention_mask(m, n, mask=None, causal=False):
    """The effective (M, N) attend mask: ``mask`` (broadcast over queries) AND causal.

    ``causal`` keeps key ``j`` for query ``i`` only if ``j <= i`` (top-left aligned, PyTorch's
    ``is_causal``); in the RTL it is the command's ``causal`` bit, ANDed with ``tuser``.

    Parameters
    ----------
    m, n : int
        Queries and keys, at least 0.
    mask : array_like of bool, shape (M, N) or (N,), or None
        True = attend (the PyTorch convention); (N,) applies to every query (a padding mask);
        None attends to every key.
    causal : bool
        Apply the causal mask.

    Returns
    -------
    numpy.ndarray of bool, shape (M, N)

    Raises
    ------
    TypeError
        If ``m`` or ``n`` is not an integer or ``causal`` not a bool.
    ValueError
        If ``mask`` is not a bool array of shape (M, N) or (N,).
    """
    m = _check_int("m", m, 0)
    n = _check_int("n", n, 0)
    causal = _check_bool("causal", causal)
    if mask is None:
        out = np.ones((m, n), dtype=bool)
    else:
        arr = np.asarray(mask)
        if arr.dtype != np.bool_:
            raise ValueError(f"mask must be a bool array (True = attend), not an array of dtype "
                             f"{arr.dtype}")
        if arr.shape not in ((m, n), (n,)):
            raise ValueError(f"mask must have shape (M, N) = {(m, n)} or (N,) = {(n,)}, not "
                             f"{arr.shape}")
        out = np.broadcast_to(arr, (m, n)).copy()
    if causal:
        out &= np.arange(n)[None, :] <= np.arange(m)[:, None]
    return out


# --------------------------------------------------------------------------------------------
# scores


def _scores(q64, k64, params, rounding):
    acc = q64 @ k64.T  # exact: |acc| <= 16384 * d, far inside int64
    return requantize(acc, params.score_multiplier, params.score_shift, 0, INT8_MIN, INT8_MAX,
                      rounding)


def attention_scores(q, k, params, rounding="single"):
    """The int8 scores of attention: ``clamp(requantize(Q·Kᵀ, M0_s, sh_s, zp = 0))``.

    numerics.md, requantization, on the exact products of the symmetric int8 Q and K;
    ``"single"``: ``(acc · M0_s + 2^(30 - sh_s)) >> (31 - sh_s)``.

    Parameters
    ----------
    q : array_like of int, shape (M, d)
        Queries, int8 (zero point 0).
    k : array_like of int, shape (N, d)
        Keys, int8 (zero point 0).
    params : AttentionParams
        Only ``score_multiplier`` and ``score_shift`` are used.
    rounding : {"single", "double"}
        The design's requantization rounding; default ``"single"``.

    Returns
    -------
    numpy.ndarray of int8, shape (M, N)

    Raises
    ------
    TypeError
        If ``params`` is not an :class:`AttentionParams`.
    ValueError
        If ``q`` or ``k`` is not a 2-D int8 array, their ``d`` differ, or ``rounding`` is bad.
    """
    params = _check_params(params)
    rounding = _check_rounding(rounding)
    q64, k64 = _check_qk(q, k)
    return _scores(q64, k64, params, rounding)


def calibrate_score_scale(q, k, scale_q, scale_k, d=None):
    """A score scale ``S_s`` for when none is given: the largest real score maps to 127.

    ``S_s = max|Q·Kᵀ| · S_q · S_k / sqrt(d) / 127``, evaluated left to right in float64 from the
    exact integer maximum (over every (query, key) pair, masks ignored). When every product is
    0 the scores are all 0 whatever ``S_s`` (the attention is uniform); the fallback is then
    ``S_q · S_k / sqrt(d)``, the scale at which one score step is one accumulator step (the
    score multiplier is exactly 1, the finest scale that can make a difference).

    Parameters
    ----------
    q : array_like of int, shape (M, d)
        Queries, int8 (zero point 0).
    k : array_like of int, shape (N, d)
        Keys, int8 (zero point 0).
    scale_q, scale_k : float
        Their scales, positive and finite.
    d : int or None
        Head dimension of the 1/sqrt(d) factor; None (the default) takes ``q.shape[1]``. When
        given it must equal ``q.shape[1]``.

    Returns
    -------
    float
        ``S_s``, positive and finite.

    Raises
    ------
    TypeError, ValueError
        For bad operands or scales, or a ``d`` different from ``q.shape[1]``.
    """
    q64, k64 = _check_qk(q, k)
    sq = _check_real("scale_q", scale_q)
    sk = _check_real("scale_k", scale_k)
    if d is None:
        d = q64.shape[1]
    d = _check_int("d", d, 1)
    if d != q64.shape[1]:
        raise ValueError(f"d must equal the {q64.shape[1]} columns of q, not {d}")
    acc = q64 @ k64.T
    amax = int(np.abs(acc).max()) if acc.size else 0
    if amax == 0:
        return sq * sk / math.sqrt(d)
    return amax * sq * sk / math.sqrt(d) / 127


# --------------------------------------------------------------------------------------------
# attention


class AttentionRowState(NamedTuple):
    """State of one query row after every key (osi8.md, datapath steps 1-3).

    Attributes
    ----------
    m : int or None
        Running maximum of the attended scores; None when no key is attended.
    L : int
        Denominator, units of 2^-F; 0 when no key is attended. At most ``N · 2^F`` (fits
        ``W_L`` bits).
    A : tuple of int, length d
        Numerators ``A_c``, units of 2^-F; all 0 when no key is attended. ``|A_c| <= 255 · L``
        (fits ``W_A`` signed bits).
    rescales : int
        ``R``: how many tiles raised the max (t > m with m valid).
    """

    m: int | None
    L: int
    A: tuple
    rescales: int


def _check_osi8(F, B, G):
    F = _check_int("F", F, SOFTMAX_F_MIN, SOFTMAX_F_MAX)
    B = _check_int("B", B, 1)
    G = _check_int("G", G, 0, SOFTMAX_G_MAX)
    return F, B, G


def _rows(q, k, v, params, F, B, mask, causal, rounding):
    """Validate everything, then yield ``(i, _State)`` per query row."""
    params = _check_params(params)
    rounding = _check_rounding(rounding)
    q64, k64 = _check_qk(q, k)
    v64 = _check_v(v, k64.shape[0], q64.shape[1])
    keep = attention_mask(q64.shape[0], k64.shape[0], mask, causal)
    scores = _scores(q64, k64, params, rounding).astype(np.int64)
    lut = _lut(params.c, F)
    values = (v64 - params.zp_v).tolist()  # v_jc - zp_v in [-255, 255]
    full = keep.all(axis=1)
    states = []
    for i, row in enumerate(scores.tolist()):
        valid = None if full[i] else keep[i].tolist()
        states.append(_online_pass(row, valid, lut, F, B, values))
    return states, q64.shape[1]


def attention_int8(q, k, v, params, F=24, B=16, G=16, mask=None, causal=False,
                   rounding="single"):
    """OSI8 int8 attention of one head, bit-exact with the generated RTL.

    Scores as :func:`attention_scores`; then, per query row, osi8.md's "Datapath for one query
    row" over the attended keys in tiles of ``B`` (a fully masked tile is skipped; a rescale
    ``x = rshift_round(x · E[t - m], F)`` of ``L`` and every ``A_c`` when a tile max ``t``
    exceeds the max ``m``; ``L += E[m - s_j]``, ``A_c += E[m - s_j] · (v_jc - zp_v)``), with the
    LUT ``make_lut(params.c, F)``; and its "Attention output":
    ``q_c = round_div(A_c · 2^G, L)``,
    ``o_c = clamp(zp_o + rshift_round(q_c · M0_o, 31 + G - sh_o), -128, 127)``. A query with no
    attended key outputs ``zp_o`` in every lane.

    With ``N`` attended keys and ``R`` max updates the error against the exact attention on the
    int8 scores is at most ``0.5 + M · (2^-(G+1) + 510 · (N + 1 + 3R) · 2^-(F+1))`` LSB,
    ``M = S_v / S_o`` (osi8.md, error bound).

    Parameters
    ----------
    q : array_like of int, shape (M, d)
        Queries, int8 (zero point 0).
    k : array_like of int, shape (N, d)
        Keys, int8 (zero point 0).
    v : array_like of int, shape (N, d)
        Values, int8 with zero point ``params.zp_v``.
    params : AttentionParams
        Multipliers, shifts, LUT scale and zero points (:func:`attention_params`).
    F : int, optional
        LUT fraction bits, in [8, 30]; default 24.
    B : int, optional
        Key tile width, at least 1; default 16. Part of the result (where the rescales happen).
    G : int, optional
        Quotient fraction bits, in [0, 61]; default 16. ``31 + G - params.out_shift`` must lie
        in [1, 62].
    mask : array_like of bool, shape (M, N) or (N,), or None
        True = attend; (N,) applies to every query. None attends to every key.
    causal : bool
        Query ``i`` attends key ``j`` only if ``j <= i`` (top-left aligned), ANDed with
        ``mask``.
    rounding : {"single", "double"}
        Requantization rounding of the scores; default ``"single"``.

    Returns
    -------
    numpy.ndarray of int8, shape (M, d)

    Raises
    ------
    TypeError
        If ``params`` is not an :class:`AttentionParams`, ``F``, ``B`` or ``G`` not an integer,
        or ``causal`` not a bool.
    ValueError
        If ``q``, ``k`` or ``v`` is not a 2-D int8 array of matching shapes, ``mask`` is not a
        bool array of shape (M, N) or (N,), a parameter is out of range, or
        ``31 + G - params.out_shift`` is outside [1, 62]. Each message names the argument.
    """
    F, B, G = _check_osi8(F, B, G)
    params = _check_params(params)
    kshift = params.output_shift(G)
    states, d = _rows(q, k, v, params, F, B, mask, causal, rounding)
    out = np.full((len(states), d), params.zp_o, dtype=np.int64)
    m0, zp_o = params.out_multiplier, params.zp_o
    half = 1 << (kshift - 1)
    for i, st in enumerate(states):
        if st.m is None:
            continue  # no attended key: zp_o (no division by zero)
        L2 = 2 * st.L
        for ch, a in enumerate(st.A):
            qc = ((a << (G + 1)) + st.L) // L2  # round_div(A_c * 2^G, L)
            o = zp_o + ((qc * m0 + half) >> kshift)  # rshift_round(q_c * M0_o, k)
            out[i, ch] = min(max(o, INT8_MIN), INT8_MAX)
    return out.astype(np.int8)


def attention_state(q, k, v, params, F=24, B=16, mask=None, causal=False, rounding="single"):
    """Per query row, the state after every key: ``m``, ``L``, ``A_c`` and ``R``.

    The same computation as :func:`attention_int8` before its output stage, for tests that
    check the RTL's registers and widths (``L`` fits ``W_L``, ``A_c`` fits ``W_A``).

    Parameters
    ----------
    q, k, v, params, F, B, mask, causal, rounding
        As :func:`attention_int8`.

    Returns
    -------
    list of AttentionRowState, length M

    Raises
    ------
    TypeError, ValueError
        As :func:`attention_int8`.
    """
    F = _check_int("F", F, SOFTMAX_F_MIN, SOFTMAX_F_MAX)
    B = _check_int("B", B, 1)
    states, d = _rows(q, k, v, params, F, B, mask, causal, rounding)
    return [AttentionRowState(st.m, st.L, tuple(st.A) if st.m is not None else (0,) * d,
                              st.rescales) for st in states]


# --------------------------------------------------------------------------------------------
# rescale counts, for the cycle model


def _check_scores2d(scores):
    arr = np.asarray(scores)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"scores must hold int8 values in [-128, 127], not an array of dtype "
                         f"{arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"scores must be a 2-D (M, N) array, not shape {arr.shape}")
    if arr.size and (int(arr.min()) < INT8_MIN or int(arr.max()) > INT8_MAX):
        bad = (arr < INT8_MIN) | (arr > INT8_MAX)
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"scores must hold int8 values in [-128, 127]; scores[{idx[0]}, "
                         f"{idx[1]}] = {arr[idx]}")
    return arr.astype(np.int64)


def _row_rescales(scores, keep, B):
    """(rows, tiles) bool: whether the tile raises the max of the row (t > m, m valid)."""
    rows, n = scores.shape
    tiles = -(-n // B)
    if rows == 0 or tiles == 0:
        return np.zeros((rows, max(tiles - 1, 0)), dtype=bool)
    s = np.where(keep, scores, _MASKED)
    pad = tiles * B - n
    if pad:
        s = np.concatenate([s, np.full((rows, pad), _MASKED, dtype=s.dtype)], axis=1)
    tmax = s.reshape(rows, tiles, B).max(axis=2)  # _MASKED for a fully masked tile
    before = np.maximum.accumulate(tmax, axis=1)[:, :-1]  # m before tile t (t >= 1)
    return (before > _MASKED) & (tmax[:, 1:] > before)


def attention_rescales(q, k, params, B=16, mask=None, causal=False, rounding="single"):
    """``R`` per query row: how many tiles raise the row's max (the ``rescales`` of osi8.md).

    A tile rescales query ``i`` when the max ``t`` of its attended scores exceeds the running
    max ``m`` of the earlier tiles, ``m`` being valid (some earlier tile had an attended key).
    The first tile with an attended key sets ``m`` and is not counted; a fully masked tile never
    counts. Equal to the ``rescales`` of :func:`attention_state`; independent of ``F`` and ``G``.

    Parameters
    ----------
    q, k, params, B, mask, causal, rounding
        As :func:`attention_int8` (V is not needed).

    Returns
    -------
    numpy.ndarray of int64, shape (M,)
        ``R`` in [0, min(255, ceil(N / B) - 1)].

    Raises
    ------
    TypeError, ValueError
        As :func:`attention_int8`.
    """
    B = _check_int("B", B, 1)
    params = _check_params(params)
    rounding = _check_rounding(rounding)
    q64, k64 = _check_qk(q, k)
    keep = attention_mask(q64.shape[0], k64.shape[0], mask, causal)
    scores = _scores(q64, k64, params, rounding).astype(np.int64)
    return _row_rescales(scores, keep, B).sum(axis=1).astype(np.int64)


def attention_tile_rescales(scores, mask, B, q_block, *, causal=False):
    """Per query block, the number of tiles at which some query of the block rescales.

    For the cycle model of the RTL, which holds ``q_block`` query rows and rescales them
    together. Query block ``b`` is queries ``b·q_block … min((b+1)·q_block, M) - 1``; tile
    ``t`` is keys ``t·B … min((t+1)·B, N) - 1``. The tile counts for the block when, for at
    least one query ``i`` of the block, the max ``t_i`` of the tile's scores attended by ``i``
    exceeds ``i``'s running max ``m_i`` over the earlier tiles, ``m_i`` being valid (``i``
    attended some key of an earlier tile) — exactly the rescale condition of osi8.md step 2
    (``t > m`` with ``m`` valid). Tile 0 never counts; a tile fully masked for ``i`` never
    counts for ``i``. Bounded by ``ceil(N/B) - 1`` and by the sum of the block's per-query
    ``R`` (:func:`attention_rescales`).

    Parameters
    ----------
    scores : array_like of int, shape (M, N)
        int8 scores (:func:`attention_scores`).
    mask : array_like of bool, shape (M, N) or (N,), or None
        True = attend; None attends to every key.
    B : int
        Key tile width, at least 1.
    q_block : int
        Queries per block, at least 1.
    causal : bool, keyword-only
        AND the causal mask (``j <= i``) into ``mask``.

    Returns
    -------
    numpy.ndarray of int64, shape (ceil(M / q_block),)

    Raises
    ------
    TypeError
        If ``B`` or ``q_block`` is not an integer or ``causal`` not a bool.
    ValueError
        If ``scores`` is not a 2-D int8 array, ``mask`` not a bool array of shape (M, N) or
        (N,), or ``B`` or ``q_block`` below 1.
    """
    s = _check_scores2d(scores)
    B = _check_int("B", B, 1)
    q_block = _check_int("q_block", q_block, 1)
    rows, n = s.shape
    keep = attention_mask(rows, n, mask, causal)
    blocks = -(-rows // q_block)
    out = np.zeros(blocks, dtype=np.int64)
    # a few blocks at a time, so the (rows, N) temporaries stay small for long rows
    step = q_block * max(1, (1 << 20) // max(1, n * q_block))
    for r0 in range(0, rows, step):
        r1 = min(r0 + step, rows)
        hit = _row_rescales(s[r0:r1], keep[r0:r1], B)  # (r1 - r0, tiles - 1)
        for b0 in range(r0, r1, q_block):
            out[b0 // q_block] = int(hit[b0 - r0:min(b0 + q_block, r1) - r0].any(axis=0).sum())
    return out


# --------------------------------------------------------------------------------------------
# float reference


def attention_float(q, k, v, scale_q, scale_k, scale_v, mask=None, causal=False, zp_v=0):
    """Float64 reference: ``softmax(Q·Kᵀ / sqrt(d)) · V`` on the dequantized inputs.

    ``Q = S_q · q``, ``K = S_k · k``, ``V = S_v · (v - zp_v)``; masked pairs are left out of
    the softmax (not given a finite penalty). A query with no attended key gives 0.0 (what the
    unit's ``zp_o`` means), not NaN. For accuracy tables: the int8 result estimates
    ``zp_o + attention_float(...) / S_o``.

    Parameters
    ----------
    q, k, v : array_like of int
        As :func:`attention_int8`.
    scale_q, scale_k, scale_v : float
        Scales of Q, K and V, positive and finite.
    mask, causal
        As :func:`attention_int8`.
    zp_v : int
        Zero point of V, in [-128, 127]; default 0.

    Returns
    -------
    numpy.ndarray of float64, shape (M, d)
        The real-valued attention output.

    Raises
    ------
    TypeError, ValueError
        For bad operands, scales, mask or zero point.
    """
    q64, k64 = _check_qk(q, k)
    v64 = _check_v(v, k64.shape[0], q64.shape[1])
    sq = _check_real("scale_q", scale_q)
    sk = _check_real("scale_k", scale_k)
    sv = _check_real("scale_v", scale_v)
    zp_v = _check_int("zp_v", zp_v, INT8_MIN, INT8_MAX)
    keep = attention_mask(q64.shape[0], k64.shape[0], mask, causal)
    d = q64.shape[1]
    x = (q64.astype(np.float64) * sq) @ (k64.astype(np.float64) * sk).T / math.sqrt(d)
    x = np.where(keep, x, -np.inf)
    alive = keep.any(axis=1)
    top = np.where(alive, x.max(axis=1, initial=-np.inf), 0.0)
    p = np.where(keep, np.exp(x - top[:, None]), 0.0)
    total = p.sum(axis=1)
    p = p / np.where(alive, total, 1.0)[:, None]
    return p @ ((v64 - zp_v).astype(np.float64) * sv)
