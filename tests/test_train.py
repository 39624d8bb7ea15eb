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


def _retrain(config, paths, model_dir: Path, champion_dir: str | None = None, **training):
    from components.train import run_train

    config = config.with_overrides(training={**config.training.model_dump(), **training})
    return run_train(config, paths["data"], paths["transform"], model_dir, None, champion_dir)


def test_warm_start_from_the_registry_champion_starts_at_a_lower_loss(
    penguins_chain, tmp_path
) -> None:
    from mlops.paths import registry_root
    from mlops.registry import CHAMPION, LocalModelRegistry

    config, paths, _ = penguins_chain
    cold = read_model_info(paths["model"])
    config = config.model_copy(
        update={"local": config.local.model_copy(update={"root": str(tmp_path / "root")})}
    )
    LocalModelRegistry(registry_root(config)).register(
        config.name, paths["model"], {"metrics": {}}, aliases=[CHAMPION]
    )
    summary = _retrain(config, paths, tmp_path / "warm", warm_start=True, epochs=2)
    warm = read_model_info(tmp_path / "warm")
    record = summary["warm_start"]
    assert record["applied"] is True, record["note"]
    assert record["champion_eval_accuracy"] == pytest.approx(cold["eval_accuracy"])
    # Same seed and data: the cold run's first epoch is the reference.
    assert warm["curves"]["loss"][0] < 0.5 * cold["curves"]["loss"][0]
    assert record["initial_eval_loss"] < 0.5 * cold["curves"]["val_loss"][0]


def test_warm_start_falls_back_to_cold_with_a_note(penguins_chain, tmp_path) -> None:
    config, paths, _ = penguins_chain
    config = config.model_copy(
        update={"local": config.local.model_copy(update={"root": str(tmp_path / "root")})}
    )
    # No champion in this (empty) registry.
    summary = _retrain(config, paths, tmp_path / "none", warm_start=True, epochs=1)
    assert summary["warm_start"]["applied"] is False
    assert "no champion" in summary["warm_start"]["note"]
    # A champion of another architecture: its weights cannot be loaded.
    summary = _retrain(
        config,
        paths,
        tmp_path / "other",
        champion_dir=str(paths["model"]),
        warm_start=True,
        hidden_units=[4],
        epochs=1,
    )
    record = summary["warm_start"]
    assert record["applied"] is False
    assert "other layers or shapes" in record["note"] and "cold start" in record["note"]


def test_tflite_export_matches_the_keras_model(penguins_chain, tmp_path) -> None:
    import tensorflow as tf

    from mlops.artifacts import TFLITE_DIR, model_extra_path
    from mlops.tflite_export import TFLiteClassifier

    config, paths, _ = penguins_chain
    model_dir = tmp_path / "model"
    # 64x64 hidden kernels: big enough (>= 1024 weights) for dynamic-range quantisation.
    summary = _retrain(
        config, paths, model_dir, export_tflite=True, hidden_units=[64, 64], epochs=3
    )
    report = summary["tflite"]
    tflite_dir = model_extra_path(model_dir, TFLITE_DIR)
    flat = (tflite_dir / report["models"]["float"]["file"]).read_bytes()
    quantised = (tflite_dir / report["models"]["dynamic_range"]["file"]).read_bytes()
    assert len(quantised) < 0.8 * len(flat)
    assert report["models"]["dynamic_range"]["bytes"] == len(quantised)
    assert report["test_rows"] == len(read_split(paths["data"], "test"))
    assert report["models"]["float"]["test_accuracy"] == pytest.approx(
        report["keras_test_accuracy"], abs=0.02
    )
    # A few test rows through the host-side transform, then TFLite vs the exported SavedModel.
    test = read_split(paths["data"], "test").head(5)
    raw = {k: tf.constant(v) for k, v in frame_to_arrays(test, config.features).items()}
    loaded = tf.saved_model.load(str(model_dir))
    expected = loaded.signatures["serving_default"](**raw)["probabilities"].numpy()
    transformed = {k: v.numpy() for k, v in loaded.tft_layer(raw).items()}
    for flatbuffer, tolerance in ((flat, 1e-5), (quantised, 0.05)):
        got = TFLiteClassifier(flatbuffer).predict(transformed)
        np.testing.assert_allclose(got, expected, atol=tolerance)
    # The run report and the model card show the edge models beside the full model.
    from components.report import modelling_html
    from mlops.model_card import build_model_card, model_card_html

    info = read_model_info(model_dir)
    section = modelling_html(info)
    assert "Edge export (TFLite" in section and str(len(quantised)) in section
    card = build_model_card(config, 1, {"metrics": {}}, None, {}, info)
    edge = {m["variant"]: m for m in card["edge_models"]}
    assert set(edge) == {"float", "dynamic_range"}
    assert edge["dynamic_range"]["bytes"] == len(quantised)
    assert edge["float"]["full_model_test_accuracy"] == report["keras_test_accuracy"]
    assert "Edge models (TFLite)" in model_card_html(card)


@pytest.mark.parametrize("target", ["local", "vertex"])
def test_pipeline_hands_the_champion_to_train_for_warm_start(tmp_path, target) -> None:
    import json

    from pipelines.vertex import compile_training_pipeline
    from tests.conftest import config_in, on_vertex

    config = config_in(tmp_path, "penguins")
    if target == "vertex":
        config = on_vertex(config, project="p", region="europe-west4")
    cold = json.loads(compile_training_pipeline(config, target, tmp_path / "c.json").read_text())
    assert "champion_model_uri" not in cold["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]
    warm = config.with_overrides(training={**config.training.model_dump(), "warm_start": True})
    spec = json.loads(compile_training_pipeline(warm, target, tmp_path / "p.json").read_text())
    train = spec["root"]["dag"]["tasks"]["train"]
    source = train["inputs"]["parameters"]["champion_model_uri"]["taskOutputParameter"]
    assert source["producerTask"] == f"find-champion-{target}"
