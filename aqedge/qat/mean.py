"""Global average pooling as TFLite's int8 MEAN: `MeanQuantizer`, the quantizer after the pool.

TFLite and TFLite Micro (`QuantizedMeanOrSum`, our `aq_mean_s8`) compute an int8 MEAN as the
zero-point-corrected sum of the input codes times one fixed-point multiplier,
`QuantizeMultiplier(s_in/s_out)` with 1/count folded in by an integer division, applied by
`MultiplyByQuantizedMultiplier`. The sum is small, so that multiply's rounding high product keeps
only `right shift` fractional bits of the output level: a mean less than 2^-(right shift + 1)
below a half level becomes an exact half, and halves round away from zero. The float
`GlobalAveragePooling2D` + `ActivationQuantizer` pair (`floor(mean/s_out + 0.5)`) misses those:
about 3 % of the values of a 6×6 pool (right shift 4) were one level off. `MeanQuantizer`
computes the integer MEAN from the pool's input instead (`tflite_mean`): exactly in inference,
and in training as exact values with the float quantizer's gradients.

Export: the pooled value is put on the quantizer's 8-bit grid before the clip
(`requantize_first`), so MEAN's int8 output always carries the quantizer's scale and zero point.
Otherwise a lower clip at exactly 0 is converted to a standalone RELU, which may requantize, and
the converter gives MEAN's output a range calibrated on the representative data: a second
rounding, and saturation of every mean above the largest the representative data produced.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from .layers import multiply_by_quantized_multiplier, quantize_multiplier
from .quantizers import ActivationQuantizer

_PKG = "aqedge"


def tflite_mean(x_int, axes, keepdims: bool, multiplier):
    """TFLite's int8 MEAN of `x_int` over `axes`, before the output zero point is added.

    `x_int` holds the input codes minus the input zero point (integers in float32; the sum is
    exact while `255·count < 2^24`), `multiplier` is `s_in / s_out` (float64 tensor).
    """
    count = 1
    for a in axes:
        count *= int(x_int.shape[a])
    acc = tf.reduce_sum(x_int, axis=axes, keepdims=keepdims)
    q31, shift = quantize_multiplier(multiplier)
    fold = tf.minimum(tf.constant(min(count.bit_length() - 1, 32), tf.int64), 31 + shift)
    q31 = tf.math.floordiv(tf.bitwise.left_shift(q31, fold), count)
    return multiply_by_quantized_multiplier(acc, q31, shift - fold)


@keras.saving.register_keras_serializable(package=_PKG)
class MeanQuantizer(ActivationQuantizer):
    """The `ActivationQuantizer` of a global average pool, computed as TFLite's int8 MEAN.

    Called as `q(pooled, pool_input=x, input_scale=s_in)`: `pooled` is the float pool output
    (the export graph and training's gradients use it), `x` the pool's input (`axes` are its
    pooled axes) and `s_in` the scale of `x`'s quantizer. Without `pool_input` / `input_scale`,
    and while calibrating or exporting, it is a plain `ActivationQuantizer`.
    """

    def __init__(self, axes=(1, 2), requantize_first=True, **kwargs):
        super().__init__(requantize_first=requantize_first, **kwargs)
        self.axes = tuple(int(a) for a in axes)

    def call(self, x, pool_input=None, input_scale=None, training=None):
        if pool_input is None or input_scale is None or self.export or self.calibrating:
            return super().call(x)
        y = self.integer_forward(pool_input, input_scale,
                                 keepdims=len(x.shape) == len(pool_input.shape))
        if training:   # TFLite's values, the float quantizer's pseudo-gradients
            yf = self._quantize(x)
            y = yf + tf.stop_gradient(y - yf)
        return (y, self.scale_tensor()) if self.return_scale else y

    def integer_forward(self, pool_input, input_scale, keepdims=False):
        """TFLite's MEAN into this quantizer's int8 tensor, then its clip; values dequantized."""
        s_in = tf.reshape(input_scale, ())
        s_out, zp, cmin, cmax = self.tensor_params()
        x_int = tf.round(pool_input / s_in)                        # code − zero point
        mean = tflite_mean(x_int, self.axes, keepdims,
                           tf.cast(s_in, tf.float64) / tf.cast(s_out, tf.float64))
        code = tf.clip_by_value(tf.clip_by_value(mean + zp, -128.0, 127.0), cmin, cmax)
        return (code - zp) * s_out

    def get_config(self):
        cfg = super().get_config()
        cfg.update(axes=self.axes)
        return cfg
