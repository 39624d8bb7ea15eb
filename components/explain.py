"""Explain: feature attributions of the served model on raw features (the inputs the server
takes), by sampled Shapley as Vertex Explainable AI computes them for custom containers. Global
importance (mean absolute attribution) overall and per evaluation slice, and per-row attributions
for a sample of test rows, written as explanations.json for the report and the model card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlops.artifacts import EXPLANATIONS_FILE, read_model_info, read_split
from mlops.attributions import baseline_row, global_importance, sampled_shapley
from mlops.config import PipelineConfig
from mlops.io import atomic_dir, json_value, write_json_atomic


def run_explain(
    config: PipelineConfig, dataset_dir: str | Path, model_dir: str | Path, output_dir: str | Path
) -> dict[str, Any]:
    if config.features.image is not None:  # said in explanations.json and the report
        return _skip_images(output_dir)
    from mlops.serving.server import load_model

    settings, features = config.explain, config.features
    names = features.raw_features
    train, test = read_split(dataset_dir, "train"), read_split(dataset_dir, "test")
    rows = test.sample(n=min(settings.rows, len(test)), random_state=settings.seed)
    rows = rows.reset_index(drop=True)
    model = load_model(model_dir)
    baseline = baseline_row(train, features)
    attributions, explained, base_output = sampled_shapley(
        lambda arrays: model.predict_raw(arrays)["probabilities"],
        rows,
        baseline,
        features,
        paths=settings.paths,
        seed=settings.seed,
    )
    importance = {"overall": global_importance(attributions, names)["overall"]}
    for column in config.evaluation.slices:
        for group, values in global_importance(attributions, names, rows[column]).items():
            if group != "overall":
                importance[f"{column}={group}"] = values
    class_names = read_model_info(model_dir)["classes"]
    ranked = sorted(importance["overall"], key=importance["overall"].get, reverse=True)
    summary = {
        "method": "sampled_shapley",
        "paths": settings.paths,
        "rows": len(rows),
        "baseline": {k: json_value(v) for k, v in baseline.items()},
        "importance": importance,
        "top_features": ranked[:5],
        "examples": [
            {
                "instance": {n: json_value(rows.loc[i, n]) for n in names},
                "explained_class": class_names[int(explained[i])],
                "baseline_output": float(base_output[i]),
                "attributions": dict(zip(names, attributions[i].round(6).tolist(), strict=True)),
            }
            for i in range(min(len(rows), 20))
        ],
    }
    with atomic_dir(output_dir) as out:
        write_json_atomic(out / EXPLANATIONS_FILE, summary)
    return {k: summary[k] for k in ("method", "rows", "top_features")}


def _skip_images(output_dir: str | Path) -> dict[str, Any]:
    from mlops.images import IMAGE_EXPLAIN_NOTE

    summary = {
        "method": "none",
        "skipped": IMAGE_EXPLAIN_NOTE,
        "paths": 0,
        "rows": 0,
        "importance": {"overall": {}},
        "top_features": [],
        "examples": [],
    }
    with atomic_dir(output_dir) as out:
        write_json_atomic(out / EXPLANATIONS_FILE, summary)
    return {k: summary[k] for k in ("method", "rows", "top_features", "skipped")}
