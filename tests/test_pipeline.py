"""`aqedge run` redoes a stage when its input is newer than its output (make's rule)."""

import os

from aqedge.pipeline import _fresh


def test_stale_outputs_are_redone(tmp_path):
    src, out = tmp_path / "qat.keras", tmp_path / "model.tflite"
    assert not _fresh(out, src)
    out.write_text("old")
    src.write_text("new")
    os.utime(out, (1_000_000, 1_000_000))
    os.utime(src, (2_000_000, 2_000_000))
    assert not _fresh(out, src)
    os.utime(out, (3_000_000, 3_000_000))
    assert _fresh(out, src) and _fresh(out)
