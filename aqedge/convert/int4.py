"""QAT model → `.tflite` with packed INT4 weights and int8 activations; `inspect_tflite`.

`convert_qat` switches every quantizer of a batch-1 copy of the QAT model to its export graph
(plain fake-quant ops, see `aqedge.qat.quantizers`) and runs the standard TFLite converter, which
emits `TensorType.INT4` (17) filters for CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED and int8
activations whose scale / zero point are the learned `s` / `−β/s`. The result is checked: no float
tensor may remain, and every weight of 4 bits or fewer must have come out as INT4.

INT4 layout (aqedge/int4.py): two values per byte, element 2i in the low nibble, 2i+1
in the high nibble, two's complement; an odd count ends in a low nibble (`pack_int4`).

A QAT model made from a float model with leading Rescaling / Normalization layers starts with an
`InputTransform` T: the export graph leaves it out (the int8 input is the quantization of T(x)),
the representative data is mapped through T, and T is stored as `.tflite` metadata
(`aqedge.preprocess`).
"""

from __future__ import annotations

import numpy as np

from ..errors import AqError

INT4 = 17
_WEIGHT_OPS = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1}


# -- INT4 packing: the shared implementation (aqedge/int4.py), re-exported here ----------------
from ..int4 import pack_int4, unpack_int4  # noqa: E402


# -- conversion -------------------------------------------------------------------------------
def _export_copy(qat_model):
    """A batch-1 copy of `qat_model` (`aqedge.train.export_copy`) whose quantizers use the
    export graph (and whose `InputTransform`, if any, is the identity)."""
    from ..qat.layers import InputTransform, iter_quantizers
    from ..train import export_copy

    if len(qat_model.inputs) != 1:
        raise AqError(f"model '{qat_model.name}' has {len(qat_model.inputs)} inputs; "
                      "convert_qat supports one")
    model = export_copy(qat_model)
    quantizers = list(iter_quantizers(model))
    if not quantizers:
        raise AqError(f"model '{qat_model.name}' has no quantizers: run aqedge.qat.quantize_model "
                      "(aqedge quantize) first, or use convert_int8 for a float model")
    for q in quantizers + [ly for ly in model.layers if isinstance(ly, InputTransform)]:
        q.set_export(True)
    return model


def input_transform(qat_model):
    """The `aqedge.preprocess.Affine` of `qat_model`'s `InputTransform` layer, or None."""
    from ..preprocess import Affine
    from ..qat.layers import InputTransform

    layers = [ly for ly in qat_model.layers if isinstance(ly, InputTransform)]
    return Affine.of(layers[0].scale, layers[0].offset) if layers else None


def _input_range(qat_model):
    from ..qat.layers import iter_quantizers
    from ..qat.quantizers import ActivationQuantizer

    for q in iter_quantizers(qat_model):
        if isinstance(q, ActivationQuantizer):
            s, zp, cmin, cmax = q.quant_params()
            return (cmin - zp) * s, (cmax - zp) * s
    return 0.0, 1.0


def convert_qat(qat_model, representative: np.ndarray | None = None, samples: int = 100) -> bytes:
    """Convert a QAT model (from `aqedge.qat.quantize_model`) to an INT4/int8 `.tflite`.

    Input and output are int8, the batch is fixed to 1. Every tensor's range comes from the
    learned quantizers; `representative` (float inputs) only feeds the converter's calibration
    step, which the fake-quant ranges override (random inputs in the learned input range are
    used if omitted). Raises `AqError` if a float tensor is left or a weight of 2-4 bits is not INT4.
    `representative` is raw data for a model with an `InputTransform` T (folded preprocessing):
    it is mapped through T, and T is written into the result's metadata.
    """
    from ..preprocess import write_metadata
    from .ptq import full_integer_converter

    model = _export_copy(qat_model)
    transform = input_transform(qat_model)
    shape = tuple(model.inputs[0].shape[1:])
    if representative is None:   # in the quantizer's range: already T(x)
        lo, hi = _input_range(qat_model)
        representative = np.random.default_rng(0).uniform(lo, hi, (samples, *shape))
    elif transform is not None:
        representative = transform.apply(np.asarray(representative[:samples]))

    converter = full_integer_converter(model, representative, samples)
    # TFLite Micro refuses per-channel INT4 FULLY_CONNECTED (fully_connected_common.cc)
    converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    try:
        buf = converter.convert()
    except Exception as e:   # the converter's own message names the op
        raise AqError(f"TFLite conversion of '{qat_model.name}' failed: {e}") from e
    _check(buf, qat_model)
    return bytes(buf) if transform is None else write_metadata(buf, transform)


def _check(buf: bytes, qat_model) -> None:
    from ..qat.layers import _QuantCompute

    info = inspect_tflite(buf)
    floats = [t for t in info["tensors"] if t["type"] in ("FLOAT32", "FLOAT16")]
    if floats:
        t = floats[0]
        raise AqError(f"converted '{qat_model.name}' still has {len(floats)} float tensor(s), "
                      f"e.g. '{t['name']}' (ops {t['consumers'] or t['producers']}): a layer "
                      "without an activation quantizer; please report it")
    want4 = sorted(ly.name for ly in qat_model.layers
                   if isinstance(ly, _QuantCompute) and ly.weight_bits <= 4)   # 2-4 bits: INT4
    got4 = sum(1 for op in info["ops"] if op.get("weight_type") == "INT4")
    if got4 != len(want4):
        raise AqError(f"converted '{qat_model.name}' has {got4} INT4 weight tensors, expected "
                      f"{len(want4)} ({', '.join(want4)})")


# -- inspect ----------------------------------------------------------------------------------
_BITS = {"INT4": 4, "INT8": 8, "UINT8": 8, "INT16": 16, "INT32": 32, "INT64": 64,
         "FLOAT16": 16, "FLOAT32": 32, "BOOL": 8}


def _tensor_entry(t) -> dict:
    kind = t.dtype.upper()
    stored = len(t.packed) if t.packed is not None else int(t.data.nbytes) if t.is_constant else 0
    entry = dict(index=t.index, name=t.name, type=kind, bits=_BITS.get(kind), shape=list(t.shape),
                 constant=stored > 0, bytes=stored, producers=[], consumers=[])
    if t.scale is not None:
        entry["scale"] = [float(v) for v in t.scale]
        entry["zero_point"] = [int(v) for v in t.zero_point]
        entry["quantized_dimension"] = int(t.quantized_dimension)
    return entry


def inspect_tflite(buf: bytes, arena: bool = False) -> dict:
    """Describe a `.tflite`: ops, tensors (type, bits, shape, quantization), weight bytes.

    Returns `{"ops": [...], "tensors": [...], "inputs", "outputs", "weight_bytes",
    "int4_weight_bytes", "int8_weight_bytes", "bias_bytes", "constant_bytes", "activation_bits"}`
    where `weight_bytes` counts the stored bytes of the filters and biases of CONV_2D /
    DEPTHWISE_CONV_2D / FULLY_CONNECTED (INT4 packed). `arena=True` adds `arena_bytes` as TFLite
    Micro allocates it (loads the interpreter). The model is read (and verified) by
    `aqedge.codegen.graph.read_tflite`, the one reader of `.tflite` files.
    """
    from ..codegen.graph import read_tflite

    graph = read_tflite(bytes(buf))
    tensors = [_tensor_entry(t) for t in graph.tensors]
    ops, w4, w8, bias = [], 0, 0, 0
    for op in graph.ops:
        entry = dict(index=op.index, op=op.opcode, version=op.version, inputs=op.inputs,
                     outputs=op.outputs)
        for i in op.inputs:
            if i >= 0:
                tensors[i]["consumers"].append(f"{op.opcode}#{op.index}")
        for i in op.outputs:
            tensors[i]["producers"].append(f"{op.opcode}#{op.index}")
        if op.opcode in _WEIGHT_OPS and len(op.inputs) > 1:
            w = tensors[op.inputs[1]]
            entry["weight_type"], entry["weight_bytes"] = w["type"], w["bytes"]
            w4, w8 = (w4 + w["bytes"], w8) if w["type"] == "INT4" else (w4, w8 + w["bytes"])
            if len(op.inputs) > 2 and op.inputs[2] >= 0:
                bias += tensors[op.inputs[2]]["bytes"]
        ops.append(entry)

    _activation_ranges(graph, ops, tensors)
    info = dict(ops=ops, tensors=tensors, inputs=graph.inputs, outputs=graph.outputs,
                weight_bytes=w4 + w8 + bias, int4_weight_bytes=w4, int8_weight_bytes=w8,
                bias_bytes=bias, constant_bytes=sum(t["bytes"] for t in tensors))
    if arena:
        info["arena_bytes"] = tflm_arena_bytes(buf)
    return info


_SAME_RANGE = ("MAX_POOL_2D", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "RESIZE_NEAREST_NEIGHBOR")


def _activation_ranges(graph, ops, tensors):
    """Annotate int8 activation tensors with the code range they can hold (`code_range`), its
    number of codes (`levels`: 16, 8, 4 after a 4-, 3-, 2-bit activation quantizer's clamps)
    and the bit width that range needs (`value_bits`; their storage stays int8: `bits` is 8)."""
    def const_code(i):
        data = graph.tensors[i].data
        if tensors[i]["type"] != "INT8" or data is None or data.size != 1:
            return None
        return int(data.reshape(-1)[0])

    rng = {}
    for i in graph.inputs:
        rng[i] = (-128, 127)
    for op, raw in zip(ops, graph.ops):
        if not op["outputs"]:
            continue
        o = op["outputs"][0]
        t = tensors[o]
        if t["type"] != "INT8" or "scale" not in t:
            continue
        lo, hi = -128, 127
        ins = [i for i in op["inputs"] if i >= 0]
        if op["op"] in ("MINIMUM", "MAXIMUM") and len(ins) == 2:
            c = const_code(ins[1])
            lo, hi = rng.get(ins[0], (-128, 127))
            if c is not None:
                lo, hi = (lo, min(hi, c)) if op["op"] == "MINIMUM" else (max(lo, c), hi)
        elif op["op"] in _SAME_RANGE and ins:
            lo, hi = rng.get(ins[0], (-128, 127))
        elif op["op"] == "PAD" and ins:
            lo, hi = rng.get(ins[0], (-128, 127))
            lo, hi = min(lo, t["zero_point"][0]), max(hi, t["zero_point"][0])
        elif op["op"] in ("RELU", "RELU6"):
            lo = t["zero_point"][0]
        act = int(raw.options.get("fusedActivationFunction", 0))
        if act in (1, 3):   # RELU, RELU6
            lo = max(lo, t["zero_point"][0])
        if act == 3:
            hi = min(hi, t["zero_point"][0] + int(np.floor(6.0 / t["scale"][0] + 0.5)))
        rng[o] = (lo, hi)
    for i, (lo, hi) in rng.items():
        tensors[i]["code_range"] = [lo, hi]
        tensors[i]["levels"] = hi - lo + 1
        tensors[i]["value_bits"] = max(1, int(np.ceil(np.log2(max(hi - lo + 1, 2)))))


_ARENA_SCRIPT = """
import sys
from tflite_micro import runtime
it = runtime.Interpreter.from_bytes(sys.stdin.buffer.read(), arena_size=int(sys.argv[1]))
it.print_allocations()
"""


def tflm_arena_bytes(buf: bytes, arena_size: int = 1 << 22) -> int | None:
    """Arena bytes TFLite Micro allocates for `buf` (None if it cannot load the model).

    TFLM reports it only by printing through its own C stdio, so this runs in a subprocess.
    """
    import re
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", _ARENA_SCRIPT, str(arena_size)], input=bytes(buf),
                       capture_output=True, timeout=120)
    m = re.search(rb"Arena allocation total (\d+) bytes", r.stdout + r.stderr)
    return int(m.group(1)) if m else None
