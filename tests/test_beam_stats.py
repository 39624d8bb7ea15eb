"""The sketch statistics: exact quantities equal pandas on penguins and taxi, sketched ones are
within their stated error, batches merge, the Beam pipeline gives the in-process result, and the
accumulator's size does not grow with the data."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import palmerpenguins
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tensorflow_metadata.proto.v0 import statistics_pb2

from mlops import tfdv as dv
from mlops.tfdv.sketch_stats import (
    CDF_POINTS,
    DISTINCT_BUCKETS,
    QUANTILES_EPSILON,
    SplitAccumulator,
    StatsOptions,
)
from mlops.tfdv.statistics import frame_to_arrow

DATA = Path(__file__).resolve().parents[1] / "data"
TAXI_CSV = DATA / "chicago_taxi" / "big_tipper.csv"
RANK_TOLERANCE = QUANTILES_EPSILON + 1 / CDF_POINTS
FNS = statistics_pb2.FeatureNameStatistics
BUCKETS = StatsOptions().top_k_buckets  # Misra-Gries buckets with the default options
RANK_BUCKETS = StatsOptions().num_rank_histogram_buckets  # kept in a rank histogram


@pytest.fixture(scope="module")
def datasets() -> dict[str, tuple[pd.DataFrame, str]]:
    return {
        "penguins": (palmerpenguins.load_penguins(), "species"),
        "taxi": (pd.read_csv(TAXI_CSV), "big_tipper"),
    }


def _exact_fields(ds: statistics_pb2.DatasetFeatureStatistics) -> dict[str, tuple]:
    """What the sketches must not change: counts, extremes, moments, zeros, lengths, types."""
    fields = {"__examples__": (ds.num_examples,)}
    for name, fs in dv.features_by_name(ds).items():
        common = dv.common_statistics(fs)
        row = (fs.type, common.num_non_missing, common.num_missing, common.tot_num_values)
        if fs.HasField("num_stats"):
            num = fs.num_stats
            row += (num.min, num.max, num.num_zeros, dv.statistics.all_integral(fs))
            row += (pytest.approx(num.mean, rel=1e-12), pytest.approx(num.std_dev, rel=1e-9))
        else:
            row += (pytest.approx(fs.string_stats.avg_length, rel=1e-12),)
        fields[name] = row
    return fields


def _assert_quantile(values: np.ndarray, fraction: float, got: float) -> None:
    low = np.quantile(values, max(fraction - RANK_TOLERANCE, 0.0), method="lower")
    high = np.quantile(values, min(fraction + RANK_TOLERANCE, 1.0), method="higher")
    assert low <= got <= high, (fraction, low, got, high)


@pytest.mark.parametrize("name", ["penguins", "taxi"])
def test_exact_quantities_equal_pandas_and_sketches_are_within_tolerance(datasets, name):
    frame, label = datasets[name]
    ds = dv.compute_statistics({"train": frame}, label=label).datasets[0]
    assert ds.num_examples == len(frame)
    feats = dv.features_by_name(ds)
    assert list(feats) == list(frame.columns)
    for column in frame.columns:
        fs, series = feats[column], frame[column]
        present = series.dropna()
        common = dv.common_statistics(fs)
        assert (common.num_non_missing, common.num_missing) == (len(present), series.isna().sum())
        if fs.type == FNS.STRING:
            ss = fs.string_stats
            counts = present.value_counts()
            assert ss.unique == len(counts)
            assert ss.avg_length == pytest.approx(present.str.len().mean(), rel=1e-6)  # a float32
            assert dv.value_counts(fs) == {k: float(v) for k, v in counts.items()}
            continue
        values = present.to_numpy(dtype="float64")
        num = fs.num_stats
        assert (num.min, num.max) == (values.min(), values.max())
        assert num.mean == pytest.approx(values.mean(), rel=1e-12)
        assert num.std_dev == pytest.approx(values.std(), rel=1e-9)
        assert num.num_zeros == np.count_nonzero(values == 0)
        _assert_quantile(values, 0.5, num.median)
        quantiles = dv.numeric_histogram(fs, statistics_pb2.Histogram.QUANTILES)
        edges = [quantiles.buckets[0].low_value] + [b.high_value for b in quantiles.buckets]
        for fraction, value in zip(np.linspace(0, 1, len(edges)), edges, strict=True):
            _assert_quantile(values, fraction, value)
        counts = dv.value_counts(fs)
        if counts is not None:  # INT or integral FLOAT
            exact = pd.Series(values.astype(np.int64)).value_counts()
            if len(exact) <= BUCKETS:  # exact below the sketch size
                top = sorted(exact.items(), key=lambda kv: (-kv[1], str(kv[0])))[:RANK_BUCKETS]
                assert counts == {str(k): float(v) for k, v in top}
            else:  # Misra-Gries counts are upper bounds, high by at most n / buckets
                assert len(counts) == RANK_BUCKETS
                for value, count in counts.items():
                    assert 0 <= count - exact[int(value)] <= len(values) / BUCKETS
    assert dv.value_counts(feats[label]) is not None


def test_batches_merge_to_the_whole(datasets):
    frame, label = datasets["taxi"]
    options = StatsOptions(label=label)
    table = frame_to_arrow(frame)
    whole = SplitAccumulator(options).add_batch(table).to_proto("t")
    # Uneven chunks in two accumulators merged, one of them through pickle (as Beam ships them).
    first, second = SplitAccumulator(options), SplitAccumulator(options)
    for batch in table.slice(0, 5000).to_batches(max_chunksize=999):
        first.add_batch(batch)
    second.add_batch(table.slice(5000))
    first.compact()  # as Beam's CombineFn.compact before shipping; it keeps merging
    merged = pickle.loads(pickle.dumps(first)).merge(pickle.loads(pickle.dumps(second)))
    merged = merged.to_proto("t")
    assert _exact_fields(merged) == _exact_fields(whole)
    _assert_same_value_counts(merged, whole)


def _assert_same_value_counts(first, second) -> None:
    """Value counts agree wherever the top-k sketch held every value (then they are exact)."""
    others = dv.features_by_name(second)
    compared = 0
    for name, fs in dv.features_by_name(first).items():
        counts = dv.value_counts(fs)
        if counts is not None and len(counts) < RANK_BUCKETS:
            assert counts == dv.value_counts(others[name]), name
            compared += 1
    assert compared >= 5


def test_types_merge_and_conflicts_are_named():
    options = StatsOptions()
    accumulator = SplitAccumulator(options)
    accumulator.add_batch(pa.table({"n": pa.array([None, None], pa.null()), "x": [1, 2]}))
    accumulator.add_batch(pa.table({"n": [1.5, None], "x": [2.5, 3.0]}))
    feats = dv.features_by_name(accumulator.to_proto("s"))
    assert feats["n"].type == FNS.FLOAT
    assert feats["n"].num_stats.common_stats.num_missing == 3
    assert feats["x"].type == FNS.FLOAT and feats["x"].num_stats.mean == pytest.approx(2.125)
    with pytest.raises(TypeError, match="column 'x' is FLOAT in one batch and STRING"):
        accumulator = SplitAccumulator(options).add_batch(pa.table({"x": [1.0]}))
        accumulator.add_batch(pa.table({"x": ["a"]}))


def test_beyond_the_sketch_sizes_estimates_stay_within_bounds():
    rng = np.random.default_rng(0)
    rows = 60_000
    codes = rng.zipf(1.3, size=rows) % 20_000  # many distinct values, a few frequent ones
    frame = pd.DataFrame({"code": [f"c{c}" for c in codes], "x": rng.normal(size=rows)})
    fs = dv.features_by_name(dv.compute_statistics({"t": frame}).datasets[0])
    exact = frame["code"].value_counts()
    ss = fs["code"].string_stats
    assert len(exact) > DISTINCT_BUCKETS
    assert ss.unique == pytest.approx(len(exact), rel=4 / np.sqrt(DISTINCT_BUCKETS))
    for bucket in ss.rank_histogram.buckets:  # Misra-Gries: never under, at most n/k over
        assert 0 <= bucket.sample_count - exact[bucket.label] <= rows / BUCKETS
    x = frame["x"].to_numpy()
    hist = dv.numeric_histogram(fs["x"], statistics_pb2.Histogram.STANDARD)
    edges = [hist.buckets[0].low_value] + [b.high_value for b in hist.buckets]
    exact_cumulative = np.cumsum(np.histogram(x, bins=edges)[0])
    got = np.cumsum([b.sample_count for b in hist.buckets])
    np.testing.assert_allclose(got, exact_cumulative, atol=RANK_TOLERANCE * rows)


def test_accumulator_size_is_bounded_by_the_sketches_not_the_data():
    rng = np.random.default_rng(1)

    def batch(rows: int) -> pa.RecordBatch:
        return pa.record_batch(
            {
                "x": rng.normal(size=rows),
                "n": rng.integers(0, 10**9, size=rows),
                "s": pa.array(rng.integers(0, 10**9, size=rows).astype(str)),
            }
        )

    accumulator = SplitAccumulator(StatsOptions())
    for _ in range(4):
        accumulator.add_batch(batch(50_000))
    small = len(pickle.dumps(accumulator))
    data_bytes = 0
    for _ in range(20):
        data = batch(50_000)
        data_bytes += data.nbytes
        accumulator.add_batch(data)
    large = len(pickle.dumps(accumulator))
    assert accumulator.num_examples == 1_200_000
    # The quantiles sketch grows with log(n) at most: 6x the data is not 6x the size.
    assert large < 2 * small, (small, large)
    assert large < data_bytes / 10, (large, data_bytes)


def test_beam_pipeline_writes_the_in_process_statistics(tmp_path, datasets):
    from mlops.tfdv.beam_stats import statistics_of_parquet

    frame, label = datasets["taxi"]
    splits = {"train": frame.iloc[:9000], "eval": frame.iloc[9000:]}
    paths = {}
    for split, part in splits.items():
        paths[split] = tmp_path / f"{split}.parquet"
        # Several row groups, so the pipeline merges accumulators of one split.
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), paths[split], 2000)
    output = tmp_path / "stats" / dv.STATS_FILE
    on_beam = statistics_of_parquet(paths, output, label=label, beam_args=["--runner=FnApiRunner"])
    assert dv.read_statistics(output) == on_beam
    assert [p.name for p in output.parent.iterdir()] == [dv.STATS_FILE]
    in_process = dv.compute_statistics(splits, label=label)
    assert [d.name for d in on_beam.datasets] == ["train", "eval"]
    for beam_ds, local_ds in zip(on_beam.datasets, in_process.datasets, strict=True):
        assert _exact_fields(beam_ds) == _exact_fields(local_ds)
        _assert_same_value_counts(beam_ds, local_ds)


def test_value_counts_are_keyed_by_the_exact_value_text():
    frame = pd.DataFrame(
        {
            "tract": [17031081401.0, 17031081401.0, None],  # integral float, beyond 6 digits
            "id": pd.array([2**60 + 1, 2**60 + 1, 7], dtype="Int64"),  # beyond float64
            "flag": [True, False, True],
            "y": [0.5, 1.0, 0.5],  # a non-integral float label keeps its counts
        }
    )
    feats = dv.features_by_name(dv.compute_statistics({"t": frame}, label="y").datasets[0])
    assert dv.value_counts(feats["tract"]) == {"17031081401": 2.0}
    assert dv.value_counts(feats["id"]) == {str(2**60 + 1): 2.0, "7": 1.0}
    assert dv.value_counts(feats["flag"]) == {"1": 2.0, "0": 1.0}
    assert dv.value_counts(feats["y"]) == {"0.5": 2.0, "1": 1.0}
