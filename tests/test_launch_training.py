"""Launch-training step: locally it runs the training pipeline in its own process and reads that
run's manifest by run id; on Vertex it submits the compiled training template. Either way the
launch is recorded so that the retraining cool-down holds. (A launch that trains for real runs in
test_monitoring_pipeline.py.)"""

from __future__ import annotations

from datetime import UTC, datetime
from unittest import mock

import pytest

from components.launch_training import launch_training
from mlops.monitoring import read_last_retrain
from mlops.paths import retrain_state_path, runs_root
from tests.conftest import config_in, on_vertex

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


def test_vertex_launch_submits_the_template_and_starts_the_cooldown(tmp_path) -> None:
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    from google.cloud.aiplatform.utils import resource_manager_utils
    from google.cloud.aiplatform_v1.services.pipeline_service import PipelineServiceClient
    from google.cloud.aiplatform_v1.types import PipelineJob

    from pipelines.vertex import compile_pipeline

    config = on_vertex(
        config_in(tmp_path, "taxi"), project="my-project", pipeline_root="gs://bucket/root"
    )
    # On Vertex the steps read the training data from Cloud Storage.
    config = config.with_overrides(
        data={**config.data.model_dump(), "source": "gs://bucket/data/taxi.csv"}
    )
    template = compile_pipeline(config, "training", "vertex", tmp_path / "training.json")

    def bucket_metadata(self, client=None):  # Cloud Storage's answer: the bucket's owner
        self._properties["projectNumber"] = "123"

    created = PipelineJob(name="projects/my-project/locations/us-central1/pipelineJobs/j1")
    # Google's clients are faked at their API boundary: credentials, Cloud Storage, Resource
    # Manager and the Vertex AI pipeline service.
    with (
        mock.patch.object(google.auth, "default", return_value=(AnonymousCredentials(), "p")),
        mock.patch.object(storage.Bucket, "exists", return_value=True),
        mock.patch.object(storage.Bucket, "reload", bucket_metadata),
        mock.patch.object(resource_manager_utils, "get_project_number", return_value=123),
        mock.patch.object(
            PipelineServiceClient, "create_pipeline_job", return_value=created
        ) as create,
    ):
        launched = launch_training(config, "vertex", ["skew"], str(template), now=NOW)
    request = create.call_args.kwargs
    assert request["parent"] == "projects/my-project/locations/us-central1"
    assert request["pipeline_job"].display_name == "taxi-training"
    assert launched == {"target": "vertex", "job": created.name}
    assert read_last_retrain(retrain_state_path(config)) == NOW


def test_unknown_target_and_missing_template_are_refused(tmp_path) -> None:
    config = config_in(tmp_path, "taxi")
    with pytest.raises(ValueError, match="compiled template"):
        launch_training(config, "vertex", ["skew"], "", now=NOW)
    with pytest.raises(ValueError, match="'local' or 'vertex'"):
        launch_training(config, "laptop", ["skew"], now=NOW)
