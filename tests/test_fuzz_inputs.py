"""Bad inputs are refused with one line (bench/fuzz_inputs.py, a few hundred of its cases), and
the verifier names what is wrong; builds are atomic and `measure` refuses a mismatched folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import fuzz_inputs as fz  # noqa: E402

from aqedge.codegen.graph import read_tflite  # noqa: E402
from aqedge.errors import AqError  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    cache = tmp_path_factory.mktemp("fuzz-models")
    return fz.base_models(cache), cache


def test_a_few_hundred_bad_inputs_are_refused_cleanly(models):
    base, cache = models
    cases = fz.make_cases(base, 300, seed=1)
    assert len(cases) >= 250 and {c.family for c in cases} == {"cli", "semantic", "mutation"}
    results = fz.run_all(cases, base, cache, workers=2, timeout=90)
    assert len(results) == len(cases)
    defects = [(r.name, r.defect, r.message[:200]) for r in results if r.defect]
    assert defects == []
    built = [r for r in results if r.built]
    assert built and all(r.tflm == "same" for r in built)   # the model cases that build match TFLM
    good = [r for r in results if r.name.startswith(("inspect a path", "build into a path"))]
    assert [r.exit for r in good] == [0, 0]                  # spaces and non-ASCII work


def _broken(base: bytes, rule: str) -> bytes:
    from aqedge.preprocess import _pack

    schema, model = fz._load(base)
    fz.RULES[rule](schema, model, np.random.default_rng(0))
    return _pack(model)


@pytest.mark.parametrize("rule, says", [
    ("activation scale 0", "scale 0.0"), ("activation scale NaN", "scale nan"),
    ("zero point out of range", "zero point"), ("per-channel scale count", "per-channel scales"),
    ("quantized dimension out of range", "quantized dimension"),
    ("buffer size differs from shape", "its buffer holds"), ("stride 0", "stride_w"),
    ("dilation 0", "dilation_h"), ("unknown padding", "padding"),
    ("depth multiplier", "depth multiplier"), ("softmax beta", "beta"),
    ("two writers", "writes too"), ("reads an unproduced tensor", "which no op writes"),
    ("cycle", "before op"), ("bias shorter than output channels", "bias"),
    ("tensor name not UTF-8", "UTF-8"), ("op input index out of range", "out of range"),
    ("filter without quantization", "no quantization parameters"),
    ("op writes a constant", "constant"), ("dynamic shape", "dynamic"),
])
def test_the_verifier_names_what_is_wrong(models, rule, says):
    base, _ = models
    with pytest.raises(AqError) as err:
        read_tflite(_broken(base["int8"], rule))
    text = str(err.value)
    assert says in text and "\n" not in text


def test_a_failed_build_keeps_the_last_good_one_and_measure_checks_the_firmware(models, tmp_path):
    from typer.testing import CliRunner

    from aqedge.cli import app
    from aqedge.codegen.build import BUILD_INFO, BuildInfo

    base, _ = models
    good, bad = tmp_path / "good.tflite", tmp_path / "bad.tflite"
    good.write_bytes(base["int8"])
    bad.write_bytes(_broken(base["int8"], "softmax output quantization"))  # verifies, cannot lower
    out = tmp_path / "out dir"
    runner = CliRunner()
    first = runner.invoke(app, ["build", "--board", "qemu-mps2-an386", "--model", str(good), "-o", str(out)])
    assert first.exit_code == 0, first.output
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    failed = runner.invoke(app, ["build", "--board", "qemu-mps2-an386", "--model", str(bad), "-o", str(out)])
    assert isinstance(failed.exception, AqError)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out dir")]   # no stage left
    info = BuildInfo.load(out)
    info.check_files(out)
    (out / "firmware.elf").write_bytes(b"\0" * 64)                 # a stranger's firmware
    with pytest.raises(AqError, match="not the firmware"):
        info.check_files(out)
    raw = json.loads((out / BUILD_INFO).read_text())
    raw["input"]["shape"] = "big"
    (out / BUILD_INFO).write_text(json.dumps(raw))
    with pytest.raises(AqError, match="damaged"):
        BuildInfo.load(out)
