"""User errors: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import socket
import subprocess
import sys



def aqedge(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aqedge.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def assert_user_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    text = " ".join(result.stderr.split())  # rich may wrap a long line
    assert text.startswith("error:"), result.stderr
    for needle in needles:
        assert needle in text, result.stderr


def test_help_on_every_verb():
    for verb in ("boards", "build", "flash", "measure", "run"):
        result = aqedge(verb, "--help")
        assert result.returncode == 0 and "Usage" in result.stdout


def test_boards_lists_the_emulated_stm32():
    result = aqedge("boards")
    assert result.returncode == 0 and "qemu-stm32f405" in result.stdout


def test_unknown_board_lists_known_ones(int8_model):
    assert_user_error(aqedge("build", "--board", "esp32", "--model", str(int8_model)),
                      "unknown board 'esp32'", "qemu-stm32f405")


def test_missing_model_file(tmp_path):
    assert_user_error(aqedge("build", "--board", "stm32", "--model", str(tmp_path / "nope.tflite")),
                      "not found", "nope.tflite")


def test_random_bytes_as_tflite(tmp_path):
    path = tmp_path / "noise.tflite"
    path.write_bytes(bytes(range(256)) * 8)
    assert_user_error(aqedge("build", "--board", "stm32", "--model", str(path)), "not a TFLite")


def test_float_model_refused(float_model, tmp_path):
    assert_user_error(aqedge("build", "--board", "stm32", "--model", str(float_model),
                             "-o", str(tmp_path / "fw")), "float model")


def test_unsupported_op_refused_with_index(unsupported_model, tmp_path):
    assert_user_error(aqedge("build", "--board", "stm32", "--model", str(unsupported_model),
                             "-o", str(tmp_path / "fw")), "op 1 TANH", "op 3 TANH")


def test_port_that_does_not_answer(int8_model, tmp_path):
    """A listening socket that never speaks: a bounded wait, then one line and exit 2."""
    build = aqedge("build", "--board", "stm32", "--model", str(int8_model), "-o", str(tmp_path / "fw"))
    assert build.returncode == 0, build.stderr
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        result = aqedge("measure", "--board", "stm32", str(tmp_path / "fw"), "--port",
                        f"socket://127.0.0.1:{port}", "--samples", "2", "--timeout", "3", timeout=60)
    assert_user_error(result, f"127.0.0.1:{port}")


def test_malformed_layer_bits(tmp_path):
    assert_user_error(aqedge("quantize", str(tmp_path / "float.keras"), "--layer-bits", "conv2d"),
                      "--layer-bits 'conv2d'", "LAYER=BITS")


def test_learning_rate_must_be_positive(tmp_path):
    assert_user_error(aqedge("quantize", str(tmp_path / "float.keras"), "--lr", "0"),
                      "--lr 0.0", "must be positive")


def test_not_a_build_directory(tmp_path):
    assert_user_error(aqedge("measure", "--board", "stm32", str(tmp_path)), "not an aqedge build directory")


def test_damaged_build_json_is_one_line(tmp_path):
    (tmp_path / "build.json").write_text('{"board": "qemu-stm32f405", "model"')
    assert_user_error(aqedge("measure", "--board", "stm32", str(tmp_path), "--data", "random"),
                      "build.json is damaged", "rebuild")
    (tmp_path / "build.json").write_text('{"board": "qemu-stm32f405"}')
    assert_user_error(aqedge("flash", "--board", "stm32", str(tmp_path)), "build.json is damaged")


def _free_batch_model(activation: str, path):
    """Conv2D -> Activation -> Flatten -> Dense on an input without a fixed batch."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.Activation(activation, name="squash")(x)
    x = keras.layers.Dense(3)(keras.layers.Flatten()(x))
    keras.Model(inputs, x).save(path)


def test_convert_exports_batch_one_and_refuses_ops_the_runtime_lacks(tmp_path):
    """A free batch still converts to a RESHAPE (no SHAPE / STRIDED_SLICE / PACK), and an op the
    aqedge runtime lacks is refused at convert time, naming the op and the layer's tensor; with
    --runtime tflm it is written for TensorFlow Lite Micro."""
    import numpy as np

    from aqedge.convert import inspect_tflite

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.random((40, 8, 8, 1), dtype=np.float32),
             y_train=rng.integers(0, 3, 40))
    data = ["--data", str(tmp_path / "d.npz")]
    _free_batch_model("relu", tmp_path / "relu.keras")
    ok = aqedge("convert", str(tmp_path / "relu.keras"), *data, "-o", str(tmp_path / "relu.tflite"))
    assert ok.returncode == 0, ok.stderr
    info = inspect_tflite((tmp_path / "relu.tflite").read_bytes())
    ops = {op["op"] for op in info["ops"]}
    assert "RESHAPE" in ops and not ops & {"SHAPE", "STRIDED_SLICE", "PACK"}, ops
    assert info["tensors"][info["inputs"][0]]["shape"][0] == 1

    _free_batch_model("tanh", tmp_path / "tanh.keras")
    out = tmp_path / "tanh.tflite"
    assert_user_error(aqedge("convert", str(tmp_path / "tanh.keras"), *data, "-o", str(out)),
                      "TANH", "squash", "--runtime tflm")
    assert not out.exists()
    tflm = aqedge("convert", str(tmp_path / "tanh.keras"), *data, "-o", str(out), "--runtime", "tflm")
    assert tflm.returncode == 0, tflm.stderr
    assert "TANH" in {op["op"] for op in inspect_tflite(out.read_bytes())["ops"]}
