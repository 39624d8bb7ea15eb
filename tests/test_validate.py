from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from components.ingest import run_ingest
from components.validate import DataValidationError, run_data_validation
from tests.conftest import TAXI_SCHEMA


def _outputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    return tmp_path / "statistics", tmp_path / "schema", tmp_path / "anomalies"


def test_penguins_validation_writes_tfdv_formats(penguins_config, tmp_path: Path) -> None:
    run_ingest(penguins_config, tmp_path / "data")
    stats_dir, schema_dir, anomalies_dir = _outputs(tmp_path)
    summary = run_data_validation(penguins_config, tmp_path / "data", *_outputs(tmp_path))
    assert summary["blocking"] == []
    stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(
        (stats_dir / "FeatureStats.pb").read_bytes()
    )
    assert [d.name for d in stats.datasets] == ["train", "eval", "test"]
    assert sum(d.num_examples for d in stats.datasets) == 344
    assert (stats_dir / "Split-eval" / "FeatureStats.pb").is_file()
    from google.protobuf import text_format

    schema = text_format.Parse((schema_dir / "schema.pbtxt").read_text(), schema_pb2.Schema())
    by_name = {f.name: f for f in schema.feature}
    assert by_name["island"].skew_comparator.infinity_norm.threshold == pytest.approx(0.2)
    assert by_name[
        "bill_length_mm"
    ].skew_comparator.jensen_shannon_divergence.threshold == pytest.approx(0.2)
    assert "SERVING" in by_name["species"].not_in_environment
    skew = anomalies_pb2.Anomalies.FromString(
        (anomalies_dir / "Skew" / "SchemaDiff.pb").read_bytes()
    )
    assert {info.path.step[0] for info in skew.drift_skew_info} == set(
        penguins_config.features.raw_features
    )


def test_taxi_validates_against_the_tfx_curated_schema(taxi_config, tmp_path: Path) -> None:
    validation = taxi_config.validation.model_copy(
        update={"schema_path": str(TAXI_SCHEMA), "fail_on_anomalies": False}
    )
    config = taxi_config.model_copy(update={"validation": validation})
    run_ingest(config, tmp_path / "data")
    summary = run_data_validation(config, tmp_path / "data", *_outputs(tmp_path))
    assert summary["schema_source"] == str(TAXI_SCHEMA)
    # The curated domain of `company` predates some companies in the later (eval/test) trips.
    assert any("feature 'company'" in message for message in summary["blocking"])
    assert summary["anomalies"]["eval"]["features"]["big_tipper"]["severity"] == "WARNING"


def test_blocking_anomalies_stop_with_feature_value_and_rule(
    penguins_config, tmp_path: Path
) -> None:
    run_ingest(penguins_config, tmp_path / "data")
    evaluation = pd.read_parquet(tmp_path / "data" / "eval.parquet")
    evaluation["island"] = "Atlantis"  # a category never seen in train
    evaluation["body_mass_g"] = evaluation["body_mass_g"] * 10  # grams became decigrams
    evaluation.to_parquet(tmp_path / "data" / "eval.parquet", index=False)
    with pytest.raises(DataValidationError) as error:
        run_data_validation(penguins_config, tmp_path / "data", *_outputs(tmp_path))
    message = str(error.value)
    assert "feature 'island'" in message and "'Atlantis'" in message
    assert "feature 'body_mass_g'" in message and "Jensen-Shannon" in message
    # Everything was written before stopping, for inspection.
    assert (tmp_path / "anomalies" / "Split-eval" / "SchemaDiff.pb").is_file()


def test_a_leaking_taxi_column_stops_the_run_unless_acknowledged(
    taxi_config, tmp_path: Path
) -> None:
    """`tips` (the tip itself) alone predicts big_tipper with AUC ~0.96; payment_type (~0.92) is
    strong but legitimate and passes."""
    config = taxi_config.with_overrides(
        data={**taxi_config.data.model_dump(), "exclude_columns": []},
        features={
            **taxi_config.features.model_dump(),
            "numeric": [*taxi_config.features.numeric, "tips"],
        },
    )
    run_ingest(config, tmp_path / "data")
    dirs = [tmp_path / name for name in ("stats", "schema", "anomalies")]
    with pytest.raises(DataValidationError, match=r"feature 'tips' alone predicts 'big_tipper'"):
        run_data_validation(config, tmp_path / "data", *dirs)
    acknowledged = config.with_overrides(
        validation={
            **config.validation.model_dump(),
            "acknowledged_strong_features": ["tips"],
        }
    )
    summary = run_data_validation(acknowledged, tmp_path / "data", *dirs)
    aucs = summary["readiness"]["single_feature_auc"]
    assert aucs["tips"] > 0.95 > aucs["payment_type"] > 0.85
    assert summary["readiness"]["rows"]["train"] > 10_000


def test_row_checks_are_vectorised_with_the_per_value_meaning() -> None:
    from mlops.features import category_text, category_texts
    from tests.readiness_reference import shared_rows

    column = pd.Series([8.0, None, 2.5, 8.0, float("nan")], index=[3, 1, 4, 1, 5])
    assert category_texts(column).tolist() == [category_text(v) for v in column]
    assert category_texts(column).index.tolist() == [3, 1, 4, 1, 5]
    labels = pd.Series(["a", None, "b"], dtype="string")
    assert category_texts(labels).tolist() == ["a", category_text(None), "b"]
    train = pd.DataFrame({"x": pd.array([1, None, 3], dtype="Int64"), "s": ["a", "b", None]})
    test = pd.DataFrame({"x": pd.array([1, None, 3, 3], dtype="Int64"), "s": ["a", "b", "c", None]})
    # (1, a) and (NA, b) and (3, NA) are in train; (3, c) is not.
    assert shared_rows(train, test, ["x", "s"]) == 3
    assert shared_rows(train, test, ["s"]) == 3
    assert shared_rows(train, test.iloc[:0], ["x"]) == 0


def _reference_auc(train, other, feature, label, numeric):
    """single_feature_auc written the slow, obvious way: a text per row, pandas groupby, sklearn."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from mlops.features import category_text

    train_y = [category_text(v) for v in train[label]]
    other_y = [category_text(v) for v in other[label]]
    if numeric:
        present = train[feature].astype("float64").dropna().to_numpy()
        edges = np.unique(np.quantile(present, np.linspace(0, 1, 21)[1:-1]))

        def key(v):
            return -1 if pd.isna(v) else int(np.searchsorted(edges, float(v)))
    else:
        key = category_text
    train_keys = [key(v) for v in train[feature]]
    other_keys = [key(v) for v in other[feature]]
    classes = sorted(set(train_y) - {""})
    aucs = []
    for positive in classes[1:] if len(classes) == 2 else classes:
        is_positive = pd.Series([y == positive for y in train_y], dtype="float64")
        rate = is_positive.groupby(train_keys).mean().to_dict()
        scores = [rate.get(k, is_positive.mean()) for k in other_keys]
        truth = [y == positive for y in other_y]
        if 0 < sum(truth) < len(truth):
            aucs.append(roc_auc_score(truth, scores))
    return round(float(np.mean(aucs)), 4)


@pytest.mark.parametrize("classes", [["no", "yes"], ["a", "b", "c", None]])
def test_leakage_table_matches_a_per_row_reference(classes) -> None:
    """The vectorised single-feature AUCs equal the per-row computation, on values whose texts
    coincide (1, 1.0, "1"; None, NaN, NA), missing labels and a class absent from train."""
    import numpy as np

    from tests.readiness_reference import leakage_table

    rng = np.random.default_rng(7)
    n = 3000
    mixed = np.array([1, 1.0, "1", None, float("nan"), "x", 2, b"y"], dtype=object)

    def frame(rows, label_values):
        y = rng.choice(np.array(label_values, dtype=object), rows)
        noisy = np.where(
            rng.random(rows) < 0.7, y, rng.choice(np.array(label_values, object), rows)
        )
        return pd.DataFrame(
            {
                "mixed": rng.choice(mixed, rows),
                "count": pd.array(
                    np.where(rng.random(rows) < 0.1, None, rng.integers(0, 40, rows)), "Int64"
                ),
                "amount": np.where(rng.random(rows) < 0.05, np.nan, rng.normal(0, 1, rows)),
                "hint": pd.array(noisy, dtype="string"),
                "label": pd.array(y, dtype="string"),
            }
        )

    frames = {"train": frame(n, classes), "eval": frame(n // 3, [*classes, "new"])}
    features, numeric = ["mixed", "count", "amount", "hint"], {"count", "amount"}
    table = leakage_table(frames, features, numeric, "label")
    expected = {
        f: _reference_auc(frames["train"], frames["eval"], f, "label", f in numeric)
        for f in features
    }
    assert table == expected
    assert table["hint"] > 0.7 and abs(table["amount"] - 0.5) < 0.1


def test_arrow_text_frames_give_the_same_statistics_and_row_checks(
    penguins_config, tmp_path: Path
) -> None:
    """Validation reads text as Arrow-backed strings; statistics and every row check equal those
    of the frames `pandas.read_parquet` gives (Python strings)."""
    from mlops import tfdv as dv
    from mlops.artifacts import SPLITS, read_split
    from tests.readiness_reference import identifier_like, leakage_table, shared_rows

    run_ingest(penguins_config, tmp_path / "data")
    plain = {s: read_split(tmp_path / "data", s) for s in SPLITS}
    arrow = {s: read_split(tmp_path / "data", s, arrow_strings=True) for s in SPLITS}
    assert arrow["train"]["island"].dtype.storage == "pyarrow"
    assert plain["train"]["island"].dtype.storage == "python"
    label, features = penguins_config.data.label, penguins_config.features
    stats = [dv.compute_statistics(f, label=label).SerializeToString() for f in (plain, arrow)]
    assert stats[0] == stats[1]
    checks = [
        (
            leakage_table(f, features.raw_features, set(features.numeric), label),
            shared_rows(f["train"], f["test"], [*features.raw_features, label]),
            shared_rows(f["train"], f["train"].iloc[:40], ["island", "sex"]),
            [identifier_like(f["train"], c, min_rows=5) for c in f["train"].columns],
        )
        for f in (plain, arrow)
    ]
    assert checks[0] == checks[1]
    assert checks[0][2] == 40 and checks[0][0]
