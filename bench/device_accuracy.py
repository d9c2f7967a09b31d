"""On-device accuracy over a whole test set: each .tflite built for a board, every test image
sent over the (emulated) serial port, every output checked against TFLite Micro.

    .venv/bin/python bench/device_accuracy.py MODEL.tflite ... [--board stm32]
        [--dataset fashion-mnist] [--samples 0] [--results bench/results]

The low-bit rows of bench/results/device_accuracy.md come from the models bench/accuracy.py
trains and keeps (`--keep-tflite DIR`): the ×1 Swish network with 3- and 2-bit activations,
adaptive (learned shift), one seed each.

Per model: the activation tensors' level counts (`aqedge.convert.inspect_tflite`: 8 for a 3-bit
activation, 4 for a 2-bit one), board, samples, accuracy on the device and TFLite Micro's on the
same images, the share of outputs equal to TFLite Micro's, instructions per inference (median,
min, max: QEMU -icount shift=0, an instruction count, not time), arena and flash bytes.

Writes device_accuracy.{json,md} into `--results`; rows are merged by (model, board), so models
can be measured in separate runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESULTS = Path(__file__).resolve().parent / "results"


def levels_of(path: Path) -> str:
    """`8 levels × 9, 4 levels × 1`: the activation tensors whose codes need fewer than 8 bits."""
    from aqedge.convert import inspect_tflite

    low = Counter(t["levels"] for t in inspect_tflite(path.read_bytes())["tensors"]
                  if t.get("value_bits", 8) < 8)
    return ", ".join(f"{n} levels × {low[n]}" for n in sorted(low, reverse=True)) or "int8 only"


def measure(path: Path, board_name: str, dataset: str, samples: int, work: Path) -> dict:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, \
        TimeRemainingColumn

    from aqedge import datasets
    from aqedge.boards import resolve
    from aqedge.codegen.build import build
    from aqedge.harness.session import metrics, run_session

    board, _ = resolve(board_name)
    count = samples or len(datasets.load(dataset, "test")[1])
    build(path, board, work / path.stem)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task(path.stem, total=count)
        m = metrics(run_session(board, work / path.stem, dataset, count, label=path.stem,
                                progress=lambda done, total: bar.update(task, completed=done)))
    return dict(model=path.name, board=board.name, activations=levels_of(path),
                dataset=dataset, samples=m["samples"], measured=m["measured"],
                accuracy=m["accuracy"], reference=m["reference"],
                reference_accuracy=m["reference_accuracy"],
                device_matches_reference=m["device_matches_reference"],
                instructions=m["latency"], arena_bytes=m["arena_bytes"],
                flash_bytes=m["flash_bytes"], failed_samples=len(m["failed_samples"]))


def markdown(rows: list[dict]) -> str:
    lines = ["| model | activations | board | samples | device accuracy (%) | "
             "reference accuracy (%) | bit-exact | instructions (median) | min … max | arena B "
             "| flash B |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lat = r["instructions"]
        exact = round(r["device_matches_reference"] * r["measured"])
        against = "" if r["reference"] == "tflite-micro" else f" (against {r['reference']})"
        lines.append(f"| {r['model']} | {r['activations']} | {r['board']} | {r['measured']:,} "
                     f"| {100 * r['accuracy']:.2f} | {100 * r['reference_accuracy']:.2f} "
                     f"| {exact:,}/{r['measured']:,}{against} | {lat['median']:,} "
                     f"| {lat['min']:,} … {lat['max']:,} | {r['arena_bytes']:,} "
                     f"| {r['flash_bytes']:,} |")
    lines += ["", "Instructions: QEMU -icount shift=0, one per instruction (not time). Bit-exact: "
                  "device outputs equal to TFLite Micro's on the same int8 input (LiteRT's where "
                  "marked: TFLite Micro could not run the model)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", type=Path)
    p.add_argument("--board", default="stm32")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--samples", type=int, default=0, help="0 = the whole test set")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--work", type=Path, default=Path("build/device-accuracy"),
                   help="where the firmware is built")
    args = p.parse_args(argv)
    missing = [m for m in args.models if not m.is_file()]
    if missing:
        p.error(f"{missing[0]}: no such file")

    from aqedge.atomic import save_atomic

    jpath = args.results / "device_accuracy.json"
    for path in args.models:
        row = measure(path, args.board, args.dataset, args.samples, args.work)
        rows = json.loads(jpath.read_text()) if jpath.is_file() else []   # another run's rows too
        rows = [r for r in rows if (r["model"], r["board"]) != (row["model"], row["board"])]
        rows.append(row)
        save_atomic(lambda tmp: tmp.write_text(json.dumps(rows, indent=1) + "\n"), jpath)
        save_atomic(lambda tmp: tmp.write_text(markdown(rows)),
                    args.results / "device_accuracy.md")
        print(markdown([row]), flush=True)


if __name__ == "__main__":
    main()
