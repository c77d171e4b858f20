"""Golden OSI8 attention model (sim.golden.attention) against docs/osi8.md.

The attention (A) tests of osi8.md, "Tests that prove it", in the golden model, numbered as
there (1, 7, 8, 9, 10), plus the parameter helpers, the rescale counts of the cycle model, a
case worked out by hand and the error messages. Expectations come from outside the code under
test:

- the exact real-valued attention on the int8 scores, in float64 (:func:`exact_attention`),
  within osi8.md's proven bound ``0.5 + M (2^-(G+1) + 510 (N + 1 + 3R) 2^-(F+1))`` LSB, with
  ``R`` counted here (:func:`tile_rescales`);
- the score requantization rewritten here on Python ints (:func:`ref_scores`);
- hand formulas (constant V, equal scores) and vectors worked out in the comments;
- an emulation of the int8-probability pipeline written here (:func:`int8_p_attention`).

None of the expected values was copied from the code under test.
"""

import math

import numpy as np
import pytest

from npugen.sim.golden import (
    AttentionParams,
    attention_float,
    attention_int8,
    attention_mask,
    attention_params,
    attention_rescales,
    attention_scores,
    attention_state,
    attention_tile_rescales,
    calibrate_score_scale,
    widths,
)

LN2 = math.log(2)  # the float64 nearest ln 2: make_lut(LN2, 24)[1] == 2^23 exactly


# --------------------------------------------------------------------------------------------
# independent references


def ref_scores(q, k, m0, sh):
    """numerics.md single rounding on Python ints: ``(acc M0 + 2^(30-sh)) >> (31-sh)``, clamped."""
    out = np.zeros((len(q), len(k)), dtype=np.int64)
    for i, qi in enumerate(np.asarray(q).tolist()):
        for j, kj in enumerate(np.asarray(k).tolist()):
            acc = sum(a * b for a, b in zip(qi, kj))
            y = (acc * m0 + (1 << (30 - sh))) >> (31 - sh)
            out[i, j] = min(max(y, -128), 127)
    return out


def exact_attention(scores, keep, v, zp_v, c, mult, zp_o):
    """Real-valued attention on the int8 scores, in output LSB, clamped to [-128, 127].

    ``o* = zp_o + mult * sum_j p_j (v_j - zp_v)``, ``p = softmax(c * s)`` over the attended keys
    (float64); ``zp_o`` for a query with no attended key.
    """
    scores = np.asarray(scores, dtype=np.float64)
    w = np.asarray(v, dtype=np.float64) - zp_v
    out = np.full((scores.shape[0], w.shape[1]), float(zp_o))
    for i in range(scores.shape[0]):
        sel = np.asarray(keep[i], bool)
        if not sel.any():
            continue
        x = c * scores[i, sel]
        p = np.exp(x - x.max())
        p /= p.sum()
        out[i] = zp_o + mult * (p @ w[sel])
    return np.clip(out, -128, 127)


def tile_rescales(row, keep_row, B):
    """R of osi8.md: how often a tile's max exceeds the running max (the first tile sets it)."""
    m, r = None, 0
    for start in range(0, len(row), B):
        tile = [int(row[j]) for j in range(start, min(start + B, len(row))) if keep_row[j]]
        if not tile:
            continue
        t = max(tile)
        if m is None:
            m = t
        elif t > m:
            m, r = t, r + 1
    return r


def effective_multiplier(params):
    """``S_v / S_o`` as the output stage applies it: ``M0_o 2^(sh_o - 31)``, exact in float."""
    return math.ldexp(params.out_multiplier, params.out_shift - 31)


def attention_bound(n, r, F, G, mult):
    """osi8.md, error bound (attention), in LSB."""
    return 0.5 + mult * (2.0 ** -(G + 1) + 510 * (n + 1 + 3 * r) * 2.0 ** -(F + 1))


def check_within_bound(q, k, v, params, F, B, G=16, mask=None, causal=False):
    """Run the golden model and check every output against the exact attention and the bound.

    Returns the largest error, in LSB.
    """
    o = attention_int8(q, k, v, params, F=F, B=B, G=G, mask=mask, causal=causal)
    s = attention_scores(q, k, params)
    n_q, n_k = s.shape
    keep = np.ones((n_q, n_k), bool) if mask is None else np.broadcast_to(mask, (n_q, n_k))
    if causal:
        keep = keep & (np.arange(n_k)[None, :] <= np.arange(n_q)[:, None])
    mult = effective_multiplier(params)
    ref = exact_attention(s, keep, v, params.zp_v, params.c, mult, params.zp_o)
    worst = 0.0
    for i in range(n_q):
        n = int(keep[i].sum())
        r = tile_rescales(s[i], keep[i], B)
        bound = attention_bound(n, r, F, G, mult)
        err = np.abs(o[i].astype(np.float64) - ref[i]).max()
        assert err <= bound + 1e-9, (i, n, r, err, bound)
        worst = max(worst, err)
    return worst


def rand_head(rng, m, n, d, zp_v=0):
    q = rng.integers(-128, 128, (m, d), dtype=np.int64).astype(np.int8)
    k = rng.integers(-128, 128, (n, d), dtype=np.int64).astype(np.int8)
    v = rng.integers(-128, 128, (n, d), dtype=np.int64).astype(np.int8)
    return q, k, v


# --------------------------------------------------------------------------------------------
# a case by hand


def test_hand_computed_d1_n2():
    # d = 1, Q = [[1]], K = [[2], [1]]: Q.K^T = [2, 1]. M0_s = 2^30, sh_s = 1 is the real
    # multiplier 1, so the scores are [2, 1]. c = ln 2, F = 24: E[0] = 2^24, E[1] = 2^23.
    # One tile (B = 16): m = 2, e = [2^24, 2^23], L = 3 * 2^23.
    # V = [[12], [-3]], zp_v = 0: A = 12 * 2^24 - 3 * 2^23 = 21 * 2^23, A / L = 7 exactly.
    # G = 16: q = round_div(21 * 2^23 * 2^16, 3 * 2^23) = 7 * 2^16.
    # M0_o = 2^30, sh_o = 0 (S_v / S_o = 1/2): k = 31 + 16 - 0 = 47,
    # rshift_round(7 * 2^16 * 2^30, 47) = rshift_round(7 * 2^46, 47) = floor(3.5 + 0.5) = 4
    # (a tie, toward +inf); zp_o = 5 gives 9. The real value is 5 + 7/2 = 8.5.
    p = AttentionParams(score_multiplier=1 << 30, score_shift=1, c=LN2, zp_v=0,
                        out_multiplier=1 << 30, out_shift=0, zp_o=5)
    q, k, v = [[1]], [[2], [1]], [[12], [-3]]
    assert attention_scores(q, k, p).tolist() == [[2, 1]]
    assert attention_int8(q, k, v, p).tolist() == [[9]]
    (st,) = attention_state(q, k, v, p)
    assert (st.m, st.L, st.A, st.rescales) == (2, 3 << 23, (21 << 23,), 0)
    # Keys in the other order with B = 1: tile 0 sets m = 1, L = 2^24, A = -3 * 2^24; tile 1
    # has t = 2 > m: r = E[1] = 2^23, L = rshift_round(2^24 * 2^23, 24) = 2^23, A = -3 * 2^23,
    # then + E[0]: L = 3 * 2^23, A = -3 * 2^23 + 12 * 2^24 = 21 * 2^23. The same output.
    (st,) = attention_state(q, k[::-1], v[::-1], p, B=1)
    assert (st.m, st.L, st.A, st.rescales) == (2, 3 << 23, (21 << 23,), 1)
    assert attention_int8(q, k[::-1], v[::-1], p, B=1).tolist() == [[9]]
    # zp_v = 1 shifts the values to [11, -4]: A / L = (2 * 11 - 4) / 3 = 6, 6/2 = 3, 5 + 3 = 8.
    p1 = AttentionParams(1 << 30, 1, LN2, 1, 1 << 30, 0, 5)
    assert attention_int8(q, k, v, p1).tolist() == [[8]]
    # Masking the key with score 2: only v = -3 is left: 5 + (-3)/2 = 3.5 -> 4 (tie up).
    assert attention_int8(q, k, v, p, mask=np.array([False, True])).tolist() == [[4]]
    # G = 0: q = round_div(A, L) = 7; k = 31 - 0 = 31; rshift_round(7 * 2^30, 31) = 4.
    assert attention_int8(q, k, v, p, G=0).tolist() == [[9]]


def test_hand_computed_divider_tie():
    # Equal scores [1, 1] (K = [[1], [1]], real score multiplier 1), V = [[2], [3]]:
    # L = 2 * 2^24, A = 5 * 2^24. G = 0: q = round_div(5 * 2^24, 2 * 2^24) = round(2.5) = 3
    # (the tie goes up; a truncating divider gives 2). M0_o = 2^30, sh_o = 1 (S_v / S_o = 1):
    # k = 31 + 0 - 1 = 30, rshift_round(3 * 2^30, 30) = 3; zp_o = -1 gives 2.
    p = AttentionParams(1 << 30, 1, 0.3, 0, 1 << 30, 1, -1)
    q, k, v = [[1]], [[1], [1]], [[2], [3]]
    assert attention_int8(q, k, v, p, G=0).tolist() == [[2]]
    # Negative: V = [[-2], [-3]]: round(-2.5) = -2 (toward +inf), then -2 - 1 = -3.
    assert attention_int8(q, k, [[-2], [-3]], p, G=0).tolist() == [[-3]]
    # G = 16 rounds only once, at the output: 2.5 * 2^16 exactly, rshift_round(.., 46) = 3.
    assert attention_int8(q, k, v, p, G=16).tolist() == [[2]]


def test_hand_computed_scores_both_roundings():
    # acc = -3 * 2 = -6 with M0_s = 2^30, sh_s = -1 (real multiplier 1/4): the real score is
    # -1.5. Single rounding, ties toward +inf: -1. Double rounding: SRDHM(-6, 2^30) truncates
    # -3.4999... to -3, then RoundingDivideByPOT(-3, 1) rounds -1.5 away from zero: -2.
    p = AttentionParams(1 << 30, -1, 0.1, 0, 1 << 30, 0, 0)
    assert attention_scores([[-3]], [[2]], p).tolist() == [[-1]]
    assert attention_scores([[-3]], [[2]], p, rounding="double").tolist() == [[-2]]
    # Saturation of the scores: acc = 127 * 127 = 16129 times 1/4 clamps to 127; negated, -128.
    assert attention_scores([[127]], [[127], [-127]], p).tolist() == [[127, -128]]


def test_scores_match_the_numerics_rule():
    rng = np.random.default_rng(1)
    for d, (m0, sh) in [(1, (1 << 30, 1)), (8, (1518500250, -6)), (64, (1 << 30, -12)),
                        (16, (2147483647, -31)), (4, (0, 0))]:
        q, k, _ = rand_head(rng, 5, 9, d)
        p = AttentionParams(m0, sh, 0.05, 0, 1 << 30, 0, 0)
        got = attention_scores(q, k, p)
        assert got.dtype == np.int8 and got.shape == (5, 9)
        np.testing.assert_array_equal(got, ref_scores(q, k, m0, sh))


# --------------------------------------------------------------------------------------------
# parameters


def test_attention_params_by_hand():
    # r_s = 0.5 * 0.25 / (sqrt(4) * 1/16) = 1 = 2^30 * 2^(1 - 31); r_o = 0.1 / 0.2 = 1/2.
    p = attention_params(0.5, 0.25, 0.1, 1 / 16, 0.2, 4, zp_v=-3, zp_o=7)
    assert p == AttentionParams(score_multiplier=1 << 30, score_shift=1, c=0.0625, zp_v=-3,
                                out_multiplier=1 << 30, out_shift=0, zp_o=7)
    # d = 2: r_s = 0.125 / (sqrt 2 / 16) = sqrt 2 = 0.70710678... * 2^1: M0 = round(0.7071 2^31)
    p = attention_params(0.5, 0.25, 0.3, 1 / 16, 0.1, 2)
    assert (p.score_multiplier, p.score_shift) == (round(math.sqrt(0.5) * 2 ** 31), 1)
    # r_o = 3 (0.3 / 0.1 in double is 2.9999999999999996 = 0.7499999999999999 * 2^2)
    assert (p.out_multiplier, p.out_shift) == (round(0.75 * 2 ** 31), 2)
    # float32 scales are promoted exactly
    p32 = attention_params(np.float32(0.1), np.float32(0.2), 0.1, np.float32(0.01), 0.1, 64)
    r = float(np.float32(0.1)) * float(np.float32(0.2)) / (8.0 * float(np.float32(0.01)))
    mant, e = math.frexp(r)
    assert (p32.score_multiplier, p32.score_shift) == (math.floor(mant * 2 ** 31 + 0.5), e)
    assert p32.c == float(np.float32(0.01))


def test_calibrate_score_scale():
    q = np.array([[3, 4]], np.int8)
    k = np.array([[4, -3], [-3, -4]], np.int8)  # Q.K^T = [0, -25]
    assert calibrate_score_scale(q, k, 0.1, 0.2) == 25 * 0.1 * 0.2 / math.sqrt(2) / 127
    assert calibrate_score_scale(q, k, 0.1, 0.2, 2) == 25 * 0.1 * 0.2 / math.sqrt(2) / 127
    # no product: the fallback is one accumulator step per score step
    assert calibrate_score_scale(np.zeros((2, 2), np.int8), k, 0.1, 0.2) == \
        0.1 * 0.2 / math.sqrt(2)
    p = attention_params(0.1, 0.2, 1.0, calibrate_score_scale(np.zeros((2, 2), np.int8), k,
                                                              0.1, 0.2), 1.0, 2)
    assert (p.score_multiplier, p.score_shift) == (1 << 30, 1)  # exactly 1
    # the calibrated scale maps the largest |score| to 127
    rng = np.random.default_rng(2)
    for d in (1, 8, 64):
        q, k, _ = rand_head(rng, 7, 30, d)
        ss = calibrate_score_scale(q, k, 0.03, 0.04)
        p = attention_params(0.03, 0.04, 0.05, ss, 0.05, d)
        assert np.abs(attention_scores(q, k, p).astype(int)).max() == 127


def test_attention_mask():
    causal = attention_mask(3, 4, causal=True)
    assert causal.tolist() == [[True, False, False, False], [True, True, False, False],
                               [True, True, True, False]]
    pad = np.array([True, False, True, True])
    assert attention_mask(3, 4, pad, causal=True).tolist() == [
        [True, False, False, False], [True, False, False, False], [True, False, True, False]]
    assert attention_mask(2, 2, np.array([[True, False], [False, False]])).tolist() == \
        [[True, False], [False, False]]
    assert attention_mask(2, 0).shape == (2, 0)
    # more queries than keys: from query N - 1 on, every key
    assert attention_mask(4, 2, causal=True).tolist() == [[True, False]] + [[True, True]] * 3


# --------------------------------------------------------------------------------------------
# osi8.md A1: the F x B x d grid against the exact attention within the bound


@pytest.mark.parametrize("d", [1, 8, 64])
@pytest.mark.parametrize("B", [1, 4, 16])
@pytest.mark.parametrize("F", [16, 20, 24])
def test_a1_grid_within_bound(F, B, d):
    rng = np.random.default_rng(100 * F + 10 * B + d)
    n_q, n_k = 6, 101  # 101 keys: a ragged last tile for B = 4 and 16
    q, k, v = rand_head(rng, n_q, n_k, d)
    zp_v, zp_o = int(rng.integers(-20, 21)), int(rng.integers(-20, 21))
    sq, sk = 0.02, 0.03
    ss = calibrate_score_scale(q, k, sq, sk) * float(rng.choice([0.5, 1.0, 2.0]))
    p = attention_params(sq, sk, 0.05, ss, 0.05 / 0.45, d, zp_v=zp_v, zp_o=zp_o)
    check_within_bound(q, k, v, p, F, B)
    # with a padding mask and a fully masked query row
    mask = rng.random((n_q, n_k)) < 0.7
    mask[3] = False
    check_within_bound(q, k, v, p, F, B, mask=mask)
    o = attention_int8(q, k, v, p, F=F, B=B, mask=mask)
    assert o.dtype == np.int8 and o.shape == (n_q, d)
    assert o[3].tolist() == [zp_o] * d
    # R of the model's state = R counted here = attention_rescales
    states = attention_state(q, k, v, p, F=F, B=B, mask=mask)
    s = attention_scores(q, k, p)
    r_here = [tile_rescales(s[i], mask[i], B) for i in range(n_q)]
    assert [st.rescales for st in states] == r_here
    assert attention_rescales(q, k, p, B=B, mask=mask).tolist() == r_here


def test_a1_rescales_happen_and_stay_within_bound():
    # Increasing scores with B = 1: a rescale at every key whose score is a new maximum.
    rng = np.random.default_rng(3)
    n = 200
    k = np.sort(rng.integers(-127, 128, n)).astype(np.int8)[:, None]
    q = np.array([[1]], np.int8)
    v = rng.integers(-128, 128, (n, 1)).astype(np.int8)
    for c in (0.01, 0.05):
        p = AttentionParams(1 << 30, 1, c, -7, 1518500250, 0, 3)  # scores = keys; M = 0.707
        r = attention_rescales(q, k, p, B=1)[0]
        assert r == len(np.unique(k)) - 1 and r > 100
        for F in (16, 24):
            check_within_bound(q, k, v, p, F, 1)


@pytest.mark.parametrize("G", [0, 4, 8, 30])
def test_a1_other_quotient_bits(G):
    rng = np.random.default_rng(4 + G)
    q, k, v = rand_head(rng, 3, 40, 8)
    p = attention_params(0.02, 0.03, 0.05, calibrate_score_scale(q, k, 0.02, 0.03), 0.1, 8,
                         zp_v=5, zp_o=-9)
    check_within_bound(q, k, v, p, 24, 16, G=G)


# --------------------------------------------------------------------------------------------
# osi8.md A7: constant V


@pytest.mark.parametrize("B", [1, 16])
def test_a7_constant_v(B):
    rng = np.random.default_rng(7 + B)
    n_q, n_k, d = 6, 300, 3
    q, k, _ = rand_head(rng, n_q, n_k, d)
    ss = calibrate_score_scale(q, k, 0.02, 0.03)
    checked = 0
    for v_val, zp_v, s_v, s_o, zp_o in [(127, -128, 0.05, 0.05 / 0.45, 10),
                                        (-128, 127, 0.05, 0.05 / 0.9, 3),
                                        (100, 3, 0.05, 0.05 / 1.37, -20),
                                        (-77, 0, 0.01, 0.03, 0),
                                        (5, 5, 0.05, 0.07, 17),
                                        (127, 0, 0.05, 0.01, 0)]:  # M = 5: saturates at 127
        p = attention_params(0.02, 0.03, s_v, ss, s_o, d, zp_v=zp_v, zp_o=zp_o)
        v = np.full((n_k, d), v_val, np.int8)
        o = attention_int8(q, k, v, p, B=B)
        # osi8.md A7: clamp(zp_o + rshift_round((v - zp_v) M0, 31 - sh), -128, 127)
        x = (v_val - zp_v) * p.out_multiplier
        expect = min(max(zp_o + ((x + (1 << (30 - p.out_shift))) >> (31 - p.out_shift)), -128),
                     127)
        assert o.tolist() == [[expect] * d] * n_q, (v_val, zp_v)
        checked += 1
    assert checked == 6
    assert attention_rescales(q, k, p, B=B).sum() > 0  # the rescales were exercised


# --------------------------------------------------------------------------------------------
# osi8.md A8: long context, and the int8-probability pipeline that fails there


def int8_p_attention(scores, v, zp_v, c, params):
    """Emulation: probabilities rounded to int8 (scale 1/256, zero point -128), then P.V.

    ``p`` is the float64 softmax of ``c * s`` (the best an int8-P design can do);
    ``y = clamp(round_half_up(256 p) - 128, -128, 127)``; the P.V product is exact,
    ``sum_j (y_j + 128) (v_j - zp_v)`` at scale ``S_v / 256``, requantized with ``M0_o, sh_o``.
    """
    w = np.asarray(v, np.int64) - zp_v
    out = []
    for row in np.asarray(scores, np.float64):
        x = c * row
        prob = np.exp(x - x.max())
        prob /= prob.sum()
        y = np.clip(np.floor(256 * prob + 0.5) - 128, -128, 127).astype(np.int64)
        acc = [int(a) for a in (y + 128) @ w]
        sh = 31 - params.out_shift + 8
        out.append([min(max(params.zp_o + ((a * params.out_multiplier + (1 << (sh - 1))) >> sh),
                            -128), 127) for a in acc])
    return np.array(out)


@pytest.mark.parametrize("n", [1024, 4096])
def test_a8_long_context(n):
    rng = np.random.default_rng(n)
    d = 4
    q, k, _ = rand_head(rng, 2, n, d)
    v = rng.integers(0, 128, (n, d)).astype(np.int8)  # v - zp_v in [128, 255]
    zp_v, zp_o = -128, -100
    cases = [
        # uniform attention: every score equal
        (np.zeros((1, d), np.int8), 0.05),
        # random scores with a narrow real range: most p are far below 1/512
        (q, 0.02),
    ]
    for qq, c in cases:
        p = AttentionParams(1518500250, -10, c, zp_v, 1 << 30, 0, zp_o)  # M = 1/2
        s = attention_scores(qq, k, p)
        assert check_within_bound(qq, k, v, p, 24, 16) < 0.54  # the bound: 0.531 + 3R/2^26
        ref = exact_attention(s, np.ones(s.shape, bool), v, zp_v, c, 0.5, zp_o)
        bad = int8_p_attention(s, v, zp_v, c, p)
        err = np.abs(bad - ref).max()
        assert err > 20, err  # tens of LSB (about 95 on uniform rows): the int8-P pipeline fails


# --------------------------------------------------------------------------------------------
# osi8.md A9: masks


@pytest.mark.parametrize("B", [1, 4, 16])
def test_a9_causal_equals_prefixes(B):
    rng = np.random.default_rng(90 + B)
    n, d = 37, 3
    q, k, v = rand_head(rng, n + 3, n, d)  # more queries than keys
    p = attention_params(0.02, 0.03, 0.05, calibrate_score_scale(q, k, 0.02, 0.03), 0.08, d,
                         zp_v=-4, zp_o=6)
    o = attention_int8(q, k, v, p, B=B, causal=True)
    for i in range(n + 3):
        top = min(i + 1, n)  # keys 0 .. i: the tiles of the prefix are the same tiles
        np.testing.assert_array_equal(o[i], attention_int8(q[i:i + 1], k[:top], v[:top], p,
                                                           B=B)[0])
    check_within_bound(q, k, v, p, 24, B, causal=True)
    # causal ANDed with a padding mask (N,) and with a per-query mask (M, N)
    pad = rng.random(n) < 0.8
    pad[0] = False  # query 0 then attends nothing
    o = attention_int8(q, k, v, p, B=B, causal=True, mask=pad)
    assert o[0].tolist() == [6] * d
    for i in range(1, n + 3):
        sel = [j for j in range(min(i + 1, n)) if pad[j]]
        if sel:
            np.testing.assert_array_equal(
                o[i], attention_int8(q[i:i + 1], k[:min(i + 1, n)], v[:min(i + 1, n)], p, B=B,
                                     mask=pad[:min(i + 1, n)])[0])
    full = np.broadcast_to(pad, (n + 3, n)).copy()
    np.testing.assert_array_equal(o, attention_int8(q, k, v, p, B=B, causal=True, mask=full))


@pytest.mark.parametrize("B", [1, 4, 16])
def test_a9_masked_127_changes_nothing(B):
    rng = np.random.default_rng(95 + B)
    n, d = 40, 2
    q = rng.integers(5, 21, (4, d)).astype(np.int8)  # positive queries
    k = rng.integers(-5, 6, (n, d)).astype(np.int8)  # small keys: |Q.K| <= 200
    v = rng.integers(-128, 128, (n, d)).astype(np.int8)
    j_big = 17
    k[j_big] = 127  # Q.K >= 127 * 10 there
    p = AttentionParams(1 << 30, -2, 0.1, 0, 1 << 30, -1, 0)  # scores = acc / 8; M = 1/4
    s = attention_scores(q, k, p)
    assert (s[:, j_big] == 127).all() and (np.abs(np.delete(s, j_big, axis=1)) <= 25).all()
    mask = np.ones(n, bool)
    mask[j_big] = False
    o = attention_int8(q, k, v, p, B=B, mask=mask)
    # whatever the masked slot holds, the result is the same
    for k_j, v_j in [(0, 0), (-k[j_big], v[j_big]), (k[j_big], -v[j_big])]:
        k2, v2 = k.copy(), v.copy()
        k2[j_big], v2[j_big] = k_j, v_j
        np.testing.assert_array_equal(o, attention_int8(q, k2, v2, p, B=B, mask=mask))
    # the state never saw the 127: the max stays at most 25
    assert all(st.m <= 25 for st in attention_state(q, k, v, p, B=B, mask=mask))
    check_within_bound(q, k, v, p, 24, B, mask=mask)
    # teeth: unmasked, the 127 dominates (the others weigh at most 39 e^-10.2 < 0.0015)
    unmasked = attention_int8(q, k, v, p, B=B)
    assert not np.array_equal(unmasked, o)
    expect = np.floor(v[j_big].astype(np.float64) / 4 + 0.5)
    assert (np.abs(unmasked - expect) <= 1).all()


def test_a9_fully_masked_rows_and_tiles():
    rng = np.random.default_rng(99)
    q, k, v = rand_head(rng, 4, 33, 5)
    p = attention_params(0.02, 0.03, 0.05, calibrate_score_scale(q, k, 0.02, 0.03), 0.1, 5,
                         zp_v=2, zp_o=-37)
    mask = np.ones((4, 33), bool)
    mask[1] = False  # a fully masked row
    mask[2, :16] = False  # a fully masked first tile
    mask[3, 16:32] = False  # a fully masked middle tile
    o = attention_int8(q, k, v, p, mask=mask)
    assert o[1].tolist() == [-37] * 5
    st = attention_state(q, k, v, p, mask=mask)
    assert (st[1].m, st[1].L, st[1].A, st[1].rescales) == (None, 0, (0,) * 5, 0)
    check_within_bound(q, k, v, p, 24, 16, mask=mask)
    # a fully masked tile changes nothing: row 2 equals the row without its first 16 keys
    np.testing.assert_array_equal(o[2], attention_int8(q[2:3], k[16:], v[16:], p)[0])
    # all rows masked, and no key at all
    assert attention_int8(q, k, v, p, mask=np.zeros(33, bool)).tolist() == [[-37] * 5] * 4
    empty = np.zeros((0, 5), np.int8)
    assert attention_int8(q, empty, empty, p).tolist() == [[-37] * 5] * 4
    assert attention_int8(empty, k, v, p).shape == (0, 5)


# --------------------------------------------------------------------------------------------
# osi8.md A10: N = N_max equal scores, V at +-max


N_MAX = 32768


@pytest.mark.parametrize("zp_v, zp_o, sv_so, expect", [
    # w = v - zp_v per lane: [127, -128] with zp_v = 0, M = 1: in range at zp_o = 0
    (0, 0, 1.0, [127, -128]),
    # zp_v = -128: w = [255, 0]; zp_o + 255 saturates at 127; the other lane is zp_o
    (-128, -5, 1.0, [127, -5]),
    # zp_v = 127: w = [0, -255]: saturates at -128
    (127, 9, 1.0, [9, -128]),
    # zp_v = 0, M = 1/4: w / 4 = [31.75, -32] -> [32, -32], + 60 = [92, 28]
    (0, 60, 0.25, [92, 28]),
])
def test_a10_n_max_equal_scores(zp_v, zp_o, sv_so, expect):
    d = 2
    q = np.array([[3, -1]], np.int8)
    k = np.tile(np.array([[5, 7]], np.int8), (N_MAX, 1))  # every score equal
    v = np.tile(np.array([[127, -128]], np.int8), (N_MAX, 1))
    p = attention_params(0.02, 0.03, 0.05, 0.0003, 0.05 / sv_so, d, zp_v=zp_v, zp_o=zp_o)
    o = attention_int8(q, k, v, p)
    assert o.tolist() == [expect]
    # the state: L = N * 2^F = 2^39 exactly (fits W_L = 40); A_c = N * 2^F * w_c, |A_c| < 2^47
    # (fits W_A = 48 signed): no wrap
    (st,) = attention_state(q, k, v, p)
    w = [127 - zp_v, -128 - zp_v]
    assert st.L == N_MAX << 24 == 1 << 39
    assert list(st.A) == [N_MAX * (1 << 24) * x for x in w]
    W = widths(24, N_MAX, 16)
    assert st.L < 1 << W["W_L"] and all(-(1 << (W["W_A"] - 1)) <= a < 1 << (W["W_A"] - 1)
                                        for a in st.A)


def test_a10_n_max_extremes_in_one_row():
    # Equal scores, V alternating +127 / -128 with zp_v = -128: w alternates 255 / 0, the mean
    # is 127.5 exactly; M = 1/2: 63.75 -> 64 (zp_o = 0). And the largest possible |A_c|:
    # every w = -255 (v = -128, zp_v = 127) gives A = -255 * 2^39.
    q = np.array([[0]], np.int8)
    k = np.zeros((N_MAX, 1), np.int8)
    v = np.where(np.arange(N_MAX) % 2 == 0, 127, -128).astype(np.int8)[:, None]
    p = AttentionParams(1 << 30, 0, 0.05, -128, 1 << 30, 0, 0)
    assert attention_int8(q, k, v, p).tolist() == [[64]]
    p = AttentionParams(1 << 30, 0, 0.05, 127, 1 << 30, 0, 0)
    v = np.full((N_MAX, 1), -128, np.int8)
    (st,) = attention_state(q, k, v, p)
    assert st.A == (-255 << 39,) and (-255 << 39) >= -(1 << 47)
    # M = 1/2: -255 / 2 = -127.5, and rshift_round ties toward +inf: -127
    assert attention_int8(q, k, v, p).tolist() == [[-127]]
    p = AttentionParams(1 << 30, 0, 0.05, 127, 1 << 30, -1, 0)  # M = 1/4: -63.75 -> -64
    assert attention_int8(q, k, v, p).tolist() == [[-64]]


# --------------------------------------------------------------------------------------------
# rescale counts for the cycle model


def brute_tile_rescales(s, keep, B, q_block):
    """Per block, tiles where some query of the block has t > m with m valid (written out)."""
    m_q, n = s.shape
    out = []
    for b0 in range(0, m_q, q_block):
        rows = range(b0, min(b0 + q_block, m_q))
        m = {i: None for i in rows}
        count = 0
        for t0 in range(0, n, B):
            hit = False
            for i in rows:
                tile = [int(s[i, j]) for j in range(t0, min(t0 + B, n)) if keep[i, j]]
                if not tile:
                    continue
                t = max(tile)
                if m[i] is None:
                    m[i] = t
                elif t > m[i]:
                    m[i], hit = t, True
            count += hit
        out.append(count)
    return out


def test_tile_rescales_by_hand():
    # Two queries in one block, B = 2, keys in tiles [0,1] [2,3] [4,5]:
    # query 0: tile maxima 1, 5, 3 -> a rescale at tile 1; query 1: 4, 2, 6 -> at tile 2.
    s = np.array([[0, 1, 5, -3, 3, 2], [4, 0, 2, 1, 6, -1]], np.int8)
    assert attention_tile_rescales(s, None, 2, 2).tolist() == [2]
    assert attention_tile_rescales(s, None, 2, 1).tolist() == [1, 1]
    # query 0 masked on tile 0: tile 1 sets m (no rescale), tile 2 lower: nothing
    mask = np.array([[False, False, True, True, True, True], [True] * 6])
    assert attention_tile_rescales(s, mask, 2, 2).tolist() == [1]
    assert attention_tile_rescales(s, mask, 2, 1).tolist() == [0, 1]
    # one tile of 6 keys: never a rescale
    assert attention_tile_rescales(s, None, 6, 2).tolist() == [0]
    # causal: query 0 sees key 0 only; query 1 keys 0, 1 (one tile of B = 2): no rescale
    assert attention_tile_rescales(s, None, 2, 2, causal=True).tolist() == [0]
    assert attention_tile_rescales(np.zeros((5, 0), np.int8), None, 4, 2).tolist() == [0, 0, 0]


@pytest.mark.parametrize("B, q_block", [(1, 1), (4, 3), (16, 4), (5, 64)])
def test_tile_rescales_against_brute_force(B, q_block):
    rng = np.random.default_rng(B * 100 + q_block)
    m_q, n = 11, 70
    s = rng.integers(-128, 128, (m_q, n)).astype(np.int8)
    s[2] = np.sort(s[2])  # increasing: a rescale at most tiles
    mask = rng.random((m_q, n)) < 0.8
    mask[5] = False
    for mk, causal in [(None, False), (mask, False), (mask, True), (mask[0], True)]:
        keep = attention_mask(m_q, n, mk, causal)
        got = attention_tile_rescales(s, mk, B, q_block, causal=causal)
        assert got.tolist() == brute_tile_rescales(s, keep, B, q_block)
        per_row = [tile_rescales(s[i], keep[i], B) for i in range(m_q)]
        for b, g in enumerate(got):
            block = per_row[b * q_block:(b + 1) * q_block]
            assert max(block) <= g <= min(sum(block), -(-n // B) - 1)


# --------------------------------------------------------------------------------------------
# the float reference


def test_attention_float_against_a_loop():
    rng = np.random.default_rng(11)
    q, k, v = rand_head(rng, 4, 9, 3)
    mask = rng.random((4, 9)) < 0.6
    mask[2] = False
    got = attention_float(q, k, v, 0.02, 0.03, 0.05, mask=mask, causal=True, zp_v=-7)
    for i in range(4):
        keys = [j for j in range(9) if mask[i, j] and j <= i]
        if not keys:
            assert got[i].tolist() == [0.0] * 3
            continue
        x = [sum(0.02 * int(a) * 0.03 * int(b) for a, b in zip(q[i], k[j])) / math.sqrt(3)
             for j in keys]
        e = [math.exp(t - max(x)) for t in x]
        for ch in range(3):
            want = sum(ej * 0.05 * (int(v[j, ch]) + 7) for ej, j in zip(e, keys)) / sum(e)
            assert abs(got[i, ch] - want) < 1e-12


# --------------------------------------------------------------------------------------------
# errors


P = AttentionParams(1 << 30, 0, 0.1, 0, 1 << 30, 0, 0)
Q2 = np.zeros((2, 3), np.int8)
K4 = np.zeros((4, 3), np.int8)


@pytest.mark.parametrize("call, exc, message", [
    (lambda: attention_int8(np.zeros(3, np.int8), K4, K4, P), ValueError,
     "q must be a 2-D (M, d) array, not shape (3,)"),
    (lambda: attention_int8(Q2.astype(float), K4, K4, P), ValueError,
     "q must hold int8 values in [-128, 127], not an array of dtype float64"),
    (lambda: attention_int8([[0, 0, 128], [0, 0, 0]], K4, K4, P), ValueError,
     "q must hold int8 values in [-128, 127]; q[0, 2] = 128"),
    (lambda: attention_int8(Q2, np.zeros((4, 2), np.int8), K4, P), ValueError,
     "k must have d = 3 columns like q, not shape (4, 2)"),
    (lambda: attention_int8(Q2, K4, np.zeros((5, 3), np.int8), P), ValueError,
     "v must have shape (N, d) = (4, 3) like k, not (5, 3)"),
    (lambda: attention_int8(Q2, K4, [[0, 0, -129]] * 4, P), ValueError,
     "v must hold int8 values in [-128, 127]; v[0, 2] = -129"),
    (lambda: attention_int8(np.zeros((2, 0), np.int8), K4, K4, P), ValueError,
     "q must have at least one column"),
    (lambda: attention_int8(Q2, K4, K4, P, mask=np.ones(4, int)), ValueError,
     "mask must be a bool array (True = attend), not an array of dtype int64"),
    (lambda: attention_int8(Q2, K4, K4, P, mask=np.ones((4, 2), bool)), ValueError,
     "mask must have shape (M, N) = (2, 4) or (N,) = (4,), not (4, 2)"),
    (lambda: attention_int8(Q2, K4, K4, P, causal=1), TypeError, "causal must be a bool, not 1"),
    (lambda: attention_int8(Q2, K4, K4, (1, 2)), TypeError,
     "params must be an AttentionParams, not tuple"),
    (lambda: attention_int8(Q2, K4, K4, P, F=7), ValueError, "F must be in [8, 30], not 7"),
    (lambda: attention_int8(Q2, K4, K4, P, B=0), ValueError, "B must be in [1, inf], not 0"),
    (lambda: attention_int8(Q2, K4, K4, P, G=62), ValueError, "G must be in [0, 61], not 62"),
    (lambda: attention_int8(Q2, K4, K4, P, G=16.0), TypeError, "G must be an integer"),
    (lambda: attention_int8(Q2, K4, K4, AttentionParams(1 << 30, 0, 0.1, 0, 1 << 30, 47, 0)),
     ValueError, "out_shift = 47 gives k = 31 + G - out_shift = 0 for G = 16, outside [1, 62]"),
    (lambda: attention_int8(Q2, K4, K4, AttentionParams(1 << 30, 0, 0.1, 0, 1 << 30, -16, 0)),
     ValueError, "gives k = 31 + G - out_shift = 63 for G = 16"),
    (lambda: attention_int8(Q2, K4, K4, P, rounding="half"), ValueError,
     "rounding must be 'single' or 'double'"),
    (lambda: attention_scores(Q2, K4.T, P), ValueError, "k must have d = 3 columns like q"),
    (lambda: AttentionParams(5, 0, 0.1, 0, 1 << 30, 0, 0), ValueError,
     "score_multiplier must be 0 or in [2^30, 2^31 - 1] = [1073741824, 2147483647], not 5"),
    (lambda: AttentionParams(1 << 30, 31, 0.1, 0, 1 << 30, 0, 0), ValueError,
     "score_shift must be in [-31, 30], not 31"),
    (lambda: AttentionParams(1 << 30, 0, 0.0, 0, 1 << 30, 0, 0), ValueError,
     "c must be positive and finite, not 0.0"),
    (lambda: AttentionParams(1 << 30, 0, "0.1", 0, 1 << 30, 0, 0), TypeError,
     "c must be a real number"),
    (lambda: AttentionParams(1 << 30, 0, 0.1, 128, 1 << 30, 0, 0), ValueError,
     "zp_v must be in [-128, 127], not 128"),
    (lambda: AttentionParams(1 << 30, 0, 0.1, 0, 0, 0, 0), ValueError,
     "out_multiplier must be in [2^30, 2^31 - 1]"),
    (lambda: AttentionParams(1 << 30, 0, 0.1, 0, 1 << 30, 0.5, 0), TypeError,
     "out_shift must be an integer, not 0.5"),
    (lambda: AttentionParams(1 << 30, 0, 0.1, 0, 1 << 30, 0, -129), ValueError,
     "zp_o must be in [-128, 127], not -129"),
    (lambda: AttentionParams(True, 0, 0.1, 0, 1 << 30, 0, 0), TypeError,
     "score_multiplier must be an integer"),
    (lambda: attention_params(0.1, 0.1, 0.1, 0.0, 0.1, 4), ValueError,
     "scale_s must be positive and finite, not 0.0"),
    (lambda: attention_params(0.1, -1, 0.1, 0.1, 0.1, 4), ValueError,
     "scale_k must be positive and finite"),
    (lambda: attention_params(0.1, 0.1, 0.1, 0.1, 0.1, 0), ValueError, "d must be in [1, inf]"),
    (lambda: attention_params(0.1, 0.1, 0.1, 1e-20, 0.1, 4), ValueError,
     "score multiplier scale_q * scale_k / (sqrt(d) * scale_s) = "),
    (lambda: attention_params(0.1, 0.1, 1e-12, 0.1, 1.0, 4), ValueError,
     "output multiplier scale_v / scale_out = 1e-12 is below 2^-32"),
    (lambda: attention_params(0.1, 0.1, 0.1, 0.1, 0.1, 4, zp_o=200), ValueError,
     "zp_o must be in [-128, 127], not 200"),
    (lambda: calibrate_score_scale(Q2, K4, 0.1, 0.1, d=4), ValueError,
     "d must equal the 3 columns of q, not 4"),
    (lambda: attention_tile_rescales(np.zeros((2, 3)), None, 4, 2), ValueError,
     "scores must hold int8 values in [-128, 127], not an array of dtype float64"),
    (lambda: attention_tile_rescales(np.full((2, 3), 200), None, 4, 2), ValueError,
     "scores must hold int8 values in [-128, 127]; scores[0, 0] = 200"),
    (lambda: attention_tile_rescales(np.zeros(3, np.int8), None, 4, 2), ValueError,
     "scores must be a 2-D (M, N) array, not shape (3,)"),
    (lambda: attention_tile_rescales(np.zeros((2, 3), np.int8), None, 4, 0), ValueError,
     "q_block must be in [1, inf], not 0"),
    (lambda: attention_tile_rescales(np.zeros((2, 3), np.int8), np.ones(2, bool), 4, 1),
     ValueError, "mask must have shape (M, N) = (2, 3) or (N,) = (3,), not (2,)"),
    (lambda: attention_float(Q2, K4, K4, 0.1, 0.1, 0.1, zp_v=300), ValueError,
     "zp_v must be in [-128, 127], not 300"),
])
def test_errors_are_one_line_and_name_the_argument(call, exc, message):
    with pytest.raises(exc) as info:
        call()
    text = str(info.value)
    assert message in text and "\n" not in text


def test_params_are_frozen_and_normalised():
    p = AttentionParams(np.int64(1 << 30), np.int32(-3), np.float32(0.25), np.int8(-2),
                        (1 << 31) - 1, 5, 0)
    assert type(p.score_multiplier) is int and type(p.score_shift) is int
    assert type(p.c) is float and p.c == 0.25 and type(p.zp_v) is int
    with pytest.raises(AttributeError):
        p.zp_o = 3
    assert p.output_shift(16) == 42 and p.output_shift(0) == 26
