"""The monitoring pipeline end to end through kfp.local: the TFX penguins model watches the TFX
"skewed" serving file (flagged, retraining launched) and a resample of its own training data
(not flagged, nothing launched)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mlops.paths import retrain_state_path
from mlops.registry import LocalModelRegistry
from pipelines.local import run_locally, run_training_locally
from tests.conftest import DATA, config_in

pytestmark = pytest.mark.slow

CLEAN = DATA / "penguins_tfx" / "penguins_processed.csv"
SKEWED = DATA / "penguins_tfx" / "penguins_processed_skewed.csv"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("monitoring")
    config = config_in(tmp, "penguins_tfx")
    first = run_training_locally(config)
    assert first.manifest["status"] == "SUCCEEDED", first.manifest
    return config, tmp


def _monitor(config, source: Path):
    result = run_locally(
        config, "monitoring", source=str(source), previous_source="", model_version="champion"
    )
    assert result.manifest["status"] == "SUCCEEDED", result.manifest
    return result.manifest


def test_resample_of_training_data_raises_no_alarm(trained) -> None:
    config, tmp = trained
    resample = tmp / "resample.csv"
    pd.read_csv(CLEAN).sample(frac=0.6, random_state=7).to_csv(resample, index=False)
    manifest = _monitor(config, resample)
    monitor = manifest["results"]["monitor"]
    assert monitor["findings"] == []
    assert monitor["decision"]["retrain"] is False
    assert manifest["steps"]["launch_training"]["status"] == "NOT_RUN"
    assert not retrain_state_path(config).exists()


def test_skewed_serving_data_is_flagged_and_retraining_launched(trained) -> None:
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    config, tmp = trained
    manifest = _monitor(config, SKEWED)
    monitor = manifest["results"]["monitor"]
    reasons = " ".join(monitor["decision"]["reasons"])
    assert monitor["decision"]["retrain"] is True
    assert "culmen_length_mm" in reasons and "-1" in reasons
    assert manifest["steps"]["launch_training"]["status"] == "SUCCEEDED"
    # The launch ran the training pipeline: a second version exists, and the cool-down is recorded.
    assert LocalModelRegistry(Path(config.local.root) / "registry").versions("penguins-tfx") == [
        1,
        2,
    ]
    state = json.loads(retrain_state_path(config).read_text())
    assert "culmen_length_mm" in " ".join(state["history"][-1]["reasons"])
    report_dir = Path(monitor["report"]).parent
    anomalies = anomalies_pb2.Anomalies.FromString((report_dir / "SchemaDiff.pb").read_bytes())
    assert "culmen_length_mm" in anomalies.anomaly_info
    assert "<img" in Path(monitor["report"]).read_text()

    # Within the cool-down the same finding does not launch training again.
    again = _monitor(config, SKEWED)["results"]["monitor"]["decision"]
    assert again["retrain"] is False and any("cool" in b for b in again["blocked_by"])
