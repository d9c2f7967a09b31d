"""The rebuilt MLPerf Tiny models (tests/mlperf_models.py): the real files' architecture, cached
once, and op for op the real files' graphs when those are there."""

from __future__ import annotations

import numpy as np
import pytest

import mlperf_models
from aqedge.codegen.graph import read_tflite
from aqedge.reference import TflmReference

from conftest import KWS, MLPERF_DIR, MLPERF_MARKS, RESNET8


def _signature(path):
    """Per op: opcode, every input and output shape, the number of weight scales (per channel
    or per tensor), and its options (padding, strides, fused activation, filter size...)."""
    graph = read_tflite(path)

    def scales(op):
        weights = graph.tensors[op.inputs[1]] if len(op.inputs) > 1 and op.inputs[1] >= 0 else None
        return len(weights.scale) if weights is not None and weights.scale is not None else 0

    return [(op.opcode, [graph.tensors[i].shape for i in op.inputs if i >= 0],
             [graph.tensors[i].shape for i in op.outputs], scales(op), op.options)
            for op in graph.ops]


@pytest.mark.parametrize("model", [RESNET8, KWS])
def test_rebuilt_model_has_the_mlperf_architecture(model, rebuilt_tiny_models):
    path = rebuilt_tiny_models[model]
    data = path.read_bytes()
    assert mlperf_models.op_counts(data) == mlperf_models.EXPECTED_OPS[model]
    graph = read_tflite(data)
    inp, out = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    assert inp.dtype == out.dtype == "int8"
    assert tuple(inp.shape) == (1, *mlperf_models.INPUT_SHAPE[model])
    assert [op.opcode for op in graph.ops[-4:]] == [
        "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"]
    assert tuple(graph.tensors[graph.ops[-4].outputs[0]].shape)[1:3] == (1, 1)
    # Not a degenerate network: seeded random inputs get different top classes.
    ref = TflmReference(data)
    x = np.random.default_rng(0).integers(-128, 128, (20, *inp.shape[1:]), dtype=np.int8)
    top = {int(ref.run(xi[None]).argmax()) for xi in x}
    assert len(top) >= 3


def test_rebuilt_models_are_cached(rebuilt_tiny_models, monkeypatch):
    """A second build finds the converted files under build/test-models/ and converts nothing."""
    def convert(name):
        raise AssertionError(f"{name} converted again")

    monkeypatch.setattr(mlperf_models, "convert", convert)
    directory = next(iter(rebuilt_tiny_models.values())).parent
    assert mlperf_models.build(directory) == rebuilt_tiny_models
    key = mlperf_models.source_hash()
    assert all(p.name.endswith(f"-{key}.tflite") for p in rebuilt_tiny_models.values())
    assert not list(directory.glob("*.tmp"))


@pytest.mark.parametrize("model", [pytest.param(m, marks=MLPERF_MARKS) for m in (RESNET8, KWS)])
def test_rebuilt_model_matches_the_real_file_op_for_op(model, rebuilt_tiny_models):
    assert _signature(rebuilt_tiny_models[model]) == _signature(MLPERF_DIR / model)
