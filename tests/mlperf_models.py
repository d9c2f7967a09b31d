"""Architectural rebuilds of the two MLPerf Tiny int8 models, so that the tests which need "a
model nobody here wrote" run in any clone, with or without the real MLPerf Tiny files.

- ResNet-8 (image classification, `ic_resnet8_int8.tflite`): CIFAR-10 input 32x32x3; Conv 16 3x3
  + BN + ReLU; three residual stacks of 16, 32 and 64 filters with strides 1, 2 and 2 (two 3x3
  convs with BN, a 1x1 strided conv shortcut on the strided stacks, Add, ReLU);
  AveragePooling2D(8), Flatten, Dense 10 softmax.
- DS-CNN (keyword spotting, `kws_dscnn_int8.tflite`): MFCC input 49x10x1; Conv 64 10x4 stride 2
  + BN + ReLU; four times DepthwiseConv2D 3x3 + BN + ReLU, Conv 64 1x1 + BN + ReLU;
  AveragePooling2D over the whole 25x5 map, Flatten, Dense 12 softmax.

Layer for layer as mlcommons/tiny defines them (benchmark/training/image_classification/
keras_model.py `resnet_v1_eembc` with 16 filters, and keyword_spotting's DS-CNN; dropout kept,
weight decay left out as it does not reach the graph), with batch size 1.

These are NOT the MLPerf weights, only their architecture. Weights come from a fixed seed;
BatchNormalization's gamma and beta from a seeded RNG and its moving statistics from one seeded
random batch in training mode; the classifier's seeded weights are scaled to its input features
so that the softmax does not saturate. Each model is converted with the standard TFLite
converter to full int8 (int8 input and output; aqedge.convert.ptq's settings, with the
FULLY_CONNECTED weights per tensor as in the real files), calibrated on seeded random inputs
in the real files' input ranges, and the RESHAPE in front of FULLY_CONNECTED that today's
converter drops is put back (`insert_flatten`). The converted
graphs have the real files' ops, shapes and fused activations (tests/test_mlperf_models.py
checks that); their scales and outputs are their own. Every layer is named, so the bytes do not
depend on what else the process built first (Keras' running layer names would reorder ops).

`build(directory)` converts both once and caches them as `<directory>/<stem>-<hash>.tflite`,
the hash covering this file, the converter settings (aqedge/convert/ptq.py) and the TensorFlow
and Keras versions.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

RESNET8 = "ic_resnet8_int8.tflite"
KWS = "kws_dscnn_int8.tflite"
#: The op counts of the real MLPerf Tiny files.
EXPECTED_OPS = {
    RESNET8: Counter({"CONV_2D": 9, "ADD": 3, "AVERAGE_POOL_2D": 1, "RESHAPE": 1,
                      "FULLY_CONNECTED": 1, "SOFTMAX": 1}),
    KWS: Counter({"CONV_2D": 5, "DEPTHWISE_CONV_2D": 4, "AVERAGE_POOL_2D": 1, "RESHAPE": 1,
                  "FULLY_CONNECTED": 1, "SOFTMAX": 1}),
}
#: Float input range of each real file's int8 input (ResNet-8: raw pixels, scale 1, zero point
#: -128; DS-CNN: MFCC features, scale 0.585, zero point 83).
INPUT_RANGE = {RESNET8: (0.0, 255.0), KWS: (-123.0, 25.0)}
INPUT_SHAPE = {RESNET8: (32, 32, 3), KWS: (49, 10, 1)}
SEED = 0


def _conv_bn(x, filters, kernel, name, strides=1, relu=True, init="he_normal"):
    from keras import layers

    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", kernel_initializer=init,
                      name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def _residual_stack(x, filters, strides, name):
    from keras import layers

    y = _conv_bn(x, filters, 3, f"{name}_a", strides)
    y = _conv_bn(y, filters, 3, f"{name}_b", relu=False)
    if strides != 1:  # the identity path changes dimension too
        x = layers.Conv2D(filters, 1, strides=strides, padding="same",
                          kernel_initializer="he_normal", name=f"{name}_shortcut")(x)
    x = layers.add([x, y], name=f"{name}_add")
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _classifier(x, classes, pool_size):
    from keras import layers

    x = layers.AveragePooling2D(pool_size=pool_size, name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    return layers.Dense(classes, activation="softmax", name="dense")(x)


def resnet8():
    """MLPerf Tiny image classification: ResNet-8 (resnet_v1_eembc, 16 filters) for CIFAR-10."""
    import keras

    inputs = keras.Input(INPUT_SHAPE[RESNET8], batch_size=1, name="input")
    x = _conv_bn(inputs, 16, 3, "stem")
    for i, (filters, strides) in enumerate(((16, 1), (32, 2), (64, 2)), 1):
        x = _residual_stack(x, filters, strides, f"stack{i}")
    outputs = _classifier(x, 10, int(min(x.shape[1:3])))
    return keras.Model(inputs, outputs, name="resnet8")


def dscnn():
    """MLPerf Tiny keyword spotting: DS-CNN (64 filters) on 49x10 MFCC features, 12 labels."""
    import keras
    from keras import layers

    inputs = keras.Input(INPUT_SHAPE[KWS], batch_size=1, name="input")
    x = _conv_bn(inputs, 64, (10, 4), "stem", strides=2, init="glorot_uniform")
    x = layers.Dropout(0.2, name="stem_dropout")(x)
    for i in range(1, 5):
        x = layers.DepthwiseConv2D(3, padding="same", name=f"block{i}_dw")(x)
        x = layers.BatchNormalization(name=f"block{i}_dw_bn")(x)
        x = layers.Activation("relu", name=f"block{i}_dw_relu")(x)
        x = _conv_bn(x, 64, 1, f"block{i}_pw", init="glorot_uniform")
    x = layers.Dropout(0.4, name="dropout")(x)
    outputs = _classifier(x, 12, tuple(x.shape[1:3]))
    return keras.Model(inputs, outputs, name="dscnn")


BUILDERS = {RESNET8: resnet8, KWS: dscnn}


def seeded_inputs(name: str, count: int, seed: int) -> np.ndarray:
    """`count` float inputs for model `name`, uniform over the real file's input range."""
    low, high = INPUT_RANGE[name]
    x = np.random.default_rng(seed).uniform(low, high, (count, *INPUT_SHAPE[name]))
    return x.astype(np.float32)


def _set_batch_norm(model, x: np.ndarray, rng: np.random.Generator) -> None:
    """Seeded gamma and beta, and moving statistics of one training-mode pass over `x` (momentum
    0 for that pass, so each layer's moving mean and variance are exactly its batch's)."""
    import keras

    norms = [lay for lay in model.layers if isinstance(lay, keras.layers.BatchNormalization)]
    for lay in norms:
        channels = lay.gamma.shape[0]
        lay.gamma.assign(rng.uniform(0.5, 1.5, channels).astype(np.float32))
        lay.beta.assign(rng.normal(0.0, 0.2, channels).astype(np.float32))
        lay.momentum = 0.0
    model(x, training=True)
    for lay in norms:
        lay.momentum = 0.99


def _set_head(model, x: np.ndarray, rng: np.random.Generator) -> None:
    """Seeded classifier weights scaled to the features' spread over `x`, and a bias that centres
    the logits: with the random trunk's features, a plain random head saturates the softmax
    on one class for every input, which would hide most differences upstream."""
    import keras

    dense = next(lay for lay in model.layers if isinstance(lay, keras.layers.Dense))
    features = np.asarray(keras.Model(model.input, dense.input)(x), dtype=np.float64)
    depth, classes = dense.kernel.shape
    spread = features.std(axis=0) * np.sqrt(depth) + 1e-6
    kernel = rng.normal(0.0, 1.0, (depth, classes)) / spread[:, None]
    dense.kernel.assign(kernel.astype(np.float32))
    dense.bias.assign((-features.mean(axis=0) @ kernel).astype(np.float32))


def _builtin(model, op) -> int:
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def _opcode_index(model, builtin: int) -> int:
    from ai_edge_litert import schema_py_generated as schema

    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = builtin
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _add_tensor(model, sub, tensor, data: bytes | None = None) -> int:
    """Append `tensor` to `sub` with a buffer of its own (`data` for a constant)."""
    from ai_edge_litert import schema_py_generated as schema

    buffer = schema.BufferT()
    buffer.data = None if data is None else np.frombuffer(data, dtype=np.uint8)
    model.buffers.append(buffer)
    tensor.buffer = len(model.buffers) - 1
    sub.tensors.append(tensor)
    return len(sub.tensors) - 1


def insert_flatten(tflite: bytes) -> bytes:
    """Put back the RESHAPE (1, 1, 1, C) -> (1, C) in front of FULLY_CONNECTED that the MLPerf
    files have (Keras' Flatten, as their older converter emitted it, with a constant shape
    tensor and no options): TensorFlow 2.21's converter drops it, since FULLY_CONNECTED
    flattens its input itself. The RESHAPE keeps the input's quantization, so the outputs are
    unchanged."""
    import copy

    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(tflite, 0))
    sub = model.subgraphs[0]
    at, fc = next((i, op) for i, op in enumerate(sub.operators)
                  if _builtin(model, op) == schema.BuiltinOperator.FULLY_CONNECTED)
    source = sub.tensors[fc.inputs[0]]
    flat = copy.deepcopy(source)
    flat.name = b"flatten/Reshape"
    flat.shape = flat.shapeSignature = np.array([1, source.shape[-1]], dtype=np.int32)
    shape = schema.TensorT()
    shape.name, shape.type = b"flatten/Const", schema.TensorType.INT32
    shape.shape = np.array([2], dtype=np.int32)
    reshape = schema.OperatorT()
    reshape.opcodeIndex = _opcode_index(model, schema.BuiltinOperator.RESHAPE)
    reshape.inputs = [fc.inputs[0], _add_tensor(model, sub, shape, flat.shape.tobytes())]
    reshape.outputs = [_add_tensor(model, sub, flat)]
    fc.inputs = [reshape.outputs[0], *fc.inputs[1:]]
    sub.operators.insert(at, reshape)
    builder = flatbuffers.Builder(len(tflite) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def op_counts(tflite: bytes) -> Counter:
    from aqedge.codegen.graph import read_tflite

    return Counter(op.opcode for op in read_tflite(tflite).ops)


def _convert_int8(model, representative: np.ndarray) -> bytes:
    """aqedge's full-int8 converter (aqedge.convert.ptq) with FULLY_CONNECTED weights per tensor,
    as in the real files (today's converter makes them per channel by default)."""
    from aqedge.convert.ptq import full_integer_converter

    converter = full_integer_converter(model, representative, len(representative))
    converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    return converter.convert()


def convert(name: str) -> bytes:
    """Build model `name` from the fixed seed and convert it to full int8."""
    import keras

    keras.utils.set_random_seed(SEED)
    model = BUILDERS[name]()
    rng = np.random.default_rng(SEED + 1)
    _set_batch_norm(model, seeded_inputs(name, 64, SEED + 2), rng)
    _set_head(model, seeded_inputs(name, 64, SEED + 3), rng)
    data = insert_flatten(_convert_int8(model, seeded_inputs(name, 100, SEED + 4)))
    if op_counts(data) != EXPECTED_OPS[name]:
        raise RuntimeError(f"rebuilt {name} converted to {dict(op_counts(data))}, "
                           f"not the MLPerf Tiny file's {dict(EXPECTED_OPS[name])}")
    return data


def source_hash() -> str:
    """Hash of what decides the converted bytes: this file, the converter settings and the
    TensorFlow and Keras versions."""
    import keras
    import tensorflow as tf
    from aqedge.convert import ptq

    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(inspect.getsource(ptq).encode())
    digest.update(f"tf {tf.__version__} keras {keras.__version__}".encode())
    return digest.hexdigest()[:16]


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build(directory: Path) -> dict[str, Path]:
    """Name -> path of both rebuilt `.tflite` files under `directory`, converted only when the
    cache has no file for the current source hash (files of other hashes are removed then)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = source_hash()
    paths = {}
    for name in BUILDERS:
        path = directory / f"{Path(name).stem}-{key}.tflite"
        if not path.is_file():
            _write_atomically(path, convert(name))
            for stale in directory.glob(f"{Path(name).stem}-*.tflite"):
                if stale != path:
                    stale.unlink(missing_ok=True)
        paths[name] = path
    return paths
