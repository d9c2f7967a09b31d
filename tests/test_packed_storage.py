"""Packed activation storage (aqedge/codegen/storage.py): 4-bit tensors two codes a byte in the
arena, the same codes as int8 storage and as TFLite Micro, about half the arena, and a model
that only fits the STM32F405's RAM packed built and run on the emulated board.
tests/test_ops_fuzz.py fuzzes every packed kernel against TFLite Micro."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from aqedge.codegen.graph import read_tflite
from aqedge.codegen.host import build_host, run_host
from aqedge.codegen.storage import lower_model
from aqedge.reference import TflmReference


def _w4a4(model, shape, tmp_path, name: str, bits: int = 4):
    """`model` quantized (calibrated on seeded noise, not trained) and converted."""
    import keras

    from aqedge.convert import convert_qat
    from aqedge.qat import quantize_model

    keras.utils.set_random_seed(0)
    rep = np.random.default_rng(0).random((32, *shape), dtype=np.float32)
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(convert_qat(quantize_model(model, calibration_data=rep, activation_bits=bits), rep))
    return path


def _relu_net(shape=(28, 28, 1), filters=(8, 16)):
    import keras
    from keras import layers as L

    inputs = keras.Input(shape)
    x = L.Conv2D(filters[0], 3, padding="same", activation="relu")(inputs)
    x = L.MaxPooling2D(2)(x)
    x = L.Conv2D(filters[1], 3, padding="same", activation="relu")(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Flatten()(x)
    return keras.Model(inputs, L.Dense(10)(x), name="relu_net")


@pytest.mark.parametrize("bits", [4, 2])
def test_packed_build_equals_tflite_micro_and_halves_the_arena(bits, tmp_path):
    """The 4-bit tensors (the first conv's output and its pooling; the second conv's output is
    the last layer's 8-bit input) are packed; the host build gives TFLite Micro's codes on 30
    random inputs and its arena is half the int8 one."""
    path = _w4a4(_relu_net(), (28, 28, 1), tmp_path, f"relu_a{bits}", bits)
    graph = read_tflite(path)
    model = lower_model(graph, "m", "packed")
    rows = {id(s): s for s in model.storages.values()}.values()
    packed = [s for s in rows if s.packed]
    assert len(packed) == 2 and all(s.levels == 2 ** bits for s in packed)
    assert all("input or output" in s.why or "more than 16" in s.why for s in rows if not s.packed)
    assert model.plan.arena_bytes <= 0.55 * model.int8_arena_bytes
    kernels = {c.kernel for c in model.calls if c.kernel}
    assert {"aq_max_pool_packed_s8"} <= kernels
    assert sum(c.band is not None for c in model.calls) == 2   # both convs, in row bands

    x = np.random.default_rng(1).integers(-128, 128, (30, 28, 28, 1), dtype=np.int8)
    ref = TflmReference(path.read_bytes())
    want = np.stack([ref.run(xi[None]).reshape(-1) for xi in x])
    for storage in ("packed", "int8"):
        g, plan, runner = build_host(path, tmp_path / storage, storage)
        got = run_host(runner, x, g.tensors[g.outputs[0]].nbytes)
        np.testing.assert_array_equal(got, want)
        calls = (tmp_path / storage / "model.c").read_text().count("_packed_")
        assert (calls > 0) == (storage == "packed")
        assert plan.arena_bytes == (model.plan.arena_bytes if storage == "packed" else model.int8_arena_bytes)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aqedge.cli", *args], capture_output=True, text=True)


def test_a_model_that_fits_only_packed_runs_on_emulated_stm32(tmp_path):
    """A 64x64 W4A4 network whose int8 arena exceeds the STM32F405's 128 KiB: `build` (auto)
    packs it, says so and records it in build.json; `--activation-storage int8` is refused with
    the numbers; the packed firmware equals TFLite Micro on the emulated board."""
    path = _w4a4(_relu_net((64, 64, 1), (32, 16)), (64, 64, 1), tmp_path, "big")
    out = tmp_path / "fw"
    refused = _cli("build", "--board", "qemu-stm32f405", "--model", str(path), "-o", str(out),
                   "--activation-storage", "int8")
    assert refused.returncode == 2 and "does not fit" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "packed" in refused.stderr
    result = _cli("build", "--board", "qemu-stm32f405", "--model", str(path), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "packed" in result.stdout
    info = json.loads((out / "build.json").read_text())
    assert info["activation_storage"] == "packed"
    assert info["arena_bytes"] == info["packed_arena_bytes"] < 128 * 1024 - 8192 < info["int8_arena_bytes"]
    assert (out / "model.c").read_text().count("aq_band_of(") == 2   # both convs, in row bands
    assert [k["row_bands"] for k in info["kernels"] if k["opcode"] == "CONV_2D"] == [True, True]
    assert sum(t["packed"] for t in info["tensors"]) == 2
    measured = _cli("measure", "--board", "qemu-stm32f405", str(out), "--dataset", "random",
                    "--samples", "3", "-o", str(out / "metrics.json"))
    assert measured.returncode == 0, measured.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["device_matches_reference"] == 1.0 and m["samples"] == 3 and not m["failed_samples"]


def test_activation_storage_is_checked_before_any_work(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(b"not read")
    bad = _cli("build", "--board", "stm32", "--model", str(path), "--activation-storage", "nibbles")
    assert bad.returncode == 2 and "--activation-storage nibbles" in bad.stderr
    tflm = _cli("build", "--board", "stm32", "--model", str(path), "--runtime", "tflm",
                "--activation-storage", "packed")
    assert tflm.returncode == 2 and "aqedge runtime" in tflm.stderr


@pytest.mark.parametrize("op", ["CONV_2D", "CONV_2D_INT4", "DEPTHWISE_CONV_2D", "DEPTHWISE_CONV_2D_INT4"])
def test_row_bands_run_the_cortex_m_ports_bit_exactly(op, tmp_path):
    """The fuzz models of tests/test_ops_fuzz.py between packed tensors (10 random layers each:
    kernel sizes, strides, padding, dilation, quantization), built packed for the emulated
    Cortex-M4: the banded convolutions run the Cortex-M variants and equal TFLite Micro."""
    import test_ops_fuzz as fuzz

    shape = {"CONV_2D": (9, 7, 5), "CONV_2D_INT4": (6, 8, 3), "DEPTHWISE_CONV_2D": (8, 9, 8),
             "DEPTHWISE_CONV_2D_INT4": (7, 6, 4)}[op]
    model, _, _ = fuzz.build_model(op, 11, fuzz.BRANCHES, shape, packed=True)
    path = tmp_path / "fuzz.tflite"
    path.write_bytes(model)
    out = tmp_path / "fw"
    built = _cli("build", "--board", "qemu-mps2-an386", "--model", str(path), "-o", str(out),
                 "--activation-storage", "packed")
    assert built.returncode == 0, built.stderr
    assert (out / "model.c").read_text().count("aq_band_of(") == fuzz.BRANCHES
    measured = _cli("measure", "--board", "qemu-mps2-an386", str(out), "--dataset", "random",
                    "--samples", "4", "-o", str(out / "metrics.json"))
    assert measured.returncode == 0, measured.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["device_matches_reference"] == 1.0 and m["samples"] == 4
