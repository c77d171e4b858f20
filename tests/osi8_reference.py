"""A second, independent implementation of the OSI8 integer spec, for tests only.

Written from docs/osi8.md (with docs/softmax.md, docs/attention.md and, for the attention
scores, docs/numerics.md), not from ``sim/golden``: it shares no code and deliberately no
technique with the golden model, so that a rounding change made the same way in the golden model
and the RTL cannot hide in both references.

How it differs from the golden model:

- Every rounding step is exact rational arithmetic: the quantity to round is formed as a
  :class:`fractions.Fraction` (``L·r / 2^F``, ``E·2^8 / L``, ``A_c·2^G / L``,
  ``q_c·M0 / 2^k``) and rounded by looking at its fractional part, with the tie rule the spec
  states (ties toward +inf for ``rshift_round`` and ``round_div``, half to even for the LUT,
  numerics.md's rules for the score requantization). No ``(x + 2^(n-1)) >> n`` or
  ``(2n + d) // 2d`` formula is used, and every exact tie is counted in a
  :class:`collections.Counter` (``ties``), so a test can prove that its vectors really hit them.
- The LUT comes from interval arithmetic in integer fixed point: rigorous lower and upper bounds
  of ``exp(-c)`` (argument halving, an alternating Taylor series in exact fractions, repeated
  squaring with directed rounding), raised to the power ``k`` by repeated multiplication with
  directed rounding; ``E[k]`` is the half-to-even rounding of ``2^F·exp(-c·k)``, accepted only
  when both bounds round to the same integer (more bits otherwise). No ``decimal``, no float
  ``exp``.
- The first pass is two-phase: phase 1 computes every tile's unmasked maximum and, from them,
  the whole schedule of running maxima (which tiles rescale, by which LUT entry); phase 2 walks
  that schedule segment by segment, a segment being the run of tiles sharing one running
  maximum, whose keys are summed exactly before the segment's single rescale.

Public functions work on Python lists and ints (NumPy arrays are accepted and converted).
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from functools import lru_cache

HALF = Fraction(1, 2)

__all__ = ["lut", "softmax_state", "softmax_row", "softmax", "attention_scores",
           "attention_mask", "attention_row", "attention", "round_half_up", "round_half_even",
           "round_half_away"]


# ---------------------------------------------------------------------------------------------
# Rounding of exact rationals


def _split(q: Fraction) -> tuple[int, Fraction]:
    """``(floor(q), q - floor(q))``."""
    fl = q.numerator // q.denominator
    return fl, q - fl


def round_half_up(q: Fraction, ties: Counter | None = None, kind: str = "") -> int:
    """Nearest integer to ``q``, an exact half going toward +inf (osi8.md's rounding helpers)."""
    fl, frac = _split(Fraction(q))
    if frac == HALF:
        if ties is not None:
            ties[kind] += 1
            ties[kind + ("_neg" if q < 0 else "_pos")] += 1
        return fl + 1
    return fl + 1 if frac > HALF else fl


def round_half_even(q: Fraction) -> int:
    """Nearest integer to ``q``, an exact half going to the even neighbour."""
    fl, frac = _split(Fraction(q))
    if frac == HALF:
        return fl if fl % 2 == 0 else fl + 1
    return fl + 1 if frac > HALF else fl


def round_half_away(q: Fraction, ties: Counter | None = None, kind: str = "") -> int:
    """Nearest integer to ``q``, an exact half going away from zero."""
    q = Fraction(q)
    fl, frac = _split(q)
    if frac == HALF:
        if ties is not None:
            ties[kind] += 1
        return fl + 1 if q > 0 else fl
    return fl + 1 if frac > HALF else fl


def _rescale(x: int, r: int, F: int, ties: Counter | None, kind: str) -> int:
    """osi8.md's ``rshift_round(x·r, F)``: the exact ``x·r / 2^F``, rounded half up."""
    q = Fraction(x * r, 2 ** F)
    if ties is not None and q - _split(q)[0] >= HALF:
        ties[kind + "_up"] += 1  # rounds up: a plain shift would give one less
    return round_half_up(q, ties, kind)


# ---------------------------------------------------------------------------------------------
# The exponential LUT, by interval arithmetic


def _exp_neg_bounds(x: Fraction, P: int) -> tuple[int, int]:
    """Integers ``lo, hi`` with ``lo / 2^P <= exp(-x) <= hi / 2^P``, for a rational ``x >= 0``."""
    j = 0
    while x / 2 ** j > Fraction(1, 4):
        j += 1
    y = x / 2 ** j
    # Alternating series with decreasing terms (y <= 1/4): consecutive partial sums bracket the
    # limit. Stop when a term is far below 2^-P.
    term, partial, n = Fraction(1), Fraction(1), 0
    while True:
        n += 1
        term = term * (-y) / n
        previous, partial = partial, partial + term
        if abs(term) * 2 ** (P + 8) < 1:
            break
    lo_q, hi_q = min(previous, partial), max(previous, partial)
    lo = lo_q.numerator * 2 ** P // lo_q.denominator            # floor
    hi = -((-hi_q.numerator * 2 ** P) // hi_q.denominator)       # ceil
    for _ in range(j):  # exp(-x) = exp(-y)^(2^j), squaring with directed rounding
        lo = lo * lo >> P
        hi = -((-hi * hi) >> P)
    return lo, hi


@lru_cache(maxsize=None)
def _lut_cached(c_exact: Fraction, F: int) -> tuple[int, ...]:
    P = 256
    while True:
        base_lo, base_hi = _exp_neg_bounds(c_exact, P)
        lo, hi = 2 ** P, 2 ** P  # exp(-c·0) = 1 exactly
        table = []
        ok = True
        for k in range(256):
            if k:
                lo = lo * base_lo >> P
                hi = -((-hi * base_hi) >> P)
            a = round_half_even(Fraction(lo * 2 ** F, 2 ** P))
            b = round_half_even(Fraction(hi * 2 ** F, 2 ** P))
            if a != b:  # the interval straddles a rounding boundary: more bits
                ok = False
                break
            table.append(a)
        if ok:
            return tuple(table)
        P *= 2


def lut(c: float, F: int) -> list[int]:
    """osi8.md compile-time constant 1: ``E[k] = round_half_even(2^F·exp(-c·k))``, k = 0…255.

    ``c`` is taken at the exact binary value of the float64 (a float32 converts exactly).
    """
    return list(_lut_cached(Fraction(float(c)), F))


# ---------------------------------------------------------------------------------------------
# First pass: the two-phase schedule


def _tiles(n: int, B: int) -> list[range]:
    return [range(a, min(a + B, n)) for a in range(0, n, B)]


def _schedule(row: list[int], mask: list[bool], B: int) -> list[tuple[range, int, int | None]]:
    """Phase 1: for each non-empty tile, ``(positions, running max after it, rescale index)``.

    The rescale index is ``t - m`` when the tile's max ``t`` exceeds the valid running max ``m``
    (osi8.md datapath step 2), else None. Fully masked tiles are left out (step 1).
    """
    out = []
    m = None
    for tile in _tiles(len(row), B):
        live = [row[j] for j in tile if mask[j]]
        if not live:
            continue
        t = max(live)
        index = None
        if m is None:
            m = t
        elif t > m:
            index, m = t - m, t
        out.append((tile, m, index))
    return out


def _segments(schedule):
    """Group consecutive tiles of one running max: ``[(m, rescale index or None, [tiles])]``."""
    segs: list[tuple[int, int | None, list[range]]] = []
    for tile, m, index in schedule:
        if segs and index is None:
            segs[-1][2].append(tile)
        else:
            segs.append((m, index, [tile]))
    return segs


def _first_pass(row, mask, values, zp_v, E, F, B, ties):
    """``(m, L, A, R)``; ``values`` is None (softmax) or a list of per-key value rows."""
    d = 0 if values is None else len(values[0]) if len(values) else 0
    L, A, m, R = 0, [0] * d, None, 0
    for seg_m, index, tiles in _segments(_schedule(row, mask, B)):
        if index is not None:  # the segment opens with a rescale of the old state
            r = E[index]
            R += 1
            L = _rescale(L, r, F, ties, "rescale_L")
            A = [_rescale(a, r, F, ties, "rescale_A") for a in A]
        m = seg_m
        keys = [j for tile in tiles for j in tile if mask[j]]
        L += sum(E[m - row[j]] for j in keys)
        for ch in range(d):
            A[ch] += sum(E[m - row[j]] * (int(values[j][ch]) - zp_v) for j in keys)
    return m, L, A, R


def _ints(a) -> list:
    return [int(x) for x in a]


def softmax_state(row, c, F=24, B=16, mask=None, ties=None, E=None):
    """``(m, L, R)`` after the first pass; ``(None, 0, 0)`` when no key is attended."""
    row = _ints(row)
    mask = [True] * len(row) if mask is None else [bool(x) for x in mask]
    E = lut(c, F) if E is None else E
    m, L, _, R = _first_pass(row, mask, None, 0, E, F, B, ties)
    return m, L, R


def softmax_row(row, c, F=24, B=16, mask=None, ties=None, E=None) -> list[int]:
    """osi8.md standalone softmax of one row: ``clamp(round_div(E[m - s]·2^8, L) - 128)``."""
    row = _ints(row)
    mask = [True] * len(row) if mask is None else [bool(x) for x in mask]
    E = lut(c, F) if E is None else E
    m, L, _, _ = _first_pass(row, mask, None, 0, E, F, B, ties)
    if m is None:
        return [-128] * len(row)
    out = []
    for s, keep in zip(row, mask):
        if not keep:
            out.append(-128)
            continue
        y = round_half_up(Fraction(E[m - s] * 2 ** 8, L), ties, "div_softmax") - 128
        out.append(max(-128, min(127, y)))
    return out


def softmax(scores, c, F=24, B=16, mask=None, ties=None) -> list:
    """Rows of :func:`softmax_row`: a list for a 1-D input, a list of lists for 2-D."""
    E = lut(c, F)
    rows = [list(r) for r in scores] if _is_2d(scores) else None
    if rows is None:
        return softmax_row(scores, c, F, B, mask, ties, E)
    masks = [None] * len(rows) if mask is None else [list(mr) for mr in mask]
    return [softmax_row(r, c, F, B, mr, ties, E) for r, mr in zip(rows, masks)]


def _is_2d(a) -> bool:
    try:
        return len(a) > 0 and hasattr(a[0], "__len__")
    except TypeError:
        return False


# ---------------------------------------------------------------------------------------------
# Attention


def _requant_score(acc: int, M0: int, sh: int, rounding: str, ties) -> int:
    """numerics.md requantization of one score accumulator, zero point 0, clamp to int8."""
    if rounding == "single":  # (acc·M0 + 2^(30-sh)) >> (31-sh): nearest, ties toward +inf
        y = round_half_up(Fraction(acc * M0, 2 ** (31 - sh)), ties, "score")
    else:  # double: high-mul (ties toward +inf), then RoundingDivideByPOT (ties away from 0)
        h = round_half_up(Fraction(acc * 2 ** max(sh, 0) * M0, 2 ** 31), ties, "score_mul")
        y = round_half_away(Fraction(h, 2 ** max(-sh, 0)), ties, "score_pot")
    return max(-128, min(127, y))


def attention_scores(q, k, M0_s, sh_s, rounding="single", ties=None) -> list[list[int]]:
    """int8 scores ``clamp(requantize(Q·Kᵀ, M0_s, sh_s, zp = 0))``, exact products."""
    q = [_ints(r) for r in q]
    k = [_ints(r) for r in k]
    return [[_requant_score(sum(a * b for a, b in zip(qr, kr)), M0_s, sh_s, rounding, ties)
             for kr in k] for qr in q]


def attention_mask(m, n, mask=None, causal=False) -> list[list[bool]]:
    """The effective attend mask: ``mask`` ((M, N) or (N,)) AND ``j <= i`` when causal."""
    if mask is None:
        base = [[True] * n for _ in range(m)]
    elif not _is_2d(mask):
        base = [[bool(x) for x in mask] for _ in range(m)]
    else:
        base = [[bool(x) for x in r] for r in mask]
    return [[base[i][j] and (not causal or j <= i) for j in range(n)] for i in range(m)]


def attention_row(scores, mask, v, E, F, B, G, zp_v, M0_o, sh_o, zp_o, ties=None):
    """One query row: ``(outputs, (m, L, A, R))`` (osi8.md datapath and attention output)."""
    d = len(v[0])
    m, L, A, R = _first_pass(_ints(scores), list(mask), v, zp_v, E, F, B, ties)
    if m is None:
        return [zp_o] * d, (None, 0, [0] * d, 0)
    kk = 31 + G - sh_o
    out = []
    for a in A:
        qc = round_half_up(Fraction(a * 2 ** G, L), ties, "div_attn")
        o = zp_o + round_half_up(Fraction(qc * M0_o, 2 ** kk), ties, "out_shift")
        out.append(max(-128, min(127, o)))
    return out, (m, L, A, R)


def attention(q, k, v, params, F=24, B=16, G=16, mask=None, causal=False, rounding="single",
              ties=None):
    """One head: ``(outputs (M×d lists), states [(m, L, A, R)] per query)``.

    ``params`` needs the attributes ``score_multiplier``, ``score_shift``, ``c``, ``zp_v``,
    ``out_multiplier``, ``out_shift``, ``zp_o`` (osi8.md and attention.md's parameter block).
    """
    v = [_ints(r) for r in v]
    s = attention_scores(q, k, params.score_multiplier, params.score_shift, rounding, ties)
    eff = attention_mask(len(s), len(v), mask, causal)
    E = lut(params.c, F)
    outs, states = [], []
    for i in range(len(s)):
        o, st = attention_row(s[i], eff[i], v, E, F, B, G, params.zp_v, params.out_multiplier,
                              params.out_shift, params.zp_o, ties)
        outs.append(o)
        states.append(st)
    return outs, states
