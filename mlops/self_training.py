"""Self-training (semi-supervised learning on tabular rows): fit on the labelled train rows,
label the unlabeled rows the model is confident about, refit on both, for a few rounds.

`components.train.run_train` calls `pseudo_label_rounds` before its own fit: every round but the
last is fitted here (round 0 on the labelled rows only, so the labelled-only baseline is measured
in the same run), and `run_train`'s fit is the last round. `finish_rounds` then records that round's eval
metrics and the gain over round 0. Eval and test rows are never touched.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mlops.artifacts import UNLABELED, read_split
from mlops.config import PipelineConfig
from mlops.distribute import MULTI_WORKER


def select_pseudo_labels(
    probabilities: np.ndarray, confidence: float, classes: list[str]
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Rows whose most likely class has probability >= `confidence`: (row indices, their class
    ids, how many per class name, every class named)."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(classes):
        raise ValueError(
            f"probabilities must be rows x {len(classes)} classes {classes}; "
            f"got shape {probabilities.shape}"
        )
    best = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, np.int64)
    sure = probabilities.max(axis=1) >= confidence if len(probabilities) else np.zeros(0, bool)
    rows = np.flatnonzero(sure)
    ids = best[rows].astype(np.int64)
    counts = np.bincount(ids, minlength=len(classes))
    return rows, ids, {name: int(counts[i]) for i, name in enumerate(classes)}


def unlabeled_features(
    config: PipelineConfig, dataset_dir: str | Path, transform: Callable[[Any], dict[str, Any]]
) -> dict[str, Any]:
    """The unlabeled rows ingest set aside, through `transform` (raw frame -> model inputs)."""
    try:
        frame = read_split(dataset_dir, UNLABELED)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"training.self_training.enabled, but {dataset_dir} has no {UNLABELED}.parquet: "
            "ingest writes it with data.unlabeled: keep; rerun ingest with that config"
        ) from None
    return transform(frame)


def _fit_round(
    make_model: Callable[[], Any],
    make_dataset: Callable[[Any, Any, bool], Any],
    train: tuple[Any, np.ndarray],
    evaluation: tuple[Any, np.ndarray],
    config: PipelineConfig,
    class_weights: Callable[[np.ndarray], Any],
) -> tuple[Any, float, float]:
    """One fit as run_train fits (early stopping on eval loss, its class weights), no logs."""
    import keras

    training = config.training
    model = make_model()
    model.fit(
        make_dataset(*train, True),
        validation_data=make_dataset(*evaluation, False),
        epochs=training.epochs,
        class_weight=class_weights(train[1]),
        callbacks=[
            keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=training.early_stopping_patience,
                restore_best_weights=True,
            )
        ],
        verbose=0,
    )
    loss, accuracy = model.evaluate(make_dataset(*evaluation, False), verbose=0)
    return model, float(loss), float(accuracy)


def pseudo_label_rounds(
    config: PipelineConfig,
    classes: list[str],
    train: tuple[Any, np.ndarray],
    evaluation: tuple[Any, np.ndarray],
    unlabeled: dict[str, Any],
    strategy_name: str,
    make_model: Callable[[], Any],
    make_dataset: Callable[[Any, Any, bool], Any],
    class_weights: Callable[[np.ndarray], Any],
    fit_round: Callable[[Any, Any], tuple[Any, float, float]] | None = None,
) -> tuple[tuple[Any, np.ndarray], dict[str, Any]]:
    """Fit rounds 0 .. max_rounds-1, each labelling the unlabeled rows anew with its model.

    Each round is a Keras fit of `make_model()` unless `fit_round` ((train, eval) -> (model with
    a Keras `predict`, eval loss, eval accuracy)) fits it another way, as the gbt family does.

    Returns the train set for the last round (labelled rows plus the last pseudo-labels) and
    the record so far: per round, the pseudo-labels it trained on (per class) and its eval
    metrics. Stops early when no unlabeled row reaches the confidence."""
    import tensorflow as tf

    if strategy_name == MULTI_WORKER:
        raise ValueError(
            "training.self_training is not supported with several workers (TF_CONFIG names a "
            "cluster): run self-training on one machine"
        )
    settings = config.training.self_training
    features, labels = train
    unlabeled_rows = int(next(iter(unlabeled.values())).shape[0]) if unlabeled else 0
    record: dict[str, Any] = {
        "confidence": settings.confidence,
        "max_rounds": settings.max_rounds,
        "labelled_rows": int(len(labels)),
        "unlabeled_rows": unlabeled_rows,
        "rounds": [],
    }
    current = train
    added: dict[str, int] = dict.fromkeys(classes, 0)
    for round_number in range(settings.max_rounds):
        model, loss, accuracy = (
            fit_round(current, evaluation)
            if fit_round is not None
            else _fit_round(make_model, make_dataset, current, evaluation, config, class_weights)
        )
        record["rounds"].append(
            {
                "round": round_number,
                "pseudo_labels": sum(added.values()),
                "pseudo_labels_per_class": added,
                "eval_loss": loss,
                "eval_accuracy": accuracy,
            }
        )
        if not unlabeled_rows:
            break
        probabilities = model.predict(dict(unlabeled), verbose=0)
        rows, ids, added = select_pseudo_labels(probabilities, settings.confidence, classes)
        if not len(rows):
            record["stopped"] = f"round {round_number}: no unlabeled row reached the confidence"
            break
        picked = tf.constant(rows)
        current = (
            {
                name: tf.concat([features[name], tf.gather(unlabeled[name], picked)], axis=0)
                for name in features
            },
            np.concatenate([labels, ids]),
        )
    if record.get("stopped") or not unlabeled_rows:
        current, added = train, dict.fromkeys(classes, 0)
    record["final_pseudo_labels"] = added
    return current, record


def finish_rounds(record: dict[str, Any], eval_loss: float, eval_accuracy: float) -> dict[str, Any]:
    """Add the last round (run_train's own fit) and the gain over labelled-only training."""
    final = record["final_pseudo_labels"]
    rounds = [
        *record["rounds"],
        {
            "round": len(record["rounds"]),
            "pseudo_labels": sum(final.values()),
            "pseudo_labels_per_class": final,
            "eval_loss": float(eval_loss),
            "eval_accuracy": float(eval_accuracy),
        },
    ]
    baseline = rounds[0]
    return {
        **{k: v for k, v in record.items() if k != "final_pseudo_labels"},
        "rounds": rounds,
        "labelled_only": {k: baseline[k] for k in ("eval_loss", "eval_accuracy")},
        "gain": {
            "eval_accuracy": float(eval_accuracy) - baseline["eval_accuracy"],
            "eval_loss": float(eval_loss) - baseline["eval_loss"],
        },
    }
