"""`aqedge measure` on emulated boards with a real model (the small Fashion-MNIST CNN, int8):
per-op profile, resume after QEMU is killed, Ctrl-C, two boards at once, reports and plots."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from aqedge.boards import resolve
from aqedge.codegen.build import build
from aqedge.flash import boot_emulated
from aqedge.harness.session import COMPLETE, DEVICE_LOST, metrics, run_session

# arm-none-eabi-gcc and qemu-system-arm are required (make setup installs them): no skips.

CONTRACT = ("board", "emulated", "model_sha256", "samples", "correct", "accuracy",
            "device_matches_reference", "latency", "clock_hz", "flash_bytes", "ram_bytes",
            "arena_bytes", "failed_samples")
STM32 = "qemu-stm32f405"
MPS2 = "qemu-mps2-an386"


@pytest.fixture(scope="module")
def stm32_build(int8_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fw_stm32")
    build(int8_model, resolve(STM32)[0], out)
    return out


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aqedge.cli", *args], capture_output=True, text=True, **kw)


def _log_counts(path: Path) -> Counter:
    return Counter(json.loads(line)["i"] for line in path.read_text().splitlines()[1:])


def _comparable(m: dict) -> dict:
    """What must not depend on how the run went (link timing, resumes, profiling aside)."""
    return {k: v for k, v in m.items() if k not in ("link",)}


def test_per_op_ticks_add_up_to_the_whole_inference(stm32_build: Path) -> None:
    board = resolve(STM32)[0]
    session = run_session(board, stm32_build, "fashion-mnist", 4, profile=True, profile_samples=4)
    ops = json.loads((stm32_build / "model_ops.json").read_text())
    assert session.status == COMPLETE and len(session.results) == 4
    assert [o["opcode"] for o in session.profile_ops] == [o["opcode"] for o in ops]
    for r in session.results:
        assert r.matches_reference
        assert len(r.op_ticks) == len(ops) and all(t > 0 for t in r.op_ticks)
        # The ops of a profiled run against the same sample's plain (unprofiled) inference.
        assert abs(sum(r.op_ticks) / r.ticks - 1) <= 0.02, (sum(r.op_ticks), r.ticks)
        assert abs(sum(r.op_ticks) - r.profile_ticks) <= 0.02 * r.profile_ticks
    m = metrics(session)
    prof = m["profile"]
    assert prof["unit"] == "instructions" and len(prof["ops"]) == len(ops)
    assert abs(prof["sum_of_ops"] / prof["whole_inference"] - 1) <= 0.02
    assert 0.98 <= prof["sum_over_whole"]["min"] <= prof["sum_over_whole"]["max"] <= 1.02


def test_resume_after_qemu_is_killed_gives_the_uninterrupted_metrics(stm32_build: Path, tmp_path: Path) -> None:
    board = resolve(STM32)[0]
    n = 24
    full = metrics(run_session(board, stm32_build, "fashion-mnist", n, results_path=tmp_path / "full.jsonl"))
    assert full["status"] == "complete" and full["measured"] == n

    # Run 1: QEMU is killed (SIGKILL) while sample 10 is in flight.
    log = tmp_path / "metrics.jsonl"
    with boot_emulated(board, stm32_build / "firmware.elf") as emu:
        def kill_at_10(done: int, total: int) -> None:
            if done == 10:
                emu.process.kill()
        cut = run_session(board, stm32_build, "fashion-mnist", n, port=emu.url, progress=kill_at_10,
                          results_path=log)
    assert cut.status == DEVICE_LOST and "socket disconnected" in cut.error
    partial = metrics(cut)
    assert partial["status"] == "device_lost" and partial["measured"] == 10
    assert partial["pending_samples"] == n - 10 and partial["failed_samples"] == []
    assert sorted(_log_counts(log)) == list(range(10))

    # Run 2: `aqedge measure --resume` boots a fresh QEMU and measures only the rest.
    result = _cli("measure", "--board", STM32, str(stm32_build), "-n", str(n), "--resume",
                  "--no-plots", "-o", str(tmp_path / "metrics.json"), timeout=300)
    assert result.returncode == 0, result.stderr
    resumed = json.loads((tmp_path / "metrics.json").read_text())
    assert resumed["link"]["resumed_samples"] == 10
    counts = _log_counts(log)
    assert sorted(counts) == list(range(n)) and set(counts.values()) == {1}
    assert _comparable(resumed) == _comparable(full)

    # A mismatching resume is refused with a clear message.
    result = _cli("measure", "--board", STM32, str(stm32_build), "-n", str(n + 1), "--resume",
                  "-o", str(tmp_path / "metrics.json"), timeout=300)
    assert result.returncode == 2 and "belongs to another run" in result.stderr


def test_ctrl_c_leaves_a_valid_partial_metrics_json(stm32_build: Path, tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    n = 500
    proc = subprocess.Popen(
        [sys.executable, "-m", "aqedge.cli", "measure", "--board", STM32, str(stm32_build), "-n", str(n),
         "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out.with_suffix(".jsonl")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if log.is_file() and len(log.read_text().splitlines()) > 8:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr
    m = json.loads(out.read_text())
    assert all(k in m for k in CONTRACT)
    assert m["status"] == "interrupted" and m["samples"] == n
    assert 8 <= m["measured"] < n and m["measured"] + m["pending_samples"] == n
    assert m["device_matches_reference"] == 1.0 and m["failed_samples"] == []
    assert m["correct"] == round(m["accuracy"] * m["measured"])
    lat = m["latency"]
    assert lat["unit"] == "instructions" and 0 < lat["min"] <= lat["median"] <= lat["p95"] <= lat["max"]
    assert sum(map(sum, m["confusion_matrix"]["matrix"])) == m["measured"]
    counts = _log_counts(log)
    assert len(counts) >= m["measured"] and set(counts.values()) == {1}
    assert (tmp_path / "report.md").read_text().count("Partial run") == 1
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_two_boards_measured_concurrently_into_one_report(int8_model: Path, stm32_build: Path,
                                                           tmp_path: Path) -> None:
    mps2_build = tmp_path / "fw_mps2"
    build(int8_model, resolve(MPS2)[0], mps2_build)
    out = tmp_path / "cmp" / "metrics.json"
    result = _cli("measure", "--board", STM32, "--board", MPS2, str(stm32_build), str(mps2_build),
                  "-n", "16", "--profile", "--profile-samples", "2", "-o", str(out), timeout=400)
    assert result.returncode == 0, result.stderr
    d = out.parent
    a = json.loads((d / f"metrics.{STM32}.json").read_text())
    b = json.loads((d / f"metrics.{MPS2}.json").read_text())
    for m, name in ((a, STM32), (b, MPS2)):
        assert all(k in m for k in CONTRACT) and m["board"] == name
        assert m["measured"] == 16 and m["device_matches_reference"] == 1.0
        assert m["latency"]["unit"] == "instructions"
        assert abs(m["profile"]["sum_of_ops"] / m["profile"]["whole_inference"] - 1) <= 0.02
        for png in ("latency", "profile", "confusion"):
            assert (d / f"{name}-{png}.png").stat().st_size > 10_000
    # Same model, bit-exact on both: same predictions, hence the same accuracy and confusion.
    assert a["accuracy"] == b["accuracy"] and a["confusion_matrix"] == b["confusion_matrix"]
    assert a["model_sha256"] == b["model_sha256"]
    report = (d / "report.md").read_text()
    assert "## Comparison" in report and f"| {STM32} |" in report and f"| {MPS2} |" in report
    assert "![latency by device](comparison.png)" in report and (d / "comparison.png").is_file()
    cmp = json.loads((d / "comparison.json").read_text())
    assert [x["label"] for x in cmp["devices"]] == [STM32, MPS2]
    # Both ran at once: the time spans of the two results logs overlap.
    spans = []
    for name in (STM32, MPS2):
        times = [json.loads(line)["t"] for line in (d / f"metrics.{name}.jsonl").read_text().splitlines()[1:]]
        spans.append((min(times), max(times)))
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1], spans
