"""Networks no one here wrote, built deterministically for the device benchmark: Keras'
`keras.applications` MobileNet (alpha 0.25) and MobileNetV2 (alpha 0.35) at 96x96x3, and a dense
autoencoder 640-128-128-128-8-128-128-128-640 (the shape of MLPerf Tiny's anomaly detector).

    .venv/bin/python bench/zoo.py [--models mobilenet_int8,mobilenet_v2_w4a4,...] [--list]

prints the cached `.tflite` of each model named (default: all), building what is missing.
bench/device.py imports `zoo_models` / `model_path`.

- Weights: `weights=None` (nothing downloaded), initialised under `keras.utils.set_random_seed`,
  then every BatchNormalization's moving mean and variance set to its batch statistics on the
  representative data (one training-mode forward pass with momentum 0), so that every layer sees
  unit-scale inputs as in a trained network. Accuracy is not the point: the instruction count of
  a network depends on its shapes, not on its weights.
- Classifier head: `include_top=True, classes=10`, the keras.applications head (global average
  pool, the classifier, softmax) retrained for a few classes, as a microcontroller deployment
  (a wake word, a handful of objects) uses it; ImageNet's 1,000 classes would give MobileNet
  0.25 a 256x1000 classifier, half of its weights.
- Representative data: 64 seeded samples, uniform in [-1, 1] for the images (the range
  `keras.applications.mobilenet.preprocess_input` produces) and standard normal for the
  autoencoder (standardised log-mel frames).
- Variants: `int8`, full-int8 post-training quantization with the standard TFLite converter
  (int8 input and output; `aqedge.convert.ptq.convert_int8`); `w4a4`, aqedge's adaptive W4A4 QAT
  (`aqedge.qat.quantize_model`: INT4 weights and 4-bit activations, first and last layer at 8
  bits), calibrated and fine-tuned for 4 steps on random labels, converted by
  `aqedge.convert.convert_qat` (INT4-packed weights); `w4a8`, INT4 weights with 8-bit
  activations, calibrated only (post-training, no fine-tuning), converted the same way.
- Cache: `$AQEDGE_ZOO_CACHE` (default `build/zoo/` in the repository), one folder per recipe,
  named by the first 16 hex digits of the SHA-256 of the recipe, ZOO_VERSION, the TensorFlow and
  Keras versions and the source of aqedge's quantization and conversion code; each `.tflite` is
  written under a temporary name and renamed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CACHE_ENV = "AQEDGE_ZOO_CACHE"
#: Bumped whenever the builders below change what they make.
ZOO_VERSION = 2
#: aqedge code whose output the cached files depend on.
QUANT_SOURCES = ("aqedge/convert", "aqedge/qat", "aqedge/preprocess.py", "aqedge/train.py")
REP_SAMPLES = 64

QUANTS = ("int8", "w4a4", "w4a8")
_MOBILENET = dict(arch="mobilenet", alpha=0.25, shape=[96, 96, 3], classes=10, seed=0)
_MOBILENET_V2 = dict(arch="mobilenet_v2", alpha=0.35, shape=[96, 96, 3], classes=10, seed=0)
_AUTOENCODER = dict(arch="autoencoder", widths=[640, 128, 128, 128, 8, 128, 128, 128, 640], seed=0)
#: name -> recipe (architecture, its arguments, the quantization variant, the seed).
ZOO = {**{f"mobilenet_{q}": {**_MOBILENET, "quant": q} for q in QUANTS},
       **{f"mobilenet_v2_{q}": {**_MOBILENET_V2, "quant": q} for q in QUANTS},
       "autoencoder_int8": {**_AUTOENCODER, "quant": "int8"}}
#: W4A4 fine-tuning: epochs over 2 x REP_SAMPLES random samples, batch 64 (4 steps).
QAT_EPOCHS = 2
#: (W4A4, INT8) twins, by model name.
ZOO_PAIRS = (("mobilenet_w4a4", "mobilenet_int8"), ("mobilenet_v2_w4a4", "mobilenet_v2_int8"))


def file_name(name: str) -> str:
    """The `.tflite` name of a zoo model: architecture, width and input in it, e.g.
    `mobilenet_a0.25_96_int8.tflite`."""
    r = ZOO[name]
    if r["arch"] == "autoencoder":
        return f"autoencoder_{'-'.join(map(str, r['widths']))}_{r['quant']}.tflite"
    return f"{r['arch']}_a{r['alpha']}_{r['shape'][0]}_{r['quant']}.tflite"


def _source_digest() -> str:
    h = hashlib.sha256()
    for entry in QUANT_SOURCES:
        p = REPO / entry
        for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
            h.update(f.relative_to(REPO).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def recipe_key(name: str) -> str:
    """16 hex digits naming what makes `name`'s file: recipe, versions, quantization code."""
    import keras
    import tensorflow as tf

    stamp = dict(recipe=ZOO[name], zoo=ZOO_VERSION, rep=REP_SAMPLES, tf=tf.__version__,
                 keras=keras.__version__, aqedge=_source_digest())
    return hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:16]


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, "").strip() or REPO / "build" / "zoo")


def float_model(recipe: dict):
    """The seeded float Keras model of a recipe (weights=None: nothing downloaded). Keras'
    session is cleared first, so layer and tensor names (stored in the `.tflite`) do not depend
    on what the process built before: the same recipe gives the same bytes."""
    import keras

    keras.backend.clear_session()
    keras.utils.set_random_seed(recipe["seed"])
    arch = recipe["arch"]
    if arch in ("mobilenet", "mobilenet_v2"):
        make = keras.applications.MobileNet if arch == "mobilenet" else keras.applications.MobileNetV2
        return make(input_shape=tuple(recipe["shape"]), alpha=recipe["alpha"], weights=None,
                    include_top=True, classes=recipe["classes"])
    if arch == "autoencoder":
        return autoencoder(recipe["widths"])
    raise ValueError(f"unknown architecture {arch!r}")


def autoencoder(widths: list[int]):
    """Dense autoencoder: Dense + BatchNormalization + ReLU for every hidden width, a linear
    Dense back to the input width (MLPerf Tiny's anomaly-detection layout)."""
    import keras

    L = keras.layers
    inp = keras.Input(shape=(widths[0],), name="features")
    x = inp
    for i, w in enumerate(widths[1:-1]):
        x = L.Dense(w, name=f"dense_{i}")(x)
        x = L.BatchNormalization(name=f"bn_{i}")(x)
        x = L.ReLU(name=f"relu_{i}")(x)
    out = L.Dense(widths[-1], name="reconstruction")(x)
    return keras.Model(inp, out, name="autoencoder")


def representative(recipe: dict, n: int = REP_SAMPLES) -> np.ndarray:
    """Seeded float inputs: uniform [-1, 1] images, standard-normal feature vectors."""
    rng = np.random.default_rng(1000 + recipe["seed"])
    if recipe["arch"] == "autoencoder":
        return rng.standard_normal((n, recipe["widths"][0])).astype(np.float32)
    return rng.uniform(-1.0, 1.0, (n, *recipe["shape"])).astype(np.float32)


def set_bn_statistics(model, x: np.ndarray) -> None:
    """Moving mean / variance of every BatchNormalization := its batch statistics on x (one
    training-mode pass with momentum 0; the inference-mode network then computes exactly that
    pass). Trainable weights are untouched."""
    import keras

    bns = [ly for ly in model.layers if isinstance(ly, keras.layers.BatchNormalization)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    model(x, training=True)
    for bn, m in zip(bns, saved):
        bn.momentum = m


def convert(recipe: dict) -> bytes:
    """The recipe's model as a full-integer `.tflite` (see the module docstring's variants)."""
    from aqedge.convert import convert_keras
    from aqedge.qat import calibrate, quantize_model
    from aqedge.train import quantize_and_finetune

    model = float_model(recipe)
    rep = representative(recipe)
    set_bn_statistics(model, rep)
    quant = recipe["quant"]
    if quant == "int8":
        # runtime="tflm": convert whatever TFLite Micro runs; the build says what aqedge runs
        return convert_keras(model, rep, runtime="tflm")   # convert_int8, quietly
    if quant == "w4a8":
        qat = quantize_model(model, weight_bits=4, activation_bits=8, first_last_bits=8)
        calibrate(qat, rep, batches=1, batch_size=len(rep))
        return convert_keras(qat, rep, runtime="tflm")
    if quant == "w4a4":
        x = representative(recipe, 2 * REP_SAMPLES)
        y = np.random.default_rng(recipe["seed"]).integers(0, recipe["classes"], len(x))
        qat = quantize_and_finetune(model, x, y, QAT_EPOCHS, seed=recipe["seed"],
                                    calibration_samples=len(rep),
                                    weight_bits=4, activation_bits=4, first_last_bits=8)
        return convert_keras(qat, rep, runtime="tflm")
    raise ValueError(f"unknown quantization {quant!r}")


def model_path(name: str, say=print) -> Path:
    """The cached `.tflite` of zoo model `name`, built (and cached) when missing."""
    if name not in ZOO:
        raise KeyError(f"no zoo model {name!r}; choose from {', '.join(ZOO)}")
    path = cache_dir() / recipe_key(name) / file_name(name)
    if path.is_file():
        return path
    say(f"bench/zoo.py: building {name} ({json.dumps(ZOO[name])}) into {path}")
    data = convert(ZOO[name])
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / "recipe.json").write_text(json.dumps({name: ZOO[name]}, indent=1) + "\n")
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def zoo_models(names: list[str], say=print) -> list[Path]:
    """The cached `.tflite` of each name, in order."""
    return [model_path(n, say) for n in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(ZOO),
                        help=f"comma-separated, of: {', '.join(ZOO)}")
    parser.add_argument("--list", action="store_true", help="list the recipes and exit")
    args = parser.parse_args()
    if args.list:
        for name, recipe in ZOO.items():
            print(f"{name}: {file_name(name)} {json.dumps(recipe)}")
        return
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in ZOO]
    if unknown:
        sys.exit(f"bench/zoo.py: unknown model(s) {', '.join(unknown)}; choose from {', '.join(ZOO)}")
    for name, path in zip(names, zoo_models(names, lambda s: print(s, file=sys.stderr, flush=True))):
        print(f"{name}\t{path}", flush=True)


if __name__ == "__main__":
    main()
