"""Quantizers: tiny serializable Keras layers holding learned quantization parameters.

Two of them, following the adaptive-quantization method (docs/architecture.md, arXiv 2107.08382):

* `ActivationQuantizer` — per-tensor learned scale `s` and shift `β` (LSQ+ style).
* `WeightQuantizer` — symmetric, narrow range, learned scale per output channel (or per tensor).

Each has two forward paths with the same values:

* training path (`export=False`): the formulas below, written with `tf.custom_gradient` so the
  backward pass is exactly the documented pseudo-gradient;
* export path (`export=True`, set by `aqedge.convert.convert_qat`): plain TF ops (clip + 8-bit
  `fake_quant_*`) that the TFLite converter turns into INT4 weights and int8 activations whose
  scale/zero point are the learned `s` / `β` (docs/architecture.md: export).

Rounding is `floor(v + 0.5)` (round half up) in both paths, as TF's FakeQuant kernels do.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

_PKG = "aqedge"
_MIN_SCALE = 1e-8


def _round(v):
    return tf.floor(v + 0.5)


def activation_forward_np(x, s, beta, qmin, qmax):
    """Numpy reference of `ActivationQuantizer`'s forward (β already on the grid)."""
    u = (x - beta) / s
    return np.clip(np.floor(u + 0.5), qmin, qmax) * s + beta


def activation_grads_np(x, s, beta, qmin, qmax, upstream=None):
    """Numpy reference of the pseudo-gradients of `ActivationQuantizer` (dx, ds, dβ).

    `N` in the gradient scale is the number of elements of one sample (`x[0].size`).
    """
    x = np.asarray(x, np.float64)
    g = np.ones_like(x) if upstream is None else np.asarray(upstream, np.float64)
    u = (x - beta) / s
    lo, hi = u < qmin, u > qmax
    inr = ~(lo | hi)
    gscale = 1.0 / math.sqrt(x[0].size * qmax)
    dx = g * inr
    ds_local = np.where(inr, np.floor(u + 0.5) - u, np.where(lo, qmin, qmax))
    db_local = np.where(inr, 0.0, 1.0)
    return dx, float(np.sum(g * ds_local) * gscale), float(np.sum(g * db_local) * gscale)


def weight_forward_np(w, s, qmax):
    """Numpy reference of `WeightQuantizer`'s forward; `s` broadcasts over the last axis."""
    return np.clip(np.floor(w / s + 0.5), -qmax, qmax) * s


def weight_grads_np(w, s, qmax, upstream=None):
    """Numpy reference of the pseudo-gradients of `WeightQuantizer` (dw, ds).

    `s` has shape () (per tensor) or (channels,) (per channel, last axis of `w`); `N` is the number
    of weights sharing one scale.
    """
    w = np.asarray(w, np.float64)
    g = np.ones_like(w) if upstream is None else np.asarray(upstream, np.float64)
    u = w / s
    lo, hi = u < -qmax, u > qmax
    inr = ~(lo | hi)
    dw = g * inr
    ds_local = np.where(inr, np.floor(u + 0.5) - u, np.where(lo, -qmax, qmax))
    if np.ndim(s) == 0:
        return dw, float(np.sum(g * ds_local) / math.sqrt(w.size * qmax))
    axes = tuple(range(w.ndim - 1))
    n = w.size // w.shape[-1]
    return dw, np.sum(g * ds_local, axis=axes) / math.sqrt(n * qmax)


@keras.saving.register_keras_serializable(package=_PKG)
class ActivationQuantizer(keras.layers.Layer):
    r"""Per-tensor activation quantizer with learned scale `s` and shift `β`.

    Forward (levels `q ∈ [qmin, qmax]`, `β̃ = s·round(β/s)` keeps the shift on the step grid so the
    int8 zero point `-β̃/s` is exact; docs/architecture.md, export)::

        u  = (x − β̃) / s
        x̂  = clamp(round(u), qmin, qmax) · s + β̃

    With `shift=True`, `[qmin, qmax] = [−2^(b−1), 2^(b−1)−1]` and `β` is learned: level `q` is
    int8 code `q` of a tensor with scale `s` and zero point `−β̃/s`. With `shift=False` (the LSQ
    baseline) `β = 0` is fixed and the levels are `[0, 2^b−1]` if `unsigned` else signed.

    Pseudo-gradients (straight-through round; `round(β/s)` is straight-through too), scaled by
    `g = 1/sqrt(N·qmax)` with `N` the elements of one sample::

        ∂x̂/∂x = 1 if qmin ≤ u ≤ qmax else 0
        ∂x̂/∂s = (round(u) − u) if qmin ≤ u ≤ qmax, qmin if u < qmin, qmax if u > qmax   (× g)
        ∂x̂/∂β = 0 if qmin ≤ u ≤ qmax else 1                                             (× g)

    `s` is stored as `log_scale` (`s = exp(log_scale)`, autodiff adds the factor `s`), so that an
    adaptive optimiser such as Adam changes it by relative steps whatever its magnitude.
    `s` and `β` are initialised from data by `aqedge.qat.calibrate` (min/max or MSE search);
    `fixed=True` freezes them (e.g. the softmax output, whose int8 range TFLite imposes).

    `requantize_first=True` puts the export graph's value on this quantizer's int8 grid before
    the clip, for producers that cannot fuse a clip (CONCATENATION, MEAN): otherwise a lower clip
    at exactly 0 becomes a standalone RELU and the producer's output gets a range calibrated on
    the representative data, a second rounding that the Keras model does not make.
    """

    def __init__(self, bits=4, shift=True, unsigned=False, init_scale=1.0, init_shift=0.0,
                 fixed=False, return_scale=False, requantize_first=False, **kwargs):
        super().__init__(**kwargs)
        self.return_scale = bool(return_scale)
        self.requantize_first = bool(requantize_first)
        self.bits = int(bits)
        self.shift = bool(shift)
        self.unsigned = bool(unsigned)
        self.init_scale = float(init_scale)
        self.init_shift = float(init_shift)
        self.fixed = bool(fixed)
        if self.shift or not self.unsigned:
            self.qmin, self.qmax = -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1
        else:
            self.qmin, self.qmax = 0, 2 ** self.bits - 1
        self.export = False
        self.calibrating = False
        self._stats = []

    def build(self, input_shape):
        self.log_scale = self.add_weight(
            name="log_scale", shape=(),
            initializer=keras.initializers.Constant(math.log(max(self.init_scale, _MIN_SCALE))),
            trainable=not self.fixed)
        self.beta = self.add_weight(
            name="shift", shape=(), initializer=keras.initializers.Constant(self.init_shift),
            trainable=self.shift and not self.fixed)

    def quant_params(self):
        """(scale, zero_point, qmin_code, qmax_code) of the int8 tensor this quantizer produces.

        Level `q` (real value `q·s + β̃`) is int8 code `q + β̃/s + zero_point`; the code window
        is placed so that code = level whenever possible (always for shifted 4-bit tensors).
        """
        s = math.exp(float(keras.ops.convert_to_numpy(self.log_scale)))
        b = float(keras.ops.convert_to_numpy(self.beta))
        k = int(np.clip(np.floor(b / s + 0.5), -127, 128))
        w0 = min(max(k - 128, k + self.qmax - 255, -255), k + self.qmin, 0)
        zp = -128 - w0
        return s, zp, k + self.qmin + zp, k + self.qmax + zp

    def tensor_params(self):
        """`quant_params()` as float32 tensors (s, zero_point, cmin, cmax), usable in graphs.

        `s` is the scale the `.tflite` stores, which TFLite's fixed-point multipliers are computed
        from: the converter derives it in double from the export's float32 fake-quant range,
        `(max − min) / 255`, so it can be one ulp away from `exp(log_scale)`.
        """
        s = tf.exp(tf.cast(tf.convert_to_tensor(self.log_scale), tf.float64))
        b = tf.cast(tf.convert_to_tensor(self.beta), tf.float64)
        k = tf.clip_by_value(_round(b / s), -127.0, 128.0)
        w0 = tf.minimum(tf.minimum(tf.maximum(tf.maximum(k - 128.0, k + self.qmax - 255.0),
                                              -255.0), k + self.qmin), 0.0)
        zp = -128.0 - w0
        lo, hi = (tf.cast(tf.cast(c * s, tf.float32), tf.float64)   # the export's range
                  for c in (-128.0 - zp, 127.0 - zp))
        return tuple(tf.cast(v, tf.float32) for v in ((hi - lo) / 255.0, zp, k + self.qmin + zp,
                                                       k + self.qmax + zp))

    def scale_tensor(self):
        """The int8 scale `s` of `tensor_params()` as a shape-(1,) tensor (what
        `return_scale=True` returns next to the output)."""
        return tf.reshape(self.tensor_params()[0], (1,))

    def call(self, x, lower_bound=None):
        """Quantize `x`; `lower_bound` (e.g. 0 after a ReLU) lets the export skip a MAXIMUM op.

        Returns `x̂`, or `(x̂, s)` with `return_scale=True`: quantize_model feeds `s` to the
        consuming layers, which round their bias to TFLite's int32 grid `s_in·s_w`.
        """
        y = self._quantize(x, lower_bound)
        return (y, self.scale_tensor()) if self.return_scale else y

    def _quantize(self, x, lower_bound=None):
        if self.calibrating:
            self._stats.append(keras.ops.convert_to_numpy(x))
            return x
        x = tf.convert_to_tensor(x)
        if self.export:
            return self._export_forward(x, lower_bound)
        s = tf.exp(tf.convert_to_tensor(self.log_scale))
        beta = tf.convert_to_tensor(self.beta)
        return activation_quant(x, s, beta, self.qmin, self.qmax)

    def set_export(self, on: bool):
        """Switch to (or back from) the export graph; freezes the current parameters."""
        self.export = bool(on)
        self._export_params = self.quant_params() if on else None

    def _export_forward(self, x, lower_bound):
        s, zp, cmin, cmax = self._export_params
        if self.requantize_first:
            x = self._int8_fake_quant(x)
        lo, hi = (cmin - zp) * s, (cmax - zp) * s
        if cmin > -128 and (lower_bound is None or lo > lower_bound):
            x = tf.maximum(x, np.float32(lo))
        if cmax < 127:
            x = tf.minimum(x, np.float32(hi))
        return self._int8_fake_quant(x)   # the clip above leaves only the 2^bits levels in use

    def _int8_fake_quant(self, x):
        """8-bit fake quant with step s and zero point zp (export): the converter emits an int8
        tensor with exactly those parameters."""
        s, zp, _, _ = self._export_params
        return tf.quantization.fake_quant_with_min_max_args(
            x, min=(-128 - zp) * s, max=(127 - zp) * s, num_bits=8, narrow_range=False)

    def set_params(self, scale, shift=0.0):
        """Set `s` and `β` (β is snapped to the grid; ignored when `shift=False`)."""
        scale = max(float(scale), _MIN_SCALE)
        k = float(np.clip(np.floor(shift / scale + 0.5), -127, 128)) if self.shift else 0.0
        self.log_scale.assign(math.log(scale))
        self.beta.assign(k * scale)

    def calibrate_from(self, samples: np.ndarray, method: str = "mse"):
        """Initialise `s`, `β` from sample values (min/max, or MSE search over clip ranges)."""
        v = np.asarray(samples, np.float32).ravel()
        if v.size > 200_000:
            v = np.random.default_rng(0).choice(v, 200_000, replace=False)
        lo_all, hi_all = float(v.min()), float(v.max())
        levels = self.qmax - self.qmin
        if not self.shift:
            if self.unsigned:
                lo_all = 0.0
            hi_all = max(hi_all, 1e-6)
        cands = []
        if method == "minmax":
            fracs_lo, fracs_hi = [0.0], [100.0]
        elif method == "mse":
            fracs_lo = [0.0, 0.1, 0.3, 1.0, 3.0]        # percent of the lower tail clipped
            fracs_hi = [100.0, 99.99, 99.9, 99.5, 99.0, 98.0, 96.0]
        else:
            raise ValueError(f"unknown calibration method {method!r}: use 'minmax' or 'mse'")
        for plo in fracs_lo:
            lo = lo_all if plo == 0.0 else float(np.percentile(v, plo))
            for phi in fracs_hi:
                hi = hi_all if phi == 100.0 else float(np.percentile(v, phi))
                if self.shift:
                    s = max((hi - lo) / levels, 1e-6)
                    b = lo - self.qmin * s
                    k = float(np.clip(np.floor(b / s + 0.5), -127, 128))
                    cands.append((s, k * s))
                elif self.unsigned:
                    cands.append((max(hi, 1e-6) / self.qmax, 0.0))
                else:
                    cands.append((max(hi / self.qmax, -lo / -self.qmin, 1e-6), 0.0))
        best = min(cands, key=lambda c: float(np.mean(
            (activation_forward_np(v, c[0], c[1], self.qmin, self.qmax) - v) ** 2)))
        self.set_params(*best)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(bits=self.bits, shift=self.shift, unsigned=self.unsigned,
                   init_scale=self.init_scale, init_shift=self.init_shift, fixed=self.fixed,
                   return_scale=self.return_scale, requantize_first=self.requantize_first)
        return cfg


def _grid_shift(s, beta):
    """β̃ = s·round(β/s), with round(β/s) kept in [−127, 128] so the zero point fits int8."""
    return s * tf.clip_by_value(_round(beta / s), -127.0, 128.0)


def activation_quant(x, s, beta, qmin: int, qmax: int):
    """`ActivationQuantizer`'s training forward with its pseudo-gradients (see its docstring)."""
    n = 1
    for d in x.shape[1:]:
        n *= int(d) if d is not None else 1
    qmin, qmax = float(qmin), float(qmax)
    gscale = 1.0 / math.sqrt(n * qmax)

    @tf.custom_gradient
    def quant(x, s, beta):
        b = _grid_shift(s, beta)
        u = (x - b) / s
        r = _round(u)
        y = tf.clip_by_value(r, qmin, qmax) * s + b

        def grad(dy):
            below, above = u < qmin, u > qmax
            inr = tf.logical_not(tf.logical_or(below, above))
            dx = tf.where(inr, dy, tf.zeros_like(dy))
            ds_local = tf.where(inr, r - u, tf.where(below, qmin, qmax))
            db_local = tf.where(inr, tf.zeros_like(u), tf.ones_like(u))
            ds = tf.reduce_sum(dy * ds_local) * gscale
            db = tf.reduce_sum(dy * db_local) * gscale
            return dx, ds, db

        return y, grad

    return quant(x, s, beta)


def weight_quant(w, s, qmax: int):
    """`WeightQuantizer`'s training forward with its pseudo-gradients; `s` is () or (C,)."""
    q = float(qmax)
    per_channel = len(s.shape) > 0
    n = int(np.prod(w.shape)) // (int(w.shape[-1]) if per_channel else 1)
    gscale = 1.0 / math.sqrt(n * q)
    axes = list(range(len(w.shape) - 1)) if per_channel else None

    @tf.custom_gradient
    def quant(w, s):
        u = w / s
        r = _round(u)
        y = tf.clip_by_value(r, -q, q) * s

        def grad(dy):
            below, above = u < -q, u > q
            inr = tf.logical_not(tf.logical_or(below, above))
            dw = tf.where(inr, dy, tf.zeros_like(dy))
            ds_local = tf.where(inr, r - u, tf.where(below, -q, q))
            ds = tf.reduce_sum(dy * ds_local, axis=axes) * gscale
            return dw, ds

        return y, grad

    return quant(w, s)


@keras.saving.register_keras_serializable(package=_PKG)
class WeightQuantizer(keras.layers.Layer):
    r"""Symmetric narrow-range weight quantizer with a learned scale per output channel.

    Forward (`qmax = 2^(b−1) − 1`, levels `[−qmax, qmax]`, `s` per output channel = last axis of
    the kernel, or one per tensor)::

        ŵ = clamp(round(w / s), −qmax, qmax) · s

    Pseudo-gradients (LSQ; `g = 1/sqrt(N·qmax)`, `N` the weights sharing one scale)::

        ∂ŵ/∂w = 1 if |w/s| ≤ qmax else 0
        ∂ŵ/∂s = (round(w/s) − w/s) if |w/s| ≤ qmax, else ±qmax   (× g)

    Export: `tf.quantization.fake_quant_with_min_max_vars[_per_channel](num_bits=b,
    narrow_range=True)` over `[−qmax·s, qmax·s]`, which the converter packs as INT4 (b = 4) or
    int8 with scale `s`. `s` is stored as `log_scale` (as in `ActivationQuantizer`) and
    initialised by an MSE search over clip ratios (`init_from`).
    """

    def __init__(self, bits=4, per_channel=True, **kwargs):
        super().__init__(**kwargs)
        self.bits = int(bits)
        self.per_channel = bool(per_channel)
        self.qmax = 2 ** (self.bits - 1) - 1
        self.export = False

    def set_export(self, on: bool):
        """Switch to (or back from) the export graph (plain fake-quant ops)."""
        self.export = bool(on)

    def build(self, kernel_shape):
        shape = (int(kernel_shape[-1]),) if self.per_channel else ()
        self.log_scale = self.add_weight(name="log_scale", shape=shape,
                                         initializer=keras.initializers.Constant(math.log(0.01)))

    def init_from(self, kernel: np.ndarray, method: str = "mse"):
        """Initialise the scale(s) from float weights: max|w|/qmax, shrunk to minimise the MSE."""
        w = np.asarray(kernel, np.float64)
        w2 = w.reshape(-1, w.shape[-1]) if self.per_channel else w.reshape(-1, 1)
        amax = np.maximum(np.abs(w2).max(axis=0), 1e-8)
        ratios = [1.0] if method == "minmax" else np.linspace(1.0, 0.3, 36)
        best_s, best_err = amax / self.qmax, np.full(amax.shape, np.inf)
        for r in ratios:
            s = amax * r / self.qmax
            err = np.mean((weight_forward_np(w2, s, self.qmax) - w2) ** 2, axis=0)
            better = err < best_err
            best_s, best_err = np.where(better, s, best_s), np.where(better, err, best_err)
        log_s = np.log(best_s).astype(np.float32)
        self.log_scale.assign(log_s if self.per_channel else log_s[0])

    @property
    def scale(self):
        """The learned scale(s) `s = exp(log_scale)` as a numpy array."""
        return np.exp(keras.ops.convert_to_numpy(self.log_scale))

    def call(self, w):
        w = tf.convert_to_tensor(w)
        s = tf.exp(tf.convert_to_tensor(self.log_scale))
        q = float(self.qmax)
        if self.export:
            if self.per_channel:
                return tf.quantization.fake_quant_with_min_max_vars_per_channel(
                    w, -q * s, q * s, num_bits=self.bits, narrow_range=True)
            return tf.quantization.fake_quant_with_min_max_vars(
                w, -q * s, q * s, num_bits=self.bits, narrow_range=True)
        return weight_quant(w, s, self.qmax)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(bits=self.bits, per_channel=self.per_channel)
        return cfg
