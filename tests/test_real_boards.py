"""Real boards (issue 6): board files, SoC bring-up that cross-compiles, flashing backends,
standalone projects and the TFLite Micro export. Nothing here runs on hardware: no board is
attached to this machine, so these check what can be checked without one."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aqedge import flash as flashmod
from aqedge.boards import all_boards, resolve
from aqedge.errors import AqError

from conftest import KWS

REAL = [b for b in all_boards() if not b.emulated]
HAS_ARM_GCC = shutil.which("arm-none-eabi-gcc") is not None

# Datasheet limits: max PCLK1/PCLK2 and the PLL's VCO input/output ranges.
LIMITS = {
    "stm32f4": {"vco_in": (0.95e6, 2.1e6), "vco_out": (100e6, 432e6)},
    "stm32l4": {"vco_in": (4e6, 16e6), "vco_out": (64e6, 344e6)},
    "stm32f7": {"vco_in": (0.95e6, 2.1e6), "vco_out": (100e6, 432e6)},   # RM0385
    "stm32h7": {"vco_in": (2e6, 16e6), "vco_out": (192e6, 836e6)},       # RM0433, wide VCO
}
PCLK_MAX = {"nucleo-f401re": (42e6, 84e6), "nucleo-f446re": (45e6, 90e6),
            "nucleo-l4r5zi": (120e6, 120e6), "disco-f746ng": (54e6, 108e6),
            "nucleo-h743zi": (100e6, 100e6)}
#: STM32H743, VOS1: CPU max 400 MHz (revision Y), AXI/AHB max 200 MHz, flash wait states and
#: programming delay by AXI clock (RM0433 flash latency table, VOS1 rows: top of band, LATENCY,
#: WRHIGHFREQ).
H7_VOS1 = {"cpu": 400e6, "hclk": 200e6,
           "bands": ((70e6, 0, 0), (140e6, 1, 1), (185e6, 2, 1), (210e6, 2, 2), (225e6, 3, 2))}


@pytest.fixture
def kws(tiny) -> Path:
    """The MLPerf Tiny DS-CNN, rebuilt or the real file (conftest's `tiny`)."""
    return tiny[KWS]


def test_there_are_real_boards_and_none_claims_hardware_verification():
    names = {b.name for b in REAL}
    assert {"nucleo-f401re", "nucleo-f446re", "nucleo-l4r5zi", "disco-f746ng", "nucleo-h743zi"} <= names
    assert all(not b.verified_on_hardware for b in all_boards())
    assert all(b.soc["driver"] == "none" for b in all_boards() if b.emulated)


@pytest.mark.parametrize("board", REAL, ids=lambda b: b.name)
def test_clock_tree_matches_the_reference_manual(board):
    soc = board.soc
    src = soc.get("hse_hz") if soc["source"].startswith("hse") else soc["hsi_hz"]
    vco_in = src / soc["pll_m"]
    vco_out = vco_in * soc["pll_n"]
    divider = soc["pll_r"] if soc["driver"] == "stm32l4" else soc["pll_p"]
    sysclk = vco_out / divider
    lim = LIMITS[soc["driver"]]
    assert lim["vco_in"][0] <= vco_in <= lim["vco_in"][1]
    assert lim["vco_out"][0] <= vco_out <= lim["vco_out"][1]
    if soc["driver"] == "stm32h7":
        # CPU = sys_ck / D1CPRE; AXI/AHB = CPU / HPRE; flash wait states follow the AXI clock.
        cpu = sysclk / soc["d1cpre_div"]
        hclk = cpu / soc["ahb_div"]
        assert cpu == board.clock_hz == board.timer["hz"] and cpu <= H7_VOS1["cpu"]
        assert hclk <= H7_VOS1["hclk"] and soc["vos"] == 3
        _, ws, wrhighfreq = next(band for band in H7_VOS1["bands"] if hclk <= band[0])
        assert soc["flash_latency"] == ws and soc["wrhighfreq"] == wrhighfreq
        assert soc["pll_p"] % 2 == 0
    else:
        hclk = sysclk / soc["ahb_div"]
        assert hclk == board.clock_hz == board.timer["hz"]
        # Flash wait states: F4/F7 at 2.7-3.6 V one per 30 MHz (RM0368/RM0390/RM0385), L4+ range 1
        # boost one per 20 MHz (RM0432).
        per_ws = 20e6 if soc["driver"] == "stm32l4" else 30e6
        assert soc["flash_latency"] == math.ceil(hclk / per_ws) - 1
    if board.clock_hz > 180e6 and soc["driver"] == "stm32f7":
        assert soc["overdrive"] and soc["vos"] == 3  # RM0385: over-drive above 180 MHz
    pclk1, pclk2 = hclk / soc["apb1_div"], hclk / soc["apb2_div"]
    assert pclk1 <= PCLK_MAX[board.name][0] and pclk2 <= PCLK_MAX[board.name][1]
    # The VCP UART's kernel clock is the PCLK of its bus (APB2: 0x4001xxxx on the F4/F7/H7),
    # and the baud error at 16x oversampling.
    pclk = pclk2 if 0x40010000 <= board.uart["base"] < 0x40020000 else pclk1
    assert board.uart["clk_hz"] == pclk
    brr = round(pclk / board.uart["baud"])
    assert abs(pclk / brr / board.uart["baud"] - 1) < 0.01
    assert board.timer["driver"] == "dwt" and board.latency_unit == "cycles"
    assert board.uart["tx"][0] == "P" and isinstance(board.uart["af"], int)


@pytest.mark.parametrize("board", all_boards(), ids=lambda b: b.name)
def test_every_board_builds_mlperf_kws(board, kws, tmp_path):
    from aqedge.codegen.build import build

    info = build(kws, board, tmp_path / board.name)
    assert 0 < info.flash_bytes <= board.flash_bytes and 0 < info.ram_bytes <= board.ram_bytes
    out = tmp_path / board.name
    symbols = subprocess.run(["arm-none-eabi-nm", str(out / "firmware.elf")], capture_output=True,
                             text=True, check=True).stdout
    assert " aq_soc_init" in symbols
    config = (out / "board_config.h").read_text()
    if board.emulated:
        assert "AQ_SOC_" not in config
    else:
        assert "AQ_SOC_PLL_N" in config and "AQ_UART_TX_PORT" in config
        assert " aq_dwt_total" in symbols  # DWT CYCCNT timer, not SysTick
    # Cortex-M7: the startup invalidates and enables the L1 I/D caches; never on an M4.
    assert (" aq_cm7_cache_enable" in symbols) == (board.core == "cortex-m7")
    assert ("-mcpu=cortex-m7" in board.cflags) == (board.core == "cortex-m7")
    assert (out / "README.md").is_file()


def test_standalone_project_rebuilds_byte_identical_elsewhere(kws, tmp_path):
    """The build directory is a project of its own: copied to a fresh directory, `make` there
    (no aqedge, no venv on PATH) gives the very same firmware.elf and firmware.bin."""
    from aqedge.codegen.build import build

    board, _ = resolve("nucleo-f401re")
    original = tmp_path / "original"
    build(kws, board, original)
    copy = tmp_path / "elsewhere" / "project"
    shutil.copytree(original, copy)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LC_ALL": "C"}
    subprocess.run(["make", "clean"], cwd=copy, env=env, check=True, capture_output=True)
    assert not (copy / "firmware.elf").exists()
    proc = subprocess.run(["make", "-j2"], cwd=copy, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for name in ("firmware.elf", "firmware.bin"):
        assert (copy / name).read_bytes() == (original / name).read_bytes(), name
    dry = subprocess.run(["make", "-n", "flash", "flash-st-flash", "flash-pyocd"], cwd=copy, env=env,
                         capture_output=True, text=True, check=True).stdout
    assert "openocd -f interface/stlink.cfg -f target/stm32f4x.cfg" in dry
    assert "st-flash --reset write firmware.bin 0x08000000" in dry
    assert "pyocd flash --target stm32f401retx firmware.elf" in dry
    readme = (copy / "README.md").read_text()
    assert "NOT verified on hardware" in readme and "make flash" in readme


# ---- flashing ------------------------------------------------------------------------------


def test_flash_command_lines():
    f401, _ = resolve("nucleo-f401re")
    l4, _ = resolve("nucleo-l4r5zi")
    assert flashmod.flash_command(f401, "openocd", "b/firmware.elf", "b/firmware.bin") == [
        "openocd", "-f", "interface/stlink.cfg", "-f", "target/stm32f4x.cfg",
        "-c", "program b/firmware.elf verify reset exit"]
    assert flashmod.flash_command(l4, "openocd", "my dir/fw.elf", "x", probe_serial="066DFF") == [
        "openocd", "-f", "interface/stlink.cfg", "-c", "adapter serial 066DFF",
        "-f", "target/stm32l4x.cfg", "-c", "program {my dir/fw.elf} verify reset exit"]
    assert flashmod.flash_command(f401, "st-flash", "e", "b/firmware.bin", probe_serial="S1") == [
        "st-flash", "--reset", "--serial", "S1", "write", "b/firmware.bin", "0x08000000"]
    assert flashmod.flash_command(l4, "pyocd", "fw.elf", "fw.bin") == [
        "pyocd", "flash", "--target", "stm32l4r5zitx", "fw.elf"]
    with pytest.raises(AqError, match="unknown flashing tool 'jlink'"):
        flashmod.flash_command(f401, "jlink", "e", "b")
    qemu, _ = resolve("qemu-stm32f405")
    with pytest.raises(AqError, match="cannot be flashed with openocd"):
        flashmod.flash_command(qemu, "openocd", "e", "b")


def _fake_build(tmp_path: Path) -> Path:
    (tmp_path / "firmware.elf").write_bytes(b"\x7fELF" + bytes(60))
    (tmp_path / "firmware.bin").write_bytes(bytes(64))
    (tmp_path / "model.tflite").write_bytes(b"model")
    return tmp_path


def test_missing_tool_names_it_and_how_to_install(tmp_path, monkeypatch):
    board, _ = resolve("nucleo-f401re")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    for tool, hint in (("openocd", "apt-get install openocd"),
                       ("st-flash", "apt-get install stlink-tools"), ("pyocd", "pip install pyocd")):
        with pytest.raises(AqError) as err:
            flashmod.program(board, _fake_build(tmp_path), tool)
        assert f"{tool} not found" in str(err.value) and hint in str(err.value)
        assert "\n" not in str(err.value)


def test_missing_image_and_emulated_board(tmp_path):
    board, _ = resolve("nucleo-l4r5zi")
    with pytest.raises(AqError, match="does not exist: run `aqedge build"):
        flashmod.program(board, tmp_path, "openocd")
    qemu, _ = resolve("qemu-stm32f405")
    with pytest.raises(AqError, match="is emulated"):
        flashmod.program(qemu, tmp_path)


def test_tool_error_line_picks_the_reason():
    openocd = ("Open On-Chip Debugger 0.12.0\nInfo : clock speed 2000 kHz\nError: open failed\n"
               "in procedure 'program'\n** OpenOCD init failed **\nshutdown command invoked\n")
    assert flashmod.tool_error_line(openocd) == "Error: open failed"
    stflash = "st-flash 1.7.0\n2026-11-27T22:50:14 WARN usb.c: Couldn't find any ST-Link devices\n"
    assert flashmod.tool_error_line(stflash) == "WARN usb.c: Couldn't find any ST-Link devices"
    pyocd = "0001234 C No connected debug probes [__main__]\n"
    assert "No connected debug probes" in flashmod.tool_error_line(pyocd)
    assert flashmod.tool_error_line("") == "no output"


@pytest.mark.parametrize("tool,needle", [("openocd", "open failed"),
                                         ("st-flash", "Couldn't find any ST-Link")])
def test_real_tool_without_a_probe_fails_cleanly(tool, needle, tmp_path):
    assert shutil.which(tool), f"{tool} is missing: make setup (scripts/setup-system.sh) installs it"
    board, _ = resolve("nucleo-f401re")
    echoed = []
    with pytest.raises(AqError) as err:
        flashmod.program(board, _fake_build(tmp_path), tool, echo=echoed.append, timeout=60)
    message = str(err.value)
    assert needle in message and "\n" not in message and f"{tool} could not program" in message
    assert echoed and echoed[0].startswith(tool)


def test_cli_flash_prints_the_command_then_a_one_line_error(tmp_path):
    from aqedge.codegen.build import BuildInfo, TensorInfo

    board, _ = resolve("nucleo-f401re")
    t = TensorInfo([1, 4], 0.5, 0)
    from aqedge.codegen.build import sha256_of

    d = _fake_build(tmp_path)
    BuildInfo(board.name, "m.tflite", sha256_of(d / "model.tflite"), 1, 16, 1, 1, t, t,
              firmware_sha256=sha256_of(d / "firmware.elf")).save(d)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:/nonexistent")
    result = subprocess.run([sys.executable, "-m", "aqedge.cli", "flash", "--board", board.name,
                             str(tmp_path), "--tool", "st-flash"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: st-flash not found")
    assert "stlink-tools" in result.stderr


class _Port:
    def __init__(self, device, vid, pid, serial="0671FF"):
        self.device, self.vid, self.pid, self.serial_number = device, vid, pid, serial


def test_find_serial_port_by_usb_ids(monkeypatch):
    from serial.tools import list_ports

    board, _ = resolve("nucleo-l4r5zi")
    ports = [_Port("/dev/ttyUSB0", 0x1A86, 0x7523), _Port("/dev/ttyACM0", 0x0483, 0x374B)]
    monkeypatch.setattr(list_ports, "comports", lambda: ports)
    assert flashmod.find_serial_port(board) == "/dev/ttyACM0"
    ports.append(_Port("/dev/ttyACM1", 0x0483, 0x374E, "X2"))
    with pytest.raises(AqError, match="several ST-LINK serial ports.*--port"):
        flashmod.find_serial_port(board)
    ports[:] = ports[:1]
    with pytest.raises(AqError, match="no serial port of an ST-LINK.*0483:374b"):
        flashmod.find_serial_port(board)


def test_boards_verb_labels_real_boards():
    env = dict(os.environ, COLUMNS="200")
    out = subprocess.run([sys.executable, "-m", "aqedge.cli", "boards"], capture_output=True,
                         text=True, env=env, timeout=60).stdout
    for line in out.splitlines():
        if "nucleo-" in line:
            assert "NOT verified on hardware" in line and "openocd" in line
        if "qemu-" in line:
            assert "emulated (QEMU)" in line


# ---- TFLite Micro export ------------------------------------------------------------------------


def _stub_tflm(root: Path) -> None:
    """Just enough of TFLM's public API, as declarations, to compile tflm_model.cc on the host."""
    micro = root / "tensorflow" / "lite" / "micro"
    micro.mkdir(parents=True)
    (root / "tensorflow" / "lite" / "schema").mkdir(parents=True)
    (root / "tensorflow" / "lite" / "schema" / "schema_generated.h").write_text(
        "#pragma once\n#define TFLITE_SCHEMA_VERSION 3\n"
        "namespace tflite { struct Model { unsigned version() const; };\n"
        "const Model* GetModel(const void* buf); }\n")
    (micro / "micro_interpreter.h").write_text(
        "#pragma once\n#include <cstddef>\n#include <cstdint>\n"
        "enum TfLiteStatus { kTfLiteOk = 0, kTfLiteError = 1 };\n"
        "union TfLitePtrUnion { int8_t* int8; };\n"
        "struct TfLiteTensor { TfLitePtrUnion data; size_t bytes; };\n"
        "namespace tflite { struct Model; class MicroOpResolver {};\n"
        "class MicroInterpreter { public: MicroInterpreter(const Model*, const MicroOpResolver&,"
        " uint8_t*, size_t); TfLiteStatus AllocateTensors(); TfLiteStatus Invoke();"
        " TfLiteTensor* input(size_t); TfLiteTensor* output(size_t); }; }\n")
    methods = "".join(f" TfLiteStatus {m}();" for m in sorted(set(
        __import__("aqedge.codegen.tflm", fromlist=["x"]).TFLM_ADD_METHODS.values())))
    (micro / "micro_mutable_op_resolver.h").write_text(
        '#pragma once\n#include "tensorflow/lite/micro/micro_interpreter.h"\n'
        "namespace tflite { template <unsigned N> class MicroMutableOpResolver : public "
        f"MicroOpResolver {{ public:{methods} }}; }}\n")


def test_tflm_export(tiny, tmp_path):
    from aqedge.codegen.graph import read_tflite
    from aqedge.codegen.tflm import export_tflm, parse_c_array
    from aqedge.convert.int4 import tflm_arena_bytes

    board, _ = resolve("nucleo-l4r5zi")
    out = tmp_path / "tflm"
    export = export_tflm(tiny[KWS], board, out)
    data = tiny[KWS].read_bytes()
    source = (out / "model_data.cc").read_text()
    assert "alignas(16) const unsigned char g_aq_model_data[]" in source
    assert parse_c_array(source, "g_aq_model_data") == data
    assert f"g_aq_model_data_len = {len(data)}u" in source

    opcodes = [op.opcode for op in read_tflite(data).ops]
    assert export.ops == list(dict.fromkeys(opcodes))  # each op type once, in first-use order
    cc = (out / "tflm_model.cc").read_text()
    assert "MicroMutableOpResolver<kOpCount>" in cc and f"kOpCount = {len(export.ops)};" in cc
    assert cc.count("resolver->Add") == len(export.ops)
    for method in ("AddConv2D", "AddDepthwiseConv2D", "AddAveragePool2D", "AddReshape",
                   "AddFullyConnected", "AddSoftmax"):
        assert f"resolver->{method}()" in cc
    assert f"kArenaSize = {export.arena_bytes};" in cc
    # At least TFLite Micro's own allocation: 24,272 B for the real file.
    assert export.arena_bytes >= (24272 if tiny.real else tflm_arena_bytes(data))

    for name in ("Makefile", "README.md", "linker.ld", "board_config.h", "build.json", "model.tflite",
                 "runtime/firmware/aq_main.c", "runtime/firmware/board/aq_soc_stm32l4.c"):
        assert (out / name).is_file(), name
    assert ".init_array" in (out / "linker.ld").read_text()
    assert "create_tflm_tree.py" in (out / "README.md").read_text()
    # Without a TFLM tree, make says what is missing instead of failing somewhere deep.
    env = {k: v for k, v in os.environ.items() if k != "TFLM_TREE"}
    proc = subprocess.run(["make", "check-tree"], cwd=out, capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "TFLM tree not found" in proc.stdout

    gxx = shutil.which("g++")
    assert gxx, "no host g++ to syntax-check tflm_model.cc: make setup installs it"
    _stub_tflm(tmp_path / "stub")
    proc = subprocess.run([gxx, "-std=c++17", "-fsyntax-only", "-Wall", "-Werror",
                           f"-I{tmp_path / 'stub'}", f"-I{out}", f"-I{out / 'runtime/firmware/include'}",
                           str(out / "tflm_model.cc")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_tflm_unknown_op_is_refused():
    from aqedge.codegen.tflm import resolver_ops

    assert [o.method for o in resolver_ops(["CONV_2D", "ADD", "CONV_2D"])] == ["AddConv2D", "AddAdd"]
    with pytest.raises(AqError, match="BIDIRECTIONAL_SEQUENCE_LSTM"):
        resolver_ops(["BIDIRECTIONAL_SEQUENCE_LSTM"])


# ---- aliases -------------------------------------------------------------------------------


def test_core_aliases_pick_the_emulated_default_of_that_core():
    """`--board cortex-m4` / `--board cortex-m7` mean the emulated MPS2 of that core; the note
    says it was a core alias and names the real boards of that core."""
    for core, name in (("cortex-m4", "qemu-mps2-an386"), ("cortex-m7", "qemu-mps2-an500")):
        board, note = resolve(core)
        assert board.name == name and board.core == core and board.emulated
        assert note and "core alias" in note and name in note
    assert "disco-f746ng" in resolve("cortex-m7")[1] and "nucleo-h743zi" in resolve("cortex-m7")[1]
    assert resolve("mps2")[0].name == "qemu-mps2-an386" and resolve("stm32")[0].name == "qemu-stm32f405"
    assert sum(b.core_default for b in all_boards()) == 2  # one per core, never ambiguous
    with pytest.raises(AqError, match="aliases: mps2, stm32, cortex-m4, cortex-m7"):
        resolve("cortex-m33")


# ---- CMake twin of the standalone project ---------------------------------------------------


def _loadable_sections(elf: Path) -> dict[str, tuple[int, int, bytes]]:
    """name -> (address, size, bytes) of every allocated section of a little-endian ELF32
    (NOBITS sections such as .bss and the stack: no bytes, address and size only)."""
    import struct

    data = elf.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 1 and data[5] == 1  # ELF32, little-endian
    shoff, = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
    headers = [struct.unpack_from("<IIIIIIIIII", data, shoff + i * shentsize) for i in range(shnum)]
    strtab = headers[shstrndx][4]
    out = {}
    for name_off, sh_type, flags, addr, offset, size, *_ in headers:
        if not flags & 0x2:  # SHF_ALLOC
            continue
        name = data[strtab + name_off:data.index(b"\0", strtab + name_off)].decode()
        out[name] = (addr, size, b"" if sh_type == 8 else data[offset:offset + size])
    return out


def test_cmake_project_builds_the_same_firmware(kws, tmp_path):
    """The build directory's CMakeLists.txt + arm-none-eabi.cmake toolchain file, configured and
    built in a copy with no aqedge on PATH, link firmware whose loadable sections (code, weights,
    .data, and .bss/stack placement), program headers, symbols and firmware.bin are byte-identical
    to the Makefile build's. Only debug info differs (CMake's absolute object paths)."""
    from aqedge.codegen.build import build

    board, _ = resolve("nucleo-h743zi")  # Cortex-M7, optimised kernels, H7 SoC driver
    original = tmp_path / "original"
    build(kws, board, original)
    copy = tmp_path / "elsewhere" / "project"
    shutil.copytree(original, copy)
    for stale in ("build", "firmware.elf", "firmware.bin", "firmware.map"):
        shutil.rmtree(copy / stale) if (copy / stale).is_dir() else (copy / stale).unlink()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LC_ALL": "C"}
    for cmd in (["cmake", "-S", ".", "-B", "cmake-build", "-DCMAKE_TOOLCHAIN_FILE=arm-none-eabi.cmake"],
                ["cmake", "--build", "cmake-build", "-j2"]):
        proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    made, cmade = original / "firmware.elf", copy / "cmake-build" / "firmware.elf"
    sections = _loadable_sections(made)
    assert {".isr_vector", ".text", ".data", ".bss"} <= set(sections)
    assert sections == _loadable_sections(cmade)
    assert (copy / "cmake-build" / "firmware.bin").read_bytes() == (original / "firmware.bin").read_bytes()

    def tool(*args):
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout

    assert tool("arm-none-eabi-nm", "-n", str(made)) == tool("arm-none-eabi-nm", "-n", str(cmade))
    assert tool("arm-none-eabi-readelf", "-lW", str(made)).split("\n", 2)[2] == \
        tool("arm-none-eabi-readelf", "-lW", str(cmade)).split("\n", 2)[2]


# ---- fit check: the numbers and the nearest board that fits ---------------------------------


def test_nearest_fit_is_the_smallest_board_that_suffices():
    from aqedge.boards import fit_hint, format_bytes, nearest_fit

    assert format_bytes(2 << 20) == "2 MiB" and format_bytes(655360) == "640 KiB"
    f401, _ = resolve("nucleo-f401re")
    # Real boards are suggested for a real board, the least flash + RAM first.
    assert nearest_fit(100_000, 100_000, f401).name == "nucleo-f446re"
    assert nearest_fit(100_000, 250_000, f401).name == "disco-f746ng"
    assert nearest_fit(1_500_000, 100_000, f401).name == "nucleo-h743zi"
    assert fit_hint(1_500_000, 600_000, f401) == "; nucleo-l4r5zi (2 MiB flash, 640 KiB RAM) fits it"
    # An emulated board gets an emulated suggestion while one fits, then a real one.
    qemu, _ = resolve("qemu-stm32f405")
    assert nearest_fit(100_000, 200_000, qemu).name == "qemu-mps2-an386"
    assert nearest_fit(100_000, 400_000, qemu).name == "nucleo-h743zi"
    assert nearest_fit(10 << 20, 0, f401) is None
    assert "no board in the catalogue has 10 MiB of flash" in fit_hint(10 << 20, 0, f401)


def test_too_big_for_a_real_board_names_the_numbers_and_the_board_that_fits(kws, tmp_path):
    import dataclasses
    import re

    from aqedge.codegen.build import build
    from aqedge.codegen.project import compile_project, rx_max_for_input, write_project

    f401, _ = resolve("nucleo-f401re")
    # Activation arena over the RAM budget: refused before compiling.
    small = dataclasses.replace(f401, ram_bytes=16384)
    with pytest.raises(AqError) as err:
        build(kws, small, tmp_path / "arena")
    message = str(err.value)
    assert re.search(r"activation arena needs [\d,]+ bytes of RAM, the board has 16,384", message)
    assert message.endswith("; nucleo-f446re (512 KiB flash, 128 KiB RAM) fits it")

    # The linker's region overflow (arena, then weights), with the nearest board that fits.
    huge = Path(__file__).parent / "c" / "huge_model.c"
    for name, define, pattern, fits in (
        ("ram.c", "HUGE_ARENA 200000u", r"needs (\d+) bytes of RAM, board has 98304",
         "disco-f746ng (1 MiB flash, 320 KiB RAM)"),
        ("flash.c", "HUGE_WEIGHTS 1200000u", r"needs (\d+) bytes of flash, board has 524288",
         "nucleo-h743zi (2 MiB flash, 512 KiB RAM)"),
    ):
        out = tmp_path / name[:-2]
        out.mkdir()
        shutil.copy(huge, out / "huge_model.c")
        (out / name).write_text(f'#define {define}\n#include "huge_model.c"\n')
        write_project(f401, out, [name], rx_max_for_input(16))
        with pytest.raises(AqError) as err:
            compile_project(f401, out)
        message = str(err.value)
        assert re.search(pattern, message) and message.endswith(f"; {fits} fits it"), message
