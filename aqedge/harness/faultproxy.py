"""A loopback TCP proxy that damages a serial link on purpose: for fault tests and bench/faults.py.

Sits between the host (pyserial `socket://`) and a device's UART socket (QEMU's chardev) on
127.0.0.1 and, per frame (the bytes up to and including a 0x00 delimiter) and per direction,
seeded: corrupts bytes, drops the frame, drops one byte of it (possibly the delimiter, so two
frames merge), sends it twice, delays it, injects line noise before it, or starts a burst (the
next few frames all damaged). Order within a direction is kept, as on a real wire.

    with FaultProxy(emulated.url, FaultMix.standard(), seed=1) as proxy:
        link = DeviceLink(proxy.url)
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, fields, replace
from types import TracebackType
from urllib.parse import urlparse


@dataclass(frozen=True)
class FaultMix:
    """Probabilities per frame (each direction on its own)."""

    corrupt: float = 0.0      # flip 1-3 random bytes of the frame
    drop: float = 0.0         # drop the whole frame
    drop_byte: float = 0.0    # remove one byte of it (the delimiter included)
    duplicate: float = 0.0    # send the frame twice
    delay: float = 0.0        # hold the stream back before this frame ...
    max_delay: float = 0.05   # ... by up to this many seconds
    noise: float = 0.0        # insert 1-64 random bytes before the frame
    burst: float = 0.0        # start a burst: the next 2-6 frames are each corrupted or dropped
    #: Which way: "both", "to_device" or "to_host".
    direction: str = "both"

    @classmethod
    def standard(cls) -> FaultMix:
        """The issue's mix: 1 % corrupt, 1 % dropped frames, 1 % dropped bytes, 1 % duplicated,
        5 % delayed (<= 50 ms), 1 % line noise, 0.5 % bursts."""
        return cls(corrupt=0.01, drop=0.01, drop_byte=0.01, duplicate=0.01, delay=0.05,
                   noise=0.01, burst=0.005)

    def scaled(self, factor: float) -> FaultMix:
        probs = {f.name: min(1.0, getattr(self, f.name) * factor)
                 for f in fields(self) if f.name not in ("max_delay", "direction")}
        return replace(self, **probs)


class _Pump:
    """One direction: reads bytes, cuts frames at 0x00, damages them, forwards them."""

    def __init__(self, src: socket.socket, dst: socket.socket, mix: FaultMix, rng: random.Random,
                 stats: Counter, active: bool) -> None:
        self.src, self.dst, self.mix, self.rng, self.stats = src, dst, mix, rng, stats
        self.active = active
        self.burst_left = 0
        self.buf = bytearray()

    def _damage(self, frame: bytes) -> list[bytes]:
        m, rng, st = self.mix, self.rng, self.stats
        out: list[bytes] = []
        if m.delay and rng.random() < m.delay:
            st["delayed"] += 1
            time.sleep(rng.uniform(0.0, m.max_delay))
        if m.noise and rng.random() < m.noise:
            st["noise"] += 1
            out.append(rng.randbytes(rng.randrange(1, 65)))
        if m.burst and self.burst_left == 0 and rng.random() < m.burst:
            st["bursts"] += 1
            self.burst_left = rng.randrange(2, 7)
        in_burst = self.burst_left > 0
        if in_burst:
            self.burst_left -= 1
        if (m.drop and rng.random() < m.drop) or (in_burst and rng.random() < 0.5):
            st["dropped"] += 1
            return out
        data = bytearray(frame)
        if (m.corrupt and rng.random() < m.corrupt) or in_burst:
            st["corrupted"] += 1
            for _ in range(rng.randrange(1, 4)):
                k = rng.randrange(len(data))
                data[k] ^= rng.randrange(1, 256)
        if m.drop_byte and rng.random() < m.drop_byte:
            st["byte_dropped"] += 1
            del data[rng.randrange(len(data))]
        out.append(bytes(data))
        if m.duplicate and rng.random() < m.duplicate:
            st["duplicated"] += 1
            out.append(bytes(data))
        return out

    def run(self) -> None:
        try:
            while True:
                chunk = self.src.recv(65536)
                if not chunk:
                    break
                self.stats["bytes"] += len(chunk)
                if not self.active:
                    self.dst.sendall(chunk)
                    continue
                self.buf += chunk
                while (end := self.buf.find(b"\x00")) >= 0:
                    frame = bytes(self.buf[: end + 1])
                    del self.buf[: end + 1]
                    self.stats["frames"] += 1
                    for piece in self._damage(frame):
                        if piece:
                            self.dst.sendall(piece)
        except OSError:
            pass
        finally:
            for s in (self.src, self.dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class FaultProxy:
    """Listen on 127.0.0.1 (an ephemeral port); each client gets its own connection upstream.

    Attributes:
        url: the pyserial URL to give the host (`socket://127.0.0.1:PORT`).
        to_device, to_host: Counters of what was done in each direction (frames, bytes,
            corrupted, dropped, byte_dropped, duplicated, delayed, noise, bursts).
    """

    def __init__(self, upstream_url: str, mix: FaultMix, seed: int = 0) -> None:
        u = urlparse(upstream_url)
        if u.scheme != "socket" or u.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError(f"FaultProxy only proxies loopback socket:// URLs, not {upstream_url}")
        self.upstream = (u.hostname, u.port)
        self.mix = mix
        self.seed = seed
        self.to_device: Counter = Counter()
        self.to_host: Counter = Counter()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(4)
        self.url = f"socket://127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._connections = 0
        self._accepter = threading.Thread(target=self._accept, daemon=True, name="faultproxy")
        self._accepter.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                device = socket.create_connection(self.upstream, timeout=10.0)
                device.settimeout(None)
            except OSError:
                client.close()
                continue
            for s in (client, device):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [client, device]
            k = self._connections
            self._connections += 1
            rng_down = random.Random(f"{self.seed}/{k}/to_device")
            rng_up = random.Random(f"{self.seed}/{k}/to_host")
            down = _Pump(client, device, self.mix, rng_down, self.to_device,
                         self.mix.direction in ("both", "to_device"))
            up = _Pump(device, client, self.mix, rng_up, self.to_host,
                       self.mix.direction in ("both", "to_host"))
            for pump in (down, up):
                t = threading.Thread(target=pump.run, daemon=True, name="faultproxy-pump")
                t.start()
                self._threads.append(t)

    def faults(self) -> int:
        """How many frames were damaged (corrupted, dropped, cut, duplicated) both ways."""
        keys = ("corrupted", "dropped", "byte_dropped", "duplicated")
        return sum(c[k] for c in (self.to_device, self.to_host) for k in keys)

    def close(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() in _accept
        except OSError:
            pass
        self._listener.close()
        for s in self._sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for t in self._threads:
            t.join(2.0)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
