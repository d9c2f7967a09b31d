"""Which kernel variant runs each MAC layer: chosen at build time, in Python, from the layer's
shape and constants (like CMSIS-NN's `*_wrapper_*`), and written into the generated model.c as
a direct call with a comment naming the variant. No C kernel picks a slower path at run time.

Every variant is one C function with the op's parameter struct and signature, defined twice under
the same name: portable C in firmware/kernels/ (the reference, bit-exact with TFLite Micro) and
the Cortex-M port in firmware/kernels/cortex-m/ where one exists. A variant may store its
weights in its own order (`Variant.layout`), built here from the TFLite tensor; both twins read
that order.

    v = select("fully_connected", params, False, w, b, shifts)
    v.kernel      # "aq_fully_connected_matvec_s8": the C function model.c calls
    v.name        # "matvec": the label in model.c, `aqedge inspect` and build.json
    v.layout(w, params, s4)   # the weights in the order the kernel reads
    v.bias(b, w, input_offset)  # the bias array the kernel takes
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

KINDS = ("conv", "depthwise", "fully_connected")


def natural(weights: np.ndarray, s4: bool) -> np.ndarray:
    """TFLite's own layout: int8 bytes, or INT4 packed two per byte (low nibble first)."""
    flat = np.asarray(weights, np.int64).reshape(-1)
    if not s4:
        return flat.astype(np.int8)
    if flat.size % 2:
        flat = np.concatenate([flat, [0]])
    nib = (flat & 0xF).astype(np.uint8)
    return (nib[0::2] | (nib[1::2] << 4)).astype(np.uint8)


@dataclass(frozen=True)
class Variant:
    """One kernel variant for one layer."""

    kind: str                   # "conv", "depthwise" or "fully_connected"
    name: str                   # short label: "im2col", "matvec", "3x3", "table", ...
    kernel: str                 # the C function
    why: str                    # one line: what the variant is and why this layer gets it
    relayout: Callable[[np.ndarray, dict[str, Any], bool], np.ndarray] | None = None
    #: The variant adds input_offset * (sum of each row's weights) to the bias at build time
    #: (`bias()`), so its inner loop multiplies raw int8 activations.
    folds_offset: bool = False
    #: False when the bias is part of the weight table: the kernel gets no bias array.
    takes_bias: bool = True
    #: RAM the optimised port needs during the call (its column buffer), in bytes: model.c's
    #: aq_scratch, shared by all calls, is the largest (`params["scratch"]`).
    scratch_bytes: int = 0

    def layout(self, weights: np.ndarray, params: dict[str, Any], s4: bool) -> np.ndarray:
        """The flash array of the weights (int values in TFLite's shape) for this kernel:
        int8 (s8) or uint8 packed bytes (s4)."""
        if self.relayout is None:
            return natural(weights, s4)
        return self.relayout(np.asarray(weights), params, s4)

    def bias(self, bias: np.ndarray | None, weights: np.ndarray, input_offset: int) -> np.ndarray | None:
        """The int32 bias array the kernel takes (None: no bias, the kernel adds nothing).

        With `folds_offset` it is bias + input_offset * sum(row), wrapped to int32: since
        TFLite's int32 sums wrap the same way, sum(w * x) + that == sum(w * (x + offset)) + bias
        exactly (mod 2^32), for every input."""
        if not self.takes_bias:
            return None
        if not self.folds_offset:
            return bias
        rows = channel_rows(self.kind, weights)
        b = np.zeros(rows.shape[0], np.int64) if bias is None else np.asarray(bias, np.int64)
        folded = (b + int(input_offset) * rows.sum(axis=1)) & 0xFFFFFFFF
        return ((folded ^ 0x80000000) - 0x80000000).astype(np.int32)


def channel_rows(kind: str, weights: np.ndarray) -> np.ndarray:
    """[out_c, taps] int64: each output channel's weights (depthwise 1HWC is channel-last)."""
    w = np.asarray(weights, np.int64)
    return w.reshape(-1, w.shape[-1]).T if kind == "depthwise" else w.reshape(w.shape[0], -1)


def requant_guard(kind: str, weights: np.ndarray, bias: np.ndarray | None, shifts,
                  input_offset: int) -> int:
    """aq_requant.guard: 0 when, for every channel and every input, |sum + bias| << left shift
    < 2^30, the range in which the optimised ports' short requantisation (SMMULR of the doubled
    sum) is exact; 1 otherwise (large biases of dead channels, left shifts), and those ports then
    range-check each output and take TFLite's long form when needed. The bound uses the layer's
    own weights: sum |w| * max |x + input_offset| + |bias|."""
    xmax = max(abs(-128 + input_offset), abs(127 + input_offset))
    rows = channel_rows(kind, weights)
    b = np.zeros(rows.shape[0], np.int64) if bias is None else np.abs(np.asarray(bias, np.int64))
    left = np.maximum(np.asarray(shifts, np.int64), 0)
    bound = (np.abs(rows).sum(axis=1) * xmax + b) << left
    return int(bool(np.any(bound >= (1 << 30))))


def _suffix(s4: bool) -> str:
    return "s4" if s4 else "s8"


#: Rows a matrix x vector block computes at once (firmware/kernels/*/aq_fully_connected_matvec_*).
MATVEC_ROWS = 4
#: Rows from which the Cortex-M matrix x vector kernels widen the activations to int16 pairs
#: once per vector (matvec_widen_bytes of scratch): each block of 4 rows then loads them instead
#: of unpacking them, 2 instructions less per 4 elements of K and block, for about 7 per 4
#: elements to widen; from 4 blocks on that pays.
MATVEC_WIDEN_MIN_ROWS = 16


def matvec_widen_bytes(K: int, rows: int) -> int:
    """The scratch of a matrix x vector layer of `rows` rows over K: its whole 4-element
    chunks of activations as int16 pairs (8 bytes a chunk), or 0 below MATVEC_WIDEN_MIN_ROWS."""
    return 8 * (K // 4) if rows >= MATVEC_WIDEN_MIN_ROWS else 0


def _matvec_why(what: str, K: int, rows: int) -> str:
    widen = (", activations widened to int16 once per vector in aq_scratch"
             if matvec_widen_bytes(K, rows) else "")
    return f"{what}: matrix x vector, {MATVEC_ROWS} rows at a time{widen}, input offset folded into the bias"


#: Batches up to which FULLY_CONNECTED runs matrix x vector per batch: from 4 on, the 4-pixel
#: column kernel shares each weight load between 4 batches and is faster.
MATVEC_MAX_BATCHES = 3


def column_chunk(s4: bool) -> int:
    """Weights per word of the column kernels: 4 int8, 8 INT4."""
    return 8 if s4 else 4


def padded_k(K: int, s4: bool) -> int:
    """K rounded up to whole words of weights: the row length of the column kernels."""
    return -(-K // column_chunk(s4)) * column_chunk(s4)


def column_layout(weights: np.ndarray, params: dict[str, Any], s4: bool) -> np.ndarray:
    """The column kernels' rows (output channels): each padded with zero weights to whole words
    (padded_k), INT4 packed row by row, so every row starts on a word and no row has a tail."""
    rows = channel_rows("fully_connected", weights)
    padded = np.zeros((rows.shape[0], padded_k(rows.shape[1], s4)), np.int64)
    padded[:, :rows.shape[1]] = rows
    return natural(padded, s4)


def column_bytes(K: int, s4: bool, gather: bool = False) -> int:
    """The scratch of the Cortex-M im2col / batched kernels for rows of K weights: the 4-pixel
    column buffer (aq_cm_col_words in firmware/kernels/cortex-m/aq_cm_impl.h: per word of
    weights, padded_k, int16 pairs for 4 pixels), then with `gather` (an input depth that is not
    whole words, aq_cm_conv_gather) one receptive field as bytes."""
    kp = padded_k(K, s4)
    return 4 * (kp // column_chunk(s4)) * 4 * (4 if s4 else 2) + (kp if gather else 0)


#: Largest INT4 row of the column kernels (AQ_CM_S4_MAX_K in firmware/kernels/cortex-m/).
COLUMN_S4_MAX_K = 32000


def _conv(p: dict[str, Any], s4: bool) -> Variant:
    K = p["k_h"] * p["k_w"] * p["filter_in_c"]
    if p["filter_in_c"] != p["in_c"]:
        return Variant("conv", "loops", f"aq_conv_loops_{_suffix(s4)}",
                       f"grouped ({p['in_c'] // p['filter_in_c']} groups): portable loops")
    pixels = p["out_h"] * p["out_w"]
    if p["k_h"] == p["k_w"] == 1 and p["pad_h"] == p["pad_w"] == 0 and pixels <= MATVEC_MAX_BATCHES:
        return Variant("conv", "matvec", f"aq_conv_matvec_{_suffix(s4)}",
                       _matvec_why(f"1x1 over {pixels} pixel(s), per pixel", p["in_c"], p["out_c"]),
                       matvec_layout, folds_offset=True,
                       scratch_bytes=matvec_widen_bytes(p["in_c"], p["out_c"]))
    if s4 and K > COLUMN_S4_MAX_K:
        return Variant("conv", "loops", f"aq_conv_loops_{_suffix(s4)}",
                       f"INT4 rows of {K} weights are too long for the column kernel: portable loops")
    pad = padded_k(K, s4) - K
    # a 1x1 convolution without padding reads each pixel's channels as one run: no gather
    one_run = p["k_h"] == p["k_w"] == 1 and p["pad_h"] == p["pad_w"] == 0
    return Variant("conv", "im2col", f"aq_conv_{_suffix(s4)}",
                   f"{p['k_h']}x{p['k_w']}, K = {K}: 4 output pixels at a time through an int16 "
                   "column buffer, weights read from flash"
                   + (f", rows padded with {pad} zero weights to whole words" if pad else ""),
                   column_layout,
                   scratch_bytes=column_bytes(K, s4, gather=p["in_c"] % column_chunk(s4) != 0
                                              and not one_run))


def _words(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """int16 pairs (lo, hi) as little-endian uint32 words."""
    return (np.asarray(lo, np.int64) & 0xFFFF) | ((np.asarray(hi, np.int64) & 0xFFFF) << 16)


def _as_bytes(words: np.ndarray, s4: bool) -> np.ndarray:
    raw = np.asarray(words, np.int64).astype("<u4").reshape(-1).view(np.uint8)
    return raw if s4 else raw.view(np.int8)


def _dw_taps(weights: np.ndarray) -> np.ndarray:
    """1HWC -> [taps, C4] int64, channels zero-padded to a multiple of 4."""
    w = channel_rows("depthwise", weights).T
    out = np.zeros((w.shape[0], -w.shape[1] % 4 + w.shape[1]), np.int64)
    out[:, :w.shape[1]] = w
    return out


def _pairs(taps: np.ndarray, scale: int) -> np.ndarray:
    """[groups, taps, 2] words: per 4 channels and tap, (w0, w2) (w1, w3) times `scale`."""
    g = (taps * scale).reshape(taps.shape[0], -1, 4).transpose(1, 0, 2)   # [groups, taps, 4]
    return np.stack([_words(g[..., 0], g[..., 2]), _words(g[..., 1], g[..., 3])], axis=-1)


def depthwise_table_layout(weights: np.ndarray, params: dict[str, Any], s4: bool) -> np.ndarray:
    """The "table" depthwise layout: per 4-channel group (channels zero-padded to a multiple of
    4), per tap, the int16 pairs (w0, w2) (w1, w3): the lane order SXTAB16 gives activations.
    INT4 weights are widened too (2 bytes each instead of half a byte: depthwise filters are a
    small part of a network's weights)."""
    return _as_bytes(_pairs(_dw_taps(weights), 1), s4)


def depthwise_mult2_layout(weights: np.ndarray, params: dict[str, Any], s4: bool) -> np.ndarray:
    """The "mult2" depthwise layout (depth multiplier 2): per 4 input channels (8 outputs,
    zero-padded) and tap, 4 words of int16 pairs in output order (w0, w1) (w2, w3) (w4, w5)
    (w6, w7): outputs 2c and 2c + 1 both read input channel c, which SXTAB16 puts in the
    bottom (c even) or top (c odd) lane."""
    w = channel_rows("depthwise", weights).T                        # [taps, out_c]
    taps, n = w.shape
    pad = np.zeros((taps, -n % 8 + n), np.int64)
    pad[:, :n] = w
    g = pad.reshape(taps, -1, 8).transpose(1, 0, 2)                 # [groups, taps, 8]
    return _as_bytes(_words(g[..., 0::2], g[..., 1::2]), s4)


def _dw3_folded(weights: np.ndarray, bias: np.ndarray | None, input_offset: int) -> np.ndarray:
    """2 * (bias + input_offset * sum of the channel's 9 weights), int64, per padded channel."""
    taps = _dw_taps(weights)
    b = np.zeros(taps.shape[1], np.int64)
    if bias is not None:
        b[:len(bias)] = np.asarray(bias, np.int64)
    return 2 * (b + int(input_offset) * taps.sum(axis=0))


def depthwise_3x3_layout(weights: np.ndarray, params: dict[str, Any], s4: bool,
                         bias: np.ndarray | None) -> np.ndarray:
    """The "3x3" depthwise layout: per 4-channel group 22 words, the 4 doubled biases with the
    input offset folded in (_dw3_folded), then 9 taps x the doubled pairs (w0, w2) (w1, w3)."""
    folded = _dw3_folded(weights, bias, params["q"]["input_offset"]).reshape(-1, 4)
    words = np.concatenate([folded & 0xFFFFFFFF, _pairs(_dw_taps(weights), 2).reshape(folded.shape[0], -1)], axis=1)
    return _as_bytes(words, s4)


def _dw3_fits(weights: np.ndarray, bias: np.ndarray | None, params: dict[str, Any], shifts) -> bool:
    """The 3x3 kernel's doubled running sums stay inside int32 for every input, and the short
    requantisation applies (right shifts, aq_requant.guard 0)."""
    folded = np.abs(_dw3_folded(weights, bias, params["q"]["input_offset"]))
    reach = folded + 2 * 128 * np.abs(_dw_taps(weights)).sum(axis=0)
    return bool(np.all(reach < (1 << 31))) and not params["q"]["guard"] and all(s < 0 for s in shifts)


def _depthwise(p: dict[str, Any], s4: bool, weights, bias, shifts) -> Variant:
    if p["depth_multiplier"] == 2:
        return Variant("depthwise", "mult2", f"aq_depthwise_conv_mult2_{_suffix(s4)}",
                       f"{p['k_h']}x{p['k_w']}, depth multiplier 2, valid taps, int16 weight "
                       "table built at build time", depthwise_mult2_layout)
    if p["depth_multiplier"] != 1:
        return Variant("depthwise", "generic", f"aq_depthwise_conv_{_suffix(s4)}",
                       f"depth multiplier {p['depth_multiplier']}: portable loops")
    if p["k_h"] == 3 and p["k_w"] == 3 and p["dil_w"] == 1 and _dw3_fits(weights, bias, p, shifts):
        return Variant("depthwise", "3x3", f"aq_depthwise_conv_3x3_{_suffix(s4)}",
                       "3x3, all 9 taps unrolled, bias and input offset folded into an int16 "
                       "weight table built at build time", _dw3_relayout(bias), takes_bias=False)
    return Variant("depthwise", "table", f"aq_depthwise_conv_table_{_suffix(s4)}",
                   f"{p['k_h']}x{p['k_w']}, valid taps, int16 weight table built at build time",
                   depthwise_table_layout)


def _dw3_relayout(bias):
    return lambda w, params, s4: depthwise_3x3_layout(w, params, s4, bias)


def _blocks(weights: np.ndarray, rows: int, group: int) -> np.ndarray:
    """[N, K] -> [N/rows, K/group, rows, group]: rows padded with zero rows to a multiple of
    `rows`, K with zero weights to a multiple of `group`."""
    w = np.asarray(weights, np.int64).reshape(weights.shape[0], -1)
    n, k = w.shape
    pad = np.zeros((-n % rows + n, -k % group + k), np.int64)
    pad[:n, :k] = w
    return pad.reshape(pad.shape[0] // rows, rows, pad.shape[1] // group, group).transpose(0, 2, 1, 3)


def matvec_layout(weights: np.ndarray, params: dict[str, Any], s4: bool) -> np.ndarray:
    """Weights of the matrix x vector kernels, in blocks of MATVEC_ROWS rows; per block, per
    4 elements of K (zero-padded), the block's rows side by side:

    * int8: a word per row (w[k..k+3]), so one LDM loads a block's 16 weights;
    * INT4: a word per two rows, (r0, r1) then (r2, r3); a word holds 8 nibbles, low first:
      a[k], a[k+1], b[k], b[k+1], a[k+2], a[k+3], b[k+2], b[k+3] (rows a, b): masking nibbles
      i and i+4 into the top of each halfword (0xF000F000 & word << 12 - 4i) gives
      4096 * (w[k], w[k+2]) or 4096 * (w[k+1], w[k+3]) of one row, the lane order in which
      SXTB16 gives the activations.

    The last block of N % 4 rows holds only those rows (int8: N % 4 words per 4 elements; INT4:
    one word for 1 or 2 rows, the second row zero for 1), so its loop loads no padding.
    """
    b = _blocks(weights, MATVEC_ROWS, 4)        # [blocks, chunks, 4 rows, 4]
    full, tail = divmod(np.asarray(weights).shape[0], MATVEC_ROWS)
    if not s4:
        parts = [b[:full].reshape(-1)] + ([b[full:, :, :tail].reshape(-1)] if tail else [])
        return np.concatenate(parts).astype(np.int8)
    order = [(0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (0, 3), (1, 2), (1, 3)]   # (row, k)

    def words(blocks: np.ndarray, pairs: tuple[int, ...]) -> np.ndarray:
        nib = [np.stack([blocks[:, :, p + r, k] for r, k in order], axis=-1) & 0xF for p in pairs]
        return np.stack(nib, axis=2).reshape(-1, 8)                 # word by word

    nib = np.concatenate([words(b[:full], (0, 2))]
                         + ([words(b[full:], (0, 2) if tail > 2 else (0,))] if tail else []))
    packed = nib[:, 0::2] | (nib[:, 1::2] << 4)                     # 4 bytes per word
    return packed.reshape(-1).astype(np.uint8)


def _fully_connected(p: dict[str, Any], s4: bool) -> Variant:
    if p["batches"] <= MATVEC_MAX_BATCHES or (s4 and p["accum_depth"] > COLUMN_S4_MAX_K):
        return Variant("fully_connected", "matvec", f"aq_fully_connected_matvec_{_suffix(s4)}",
                       _matvec_why(f"batch {p['batches']}", p["accum_depth"], p["out_c"]),
                       matvec_layout, folds_offset=True,
                       scratch_bytes=matvec_widen_bytes(p["accum_depth"], p["out_c"]))
    return Variant("fully_connected", "batched", f"aq_fully_connected_{_suffix(s4)}",
                   f"batch {p['batches']}: 4 batches at a time through an int16 column buffer, "
                   "rows padded to whole words", column_layout,
                   scratch_bytes=column_bytes(p["accum_depth"], s4))


def packed(kind: str, s4: bool) -> Variant:
    """The variant of a FULLY_CONNECTED layer that reads or writes a packed activation tensor
    (storage.py): the portable loops over TFLite's weight layout, nibbles unpacked and packed in
    registers. (CONV_2D and DEPTHWISE_CONV_2D keep their variant and run in row bands.)"""
    if kind != "fully_connected":
        raise ValueError(f"no packed variant for {kind!r}: it runs in row bands")
    return Variant(kind, "packed", f"aq_fully_connected_packed_{_suffix(s4)}",
                   "reads or writes 4-bit activations stored two per byte: portable loops "
                   "(no Cortex-M port), TFLite's weight layout")


def select(kind: str, params: dict[str, Any], s4: bool, weights: np.ndarray,
           bias: np.ndarray | None, shifts) -> Variant:
    """The variant for a layer of `kind`: `params` is the parameter dict lower.py builds (the
    fields of aq_conv_params / aq_depthwise_conv_params / aq_fully_connected_params), whose
    `q` holds `input_offset` and `guard` (requant_guard); `weights` the int values in TFLite's
    layout, `bias` the TFLite int32 bias or None, `shifts` the per-channel shifts."""
    if kind == "conv":
        return _conv(params, s4)
    if kind == "depthwise":
        return _depthwise(params, s4, weights, bias, shifts)
    if kind == "fully_connected":
        return _fully_connected(params, s4)
    raise ValueError(f"unknown MAC layer kind {kind!r} (one of {', '.join(KINDS)})")
