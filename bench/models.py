"""Real models on the runtime: bit-exactness on the host and on the emulated board, sizes and
instructions per inference.

    AQEDGE_MLPERF_TINY=DIR .venv/bin/python bench/models.py [--host-samples 200] [--device-samples 20]

The models are the MLPerf Tiny `.tflite` files in $AQEDGE_MLPERF_TINY (required).

Writes bench/results/models.{json,md}. Latency on QEMU is an instruction count (-icount shift=0),
not time. JSON rows: {model, board, bit_exact_samples, samples, host_bit_exact_samples,
host_samples, flash_bytes, ram_bytes, arena_bytes, instructions}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from aqedge.boards import resolve
from aqedge.codegen.build import build
from aqedge.codegen.host import build_host, run_host
from aqedge.harness.session import metrics, run_session
from aqedge.reference import TflmReference

REPO = Path(__file__).resolve().parent.parent
MLPERF_ENV = "AQEDGE_MLPERF_TINY"
RESULTS = REPO / "bench" / "results"


def host_bit_exact(path: Path, samples: int, seed: int, work: Path) -> int:
    graph, _, runner = build_host(path, work)
    shape = graph.tensors[graph.inputs[0]].shape[1:]
    x = np.random.default_rng(seed).integers(-128, 128, (samples, *shape), dtype=np.int8)
    ours = run_host(runner, x, graph.tensors[graph.outputs[0]].nbytes)
    ref = TflmReference(path.read_bytes())
    return sum(int(np.array_equal(o, ref.run(xi[None]).reshape(-1))) for o, xi in zip(ours, x))


def mlperf_models() -> list[Path]:
    """The .tflite files in $AQEDGE_MLPERF_TINY; exits with a message when there are none."""
    directory = os.environ.get(MLPERF_ENV, "").strip()
    models = sorted(Path(directory).glob("*.tflite")) if directory else []
    if not models:
        where = f"{MLPERF_ENV}={directory} holds no .tflite" if directory else f"{MLPERF_ENV} is not set"
        sys.exit(f"bench/models.py: {where}; set it to the MLPerf Tiny models' directory")
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host-samples", type=int, default=200)
    parser.add_argument("--device-samples", type=int, default=20)
    parser.add_argument("--board", default="qemu-stm32f405")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    board, _ = resolve(args.board)
    models = mlperf_models()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in models:
            work = Path(tmp) / path.stem
            host_ok = host_bit_exact(path, args.host_samples, args.seed, work / "host")
            build(path, board, work / "fw")
            m = metrics(run_session(board, work / "fw", "random", args.device_samples, args.seed))
            rows.append({"model": path.name, "board": board.name,
                         "bit_exact_samples": round(m["device_matches_reference"] * (m["samples"] - len(m["failed_samples"]))),
                         "samples": m["samples"], "host_bit_exact_samples": host_ok,
                         "host_samples": args.host_samples, "flash_bytes": m["flash_bytes"],
                         "ram_bytes": m["ram_bytes"], "arena_bytes": m["arena_bytes"],
                         "instructions": m["latency"]["median"]})
            print(rows[-1], flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "models.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["| model | board | bit-exact on device | bit-exact on host | flash B | RAM B | arena B | instructions / inference (QEMU -icount) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['board']} | {r['bit_exact_samples']}/{r['samples']} | "
                     f"{r['host_bit_exact_samples']}/{r['host_samples']} | {r['flash_bytes']:,} | "
                     f"{r['ram_bytes']:,} | {r['arena_bytes']:,} | {r['instructions']:,} |")
    (RESULTS / "models.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
