"""Harness pieces without a device: the results log (resume, torn last line, mismatched runs),
the fault proxy's damage, PROFILE_RESULT decoding, the adaptive retry timeout."""

from __future__ import annotations

import json
import socket
import struct
import threading
from pathlib import Path

import pytest

from aqedge.errors import AqError
from aqedge.harness import protocol as p
from aqedge.harness.faultproxy import FaultMix, FaultProxy
from aqedge.harness.results import Record, ResultLog

HEADER = {"board": "b", "model_sha256": "ab" * 32, "dataset": "random", "seed": 0, "samples": 5}


def test_results_log_resumes_and_survives_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    log = ResultLog(path, HEADER)
    log.append(Record(0, 100, b"\x01\x02"))
    log.append_failure(1, "no answer")
    log.append(Record(2, 102, b"\x03\x04", [40, 62], 103))
    log.close()
    with open(path, "ab") as f:
        f.write(b'{"i": 3, "ticks": 1')  # the writer was killed mid-line

    again = ResultLog(path, HEADER, resume=True)
    assert again.loaded.truncated_tail
    assert sorted(again.loaded.results) == [0, 2] and again.loaded.failed == {1: "no answer"}
    assert again.loaded.results[2] == Record(2, 102, b"\x03\x04", [40, 62], 103)
    assert path.read_bytes().endswith(b"\n")  # the torn line is gone, appends stay valid
    again.append(Record(1, 101, b"\x05\x06"))
    again.append(Record(1, 999, b"\x07\x08"))  # a duplicate: the first result wins
    again.close()
    third = ResultLog(path, HEADER, resume=True)
    assert sorted(third.loaded.results) == [0, 1, 2] and third.loaded.failed == {}
    assert third.loaded.results[1].ticks == 101 and third.loaded.duplicates == 1
    for line in path.read_text().splitlines():
        json.loads(line)


def test_results_log_refuses_another_runs_log(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    log = ResultLog(path, HEADER)
    log.close()
    assert not path.exists()  # created at the first record, not before
    log = ResultLog(path, HEADER)
    log.append(Record(0, 1, b"\x00"))
    log.close()
    with pytest.raises(AqError, match="belongs to another run .*samples: 5 in the log, 6 now"):
        ResultLog(path, {**HEADER, "samples": 6}, resume=True)
    with pytest.raises(AqError, match="does not exist"):
        ResultLog(tmp_path / "none.jsonl", HEADER, resume=True)
    (tmp_path / "junk.jsonl").write_text('{"x": 1}\n')
    with pytest.raises(AqError, match="not an aqedge results log"):
        ResultLog(tmp_path / "junk.jsonl", HEADER, resume=True)


def test_parse_profile_result_and_ready_capabilities() -> None:
    payload = struct.pack("<QI3I", 1000, 3, 300, 500, 199) + b"\x09\xf7"
    assert p.parse_profile_result(payload) == (1000, [300, 500, 199], b"\x09\xf7")
    with pytest.raises(p.ProtocolError):
        p.parse_profile_result(payload[:20])
    info = p.ReadyInfo(1, 1000, 10, 4, 2, "00" * 32, "x", capabilities=p.CAP_PROFILE)
    assert p.parse_ready(p.build_ready(info)) == info and info.can_profile
    assert not p.parse_ready(p.build_ready(p.ReadyInfo(1, 1000, 10, 4, 2, "00" * 32, "x"))).can_profile


def _echo_server() -> tuple[str, threading.Thread]:
    """A loopback server that echoes whatever it receives."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def run() -> None:
        conn, _ = listener.accept()
        listener.close()
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return f"socket://127.0.0.1:{listener.getsockname()[1]}", th


def _through(mix: FaultMix, frames: list[bytes], seed: int = 0) -> tuple[bytes, FaultProxy]:
    url, _ = _echo_server()
    proxy = FaultProxy(url, mix, seed=seed)
    host, port = proxy.url.removeprefix("socket://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"".join(frames))
        s.settimeout(0.5)
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
        except TimeoutError:
            pass
    proxy.close()
    return got, proxy


def test_fault_proxy_passes_clean_and_damages_as_told() -> None:
    frames = [p.encode_frame(p.MSG_PING, i, bytes([i]) * 20) for i in range(200)]
    got, proxy = _through(FaultMix(), frames)
    assert got == b"".join(frames) and proxy.faults() == 0

    got, proxy = _through(FaultMix(duplicate=1.0, direction="to_device"), frames)
    assert got == b"".join(f + f for f in frames)  # duplicated on the way in only

    got, proxy = _through(FaultMix.standard().scaled(5), frames, seed=3)
    dec = p.FrameDecoder()
    good = dec.feed(got)
    assert proxy.faults() > 0 and dec.bad_frames > 0
    assert {f.seq for f in good} < set(range(200))  # something was lost ...
    assert all(f in [p.Frame(p.MSG_PING, i, bytes([i]) * 20) for i in range(200)] for f in good)  # ... nothing forged


def test_fault_proxy_refuses_non_loopback_targets() -> None:
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy("socket://10.0.0.1:1234", FaultMix())


def test_adaptive_timeout_follows_the_link() -> None:
    from aqedge.harness.link import DeviceLink

    link = DeviceLink("socket://127.0.0.1:1", timeout=5.0, min_timeout=0.25)
    assert link._attempt_timeout(p.MSG_RESULT, 0, None) == 5.0  # nothing known yet
    for rtt in (0.05, 0.06, 0.05, 0.07):
        link._record_rtt(p.MSG_RESULT, rtt)
    first = link._attempt_timeout(p.MSG_RESULT, 0, None)
    assert 0.25 <= first < 1.0
    assert link._attempt_timeout(p.MSG_RESULT, 1, None) == pytest.approx(2 * first)
    assert link._attempt_timeout(p.MSG_RESULT, 10, None) == 5.0  # bounded by timeout
    assert link._attempt_timeout(p.MSG_RESULT, 0, 1.5) == 1.5  # an explicit timeout wins
