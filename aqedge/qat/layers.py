"""Quantized layers: Conv2D / DepthwiseConv2D / Dense with BatchNorm folded in, and activations.

A quantized compute layer is one TFLite op (plus, for Swish / hard-swish, its activation op):

    x ─▶ conv(x, Wq(kernel)) + bias ─▶ activation ─▶ ActivationQuantizer ─▶ y

* `kernel` and `bias` are the float layer's weights with a following BatchNormalization folded in
  at `quantize_model` time (frozen statistics), so training sees exactly what is deployed.
* ReLU / ReLU6 / linear fuse into the TFLite op; Swish, hard-swish and softmax do not, so their
  input (the op's int8 output) gets its own 8-bit quantizer (`pre_quantizer`) as in TFLite.
* Swish's sigmoid is rounded to the 1/256 grid TFLite's int8 LOGISTIC output imposes.
* The producing quantizer's scale `s_in` comes in as a second input (`input_scale`, an edge of
  the Keras graph that `quantize_model` draws), so the bias is rounded to TFLite's int32 grid
  `s_in·s_w`, and inference (`training=False`) runs `integer_forward`: integer accumulator,
  int32 bias and TFLite's fixed-point requantization (double rounding), i.e. the Keras model
  predicts the TFLite Micro int8 outputs bit for bit (CONV_2D, DEPTHWISE_CONV_2D,
  FULLY_CONNECTED, fused ReLU/ReLU6, Swish as LOGISTIC+MUL). Training uses the float forward.

Every layer is registered serializable: `.keras` save/load restores identical outputs.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from .quantizers import ActivationQuantizer, WeightQuantizer

_PKG = "aqedge"

#: activations a quantized layer can apply, by Keras name
FUSED = ("linear", "relu", "relu6")          # fused into the TFLite op's output clamp
UNFUSED = ("silu", "hard_silu", "softmax")   # separate TFLite op: gets an 8-bit input quantizer
ACTIVATIONS = FUSED + UNFUSED
NONNEGATIVE = ("relu", "relu6", "softmax")


def _sigmoid_q(x):
    # TFLite int8 LOGISTIC output: scale 1/256, zero point -128 (straight-through gradient)
    return tf.quantization.fake_quant_with_min_max_args(
        tf.sigmoid(x), min=0.0, max=255.0 / 256.0, num_bits=8)


def apply_activation(name: str, x):
    if name == "linear":
        return x
    if name == "relu":
        return tf.nn.relu(x)
    if name == "relu6":
        return tf.nn.relu6(x)
    if name == "silu":
        return x * _sigmoid_q(x)
    if name == "hard_silu":
        return x * tf.nn.relu6(x + 3.0) * (1.0 / 6.0)
    if name == "softmax":
        return tf.nn.softmax(x, axis=-1)
    raise ValueError(f"unsupported activation {name!r}")


def softmax_output_quantizer(name=None):
    """The fixed int8 range TFLite gives a softmax output: scale 1/256, zero point −128."""
    return ActivationQuantizer(bits=8, shift=True, init_scale=1.0 / 256.0, init_shift=0.5,
                               fixed=True, name=name)


def _round_away(v):
    return tf.sign(v) * tf.floor(tf.abs(v) + 0.5)


def quantize_multiplier(multiplier):
    """TFLite's `QuantizeMultiplier` in TF ops: `multiplier = q31·2^(shift−31)`, `q31` in
    [2^30, 2^31) (int64 tensors); `multiplier` is a positive float64 tensor."""
    m = tf.cast(multiplier, tf.float64)
    e = tf.floor(tf.math.log(m) / np.log(2.0)) + 1.0
    q = m / tf.pow(2.0 * tf.ones_like(m), e)
    e = tf.where(q >= 1.0, e + 1.0, tf.where(q < 0.5, e - 1.0, e))   # frexp: q in [0.5, 1)
    q = m / tf.pow(2.0 * tf.ones_like(m), e)
    q31 = _round_away(q * 2.0 ** 31)
    e = tf.where(q31 >= 2.0 ** 31, e + 1.0, e)
    q31 = tf.where(q31 >= 2.0 ** 31, q31 / 2.0, q31)
    return tf.cast(q31, tf.int64), tf.cast(e, tf.int64)


def multiply_by_quantized_multiplier(acc, q31, shift):
    """TFLite's `MultiplyByQuantizedMultiplier(acc, q31, shift)`, exactly: a rounding Q31 high
    multiply, then a rounding (half away from zero) right shift. `acc` holds integers (float32
    is exact below 2^24); `q31`, `shift` are int64 (per last axis or scalars)."""
    left = tf.maximum(shift, 0)
    right = tf.maximum(-shift, 0)
    x = tf.cast(acc, tf.int64) * tf.bitwise.left_shift(tf.ones_like(left), left)
    ab = x * q31
    nudge = tf.where(ab >= 0, tf.constant(1 << 30, tf.int64), tf.constant(1 - (1 << 30), tf.int64))
    hm = tf.truncatediv(ab + nudge, tf.constant(1 << 31, tf.int64))
    mask = tf.bitwise.left_shift(tf.ones_like(right), right) - 1
    rem = tf.bitwise.bitwise_and(hm, mask)
    thr = tf.bitwise.right_shift(mask, 1) + tf.cast(hm < 0, tf.int64)
    out = tf.bitwise.right_shift(hm, right) + tf.cast(rem > thr, tf.int64)
    return tf.cast(out, tf.float32)


def tflite_requantize(acc, multiplier):
    """TFLite's `MultiplyByQuantizedMultiplier(acc, QuantizeMultiplier(multiplier))`, exactly.

    `acc` holds integers (float32 is exact below 2^24); `multiplier` is `s_in·s_w/s_out` per
    output channel (last axis) or a scalar. Double rounding as in TFLite / TFLite Micro reference
    kernels: a rounding Q31 high multiply, then a rounding (half away from zero) right shift.
    """
    return multiply_by_quantized_multiplier(acc, *quantize_multiplier(multiplier))


class _QuantActivationMixin:
    """Shared activation + output-quantizer handling (`activation`, `output_bits`, `shift`)."""

    def _make_quantizers(self):
        unsigned = self.activation in NONNEGATIVE
        self.pre_quantizer = None
        if self.activation in UNFUSED:
            self.pre_quantizer = ActivationQuantizer(bits=8, shift=self.shift, unsigned=False,
                                                     name="pre_quantizer")
        if self.activation == "softmax":
            self.output_quantizer = softmax_output_quantizer(name="output_quantizer")
        else:
            self.output_quantizer = ActivationQuantizer(
                bits=self.output_bits, shift=self.shift, unsigned=unsigned,
                name="output_quantizer")

    def _build_quantizers(self, shape):
        if self.pre_quantizer is not None:
            self.pre_quantizer.build(shape)
        self.output_quantizer.build(shape)

    def _activate(self, y, training=None):
        if self.pre_quantizer is not None:
            y = self.pre_quantizer(y)
        y = apply_activation(self.activation, y)
        if self.activation == "softmax" and training:
            return y   # quantized probabilities would zero the cross-entropy gradient
        lower = 0.0 if self.activation in NONNEGATIVE else None
        return self.output_quantizer(y, lower_bound=lower)

    def _result(self, y):
        return (y, self.output_quantizer.scale_tensor()) if self.return_scale else y

    def _act_config(self):
        return dict(activation=self.activation, output_bits=self.output_bits, shift=self.shift,
                    return_scale=self.return_scale)


@keras.saving.register_keras_serializable(package=_PKG)
class QuantActivation(_QuantActivationMixin, keras.layers.Layer):
    """A standalone activation (not after a conv) followed by its activation quantizer."""

    def __init__(self, activation="relu", output_bits=4, shift=True, return_scale=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.activation, self.output_bits, self.shift = activation, int(output_bits), bool(shift)
        self.return_scale = bool(return_scale)
        self._make_quantizers()

    def build(self, input_shape):
        self._build_quantizers(input_shape)

    def call(self, x, training=None):
        return self._result(self._activate(x, training))

    def get_config(self):
        cfg = super().get_config()
        cfg.update(self._act_config())
        return cfg


class _QuantCompute(_QuantActivationMixin, keras.layers.Layer):
    """Base of the quantized compute layers: kernel, bias, weight and activation quantizers."""

    per_channel = True

    def __init__(self, activation="linear", weight_bits=4, output_bits=4, shift=True,
                 return_scale=False, exact_training=True, **kwargs):
        super().__init__(**kwargs)
        self.return_scale = bool(return_scale)
        self.exact_training = bool(exact_training)
        if activation not in ACTIVATIONS:
            raise ValueError(f"unsupported activation {activation!r}")
        self.activation, self.weight_bits = activation, int(weight_bits)
        self.output_bits, self.shift = int(output_bits), bool(shift)
        self.weight_quantizer = WeightQuantizer(bits=weight_bits, per_channel=self.per_channel,
                                                name="weight_quantizer")
        self._make_quantizers()

    def build(self, input_shape):
        kshape = self._kernel_shape(input_shape)
        self.kernel = self.add_weight(name="kernel", shape=kshape,
                                      initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self._channels(input_shape),),
                                    initializer="zeros")
        self.weight_quantizer.build(self._channel_view(kshape))
        out_shape = self._out_shape(input_shape)
        self._build_quantizers(out_shape)

    # channel view: the kernel with its output channels on the last axis
    def _channel_view(self, kshape):
        return kshape

    def _to_channel_view(self, w):
        return w

    def _from_channel_view(self, w):
        return w

    def quantized_kernel(self):
        w = self._to_channel_view(tf.convert_to_tensor(self.kernel))
        return self._from_channel_view(self.weight_quantizer(w))

    def init_weight_scale(self, method="mse"):
        w = self._to_channel_view(tf.convert_to_tensor(self.kernel))
        self.weight_quantizer.init_from(keras.ops.convert_to_numpy(w), method)

    def set_float_weights(self, kernel, bias):
        self.kernel.assign(np.asarray(kernel, np.float32))
        self.bias.assign(np.asarray(bias, np.float32))

    def quantized_bias(self, input_scale):
        """The bias on TFLite's int32 grid `s_in·s_w` (straight-through), given `s_in`."""
        bias = tf.convert_to_tensor(self.bias)
        if input_scale is None or self.weight_quantizer.export:
            return bias   # the converter rounds it the same way
        step = tf.stop_gradient(tf.reshape(input_scale, ()) * tf.exp(
            tf.convert_to_tensor(self.weight_quantizer.log_scale)))
        return bias + tf.stop_gradient(tf.round(bias / step) * step - bias)

    def call(self, x, input_scale=None, training=None):
        """`input_scale` (the producing quantizer's `s`) makes the bias round like TFLite's.

        In inference (`training` false) with `input_scale` known, the op is computed the way
        TFLite's integer kernels do it (`integer_forward`), so the Keras model predicts the
        converted model's int8 outputs exactly, not just to rounding noise.
        """
        quantizers = [q for q in (self.pre_quantizer, self.output_quantizer) if q is not None]
        exact = input_scale is not None and not self.weight_quantizer.export \
            and not any(q.calibrating for q in quantizers)
        if exact and not training:
            return self._result(self.integer_forward(x, input_scale))
        y = self._op(x, self.quantized_kernel()) + self.quantized_bias(input_scale)
        y = self._activate(y, training)
        if exact and self.exact_training and self.activation != "softmax":
            # Forward the deployed integer result, backpropagate through the float path.
            y = y + tf.stop_gradient(self.integer_forward(x, input_scale) - y)
        return self._result(y)

    def integer_forward(self, x, input_scale):
        """Inference path bit-exact with TFLite: int accumulator, int32 bias, fixed-point
        requantization, fused-activation clamp; values returned dequantized."""
        s_in = tf.reshape(input_scale, ())
        s_w = tf.exp(tf.convert_to_tensor(self.weight_quantizer.log_scale))
        x_int = tf.round(x / s_in)                                 # code − zero point
        w_int = self._from_channel_view(
            tf.round(self.weight_quantizer(self._to_channel_view(
                tf.convert_to_tensor(self.kernel))) / s_w))
        b_int = _round_away(tf.convert_to_tensor(self.bias) / (s_in * s_w))
        acc = self._op(x_int, w_int) + b_int
        fused = self.pre_quantizer is None
        oq = self.output_quantizer if fused else self.pre_quantizer
        s_out, zp, cmin, cmax = oq.tensor_params()
        s64 = tf.cast(s_in, tf.float64) * tf.cast(s_w, tf.float64)
        code = tflite_requantize(acc, s64 / tf.cast(s_out, tf.float64)) + zp
        lo, hi = tf.constant(-128.0), tf.constant(127.0)
        if fused and self.activation in ("relu", "relu6"):
            lo = tf.maximum(lo, zp)
        if fused and self.activation == "relu6":
            hi = tf.minimum(hi, zp + _round_away(6.0 / s_out))
        code = tf.clip_by_value(tf.clip_by_value(code, lo, hi), cmin, cmax)
        y = (code - zp) * s_out
        if fused:
            return y
        if self.activation == "silu":
            # LOGISTIC (int8 out, scale 1/256, zero point -128) then MUL, requantized like TFLite
            sig = tf.clip_by_value(_round_away(tf.sigmoid(y) * 256.0), 0.0, 255.0)
            s2, zp2, cmin2, cmax2 = self.output_quantizer.tensor_params()
            m = tf.cast(s_out, tf.float64) / 256.0 / tf.cast(s2, tf.float64)
            code2 = tflite_requantize((code - zp) * sig, m) + zp2
            code2 = tf.clip_by_value(tf.clip_by_value(code2, -128.0, 127.0), cmin2, cmax2)
            return (code2 - zp2) * s2
        y = apply_activation(self.activation, y)
        if self.activation == "softmax":
            return self.output_quantizer(y)
        return self.output_quantizer(y, lower_bound=None)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(self._act_config(), weight_bits=self.weight_bits,
                   exact_training=self.exact_training)
        return cfg


class _ConvBase(_QuantCompute):
    def __init__(self, kernel_size=3, strides=1, padding="valid", dilation_rate=1, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = tuple(np.broadcast_to(kernel_size, 2).tolist())
        self.strides = tuple(np.broadcast_to(strides, 2).tolist())
        self.dilation_rate = tuple(np.broadcast_to(dilation_rate, 2).tolist())
        self.padding = padding.lower()

    def _out_shape(self, input_shape):
        n, h, w = input_shape[0], input_shape[1], input_shape[2]

        def size(d, k, s, r):
            if d is None:
                return None
            if self.padding == "same":
                return -(-d // s)
            return (d - (k - 1) * r - 1) // s + 1

        oh = size(h, self.kernel_size[0], self.strides[0], self.dilation_rate[0])
        ow = size(w, self.kernel_size[1], self.strides[1], self.dilation_rate[1])
        return (n, oh, ow, self._channels(input_shape))

    def get_config(self):
        cfg = super().get_config()
        cfg.update(kernel_size=self.kernel_size, strides=self.strides, padding=self.padding,
                   dilation_rate=self.dilation_rate)
        return cfg


@keras.saving.register_keras_serializable(package=_PKG)
class QuantConv2D(_ConvBase):
    """Conv2D (BN folded) with per-output-channel weight quantizer → TFLite CONV_2D."""

    def __init__(self, filters=1, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)

    def _kernel_shape(self, input_shape):
        return (*self.kernel_size, int(input_shape[-1]), self.filters)

    def _channels(self, input_shape):
        return self.filters

    def _op(self, x, w):
        return tf.nn.conv2d(x, w, strides=(1, *self.strides, 1), padding=self.padding.upper(),
                            dilations=(1, *self.dilation_rate, 1))

    def get_config(self):
        cfg = super().get_config()
        cfg.update(filters=self.filters)
        return cfg


@keras.saving.register_keras_serializable(package=_PKG)
class QuantDepthwiseConv2D(_ConvBase):
    """DepthwiseConv2D (BN folded), per-channel weight scales → TFLite DEPTHWISE_CONV_2D.

    The kernel is (kh, kw, in, multiplier); output channel `i·multiplier + m` owns one scale.
    """

    def __init__(self, depth_multiplier=1, **kwargs):
        super().__init__(**kwargs)
        self.depth_multiplier = int(depth_multiplier)

    def _kernel_shape(self, input_shape):
        return (*self.kernel_size, int(input_shape[-1]), self.depth_multiplier)

    def _channels(self, input_shape):
        return int(input_shape[-1]) * self.depth_multiplier

    def _channel_view(self, kshape):
        return (kshape[0], kshape[1], kshape[2] * kshape[3])

    def _to_channel_view(self, w):
        return tf.reshape(w, self._channel_view(tuple(self.kernel.shape)))

    def _from_channel_view(self, w):
        return tf.reshape(w, tuple(self.kernel.shape))

    def _op(self, x, w):
        return tf.nn.depthwise_conv2d(x, w, strides=(1, *self.strides, 1),
                                      padding=self.padding.upper(),
                                      dilations=self.dilation_rate)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(depth_multiplier=self.depth_multiplier)
        return cfg


@keras.saving.register_keras_serializable(package=_PKG)
class QuantDense(_QuantCompute):
    """Dense (BN folded), one weight scale per tensor (TFLM refuses per-channel INT4 FC)."""

    per_channel = False

    def __init__(self, units=1, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)

    def _kernel_shape(self, input_shape):
        return (int(input_shape[-1]), self.units)

    def _channels(self, input_shape):
        return self.units

    def _op(self, x, w):
        return tf.matmul(x, w)

    def _out_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(units=self.units)
        return cfg


@keras.saving.register_keras_serializable(package=_PKG)
class InputTransform(keras.layers.Layer):
    """The model's leading Rescaling / Normalization layers as one float32 affine map,
    `y = x·scale + offset` (`scale`, `offset`: one value, or one per channel of the last axis;
    composed by `aqedge.preprocess`). The 8-bit input quantizer follows it, so the QAT model
    trains and calibrates on raw values. In export (`set_export(True)`) it is the identity: the
    `.tflite` input is the int8 code of `y`, and `convert_qat` stores the map as metadata."""

    def __init__(self, scale=(1.0,), offset=(0.0,), **kwargs):
        super().__init__(**kwargs)
        self.scale = [float(v) for v in np.ravel(scale)]
        self.offset = [float(v) for v in np.ravel(offset)]
        self.export = False

    def set_export(self, on: bool):
        self.export = bool(on)

    def call(self, x):
        x = tf.cast(x, tf.float32)
        if self.export:
            return x
        return x * tf.constant(self.scale, tf.float32) + tf.constant(self.offset, tf.float32)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        cfg = super().get_config()
        cfg.update(scale=self.scale, offset=self.offset)
        return cfg


def iter_quantizers(model):
    """All `ActivationQuantizer` / `WeightQuantizer` objects of `model`, in layer order."""
    for layer in model.layers:
        if isinstance(layer, (ActivationQuantizer, WeightQuantizer)):
            yield layer
        for attr in ("weight_quantizer", "pre_quantizer", "output_quantizer"):
            q = getattr(layer, attr, None)
            if q is not None:
                yield q
