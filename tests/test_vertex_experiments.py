"""Vertex AI Experiments and Vertex AI TensorBoard, offline.

Submitting with an experiment: the SDK gets (or creates) the location's metadata store and the
experiment's `system.Experiment` context, creates the pipeline job, waits for the job's
`system.PipelineRun` context and adds it to the experiment. Those calls go to the gapic
`MetadataServiceClient` / `PipelineServiceClient` fakes of tests/vertex_fakes.py, so the tests
assert the requests a real project would receive. TensorBoard: the compiled training custom job
and the train step's log directory."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from components.launch_training import launch_training
from mlops.config import ConfigError, PipelineConfig
from pipelines import cli
from pipelines.vertex import compile_pipeline, compile_training_pipeline
from tests.conftest import config_in, on_vertex
from tests.vertex_fakes import LOCATION, PROJECT, REGION, FakeMetadataStore, vertex_pipelines

SERVICE_ACCOUNT = f"pipelines@{PROJECT}.iam.gserviceaccount.com"
TENSORBOARD = f"{LOCATION}/tensorboards/42"
STORE = f"{LOCATION}/metadataStores/default"


def _cloud_config(tmp_path: Path, **vertex) -> PipelineConfig:
    where = {
        "project": PROJECT,
        "region": REGION,
        "pipeline_root": "gs://bucket/root",
        "service_account": SERVICE_ACCOUNT,
    }
    config = on_vertex(config_in(tmp_path, "penguins"), **{**where, **vertex})
    return config.with_overrides(
        data={**config.data.model_dump(), "source": "gs://bucket/data/penguins.csv"}
    )


def test_runs_from_submit_and_from_a_retraining_launch_join_one_experiment(tmp_path) -> None:
    config = _cloud_config(tmp_path)
    config_file = tmp_path / "config.json"
    config_file.write_text(config.to_json())
    template = compile_pipeline(config, "training", "vertex", tmp_path / "training.json")
    metadata = FakeMetadataStore()
    with vertex_pipelines(metadata) as (create, bucket):
        bucket.objects["gs://bucket/templates/training.json"] = template.read_bytes()
        code = cli.main(["submit", "--config-json", str(config_file), "--template", str(template)])
        launched = launch_training(
            config,
            "vertex",
            ["drift on island"],
            "gs://bucket/templates/training.json",
            now=datetime(2026, 3, 1, tzinfo=UTC),
        )
    assert code == 0
    assert create.call_count == 2
    experiment = f"{STORE}/contexts/penguins-training"
    # The store and the experiment are created by the first submission, reused by the second.
    assert metadata.store_requests.count(f"create {STORE}") == 1
    (created,) = metadata.created_contexts
    assert created.name == experiment
    assert created.schema_title == "system.Experiment"
    assert created.display_name == "penguins-training"
    # Each run's pipeline-run context became a child of the experiment: that is what shows its
    # parameters and Metrics artifacts (evaluate's metrics) in Vertex AI Experiments.
    jobs = [call.kwargs["pipeline_job"].display_name for call in create.call_args_list]
    assert jobs == ["penguins-training", "penguins-training"]
    assert metadata.children == [
        (experiment, [f"{STORE}/contexts/penguins-training-1"]),
        (experiment, [f"{STORE}/contexts/penguins-training-1"]),
    ]
    assert launched["experiment"] == "penguins-training"


def test_a_configured_experiment_is_used_and_shown_by_a_dry_run(tmp_path, capsys) -> None:
    config = _cloud_config(tmp_path, experiment="penguin-studies")
    config_file = tmp_path / "config.json"
    config_file.write_text(config.to_json())
    template = compile_training_pipeline(config, "vertex", tmp_path / "training.json")
    args = ["submit", "--config-json", str(config_file), "--template", str(template)]
    assert cli.main([*args, "--dry-run"]) == 0
    described = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert described["experiment"] == "penguin-studies"
    metadata = FakeMetadataStore()
    with vertex_pipelines(metadata):
        assert cli.main(args) == 0
    (created,) = metadata.created_contexts
    assert created.name == f"{STORE}/contexts/penguin-studies"
    assert metadata.children[0][0] == created.name


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("experiment", "Penguin_Studies", "pattern"),
        ("tensorboard", "tensorboards/42", "pattern"),
        ("tensorboard", "projects/p/locations/us-east1/tensorboards/42", "vertex.region"),
    ],
)
def test_bad_experiment_or_tensorboard_names_the_field(tmp_path, field, value, expected) -> None:
    with pytest.raises(ValidationError) as raised:
        _cloud_config(tmp_path, **{field: value})
    message = str(raised.value)
    assert field in message and expected in message


@pytest.mark.parametrize("missing", ["service_account", "pipeline_root"])
def test_tensorboard_needs_a_service_account_and_a_pipeline_root(tmp_path, missing) -> None:
    config = _cloud_config(tmp_path, tensorboard=TENSORBOARD, **{missing: None})
    with pytest.raises(ConfigError, match=f"vertex.tensorboard .* vertex.{missing}"):
        compile_training_pipeline(config, "vertex", tmp_path / "t.json")


def _train_task(spec: dict) -> tuple[dict, dict]:
    """The training custom job's inputs as compiled: (component defaults, task arguments)."""
    defaults = spec["components"]["comp-train"]["inputDefinitions"]["parameters"]
    arguments = spec["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]
    return defaults, arguments


def test_the_training_custom_job_streams_to_the_configured_tensorboard(tmp_path) -> None:
    config = _cloud_config(tmp_path, tensorboard=TENSORBOARD)
    spec = json.loads(compile_training_pipeline(config, "vertex", tmp_path / "t.json").read_text())
    defaults, arguments = _train_task(spec)
    assert defaults["tensorboard"]["defaultValue"] == TENSORBOARD
    assert defaults["service_account"]["defaultValue"] == SERVICE_ACCOUNT
    # Under the pipeline root, one directory per run (the run_id parameter: the job's name).
    base = arguments["base_output_directory"]["runtimeValue"]["constant"]
    assert base == "gs://bucket/root/tensorboard/{{$.inputs.parameters['pipelinechannel--run_id']}}"
    assert arguments["pipelinechannel--run_id"] == {"componentInputParameter": "run_id"}
    assert spec["root"]["inputDefinitions"]["parameters"]["run_id"]["defaultValue"] == (
        "{{$.pipeline_job_name}}"
    )


def test_without_a_tensorboard_the_custom_job_has_none(tmp_path) -> None:
    spec = json.loads(
        compile_training_pipeline(
            _cloud_config(tmp_path), "vertex", tmp_path / "t.json"
        ).read_text()
    )
    defaults, arguments = _train_task(spec)
    assert defaults["tensorboard"]["defaultValue"] == ""
    assert "base_output_directory" not in arguments


def _event_files(directory: Path) -> list[Path]:
    return sorted(directory.rglob("events.out.tfevents.*"))


def test_train_writes_its_logs_where_vertex_tensorboard_reads_them(
    penguins_chain, tmp_path, monkeypatch
) -> None:
    from components.train import run_train

    config, paths, _ = penguins_chain
    config = config.with_overrides(training={**config.training.model_dump(), "epochs": 2})
    vertex_logs = tmp_path / "aip-tensorboard"
    monkeypatch.setenv("AIP_TENSORBOARD_LOG_DIR", str(vertex_logs))
    run_train(config, paths["data"], paths["transform"], tmp_path / "model", tmp_path / "logs")
    assert _event_files(vertex_logs), "no TensorBoard event files in AIP_TENSORBOARD_LOG_DIR"
    assert not _event_files(tmp_path / "logs")
    # Locally (no such variable) the logs stay in the step's own logs directory.
    assert _event_files(paths["logs"])
