"""The `aqedge` command line: one verb per pipeline stage, and `run` for all of them."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .errors import AqError

# TensorFlow's C++ logging drowns the progress bars; warnings and errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

app = typer.Typer(
    help="aqedge: adaptive 4-bit QAT -> INT4 TFLite -> bit-exact firmware -> measured on the board.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
console = Console()
err_console = Console(stderr=True)


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


def _load_keras(path: Path):
    if not path.is_file():
        raise AqError(f"model file not found: {path}")
    if path.suffix != ".keras":
        raise AqError(f"{path}: expected a Keras model saved as .keras")
    import keras

    from . import qat  # noqa: F401  (registers the quantized layers for deserialisation)

    try:
        return keras.models.load_model(path)
    except Exception as exc:
        raise AqError(f"{path} could not be loaded as a Keras model: {exc}") from None


def _parse_layer_bits(items: list[str]) -> dict[str, int]:
    """`["conv2d=8", ...]` → `{"conv2d": 8}`; a malformed item is a user error."""
    out = {}
    for item in items:
        name, sep, bits = item.rpartition("=")
        if not sep or not name or not bits.strip().isdigit():
            raise AqError(f"--layer-bits {item!r}: expected LAYER=BITS, e.g. --layer-bits conv2d=8")
        out[name] = int(bits)
    return out


@app.command()
def quantize(model: Path = typer.Argument(..., help="Float Keras model (.keras)."),
             dataset: str = typer.Option("fashion-mnist", "--dataset", "-d", help="Training data: fashion-mnist or mnist."),
             weight_bits: int = typer.Option(4, "--weight-bits", help="Bits of conv/dense weights."),
             activation_bits: int = typer.Option(4, "--activation-bits", help="Bits of activations."),
             first_last_bits: int = typer.Option(8, "--first-last-bits", help="Bits of the first and last layer's weights."),
             shift: bool = typer.Option(True, "--shift/--no-shift", help="Learn the activation shift (adaptive) or not (LSQ)."),
             layer_bits: list[str] = typer.Option([], "--layer-bits", metavar="LAYER=BITS", help="Bits of one named layer's weights and output (mixed precision); repeatable."),
             epochs: int = typer.Option(2, "--epochs", help="Quantization-aware fine-tuning epochs."),
             lr: float = typer.Option(5e-4, "--lr", help="Peak learning rate of the fine-tuning (Adam, cosine decay)."),
             distill: float = typer.Option(0.0, "--distill", help="Distil the float model: weight (0-1) of its predictions in the training targets."),
             limit: Optional[int] = typer.Option(None, "--limit", help="Train on the first N images only (quick runs)."),
             seed: int = typer.Option(0, "--seed", help="Random seed."),
             out: Path = typer.Option(Path("qat.keras"), "-o", "--out", help="Where to save the QAT model.")) -> None:
    """Wrap a float Keras model with learned-scale-and-shift quantizers and fine-tune it (QAT)."""
    from . import datasets
    from .pipeline import quantize_example

    if not lr > 0:
        raise AqError(f"--lr {lr}: the learning rate must be positive")
    overrides = _parse_layer_bits(layer_bits)
    float_model = _load_keras(model)
    x, y = datasets.load(dataset, "train")
    x, y = x[:limit], y[:limit]
    qat_model = quantize_example(float_model, x, y, epochs, seed, console, _progress, lr=lr,
                                 weight_bits=weight_bits, activation_bits=activation_bits,
                                 first_last_bits=first_last_bits, shift=shift, distill=distill,
                                 layer_bits=overrides)
    qat_model.save(out)
    console.print(f"wrote {out}")


@app.command()
def convert(model: Path = typer.Argument(..., help="A QAT model from `aqedge quantize`, or a float Keras model."),
            dataset: str = typer.Option("fashion-mnist", "--dataset", "-d", help="Calibration data."),
            out: Path = typer.Option(Path("model.tflite"), "-o", "--out", help="Where to write the .tflite.")) -> None:
    """Convert a Keras model to a full-integer .tflite (INT4 weights for a 4-bit QAT model)."""
    from . import datasets
    from .convert import convert_keras

    keras_model = _load_keras(model)
    x, _ = datasets.load(dataset, "train")
    with console.status(f"converting {model}"):
        out.write_bytes(convert_keras(keras_model, x))
    console.print(f"wrote {out} ({out.stat().st_size:,} bytes)")


@app.command()
def inspect(model: Path = typer.Argument(..., help="A .tflite model.")) -> None:
    """Show a .tflite's ops, tensor types and bit widths, weight bytes and arena size."""
    from .inspect import inspect_model, inspect_table

    console.print(inspect_table(inspect_model(model)))


@app.command()
def build(board: str = typer.Option(..., "--board", "-b", help="Board name or family (e.g. stm32)."),
          model: Path = typer.Option(..., "--model", "-m", help="A full-integer .tflite model."),
          out: Optional[Path] = typer.Option(None, "-o", "--out", help="Build directory (default build/<board>, build/<board>-tflm for --runtime tflm)."),
          runtime: str = typer.Option("aqedge", "--runtime", help="aqedge (default: generated C, compiled here) or tflm (a TFLite Micro project to build in your TFLM tree; not compiled here).")) -> None:
    """Generate C for a .tflite model and cross-compile a firmware image for a board."""
    from .codegen.build import build as build_firmware, default_build_dir

    b = _board(board)
    if runtime == "tflm":
        from .codegen.tflm import export_tflm

        out_dir = out or Path(f"{default_build_dir(b)}-tflm")
        with console.status(f"exporting {model} as a TFLite Micro project for {b.name}"):
            export = export_tflm(model, b, out_dir)
        console.print(f"[green]wrote[/green] TFLite Micro project {out_dir}: {len(export.ops)} op types "
                      f"({', '.join(export.ops)}), arena {export.arena_bytes:,} B. Not compiled here "
                      f"(needs TFLM's sources): see {out_dir / 'README.md'}")
        return
    if runtime != "aqedge":
        raise AqError(f"unknown runtime '{runtime}': use aqedge or tflm")
    out_dir = out or default_build_dir(b)
    with console.status(f"building {model} for {b.name}"):
        info = build_firmware(model, b, out_dir)
    console.print(f"[green]built[/green] {out_dir / info.elf}: {info.ops} ops, arena {info.arena_bytes:,} B, "
                  f"flash {info.flash_bytes:,} / {b.flash_bytes:,} B, RAM {info.ram_bytes:,} / {b.ram_bytes:,} B")


@app.command()
def flash(board: str = typer.Option(..., "--board", "-b", help="Board name or family."),
          build_dir: Optional[Path] = typer.Argument(None, help="Build directory (default build/<board>)."),
          tool: Optional[str] = typer.Option(None, "--tool", "-t", help="openocd, st-flash, pyocd or qemu (default: the board file's method)."),
          probe: Optional[str] = typer.Option(None, "--probe", help="Serial number of the debug probe, when several are connected.")) -> None:
    """Flash a built firmware to the board (openocd / st-flash / pyocd); an emulated board boots in QEMU until Ctrl-C."""
    from .codegen.build import BuildInfo, default_build_dir
    from .flash import boot_emulated, program

    b = _board(board)
    d = build_dir or default_build_dir(b)
    info = BuildInfo.load(d)
    if info.board != b.name:
        raise AqError(f"{d} was built for {info.board}, not {b.name}")
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


@app.command()
def measure(board: list[str] = typer.Option(..., "--board", "-b", help="Board name or family; repeat it (with --port) to measure several devices at once."),
            build_dir: Optional[list[Path]] = typer.Argument(None, help="Build directory (default build/<board>); one for all boards, or one per --board."),
            port: Optional[list[str]] = typer.Option(None, "--port", "-p", help="pyserial URL or device (/dev/ttyACM0, socket://host:port, rfc2217://...), one per --board; 'qemu' or none: boot the emulated board."),
            dataset: str = typer.Option("fashion-mnist", "--dataset", "-d", help="fashion-mnist, mnist or random."),
            samples: int = typer.Option(100, "--samples", "-n", help="How many samples to measure."),
            seed: int = typer.Option(0, "--seed", help="Seed of --dataset random."),
            output: Path = typer.Option(Path("metrics.json"), "-o", "--output", help="Where to write metrics.json; results stream to <output>.jsonl, report.md and PNG plots go next to it. With several devices: <stem>.<device>.json each, plus a comparison report."),
            resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its .jsonl results log (same options)."),
            profile: bool = typer.Option(False, "--profile", help="Also time every op on the device (per-layer profile)."),
            profile_samples: int = typer.Option(10, "--profile-samples", help="How many samples --profile times op by op."),
            plots: bool = typer.Option(True, "--plots/--no-plots", help="Write report.md with PNG plots."),
            timeout: float = typer.Option(20.0, "--timeout", help="Seconds to wait for the device's READY.")) -> None:
    """Measure accuracy, bit-exactness and latency of a flashed model over its serial port(s)."""
    from .codegen.build import default_build_dir
    from .harness.report import metrics_table, plot_comparison, save_metrics, write_device_outputs, write_report
    from .harness.session import DEVICE_LOST, INTERRUPTED, Session, Target, measure_many, metrics

    boards = [_board(name) for name in board]
    ports = list(port or [])
    if ports and len(ports) != len(boards):
        raise AqError(f"{len(boards)} --board but {len(ports)} --port: give one --port per --board "
                      "('qemu' boots the emulated board)")
    ports_or_none = [None if (not ports or ports[k] in ("qemu", "-", "")) else ports[k] for k in range(len(boards))]
    dirs = list(build_dir or [])
    if len(dirs) not in (0, 1, len(boards)):
        raise AqError(f"{len(boards)} --board but {len(dirs)} build directories: give none, one, or one per --board")
    dirs = [dirs[0] if len(dirs) == 1 else dirs[k] if dirs else default_build_dir(b) for k, b in enumerate(boards)]
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
        targets.append(Target(b, d, pt, label, mpath.with_suffix(".jsonl")))

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as bar:
        tasks = [bar.add_task(f"measuring on {t.label}", total=samples, rate="") for t in targets]
        started: dict[int, tuple[float, int]] = {}

        def on_progress(k: int, done: int, total: int) -> None:
            import time as _time

            now = _time.monotonic()
            if k not in started:  # the first call: where a resumed run starts (not speed for the ETA)
                bar.reset(tasks[k], completed=done)
            t0, d0 = started.setdefault(k, (now, done))
            rate = f"{(done - d0) / (now - t0):.1f}/s" if now > t0 and done > d0 else ""
            bar.update(tasks[k], completed=done, rate=rate)

        outcomes = measure_many(targets, dataset, samples, seed, resume=resume, profile=profile,
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
        console.print(metrics_table(m))
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
        err_console.print(f"[bold red]error:[/bold red] {e}", highlight=False, soft_wrap=True)
    if INTERRUPTED in statuses:
        err_console.print("interrupted: the metrics written are partial; continue with --resume")
        raise typer.Exit(130)
    if errors or DEVICE_LOST in statuses:
        if DEVICE_LOST in statuses:
            err_console.print("the results so far are kept: continue with --resume once the device is back")
        raise typer.Exit(2)


@app.command()
def run(board: str = typer.Option("stm32", "--board", "-b", help="Board name or family."),
        out: Path = typer.Option(Path("build/demo"), "-o", "--out", help="Where every stage writes its file."),
        epochs: int = typer.Option(2, "--epochs", help="Float training epochs of the example CNN."),
        qat_epochs: int = typer.Option(2, "--qat-epochs", help="Quantization-aware fine-tuning epochs."),
        samples: int = typer.Option(500, "--samples", "-n", help="Test images to measure on the board.")) -> None:
    """Run the whole pipeline on the built-in Fashion-MNIST example (trained models are cached)."""
    from .pipeline import run_example

    run_example(_board(board), out, epochs, qat_epochs, samples, console, _progress)


def main() -> None:
    """Entry point: user errors are one line on stderr and exit code 2, never a traceback."""
    try:
        app()
    except AqError as exc:
        err_console.print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
