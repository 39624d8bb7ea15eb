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
from mlops.paths import retrain_state_path, retrain_state_uri
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


def test_retrain_state_location_per_target(registered) -> None:
    config, _ = registered
    assert retrain_state_uri(config, "local") == str(retrain_state_path(config))
    assert retrain_state_uri(config, "vertex", "gs://bucket/root/") == (
        "gs://bucket/root/state/penguins/retrain_state.json"
    )
    with pytest.raises(ValueError, match="pass the pipeline_root parameter"):
        retrain_state_uri(config, "vertex", "")
    pinned = config.with_overrides(
        monitoring={**config.monitoring.model_dump(), "state_uri": "gs://b/state/p.json"}
    )
    assert retrain_state_uri(pinned, "vertex", "gs://bucket/root") == "gs://b/state/p.json"
    assert retrain_state_uri(pinned, "local") == "gs://b/state/p.json"


def test_vertex_monitoring_loop_offline(registered, tmp_path) -> None:
    """The Vertex loop with Google faked at its API boundary: the champion's reference is read
    from its Vertex model version (found by label), the monitoring step flags a shifted batch
    with the cool-down state in Cloud Storage, retraining submits the training template with the
    run's settings, and the next run is held by the cool-down read back from Cloud Storage.
    (The recorded URIs are local directories here: offline there is no /gcs/ mount to read
    gs:// ones through; resolving gs:// references is asserted in test_find_champion.py.)"""
    from components.launch_training import launch_training
    from components.ops import vertex_reference
    from components.register import vertex_version_record
    from pipelines.vertex import compile_pipeline
    from tests.conftest import on_vertex
    from tests.vertex_fakes import PROJECT, REGION, FakeModelRegistry, vertex_pipelines

    config, paths = registered
    # on_vertex: the project images a Vertex run needs instead of the placeholder
    config = on_vertex(config, project=PROJECT, region=REGION)
    record = vertex_version_record(
        config,
        "penguins-training-1",
        model_uri=str(paths["model"]),
        evaluation_uri=str(paths["evaluation"]),
        statistics_uri=str(paths["statistics"]),
        schema_uri=str(paths["schema"]),
        training_data_uri="gs://bucket/root/run-1/training_data/train.csv",
    )
    registry = FakeModelRegistry()
    parent = registry.add(
        "7",
        labels={"mlops_model": "penguins"},
        version_aliases=["champion"],
        version_description=json.dumps(record),
    )
    template = compile_pipeline(config, "training", "vertex", tmp_path / "training.json")
    state = retrain_state_uri(config, "vertex", "gs://bucket/root")
    batch = str(_batch(paths, tmp_path, shift=True))
    settings = {
        "project": PROJECT,
        "region": REGION,
        "pipeline_root": "gs://bucket/root",
        "service_account": "sa@my-project.iam.gserviceaccount.com",
    }
    with registry.serving(), vertex_pipelines() as (create, bucket):
        bucket.objects["gs://bucket/templates/training.json"] = template.read_bytes()
        resolved = vertex_reference(config.to_json(), reference_json="", training_data_uri="")
        reference = json.loads(resolved.reference_json)
        assert reference["model_resource"] == f"{parent}@1"
        assert resolved.training_data_uri == "gs://bucket/root/run-1/training_data/train.csv"

        first = run_monitor_step(
            config, batch, tmp_path / "first", now=NOW, reference=reference, state_uri=state
        )
        assert first["decision"]["retrain"], first["decision"]
        assert first["model_version"] == "1"
        launched = launch_training(
            config,
            "vertex",
            first["decision"]["reasons"],
            "gs://bucket/templates/training.json",
            now=NOW,
            **settings,
        )
        second = run_monitor_step(
            config,
            batch,
            tmp_path / "second",
            now=NOW + timedelta(hours=1),
            reference=reference,
            state_uri=state,
        )
    create.assert_called_once()
    job = create.call_args.kwargs["pipeline_job"]
    assert job.display_name == "penguins-training"
    assert job.runtime_config.gcs_output_directory == "gs://bucket/root"
    assert launched["retrain_state"] == state and state in bucket.objects
    assert not retrain_state_path(config).exists(), "nothing on the container's disk"
    assert not second["decision"]["retrain"]
    assert any("cool-down" in b for b in second["decision"]["blocked_by"])


def test_reference_json_overrides_the_vertex_lookup(registered) -> None:
    from components.monitor import vertex_reference

    config, paths = registered
    override = {
        "statistics_dir": "gs://b/s",
        "schema_dir": "gs://b/sc",
        "model_dir": "gs://b/m",
        "evaluation_dir": "gs://b/e",
    }
    # No Vertex call is made: nothing is faked, and none is needed.
    reference = vertex_reference(config, json.dumps(override), "bq://p.d.train")
    assert reference == {**override, "training_data_uri": "bq://p.d.train"}
    with pytest.raises(ValueError, match=r"reference_json lacks \['evaluation_dir'\]"):
        vertex_reference(config, json.dumps({**override, "evaluation_dir": ""}))
