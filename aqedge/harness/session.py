"""`aqedge measure`: stream samples to the board, collect outputs and ticks, check every output
against the TFLite Micro reference interpreter, and summarise as metrics.json (contract)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..boards import Board
from ..codegen.build import MODEL_COPY, BuildInfo
from ..errors import AqError
from ..flash import boot_emulated
from ..reference import TflmReference
from .link import DeviceLink, LinkError
from .samples import Samples, load_samples

Progress = Callable[[int, int], None]


@dataclass
class SampleResult:
    index: int
    output: np.ndarray
    ticks: int
    matches_reference: bool


@dataclass
class Session:
    board: Board
    info: BuildInfo
    samples: Samples
    reference_outputs: np.ndarray
    results: list[SampleResult] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    seconds: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0


def _open_port(board: Board, build_dir: Path, info: BuildInfo, port: str | None):
    if port is not None:
        return contextlib.nullcontext(port)
    if not board.emulated:
        raise AqError(f"{board.name} is a real board: flash it (aqedge flash) and pass its serial "
                      "port with --port (e.g. /dev/ttyACM0)")
    elf = build_dir / info.elf
    if not elf.is_file():
        raise AqError(f"{elf} is missing: run `aqedge build` first")

    @contextlib.contextmanager
    def booted():
        with boot_emulated(board, elf) as emulated:
            yield emulated.url
    return booted()


def run_session(board: Board, build_dir: Path, samples_source: str, count: int, seed: int = 0,
                port: str | None = None, progress: Progress | None = None,
                ready_timeout: float = 20.0) -> Session:
    """Measure `count` samples on the board (booting it in QEMU when emulated and no port)."""
    info = BuildInfo.load(build_dir)
    if info.board != board.name:
        raise AqError(f"{build_dir} was built for {info.board}, not {board.name}")
    samples = load_samples(info, samples_source, count, seed)
    reference = TflmReference((build_dir / MODEL_COPY).read_bytes())
    ref_out = np.stack([reference.run(x[None]).reshape(-1) for x in samples.inputs])
    session = Session(board, info, samples, ref_out)
    start = time.monotonic()
    with _open_port(board, build_dir, info, port) as url:
        link = DeviceLink(url)
        try:
            ready = link.connect(ready_timeout)
            if ready.model_sha256 != info.model_sha256:
                raise AqError(f"the device at {url} runs model {ready.model_sha256[:12]}, but "
                              f"{build_dir} holds {info.model_sha256[:12]}: flash this build first")
            for i, x in enumerate(samples.inputs):
                try:
                    ticks, raw = link.infer(x.tobytes())
                except LinkError:
                    session.failed.append(i)
                else:
                    out = np.frombuffer(raw, dtype=np.int8)
                    session.results.append(
                        SampleResult(i, out, ticks, bool(np.array_equal(out, ref_out[i]))))
                if progress:
                    progress(i + 1, count)
            session.bytes_sent, session.bytes_received = link.bytes_sent, link.bytes_received
        finally:
            link.close()
    session.seconds = time.monotonic() - start
    return session


def metrics(session: Session) -> dict:
    """The metrics.json contract (ARCHITECTURE.md), plus a few extras."""
    board, info, results = session.board, session.info, session.results
    measured = len(results)
    latency = [board.ticks_to_latency(r.ticks) for r in results]
    out: dict = {
        "board": board.name,
        "emulated": board.emulated,
        "model_sha256": info.model_sha256,
        "samples": len(session.samples.inputs),
        "dataset": session.samples.source,
        "correct": None,
        "accuracy": None,
        "reference_accuracy": None,
        "device_matches_reference": (sum(r.matches_reference for r in results) / measured) if measured else 0.0,
        "latency": {"unit": board.latency_unit,
                    "min": int(np.min(latency)) if latency else None,
                    "median": int(np.median(latency)) if latency else None,
                    "p95": int(np.percentile(latency, 95)) if latency else None,
                    "max": int(np.max(latency)) if latency else None},
        "clock_hz": board.clock_hz,
        "flash_bytes": info.flash_bytes,
        "ram_bytes": info.ram_bytes,
        "arena_bytes": info.arena_bytes,
        "failed_samples": list(session.failed),
        "link": {"seconds": round(session.seconds, 3), "bytes_sent": session.bytes_sent,
                 "bytes_received": session.bytes_received},
    }
    labels = session.samples.labels
    if labels is not None and measured:
        correct = sum(int(r.output.argmax() == labels[r.index]) for r in results)
        out["correct"] = correct
        out["accuracy"] = correct / measured
        measured_idx = [r.index for r in results]
        out["reference_accuracy"] = float(
            (session.reference_outputs[measured_idx].argmax(1) == labels[measured_idx]).mean())
    return out
