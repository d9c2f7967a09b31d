"""Fuzz every op against TFLite Micro at scale: thousands of generated single-op cases.

    .venv/bin/python bench/fuzz_ops.py [--models 100] [--branches 10] [--converter 2] [--seed 0]
                                       [--ops CONV_2D,MUL,...]
    .venv/bin/python bench/fuzz_ops.py --cortex-m [--cases 2000] [--seed 0] [--jobs 2]
                                       [--kinds conv,depthwise,fully_connected]

Each hand-built model holds `--branches` independent cases of one op (random shapes, kernel
sizes, strides, padding, dilation, fused activations, scales, zero points, weights; see
tests/test_ops_fuzz.py) and runs on 4 random int8 inputs, here (host gcc build of the generated C)
and in TFLite Micro; a case is bit-exact when its output bytes match on all of them.
`--converter` adds that many Keras -> TFLiteConverter models per op (3 branches each, one case).

Writes bench/results/fuzz_ops.json (rows {op, source, cases, bit_exact, mismatches, models,
seconds}, plus the first mismatch descriptions) and bench/results/fuzz_ops.md.

`--cortex-m` fuzzes the Cortex-M ports instead (firmware/kernels/cortex-m/, compiled for
qemu-mps2-an386, run under QEMU): for every MAC layer kind and weight type (int8, INT4),
`--cases` random small layers per kernel variant that aqedge.codegen.dispatch.select() picks for
such layers (tests/kernel_harness.py: shapes steered towards each variant, about half of them
with hard quantisation: left shifts, huge biases, dead channels, narrow ranges, extreme zero
points, no bias), plus the harness's TYPICAL shapes, each run with its variant in the variant's
weight layout against the portable loop bodies (bit-exact with TFLite Micro) on the same data,
every output byte compared, in place too at the planner's lead. It is tests/test_cm_kernels.py's fuzz
(a few hundred cases per kind there) at scale. Writes bench/results/fuzz_cm.json ({meta, rows
{kind, weights, variant, cases, hard, bit_exact, mismatches}, combos {kind, weights, cases,
seconds}, failures}) and bench/results/fuzz_cm.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO / "tests"))

import test_ops_fuzz as fuzz  # noqa: E402


def _cm_cases(kh, kind: str, s4: bool, per_variant: int, seed: int) -> list:
    """The TYPICAL shapes (kernel_harness.fuzz_cases) and `per_variant` random layers for each
    variant select() gives layers of `kind`, from shapes steered towards it; a case that lands
    on another variant counts for that one while it is short."""
    import numpy as np
    cases = kh.fuzz_cases(kind, s4, 0, seed)
    want = {v: per_variant for v in sorted(kh.variant_names(kind, s4))}
    rng = np.random.default_rng([seed, kh.KINDS.index(kind), int(s4)])
    base = 1_000_000 * (10 + seed) + 100_000 * (kh.KINDS.index(kind) * 2 + int(s4))
    for attempt in range(40 * per_variant * len(want)):
        short = [v for v, n in want.items() if n > 0]
        if not short:
            break
        shape = kh.steered_shape(kind, short[attempt % len(short)], rng)
        case = kh.make_case(kind, s4=s4, seed=base + attempt, hard=bool(rng.random() < 0.5),
                            **shape)
        if want.get(case.variant.name, 0) > 0:
            want[case.variant.name] -= 1
            cases.append(case)
    return cases


def _cm_rows(kind: str, s4: bool, results: list) -> list[dict]:
    rows = []
    for v in sorted({r.variant for r in results}):
        sel = [r for r in results if r.variant == v]
        exact = sum(r.bit_exact for r in sel)
        rows.append({"kind": kind, "weights": "INT4" if s4 else "int8", "variant": v,
                     "kernel": sel[0].kernel, "cases": len(sel),
                     "hard": sum(bool(r.case.hard) for r in sel), "bit_exact": exact,
                     "mismatches": len(sel) - exact})
    return rows


def _cm_markdown(rows: list[dict], combos: list[dict], failures: list[dict], meta: dict) -> str:
    total, exact = sum(r["cases"] for r in rows), sum(r["bit_exact"] for r in rows)
    lines = ["# Cortex-M kernel variants fuzzed against the portable kernels (qemu-mps2-an386)", "",
             f"{exact}/{total} cases bit-exact. Per kernel variant dispatch.select() picks, "
             f"{meta['cases_per_variant']} random small layers (shapes steered towards it, about "
             "half with hard quantisation) plus the harness's TYPICAL shapes, each run "
             "with the Cortex-M port in its weight layout and with the portable loops (bit-exact "
             "with TFLite Micro) on the same data, out of place and in place. Regenerate: "
             f"`.venv/bin/python bench/fuzz_ops.py --cortex-m --cases {meta['cases_per_variant']}"
             f"{' --seed ' + str(meta['seed']) if meta['seed'] else ''}` "
             f"({meta['seconds']:.0f} s).", "",
             "| kind | weights | variant | kernel | cases | hard | bit-exact | mismatches |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['kind']} | {r['weights']} | {r['variant']} | `{r['kernel']}` | "
                     f"{r['cases']} | {r['hard']} | {r['bit_exact']} | {r['mismatches']} |")
    lines += ["", "| kind | weights | cases | seconds |", "|---|---|---:|---:|"]
    lines += [f"| {c['kind']} | {c['weights']} | {c['cases']} | {c['seconds']} |" for c in combos]
    if failures:
        lines += ["", "## First failures", ""] + [f"- {f}" for f in failures[:20]]
    return "\n".join(lines) + "\n"


def cortex_m(args) -> int:
    """--cortex-m: the Cortex-M variants against the portable loops, --cases per variant."""
    import kernel_harness as kh
    kinds = [k for k in args.kinds.split(",") if k] or list(kh.KINDS)
    rows, combos, failures = [], [], []
    work = Path(tempfile.mkdtemp(prefix="aqedge-fuzz-cm-"))
    t_all = time.time()
    for kind in kinds:
        for s4 in (False, True):
            t0 = time.time()
            cases = _cm_cases(kh, kind, s4, args.cases, args.seed)
            results = kh.run_cases(cases, "portable", work / f"{kind}-{int(s4)}", jobs=args.jobs,
                                   min_instructions=0)
            rows += _cm_rows(kind, s4, results)
            failures += [{"kind": kind, "weights": "INT4" if s4 else "int8", "variant": r.variant,
                          "case": repr(r.case), "mismatch": r.mismatch}
                         for r in results if not r.bit_exact]
            combos.append({"kind": kind, "weights": "INT4" if s4 else "int8",
                           "cases": len(results), "seconds": round(time.time() - t0, 1)})
            bad = sum(not r.bit_exact for r in results)
            print(f"{kind:16s} {'INT4' if s4 else 'int8'} {len(results) - bad}/{len(results)} "
                  f"bit-exact {time.time() - t0:.0f} s", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    meta = {"board": kh.BOARD, "cases_per_variant": args.cases, "seed": args.seed,
            "peer": "portable loop bodies (firmware/include/aq_mac_impl.h)",
            "seconds": round(time.time() - t_all, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fuzz_cm.json").write_text(json.dumps(
        {"meta": meta, "rows": rows, "combos": combos, "failures": failures[:200]}, indent=2) + "\n")
    (args.out / "fuzz_cm.md").write_text(_cm_markdown(rows, combos, failures, meta))
    total, exact = sum(r["cases"] for r in rows), sum(r["bit_exact"] for r in rows)
    print(f"{exact}/{total} bit-exact; wrote {args.out / 'fuzz_cm.json'} and .md")
    return 0 if exact == total else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", type=int, default=100, help="hand-built models per op")
    ap.add_argument("--branches", type=int, default=10, help="cases per hand-built model (<= 10)")
    ap.add_argument("--converter", type=int, default=2, help="converter-made models per op")
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--ops", default="", help="comma-separated subset of ops")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--cortex-m", action="store_true",
                    help="fuzz the Cortex-M kernel variants on qemu-mps2-an386 instead")
    ap.add_argument("--cases", type=int, default=2000,
                    help="--cortex-m: random layers per kernel variant and weight type")
    ap.add_argument("--kinds", default="", help="--cortex-m: comma-separated subset of "
                                                "conv,depthwise,fully_connected")
    ap.add_argument("--jobs", type=int, default=2, help="--cortex-m: batches built / run at once")
    args = ap.parse_args()
    if args.cortex_m:
        return cortex_m(args)
    ops = [o for o in args.ops.split(",") if o] or fuzz.OPS
    branches = max(1, min(args.branches, 10))
    rows, failures = [], []
    work = Path(tempfile.mkdtemp(prefix="aqedge-fuzz-bench-"))
    for op in ops:
        t0 = time.time()
        cases = exact = errors = 0
        for k in range(args.models):
            seed = args.seed * 1_000_003 + k
            try:
                r = fuzz.run_case(op, seed, branches, work=work / f"{op}-{seed}")
            except Exception as exc:  # a build or oracle failure counts as a failed model
                errors += 1
                failures.append({"op": op, "source": "hand-built", "seed": seed, "error": str(exc)[-800:]})
                continue
            cases += r.cases
            exact += r.bit_exact
            failures += [{"op": op, "source": "hand-built", "seed": seed, "mismatch": m} for m in r.mismatches]
        rows.append({"op": op, "source": "hand-built", "cases": cases, "bit_exact": exact,
                     "mismatches": cases - exact, "errors": errors, "models": args.models,
                     "seconds": round(time.time() - t0, 1)})
        print(f"{op:18s} hand-built {exact}/{cases} bit-exact ({errors} errors) "
              f"{time.time() - t0:.0f} s", flush=True)
        if args.converter and op in fuzz.CONVERTER_OPS:
            t0 = time.time()
            cases = exact = errors = 0
            for k in range(args.converter):
                seed = args.seed * 1_000_003 + k
                try:
                    r = fuzz.run_converter_case(op, seed, work / f"conv-{op}-{seed}")
                except Exception as exc:
                    errors += 1
                    failures.append({"op": op, "source": "converter", "seed": seed, "error": str(exc)[-800:]})
                    continue
                cases += r.cases
                exact += r.bit_exact
                failures += [{"op": op, "source": "converter", "seed": seed, "mismatch": m} for m in r.mismatches]
            rows.append({"op": op, "source": "converter", "cases": cases, "bit_exact": exact,
                         "mismatches": cases - exact, "errors": errors, "models": args.converter,
                         "seconds": round(time.time() - t0, 1)})
            print(f"{op:18s} converter  {exact}/{cases} bit-exact ({errors} errors) "
                  f"{time.time() - t0:.0f} s", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"branches_per_model": branches, "inputs_per_model": fuzz.INPUTS_PER_MODEL,
            "first_seed": args.seed, "host": platform.machine(), "python": platform.python_version()}
    (args.out / "fuzz_ops.json").write_text(json.dumps(
        {"meta": meta, "rows": rows, "failures": failures[:200]}, indent=2) + "\n")
    total_cases = sum(r["cases"] for r in rows)
    total_exact = sum(r["bit_exact"] for r in rows)
    lines = ["# Op fuzzing against TFLite Micro (bit-exact, host build of the generated C)", "",
             f"{total_exact}/{total_cases} cases bit-exact. Hand-built models: {branches} cases each "
             f"(one op, random parameters and quantization), {fuzz.INPUTS_PER_MODEL} random int8 "
             "inputs per model; converter models: Keras -> TFLiteConverter full int8, one case each. "
             "Regenerate: `.venv/bin/python bench/fuzz_ops.py`.", "",
             "| op | source | cases | bit-exact | mismatches | errors | seconds |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['op']} | {r['source']} | {r['cases']} | {r['bit_exact']} | "
                     f"{r['mismatches']} | {r['errors']} | {r['seconds']} |")
    if failures:
        lines += ["", "## First failures", ""] + [f"- {f}" for f in failures[:20]]
    (args.out / "fuzz_ops.md").write_text("\n".join(lines) + "\n")
    print(f"{total_exact}/{total_cases} bit-exact; wrote {args.out / 'fuzz_ops.json'} and .md")
    return 0 if total_exact == total_cases and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
