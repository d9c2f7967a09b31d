"""Render the lowered graph and its memory plan into C (templates/model/*.j2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from .. import __version__
from ..resources import data_dir
from .graph import Graph
from .lower import ConstArray, KernelCall, band_bytes, scratch_bytes
from .plan import MemoryPlan

MODEL_SOURCES = ["model.c", "model_data.c"]
#: Labels of the per-op profile (one entry per kernel call of aq_model_invoke()).
PROFILE_OPS = "model_ops.json"


def _c_values(values: np.ndarray, per_line: int = 16) -> str:
    flat = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    lines = [", ".join(flat[i:i + per_line]) for i in range(0, len(flat), per_line)]
    return ",\n".join("  " + line for line in lines)


def _c_struct(params: dict[str, Any]) -> str:
    fields = []
    for key, value in params.items():
        text = _c_struct(value) if isinstance(value, dict) else str(value)
        fields.append(f".{key} = {text}")
    return "{" + ", ".join(fields) + "}"


def render_model(graph: Graph, calls: list[KernelCall], plan: MemoryPlan, model_name: str,
                 sha256: str, out_dir: Path) -> list[str]:
    """Write model.c, model_data.c and model_data.h into out_dir; return the C sources."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(data_dir("templates") / "model"),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)

    def tensor_ptr(arg: int | str) -> str:
        if isinstance(arg, str):
            return arg
        if graph.tensors[arg].dtype == "float32":
            return f"(float *)(aq_arena + {plan.offsets[arg]})"
        return f"aq_arena + {plan.offsets[arg]}"

    env.filters["c_values"] = _c_values
    env.filters["c_struct"] = _c_struct
    env.filters["c_args"] = lambda args: ", ".join(tensor_ptr(a) for a in args)
    arrays: list[ConstArray] = [a for c in calls for a in c.arrays]
    band_in, band_out = band_bytes(calls)
    inp, out = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    context = dict(
        version=__version__, model_name=model_name, sha256=sha256,
        sha256_bytes=", ".join(f"0x{sha256[i:i + 2]}" for i in range(0, 64, 2)),
        arrays=arrays, calls=calls, arena_bytes=plan.arena_bytes,
        lut_scratch=any(c.table and len(c.table) > 1 for c in calls),
        scratch_words=-(-scratch_bytes(calls) // 4),
        band_in_bytes=band_in, band_out_bytes=band_out,
        input_shape=list(inp.shape), input_bytes=inp.nbytes, input_offset=plan.offsets[inp.index],
        output_shape=list(out.shape), output_bytes=out.nbytes, output_offset=plan.offsets[out.index],
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("model.c", "model_data.c", "model_data.h"):
        (out_dir / name).write_text(env.get_template(name + ".j2").render(**context))
    # The kernel calls in the order aq_model_invoke() makes them: the labels of the per-op
    # profile the firmware returns (aq_model_op_hook, docs/protocol.md PROFILE).
    (out_dir / PROFILE_OPS).write_text(json.dumps(
        [{"op": c.op.index, "opcode": c.op.opcode, "kernel": c.kernel,
          "variant": c.variant.name if c.variant else None} for c in calls if c.kernel],
        indent=1) + "\n")
    return list(MODEL_SOURCES)
