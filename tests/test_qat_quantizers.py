"""Quantizers of aqedge.qat: forward values and pseudo-gradients against numpy, serialization."""

from __future__ import annotations

import numpy as np
import pytest

import tensorflow as tf
import keras

from aqedge.codegen.fixedpoint import quantize_multiplier  # noqa: E402
from aqedge.qat import ActivationQuantizer, MeanQuantizer, WeightQuantizer  # noqa: E402
from aqedge.qat.layers import tflite_requantize  # noqa: E402
from aqedge.qat.mean import tflite_mean  # noqa: E402
from aqedge.qat.quantizers import (activation_forward_np, activation_grads_np,  # noqa: E402
                                   activation_quant, weight_forward_np, weight_grads_np,
                                   weight_quant)

RNG = np.random.default_rng(0)


def _grads(fn, *args, upstream):
    ts = [tf.constant(a, tf.float32) for a in args]
    with tf.GradientTape() as tape:
        for t in ts:
            tape.watch(t)
        y = fn(*ts)
    return y.numpy(), [g.numpy() for g in tape.gradient(y, ts, output_gradients=upstream)]


@pytest.mark.parametrize("qmin,qmax,s,beta", [(-8, 7, 0.13, 0.52), (0, 15, 0.21, 0.0),
                                              (-8, 7, 0.05, -0.35), (-128, 127, 0.01, 0.3)])
def test_activation_forward_and_gradients_match_numpy(qmin, qmax, s, beta):
    x = RNG.normal(0.4, 1.2, (3, 5, 4)).astype(np.float32)   # many values out of range
    up = RNG.normal(size=x.shape).astype(np.float32)
    y, (dx, ds, db) = _grads(lambda x, s, b: activation_quant(x, s, b, qmin, qmax),
                             x, s, beta, upstream=up)
    ref = activation_forward_np(x.astype(np.float64), s, beta, qmin, qmax)
    np.testing.assert_allclose(y, ref, atol=1e-5)
    rdx, rds, rdb = activation_grads_np(x, s, beta, qmin, qmax, upstream=up)
    np.testing.assert_array_equal(dx, rdx.astype(np.float32))
    np.testing.assert_allclose(ds, rds, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(db, rdb, rtol=1e-4, atol=1e-6)
    assert len(np.unique(np.round(y[0] / s))) <= qmax - qmin + 1


def test_shift_is_kept_on_the_step_grid():
    """β = 0.52 with s = 0.13 is 4 steps; β = 0.55 (4.23 steps) acts as 4 steps."""
    x = np.linspace(-2, 2, 101).astype(np.float32)[None]
    a = activation_quant(tf.constant(x), tf.constant(0.13), tf.constant(0.55), -8, 7).numpy()
    b = activation_quant(tf.constant(x), tf.constant(0.13), tf.constant(0.52), -8, 7).numpy()
    np.testing.assert_array_equal(a, b)
    codes = a / 0.13
    np.testing.assert_allclose(codes, np.round(codes), atol=1e-4)   # zero is a level


def test_activation_quantizer_layer_gradient_reaches_log_scale_and_shift():
    q = ActivationQuantizer(bits=4, shift=True)
    q.build((None, 6))
    q.set_params(0.1, 0.3)
    x = tf.constant(RNG.normal(0.2, 0.6, (4, 6)), tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(q(x) * 1.7)
    g_log, g_beta = tape.gradient(loss, [q.log_scale.value, q.beta.value])
    _, rds, rdb = activation_grads_np(x.numpy(), 0.1, 0.3, -8, 7,
                                      upstream=np.full((4, 6), 1.7))
    np.testing.assert_allclose(g_log.numpy(), 0.1 * rds, rtol=1e-4, atol=1e-6)  # ∂s/∂log s = s
    np.testing.assert_allclose(g_beta.numpy(), rdb, rtol=1e-4, atol=1e-6)


def test_zero_point_maps_levels_to_codes():
    q = ActivationQuantizer(bits=4, shift=True)
    q.build((None, 1))
    q.set_params(0.25, 2.0)               # β = 8 steps: levels cover [0, 3.75]
    s, zp, cmin, cmax = q.quant_params()
    assert s == pytest.approx(0.25) and (zp, cmin, cmax) == (-8, -8, 7)
    lsq = ActivationQuantizer(bits=4, shift=False, unsigned=True)
    lsq.build((None, 1))
    lsq.set_params(0.25, 2.0)             # no shift: β stays 0
    assert lsq.quant_params()[1:] == (0, 0, 15)
    assert float(lsq.beta.numpy()) == 0.0 and not lsq.beta.trainable


@pytest.mark.parametrize("per_channel", [True, False])
def test_weight_forward_and_gradients_match_numpy(per_channel):
    w = RNG.normal(0, 0.3, (3, 3, 4, 5)).astype(np.float32)
    s = (RNG.uniform(0.03, 0.08, 5) if per_channel else np.float64(0.05)).astype(np.float32)
    up = RNG.normal(size=w.shape).astype(np.float32)
    y, (dw, ds) = _grads(lambda w, s: weight_quant(w, s, 7), w, s, upstream=up)
    np.testing.assert_allclose(y, weight_forward_np(w.astype(np.float64), s, 7), atol=1e-6)
    rdw, rds = weight_grads_np(w, s.astype(np.float64), 7, upstream=up)
    np.testing.assert_array_equal(dw, rdw.astype(np.float32))
    np.testing.assert_allclose(ds, rds, rtol=1e-4, atol=1e-6)
    assert np.abs(np.round(y / s)).max() <= 7


def test_weight_scale_init_is_narrow_range_and_mse_optimal():
    w = RNG.normal(0, 0.1, (64, 8)).astype(np.float32)
    q = WeightQuantizer(bits=4, per_channel=True)
    q.build(w.shape)
    q.init_from(w, "minmax")
    np.testing.assert_allclose(q.scale, np.abs(w).max(0) / 7, rtol=1e-5)
    err_minmax = np.mean((weight_forward_np(w, q.scale, 7) - w) ** 2)
    q.init_from(w, "mse")
    assert np.mean((weight_forward_np(w, q.scale, 7) - w) ** 2) <= err_minmax


def test_calibration_minmax_and_mse():
    v = RNG.uniform(-0.5, 2.5, 20000).astype(np.float32)
    q = ActivationQuantizer(bits=4, shift=True)
    q.build((None,))
    q.calibrate_from(v, "minmax")
    s, zp, _, _ = q.quant_params()
    assert s == pytest.approx((v.max() - v.min()) / 15, rel=1e-5)
    assert zp == -round(float(q.beta.numpy()) / s)
    q.calibrate_from(np.concatenate([v, [40.0]]), "mse")   # one outlier: MSE search clips it
    assert q.quant_params()[0] < 0.5


def test_quantizers_serialize_round_trip():
    for q in (ActivationQuantizer(bits=4, shift=False, unsigned=True, name="aq"),
              MeanQuantizer(axes=(2, 3), bits=4, name="mq"),
              WeightQuantizer(bits=8, per_channel=False, name="wq")):
        blob = keras.saving.serialize_keras_object(q)
        back = keras.saving.deserialize_keras_object(blob)
        assert type(back) is type(q) and back.get_config() == q.get_config()
    q = ActivationQuantizer(bits=4, shift=True)
    q.build((None, 3))
    q.set_params(0.2, 0.6)
    back = ActivationQuantizer.from_config(q.get_config())
    back.build((None, 3))
    back.set_weights(q.get_weights())
    x = tf.constant(RNG.normal(size=(2, 3)), tf.float32)
    np.testing.assert_array_equal(q(x).numpy(), back(x).numpy())


def _mbqm(acc: int, q31: int, shift: int) -> int:
    """TFLite MultiplyByQuantizedMultiplier, in Python integers."""
    left, right = max(shift, 0), max(-shift, 0)
    ab = (acc * (1 << left)) * q31
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    hm = int((ab + nudge) / (1 << 31)) if abs(ab + nudge) < 2 ** 52 else \
        (abs(ab + nudge) >> 31) * (1 if ab + nudge >= 0 else -1)
    mask = (1 << right) - 1
    rem, thr = hm & mask, (mask >> 1) + (1 if hm < 0 else 0)
    return (hm >> right) + (1 if rem > thr else 0)


def test_requantization_is_tflites():
    acc = RNG.integers(-200000, 200000, 400)
    mult = RNG.uniform(1e-4, 0.9, 400)
    got = tflite_requantize(tf.constant(acc, tf.float32), tf.constant(mult, tf.float64)).numpy()
    want = [_mbqm(int(a), *quantize_multiplier(float(m))) for a, m in zip(acc, mult)]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("count", [2, 4, 25, 36, 49, 100])
def test_mean_is_tflites(count):
    """`tflite_mean` = TFLite's QuantizedMeanOrSum: QuantizeMultiplier(s_in/s_out), 1/count
    folded in by integer division, MultiplyByQuantizedMultiplier of the zero-corrected sum."""
    x = RNG.integers(-255, 256, (60, count, 4))          # codes − zero point
    mult = float(RNG.uniform(0.2, 5.0))                  # s_in / s_out
    got = tflite_mean(tf.constant(x, tf.float32), (1,), False, tf.constant(mult, tf.float64))
    q31, shift = quantize_multiplier(mult)
    fold = min(count.bit_length() - 1, 32, 31 + shift)
    want = [[_mbqm(int(a), (q31 << fold) // count, shift - fold) for a in row]
            for row in x.sum(axis=1)]
    np.testing.assert_array_equal(got.numpy(), want)
