"""Model families and regularisation (mlops/models.py), and choosing among families in train."""

from __future__ import annotations

import numpy as np
import pytest

from mlops.config import TrainingConfig
from mlops.models import build_model, weight_shapes

SIZES = {"island_id": 4, "sex_id": 3}
SPEC = {"island_id": None, "sex_id": None, "bill_z": None, "mass_z": None}


def _rows(n: int = 32) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    features = {
        "island_id": rng.integers(0, 4, n),
        "sex_id": rng.integers(0, 3, n),
        "bill_z": rng.normal(size=n).astype("float32"),
        "mass_z": rng.normal(size=n).astype("float32"),
    }
    return features, rng.integers(0, 3, n)


def _layers(model) -> dict[str, str]:
    return {layer.name: type(layer).__name__ for layer in model.layers}


@pytest.mark.parametrize("family", ["linear", "dnn", "wide_deep"])
def test_every_family_maps_transformed_features_to_probabilities(family: str) -> None:
    model = build_model(family, SPEC, SIZES, 3, TrainingConfig(hidden_units=[8]))
    features, _ = _rows()
    probabilities = model.predict(features, verbose=0)
    assert probabilities.shape == (32, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    layers = _layers(model)
    assert ("dense_0" in layers) == (family != "linear")  # only the deep part has hidden layers
    assert ("wide_logits" in layers) == (family != "dnn")  # one-hot ids straight to logits
    assert ("onehot_island_id" in layers) == (family != "dnn")


def test_unknown_family_is_refused_with_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"'boosted'.*linear.*dnn.*wide_deep"):
        build_model("boosted", SPEC, SIZES, 3, TrainingConfig())


def test_compare_families_needs_two_distinct_families() -> None:
    with pytest.raises(ValueError, match="twice"):
        TrainingConfig(compare_families=["dnn", "dnn"])
    with pytest.raises(ValueError, match="two or more"):
        TrainingConfig(compare_families=["dnn"])


def test_dropout_follows_every_hidden_layer() -> None:
    model = build_model("dnn", SPEC, SIZES, 3, TrainingConfig(hidden_units=[8, 4], dropout=0.3))
    dropouts = [layer for layer in model.layers if type(layer).__name__ == "Dropout"]
    assert [layer.name for layer in dropouts] == ["dropout_0", "dropout_1"]
    assert all(layer.rate == pytest.approx(0.3) for layer in dropouts)
    no_dropout = build_model("dnn", SPEC, SIZES, 3, TrainingConfig(hidden_units=[8, 4]))
    assert "Dropout" not in _layers(no_dropout).values()


@pytest.mark.parametrize("family", ["linear", "dnn", "wide_deep"])
def test_l2_penalises_every_dense_kernel_and_enters_the_loss(family: str) -> None:
    import keras

    l2 = 0.01
    plain = build_model(family, SPEC, SIZES, 3, TrainingConfig(hidden_units=[8]))
    penalised = build_model(family, SPEC, SIZES, 3, TrainingConfig(hidden_units=[8], l2=l2))
    dense = [layer for layer in penalised.layers if isinstance(layer, keras.layers.Dense)]
    assert dense and all(
        layer.get_config()["kernel_regularizer"]["config"]["l2"] == pytest.approx(l2)
        for layer in dense
    )
    assert all(
        layer.get_config()["kernel_regularizer"] is None
        for layer in plain.layers
        if isinstance(layer, keras.layers.Dense)
    )
    penalised.set_weights(plain.get_weights())
    features, labels = _rows()
    plain_loss = plain.evaluate(features, labels, verbose=0)[0]
    penalised_loss = penalised.evaluate(features, labels, verbose=0)[0]
    expected_penalty = l2 * sum(float(np.sum(np.square(layer.kernel))) for layer in dense)
    assert expected_penalty > 0
    assert penalised_loss - plain_loss == pytest.approx(expected_penalty, rel=1e-3)


def test_weight_shapes_tell_compatible_models_apart() -> None:
    config = TrainingConfig(hidden_units=[8])
    same = build_model("dnn", SPEC, SIZES, 3, config)
    assert weight_shapes(same) == weight_shapes(build_model("dnn", SPEC, SIZES, 3, config))
    wider = build_model("dnn", SPEC, SIZES, 3, TrainingConfig(hidden_units=[16]))
    assert weight_shapes(same) != weight_shapes(wider)


def test_family_comparison_exports_the_best_on_eval(penguins_chain, tmp_path) -> None:
    import tensorflow as tf

    from components.train import run_train
    from mlops.artifacts import read_model_info, read_split
    from mlops.features import frame_to_arrays

    config, paths, _ = penguins_chain
    training = {**config.training.model_dump(), "compare_families": ["linear", "wide_deep"]}
    config = config.with_overrides(training={**training, "epochs": 4})
    summary = run_train(config, paths["data"], paths["transform"], tmp_path / "model")
    rows = summary["family_comparison"]
    assert [row["family"] for row in rows] == ["linear", "wide_deep"]
    best = min(rows, key=lambda row: (-row["eval_accuracy"], row["eval_loss"]))
    assert [row["family"] for row in rows if row["chosen"]] == [best["family"]]
    info = read_model_info(tmp_path / "model")
    assert info["model_family"] == best["family"]
    assert info["eval_accuracy"] == pytest.approx(best["eval_accuracy"])
    assert rows[0]["params"] < rows[1]["params"]  # linear is the smaller model
    # The exported model keeps the raw-feature serving signature whatever the family.
    loaded = tf.saved_model.load(str(tmp_path / "model"))
    test = read_split(paths["data"], "test")
    raw = {k: tf.constant(v) for k, v in frame_to_arrays(test, config.features).items()}
    probabilities = loaded.signatures["serving_default"](**raw)["probabilities"].numpy()
    assert probabilities.shape == (len(test), 3)
