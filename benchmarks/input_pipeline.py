"""Training input throughput: the tf.data pipeline training reads (`mlops.distribute.
input_dataset`: in-memory tensors, reshuffled each epoch, batched, prefetched) against a plain
in-memory loop that shuffles an index and slices the same numpy arrays batch by batch.

    .venv/bin/python benchmarks/input_pipeline.py [--rows 1000000] [--batch-size 64] [--epochs 3]

The arrays have the penguins transformed features' shapes and types (float32 columns, int64 ids)
repeated to --rows. Both loops hand every batch to the same consumer (a sum over one column, so
no batch can be skipped) and run after TensorFlow is imported and the first epoch is warmed up.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _arrays(rows: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Columns like penguins' transformed features: z-scores, missing flags, vocabulary ids."""
    rng = np.random.default_rng(seed)
    features: dict[str, np.ndarray] = {}
    for name in ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"):
        features[f"{name}_z"] = rng.standard_normal(rows).astype(np.float32)
        features[f"{name}_missing"] = (rng.random(rows) < 0.01).astype(np.float32)
    for name, size in (("island_id", 3), ("sex_id", 3), ("body_mass_g_bucket", 4), ("cross", 16)):
        features[name] = rng.integers(0, size, rows, dtype=np.int64)
    return features, rng.integers(0, 3, rows, dtype=np.int64)


def _tf_data_epoch(dataset) -> float:
    """Iterated from Python, one eager batch at a time (how a custom loop reads it)."""
    total = 0.0
    for features, _ in dataset:
        total += float(features["year_z"].numpy()[0])
    return total


def _tf_data_in_graph_epoch(dataset) -> float:
    """Consumed inside the graph, as Keras' fit reads it (one tf.function over the iterator)."""
    return float(dataset.reduce(0.0, lambda total, batch: total + batch[0]["year_z"][0]))


def _gather_dataset(tensors: dict, labels: np.ndarray, batch_size: int, seed: int):
    """The same epochs built batch-wise: shuffle row indices, gather a whole batch per step
    (one op per column and batch instead of one slice per row)."""
    import tensorflow as tf

    label_tensor = tf.constant(labels)

    def gather(rows):
        return {k: tf.gather(v, rows) for k, v in tensors.items()}, tf.gather(label_tensor, rows)

    return (
        tf.data.Dataset.range(len(labels))
        .shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .map(gather)
        .prefetch(tf.data.AUTOTUNE)
    )


def _in_memory_epoch(features, labels, batch_size: int, rng: np.random.Generator) -> float:
    order = rng.permutation(len(labels))
    total = 0.0
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = {name: values[rows] for name, values in features.items()}
        _ = labels[rows]
        total += float(batch["year_z"][0])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    import tensorflow as tf

    from mlops.distribute import input_dataset

    features, labels = _arrays(args.rows)
    tensors = {name: tf.constant(values) for name, values in features.items()}
    dataset = input_dataset(
        tensors, labels, args.batch_size, tf.distribute.get_strategy(), shuffle=True, seed=0
    )
    gathered = _gather_dataset(tensors, labels, args.batch_size, seed=0)
    rng = np.random.default_rng(0)
    _tf_data_epoch(dataset.take(100))  # warm up: build the iterator machinery once
    _tf_data_in_graph_epoch(gathered.take(100))
    _in_memory_epoch(features, labels, args.batch_size, rng)

    def rate(epoch) -> float:
        start = time.perf_counter()
        for _ in range(args.epochs):
            epoch()
        return args.rows * args.epochs / (time.perf_counter() - start)

    in_memory = rate(lambda: _in_memory_epoch(features, labels, args.batch_size, rng))
    in_graph = rate(lambda: _tf_data_in_graph_epoch(dataset))
    from_python = rate(lambda: _tf_data_epoch(dataset))
    batch_wise = rate(lambda: _tf_data_in_graph_epoch(gathered))

    print(f"rows {args.rows}, batch size {args.batch_size}, epochs {args.epochs}")
    print(f"in-memory loop (numpy):          {in_memory:12,.0f} rows/s")
    for name, value in (
        ("tf.data as training reads it", in_graph),
        ("the same, iterated from Python", from_python),
        ("tf.data gathering whole batches", batch_wise),
    ):
        print(
            f"{name + ':':33}{value:12,.0f} rows/s  ({value / in_memory:.3f}x the in-memory loop)"
        )


if __name__ == "__main__":
    main()
