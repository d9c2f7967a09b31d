"""`aqedge measure`: stream samples to the board, collect outputs and ticks, check every output
against the TFLite Micro reference interpreter, and summarise as metrics.json (contract).

Nothing is lost: every answer is appended to a results log (results.py) the moment it arrives,
a sample with a result is never measured again (exactly once, also across `--resume`), and a run
that ends early (Ctrl-C, the device gone) still yields valid, partial metrics. Several devices
are measured concurrently, one thread each (measure_many).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Container, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..boards import Board
from ..codegen.build import MODEL_COPY, BuildInfo
from ..datasets import DataSpec
from ..errors import AqError
from ..flash import EmulatedBoard, boot_emulated
from ..reference import reference_for
from .link import DeviceLink, LinkError
from .results import Record, ResultLog
from .samples import Samples, load_samples

Progress = Callable[[int, int], None]

#: How a run ended.
COMPLETE, INTERRUPTED, DEVICE_LOST = "complete", "interrupted", "device_lost"
#: Labels of the per-op profile, written next to model.c (aqedge.codegen.render.PROFILE_OPS).
PROFILE_OPS = "model_ops.json"


class DeviceLost(AqError):
    """The device stopped answering mid-run (process gone, port closed, no READY to a HELLO)."""


@dataclass
class SampleResult:
    index: int
    output: np.ndarray
    ticks: int
    matches_reference: bool
    #: Per-op ticks and that profiled run's whole ticks (profiled samples only).
    op_ticks: list[int] | None = None
    profile_ticks: int | None = None


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
    #: COMPLETE, INTERRUPTED (Ctrl-C / stop) or DEVICE_LOST; `error` says what happened.
    status: str = COMPLETE
    error: str | None = None
    label: str = ""
    #: Results taken over from the log of an earlier run (--resume).
    resumed: int = 0
    retried_requests: int = 0
    bad_frames: int = 0
    #: Labels of the profiled ops ({"op", "opcode", "kernel"}), when profiled.
    profile_ops: list[dict] | None = None
    results_path: Path | None = None
    #: The oracle the outputs were checked against: "tflite-micro", or "litert" when TFLite
    #: Micro refused the model or died on it (`reference_note` says why).
    reference: str = "tflite-micro"
    reference_note: str | None = None


# ---- the measuring loop ---------------------------------------------------------------------


def _measure_one(link: DeviceLink, index: int, data: bytes, profiled: bool) -> Record:
    ticks, out = link.infer(data)
    if not profiled:
        return Record(index, ticks, out)
    pticks, ops, pout = link.profile(data)
    if pout != out:
        raise LinkError(f"{link.url}: sample {index}: the profiled run's output differs from the plain run's")
    return Record(index, ticks, out, ops, pticks)


def _recover(link: DeviceLink, alive: Callable[[], bool] | None, after: Exception, timeout: float) -> None:
    """After a request failed all its attempts: is the device still there? Raise DeviceLost if not."""
    if alive is not None and not alive():
        raise DeviceLost(f"{link.url}: the device is gone ({after})")
    try:
        link.connect(ready_timeout=timeout)
    except AqError as exc:
        raise DeviceLost(f"{link.url}: the device stopped answering ({after}; then {exc})") from exc


def measure_samples(
    link: DeviceLink,
    inputs: Sequence[bytes],
    results: dict[int, Record],
    log: ResultLog | None = None,
    *,
    failed: dict[int, str] | None = None,
    profile_indices: Container[int] = (),
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    alive: Callable[[], bool] | None = None,
    recover_timeout: float = 5.0,
) -> str:
    """Measure every sample of `inputs` that has no entry in `results` yet, in index order.

    Each answer goes to `log` (if any) and into `results` as it arrives. A sample whose request
    fails all its attempts is retried once after checking the device answers a HELLO; if it
    fails again it lands in `failed` (and the log) and the run goes on.

    Returns:
        COMPLETE, or INTERRUPTED when `stop` was set or Ctrl-C was pressed (KeyboardInterrupt
        is absorbed: what was measured stays measured).

    Raises:
        DeviceLost: the device stopped answering (the results so far are kept).
    """
    failed = {} if failed is None else failed
    total = len(inputs)
    if progress:
        progress(len(results), total)  # where a resumed run starts
    try:
        for i in range(total):
            if i in results:
                continue
            if stop is not None and stop.is_set():
                return INTERRUPTED
            data = bytes(inputs[i])
            try:
                record = _measure_one(link, i, data, i in profile_indices)
            except LinkError as exc:
                _recover(link, alive, exc, recover_timeout)
                try:
                    record = _measure_one(link, i, data, i in profile_indices)
                except LinkError as exc2:
                    failed[i] = str(exc2)
                    if log is not None:
                        log.append_failure(i, str(exc2))
                    record = None
            if record is not None:
                if log is not None:
                    log.append(record)
                results[i] = record
                failed.pop(i, None)
            if progress:
                progress(len(results) + len(failed), total)
    except KeyboardInterrupt:
        return INTERRUPTED
    return COMPLETE


# ---- a session on one board -----------------------------------------------------------------


@contextlib.contextmanager
def _device(board: Board, build_dir: Path, info: BuildInfo, port: str | None) -> Iterator[tuple[str, EmulatedBoard | None]]:
    if port is not None:
        yield port, None
        return
    if not board.emulated:
        from ..flash import find_serial_port

        # A real board: its ST-LINK's virtual COM port, found by USB VID:PID (error if none).
        yield find_serial_port(board), None
        return
    elf = build_dir / info.elf
    if not elf.is_file():
        raise AqError(f"{elf} is missing: run `aqedge build` first")
    with boot_emulated(board, elf) as emulated:
        yield emulated.url, emulated


def _profile_labels(build_dir: Path, n: int) -> list[dict]:
    import json

    path = build_dir / PROFILE_OPS
    labels: list[dict] = json.loads(path.read_text()) if path.is_file() else []
    labels = labels[:n]
    for k in range(len(labels), n):
        labels.append({"op": k, "opcode": f"op {k}", "kernel": None})
    return labels


def run_session(board: Board, build_dir: Path, samples_source: str | DataSpec | Samples,
                count: int | None,
                seed: int = 0,
                port: str | None = None, progress: Progress | None = None,
                ready_timeout: float = 20.0, *, results_path: Path | None = None,
                resume: bool = False, profile: bool = False, profile_samples: int = 10,
                stop: threading.Event | None = None, label: str = "",
                link_options: dict | None = None) -> Session:
    """Measure `count` samples on the board (booting it in QEMU when emulated and no port).

    `samples_source` is a data spec (`aqedge.datasets.DataSpec`, or its string) or "random";
    `count` None measures a user's whole test set, or 100 built-in / random samples.

    Args:
        results_path: the JSONL results log (None: keep results in memory only).
        resume: take over the results in `results_path` and measure only the rest.
        profile: also time each op (PROFILE) on the first `profile_samples` samples.
        stop: set it to end the run after the current sample (status INTERRUPTED).

    The returned Session's `status` says whether the run completed; an interrupted run or a
    lost device still returns everything measured so far.

    Raises:
        AqError: bad build directory or options, or the device never answered READY / runs
            another model.
    """
    build_dir = Path(build_dir)
    info = BuildInfo.load(build_dir)
    if info.board != board.name:
        raise AqError(f"{build_dir} was built for {info.board}, not {board.name}")
    samples = load_samples(info, samples_source, count, seed)
    count = len(samples.inputs)
    n_profile = min(count, max(0, profile_samples)) if profile else 0
    log = None
    if results_path is not None:
        # What fixes the samples and their answers (not --profile: a resume may add or drop it).
        header = {"board": board.name, "model_sha256": info.model_sha256, "dataset": samples.source,
                  "seed": seed, "samples": count}
        log = ResultLog(results_path, header, resume=resume)
    elif resume:
        raise AqError("--resume needs a results log to resume from")
    notes: list[str] = []
    reference = reference_for((build_dir / MODEL_COPY).read_bytes(), say=notes.append)
    ref_out = np.stack([reference.run(x[None]).reshape(-1) for x in samples.inputs])
    session = Session(board, info, samples, ref_out, label=label or board.name, results_path=results_path,
                      reference=reference.name, reference_note=notes[0] if notes else None)
    records: dict[int, Record] = dict(log.loaded.results) if log else {}
    session.resumed = len(records)
    failed: dict[int, str] = {}
    inputs = [x.tobytes() for x in samples.inputs]
    start = time.monotonic()
    try:
        if len(records) >= count and progress:
            progress(len(records), count)  # a finished run resumed: nothing left to measure
        if len(records) < count:
            with _device(board, build_dir, info, port) as (url, emulated):
                link = DeviceLink(url, **(link_options or {}))
                try:
                    ready = link.connect(ready_timeout)
                    if ready.model_sha256 != info.model_sha256:
                        raise AqError(f"the device at {url} runs model {ready.model_sha256[:12]}, but "
                                      f"{build_dir} holds {info.model_sha256[:12]}: flash this build first")
                    if n_profile and not ready.can_profile:
                        raise AqError(f"the firmware at {url} does not report per-op ticks: rebuild "
                                      f"{build_dir} with this aqedge (`aqedge build`) to use --profile")
                    alive = (lambda: emulated.process.poll() is None) if emulated else None
                    try:
                        session.status = measure_samples(
                            link, inputs, records, log, failed=failed,
                            profile_indices=range(n_profile), progress=progress, stop=stop, alive=alive)
                    except DeviceLost as exc:
                        if stop is not None and stop.is_set():
                            session.status = INTERRUPTED  # Ctrl-C in a terminal stops QEMU too
                        else:
                            session.status, session.error = DEVICE_LOST, str(exc)
                finally:
                    session.bytes_sent, session.bytes_received = link.bytes_sent, link.bytes_received
                    session.retried_requests, session.bad_frames = link.retried_requests, link.bad_frames
                    link.close()
    finally:
        if log is not None:
            log.close()
    session.seconds = time.monotonic() - start
    for i in sorted(records):
        r = records[i]
        out = np.frombuffer(r.output, dtype=info.output.numpy_dtype)  # int8, or a float32 edge
        session.results.append(SampleResult(i, out, r.ticks, out.tobytes() == ref_out[i].tobytes(),
                                            r.op_ticks, r.profile_ticks))
    session.failed = sorted(failed)
    if n_profile:
        n_ops = max((len(r.op_ticks) for r in records.values() if r.op_ticks), default=0)
        session.profile_ops = _profile_labels(build_dir, n_ops)
    return session


# ---- several boards at once -----------------------------------------------------------------


@dataclass
class Target:
    """One device of a (possibly multi-device) run."""

    board: Board
    build_dir: Path
    port: str | None = None
    label: str = ""
    results_path: Path | None = None
    samples: Samples | None = None   # loaded beforehand (else from measure_many's source)


def measure_many(targets: list[Target], samples_source: str | DataSpec, count: int | None,
                 seed: int = 0, *,
                 resume: bool = False, profile: bool = False, profile_samples: int = 10,
                 ready_timeout: float = 20.0,
                 progress: Callable[[int, int, int], None] | None = None,
                 stop: threading.Event | None = None) -> list[Session | BaseException]:
    """Measure several devices concurrently (one thread each), the same samples on each.

    Ctrl-C in the calling thread stops every device after its current sample. Returns, per
    target in order, its Session or the exception that ended it before it measured anything.
    """
    stop = stop or threading.Event()
    out: list[Session | BaseException | None] = [None] * len(targets)
    # Completion is signalled with Events, not Thread.join: before Python 3.13 a join
    # interrupted by Ctrl-C can leave the thread looking finished while it still runs.
    finished = [threading.Event() for _ in targets]

    def work(k: int, t: Target) -> None:
        try:
            out[k] = run_session(
                t.board, t.build_dir, t.samples or samples_source, count, seed, t.port,
                progress=(lambda done, total: progress(k, done, total)) if progress else None,
                ready_timeout=ready_timeout, results_path=t.results_path, resume=resume,
                profile=profile, profile_samples=profile_samples, stop=stop, label=t.label)
        except BaseException as exc:  # noqa: BLE001  (reported to the caller)
            out[k] = exc
        finally:
            finished[k].set()

    threads = [threading.Thread(target=work, args=(k, t), name=f"measure-{t.label}", daemon=True)
               for k, t in enumerate(targets)]
    for th in threads:
        th.start()
    try:
        while not all(f.is_set() for f in finished):
            next(f for f in finished if not f.is_set()).wait(0.1)
    except KeyboardInterrupt:
        stop.set()
        while not all(f.is_set() for f in finished):
            try:
                next(f for f in finished if not f.is_set()).wait(0.1)
            except KeyboardInterrupt:
                continue  # a second Ctrl-C: still let every device finish its sample
    results: list[Session | BaseException] = []
    for r in out:
        results.append(r if r is not None else AqError("the measuring thread ended without a result"))
    return results


# ---- metrics --------------------------------------------------------------------------------


def _stats(values: list[int]) -> dict:
    return {"min": int(np.min(values)) if values else None,
            "median": int(np.median(values)) if values else None,
            "p95": int(np.percentile(values, 95)) if values else None,
            "max": int(np.max(values)) if values else None}


def latencies(session: Session) -> list[int]:
    """Per measured sample, its latency in the board's unit (instructions on QEMU, else cycles)."""
    return [session.board.ticks_to_latency(r.ticks) for r in session.results]


def profile_summary(session: Session) -> dict | None:
    """Per-op latency (median over the profiled samples, board unit) and how the ops add up."""
    profiled = [r for r in session.results if r.op_ticks]
    if not profiled or not session.profile_ops:
        return None
    board = session.board
    n_ops = len(session.profile_ops)
    per_op = np.array([r.op_ticks + [0] * (n_ops - len(r.op_ticks)) for r in profiled], dtype=np.int64)
    # Sum of the ops of one profiled run / that sample's plain (unprofiled) inference.
    coverage = [sum(r.op_ticks) / r.ticks for r in profiled if r.ticks]
    medians = [board.ticks_to_latency(int(v)) for v in np.median(per_op, axis=0)]
    whole = board.ticks_to_latency(int(np.median([r.ticks for r in profiled])))
    total = sum(medians) or 1
    ops = [{**label, "latency": m, "share": round(m / total, 4)}
           for label, m in zip(session.profile_ops, medians)]
    return {"unit": board.latency_unit, "samples": len(profiled), "ops": ops,
            "sum_of_ops": int(sum(medians)), "whole_inference": whole,
            "sum_over_whole": {"min": round(min(coverage), 5), "max": round(max(coverage), 5)}}


def confusion_matrix(session: Session) -> dict | None:
    labels = session.samples.labels
    if labels is None or not session.results:
        return None
    n = max(int(session.reference_outputs.shape[1]), int(labels.max()) + 1)
    m = np.zeros((n, n), dtype=np.int64)
    for r in session.results:
        m[int(labels[r.index]), int(r.output.argmax())] += 1
    names = list(session.samples.class_names or [])[:n]
    names += [str(k) for k in range(len(names), n)]
    return {"rows": "true class", "columns": "predicted class", "classes": names,
            "matrix": m.tolist()}


def metrics(session: Session) -> dict:
    """The metrics.json contract (docs/protocol.md and README), plus extras (status, link, profile, ...)."""
    board, info, results = session.board, session.info, session.results
    measured = len(results)
    lat = latencies(session)
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
        "reference": session.reference,
        "reference_note": session.reference_note,
        "latency": {"unit": board.latency_unit, **_stats(lat)},
        "clock_hz": board.clock_hz,
        "flash_bytes": info.flash_bytes,
        "ram_bytes": info.ram_bytes,
        "arena_bytes": info.arena_bytes,
        "failed_samples": list(session.failed),
    }
    pending = len(session.samples.inputs) - measured - len(session.failed)
    out["status"] = session.status if pending == 0 or session.status != COMPLETE else INTERRUPTED
    out["measured"] = measured
    out["pending_samples"] = pending
    if session.error:
        out["error"] = session.error
    # Throughput of this run's traffic (None when it measured nothing new, e.g. a finished resume).
    new = measured - session.resumed
    rated = session.seconds > 0 and new > 0
    secs = session.seconds if rated else 1.0
    out["link"] = {"seconds": round(session.seconds, 3), "bytes_sent": session.bytes_sent,
                   "bytes_received": session.bytes_received,
                   "sent_bytes_per_s": round(session.bytes_sent / secs, 1) if rated else None,
                   "received_bytes_per_s": round(session.bytes_received / secs, 1) if rated else None,
                   "samples_per_s": round(new / secs, 2) if rated else None,
                   "retried_requests": session.retried_requests, "bad_frames": session.bad_frames,
                   "resumed_samples": session.resumed}
    labels = session.samples.labels
    if labels is not None and measured:
        correct = sum(int(r.output.argmax() == labels[r.index]) for r in results)
        out["correct"] = correct
        out["accuracy"] = correct / measured
        measured_idx = [r.index for r in results]
        out["reference_accuracy"] = float(
            (session.reference_outputs[measured_idx].argmax(1) == labels[measured_idx]).mean())
        out["confusion_matrix"] = confusion_matrix(session)
    prof = profile_summary(session)
    if prof is not None:
        out["profile"] = prof
    return out


__all__ = ["COMPLETE", "DEVICE_LOST", "INTERRUPTED", "DeviceLost", "Session", "SampleResult",
           "Target", "measure_many", "measure_samples", "metrics", "run_session"]
