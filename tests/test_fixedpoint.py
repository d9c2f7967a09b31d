"""Build-time fixed-point parameters against values TFLite computes."""

import numpy as np

from aqedge.codegen import fixedpoint as fp


def test_tflite_round_is_half_away_from_zero():
    assert [fp.tflite_round(v) for v in (0.5, 1.5, 2.5, -0.5, -2.5)] == [1, 2, 3, -1, -3]


def test_quantize_multiplier_reconstructs_the_real_value():
    for real in np.geomspace(1e-6, 50, 200):
        q, shift = fp.quantize_multiplier(float(real))
        assert (1 << 30) <= q < (1 << 31)
        assert abs(q * 2.0 ** (shift - 31) - real) <= real * 2 ** -30
    assert fp.quantize_multiplier(0.0) == (0, 0)
    assert fp.quantize_multiplier(1e-12) == (0, 0)  # below 2^-31: flushed to zero as in TFLite


def test_activation_ranges():
    assert fp.activation_range(0, 0.1, 3) == (-128, 127)
    assert fp.activation_range(1, 0.1, -5) == (-5, 127)
    assert fp.activation_range(3, 0.05, -128) == (-128, -8)   # 6 / 0.05 = 120 steps above zp
    assert fp.activation_range(2, 0.01, 0) == (-100, 100)


def test_padding_and_output_size():
    assert fp.output_size(0, 28, 3, 1, 1) == 28 and fp.compute_padding(28, 3, 1, 1, 28) == 1
    assert fp.output_size(1, 28, 3, 2, 1) == 13 and fp.compute_padding(28, 3, 2, 1, 13) == 0
    assert fp.output_size(0, 49, 10, 2, 1) == 25 and fp.compute_padding(49, 10, 2, 1, 25) == 4
