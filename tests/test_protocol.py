"""Host side of the serial protocol: COBS, CRC, frames, the streaming decoder, READY."""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from aqedge.harness import protocol as p


def _crc32_bitwise(data: bytes) -> int:
    """Textbook reflected CRC-32, bit by bit: an oracle independent of zlib and of p.crc32."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


# Published COBS examples (Cheshire & Baker; the Wikipedia table).
_SEQ_01_FE = bytes(range(1, 255))
COBS_VECTORS = [
    (b"", b"\x01"),
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (_SEQ_01_FE, b"\xff" + _SEQ_01_FE),
    (b"\x00" + _SEQ_01_FE, b"\x01\xff" + _SEQ_01_FE),
    (bytes(range(1, 256)), b"\xff" + _SEQ_01_FE + b"\x02\xff"),
    (bytes(range(2, 256)) + b"\x00", b"\xff" + bytes(range(2, 256)) + b"\x01\x01"),
    (bytes(range(3, 256)) + b"\x00\x01", b"\xfe" + bytes(range(3, 256)) + b"\x02\x01"),
]


@pytest.mark.parametrize(("raw", "encoded"), COBS_VECTORS)
def test_cobs_matches_published_vectors(raw: bytes, encoded: bytes) -> None:
    assert p.cobs_encode(raw) == encoded
    assert p.cobs_decode(encoded) == raw


def test_cobs_round_trips_zero_heavy_and_long_payloads() -> None:
    rng = random.Random(1)
    lengths = [0, 1, 2, 253, 254, 255, 256, 507, 508, 509, 784, 1000, 3000]
    for n in lengths:
        for zero_fraction in (0.0, 0.01, 0.5, 0.95, 1.0):
            data = bytes(0 if rng.random() < zero_fraction else rng.randrange(1, 256) for _ in range(n))
            enc = p.cobs_encode(data)
            assert 0 not in enc, (n, zero_fraction)
            # COBS overhead: at most one byte per 254 plus one.
            assert len(enc) <= n + n // 254 + 1
            assert p.cobs_decode(enc) == data, (n, zero_fraction)


@pytest.mark.parametrize("bad", [b"\x00", b"\x03\x11", b"\x05\x11\x22\x33", b"\x02\x00", b"\xff"])
def test_cobs_decode_rejects_malformed(bad: bytes) -> None:
    with pytest.raises(p.ProtocolError):
        p.cobs_decode(bad)


def test_crc32_equals_zlib_and_the_check_value() -> None:
    assert p.crc32(b"123456789") == 0xCBF43926  # the CRC-32/IEEE check value
    rng = random.Random(2)
    for n in (0, 1, 5, 64, 784, 4097):
        data = rng.randbytes(n)
        assert p.crc32(data) == zlib.crc32(data) == _crc32_bitwise(data)
    # chaining works like zlib's
    assert p.crc32(b"6789", p.crc32(b"12345")) == 0xCBF43926


def test_encode_frame_layout() -> None:
    payload = b"\x00\x01\x00\xff" * 100
    wire = p.encode_frame(p.MSG_INFER, 0x42, payload)
    assert wire.endswith(b"\x00") and wire.count(0) == 1
    decoded = p.cobs_decode(wire[:-1])
    assert decoded[0] == p.MSG_INFER and decoded[1] == 0x42 and decoded[2:-4] == payload
    assert struct.unpack("<I", decoded[-4:])[0] == zlib.crc32(decoded[:-4])
    assert p.parse_frame(decoded) == p.Frame(p.MSG_INFER, 0x42, payload)


def test_decoder_resyncs_after_garbage_and_skips_bad_frames() -> None:
    rng = random.Random(3)
    good = [p.Frame(p.MSG_RESULT, i, rng.randbytes(rng.randrange(0, 600))) for i in range(5)]
    corrupted = bytearray(p.encode_frame(p.MSG_PONG, 9, b"corrupt me"))
    corrupted[4] ^= 0x40  # flips a payload bit: the CRC no longer matches
    stream = (
        rng.randbytes(300).replace(b"\x00", b"\x01")  # garbage with no delimiter...
        + p.encode_frame(good[0].type, good[0].seq, good[0].payload)  # ...swallows this frame
        + b"\x00\x00"  # empty frames are resync markers, not errors
        + p.encode_frame(good[1].type, good[1].seq, good[1].payload)
        + bytes(corrupted)
        + b"\x07\x01\x02\x00"  # a COBS block cut short by the delimiter
        + p.encode_frame(good[2].type, good[2].seq, good[2].payload)
        + p.encode_frame(good[3].type, good[3].seq, good[3].payload)
        + p.encode_frame(good[4].type, good[4].seq, good[4].payload)
    )
    # Fed in one piece or one byte at a time, the decoder finds the same frames.
    whole = p.FrameDecoder()
    assert whole.feed(stream) == good[1:]
    assert whole.bad_frames == 3
    trickle = p.FrameDecoder()
    frames: list[p.Frame] = []
    for i in range(len(stream)):
        frames += trickle.feed(stream[i : i + 1])
    assert frames == good[1:] and trickle.bad_frames == 3


def test_decoder_discards_oversize_frames_until_the_next_delimiter() -> None:
    dec = p.FrameDecoder(max_frame=100)
    ok = p.encode_frame(p.MSG_PONG, 1, b"ok")
    frames = dec.feed(b"\x01" * 150) + dec.feed(b"\x02" * 150 + b"\x00") + dec.feed(ok)
    assert frames == [p.Frame(p.MSG_PONG, 1, b"ok")]
    assert dec.bad_frames == 1


def test_short_frames_are_rejected() -> None:
    for n in range(6):
        with pytest.raises(p.ProtocolError):
            p.parse_frame(bytes(n))


def test_parse_ready() -> None:
    sha = bytes(range(7, 39))
    payload = struct.pack("<BBIIII", 1, 0, 168_000_000, 50_000, 784, 10) + sha + b"qemu-stm32f405"
    info = p.parse_ready(payload)
    assert info == p.ReadyInfo(
        protocol_version=1,
        timer_hz=168_000_000,
        arena_bytes=50_000,
        input_bytes=784,
        output_bytes=10,
        model_sha256=sha.hex(),
        board_name="qemu-stm32f405",
    )
    assert p.build_ready(info) == payload
    with pytest.raises(p.ProtocolError):
        p.parse_ready(payload[:49])


def test_parse_result_and_error() -> None:
    assert p.parse_result(struct.pack("<Q", 2**40 + 5) + b"\x01\xff") == (2**40 + 5, b"\x01\xff")
    assert p.parse_error(bytes([p.ERR_VERSION, 1])) == (5, 1)
    with pytest.raises(p.ProtocolError):
        p.parse_result(b"\x00" * 7)


# ---- the device side, compiled for the host --------------------------------------------------

REPO = Path(__file__).resolve().parent.parent
C_DIR = REPO / "tests" / "c"


def _echo_reference(data: bytes) -> bytes:
    """What tests/c/echo_model.c computes (784 bytes in, 10 out)."""
    out = bytearray()
    for k in range(10):
        acc = k
        for j in range(k, 784, 10):
            acc = (acc * 31 + data[j]) & 0xFFFFFFFF
        out.append(acc & 0xFF)
    return bytes(out)


@pytest.fixture(scope="module")
def host_firmware(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """aq_main.c + aq_protocol.c + the echo model, built for the host with ASan and UBSan."""
    cc = shutil.which("gcc") or shutil.which("cc")
    assert cc is not None, "needs a host C compiler (gcc): make setup installs it"
    exe = tmp_path_factory.mktemp("host_fw") / "firmware"
    fw = REPO / "firmware"
    cmd = [
        cc, "-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror",
        "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
        f"-I{C_DIR / 'host_config'}", f"-I{fw / 'include'}", f"-I{fw / 'board'}", f"-I{fw / 'protocol'}",
        str(fw / "aq_main.c"), str(fw / "protocol" / "aq_protocol.c"),
        str(C_DIR / "host_board.c"), str(C_DIR / "echo_model.c"),
        "-o", str(exe),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return exe


def test_c_protocol_survives_fuzzing_under_sanitizers(host_firmware: Path) -> None:
    """The real device code answers a valid exchange, then 3000 broken frames without any
    memory error, then answers correctly again; its CRC and COBS agree with the host's."""
    rng = random.Random(6)
    x1, x2 = rng.randbytes(784), rng.randbytes(784)
    garbage = bytearray()
    for _ in range(3000):
        kind = rng.randrange(4)
        if kind == 0:
            garbage += rng.randbytes(rng.randrange(1, 300))
        elif kind == 1:
            garbage += b"\x01" * rng.randrange(780, 2000) + b"\x00"
        elif kind == 2:
            body = bytearray(p.frame_body(rng.randrange(256), rng.randrange(256), rng.randbytes(rng.randrange(0, 900))))
            if rng.random() < 0.5:
                body[rng.randrange(len(body))] ^= 0xFF
            garbage += p.cobs_encode(bytes(body)) + b"\x00"
        else:
            garbage += p.encode_frame(p.MSG_INFER, 0xEE, rng.randbytes(rng.choice([0, 783, 785])))
    stream = (
        p.encode_frame(p.MSG_HELLO, 1, b"\x01")
        + p.encode_frame(p.MSG_PING, 2, b"\x00ping\x00")
        + p.encode_frame(p.MSG_INFER, 3, x1)
        + bytes(garbage)
        + b"\x00"
        + p.encode_frame(p.MSG_INFER, 0xF0, x2)
    )
    proc = subprocess.run([str(host_firmware)], input=stream, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    dec = p.FrameDecoder()
    frames = dec.feed(proc.stdout)
    assert dec.bad_frames == 0  # every frame the C code built has valid COBS and CRC
    ready = p.parse_ready(frames[0].payload)
    assert (ready.board_name, ready.input_bytes, ready.output_bytes, ready.timer_hz) == ("host", 784, 10, 1000)
    assert frames[1] == p.Frame(p.MSG_READY, 1, frames[0].payload)
    assert frames[2] == p.Frame(p.MSG_PONG, 2, b"\x00ping\x00")
    assert frames[3].type == p.MSG_RESULT and p.parse_result(frames[3].payload) == (7, _echo_reference(x1))
    middle = frames[4:-1]
    assert len(middle) > 2000 and all(f.type in (p.MSG_ERROR, p.MSG_READY, p.MSG_PONG, p.MSG_RESULT) for f in middle)
    assert {p.parse_error(f.payload)[0] for f in middle if f.type == p.MSG_ERROR} >= {1, 2, 3, 4}
    assert frames[-1].seq == 0xF0 and p.parse_result(frames[-1].payload) == (7, _echo_reference(x2))
