"""The `cnn` model family: a small conv net over the decoded image of `features.image`, with
transfer learning from a source task trained in the same step.

* Augmentation: Keras preprocessing layers (RandomRotation, RandomTranslation, RandomZoom) at the
  front of the classifier. They transform batches only when the model is called with
  `training=True` (fit); evaluation, export and serving see the image as it is. No flips.
* Transfer learning: pretrained weights cannot be downloaded here, so the conv base is first
  trained on a source task made from the train images: which of 4 quarter turns (2 half turns
  for non-square images) was applied, a self-supervised pretext task that needs no labels. The
  classifier then reuses that base: `frozen_epochs` with the base frozen (only the new head
  learns), then the whole net at `fine_tune_lr_factor` x the learning rate.
* With `pretrain.compare_with_scratch` the same net is also trained from random weights for the
  same number of epochs, and both eval accuracies are recorded (model_info.json, run report).

Inputs are the transform's outputs ({"<image>_pixels": float32 [batch, H, W, C] in [0, 1]}), so
the exported signature, evaluation and serving are those of every other family.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlops.config import AugmentConfig, ImageConfig, TrainingConfig

PRETEXT_TASK = "rotation"


def augmentation(augment: AugmentConfig, seed: int) -> list[Any]:
    """The random layers of `augment` (those set above 0), in the order they are applied."""
    import keras

    layers: list[Any] = []
    if augment.rotation:
        layers.append(
            keras.layers.RandomRotation(
                augment.rotation, fill_mode="constant", seed=seed, name="aug_rotation"
            )
        )
    if augment.translation:
        layers.append(
            keras.layers.RandomTranslation(
                augment.translation,
                augment.translation,
                fill_mode="constant",
                seed=seed + 1,
                name="aug_translation",
            )
        )
    if augment.zoom:
        layers.append(
            keras.layers.RandomZoom(
                augment.zoom, fill_mode="constant", seed=seed + 2, name="aug_zoom"
            )
        )
    return layers


def conv_base(shape: tuple[int, int, int], training: TrainingConfig) -> Any:
    """Two conv blocks and global pooling: [batch, H, W, C] -> [batch, 64] features."""
    import keras

    l2 = keras.regularizers.L2(training.l2) if training.l2 else None
    inputs = keras.Input(shape=shape, name="pixels")
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", kernel_regularizer=l2)(inputs)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", kernel_regularizer=l2)(x)
    if min(shape[0], shape[1]) >= 4:
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", kernel_regularizer=l2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, x, name="conv_base")


def _input_name(transformed_spec: dict[str, Any]) -> str:
    names = [name for name in transformed_spec if name.endswith("_pixels")]
    if len(names) != 1:
        raise ValueError(f"the cnn family needs one image input (<image>_pixels), got {names}")
    return names[0]


def build_cnn(
    transformed_spec: dict[str, Any],
    num_classes: int,
    training: TrainingConfig,
    base: Any | None = None,
) -> Any:
    """The compiled classifier that is exported: `base` (a new conv base when None) -> dropout
    -> softmax over `num_classes`. Training wraps it in `with_augmentation`."""
    import keras

    name = _input_name(transformed_spec)
    shape = tuple(int(d) for d in transformed_spec[name].shape[1:])
    base = base if base is not None else conv_base(shape, training)
    inputs = {name: keras.Input(shape=shape, dtype="float32", name=name)}
    x = base(inputs[name])
    if training.dropout:
        x = keras.layers.Dropout(training.dropout, name="dropout")(x)
    probabilities = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs=inputs, outputs=probabilities, name="cnn")
    compile_classifier(model, training.learning_rate)
    return model


def with_augmentation(model: Any, augment: AugmentConfig, seed: int, learning_rate: float) -> Any:
    """`model` behind the random augmentation layers, compiled: the model that `fit` trains.
    The layers share `model`'s weights and change images only when called with
    `training=True`; the exported model is `model` itself, without them (their random state has
    no place in a SavedModel, and serving must not distort images)."""
    import keras

    layers = augmentation(augment, seed)
    if not layers:
        return model
    (name,) = list(model.input)
    inputs = {name: keras.Input(shape=model.input[name].shape[1:], dtype="float32", name=name)}
    x = inputs[name]
    for layer in layers:
        x = layer(x)
    trainer = keras.Model(inputs=inputs, outputs=model({name: x}), name="cnn_augmented")
    compile_classifier(trainer, learning_rate)
    return trainer


def compile_classifier(model: Any, learning_rate: float) -> None:
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["sparse_categorical_accuracy"],
    )


def rotation_task(pixels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The pretext data: each image turned by every quarter turn (half turns for non-square
    images), labelled with the number of turns (as a class index)."""
    square = pixels.shape[1] == pixels.shape[2]
    turns = (0, 1, 2, 3) if square else (0, 2)
    images = np.concatenate([np.rot90(pixels, k, axes=(1, 2)) for k in turns])
    labels = np.repeat(np.arange(len(turns)), len(pixels))
    order = np.random.default_rng(seed).permutation(len(labels))
    return images[order], labels[order]


def pretrain_base(
    train_pixels: np.ndarray,
    eval_pixels: np.ndarray,
    image: ImageConfig,
    training: TrainingConfig,
) -> tuple[Any, dict[str, Any]]:
    """Train a conv base on the rotation task; returns it and a record of the source task."""
    import keras

    shape = tuple(train_pixels.shape[1:])
    base = conv_base(shape, training)
    x_train, y_train = rotation_task(train_pixels, training.seed)
    x_eval, y_eval = rotation_task(eval_pixels, training.seed + 1)
    classes = int(y_train.max()) + 1
    inputs = keras.Input(shape=shape, name="pixels")
    outputs = keras.layers.Dense(classes, activation="softmax", name="rotation")(base(inputs))
    pretext = keras.Model(inputs, outputs, name="rotation_pretext")
    compile_classifier(pretext, training.learning_rate)
    history = pretext.fit(
        x_train,
        y_train,
        validation_data=(x_eval, y_eval),
        epochs=image.pretrain.epochs,
        batch_size=training.batch_size,
        verbose=0,
    )
    _, accuracy = pretext.evaluate(x_eval, y_eval, verbose=0)
    return base, {
        "task": PRETEXT_TASK,
        "description": f"which of {classes} rotations was applied to a train image "
        "(self-supervised: no labels used)",
        "classes": classes,
        "examples": len(y_train),
        "epochs": image.pretrain.epochs,
        "eval_accuracy": float(accuracy),
        "chance_accuracy": 1.0 / classes,
        "curves": {k: [float(v) for v in values] for k, values in history.history.items()},
    }


def fit_cnn(
    train: tuple[dict[str, Any], np.ndarray],
    eval_: tuple[dict[str, Any], np.ndarray],
    num_classes: int,
    image: ImageConfig,
    training: TrainingConfig,
    dataset: Any,
    callbacks: list[Any],
    class_weight: dict[int, float] | None,
    scope: Any,
) -> dict[str, Any]:
    """Pretrain (unless `pretrain.task` is none), fine-tune, and (when asked) train from scratch.

    `dataset(features_and_labels, shuffle)` makes the tf.data input; `scope()` the distribution
    strategy's scope. Returns what train's fit returns for every family (model, curves, eval loss
    and accuracy, epochs run) plus `transfer`, the record of the source task and comparison."""
    import keras

    name = _input_name(train[0])
    train_pixels = np.asarray(train[0][name])
    eval_pixels = np.asarray(eval_[0][name])
    pretrain = image.pretrain

    def run(model: Any, epochs: int, initial: int = 0) -> dict[str, list[float]]:
        if epochs <= initial:
            return {}
        history = model.fit(
            dataset(train, True),
            validation_data=dataset(eval_, False),
            epochs=epochs,
            initial_epoch=initial,
            class_weight=class_weight,
            callbacks=callbacks,
            verbose=0,
        )
        return {k: [float(v) for v in values] for k, values in history.history.items()}

    def merged(*parts: dict[str, list[float]]) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for part in parts:
            for key, values in part.items():
                out.setdefault(key, []).extend(values)
        return out

    transfer: dict[str, Any] = {"source_task": None}
    with scope():
        if pretrain.task == "none":
            model = build_cnn(train[0], num_classes, training)
            trainer = with_augmentation(model, image.augment, training.seed, training.learning_rate)
            curves = run(trainer, training.epochs)
        else:
            base, source = pretrain_base(train_pixels, eval_pixels, image, training)
            transfer["source_task"] = source
            model = build_cnn(train[0], num_classes, training, base=base)
            frozen = min(pretrain.frozen_epochs, training.epochs)
            fine_tune_lr = training.learning_rate * pretrain.fine_tune_lr_factor
            base.trainable = False
            head_curves = run(
                with_augmentation(model, image.augment, training.seed, training.learning_rate),
                frozen,
            )
            base.trainable = True
            tune_curves = run(
                with_augmentation(model, image.augment, training.seed, fine_tune_lr),
                training.epochs,
                initial=frozen,
            )
            curves = merged(head_curves, tune_curves)
            transfer.update(frozen_epochs=frozen, fine_tune_learning_rate=fine_tune_lr)
    compile_classifier(model, training.learning_rate)
    eval_loss, eval_accuracy = model.evaluate(dataset(eval_, False), verbose=0)
    transfer["fine_tuned_eval_accuracy"] = float(eval_accuracy)
    if pretrain.task != "none" and pretrain.compare_with_scratch:
        keras.utils.set_random_seed(training.seed)
        with scope():
            scratch = build_cnn(train[0], num_classes, training)
            scratch_trainer = with_augmentation(
                scratch, image.augment, training.seed, training.learning_rate
            )
        scratch_curves = run(scratch_trainer, training.epochs)
        _, scratch_accuracy = scratch.evaluate(dataset(eval_, False), verbose=0)
        transfer["scratch"] = {
            "eval_accuracy": float(scratch_accuracy),
            "epochs_run": len(scratch_curves.get("loss", [])),
            "note": "the same net and epochs from random weights (no source task)",
        }
        transfer["gain_over_scratch"] = float(eval_accuracy) - float(scratch_accuracy)
    return {
        "model": model,
        "curves": curves,
        "eval_loss": float(eval_loss),
        "eval_accuracy": float(eval_accuracy),
        "epochs_run": len(curves.get("loss", [])),
        "transfer": transfer,
    }
