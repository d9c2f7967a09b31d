"""The generated C, compiled for the host, against the TFLite Micro reference interpreter."""

from __future__ import annotations

import numpy as np
import pytest

from aqedge.codegen.graph import read_tflite
from aqedge.int4 import pack_int4, unpack_int4
from aqedge.codegen.host import build_host, run_host
from aqedge.codegen.lower import lower
from aqedge.codegen.plan import plan_memory
from aqedge.errors import AqError
from aqedge.reference import TflmReference

from conftest import MLPERF_TINY, int4_variant, quantize_input


def _reference(path, inputs):
    ref = TflmReference(path.read_bytes())
    return np.stack([ref.run(x[None]).reshape(-1) for x in inputs])


def test_example_cnn_bit_exact_on_host(int8_model, fashion_test, tmp_path):
    graph, plan, runner = build_host(int8_model, tmp_path)
    inp = graph.tensors[graph.inputs[0]]
    x = quantize_input(fashion_test[0][:300], inp.single_scale(), inp.single_zero_point())
    ours = run_host(runner, x, graph.tensors[graph.outputs[0]].nbytes)
    assert np.array_equal(ours, _reference(int8_model, x))
    assert (ours.argmax(1) == fashion_test[1][:300]).mean() > 0.6


def test_kws_dscnn_bit_exact_on_host(tmp_path):
    """A model nobody here wrote (MLPerf Tiny DS-CNN: depthwise, 10x4 conv, avg pool)."""
    path = MLPERF_TINY / "kws_dscnn_int8.tflite"
    graph, plan, runner = build_host(path, tmp_path)
    inp = graph.tensors[graph.inputs[0]]
    x = np.random.default_rng(1).integers(-128, 128, (200, *inp.shape[1:]), dtype=np.int8)
    ours = run_host(runner, x, graph.tensors[graph.outputs[0]].nbytes)
    assert np.array_equal(ours, _reference(path, x))
    assert plan.arena_bytes <= 22772  # TFLite Micro's arena for this model


@pytest.mark.parametrize("model", ["odd", "example", "kws_dscnn_int8.tflite"])
def test_int4_weights_bit_exact_on_host(model, odd_model, int8_model, tmp_path):
    """Packed INT4 weights (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED), odd counts included."""
    source = {"odd": odd_model, "example": int8_model}.get(model, MLPERF_TINY / model)
    path = tmp_path / "int4.tflite"
    path.write_bytes(int4_variant(source.read_bytes()))
    graph, plan, runner = build_host(path, tmp_path / "c")
    weights = [graph.tensors[op.inputs[1]] for op in graph.ops
               if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    assert weights and all(w.dtype == "int4" for w in weights)
    if model == "odd":
        assert all(w.size % 2 for w in weights)
    model_c = (tmp_path / "c" / "model.c").read_text()
    assert "_s4(" in model_c and "aq_conv_s8(" not in model_c
    inp = graph.tensors[graph.inputs[0]]
    x = np.random.default_rng(4).integers(-128, 128, (100, *inp.shape[1:]), dtype=np.int8)
    ours = run_host(runner, x, graph.tensors[graph.outputs[0]].nbytes)
    assert np.array_equal(ours, _reference(path, x))


def test_memory_plan_never_overlaps_live_tensors(int8_model):
    graph = read_tflite(int8_model)
    calls = lower(graph, "m")
    plan = plan_memory(graph, calls)
    for a in plan.buffers:
        for b in plan.buffers:
            if a is b or a.last < b.first or b.last < a.first:
                continue
            oa, ob = plan.offsets[a.tensors[0]], plan.offsets[b.tensors[0]]
            assert oa + a.size <= ob or ob + b.size <= oa, (a, b)
    assert plan.arena_bytes >= max(b.size for b in plan.buffers)
    reshape = next(c for c in calls if c.op.opcode == "RESHAPE")
    assert plan.offsets[reshape.op.inputs[0]] == plan.offsets[reshape.op.outputs[0]]


def test_resnet8_bit_exact_on_host(tmp_path):
    """MLPerf Tiny ResNet-8: residual ADDs, strided convs, average pooling."""
    path = MLPERF_TINY / "ic_resnet8_int8.tflite"
    graph, plan, runner = build_host(path, tmp_path)
    inp = graph.tensors[graph.inputs[0]]
    x = np.random.default_rng(2).integers(-128, 128, (200, *inp.shape[1:]), dtype=np.int8)
    ours = run_host(runner, x, graph.tensors[graph.outputs[0]].nbytes)
    assert np.array_equal(ours, _reference(path, x))
    assert plan.arena_bytes <= 54996  # TFLite Micro's arena for this model


def test_unsupported_ops_are_listed_with_index_and_types(unsupported_model):
    with pytest.raises(AqError) as err:
        lower(read_tflite(unsupported_model), unsupported_model.name)
    message = str(err.value)
    assert "2 op(s)" in message
    assert "op 1 LEAKY_RELU" in message and "op 3 LEAKY_RELU" in message
    assert "inputs (int8) -> outputs (int8)" in message


def test_float_model_is_refused(float_model):
    with pytest.raises(AqError, match="float model"):
        lower(read_tflite(float_model), float_model.name)


def test_garbage_is_not_a_tflite(tmp_path):
    path = tmp_path / "random.tflite"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(AqError, match="not a TFLite flatbuffer"):
        read_tflite(path)
    with pytest.raises(AqError, match="not found"):
        read_tflite(tmp_path / "missing.tflite")


def test_unpack_int4_odd_count():
    # values 1, -1, 7, -8, 3 -> bytes (low nibble first): 0xF1, 0x87, 0x03
    packed = np.array([0xF1, 0x87, 0x03], dtype=np.uint8)
    assert unpack_int4(packed, 5).tolist() == [1, -1, 7, -8, 3]
    assert pack_int4([1, -1, 7, -8, 3]) == packed.tobytes()
    values = np.random.default_rng(0).integers(-8, 8, 101)
    assert np.array_equal(unpack_int4(pack_int4(values), 101), values)
