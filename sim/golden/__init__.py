"""Integer golden models: the bit-exact references the generated hardware is checked against.

They implement docs/numerics.md (GEMM, requantization) and import nothing from ``hw``.
"""

from .gemm import (
    INT8_MAX,
    INT8_MIN,
    INT32_MAX,
    INT32_MIN,
    MULTIPLIER_MAX,
    MULTIPLIER_MIN,
    ROUNDING_MODES,
    SHIFT_MAX,
    SHIFT_MIN,
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

from .softmax import (  # noqa: E402  OSI8 softmax (docs/osi8.md)
    LUT_SIZE,
    SOFTMAX_F_MAX,
    SOFTMAX_F_MIN,
    SOFTMAX_G_MAX,
    make_lut,
    round_div,
    rshift_round,
    softmax_int8,
    softmax_state,
    widths,
)

__all__ += [
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
