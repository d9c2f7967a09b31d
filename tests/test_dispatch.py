"""Kernel variants are chosen at build time (aqedge/codegen/dispatch.py) and visible: which
variant a layer gets, the weight layouts the variants read, and where the choice is shown
(model.c, `aqedge inspect`, build.json)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aqedge.codegen import dispatch
from aqedge.codegen.host import build_host
from aqedge.inspect import inspect_model
from conftest import KWS


def _q(guard: int = 0, input_offset: int = 3) -> dict:
    return {"input_offset": input_offset, "guard": guard}


def _conv(in_c=16, out_c=8, k=1, filter_in_c=None, hw=6) -> dict:
    return {"in_h": hw, "in_w": hw, "in_c": in_c, "out_h": hw, "out_w": hw, "out_c": out_c, "k_h": k,
            "k_w": k, "filter_in_c": filter_in_c or in_c, "stride_h": 1, "stride_w": 1, "dil_h": 1,
            "dil_w": 1, "pad_h": k // 2, "pad_w": k // 2, "q": _q()}


def _dw(c=12, k=3, mult=1, dil_w=1) -> dict:
    return {"in_h": 5, "in_w": 5, "in_c": c, "out_h": 5, "out_w": 5, "out_c": c * mult, "k_h": k,
            "k_w": k, "depth_multiplier": mult, "stride_h": 1, "stride_w": 1, "dil_h": 1,
            "dil_w": dil_w, "pad_h": k // 2, "pad_w": k // 2, "q": _q()}


def _fc(batches=1, depth=40, out_c=10) -> dict:
    return {"batches": batches, "accum_depth": depth, "out_c": out_c, "q": _q()}


def _select(kind: str, params: dict, s4: bool = False, bias_value: int = 100, shift: int = -8):
    rng = np.random.default_rng(0)
    if kind == "conv":
        shape = (params["out_c"], params["k_h"], params["k_w"], params["filter_in_c"])
    elif kind == "depthwise":
        shape = (1, params["k_h"], params["k_w"], params["out_c"])
    else:
        shape = (params["out_c"], params["accum_depth"])
    w = rng.integers(-8 if s4 else -127, 8 if s4 else 128, shape)
    bias = np.full(params["out_c"], bias_value, np.int64)
    return dispatch.select(kind, params, s4, w, bias, [shift] * params["out_c"])


@pytest.mark.parametrize("kind, params, s4, variant, kernel", [
    ("conv", _conv(), False, "im2col", "aq_conv_s8"),
    ("conv", _conv(k=3), True, "im2col", "aq_conv_s4"),
    ("conv", _conv(hw=1, in_c=192, out_c=3), False, "matvec", "aq_conv_matvec_s8"),
    ("conv", _conv(hw=2), True, "im2col", "aq_conv_s4"),                     # 4 pixels
    ("conv", _conv(in_c=3, k=3), True, "im2col", "aq_conv_s4"),    # K = 27: rows padded to 32
    ("conv", _conv(in_c=16, filter_in_c=4), False, "loops", "aq_conv_loops_s8"),  # grouped
    ("depthwise", _dw(), False, "3x3", "aq_depthwise_conv_3x3_s8"),
    ("depthwise", _dw(c=13), True, "3x3", "aq_depthwise_conv_3x3_s4"),
    ("depthwise", _dw(k=5), False, "table", "aq_depthwise_conv_table_s8"),
    ("depthwise", _dw(dil_w=2), False, "table", "aq_depthwise_conv_table_s8"),
    ("depthwise", _dw(mult=2), True, "mult2", "aq_depthwise_conv_mult2_s4"),
    ("depthwise", _dw(mult=3), False, "generic", "aq_depthwise_conv_s8"),
    ("fully_connected", _fc(), False, "matvec", "aq_fully_connected_matvec_s8"),
    ("fully_connected", _fc(batches=3), True, "matvec", "aq_fully_connected_matvec_s4"),
    ("fully_connected", _fc(batches=8), False, "batched", "aq_fully_connected_s8"),
    ("fully_connected", _fc(batches=8, depth=41), True, "batched", "aq_fully_connected_s4"),
])
def test_variant_per_shape(kind, params, s4, variant, kernel):
    v = _select(kind, params, s4)
    assert (v.name, v.kernel) == (variant, kernel)
    assert v.why


@pytest.mark.parametrize("out_c, depth, scratch", [(10, 40, 0), (16, 40, 80), (64, 42, 80), (16, 3, 0)])
def test_matvec_widens_activations_from_16_rows(out_c, depth, scratch):
    # the Cortex-M port widens x once per vector into aq_scratch (8 bytes per 4 elements)
    # when enough blocks of 4 rows read it; model.c says so in the variant's comment
    v = _select("fully_connected", _fc(depth=depth, out_c=out_c))
    assert (v.name, v.scratch_bytes) == ("matvec", scratch)
    assert ("widened" in v.why) == bool(scratch)


def test_3x3_depthwise_needs_short_requantisation():
    # a left shift, or a bias whose doubled fold leaves int32, sends a 3x3 layer to "table"
    assert _select("depthwise", _dw(), shift=2).name == "table"
    assert _select("depthwise", _dw(), bias_value=2**30).name == "table"
    guarded = _dw()
    guarded["q"]["guard"] = 1
    assert _select("depthwise", guarded).name == "table"


def test_requant_guard_from_the_layers_own_bound():
    w = np.full((4, 100), 127)
    assert dispatch.requant_guard("fully_connected", w, np.zeros(4), [-5] * 4, 0) == 0
    # |sum| can reach 100 * 127 * 128 + bias: the bias pushes it past 2^30
    assert dispatch.requant_guard("fully_connected", w, np.full(4, 2**30 - 1000), [-5] * 4, 0) == 1
    # a left shift scales the bound
    assert dispatch.requant_guard("fully_connected", w, np.zeros(4), [-5, -5, 17, -5], 0) == 1


def _matvec_index(K: int, N: int, n: int, k: int, s4: bool) -> tuple[int, int]:
    """(byte, nibble 0/1) of weight (n, k) in the matvec layout: aq_matvec_weight's formula."""
    k4, block, r, chunk, e = (K + 3) & ~3, n >> 2, n & 3, k >> 2, k & 3
    rows = min(4, N - 4 * block)
    if not s4:
        return block * k4 * 4 + chunk * 4 * rows + r * 4 + e, 0
    nib = ((e >> 1) << 2) | ((r & 1) << 1) | (e & 1)
    return block * k4 * 2 + chunk * 4 * ((rows + 1) >> 1) + (r >> 1) * 4 + (nib >> 1), nib & 1


@pytest.mark.parametrize("s4", [False, True])
@pytest.mark.parametrize("n, K", [(10, 40), (3, 7), (9, 33), (4, 4), (6, 12), (1, 8), (7, 4)])
def test_matvec_layout_holds_every_weight_where_the_kernels_read_it(s4, n, K):
    w = np.random.default_rng(n * K).integers(-8 if s4 else -128, 8 if s4 else 128, (n, K))
    raw = dispatch.matvec_layout(w, _fc(depth=K, out_c=n), s4)
    # the last block holds only its rows (INT4: a word per two rows)
    rows = n if not s4 else 2 * (n // 4) * 2 + (n % 4 + 1) // 2 * 2
    assert raw.size == rows * ((K + 3) & ~3) // (2 if s4 else 1)
    for i in range(n):
        for k in range(K):
            byte, hi = _matvec_index(K, n, i, k, s4)
            b = int(raw.view(np.uint8)[byte])
            value = ((b >> 4) if hi else (b & 0xF)) if s4 else (b - 256 if b > 127 else b)
            if s4 and value > 7:
                value -= 16
            assert value == w[i, k], (i, k)


@pytest.mark.parametrize("s4, K, padded", [(False, 27, 28), (True, 27, 32), (False, 64, 64), (True, 60, 64)])
def test_column_rows_padded_to_whole_words(s4, K, padded):
    w = np.random.default_rng(K).integers(-8, 8, (3, K))
    raw = dispatch.column_layout(w, _fc(depth=K, out_c=3), s4)
    assert dispatch.padded_k(K, s4) == padded and raw.size == 3 * padded // (2 if s4 else 1)
    row = padded // (2 if s4 else 1)
    for r in range(3):
        b = raw.view(np.uint8)[r * row:(r + 1) * row].astype(np.int64)
        vals = np.stack([b & 0xF, b >> 4], axis=1).reshape(-1) if s4 else b
        vals = np.where(vals > (7 if s4 else 127), vals - (16 if s4 else 256), vals)
        assert list(vals[:K]) == list(w[r]) and not vals[K:].any()


def test_offset_folded_bias_wraps_like_tflite():
    v = _select("fully_connected", _fc())
    w = np.full((2, 4), 127)
    b = v.bias(np.array([2**31 - 1, -5]), w, 128)
    # bias + 128 * 508 wraps past int32, exactly as TFLite's int32 accumulator does
    assert b.dtype == np.int32 and int(b[0]) == ((2**31 - 1 + 128 * 508) & 0xFFFFFFFF) - 2**32
    assert int(b[1]) == -5 + 128 * 508


def test_depthwise_tables_pair_channels_in_sxtb16_order():
    w = np.arange(1, 1 + 9 * 5).reshape(1, 3, 3, 5)       # channel c of tap t = 5 t + c + 1
    words = dispatch.depthwise_table_layout(w, _dw(c=5), False).view("<u4").reshape(2, 9, 2)
    lo = lambda x: int(np.int16(x & 0xFFFF))  # noqa: E731
    hi = lambda x: int(np.int16(x >> 16))  # noqa: E731
    assert (lo(words[0, 4, 0]), hi(words[0, 4, 0]), lo(words[0, 4, 1]), hi(words[0, 4, 1])) == (21, 23, 22, 24)
    assert (lo(words[1, 4, 0]), hi(words[1, 4, 0]), lo(words[1, 4, 1])) == (25, 0, 0)  # padded
    table = dispatch.depthwise_3x3_layout(w, _dw(c=5), False, np.arange(5)).view("<i4").reshape(2, 22)
    off = _dw()["q"]["input_offset"]
    assert table[0, 0] == 2 * (0 + off * sum(5 * t + 1 for t in range(9)))
    assert lo(int(table[0, 4 + 2 * 4]) & 0xFFFFFFFF) == 2 * 21


def test_model_c_inspect_and_build_json_name_the_variants(tiny, tmp_path):
    info = inspect_model(tiny[KWS])
    variants = {(k["opcode"], k["variant"]) for k in info["kernels"]}
    assert variants == {("CONV_2D", "im2col"), ("DEPTHWISE_CONV_2D", "3x3"),
                        ("FULLY_CONNECTED", "matvec")}
    build_host(tiny[KWS], tmp_path)
    model_c = (tmp_path / "model.c").read_text()
    for k in info["kernels"]:
        assert f"variant {k['variant']}: {k['why']}" in model_c
        assert f"  {k['kernel']}(&op{k['op']}_params" in model_c
    # the column buffer is model.c's aq_scratch, sized for the largest im2col row, not the stack
    K = max(k_h * k_w * c for k_h, k_w, c in [(10, 4, 1), (1, 1, 64)])
    assert f"static int32_t aq_scratch[{dispatch.column_bytes(K, False) // 4}];" in model_c
    assert ".scratch = aq_scratch" in model_c and ".scratch = 0" in model_c  # matvec needs none
    ops = json.loads((tmp_path / "model_ops.json").read_text())
    assert [o["variant"] for o in ops if o["variant"]] == [k["variant"] for k in info["kernels"]]
