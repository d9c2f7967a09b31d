"""Shared fixtures: a small Fashion-MNIST CNN trained and converted once per test session, and
the MLPerf Tiny models (ResNet-8, DS-CNN) from two sources: rebuilt here (tests/mlperf_models.py,
always) and the real MLPerf Tiny files (when $AQEDGE_MLPERF_TINY names their directory)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mlperf_models import KWS, RESNET8

REPO = Path(__file__).resolve().parent.parent
#: The TFLite Micro object cache of a test run (XDG_CACHE_HOME of every TFLM build in the tests).
TFLM_CACHE = REPO / "build" / "tflm-cache"
MLPERF_ENV = "AQEDGE_MLPERF_TINY"
MLPERF_SKIP = f"MLPerf Tiny files not found (set {MLPERF_ENV}=DIR; CI sets it)"
#: TFLite Micro's arena for the real MLPerf Tiny files (issue 5's peer figures).
MLPERF_TFLM_ARENA = {RESNET8: 54996, KWS: 22772}


def mlperf_tiny_dir() -> Path | None:
    """The directory $AQEDGE_MLPERF_TINY names, None when it is unset or empty."""
    value = os.environ.get(MLPERF_ENV, "").strip()
    return Path(value) if value else None


MLPERF_DIR = mlperf_tiny_dir()
#: The marks of a test on the real files (skipped without them), and the `source` parameters of
#: the MLPerf Tiny tests: the rebuilt models always, the real files when they are there.
MLPERF_MARKS = [pytest.mark.mlperf_tiny, pytest.mark.skipif(MLPERF_DIR is None, reason=MLPERF_SKIP)]
SOURCES = ["rebuilt", pytest.param("mlperf", marks=MLPERF_MARKS)]


@dataclass(frozen=True)
class TinyModels:
    """The MLPerf Tiny `.tflite` files of one source, by their MLPerf file names."""

    source: str  # "rebuilt" or "mlperf"
    paths: dict[str, Path]

    def __getitem__(self, name: str) -> Path:
        return self.paths[name]

    @property
    def real(self) -> bool:
        return self.source == "mlperf"


def tflm_arena(tiny: TinyModels, name: str) -> int:
    """TFLite Micro's arena for model `name`: the published figure for a real file, TFLite
    Micro's own allocation of the file for a rebuilt one."""
    from aqedge.convert.int4 import tflm_arena_bytes

    if tiny.real:
        return MLPERF_TFLM_ARENA[name]
    arena = tflm_arena_bytes(tiny[name].read_bytes())
    assert arena, f"TFLite Micro could not load {tiny[name]}"
    return arena


def pytest_configure(config):
    config.addinivalue_line("markers", "mlperf_tiny: runs on the real MLPerf Tiny files")
    if MLPERF_DIR is not None:
        missing = [n for n in (RESNET8, KWS) if not (MLPERF_DIR / n).is_file()]
        if missing:
            raise pytest.UsageError(f"{MLPERF_ENV}={MLPERF_DIR} has no {', '.join(missing)}")


def _mlperf_line() -> str:
    if MLPERF_DIR is None:
        return f"MLPerf Tiny: rebuilt models only; real-file checks skipped: {MLPERF_SKIP}"
    return f"MLPerf Tiny: rebuilt models and the real files in {MLPERF_ENV}={MLPERF_DIR}"


def _tflm_line() -> str:
    from aqedge.codegen.tflm_lib import trees_from_env

    trees = trees_from_env()
    if not trees:
        return "TFLite Micro trees: none (TFLM_TREE unset): the TFLM build tests skip"
    return f"TFLite Micro trees from TFLM_TREE: {', '.join(str(t) for t in trees)}"


def pytest_report_header(config):
    return [_mlperf_line(), _tflm_line()]


def pytest_terminal_summary(terminalreporter):
    counts = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        reports = terminalreporter.stats.get(outcome, [])
        n = sum("mlperf_tiny" in getattr(r, "keywords", {}) for r in reports)
        if n:
            counts[outcome] = n
    detail = ", ".join(f"{n} {outcome}" for outcome, n in counts.items()) or "none ran"
    terminalreporter.write_line(f"{_mlperf_line()} (real-file tests: {detail})")
    terminalreporter.write_line(_tflm_line())


@pytest.fixture(scope="session")
def rebuilt_tiny_models() -> dict[str, Path]:
    """The rebuilt ResNet-8 and DS-CNN (tests/mlperf_models.py), converted once and cached
    under build/test-models/ (gitignored): MLPerf file name -> path."""
    import mlperf_models

    return mlperf_models.build(REPO / "build" / "test-models")


@pytest.fixture(params=SOURCES)
def tiny(request) -> TinyModels:
    """The MLPerf Tiny models of one source: "rebuilt" (always) or "mlperf" (the real files in
    $AQEDGE_MLPERF_TINY, skipped without them)."""
    if request.param == "rebuilt":
        return TinyModels("rebuilt", request.getfixturevalue("rebuilt_tiny_models"))
    return TinyModels("mlperf", {name: MLPERF_DIR / name for name in (RESNET8, KWS)})


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
    """A full-int8 model with ops the runtime lacks (TANH twice, between two convs)."""
    import keras
    from aqedge.convert import convert_int8

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), batch_size=1)
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.Activation("tanh")(x)
    x = keras.layers.Conv2D(4, 3)(x)
    x = keras.layers.Activation("tanh")(x)
    model = keras.Model(inputs, x)
    rep = np.random.default_rng(0).random((20, 8, 8, 1), dtype=np.float32)
    path = tmp_path_factory.mktemp("unsupported") / "tanh.tflite"
    path.write_bytes(convert_int8(model, rep, samples=20))
    return path


def int4_variant(tflite: bytes) -> bytes:
    """Rewrite every CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED weight tensor of an int8 model
    as packed INT4 (values w // 16 clipped to [-7, 7], scales x16): a model with INT4 weights
    made without the QAT stack, to test the INT4 kernels on their own."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from aqedge.int4 import pack_int4

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(tflite, 0))
    codes = {schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.DEPTHWISE_CONV_2D,
             schema.BuiltinOperator.FULLY_CONNECTED}
    sub = model.subgraphs[0]
    for op in sub.operators:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if builtin not in codes:
            continue
        tensor = sub.tensors[op.inputs[1]]
        buffer = model.buffers[tensor.buffer]
        values = np.asarray(buffer.data, dtype=np.uint8).view(np.int8).astype(np.int64)
        scales = np.asarray(tensor.quantization.scale, dtype=np.float64) * 16
        has_bias = len(op.inputs) > 2 and op.inputs[2] >= 0
        bias_q = sub.tensors[op.inputs[2]].quantization if has_bias else None
        if builtin == schema.BuiltinOperator.FULLY_CONNECTED and len(scales) > 1:
            # TFLite Micro runs INT4 FULLY_CONNECTED per-tensor only: fold the channel scales.
            channel = scales.copy()
            scales = np.array([channel.max()])
            values = np.round(values.reshape(len(channel), -1) * (channel / scales[0])[:, None])
            tensor.quantization.zeroPoint = [0]
            tensor.quantization.quantizedDimension = 0
            if has_bias:
                bias_buffer = model.buffers[sub.tensors[op.inputs[2]].buffer]
                b = np.asarray(bias_buffer.data, dtype=np.uint8).view(np.int32).astype(np.float64)
                b = np.round(b * channel / scales[0]).astype(np.int32)
                bias_buffer.data = np.frombuffer(b.tobytes(), dtype=np.uint8)
                bias_q.zeroPoint = [0]
                bias_q.quantizedDimension = 0
        else:
            values = values // 16
        buffer.data = np.frombuffer(pack_int4(np.clip(values, -7, 7)), dtype=np.uint8)
        tensor.type = schema.TensorType.INT4
        tensor.quantization.scale = [float(s) for s in scales]
        if has_bias:  # keep bias scale = input scale x filter scale
            in_scale = sub.tensors[op.inputs[0]].quantization.scale[0]
            bias_q.scale = [float(np.float32(in_scale) * np.float32(s)) for s in scales]
    builder = flatbuffers.Builder(len(tflite) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.fixture(scope="session")
def odd_model(tmp_path_factory) -> Path:
    """A full-int8 model whose every weight tensor has an odd element count (27, 27, 375)."""
    import keras
    from aqedge.convert import convert_int8

    keras.utils.set_random_seed(0)
    inputs = keras.Input((9, 9, 1), batch_size=1)
    x = keras.layers.Conv2D(3, 3, activation="relu")(inputs)
    x = keras.layers.DepthwiseConv2D(3)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(5)(x)
    model = keras.Model(inputs, x)
    rep = np.random.default_rng(0).random((20, 9, 9, 1), dtype=np.float32)
    path = tmp_path_factory.mktemp("odd") / "odd.tflite"
    path.write_bytes(convert_int8(model, rep, samples=20))
    return path


@pytest.fixture(scope="session")
def float_interface_model(int8_model, tmp_path_factory) -> Path:
    """The example CNN with int8 ops but float32 input and output: the converter's default
    interface, with QUANTIZE at the input and DEQUANTIZE at the output."""
    import tensorflow as tf
    from aqedge import datasets, example

    x, y = datasets.load("fashion-mnist", "train")
    model = example.train_float(x[:2000], y[:2000], epochs=1, seed=1)

    def rep():
        for image in x[:50]:
            yield [image[None]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = rep
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    path = tmp_path_factory.mktemp("floatio") / "float_io.tflite"
    path.write_bytes(converter.convert())
    return path
