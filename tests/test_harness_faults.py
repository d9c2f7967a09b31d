"""The measuring harness against the real firmware on QEMU through a link that breaks frames.

A loopback proxy (aqedge.harness.faultproxy) between pyserial and QEMU's UART socket corrupts,
drops, cuts, duplicates and delays frames and injects line noise and bursts, both ways, seeded.
The model is the test-only echo model (tests/c/echo_model.c), so a sample takes a few ms of
emulation and its output is known in Python. bench/faults.py runs the same with 500+ samples.
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest

from aqedge.boards import Board, resolve
from aqedge.codegen.project import FirmwareImage, compile_project, rx_max_for_input, write_project
from aqedge.flash import boot_emulated
from aqedge.harness import protocol as p
from aqedge.harness.faultproxy import FaultMix, FaultProxy
from aqedge.harness.link import DeviceLink
from aqedge.harness.results import Record, ResultLog
from aqedge.harness.session import COMPLETE, measure_samples

C_DIR = Path(__file__).parent / "c"
IN_BYTES, OUT_BYTES = 784, 10
SAMPLES = 60

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


def build_echo_firmware(board: Board, out: Path) -> FirmwareImage:
    shutil.copy(C_DIR / "echo_model.c", out / "echo_model.c")
    write_project(board, out, ["echo_model.c"], rx_max_for_input(IN_BYTES))
    return compile_project(board, out)


@pytest.fixture(scope="module")
def board() -> Board:
    return resolve("qemu-stm32f405")[0]


@pytest.fixture(scope="module")
def elf(board: Board, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_echo_firmware(board, tmp_path_factory.mktemp("echo_fw")).elf


def sample_inputs(n: int, seed: int = 11) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(IN_BYTES) for _ in range(n)]


def measure(board: Board, elf: Path, inputs: list[bytes], log_path: Path, mix: FaultMix | None,
            seed: int = 0) -> tuple[dict[int, Record], DeviceLink, FaultProxy | None]:
    """Boot QEMU, optionally put a FaultProxy in front, measure `inputs` into a results log."""
    results: dict[int, Record] = {}
    with boot_emulated(board, elf) as emu:
        proxy = FaultProxy(emu.url, mix, seed=seed) if mix is not None else None
        try:
            with DeviceLink(proxy.url if proxy else emu.url, timeout=3.0) as link:
                link.connect(ready_timeout=15.0)
                log = ResultLog(log_path, {"test": "faults"})
                try:
                    status = measure_samples(link, inputs, results, log,
                                             alive=lambda: emu.process.poll() is None)
                finally:
                    log.close()
                assert status == COMPLETE
        finally:
            if proxy is not None:
                proxy.close()
    return results, link, proxy


def log_indices(path: Path) -> Counter:
    lines = path.read_text().splitlines()[1:]
    return Counter(json.loads(line)["i"] for line in lines)


def test_every_sample_measured_exactly_once_under_faults(board: Board, elf: Path, tmp_path: Path) -> None:
    inputs = sample_inputs(SAMPLES)
    clean, _, _ = measure(board, elf, inputs, tmp_path / "clean.jsonl", None)
    # The clean run is right: outputs are the echo function, ticks identical run to run.
    assert [clean[i].output for i in range(SAMPLES)] == [echo_reference(x) for x in inputs]
    assert len({r.ticks for r in clean.values()}) == 1

    # The mix at 3x its rates (so 60 samples see every kind of fault), both directions.
    mix = FaultMix.standard().scaled(3.0)
    faulty, link, proxy = measure(board, elf, inputs, tmp_path / "faulty.jsonl", mix, seed=7)
    assert proxy is not None
    damaged = {k: proxy.to_device[k] + proxy.to_host[k]
               for k in ("corrupted", "dropped", "byte_dropped", "duplicated", "delayed", "noise", "bursts")}
    assert all(v > 0 for v in damaged.values()), damaged
    assert proxy.to_device["corrupted"] + proxy.to_device["dropped"] > 0
    assert proxy.to_host["corrupted"] + proxy.to_host["dropped"] > 0
    assert link.retried_requests > 0

    # Exactly once: each index once in the log (nothing lost, nothing doubled) ...
    counts = log_indices(tmp_path / "faulty.jsonl")
    assert sorted(counts) == list(range(SAMPLES)) and set(counts.values()) == {1}
    # ... and identical to the clean run: outputs and ticks.
    assert {i: (r.output, r.ticks) for i, r in faulty.items()} == \
           {i: (r.output, r.ticks) for i, r in clean.items()}


def test_device_survives_1000_malformed_frames_then_answers_ping(board: Board, elf: Path) -> None:
    """At least 1,000 random malformed frames of every kind; the device answers each kind with
    ERROR (or stays silent on noise), never crashes or hangs, and then answers PING and INFER."""
    rng = random.Random(12)
    rx_max = rx_max_for_input(IN_BYTES)

    def malformed() -> bytes:
        kind = rng.randrange(7)
        if kind == 0:  # line noise, delimiters included
            return rng.randbytes(rng.randrange(1, 80))
        if kind == 1:  # a bit flip: bad CRC
            body = bytearray(p.frame_body(rng.choice([1, 2, 3, 4]), rng.randrange(256), rng.randbytes(rng.randrange(0, 40))))
            body[rng.randrange(len(body))] ^= 1 << rng.randrange(8)
            return p.cobs_encode(bytes(body)) + b"\x00"
        if kind == 2:  # longer than the receive buffer
            return b"\x01" * rng.randrange(rx_max + 1, rx_max + 60) + b"\x00"
        if kind == 3:  # INFER / PROFILE of a wrong length
            return p.encode_frame(rng.choice([p.MSG_INFER, p.MSG_PROFILE]), rng.randrange(256),
                                  rng.randbytes(rng.choice([0, 1, 7, IN_BYTES - 1])))
        if kind == 4:  # a good frame cut short, then a delimiter
            wire = p.encode_frame(p.MSG_PING, rng.randrange(256), rng.randbytes(30))
            return wire[: rng.randrange(1, len(wire) - 1)] + b"\x00"
        if kind == 5:  # shorter than type + seq + CRC
            return p.cobs_encode(rng.randbytes(rng.randrange(1, 6))) + b"\x00"
        return p.encode_frame(rng.randrange(5, 0x7F), rng.randrange(256), rng.randbytes(rng.randrange(0, 20)))

    with boot_emulated(board, elf) as emu, DeviceLink(emu.url, timeout=3.0) as link:
        link.connect(ready_timeout=15.0)
        sent = 0
        frames: list[p.Frame] = []
        while sent < 1000:
            batch = [malformed() for _ in range(100)]
            link.send_raw(b"".join(batch))
            sent += len(batch)
            frames += link.read_frames(0.2)
        while more := link.read_frames(2.0):  # until the device has been quiet for 2 s (loaded CI)
            frames += more
        emu.check_alive()
        assert sent >= 1000
        assert all(f.type == p.MSG_ERROR for f in frames)
        codes = Counter(p.parse_error(f.payload)[0] for f in frames)
        assert set(codes) >= {p.ERR_BAD_CRC, p.ERR_BAD_LENGTH, p.ERR_UNKNOWN_TYPE, p.ERR_TOO_LONG}, codes
        assert sum(codes.values()) > 500
        link.send_raw(b"\x00")
        link.read_frames(0.3)
        assert link.ping(b"still alive")
        x = rng.randbytes(IN_BYTES)
        ticks, out = link.infer(x)
        assert out == echo_reference(x) and ticks > 0
