"""Compile a generated model with the host gcc and run it: the C runtime, checked on the host."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..errors import AqError
from ..resources import data_dir


_FLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"]


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aqedge"


def kernel_library(cc: str) -> Path:
    """The portable kernels compiled once into a static library, cached by the hash of the
    compiler, flags and kernel sources (a model build then compiles only its own two files)."""
    fw = data_dir("firmware")
    sources = sorted((fw / "kernels").glob("*.c"))
    digest = hashlib.sha256(" ".join([cc, *_FLAGS]).encode())
    for f in sources + sorted((fw / "kernels").glob("*.h")) + sorted((fw / "include").glob("*.h")):
        digest.update(f.name.encode() + f.read_bytes())
    lib = _cache_root() / "host-kernels" / digest.hexdigest()[:20] / "libaqkernels.a"
    if lib.is_file():
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
        objects = []
        for src in sources:
            obj = Path(tmp) / f"{src.stem}.o"
            _run([cc, *_FLAGS, f"-I{fw / 'include'}", "-c", str(src), "-o", str(obj)], src.name)
            objects.append(str(obj))
        _run(["ar", "rcs", str(Path(tmp) / lib.name), *objects], "the kernel library")
        os.replace(Path(tmp) / lib.name, lib)
    return lib


def _run(cmd: list[str], what: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise AqError(f"host build of {what} failed:\n{result.stderr[-2000:]}")


def compile_host(model_dir: Path, out: Path | None = None) -> Path:
    """Build `aq_host_runner` from model_dir's model.c/model_data.c and the portable kernels."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise AqError("no host C compiler (gcc) found: apt-get install gcc")
    fw = data_dir("firmware")
    out = out or model_dir / "aq_host_runner"
    sources = [model_dir / "model.c", model_dir / "model_data.c", fw / "host" / "aq_host_main.c"]
    _run([cc, *_FLAGS, f"-I{fw / 'include'}", f"-I{model_dir}", "-o", str(out), *map(str, sources),
          str(kernel_library(cc)), "-lm"], str(model_dir))
    return out


def run_host(runner: Path, inputs: np.ndarray, output_bytes: int,
             output_dtype: type = np.int8) -> np.ndarray:
    """Run N inputs (N, ...) through the host runner (int8, or float32 for a model with a float
    input); returns (N, output_bytes / itemsize) of `output_dtype`."""
    inputs = np.ascontiguousarray(inputs)
    n = inputs.shape[0]
    result = subprocess.run([str(runner), str(n)], input=inputs.tobytes(), capture_output=True)
    if result.returncode != 0:
        raise RuntimeError(f"{runner} failed: {result.stderr.decode(errors='replace')}")
    return np.frombuffer(result.stdout, dtype=output_dtype).reshape(n, -1)


def build_host(model_path: Path, out_dir: Path, activation_storage: str = "int8"):
    """Generate the C of a .tflite into out_dir and compile it for the host, activations
    stored as `activation_storage` says ("packed" or "int8"; codegen/storage.py).

    Returns (graph, memory plan, runner executable).
    """
    from .graph import read_tflite
    from .render import render_model
    from .storage import lower_model

    graph = read_tflite(model_path)
    model = lower_model(graph, str(model_path), activation_storage)
    calls, plan = model.calls, model.plan
    render_model(graph, calls, plan, model_path.name,
                 hashlib.sha256(model_path.read_bytes()).hexdigest(), out_dir)
    return graph, plan, compile_host(out_dir)
