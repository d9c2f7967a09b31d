"""Host side of the aqedge serial protocol, version 1 (docs/protocol.md).

Version 1 with the PROFILE extension: a device announces the optional messages it answers in
READY's capability byte (0 in firmware that predates them), so hosts and devices of version 1
keep working together; the version number changes only when an existing message changes.

A frame on the wire is COBS(type, seq, payload, crc32_le(type + seq + payload)) + b"\\x00".
This module is pure: bytes in, bytes out. The serial link itself is in link.py.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

PROTOCOL_VERSION = 1

# Message types.
MSG_HELLO = 0x01
MSG_PING = 0x02
MSG_INFER = 0x03
#: INFER that also returns the ticks of each op (capability CAP_PROFILE).
MSG_PROFILE = 0x04
MSG_ERROR = 0x7F
MSG_READY = 0x81
MSG_PONG = 0x82
MSG_RESULT = 0x83
MSG_PROFILE_RESULT = 0x84

# READY capability flags (payload byte 1).
CAP_PROFILE = 0x01

# ERROR codes.
ERR_BAD_CRC = 1
ERR_BAD_LENGTH = 2
ERR_UNKNOWN_TYPE = 3
ERR_TOO_LONG = 4
ERR_VERSION = 5
#: aqedge extension (not in the version-1 table): the model's invoke returned an error.
ERR_INVOKE_FAILED = 6
#: aqedge extension: the firmware stopped for good (abort, failed assert, exit); the payload
#: carries the reason as ASCII text after the version byte, and the device has halted.
ERR_ABORTED = 7

ERROR_NAMES = {
    ERR_BAD_CRC: "bad CRC",
    ERR_BAD_LENGTH: "bad length",
    ERR_UNKNOWN_TYPE: "unknown type",
    ERR_TOO_LONG: "frame too long",
    ERR_VERSION: "protocol version mismatch",
    ERR_INVOKE_FAILED: "model invoke failed",
    ERR_ABORTED: "device aborted",
}

#: type + seq + CRC-32.
FRAME_OVERHEAD = 6
#: Largest PING payload.
PING_MAX = 64
_READY_HEAD = struct.Struct("<BBIIII32s")


class ProtocolError(ValueError):
    """A frame or payload that does not follow the protocol."""


def crc32(data: bytes, crc: int = 0) -> int:
    """CRC-32 (IEEE 802.3), identical to zlib.crc32, chainable the same way."""
    return zlib.crc32(data, crc) & 0xFFFFFFFF


def cobs_encode(data: bytes) -> bytes:
    """COBS-encode `data` (no trailing delimiter); the result contains no 0x00."""
    out = bytearray()
    block = bytearray()
    for byte in data:
        if len(block) == 254:
            out.append(0xFF)
            out += block
            block.clear()
        if byte == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
        else:
            block.append(byte)
    out.append(len(block) + 1)
    out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Decode one COBS-encoded frame (without its delimiter).

    Raises:
        ProtocolError: `data` contains 0x00 or ends inside a block.
    """
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise ProtocolError("COBS data contains a zero byte")
        end = i + code
        if end > n:
            raise ProtocolError("COBS block runs past the end of the frame")
        block = data[i + 1 : end]
        if 0 in block:
            raise ProtocolError("COBS data contains a zero byte")
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


@dataclass(frozen=True)
class Frame:
    """One decoded frame with a good CRC."""

    type: int
    seq: int
    payload: bytes


def frame_body(msg_type: int, seq: int, payload: bytes) -> bytes:
    """The decoded frame (type, seq, payload, CRC) before COBS."""
    if not 0 <= msg_type <= 0xFF or not 0 <= seq <= 0xFF:
        raise ValueError(f"type {msg_type} and seq {seq} must fit in a byte")
    body = bytes((msg_type, seq)) + bytes(payload)
    return body + struct.pack("<I", crc32(body))


def encode_frame(msg_type: int, seq: int, payload: bytes = b"") -> bytes:
    """The bytes to put on the wire for one frame, including the trailing 0x00."""
    return cobs_encode(frame_body(msg_type, seq, payload)) + b"\x00"


def parse_frame(decoded: bytes) -> Frame:
    """Check a COBS-decoded frame's length and CRC.

    Raises:
        ProtocolError: shorter than 6 bytes or bad CRC.
    """
    if len(decoded) < FRAME_OVERHEAD:
        raise ProtocolError(f"frame of {len(decoded)} bytes is shorter than {FRAME_OVERHEAD}")
    body, (crc,) = decoded[:-4], struct.unpack("<I", decoded[-4:])
    if crc32(body) != crc:
        raise ProtocolError(f"bad CRC: frame says {crc:#010x}, data gives {crc32(body):#010x}")
    return Frame(type=body[0], seq=body[1], payload=bytes(body[2:]))


class FrameDecoder:
    """Streaming decoder: feed it whatever the port delivered, get back the good frames.

    Garbage, frames with bad COBS or CRC, and anything longer than `max_frame` encoded bytes
    are skipped up to the next 0x00; `bad_frames` counts them so a caller can retry early.
    """

    def __init__(self, max_frame: int = 1 << 20) -> None:
        self.max_frame = max_frame
        self.bad_frames = 0
        self._buf = bytearray()
        self._discarding = False

    def reset(self) -> None:
        """Forget any partial frame."""
        self._buf.clear()
        self._discarding = False

    def feed(self, data: bytes) -> list[Frame]:
        """Consume `data`; return the complete frames with a good CRC, in order."""
        frames: list[Frame] = []
        start = 0
        while True:
            zero = data.find(b"\x00", start)
            if zero < 0:
                if not self._discarding:
                    self._buf += data[start:]
                    if len(self._buf) > self.max_frame:
                        self._buf.clear()
                        self._discarding = True
                return frames
            chunk = data[start:zero]
            start = zero + 1
            if self._discarding:
                self._discarding = False
                self.bad_frames += 1
                continue
            self._buf += chunk
            encoded = bytes(self._buf)
            self._buf.clear()
            if not encoded:
                continue  # an empty frame: a resync marker, not an error
            if len(encoded) > self.max_frame:
                self.bad_frames += 1
                continue
            try:
                frames.append(parse_frame(cobs_decode(encoded)))
            except ProtocolError:
                self.bad_frames += 1


@dataclass(frozen=True)
class ReadyInfo:
    """What the device announces in READY."""

    protocol_version: int
    timer_hz: int
    arena_bytes: int
    input_bytes: int
    output_bytes: int
    #: SHA-256 of the .tflite the firmware was built from, as 64 hex digits.
    model_sha256: str
    board_name: str
    #: CAP_* flags: optional messages the device answers.
    capabilities: int = 0

    @property
    def can_profile(self) -> bool:
        return bool(self.capabilities & CAP_PROFILE)


def build_ready(info: ReadyInfo) -> bytes:
    """The READY payload for `info` (the inverse of parse_ready; for tests and simulators)."""
    return _READY_HEAD.pack(
        info.protocol_version,
        info.capabilities,
        info.timer_hz,
        info.arena_bytes,
        info.input_bytes,
        info.output_bytes,
        bytes.fromhex(info.model_sha256),
    ) + info.board_name.encode("ascii")


def parse_ready(payload: bytes) -> ReadyInfo:
    """Decode a READY payload.

    Raises:
        ProtocolError: shorter than the fixed 50-byte head, or a non-ASCII board name.
    """
    if len(payload) < _READY_HEAD.size:
        raise ProtocolError(f"READY payload of {len(payload)} bytes, expected at least {_READY_HEAD.size}")
    version, caps, timer_hz, arena, n_in, n_out, sha = _READY_HEAD.unpack_from(payload)
    try:
        name = payload[_READY_HEAD.size :].decode("ascii")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"READY board name is not ASCII: {payload[_READY_HEAD.size:]!r}") from exc
    return ReadyInfo(
        protocol_version=version,
        timer_hz=timer_hz,
        arena_bytes=arena,
        input_bytes=n_in,
        output_bytes=n_out,
        model_sha256=sha.hex(),
        board_name=name,
        capabilities=caps,
    )


def parse_result(payload: bytes) -> tuple[int, bytes]:
    """Decode a RESULT payload into (ticks, output tensor bytes)."""
    if len(payload) < 8:
        raise ProtocolError(f"RESULT payload of {len(payload)} bytes, expected at least 8")
    (ticks,) = struct.unpack_from("<Q", payload)
    return ticks, bytes(payload[8:])


def parse_profile_result(payload: bytes) -> tuple[int, list[int], bytes]:
    """Decode a PROFILE_RESULT payload into (ticks, per-op ticks, output tensor bytes)."""
    if len(payload) < 12:
        raise ProtocolError(f"PROFILE_RESULT payload of {len(payload)} bytes, expected at least 12")
    ticks, n_ops = struct.unpack_from("<QI", payload)
    end = 12 + 4 * n_ops
    if len(payload) < end:
        raise ProtocolError(f"PROFILE_RESULT announces {n_ops} ops but carries {len(payload) - 12} bytes")
    ops = list(struct.unpack_from(f"<{n_ops}I", payload, 12))
    return ticks, ops, bytes(payload[end:])


def parse_error(payload: bytes) -> tuple[int, int]:
    """Decode an ERROR payload into (code, device protocol version); missing bytes read as 0."""
    code = payload[0] if len(payload) > 0 else 0
    version = payload[1] if len(payload) > 1 else 0
    return code, version


def error_text(payload: bytes) -> str:
    """The ASCII text an ERROR payload may carry after code and version ("" when none)."""
    return bytes(payload[2:]).decode("ascii", errors="replace")


def error_name(code: int) -> str:
    """A readable name for an ERROR code."""
    return ERROR_NAMES.get(code, f"error code {code}")
