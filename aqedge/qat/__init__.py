"""Adaptive 4-bit quantization-aware training (learned scale and shift), Keras 3.

`quantize_model(model)` → QAT model (train with `fit`), `calibrate(qat_model, x)` initialises the
activation quantizers; `aqedge.convert.convert_qat` turns the result into an INT4 `.tflite`.
"""

from .layers import (QuantActivation, QuantConv2D, QuantDense, QuantDepthwiseConv2D,
                     iter_quantizers)
from .mean import MeanQuantizer
from .model import calibrate, quantize_model
from .quantizers import ActivationQuantizer, WeightQuantizer

__all__ = [
    "ActivationQuantizer", "MeanQuantizer", "WeightQuantizer", "QuantConv2D",
    "QuantDepthwiseConv2D", "QuantDense", "QuantActivation", "quantize_model", "calibrate",
    "iter_quantizers",
]
