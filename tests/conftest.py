"""Shared fixtures: a small Fashion-MNIST CNN trained and converted once per test session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
MLPERF_TINY = REPO.parent / "shared" / "models" / "mlperf-tiny"


def quantize_input(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return np.clip(np.round(x / scale + zero_point), -128, 127).astype(np.int8)


@pytest.fixture(scope="session")
def fashion_test():
    from aqedge import datasets

    return datasets.load("fashion-mnist", "test")


@pytest.fixture(scope="session")
def int8_model(tmp_path_factory) -> Path:
    """The example CNN, trained one short epoch on 6,000 images and converted to full int8."""
    from aqedge import datasets, example
    from aqedge.convert import convert_int8

    x, y = datasets.load("fashion-mnist", "train")
    model = example.train_float(x[:6000], y[:6000], epochs=1, seed=0)
    path = tmp_path_factory.mktemp("model") / "fashion_int8.tflite"
    path.write_bytes(convert_int8(model, x[:100], samples=100))
    return path


@pytest.fixture(scope="session")
def float_model(tmp_path_factory) -> Path:
    """The same CNN converted without quantization (a float .tflite aqedge must refuse)."""
    import tensorflow as tf
    from aqedge import example

    path = tmp_path_factory.mktemp("float") / "fashion_float.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(example.build_cnn()).convert())
    return path


@pytest.fixture(scope="session")
def unsupported_model(tmp_path_factory) -> Path:
    """A full-int8 model with ops the runtime lacks (LEAKY_RELU twice, between two convs)."""
    import keras
    from aqedge.convert import convert_int8

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), batch_size=1)
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.LeakyReLU(0.1)(x)
    x = keras.layers.Conv2D(4, 3)(x)
    x = keras.layers.LeakyReLU(0.1)(x)
    model = keras.Model(inputs, x)
    rep = np.random.default_rng(0).random((20, 8, 8, 1), dtype=np.float32)
    path = tmp_path_factory.mktemp("unsupported") / "leaky.tflite"
    path.write_bytes(convert_int8(model, rep, samples=20))
    return path
