"""TensorFlow Lite Micro from a source tree: check the tree, pick the sources a model needs,
compile them for a board's core into a static library, and cache it.

A tree is what TFLM's `create_tflm_tree.py` writes: `tensorflow/` (core and kernels),
`signal/`, `third_party/` (flatbuffers, gemmlowp, ruy, kissfft, CMSIS headers, and CMSIS-NN in a
tree made with `OPTIMIZED_KERNEL_DIR=cmsis_nn`: `third_party/cmsis_nn/` tells the two kinds
apart). It comes from `--tflm-tree DIR` or the `TFLM_TREE` environment variable, never from a
path of aqedge's own.

What a model needs (`select_sources`), decided from the tree's own files before anything is
compiled:
- the core: every source under `tensorflow/` outside `micro/kernels/` (interpreter, allocator,
  memory planner, flatbuffer conversions, ...), less TFLM's test support (`test_helpers.cc`,
  `test_helper_custom_ops.cc`, `fake_micro_context.cc`, `mock_micro_graph.cc`);
- the op kernels: the files defining the `Register_*` functions that the resolver methods of
  the model's ops call (read from `micro_mutable_op_resolver.h`), e.g. `cmsis_nn/conv.cc`;
- the kernel helpers those files use: a helper (a kernel-folder file that registers no op) is
  taken when a selected file includes, directly or through other headers, the header of its name
  (`conv.h` -> `conv_common.cc`, `kernel_util.h` -> `kernel_util.cc`);
- in a CMSIS-NN tree, the CMSIS-NN sources defining the functions and tables the selected files
  use, and those they use in turn (one function per file, found by its definition).
`signal/` and kissfft only come in for a signal op. Should the link still miss a symbol (a tree
laid out differently), `build_tflm` retries once with every source but the unused op kernels.

Compiling: objects are content-addressed, keyed by the compiler, the code-generation flags and
the preprocessed source, under `$XDG_CACHE_HOME/aqedge/tflm/objects/` (default
`~/.cache/aqedge/tflm/`), so they are shared by every model, and by both kinds of tree where the
preprocessed source is the same (the core). The library of one selection is cached too (`lib/`,
keyed by the tree's path and file stamps, the selection, the flags and the compiler), so a second
model with the same ops on the same core compiles nothing. Every file is written to a temporary
name and renamed, so an interrupted or concurrent build never leaves a broken object. Nothing
is evicted: delete the folder to reclaim the space (a few MB per core and tree).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from ..boards import Board
from ..errors import AqError

TREE_ENV = "TFLM_TREE"
#: What every usable tree holds (checked before anything is compiled).
REQUIRED_FILES = (
    "tensorflow/lite/micro/micro_interpreter.h",
    "tensorflow/lite/micro/micro_mutable_op_resolver.h",
    "tensorflow/lite/schema/schema_generated.h",
    "third_party/flatbuffers/include/flatbuffers/flatbuffers.h",
    "third_party/gemmlowp/fixedpoint/fixedpoint.h",
)
CROSS = "arm-none-eabi-"
_KERNELS = "tensorflow/lite/micro/kernels/"
_CMSIS_NN_SRC = "third_party/cmsis_nn/Source/"
#: TFLM's test support: part of its library upstream, never called by an application.
_TEST_SUPPORT = frozenset({
    "tensorflow/lite/micro/test_helpers.cc", "tensorflow/lite/micro/test_helper_custom_ops.cc",
    "tensorflow/lite/micro/fake_micro_context.cc", "tensorflow/lite/micro/mock_micro_graph.cc",
})
_SOURCE_ROOTS = ("tensorflow", "signal", "third_party")
#: Include directories, relative to the tree (the CMSIS-NN ones only in a CMSIS-NN tree; the
#: device header folder is added per core).
_INCLUDES = (".", "third_party/gemmlowp", "third_party/flatbuffers/include", "third_party/ruy",
             "third_party/kissfft", "third_party/cmsis", "third_party/cmsis/CMSIS/Core/Include")
_CMSIS_NN_INCLUDES = ("third_party/cmsis_nn", "third_party/cmsis_nn/Include")
#: Code generation (TFLM's cortex_m_generic release build).
COMMON_FLAGS = ("-O2", "-ffunction-sections", "-fdata-sections", "-fno-unwind-tables",
                "-fno-asynchronous-unwind-tables", "-funsigned-char", "-fomit-frame-pointer")
CXX_FLAGS = ("-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics")
C_FLAGS = ("-std=c17",)
#: TFLM's BUILD_TYPE=release_with_logs (NDEBUG: without it the reference kernels keep their
#: debug checks and run several times slower) and the cortex_m_generic target's defines.
BASE_DEFINES = ("-DNDEBUG", "-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_DISABLE_X86_NEON",
                "-DTF_LITE_MCU_DEBUG_LOG", "-DKERNELS_OPTIMIZED_FOR_SPEED")
CMSIS_NN_DEFINES = ("-DARM_NN_ENABLE_F16=0", "-DARM_NN_ENABLE_F32=0")


# ---- the tree ---------------------------------------------------------------------------------


def _is_tree(path: Path) -> bool:
    return (path / REQUIRED_FILES[0]).is_file()


def tree_requirements() -> str:
    return ("a tree made by TFLM's create_tflm_tree.py holds tensorflow/lite/micro/micro_interpreter.h, "
            "tensorflow/lite/schema/, third_party/flatbuffers/include/ and third_party/gemmlowp/")


@dataclass
class TflmTree:
    """A checked TFLite Micro source tree."""

    root: Path
    #: "cmsis-nn" (third_party/cmsis_nn/ present: CMSIS-NN kernels) or "ref" (reference kernels).
    kind: str
    _sources: list[str] | None = field(default=None, repr=False)
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def kernels(self) -> str:
        """What runs the ops: "cmsis-nn" or "reference"."""
        return "cmsis-nn" if self.kind == "cmsis-nn" else "reference"

    def sources(self) -> list[str]:
        """Every .cc/.c under tensorflow/, signal/ and third_party/, relative, sorted."""
        if self._sources is None:
            found = []
            for top in _SOURCE_ROOTS:
                for dirpath, dirs, files in os.walk(self.root / top):
                    dirs.sort()
                    rel = Path(dirpath).relative_to(self.root).as_posix()
                    found += [f"{rel}/{f}" for f in files if f.endswith((".cc", ".c"))]
            self._sources = sorted(found)
        return self._sources

    def fingerprint(self) -> str:
        """A hash of every file's path, size and modification time: changes with any edit."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for dirpath, dirs, files in os.walk(self.root):
                dirs.sort()
                for name in sorted(files):
                    path = Path(dirpath) / name
                    st = path.stat()
                    h.update(f"{path.relative_to(self.root).as_posix()}\0{st.st_size}\0"
                             f"{st.st_mtime_ns}\n".encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def read(self, rel: str) -> str:
        return (self.root / rel).read_text(errors="replace")


def trees_from_env() -> list[Path]:
    """The trees $TFLM_TREE names: itself when it is a tree, else the trees directly inside it
    (e.g. `ref/` and `cmsis-nn/`), sorted by name; [] when it is unset. A directory that is
    neither comes back as is, for check_tree() to explain."""
    value = os.environ.get(TREE_ENV, "").strip()
    if not value:
        return []
    root = Path(value).expanduser()
    if root.is_dir() and not _is_tree(root):
        inside = sorted(p for p in root.iterdir() if p.is_dir() and _is_tree(p))
        if inside:
            return inside
    return [root]


def check_tree(tree: str | os.PathLike, origin: str = "--tflm-tree") -> None:
    """Raise AqError (one line: what is missing, what a tree must hold) unless `tree` is a
    usable TFLM tree. Nothing is compiled."""
    root = Path(tree).expanduser()
    if not root.is_dir():
        raise AqError(f"{origin} {root}: no such directory ({tree_requirements()})")
    if not _is_tree(root):
        subtrees = sorted(p.name for p in root.iterdir() if p.is_dir() and _is_tree(p))
        hint = (f"; it holds the trees {', '.join(subtrees)}: name one of them, e.g. "
                f"{root / subtrees[0]}" if subtrees else f"; {tree_requirements()}")
        raise AqError(f"{origin} {root} is not a TFLite Micro tree (no {REQUIRED_FILES[0]}){hint}")
    missing = [f for f in REQUIRED_FILES if not (root / f).is_file()]
    if missing:
        raise AqError(f"{origin} {root} is an incomplete TFLite Micro tree: {', '.join(missing)} "
                      f"missing ({tree_requirements()})")


def tree_kind(tree: str | os.PathLike) -> str:
    """"cmsis-nn" for a tree with third_party/cmsis_nn/ (CMSIS-NN kernels), else "ref"."""
    return "cmsis-nn" if (Path(tree) / "third_party" / "cmsis_nn").is_dir() else "ref"


def open_tree(tree: str | os.PathLike | None = None) -> TflmTree:
    """The TFLM tree `tree` names, else the one $TFLM_TREE names, checked.

    Raises:
        AqError: none given, $TFLM_TREE holds several trees, or the directory is not a usable
            tree (one line each).
    """
    if tree:
        origin, root = "--tflm-tree", Path(tree).expanduser()
    else:
        found = trees_from_env()
        if not found:
            raise AqError(f"no TFLite Micro tree: give --tflm-tree DIR or set {TREE_ENV}=DIR "
                          f"({tree_requirements()})")
        if len(found) > 1:
            raise AqError(f"{TREE_ENV}={os.environ[TREE_ENV].strip()} holds several TFLite Micro "
                          f"trees ({', '.join(p.name for p in found)}): give --tflm-tree "
                          f"{found[0]} (or another)")
        origin, root = TREE_ENV, found[0]
    check_tree(root, origin)
    return TflmTree(root.resolve(), tree_kind(root))


# ---- flags ------------------------------------------------------------------------------------


def core_number(board: Board) -> str:
    """The Cortex-M number of the board's core: "4" for cortex-m4, "7" for cortex-m7."""
    m = re.fullmatch(r"cortex-m(\d+\w*)", board.core)
    if m is None:
        raise AqError(f"board {board.name}: core {board.core} is not a Cortex-M core TFLM's "
                      "cortex_m_generic target builds for")
    return m.group(1)


@dataclass(frozen=True)
class Flags:
    """The compiler flags of TFLM's sources for one board core and tree kind (the generated
    Makefile spells out the same ones)."""

    arch: tuple[str, ...]
    defines: tuple[str, ...]
    includes: tuple[str, ...]   # relative to the tree

    def command(self, lang: str) -> list[str]:
        """Everything but the input and output, for `lang` "c" or "c++" (run in the tree)."""
        std = CXX_FLAGS if lang == "c++" else C_FLAGS
        inc = [f"-I{d}" for d in self.includes]
        return [*self.arch, *COMMON_FLAGS, *self.defines, *inc, *std]

    def codegen(self, lang: str) -> list[str]:
        """The flags that shape the object once the source is preprocessed (the object key)."""
        return [*self.arch, *COMMON_FLAGS, *(CXX_FLAGS if lang == "c++" else C_FLAGS)]


def _device_dir(n: str) -> str:
    return f"third_party/cmsis/Cortex_DFP/Device/ARMCM{n}/Include"


def makefile_flags(board: Board) -> dict:
    """The pieces of tflm_flags() the generated Makefile assembles itself, choosing the
    tree-dependent ones (device header, CMSIS-NN) from the tree it is given, in the same order."""
    n = core_number(board)
    return {"n": n, "common": COMMON_FLAGS, "defines": (*BASE_DEFINES, f"-DCPU_M{n}=1", f"-DARMCM{n}"),
            "includes": _INCLUDES, "dfp": _device_dir(n), "cmsis_nn_defines": CMSIS_NN_DEFINES,
            "cmsis_nn_includes": _CMSIS_NN_INCLUDES, "cxx": CXX_FLAGS, "c": C_FLAGS}


def tflm_flags(board: Board, tree: TflmTree) -> Flags:
    n = core_number(board)
    dfp = _device_dir(n)
    defines = [*BASE_DEFINES, f"-DCPU_M{n}=1", f"-DARMCM{n}"]
    includes = list(_INCLUDES)
    if (tree.root / dfp / f"ARMCM{n}.h").is_file():
        # cortex_m_generic/micro_time.cc reads the DWT cycle counter through the device header.
        defines.append(f'-DCMSIS_DEVICE_ARM_CORTEX_M_XX_HEADER_FILE="ARMCM{n}.h"')
        includes.append(dfp)
    else:
        defines.append("-DPROJECT_GENERATION")  # no device header: micro_time.cc stubs the timer
    defines += CMSIS_NN_DEFINES
    if tree.kind == "cmsis-nn":
        defines.append("-DCMSIS_NN")
        includes += _CMSIS_NN_INCLUDES
    return Flags(tuple(board.cflags), tuple(defines), tuple(includes))


# ---- which sources a model needs ------------------------------------------------------------


_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)
_REGISTER_DEF = re.compile(r"\b(Register_\w+)\s*\(\s*\)\s*\{")
_METHOD = re.compile(r"\bTfLiteStatus\s+(Add\w+)\s*\(")
_IDENT = re.compile(r"\b[A-Za-z_]\w*\b")
# In file-scope text (bodies emptied): a function definition, or an initialised array.
_C_FUNC_DEF = re.compile(r"([^;{}#]*?)\b([A-Za-z_]\w*)\s*\([^;{}]*\)\s*\{\}")
_C_DATA_DEF = re.compile(r"([^;{}#(]*?)\b([A-Za-z_]\w*)\s*(?:\[[^\]]*\])+\s*=")


def _strip(text: str) -> str:
    return _COMMENT.sub(" ", text)


@dataclass
class Selection:
    """The TFLM sources a model needs, and why."""

    sources: list[str]
    #: Resolver method -> the Register_* functions it calls.
    registrations: dict[str, list[str]]
    #: The op kernel files among `sources`.
    op_files: list[str]


def resolver_registrations(tree: TflmTree) -> dict[str, list[str]]:
    """MicroMutableOpResolver method (AddConv2D, ...) -> the Register_* functions it calls, read
    from the tree's micro_mutable_op_resolver.h."""
    text = _strip(tree.read("tensorflow/lite/micro/micro_mutable_op_resolver.h"))
    starts = [(m.start(), m.group(1)) for m in _METHOD.finditer(text)] + [(len(text), "")]
    out: dict[str, list[str]] = {}
    for (start, name), (end, _) in itertools.pairwise(starts):
        regs = list(dict.fromkeys(re.findall(r"\bRegister_\w+", text[start:end])))
        out.setdefault(name, regs)
    return out


def _registration_files(tree: TflmTree) -> dict[str, list[str]]:
    """Register_* function -> the files defining it; and every op file (defines one)."""
    defs: dict[str, list[str]] = {}
    for rel in tree.sources():
        if not rel.startswith(("tensorflow/", "signal/")) or not rel.endswith(".cc"):
            continue
        for name in set(_REGISTER_DEF.findall(_strip(tree.read(rel)))):
            defs.setdefault(name, []).append(rel)
    return defs


def _preferred(tree: TflmTree, files: list[str]) -> str:
    """Of several files defining one registration, the optimised port in a CMSIS-NN tree
    (kernels/cmsis_nn/), else the reference kernel (kernels/): create_tflm_tree.py leaves only
    one, a TFLM checkout has both."""
    if len(files) == 1:
        return files[0]
    want = _KERNELS + ("cmsis_nn/" if tree.kind == "cmsis-nn" else "")
    for f in files:
        if f.startswith(want) and "/" not in f[len(want):]:
            return f
    return min(files)


class _Includes:
    """Resolves and caches the quoted #includes of the tree's files."""

    def __init__(self, tree: TflmTree, include_dirs: tuple[str, ...]) -> None:
        self.tree = tree
        self.dirs = include_dirs
        self._cache: dict[str, list[str]] = {}

    def direct(self, rel: str) -> list[str]:
        if rel not in self._cache:
            found = []
            here = str(Path(rel).parent)
            for inc in _INCLUDE.findall(_strip(self.tree.read(rel))):
                for base in (here, *self.dirs):
                    cand = os.path.normpath(os.path.join(base, inc)) if base else os.path.normpath(inc)
                    if (self.tree.root / cand).is_file():
                        found.append(Path(cand).as_posix())
                        break
            self._cache[rel] = found
        return self._cache[rel]

    def closure(self, rel: str) -> set[str]:
        seen: set[str] = set()
        todo = [rel]
        while todo:
            for h in self.direct(todo.pop()):
                if h not in seen:
                    seen.add(h)
                    todo.append(h)
        return seen


_C_KEYWORDS = frozenset({"if", "for", "while", "switch", "return", "sizeof"})


def _file_scope(text: str) -> str:
    """`text` with the inside of every top-level brace pair removed (function bodies,
    initialisers): what is left is declarations and definitions at file scope."""
    out, depth = [], 0
    for ch in text:
        if ch == "{":
            if depth == 0:
                out.append("{")
            depth += 1
        elif ch == "}":
            depth = max(0, depth - 1)
            if depth == 0:
                out.append("}")
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def _c_definitions(tree: TflmTree, files: list[str]) -> dict[str, str]:
    """Non-static function and data name -> the file defining it, for C sources."""
    defs: dict[str, str] = {}
    for rel in files:
        text = _file_scope(re.sub(r"^\s*#[^\n]*", "", _strip(tree.read(rel)), flags=re.M))
        for m in list(_C_FUNC_DEF.finditer(text)) + list(_C_DATA_DEF.finditer(text)):
            prefix, name = m.group(1), m.group(2)
            if "static" in prefix.split() or name.startswith("__") or name in _C_KEYWORDS:
                continue
            defs.setdefault(name, rel)
    return defs


def select_sources(tree: TflmTree, methods: list[str], flags: Flags, broad: bool = False) -> Selection:
    """The sources of `tree` a model whose resolver calls `methods` needs (see the module
    docstring). With `broad`, every source except the op kernels the model does not use (and
    signal/ unless needed): the fallback when the link misses a symbol.

    Raises:
        AqError: a method this tree's resolver lacks, or a registration no file defines.
    """
    known = resolver_registrations(tree)
    missing = [m for m in methods if m not in known]
    if missing:
        raise AqError(f"the TFLite Micro tree {tree.root} has no MicroMutableOpResolver::"
                      f"{', '.join(missing)} (an older TFLM?): the model's ops need them")
    regs = {m: known[m] for m in methods}
    defs = _registration_files(tree)
    op_files_all = {f for files in defs.values() for f in files}
    op_files: list[str] = []
    for m, names in regs.items():
        files = [_preferred(tree, defs[n]) for n in names if n in defs]
        if not files:
            raise AqError(f"no source in the TFLite Micro tree {tree.root} defines "
                          f"{' or '.join(names) or m} (for {m})")
        op_files += [f for f in files if f not in op_files]
    needs_signal = any(f.startswith("signal/") for f in op_files)
    all_sources = tree.sources()

    def optional_pool(rel: str) -> bool:
        return rel.startswith((_KERNELS, "signal/", "third_party/"))

    core = [s for s in all_sources if s.startswith("tensorflow/") and not s.startswith(_KERNELS)
            and s not in _TEST_SUPPORT]
    if broad:
        chosen = [s for s in all_sources if s not in op_files_all or s in op_files]
        if not needs_signal:
            chosen = [s for s in chosen if not s.startswith(("signal/", "third_party/kissfft/"))]
        return Selection(chosen, regs, op_files)

    chosen = set(core) | set(op_files)
    if needs_signal:
        chosen |= {s for s in all_sources if s.startswith(("signal/src/", "third_party/kissfft/"))}
    # Kernel helpers by the headers the chosen files include (to a fixed point).
    helpers: dict[str, list[str]] = {}
    for s in all_sources:
        if s.startswith(_KERNELS) and s not in op_files_all:
            stem = re.sub(r"_common$", "", Path(s).stem)
            helpers.setdefault(f"{Path(s).parent.as_posix()}/{stem}.h", []).append(s)
    includes = _Includes(tree, flags.includes)
    done: set[str] = set()
    todo = sorted(s for s in chosen if optional_pool(s) or s in op_files)
    while todo:
        rel = todo.pop()
        if rel in done:
            continue
        done.add(rel)
        for h in includes.closure(rel):
            for helper in helpers.get(h, []):
                if helper not in chosen:
                    chosen.add(helper)
                    todo.append(helper)
    # CMSIS-NN: the sources defining what the chosen files use, transitively.
    if tree.kind == "cmsis-nn":
        cmsis = [s for s in all_sources if s.startswith(_CMSIS_NN_SRC)]
        cdefs = _c_definitions(tree, cmsis)
        todo = sorted(s for s in chosen if s.startswith(_KERNELS))
        scanned: set[str] = set()
        while todo:
            rel = todo.pop()
            if rel in scanned:
                continue
            scanned.add(rel)
            for ident in set(_IDENT.findall(_strip(tree.read(rel)))):
                src = cdefs.get(ident)
                if src is not None and src not in chosen:
                    chosen.add(src)
                    todo.append(src)
    return Selection(sorted(chosen), regs, op_files)


# ---- compiling and caching ------------------------------------------------------------------


def cache_root() -> Path:
    """Where compiled TFLM objects and libraries are kept: $XDG_CACHE_HOME/aqedge/tflm
    (default ~/.cache/aqedge/tflm)."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "aqedge" / "tflm"


_COMPILER_IDS: dict[str, str] = {}


def _compiler_id(exe: str) -> str:
    """The compiler's identity for cache keys: its resolved path, size, mtime and version."""
    if exe not in _COMPILER_IDS:
        path = shutil.which(exe)
        if path is None:
            raise AqError(f"{exe} not found: install the GNU Arm toolchain (Debian/Ubuntu: "
                          "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi "
                          "libstdc++-arm-none-eabi-dev)")
        real = os.path.realpath(path)
        st = os.stat(real)
        version = subprocess.run([real, "--version"], capture_output=True, text=True,
                                 check=False).stdout.splitlines()[:1]
        _COMPILER_IDS[exe] = f"{real}\0{st.st_size}\0{st.st_mtime_ns}\0{''.join(version)}"
    return _COMPILER_IDS[exe]


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _atomic_path(final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    return Path(tmp)


def _lang(rel: str) -> str:
    return "c++" if rel.endswith(".cc") else "c"


def _compiler(lang: str) -> str:
    return f"{CROSS}{'g++' if lang == 'c++' else 'gcc'}"


@dataclass
class LibraryBuild:
    """A compiled TFLM library and what it took."""

    archive: Path
    sources: list[str]
    #: Sources compiled now (the others came from the cache).
    compiled: int
    #: True when the whole library came from the cache.
    cached: bool


Progress = Callable[[int, int], None]


def compile_library(tree: TflmTree, board: Board, sources: list[str], *,
                    progress: Progress | None = None, jobs: int | None = None) -> LibraryBuild:
    """Compile `sources` of `tree` for `board`'s core into a static library (cached).

    `progress(done, total)` is called as sources are done (total: the sources not already in
    the library cache). Compiles `jobs` files at a time (default: the CPU count).

    Raises:
        AqError: the compiler is missing or a source does not compile (its last lines).
    """
    flags = tflm_flags(board, tree)
    ids = {lang: _compiler_id(_compiler(lang)) for lang in ("c", "c++")}
    root = cache_root()
    key = hashlib.sha256(json.dumps(
        [str(tree.root), tree.fingerprint(), ids, flags.command("c++"), flags.command("c"),
         sorted(sources)]).encode()).hexdigest()
    archive = root / "lib" / f"{key}.a"
    if archive.is_file():
        if progress:
            progress(len(sources), len(sources))
        return LibraryBuild(archive, list(sources), 0, True)

    def one(rel: str) -> tuple[str, Path, bool]:
        lang = _lang(rel)
        exe = _compiler(lang)
        cmd = [exe, *flags.command(lang)]
        pre = subprocess.run([*cmd, "-E", "-P", rel], cwd=tree.root, capture_output=True, check=False)
        if pre.returncode != 0:
            raise AqError(f"TFLM source {rel} of {tree.root} does not preprocess for {board.core}:\n"
                          + _tail(pre.stderr.decode(errors="replace")))
        h = hashlib.sha256()
        for part in (ids[lang], lang, " ".join(flags.codegen(lang)), rel):
            h.update(part.encode() + b"\0")
        h.update(pre.stdout)
        digest = h.hexdigest()
        obj = root / "objects" / digest[:2] / f"{digest}.o"
        if obj.is_file():
            return rel, obj, False
        tmp = _atomic_path(obj)
        proc = subprocess.run([*cmd, "-c", rel, "-o", str(tmp)], cwd=tree.root,
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise AqError(f"TFLM source {rel} of {tree.root} does not compile for {board.core}:\n"
                          + _tail(proc.stderr))
        os.replace(tmp, obj)
        return rel, obj, True

    objects: dict[str, Path] = {}
    compiled = 0
    total = len(sources)
    if progress:
        progress(0, total)
    with ThreadPoolExecutor(max_workers=max(1, jobs or os.cpu_count() or 1)) as pool:
        futures = [pool.submit(one, rel) for rel in sources]
        try:
            for fut in as_completed(futures):
                rel, obj, fresh = fut.result()
                objects[rel] = obj
                compiled += fresh
                if progress:
                    progress(len(objects), total)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise

    # The archive, members named after their sources (link maps stay readable), in source order.
    ar = f"{CROSS}ar"
    with tempfile.TemporaryDirectory(prefix="aqedge-tflm-ar-") as tmpdir:
        members = []
        for rel in sources:
            member = Path(tmpdir) / (rel.replace("/", "__") + ".o")
            os.symlink(objects[rel], member)
            members.append(member.name)
        tmp = _atomic_path(archive)
        tmp.unlink()
        proc = subprocess.run([ar, "rcsD", str(tmp), *members], cwd=tmpdir, capture_output=True,
                              text=True, check=False)
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise AqError(f"{ar} failed: {_tail(proc.stderr)}")
        # What the library is, for whoever looks into the cache.
        info = {"tree": str(tree.root), "kind": tree.kind, "core": board.core,
                "flags": flags.command("c++"), "sources": list(sources)}
        note = _atomic_path(archive.parent / f"{key}.json")
        note.write_text(json.dumps(info, indent=1) + "\n")
        os.replace(note, archive.parent / f"{key}.json")
        os.replace(tmp, archive)
    return LibraryBuild(archive, list(sources), compiled, False)
