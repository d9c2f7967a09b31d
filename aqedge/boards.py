"""Boards are data: one TOML file per board under boards/. This module loads and resolves them."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import AqError
from .resources import data_dir


@dataclass(frozen=True)
class Board:
    """One board (or emulated machine) that aqedge can build for, flash and measure."""

    name: str
    family: str
    description: str
    emulated: bool
    core: str
    cflags: tuple[str, ...]
    clock_hz: int
    flash_origin: int
    flash_bytes: int
    ram_origin: int
    ram_bytes: int
    stack_bytes: int
    uart: dict[str, Any]
    timer: dict[str, Any]
    flash_method: str
    family_default: bool = False
    #: True for the emulated board `--board <core>` (e.g. cortex-m7) means: one per core.
    core_default: bool = False
    qemu: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    #: Folder under firmware/kernels/ whose files replace the portable kernels of the same name
    #: (None: portable kernels only). From the TOML's `optimized` key, else from the core.
    optimized: str | None = None
    #: False for every board nobody has run aqedge firmware on yet (all real boards so far).
    verified_on_hardware: bool = False
    #: SoC bring-up ([soc] table): `driver` picks firmware/board/aq_soc_<driver>.c ("none": the
    #: emulators, whose RCC is a stub); the other keys become AQ_SOC_* in board_config.h.
    soc: dict[str, Any] = field(default_factory=lambda: {"driver": "none"})
    #: The [flash] table: `method` plus each tool's settings (openocd_target, pyocd_target...).
    flash_tools: dict[str, Any] = field(default_factory=dict)
    #: USB ids of the probe's virtual COM port ([usb] vid, pid list), to find the serial port.
    usb: dict[str, Any] = field(default_factory=dict)

    @property
    def latency_unit(self) -> str:
        """'instructions' on an emulator (QEMU has no cycle model), 'cycles' on hardware."""
        return self.timer.get("unit", "instructions" if self.emulated else "cycles")

    def ticks_to_latency(self, ticks: int) -> int:
        """Convert timer ticks to the board's latency unit (instructions on QEMU with -icount)."""
        if self.latency_unit == "instructions":
            shift = int(self.qemu.get("icount_shift", 0))
            return round(ticks * 1e9 / (self.timer["hz"] * (1 << shift)))
        return round(ticks * self.clock_hz / self.timer["hz"])


#: Cores with the ARMv7E-M DSP extension (SMLAD, SXTB16...) that firmware/kernels/cortex-m/ needs.
_DSP_CORES = ("cortex-m4", "cortex-m7")


def _kernel_variant(raw: dict[str, Any]) -> str | None:
    """The optimised kernel folder: the TOML's `optimized` ("" or "none" = portable only),
    else "cortex-m" on a core with the DSP extension."""
    if "optimized" in raw:
        value = str(raw["optimized"]).strip()
        return None if value in ("", "none", "portable") else value
    return "cortex-m" if str(raw.get("core", "")) in _DSP_CORES else None


def _load(path: Path) -> Board:
    raw = tomllib.loads(path.read_text())
    mem = raw["memory"]
    return Board(
        name=raw["name"],
        family=raw["family"],
        description=raw["description"],
        emulated=bool(raw.get("emulated", False)),
        core=raw["core"],
        cflags=tuple(raw["cflags"]),
        clock_hz=int(raw["clock_hz"]),
        flash_origin=int(mem["flash_origin"]),
        flash_bytes=int(mem["flash_bytes"]),
        ram_origin=int(mem["ram_origin"]),
        ram_bytes=int(mem["ram_bytes"]),
        stack_bytes=int(mem.get("stack_bytes", 4096)),
        uart=dict(raw["uart"]),
        timer=dict(raw["timer"]),
        flash_method=raw["flash"]["method"],
        family_default=bool(raw.get("family_default", False)),
        core_default=bool(raw.get("core_default", False)),
        qemu=dict(raw.get("qemu", {})),
        path=path,
        optimized=_kernel_variant(raw),
        verified_on_hardware=bool(raw.get("verified_on_hardware", False)),
        soc={"driver": "none", **raw.get("soc", {})},
        flash_tools=dict(raw["flash"]),
        usb=dict(raw.get("usb", {})),
    )


def all_boards() -> list[Board]:
    """Every board under boards/, sorted by name."""
    return sorted((_load(p) for p in data_dir("boards").glob("*.toml")), key=lambda b: b.name)


def resolve(name: str) -> tuple[Board, str | None]:
    """Find a board by name, family alias (`stm32`, `mps2`) or core alias (`cortex-m4`,
    `cortex-m7`: the emulated default board of that core).

    Returns the board and, when `name` was an alias, a note saying what it resolved to.
    """
    boards = all_boards()
    for board in boards:
        if board.name == name:
            return board, None
    for board in boards:
        if board.family == name and board.family_default:
            return board, f"board '{name}' resolves to {board.name} ({board.description})"
    for board in boards:
        if board.core == name and board.core_default:
            return board, (f"board '{name}' (core alias) resolves to {board.name}, the emulated "
                           f"{name} ({board.description}); real {name} boards: "
                           + (", ".join(b.name for b in boards if b.core == name and not b.emulated)
                              or "none"))
    known = ", ".join(b.name for b in boards)
    aliases = sorted({b.family for b in boards if b.family_default}) + sorted(
        {b.core for b in boards if b.core_default})
    raise AqError(f"unknown board '{name}': known boards are {known} (aliases: {', '.join(aliases)})")


def format_bytes(n: int) -> str:
    """2097152 -> '2 MiB', 655360 -> '640 KiB', else the byte count with separators."""
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n:,} bytes"


def nearest_fit(flash_bytes: int, ram_bytes: int, current: Board | None = None) -> Board | None:
    """The smallest board that holds `flash_bytes` of flash and `ram_bytes` of RAM besides its
    own stack, other than `current`: boards of the same kind (real or emulated) as `current`
    first, then the least flash + RAM. None when no board in boards/ is big enough."""
    fits = [b for b in all_boards()
            if (current is None or b.name != current.name)
            and b.flash_bytes >= flash_bytes and b.ram_bytes - b.stack_bytes >= ram_bytes]
    if not fits:
        return None
    same_kind = current.emulated if current is not None else False
    return min(fits, key=lambda b: (b.emulated != same_kind, b.flash_bytes + b.ram_bytes, b.name))


def fit_hint(flash_bytes: int, ram_bytes: int, current: Board | None = None) -> str:
    """'; <board> (<flash> flash, <RAM> RAM) fits it', for the end of a does-not-fit error.
    `ram_bytes` excludes the stack (each board adds its own)."""
    board = nearest_fit(flash_bytes, ram_bytes, current)
    if board is None:
        return (f"; no board in the catalogue has {format_bytes(flash_bytes)} of flash and "
                f"{format_bytes(ram_bytes)} of RAM besides the stack (`aqedge boards` lists them)")
    return (f"; {board.name} ({format_bytes(board.flash_bytes)} flash, "
            f"{format_bytes(board.ram_bytes)} RAM) fits it")
