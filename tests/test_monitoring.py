"""Monitoring on real data: the TFX penguins statistics and schema, the TFX skewed serving file,
resamples (no false alarms), real shifts (skew, drift), quality with labels, the retraining
decision and the written TFDV-format files."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

from components.ingest import run_ingest
from components.validate import run_data_validation
from mlops.artifacts import read_split
from mlops.config import PipelineConfig, ThresholdConfig
from mlops.monitoring import (
    PREDICTED_LABEL,
    decide_retrain,
    load_serving_data,
    quality_metrics,
    read_last_retrain,
    record_retrain,
    run_monitoring,
)
from tests.conftest import DATA, config_in

TFX_DATA = DATA / "penguins_tfx"
CLEAN = TFX_DATA / "penguins_processed.csv"
SKEWED = TFX_DATA / "penguins_processed_skewed.csv"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def tfx(tmp_path_factory) -> dict[str, Any]:
    """Training statistics and schema of the TFX penguins data, built by the training steps."""
    tmp = tmp_path_factory.mktemp("tfx")
    config = config_in(tmp, "penguins_tfx")
    run_ingest(config, tmp / "data")
    run_data_validation(config, tmp / "data", tmp / "statistics", tmp / "schema", tmp / "anomalies")
    clean = load_serving_data(str(CLEAN), features=config.features, label=config.data.label)
    return {
        "config": config,
        "statistics": str(tmp / "statistics" / "FeatureStats.pb"),
        "schema": str(tmp / "schema" / "schema.pbtxt"),
        "clean": clean,
        "tmp": tmp,
    }


def _monitor(tfx: dict[str, Any], current: pd.DataFrame, name: str, **kwargs: Any) -> dict:
    kwargs.setdefault("previous", None)
    kwargs.setdefault("model_dir", None)
    return run_monitoring(
        kwargs.pop("config", tfx["config"]),
        training_statistics=tfx["statistics"],
        schema=tfx["schema"],
        current=current,
        output_dir=str(tfx["tmp"] / name),
        **kwargs,
    )


def _served(frame: pd.DataFrame, label: str = "species") -> pd.DataFrame:
    """A request-log-like window: features plus the served prediction, no label (a perfect
    model, so predicted labels follow the true class distribution)."""
    return frame.assign(**{PREDICTED_LABEL: frame[label].astype(str)}).drop(columns=[label])


def _shifted(frame: pd.DataFrame, features: list[str], by: float = 0.3) -> pd.DataFrame:
    shifted = frame.copy()
    for name in features:
        shifted[name] = (shifted[name] + by).clip(0.0, 1.0)
    return shifted


def _retrain_config(config: PipelineConfig, **retrain: Any) -> PipelineConfig:
    monitoring = config.monitoring.model_copy(
        update={"retrain": config.monitoring.retrain.model_copy(update=retrain)}
    )
    return config.with_overrides(monitoring=monitoring)


def _flagged(rows: list[dict]) -> set[str]:
    return {row["feature"] for row in rows if row["flagged"]}


def test_load_serving_data_types_columns_like_ingest(tfx, tmp_path: Path) -> None:
    frame = load_serving_data(str(SKEWED), features=tfx["config"].features, label=None)
    assert len(frame) == 334
    assert str(frame["species"].dtype) == "Int64"
    assert all(str(frame[n].dtype) == "float64" for n in tfx["config"].features.numeric)
    assert frame.loc[1, "culmen_length_mm"] == -1
    parquet = tmp_path / "window.parquet"
    frame.to_parquet(parquet, index=False)
    again = load_serving_data(str(parquet), features=tfx["config"].features, label="species")
    pd.testing.assert_frame_equal(again, frame)


def test_an_empty_window_is_reported_but_never_retrains(tfx) -> None:
    empty = _served(tfx["clean"].head(0))
    summary = _monitor(tfx, empty, "empty", previous=_served(tfx["clean"]))
    assert [f["message"] for f in summary["findings"]] == [
        "current window: no examples (data missing)"
    ]
    assert any("no serving values to compute skew" in w["message"] for w in summary["warnings"])
    decision = decide_retrain(tfx["config"], summary, last_retrain_at=None, now=NOW)
    assert decision["reasons"] == [] and not decision["retrain"]
    assert "has 0, below monitoring.retrain.min_examples 50" in decision["blocked_by"][0]


def test_skewed_file_flags_the_domain_violation_and_retrains(tfx) -> None:
    config = tfx["config"]
    current = load_serving_data(str(SKEWED), features=config.features, label=None)
    summary = _monitor(tfx, current, "skewed")

    assert len(summary["findings"]) == 1, summary["findings"]
    finding = summary["findings"][0]
    assert finding["kind"] == "schema"
    assert finding["feature"] == "culmen_length_mm"
    assert finding["measure"] == "domain_min"
    assert (finding["value"], finding["threshold"]) == (-1.0, 0.0)
    assert "culmen_length_mm" in finding["message"]
    assert "value -1 below" in finding["message"]
    assert "min 0" in finding["message"]
    # One value moved: the distribution distances barely change; the domain check catches it.
    assert _flagged(summary["skew"]) == set()
    assert max(row["value"] for row in summary["skew"]) < 0.05

    decision = decide_retrain(config, summary, last_retrain_at=None, now=NOW)
    assert decision == {"retrain": True, "reasons": [finding["message"]], "blocked_by": []}


@pytest.mark.parametrize("resample", ["sample_60_percent", "bootstrap"])
def test_resamples_of_clean_data_raise_no_alarm(tfx, resample: str) -> None:
    clean = tfx["clean"]
    if resample == "bootstrap":
        current = clean.sample(frac=1.0, replace=True, random_state=7)
        previous = clean.sample(frac=1.0, replace=True, random_state=8)
    else:
        current = clean.sample(frac=0.6, random_state=7)
        previous = clean.drop(index=current.index)
    summary = _monitor(tfx, _served(current), resample, previous=_served(previous))

    assert summary["findings"] == []
    assert summary["warnings"] == []
    assert not summary["flagged"]
    assert len(summary["skew"]) == len(summary["drift"]) == 4
    assert max(row["value"] for row in summary["skew"] + summary["drift"]) < 0.05
    drift = summary["prediction_drift"]
    assert drift["available"] and drift["baseline"] == "previous window"
    assert drift["distance"] < 0.1 and not drift["flagged"]
    assert summary["schema_anomalies"] == {}
    decision = decide_retrain(tfx["config"], summary, last_retrain_at=None, now=NOW)
    assert decision == {"retrain": False, "reasons": [], "blocked_by": []}


def test_prediction_baseline_is_the_training_label_distribution(tfx) -> None:
    summary = _monitor(tfx, _served(tfx["clean"].sample(frac=0.6, random_state=3)), "labels")
    drift = summary["prediction_drift"]
    assert drift["baseline"] == "training labels"
    assert set(drift["baseline_distribution"]) == {"0", "1", "2"}
    assert not drift["flagged"]


def test_shifted_features_are_flagged_as_skew(tfx) -> None:
    shifted = ["culmen_length_mm", "flipper_length_mm"]
    current = _shifted(tfx["clean"].sample(frac=0.6, random_state=5), shifted)
    summary = _monitor(tfx, _served(current), "shifted")

    assert _flagged(summary["skew"]) == set(shifted)
    for row in summary["skew"]:
        if row["feature"] in shifted:
            assert row["measure"] == "jensen_shannon_divergence"
            assert row["value"] > row["threshold"] == 0.1
    messages = [f["message"] for f in summary["findings"] if f["kind"] == "skew"]
    assert len(messages) == 2
    assert all("Jensen-Shannon divergence" in m and "threshold 0.1" in m for m in messages)
    # Clipped to [0, 1]: a shift, not a domain violation.
    assert not [f for f in summary["findings"] if f["kind"] == "schema"]


def test_one_species_only_is_skew_and_prediction_drift(tfx) -> None:
    clean = tfx["clean"]
    summary = _monitor(tfx, _served(clean[clean["species"] == 2]), "gentoo")
    assert len(_flagged(summary["skew"])) >= 3
    drift = summary["prediction_drift"]
    assert drift["flagged"] and drift["class"] == "2" and drift["distance"] > 0.5
    assert any(f["kind"] == "prediction_drift" for f in summary["findings"])
    decision = decide_retrain(tfx["config"], summary, last_retrain_at=None, now=NOW)
    assert decision["retrain"]
    assert any("prediction drift" in reason for reason in decision["reasons"])


def test_drift_between_two_windows(tfx) -> None:
    clean = tfx["clean"]
    first = clean.sample(frac=0.5, random_state=11)
    second = clean.drop(index=first.index)
    steady = _monitor(tfx, _served(second), "steady", previous=_served(first))
    assert _flagged(steady["drift"]) == set()

    moved = _monitor(
        tfx, _served(_shifted(second, ["body_mass_g"])), "moved", previous=_served(first)
    )
    assert _flagged(moved["drift"]) == {"body_mass_g"}
    (finding,) = [f for f in moved["findings"] if f["kind"] == "drift"]
    assert finding["feature"] == "body_mass_g" and finding["value"] > finding["threshold"]
    assert "previous and the current window" in finding["message"]
    anomalies = anomalies_pb2.Anomalies.FromString(
        (tfx["tmp"] / "moved" / "SchemaDiff.pb").read_bytes()
    )
    by_feature = {info.path.step[0]: info for info in anomalies.drift_skew_info}
    assert by_feature["body_mass_g"].drift_measurements[0].value == pytest.approx(finding["value"])
    assert by_feature["body_mass_g"].skew_measurements[0].threshold == pytest.approx(0.1)
    assert anomalies.anomaly_info["body_mass_g"].severity == anomalies_pb2.AnomalyInfo.ERROR


def test_retrain_decision_blocks_on_few_examples_and_cooldown(tfx) -> None:
    config = tfx["config"]
    few = load_serving_data(str(SKEWED), features=config.features, label=None).head(30)
    small = _monitor(tfx, few, "few")
    # The first rows are all one species: skew too, and the -1 is among them.
    assert ("culmen_length_mm", "domain_min") in {
        (f["feature"], f["measure"]) for f in small["findings"]
    }
    decision = decide_retrain(config, small, last_retrain_at=None, now=NOW)
    assert not decision["retrain"]
    assert decision["reasons"]
    assert decision["blocked_by"] == [
        "too few examples: the current window has 30, below monitoring.retrain.min_examples 50"
    ]

    full = _monitor(tfx, load_serving_data(str(SKEWED), features=config.features), "full")
    recent = decide_retrain(config, full, last_retrain_at=NOW - timedelta(hours=2), now=NOW)
    assert not recent["retrain"]
    (blocked,) = recent["blocked_by"]
    assert "cool-down" in blocked and "cooldown_hours is 24" in blocked and "22.0 h left" in blocked
    naive_past = (NOW - timedelta(hours=30)).replace(tzinfo=None)
    assert decide_retrain(config, full, last_retrain_at=naive_past, now=NOW)["retrain"]

    elsewhere = _retrain_config(config, features=["body_mass_g"])
    assert decide_retrain(elsewhere, full, last_retrain_at=None, now=NOW) == {
        "retrain": False,
        "reasons": [],
        "blocked_by": [],
    }
    disabled = decide_retrain(
        _retrain_config(config, enabled=False), full, last_retrain_at=None, now=NOW
    )
    assert not disabled["retrain"] and disabled["blocked_by"] == [
        "monitoring.retrain.enabled is false"
    ]
    with pytest.raises(ValueError, match="monitoring.retrain.features names \\['weight'\\]"):
        decide_retrain(
            _retrain_config(config, features=["weight"]), full, last_retrain_at=None, now=NOW
        )


def test_prediction_drift_triggers_only_when_configured(tfx) -> None:
    clean = tfx["clean"]
    # Features look like training, but the served predictions are all one class.
    current = clean.sample(frac=0.6, random_state=2)
    served = current.assign(**{PREDICTED_LABEL: "0"}).drop(columns=["species"])
    summary = _monitor(tfx, served, "all-zero")
    assert [f["kind"] for f in summary["findings"]] == ["prediction_drift"]
    assert decide_retrain(tfx["config"], summary, last_retrain_at=None, now=NOW)["retrain"]
    off = _retrain_config(tfx["config"], on_prediction_drift=False)
    assert not decide_retrain(off, summary, last_retrain_at=None, now=NOW)["retrain"]


def test_quality_with_labels_reports_accuracy_and_min_quality(tfx) -> None:
    config = _retrain_config(
        tfx["config"], min_quality=ThresholdConfig(metric="accuracy", lower_bound=0.95)
    )
    current = tfx["clean"].sample(frac=0.6, random_state=4).copy()
    predicted = current["species"].astype(str).to_numpy(copy=True)
    wrong = np.random.default_rng(0).choice(len(current), size=20, replace=False)
    predicted[wrong] = np.where(predicted[wrong] == "0", "1", "0")
    current[PREDICTED_LABEL] = predicted
    summary = _monitor(
        tfx, current, "quality", config=config, baseline_metrics={"accuracy": 0.99, "auc": 1.0}
    )
    quality = summary["quality"]
    assert quality["available"] and quality["source"] == PREDICTED_LABEL
    assert quality["examples"] == len(current) == summary["examples"]["labelled"]
    assert quality["accuracy"] == pytest.approx(1 - 20 / len(current))
    assert quality["auc"] is None
    assert quality["change"] == {"accuracy": pytest.approx(quality["accuracy"] - 0.99)}
    assert quality["flagged"]
    (finding,) = [f for f in summary["findings"] if f["kind"] == "quality"]
    assert finding["value"] == quality["accuracy"] and finding["threshold"] == 0.95
    decision = decide_retrain(config, summary, last_retrain_at=None, now=NOW)
    assert decision["retrain"]
    assert any("accuracy" in r and "min_quality 0.95" in r for r in decision["reasons"])


def test_quality_metrics_auc() -> None:
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.6, 0.4]])
    result = quality_metrics(
        ["0", "1", "1", "1"], ["0", "1", "1", "0"], probabilities, classes=["0", "1"]
    )
    assert result["accuracy"] == 0.75
    assert result["auc"] == 1.0
    # One-vs-rest: class 0 separates fully, class 1 at 3 of 4 pairs, class 2 at 2.5 of 3.
    three = np.eye(3)[[0, 1, 2, 2]]
    macro = quality_metrics([0, 1, 2, 1], [0, 1, 2, 2], three, classes=["0", "1", "2"])
    assert macro["accuracy"] == 0.75
    assert macro["auc"] == pytest.approx((1.0 + 0.75 + 2.5 / 3) / 3)


def test_json_lines_with_unparsable_values(tfx, tmp_path: Path) -> None:
    config = tfx["config"]
    rows = tfx["clean"].sample(frac=0.6, random_state=6).drop(columns=["species"])
    lines = [json.dumps(record) for record in rows.to_dict(orient="records")]
    lines[3] = lines[3].replace('"culmen_depth_mm": ', '"culmen_depth_mm": "n/a", "x": ')
    lines.insert(5, "{not json")
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(lines) + "\n")
    current = load_serving_data(str(path), features=config.features, label=config.data.label)
    assert len(current) == len(rows) and str(current["culmen_depth_mm"].dtype) == "float64"
    summary = _monitor(tfx, current, "jsonl")
    (finding,) = summary["findings"]
    assert finding["feature"] == "culmen_depth_mm" and finding["measure"] == "unparsed_values"
    assert finding["value"] == 1 and "'n/a'" in finding["message"]
    assert any("line 6: not JSON" in w["message"] for w in summary["warnings"])
    assert any(
        "'x'" in w["message"] and "not in the schema" in w["message"] for w in summary["warnings"]
    )


def test_written_files_are_tfdv_protos_and_a_report(tfx) -> None:
    clean = tfx["clean"]
    current = _served(load_serving_data(str(SKEWED), features=tfx["config"].features))
    summary = _monitor(
        tfx, current, "files", previous=_served(clean.sample(frac=0.5, random_state=1))
    )
    out = tfx["tmp"] / "files"
    stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(
        (out / "FeatureStats.pb").read_bytes()
    )
    assert [(d.name, d.num_examples) for d in stats.datasets] == [
        ("current", 334),
        ("previous", 167),
    ]
    feature_names = {".".join(f.path.step) for f in stats.datasets[0].features}
    assert PREDICTED_LABEL not in feature_names and "culmen_length_mm" in feature_names
    assert (out / "Split-current" / "FeatureStats.pb").is_file()
    anomalies = anomalies_pb2.Anomalies.FromString((out / "SchemaDiff.pb").read_bytes())
    assert anomalies.baseline.feature
    info = anomalies.anomaly_info["culmen_length_mm"]
    assert info.severity == anomalies_pb2.AnomalyInfo.ERROR
    assert anomalies_pb2.AnomalyInfo.FLOAT_TYPE_SMALL_FLOAT in [r.type for r in info.reason]
    measured = {info.path.step[0]: info for info in anomalies.drift_skew_info}
    assert set(measured) == {*tfx["config"].features.numeric, PREDICTED_LABEL}
    assert all(
        m.skew_measurements and m.drift_measurements
        for n, m in measured.items()
        if n != PREDICTED_LABEL
    )
    assert measured[PREDICTED_LABEL].drift_measurements[0].threshold == pytest.approx(0.1)
    assert json.loads((out / "monitoring.json").read_text()) == json.loads(
        json.dumps(summary, default=str)
    )
    report = (out / "report.html").read_text()
    assert report.count("<img") >= 5  # four feature distributions and the predictions
    assert "culmen_length_mm" in report and "value -1 below" in report


def test_retrain_state_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "state" / "retrain_state.json"
    assert read_last_retrain(path) is None
    record_retrain(path, NOW - timedelta(days=1), ["first"])
    record_retrain(path, NOW.replace(tzinfo=None), ["skew on culmen_length_mm"])
    assert read_last_retrain(path) == NOW
    state = json.loads(path.read_text())
    assert state["reasons"] == ["skew on culmen_length_mm"]
    assert [entry["reasons"] for entry in state["history"]] == [
        ["first"],
        ["skew on culmen_length_mm"],
    ]
    path.write_text('{"last_retrain_at": "yesterday"}')
    with pytest.raises(ValueError, match="retrain_state.json: last_retrain_at 'yesterday'"):
        read_last_retrain(path)


def test_retrain_state_round_trip_through_cloud_storage() -> None:
    from tests.vertex_fakes import FakeBucket

    uri = "gs://bucket/root/state/taxi/retrain_state.json"
    with FakeBucket().serving() as bucket:
        assert read_last_retrain(uri) is None  # no object yet (Cloud Storage answers 404)
        record_retrain(uri, NOW - timedelta(days=1), ["first"])
        record_retrain(uri, NOW, ["skew on fare"])
        assert read_last_retrain(uri) == NOW
        state = json.loads(bucket.objects[uri])
        assert [entry["reasons"] for entry in state["history"]] == [["first"], ["skew on fare"]]
        assert bucket.uploads == [uri, uri]
        bucket.objects[uri] = b"not json"
        with pytest.raises(ValueError, match=r"retrain state gs://bucket/.* is not valid JSON"):
            read_last_retrain(uri)


def test_missing_column_and_unexpected_request_log_columns(tfx) -> None:
    current = _served(tfx["clean"].sample(frac=0.6, random_state=9)).drop(columns=["body_mass_g"])
    current["__timestamp__"] = "2026-03-01T00:00:00Z"
    current["__model_version__"] = "3"
    current["island"] = ""  # how a request log writes a missing category
    summary = _monitor(tfx, current, "missing")
    (finding,) = [f for f in summary["findings"] if f["kind"] == "schema"]
    assert finding["feature"] == "body_mass_g" and finding["measure"] == "SCHEMA_MISSING_COLUMN"
    assert any("body_mass_g" in w["message"] for w in summary["warnings"])
    # An all-missing extra column is reported as new, never as unexpected "" values.
    assert not any("Unexpected string" in w["message"] for w in summary["warnings"])
    stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(
        (tfx["tmp"] / "missing" / "FeatureStats.pb").read_bytes()
    )
    island = {".".join(f.path.step): f for f in stats.datasets[0].features}["island"]
    assert island.string_stats.common_stats.num_missing == len(current)


def test_model_predictions_and_quality_on_penguins(penguins_chain, tmp_path: Path) -> None:
    """The trained penguins model predicts the rows itself (no logged predictions); on its own
    test split its accuracy matches the evaluation's."""
    config, paths, results = penguins_chain
    test = read_split(paths["data"], "test")
    summary = run_monitoring(
        config,
        training_statistics=str(paths["statistics"] / "FeatureStats.pb"),
        schema=str(paths["schema"] / "schema.pbtxt"),
        current=test,
        previous=None,
        model_dir=str(paths["model"]),
        output_dir=str(tmp_path / "monitoring"),
        baseline_metrics=results["evaluate"],
    )
    drift = summary["prediction_drift"]
    assert drift["available"] and drift["source"] == "model"
    assert drift["baseline"] == "training labels"
    assert set(drift["current_distribution"]) <= {"Adelie", "Chinstrap", "Gentoo"}
    quality = summary["quality"]
    overall = results["evaluate"]["metrics"]["overall"]
    assert quality["source"] == "model" and quality["examples"] == len(test)
    assert quality["accuracy"] == pytest.approx(overall["accuracy"], abs=1e-6)
    assert quality["auc"] == pytest.approx(overall["auc"], abs=0.02)
    assert quality["change"]["accuracy"] == pytest.approx(0.0, abs=1e-6)
