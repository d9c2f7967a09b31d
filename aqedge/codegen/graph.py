"""Read a .tflite flatbuffer into a small graph IR (tensors, ops) with numpy constants."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ..errors import AqError
from ..int4 import unpack_int4
from ..preprocess import Affine, read_metadata
from .verify import ModelError, verify_graph

OPCODE_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
TYPE_NAMES = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
_NUMPY_TYPES = {
    "int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32,
    "int64": np.int64, "float32": np.float32, "float16": np.float16, "bool": np.bool_,
}


@dataclass
class Tensor:
    """One tensor of the graph; `data` is set for constants (INT4 unpacked to int8 values)."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    quantized_dimension: int = 0
    data: np.ndarray | None = None
    packed: bytes | None = None

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        """Bytes as an activation in RAM (int8 = 1 byte an element)."""
        width = {"int8": 1, "uint8": 1, "bool": 1, "int16": 2, "float16": 2}.get(self.dtype, 4)
        return self.size * width

    def single_scale(self) -> float:
        return float(self.scale[0])

    def single_zero_point(self) -> int:
        return int(self.zero_point[0])


@dataclass
class Op:
    """One operator: its builtin name, tensor indices (-1 = absent optional input), options."""

    index: int
    opcode: str
    version: int
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    """`input_transform`: the preprocessing T folded into the int8 input (the input holds the
    quantization of T(raw)), from the `aqedge.input_transform` metadata; None when absent."""

    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]
    input_transform: Affine | None = None

    def tensor(self, index: int) -> Tensor | None:
        return self.tensors[index] if index >= 0 else None


def _text(raw, what: str) -> str:
    if raw is None:
        return ""
    if isinstance(raw, bytes):
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise ModelError(f"{what}: its name is not UTF-8 ({raw[:40]!r})") from None
    return str(raw)


def _buffer_bytes(t, what: str, model, buf: bytes) -> bytes | None:
    """The bytes of tensor `t`'s buffer (inside the flatbuffer, or after it at an offset), or
    None when it has none (not a constant)."""
    if not 0 <= t.buffer < len(model.buffers):
        raise ModelError(f"{what}: buffer {t.buffer} does not exist (the model has "
                         f"{len(model.buffers)})")
    buffer = model.buffers[t.buffer]
    if buffer.data is not None and len(buffer.data):
        return bytes(np.asarray(buffer.data, dtype=np.uint8))
    offset, size = int(getattr(buffer, "offset", 0) or 0), int(getattr(buffer, "size", 0) or 0)
    if offset > 1:
        if offset + size > len(buf):
            raise ModelError(f"{what}: buffer {t.buffer} lies outside the file (bytes {offset:,} "
                             f"to {offset + size:,} of {len(buf):,})")
        return buf[offset:offset + size]
    return None


def _quantization(t, what: str):
    q = t.quantization
    if q is None or q.scale is None or not len(q.scale):
        return None, None, 0
    scale = np.asarray(q.scale, dtype=np.float32)
    zero_point = np.asarray(q.zeroPoint if q.zeroPoint is not None else [], dtype=np.int64)
    if len(zero_point) != len(scale):
        raise ModelError(f"{what}: {len(scale)} scale(s) but {len(zero_point)} zero point(s)")
    return scale, zero_point, int(q.quantizedDimension)


def _tensor(t, index: int, model, buf: bytes) -> Tensor:
    what = f"tensor {index}"
    name = _text(t.name, what)
    what = f"tensor {index} '{name}'"
    dtype = TYPE_NAMES.get(t.type, f"type{t.type}")
    shape = tuple(int(d) for d in t.shape) if t.shape is not None else ()
    if any(d == 0 for d in shape):
        raise ModelError(f"{what}: shape {list(shape)} has no elements")
    if any(d < 0 for d in shape):
        raise ModelError(f"{what}: shape {list(shape)} has an unknown (dynamic) dimension; aqedge "
                         "needs fixed shapes (export with batch size 1)")
    if getattr(t, "isVariable", False):
        raise ModelError(f"{what} is a variable (state kept between inferences), which aqedge "
                         "does not run")
    if getattr(t, "sparsity", None) is not None:
        raise ModelError(f"{what} is stored sparse, which aqedge does not read")
    tensor = Tensor(index, name, shape, dtype, *_quantization(t, what))
    raw = _buffer_bytes(t, what, model, buf)
    if raw is None:
        return tensor
    if dtype != "int4" and dtype not in _NUMPY_TYPES:
        raise ModelError(f"{what}: constant of type {dtype}, which aqedge cannot read")
    want = (tensor.size + 1) // 2 if dtype == "int4" else tensor.size * np.dtype(_NUMPY_TYPES[dtype]).itemsize
    if len(raw) != want:
        raise ModelError(f"{what}: its buffer holds {len(raw):,} bytes, its shape {list(shape)} of "
                         f"{dtype} needs {want:,}")
    if dtype == "int4":
        tensor.packed = raw
        tensor.data = unpack_int4(raw, tensor.size).reshape(shape)
    else:
        tensor.data = np.frombuffer(raw, _NUMPY_TYPES[dtype]).reshape(shape)
    return tensor


def _options(op) -> dict[str, Any]:
    if op.builtinOptions is None:
        return {}
    return {k: v for k, v in vars(op.builtinOptions).items()}


def _indices(values, count: int, what: str, optional: bool = False) -> list[int]:
    out = [int(x) for x in (values if values is not None else [])]
    low = -1 if optional else 0
    bad = [x for x in out if not low <= x < count]
    if bad:
        raise ModelError(f"{what}: tensor index {bad[0]} is out of range (the model has {count} tensors)")
    return out


def _opcode(model, op, k: int) -> tuple[str, int]:
    codes = model.operatorCodes or []
    if not 0 <= op.opcodeIndex < len(codes):
        raise ModelError(f"op {k}: opcode index {op.opcodeIndex} is out of range "
                         f"(the model has {len(codes)} operator codes)")
    code = codes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    name = OPCODE_NAMES.get(builtin, f"BUILTIN_{builtin}")
    if builtin == schema.BuiltinOperator.CUSTOM:
        name = f"CUSTOM({_text(code.customCode, f'op {k}') or '?'})"
    return name, int(code.version)


def _parse(buf: bytes, label: str):
    """The schema `ModelT` of `buf`: every table and vector read once, any read past the end
    of the buffer or through a broken offset refused."""
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise AqError(f"{label} is not a TFLite flatbuffer (no 'TFL3' identifier)")
    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(buf, 0))
    except Exception as exc:  # noqa: BLE001 - a corrupt flatbuffer raises anything from struct to MemoryError
        raise AqError(f"{label} is a corrupt TFLite flatbuffer ({type(exc).__name__}: "
                      f"{str(exc)[:120]})") from None
    model.buffers = model.buffers or []
    if not model.subgraphs or len(model.subgraphs) != 1:
        raise AqError(f"{label}: aqedge runs models with exactly one subgraph "
                      f"(this one has {len(model.subgraphs or [])})")
    return model


def read_tflite(source: Path | bytes) -> Graph:
    """Parse a .tflite file (or its bytes) into a Graph and verify it (`verify.verify_graph`);
    raise AqError naming the file, op and tensor if it is not a model TFLite Micro would run."""
    label = str(source) if isinstance(source, Path) else "model"
    if isinstance(source, Path):
        if not source.is_file():
            raise AqError(f"model file not found: {source}")
        buf = source.read_bytes()
    else:
        buf = bytes(source)
    model = _parse(buf, label)
    sub = model.subgraphs[0]
    try:
        tensors = [_tensor(t, i, model, buf) for i, t in enumerate(sub.tensors or [])]
        n = len(tensors)
        ops = []
        for k, op in enumerate(sub.operators or []):
            name, version = _opcode(model, op, k)
            ops.append(Op(k, name, version, _indices(op.inputs, n, f"op {k} {name} input", True),
                          _indices(op.outputs, n, f"op {k} {name} output"), _options(op)))
        graph = Graph(tensors, ops, _indices(sub.inputs, n, "model input"),
                      _indices(sub.outputs, n, "model output"), read_metadata(model, label))
        verify_graph(graph)
    except ModelError as exc:
        raise AqError(f"{label}: {exc}") from None
    return graph
