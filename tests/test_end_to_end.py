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

from conftest import MLPERF_TINY


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


@pytest.mark.parametrize("model", ["kws_dscnn_int8.tflite", "ic_resnet8_int8.tflite"])
def test_mlperf_tiny_on_emulated_stm32_random_inputs(model, tmp_path):
    """Models nobody here wrote, on the device through the CLI, bit-exact on 20 seeded inputs."""
    board, _ = resolve("qemu-stm32f405")
    out = tmp_path / "fw"
    result = subprocess.run(
        [sys.executable, "-m", "aqedge.cli", "build", "--board", board.name, "--model",
         str(MLPERF_TINY / model), "-o", str(out)], capture_output=True, text=True)
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
