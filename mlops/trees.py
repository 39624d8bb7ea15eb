"""The `gbt` model family: gradient-boosted trees fitted by scikit-learn, compiled into plain
TensorFlow ops so the exported SavedModel serves everywhere the Keras families do.

Fit: `sklearn.ensemble.GradientBoostingClassifier` on the same transformed features the Keras
families read (one float32 column per feature in name order; int64 ids become float32 numbers,
exact below 2**24, so trees split on ids as ordered codes). TFT has already filled missing numbers
(0 after z-scoring, plus a `<name>_missing` indicator) and mapped missing categories to an id, so
the trees never see NaN (GradientBoostingClassifier refuses it). Class weights as the Keras fit
uses them (`training.class_weight`), seeded by `training.seed`. The number of boosting stages is
chosen on the eval split: fitting stops when the eval loss has not improved for
`training.gbt.early_stopping_rounds` stages (sklearn's documented `monitor` hook), and the model
is refitted with the best number of stages (the first stages of a fit are the same whatever
`n_estimators` says: same seed, no subsampling).

Compile: only documented attributes are read: `estimators_[i, k].tree_` (`feature`,
`threshold`, `children_left`, `children_right`, `value`, `max_depth`), `learning_rate`,
`decision_function` and `classes_`. The node arrays of every tree become constants of a Keras
layer (non-trainable weights), padded to one node count; a leaf points to itself, so a fixed
number of steps (the deepest tree's depth) of vectorised gathers walks every row down every tree
at once. Raw scores are `init + sum of learning_rate * leaf value` per class; softmax gives
multi-class probabilities, a sigmoid the positive class of a binary task (two columns, as every
family returns). Only builtin ops (gather, compare, select, matmul, softmax), so TFLite converts
it too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlops.config import TrainingConfig

ACCURACY = "sparse_categorical_accuracy"  # the key Keras history uses, for the same curves
# The clip sklearn applies to probabilities before logs (float32 machine epsilon).
_EPS = float(np.finfo(np.float32).eps)


def feature_matrix(features: dict[str, Any], names: list[str]) -> np.ndarray:
    """Rows x features float32 matrix of transformed features (tensors or arrays), columns in
    `names` order: what the trees are fitted on and what the compiled layer builds in-graph."""
    columns = []
    for name in names:
        column = np.asarray(features[name])
        if column.ndim != 1:
            raise ValueError(
                f"transformed feature {name!r} has shape {column.shape}; the gbt family takes "
                "one value per row"
            )
        columns.append(column.astype(np.float32))
    return np.stack(columns, axis=1)


def probabilities_from_raw(raw: np.ndarray) -> np.ndarray:
    """Class probabilities (rows x classes) from raw scores: sigmoid of one column (binary) or
    softmax of one column per class, in float64."""
    raw = np.asarray(raw, dtype=np.float64)
    if raw.shape[1] == 1:
        positive = 1.0 / (1.0 + np.exp(-raw[:, 0]))
        return np.stack([1.0 - positive, positive], axis=1)
    shifted = np.exp(raw - raw.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _log_loss(probabilities: np.ndarray, labels: np.ndarray, weights: np.ndarray | None) -> float:
    picked = np.clip(probabilities[np.arange(len(labels)), labels], _EPS, 1.0)
    losses = -np.log(picked)
    if weights is None:
        return float(losses.mean())
    return float((weights * losses).sum() / weights.sum())


def _prior_raw(estimator: Any, num_classes: int) -> np.ndarray:
    """The initial raw scores from the fitted prior (`init_`, a DummyClassifier): logit of the
    positive class (binary) or log-probabilities (multi-class; softmax ignores the shift sklearn
    may apply). Used for the curves while fitting, before `decision_function` can run."""
    prior = np.clip(estimator.init_.class_prior_, _EPS, 1 - _EPS)
    if num_classes == 2:
        return np.array([np.log(prior[1] / prior[0])])
    return np.log(prior)


def _tree_outputs(estimator: Any, stage: int, X: np.ndarray) -> np.ndarray:
    """learning_rate * the stage's tree predictions, rows x trees-per-stage."""
    return estimator.learning_rate * np.stack(
        [tree.predict(X) for tree in estimator.estimators_[stage]], axis=1
    )


def _estimator(training: TrainingConfig, n_estimators: int) -> Any:
    from sklearn.ensemble import GradientBoostingClassifier

    gbt = training.gbt
    return GradientBoostingClassifier(
        n_estimators=n_estimators,
        learning_rate=gbt.learning_rate,
        max_depth=gbt.max_depth,
        min_samples_leaf=gbt.min_samples_leaf,
        subsample=1.0,  # no row sampling: the refit repeats the first stages exactly
        random_state=training.seed,
    )


def fit_gbt(
    train: tuple[np.ndarray, np.ndarray],
    evaluation: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    training: TrainingConfig,
    class_weights: dict[int, float] | None,
) -> tuple[Any, dict[str, list[float]], int]:
    """Fit on `train` (matrix, label ids), choosing the number of stages on `evaluation`.

    Returns (the estimator with the best number of stages, per-stage curves as Keras history
    names them: `loss`, `val_loss`, `sparse_categorical_accuracy`,
    `val_sparse_categorical_accuracy` for every stage fitted, the stages fitted). The train loss is
    weighted by the class weights (the objective), eval loss and accuracies are not, as in Keras.
    """
    X, y = train
    X_eval, y_eval = evaluation
    present = np.unique(y)
    if len(present) != num_classes:
        missing = sorted(set(range(num_classes)) - set(present.tolist()))
        raise ValueError(
            f"the gbt family needs every class in the train rows; class ids {missing} have none"
        )
    weights = (
        np.array([class_weights[int(label)] for label in y], dtype=np.float64)
        if class_weights
        else None
    )
    patience = training.gbt.early_stopping_rounds
    curves: dict[str, list[float]] = {
        "loss": [],
        ACCURACY: [],
        "val_loss": [],
        f"val_{ACCURACY}": [],
    }
    raw: dict[str, np.ndarray] = {}

    def monitor(stage: int, estimator: Any, _locals: Any) -> bool:
        # sklearn calls this after each stage; True stops the fit.
        for split, matrix, labels, w in (
            ("train", X, y, weights),
            ("eval", X_eval, y_eval, None),
        ):
            if stage == 0:
                raw[split] = np.tile(_prior_raw(estimator, num_classes), (len(matrix), 1))
            raw[split] = raw[split] + _tree_outputs(estimator, stage, matrix)
            probabilities = probabilities_from_raw(raw[split])
            prefix = "" if split == "train" else "val_"
            curves[f"{prefix}loss"].append(_log_loss(probabilities, labels, w))
            curves[f"{prefix}{ACCURACY}"].append(
                float((probabilities.argmax(axis=1) == labels).mean())
            )
        best = int(np.argmin(curves["val_loss"]))
        return stage - best >= patience

    _estimator(training, training.gbt.n_estimators).fit(
        X, y, sample_weight=weights, monitor=monitor
    )
    stages_fitted = len(curves["val_loss"])
    best_stages = int(np.argmin(curves["val_loss"])) + 1
    final = _estimator(training, best_stages).fit(X, y, sample_weight=weights)
    return final, curves, stages_fitted


def tree_arrays(estimator: Any, num_features: int) -> dict[str, np.ndarray]:
    """Every tree of a fitted GradientBoostingClassifier as padded node arrays (trees x nodes)
    plus the initial raw scores and each tree's class column. A leaf's children are itself;
    thresholds are rounded down to float32, so `x <= threshold` in float32 decides as sklearn
    does in float64 for every float32 x."""
    trees = [tree for stage in estimator.estimators_ for tree in stage]
    per_stage = estimator.estimators_.shape[1]
    nodes = max(tree.tree_.node_count for tree in trees)
    count = len(trees)
    feature = np.zeros((count, nodes), np.int32)
    threshold = np.zeros((count, nodes), np.float32)
    left = np.tile(np.arange(nodes, dtype=np.int32), (count, 1))
    right = left.copy()
    value = np.zeros((count, nodes), np.float32)
    for t, tree in enumerate(trees):
        arrays = tree.tree_
        n = arrays.node_count
        split = arrays.children_left[:n] >= 0
        feature[t, :n] = np.where(split, arrays.feature[:n], 0)
        down = np.where(split, arrays.threshold[:n], 0.0)
        as32 = down.astype(np.float32)
        # float32 rounding may land above the float64 threshold: step one ulp down then.
        as32 = np.where(as32.astype(np.float64) > down, np.nextafter(as32, -np.inf), as32)
        threshold[t, :n] = as32
        nodes_t = np.arange(n, dtype=np.int32)
        left[t, :n] = np.where(split, arrays.children_left[:n], nodes_t)
        right[t, :n] = np.where(split, arrays.children_right[:n], nodes_t)
        value[t, :n] = estimator.learning_rate * arrays.value[:n, 0, 0]
    if int(feature.max(initial=0)) >= num_features:
        raise ValueError(
            f"the trees split on feature {int(feature.max())}, but the model has {num_features}"
        )
    # The initial scores from the public decision_function: its value on one row minus that
    # row's tree outputs (the prior is the same for every row).
    probe = np.zeros((1, num_features), np.float32)
    leaves = np.stack(
        [tree.predict(probe) for stage in estimator.estimators_ for tree in stage], axis=1
    )
    outputs = (estimator.learning_rate * leaves).reshape(1, -1, per_stage).sum(axis=1)
    decision = np.asarray(estimator.decision_function(probe), np.float64).reshape(1, per_stage)
    init = (decision - outputs)[0]
    return {
        "feature": feature,
        "threshold": threshold,
        "left": left,
        "right": right,
        "value": value,
        "tree_class": np.tile(np.arange(per_stage, dtype=np.int32), len(estimator.estimators_)),
        "init": init.astype(np.float32),
        "depth": np.array(max(tree.tree_.max_depth for tree in trees), np.int32),
    }


def _tree_layer_class() -> Any:
    import keras
    import tensorflow as tf

    class GradientBoostedTrees(keras.layers.Layer):
        """Class probabilities from a feature matrix (rows x features, float32) by walking
        every tree with gathers; node arrays are non-trainable weights."""

        def __init__(self, arrays: dict[str, np.ndarray], **kwargs: Any) -> None:
            super().__init__(trainable=False, **kwargs)
            self.depth = int(arrays["depth"])
            self.binary = int(arrays["init"].shape[0]) == 1
            trees, self.nodes = arrays["feature"].shape
            per_tree = int(arrays["init"].shape[0])

            def constant(name: str, value: np.ndarray, dtype: str) -> Any:
                return self.add_weight(
                    name=name,
                    shape=value.shape,
                    dtype=dtype,
                    initializer=keras.initializers.Constant(value),
                    trainable=False,
                )

            flat = {k: arrays[k].reshape(-1) for k in ("feature", "threshold", "left", "right")}
            self.feature = constant("feature", flat["feature"], "int32")
            self.threshold = constant("threshold", flat["threshold"], "float32")
            self.left = constant("left", flat["left"], "int32")
            self.right = constant("right", flat["right"], "int32")
            self.value = constant("value", arrays["value"].reshape(-1), "float32")
            # Tree -> class column: raw scores are leaf values times this one-hot matrix.
            one_hot = np.eye(per_tree, dtype=np.float32)[arrays["tree_class"]]
            self.tree_class = constant("tree_class", one_hot, "float32")
            self.init = constant("init", arrays["init"], "float32")
            self.offsets = constant(
                "offsets", np.arange(trees, dtype=np.int32) * self.nodes, "int32"
            )

        def call(self, matrix: Any) -> Any:
            rows = tf.shape(matrix)[0]
            offsets = tf.convert_to_tensor(self.offsets)
            node = tf.tile(offsets[tf.newaxis, :], [rows, 1])  # rows x trees, flat node ids
            for _ in range(self.depth):
                column = tf.gather(self.feature, node)
                x = tf.gather(matrix, column, axis=1, batch_dims=1)
                go_left = x <= tf.gather(self.threshold, node)
                child = tf.where(go_left, tf.gather(self.left, node), tf.gather(self.right, node))
                node = child + offsets[tf.newaxis, :]
            raw = tf.matmul(tf.gather(self.value, node), self.tree_class) + self.init
            if self.binary:
                positive = tf.sigmoid(raw)
                return tf.concat([1.0 - positive, positive], axis=1)
            return tf.nn.softmax(raw, axis=1)

    return GradientBoostedTrees


def compile_gbt(estimator: Any, transformed_spec: dict[str, Any], num_classes: int) -> Any:
    """A Keras model over the transformed features named in `transformed_spec` (an integer
    input where its tensor or array is integer, float32 otherwise) that computes the fitted
    estimator's class probabilities with TensorFlow ops only."""
    import keras
    import tensorflow as tf

    names = sorted(transformed_spec)
    if len(estimator.classes_) != num_classes or list(estimator.classes_) != list(
        range(num_classes)
    ):
        raise ValueError(
            f"the fitted trees know classes {list(estimator.classes_)}; expected ids 0..{num_classes - 1}"
        )
    arrays = tree_arrays(estimator, len(names))
    inputs = {}
    for name in names:
        dtype = tf.as_dtype(getattr(transformed_spec[name], "dtype", tf.float32))
        inputs[name] = keras.Input(
            shape=(), dtype="int64" if dtype.is_integer else "float32", name=name
        )
    columns = [
        keras.layers.Reshape((1,), name=f"col_{name}")(
            keras.ops.cast(inputs[name], "float32")
            if inputs[name].dtype != "float32"
            else inputs[name]
        )
        for name in names
    ]
    matrix = keras.layers.Concatenate(name="features")(columns) if len(columns) > 1 else columns[0]
    probabilities = _tree_layer_class()(arrays, name="probabilities")(matrix)
    model = keras.Model(inputs=inputs, outputs=probabilities, name="gbt")
    model.compile(loss="sparse_categorical_crossentropy", metrics=[ACCURACY])
    return model


def gbt_summary(estimator: Any, stages_fitted: int) -> dict[str, Any]:
    """What the exported trees are: stages kept (of those fitted), trees, nodes, depth."""
    trees = [tree for stage in estimator.estimators_ for tree in stage]
    return {
        "stages": int(estimator.estimators_.shape[0]),
        "stages_fitted": int(stages_fitted),
        "trees": len(trees),
        "nodes": int(sum(tree.tree_.node_count for tree in trees)),
        "max_depth": int(max(tree.tree_.max_depth for tree in trees)),
        "learning_rate": float(estimator.learning_rate),
    }


def train_gbt(
    train: tuple[dict[str, Any], np.ndarray],
    evaluation: tuple[dict[str, Any], np.ndarray],
    num_classes: int,
    training: TrainingConfig,
    class_weights: dict[int, float] | None,
    log_dir: str | None = None,
) -> dict[str, Any]:
    """The gbt family as the training step fits a family: fitted on the transformed train
    features, stages chosen on eval, compiled; eval loss and accuracy from the compiled model
    (as Keras evaluates the other families); the curves go to TensorBoard under `log_dir` when
    given. Returns {"model", "curves", "eval_loss",
    "eval_accuracy", "epochs_run" (stages fitted), "gbt" (what the trees are)}."""
    names = sorted(train[0])
    estimator, curves, fitted = fit_gbt(
        (feature_matrix(train[0], names), np.asarray(train[1])),
        (feature_matrix(evaluation[0], names), np.asarray(evaluation[1])),
        num_classes,
        training,
        class_weights,
    )
    if log_dir:
        write_tensorboard(curves, log_dir)
    model = compile_gbt(estimator, train[0], num_classes)
    eval_loss, eval_accuracy = model.evaluate(
        dict(evaluation[0]), np.asarray(evaluation[1]), batch_size=1024, verbose=0
    )
    return {
        "model": model,
        "curves": curves,
        "eval_loss": float(eval_loss),
        "eval_accuracy": float(eval_accuracy),
        "epochs_run": fitted,
        "gbt": gbt_summary(estimator, fitted),
    }


def write_tensorboard(curves: dict[str, list[float]], log_dir: str) -> None:
    """The per-stage curves as TensorBoard scalars, where and as Keras' TensorBoard callback
    writes them (`train/` and `validation/`, `epoch_loss` and `epoch_accuracy`, one step per
    stage), so a Vertex AI TensorBoard shows trees and networks alike."""
    import tensorflow as tf

    for run, prefix in (("train", ""), ("validation", "val_")):
        writer = tf.summary.create_file_writer(f"{log_dir.rstrip('/')}/{run}")
        with writer.as_default():
            for step, (loss, accuracy) in enumerate(
                zip(curves[f"{prefix}loss"], curves[f"{prefix}{ACCURACY}"], strict=True)
            ):
                tf.summary.scalar("epoch_loss", loss, step=step)
                tf.summary.scalar("epoch_accuracy", accuracy, step=step)
        writer.close()
