"""The results log of a measuring run: one JSON line per sample, appended as results arrive.

The first line is a header naming the run (board, model hash, dataset, seed, sample count); each
further line is one sample's record::

    {"i": 17, "ticks": 889021, "out": "f3a0..."}                  measured
    {"i": 17, "ticks": 889021, "out": "f3a0...", "ops": [..], "pticks": 889301}   ... and profiled
    {"i": 18, "failed": "no answer within 0.4 s; ..."}            not measured (retried on resume)

(each record also carries "t", the Unix time it was written).

Each record is written with a single write() on an unbuffered file, so a killed process leaves
at most one truncated last line; loading drops it (and truncates the file there) so appends
stay valid. A sample that has a result is never measured again: on resume the log's results are
kept and only the rest is measured. Duplicate results for one index (which the harness never
writes) would be counted and ignored.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import AqError

FORMAT = 1


@dataclass
class Record:
    """One measured sample as the device answered it."""

    index: int
    ticks: int
    output: bytes
    #: Ticks of each op from a PROFILE request (None: not profiled), and that run's whole ticks.
    op_ticks: list[int] | None = None
    profile_ticks: int | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"i": self.index, "ticks": self.ticks, "out": self.output.hex()}
        if self.op_ticks is not None:
            d["ops"] = self.op_ticks
            d["pticks"] = self.profile_ticks
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Record:
        return cls(int(d["i"]), int(d["ticks"]), bytes.fromhex(d["out"]),
                   d.get("ops"), d.get("pticks"))


@dataclass
class LoadedLog:
    results: dict[int, Record] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    duplicates: int = 0
    truncated_tail: bool = False


class ResultLog:
    """Append-only JSONL file of one run's results (see the module docstring).

    Args:
        path: the .jsonl file.
        header: what identifies the run; on resume it must equal the file's header.
        resume: keep the results already in `path` (it must exist and match `header`);
            otherwise the file is started afresh.
    """

    def __init__(self, path: Path, header: dict[str, Any], resume: bool = False) -> None:
        self.path = Path(path)
        self.header = {"aqedge_results": FORMAT, **header}
        self.loaded = LoadedLog()
        self._file: IO[bytes] | None = None
        #: A fresh log is (re)written at its first record: a run that fails before measuring
        #: anything leaves an earlier log alone and creates no file.
        self._fresh = not resume
        if resume:
            if not self.path.is_file():
                raise AqError(f"--resume: {self.path} does not exist: nothing to resume "
                              "(run without --resume to start)")
            self.loaded = self._load()

    def _load(self) -> LoadedLog:
        data = self.path.read_bytes()
        good_end = 0
        lines: list[dict[str, Any]] = []
        truncated = False
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl < 0:
                truncated = True  # a last line cut short when the writer died
                break
            try:
                lines.append(json.loads(data[pos:nl]))
            except json.JSONDecodeError:
                truncated = True
                break
            pos = good_end = nl + 1
        if truncated:
            with open(self.path, "r+b") as f:
                f.truncate(good_end)
        if not lines or lines[0].get("aqedge_results") != FORMAT:
            raise AqError(f"{self.path} is not an aqedge results log")
        found = lines[0]
        diff = [k for k in self.header if k != "aqedge_results" and found.get(k) != self.header[k]]
        if diff:
            what = ", ".join(f"{k}: {found.get(k)!r} in the log, {self.header[k]!r} now" for k in diff)
            raise AqError(f"--resume: {self.path} belongs to another run ({what}); "
                          "use the same options, or start afresh without --resume")
        log = LoadedLog(truncated_tail=truncated)
        for d in lines[1:]:
            i = int(d["i"])
            if "failed" in d:
                if i not in log.results:
                    log.failed[i] = str(d["failed"])
            elif i in log.results:
                log.duplicates += 1
            else:
                log.results[i] = Record.from_json(d)
                log.failed.pop(i, None)
        return log

    def _open(self) -> IO[bytes]:
        if self._file is None:
            if self._fresh:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "wb", buffering=0)
                self._file.write(_line(self.header))
                self._fresh = False
            else:
                self._file = open(self.path, "ab", buffering=0)
        return self._file

    def append(self, record: Record) -> None:
        self._write({**record.to_json(), "t": round(time.time(), 3)})

    def append_failure(self, index: int, reason: str) -> None:
        self._write({"i": index, "failed": reason, "t": round(time.time(), 3)})

    def _write(self, d: dict[str, Any]) -> None:
        f = self._open()
        f.write(_line(d))  # one write() per record: never interleaved, at most the last cut

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _line(d: dict[str, Any]) -> bytes:
    return (json.dumps(d, separators=(",", ":")) + "\n").encode()
