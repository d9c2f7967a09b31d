"""Show and save what a measuring session found: metrics.json and a summary table."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table


def save_metrics(metrics: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2) + "\n")


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f} %"


def metrics_table(m: dict) -> Table:
    """A rich table of the metrics; latency is labelled with its unit (instructions on QEMU)."""
    unit = m["latency"]["unit"]
    table = Table(title=f"aqedge measure — {m['board']}{' (emulated)' if m['emulated'] else ''}",
                  show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    measured = m["samples"] - len(m["failed_samples"])
    table.add_row("samples measured", f"{measured} / {m['samples']} ({m.get('dataset', '?')})")
    if m["accuracy"] is not None:
        table.add_row("accuracy on device", f"{_pct(m['accuracy'])} ({m['correct']}/{measured})")
        table.add_row("accuracy, TFLite Micro on host", _pct(m.get("reference_accuracy")))
    table.add_row("device output = TFLite Micro (bit-exact)", _pct(m["device_matches_reference"]))
    lat = m["latency"]
    if lat["median"] is not None:
        note = " (QEMU -icount: instruction count, not time)" if unit == "instructions" else ""
        table.add_row(f"latency, {unit} / inference{note}",
                      f"median {lat['median']:,}  min {lat['min']:,}  p95 {lat['p95']:,}  max {lat['max']:,}")
    table.add_row("flash bytes", f"{m['flash_bytes']:,}")
    table.add_row("RAM bytes (static + stack)", f"{m['ram_bytes']:,}")
    table.add_row("arena bytes", f"{m['arena_bytes']:,}")
    if m["failed_samples"]:
        table.add_row("failed samples", ", ".join(map(str, m["failed_samples"][:20])))
    return table
