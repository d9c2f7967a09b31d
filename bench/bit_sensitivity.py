"""Where does a W4A4 network's accuracy go? QAT with one part of it kept at 8 bits.

    .venv/bin/python bench/bit_sensitivity.py            # Swish network, Fashion-MNIST, seed 0

One float model (trained `--float-epochs`, seeded as in `bench/accuracy.py`) is fine-tuned with
adaptive QAT (`--qat-epochs` at `--qat-lr`) in several configurations that differ only in bit
widths:

* `w4a4`: the benchmark's adaptive W4A4 model (first and last layers at 8 bits);
* `w4a8` / `w8a4`: only the weights / only the activations at 4 bits;
* `w4a4_8bit_<group>`: W4A4 with one group of layers at 8 bits (weights and output, through
  `quantize_model(layer_bits=...)`): the expand 1x1 convolutions, the depthwise convolutions,
  the residual stream (project convolutions and Adds), or the stem and head convolutions;

plus `fp32`, the float model trained for the whole budget. Every accuracy is measured by the
TFLite Micro reference interpreter on the converted `.tflite`, on the full test set. Writes
`bit_sensitivity.{json,md}` to `--out-dir`. The configurations run in `--jobs` processes with one
TensorFlow thread each.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

GROUPS = {"expand": r"_expand$", "depthwise": r"_dw$", "residual": r"_(project|add)$",
          "stem_head": r"^(stem|head)$"}
CONFIGS = ("w4a4", "w4a8", "w8a4", *(f"w4a4_8bit_{g}" for g in GROUPS))


def _one_thread():
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def _quantize_kwargs(config: str, layer_names) -> dict:
    kw = dict(weight_bits=4, activation_bits=4, first_last_bits=8, shift=True)
    if config == "w4a8":
        kw["activation_bits"] = 8
    elif config == "w8a4":
        kw["weight_bits"] = 8
    elif config.startswith("w4a4_8bit_"):
        pattern = GROUPS[config.removeprefix("w4a4_8bit_")]
        kw["layer_bits"] = {n: 8 for n in layer_names if re.search(pattern, n)}
    return kw


def run_config(config: str, base_path: str, args) -> dict:
    """Fine-tune the saved float model in configuration `config`; TFLite Micro accuracy."""
    import keras

    from accuracy import tflite_accuracy
    from aqedge import datasets
    from aqedge.convert import convert_qat
    from aqedge.train import quantize_and_finetune

    x, y = datasets.load(args.dataset, "train")
    xt, yt = datasets.load(args.dataset, "test")
    base = keras.models.load_model(base_path)
    kw = _quantize_kwargs(config, [lay.name for lay in base.layers])
    t0 = time.time()
    qat = quantize_and_finetune(base, x, y, args.qat_epochs, lr=args.qat_lr, seed=args.seed,
                                calibration_samples=args.calibration_samples, **kw)
    acc = tflite_accuracy(convert_qat(qat, x[:args.calibration_samples]), xt, yt)
    return dict(config=config, accuracy=acc, layers_at_8_bits=sorted(kw.get("layer_bits", {})),
                seconds=round(time.time() - t0))


def run_fp32(base_path: str, args) -> dict:
    import keras
    import tensorflow as tf

    from accuracy import tflite_accuracy
    from aqedge import datasets
    from aqedge.train import fit, with_batch_size

    x, y = datasets.load(args.dataset, "train")
    xt, yt = datasets.load(args.dataset, "test")
    fp32 = fit(keras.models.load_model(base_path), x, y, args.qat_epochs, lr=args.qat_lr,
               seed=args.seed)
    buf = tf.lite.TFLiteConverter.from_keras_model(with_batch_size(fp32, 1)).convert()
    return dict(config="fp32", accuracy=tflite_accuracy(buf, xt, yt), layers_at_8_bits=[])


def markdown(result: dict) -> str:
    rows = result["rows"]
    ref = {r["config"]: r["accuracy"] for r in rows}
    lines = [f"{result['dataset']} · {result['arch']}, seed {result['seed']}: "
             f"{result['float_epochs']} float + {result['qat_epochs']} QAT epochs (QAT lr "
             f"{result['qat_lr']:g}); accuracy by the TFLite Micro reference interpreter on the "
             "full test set. Δ is against `w4a4`.", "",
             "| configuration | accuracy (%) | Δ (points) | layers at 8 bits |",
             "|---|---:|---:|---|"]
    for r in rows:
        delta = (r["accuracy"] - ref["w4a4"]) * 100 if "w4a4" in ref else float("nan")
        names = ", ".join(r["layers_at_8_bits"]) or "—"
        lines.append(f"| {r['config']} | {r['accuracy'] * 100:.2f} | {delta:+.2f} | {names} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--arch", default="swish_mbv2", choices=["swish_mbv2"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--float-epochs", type=int, default=6)
    p.add_argument("--qat-epochs", type=int, default=3)
    p.add_argument("--float-lr", type=float, default=2e-3)
    p.add_argument("--qat-lr", type=float, default=2e-3)
    p.add_argument("--calibration-samples", type=int, default=512)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    p.add_argument("--jobs", type=int, default=2, help="configurations run in parallel")
    p.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    args = p.parse_args(argv)

    _one_thread()
    import keras

    from accuracy import swish_mbv2
    from aqedge import datasets
    from aqedge.train import fit

    x, y = datasets.load(args.dataset, "train")
    keras.utils.set_random_seed(args.seed)
    base = fit(swish_mbv2(), x, y, args.float_epochs, lr=args.float_lr, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        base_path = str(Path(tmp) / "float.keras")
        base.save(base_path)
        spawn = multiprocessing.get_context("spawn")   # no fork of a process running TensorFlow
        with ProcessPoolExecutor(args.jobs, mp_context=spawn, initializer=_one_thread) as pool:
            futures = [pool.submit(run_fp32, base_path, args)]
            futures += [pool.submit(run_config, c, base_path, args) for c in args.configs]
            rows = []
            for f in futures:
                rows.append(f.result())
                print(f"{rows[-1]['config']:22s} {rows[-1]['accuracy'] * 100:.2f} %", flush=True)
    result = dict(dataset=args.dataset, arch=args.arch, seed=args.seed,
                  float_epochs=args.float_epochs, qat_epochs=args.qat_epochs,
                  float_lr=args.float_lr, qat_lr=args.qat_lr, rows=rows)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "bit_sensitivity.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out_dir / "bit_sensitivity.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
