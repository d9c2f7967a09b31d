"""Show and save what a measuring session found: metrics.json, a terminal table, report.md and
PNG plots (latency histogram, per-op bar chart, confusion matrix; a comparison for several
devices). Latency is always labelled with its unit: instructions on QEMU, cycles on hardware;
devices with different units are never put on one axis.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rich.table import Table

from ..atomic import save_atomic
from .session import Session, latencies


def _oracle(m: dict) -> str:
    """The reference the device was checked against, as the report names it."""
    return "LiteRT" if m.get("reference") == "litert" else "TFLite Micro"


def save_metrics(metrics: dict, path: Path) -> None:
    """Write metrics.json atomically (a temporary file renamed over it): never half-written."""
    save_atomic(lambda tmp: tmp.write_text(json.dumps(metrics, indent=2) + "\n"), Path(path))


def _save_figure(fig, path: Path) -> Path:
    """Save a plot atomically (the old file or the new, never half) and close it."""
    save_atomic(lambda tmp: fig.savefig(tmp), Path(path))
    _pyplot().close(fig)
    return path


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f} %"


def _status_note(m: dict) -> str | None:
    status = m.get("status", "complete")
    if status == "complete":
        return None
    pending = m.get("pending_samples", 0)
    what = {"interrupted": "interrupted", "device_lost": "device lost"}.get(status, status)
    return f"{what}: {pending} samples not measured (continue with --resume)"


def metrics_table(m: dict) -> Table:
    """A rich table of the metrics; latency is labelled with its unit (instructions on QEMU)."""
    unit = m["latency"]["unit"]
    table = Table(title=f"aqedge measure — {m['board']}{' (emulated)' if m['emulated'] else ''}",
                  show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    measured = m.get("measured", m["samples"] - len(m["failed_samples"]))
    table.add_row("samples measured", f"{measured} / {m['samples']} ({m.get('dataset', '?')})")
    note = _status_note(m)
    if note:
        table.add_row("[bold yellow]status[/bold yellow]", note)
    if m["accuracy"] is not None:
        table.add_row("accuracy on device", f"{_pct(m['accuracy'])} ({m['correct']}/{measured})")
        table.add_row(f"accuracy, {_oracle(m)} on host", _pct(m.get("reference_accuracy")))
    table.add_row(f"device output = {_oracle(m)} (bit-exact)", _pct(m["device_matches_reference"]))
    lat = m["latency"]
    if lat["median"] is not None:
        note = " (QEMU -icount: instruction count, not time)" if unit == "instructions" else ""
        table.add_row(f"latency, {unit} / inference{note}",
                      f"median {lat['median']:,}  min {lat['min']:,}  p95 {lat['p95']:,}  max {lat['max']:,}")
    prof = m.get("profile")
    if prof:
        top = sorted(prof["ops"], key=lambda o: -o["latency"])[:3]
        table.add_row(f"slowest ops ({prof['unit']}, {prof['samples']} profiled)",
                      "  ".join(f"#{o['op']} {o['opcode']} {100 * o['share']:.0f} %" for o in top))
    table.add_row("flash bytes", f"{m['flash_bytes']:,}")
    table.add_row("RAM bytes (static + stack)", f"{m['ram_bytes']:,}")
    table.add_row("arena bytes", f"{m['arena_bytes']:,}")
    link = m.get("link") or {}
    if link.get("sent_bytes_per_s") is not None:
        table.add_row("link (host → device / device → host)",
                      f"{link['sent_bytes_per_s'] / 1024:.1f} / {link['received_bytes_per_s'] / 1024:.1f} KiB/s, "
                      f"{link.get('samples_per_s') or 0:.1f} samples/s, {link.get('retried_requests', 0)} retries")
    if m["failed_samples"]:
        table.add_row("failed samples", ", ".join(map(str, m["failed_samples"][:20])))
    return table


def _confusion(m: dict) -> tuple[list[str], list[list[int]]] | None:
    cm = m.get("confusion_matrix")
    if not cm:
        return None
    matrix = cm["matrix"]
    return cm.get("classes") or [str(k) for k in range(len(matrix))], matrix


def confusion_table(m: dict) -> Table:
    """The confusion matrix with class names (rows: true class, columns: device's prediction)."""
    names, matrix = _confusion(m)
    table = Table(title="confusion matrix on the device (rows: true class, columns: predicted)",
                  header_style="bold")
    table.add_column("true \\ predicted")
    for name in names:
        table.add_column(name, justify="right")
    table.add_column("recall", justify="right")
    for k, (name, row) in enumerate(zip(names, matrix)):
        total = sum(row)
        recall = "—" if not total else f"{100 * row[k] / total:.1f} %"
        table.add_row(name, *(str(v) if v else "·" for v in row), recall)
    return table


def confusion_markdown(m: dict) -> list[str]:
    found = _confusion(m)
    if found is None:
        return []
    names, matrix = found
    lines = ["", "### Confusion matrix (rows: true class, columns: predicted on the device)", "",
             "| true \\ predicted | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names)]
    lines += [f"| {name} | " + " | ".join(map(str, row)) + " |" for name, row in zip(names, matrix)]
    return lines


# ---- plots ----------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _thousands(axis) -> None:
    """Plain integer tick labels with thousands separators (no offset, no scientific notation)."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))


def _unit_note(unit: str) -> str:
    return "instructions (QEMU -icount: not time)" if unit == "instructions" else unit


def plot_latency(session: Session, path: Path) -> Path | None:
    lat = latencies(session)
    if not lat:
        return None
    import numpy as np

    plt = _pyplot()
    unit = session.board.latency_unit
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    lo, hi = min(lat), max(lat)
    bins = 1 if lo == hi else min(40, max(5, len(set(lat))))
    ax.hist(lat, bins=bins, color="#4C72B0", edgecolor="white")
    for value, name, style in ((np.median(lat), "median", "-"), (np.percentile(lat, 95), "p95", "--")):
        ax.axvline(value, color="#C44E52", linestyle=style, label=f"{name} {value:,.0f}")
    ax.set_xlabel(f"latency per inference, {_unit_note(unit)}")
    ax.set_ylabel("samples")
    ax.set_title(f"{session.label}: latency of {len(lat)} inferences")
    _thousands(ax.xaxis)
    ax.legend()
    fig.tight_layout()
    return _save_figure(fig, path)


def plot_profile(metrics: dict, title: str, path: Path) -> Path | None:
    prof = metrics.get("profile")
    if not prof:
        return None
    plt = _pyplot()
    ops = prof["ops"]
    labels = [f"#{o['op']} {o['opcode']}" for o in ops]
    values = [o["latency"] for o in ops]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(ops) + 1.6), dpi=110)
    bars = ax.barh(range(len(ops)), values, color="#55A868")
    ax.set_yticks(range(len(ops)), labels)
    ax.invert_yaxis()
    for bar, o in zip(bars, ops):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {o['latency']:,} ({100 * o['share']:.1f} %)",
                va="center", fontsize=8)
    ax.set_xlim(0, max(values) * 1.35 if values and max(values) else 1)
    ax.set_xlabel(f"{_unit_note(prof['unit'])} per op (median of {prof['samples']} samples)")
    ax.set_title(f"{title}: per-op latency, sum {prof['sum_of_ops']:,} "
                 f"vs whole {prof['whole_inference']:,}", fontsize=10)
    _thousands(ax.xaxis)
    fig.tight_layout()
    return _save_figure(fig, path)


def plot_confusion(metrics: dict, title: str, path: Path) -> Path | None:
    cm = metrics.get("confusion_matrix")
    if not cm:
        return None
    import numpy as np

    plt = _pyplot()
    m = np.array(cm["matrix"])
    n = m.shape[0]
    names = cm.get("classes") or [str(k) for k in range(n)]
    fig, ax = plt.subplots(figsize=(6.5, 5.8), dpi=110)
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted on the device")
    ax.set_ylabel("true class")
    top = m.max() or 1
    for i in range(n):
        for j in range(n):
            if m[i, j]:
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if m[i, j] > top / 2 else "black")
    ax.set_title(f"{title}: accuracy {_pct(metrics['accuracy'])} on {metrics.get('measured', '?')} samples",
                 fontsize=10)
    fig.tight_layout()
    return _save_figure(fig, path)


def plot_comparison(sessions: list[Session], path: Path) -> Path | None:
    """Latency distribution per device, one panel per latency unit (units are never mixed)."""
    by_unit: dict[str, list[Session]] = {}
    for s in sessions:
        if s.results:
            by_unit.setdefault(s.board.latency_unit, []).append(s)
    if not by_unit:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(by_unit), figsize=(6.5 * len(by_unit), 4.2), dpi=110, squeeze=False)
    for ax, (unit, group) in zip(axes[0], by_unit.items()):
        ax.boxplot([latencies(s) for s in group], tick_labels=[s.label for s in group], vert=True)
        ax.set_ylabel(f"{unit} per inference")
        _thousands(ax.yaxis)
        ax.set_title(_unit_note(unit), fontsize=10)
    fig.suptitle("latency by device")
    fig.tight_layout()
    return _save_figure(fig, path)


# ---- report.md ------------------------------------------------------------------------------


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.3f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _device_section(m: dict, title: str, plots: dict[str, Path | None], base: Path) -> str:
    lat, unit = m["latency"], m["latency"]["unit"]
    lines = [f"## {title}", ""]
    note = _status_note(m)
    if note:
        lines += [f"**Partial run — {note}.**", ""]
    lines += ["| metric | value |", "|---|---|",
              f"| board | {m['board']}{' (emulated)' if m['emulated'] else ''} |",
              f"| model sha256 | `{m['model_sha256'][:16]}…` |",
              f"| samples measured | {m.get('measured')} / {m['samples']} ({m.get('dataset')}) |"]
    if m["accuracy"] is not None:
        lines += [f"| accuracy on device | {_pct(m['accuracy'])} ({m['correct']}/{m.get('measured')}) |",
                  f"| accuracy, {_oracle(m)} on host | {_pct(m.get('reference_accuracy'))} |"]
    lines += [f"| device output = {_oracle(m)}, bit-exact | {_pct(m['device_matches_reference'])} |"]
    if lat["median"] is not None:
        lines += [f"| latency min / median / p95 / max ({unit}) | {lat['min']:,} / {lat['median']:,} / "
                  f"{lat['p95']:,} / {lat['max']:,} |"]
    lines += [f"| clock | {m['clock_hz'] / 1e6:g} MHz |",
              f"| flash / RAM / arena bytes | {m['flash_bytes']:,} / {m['ram_bytes']:,} / {m['arena_bytes']:,} |"]
    link = m.get("link") or {}
    if link.get("sent_bytes_per_s") is not None:
        lines += [f"| link host → device / device → host | {link['sent_bytes_per_s'] / 1024:.1f} / "
                  f"{link['received_bytes_per_s'] / 1024:.1f} KiB/s ({link.get('samples_per_s')} samples/s) |",
                  f"| retried requests / bad frames from the device | {link.get('retried_requests', 0)} / "
                  f"{link.get('bad_frames', 0)} |"]
    if link.get("resumed_samples"):
        lines += [f"| samples taken over from an earlier run (--resume) | {link['resumed_samples']} |"]
    if m["failed_samples"]:
        lines += [f"| failed samples | {', '.join(map(str, m['failed_samples'][:50]))} |"]
    if unit == "instructions":
        lines += ["", "QEMU has no cycle model: on an emulated board latency is the number of instructions "
                  "executed (`-icount shift=0`), not time and not cycles."]
    prof = m.get("profile")
    if prof:
        cov = prof["sum_over_whole"]
        lines += ["", f"### Per-op profile ({prof['unit']}, median of {prof['samples']} samples)", "",
                  "| # | op | kernel | latency | share |", "|---|---|---|---|---|"]
        lines += [f"| {o['op']} | {o['opcode']} | `{o['kernel']}` | {o['latency']:,} | {100 * o['share']:.1f} % |"
                  for o in prof["ops"]]
        lines += ["", f"Sum of the ops {prof['sum_of_ops']:,} vs a whole inference {prof['whole_inference']:,} "
                  f"(per sample: {cov['min']:.4f}–{cov['max']:.4f} of the unprofiled inference)."]
    lines += confusion_markdown(m)
    for name, key in (("Latency histogram", "latency"), ("Per-op latency", "profile"),
                      ("Confusion matrix", "confusion")):
        path = plots.get(key)
        if path is not None:
            lines += ["", f"### {name}", "", f"![{name}]({os.path.relpath(path, base)})"]
    return "\n".join(lines) + "\n"


def write_device_outputs(session: Session, metrics: dict, directory: Path, prefix: str = "") -> dict[str, Path | None]:
    """The PNG plots of one device in `directory`: `<prefix>latency.png`, `<prefix>profile.png`
    (with a profile), `<prefix>confusion.png` (with labelled data)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return {
        "latency": plot_latency(session, directory / f"{prefix}latency.png"),
        "profile": plot_profile(metrics, session.label, directory / f"{prefix}profile.png"),
        "confusion": plot_confusion(metrics, session.label, directory / f"{prefix}confusion.png"),
    }


def write_report(entries: list[tuple[Session, dict, dict[str, Path | None]]], path: Path,
                 comparison_png: Path | None = None) -> Path:
    """report.md: one section per device, and a comparison table first when there are several."""
    path = Path(path)
    base = path.parent
    parts = ["# aqedge measure report", ""]
    if len(entries) > 1:
        parts += ["## Comparison", "",
                  "| device | board | accuracy | bit-exact | latency median (unit) | p95 | flash / RAM / arena | samples/s | status |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for s, m, _ in entries:
            lat = m["latency"]
            link = m.get("link") or {}
            parts.append(
                f"| {s.label} | {m['board']} | {_pct(m['accuracy'])} | {_pct(m['device_matches_reference'])} "
                f"| {_fmt(lat['median'])} {lat['unit']} | {_fmt(lat['p95'])} {lat['unit']} "
                f"| {m['flash_bytes']:,} / {m['ram_bytes']:,} / {m['arena_bytes']:,} "
                f"| {_fmt(link.get('samples_per_s'))} | {m.get('status', 'complete')} |")
        units = {m["latency"]["unit"] for _, m, _ in entries}
        if len(units) > 1:
            parts += ["", "Latency units differ between devices (instructions on QEMU, cycles on hardware): "
                      "compare them only within one unit."]
        if comparison_png is not None:
            parts += ["", f"![latency by device]({os.path.relpath(comparison_png, base)})"]
        parts.append("")
    for s, m, plots in entries:
        parts.append(_device_section(m, s.label, plots, base))
    save_atomic(lambda tmp: tmp.write_text("\n".join(parts)), Path(path))
    return path
