"""The generated C, compiled for the host, against the TFLite Micro reference interpreter."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from aqedge.codegen.graph import read_tflite
from aqedge.int4 import pack_int4, unpack_int4
from aqedge.codegen.host import build_host, run_host
from aqedge.codegen.lower import lower
from aqedge.codegen.plan import plan_memory
from aqedge.errors import AqError
from aqedge.reference import TflmReference

from conftest import KWS, RESNET8, int4_variant, quantize_input, tflm_arena


def _reference(path, inputs):
    ref = TflmReference(path.read_bytes())
    return np.stack([ref.run(x[None]).reshape(-1) for x in inputs])


def test_example_cnn_bit_exact_on_host(int8_model, fashion_test, tmp_path):
    graph, plan, runner = build_host(int8_model, tmp_path)
    inp = graph.tensors[graph.inputs[0]]
    x = quantize_input(fashion_test[0][:300], inp.single_scale(), inp.single_zero_point())
    ours = run_host(runner, x, graph.tensors[graph.outputs[0]].nbytes)
    assert np.array_equal(ours, _reference(int8_model, x))
    scale, zp = TflmReference(int8_model.read_bytes()).input_quantization()
    assert (np.float32(scale), zp) == (np.float32(inp.single_scale()), inp.single_zero_point())
    assert (ours.argmax(1) == fashion_test[1][:300]).mean() > 0.6


def test_kws_dscnn_bit_exact_on_host(tiny, tmp_path):
    """A model nobody here wrote (MLPerf Tiny DS-CNN: depthwise, 10x4 conv, avg pool)."""
    path = tiny[KWS]
    graph, plan, runner = build_host(path, tmp_path)
    inp = graph.tensors[graph.inputs[0]]
    x = np.random.default_rng(1).integers(-128, 128, (200, *inp.shape[1:]), dtype=np.int8)
    ours = run_host(runner, x, graph.tensors[graph.outputs[0]].nbytes)
    assert np.array_equal(ours, _reference(path, x))
    assert plan.arena_bytes <= tflm_arena(tiny, KWS)


def _int4_bit_exact_on_host(source, tmp_path, odd=False):
    """`source` with its weights rewritten as packed INT4, on the host against TFLite Micro."""
    path = tmp_path / "int4.tflite"
    path.write_bytes(int4_variant(source.read_bytes()))
    graph, plan, runner = build_host(path, tmp_path / "c")
    weights = [graph.tensors[op.inputs[1]] for op in graph.ops
               if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    assert weights and all(w.dtype == "int4" for w in weights)
    if odd:
        assert all(w.size % 2 for w in weights)
    model_c = (tmp_path / "c" / "model.c").read_text()
    assert "_s4(" in model_c and "aq_conv_s8(" not in model_c
    inp = graph.tensors[graph.inputs[0]]
    x = np.random.default_rng(4).integers(-128, 128, (100, *inp.shape[1:]), dtype=np.int8)
    ours = run_host(runner, x, graph.tensors[graph.outputs[0]].nbytes)
    assert np.array_equal(ours, _reference(path, x))


@pytest.mark.parametrize("model", ["odd", "example"])
def test_int4_weights_bit_exact_on_host(model, odd_model, int8_model, tmp_path):
    """Packed INT4 weights (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED), odd counts included."""
    _int4_bit_exact_on_host({"odd": odd_model, "example": int8_model}[model], tmp_path,
                            odd=model == "odd")


def test_int4_weights_bit_exact_on_host_kws(tiny, tmp_path):
    """The same on the MLPerf Tiny DS-CNN with its weights rewritten as INT4."""
    _int4_bit_exact_on_host(tiny[KWS], tmp_path)


def test_float_edges_bit_exact_on_host(float_interface_model, fashion_test, tmp_path):
    """QUANTIZE float32 -> int8 at the input and DEQUANTIZE int8 -> float32 at the output."""
    graph, _, runner = build_host(float_interface_model, tmp_path)
    assert [graph.ops[0].opcode, graph.ops[-1].opcode] == ["QUANTIZE", "DEQUANTIZE"]
    assert graph.tensors[graph.inputs[0]].dtype == graph.tensors[graph.outputs[0]].dtype == "float32"
    x = fashion_test[0][:100].astype(np.float32)
    x[:5] *= 40.0  # far out of range: saturates in QUANTIZE
    ours = run_host(runner, x, graph.tensors[graph.outputs[0]].nbytes, np.float32)
    ref = TflmReference(float_interface_model.read_bytes())
    assert ref.input_quantization() is None
    theirs = np.stack([ref.run(xi[None]).reshape(-1) for xi in x])
    assert theirs.dtype == np.float32
    assert ours.tobytes() == theirs.tobytes()


def _check_plan(graph, calls, plan):
    """Live buffers never overlap, except a declared in-place pair at the one call where the
    input dies and the output is born, with the output at least `lead` bytes below the input."""
    step_of = {}
    for step, call in enumerate(calls):
        for t_in, lead in call.inplace:
            step_of[(call.op.outputs[0], t_in)] = (step, lead)
    by_tensor = {t: b for b in plan.buffers for t in b.tensors}
    used = set()
    for a in plan.buffers:
        for b in plan.buffers:
            if a is b or a.last < b.first or b.last < a.first:
                continue
            oa, ob = plan.offsets[a.tensors[0]], plan.offsets[b.tensors[0]]
            if oa + a.size <= ob or ob + b.size <= oa:
                continue
            # overlapping and live together: must be a declared, valid, respected overlap
            pairs = [(o, i) for o in a.tensors for i in b.tensors if (o, i) in step_of]
            if not pairs:
                pairs = [(o, i) for o in b.tensors for i in a.tensors if (o, i) in step_of]
                a, b, oa, ob = b, a, ob, oa
            assert pairs, (a, b)
            step, lead = step_of[pairs[0]]
            assert b.last == step == a.first and b.first >= 0, (a, b, step)
            assert not set(b.tensors) & set(graph.outputs)
            assert oa <= ob - lead, (a, b, lead)
            assert plan.overlaps[(a.tensors[0], b.tensors[0])] >= lead
            used.add((a.tensors[0], b.tensors[0]))
    assert used == set(plan.overlaps)
    assert plan.arena_bytes >= max(b.size for b in plan.buffers)
    assert all(by_tensor[t] for t in plan.offsets)


def _checked_plan(path):
    """The memory plan of `path`, checked; RESHAPE aliases its input."""
    graph = read_tflite(path)
    calls = lower(graph, "m")
    plan = plan_memory(graph, calls)
    _check_plan(graph, calls, plan)
    reshape = next(c for c in calls if c.op.opcode == "RESHAPE")
    assert plan.offsets[reshape.op.inputs[0]] == plan.offsets[reshape.op.outputs[0]]
    return plan


def test_memory_plan_never_overlaps_live_tensors(int8_model):
    _checked_plan(int8_model)


@pytest.mark.parametrize("model", [RESNET8, KWS])
def test_memory_plan_never_overlaps_live_tensors_mlperf(model, tiny):
    plan = _checked_plan(tiny[model])
    assert plan.overlaps   # the MLPerf models rely on in-place convs and ADDs
    assert plan.arena_bytes <= 0.8 * tflm_arena(tiny, model)


def _conv_events(p, depthwise, cm):
    """(reads, writes) in program order as (time, input byte) / (time, output byte) for the
    portable (aq_mac_impl.h) or Cortex-M (aq_cm_conv_impl.h) loop order of a conv/depthwise."""
    events = []   # ("r", byte) / ("w", byte)

    def field(oy, ox, channels):
        out = []
        for ky in range(p["k_h"]):
            iy = oy * p["stride_h"] - p["pad_h"] + p["dil_h"] * ky
            for kx in range(p["k_w"]):
                ix = ox * p["stride_w"] - p["pad_w"] + p["dil_w"] * kx
                if 0 <= iy < p["in_h"] and 0 <= ix < p["in_w"]:
                    out += [(iy * p["in_w"] + ix) * p["in_c"] + c for c in channels]
        return out

    pixels = [(oy, ox) for oy in range(p["out_h"]) for ox in range(p["out_w"])]
    C, OC = p["in_c"], p["out_c"]
    if cm and not depthwise:   # column buffer of 4 pixels, then every channel of the 4
        for b in range(0, len(pixels), 4):
            block = range(b, min(b + 4, len(pixels)))
            for q in block:
                events += [("r", r) for r in field(*pixels[q], range(C))]
            for oc in range(OC):
                events += [("w", q * OC + oc) for q in block]
    else:                      # per pixel, per channel (group of 4 on Cortex-M): field, write
        step = 4 if cm else 1
        for q, (oy, ox) in enumerate(pixels):
            for c0 in range(0, OC, step):
                chans = range(c0, min(c0 + step, OC))
                src = chans if depthwise else range(C)
                events += [("r", r) for r in field(oy, ox, src)]
                events += [("w", q * OC + c) for c in chans]
    return events


def test_window_lead_covers_both_kernel_loop_orders():
    """window_lead against an exact simulation of every read and write of the portable and
    Cortex-M loops, with int8 and packed (two elements a byte) input and output storage: with
    the output `lead` bytes (or more) below the input, no write lands on an input byte that is
    read later."""
    from aqedge.codegen.lower import window_lead
    rng = np.random.default_rng(7)
    for case in range(60):
        depthwise = bool(case % 2)
        k_h, k_w = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        s_h, s_w = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        d_h, d_w = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        in_h, in_w, in_c = int(rng.integers(1, 7)), int(rng.integers(1, 7)), int(rng.integers(1, 9))
        out_c = in_c if depthwise else int(rng.integers(1, 9))
        pad_h, pad_w = int(rng.integers(0, k_h)), int(rng.integers(0, k_w))
        out_h = max(1, (in_h + 2 * pad_h - d_h * (k_h - 1) - 1) // s_h + 1)
        out_w = max(1, (in_w + 2 * pad_w - d_w * (k_w - 1) - 1) // s_w + 1)
        p = dict(in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h, out_w=out_w, out_c=out_c,
                 k_h=k_h, k_w=k_w, stride_h=s_h, stride_w=s_w, dil_h=d_h, dil_w=d_w,
                 pad_h=pad_h, pad_w=pad_w)
        for in_packed, out_packed, cm in itertools.product((False, True), repeat=3):
            lead = window_lead(p, in_packed, out_packed)
            events = _conv_events(p, depthwise, cm)
            later_min = 1 << 30
            for kind, element in reversed(events):
                packed = in_packed if kind == "r" else out_packed
                byte = element // 2 if packed else element
                if kind == "r":
                    later_min = min(later_min, byte)
                else:
                    assert byte - lead < later_min, (p, depthwise, cm, in_packed, out_packed, lead)


def test_resnet8_bit_exact_on_host(tiny, tmp_path):
    """MLPerf Tiny ResNet-8: residual ADDs, strided convs, average pooling."""
    path = tiny[RESNET8]
    graph, plan, runner = build_host(path, tmp_path)
    inp = graph.tensors[graph.inputs[0]]
    x = np.random.default_rng(2).integers(-128, 128, (200, *inp.shape[1:]), dtype=np.int8)
    ours = run_host(runner, x, graph.tensors[graph.outputs[0]].nbytes)
    assert np.array_equal(ours, _reference(path, x))
    assert plan.arena_bytes <= tflm_arena(tiny, RESNET8)


def test_unsupported_ops_are_listed_with_index_and_types(unsupported_model):
    with pytest.raises(AqError) as err:
        lower(read_tflite(unsupported_model), unsupported_model.name)
    message = str(err.value)
    assert "2 op(s)" in message
    assert "op 1 TANH" in message and "op 3 TANH" in message
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
