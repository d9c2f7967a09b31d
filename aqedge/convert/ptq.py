"""Post-training full-integer quantization with the standard TFLite converter."""

from __future__ import annotations

import numpy as np


def full_integer_converter(model, representative: np.ndarray, samples: int):
    """A TFLiteConverter for `model` set to full integer: int8 ops only, int8 input and output,
    activation ranges calibrated on the first `samples` of `representative` (float, (N, ...))."""
    import tensorflow as tf

    def dataset():
        for x in np.asarray(representative[:samples], np.float32):
            yield [x[None]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter


def convert_int8(model, representative: np.ndarray, samples: int = 200) -> bytes:
    """Convert a float Keras model to a full-int8 `.tflite` (int8 input and output, batch 1,
    of `aqedge.train.export_copy`).

    `representative` is float input data (N, ...) used to calibrate activation ranges. Leading
    Rescaling / Normalization layers are left out of the graph and folded into the int8 input
    quantization: the input tensor holds the quantization of T(x), calibrated on
    T(representative), and T is stored as `.tflite` metadata (`aqedge.preprocess`).
    """
    from ..preprocess import strip_preprocessing, write_metadata
    from ..train import export_copy

    model, transform = strip_preprocessing(model)
    model = export_copy(model)
    if transform is not None:
        representative = transform.apply(np.asarray(representative[:samples]))
    buf = full_integer_converter(model, representative, samples).convert()
    return buf if transform is None else write_metadata(buf, transform)
