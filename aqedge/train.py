"""Seeded training loop shared by the CLI and the benchmark: float pre-train → quantize → fine-tune.

`callbacks` are ordinary Keras callbacks (e.g. a progress bar updated from `on_epoch_end`).
Labels are class indices `(N,)`, or soft targets `(N, classes)` (see `distillation_targets`).
"""

from __future__ import annotations

import numpy as np

from .errors import AqError


def _ends_in_softmax(model) -> bool:
    last = model.layers[-1]
    act = getattr(last, "activation", None)
    name = act if isinstance(act, str) else getattr(act, "__name__", "")
    return type(last).__name__ == "Softmax" or name == "softmax"


def fit(model, x, y, epochs: int, lr: float = 2e-3, batch_size: int = 64, seed: int = 0,
        callbacks=(), verbose: int = 0):
    """Compile `model` (Adam, cosine-decayed `lr`, cross-entropy) and fit it, seeded.

    `y` holds class indices (sparse cross-entropy) or soft targets, one row per sample
    (cross-entropy against the distribution; accuracy counts the argmax).
    """
    import keras

    keras.utils.set_random_seed(seed)
    steps = max(1, int(np.ceil(len(x) / batch_size)) * max(epochs, 1))
    schedule = keras.optimizers.schedules.CosineDecay(lr, steps, alpha=0.05)
    logits = not _ends_in_softmax(model)
    if np.ndim(y) == 2:
        loss = keras.losses.CategoricalCrossentropy(from_logits=logits)
        metric = keras.metrics.CategoricalAccuracy(name="accuracy")
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=logits)
        metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss, metrics=[metric])
    if epochs > 0:
        model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose,
                  callbacks=list(callbacks), shuffle=True)
    return model


def distillation_targets(teacher, x, y, weight: float, batch_size: int = 512) -> np.ndarray:
    """Soft targets `(1 − weight)·onehot(y) + weight·teacher(x)` for distilling `teacher`.

    The teacher's class probabilities are computed once (no augmentation, so they are exact for
    every epoch); training on these targets with cross-entropy is knowledge distillation at
    temperature 1.
    """
    import keras

    if not 0.0 <= weight <= 1.0:
        raise AqError(f"distillation weight {weight}: choose a value between 0 and 1")
    out = np.asarray(teacher.predict(np.asarray(x, np.float32), batch_size=batch_size,
                                     verbose=0), np.float64)
    probs = out if _ends_in_softmax(teacher) else np.asarray(keras.ops.softmax(out))
    onehot = np.eye(probs.shape[-1])[np.asarray(y, np.int64)]
    return ((1.0 - weight) * onehot + weight * probs).astype(np.float32)


def quantize_and_finetune(float_model, x, y, epochs: int, lr: float = 5e-4, seed: int = 0,
                          calibration_samples: int = 512, distill: float = 0.0, callbacks=(),
                          verbose: int = 0, **quantize_kwargs):
    """`quantize_model(float_model, **quantize_kwargs)`, calibrate on `x`, fine-tune `epochs`.

    `distill > 0` fine-tunes on soft targets mixing the labels with the float model's
    predictions (that weight on the teacher; see `distillation_targets`).
    """
    import keras

    from .qat import calibrate, quantize_model

    targets = distillation_targets(float_model, x, y, distill) if distill > 0 else y
    keras.utils.set_random_seed(seed)
    qat = quantize_model(float_model, **quantize_kwargs)
    calibrate(qat, x[:calibration_samples])
    return fit(qat, x, targets, epochs, lr=lr, seed=seed, callbacks=callbacks, verbose=verbose)


def with_batch_size(model, batch_size: int | None = 1, clone_function=None):
    """A copy of a Functional `model` whose input has a fixed batch (1 for TFLite export);
    `clone_function(layer)` makes each layer's copy (Keras' default: from its config)."""
    import keras

    src = model.inputs[0]
    inp = keras.Input(shape=tuple(src.shape[1:]), batch_size=batch_size, name=src.name)
    structured = isinstance(model.input, (list, tuple))
    clone = keras.models.clone_model(model, input_tensors=[inp] if structured else inp,
                                     clone_function=clone_function)
    clone.set_weights(model.get_weights())
    for layer in clone.layers:   # an adapted Normalization caches its mean from its weights
        if hasattr(layer, "finalize_state"):
            layer.finalize_state()
    return clone


def export_copy(model):
    """`with_batch_size(model, 1)` for the TFLite converter, every nearest-neighbour
    UpSampling2D replaced by the Resizing layer that computes the same: Keras 3 repeats rows and
    columns with TILE ops, which TensorFlow Lite Micro lacks, while Resizing converts to one
    RESIZE_NEAREST_NEIGHBOR (half-pixel centres: output o reads input floor((o + 0.5) / f) =
    o // f for an integer factor f, exactly the repeat)."""
    import keras

    def copy(layer):
        if isinstance(layer, keras.layers.UpSampling2D) and layer.interpolation == "nearest" \
                and layer.data_format == "channels_last":
            _, h, w, _ = layer.input.shape
            fh, fw = layer.size
            return keras.layers.Resizing(h * fh, w * fw, interpolation="nearest", name=layer.name)
        if isinstance(layer, keras.layers.Lambda):   # the caller's own live function, not a file
            return keras.layers.Lambda.from_config(layer.get_config(), safe_mode=False)
        return layer.__class__.from_config(layer.get_config())

    return with_batch_size(model, 1, clone_function=copy)
