"""The generated firmware project: copy the C runtime, render the board templates, run make.

A project directory looks like::

    out_dir/
      Makefile  linker.ld  board_config.h      rendered from templates/firmware/*.j2
      CMakeLists.txt  arm-none-eabi.cmake       the same build for CMake (and its toolchain file)
      model.c  model_data.c ...                 written by the code generator (model_sources)
      runtime/firmware/                         copy of the firmware/ runtime (aq_main.c, ...)
      build/  firmware.elf  firmware.bin  firmware.map

It is standalone: `make` in it rebuilds the image without aqedge.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from ..boards import Board, fit_hint
from ..errors import AqError
from ..flash import make_flash_targets
from ..resources import data_dir

#: type + seq + CRC-32 around every frame's payload (docs/protocol.md).
FRAME_OVERHEAD = 6
#: Largest PING payload the protocol allows; the receive buffer always holds one.
PING_MAX = 64
#: Prefix of the GNU Arm toolchain the generated Makefile uses.
CROSS = "arm-none-eabi-"
_TEMPLATES = ("Makefile", "linker.ld", "board_config.h", "README.md", "CMakeLists.txt",
              "arm-none-eabi.cmake")
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.o", "*.d", ".*")


@dataclass(frozen=True)
class FirmwareImage:
    """A linked firmware image and what it occupies on the board."""

    elf: Path
    #: Bytes of flash: code, constants (weights) and the initial values of .data.
    flash_bytes: int
    #: Bytes of RAM: .data + .bss (arena, receive buffer) + the stack.
    ram_bytes: int
    #: Sizes of the allocated sections (`arm-none-eabi-size -A`), by name.
    sections: dict[str, int] = field(default_factory=dict)
    #: Everything make printed (compiler warnings show up here).
    build_log: str = ""


def rx_max_for_input(input_bytes: int) -> int:
    """The receive buffer (AQ_RX_MAX) a model with `input_bytes` of input needs.

    That is the largest decoded frame the device must accept: an INFER frame carrying the whole
    input tensor, or a maximal PING, whichever is larger.
    """
    return FRAME_OVERHEAD + max(int(input_bytes), PING_MAX)


def _write_if_changed(path: Path, data: bytes) -> None:
    """Write `data` to `path` unless it already holds exactly that (keeps make incremental)."""
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _sync_tree(src: Path, dst: Path) -> None:
    """Make `dst` a copy of `src`: changed files rewritten (fresh mtime), stale files removed."""
    wanted: set[Path] = set()
    for root, dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        ignored = _IGNORED(root, dirs + files)
        dirs[:] = [d for d in dirs if d not in ignored]
        for name in files:
            if name in ignored:
                continue
            wanted.add(rel / name)
            _write_if_changed(dst / rel / name, (Path(root) / name).read_bytes())
    if dst.is_dir():
        for path in sorted(dst.rglob("*"), reverse=True):
            rel = path.relative_to(dst)
            if path.is_file() and rel not in wanted:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()


def runtime_sources(board: Board, model_sources: list[str]) -> list[str]:
    """The C sources of the firmware, in the Makefile's link order (the CMake project lists
    them so): model sources, aq_main.c, protocol/*.c, kernels/*.c (each replaced by the board's
    optimised port of the same name, which then follow), startup, SoC, UART and timer drivers."""
    fw = data_dir("firmware")
    rt = "runtime/firmware"
    protocol = sorted(p.name for p in (fw / "protocol").glob("*.c"))
    kernels = sorted(p.name for p in (fw / "kernels").glob("*.c"))
    kernel_srcs = [f"{rt}/kernels/{k}" for k in kernels]
    if board.optimized:
        opt = sorted(p.name for p in (fw / "kernels" / board.optimized).glob("*.c"))
        kernel_srcs = [f"{rt}/kernels/{k}" for k in kernels if k not in opt] + [
            f"{rt}/kernels/{board.optimized}/{k}" for k in opt]
    return [*model_sources, f"{rt}/aq_main.c", *(f"{rt}/protocol/{p}" for p in protocol),
            *kernel_srcs, f"{rt}/board/aq_startup_cortexm.c",
            f"{rt}/board/aq_soc_{board.soc['driver']}.c", f"{rt}/board/aq_uart_{board.uart['driver']}.c",
            f"{rt}/board/aq_timer_{board.timer['driver']}.c"]


def write_project(board: Board, out_dir: Path, model_sources: list[str], rx_max: int) -> None:
    """Lay out a buildable firmware project for `board` in `out_dir`.

    Args:
        board: the target board.
        out_dir: the project directory (created if needed). The model sources must be there
            (or be written there before compile_project).
        model_sources: the generated model's C files, as paths relative to `out_dir`
            (e.g. ["model.c", "model_data.c"]).
        rx_max: the largest decoded frame the device accepts, see rx_max_for_input().
    """
    if rx_max < FRAME_OVERHEAD + PING_MAX:
        raise AqError(
            f"receive buffer of {rx_max} bytes is too small: it must hold a {PING_MAX}-byte PING "
            f"({FRAME_OVERHEAD + PING_MAX} bytes)"
        )
    for src in model_sources:
        if not src or any(c.isspace() for c in src) or Path(src).is_absolute():
            raise AqError(f"model source '{src}' must be a relative path without spaces")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _sync_tree(data_dir("firmware"), out_dir / "runtime" / "firmware")

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates") / "firmware")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    context = {"board": board, "model_sources": list(model_sources), "rx_max": int(rx_max),
               "flash": make_flash_targets(board),
               "cmake_sources": runtime_sources(board, list(model_sources))}
    for name in _TEMPLATES:
        text = env.get_template(f"{name}.j2").render(**context)
        _write_if_changed(out_dir / name, text.encode())


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _overflow_error(board: Board, log: str) -> AqError | None:
    """Turn the linker's "region overflowed" messages into a size error naming the board, the
    numbers and the nearest board that fits (a region that did not overflow is bounded by this
    board's capacity)."""
    needs = {}
    for region, capacity in (("FLASH", board.flash_bytes), ("RAM", board.ram_bytes)):
        m = re.search(rf"region [`']{region}' overflowed by (\d+) bytes?", log)
        if m:
            needs[region] = capacity + int(m.group(1))
    if not needs:
        return None
    flash = needs.get("FLASH", board.flash_bytes)
    ram = needs.get("RAM", board.ram_bytes)
    parts = [f"{needed} bytes of {'flash' if region == 'FLASH' else 'RAM'}, board has "
             f"{board.flash_bytes if region == 'FLASH' else board.ram_bytes}"
             for region, needed in needs.items()]
    return AqError(f"model does not fit {board.name}: needs " + "; needs ".join(parts)
                   + fit_hint(flash, ram - board.stack_bytes, board))


def _run_size(args: list[str]) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AqError(f"{' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def compile_project(board: Board, out_dir: Path, make_vars: dict[str, str] | None = None) -> FirmwareImage:
    """Run make in a project written by write_project() (or the TFLite Micro export) and measure
    the image. `make_vars` are passed to make as NAME=VALUE.

    Raises:
        AqError: the toolchain is missing, the build failed (with the compiler's last lines),
            or the image does not fit the board's flash or RAM.
    """
    out_dir = Path(out_dir)
    gcc = f"{CROSS}gcc"
    if shutil.which(gcc) is None:
        raise AqError(
            f"{gcc} not found: install the GNU Arm toolchain "
            "(Debian/Ubuntu: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)"
        )
    if shutil.which("make") is None:
        raise AqError("make not found: install it (Debian/Ubuntu: apt-get install make)")
    if not (out_dir / "Makefile").is_file():
        raise AqError(f"{out_dir} is not a firmware project (no Makefile): run write_project first")

    proc = subprocess.run(
        ["make", "-C", str(out_dir), f"-j{os.cpu_count() or 1}", f"CROSS={CROSS}",
         *(f"{k}={v}" for k, v in (make_vars or {}).items())],
        capture_output=True,
        text=True,
        check=False,
    )
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        overflow = _overflow_error(board, log)
        if overflow is not None:
            raise overflow
        raise AqError(f"firmware build for {board.name} failed in {out_dir}:\n{_tail(proc.stderr or log)}")

    elf = out_dir / "firmware.elf"
    # Berkeley format: text = read-only allocated sections, data = initialised RAM (also
    # stored in flash), bss = zeroed RAM including the NOLOAD stack section.
    berkeley = _run_size([f"{CROSS}size", "-B", str(elf)]).splitlines()
    text, data, bss = (int(v) for v in berkeley[1].split()[:3])
    sections: dict[str, int] = {}
    for line in _run_size([f"{CROSS}size", "-A", str(elf)]).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            name = parts[0]
            if not name.startswith((".debug", ".comment", ".ARM.attributes")):
                sections[name] = int(parts[1])
    image = FirmwareImage(
        elf=elf, flash_bytes=text + data, ram_bytes=data + bss, sections=sections, build_log=log
    )
    for kind, used, capacity in (
        ("flash", image.flash_bytes, board.flash_bytes),
        ("RAM", image.ram_bytes, board.ram_bytes),
    ):
        if used > capacity:
            raise AqError(
                f"model does not fit {board.name}: needs {used} bytes of {kind}, board has {capacity}"
                + fit_hint(image.flash_bytes, image.ram_bytes - board.stack_bytes, board)
            )
    return image
