"""`aqedge compare`: one model, aqedge's runtime against TensorFlow Lite Micro, on the same board
with the same inputs, in one run.

For each board the model is built with aqedge's generated C and with each TFLM tree given
(reference kernels and/or CMSIS-NN, told apart by `third_party/cmsis_nn/`); each build is measured
on the board (booted in QEMU when emulated; flashed in turn when real) on the same samples, each
output checked against the host TFLite Micro interpreter. Boards run concurrently.

Figures per runtime: median latency in the board's unit (instructions under QEMU `-icount
shift=0`, cycles on hardware), latency per MAC, arena, RAM, flash, code without the model's
weights (flash minus the model data arrays), bit-exact samples, and each figure's ratio to
aqedge's. Written as compare.json, compare.md and compare.png.
"""

from __future__ import annotations

import re
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .boards import Board
from .codegen.build import BuildInfo, build
from .codegen.graph import read_tflite
from .codegen.lower import lower
from .errors import AqError
from .harness.report import save_metrics
from .harness.samples import Samples, load_samples
from .harness.session import metrics, run_session
from .inspect import count_macs

AQEDGE = "aqedge"
#: Symbols holding the model's constant data: aqedge's per-op arrays, TFLM's flatbuffer array.
MODEL_DATA_SYMBOL = re.compile(r"op\d+_\w+|g_aq_model_data")


@dataclass
class Contender:
    """One runtime on one board: how it was built and what it measured."""

    label: str                      # "aqedge", "tflm+cmsis-nn", "tflm-ref", ...
    build_dir: Path
    info: BuildInfo | None = None
    metrics: dict = field(default_factory=dict)
    code_bytes: int | None = None


def tree_label(tree: Path, taken: list[str]) -> str:
    """`tflm+cmsis-nn` or `tflm-ref` (then `-2`, `-3` for a second tree of the same kind)."""
    from .codegen.tflm_lib import tree_kind

    base = "tflm+cmsis-nn" if tree_kind(tree) == "cmsis-nn" else "tflm-ref"
    n = sum(1 for t in taken if t == base or t.startswith(base + "-"))
    return base if n == 0 else f"{base}-{n + 1}"


def model_data_bytes(elf: Path, cross: str = "arm-none-eabi-") -> int:
    """Bytes of the model's constant data linked into `elf` (see MODEL_DATA_SYMBOL)."""
    out = subprocess.run([f"{cross}nm", "-S", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    total = 0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and MODEL_DATA_SYMBOL.fullmatch(parts[3]):
            total += int(parts[1], 16)
    return total


def build_all(model: Path, board: Board, trees: list[Path], out_dir: Path,
              say: Callable[[str], None]) -> list[Contender]:
    """Build `model` for `board` with aqedge and with each TFLM tree, under out_dir/<board>/."""
    from .codegen.tflm import build_tflm

    base = out_dir / board.name
    contenders = [Contender(AQEDGE, base / AQEDGE)]
    say(f"{board.name}: building with aqedge")
    contenders[0].info = build(model, board, contenders[0].build_dir)
    for tree in trees:
        label = tree_label(tree, [c.label for c in contenders])
        c = Contender(label, base / label)
        say(f"{board.name}: building with {label} ({tree})")
        c.info = build_tflm(model, board, c.build_dir, tree)
        contenders.append(c)
    for c in contenders:
        c.code_bytes = c.info.flash_bytes - model_data_bytes(c.build_dir / c.info.elf)
    return contenders


def measure_all(board: Board, contenders: list[Contender], samples: Samples,
                say: Callable[[str], None]) -> None:
    """Measure every contender on `board` with the same samples (a real board is flashed with
    each build before it is measured)."""
    from .flash import program

    for c in contenders:
        if not board.emulated:
            program(board, c.build_dir, None, None, echo=lambda cmd: say(f"$ {cmd}"))
        say(f"{board.name}: measuring {c.label} on {len(samples.inputs)} samples")
        session = run_session(board, c.build_dir, samples, len(samples.inputs), label=c.label)
        if session.error:
            raise AqError(f"{board.name}, {c.label}: {session.error}")
        c.metrics = metrics(session)


def summarize(board: Board, contenders: list[Contender], macs: int) -> dict:
    """The compare.json entry of one board: a row per runtime, ratios to aqedge's figures."""
    rows = []
    for c in contenders:
        m = c.metrics
        latency = m["latency"]["median"]
        rows.append({"runtime": c.label, "latency": latency,
                     "latency_per_mac": round(latency / macs, 3) if macs and latency else None,
                     "arena_bytes": c.info.arena_bytes, "ram_bytes": c.info.ram_bytes,
                     "flash_bytes": c.info.flash_bytes, "code_bytes": c.code_bytes,
                     "bit_exact_samples": round(m["device_matches_reference"] * m["measured"]),
                     "samples": m["samples"], "accuracy": m["accuracy"]})
    ours = rows[0]
    for r in rows[1:]:
        r["aqedge_ratio"] = {k: round(ours[k] / r[k], 3) for k in
                             ("latency", "arena_bytes", "ram_bytes", "flash_bytes", "code_bytes")
                             if ours.get(k) and r.get(k)}
    return {"board": board.name, "emulated": board.emulated, "unit": board.latency_unit,
            "runtimes": rows}


def compare(model: Path, boards: list[Board], trees: list[Path], source, count: int | None,
            seed: int, out_dir: Path, say: Callable[[str], None] = print) -> dict:
    """Build, measure and compare on every board (boards concurrently); returns compare.json."""
    model = Path(model)
    graph = read_tflite(model)
    macs = count_macs(lower(graph, str(model)))
    results: dict[str, dict | BaseException] = {}

    def one(board: Board) -> None:
        try:
            contenders = build_all(model, board, trees, out_dir, say)
            samples = load_samples(contenders[0].info, source, count, seed)
            measure_all(board, contenders, samples, say)
            results[board.name] = summarize(board, contenders, macs)
        except BaseException as exc:  # noqa: BLE001  (re-raised in the caller's thread)
            results[board.name] = exc

    threads = [threading.Thread(target=one, args=(b,), daemon=True) for b in boards]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for b in boards:
        if isinstance(results[b.name], BaseException):
            raise results[b.name]
    data = {"model": model.name, "macs": macs, "samples": str(source), "seed": seed,
            "boards": [results[b.name] for b in boards]}
    write_outputs(data, out_dir)
    return data


def write_outputs(data: dict, out_dir: Path) -> None:
    """compare.json, compare.md and compare.png, each written to a temporary file first."""
    from .atomic import save_atomic

    save_metrics(data, out_dir / "compare.json")
    save_atomic(lambda tmp: tmp.write_text(markdown(data)), out_dir / "compare.md")
    save_atomic(lambda tmp: plot(data, tmp), out_dir / "compare.png")


def _unit_note(unit: str) -> str:
    return "instructions (QEMU -icount: not time)" if unit == "instructions" else unit


def markdown(data: dict) -> str:
    lines = [f"# aqedge compare: {data['model']}", "",
             f"{data['macs']:,} MACs per inference; samples: {data['samples']}. "
             "x aqedge: aqedge's figure divided by this runtime's (below 1: aqedge smaller).", ""]
    for b in data["boards"]:
        lines += [f"## {b['board']}{' (emulated)' if b['emulated'] else ''}: latency in "
                  f"{_unit_note(b['unit'])}", "",
                  "| runtime | latency | per MAC | arena B | RAM B | flash B | code B (no weights) "
                  "| bit-exact | x aqedge latency | x aqedge arena | x aqedge code |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in b["runtimes"]:
            ratio = r.get("aqedge_ratio", {})
            cells = [r["runtime"], _n(r["latency"]), _n(r["latency_per_mac"]), _n(r["arena_bytes"]),
                     _n(r["ram_bytes"]), _n(r["flash_bytes"]), _n(r["code_bytes"]),
                     f"{r['bit_exact_samples']}/{r['samples']}",
                     *(_n(ratio.get(k)) for k in ("latency", "arena_bytes", "code_bytes"))]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _n(v) -> str:
    if v is None:
        return "—"
    return f"{v:,}" if isinstance(v, int) else f"{v:g}"


def plot(data: dict, path: Path) -> Path:
    """Bars of latency per MAC and of arena / code bytes, one row of panels per board."""
    from .harness.report import _pyplot

    plt = _pyplot()
    boards = data["boards"]
    fig, axes = plt.subplots(len(boards), 3, figsize=(11, 3.2 * len(boards)), dpi=110,
                             squeeze=False)
    for row, b in zip(axes, boards):
        names = [r["runtime"] for r in b["runtimes"]]
        for ax, key, title in zip(row, ("latency_per_mac", "arena_bytes", "code_bytes"),
                                  (f"{b['unit']} per MAC", "arena bytes",
                                   "code bytes (no weights)")):
            ax.bar(names, [r[key] or 0 for r in b["runtimes"]],
                   color=["#1f77b4"] + ["#999999"] * (len(names) - 1))
            ax.set_title(f"{b['board']}: {title}", fontsize=9)
            ax.tick_params(axis="x", labelsize=8, rotation=15)
    if any(b["unit"] == "instructions" for b in boards):
        fig.suptitle("instructions: QEMU -icount shift=0 instruction counts, not time", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
