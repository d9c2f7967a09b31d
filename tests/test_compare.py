"""`aqedge compare`: aqedge and TensorFlow Lite Micro built from the same .tflite, measured on the
same emulated board with the same inputs, both bit-exact with the host TFLite Micro interpreter.
Needs a TFLM tree (TFLM_TREE); without one the measuring test is skipped and says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TFLM_CACHE

REPO = Path(__file__).resolve().parent.parent


def aqedge(*args: str, cwd: Path, timeout: float = 1800) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(TFLM_CACHE)}
    return subprocess.run([sys.executable, "-m", "aqedge.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _trees() -> list[Path]:
    from aqedge.codegen.tflm_lib import trees_from_env

    trees = trees_from_env()
    if not trees:
        pytest.skip("no TensorFlow Lite Micro tree: set TFLM_TREE (CI sets it)")
    return trees


def test_a_wrong_tree_is_one_line(int8_model, tmp_path):
    result = aqedge("compare", "--board", "qemu-mps2-an386", "--model", str(int8_model),
                    "--tflm-tree", str(tmp_path), cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    text = " ".join(result.stderr[result.stderr.index("error:"):].split())
    assert str(tmp_path) in text and "micro_interpreter.h" in text
    assert not (tmp_path / "build").exists()


def test_compare_on_mps2(int8_model, tmp_path):
    trees = _trees()[:1]   # one tree is enough here (CI time); tests/test_tflm_build.py runs each
    out = tmp_path / "cmp"
    result = aqedge("compare", "--board", "qemu-mps2-an386", "--model", str(int8_model),
                    *(a for t in trees for a in ("--tflm-tree", str(t))), "--samples", "3",
                    "-o", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads((out / "compare.json").read_text())
    (board,) = data["boards"]
    assert board["board"] == "qemu-mps2-an386" and board["unit"] == "instructions"
    runtimes = [r["runtime"] for r in board["runtimes"]]
    assert runtimes[0] == "aqedge" and len(runtimes) == 1 + len(trees)
    assert data["macs"] > 0
    for r in board["runtimes"]:
        assert r["bit_exact_samples"] == r["samples"] == 3, r   # each against host TFLite Micro
        assert r["latency"] > 0 and r["arena_bytes"] > 0 and 0 < r["code_bytes"] < r["flash_bytes"]
    for r in board["runtimes"][1:]:
        assert r["aqedge_ratio"]["latency"] == pytest.approx(
            board["runtimes"][0]["latency"] / r["latency"], rel=1e-2)
    assert "x aqedge latency" in (out / "compare.md").read_text()
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
