"""A user's project: `aqedge init`, then `aqedge build --board stm32` and `aqedge measure --board
stm32` with nothing else, on their own Keras model and image folder, on the emulated STM32F405."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aqedge import config
from aqedge.errors import AqError

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "shapes"


def aqedge(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "aqedge.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one line on stderr, `error: ...` (exit code 2; TensorFlow's start-up notices too are
    kept off it)."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error:") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr.strip()


def test_init_writes_a_project_found_from_below(tmp_path):
    (tmp_path / "m.keras").write_bytes(b"")
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    text = config.render("m.keras", "imgs", None, "1/255", "stm32")
    (tmp_path / config.FILENAME).write_text(text)
    (tmp_path / "src" / "deep").mkdir(parents=True)
    project = config.find(tmp_path / "src" / "deep")
    assert project.root == tmp_path.resolve() and project.model == tmp_path.resolve() / "m.keras"
    assert project.board == "stm32" and project.rescale == pytest.approx(1 / 255)
    assert project.data("test").spec == str(tmp_path.resolve() / "imgs")  # test defaults to train
    assert project.quantize == config.QuantizeSettings()
    assert project.build_dir == tmp_path.resolve() / "build"


@pytest.mark.parametrize("body, message", [
    ("[model]\npath = 'm.keras'\n[quantise]\nepochs = 1\n", "unknown section [quantise]"),
    ("[model]\npath = 'm.keras'\n[quantize]\nepoch = 1\n", "unknown key quantize.epoch"),
    ("[model]\npath = 'm.keras'\n[quantize]\nepochs = 'two'\n", "quantize.epochs = 'two': expected int"),
    ("[model]\npath = 'm.keras'\n[quantize]\nlr = -1.0\n", "lr -1.0: the learning rate must be positive"),
    ("[data]\ntrain = 'x'\n", "[model] path is missing"),
    ("[model\npath = 1", "not a readable aqedge.toml"),
    ("[model]\npath = 'm.keras'\n[data]\nrescale = 'abc'\n", "rescale 'abc'"),
])
def test_bad_project_files_are_one_line(tmp_path, body, message):
    (tmp_path / config.FILENAME).write_text(body)
    with pytest.raises(AqError, match=".*".join(map(_re, message.split()))) as err:
        config.find(tmp_path)
    assert "\n" not in str(err.value)


def _re(word: str) -> str:
    import re

    return re.escape(word)


def test_build_outside_a_project_names_both_ways(tmp_path):
    line = error_line(aqedge("build", "--board", "stm32", cwd=tmp_path))
    assert "--model M.tflite" in line and "aqedge init" in line


def test_float_keras_without_data_says_what_to_run(tmp_path):
    import keras

    inputs = keras.Input((8, 8, 1), batch_size=1)
    keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs))).save(tmp_path / "f.keras")
    line = error_line(aqedge("build", "--board", "stm32", "--model", "f.keras", cwd=tmp_path))
    assert "f.keras is a float Keras model" in line and "--data" in line
    assert not (tmp_path / "build").exists()


def test_init_refuses_what_it_cannot_use(tmp_path):
    assert "expected an existing .keras or .tflite" in error_line(
        aqedge("init", "--model", "none.keras", cwd=tmp_path))
    (tmp_path / "m.keras").write_bytes(b"")
    assert "no such file or folder" in error_line(
        aqedge("init", "--model", "m.keras", "--data", "nope/", cwd=tmp_path))
    assert "unknown board" in error_line(
        aqedge("init", "--model", "m.keras", "--board", "esp32", cwd=tmp_path))
    assert not (tmp_path / config.FILENAME).exists()
    assert aqedge("init", "--model", "m.keras", cwd=tmp_path).returncode == 0
    assert "exists" in error_line(aqedge("init", "--model", "m.keras", cwd=tmp_path))


@pytest.fixture(scope="module")
def shapes_project(tmp_path_factory) -> Path:
    """An empty folder with what a user brings: the example's image folder and a float Keras
    model trained on it by the example's own scripts (few images, two epochs: CI time)."""
    folder = tmp_path_factory.mktemp("user")
    run = lambda *a: subprocess.run([sys.executable, *map(str, a)], cwd=folder, check=True,  # noqa: E731
                                    capture_output=True, text=True, timeout=600)
    run(EXAMPLE / "make_dataset.py", "--out", "imgs", "--per-class", "60", "--size", "16")
    run(EXAMPLE / "train_model.py", "--data", "imgs", "--size", "16", "--epochs", "2", "--out", "m.keras")
    return folder


def test_init_build_measure_on_the_users_images(shapes_project):
    """The acceptance of issue 20: three commands, no other flag, bit-exact on the device."""
    cwd = shapes_project
    init = aqedge("init", "--model", "m.keras", "--data", "imgs/", "--board", "stm32", cwd=cwd)
    assert init.returncode == 0, init.stderr
    build = aqedge("build", "--board", "stm32", cwd=cwd)
    assert build.returncode == 0, build.stdout + build.stderr
    for stage in ("qat.keras", "model.tflite", "qemu-stm32f405/firmware.elf"):
        assert (cwd / "build" / stage).is_file(), stage
    # the model's Rescaling(1/255) is folded into the input quantization: the device takes pixels
    info = json.loads((cwd / "build" / "qemu-stm32f405" / "build.json").read_text())
    assert info["input"]["transform_scale"] == [pytest.approx(1 / 255)]
    assert "MUL" not in (cwd / "build" / "qemu-stm32f405" / "model.c").read_text()
    measure = aqedge("measure", "--board", "stm32", cwd=cwd)
    assert measure.returncode == 0, measure.stdout + measure.stderr
    m = json.loads((cwd / "build" / "metrics.json").read_text())
    assert m["board"] == "qemu-stm32f405" and m["status"] == "complete"
    assert m["samples"] == m["measured"] == 4 * 12          # the whole test split, 20 % of 60
    assert m["device_matches_reference"] == 1.0             # bit-exact with TFLite Micro
    assert m["accuracy"] == m["reference_accuracy"] > 0.25   # above chance on 4 classes
    cm = m["confusion_matrix"]
    assert cm["classes"] == ["circle", "cross", "square", "triangle"]
    assert np.asarray(cm["matrix"]).sum() == 48
    assert "circle" in measure.stdout and "recall" in measure.stdout
    assert "Confusion matrix" in (cwd / "build" / "report.md").read_text()


def _built(cwd: Path) -> Path:
    """The user's folder with the project initialised and built (by the acceptance test above
    when it ran first, here otherwise)."""
    if not (cwd / config.FILENAME).is_file():
        assert aqedge("init", "--model", "m.keras", "--data", "imgs/", "--board", "stm32",
                      cwd=cwd).returncode == 0
    if not (cwd / "build" / "qemu-stm32f405" / "build.json").is_file():
        assert aqedge("build", "--board", "stm32", cwd=cwd).returncode == 0
    return cwd


def test_second_build_redoes_only_what_changed(shapes_project):
    cwd = _built(shapes_project)
    qat = cwd / "build" / "qat.keras"
    before = qat.stat().st_mtime_ns
    again = aqedge("build", "--board", "stm32", cwd=cwd)
    assert again.returncode == 0, again.stderr
    assert "quantize: " in again.stdout and "is up to date" in again.stdout
    assert qat.stat().st_mtime_ns == before
    toml = cwd / config.FILENAME
    toml.write_text(toml.read_text().replace("epochs = 2", "epochs = 1"))
    changed = aqedge("build", "--board", "stm32", cwd=cwd)
    assert changed.returncode == 0, changed.stderr
    assert "quantize: wrote" in changed.stdout and qat.stat().st_mtime_ns != before


def test_npz_data_for_quantize_and_measure(shapes_project, tmp_path):
    """The same model on an .npz holding the images: quantize and measure take it."""
    from aqedge.datasets import DataSpec

    src = DataSpec(str(shapes_project / "imgs"))
    train, test = src.read("train", (16, 16, 1)), src.read("test", (16, 16, 1))
    np.savez(tmp_path / "d.npz", x_train=train.x, y_train=train.y, x_test=test.x[:10],
             y_test=test.y[:10], class_names=np.array(train.class_names))
    model = shapes_project / "m.keras"
    q = aqedge("quantize", str(model), "--data", "d.npz", "--epochs", "1", "-o", "q.keras", cwd=tmp_path)
    assert q.returncode == 0, q.stderr
    assert aqedge("convert", "q.keras", "--data", "d.npz", "-o", "q.tflite", cwd=tmp_path).returncode == 0
    assert aqedge("build", "--board", "stm32", "--model", "q.tflite", "-o", "fw", cwd=tmp_path).returncode == 0
    meas = aqedge("measure", "--board", "stm32", "fw", "--data", "d.npz", cwd=tmp_path)
    assert meas.returncode == 0, meas.stderr
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["measured"] == 10 and m["device_matches_reference"] == 1.0
    assert m["confusion_matrix"]["classes"] == train.class_names
    bad = aqedge("measure", "--board", "stm32", "fw", "--data", str(shapes_project / "m.keras"),
                 cwd=tmp_path, timeout=120)
    assert "expected a .npz file or a folder" in error_line(bad)


def test_command_line_overrides_the_project(shapes_project):
    cwd = _built(shapes_project)
    result = aqedge("measure", "--data", "random", "--samples", "3", "-o", "r/metrics.json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    m = json.loads((cwd / "r" / "metrics.json").read_text())
    assert m["board"] == "qemu-stm32f405"     # board and build folder from aqedge.toml
    assert m["dataset"] == "random" and m["measured"] == 3 and m["accuracy"] is None
    assert m["device_matches_reference"] == 1.0


def test_malformed_data_stops_quantize_before_training(shapes_project, tmp_path):
    np.savez(tmp_path / "rgb.npz", x=np.zeros((6, 32, 32, 3)), y=np.zeros(6))
    result = aqedge("quantize", str(shapes_project / "m.keras"), "--data", "rgb.npz", cwd=tmp_path)
    assert "samples are 32×32×3 but the model's input is 16×16×1" in error_line(result)
    assert "quantization-aware training" not in result.stdout
    assert not (tmp_path / "qat.keras").exists()
