"""`aqedge build`: a .tflite and a board in, a compiled firmware project out."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import staged_dir
from ..boards import Board, fit_hint
from ..errors import AqError
from ..preprocess import Affine
from .graph import Graph, Tensor, read_tflite
from .lower import band_bytes, kernel_variants, scratch_bytes
from .storage import LoweredModel, describe, lower_model, summary
from .project import compile_project, rx_max_for_input, write_project
from .render import render_model

BUILD_INFO = "build.json"
MODEL_COPY = "model.tflite"


@dataclass
class TensorInfo:
    """A model edge. `transform_scale` / `transform_offset` (input only, None when absent): the
    folded preprocessing T(x) = x·scale + offset (per tensor or per channel) to apply to raw
    values before quantizing them with `scale` / `zero_point` (`aqedge.preprocess`)."""

    shape: list[int]
    scale: float | None        # None for a float32 model edge
    zero_point: int | None
    dtype: str = "int8"
    transform_scale: list[float] | None = None
    transform_offset: list[float] | None = None

    @classmethod
    def of(cls, t: Tensor, transform: Affine | None = None) -> "TensorInfo":
        extra = {} if transform is None else dict(transform_scale=transform.scale.tolist(),
                                                  transform_offset=transform.offset.tolist())
        if t.scale is None:
            return cls(list(t.shape), None, None, t.dtype, **extra)
        return cls(list(t.shape), t.single_scale(), t.single_zero_point(), t.dtype, **extra)

    @property
    def numpy_dtype(self) -> type:
        return np.float32 if self.dtype == "float32" else np.int8


@dataclass
class BuildInfo:
    """What a build directory holds; saved as build.json for `flash` and `measure`."""

    board: str
    model: str
    model_sha256: str
    ops: int
    arena_bytes: int
    flash_bytes: int
    ram_bytes: int
    input: TensorInfo
    output: TensorInfo
    elf: str = "firmware.elf"
    #: "aqedge" (generated C) or "tflm" (the TFLite Micro export).
    runtime: str = "aqedge"
    #: The TFLite Micro kernels a tflm build runs: "cmsis-nn" or "reference" (None otherwise,
    #: and for an export that was not compiled).
    tflm_kernels: str | None = None
    #: TFLM builds: which TFLM sources were compiled, e.g. "115 of 317 (the model's ops)", or
    #: "198 of 317 (all but unused op kernels: the selection missed a symbol)".
    tflm_sources: str | None = None
    #: aqedge builds: the kernel variant of each MAC layer, chosen at build time
    #: (aqedge/codegen/dispatch.py): rows {op, opcode, kernel, variant, why}.
    kernels: list[dict] = field(default_factory=list)
    #: SHA-256 of the linked image (`elf`): `flash` and `measure` refuse a folder whose
    #: firmware or model copy is not the one this build made.
    firmware_sha256: str = ""
    #: aqedge builds: how activations are stored ("packed": 4-bit tensors two codes a byte, or
    #: "int8"; codegen/storage.py), the arena either way, and each buffer's storage and why.
    activation_storage: str = "int8"
    int8_arena_bytes: int = 0
    packed_arena_bytes: int = 0
    tensors: list[dict] = field(default_factory=list)

    def storage_line(self) -> str:
        """How the activations are stored, one line (codegen/storage.py describe)."""
        return describe(self.activation_storage, sum(1 for t in self.tensors if t.get("packed")),
                        self.arena_bytes, self.int8_arena_bytes or self.arena_bytes,
                        self.packed_arena_bytes or self.arena_bytes)

    def save(self, build_dir: Path) -> None:
        (build_dir / BUILD_INFO).write_text(json.dumps(asdict(self), indent=2) + "\n")

    def check_files(self, build_dir: Path) -> None:
        """The firmware and model copy in `build_dir` are the ones this build.json describes."""
        for name, want, what in ((self.elf, self.firmware_sha256, "firmware"),
                                 (MODEL_COPY, self.model_sha256, "model copy")):
            path = build_dir / name
            if not path.is_file():
                raise AqError(f"{build_dir}: its {what} {name} is missing: rebuild it with `aqedge build`")
            if not want or sha256_of(path) != want:
                raise AqError(f"{build_dir}: {name} is not the {what} its {BUILD_INFO} was written "
                              "for: rebuild it with `aqedge build`")

    @classmethod
    def load(cls, build_dir: Path) -> "BuildInfo":
        path = build_dir / BUILD_INFO
        if not path.is_file():
            raise AqError(f"{build_dir} is not an aqedge build directory (no {BUILD_INFO}): "
                          "run `aqedge build` first")
        try:
            raw = json.loads(path.read_text())
            raw["input"] = TensorInfo(**raw["input"])
            raw["output"] = TensorInfo(**raw["output"])
            info = cls(**raw)
            _check_types(info)
            return info
        except (ValueError, TypeError, KeyError, UnicodeDecodeError, AttributeError) as exc:
            raise AqError(f"{path} is damaged ({type(exc).__name__}: {exc}): rebuild "
                          f"{build_dir} with `aqedge build`") from None


def _check_types(info: BuildInfo) -> None:
    """build.json's fields have the types `flash` and `measure` use (a hand edit can break them)."""
    for name in ("board", "model", "model_sha256", "elf", "runtime", "firmware_sha256"):
        if not isinstance(getattr(info, name), str):
            raise TypeError(f"'{name}' is not a string")
    for t in (info.input, info.output):
        if not (isinstance(t.shape, list) and t.shape and all(isinstance(d, int) and d > 0 for d in t.shape)):
            raise ValueError(f"tensor shape {t.shape!r} is not a list of positive integers")
        if t.scale is not None and not (isinstance(t.scale, (int, float)) and t.scale > 0):
            raise ValueError(f"scale {t.scale!r} is not a positive number")
        if t.zero_point is not None and not isinstance(t.zero_point, int):
            raise ValueError(f"zero point {t.zero_point!r} is not an integer")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def default_build_dir(board: Board) -> Path:
    return Path("build") / board.name


def _weight_bytes(graph: Graph) -> int:
    """Bytes of constant data (weights, biases) the image stores in flash: a lower bound of its
    flash needs, before the code is compiled."""
    return sum(len(t.packed) if t.packed is not None else int(t.data.nbytes)
               for t in graph.tensors if t.is_constant)


def _check_fits_arena(graph: Graph, arena_bytes: int, scratch: int, board: Board, label: str,
                      storage: str = "") -> None:
    """Refuse an arena (plus the kernels' scratch) larger than the board's RAM after its stack;
    `storage` says how the activations were stored, in the message."""
    budget = board.ram_bytes - board.stack_bytes
    if arena_bytes + scratch > budget:
        also = f" and {scratch:,} for the kernels' column and band buffers" if scratch else ""
        raise AqError(f"{label} does not fit {board.name}: its activation arena needs {arena_bytes:,} "
                      f"bytes of RAM, the board has {board.ram_bytes:,} ({budget:,} after a "
                      f"{board.stack_bytes:,}-byte stack{also}){storage}"
                      + fit_hint(_weight_bytes(graph), arena_bytes + scratch, board))


def _storage_note(model: LoweredModel) -> str:
    if model.mode == "int8" and model.packed_arena_bytes < model.plan.arena_bytes:
        return (f"; with 4-bit activations packed (--activation-storage packed) the arena is "
                f"{model.packed_arena_bytes:,}")
    return "; activations already packed" if model.mode == "packed" else ""


#: RAM of the runtime besides the arena, its receive buffer, tables and scratch (protocol state,
#: profile buffer, UART driver): an upper estimate for the "auto" storage choice, checked by the
#: linker whatever it decides.
RUNTIME_RAM_BYTES = 4096


def _ram_for_arena(board: Board, graph: Graph) -> int:
    """What the board's RAM leaves for the arena and the kernels' scratch, as far as it is
    known before compiling: minus the stack, the receive buffer (the whole input tensor in one
    frame), a 256-byte table per op that runs through one and RUNTIME_RAM_BYTES."""
    inp = graph.tensors[graph.inputs[0]]
    tables = 256 * (1 + sum(op.opcode in ("LOGISTIC", "HARD_SWISH", "LEAKY_RELU") for op in graph.ops))
    return (board.ram_bytes - board.stack_bytes - rx_max_for_input(inp.nbytes) - tables
            - RUNTIME_RAM_BYTES)


def build(model_path: Path, board: Board, out_dir: Path, activation_storage: str = "auto") -> BuildInfo:
    """Parse, lower, plan, render and cross-compile `model_path` for `board` into `out_dir`,
    activations stored as `activation_storage` says (codegen/storage.py MODES)."""
    graph = read_tflite(model_path)
    data = model_path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    model = lower_model(graph, str(model_path), activation_storage, _ram_for_arena(board, graph))
    calls, plan = model.calls, model.plan
    _check_fits_arena(graph, plan.arena_bytes, scratch_bytes(calls) + sum(band_bytes(calls)), board,
                      str(model_path), _storage_note(model))
    inp, out = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    # Built in a staged copy of out_dir that replaces it only once everything succeeded.
    with staged_dir(out_dir, drop=(BUILD_INFO,)) as stage:
        sources = render_model(graph, calls, plan, model_path.name, sha256, stage)
        (stage / MODEL_COPY).write_bytes(data)
        write_project(board, stage, sources, rx_max_for_input(inp.nbytes))
        image = compile_project(board, stage)
        info = BuildInfo(board=board.name, model=model_path.name, model_sha256=sha256,
                         ops=len(graph.ops), arena_bytes=plan.arena_bytes,
                         flash_bytes=image.flash_bytes, ram_bytes=image.ram_bytes,
                         input=TensorInfo.of(inp, graph.input_transform), output=TensorInfo.of(out),
                         elf=str(image.elf.relative_to(stage)), kernels=kernel_variants(calls),
                         firmware_sha256=sha256_of(image.elf), activation_storage=model.mode,
                         int8_arena_bytes=model.int8_arena_bytes,
                         packed_arena_bytes=model.packed_arena_bytes,
                         tensors=summary(model.storages))
        info.save(stage)
    return info
