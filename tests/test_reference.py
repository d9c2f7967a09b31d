"""The oracles: TFLite Micro isolated in a child process, LiteRT when TFLite Micro cannot answer."""

from __future__ import annotations

import numpy as np
import pytest

from aqedge import reference
from aqedge.reference import LiteRtReference, OracleError, TflmReference, reference_for


def test_a_dying_interpreter_is_an_error_line_not_the_end_of_the_caller(int8_model):
    ref = TflmReference(int8_model.read_bytes())
    ref._child.kill()
    ref._child.wait()
    with pytest.raises(OracleError, match="died on SIGKILL"):
        ref.run(np.zeros((1, 28, 28, 1), np.int8))
    with pytest.raises(OracleError, match="cannot run the model"):
        TflmReference(b"\0\0\0\0TFL3" + bytes(40))


def test_litert_answers_when_tflite_micro_cannot(int8_model, monkeypatch):
    data = int8_model.read_bytes()
    xs = np.random.default_rng(0).integers(-128, 128, (4, 28, 28, 1), dtype=np.int8)
    tflm = TflmReference(data).run_many(xs)

    def refuse(model):
        raise OracleError("TFLite Micro's interpreter died on SIGABRT on this model")

    notes = []
    monkeypatch.setattr(reference, "TflmReference", refuse)
    oracle = reference_for(data, say=notes.append)
    assert isinstance(oracle, LiteRtReference) and oracle.name == "litert"
    assert "SIGABRT" in notes[0] and "LiteRT" in notes[0]
    ours = oracle.run_many(xs)
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    for x, row in zip(xs, ours):
        it.set_tensor(it.get_input_details()[0]["index"], x[None])
        it.invoke()
        np.testing.assert_array_equal(row, it.get_tensor(it.get_output_details()[0]["index"])[0])
    # LiteRT's reference SOFTMAX is not TFLite Micro's bit for bit: a code or two apart
    assert np.abs(ours.astype(int) - tflm).max() <= 2
