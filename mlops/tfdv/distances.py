"""Skew and drift: L-infinity distance for categorical features, Jensen-Shannon divergence for
numeric histograms, with thresholds from the schema's skew/drift comparators."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from mlops.tfdv.statistics import (
    as_dataset,
    common_statistics,
    features_by_name,
    numeric_histogram,
    value_counts,
)
from mlops.tfdv.validation import AnomalyCollector, resolve_domain

_FNS = statistics_pb2.FeatureNameStatistics
_HIST = statistics_pb2.Histogram
_INFO = anomalies_pb2.AnomalyInfo
_WARNING = _INFO.WARNING


# --------------------------------------------------------------------------- #
# Distribution distances
# --------------------------------------------------------------------------- #


def l_infinity_distance(
    base_counts: Mapping[str, float],
    other_counts: Mapping[str, float],
    *,
    base_total: float | None = None,
    other_total: float | None = None,
) -> tuple[float, str | None]:
    """L-infinity distance between two normalised value-count distributions.

    Returns the distance and the value where it is reached (ties: smallest
    value). Totals default to the sums of the counts; pass the true number of
    values when the counts are a truncated top-k.
    """
    base_total = float(sum(base_counts.values())) if base_total is None else base_total
    other_total = float(sum(other_counts.values())) if other_total is None else other_total
    best, best_value = 0.0, None
    for value in sorted(set(base_counts) | set(other_counts)):
        p = base_counts.get(value, 0.0) / base_total if base_total else 0.0
        q = other_counts.get(value, 0.0) / other_total if other_total else 0.0
        if abs(p - q) > best:
            best, best_value = abs(p - q), value
    return best, best_value


def js_divergence(p: Iterable[float], q: Iterable[float]) -> float:
    """Jensen-Shannon divergence (log base 2, in [0, 1]) between two histograms."""
    p_arr = np.asarray(list(p), dtype=float)
    q_arr = np.asarray(list(q), dtype=float)
    if p_arr.shape != q_arr.shape:
        raise ValueError("histograms must have the same number of buckets")
    if p_arr.sum() <= 0 or q_arr.sum() <= 0:
        raise ValueError("histograms must have positive mass")
    p_arr = p_arr / p_arr.sum()
    q_arr = q_arr / q_arr.sum()
    m = (p_arr + q_arr) / 2

    def _kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return min(max(0.5 * _kl(p_arr) + 0.5 * _kl(q_arr), 0.0), 1.0)


def _cdf_knots(fs: statistics_pb2.FeatureNameStatistics) -> tuple[np.ndarray, np.ndarray]:
    """Points (x, mass <= x) of a feature's CDF known from its histograms.

    Both histograms are merged: the QUANTILES one resolves dense regions and
    point masses (zero-width buckets), the STANDARD one places outliers, which
    otherwise stretch the end quantile buckets. Within one x, the smaller mass
    is the left limit and the larger one the value at x.
    """
    xs: list[float] = []
    masses: list[float] = []
    for kind in (_HIST.QUANTILES, _HIST.STANDARD):
        hist = numeric_histogram(fs, kind)
        if hist is None:
            continue
        cumulative = 0.0
        for bucket in hist.buckets:
            xs.append(bucket.low_value)
            masses.append(cumulative)
            cumulative += bucket.sample_count
            xs.append(bucket.high_value)
            masses.append(cumulative)
    if not xs:
        raise LookupError("no numeric histogram")
    x = np.asarray(xs, dtype=float)
    m = np.asarray(masses, dtype=float)
    keep = np.isfinite(x)
    x, m = x[keep], m[keep]
    order = np.lexsort((m, x))
    return x[order], np.maximum.accumulate(m[order])


def _cdf_at(knots: tuple[np.ndarray, np.ndarray], points: np.ndarray) -> np.ndarray:
    """Interpolate the CDF linearly between knots (right-continuous at ties)."""
    xs, ms = knots
    idx = np.searchsorted(xs, points, side="right") - 1
    out = np.empty(points.shape, dtype=float)
    below = idx < 0
    above = idx >= len(xs) - 1
    out[below] = 0.0
    out[above] = ms[-1]
    mid = ~(below | above)
    i = idx[mid]
    x0, x1, m0, m1 = xs[i], xs[i + 1], ms[i], ms[i + 1]
    out[mid] = m0 + (m1 - m0) * (points[mid] - x0) / (x1 - x0)
    return out


def histogram_masses(
    fs: statistics_pb2.FeatureNameStatistics, edges: Iterable[float]
) -> np.ndarray:
    """Approximate value counts of a numeric feature in ``len(edges) + 1`` buckets.

    The buckets are ``(-inf, e0], (e0, e1], ..., (e_last, +inf)``; counts come
    from the feature's histograms, assuming uniform values between known CDF points.
    """
    points = np.asarray(list(edges), dtype=float)
    knots = _cdf_knots(fs)
    cdf = np.concatenate([[0.0], _cdf_at(knots, points), [knots[1][-1]]])
    return np.clip(np.diff(cdf), 0.0, None)


def _numeric_js(
    base: statistics_pb2.FeatureNameStatistics, other: statistics_pb2.FeatureNameStatistics
) -> float:
    hist = numeric_histogram(base, _HIST.QUANTILES)
    if hist is None:
        hist = numeric_histogram(base, _HIST.STANDARD)
    if hist is None:
        raise LookupError("no numeric histogram")
    edges = np.unique([v for b in hist.buckets for v in (b.low_value, b.high_value)])
    edges = edges[np.isfinite(edges)]
    return js_divergence(histogram_masses(base, edges), histogram_masses(other, edges))


def _categorical_js(base_counts, other_counts, base_total, other_total) -> float:
    values = sorted(set(base_counts) | set(other_counts))
    p = [base_counts.get(v, 0.0) for v in values] + [max(base_total - sum(base_counts.values()), 0)]
    q = [other_counts.get(v, 0.0) for v in values] + [
        max(other_total - sum(other_counts.values()), 0)
    ]
    return js_divergence(p, q)


def _is_categorical(feature: schema_pb2.Feature, schema: schema_pb2.Schema) -> bool:
    if feature.type == schema_pb2.BYTES:
        return True
    try:
        kind, domain = resolve_domain(feature, schema)
    except KeyError:
        return False
    return kind in ("int_domain", "float_domain") and domain.is_categorical


def compare_distributions(
    base: statistics_pb2.DatasetFeatureStatistics,
    other: statistics_pb2.DatasetFeatureStatistics,
    *,
    schema: schema_pb2.Schema,
    kind: str,
) -> anomalies_pb2.Anomalies:
    """Skew (``kind="skew"``, base=training) or drift (``kind="drift"``, base=previous) check.

    Categorical features (BYTES, or INT/FLOAT with a categorical domain) use
    ``infinity_norm``; numeric features use ``jensen_shannon_divergence``
    (categorical features may use it too). Every compared feature is recorded in
    ``drift_skew_info``; those above threshold also get an ERROR anomaly.
    """
    if kind not in ("skew", "drift"):
        raise ValueError(f"kind must be 'skew' or 'drift', not {kind!r}")
    base, other = as_dataset(base), as_dataset(other)
    comparator_field = f"{kind}_comparator"
    base_name, other_name = ("training", "serving") if kind == "skew" else ("previous", "current")
    out = AnomalyCollector(schema)
    base_by_name = features_by_name(base)
    other_by_name = features_by_name(other)
    measurement = anomalies_pb2.DriftSkewInfo.Measurement

    for feature in schema.feature:
        if not feature.HasField(comparator_field):
            continue
        comparator = getattr(feature, comparator_field)
        checks = []
        if comparator.HasField("infinity_norm"):
            checks.append(("linf", comparator.infinity_norm.threshold))
        if comparator.HasField("jensen_shannon_divergence"):
            checks.append(("jsd", comparator.jensen_shannon_divergence.threshold))
        if not checks:
            continue
        name = feature.name
        b_fs, o_fs = base_by_name.get(name), other_by_name.get(name)
        b_has = b_fs is not None and common_statistics(b_fs).num_non_missing > 0
        o_has = o_fs is not None and common_statistics(o_fs).num_non_missing > 0
        if not b_has or not o_has:
            missing_kind = (
                "COMPARATOR_CONTROL_DATA_MISSING"
                if not b_has
                else "COMPARATOR_TREATMENT_DATA_MISSING"
            )
            side = base_name if not b_has else other_name
            out.add(
                name,
                missing_kind,
                "Comparator data missing",
                f"no {side} values to compute {kind}",
                _WARNING,
            )
            continue

        categorical = _is_categorical(feature, schema) or b_fs.type in (_FNS.STRING, _FNS.BYTES)
        info = None
        for check, threshold in checks:
            value, where = None, None
            if categorical:
                b_counts, o_counts = value_counts(b_fs), value_counts(o_fs)
                if b_counts is None or o_counts is None:
                    out.add(
                        name,
                        "STATS_NOT_AVAILABLE",
                        "Value counts not available",
                        "statistics carry no value counts for this categorical feature",
                        _WARNING,
                    )
                    continue
                b_total = float(common_statistics(b_fs).tot_num_values or sum(b_counts.values()))
                o_total = float(common_statistics(o_fs).tot_num_values or sum(o_counts.values()))
                if check == "linf":
                    value, where = l_infinity_distance(
                        b_counts, o_counts, base_total=b_total, other_total=o_total
                    )
                else:
                    value = _categorical_js(b_counts, o_counts, b_total, o_total)
            else:
                if check == "linf":
                    out.add(
                        name,
                        "INVALID_SCHEMA_SPECIFICATION",
                        "Comparator not supported",
                        "infinity_norm applies to categorical features only; "
                        "use jensen_shannon_divergence for numeric features",
                        _WARNING,
                    )
                    continue
                try:
                    value = _numeric_js(b_fs, o_fs)
                except LookupError:
                    out.add(
                        name,
                        "STATS_NOT_AVAILABLE",
                        "Histograms not available",
                        "statistics carry no numeric histogram for this feature",
                        _WARNING,
                    )
                    continue

            if info is None:
                info = out.anomalies.drift_skew_info.add()
                info.path.step.append(name)
            m_type = (
                measurement.L_INFTY if check == "linf" else measurement.JENSEN_SHANNON_DIVERGENCE
            )
            getattr(info, f"{kind}_measurements").add(type=m_type, value=value, threshold=threshold)
            if value > threshold:
                if check == "linf":
                    out.add(
                        name,
                        "COMPARATOR_L_INFTY_HIGH",
                        f"High Linfty distance between {base_name} and {other_name}",
                        f"L-infinity distance between {base_name} and {other_name} is "
                        f"{value:.4g} (largest difference at value {where!r}), above the "
                        f"{kind}_comparator infinity_norm threshold {threshold:g}",
                    )
                else:
                    out.add(
                        name,
                        "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH",
                        f"High approximate Jensen-Shannon divergence between {base_name} "
                        f"and {other_name}",
                        f"approximate Jensen-Shannon divergence between {base_name} and "
                        f"{other_name} is {value:.4g}, above the {kind}_comparator "
                        f"jensen_shannon_divergence threshold {threshold:g}",
                    )
    return out.build()


def set_comparator_thresholds(
    schema: schema_pb2.Schema,
    *,
    kind: str,
    default_categorical: float | None = None,
    default_numeric: float | None = None,
    per_feature: Mapping[str, float] | None = None,
) -> schema_pb2.Schema:
    """Return a copy of ``schema`` with skew or drift comparator thresholds set.

    Categorical features get ``infinity_norm``, numeric ones
    ``jensen_shannon_divergence``; ``per_feature`` overrides the defaults.
    Features without a threshold keep whatever the schema had.
    """
    if kind not in ("skew", "drift"):
        raise ValueError(f"kind must be 'skew' or 'drift', not {kind!r}")
    per_feature = dict(per_feature or {})
    result = schema_pb2.Schema()
    result.CopyFrom(schema)
    names = {f.name for f in result.feature}
    unknown = sorted(set(per_feature) - names)
    if unknown:
        raise ValueError(f"{kind} thresholds given for features not in the schema: {unknown}")
    for feature in result.feature:
        categorical = _is_categorical(feature, result)
        threshold = per_feature.get(
            feature.name, default_categorical if categorical else default_numeric
        )
        if threshold is None:
            continue
        if threshold < 0:
            raise ValueError(f"feature {feature.name!r}: negative {kind} threshold {threshold}")
        comparator = getattr(feature, f"{kind}_comparator")
        comparator.Clear()
        if categorical:
            comparator.infinity_norm.threshold = threshold
        else:
            comparator.jensen_shannon_divergence.threshold = threshold
    return result
