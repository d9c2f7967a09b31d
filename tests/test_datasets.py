"""A user's data: every kind of data spec read, and every malformed one refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aqedge.datasets import DataSpec, fit_to_model, parse_rescale
from aqedge.errors import AqError


def _png(path: Path, value: int, size=(12, 10), mode="L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    Image.fromarray(np.full(shape, value, np.uint8), mode).save(path)


def _image_folder(root: Path, classes=("cat", "dog", "eel"), per_class=3) -> Path:
    for k, name in enumerate(classes):
        for i in range(per_class):
            _png(root / name / f"{i}.png", 40 * k + i)
    return root


def test_npz_with_both_splits(tmp_path):
    path = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.random((8, 4, 3)), y_train=np.arange(8) % 2,
             x_test=np.ones((3, 4, 3), np.uint8), y_test=np.array([1, 0, 1]),
             class_names=np.array(["no", "yes"]))
    train, test = DataSpec(str(path)).read("train"), DataSpec(str(path), 0.5).read("test")
    assert train.x.shape == (8, 4, 3) and train.x.dtype == np.float32
    assert train.y.tolist() == [0, 1] * 4 and train.y.dtype == np.int64
    assert test.x.tolist() == np.full((3, 4, 3), 0.5).tolist()   # rescaled
    assert test.class_names == ["no", "yes"]


def test_npz_x_y_serves_both_splits_and_labels_may_be_missing(tmp_path):
    np.savez(tmp_path / "xy.npz", x=np.zeros((4, 6)), y=np.array([0., 1., 2., 1.]))
    np.savez(tmp_path / "x.npz", x=np.zeros((4, 6)))
    for split in ("train", "test"):
        assert DataSpec(str(tmp_path / "xy.npz")).read(split).y.tolist() == [0, 1, 2, 1]
    unlabelled = DataSpec(str(tmp_path / "x.npz")).read("test")
    assert unlabelled.y is None
    with pytest.raises(AqError, match="no labels"):
        fit_to_model(unlabelled, (6,), 3, need_labels=True)


def test_image_folder_resized_to_the_model_input_with_class_names(tmp_path):
    root = _image_folder(tmp_path / "imgs")
    data = DataSpec(str(root), parse_rescale("1/255")).read("test", (8, 8, 1))
    assert data.x.shape == (9, 8, 8, 1) and data.class_names == ["cat", "dog", "eel"]
    assert data.y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert np.allclose(data.x[4], 41 / 255)          # dog/1.png, a flat image, rescaled
    rgb = DataSpec(str(root)).read("train", (5, 6, 3))
    assert rgb.x.shape == (9, 5, 6, 3) and np.allclose(rgb.x[8], 82)


def test_image_folder_with_train_and_test_splits(tmp_path):
    _image_folder(tmp_path / "d" / "train", per_class=4)
    _image_folder(tmp_path / "d" / "test", per_class=1)
    spec = DataSpec(str(tmp_path / "d"))
    assert len(spec.read("train", (4, 4, 1)).x) == 12
    assert spec.read("test", (4, 4, 1)).y.tolist() == [0, 1, 2]


def test_folder_of_npy_signals(tmp_path):
    for k, name in enumerate(["idle", "walk"]):
        (tmp_path / "sig" / name).mkdir(parents=True)
        for i in range(2):
            np.save(tmp_path / "sig" / name / f"{i}.npy", np.full((50, 3), k + i, np.int16))
    data = DataSpec(str(tmp_path / "sig")).read("train")
    assert data.x.shape == (4, 50, 3) and data.y.tolist() == [0, 0, 1, 1]
    assert data.x[3, 0].tolist() == [2, 2, 2]
    # a (50, 3) signal for a (50, 3, 1) model input gets its channel axis
    assert fit_to_model(data, (50, 3, 1), 2).x.shape == (4, 50, 3, 1)


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file or folder"),
    ("empty folder", "no class subfolders"),
    ("empty class", "class folder with no images"),
    ("unreadable image", "unreadable image file"),
    ("mixed kinds", "both images and .npy files"),
    ("not npz", "expected a .npz file or a folder"),
    ("corrupt npz", "not a readable .npz"),
    ("npz without x", "no array 'x'"),
    ("strings", "expected numbers, got dtype <U"),
    ("nan", "NaN or infinite"),
    ("label count", "3 labels for 4 samples"),
    ("fractional labels", "whole class indices"),
    ("negative label", "negative class index"),
])
def test_malformed_data_is_one_clear_error(tmp_path, case, message):
    spec = _malformed(tmp_path, case)
    with pytest.raises(AqError, match=message) as err:
        DataSpec(str(spec)).read("train", (8, 8, 1))
    assert "\n" not in str(err.value)


def _malformed(tmp: Path, case: str) -> Path:
    if case == "missing":
        return tmp / "nope"
    if case == "empty folder":
        (tmp / "e").mkdir()
        return tmp / "e"
    if case in ("empty class", "unreadable image", "mixed kinds"):
        root = _image_folder(tmp / "imgs")
        if case == "empty class":
            (root / "fox").mkdir()
        elif case == "unreadable image":
            (root / "dog" / "9.png").write_bytes(b"not a png")
        else:
            np.save(root / "cat" / "x.npy", np.zeros(3))
        return root
    path = tmp / ("data.txt" if case == "not npz" else "data.npz")
    if case in ("not npz", "corrupt npz"):
        path.write_bytes(b"garbage")
        return path
    x, y = np.zeros((4, 8, 8, 1)), np.array([0, 1, 0, 1])
    arrays = {"npz without x": {"images": x}, "strings": {"x": x.astype(str), "y": y},
              "nan": {"x": x + np.nan, "y": y}, "label count": {"x": x, "y": y[:3]},
              "fractional labels": {"x": x, "y": y + 0.5}, "negative label": {"x": x, "y": y - 1}}
    np.savez(path, allow_pickle=True, **arrays[case])
    return path


@pytest.mark.parametrize("shape, classes, message", [
    ((28, 28, 1), 10, r"samples are 32×32×3 but the model's input is 28×28×1"),
    ((32, 32, 3), 3, r"labels go up to 9 \(10 classes\) but the model has 3 outputs"),
])
def test_data_that_does_not_fit_the_model(shape, classes, message):
    from aqedge.datasets import Dataset

    data = Dataset(np.zeros((10, 32, 32, 3), np.float32), np.arange(10), None, "mine.npz")
    with pytest.raises(AqError, match=message):
        fit_to_model(data, shape, classes)


def test_more_class_folders_than_outputs(tmp_path):
    data = DataSpec(str(_image_folder(tmp_path / "imgs"))).read("train", (8, 8, 1))
    data.y = data.y[data.y < 2]  # labels alone would fit: the folder count is what says no
    with pytest.raises(AqError, match="3 classes but the model has 2 outputs"):
        fit_to_model(data, (8, 8, 1), 2)


@pytest.mark.parametrize("text, value", [("1/255", 1 / 255), ("0.5", 0.5), (2, 2.0), (None, None)])
def test_rescale_values(text, value):
    assert parse_rescale(text) == value


@pytest.mark.parametrize("text", ["0", "nan", "inf", "x", "1/0"])
def test_bad_rescale_is_refused(text):
    with pytest.raises(AqError, match="rescale"):
        parse_rescale(text)
