"""aqedge: adaptive 4-bit QAT -> INT4 TFLite -> bit-exact C firmware -> measured on the board."""

__version__ = "0.1.0"
