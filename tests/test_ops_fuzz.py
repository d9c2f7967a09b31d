"""Fuzzing every op against TFLite Micro, byte for byte.

Two kinds of generated models:

* **Hand-built flatbuffers** (fast, any quantization): one model holds several independent
  branches of the op under test, each reading the model input `x` and drawing its own
  parameters (shapes, kernel sizes, strides, padding, dilation, fused activations, scales, zero
  points, weights). Every branch's output is reshaped to [1, n] (an alias) and the branches are
  concatenated into the single model output. RESHAPE copies bytes whatever the quantization, so
  the flat views all get one common quantization (TFLite Micro's CONCATENATION requires its
  inputs to share the output's scale); each branch's bytes land in the output unchanged and a
  mismatch is traced to its branch.
  A "case" is one branch, checked on several random int8 inputs.
* **Converter-made models** (slower, `tf.lite.TFLiteConverter` full int8 via Keras): checks that
  what the real converter emits (options, op versions, quantization choices) runs exactly too.

`AQEDGE_FUZZ_EXAMPLES` sets the hypothesis examples (models) per op for the hand-built models
(default 12, with 10 branches each: 120 cases per op) and `AQEDGE_FUZZ_CONVERTER_EXAMPLES` those
of the converter-made ones (default 1). bench/fuzz_ops.py reuses `run_case` for thousands.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("AQEDGE_FUZZ_EXAMPLES", "12"))
CONVERTER_EXAMPLES = int(os.environ.get("AQEDGE_FUZZ_CONVERTER_EXAMPLES", "1"))
BRANCHES = min(int(os.environ.get("AQEDGE_FUZZ_BRANCHES", "10")), 10)  # TFLM: <= 10 inputs
INPUTS_PER_MODEL = 4

# ---------------------------------------------------------------------------------------------
# A minimal .tflite writer (the writable schema bindings).


class ModelWriter:
    def __init__(self):
        from ai_edge_litert import schema_py_generated as schema

        self.s = schema
        self.tensors: list = []
        self.buffers: list = [schema.BufferT()]
        self.ops: list = []
        self.opcodes: dict[int, int] = {}
        self.shapes: list[tuple[int, ...]] = []

    def tensor(self, shape, dtype="int8", scale=None, zero_point=None, data=None, qdim=0) -> int:
        s = self.s
        t = s.TensorT()
        t.shape = list(shape)
        t.type = {"int8": s.TensorType.INT8, "int32": s.TensorType.INT32,
                  "float32": s.TensorType.FLOAT32, "int4": s.TensorType.INT4}[dtype]
        t.name = f"t{len(self.tensors)}"
        t.buffer = 0
        if scale is not None:
            q = s.QuantizationParametersT()
            q.scale = [float(v) for v in np.atleast_1d(scale)]
            q.zeroPoint = [int(v) for v in np.atleast_1d(zero_point if zero_point is not None else 0)]
            if len(q.zeroPoint) != len(q.scale):
                q.zeroPoint = q.zeroPoint * len(q.scale)
            q.quantizedDimension = qdim
            t.quantization = q
        if data is not None:
            b = s.BufferT()
            if dtype == "int4":
                from aqedge.int4 import pack_int4

                b.data = np.frombuffer(pack_int4(data), np.uint8)
            else:
                arr = np.ascontiguousarray(data, dtype={"int8": np.int8, "int32": np.int32}[dtype])
                b.data = np.frombuffer(arr.tobytes(), np.uint8)
            t.buffer = len(self.buffers)
            self.buffers.append(b)
        self.tensors.append(t)
        self.shapes.append(tuple(shape))
        return len(self.tensors) - 1

    def op(self, name: str, inputs, outputs, options=None, options_type: str | None = None) -> None:
        s = self.s
        code = getattr(s.BuiltinOperator, name)
        if code not in self.opcodes:
            oc = s.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = 1
            self.opcodes[code] = len(self.opcodes)
        o = s.OperatorT()
        o.opcodeIndex = self.opcodes[code]
        o.inputs = list(inputs)
        o.outputs = list(outputs)
        if options is not None:
            o.builtinOptionsType = getattr(s.BuiltinOptions, options_type)
            o.builtinOptions = options
        self.ops.append(o)

    def options(self, cls: str, **fields):
        obj = getattr(self.s, cls)()
        for k, v in fields.items():
            setattr(obj, k, v)
        return obj

    def finish(self, inputs: list[int], outputs: list[int]) -> bytes:
        import flatbuffers

        s = self.s
        model = s.ModelT()
        model.version = 3
        model.description = "aqedge fuzz"
        codes = sorted(self.opcodes, key=self.opcodes.get)
        model.operatorCodes = []
        for code in codes:
            oc = s.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = 1
            model.operatorCodes.append(oc)
        sub = s.SubGraphT()
        sub.tensors, sub.operators, sub.inputs, sub.outputs = self.tensors, self.ops, inputs, outputs
        model.subgraphs = [sub]
        model.buffers = self.buffers
        b = flatbuffers.Builder(1024)
        b.Finish(model.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


# ---------------------------------------------------------------------------------------------
# Random quantization helpers.

ACTS = [0, 1, 2, 3]  # NONE, RELU, RELU_N1_TO_1, RELU6


def _log_uniform(rng, lo, hi):
    return float(np.float32(np.exp(rng.uniform(np.log(lo), np.log(hi)))))


def _zp(rng):
    return int(rng.integers(-128, 128))


def _weights(rng, shape, channels_axis, per_channel, int4=False):
    n = shape[channels_axis] if per_channel else 1
    scales = np.array([_log_uniform(rng, 1e-3, 3e-2) for _ in range(n)], np.float32)
    if int4:  # narrow-range 4-bit weights, stored packed as TensorType INT4
        scales *= 16
    w = rng.integers(-7, 8, shape).astype(np.int8) if int4 else rng.integers(-127, 128, shape).astype(np.int8)
    if rng.random() < 0.2:  # sparse-ish weights: many zeros
        w[rng.random(shape) < 0.6] = 0
    return w, scales


def _mac_output_quant(rng, in_scale, w_scales, fan_in):
    """An output scale near the accumulator's spread times a random factor (2^-2 .. 2^2)."""
    spread = float(in_scale) * float(np.mean(w_scales)) * 74.0 * 74.0 * np.sqrt(max(fan_in, 1))
    return float(np.float32(spread * 3 / 128 * 2.0 ** rng.uniform(-2, 2))), _zp(rng)


def _bias(rng, in_scale, w_scales, n, fan_in):
    if rng.random() < 0.15:
        return None
    spread = 74.0 * 74.0 * np.sqrt(max(fan_in, 1))
    return rng.normal(0, spread, n).round().astype(np.int32)


# ---------------------------------------------------------------------------------------------
# Branch builders: each adds ops reading `x` and returns its output tensor index.


@dataclass
class Spec:
    """The model input and the branches' descriptions (for the report)."""

    shape: tuple[int, ...]
    scale: float
    zero_point: int
    branches: list[str] = field(default_factory=list)


def _out_hw(padding, size, k, stride, dil):
    eff = (k - 1) * dil + 1
    return (size + stride - 1) // stride if padding == 0 else (size + stride - eff) // stride


def _spatial(rng, spec, max_k=5, dilation=True):
    _, h, w, _ = spec.shape
    for _ in range(50):
        kh, kw = int(rng.integers(1, max_k + 1)), int(rng.integers(1, max_k + 1))
        sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        dh = dw = 1
        if dilation and rng.random() < 0.35:
            dh, dw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        padding = int(rng.integers(0, 2))
        oh, ow = _out_hw(padding, h, kh, sh, dh), _out_hw(padding, w, kw, sw, dw)
        if oh >= 1 and ow >= 1:
            return kh, kw, sh, sw, dh, dw, padding, oh, ow
    return 1, 1, 1, 1, 1, 1, 1, h, w


def b_conv(m: ModelWriter, x: int, spec: Spec, rng, int4: bool = False) -> tuple[int, str]:
    _, h, w, c = spec.shape
    kh, kw, sh, sw, dh, dw, padding, oh, ow = _spatial(rng, spec)
    oc = int(rng.integers(1, 9))
    per_channel = rng.random() < 0.8
    wt, ws = _weights(rng, (oc, kh, kw, c), 0, per_channel, int4)
    fan_in = kh * kw * c
    osc, ozp = _mac_output_quant(rng, spec.scale, ws, fan_in)
    bias = _bias(rng, spec.scale, ws, oc, fan_in)
    wi = m.tensor(wt.shape, "int4" if int4 else "int8", ws, np.zeros(len(ws), int), wt, qdim=0)
    ins = [x, wi]
    if bias is not None:
        bscale = (np.float32(spec.scale) * ws).astype(np.float32)
        ins.append(m.tensor((oc,), "int32", bscale, np.zeros(len(bscale), int), bias))
    else:
        ins.append(-1)
    act = int(rng.choice(ACTS))
    y = m.tensor((1, oh, ow, oc), "int8", osc, ozp)
    m.op("CONV_2D", ins, [y], m.options("Conv2DOptionsT", padding=padding, strideH=sh, strideW=sw,
                                        dilationHFactor=dh, dilationWFactor=dw,
                                        fusedActivationFunction=act), "Conv2DOptions")
    return y, (f"conv {kh}x{kw} s{sh}x{sw} d{dh}x{dw} {'SAME' if padding == 0 else 'VALID'} "
               f"{c}->{oc} act{act} {'pc' if per_channel else 'pt'}")


def b_depthwise(m, x, spec, rng, int4=False):
    _, h, w, c = spec.shape
    kh, kw, sh, sw, dh, dw, padding, oh, ow = _spatial(rng, spec)
    dm = int(rng.integers(1, 4))
    oc = c * dm
    per_channel = rng.random() < 0.8
    wt, ws = _weights(rng, (1, kh, kw, oc), 3, per_channel, int4)
    osc, ozp = _mac_output_quant(rng, spec.scale, ws, kh * kw)
    # TFLite Micro's DEPTHWISE_CONV_2D crashes without a bias tensor: always give one.
    bias = _bias(rng, spec.scale, ws, oc, kh * kw)
    if bias is None:
        bias = np.zeros(oc, np.int32)
    wi = m.tensor(wt.shape, "int4" if int4 else "int8", ws, np.zeros(len(ws), int), wt, qdim=3)
    ins = [x, wi]
    if bias is not None:
        bscale = (np.float32(spec.scale) * ws).astype(np.float32)
        ins.append(m.tensor((oc,), "int32", bscale, np.zeros(len(bscale), int), bias))
    else:
        ins.append(-1)
    act = int(rng.choice(ACTS))
    y = m.tensor((1, oh, ow, oc), "int8", osc, ozp)
    m.op("DEPTHWISE_CONV_2D", ins, [y],
         m.options("DepthwiseConv2DOptionsT", padding=padding, strideH=sh, strideW=sw,
                   depthMultiplier=dm, dilationHFactor=dh, dilationWFactor=dw,
                   fusedActivationFunction=act), "DepthwiseConv2DOptions")
    return y, f"depthwise {kh}x{kw} s{sh}x{sw} d{dh}x{dw} {'SAME' if padding == 0 else 'VALID'} x{dm} act{act}"


def b_fully_connected(m, x, spec, rng, int4=False):
    size = int(np.prod(spec.shape))
    depth = spec.shape[-1] if rng.random() < 0.5 else size
    batches = size // depth
    out = int(rng.integers(1, 17))
    per_channel = rng.random() < 0.3 and not int4  # TFLite Micro: INT4 FC is per-tensor only
    wt, ws = _weights(rng, (out, depth), 0, per_channel, int4)
    osc, ozp = _mac_output_quant(rng, spec.scale, ws, depth)
    bias = _bias(rng, spec.scale, ws, out, depth)
    ins = [x, m.tensor(wt.shape, "int4" if int4 else "int8", ws, np.zeros(len(ws), int), wt, qdim=0)]
    if bias is not None:
        bscale = (np.float32(spec.scale) * ws).astype(np.float32)
        ins.append(m.tensor((out,), "int32", bscale, np.zeros(len(bscale), int), bias))
    else:
        ins.append(-1)
    act = int(rng.choice(ACTS))
    y = m.tensor((batches, out), "int8", osc, ozp)
    m.op("FULLY_CONNECTED", ins, [y],
         m.options("FullyConnectedOptionsT", fusedActivationFunction=act, keepNumDims=False),
         "FullyConnectedOptions")
    return y, f"fully connected {batches}x{depth} -> {out} act{act} {'pc' if per_channel else 'pt'}"


def _second_operand(m, x, spec, rng):
    """A constant (same or broadcast shape) or a requantized copy of x."""
    kind = rng.choice(["const", "const_bcast", "requant", "same"])
    if kind in ("const", "const_bcast"):
        shape = list(spec.shape)
        if kind == "const_bcast":
            shape = [d if rng.random() < 0.4 else 1 for d in shape]
            if rng.random() < 0.3:  # lower rank, as TFLite allows
                shape = shape[int(rng.integers(1, 4)):]
        data = rng.integers(-128, 128, shape).astype(np.int8)
        t = m.tensor(shape, "int8", _log_uniform(rng, 1e-3, 1.0), _zp(rng), data)
        return t, f"{kind}{shape}"
    if kind == "requant":
        t = m.tensor(spec.shape, "int8", _log_uniform(rng, 1e-3, 1.0), _zp(rng))
        m.op("QUANTIZE", [x], [t])
        return t, "requant(x)"
    return x, "x"


def _broadcast_shape(a, b):
    n = max(len(a), len(b))
    a, b = [1] * (n - len(a)) + list(a), [1] * (n - len(b)) + list(b)
    return tuple(max(p, q) for p, q in zip(a, b))


def _binary(m, x, spec, rng, name, options_cls, options_type):
    other, what = _second_operand(m, x, spec, rng)
    first, second = (x, other) if rng.random() < 0.5 else (other, x)
    shape = _broadcast_shape(m.shapes[first], m.shapes[second])
    act = int(rng.choice(ACTS))
    s1 = m.tensors[first].quantization.scale[0]
    s2 = m.tensors[second].quantization.scale[0]
    if name in ("ADD", "SUB"):
        osc = float(np.float32((s1 + s2) * 128 / 127 * 2.0 ** rng.uniform(-1.5, 1)))
    else:
        osc = float(np.float32(s1 * s2 * 128 * 2.0 ** rng.uniform(-2, 1)))
    y = m.tensor(shape, "int8", osc, _zp(rng))
    m.op(name, [first, second], [y], m.options(options_cls, fusedActivationFunction=act), options_type)
    return y, f"{name.lower()} {list(m.shapes[first])} {list(m.shapes[second])} ({what}) act{act}"


def b_add(m, x, spec, rng):
    return _binary(m, x, spec, rng, "ADD", "AddOptionsT", "AddOptions")


def b_sub(m, x, spec, rng):
    return _binary(m, x, spec, rng, "SUB", "SubOptionsT", "SubOptions")


def b_mul(m, x, spec, rng):
    return _binary(m, x, spec, rng, "MUL", "MulOptionsT", "MulOptions")


def _pool(m, x, spec, rng, name):
    _, h, w, c = spec.shape
    kh, kw, sh, sw, _, _, padding, oh, ow = _spatial(rng, spec, max_k=4, dilation=False)
    act = int(rng.choice(ACTS))
    y = m.tensor((1, oh, ow, c), "int8", spec.scale, spec.zero_point)
    m.op(name, [x], [y], m.options("Pool2DOptionsT", padding=padding, strideH=sh, strideW=sw,
                                   filterHeight=kh, filterWidth=kw, fusedActivationFunction=act),
         "Pool2DOptions")
    return y, f"{name.lower()} {kh}x{kw} s{sh}x{sw} {'SAME' if padding == 0 else 'VALID'} act{act}"


def b_avg_pool(m, x, spec, rng):
    return _pool(m, x, spec, rng, "AVERAGE_POOL_2D")


def b_max_pool(m, x, spec, rng):
    return _pool(m, x, spec, rng, "MAX_POOL_2D")


def b_softmax(m, x, spec, rng):
    beta = float(np.float32(rng.choice([1.0, rng.uniform(0.1, 3.0)])))
    y = m.tensor(spec.shape, "int8", 1.0 / 256, -128)
    m.op("SOFTMAX", [x], [y], m.options("SoftmaxOptionsT", beta=beta), "SoftmaxOptions")
    return y, f"softmax beta {beta:.3g}"


def b_mean(m, x, spec, rng):
    axes_choices = [[1, 2], [2, 1], [1], [2], [3], [1, 2, 3], [-1], [-3, -2], [0, 1, 2, 3]]
    axes = axes_choices[int(rng.integers(0, len(axes_choices)))]
    if rng.random() < 0.6:
        axes = [1, 2]
    keep = bool(rng.random() < 0.7)
    norm = sorted({a % 4 for a in axes})
    shape = [1 if k in norm else d for k, d in enumerate(spec.shape)] if keep else \
        [d for k, d in enumerate(spec.shape) if k not in norm]
    same = rng.random() < 0.4
    osc = spec.scale if same else float(np.float32(spec.scale * 2.0 ** rng.uniform(-1.5, 1.5)))
    ozp = spec.zero_point if same else _zp(rng)
    axis = m.tensor((len(axes),), "int32", data=np.array(axes, np.int32))
    y = m.tensor(tuple(shape), "int8", osc, ozp)
    m.op("MEAN", [x, axis], [y], m.options("ReducerOptionsT", keepDims=keep), "ReducerOptions")
    return y, f"mean axes {axes} keep {keep} {'same' if same else 'requant'}"


def b_pad(m, x, spec, rng):
    pads = np.array([[0, 0]] + [[int(rng.integers(0, 3)), int(rng.integers(0, 3))] for _ in range(3)],
                    np.int32)
    if rng.random() < 0.2:
        pads[0] = [int(rng.integers(0, 2)), int(rng.integers(0, 2))]
    shape = tuple(int(d + p.sum()) for d, p in zip(spec.shape, pads))
    pi = m.tensor((4, 2), "int32", data=pads)
    y = m.tensor(shape, "int8", spec.scale, spec.zero_point)
    if rng.random() < 0.5:
        m.op("PAD", [x, pi], [y], m.options("PadOptionsT"), "PadOptions")
        return y, f"pad {pads.tolist()}"
    value = int(rng.integers(-128, 128))
    ci = m.tensor((), "int8", spec.scale, spec.zero_point, np.array(value, np.int8))
    m.op("PADV2", [x, pi, ci], [y], m.options("PadV2OptionsT"), "PadV2Options")
    return y, f"padv2 {pads.tolist()} value {value}"


def b_concatenation(m, x, spec, rng):
    axis = int(rng.integers(0, 4))
    parts, what = [], []
    for _ in range(int(rng.integers(2, 5))):
        kind = rng.choice(["x", "const", "requant"])
        if kind == "x":
            parts.append(x)
        elif kind == "requant":
            t = m.tensor(spec.shape, "int8", spec.scale, spec.zero_point)
            m.op("QUANTIZE", [x], [t])
            parts.append(t)
        else:
            shape = list(spec.shape)
            shape[axis] = int(rng.integers(1, 4))
            parts.append(m.tensor(shape, "int8", spec.scale, spec.zero_point,
                                  rng.integers(-128, 128, shape).astype(np.int8)))
        what.append(str(kind))
    shape = list(spec.shape)
    shape[axis] = sum(m.shapes[t][axis] for t in parts)
    y = m.tensor(tuple(shape), "int8", spec.scale, spec.zero_point)
    neg = rng.random() < 0.3
    m.op("CONCATENATION", parts, [y],
         m.options("ConcatenationOptionsT", axis=axis - 4 if neg else axis, fusedActivationFunction=0),
         "ConcatenationOptions")
    return y, f"concatenation axis {axis - 4 if neg else axis} of {'+'.join(what)}"


def b_logistic(m, x, spec, rng):
    y = m.tensor(spec.shape, "int8", 1.0 / 256, -128)
    m.op("LOGISTIC", [x], [y])
    return y, "logistic"


def b_swish(m, x, spec, rng):
    """Swish as the converter emits it, MUL(x, LOGISTIC(x)) (either operand order, a fused
    activation, a random output quantization), which runs as one table of x; or, when the
    LOGISTIC output is also concatenated to the result ("shared"), as two tables and a MUL."""
    sig = m.tensor(spec.shape, "int8", 1.0 / 256, -128)
    m.op("LOGISTIC", [x], [sig])
    osc = float(np.float32(spec.scale * 2.0 ** rng.uniform(-2, 1)))
    y = m.tensor(spec.shape, "int8", osc, _zp(rng))
    act = int(rng.choice(ACTS))
    swapped = bool(rng.random() < 0.5)
    m.op("MUL", [sig, x] if swapped else [x, sig], [y],
         m.options("MulOptionsT", fusedActivationFunction=act), "MulOptions")
    what = f"swish act{act}{' swapped' if swapped else ''}"
    if rng.random() < 0.25:
        shape = list(spec.shape)
        shape[-1] *= 2
        both = m.tensor(tuple(shape), "int8", osc, m.tensors[y].quantization.zeroPoint[0])
        as_y = m.tensor(spec.shape, "int8", osc, m.tensors[y].quantization.zeroPoint[0])
        m.op("QUANTIZE", [sig], [as_y])
        m.op("CONCATENATION", [y, as_y], [both],
             m.options("ConcatenationOptionsT", axis=3, fusedActivationFunction=0), "ConcatenationOptions")
        y, what = both, what + " shared"
    return y, what


def b_hard_swish(m, x, spec, rng):
    osc = float(np.float32(max(spec.scale * 2.0 ** rng.uniform(-2, 1.5), spec.scale / 100)))
    y = m.tensor(spec.shape, "int8", osc, _zp(rng))
    m.op("HARD_SWISH", [x], [y])
    return y, f"hard_swish out scale x{osc / spec.scale:.3g}"


def b_quantize(m, x, spec, rng):
    osc = float(np.float32(spec.scale * 2.0 ** rng.uniform(-3, 3)))
    y = m.tensor(spec.shape, "int8", osc, _zp(rng))
    m.op("QUANTIZE", [x], [y])
    return y, f"quantize x{osc / spec.scale:.3g}"


def b_clamp(m, x, spec, rng):
    """MINIMUM and/or MAXIMUM against constant scalars, the clamp the converter emits around
    4-bit activations. After a CONV_2D or a HARD_SWISH they fold into its output clamp; after a
    LOGISTIC (no output clamp) or on a conv output that a CONCATENATION also reads ("shared")
    the first one runs as a standalone aq_clamp_s8."""
    producer = str(rng.choice(["conv", "hard_swish", "logistic", "shared"]))
    if producer == "hard_swish":
        y, what = b_hard_swish(m, x, spec, rng)
    elif producer == "logistic":
        y, what = b_logistic(m, x, spec, rng)
    else:
        y, what = b_conv(m, x, spec, rng, int4=bool(rng.random() < 0.5))
    src, q = y, m.tensors[y].quantization
    for name in rng.permutation(["MINIMUM", "MAXIMUM"])[:int(rng.integers(1, 3))]:
        c = m.tensor((), "int8", q.scale[0], q.zeroPoint[0], np.array(rng.integers(-128, 128), np.int8))
        z = m.tensor(m.shapes[y], "int8", q.scale[0], q.zeroPoint[0])
        m.op(str(name), [y, c] if rng.random() < 0.7 else [c, y], [z])
        what += f" {str(name).lower()}"
        y = z
    if producer == "shared":
        shape = list(m.shapes[y])
        shape[-1] *= 2
        both = m.tensor(tuple(shape), "int8", q.scale[0], q.zeroPoint[0])
        m.op("CONCATENATION", [src, y], [both],
             m.options("ConcatenationOptionsT", axis=3, fusedActivationFunction=0), "ConcatenationOptions")
        what += ", concatenated with its unclamped input"
        y = both
    return y, what


def b_leaky_relu(m, x, spec, rng):
    alpha = float(np.float32(rng.choice([0.01, 0.1, 0.2, 0.3, 0.7, 0.0, -0.4, 1.5, rng.uniform(-1, 2)])))
    osc = float(np.float32(spec.scale * 2.0 ** rng.uniform(-2, 2)))
    y = m.tensor(spec.shape, "int8", osc, _zp(rng))
    m.op("LEAKY_RELU", [x], [y], m.options("LeakyReluOptionsT", alpha=alpha), "LeakyReluOptions")
    return y, f"leaky_relu alpha {alpha:.3g} out scale x{osc / spec.scale:.3g}"


def b_squeeze_expand(m, x, spec, rng):
    """EXPAND_DIMS then SQUEEZE (both aliases of their input, like RESHAPE), around a MAX_POOL
    so the aliased tensors sit between two kernels."""
    axis = int(rng.integers(0, 5))
    shape = list(spec.shape)
    shape.insert(axis, 1)
    axis_t = m.tensor((1,), "int32", data=np.array([axis - 5 if rng.random() < 0.3 else axis], np.int32))
    wide = m.tensor(tuple(shape), "int8", spec.scale, spec.zero_point)
    m.op("EXPAND_DIMS", [x, axis_t], [wide])
    back = m.tensor(spec.shape, "int8", spec.scale, spec.zero_point)
    m.op("SQUEEZE", [wide], [back], m.options("SqueezeOptionsT", squeezeDims=[axis]), "SqueezeOptions")
    y = m.tensor(spec.shape, "int8", spec.scale, spec.zero_point)
    m.op("MAX_POOL_2D", [back], [y], m.options("Pool2DOptionsT", padding=0, strideW=1, strideH=1,
                                                 filterWidth=1, filterHeight=1), "Pool2DOptions")
    return y, f"expand_dims axis {axis}, squeeze"


def b_resize_nearest(m, x, spec, rng):
    """Up, down and odd factors, each of TFLite's align_corners / half_pixel_centers modes."""
    h, w, c = spec.shape[1:]
    out_h, out_w = (max(1, int(round(d * rng.choice([0.5, 0.75, 1.0, 1.5, 2.0, 3.0]))))
                    + int(rng.integers(0, 2)) for d in (h, w))
    align, half = [(False, False), (True, False), (False, True)][int(rng.integers(0, 3))]
    size = m.tensor((2,), "int32", data=np.array([out_h, out_w], np.int32))
    y = m.tensor((1, out_h, out_w, c), "int8", spec.scale, spec.zero_point)
    m.op("RESIZE_NEAREST_NEIGHBOR", [x, size], [y],
         m.options("ResizeNearestNeighborOptionsT", alignCorners=align, halfPixelCenters=half),
         "ResizeNearestNeighborOptions")
    return y, f"resize nearest {h}x{w} -> {out_h}x{out_w} align {align} half {half}"


BUILDERS = {
    "CONV_2D": b_conv, "DEPTHWISE_CONV_2D": b_depthwise, "FULLY_CONNECTED": b_fully_connected,
    "CONV_2D_INT4": lambda m, x, spec, rng: b_conv(m, x, spec, rng, int4=True),
    "DEPTHWISE_CONV_2D_INT4": lambda m, x, spec, rng: b_depthwise(m, x, spec, rng, int4=True),
    "FULLY_CONNECTED_INT4": lambda m, x, spec, rng: b_fully_connected(m, x, spec, rng, int4=True),
    "MINIMUM_MAXIMUM": b_clamp,
    "ADD": b_add, "SUB": b_sub, "MUL": b_mul, "AVERAGE_POOL_2D": b_avg_pool, "MAX_POOL_2D": b_max_pool,
    "SOFTMAX": b_softmax, "MEAN": b_mean, "PAD": b_pad, "CONCATENATION": b_concatenation,
    "LOGISTIC": b_logistic, "HARD_SWISH": b_hard_swish, "SWISH": b_swish, "QUANTIZE": b_quantize,
    "SQUEEZE_EXPAND_DIMS": b_squeeze_expand, "LEAKY_RELU": b_leaky_relu,
    "RESIZE_NEAREST_NEIGHBOR": b_resize_nearest,
}
FLOAT_EDGES = "QUANTIZE_DEQUANTIZE_FLOAT_EDGES"
OPS = list(BUILDERS) + [FLOAT_EDGES]

# ---- Packed activations (aqedge/codegen/storage.py): each branch reads its input through a
# 16-code clamp (a standalone clamp writing a packed tensor), clamps the op's output to 16 codes
# (folded into the op, or a standalone clamp where the op has no output clamp) and reads that
# back with an ADD of it to itself (packed in, int8 out). The op under test then reads a packed
# input and, where its output can be packed, writes a packed output.

#: op -> the packed kernel its lowering must call (CONV_2D / DEPTHWISE_CONV_2D: their variant
#: one output row at a time, through aq_band_of).
PACKED_OPS = {
    "CONV_2D": "aq_band_of", "CONV_2D_INT4": "aq_band_of",
    "DEPTHWISE_CONV_2D": "aq_band_of", "DEPTHWISE_CONV_2D_INT4": "aq_band_of",
    "FULLY_CONNECTED": "aq_fully_connected_packed_s8",
    "FULLY_CONNECTED_INT4": "aq_fully_connected_packed_s4",
    "ADD": "aq_add_packed_s8", "AVERAGE_POOL_2D": "aq_avg_pool_packed_s8",
    "MAX_POOL_2D": "aq_max_pool_packed_s8", "MEAN": "aq_mean_packed_s8",
    "HARD_SWISH": "aq_lut_packed_s8", "LOGISTIC": "aq_lut_packed_s8", "SWISH": "aq_lut_packed_s8",
    "LEAKY_RELU": "aq_lut_packed_s8", "MINIMUM_MAXIMUM": "aq_clamp_packed_s8",
}


def _clamp16(m, y, rng) -> int:
    """MAXIMUM then MINIMUM of `y` against constants 15 codes apart, near its zero point."""
    q = m.tensors[y].quantization
    lo = int(np.clip(q.zeroPoint[0] + rng.integers(-12, 4), -128, 112))
    for name, c in (("MAXIMUM", lo), ("MINIMUM", lo + 15)):
        const = m.tensor((), "int8", q.scale[0], q.zeroPoint[0], np.array(c, np.int8))
        z = m.tensor(m.shapes[y], "int8", q.scale[0], q.zeroPoint[0])
        m.op(name, [y, const], [z])
        y = z
    return y


def packed_branch(op: str):
    """A builder: `op` between a packed input and a packed output (see above)."""
    def build(m, x, spec, rng):
        y, what = BUILDERS[op](m, _clamp16(m, x, rng), spec, rng)
        y = _clamp16(m, y, rng)
        q = m.tensors[y].quantization
        z = m.tensor(m.shapes[y], "int8", float(np.float32(q.scale[0] * 2 ** rng.uniform(0, 2))), _zp(rng))
        m.op("ADD", [y, y], [z], m.options("AddOptionsT", fusedActivationFunction=0), "AddOptions")
        return z, f"packed: {what}"
    return build


def build_model(op: str, seed: int, branches: int, shape: tuple[int, int, int],
                packed: bool = False) -> tuple[bytes, Spec, list[int]]:
    """A model of `branches` independent `op` branches on one input (`packed`: between packed
    tensors, `packed_branch`); returns the flatbuffer, its spec and the output byte offset where
    each branch starts."""
    builder = packed_branch(op) if packed else BUILDERS[op]
    rng = np.random.default_rng(seed)
    spec = Spec((1, *shape), _log_uniform(rng, 2e-3, 0.5), _zp(rng))
    m = ModelWriter()
    x = m.tensor(spec.shape, "int8", spec.scale, spec.zero_point)
    flats, offsets, total = [], [], 0
    for _ in range(branches):
        y, what = builder(m, x, spec, rng)
        n = int(np.prod(m.shapes[y]))
        # RESHAPE copies bytes whatever the quantization, so the flat views share one (TFLite
        # Micro's CONCATENATION requires its inputs to have the output's scale).
        flat = m.tensor((1, n), "int8", 1.0, 0)
        shape_t = m.tensor((2,), "int32", data=np.array([1, n], np.int32))
        m.op("RESHAPE", [y, shape_t], [flat], m.options("ReshapeOptionsT", newShape=[1, n]), "ReshapeOptions")
        flats.append(flat)
        offsets.append(total)
        total += n
        spec.branches.append(what)
    out = m.tensor((1, total), "int8", 1.0, 0)
    m.op("CONCATENATION", flats, [out], m.options("ConcatenationOptionsT", axis=1), "ConcatenationOptions")
    return m.finish([x], [out]), spec, offsets + [total]


# ---------------------------------------------------------------------------------------------
# Host build (aqedge.codegen.host: the kernels compiled once into a cached library) and the
# comparison.


def host_runner(model: bytes, out_dir: Path, storage: str = "int8"):
    """Lower, plan, render and compile one model for the host; returns (graph, runner)."""
    from aqedge.codegen.host import build_host

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "fuzz.tflite"
    path.write_bytes(model)
    graph, _, runner = build_host(path, out_dir, storage)
    return graph, runner


@dataclass
class CaseResult:
    op: str
    seed: int
    cases: int
    bit_exact: int
    mismatches: list[str]


def compare(model: bytes, inputs: np.ndarray, work: Path, storage: str = "int8"):
    """(ours, reference) outputs of a model on int8 inputs (N, ...)."""
    from aqedge.codegen.host import run_host
    from aqedge.reference import TflmReference

    graph, runner = host_runner(model, work, storage)
    ours = run_host(runner, inputs, graph.tensors[graph.outputs[0]].nbytes)
    ref = TflmReference(model)
    theirs = np.stack([ref.run(x[None]).reshape(-1) for x in inputs])
    return ours, theirs


def run_float_edges_case(seed: int, branches: int, work: Path) -> CaseResult:
    """float32 input -> `branches` QUANTIZE (float -> int8, each its own scale and zero point)
    -> RESHAPE -> CONCATENATION -> DEQUANTIZE (int8 -> float32) output: the model edges of the
    converter's float-interface models. Inputs include exact .5 ties and out-of-range values."""
    from aqedge.codegen.host import run_host
    from aqedge.reference import TflmReference

    rng = np.random.default_rng(seed + 1)
    shape = (1, int(rng.integers(1, 8)), int(rng.integers(1, 8)), int(rng.integers(1, 5)))
    n = int(np.prod(shape))
    m = ModelWriter()
    x = m.tensor(shape, "float32")
    flats, whats = [], []
    for _ in range(branches):
        scale, zp = _log_uniform(rng, 1e-3, 0.5), _zp(rng)
        q = m.tensor(shape, "int8", scale, zp)
        m.op("QUANTIZE", [x], [q])
        flat = m.tensor((1, n), "int8", 1.0, 0)
        shape_t = m.tensor((2,), "int32", data=np.array([1, n], np.int32))
        m.op("RESHAPE", [q, shape_t], [flat], m.options("ReshapeOptionsT", newShape=[1, n]), "ReshapeOptions")
        flats.append(flat)
        whats.append(f"quantize scale {scale:.4g} zp {zp}")
    cat = m.tensor((1, n * branches), "int8", 1.0, 0)
    m.op("CONCATENATION", flats, [cat], m.options("ConcatenationOptionsT", axis=1), "ConcatenationOptions")
    out = m.tensor((1, n * branches), "float32")
    # DEQUANTIZE reads the concatenation with its own (random) quantization
    m.tensors[cat].quantization.scale = [_log_uniform(rng, 1e-3, 0.5)]
    m.tensors[cat].quantization.zeroPoint = [_zp(rng)]
    for f in flats:  # TFLite Micro's CONCATENATION wants inputs quantized like its output
        m.tensors[f].quantization.scale = list(m.tensors[cat].quantization.scale)
        m.tensors[f].quantization.zeroPoint = list(m.tensors[cat].quantization.zeroPoint)
    m.op("DEQUANTIZE", [cat], [out])
    model = m.finish([x], [out])
    inputs = (rng.standard_normal((INPUTS_PER_MODEL, *shape[1:])) * 30).astype(np.float32)
    inputs[0] = (np.round(inputs[0]) + 0.5) * np.float32(0.5)  # ties at half steps
    graph, runner = host_runner(model, work)
    ours = run_host(runner, inputs, graph.tensors[graph.outputs[0]].nbytes, np.float32)
    ref = TflmReference(model)
    theirs = np.stack([ref.run(xi[None]).reshape(-1) for xi in inputs])
    bad = [f"seed {seed} branch {i}: {what}" for i, what in enumerate(whats)
           if ours[:, i * n:(i + 1) * n].tobytes() != theirs[:, i * n:(i + 1) * n].tobytes()]
    return CaseResult("QUANTIZE_DEQUANTIZE_FLOAT_EDGES", seed, branches, branches - len(bad), bad)


def run_case(op: str, seed: int, branches: int = BRANCHES, shape=None, work: Path | None = None,
             packed: bool = False) -> CaseResult:
    """Build one hand-written model of `branches` cases of `op` (`packed`: between packed
    tensors, built with packed storage), run it here and in TFLite Micro on INPUTS_PER_MODEL
    random inputs, and count the branches that match byte for byte."""
    if op == FLOAT_EDGES:
        own = work is None
        work = work or Path(tempfile.mkdtemp(prefix="aqedge-fuzz-"))
        try:
            return run_float_edges_case(seed, branches, work)
        finally:
            if own:
                shutil.rmtree(work, ignore_errors=True)
    rng = np.random.default_rng(seed + 1)
    if shape is None:
        shape = (int(rng.integers(1, 10)), int(rng.integers(1, 10)), int(rng.integers(1, 9)))
    model, spec, offsets = build_model(op, seed, branches, shape, packed)
    inputs = rng.integers(-128, 128, (INPUTS_PER_MODEL, *spec.shape[1:]), dtype=np.int8)
    own_dir = work is None
    work = work or Path(tempfile.mkdtemp(prefix="aqedge-fuzz-"))
    try:
        ours, theirs = compare(model, inputs, work, "packed" if packed else "int8")
        if packed and PACKED_OPS[op] + "(" not in (work / "model.c").read_text():
            raise AssertionError(f"{op}: the packed build does not call {PACKED_OPS[op]}")
    finally:
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)
    bad = []
    for i, what in enumerate(spec.branches):
        a, b = ours[:, offsets[i]:offsets[i + 1]], theirs[:, offsets[i]:offsets[i + 1]]
        if not np.array_equal(a, b):
            diff = int(np.abs(a.astype(int) - b.astype(int)).max())
            bad.append(f"seed {seed} branch {i}: {what} on input {list(spec.shape)} "
                       f"scale {spec.scale:.4g} zp {spec.zero_point}: max diff {diff}, "
                       f"{int((a != b).sum())}/{a.size} bytes differ")
    return CaseResult(op, seed, len(spec.branches), len(spec.branches) - len(bad), bad)


# ---------------------------------------------------------------------------------------------
# The tests.


@pytest.fixture(scope="module", autouse=True)
def _tf_quiet():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.mark.parametrize("op", OPS)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1))
def test_op_bit_exact_with_tflm(op, seed, tmp_path):
    result = run_case(op, seed, work=tmp_path / f"{op}-{seed}")
    assert not result.mismatches, "\n".join(result.mismatches)


@pytest.mark.parametrize("op", list(PACKED_OPS))
@settings(max_examples=max(EXAMPLES // 3, 1), deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1))
def test_packed_op_bit_exact_with_tflm(op, seed, tmp_path):
    """Every op with a packed kernel, reading a packed input and writing a packed output where
    it can: byte for byte TFLite Micro's, and the packed kernel is the one called."""
    result = run_case(op, seed, work=tmp_path / f"{op}-{seed}", packed=True)
    assert not result.mismatches, "\n".join(result.mismatches)


# ---- Converter-made models (Keras -> TFLiteConverter full int8).


def _keras_branches(op: str, rng, shape):
    """Keras layers for `op` with random hyper-parameters (one list of layer calls per branch)."""
    import keras
    from keras import layers

    def conv():
        k = int(rng.integers(1, 4))
        return layers.Conv2D(int(rng.integers(1, 6)), k, strides=int(rng.integers(1, 3)),
                             padding=str(rng.choice(["same", "valid"])),
                             activation=str(rng.choice(["linear", "relu", "relu6"])))

    def depthwise():
        return layers.DepthwiseConv2D(int(rng.integers(1, 4)), strides=int(rng.integers(1, 3)),
                                      padding=str(rng.choice(["same", "valid"])),
                                      depth_multiplier=int(rng.integers(1, 3)),
                                      activation=str(rng.choice(["linear", "relu", "relu6"])))

    def pool(kind):
        cls = layers.AveragePooling2D if kind == "avg" else layers.MaxPooling2D
        return cls(int(rng.integers(1, 3)), strides=int(rng.integers(1, 3)),
                   padding=str(rng.choice(["same", "valid"])))

    def const_layer(fn):
        return layers.Lambda(fn)

    c = shape[-1]
    w = rng.normal(0, 1, (1, 1, 1, c)).astype(np.float32)
    table = {
        "CONV_2D": lambda: [conv()],
        "DEPTHWISE_CONV_2D": lambda: [depthwise()],
        "FULLY_CONNECTED": lambda: [layers.Flatten(), layers.Dense(int(rng.integers(1, 12)),
                                                                   activation=str(rng.choice(["linear", "relu"])))],
        "AVERAGE_POOL_2D": lambda: [pool("avg")],
        "MAX_POOL_2D": lambda: [pool("max")],
        "SOFTMAX": lambda: [layers.Dense(int(rng.integers(2, 8))), layers.Softmax()],
        "MEAN": lambda: [layers.GlobalAveragePooling2D(keepdims=True)],
        "PAD": lambda: [layers.ZeroPadding2D(((int(rng.integers(0, 3)), int(rng.integers(0, 3))),
                                              (int(rng.integers(0, 3)), int(rng.integers(0, 3)))))],
        "LOGISTIC": lambda: [layers.Activation("sigmoid")],
        "HARD_SWISH": lambda: [layers.Activation("hard_swish")],
        # exported as RESIZE_NEAREST_NEIGHBOR by aqedge.train.export_copy
        "RESIZE_NEAREST_NEIGHBOR": lambda: [layers.UpSampling2D((int(rng.integers(1, 4)),
                                                                 int(rng.integers(1, 4))))],
        "MUL": lambda: [const_layer(lambda t, w=w: t * keras.ops.convert_to_tensor(w))],
        "ADD": lambda: [const_layer(lambda t, w=w: t + keras.ops.convert_to_tensor(w))],
        # every converter model ends in a CONCATENATION of its branches
        "CONCATENATION": lambda: [layers.Conv2D(int(rng.integers(1, 4)), 1)],
    }
    return table[op]


CONVERTER_OPS = ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL", "AVERAGE_POOL_2D",
                 "MAX_POOL_2D", "SOFTMAX", "MEAN", "PAD", "CONCATENATION", "LOGISTIC", "HARD_SWISH",
                 "RESIZE_NEAREST_NEIGHBOR"]


def converter_model(op: str, seed: int, branches: int = 3) -> tuple[bytes, tuple[int, ...]]:
    """A Keras model with `branches` random `op` branches, flattened and concatenated (the
    converter adds the CONCATENATION and any requantization), converted to full int8."""
    import keras
    from keras import layers

    from aqedge.convert import convert_int8

    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed % (2**31))
    shape = (int(rng.integers(3, 9)), int(rng.integers(3, 9)), int(rng.integers(1, 5)))
    inputs = keras.Input(shape, batch_size=1)
    outs = []
    make = _keras_branches(op, rng, shape)
    for _ in range(branches):
        t = inputs
        for layer in make():
            t = layer(t)
        outs.append(layers.Flatten()(t))
    out = layers.Concatenate()(outs) if len(outs) > 1 else outs[0]
    model = keras.Model(inputs, out)
    lo, hi = sorted(rng.uniform(-4, 4, 2))
    rep = rng.uniform(lo, hi + 0.1, (32, *shape)).astype(np.float32)
    return convert_int8(model, rep, samples=32), shape


def run_converter_case(op: str, seed: int, work: Path) -> CaseResult:
    from aqedge.codegen.graph import read_tflite

    model, shape = converter_model(op, seed)
    graph = read_tflite(model)
    present = {o.opcode for o in graph.ops}
    assert op in present, f"the converter emitted {sorted(present)} for {op}"
    rng = np.random.default_rng(seed + 7)
    inputs = rng.integers(-128, 128, (INPUTS_PER_MODEL, *shape), dtype=np.int8)
    ours, theirs = compare(model, inputs, work)
    ok = np.array_equal(ours, theirs)
    bad = [] if ok else [f"converter seed {seed}: {int((ours != theirs).sum())} bytes differ "
                         f"(ops {[o.opcode for o in graph.ops]})"]
    return CaseResult(op, seed, 1, int(ok), bad)


@pytest.mark.parametrize("op", CONVERTER_OPS)
@settings(max_examples=CONVERTER_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1))
def test_converter_op_bit_exact_with_tflm(op, seed, tmp_path):
    result = run_converter_case(op, seed, tmp_path / f"{op}-{seed}")
    assert not result.mismatches, "\n".join(result.mismatches)


def test_unsupported_parameters_are_refused_with_reason():
    """A fused activation on CONCATENATION and a float QUANTIZE input are named, not miscompiled."""
    from aqedge.codegen.graph import read_tflite
    from aqedge.codegen.lower import LOWERINGS, Unsupported

    m = ModelWriter()
    x = m.tensor((1, 2, 2, 3), "int8", 0.1, 0)
    y = m.tensor((1, 2, 2, 6), "int8", 0.1, 0)
    m.op("CONCATENATION", [x, x], [y],
         m.options("ConcatenationOptionsT", axis=3, fusedActivationFunction=1), "ConcatenationOptions")
    z = m.tensor((1, 2, 2, 6), "int8", 0.2, 0)
    m.op("CONCATENATION", [x, x], [z], m.options("ConcatenationOptionsT", axis=3), "ConcatenationOptions")
    f = m.tensor((1, 2, 2, 3), "float32")
    m.op("DEQUANTIZE", [x], [f])
    q = m.tensor((1, 2, 2, 3), "int8", 0.1, 0)
    m.op("QUANTIZE", [f], [q])
    graph = read_tflite(m.finish([x], [y]))
    with pytest.raises(Unsupported, match="fused activation"):
        LOWERINGS["CONCATENATION"](graph, graph.ops[0], "op0")
    with pytest.raises(Unsupported, match="quantized differently"):
        LOWERINGS["CONCATENATION"](graph, graph.ops[1], "op1")
    with pytest.raises(Unsupported, match="float32 -> int8 QUANTIZE"):
        LOWERINGS["QUANTIZE"](graph, graph.ops[3], "op3")
