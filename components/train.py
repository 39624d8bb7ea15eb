"""Train: a Keras model (or gradient-boosted trees compiled into TF ops, `mlops/trees.py`) on
TFT-transformed features, exported with the transform graph inside.

The SavedModel's `serving_default` takes raw features by internal name (`mlops.names.safe_name`:
the name as written when it is already an identifier; float32 with NaN for missing numbers,
strings with "" for missing categories), applies the TFT graph and returns class probabilities;
`serving_tf_example` does the same from serialized tf.Example protos (used by TFMA and batch jobs).
"""

from __future__ import annotations

import os
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from components.transform import categorical_sizes
from mlops.artifacts import (
    KERAS_WEIGHTS_FILE,
    MODEL_CONFIG_FILE,
    MODEL_EXTRA_DIR,
    MODEL_INFO_FILE,
    TFLITE_DIR,
    model_extra_path,
    read_label_classes,
    read_model_info,
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
from mlops.fit_diagnosis import GBT_WORDS, diagnose_fit, prior_baseline
from mlops.io import atomic_dir, json_value, write_json_atomic
from mlops.models import build_model, weight_shapes
from mlops.tflite_export import export_tflite


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


def _transformed_inputs(features: dict[str, Any], sizes: dict[str, int]) -> dict[str, Any]:
    """The transformed feature contract of a model: name -> id count (integer features) or
    "float". A champion's weights fit a candidate only where these are equal."""
    return {name: sizes.get(name, "float") for name in sorted(features)}


def _champion_file(champion_dir: str, name: str) -> str:
    # Not through Path: it would turn gs://bucket into gs:/bucket.
    return f"{champion_dir.rstrip('/')}/{MODEL_EXTRA_DIR}/{name}"


def _read_weights(champion_dir: str, local_dir: Path) -> Path:
    """The champion's Keras weights file as a local path (copied first from gs://)."""
    source = _champion_file(champion_dir, KERAS_WEIGHTS_FILE)
    if "://" not in source:
        return Path(source)
    import tensorflow as tf

    target = local_dir / KERAS_WEIGHTS_FILE
    tf.io.gfile.copy(source, str(target), overwrite=True)
    return target


def _read_champion_info(champion_dir: str) -> dict[str, Any]:
    if "://" not in champion_dir:
        return read_model_info(champion_dir)
    import json

    import tensorflow as tf

    with tf.io.gfile.GFile(_champion_file(champion_dir, MODEL_INFO_FILE)) as handle:
        return json.load(handle)


def _champion_for_warm_start(config: PipelineConfig, champion_dir: str | None) -> dict[str, Any]:
    """{"dir", "info"} of the champion to warm start from, or {"note"} saying why there is
    none. Without `champion_dir` the local registry's champion is looked up."""
    if not champion_dir:  # called outside a pipeline: the local registry's champion
        from components.find_champion import find_champion_local

        champion_dir = find_champion_local(config)
    if not champion_dir:
        return {"note": f"no champion of {config.name!r} in the registry yet: cold start"}
    try:
        info = _read_champion_info(champion_dir)
    except (OSError, ValueError) as exc:
        return {
            "dir": champion_dir,
            "note": f"champion's model_info unreadable ({exc}): cold start",
        }
    if "weight_shapes" not in info:
        return {
            "dir": champion_dir,
            "note": "the champion was exported without Keras weights (trained before warm start "
            "existed): cold start",
        }
    return {"dir": champion_dir, "info": info}


def _warm_start(
    model: Any,
    family: str,
    champion: dict[str, Any],
    transformed: dict[str, Any],
    local_dir: Path,
) -> dict[str, Any]:
    """Load the champion's weights into `model` when its transformed inputs and layer shapes
    match; the record says what happened and what the champion had reached."""
    record: dict[str, Any] = {"applied": False, "champion_dir": champion.get("dir")}
    info = champion.get("info")
    if info is None:
        return {**record, "note": champion["note"]}
    record.update(
        champion_family=info.get("model_family", "dnn"),
        champion_eval_accuracy=info.get("eval_accuracy"),
        champion_eval_loss=info.get("eval_loss"),
        champion_epochs_run=info.get("epochs_run"),
    )
    if info.get("transformed_inputs") != transformed:
        theirs = info.get("transformed_inputs") or {}
        differing = sorted(
            name
            for name in set(theirs) | set(transformed)
            if theirs.get(name) != transformed.get(name)
        )
        return {
            **record,
            "note": f"the champion's transformed inputs differ from this transform's on "
            f"{differing[:8]} (missing, added or another vocabulary size): cold start",
        }
    shapes = weight_shapes(model)
    if info["weight_shapes"] != shapes:
        return {
            **record,
            "note": f"the champion ({record['champion_family']}, {len(info['weight_shapes'])} "
            f"weights) has other layers or shapes than this {family} model ({len(shapes)} "
            "weights): cold start",
        }
    model.load_weights(str(_read_weights(champion["dir"], local_dir)))
    return {**record, "applied": True, "note": f"started from the champion's weights ({family})"}


def _gbt_round(num_classes: int, training: Any) -> Any:
    """A self-training round of the gbt family: (train, eval) -> (model, eval loss, accuracy)."""
    from mlops.trees import train_gbt

    def fit_round(train: Any, evaluation: Any) -> tuple[Any, float, float]:
        weights = (
            class_weights(train[1], num_classes) if training.class_weight == "balanced" else None
        )
        fitted = train_gbt(train, evaluation, num_classes, training, weights)
        return fitted["model"], fitted["eval_loss"], fitted["eval_accuracy"]

    return fit_round


def run_train(
    config: PipelineConfig,
    dataset_dir: str | Path,
    transform_dir: str | Path,
    model_dir: str | Path,
    logs_dir: str | Path | None = None,
    champion_dir: str | None = None,
) -> dict[str, Any]:
    """Fit on train with early stopping on eval; export the raw-feature SavedModel to `model_dir`.

    With `training.compare_families` each family is fitted and the best on eval accuracy (then
    eval loss) is exported. With `training.warm_start` the fit starts from the weights of the
    champion (`champion_dir`, else the local registry's) when they fit. Returns the final
    training and eval metrics, epochs run, the fit diagnosis and, when asked for, the warm start
    and TFLite records; `model_info.json` also keeps the curves. TensorBoard logs go to
    `logs_dir` when given, or where Vertex AI's `AIP_TENSORBOARD_LOG_DIR` says
    (`tensorboard_log_dir`).
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
    for split in ("train", "eval", "test") if training.export_tflite else ("train", "eval"):
        frame = read_split(dataset_dir, split)
        if split == "train":
            raw_types = categorical_types(frame, config.features)
            explanation_baseline = {
                k: json_value(v) for k, v in baseline_row(frame, config.features).items()
            }
        # The TFT graph runs once per split here, not once per batch and epoch.
        arrays = frame_to_arrays(frame, config.features)
        features = _transform(layer, to_model_inputs(arrays, config.features))
        splits[split] = (features, encode_labels(frame[label].tolist(), classes, split))

    sizes = categorical_sizes(config.features, tft_output)
    transformed = _transformed_inputs(splits["train"][0], sizes)

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
                return build_model(
                    training.model, splits["train"][0], sizes, len(classes), training
                )

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
            fit_round=_gbt_round(len(classes), training) if training.model == "gbt" else None,
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
    multi_worker = strategy_name == MULTI_WORKER
    champion = _champion_for_warm_start(config, champion_dir) if training.warm_start else None

    def fit(family: str, scratch: Path, reseed: bool) -> dict[str, Any]:
        if family == "gbt":  # scikit-learn's trees, compiled into TF ops (mlops/trees.py)
            from mlops.trees import train_gbt

            if multi_worker:
                raise ValueError(
                    "training fits gbt, but TF_CONFIG names a cluster: scikit-learn's boosted "
                    "trees train on one machine; run with one replica"
                )
            return train_gbt(
                splits["train"], splits["eval"], len(classes), training, weights, log_dir
            )
        # The first family draws from the seed set above, exactly as a one-family run always
        # has (same weights, same model); the next ones restart from the same seed.
        if reseed:
            keras.utils.set_random_seed(training.seed)
        if family == "cnn":  # images: pretrain on a source task, fine-tune (mlops/image_models)
            from mlops.image_models import fit_cnn

            return fit_cnn(
                splits["train"],
                splits["eval"],
                len(classes),
                config.features.image,
                training,
                dataset,
                callbacks,
                weights,
                strategy.scope,
            )
        with strategy.scope():
            model = build_model(family, splits["train"][0], sizes, len(classes), training)
        fitted: dict[str, Any] = {"model": model}
        if champion is not None:
            fitted["warm_start"] = _warm_start(model, family, champion, transformed, scratch)
            fitted["warm_start"]["initial_eval_loss"] = float(
                model.evaluate(dataset("eval", shuffle=False), verbose=0)[0]
            )
        # Keras 3's fit cannot run under MultiWorkerMirroredStrategy: a custom loop stands in.
        fit_model = partial(fit_across_workers, model, strategy) if multi_worker else model.fit
        history = fit_model(
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
        fitted.update(
            curves=curves,
            eval_loss=float(eval_loss),
            eval_accuracy=float(eval_accuracy),
            epochs_run=len(curves.get("loss", [])),
        )
        return fitted

    families = training.compare_families or [training.model]
    with tempfile.TemporaryDirectory(prefix="train-") as scratch:
        fitted = {
            family: fit(family, Path(scratch), reseed=i > 0) for i, family in enumerate(families)
        }
    chosen = min(families, key=lambda f: (-fitted[f]["eval_accuracy"], fitted[f]["eval_loss"]))
    best = fitted[chosen]
    model, curves = best["model"], best["curves"]
    prior = prior_baseline(splits["train"][1], len(classes))
    info: dict[str, Any] = {
        "label": label,
        "classes": classes,
        "raw_features": {
            "numeric": config.features.numeric,
            "categorical": config.features.categorical,
            "categorical_types": raw_types,
            **({"image": config.features.image.model_dump()} if config.features.image else {}),
        },
        # each raw feature's key in the SavedModel signatures (the server maps requests keyed
        # by the names as written onto them)
        "model_input_names": model_input_names(config.features),
        # the reference row explanations start from (median / most frequent value in train)
        "explanation_baseline": explanation_baseline,
        "model_family": chosen,
        "regularisation": {"l2": training.l2, "dropout": training.dropout},
        "epochs_run": best["epochs_run"],
        "eval_loss": best["eval_loss"],
        "eval_accuracy": best["eval_accuracy"],
        "class_weights": weights,
        "strategy": strategy_name,
        "fit_diagnosis": diagnose_fit(curves, training.epochs, prior)
        if chosen != "gbt"
        else diagnose_fit(curves, training.gbt.n_estimators, prior, words=GBT_WORDS),
        "curves": curves,
        "transformed_inputs": transformed,
        "weight_shapes": weight_shapes(model),
    }
    if "gbt" in best:
        info["gbt"] = best["gbt"]
    if len(families) > 1:
        info["family_comparison"] = [
            {
                "family": family,
                "eval_accuracy": fitted[family]["eval_accuracy"],
                "eval_loss": fitted[family]["eval_loss"],
                "epochs_run": fitted[family]["epochs_run"],
                "params": int(fitted[family]["model"].count_params()),
                "chosen": family == chosen,
            }
            for family in families
        ]
    if "transfer" in best:
        info["transfer"] = best["transfer"]
    if "warm_start" in best:
        info["warm_start"] = best["warm_start"]
    if self_training is not None:
        from mlops.self_training import finish_rounds

        info["self_training"] = finish_rounds(
            self_training, best["eval_loss"], best["eval_accuracy"]
        )
    with save_dir(model_dir, atomic_dir) as out:
        export_serving_model(model, tft_output, classes, config, out)
        weights_path = model_extra_path(out, KERAS_WEIGHTS_FILE)
        weights_path.parent.mkdir(parents=True, exist_ok=True)
        model.save_weights(str(weights_path))
        if training.export_tflite:
            test_features, test_labels = splits["test"]
            info["tflite"] = export_tflite(
                model,
                model_extra_path(out, TFLITE_DIR),
                {name: np.asarray(tensor) for name, tensor in test_features.items()},
                test_labels,
            )
        write_json_atomic(model_extra_path(out, MODEL_INFO_FILE), info)
        model_extra_path(out, MODEL_CONFIG_FILE).write_text(config.to_json())
    return {k: v for k, v in info.items() if k not in ("curves", "weight_shapes")}
