"""Monitor step: serving data (a batch file, or the request log cut into windows) against the
registered model's training statistics, schema and model; the decision is written for the
retraining step. The comparisons themselves are tested in test_monitoring.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from components.monitor import run_monitor_step, serving_windows, training_reference
from components.register import run_register_local
from mlops.artifacts import read_decision, read_split
from mlops.registry import RegistryError

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def registered(penguins_chain, tmp_path_factory):
    """The chain's model registered (as champion) with its statistics and schema."""
    config, paths, _ = penguins_chain
    config = config.with_overrides(
        local={**config.local.model_dump(), "root": str(tmp_path_factory.mktemp("root"))}
    )
    run_register_local(
        config,
        paths["model"],
        paths["evaluation"],
        "run-1",
        str(paths["data"]),
        paths["statistics"],
        paths["schema"],
    )
    return config, paths


def _batch(paths, tmp_path: Path, shift: bool) -> Path:
    frame = read_split(paths["data"], "test")
    frame = frame.sample(n=200, replace=True, random_state=0).reset_index(drop=True)
    if shift:
        frame["island"] = "Biscoe"
        frame["bill_length_mm"] = frame["bill_length_mm"] * 1.6
    path = tmp_path / ("shifted.csv" if shift else "clean.csv")
    frame.to_csv(path, index=False)
    return path


def test_reference_comes_from_the_registered_version(registered) -> None:
    config, paths = registered
    reference = training_reference(config, "champion")
    assert reference["model_version"] == "1"
    assert Path(reference["statistics_dir"]) == paths["statistics"]
    with pytest.raises(RegistryError):
        training_reference(config, "7")


def test_shifted_batch_is_flagged_and_the_decision_is_written(registered, tmp_path) -> None:
    config, paths = registered
    clean = run_monitor_step(
        config, str(_batch(paths, tmp_path, False)), tmp_path / "clean", now=NOW
    )
    shifted = run_monitor_step(
        config, str(_batch(paths, tmp_path, True)), tmp_path / "shifted", now=NOW
    )
    flagged = {f.get("feature") for f in shifted["findings"]}
    assert {"island", "bill_length_mm"} <= flagged, shifted["findings"]
    assert not {"island", "bill_length_mm"} & {f.get("feature") for f in clean["findings"]}
    assert shifted["decision"]["retrain"] and not clean["decision"]["retrain"]
    assert read_decision(tmp_path / "shifted") == json.loads(json.dumps(shifted))
    assert (tmp_path / "shifted" / "report.html").is_file()
    assert shifted["source"].startswith("batch file")


def test_request_logs_are_cut_into_the_current_and_previous_window(registered, tmp_path) -> None:
    config, _ = registered
    hours = config.monitoring.window_hours
    rows = [
        (NOW - timedelta(hours=hours / 2), "Dream"),  # current window
        (NOW - timedelta(hours=hours * 1.5), "Torgersen"),  # previous window
        (NOW - timedelta(hours=hours * 3), "Biscoe"),  # older: ignored
    ]
    logs = tmp_path / "logs"
    logs.mkdir()
    with (logs / "requests-1.jsonl").open("w") as handle:
        for number, (when, island) in enumerate(rows):
            instance = {name: None for name in config.features.raw_features}
            instance["island"] = island
            record = {
                "request_id": f"r{number}",
                "timestamp": when.isoformat(),
                "model_version": "1",
                "instances": [instance],
                "predictions": [{"label": "Adelie", "probabilities": [1.0, 0.0, 0.0]}],
            }
            handle.write(json.dumps(record) + "\n")
    current, previous, description = serving_windows(config, str(logs), "", NOW)
    assert list(current["island"]) == ["Dream"]
    assert list(previous["island"]) == ["Torgersen"]
    assert "request logs" in description
    with pytest.raises(FileNotFoundError, match="no request logs"):
        serving_windows(config, str(tmp_path), "", NOW)
