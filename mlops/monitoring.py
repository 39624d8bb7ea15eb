"""Monitoring: training-serving skew, window-to-window drift, schema (domain) anomalies, prediction
drift and, once labels arrive, model quality on serving data; plus the retraining decision.

Everything is written in TFDV's formats (``FeatureStats.pb``, one ``SchemaDiff.pb`` with
``drift_skew_info``) next to a JSON summary (``monitoring.json``) and an HTML report.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from mlops import gcs
from mlops import tfdv as dv
from mlops.artifacts import MONITORING_SUMMARY_FILE, REPORT_FILE
from mlops.config import ComparatorConfig, DataConfig, FeatureConfig, PipelineConfig
from mlops.features import MISSING_CATEGORY, category_text, frame_to_arrays
from mlops.io import atomic_dir, write_json_atomic
from mlops.metrics import binary_auc
from mlops.report_html import (
    bar_chart_html,
    feature_distribution_figures,
    figure_grid,
    html_page,
    html_table,
)
from mlops.tabular import looks_numeric, narrow_integers, read_source
from mlops.tfdv.config_rules import (
    SERVING,
    apply_domains,
    mark_integer_categories,
    unused_columns_as_warnings,
)

__all__ = [
    "PREDICTED_LABEL",
    "load_serving_data",
    "run_monitoring",
    "decide_retrain",
    "quality_metrics",
    "read_last_retrain",
    "record_retrain",
]

PREDICTED_LABEL = "__predicted_label__"
CURRENT, PREVIOUS, TRAINING_SPLIT = "current", "previous", "train"
# Kinds of findings a retraining decision may act on per feature.
FEATURE_KINDS = ("skew", "drift", "schema")
_PREDICTION_BATCH = 4096
_HISTORY_LENGTH = 50

_INFO = anomalies_pb2.AnomalyInfo
_MEASUREMENT = anomalies_pb2.DriftSkewInfo.Measurement
_MEASURE_NAMES = {
    _MEASUREMENT.L_INFTY: "l_infinity",
    _MEASUREMENT.JENSEN_SHANNON_DIVERGENCE: "jensen_shannon_divergence",
}
_MEASURE_TEXT = {
    "l_infinity": "L-infinity distance",
    "jensen_shannon_divergence": "Jensen-Shannon divergence",
}


# --------------------------------------------------------------------------- #
# Serving data
# --------------------------------------------------------------------------- #


def _is_meta(column: object) -> bool:
    """Request-log bookkeeping columns (`__predicted_label__`, `__timestamp__`, ...)."""
    return isinstance(column, str) and column.startswith("__") and column.endswith("__")


def _type_frame(frame: pd.DataFrame, features: FeatureConfig) -> pd.DataFrame:
    """Type columns as ingest does: numeric features as numbers (float64, or Int64 when every value
    is integral), other number-like columns likewise, the rest as string. Values of a numeric
    feature that are not numbers become missing and are counted in ``attrs["unparsed"]``."""
    typed: dict[str, pd.Series] = {}
    unparsed: dict[str, dict[str, Any]] = dict(frame.attrs.get("unparsed", {}))
    for name in frame.columns:
        column = frame[name]
        if _is_meta(name):
            typed[name] = column
            continue
        if features.image is not None and name == features.image.column:
            from mlops.images import image_values

            typed[name] = image_values(column)  # bytes; compared by content hash below
            continue
        if column.dtype == object or isinstance(column.dtype, pd.StringDtype):
            # An empty category is a missing value (request logs write "" for it, CSV cells too).
            column = column.mask(column.astype("string").eq("").fillna(False).astype(bool))
        if name in features.numeric:
            values = pd.to_numeric(column, errors="coerce")
            bad = values.isna() & column.notna()
            if bad.any() and not pd.api.types.is_numeric_dtype(column):
                unparsed[name] = {
                    "count": int(bad.sum()),
                    "examples": [str(v) for v in column[bad].unique()[:5]],
                }
            typed[name] = narrow_integers(values.astype("float64"))
        elif pd.api.types.is_bool_dtype(column):
            typed[name] = column
        elif pd.api.types.is_numeric_dtype(column) or looks_numeric(column):
            typed[name] = narrow_integers(pd.to_numeric(column, errors="coerce").astype("float64"))
        else:
            typed[name] = column.astype("string")
    result = pd.DataFrame(typed, index=frame.index)
    result.attrs = {**frame.attrs, "unparsed": unparsed}
    return result


def load_serving_data(
    source: str, *, features: FeatureConfig, label: str | None = None
) -> pd.DataFrame:
    """Read a batch of serving data (CSV, JSON Lines or Parquet, by path or URI; format from the
    extension) typed like ingest types training data. Rows that cannot be parsed are skipped and
    listed in ``attrs["bad_rows"]``; the label column, when present, is kept for quality checks."""
    frame, bad = read_source(DataConfig(source=source, label=label or PREDICTED_LABEL))
    if len(frame.columns) == 0:
        raise ValueError(f"serving data {source!r} has no columns")
    typed = _type_frame(frame, features)
    typed.attrs["bad_rows"] = [f"line {b.line}: {b.reason}" for b in bad[:20]]
    typed.attrs["source"] = source
    return typed


# --------------------------------------------------------------------------- #
# Schema with monitoring thresholds
# --------------------------------------------------------------------------- #


def _monitoring_schema(
    schema: schema_pb2.Schema, config: PipelineConfig, schema_path: str
) -> schema_pb2.Schema:
    """The training schema with the configured domains and monitoring.skew / monitoring.drift
    thresholds on the model's features only (config is the source of truth: a threshold of None
    turns that comparison off)."""
    result = apply_domains(schema, config)
    used = set(config.features.raw_features)
    names = {feature.name for feature in result.feature}
    mark_integer_categories(result, config)  # as in training: L-infinity for int categories
    # Numbers are numbers: a numeric feature whose training values happened to be whole (INT)
    # must accept 3.5 at serving (the model reads float32), not report a type error.
    for feature in result.feature:
        if feature.name in config.features.numeric and feature.type == schema_pb2.INT:
            feature.type = schema_pb2.FLOAT
            if feature.HasField("int_domain"):
                bounds = feature.int_domain
                low = float(bounds.min) if bounds.HasField("min") else None
                high = float(bounds.max) if bounds.HasField("max") else None
                feature.ClearField("int_domain")
                if low is not None:
                    feature.float_domain.min = low
                if high is not None:
                    feature.float_domain.max = high
    for kind in ("skew", "drift"):
        comparator: ComparatorConfig = getattr(config.monitoring, kind)
        unknown = sorted(set(comparator.per_feature) - names)
        if unknown:
            raise ValueError(
                f"monitoring.{kind}.per_feature names {unknown}, not features of the schema "
                f"{schema_path} (features: {sorted(names)})"
            )
        for feature in result.feature:
            feature.ClearField(f"{kind}_comparator")
        result = dv.set_comparator_thresholds(
            result,
            kind=kind,
            default_categorical=comparator.categorical_linf,
            default_numeric=comparator.numeric_jsd,
            per_feature=comparator.per_feature,
        )
        for feature in result.feature:
            if feature.name not in used and feature.name not in comparator.per_feature:
                feature.ClearField(f"{kind}_comparator")
    return result


# --------------------------------------------------------------------------- #
# Anomalies
# --------------------------------------------------------------------------- #


def _merge_anomalies(
    schema: schema_pb2.Schema, parts: Iterable[anomalies_pb2.Anomalies]
) -> anomalies_pb2.Anomalies:
    """One Anomalies proto: reasons merged per feature (highest severity wins), one
    ``drift_skew_info`` per feature holding its skew and drift measurements."""
    merged = anomalies_pb2.Anomalies(anomaly_name_format=anomalies_pb2.Anomalies.SERIALIZED_PATH)
    merged.baseline.CopyFrom(schema)
    infos: dict[str, anomalies_pb2.DriftSkewInfo] = {}
    for part in parts:
        merged.data_missing = merged.data_missing or part.data_missing
        if part.dataset_anomaly_info.reason:
            target = merged.dataset_anomaly_info
            target.reason.extend(part.dataset_anomaly_info.reason)
            target.severity = max(target.severity, part.dataset_anomaly_info.severity)
        for name, info in part.anomaly_info.items():
            target = merged.anomaly_info[name]
            if not target.path.step:
                target.path.CopyFrom(info.path)
            target.reason.extend(info.reason)
            target.severity = max(target.severity, info.severity)
        for dsi in part.drift_skew_info:
            key = ".".join(dsi.path.step)
            if key not in infos:
                infos[key] = merged.drift_skew_info.add()
                infos[key].path.CopyFrom(dsi.path)
            infos[key].skew_measurements.extend(dsi.skew_measurements)
            infos[key].drift_measurements.extend(dsi.drift_measurements)
    for info in [*merged.anomaly_info.values(), merged.dataset_anomaly_info]:
        if not info.reason:
            continue
        info.short_description = (
            info.reason[0].short_description if len(info.reason) == 1 else "Multiple errors"
        )
        info.description = "; ".join(r.description for r in info.reason)
    return merged


def _measurements(anomalies: anomalies_pb2.Anomalies, kind: str) -> list[dict[str, Any]]:
    rows = []
    for dsi in anomalies.drift_skew_info:
        name = ".".join(dsi.path.step)
        for m in getattr(dsi, f"{kind}_measurements"):
            rows.append(
                {
                    "feature": name,
                    "measure": _MEASURE_NAMES.get(m.type, _MEASUREMENT.Type.Name(m.type)),
                    "value": float(m.value),
                    "threshold": float(m.threshold),
                    "flagged": bool(m.value > m.threshold),
                }
            )
    return sorted(rows, key=lambda row: row["feature"])


def _comparison_findings(rows: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    sides = "training and serving" if kind == "skew" else "the previous and the current window"
    return [
        {
            "kind": kind,
            "feature": row["feature"],
            "measure": row["measure"],
            "value": row["value"],
            "threshold": row["threshold"],
            "message": (
                f"feature '{row['feature']}': {kind} - {_MEASURE_TEXT.get(row['measure'], row['measure'])} "
                f"between {sides} is {row['value']:.4g}, above the monitoring.{kind} threshold "
                f"{row['threshold']:g}"
            ),
        }
        for row in rows
        if row["flagged"]
    ]


def _fmt(value: float) -> str:
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _domain_of(feature: schema_pb2.Feature, schema: schema_pb2.Schema):
    try:
        return dv.resolve_domain(feature, schema)
    except KeyError:
        return None, None


def _schema_findings(
    anomalies: anomalies_pb2.Anomalies,
    schema: schema_pb2.Schema,
    stats: statistics_pb2.DatasetFeatureStatistics,
    frame: pd.DataFrame,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Serving-vs-schema anomalies as findings (ERROR) and warnings, with the offending value and
    the rule's bound as numbers where there are any."""
    features = {f.name: f for f in schema.feature}
    by_name = dv.features_by_name(stats)
    findings, warnings = [], []
    if anomalies.data_missing:
        findings.append(
            {
                "kind": "schema",
                "feature": None,
                "measure": "examples",
                "value": 0,
                "threshold": 1,
                "message": "current window: no examples (data missing)",
            }
        )
    dataset = anomalies.dataset_anomaly_info
    if dataset.reason:
        (findings if dataset.severity == _INFO.ERROR else warnings).append(
            {
                "kind": "schema",
                "feature": None,
                "measure": _INFO.Type.Name(dataset.reason[0].type),
                "value": None,
                "threshold": None,
                "message": f"current window: {dataset.description}",
            }
        )
    for name in sorted(anomalies.anomaly_info):
        info = anomalies.anomaly_info[name]
        target = findings if info.severity == _INFO.ERROR else warnings
        feature = features.get(name)
        fs = by_name.get(name)
        for reason in info.reason:
            type_name = _INFO.Type.Name(reason.type)
            entry = {
                "kind": "schema",
                "feature": name,
                "measure": type_name,
                "value": None,
                "threshold": None,
                "message": f"feature '{name}': {reason.description}",
            }
            kind, domain = _domain_of(feature, schema) if feature is not None else (None, None)
            small = type_name in ("FLOAT_TYPE_SMALL_FLOAT", "INT_TYPE_SMALL_INT")
            big = type_name in ("FLOAT_TYPE_BIG_FLOAT", "INT_TYPE_BIG_INT")
            if (small or big) and fs is not None and domain is not None:
                bound = float(domain.min if small else domain.max)
                value = float(fs.num_stats.min if small else fs.num_stats.max)
                values = pd.to_numeric(frame[name], errors="coerce").astype("float64")
                outside = int((values < bound).sum() if small else (values > bound).sum())
                present = int(values.notna().sum())
                side = "min" if small else "max"
                entry.update(
                    measure=f"domain_{side}",
                    value=value,
                    threshold=bound,
                    message=(
                        f"feature '{name}': serving value {_fmt(value)} "
                        f"{'below' if small else 'above'} the schema's {kind} {side} {_fmt(bound)} "
                        f"({outside} of {present} values out of range)"
                    ),
                )
            elif type_name == "ENUM_TYPE_UNEXPECTED_STRING_VALUES" and fs is not None:
                counts = dv.value_counts(fs) or {}
                total = float(dv.common_statistics(fs).num_non_missing) or 1.0
                allowed = set(domain.value) if kind == "string_domain" else set()
                inside = sum(c for v, c in counts.items() if v in allowed)
                min_mass = (
                    feature.distribution_constraints.min_domain_mass
                    if feature is not None
                    and feature.distribution_constraints.HasField("min_domain_mass")
                    else 1.0
                )
                entry.update(
                    measure="out_of_domain_fraction",
                    value=1.0 - inside / total,
                    threshold=1.0 - min_mass,
                )
            target.append(entry)
    return findings, warnings


# --------------------------------------------------------------------------- #
# Predictions and quality
# --------------------------------------------------------------------------- #


def _model_outputs(model_dir: str, frame: pd.DataFrame) -> tuple[list[str], np.ndarray, list[str]]:
    """Run the SavedModel's raw-feature ``serving_default`` on the rows: (predicted labels,
    probabilities, classes). Feature columns absent from the frame count as missing, as at
    serving."""
    from mlops.artifacts import read_model_info
    from mlops.serving.server import load_model

    info = read_model_info(model_dir)
    raw = info.get("raw_features", {})
    model_features = FeatureConfig(
        numeric=raw.get("numeric", []),
        categorical=raw.get("categorical", []),
        image=raw.get("image"),
    )
    rows = frame.copy()
    for name in model_features.raw_features:
        if name not in rows.columns:
            rows[name] = np.nan if name in model_features.numeric else MISSING_CATEGORY
    arrays = frame_to_arrays(rows, model_features)
    model = load_model(model_dir)  # keeps the loaded object alive while its signature runs
    labels: list[str] = []
    probabilities = []
    for start in range(0, len(rows), _PREDICTION_BATCH):
        outputs = model.predict_raw(
            {name: values[start : start + _PREDICTION_BATCH] for name, values in arrays.items()}
        )
        labels.extend(category_text(v) for v in outputs["predicted_label"].tolist())
        probabilities.append(outputs["probabilities"])
    classes = [str(c) for c in info["classes"]]
    probs = np.concatenate(probabilities) if probabilities else np.zeros((0, len(classes)))
    return labels, probs, classes


class _Predictions:
    """Predicted labels of one window, from the request log or from the model (computed once)."""

    def __init__(self, frame: pd.DataFrame, model_dir: str | None) -> None:
        self.frame = frame
        self.model_dir = model_dir
        self._model: tuple[list[str], np.ndarray, list[str]] | None = None

    def model(self) -> tuple[list[str], np.ndarray, list[str]] | None:
        if self.model_dir is None:
            return None
        if self._model is None:
            self._model = _model_outputs(self.model_dir, self.frame)
        return self._model

    def labels(self) -> tuple[pd.Series | None, str | None]:
        """Predicted labels as text (missing ones dropped) and where they came from."""
        if PREDICTED_LABEL in self.frame.columns:
            column = self.frame[PREDICTED_LABEL]
            texts = pd.Series([category_text(v) for v in column.tolist()], index=self.frame.index)
            return texts[texts != MISSING_CATEGORY], PREDICTED_LABEL
        outputs = self.model()
        if outputs is None:
            return None, None
        return pd.Series(outputs[0], index=self.frame.index), "model"


def _distribution(counts: Mapping[str, float]) -> dict[str, float]:
    total = float(sum(counts.values()))
    return {k: (v / total if total else 0.0) for k, v in sorted(counts.items())}


def quality_metrics(
    labels: Iterable[Any],
    predicted: Iterable[Any],
    probabilities: np.ndarray | None = None,
    *,
    classes: list[str] | None = None,
) -> dict[str, Any]:
    """Accuracy, and AUC from probabilities (positive class for two classes, one-vs-rest macro
    average over the classes present for more)."""
    truth = np.array([category_text(v) for v in labels], dtype=object)
    guess = np.array([category_text(v) for v in predicted], dtype=object)
    result: dict[str, Any] = {
        "examples": int(truth.size),
        "accuracy": float(np.mean(truth == guess)) if truth.size else None,
        "auc": None,
    }
    if probabilities is not None and classes and truth.size:
        if len(classes) == 2:
            result["auc"] = binary_auc(probabilities[:, 1], truth == classes[1])
        else:
            aucs = [
                auc
                for i, name in enumerate(classes)
                if (auc := binary_auc(probabilities[:, i], truth == name)) is not None
            ]
            result["auc"] = float(np.mean(aucs)) if aucs else None
    return result


def _baseline_overall(baseline_metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """Overall metrics from an evaluation summary (metrics.json) or an {accuracy, auc} mapping."""
    if not baseline_metrics:
        return {}
    metrics: Any = baseline_metrics
    if isinstance(metrics.get("metrics"), Mapping):
        metrics = metrics["metrics"]
    if isinstance(metrics.get("overall"), Mapping):
        metrics = metrics["overall"]
    return {
        k: float(metrics[k])
        for k in ("accuracy", "auc")
        if isinstance(metrics.get(k), int | float) and not isinstance(metrics.get(k), bool)
    }


# --------------------------------------------------------------------------- #
# Monitoring run
# --------------------------------------------------------------------------- #


def _training_split(stats: statistics_pb2.DatasetFeatureStatisticsList, path: str):
    names = [ds.name for ds in stats.datasets]
    if TRAINING_SPLIT in names:
        return dv.split_statistics(stats, TRAINING_SPLIT)
    if len(names) == 1:
        return stats.datasets[0]
    raise ValueError(
        f"training statistics {path}: no dataset named {TRAINING_SPLIT!r} (datasets: {names})"
    )


def _monitored_frame(frame: pd.DataFrame, config: PipelineConfig, what: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}")
    dropped = [c for c in config.data.exclude_columns if c in frame.columns]
    return _type_frame(frame.drop(columns=dropped), config.features)


def _prediction_drift(
    config: PipelineConfig,
    current: _Predictions,
    previous: _Predictions | None,
    training: statistics_pb2.DatasetFeatureStatistics,
) -> dict[str, Any]:
    threshold = config.monitoring.prediction_drift_linf
    result: dict[str, Any] = {"available": False, "threshold": threshold, "flagged": False}
    labels, source = current.labels()
    if labels is None:
        result["reason"] = (
            f"no predictions: the current window has no {PREDICTED_LABEL} column and no model "
            "was given"
        )
        return result
    baseline_counts: dict[str, float] | None = None
    if previous is not None:
        previous_labels, _ = previous.labels()
        if previous_labels is not None and len(previous_labels):
            baseline_counts = previous_labels.value_counts().astype(float).to_dict()
            result["baseline"] = "previous window"
    if baseline_counts is None:
        label_fs = dv.features_by_name(training).get(config.data.label)
        counts = dv.value_counts(label_fs) if label_fs is not None else None
        if counts:
            baseline_counts = dict(counts)
            result["baseline"] = "training labels"
    if baseline_counts is None:
        result["reason"] = (
            f"no baseline: no previous window predictions and no '{config.data.label}' value "
            "counts in the training statistics"
        )
        return result
    if not len(labels):
        result["reason"] = "no predictions in the current window"
        return result
    current_counts = labels.value_counts().astype(float).to_dict()
    distance, where = dv.l_infinity_distance(baseline_counts, current_counts)
    result.update(
        available=True,
        source=source,
        distance=float(distance),
        flagged=bool(distance > threshold),
        baseline_distribution=_distribution(baseline_counts),
        current_distribution=_distribution(current_counts),
    )
    result["class"] = where
    return result


def _prediction_anomalies(drift: dict[str, Any]) -> anomalies_pb2.Anomalies:
    """Prediction drift as a drift_skew_info entry on ``__predicted_label__`` (skew against the
    training labels, drift against the previous window)."""
    out = anomalies_pb2.Anomalies()
    if not drift["available"]:
        return out
    kind = "drift" if drift["baseline"] == "previous window" else "skew"
    info = out.drift_skew_info.add()
    info.path.step.append(PREDICTED_LABEL)
    getattr(info, f"{kind}_measurements").add(
        type=_MEASUREMENT.L_INFTY, value=drift["distance"], threshold=drift["threshold"]
    )
    if drift["flagged"]:
        anomaly = out.anomaly_info[PREDICTED_LABEL]
        anomaly.path.step.append(PREDICTED_LABEL)
        anomaly.severity = _INFO.ERROR
        anomaly.reason.add(
            type=_INFO.COMPARATOR_L_INFTY_HIGH,
            short_description="High Linfty distance of the predicted labels",
            description=_prediction_message(drift),
        )
    return out


def _prediction_message(drift: dict[str, Any]) -> str:
    return (
        f"prediction drift - L-infinity distance between the predicted-label distribution of the "
        f"current window and the {drift['baseline']} is {drift['distance']:.4g} (largest at class "
        f"{drift['class']!r}), above monitoring.prediction_drift_linf {drift['threshold']:g}"
    )


def _quality(
    config: PipelineConfig,
    frame: pd.DataFrame,
    predictions: _Predictions,
    baseline_metrics: Mapping[str, Any] | None,
) -> dict[str, Any] | None:
    label = config.data.label
    if label not in frame.columns:
        return None
    labelled = frame[label].notna().to_numpy()
    result: dict[str, Any] = {"available": False, "labelled_examples": int(labelled.sum())}
    if not labelled.any():
        result["reason"] = f"label column '{label}' has no values in the current window"
        return result
    truth = frame[label][labelled].tolist()
    outputs = predictions.model()
    if outputs is not None:
        predicted, probabilities, classes = outputs
        metrics = quality_metrics(
            truth,
            np.asarray(predicted, dtype=object)[labelled],
            probabilities[labelled],
            classes=classes,
        )
        result["source"] = "model"
    elif PREDICTED_LABEL in frame.columns:
        metrics = quality_metrics(truth, frame[PREDICTED_LABEL][labelled].tolist())
        result["source"] = PREDICTED_LABEL
    else:
        result["reason"] = f"no predictions: no {PREDICTED_LABEL} column and no model was given"
        return result
    result.update(available=True, **metrics)
    baseline = _baseline_overall(baseline_metrics)
    result["baseline"] = baseline
    result["change"] = {k: result[k] - v for k, v in baseline.items() if result.get(k) is not None}
    bound = config.monitoring.retrain.min_quality
    result["min_quality"] = (
        {"metric": bound.metric, "lower_bound": bound.lower_bound} if bound else None
    )
    value = result.get(bound.metric) if bound else None
    result["flagged"] = bool(bound and value is not None and value < bound.lower_bound)
    return result


def run_monitoring(
    config: PipelineConfig,
    *,
    training_statistics: str | Path,
    schema: str | Path,
    current: pd.DataFrame,
    previous: pd.DataFrame | None = None,
    model_dir: str | Path | None = None,
    output_dir: str | Path,
    baseline_metrics: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Compare the current serving window with training (skew), the previous window (drift) and
    the schema (domains, missing columns, unexpected categories); check predicted-label drift and,
    when labels are present, model quality. Writes ``FeatureStats.pb``, ``SchemaDiff.pb``,
    ``monitoring.json`` and ``report.html`` to ``output_dir`` and returns the summary.

    Prediction drift uses the served ``__predicted_label__`` when the window has it, else the
    model's predictions; quality uses the model (accuracy and AUC) when ``model_dir`` is given,
    else ``__predicted_label__`` (accuracy only)."""
    train_stats_list = dv.read_statistics(training_statistics)
    train_stats = _training_split(train_stats_list, str(training_statistics))
    monitor_schema = _monitoring_schema(dv.load_schema(schema), config, str(schema))
    label = config.data.label
    model = str(model_dir) if model_dir is not None else None

    frames = {CURRENT: _monitored_frame(current, config, "current")}
    if previous is not None:
        frames[PREVIOUS] = _monitored_frame(previous, config, "previous")
    data_frames = {
        name: frame[[c for c in frame.columns if not _is_meta(c)]] for name, frame in frames.items()
    }
    if config.features.image is not None:
        from mlops.images import content_keys

        # Images are compared as their SHA-256, as validation computed training's statistics:
        # missing images and repeated images show; pixel distributions are not monitored.
        data_frames = {name: content_keys(frame) for name, frame in data_frames.items()}
    has_label = any(label in frame.columns for frame in data_frames.values())
    stats = dv.compute_statistics(data_frames, label=label if has_label else None)
    current_stats = dv.split_statistics(stats, CURRENT)

    environment = SERVING if SERVING in monitor_schema.default_environment else None
    if monitor_schema.default_environment and environment is None:
        raise ValueError(
            f"schema {schema}: default_environment {list(monitor_schema.default_environment)} "
            f"has no {SERVING!r} environment to validate serving data in"
        )
    ignored = {label} if label not in data_frames[CURRENT].columns else set()
    validation = unused_columns_as_warnings(
        dv.validate_statistics(
            current_stats, monitor_schema, environment=environment, ignore_features=ignored
        ),
        set(config.features.raw_features),
    )
    skew = dv.compare_distributions(train_stats, current_stats, schema=monitor_schema, kind="skew")
    parts = [validation, skew]
    if previous is not None:
        parts.append(
            dv.compare_distributions(
                dv.split_statistics(stats, PREVIOUS),
                current_stats,
                schema=monitor_schema,
                kind="drift",
            )
        )

    current_predictions = _Predictions(frames[CURRENT], model)
    previous_predictions = _Predictions(frames[PREVIOUS], model) if previous is not None else None
    prediction_drift = _prediction_drift(
        config, current_predictions, previous_predictions, train_stats
    )
    parts.append(_prediction_anomalies(prediction_drift))
    anomalies = _merge_anomalies(monitor_schema, parts)

    skew_rows = [r for r in _measurements(anomalies, "skew") if r["feature"] != PREDICTED_LABEL]
    drift_rows = [r for r in _measurements(anomalies, "drift") if r["feature"] != PREDICTED_LABEL]
    schema_findings, warnings = _schema_findings(
        validation, monitor_schema, current_stats, data_frames[CURRENT]
    )
    for name, bad in sorted(frames[CURRENT].attrs.get("unparsed", {}).items()):
        schema_findings.append(
            {
                "kind": "schema",
                "feature": name,
                "measure": "unparsed_values",
                "value": bad["count"],
                "threshold": 0,
                "message": f"feature '{name}': {bad['count']} values are not numbers "
                f"(e.g. {', '.join(repr(v) for v in bad['examples'])})",
            }
        )
    for part in parts[1:]:
        for name, info in sorted(part.anomaly_info.items()):
            if info.severity != _INFO.ERROR:
                warnings.extend(
                    {
                        "kind": "comparison",
                        "feature": name,
                        "measure": _INFO.Type.Name(r.type),
                        "value": None,
                        "threshold": None,
                        "message": f"feature '{name}': {r.description}",
                    }
                    for r in info.reason
                )
    for line in frames[CURRENT].attrs.get("bad_rows", []):
        warnings.append(
            {
                "kind": "input",
                "feature": None,
                "measure": "bad_row",
                "value": None,
                "threshold": None,
                "message": f"current window: skipped {line}",
            }
        )

    if not prediction_drift["available"]:
        warnings.append(
            {
                "kind": "prediction_drift",
                "feature": None,
                "measure": "l_infinity",
                "value": None,
                "threshold": prediction_drift["threshold"],
                "message": f"prediction drift not checked: {prediction_drift['reason']}",
            }
        )
    quality = _quality(config, frames[CURRENT], current_predictions, baseline_metrics)
    findings = [
        *schema_findings,
        *_comparison_findings(skew_rows, "skew"),
        *_comparison_findings(drift_rows, "drift"),
    ]
    if prediction_drift["flagged"]:
        findings.append(
            {
                "kind": "prediction_drift",
                "feature": None,
                "measure": "l_infinity",
                "value": prediction_drift["distance"],
                "threshold": prediction_drift["threshold"],
                "message": _prediction_message(prediction_drift),
            }
        )
    if quality and quality.get("flagged"):
        bound = quality["min_quality"]
        findings.append(
            {
                "kind": "quality",
                "feature": None,
                "measure": bound["metric"],
                "value": quality[bound["metric"]],
                "threshold": bound["lower_bound"],
                "message": (
                    f"quality - {bound['metric']} on {quality['labelled_examples']} labelled "
                    f"serving examples is {quality[bound['metric']]:.4g}, below "
                    f"monitoring.retrain.min_quality {bound['lower_bound']:g}"
                ),
            }
        )
    elif quality and quality.get("available") and config.monitoring.retrain.min_quality:
        metric = config.monitoring.retrain.min_quality.metric
        if quality.get(metric) is None:
            warnings.append(
                {
                    "kind": "quality",
                    "feature": None,
                    "measure": metric,
                    "value": None,
                    "threshold": config.monitoring.retrain.min_quality.lower_bound,
                    "message": f"quality - {metric} cannot be computed from the "
                    f"{quality['source']} predictions (AUC needs the model's probabilities)",
                }
            )

    summary: dict[str, Any] = {
        "config": config.name,
        "examples": {
            "training": int(train_stats.num_examples),
            "current": len(frames[CURRENT]),
            "previous": len(frames[PREVIOUS]) if previous is not None else None,
            "labelled": quality["labelled_examples"] if quality else 0,
        },
        "flagged": bool(findings),
        "findings": findings,
        "warnings": warnings,
        "skew": skew_rows,
        "drift": drift_rows,
        "schema_anomalies": dv.anomalies_to_dict(validation)["features"],
        "prediction_drift": prediction_drift,
        "quality": quality,
        "anomalies": dv.anomalies_to_dict(anomalies),
    }
    report = _report_html(config, summary, train_stats, stats)
    with atomic_dir(output_dir) as out:
        dv.write_statistics(stats, out / dv.STATS_FILE)
        for ds in stats.datasets:
            single = statistics_pb2.DatasetFeatureStatisticsList(datasets=[ds])
            dv.write_statistics(single, out / f"Split-{ds.name}" / dv.STATS_FILE)
        dv.write_anomalies(anomalies, out / dv.ANOMALIES_FILE)
        write_json_atomic(out / MONITORING_SUMMARY_FILE, summary)
        (out / REPORT_FILE).write_text(report, encoding="utf-8")
    return summary


# --------------------------------------------------------------------------- #
# Report
# --------------------------------------------------------------------------- #


def _report_html(
    config: PipelineConfig,
    summary: dict[str, Any],
    train_stats: statistics_pb2.DatasetFeatureStatistics,
    stats: statistics_pb2.DatasetFeatureStatisticsList,
) -> str:
    examples = summary["examples"]
    status = (
        f'<span class="bad">{len(summary["findings"])} finding(s)</span>'
        if summary["flagged"]
        else '<span class="ok">nothing flagged</span>'
    )
    parts = [
        f"<h1>{html.escape(config.name)}: monitoring report</h1>",
        f"<p>{status} · current window {examples['current']} examples"
        + (f", previous window {examples['previous']}" if examples["previous"] is not None else "")
        + f", training {examples['training']}</p>",
        "<h2>Findings</h2>",
    ]
    if summary["findings"]:
        parts.append(
            "<ul>"
            + "".join(f"<li>{html.escape(f['message'])}</li>" for f in summary["findings"])
            + "</ul>"
        )
    else:
        parts.append("<p>None.</p>")
    if summary["warnings"]:
        parts.append("<p>Warnings:</p><ul>")
        parts.extend(f"<li>{html.escape(w['message'])}</li>" for w in summary["warnings"])
        parts.append("</ul>")

    parts.append("<h2>Distances vs thresholds</h2>")
    rows = [
        [kind, r["feature"], r["measure"], r["value"], r["threshold"], r["flagged"]]
        for kind in ("skew", "drift")
        for r in summary[kind]
    ]
    drift = summary["prediction_drift"]
    if drift["available"]:
        rows.append(
            [
                f"predictions vs {drift['baseline']}",
                PREDICTED_LABEL,
                "l_infinity",
                drift["distance"],
                drift["threshold"],
                drift["flagged"],
            ]
        )
    parts.append(
        html_table(["comparison", "feature", "measure", "value", "threshold", "flagged"], rows)
    )

    parts.append("<h2>Predictions</h2>")
    if drift["available"]:
        labels = sorted(set(drift["baseline_distribution"]) | set(drift["current_distribution"]))
        parts.append(
            bar_chart_html(
                "predicted-label distribution",
                labels,
                {
                    drift["baseline"]: [drift["baseline_distribution"].get(c, 0.0) for c in labels],
                    "current": [drift["current_distribution"].get(c, 0.0) for c in labels],
                },
            )
        )
    else:
        parts.append(f"<p>{html.escape(drift.get('reason', 'not available'))}</p>")

    quality = summary["quality"]
    parts.append("<h2>Quality on labelled serving data</h2>")
    if quality and quality.get("available"):
        baseline = quality.get("baseline", {})
        parts.append(
            html_table(
                ["examples", "accuracy", "auc", "baseline accuracy", "baseline auc", "flagged"],
                [
                    [
                        quality["examples"],
                        quality["accuracy"],
                        quality["auc"],
                        baseline.get("accuracy"),
                        baseline.get("auc"),
                        quality["flagged"],
                    ]
                ],
            )
        )
    else:
        reason = quality.get("reason") if quality else "no labels in the current window"
        parts.append(f"<p>{html.escape(str(reason))}</p>")

    parts.append("<h2>Distributions</h2>")
    compared = statistics_pb2.DatasetFeatureStatisticsList()
    reference = compared.datasets.add()
    reference.CopyFrom(train_stats)
    reference.name = "training"
    compared.datasets.extend(stats.datasets)
    names = dv.features_by_name(train_stats)
    figures = feature_distribution_figures(
        compared, [n for n in config.features.raw_features if n in names]
    )
    parts.append(figure_grid(list(figures.values())))
    return html_page(f"{config.name} monitoring", "".join(parts))


# --------------------------------------------------------------------------- #
# Retraining decision
# --------------------------------------------------------------------------- #


def _utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def decide_retrain(
    config: PipelineConfig,
    summary: Mapping[str, Any],
    *,
    last_retrain_at: datetime | None,
    now: datetime,
) -> dict[str, Any]:
    """Whether a monitoring summary should launch retraining: ``{"retrain", "reasons",
    "blocked_by"}``. Reasons name the finding (feature, measure, value, threshold); too few
    examples, the cool-down or ``monitoring.retrain.enabled: false`` block it."""
    retrain = config.monitoring.retrain
    unknown = sorted(set(retrain.features) - set(config.features.raw_features))
    if unknown:
        raise ValueError(
            f"monitoring.retrain.features names {unknown}, not features of the model "
            f"(features: {config.features.raw_features})"
        )
    watched = set(retrain.features) or None
    reasons: list[str] = []
    for finding in summary.get("findings", []):
        kind = finding.get("kind")
        if kind in FEATURE_KINDS:
            feature = finding.get("feature")
            # Dataset-level findings (e.g. no data) are for operators; retraining cannot fix them.
            if feature is None or (watched is not None and feature not in watched):
                continue
            reasons.append(finding["message"])
        elif kind == "prediction_drift" and retrain.on_prediction_drift:
            reasons.append(finding["message"])
    quality = summary.get("quality") or {}
    if retrain.min_quality and quality.get("available"):
        metric, bound = retrain.min_quality.metric, retrain.min_quality.lower_bound
        value = quality.get(metric)
        if value is not None and value < bound:
            reasons.append(
                f"quality - {metric} on {quality.get('labelled_examples')} labelled serving "
                f"examples is {value:.4g}, below monitoring.retrain.min_quality {bound:g}"
            )

    blocked_by: list[str] = []
    if not retrain.enabled:
        blocked_by.append("monitoring.retrain.enabled is false")
    examples = int(summary.get("examples", {}).get("current") or 0)
    if examples < retrain.min_examples:
        blocked_by.append(
            f"too few examples: the current window has {examples}, below "
            f"monitoring.retrain.min_examples {retrain.min_examples}"
        )
    if last_retrain_at is not None:
        elapsed = _utc(now) - _utc(last_retrain_at)
        cooldown = timedelta(hours=retrain.cooldown_hours)
        if elapsed < cooldown:
            left = (cooldown - elapsed).total_seconds() / 3600
            blocked_by.append(
                f"cool-down: last retraining launched at {_utc(last_retrain_at).isoformat()}, "
                f"{elapsed.total_seconds() / 3600:.1f} h ago; monitoring.retrain.cooldown_hours "
                f"is {retrain.cooldown_hours:g} ({left:.1f} h left)"
            )
    return {
        "retrain": bool(reasons) and not blocked_by,
        "reasons": reasons,
        "blocked_by": blocked_by,
    }


# --------------------------------------------------------------------------- #
# Retraining state (the cool-down survives between runs)
# --------------------------------------------------------------------------- #


def _read_state(location: str | Path) -> dict[str, Any] | None:
    """The state at a local path or gs:// URI, or None when there is none yet."""
    data = gcs.read_bytes(location)
    if data is None:
        return None
    try:
        state = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ValueError(f"retrain state {location} is not valid JSON: {exc}") from exc
    if not isinstance(state, dict):
        raise ValueError(f"retrain state {location} must hold a JSON object")
    return state


def read_last_retrain(location: str | Path) -> datetime | None:
    """When retraining was last launched (UTC), or None when there is no state yet. `location`
    is a local path or a gs:// URI (the state must outlive a Vertex AI container)."""
    value = (_read_state(location) or {}).get("last_retrain_at")
    if value is None:
        return None
    try:
        return _utc(datetime.fromisoformat(value))
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"retrain state {location}: last_retrain_at {value!r} is not an ISO 8601 time"
        ) from exc


def record_retrain(location: str | Path, when: datetime, reasons: list[str]) -> None:
    """Record a retraining launch (time and reasons), keeping a short history; the file (or
    Cloud Storage object) is replaced whole, never half-written."""
    state = _read_state(location) or {}
    history = list(state.get("history", []))
    entry = {"at": _utc(when).isoformat(), "reasons": list(reasons)}
    history.append(entry)
    record = {
        "last_retrain_at": entry["at"],
        "reasons": entry["reasons"],
        "history": history[-_HISTORY_LENGTH:],
    }
    gcs.write_bytes(location, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
