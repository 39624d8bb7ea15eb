"""Pick a tf.distribute strategy from the hardware and cluster the process finds, and the few
things training does differently under several workers (sharding, batch size, who saves)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MULTI_WORKER = "MultiWorkerMirroredStrategy"


def _tf_config(environ: dict[str, str] | None) -> dict[str, Any]:
    environ = dict(os.environ if environ is None else environ)
    text = environ.get("TF_CONFIG", "") or "{}"
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"TF_CONFIG is not JSON ({exc}): {text[:200]!r}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object with 'cluster' and 'task'; got {text!r}")
    return parsed


def choose_strategy(environ: dict[str, str] | None = None) -> tuple[Any, str]:
    """TPU if one is attached, multi-worker when TF_CONFIG names a cluster (Vertex sets it for
    multi-replica worker pools), mirrored over several local GPUs, else the default strategy.

    Call it before any other TensorFlow op runs: MultiWorkerMirroredStrategy configures the
    collective ops of the process and refuses once the eager context exists."""
    import tensorflow as tf

    env = dict(os.environ if environ is None else environ)
    if env.get("TPU_NAME") or env.get("COLAB_TPU_ADDR"):
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver), "TPUStrategy"
    cluster = _tf_config(env).get("cluster", {})
    if sum(len(tasks) for tasks in cluster.values()) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy(), MULTI_WORKER
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy(), f"MirroredStrategy({len(gpus)} GPUs)"
    device = "GPU" if gpus else "CPU"
    return tf.distribute.get_strategy(), f"default ({device})"


def is_chief(environ: dict[str, str] | None = None) -> bool:
    """Whether this process writes the shared outputs: the `chief` task, or worker 0 of a
    cluster without a chief, or a process with no cluster at all."""
    config = _tf_config(environ)
    task = config.get("task") or {}
    cluster = config.get("cluster") or {}
    kind = task.get("type")
    if kind is None or kind == "chief":
        return True
    return kind == "worker" and int(task.get("index", 0)) == 0 and "chief" not in cluster


def global_batch_size(per_replica: int, strategy: Any) -> int:
    """The batch the input pipeline yields: `per_replica` examples for every replica in sync, so
    each replica sees the configured batch size whatever the number of workers (and a single
    process is unchanged)."""
    return per_replica * int(getattr(strategy, "num_replicas_in_sync", 1))


def shard_by_data(dataset: Any) -> Any:
    """Shard an in-memory dataset by element: the default (AUTO) policy tries to shard by file,
    finds none in a `from_tensor_slices` dataset and falls back with a warning on every call."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def input_dataset(
    features: dict[str, Any],
    labels: Any,
    batch_size: int,
    strategy: Any,
    shuffle: bool,
    seed: int,
) -> Any:
    """The tf.data pipeline training reads: in-memory tensors, reshuffled every epoch when
    `shuffle`, batched to the global batch, prefetched, sharded by element across workers."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((dict(features), labels))
    if shuffle:
        dataset = dataset.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    batched = dataset.batch(global_batch_size(batch_size, strategy))
    return shard_by_data(batched.prefetch(tf.data.AUTOTUNE))


@contextmanager
def save_dir(
    model_dir: Path | str, write: Any, environ: dict[str, str] | None = None
) -> Iterator[Path]:
    """Where this process saves the model. Every worker must save (saving a distributed model
    may run collective ops that wait for all of them), but only the chief's copy is kept: the
    chief saves through `write(model_dir)` (e.g. `mlops.io.atomic_dir`), the others into a
    temporary directory that is deleted afterwards. Yields the directory to save into."""
    if is_chief(environ):
        with write(model_dir) as out:
            yield out
        return
    scratch = Path(tempfile.mkdtemp(prefix="mlops-nonchief-model-"))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _History:
    """What `model.fit` returns, as far as run_train reads it."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}


def _epoch_sums(model: Any, strategy: Any, class_weight: dict[int, float] | None) -> Any:
    """Two tf.functions (by `training`: True also applies the gradients) running one step on
    every replica; each returns the batch's (weighted loss sum,
    unweighted loss sum, correct predictions, rows), summed over all replicas of all workers."""
    import keras
    import tensorflow as tf

    weights = None
    if class_weight:
        weights = tf.constant([class_weight[i] for i in range(len(class_weight))], tf.float32)

    def replica_step(features: Any, labels: Any, training: bool) -> tuple[Any, ...]:
        labels = tf.cast(labels, tf.int64)
        with tf.GradientTape() as tape:
            probabilities = model(features, training=training)
            per_row = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
            row_weights = tf.gather(weights, labels) if weights is not None else None
            # Mean over the global batch (per-replica rows x replicas), as Keras' fit scales it.
            loss = tf.nn.compute_average_loss(per_row, sample_weight=row_weights)
        if training:
            gradients = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        weighted = per_row * row_weights if row_weights is not None else per_row
        correct = tf.cast(tf.equal(tf.argmax(probabilities, axis=1), labels), tf.float32)
        rows = tf.cast(tf.shape(labels)[0], tf.float32)
        return (tf.reduce_sum(weighted), tf.reduce_sum(per_row), tf.reduce_sum(correct), rows)

    def distributed(training: bool) -> Any:
        @tf.function
        def step(features: Any, labels: Any) -> list[Any]:
            sums = strategy.run(lambda f, y: replica_step(f, y, training), args=(features, labels))
            return [strategy.reduce("SUM", value, axis=None) for value in sums]

        return step

    return {True: distributed(True), False: distributed(False)}


def _run_epoch(step: Any, distributed: Any, training: bool) -> tuple[float, float, float]:
    """(weighted mean loss, unweighted mean loss, accuracy) over one pass of `distributed`."""
    totals = [0.0, 0.0, 0.0, 0.0]
    for features, labels in distributed:
        for i, value in enumerate(step[training](features, labels)):
            totals[i] += float(value)
    rows = max(totals[3], 1.0)
    return totals[0] / rows, totals[1] / rows, totals[2] / rows


def fit_across_workers(
    model: Any,
    strategy: Any,
    train: Any,
    validation_data: Any,
    epochs: int,
    class_weight: dict[int, float] | None = None,
    callbacks: Sequence[Any] = (),
    verbose: int = 0,
) -> _History:
    """`model.fit` for MultiWorkerMirroredStrategy as a custom loop: Keras 3's fit cannot run
    under it (keras-team/keras#20585: fit all-reduces the first batch as a nest, which the
    collective strategy does not support). Same contract as run_train uses: class weights on
    the train loss, validation metrics after every epoch, Keras callbacks (EarlyStopping with
    restore_best_weights) driven per epoch. Every worker sees the same all-reduced metrics, so
    every worker stops at the same epoch and restores the same weights."""
    import keras

    del verbose
    history = _History()
    if not is_chief():  # one TensorBoard writer: workers would write the same logs over it
        callbacks = [c for c in callbacks if not isinstance(c, keras.callbacks.TensorBoard)]
    callback_list = keras.callbacks.CallbackList(list(callbacks), model=model)
    step = _epoch_sums(model, strategy, class_weight)
    train_batches = strategy.experimental_distribute_dataset(train)
    eval_batches = strategy.experimental_distribute_dataset(validation_data)
    model.stop_training = False
    callback_list.on_train_begin()
    for epoch in range(epochs):
        callback_list.on_epoch_begin(epoch)
        loss, _, accuracy = _run_epoch(step, train_batches, training=True)
        _, val_loss, val_accuracy = _run_epoch(step, eval_batches, training=False)
        logs = {
            "loss": loss,
            "sparse_categorical_accuracy": accuracy,
            "val_loss": val_loss,
            "val_sparse_categorical_accuracy": val_accuracy,
        }
        for key, value in logs.items():
            history.history.setdefault(key, []).append(value)
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end()
    return history


def evaluate_across_workers(model: Any, strategy: Any, dataset: Any) -> tuple[float, float]:
    """(loss, accuracy) of `model` on `dataset`, all workers together (see fit_across_workers)."""
    step = _epoch_sums(model, strategy, None)
    _, loss, accuracy = _run_epoch(step, strategy.experimental_distribute_dataset(dataset), False)
    return loss, accuracy
