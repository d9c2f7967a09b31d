"""The oracles: the TFLite Micro reference interpreter (exact) on the host."""

from __future__ import annotations

import numpy as np

from .errors import AqError


class TflmReference:
    """Run a .tflite with TFLite Micro's Python interpreter (reference kernels)."""

    def __init__(self, model: bytes, arena_size: int = 4 << 20):
        from tflite_micro import runtime

        try:
            self._it = runtime.Interpreter.from_bytes(model, arena_size=arena_size)
        except Exception as exc:
            raise AqError(f"TFLite Micro cannot load the model: {exc}") from None

    def input_quantization(self) -> tuple[float, int] | None:
        """(scale, zero point) of the quantized input tensor, or None for a float input."""
        d = self._it.get_input_details(0)
        if d["dtype"] == np.float32:
            return None
        q = d["quantization_parameters"]
        return float(q["scales"][0]), int(q["zero_points"][0])

    def run(self, x: np.ndarray) -> np.ndarray:
        """One inference on a quantized input tensor (with batch dim); returns the output tensor."""
        self._it.set_input(x, 0)
        self._it.invoke()
        return np.array(self._it.get_output(0))

    def run_many(self, xs: np.ndarray) -> np.ndarray:
        """Inference on each of xs (N, *input_shape without batch... or with): (N, output size)."""
        return np.stack([self.run(x[None] if x.ndim < xs.ndim else x).reshape(-1) for x in xs])
