"""The oracles: the TFLite Micro reference interpreter (exact) on the host, and LiteRT.

TFLite Micro's Python interpreter is C++ that aborts the whole process on some models (a
failed `TFLITE_DCHECK`, an allocation it cannot make). It therefore never runs in the caller's
process: `TflmReference` keeps a child Python process (`python -m aqedge.reference`) that loads
the model and runs the inferences; when that child dies on a signal, the caller gets an
`OracleError` (an `AqError`) naming the signal, and its own process carries on.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import subprocess
import sys

import numpy as np

from .errors import AqError


class OracleError(AqError):
    """The reference interpreter refused the model or died running it."""


def _send(stream, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _receive(stream):
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError
    (size,) = struct.unpack("<Q", head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class TflmReference:
    """Run a .tflite with TFLite Micro's Python interpreter (reference kernels), isolated in a
    child process. Raises OracleError if TFLite Micro refuses the model or dies on it."""

    name = "tflite-micro"

    def __init__(self, model: bytes, arena_size: int = 4 << 20):
        self._child = subprocess.Popen([sys.executable, "-m", "aqedge.reference"],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE)
        self._details = self._call(("load", bytes(model), int(arena_size)))

    def _call(self, message):
        child = self._child
        if child is None:
            raise OracleError("TFLite Micro's interpreter has stopped: load the model again")
        try:
            _send(child.stdin, message)
            status, value = _receive(child.stdout)
        except (EOFError, BrokenPipeError, OSError):
            self.close()
            code = child.returncode
            cause = (f"died on {_signal_name(code)}" if code is not None and code < 0 else
                     f"exited with code {code}")
            tail = (child.stderr.read() or b"").decode(errors="replace").strip().splitlines()
            reason = f" ({tail[-1][:200]})" if tail else ""
            raise OracleError(f"TFLite Micro's interpreter {cause} on this model{reason}") from None
        if status != "ok":
            raise OracleError(f"TFLite Micro cannot run the model: {value}")
        return value

    def close(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        try:
            child.stdin.close()
        except OSError:
            pass
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def __del__(self):
        try:
            self.close()
        except Exception:   # noqa: BLE001 - interpreter shutdown
            pass

    def input_quantization(self) -> tuple[float, int] | None:
        """(scale, zero point) of the quantized input tensor, or None for a float input."""
        return self._details["input_quantization"]

    def run(self, x: np.ndarray) -> np.ndarray:
        """One inference on a quantized input tensor (with batch dim); returns the output tensor."""
        return self._call(("run", np.ascontiguousarray(x)))

    def run_many(self, xs: np.ndarray) -> np.ndarray:
        """Inference on each of xs (N, *input_shape without batch... or with): (N, output size)."""
        return self._call(("run_many", np.ascontiguousarray(xs)))


class LiteRtReference:
    """The second oracle: LiteRT's interpreter (ai-edge-litert) with its reference kernels,
    same interface. Those are the kernels TFLite Micro's were ported from, the closest LiteRT
    gets to it, but not bit-exact: its int8 SOFTMAX and a few rounding paths differ by a code or
    two (on the MLPerf Tiny DS-CNN every output matched, on ResNet-8 one input in 50 differed;
    LiteRT's default optimized kernels differ on most inputs)."""

    name = "litert"

    def __init__(self, model: bytes):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        try:
            self._it = Interpreter(model_content=bytes(model),
                                   experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
            self._it.allocate_tensors()
        except Exception as exc:   # noqa: BLE001 - LiteRT raises RuntimeError / ValueError
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise OracleError(f"LiteRT cannot run the model: {first}") from None
        self._in = self._it.get_input_details()[0]
        self._out = self._it.get_output_details()[0]

    def run(self, x: np.ndarray) -> np.ndarray:
        self._it.set_tensor(self._in["index"], np.asarray(x, self._in["dtype"]).reshape(self._in["shape"]))
        self._it.invoke()
        return np.array(self._it.get_tensor(self._out["index"]))

    def run_many(self, xs: np.ndarray) -> np.ndarray:
        return np.stack([self.run(x).reshape(-1) for x in xs])


def reference_for(model: bytes, say=None):
    """TFLite Micro's interpreter, or LiteRT's when TFLite Micro refuses the model or dies on it
    (`say(message)` is told why). The oracle's `name` says which one answered."""
    try:
        return TflmReference(model)
    except OracleError as exc:
        if say is not None:
            say(f"{exc}; checking bit-exactness against LiteRT instead")
        return LiteRtReference(model)


# -- the child process ------------------------------------------------------------------------
def _load(model: bytes, arena_size: int):
    from tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(model, arena_size=arena_size)
    d = it.get_input_details(0)
    q = d["quantization_parameters"]
    quant = None if d["dtype"] == np.float32 else (float(q["scales"][0]), int(q["zero_points"][0]))
    return it, {"input_quantization": quant, "input_shape": tuple(d["shape"])}


def _run(it, x: np.ndarray) -> np.ndarray:
    it.set_input(x, 0)
    it.invoke()
    return np.array(it.get_output(0))


def _serve(inbox, outbox) -> None:
    it = None
    while True:
        try:
            kind, *args = _receive(inbox)
        except EOFError:
            return
        try:
            if kind == "load":
                it, details = _load(*args)
                _send(outbox, ("ok", details))
            elif it is None:
                _send(outbox, ("error", "no model loaded"))
            elif kind == "run":
                _send(outbox, ("ok", _run(it, args[0])))
            else:
                xs = args[0]
                out = [_run(it, x[None] if x.ndim < xs.ndim else x).reshape(-1) for x in xs]
                _send(outbox, ("ok", np.stack(out)))
        except Exception as exc:   # noqa: BLE001 - everything TFLM raises goes to the parent
            _send(outbox, ("error", f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:300]))


def _main() -> None:
    # The protocol owns the original stdout; TFLite Micro's own prints go to stderr.
    outbox = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _serve(sys.stdin.buffer, outbox)


if __name__ == "__main__":
    _main()
