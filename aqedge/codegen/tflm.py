"""`aqedge build --runtime tflm`: a TensorFlow Lite Micro project instead of generated C.

For users who run TFLite Micro: the `.tflite` as an aligned C array, `tflm_model.cc` with a
`MicroMutableOpResolver` holding exactly the model's op types and a `MicroInterpreter` behind the
`aq_model.h` interface, and aqedge's own main loop, serial protocol and board support, so
`aqedge measure` talks to it like to an aqedge build.

`export_tflm` writes the project; `build_tflm` also compiles it against a TFLM source tree
(`--tflm-tree DIR` or $TFLM_TREE; reference or CMSIS-NN kernels): the TFLM sources the model
needs go into a cached library (`tflm_lib`), then the project's own Makefile compiles the
firmware and links it, and build.json gets the image's flash and RAM.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jinja2

from ..atomic import staged_dir
from ..boards import Board
from ..errors import AqError
from ..flash import make_flash_targets
from ..resources import data_dir
from .build import BUILD_INFO, MODEL_COPY, BuildInfo, TensorInfo, _check_fits_arena, sha256_of
from .graph import read_tflite
from .lower import lower
from .plan import plan_memory
from .project import _IGNORED, _write_if_changed, compile_project, rx_max_for_input
from .tflm_lib import (
    TREE_ENV,
    LibraryBuild,
    Progress,
    TflmTree,
    check_tree,
    compile_library,
    makefile_flags,
    open_tree,
    select_sources,
    tflm_flags,
    tree_kind,
    trees_from_env,
)

__all__ = ["TREE_ENV", "TflmExport", "build_tflm", "check_tree", "export_tflm", "open_tree",
           "resolver_ops", "tree_kind", "trees_from_env"]

#: Builtin op -> the MicroMutableOpResolver method that registers it (TFLM's public API).
TFLM_ADD_METHODS = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin", "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd", "CAST": "AddCast", "CEIL": "AddCeil",
    "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D", "COS": "AddCos",
    "DEPTH_TO_SPACE": "AddDepthToSpace", "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEQUANTIZE": "AddDequantize", "ELU": "AddElu", "EQUAL": "AddEqual", "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill", "FLOOR": "AddFloor",
    "FULLY_CONNECTED": "AddFullyConnected", "GATHER": "AddGather", "GREATER": "AddGreater",
    "HARD_SWISH": "AddHardSwish", "L2_NORMALIZATION": "AddL2Normalization",
    "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess", "LOG": "AddLog", "LOGISTIC": "AddLogistic",
    "MAXIMUM": "AddMaximum", "MAX_POOL_2D": "AddMaxPool2D", "MEAN": "AddMean",
    "MINIMUM": "AddMinimum", "MUL": "AddMul", "NEG": "AddNeg", "PACK": "AddPack", "PAD": "AddPad",
    "PADV2": "AddPadV2", "PRELU": "AddPrelu", "QUANTIZE": "AddQuantize",
    "REDUCE_MAX": "AddReduceMax", "RELU": "AddRelu", "RELU6": "AddRelu6", "RESHAPE": "AddReshape",
    "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor", "RSQRT": "AddRsqrt",
    "SHAPE": "AddShape", "SIN": "AddSin", "SOFTMAX": "AddSoftmax", "SPLIT": "AddSplit",
    "SPLIT_V": "AddSplitV", "SQRT": "AddSqrt", "SQUARE": "AddSquare", "SQUEEZE": "AddSqueeze",
    "STRIDED_SLICE": "AddStridedSlice", "SUB": "AddSub", "SUM": "AddSum", "TANH": "AddTanh",
    "TRANSPOSE": "AddTranspose", "TRANSPOSE_CONV": "AddTransposeConv", "UNPACK": "AddUnpack",
}
#: TFLM's TARGET_ARCH for each core (cortex_m_generic target).
_TFLM_ARCH = {"cortex-m4": "cortex-m4+fp", "cortex-m7": "cortex-m7+fp", "cortex-m33": "cortex-m33",
              "cortex-m55": "cortex-m55", "cortex-m0plus": "cortex-m0plus", "cortex-m3": "cortex-m3"}
_RUNTIME_DIRS = ("board", "protocol", "include")
_RUNTIME_FILES = ("aq_main.c",)
#: The TFLM sources the model needs, for the Makefile (written by build_tflm).
SOURCES_MK = "tflm_sources.mk"


@dataclass(frozen=True)
class TflmOp:
    name: str
    method: str


@dataclass
class TflmExport:
    out_dir: Path
    #: The model's op types in first-use order, as TFLite builtin names.
    ops: list[str]
    #: The arena kArenaSize in tflm_model.cc.
    arena_bytes: int
    model_sha256: str


def resolver_ops(opcodes: list[str]) -> list[TflmOp]:
    """The resolver registrations for a model whose ops have these builtin names (each type once,
    in first-use order).

    Raises:
        AqError: an op has no MicroMutableOpResolver method we know of.
    """
    seen: list[str] = []
    for name in opcodes:
        if name not in seen:
            seen.append(name)
    unknown = [n for n in seen if n not in TFLM_ADD_METHODS]
    if unknown:
        raise AqError(f"no TFLite Micro resolver method known for op(s) {', '.join(unknown)}")
    return [TflmOp(n, TFLM_ADD_METHODS[n]) for n in seen]


def c_array(data: bytes, name: str, align: int = 16, per_line: int = 12) -> str:
    """C++ source defining `data` as `alignas(align) const unsigned char name[]` and its length."""
    lines = []
    for i in range(0, len(data), per_line):
        lines.append("    " + ", ".join(f"0x{b:02x}" for b in data[i:i + per_line]) + ",")
    body = "\n".join(lines)
    return (f"alignas({align}) const unsigned char {name}[] = {{\n{body}\n}};\n"
            f"const unsigned int {name}_len = {len(data)}u;\n")


def parse_c_array(text: str, name: str) -> bytes:
    """The bytes of array `name` in C source written by c_array() (for tests and checks)."""
    m = re.search(rf"{re.escape(name)}\[\]\s*=\s*\{{(.*?)\}};", text, re.S)
    if m is None:
        raise AqError(f"array {name} not found")
    return bytes(int(v, 16) for v in re.findall(r"0x([0-9a-fA-F]{2})", m.group(1)))


def host_tflm_arena_bytes(model: bytes) -> int | None:
    """Arena bytes the host TFLM interpreter (tflite_micro, reference kernels) allocates for the
    model, read from its allocation report (printed on the C stderr); None if unavailable."""
    try:
        from tflite_micro import runtime
    except ImportError:
        return None
    with tempfile.TemporaryFile() as log:
        saved = os.dup(2)
        try:
            os.dup2(log.fileno(), 2)
            try:
                interpreter = runtime.Interpreter.from_bytes(model, arena_size=8 << 20)
                interpreter.print_allocations()
            except Exception:
                return None
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        m = re.search(rb"Arena allocation total (\d+) bytes", log.read())
    return int(m.group(1)) if m else None


def _cmsis_scratch_bytes(graph) -> int:
    """Upper bound of the CMSIS-NN kernels' scratch buffer (int16 im2col columns) of the largest
    conv/depthwise conv: 4 bytes per filter tap and input channel."""
    most = 0
    for op in graph.ops:
        if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            shape = graph.tensors[op.inputs[1]].shape  # OHWI / 1HWO
            cin = graph.tensors[op.inputs[0]].shape[-1]
            most = max(most, 4 * shape[1] * shape[2] * cin)
    return most


def _align(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def _sources_mk(kind: str, sources: list[str], ops: list[TflmOp]) -> str:
    lines = " \\\n".join(f"  {s}" for s in sources)
    return (f"# Generated by aqedge build: the TFLite Micro sources this model needs in a {kind} tree\n"
            f"# (core, the kernels of {', '.join(o.name for o in ops)} and what they use). The Makefile\n"
            f"# compiles these from a tree of this kind, every source from a tree of the other kind.\n"
            f"TFLM_SOURCES_KIND := {kind}\nTFLM_SOURCES := \\\n{lines}\n")


def export_tflm(model_path: Path, board: Board, out_dir: Path,
                sources: tuple[str, list[str]] | None = None) -> TflmExport:
    """Write the TFLite Micro project for `model_path` on `board` into `out_dir` (not compiled).

    `sources` (tree kind, TFLM sources) are written to tflm_sources.mk for the Makefile; without
    them a standalone `make` compiles the whole tree."""
    model_path = Path(model_path)
    graph = read_tflite(model_path)  # validates the file (not TFLite, float model...)
    data = model_path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    plan = plan_memory(graph, lower(graph, str(model_path)))
    ops = resolver_ops([op.opcode for op in graph.ops])
    host = host_tflm_arena_bytes(data)
    # 64-bit host bookkeeping over-estimates the 32-bit device's; without the host figure, allow
    # 256 bytes per op (node, eval tensors, op data) over the planned activations.
    base = host if host is not None else plan.arena_bytes + 256 * len(graph.ops) + 64 * len(graph.tensors)
    arena = _align(max(base, plan.arena_bytes) + _cmsis_scratch_bytes(graph) + 1024, 1024)
    _check_fits_arena(graph, arena, 0, board, f"{model_path} (on TFLite Micro)")
    if len(data) > board.flash_bytes:
        raise AqError(f"{model_path} does not fit {board.name}: the .tflite alone is {len(data):,} bytes, "
                      f"the board has {board.flash_bytes:,} of flash")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(data_dir("templates") / "tflm"),
                                        str(data_dir("templates") / "firmware")]),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    inp, out = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    context = {
        "board": board, "model_name": model_path.name, "ops": ops, "arena_bytes": arena,
        "plan_arena_bytes": plan.arena_bytes, "host_arena_bytes": host if host is not None else "n/a",
        "input_bytes": inp.nbytes, "output_bytes": out.nbytes, "size": len(data), "sha256": sha256,
        "sha256_bytes": ", ".join(f"0x{b:02x}" for b in bytes.fromhex(sha256)),
        "tflm_arch": _TFLM_ARCH.get(board.core, board.core), "flash": make_flash_targets(board),
        "rx_max": rx_max_for_input(inp.nbytes), "cxx": True, "model_sources": [],
        "tflm": makefile_flags(board),
    }
    for name in ("tflm_model.cc", "model_data.h", "Makefile", "README.md", "linker.ld", "board_config.h"):
        _write_if_changed(out_dir / name, env.get_template(f"{name}.j2").render(**context).encode())
    header = (f"// Generated by aqedge: {model_path.name} ({len(data)} bytes, SHA-256 {sha256}).\n"
              '#include "model_data.h"\n\n')
    _write_if_changed(out_dir / "model_data.cc", (header + c_array(data, "g_aq_model_data")).encode())
    if sources is not None:
        _write_if_changed(out_dir / SOURCES_MK, _sources_mk(sources[0], sources[1], ops).encode())
    else:
        (out_dir / SOURCES_MK).unlink(missing_ok=True)

    runtime = out_dir / "runtime" / "firmware"
    if runtime.exists():
        shutil.rmtree(runtime)
    src = data_dir("firmware")
    for sub in _RUNTIME_DIRS:
        shutil.copytree(src / sub, runtime / sub, ignore=_IGNORED)
    for name in _RUNTIME_FILES:
        shutil.copyfile(src / name, runtime / name)
    if model_path.resolve() != (out_dir / MODEL_COPY).resolve():
        shutil.copyfile(model_path, out_dir / MODEL_COPY)
    BuildInfo(board=board.name, model=model_path.name, model_sha256=sha256, ops=len(graph.ops),
              arena_bytes=arena, flash_bytes=0, ram_bytes=0,
              input=TensorInfo.of(inp, graph.input_transform),
              output=TensorInfo.of(out), runtime="tflm").save(out_dir)
    return TflmExport(out_dir, [op.name for op in ops], arena, sha256)


def build_tflm(model_path: Path, board: Board, out_dir: Path, tree: str | os.PathLike | None = None,
               *, progress: Progress | None = None, jobs: int | None = None) -> BuildInfo:
    """Export `model_path` as a TFLite Micro project for `board` in `out_dir`, compile it against
    the TFLM tree `tree` (default: $TFLM_TREE), link it and write build.json (flash and RAM of
    the linked image, arena = the kArenaSize used).

    The TFLM sources the model needs are compiled into a cached library first
    (`tflm_lib.compile_library`; `progress(done, total)` follows it, `jobs` files at a time),
    then the project's Makefile compiles the firmware and links it against that library.

    Raises:
        AqError: no tree or not a usable one (before anything is written or compiled), an op
            the tree's resolver lacks, a compile or link error, or a model that does not fit.
    """
    model_path, out_dir = Path(model_path), Path(out_dir)
    t = open_tree(tree)
    graph = read_tflite(model_path)
    ops = resolver_ops([op.opcode for op in graph.ops])
    flags = tflm_flags(board, t)
    selection = select_sources(t, [op.method for op in ops], flags)
    # Built in a staged copy of out_dir that replaces it only once everything succeeded.
    with staged_dir(out_dir, drop=(BUILD_INFO,)) as stage:
        export = export_tflm(model_path, board, stage, (t.kind, selection.sources))
        # Firmware objects compiled against another tree (or kind) are stale.
        stamp = stage / "build" / "tflm_tree"
        config = f"{t.root}\n{t.kind}\n{' '.join(flags.command('c++'))}\n"
        if not stamp.is_file() or stamp.read_text() != config:
            shutil.rmtree(stage / "build", ignore_errors=True)
            stamp.parent.mkdir(parents=True)
            stamp.write_text(config)
        lib = compile_library(t, board, selection.sources, progress=progress, jobs=jobs)
        used = f"{len(selection.sources)} of {len(t.sources())} (the model's ops)"
        try:
            image = _link(board, stage, t, lib)
        except AqError as err:
            if "undefined reference" not in str(err):
                raise
            # A tree laid out differently from what select_sources expects: take every source but
            # the unused op kernels, and link again (said in build.json's tflm_sources).
            broad = select_sources(t, [op.method for op in ops], flags, broad=True)
            _write_if_changed(stage / SOURCES_MK, _sources_mk(t.kind, broad.sources, ops).encode())
            lib = compile_library(t, board, broad.sources, progress=progress, jobs=jobs)
            image = _link(board, stage, t, lib)
            used = (f"{len(broad.sources)} of {len(t.sources())} (all but unused op kernels: the "
                    "selection missed a symbol)")
        inp, out = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
        info = BuildInfo(board=board.name, model=model_path.name, model_sha256=export.model_sha256,
                         ops=len(graph.ops), arena_bytes=export.arena_bytes,
                         flash_bytes=image.flash_bytes, ram_bytes=image.ram_bytes,
                         input=TensorInfo.of(inp, graph.input_transform), output=TensorInfo.of(out),
                         elf=str(image.elf.relative_to(stage)), runtime="tflm",
                         firmware_sha256=sha256_of(image.elf),
                         tflm_kernels=t.kernels, tflm_sources=used)
        info.save(stage)
    return info


def _link(board: Board, out_dir: Path, tree: TflmTree, lib: LibraryBuild):
    # Always link anew: the cached library may be older than the last image yet different.
    for name in ("firmware.elf", "firmware.bin"):
        (out_dir / name).unlink(missing_ok=True)
    return compile_project(board, out_dir, {"TFLM_TREE": str(tree.root), "TFLM_LIB": str(lib.archive)})
