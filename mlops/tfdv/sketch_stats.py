"""Mergeable per-feature statistics over Arrow record batches, in TFDV's proto format.

One accumulator per split takes record batches (vectorised with numpy / pyarrow.compute, never a
Python loop over rows), merges with other accumulators of the same split, and finally writes one
``DatasetFeatureStatistics``. Its size is bounded by the sketches, not by the data, so the same code
runs in-process on a frame (`compute_statistics`) and as a Beam CombineFn over millions of rows
(`mlops.tfdv.beam_stats`).

Exact: example and value counts, missing, min, max, mean, standard deviation (merged moments),
zeros, string lengths, whether a FLOAT column is all integral.
Sketched (tfx_bsl, the sketches TFDV itself uses):

* quantiles, median and both histograms from a ``QuantilesSketch`` with rank error
  ``QUANTILES_EPSILON`` (the STANDARD histogram's equal-width counts are read off the sketch's
  CDF at ``CDF_POINTS`` points, so each cumulative count is within
  ``(QUANTILES_EPSILON + 1 / CDF_POINTS) * n`` of the exact one);
* value counts (rank histogram, top values) from a ``MisraGriesSketch`` of
  ``TOP_K_BUCKETS_FACTOR * num_rank_histogram_buckets`` buckets: exact while a feature has no
  more distinct values than buckets, otherwise each count is an upper bound, high by at most
  n / buckets (tfx_bsl's variant adds the decrements back);
* distinct counts from a ``KmvSketch`` of ``DISTINCT_BUCKETS`` buckets: exact below that many
  distinct values, otherwise about ``1 / sqrt(DISTINCT_BUCKETS)`` relative error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx_bsl import sketches

RANK_HISTOGRAM_STAT = "rank_histogram"
ALL_INTEGRAL_STAT = "all_integral_values"

QUANTILES_EPSILON = 0.01  # TFDV's default rank error
CDF_POINTS = 1000  # resolution at which the histograms read the quantiles sketch
TOP_K_BUCKETS_FACTOR = 4
DISTINCT_BUCKETS = 4096
_MAX_QUANTILE_ELEMENTS = 1 << 32

_FNS = statistics_pb2.FeatureNameStatistics
_HIST = statistics_pb2.Histogram


@dataclass(frozen=True)
class StatsOptions:
    """What the statistics keep; the defaults are TFDV's."""

    label: str | None = None
    num_top_values: int = 20
    num_rank_histogram_buckets: int = 1000
    num_histogram_buckets: int = 10
    num_quantiles_histogram_buckets: int = 10

    @property
    def top_k_buckets(self) -> int:
        return TOP_K_BUCKETS_FACTOR * max(self.num_rank_histogram_buckets, self.num_top_values)


def arrow_stats_type(name: str, arrow_type: pa.DataType) -> int | None:
    """INT, FLOAT or STRING for an Arrow column; None for an all-null column (type unknown)."""
    if pa.types.is_null(arrow_type):
        return None
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_integer(arrow_type) or pa.types.is_boolean(arrow_type):
        return _FNS.INT
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return _FNS.FLOAT
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return _FNS.STRING
    raise TypeError(
        f"column {name!r}: unsupported type {arrow_type} (convert it to int, float or string)"
    )


# --------------------------------------------------------------------------- #
# Numeric features
# --------------------------------------------------------------------------- #


class _NumericAccumulator:
    """Counts, exact extremes and moments, a quantiles sketch of the finite values and, while
    the values are integral (or for the label), a top-k sketch of them."""

    def __init__(self, kind: int, keep_value_counts: bool, top_k_buckets: int):
        self.kind = kind
        self.present = 0
        self.missing = 0
        self.zeros = 0
        self.neg_inf = 0
        self.pos_inf = 0
        self.min = math.inf  # over present values, infinities included
        self.max = -math.inf
        self.finite_min = math.inf
        self.finite_max = -math.inf
        self.finite = 0  # count, mean and sum of squared deviations of the finite values
        self.mean = 0.0
        self.m2 = 0.0
        self.integral = True
        self.keep_value_counts = keep_value_counts  # the label's counts are kept whatever it holds
        self.quantiles = sketches.QuantilesSketch(QUANTILES_EPSILON, _MAX_QUANTILE_ELEMENTS, 1)
        self.top: sketches.MisraGriesSketch | None = sketches.MisraGriesSketch(top_k_buckets)

    def add(self, array: pa.Array) -> None:
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        if pa.types.is_boolean(array.type):
            array = pc.cast(array, pa.int64())
        # Moments and quantiles are in float64 (integers beyond 2**53 round, as in numpy).
        values = pc.cast(array, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
        is_missing = np.isnan(values)  # nulls arrive as NaN; a NaN is a missing value too
        present = values[~is_missing]
        self.missing += int(is_missing.sum())
        if not present.size:
            return
        self.present += int(present.size)
        self.zeros += int(np.count_nonzero(present == 0))
        self.min = min(self.min, float(present.min()))
        self.max = max(self.max, float(present.max()))
        is_finite = np.isfinite(present)
        finite = present[is_finite]
        self.neg_inf += int(np.count_nonzero(present == -np.inf))
        self.pos_inf += int(np.count_nonzero(present == np.inf))
        if finite.size:
            self.finite_min = min(self.finite_min, float(finite.min()))
            self.finite_max = max(self.finite_max, float(finite.max()))
            self._merge_moments(int(finite.size), float(finite.mean()), float(finite.var()))
            self.quantiles.AddValues(pa.array(finite))
        if self.kind == _FNS.FLOAT and self.integral:
            self.integral = bool(is_finite.all()) and bool(np.all(np.mod(finite, 1) == 0))
        if self.top is not None and not (self.integral or self.keep_value_counts):
            self.top = None  # a continuous FLOAT column: its value counts would mean nothing
        if self.top is not None:
            if pa.types.is_integer(array.type):  # exact text, even beyond float64's 2**53
                self.top.AddValues(pc.cast(pc.drop_null(array), pa.string()))
            else:
                self.top.AddValues(_value_labels(present))

    def _merge_moments(self, count: int, mean: float, variance: float) -> None:
        """Chan et al.'s parallel update of count, mean and sum of squared deviations."""
        total = self.finite + count
        delta = mean - self.mean
        self.m2 += variance * count + delta * delta * self.finite * count / total
        self.mean += delta * count / total
        self.finite = total

    def merge(self, other: _NumericAccumulator) -> None:
        if other.kind == _FNS.FLOAT:
            self.kind = _FNS.FLOAT
        self.present += other.present
        self.missing += other.missing
        self.zeros += other.zeros
        self.neg_inf += other.neg_inf
        self.pos_inf += other.pos_inf
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)
        self.finite_min = min(self.finite_min, other.finite_min)
        self.finite_max = max(self.finite_max, other.finite_max)
        if other.finite:
            self._merge_moments(other.finite, other.mean, other.m2 / other.finite)
        self.integral = self.integral and other.integral
        self.keep_value_counts = self.keep_value_counts or other.keep_value_counts
        self.quantiles.Merge(other.quantiles)
        if self.top is None or other.top is None:
            self.top = None
        else:
            self.top.Merge(other.top)

    def fill(self, fs: statistics_pb2.FeatureNameStatistics, options: StatsOptions) -> None:
        fs.type = self.kind
        num = fs.num_stats
        _fill_common(num.common_stats, self.present, self.missing)
        if self.present:
            num.mean, num.std_dev = self._mean_and_std()
            num.num_zeros = self.zeros
            num.min, num.max = self.min, self.max
            cdf = self._cdf()
            if cdf is not None:
                num.median = _quantile(cdf, 0.5)
                self._add_histograms(num, cdf, options)
        if self.kind == _FNS.FLOAT:
            fs.custom_stats.add(name=ALL_INTEGRAL_STAT, num=1.0 if self.integral else 0.0)
        integral = self.kind == _FNS.INT or self.integral
        if self.top is not None and (integral or self.keep_value_counts):
            custom = fs.custom_stats.add(name=RANK_HISTOGRAM_STAT)
            _fill_rank_histogram(
                custom.rank_histogram, _top_counts(self.top)[: options.num_rank_histogram_buckets]
            )

    def _mean_and_std(self) -> tuple[float, float]:
        if self.neg_inf and self.pos_inf:
            return math.nan, math.nan
        if self.neg_inf or self.pos_inf:
            return (-math.inf if self.neg_inf else math.inf), math.nan
        return self.mean, math.sqrt(max(self.m2 / self.finite, 0.0))

    def _cdf(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Points (value, number of present values <= value) of the distribution with the
        infinities clipped to the finite extremes; None when no value is finite."""
        if not self.finite:
            return None
        values, weights = self.quantiles.GetQuantilesAndCumulativeWeights(CDF_POINTS)
        values = values.flatten().to_numpy(zero_copy_only=False).copy()
        weights = weights.flatten().to_numpy(zero_copy_only=False).astype("float64")
        # The sketch's extremes are exact; pin them in case of rounding.
        values[0], values[-1] = self.finite_min, self.finite_max
        weights = weights * (self.finite / weights[-1]) + self.neg_inf
        weights[-1] += self.pos_inf
        return values, weights

    def _add_histograms(
        self, num: statistics_pb2.NumericStatistics, cdf: tuple[np.ndarray, np.ndarray], options
    ) -> None:
        values, weights = cdf
        lo, hi = self.finite_min, self.finite_max
        std = num.histograms.add(type=_HIST.STANDARD)
        if lo == hi:
            std.buckets.add(low_value=lo, high_value=hi, sample_count=float(self.present))
        else:
            edges = np.linspace(lo, hi, options.num_histogram_buckets + 1)
            # Buckets are [low, high) but the last (as numpy's). Mass is known at CDF points
            # only: it counts at its point (a step CDF keeps the point masses of integral data
            # in their bucket).
            below = weights[np.searchsorted(values, edges[1:-1], side="left") - 1]
            cumulative = np.concatenate([below, [float(self.present)]])
            counts = np.diff(np.concatenate([[0.0], cumulative]))
            for i, count in enumerate(counts):
                std.buckets.add(low_value=edges[i], high_value=edges[i + 1], sample_count=count)
        quant = num.histograms.add(type=_HIST.QUANTILES)
        buckets = options.num_quantiles_histogram_buckets
        qedges = [_quantile(cdf, p) for p in np.linspace(0.0, 1.0, buckets + 1)]
        per_bucket = self.present / buckets
        for i in range(buckets):
            quant.buckets.add(
                low_value=qedges[i], high_value=qedges[i + 1], sample_count=per_bucket
            )
        # Infinite values were clipped for the histograms; widen the end buckets to keep them.
        for hist in (std, quant):
            if self.neg_inf:
                hist.buckets[0].low_value = -math.inf
            if self.pos_inf:
                hist.buckets[-1].high_value = math.inf


def _value_labels(present: np.ndarray) -> pa.Array:
    """Values as the text the value counts are keyed by: integral values as integers ("8",
    never "8.0"; the sketch itself would print a float with 6 digits), others in the shortest
    text that reads back the same float."""
    integral = np.isfinite(present) & (np.mod(present, 1) == 0) & (np.abs(present) < 2**63)
    as_integers = pc.cast(pa.array(np.where(integral, present, 0).astype(np.int64)), pa.string())
    if integral.all():
        return as_integers
    return pc.if_else(pa.array(integral), as_integers, pc.cast(pa.array(present), pa.string()))


def _quantile(cdf: tuple[np.ndarray, np.ndarray], fraction: float) -> float:
    """The smallest known value with at least `fraction` of the mass at or below it."""
    values, weights = cdf
    rank = fraction * weights[-1]
    index = min(int(np.searchsorted(weights, rank, side="left")), len(values) - 1)
    return float(values[index])


# --------------------------------------------------------------------------- #
# String features
# --------------------------------------------------------------------------- #


class _StringAccumulator:
    kind = _FNS.STRING

    def __init__(self, top_k_buckets: int):
        self.present = 0
        self.missing = 0
        self.total_length = 0
        self.top = sketches.MisraGriesSketch(top_k_buckets)
        self.distinct = sketches.KmvSketch(DISTINCT_BUCKETS)

    def add(self, array: pa.Array) -> None:
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        self.missing += array.null_count
        present = pc.drop_null(array)
        if not len(present):
            return
        self.present += len(present)
        self.total_length += int(pc.sum(pc.utf8_length(present)).as_py())
        self.top.AddValues(present)
        self.distinct.AddValues(present)

    def merge(self, other: _StringAccumulator) -> None:
        self.present += other.present
        self.missing += other.missing
        self.total_length += other.total_length
        self.top.Merge(other.top)
        self.distinct.Merge(other.distinct)

    def fill(self, fs: statistics_pb2.FeatureNameStatistics, options: StatsOptions) -> None:
        fs.type = _FNS.STRING
        ss = fs.string_stats
        _fill_common(ss.common_stats, self.present, self.missing)
        if not self.present:
            return
        counts = _top_counts(self.top)
        # Below the sketch sizes both are exact; above, keep them consistent.
        ss.unique = max(int(self.distinct.Estimate()), len(counts))
        ss.avg_length = self.total_length / self.present
        for label, count in counts[: options.num_top_values]:
            ss.top_values.add(value=label, frequency=count)
        _fill_rank_histogram(ss.rank_histogram, counts[: options.num_rank_histogram_buckets])


class _UntypedAccumulator:
    """A column seen only as all-null so far: missing values, type unknown (STRING at the end,
    as an all-empty text column)."""

    kind = None

    def __init__(self):
        self.missing = 0

    def add(self, array: pa.Array) -> None:
        self.missing += len(array)

    def fill(self, fs: statistics_pb2.FeatureNameStatistics, options: StatsOptions) -> None:
        fs.type = _FNS.STRING
        _fill_common(fs.string_stats.common_stats, 0, self.missing)


def _fill_common(common: statistics_pb2.CommonStatistics, n_present: int, n_missing: int) -> None:
    common.num_non_missing = n_present
    common.num_missing = n_missing
    common.tot_num_values = n_present
    if n_present:
        common.min_num_values = 1
        common.max_num_values = 1
        common.avg_num_values = 1.0


def _top_counts(top: sketches.MisraGriesSketch) -> list[tuple[str, int]]:
    """(value, count), most frequent first, ties by value."""
    estimate = top.Estimate()
    labels = [v.decode("utf-8", errors="replace") for v in estimate.field(0).to_pylist()]
    counts = [int(round(c)) for c in estimate.field(1).to_pylist()]
    return sorted(zip(labels, counts, strict=True), key=lambda kv: (-kv[1], kv[0]))


def _fill_rank_histogram(hist: statistics_pb2.RankHistogram, counts) -> None:
    for rank, (label, count) in enumerate(counts):
        hist.buckets.add(low_rank=rank, high_rank=rank, label=label, sample_count=count)


# --------------------------------------------------------------------------- #
# One split
# --------------------------------------------------------------------------- #


class SplitAccumulator:
    """Statistics of one split so far: the number of examples and one accumulator per column,
    in the order the columns were first seen."""

    def __init__(self, options: StatsOptions):
        self.options = options
        self.num_examples = 0
        self.features: dict[str, object] = {}

    def _new(self, name: str, kind: int | None):
        if kind is None:
            return _UntypedAccumulator()
        if kind == _FNS.STRING:
            return _StringAccumulator(self.options.top_k_buckets)
        return _NumericAccumulator(kind, name == self.options.label, self.options.top_k_buckets)

    def add_batch(self, batch: pa.RecordBatch | pa.Table) -> SplitAccumulator:
        names = [str(name) for name in batch.schema.names]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"duplicated columns {duplicated}")
        self.num_examples += batch.num_rows
        for name, column in zip(names, batch.columns, strict=True):
            kind = arrow_stats_type(name, column.type)
            chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
            current = self.features.get(name)
            if current is None or (current.kind is None and kind is not None):
                fresh = self._new(name, kind)
                if current is not None:
                    fresh.missing += current.missing
                current = self.features[name] = fresh
            elif kind is not None and not _compatible(current.kind, kind):
                raise TypeError(_mixed_types_message(name, current.kind, kind))
            for chunk in chunks:
                if kind is None:
                    current.missing += len(chunk)
                else:
                    if current.kind == _FNS.INT and kind == _FNS.FLOAT:
                        current.kind = _FNS.FLOAT
                    current.add(chunk)
        return self

    def merge(self, other: SplitAccumulator) -> SplitAccumulator:
        self.num_examples += other.num_examples
        for name, theirs in other.features.items():
            ours = self.features.get(name)
            if ours is None:
                self.features[name] = theirs
            elif theirs.kind is None:
                ours.missing += theirs.missing
            elif ours.kind is None:
                theirs.missing += ours.missing
                self.features[name] = theirs
            elif not _compatible(ours.kind, theirs.kind):
                raise TypeError(_mixed_types_message(name, ours.kind, theirs.kind))
            else:
                ours.merge(theirs)
        return self

    def compact(self) -> SplitAccumulator:
        """Shrink the quantiles sketches before the accumulator is shipped (Beam pickles it
        between stages); merging and adding still work after."""
        for accumulator in self.features.values():
            if isinstance(accumulator, _NumericAccumulator):
                accumulator.quantiles.Compact()
        return self

    def to_proto(self, name: str) -> statistics_pb2.DatasetFeatureStatistics:
        """The split's statistics; finalises the sketches (call once)."""
        ds = statistics_pb2.DatasetFeatureStatistics(name=name, num_examples=self.num_examples)
        for column, accumulator in self.features.items():
            fs = ds.features.add()
            fs.path.step.append(column)
            accumulator.fill(fs, self.options)
        return ds


def _compatible(ours: int, theirs: int) -> bool:
    numeric = {_FNS.INT, _FNS.FLOAT}
    return ours == theirs or (ours in numeric and theirs in numeric)


def _mixed_types_message(name: str, first: int, second: int) -> str:
    return (
        f"column {name!r} is {_FNS.Type.Name(first)} in one batch and {_FNS.Type.Name(second)} "
        "in another; give it one type in every file"
    )
