"""The built-in example: a small Fashion-MNIST CNN, trained seeded, as `aqedge run` deploys it."""

from __future__ import annotations

import numpy as np


def build_cnn():
    """A small ReLU CNN for 28x28x1 images (fixed batch 1 for export: a free batch wraps Flatten in SHAPE/STRIDED_SLICE/PACK)."""
    import keras
    from keras import layers

    inputs = keras.Input((28, 28, 1), batch_size=1, name="image")
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(32, activation="relu")(x)
    x = layers.Dense(10)(x)
    outputs = layers.Softmax()(x)
    return keras.Model(inputs, outputs, name="fashion_cnn")


def train_float(x: np.ndarray, y: np.ndarray, epochs: int = 2, seed: int = 0, callbacks=()):
    """Train `build_cnn()` on (x, y) with a fixed seed; returns the Keras model."""
    import keras

    keras.utils.set_random_seed(seed)
    model = build_cnn()
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    # Train with a free batch dimension, then copy weights into the batch-1 export model.
    train_model = keras.models.clone_model(model, input_tensors=keras.Input((28, 28, 1)))
    train_model.compile(optimizer=keras.optimizers.Adam(2e-3),
                        loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    train_model.fit(x, y, batch_size=64, epochs=epochs, verbose=0, callbacks=list(callbacks))
    model.set_weights(train_model.get_weights())
    return model
