"""Bad inputs, every kind a user can give: does aqedge refuse each one cleanly?

Three families of cases, all made from a fixed seed:

* **mutation**: real `.tflite` files (an int8 and a W4A4 model the bench converts itself, and the
  MLPerf Tiny files with AQEDGE_MLPERF_TINY) with bytes flipped, truncated, zeroed ranges,
  damaged headers and damaged vtables;
* **semantic**: well-formed flatbuffers (written with the schema bindings) that break one rule
  of the verifier (aqedge/codegen/verify.py) each: bad scales and zero points, per-channel
  counts, strides, dilations, paddings, depth multipliers, softmax beta, two writers, reads of
  unproduced tensors, cycles, short biases, indices out of range, non-UTF-8 names...;
* **cli**: every verb with bad options (negative, NaN, infinite, malformed values) and bad
  paths (missing, a folder for a file, a file for a folder, unwritable, damaged files), plus
  paths with spaces and non-ASCII characters that must work.

Each model case runs `aqedge inspect`, then, if that succeeds, the build front end (verify,
lower, plan, generate C) compiled for the host, and compares its outputs on random inputs with
TFLite Micro's (run isolated: `aqedge.reference`). Cases run in worker processes so that a crash
(a signal) or a hang (the per-case timeout) is recorded, not suffered. Recorded per case: exit
code, traceback (yes/no), signal, hang, whether the error is one line naming its subject, and
for accepted models whether TFLite Micro accepts them too and computes the same.

    .venv/bin/python bench/fuzz_inputs.py [--cases 1200] [--workers 2] [--seed 0]

writes bench/results/fuzz_inputs.{json,md}. `tests/test_fuzz_inputs.py` runs a few hundred.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@dataclass
class Case:
    """One bad (or, for `expect_exit == 0`, good) input. `model` holds .tflite bytes for model
    cases; `argv` the command line of a cli case ({dir} is the case's work folder)."""

    family: str
    name: str
    model: bytes | None = None
    argv: list[str] = field(default_factory=list)
    expect_exit: int = 2
    subject: str = ""          # what the error line must name
    setup: str = ""            # files a cli case needs, made in its folder (see _setup)


@dataclass
class Result:
    family: str
    name: str
    exit: int | None
    traceback: bool = False
    signal: str | None = None
    hang: bool = False
    message: str = ""
    one_line: bool = True
    names_subject: bool = True
    built: bool = False                     # a model case the build front end accepted
    tflm: str | None = None                 # accepted model: "same", "differs", "refuses"
    seconds: float = 0.0

    @property
    def defect(self) -> str | None:
        if self.signal:
            return f"crash ({self.signal})"
        if self.hang:
            return "hang"
        if self.traceback:
            return "traceback"
        if self.built and self.tflm != "same":
            return f"built, TFLite Micro {self.tflm}"
        if not self.one_line:
            return "error on several lines"
        if not self.names_subject:
            return "error does not name its subject"
        return None


# -- base models ------------------------------------------------------------------------------
#: The cached base models' name (a new one when _keras_model changes).
BASE = "fuzz_base_v2"

def _keras_model():
    import keras
    from keras import layers as L

    keras.backend.clear_session()   # the same layer names, so the same bytes, in every process
    keras.utils.set_random_seed(0)
    x = inputs = keras.Input((12, 12, 3), batch_size=1)
    x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = L.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = L.Add()([x, L.Conv2D(8, 1)(y)])
    x = L.Concatenate()([x, L.Conv2D(4, 1, activation="relu")(x)])
    x = L.MaxPooling2D(2)(x)
    x = L.ZeroPadding2D(1)(x)
    x = L.Conv2D(12, 3, strides=2, padding="valid")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(10)(x)
    return keras.Model(inputs, L.Softmax()(x), name="fuzz_base")


def base_models(cache: Path) -> dict[str, bytes]:
    """The valid models the cases are made from (converted once, then cached)."""
    cache.mkdir(parents=True, exist_ok=True)
    paths = {"int8": cache / f"{BASE}_int8.tflite", "w4a4": cache / f"{BASE}_w4a4.tflite"}
    if not all(p.is_file() for p in paths.values()):
        from aqedge.convert import convert_int8, convert_qat
        from aqedge.qat import quantize_model

        model = _keras_model()
        rep = np.random.default_rng(0).random((32, 12, 12, 3), dtype=np.float32)
        paths["int8"].write_bytes(convert_int8(model, rep))
        paths["w4a4"].write_bytes(convert_qat(quantize_model(model, calibration_data=rep), rep))
        import keras

        model.save(cache / f"{BASE}_float.keras")
    models = {k: p.read_bytes() for k, p in paths.items()}
    tiny = os.environ.get("AQEDGE_MLPERF_TINY")
    if tiny and Path(tiny).is_dir():
        for p in sorted(Path(tiny).glob("*.tflite")):
            models[p.stem] = p.read_bytes()
    return models


# -- mutation cases ---------------------------------------------------------------------------
def _vtables(buf: bytes) -> list[int]:
    """Byte offsets of the vtables of the model's tables (root, subgraph, tensors, operators)."""
    from ai_edge_litert import schema_py_generated as schema

    found = []

    def vt(tab):
        found.append(tab.Pos - struct.unpack_from("<i", buf, tab.Pos)[0])

    m = schema.Model.GetRootAs(buf, 0)
    vt(m._tab)
    g = m.Subgraphs(0)
    vt(g._tab)
    for i in range(min(g.TensorsLength(), 20)):
        vt(g.Tensors(i)._tab)
    for i in range(g.OperatorsLength()):
        vt(g.Operators(i)._tab)
    return [v for v in found if 0 <= v < len(buf) - 4]


def mutation_cases(rng, models: dict[str, bytes], count: int) -> list[Case]:
    kinds = ["flip", "flip", "truncate", "zero", "header", "vtable", "flip-many"]
    vtables = {k: _vtables(v) for k, v in models.items()}
    cases = []
    for n in range(count):
        name = list(models)[n % len(models)]
        buf = bytearray(models[name])
        kind = kinds[int(rng.integers(len(kinds)))]
        if kind == "flip":
            at = int(rng.integers(len(buf)))
            buf[at] ^= 1 << int(rng.integers(8))
            what = f"bit flip at {at}"
        elif kind == "flip-many":
            ats = rng.integers(0, len(buf), int(rng.integers(2, 40)))
            for at in ats:
                buf[int(at)] = int(rng.integers(256))
            what = f"{len(ats)} random bytes"
        elif kind == "truncate":
            at = int(rng.integers(len(buf)))
            buf = buf[:at]
            what = f"truncated to {at}"
        elif kind == "zero":
            at, size = int(rng.integers(len(buf))), int(rng.integers(1, 256))
            buf[at:at + size] = bytes(len(buf[at:at + size]))
            what = f"{size} zero bytes at {at}"
        elif kind == "header":
            at = int(rng.integers(0, 16))
            buf[at] = int(rng.integers(256))
            what = f"header byte {at}"
        else:
            at = int(rng.choice(vtables[name])) + int(rng.integers(0, 12))
            buf[at] = int(rng.integers(256))
            what = f"vtable byte {at}"
        cases.append(Case("mutation", f"{name}: {what}", model=bytes(buf), subject="tflite"))
    return cases


# -- semantic cases ---------------------------------------------------------------------------
def _load(buf: bytes):
    from ai_edge_litert import schema_py_generated as schema

    return schema, schema.ModelT.InitFromObj(schema.Model.GetRootAs(buf, 0))


def _opname(schema, model, op) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")


def _ops_of(schema, model, *names):
    sub = model.subgraphs[0]
    return [op for op in sub.operators if _opname(schema, model, op) in names]


def _activation(model, rng) -> object:
    """A random non-constant tensor of the graph."""
    sub = model.subgraphs[0]
    live = [t for t in sub.tensors if not (model.buffers[t.buffer].data is not None
                                           and len(model.buffers[t.buffer].data))]
    return live[int(rng.integers(len(live)))]


def _filter(schema, model, rng, *names):
    ops = _ops_of(schema, model, *(names or ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")))
    op = ops[int(rng.integers(len(ops)))]
    return op, model.subgraphs[0].tensors[op.inputs[1]]


def _set_scale(value):
    def rule(s, m, rng):
        t = _activation(m, rng)
        t.quantization.scale = [value] * len(t.quantization.scale)
    return rule


def _zero_point(s, m, rng):
    _activation(m, rng).quantization.zeroPoint = [int(rng.choice([200, -300, 128, -129]))]


def _per_channel_count(s, m, rng):
    _, w = _filter(s, m, rng, "CONV_2D")
    w.quantization.scale = list(w.quantization.scale)[:-1]
    w.quantization.zeroPoint = list(w.quantization.zeroPoint)[:-1]


def _quantized_dimension(s, m, rng):
    _, w = _filter(s, m, rng, "CONV_2D", "DEPTHWISE_CONV_2D")
    w.quantization.quantizedDimension = int(rng.choice([4, 7, -1]))


def _buffer_size(s, m, rng):
    _, w = _filter(s, m, rng)
    b = m.buffers[w.buffer]
    b.data = b.data[:-int(rng.integers(1, 4))] if rng.random() < 0.5 else np.concatenate([b.data, b.data[:3]])


def _no_quantization(s, m, rng):
    _, w = _filter(s, m, rng)
    w.quantization = None


def _option(names, key, values):
    def rule(s, m, rng):
        ops = _ops_of(s, m, *names)
        op = ops[int(rng.integers(len(ops)))]
        setattr(op.builtinOptions, key, values[int(rng.integers(len(values)))])
    return rule


def _two_writers(s, m, rng):
    ops = m.subgraphs[0].operators
    k = int(rng.integers(1, len(ops)))
    ops[k].outputs = list(ops[k - 1].outputs)


def _unproduced(s, m, rng):
    sub = m.subgraphs[0]
    import copy

    op = sub.operators[int(rng.integers(1, len(sub.operators)))]
    ghost = copy.deepcopy(sub.tensors[op.inputs[0]])
    ghost.name = b"ghost"
    sub.tensors.append(ghost)
    op.inputs = [len(sub.tensors) - 1, *list(op.inputs)[1:]]


def _cycle(s, m, rng):
    ops = m.subgraphs[0].operators
    k = int(rng.integers(0, len(ops) - 1))
    ops[k].inputs = [int(ops[-1].outputs[0]), *list(ops[k].inputs)[1:]]


def _out_of_order(s, m, rng):
    ops = m.subgraphs[0].operators
    k = int(rng.integers(0, len(ops) - 1))
    ops[k], ops[k + 1] = ops[k + 1], ops[k]


def _short_bias(s, m, rng):
    sub = m.subgraphs[0]
    ops = [op for op in _ops_of(s, m, "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
           if len(op.inputs) > 2 and op.inputs[2] >= 0 and m.buffers[sub.tensors[op.inputs[2]].buffer].data is not None]
    op = ops[int(rng.integers(len(ops)))]
    b = sub.tensors[op.inputs[2]]
    b.shape = np.array([int(b.shape[0]) - 1], np.int32)
    m.buffers[b.buffer].data = m.buffers[b.buffer].data[:-4]
    q = b.quantization
    if q is not None and q.scale is not None and len(q.scale) > 1:   # keep it self-consistent
        q.scale, q.zeroPoint = list(q.scale)[:-1], list(q.zeroPoint)[:-1]


def _index(field_name, values):
    def rule(s, m, rng):
        op = m.subgraphs[0].operators[int(rng.integers(len(m.subgraphs[0].operators)))]
        v = list(getattr(op, field_name))
        v[int(rng.integers(len(v)))] = values[int(rng.integers(len(values)))]
        setattr(op, field_name, v)
    return rule


def _variable(s, m, rng):
    _activation(m, rng).isVariable = True


def _name(s, m, rng):
    _activation(m, rng).name = bytes([0xFF, 0xFE, 0x80]) + b"name"


def _opcode_index(s, m, rng):
    m.subgraphs[0].operators[int(rng.integers(len(m.subgraphs[0].operators)))].opcodeIndex = 99


def _unknown_builtin(s, m, rng):
    code = m.operatorCodes[int(rng.integers(len(m.operatorCodes)))]
    code.builtinCode = code.deprecatedBuiltinCode = 126


def _dynamic_shape(s, m, rng):
    t = _activation(m, rng)
    t.shape = np.array([-1, *list(t.shape)[1:]], np.int32)


def _buffer_index(s, m, rng):
    _filter(s, m, rng)[1].buffer = 10_000


def _model_io(field_name):
    def rule(s, m, rng):
        setattr(m.subgraphs[0], field_name, [int(rng.choice([10_000, -2]))])
    return rule


def _subgraphs(s, m, rng):
    if rng.random() < 0.5:
        m.subgraphs = []
    else:
        import copy

        m.subgraphs.append(copy.deepcopy(m.subgraphs[0]))


def _writes_constant(s, m, rng):
    op, w = _filter(s, m, rng)
    m.subgraphs[0].operators[0].outputs = [int(op.inputs[1])]


def _weight_zero_point(s, m, rng):
    _, w = _filter(s, m, rng)
    w.quantization.zeroPoint = [3] * len(w.quantization.zeroPoint)


def _wrong_output_shape(s, m, rng):
    op, _ = _filter(s, m, rng, "CONV_2D", "DEPTHWISE_CONV_2D")
    t = m.subgraphs[0].tensors[op.outputs[0]]
    t.shape = np.array([1, int(t.shape[1]) + 1, *list(t.shape)[2:]], np.int32)


def _const_of(s, m, names, position):
    op = _ops_of(s, m, *names)[0]
    t = m.subgraphs[0].tensors[op.inputs[position]]
    return t, m.buffers[t.buffer]


def _pad_amounts(s, m, rng):
    _, b = _const_of(s, m, ("PAD", "PADV2"), 1)
    v = np.frombuffer(bytes(b.data), np.int32).copy()
    v[int(rng.integers(len(v)))] = int(rng.choice([-1, -5, 1 << 20]))
    b.data = np.frombuffer(v.tobytes(), np.uint8)


def _mean_axis(s, m, rng):
    _, b = _const_of(s, m, ("MEAN",), 1)
    v = np.frombuffer(bytes(b.data), np.int32).copy()
    v[0] = int(rng.choice([4, 9, -7]))
    b.data = np.frombuffer(v.tobytes(), np.uint8)


def _concat_input_shape(s, m, rng):
    op = _ops_of(s, m, "CONCATENATION")[0]
    t = m.subgraphs[0].tensors[op.inputs[1]]
    t.shape = np.array([*list(t.shape)[:-1], int(t.shape[-1]) + 1], np.int32)


def _softmax_output(s, m, rng):
    op = _ops_of(s, m, "SOFTMAX")[0]
    m.subgraphs[0].tensors[op.outputs[0]].quantization.zeroPoint = [0]


RULES = {
    "activation scale 0": _set_scale(0.0),
    "activation scale NaN": _set_scale(float("nan")),
    "activation scale infinite": _set_scale(float("inf")),
    "activation scale negative": _set_scale(-0.05),
    "zero point out of range": _zero_point,
    "per-channel scale count": _per_channel_count,
    "quantized dimension out of range": _quantized_dimension,
    "buffer size differs from shape": _buffer_size,
    "filter without quantization": _no_quantization,
    "weight zero point not 0": _weight_zero_point,
    "stride 0": _option(("CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D"), "strideW", [0, -1]),
    "dilation 0": _option(("CONV_2D", "DEPTHWISE_CONV_2D"), "dilationHFactor", [0, -2]),
    "unknown padding": _option(("CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D"), "padding", [2, 7]),
    "pool window 0": _option(("MAX_POOL_2D",), "filterWidth", [0, -3]),
    "depth multiplier": _option(("DEPTHWISE_CONV_2D",), "depthMultiplier", [0, 2, 3, -1]),
    "softmax beta": _option(("SOFTMAX",), "beta", [0.0, -1.0, float("nan"), float("inf")]),
    "unknown fused activation": _option(("CONV_2D", "FULLY_CONNECTED", "ADD"), "fusedActivationFunction", [6, 9, 77]),
    "two writers": _two_writers,
    "reads an unproduced tensor": _unproduced,
    "cycle": _cycle,
    "ops out of order": _out_of_order,
    "bias shorter than output channels": _short_bias,
    "op input index out of range": _index("inputs", [10_000, -7]),
    "op output index out of range": _index("outputs", [10_000, -1]),
    "tensor name not UTF-8": _name,
    "variable tensor": _variable,
    "opcode index out of range": _opcode_index,
    "unknown builtin op": _unknown_builtin,
    "dynamic shape": _dynamic_shape,
    "buffer index out of range": _buffer_index,
    "model input index": _model_io("inputs"),
    "model output index": _model_io("outputs"),
    "subgraph count": _subgraphs,
    "op writes a constant": _writes_constant,
    "output shape does not fit the conv": _wrong_output_shape,
    "softmax output quantization": _softmax_output,
    "pad amounts": _pad_amounts,
    "mean axis": _mean_axis,
    "concatenation axis": _option(("CONCATENATION",), "axis", [4, 7, -9]),
    "concatenation input shape": _concat_input_shape,
}


def semantic_cases(rng, models: dict[str, bytes], per_rule: int) -> list[Case]:
    from aqedge.preprocess import _pack

    cases = []
    bases = [k for k in models if k in ("int8", "w4a4")] or list(models)
    for rule, fn in RULES.items():
        for n in range(per_rule):
            base = bases[n % len(bases)]
            schema, model = _load(models[base])
            try:
                fn(schema, model, rng)
            except (IndexError, ValueError, AttributeError, TypeError):
                continue   # the rule does not apply to this base model
            cases.append(Case("semantic", f"{base}: {rule} #{n}", model=_pack(model), subject="tflite"))
    return cases


# -- cli cases --------------------------------------------------------------------------------
_BAD_NUMBERS = ["-1", "nan", "inf", "-inf", "abc", "1e999", ""]


def cli_cases(rng) -> list[Case]:
    """Bad options and paths for every verb. {dir}: the case's folder, holding good.tflite,
    float.keras, a folder `folder`, a file `file`, garbage files and a damaged build folder."""
    c: list[Case] = []

    def add(name, argv, subject, expect=2, setup=""):
        c.append(Case("cli", name, argv=argv, subject=subject, expect_exit=expect, setup=setup))

    for opt, values in (("--epochs", ["-1", "nan", "abc", "0.5"]), ("--lr", ["inf", "-1", "0", "nan"]),
                        ("--limit", ["-5", "0", "x"]), ("--weight-bits", ["0", "9", "-1"]),
                        ("--activation-bits", ["0", "1", "17"]), ("--first-last-bits", ["0", "33"]),
                        ("--distill", ["2", "-0.5", "nan", "inf"]), ("--seed", ["-1", "x"]),
                        ("--layer-bits", ["foo", "conv=99", "=4", "conv="]), ("--rescale", ["abc", "nan", "0", "inf"])):
        for v in values:
            add(f"quantize {opt} {v!r}", ["quantize", "{dir}/float.keras", opt, v, "--data", "{dir}/data.npz",
                                          "-o", "{dir}/q.keras"], opt)
    for out, subject in (("{dir}/folder", "-o"), ("{dir}/file/x.keras", "-o"), ("/proc/aq.keras", "-o"),
                         ("{dir}/q.h5", "-o")):
        add(f"quantize -o {out}", ["quantize", "{dir}/float.keras", "--data", "{dir}/data.npz", "-o", out], subject)
    for model, subject in (("{dir}/missing.keras", "missing.keras"), ("{dir}/folder", "folder"),
                           ("{dir}/garbage.keras", "garbage.keras"), ("{dir}/empty.keras", "empty.keras"),
                           ("{dir}/good.tflite", "good.tflite")):
        add(f"quantize model {model}", ["quantize", model, "--data", "{dir}/data.npz", "-o", "{dir}/q.keras"], subject)
    for data, subject in (("{dir}/missing.npz", "missing.npz"), ("{dir}/garbage.npz", "garbage.npz"),
                          ("{dir}/folder", "folder"), ("cifar-1000", "cifar-1000"), ("{dir}/wrong.npz", "wrong.npz")):
        add(f"quantize --data {data}", ["quantize", "{dir}/float.keras", "--data", data, "-o", "{dir}/q.keras"], subject)
        add(f"convert --data {data}", ["convert", "{dir}/float.keras", "--data", data, "-o", "{dir}/m.tflite"], subject)
    for model, subject in (("{dir}/missing.keras", "missing.keras"), ("{dir}/garbage.keras", "garbage.keras"),
                           ("{dir}/notes.txt", "notes.txt"), ("{dir}/folder", "folder")):
        add(f"convert {model}", ["convert", model, "--data", "{dir}/data.npz", "-o", "{dir}/m.tflite"], subject)
    for out in ("{dir}/folder", "{dir}/file/m.tflite", "/proc/m.tflite"):
        add(f"convert -o {out}", ["convert", "{dir}/float.keras", "--data", "{dir}/data.npz", "-o", out], "-o")
    for model, subject in (("{dir}/missing.tflite", "missing.tflite"), ("{dir}/folder", "folder"),
                           ("{dir}/garbage.tflite", "garbage.tflite"), ("{dir}/empty.tflite", "empty.tflite"),
                           ("{dir}/half.tflite", "half.tflite")):
        add(f"inspect {model}", ["inspect", model], subject)
        add(f"build --model {model}", ["build", "--board", "qemu-mps2-an386", "--model", model, "-o", "{dir}/b"], subject)
    add("inspect a path with spaces and non-ASCII", ["inspect", "{dir}/dossier é/modèle 1.tflite"], "", expect=0)
    add("build into a path with spaces and non-ASCII", ["build", "--board", "qemu-mps2-an386", "--model",
        "{dir}/dossier é/modèle 1.tflite", "-o", "{dir}/dossier é/sortie 1"], "", expect=0)
    for argv, subject in ((["--board", "no-such-board"], "no-such-board"), (["--runtime", "foo"], "foo"),
                          (["--tflm-tree", "{dir}/folder"], "--tflm-tree"),
                          (["--runtime", "tflm", "--tflm-tree", "{dir}/missing"], "missing"),
                          (["--model", "{dir}/notes.txt"], "notes.txt"), (["-o", "{dir}/file"], "file"),
                          (["-o", "/proc/aqbuild"], "/proc"), (["--data", "{dir}/missing.npz"], "missing.npz")):
        base = ["build", "--board", "qemu-mps2-an386", "--model", "{dir}/good.tflite", "-o", "{dir}/b"]
        add(f"build {' '.join(argv)}", base + argv, subject)
    add("init into a file", ["init", "{dir}/file", "--model", "{dir}/good.tflite"], "file")
    add("init --model missing", ["init", "{dir}/p", "--model", "{dir}/missing.tflite"], "missing.tflite")
    add("init --board bad", ["init", "{dir}/p", "--model", "{dir}/good.tflite", "--board", "nope"], "nope")
    add("init --rescale bad", ["init", "{dir}/p", "--model", "{dir}/good.tflite", "--rescale", "x"], "--rescale")
    add("init --data missing", ["init", "{dir}/p", "--model", "{dir}/good.tflite", "--data", "{dir}/m.npz"], "m.npz")
    for d, subject in (("{dir}/missing", "missing"), ("{dir}/damaged", "build.json"), ("{dir}/file", "file"),
                       ("{dir}/otherboard", "qemu-stm32f405"), ("{dir}/nojson", "nojson")):
        add(f"flash {d}", ["flash", "--board", "qemu-mps2-an386", d], subject)
        add(f"measure {d}", ["measure", "--board", "qemu-mps2-an386", d, "-o", "{dir}/m.json"], subject)
    for opt, values in (("--timeout", ["nan", "-1", "inf", "0", "x"]), ("--samples", ["-5", "0", "x"]),
                        ("--profile-samples", ["-1", "0", "x"]), ("--seed", ["x"]),
                        ("--port", ["a", "b"])):
        for v in values:
            extra = [opt, v] + (["--port", "c"] if opt == "--port" else [])
            add(f"measure {opt} {v!r}", ["measure", "--board", "qemu-mps2-an386", "{dir}/damaged", *extra], opt)
    for out in ("{dir}/folder", "{dir}/file/m.json", "/proc/m.json"):
        add(f"measure -o {out}", ["measure", "--board", "qemu-mps2-an386", "{dir}/built", "-o", out], "-o")
    add("measure a build without firmware", ["measure", "--board", "qemu-mps2-an386", "{dir}/built"], "firmware")
    add("flash a build without firmware", ["flash", "--board", "qemu-mps2-an386", "{dir}/built", "--tool", "hammer"], "firmware")
    for opt, v in (("--samples", "0"), ("--samples", "-3"), ("--tflm-tree", "{dir}/missing"), ("--board", "nope")):
        add(f"compare {opt} {v}", ["compare", "--board", "qemu-mps2-an386", "--model", "{dir}/good.tflite",
                                   opt, v, "-o", "{dir}/c"], opt if opt != "--board" else v)
    add("compare --model missing", ["compare", "--board", "qemu-mps2-an386", "--model", "{dir}/missing.tflite",
                                    "--tflm-tree", "{dir}/folder"], "folder")
    for opt, v in (("--epochs", "-1"), ("--qat-epochs", "-2"), ("--samples", "0"), ("--board", "nope"), ("-o", "{dir}/file")):
        add(f"run {opt} {v}", ["run", opt, v], opt if opt not in ("--board", "-o") else v.split("/")[-1])
    add("unknown verb", ["frobnicate"], "frobnicate")
    add("unknown option", ["inspect", "--frob", "{dir}/good.tflite"], "--frob")
    add("boards extra argument", ["boards", "extra"], "extra")
    return c


def _setup_dir(d: Path, models: dict[str, bytes], cache: Path) -> None:
    """The files cli cases point at."""
    import shutil

    (d / "folder").mkdir(exist_ok=True)
    (d / "file").write_text("not a folder\n")
    (d / "good.tflite").write_bytes(models["int8"])
    (d / "half.tflite").write_bytes(models["int8"][: len(models["int8"]) // 2])
    (d / "garbage.tflite").write_bytes(os.urandom(300))
    (d / "garbage.keras").write_bytes(os.urandom(300))
    (d / "garbage.npz").write_bytes(os.urandom(300))
    for name in ("empty.tflite", "empty.keras"):
        (d / name).write_bytes(b"")
    (d / "notes.txt").write_text("hello\n")
    shutil.copyfile(cache / f"{BASE}_float.keras", d / "float.keras")
    rng = np.random.default_rng(0)
    np.savez(d / "data.npz", x=rng.random((16, 12, 12, 3), dtype=np.float32), y=rng.integers(0, 10, 16))
    np.savez(d / "wrong.npz", x=rng.random((16, 5, 5), dtype=np.float32), y=rng.integers(0, 10, 16))
    (d / "dossier é").mkdir(exist_ok=True)
    (d / "dossier é" / "modèle 1.tflite").write_bytes(models["int8"])
    (d / "damaged").mkdir(exist_ok=True)
    (d / "damaged" / "build.json").write_text('{"board": "qemu-mps2-an386", "model": ')
    (d / "nojson").mkdir(exist_ok=True)
    # Complete build.json files: one for another board, one whose firmware.elf is missing.
    info = {"board": "qemu-stm32f405", "model": "good.tflite", "model_sha256": "0" * 64, "ops": 1,
            "arena_bytes": 1, "flash_bytes": 1, "ram_bytes": 1,
            "input": {"shape": [1, 12, 12, 3], "scale": 0.1, "zero_point": 0},
            "output": {"shape": [1, 10], "scale": 0.00390625, "zero_point": -128}}
    for name, board in (("otherboard", "qemu-stm32f405"), ("built", "qemu-mps2-an386")):
        (d / name).mkdir(exist_ok=True)
        (d / name / "build.json").write_text(json.dumps({**info, "board": board}))


# -- running a case (in a worker process) -----------------------------------------------------
def run_cli(argv: list[str]) -> tuple[int, bool, str]:
    """`aqedge ARGV` in this process, as aqedge.cli.main runs it: (exit code, traceback?,
    what it printed on stderr)."""
    from aqedge import cli
    from aqedge.errors import AqError

    err, out = io.StringIO(), io.StringIO()
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    code, tb = 0, False
    try:
        cli.app(argv, prog_name="aqedge")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except AqError as exc:
        print(f"error: {exc}", file=err)
        code = 2
    except BaseException:   # noqa: BLE001 - what the fuzz is looking for
        traceback.print_exc(file=err)
        code, tb = 1, True
    finally:
        sys.stdout, sys.stderr = old
    return code, tb, err.getvalue()


def _compare_with_tflm(path: Path, work: Path) -> str:
    """Build the accepted model for the host and compare with TFLite Micro on random inputs."""
    from aqedge.codegen.host import build_host, run_host
    from aqedge.reference import OracleError, TflmReference

    graph, _, runner = build_host(path, work)
    inp, out = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    xs = np.random.default_rng(1).integers(-128, 128, (3, *inp.shape[1:]), dtype=np.int8)
    ours = run_host(runner, xs, out.nbytes)
    try:
        ref = TflmReference(path.read_bytes()).run_many(xs)
    except OracleError:
        return "refuses"
    return "same" if np.array_equal(ours.reshape(ref.shape), ref) else "differs"


def run_case(case: Case, work: Path) -> Result:
    from aqedge.errors import AqError

    start = time.monotonic()
    result = Result(case.family, case.name, None)
    if case.model is not None:
        path = work / "model.tflite"
        path.write_bytes(case.model)
        code, tb, message = run_cli(["inspect", str(path)])
        if code == 0:
            try:
                result.tflm = _compare_with_tflm(path, work / "host")
                result.built = True
            except AqError as exc:
                code, message = 2, f"error: {exc}"
            except Exception:   # noqa: BLE001
                code, tb, message = 1, True, traceback.format_exc()
    else:
        argv = [a.replace("{dir}", str(work)) for a in case.argv]
        code, tb, message = run_cli(argv)
    result.exit, result.traceback = code, tb
    text = message.strip()
    result.message = text[-300:] if tb else text[:200]
    if code != 0 and not tb:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        result.one_line = len(lines) == 1 or (case.family == "cli" and _click_usage(lines))
        result.names_subject = _names(text, case)
    elif code == 0 and case.expect_exit != 0 and case.model is None:
        result.names_subject = False   # accepted a bad input
    result.seconds = round(time.monotonic() - start, 2)
    return result


def _click_usage(lines: list[str]) -> bool:
    """click's own usage errors: a 'Usage:' line, a hint line, and one 'Error:' line."""
    return sum(1 for ln in lines if "Error" in ln or "error" in ln) <= 2 and lines[0].startswith("Usage")


def _names(text: str, case: Case) -> bool:
    if not case.subject:
        return True
    subject = case.subject.replace("{dir}/", "")
    if case.family != "cli":   # a model error names the file (its path ends in .tflite)
        return ".tflite" in text or "model" in text
    return subject in text or subject.lstrip("-") in text


def _worker() -> None:
    """Serve cases from stdin: (case, folder) -> Result, pickled with a length prefix."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    os.environ["COLUMNS"] = "400"
    inbox = sys.stdin.buffer
    while True:
        head = inbox.read(8)
        if len(head) < 8:
            return
        case, work = pickle.loads(inbox.read(struct.unpack("<Q", head)[0]))
        data = pickle.dumps(run_case(case, Path(work)))
        out.write(struct.pack("<Q", len(data)) + data)
        out.flush()


# -- the parent: workers, timeouts, results ---------------------------------------------------
class Worker:
    def __init__(self):
        code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                "import fuzz_inputs; fuzz_inputs._worker()")
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def send(self, case: Case, work: Path) -> None:
        data = pickle.dumps((case, str(work)))
        self.proc.stdin.write(struct.pack("<Q", len(data)) + data)
        self.proc.stdin.flush()

    def receive(self, case: Case, timeout: float) -> Result:
        import select

        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.proc.kill()
            self.proc.wait()
            return Result(case.family, case.name, None, hang=True)
        head = self.proc.stdout.read(8)
        if len(head) < 8:
            code = self.proc.wait()
            return Result(case.family, case.name, code, signal=_signal(code))
        return pickle.loads(self.proc.stdout.read(struct.unpack("<Q", head)[0]))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.alive():
            self.proc.stdin.close()
            self.proc.wait()


def _signal(code: int) -> str:
    import signal

    try:
        return signal.Signals(-code).name if code < 0 else f"exit {code} (worker lost)"
    except ValueError:
        return f"signal {-code}"


def run_all(cases: list[Case], models: dict[str, bytes], cache: Path, workers: int = 1,
            timeout: float = 120.0, progress=None) -> list[Result]:
    """Run every case in `workers` worker processes, each case in a fresh copy of the files
    cli cases use; a worker that crashes or hangs is replaced."""
    import shutil
    import threading

    results: list[Result | None] = [None] * len(cases)
    todo = list(range(len(cases)))
    lock = threading.Lock()
    root = Path(tempfile.mkdtemp(prefix="aqedge-fuzz-"))
    template = root / "template"
    template.mkdir()
    _setup_dir(template, models, cache)

    def loop(w: int) -> None:
        worker = Worker()
        while True:
            with lock:
                if not todo:
                    break
                k = todo.pop(0)
            work = root / f"w{w}"
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(template, work)
            worker.send(cases[k], work)
            results[k] = worker.receive(cases[k], timeout)
            if not worker.alive():
                worker = Worker()
            if progress:
                progress()
        worker.close()

    threads = [threading.Thread(target=loop, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    shutil.rmtree(root, ignore_errors=True)
    return [r for r in results if r is not None]


def make_cases(models: dict[str, bytes], count: int, seed: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    cli = cli_cases(rng)
    per_rule = max(1, (count // 3) // len(RULES))
    semantic = semantic_cases(rng, models, per_rule)
    mutations = mutation_cases(rng, models, max(0, count - len(cli) - len(semantic)))
    return cli + semantic + mutations


# -- report -----------------------------------------------------------------------------------
def summary(results: list[Result]) -> dict:
    families: dict[str, dict] = {}
    for r in results:
        f = families.setdefault(r.family, dict(cases=0, refused=0, accepted=0, built=0, tracebacks=0,
                                               crashes=0, hangs=0, defects=0))
        f["cases"] += 1
        f["refused"] += int(r.exit == 2)
        f["accepted"] += int(r.exit == 0)
        f["built"] += int(r.built)
        f["tracebacks"] += int(r.traceback)
        f["crashes"] += int(r.signal is not None)
        f["hangs"] += int(r.hang)
        f["defects"] += int(r.defect is not None)
    return families


def write_report(results: list[Result], out: Path, seconds: float, seed: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fam = summary(results)
    defects = [r for r in results if r.defect]
    data = {"seed": seed, "cases": len(results), "seconds": round(seconds, 1), "families": fam,
            "defects": len(defects), "results": [{**asdict(r), "defect": r.defect} for r in results]}
    (out / "fuzz_inputs.json").write_text(json.dumps(data, indent=1) + "\n")
    lines = ["# Bad inputs: bench/fuzz_inputs.py", "",
             f"{len(results)} cases, seed {seed}, {seconds:.0f} s. A defect is a traceback, a crash "
             "(signal), a hang, a model built although TFLite Micro refuses it or computes "
             "differently, or an error that is not one line naming its subject.", "",
             "| family | cases | refused (exit 2) | accepted (exit 0) | built and compared | tracebacks | crashes | hangs | defects |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, f in fam.items():
        lines.append(f"| {name} | {f['cases']} | {f['refused']} | {f['accepted']} | {f['built']} | "
                     f"{f['tracebacks']} | {f['crashes']} | {f['hangs']} | {f['defects']} |")
    lines += ["", f"Built models that match TFLite Micro: "
              f"{sum(1 for r in results if r.built and r.tflm == 'same')} of {sum(1 for r in results if r.built)}.", ""]
    if defects:
        lines += ["## Defects", "", "| family | case | defect | message |", "| --- | --- | --- | --- |"]
        for r in defects[:200]:
            msg = r.message.replace("\n", " ").replace("|", "\\|")[:160]
            lines.append(f"| {r.family} | {r.name} | {r.defect} | {msg} |")
    (out / "fuzz_inputs.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=1200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    cache = REPO / "build" / "fuzz-inputs"
    models = base_models(cache)
    cases = make_cases(models, args.cases, args.seed)
    start = time.monotonic()
    with Progress(TextColumn("fuzzing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task("", total=len(cases))
        results = run_all(cases, models, cache, args.workers, args.timeout,
                          progress=lambda: bar.advance(task))
    write_report(results, args.out, time.monotonic() - start, args.seed)
    fam = summary(results)
    print(json.dumps(fam, indent=1))
    print(f"wrote {args.out / 'fuzz_inputs.md'}")


if __name__ == "__main__":   # through the module, so that workers unpickle the same classes
    sys.path.insert(0, str(Path(__file__).parent))
    import fuzz_inputs

    fuzz_inputs.main()
