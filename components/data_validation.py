"""TFDV-compatible statistics, schema inference, validation and skew/drift checks.

TensorFlow Data Validation cannot be installed in this project, so this module
re-implements the parts the pipeline needs on top of pandas/numpy, reading and
writing TFDV's own proto formats from ``tensorflow_metadata``:

* ``DatasetFeatureStatisticsList`` (TFX ``FeatureStats.pb``),
* ``Schema`` (text format, TFX ``schema.pbtxt``),
* ``Anomalies`` (TFX ``SchemaDiff.pb``).

Conventions that differ from, or are not covered by, TFDV:

* Every column is a scalar feature (one value per example). A pandas missing
  value (NaN/None/NA) is a *missing* feature, as an empty CSV cell is for TFDV,
  so histogram ``num_nan`` is always 0.
* Features are identified by ``path.step`` (what current TFDV writes); ``name``
  shares a oneof with ``path`` so both cannot be set. Readers accept either.
* INT columns, and FLOAT columns whose values are all integral, carry their
  value counts in ``custom_stats`` (``rank_histogram``) so that categorical INT
  features can be compared with the L-infinity distance. FLOAT columns also
  carry ``all_integral_values`` (1 or 0): pandas stores integers with missing
  values as float64, and such a column must still satisfy an INT feature.
* Rank histograms keep the ``num_rank_histogram_buckets`` (default 1000, as in
  TFDV) most frequent values. When a feature has more distinct values, values
  outside the histogram are unknown: domain checks count that remainder as out
  of domain, and the L-infinity distance ignores it (each ignored value has at
  most the frequency of the rarest kept value, which bounds the error).
* The numeric Jensen-Shannon divergence is computed from the stats alone:
  both samples are re-binned onto the base sample's quantile boundaries plus
  two open tails, assuming values are uniform inside each source bucket and
  zero-width buckets are point masses.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from google.protobuf import message as pb_message
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from mlops.io import usual_mode

__all__ = [
    "STATS_FILE_NAME",
    "SCHEMA_FILE_NAME",
    "ANOMALIES_FILE_NAME",
    "compute_statistics",
    "split_statistics",
    "write_statistics",
    "read_statistics",
    "infer_schema",
    "load_schema",
    "write_schema",
    "validate_statistics",
    "compare_distributions",
    "set_comparator_thresholds",
    "blocking_anomalies",
    "anomalies_to_dict",
    "write_anomalies",
    "read_anomalies",
    "l_infinity_distance",
    "js_divergence",
    "histogram_masses",
    "features_by_name",
    "common_statistics",
    "value_counts",
    "numeric_histogram",
]

STATS_FILE_NAME = "FeatureStats.pb"
SCHEMA_FILE_NAME = "schema.pbtxt"
ANOMALIES_FILE_NAME = "SchemaDiff.pb"

RANK_HISTOGRAM_STAT = "rank_histogram"
ALL_INTEGRAL_STAT = "all_integral_values"

_FNS = statistics_pb2.FeatureNameStatistics
_HIST = statistics_pb2.Histogram
_INFO = anomalies_pb2.AnomalyInfo
_ERROR = _INFO.ERROR
_WARNING = _INFO.WARNING
_EPS = 1e-12


# --------------------------------------------------------------------------- #
# Statistics
# --------------------------------------------------------------------------- #


def compute_statistics(
    frames: Mapping[str, pd.DataFrame],
    *,
    label: str | None = None,
    num_top_values: int = 20,
    num_rank_histogram_buckets: int = 1000,
    num_histogram_buckets: int = 10,
    num_quantiles_histogram_buckets: int = 10,
) -> statistics_pb2.DatasetFeatureStatisticsList:
    """Compute one ``DatasetFeatureStatistics`` per split (named after the split).

    ``label``, when given, must be a column of at least one frame (serving data
    may lack it); its value counts are always recorded, whatever its dtype.
    """
    if not frames:
        raise ValueError("compute_statistics needs at least one split")
    if label is not None and not any(label in df.columns for df in frames.values()):
        raise ValueError(f"label column {label!r} is in none of the splits {sorted(frames)}")
    result = statistics_pb2.DatasetFeatureStatisticsList()
    for split, df in frames.items():
        duplicated = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
        if duplicated:
            raise ValueError(f"split {split!r} has duplicated columns {duplicated}")
        ds = result.datasets.add()
        ds.name = split
        ds.num_examples = len(df)
        for column in df.columns:
            fs = ds.features.add()
            fs.path.step.append(str(column))
            _fill_feature_stats(
                fs,
                df[column],
                is_label=column == label,
                num_top_values=num_top_values,
                num_rank_histogram_buckets=num_rank_histogram_buckets,
                num_histogram_buckets=num_histogram_buckets,
                num_quantiles_histogram_buckets=num_quantiles_histogram_buckets,
            )
    return result


def split_statistics(
    stats: statistics_pb2.DatasetFeatureStatisticsList, split: str
) -> statistics_pb2.DatasetFeatureStatistics:
    """Return the dataset named ``split`` from a statistics list."""
    for ds in stats.datasets:
        if ds.name == split:
            return ds
    raise KeyError(f"no split {split!r} in statistics (have {[d.name for d in stats.datasets]})")


def _as_dataset(stats) -> statistics_pb2.DatasetFeatureStatistics:
    """Accept one split's statistics, or a list holding exactly one split."""
    if isinstance(stats, statistics_pb2.DatasetFeatureStatisticsList):
        if len(stats.datasets) != 1:
            raise TypeError(
                "expected one split's DatasetFeatureStatistics; pick one with split_statistics() "
                f"from {[d.name for d in stats.datasets]}"
            )
        return stats.datasets[0]
    return stats


def _stats_type(series: pd.Series) -> int:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_integer_dtype(dtype):
        return _FNS.INT
    if pd.api.types.is_float_dtype(dtype):
        return _FNS.FLOAT
    if (
        pd.api.types.is_object_dtype(dtype)
        or isinstance(dtype, pd.StringDtype | pd.CategoricalDtype)
        or pd.api.types.is_string_dtype(dtype)
    ):
        return _FNS.STRING
    raise TypeError(
        f"column {series.name!r}: unsupported dtype {dtype} (convert it to int, float or string)"
    )


def _fill_common(common: statistics_pb2.CommonStatistics, n_present: int, n_missing: int) -> None:
    common.num_non_missing = n_present
    common.num_missing = n_missing
    common.tot_num_values = n_present
    if n_present:
        common.min_num_values = 1
        common.max_num_values = 1
        common.avg_num_values = 1.0


def _fill_feature_stats(
    fs: statistics_pb2.FeatureNameStatistics,
    series: pd.Series,
    *,
    is_label: bool,
    num_top_values: int,
    num_rank_histogram_buckets: int,
    num_histogram_buckets: int,
    num_quantiles_histogram_buckets: int,
) -> None:
    kind = _stats_type(series)
    fs.type = kind
    if kind == _FNS.STRING:
        _fill_string_stats(fs, series, num_top_values, num_rank_histogram_buckets)
        return

    values = series.to_numpy(dtype="float64", na_value=np.nan)
    present = values[~np.isnan(values)]
    num = fs.num_stats
    _fill_common(num.common_stats, int(present.size), int(values.size - present.size))
    if present.size:
        with np.errstate(invalid="ignore", over="ignore"):
            num.mean = float(np.mean(present))
            num.std_dev = float(np.std(present))
        num.num_zeros = int(np.count_nonzero(present == 0))
        num.min = float(np.min(present))
        num.median = float(np.median(present))
        num.max = float(np.max(present))
        _add_histograms(num, present, num_histogram_buckets, num_quantiles_histogram_buckets)

    finite = np.isfinite(present)
    integral = kind == _FNS.INT or bool(np.all(finite) and np.all(np.mod(present, 1) == 0))
    if kind == _FNS.FLOAT:
        fs.custom_stats.add(name=ALL_INTEGRAL_STAT, num=1.0 if integral else 0.0)
    if integral or is_label:
        if kind == _FNS.INT:
            labels = series.dropna().astype("int64").astype(str)
        elif integral:
            labels = pd.Series(present.astype(np.int64)).astype(str)
        else:
            labels = pd.Series(present).astype(str)
        custom = fs.custom_stats.add(name=RANK_HISTOGRAM_STAT)
        _fill_rank_histogram(
            custom.rank_histogram, _sorted_counts(labels)[:num_rank_histogram_buckets]
        )


def _add_histograms(
    num: statistics_pb2.NumericStatistics,
    present: np.ndarray,
    num_buckets: int,
    num_quantile_buckets: int,
) -> None:
    finite = present[np.isfinite(present)]
    n_neg_inf = int(np.count_nonzero(present == -np.inf))
    n_pos_inf = int(np.count_nonzero(present == np.inf))
    if finite.size == 0:
        return
    lo, hi = float(finite.min()), float(finite.max())

    std = num.histograms.add(type=_HIST.STANDARD)
    if lo == hi:
        edges = np.array([lo, hi])
        counts = np.array([finite.size], dtype=float)
    else:
        edges = np.linspace(lo, hi, num_buckets + 1)
        counts = np.histogram(finite, bins=edges)[0].astype(float)
    counts[0] += n_neg_inf
    counts[-1] += n_pos_inf
    for i, count in enumerate(counts):
        std.buckets.add(low_value=edges[i], high_value=edges[i + 1], sample_count=count)

    quant = num.histograms.add(type=_HIST.QUANTILES)
    qedges = np.quantile(np.clip(present, lo, hi), np.linspace(0.0, 1.0, num_quantile_buckets + 1))
    per_bucket = present.size / num_quantile_buckets
    for i in range(num_quantile_buckets):
        quant.buckets.add(
            low_value=float(qedges[i]), high_value=float(qedges[i + 1]), sample_count=per_bucket
        )
    # Infinite values are clipped for the quantiles; widen the end buckets to keep them.
    for hist in (std, quant):
        if n_neg_inf:
            hist.buckets[0].low_value = -math.inf
        if n_pos_inf:
            hist.buckets[-1].high_value = math.inf


def _to_text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _sorted_counts(values: pd.Series) -> list[tuple[str, int]]:
    counts = values.value_counts(sort=False)
    return sorted(((str(k), int(v)) for k, v in counts.items()), key=lambda kv: (-kv[1], kv[0]))


def _fill_rank_histogram(
    hist: statistics_pb2.RankHistogram, counts: Iterable[tuple[str, int]]
) -> None:
    for rank, (label, count) in enumerate(counts):
        hist.buckets.add(low_rank=rank, high_rank=rank, label=label, sample_count=count)


def _fill_string_stats(
    fs: statistics_pb2.FeatureNameStatistics,
    series: pd.Series,
    num_top_values: int,
    num_rank_histogram_buckets: int,
) -> None:
    missing = series.isna().to_numpy()
    present = series[~missing]
    if present.dtype == object:
        present = present.map(_to_text)
    present = present.astype(str)
    ss = fs.string_stats
    _fill_common(ss.common_stats, int(present.size), int(missing.sum()))
    if not present.size:
        return
    counts = _sorted_counts(present)
    ss.unique = len(counts)
    ss.avg_length = float(present.str.len().mean())
    for label, count in counts[:num_top_values]:
        ss.top_values.add(value=label, frequency=count)
    _fill_rank_histogram(ss.rank_histogram, counts[:num_rank_histogram_buckets])


# --------------------------------------------------------------------------- #
# Reading statistics back
# --------------------------------------------------------------------------- #


def _feature_name(fs: statistics_pb2.FeatureNameStatistics) -> str:
    if fs.WhichOneof("field_id") == "name":
        return fs.name
    return ".".join(fs.path.step)


def features_by_name(
    ds: statistics_pb2.DatasetFeatureStatistics,
) -> dict[str, statistics_pb2.FeatureNameStatistics]:
    """Map feature name (``name`` or dotted ``path``) to its statistics."""
    return {_feature_name(fs): fs for fs in ds.features}


def common_statistics(fs: statistics_pb2.FeatureNameStatistics) -> statistics_pb2.CommonStatistics:
    """The CommonStatistics of whichever stats the feature carries."""
    which = fs.WhichOneof("stats")
    if which == "num_stats":
        return fs.num_stats.common_stats
    if which == "string_stats":
        return fs.string_stats.common_stats
    if which == "bytes_stats":
        return fs.bytes_stats.common_stats
    if which == "struct_stats":
        return fs.struct_stats.common_stats
    return statistics_pb2.CommonStatistics()


def _custom(fs: statistics_pb2.FeatureNameStatistics, name: str):
    for custom in fs.custom_stats:
        if custom.name == name:
            return custom
    return None


def _all_integral(fs: statistics_pb2.FeatureNameStatistics) -> bool:
    if fs.type == _FNS.INT:
        return True
    custom = _custom(fs, ALL_INTEGRAL_STAT)
    return custom is not None and custom.num == 1.0


def value_counts(fs: statistics_pb2.FeatureNameStatistics) -> dict[str, float] | None:
    """Value -> count from the rank histogram (or top values); None when unavailable."""
    hist = None
    if fs.WhichOneof("stats") == "string_stats":
        ss = fs.string_stats
        if ss.rank_histogram.buckets:
            hist = ss.rank_histogram
        elif ss.top_values:
            return {tv.value: float(tv.frequency) for tv in ss.top_values}
        elif ss.common_stats.num_non_missing == 0:
            return {}
    else:
        custom = _custom(fs, RANK_HISTOGRAM_STAT)
        if custom is not None:
            hist = custom.rank_histogram
        elif common_statistics(fs).num_non_missing == 0:
            return {}
    if hist is None:
        return None
    return {b.label: float(b.sample_count) for b in hist.buckets}


def numeric_histogram(
    fs: statistics_pb2.FeatureNameStatistics, kind: int
) -> statistics_pb2.Histogram | None:
    """The feature's first non-empty histogram of the given type, if any."""
    if fs.WhichOneof("stats") != "num_stats":
        return None
    for hist in fs.num_stats.histograms:
        if hist.type == kind and hist.buckets:
            return hist
    return None


# --------------------------------------------------------------------------- #
# File IO
# --------------------------------------------------------------------------- #


def _atomic_write(path: str | os.PathLike[str], data: bytes) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, usual_mode())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _read_binary(path: str | os.PathLike[str], message: pb_message.Message):
    data = Path(path).read_bytes()
    try:
        message.ParseFromString(data)
    except pb_message.DecodeError as exc:
        raise ValueError(f"{path}: not a binary {message.DESCRIPTOR.full_name}: {exc}") from exc
    return message


def write_statistics(
    stats: statistics_pb2.DatasetFeatureStatisticsList, path: str | os.PathLike[str]
) -> Path:
    """Atomically write binary statistics (TFX names the file ``FeatureStats.pb``)."""
    return _atomic_write(path, stats.SerializeToString(deterministic=True))


def read_statistics(path: str | os.PathLike[str]) -> statistics_pb2.DatasetFeatureStatisticsList:
    """Read a binary ``DatasetFeatureStatisticsList``."""
    return _read_binary(path, statistics_pb2.DatasetFeatureStatisticsList())


def write_anomalies(anomalies: anomalies_pb2.Anomalies, path: str | os.PathLike[str]) -> Path:
    """Atomically write binary anomalies (TFX names the file ``SchemaDiff.pb``)."""
    return _atomic_write(path, anomalies.SerializeToString(deterministic=True))


def read_anomalies(path: str | os.PathLike[str]) -> anomalies_pb2.Anomalies:
    """Read a binary ``Anomalies`` proto."""
    return _read_binary(path, anomalies_pb2.Anomalies())


def load_schema(path: str | os.PathLike[str]) -> schema_pb2.Schema:
    """Load a text-format ``Schema``; a malformed file raises ValueError naming it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"cannot parse schema {path}: not UTF-8 text ({exc})") from exc
    try:
        return text_format.Parse(text, schema_pb2.Schema())
    except text_format.ParseError as exc:
        raise ValueError(f"cannot parse schema {path}: {exc}") from exc


def write_schema(schema: schema_pb2.Schema, path: str | os.PathLike[str]) -> Path:
    """Atomically write a text-format ``Schema``."""
    return _atomic_write(path, text_format.MessageToString(schema).encode("utf-8"))


# --------------------------------------------------------------------------- #
# Schema inference
# --------------------------------------------------------------------------- #


def infer_schema(
    train_stats: statistics_pb2.DatasetFeatureStatistics
    | statistics_pb2.DatasetFeatureStatisticsList,
    *,
    max_string_domain_size: int = 100,
    required_fraction_threshold: float = 1.0,
    infer_feature_shape: bool = True,
) -> schema_pb2.Schema:
    """Infer a schema from training statistics, as ``tfdv.infer_schema`` does.

    A feature present in at least ``required_fraction_threshold`` of the examples
    gets ``presence.min_fraction`` equal to that threshold (1.0: always present).
    String features with at most ``max_string_domain_size`` distinct values get a
    schema-level ``string_domain`` named after the feature.
    """
    if isinstance(train_stats, statistics_pb2.DatasetFeatureStatisticsList):
        if len(train_stats.datasets) == 1:
            train_stats = train_stats.datasets[0]
        else:
            train_stats = split_statistics(train_stats, "train")
    if not 0.0 < required_fraction_threshold <= 1.0:
        raise ValueError("required_fraction_threshold must be in (0, 1]")

    schema = schema_pb2.Schema()
    num_examples = train_stats.num_examples
    for fs in train_stats.features:
        name = _feature_name(fs)
        feature = schema.feature.add(name=name)
        if fs.type == _FNS.INT:
            feature.type = schema_pb2.INT
        elif fs.type == _FNS.FLOAT:
            feature.type = schema_pb2.FLOAT
        elif fs.type in (_FNS.STRING, _FNS.BYTES):
            feature.type = schema_pb2.BYTES
        else:
            feature.type = schema_pb2.STRUCT
        common = common_statistics(fs)
        present = common.num_non_missing
        fraction = present / num_examples if num_examples else 0.0
        if present and fraction >= required_fraction_threshold - _EPS:
            feature.presence.min_fraction = 1.0 if fraction == 1.0 else required_fraction_threshold
        feature.presence.min_count = 1 if present else 0
        if infer_feature_shape and present == num_examples and present:
            feature.shape.dim.add(size=1)
        else:
            feature.value_count.min = 1
            feature.value_count.max = 1

        if fs.WhichOneof("stats") in ("string_stats", "bytes_stats"):
            ss = fs.string_stats if fs.HasField("string_stats") else fs.bytes_stats
            values = [b.label for b in ss.rank_histogram.buckets]
            if 0 < ss.unique <= max_string_domain_size and len(values) == ss.unique:
                schema.string_domain.add(name=name, value=sorted(values))
                feature.domain = name
    return schema


# --------------------------------------------------------------------------- #
# Validation
# --------------------------------------------------------------------------- #


def _fmt(value: float) -> str:
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.3g}%"


class _Collector:
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
        return fs.type == _FNS.INT or (fs.type == _FNS.FLOAT and _all_integral(fs))
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
    stats = _as_dataset(stats)
    ignored = set(ignore_features)
    out = _Collector(schema)
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
    out: _Collector,
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
    out: _Collector,
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
    out: _Collector,
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
    base, other = _as_dataset(base), _as_dataset(other)
    comparator_field = f"{kind}_comparator"
    base_name, other_name = ("training", "serving") if kind == "skew" else ("previous", "current")
    out = _Collector(schema)
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
