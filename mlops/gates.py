"""The gates that decide the blessing besides TFMA's thresholds: the framing's success criterion,
beating the baselines, and fairness across groups. Each gate is a small JSON-friendly record
(name, passed, detail, values) that run.json, the CLI summary and the report show as they are."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from mlops.config import PipelineConfig
from mlops.features import category_text


def gate(name: str, passed: bool, detail: str, **values: Any) -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), "detail": detail, "values": values}


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def success_criterion_gate(config: PipelineConfig, overall: dict[str, float]) -> dict[str, Any]:
    metric, threshold = config.framing.success_metric, config.framing.success_threshold
    value = overall.get(metric)
    if not finite(value):
        return gate(
            "success criterion",
            False,
            f"{metric} is undefined on the test split (the model may predict one class only); "
            f"the framing asks for {metric} >= {threshold}",
            metric=metric,
            threshold=threshold,
            value=None,
        )
    passed = value >= threshold
    return gate(
        "success criterion",
        passed,
        f"{metric} {value:.4f} {'>=' if passed else '<'} {threshold} (framing.success_threshold)",
        metric=metric,
        threshold=threshold,
        value=value,
    )


def baselines_gate(
    config: PipelineConfig, overall: dict[str, float], baselines: dict[str, dict[str, float]]
) -> dict[str, Any]:
    """The model's success metric must exceed the best baseline's by `baselines.margin`."""
    metric, margin = config.framing.success_metric, config.baselines.margin
    scored = {name: m[metric] for name, m in baselines.items() if finite(m.get(metric))}
    value = overall.get(metric)
    if not scored:
        return gate("beats baselines", True, "no baseline has a defined " + metric, metric=metric)
    best = max(scored, key=scored.get)
    if not finite(value):
        return gate(
            "beats baselines",
            False,
            f"the model's {metric} is undefined; best baseline {best!r} has {scored[best]:.4f}",
            metric=metric,
            best=best,
            best_value=scored[best],
        )
    passed = value >= scored[best] + margin
    wanted = (
        f"at least {margin} above"
        if margin > 0
        else "not below"
        if margin == 0
        else f"within {-margin} of"
    )
    return gate(
        "beats baselines",
        passed,
        f"model {metric} {value:.4f} is {'' if passed else 'NOT '}{wanted} the best baseline "
        f"{best!r} ({scored[best]:.4f}; baselines.margin {margin})",
        metric=metric,
        best=best,
        best_value=scored[best],
        margin=margin,
        value=value,
    )


def group_metrics(
    predicted: np.ndarray, label_ids: np.ndarray, num_classes: int
) -> dict[str, float]:
    """accuracy; for binary tasks also the positive rate and the true/false positive rates."""
    metrics = {"accuracy": float(np.mean(predicted == label_ids))}
    if num_classes == 2:
        positive, actual = predicted == 1, label_ids == 1
        metrics["positive_rate"] = float(positive.mean())
        if actual.any():
            metrics["true_positive_rate"] = float(positive[actual].mean())
        if (~actual).any():
            metrics["false_positive_rate"] = float(positive[~actual].mean())
    return metrics


def fairness(
    config: PipelineConfig, test: pd.DataFrame, probabilities: np.ndarray, label_ids: np.ndarray
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Per sensitive feature and group, the group metrics and the largest gap per metric; the
    gate fails when a gap exceeds `fairness.max_gap`. (None, no gate) without sensitive features."""
    settings = config.fairness
    if not settings.sensitive_features:
        return {}, None
    predicted = np.asarray(probabilities).argmax(axis=1)
    num_classes = np.asarray(probabilities).shape[1]
    report: dict[str, Any] = {}
    breaches: list[str] = []
    for feature in settings.sensitive_features:
        if feature not in test.columns:
            breaches.append(f"sensitive feature {feature!r} is not a column of the test split")
            continue
        groups = test[feature].map(category_text).replace("", "(missing)").to_numpy()
        table = {}
        for group in sorted(set(groups)):
            rows = groups == group
            table[group] = {
                "rows": int(rows.sum()),
                **group_metrics(predicted[rows], label_ids[rows], num_classes),
            }
        compared = {g: m for g, m in table.items() if m["rows"] >= settings.min_group_size}
        gaps = {}
        for metric in ("accuracy", "positive_rate", "true_positive_rate", "false_positive_rate"):
            values = {g: m[metric] for g, m in compared.items() if metric in m}
            if len(values) >= 2:
                low, high = min(values, key=values.get), max(values, key=values.get)
                gaps[metric] = {
                    "gap": round(values[high] - values[low], 4),
                    "highest": high,
                    "lowest": low,
                }
                if values[high] - values[low] > settings.max_gap:
                    breaches.append(
                        f"{feature}: {metric} gap {values[high] - values[low]:.3f} between "
                        f"{high!r} ({values[high]:.3f}) and {low!r} ({values[low]:.3f}) exceeds "
                        f"fairness.max_gap {settings.max_gap}"
                    )
        report[feature] = {"groups": table, "gaps": gaps}
    detail = "; ".join(breaches) or (
        f"every gap within {settings.max_gap} across groups of >= {settings.min_group_size} rows"
    )
    return report, gate("fairness", not breaches, detail, max_gap=settings.max_gap)
