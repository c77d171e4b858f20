"""The golden GEMM models against external systems (docs/numerics.md, "Checking against other
systems").

1. ``matmul_int8`` (and the zero-point fold of ``gemm_int8``) against ONNX Runtime
   ``MatMulInteger`` with int8 x int8 operands. (Its uint8 x int8 path saturates pairs of
   products at int16 on AVX2 machines, so only int8 x int8 is a reference.)
2. ``gemm_int8`` against the LiteRT interpreter's reference kernels (``BUILTIN_REF``) on int8
   layers built in memory from the ``tflite`` package's flatbuffer schema: per-channel and
   per-tensor weight scales, int32 bias, input and output zero points, fused ReLU / ReLU6 /
   ReLU_N1_TO_1, positive shifts, rounding ties, and accumulators at -2^31 and 2^31 - 1.

   What LiteRT (ai-edge-litert 2.3) computes, as measured here:

   - FULLY_CONNECTED: bit-exact with ``rounding="single"`` on random layers. Its reference
     kernel actually rounds ``double(acc) * r`` in floating point (ties away from zero), so on
     exact ties it matches neither integer mode; ``test_fc_reference_kernel_rounds_in_float``
     pins that.
   - 1x1 CONV_2D (the same GEMM): its reference kernel uses TFLite's integer
     ``MultiplyByQuantizedMultiplier``, and it is bit-exact with ``rounding="double"``
     everywhere, ties and double-rounding cases included: the PyPI build does not define
     ``TFLITE_SINGLE_ROUNDING``.

Each external package is optional (``pytest.importorskip``); with them installed every test runs.
"""

import importlib
import math

import numpy as np
import pytest

from npugen.sim.golden import check_accumulator_bound, effective_scale, gemm_int8, matmul_int8


# --------------------------------------------------------------------------------------------
# ONNX Runtime MatMulInteger


def _matmul_integer_session(m, k, n, *, b_const=None, zp_a=None):
    """An ORT session of one MatMulInteger node: int8 A (M, K) x int8 B (K, N) -> int32."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    inputs = [helper.make_tensor_value_info("A", TensorProto.INT8, [m, k])]
    initializers = []
    if b_const is None:
        inputs.append(helper.make_tensor_value_info("B", TensorProto.INT8, [k, n]))
    else:  # constant weights: ORT may pre-pack them, a different kernel path
        initializers.append(numpy_helper.from_array(b_const.astype(np.int8), "B"))
    node_inputs = ["A", "B"]
    if zp_a is not None:
        initializers.append(numpy_helper.from_array(np.array(zp_a, dtype=np.int8), "a_zp"))
        node_inputs.append("a_zp")
    node = helper.make_node("MatMulInteger", node_inputs, ["Y"])
    graph = helper.make_graph([node], "matmul_integer", inputs,
                              [helper.make_tensor_value_info("Y", TensorProto.INT32, [m, n])],
                              initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


ORT_SHAPES = [(1, 1, 1), (5, 1, 3), (1, 7, 1), (4, 3, 6), (16, 64, 16), (33, 257, 9),
              (8, 1024, 5)]


@pytest.mark.parametrize("b_is_const", [False, True], ids=["B-input", "B-initializer"])
@pytest.mark.parametrize("m, k, n", ORT_SHAPES)
def test_matmul_int8_vs_ort_matmulinteger(m, k, n, b_is_const):
    rng = np.random.default_rng(m * 100_003 + k * 101 + n)
    a = rng.integers(-128, 128, size=(m, k), dtype=np.int8)
    b = rng.integers(-128, 128, size=(k, n), dtype=np.int8)
    sess = _matmul_integer_session(m, k, n, b_const=b if b_is_const else None)
    feed = {"A": a} if b_is_const else {"A": a, "B": b}
    (y,) = sess.run(None, feed)
    assert y.dtype == np.int32
    assert np.array_equal(matmul_int8(a, b), y.astype(np.int64))


@pytest.mark.parametrize("b_is_const", [False, True], ids=["B-input", "B-initializer"])
@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (3, 4, 2), (4, 4096, 3), (2, 131071, 2)])
def test_matmul_int8_all_minus_128_vs_ort(m, k, n, b_is_const):
    # every product is (-128) * (-128) = 2^14, the only one that reaches +2^14; pairs of them
    # (2^15) overflow int16, which is where a saturating kernel would show. K = 131071 gives
    # 2^31 - 2^14, the largest all -128 sum that int32 holds.
    a = np.full((m, k), -128, dtype=np.int8)
    b = np.full((k, n), -128, dtype=np.int8)
    sess = _matmul_integer_session(m, k, n, b_const=b if b_is_const else None)
    (y,) = sess.run(None, {"A": a} if b_is_const else {"A": a, "B": b})
    assert np.all(y.astype(np.int64) == 16384 * k)
    assert np.array_equal(matmul_int8(a, b), y.astype(np.int64))


@pytest.mark.parametrize("zp_a", [-128, -3, 0, 77, 127])
def test_zero_point_fold_vs_ort(zp_a):
    # MatMulInteger computes (A - a_zero_point) @ B; gemm_int8 folds zp_a into the bias.
    m, k, n = 6, 40, 7
    rng = np.random.default_rng(1000 + zp_a)
    a = rng.integers(-128, 128, size=(m, k), dtype=np.int8)
    b = rng.integers(-128, 128, size=(k, n), dtype=np.int8)
    a[0, :] = -128
    b[:, 0] = -128
    sess = _matmul_integer_session(m, k, n, zp_a=zp_a)
    (y,) = sess.run(None, {"A": a, "B": b})
    assert np.array_equal(gemm_int8(a, b, zp_a=zp_a), y.astype(np.int64))


# --------------------------------------------------------------------------------------------
# LiteRT FULLY_CONNECTED (reference kernels)

_TFL_MODULES = ("Model", "SubGraph", "Tensor", "Buffer", "Operator", "OperatorCode",
                "QuantizationParameters", "FullyConnectedOptions", "Conv2DOptions", "Padding",
                "BuiltinOperator", "BuiltinOptions", "TensorType", "ActivationFunctionType")


@pytest.fixture(scope="module")
def tfl():
    """The ``tflite`` schema modules by name (the package's star imports shadow them)."""
    pytest.importorskip("tflite")
    pytest.importorskip("flatbuffers")
    return {name: importlib.import_module(f"tflite.{name}") for name in _TFL_MODULES}


@pytest.fixture(scope="module")
def litert():
    """A function running one model's single int8 input through the reference interpreter."""
    interpreter_mod = pytest.importorskip("ai_edge_litert.interpreter")

    def run(model_bytes, x):
        interp = interpreter_mod.Interpreter(
            model_content=model_bytes,
            experimental_op_resolver_type=interpreter_mod.OpResolverType.BUILTIN_REF)
        interp.allocate_tensors()
        (inp,) = interp.get_input_details()
        (out,) = interp.get_output_details()
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        return interp.get_tensor(out["index"]).copy()

    return run


def _bytes_vector(builder, raw, alignment=16):
    """A [ubyte] vector aligned for any element type (flatbuffers' own aligns to 1)."""
    builder.StartVector(1, len(raw), alignment)
    builder.head = builder.head - len(raw)
    builder.Bytes[builder.head:builder.head + len(raw)] = raw
    builder.vectorNumElems = len(raw)
    return builder.EndVector()


def _offsets_vector(builder, offsets):
    builder.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        builder.PrependUOffsetTRelative(off)
    return builder.EndVector()


def _build_model(tfl, *, op, x_shape, s_a, zp_a, w, s_w, bias, s_out, zp_out, activation):
    """Serialized one-operator int8 model computing an (M, K) x (K, N) GEMM.

    ``op="fc"``: FULLY_CONNECTED, x (M, K), weights (N, K), y (M, N).
    ``op="conv"``: a 1x1 CONV_2D over x (1, M, 1, K) NHWC, weights (N, 1, 1, K), y (1, M, 1, N).

    ``w`` is (N, K) int8 with scale ``s_w`` (float32, length N for per-channel with
    quantized_dimension 0, or length 1 per-tensor) and zero point 0; ``bias`` is (N,) int32 at
    scale ``s_a * s_w``; input and output are int8 with the given scales and zero points.
    """
    import flatbuffers

    m_, k_ = x_shape
    n_ = w.shape[0]
    t_mod, q_mod, b_mod = tfl["Tensor"], tfl["QuantizationParameters"], tfl["Buffer"]
    tt = tfl["TensorType"].TensorType
    builder = flatbuffers.Builder(1024 + w.size + 4 * n_)

    # buffers: 0 empty (convention), 1 weights, 2 bias
    buffer_offsets = []
    for raw in (None, np.ascontiguousarray(w, dtype=np.int8).tobytes(),
                np.ascontiguousarray(bias, dtype="<i4").tobytes()):
        data = _bytes_vector(builder, raw) if raw is not None else None
        b_mod.BufferStart(builder)
        if data is not None:
            b_mod.BufferAddData(builder, data)
        buffer_offsets.append(b_mod.BufferEnd(builder))

    def quant(scales, zero_points, dim=0):
        sc = builder.CreateNumpyVector(np.asarray(scales, dtype=np.float32))
        zp = builder.CreateNumpyVector(np.asarray(zero_points, dtype=np.int64))
        q_mod.QuantizationParametersStart(builder)
        q_mod.QuantizationParametersAddScale(builder, sc)
        q_mod.QuantizationParametersAddZeroPoint(builder, zp)
        q_mod.QuantizationParametersAddQuantizedDimension(builder, dim)
        return q_mod.QuantizationParametersEnd(builder)

    def tensor(name, shape, ttype, buffer, quantization):
        name_off = builder.CreateString(name)
        shape_off = builder.CreateNumpyVector(np.asarray(shape, dtype=np.int32))
        t_mod.TensorStart(builder)
        t_mod.TensorAddShape(builder, shape_off)
        t_mod.TensorAddType(builder, ttype)
        t_mod.TensorAddBuffer(builder, buffer)
        t_mod.TensorAddName(builder, name_off)
        t_mod.TensorAddQuantization(builder, quantization)
        return t_mod.TensorEnd(builder)

    s_w = np.atleast_1d(np.asarray(s_w, dtype=np.float32))
    s_bias = (np.float32(s_a) * s_w).astype(np.float32)  # what a converter stores
    if op == "fc":
        shapes = ([m_, k_], [n_, k_], [m_, n_])
    else:
        shapes = ([1, m_, 1, k_], [n_, 1, 1, k_], [1, m_, 1, n_])
    tensors = [
        tensor("x", shapes[0], tt.INT8, 0, quant([s_a], [zp_a])),
        tensor("w", shapes[1], tt.INT8, 1, quant(s_w, [0] * len(s_w), 0)),
        tensor("bias", [n_], tt.INT32, 2, quant(s_bias, [0] * len(s_bias), 0)),
        tensor("y", shapes[2], tt.INT8, 0, quant([s_out], [zp_out])),
    ]

    if op == "fc":
        fco = tfl["FullyConnectedOptions"]
        fco.FullyConnectedOptionsStart(builder)
        fco.FullyConnectedOptionsAddFusedActivationFunction(builder, activation)
        fco.FullyConnectedOptionsAddWeightsFormat(builder, 0)  # DEFAULT
        fco.FullyConnectedOptionsAddKeepNumDims(builder, False)
        options = fco.FullyConnectedOptionsEnd(builder)
        options_type = tfl["BuiltinOptions"].BuiltinOptions.FullyConnectedOptions
        op_code = tfl["BuiltinOperator"].BuiltinOperator.FULLY_CONNECTED
    else:
        cvo = tfl["Conv2DOptions"]
        cvo.Conv2DOptionsStart(builder)
        cvo.Conv2DOptionsAddPadding(builder, tfl["Padding"].Padding.VALID)
        cvo.Conv2DOptionsAddStrideW(builder, 1)
        cvo.Conv2DOptionsAddStrideH(builder, 1)
        cvo.Conv2DOptionsAddDilationWFactor(builder, 1)
        cvo.Conv2DOptionsAddDilationHFactor(builder, 1)
        cvo.Conv2DOptionsAddFusedActivationFunction(builder, activation)
        options = cvo.Conv2DOptionsEnd(builder)
        options_type = tfl["BuiltinOptions"].BuiltinOptions.Conv2DOptions
        op_code = tfl["BuiltinOperator"].BuiltinOperator.CONV_2D

    op_mod = tfl["Operator"]
    op_inputs = builder.CreateNumpyVector(np.array([0, 1, 2], dtype=np.int32))
    op_outputs = builder.CreateNumpyVector(np.array([3], dtype=np.int32))
    op_mod.OperatorStart(builder)
    op_mod.OperatorAddOpcodeIndex(builder, 0)
    op_mod.OperatorAddInputs(builder, op_inputs)
    op_mod.OperatorAddOutputs(builder, op_outputs)
    op_mod.OperatorAddBuiltinOptionsType(builder, options_type)
    op_mod.OperatorAddBuiltinOptions(builder, options)
    operator = op_mod.OperatorEnd(builder)

    sg = tfl["SubGraph"]
    tensors_vec = _offsets_vector(builder, tensors)
    sg_inputs = builder.CreateNumpyVector(np.array([0], dtype=np.int32))
    sg_outputs = builder.CreateNumpyVector(np.array([3], dtype=np.int32))
    operators_vec = _offsets_vector(builder, [operator])
    sg_name = builder.CreateString("main")
    sg.SubGraphStart(builder)
    sg.SubGraphAddTensors(builder, tensors_vec)
    sg.SubGraphAddInputs(builder, sg_inputs)
    sg.SubGraphAddOutputs(builder, sg_outputs)
    sg.SubGraphAddOperators(builder, operators_vec)
    sg.SubGraphAddName(builder, sg_name)
    subgraph = sg.SubGraphEnd(builder)

    oc = tfl["OperatorCode"]
    oc.OperatorCodeStart(builder)
    oc.OperatorCodeAddDeprecatedBuiltinCode(builder, op_code)
    oc.OperatorCodeAddBuiltinCode(builder, op_code)
    oc.OperatorCodeAddVersion(builder, 5)
    opcode = oc.OperatorCodeEnd(builder)

    md = tfl["Model"]
    opcodes_vec = _offsets_vector(builder, [opcode])
    subgraphs_vec = _offsets_vector(builder, [subgraph])
    buffers_vec = _offsets_vector(builder, buffer_offsets)
    description = builder.CreateString("npugen golden cross-check")
    md.ModelStart(builder)
    md.ModelAddVersion(builder, 3)
    md.ModelAddOperatorCodes(builder, opcodes_vec)
    md.ModelAddSubgraphs(builder, subgraphs_vec)
    md.ModelAddDescription(builder, description)
    md.ModelAddBuffers(builder, buffers_vec)
    model = md.ModelEnd(builder)
    builder.Finish(model, file_identifier=b"TFL3")
    return bytes(builder.Output())


def _round_away(x):
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def _activation_range(tfl, activation, s_out, zp_out):
    """TFLite ``CalculateActivationRangeQuantized`` for int8: quantize(f) = zp + round(f / s),
    with ``f / s`` in float32 and TfLiteRound (half away from zero)."""
    act = tfl["ActivationFunctionType"].ActivationFunctionType

    def quantize(f):
        return zp_out + _round_away(float(np.float32(f) / np.float32(s_out)))

    if activation == act.NONE:
        return -128, 127
    if activation == act.RELU:
        return max(-128, quantize(0.0)), 127
    if activation == act.RELU6:
        return max(-128, quantize(0.0)), min(127, quantize(6.0))
    if activation == act.RELU_N1_TO_1:
        return max(-128, quantize(-1.0)), min(127, quantize(1.0))
    raise AssertionError(activation)


def _check_layer(tfl, litert, *, x, w, bias, s_a, zp_a, s_w, s_out, zp_out, activation="NONE",
                 op="fc"):
    """Run one layer through LiteRT and the golden model.

    Returns LiteRT's (M, N) int8 result and the golden ``gemm_int8`` results in the single and
    the double rounding mode.
    """
    act = getattr(tfl["ActivationFunctionType"].ActivationFunctionType, activation)
    model = _build_model(tfl, op=op, x_shape=x.shape, s_a=s_a, zp_a=zp_a, w=w, s_w=s_w,
                         bias=bias, s_out=s_out, zp_out=zp_out, activation=act)
    m_, k_ = x.shape
    if op == "fc":
        got = litert(model, x)
    else:
        got = litert(model, x.reshape(1, m_, 1, k_)).reshape(m_, -1)
    assert got.dtype == np.int8 and got.shape == (x.shape[0], w.shape[0])
    s_w = np.asarray(s_w, dtype=np.float32)
    m0, sh = effective_scale(np.float32(s_a), s_w, np.float32(s_out))
    act_min, act_max = _activation_range(tfl, act, s_out, zp_out)
    kwargs = dict(bias=bias, zp_a=zp_a, multiplier=m0, shift=sh, zp_out=zp_out,
                  act_min=act_min, act_max=act_max)
    single = gemm_int8(x, w.T, rounding="single", **kwargs)
    double = gemm_int8(x, w.T, rounding="double", **kwargs)
    return got, single, double


def _random_layer(rng, m, k, n, *, per_channel=True, w_range=128, spread=(20.0, 70.0),
                  bias_range=1 << 16, s_out=None):
    """Random int8 FC layer whose output scale puts results across the int8 range."""
    x = rng.integers(-128, 128, size=(m, k), dtype=np.int8)
    w = rng.integers(-w_range, w_range, size=(n, k), dtype=np.int8)
    bias = rng.integers(-bias_range, bias_range, size=n, dtype=np.int64).astype(np.int32)
    zp_a = int(rng.integers(-128, 128))
    zp_out = int(rng.integers(-40, 41))
    s_a = np.float32(rng.uniform(0.005, 0.1))
    if s_out is None:
        s_out = np.float32(rng.uniform(0.01, 0.5))
    acc = gemm_int8(x, w.T, bias=bias, zp_a=zp_a).astype(np.float64)
    rms = np.sqrt(np.mean(acc**2, axis=0)) + 1.0
    # choose the weight scales so that acc * S_a * S_w / S_out spreads over ~spread LSBs
    target = rng.uniform(*spread, size=n)
    s_w = (float(s_out) * target / (float(s_a) * rms)).astype(np.float32)
    if not per_channel:
        s_w = np.array([np.median(s_w)], dtype=np.float32)
    return dict(x=x, w=w, bias=bias, s_a=s_a, zp_a=zp_a, s_w=s_w, s_out=s_out, zp_out=zp_out)


LAYERS = [
    # (seed, m, k, n, per_channel, activation)
    (1, 1, 1, 2, True, "NONE"),
    (2, 4, 16, 8, True, "NONE"),
    (3, 7, 300, 33, True, "NONE"),
    (4, 16, 64, 16, True, "RELU"),
    (5, 9, 50, 12, True, "RELU6"),
    (6, 5, 40, 6, True, "RELU_N1_TO_1"),
    (7, 8, 32, 10, False, "NONE"),
    (8, 3, 20, 1, False, "RELU"),
    (9, 32, 128, 24, True, "NONE"),
    (10, 12, 2, 5, True, "NONE"),
]


def _layer(seed, m, k, n, per_channel, activation):
    rng = np.random.default_rng(seed)
    if activation == "RELU6":
        # the ReLU6 ceiling inside the int8 range: 6 / 0.0625 = 96 LSBs above the zero point
        return _random_layer(rng, m, k, n, per_channel=per_channel, spread=(60.0, 150.0),
                             s_out=np.float32(0.0625))
    return _random_layer(rng, m, k, n, per_channel=per_channel)


@pytest.mark.parametrize("seed, m, k, n, per_channel, activation", LAYERS)
def test_fc_single_rounding_vs_litert_random(tfl, litert, seed, m, k, n, per_channel,
                                             activation):
    # FULLY_CONNECTED through the reference kernels, bit-exact with rounding="single".
    # Random layers have no rounding ties (see the tie tests below for what LiteRT does there).
    layer = _layer(seed, m, k, n, per_channel, activation)
    got, single, _ = _check_layer(tfl, litert, activation=activation, op="fc", **layer)
    assert np.array_equal(got, single), (got, single)
    # the layer exercises the requantizer rather than only its clamp
    assert len(np.unique(single)) >= min(3, single.size)


@pytest.mark.parametrize("seed, m, k, n, per_channel, activation", LAYERS[1:7])
def test_conv1x1_double_rounding_vs_litert_random(tfl, litert, seed, m, k, n, per_channel,
                                                  activation):
    # The same GEMMs as 1x1 CONV_2D layers, whose reference kernel requantizes with TFLite's
    # integer MultiplyByQuantizedMultiplier: bit-exact with rounding="double" (test below).
    layer = _layer(seed, m, k, n, per_channel, activation)
    got, _, double = _check_layer(tfl, litert, activation=activation, op="conv", **layer)
    assert np.array_equal(got, double), (got, double)


@pytest.mark.parametrize("op, mode", [("fc", "single"), ("conv", "double")])
def test_positive_shifts_vs_litert(tfl, litert, op, mode):
    # r between 1 and 8: positive shifts (the left shift of the double mode).
    rng = np.random.default_rng(11)
    x = rng.integers(-12, 13, size=(10, 2), dtype=np.int8)
    w = rng.integers(-5, 6, size=(6, 2), dtype=np.int8)
    bias = rng.integers(-20, 21, size=6).astype(np.int32)
    s_w = rng.uniform(1.0, 8.0, size=6).astype(np.float32)
    got, single, double = _check_layer(tfl, litert, x=x, w=w, bias=bias, s_a=np.float32(0.5),
                                       zp_a=3, s_w=s_w, s_out=np.float32(0.5), zp_out=-2, op=op)
    _, sh = effective_scale(np.float32(0.5), s_w, np.float32(0.5))
    assert np.all(sh >= 1)
    assert np.array_equal(got, {"single": single, "double": double}[mode])


def _tie_layer(per_channel):
    """Power-of-two scales: r is a power of two, M0 = 2^30, and acc * r has many exact ties.

    r = 2^-3 * 2^-4 / 2^-2 = 2^-5 (sh = -4) and 2^-3 * 2^-6 / 2^-2 = 2^-7 (sh = -6).
    """
    rng = np.random.default_rng(12)
    x = rng.integers(-128, 128, size=(16, 8), dtype=np.int8)
    w = rng.integers(-16, 17, size=(32, 8), dtype=np.int8)
    bias = (rng.integers(-64, 65, size=32) * 16).astype(np.int32)
    s_w = np.array([2.0**-4, 2.0**-6] * 16 if per_channel else [2.0**-4], dtype=np.float32)
    return dict(x=x, w=w, bias=bias, s_a=np.float32(2.0**-3), zp_a=-7, s_w=s_w,
                s_out=np.float32(2.0**-2), zp_out=5)


@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "per-tensor"])
def test_conv1x1_ties_match_double_rounding(tfl, litert, per_channel):
    # LiteRT's reference CONV_2D uses TFLite's integer MultiplyByQuantizedMultiplier. On a layer
    # full of ties it agrees with rounding="double" (gemmlowp) bit for bit -- including the
    # double-rounding cases such as acc = 1327 at r = 2^-5 (41.47 -> h = 664 -> 41.5 -> 42) --
    # and NOT with rounding="single": the PyPI build does not define TFLITE_SINGLE_ROUNDING.
    layer = _tie_layer(per_channel)
    m0, sh = effective_scale(layer["s_a"], layer["s_w"], layer["s_out"])
    assert set(np.atleast_1d(m0).tolist()) == {1 << 30}
    got, single, double = _check_layer(tfl, litert, op="conv", **layer)
    assert np.array_equal(got, double)
    assert not np.array_equal(got, single), "the layer has no tie that separates the modes"


@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "per-tensor"])
def test_fc_reference_kernel_rounds_in_float(tfl, litert, per_channel):
    # A LiteRT quirk, pinned so that a change shows: its reference FULLY_CONNECTED int8 kernel
    # does not use the integer multiplier at all but computes
    # round(double(acc) * (double(S_a) * double(S_w) / double(S_out))) with std::round (ties
    # away from zero). So it agrees with rounding="single" except on ties and near-ties, which
    # random layers (above) never hit; on this tie-rich layer it differs from both modes.
    layer = _tie_layer(per_channel)
    got, single, double = _check_layer(tfl, litert, op="fc", **layer)
    acc = gemm_int8(layer["x"], layer["w"].T, bias=layer["bias"], zp_a=layer["zp_a"])
    r = (np.float64(layer["s_a"]) * layer["s_w"].astype(np.float64)) / np.float64(layer["s_out"])
    v = acc * r  # exact here: r is a power of two
    expected = np.clip(np.copysign(np.floor(np.abs(v) + 0.5), v) + layer["zp_out"], -128, 127)
    assert np.array_equal(got, expected.astype(np.int8))
    assert not np.array_equal(got, single)
    if not per_channel:
        assert not np.array_equal(got, double)


@pytest.mark.parametrize("op, mode", [("fc", "single"), ("conv", "double")])
def test_extreme_accumulators_vs_litert(tfl, litert, op, mode):
    # Row 0 of x is all -128 with K = 131071:
    #   channel 0, w all -128, bias 16383: 16384 * 131071 + 16383 = 2^31 - 1;
    #   channel 1, w all 127, bias -16793472: -16256 * 131071 - 16793472 = -2^31.
    # With S_a = S_w = 1 and S_out = 2^26 (r = 2^-26, M0 = 2^30, sh = -25):
    # (2^31 - 1) / 2^26 = 31.99.. -> 32 and -2^31 / 2^26 = -32 exactly; + zp_out 1 -> 33, -31.
    k = 131071
    rng = np.random.default_rng(13)
    x = rng.integers(-128, 128, size=(3, k), dtype=np.int8)
    x[0, :] = -128
    w = np.empty((2, k), dtype=np.int8)
    w[0, :] = -128
    w[1, :] = 127
    bias = np.array([16383, -16793472], dtype=np.int32)
    raw = gemm_int8(x, w.T, bias=bias)
    assert raw[0].tolist() == [2**31 - 1, -(2**31)]
    got, single, double = _check_layer(tfl, litert, x=x, w=w, bias=bias, s_a=np.float32(1.0),
                                       zp_a=0, s_w=np.ones(2, dtype=np.float32),
                                       s_out=np.float32(2.0**26), zp_out=1, op=op)
    assert single[0].tolist() == [33, -31] and double[0].tolist() == [33, -31]
    assert np.array_equal(got, {"single": single, "double": double}[mode])


def test_driver_bound_is_conservative_at_minus_2_31():
    # numerics.md's driver bound |bias'| + 128 * sum|B| <= 2^(W-1) - 1 is symmetric: channel 1
    # of the layer above (16793472 + 128 * 127 * 131071 = 2^31) is rejected at W = 32 although
    # its extreme, -2^31, is representable; channel 0 (exactly 2^31 - 1) is accepted.
    k = 131071
    b = np.empty((k, 2), dtype=np.int8)
    b[:, 0] = -128
    b[:, 1] = 127
    check_accumulator_bound(np.array([16383]), b[:, :1], 32)
    with pytest.raises(ValueError, match="column 0 can overflow"):
        check_accumulator_bound(np.array([-16793472]), b[:, 1:], 32)
