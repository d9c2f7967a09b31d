"""`aqedge inspect`: what a .tflite holds and what it costs on a board — ops, tensor types and
bit widths, (packed) weight bytes, the aqedge arena and TFLite Micro's, and the preprocessing
folded into the int8 input quantization, if any."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.console import Group
from rich.table import Table

from .codegen.graph import read_tflite
from .codegen.lower import kernel_variants
from .codegen.storage import lower_model
from .convert import inspect_tflite
from .convert.int4 import tflm_arena_bytes
from .errors import AqError


def count_macs(calls) -> int:
    """Multiply-accumulates of one inference: the sum over the lowered CONV_2D (out pixels ×
    out channels × kernel taps × input channels per group), DEPTHWISE_CONV_2D (out pixels × out
    channels × taps) and FULLY_CONNECTED (batches × out channels × depth) calls."""
    macs = 0
    for call in calls:
        p, k = call.params, call.kernel or ""
        if k.startswith("aq_conv_"):
            macs += p["out_h"] * p["out_w"] * p["out_c"] * p["k_h"] * p["k_w"] * p["filter_in_c"]
        elif k.startswith("aq_depthwise_conv_"):
            macs += p["out_h"] * p["out_w"] * p["out_c"] * p["k_h"] * p["k_w"]
        elif k.startswith("aq_fully_connected_"):
            macs += p["batches"] * p["out_c"] * p["accum_depth"]
    return macs


def inspect_model(path: Path) -> dict:
    """inspect_tflite's description plus `aqedge_arena_bytes` (int8 storage) and
    `aqedge_packed_arena_bytes` (4-bit tensors packed; None and `unsupported` when the runtime
    cannot run the model), each tensor's `storage` ("packed" when it can be packed, "int8") and
    `tflm_arena_bytes`."""
    graph = read_tflite(path)  # validates the file and names it in errors
    data = path.read_bytes()
    info = inspect_tflite(data)
    info["model"] = path.name
    info["file_bytes"] = len(data)
    try:
        model = lower_model(graph, path.name, "packed")
        info["aqedge_arena_bytes"] = model.int8_arena_bytes
        info["aqedge_packed_arena_bytes"] = model.packed_arena_bytes
        info["macs"] = count_macs(model.int8_calls)
        info["kernels"] = kernel_variants(model.int8_calls)
        info["unsupported"] = None
        for index, t in enumerate(info["tensors"]):
            if index in model.storages:
                t["storage"] = "packed" if model.storages[index].packed else "int8"
    except AqError as exc:
        info["aqedge_arena_bytes"] = info["aqedge_packed_arena_bytes"] = None
        info["macs"] = info["kernels"] = None
        info["unsupported"] = str(exc)
    info["tflm_arena_bytes"] = tflm_arena_bytes(data)
    info["input_transform"] = None
    if graph.input_transform is not None:
        inp = graph.tensors[graph.inputs[0]]
        scale, zp = (None, None) if inp.scale is None else (inp.single_scale(),
                                                            inp.single_zero_point())
        info["input_transform"] = dict(scale=graph.input_transform.scale.tolist(),
                                       offset=graph.input_transform.offset.tolist(),
                                       text=graph.input_transform.describe(scale, zp))
    return info


def inspect_table(info: dict) -> Group:
    tensors = info["tensors"]

    def describe(index: int) -> str:
        t = tensors[index]
        return f"{t['type'].lower()} {'×'.join(map(str, t['shape']))}"

    def levels(index: int) -> str:
        """The codes an activation can hold when they need fewer than 8 bits (after the clamps
        of a 4-, 3- or 2-bit activation quantizer), else nothing; "packed" when
        --activation-storage packed stores it two codes a byte."""
        t = tensors[index]
        if t.get("value_bits", 8) >= 8:
            return ""
        return f"{t['levels']}{' packed' if t.get('storage') == 'packed' else ''}"

    variants = {k["op"]: k["variant"] for k in info.get("kernels") or []}
    ops = Table(title=f"{info['model']}: {len(info['ops'])} ops", header_style="bold")
    for col in ("#", "op", "input", "weights", "output", "levels", "kernel variant"):
        ops.add_column(col)
    for op in info["ops"]:
        ins = [i for i in op["inputs"] if i >= 0]
        weights = f"{op['weight_type'].lower()} {op['weight_bytes']:,} B" if "weight_type" in op else ""
        ops.add_row(str(op["index"]), f"{op['op']} v{op['version']}", describe(ins[0]) if ins else "",
                    weights, ", ".join(describe(o) for o in op["outputs"]),
                    ", ".join(levels(o) for o in op["outputs"]), variants.get(op["index"], ""))
    summary = Table(show_header=False)
    summary.add_column("what")
    summary.add_column("value", justify="right")
    summary.add_row("file bytes", f"{info['file_bytes']:,}")
    summary.add_row("weight bytes (filters + biases)", f"{info['weight_bytes']:,}")
    summary.add_row("  INT4 packed / int8 filters / int32 biases",
                    f"{info['int4_weight_bytes']:,} / {info['int8_weight_bytes']:,} / {info['bias_bytes']:,}")
    low = Counter(t["levels"] for t in tensors if t.get("value_bits", 8) < 8)
    if low:
        summary.add_row("low-bit activation tensors (count × levels)",
                        ", ".join(f"{low[n]} × {n}" for n in sorted(low, reverse=True)))
    summary.add_row("MACs per inference", "—" if info["macs"] is None else f"{info['macs']:,}")
    summary.add_row("aqedge arena bytes", "—" if info["aqedge_arena_bytes"] is None else f"{info['aqedge_arena_bytes']:,}")
    packed = info.get("aqedge_packed_arena_bytes")
    summary.add_row("  with 4-bit tensors packed (--activation-storage packed)",
                    "—" if packed is None else f"{packed:,} ({sum(t.get('storage') == 'packed' for t in tensors)} tensors)")
    summary.add_row("TFLite Micro arena bytes", "—" if info["tflm_arena_bytes"] is None else f"{info['tflm_arena_bytes']:,}")
    parts = [ops, summary]
    if info.get("input_transform"):
        parts.append(f"input: {info['input_transform']['text']}")
    if info["unsupported"]:
        parts.append(f"[yellow]the aqedge runtime cannot run this model:[/yellow] {info['unsupported']}")
    return Group(*parts)
