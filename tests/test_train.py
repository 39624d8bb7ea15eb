"""Train step: Keras on the transformed features, exporting a SavedModel whose signatures take raw features."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from components.train import class_weights
from mlops.artifacts import read_model_info, read_split
from mlops.features import frame_to_arrays


def _signature(model_dir: Path, name: str):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(model_dir))
    return loaded, loaded.signatures[name]


def test_training_keeps_curves_and_tensorboard_logs(penguins_chain) -> None:
    config, paths, results = penguins_chain
    info = read_model_info(paths["model"])
    assert info["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert 1 <= info["epochs_run"] <= config.training.epochs
    assert len(info["curves"]["val_loss"]) == info["epochs_run"]
    assert info["eval_accuracy"] >= 0.9
    assert list(paths["logs"].rglob("events.out.tfevents*"))


def test_class_weights_balance_classes() -> None:
    weights = class_weights(np.array([0, 0, 0, 1]), 3)
    assert weights[0] == pytest.approx(4 / 9) and weights[1] == pytest.approx(4 / 3)
    assert weights[2] == 1.0


def test_saved_model_predicts_raw_rows_with_missing_values(penguins_chain) -> None:
    import tensorflow as tf

    config, paths, _ = penguins_chain
    loaded, serve = _signature(paths["model"], "serving_default")
    rows = {
        "bill_length_mm": [39.1, math.nan, 46.5],
        "bill_depth_mm": [18.7, math.nan, 14.8],
        "flipper_length_mm": [181.0, math.nan, 217.0],
        "body_mass_g": [3750.0, math.nan, 5200.0],
        "year": [2007.0, 2008.0, math.nan],
        "island": ["Torgersen", "", "Biscoe"],
        "sex": ["male", "", "female"],
    }
    outputs = serve(
        **{
            name: tf.constant(values, dtype=tf.string if isinstance(values[0], str) else tf.float32)
            for name, values in rows.items()
        }
    )
    probabilities = outputs["probabilities"].numpy()
    assert probabilities.shape == (3, 3)
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    labels = [v.decode() for v in outputs["predicted_label"].numpy()]
    assert labels[0] == "Adelie" and labels[2] == "Gentoo"
    del loaded


def test_example_signature_matches_raw_signature(penguins_chain) -> None:
    import tensorflow as tf

    from components.evaluate import write_examples

    config, paths, _ = penguins_chain
    test = read_split(paths["data"], "test")
    loaded, serve = _signature(paths["model"], "serving_default")
    raw = serve(**{k: tf.constant(v) for k, v in frame_to_arrays(test, config.features).items()})
    records = paths["evaluation"].parent / "examples.tfrecord"
    write_examples(config, test, ["Adelie", "Chinstrap", "Gentoo"], records)
    examples = [r.numpy() for r in tf.data.TFRecordDataset(str(records))]
    from_examples = loaded.signatures["serving_tf_example"](examples=tf.constant(examples))
    np.testing.assert_allclose(
        raw["probabilities"].numpy(), from_examples["probabilities"].numpy(), rtol=1e-5, atol=1e-6
    )


def test_model_carries_its_config_for_serving(penguins_chain) -> None:
    from mlops.serving.server import config_from_model

    config, paths, _ = penguins_chain
    assert config_from_model(str(paths["model"])) == config
