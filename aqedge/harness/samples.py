"""The inputs a measuring session sends: a data spec's test samples, or seeded noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..codegen.build import BuildInfo
from ..datasets import DATASETS, DataSpec, fit_to_model
from ..errors import AqError
from ..preprocess import apply_input_transform

SOURCES = (*DATASETS, "random")
#: How many samples a run measures when --samples is not given and the data is a built-in
#: dataset or noise (a user's own test data is measured whole).
DEFAULT_COUNT = 100


@dataclass
class Samples:
    inputs: np.ndarray          # (N, *input shape without batch): int8 quantized, or float32
    labels: np.ndarray | None   # (N,) or None when the data has no labels (random)
    source: str
    class_names: list[str] | None = None


def as_spec(source: str | DataSpec) -> DataSpec:
    return source if isinstance(source, DataSpec) else DataSpec(str(source))


def load_samples(info: BuildInfo, source: str | DataSpec | Samples, count: int | None,
                 seed: int = 0) -> Samples:
    """`count` quantized inputs for the model described by `info` (None: the default count).

    `source` may be Samples loaded before for the same model: they are returned as they are.
    """
    shape = tuple(info.input.shape[1:])
    if count is not None and count < 1:
        raise AqError(f"--samples must be at least 1 (got {count})")
    if isinstance(source, Samples):
        if source.inputs.shape[1:] != shape or (count is not None and count != len(source.inputs)):
            raise AqError(f"samples of shape {list(source.inputs.shape[1:])} given for a model "
                          f"taking {list(shape)}")
        return source
    spec = as_spec(source)
    if spec.spec == "random":
        count = count or DEFAULT_COUNT
        rng = np.random.default_rng(seed)
        if info.input.dtype == "float32":
            return Samples(rng.standard_normal((count, *shape), dtype=np.float32), None, "random")
        return Samples(rng.integers(-128, 128, (count, *shape), dtype=np.int8), None, "random")
    data = fit_to_model(spec.read("test", shape), shape, int(info.output.shape[-1]))
    if count is None:
        count = DEFAULT_COUNT if spec.kind == "builtin" else len(data.x)
    if count > len(data.x):
        raise AqError(f"{spec} has {len(data.x)} test samples; asked for {count}")
    labels = None if data.y is None else data.y[:count]
    images = data.x[:count]
    if info.input.transform_scale is not None:  # preprocessing folded into the input: T(x)
        images = apply_input_transform(images, info.input.transform_scale,
                                       info.input.transform_offset)
    if info.input.dtype != "float32":  # else the model quantizes its input itself
        scale, zero_point = info.input.scale, info.input.zero_point
        images = np.clip(np.round(images / scale + zero_point), -128, 127).astype(np.int8)
    return Samples(images, labels, str(spec), data.class_names)
