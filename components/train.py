"""Train: a Keras model on TFT-transformed features, exported with the transform graph inside.

The SavedModel's `serving_default` takes raw features by internal name (`mlops.names.safe_name`:
the name as written when it is already an identifier; float32 with NaN for missing numbers,
strings with "" for missing categories), applies the TFT graph and returns class probabilities;
`serving_tf_example` does the same from serialized tf.Example protos (used by TFMA and batch jobs).
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from components.transform import categorical_sizes
from mlops.artifacts import (
    MODEL_CONFIG_FILE,
    MODEL_INFO_FILE,
    model_extra_path,
    read_label_classes,
    read_split,
)
from mlops.attributions import baseline_row
from mlops.config import PipelineConfig
from mlops.features import (
    encode_labels,
    frame_to_arrays,
    model_input_names,
    tf_example_spec,
    tf_input_signature,
    to_model_inputs,
)
from mlops.io import atomic_dir, write_json_atomic


def class_weights(label_ids: np.ndarray, num_classes: int) -> dict[int, float]:
    """Balanced weights: n / (k * count_c); classes absent from train get weight 1."""
    counts = np.bincount(label_ids, minlength=num_classes)
    total = counts.sum()
    return {
        c: float(total / (num_classes * counts[c])) if counts[c] else 1.0
        for c in range(num_classes)
    }


def categorical_types(frame: Any, features: Any) -> dict[str, str]:
    """How each raw categorical column is typed in the train split: "integer" (integer-coded, e.g.
    a community area), "number" or "string". The server accepts JSON integers for a category
    only where training saw integers."""
    import pandas as pd

    types: dict[str, str] = {}
    for name in features.categorical:
        dtype = frame[name].dtype
        if pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
            types[name] = "integer"
        elif pd.api.types.is_numeric_dtype(dtype):
            types[name] = "number"
        else:
            types[name] = "string"
    return types


def build_model(
    transformed_spec: dict[str, Any],
    sizes: dict[str, int],
    num_classes: int,
    config: PipelineConfig,
) -> Any:
    import keras

    training = config.training
    inputs: dict[str, Any] = {}
    parts: list[Any] = []
    for name in sorted(transformed_spec):
        if name in sizes:
            inputs[name] = keras.Input(shape=(), dtype="int64", name=name)
            embedded = keras.layers.Embedding(
                sizes[name], training.embedding_dim, name=f"emb_{name}"
            )(inputs[name])
            parts.append(embedded)
        else:
            inputs[name] = keras.Input(shape=(), dtype="float32", name=name)
            parts.append(keras.layers.Reshape((1,), name=f"col_{name}")(inputs[name]))
    hidden = keras.layers.Concatenate(name="features")(parts)
    for i, units in enumerate(training.hidden_units):
        hidden = keras.layers.Dense(units, activation="relu", name=f"dense_{i}")(hidden)
        if training.dropout:
            hidden = keras.layers.Dropout(training.dropout, name=f"dropout_{i}")(hidden)
    probabilities = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(
        hidden
    )
    model = keras.Model(inputs=inputs, outputs=probabilities)
    model.compile(
        optimizer=keras.optimizers.Adam(training.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["sparse_categorical_accuracy"],
    )
    return model


# Set by Vertex AI in a custom job that has a TensorBoard instance: the Cloud Storage directory it
# streams to that TensorBoard.
VERTEX_TENSORBOARD_ENV = "AIP_TENSORBOARD_LOG_DIR"


def tensorboard_log_dir(logs_dir: str | Path | None) -> str | None:
    """Where the TensorBoard logs go: Vertex AI's `AIP_TENSORBOARD_LOG_DIR` when the custom job
    sets it (read at call time: it exists only inside that job), else `logs_dir`."""
    return os.environ.get(VERTEX_TENSORBOARD_ENV) or (str(logs_dir) if logs_dir else None)


def _transform(layer: Any, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    import tensorflow as tf

    raw = {name: tf.constant(values) for name, values in arrays.items()}
    return layer(raw)


def export_serving_model(
    model: Any,
    tft_output: Any,
    classes: list[str],
    config: PipelineConfig,
    export_dir: Path,
) -> None:
    import tensorflow as tf

    features = config.features

    class ServingModule(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.tft_layer = tft_output.transform_features_layer()
            self.class_names = tf.constant(classes)

        def predict_raw(self, raw: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            transformed = self.tft_layer(raw)
            inputs = {name: transformed[name] for name in model.input}
            probabilities = self.model(inputs, training=False)
            best = tf.argmax(probabilities, axis=1)
            rows = tf.shape(probabilities)[0]
            return {
                "probabilities": probabilities,
                "classes": tf.tile(self.class_names[tf.newaxis, :], [rows, 1]),
                "predicted_label": tf.gather(self.class_names, best),
                "predicted_index": best,
            }

    module = ServingModule()
    raw_signature = tf_input_signature(features)
    example_spec = tf_example_spec(features)

    @tf.function(input_signature=[raw_signature])
    def serve_raw(raw: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return module.predict_raw(raw)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return module.predict_raw(tf.io.parse_example(examples, example_spec))

    module.serve_raw = serve_raw
    module.serve_examples = serve_examples
    tf.saved_model.save(
        module,
        str(export_dir),
        signatures={
            "serving_default": serve_raw.get_concrete_function(),
            "serving_tf_example": serve_examples.get_concrete_function(),
        },
    )


def run_train(
    config: PipelineConfig,
    dataset_dir: str | Path,
    transform_dir: str | Path,
    model_dir: str | Path,
    logs_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Fit on train with early stopping on eval; export the raw-feature SavedModel to `model_dir`.

    Returns the final training and eval metrics, epochs run and the curves (also in
    `model_info.json`). TensorBoard logs go to `logs_dir` when given, or where Vertex AI's
    `AIP_TENSORBOARD_LOG_DIR` says (`tensorboard_log_dir`).
    """
    # Keras 3 must be imported before tensorflow_transform, which otherwise switches tf.keras to
    # Keras 2 for the whole process.
    import keras  # noqa: I001
    import tensorflow as tf
    import tensorflow_transform as tft

    from mlops.distribute import (
        MULTI_WORKER,
        choose_strategy,
        evaluate_across_workers,
        fit_across_workers,
        input_dataset,
        save_dir,
    )

    # First, before any TensorFlow op: a multi-worker strategy must configure the runtime.
    strategy, strategy_name = choose_strategy()
    training = config.training
    keras.utils.set_random_seed(training.seed)
    tft_output = tft.TFTransformOutput(str(transform_dir))
    classes = read_label_classes(transform_dir)
    label = config.data.label
    layer = tft_output.transform_features_layer()

    splits = {}
    raw_types: dict[str, str] = {}
    for split in ("train", "eval"):
        frame = read_split(dataset_dir, split)
        if split == "train":
            raw_types = categorical_types(frame, config.features)
            explanation_baseline = {
                k: (None if isinstance(v, float) and v != v else v)
                for k, v in baseline_row(frame, config.features).items()
            }
        # The TFT graph runs once per split here, not once per batch and epoch.
        arrays = frame_to_arrays(frame, config.features)
        features = _transform(layer, to_model_inputs(arrays, config.features))
        splits[split] = (features, encode_labels(frame[label].tolist(), classes, split))

    sizes = categorical_sizes(config.features, tft_output)
    with strategy.scope():
        model = build_model(splits["train"][0], sizes, len(classes), config)

    def dataset(split: str | tuple[Any, np.ndarray], shuffle: bool) -> tf.data.Dataset:
        features, labels = splits[split] if isinstance(split, str) else split
        return input_dataset(
            features, labels, training.batch_size, strategy, shuffle, training.seed
        )

    self_training = None
    if training.self_training.enabled:  # earlier rounds here; the fit below is the last round
        from mlops.self_training import pseudo_label_rounds, unlabeled_features

        def fresh_model() -> Any:
            with strategy.scope():
                return build_model(splits["train"][0], sizes, len(classes), config)

        splits["train"], self_training = pseudo_label_rounds(
            config,
            classes,
            splits["train"],
            splits["eval"],
            unlabeled_features(
                config,
                dataset_dir,
                lambda frame: _transform(
                    layer, to_model_inputs(frame_to_arrays(frame, config.features), config.features)
                ),
            ),
            strategy_name,
            fresh_model,
            lambda features, labels, shuffle: dataset((features, labels), shuffle),
            lambda labels: (
                class_weights(labels, len(classes)) if training.class_weight == "balanced" else None
            ),
        )

    callbacks: list[Any] = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=training.early_stopping_patience, restore_best_weights=True
        )
    ]
    log_dir = tensorboard_log_dir(logs_dir)
    if log_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir, profile_batch=0))
    weights = (
        class_weights(splits["train"][1], len(classes))
        if training.class_weight == "balanced"
        else None
    )
    # Keras 3's fit cannot run under MultiWorkerMirroredStrategy: a custom loop stands in.
    multi_worker = strategy_name == MULTI_WORKER
    fit = partial(fit_across_workers, model, strategy) if multi_worker else model.fit
    history = fit(
        dataset("train", shuffle=True),
        validation_data=dataset("eval", shuffle=False),
        epochs=training.epochs,
        class_weight=weights,
        callbacks=callbacks,
        verbose=0,
    )
    eval_loss, eval_accuracy = (
        evaluate_across_workers(model, strategy, dataset("eval", shuffle=False))
        if multi_worker
        else model.evaluate(dataset("eval", shuffle=False), verbose=0)
    )
    curves = {key: [float(v) for v in values] for key, values in history.history.items()}
    info = {
        "label": label,
        "classes": classes,
        "raw_features": {
            "numeric": config.features.numeric,
            "categorical": config.features.categorical,
            "categorical_types": raw_types,
        },
        # each raw feature's key in the SavedModel signatures (the server maps requests keyed
        # by the names as written onto them)
        "model_input_names": model_input_names(config.features),
        # the reference row explanations start from (median / most frequent value in train)
        "explanation_baseline": explanation_baseline,
        "epochs_run": len(curves.get("loss", [])),
        "eval_loss": float(eval_loss),
        "eval_accuracy": float(eval_accuracy),
        "class_weights": weights,
        "strategy": strategy_name,
        "curves": curves,
    }
    if self_training is not None:
        from mlops.self_training import finish_rounds

        info["self_training"] = finish_rounds(self_training, eval_loss, eval_accuracy)
    with save_dir(model_dir, atomic_dir) as out:
        export_serving_model(model, tft_output, classes, config, out)
        write_json_atomic(model_extra_path(out, MODEL_INFO_FILE), info)
        model_extra_path(out, MODEL_CONFIG_FILE).write_text(config.to_json())
    return {k: v for k, v in info.items() if k != "curves"}
