"""Outputs that are whole or absent: a stage writes to a temporary sibling and renames it into
place only when it succeeded, so a failure leaves the previous good result (or nothing)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def save_atomic(write: Callable[[Path], None], path: Path) -> None:
    """`write(tmp)` then rename tmp over `path`: `path` is the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def staged_dir(final: Path, drop: tuple[str, ...] = ()) -> Iterator[Path]:
    """A temporary sibling of folder `final` to build in: a copy of `final` when it exists
    (so make rebuilds only what changed) without the files named in `drop`. When the block
    succeeds the stage replaces `final`; when it raises, the stage is removed and `final` is
    untouched."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = final.with_name(f".{final.name}.staging-{os.getpid()}")
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    if final.is_dir():
        shutil.copytree(final, stage, symlinks=True)
        for name in drop:
            (stage / name).unlink(missing_ok=True)
    else:
        stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if final.exists():
        os.replace(final, old)
    os.replace(stage, final)
    shutil.rmtree(old, ignore_errors=True)
