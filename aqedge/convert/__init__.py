"""Keras model -> TFLite flatbuffer (full-integer: int8 activations, int8 or INT4 weights)."""

from .int4 import convert_qat, inspect_tflite, pack_int4, unpack_int4
from .ptq import convert_int8

__all__ = ["convert_keras", "convert_int8", "convert_qat", "inspect_tflite", "pack_int4", "unpack_int4"]


def convert_keras(model, representative) -> bytes:
    """Convert any Keras model the way `aqedge convert` does: a QAT model (it has aqedge
    quantizers) with `convert_qat`, a float model by full-int8 post-training quantization.
    The converter's printout of the exported SavedModel's signature is kept off stdout."""
    import contextlib
    import io

    from ..qat.layers import iter_quantizers

    with contextlib.redirect_stdout(io.StringIO()):
        if any(True for _ in iter_quantizers(model)):
            return convert_qat(model, representative)
        return convert_int8(model, representative)
