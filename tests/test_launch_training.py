"""Launch-training step: locally it runs the training pipeline in its own process and reads that
run's manifest by run id; on Vertex it submits the compiled training template it was given (gs://
or Artifact Registry) with the project, region, pipeline root and service account it was given.
Either way the launch is recorded so that the retraining cool-down holds (on Vertex in Cloud
Storage). (A launch that trains for real runs in
test_monitoring_pipeline.py.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from unittest import mock

import pytest

from components.launch_training import launch_training
from mlops.monitoring import read_last_retrain
from mlops.paths import retrain_state_path, runs_root
from tests.conftest import config_in, on_vertex
from tests.vertex_fakes import vertex_pipelines

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_a_failed_local_run_is_reported_from_its_manifest(tmp_path) -> None:
    config = config_in(tmp_path, "penguins_tfx")
    config = config.with_overrides(
        data={**config.data.model_dump(), "source": str(tmp_path / "missing.csv")}
    )
    with pytest.raises(RuntimeError, match=r"failed: .*missing\.csv.*run\.json"):
        launch_training(config, "local", ["skew"], now=NOW)
    (run,) = runs_root(config).iterdir()
    assert (run / "run.json").is_file()
    assert read_last_retrain(retrain_state_path(config)) is None, (
        "a failed launch holds no cool-down"
    )


def _launch_on_vertex(config, template: str, **settings: str) -> dict:
    return launch_training(
        config,
        "vertex",
        ["skew on fare"],
        template,
        now=NOW,
        project="my-project",
        region="europe-west4",
        pipeline_root="gs://bucket/root",
        service_account="sa@my-project.iam.gserviceaccount.com",
        **settings,
    )


def test_vertex_launch_submits_the_given_template_with_the_given_settings(tmp_path) -> None:
    from pipelines.vertex import compile_pipeline

    # The config says nothing about where to run: the monitoring run's parameters do. (It names
    # the images and Cloud Storage data that any Vertex run needs.)
    config = on_vertex(config_in(tmp_path, "taxi"))
    config = config.with_overrides(
        data={**config.data.model_dump(), "source": "gs://bucket/data/taxi.csv"}
    )
    assert config.vertex.project is None and config.vertex.pipeline_root is None
    template = compile_pipeline(config, "training", "vertex", tmp_path / "training.json")
    state = "gs://bucket/root/state/taxi/retrain_state.json"
    with vertex_pipelines() as (create, bucket):
        bucket.objects["gs://bucket/templates/taxi-training.json"] = template.read_bytes()
        launched = _launch_on_vertex(config, "gs://bucket/templates/taxi-training.json")
        assert read_last_retrain(state) == NOW
    request = create.call_args.kwargs
    assert request["parent"] == "projects/my-project/locations/europe-west4"
    job = request["pipeline_job"]
    assert job.display_name == "taxi-training"
    assert job.service_account == "sa@my-project.iam.gserviceaccount.com"
    assert job.runtime_config.gcs_output_directory == "gs://bucket/root"
    assert job.pipeline_spec["pipelineInfo"]["name"] == "taxi-training"
    assert launched == {
        "target": "vertex",
        "job": "projects/my-project/locations/europe-west4/pipelineJobs/taxi-training-1",
        "template": "gs://bucket/templates/taxi-training.json",
        "experiment": "taxi-training",
        "retrain_state": state,
    }
    assert bucket.uploads == [state]  # the cool-down lives in Cloud Storage, not on the container
    assert not retrain_state_path(config).exists()
    assert json.loads(bucket.objects[state])["reasons"] == ["skew on fare"]


def test_vertex_launch_submits_an_artifact_registry_template(tmp_path) -> None:
    import io
    import urllib.request

    from pipelines.vertex import compile_pipeline

    # Ready for Vertex: real images, and training data in Cloud Storage.
    config = on_vertex(config_in(tmp_path, "taxi"))
    config = config.with_overrides(
        data={**config.data.model_dump(), "source": "gs://bucket/data/taxi.csv"}
    )
    template = compile_pipeline(config, "training", "vertex", tmp_path / "training.json")
    uri = "https://europe-west4-kfp.pkg.dev/my-project/pipelines/taxi-training/v3"
    with (
        vertex_pipelines() as (create, _),
        mock.patch.object(
            urllib.request, "urlopen", return_value=io.BytesIO(template.read_bytes())
        ) as fetch,
    ):
        _launch_on_vertex(config, uri)
    assert fetch.call_args.args[0].full_url == uri
    job = create.call_args.kwargs["pipeline_job"]
    assert job.template_uri == uri
    assert job.pipeline_spec["pipelineInfo"]["name"] == "taxi-training"


def test_vertex_launch_needs_a_pipeline_root(tmp_path) -> None:
    from mlops.config import ConfigError

    config = config_in(tmp_path, "taxi")
    with pytest.raises(ConfigError, match="pipeline_root"):
        launch_training(config, "vertex", ["skew"], "gs://b/t.json", now=NOW, project="my-project")


def test_unknown_target_and_missing_template_are_refused(tmp_path) -> None:
    config = config_in(tmp_path, "taxi")
    with pytest.raises(ValueError, match="compiled training template"):
        launch_training(config, "vertex", ["skew"], "", now=NOW)
    with pytest.raises(ValueError, match="'local' or 'vertex'"):
        launch_training(config, "laptop", ["skew"], now=NOW)
