"""`aqedge.toml`: a project's settings, so `aqedge build --board stm32` needs nothing else.

`aqedge init` writes it; every command looks for it in the working directory and its parents
(as git does) and takes its defaults from it; options on the command line override it. Paths in
it are relative to the folder that holds it. Layout (every key optional but `model.path`):

    [model]
    path = "model.keras"        # float or QAT .keras, or a full-integer .tflite
    [data]
    train = "images/"           # data spec (aqedge.datasets): built-in name, .npz or folder
    test = "images/"            # defaults to train (a folder with train/ and test/ splits)
    rescale = "1/255"           # multiplies every value read (omit: values as read)
    [quantize]
    weight_bits = 4
    activation_bits = 4
    first_last_bits = 8
    shift = true
    epochs = 2
    lr = 0.0005
    distill = 0.0               # weight of the float model's predictions in the targets
    seed = 0
    limit = 0                   # train on the first N samples only (0: all)
    layer_bits = { conv2d = 8 } # mixed precision, per named layer
    [build]
    board = "stm32"
    runtime = "aqedge"
    dir = "build"               # every stage's file: qat.keras, model.tflite, <board>/
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from .datasets import DataSpec, parse_rescale
from .errors import AqError

FILENAME = "aqedge.toml"
MODEL_SUFFIXES = (".keras", ".tflite")


@dataclass
class QuantizeSettings:
    weight_bits: int = 4
    activation_bits: int = 4
    first_last_bits: int = 8
    shift: bool = True
    epochs: int = 2
    lr: float = 5e-4
    distill: float = 0.0
    seed: int = 0
    limit: int = 0
    layer_bits: dict[str, int] = field(default_factory=dict)


@dataclass
class Project:
    root: Path                      # the folder holding aqedge.toml
    model: Path
    train: str | None = None        # data specs as written (paths relative to root)
    test: str | None = None
    rescale: float | None = None
    quantize: QuantizeSettings = field(default_factory=QuantizeSettings)
    board: str | None = None
    runtime: str = "aqedge"
    build_dir: Path = Path("build")
    activation_storage: str = "auto"   # codegen/storage.py MODES

    @property
    def path(self) -> Path:
        return self.root / FILENAME

    def data(self, split: str) -> DataSpec | None:
        spec = self.test or self.train if split == "test" else self.train
        return None if spec is None else DataSpec(self._resolve(spec), self.rescale)

    def _resolve(self, spec: str) -> str:
        from .datasets import DATASETS

        return spec if spec in DATASETS else str(self.root / spec)


def find(start: Path | None = None) -> Project | None:
    """The project whose aqedge.toml is in `start` (default: the working directory) or above."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / FILENAME).is_file():
            return load(folder / FILENAME)
    return None


def load(path: Path) -> Project:
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise AqError(f"{path}: not a readable aqedge.toml ({exc})") from None
    _check_keys(raw, path)
    root = Path(path).resolve().parent
    model = raw.get("model", {}).get("path")
    if not isinstance(model, str) or not model:
        raise AqError(f"{path}: [model] path is missing (the .keras or .tflite to build)")
    data, build = raw.get("data", {}), raw.get("build", {})
    project = Project(root, root / model, data.get("train"), data.get("test"),
                      parse_rescale(data.get("rescale")), _quantize(raw.get("quantize", {}), path),
                      build.get("board"), build.get("runtime", "aqedge"),
                      root / build.get("dir", "build"), build.get("activation_storage", "auto"))
    if project.activation_storage not in ("auto", "packed", "int8"):
        raise AqError(f"{path}: [build] activation_storage = {project.activation_storage!r}: "
                      "use \"auto\", \"packed\" or \"int8\"")
    for key in ("train", "test"):
        if getattr(project, key) is not None and not isinstance(getattr(project, key), str):
            raise AqError(f"{path}: [data] {key} must be a string (a data spec)")
    return project


_SECTIONS = {"model": {"path"}, "data": {"train", "test", "rescale"},
             "quantize": {f.name for f in fields(QuantizeSettings)},
             "build": {"board", "runtime", "dir", "activation_storage"}}


def _check_keys(raw: dict, path: Path) -> None:
    for section, values in raw.items():
        if section not in _SECTIONS or not isinstance(values, dict):
            raise AqError(f"{path}: unknown section [{section}] (known: "
                          f"{', '.join(f'[{s}]' for s in _SECTIONS)})")
        unknown = set(values) - _SECTIONS[section]
        if unknown:
            raise AqError(f"{path}: unknown key {section}.{sorted(unknown)[0]} (known in "
                          f"[{section}]: {', '.join(sorted(_SECTIONS[section]))})")


def _quantize(raw: dict, path: Path) -> QuantizeSettings:
    q = QuantizeSettings()
    for f in fields(QuantizeSettings):
        if f.name not in raw:
            continue
        value, default = raw[f.name], getattr(q, f.name)
        if not isinstance(value, type(default)) and not (isinstance(default, float)
                                                          and isinstance(value, int)):
            raise AqError(f"{path}: quantize.{f.name} = {value!r}: expected "
                          f"{type(default).__name__}")
        setattr(q, f.name, value)
    check_quantize(q, f"{path}: quantize.")
    return q


#: The bit widths quantize_model accepts for weights and activations.
MIN_BITS, MAX_BITS = 2, 8


def _option(where: str, name: str) -> str:
    """How the user wrote setting `name`: `--weight-bits` on the command line, else `where name`."""
    return f"--{name.replace('_', '-')}" if where == "--" else f"{where}{name}"


def check_quantize(q: QuantizeSettings, where: str = "--") -> None:
    """The settings' own sanity, checked before any work starts; errors name the option."""
    def bad(name: str, value, why: str) -> AqError:
        return AqError(f"{_option(where, name)} {value}: {why}")

    if not (isinstance(q.lr, (int, float)) and math.isfinite(q.lr) and q.lr > 0):
        raise bad("lr", q.lr, "the learning rate must be positive and finite")
    if not (math.isfinite(q.distill) and 0.0 <= q.distill <= 1.0):
        raise bad("distill", q.distill, "choose a weight between 0 and 1")
    if q.epochs < 0:
        raise bad("epochs", q.epochs, "must be 0 or more")
    if q.limit < 0:
        raise bad("limit", q.limit, "must be 0 (all) or more")
    if not 0 <= q.seed < 2 ** 32:
        raise bad("seed", q.seed, "choose a seed between 0 and 2**32 - 1")
    for name in ("weight_bits", "activation_bits", "first_last_bits"):
        bits = getattr(q, name)
        if not MIN_BITS <= bits <= MAX_BITS:
            raise bad(name, bits, f"choose a bit width between {MIN_BITS} and {MAX_BITS}")
    for name, bits in q.layer_bits.items():
        if not isinstance(bits, int) or isinstance(bits, bool):
            raise bad("layer_bits", f"{name}={bits!r}", "expected a number of bits")
        if not MIN_BITS <= bits <= MAX_BITS:
            raise bad("layer_bits", f"{name}={bits}", f"choose a bit width between {MIN_BITS} and {MAX_BITS}")


def render(model: str, train: str | None, test: str | None, rescale: str | None,
           board: str | None) -> str:
    """The text of a new aqedge.toml (settings at their defaults, written out to be edited)."""
    q = QuantizeSettings()
    lines = ["# aqedge project: `aqedge build` builds it, `aqedge measure` measures it.",
             "# Command-line options override these settings.", "",
             "[model]", f"path = {_toml(model)}", "", "[data]"]
    lines += [f"train = {_toml(train)}"] if train else ["# train = \"images/\"  # for quantize"]
    lines += [f"test = {_toml(test)}"] if test else []
    lines += [f"rescale = {_toml(rescale)}"] if rescale else ["# rescale = \"1/255\""]
    lines += ["", "[quantize]"]
    lines += [f"{f.name} = {_toml(getattr(q, f.name))}" for f in fields(q) if f.name != "layer_bits"]
    lines += ["# layer_bits = { conv2d = 8 }", "", "[build]"]
    lines += [f"board = {_toml(board)}"] if board else ["# board = \"stm32\""]
    lines += ['runtime = "aqedge"', 'dir = "build"',
              '# activation_storage = "auto"  # or "packed" (4-bit tensors two a byte) / "int8"', ""]
    return "\n".join(lines)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def relative(path: Path, root: Path) -> str:
    """`path` as written in root/aqedge.toml: relative to root when inside it."""
    path, root = Path(path).resolve(), Path(root).resolve()
    try:
        return str(path.relative_to(root))
    except ValueError:
        return os.path.relpath(path, root) if path.anchor == root.anchor else str(path)
