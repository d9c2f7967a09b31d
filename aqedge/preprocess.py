"""Leading preprocessing layers folded into the int8 input quantization.

A Keras model may start with `Rescaling` and/or `Normalization` layers right after its single
Input, so that it takes raw values (e.g. pixels 0..255). Each is an affine map per channel (last
axis), and so is their chain::

    Rescaling(a, b):        y = x·a + b
    Normalization(m, v):    y = (x − m) / max(sqrt(v), ε) = x·k − m·k,   k = 1 / max(sqrt(v), ε)
    L2 after L1:            y = x·(a1·a2) + (b1·a2 + b2)

with ε = `keras.config.epsilon()` (1e-7), the formula of Keras 3's `Normalization.call`. The chain
composes into `T(x) = x·scale + offset` (`Affine`; `scale`, `offset` float64 of length 1 = per
tensor, or the channel count). aqedge drops the layers from the exported graph: the `.tflite`'s
int8 input is the quantization of `T(x)`, `q = round(T(x)/s) + z`, and for a per-tensor `T` that
is one quantization of the raw value, `q = round(x/(s/a)) + z + b/s` (scale `s/a`, zero point
`z + b/s`, fractional in general). `T` is stored in the `.tflite` as the Model metadata entry
`aqedge.input_transform` (JSON `{"scale": [...], "offset": [...]}`), which TFLite Micro and
LiteRT ignore; whoever feeds the model (aqedge's harness) applies `T` before quantizing.

Keras is imported only by the functions that take a Keras model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from .errors import AqError

METADATA_NAME = "aqedge.input_transform"


@dataclass(frozen=True)
class Affine:
    """`T(x) = x·scale + offset`, broadcast over the last axis (length 1 or channels)."""

    scale: np.ndarray
    offset: np.ndarray

    @classmethod
    def of(cls, scale, offset) -> "Affine":
        s = np.atleast_1d(np.asarray(scale, np.float64)).ravel()
        b = np.atleast_1d(np.asarray(offset, np.float64)).ravel()
        if len(s) != len(b) and 1 not in (len(s), len(b)):
            raise AqError(f"input transform: {len(s)} scales but {len(b)} offsets")
        n = max(len(s), len(b))
        return cls(np.broadcast_to(s, n).copy(), np.broadcast_to(b, n).copy())

    def then(self, other: "Affine") -> "Affine":
        """`other ∘ self`: x·(a1·a2) + (b1·a2 + b2)."""
        return Affine.of(self.scale * other.scale, self.offset * other.scale + other.offset)

    @property
    def per_tensor(self) -> bool:
        return len(self.scale) == 1

    def apply(self, x) -> np.ndarray:
        """`T(x)` in float32, rounded as the QAT model's `InputTransform` layer computes it
        (float32 multiply, then float32 add)."""
        return apply_input_transform(x, self.scale, self.offset)

    def to_json(self) -> str:
        return json.dumps({"scale": self.scale.tolist(), "offset": self.offset.tolist()})

    def describe(self, scale: float | None = None, zero_point: int | None = None) -> str:
        """e.g. `raw values, x*0.00392157 + 0 folded into the int8 input quantization:
        effective scale 1, zero point -128` (the effective line for a per-tensor `T` only)."""
        def vec(v):
            return f"{v[0]:.6g}" if len(v) == 1 else "[" + ", ".join(f"{e:.6g}" for e in v) + "]"
        b0 = float(self.offset[0])
        shift = f"- {-b0:.6g}" if self.per_tensor and b0 < 0 else f"+ {vec(self.offset)}"
        text = f"raw values, x*{vec(self.scale)} {shift} folded into the int8 input quantization"
        if scale is None or zero_point is None or not self.per_tensor:
            return text + ("" if self.per_tensor else " (per channel)")
        a, b = float(self.scale[0]), float(self.offset[0])
        return text + f": effective scale {scale / a:.6g}, zero point {zero_point + b / scale:.6g}"


def apply_input_transform(x, scale, offset) -> np.ndarray:
    """`x·scale + offset` in float32 over the last axis (the harness applies it to raw samples
    before quantizing them with the input tensor's scale and zero point)."""
    s = np.asarray(scale, np.float32).ravel()
    b = np.asarray(offset, np.float32).ravel()
    return np.asarray(x, np.float32) * s + b


# -- Keras layers -> Affine ---------------------------------------------------------------------
def _channel_vector(value, layer, what: str) -> np.ndarray:
    """`value` as a float64 vector over the last axis, or AqError if it varies along another."""
    v = np.asarray(value, np.float64)
    if v.ndim > 0 and any(d != 1 for d in v.shape[:-1]):
        raise AqError(f"layer '{layer.name}' ({type(layer).__name__}): its {what} of shape "
                      f"{list(v.shape)} varies along more than the last axis; only per-channel or "
                      "scalar preprocessing folds into the input quantization")
    return v.reshape(-1)


def layer_transform(layer) -> Affine:
    """The affine map of one Rescaling or Normalization layer (see the module docstring)."""
    import keras

    name = f"layer '{layer.name}' ({type(layer).__name__})"
    if isinstance(layer, keras.layers.Rescaling):
        scale, offset = np.asarray(layer.scale), np.asarray(layer.offset)
        if (scale.ndim or offset.ndim) and keras.config.image_data_format() == "channels_first":
            raise AqError(f"{name}: per-channel rescaling with channels_first data cannot be folded")
        return Affine.of(_channel_vector(scale, layer, "scale"),
                         _channel_vector(offset, layer, "offset"))
    if layer.invert:
        raise AqError(f"{name}: invert=True (de-normalization) cannot be folded into the input "
                      "quantization")
    if layer.mean is None:
        raise AqError(f"{name} has no mean and variance: adapt it or pass them before quantizing")
    mean = _channel_vector(keras.ops.convert_to_numpy(layer.mean), layer, "mean")
    var = _channel_vector(keras.ops.convert_to_numpy(layer.variance), layer, "variance")
    k = 1.0 / np.maximum(np.sqrt(var), keras.config.epsilon())
    return Affine.of(k, -mean * k)


def _nodes(fmodel) -> list:
    return [n for depth in sorted(fmodel._nodes_by_depth, reverse=True)
            for n in fmodel._nodes_by_depth[depth] if n.operation is not None and not n.is_input]


def leading_preprocessing(fmodel):
    """`(nodes, Affine or None, tensor)`: the chain of Rescaling / Normalization nodes right
    after the single Input of Functional `fmodel` (each layer used once, nothing else reading
    the Input or a tensor inside the chain, none of those a model output), their composed map,
    and the chain's output tensor (the Input itself when there is no chain)."""
    import keras

    kinds = (keras.layers.Rescaling, keras.layers.Normalization)
    if len(fmodel.inputs) != 1:
        return [], None, None
    consumers: dict[int, list] = {}
    uses: dict[int, int] = {}
    for node in _nodes(fmodel):
        uses[id(node.operation)] = uses.get(id(node.operation), 0) + 1
        for t in node.input_tensors:
            consumers.setdefault(id(t), []).append(node)
    outputs = {id(t) for t in fmodel.outputs}
    chain, transform, t = [], None, fmodel.inputs[0]
    while id(t) not in outputs and len(consumers.get(id(t), [])) == 1 and \
            isinstance(consumers[id(t)][0].operation, kinds):
        node = consumers[id(t)][0]
        if uses[id(node.operation)] != 1:
            raise AqError(f"layer '{node.operation.name}' ({type(node.operation).__name__}) is "
                          "used more than once; shared preprocessing cannot be folded")
        step = layer_transform(node.operation)
        transform = step if transform is None else transform.then(step)
        chain.append(node)
        t = node.output_tensors[0]
    return chain, transform, t


def _graph(model):
    """The Functional graph of a Functional or built Sequential model, else None."""
    import keras

    fn = getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model
    return fn if hasattr(fn, "_nodes_by_depth") else None


def strip_preprocessing(model):
    """`(model without its leading preprocessing, Affine)`, or `(model, None)` if it has none.

    The copy shares the other layers (and their weights) with `model`; the preprocessing layers
    become `Identity`, which the TFLite converter emits no op for.
    """
    import keras

    fmodel = _graph(model)
    chain, transform, _ = leading_preprocessing(fmodel) if fmodel is not None else ([], None, None)
    if transform is None:
        return model, None
    drop = {id(n.operation) for n in chain}
    src = fmodel.inputs[0]
    inp = keras.Input(shape=tuple(src.shape[1:]), batch_size=src.shape[0], name=src.name)
    stripped = keras.models.clone_model(
        fmodel, input_tensors=inp,
        clone_function=lambda ly: keras.layers.Identity(name=ly.name) if id(ly) in drop else ly)
    return stripped, transform


# -- .tflite metadata -------------------------------------------------------------------------
def _pack(model_t) -> bytes:
    """Serialize a schema `ModelT`, keeping every buffer's data 16-byte aligned as the TFLite
    converter writes it (the schema's `force_align: 16`, which the Python object API drops)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    class Aligned(schema.BufferT):
        def Pack(self, builder):
            data = None
            if self.data is not None:
                raw = np.asarray(self.data, np.uint8).tobytes()
                builder.StartVector(1, len(raw), 16)
                builder.head -= len(raw)
                builder.Bytes[builder.head:builder.head + len(raw)] = raw
                data = builder.EndVector()
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    for b in model_t.buffers or []:
        b.__class__ = Aligned
    size = sum(len(b.data) for b in model_t.buffers or [] if b.data is not None)
    builder = flatbuffers.Builder(size + 16 * len(model_t.buffers or []) + 4096)
    builder.Finish(model_t.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def write_metadata(buf: bytes, transform: Affine) -> bytes:
    """`buf` with `transform` stored as the Model metadata entry `aqedge.input_transform`
    (replacing one already there)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytes(buf), 0))
    model.buffers = model.buffers or []
    model.buffers.append(schema.BufferT())
    model.buffers[-1].data = np.frombuffer(transform.to_json().encode(), np.uint8)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [m for m in model.metadata or [] if _text(m.name) != METADATA_NAME] + [entry]
    return _pack(model)


def _text(v) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def read_metadata(model_t, label: str = "model") -> Affine | None:
    """The `aqedge.input_transform` entry of a schema `ModelT`, or None when it has none."""
    for m in model_t.metadata or []:
        if _text(m.name) != METADATA_NAME:
            continue
        try:
            raw = json.loads(bytes(np.asarray(model_t.buffers[m.buffer].data, np.uint8)))
            transform = Affine.of(raw["scale"], raw["offset"])
            if not (np.all(np.isfinite(transform.scale)) and np.all(np.isfinite(transform.offset))):
                raise ValueError("a scale or offset is not finite")
            return transform
        except (IndexError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise AqError(f"{label}: malformed {METADATA_NAME} metadata ({exc})") from None
    return None
