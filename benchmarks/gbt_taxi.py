"""Gradient-boosted trees (`training.model: gbt`) against the DNN on the Chicago taxi data: the
training step's time and the exported models' test AUC and accuracy (through `serving_default`
from raw rows, as every consumer sees them), next to the reference AUC measured before the
project started with plain scikit-learn gradient boosting (0.941, DESIGN.md).

    .venv/bin/python -m benchmarks.gbt_taxi [--families dnn gbt]

Runs ingest and transform once, then the training step once per family, in this process.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REFERENCE_AUC = 0.941  # sklearn gradient boosting on taxi, time split, tips excluded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", default=["dnn", "gbt"])
    args = parser.parse_args()

    import tensorflow as tf
    from sklearn.metrics import roc_auc_score

    from components.ingest import run_ingest
    from components.train import run_train
    from components.transform import run_transform
    from mlops.artifacts import read_label_classes, read_model_info, read_split
    from mlops.config import CONFIG_DIR, load_config
    from mlops.features import encode_labels, frame_to_arrays

    base = load_config(CONFIG_DIR / "taxi.yaml")
    with tempfile.TemporaryDirectory(prefix="bench-gbt-") as scratch:
        tmp = Path(scratch)
        started = time.perf_counter()
        run_ingest(base, tmp / "data")
        run_transform(base, tmp / "data", tmp / "transform")
        print(f"ingest + transform: {time.perf_counter() - started:.1f}s", flush=True)
        test = read_split(tmp / "data", "test")
        classes = read_label_classes(tmp / "transform")
        labels = encode_labels(test[base.data.label].tolist(), classes, "test")
        raw = {k: tf.constant(v) for k, v in frame_to_arrays(test, base.features).items()}
        for family in args.families:
            config = base.with_overrides(training={**base.training.model_dump(), "model": family})
            model_dir = tmp / f"model-{family}"
            started = time.perf_counter()
            run_train(config, tmp / "data", tmp / "transform", model_dir)
            seconds = time.perf_counter() - started
            info = read_model_info(model_dir)
            loaded = tf.saved_model.load(str(model_dir))
            probabilities = loaded.signatures["serving_default"](**raw)["probabilities"].numpy()
            auc = roc_auc_score(labels, probabilities[:, 1])
            accuracy = float((probabilities.argmax(axis=1) == labels).mean())
            extra = ""
            if "gbt" in info:
                trees = info["gbt"]
                extra = f", {trees['stages']} of {trees['stages_fitted']} stages, {trees['nodes']} nodes"
            print(
                f"{family:>9}: train step {seconds:6.1f}s, test AUC {auc:.4f} "
                f"({auc / REFERENCE_AUC:.3f}x the reference {REFERENCE_AUC}), accuracy "
                f"{accuracy:.4f}, {info['epochs_run']} epochs/stages run{extra}",
                flush=True,
            )
    print(f"load average: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
    # After a TFT Beam pipeline the interpreter can segfault at shutdown (exit 139) once every
    # figure is printed: leave without native teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
