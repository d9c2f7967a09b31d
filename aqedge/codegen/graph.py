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


def _tensor(t, index: int, model, buf: bytes) -> Tensor:
    dtype = TYPE_NAMES.get(t.type, f"type{t.type}")
    shape = tuple(int(d) for d in t.shape) if t.shape is not None else ()
    q = t.quantization
    scale = zero_point = None
    qdim = 0
    if q is not None and q.scale is not None and len(q.scale):
        scale = np.asarray(q.scale, dtype=np.float32)
        zero_point = np.asarray(q.zeroPoint, dtype=np.int64)
        qdim = int(q.quantizedDimension)
    name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
    tensor = Tensor(index, name, shape, dtype, scale, zero_point, qdim)
    buffer = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
    raw = None
    if buffer is not None and buffer.data is not None and len(buffer.data):
        raw = bytes(np.asarray(buffer.data, dtype=np.uint8))
    elif buffer is not None and getattr(buffer, "offset", 0) > 1:
        raw = buf[buffer.offset:buffer.offset + buffer.size]
    if raw is not None:
        if dtype == "int4":
            tensor.packed = raw
            tensor.data = unpack_int4(raw, tensor.size).reshape(shape)
        elif dtype in _NUMPY_TYPES:
            tensor.data = np.frombuffer(raw, _NUMPY_TYPES[dtype]).reshape(shape)
    return tensor


def _options(op) -> dict[str, Any]:
    if op.builtinOptions is None:
        return {}
    return {k: v for k, v in vars(op.builtinOptions).items()}


def read_tflite(source: Path | bytes) -> Graph:
    """Parse a .tflite file (or its bytes) into a Graph; raise AqError if it is not one."""
    label = str(source) if isinstance(source, Path) else "model"
    if isinstance(source, Path):
        if not source.is_file():
            raise AqError(f"model file not found: {source}")
        buf = source.read_bytes()
    else:
        buf = source
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise AqError(f"{label} is not a TFLite flatbuffer (no 'TFL3' identifier)")
    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(buf, 0))
    except Exception as exc:  # a corrupt flatbuffer raises anything from struct to IndexError
        raise AqError(f"{label} is a corrupt TFLite flatbuffer: {exc}") from None
    if not model.subgraphs or len(model.subgraphs) != 1:
        raise AqError(f"{label}: aqedge runs models with exactly one subgraph "
                      f"(this one has {len(model.subgraphs or [])})")
    sub = model.subgraphs[0]
    tensors = [_tensor(t, i, model, buf) for i, t in enumerate(sub.tensors)]
    ops = []
    for i, op in enumerate(sub.operators or []):
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        name = OPCODE_NAMES.get(builtin, f"BUILTIN_{builtin}")
        if builtin == schema.BuiltinOperator.CUSTOM:
            custom = code.customCode.decode() if code.customCode else "?"
            name = f"CUSTOM({custom})"
        ops.append(Op(i, name, int(code.version),
                      [int(x) for x in (op.inputs if op.inputs is not None else [])],
                      [int(x) for x in (op.outputs if op.outputs is not None else [])],
                      _options(op)))
    return Graph(tensors, ops, [int(x) for x in sub.inputs], [int(x) for x in sub.outputs],
                 read_metadata(model, label))
