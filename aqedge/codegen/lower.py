"""Lower each TFLite op to one aq_* kernel call with all its parameters fixed at build time
(the "Prepare" of TFLite Micro, run in Python), or refuse it with a reason."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import AqError
from . import dispatch
from . import fixedpoint as fp
from .graph import Graph, Op, Tensor

ACTIVATION_NAMES = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH",
                    5: "SIGN_BIT", 6: "SIGMOID"}
PADDING_NAMES = {0: "SAME", 1: "VALID"}


@dataclass
class ConstArray:
    """A constant array rendered into flash (model_data.c)."""

    name: str
    ctype: str          # int8_t, int32_t, uint8_t
    values: np.ndarray
    comment: str = ""


@dataclass
class KernelCall:
    """One step of aq_model_invoke(): `kernel` is None for ops that only alias memory."""

    op: Op
    kernel: str | None
    params_type: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    # C expressions of the arguments after &params: tensor indices (ints) or constant names.
    args: list[int | str] = field(default_factory=list)
    arrays: list[ConstArray] = field(default_factory=list)
    alias: tuple[int, int] | None = None   # (output, input) tensors that share memory
    clamp: tuple[str, int] | None = None   # ("min" | "max", constant) to fold into the producer
    # Declared safe overlaps of the output with an input that dies at this call: (input tensor,
    # lead). The output may share bytes with that input when it starts at least `lead` bytes
    # below it (output offset <= input offset - lead); lead 0 also allows exactly in place.
    # plan.py uses them; the bound comes from the kernels' loop order (see window_lead).
    inplace: list[tuple[int, int]] = field(default_factory=list)
    # For aq_lut_s8: the steps (kernel, params type, params, args after &params) by which
    # aq_model_prepare() fills this call's table `op<N>_table` from the 256 codes of
    # aq_lut_codes (through aq_lut_scratch for a two-op Swish).
    table: list[tuple[str, str, dict[str, Any], list[str]]] | None = None
    comment: str = ""
    #: MAC layers: the kernel variant dispatch.py chose (named in model.c, inspect, build.json).
    variant: dispatch.Variant | None = None
    #: CONV_2D / DEPTHWISE_CONV_2D reading or writing a packed tensor: the aq_band_params with
    #: which model.c runs the variant one output row at a time (storage.apply).
    band: dict[str, Any] | None = None


class Unsupported(Exception):
    """An op that the runtime cannot run; the message says why."""


def _types(graph: Graph, op: Op) -> str:
    def name(i: int) -> str:
        t = graph.tensor(i)
        return "-" if t is None else t.dtype
    return f"inputs ({', '.join(name(i) for i in op.inputs)}) -> outputs ({', '.join(name(i) for i in op.outputs)})"


def _require_int8(t: Tensor | None, what: str) -> Tensor:
    if t is None:
        raise Unsupported(f"{what} is missing")
    if t.dtype != "int8":
        raise Unsupported(f"{what} is {t.dtype}, the runtime needs int8")
    if t.scale is None:
        raise Unsupported(f"{what} has no quantization parameters")
    return t


def _nhwc(t: Tensor, what: str) -> tuple[int, int, int]:
    if len(t.shape) != 4 or t.shape[0] != 1:
        raise Unsupported(f"{what} has shape {list(t.shape)}; batch 1 NHWC is required")
    return t.shape[1], t.shape[2], t.shape[3]


def _fused(op: Op, out: Tensor) -> tuple[int, int]:
    act = int(op.options.get("fusedActivationFunction", 0))
    if act not in (0, 1, 2, 3):
        raise Unsupported(f"fused activation {ACTIVATION_NAMES.get(act, act)} is not supported")
    return fp.activation_range(act, out.single_scale(), out.single_zero_point())


def _weights(t: Tensor | None, what: str) -> Tensor:
    if t is None or not t.is_constant:
        raise Unsupported(f"{what} must be a constant tensor")
    if t.dtype not in ("int8", "int4"):
        raise Unsupported(f"{what} is {t.dtype}; int8 and INT4 weights are supported")
    if t.zero_point is not None and np.any(t.zero_point != 0):
        raise Unsupported(f"{what} has a non-zero zero point (weights must be symmetric)")
    return t


def _bias_values(graph: Graph, index: int, channels: int) -> np.ndarray | None:
    t = graph.tensor(index)
    if t is None:
        return None
    if t.dtype != "int32" or not t.is_constant:
        raise Unsupported(f"bias is {t.dtype}{'' if t.is_constant else ' (not constant)'}; int32 constants are supported")
    return t.data.reshape(-1)[:channels]


def _mac_arrays(graph: Graph, op: Op, p: str, kind: str, params: dict[str, Any], w: Tensor,
                shifts: list[int], weight_name: str, layout: str,
                packed: bool = False) -> tuple[dispatch.Variant, str, list[ConstArray]]:
    """The kernel variant of a MAC layer (dispatch.py; a FULLY_CONNECTED that reads or writes a
    packed tensor gets the "packed" variant) and its flash arrays: the weights in the variant's order
    (INT4 stays packed) and the bias it takes; sets params["q"]["guard"].
    Returns (variant, bias argument, arrays)."""
    s4 = w.dtype == "int4"
    bias = _bias_values(graph, op.inputs[2] if len(op.inputs) > 2 else -1, params["out_c"])
    q = params["q"]
    q["guard"] = dispatch.requant_guard(kind, w.data, bias, shifts, q["input_offset"])
    v = dispatch.packed(kind, s4) if packed else dispatch.select(kind, params, s4, w.data, bias, shifts)
    if kind != "depthwise":
        params["scratch"] = SCRATCH if v.scratch_bytes else 0
    values = v.layout(w.data, params, s4)
    bias = v.bias(bias, w.data, q["input_offset"])
    order = "" if v.relayout is None else f", in the {v.name} kernel's order"
    packing = f", INT4 packed two per byte ({len(values)} bytes)" if s4 else ""
    arrays = [ConstArray(weight_name, "uint8_t" if s4 else "int8_t", values,
                         f"{layout} {list(w.shape)}{packing}{order}")]
    if bias is None:
        return v, "0", arrays
    if kind == "depthwise":   # padded as the requantisation arrays (_depthwise)
        bias = np.concatenate([np.asarray(bias, np.int64), np.zeros(-len(bias) % 8, np.int64)])
    folded = ", input offset folded in" if v.folds_offset else ""
    arrays.append(ConstArray(f"{p}_bias", "int32_t", np.asarray(bias, np.int64), f"bias [{len(bias)}]{folded}"))
    return v, f"{p}_bias", arrays


def _requant(p: str, in_t: Tensor, out_t: Tensor, mults, shifts, act) -> tuple[dict, list[ConstArray]]:
    arrays = [ConstArray(f"{p}_multiplier", "int32_t", np.asarray(mults, np.int64), "requantization multipliers"),
              ConstArray(f"{p}_shift", "int32_t", np.asarray(shifts, np.int64), "requantization shifts (> 0: left)")]
    q = {"input_offset": -in_t.single_zero_point(), "output_offset": out_t.single_zero_point(),
         "act_min": act[0], "act_max": act[1],
         "multiplier": f"{p}_multiplier", "shift": f"{p}_shift"}
    return q, arrays


def _conv_geometry(op: Op, in_hw, k_hw, out_hw) -> dict[str, int]:
    o = op.options
    sh, sw = int(o.get("strideH", 1)), int(o.get("strideW", 1))
    dh, dw = int(o.get("dilationHFactor", 1)), int(o.get("dilationWFactor", 1))
    padding = int(o.get("padding", 0))
    for axis, (i, k, s, d, out) in enumerate(((in_hw[0], k_hw[0], sh, dh, out_hw[0]),
                                             (in_hw[1], k_hw[1], sw, dw, out_hw[1]))):
        expected = fp.output_size(padding, i, k, s, d)
        if expected != out:
            raise Unsupported(f"output {'HW'[axis]} is {out}, expected {expected} for "
                              f"{PADDING_NAMES.get(padding)} padding")
    return {"stride_h": sh, "stride_w": sw, "dil_h": dh, "dil_w": dw,
            "pad_h": fp.compute_padding(in_hw[0], k_hw[0], sh, dh, out_hw[0]),
            "pad_w": fp.compute_padding(in_hw[1], k_hw[1], sw, dw, out_hw[1])}


#: model.c's RAM buffer for the kernels' column buffers (the largest Variant.scratch_bytes).
SCRATCH = "aq_scratch"


def scratch_bytes(calls: list[KernelCall]) -> int:
    """Bytes of model.c's aq_scratch: the largest column buffer any call's variant needs."""
    return max([c.variant.scratch_bytes for c in calls if c.variant is not None] + [0])


def band_bytes(calls: list[KernelCall]) -> tuple[int, int]:
    """Bytes of model.c's aq_band_in and aq_band_out: the largest unpacked band of input rows
    and staged output row of the calls run in row bands (0, 0 without any)."""
    ins, outs = [0], [0]
    for c in calls:
        b = c.band
        if b is not None:
            rows = min(b["dil_h"] * (b["k_h"] - 1) + 1, b["in_h"])
            ins.append(rows * b["in_row"] if b["in_store"]["packed"] else 0)
            outs.append(b["out_row"] if b["out_store"]["packed"] else 0)
    return max(ins), max(outs)


#: Pixels the Cortex-M MAC kernels read into their column buffer before writing any of them
#: (AQ_CM_PIXELS in firmware/kernels/cortex-m/aq_cm_impl.h).
CM_PIXEL_BLOCK = 4


def window_lead(params: dict[str, Any], in_packed: bool = False, out_packed: bool = False,
                rows: bool = False) -> int:
    """Smallest lead (bytes) by which a conv / depthwise output may start below its input and
    still overwrite only input bytes that no later read needs, for every kernel we build:

    * portable (aq_mac_impl.h): output pixels in increasing memory order; for pixel p, every
      output channel reads p's receptive field, then writes byte p * out_c + oc. After a write
      into pixel p, reads only touch the fields of pixels >= p, all at input bytes >= low(p)
      (low(p) = lowest byte of any field of a pixel >= p: first valid tap row and column,
      channel 0). The output bytes written so far end at (p + 1) * out_c, so
      lead >= (p + 1) * out_c - low(p) for every p.
    * Cortex-M conv (aq_cm_conv_impl.h): reads the fields of CM_PIXEL_BLOCK pixels b..b+3 into
      the column buffer, then writes all their outputs: lead >= end(b+3) - low(b+4). The
      Cortex-M depthwise writes 4 channels of pixel p after reading only p's field, as the
      portable loop does. Both are covered by taking the maximum of the two conditions.

    Packed tensors (storage.py) hold element e in byte e // 2: the bytes written so far end at
    ceil(end / 2), the lowest byte still to be read is floor(low / 2). `rows`: the call runs in
    row bands (storage.apply), reading a whole output row's fields before writing the row.
    """
    in_h, in_w, in_c = params["in_h"], params["in_w"], params["in_c"]
    out_h, out_w, out_c = params["out_h"], params["out_w"], params["out_c"]
    n = out_h * out_w
    big = in_h * in_w * in_c + 1   # "no read": a pixel whose taps are all padding
    lo = np.full(n + 1, big, np.int64)
    for oy in range(out_h):
        ys = [oy * params["stride_h"] - params["pad_h"] + params["dil_h"] * k for k in range(params["k_h"])]
        ys = [y for y in ys if 0 <= y < in_h]
        for ox in range(out_w):
            xs = [ox * params["stride_w"] - params["pad_w"] + params["dil_w"] * k for k in range(params["k_w"])]
            xs = [x for x in xs if 0 <= x < in_w]
            if ys and xs:
                lo[oy * out_w + ox] = (min(ys) * in_w + min(xs)) * in_c
    low = np.minimum.accumulate(lo[::-1])[::-1]   # low[p] = min(lo[p:]); low[n] = big
    if in_packed:
        low = low // 2
    ends = (np.arange(n + 1) + 1) * out_c
    if out_packed:
        ends = (ends + 1) // 2
    lead = int(np.max(ends[:n] - low[:n]))
    for block in (CM_PIXEL_BLOCK, out_w) if rows else (CM_PIXEL_BLOCK,):
        for b in range(0, n, block):
            last = min(b + block, n)
            lead = max(lead, int(ends[last - 1] - low[last]))
    return max(lead, 0)


def _conv(graph: Graph, op: Op, p: str) -> KernelCall:
    x = _require_int8(graph.tensor(op.inputs[0]), "input")
    w = _weights(graph.tensor(op.inputs[1]), "filter")
    y = _require_int8(graph.tensor(op.outputs[0]), "output")
    in_h, in_w, in_c = _nhwc(x, "input")
    out_h, out_w, out_c = _nhwc(y, "output")
    if len(w.shape) != 4 or w.shape[0] != out_c:
        raise Unsupported(f"filter shape {list(w.shape)} does not match {out_c} output channels")
    _, k_h, k_w, f_in_c = w.shape
    if f_in_c > in_c or in_c % f_in_c or out_c % (in_c // f_in_c):
        raise Unsupported(f"filter depth {f_in_c} does not divide input depth {in_c}")
    mults, shifts = fp.conv_multipliers(x.single_scale(), w.scale, y.single_scale(), out_c)
    q, rq_arrays = _requant(p, x, y, mults, shifts, _fused(op, y))
    params = {"in_h": in_h, "in_w": in_w, "in_c": in_c, "out_h": out_h, "out_w": out_w,
              "out_c": out_c, "k_h": k_h, "k_w": k_w, "filter_in_c": f_in_c,
              **_conv_geometry(op, (in_h, in_w), (k_h, k_w), (out_h, out_w)), "q": q}
    v, bias, arrays = _mac_arrays(graph, op, p, "conv", params, w, shifts, f"{p}_filter", "filter OHWI")
    return KernelCall(op, v.kernel, "aq_conv_params", params,
                      [op.inputs[0], f"{p}_filter", bias, op.outputs[0]], arrays + rq_arrays,
                      inplace=[(op.inputs[0], window_lead(params))], variant=v,
                      comment=f"{k_h}x{k_w} conv {in_h}x{in_w}x{in_c} -> {out_h}x{out_w}x{out_c}")


def _depthwise(graph: Graph, op: Op, p: str) -> KernelCall:
    x = _require_int8(graph.tensor(op.inputs[0]), "input")
    w = _weights(graph.tensor(op.inputs[1]), "filter")
    y = _require_int8(graph.tensor(op.outputs[0]), "output")
    in_h, in_w, in_c = _nhwc(x, "input")
    out_h, out_w, out_c = _nhwc(y, "output")
    if len(w.shape) != 4 or w.shape[3] != out_c or out_c % in_c:
        raise Unsupported(f"filter shape {list(w.shape)} does not fit {in_c} -> {out_c} channels")
    _, k_h, k_w, _ = w.shape
    mults, shifts = fp.conv_multipliers(x.single_scale(), w.scale, y.single_scale(), out_c)
    # Padded to a multiple of 8 channels: the Cortex-M ports read a last partial group whole.
    pad = -out_c % 8
    q, rq_arrays = _requant(p, x, y, mults + [0] * pad, shifts + [-1] * pad, _fused(op, y))
    params = {"in_h": in_h, "in_w": in_w, "in_c": in_c, "out_h": out_h, "out_w": out_w,
              "out_c": out_c, "k_h": k_h, "k_w": k_w, "depth_multiplier": out_c // in_c,
              **_conv_geometry(op, (in_h, in_w), (k_h, k_w), (out_h, out_w)), "q": q}
    v, bias, arrays = _mac_arrays(graph, op, p, "depthwise", params, w, shifts, f"{p}_filter", "filter 1HWC")
    return KernelCall(op, v.kernel, "aq_depthwise_conv_params", params,
                      [op.inputs[0], f"{p}_filter", bias, op.outputs[0]], arrays + rq_arrays,
                      inplace=[(op.inputs[0], window_lead(params))], variant=v,
                      comment=f"{k_h}x{k_w} depthwise {in_h}x{in_w}x{in_c} -> {out_h}x{out_w}x{out_c}")


def _fully_connected(graph: Graph, op: Op, p: str, packed: bool = False) -> KernelCall:
    x = _require_int8(graph.tensor(op.inputs[0]), "input")
    w = _weights(graph.tensor(op.inputs[1]), "weights")
    y = _require_int8(graph.tensor(op.outputs[0]), "output")
    if op.options.get("weightsFormat", 0) != 0:
        raise Unsupported("shuffled weights format is not supported")
    out_c, depth = w.shape
    if x.size % depth:
        raise Unsupported(f"input of {x.size} elements is not a multiple of depth {depth}")
    if len(w.scale) > 1:
        mults, shifts = fp.conv_multipliers(x.single_scale(), w.scale, y.single_scale(), out_c)
    else:
        m, s = fp.fc_multiplier(x.single_scale(), w.single_scale(), y.single_scale())
        mults, shifts = [m] * out_c, [s] * out_c
    q, rq_arrays = _requant(p, x, y, mults, shifts, _fused(op, y))
    params = {"batches": x.size // depth, "accum_depth": depth, "out_c": out_c, "q": q}
    v, bias, arrays = _mac_arrays(graph, op, p, "fully_connected", params, w, shifts, f"{p}_weights", "weights",
                                  packed)
    return KernelCall(op, v.kernel, "aq_fully_connected_params", params,
                      [op.inputs[0], f"{p}_weights", bias, op.outputs[0]], arrays + rq_arrays,
                      variant=v, comment=f"fully connected {depth} -> {out_c}")


def _pool(graph: Graph, op: Op, p: str) -> KernelCall:
    x = _require_int8(graph.tensor(op.inputs[0]), "input")
    y = _require_int8(graph.tensor(op.outputs[0]), "output")
    if x.single_scale() != y.single_scale() or x.single_zero_point() != y.single_zero_point():
        raise Unsupported("input and output quantization differ")
    in_h, in_w, c = _nhwc(x, "input")
    out_h, out_w, out_c = _nhwc(y, "output")
    o = op.options
    k_h, k_w = int(o["filterHeight"]), int(o["filterWidth"])
    geometry = _conv_geometry(op, (in_h, in_w), (k_h, k_w), (out_h, out_w))
    for key in ("dil_h", "dil_w"):
        geometry.pop(key)
    act = _fused(op, y)
    params = {"in_h": in_h, "in_w": in_w, "channels": c, "out_h": out_h, "out_w": out_w,
              "k_h": k_h, "k_w": k_w, **geometry, "act_min": act[0], "act_max": act[1]}
    kind = "max" if op.opcode == "MAX_POOL_2D" else "avg"
    return KernelCall(op, f"aq_{kind}_pool_s8", "aq_pool_params", params,
                      [op.inputs[0], op.outputs[0]],
                      comment=f"{k_h}x{k_w} {kind} pool {in_h}x{in_w}x{c} -> {out_h}x{out_w}x{out_c}")


def _softmax(graph: Graph, op: Op, p: str) -> KernelCall:
    x = _require_int8(graph.tensor(op.inputs[0]), "input")
    y = _require_int8(graph.tensor(op.outputs[0]), "output")
    if y.single_zero_point() != -128 or y.single_scale() != np.float32(1 / 256):
        raise Unsupported("int8 output must have scale 1/256 and zero point -128")
    if not x.shape or x.shape != y.shape:
        raise Unsupported(f"input {list(x.shape)} and output {list(y.shape)} must have one shape of rank >= 1")
    depth = x.shape[-1]
    mult, shift, diff_min = fp.softmax_params(x.single_scale(), op.options.get("beta", 1.0))
    params = {"rows": x.size // depth, "depth": depth, "input_multiplier": mult,
              "input_left_shift": shift, "diff_min": diff_min}
    return KernelCall(op, "aq_softmax_s8", "aq_softmax_params", params,
                      [op.inputs[0], op.outputs[0]], comment=f"softmax over {depth}")


def _reshape(graph: Graph, op: Op, p: str) -> KernelCall:
    x, y = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    if x is None or y is None or x.dtype != y.dtype or x.size != y.size:
        raise Unsupported("input and output differ in type or element count")
    if x.is_constant:
        raise Unsupported("reshape of a constant tensor")
    return KernelCall(op, None, alias=(op.outputs[0], op.inputs[0]),
                      comment=f"{op.opcode.lower()} {list(x.shape)} -> {list(y.shape)} (aliased, no copy)")


def _add(graph: Graph, op: Op, p: str) -> KernelCall:
    a = _require_int8(graph.tensor(op.inputs[0]), "input 1")
    b = _require_int8(graph.tensor(op.inputs[1]), "input 2")
    y = _require_int8(graph.tensor(op.outputs[0]), "output")
    if a.shape != b.shape or a.shape != y.shape:
        raise Unsupported(f"broadcasting {list(a.shape)} + {list(b.shape)} is not supported")
    if a.is_constant or b.is_constant:
        raise Unsupported("constant inputs are not supported")
    act = _fused(op, y)
    params = {"size": y.size, "input1_offset": -a.single_zero_point(),
              "input2_offset": -b.single_zero_point(), "output_offset": y.single_zero_point(),
              **fp.add_params(a.single_scale(), b.single_scale(), y.single_scale()),
              "act_min": act[0], "act_max": act[1]}
    # Element i of both inputs is read before element i of the output is written (portable and
    # Cortex-M aq_add_s8), so the output may start at or below either input.
    return KernelCall(op, "aq_add_s8", "aq_add_params", params,
                      [op.inputs[0], op.inputs[1], op.outputs[0]],
                      inplace=[(op.inputs[0], 0), (op.inputs[1], 0)], comment=f"add {list(y.shape)}")


def _relu(graph: Graph, op: Op, p: str) -> KernelCall:
    x = _require_int8(graph.tensor(op.inputs[0]), "input")
    y = _require_int8(graph.tensor(op.outputs[0]), "output")
    mult, shift = fp.quantize_multiplier(float(x.single_scale()) / float(y.single_scale()))
    act_min, act_max = fp.relu_range(op.opcode, y.single_scale(), y.single_zero_point())
    params = {"size": y.size, "input_zero_point": x.single_zero_point(),
              "output_offset": y.single_zero_point(), "multiplier": mult, "shift": shift,
              "act_min": act_min, "act_max": act_max}
    return KernelCall(op, "aq_relu_s8", "aq_relu_params", params, [op.inputs[0], op.outputs[0]],
                      inplace=[(op.inputs[0], 0)],   # elementwise: reads i, then writes i
                      comment=f"{op.opcode.lower()} {list(y.shape)}")


def _min_max(graph: Graph, op: Op, p: str) -> KernelCall:
    """MINIMUM / MAXIMUM against a constant scalar: the clamp the converter emits around 4-bit
    activations (docs/architecture.md, Memory). fold_clamps folds it into the producing op's output clamp, or makes
    it a standalone aq_clamp_s8 where it cannot."""
    if len(op.inputs) != 2:
        raise Unsupported("needs two inputs")
    a, b = graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1])
    y = _require_int8(graph.tensor(op.outputs[0]), "output")
    const, var = (b, a) if b is not None and b.is_constant else (a, b)
    if const is None or not const.is_constant or const.size != 1 or var is None or var.is_constant:
        raise Unsupported("only a clamp against a constant scalar is supported")
    _require_int8(var, "input")
    if const.dtype != "int8":
        raise Unsupported(f"constant is {const.dtype}, int8 is supported")
    kind = "min" if op.opcode == "MINIMUM" else "max"
    value = int(const.data.reshape(-1)[0])
    return KernelCall(op, None, alias=(op.outputs[0], var.index), clamp=(kind, value),
                      comment=f"{kind}(x, {value}) folded into the producer's output clamp")


# ---- Elementwise, reduction and data-movement ops (MUL, broadcasting ADD, MEAN, PAD,
# CONCATENATION, LOGISTIC, HARD_SWISH, QUANTIZE). Shapes are extended to 4-D by prepending 1s,
# as TFLite's RuntimeShape::ExtendedShape does.

def _extend4(shape: tuple[int, ...], what: str) -> list[int]:
    if len(shape) > 4:
        raise Unsupported(f"{what} has {len(shape)} dimensions; at most 4 are supported")
    return [1] * (4 - len(shape)) + [int(d) for d in shape]


def _strides4(dims: list[int]) -> list[int]:
    return [dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1]


def _c_array(values) -> str:
    """A C initializer for an array member of a params struct."""
    return "{" + ", ".join(str(int(v)) for v in values) + "}"


def _operand(graph: Graph, index: int, name: str, what: str) -> tuple[Tensor, int | str, list[ConstArray]]:
    """An int8 input that may be a constant: (tensor, C argument, constant arrays)."""
    t = _require_int8(graph.tensor(index), what)
    if t.is_constant:
        return t, name, [ConstArray(name, "int8_t", t.data.reshape(-1), f"{what} {list(t.shape)}")]
    return t, index, []


def _broadcast4(a: Tensor, b: Tensor, y: Tensor) -> dict[str, str]:
    """TFLite NdArrayDescsForElementwiseBroadcast: per-input strides over the output shape."""
    da, db, dy = _extend4(a.shape, "input 1"), _extend4(b.shape, "input 2"), _extend4(y.shape, "output")
    for k in range(4):
        if max(da[k], db[k]) != dy[k] or min(da[k], db[k]) not in (1, dy[k]):
            raise Unsupported(f"shapes {list(a.shape)} and {list(b.shape)} do not broadcast to {list(y.shape)}")
    sa, sb = _strides4(da), _strides4(db)
    return {"dims": _c_array(dy),
            "stride1": _c_array(0 if da[k] == 1 and dy[k] > 1 else sa[k] for k in range(4)),
            "stride2": _c_array(0 if db[k] == 1 and dy[k] > 1 else sb[k] for k in range(4))}


def _arithmetic(graph: Graph, op: Op, p: str, prepare) -> tuple:
    """Operands (constants as flash arrays) and the aq_add_params of ADD / SUB, `prepare` being
    fp.add_params or fp.sub_params. Returns (a, b, y, args, arrays, params)."""
    a, arg_a, arrays_a = _operand(graph, op.inputs[0], f"{p}_input1", "input 1")
    b, arg_b, arrays_b = _operand(graph, op.inputs[1], f"{p}_input2", "input 2")
    y = _require_int8(graph.tensor(op.outputs[0]), "output")
    act = _fused(op, y)
    params = {"size": y.size, "input1_offset": -a.single_zero_point(),
              "input2_offset": -b.single_zero_point(), "output_offset": y.single_zero_point(),
              **prepare(a.single_scale(), b.single_scale(), y.single_scale()),
              "act_min": act[0], "act_max": act[1]}
    return a, b, y, [arg_a, arg_b, op.outputs[0]], arrays_a + arrays_b, params


def _add_any(graph: Graph, op: Op, p: str) -> KernelCall:
    """ADD: same-shape non-constant inputs go to `_add`; constants and broadcasting here."""
    a0, b0 = graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1])
    if (a0 is not None and b0 is not None and a0.shape == b0.shape
            and not a0.is_constant and not b0.is_constant):
        return _add(graph, op, p)
    a, b, y, args, arrays, add = _arithmetic(graph, op, p, fp.add_params)
    if a.shape == b.shape == y.shape:
        return KernelCall(op, "aq_add_s8", "aq_add_params", add, args, arrays,
                          comment=f"add {list(y.shape)} (constant operand)")
    return KernelCall(op, "aq_add_broadcast_s8", "aq_add_broadcast_params",
                      {"q": add, "shape": _broadcast4(a, b, y)}, args, arrays,
                      comment=f"add {list(a.shape)} + {list(b.shape)} -> {list(y.shape)} (broadcast)")


def _sub(graph: Graph, op: Op, p: str) -> KernelCall:
    """SUB: aq_add_broadcast_s8 with the second input negated after its rescaling (TFLite's
    SubElementwise / BroadcastQuantSubSlow), any shapes that broadcast, constants included."""
    a, b, y, args, arrays, q = _arithmetic(graph, op, p, fp.sub_params)
    return KernelCall(op, "aq_add_broadcast_s8", "aq_add_broadcast_params",
                      {"q": q, "shape": _broadcast4(a, b, y)}, args, arrays,
                      comment=f"sub {list(a.shape)} - {list(b.shape)} -> {list(y.shape)}")


def _mul(graph: Graph, op: Op, p: str) -> KernelCall:
    a, arg_a, arrays_a = _operand(graph, op.inputs[0], f"{p}_input1", "input 1")
    b, arg_b, arrays_b = _operand(graph, op.inputs[1], f"{p}_input2", "input 2")
    y = _require_int8(graph.tensor(op.outputs[0]), "output")
    act = _fused(op, y)
    mult, shift = fp.quantize_multiplier(a.single_scale() * b.single_scale() / y.single_scale())
    same = _extend4(a.shape, "input 1") == _extend4(b.shape, "input 2") == _extend4(y.shape, "output")
    shape = ({"dims": "{0}", "stride1": "{0}", "stride2": "{0}"} if same else _broadcast4(a, b, y))
    params = {"size": y.size, "broadcast": 0 if same else 1,
              "input1_offset": -a.single_zero_point(), "input2_offset": -b.single_zero_point(),
              "output_offset": y.single_zero_point(), "output_multiplier": mult,
              "output_shift": shift, "act_min": act[0], "act_max": act[1], "shape": shape}
    # Without broadcasting, elementwise: reads element i of both inputs, then writes i.
    inplace = [] if not same else [(t, 0) for t in (arg_a, arg_b) if isinstance(t, int)]
    return KernelCall(op, "aq_mul_s8", "aq_mul_params", params, [arg_a, arg_b, op.outputs[0]],
                      arrays_a + arrays_b, inplace=inplace,
                      comment=f"mul {list(a.shape)} * {list(b.shape)} -> {list(y.shape)}")


def _const_ints(graph: Graph, index: int, what: str) -> np.ndarray:
    t = graph.tensor(index)
    if t is None or not t.is_constant or t.dtype not in ("int32", "int64"):
        raise Unsupported(f"{what} must be a constant int32 tensor")
    return t.data.astype(np.int64)


def _mean(graph: Graph, op: Op, p: str) -> KernelCall:
    x = _require_int8(graph.tensor(op.inputs[0]), "input")
    y = _require_int8(graph.tensor(op.outputs[0]), "output")
    dims = _extend4(x.shape, "input")
    rank = len(x.shape)
    axes = set()
    for a in _const_ints(graph, op.inputs[1], "axis").reshape(-1):
        a = int(a) + rank if a < 0 else int(a)
        if not 0 <= a < rank:
            raise Unsupported(f"axis {a} is out of range for rank {rank}")
        axes.add(a + 4 - rank)
    reduce = [1 if k in axes else 0 for k in range(4)]
    count = int(np.prod([dims[k] for k in range(4) if reduce[k]]))
    if y.size != x.size // max(count, 1) or count == 0:
        raise Unsupported(f"output shape {list(y.shape)} does not match the reduction")
    # PrepareMeanOrSum: input_scale / output_scale, then QuantizedMeanOrSum folds in 1/count.
    mult, shift = fp.quantize_multiplier(x.single_scale() / y.single_scale())
    fold = min(count.bit_length() - 1, 32, 31 + shift)
    mult, shift = int((mult << fold) // count), shift - fold
    params = {"dims": _c_array(dims), "reduce": _c_array(reduce), "count": count,
              "input_zero_point": x.single_zero_point(),
              "output_zero_point": y.single_zero_point(), "multiplier": mult, "shift": shift}
    return KernelCall(op, "aq_mean_s8", "aq_mean_params", params, [op.inputs[0], op.outputs[0]],
                      comment=f"mean {list(x.shape)} over axes {sorted(a - 4 + rank for a in axes)} "
                              f"-> {list(y.shape)}")


def _pad(graph: Graph, op: Op, p: str) -> KernelCall:
    """PAD / PADV2: like TFLite Micro, bytes are copied as they are (the converter gives input
    and output the same quantization); the pad value is the output zero point or PADV2's
    constant."""
    x = _require_int8(graph.tensor(op.inputs[0]), "input")
    y = _require_int8(graph.tensor(op.outputs[0]), "output")
    if x.is_constant:
        raise Unsupported("padding a constant tensor is not supported")
    pads = _const_ints(graph, op.inputs[1], "paddings").reshape(-1, 2)
    if pads.shape[0] != len(x.shape) or np.any(pads < 0):
        raise Unsupported(f"paddings {pads.tolist()} do not fit input rank {len(x.shape)}")
    value = y.single_zero_point()
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        c = graph.tensor(op.inputs[2])
        if c is None or not c.is_constant or c.dtype != "int8":
            raise Unsupported("PADV2 constant value must be a constant int8 tensor")
        value = int(c.data.reshape(-1)[0])
    in_dims = _extend4(x.shape, "input")
    before = [0] * (4 - len(x.shape)) + [int(v) for v in pads[:, 0]]
    after = [0] * (4 - len(x.shape)) + [int(v) for v in pads[:, 1]]
    out_dims = [in_dims[k] + before[k] + after[k] for k in range(4)]
    if out_dims != _extend4(y.shape, "output"):
        raise Unsupported(f"output shape {list(y.shape)} does not match paddings {pads.tolist()}")
    params = {"in_dims": _c_array(in_dims), "out_dims": _c_array(out_dims),
              "before": _c_array(before), "pad_value": value}
    return KernelCall(op, "aq_pad_s8", "aq_pad_params", params, [op.inputs[0], op.outputs[0]],
                      comment=f"pad {list(x.shape)} -> {list(y.shape)} with {value}")


def nearest_neighbor_map(in_size: int, out_size: int, align_corners: bool,
                         half_pixel_centers: bool) -> np.ndarray:
    """The input index of every output index along one axis, as TFLite's GetNearestNeighbor
    computes it: in float32, floor (or round half away from zero with align_corners), clamped
    to the input."""
    f32 = np.float32
    scale = (f32(in_size - 1) / f32(out_size - 1) if align_corners and out_size > 1
             else f32(in_size) / f32(out_size))
    pos = (np.arange(out_size).astype(f32) + f32(0.5 if half_pixel_centers else 0.0)) * scale
    pos = pos.astype(f32).astype(np.float64)   # >= 0; float64 holds it and its halves exactly
    down = np.floor(pos)
    index = np.where(pos - down >= 0.5, down + 1, down) if align_corners else down  # std::round
    index = np.minimum(index.astype(np.int64), in_size - 1)
    return np.maximum(index, 0) if half_pixel_centers else index


def _resize_nearest(graph: Graph, op: Op, p: str) -> KernelCall:
    """RESIZE_NEAREST_NEIGHBOR over height and width: a byte copy (TFLite Micro copies the
    int8 codes whatever the output's quantization), each output row and column mapped to an
    input one at build time."""
    x = _require_int8(graph.tensor(op.inputs[0]), "input")
    y = _require_int8(graph.tensor(op.outputs[0]), "output")
    if len(x.shape) != 4 or len(y.shape) != 4:
        raise Unsupported("input and output must have 4 dimensions (TFLite Micro's limit)")
    if x.is_constant:
        raise Unsupported("resizing a constant tensor is not supported")
    size = _const_ints(graph, op.inputs[1], "size").reshape(-1)
    if size.size != 2 or tuple(int(v) for v in size) != tuple(y.shape[1:3]) or \
            (x.shape[0], x.shape[3]) != (y.shape[0], y.shape[3]) or min(size) < 1:
        raise Unsupported(f"size {size.tolist()} does not fit input {list(x.shape)} and output "
                          f"{list(y.shape)}")
    align = bool(op.options.get("alignCorners", False))
    half = bool(op.options.get("halfPixelCenters", False))
    (n, in_h, in_w, c), (out_h, out_w) = x.shape, (int(size[0]), int(size[1]))
    arrays = [ConstArray(f"{p}_rows", "int32_t", nearest_neighbor_map(in_h, out_h, align, half),
                         "input row of every output row"),
              ConstArray(f"{p}_cols", "int32_t", nearest_neighbor_map(in_w, out_w, align, half),
                         "input column of every output column")]
    params = {"batches": n, "in_h": in_h, "in_w": in_w, "depth": c, "out_h": out_h,
              "out_w": out_w, "rows": f"{p}_rows", "cols": f"{p}_cols"}
    return KernelCall(op, "aq_resize_nearest_s8", "aq_resize_nearest_params", params,
                      [op.inputs[0], op.outputs[0]], arrays,
                      comment=f"resize nearest {in_h}x{in_w} -> {out_h}x{out_w}x{c}"
                              f"{' align_corners' if align else ''}"
                              f"{' half_pixel_centers' if half else ''}")


def _concatenation(graph: Graph, op: Op, p: str) -> KernelCall:
    """CONCATENATION: a byte copy. TFLite Micro requires every int8 input to have the output's
    scale (the converter arranges it) and never rescales, so inputs quantized differently from
    the output are refused here too."""
    y = _require_int8(graph.tensor(op.outputs[0]), "output")
    if int(op.options.get("fusedActivationFunction", 0)) != 0:
        raise Unsupported("a fused activation on CONCATENATION is not supported (TFLite Micro refuses it)")
    if not 1 <= len(op.inputs) <= 16:
        raise Unsupported(f"{len(op.inputs)} inputs; 1 to 16 are supported")
    rank = len(y.shape)
    if rank > 4:
        raise Unsupported(f"output has {rank} dimensions; at most 4 are supported")
    axis = int(op.options.get("axis", 0))
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise Unsupported(f"axis {axis} is out of range for rank {rank}")
    args, arrays, sizes, total = [op.outputs[0]], [], [], 0
    for i, index in enumerate(op.inputs):
        t, arg, arr = _operand(graph, index, f"{p}_input{i}", f"input {i + 1}")
        if t.single_scale() != y.single_scale() or t.single_zero_point() != y.single_zero_point():
            raise Unsupported(f"input {i + 1} is quantized differently from the output (scale "
                              f"{t.single_scale():.6g} zp {t.single_zero_point()} vs "
                              f"{y.single_scale():.6g} zp {y.single_zero_point()}); TFLite Micro "
                              "requires the same scale and does not rescale")
        if len(t.shape) != rank or any(t.shape[k] != y.shape[k] for k in range(rank) if k != axis):
            raise Unsupported(f"input {i + 1} shape {list(t.shape)} does not fit output {list(y.shape)} on axis {axis}")
        args.append(arg)
        arrays += arr
        sizes.append(int(np.prod(t.shape[axis:])))
        total += t.shape[axis]
    if total != y.shape[axis]:
        raise Unsupported(f"inputs add up to {total} along axis {axis}, output has {y.shape[axis]}")
    arrays.append(ConstArray(f"{p}_copy_size", "int32_t", np.asarray(sizes, np.int64),
                             "bytes per input and outer index"))
    params = {"num_inputs": len(op.inputs), "outer": int(np.prod(y.shape[:axis])),
              "copy_size": f"{p}_copy_size"}
    return KernelCall(op, "aq_concatenation_s8", "aq_concatenation_params", params, args, arrays,
                      comment=f"concatenate {len(op.inputs)} inputs on axis {axis} -> {list(y.shape)}")


def _logistic(graph: Graph, op: Op, p: str) -> KernelCall:
    x = _require_int8(graph.tensor(op.inputs[0]), "input")
    y = _require_int8(graph.tensor(op.outputs[0]), "output")
    if y.single_zero_point() != -128:
        raise Unsupported("int8 output must have zero point -128 (TFLite Micro requires it)")
    # CalculateArithmeticOpDataLogistic: 4 integer bits, frexp of scale * 2^27, no renormalizing.
    mantissa, left_shift = math.frexp(x.single_scale() * float(1 << 27))
    multiplier = fp.tflite_round(mantissa * (1 << 31))
    if multiplier >= 1 << 31:   # static_cast<int32_t> of 2^31 wraps
        multiplier -= 1 << 32
    radius = math.floor(15.0 * (1 << 27) / 2.0 ** left_shift)
    params = {"size": x.size, "input_zero_point": x.single_zero_point(),
              "input_range_radius": radius, "input_multiplier": multiplier,
              "input_left_shift": left_shift}
    return KernelCall(op, "aq_logistic_s8", "aq_logistic_params", params,
                      [op.inputs[0], op.outputs[0]], comment=f"logistic {list(x.shape)}")


def _int16_multiplier(real: float) -> tuple[int, int]:
    """QuantizeMultiplier then DownScaleInt32ToInt16Multiplier."""
    m, e = fp.quantize_multiplier(real)
    if m >= (1 << 31) - 1 - (1 << 15):
        return (1 << 15) - 1, e
    return (m + (1 << 15)) >> 16, e


def _hard_swish(graph: Graph, op: Op, p: str) -> KernelCall:
    x = _require_int8(graph.tensor(op.inputs[0]), "input")
    y = _require_int8(graph.tensor(op.outputs[0]), "output")
    # HardSwishPrepare: hires scale = input scale / 128 (float32, exact), then the ratios are
    # taken in double: checked against TFLite Micro where a float32 quotient rounds differently.
    hires = float(np.float32(1.0 / 128.0) * np.float32(x.single_scale()))
    out_m, out_e = _int16_multiplier(hires / y.single_scale())
    relu_m, relu_e = _int16_multiplier(hires / (3.0 / 32768.0))
    if out_e > 0:
        raise Unsupported("output scale below input scale / 128 (TFLite requires a right shift)")
    params = {"size": x.size, "input_zero_point": x.single_zero_point(),
              "output_zero_point": y.single_zero_point(),
              "reluish_multiplier_fixedpoint_int16": relu_m, "reluish_multiplier_exponent": relu_e,
              "output_multiplier_fixedpoint_int16": out_m, "output_multiplier_exponent": out_e,
              "act_min": -128, "act_max": 127}
    return KernelCall(op, "aq_hard_swish_s8", "aq_hard_swish_params", params,
                      [op.inputs[0], op.outputs[0]], comment=f"hard swish {list(x.shape)}")


def _leaky_relu(graph: Graph, op: Op, p: str) -> KernelCall:
    x = _require_int8(graph.tensor(op.inputs[0]), "input")
    y = _require_int8(graph.tensor(op.outputs[0]), "output")
    # CalculateOpDataLeakyRelu: the ratios in float32, then QuantizeMultiplier of the double.
    sx, sy = np.float32(x.single_scale()), np.float32(y.single_scale())
    alpha = np.float32(op.options.get("alpha", 0.2))
    if not np.isfinite(alpha):
        raise Unsupported(f"alpha {alpha} is not finite")
    identity = fp.quantize_multiplier(float(sx / sy))
    scaled_alpha = float(sx * alpha / sy)
    alpha_q = fp.quantize_multiplier(abs(scaled_alpha))   # TFLite: |multiplier|, sign after
    params = {"size": x.size, "input_zero_point": x.single_zero_point(),
              "output_zero_point": y.single_zero_point(),
              "identity_multiplier": identity[0], "identity_shift": identity[1],
              "alpha_multiplier": alpha_q[0], "alpha_shift": alpha_q[1],
              "alpha_negative": int(scaled_alpha < 0)}
    return KernelCall(op, "aq_leaky_relu_s8", "aq_leaky_relu_params", params,
                      [op.inputs[0], op.outputs[0]], comment=f"leaky relu (alpha {float(alpha):g}) {list(x.shape)}")


def _affine(t: Tensor) -> dict[str, Any]:
    return {"size": t.size, "scale": f"{float(np.float32(t.single_scale()))!r}f",
            "zero_point": t.single_zero_point()}


def _quantize(graph: Graph, op: Op, p: str) -> KernelCall:
    x, y = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    if x is not None and x.dtype == "float32":
        y = _require_int8(y, "output")
        if op.inputs[0] not in graph.inputs:
            raise Unsupported("float32 -> int8 QUANTIZE is supported at the model's input only")
        return KernelCall(op, "aq_quantize_f32_s8", "aq_affine_params", _affine(y),
                          [op.inputs[0], op.outputs[0]], comment=f"quantize float input {list(x.shape)}")
    x = _require_int8(x, "input")
    y = _require_int8(y, "output")
    mult, shift = fp.quantize_multiplier(x.single_scale() / y.single_scale())
    params = {"size": x.size, "input_zero_point": x.single_zero_point(),
              "output_zero_point": y.single_zero_point(), "multiplier": mult, "shift": shift}
    return KernelCall(op, "aq_quantize_s8", "aq_quantize_params", params,
                      [op.inputs[0], op.outputs[0]], inplace=[(op.inputs[0], 0)],  # elementwise
                      comment=f"requantize {list(x.shape)}")


def _dequantize(graph: Graph, op: Op, p: str) -> KernelCall:
    x, y = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    x = _require_int8(x, "input")
    if y is None or y.dtype != "float32" or op.outputs[0] not in graph.outputs:
        raise Unsupported("int8 -> float32 DEQUANTIZE is supported at the model's output only")
    return KernelCall(op, "aq_dequantize_s8_f32", "aq_affine_params", _affine(x),
                      [op.inputs[0], op.outputs[0]], comment=f"dequantize output {list(x.shape)}")


LOWERINGS = {
    "DEQUANTIZE": _dequantize,
    "RELU": _relu,
    "RELU6": _relu,
    "RELU_N1_TO_1": _relu,
    "MINIMUM": _min_max,
    "MAXIMUM": _min_max,
    "ADD": _add_any,
    "SUB": _sub,
    "MUL": _mul,
    "MEAN": _mean,
    "PAD": _pad,
    "RESIZE_NEAREST_NEIGHBOR": _resize_nearest,
    "PADV2": _pad,
    "CONCATENATION": _concatenation,
    "LOGISTIC": _logistic,
    "HARD_SWISH": _hard_swish,
    "LEAKY_RELU": _leaky_relu,
    "QUANTIZE": _quantize,
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _depthwise,
    "FULLY_CONNECTED": _fully_connected,
    "MAX_POOL_2D": _pool,
    "AVERAGE_POOL_2D": _pool,
    "SOFTMAX": _softmax,
    "RESHAPE": _reshape,
    "SQUEEZE": _reshape,
    "EXPAND_DIMS": _reshape,
}


def check_io(graph: Graph, label: str) -> None:
    """One input and one output tensor, int8 — or float32 at an edge that a QUANTIZE /
    DEQUANTIZE converts (the converter's default float-interface models). A float model is
    refused."""
    readers = [op for op in graph.ops if graph.inputs and graph.inputs[0] in op.inputs]
    writers = [op for op in graph.ops if graph.outputs and graph.outputs[0] in op.outputs]
    for role, indices, edge_ops, edge in (("input", graph.inputs, readers, "QUANTIZE"),
                                          ("output", graph.outputs, writers, "DEQUANTIZE")):
        if len(indices) != 1:
            raise AqError(f"{label}: aqedge runs models with one {role} tensor (this one has {len(indices)})")
        t = graph.tensors[indices[0]]
        if t.dtype == "float32" and edge_ops and all(op.opcode == edge for op in edge_ops):
            continue
        if t.dtype in ("float32", "float16"):
            raise AqError(f"{label} is a float model ({role} '{t.name}' is {t.dtype}): aqedge runs "
                          "full-integer models; convert with int8 quantization (aqedge convert)")
        if t.dtype != "int8" or t.scale is None:
            raise AqError(f"{label}: {role} '{t.name}' is {t.dtype}; aqedge needs a quantized int8 {role}")


def act_params(params: dict[str, Any]) -> dict[str, Any] | None:
    """The dict holding a call's output clamp (act_min, act_max): its params or their "q"."""
    for d in (params, params.get("q")):
        if isinstance(d, dict) and "act_min" in d:
            return d
    return None


def alias_roots(calls: list[KernelCall]):
    """root(t): the tensor standing for t's buffer, t and every tensor aliasing it (reshapes,
    folded clamps, a Swish's LOGISTIC) sharing one."""
    parent: dict[int, int] = {}

    def root(t: int) -> int:
        while parent.get(t, t) != t:
            t = parent[t]
        return t

    for call in calls:
        if call.alias:
            parent[root(call.alias[0])] = root(call.alias[1])
    return root


def _readers(calls: list[KernelCall]) -> dict[int, int]:
    """How many ops read each tensor."""
    readers: dict[int, int] = {}
    for call in calls:
        for t in call.op.inputs:
            readers[t] = readers.get(t, 0) + 1
    return readers


def fold_clamps(graph: Graph, calls: list[KernelCall]) -> None:
    """Fold each constant MINIMUM / MAXIMUM into the output clamp of the op producing its input.

    min(clamp(v, lo, hi), c) == clamp(v, min(lo, c), min(hi, c)), and likewise for max, so the
    result is bit-identical. A clamp whose input has other readers, is a model output, or comes
    from an op without an output clamp becomes a standalone aq_clamp_s8 instead (which the
    clamps after it can fold into).
    """
    readers = _readers(calls)
    producer: dict[int, KernelCall] = {}
    for call in calls:
        if call.clamp is None:
            for t in call.op.outputs:
                producer[t] = call
            continue
        out, src = call.alias
        kind, c = call.clamp
        source = producer.get(src)
        act = act_params(source.params) if source is not None else None
        if act is None or readers.get(src, 0) != 1 or src in graph.outputs:
            call.kernel, call.params_type, call.args = "aq_clamp_s8", "aq_clamp_params", [src, out]
            call.params = {"size": graph.tensors[out].size,
                           "act_min": c if kind == "max" else -128,
                           "act_max": c if kind == "min" else 127}
            call.alias, call.clamp, call.inplace = None, None, [(src, 0)]
            call.comment = f"{kind}(x, {c}), standalone: its input {_unfoldable(act, readers.get(src, 0))}"
            producer[out] = call
            continue
        if kind == "min":
            act["act_min"], act["act_max"] = min(act["act_min"], c), min(act["act_max"], c)
        else:
            act["act_min"], act["act_max"] = max(act["act_min"], c), max(act["act_max"], c)
        producer[out] = source


def _unfoldable(act: dict[str, Any] | None, readers: int) -> str:
    if act is None:
        return "comes from an op without an output clamp"
    return f"has {readers} readers" if readers != 1 else "is a model output"


#: Elementwise int8 -> int8 kernels whose output depends on the input code alone.
TABULATED = ("aq_logistic_s8", "aq_hard_swish_s8", "aq_leaky_relu_s8")


def tabulate(graph: Graph, calls: list[KernelCall]) -> None:
    """Run LOGISTIC, HARD_SWISH and LEAKY_RELU through a 256-entry table (aq_lut_s8), and Swish too:
    MUL(x, LOGISTIC(x)), whose LOGISTIC output nothing else reads, is one table of x and the
    LOGISTIC becomes an alias. A table is the ops' own kernels run on every input code, built
    once by aq_model_prepare() (with any clamps folded in), so the result is theirs bit for bit;
    a lookup replaces a few hundred instructions per element of fixed-point exp and division."""
    readers = _readers(calls)
    logistic = {call.op.outputs[0]: call for call in calls if call.kernel == "aq_logistic_s8"}
    swish = [call for call in calls if call.kernel == "aq_mul_s8" and not call.params["broadcast"]]
    for call in swish + [call for call in calls if call.kernel in TABULATED]:
        name = f"op{call.op.index}_table"
        if call.kernel == "aq_mul_s8":
            x1, x2 = call.op.inputs
            sig = logistic.get(x2 if x2 in logistic else x1)
            if (sig is None or sig.op.inputs[0] != (x1 if sig.op.outputs[0] == x2 else x2)
                    or readers.get(sig.op.outputs[0], 0) != 1 or sig.op.outputs[0] in graph.outputs):
                continue
            codes = ["aq_lut_codes", "aq_lut_scratch"]
            call.table = [(sig.kernel, sig.params_type, {**sig.params, "size": 256}, codes),
                          (call.kernel, call.params_type, {**call.params, "size": 256},
                           [*(codes if sig.op.outputs[0] == x2 else codes[::-1]), name])]
            x = sig.op.inputs[0]
            sig.kernel, sig.params_type, sig.params, sig.args = None, None, {}, []
            sig.alias = (sig.op.outputs[0], x)
            sig.comment = f"Swish: in op {call.op.index}'s table"
            call.comment = f"Swish {list(graph.tensors[x].shape)}, x * logistic(x) (op {sig.op.index}) " \
                           "through a table of its 256 outputs"
        elif call.kernel in TABULATED:
            x = call.op.inputs[0]
            call.table = [(call.kernel, call.params_type, {**call.params, "size": 256},
                           ["aq_lut_codes", name])]
            call.comment += ", through a table of its 256 outputs"
        else:
            continue
        call.kernel, call.params_type = "aq_lut_s8", "aq_lut_params"
        call.params = {"size": call.params["size"]}
        call.args = [name, x, call.op.outputs[0]]
        call.inplace = [(x, 0)]   # elementwise: reads i, then writes i


def kernel_variants(calls) -> list[dict]:
    """The kernel variant of each MAC layer, as dispatch.py chose it at build time: rows
    {op, opcode, kernel, variant, why, row_bands} (also in build.json and the comments of
    model.c); `row_bands`: run one output row at a time over packed tensors (storage.py)."""
    return [{"op": c.op.index, "opcode": c.op.opcode, "kernel": c.kernel, "variant": c.variant.name,
             "why": c.variant.why, "row_bands": c.band is not None}
            for c in calls if c.variant is not None]


#: The lowerings that pick another kernel for packed tensors (CONV_2D and DEPTHWISE_CONV_2D
#: keep theirs and run it in row bands: storage.apply).
_MAC_LOWERINGS = (_fully_connected,)


def lower(graph: Graph, label: str, packed: frozenset[int] = frozenset()) -> list[KernelCall]:
    """Lower every op; raise AqError listing every op that cannot run, with index and types.
    `packed`: the tensors stored packed (storage.py), whose FULLY_CONNECTED layers get the
    packed variant; storage.apply() then sets every call's storages."""
    check_io(graph, label)
    calls, problems = [], []
    for op in graph.ops:
        fn = LOWERINGS.get(op.opcode)
        try:
            if fn is None:
                raise Unsupported("op is not supported by the aqedge runtime")
            if fn in _MAC_LOWERINGS:
                touches = bool(packed & {op.inputs[0], op.outputs[0]})
                calls.append(fn(graph, op, f"op{op.index}", packed=touches))
            else:
                calls.append(fn(graph, op, f"op{op.index}"))
        except Unsupported as exc:
            made = f" -> '{graph.tensors[op.outputs[0]].name}'" if op.outputs else ""
            problems.append(f"op {op.index} {op.opcode} (v{op.version}){made}: {exc}; "
                            f"{_types(graph, op)}")
    if problems:
        supported = ", ".join(sorted(LOWERINGS))
        raise AqError(f"{label}: {len(problems)} op(s) cannot run on the aqedge runtime: "
                      + "; ".join(problems) + f" (the runtime runs {supported})")
    fold_clamps(graph, calls)
    tabulate(graph, calls)
    return calls
