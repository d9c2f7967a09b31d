"""Plan every activation tensor into one arena, by lifetime, at build time.

Greedy (each buffer at the lowest offset free for its whole lifetime), the same family of planner
as TFLite Micro's GreedyMemoryPlanner, run over several placement orders (largest first, by first
use, and a fixed set of seeded shuffles for small graphs); the smallest arena wins. Reshape-like
ops alias their input.

In place: a call may declare (KernelCall.inplace) that its output can overlap an input with a
lead: output offset <= input offset - lead. Such an overlap is allowed only when the input's
buffer dies at that call (its last use), is not the graph input (the host writes it once; a
profiler may invoke twice) nor the graph output, and the output's buffer is born there. Every
other pair of buffers live at the same step stays disjoint.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .graph import Graph
from .lower import KernelCall, alias_roots

ALIGN = 8
#: Seeded random placement orders tried on graphs of at most MAX_SHUFFLED buffers.
SHUFFLES = 100
MAX_SHUFFLED = 40


@dataclass(frozen=True)
class Buffer:
    tensors: tuple[int, ...]   # tensors that share this memory (aliases)
    size: int
    first: int                 # first step alive (-1: graph input)
    last: int                  # last step alive (len(calls): graph output)


@dataclass
class MemoryPlan:
    offsets: dict[int, int]    # tensor index -> byte offset in the arena
    arena_bytes: int
    buffers: list[Buffer]
    # Overlaps the plan relies on: (output buffer's first tensor, input buffer's first tensor)
    # -> lead in bytes (output offset <= input offset - lead), from KernelCall.inplace.
    overlaps: dict[tuple[int, int], int] = field(default_factory=dict)


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def plan_memory(graph: Graph, calls: list[KernelCall],
                packed: frozenset[int] = frozenset()) -> MemoryPlan:
    """Assign arena offsets to every non-constant tensor the calls touch; the `packed` ones
    (storage.py) take half their element count in bytes, rounded up."""
    find = alias_roots(calls)
    spans: dict[int, list[int]] = {}

    def touch(t: int, step: int) -> None:
        tensor = graph.tensor(t)
        if tensor is None or tensor.is_constant:
            return
        r = find(t)
        span = spans.setdefault(r, [step, step])
        span[0], span[1] = min(span[0], step), max(span[1], step)

    for t in graph.inputs:
        touch(t, -1)
    for step, call in enumerate(calls):
        for t in call.op.inputs + call.op.outputs:
            touch(t, step)
    for t in graph.outputs:
        touch(t, len(calls))

    members: dict[int, list[int]] = {}
    for t in {t for call in calls for t in call.op.inputs + call.op.outputs} | set(graph.inputs) | set(graph.outputs):
        tensor = graph.tensor(t)
        if tensor is not None and not tensor.is_constant:
            members.setdefault(find(t), []).append(t)
    def nbytes(t: int) -> int:
        return (graph.tensors[t].size + 1) // 2 if t in packed else graph.tensors[t].nbytes

    buffers = [Buffer(tuple(sorted(ts)), max(nbytes(t) for t in ts), *spans[r])
               for r, ts in members.items()]

    by_root = {find(b.tensors[0]): b for b in buffers}
    outputs = set(graph.outputs)
    allowed: dict[tuple[int, int], int] = {}   # (out buffer index, in buffer index) -> lead
    index = {id(b): k for k, b in enumerate(buffers)}
    for step, call in enumerate(calls):
        if not call.kernel or len(call.op.outputs) != 1:
            continue
        out = by_root.get(find(call.op.outputs[0]))
        for t, lead in call.inplace:
            src = by_root.get(find(t))
            if (out is None or src is None or src is out or src.last != step or src.first < 0
                    or out.first != step or outputs & set(src.tensors)):
                continue
            key = (index[id(out)], index[id(src)])
            allowed[key] = max(allowed.get(key, 0), lead)

    best = None
    for order in _orders(buffers):
        offsets_by_buf = _place(buffers, order, allowed)
        arena = max((offsets_by_buf[k] + buffers[k].size for k in order), default=0)
        if best is None or arena < best[0]:
            best = (arena, offsets_by_buf)
    arena, offsets_by_buf = best
    offsets: dict[int, int] = {}
    for k, buf in enumerate(buffers):
        for t in buf.tensors:
            offsets[t] = offsets_by_buf[k]
    used = {}
    for (o, i), lead in allowed.items():
        a, b = buffers[o], buffers[i]
        oa, ob = offsets_by_buf[o], offsets_by_buf[i]
        if oa < ob + b.size and ob < oa + a.size:
            used[(a.tensors[0], b.tensors[0])] = lead
    return MemoryPlan(offsets, _align(arena), buffers, used)


def _orders(buffers: list[Buffer]) -> list[list[int]]:
    """Placement orders to try: TFLM's (largest first), by first use, and seeded shuffles."""
    n = len(buffers)
    by_size = sorted(range(n), key=lambda k: (-buffers[k].size, buffers[k].first, buffers[k].tensors))
    by_first = sorted(range(n), key=lambda k: (buffers[k].first, -buffers[k].size, buffers[k].tensors))
    # Latest first: lets a chain of in-place calls stack each output just below its input.
    by_last = sorted(range(n), key=lambda k: (-buffers[k].last, -buffers[k].size, buffers[k].tensors))
    orders = [by_size, by_first, by_last]
    rng = random.Random(0)
    for _ in range(SHUFFLES if n <= MAX_SHUFFLED else 0):
        order = list(by_size)
        rng.shuffle(order)
        orders.append(order)
    return orders


def _fits(k: int, off: int, j: int, off_j: int, buffers: list[Buffer],
          allowed: dict[tuple[int, int], int]) -> bool:
    """Can buffer k sit at `off` next to buffer j at `off_j`?"""
    a, b = buffers[k], buffers[j]
    if a.last < b.first or b.last < a.first:
        return True
    if off + a.size <= off_j or off_j + b.size <= off:
        return True
    if (k, j) in allowed:
        return off <= off_j - allowed[(k, j)]
    if (j, k) in allowed:
        return off_j <= off - allowed[(j, k)]
    return False


def _place(buffers: list[Buffer], order: list[int], allowed: dict[tuple[int, int], int]) -> dict[int, int]:
    placed: dict[int, int] = {}
    for k in order:
        buf = buffers[k]
        live = [j for j in placed if not (buffers[j].last < buf.first or buf.last < buffers[j].first)]
        candidates = {0}
        for j in live:
            candidates.add(_align(placed[j] + buffers[j].size))
            if (k, j) in allowed:
                candidates.add((placed[j] - allowed[(k, j)]) // ALIGN * ALIGN)
            if (j, k) in allowed:
                candidates.add(_align(placed[j] + allowed[(j, k)]))
        for off in sorted(c for c in candidates if c >= 0):
            if all(_fits(k, off, j, placed[j], buffers, allowed) for j in live):
                placed[k] = off
                break
    return placed
