"""`aqedge run`: the whole pipeline on the built-in example, each stage's file under one folder.

    out/model.keras -> out/qat.keras -> out/model.tflite -> out/<board>/firmware.elf -> QEMU
    -> out/metrics.json

The example is a small ReLU CNN trained on Fashion-MNIST, then fine-tuned with adaptive W4A4
quantization (learned scale and shift, 4-bit weights everywhere but the first and last layer).
A stage whose output exists and is newer than its input is not redone (delete the file to redo
it); build and measure always run.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.progress import Progress

from . import datasets, example, tf_import
from .atomic import save_atomic
from .boards import Board
from .config import QuantizeSettings
from .datasets import Dataset, DataSpec, fit_to_model
from .errors import AqError
from .codegen.build import build
from .convert import convert_keras
from .harness.report import metrics_table, save_metrics, write_device_outputs, write_report
from .harness.session import metrics, run_session


def keras_progress(progress: Progress, description: str, epochs: int, steps: int):
    """A Keras callback that drives a rich progress bar and prints each epoch's loss/accuracy."""
    import keras

    class _Bar(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.task = progress.add_task(description, total=epochs * steps)

        def on_train_batch_end(self, batch, logs=None):
            progress.advance(self.task)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            progress.console.print(f"  epoch {epoch + 1}/{epochs}: loss {logs.get('loss', 0):.4f}, "
                                   f"accuracy {logs.get('accuracy', 0):.4f}")
    return _Bar()


def quantize_example(float_model, x, y, epochs: int, seed: int, console: Console,
                     make_progress: Callable[[], Progress], **quantize_kwargs):
    """Quantize `float_model` (aqedge.qat), calibrate on x, fine-tune `epochs` with a progress bar."""
    from .train import quantize_and_finetune

    with make_progress() as bar:
        cb = keras_progress(bar, "quantization-aware training", epochs, -(-len(x) // 64))
        return quantize_and_finetune(float_model, x, y, epochs, seed=seed, callbacks=[cb],
                                     **quantize_kwargs)


def _fresh(output: Path, source: Path | None = None) -> bool:
    """True when `output` exists and is not older than `source` (make's rule)."""
    if not output.is_file():
        return False
    return source is None or not source.is_file() or output.stat().st_mtime >= source.stat().st_mtime


def _cached(path: Path, console: Console):
    import keras

    from . import qat  # noqa: F401  (registers the quantized layers)

    console.print(f"[dim]using cached {path}[/dim]")
    return keras.models.load_model(path)


def run_example(board: Board, out: Path, epochs: int, qat_epochs: int, samples: int,
                console: Console, make_progress: Callable[[], Progress]) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    keras_path, qat_path, tflite_path = out / "model.keras", out / "qat.keras", out / "model.tflite"
    x, y = datasets.load("fashion-mnist", "train")
    if _fresh(keras_path):
        model = _cached(keras_path, console)
    else:
        with make_progress() as bar:
            cb = keras_progress(bar, "train float CNN (Fashion-MNIST)", epochs, -(-len(x) // 64))
            model = example.train_float(x, y, epochs=epochs, seed=0, callbacks=[cb])
        model.save(keras_path)
        console.print(f"train: wrote {keras_path}")
    if _fresh(qat_path, keras_path):
        qat_model = _cached(qat_path, console)
    else:
        qat_model = quantize_example(model, x, y, qat_epochs, 0, console, make_progress,
                                     weight_bits=4, activation_bits=4, first_last_bits=8)
        qat_model.save(qat_path)
        console.print(f"quantize: wrote {qat_path} (adaptive W4A4)")
    if not _fresh(tflite_path, qat_path):
        with console.status("convert: INT4 weights, int8 activations"):
            tflite_path.write_bytes(convert_keras(qat_model, x))
        console.print(f"convert: wrote {tflite_path} ({tflite_path.stat().st_size:,} bytes)")
    build_dir = out / board.name
    with console.status(f"build: C for {board.name}"):
        info = build(tflite_path, board, build_dir)
    console.print(f"build: {build_dir / info.elf} (flash {info.flash_bytes:,} B, RAM {info.ram_bytes:,} B, "
                  f"arena {info.arena_bytes:,} B)")
    with make_progress() as bar:
        task = bar.add_task(f"measure on {board.name}", total=samples)
        session = run_session(board, build_dir, "fashion-mnist", samples,
                              progress=lambda done, total: bar.update(task, completed=done))
    m = metrics(session)
    save_metrics(m, out / "metrics.json")
    write_report([(session, m, write_device_outputs(session, m, out))], out / "report.md")
    console.print(metrics_table(m))
    console.print(f"wrote {out / 'metrics.json'}, {out / 'report.md'} and its plots")
    return m


# ---- a user's project: model.keras -> build/qat.keras -> build/model.tflite --------------------

STAMPS = "stages.json"


def load_keras(path: Path):
    """A .keras model (aqedge's quantized layers registered), or one line saying why not."""
    path = Path(path)
    if not path.is_file():
        raise AqError(f"model file not found: {path}")
    if path.suffix != ".keras":
        raise AqError(f"{path}: expected a Keras model saved as .keras")
    keras = tf_import.keras()

    from . import qat  # noqa: F401  (registers the quantized layers for deserialisation)

    try:
        return keras.models.load_model(path)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise AqError(f"{path} could not be loaded as a Keras model: {first}") from None


def is_qat(model) -> bool:
    from .qat.layers import iter_quantizers

    return any(True for _ in iter_quantizers(model))


def model_signature(model) -> tuple[tuple[int, ...], int | None]:
    """(input shape without batch, number of outputs) of a single-input Keras model."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise AqError(f"model {model.name}: aqedge builds models with one input and one output "
                      f"(it has {len(model.inputs)} and {len(model.outputs)})")
    shape = tuple(int(d) for d in model.inputs[0].shape[1:] if d is not None)
    if len(shape) != len(model.inputs[0].shape) - 1:
        raise AqError(f"model {model.name}: its input shape {list(model.inputs[0].shape)} has a "
                      "free dimension besides the batch: give every sample dimension a size")
    out = model.outputs[0].shape[-1]
    return shape, None if out is None else int(out)


def read_data(spec: DataSpec, split: str, model, need_labels: bool) -> Dataset:
    """`spec`'s `split`, checked against `model`'s input shape and output count."""
    shape, classes = model_signature(model)
    return fit_to_model(spec.read(split, shape), shape, classes, need_labels=need_labels)


def _stamp(source: Path, settings: dict) -> dict:
    st = source.stat()
    return {"source": str(source.resolve()), "mtime_ns": st.st_mtime_ns, "size": st.st_size,
            **settings}


def _is_current(out: Path, stamp: dict) -> bool:
    stamps = out.parent / STAMPS
    try:
        known = json.loads(stamps.read_text()).get(out.name)
    except (OSError, ValueError):
        return False
    return out.is_file() and known == stamp


def _record(out: Path, stamp: dict) -> None:
    stamps = out.parent / STAMPS
    try:
        known = json.loads(stamps.read_text())
    except (OSError, ValueError):
        known = {}
    known[out.name] = stamp
    save_atomic(lambda tmp: tmp.write_text(json.dumps(known, indent=2) + "\n"), stamps)


def prepare_tflite(model_path: Path, out_dir: Path, train: DataSpec | None, q: QuantizeSettings,
                   console: Console, make_progress: Callable[[], Progress],
                   runtime: str = "aqedge") -> Path:
    """The .tflite to build from `model_path`: itself, or out_dir/model.tflite made by quantize
    (a float .keras, on `train`) and convert (for `runtime`: see `convert_keras`), each redone
    only when its input or settings changed since it was made (out_dir/stages.json)."""
    model_path = Path(model_path)
    if model_path.suffix == ".tflite":
        if not model_path.is_file():
            raise AqError(f"model file not found: {model_path}")
        return model_path
    model = load_keras(model_path)
    qat_path = model_path
    if not is_qat(model):
        qat_path = out_dir / "qat.keras"
        model = _quantize_stage(model, model_path, qat_path, train, q, console, make_progress)
    tflite_path = out_dir / "model.tflite"
    stamp = _stamp(qat_path, {"calibration": None if train is None else str(train)})
    if _is_current(tflite_path, stamp):
        console.print(f"[dim]convert: {tflite_path} is up to date[/dim]")
        return tflite_path
    model = model if model is not None else load_keras(qat_path)
    rep = None if train is None else read_data(train, "train", model, need_labels=False).x[:512]
    with console.status(f"convert: {qat_path} → INT4 weights, int8 activations"):
        data = convert_keras(model, rep, runtime)
    save_atomic(lambda tmp: tmp.write_bytes(data), tflite_path)
    _record(tflite_path, stamp)
    console.print(f"convert: wrote {tflite_path} ({len(data):,} bytes)")
    return tflite_path


def quantize_float(model, train: DataSpec, q: QuantizeSettings, console: Console,
                   make_progress: Callable[[], Progress]):
    """`model` quantized with settings `q` and fine-tuned on `train` (checked against it first)."""
    data = read_data(train, "train", model, need_labels=True)
    x, y = (data.x[:q.limit], data.y[:q.limit]) if q.limit else (data.x, data.y)
    console.print(f"quantize: {model.name} on {len(x):,} samples of {train}")
    return quantize_example(model, x, y, q.epochs, q.seed, console, make_progress, lr=q.lr,
                            weight_bits=q.weight_bits, activation_bits=q.activation_bits,
                            first_last_bits=q.first_last_bits, shift=q.shift,
                            distill=q.distill, layer_bits=dict(q.layer_bits))


def _quantize_stage(model, model_path: Path, qat_path: Path, train: DataSpec | None,
                    q: QuantizeSettings, console: Console, make_progress):
    """build/qat.keras from a float model (None when the cached one is current)."""
    stamp = _stamp(model_path, {"data": None if train is None else str(train),
                                          **asdict(q)})
    if _is_current(qat_path, stamp):
        console.print(f"[dim]quantize: {qat_path} is up to date[/dim]")
        return None
    if train is None:
        raise AqError(f"{model_path} is a float Keras model: quantization-aware training needs "
                      "data: give --data D (a .npz, a folder with one subfolder per class, or "
                      "fashion-mnist/mnist) or set [data] train in aqedge.toml")
    qat_model = quantize_float(model, train, q, console, make_progress)
    save_atomic(qat_model.save, qat_path)
    _record(qat_path, stamp)
    console.print(f"quantize: wrote {qat_path}")
    return qat_model
