"""The whole pipeline on real parts: TF-trained model -> TFLite -> arm-none-eabi-gcc -> QEMU
STM32F405 -> pyserial, every device output compared with TFLite Micro on the host."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from aqedge.boards import resolve
from aqedge.codegen.build import build
from aqedge.harness.session import metrics, run_session

from conftest import KWS, RESNET8


def test_fashion_cnn_on_emulated_stm32(int8_model, tmp_path):
    board, _ = resolve("stm32")
    info = build(int8_model, board, tmp_path / "fw")
    assert info.flash_bytes < board.flash_bytes and info.ram_bytes < board.ram_bytes
    session = run_session(board, tmp_path / "fw", "fashion-mnist", 60)
    m = metrics(session)
    assert m["samples"] == 60 and m["failed_samples"] == []
    assert m["device_matches_reference"] == 1.0
    assert m["accuracy"] == m["reference_accuracy"]
    assert m["accuracy"] > 0.6
    lat = m["latency"]
    assert lat["unit"] == "instructions"
    assert 100_000 < lat["min"] <= lat["median"] <= lat["p95"] <= lat["max"] < 50_000_000
    for key in ("board", "emulated", "model_sha256", "samples", "correct", "accuracy",
                "device_matches_reference", "latency", "clock_hz", "flash_bytes", "ram_bytes",
                "arena_bytes", "failed_samples"):
        assert key in m


@pytest.mark.parametrize("model", [KWS, RESNET8])
def test_mlperf_tiny_on_emulated_stm32_random_inputs(model, tiny, tmp_path):
    """Models nobody here wrote, on the device through the CLI, bit-exact on 20 seeded inputs."""
    board, _ = resolve("qemu-stm32f405")
    out = tmp_path / "fw"
    result = subprocess.run(
        [sys.executable, "-m", "aqedge.cli", "build", "--board", board.name, "--model",
         str(tiny[model]), "-o", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "aqedge.cli", "measure", "--board", board.name, str(out),
         "--dataset", "random", "--samples", "20", "--seed", "3", "-o", str(out / "metrics.json")],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["device_matches_reference"] == 1.0 and m["samples"] == 20 and not m["failed_samples"]
    assert m["accuracy"] is None
    assert np.isfinite(m["latency"]["median"])


def test_w4a4_through_the_cli_on_emulated_stm32(tmp_path):
    """quantize -> convert -> inspect -> build -> measure: an adaptive W4A4 model (INT4 weights,
    4-bit activations, one layer kept at 8 bits with --layer-bits) bit-exact on the device."""
    import keras

    import aqedge.qat  # noqa: F401  (registers the quantized layers for load_model)
    from aqedge import datasets, example

    x, y = datasets.load("fashion-mnist", "train")
    float_model = example.train_float(x[:3000], y[:3000], epochs=1, seed=0)
    float_model.save(tmp_path / "float.keras")
    hidden = [lay.name for lay in float_model.layers if isinstance(lay, keras.layers.Dense)][0]

    def cli(*args):
        result = subprocess.run([sys.executable, "-m", "aqedge.cli", *map(str, args)],
                                capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    out = cli("quantize", "float.keras", "--epochs", "1", "--limit", "2000", "--first-last-bits", "4",
              "--distill", "0.5", "--layer-bits", f"{hidden}=8", "--lr", "1e-3", "-o", "qat.keras")
    assert "epoch 1/1" in out
    qat = keras.models.load_model(tmp_path / "qat.keras")
    schedule = qat.optimizer.get_config()["learning_rate"]["config"]
    assert schedule["initial_learning_rate"] == pytest.approx(1e-3)
    cli("convert", "qat.keras", "-o", "w4a4.tflite")
    shown = cli("inspect", "w4a4.tflite")
    assert "int4" in shown and "TFLite Micro arena bytes" in shown
    cli("build", "--board", "stm32", "--model", "w4a4.tflite", "-o", "fw")
    model_c = (tmp_path / "fw" / "model.c").read_text()
    assert "aq_conv_s4(" in model_c and "aq_fully_connected_matvec_s4(" in model_c
    assert "aq_fully_connected_matvec_s8(" in model_c   # the hidden Dense, kept at 8 bits
    assert "folded into the producer's output clamp" in model_c
    cli("measure", "--board", "stm32", "fw", "--samples", "50", "-o", "metrics.json")
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["device_matches_reference"] == 1.0 and m["samples"] == 50
    assert m["accuracy"] == m["reference_accuracy"] > 0.5


def test_three_and_two_bit_activations_through_the_cli_on_emulated_stm32(tmp_path):
    """Below 4 bits: `--activation-bits 3` with the second conv at 2 bits (`--layer-bits`):
    the converter's clamps hold 8 and 4 codes, `inspect` shows each tensor's level count, the
    firmware folds the clamps like at 4 bits and the device equals TFLite Micro."""
    from aqedge import datasets, example
    from aqedge.convert import inspect_tflite

    x, y = datasets.load("fashion-mnist", "train")
    float_model = example.train_float(x[:2000], y[:2000], epochs=1, seed=0)
    float_model.save(tmp_path / "float.keras")
    second_conv = [lay.name for lay in float_model.layers if "Conv2D" in type(lay).__name__][1]

    def cli(*args):
        result = subprocess.run([sys.executable, "-m", "aqedge.cli", *map(str, args)],
                                capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    cli("quantize", "float.keras", "--epochs", "1", "--limit", "1000", "--activation-bits", "3",
        "--layer-bits", f"{second_conv}=2", "-o", "qat.keras")
    cli("convert", "qat.keras", "-o", "a3.tflite")
    info = inspect_tflite((tmp_path / "a3.tflite").read_bytes())
    levels = {t["name"]: t["levels"] for t in info["tensors"] if t.get("value_bits", 8) < 8}
    assert sorted(levels.values()) == [4, 4, 4, 8, 8], levels   # 4: second conv, pooled, flattened
    shown = cli("inspect", "a3.tflite")
    assert "low-bit activation tensors (count × levels)" in shown and "2 × 8, 3 × 4" in shown
    cli("build", "--board", "stm32", "--model", "a3.tflite", "-o", "fw")
    assert "folded into the producer's output clamp" in (tmp_path / "fw" / "model.c").read_text()
    cli("measure", "--board", "stm32", "fw", "--samples", "50", "-o", "metrics.json")
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["device_matches_reference"] == 1.0 and m["samples"] == 50
    assert m["accuracy"] == m["reference_accuracy"] > 0.3


def test_float_interface_model_on_emulated_stm32(float_interface_model, tmp_path):
    """float32 in and out (QUANTIZE / DEQUANTIZE at the edges): the device's float outputs are
    byte-identical to TFLite Micro's."""
    board, _ = resolve("stm32")
    info = build(float_interface_model, board, tmp_path / "fw")
    assert info.input.dtype == info.output.dtype == "float32"
    m = metrics(run_session(board, tmp_path / "fw", "fashion-mnist", 20))
    assert m["device_matches_reference"] == 1.0 and not m["failed_samples"]
    assert m["accuracy"] == m["reference_accuracy"]


def test_swish_w4a4_on_emulated_stm32(tmp_path):
    """A MobileNetV2-style W4A4 block (hard-swish stem, Swish expand, hard-swish depthwise,
    residual Add, global average pool): HARD_SWISH and Swish (LOGISTIC and MUL together) run
    through the tables that aq_model_prepare() builds at start-up, and the 4-bit clamps after
    HARD_SWISH fold into its table; every output on the emulated STM32F405 equals TFLite
    Micro's."""
    import keras
    from keras import layers as L

    from aqedge import datasets
    from aqedge.convert import convert_qat
    from aqedge.qat import quantize_model

    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="hard_swish")(inputs)
    h = L.Conv2D(16, 1, use_bias=False)(x)
    h = L.BatchNormalization()(h)
    h = L.Activation("swish")(h)
    h = L.DepthwiseConv2D(3, strides=2, padding="same", activation="hard_swish")(h)
    h = L.Conv2D(8, 1)(h)
    x = L.Add()([L.MaxPooling2D(2)(x), h])
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(10, activation="softmax")(x))
    xs, _ = datasets.load("fashion-mnist", "train")
    path = tmp_path / "swish.tflite"
    path.write_bytes(convert_qat(quantize_model(model, calibration_data=xs[:256]), xs[:256]))

    board, _ = resolve("stm32")
    build(path, board, tmp_path / "fw")
    prepare, invoke = (tmp_path / "fw" / "model.c").read_text().split("int aq_model_invoke(void)")
    assert invoke.count("aq_lut_s8(") == 3   # 2 HARD_SWISH + 1 Swish (LOGISTIC and MUL)
    assert not any(k in invoke for k in ("aq_hard_swish_s8(", "aq_logistic_s8(", "aq_mul_s8("))
    assert prepare.count("aq_hard_swish_s8(&op") == 2
    assert prepare.count("aq_logistic_s8(&op") == prepare.count("aq_mul_s8(&op") == 1
    m = metrics(run_session(board, tmp_path / "fw", "fashion-mnist", 30))
    assert m["samples"] == 30 and m["failed_samples"] == []
    assert m["device_matches_reference"] == 1.0
    assert m["accuracy"] == m["reference_accuracy"]
