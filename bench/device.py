"""Device figures against TensorFlow Lite Micro, measured in the same run: per model and board,
instructions per inference, MACs, arena, stack high-water mark, runtime code and weight bytes,
and the same model built with TFLM (each tree: reference kernels, CMSIS-NN) on the same inputs.

    .venv/bin/python bench/device.py [--boards qemu-mps2-an386 qemu-stm32f405] [--samples 20]
                                     [--models mlperf,demo,swish,mobilenet,mobilenet_v2,autoencoder]
                                     [--demo build/demo] [--extra model.tflite ...]
                                     [--tflm-tree DIR ...] [--results bench/results]

The MLPerf Tiny rows are the `.tflite` files in $AQEDGE_MLPERF_TINY (skipped, with a message,
when it is unset); the TFLM trees come from --tflm-tree or $TFLM_TREE (without any, the peer
columns are left empty and the run says so). `--models` picks the rows, comma-separated (default:
all of the groups above): `mlperf` (or one file's stem, `ic_resnet8_int8`), `demo`, `swish`, a
bench/zoo.py group (`mobilenet`, `mobilenet_v2`: int8 and W4A4; `autoencoder`; `zoo`: all five)
or a zoo model by name (`mobilenet_v2_w4a8`, ...; `bench/zoo.py --list`). A model that fails to
build or measure is listed under the table with its error and the run goes on.

Writes device.{json,md} into `--results` (default bench/results/; a subset's run elsewhere keeps
the full table there). JSON rows (then one {model, board, error} per failure):
{model, board, instructions, macs, arena_bytes, stack_bytes, code_bytes, weight_bytes} plus
bit-exactness and, per TFLM tree, `peers` {runtime: instructions, arena, code, bit-exact} and
the ratios to them (QEMU -icount shift=0, gcc 12.2 -O2, TFLM built with -DNDEBUG by
`aqedge.codegen.tflm.build_tflm`, as `aqedge compare` builds it).

- packed: a model with 4-bit tensors that can be packed (W4A4) is built a second time with
  `--activation-storage packed` and measured on the same inputs (row key `packed`: arena,
  instructions and flash against the int8-storage build; the "Packed activations" table). A
  model whose int8 arena does not fit the board is built packed in the first place
  (`activation_storage`).
- instructions: median over `--samples` random inputs, QEMU -icount shift=0 (not time); every
  output is checked against TFLite Micro (bit_exact_samples).
- macs: from the graph (conv: out pixels x out channels x kernel taps x filter depth;
  depthwise: out pixels x out channels x taps; fully connected: batches x out x depth).
- code_bytes: text + rodata of the image (.isr_vector, .text, .rodata, .ARM.*) minus the
  model's constant data (every op<N>_* array of model_data.c: weights, biases, requantisation
  tables), like the peers' "text + rodata without the model's weights".
- weight_bytes: filter + bias bytes (INT4 filters packed two per byte).
- The demo's Fashion-MNIST models (issue 5: "W4A4 no slower per MAC than its INT8 twin, weight
  bytes <= 0.55x"): `fashion_w4a4` is `<demo>/model.tflite` (`aqedge run` output: adaptive W4A4,
  INT4 weights but the first and last layer) and `fashion_int8` its twin, the same float
  `<demo>/model.keras` converted to full int8 (aqedge.convert.ptq). Without them, both are
  trained small here (1 epoch float + 1 epoch QAT on 12,000 images) into build/bench-demo/.
- The ×2.5 Swish network of bench/accuracy.py (`swish_x2.5_w4a4`, adaptive W4A4, and its
  full-int8 twin `swish_x2.5_int8`), trained small the same way into build/bench-demo/: a
  MobileNetV2-style network whose LOGISTIC and HARD_SWISH run through lookup tables.
- The bench/zoo.py networks, built by the bench with fixed seeds and cached under
  $AQEDGE_ZOO_CACHE (default build/zoo/): keras.applications MobileNet (alpha 0.25) and
  MobileNetV2 (alpha 0.35) at 96x96x3 with a 10-class head, full-int8 PTQ (`*_int8`) and aqedge's
  adaptive W4A4 after 4 QAT steps on random data (`*_w4a4`), and the dense autoencoder
  640-128-128-128-8-128-128-128-640 (int8). Their weights are random (accuracy is not measured).
- RAM: the emulated MPS2 boards are declared with the 4 MiB QEMU maps at 0x20000000 (their
  board files declare a realistic 256 KiB), so that TFLite Micro's MobileNetV2 (arena 224 KB
  int8, 317 KB W4A4) links; `--board-ram` keeps the board files' figure. No column depends on
  it: arena, static RAM and stack are what each image uses.
- stack_bytes: high-water mark. QEMU starts with RAM zeroed, so after one inference the
  deepest non-zero word of the stack section, read through the QEMU monitor, marks it (a lower
  bound if the deepest words happened to be written as zeros). `stack_full`: the deepest 16
  bytes were written too, so the inference may need more than the board's stack (it then runs
  on into the RAM below it, unchecked); the table marks it "(full)".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from aqedge import flash as aqflash
from aqedge.boards import resolve
from aqedge.codegen.tflm_lib import trees_from_env
from aqedge.codegen.build import build
from aqedge.compare import Contender, build_all, measure_all, summarize
from aqedge.harness.samples import load_samples
from aqedge.codegen.graph import read_tflite
from aqedge.codegen.lower import lower
from aqedge.errors import AqError
from aqedge.harness.link import DeviceLink
from aqedge.inspect import count_macs as inspect_macs

import zoo

REPO = Path(__file__).resolve().parent.parent
MLPERF_ENV = "AQEDGE_MLPERF_TINY"
RESULTS = REPO / "bench" / "results"
CROSS = "arm-none-eabi-"
def count_macs(path: Path) -> int:
    return inspect_macs(lower(read_tflite(path), str(path)))


def _symbols(elf: Path) -> dict[str, tuple[int, int]]:
    """name -> (address, size) of every sized symbol."""
    out = subprocess.run([f"{CROSS}nm", "-S", str(elf)], capture_output=True, text=True, check=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4:
            syms[parts[3]] = (int(parts[0], 16), int(parts[1], 16))
        elif len(parts) == 3:
            syms[parts[2]] = (int(parts[0], 16), 0)
    return syms


def weight_bytes(elf: Path) -> int:
    """Bytes of the filters and biases (op<N>_filter / _weights / _bias arrays) in an image."""
    return sum(size for name, (_, size) in _symbols(elf).items()
               if re.fullmatch(r"op\d+_(filter|weights|bias)", name))


def stack_high_water(board, build_dir: Path, x: np.ndarray) -> int | None:
    """Run one inference under QEMU with a monitor socket and find the deepest stack word used."""
    syms = _symbols(build_dir / "firmware.elf")
    if "_sstack" not in syms or "_estack" not in syms:
        return None
    lo, hi = syms["_sstack"][0], syms["_estack"][0]
    mon_path = Path(tempfile.mkdtemp()) / "mon.sock"
    original = aqflash.qemu_command

    def with_monitor(b, elf, fd):
        cmd = original(b, elf, fd)
        i = cmd.index("-monitor")
        cmd[i + 1] = f"unix:{mon_path},server=on,wait=off"
        return cmd

    aqflash.qemu_command = with_monitor
    try:
        with aqflash.boot_emulated(board, build_dir / "firmware.elf") as emu:
            with DeviceLink(emu.url) as link:
                link.connect(20.0)
                link.infer(x.tobytes())
                mon = socket.socket(socket.AF_UNIX)
                mon.connect(str(mon_path))
                mon.settimeout(5.0)
                words = (hi - lo) // 4
                mon.sendall(f"xp /{words}wx {lo:#x}\n".encode())
                data, end = b"", time.monotonic() + 30
                last = f"{hi - 16:x}:".encode()
                while time.monotonic() < end and last not in data:
                    try:
                        chunk = mon.recv(1 << 20)
                    except socket.timeout:
                        break
                    if not chunk:
                        break
                    data += chunk
                mon.close()
    finally:
        aqflash.qemu_command = original
    deepest = None
    for m in re.finditer(r"([0-9a-f]{8,16}):((?:[ \t]+0x[0-9a-f]{8})+)", data.decode(errors="replace")):
        addr = int(m.group(1), 16)
        for j, w in enumerate(m.group(2).split()):
            if int(w, 16) != 0:
                a = addr + 4 * j
                deepest = a if deepest is None else min(deepest, a)
    return None if deepest is None else hi - deepest


DEMO_W4A4, DEMO_INT8 = "fashion_w4a4.tflite", "fashion_int8.tflite"


def demo_models(demo: Path) -> tuple[Path, Path]:
    """(W4A4, INT8 twin) .tflite of the demo's Fashion-MNIST CNN, made if missing."""
    import keras

    from aqedge import datasets, example
    from aqedge.convert import convert_keras
    from aqedge.convert.ptq import convert_int8
    from aqedge.train import quantize_and_finetune

    out = REPO / "build" / "bench-demo"
    out.mkdir(parents=True, exist_ok=True)
    w4a4, int8 = out / DEMO_W4A4, out / DEMO_INT8
    x, y = datasets.load("fashion-mnist", "train")
    demo_tflite, demo_keras = demo / "model.tflite", demo / "model.keras"
    if demo_tflite.is_file() and _has_int4(demo_tflite) and demo_keras.is_file():
        w4a4.write_bytes(demo_tflite.read_bytes())
        int8.write_bytes(convert_int8(keras.models.load_model(demo_keras), x))
        return w4a4, int8
    if not (w4a4.is_file() and int8.is_file() and _has_int4(w4a4)):
        # An older `aqedge run` output holds a plain int8 model.tflite: reuse its float model.
        if demo_keras.is_file():
            print(f"{demo_tflite} has no INT4 weights: W4A4 fine-tuned here from {demo_keras}", flush=True)
            model = keras.models.load_model(demo_keras)
        else:
            print(f"no {demo_keras}: training a small Fashion-MNIST CNN", flush=True)
            model = example.train_float(x[:12000], y[:12000], epochs=1, seed=0)
        int8.write_bytes(convert_int8(model, x))
        qat = quantize_and_finetune(model, x[:12000], y[:12000], 1, seed=0, weight_bits=4,
                                    activation_bits=4, first_last_bits=8)
        w4a4.write_bytes(convert_keras(qat, x))
    return w4a4, int8


SWISH_W4A4, SWISH_INT8 = "swish_x2.5_w4a4.tflite", "swish_x2.5_int8.tflite"


def swish_models() -> tuple[Path, Path]:
    """(W4A4, INT8 twin) .tflite of the accuracy benchmark's Swish network at ×2.5 width
    (LOGISTIC and HARD_SWISH through tables), trained small like the demo pair when missing:
    1 float epoch, then 1 adaptive W4A4 epoch, on 12,000 images."""
    from accuracy import swish_mbv2

    from aqedge import datasets
    from aqedge.convert import convert_keras
    from aqedge.convert.ptq import convert_int8
    from aqedge.train import fit, quantize_and_finetune, with_batch_size

    out = REPO / "build" / "bench-demo"
    out.mkdir(parents=True, exist_ok=True)
    w4a4, int8 = out / SWISH_W4A4, out / SWISH_INT8
    if not (w4a4.is_file() and int8.is_file()):
        print("training the x2.5 Swish network small (1 + 1 epochs on 12,000 images)", flush=True)
        x, y = datasets.load("fashion-mnist", "train")
        model = fit(swish_mbv2(2.5), x[:12000], y[:12000], 1, seed=0)
        int8.write_bytes(convert_int8(with_batch_size(model, 1), x))
        qat = quantize_and_finetune(model, x[:12000], y[:12000], 1, lr=2e-3, seed=0)
        w4a4.write_bytes(convert_keras(qat, x))
    return w4a4, int8


#: (W4A4, INT8) twins compared per MAC and by weight bytes.
PAIRS = ((DEMO_W4A4, DEMO_INT8), (SWISH_W4A4, SWISH_INT8),
         *((zoo.file_name(w4), zoo.file_name(i8)) for w4, i8 in zoo.ZOO_PAIRS))
#: --models groups of bench/zoo.py names.
ZOO_GROUPS = {"mobilenet": ["mobilenet_int8", "mobilenet_w4a4"],
              "mobilenet_v2": ["mobilenet_v2_int8", "mobilenet_v2_w4a4"],
              "autoencoder": ["autoencoder_int8"]}
ZOO_GROUPS["zoo"] = [n for g in ZOO_GROUPS.values() for n in g]
DEFAULT_MODELS = "mlperf,demo,swish,mobilenet,mobilenet_v2,autoencoder"
#: RAM that QEMU maps for an emulated board, where its board file declares less.
QEMU_RAM = {"qemu-mps2-an386": 4 << 20, "qemu-mps2-an500": 4 << 20}


def bench_board(name: str, board_ram: bool = False):
    """The board `name`; an emulated one with all the RAM QEMU maps (QEMU_RAM) unless
    `board_ram` keeps its board file's."""
    import dataclasses

    board, _ = resolve(name)
    ram = QEMU_RAM.get(board.name)
    if board_ram or not board.emulated or ram is None or ram <= board.ram_bytes:
        return board
    print(f"bench/device.py: {board.name} declared with the {ram:,} bytes of RAM QEMU maps "
          f"(board file: {board.ram_bytes:,})", flush=True)
    return dataclasses.replace(board, ram_bytes=ram)


def mlperf_models() -> list[Path]:
    """The MLPerf Tiny .tflite files in $AQEDGE_MLPERF_TINY; without them, a message and none."""
    directory = os.environ.get(MLPERF_ENV, "").strip()
    models = sorted(Path(directory).glob("*.tflite")) if directory else []
    if not models:
        where = f"{MLPERF_ENV}={directory} holds no .tflite" if directory else f"{MLPERF_ENV} is not set"
        print(f"bench/device.py: {where}: skipping the MLPerf Tiny rows", file=sys.stderr)
    return models


def select_models(spec: str, demo: Path, extra: list[str]) -> list[Path]:
    """The .tflite files of a --models list (see the module docstring), in its order, then the
    --extra files; exits naming any unknown entry."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    others = {"demo", "swish", *ZOO_GROUPS, *zoo.ZOO}
    mlperf = {p.stem: p for p in mlperf_models()} if any(n not in others for n in names) else {}
    known = {"mlperf", "demo", "swish", *ZOO_GROUPS, *zoo.ZOO, *mlperf}
    unknown = [n for n in names if n not in known]
    if unknown:
        sys.exit(f"bench/device.py: unknown --models {', '.join(unknown)}; choose from "
                 f"{', '.join(sorted(known))}")
    models: list[Path] = []
    for n in names:
        if n == "mlperf":
            models += mlperf.values()
        elif n in mlperf:
            models.append(mlperf[n])
        elif n == "demo":
            models += demo_models(demo)
        elif n == "swish":
            models += swish_models()
        else:
            models += zoo.zoo_models(ZOO_GROUPS.get(n, [n]), lambda t: print(t, flush=True))
    return list(dict.fromkeys(models + [Path(e) for e in extra]))


def _has_int4(path: Path) -> bool:
    graph = read_tflite(path)
    return any(t.dtype == "int4" for t in graph.tensors if t is not None)


def measure_model(path: Path, board, trees: list[Path], tmp: Path, samples: int, seed: int) -> dict:
    """aqedge's row for `path` on `board`, with the TFLM builds of each tree measured on the same
    random inputs (aqedge.compare) as its peers."""
    say = lambda text: print(text, flush=True)  # noqa: E731
    contenders = build_all(path, board, trees, tmp / path.stem, say)
    ours = contenders[0]
    inputs = load_samples(ours.info, "random", samples, seed)
    measure_all(board, contenders, inputs, say)
    macs = count_macs(path)
    summary = summarize(board, contenders, macs)
    m, info, out = ours.metrics, ours.info, ours.build_dir
    stack = stack_high_water(board, out, inputs.inputs[0])
    row = {"model": path.name, "board": board.name, "instructions": m["latency"]["median"],
           "macs": macs, "arena_bytes": info.arena_bytes, "stack_bytes": stack,
           "stack_full": stack is not None and stack > board.stack_bytes - 16,
           "code_bytes": ours.code_bytes, "weight_bytes": weight_bytes(out / "firmware.elf"),
           "instructions_per_mac": summary["runtimes"][0]["latency_per_mac"],
           "bit_exact_samples": round(m["device_matches_reference"] * m["measured"]),
           "samples": m["samples"], "static_ram_bytes": info.ram_bytes - board.stack_bytes,
           "peers": {}}
    row["activation_storage"] = info.activation_storage   # "packed" when int8 does not fit
    if info.activation_storage == "int8" and info.packed_arena_bytes < info.int8_arena_bytes:
        row["packed"] = measure_packed(path, board, ours, inputs, tmp, say)
    for peer in summary["runtimes"][1:]:
        row["peers"][peer["runtime"]] = {
            "instructions": peer["latency"], "arena_bytes": peer["arena_bytes"],
            "code_bytes": peer["code_bytes"], "bit_exact_samples": peer["bit_exact_samples"],
            "vs_instructions": peer["aqedge_ratio"].get("latency"),
            "vs_arena": peer["aqedge_ratio"].get("arena_bytes"),
            "vs_code": peer["aqedge_ratio"].get("code_bytes")}
    return row


def measure_packed(path: Path, board, ours: Contender, inputs, tmp: Path, say) -> dict:
    """The same model built with --activation-storage packed and measured on the same inputs:
    its arena, instructions and flash against the int8-storage build `ours`."""
    c = Contender("aqedge packed", tmp / path.stem / board.name / "aqedge-packed")
    say(f"{board.name}: building with aqedge, packed activations")
    c.info = build(path, board, c.build_dir, "packed")
    measure_all(board, [c], inputs, say)
    m, base = c.metrics, ours.metrics["latency"]["median"]
    return {"arena_bytes": c.info.arena_bytes, "int8_arena_bytes": ours.info.arena_bytes,
            "vs_int8_arena": round(c.info.arena_bytes / ours.info.arena_bytes, 3),
            "instructions": m["latency"]["median"],
            "vs_int8_instructions": round(m["latency"]["median"] / base, 3),
            "flash_bytes": c.info.flash_bytes, "int8_flash_bytes": ours.info.flash_bytes,
            "packed_tensors": sum(1 for t in c.info.tensors if t["packed"]),
            "bit_exact_samples": round(m["device_matches_reference"] * m["measured"])}


def packed_table(rows: list[dict]) -> list[str]:
    """The rows measured with packed activations too: arena and instructions against the same
    model with int8 storage."""
    packed = [r for r in rows if r.get("packed")]
    if not packed:
        return []
    lines = ["", "Packed activations (`aqedge build --activation-storage packed`: 4-bit tensors two "
             "codes a byte; convolutions on their own kernels one output row at a time) against the same "
             "model with int8 storage:", "",
             "| model | board | packed tensors | arena B int8 | arena B packed | ratio | instr int8 | "
             "instr packed | ratio | flash B int8 | flash B packed | bit-exact |",
             "| --- | --- |" + " ---: |" * 10]
    for r in packed:
        p = r["packed"]
        lines.append(f"| {r['model']} | {r['board']} | {p['packed_tensors']} | {p['int8_arena_bytes']:,} | "
                     f"{p['arena_bytes']:,} | {p['vs_int8_arena']} | {r['instructions']:,} | "
                     f"{p['instructions']:,} | {p['vs_int8_instructions']} | {p['int8_flash_bytes']:,} | "
                     f"{p['flash_bytes']:,} | {p['bit_exact_samples']}/{r['samples']} |")
    return lines


def device_table(rows: list[dict]) -> list[str]:
    """The Markdown table of aqedge's rows and, per TFLM runtime measured, its instructions
    and aqedge's ratios to its instructions, arena and code."""
    peers = sorted({name for r in rows for name in r["peers"]})
    head = ["model", "board", "instructions", "MACs", "instr/MAC", "arena B", "stack B",
            "static RAM B", "code B", "weight B", "bit-exact"]
    for p in peers:
        head += [f"{p} instr", f"{p} bit-exact", f"x {p} instr", f"x {p} arena", f"x {p} code"]
    lines = ["| " + " | ".join(head) + " |", "| --- | --- |" + " ---: |" * (len(head) - 2)]
    for r in rows:
        cells = [r["model"], r["board"], *(_fmt(r.get(k)) for k in (
            "instructions", "macs", "instructions_per_mac", "arena_bytes", "stack_bytes",
            "static_ram_bytes", "code_bytes", "weight_bytes")), f"{r['bit_exact_samples']}/{r['samples']}"]
        if r.get("stack_full"):
            cells[6] += " (full)"
        for p in peers:
            q = r["peers"].get(p, {})
            cells += [_fmt(q.get("instructions")),
                      f"{q['bit_exact_samples']}/{r['samples']}" if q else "-",
                      *(_fmt(q.get(k)) for k in ("vs_instructions", "vs_arena", "vs_code"))]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Instructions: QEMU -icount shift=0 median over the same random inputs for every "
              "runtime (not time). TFLM columns: the same .tflite built with TensorFlow Lite Micro "
              "(-DNDEBUG, each tree's kernels) by aqedge.codegen.tflm.build_tflm and measured in this "
              "run; x: aqedge's figure divided by the peer's. Code: flash minus the model's data "
              "arrays. Stack: deepest non-zero word of the (initially zero) stack after one "
              "inference; (full): all of it was written, the inference may need more than the "
              "board's stack. Static RAM: .data + .bss (arena, buffers)."]
    return lines


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:,}" if isinstance(v, int) else f"{v}"


def measure_models(models: list[Path], boards: list, trees: list[Path], samples: int,
                   seed: int) -> tuple[list[dict], list[dict]]:
    """Every model on every board: (rows, failures {model, board, error}); a model whose build
    or measurement fails with an AqError is a failure and the others still run."""
    rows, failed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for board in boards:
            for path in models:
                try:
                    rows.append(measure_model(path, board, trees, Path(tmp), samples, seed))
                except AqError as exc:
                    failed.append({"model": path.name, "board": board.name, "error": str(exc)})
                    print(f"bench/device.py: {path.name} on {board.name}: {exc}", file=sys.stderr,
                          flush=True)
                    continue
                print(rows[-1], flush=True)
    return rows, failed


def pair_table(rows: list[dict], boards: list[str]) -> list[str]:
    """W4A4 models against their INT8 twins (PAIRS), per board, when both were measured."""
    pairs = []
    for board_name in boards:
        by = {r["model"]: r for r in rows if r["board"] == resolve(board_name)[0].name}
        for w4, i8 in PAIRS:
            if w4 not in by or i8 not in by:
                continue
            a, b = by[w4], by[i8]
            pairs.append(f"| {w4} | {a['board']} | {a['instructions_per_mac']} | {b['instructions_per_mac']} | "
                         f"{a['instructions_per_mac'] / b['instructions_per_mac']:.3f} | "
                         f"{a['weight_bytes']:,} | {b['weight_bytes']:,} | "
                         f"{a['weight_bytes'] / b['weight_bytes']:.3f} |")
    if not pairs:
        return []
    return ["", "W4A4 models against their INT8 twins (issue 5: per-MAC ratio <= 1, weight ratio "
            "<= 0.55; issue 19: instructions <= 0.95x the twin's; same MACs, so the per-MAC ratio "
            "is the instruction ratio):", "",
            "| W4A4 model | board | W4A4 instr/MAC | INT8 instr/MAC | ratio | W4A4 weight B | INT8 weight B | ratio |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"] + pairs


def write_results(rows: list[dict], failed: list[dict], boards: list[str], out: Path) -> None:
    """out/device.json (rows, then failures) and out/device.md; prints the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "device.json").write_text(json.dumps(rows + failed, indent=2) + "\n")
    lines = device_table(rows)
    if failed:
        lines += ["", "Not measured:", ""] + [f"- {f['model']} on {f['board']}: "
                                              f"{' '.join(f['error'].split())}" for f in failed]
    lines += pair_table(rows, boards)
    lines += packed_table(rows)
    (out / "device.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", nargs="+", default=["qemu-mps2-an386", "qemu-stm32f405"])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--demo", type=Path, default=REPO / "build" / "demo",
                        help="`aqedge run` output with model.tflite (W4A4) and model.keras (float)")
    parser.add_argument("--models", default=DEFAULT_MODELS,
                        help="comma-separated rows: mlperf, demo, swish, mobilenet, mobilenet_v2, "
                             "autoencoder, zoo, a bench/zoo.py name or an MLPerf file stem")
    parser.add_argument("--no-demo", action="store_true",
                        help="skip the Fashion-MNIST CNN and Swish network pairs")
    parser.add_argument("--extra", nargs="*", default=[], help="more .tflite models")
    parser.add_argument("--tflm-tree", nargs="*", default=[],
                        help="TFLite Micro trees to measure as peers (default: $TFLM_TREE)")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="folder for device.json and device.md")
    parser.add_argument("--board-ram", action="store_true",
                        help="keep the board files' RAM size (TFLM's MobileNetV2 then does not fit)")
    args = parser.parse_args()
    spec = args.models
    if args.no_demo:
        spec = ",".join(n for n in spec.split(",") if n.strip() not in ("demo", "swish"))
    models = select_models(spec, args.demo, args.extra)
    trees = [Path(t) for t in args.tflm_tree] or trees_from_env()
    if not trees:
        print("bench/device.py: no TFLM tree (--tflm-tree or TFLM_TREE): no peer columns", file=sys.stderr)
    boards = [bench_board(b, args.board_ram) for b in args.boards]
    rows, failed = measure_models(models, boards, trees, args.samples, args.seed)
    write_results(rows, failed, args.boards, args.results)


if __name__ == "__main__":
    main()
