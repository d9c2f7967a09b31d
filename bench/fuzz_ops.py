"""Fuzz every op against TFLite Micro at scale: thousands of generated single-op cases.

    .venv/bin/python bench/fuzz_ops.py [--models 100] [--branches 10] [--converter 2] [--seed 0]
                                       [--ops CONV_2D,MUL,...]

Each hand-built model holds `--branches` independent cases of one op (random shapes, kernel
sizes, strides, padding, dilation, fused activations, scales, zero points, weights; see
tests/test_ops_fuzz.py) and runs on 4 random int8 inputs, here (host gcc build of the generated C)
and in TFLite Micro; a case is bit-exact when its output bytes match on all of them.
`--converter` adds that many Keras -> TFLiteConverter models per op (3 branches each, one case).

Writes bench/results/fuzz_ops.json (rows {op, source, cases, bit_exact, mismatches, models,
seconds}, plus the first mismatch descriptions) and bench/results/fuzz_ops.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO / "tests"))

import test_ops_fuzz as fuzz  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", type=int, default=100, help="hand-built models per op")
    ap.add_argument("--branches", type=int, default=10, help="cases per hand-built model (<= 10)")
    ap.add_argument("--converter", type=int, default=2, help="converter-made models per op")
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--ops", default="", help="comma-separated subset of ops")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
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
