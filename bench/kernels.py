"""Per-layer kernel instructions against CMSIS-NN on the emulated Cortex-M4 (qemu-mps2-an386).

    TFLM_TREE=DIR .venv/bin/python bench/kernels.py [--quick] [--tflm-tree DIR] [--jobs 2]
                                                   [--min-instructions 100000]

One layer per shape, int8 and INT4 weights each: MobileNet-like 1x1 convolutions (3 to 512
channels on maps from 48x48 down to 1x1, big channel counts on small maps), 3x3 convolutions
(stride 1 and 2), 3x3 and 5x5 depthwise (stride 1 and 2, depth multiplier 1 and 2, 8 to 512
channels), batch-1 fully connected (K 64 to 4096, N 2 to 1024), first layers (3x3 stride 2
over 1 and 3 channels, the KWS 10x4 one), odd channel counts (7, 13, 60, 180) and the layers of
the dense autoencoder of bench/zoo.py (640-128-128-128-8-128-128-128-640). Each runs
with the kernel aqedge builds for it (lowered by aqedge.codegen.lower: the variant
aqedge.codegen.dispatch.select() picks, in its weight layout) and with CMSIS-NN's wrapper (from the
TFLite Micro tree of --tflm-tree or $TFLM_TREE: CMSIS-NN itself, or a folder holding its
`cmsis-nn/` tree) on the same realistic random data (tests/kernel_harness.py; the same seeds
every run), outputs compared byte for byte. A call shorter than --min-instructions is repeated
until the timed region passes it; the figures are per call.

Writes bench/results/kernels.json ({meta, summary, rows}; rows {layer_class, kind, shape, s4, macs,
variant, kernel, aq_instructions, cmsis_nn_instructions, ratio, aq_instructions_per_mac,
cmsis_nn_instructions_per_mac, aq_stack_bytes, bit_exact, mismatch}) and bench/results/kernels.md
(a table per layer class; the largest ratio, the geometric mean of the ratios, how many shapes
aqedge runs in more instructions than CMSIS-NN, the 15 largest ratios, the deepest stack an
aqedge kernel used). Instructions are QEMU -icount counts, not cycles. `--quick` runs a small
subset (the first two shapes of each class).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import zlib
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO / "tests"))

import kernel_harness as kh  # noqa: E402
from aqedge.boards import resolve  # noqa: E402
from aqedge.errors import AqError  # noqa: E402

PW, C3, DW, FC, FIRST, ODD, AE = ("pointwise 1x1 conv", "3x3 conv", "depthwise",
                                  "fully connected", "first layer", "odd channel counts",
                                  "dense autoencoder")


def _pointwise() -> list[tuple[str, str, dict]]:
    combos = {48: [(8, 16), (16, 8), (16, 24), (3, 16)],
              24: [(16, 32), (32, 32), (16, 96), (96, 24), (24, 48)],
              12: [(32, 64), (64, 64), (32, 192), (192, 32), (48, 96)],
              6: [(64, 128), (128, 128), (96, 384), (384, 96), (128, 256)],
              3: [(128, 256), (256, 256), (256, 512), (512, 512), (384, 128)],
              1: [(512, 512), (256, 128), (192, 3)]}
    return [(PW, "conv", dict(h=hw, w=hw, in_c=i, out_c=o, k=1))
            for hw, pairs in combos.items() for i, o in pairs]


def _conv3x3() -> list[tuple[str, str, dict]]:
    combos = [(48, 8, 8, 1), (32, 16, 16, 1), (32, 16, 32, 2), (16, 32, 32, 1), (16, 32, 64, 2),
              (12, 48, 48, 1), (8, 64, 64, 1), (6, 64, 128, 2), (6, 128, 128, 1), (3, 256, 256, 1)]
    return [(C3, "conv", dict(h=hw, w=hw, in_c=i, out_c=o, k=3, stride=s)) for hw, i, o, s in combos]


def _depthwise() -> list[tuple[str, str, dict]]:
    combos = [(3, 1, 1, hw, c) for hw, c in ((48, 8), (48, 16), (24, 32), (24, 96), (12, 64),
                                             (12, 192), (6, 128), (6, 384), (3, 256), (3, 512))]
    combos += [(3, 2, 1, hw, c) for hw, c in ((48, 16), (48, 32), (24, 96), (12, 64), (12, 192),
                                              (6, 512))]
    combos += [(5, 1, 1, hw, c) for hw, c in ((24, 32), (12, 64), (12, 192), (6, 128), (3, 512))]
    combos += [(5, 2, 1, hw, c) for hw, c in ((24, 48), (12, 96), (6, 256))]
    combos += [(3, 1, 2, 48, 8), (3, 1, 2, 24, 16), (3, 1, 2, 12, 64), (3, 2, 2, 24, 32),
               (5, 1, 2, 12, 32)]
    return [(DW, "depthwise", dict(h=hw, w=hw, in_c=c, k=k, stride=s, multiplier=m))
            for k, s, m, hw, c in combos]


def _fully_connected() -> list[tuple[str, str, dict]]:
    combos = [(64, 2), (64, 10), (128, 64), (256, 10), (256, 128), (256, 1024), (512, 10),
              (512, 512), (1024, 2), (1024, 10), (1024, 256), (1024, 1024), (2048, 12),
              (2048, 512), (4096, 10), (4096, 256)]
    return [(FC, "fully_connected", dict(depth=k, out_c=n)) for k, n in combos]


def _first_layers() -> list[tuple[str, str, dict]]:
    rows = [(FIRST, "conv", dict(h=96, w=96, in_c=c, out_c=o, k=3, stride=2))
            for c, o in ((3, 8), (3, 16), (3, 32), (1, 8), (1, 16))]
    rows.append((FIRST, "conv", dict(h=32, w=32, in_c=3, out_c=16, k=3, stride=1)))
    rows.append((FIRST, "conv", dict(h=49, w=10, in_c=1, out_c=64, k=(10, 4), stride=2)))
    return rows


def _odd() -> list[tuple[str, str, dict]]:
    return ([(ODD, "conv", dict(h=hw, w=hw, in_c=i, out_c=o, k=1))
             for hw, i, o in ((12, 60, 180), (6, 180, 60), (24, 13, 7), (24, 7, 13))]
            + [(ODD, "conv", dict(h=hw, w=hw, in_c=i, out_c=o, k=3))
               for hw, i, o in ((12, 13, 7), (12, 60, 60))]
            + [(ODD, "depthwise", dict(h=hw, w=hw, in_c=c, k=k))
               for hw, c, k in ((24, 13, 3), (24, 7, 3), (12, 60, 3), (6, 180, 3), (12, 60, 5))]
            + [(ODD, "fully_connected", dict(depth=k, out_c=n))
               for k, n in ((180, 13), (60, 7), (180, 60), (1024, 7))])


def _autoencoder() -> list[tuple[str, str, dict]]:
    """The layers of bench/zoo.py's dense autoencoder 640-128-128-128-8-128-128-128-640
    (each distinct shape once)."""
    return [(AE, "fully_connected", dict(depth=k, out_c=n))
            for k, n in ((640, 128), (128, 128), (128, 8), (8, 128), (128, 640))]


def shapes(quick: bool) -> list[tuple[str, str, dict]]:
    """(layer class, kind, shape) of the sweep; with `quick` the first two of each class."""
    groups = [_pointwise(), _conv3x3(), _depthwise(), _fully_connected(), _first_layers(), _odd(),
              _autoencoder()]
    return [row for g in groups for row in (g[:2] if quick else g)]


def _seed(cls: str, kind: str, shape: dict, s4: bool) -> int:
    """The same seed every run for the same layer (and independent of the other shapes)."""
    return zlib.crc32(f"{cls}|{kind}|{sorted(shape.items())}|{s4}".encode())


def _row(cls: str, r: kh.Result) -> dict:
    c = r.case
    ratio = round(r.ratio, 3) if math.isfinite(r.ratio) else None   # None: CMSIS-NN did not run
    return {"layer_class": cls, "kind": c.kind, "shape": c.label, "s4": c.s4, "macs": c.macs,
            "variant": r.variant, "kernel": r.kernel, "aq_instructions": r.aq_instructions,
            "cmsis_nn_instructions": r.peer_instructions, "ratio": ratio,
            "aq_instructions_per_mac": round(r.aq_instructions / c.macs, 3),
            "cmsis_nn_instructions_per_mac": round(r.peer_instructions / c.macs, 3),
            "aq_stack_bytes": r.aq_stack_bytes, "bit_exact": r.bit_exact, "mismatch": r.mismatch}


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def _timed(rows: list[dict]) -> list[dict]:
    """The rows with a ratio (CMSIS-NN ran)."""
    return [r for r in rows if r["ratio"] is not None]


def summary(rows: list[dict]) -> dict:
    """The largest ratio, the geometric mean of the ratios, how many exceed 1.0, bit-exact
    count; overall and per weight type (ratios of the layers both sides ran)."""
    def one(sel: list[dict]) -> dict:
        timed = _timed(sel) or [{"ratio": math.nan, "shape": "-", "s4": False}]
        worst = max(timed, key=lambda r: r["ratio"])
        return {"shapes": len(sel), "max_ratio": worst["ratio"],
                "max_ratio_shape": f"{worst['shape']} {'INT4' if worst['s4'] else 'int8'}",
                "geomean_ratio": round(_geomean([r["ratio"] for r in timed]), 3),
                "above_1": sum(r["ratio"] > 1.0 for r in timed),
                "bit_exact": sum(r["bit_exact"] for r in sel)}
    out = {"all": one(rows)}
    for s4, name in ((False, "int8"), (True, "int4")):
        sel = [r for r in rows if r["s4"] == s4]
        if sel:
            out[name] = one(sel)
    return out


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def markdown(rows: list[dict], meta: dict) -> str:
    """kernels.md: the summary, the instruction-count caveat, a table per layer class."""
    s = summary(rows)
    quick = " --quick" if meta["quick"] else ""
    lines = ["# MAC kernels per layer: aqedge against CMSIS-NN (qemu-mps2-an386, Cortex-M4)", "",
             f"Regenerate: `TFLM_TREE=DIR .venv/bin/python bench/kernels.py{quick}` "
             f"({meta['cases'] // 2} shapes, each with int8 and INT4 weights; "
             f"{meta['seconds']:.0f} s). "
             "Ratio: aqedge's instructions per call over CMSIS-NN's (below 1.0: aqedge runs "
             "fewer).", ""]
    for key, name in (("all", "all layers"), ("int8", "int8 weights"), ("int4", "INT4 weights")):
        if key in s:
            t = s[key]
            lines.append(f"- {name}: geometric mean ratio {t['geomean_ratio']:.3f}, max "
                         f"{t['max_ratio']:.3f} ({t['max_ratio_shape']}), {t['above_1']} of "
                         f"{t['shapes']} above 1.0x, {t['bit_exact']} of {t['shapes']} bit-exact")
    deep = max(rows, key=lambda r: r["aq_stack_bytes"])
    lines.append(f"- deepest aqedge stack: {deep['aq_stack_bytes']:,} B ({deep['shape']} "
                 f"{'INT4' if deep['s4'] else 'int8'}; the board file reserves "
                 f"{meta['board_stack_bytes']:,} B)")
    lines += ["", "Instructions are QEMU `-icount shift=0` counts (SysTick at 25 MHz: 40 "
              "instructions a tick; calls repeated until the timed region holds at least "
              f"{meta['min_instructions']:,} instructions, call overhead subtracted), not cycles: "
              "QEMU has no pipeline or memory timing, so a multiply-accumulate, a load and a taken "
              "branch each count one. Both sides: arm-none-eabi-gcc -O2 for the board's "
              "`-mcpu=cortex-m4`; CMSIS-NN with TFLite Micro's flags, its scratch and kernel sums "
              "set up outside the timed region as TFLM's Prepare does.", ""]
    lines += _worst(rows)
    for cls in dict.fromkeys(r["layer_class"] for r in rows):
        lines += _class_table(cls, [r for r in rows if r["layer_class"] == cls])
    return "\n".join(lines)


def _class_table(cls: str, sel: list[dict]) -> list[str]:
    """One layer class: its geometric mean and largest ratio, and a row per layer."""
    ratios = [r["ratio"] for r in _timed(sel)]
    ratio = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [f"## {cls}", "", f"Geometric mean ratio {_geomean(ratios):.3f}, "
             f"max {max(ratios, default=math.nan):.3f}.", "",
             "| shape | weights | MACs | aqedge variant | aqedge instr | CMSIS-NN instr | ratio "
             "| aqedge instr/MAC | CMSIS-NN instr/MAC | aqedge stack B | bit-exact |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in sel:
        lines.append(f"| {r['shape']} | {'INT4' if r['s4'] else 'int8'} | {r['macs']:,} | "
                     f"{r['variant']} | {_fmt(r['aq_instructions'])} | "
                     f"{_fmt(r['cmsis_nn_instructions'])} | {ratio(r['ratio'])} | "
                     f"{r['aq_instructions_per_mac']:.3f} | "
                     f"{r['cmsis_nn_instructions_per_mac']:.3f} | {r['aq_stack_bytes']:,} | "
                     f"{'yes' if r['bit_exact'] else 'NO: ' + str(r['mismatch'])} |")
    return lines + [""]


def _worst(rows: list[dict], n: int = 15) -> list[str]:
    """The n largest ratios, one line each."""
    out = [f"## The {n} largest ratios", "",
           "| layer class | shape | weights | aqedge variant | ratio |",
           "| --- | --- | --- | --- | ---: |"]
    for r in sorted(_timed(rows), key=lambda r: -r["ratio"])[:n]:
        out.append(f"| {r['layer_class']} | {r['shape']} | {'INT4' if r['s4'] else 'int8'} | "
                   f"{r['variant']} | {r['ratio']:.3f} |")
    return out + [""]


def run(args) -> tuple[list[dict], float]:
    """Build the cases, run them with a progress bar, return the rows and the seconds taken."""
    sweep = shapes(args.quick)
    cases, classes = [], []
    for cls, kind, shape in sweep:
        for s4 in (False, True):
            cases.append(kh.make_case(kind, s4=s4, seed=_seed(cls, kind, shape, s4), **shape))
            classes.append(cls)
    t0 = time.time()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns) as bar:
        task = bar.add_task("layers on qemu-mps2-an386", total=len(cases))
        results = kh.run_cases(cases, "cmsis-nn", args.work, jobs=args.jobs,
                               min_instructions=args.min_instructions, tflm_tree=args.tflm_tree,
                               progress=lambda case: bar.advance(task))
    return [_row(cls, r) for cls, r in zip(classes, results)], time.time() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the first two shapes of each class")
    ap.add_argument("--tflm-tree", default=None,
                    help="TFLite Micro tree with CMSIS-NN (default: $TFLM_TREE)")
    ap.add_argument("--jobs", type=int, default=2, help="batches built / run at once")
    ap.add_argument("--min-instructions", type=int, default=100_000,
                    help="repeat shorter calls until the timed region holds this many")
    ap.add_argument("--work", type=Path, default=REPO / "build" / "bench-kernels")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    try:
        tree = kh.cmsis_tree(args.tflm_tree)
        args.tflm_tree = tree.root
        rows, seconds = run(args)
    except AqError as exc:
        print(f"bench/kernels.py: {exc}", file=sys.stderr)
        return 2
    meta = {"board": kh.BOARD, "board_stack_bytes": resolve(kh.BOARD)[0].stack_bytes,
            "cmsis_nn_tree": tree.root.name, "quick": args.quick,
            "min_instructions": args.min_instructions, "cases": len(rows),
            "seconds": round(seconds, 1), "unit": "instructions (QEMU -icount shift=0)"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kernels.json").write_text(json.dumps({"meta": meta, "summary": summary(rows),
                                                       "rows": rows}, indent=2) + "\n")
    (args.out / "kernels.md").write_text(markdown(rows, meta))
    s = summary(rows)["all"]
    print(f"{s['bit_exact']}/{s['shapes']} bit-exact; aqedge / CMSIS-NN instructions: geometric "
          f"mean {s['geomean_ratio']:.3f}, max {s['max_ratio']:.3f} ({s['max_ratio_shape']}), "
          f"{s['above_1']} above 1.0x; {seconds:.0f} s; wrote {args.out / 'kernels.json'} and .md")
    return 0 if s["bit_exact"] == s["shapes"] else 1


if __name__ == "__main__":
    sys.exit(main())
