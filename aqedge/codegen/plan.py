"""Plan every activation tensor into one arena, by lifetime, at build time.

Greedy by size (largest first, each at the lowest offset free for its whole lifetime), the same
family of planner as TFLite Micro's GreedyMemoryPlanner. Reshape-like ops alias their input.
"""

from __future__ import annotations

from dataclasses import dataclass

from .graph import Graph
from .lower import KernelCall

ALIGN = 8


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


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def plan_memory(graph: Graph, calls: list[KernelCall]) -> MemoryPlan:
    """Assign arena offsets to every non-constant tensor the calls touch."""
    root: dict[int, int] = {}

    def find(t: int) -> int:
        while root.get(t, t) != t:
            t = root[t]
        return t

    for call in calls:
        if call.alias:
            root[find(call.alias[0])] = find(call.alias[1])

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
    buffers = [Buffer(tuple(sorted(ts)), max(graph.tensors[t].nbytes for t in ts), *spans[r])
               for r, ts in members.items()]

    placed: list[tuple[int, Buffer]] = []
    offsets: dict[int, int] = {}
    arena = 0
    for buf in sorted(buffers, key=lambda b: (-b.size, b.first, b.tensors)):
        live = sorted(((off, other) for off, other in placed
                       if not (other.last < buf.first or buf.last < other.first)),
                      key=lambda item: item[0])
        offset = 0
        for off, other in live:
            if offset + buf.size <= off:
                break
            offset = max(offset, _align(off + other.size))
        placed.append((offset, buf))
        arena = max(arena, offset + buf.size)
        for t in buf.tensors:
            offsets[t] = offset
    return MemoryPlan(offsets, _align(arena), buffers)
