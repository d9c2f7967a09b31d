"""A request/response link to the aqedge firmware over any pyserial URL.

Works with a serial port (`/dev/ttyACM0`), QEMU's UART on a loopback socket
(`socket://127.0.0.1:PORT`) or RFC 2217 (`rfc2217://host:port`). Reads always use timeouts
(pyserial's `in_waiting` is unreliable on socket://); every request is retried a bounded number
of times, and the bytes moved each way are counted for throughput figures.
"""

from __future__ import annotations

import time
from types import TracebackType

import serial

from ..errors import AqError
from . import protocol as p


class LinkError(AqError):
    """The device did not answer a request correctly within the allowed attempts."""


class DeviceLink:
    """One connection to a board running the aqedge firmware.

    Args:
        url: a pyserial URL or port name.
        baudrate: UART speed (ignored by socket:// URLs).
        timeout: seconds to wait for the answer to one request attempt.
        retries: extra attempts after the first for a request that failed (timeout, ERROR
            frame, corrupt answer).
        backoff: seconds to wait before the first retry; doubles on each further retry.
    """

    def __init__(
        self,
        url: str,
        baudrate: int = 115200,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.05,
    ) -> None:
        self.url = url
        self.baudrate = baudrate
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.ready: p.ReadyInfo | None = None
        #: Bytes written to / read from the port since it was opened.
        self.bytes_sent = 0
        self.bytes_received = 0
        #: Requests that needed more than one attempt, and frames from the device dropped as bad.
        self.retried_requests = 0
        self._ser: serial.SerialBase | None = None
        self._decoder = p.FrameDecoder()
        self._pending: list[p.Frame] = []
        self._seq = 0

    # ---- port ---------------------------------------------------------------------------------

    def _open(self) -> serial.SerialBase:
        if self._ser is None:
            try:
                self._ser = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=self.timeout)
            except (serial.SerialException, OSError, ValueError) as exc:
                raise AqError(f"cannot open {self.url}: {exc}: is the board connected and the port right?") from exc
        return self._ser

    def _write(self, data: bytes) -> None:
        ser = self._open()
        try:
            ser.write(data)
            ser.flush()
        except (serial.SerialException, OSError) as exc:
            raise LinkError(f"writing to {self.url} failed: {exc}") from exc
        self.bytes_sent += len(data)

    def _read_frames(self, deadline: float) -> list[p.Frame]:
        """Return the frames that arrive before `deadline` (at least one unless time ran out)."""
        if self._pending:
            frames, self._pending = self._pending, []
            return frames
        ser = self._open()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            try:
                ser.timeout = remaining
                data = ser.read(1)
                if data:
                    ser.timeout = 0  # non-blocking: take whatever else is already there
                    data += ser.read(1 << 16)
            except (serial.SerialException, OSError) as exc:
                raise LinkError(f"reading from {self.url} failed: {exc}") from exc
            if not data:
                return []
            self.bytes_received += len(data)
            frames = self._decoder.feed(data)
            if frames:
                return frames

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    # ---- session ------------------------------------------------------------------------------

    def connect(self, ready_timeout: float = 10.0) -> p.ReadyInfo:
        """Wait for the device's READY, sending HELLO about once a second until it answers.

        Raises:
            AqError: nothing answered within `ready_timeout` seconds, or the device speaks
                another protocol version.
        """
        self._open()
        start = time.monotonic()
        deadline = start + ready_timeout
        next_hello = start + 0.2  # a freshly booted device announces itself: give it a moment
        hello_seq = self._next_seq()
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise AqError(
                    f"no answer from {self.url} after {ready_timeout:g} s: "
                    "is the board flashed and the port right?"
                )
            if now >= next_hello:
                # The leading 0x00 ends any partial frame the device holds.
                self._write(b"\x00" + p.encode_frame(p.MSG_HELLO, hello_seq, bytes([p.PROTOCOL_VERSION])))
                next_hello = now + 1.0
            for frame in self._read_frames(min(deadline, next_hello)):
                if frame.type == p.MSG_READY:
                    info = p.parse_ready(frame.payload)
                    self._check_version(info.protocol_version)
                    self.ready = info
                    return info
                if frame.type == p.MSG_ERROR:
                    code, version = p.parse_error(frame.payload)
                    if code == p.ERR_VERSION:
                        self._check_version(version)

    def _check_version(self, device_version: int) -> None:
        if device_version != p.PROTOCOL_VERSION:
            raise AqError(
                f"{self.url} speaks protocol version {device_version}, this aqedge speaks "
                f"version {p.PROTOCOL_VERSION}: rebuild and reflash the firmware with this aqedge"
            )

    def request(self, msg_type: int, payload: bytes, reply_type: int, timeout: float | None = None) -> bytes:
        """Send a request and return the payload of its reply, retrying a bounded number of times.

        An attempt fails on a timeout, an ERROR frame for this request or a corrupt frame from
        the device; answers to older requests (stale seq) are skipped.

        Raises:
            LinkError: every attempt failed.
        """
        wait = self.timeout if timeout is None else timeout
        problems: list[str] = []
        attempts = self.retries + 1
        for attempt in range(attempts):
            if attempt:
                self.retried_requests += 1
                time.sleep(self.backoff * (2 ** (attempt - 1)))
            seq = self._next_seq()
            bad_before = self._decoder.bad_frames
            # On a retry, a leading 0x00 closes whatever partial frame the device holds.
            self._write((b"\x00" if attempt else b"") + p.encode_frame(msg_type, seq, payload))
            deadline = time.monotonic() + wait
            problem = f"no answer within {wait:g} s"
            while time.monotonic() < deadline:
                frames = self._read_frames(deadline)
                if not frames:
                    break
                answered = False
                for i, frame in enumerate(frames):
                    if frame.seq != seq:
                        continue  # stale answer to an earlier attempt
                    if frame.type == reply_type:
                        self._pending = frames[i + 1 :]
                        return frame.payload
                    if frame.type == p.MSG_ERROR:
                        code, version = p.parse_error(frame.payload)
                        if code == p.ERR_VERSION:
                            self._check_version(version)
                        problem = f"device answered ERROR ({p.error_name(code)})"
                        answered = True
                        break
                if answered:
                    break
                if self._decoder.bad_frames != bad_before:
                    problem = "corrupt frame from the device"
                    break
            problems.append(problem)
        raise LinkError(
            f"{self.url}: request type {msg_type:#04x} failed after {attempts} attempts "
            f"({'; '.join(problems)})"
        )

    def ping(self, payload: bytes = b"aqedge") -> bool:
        """Send PING; True if the device echoed `payload` exactly (LinkError if it never answered)."""
        if len(payload) > p.PING_MAX:
            raise ValueError(f"PING payload of {len(payload)} bytes, at most {p.PING_MAX}")
        return self.request(p.MSG_PING, payload, p.MSG_PONG) == payload

    def infer(self, input: bytes, timeout: float | None = None) -> tuple[int, bytes]:
        """Run one inference on the device: returns (timer ticks of that inference, output bytes).

        Raises:
            AqError: `input` does not have the model's input size.
            LinkError: no valid RESULT after the allowed attempts.
        """
        if self.ready is None:
            raise AqError(f"{self.url}: call connect() before infer()")
        data = bytes(input)
        if len(data) != self.ready.input_bytes:
            raise AqError(
                f"input of {len(data)} bytes, but the model on {self.ready.board_name} takes "
                f"{self.ready.input_bytes}"
            )
        payload = self.request(p.MSG_INFER, data, p.MSG_RESULT, timeout)
        try:
            ticks, output = p.parse_result(payload)
        except p.ProtocolError as exc:
            raise LinkError(f"{self.url}: {exc}") from exc
        if len(output) != self.ready.output_bytes:
            raise LinkError(
                f"{self.url}: RESULT carries {len(output)} output bytes, READY announced "
                f"{self.ready.output_bytes}"
            )
        return ticks, output

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (diagnostics and tests: e.g. deliberately broken frames)."""
        self._write(bytes(data))

    def read_frames(self, timeout: float) -> list[p.Frame]:
        """Every good frame that arrives within `timeout` seconds (diagnostics and tests)."""
        deadline = time.monotonic() + timeout
        frames: list[p.Frame] = []
        while time.monotonic() < deadline:
            frames += self._read_frames(deadline)
        return frames

    def close(self) -> None:
        """Close the port (idempotent)."""
        if self._ser is not None:
            try:
                self._ser.close()
            finally:
                self._ser = None

    def __enter__(self) -> DeviceLink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
