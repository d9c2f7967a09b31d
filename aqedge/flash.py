"""Putting a firmware image on a board: QEMU emulation now, debug probes later.

On QEMU the "board" is a qemu-system-arm process whose UART is a loopback socket: Python binds
the listening socket (so the port is known and nothing races for it) and hands its file
descriptor to QEMU (`-chardev socket,fd=N,server=on,wait=on`). `wait=on` holds the guest until
the host connects, so the boot READY is never lost.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

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


def flash(board: Board, build_dir: Path) -> EmulatedBoard:
    """Put the firmware in `build_dir` (its firmware.elf) on `board`.

    For `flash_method = "qemu"` this boots the emulator and returns the running EmulatedBoard
    (close it, or use it as a context manager, when done).

    Raises:
        AqError: the method is not supported yet, or booting failed.
    """
    if board.flash_method == "qemu":
        return boot_emulated(board, Path(build_dir) / "firmware.elf")
    raise AqError(f"flashing with {board.flash_method} is not supported yet")
