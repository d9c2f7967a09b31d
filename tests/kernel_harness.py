"""aqedge's MAC kernels on the emulated Cortex-M4 (qemu-mps2-an386), case by case, against a peer.

A library for tests/test_cm_kernels.py (the Cortex-M variants fuzzed against the portable loop
bodies) and bench/kernels.py (per-layer instructions against CMSIS-NN), not a test file.

    cases = [make_case("conv", h=12, w=12, in_c=16, out_c=32, k=3, s4=True, seed=1)]
    results = run_cases(cases, "portable", Path("build/kernels"))
    results[0].aq_instructions, results[0].bit_exact

A case is one layer: its aq parameter struct, int8 input, weights (int values in TFLite's layout),
int32 bias and requantisation, drawn from a seed. The kernel under test is whatever aqedge
builds for that layer: the case is lowered by `aqedge.codegen.lower.lower()` as a one-op graph,
so `aqedge.codegen.dispatch.select()` picks the variant, and its weight layout
(`Variant.layout`), bias (`Variant.bias`), `q.guard` and array padding are those of the
generated firmware; the harness makes the call model.c makes. Its peer runs on the same data:

* "portable": the loop bodies of firmware/include/aq_mac_impl.h with TFLite's natural weight
  layout (the reference, bit-exact with TFLite Micro);
* "cmsis-nn": CMSIS-NN's `arm_convolve_wrapper_s8/_s4`, `arm_depthwise_conv_wrapper_s8/_s4`,
  `arm_fully_connected_s8` (`_per_channel_s8` for per-channel requantisation) and
  `arm_fully_connected_s4`, from the TFLite Micro tree of $TFLM_TREE (or `tflm_tree=`),
  compiled with TFLM's flags into a cached library (aqedge.codegen.tflm_lib). As TFLM's
  Prepare does, scratch sizes come from the `*_get_buffer_size` functions and the fully
  connected kernel sums (`arm_vector_sum_s8`, needed when the scratch size is > 0: not on the
  Cortex-M4, whose DSP path needs none) are computed before the timed region.

One batch of cases is one C file (`harness.c`: the arrays in flash, the parameter structs, a
table of cases and a main), linked with the kernels (portable firmware/kernels/*.c, each
replaced by its firmware/kernels/cortex-m/ port: `project.runtime_sources`) and the board files,
and run in QEMU with `-icount shift=0`: one instruction per nanosecond, so SysTick at 25 MHz
counts 40 instructions a tick. Per case the main copies the input to RAM, times the aq kernel
(repeated until the timed region holds `min_instructions`, then per call), keeps its output,
times the peer the same way and compares the outputs byte for byte; it also checks that neither
wrote past its output or into its input, and how deep the aq kernel's stack went.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aqedge.boards import Board, resolve
from aqedge.codegen import dispatch
from aqedge.codegen import fixedpoint as fp
from aqedge.codegen import tflm_lib
from aqedge.codegen.graph import Graph, Op, Tensor
from aqedge.codegen.lower import KernelCall, lower
from aqedge.codegen.project import CROSS, rx_max_for_input, runtime_sources, write_project
from aqedge.codegen.render import _c_struct, _c_values
from aqedge.errors import AqError

BOARD = "qemu-mps2-an386"
KINDS = dispatch.KINDS
PEERS = ("portable", "cmsis-nn")
#: Code generation of templates/firmware/Makefile.j2 (after the board's own flags).
CFLAGS = ("-O2", "-ffunction-sections", "-fdata-sections", "-std=c99", "-Wall", "-Wextra", "-g")
#: QEMU's mps2-an386 maps 4 MiB of RAM at 0x20000000; the board file declares a realistic
#: 256 KiB. The harness links against all of it (big layers' tensors and CMSIS-NN's scratch)
#: with a deep stack, so the stack a kernel needs is measured instead of overflowing.
HARNESS_RAM = 4 << 20
HARNESS_STACK = 512 << 10
#: Per batch: flash for the arrays (of 4 MiB), RAM for the buffers, cases, instructions.
BATCH_FLASH = 3 << 20
BATCH_RAM = 3 << 20
BATCH_CASES = 300
BATCH_INSTRUCTIONS = 1_500_000_000
GUARD = 16
_FUSED = {"none": 0, "relu": 1, "relu_n1_to_1": 2, "relu6": 3}


class HarnessError(AqError):
    """A batch did not build or run: the message ends with the last lines of its output."""


# ---- cases ------------------------------------------------------------------------------------


@dataclass(repr=False)
class Case:
    """One MAC layer with its data, ready to render."""

    kind: str                    # "conv", "depthwise" or "fully_connected"
    s4: bool                     # INT4 weights (packed two per byte) instead of int8
    #: The fields of aq_conv_params / aq_depthwise_conv_params / aq_fully_connected_params;
    #: "q" is aq_requant, its multiplier and shift the per-channel lists.
    params: dict[str, Any]
    input: np.ndarray            # int8, NHWC (fully connected: batches x depth), flat
    weights: np.ndarray          # int values, TFLite layout (OHWI, 1HWC, [out_c, depth])
    bias: np.ndarray | None      # int32 [out_c], or no bias
    label: str = ""              # the shape, e.g. "3x3 s2 96x96x3 -> 48x48x16"
    seed: int = 0
    #: The hard features drawn (left_shift, huge_bias, dead_channels, narrow_act, ...).
    hard: tuple[str, ...] = ()
    #: The layer as aqedge.codegen.lower lowered it: the kernel dispatch.select() chose, its
    #: parameter struct (q.guard set, names for the arrays) and flash arrays (the weights in
    #: the variant's layout, the bias it takes, the requantisation, padded as lower pads them).
    call: KernelCall | None = dataclasses.field(default=None, repr=False)

    def __repr__(self) -> str:
        hard = f" [{', '.join(self.hard)}]" if self.hard else ""
        weights = "INT4" if self.s4 else "int8"
        return f"Case({self.kind} {self.label} {weights} seed {self.seed}{hard})"

    @property
    def q(self) -> dict[str, Any]:
        return self.params["q"]

    @property
    def out_c(self) -> int:
        return int(self.params["out_c"])

    @property
    def out_bytes(self) -> int:
        p = self.params
        if self.kind == "fully_connected":
            return p["batches"] * p["out_c"]
        return p["out_h"] * p["out_w"] * p["out_c"]

    @property
    def taps(self) -> int:
        """Products per output value (the accumulation depth K)."""
        p = self.params
        if self.kind == "conv":
            return p["k_h"] * p["k_w"] * p["filter_in_c"]
        if self.kind == "depthwise":
            return p["k_h"] * p["k_w"]
        return p["accum_depth"]

    @property
    def macs(self) -> int:
        """Multiply-accumulates, padding taps included (as aqedge inspect counts them)."""
        return self.out_bytes * self.taps

    @property
    def per_tensor(self) -> bool:
        """One multiplier and shift for every channel."""
        return len(set(self.q["multiplier"])) == 1 and len(set(self.q["shift"])) == 1

    @property
    def input_zero_point(self) -> int:
        return -int(self.q["input_offset"])

    @property
    def output_zero_point(self) -> int:
        return int(self.q["output_offset"])

    @property
    def act_range(self) -> tuple[int, int]:
        return int(self.q["act_min"]), int(self.q["act_max"])

    @property
    def variant(self) -> dispatch.Variant:
        """The kernel variant aqedge runs for this layer (dispatch.select, through lower)."""
        return self.call.variant

    def natural_weights(self) -> np.ndarray:
        """The weights as TFLite stores them (int8, or INT4 packed low nibble first)."""
        return dispatch.natural(self.weights, self.s4)


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def _window(h: int, w: int, k, stride, dilation, padding: str) -> dict[str, int]:
    """Output size, strides, dilations and TFLite's leading padding of a 2-D window."""
    (kh, kw), (sh, sw), (dh, dw) = _pair(k), _pair(stride), _pair(dilation)
    code = {"same": 0, "valid": 1}[padding]
    oh, ow = fp.output_size(code, h, kh, sh, dh), fp.output_size(code, w, kw, sw, dw)
    if oh < 1 or ow < 1:
        raise ValueError(f"{kh}x{kw} window (dilation {dh}x{dw}) does not fit {h}x{w} {padding}")
    return {"out_h": oh, "out_w": ow, "k_h": kh, "k_w": kw, "stride_h": sh, "stride_w": sw,
            "dil_h": dh, "dil_w": dw, "pad_h": fp.compute_padding(h, kh, sh, dh, oh),
            "pad_w": fp.compute_padding(w, kw, sw, dw, ow)}


def layer_params(kind: str, **shape) -> dict[str, Any]:
    """The aq parameter struct of a layer, without `q`. Shapes:

    conv: h, w, in_c, out_c, k=3, stride=1, dilation=1, padding="same", groups=1
    depthwise: h, w, in_c, multiplier=1, k=3, stride=1, dilation=1, padding="same"
    fully_connected: depth, out_c, batches=1
    """
    if kind == "fully_connected":
        return {"batches": int(shape.get("batches", 1)), "accum_depth": int(shape["depth"]),
                "out_c": int(shape["out_c"])}
    h, w, in_c = int(shape["h"]), int(shape["w"]), int(shape["in_c"])
    win = _window(h, w, shape.get("k", 3), shape.get("stride", 1), shape.get("dilation", 1),
                  shape.get("padding", "same"))
    p: dict[str, Any] = {"in_h": h, "in_w": w, "in_c": in_c, "out_h": win["out_h"],
                         "out_w": win["out_w"]}
    if kind == "conv":
        groups = int(shape.get("groups", 1))
        out_c = int(shape["out_c"])
        if in_c % groups or out_c % groups:
            raise ValueError(f"{groups} groups do not divide {in_c} -> {out_c} channels")
        p.update(out_c=out_c, k_h=win["k_h"], k_w=win["k_w"], filter_in_c=in_c // groups)
    elif kind == "depthwise":
        m = int(shape.get("multiplier", 1))
        p.update(out_c=in_c * m, k_h=win["k_h"], k_w=win["k_w"], depth_multiplier=m)
    else:
        raise ValueError(f"unknown MAC layer kind {kind!r} (one of {', '.join(KINDS)})")
    p.update({k: win[k] for k in ("stride_h", "stride_w", "dil_h", "dil_w", "pad_h", "pad_w")})
    return p


def shape_label(kind: str, p: dict[str, Any]) -> str:
    """'3x3 s2 96x96x3 -> 48x48x16', '3x3 dw s1 m2 ...', 'fc 1024 -> 10 (b2)'."""
    if kind == "fully_connected":
        b = f" (b{p['batches']})" if p["batches"] > 1 else ""
        return f"fc {p['accum_depth']} -> {p['out_c']}{b}"
    sh, sw = p["stride_h"], p["stride_w"]
    s = f"s{sh}" if sh == sw else f"s{sh}x{sw}"
    extra = ""
    if p["dil_h"] > 1 or p["dil_w"] > 1:
        extra += f" d{p['dil_h']}x{p['dil_w']}"
    if kind == "depthwise":
        m = p["depth_multiplier"]
        extra = f" dw{extra} m{m}" if m > 1 else f" dw{extra}"
    elif p["filter_in_c"] != p["in_c"]:
        extra += f" g{p['in_c'] // p['filter_in_c']}"
    return (f"{p['k_h']}x{p['k_w']}{extra} {s} {p['in_h']}x{p['in_w']}x{p['in_c']} -> "
            f"{p['out_h']}x{p['out_w']}x{p['out_c']}")


def _weight_shape(kind: str, p: dict[str, Any]) -> tuple[tuple[int, ...], int]:
    """TFLite's weight shape and its output-channel axis."""
    if kind == "conv":
        return (p["out_c"], p["k_h"], p["k_w"], p["filter_in_c"]), 0
    if kind == "depthwise":
        return (1, p["k_h"], p["k_w"], p["out_c"]), 3
    return (p["out_c"], p["accum_depth"]), 0


def _draw_weights(rng, shape, axis: int, s4: bool, hard: bool) -> np.ndarray:
    """Symmetric per-channel quantised weights: every channel reaches the limit (127, or 7 for
    INT4, as TFLite's converter makes them); hard INT4 cases use the full [-8, 7]."""
    if s4 and hard and rng.random() < 0.5:
        return rng.integers(-8, 8, shape).astype(np.int64)
    lim = 7 if s4 else 127
    w = rng.standard_normal(shape)
    others = tuple(i for i in range(len(shape)) if i != axis)
    peak = np.max(np.abs(w), axis=others, keepdims=True)
    return np.rint(w / np.maximum(peak, 1e-9) * lim).astype(np.int64)


def _channel_sigma(w: np.ndarray, axis: int, x_std: float) -> np.ndarray:
    """Standard deviation of each channel's accumulator for inputs of standard deviation x_std."""
    rows = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1).astype(np.float64)
    return np.sqrt(np.sum(rows * rows, axis=1)) * x_std + 1.0


@dataclass
class _Draw:
    """The random quantities of one case, before the hard features touch them."""

    in_scale: float
    in_zp: int
    out_scale: float
    out_zp: int
    w_scale: np.ndarray
    bias: np.ndarray | None
    act: tuple[int, int]


def _draw_quantisation(rng, sigma: np.ndarray, fused: int) -> _Draw:
    """Scales and zero points: output scale so outputs span about +-4 accumulator sigmas,
    biases of half a sigma (realistic magnitudes)."""
    n = len(sigma)
    in_scale = float(10 ** rng.uniform(-2.5, -0.5))
    w_scale = 10 ** rng.uniform(-3.0, -1.5, n)
    real_sigma = in_scale * w_scale * sigma
    out_scale = float(np.median(real_sigma) / 32 * 10 ** rng.uniform(-0.3, 0.3))
    # After a fused RELU / RELU6 the converter's calibration usually puts zero at -128.
    out_zp = -128 if fused in (1, 3) and rng.random() < 0.7 else int(rng.integers(-128, 128))
    bias = np.rint(rng.normal(0.0, 0.5, n) * sigma).astype(np.int64)
    act = fp.activation_range(fused, out_scale, out_zp)
    return _Draw(in_scale, int(rng.integers(-128, 128)), out_scale, out_zp, w_scale, bias, act)


def _harden(rng, d: _Draw, w: np.ndarray, axis: int, max_acc: int) -> list[str]:
    """Apply some hard features to the draw and the weights in place; returns their names."""
    n, chosen = len(d.w_scale), []
    some = lambda: rng.random(n) < rng.uniform(0.2, 0.6)  # noqa: E731
    if rng.random() < 0.35:  # requantisation multipliers > 1: positive (left) shifts
        pick = some()
        d.w_scale[pick] = d.out_scale / d.in_scale * 10 ** rng.uniform(0.05, 2.5, pick.sum())
        chosen.append("left_shift")
    if rng.random() < 0.3:  # biases near 2^30, or as near the int32 limits as the sums allow
        pick = some()
        big = rng.integers(1 << 29, 1 << 30, n) if rng.random() < 0.5 else \
            np.full(n, (1 << 31) - 1 - max_acc - 1)
        d.bias[pick] = (big * rng.choice([-1, 1], n))[pick]
        chosen.append("huge_bias")
    if rng.random() < 0.25:  # dead channels: all-zero weights
        np.moveaxis(w, axis, 0)[some()] = 0
        chosen.append("dead_channels")
    if rng.random() < 0.35:
        d.act = _narrow_range(rng, d)
        chosen.append("narrow_act")
    if rng.random() < 0.3:
        d.in_zp = int(rng.choice([-128, 127, 0]))
        d.out_zp = int(rng.choice([-128, 127, 0]))
        chosen.append("extreme_zero_points")
    if rng.random() < 0.1:
        d.bias = None
        chosen.append("no_bias")
    return chosen


def _narrow_range(rng, d: _Draw) -> tuple[int, int]:
    """RELU6-like, the 4-bit [-8, 7], a random narrow interval or a single value."""
    choice = int(rng.integers(4))
    if choice == 0:
        return fp.activation_range(3, d.out_scale, d.out_zp)
    if choice == 1:
        return -8, 7
    lo = int(rng.integers(-128, 128))
    hi = lo if choice == 3 else int(rng.integers(lo, 128))
    return lo, hi


_OPCODES = {"conv": "CONV_2D", "depthwise": "DEPTHWISE_CONV_2D",
            "fully_connected": "FULLY_CONNECTED"}


def _graph(kind: str, p: dict[str, Any], w: np.ndarray, d: _Draw, fused: int, s4: bool,
           shape: dict[str, Any]) -> Graph:
    """A one-op graph of the layer, as aqedge.codegen.graph.read_tflite would give it:
    tensors 0 input, 1 weights, 2 bias (absent without one), 3 output; float32 scales."""
    f32 = lambda v: np.asarray(v, np.float32).reshape(-1)  # noqa: E731
    zp = lambda v: np.asarray([v], np.int64)  # noqa: E731
    if kind == "fully_connected":
        in_shape, out_shape = (p["batches"], p["accum_depth"]), (p["batches"], p["out_c"])
        options: dict[str, Any] = {"weightsFormat": 0}
    else:
        in_shape = (1, p["in_h"], p["in_w"], p["in_c"])
        out_shape = (1, p["out_h"], p["out_w"], p["out_c"])
        options = {"strideH": p["stride_h"], "strideW": p["stride_w"],
                   "dilationHFactor": p["dil_h"], "dilationWFactor": p["dil_w"],
                   "padding": 0 if shape.get("padding", "same") == "same" else 1}
        if kind == "depthwise":
            options["depthMultiplier"] = p["depth_multiplier"]
    options["fusedActivationFunction"] = fused
    scales = d.w_scale if len(set(d.w_scale.tolist())) > 1 else d.w_scale[:1]
    tensors = [Tensor(0, "input", in_shape, "int8", f32(d.in_scale), zp(d.in_zp)),
               Tensor(1, "weights", tuple(w.shape), "int4" if s4 else "int8", f32(scales),
                      np.zeros(len(scales), np.int64), 3 if kind == "depthwise" else 0,
                      data=w.astype(np.int8),
                      packed=dispatch.natural(w, True).tobytes() if s4 else None),
               Tensor(2, "bias", (p["out_c"],), "int32", None, None,
                      data=None if d.bias is None else d.bias.astype(np.int32)),
               Tensor(3, "output", out_shape, "int8", f32(d.out_scale), zp(d.out_zp))]
    op = Op(0, _OPCODES[kind], 1, [0, 1, 2 if d.bias is not None else -1], [3], options)
    return Graph(tensors, [op], [0], [3])


def _lowered_params(call: KernelCall, out_c: int) -> dict[str, Any]:
    """The call's parameter struct with q's multiplier and shift as the per-channel lists."""
    arrays = {a.name: a.values for a in call.arrays}
    q = dict(call.params["q"])
    for key in ("multiplier", "shift"):
        q[key] = [int(v) for v in np.asarray(arrays[q[key]]).reshape(-1)[:out_c]]
    return dict(call.params, q=q)


def make_case(kind: str, *, s4: bool = False, seed: int = 0, hard: bool = False,
              activation: str | None = None, per_channel: bool | None = None, **shape) -> Case:
    """A layer of `kind` and `shape` (see layer_params) with realistic random data from `seed`:
    input and output scales and zero points, per-channel weight scales (per-tensor for fully
    connected unless `per_channel`), biases of a realistic magnitude, a fused activation
    (random unless `activation` names one of none, relu, relu6, relu_n1_to_1). `hard` adds some
    of: positive requantisation shifts, huge biases, dead channels, narrow activation ranges,
    extreme zero points, no bias (`Case.hard` names them).

    The layer is lowered by aqedge.codegen.lower.lower() as a one-op graph, so its
    multipliers (fixedpoint.conv_multipliers / fc_multiplier on float32 scales), activation
    range, kernel variant and arrays are exactly what aqedge builds for such a layer. A narrow
    range that no fused activation gives is then set the way lower's fold_clamps folds a
    MAXIMUM / MINIMUM pair into the layer."""
    rng = np.random.default_rng(seed)
    p = layer_params(kind, **shape)
    wshape, axis = _weight_shape(kind, p)
    w = _draw_weights(rng, wshape, axis, s4, hard)
    n_in = p["batches"] * p["accum_depth"] if kind == "fully_connected" else \
        p["in_h"] * p["in_w"] * p["in_c"]
    x = rng.integers(-128, 128, n_in).astype(np.int8)
    fused = _FUSED[activation] if activation else int(rng.choice([0, 1, 3], p=[0.4, 0.35, 0.25]))
    d = _draw_quantisation(rng, _channel_sigma(w, axis, float(np.std(x)) or 1.0), fused)
    if per_channel is None:
        per_channel = kind != "fully_connected" or (hard and rng.random() < 0.5)
    taps = int(np.prod(wshape)) // p["out_c"]
    chosen = _harden(rng, d, w, axis, taps * (8 if s4 else 128) * 255) if hard else []
    if not per_channel:
        d.w_scale[:] = d.w_scale[0]
    narrow = "narrow_act" in chosen
    label = shape_label(kind, p)
    call = lower(_graph(kind, p, w, d, 0 if narrow else fused, s4, shape), label)[0]
    if narrow:
        call.params["q"]["act_min"], call.params["q"]["act_max"] = d.act
    bias = None if d.bias is None else d.bias.astype(np.int32)
    return Case(kind, bool(s4), _lowered_params(call, p["out_c"]), x, w, bias, label, seed,
                tuple(chosen), call)


# ---- random shapes (the fuzz) -----------------------------------------------------------------


_ROUND_CHANNELS = (4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


def _channels(rng, hi: int) -> int:
    """Often a round channel count (multiple of 4), else any count up to `hi` (odd ones too)."""
    if rng.random() < 0.4:
        return int(rng.choice([c for c in _ROUND_CHANNELS if c <= hi] or [hi]))
    return int(rng.integers(1, hi + 1))


def _window_shape(rng) -> dict[str, Any]:
    k = [(1, 1), (3, 3), (5, 5), (2, 2), (1, 3), (3, 1), (7, 7)][
        rng.choice(7, p=[.25, .35, .12, .08, .07, .07, .06])]
    stride = [(1, 1), (2, 2), (1, 2), (3, 3)][rng.choice(4, p=[.5, .35, .08, .07])]
    dilation = (1, 1) if k == (1, 1) or rng.random() < 0.8 else (int(rng.integers(1, 3)), 2)
    return {"k": k, "stride": stride, "dilation": dilation,
            "padding": "same" if rng.random() < 0.6 else "valid"}


def random_shape(kind: str, rng, max_macs: int = 40_000, wide: bool = False) -> dict[str, Any]:
    """A random layer shape of `kind` (odd channel counts, SAME/VALID, strides 1-3, dilation,
    groups, depth multipliers, batches) of at most `max_macs` MACs: small maps and channels,
    or with `wide` up to 48x48 maps and 512 channels (for probing dispatch.select)."""
    hw, ch = (48, 512) if wide else (10, 24)
    while True:
        if kind == "fully_connected":
            depth = _channels(rng, 8 * ch if wide else 64) * int(rng.choice([1, 1, 2, 4, 7]))
            shape = {"depth": depth,
                     "out_c": _channels(rng, 2 * ch if wide else 40),
                     "batches": int(rng.choice([1, 1, 1, 2, 3, 4, 5]))}
        else:
            shape = {"h": int(rng.integers(1, hw + 1)), "w": int(rng.integers(1, hw + 1)),
                     **_window_shape(rng)}
            if kind == "conv":
                groups = 1 if rng.random() < 0.85 else int(rng.choice([2, 3]))
                shape.update(in_c=_channels(rng, ch) * groups, out_c=_channels(rng, ch) * groups,
                             groups=groups)
            else:
                shape.update(in_c=_channels(rng, ch + 8), multiplier=int(rng.choice([1, 1, 1, 2, 3])))
        try:
            p = layer_params(kind, **shape)
        except ValueError:
            continue
        if _macs(kind, p) <= max_macs:
            return shape


def _macs(kind: str, p: dict[str, Any]) -> int:
    wshape, _ = _weight_shape(kind, p)
    outs = p["out_c"] * (p["batches"] if kind == "fully_connected" else p["out_h"] * p["out_w"])
    return outs * int(np.prod(wshape)) // p["out_c"]


#: Small layers of the usual kinds (pointwise, 3x3, first layers, depthwise 3x3 / 5x5, depth
#: multiplier 2, big channel counts on tiny maps, matrix x vector): the fuzz runs each, so every
#: variant dispatch.select() picks for such layers is exercised.
TYPICAL: dict[str, list[dict[str, Any]]] = {
    "conv": [dict(h=4, w=4, in_c=16, out_c=32, k=1), dict(h=3, w=3, in_c=32, out_c=24, k=1),
             dict(h=2, w=2, in_c=64, out_c=16, k=1), dict(h=1, w=1, in_c=256, out_c=32, k=1),
             dict(h=1, w=1, in_c=128, out_c=96, k=1), dict(h=5, w=3, in_c=7, out_c=13, k=1),
             dict(h=4, w=4, in_c=8, out_c=8, k=1, stride=2), dict(h=6, w=6, in_c=8, out_c=16, k=3),
             dict(h=7, w=7, in_c=16, out_c=8, k=3, stride=2),
             dict(h=8, w=8, in_c=3, out_c=8, k=3, stride=2),
             dict(h=8, w=8, in_c=1, out_c=8, k=3, stride=2),
             dict(h=3, w=3, in_c=64, out_c=16, k=3), dict(h=5, w=5, in_c=4, out_c=4, k=5),
             dict(h=9, w=5, in_c=1, out_c=16, k=(4, 2), stride=2),
             dict(h=1, w=5, in_c=40, out_c=9, k=1, stride=2)],
    "depthwise": [dict(h=6, w=6, in_c=16), dict(h=7, w=7, in_c=24, stride=2),
                  dict(h=5, w=5, in_c=8, multiplier=2), dict(h=6, w=6, in_c=16, k=5),
                  dict(h=7, w=7, in_c=32, k=5, stride=2), dict(h=3, w=3, in_c=128),
                  dict(h=1, w=1, in_c=256), dict(h=5, w=4, in_c=13), dict(h=6, w=6, in_c=60),
                  dict(h=4, w=4, in_c=64, padding="valid"), dict(h=8, w=8, in_c=8, stride=2,
                                                                 padding="valid"),
                  dict(h=4, w=4, in_c=5, multiplier=3)],
    "fully_connected": [dict(depth=1024, out_c=10), dict(depth=256, out_c=32),
                        dict(depth=64, out_c=2), dict(depth=100, out_c=7),
                        dict(depth=4096, out_c=4), dict(depth=300, out_c=13, batches=2),
                        dict(depth=128, out_c=16, batches=4), dict(depth=96, out_c=24, batches=5),
                        dict(depth=33, out_c=1), dict(depth=7, out_c=5, batches=3)],
}


def fuzz_cases(kind: str, s4: bool, random_cases: int, seed: int = 0) -> list[Case]:
    """The fuzz of tests/test_cm_kernels.py (and `bench/fuzz_ops.py --cortex-m`): the TYPICAL
    shapes (plain, and twice with hard quantisation), then `random_cases` random small layers,
    every other one hard; seeds fixed per kind, weight type and `seed`, so a failure names a
    case that can be rerun."""
    base = 100_000 * (KINDS.index(kind) * 2 + int(s4)) + 1_000_000 * seed
    cases = [make_case(kind, s4=s4, seed=base + 3 * j + t, hard=t > 0, **shape)
             for j, shape in enumerate(TYPICAL[kind]) for t in range(3)]
    rng = np.random.default_rng(base)
    for j in range(random_cases):
        shape = random_shape(kind, rng)
        cases.append(make_case(kind, s4=s4, seed=base + 1000 + j, hard=j % 2 == 0, **shape))
    return cases


def steered_shape(kind: str, variant: str, rng) -> dict[str, Any]:
    """A random small layer shape (random_shape) bent towards `variant` of dispatch.select(),
    so rare variants get as many cases as common ones: conv "matvec" (1x1, no padding, 1 to 3
    output pixels), "loops" (grouped); depthwise "mult2" / "generic" (depth multiplier 2 / 3),
    "3x3" / "table" (3x3 / other kernels, multiplier 1); fully connected "matvec" / "batched"
    (1 to 3 / 4 or more batches). Whether the layer gets that variant still depends on its
    constants (a 3x3 depthwise layer with a left shift runs "table"): check case.variant."""
    shape = random_shape(kind, rng)
    if kind == "conv" and variant == "matvec":
        out = int(rng.integers(1, 4))
        shape.update(k=(1, 1), padding="valid", dilation=(1, 1), groups=1, stride=(1, 1),
                     h=1 if rng.random() < 0.5 else out, w=out)
        shape["h"] = 1 if shape["h"] * out > 3 else shape["h"]
        shape["in_c"], shape["out_c"] = _channels(rng, 96), _channels(rng, 40)
    elif kind == "conv" and variant == "loops" and shape.get("groups", 1) == 1:
        g = int(rng.choice([2, 3]))
        shape.update(groups=g, in_c=_channels(rng, 12) * g, out_c=_channels(rng, 12) * g)
    elif kind == "conv" and variant == "im2col":
        shape["groups"] = 1
    elif kind == "depthwise":
        mult = {"mult2": 2, "generic": 3}.get(variant, 1)
        shape["multiplier"] = mult
        if variant == "3x3":
            shape.update(k=(3, 3), dilation=(int(rng.integers(1, 3)), 1) if rng.random() < 0.2 else (1, 1))
        elif variant == "table" and tuple(np.broadcast_to(shape.get("k", 3), 2)) == (3, 3):
            shape["k"] = [(5, 5), (2, 2), (1, 3), (3, 1), (7, 7)][int(rng.integers(0, 5))]
    elif kind == "fully_connected":
        shape["batches"] = int(rng.integers(1, 4)) if variant == "matvec" else int(rng.integers(4, 7))
    try:
        p = layer_params(kind, **shape)
    except ValueError:
        return steered_shape(kind, variant, rng)
    return shape if _macs(kind, p) <= 80_000 else steered_shape(kind, variant, rng)


def variant_names(kind: str, s4: bool, probes: int = 400, seed: int = 0) -> set[str]:
    """The variant names dispatch.select() gives layers of `kind` (through lower): the TYPICAL
    shapes and `probes` random shapes of any size up to 48x48 maps and 512 channels, half of
    them with hard quantisation (a variant may depend on the constants). Nothing is run."""
    rng = np.random.default_rng(seed)
    shapes = TYPICAL[kind] * 2 + [random_shape(kind, rng, max_macs=2_000_000, wide=bool(i % 2))
                                  for i in range(probes)]
    return {make_case(kind, s4=s4, seed=seed + i, hard=bool(i % 2), **sh).variant.name
            for i, sh in enumerate(shapes)}


# ---- rendering --------------------------------------------------------------------------------

_SIGNATURES = {
    "conv": "const aq_conv_params *p, const int8_t *input, const {w} *filter, "
            "const int32_t *bias, int8_t *output",
    "depthwise": "const aq_depthwise_conv_params *p, const int8_t *input, const {w} *filter, "
                 "const int32_t *bias, int8_t *output",
    "fully_connected": "const aq_fully_connected_params *p, const int8_t *input, "
                       "const {w} *filter, const int32_t *bias, int8_t *output",
}
_PARAM_TYPES = {"conv": "aq_conv_params", "depthwise": "aq_depthwise_conv_params",
                "fully_connected": "aq_fully_connected_params"}
_IMPL = {"conv": "aq_conv_impl", "depthwise": "aq_depthwise_conv_impl",
         "fully_connected": "aq_fully_connected_impl"}

_MAIN = r"""
#define AQH_GUARD {guard}
#define AQH_PAINT_WORDS {paint_words}u
#define AQH_PATTERN 0xA5C3A5C3u
static int8_t aqh_in[{in_bytes}] __attribute__((aligned(8)));
static int8_t aqh_out_aq[{out_bytes} + AQH_GUARD] __attribute__((aligned(8)));
static int8_t aqh_out_peer[{out_bytes} + AQH_GUARD] __attribute__((aligned(8)));
static int8_t aqh_io[{io_bytes}] __attribute__((aligned(8)));
static volatile int32_t aqh_current = -1;

static void aqh_puts(const char *s) {{ aq_uart_write((const uint8_t *)s, strlen(s)); }}

static void aqh_putu(uint64_t v) {{
  char buf[24];
  int i = (int)sizeof buf;
  buf[--i] = 0;
  do {{ buf[--i] = (char)('0' + (int)(v % 10u)); v /= 10u; }} while (v);
  aqh_puts(" ");
  aqh_puts(buf + i);
}}

/* A fault (a kernel reading or writing where it must not) ends the run with the case and PC. */
void aqh_fault(const uint32_t *frame) {{
  aqh_puts("FAULT case");
  aqh_putu((uint64_t)(uint32_t)aqh_current);
  aqh_puts(" pc");
  aqh_putu(frame[6]);
  aqh_puts(" cfsr");
  aqh_putu(*(volatile uint32_t *)0xE000ED28u);
  aqh_puts("\nEND fault\n");
  for (;;) {{
  }}
}}

__attribute__((naked)) void HardFault_Handler(void) {{
  __asm volatile("tst lr, #4\n\tite eq\n\tmrseq r0, msp\n\tmrsne r0, psp\n\tb aqh_fault");
}}

static __attribute__((noinline)) void aqh_nop(const int8_t *in, int8_t *out) {{
  __asm volatile("" : : "r"(in), "r"(out) : "memory");
}}

static uint32_t *aqh_paint_lo, *aqh_paint_hi;

/* Fill the AQH_PAINT_WORDS words below the stack pointer with a pattern. */
static __attribute__((noinline)) void aqh_paint(void) {{
  uint32_t sp;
  __asm volatile("mov %0, sp" : "=r"(sp));
  aqh_paint_hi = (uint32_t *)((sp - 16u) & ~7u);
  aqh_paint_lo = aqh_paint_hi - AQH_PAINT_WORDS;
  for (volatile uint32_t *w = aqh_paint_lo; w < aqh_paint_hi; ++w) *w = AQH_PATTERN;
}}

/* Bytes of the painted stack a call overwrote (AQH_PAINT_WORDS * 4: at least that). */
static uint32_t aqh_stack_used(void) {{
  const volatile uint32_t *w = aqh_paint_lo;
  while (w < aqh_paint_hi && *w == AQH_PATTERN) ++w;
  return (uint32_t)((const uint8_t *)aqh_paint_hi - (const uint8_t *)w);
}}

/* Ticks of one call of f or, when that is under AQH_TARGET_TICKS, of enough calls to pass it. */
static __attribute__((noinline)) uint64_t aqh_time(aqh_fn f, int8_t *out, uint32_t *reps,
                                                   uint32_t *stack) {{
  if (stack) aqh_paint();
  uint64_t t0 = aq_timer_ticks();
  f(aqh_in, out);
  uint64_t ticks = aq_timer_ticks() - t0;
  if (stack) *stack = aqh_stack_used();
  *reps = 1;
  if (ticks < {target_ticks}u) {{
    *reps = (uint32_t)({target_ticks}u / (ticks ? ticks : 1u)) + 1u;
    t0 = aq_timer_ticks();
    for (uint32_t r = 0; r < *reps; ++r) f(aqh_in, out);
    ticks = aq_timer_ticks() - t0;
  }}
  return ticks;
}}

/* Guard bytes past the output still hold the fill value. */
static int aqh_guard_ok(const int8_t *out, uint32_t n, int8_t fill) {{
  for (uint32_t i = n; i < n + AQH_GUARD; ++i)
    if (out[i] != fill) return 0;
  return 1;
}}

/* The aq kernel in place, its output c->lead bytes below its input (the tightest placement
 * aqedge's memory planner gives it): how many output bytes differ from the out-of-place ones. */
static uint32_t aqh_inplace(const aqh_case *c, uint32_t *first) {{
  uint32_t mism = 0;
  memset(aqh_io, 0x55, sizeof aqh_io);
  memcpy(aqh_io + c->lead, c->input, c->in_bytes);
  c->aq(aqh_io + c->lead, aqh_io);
  for (uint32_t k = 0; k < c->out_bytes; ++k) {{
    if (aqh_io[k] != aqh_out_aq[k]) {{
      if (!mism) *first = k;
      ++mism;
    }}
  }}
  return mism;
}}

/* One line: C index flags aq_ticks aq_reps peer_ticks peer_reps mismatches first aq peer stack
 * peer_status inplace_mismatches inplace_first; flags: 1 aq wrote past its output, 2 aq wrote
 * its input, 4 peer wrote past its output, 8 peer init failed (scratch too big). */
static void aqh_run(int32_t i) {{
  const aqh_case *c = &aqh_cases[i];
  uint32_t flags = 0, aq_reps = 0, peer_reps = 0, stack = 0, mism = 0, first = 0;
  uint32_t ip_mism = 0, ip_first = 0;
  uint64_t peer_ticks = 0;
  aqh_current = i;
  memcpy(aqh_in, c->input, c->in_bytes);
  memset(aqh_out_aq, 0x55, c->out_bytes + AQH_GUARD);
  uint64_t aq_ticks = aqh_time(c->aq, aqh_out_aq, &aq_reps, &stack);
  if (!aqh_guard_ok(aqh_out_aq, c->out_bytes, 0x55)) flags |= 1u;
  if (memcmp(aqh_in, c->input, c->in_bytes) != 0) flags |= 2u;
  if (c->lead != AQH_NOT_INPLACE) ip_mism = aqh_inplace(c, &ip_first);
  memcpy(aqh_in, c->input, c->in_bytes);
  memset(aqh_out_peer, 0x5A, c->out_bytes + AQH_GUARD);
  aqh_peer_status = 0;
  if (aqh_peer_init(i) == 0) {{
    peer_ticks = aqh_time(c->peer, aqh_out_peer, &peer_reps, 0);
    if (!aqh_guard_ok(aqh_out_peer, c->out_bytes, 0x5A)) flags |= 4u;
  }} else {{
    flags |= 8u;
  }}
  for (uint32_t k = 0; k < c->out_bytes; ++k) {{
    if (aqh_out_aq[k] != aqh_out_peer[k]) {{
      if (!mism) first = k;
      ++mism;
    }}
  }}
  aqh_puts("C");
  const uint64_t fields[] = {{(uint64_t)i, flags, aq_ticks, aq_reps, peer_ticks, peer_reps, mism,
                              first, (uint8_t)aqh_out_aq[first], (uint8_t)aqh_out_peer[first],
                              stack, (uint32_t)aqh_peer_status, ip_mism, ip_first}};
  for (uint32_t k = 0; k < sizeof fields / sizeof fields[0]; ++k) aqh_putu(fields[k]);
  aqh_puts("\n");
}}

int main(void) {{
  aq_board_init();
  uint32_t reps = 0;
  aqh_puts("OVERHEAD");
  /* One call, as aqh_time times a call that needs no repeating (not aqh_time itself: it
   * would repeat the short nop until the target and report all of those calls). */
  uint64_t t0 = aq_timer_ticks();
  aqh_nop(aqh_in, aqh_out_aq);
  aqh_putu(aq_timer_ticks() - t0);
  reps = 10000u;
  t0 = aq_timer_ticks();
  for (uint32_t r = 0; r < reps; ++r) aqh_nop(aqh_in, aqh_out_aq);
  aqh_putu(aq_timer_ticks() - t0);
  aqh_putu(reps);
  aqh_puts("\n");
  for (int32_t i = 0; i < {n_cases}; ++i) aqh_run(i);
  aqh_puts("END\n");
  for (;;) {{
  }}
}}
"""


def _array(ctype: str, name: str, values, comment: str = "") -> str:
    values = np.asarray(values).reshape(-1)
    note = f"/* {comment} */\n" if comment else ""
    return (f"{note}const {ctype} {name}[{max(len(values), 1)}] __attribute__((aligned(4))) = {{\n"
            f"{_c_values(values) if len(values) else '  0'}\n}};\n")


_CTYPES = {"int8_t": np.int8, "uint8_t": np.uint8, "int32_t": np.int32}


@dataclass
class _Prepared:
    """A case ready to render: its lowered call's arrays and TFLite's weights and bias for the
    peers (the same arrays when they agree)."""

    case: Case
    natural: np.ndarray                  # the weights in TFLite's layout

    @property
    def call(self) -> KernelCall:
        return self.case.call

    @property
    def variant(self) -> dispatch.Variant:
        return self.case.variant

    @property
    def lead(self) -> int | None:
        """Bytes the output may start below the input when the planner runs the call in place
        (KernelCall.inplace), rounded up to the arena's 8-byte alignment; None: never."""
        leads = [lead for tensor, lead in self.call.inplace if tensor == self.call.args[0]]
        return -(-leads[0] // 8) * 8 if leads else None

    def array(self, arg: int) -> np.ndarray | None:
        """The values of the call's argument `arg` (1: weights, 2: bias), None for "0"."""
        name = self.call.args[arg]
        found = [a for a in self.call.arrays if a.name == name]
        return np.asarray(found[0].values).astype(_CTYPES[found[0].ctype]) if found else None

    @functools.cached_property
    def same_weights(self) -> bool:
        w = self.array(1)
        return w is not None and w.dtype == self.natural.dtype and np.array_equal(w, self.natural)

    @functools.cached_property
    def same_bias(self) -> bool:
        b, c = self.array(2), self.case.bias
        return (b is None and c is None) or (b is not None and c is not None and
                                             len(b) == len(c) and np.array_equal(b, c))

    @property
    def flash_bytes(self) -> int:
        arrays = sum(np.asarray(a.values).size * np.dtype(_CTYPES[a.ctype]).itemsize
                     for a in self.call.arrays)
        return self.case.input.size + arrays + self.natural.size + 4 * self.case.out_c + 256


def prepare(case: Case) -> _Prepared:
    """Check the case's lowered call (the aq kernel signature: params, input, weights, bias,
    output) and add TFLite's weight layout for the peers."""
    call = case.call
    if call is None or len(call.args) != 4 or call.kernel is None:
        raise HarnessError(f"{case.kind} {case.label} was not lowered to one MAC kernel call")
    want = "uint8_t" if case.s4 else "int8_t"
    weights = [a for a in call.arrays if a.name == call.args[1]]
    if not weights or weights[0].ctype != want:
        raise HarnessError(f"{case.kind} {case.label}: variant {case.variant.name} "
                           f"({call.kernel}) weights are not a {want} array")
    return _Prepared(case, case.natural_weights())


def _prefixed(value: Any, names: dict[str, str]) -> Any:
    """Array names in a parameter struct or argument replaced by their case-prefixed names."""
    if isinstance(value, dict):
        return {k: _prefixed(v, names) for k, v in value.items()}
    return names.get(value, value) if isinstance(value, str) else value


def _symbols(i: int, pc: _Prepared) -> dict[str, str]:
    """Case i's C symbols: each call array's name prefixed aqh_c<i>_ (by its lowered name),
    and "w", "bias" (the aq call's), "wn", "biasn" (TFLite's, for the peers), "mult", "shift"
    (NULL for an absent bias; a peer array is the call's when they agree)."""
    n = f"aqh_c{i}"
    names = {a.name: f"{n}_{a.name}" for a in pc.call.arrays}
    w, b = (_prefixed(a, names) for a in pc.call.args[1:3])
    q = pc.call.params["q"]
    return {**names, "w": w, "bias": "NULL" if b == "0" else b,
            "wn": w if pc.same_weights else f"{n}_wn",
            "biasn": "NULL" if pc.case.bias is None else (b if pc.same_bias else f"{n}_biasn"),
            "mult": names[q["multiplier"]], "shift": names[q["shift"]]}


def _case_data(i: int, pc: _Prepared) -> str:
    """Case i's arrays (the lowered call's, its input, TFLite's weights and bias for the peers
    unless the call's are the same) and its parameter struct."""
    c, sym = pc.case, _symbols(i, pc)
    text = [f"/* case {i}: {c.kind} {c.label}{' INT4' if c.s4 else ''}, variant "
            f"{pc.variant.name} ({pc.call.kernel}) */", _array("int8_t", f"aqh_c{i}_input", c.input)]
    text += [_array(a.ctype, sym[a.name], a.values, a.comment) for a in pc.call.arrays]
    if sym["wn"] != sym["w"]:
        text.append(_array("uint8_t" if c.s4 else "int8_t", sym["wn"], pc.natural,
                           "weights, TFLite layout (the peers')"))
    if sym["biasn"] not in ("NULL", sym["bias"]):
        text.append(_array("int32_t", sym["biasn"], c.bias, "bias, TFLite's (the peers')"))
    params = _prefixed(pc.call.params, {a.name: sym[a.name] for a in pc.call.arrays})
    text.append(f"const {_PARAM_TYPES[c.kind]} aqh_c{i}_p = {_c_struct(params)};\n")
    return "\n".join(text)


def _case_calls(i: int, pc: _Prepared, peer: str) -> str:
    """Case i's aq call (as model.c makes it) and its portable peer call."""
    c, sym, n = pc.case, _symbols(i, pc), f"aqh_c{i}"
    bias = "0" if sym["bias"] == "NULL" else sym["bias"]
    out = [f"static void {n}_aq(const int8_t *in, int8_t *out) {{\n"
           f"  {pc.call.kernel}(&{n}_p, in, {sym['w']}, {bias}, out);\n}}"]
    if peer == "portable":
        out.append(f"static void {n}_peer(const int8_t *in, int8_t *out) {{\n"
                   f"  aqh_ref_{c.kind}_{'s4' if c.s4 else 's8'}(&{n}_p, in, {sym['wn']}, "
                   f"{'0' if sym['biasn'] == 'NULL' else sym['biasn']}, out);\n}}")
    else:
        out.append(f"void {n}_peer(const int8_t *in, int8_t *out);")
    return "\n".join(out)


def _prototypes(prepared: list[_Prepared]) -> list[str]:
    """A declaration of every kernel called (a variant may not be in aq_kernels.h yet)."""
    seen: dict[str, str] = {}
    for pc in prepared:
        w = "uint8_t" if pc.case.s4 else "int8_t"
        seen[pc.call.kernel] = f"void {pc.call.kernel}({_SIGNATURES[pc.case.kind].format(w=w)});"
    return list(seen.values())


def _portable_peers(prepared: list[_Prepared]) -> list[str]:
    """The portable loop bodies, one out-of-line instance per kind and weight type used."""
    out = ["int32_t aqh_peer_status;", "int aqh_peer_init(int32_t index) { (void)index; return 0; }"]
    for kind, s4 in sorted({(pc.case.kind, pc.case.s4) for pc in prepared}):
        sig = _SIGNATURES[kind].format(w="void")
        name = f"aqh_ref_{kind}_{'s4' if s4 else 's8'}"
        out.append(f"static __attribute__((noinline)) void {name}({sig}) {{\n"
                   f"  {_IMPL[kind]}(p, input, filter, bias, output, {int(s4)}{', 0, 0' if kind == 'fully_connected' else ''});\n}}")
    return out


def render_harness(prepared: list[_Prepared], peer: str, target_ticks: int,
                   paint_bytes: int) -> str:
    """harness.c of one batch: every case's data and calls, the case table and the main."""
    head = ["/* Generated by tests/kernel_harness.py: aqedge kernels timed on the board and "
            f"checked against the {peer} peer. */",
            "#include <stdint.h>", "#include <string.h>", '#include "aq_board.h"',
            '#include "aq_kernels.h"', '#include "aq_mac_impl.h"', "",
            "typedef void (*aqh_fn)(const int8_t *input, int8_t *output);",
            "typedef struct {", "  aqh_fn aq, peer;", "  const int8_t *input;",
            "  uint32_t in_bytes, out_bytes;",
            "  uint32_t lead; /* output below input in place (lower.window_lead), or: */",
            "} aqh_case;", "#define AQH_NOT_INPLACE 0xFFFFFFFFu",
            "int aqh_peer_init(int32_t index); /* 0: the peer is ready for case `index` */",
            "extern int32_t aqh_peer_status;   /* a peer call's status: 0 = success */", "",
            *_prototypes(prepared), ""]
    if peer == "portable":
        head += _portable_peers(prepared)
    scratch = max([pc.call.variant.scratch_bytes for pc in prepared] + [4])
    head += [f"static int32_t aq_scratch[{-(-scratch // 4)}]; /* as model.c's */", ""]
    body = [_case_data(i, pc) + "\n" + _case_calls(i, pc, peer) for i, pc in enumerate(prepared)]
    table = ["static const aqh_case aqh_cases[] = {"] + [
        f"  {{aqh_c{i}_aq, aqh_c{i}_peer, aqh_c{i}_input, {pc.case.input.size}u, "
        f"{pc.case.out_bytes}u, {'AQH_NOT_INPLACE' if pc.lead is None else f'{pc.lead}u'}}},"
        for i, pc in enumerate(prepared)] + ["};"]
    main = _MAIN.format(guard=GUARD, paint_words=paint_bytes // 4,
                        in_bytes=max(pc.case.input.size for pc in prepared),
                        out_bytes=max(pc.case.out_bytes for pc in prepared),
                        io_bytes=max([8] + [max(pc.lead + pc.case.input.size, pc.case.out_bytes)
                                            for pc in prepared if pc.lead is not None]),
                        target_ticks=int(target_ticks), n_cases=len(prepared))
    return "\n".join(head + body + table) + "\n" + main


# ---- the CMSIS-NN peer ------------------------------------------------------------------------


def _tile(w: int, h: int) -> str:
    return f"{{.w = {w}, .h = {h}}}"


def _dims(n: int, h: int, w: int, c: int) -> str:
    return f"{{.n = {n}, .h = {h}, .w = {w}, .c = {c}}}"


def _cmsis_externs(sym: dict[str, str], s4: bool) -> str:
    """Declarations of the harness.c arrays a CMSIS-NN call reads."""
    out = [f"extern const {'uint8_t' if s4 else 'int8_t'} {sym['wn']}[];",
           f"extern const int32_t {sym['mult']}[], {sym['shift']}[];"]
    if sym["biasn"] != "NULL":
        out.append(f"extern const int32_t {sym['biasn']}[];")
    return "\n".join(out)


def _cmsis_activation(q: dict[str, Any]) -> str:
    return f".activation = {{.min = {q['act_min']}, .max = {q['act_max']}}}"


def _cmsis_conv(i: int, pc: _Prepared) -> tuple[str, str, str]:
    """(definitions, the call, the scratch size expression) of a conv or depthwise case."""
    c, n, p, q = pc.case, f"aqh_c{i}", pc.case.params, pc.case.q
    sym = _symbols(i, pc)
    sfx = "s4" if c.s4 else "s8"
    geo = (f".stride = {_tile(p['stride_w'], p['stride_h'])}, "
           f".padding = {_tile(p['pad_w'], p['pad_h'])}, "
           f".dilation = {_tile(p['dil_w'], p['dil_h'])}, {_cmsis_activation(q)}")
    offsets = f".input_offset = {q['input_offset']}, .output_offset = {q['output_offset']}"
    if c.kind == "conv":
        ptype, fn = "cmsis_nn_conv_params", f"arm_convolve_wrapper_{sfx}"
        params = f"{{{offsets}, {geo}}}"
        fdims = _dims(p["out_c"], p["k_h"], p["k_w"], p["filter_in_c"])
    else:
        ptype, fn = "cmsis_nn_dw_conv_params", f"arm_depthwise_conv_wrapper_{sfx}"
        params = f"{{{offsets}, .ch_mult = {p['depth_multiplier']}, {geo}}}"
        fdims = _dims(1, p["k_h"], p["k_w"], p["out_c"])
    defs = [f"static const {ptype} {n}_cp = {params};",
            f"static const cmsis_nn_per_channel_quant_params {n}_qp = "
            f"{{(int32_t *){sym['mult']}, (int32_t *){sym['shift']}}};",
            f"static const cmsis_nn_dims {n}_id = {_dims(1, p['in_h'], p['in_w'], p['in_c'])}, "
            f"{n}_fd = {fdims}, {n}_bd = {_dims(1, 1, 1, p['out_c'])}, "
            f"{n}_od = {_dims(1, p['out_h'], p['out_w'], p['out_c'])};"]
    call = (f"{fn}(&aqh_ctx, &{n}_cp, &{n}_qp, &{n}_id, in, &{n}_fd, (const int8_t *){sym['wn']}, "
            f"&{n}_bd, {sym['biasn']}, &{n}_od, out)")
    return "\n".join(defs), call, f"{fn}_get_buffer_size(&{n}_cp, &{n}_id, &{n}_fd, &{n}_od)"


def _cmsis_fc(i: int, pc: _Prepared) -> tuple[str, str, str]:
    """(definitions, the call, the scratch size expression) of a fully connected case."""
    c, n, p, q = pc.case, f"aqh_c{i}", pc.case.params, pc.case.q
    sym = _symbols(i, pc)
    if c.s4 and not c.per_tensor:
        raise HarnessError(f"CMSIS-NN has no per-channel INT4 fully connected ({c.label}): "
                           "make the case per-tensor")
    defs = [f"static const cmsis_nn_fc_params {n}_cp = {{.input_offset = {q['input_offset']}, "
            f".filter_offset = 0, .output_offset = {q['output_offset']}, {_cmsis_activation(q)}}};",
            f"static const cmsis_nn_dims {n}_id = {_dims(p['batches'], 1, 1, p['accum_depth'])}, "
            f"{n}_fd = {_dims(p['accum_depth'], 1, 1, p['out_c'])}, "
            f"{n}_bd = {_dims(1, 1, 1, p['out_c'])}, "
            f"{n}_od = {_dims(p['batches'], 1, 1, p['out_c'])};"]
    if c.per_tensor:
        fn = "arm_fully_connected_s4" if c.s4 else "arm_fully_connected_s8"
        defs.append(f"static const cmsis_nn_per_tensor_quant_params {n}_qp = "
                    f"{{{q['multiplier'][0]}, {q['shift'][0]}}};")
    else:
        fn = "arm_fully_connected_per_channel_s8"
        defs.append(f"static const cmsis_nn_per_channel_quant_params {n}_qp = "
                    f"{{(int32_t *){sym['mult']}, (int32_t *){sym['shift']}}};")
    call = (f"{fn}(&aqh_ctx, &{n}_cp, &{n}_qp, &{n}_id, in, &{n}_fd, (const int8_t *){sym['wn']}, "
            f"&{n}_bd, {sym['biasn']}, &{n}_od, out)")
    # TFLM's cmsis_nn/fully_connected.cc: no scratch for INT4; int8 kernel sums when asked for.
    size = "0" if c.s4 else f"arm_fully_connected_s8_get_buffer_size(&{n}_fd)"
    return "\n".join(defs), call, size


def _scratch_bound(c: Case) -> int:
    """More than any CMSIS-NN *_get_buffer_size of the case (checked again on the device)."""
    p = c.params
    if c.kind == "fully_connected":
        return 4 * p["out_c"] + 64
    taps = p["k_h"] * p["k_w"]
    return 4 * (taps * p["in_c"] + 4) + 2 * taps * p["out_c"] + 64


_CMSIS_INIT = r"""
/* Scratch (and kernel sums) for the current case, sized by its *_get_buffer_size, as TFLM's
 * Prepare asks for them; the kernel sums are computed here, outside the timed region. */
int aqh_peer_init(int32_t index) {
  int32_t size = 0;
  switch (index) {
%s
  default:
    break;
  }
  if (size > (int32_t)sizeof aqh_pool) return 1;
  aqh_ctx.buf = size > 0 ? (void *)aqh_pool : NULL;
  aqh_ctx.size = size;
  if (size > 0) memset(aqh_pool, 0, (size_t)size);
  switch (index) {
%s
  default:
    break;
  }
  return 0;
}
"""


def render_cmsis_peer(prepared: list[_Prepared]) -> str:
    """peer.c of one batch: every case as a CMSIS-NN call on its TFLite-layout weights."""
    pool = max(_scratch_bound(pc.case) for pc in prepared) + 1024
    out = ["/* Generated by tests/kernel_harness.py: the CMSIS-NN peer of each case. */",
           "#include <stddef.h>", "#include <stdint.h>", "#include <string.h>",
           '#include "arm_nnfunctions.h"', "",
           f"static int32_t aqh_pool[{(pool + 3) // 4}] __attribute__((aligned(8)));",
           "static cmsis_nn_context aqh_ctx;", "int32_t aqh_peer_status;", ""]
    sizes, sums = [], []
    for i, pc in enumerate(prepared):
        defs, call, size = (_cmsis_fc if pc.case.kind == "fully_connected" else _cmsis_conv)(i, pc)
        out += [_cmsis_externs(_symbols(i, pc), pc.case.s4), defs,
                f"void aqh_c{i}_peer(const int8_t *in, int8_t *out) {{\n"
                f"  aqh_peer_status = (int32_t){call};\n}}", ""]
        sizes.append(f"  case {i}:\n    size = {size};\n    break;")
        if pc.case.kind == "fully_connected" and not pc.case.s4:
            p, q, sym = pc.case.params, pc.case.q, _symbols(i, pc)
            sums.append(f"  case {i}:\n    if (size > 0)\n      arm_vector_sum_s8(aqh_pool, "
                        f"{p['accum_depth']}, {p['out_c']}, (const int8_t *){sym['wn']}, "
                        f"{q['input_offset']}, 0, {sym['biasn']});\n    break;")
    return "\n".join(out) + _CMSIS_INIT % ("\n".join(sizes), "\n".join(sums))


def cmsis_tree(tree: str | os.PathLike | None = None) -> tflm_lib.TflmTree:
    """The CMSIS-NN TFLite Micro tree: `tree`, else the one $TFLM_TREE names (itself, or the
    CMSIS-NN tree among those it holds)."""
    if tree:
        found = tflm_lib.open_tree(tree)
    else:
        trees = [t for t in tflm_lib.trees_from_env() if tflm_lib.tree_kind(t) == "cmsis-nn"]
        if not trees:
            raise AqError(f"no CMSIS-NN TFLite Micro tree: set {tflm_lib.TREE_ENV} to a tree made "
                          "with OPTIMIZED_KERNEL_DIR=cmsis_nn (or a folder holding one), or give "
                          "--tflm-tree")
        found = tflm_lib.open_tree(trees[0])
    if found.kind != "cmsis-nn":
        raise AqError(f"{found.root} is a TFLite Micro tree without CMSIS-NN "
                      "(no third_party/cmsis_nn/)")
    return found


def cmsis_library(tree: tflm_lib.TflmTree, board: Board, jobs: int = 2) -> Path:
    """The CMSIS-NN sources TFLM's CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED use, compiled
    with TFLM's flags for the board's core into a cached static library."""
    flags = tflm_lib.tflm_flags(board, tree)
    ops = ["AddConv2D", "AddDepthwiseConv2D", "AddFullyConnected"]
    sources = [s for s in tflm_lib.select_sources(tree, ops, flags).sources
               if s.startswith("third_party/cmsis_nn/Source/")]
    return tflm_lib.compile_library(tree, board, sources, jobs=jobs).archive


# ---- building and running ---------------------------------------------------------------------


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise HarnessError(f"{what} failed:\n{_tail(proc.stdout + proc.stderr)}")


def harness_board() -> Board:
    """qemu-mps2-an386 with all 4 MiB of RAM QEMU maps (the TOML declares a realistic 256 KiB)
    and a deep stack, so large layers fit and a kernel's stack is measured, not overflowed."""
    board, _ = resolve(BOARD)
    return dataclasses.replace(board, ram_bytes=HARNESS_RAM, stack_bytes=HARNESS_STACK)


@dataclass
class _Toolchain:
    """What every batch of one run_cases call links: the kernels and board files, compiled
    once from a snapshot of the runtime, and the CMSIS-NN peer's library and flags."""

    board: Board
    project: Path
    objects: list[Path]
    peer: str
    tree: tflm_lib.TflmTree | None = None
    cmsis_lib: Path | None = None

    @property
    def includes(self) -> list[str]:
        rt = self.project / "runtime" / "firmware"
        return [f"-I{rt / d}" for d in ("include", "board", "protocol")] + [f"-I{self.project}"]

    def cc(self, src: Path, obj: Path) -> list[str]:
        return [f"{CROSS}gcc", *self.board.cflags, *CFLAGS, *self.includes, "-c", str(src),
                "-o", str(obj)]


def _runtime_objects(board: Board, project: Path, work_dir: Path, jobs: int) -> list[Path]:
    """Compile the kernels (portable, each replaced by its Cortex-M port: runtime_sources) and
    the board files of the project's runtime copy; reused while that copy is unchanged."""
    sources = [s for s in runtime_sources(board, []) if "/kernels/" in s or "/board/" in s]
    h = hashlib.sha256(" ".join([*board.cflags, *CFLAGS]).encode())
    rt = project / "runtime" / "firmware"
    for path in sorted(p for p in rt.rglob("*") if p.is_file()):
        h.update(path.relative_to(rt).as_posix().encode() + b"\0" + path.read_bytes())
    out = work_dir / "objects" / h.hexdigest()[:16]
    objs = [out / (s.replace("/", "__")[:-2] + ".o") for s in sources]
    tc = _Toolchain(board, project, [], "portable")
    todo = [(project / s, o) for s, o in zip(sources, objs) if not o.is_file()]

    def one(job: tuple[Path, Path]) -> None:
        src, obj = job
        tmp = obj.with_suffix(".tmp.o")
        _run(tc.cc(src, tmp), f"compiling {src.relative_to(project)}")
        os.replace(tmp, obj)

    out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(one, todo))
    return objs


def _toolchain(work_dir: Path, peer: str, tflm_tree, jobs: int) -> _Toolchain:
    board = harness_board()
    project = work_dir / "project"
    write_project(board, project, ["harness.c"], rx_max_for_input(0))
    objects = _runtime_objects(board, project, work_dir, jobs)
    if peer != "cmsis-nn":
        return _Toolchain(board, project, objects, peer)
    tree = cmsis_tree(tflm_tree)
    return _Toolchain(board, project, objects, peer, tree, cmsis_library(tree, board, jobs))


def _build(tc: _Toolchain, out: Path, prepared: list[_Prepared], target_ticks: int) -> Path:
    """Compile and link one batch; returns the ELF."""
    out.mkdir(parents=True, exist_ok=True)
    paint = min(256 << 10, (16 << 10) + 16 * max(pc.case.taps * 4 for pc in prepared))
    (out / "harness.c").write_text(render_harness(prepared, tc.peer, target_ticks, paint & ~7))
    _run(tc.cc(out / "harness.c", out / "harness.o"), "compiling harness.c")
    objs = [out / "harness.o"]
    if tc.peer == "cmsis-nn":
        (out / "peer.c").write_text(render_cmsis_peer(prepared))
        flags = tflm_lib.tflm_flags(tc.board, tc.tree)
        _run([f"{CROSS}gcc", *flags.command("c"), "-c", str(out / "peer.c"),
              "-o", str(out / "peer.o")], "compiling the CMSIS-NN peer (peer.c)", cwd=tc.tree.root)
        objs.append(out / "peer.o")
    elf = out / "harness.elf"
    libs = [str(tc.cmsis_lib)] if tc.cmsis_lib else []
    _run([f"{CROSS}gcc", *tc.board.cflags, "--specs=nano.specs", "-nostartfiles",
          "-Wl,--gc-sections", f"-Wl,-Map={out / 'harness.map'}",
          "-T", str(tc.project / "linker.ld"), "-o", str(elf),
          *map(str, objs), *map(str, tc.objects), *libs, "-lm"], "linking harness.elf")
    return elf


def _qemu_command(board: Board, elf: Path) -> list[str]:
    q = board.qemu
    return [str(q.get("system", "qemu-system-arm")), "-machine", str(q["machine"]), "-nographic",
            "-monitor", "none", "-icount", f"shift={int(q.get('icount_shift', 0))}",
            "-serial", "stdio", "-kernel", str(elf)]


def run_qemu(board: Board, elf: Path, timeout: float,
             on_line: Callable[[str], None] | None = None) -> list[str]:
    """Boot `elf` in QEMU and return its UART lines up to END (QEMU is killed then).

    Raises:
        HarnessError: a timeout, QEMU exiting first, or a fault (with the last lines).
    """
    proc = subprocess.Popen(_qemu_command(board, elf), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace")
    lines: list[str] = []
    done = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line.rstrip("\r\n"))
            if on_line:
                on_line(lines[-1])
            if line.startswith("END"):
                break
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    finished = done.wait(timeout)
    proc.kill()
    proc.wait()
    reader.join(5)
    proc.stdout.close()
    tail = "\n".join(lines[-15:])
    if not finished:
        raise HarnessError(f"QEMU timed out after {timeout:.0f} s on {elf}; last lines:\n{tail}")
    if not lines or not lines[-1].startswith("END"):
        raise HarnessError(f"QEMU exited (code {proc.returncode}) before END on {elf}:\n{tail}")
    if lines[-1] != "END":
        raise HarnessError(f"{_fault_text(elf, lines)} ({elf}); last lines:\n{tail}")
    return lines


def _fault_text(elf: Path, lines: list[str]) -> str:
    """'HardFault in case 3 at 0x... (aq_conv_s8 at file:line)'."""
    fault = next((ln for ln in reversed(lines) if ln.startswith("FAULT")), "")
    parts = fault.split()
    if len(parts) < 7:
        return "the board faulted"
    pc = int(parts[4])
    where = subprocess.run([f"{CROSS}addr2line", "-f", "-e", str(elf), hex(pc)],
                           capture_output=True, text=True, check=False).stdout.split()
    return (f"HardFault in case {parts[2]} at {pc:#x} ({' at '.join(where) or '?'}, "
            f"CFSR {int(parts[6]):#x})")


# ---- results ----------------------------------------------------------------------------------


@dataclass
class Result:
    """One case as it ran on the board."""

    case: Case
    variant: str                 # dispatch's label ("generic", "pointwise", ...)
    kernel: str                  # the C function called
    aq_instructions: float       # per call
    peer_instructions: float     # per call
    bit_exact: bool
    mismatch: str | None         # the first difference (or what else went wrong)
    aq_stack_bytes: int          # deepest stack the aq call used (about: plus the timing call)
    aq_reps: int
    peer_reps: int

    @property
    def ratio(self) -> float:
        """aqedge's instructions over the peer's."""
        return self.aq_instructions / self.peer_instructions if self.peer_instructions else math.inf


_FLAGS = {1: "aqedge wrote past its output", 2: "aqedge wrote into its input",
          4: "the peer wrote past its output", 8: "the peer's scratch did not fit"}


def _describe(c: Case, f: list[int], peer: str, lead: int | None) -> str | None:
    """The first mismatch of a case line's fields, or what else went wrong."""
    problems = [text for bit, text in _FLAGS.items() if f[1] & bit]
    if f[12]:
        problems.append(f"in place (output {lead} bytes below the input) {f[12]} of {c.out_bytes} "
                        f"output bytes differ from out of place; first: byte {f[13]}")
    if f[11]:
        problems.append(f"the peer returned status {f[11] - (1 << 32) if f[11] >> 31 else f[11]}")
    if f[6]:
        at = f[7]
        where = f"batch {at // (c.out_bytes // c.params.get('batches', 1) or 1)}" \
            if c.kind == "fully_connected" else f"pixel {at // c.out_c}"
        sb = lambda v: v - 256 if v > 127 else v  # noqa: E731
        problems.append(f"{f[6]} of {c.out_bytes} output bytes differ; first: byte {at} ({where}, "
                        f"channel {at % c.out_c}): aqedge {sb(f[8])}, {peer} {sb(f[9])}")
    return "; ".join(problems) or None


def _parse(lines: list[str], batch: list[_Prepared], board: Board, peer: str) -> list[Result]:
    """The Results of one batch from its UART lines."""
    ns = board.ticks_to_latency(1_000_000) / 1e6
    over = next(ln for ln in lines if ln.startswith("OVERHEAD")).split()
    o1, on, n = int(over[1]), int(over[2]), int(over[3])

    def per_call(ticks: int, reps: int) -> float:
        overhead = o1 if reps == 1 else on * reps / n
        return round(max(ticks - overhead, 0) * ns / max(reps, 1), 1)

    rows = {int(ln.split()[1]): [int(v) for v in ln.split()[1:]]
            for ln in lines if ln.startswith("C ")}
    missing = [i for i in range(len(batch)) if i not in rows]
    if missing:
        raise HarnessError(f"no result line for cases {missing[:10]}:\n" + "\n".join(lines[-10:]))
    out = []
    for i, pc in enumerate(batch):
        f = rows[i]
        problem = _describe(pc.case, f, peer, pc.lead)
        out.append(Result(pc.case, pc.variant.name, pc.variant.kernel, per_call(f[2], f[3]),
                          per_call(f[4], f[5]), problem is None, problem, f[10], f[3], f[5]))
    return out


# ---- batches ----------------------------------------------------------------------------------


def _estimate(pc: _Prepared, peer: str, min_instructions: int) -> int:
    """Rough instructions a case takes on the board (one call and the repetitions, both sides)."""
    macs = pc.case.macs
    total = 0
    for per_mac in (3, 12 if peer == "portable" else 3):
        once = per_mac * macs + 5000
        total += once + (max(once, min_instructions) if once < min_instructions else 0)
    return total + pc.case.taps * 64


def _ram(batch: list[_Prepared]) -> int:
    return (max(pc.case.input.size for pc in batch) + 2 * max(pc.case.out_bytes for pc in batch)
            + max(_scratch_bound(pc.case) for pc in batch))


def _batches(prepared: list[_Prepared], peer: str, min_instructions: int) -> list[list[_Prepared]]:
    """Consecutive cases grouped so each image fits the flash and RAM and each run stays short."""
    batches: list[list[_Prepared]] = []
    cur: list[_Prepared] = []
    flash = instr = 0
    for pc in prepared:
        if pc.flash_bytes > BATCH_FLASH or _ram([pc]) > BATCH_RAM:
            raise HarnessError(f"{pc.case.kind} {pc.case.label} does not fit the harness image "
                               f"({pc.flash_bytes:,} B of arrays, {_ram([pc]):,} B of buffers)")
        est = _estimate(pc, peer, min_instructions)
        if cur and (flash + pc.flash_bytes > BATCH_FLASH or _ram(cur + [pc]) > BATCH_RAM
                    or len(cur) >= BATCH_CASES or instr + est > BATCH_INSTRUCTIONS):
            batches.append(cur)
            cur, flash, instr = [], 0, 0
        cur.append(pc)
        flash += pc.flash_bytes
        instr += est
    return batches + ([cur] if cur else [])


def run_cases(cases: list[Case], peer: str, work_dir: Path, *, jobs: int = 2,
              min_instructions: int = 100_000, tflm_tree: str | os.PathLike | None = None,
              timeout: float | None = None,
              progress: Callable[[Case], None] | None = None) -> list[Result]:
    """Run every case on the emulated board with its aq variant and `peer` ("portable" or
    "cmsis-nn"), in batches (`jobs` at a time: build one while another runs).

    min_instructions: a call shorter than this is repeated until the timed region is longer
        (0: time the single call only, as the fuzz does).
    progress: called with each case as its result line arrives.
    Returns the results in the order of `cases`.

    Raises:
        HarnessError: a batch failed to compile, link or run (a timeout, a HardFault).
        AqError: no CMSIS-NN tree for the "cmsis-nn" peer.
    """
    if peer not in PEERS:
        raise ValueError(f"peer {peer!r} is not one of {', '.join(PEERS)}")
    work_dir = Path(work_dir).resolve()
    prepared = [prepare(c) for c in cases]
    if not prepared:
        return []
    tc = _toolchain(work_dir, peer, tflm_tree, jobs)
    for old in work_dir.glob("batch-[0-9][0-9][0-9]"):   # an earlier run's batches
        shutil.rmtree(old)
    ticks = math.ceil(min_instructions / (tc.board.ticks_to_latency(1_000_000) / 1e6))
    batches = _batches(prepared, peer, min_instructions)

    def one(k: int, batch: list[_Prepared]) -> list[Result]:
        elf = _build(tc, work_dir / f"batch-{k:03d}", batch, ticks)
        limit = timeout or 120 + sum(_estimate(pc, peer, min_instructions) for pc in batch) / 20e6

        def seen(line: str) -> None:
            if progress and line.startswith("C "):
                progress(batch[int(line.split()[1])].case)

        return _parse(run_qemu(tc.board, elf, limit, seen), batch, tc.board, peer)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(one, k, b) for k, b in enumerate(batches)]
        try:
            return [r for fut in futures for r in fut.result()]
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
