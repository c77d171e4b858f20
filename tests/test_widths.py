"""The OSI8 register widths (osi8.md, compile-time constant 3): the hardware side's formulas
(``npugen.hw.softmax.softmax_widths``, ``npugen.hw.attention.attention_widths``) against the golden model's own
copy (``npugen.sim.golden.softmax.widths``) over every ``F`` and ``N_max`` the configuration accepts, and
both against the property the widths exist for: the largest value fits, and one bit less would
not."""

from __future__ import annotations

import pytest

from npugen.hw.attention import attention_widths
from npugen.hw.config import SoftmaxConfig
from npugen.hw.softmax import ceil_log2, softmax_widths
from npugen.sim.golden.softmax import widths as golden_widths

F_RANGE = range(8, 31)               # hw.config: F in [8, 30]
N_MAX_TOP = 1 << 24                  # hw.config: N_max in [1, 2^24]


def _n_max_values():
    """Powers of two from 1 to 2^24 and their neighbours, inside [1, 2^24]."""
    out = set()
    for k in range(25):
        for n in ((1 << k) - 1, 1 << k, (1 << k) + 1):
            if 1 <= n <= N_MAX_TOP:
                out.add(n)
    return sorted(out | {3, 1000, 32767, 32768, 100_000, N_MAX_TOP - 1})


N_MAX_VALUES = _n_max_values()


def test_config_accepts_exactly_the_ranges_iterated():
    """The ranges above are the configuration's: a change there must change this test."""
    for F in (F_RANGE[0], F_RANGE[-1]):
        SoftmaxConfig(F=F)
    for F in (F_RANGE[0] - 1, F_RANGE[-1] + 1):
        with pytest.raises(ValueError):
            SoftmaxConfig(F=F)
    SoftmaxConfig(N_max=N_MAX_TOP)
    with pytest.raises(ValueError):
        SoftmaxConfig(N_max=N_MAX_TOP + 1)


@pytest.mark.parametrize("F", F_RANGE)
def test_hardware_and_golden_widths_agree(F):
    for n_max in N_MAX_VALUES:
        hw = softmax_widths(F, n_max)
        gold = golden_widths(F=F, N_max=n_max)
        assert (hw["W_L"], hw["W_A"]) == (gold["W_L"], gold["W_A"]), (F, n_max)
        assert hw["W_E"] == F + 1
        for d in (1, 64, 256):
            att = attention_widths(F, n_max, 16, d)
            assert (att["W_L"], att["W_A"]) == (gold["W_L"], gold["W_A"]), (F, n_max, d)


@pytest.mark.parametrize("F", F_RANGE)
def test_widths_hold_the_largest_values_and_no_more(F):
    """``L <= N_max * 2^F`` (unsigned) and ``|A_c| <= 255 * N_max * 2^F`` (signed): each fits its
    width, and the width is the smallest that does."""
    for n_max in N_MAX_VALUES:
        w = softmax_widths(F, n_max)
        l_max = n_max << F
        assert l_max < 1 << w["W_L"] and l_max >= 1 << (w["W_L"] - 1), (F, n_max)
        a_max = 255 * n_max << F
        assert a_max < 1 << (w["W_A"] - 1) and a_max >= 1 << (w["W_A"] - 2), (F, n_max)


def test_known_values():
    """osi8.md's defaults, and the corner where float log2 once gave one bit too few:
    ``N_max * 2^F = 2^54`` needs 55 bits (``math.log2(2^54 + 1)`` rounds to 54.0)."""
    assert softmax_widths(24, 32768) == {"W_L": 40, "W_A": 48, "W_E": 25}
    assert softmax_widths(30, 1 << 24)["W_L"] == 55
    assert softmax_widths(30, 1 << 24)["W_A"] == 63
    assert attention_widths(24, 32768, 16, 64) == {"W_L": 40, "W_A": 48, "W_S": 22, "QB": 24}


def test_ceil_log2():
    assert [ceil_log2(x) for x in (1, 2, 3, 4, 5, 8, 9)] == [0, 1, 2, 2, 3, 3, 4]
    assert ceil_log2((1 << 54) + 1) == 55
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="x must be a positive integer"):
            ceil_log2(bad)
