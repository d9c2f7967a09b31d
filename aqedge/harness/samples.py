"""The inputs a measuring session sends: a packaged dataset's test images, or seeded noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import datasets
from ..codegen.build import BuildInfo
from ..errors import AqError

SOURCES = (*datasets.DATASETS, "random")


@dataclass
class Samples:
    inputs: np.ndarray          # (N, *input shape without batch): int8 quantized, or float32
    labels: np.ndarray | None   # (N,) or None when the data has no labels (random)
    source: str


def load_samples(info: BuildInfo, source: str, count: int, seed: int = 0) -> Samples:
    """`count` quantized inputs for the model described by `info`."""
    shape = tuple(info.input.shape[1:])
    if count < 1:
        raise AqError(f"--samples must be at least 1 (got {count})")
    if source == "random":
        rng = np.random.default_rng(seed)
        if info.input.dtype == "float32":
            return Samples(rng.standard_normal((count, *shape), dtype=np.float32), None, source)
        return Samples(rng.integers(-128, 128, (count, *shape), dtype=np.int8), None, source)
    if source not in datasets.DATASETS:
        raise AqError(f"unknown dataset '{source}': choose one of {', '.join(SOURCES)}")
    images, labels = datasets.load(source, "test")
    if images.shape[1:] != shape:
        raise AqError(f"dataset {source} has images of shape {list(images.shape[1:])} but the "
                      f"model's input is {list(shape)}: use --dataset random")
    if count > len(images):
        raise AqError(f"{source} has {len(images)} test images; asked for {count}")
    if info.input.dtype == "float32":  # the model quantizes its input itself
        return Samples(images[:count].astype(np.float32), labels[:count].astype(np.int64), source)
    scale, zero_point = info.input.scale, info.input.zero_point
    q = np.clip(np.round(images[:count] / scale + zero_point), -128, 127).astype(np.int8)
    return Samples(q, labels[:count].astype(np.int64), source)
