"""Dataset statistics in TFDV's `DatasetFeatureStatisticsList` format: computing them from a
frame, and reading them back (value counts, histograms, common stats)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from tensorflow_metadata.proto.v0 import statistics_pb2

RANK_HISTOGRAM_STAT = "rank_histogram"
ALL_INTEGRAL_STAT = "all_integral_values"

_FNS = statistics_pb2.FeatureNameStatistics
_HIST = statistics_pb2.Histogram


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


def as_dataset(stats) -> statistics_pb2.DatasetFeatureStatistics:
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


def feature_name(fs: statistics_pb2.FeatureNameStatistics) -> str:
    if fs.WhichOneof("field_id") == "name":
        return fs.name
    return ".".join(fs.path.step)


def features_by_name(
    ds: statistics_pb2.DatasetFeatureStatistics,
) -> dict[str, statistics_pb2.FeatureNameStatistics]:
    """Map feature name (``name`` or dotted ``path``) to its statistics."""
    return {feature_name(fs): fs for fs in ds.features}


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


def all_integral(fs: statistics_pb2.FeatureNameStatistics) -> bool:
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
