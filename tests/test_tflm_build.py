"""The TensorFlow Lite Micro export built and run (issue 18): `build_tflm` compiles the TFLM
sources a model needs from a TFLM tree into a cached library, links the firmware, and the MLPerf
Tiny DS-CNN runs on the emulated Cortex-M4 and Cortex-M7 bit-exact with the host TFLite Micro
interpreter; the real boards link.

The trees come from $TFLM_TREE: one tree, or a folder holding trees (e.g. `ref/` and
`cmsis-nn/`), every one of which is tested. Without it those tests skip, saying so. The compiled
objects are cached for the whole run under build/tflm-cache/ (XDG_CACHE_HOME), so each core's
TFLM sources compile once per run at most, and not at all in the next run.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aqedge.boards import resolve
from aqedge.codegen.tflm_lib import (check_tree, compile_library, open_tree, select_sources,
                                     tflm_flags, trees_from_env)
from aqedge.errors import AqError

from conftest import KWS, RESNET8, TFLM_CACHE

REPO = Path(__file__).resolve().parent.parent
C_DIR = Path(__file__).parent / "c"
CACHE = TFLM_CACHE
SKIP = ("no TensorFlow Lite Micro tree: set TFLM_TREE to a tree made by create_tflm_tree.py, "
        "or to a folder holding such trees (CI sets it)")


def _trees() -> list[Path]:
    trees = []
    for tree in trees_from_env():
        try:
            check_tree(tree, "TFLM_TREE")
        except AqError:
            continue
        trees.append(tree)
    return trees


TREES = _trees()
TREE_PARAMS = [pytest.param(t, id=t.name) for t in TREES] or [
    pytest.param(None, marks=pytest.mark.skip(reason=SKIP), id="no-tree")]
KWS_OPS = ["AddConv2D", "AddDepthwiseConv2D", "AddAveragePool2D", "AddReshape",
           "AddFullyConnected", "AddSoftmax"]
#: A real Cortex-M4 and Cortex-M7 board with the emulated boards' core flags (so they link
#: against the libraries those compiled: no extra TFLM compile in the test run).
REAL_LINKED = [resolve("nucleo-f446re")[0], resolve("nucleo-h743zi")[0]]
assert all(b.cflags in {resolve(e)[0].cflags for e in ("qemu-mps2-an386", "qemu-mps2-an500")}
           for b in REAL_LINKED)


@pytest.fixture(scope="module", autouse=True)
def tflm_cache():
    """One TFLM object cache for the whole run, under the repository's build/."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(CACHE))
        yield CACHE


def _cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aqedge.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=env or dict(os.environ))


def _elf_sizes(elf: Path) -> tuple[int, int]:
    """(flash, RAM) of an image as aqedge counts them: text + data, data + bss (with the stack)."""
    out = subprocess.run(["arm-none-eabi-size", "-B", str(elf)], capture_output=True, text=True,
                         check=True).stdout.splitlines()[1].split()
    text, data, bss = (int(v) for v in out[:3])
    return text + data, data + bss


def _symbols(elf: Path) -> str:
    return subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True,
                          check=True).stdout


# ---- without a tree -----------------------------------------------------------------------------


def test_a_missing_or_wrong_tree_is_one_line_before_anything_is_done(rebuilt_tiny_models, tmp_path):
    model = str(rebuilt_tiny_models[KWS])
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "TFLM_TREE"}
    for extra, needle in ((["--tflm-tree", str(tmp_path)], "micro_interpreter.h"),
                          ([], "TFLM_TREE"),
                          (["--tflm-tree", str(tmp_path / "nope")], "no such directory")):
        result = _cli("build", "--runtime", "tflm", "--board", "qemu-mps2-an386", "--model", model,
                      "-o", str(out), *extra, env=env, timeout=120)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines
        assert not out.exists()
    # A folder of trees is not a tree: the error names the trees inside.
    for name in ("ref", "cmsis-nn"):
        (tmp_path / "trees" / name / "tensorflow/lite/micro").mkdir(parents=True)
        (tmp_path / "trees" / name / "tensorflow/lite/micro/micro_interpreter.h").write_text("")
    with pytest.raises(AqError, match=r"holds the trees cmsis-nn, ref: name one of them"):
        open_tree(tmp_path / "trees")
    with pytest.raises(AqError, match="incomplete TFLite Micro tree: .*micro_mutable_op_resolver.h"):
        open_tree(tmp_path / "trees" / "ref")


@pytest.fixture(scope="module")
def abort_image(tmp_path_factory):
    """tests/c/abort_model.c linked with board/aq_syscalls.c, for the emulated Cortex-M4."""
    from aqedge.codegen.project import compile_project, rx_max_for_input, write_project

    board, _ = resolve("qemu-mps2-an386")
    out = tmp_path_factory.mktemp("abort_fw")
    shutil.copy(C_DIR / "abort_model.c", out)
    write_project(board, out, ["abort_model.c", "runtime/firmware/board/aq_syscalls.c"],
                  rx_max_for_input(16))
    image = compile_project(board, out)
    assert not [line for line in image.build_log.splitlines() if "warning:" in line]
    symbols = _symbols(image.elf)
    assert " T _sbrk" in symbols and " T aq_fatal" in symbols and " T __assert_func" in symbols
    return board, image


@pytest.mark.parametrize("code,reason", [
    (1, r"assert failed: abort_arena\[0\] != 1 at abort_model\.c:\d+ \| model says: about to fail"),
    (2, r"abort\(\)$"),
    (3, r"exit\(3\)$"),
], ids=["assert", "abort", "exit"])
def test_abort_assert_and_exit_are_reported_then_the_device_halts(code, reason, abort_image):
    """board/aq_syscalls.c (linked into TFLM builds): abort(), a failed assert() and exit()
    answer the request with ERROR 7 and the reason (plus the last stderr text), then halt."""
    from aqedge.flash import boot_emulated
    from aqedge.harness.link import DeviceLink, LinkError

    board, image = abort_image
    with boot_emulated(board, image.elf) as emu, DeviceLink(emu.url, timeout=1.0, retries=0) as link:
        link.connect(ready_timeout=20.0)
        assert link.infer(bytes([9, 5, 6, 7] + [0] * 12))[1] == bytes([9, 5, 6, 7])
        with pytest.raises(LinkError) as err:
            link.infer(bytes([code] + [0] * 15), timeout=20.0)
        message = str(err.value)
        assert "the device aborted and halted: " in message
        assert re.search(reason, message), message
        with pytest.raises(LinkError, match="no answer"):  # halted: nothing answers any more
            link.ping()


# ---- with a tree --------------------------------------------------------------------------------


@pytest.mark.parametrize("tree", TREE_PARAMS)
def test_kws_needs_only_its_kernels_and_the_makefile_uses_the_same_flags(tree, rebuilt_tiny_models,
                                                                          tmp_path):
    from aqedge.codegen.tflm import SOURCES_MK, export_tflm

    t = open_tree(tree)
    board, _ = resolve("qemu-mps2-an386")
    flags = tflm_flags(board, t)
    sel = select_sources(t, KWS_OPS, flags)
    names = set(sel.sources)
    kdir = "tensorflow/lite/micro/kernels/" + ("cmsis_nn/" if t.kind == "cmsis-nn" else "")
    for op in ("conv", "depthwise_conv", "pooling", "fully_connected", "softmax"):
        assert kdir + f"{op}.cc" in names
        assert f"tensorflow/lite/micro/kernels/{op}_common.cc" in names
    assert {"tensorflow/lite/micro/kernels/reshape.cc", "tensorflow/lite/micro/micro_interpreter.cc",
            "tensorflow/lite/micro/micro_allocator.cc", "tensorflow/lite/core/api/flatbuffer_conversions.cc",
            "tensorflow/lite/micro/memory_planner/greedy_memory_planner.cc",
            "tensorflow/lite/micro/kernels/kernel_util.cc"} <= names
    for unused in (kdir + "add.cc", kdir + "mul.cc", "tensorflow/lite/micro/kernels/add_common.cc",
                   "tensorflow/lite/micro/kernels/strided_slice.cc",
                   "tensorflow/lite/micro/test_helpers.cc", "tensorflow/lite/micro/kernels/kernel_runner.cc"):
        assert unused not in names, unused
    assert not [s for s in names if s.startswith(("signal/", "third_party/kissfft/"))]
    everything = t.sources()
    if t.kind == "cmsis-nn":
        cmsis = {Path(s).name for s in names if s.startswith("third_party/cmsis_nn/")}
        assert {"arm_convolve_wrapper_s8.c", "arm_convolve_1x1_s8_fast.c", "arm_depthwise_conv_3x3_s8.c",
                "arm_avgpool_s8.c", "arm_fully_connected_s8.c", "arm_softmax_s8.c",
                "arm_nn_mat_mult_kernel_s8_s16.c"} <= cmsis
        assert not {"arm_elementwise_add_s8.c", "arm_svdf_s8.c", "arm_lstm_unidirectional_s8.c"} & cmsis
    assert len(names) < 0.5 * len(everything)

    # The standalone Makefile compiles a TFLM source with exactly the flags aqedge uses.
    out = tmp_path / "project"
    export_tflm(rebuilt_tiny_models[KWS], board, out, (t.kind, sel.sources))
    assert f"TFLM_SOURCES_KIND := {t.kind}" in (out / SOURCES_MK).read_text()
    src = "tensorflow/lite/micro/micro_interpreter.cc"
    dry = subprocess.run(["make", "-n", f"TFLM_TREE={t.root}", f"build/tflm/{src}.o"], cwd=out,
                         capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in dry.splitlines() if ln.startswith(f"cd {t.root} && "))
    assert shlex.split(line.split("&&", 1)[1]) == [
        "arm-none-eabi-g++", *flags.command("c++"), "-c", src, "-o", f"{out}/build/tflm/{src}.o"]
    assert ("-DCMSIS_NN" in line) == (t.kind == "cmsis-nn") and "-DNDEBUG" in line


@pytest.fixture(scope="module")
def tflm_builds(tmp_path_factory):
    """build_tflm once per (model, board, tree) for the module: path -> BuildInfo."""
    from aqedge.codegen.tflm import build_tflm

    done: dict = {}

    def get(model: Path, board_name: str, tree: Path):
        key = (str(model), board_name, str(tree))
        if key not in done:
            board, _ = resolve(board_name)
            out = tmp_path_factory.mktemp(f"{board_name}-{tree.name}")
            done[key] = (out, build_tflm(model, board, out, tree))
        return done[key]

    return get


@pytest.mark.parametrize("board_name", ["qemu-mps2-an386", "qemu-mps2-an500"])
@pytest.mark.parametrize("tree", TREE_PARAMS)
def test_kws_on_tflm_is_bit_exact_on_the_emulated_cortex_m(tree, board_name, tiny, tflm_builds):
    from aqedge.codegen.build import BuildInfo
    from aqedge.harness.session import metrics, run_session

    board, _ = resolve(board_name)
    out, info = tflm_builds(tiny[KWS], board_name, tree)
    assert info.runtime == "tflm" and info.tflm_kernels == ("cmsis-nn" if open_tree(tree).kind ==
                                                            "cmsis-nn" else "reference")
    assert BuildInfo.load(out) == info
    assert info.tflm_sources.endswith("(the model's ops)")   # the selection linked, no fallback
    # build.json: flash and RAM of the linked image, the arena TFLM was given.
    assert 0 < info.flash_bytes <= board.flash_bytes and 0 < info.ram_bytes <= board.ram_bytes
    assert (info.flash_bytes, info.ram_bytes) == _elf_sizes(out / info.elf)
    assert f"kArenaSize = {info.arena_bytes};" in (out / "tflm_model.cc").read_text()
    symbols = _symbols(out / info.elf)
    assert " T _sbrk" in symbols  # board/aq_syscalls.c: no heap
    if board.core == "cortex-m7":
        assert " aq_cm7_cache_enable" in symbols

    m = metrics(run_session(board, out, "random", 3, seed=3))
    assert m["samples"] == 3 and not m["failed_samples"]
    assert m["device_matches_reference"] == 1.0   # every output byte = host TFLite Micro's
    assert m["latency"]["unit"] == "instructions"
    # KWS: 7.70 M instructions with CMSIS-NN, 43.1 M with the reference kernels (Cortex-M4,
    # -DNDEBUG; the rebuilt DS-CNN is within a few per mille of the real file).
    low, high = (6.5e6, 9e6) if info.tflm_kernels == "cmsis-nn" else (35e6, 50e6)
    assert low < m["latency"]["median"] < high, m["latency"]


@pytest.mark.parametrize("board", REAL_LINKED, ids=lambda b: b.name)
@pytest.mark.parametrize("tree", TREE_PARAMS)
def test_kws_on_tflm_links_for_the_real_boards(tree, board, rebuilt_tiny_models, tflm_builds):
    out, info = tflm_builds(rebuilt_tiny_models[KWS], board.name, tree)
    assert 0 < info.flash_bytes <= board.flash_bytes and 0 < info.ram_bytes <= board.ram_bytes
    assert (info.flash_bytes, info.ram_bytes) == _elf_sizes(out / info.elf)
    symbols = _symbols(out / info.elf)
    assert " aq_soc_init" in symbols and " aq_dwt_total" in symbols
    assert "NOT verified on hardware" in (out / "README.md").read_text()


@pytest.mark.parametrize("tree", TREE_PARAMS)
def test_the_library_is_cached_and_objects_are_shared(tree, rebuilt_tiny_models, tflm_builds):
    """Same ops, same core: nothing compiles. Another op set (ResNet-8 adds ADD): only the new
    kernels compile, the rest comes from the object cache."""
    from aqedge.codegen.graph import read_tflite
    from aqedge.codegen.tflm import resolver_ops

    board, _ = resolve("qemu-mps2-an386")
    tflm_builds(rebuilt_tiny_models[KWS], board.name, tree)   # the KWS library exists
    t = open_tree(tree)
    flags = tflm_flags(board, t)
    kws = select_sources(t, KWS_OPS, flags)
    again = compile_library(t, board, kws.sources)
    assert again.cached and again.compiled == 0 and again.archive.is_file()
    ops = resolver_ops([op.opcode for op in read_tflite(rebuilt_tiny_models[RESNET8]).ops])
    resnet = select_sources(t, [o.method for o in ops], flags)
    new = set(resnet.sources) - set(kws.sources)
    assert any(Path(s).name == "add.cc" for s in new)
    lib = compile_library(t, board, resnet.sources)
    assert lib.cached or lib.compiled <= len(new)


def test_standalone_makefile_links_the_same_firmware(tflm_builds, rebuilt_tiny_models, tmp_path):
    """A copy of the project, `make TFLM_TREE=... TFLM_LIB=<the library>` without aqedge on PATH,
    gives the same firmware.bin (compiling the TFLM sources with make gives the same objects:
    same flags, same working directory)."""
    if not TREES:
        pytest.skip(SKIP)
    tree = TREES[0]
    t = open_tree(tree)
    board, _ = resolve("qemu-mps2-an386")
    out, _ = tflm_builds(rebuilt_tiny_models[KWS], board.name, tree)
    lib = compile_library(t, board, select_sources(t, KWS_OPS, tflm_flags(board, t)).sources)
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LC_ALL": "C"}
    subprocess.run(["make", "clean"], cwd=copy, env=env, check=True, capture_output=True)
    proc = subprocess.run(["make", "-j2", f"TFLM_TREE={t.root}", f"TFLM_LIB={lib.archive}"],
                          cwd=copy, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (copy / "firmware.bin").read_bytes() == (out / "firmware.bin").read_bytes()
