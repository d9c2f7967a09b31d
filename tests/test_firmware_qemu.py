"""The firmware on an emulated STM32F405: build, boot under QEMU, talk the protocol.

Uses the real toolchain and QEMU, and a test-only model (tests/c/echo_model.c) whose output is
a function of its input that this file computes too.
"""

from __future__ import annotations

import random
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aqedge.boards import Board, resolve
from aqedge.codegen.project import FirmwareImage, compile_project, rx_max_for_input, write_project
from aqedge.errors import AqError
from aqedge.flash import EmulatedBoard, boot_emulated, flash
from aqedge.harness import protocol as p
from aqedge.harness.link import DeviceLink, LinkError

C_DIR = Path(__file__).parent / "c"
IN_BYTES = 784
OUT_BYTES = 10
ECHO_SHA = bytes((7 * i + 1) & 0xFF for i in range(32)).hex()
RX_MAX = rx_max_for_input(IN_BYTES)

# arm-none-eabi-gcc and qemu-system-arm are required (make setup installs them): no skips.


def echo_reference(data: bytes) -> bytes:
    """What tests/c/echo_model.c computes."""
    out = bytearray()
    for k in range(OUT_BYTES):
        acc = k
        for j in range(k, IN_BYTES, OUT_BYTES):
            acc = (acc * 31 + data[j]) & 0xFFFFFFFF
        out.append(acc & 0xFF)
    return bytes(out)


@pytest.fixture(scope="module")
def board() -> Board:
    return resolve("qemu-stm32f405")[0]


@pytest.fixture(scope="module")
def image(board: Board, tmp_path_factory: pytest.TempPathFactory) -> FirmwareImage:
    out = tmp_path_factory.mktemp("echo_fw")
    shutil.copy(C_DIR / "echo_model.c", out / "echo_model.c")
    write_project(board, out, ["echo_model.c"], RX_MAX)
    return compile_project(board, out)


@pytest.fixture(scope="module")
def device(board: Board, image: FirmwareImage) -> Iterator[tuple[EmulatedBoard, DeviceLink, p.ReadyInfo]]:
    with flash(board, image.elf.parent) as emu, DeviceLink(emu.url, timeout=2.0, retries=3) as link:
        info = link.connect(ready_timeout=10.0)
        yield emu, link, info


def _drain(link: DeviceLink, quiet: float = 0.3, limit: float = 90.0,
           expect: int = 0) -> list[p.Frame]:
    """Read frames until at least `expect` arrived and the device has been silent for `quiet`
    seconds (a loaded machine may take longer than `quiet` to emulate the first answer, and
    tens of seconds to answer a few hundred malformed frames one by one)."""
    frames: list[p.Frame] = []
    end = time.monotonic() + limit
    while time.monotonic() < end:
        got = link.read_frames(quiet)
        if not got and len(frames) >= expect:
            return frames
        frames += got
    raise AssertionError(f"after {limit} s: {len(frames)} frames, expected {expect} and then "
                         "silence")


def _raw_frame(msg_type: int, seq: int, payload: bytes) -> bytes:
    return p.encode_frame(msg_type, seq, payload)


def test_image_builds_without_warnings_and_fits(board: Board, image: FirmwareImage) -> None:
    ours = [
        line
        for line in image.build_log.splitlines()
        if "warning:" in line and "runtime/firmware/kernels/" not in line
    ]
    assert ours == []
    assert image.elf.is_file() and (image.elf.parent / "firmware.bin").is_file()
    # UART + SysTick + protocol + a trivial model: a few KiB of code, RAM = buffers + stack.
    assert 1000 < image.flash_bytes < 8192
    assert board.stack_bytes + RX_MAX < image.ram_bytes < board.stack_bytes + 8192
    assert image.sections[".stack"] == board.stack_bytes
    # The generated project is standalone and incremental: a plain `make -q` in it (no aqedge
    # involved) finds the image up to date.
    assert subprocess.run(["make", "-q", "-C", str(image.elf.parent)], capture_output=True).returncode == 0
    text = (image.elf.parent / "board_config.h").read_text()
    assert f"#define AQ_RX_MAX {RX_MAX}u" in text and '"qemu-stm32f405"' in text


def test_ready_announces_board_and_model(device: tuple[EmulatedBoard, DeviceLink, p.ReadyInfo]) -> None:
    _, _, info = device
    assert info.protocol_version == p.PROTOCOL_VERSION
    assert info.board_name == "qemu-stm32f405"
    assert info.timer_hz == 168_000_000
    assert (info.input_bytes, info.output_bytes) == (IN_BYTES, OUT_BYTES)
    assert info.arena_bytes == IN_BYTES + OUT_BYTES + 2
    assert info.model_sha256 == ECHO_SHA


def test_ping_and_hello(device: tuple[EmulatedBoard, DeviceLink, p.ReadyInfo]) -> None:
    _, link, info = device
    assert link.ping(b"")
    assert link.ping(bytes(range(64)))  # the largest PING, full of zeros and 0xff
    assert link.request(p.MSG_HELLO, bytes([p.PROTOCOL_VERSION]), p.MSG_READY) == p.build_ready(info)


def test_infer_round_trips(device: tuple[EmulatedBoard, DeviceLink, p.ReadyInfo]) -> None:
    _, link, _ = device
    rng = random.Random(4)
    inputs = [bytes(IN_BYTES), b"\xff" * IN_BYTES] + [rng.randbytes(IN_BYTES) for _ in range(18)]
    ticks = []
    sent_before = link.bytes_sent
    start = time.monotonic()
    for data in inputs:
        t, out = link.infer(data)
        assert out == echo_reference(data)
        ticks.append(t)
    elapsed = time.monotonic() - start
    assert link.bytes_sent - sent_before >= 20 * IN_BYTES
    assert all(t > 0 for t in ticks)
    # -icount shift=0 and a timer restarted at each read: the same code takes the same ticks.
    assert len(set(ticks)) == 1, ticks
    again, _ = link.infer(inputs[5])
    assert again == ticks[5]
    print(f"\necho INFER: {ticks[0]} ticks, {elapsed / len(inputs) * 1e3:.1f} ms per round trip")


def test_errors_are_answered_with_the_right_code(device: tuple[EmulatedBoard, DeviceLink, p.ReadyInfo]) -> None:
    _, link, _ = device
    _drain(link)
    bad_crc = bytearray(p.frame_body(p.MSG_PING, 11, b"abc"))
    bad_crc[-1] ^= 0x01
    cases = [
        (p.cobs_encode(bytes(bad_crc)) + b"\x00", 11, p.ERR_BAD_CRC),
        (p.cobs_encode(b"\x02\x0c\x00\x00\x00") + b"\x00", 12, p.ERR_BAD_LENGTH),  # 5 bytes
        (_raw_frame(p.MSG_INFER, 13, bytes(IN_BYTES - 1)), 13, p.ERR_BAD_LENGTH),
        (_raw_frame(p.MSG_PING, 14, bytes(65)), 14, p.ERR_BAD_LENGTH),
        (_raw_frame(0x55, 15, b"x"), 15, p.ERR_UNKNOWN_TYPE),
        (_raw_frame(p.MSG_INFER, 16, bytes(RX_MAX)), 16, p.ERR_TOO_LONG),
        (_raw_frame(p.MSG_HELLO, 17, bytes([2])), 17, p.ERR_VERSION),
    ]
    for wire, seq, code in cases:
        link.send_raw(wire)
        frames = _drain(link, expect=1)
        assert [(f.type, f.seq, f.payload) for f in frames] == [
            (p.MSG_ERROR, seq, bytes([code, p.PROTOCOL_VERSION]))
        ], (seq, code)


def _malformed(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:  # line noise, maybe with delimiters in it
        return rng.randbytes(rng.randrange(1, 400))
    if kind == 1:  # bad CRC
        body = bytearray(p.frame_body(rng.choice([1, 2, 3]), rng.randrange(256), rng.randbytes(rng.randrange(0, 60))))
        body[rng.randrange(len(body))] ^= 1 << rng.randrange(8)
        return p.cobs_encode(bytes(body)) + b"\x00"
    if kind == 2:  # longer than the receive buffer, possibly without any delimiter for a while
        return b"\x01" * rng.randrange(RX_MAX, 3 * RX_MAX) + b"\x00"
    if kind == 3:  # INFER of the wrong length
        n = rng.choice([0, 1, IN_BYTES - 1, IN_BYTES + 1])
        return _raw_frame(p.MSG_INFER, rng.randrange(256), rng.randbytes(n))
    if kind == 4:  # a good frame cut short
        wire = _raw_frame(p.MSG_PING, rng.randrange(256), rng.randbytes(30))
        return wire[: rng.randrange(1, len(wire) - 1)]
    return _raw_frame(rng.randrange(4, 0x7F), rng.randrange(256), rng.randbytes(rng.randrange(0, 20)))


def test_device_survives_200_malformed_frames(device: tuple[EmulatedBoard, DeviceLink, p.ReadyInfo]) -> None:
    emu, link, _ = device
    rng = random.Random(5)
    _drain(link)
    errors = 0
    for batch in range(10):
        link.send_raw(b"".join(_malformed(rng) for _ in range(20)))
        frames = _drain(link, quiet=0.2)
        assert all(f.type == p.MSG_ERROR for f in frames)
        errors += len(frames)
    late = _drain(link, quiet=2.0)  # answers still on their way on a loaded machine
    assert all(f.type == p.MSG_ERROR for f in late)
    errors += len(late)
    emu.check_alive()
    assert errors >= 100  # most broken frames were answered (garbage merges some of them)
    link.send_raw(b"\x00")  # close a partial frame the last batch may have left open
    _drain(link)
    assert link.ping(b"still alive")
    data = rng.randbytes(IN_BYTES)
    ticks, out = link.infer(data)
    assert out == echo_reference(data) and ticks > 0


def test_closed_port_fails_fast() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    start = time.monotonic()
    with pytest.raises(AqError, match=f"127.0.0.1:{port}"):
        DeviceLink(f"socket://127.0.0.1:{port}").connect(ready_timeout=2.0)
    assert time.monotonic() - start < 2.0


def test_silent_port_gives_up_after_the_timeout() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # the kernel accepts the connection; nobody ever answers
        url = f"socket://127.0.0.1:{listener.getsockname()[1]}"
        start = time.monotonic()
        with DeviceLink(url) as link, pytest.raises(AqError, match="no answer from .* after 1.5 s"):
            link.connect(ready_timeout=1.5)
        assert 1.4 < time.monotonic() - start < 3.0


def _fake_device(ready: p.ReadyInfo, answer: bytes | None) -> tuple[str, threading.Thread]:
    """A socket that announces `ready` (and answers each HELLO with it, as the firmware does),
    then answers every other frame it receives with `answer`."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    ready_frame = p.encode_frame(p.MSG_READY, 0, p.build_ready(ready))

    def run() -> None:
        conn, _ = listener.accept()
        listener.close()
        decoder = p.FrameDecoder(4096)
        with conn:
            conn.sendall(ready_frame)
            conn.settimeout(5.0)
            try:
                while data := conn.recv(4096):
                    for frame in decoder.feed(data):
                        if frame.type == p.MSG_HELLO:
                            conn.sendall(ready_frame)
                        elif answer is not None:
                            conn.sendall(answer)
            except OSError:
                pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return f"socket://127.0.0.1:{listener.getsockname()[1]}", thread


def test_version_mismatch_names_both_versions() -> None:
    info = p.ReadyInfo(2, 1000, 1, 4, 1, "00" * 32, "future-board")
    url, thread = _fake_device(info, None)
    with DeviceLink(url) as link, pytest.raises(AqError, match=r"version 2.*version 1"):
        link.connect(ready_timeout=3.0)
    thread.join(6.0)


def test_infer_gives_up_with_link_error_after_bounded_retries() -> None:
    info = p.ReadyInfo(1, 1000, 1, 4, 1, "00" * 32, "grumpy-board")
    # Answers everything with ERROR for seq 0..255 in turn: never a RESULT.
    errors = b"".join(p.encode_frame(p.MSG_ERROR, s, bytes([p.ERR_BAD_CRC, 1])) for s in range(256))
    url, thread = _fake_device(info, errors)
    with DeviceLink(url, timeout=0.5, retries=2, backoff=0.01) as link:
        link.connect(ready_timeout=3.0)
        start = time.monotonic()
        with pytest.raises(LinkError, match=r"after 3 attempts .*bad CRC"):
            link.infer(b"abcd")
        assert time.monotonic() - start < 1.0  # ERROR frames end attempts at once, no waiting
        assert link.retried_requests == 2
    thread.join(6.0)


def test_oversized_model_is_refused(board: Board, tmp_path: Path) -> None:
    shutil.copy(C_DIR / "huge_model.c", tmp_path / "huge_model.c")
    (tmp_path / "too_much_ram.c").write_text('#define HUGE_ARENA 200000u\n#include "huge_model.c"\n')
    write_project(board, tmp_path, ["too_much_ram.c"], rx_max_for_input(16))
    with pytest.raises(AqError, match=r"model does not fit qemu-stm32f405: needs (\d+) bytes of RAM, board has 131072") as err:
        compile_project(board, tmp_path)
    needed = int(re.search(r"needs (\d+)", str(err.value)).group(1))
    assert 200000 + board.stack_bytes <= needed < 200000 + board.stack_bytes + 4096

    (tmp_path / "too_much_flash.c").write_text('#define HUGE_WEIGHTS 1200000u\n#include "huge_model.c"\n')
    write_project(board, tmp_path, ["too_much_flash.c"], rx_max_for_input(16))
    with pytest.raises(AqError, match=r"needs (\d+) bytes of flash, board has 1048576") as err:
        compile_project(board, tmp_path)
    needed = int(re.search(r"needs (\d+)", str(err.value)).group(1))
    assert 1200000 <= needed < 1200000 + 8192


def test_unsupported_flash_method_and_missing_image(board: Board, tmp_path: Path) -> None:
    from dataclasses import replace

    # A QEMU board has no probe settings; a real board's probe flashing is in test_real_boards.py.
    real = replace(board, emulated=False, flash_method="openocd", flash_tools={"method": "openocd"})
    with pytest.raises(AqError, match="cannot be flashed with openocd"):
        flash(real, tmp_path)
    with pytest.raises(AqError, match="does not exist"):
        boot_emulated(board, tmp_path / "firmware.elf")
