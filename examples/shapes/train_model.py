"""Train a small Keras CNN on a folder-of-images dataset (e.g. the one make_dataset.py writes).

The model takes grayscale images as Keras reads them, pixel values 0..255: its first layer,
Rescaling(1/255), scales them to [0, 1] (aqedge folds it into the int8 input quantization, so
the device takes the pixels as they are). It ends with a Softmax layer and is saved with a
fixed batch size of 1, as TFLite export needs.

    python train_model.py --data shapes --epochs 8 --out shapes.keras

`--data DIR` uses DIR/train and DIR/test when both exist, else DIR for training and testing.
"""

import argparse
import sys
from pathlib import Path

import keras
import tensorflow as tf


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("shapes"), help="dataset root (default: shapes/)")
    p.add_argument("--out", type=Path, default=Path("shapes.keras"), help="saved model (default: shapes.keras)")
    p.add_argument("--epochs", type=int, default=8, help="training epochs (default: 8)")
    p.add_argument("--size", type=int, default=32, help="image width and height (default: 32)")
    p.add_argument("--batch", type=int, default=32, help="training batch size (default: 32)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    return p.parse_args(argv)


def split_dirs(root):
    """(train folder, test folder): root/train and root/test if both exist, else root twice."""
    if (root / "train").is_dir() and (root / "test").is_dir():
        return root / "train", root / "test"
    return root, root


def load(folder, size, batch):
    """A tf.data dataset of (image with pixels 0..255, int label) batches and its class names."""
    ds = keras.utils.image_dataset_from_directory(
        folder, color_mode="grayscale", image_size=(size, size), label_mode="int",
        batch_size=batch, shuffle=True, seed=0)
    return ds.prefetch(tf.data.AUTOTUNE), ds.class_names


def build_model(size, n_classes, batch_size=None):
    """The CNN; layers are named so that two builds share layer names and weight shapes."""
    inputs = keras.Input((size, size, 1), batch_size=batch_size, name="image")
    x = keras.layers.Rescaling(1 / 255, name="rescale")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(32, activation="relu", name="dense1")(x)
    x = keras.layers.Dense(n_classes, name="logits")(x)
    outputs = keras.layers.Softmax(name="softmax")(x)
    return keras.Model(inputs, outputs, name="shapes_cnn")


def train(model, train_ds, epochs):
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy"])
    model.fit(train_ds, epochs=epochs, verbose=2, shuffle=False)  # the dataset shuffles itself


def batch1_copy(model, size, n_classes):
    """The same network with a fixed batch size of 1 (TFLite export needs it), same weights."""
    fixed = build_model(size, n_classes, batch_size=1)
    fixed.set_weights(model.get_weights())
    return fixed


def main(argv=None):
    args = parse_args(argv)
    if not args.data.is_dir():
        print(f"train_model: {args.data} is not a folder", file=sys.stderr)
        return 2
    keras.utils.set_random_seed(args.seed)
    train_dir, test_dir = split_dirs(args.data)
    if train_dir == test_dir:
        print(f"no train/ and test/ under {args.data}: training and testing on the same images")
    train_ds, classes = load(train_dir, args.size, args.batch)
    test_ds, test_classes = load(test_dir, args.size, args.batch)
    if test_classes != classes:
        print(f"train_model: class folders differ: train {classes}, test {test_classes}", file=sys.stderr)
        return 2
    model = build_model(args.size, len(classes))
    train(model, train_ds, args.epochs)
    fixed = batch1_copy(model, args.size, len(classes))
    fixed.save(args.out)
    _, accuracy = model.evaluate(test_ds, verbose=0)
    print(f"classes: {', '.join(classes)}")
    print(f"test accuracy: {accuracy:.4f}")
    print(f"saved {args.out} (input {fixed.input_shape}, {fixed.count_params()} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
