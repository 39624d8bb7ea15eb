"""The whole local pipeline end to end (kfp.local), asserting on what the run leaves behind."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mlops.registry import CHAMPION, LocalModelRegistry
from pipelines.cli import main as cli_main
from pipelines.local import run_training_locally
from tests.conftest import config_in

pytestmark = pytest.mark.slow


def _predict_raw(model_dir: Path, rows: dict[str, list]):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(model_dir))
    inputs = {
        name: tf.constant(values, dtype=tf.string if isinstance(values[0], str) else tf.float32)
        for name, values in rows.items()
    }
    return loaded.signatures["serving_default"](**inputs)["probabilities"].numpy()


# The second run also tunes (two short trials), so one whole run shows both the comparison with
# the first champion and tuning feeding training.
TUNING = {
    "enabled": True,
    "max_trials": 2,
    "epochs": 2,
    "search_space": {
        "learning_rate": {"type": "double", "min": 0.001, "max": 0.1, "scale": "log"},
        "hidden_units": {"type": "categorical", "values": ["8", "16,8"]},
    },
}


@pytest.fixture(scope="module")
def penguin_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("penguins")
    config = config_in(tmp, "penguins")
    first = run_training_locally(config)
    tuned = config.with_overrides(tuning=TUNING)
    second = run_training_locally(tuned, cache=False)  # every step runs again, none reused
    return config, first, second


@pytest.mark.timeout(2400)  # the fixture's two whole runs (one tuning), on a busy machine
def test_first_run_leaves_manifest_artifacts_and_champion(penguin_runs) -> None:
    import tensorflow_model_analysis as tfma
    from tensorflow_metadata.proto.v0 import statistics_pb2

    config, first, _ = penguin_runs
    manifest = json.loads((first.run_dir / "run.json").read_text())
    assert manifest["status"] == "SUCCEEDED", manifest
    assert all(step["status"] == "SUCCEEDED" for step in manifest["steps"].values())
    assert all(step["duration_s"] >= 0 for step in manifest["steps"].values())
    assert manifest["metrics"]["accuracy"] >= 0.95
    assert manifest["blessed"] is True and manifest["baseline_metrics"] == {}
    assert manifest["registered_version"] == 1 and manifest["champion_version"] == 1
    assert manifest["success_criterion"]["value"] >= 0.95

    artifacts = first.run_dir / "artifacts"
    (stats_file,) = [p for p in artifacts.rglob("FeatureStats.pb") if p.parent.name == "statistics"]
    stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(stats_file.read_bytes())
    assert [d.name for d in stats.datasets] == ["train", "eval", "test"]
    (evaluation,) = [p.parent for p in artifacts.rglob("validations.tfrecord")]
    assert tfma.load_validation_result(str(evaluation)).validation_ok
    assert tfma.load_eval_result(str(evaluation)).slicing_metrics
    report = Path(manifest["report"]).read_text()
    assert report.count("<img") >= 10 and "accuracy by slice" in report

    champion = LocalModelRegistry(Path(config.local.root) / "registry").get(
        "penguins", alias=CHAMPION
    )
    probabilities = _predict_raw(
        champion.model_dir,
        {
            "bill_length_mm": [39.1, math.nan],
            "bill_depth_mm": [18.7, math.nan],
            "flipper_length_mm": [181.0, math.nan],
            "body_mass_g": [3750.0, math.nan],
            "year": [2007.0, 2009.0],
            "island": ["Torgersen", "Dream"],
            "sex": ["male", ""],
        },
    )
    assert probabilities.shape == (2, 3) and abs(probabilities.sum() - 2) < 1e-4
    assert probabilities[0].argmax() == 0  # Adelie


def test_second_run_is_compared_with_the_first_champion(penguin_runs) -> None:
    config, first, second = penguin_runs
    manifest = second.manifest
    assert manifest["status"] == "SUCCEEDED", manifest
    assert manifest["baseline_metrics"]["accuracy"] == pytest.approx(
        first.manifest["metrics"]["accuracy"]
    )
    assert manifest["registered_version"] == 2
    registry = LocalModelRegistry(Path(config.local.root) / "registry")
    version = registry.get("penguins", version=2).metadata
    assert version["baseline_version"] == 1 and version["run_id"] == second.run_id
    expected_champion = 2 if manifest["blessed"] else 1
    assert registry.aliases("penguins")[CHAMPION] == expected_champion
    assert first.run_dir != second.run_dir  # every run under its own id
    assert not any(step.get("cached_from") for step in manifest["steps"].values())


def test_second_run_tunes_then_trains_with_the_best_trial(penguin_runs) -> None:
    from mlops.artifacts import MODEL_CONFIG_FILE, model_extra_path
    from mlops.config import PipelineConfig

    _, _, second = penguin_runs
    manifest = second.manifest
    assert manifest["steps"]["tune"]["status"] == "SUCCEEDED"
    assert manifest["tuning"]["trials"] == 2
    best = manifest["tuning"]["best_params"]
    (model_dir,) = [
        p.parent for p in second.run_dir.rglob("saved_model.pb") if p.parent.name == "model"
    ]
    trained = PipelineConfig.from_json(model_extra_path(model_dir, MODEL_CONFIG_FILE).read_text())
    assert trained.training.learning_rate == pytest.approx(best["learning_rate"])
    assert trained.training.hidden_units == [int(u) for u in best["hidden_units"].split(",")]
    assert "Hyperparameter tuning" in Path(manifest["report"]).read_text()


def test_taxi_pipeline_meets_its_success_criterion(tmp_path: Path) -> None:
    config = config_in(tmp_path, "taxi")
    result = run_training_locally(config)
    manifest = result.manifest
    assert manifest["status"] == "SUCCEEDED", manifest
    assert manifest["data"] == {"train": 10501, "eval": 2250, "test": 2251}
    assert manifest["metrics"]["auc"] >= 0.93
    assert manifest["blessed"] is True


def test_failed_step_is_reported_in_manifest_and_exit_code(tmp_path: Path, capsys) -> None:
    bad_data = tmp_path / "bad.csv"
    bad_data.write_text("species,island\nAdelie,Dream\n")
    config_file = tmp_path / "broken.yaml"
    text = (Path(__file__).resolve().parents[1] / "configs" / "penguins.yaml").read_text()
    config_file.write_text(
        text.replace("source: palmerpenguins", f"source: {bad_data}")
        + f"\nlocal:\n  root: {tmp_path / 'root'}\n"
    )
    assert cli_main(["run", "--config", str(config_file)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "feature columns" in out
    (run_json,) = (tmp_path / "root" / "runs").glob("*/run.json")
    manifest = json.loads(run_json.read_text())
    assert manifest["status"] == "FAILED"
    assert manifest["steps"]["ingest"]["status"] == "FAILED"
    assert "bill_length_mm" in manifest["steps"]["ingest"]["error"]
    assert manifest["steps"]["train"]["status"] == "NOT_RUN"
