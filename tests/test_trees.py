"""The gbt family (mlops/trees.py): scikit-learn's boosted trees compiled into TensorFlow ops give
sklearn's probabilities, and the exported SavedModel serves them from raw features."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mlops.config import ConfigError, GbtConfig, TrainingConfig, load_config
from mlops.trees import compile_gbt, feature_matrix, fit_gbt, tree_arrays
from tests.conftest import assert_load_refused

NAMES = ["a_z", "b_z", "c_id"]


def _frame(n: int, classes: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Transformed-looking features (two float32 numbers, an int64 id) and a label that needs
    several splits per tree."""
    rng = np.random.default_rng(seed)
    features = {
        "a_z": rng.normal(size=n).astype(np.float32),
        "b_z": rng.normal(size=n).astype(np.float32),
        "c_id": rng.integers(0, 6, n).astype(np.int64),
    }
    score = features["a_z"] + 0.4 * features["c_id"] + rng.normal(scale=0.6, size=n)
    labels = (score > 1.0).astype(np.int64)
    if classes == 3:
        labels = labels + (features["b_z"] > 0.3)
    return features, labels


def _boundary_rows(estimator, base: np.ndarray, integer_columns: set[int]) -> np.ndarray:
    """For split nodes of the first trees: rows whose number sits exactly on the float32
    threshold (goes left), one float32 step above it (right) and below it (left); for an id
    column the ids on either side."""
    arrays = tree_arrays(estimator, base.shape[1])
    rows = []
    for t in range(min(5, arrays["feature"].shape[0])):
        for node in range(arrays["feature"].shape[1]):
            if arrays["left"][t, node] == node:  # a leaf (or padding)
                continue
            column = int(arrays["feature"][t, node])
            threshold = np.float32(arrays["threshold"][t, node])
            if column in integer_columns:
                values = [np.floor(threshold), np.floor(threshold) + 1]
            else:
                values = [
                    threshold,
                    np.nextafter(threshold, np.float32(np.inf)),
                    np.nextafter(threshold, np.float32(-np.inf)),
                ]
            for x in values:
                row = base[len(rows) % len(base)].copy()
                row[column] = x
                rows.append(row)
    return np.stack(rows)


@pytest.mark.parametrize("classes", [3, 2])
def test_compiled_trees_give_sklearn_probabilities(classes: int) -> None:
    features, labels = _frame(700, classes)
    X = feature_matrix(features, NAMES)
    training = TrainingConfig(model="gbt", gbt=GbtConfig(n_estimators=80, max_depth=4))
    weights = {c: 1.0 + c for c in range(classes)}
    estimator, curves, fitted = fit_gbt(
        (X[:400], labels[:400]), (X[400:550], labels[400:550]), classes, training, weights
    )
    # The curves are sklearn's own staged figures: eval loss at the kept stage is log_loss there.
    from sklearn.metrics import log_loss

    staged = list(estimator.staged_predict_proba(X[400:550]))
    assert len(staged) == int(np.argmin(curves["val_loss"])) + 1 <= fitted
    assert curves["val_loss"][len(staged) - 1] == pytest.approx(
        log_loss(labels[400:550], staged[-1], labels=list(range(classes))), rel=1e-9
    )
    model = compile_gbt(estimator, features, classes)
    held_out = X[550:]
    edges = _boundary_rows(estimator, held_out, {NAMES.index("c_id")})
    rows = np.concatenate([held_out, edges])
    inputs = {name: rows[:, i].astype(features[name].dtype) for i, name in enumerate(NAMES)}
    # ids round-trip exactly through float32 (the trees see them as numbers)
    np.testing.assert_array_equal(inputs["c_id"].astype(np.float32), rows[:, 2])
    compiled = model.predict(inputs, verbose=0)
    expected = estimator.predict_proba(rows)
    assert compiled.shape == (len(rows), classes)
    np.testing.assert_allclose(compiled, expected, atol=1e-5, rtol=0)
    # Every boundary row lands in sklearn's leaf: same leaf in every tree, so same scores.
    assert len(edges) > 30


def test_threshold_rounding_keeps_sklearns_side() -> None:
    from sklearn.ensemble import GradientBoostingClassifier

    # Two float32 neighbours (odd, even last mantissa bit): sklearn splits at their float64
    # midpoint, which a plain float32 cast rounds (half to even) up onto the upper value, so
    # `high <= threshold` would send `high` left. Rounded down, it goes right as in sklearn.
    low = np.nextafter(np.float32(1000.0), np.float32(np.inf))
    high = np.nextafter(low, np.float32(np.inf))
    X = np.array([[low]] * 10 + [[high]] * 10, dtype=np.float32)
    y = np.array([0] * 10 + [1] * 10)
    estimator = GradientBoostingClassifier(n_estimators=3, max_depth=1).fit(X, y)
    split = estimator.estimators_[0, 0].tree_.threshold[0]
    assert np.float32(split) == high  # the case this test is about
    arrays = tree_arrays(estimator, 1)
    assert arrays["threshold"][0, 0] == low
    model = compile_gbt(estimator, {"x": X[:, 0]}, 2)
    np.testing.assert_allclose(
        model.predict({"x": X[:, 0]}, verbose=0), estimator.predict_proba(X), atol=1e-6
    )
    assert (model.predict({"x": X[:, 0]}, verbose=0).argmax(axis=1) == y).all()


def test_fit_stops_when_eval_loss_stops_improving() -> None:
    features, labels = _frame(500, 2, seed=1)
    X = feature_matrix(features, NAMES)
    training = TrainingConfig(
        model="gbt", gbt=GbtConfig(n_estimators=2000, learning_rate=0.5, early_stopping_rounds=5)
    )
    estimator, curves, fitted = fit_gbt(
        (X[:300], labels[:300]), (X[300:], labels[300:]), 2, training, None
    )
    best = int(np.argmin(curves["val_loss"]))
    assert fitted == best + 1 + 5 < 2000  # stopped five stages after the best
    assert estimator.estimators_.shape[0] == best + 1
    assert set(curves) == {
        "loss",
        "val_loss",
        "sparse_categorical_accuracy",
        "val_sparse_categorical_accuracy",
    }
    assert all(len(values) == fitted for values in curves.values())


def test_fit_refuses_a_class_without_train_rows() -> None:
    features, labels = _frame(100, 2)
    X = feature_matrix(features, NAMES)
    with pytest.raises(ValueError, match=r"class ids \[2\] have none"):
        fit_gbt((X, labels), (X, labels), 3, TrainingConfig(model="gbt"), None)


# --- config ---------------------------------------------------------------------------------


def _config_file(tmp_path: Path, training: str, extra: str = "") -> Path:
    from mlops.config import CONFIG_DIR

    text = (CONFIG_DIR / "penguins.yaml").read_text()
    text = text.replace("training:\n", f"training:\n{training}", 1) + extra
    path = tmp_path / "gbt.yaml"
    path.write_text(text)
    return path


def test_gbt_config_loads_and_compares_with_keras_families(tmp_path: Path) -> None:
    path = _config_file(
        tmp_path,
        "  model: gbt\n  gbt: {n_estimators: 50, max_depth: 4, learning_rate: 0.2, "
        "min_samples_leaf: 3}\n  compare_families: [dnn, gbt]\n",
    )
    training = load_config(path).training
    assert training.gbt == GbtConfig(
        n_estimators=50, max_depth=4, learning_rate=0.2, min_samples_leaf=3
    )
    assert training.families == ["dnn", "gbt"]


@pytest.mark.parametrize(
    ("training", "extra", "expected"),
    [
        ("  model: gbt\n  gbt: {max_depth: 0}\n", "", ["training.gbt.max_depth", "0"]),
        ("  model: gbt\n  gbt: {n_trees: 5}\n", "", ["training.gbt.n_trees", "Extra inputs"]),
        ("  model: gbt\n  warm_start: true\n", "", ["training.warm_start", "warm_start: false"]),
        (
            "  compare_families: [linear, gbt]\n  warm_start: true\n",
            "",
            ["compare_families includes gbt", "warm_start"],
        ),
        (
            "  model: gbt\n",
            "tuning:\n  enabled: true\n  search_space:\n"
            "    learning_rate: {type: double, min: 0.01, max: 0.1}\n",
            ["tuning.enabled with training.model gbt", "training.gbt by hand"],
        ),
    ],
)
def test_nonsense_gbt_combinations_are_refused_at_load(
    tmp_path: Path, training: str, extra: str, expected: list[str]
) -> None:
    path = _config_file(tmp_path, training, extra)
    assert_load_refused(path, expected)


def test_several_training_replicas_are_refused_with_gbt(tmp_path: Path) -> None:
    path = _config_file(tmp_path, "  model: gbt\n")
    body = path.read_text().replace(
        "    machine_type: n1-standard-4\n",
        "    machine_type: n1-standard-4\n    replica_count: 2\n",
    )
    path.write_text(body)
    with pytest.raises(ConfigError, match="replica_count is 2 and training fits gbt"):
        load_config(path)


def test_fit_diagnosis_speaks_of_stages_for_trees() -> None:
    from mlops.fit_diagnosis import GBT_WORDS, diagnose_fit

    falling = [1.0 - 0.01 * i for i in range(50)]
    curves = {"loss": falling, "val_loss": falling}
    result = diagnose_fit(curves, 50, {"loss": 1.1, "accuracy": 0.5}, words=GBT_WORDS)
    assert result["verdict"] == "still improving"
    assert "50 stages" in result["text"] and "training.gbt.n_estimators" in result["text"]


# --- penguins, through the training step and the exported SavedModel -------------------------


@pytest.fixture(scope="module")
def penguins_gbt(tmp_path_factory):
    """ingest -> transform -> train comparing linear (2 epochs) with gbt on penguins."""
    from components.ingest import run_ingest
    from components.train import run_train
    from components.transform import run_transform
    from tests.conftest import config_in

    tmp = tmp_path_factory.mktemp("gbt")
    config = config_in(tmp, "penguins")
    training = {
        **config.training.model_dump(),
        "compare_families": ["linear", "gbt"],
        "epochs": 2,
        "gbt": {"n_estimators": 150},
    }
    config = config.with_overrides(training=training)
    paths = {name: tmp / name for name in ("data", "transform", "model", "logs")}
    run_ingest(config, paths["data"])
    run_transform(config, paths["data"], paths["transform"])
    summary = run_train(config, paths["data"], paths["transform"], paths["model"], paths["logs"])
    return config, paths, summary


def _transformed(config, transform_dir, frame) -> dict[str, np.ndarray]:
    import tensorflow as tf
    import tensorflow_transform as tft

    from mlops.features import frame_to_arrays, to_model_inputs

    layer = tft.TFTransformOutput(str(transform_dir)).transform_features_layer()
    raw = to_model_inputs(frame_to_arrays(frame, config.features), config.features)
    out = layer({name: tf.constant(values) for name, values in raw.items()})
    return {name: np.asarray(tensor) for name, tensor in out.items()}


def test_penguins_gbt_serves_raw_rows_with_sklearns_probabilities(penguins_gbt, tmp_path) -> None:
    import pandas as pd
    import tensorflow as tf

    from components.train import class_weights
    from mlops.artifacts import read_label_classes, read_model_info, read_split
    from mlops.features import encode_labels, frame_to_arrays

    config, paths, summary = penguins_gbt
    info = read_model_info(paths["model"])
    assert info["model_family"] == "gbt"  # 2 linear epochs cannot match the trees on eval
    assert info["gbt"]["stages"] <= info["gbt"]["stages_fitted"] <= 150
    assert len(info["curves"]["val_loss"]) == info["epochs_run"] == info["gbt"]["stages_fitted"]
    assert info["fit_diagnosis"]["numbers"]["epochs_configured"] == 150  # gbt.n_estimators
    # TensorBoard has one eval loss per stage (beside the linear family's two epochs).
    from tensorflow.core.util import event_pb2

    steps = set()
    for path in (paths["logs"] / "validation").glob("events.out.tfevents*"):
        for record in tf.data.TFRecordDataset(str(path)):
            event = event_pb2.Event.FromString(record.numpy())
            if any(value.tag == "epoch_loss" for value in event.summary.value):
                steps.add(event.step)
    assert steps >= set(range(info["gbt"]["stages_fitted"]))

    # The same trees, refitted here on the same transformed rows (deterministic: same seed).
    classes = read_label_classes(paths["transform"])
    label = config.data.label
    splits = {}
    for split in ("train", "eval", "test"):
        frame = read_split(paths["data"], split)
        features = _transformed(config, paths["transform"], frame)
        splits[split] = (frame, features, encode_labels(frame[label].tolist(), classes, split))
    names = sorted(splits["train"][1])
    train, evaluation = (
        (feature_matrix(splits[s][1], names), splits[s][2]) for s in ("train", "eval")
    )
    estimator, _, _ = fit_gbt(
        train,
        evaluation,
        len(classes),
        config.training,
        class_weights(train[1], len(classes)),
    )
    assert estimator.estimators_.shape[0] == info["gbt"]["stages"]

    # Test rows plus rows with missing values as a client sends them (NaN, "").
    test = splits["test"][0]
    gaps = test.head(4).copy()
    gaps.loc[gaps.index[0], "bill_length_mm"] = math.nan
    gaps.loc[gaps.index[1], ["island", "sex"]] = None
    gaps.loc[gaps.index[2], config.features.numeric] = math.nan
    gaps.loc[gaps.index[3], "sex"] = None
    rows = pd.concat([test, gaps], ignore_index=True)
    loaded = tf.saved_model.load(str(paths["model"]))
    raw = {k: tf.constant(v) for k, v in frame_to_arrays(rows, config.features).items()}
    served = loaded.signatures["serving_default"](**raw)["probabilities"].numpy()
    expected = estimator.predict_proba(
        feature_matrix(_transformed(config, paths["transform"], rows), names)
    )
    np.testing.assert_allclose(served, expected, atol=1e-5, rtol=0)
    accuracy = float((served[: len(test)].argmax(axis=1) == splits["test"][2]).mean())
    assert accuracy >= 0.9
    # The tf.Example signature (what TFMA and batch jobs read) gives the same probabilities.
    from components.evaluate import write_examples

    records = tmp_path / "rows.tfrecord"
    write_examples(config, rows, classes, records)
    examples = tf.constant([r.numpy() for r in tf.data.TFRecordDataset(str(records))])
    from_examples = loaded.signatures["serving_tf_example"](examples=examples)["probabilities"]
    np.testing.assert_allclose(from_examples.numpy(), served, atol=1e-6, rtol=0)


def test_report_compares_gbt_with_the_keras_family(penguins_gbt) -> None:
    from components.report import modelling_html
    from mlops.artifacts import read_model_info

    _, paths, summary = penguins_gbt
    rows = {row["family"]: row for row in summary["family_comparison"]}
    assert set(rows) == {"linear", "gbt"} and rows["gbt"]["chosen"]
    assert rows["gbt"]["params"] > 0  # node arrays, counted as (non-trainable) parameters
    page = modelling_html(read_model_info(paths["model"]))
    assert "<b>gbt</b>" in page and "<td>gbt</td>" in page and "<td>linear</td>" in page


@pytest.mark.slow
def test_self_training_refits_the_trees_each_round(tmp_path) -> None:
    """Self-training with gbt: every round is a tree fit on the labelled rows plus the previous
    round's pseudo-labels (85% of penguins' train labels blanked)."""
    from components.ingest import run_ingest
    from components.train import run_train
    from components.transform import run_transform
    from mlops.artifacts import read_model_info
    from tests.test_self_training import _penguins_with_blank_train_labels

    config, _, blanked = _penguins_with_blank_train_labels(tmp_path, 0.85)
    training = {**config.training.model_dump(), "model": "gbt", "gbt": {"n_estimators": 100}}
    config = config.with_overrides(training=training)
    run_ingest(config, tmp_path / "data")
    run_transform(config, tmp_path / "data", tmp_path / "transform")
    result = run_train(config, tmp_path / "data", tmp_path / "transform", tmp_path / "model")
    info = read_model_info(tmp_path / "model")
    assert info["model_family"] == "gbt"
    rounds = info["self_training"]["rounds"]
    assert rounds[0]["pseudo_labels"] == 0 and rounds[1]["pseudo_labels"] > 0
    assert all(r["pseudo_labels"] <= blanked for r in rounds)
    assert rounds[-1]["eval_accuracy"] == pytest.approx(result["eval_accuracy"])
    assert result["eval_accuracy"] >= 0.9
