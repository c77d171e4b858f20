"""The OSI8 golden models against an independent second implementation (tests/osi8_reference.py).

``npugen.sim.golden``'s ``softmax_int8``/``softmax_state`` and ``attention_int8``/
``attention_state`` are the bit-exact references of the RTL; ``osi8_reference`` was written from
docs/osi8.md alone with other techniques (exact fractions for every rounding, an interval-
arithmetic LUT, a two-phase first pass). Here the two must agree integer for integer, outputs and
first-pass state (``m``, ``L``, ``A_c``, ``R``), on:

- the LUT, over a grid of scales and ``F``;
- hand-worked vectors pinning the tie rules (rescale ``rshift_round`` and the dividers), which
  both implementations must reproduce;
- random rows over ``F`` x ``B`` x ``N`` with masks; adversarial rows;
- tie-rich rows built on purpose (rescale ties, divider ties, and the rows one unit off a divider
  tie), with the reference counting the exact ties it met, so the set provably contains them;
- attention: small ``d``, several heads, random and adversarial Q/K/V, masks and causal.

A rounding change made the same way in the golden model and the RTL (for example the rescale's
``rshift_round`` turned into a plain shift) makes these tests fail, since the reference follows
the spec's words, not the golden code.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
import numpy as np
import pytest

import osi8_reference as ref
from npugen.sim.golden import (AttentionParams, attention_int8, attention_params,
                               attention_state, calibrate_score_scale, make_lut, softmax_int8,
                               softmax_state)

LN2 = math.log(2)  # float64 ln 2 lies *below* ln 2, so 2^F·exp(-(F+1)·c) is just above 1/2
SCALES = [0.05382167030057292, 0.02, 0.1, 0.25, LN2]


# ---------------------------------------------------------------------------------------------
# Comparison helpers


def check_softmax(row, c, F, B, mask=None, ties=None):
    """Golden ``softmax_int8`` and ``softmax_state`` equal the reference; returns the outputs."""
    row = np.asarray(row, dtype=np.int8)
    m_arr = None if mask is None else np.asarray(mask, dtype=bool)
    want = ref.softmax_row(row, c, F, B, m_arr, ties)
    got = softmax_int8(row, c, F=F, B=B, mask=m_arr).tolist()
    assert got == want, f"softmax outputs differ: row={row.tolist()} mask={mask} c={c} F={F} B={B}"
    m, L, _ = ref.softmax_state(row, c, F, B, m_arr)
    assert softmax_state(row, c, F=F, B=B, mask=m_arr) == (m, L), (
        f"softmax state differs: row={row.tolist()} mask={mask} c={c} F={F} B={B}")
    return got


def check_attention(q, k, v, params, F, B, G, mask=None, causal=False, rounding="single",
                    ties=None):
    """Golden ``attention_int8`` and ``attention_state`` equal the reference; returns outputs."""
    q, k, v = (np.asarray(a, dtype=np.int8) for a in (q, k, v))
    want, states = ref.attention(q, k, v, params, F, B, G, mask, causal, rounding, ties)
    got = attention_int8(q, k, v, params, F=F, B=B, G=G, mask=mask, causal=causal,
                         rounding=rounding).tolist()
    where = f"F={F} B={B} G={G} causal={causal} params={params}"
    assert got == want, f"attention outputs differ ({where})"
    gs = attention_state(q, k, v, params, F=F, B=B, mask=mask, causal=causal, rounding=rounding)
    for i, (a, (m, L, A, R)) in enumerate(zip(gs, states)):
        assert (a.m, a.L, [int(x) for x in a.A], a.rescales) == (m, L, A, R), (
            f"attention state of query {i} differs ({where})")
    return got


def direct_params(c, *, zp_v=0, zp_o=0, out_multiplier=2 ** 30, out_shift=1):
    """Attention parameters whose score requantization is the identity (M0 = 2^30, sh = 1).

    ``(acc·2^30 + 2^29) >> 30 = acc``: with ``q = [1, 0, ...]`` the scores are ``k[:, 0]``.
    """
    return AttentionParams(score_multiplier=2 ** 30, score_shift=1, c=c, zp_v=zp_v,
                           out_multiplier=out_multiplier, out_shift=out_shift, zp_o=zp_o)


def scores_as_qk(scores, d):
    """``q`` (1, d) and ``k`` (N, d) whose identity-requantized product is ``scores``."""
    q = np.zeros((1, d), dtype=np.int8)
    q[0, 0] = 1
    k = np.zeros((len(scores), d), dtype=np.int8)
    k[:, 0] = scores
    return q, k


# ---------------------------------------------------------------------------------------------
# LUT


@pytest.mark.parametrize("F", [8, 12, 16, 20, 24, 30])
def test_lut_equals_interval_arithmetic(F):
    scales = [*SCALES, 1e-6, 0.0703125, 3.7, 100.0, float(np.float32(0.1)), 2 ** -20]
    for c in scales:
        assert make_lut(c, F) == ref.lut(c, F), f"c={c!r} F={F}"


def test_lut_ln2_near_tie():
    # 2^F·exp(-k·ln2) = 2^(F-k) exactly for the real ln 2; float64 ln 2 = 0.693147180559945286…
    # is below ln 2 = 0.693147180559945309…, so E[F+1] = round(1/2 + tiny) = 1, not 0 (half to
    # even), and E[F+2] = round(1/4 + tiny) = 0.
    for F in (8, 16, 24):
        for E in (make_lut(LN2, F), ref.lut(LN2, F)):
            assert E[:F + 1] == [2 ** (F - k) for k in range(F + 1)]
            assert E[F + 1] == 1 and E[F + 2] == 0


# ---------------------------------------------------------------------------------------------
# Hand-worked tie vectors (c = ln 2, so E[k] = 2^(F-k) for k <= F and E[F+1] = 1)


def test_pin_softmax_rescale_tie():
    """The rescale ``L = rshift_round(L·r, F)`` at an exact tie, seen in the state and outputs.

    F = 24, B = 1, row [0, -24, 1, -7, -1, -2, -3, -4, -5, -6, -7]:
    tile 0: m = 0, L = 2^24. tile 1: s = -24, E[24] = 1, L = 2^24 + 1.
    tile 2: t = 1 > m: r = E[1] = 2^23, L·r / 2^24 = 2^23 + 1/2, a tie: up to 2^23 + 1 (a plain
    shift gives 2^23); then L += E[0]: L = 3·2^23 + 1, m = 1.
    The rest index k = 8, 2, 3, 4, 5, 6, 7, 8 (E = 2^16, 2^22 … 2^17, 2^16) add
    2^16 + (2^23 - 2^16) = 2^23: L = 2^25 + 1 (the plain shift: exactly 2^25).
    Outputs y + 128 = round_div(E·2^8, L): s = 1: 2^32/(2^25+1) = 127.999996 -> 128;
    s = 0: 63.999998 -> 64; s = -1 … -6: 32, 16, 8, 4, 2, 0.99999997 -> 1; s = -24: 0;
    s = -7: 2^24/(2^25+1) = 0.49999998 -> 0 (with the plain shift it would be the tie 1/2 -> 1).
    """
    row = [0, -24, 1, -7, -1, -2, -3, -4, -5, -6, -7]
    hand_state = (1, 2 ** 25 + 1)
    hand_y = [-64, -128, 0, -128, -96, -112, -120, -124, -126, -127, -128]
    ties = Counter()
    assert softmax_state(np.array(row, dtype=np.int8), LN2, F=24, B=1) == hand_state
    assert ref.softmax_state(row, LN2, 24, 1, ties=ties)[:2] == hand_state
    assert check_softmax(row, LN2, 24, 1, ties=ties) == hand_y
    assert ties["rescale_L"] == 2  # once in softmax_state, once in softmax_row


def test_pin_softmax_divider_tie():
    """The output divider ``round_div(E·2^8, L)`` at an exact tie (1/2 -> 1).

    F = 24, B = 16, row [0, -1, …, -8, -8]: L = 2^24 + (2^23 + … + 2^16) + 2^16 = 2^25.
    y + 128 = 2^(32-k) / 2^25 = 2^(7-k): 128, 64, …, 1 for k = 0 … 7; for k = 8 it is 1/2 -> 1
    (ties toward +inf: a floor or a half-to-even divider gives 0).
    """
    row = [0, -1, -2, -3, -4, -5, -6, -7, -8, -8]
    hand = [0, -64, -96, -112, -120, -124, -126, -127, -127, -127]
    ties = Counter()
    assert check_softmax(row, LN2, 24, 16, ties=ties) == hand
    assert ties["div_softmax"] == 2


def test_pin_uniform_512_divider_tie():
    # 512 equal scores: L = 512·2^F, y + 128 = 2^(F+8) / (512·2^F) = 1/2 -> 1 (osi8.md S6:
    # round_half_up(256/512) = 1).
    ties = Counter()
    assert check_softmax([5] * 512, 0.1, 16, 16, ties=ties) == [-127] * 512
    assert ties["div_softmax"] == 512


def test_pin_attention_rescale_negative_tie():
    """A negative numerator at a rescale tie goes toward +inf: -3/2 -> -1.

    d = 1, F = 24, B = 1, scores [0, -24, 1], v = [0, -3, 1], zp_v = 0:
    tile 0: L = 2^24, A = 0. tile 1: E[24] = 1: L = 2^24 + 1, A = -3.
    tile 2: r = E[1] = 2^23: L -> 2^23 + 1/2 -> 2^23 + 1, A -> -3/2 -> -1 (a plain shift gives
    -2, as would rounding half away from zero); then L += 2^24, A += 2^24.
    State: m = 1, L = 3·2^23 + 1, A = 2^24 - 1.
    """
    q, k = scores_as_qk([0, -24, 1], 1)
    v = np.array([[0], [-3], [1]], dtype=np.int8)
    p = direct_params(LN2)
    st = attention_state(q, k, v, p, F=24, B=1)[0]
    hand = (1, 3 * 2 ** 23 + 1, [2 ** 24 - 1], 1)
    assert (st.m, st.L, [int(a) for a in st.A], st.rescales) == hand
    ties = Counter()
    # output (G = 16, M0_o = 2^30, sh_o = 1, k = 46): q = round((2^24 - 1)·2^16 / (3·2^23 + 1))
    # = round(43690.66) = 43691, o = round(43691 / 2^16) = round(0.667) = 1
    assert check_attention(q, k, v, p, 24, 1, 16, ties=ties) == [[1]]
    assert ties["rescale_A_neg"] == 1 and ties["rescale_L_pos"] == 1


def test_pin_attention_divider_tie():
    """``q_c = round_div(A_c·2^G, L)`` at ties of both signs (1/2 -> 1, -1/2 -> 0).

    F = 24, G = 16, B = 16, d = 2, scores [0, -25, -24, -23, …, -8] (19 keys, E = 2^24, then
    E[25] = 1, E[24] = 1, E[23] = 2, …, E[8] = 2^16):
    L = 2^24 + 1 + 1 + (2 + 4 + … + 2^16) = 2^24 + 2^17 = 129·2^17.
    Channel 0: v = 64 and 65 on the two E = 1 keys, 0 elsewhere: A = 129,
    q = 129·2^16 / (129·2^17) = 1/2 -> 1. Channel 1: v = -64, -65: A = -129, q = -1/2 -> 0.
    Output with M0_o = 2^30, sh_o = 17 (k = 31 + 16 - 17 = 30): o = q·2^30 / 2^30 = q.
    """
    s = [0, -25] + list(range(-24, -7))
    q, k = scores_as_qk(s, 2)
    v = np.zeros((len(s), 2), dtype=np.int8)
    v[1] = [64, -64]
    v[2] = [65, -65]
    p = direct_params(LN2, out_shift=17)
    ties = Counter()
    assert check_attention(q, k, v, p, 24, 16, 16, ties=ties) == [[1, 0]]
    assert ties["div_attn_pos"] == 1 and ties["div_attn_neg"] == 1


def test_pin_attention_output_shift_tie():
    """``o = zp_o + rshift_round(q·M0_o, k)`` at ties: 5/2 -> 3, -5/2 -> -2.

    Two equal scores, v = (2, 3) and (-3, -2): L = 2^25, A = 5·2^24 and -5·2^24,
    q = ±5·2^15 exactly (G = 16); M0_o = 2^30, sh_o = 1: k = 46, q·2^30 / 2^46 = ±5/2.
    """
    q, k = scores_as_qk([7, 7], 2)
    v = np.array([[2, -3], [3, -2]], dtype=np.int8)
    ties = Counter()
    assert check_attention(q, k, v, direct_params(0.1), 24, 16, 16, ties=ties) == [[3, -2]]
    assert ties["out_shift_pos"] == 1 and ties["out_shift_neg"] == 1


# ---------------------------------------------------------------------------------------------
# Random rows


@pytest.mark.parametrize("F", [8, 16, 24, 30])
@pytest.mark.parametrize("B", [1, 3, 16, 64])
def test_softmax_random_rows(F, B):
    rng = np.random.default_rng(1000 * F + B)
    for N in (1, 2, 7, 16, 17, 64, 129, 400):
        for masked in (False, True):
            c = float(rng.choice(SCALES))
            row = rng.integers(-128, 128, N)
            mask = (rng.random(N) < 0.7) if masked else None
            check_softmax(row, c, F, B, mask)
            # clustered scores: many near the max, so the LUT's head is used
            check_softmax(np.clip(127 - rng.integers(0, 12, N), -128, 127), c, F, B, mask)


def test_softmax_random_batch():
    rng = np.random.default_rng(7)
    scores = rng.integers(-128, 128, (6, 50)).astype(np.int8)
    mask = rng.random((6, 50)) < 0.6
    mask[2] = False  # a fully masked row
    for F, B in ((24, 16), (16, 4)):
        want = ref.softmax(scores, 0.07, F, B, mask)
        assert softmax_int8(scores, 0.07, F=F, B=B, mask=mask).tolist() == want


# ---------------------------------------------------------------------------------------------
# Adversarial rows


def adversarial_rows(N, B, rng):
    """Named ``(row, mask)`` pairs: the shapes that stress the online max."""
    n_tiles = -(-N // B)
    rows = {
        "all_equal": ([33] * N, None),
        "all_min": ([-128] * N, None),
        "all_max": ([127] * N, None),
        "max_first_then_small": ([127] + [-60] * (N - 1), None),
        "max_last": ([-60] * (N - 1) + [127], None),
        "max_last_index_255": ([-128] * (N - 1) + [127], None),
        "increasing_by_tile": ([min(127, -128 + 2 * (j // B)) for j in range(N)], None),
        "increasing_each": ([min(127, -128 + j) for j in range(N)], None),
        "decreasing_each": ([max(-128, 127 - j) for j in range(N)], None),
        "big_jumps": ([-128 + (j // B) * 97 % 256 for j in range(N)], None),
        "sawtooth": ([(j * 37) % 256 - 128 for j in range(N)], None),
        "one_hot": ([-128] * (N // 2) + [127] + [-128] * (N - N // 2 - 1), None),
        "random": (rng.integers(-128, 128, N).tolist(), None),
    }
    # running max changes at every tile boundary, with the new max at each tile's end
    tile_end = [-128] * N
    for t in range(n_tiles):
        for j in range(t * B, min(N, (t + 1) * B)):
            tile_end[j] = -128 + 3 * t if j == min(N, (t + 1) * B) - 1 else -128
    rows["max_at_each_tile_end"] = ([max(-128, min(127, x)) for x in tile_end], None)
    # the maxima sit in masked slots: they must not move m
    masked_max = rng.integers(-50, 50, N).tolist()
    mask = [True] * N
    for j in range(0, N, 3):
        masked_max[j], mask[j] = 127, False
    if all(not x for x in mask):
        mask[-1] = True
    rows["masked_only_maxima"] = (masked_max, mask)
    rows["fully_masked_row"] = (rng.integers(-128, 128, N).tolist(), [False] * N)
    tiles_masked = [(j // B) % 2 == 1 for j in range(N)]
    rows["alternate_tiles_masked"] = ([min(127, -100 + j) for j in range(N)], tiles_masked)
    rows["only_last_key_attended"] = (rng.integers(-128, 128, N).tolist(),
                                      [j == N - 1 for j in range(N)])
    rows["random_mask_increasing"] = ([min(127, -128 + j) for j in range(N)],
                                      (rng.random(N) < 0.5).tolist())
    return rows


@pytest.mark.parametrize("F,B", [(24, 16), (24, 1), (16, 4), (8, 2), (30, 5), (20, 64)])
def test_softmax_adversarial_rows(F, B):
    rng = np.random.default_rng(F * 100 + B)
    for N in (1, 2, 5, 16, 33, 300):
        for name, (row, mask) in adversarial_rows(N, B, rng).items():
            for c in (0.05382167030057292, 0.25, LN2):
                try:
                    check_softmax(row, c, F, B, mask)
                except AssertionError as e:
                    raise AssertionError(f"{name} N={N}: {e}") from None


def test_softmax_long_equal_row():
    # N = 4096 equal scores: L = 4096·2^24, each y + 128 = round(1/16) = 0 at F = 24.
    check_softmax([0] * 4096, 0.05, 24, 16)
    check_softmax([0] * 4095 + [1], 0.05, 24, 16)  # one late rescale of a large L


# ---------------------------------------------------------------------------------------------
# Tie-rich rows, built on purpose


def _v2(x: int) -> int:
    return (x & -x).bit_length() - 1


def _fill(D, E, m, max_keys=64):
    """Scores ``<= m`` whose LUT entries ``E[m - s]`` sum to exactly ``D`` (greedy), or None."""
    keys = []
    usable = [(E[k], m - k) for k in range(0, min(255, m + 128) + 1) if E[k] > 0]
    while D > 0 and len(keys) < max_keys:
        e, s = max(((e, s) for e, s in usable if e <= D), default=(0, None))
        if s is None:
            return None
        keys.append(s)
        D -= e
    return keys if D == 0 else None


def _pad(row, mask, B, fill_score=127):
    """Pad to a whole number of tiles with masked positions holding ``fill_score``."""
    while len(row) % B:
        row.append(fill_score)
        mask.append(False)


def build_rescale_tie_row(c, F, B, rng, steps=8):
    """A row whose rescales land on exact ties of ``rshift_round(L·r, F)``.

    Before each jump of the max by ``delta`` (``r = E[delta]``), filler keys below the max set
    ``L`` to a value with ``v2(L) = F - 1 - v2(r)``, so ``L·r`` is ``2^(F-1)`` times an odd
    number: an exact tie. Masked pads (holding 127) complete the tiles.
    """
    E = ref.lut(c, F)
    m = 127 - 3 * steps
    row, mask = [m] + rng.integers(m - 20, m + 1, B - 1).tolist(), [True] * B
    for _ in range(steps):
        _, L, _ = ref.softmax_state(row, c, F, B, mask)
        for delta in rng.permutation([1, 2, 3]).tolist():
            r = E[delta]
            if r == 0 or _v2(r) > F - 1:
                continue
            a = F - 1 - _v2(r)
            T = L + ((2 ** a - L) % 2 ** (a + 1))  # smallest T >= L with T = 2^a mod 2^(a+1)
            keys = None
            for _ in range(8):
                keys = _fill(T - L, E, m)
                if keys is not None:
                    break
                T += 2 ** (a + 1)
            if keys is not None:
                break
        else:
            continue
        row += keys
        mask += [True] * len(keys)
        _pad(row, mask, B)
        m += delta
        tile = [m] + rng.integers(m - 30, m + 1, B - 1).tolist()  # the jump, then keys <= it
        row += tile
        mask += [True] * B
    return row, mask


def build_divider_tie_rows(row, mask, c, F, B):
    """Rows extending ``row`` so the divider ``round_div(E_t·2^8, L)`` meets a tie, and its
    neighbours one unit of ``L`` above and below the tie.

    The tie needs ``L = 512·E_t / o`` for an odd ``o`` dividing ``E_t``, ``E_t`` the LUT entry of
    a key already in the row; filler keys below the max bring ``L`` there.
    """
    E = ref.lut(c, F)
    m, L, _ = ref.softmax_state(row, c, F, B, mask)
    out = []
    for s_t in sorted({s for s, k in zip(row, mask) if k}, reverse=True):
        e_t = E[m - s_t]
        if e_t == 0:
            continue
        odd = e_t >> _v2(e_t)
        for o in sorted((x for x in range(1, min(odd, 511) + 1, 2) if odd % x == 0), reverse=True):
            T = 512 * e_t // o
            for target in (T, T + 1, T - 1):
                if target < L:
                    continue
                keys = _fill(target - L, E, m)
                if keys is None:
                    continue
                r2, m2 = list(row) + keys, list(mask) + [True] * len(keys)
                out.append((r2, m2))
            if len(out) >= 3:
                return out
    return out


TIE_CASES = [(LN2, 24, 1), (LN2, 24, 16), (LN2, 8, 4), (0.1, 24, 16), (0.1, 16, 1), (0.25, 24, 2),
             (0.25, 8, 16), (0.0703125, 8, 3), (0.1, 30, 8)]


@pytest.mark.parametrize("c,F,B", TIE_CASES)
def test_softmax_tie_rich_rows(c, F, B):
    rng = np.random.default_rng(int(c * 1e6) + 100 * F + B)
    ties = Counter()
    rows = []
    for _ in range(3):
        row, mask = build_rescale_tie_row(c, F, B, rng)
        rows.append((row, mask))
        rows += build_divider_tie_rows(row, mask, c, F, B)
        plain = [min(127, m) for m in rng.integers(60, 128, 2 * B + 3)]  # no rescale tie
        plain[0] = 127
        rows += build_divider_tie_rows(plain, [True] * len(plain), c, F, B)
    for row, mask in rows:
        check_softmax(row, c, F, B, mask, ties)
    # check_softmax runs the reference's first pass twice (state and outputs): halve
    assert ties["rescale_L"] // 2 >= 6, ties
    assert ties["div_softmax"] >= 3, ties


# ---------------------------------------------------------------------------------------------
# Attention


def random_params(rng, q, k, d, G=16):
    s_s = calibrate_score_scale(q, k, 0.02, 0.03) * float(rng.choice([0.5, 1.0, 1.7]))
    p = attention_params(0.02, 0.03, float(rng.uniform(0.01, 0.08)), s_s,
                         float(rng.uniform(0.02, 0.2)), d=d, zp_v=int(rng.integers(-20, 21)),
                         zp_o=int(rng.integers(-20, 21)))
    if 31 + G - p.out_shift > 62:  # k = 31 + G - sh_o must stay in [1, 62]
        p = dataclasses.replace(p, out_shift=31 + G - 62)
    return p


@pytest.mark.parametrize("F,B,G", [(24, 16, 16), (24, 1, 16), (16, 4, 8), (8, 2, 1), (30, 3, 30),
                                   (20, 16, 4)])
def test_attention_random_heads(F, B, G):
    rng = np.random.default_rng(F * 1000 + B * 10 + G)
    for d in (1, 2, 5):
        for M, N in ((1, 1), (3, 7), (5, 40), (2, 70)):
            q = rng.integers(-128, 128, (M, d))
            k = rng.integers(-128, 128, (N, d))
            v = rng.integers(-128, 128, (N, d))
            for head in range(3):  # a few heads: each its own scales and LUT
                p = random_params(rng, q, k, d, G)
                causal = head == 1
                mask = (rng.random((M, N)) < 0.7) if head == 2 else None
                for rounding in (("single", "double") if head == 0 else ("single",)):
                    check_attention(q, k, v, p, F, B, G, mask, causal, rounding)


@pytest.mark.parametrize("F,B,G", [(24, 16, 16), (24, 1, 16), (16, 4, 8), (8, 2, 1)])
def test_attention_adversarial(F, B, G):
    rng = np.random.default_rng(F + B + G)
    d = 3
    for N in (1, 5, 33):
        for name, (row, mask) in adversarial_rows(N, B, rng).items():
            q, k = scores_as_qk(row, d)
            for vname, v in (("random", rng.integers(-128, 128, (N, d))),
                             ("v_max", np.full((N, d), 127)), ("v_min", np.full((N, d), -128)),
                             ("v_alternating", np.array([[[127, -128, 0][(j + ch) % 3]
                                                          for ch in range(d)]
                                                         for j in range(N)]))):
                for p in (direct_params(0.1, zp_v=-128, zp_o=5),
                          direct_params(LN2, zp_v=127, zp_o=-3),
                          direct_params(0.05, zp_v=0, zp_o=0, out_multiplier=2 ** 31 - 1,
                                        out_shift=-3)):
                    try:
                        check_attention(q, k, v, p, F, B, G, None if mask is None else [mask])
                    except AssertionError as e:
                        raise AssertionError(f"{name}/{vname} N={N}: {e}") from None


def test_attention_causal_and_masks():
    rng = np.random.default_rng(3)
    d = 4
    for M, N in ((6, 6), (8, 3), (3, 9), (17, 17)):
        q = rng.integers(-128, 128, (M, d))
        k = rng.integers(-128, 128, (N, d))
        v = rng.integers(-128, 128, (N, d))
        p = random_params(rng, q, k, d)
        pad = np.ones(N, dtype=bool)
        pad[-1] = False
        full = rng.random((M, N)) < 0.5
        full[0] = False  # a query with no attended key: zp_o everywhere
        for mask in (None, pad, full):
            for causal in (False, True):
                for F, B in ((24, 16), (16, 2)):
                    check_attention(q, k, v, p, F, B, 16, mask, causal)
        q2 = rng.integers(-128, 128, (M, d))
        q2[:, :] = 0  # every score 0: uniform attention
        check_attention(q2, k, v, p, 24, 4, 16, None, True)


def test_attention_tie_rich():
    """Attention rows built to hit rescale ties of ``L`` and ``A_c``, divider ties and output
    shift ties, with masks and causal; the reference counts the ties it meets."""
    rng = np.random.default_rng(11)
    ties = Counter()
    d = 2
    for c, F, B, G in ((LN2, 24, 1, 16), (0.1, 24, 16, 16), (0.25, 16, 4, 8), (LN2, 8, 2, 1),
                       (0.1, 20, 3, 12)):
        E = ref.lut(c, F)
        for _ in range(3):
            row, mask = build_rescale_tie_row(c, F, B, rng, steps=6)
            # values: channel 0 steered to an A-rescale tie at the first jump, channel 1 random
            v = rng.integers(-128, 128, (len(row), d))
            p = direct_params(c, zp_v=int(rng.integers(-3, 4)), zp_o=int(rng.integers(-3, 4)))
            q, k = scores_as_qk(row, d)
            check_attention(q, k, v, p, F, B, G, [mask], False, ties=ties)
            # equal scores over an even count: A/L is a mean of integers, half of them x.5
            for n in (2, 4, 6):
                q, k = scores_as_qk([int(rng.integers(-128, 128))] * n, d)
                vv = rng.integers(-128, 128, (n, d))
                check_attention(q, k, vv, p, F, B, G, ties=ties)
        # A rescale ties: first tile sets A_0 with v2(A_0) = F - 1 - v2(r), then the max jumps;
        # then a divider tie on top (L = 2^(G+1)·u, u odd, A_0 = ±u), so the output sees any
        # change of one unit in the rescaled L or A_0. Also on the L-rescale-tie rows above
        # and on a plain prefix.
        for trial in range(6):
            if trial < 4:
                r = _attention_rescale_tie(c, F, B, E, rng)
                if r is None:
                    continue
                q, k, v = r
                check_attention(q, k, v, direct_params(c), F, B, G, ties=ties)
                prefix = (k[:, 0].tolist(), v[:, 0].tolist(), [True] * len(k))
            elif trial == 4:
                row, mask = build_rescale_tie_row(c, F, B, rng, steps=3)
                prefix = (row, rng.integers(-128, 128, len(row)).tolist(), mask)
            else:
                prefix = ([127] + rng.integers(60, 128, 4).tolist(),
                          rng.integers(-100, 101, 5).tolist(), [True] * 5)
            r = _attention_divider_tie(*prefix, c, F, B, G, E, rng)
            assert r is not None, (c, F, B, G, trial)
            q, k, v, mask = r
            check_attention(q, k, v, direct_params(c, out_shift=G + 1), F, B, G, mask, ties=ties)
    assert ties["rescale_L"] >= 10, ties
    assert ties["rescale_A_pos"] >= 2 and ties["rescale_A_neg"] >= 2, ties
    assert ties["div_attn_pos"] >= 4 and ties["div_attn_neg"] >= 4, ties
    assert ties["out_shift"] >= 10, ties


def _represent(D, E, m, w_max=127, max_keys=40):
    """Keys ``(s <= m, w)`` with ``sum E[m - s]·w = D`` (greedy, |w| <= w_max), or None."""
    keys = []
    usable = [(E[k], m - k) for k in range(0, min(255, m + 128) + 1) if E[k] > 0]
    while D != 0 and len(keys) < max_keys:
        e, s = max(((e, s) for e, s in usable if e <= abs(D)), default=(0, None))
        if s is None:
            return None
        w = min(w_max, abs(D) // e) * (1 if D > 0 else -1)
        keys.append((s, w))
        D -= e * w
    return keys if D == 0 else None


def _attention_divider_tie(scores, vals, mask, c, F, B, G, E, rng):
    """Extend a d = 1 row so that ``A·2^(G+1) = ±L``: ``round_div(A·2^G, L)`` meets the tie
    ``±1/2`` (``+1/2 -> 1``, ``-1/2 -> 0``). Returns ``(q, k, v, mask)`` or None.

    The prefix keeps its own rescales (and their ties); then, below its max, keys with values
    bring ``A`` to 0, a target ``T >= L`` with ``v2(T) = G + 1`` is chosen (``u = T / 2^(G+1)``
    odd), keys bring ``A`` to ``±u`` and value-0 keys bring ``L`` to ``T``. With
    ``k = 31 + G - sh_o = 30`` and ``M0_o = 2^30`` the output is ``zp_o + q``, so a change of
    one unit in ``L`` or ``A`` anywhere before moves the output.
    """
    _, (m, L, A, _) = ref.attention_row(scores, mask, [[x] for x in vals], E, F, B, G, 0, 2 ** 30,
                                        G + 1, 0)
    to_zero = _represent(-A[0], E, m)
    if to_zero is None:
        return None
    L1 = L + sum(E[m - s] for s, _ in to_zero)
    T = L1 + 2 ** F
    sign = 1 if rng.random() < 0.5 else -1
    for _ in range(20):
        T += (2 ** (G + 1) - T) % 2 ** (G + 2)  # v2(T) = G + 1
        u = T >> (G + 1)
        adjust = _represent(sign * u, E, m)
        if adjust is not None:
            rest = T - L1 - sum(E[m - s] for s, _ in adjust)
            filler = _fill(rest, E, m) if rest >= 0 else None
            if filler is not None:
                keys = to_zero + adjust + [(s, 0) for s in filler]
                q, k = scores_as_qk(list(scores) + [s for s, _ in keys], 1)
                return (q, k, np.array(list(vals) + [x for _, x in keys]).reshape(-1, 1),
                        [list(mask) + [True] * len(keys)])
        T += 2 ** (G + 2)
    return None


def _attention_rescale_tie(c, F, B, E, rng):
    """q, k, v (d = 1): a first tile whose ``A·E[delta]`` is ``2^(F-1)`` times an odd number,
    of random sign, then a tile whose max is ``delta`` higher."""
    m = 120
    delta = int(rng.integers(1, 4))
    r = E[delta]
    if r == 0 or _v2(r) > F - 1:
        return None
    a = F - 1 - _v2(r)
    sign = 1 if rng.random() < 0.5 else -1
    A_target = sign * (2 ** a) * int(rng.choice([1, 3, 5]))
    keys = [(m, 0)] + (_represent(A_target, E, m) or [None])
    if keys[-1] is None:
        return None
    scores = [s for s, _ in keys]
    vals = [x for _, x in keys]
    while len(scores) % B:  # complete the tile with low keys of value 0 (A unchanged)
        scores.append(-128)
        vals.append(0)
    scores += [m + delta]
    vals += [int(rng.integers(-128, 128))]
    q, k = scores_as_qk(scores, 1)
    return q, k, np.array(vals).reshape(-1, 1)
