"""Pick a tf.distribute strategy from the hardware and cluster the process finds."""

from __future__ import annotations

import json
import os
from typing import Any


def choose_strategy(environ: dict[str, str] | None = None) -> tuple[Any, str]:
    """TPU if one is attached, multi-worker when TF_CONFIG names a cluster (Vertex sets it for
    multi-replica worker pools), mirrored over several local GPUs, else the default strategy."""
    import tensorflow as tf

    environ = dict(os.environ if environ is None else environ)
    if environ.get("TPU_NAME") or environ.get("COLAB_TPU_ADDR"):
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver), "TPUStrategy"
    cluster = json.loads(environ.get("TF_CONFIG", "{}")).get("cluster", {})
    if sum(len(tasks) for tasks in cluster.values()) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy(), "MultiWorkerMirroredStrategy"
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy(), f"MirroredStrategy({len(gpus)} GPUs)"
    device = "GPU" if gpus else "CPU"
    return tf.distribute.get_strategy(), f"default ({device})"
