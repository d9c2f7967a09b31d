"""Seeded training loop shared by the CLI and the benchmark: float pre-train → quantize → fine-tune.

`callbacks` are ordinary Keras callbacks (e.g. a progress bar updated from `on_epoch_end`).
"""

from __future__ import annotations

import numpy as np


def _ends_in_softmax(model) -> bool:
    last = model.layers[-1]
    act = getattr(last, "activation", None)
    name = act if isinstance(act, str) else getattr(act, "__name__", "")
    return type(last).__name__ == "Softmax" or name == "softmax"


def fit(model, x, y, epochs: int, lr: float = 2e-3, batch_size: int = 64, seed: int = 0,
        callbacks=(), verbose: int = 0):
    """Compile `model` (Adam, cosine-decayed `lr`, sparse cross-entropy) and fit it, seeded."""
    import keras

    keras.utils.set_random_seed(seed)
    steps = max(1, int(np.ceil(len(x) / batch_size)) * max(epochs, 1))
    schedule = keras.optimizers.schedules.CosineDecay(lr, steps, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=not _ends_in_softmax(model)),
                  metrics=["accuracy"])
    if epochs > 0:
        model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose,
                  callbacks=list(callbacks), shuffle=True)
    return model


def quantize_and_finetune(float_model, x, y, epochs: int, lr: float = 5e-4, seed: int = 0,
                          calibration_samples: int = 512, callbacks=(), verbose: int = 0,
                          **quantize_kwargs):
    """`quantize_model(float_model, **quantize_kwargs)`, calibrate on `x`, fine-tune `epochs`."""
    import keras

    from .qat import calibrate, quantize_model

    keras.utils.set_random_seed(seed)
    qat = quantize_model(float_model, **quantize_kwargs)
    calibrate(qat, x[:calibration_samples])
    return fit(qat, x, y, epochs, lr=lr, seed=seed, callbacks=callbacks, verbose=verbose)


def with_batch_size(model, batch_size: int | None = 1):
    """A copy of a Functional `model` whose input has a fixed batch (1 for TFLite export)."""
    import keras

    src = model.inputs[0]
    inp = keras.Input(shape=tuple(src.shape[1:]), batch_size=batch_size, name=src.name)
    structured = isinstance(model.input, (list, tuple))
    clone = keras.models.clone_model(model, input_tensors=[inp] if structured else inp)
    clone.set_weights(model.get_weights())
    return clone
