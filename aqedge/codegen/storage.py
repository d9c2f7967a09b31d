"""Which activation tensors the arena stores packed: two 4-bit codes per byte (aq_storage in
firmware/include/aq_kernels.h; docs/architecture.md, "Packed activations").

A tensor (with the tensors aliasing it: reshapes, folded clamps) is packable when all its codes
lie in 16 consecutive values [lo, lo + 15], known at build time from its producer's output clamp
(the MINIMUM / MAXIMUM of a 4-bit activation quantizer, folded in by `lower.fold_clamps`, or the
clamps a table op was built with), when it is neither the model input nor its output, and when
its producer and every reader handle packed tensors: CONV_2D and DEPTHWISE_CONV_2D run their own
variant one output row at a time (`KernelCall.band`), FULLY_CONNECTED its "packed" variant, the
others a packed twin (`PACKED_TWINS`). Bit-exactness does not depend on it: the codes are the
same, only their storage is.

    storages = decide(graph, calls, "packed")      # tensor index -> TensorStorage
    calls = lower(graph, label, packed=packed_tensors(storages))
    apply(calls, storages)                          # packed kernel names, params, in-place leads
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import AqError
from .graph import Graph
from .lower import KernelCall, act_params, alias_roots, lower, scratch_bytes, window_lead
from .plan import MemoryPlan, plan_memory

#: --activation-storage: "packed" packs every packable tensor, "int8" none, "auto" packs only
#: when the int8-storage arena does not fit the board (packing costs instructions: unpacking
#: and packing around the convolutions' own kernels, portable packed kernels for the rest).
MODES = ("auto", "packed", "int8")

#: int8-storage kernel -> its packed twin, for the non-MAC ops (FULLY_CONNECTED switches to the
#: "packed" variant of dispatch.py at lowering; convolutions run in row bands).
PACKED_TWINS = {"aq_add_s8": "aq_add_packed_s8", "aq_max_pool_s8": "aq_max_pool_packed_s8",
                "aq_avg_pool_s8": "aq_avg_pool_packed_s8", "aq_lut_s8": "aq_lut_packed_s8",
                "aq_clamp_s8": "aq_clamp_packed_s8", "aq_mean_s8": "aq_mean_packed_s8"}
#: The params fields naming the storage of each data input, in op-input order, and the output.
_INPUT_FIELDS = {"aq_add_s8": ("in1_store", "in2_store")}


@dataclass(frozen=True)
class TensorStorage:
    """How one activation buffer (a tensor and its aliases) is stored."""

    tensor: int                # the buffer's first tensor
    name: str
    packed: bool
    lo: int                    # lowest code the tensor can hold (packed: nibble = code - lo)
    levels: int                # codes the tensor can hold
    int8_bytes: int
    packed_bytes: int
    why: str                   # why it is (not) packed, one line

    def as_dict(self) -> dict:
        return asdict(self)


def _data_inputs(call: KernelCall) -> list[int]:
    """The activation tensors a call reads (not its constants or tables)."""
    if call.kernel == "aq_lut_s8":
        return [call.args[1]]
    return [t for t in call.op.inputs if isinstance(t, int) and t >= 0]


def _packable_kernel(call: KernelCall) -> bool:
    """CONV_2D / DEPTHWISE_CONV_2D (row bands), FULLY_CONNECTED (its packed variant) and the
    kernels with a packed twin."""
    return call.variant is not None or call.kernel in PACKED_TWINS


#: Kernels whose output codes lie within their input's (a maximum, a rounded mean, a clamp).
_WITHIN_INPUT = ("aq_max_pool_s8", "aq_avg_pool_s8", "aq_clamp_s8")


def code_range(call: KernelCall, input_range: tuple[int, int] | None) -> tuple[int, int]:
    """The codes a call's output can hold: its output clamp (tables: the clamps folded into the
    kernel they were built from), narrowed to `input_range` for pooling and clamps."""
    params = call.table[-1][2] if call.table else call.params
    act = act_params(params)
    lo, hi = (-128, 127) if act is None else (int(act["act_min"]), int(act["act_max"]))
    if call.kernel in _WITHIN_INPUT and input_range is not None:
        lo, hi = max(lo, input_range[0]), min(hi, input_range[1])
    return lo, hi


def decide(graph: Graph, calls: list[KernelCall], mode: str,
           int8_why: str = "int8 storage asked for (--activation-storage int8)") -> dict[int, TensorStorage]:
    """The storage of every activation buffer the calls touch, keyed by each of its tensors;
    `mode` "packed" packs every packable one, "int8" none (each then says `int8_why`; "auto"
    is resolved by the caller)."""
    if mode not in ("packed", "int8"):
        raise AqError(f"activation storage '{mode}': use one of {', '.join(MODES)}")
    root = alias_roots(calls)
    members: dict[int, list[int]] = {}
    producer: dict[int, KernelCall] = {}
    readers: dict[int, list[KernelCall]] = {}
    ranges: dict[int, tuple[int, int]] = {}      # buffer root -> codes it can hold
    for call in calls:
        if not call.kernel:
            continue
        ins = _data_inputs(call)
        for t in call.op.outputs:
            producer[root(t)] = call
            ranges[root(t)] = code_range(call, ranges.get(root(ins[0])) if ins else None)
        for t in ins:
            readers.setdefault(root(t), []).append(call)
    for t, tensor in enumerate(graph.tensors):
        if not tensor.is_constant and tensor.dtype == "int8" and (root(t) in producer or root(t) in readers):
            members.setdefault(root(t), []).append(t)
    edges = set(graph.inputs) | set(graph.outputs)
    storages: dict[int, TensorStorage] = {}
    for r, ts in members.items():
        size = max(graph.tensors[t].size for t in ts)
        rng = ranges.get(r, (-128, 127))
        levels = rng[1] - rng[0] + 1
        why = int8_why if mode == "int8" else _why_not(ts, edges, producer.get(r), readers.get(r, []), levels)
        s = TensorStorage(min(ts), graph.tensors[min(ts)].name, why is None,
                          rng[0], levels, size, (size + 1) // 2,
                          why or f"{levels} codes from {rng[0]}, written by {producer[r].op.opcode} "
                                 f"and read by {_opcodes(readers.get(r, []))}")
        for t in ts:
            storages[t] = s
    return storages


def _opcodes(calls: list[KernelCall]) -> str:
    return ", ".join(sorted({c.op.opcode for c in calls}))


def _kernels(calls: list[KernelCall]) -> str:
    """'MUL (aq_mul_s8), PAD (aq_pad_s8)'."""
    return ", ".join(sorted({f"{c.op.opcode} ({c.kernel})" for c in calls}))


def _why_not(ts, edges, producer, readers, levels) -> str | None:
    if edges & set(ts):
        return "the model's input or output: always int8"
    if levels > 16:
        return f"{levels} codes: more than 16 need int8"
    if producer is None:
        return "written by no op"
    lacking = [c for c in [producer] if not _packable_kernel(c)]
    if lacking:
        return f"written by {_kernels(lacking)}, which has no packed kernel"
    lacking = [c for c in readers if not _packable_kernel(c)]
    if lacking:
        return f"read by {_kernels(lacking)}, which has no packed kernel"
    return None


def packed_tensors(storages: dict[int, TensorStorage]) -> frozenset[int]:
    return frozenset(t for t, s in storages.items() if s.packed)


def _store(s: TensorStorage | None) -> dict[str, int]:
    return {"packed": 1, "lo": s.lo} if s is not None and s.packed else {"packed": 0, "lo": 0}


def _band(params: dict, in_store: dict, out_store: dict) -> dict:
    """The aq_band_params of a CONV_2D / DEPTHWISE_CONV_2D run in row bands."""
    return {"in_h": params["in_h"], "k_h": params["k_h"], "stride_h": params["stride_h"],
            "dil_h": params["dil_h"], "pad_h": params["pad_h"],
            "in_row": params["in_w"] * params["in_c"], "out_row": params["out_w"] * params["out_c"],
            "in_store": in_store, "out_store": out_store}


def apply(calls: list[KernelCall], storages: dict[int, TensorStorage]) -> None:
    """Point every call that reads or writes a packed tensor at its packed twin, with the
    storage of each input and the output in its params (CONV_2D and DEPTHWISE_CONV_2D: their
    own variant run one output row at a time, `KernelCall.band`), and keep only the in-place
    overlaps that stay safe with the storages (a packed output may overwrite an int8 input at
    or above it, not the other way round; windowed ops get their lead recomputed in bytes)."""
    for call in calls:
        if not call.kernel:
            continue
        ins = _data_inputs(call)
        out = storages.get(call.op.outputs[0])
        packed_in = [storages.get(t) is not None and storages[t].packed for t in ins]
        out_packed = out is not None and out.packed
        if not (any(packed_in) or out_packed):
            continue
        if _windowed(call):
            _pixel_rows(call.params)
            call.band = _band(call.params, _store(storages.get(ins[0])), _store(out))
            call.comment += ", packed activations: one output row at a time"
        else:
            fields = _INPUT_FIELDS.get(call.kernel, ("in_store",))
            for name, t in zip(fields, ins):
                call.params[name] = _store(storages.get(t))
            call.params["out_store"] = _store(out)
            if call.variant is None:
                call.kernel = PACKED_TWINS[call.kernel]
            call.comment += ", packed activations"
        call.inplace = _inplace(call, storages, out_packed)


def _pixel_rows(params: dict) -> None:
    """A 1x1 convolution with stride 1 and no padding maps each pixel to itself, so its rows
    can be regrouped: the pixels as rows of the smallest multiple of 4 at least a row long that
    divides their count, so that the Cortex-M kernels' 4-pixel blocks fill up in every band
    (a 6x6 layer runs as 3 rows of 12, not 6 rows of 6)."""
    if (params["k_h"], params["k_w"], params["stride_h"], params["stride_w"], params["pad_h"],
            params["pad_w"]) != (1, 1, 1, 1, 0, 0):
        return
    pixels = params["out_h"] * params["out_w"]
    width = next((w for w in range(4, pixels + 1, 4) if w >= params["out_w"] and pixels % w == 0), None)
    if width is not None and width != params["out_w"]:
        params.update(in_h=pixels // width, in_w=width, out_h=pixels // width, out_w=width)


def _windowed(call: KernelCall) -> bool:
    return call.variant is not None and call.variant.kind in ("conv", "depthwise")


def _inplace(call: KernelCall, storages, out_packed: bool) -> list[tuple[int, int]]:
    kept = []
    for t, lead in call.inplace:
        in_packed = storages.get(t) is not None and storages[t].packed
        if _windowed(call):
            kept.append((t, window_lead(call.params, in_packed, out_packed, rows=True)))
        elif in_packed == out_packed or out_packed:
            kept.append((t, lead))
    return kept


def summary(storages: dict[int, TensorStorage]) -> list[dict]:
    """One row per activation buffer, in tensor order (build.json's `activation_storage`)."""
    seen = {id(s): s for s in storages.values()}
    return [s.as_dict() for s in sorted(seen.values(), key=lambda s: s.tensor)]


@dataclass
class LoweredModel:
    """A model lowered and planned with its activation storage decided."""

    calls: list[KernelCall]
    plan: MemoryPlan
    storages: dict[int, TensorStorage]
    mode: str                  # the storage used: "packed" or "int8" ("auto" resolved)
    int8_arena_bytes: int      # the arena with every tensor stored as int8
    packed_arena_bytes: int    # the arena with every packable tensor packed
    int8_calls: list[KernelCall]   # the calls of the int8-storage build (== calls for "int8")

    @property
    def packed_count(self) -> int:
        return sum(1 for s in {id(s): s for s in self.storages.values()}.values() if s.packed)

    def describe(self) -> str:
        return describe(self.mode, self.packed_count, self.plan.arena_bytes,
                        self.int8_arena_bytes, self.packed_arena_bytes)


def describe(mode: str, packed_count: int, arena: int, int8_arena: int, packed_arena: int) -> str:
    """One line on how a build stores its activations (`aqedge build` prints it)."""
    if mode == "packed":
        return (f"activations: {packed_count} tensor(s) packed, two 4-bit codes a byte: arena "
                f"{arena:,} B (int8 storage: {int8_arena:,} B), for more instructions")
    if packed_arena < int8_arena:
        return (f"activations: int8, arena {arena:,} B (--activation-storage packed: "
                f"{packed_arena:,} B, for more instructions)")
    return f"activations: int8, arena {arena:,} B (no tensor can be packed)"


def lower_model(graph: Graph, label: str, mode: str = "int8",
                ram_budget: int | None = None) -> LoweredModel:
    """Lower and plan `graph` with activation storage `mode` ("auto": packed only when the int8
    arena plus the kernels' scratch exceeds `ram_budget`, int8 without a budget)."""
    if mode not in MODES:
        raise AqError(f"activation storage '{mode}': use one of {', '.join(MODES)}")
    calls = lower(graph, label)
    int8_plan = plan_memory(graph, calls)
    storages = decide(graph, calls, "packed")
    packed = packed_tensors(storages)
    if not packed:
        return LoweredModel(calls, int8_plan, decide(graph, calls, "int8") if mode == "int8" else storages,
                            "int8", int8_plan.arena_bytes, int8_plan.arena_bytes, calls)
    packed_calls = lower(graph, label, packed)
    apply(packed_calls, storages)
    packed_plan = plan_memory(graph, packed_calls, packed)
    fits = ram_budget is None or int8_plan.arena_bytes + scratch_bytes(calls) <= ram_budget
    if mode == "int8" or (mode == "auto" and fits):
        why = (f"auto: the int8 arena fits the {ram_budget:,} B the board leaves for it (packing costs instructions)"
               if mode == "auto" and ram_budget is not None else
               "auto without a board: int8" if mode == "auto" else None)
        storages = decide(graph, calls, "int8", *(why,) if why else ())
        return LoweredModel(calls, int8_plan, storages, "int8", int8_plan.arena_bytes,
                            packed_plan.arena_bytes, calls)
    return LoweredModel(packed_calls, packed_plan, storages, "packed", int8_plan.arena_bytes,
                        packed_plan.arena_bytes, calls)
