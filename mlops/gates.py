"""The gates that decide the blessing besides TFMA's thresholds: the framing's success criterion,
beating the baselines, and fairness across groups. Each gate is a small JSON-friendly record
(name, passed, detail, values) that run.json, the CLI summary and the report show as they are."""

from __future__ import annotations

import math
from typing import Any

from mlops.config import PipelineConfig


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


# The per-group metrics the gate compares: accuracy always; positive rate and true/false
# positive rates for binary tasks (TFMA computes them per slice, see components/evaluate.py).
FAIRNESS_METRICS = ("accuracy", "positive_rate", "true_positive_rate", "false_positive_rate")


def fairness(
    config: PipelineConfig, groups_by_feature: dict[str, dict[str, dict[str, float]] | None]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Given per sensitive feature {group: {rows, accuracy, ...}} (None: the feature is not a
    column of the test split), the largest gap per metric between groups of at least
    `fairness.min_group_size` rows; the gate fails when a gap exceeds `fairness.max_gap`. Smaller
    groups are reported, not gated. (None, no gate) without sensitive features."""
    settings = config.fairness
    if not settings.sensitive_features:
        return {}, None
    report: dict[str, Any] = {}
    breaches: list[str] = []
    for feature in settings.sensitive_features:
        table = groups_by_feature.get(feature)
        if table is None:
            breaches.append(f"sensitive feature {feature!r} is not a column of the test split")
            continue
        compared = {g: m for g, m in table.items() if m["rows"] >= settings.min_group_size}
        gaps = {}
        for metric in FAIRNESS_METRICS:
            values = {g: m[metric] for g, m in compared.items() if finite(m.get(metric))}
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
