"""Leading Rescaling / Normalization layers folded into the int8 input quantization
(aqedge/preprocess.py): the composed map against Keras, int8 PTQ and QAT export without the
MUL/ADD/SUB, the map read back from the .tflite metadata, and TFLite Micro, aqedge's host C and
the QAT model agreeing on quantize(T(raw))."""

from __future__ import annotations

import json

import numpy as np
import pytest

import keras

from aqedge.codegen.build import BuildInfo, TensorInfo
from aqedge.codegen.graph import read_tflite
from aqedge.codegen.host import build_host, run_host
from aqedge.convert import convert_int8, convert_qat, inspect_tflite
from aqedge.errors import AqError
from aqedge.preprocess import Affine, leading_preprocessing, strip_preprocessing
from aqedge.qat import calibrate, quantize_model
from aqedge.qat.layers import InputTransform
from aqedge.reference import TflmReference

from test_qat_convert import _codes

L = keras.layers
EPS = 1e-7   # keras.config.epsilon(): Normalization divides by max(sqrt(variance), EPS)


def _raw(n, channels, seed):
    """Seeded raw pixels 0..255 (float32)."""
    return np.random.default_rng(seed).integers(0, 256, (n, 16, 16, channels)).astype(np.float32)


def _adapted(data, **kw):
    norm = L.Normalization(**kw)
    norm.adapt(data)
    return norm


def _tail(x, classes=3):
    x = L.Conv2D(4, 3)(x)
    x = L.ReLU()(x)
    x = L.Flatten()(x)
    x = L.Dense(classes)(x)
    return L.Softmax()(x)


def rescaling_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 1), batch_size=1)   # batch 1: a static RESHAPE
    return keras.Model(inputs, _tail(L.Rescaling(1 / 255)(inputs)), name="rescaled")


def normalization_model():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 3), batch_size=1)
    norm = _adapted(_raw(200, 3, seed=7), name="norm")
    return keras.Model(inputs, _tail(norm(inputs)), name="normalized")


def _expected(model) -> Affine:
    """The layers' math written out: Rescaling x·a + b, Normalization (x − m)/max(√v, ε)."""
    layer = model.layers[1]
    if isinstance(layer, L.Rescaling):
        return Affine.of(layer.scale, layer.offset)
    m = np.asarray(layer.mean, np.float64).ravel()
    k = 1.0 / np.maximum(np.sqrt(np.asarray(layer.variance, np.float64).ravel()), EPS)
    return Affine.of(k, -m * k)


def _quantize(graph, x):
    """quantize(T(x)) with the .tflite's input scale and zero point, as the harness does it."""
    inp = graph.tensors[graph.inputs[0]]
    t = graph.input_transform.apply(x)
    return np.clip(np.round(t / inp.single_scale()) + inp.single_zero_point(),
                   -128, 127).astype(np.int8)


# -- the composed map ---------------------------------------------------------------------------
@pytest.mark.parametrize("chain", ["rescale", "rescale_offset_norm", "norm_scalar_rescale",
                                   "given_tiny_variance", "per_channel_rescale"])
def test_composed_map_equals_the_keras_layers(chain):
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 255, (64, 5, 5, 3)).astype(np.float32)
    layers = {
        "rescale": [L.Rescaling(1 / 255)],
        "rescale_offset_norm": [L.Rescaling(1 / 127.5, offset=-1.0),
                                _adapted(x / 127.5 - 1.0), L.Rescaling(0.5, offset=0.25)],
        "norm_scalar_rescale": [_adapted(x, axis=None), L.Rescaling(2.0)],
        "given_tiny_variance": [L.Normalization(mean=[1.0, 2.0, 3.0],
                                                variance=[4.0, 1e-16, 0.25])],
        "per_channel_rescale": [L.Rescaling([0.5, 1.0, 2.0], offset=[0.0, -1.0, 3.0])],
    }[chain]
    inputs = keras.Input((5, 5, 3))
    y = inputs
    for layer in layers:
        y = layer(y)
    model = keras.Model(inputs, L.Dense(2)(y))
    nodes, transform, end = leading_preprocessing(model)
    assert [n.operation for n in nodes] == layers and end is y
    want = keras.Model(inputs, y).predict(x, verbose=0).astype(np.float64)
    got = x.astype(np.float64) * transform.scale + transform.offset
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(transform.apply(x), want, rtol=1e-6, atol=1e-6)
    assert len(transform.scale) == (1 if chain in ("rescale", "norm_scalar_rescale") else 3)
    if chain == "given_tiny_variance":   # √1e-16 < ε: the divisor is ε
        assert transform.scale[1] == pytest.approx(1 / EPS)


def test_preprocessing_that_cannot_fold_is_refused_by_name():
    inputs = keras.Input((4, 4, 2))
    inv = L.Normalization(mean=[1.0, 2.0], variance=[1.0, 4.0], invert=True, name="denorm")
    with pytest.raises(AqError, match="'denorm' \\(Normalization\\): invert=True"):
        quantize_model(keras.Model(inputs, L.Dense(2)(L.Flatten()(inv(inputs)))))
    spatial = _adapted(np.random.default_rng(0).random((8, 4, 4, 2)), axis=(1, 2, 3), name="sp")
    with pytest.raises(AqError, match="'sp' \\(Normalization\\).*varies along more"):
        quantize_model(keras.Model(inputs, L.Dense(2)(L.Flatten()(spatial(inputs)))))
    x = L.Conv2D(2, 1)(inputs)   # not at the input
    mid = L.Rescaling(0.5, name="mid")(x)
    with pytest.raises(AqError, match="'mid' \\(Rescaling\\): only preprocessing right after"):
        quantize_model(keras.Model(inputs, L.Dense(2)(L.Flatten()(mid))))
    twice = L.Rescaling(0.5, name="twice")   # a shared layer
    shared = keras.Model(inputs, L.Dense(2)(L.Flatten()(twice(twice(inputs)))))
    with pytest.raises(AqError, match="'twice' \\(Rescaling\\) is used more than once"):
        convert_int8(shared, np.zeros((1, 4, 4, 2), np.float32))
    branch = L.Rescaling(0.5, name="branch")(inputs)   # the Input is read by something else too
    with pytest.raises(AqError, match="'branch' \\(Rescaling\\)"):
        quantize_model(keras.Model(inputs, L.Dense(2)(L.Flatten()(L.Add()([branch, inputs])))))


# -- int8 post-training quantization -----------------------------------------------------------
@pytest.fixture(scope="module", params=["rescaling", "normalization"])
def ptq(request, tmp_path_factory):
    model = {"rescaling": rescaling_model, "normalization": normalization_model}[request.param]()
    channels = model.inputs[0].shape[-1]
    buf = convert_int8(model, _raw(100, channels, seed=10), samples=100)
    path = tmp_path_factory.mktemp(request.param) / f"{request.param}.tflite"
    path.write_bytes(buf)
    return model, path, _raw(60, channels, seed=11)


def test_int8_export_drops_the_preprocessing_and_records_it(ptq):
    model, path, _ = ptq
    buf = path.read_bytes()
    ops = [op["op"] for op in inspect_tflite(buf)["ops"]]
    assert ops == ["CONV_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"]
    graph = read_tflite(path)
    want = _expected(model)
    np.testing.assert_allclose(graph.input_transform.scale, want.scale, rtol=1e-12)
    np.testing.assert_allclose(graph.input_transform.offset, want.offset, rtol=1e-12, atol=1e-15)
    # the representative data went through T: the input range is T's range, not 0..255
    inp = graph.tensors[graph.inputs[0]]
    lo = (-128 - inp.single_zero_point()) * inp.single_scale()
    hi = (127 - inp.single_zero_point()) * inp.single_scale()
    t = want.apply(_raw(100, model.inputs[0].shape[-1], seed=10))
    assert lo <= t.min() + inp.single_scale() and hi >= t.max() - inp.single_scale()
    assert hi - lo < 2 * (t.max() - t.min()) + 1e-6
    # both reference runtimes load the file with its metadata
    from ai_edge_litert.interpreter import Interpreter

    Interpreter(model_content=buf).allocate_tensors()
    TflmReference(buf)
    # the stripped float model alone has no preprocessing left
    stripped, transform = strip_preprocessing(model)
    assert not any(isinstance(ly, (L.Rescaling, L.Normalization)) for ly in stripped.layers)
    assert transform is not None


def test_int8_tflm_equals_host_c_and_the_float_model(ptq, tmp_path):
    model, path, x = ptq
    graph, _, runner = build_host(path, tmp_path / "host")
    xin = _quantize(graph, x)
    tflm = TflmReference(path.read_bytes()).run_many(xin)
    ours = run_host(runner, xin, graph.tensors[graph.outputs[0]].nbytes)
    np.testing.assert_array_equal(ours, tflm)
    float_argmax = model.predict(x, batch_size=1, verbose=0).argmax(1)
    assert np.mean(float_argmax == tflm.argmax(1)) >= 0.9


def test_build_info_inspect_and_samples_carry_the_transform(ptq, tmp_path):
    """build.json keeps T (and loads without it), `aqedge inspect` shows it, and the harness
    quantizes T(x) of the user's raw samples."""
    from aqedge.datasets import DataSpec
    from aqedge.harness.samples import load_samples
    from aqedge.inspect import inspect_model

    model, path, x = ptq
    graph = read_tflite(path)
    inp, out = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    info = BuildInfo(board="b", model=path.name, model_sha256="0", ops=len(graph.ops),
                     arena_bytes=0, flash_bytes=0, ram_bytes=0,
                     input=TensorInfo.of(inp, graph.input_transform), output=TensorInfo.of(out))
    info.save(tmp_path)
    back = BuildInfo.load(tmp_path)
    assert back.input.transform_scale == graph.input_transform.scale.tolist()
    assert back.input.transform_offset == graph.input_transform.offset.tolist()
    raw = json.loads((tmp_path / "build.json").read_text())
    for key in ("transform_scale", "transform_offset"):
        del raw["input"][key]
    (tmp_path / "build.json").write_text(json.dumps(raw))
    assert BuildInfo.load(tmp_path).input.transform_scale is None   # an old build.json

    data = tmp_path / "raw.npz"
    np.savez(data, x=x, y=np.zeros(len(x), np.int64))
    samples = load_samples(back, DataSpec(str(data)), len(x))
    np.testing.assert_array_equal(samples.inputs, _quantize(graph, x))

    text = inspect_model(path)["input_transform"]["text"]
    assert text.startswith("raw values, x*")
    if graph.input_transform.per_tensor:
        s, z = inp.single_scale(), inp.single_zero_point()
        assert text == (f"raw values, x*{1 / 255:.6g} + 0 folded into the int8 input "
                        f"quantization: effective scale {s / (1 / 255):.6g}, zero point {z:.6g}")
    else:
        assert text.endswith("(per channel)")


# -- quantization-aware training ---------------------------------------------------------------
def test_qat_model_takes_raw_values_and_converts_exactly(tmp_path):
    """quantize_model puts the Rescaling in front of the 8-bit input quantizer; calibration and
    a 1-epoch fit run on raw pixels; after a .keras round trip convert_qat drops it, and TFLite
    Micro on quantize(T(x)) gives the QAT model's integer predictions exactly."""
    from aqedge.train import fit

    x = _raw(256, 1, seed=20)
    y = (x[:, :8].mean((1, 2, 3)) > x[:, 8:].mean((1, 2, 3))).astype(np.int64)   # top brighter
    keras.utils.set_random_seed(0)
    qat = quantize_model(rescaling_model())
    kinds = [type(ly).__name__ for ly in qat.layers[:3]]
    assert kinds == ["InputLayer", "InputTransform", "ActivationQuantizer"]
    calibrate(qat, x)
    fit(qat, x, y, epochs=1, lr=1e-3, seed=0)

    path = tmp_path / "qat.keras"
    qat.save(path)
    back = keras.models.load_model(path)
    xt = _raw(64, 1, seed=21)
    np.testing.assert_array_equal(back.predict(xt, verbose=0), qat.predict(xt, verbose=0))
    assert isinstance(back.layers[1], InputTransform)

    buf = convert_qat(back, x[:100])
    info = inspect_tflite(buf)
    assert not {"MUL", "ADD", "SUB"} & {op["op"] for op in info["ops"]}
    graph = read_tflite(buf)
    np.testing.assert_allclose(graph.input_transform.scale, [1 / 255], rtol=1e-7)
    np.testing.assert_array_equal(graph.input_transform.offset, [0.0])
    tflm = TflmReference(buf).run_many(_quantize(graph, xt)).astype(np.int64)
    np.testing.assert_array_equal(tflm, _codes(info, "outputs", qat.predict(xt, verbose=0)))
