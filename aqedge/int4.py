"""TFLite INT4 (TensorType 17): two values per byte, element 2i in the low nibble, 2i+1 in the
high nibble, two's complement, sign-extended on unpack; an odd count ends in a low nibble.
Same layout as TFLite, TFLite Micro and CMSIS-NN."""

from __future__ import annotations

import numpy as np


def pack_int4(values) -> bytes:
    """Pack integers in [-8, 7] two per byte."""
    v = np.asarray(values).ravel().astype(np.int64)
    if v.size and (v.min() < -8 or v.max() > 7):
        raise ValueError("INT4 values must lie in [-8, 7]")
    nibbles = (v & 0xF).astype(np.uint8)
    if nibbles.size % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    return (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8).tobytes()


def unpack_int4(packed, count: int) -> np.ndarray:
    """The first `count` values of packed INT4 bytes, as int8."""
    raw = np.frombuffer(bytes(packed), dtype=np.uint8)
    if count > 2 * raw.size:
        raise ValueError(f"{raw.size} bytes hold at most {2 * raw.size} INT4 values, not {count}")
    nibbles = np.stack([raw & 0x0F, raw >> 4], axis=1).reshape(-1)[:count].astype(np.int8)
    return np.where(nibbles > 7, nibbles - 16, nibbles).astype(np.int8)
