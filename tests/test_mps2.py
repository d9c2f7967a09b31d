"""The emulated Arm MPS2+ AN386 (Cortex-M4F, CMSDK UART) end to end, and the Cortex-M kernel
ports (firmware/kernels/cortex-m/) bit-exact with TFLite Micro on int8 and INT4 models."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from aqedge.boards import resolve
from aqedge.codegen.build import build
from aqedge.harness.session import metrics, run_session

from conftest import KWS, int4_variant

# arm-none-eabi-gcc and qemu-system-arm are required (make setup installs them): no skips.


def test_board_picks_cortex_m_kernels():
    board, _ = resolve("qemu-mps2-an386")
    assert board.core == "cortex-m4" and board.optimized == "cortex-m"
    assert board.uart["driver"] == "cmsdk" and board.qemu["machine"] == "mps2-an386"
    assert resolve("mps2")[0].name == board.name


def _measure(model: Path, board_name: str, out: Path, samples: int) -> dict:
    board, _ = resolve(board_name)
    build(model, board, out)
    makefile = (out / "Makefile").read_text()
    assert "kernels/cortex-m/" in makefile
    return metrics(run_session(board, out, "random", samples, seed=5))


@pytest.mark.parametrize("int4", [False, True], ids=["int8", "int4"])
def test_kws_bit_exact_on_mps2(int4, tiny, tmp_path):
    """DS-CNN (conv, depthwise, 1x1 conv, pool, fully connected) with the Cortex-M kernels."""
    model = tiny[KWS]
    if int4:
        path = tmp_path / "kws_int4.tflite"
        path.write_bytes(int4_variant(model.read_bytes()))
        model = path
    m = _measure(model, "qemu-mps2-an386", tmp_path / "fw", 4)
    assert m["samples"] == 4 and not m["failed_samples"]
    assert m["device_matches_reference"] == 1.0
    assert m["latency"]["unit"] == "instructions"
    # Portable kernels: 39.3 M instructions; TFLite Micro + CMSIS-NN: 7.7 M. The count follows
    # the architecture (the rebuilt DS-CNN's is within 0.1 % of the real file's): one bound.
    assert m["latency"]["median"] < (6_000_000 if int4 else 5_400_000)


def test_odd_shapes_fall_back_bit_exact(odd_model, tmp_path):
    """Odd weight counts (INT4 rows starting mid-byte, K % 4 tails) on the Cortex-M build."""
    path = tmp_path / "odd_int4.tflite"
    path.write_bytes(int4_variant(odd_model.read_bytes()))
    for i, model in enumerate((odd_model, path)):
        m = _measure(model, "qemu-mps2-an386", tmp_path / f"fw{i}", 3)
        assert m["device_matches_reference"] == 1.0 and not m["failed_samples"]


def _depthwise3x3_model(seed: int, channels: int, branches: int = 8) -> bytes:
    """Branches of 3x3 depthwise convs on one input (the Cortex-M 3x3 path and its edges:
    strides, row dilation, SAME/VALID, fused activations, per-tensor scales), flattened and
    concatenated like the fuzz suite's models."""
    import numpy as np
    import test_ops_fuzz as fz

    rng = np.random.default_rng(seed)
    spec = fz.Spec((1, int(rng.integers(3, 9)), int(rng.integers(3, 8)), channels),
                   fz._log_uniform(rng, 2e-3, 0.5), fz._zp(rng))
    m = fz.ModelWriter()
    x = m.tensor(spec.shape, "int8", spec.scale, spec.zero_point)
    flats, total = [], 0
    _, h, w, c = spec.shape
    for b in range(branches):
        sh, sw, dh = int(rng.integers(1, 3)), int(rng.integers(1, 3)), 1 + (b % 4 == 3)
        dw = 2 if b == branches - 1 else 1          # the last one takes the generic table path
        padding = int(rng.integers(0, 2))
        oh, ow = fz._out_hw(padding, h, 3, sh, dh), fz._out_hw(padding, w, 3, sw, dw)
        if oh < 1 or ow < 1:
            padding, oh, ow = 0, fz._out_hw(0, h, 3, sh, dh), fz._out_hw(0, w, 3, sw, dw)
        wt, ws = fz._weights(rng, (1, 3, 3, c), 3, rng.random() < 0.8)
        osc, ozp = fz._mac_output_quant(rng, spec.scale, ws, 9)
        bias = fz._bias(rng, spec.scale, ws, c, 9)
        bias = np.zeros(c, np.int32) if bias is None else bias
        ins = [x, m.tensor(wt.shape, "int8", ws, np.zeros(len(ws), int), wt, qdim=3),
               m.tensor((c,), "int32", (np.float32(spec.scale) * ws).astype(np.float32),
                        np.zeros(len(ws), int), bias)]
        y = m.tensor((1, oh, ow, c), "int8", osc, ozp)
        m.op("DEPTHWISE_CONV_2D", ins, [y],
             m.options("DepthwiseConv2DOptionsT", padding=padding, strideH=sh, strideW=sw,
                       depthMultiplier=1, dilationHFactor=dh, dilationWFactor=dw,
                       fusedActivationFunction=int(rng.choice(fz.ACTS))), "DepthwiseConv2DOptions")
        n = oh * ow * c
        flat = m.tensor((1, n), "int8", 1.0, 0)
        shape_t = m.tensor((2,), "int32", data=np.array([1, n], np.int32))
        m.op("RESHAPE", [y, shape_t], [flat], m.options("ReshapeOptionsT", newShape=[1, n]),
             "ReshapeOptions")
        flats.append(flat)
        total += n
    out = m.tensor((1, total), "int8", 1.0, 0)
    m.op("CONCATENATION", flats, [out], m.options("ConcatenationOptionsT", axis=1),
         "ConcatenationOptions")
    return m.finish([x], [out])


@pytest.mark.parametrize("channels,int4", [(12, False), (64, True)], ids=["c12-int8", "c64-int4"])
def test_depthwise_3x3_fast_path_bit_exact_on_mps2(channels, int4, tmp_path):
    """The 3x3 depthwise path (zero-point-filled edge windows, input offset folded into the
    bias) on random geometries and quantizations, against TFLite Micro on the device."""
    model = _depthwise3x3_model(11 + channels, channels)
    if int4:
        model = int4_variant(model)
    path = tmp_path / "dw3.tflite"
    path.write_bytes(model)
    m = _measure(path, "qemu-mps2-an386", tmp_path / "fw", 3)
    assert m["device_matches_reference"] == 1.0 and not m["failed_samples"]


def test_kws_bit_exact_on_mps2_an500_cortex_m7(tiny, tmp_path):
    """The Cortex-M7 (QEMU mps2-an500, double-precision FPv5, I/D caches enabled at reset) runs
    the same AN386-layout image end to end, Cortex-M kernels included, bit-exact with TFLite Micro."""
    board, _ = resolve("qemu-mps2-an500")
    assert board.core == "cortex-m7" and board.optimized == "cortex-m"
    assert "-mcpu=cortex-m7" in board.cflags and "-mfpu=fpv5-d16" in board.cflags
    out = tmp_path / "fw"
    m = _measure(tiny[KWS], "qemu-mps2-an500", out, 3)
    assert m["samples"] == 3 and not m["failed_samples"]
    assert m["device_matches_reference"] == 1.0
    assert m["latency"]["unit"] == "instructions"
    assert "#define AQ_CORE_CORTEX_M7 1" in (out / "board_config.h").read_text()
    symbols = subprocess.run(["arm-none-eabi-nm", str(out / "firmware.elf")], capture_output=True,
                             text=True, check=True).stdout
    assert " aq_cm7_cache_enable" in symbols  # the I/D cache bring-up ran before main


def _narrow_clamp_model(seed: int, shape: tuple[int, int, int], branches: list[tuple]) -> bytes:
    """CONV_2D / FULLY_CONNECTED branches (INT4 or int8 weights) on one input, each with an
    output clamp: "w4" is the 4-bit activation range [-8, 7] (zero point -8, RELU, MINIMUM 7,
    as the W4A4 converter emits), "full" none beyond int8, "left" none with an output scale
    small enough that some channels requantize with a left shift, "rand" random MINIMUM /
    MAXIMUM constants. Branch: ("conv", kh, kw, padding, oc, int4, clamp, bias) or
    ("fc", depth or None for all, out, int4, clamp, bias)."""
    import numpy as np
    import test_ops_fuzz as fz

    rng = np.random.default_rng(seed)
    spec = fz.Spec((1, *shape), fz._log_uniform(rng, 2e-3, 0.5), fz._zp(rng))
    m = fz.ModelWriter()
    x = m.tensor(spec.shape, "int8", spec.scale, spec.zero_point)
    _, h, w, c = spec.shape
    flats, total = [], 0
    for br in branches:
        if br[0] == "conv":
            _, kh, kw, padding, oc, int4, clamp, has_bias = br
            oh, ow = fz._out_hw(padding, h, kh, 1, 1), fz._out_hw(padding, w, kw, 1, 1)
            wt, ws = fz._weights(rng, (oc, kh, kw, c), 0, rng.random() < 0.8, int4)
            fan_in, out_shape = kh * kw * c, (1, oh, ow, oc)
        else:
            _, depth, oc, int4, clamp, has_bias = br
            depth = depth or h * w * c
            wt, ws = fz._weights(rng, (oc, depth), 0, False, int4)
            fan_in, out_shape = depth, ((h * w * c) // depth, oc)
        osc, ozp = fz._mac_output_quant(rng, spec.scale, ws, fan_in)
        if clamp == "w4":
            osc, ozp = float(np.float32(osc / 8)), -8   # spread the outputs over the 16 codes
        elif clamp == "left":   # multipliers near or above 1: left shifts in some channels,
            osc = float(np.float32(osc / 128))   # on sparse +-1 weights that keep sums small
            wt = np.where(rng.random(wt.shape) < 0.2, np.sign(wt), 0).astype(wt.dtype)
        ins = [x, m.tensor(wt.shape, "int4" if int4 else "int8", ws, np.zeros(len(ws), int), wt,
                           qdim=0)]
        if has_bias:
            spread = 16.0 if clamp == "left" else 74.0 * 74.0 * np.sqrt(fan_in)
            bias = rng.normal(0, spread, oc).round().astype(np.int32)
            ins.append(m.tensor((oc,), "int32", (np.float32(spec.scale) * ws).astype(np.float32),
                                np.zeros(len(ws), int), bias))
        else:
            ins.append(-1)
        act = 1 if clamp == "w4" else 0
        y = m.tensor(out_shape, "int8", osc, ozp)
        if br[0] == "conv":
            m.op("CONV_2D", ins, [y], m.options("Conv2DOptionsT", padding=padding, strideH=1,
                                                strideW=1, dilationHFactor=1, dilationWFactor=1,
                                                fusedActivationFunction=act), "Conv2DOptions")
        else:
            m.op("FULLY_CONNECTED", ins, [y],
                 m.options("FullyConnectedOptionsT", fusedActivationFunction=act,
                           keepNumDims=False), "FullyConnectedOptions")
        consts = {"w4": [("MINIMUM", 7)], "full": [], "left": [],
                  "rand": [("MINIMUM", int(rng.integers(-20, 60))), ("MAXIMUM", int(rng.integers(-90, -30)))]}[clamp]
        for name, v in consts:
            k = m.tensor((), "int8", osc, ozp, np.array(v, np.int8))
            z = m.tensor(out_shape, "int8", osc, ozp)
            m.op(name, [y, k], [z])
            y = z
        n = int(np.prod(out_shape))
        flat = m.tensor((1, n), "int8", 1.0, 0)
        shape_t = m.tensor((2,), "int32", data=np.array([1, n], np.int32))
        m.op("RESHAPE", [y, shape_t], [flat], m.options("ReshapeOptionsT", newShape=[1, n]),
             "ReshapeOptions")
        flats.append(flat)
        total += n
    out = m.tensor((1, total), "int8", 1.0, 0)
    m.op("CONCATENATION", flats, [out], m.options("ConcatenationOptionsT", axis=1),
         "ConcatenationOptions")
    return m.finish([x], [out])


NARROW_CLAMP_CASES = {
    # 16 input channels: INT4 rows of K = 16 .. 256 take the x4096 lanes (K = 256 is the bound
    # at the largest input offset), the int8 ones the 4-pixel SSAT #4 path; 7x6 = 42 pixels
    # leave a 2-pixel remainder for the general path; FC batch 1 (K = 672) takes the x16 lanes.
    "c16": ((6, 7, 16), [("conv", 3, 3, 0, 8, True, "w4", True), ("conv", 1, 1, 1, 5, True, "full", True),
                         ("conv", 4, 4, 1, 4, True, "w4", True), ("conv", 3, 3, 0, 6, False, "w4", True),
                         ("conv", 1, 2, 1, 3, True, "rand", True), ("conv", 3, 1, 0, 4, True, "w4", False),
                         ("fc", None, 12, True, "w4", True), ("fc", 16, 7, True, "w4", True),
                         ("fc", None, 9, False, "w4", True), ("conv", 1, 1, 0, 3, False, "rand", True)]),
    # 64 input channels: K = 576 (3x3) takes the x16 lanes with the 4-bit clamp, K = 192 (1x3)
    # the x4096 lanes at ordinary offsets.
    "c64": ((5, 4, 64), [("conv", 3, 3, 0, 6, True, "w4", True), ("conv", 1, 3, 0, 5, True, "w4", True),
                         ("conv", 2, 2, 1, 4, True, "full", True), ("fc", 64, 6, True, "w4", True)]),
    # 6 input channels: INT4 rows with a K % 8 tail (K = 54, 6) and the K = 9 first-layer shape.
    "c6": ((7, 5, 6), [("conv", 3, 3, 0, 5, True, "w4", True), ("conv", 1, 1, 0, 4, True, "w4", True),
                       ("conv", 3, 3, 1, 7, False, "w4", True), ("fc", 6, 5, True, "rand", True)]),
    # 10 input channels: INT4 tails of 2 (K = 10, 90) and 4 (K = 20) on the 4-pixel common path
    # (8x4 = 32 pixels) and the general one (no bias, a random clamp), an int8 tail of 2, and
    # the common path with left shifts in some channels (INT4 and int8).
    "c10": ((8, 4, 10), [("conv", 1, 1, 0, 6, True, "full", True), ("conv", 1, 2, 1, 5, True, "w4", True),
                         ("conv", 3, 3, 1, 4, True, "full", True), ("conv", 1, 1, 0, 3, True, "rand", False),
                         ("conv", 1, 1, 0, 5, False, "full", True), ("fc", 10, 4, True, "w4", True),
                         ("conv", 1, 1, 0, 8, True, "left", True), ("conv", 1, 2, 1, 8, True, "left", True),
                         ("conv", 1, 1, 0, 8, False, "left", True)]),
}


@pytest.mark.parametrize("case", list(NARROW_CLAMP_CASES))
def test_narrow_clamp_int4_fast_paths_bit_exact_on_mps2(case, tmp_path):
    """The 4-bit activation clamp ([-8, 7], SSAT #4) on every conv / FC path (4-pixel common
    and general, INT4 x4096 and x16 lanes, K % chunk tails) and random narrow clamps, INT4 and
    int8 weights, against TFLite Micro on the device."""
    shape, branches = NARROW_CLAMP_CASES[case]
    path = tmp_path / "narrow.tflite"
    path.write_bytes(_narrow_clamp_model(7 + len(branches), shape, branches))
    m = _measure(path, "qemu-mps2-an386", tmp_path / "fw", 3)
    assert m["samples"] == 3 and not m["failed_samples"]
    assert m["device_matches_reference"] == 1.0
