"""`aqedge run`: the whole pipeline on the built-in example, each stage's file under one folder.

    out/model.keras -> out/qat.keras -> out/model.tflite -> out/<board>/firmware.elf -> QEMU
    -> out/metrics.json

The example is a small ReLU CNN trained on Fashion-MNIST, then fine-tuned with adaptive W4A4
quantization (learned scale and shift, 4-bit weights everywhere but the first and last layer).
A stage whose output exists and is newer than its input is not redone (delete the file to redo
it); build and measure always run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.progress import Progress

from . import datasets, example
from .boards import Board
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
