"""Per-layer profile of models on a board: for every kernel call, its op, opcode, kernel (and
the variant dispatched, when model_ops.json names one), shape, MACs, instructions and
instructions per MAC, from `aqedge build` + `aqedge measure --profile`.

    .venv/bin/python bench/layer_profile.py [MODEL.tflite ...] [--zoo mobilenet_int8,autoencoder_int8]
                                      [--board qemu-mps2-an386] [--samples 5] [--worst 20]
                                      [-o build/profile/profile.md]

`--zoo` takes bench/zoo.py's model names (built and cached as bench/device.py does). Each model
is built under `<output folder>/<model>/` (a standalone project; its metrics.json holds the raw
profile). The Markdown has one table per model and, at the end, the `--worst` layers with MACs
of all models by instructions, one row per opcode and shape; profile.json beside it holds the
rows. The per-op instructions are medians over the profiled samples (QEMU -icount shift=0 on an
emulated board: instruction counts, not time); the shape is the comment the generated model.c
puts above each op.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from aqedge.boards import resolve
from aqedge.codegen.build import build
from aqedge.codegen.graph import read_tflite
from aqedge.codegen.lower import lower
from aqedge.errors import AqError
from aqedge.harness.session import metrics, run_session
from aqedge.inspect import count_macs

REPO = Path(__file__).resolve().parent.parent


def op_shapes(model_c: Path) -> dict[int, str]:
    """op index -> the shape comment of generated model.c (`3x3 conv 96x96x3 -> 48x48x8`)."""
    shapes = {}
    for m in re.finditer(r"/\* op (\d+) \w+: (.*?) \*/", model_c.read_text()):
        shapes.setdefault(int(m.group(1)), m.group(2))
    return shapes


def op_macs(model: Path) -> dict[int, int]:
    """op index -> MACs of its lowered kernel calls (aqedge.inspect.count_macs)."""
    macs: dict[int, int] = {}
    for call in lower(read_tflite(model), str(model)):
        macs[call.op.index] = macs.get(call.op.index, 0) + count_macs([call])
    return macs


def profile_model(model: Path, board, out: Path, samples: int, seed: int = 0) -> dict:
    """Build `model` into `out`, measure `samples` random inputs with every one profiled, and
    return {model, instructions, macs, bit_exact, ops: [row per kernel call]}."""
    build(model, board, out)
    m = metrics(run_session(board, out, "random", samples, seed, profile=True,
                            profile_samples=samples))
    (out / "metrics.json").write_text(json.dumps(m, indent=1) + "\n")
    shapes, macs = op_shapes(out / "model.c"), op_macs(model)
    rows = []
    for p in m["profile"]["ops"]:
        n = macs.get(p["op"], 0)
        rows.append({"op": p["op"], "opcode": p["opcode"], "kernel": p["kernel"],
                     "variant": p.get("variant"), "shape": shapes.get(p["op"], ""), "macs": n,
                     "instructions": p["latency"],
                     "per_mac": round(p["latency"] / n, 2) if n else None})
    return {"model": model.name, "instructions": m["latency"]["median"],
            "macs": sum(macs.values()), "bit_exact": m["device_matches_reference"],
            "samples": m["samples"], "ops": rows}


def layer_class(o: dict) -> str:
    """`CONV_2D 1x1`, `DEPTHWISE_CONV_2D 3x3`, ... (the kernel size from the shape comment)."""
    m = re.match(r"(\d+x\d+) ", o["shape"])
    return f"{o['opcode']} {m.group(1)}" if m else o["opcode"]


def class_rows(result: dict) -> list[str]:
    """Markdown rows summing a model's ops per layer class, the costliest class first."""
    sums: dict[str, list[int]] = {}
    for o in result["ops"]:
        acc = sums.setdefault(layer_class(o), [0, 0, 0])
        acc[0], acc[1], acc[2] = acc[0] + 1, acc[1] + o["macs"], acc[2] + o["instructions"]
    total = sum(v[2] for v in sums.values()) or 1
    return [f"| {k} | {n} | {macs:,} | {ins:,} | {ins / total:.1%} | "
            f"{f'{ins / macs:.2f}' if macs else '-'} |"
            for k, (n, macs, ins) in sorted(sums.items(), key=lambda kv: -kv[1][2])]


def _kernel(r: dict) -> str:
    return f"{r['kernel']} ({r['variant']})" if r.get("variant") else str(r["kernel"])


def _row(r: dict, model: str | None = None) -> str:
    cells = ([model] if model else []) + [
        str(r["op"]), r["opcode"], _kernel(r), r["shape"], f"{r['macs']:,}",
        f"{r['instructions']:,}", "-" if r["per_mac"] is None else f"{r['per_mac']:.2f}"]
    return "| " + " | ".join(cells) + " |"


def markdown(results: list[dict], board: str, worst: int) -> str:
    head = "| op | opcode | kernel | shape | MACs | instructions | instr/MAC |"
    rule = "| ---: | --- | --- | --- | ---: | ---: | ---: |"
    lines = [f"# Per-layer profile on {board}", "",
             "Instructions: QEMU -icount shift=0 (instruction counts, not time), median over "
             "the profiled random inputs; MACs as aqedge.inspect.count_macs.", ""]
    for r in results:
        per_mac = r["instructions"] / r["macs"] if r["macs"] else 0
        lines += [f"## {r['model']}", "",
                  f"{r['instructions']:,} instructions per inference, {r['macs']:,} MACs "
                  f"({per_mac:.2f} per MAC); bit-exact {r['bit_exact']:.0%} of {r['samples']} samples.",
                  "", head, rule, *(_row(o) for o in r["ops"]), "",
                  "| layer class | layers | MACs | instructions | share | instr/MAC |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |", *class_rows(r), ""]
    lines += [f"## The {worst} MAC layers with the most instructions", "",
              "One row per opcode and shape, its costliest occurrence (`times`: how many layers "
              "of these models have that shape; `also`: the other kernels that ran it, with "
              "their instructions per MAC).", "",
              "| model " + head + " times | also |", "| --- " + rule + " ---: | --- |",
              *(_row(o, name) + f" {n} | {also} |"
                for o, name, n, also in worst_layers(results)[:worst]),
              ""]
    return "\n".join(lines)


def worst_layers(results: list[dict]) -> list[tuple[dict, str, int, str]]:
    """(op row, model, occurrences, other kernels) per distinct (opcode, shape) of the MAC
    layers, the costliest occurrence first, by instructions."""
    ranked = sorted(((o, r["model"]) for r in results for o in r["ops"] if o["macs"]),
                    key=lambda t: -t[0]["instructions"])
    first: dict[tuple, list] = {}
    for o, name in ranked:
        entry = first.setdefault((o["opcode"], o["shape"]), [o, name, 0, {}])
        entry[2] += 1
        if _kernel(o) != _kernel(entry[0]):
            entry[3].setdefault(_kernel(o), o["per_mac"])
    return [(o, name, n, ", ".join(f"{k} {v:.2f}" for k, v in also.items()) or "-")
            for o, name, n, also in first.values()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--zoo", default="", help="bench/zoo.py model names, comma-separated")
    parser.add_argument("--board", default="qemu-mps2-an386")
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--worst", type=int, default=20)
    parser.add_argument("-o", "--output", type=Path, default=REPO / "build" / "profile" / "profile.md")
    args = parser.parse_args()
    models = list(args.models)
    if args.zoo:
        from zoo import zoo_models

        models += zoo_models([n.strip() for n in args.zoo.split(",") if n.strip()])
    if not models:
        sys.exit("bench/layer_profile.py: name a .tflite or --zoo models")
    board, _ = resolve(args.board)
    results, failed = [], []
    for model in models:
        print(f"profiling {model.name} on {board.name}", flush=True)
        try:
            results.append(profile_model(model, board, args.output.parent / model.stem, args.samples))
        except AqError as exc:   # one model's failure is reported, the others still measured
            failed.append(f"{model.name}: {exc}")
            print(f"bench/layer_profile.py: {failed[-1]}", file=sys.stderr, flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    text = markdown(results, board.name, args.worst)
    if failed:
        text += "\n## Failed\n\n" + "\n".join(f"- {f}" for f in failed) + "\n"
    args.output.write_text(text)
    (args.output.with_suffix(".json")).write_text(json.dumps(results, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
