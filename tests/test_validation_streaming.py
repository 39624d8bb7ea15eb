"""Validation streams each split's Parquet file by record batch (mlops/tfdv/scan.py): its outputs
equal those of the whole-frame computation (the frame functions of mlops/data_checks.py and
`compute_statistics` on `read_split` frames), whether a split is one batch or many."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tensorflow_metadata.proto.v0 import statistics_pb2

from components.ingest import run_ingest
from components.validate import run_data_validation
from mlops import tfdv as dv
from mlops.artifacts import SPLITS, read_split
from mlops.tfdv.scan import ReadinessSpec, scan_splits
from mlops.tfdv.sketch_stats import StatsOptions
from tests.readiness_reference import identifier_like, leakage_table, shared_rows


def _rewrite_in_small_row_groups(source: Path, target: Path, rows: int) -> None:
    """The same dataset with row groups of `rows` rows, so each split streams in many batches."""
    target.mkdir(parents=True)
    for file in source.iterdir():
        if file.suffix == ".parquet":
            pq.write_table(pq.read_table(file), target / file.name, row_group_size=rows)
        else:
            (target / file.name).write_bytes(file.read_bytes())


def _stats_without_moments(path: Path) -> tuple[statistics_pb2.DatasetFeatureStatisticsList, list]:
    """The statistics file with mean and std_dev taken out (returned beside them)."""
    stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(path.read_bytes())
    return _stats_without_moments_proto(stats)


def test_streamed_validation_equals_the_whole_frame_computation(taxi_config, tmp_path: Path):
    """On taxi (nullable integers, text, floats with missing values): one batch per split gives
    byte-identical statistics to `compute_statistics` of the whole frames, and readiness numbers
    equal to the frame functions; 500-row batches give the same schema, anomalies and summary,
    and statistics that differ only in the last bits of mean and std_dev (merged moments)."""
    run_ingest(taxi_config, tmp_path / "data")
    _rewrite_in_small_row_groups(tmp_path / "data", tmp_path / "small", rows=500)
    assert pq.ParquetFile(tmp_path / "small" / "train.parquet").num_row_groups > 10
    outputs = {}
    for name in ("data", "small"):
        out = tmp_path / f"out-{name}"
        outputs[name] = run_data_validation(
            taxi_config, tmp_path / name, out / "statistics", out / "schema", out / "anomalies"
        )
    assert outputs["data"] == outputs["small"]
    for name in ("schema/schema.pbtxt", "anomalies/Skew/SchemaDiff.pb"):
        assert (tmp_path / "out-data" / name).read_bytes() == (
            tmp_path / "out-small" / name
        ).read_bytes()

    # One batch per split: exactly what the whole frames give.
    label, features = taxi_config.data.label, taxi_config.features
    frames = {s: read_split(tmp_path / "data", s, arrow_strings=True) for s in SPLITS}
    whole = dv.compute_statistics(frames, label=label)
    one_batch = tmp_path / "out-data" / "statistics" / "FeatureStats.pb"
    assert one_batch.read_bytes() == whole.SerializeToString()
    readiness = outputs["data"]["readiness"]
    used = features.raw_features
    assert readiness["single_feature_auc"] == leakage_table(
        frames, used, set(features.numeric), label
    )
    assert readiness["test_rows_in_train"] == shared_rows(
        frames["train"], frames["test"], [*used, label]
    )
    train = frames["train"]
    assert readiness["identifier_like_columns"] == [
        c for c in train.columns if c != label and identifier_like(train, c)
    ]
    assert readiness["missing_rate"] == {f: round(float(train[f].isna().mean()), 4) for f in used}

    # Many batches: the same up to the merged moments' rounding.
    streamed = tmp_path / "out-small" / "statistics" / "FeatureStats.pb"
    (a, a_moments), (b, b_moments) = (_stats_without_moments(p) for p in (one_batch, streamed))
    assert a == b
    np.testing.assert_allclose(np.array(b_moments), np.array(a_moments), rtol=1e-12)


def test_types_follow_the_frames_and_shared_rows_count_across_batches(tmp_path: Path):
    """Files written without pandas metadata: an integer column with missing values is read as
    float64 and a boolean one as text, as pandas reads them; a row repeated in train and test is
    found across row groups; unseen categories and missing labels score as in the frame code."""
    rng = np.random.default_rng(3)
    n = {"train": 3000, "eval": 900, "test": 900}
    data = tmp_path / "data"
    data.mkdir()
    for split, rows in n.items():
        label = rng.choice(np.array(["no", "yes", None], dtype=object), rows, p=[0.5, 0.45, 0.05])
        hint = np.where(rng.random(rows) < 0.8, label, "other")
        table = pa.table(
            {
                "count": pa.array(
                    [None if v < 3 else int(v) for v in rng.integers(0, 60, rows)], pa.int64()
                ),
                "flag": pa.array([None if v < 0.1 else bool(v < 0.5) for v in rng.random(rows)]),
                "amount": pa.array(
                    np.where(rng.random(rows) < 0.05, np.nan, rng.normal(size=rows))
                ),
                "hint": pa.array(
                    [
                        f"{h}-{split}" if v < 0.05 else h
                        for h, v in zip(hint, rng.random(rows), strict=True)
                    ],
                    pa.string(),
                ),
                "id": pa.array([f"{split}-{i}" for i in range(rows)]),
                "label": pa.array(label, pa.string()),
            }
        )
        if split == "test":  # 40 train rows reappear in test, in its last row group
            train = pq.read_table(data / "train.parquet")
            table = pa.concat_tables([table.slice(40), train.slice(1000, 40)])
        pq.write_table(table, data / f"{split}.parquet", row_group_size=256)
    paths = {s: data / f"{s}.parquet" for s in SPLITS}
    frames = {s: read_split(data, s, arrow_strings=True) for s in SPLITS}
    assert frames["train"]["count"].dtype == "float64" and frames["train"]["flag"].dtype == object
    features, numeric = ["count", "flag", "amount", "hint"], {"count", "amount"}
    spec = ReadinessSpec("label", features, numeric, [*features, "label"])
    scan = scan_splits(paths, spec, options=StatsOptions(label="label"))

    whole = dv.compute_statistics(frames, label="label")
    streamed, moments = _stats_without_moments_proto(scan.statistics)
    expected, expected_moments = _stats_without_moments_proto(whole)
    assert streamed == expected
    np.testing.assert_allclose(np.array(moments), np.array(expected_moments), rtol=1e-12)
    assert scan.leakage == leakage_table(frames, features, numeric, "label")
    assert scan.leakage["hint"] > 0.7
    from mlops.data_checks import count_shared

    ready = scan.readiness
    shared = count_shared(ready["train"].row_hashes(), ready["test"].row_hashes())
    assert shared == shared_rows(frames["train"], frames["test"], [*features, "label"])
    assert shared >= 40  # the copied rows, and rows whose values coincide (missing amounts)
    assert ready["train"].identifier_like_columns() == [
        c for c in frames["train"].columns if c != "label" and identifier_like(frames["train"], c)
    ]
    assert ready["train"].identifier_like_columns() == ["id"]

    # Statistics computed elsewhere (on Dataflow): the same readiness, in one thread too.
    alone = scan_splits(paths, spec, options=None, workers=1)
    assert alone.statistics is None and alone.leakage == scan.leakage
    assert alone.readiness["test"].row_hashes().tolist() == ready["test"].row_hashes().tolist()


def _stats_without_moments_proto(stats):
    """Statistics with mean and std_dev taken out (returned beside them)."""
    copy = statistics_pb2.DatasetFeatureStatisticsList()
    copy.CopyFrom(stats)
    moments = []
    for dataset in copy.datasets:
        for feature in dataset.features:
            if feature.HasField("num_stats"):
                moments.append((feature.num_stats.mean, feature.num_stats.std_dev))
                feature.num_stats.ClearField("mean")
                feature.num_stats.ClearField("std_dev")
    return copy, moments


@pytest.mark.parametrize("empty", ["eval", "test"])
def test_an_empty_split_streams_as_the_empty_frame(tmp_path: Path, empty: str):
    """A split without rows still lists its columns (no values), and leakage falls back to
    train when eval is empty, as the frame code does."""
    rng = np.random.default_rng(5)
    data = tmp_path / "data"
    data.mkdir()
    for split in SPLITS:
        rows = 0 if split == empty else 600
        frame = pd.DataFrame(
            {
                "x": pd.array(rng.integers(0, 9, rows), "Int64"),
                "c": pd.array(rng.choice(["a", "b"], rows), pd.StringDtype("pyarrow")),
                "label": pd.array(rng.choice(["p", "q"], rows), pd.StringDtype("pyarrow")),
            }
        )
        frame.to_parquet(data / f"{split}.parquet", index=False)
    paths = {s: data / f"{s}.parquet" for s in SPLITS}
    frames = {s: read_split(data, s, arrow_strings=True) for s in SPLITS}
    spec = ReadinessSpec("label", ["x", "c"], {"x"}, ["x", "c", "label"])
    scan = scan_splits(paths, spec, options=StatsOptions(label="label"))
    assert scan.statistics == dv.compute_statistics(frames, label="label")
    assert scan.leakage == leakage_table(frames, ["x", "c"], {"x"}, "label")
    assert scan.readiness[empty].rows == 0
