"""`quantize_model`: float Keras model → QAT model; `calibrate`: data-driven quantizer init.

The float model's graph is rebuilt layer by layer:

* the model input gets an 8-bit `ActivationQuantizer` (the int8 input of the `.tflite`);
  leading Rescaling / Normalization layers (`aqedge.preprocess`) become one float
  `InputTransform` in front of it, so the QAT model still takes raw values;
* Conv2D / DepthwiseConv2D / Dense, with a directly following BatchNormalization folded in and a
  directly following activation (ReLU, ReLU6, Swish, hard-swish, softmax) absorbed, become
  `QuantConv2D` / `QuantDepthwiseConv2D` / `QuantDense`;
* layers that keep their input's quantization (MaxPooling2D, Flatten, Reshape, Dropout,
  ZeroPadding2D, nearest-neighbour UpSampling2D) are copied as they are;
* layers that produce a new range (Add, Subtract, Multiply, Concatenate, AveragePooling2D,
  GlobalAveragePooling2D) are copied and followed by an `ActivationQuantizer` (a `MeanQuantizer`
  after GlobalAveragePooling2D: TFLite's integer MEAN); a standalone activation becomes a
  `QuantActivation`;
* anything else raises `AqError` naming the layer and its type: nothing is left in float.

The first and last compute layers are kept at `first_last_bits` as usual for low-bit networks
(LSQ, LSQ+): their weights, the last one's input activation (traced back through pass-through
layers such as Flatten) and its output (the logits); the first one's input is the 8-bit model
input. Every other activation tensor gets `activation_bits`. `layer_bits` overrides both for named
layers (mixed precision: e.g. keep a sensitive layer at 8 bits).
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np

from ..config import MAX_BITS, MIN_BITS
from ..errors import AqError
from ..preprocess import leading_preprocessing
from .layers import (ACTIVATIONS, NONNEGATIVE, InputTransform, QuantActivation, QuantConv2D,
                     QuantDense, QuantDepthwiseConv2D, iter_quantizers)
from .mean import MeanQuantizer
from .quantizers import ActivationQuantizer

L = keras.layers
_COMPUTE = (L.DepthwiseConv2D, L.Conv2D, L.Dense)   # DepthwiseConv2D first: not a Conv2D here
_PASSTHROUGH = (L.MaxPooling2D, L.Flatten, L.Reshape, L.Dropout, L.ZeroPadding2D,
                L.GlobalMaxPooling2D, L.Identity, L.UpSampling2D)
_REQUANT = (L.Add, L.Subtract, L.Multiply, L.Concatenate, L.AveragePooling2D,
            L.GlobalAveragePooling2D)
_ACT_LAYERS = (L.Activation, L.ReLU, L.Softmax)


def _describe(layer) -> str:
    return f"layer '{layer.name}' ({type(layer).__name__})"


def _activation_name(fn, layer) -> str:
    name = getattr(fn, "__name__", str(fn))
    name = {"swish": "silu", "hard_swish": "hard_silu"}.get(name, name)
    if name not in ACTIVATIONS:
        raise AqError(f"{_describe(layer)}: activation '{name}' cannot be quantized; "
                      f"use one of {', '.join(ACTIVATIONS)}")
    return name


def _layer_activation(layer) -> str:
    """Activation name of an Activation / ReLU / Softmax layer."""
    if isinstance(layer, L.ReLU):
        slope = float(np.asarray(layer.negative_slope))
        thr = float(np.asarray(layer.threshold))
        mx = None if layer.max_value is None else float(np.asarray(layer.max_value))
        if slope == 0.0 and thr == 0.0 and mx in (None, 6.0):
            return "relu" if mx is None else "relu6"
        raise AqError(f"{_describe(layer)}: only plain ReLU and ReLU6 can be quantized")
    if isinstance(layer, L.Softmax):
        if layer.axis not in (-1,) and layer.axis != [-1]:
            raise AqError(f"{_describe(layer)}: softmax over axis {layer.axis} is not supported")
        return "softmax"
    return _activation_name(layer.activation, layer)


def _functional(model):
    if isinstance(model, keras.Sequential):
        fn = getattr(model, "_functional", None)
        if fn is None:
            raise AqError(f"model '{model.name}' is a Sequential model without an Input: "
                          "build it with keras.Input(shape) first")
        return fn
    if not hasattr(model, "_nodes_by_depth"):
        raise AqError(f"model '{model.name}' ({type(model).__name__}) is not a Functional or "
                      "Sequential model; quantize_model needs a layer graph")
    return model


def _fold_bn(kernel, bias, bn, channel_axis_view):
    """Fold BatchNormalization `bn` into (kernel, bias); `channel_axis_view(k)` → (..., C)."""
    gamma = np.asarray(bn.gamma.numpy()) if bn.gamma is not None else 1.0
    beta = np.asarray(bn.beta.numpy()) if bn.beta is not None else 0.0
    mean, var = np.asarray(bn.moving_mean.numpy()), np.asarray(bn.moving_variance.numpy())
    factor = gamma / np.sqrt(var + bn.epsilon)
    k = channel_axis_view(kernel) * factor
    return k.reshape(kernel.shape), (bias - mean) * factor + beta


def quantize_model(model, weight_bits: int = 4, activation_bits: int = 4,
                   first_last_bits: int = 8, shift: bool = True,
                   calibration_data: np.ndarray | None = None, calibration_method: str = "mse",
                   layer_bits: Mapping[str, int] | None = None,
                   name: str | None = None) -> keras.Model:
    """Return the QAT version of float `model` (Functional or Sequential), ready for `fit`.

    `shift=True` gives the adaptive quantizers (learned scale and shift); `shift=False` the LSQ
    baseline (learned scale, zero shift: unsigned levels after ReLU-like activations, signed
    otherwise). Weight scales are initialised from the (BN-folded) float weights; pass
    `calibration_data` (float inputs) to initialise activation quantizers too, or call
    `calibrate` later. The input batch dimension is left free for training.

    The model input always gets an 8-bit shifted quantizer (the int8 input tensor), also with
    `shift=False`. Rescaling / Normalization layers right after the single Input are composed
    into `T(x) = x·scale + offset` (`aqedge.preprocess`), applied in float by an `InputTransform`
    layer before that quantizer: the QAT model takes raw values, the `.tflite` takes int8 T(x).

    `layer_bits` maps float-model layer names to a bit width that replaces the defaults above for
    that layer: the weights and output of a Conv2D / DepthwiseConv2D / Dense (with its folded
    BatchNormalization and absorbed activation), the output of an Add, Concatenate, pooling or
    activation layer. A name with no quantizer of its own raises `AqError`.

    Compute layers return `(y, s_out)` and take `input_scale=s_in` (see
    `aqedge.qat.layers`); the model's own outputs are the plain tensors.
    """
    overrides = {str(k): int(v) for k, v in (layer_bits or {}).items()}
    for label, bits in (("weight_bits", weight_bits), ("activation_bits", activation_bits),
                        ("first_last_bits", first_last_bits),
                        *((f"layer_bits['{n}']", b) for n, b in overrides.items())):
        if not MIN_BITS <= int(bits) <= MAX_BITS:
            raise AqError(f"{label}={bits}: choose a bit width between {MIN_BITS} and {MAX_BITS}")
    overridden = set()

    def bits_for(layer, default: int) -> int:
        if layer.name in overrides:
            overridden.add(layer.name)
            return overrides[layer.name]
        return default
    fmodel = _functional(model)
    nodes = []
    for depth in sorted(fmodel._nodes_by_depth, reverse=True):
        for node in fmodel._nodes_by_depth[depth]:
            if node.operation is not None and not node.is_input:
                nodes.append(node)
    consumers: dict[int, list] = {}
    for node in nodes:
        for t in node.input_tensors:
            consumers.setdefault(id(t), []).append(node)
    outputs = {id(t) for t in fmodel.outputs}
    seen_layers = set()
    for node in nodes:
        if id(node.operation) in seen_layers:
            raise AqError(f"{_describe(node.operation)} is used more than once; shared layers "
                          "cannot be quantized")
        seen_layers.add(id(node.operation))
        if isinstance(node.operation, keras.Model):
            raise AqError(f"{_describe(node.operation)} is a nested model: flatten it into one "
                          "Functional model before quantizing")

    compute = [n for n in nodes if isinstance(n.operation, _COMPUTE)]
    first_last = {id(compute[0]), id(compute[-1])} if compute else set()
    last = id(compute[-1]) if compute else None
    wide = set(map(id, fmodel.outputs))     # tensors quantized with first_last_bits
    if compute:
        producers = {id(t): n for n in nodes for t in n.output_tensors}
        t = compute[-1].input_tensors[0]
        while id(t) in producers and isinstance(producers[id(t)].operation, _PASSTHROUGH):
            t = producers[id(t)].input_tensors[0]
        wide.add(id(t))

    def sole_consumer(node):
        t = node.output_tensors[0]
        users = consumers.get(id(t), [])
        if id(t) in outputs or len(users) != 1:
            return None
        return users[0]

    tmap: dict[int, object] = {}      # float tensor id -> QAT tensor
    smap: dict[int, object] = {}      # float tensor id -> scale tensor of its quantizer
    nonneg: dict[int, bool] = {}
    new_inputs = []
    chain, transform, chain_out = leading_preprocessing(fmodel)
    for t in fmodel.inputs:
        inp = keras.Input(shape=tuple(t.shape[1:]), name=t.name, dtype=t.dtype)
        new_inputs.append(inp)
        x, key = inp, id(t)
        if transform is not None:
            x = InputTransform(scale=transform.scale, offset=transform.offset,
                               name=f"{t.name}_transform")(inp)
            key = id(chain_out)
        q = ActivationQuantizer(bits=first_last_bits, shift=True, return_scale=True,
                                name=f"{t.name}_quant")
        tmap[key], smap[key] = q(x)
        nonneg[key] = False

    absorbed = {id(n) for n in chain}
    wrappers = []
    for node in nodes:
        layer = node.operation
        if id(node) in absorbed:
            continue
        ins = node.input_tensors
        if any(id(t) not in tmap for t in ins):
            raise AqError(f"{_describe(layer)}: input not reachable from the model inputs")
        x = [tmap[id(t)] for t in ins]
        src_nonneg = all(nonneg.get(id(t), False) for t in ins)
        out_t = node.output_tensors[0]

        if isinstance(layer, _COMPUTE):
            if isinstance(layer, L.Conv2D) and not isinstance(layer, L.DepthwiseConv2D):
                if getattr(layer, "groups", 1) != 1:
                    raise AqError(f"{_describe(layer)}: grouped convolutions cannot be quantized")
            if isinstance(layer, (L.Conv2D, L.DepthwiseConv2D)) and \
                    layer.data_format != "channels_last":
                raise AqError(f"{_describe(layer)}: only channels_last convolutions are supported")
            if isinstance(layer, L.Dense) and len(ins[0].shape) != 2:
                raise AqError(f"{_describe(layer)}: Dense on a rank-{len(ins[0].shape)} input "
                              "cannot be quantized; add a Flatten before it")
            kernel = np.asarray(layer.kernel.numpy())
            if isinstance(layer, L.DepthwiseConv2D):
                view = lambda k: k.reshape(*k.shape[:2], -1)   # noqa: E731
            else:
                view = lambda k: k   # noqa: E731
            channels = view(kernel).shape[-1]
            bias = np.asarray(layer.bias.numpy()) if layer.use_bias else np.zeros(channels)
            act = _activation_name(layer.activation, layer)
            tail = node
            nxt = sole_consumer(tail)
            if act == "linear" and nxt is not None and \
                    isinstance(nxt.operation, L.BatchNormalization):
                bn = nxt.operation
                if bn.axis not in (-1, len(out_t.shape) - 1) and list(np.ravel(bn.axis)) != \
                        [len(out_t.shape) - 1]:
                    raise AqError(f"{_describe(bn)}: only channel-last BatchNormalization folds")
                kernel, bias = _fold_bn(kernel, bias, bn, view)
                absorbed.add(id(nxt))
                tail = nxt
                nxt = sole_consumer(tail)
            if act == "linear" and nxt is not None and isinstance(nxt.operation, _ACT_LAYERS):
                act = _layer_activation(nxt.operation)
                absorbed.add(id(nxt))
                tail = nxt
            is_fl = id(node) in first_last
            res_t = tail.output_tensors[0]
            wide_out = id(node) == last or id(res_t) in wide
            kw = dict(activation=act,
                      weight_bits=bits_for(layer, first_last_bits if is_fl else weight_bits),
                      output_bits=bits_for(layer, first_last_bits if wide_out else activation_bits),
                      shift=shift, return_scale=True, name=layer.name)
            if isinstance(layer, L.DepthwiseConv2D):
                w = QuantDepthwiseConv2D(depth_multiplier=layer.depth_multiplier,
                                         kernel_size=layer.kernel_size, strides=layer.strides,
                                         padding=layer.padding,
                                         dilation_rate=layer.dilation_rate, **kw)
            elif isinstance(layer, L.Conv2D):
                w = QuantConv2D(filters=layer.filters, kernel_size=layer.kernel_size,
                                strides=layer.strides, padding=layer.padding,
                                dilation_rate=layer.dilation_rate, **kw)
            else:
                w = QuantDense(units=layer.units, **kw)
            y, s = w(x[0], input_scale=smap.get(id(ins[0])))
            w.set_float_weights(kernel, bias)
            wrappers.append(w)
            tmap[id(res_t)], smap[id(res_t)] = y, s
            nonneg[id(res_t)] = act in NONNEGATIVE
            continue

        if isinstance(layer, L.BatchNormalization):
            raise AqError(f"{_describe(layer)} does not directly follow a linear Conv2D, "
                          "DepthwiseConv2D or Dense layer, so it cannot be folded")
        if isinstance(layer, L.InputLayer):
            continue
        if isinstance(layer, L.UpSampling2D) and layer.interpolation != "nearest":
            raise AqError(f"{_describe(layer)} cannot be quantized: only interpolation='nearest' "
                          f"(a copy of the codes), not '{layer.interpolation}'")
        if isinstance(layer, _PASSTHROUGH):
            clone = layer.__class__.from_config(layer.get_config())
            y = clone(x[0])
            nonneg[id(out_t)] = src_nonneg
            if id(ins[0]) in smap:
                smap[id(out_t)] = smap[id(ins[0])]
        elif isinstance(layer, _REQUANT):
            clone = layer.__class__.from_config(layer.get_config())
            y = clone(x if len(x) > 1 else x[0])
            unsigned = src_nonneg and not isinstance(layer, L.Subtract)
            default = first_last_bits if id(out_t) in wide else activation_bits
            kw = dict(bits=bits_for(layer, default),
                      shift=shift, unsigned=unsigned, return_scale=True,
                      name=f"{layer.name}_quant")
            if isinstance(layer, L.GlobalAveragePooling2D):   # TFLite's integer MEAN
                axes = (1, 2) if layer.data_format == "channels_last" else (2, 3)
                y, smap[id(out_t)] = MeanQuantizer(axes=axes, **kw)(
                    y, pool_input=x[0], input_scale=smap.get(id(ins[0])))
            else:   # CONCATENATION cannot fuse the clip: see `requantize_first`
                y, smap[id(out_t)] = ActivationQuantizer(
                    requantize_first=isinstance(layer, L.Concatenate), **kw)(y)
            nonneg[id(out_t)] = unsigned
        elif isinstance(layer, _ACT_LAYERS):
            act = _layer_activation(layer)
            bits = bits_for(layer, first_last_bits if id(out_t) in wide else activation_bits)
            y, smap[id(out_t)] = QuantActivation(act, output_bits=bits, shift=shift,
                                                 return_scale=True, name=layer.name)(x[0])
            nonneg[id(out_t)] = act in NONNEGATIVE
        elif isinstance(layer, (L.Rescaling, L.Normalization)):
            raise AqError(f"{_describe(layer)}: only preprocessing right after the single model "
                          "Input, read by nothing else, folds into the input quantization")
        else:
            raise AqError(f"{_describe(layer)} cannot be quantized: aqedge quantizes Conv2D, "
                          "DepthwiseConv2D, Dense (+BatchNormalization, ReLU/ReLU6/Swish/"
                          "hard-swish/softmax), pooling, Add, Concatenate, Flatten, Reshape and "
                          "UpSampling2D (nearest)")
        tmap[id(out_t)] = y

    unused = sorted(set(overrides) - overridden)
    if unused:
        raise AqError(f"layer_bits names {', '.join(repr(n) for n in unused)}: no quantized layer "
                      f"of model '{model.name}' has that name (name a Conv2D, DepthwiseConv2D, "
                      "Dense, Add, Concatenate, pooling or activation layer)")
    missing = [t for t in fmodel.outputs if id(t) not in tmap]
    if missing:
        raise AqError(f"model '{model.name}': output {missing[0].name} was not reconstructed")
    outs = [tmap[id(t)] for t in fmodel.outputs]
    qmodel = keras.Model(new_inputs if len(new_inputs) > 1 else new_inputs[0],
                         outs if len(outs) > 1 else outs[0],
                         name=name or f"{model.name}_qat")
    for w in wrappers:
        w.init_weight_scale()
    if calibration_data is not None:
        calibrate(qmodel, calibration_data, method=calibration_method)
    return qmodel


def calibrate(model, x: np.ndarray, batches: int = 4, batch_size: int = 64,
              method: str = "mse", weights: bool = False) -> None:
    """Initialise every learnable activation quantizer of `model` from data.

    Runs `batches` batches of `x` through the model with all activation quantizers passing
    values through in float, then sets each one's `s` and `β` by min/max (`method='minmax'`) or
    by an MSE search over clipping ranges (`'mse'`). `weights=True` also re-initialises the
    weight scales from the current kernels.
    """
    acts = [q for q in iter_quantizers(model)
            if isinstance(q, ActivationQuantizer) and not q.fixed]
    if not acts:
        raise AqError(f"model '{model.name}' has no activation quantizers: "
                      "run quantize_model first")
    for q in acts:
        q.calibrating, q._stats = True, []
    try:
        n = min(len(x), batches * batch_size)
        for i in range(0, n, batch_size):
            model(np.asarray(x[i:i + batch_size], np.float32), training=False)
        for q in acts:
            q.calibrating = False
            q.calibrate_from(np.concatenate([s.ravel() for s in q._stats]), method)
    finally:
        for q in acts:
            q.calibrating, q._stats = False, []
    if weights:
        for layer in model.layers:
            if hasattr(layer, "init_weight_scale"):
                layer.init_weight_scale(method)
