"""Keras model -> TFLite flatbuffer (full-integer: int8 activations, int8 or INT4 weights)."""

from .ptq import convert_int8

__all__ = ["convert_int8"]
