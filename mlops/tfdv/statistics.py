"""Dataset statistics in TFDV's `DatasetFeatureStatisticsList` format: computing them from
in-memory frames (the same mergeable sketches the Beam transform runs, see `sketch_stats`), and
reading them back (value counts, histograms, common stats)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
from tensorflow_metadata.proto.v0 import statistics_pb2

from mlops.tfdv.sketch_stats import (
    ALL_INTEGRAL_STAT,
    RANK_HISTOGRAM_STAT,
    SplitAccumulator,
    StatsOptions,
)

__all__ = ["ALL_INTEGRAL_STAT", "RANK_HISTOGRAM_STAT"]

_FNS = statistics_pb2.FeatureNameStatistics


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
    Columns are typed by dtype: integers and booleans INT, floats FLOAT, text,
    categoricals and objects STRING; a missing value (NaN/None/NA) is missing.
    """
    if not frames:
        raise ValueError("compute_statistics needs at least one split")
    if label is not None and not any(label in df.columns for df in frames.values()):
        raise ValueError(f"label column {label!r} is in none of the splits {sorted(frames)}")
    options = StatsOptions(
        label=label,
        num_top_values=num_top_values,
        num_rank_histogram_buckets=num_rank_histogram_buckets,
        num_histogram_buckets=num_histogram_buckets,
        num_quantiles_histogram_buckets=num_quantiles_histogram_buckets,
    )
    result = statistics_pb2.DatasetFeatureStatisticsList()
    for split, df in frames.items():
        duplicated = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
        if duplicated:
            raise ValueError(f"split {split!r} has duplicated columns {duplicated}")
        accumulator = SplitAccumulator(options).add_batch(frame_to_arrow(df))
        result.datasets.append(accumulator.to_proto(split))
    return result


def frame_to_arrow(df: pd.DataFrame) -> pa.Table:
    """The frame as Arrow columns typed as the statistics read them (see compute_statistics)."""
    columns = {str(name): column_to_arrow(df[name]) for name in df.columns}
    if not columns:
        return pa.table({})
    return pa.table(columns)


def column_to_arrow(series: pd.Series) -> pa.Array:
    """One column as the statistics read it (see compute_statistics)."""
    kind = _stats_type(series)
    if kind == _FNS.INT:
        return pa.array(series, from_pandas=True)
    if kind == _FNS.FLOAT:
        return pa.array(series.to_numpy(dtype="float64", na_value=np.nan), from_pandas=True)
    if isinstance(series.dtype, pd.StringDtype):  # text already (ingest writes these): no copy
        array = pa.array(series, type=pa.string(), from_pandas=True)
        # Arrow-backed text may come in chunks; the sketches get one array, as for other text.
        return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    missing = series.isna().to_numpy()
    present = series[~missing]
    if present.dtype == object:
        present = present.map(_to_text)
    text = np.full(len(series), None, dtype=object)
    text[~missing] = present.astype(str).to_numpy(dtype=object)
    return pa.array(text, type=pa.string())


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


def _to_text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


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
