"""Keras model -> TFLite flatbuffer (full-integer: int8 activations, int8 or INT4 weights)."""

import contextlib

from .int4 import convert_qat, inspect_tflite, pack_int4, unpack_int4
from .ptq import convert_int8

__all__ = ["convert_keras", "convert_int8", "convert_qat", "inspect_tflite", "pack_int4", "unpack_int4"]


def convert_keras(model, representative, runtime: str = "aqedge") -> bytes:
    """Convert any Keras model the way `aqedge convert` does: a QAT model (it has aqedge
    quantizers) with `convert_qat`, a float model by full-int8 post-training quantization, both
    of `aqedge.train.export_copy` (batch 1: a free batch would wrap Flatten in SHAPE /
    STRIDED_SLICE / PACK ops; UpSampling2D as RESIZE_NEAREST_NEIGHBOR).
    The converter's printout of the exported SavedModel's signature is kept off stdout, its
    C++ log lines and Python warnings off stderr (its errors are in the exception it raises).

    For `runtime="aqedge"` the result must run on the aqedge runtime: an op it lacks is refused
    here, naming the op and its tensor (whose name holds the Keras layer's), not at build time.
    """
    import io

    from ..qat.layers import iter_quantizers

    with contextlib.redirect_stdout(io.StringIO()), _converter_log_hidden():
        if any(True for _ in iter_quantizers(model)):
            buf = convert_qat(model, representative)
        else:
            buf = convert_int8(model, representative)
    if runtime == "aqedge":
        check_runs_on_aqedge(buf, model.name)
    return buf


@contextlib.contextmanager
def _converter_log_hidden():
    """Point file descriptor 2 at a scratch file (and silence Python warnings) meanwhile."""
    import os
    import sys
    import tempfile
    import warnings

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def check_runs_on_aqedge(buf: bytes, name: str) -> None:
    """Raise AqError when the aqedge runtime cannot run the converted `buf` of model `name`."""
    from ..codegen.graph import read_tflite
    from ..codegen.lower import lower
    from ..errors import AqError

    try:
        lower(read_tflite(buf), f"model '{name}' converts")
    except AqError as exc:
        raise AqError(f"{exc}; convert with --runtime tflm to build it with TensorFlow Lite "
                      "Micro instead") from None
