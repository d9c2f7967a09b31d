"""QAT model -> INT4 .tflite: packing, fidelity to the Keras fake-quant model, save/load,
MirroredStrategy training, errors for layers that cannot be quantized."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tensorflow as tf
import keras

from aqedge.convert import (convert_int8, convert_qat, inspect_tflite, pack_int4,  # noqa: E402
                            unpack_int4)
from aqedge.errors import AqError  # noqa: E402
from aqedge.qat import calibrate, quantize_model  # noqa: E402

L = keras.layers
N_TEST = 1000   # test images run through both interpreters


def relu_cnn(batch_size=None):
    inputs = keras.Input((28, 28, 1), batch_size=batch_size, name="image")
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = L.MaxPooling2D(2)(x)
    x = L.Conv2D(16, 3, padding="same", use_bias=False, name="conv_bn")(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Flatten()(x)
    x = L.Dense(32, activation="relu")(x)
    return keras.Model(inputs, L.Dense(10)(x), name="relu_cnn")


def swish_block_net():
    """Depthwise + Swish + hard-swish + ReLU6 + residual Add: the MobileNetV2 op mix."""
    inputs = keras.Input((12, 12, 1))
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(inputs)
    h = L.Conv2D(16, 1)(x)
    h = L.BatchNormalization()(h)
    h = L.Activation("swish")(h)
    h = L.DepthwiseConv2D(3, padding="same", activation="hard_swish")(h)
    h = L.Conv2D(8, 1)(h)
    x = L.Add(name="add")([x, h])
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(4)(x), name="swish_net")


@pytest.fixture(scope="session")
def fashion():
    from aqedge import datasets

    x, y = datasets.load("fashion-mnist", "train")
    xt, yt = datasets.load("fashion-mnist", "test")
    return x[:6000], y[:6000], xt[:N_TEST], yt[:N_TEST]


@pytest.fixture(scope="session")
def trained(fashion):
    """Relu CNN: 1 float epoch, then 2 QAT epochs (~190 steps) of adaptive W4A4."""
    from aqedge.train import fit, quantize_and_finetune

    x, y, _, _ = fashion
    fmodel = fit(relu_cnn(), x, y, epochs=1, seed=0)
    qat = quantize_and_finetune(fmodel, x, y, epochs=2, seed=0)
    buf = convert_qat(qat, x[:100])
    return fmodel, qat, buf


def _codes(info, which, value):
    t = info["tensors"][info[which][0]]
    return np.round(value / t["scale"][0]) + t["zero_point"][0]


def _run(buf, xs, interpreter="tflm"):
    info = inspect_tflite(buf)
    xin = np.clip(_codes(info, "inputs", xs), -128, 127).astype(np.int8)
    outs = []
    if interpreter == "tflm":
        from tflite_micro import runtime

        it = runtime.Interpreter.from_bytes(buf, arena_size=1 << 20)
        for x in xin:
            it.set_input(x[None], 0)
            it.invoke()
            outs.append(it.get_output(0).copy())
    else:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        it = Interpreter(model_content=buf, experimental_op_resolver_type=(
            OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
        it.allocate_tensors()
        i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
        for x in xin:
            it.set_tensor(i, x[None])
            it.invoke()
            outs.append(it.get_tensor(o).copy())
    return np.concatenate(outs).astype(np.int64)


# -- INT4 packing -----------------------------------------------------------------------------
def test_pack_int4_odd_count_low_nibble_first_sign_extended():
    vals = np.array([1, -2, 7, -8, 3], np.int8)
    packed = pack_int4(vals)
    assert packed == bytes([0xE1, 0x87, 0x03])          # (1, -2) (7, -8) (3, pad)
    np.testing.assert_array_equal(unpack_int4(packed, 5), vals)
    rnd = np.random.default_rng(1).integers(-8, 8, 37).astype(np.int8)
    np.testing.assert_array_equal(unpack_int4(pack_int4(rnd), 37), rnd)


def test_converter_packs_odd_weight_counts_like_the_quantizer():
    """3x3x1x1 (9) and 3x3x3x1 depthwise (27) kernels: the .tflite nibbles are round(w/s)."""
    from aqedge.codegen.graph import read_tflite

    keras.utils.set_random_seed(3)
    inputs = keras.Input((6, 6, 1))
    x = L.Conv2D(1, 3, padding="same", name="odd_conv")(inputs)
    x = L.Conv2D(3, 1, name="mid")(x)
    x = L.DepthwiseConv2D(3, name="odd_dw")(x)
    model = keras.Model(inputs, L.Flatten()(x))
    rep = np.random.default_rng(0).random((32, 6, 6, 1), dtype=np.float32)
    qat = quantize_model(model, first_last_bits=4, calibration_data=rep)
    buf = convert_qat(qat, rep)
    info = inspect_tflite(buf)
    graph = read_tflite(buf)
    checked = 0
    for op in info["ops"]:
        if op["op"] not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        t = info["tensors"][op["inputs"][1]]
        assert t["type"] == "INT4"
        count = int(np.prod(t["shape"]))
        if count % 2 == 0:
            continue
        assert t["bytes"] == (count + 1) // 2
        got = unpack_int4(graph.tensors[t["index"]].packed, count)   # the stored nibbles
        layer = qat.get_layer({9: "odd_conv", 3: "mid", 27: "odd_dw"}[count])
        w = layer.weight_quantizer(layer._to_channel_view(layer.kernel)).numpy()
        codes = np.round(w / layer.weight_quantizer.scale).astype(np.int8)  # (..., C)
        # TFLite layout: output channel first (conv OHWI; depthwise 1HWC keeps it last)
        if op["op"] == "CONV_2D":
            codes = np.moveaxis(codes, -1, 0)
        np.testing.assert_array_equal(got, codes.ravel())
        checked += 1
    assert checked == 3


# -- the trained model ------------------------------------------------------------------------
def test_conversion_is_int4_int8_batch1_without_float(trained, fashion):
    fmodel, qat, buf = trained
    info = inspect_tflite(buf)
    kinds = {(op["op"], op.get("weight_type")) for op in info["ops"] if "weight_type" in op}
    assert ("CONV_2D", "INT4") in kinds and ("FULLY_CONNECTED", "INT4") in kinds
    assert ("CONV_2D", "INT8") in kinds and ("FULLY_CONNECTED", "INT8") in kinds  # first/last
    assert not [t for t in info["tensors"] if t["type"].startswith("FLOAT")]
    for end in ("inputs", "outputs"):
        t = info["tensors"][info[end][0]]
        assert t["type"] == "INT8" and t["shape"][0] == 1
    # the learned s and beta are the tensor's scale and zero point
    q = qat.get_layer("conv_bn").output_quantizer
    s, zp, _, _ = q.quant_params()
    assert any(abs(t.get("scale", [0])[0] - s) < 1e-6 * s and t["zero_point"][0] == zp
               for t in info["tensors"])
    # weight bytes: W4 model <= 0.55 x the int8 model of the same network
    x = fashion[0]
    int8 = inspect_tflite(convert_int8(_batch1(fmodel), x[:100], samples=100))
    assert info["weight_bytes"] <= 0.55 * int8["weight_bytes"]


def _batch1(model):
    from aqedge.train import with_batch_size

    return with_batch_size(model, 1)


def test_four_bit_tensors_hold_at_most_16_values(trained, fashion):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    _, _, buf = trained
    info = inspect_tflite(buf)
    four = [t for t in info["tensors"] if t.get("value_bits") == 4]
    assert len(four) >= 3
    it = Interpreter(model_content=buf, experimental_preserve_all_tensors=True,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    xin = np.clip(_codes(info, "inputs", fashion[2][:200]), -128, 127).astype(np.int8)
    seen = {t["index"]: set() for t in four}
    for x in xin:
        it.set_tensor(info["inputs"][0], x[None])
        it.invoke()
        for i in seen:
            seen[i].update(np.unique(it.get_tensor(i)).tolist())
    for t in four:
        lo, hi = t["code_range"]
        assert len(seen[t["index"]]) <= 16, t["name"]
        assert min(seen[t["index"]]) >= lo and max(seen[t["index"]]) <= hi


def test_tflm_and_litert_match_the_keras_model(trained, fashion):
    _, qat, buf = trained
    _, _, xt, yt = fashion
    info = inspect_tflite(buf)
    keras_codes = _codes(info, "outputs", qat.predict(xt, batch_size=100, verbose=0))
    tflm = _run(buf, xt, "tflm")
    litert = _run(buf, xt, "litert")
    assert np.abs(tflm - keras_codes).max() <= 1
    assert np.mean(tflm == keras_codes) >= 0.999      # integer-exact inference path
    assert np.abs(litert - keras_codes).max() <= 1
    acc = np.mean(tflm.argmax(1) == yt)
    assert acc > 0.7, acc


def test_save_load_round_trip(trained, fashion, tmp_path):
    _, qat, _ = trained
    xt = fashion[2][:64]
    path = tmp_path / "qat.keras"
    qat.save(path)
    back = keras.models.load_model(path)
    np.testing.assert_array_equal(back.predict(xt, verbose=0), qat.predict(xt, verbose=0))
    np.testing.assert_array_equal(back(xt, training=True).numpy(), qat(xt, training=True).numpy())


@pytest.mark.parametrize("bits", [4, 3, 2])
def test_swish_depthwise_residual_net_converts_and_matches(bits, tmp_path):
    """INT4 DEPTHWISE_CONV_2D, Swish (LOGISTIC+MUL), HARD_SWISH, ADD and MEAN (global average
    pooling) with 4-, 3- and 2-bit activations: Keras, TFLite Micro and aqedge's generated C
    (compiled for the host) give the same codes, and every activation tensor after a quantizer
    holds 2**bits codes (none fewer). The low-bit clamp after HARD_SWISH (MAXIMUM / MINIMUM, which
    HARD_SWISH cannot fuse) is folded into the hard-swish kernel's output clamp."""
    from aqedge.codegen.host import build_host, run_host
    keras.utils.set_random_seed(0)
    rep = np.random.default_rng(0).random((64, 12, 12, 1), dtype=np.float32)
    for shift in (True, False):
        qat = quantize_model(swish_block_net(), calibration_data=rep, shift=shift,
                             activation_bits=bits)
        buf = convert_qat(qat, rep)
        info = inspect_tflite(buf)
        levels = [t["levels"] for t in info["tensors"] if "levels" in t]
        assert levels.count(2 ** bits) >= 4 and min(levels) == 2 ** bits, sorted(levels)
        ops = {op["op"] for op in info["ops"]}
        assert {"DEPTHWISE_CONV_2D", "LOGISTIC", "HARD_SWISH", "ADD", "MEAN"} <= ops
        dw = [op for op in info["ops"] if op["op"] == "DEPTHWISE_CONV_2D"][0]
        assert dw["weight_type"] == "INT4"
        tflm = _run(buf, rep, "tflm")
        np.testing.assert_array_equal(tflm, _codes(info, "outputs", qat.predict(rep, verbose=0)))
        assert {"MAXIMUM", "MINIMUM"} <= ops
        path = tmp_path / f"swish_a{bits}_shift_{shift}.tflite"
        path.write_bytes(buf)
        graph, _, runner = build_host(path, tmp_path / f"host_shift_{shift}")
        assert "aq_clamp_s8(" not in (tmp_path / f"host_shift_{shift}" / "model.c").read_text()
        xin = np.clip(_codes(info, "inputs", rep), -128, 127).astype(np.int8)
        ours = run_host(runner, xin, graph.tensors[graph.outputs[0]].nbytes)
        np.testing.assert_array_equal(ours, tflm.reshape(len(rep), -1))


def test_layer_bits_keeps_named_layers_at_8_bits_and_converts_exactly():
    """Mixed precision: `layer_bits` sets the weight and output bits of named layers (an INT8
    depthwise kernel and 8-bit ADD output among INT4 layers), TFLite Micro still equals Keras,
    and a name without a quantizer of its own (a folded BatchNormalization, a typo) is refused."""
    keras.utils.set_random_seed(0)
    rep = np.random.default_rng(0).random((64, 12, 12, 1), dtype=np.float32)
    model = swish_block_net()
    dw = next(lay.name for lay in model.layers if isinstance(lay, L.DepthwiseConv2D))
    qat = quantize_model(model, calibration_data=rep, layer_bits={dw: 8, "add": 8})
    assert (qat.get_layer(dw).weight_bits, qat.get_layer(dw).output_bits) == (8, 8)
    assert qat.get_layer("add_quant").bits == 8
    assert {lay.output_bits for lay in qat.layers
            if hasattr(lay, "output_bits") and lay.name != dw} == {4, 8}   # 8: the logits
    buf = convert_qat(qat, rep)
    info = inspect_tflite(buf)
    weight_types = {op["op"]: set() for op in info["ops"]}
    for op in info["ops"]:
        weight_types[op["op"]].add(op.get("weight_type"))
    assert weight_types["DEPTHWISE_CONV_2D"] == {"INT8"}
    assert "INT4" in weight_types["CONV_2D"]
    np.testing.assert_array_equal(_run(buf, rep, "tflm"),
                                  _codes(info, "outputs", qat.predict(rep, verbose=0)))
    bn = next(lay.name for lay in model.layers if isinstance(lay, L.BatchNormalization))
    for bad in (bn, "no_such_layer"):
        with pytest.raises(AqError, match=f"layer_bits names '{bad}': no quantized layer"):
            quantize_model(model, layer_bits={bad: 8})
    with pytest.raises(AqError, match="between 2 and 8"):
        quantize_model(model, layer_bits={dw: 16})


def test_training_forward_is_the_deployed_integer_model():
    """QAT trains the network TFLite runs: the training forward of every compute layer is its
    integer result (TFLite's double-rounding requantization moves ~10 % of the 8-bit codes in
    front of a Swish by one step against float rounding), while gradients still reach the
    weights, weight scales and activation scales and shifts through the float path."""
    keras.utils.set_random_seed(0)
    rep = np.random.default_rng(0).random((64, 12, 12, 1), dtype=np.float32)
    qat = quantize_model(swish_block_net(), calibration_data=rep)
    np.testing.assert_array_equal(qat(rep, training=True).numpy(), qat.predict(rep, verbose=0))
    y = np.eye(4, dtype=np.float32)[np.arange(64) % 4]
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.categorical_crossentropy(
            y, qat(rep, training=True), from_logits=True))
    grads = tape.gradient(loss, qat.trainable_variables)
    named = {v.path: g for v, g in zip(qat.trainable_variables, grads)}
    for part in ("kernel", "weight_quantizer/log_scale", "output_quantizer/log_scale",
                 "output_quantizer/shift"):
        hits = [g for path, g in named.items() if path.endswith(part)]
        assert hits and all(g is not None for g in hits), part
        assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in hits), part
    off = quantize_model(swish_block_net(), calibration_data=rep)
    for lay in off.layers:
        if hasattr(lay, "exact_training"):
            lay.exact_training = False
    off.set_weights(qat.get_weights())
    assert not np.array_equal(off(rep, training=True).numpy(), qat.predict(rep, verbose=0))


def test_concatenation_of_relu_branches_converts_and_matches():
    """A 4-bit CONCATENATION whose lower clip is exactly 0 keeps its quantizer's scale (no
    standalone RELU requantizing a calibrated range), so TFLite Micro equals Keras exactly."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1), name="image")
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="a")(inp)
    b = L.Conv2D(4, 3, padding="same", activation="relu", name="b")(inp)
    h = L.Concatenate(name="cat")([a, b])
    h = L.Flatten()(L.Conv2D(4, 3, padding="same", activation="relu", name="c")(h))
    model = keras.Model(inp, L.Dense(3, name="logits")(h))
    rep = np.random.default_rng(0).random((64, 8, 8, 1), dtype=np.float32)
    for shift in (True, False):
        qat = quantize_model(model, calibration_data=rep, shift=shift)
        q = qat.get_layer("cat_quant")
        if shift:
            q.set_params(q.quant_params()[0], 8 * q.quant_params()[0])   # window from exactly 0
        s, zp, cmin, _ = q.quant_params()
        assert (cmin - zp) * s == 0.0 and q.requantize_first
        buf = convert_qat(qat, rep)
        info = inspect_tflite(buf)
        cat = [op for op in info["ops"] if op["op"] == "CONCATENATION"][0]
        out = info["tensors"][cat["outputs"][0]]
        assert out["scale"][0] == pytest.approx(s, rel=1e-6) and out["zero_point"][0] == zp
        np.testing.assert_array_equal(_run(buf, rep, "tflm"),
                                      _codes(info, "outputs", qat.predict(rep, verbose=0)))


def test_upsampling_decoder_converts_to_resize_nearest_and_matches(tmp_path):
    """An encoder-decoder with nearest UpSampling2D (2x2 and 3x1) and a skip Add: quantized as a
    pass-through, exported as RESIZE_NEAREST_NEIGHBOR (not TILE, which TFLite Micro lacks), and
    Keras, TFLite Micro and the generated C give the same codes; bilinear is refused by name."""
    from aqedge.codegen.host import build_host, run_host

    keras.utils.set_random_seed(0)
    inp = keras.Input((12, 12, 1))
    skip = L.Conv2D(6, 3, padding="same", activation="relu6")(inp)
    h = L.Conv2D(6, 3, strides=(2, 4), padding="same", activation="swish")(skip)
    h = L.UpSampling2D((2, 4), name="up")(h)
    h = L.Add()([skip, h])
    h = L.UpSampling2D((3, 1))(L.MaxPooling2D(3)(h))
    model = keras.Model(inp, L.Conv2D(2, 1)(h))
    rep = np.random.default_rng(0).random((32, 12, 12, 1), dtype=np.float32)
    qat = quantize_model(model, calibration_data=rep)
    buf = convert_qat(qat, rep)
    info = inspect_tflite(buf)
    ops = [op["op"] for op in info["ops"]]
    assert ops.count("RESIZE_NEAREST_NEIGHBOR") == 2 and "TILE" not in ops, ops
    tflm = _run(buf, rep, "tflm")
    np.testing.assert_array_equal(tflm, _codes(info, "outputs", qat.predict(rep, verbose=0)))
    path = tmp_path / "up.tflite"
    path.write_bytes(buf)
    graph, _, runner = build_host(path, tmp_path / "host")
    xin = np.clip(_codes(info, "inputs", rep), -128, 127).astype(np.int8)
    ours = run_host(runner, xin, graph.tensors[graph.outputs[0]].nbytes)
    np.testing.assert_array_equal(ours, tflm.reshape(len(rep), -1))

    bilinear = keras.Model(inp, L.UpSampling2D(2, interpolation="bilinear", name="smooth")(skip))
    with pytest.raises(AqError, match="'smooth'.*only interpolation='nearest'"):
        quantize_model(bilinear)


@pytest.mark.parametrize("shift", [True, False])
@pytest.mark.parametrize("case", ["random", "ties"])
def test_global_average_pool_is_tflites_integer_mean(shift, case, tmp_path):
    """The quantizer after GlobalAveragePooling2D predicts TFLite Micro's int8 MEAN codes.

    `random`: 5×5 pool (1/25 folded into the multiplier), 4-bit output whose lower clip is 0 with
    `shift=True` (a RELU after MEAN). `ties`: 2×2 pool with s_in = s_out, so a quarter of the means
    lie exactly halfway between two codes; TFLite rounds those away from zero."""
    rng = np.random.default_rng(1)
    size, bits, s_in, s_out = (5, 4, 0.05, 0.061) if case == "random" else (2, 8, 0.1, 0.1)
    inputs = keras.Input((size, size, 8), name="x")
    pool = L.GlobalAveragePooling2D(keepdims=case == "ties", name="pool")(inputs)
    qat = quantize_model(keras.Model(inputs, pool), activation_bits=bits, shift=shift)
    qat.get_layer("x_quant").set_params(s_in, 0.0)
    qat.get_layer("pool_quant").set_params(s_out, 8 * s_out)   # shifted 4-bit window from 0
    codes = rng.integers(-128, 128, (64, size, size, 8))
    if case == "ties":
        sums = codes.sum(axis=(1, 2))
        assert np.any((sums % 4 == 2) & (sums < 0)) and np.any((sums % 4 == 2) & (sums > 0))
    x = (codes * s_in).astype(np.float32)
    buf = convert_qat(qat, x)
    info = inspect_tflite(buf)
    mean = [op for op in info["ops"] if op["op"] == "MEAN"][0]
    s, zp, _, _ = qat.get_layer("pool_quant").quant_params()
    mean_out = info["tensors"][mean["outputs"][0]]   # MEAN writes the quantizer's grid directly
    assert mean_out["scale"][0] == pytest.approx(s) and mean_out["zero_point"][0] == zp
    tflm = _run(buf, x, "tflm")
    np.testing.assert_array_equal(tflm, _codes(info, "outputs", qat.predict(x, verbose=0)))
    with tf.GradientTape() as tape:   # training: TFLite's values, the quantizer's gradients
        y = qat(x, training=True)
    np.testing.assert_array_equal(tflm, _codes(info, "outputs", y.numpy()))
    assert all(g is not None for g in tape.gradient(
        y, qat.get_layer("pool_quant").trainable_weights))
    qat.save(tmp_path / "mean.keras")
    back = keras.models.load_model(tmp_path / "mean.keras")
    np.testing.assert_array_equal(back.predict(x, verbose=0), qat.predict(x, verbose=0))


# -- training under MirroredStrategy ----------------------------------------------------------
MIRRORED = textwrap.dedent("""
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from aqedge.qat import quantize_model, calibrate
    L = keras.layers
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    rng = np.random.default_rng(0)
    x = rng.random((256, 8, 8, 1), dtype=np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0.5).astype(np.int32)
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    h = L.Conv2D(4, 3, activation="relu")(inp)
    h = L.Flatten()(h)
    fmodel = keras.Model(inp, L.Dense(2)(h))
    with strategy.scope():
        qat = quantize_model(fmodel)
        calibrate(qat, x)
        q = qat.get_layer("conv2d").output_quantizer
        before = (float(q.log_scale.numpy()), float(q.beta.numpy()))
        qat.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"],
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert "Mirrored" in type(q.log_scale.value).__name__, type(q.log_scale.value)
    hist = qat.fit(x, y, batch_size=32, epochs=2, verbose=0)
    after = (float(q.log_scale.numpy()), float(q.beta.numpy()))
    assert np.isfinite(hist.history["loss"]).all()
    assert after != before
    print("MIRRORED-OK", hist.history["loss"][-1])
""")


def test_trains_under_mirrored_strategy_on_two_cpus():
    r = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True,
                       timeout=300)
    assert "MIRRORED-OK" in r.stdout, r.stderr[-3000:]


# -- distillation -----------------------------------------------------------------------------
def test_distillation_targets_mix_labels_with_the_teachers_probabilities():
    from aqedge.train import distillation_targets

    keras.utils.set_random_seed(1)
    inp = keras.Input((6,))
    logits_model = keras.Model(inp, L.Dense(3)(inp))
    softmax_model = keras.Model(inp, L.Softmax()(logits_model(inp)))
    x = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
    y = np.arange(40) % 3
    probs = np.exp(x @ logits_model.layers[-1].kernel.numpy()
                   + logits_model.layers[-1].bias.numpy())
    probs /= probs.sum(axis=1, keepdims=True)
    want = 0.7 * np.eye(3)[y] + 0.3 * probs
    for teacher in (logits_model, softmax_model):      # logits are put through softmax first
        got = distillation_targets(teacher, x, y, 0.3)
        assert got.shape == (40, 3) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-6)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)
    with pytest.raises(AqError, match="between 0 and 1"):
        distillation_targets(logits_model, x, y, 1.5)


def test_distilled_fine_tuning_trains_on_soft_targets(fashion):
    from aqedge.train import fit, quantize_and_finetune

    x, y, _, _ = fashion
    fmodel = fit(relu_cnn(), x[:1000], y[:1000], epochs=1, seed=0)
    qat = quantize_and_finetune(fmodel, x[:1000], y[:1000], epochs=2, seed=0, distill=0.5)
    hist = qat.history.history
    assert hist["loss"][1] < hist["loss"][0] and np.isfinite(hist["loss"]).all()
    assert type(qat.loss).__name__ == "CategoricalCrossentropy"
    assert 0.0 < hist["accuracy"][1] <= 1.0


# -- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("make,kind", [
    (lambda: L.LSTM(4, name="my_lstm"), "LSTM"),
    (lambda: L.Conv3D(2, 3, name="my_conv3d"), "Conv3D"),
    (lambda: L.LeakyReLU(0.1, name="my_leaky"), "LeakyReLU"),
])
def test_unsupported_layer_is_named(make, kind):
    layer = make()
    shape = (6, 6, 6, 1) if kind == "Conv3D" else ((5, 3) if kind == "LSTM" else (8,))
    inp = keras.Input(shape)
    model = keras.Model(inp, layer(inp))
    with pytest.raises(AqError, match=f"'{layer.name}' \\({kind}\\)"):
        quantize_model(model)


def test_calibrate_needs_quantizers():
    inp = keras.Input((4,))
    with pytest.raises(AqError):
        calibrate(keras.Model(inp, L.Dense(2)(inp)), np.zeros((4, 4), np.float32))


def test_convert_refuses_a_float_model():
    inp = keras.Input((4,))
    with pytest.raises(AqError, match="quantize"):
        convert_qat(keras.Model(inp, L.Dense(2)(inp)))


def test_last_layer_input_is_kept_at_first_last_bits():
    """Like the first layer's (the 8-bit model input), the last layer's input activation gets
    `first_last_bits`, found through pass-through layers (Flatten); the rest stay 4-bit."""
    inp = keras.Input((8, 8, 1))
    h = L.Conv2D(4, 3, activation="relu", name="c1")(inp)
    h = L.Conv2D(4, 3, activation="swish", name="c2")(h)
    h = L.Flatten()(h)
    flat = keras.Model(inp, L.Dense(3, name="logits")(h))
    h = L.Conv2D(4, 3, activation="swish", name="c2")(L.Conv2D(4, 3, name="c1")(inp))
    h = L.GlobalAveragePooling2D(name="pool")(h)
    pooled = keras.Model(inp, L.Dense(3, name="logits")(h))
    for shift in (True, False):
        q = quantize_model(flat, shift=shift, first_last_bits=8)
        assert q.get_layer("c1").output_quantizer.bits == 4
        assert q.get_layer("c2").output_quantizer.bits == 8      # Flatten -> logits
        assert q.get_layer("logits").output_quantizer.bits == 8
        q = quantize_model(pooled, shift=shift, first_last_bits=6)
        assert q.get_layer("c2").output_quantizer.bits == 4
        assert q.get_layer("pool_quant").bits == 6
