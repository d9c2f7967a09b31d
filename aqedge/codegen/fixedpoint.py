"""Build-time fixed-point parameters, computed exactly as TFLite Micro's Prepare does."""

from __future__ import annotations

import math

import numpy as np

INT8_MIN, INT8_MAX = -128, 127


def tflite_round(x: float) -> int:
    """std::round: half away from zero (Python's round() is half-to-even)."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: real = q * 2^(shift - 31), q in [2^30, 2^31)."""
    if real == 0.0:
        return 0, 0
    mantissa, shift = math.frexp(real)
    q = tflite_round(mantissa * (1 << 31))
    if q == (1 << 31):
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q, shift


def conv_multipliers(input_scale: float, filter_scales: np.ndarray, output_scale: float,
                     channels: int) -> tuple[list[int], list[int]]:
    """Per-channel multipliers of CONV_2D / DEPTHWISE_CONV_2D / per-channel FULLY_CONNECTED:
    double(input_scale) * double(filter_scale[c]) / double(output_scale)."""
    mults, shifts = [], []
    for c in range(channels):
        fs = float(filter_scales[c if len(filter_scales) > 1 else 0])
        m, s = quantize_multiplier(float(input_scale) * fs / float(output_scale))
        mults.append(m)
        shifts.append(s)
    return mults, shifts


def fc_multiplier(input_scale: float, filter_scale: float, output_scale: float) -> tuple[int, int]:
    """Per-tensor FULLY_CONNECTED: the scale product is taken in float32, then divided in double
    (GetQuantizedConvolutionMultipler)."""
    product = float(np.float32(input_scale) * np.float32(filter_scale))
    return quantize_multiplier(product / float(output_scale))


def activation_range(fused: int, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8: returns (act_min, act_max).

    `fused` is the TFLite ActivationFunctionType (0 NONE, 1 RELU, 2 RELU_N1_TO_1, 3 RELU6).
    """
    def quantize(f: float) -> int:
        return zero_point + tflite_round(float(np.float32(f) / np.float32(scale)))

    if fused == 0:
        return INT8_MIN, INT8_MAX
    if fused == 1:
        return max(INT8_MIN, quantize(0.0)), INT8_MAX
    if fused == 2:
        return max(INT8_MIN, quantize(-1.0)), min(INT8_MAX, quantize(1.0))
    if fused == 3:
        return max(INT8_MIN, quantize(0.0)), min(INT8_MAX, quantize(6.0))
    raise ValueError(f"fused activation {fused}")


def relu_range(opcode: str, scale: float, zero_point: int) -> tuple[int, int]:
    """Standalone RELU / RELU6 / RELU_N1_TO_1 bounds (CalculateReluOpData: roundf in float)."""
    low, high = {"RELU": (0.0, None), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}[opcode]

    def quantize(f: float) -> int:
        return zero_point + tflite_round(float(np.float32(f) / np.float32(scale)))

    act_min = max(INT8_MIN, quantize(low))
    act_max = INT8_MAX if high is None else min(INT8_MAX, quantize(high))
    return act_min, act_max


def softmax_params(input_scale: float, beta: float) -> tuple[int, int, int]:
    """PreprocessSoftmaxScaling + CalculateInputRadius for int8 input (5 integer bits).

    Returns (input_multiplier, input_left_shift, diff_min).
    """
    integer_bits = 5
    real = min(float(beta) * float(input_scale) * (1 << (31 - integer_bits)), (1 << 31) - 1.0)
    multiplier, left_shift = quantize_multiplier(real)
    radius = math.floor(((1 << integer_bits) - 1) * (1 << (31 - integer_bits)) / (1 << left_shift))
    return multiplier, left_shift, -radius


def compute_padding(in_size: int, filter_size: int, stride: int, dilation: int,
                    out_size: int) -> int:
    """ComputePaddingHeightWidth: the leading padding (the odd one goes at the end)."""
    effective = (filter_size - 1) * dilation + 1
    total = max((out_size - 1) * stride + effective - in_size, 0)
    return total // 2


def output_size(padding: int, in_size: int, filter_size: int, stride: int, dilation: int) -> int:
    """ComputeOutSize: padding 0 = SAME, 1 = VALID."""
    effective = (filter_size - 1) * dilation + 1
    if padding == 0:
        return (in_size + stride - 1) // stride
    return (in_size + stride - effective) // stride


def add_params(scale1: float, scale2: float, output_scale: float) -> dict[str, int]:
    """ADD's Prepare for int8: both inputs rescaled to twice the larger input scale with a
    left shift of 20, then the sum rescaled to the output."""
    left_shift = 20
    twice_max = 2 * float(max(np.float32(scale1), np.float32(scale2)))
    m1, s1 = quantize_multiplier(float(scale1) / twice_max)
    m2, s2 = quantize_multiplier(float(scale2) / twice_max)
    mo, so = quantize_multiplier(twice_max / ((1 << left_shift) * float(output_scale)))
    return {"left_shift": left_shift, "input1_multiplier": m1, "input1_shift": s1,
            "input2_multiplier": m2, "input2_shift": s2,
            "output_multiplier": mo, "output_shift": so, "input2_sign": 1}


def sub_params(scale1: float, scale2: float, output_scale: float) -> dict[str, int]:
    """SUB's Prepare for int8 (CalculateOpDataSub): ADD's scheme, but every ratio is taken in
    float32 before it becomes a double; the scaled second input is then subtracted."""
    left_shift = 20
    f1, f2, fo = np.float32(scale1), np.float32(scale2), np.float32(output_scale)
    twice_max = np.float32(2) * max(f1, f2)
    m1, s1 = quantize_multiplier(float(f1 / twice_max))
    m2, s2 = quantize_multiplier(float(f2 / twice_max))
    mo, so = quantize_multiplier(float(twice_max / (np.float32(1 << left_shift) * fo)))
    return {"left_shift": left_shift, "input1_multiplier": m1, "input1_shift": s1,
            "input2_multiplier": m2, "input2_shift": s2,
            "output_multiplier": mo, "output_shift": so, "input2_sign": -1}
