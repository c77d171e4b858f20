"""Golden GEMM and requantization models (sim.golden.gemm) against docs/numerics.md.

The expected values below are worked out by hand from the rules in numerics.md, in the comments
next to each vector; none of them was copied from the code under test. Random inputs almost never
hit a rounding tie, so the ties, the shift extremes and the accumulator extremes are all here as
explicit vectors. A second, independent formulation of both rounding modes with exact fractions
(``_ref_single`` / ``_ref_double``) then covers wide random inputs.
"""

import math
from fractions import Fraction

import numpy as np
import pytest

from npugen.sim.golden import (
    acc_width_for,
    check_accumulator_bound,
    effective_scale,
    fold_zero_point,
    gemm_int8,
    matmul_int8,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    real_multiplier,
    requantize,
)

P30, P31 = 1 << 30, 1 << 31


# --------------------------------------------------------------------------------------------
# quantize_multiplier (TFLite QuantizeMultiplier, numerics.md steps 2-4)

QM_VECTORS = [
    # r = 0.5: frexp -> (0.5, 0); 0.5 * 2^31 = 2^30.
    (0.5, (P30, 0)),
    # r = 1.0: frexp -> (0.5, 1); M0 = 2^30, sh = 1.
    (1.0, (P30, 1)),
    # r = 0.25: frexp -> (0.5, -1).
    (0.25, (P30, -1)),
    # r = 0.75: frexp -> (0.75, 0); 0.75 * 2^31 = 3 * 2^29 = 1610612736.
    (0.75, (1610612736, 0)),
    # r = (2^30 + 0.5) / 2^31: q = r, e = 0; q * 2^31 = 2^30 + 0.5, a tie: half AWAY from zero
    # gives 2^30 + 1 (half-to-even would give 2^30).
    ((P30 + 0.5) / P31, (P30 + 1, 0)),
    # (2^30 + 2.5) / 2^31 -> 2^30 + 2.5 -> 2^30 + 3 (half-to-even would give 2^30 + 2).
    ((P30 + 2.5) / P31, (P30 + 3, 0)),
    # r = 1 - 2^-31: q = r, e = 0; q * 2^31 = 2^31 - 1 exactly: the largest M0.
    (1 - 2.0**-31, (P31 - 1, 0)),
    # r = 1 - 3 * 2^-33: q * 2^31 = 2^31 - 0.75 = 2147483647.25 -> 2^31 - 1.
    (1 - 3 * 2.0**-33, (P31 - 1, 0)),
    # r = 1 - 2^-32: q * 2^31 = 2^31 - 0.5, a tie -> away -> 2^31: renormalise to 2^30, e + 1.
    (1 - 2.0**-32, (P30, 1)),
    # r = 1 - 2^-33: q * 2^31 = 2^31 - 0.25 -> 2^31 -> renormalise (2^30, 1).
    (1 - 2.0**-33, (P30, 1)),
    # r = 2^-32: frexp -> (0.5, -31): the smallest shift that is kept.
    (2.0**-32, (P30, -31)),
    # r = 0.75 * 2^-32: frexp -> (0.75, -32); e < -31 -> flush to (0, 0).
    (0.75 * 2.0**-32, (0, 0)),
    # r = 2^-33: frexp -> (0.5, -32) -> flush.
    (2.0**-33, (0, 0)),
    # r = (1 - 2^-40) * 2^-32: frexp -> (1 - 2^-40, -32); q * 2^31 = 2^31 - 2^-9 rounds to 2^31,
    # renormalises to (2^30, -31) BEFORE the flush test, so it is kept (TFLite's order).
    ((1 - 2.0**-40) * 2.0**-32, (P30, -31)),
    # r = 0: frexp -> (0, 0); M0 = 0, sh = 0.
    (0.0, (0, 0)),
    # r = 2^29: frexp -> (0.5, 30): the largest shift accepted.
    (2.0**29, (P30, 30)),
    # r = 2^30 - 0.5 = (1 - 2^-31) * 2^30: q * 2^31 = 2^31 - 1, e = 30: accepted.
    (2.0**30 - 0.5, (P31 - 1, 30)),
    # float32 0.1 is 13421773 * 2^-27 = (13421773 / 2^24) * 2^-3: q * 2^31 = 13421773 * 2^7
    # = 1717986944 exactly, e = -3.
    (np.float32(0.1), (1717986944, -3)),
    # double 0.1 is 7205759403792794 * 2^-56: q * 2^31 = 7205759403792794 / 2^22
    # = 1717986918.40000009... -> 1717986918, e = -3.
    (0.1, (1717986918, -3)),
]


@pytest.mark.parametrize("r, expected", QM_VECTORS)
def test_quantize_multiplier_vectors(r, expected):
    m0, sh = quantize_multiplier(r)
    assert (m0, sh) == expected
    assert type(m0) is int and type(sh) is int


def test_quantize_multiplier_array():
    # same rules elementwise; see QM_VECTORS for each value.
    m0, sh = quantize_multiplier(np.array([0.5, 1.0, 2.0**-33, 1 - 2.0**-32]))
    assert m0.dtype == np.int64 and sh.dtype == np.int64
    assert m0.tolist() == [P30, P30, 0, P30]
    assert sh.tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize("r", [
    2.0**30,                   # frexp -> (0.5, 31): shift 31 > 30
    (1 - 2.0**-40) * 2.0**30,  # e = 30, but M0 rounds to 2^31 and renormalises to e = 31
    1e300,
])
def test_quantize_multiplier_rejects_huge(r):
    with pytest.raises(ValueError, match=r"needs shift \d+, outside the supported range "
                                         r"\[-31, 30\]"):
        quantize_multiplier(r)


@pytest.mark.parametrize("r, exc, msg", [
    (-0.5, ValueError, "finite and non-negative"),
    (float("nan"), ValueError, "finite and non-negative"),
    (float("inf"), ValueError, "finite and non-negative"),
    ("0.5", TypeError, "must be a real number"),
    (True, TypeError, "must be a real number"),
])
def test_quantize_multiplier_rejects_bad_input(r, exc, msg):
    with pytest.raises(exc, match=msg):
        quantize_multiplier(r)


# --------------------------------------------------------------------------------------------
# effective scale: float32 scales promoted to double before the product (numerics.md step 1)

F32 = np.float32(1 + 2.0**-12)  # exactly representable in float32


def test_float32_product_differs_from_double_product():
    # (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24 exactly in double. In float32 (24-bit significand,
    # ulp 2^-23 at 1) it is halfway between 1 + 2^-11 and 1 + 2^-11 + 2^-23; ties-to-even picks
    # 1 + 2^-11. The premise of the next tests:
    assert F32 * F32 == np.float32(1 + 2.0**-11)
    assert float(F32) * float(F32) == 1 + 2.0**-11 + 2.0**-24


def test_real_multiplier_promotes_float32():
    # r = (1 + 2^-11 + 2^-24) / 4 = 2^-2 + 2^-13 + 2^-26, exact in double.
    r = real_multiplier(F32, F32, np.float32(4.0))
    assert r == 2.0**-2 + 2.0**-13 + 2.0**-26
    assert type(r) is float


def test_effective_scale_promotes_float32():
    # r = 2^-2 + 2^-13 + 2^-26 -> frexp q = 0.5 + 2^-12 + 2^-25, e = -1;
    # q * 2^31 = 2^30 + 2^19 + 2^6 = 1073741824 + 524288 + 64 = 1074266176.
    m0, sh = effective_scale(F32, F32, np.float32(4.0))
    assert (int(m0), int(sh)) == (1074266176, -1)
    # The float32 product would give r = (1 + 2^-11) / 4 -> q * 2^31 = 2^30 + 2^19 = 1074266112:
    # the value a float32 implementation computes, and not ours.
    assert quantize_multiplier(float(F32 * F32) / 4.0) == (1074266112, -1)
    # NumPy 2 treats a Python float as "weak": float * float32-array is float32. A Python float
    # scale_a must not drag the per-channel product down to float32 either.
    m0, sh = effective_scale(float(F32), np.array([F32], dtype=np.float32), 4.0)
    assert m0.tolist() == [1074266176] and sh.tolist() == [-1]


def test_effective_scale_per_channel():
    # channel 0: as above -> (1074266176, -1).
    # channel 1: r = (1 + 2^-12) * 0.5 / 4 = 2^-3 + 2^-15 -> q = 0.5 + 2^-13, e = -2;
    #            q * 2^31 = 2^30 + 2^18 = 1074003968.
    # channel 2: r = (1 + 2^-12) * 2^-40 / 4 = (1 + 2^-12) * 2^-42 -> e = -41 < -31 -> (0, 0).
    scale_w = np.array([1 + 2.0**-12, 0.5, 2.0**-40], dtype=np.float32)
    m0, sh = effective_scale(F32, scale_w, np.float32(4.0))
    assert m0.dtype == np.int64 and sh.dtype == np.int64
    assert m0.tolist() == [1074266176, 1074003968, 0]
    assert sh.tolist() == [-1, -2, 0]


@pytest.mark.parametrize("args, exc, msg", [
    ((0.0, 1.0, 1.0), ValueError, r"scale_a must be positive and finite; scale_a = 0.0"),
    ((1.0, [1.0, -1.0], 1.0), ValueError, r"scale_w must be positive and finite; "
                                          r"scale_w\[1\] = -1.0"),
    ((1.0, 1.0, float("inf")), ValueError, r"scale_out must be positive and finite"),
    ((1.0, [[1.0]], 1.0), ValueError, r"scale_w must be a scalar or 1-D array"),
    (([1.0, 2.0], 1.0, 1.0), ValueError, r"scale_a must be a scalar"),
    (("1", 1.0, 1.0), TypeError, r"scale_a must be a real number"),
])
def test_effective_scale_rejects(args, exc, msg):
    with pytest.raises(exc, match=msg):
        effective_scale(*args)


# --------------------------------------------------------------------------------------------
# requantize: hand-computed vectors in both rounding modes
#
# single: y = (acc * M0 + 2^(30 - sh)) >> (31 - sh)
# double: x = acc << max(sh, 0); p = x * M0; nudge = 2^30 if p >= 0 else 1 - 2^30;
#         h = trunc((p + nudge) / 2^31); e = max(-sh, 0); mask = 2^e - 1; rem = h & mask;
#         thr = (mask >> 1) + (h < 0); y = (h >> e) + (rem > thr)

RQ_VECTORS = [
    # ---- M0 = 2^30, sh = 0: r = 1/2 -------------------------------------------------------
    # acc = 1 (0.5):  single (2^30 + 2^30) >> 31 = 1.
    #                 double p = 2^30, t = 2^31, h = 1; e = 0 -> 1.
    (1, P30, 0, 1, 1),
    # acc = -1 (-0.5): single (-2^30 + 2^30) >> 31 = 0 (tie toward +inf).
    #                  double p = -2^30, t = -2^30 + 1 - 2^30 = 1 - 2^31, trunc(-0.99..) = 0.
    (-1, P30, 0, 0, 0),
    # acc = 3 (1.5):  single 4 * 2^30 >> 31 = 2.  double t = 3 * 2^30 + 2^30 = 2^32 -> h = 2.
    (3, P30, 0, 2, 2),
    # acc = -3 (-1.5): single (-3 + 1) * 2^30 >> 31 = -2^31 >> 31 = -1.
    #                  double t = -3 * 2^30 + 1 - 2^30 = 1 - 2^32, trunc(-1.99..) = -1.
    (-3, P30, 0, -1, -1),
    # ---- M0 = 2^30, sh = -1: r = 1/4 ------------------------------------------------------
    # acc = 2 (0.5):  single (2 * 2^30 + 2^31) >> 32 = 2^32 >> 32 = 1.
    #                 double p = 2^31, t = 2^31 + 2^30 -> h = 1; e = 1: mask 1, rem 1, thr 0
    #                 -> (1 >> 1) + 1 = 1.
    (2, P30, -1, 1, 1),
    # acc = -2 (-0.5): single (-2^31 + 2^31) >> 32 = 0.
    #                  double p = -2^31, t = -2^31 + 1 - 2^30 -> trunc(-1.49..) = -1 = h;
    #                  rem = -1 & 1 = 1, thr = 0 + 1 = 1, 1 > 1 no -> (-1 >> 1) = -1 (away).
    (-2, P30, -1, 0, -1),
    # acc = 6 (1.5):  single (6 + 2) * 2^30 >> 32 = 2.
    #                 double p = 3 * 2^31 -> h = 3; rem 1 > thr 0 -> 1 + 1 = 2.
    (6, P30, -1, 2, 2),
    # acc = -6 (-1.5): single (-6 + 2) * 2^30 >> 32 = -2^32 >> 32 = -1.
    #                  double p = -3 * 2^31, t = -3.5 * 2^31 + 1 -> h = -3; rem = -3 & 1 = 1,
    #                  thr = 1 -> no -> -3 >> 1 = -2.
    (-6, P30, -1, -1, -2),
    # acc = -10 (-2.5): single (-10 + 2) * 2^30 >> 32 = -2.
    #                   double h = -5 (t = -5.5 * 2^31 + 1); rem 1, thr 1 -> -5 >> 1 = -3.
    (-10, P30, -1, -2, -3),
    # acc = 5 (1.25): single (5 + 2) * 2^30 >> 32 = floor(1.75) = 1.
    #                 double p = 2.5 * 2^31, t = 3 * 2^31 -> h = 3 (first rounding 2.5 -> 3);
    #                 rem 1 > thr 0 -> 1 + 1 = 2 (second rounding 1.5 -> 2): double rounding.
    (5, P30, -1, 1, 2),
    # ---- M0 = 3 * 2^29 (0.75), sh = -1: r = 0.375 ----------------------------------------
    # acc = 1: single (3 * 2^29 + 2^31) >> 32 = floor(1.75 * 2^31 / 2^32) = floor(0.875) = 0.
    #          double p = 3 * 2^29, t = 5 * 2^29 = 1.25 * 2^31 -> h = 1; rem 1 > thr 0 -> 1.
    (1, 3 * 2**29, -1, 0, 1),
    # ---- sh = -31, M0 = 2^30: r = 2^-32, accumulators at the int32 extremes ---------------
    # acc = -2^31 (-0.5): single (-2^61 + 2^61) >> 62 = 0.
    #   double p = -2^61, t = -2^61 - 2^30 + 1 -> trunc = -(2^30 + 0) = h (0.49.. dropped);
    #   e = 31: mask = 2^31 - 1, rem = -2^30 & mask = 2^30, thr = (2^30 - 1) + 1 = 2^30, no;
    #   y = -2^30 >> 31 = -1.
    (-P31, P30, -31, 0, -1),
    # acc = 2^31 - 1 (0.5 - 2^-32): single (2^61 - 2^30 + 2^61) >> 62 = (2^62 - 2^30) >> 62 = 0.
    #   double p = 2^61 - 2^30, t = 2^61 -> h = 2^30; rem = 2^30 > thr = 2^30 - 1 -> 0 + 1 = 1.
    (P31 - 1, P30, -31, 0, 1),
    # acc = 2^31 (a 33-bit accumulator, 0.5): single (2^61 + 2^61) >> 62 = 1. double h = 2^30,
    #   rem 2^30 > 2^30 - 1 -> 1.
    (P31, P30, -31, 1, 1),
    # acc = -2^31 - 1: single (-2^61 - 2^30 + 2^61) >> 62 = -2^30 >> 62 = -1.
    #   double p = -2^61 - 2^30, t = -2^61 - 2^31 + 1 -> h = -2^30 (as for -2^31) -> -1.
    (-P31 - 1, P30, -31, -1, -1),
    # ---- sh = -24, M0 = 2^30: r = 2^-25 ---------------------------------------------------
    # acc = -2^31: single (-2^61 + 2^54) >> 55 = floor(-64 + 0.5) = -64.
    #   double h = -2^30 (t = -2^61 + 1 - 2^30); rem 0 -> -2^30 >> 24 = -64.
    (-P31, P30, -24, -64, -64),
    # acc = 2^31 - 1: single (2^61 - 2^30 + 2^54) >> 55 = floor(64.5 - 2^-25) = 64.
    #   double h = 2^30 (2^30 - 0.5 rounds up); -> 2^30 >> 24 = 64, rem 0.
    (P31 - 1, P30, -24, 64, 64),
    # ---- largest M0 at the most negative int32 accumulator --------------------------------
    # acc = -2^31, M0 = 2^31 - 1, sh = 0:
    #   single (-2^62 + 2^31 + 2^30) >> 31 = floor(-2^31 + 1.5) = -2^31 + 1.
    #   double p = -2^62 + 2^31, t = p + 1 - 2^30 -> trunc(-2^31 + 1 - 0.5 + 2^-31)
    #   = -2^31 + 1.
    (-P31, P31 - 1, 0, -P31 + 1, -P31 + 1),
    # ---- flushed channel: M0 = 0 -> y = 0 whatever acc ------------------------------------
    # single (0 + 2^30) >> 31 = 0; double p = 0, t = 2^30 -> h = 0.
    (P31 - 1, 0, 0, 0, 0),
    (-P31, 0, 0, 0, 0),
]


@pytest.mark.parametrize("acc, m0, sh, y_single, y_double", RQ_VECTORS)
def test_rescale_vectors(acc, m0, sh, y_single, y_double):
    assert multiply_by_quantized_multiplier(acc, m0, sh, "single") == y_single
    assert multiply_by_quantized_multiplier(acc, m0, sh, "double") == y_double


@pytest.mark.parametrize("acc, m0, sh, y_single, y_double", RQ_VECTORS)
def test_requantize_vectors(acc, m0, sh, y_single, y_double):
    # out = clamp(y + zp_out, -128, 127), here with zp_out = 3.
    def expect(y):
        return min(max(y + 3, -128), 127)

    for mode, y in (("single", y_single), ("double", y_double)):
        out = requantize(acc, m0, sh, zp_out=3, rounding=mode)
        assert out.dtype == np.int8
        assert int(out) == expect(y)


def test_default_rounding_is_single():
    # acc = -2 at r = 1/4 is -0.5: single -> 0, double -> -1 (vectors above).
    assert int(requantize(-2, P30, -1)) == 0


def test_double_left_shift_beyond_32_bits():
    # acc = 2^16, M0 = 2^30, sh = 16: x = 2^32 (an int32 shift would wrap it to 0).
    #   p = 2^62, t = 2^62 + 2^30 -> h = trunc(2^31 + 0.5) = 2^31; e = 0 -> y = 2^31.
    y = multiply_by_quantized_multiplier(1 << 16, P30, 16, "double")
    assert int(y) == P31
    # acc = 3 * 2^29, M0 = 2^30, sh = 1 (r = 1): x = 3 * 2^30 > 2^31 - 1 (int32 wraps it to
    #   -2^30, which would give -2^29 and clamp to -128). Exact: p = 3 * 2^60,
    #   t = 3 * 2^60 + 2^30 -> h = 3 * 2^29 (+0.5 truncated) = 1610612736 -> out clamps to 127.
    assert int(multiply_by_quantized_multiplier(3 << 29, P30, 1, "double")) == 1610612736
    assert int(requantize(3 << 29, P30, 1, rounding="double")) == 127
    # acc = -2^31, M0 = 2^31 - 1, sh = 30: x = -2^61, p = -2^92 + 2^61 (beyond int64).
    #   t = p + 1 - 2^30 -> trunc(-(2^61 - 2^30) - (2^30 - 1) / 2^31) = -(2^61 - 2^30).
    #   single: (-2^31 * (2^31 - 1) + 1) >> 1 = floor(-2^61 + 2^30 + 0.5) = -2^61 + 2^30.
    expected = -(2**61 - 2**30)
    assert int(multiply_by_quantized_multiplier(-P31, P31 - 1, 30, "double")) == expected
    assert int(multiply_by_quantized_multiplier(-P31, P31 - 1, 30, "single")) == expected
    assert int(requantize(-P31, P31 - 1, 30, rounding="double")) == -128


def test_wide_accumulator_beyond_int64_product():
    # acc = 2^40 (a 42-bit accumulator), M0 = 2^31 - 1, sh = 30, double:
    #   x = 2^70, p = 2^70 * (2^31 - 1) = 2^101 - 2^70, t = p + 2^30 -> h = 2^70 - 2^39
    #   (the 2^30 / 2^31 = 0.5 is truncated). Python ints throughout.
    y = multiply_by_quantized_multiplier(1 << 40, P31 - 1, 30, "double")
    assert int(y.item()) == 2**70 - 2**39
    # single: (2^40 * (2^31 - 1) + 1) >> 1 = 2^70 - 2^39 (+0.5 floored).
    y = multiply_by_quantized_multiplier(1 << 40, P31 - 1, 30, "single")
    assert int(y.item()) == 2**70 - 2**39


def test_clamp_and_zero_point():
    # M0 = 2^30, sh = 0 (r = 1/2): acc [-1000, -10, 0, 10, 1000] -> y [-500, -5, 0, 5, 500]
    # (no ties). + zp_out 3 -> [-497, -2, 3, 8, 503].
    acc = [-1000, -10, 0, 10, 1000]
    assert requantize(acc, P30, 0, zp_out=3).tolist() == [-128, -2, 3, 8, 127]
    # ReLU as a clamp: act_min = zp_out = 3.
    assert requantize(acc, P30, 0, zp_out=3, act_min=3).tolist() == [3, 3, 3, 8, 127]
    # ReLU6-like clamp [3, 6].
    assert requantize(acc, P30, 0, zp_out=3, act_min=3, act_max=6).tolist() == [3, 3, 3, 6, 6]
    # a flushed channel (M0 = 0) outputs its zero point.
    assert requantize([5, -5], 0, 0, zp_out=-7).tolist() == [-7, -7]


def test_per_channel_broadcast():
    # channels (last axis): r = 1/2 (2^30, 0), 1/4 (2^30, -1), 3/2 (3 * 2^29, 1).
    # acc row +7: ch0 3.5 -> 4; ch1 1.75 -> 2; ch2 10.5 -> 11.
    # acc row -7: ch0 -3.5 -> -3 (single) / -3 (double: h = trunc((-4 * 2^31 + 1) / 2^31));
    #   ch1 single (-7 + 2) * 2^30 >> 32 = floor(-1.25) = -2; double h = -3, -1.5 -> -2;
    #   ch2 single (-21 + 1) * 2^29 >> 30 = -10; double x = -14, p = -10.5 * 2^31,
    #   t = -11 * 2^31 + 1 -> h = -10.
    acc = np.array([[7, 7, 7], [-7, -7, -7]])
    m0 = [P30, P30, 3 * 2**29]
    sh = [0, -1, 1]
    expected = [[4, 2, 11], [-3, -2, -10]]
    for mode in ("single", "double"):
        out = requantize(acc, m0, sh, rounding=mode)
        assert out.shape == (2, 3) and out.dtype == np.int8
        assert out.tolist() == expected
    # a scalar multiplier with per-channel shifts broadcasts too: channel 2 is now
    # (2^30, 1), r = 1: single (7 * 2^30 + 2^29) >> 30 = floor(7.5) = 7 and
    # (-7 * 2^30 + 2^29) >> 30 = floor(-6.5) = -7.
    assert requantize(acc, P30, sh).tolist() == [[4, 2, 7], [-3, -2, -7]]


# --------------------------------------------------------------------------------------------
# independent exact-fraction formulation of both modes, over wide random inputs

def _ref_single(acc, m0, sh):
    # one rounding of the exact value acc * M0 * 2^(sh - 31), ties toward +infinity
    v = Fraction(acc * m0) * Fraction(2) ** (sh - 31)
    return math.floor(v + Fraction(1, 2))


def _ref_double(acc, m0, sh):
    # first rounding: acc * 2^max(sh, 0) * M0 / 2^31, ties toward +infinity;
    # second: divide by 2^max(-sh, 0), ties away from zero.
    h = math.floor(Fraction(acc * 2 ** max(sh, 0) * m0, P31) + Fraction(1, 2))
    q = Fraction(h, 2 ** max(-sh, 0))
    mag = math.floor(abs(q) + Fraction(1, 2))
    return mag if q >= 0 else -mag


def _random_cases(seed, n):
    rng = np.random.default_rng(seed)
    accs, m0s, shs = [], [], []
    for _ in range(n):
        bits = int(rng.integers(1, 66))           # accumulators from 1 to 65 bits
        acc = int(rng.integers(0, 1 << 62)) >> max(62 - bits, 0) << max(bits - 62, 0)
        if rng.random() < 0.5:
            acc = -acc
        if rng.random() < 0.3:                    # make ties likely
            acc <<= int(rng.integers(0, 20))
        m0 = int(rng.integers(P30, P31))
        if rng.random() < 0.4:                    # few significant bits: ties again
            low = int(rng.integers(10, 31))
            m0 = (m0 >> low) << low               # still >= 2^30: the top bit is kept
        if rng.random() < 0.05:
            m0 = 0
        sh = int(rng.integers(-31, 31))
        accs.append(acc)
        m0s.append(m0)
        shs.append(sh)
    return accs, m0s, shs


@pytest.mark.parametrize("mode, ref", [("single", _ref_single), ("double", _ref_double)])
def test_rescale_matches_fraction_reference(mode, ref):
    accs, m0s, shs = _random_cases(20240601, 3000)
    accs += [-(1 << 63), (1 << 63) - 1, -P31, P31 - 1, 0]
    m0s += [P31 - 1, P31 - 1, P30, P30, P30]
    shs += [30, -31, -31, 30, 0]
    expected = [ref(a, m, s) for a, m, s in zip(accs, m0s, shs)]
    # the channels are the last axis: one channel per sample
    got = multiply_by_quantized_multiplier(np.array(accs, dtype=object), m0s, shs, mode)
    assert [int(v) for v in got] == expected
    # and through the int64 fast path, for the samples whose intermediates fit it
    small = [i for i, a in enumerate(accs) if abs(a) < P31]
    got = multiply_by_quantized_multiplier(np.array([accs[i] for i in small], dtype=np.int64),
                                           [m0s[i] for i in small], [shs[i] for i in small],
                                           mode)
    assert got.dtype == np.int64
    assert got.tolist() == [expected[i] for i in small]


def test_int32_accumulators_match_reference_int64_path():
    # int32 accumulators with every (M0, sh): the path the hardware default (W = 32) takes.
    rng = np.random.default_rng(7)
    acc = rng.integers(-P31, P31, size=(64, 62), dtype=np.int64)
    acc[0, :] = -P31
    acc[1, :] = P31 - 1
    m0 = rng.integers(P30, P31, size=62)
    sh = np.arange(-31, 31)
    for mode, ref in (("single", _ref_single), ("double", _ref_double)):
        y = multiply_by_quantized_multiplier(acc, m0, sh, mode)
        for row in (0, 1, 2, 63):
            assert [int(v) for v in y[row]] == [
                ref(int(acc[row, n]), int(m0[n]), int(sh[n])) for n in range(62)]


# --------------------------------------------------------------------------------------------
# GEMM

A_HAND = [[1, -2], [127, -128]]
B_HAND = [[3, -1], [-128, 2]]


def test_matmul_hand():
    # row 0: [1*3 + (-2)(-128), 1*(-1) + (-2)*2] = [259, -5]
    # row 1: [127*3 + (-128)(-128), 127*(-1) + (-128)*2] = [381 + 16384, -127 - 256]
    #      = [16765, -383]
    c = matmul_int8(A_HAND, B_HAND)
    assert c.dtype == np.int64
    assert c.tolist() == [[259, -5], [16765, -383]]


def test_fold_zero_point_hand():
    # colsum(B) = [3 - 128, -1 + 2] = [-125, 1]
    # zp_a = 5, bias = [100, -7]: bias' = [100 - 5 * (-125), -7 - 5 * 1] = [725, -12]
    folded = fold_zero_point([100, -7], B_HAND, 5)
    assert folded.dtype == np.int64 and folded.tolist() == [725, -12]
    # no bias, zp_a = -128: [0 - (-128)(-125), 0 - (-128)(1)] = [-16000, 128]
    assert fold_zero_point(None, B_HAND, -128).tolist() == [-16000, 128]
    # the folded bias may leave int32: bias = 2^31 - 1, zp_a = -128, colsum -125 -> -16000 more
    assert fold_zero_point([P31 - 1, 0], B_HAND, -128).tolist() == [P31 - 1 - 16000, 128]


def test_gemm_int8_hand():
    # C = A @ B + bias' = [[259 + 725, -5 - 12], [16765 + 725, -383 - 12]]
    #   = [[984, -17], [17490, -395]]
    raw = gemm_int8(A_HAND, B_HAND, bias=[100, -7], zp_a=5)
    assert raw.dtype == np.int64 and raw.tolist() == [[984, -17], [17490, -395]]
    # column 0: r = 1/16 (M0 = 2^30, sh = -3); column 1: r = 1/4 (M0 = 2^30, sh = -1).
    #   single: 984/16 = 61.5 -> 62 (tie up); 17490/16 = 1093.125 -> 1093;
    #           -17/4 = -4.25 -> -4; -395/4 = -98.75 -> -99.
    #   double: col 0 h = 492, 492 = 61*8 + 4: rem 4 > thr 3 -> 62; h = 8745 = 1093*8 + 1 -> 1093.
    #           col 1 h = trunc((-8.5 * 2^31 + 1 - 2^30) / 2^31) = -8 -> -4 exact;
    #           h = -197 (-197.5 up), -197 >> 1 = -99, rem 1, thr 1 -> -99.
    # + zp_out = -3: [[59, -7], [1090, -102]], clamped to [-100, 100]: [[59, -7], [100, -100]]
    for mode in ("single", "double"):
        out = gemm_int8(A_HAND, B_HAND, bias=[100, -7], zp_a=5, multiplier=[P30, P30],
                        shift=[-3, -1], zp_out=-3, act_min=-100, act_max=100, rounding=mode)
        assert out.dtype == np.int8
        assert out.tolist() == [[59, -7], [100, -100]]


def test_gemm_matches_numpy_random():
    rng = np.random.default_rng(12345)
    for m, k, n in [(1, 1, 1), (3, 1, 4), (7, 13, 5), (16, 64, 16), (33, 257, 9), (5, 1000, 3)]:
        a = rng.integers(-128, 128, size=(m, k), dtype=np.int8)
        b = rng.integers(-128, 128, size=(k, n), dtype=np.int8)
        ref = a.astype(np.int64) @ b.astype(np.int64)
        assert np.array_equal(matmul_int8(a, b), ref)
        zp_a = int(rng.integers(-128, 128))
        bias = rng.integers(-P31, P31, size=n, dtype=np.int64)
        ref = (a.astype(np.int64) - zp_a) @ b.astype(np.int64) + bias
        assert np.array_equal(gemm_int8(a, b, bias=bias, zp_a=zp_a), ref)


def test_matmul_all_minus_128_at_the_32_bit_boundary():
    # (-128) * (-128) = 2^14 = 16384 per term.
    # K = 131071: 16384 * 131071 = 2^31 - 2^14 = 2147467264 <= 2^31 - 1: fits 32 bits.
    # K = 131072: 16384 * 131072 = 2^31 = 2147483648: one more than int32 holds.
    for k, expected in ((131071, 2147467264), (131072, 2147483648)):
        a = np.full((1, k), -128, dtype=np.int8)
        b = np.full((k, 1), -128, dtype=np.int8)
        assert matmul_int8(a, b).tolist() == [[expected]]


@pytest.mark.parametrize("k_max, width", [
    (1, 32),        # bit_length(16384) + 1 = 16 -> max(32, 16)
    (4, 32),        # bit_length(65536) = 17 -> 18 bits (numerics.md's example) -> 32
    (4096, 32),     # the embedded default
    (131071, 32),   # 16384 * 131071 = 2^31 - 2^14, bit_length 31 -> 32
    (131072, 33),   # 16384 * 131072 = 2^31, bit_length 32 -> 33
    (262143, 33),   # 2^32 - 2^14, bit_length 32 -> 33
    (262144, 34),   # 2^32, bit_length 33 -> 34
])
def test_acc_width_for(k_max, width):
    assert acc_width_for(k_max) == width


def test_accumulator_bound_exact_boundary():
    limit = P31 - 1  # W = 32
    # K = 1, B = [[-128]]: 128 * sum|B| = 16384; |bias'| may be up to 2^31 - 1 - 16384
    # = 2147467263 and not one more.
    b = [[-128]]
    check_accumulator_bound([limit - 16384], b, 32)
    check_accumulator_bound([-(limit - 16384)], b, 32)
    for bad in (limit - 16384 + 1, -(limit - 16384 + 1)):
        with pytest.raises(ValueError, match=r"column 0 can overflow the 32-bit accumulator: "
                                             r"\|bias'\[0\]\| \+ 128 \* sum_k \|B\[k, 0\]\| = "
                                             r"2147483648 > 2\^31 - 1 = 2147483647"):
            check_accumulator_bound([bad], b, 32)
    # the message names the offending column: here column 1 of two.
    with pytest.raises(ValueError, match=r"column 1 can overflow"):
        check_accumulator_bound([0, limit - 16384 + 1], [[1, -128]], 32)
    # K = 131071 of -128, bias' = 16383: 2147467264 + 16383 = 2^31 - 1 exactly: accepted, and
    # the job really reaches 2^31 - 1 with A all -128. bias' = 16384 is rejected.
    k = 131071
    a = np.full((1, k), -128, dtype=np.int8)
    b = np.full((k, 1), -128, dtype=np.int8)
    check_accumulator_bound([16383], b, 32)
    assert gemm_int8(a, b, bias=[16383], acc_width=32).tolist() == [[limit]]
    with pytest.raises(ValueError, match="column 0 can overflow"):
        check_accumulator_bound([16384], b, 32)
    with pytest.raises(ValueError, match="column 0 can overflow"):
        gemm_int8(a, b, bias=[16384], acc_width=32)
    # K = 131072, no bias: 2^31 > 2^31 - 1 at W = 32, fine at acc_width_for(131072) = 33.
    b = np.full((131072, 1), -128, dtype=np.int8)
    with pytest.raises(ValueError, match="= 2147483648 > 2\\^31 - 1"):
        check_accumulator_bound([0], b, 32)
    check_accumulator_bound([0], b, acc_width_for(131072))


# --------------------------------------------------------------------------------------------
# validation: each message names the argument

Z23 = np.zeros((2, 3), dtype=np.int8)

VALIDATION = [
    (lambda: matmul_int8([[128]], [[1]]), ValueError,
     r"a must hold int8 values in \[-128, 127\]; a\[0, 0\] = 128"),
    (lambda: matmul_int8([[1]], [[0, -129]]), ValueError,
     r"b must hold int8 values in \[-128, 127\]; b\[0, 1\] = -129"),
    (lambda: matmul_int8(np.ones((1, 1)), [[1]]), ValueError,
     r"a must hold int8 values in \[-128, 127\], not an array of dtype float64"),
    (lambda: matmul_int8([[1]], np.ones((1, 1), dtype=bool)), ValueError,
     r"b must hold int8 values in \[-128, 127\], not an array of dtype bool"),
    (lambda: matmul_int8([1, 2], [[1]]), ValueError, r"a must be a 2-D \(M, K\) array"),
    (lambda: matmul_int8(Z23, Z23), ValueError, r"a's K = 3 columns must equal b's 2 rows"),
    (lambda: requantize(1, P30, 0, rounding="nearest"), ValueError,
     r"rounding must be 'single' or 'double', not 'nearest'"),
    (lambda: requantize(1, P30, 31), ValueError, r"shift must be in \[-31, 30\]; shift = 31"),
    (lambda: requantize([1, 2], P30, [0, -32]), ValueError,
     r"shift must be in \[-31, 30\]; shift\[1\] = -32"),
    (lambda: requantize(1, P30 - 1, 0), ValueError,
     r"multiplier must be 0 or in \[2\^30, 2\^31 - 1\] = \[1073741824, 2147483647\]; "
     r"multiplier = 1073741823"),
    (lambda: requantize(1, P31, 0), ValueError, r"multiplier must be 0 or in"),
    (lambda: requantize(1, -5, 0), ValueError, r"multiplier must be 0 or in"),
    (lambda: requantize(1, [[P30]], 0), ValueError, r"multiplier must be a scalar or a 1-D"),
    (lambda: requantize(1, P30, 0, zp_out=128), ValueError,
     r"zp_out must be in \[-128, 127\], not 128"),
    (lambda: requantize(1, P30, 0, act_min=-129), ValueError,
     r"act_min must be in \[-128, 127\], not -129"),
    (lambda: requantize(1, P30, 0, act_max=200), ValueError,
     r"act_max must be in \[-128, 127\], not 200"),
    (lambda: requantize(1, P30, 0, act_min=10, act_max=5), ValueError,
     r"act_min must not exceed act_max, got act_min=10, act_max=5"),
    (lambda: requantize(1, P30, 0, zp_out=1.0), TypeError, r"zp_out must be an integer"),
    (lambda: requantize(1.5, P30, 0), ValueError, r"acc must hold integers"),
    (lambda: requantize(np.ones(3), P30, 0), ValueError,
     r"acc must hold integers, not an array of dtype float64"),
    (lambda: requantize(np.array([1, 2.5], dtype=object), P30, 0), ValueError,
     r"acc must hold integers, found 2.5"),
    (lambda: requantize(np.zeros((2, 3), dtype=np.int64), [P30, P30], 0), ValueError,
     r"multiplier has 2 channels but acc has 3 along its last axis"),
    (lambda: gemm_int8(Z23, Z23.T, multiplier=P30), ValueError,
     r"multiplier and shift must be given together"),
    (lambda: fold_zero_point([P31], [[1]], 0), ValueError,
     r"bias must hold int32 values in \[-2147483648, 2147483647\]; bias\[0\] = 2147483648"),
    (lambda: fold_zero_point([1, 2], [[1]], 0), ValueError,
     r"bias must have shape \(1,\) to match b's N = 1 columns"),
    (lambda: fold_zero_point(None, [[1]], 128), ValueError, r"zp_a must be in \[-128, 127\]"),
    (lambda: fold_zero_point(None, [[1]], 0.0), TypeError, r"zp_a must be an integer"),
    (lambda: check_accumulator_bound([0], [[1]], 1), ValueError,
     r"acc_width must be in \[2, inf\], not 1"),
    (lambda: check_accumulator_bound([0, 0], [[1]], 32), ValueError,
     r"bias_folded must have shape \(1,\)"),
    (lambda: acc_width_for(0), ValueError, r"k_max must be in \[1, inf\], not 0"),
    (lambda: acc_width_for(2.0), TypeError, r"k_max must be an integer, not 2.0"),
]


@pytest.mark.parametrize("call, exc, msg", VALIDATION)
def test_validation_messages(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()


def test_accepts_any_integer_dtype_and_python_ints():
    # int8 operands may come as any integer dtype holding int8 values, or as lists.
    a = np.array([[-128, 127]], dtype=np.int32)
    b = np.array([[-128], [127]], dtype=np.int16)
    # -128 * -128 + 127 * 127 = 16384 + 16129 = 32513
    assert matmul_int8(a, b).tolist() == [[32513]]
    # accumulators as Python ints of any size, NumPy unsigned, or object arrays
    assert requantize(np.uint64(6), P30, -1).tolist() == 2
    assert requantize(2**70, P30, 0).tolist() == 127
    assert requantize(np.array([-(2**70)], dtype=object), P30, 0).tolist() == [-128]
