"""Validate statistics against a schema into TFDV's `Anomalies`, and summarise anomalies."""

from __future__ import annotations

import math
from collections.abc import Iterable

from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from mlops.tfdv.statistics import (
    all_integral,
    as_dataset,
    common_statistics,
    features_by_name,
    value_counts,
)

_FNS = statistics_pb2.FeatureNameStatistics
_INFO = anomalies_pb2.AnomalyInfo
_ERROR = _INFO.ERROR
_WARNING = _INFO.WARNING
_EPS = 1e-12


# --------------------------------------------------------------------------- #
# Validation
# --------------------------------------------------------------------------- #


def _fmt(value: float) -> str:
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.3g}%"


class AnomalyCollector:
    """Accumulate reasons per feature and build the Anomalies proto."""

    def __init__(self, schema: schema_pb2.Schema | None) -> None:
        self.anomalies = anomalies_pb2.Anomalies(
            anomaly_name_format=anomalies_pb2.Anomalies.SERIALIZED_PATH
        )
        if schema is not None:
            self.anomalies.baseline.CopyFrom(schema)
        self._severity: dict[str, int] = {}

    def add(self, feature: str, kind: str, short: str, description: str, severity: int = _ERROR):
        info = self.anomalies.anomaly_info[feature]
        if not info.path.step:
            info.path.step.append(feature)
        info.reason.add(
            type=_INFO.Type.Value(kind), short_description=short, description=description
        )
        self._severity[feature] = max(self._severity.get(feature, 0), severity)

    def add_dataset(self, kind: str, short: str, description: str, severity: int = _ERROR):
        info = self.anomalies.dataset_anomaly_info
        info.reason.add(
            type=_INFO.Type.Value(kind), short_description=short, description=description
        )
        info.severity = max(info.severity, severity)
        info.short_description = short if len(info.reason) == 1 else "Multiple errors"
        info.description = "; ".join(r.description for r in info.reason)

    def build(self) -> anomalies_pb2.Anomalies:
        for feature, info in self.anomalies.anomaly_info.items():
            info.severity = self._severity[feature]
            if len(info.reason) == 1:
                info.short_description = info.reason[0].short_description
            else:
                info.short_description = "Multiple errors"
            info.description = "; ".join(r.description for r in info.reason)
        return self.anomalies


def _in_environment(feature: schema_pb2.Feature, environment: str | None) -> bool:
    if environment is None:
        return True
    if feature.in_environment:
        return environment in feature.in_environment
    return environment not in feature.not_in_environment


def resolve_domain(feature: schema_pb2.Feature, schema: schema_pb2.Schema):
    """Return (domain kind, domain message) or (None, None); raise KeyError if dangling."""
    which = feature.WhichOneof("domain_info")
    if which is None:
        return None, None
    if which != "domain":
        return which, getattr(feature, which)
    for kind in ("string_domain", "int_domain", "float_domain"):
        for domain in getattr(schema, kind):
            if domain.name == feature.domain:
                return kind, domain
    raise KeyError(feature.domain)


_TYPE_NAMES = {schema_pb2.INT: "INT", schema_pb2.FLOAT: "FLOAT", schema_pb2.BYTES: "BYTES"}


def _type_ok(feature: schema_pb2.Feature, fs: statistics_pb2.FeatureNameStatistics) -> bool:
    if feature.type == schema_pb2.BYTES:
        return fs.type in (_FNS.STRING, _FNS.BYTES)
    if feature.type == schema_pb2.FLOAT:
        return fs.type in (_FNS.FLOAT, _FNS.INT)
    if feature.type == schema_pb2.INT:
        return fs.type == _FNS.INT or (fs.type == _FNS.FLOAT and all_integral(fs))
    return True


def validate_statistics(
    stats: statistics_pb2.DatasetFeatureStatistics,
    schema: schema_pb2.Schema,
    *,
    environment: str | None = None,
    ignore_features: Iterable[str] = frozenset(),
) -> anomalies_pb2.Anomalies:
    """Validate one split's statistics against a schema (``tfdv.validate_statistics``).

    With ``environment`` set, only features in that environment are expected:
    those listing it in ``in_environment`` or, without ``in_environment``, not
    listing it in ``not_in_environment``.
    """
    if (
        environment is not None
        and schema.default_environment
        and environment not in schema.default_environment
    ):
        raise ValueError(
            f"environment {environment!r} is not in the schema's default_environment "
            f"{list(schema.default_environment)}"
        )
    stats = as_dataset(stats)
    ignored = set(ignore_features)
    out = AnomalyCollector(schema)
    if stats.num_examples == 0:
        out.anomalies.data_missing = True
        return out.build()

    constraints = schema.dataset_constraints
    if (
        constraints.HasField("min_examples_count")
        and stats.num_examples < constraints.min_examples_count
    ):
        out.add_dataset(
            "DATASET_LOW_NUM_EXAMPLES",
            "Low num examples in dataset",
            f"{stats.num_examples} examples, below dataset_constraints min_examples_count "
            f"{constraints.min_examples_count}",
        )
    if (
        constraints.HasField("max_examples_count")
        and stats.num_examples > constraints.max_examples_count
    ):
        out.add_dataset(
            "DATASET_HIGH_NUM_EXAMPLES",
            "High num examples in dataset",
            f"{stats.num_examples} examples, above dataset_constraints max_examples_count "
            f"{constraints.max_examples_count}",
        )

    by_name = features_by_name(stats)
    schema_names = {f.name for f in schema.feature}
    for name in by_name:
        if name not in schema_names and name not in ignored:
            out.add(
                name,
                "SCHEMA_NEW_COLUMN",
                "New column",
                "column is in the data but not in the schema",
                _WARNING,
            )

    for feature in schema.feature:
        name = feature.name
        if name in ignored or feature.deprecated or not _in_environment(feature, environment):
            continue
        presence = feature.presence
        required = presence.min_count >= 1 or presence.min_fraction > 0
        fs = by_name.get(name)
        if fs is None:
            if required:
                rule = (
                    f"presence min_fraction {_fmt(presence.min_fraction)}"
                    if presence.min_fraction > 0
                    else f"presence min_count {presence.min_count}"
                )
                out.add(
                    name,
                    "SCHEMA_MISSING_COLUMN",
                    "Column dropped",
                    f"column is missing from the data but required by the schema ({rule})",
                )
            continue
        _check_feature(out, feature, fs, schema, stats.num_examples)
    return out.build()


def _check_feature(
    out: AnomalyCollector,
    feature: schema_pb2.Feature,
    fs: statistics_pb2.FeatureNameStatistics,
    schema: schema_pb2.Schema,
    num_examples: int,
) -> None:
    name = feature.name
    common = common_statistics(fs)
    present = common.num_non_missing
    presence = feature.presence
    if presence.HasField("min_fraction") and present / num_examples < presence.min_fraction - _EPS:
        out.add(
            name,
            "FEATURE_TYPE_LOW_FRACTION_PRESENT",
            "Column dropped",
            f"present in {_pct(present / num_examples)} of examples "
            f"({num_examples - present} of {num_examples} missing), below presence "
            f"min_fraction {_fmt(presence.min_fraction)}",
        )
    if present < presence.min_count:
        out.add(
            name,
            "FEATURE_TYPE_LOW_NUMBER_PRESENT",
            "Column dropped",
            f"present in {present} examples, below presence min_count {presence.min_count}",
        )

    if not _type_ok(feature, fs):
        data_type = _FNS.Type.Name(fs.type)
        detail = " with non-integral values" if fs.type == _FNS.FLOAT else ""
        out.add(
            name,
            "UNEXPECTED_DATA_TYPE",
            "Unexpected data type",
            f"expected data of type {_TYPE_NAMES.get(feature.type, feature.type)} "
            f"but got {data_type}{detail}",
        )
        return

    try:
        kind, domain = resolve_domain(feature, schema)
    except KeyError:
        out.add(
            name,
            "INVALID_DOMAIN_SPECIFICATION",
            "Invalid domain specification",
            f"domain {feature.domain!r} is not defined in the schema",
        )
        return
    if present == 0 or kind is None:
        return
    if kind == "string_domain" and fs.type in (_FNS.STRING, _FNS.BYTES):
        _check_string_domain(out, feature, fs, domain)
    elif kind in ("int_domain", "float_domain") and fs.WhichOneof("stats") == "num_stats":
        _check_numeric_domain(out, name, fs.num_stats, kind, domain)


def _check_string_domain(
    out: AnomalyCollector,
    feature: schema_pb2.Feature,
    fs: statistics_pb2.FeatureNameStatistics,
    domain: schema_pb2.StringDomain,
) -> None:
    counts = value_counts(fs) or {}
    total = float(common_statistics(fs).num_non_missing)
    allowed = set(domain.value)
    in_domain = sum(c for v, c in counts.items() if v in allowed)
    unexpected = sorted(
        ((v, c) for v, c in counts.items() if v not in allowed), key=lambda kv: (-kv[1], kv[0])
    )
    unseen = max(total - sum(counts.values()), 0.0)
    in_fraction = in_domain / total
    min_mass = 1.0
    if feature.distribution_constraints.HasField("min_domain_mass"):
        min_mass = feature.distribution_constraints.min_domain_mass
    if in_fraction >= min_mass - _EPS or not (unexpected or unseen):
        return
    listed = ", ".join(f"{v!r} ({_pct(c / total)})" for v, c in unexpected[:10])
    more = len(unexpected) - 10
    if more > 0:
        listed += f" and {more} more"
    if unseen:
        listed += f"; {_pct(unseen / total)} of values not in the statistics counted as unexpected"
    out.add(
        feature.name,
        "ENUM_TYPE_UNEXPECTED_STRING_VALUES",
        "Unexpected string values",
        f"{_pct(1.0 - in_fraction)} of values outside the schema domain "
        f"(min_domain_mass {_fmt(min_mass)}): {listed}",
    )


def _check_numeric_domain(
    out: AnomalyCollector,
    name: str,
    num: statistics_pb2.NumericStatistics,
    kind: str,
    domain: schema_pb2.IntDomain | schema_pb2.FloatDomain,
) -> None:
    small, big, short = (
        ("INT_TYPE_SMALL_INT", "INT_TYPE_BIG_INT", "Out-of-range values")
        if kind == "int_domain"
        else ("FLOAT_TYPE_SMALL_FLOAT", "FLOAT_TYPE_BIG_FLOAT", "Out-of-range values")
    )
    if domain.HasField("min") and num.min < domain.min:
        out.add(name, small, short, f"value {_fmt(num.min)} below {kind} min {_fmt(domain.min)}")
    if domain.HasField("max") and num.max > domain.max:
        out.add(name, big, short, f"value {_fmt(num.max)} above {kind} max {_fmt(domain.max)}")
    if (
        kind == "float_domain"
        and domain.disallow_inf
        and (math.isinf(num.min) or math.isinf(num.max))
    ):
        out.add(
            name,
            "FLOAT_TYPE_HAS_INF",
            "Infinite values",
            "infinite values but float_domain disallow_inf",
        )


# --------------------------------------------------------------------------- #
# Summaries
# --------------------------------------------------------------------------- #


def blocking_anomalies(anomalies: anomalies_pb2.Anomalies) -> list[str]:
    """One human-readable message per ERROR anomaly, naming feature, values and rule."""
    messages = []
    if anomalies.data_missing:
        messages.append("dataset: no examples (data missing)")
    dataset = anomalies.dataset_anomaly_info
    if dataset.severity == _ERROR:
        messages.append(f"dataset: {dataset.description}")
    for name in sorted(anomalies.anomaly_info):
        info = anomalies.anomaly_info[name]
        if info.severity == _ERROR:
            messages.append(f"feature {name!r}: {info.description}")
    return messages


def anomalies_to_dict(anomalies: anomalies_pb2.Anomalies) -> dict:
    """Small JSON-friendly summary of an Anomalies proto for a run manifest."""
    features = {}
    for name in sorted(anomalies.anomaly_info):
        info = anomalies.anomaly_info[name]
        features[name] = {
            "severity": _INFO.Severity.Name(info.severity),
            "types": [_INFO.Type.Name(r.type) for r in info.reason],
            "description": info.description,
        }
    measurements = {}
    for dsi in anomalies.drift_skew_info:
        name = ".".join(dsi.path.step)
        for kind, items in (("skew", dsi.skew_measurements), ("drift", dsi.drift_measurements)):
            for m in items:
                measurements.setdefault(name, []).append(
                    {
                        "kind": kind,
                        "type": anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(m.type),
                        "value": m.value,
                        "threshold": m.threshold,
                    }
                )
    dataset = anomalies.dataset_anomaly_info
    blocking = blocking_anomalies(anomalies)
    return {
        "data_missing": anomalies.data_missing,
        "num_errors": len(blocking),
        "num_warnings": sum(1 for f in features.values() if f["severity"] == "WARNING"),
        "blocking": bool(blocking),
        "dataset": (
            {
                "severity": _INFO.Severity.Name(dataset.severity),
                "description": dataset.description,
            }
            if dataset.reason
            else None
        ),
        "features": features,
        "drift_skew": measurements,
    }
