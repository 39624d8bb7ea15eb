"""Explain step: sampled Shapley attributions on raw features. Exact on a model whose Shapley
values are known (linear), additive on the real penguins model, and written for the report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from components.explain import run_explain
from mlops.artifacts import read_model_info
from mlops.attributions import baseline_row, sampled_shapley
from mlops.config import FeatureConfig
from mlops.features import frame_to_arrays
from mlops.serving.server import load_model


def test_a_linear_model_gets_its_exact_shapley_values() -> None:
    features = FeatureConfig(numeric=["a", "b"], categorical=["c"])
    weights = {"a": 0.1, "b": -0.05}
    bonus = {"x": 0.2, "y": 0.0}

    def predict(arrays):
        score = 0.5 + sum(w * np.nan_to_num(arrays[n]) for n, w in weights.items())
        score = score + np.array([bonus.get(v, 0.0) for v in arrays["c"]])
        return np.column_stack([1 - score, score])

    rows = pd.DataFrame({"a": [1.0, 2.0], "b": [4.0, 0.0], "c": ["x", "y"]})
    baseline = {"a": 0.0, "b": 0.0, "c": "y"}
    attributions, explained, base = sampled_shapley(
        predict, rows, baseline, features, paths=3, output_index=np.array([1, 1])
    )
    expected = np.array([[0.1, -0.2, 0.2], [0.2, 0.0, 0.0]])
    np.testing.assert_allclose(attributions, expected, atol=1e-6)  # float32 inputs
    np.testing.assert_allclose(base, [0.5, 0.5])


def test_baseline_row_is_median_and_mode() -> None:
    features = FeatureConfig(numeric=["a"], categorical=["c"])
    train = pd.DataFrame({"a": [1.0, 2.0, 10.0, None], "c": ["x", "y", "y", None]})
    assert baseline_row(train, features) == {"a": 2.0, "c": "y"}


def test_penguins_attributions_add_up_and_rank_measurements_first(penguins_chain, tmp_path) -> None:
    config, paths, _ = penguins_chain
    config = config.with_overrides(explain={"rows": 30, "paths": 6, "seed": 1})
    summary = run_explain(config, paths["data"], paths["model"], tmp_path / "explain")
    written = json.loads((tmp_path / "explain" / "explanations.json").read_text())
    assert summary["method"] == "sampled_shapley" and written["rows"] == 30
    overall = written["importance"]["overall"]
    assert set(overall) == set(config.features.raw_features)
    assert written["top_features"][0] in {"bill_length_mm", "bill_depth_mm", "flipper_length_mm"}
    assert {"sex=male", "island=Biscoe"} <= set(written["importance"])
    model = load_model(paths["model"])
    example = written["examples"][0]
    frame = pd.DataFrame([example["instance"]])
    probabilities = model.predict_raw(frame_to_arrays(frame, config.features))["probabilities"][0]
    index = read_model_info(paths["model"])["classes"].index(example["explained_class"])
    total = example["baseline_output"] + sum(example["attributions"].values())
    assert total == pytest.approx(float(probabilities[index]), abs=1e-4)
