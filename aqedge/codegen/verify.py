"""The model verifier: what TFLite Micro would refuse (or compute differently), refused first.

`read_tflite` (graph.py) checks what it reads as it reads it (indices in range, buffers the size
of their tensors, names, shapes); `verify_graph` then checks the graph as a whole:

* quantization: scales positive and finite, zero points in the type's range, one scale per
  slice of the quantized dimension for per-channel parameters, that dimension in range;
* the graph: one writer per tensor, no writes to constants or model inputs, every op reading
  only constants, model inputs or tensors an earlier op wrote (so no cycle, no read of a tensor
  nothing produces), every model output produced;
* operator options: strides, dilations and pool windows >= 1, a known padding and fused
  activation, the depthwise multiplier equal to output / input channels, softmax beta > 0,
  concatenation axis in range;
* MAC layers: a constant filter / weights of the right rank with quantization parameters and
  one scale per output channel (or one), a bias of one int32 per output channel.

Each problem is one line naming the op index, the opcode, the tensor and what is wrong.
"""

from __future__ import annotations

import math

import numpy as np


class ModelError(Exception):
    """A model that is not well formed; read_tflite prefixes the file name."""


_ZERO_POINT_RANGE = {"int8": (-128, 127), "uint8": (0, 255), "int4": (-8, 7),
                     "int16": (-32768, 32767)}
_ACTIVATIONS = range(0, 6)          # NONE, RELU, RELU_N1_TO_1, RELU6, TANH, SIGN_BIT
_PADDINGS = (0, 1)                  # SAME, VALID


#: (fewest, most) inputs of the ops the runtime knows; every one of them has one output. An
#: input index of -1 (absent) is allowed only at the positions listed in _OPTIONAL.
_ARITY = {"ADD": (2, 2), "SUB": (2, 2), "MUL": (2, 2), "MINIMUM": (2, 2), "MAXIMUM": (2, 2),
          "CONV_2D": (2, 3), "DEPTHWISE_CONV_2D": (2, 3), "FULLY_CONNECTED": (2, 3),
          "MEAN": (2, 2), "PAD": (2, 2), "PADV2": (3, 3), "RESHAPE": (1, 2), "SQUEEZE": (1, 1),
          "EXPAND_DIMS": (2, 2), "SOFTMAX": (1, 1), "RESIZE_NEAREST_NEIGHBOR": (2, 2),
          "LOGISTIC": (1, 1), "HARD_SWISH": (1, 1), "LEAKY_RELU": (1, 1), "RELU": (1, 1), "RELU6": (1, 1),
          "RELU_N1_TO_1": (1, 1), "QUANTIZE": (1, 1), "DEQUANTIZE": (1, 1), "AVERAGE_POOL_2D": (1, 1),
          "MAX_POOL_2D": (1, 1), "CONCATENATION": (1, 1 << 16)}
_OPTIONAL = {"CONV_2D": (2,), "DEPTHWISE_CONV_2D": (2,), "FULLY_CONNECTED": (2,)}


def _check_arity(op) -> None:
    where = f"op {op.index} {op.opcode}"
    if op.opcode not in _ARITY:
        return   # lowering names an op it does not run
    low, high = _ARITY[op.opcode]
    if not low <= len(op.inputs) <= high or len(op.outputs) != 1:
        raise ModelError(f"{where}: {len(op.inputs)} inputs and {len(op.outputs)} outputs (it takes "
                         f"{low}{'' if low == high else f' to {min(high, 99)}'} inputs and 1 output)")
    absent = [k for k, i in enumerate(op.inputs) if i < 0 and k not in _OPTIONAL.get(op.opcode, ())]
    if absent:
        raise ModelError(f"{where}: input {absent[0]} is absent (-1) but required")


def _name(t) -> str:
    return f"tensor {t.index} '{t.name}'"


def check_quantization(t) -> None:
    if t.scale is None:
        return
    bad = [float(s) for s in t.scale if not (math.isfinite(float(s)) and float(s) > 0)]
    if bad:
        raise ModelError(f"{_name(t)}: quantization scale {bad[0]} (scales must be positive and finite)")
    lo, hi = _ZERO_POINT_RANGE.get(t.dtype, (-(1 << 63), (1 << 63) - 1))
    out = [int(z) for z in t.zero_point if not lo <= int(z) <= hi]
    if out:
        raise ModelError(f"{_name(t)}: zero point {out[0]} is outside {t.dtype}'s range {lo}..{hi}")
    if len(t.scale) > 1 or t.quantized_dimension != 0:
        if not 0 <= t.quantized_dimension < max(len(t.shape), 1):
            raise ModelError(f"{_name(t)}: quantized dimension {t.quantized_dimension} is out of "
                             f"range for shape {list(t.shape)}")
        if len(t.scale) > 1 and (not t.shape or t.shape[t.quantized_dimension] != len(t.scale)):
            raise ModelError(f"{_name(t)}: {len(t.scale)} per-channel scales for dimension "
                             f"{t.quantized_dimension} of shape {list(t.shape)}")


def _check_order(graph) -> None:
    """One writer per tensor, and every op reads only what exists by the time it runs."""
    ready = set(graph.inputs) | {t.index for t in graph.tensors if t.is_constant}
    writer: dict[int, int] = {}
    for op in graph.ops:
        where = f"op {op.index} {op.opcode}"
        for i in op.inputs:
            if i < 0 or i in ready:
                continue
            later = next((o.index for o in graph.ops if o.index > op.index and i in o.outputs), None)
            t = graph.tensors[i]
            if later is not None:
                raise ModelError(f"{where} reads {_name(t)} before op {later} writes it (the ops are "
                                 "not in execution order, or the graph has a cycle)")
            raise ModelError(f"{where} reads {_name(t)}, which no op writes and which is neither a "
                             "constant nor a model input")
        if not op.outputs:
            raise ModelError(f"{where} has no output")
        for o in op.outputs:
            t = graph.tensors[o]
            if t.is_constant or o in graph.inputs:
                raise ModelError(f"{where} writes {_name(t)}, which is a "
                                 f"{'constant' if t.is_constant else 'model input'}")
            if o in writer:
                raise ModelError(f"{where} writes {_name(t)}, which op {writer[o]} writes too")
            writer[o] = op.index
            ready.add(o)
    for o in graph.outputs:
        if o not in ready:
            raise ModelError(f"model output {_name(graph.tensors[o])} is never written")
    if not graph.inputs or not graph.outputs:
        raise ModelError("the model declares no input or no output tensor")


def _at_least_one(op, **values) -> None:
    for key, value in values.items():
        if int(value) < 1:
            raise ModelError(f"op {op.index} {op.opcode}: {key} is {value} (must be at least 1)")


def _check_options(op) -> None:
    o = op.options
    where = f"op {op.index} {op.opcode}"
    if int(o.get("fusedActivationFunction", 0)) not in _ACTIVATIONS:
        raise ModelError(f"{where}: unknown fused activation {o['fusedActivationFunction']}")
    if "padding" in o and int(o["padding"]) not in _PADDINGS:
        raise ModelError(f"{where}: unknown padding {o['padding']}")
    if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        _at_least_one(op, stride_w=o.get("strideW", 1), stride_h=o.get("strideH", 1),
                      dilation_w=o.get("dilationWFactor", 1), dilation_h=o.get("dilationHFactor", 1))
    if op.opcode in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"):
        _at_least_one(op, stride_w=o.get("strideW", 1), stride_h=o.get("strideH", 1),
                      filter_w=o.get("filterWidth", 1), filter_h=o.get("filterHeight", 1))
    if op.opcode == "SOFTMAX":
        beta = float(o.get("beta", 1.0))
        if not (math.isfinite(beta) and beta > 0):
            raise ModelError(f"{where}: beta {beta} (must be positive and finite)")


def _need(graph, op, position: int, what: str):
    where = f"op {op.index} {op.opcode}"
    if position >= len(op.inputs) or op.inputs[position] < 0:
        raise ModelError(f"{where}: no {what} (input {position})")
    return graph.tensors[op.inputs[position]]


def _check_mac(graph, op) -> None:
    """Filter / weights and bias of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED."""
    where = f"op {op.index} {op.opcode}"
    x = _need(graph, op, 0, "input")
    w = _need(graph, op, 1, "filter")
    y = graph.tensors[op.outputs[0]]
    rank = 2 if op.opcode == "FULLY_CONNECTED" else 4
    if not w.is_constant or len(w.shape) != rank:
        raise ModelError(f"{where}: filter {_name(w)} must be a constant of rank {rank} "
                         f"(it is {'constant' if w.is_constant else 'computed'}, shape {list(w.shape)})")
    channels = w.shape[3] if op.opcode == "DEPTHWISE_CONV_2D" else w.shape[0]
    if y.shape and y.shape[-1] != channels:
        raise ModelError(f"{where}: output {_name(y)} has {y.shape[-1]} channels, the filter "
                         f"{_name(w)} {channels}")
    for t, role in ((x, "input"), (w, "filter"), (y, "output")):
        if t.dtype in ("int8", "int4", "int16", "uint8") and t.scale is None:
            raise ModelError(f"{where}: {role} {_name(t)} ({t.dtype}) has no quantization parameters")
    if w.scale is not None and len(w.scale) not in (1, channels):
        raise ModelError(f"{where}: filter {_name(w)} has {len(w.scale)} scales for {channels} "
                         "output channels")
    if op.opcode == "DEPTHWISE_CONV_2D":
        _check_depthwise(op, x, w, y)
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        b = graph.tensors[op.inputs[2]]
        if b.size != channels or len(b.shape) != 1:
            raise ModelError(f"{where}: bias {_name(b)} has shape {list(b.shape)}, expected "
                             f"[{channels}] (one per output channel)")


def _check_depthwise(op, x, w, y) -> None:
    where = f"op {op.index} {op.opcode}"
    in_c, out_c = (x.shape[-1] if x.shape else 0), w.shape[3]
    m = int(op.options.get("depthMultiplier", 0))
    if in_c < 1 or out_c % in_c or m != out_c // in_c:
        raise ModelError(f"{where}: depth multiplier {m} does not match {in_c} input and {out_c} "
                         "output channels (output = input x multiplier)")


_ELEMENTWISE = ("ADD", "SUB", "MUL", "MINIMUM", "MAXIMUM", "RELU", "RELU6", "RELU_N1_TO_1",
                "LOGISTIC", "HARD_SWISH", "LEAKY_RELU", "QUANTIZE", "DEQUANTIZE")


def _check_elementwise(graph, op) -> None:
    """The output shape of an elementwise op is its inputs' (broadcast) shape."""
    shapes = [graph.tensors[i].shape for i in op.inputs]
    y = graph.tensors[op.outputs[0]]
    try:
        want = tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ModelError(f"op {op.index} {op.opcode}: input shapes {[list(s) for s in shapes]} do "
                         "not broadcast") from None
    if tuple(y.shape) != want:
        raise ModelError(f"op {op.index} {op.opcode}: output {_name(y)} has shape {list(y.shape)}, "
                         f"its inputs make {list(want)}")


def _check_concatenation(graph, op) -> None:
    rank = len(graph.tensors[op.outputs[0]].shape)
    axis = int(op.options.get("axis", 0))
    if not -rank <= axis < max(rank, 1):
        raise ModelError(f"op {op.index} CONCATENATION: axis {axis} is out of range for rank {rank}")


def _check_transform(graph) -> None:
    """The folded preprocessing (metadata) has one value or one per input channel."""
    tr = graph.input_transform
    if tr is None or not graph.inputs:
        return
    shape = graph.tensors[graph.inputs[0]].shape
    channels = shape[-1] if shape else 1
    for what, v in (("scale", tr.scale), ("offset", tr.offset)):
        if np.size(v) not in (1, channels):
            raise ModelError(f"the input transform metadata has {np.size(v)} {what} values for "
                             f"{channels} input channels")


def verify_graph(graph) -> None:
    """Raise ModelError on the first problem of a parsed graph (see the module docstring)."""
    for t in graph.tensors:
        check_quantization(t)
    _check_order(graph)
    for op in graph.ops:
        _check_arity(op)
        _check_options(op)
        if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            _check_mac(graph, op)
        elif op.opcode == "CONCATENATION":
            _check_concatenation(graph, op)
        elif op.opcode in _ELEMENTWISE:
            _check_elementwise(graph, op)
    _check_transform(graph)
    for t in graph.tensors:
        if t.data is not None and t.dtype == "float32" and not np.all(np.isfinite(t.data)):
            raise ModelError(f"{_name(t)}: constant holds NaN or infinity")
