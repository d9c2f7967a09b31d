"""A request/response link to the aqedge firmware over any pyserial URL.

Works with a serial port (`/dev/ttyACM0`), QEMU's UART on a loopback socket
(`socket://127.0.0.1:PORT`) or RFC 2217 (`rfc2217://host:port`). Reads always use timeouts
(pyserial's `in_waiting` is unreliable on socket://); every request is retried a bounded number
of times, and the bytes moved each way are counted for throughput figures.

Retries: each attempt gets a fresh sequence number. The wait for an answer adapts to the link:
after a few answers of a type it is 4x the median or 2x the slowest recent round trip (bounded by
`timeout`), so a frame lost on the wire costs a fraction of a second rather than `timeout`;
it doubles on each further attempt, and the pause between attempts backs off exponentially
(capped at `max_backoff`). All attempts of one request carry the same payload, so an answer to
any of them (a late one included) is the answer; answers to earlier requests are skipped.
"""

from __future__ import annotations

import statistics
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
        max_backoff: the longest wait between two attempts.
        min_timeout: the shortest adaptive wait for an answer.
    """

    def __init__(
        self,
        url: str,
        baudrate: int = 115200,
        timeout: float = 5.0,
        retries: int = 5,
        backoff: float = 0.05,
        max_backoff: float = 1.0,
        min_timeout: float = 0.25,
    ) -> None:
        self.url = url
        self.baudrate = baudrate
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.min_timeout = min_timeout
        #: Recent round-trip times of successful attempts, by reply type.
        self._rtts: dict[int, list[float]] = {}
        self.ready: p.ReadyInfo | None = None
        #: Bytes written to / read from the port since it was opened.
        self.bytes_sent = 0
        self.bytes_received = 0
        #: Extra attempts made (a request answered on its third attempt counts 2).
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

    @property
    def bad_frames(self) -> int:
        """Frames from the device dropped as corrupt (bad COBS or CRC) since the port opened."""
        return self._decoder.bad_frames

    def _attempt_timeout(self, reply_type: int, attempt: int, timeout: float | None) -> float:
        if timeout is not None:
            return timeout
        recent = self._rtts.get(reply_type, [])
        if len(recent) < 3:
            base = self.timeout
        else:
            # A late answer to an earlier attempt is accepted too, so a retry sent a little early
            # costs one extra inference on the device, while waiting too long costs wall time.
            typical = max(4 * statistics.median(recent), 2 * max(recent))
            base = min(self.timeout, max(self.min_timeout, typical + 0.05))
        return min(self.timeout, base * (2**attempt))

    def _record_rtt(self, reply_type: int, seconds: float) -> None:
        recent = self._rtts.setdefault(reply_type, [])
        recent.append(seconds)
        del recent[:-20]

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

        An attempt fails on a timeout, an ERROR frame for this attempt or a corrupt frame from
        the device; answers to older requests (stale seq) are skipped. `timeout` fixes the wait
        per attempt (default: adaptive, see the module docstring).

        Raises:
            LinkError: every attempt failed.
        """
        problems: list[str] = []
        attempts = self.retries + 1
        seqs: set[int] = set()
        for attempt in range(attempts):
            if attempt:
                self.retried_requests += 1
                time.sleep(min(self.max_backoff, self.backoff * (2 ** (attempt - 1))))
            wait = self._attempt_timeout(reply_type, attempt, timeout)
            seq = self._next_seq()
            seqs.add(seq)
            bad_before = self._decoder.bad_frames
            # On a retry, a leading 0x00 closes whatever partial frame the device holds.
            self._write((b"\x00" if attempt else b"") + p.encode_frame(msg_type, seq, payload))
            sent_at = time.monotonic()
            deadline = sent_at + wait
            problem = f"no answer within {wait:.2g} s"
            while time.monotonic() < deadline:
                frames = self._read_frames(deadline)
                if not frames:
                    break
                answered = False
                for i, frame in enumerate(frames):
                    if frame.type == reply_type and frame.seq in seqs:
                        # This attempt's answer or a late one to an earlier attempt of the same
                        # request (same payload): either is the answer.
                        self._pending = frames[i + 1 :]
                        if frame.seq == seq:
                            self._record_rtt(reply_type, time.monotonic() - sent_at)
                        return frame.payload
                    if frame.seq != seq:
                        continue  # stale answer to an earlier request or attempt
                    if frame.type == p.MSG_ERROR:
                        code, version = p.parse_error(frame.payload)
                        if code == p.ERR_VERSION:
                            self._check_version(version)
                        if code == p.ERR_ABORTED:  # the device has halted: no retry can help
                            raise LinkError(f"{self.url}: the device aborted and halted: "
                                            f"{p.error_text(frame.payload) or 'no reason given'}")
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
        data = self._check_input(input)
        payload = self.request(p.MSG_INFER, data, p.MSG_RESULT, timeout)
        try:
            ticks, output = p.parse_result(payload)
        except p.ProtocolError as exc:
            raise LinkError(f"{self.url}: {exc}") from exc
        self._check_output(output)
        return ticks, output

    def _check_input(self, input: bytes) -> bytes:
        if self.ready is None:
            raise AqError(f"{self.url}: call connect() before infer()")
        data = bytes(input)
        if len(data) != self.ready.input_bytes:
            raise AqError(
                f"input of {len(data)} bytes, but the model on {self.ready.board_name} takes "
                f"{self.ready.input_bytes}"
            )
        return data

    def _check_output(self, output: bytes) -> None:
        assert self.ready is not None
        if len(output) != self.ready.output_bytes:
            raise LinkError(
                f"{self.url}: the answer carries {len(output)} output bytes, READY announced "
                f"{self.ready.output_bytes}"
            )

    def profile(self, input: bytes, timeout: float | None = None) -> tuple[int, list[int], bytes]:
        """One inference that also times each op: (ticks, ticks of each op, output bytes).

        Raises:
            AqError: the firmware does not announce the PROFILE capability, or a wrong input size.
            LinkError: no valid PROFILE_RESULT after the allowed attempts.
        """
        data = self._check_input(input)
        assert self.ready is not None
        if not self.ready.can_profile:
            raise AqError(
                f"the firmware on {self.ready.board_name} ({self.url}) does not report per-op ticks: "
                "rebuild it with this aqedge (`aqedge build`) and reflash it to use --profile"
            )
        payload = self.request(p.MSG_PROFILE, data, p.MSG_PROFILE_RESULT, timeout)
        try:
            ticks, ops, output = p.parse_profile_result(payload)
        except p.ProtocolError as exc:
            raise LinkError(f"{self.url}: {exc}") from exc
        self._check_output(output)
        return ticks, ops, output

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
