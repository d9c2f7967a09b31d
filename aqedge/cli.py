"""The `aqedge` command line: one verb per pipeline stage, and `run` for all of them."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .errors import AqError

# TensorFlow's C++ logging drowns the progress bars; warnings and errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

app = typer.Typer(
    help="aqedge: adaptive 4-bit QAT -> INT4 TFLite -> bit-exact firmware -> measured on the board.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
# soft_wrap: a message is never broken inside a path when the terminal (or a log's 80 columns)
# is narrower; tables still fit the width.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def _board(name: str):
    from .boards import resolve

    board, note = resolve(name)
    if note:
        console.print(f"[dim]{note}[/dim]")
    return board


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=console, transient=False)


@app.command()
def boards() -> None:
    """List the boards aqedge can build for, flash and measure."""
    from .boards import all_boards

    table = Table(title="aqedge boards")
    table.add_column("board", no_wrap=True)
    for col in ("family", "core", "clock", "flash", "RAM", "runs as", "flashing"):
        table.add_column(col, overflow="fold")
    for b in all_boards():
        status = ("emulated (QEMU)" if b.emulated else
                  "real, verified on hardware" if b.verified_on_hardware else
                  "real, NOT verified on hardware")
        from .flash import available_tools

        tools = [b.flash_method] + [t for t in available_tools(b) if t != b.flash_method]
        table.add_row(b.name + ("*" if b.family_default else "") + ("+" if b.core_default else ""),
                      b.family, b.core,
                      f"{b.clock_hz / 1e6:g} MHz", f"{b.flash_bytes // 1024} KiB",
                      f"{b.ram_bytes // 1024} KiB", status, ", ".join(tools))
    console.print(table)
    console.print("* the family's default: `--board <family>` picks it. + the core's default: "
                  "`--board cortex-m4` / `--board cortex-m7` picks it. Real boards build and link "
                  "here; their board support is written from the reference manuals and has not "
                  "run on a board yet.")


def _project():
    from . import config

    return config.find()


def _data(data: Optional[str], rescale: Optional[str], project, split: str, default: str | None):
    """The data spec of `--data` / `--rescale`, else the project's `split` data, else `default`."""
    from .datasets import DataSpec, parse_rescale

    scale = parse_rescale(rescale)
    if data:
        return DataSpec(data, scale if rescale is not None else project.rescale if project else None)
    if project is not None and project.data(split) is not None:
        spec = project.data(split)
        return DataSpec(spec.spec, scale) if rescale is not None else spec
    return None if default is None else DataSpec(default, scale)


def _parse_layer_bits(items: list[str]) -> dict[str, int]:
    """`["conv2d=8", ...]` → `{"conv2d": 8}`; a malformed item is a user error."""
    out = {}
    for item in items:
        name, sep, bits = item.rpartition("=")
        if not sep or not name or not bits.strip().isdigit():
            raise AqError(f"--layer-bits {item!r}: expected LAYER=BITS, e.g. --layer-bits conv2d=8")
        out[name] = int(bits)
    return out


def _probe(folder: Path, what: str, path: Path) -> None:
    """Create and remove a file in `folder` (or its nearest existing parent): the one sure test
    that an output can be written there (os.access says yes to root on a read-only /proc)."""
    import tempfile

    probe = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    if not probe.is_dir():
        raise AqError(f"{what} {path}: {probe} is a file, not a folder")
    try:
        fd, name = tempfile.mkstemp(dir=probe, prefix=".aqedge-probe-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise AqError(f"{what} {path}: cannot write in {probe} ({exc.strerror})") from None


def _writable(path: Path, what: str) -> Path:
    """Refuse an output file that cannot be written before any long work starts."""
    if path.is_dir():
        raise AqError(f"{what} {path} is a folder: give a file name")
    _probe(path.parent if str(path.parent) else Path("."), what, path)
    return path


def _writable_dir(path: Path, what: str) -> Path:
    """Refuse an output folder that cannot be made or written before any long work starts."""
    if path.exists() and not path.is_dir():
        raise AqError(f"{what} {path} is a file, not a folder")
    _probe(path, what, path)
    return path


def _at_least(value, low, what: str):
    """`value` (if given) must be a finite number >= low."""
    if value is not None and not (value == value and abs(value) != float("inf") and value >= low):
        raise AqError(f"{what} {value}: must be {'a finite number ' if isinstance(value, float) else ''}"
                      f"{'at least ' + str(low) if low else '0 or more'}")
    return value


DATA_HELP = ("Data: a .npz (x, y or x_train/y_train/x_test/y_test), a folder with one subfolder "
             "per class (images or .npy files), or fashion-mnist / mnist.")
RESCALE_HELP = "Multiply every value read by this (e.g. 1/255 for images read as 0..255)."


@app.command()
def quantize(model: Optional[Path] = typer.Argument(None, help="Float Keras model (.keras); default: the project's model."),
             data: Optional[str] = typer.Option(None, "--data", "--dataset", "-d", help=DATA_HELP + " Default: the project's train data, else fashion-mnist."),
             rescale: Optional[str] = typer.Option(None, "--rescale", help=RESCALE_HELP),
             weight_bits: Optional[int] = typer.Option(None, "--weight-bits", help="Bits of conv/dense weights [default: 4]."),
             activation_bits: Optional[int] = typer.Option(None, "--activation-bits", help="Bits of activations [default: 4]."),
             first_last_bits: Optional[int] = typer.Option(None, "--first-last-bits", help="Bits of the first and last layer's weights [default: 8]."),
             shift: Optional[bool] = typer.Option(None, "--shift/--no-shift", help="Learn the activation shift (adaptive, the default) or not (LSQ)."),
             layer_bits: list[str] = typer.Option([], "--layer-bits", metavar="LAYER=BITS", help="Bits of one named layer's weights and output (mixed precision); repeatable."),
             epochs: Optional[int] = typer.Option(None, "--epochs", help="Quantization-aware fine-tuning epochs [default: 2]."),
             lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate of the fine-tuning (Adam, cosine decay) [default: 5e-4]."),
             distill: Optional[float] = typer.Option(None, "--distill", help="Distil the float model: weight (0-1) of its predictions in the training targets [default: 0]."),
             limit: Optional[int] = typer.Option(None, "--limit", help="Train on the first N samples only (quick runs)."),
             seed: Optional[int] = typer.Option(None, "--seed", help="Random seed [default: 0]."),
             out: Path = typer.Option(Path("qat.keras"), "-o", "--out", help="Where to save the QAT model.")) -> None:
    """Wrap a float Keras model with learned-scale-and-shift quantizers and fine-tune it (QAT).

    Inside a project the settings default to its [quantize] section; options override them.
    """
    from dataclasses import replace

    from .config import QuantizeSettings, check_quantize
    from .atomic import save_atomic
    from .pipeline import load_keras, quantize_float

    project = _project()
    _at_least(limit, 1, "--limit")
    given = dict(weight_bits=weight_bits, activation_bits=activation_bits, shift=shift,
                 first_last_bits=first_last_bits, epochs=epochs, lr=lr, distill=distill,
                 limit=limit, seed=seed)
    settings = replace(project.quantize if project else QuantizeSettings(),
                       **{k: v for k, v in given.items() if v is not None})
    if layer_bits:
        settings.layer_bits = _parse_layer_bits(layer_bits)
    check_quantize(settings, "--")
    if out.suffix != ".keras":
        raise AqError(f"-o {out}: a QAT model is saved as .keras")
    _writable(out, "-o")
    model = model or (project.model if project else None)
    if model is None:
        raise AqError("no model: give the float .keras to quantize, or run `aqedge init --model M`")
    spec = _data(data, rescale, project, "train", "fashion-mnist")
    spec.kind  # noqa: B018  (a missing or unusable --data stops here, before the model loads)
    qat_model = quantize_float(load_keras(model), spec, settings, console, _progress)
    save_atomic(qat_model.save, out)
    console.print(f"wrote {out}")


@app.command()
def convert(model: Path = typer.Argument(..., help="A QAT model from `aqedge quantize`, or a float Keras model."),
            data: Optional[str] = typer.Option(None, "--data", "--dataset", "-d", help="Calibration data. " + DATA_HELP + " Default: the project's train data, else fashion-mnist."),
            rescale: Optional[str] = typer.Option(None, "--rescale", help=RESCALE_HELP),
            out: Path = typer.Option(Path("model.tflite"), "-o", "--out", help="Where to write the .tflite."),
            runtime: str = typer.Option("aqedge", "--runtime", help="aqedge (refuse ops the aqedge runtime lacks) or tflm (any op TensorFlow Lite Micro runs).")) -> None:
    """Convert a Keras model to a full-integer .tflite (INT4 weights for a 4-bit QAT model)."""
    from .convert import convert_keras
    from .atomic import save_atomic
    from .pipeline import load_keras, read_data

    _writable(out, "-o")
    if out.suffix != ".tflite":
        raise AqError(f"-o {out}: a converted model is saved as .tflite")
    if runtime not in ("aqedge", "tflm"):
        raise AqError(f"unknown runtime '{runtime}': use aqedge or tflm")
    spec = _data(data, rescale, _project(), "train", "fashion-mnist")
    spec.kind  # noqa: B018
    keras_model = load_keras(model)
    x = read_data(spec, "train", keras_model, need_labels=False).x
    with console.status(f"converting {model}"):
        tflite = convert_keras(keras_model, x, runtime)
    save_atomic(lambda tmp: tmp.write_bytes(tflite), out)
    console.print(f"wrote {out} ({out.stat().st_size:,} bytes)")


@app.command()
def inspect(model: Path = typer.Argument(..., help="A .tflite model.")) -> None:
    """Show a .tflite's ops, tensor types and bit widths, weight bytes and arena size."""
    from .inspect import inspect_model, inspect_table

    console.print(inspect_table(inspect_model(model)))


def _board_of(board: Optional[str], project) -> str:
    name = board or (project.board if project else None)
    if not name:
        where = f"set [build] board in {project.path}" if project else "or run `aqedge init --board B`"
        raise AqError(f"no board: give --board B (`aqedge boards` lists them), {where}")
    return name


def _default_dir(b, project, runtime: str = "aqedge") -> Path:
    from .codegen.build import default_build_dir

    base = project.build_dir / b.name if project else default_build_dir(b)
    return Path(f"{base}-tflm") if runtime == "tflm" else base


@app.command()
def build(board: Optional[str] = typer.Option(None, "--board", "-b", help="Board name or family (e.g. stm32); default: the project's board."),
          model: Optional[Path] = typer.Option(None, "--model", "-m", help="A full-integer .tflite, or a .keras (a float one is quantized on --data first); default: the project's model."),
          data: Optional[str] = typer.Option(None, "--data", "-d", help="Training and calibration data for a .keras model. " + DATA_HELP + " Default: the project's."),
          rescale: Optional[str] = typer.Option(None, "--rescale", help=RESCALE_HELP),
          out: Optional[Path] = typer.Option(None, "-o", "--out", help="Build directory (default build/<board>, build/<board>-tflm for --runtime tflm); qat.keras and model.tflite of a .keras model go next to it."),
          runtime: Optional[str] = typer.Option(None, "--runtime", help="aqedge (default: generated C) or tflm (TensorFlow Lite Micro's interpreter, compiled from --tflm-tree)."),
          tflm_tree: Optional[Path] = typer.Option(None, "--tflm-tree", help="With --runtime tflm: a TensorFlow Lite Micro source tree (create_tflm_tree.py; reference or CMSIS-NN kernels). Default: $TFLM_TREE."),
          activation_storage: Optional[str] = typer.Option(None, "--activation-storage", help="packed: 4-bit activation tensors two codes a byte (about half the arena of a W4A4 model, for more instructions); int8: a byte each; auto (default): packed only when the int8 arena does not fit the board.")) -> None:
    """Generate C for a model and cross-compile a firmware image for a board.

    Inside a project (aqedge.toml here or above) `aqedge build --board B` needs nothing else: a
    .keras model runs through quantize and convert first, each stage redone only when its input
    or settings changed.
    """
    from .codegen.build import build as build_firmware
    from .config import QuantizeSettings
    from .pipeline import prepare_tflite

    project = _project()
    b = _board(_board_of(board, project))
    runtime = runtime or (project.runtime if project else "aqedge")
    if runtime not in ("aqedge", "tflm"):
        raise AqError(f"unknown runtime '{runtime}': use aqedge or tflm")
    model = model or (project.model if project else None)
    if model is None:
        raise AqError("no model to build: give --model M.tflite (or a .keras), or run "
                      "`aqedge init --model M` to make a project here")
    if model.suffix not in (".tflite", ".keras"):
        raise AqError(f"{model}: expected a .tflite model (or a .keras one, which aqedge "
                      "quantizes and converts first)")
    if not model.is_file():
        raise AqError(f"--model {model}: file not found")
    storage = activation_storage or (project.activation_storage if project else "auto")
    if storage not in ("auto", "packed", "int8"):
        raise AqError(f"--activation-storage {storage}: use auto, packed or int8")
    if runtime == "tflm" and activation_storage is not None:
        raise AqError("--activation-storage goes with the aqedge runtime (TFLite Micro stores int8)")
    out_dir = _writable_dir(out or _default_dir(b, project, runtime), "-o")
    if runtime == "tflm":
        from .codegen.tflm import open_tree

        tree = open_tree(tflm_tree)  # a missing or wrong tree stops here, before any work
    elif tflm_tree is not None:
        raise AqError("--tflm-tree goes with --runtime tflm")
    train = _data(data, rescale, project, "train", None)
    if train is not None and (data or model.suffix == ".keras"):
        train.kind  # noqa: B018  (a missing --data stops here)
    settings = project.quantize if project else QuantizeSettings()
    tflite = prepare_tflite(model, out_dir.parent, train, settings, console, _progress, runtime)
    if runtime == "tflm":
        from .codegen.tflm import build_tflm

        with _progress() as bar:
            task = bar.add_task(f"TFLite Micro ({tree.kind}) for {b.core}", total=None)
            info = build_tflm(tflite, b, out_dir, tree.root,
                              progress=lambda done, total: bar.update(task, completed=done, total=total))
        console.print(f"[green]built[/green] {out_dir / info.elf} (TFLite Micro, {info.tflm_kernels} kernels, "
                      f"TFLM sources compiled: {info.tflm_sources}): "
                      f"{info.ops} ops, arena {info.arena_bytes:,} B, flash {info.flash_bytes:,} / "
                      f"{b.flash_bytes:,} B, RAM {info.ram_bytes:,} / {b.ram_bytes:,} B")
        return
    with console.status(f"building {tflite} for {b.name}"):
        info = build_firmware(tflite, b, out_dir, storage)
    console.print(f"[green]built[/green] {out_dir / info.elf}: {info.ops} ops, arena {info.arena_bytes:,} B, "
                  f"flash {info.flash_bytes:,} / {b.flash_bytes:,} B, RAM {info.ram_bytes:,} / {b.ram_bytes:,} B")
    console.print(info.storage_line())


@app.command()
def init(directory: Path = typer.Argument(Path("."), help="The project folder (created if missing)."),
         model: Path = typer.Option(..., "--model", "-m", help="Your model: a float or QAT .keras, or a full-integer .tflite."),
         data: Optional[str] = typer.Option(None, "--data", "-d", help="Training data (test data too unless --test-data). " + DATA_HELP),
         test_data: Optional[str] = typer.Option(None, "--test-data", help="Test data for `aqedge measure`, if not --data."),
         rescale: Optional[str] = typer.Option(None, "--rescale", help=RESCALE_HELP),
         board: Optional[str] = typer.Option(None, "--board", "-b", help="The default board of `build`, `flash` and `measure`."),
         force: bool = typer.Option(False, "--force", help="Overwrite an existing aqedge.toml.")) -> None:
    """Make an aqedge project: write aqedge.toml (model, data, board, quantization settings)."""
    from . import config
    from .datasets import DataSpec, parse_rescale

    path = directory / config.FILENAME
    if path.exists() and not force:
        raise AqError(f"{path} exists: edit it, or give --force to write a new one")
    if directory.exists() and not directory.is_dir():
        raise AqError(f"{directory} is a file, not a folder")
    if not model.is_file() or model.suffix not in config.MODEL_SUFFIXES:
        raise AqError(f"--model {model}: expected an existing .keras or .tflite file")
    parse_rescale(rescale)
    if board:
        _board(board)
    specs = {}
    for key, spec in (("train", data), ("test", test_data)):
        if spec:
            DataSpec(spec).kind  # noqa: B018  (raises on a missing or unusable spec)
            specs[key] = spec if spec in ("fashion-mnist", "mnist") else config.relative(Path(spec), directory)
    text = config.render(config.relative(model, directory), specs.get("train"), specs.get("test"),
                         rescale, board)
    directory.mkdir(parents=True, exist_ok=True)
    from .atomic import save_atomic

    save_atomic(lambda tmp: tmp.write_text(text), path)
    console.print(f"wrote {path}")
    console.print(f"next: aqedge build{'' if board else ' --board B'}, then aqedge measure"
                  f"{'' if board else ' --board B'}")


@app.command()
def flash(board: Optional[str] = typer.Option(None, "--board", "-b", help="Board name or family; default: the project's board."),
          build_dir: Optional[Path] = typer.Argument(None, help="Build directory (default build/<board>)."),
          tool: Optional[str] = typer.Option(None, "--tool", "-t", help="openocd, st-flash, pyocd or qemu (default: the board file's method)."),
          probe: Optional[str] = typer.Option(None, "--probe", help="Serial number of the debug probe, when several are connected.")) -> None:
    """Flash a built firmware to the board (openocd / st-flash / pyocd); an emulated board boots in QEMU until Ctrl-C."""
    from .codegen.build import BuildInfo
    from .flash import boot_emulated, program

    project = _project()
    b = _board(_board_of(board, project))
    d = build_dir or _default_dir(b, project)
    info = BuildInfo.load(d)
    if info.board != b.name:
        raise AqError(f"{d} was built for {info.board}, not {b.name}")
    info.check_files(d)
    if not b.emulated:
        program(b, d, tool, probe, echo=lambda cmd: console.print(f"$ {cmd}", highlight=False, markup=False))
        console.print(f"[green]flashed[/green] {b.name} (not verified on hardware); measure it with: "
                      f"aqedge measure --board {b.name} {d} [--port /dev/ttyACM0]")
        return
    if tool not in (None, "qemu"):
        raise AqError(f"{b.name} is emulated: it runs in QEMU, not with {tool}")
    with boot_emulated(b, d / info.elf) as emulated:
        console.print(f"{b.name} running {d / info.elf} in QEMU; serial port: [bold]{emulated.url}[/bold]\n"
                      f"measure it with: aqedge measure --board {b.name} {d} --port {emulated.url}\n"
                      "Ctrl-C stops it.")
        try:
            emulated.process.wait()
        except KeyboardInterrupt:
            console.print("stopped")


def _samples_for(b, build_dir: Path, source, count: Optional[int], seed: int):
    """The samples a device is sent, loaded and checked against its build before it boots."""
    from .codegen.build import BuildInfo
    from .harness.samples import load_samples

    info = BuildInfo.load(build_dir)
    if info.board != b.name:
        raise AqError(f"{build_dir} was built for {info.board}, not {b.name}")
    info.check_files(build_dir)
    return load_samples(info, source, count, seed)


@app.command()
def measure(board: Optional[list[str]] = typer.Option(None, "--board", "-b", help="Board name or family; repeat it (with --port) to measure several devices at once. Default: the project's board."),
            build_dir: Optional[list[Path]] = typer.Argument(None, help="Build directory (default build/<board>); one for all boards, or one per --board."),
            port: Optional[list[str]] = typer.Option(None, "--port", "-p", help="pyserial URL or device (/dev/ttyACM0, socket://host:port, rfc2217://...), one per --board; 'qemu' or none: boot the emulated board."),
            data: Optional[str] = typer.Option(None, "--data", "--dataset", "-d", help="Test data: " + DATA_HELP + " Or random (seeded noise). Default: the project's test data, else fashion-mnist."),
            rescale: Optional[str] = typer.Option(None, "--rescale", help=RESCALE_HELP),
            samples: Optional[int] = typer.Option(None, "--samples", "-n", help="How many samples to measure (default: all of your own test data; 100 of a built-in dataset or of random)."),
            seed: int = typer.Option(0, "--seed", help="Seed of --data random."),
            output: Optional[Path] = typer.Option(None, "-o", "--output", help="Where to write metrics.json (default: metrics.json here, or in the project's build folder); results stream to <output>.jsonl, report.md and PNG plots go next to it. With several devices: <stem>.<device>.json each, plus a comparison report."),
            resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its .jsonl results log (same options)."),
            profile: bool = typer.Option(False, "--profile", help="Also time every op on the device (per-layer profile)."),
            profile_samples: int = typer.Option(10, "--profile-samples", help="How many samples --profile times op by op."),
            plots: bool = typer.Option(True, "--plots/--no-plots", help="Write report.md with PNG plots."),
            timeout: float = typer.Option(20.0, "--timeout", help="Seconds to wait for the device's READY.")) -> None:
    """Measure accuracy, bit-exactness and latency of a flashed model over its serial port(s)."""
    from .harness.report import (confusion_table, metrics_table, plot_comparison, save_metrics,
                                 write_device_outputs, write_report)
    from .harness.session import DEVICE_LOST, INTERRUPTED, Session, Target, measure_many, metrics

    project = _project()
    if not timeout > 0 or timeout != timeout or timeout == float("inf"):
        raise AqError(f"--timeout {timeout}: give a positive number of seconds")
    _at_least(samples, 1, "--samples")
    _at_least(profile_samples, 1, "--profile-samples")
    boards = [_board(name) for name in (board or [_board_of(None, project)])]
    source = _data(data, rescale, project, "test", "fashion-mnist")
    output = _writable(output or (project.build_dir / "metrics.json" if project else Path("metrics.json")), "-o")
    ports = list(port or [])
    if ports and len(ports) != len(boards):
        raise AqError(f"{len(boards)} --board but {len(ports)} --port: give one --port per --board "
                      "('qemu' boots the emulated board)")
    ports_or_none = [None if (not ports or ports[k] in ("qemu", "-", "")) else ports[k] for k in range(len(boards))]
    dirs = list(build_dir or [])
    if len(dirs) not in (0, 1, len(boards)):
        raise AqError(f"{len(boards)} --board but {len(dirs)} build directories: give none, one, or one per --board")
    dirs = [dirs[0] if len(dirs) == 1 else dirs[k] if dirs else _default_dir(b, project) for k, b in enumerate(boards)]
    labels: list[str] = []
    for b in boards:
        n = sum(1 for other in labels if other == b.name or other.startswith(b.name + "-"))
        labels.append(b.name if n == 0 else f"{b.name}-{n + 1}")
    several = len(boards) > 1
    stem = output.stem
    prefix = "" if stem == "metrics" else f"{stem}-"
    targets, metric_paths = [], []
    for b, d, pt, label in zip(boards, dirs, ports_or_none, labels):
        mpath = output.with_name(f"{stem}.{label}.json") if several else output
        metric_paths.append(mpath)
        targets.append(Target(b, d, pt, label, mpath.with_suffix(".jsonl"),
                              _samples_for(b, d, source, samples, seed)))

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as bar:
        tasks = [bar.add_task(f"measuring on {t.label}", total=samples or None, rate="") for t in targets]
        started: dict[int, tuple[float, int]] = {}

        def on_progress(k: int, done: int, total: int) -> None:
            import time as _time

            now = _time.monotonic()
            if k not in started:  # the first call: where a resumed run starts (not speed for the ETA)
                bar.reset(tasks[k], completed=done, total=total)
            t0, d0 = started.setdefault(k, (now, done))
            rate = f"{(done - d0) / (now - t0):.1f}/s" if now > t0 and done > d0 else ""
            bar.update(tasks[k], completed=done, rate=rate)

        outcomes = measure_many(targets, source, samples, seed, resume=resume, profile=profile,
                                profile_samples=profile_samples, ready_timeout=timeout, progress=on_progress)
    entries = []
    errors: list[str] = []
    statuses: list[str] = []
    for t, mpath, outcome in zip(targets, metric_paths, outcomes):
        if not isinstance(outcome, Session):
            if isinstance(outcome, KeyboardInterrupt):
                statuses.append(INTERRUPTED)
                continue
            if not isinstance(outcome, AqError):
                raise outcome
            errors.append(f"{t.label}: {outcome}" if several else str(outcome))
            continue
        m = metrics(outcome)
        save_metrics(m, mpath)
        statuses.append(m["status"])
        if m.get("reference_note"):
            console.print(f"[yellow]{escape(m['reference_note'])}[/yellow]")
        console.print(metrics_table(m))
        if m.get("confusion_matrix"):
            console.print(confusion_table(m))
        console.print(f"wrote {mpath} (results log {t.results_path})")
        if outcome.error:
            errors.append(f"{t.label}: {outcome.error}" if several else outcome.error)
        plot_prefix = f"{prefix}{t.label}-" if several else prefix
        entries.append((outcome, m, write_device_outputs(outcome, m, output.parent, plot_prefix) if plots else {}))
    if entries:
        report_path = output.parent / f"{prefix}report.md"
        comparison = None
        if several:
            comparison = plot_comparison([e[0] for e in entries], output.parent / f"{prefix}comparison.png") if plots else None
            files = {t.label: mp.name for t, mp in zip(targets, metric_paths)}
            save_metrics({"devices": [{"label": s.label, "metrics_file": files[s.label], **m} for s, m, _ in entries]},
                         output.parent / f"{prefix}comparison.json")
        write_report(entries, report_path, comparison)
        console.print(f"wrote {report_path}")
    for e in errors:
        err_console.print(f"[bold red]error:[/bold red] {escape(e)}", highlight=False, soft_wrap=True)
    if INTERRUPTED in statuses:
        err_console.print("interrupted: the metrics written are partial; continue with --resume")
        raise typer.Exit(130)
    if errors or DEVICE_LOST in statuses:
        if DEVICE_LOST in statuses:
            err_console.print("the results so far are kept: continue with --resume once the device is back")
        raise typer.Exit(2)


def _tflm_trees(given: list[Path]) -> list[Path]:
    """--tflm-tree DIR (repeatable), else $TFLM_TREE (see aqedge.codegen.tflm.trees_from_env)."""
    from .codegen.tflm_lib import check_tree, trees_from_env

    trees = list(given) or trees_from_env()
    if not trees:
        raise AqError("no TensorFlow Lite Micro tree: give --tflm-tree DIR (a tree made by TFLM's "
                      "create_tflm_tree.py, reference or CMSIS-NN kernels; repeatable) or set TFLM_TREE")
    for tree in trees:
        check_tree(tree)
    return trees


@app.command()
def compare(board: Optional[list[str]] = typer.Option(None, "--board", "-b", help="Board name or family; repeat it to compare on several boards at once. Default: the project's board."),
            model: Optional[Path] = typer.Option(None, "--model", "-m", help="A full-integer .tflite (default: the project's model, quantized and converted as `build` does)."),
            tflm_tree: list[Path] = typer.Option([], "--tflm-tree", help="A TensorFlow Lite Micro tree (create_tflm_tree.py; reference or CMSIS-NN kernels); repeatable. Default: $TFLM_TREE."),
            data: Optional[str] = typer.Option(None, "--data", "--dataset", "-d", help="Samples: " + DATA_HELP + " Or random (the default outside a project)."),
            rescale: Optional[str] = typer.Option(None, "--rescale", help=RESCALE_HELP),
            samples: Optional[int] = typer.Option(20, "--samples", "-n", help="How many samples each runtime is measured on."),
            seed: int = typer.Option(0, "--seed", help="Seed of --data random."),
            out: Optional[Path] = typer.Option(None, "-o", "--out", help="Where the builds and compare.{json,md,png} go (default build/compare).")) -> None:
    """Build a model with aqedge and with TensorFlow Lite Micro (each tree given), measure each on
    the same board(s) with the same inputs, and compare latency, memory and bit-exactness."""
    from .compare import compare as run_compare
    from .compare import markdown
    from .config import QuantizeSettings
    from .pipeline import prepare_tflite

    project = _project()
    _at_least(samples, 1, "--samples")
    boards = [_board(name) for name in (board or [_board_of(None, project)])]
    trees = _tflm_trees(tflm_tree)
    model = model or (project.model if project else None)
    if model is None:
        raise AqError("no model: give --model M.tflite, or run `aqedge init --model M`")
    if not model.is_file():
        raise AqError(f"--model {model}: file not found")
    out_dir = _writable_dir(out or ((project.build_dir if project else Path("build")) / "compare"), "-o")
    source = _data(data, rescale, project, "test", "random")
    tflite = prepare_tflite(model, out_dir.parent, _data(None, rescale, project, "train", None),
                            project.quantize if project else QuantizeSettings(), console, _progress)
    result = run_compare(tflite, boards, trees, source, samples, seed, out_dir,
                         say=lambda text: console.print(text, highlight=False, markup=False))
    console.print(markdown(result), markup=False, highlight=False, soft_wrap=True)
    console.print(f"wrote {out_dir / 'compare.json'}, compare.md, compare.png")


@app.command()
def run(board: str = typer.Option("stm32", "--board", "-b", help="Board name or family."),
        out: Path = typer.Option(Path("build/demo"), "-o", "--out", help="Where every stage writes its file."),
        epochs: int = typer.Option(2, "--epochs", help="Float training epochs of the example CNN."),
        qat_epochs: int = typer.Option(2, "--qat-epochs", help="Quantization-aware fine-tuning epochs."),
        samples: int = typer.Option(500, "--samples", "-n", help="Test images to measure on the board.")) -> None:
    """Run the whole pipeline on the built-in Fashion-MNIST example (trained models are cached)."""
    from .pipeline import run_example

    _at_least(epochs, 1, "--epochs")
    _at_least(qat_epochs, 0, "--qat-epochs")
    _at_least(samples, 1, "--samples")
    _writable_dir(out, "-o")
    run_example(_board(board), out, epochs, qat_epochs, samples, console, _progress)


def main() -> None:
    """Entry point: user errors are one line on stderr and exit code 2, never a traceback."""
    try:
        app()
    except AqError as exc:
        err_console.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False,
                          soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
