"""Fault benchmark of the measuring harness: the real firmware on QEMU, a link that breaks frames.

For each scenario a FaultProxy (aqedge.harness.faultproxy) sits between pyserial and QEMU's UART
socket and damages frames in both directions, seeded; the harness measures N samples into a
results log. A sample counts as measured once when its index is in the log exactly once;
`matches_clean_run` compares every output and tick count with a run without the proxy.
The model is the test-only echo model (tests/c/echo_model.c: 784 bytes in, 10 out).

    .venv/bin/python bench/faults.py [--samples 500] [--out bench/results/faults]

Writes <out>.json (rows {scenario, samples, measured_once, lost, duplicated, matches_clean_run,
...}) and <out>.md.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from aqedge.boards import resolve  # noqa: E402
from aqedge.codegen.project import compile_project, rx_max_for_input, write_project  # noqa: E402
from aqedge.flash import boot_emulated  # noqa: E402
from aqedge.harness.faultproxy import FaultMix, FaultProxy  # noqa: E402
from aqedge.harness.link import DeviceLink  # noqa: E402
from aqedge.harness.results import Record, ResultLog  # noqa: E402
from aqedge.harness.session import measure_samples  # noqa: E402

IN_BYTES = 784

SCENARIOS: list[tuple[str, FaultMix | None]] = [
    ("proxy, no faults", FaultMix()),
    ("1 % frames corrupted", FaultMix(corrupt=0.01)),
    ("1 % frames dropped", FaultMix(drop=0.01)),
    ("1 % frames lose a byte", FaultMix(drop_byte=0.01)),
    ("1 % frames duplicated", FaultMix(duplicate=0.01)),
    ("5 % frames delayed <= 50 ms", FaultMix(delay=0.05)),
    ("1 % line noise + 0.5 % bursts", FaultMix(noise=0.01, burst=0.005)),
    ("standard mix (all of the above)", FaultMix.standard()),
    ("standard mix x5", FaultMix.standard().scaled(5.0)),
]


def run(elf: Path, board, inputs: list[bytes], log_path: Path, mix: FaultMix | None, seed: int) -> dict:
    results: dict[int, Record] = {}
    start = time.monotonic()
    with boot_emulated(board, elf) as emu:
        proxy = FaultProxy(emu.url, mix, seed=seed) if mix is not None else None
        try:
            with DeviceLink(proxy.url if proxy else emu.url, timeout=3.0) as link:
                link.connect(ready_timeout=15.0)
                log = ResultLog(log_path, {"bench": "faults"})
                try:
                    status = measure_samples(link, inputs, results, log,
                                             alive=lambda: emu.process.poll() is None)
                finally:
                    log.close()
        finally:
            if proxy is not None:
                proxy.close()
    counts = Counter(json.loads(line)["i"] for line in log_path.read_text().splitlines()[1:]
                     if "failed" not in json.loads(line))
    faults = Counter()
    if proxy is not None:
        faults = proxy.to_device + proxy.to_host
    return {"status": status, "results": results, "counts": counts, "seconds": time.monotonic() - start,
            "retried_requests": link.retried_requests, "bad_frames": link.bad_frames,
            "bytes_sent": link.bytes_sent, "faults": faults}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "faults")
    args = ap.parse_args()

    board = resolve("qemu-stm32f405")[0]
    work = Path(tempfile.mkdtemp(prefix="aqedge-faults-"))
    try:
        shutil.copy(REPO / "tests" / "c" / "echo_model.c", work / "echo_model.c")
        write_project(board, work, ["echo_model.c"], rx_max_for_input(IN_BYTES))
        elf = compile_project(board, work).elf
        rng = random.Random(args.seed)
        inputs = [rng.randbytes(IN_BYTES) for _ in range(args.samples)]
        clean = run(elf, board, inputs, work / "clean.jsonl", None, args.seed)
        assert clean["status"] == "complete" and len(clean["results"]) == args.samples
        reference = {i: (r.output, r.ticks) for i, r in clean["results"].items()}
        rows = []
        for k, (name, mix) in enumerate(SCENARIOS):
            r = run(elf, board, inputs, work / f"s{k}.jsonl", mix, args.seed + k)
            counts = r["counts"]
            got = {i: (rec.output, rec.ticks) for i, rec in r["results"].items()}
            f = r["faults"]
            row = {
                "scenario": name,
                "samples": args.samples,
                "measured_once": sum(1 for i in range(args.samples) if counts.get(i) == 1),
                "lost": sum(1 for i in range(args.samples) if i not in counts),
                "duplicated": sum(1 for c in counts.values() if c > 1),
                "matches_clean_run": got == reference,
                "frames_damaged": sum(f[x] for x in ("corrupted", "dropped", "byte_dropped", "duplicated")),
                "frames_delayed": f["delayed"],
                "noise_injections": f["noise"],
                "bursts": f["bursts"],
                "retried_requests": r["retried_requests"],
                "bad_frames_from_device": r["bad_frames"],
                "seconds": round(r["seconds"], 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    head = ("| scenario | samples | measured once | lost | duplicated | = clean run | frames damaged "
            "| delayed | noise | bursts | retries | s |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r['scenario']} | {r['samples']} | {r['measured_once']} | {r['lost']} | {r['duplicated']} "
        f"| {'yes' if r['matches_clean_run'] else '**no**'} | {r['frames_damaged']} | {r['frames_delayed']} "
        f"| {r['noise_injections']} | {r['bursts']} | {r['retried_requests']} | {r['seconds']} |\n"
        for r in rows)
    note = (f"\nEcho model (784 B in, 10 B out) on QEMU netduinoplus2 (STM32F405), {args.samples} samples "
            "per scenario, faults in both directions per frame (bench/faults.py, "
            "aqedge/harness/faultproxy.py). 'frames damaged' counts corrupted, dropped, "
            "byte-dropped and duplicated frames.\n")
    args.out.with_suffix(".md").write_text("# Measuring under link faults\n\n" + head + body + note)


if __name__ == "__main__":
    main()
