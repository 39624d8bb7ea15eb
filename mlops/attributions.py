"""Feature attributions on raw features by sampled Shapley, the method Vertex Explainable AI offers
for custom containers: for each row and each random order of the features, switch the features
from a baseline row to the row's values one at a time; a feature's attribution is the mean change
in the explained class's probability when it is switched. Attributions plus the baseline's
output add up to the row's output (exactly on every path).

The model is called through any `predict(arrays) -> probabilities` function on raw feature arrays,
in large batches: rows x paths x (features + 1) model inputs per call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from mlops.config import FeatureConfig
from mlops.features import MISSING_CATEGORY, category_text, frame_to_arrays

Predict = Callable[[Mapping[str, np.ndarray]], np.ndarray]


def baseline_row(train: pd.DataFrame, features: FeatureConfig) -> dict[str, Any]:
    """The reference input: the median of each numeric feature, the most frequent category."""
    row: dict[str, Any] = {}
    for name in features.numeric:
        values = pd.to_numeric(train[name], errors="coerce").dropna()
        row[name] = float(values.median()) if len(values) else float("nan")
    for name in features.categorical:
        texts = train[name].map(category_text)
        texts = texts[texts != MISSING_CATEGORY]
        row[name] = texts.mode().iloc[0] if len(texts) else MISSING_CATEGORY
    return row


def sampled_shapley(
    predict: Predict,
    rows: pd.DataFrame,
    baseline: Mapping[str, Any],
    features: FeatureConfig,
    paths: int = 10,
    seed: int = 0,
    output_index: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(attributions [rows, features], explained class per row, baseline output per row) for the
    raw features in `features.raw_features` order. The explained class is the row's predicted
    class unless `output_index` says otherwise."""
    names = features.raw_features
    n_rows, n_features = len(rows), len(names)
    arrays = frame_to_arrays(rows.reset_index(drop=True), features)
    base = frame_to_arrays(pd.DataFrame([dict(baseline)] * n_rows), features)
    rng = np.random.default_rng(seed)
    orders = np.array([rng.permutation(n_features) for _ in range(paths)])
    # mask[p, s, f]: on path p after s switches, feature f already has the row's value
    steps = np.arange(n_features + 1)
    position = np.argsort(orders, axis=1)  # position of each feature in its path
    mask = position[:, None, :] < steps[None, :, None]
    total = paths * (n_features + 1)
    inputs = {}
    for j, name in enumerate(names):
        chosen = np.repeat(mask[None, :, :, j], n_rows, axis=0).reshape(n_rows * total)
        row_values = np.repeat(arrays[name], total)
        base_values = np.repeat(base[name], total)
        inputs[name] = np.where(chosen, row_values, base_values).astype(arrays[name].dtype)
    probabilities = np.asarray(predict(inputs)).reshape(n_rows, paths, n_features + 1, -1)
    if output_index is None:
        output_index = probabilities[:, 0, -1, :].argmax(axis=1)
    explained = probabilities[np.arange(n_rows), :, :, output_index]  # [rows, paths, steps]
    deltas = np.diff(explained, axis=2)  # [rows, paths, switches]; switch s sets orders[p, s]
    attributions = np.zeros((n_rows, n_features))
    for p in range(paths):
        attributions[:, orders[p]] += deltas[:, p, :]
    attributions /= paths
    return attributions, output_index, explained[:, 0, 0]


def global_importance(
    attributions: np.ndarray, names: list[str], groups: pd.Series | None = None
) -> dict[str, dict[str, float]]:
    """Mean absolute attribution per feature, overall and per group value."""
    result = {"overall": dict(zip(names, np.abs(attributions).mean(axis=0).round(6), strict=True))}
    if groups is not None:
        keys = groups.map(category_text).replace("", "(missing)").to_numpy()
        for key in sorted(set(keys)):
            rows = keys == key
            result[key] = dict(
                zip(names, np.abs(attributions[rows]).mean(axis=0).round(6), strict=True)
            )
    return {k: {n: float(v) for n, v in d.items()} for k, d in result.items()}


def vertex_explanation(config: Any, baseline: Mapping[str, Any]) -> tuple[Any, Any]:
    """(ExplanationMetadata, ExplanationParameters) for a Vertex model upload, so the endpoint's
    `explain` attributes the `probabilities` output to the same raw features with the same method
    (sampled Shapley, `explain.paths` paths) and baseline as the pipeline's explain step."""
    import json

    from google.cloud.aiplatform import explain

    from mlops.io import json_value

    metadata = {
        "inputs": {
            name: {"inputBaselines": [json_value(baseline[name])]}
            for name in config.features.raw_features
        },
        "outputs": {"probabilities": {"outputTensorName": "probabilities"}},
    }
    parameters = {
        "sampledShapleyAttribution": {"pathCount": config.explain.paths},
        "topK": len(config.features.raw_features),
    }
    return (
        explain.ExplanationMetadata.from_json(json.dumps(metadata)),
        explain.ExplanationParameters.from_json(json.dumps(parameters)),
    )
