"""The emulated Arm MPS2+ AN386 (Cortex-M4F, CMSDK UART) end to end, and the Cortex-M kernel
ports (firmware/kernels/cortex-m/) bit-exact with TFLite Micro on int8 and INT4 models."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aqedge.boards import resolve
from aqedge.codegen.build import build
from aqedge.harness.session import metrics, run_session

from conftest import MLPERF_TINY, int4_variant

pytestmark = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
    reason="needs arm-none-eabi-gcc and qemu-system-arm",
)


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
def test_kws_bit_exact_on_mps2(int4, tmp_path):
    """DS-CNN (conv, depthwise, 1x1 conv, pool, fully connected) with the Cortex-M kernels."""
    model = MLPERF_TINY / "kws_dscnn_int8.tflite"
    if int4:
        path = tmp_path / "kws_int4.tflite"
        path.write_bytes(int4_variant(model.read_bytes()))
        model = path
    m = _measure(model, "qemu-mps2-an386", tmp_path / "fw", 4)
    assert m["samples"] == 4 and not m["failed_samples"]
    assert m["device_matches_reference"] == 1.0
    assert m["latency"]["unit"] == "instructions"
    # Portable kernels: 39.3 M instructions; TFLite Micro + CMSIS-NN: 7.7 M.
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
