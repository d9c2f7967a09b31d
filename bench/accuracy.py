"""Accuracy benchmark: FP32 / PTQ INT8 / PTQ W4A8 / LSQ and adaptive QAT at W4A4 (or A3, A2), on .tflite.

    .venv/bin/python bench/accuracy.py                       # the full run (hours on 2 cores)
    .venv/bin/python bench/accuracy.py --datasets fashion-mnist --archs swish_mbv2 --qat-lr 2e-3
                                       # then this: the published Fashion-MNIST Swish rows
    .venv/bin/python bench/accuracy.py --datasets fashion-mnist --archs swish_mbv2 --qat-lr 2e-3 \\
        --variants lsq adaptive --activation-bits 4 3 2   # the method against LSQ by bit width
    .venv/bin/python bench/accuracy.py --archs swish_mbv2 --width 2.5 --datasets fashion-mnist \\
        --qat-lr 2e-3      # and the x2.5 Swish rows (MNIST: --datasets mnist, default rate)
    .venv/bin/python bench/accuracy.py --datasets fashion-mnist --archs relu_cnn --seeds 0 \\
        --float-epochs 1 --qat-epochs 1 --train-samples 6000 --out-dir /tmp/acc   # smoke run

Per (dataset, arch, seed): a float model is trained `--float-epochs`; the QAT rows quantize it
(4-bit weights, `--activation-bits` activations: one LSQ and one adaptive row per width, named
`lsq_w4a3`, `adaptive_w4a3`, ...) and fine-tune `--qat-epochs` at `--qat-lr` (same budget,
learning rate and seed for LSQ and adaptive; the table gives the adaptive rows' lead over
LSQ); the FP32 row is that float model trained `--qat-epochs` more at `--qat-lr` (the whole
budget), and the PTQ rows quantize the FP32 model without training. `--distill W` fine-tunes
both QAT rows on soft targets that put weight W on the float model's predictions. Every accuracy
is measured by the TFLite Micro reference interpreter running the converted `.tflite` on the test
set (what the device computes), never by Keras.

`--width W` multiplies every channel count of the Swish network (rows record `width` and
`parameters`; the table shows each width apart): at 2.5 its W4A4 weights, int32 biases
included, are 0.548 of the INT8 ones (0.598 at 1, where biases weigh more).

`--validation N` holds out the last N training images and measures every row on them instead of
the test set, so learning rates and the like can be chosen without looking at the test set; such
rows record `evaluated_on: "validation"`.

Writes `accuracy.json` (a list of rows `{dataset, arch, variant, seed, accuracy, weight_bytes}`,
each also carrying its training budget) and `accuracy.md` to `--out-dir`. Rows already in
`accuracy.json` are kept unless this run measures the same (dataset, arch, width, variant, seed),
so the architectures and datasets can be run separately (or in parallel into separate directories
and merged with `--merge DIR...`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BASELINES = ("fp32", "ptq_int8", "ptq_w4a8")
QAT_SHIFT = {"lsq": False, "adaptive": True}       # QAT method -> learned shift
VARIANTS = BASELINES + tuple(QAT_SHIFT)              # what --variants picks
ARCHS = ("relu_cnn", "swish_mbv2")
LABELS = {"fp32": "FP32", "ptq_int8": "PTQ INT8", "ptq_w4a8": "PTQ W4A8",
          "lsq": "QAT W4A{bits} LSQ (learned scale, no shift)",
          "adaptive": "QAT W4A{bits} adaptive (learned scale + shift)"}


def qat_variant(method: str, bits: int) -> str:
    """The row name of a QAT method at an activation bit width: `adaptive_w4a3`."""
    return f"{method}_w4a{bits}"


def row_order(rows) -> list[tuple[str, str, int | None]]:
    """(variant, label, activation bits) of the variants in `rows`, in table order: the
    baselines, then LSQ and adaptive from the widest activations to the narrowest."""
    bits = sorted({r.get("activation_bits", 4) for r in rows if r["variant"] not in BASELINES},
                  reverse=True)
    order = [(v, LABELS[v], None) for v in BASELINES]
    order += [(qat_variant(m, b), LABELS[m].format(bits=b), b) for b in bits for m in QAT_SHIFT]
    return [o for o in order if any(r["variant"] == o[0] for r in rows)]


def swish_mbv2(width: float = 1.0):
    """A small MobileNetV2-style CNN: inverted residuals with Swish, hard-swish and ReLU6, every
    channel count multiplied by `width`."""
    import keras
    from keras import layers as L

    def c(n):
        return int(round(n * width))

    def conv_bn(x, filters, kernel, strides, act, name):
        x = L.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                     name=name)(x)
        x = L.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
        return L.Activation(act, name=f"{name}_{act}")(x) if act else x

    def block(x, expand, out, strides, act, name):
        inp = x
        x = conv_bn(x, expand, 1, 1, act, f"{name}_expand")
        x = L.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False,
                              name=f"{name}_dw")(x)
        x = L.BatchNormalization(momentum=0.9, name=f"{name}_dw_bn")(x)
        x = L.Activation(act, name=f"{name}_dw_{act}")(x)
        x = conv_bn(x, out, 1, 1, None, f"{name}_project")
        if strides == 1 and inp.shape[-1] == out:
            x = L.Add(name=f"{name}_add")([inp, x])
        return x

    inputs = keras.Input((28, 28, 1), name="image")
    x = conv_bn(inputs, c(16), 3, 2, "hard_swish", "stem")           # 14x14
    x = block(x, c(32), c(16), 1, "swish", "b1")
    x = block(x, c(48), c(24), 2, "relu6", "b2")                     # 7x7
    x = block(x, c(72), c(24), 1, "swish", "b3")
    x = block(x, c(72), c(24), 1, "hard_swish", "b4")
    x = conv_bn(x, c(64), 1, 1, "swish", "head")
    x = L.GlobalAveragePooling2D(name="pool")(x)
    x = L.Dense(10, name="logits")(x)
    outputs = L.Softmax(name="softmax")(x)
    return keras.Model(inputs, outputs, name="swish_mbv2")


def relu_cnn():
    from aqedge.example import build_cnn
    from aqedge.train import with_batch_size

    return with_batch_size(build_cnn(), None)   # the demo's CNN, free batch for training


def tflite_accuracy(buf: bytes, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a .tflite (int8 or float input) run by the TFLite Micro reference
    interpreter: the arithmetic the generated firmware reproduces bit for bit, and the one the
    QAT model predicts exactly. (LiteRT's int8 kernels are not bit-exact with it: on a Swish
    network about a third of the output codes differ, see docs/architecture.md.)"""
    from aqedge.reference import TflmReference

    ref = TflmReference(buf)
    q = ref.input_quantization()
    if q is None:
        xs = x.astype(np.float32)
    else:
        xs = np.clip(np.round(x / q[0] + q[1]), -128, 127).astype(np.int8)
    pred = np.array([int(np.argmax(ref.run(xs[i:i + 1]))) for i in range(len(x))])
    return float(np.mean(pred == y))


def run_one(dataset, arch, seed, args, log):
    import keras
    import tensorflow as tf

    from aqedge import datasets
    from aqedge.atomic import save_atomic
    from aqedge.convert import convert_int8, convert_qat, inspect_tflite
    from aqedge.qat import calibrate, quantize_model
    from aqedge.train import fit, quantize_and_finetune, with_batch_size

    x, y = datasets.load(dataset, "train")
    xt, yt = datasets.load(dataset, "test")
    if args.validation:       # hold out the last images of the training set, never train on them
        if args.validation >= len(x):
            sys.exit(f"--validation {args.validation}: the training set has only {len(x)} images")
        x, y, xt, yt = x[:-args.validation], y[:-args.validation], \
            x[-args.validation:], y[-args.validation:]
    if args.train_samples:
        x, y = x[:args.train_samples], y[:args.train_samples]
    if args.test_samples:
        xt, yt = xt[:args.test_samples], yt[:args.test_samples]
    evaluated_on = "validation" if args.validation else "test"
    width = args.width if arch == "swish_mbv2" else 1.0
    build = {"relu_cnn": relu_cnn, "swish_mbv2": lambda: swish_mbv2(width)}[arch]
    rows = []

    def record(variant, buf, distill=None, activation_bits=None):
        acc = tflite_accuracy(buf, xt, yt)
        if args.keep_tflite:
            w = f"_x{width:g}" if width != 1.0 else ""
            save_atomic(lambda tmp: tmp.write_bytes(buf),
                        args.keep_tflite / f"{dataset}_{arch}{w}_{variant}_seed{seed}.tflite")
        info = inspect_tflite(buf)
        wb = info["weight_bytes"]
        rows.append(dict(dataset=dataset, arch=arch, variant=variant, seed=seed,
                         activation_bits=activation_bits,
                         accuracy=acc, weight_bytes=wb, bias_bytes=info["bias_bytes"],
                         width=width, parameters=parameters,
                         float_epochs=args.float_epochs,
                         qat_epochs=args.qat_epochs, float_lr=args.float_lr,
                         qat_lr=args.qat_lr, distill=distill,
                         first_last_bits=args.first_last_bits,
                         train_samples=len(x), test_samples=len(xt),
                         evaluated_on=evaluated_on))
        log(f"{dataset} {arch} seed {seed} {variant:14s} acc {acc:.4f}  weights {wb} B")

    t0 = time.time()
    keras.utils.set_random_seed(seed)
    base = fit(build(), x, y, args.float_epochs, lr=args.float_lr, seed=seed)
    parameters = base.count_params()
    log(f"  float pre-training {args.float_epochs} epochs: {time.time() - t0:.0f} s")
    rep = x[:args.calibration_samples]
    qkw = dict(first_last_bits=args.first_last_bits)
    want = set(args.variants)

    for bits in args.activation_bits:
        for method in (m for m in QAT_SHIFT if m in want):
            variant, t1 = qat_variant(method, bits), time.time()
            qat = quantize_and_finetune(base, x, y, args.qat_epochs, lr=args.qat_lr, seed=seed,
                                        calibration_samples=args.calibration_samples,
                                        shift=QAT_SHIFT[method], distill=args.distill,
                                        activation_bits=bits, **qkw)
            log(f"  {variant} fine-tuning {args.qat_epochs} epochs: {time.time() - t1:.0f} s")
            record(variant, convert_qat(qat, rep), distill=args.distill, activation_bits=bits)

    if want & set(BASELINES):
        fp32 = with_batch_size(base, None)       # a copy: base stays the QAT starting point
        fit(fp32, x, y, args.qat_epochs, lr=args.qat_lr, seed=seed)   # the whole budget
        export = with_batch_size(fp32, 1)
        if "fp32" in want:
            record("fp32", tf.lite.TFLiteConverter.from_keras_model(export).convert())
        if "ptq_int8" in want:
            record("ptq_int8", convert_int8(export, rep, samples=len(rep)))
        if "ptq_w4a8" in want:
            ptq = quantize_model(fp32, weight_bits=4, activation_bits=8, **qkw)
            calibrate(ptq, rep, batches=max(1, len(rep) // 64))
            record("ptq_w4a8", convert_qat(ptq, rep))
    return rows


def table_of(row) -> tuple:
    """The table a row belongs to: (dataset, arch, width); rows from before `--width` are 1."""
    return row["dataset"], row["arch"], row.get("width", 1.0)


def markdown(rows) -> str:
    lines = []
    for dataset, arch, width in sorted({table_of(r) for r in rows}):
        sel = [r for r in rows if table_of(r) == (dataset, arch, width)]
        title = f"{dataset} · {arch}" + (f" ×{width:g}" if width != 1.0 else "")
        if sel[0].get("parameters"):
            title += f" ({sel[0]['parameters']:,} parameters)"
        lines += [f"### {title}", "", budget(sel), "",
                  "| variant | accuracy (%) | seeds | lead over LSQ (pp) | lead / larger std "
                  "| weight bytes (filters + biases) | filter bytes |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for variant, label, bits in row_order(sel):
            acc = percent(sel, variant)
            txt = f"{acc.mean():.2f} ± {acc.std():.2f}" if len(acc) > 1 else f"{acc[0]:.2f}"
            lead, ratio = lead_over_lsq(sel, variant, bits)
            first = next(r for r in sel if r["variant"] == variant)
            wb = first["weight_bytes"]
            filters = f"{wb - first['bias_bytes']:,}" if "bias_bytes" in first else "—"
            lines.append(f"| {label} | {txt} | {len(acc)} | {lead} | {ratio} | {wb:,} "
                         f"| {filters} |")
        lines += ["", "Lead: the adaptive row's mean minus the LSQ row's at the same activation "
                      "bits, in percentage points; lead / larger std divides it by the larger of "
                      "the two rows' standard deviations over seeds (> 2: the lead is outside "
                      "twice the seed spread).", ""]
    return "\n".join(lines)


def percent(rows, variant) -> np.ndarray:
    return np.array([r["accuracy"] for r in rows if r["variant"] == variant]) * 100


def lead_over_lsq(rows, variant, bits) -> tuple[str, str]:
    """("+1.25 ± 0.30", "4.2") for an adaptive row with its LSQ twin in `rows`, else blanks."""
    if variant != qat_variant("adaptive", bits) or bits is None:
        return "", ""
    ours, theirs = percent(rows, variant), percent(rows, qat_variant("lsq", bits))
    if not len(theirs):
        return "", ""
    lead, spread = ours.mean() - theirs.mean(), max(ours.std(), theirs.std())
    ratio = f"{lead / spread:.1f}" if spread > 0 else "—"
    return f"{lead:+.2f} ± {spread:.2f}", ratio


def budget(rows) -> str:
    """One line stating the training budget(s) behind `rows`."""
    kinds = sorted({(r.get("float_epochs"), r.get("qat_epochs"), r.get("float_lr"),
                     r.get("qat_lr"), r.get("first_last_bits"), r.get("train_samples"),
                     r.get("test_samples"), r.get("evaluated_on", "test")) for r in rows},
                   key=str)
    parts = []
    for fe, qe, flr, qlr, flb, ntrain, ntest, split in kinds:
        if fe is None:
            parts.append("budget not recorded")
            continue
        parts.append(f"{fe} float + {qe} QAT epochs (FP32 trained {fe + qe}); learning rate "
                     f"{flr:g} then {qlr:g} (Adam, cosine decay; the FP32 row's last {qe} epochs "
                     f"use the QAT one); first/last layers {flb}-bit (their weights and the last "
                     f"one's input); {ntrain:,} training / {ntest:,} {split} images")
    kd = sorted({r["distill"] for r in rows if r.get("distill") is not None})
    kd_txt = {(): "", (0.0,): "; QAT on the labels"}.get(
        tuple(kd), "; QAT targets: " + " / ".join(
            f"labels mixed with the float model's predictions (weight {w})" if w else "labels"
            for w in kd))
    return "; ".join(parts) + kd_txt + "."


def merge(rows, new):
    """`rows` with every row of `new` replacing the one with the same key."""
    key = lambda r: (*table_of(r), r["variant"], r["seed"])   # noqa: E731
    fresh = {key(r) for r in new}
    return [r for r in rows if key(r) not in fresh] + list(new)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=["fashion-mnist", "mnist"])
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS,
                   help="baselines and QAT methods (lsq, adaptive: one row per --activation-bits)")
    p.add_argument("--activation-bits", nargs="+", type=int, default=[4], metavar="BITS",
                   help="activation bit widths of the QAT rows (2-8; weights stay 4-bit)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--width", type=float, default=1.0,
                   help="channel multiplier of the swish_mbv2 network (relu_cnn is the demo's "
                        "CNN, unchanged); rows record it and the table groups by it")
    p.add_argument("--float-epochs", type=int, default=6)
    p.add_argument("--qat-epochs", type=int, default=3)
    p.add_argument("--float-lr", type=float, default=2e-3)
    p.add_argument("--qat-lr", type=float, default=5e-4)
    p.add_argument("--first-last-bits", type=int, default=8)
    p.add_argument("--distill", type=float, default=0.0,
                   help="weight of the float model's predictions in the QAT targets (0 = labels)")
    p.add_argument("--calibration-samples", type=int, default=512)
    p.add_argument("--train-samples", type=int, default=0, help="0 = the whole training set")
    p.add_argument("--test-samples", type=int, default=0, help="0 = the whole 10k test set")
    p.add_argument("--validation", type=int, default=0, metavar="N",
                   help="train without the last N training images and measure on them instead "
                        "of the test set (for choosing hyperparameters; 0 = off)")
    p.add_argument("--threads", type=int, default=0,
                   help="TensorFlow threads per op and between ops (0 = TensorFlow's default); "
                        "1 suits several runs in parallel")
    p.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    p.add_argument("--keep-tflite", type=Path, metavar="DIR",
                   help="also write every measured .tflite to DIR (for bench/device_accuracy.py)")
    p.add_argument("--merge", nargs="+", type=Path, default=[], metavar="DIR",
                   help="only merge the accuracy.json of these directories into --out-dir")
    args = p.parse_args(argv)
    from aqedge.config import MAX_BITS, MIN_BITS

    bad = [b for b in args.activation_bits if not MIN_BITS <= b <= MAX_BITS]
    if bad:
        p.error(f"--activation-bits {bad[0]}: choose a bit width between {MIN_BITS} and {MAX_BITS}")

    if args.threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.keep_tflite:
        args.keep_tflite.mkdir(parents=True, exist_ok=True)
    jpath, mpath = args.out_dir / "accuracy.json", args.out_dir / "accuracy.md"
    rows = json.loads(jpath.read_text()) if jpath.exists() else []

    def log(msg):
        print(msg, flush=True)

    def save():
        jpath.write_text(json.dumps(rows, indent=1) + "\n")
        mpath.write_text("Accuracy measured by the TFLite Micro reference interpreter on the "
                         "converted .tflite (the device's arithmetic), never by Keras; mean ± std "
                         "over seeds.\n\n" + markdown(rows))

    if args.merge:
        for d in args.merge:
            rows = merge(rows, json.loads((d / "accuracy.json").read_text()))
        save()
    else:
        for dataset in args.datasets:
            for arch in args.archs:
                for seed in args.seeds:
                    rows = merge(rows, run_one(dataset, arch, seed, args, log))
                    save()                                    # keep partial results
    print(mpath.read_text())


if __name__ == "__main__":
    main()
