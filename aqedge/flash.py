"""Putting a firmware image on a board: QEMU emulation, or a debug probe (openocd, st-flash, pyocd).

Real boards are programmed by running the user's own tool; the exact command line comes from the
board TOML's [flash] table (flash_command()), is printed before it runs, and a missing tool or an
absent probe is one line of error. None of the probe paths is verified on hardware here.

On QEMU the "board" is a qemu-system-arm process whose UART is a loopback socket: Python binds
the listening socket (so the port is known and nothing races for it) and hands its file
descriptor to QEMU (`-chardev socket,fd=N,server=on,wait=on`). `wait=on` holds the guest until
the host connects, so the boot READY is never lost.
"""

from __future__ import annotations

import ctypes
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Callable

from .boards import Board
from .errors import AqError

_PR_SET_PDEATHSIG = 1
#: How long QEMU gets to fail on its command line before we consider it started.
_EARLY_EXIT_WINDOW = 0.3


def _die_with_parent() -> None:
    """preexec_fn: have the kernel SIGKILL the child when the thread that started it exits."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class EmulatedBoard:
    """A running QEMU machine with the firmware loaded; a context manager that stops it.

    Attributes:
        url: pyserial URL of the board's UART (`socket://127.0.0.1:PORT`).
        process: the qemu-system-arm process.
        board: the board it emulates.
    """

    def __init__(self, board: Board, process: subprocess.Popen[bytes], url: str, log: IO[bytes]) -> None:
        self.board = board
        self.process = process
        self.url = url
        self._log = log

    def output(self) -> str:
        """What QEMU printed on stdout/stderr so far."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def check_alive(self) -> None:
        """Raise AqError with QEMU's output if the process has exited."""
        rc = self.process.poll()
        if rc is not None:
            raise AqError(
                f"QEMU ({self.board.qemu.get('machine')}) for {self.board.name} exited with code "
                f"{rc}: {self.output().strip() or 'no output'}"
            )

    def close(self) -> None:
        """Stop QEMU (idempotent)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self._log.closed:
            self._log.close()

    def __enter__(self) -> EmulatedBoard:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def qemu_command(board: Board, elf: Path, serial_fd: int) -> list[str]:
    """The qemu-system-arm command line that runs `elf` with its UART on `serial_fd`."""
    q = board.qemu
    return [
        str(q.get("system", "qemu-system-arm")),
        "-machine", str(q["machine"]),
        "-nographic",
        "-monitor", "none",
        "-kernel", str(elf),
        "-icount", f"shift={int(q.get('icount_shift', 0))}",
        "-chardev", f"socket,id=ser0,fd={serial_fd},server=on,wait=on,nodelay=on",
        "-serial", "chardev:ser0",
    ]  # fmt: skip


def boot_emulated(board: Board, elf: Path) -> EmulatedBoard:
    """Start QEMU on `elf` for an emulated board; use the result as a context manager.

    The QEMU process is killed when the EmulatedBoard is closed, and by the kernel if the
    thread that called this function dies (PR_SET_PDEATHSIG).

    Raises:
        AqError: the board is not emulated, the ELF or qemu-system-arm is missing, or QEMU
            exits at once (its output is in the message).
    """
    if not board.qemu.get("machine"):
        raise AqError(f"board {board.name} has no [qemu] machine: it cannot be emulated")
    elf = Path(elf)
    if not elf.is_file():
        raise AqError(f"firmware image {elf} does not exist: build it first")
    system = str(board.qemu.get("system", "qemu-system-arm"))
    if shutil.which(system) is None:
        raise AqError(f"{system} not found: install QEMU (Debian/Ubuntu: apt-get install qemu-system-arm)")

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    log = tempfile.TemporaryFile()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        fd = listener.fileno()
        process = subprocess.Popen(
            qemu_command(board, elf, fd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(fd,),
            preexec_fn=_die_with_parent,
        )
    except OSError as exc:
        log.close()
        raise AqError(f"cannot start {system}: {exc}") from exc
    finally:
        listener.close()  # QEMU has its own copy of the listening socket
    emulated = EmulatedBoard(board, process, f"socket://127.0.0.1:{port}", log)
    deadline = time.monotonic() + _EARLY_EXIT_WINDOW
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        time.sleep(0.02)
    try:
        emulated.check_alive()
    except AqError:
        emulated.close()
        raise
    return emulated


#: The probe tools aqedge can drive, with how to install each (shown when it is missing).
PROBE_TOOLS = {
    "openocd": "Debian/Ubuntu: apt-get install openocd",
    "st-flash": "Debian/Ubuntu: apt-get install stlink-tools",
    "pyocd": "pip install pyocd, then once: pyocd pack install <target>",
}
#: Every --tool value: the probe tools and the emulator.
TOOLS = (*PROBE_TOOLS, "qemu")
#: How long a flashing tool may run before we give up on it.
FLASH_TIMEOUT = 300.0


def _tcl_word(text: str) -> str:
    """`text` as one word of an OpenOCD (Tcl) command."""
    return text if re.fullmatch(r"[\w./:+-]+", text) else "{" + text + "}"


def available_tools(board: Board) -> list[str]:
    """The tools that can flash `board`: its [flash] table names their settings."""
    if board.emulated:
        return ["qemu"]
    cfg = board.flash_tools
    tools = []
    if cfg.get("openocd_target"):
        tools.append("openocd")
    if cfg.get("st_flash", board.family == "stm32"):
        tools.append("st-flash")
    if cfg.get("pyocd_target"):
        tools.append("pyocd")
    return tools


def flash_command(board: Board, tool: str, elf: Path | str, binary: Path | str,
                  probe_serial: str | None = None) -> list[str]:
    """The command line that programs `elf` (or `binary`, for st-flash) into `board` with `tool`
    and resets it, from the board TOML's [flash] settings.

    Raises:
        AqError: the tool is unknown or the board has no settings for it.
    """
    if tool not in TOOLS:
        raise AqError(f"unknown flashing tool '{tool}': use one of {', '.join(TOOLS)}")
    if tool not in available_tools(board):
        usable = ", ".join(available_tools(board)) or "none"
        raise AqError(f"{board.name} cannot be flashed with {tool} (its board file configures: {usable})")
    cfg = board.flash_tools
    if tool == "qemu":
        q = board.qemu
        return [str(q.get("system", "qemu-system-arm")), "-machine", str(q["machine"]), "-nographic",
                "-monitor", "none", "-icount", f"shift={int(q.get('icount_shift', 0))}",
                "-kernel", str(elf), "-serial", "tcp:127.0.0.1:$(QEMU_PORT),server=on,wait=on,nodelay=on"]
    if tool == "openocd":
        cmd = ["openocd", "-f", str(cfg.get("openocd_interface", "interface/stlink.cfg"))]
        if probe_serial:
            cmd += ["-c", f"adapter serial {_tcl_word(probe_serial)}"]
        return cmd + ["-f", str(cfg["openocd_target"]),
                      "-c", f"program {_tcl_word(str(elf))} verify reset exit"]
    if tool == "st-flash":
        cmd = ["st-flash", "--reset"]
        if probe_serial:
            cmd += ["--serial", probe_serial]
        return cmd + ["write", str(binary), f"0x{board.flash_origin:08x}"]
    cmd = ["pyocd", "flash", "--target", str(cfg["pyocd_target"])]
    if probe_serial:
        cmd += ["--uid", probe_serial]
    return cmd + [str(elf)]


def make_flash_targets(board: Board) -> dict[str, object]:
    """For the generated Makefile: {"default": tool, "targets": {tool: shell command}}, with the
    image paths relative to the project directory."""
    targets = {tool: shlex.join(flash_command(board, tool, "firmware.elf", "firmware.bin"))
               for tool in available_tools(board)}
    if "qemu" in targets:  # shlex quoting would stop make from expanding $(QEMU_PORT)
        targets["qemu"] = targets["qemu"].replace("'", "")
    default = board.flash_method if board.flash_method in targets else next(iter(targets), "none")
    return {"default": default, "targets": targets}


_ERROR_LINE = re.compile(r"error|couldn'?t|could not|cannot|no (connected|available)? ?(debug )?probe|"
                         r"not found|failed|unable", re.IGNORECASE)
_NOISE = re.compile(r"^\*\*.*\*\*$|^in procedure|^shutdown command", re.IGNORECASE)
_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+\s+")


def tool_error_line(output: str) -> str:
    """The one line of a flashing tool's output that says what went wrong (the first that looks
    like an error, else the last line), without timestamps."""
    lines = [_STAMP.sub("", line.strip()) for line in output.splitlines()]
    lines = [line for line in lines if line and not _NOISE.search(line)]
    for line in lines:
        if _ERROR_LINE.search(line):
            return line
    return lines[-1] if lines else "no output"


def program(board: Board, build_dir: Path, tool: str | None = None, probe_serial: str | None = None,
            echo: Callable[[str], None] | None = None, timeout: float = FLASH_TIMEOUT) -> list[str]:
    """Program the firmware of `build_dir` into the real `board` with a debug probe, and reset it.

    The command (flash_command()) is passed to `echo` before it runs. Returns the command.

    Raises:
        AqError: emulated board, unknown tool, image missing, tool not installed (with the
            install hint), or the tool failed (its own error line: e.g. no probe connected).
    """
    tool = tool or board.flash_method
    if tool == "qemu" or board.emulated:
        raise AqError(f"{board.name} is emulated: it boots in QEMU (aqedge flash --board {board.name}"
                      " or aqedge measure), there is nothing to program")
    build_dir = Path(build_dir)
    elf, binary = build_dir / "firmware.elf", build_dir / "firmware.bin"
    cmd = flash_command(board, tool, elf, binary, probe_serial)
    image = binary if tool == "st-flash" else elf
    if not image.is_file():
        raise AqError(f"firmware image {image} does not exist: run `aqedge build --board {board.name}` first")
    if shutil.which(cmd[0]) is None:
        others = [t for t in available_tools(board) if t != tool]
        alt = f", or pick another tool with --tool ({', '.join(others)})" if others else ""
        raise AqError(f"{cmd[0]} not found: install it ({PROBE_TOOLS[tool]}){alt}")
    if echo is not None:
        echo(shlex.join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise AqError(f"{tool} did not finish programming {board.name} within {timeout:.0f} s") from None
    except OSError as exc:
        raise AqError(f"cannot run {cmd[0]}: {exc}") from None
    if proc.returncode != 0:
        raise AqError(f"{tool} could not program {board.name} (exit code {proc.returncode}): "
                      f"{tool_error_line(proc.stdout + chr(10) + proc.stderr)}. Is the board plugged "
                      "in over USB, and no other debugger attached to its ST-LINK?")
    return cmd


#: USB vendor id of STMicroelectronics; the ST-LINK product ids with a virtual COM port.
STLINK_VID = 0x0483
STLINK_PIDS = (0x374B, 0x374E, 0x374F, 0x3753, 0x3754)


def find_serial_port(board: Board) -> str:
    """The serial device of the board's probe (ST-LINK virtual COM port), by USB VID:PID.

    Raises:
        AqError: none found, or several (then --port must choose).
    """
    from serial.tools import list_ports

    vid = int(board.usb.get("vid", STLINK_VID))
    pids = {int(p) for p in board.usb.get("pid", STLINK_PIDS)}
    ports = sorted((p for p in list_ports.comports() if p.vid == vid and p.pid in pids),
                   key=lambda p: p.device)
    ids = ", ".join(f"{vid:04x}:{p:04x}" for p in sorted(pids))
    if not ports:
        raise AqError(f"no serial port of an ST-LINK (USB {ids}) found for {board.name}: plug the "
                      "board in, or pass its port with --port (e.g. /dev/ttyACM0)")
    if len(ports) > 1:
        listed = ", ".join(f"{p.device} (serial {p.serial_number})" for p in ports)
        raise AqError(f"several ST-LINK serial ports found ({listed}): choose one with --port")
    return ports[0].device


def flash(board: Board, build_dir: Path, tool: str | None = None, probe_serial: str | None = None,
          echo: Callable[[str], None] | None = None) -> EmulatedBoard | list[str]:
    """Put the firmware in `build_dir` on `board`.

    For `flash_method = "qemu"` this boots the emulator and returns the running EmulatedBoard
    (close it, or use it as a context manager, when done). For a real board it runs the probe
    tool (program()) and returns its command line.

    Raises:
        AqError: see boot_emulated() and program().
    """
    if board.emulated or (tool or board.flash_method) == "qemu":
        return boot_emulated(board, Path(build_dir) / "firmware.elf")
    return program(board, build_dir, tool, probe_serial, echo)
