"""Offline contract tests of the Vertex variants of the prediction and monitoring pipelines, and
of the Vertex API requests made by our own components (clients mocked at the API boundary)."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
from google.auth.credentials import AnonymousCredentials

from mlops.config import PipelineConfig
from pipelines.vertex import compile_pipeline
from tests.conftest import config_in, on_vertex

PARENT = "projects/my-project/locations/europe-west4/models/1234"
ENDPOINT = "projects/my-project/locations/europe-west4/endpoints/42"


def _config(tmp_path: Path, **serving) -> PipelineConfig:
    config = on_vertex(
        config_in(tmp_path, "taxi"),
        project="my-project",
        region="europe-west4",
        parent_model=PARENT,
    )
    return config.with_overrides(serving={**config.serving.model_dump(), **serving})


def _spec(config: PipelineConfig, kind: str, tmp_path: Path) -> dict:
    return json.loads(
        compile_pipeline(config, kind, "vertex", tmp_path / f"{kind}.json").read_text()
    )


def _executor(spec: dict, task: dict) -> dict:
    component = spec["components"][task["componentRef"]["name"]]
    return spec["deploymentSpec"]["executors"][component["executorLabel"]]


def test_prediction_pipeline_deploys_and_batch_predicts_with_gcpc(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        machine_type="n1-standard-8",
        min_replicas=2,
        max_replicas=5,
        bigquery_log_table="bq://my-project.serving.requests",
        batch_id_column="trip_id",
    )
    spec = _spec(config, "prediction", tmp_path)
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {
        "importer",
        "endpoint-create",
        "model-deploy",
        "vertex-request-logging",
        "model-batch-predict",
    }
    importer = _executor(spec, tasks["importer"])["importer"]
    assert importer["metadata"] == {"resourceName": f"{PARENT}@champion"}
    deploy = tasks["model-deploy"]["inputs"]["parameters"]
    assert deploy["dedicated_resources_machine_type"]["runtimeValue"]["constant"] == "n1-standard-8"
    assert deploy["dedicated_resources_min_replica_count"]["runtimeValue"]["constant"] == 2
    assert deploy["dedicated_resources_max_replica_count"]["runtimeValue"]["constant"] == 5
    assert deploy["traffic_split"]["runtimeValue"]["constant"] == {"0": 100}
    assert (
        tasks["model-deploy"]["inputs"]["artifacts"]["endpoint"]["taskOutputArtifact"][
            "producerTask"
        ]
        == "endpoint-create"
    )
    batch = tasks["model-batch-predict"]["inputs"]["parameters"]
    assert batch["key_field"]["componentInputParameter"] == "id_column"
    assert spec["root"]["inputDefinitions"]["parameters"]["id_column"]["defaultValue"] == "trip_id"
    for name in ("endpoint-create", "model-deploy", "model-batch-predict"):
        assert _executor(spec, tasks[name])["container"]["image"].startswith(
            "gcr.io/ml-pipeline/google-cloud-pipeline-components:"
        )


def test_prediction_pipeline_without_bigquery_table_has_no_logging_step(tmp_path: Path) -> None:
    spec = _spec(_config(tmp_path), "prediction", tmp_path)
    assert "vertex-request-logging" not in spec["root"]["dag"]["tasks"]


def test_canary_onto_an_existing_endpoint(tmp_path: Path) -> None:
    config = _config(tmp_path, vertex_endpoint=ENDPOINT, vertex_traffic_split={"0": 10, "555": 90})
    spec = _spec(config, "prediction", tmp_path)
    tasks = spec["root"]["dag"]["tasks"]
    assert "endpoint-create" not in tasks
    deploy = tasks["model-deploy"]["inputs"]
    assert deploy["parameters"]["traffic_split"]["runtimeValue"]["constant"] == {"0": 10, "555": 90}
    producer = deploy["artifacts"]["endpoint"]["taskOutputArtifact"]["producerTask"]
    assert _executor(spec, tasks[producer])["importer"]["metadata"] == {"resourceName": ENDPOINT}


def test_traffic_split_must_sum_to_100_and_name_the_new_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sum to 100"):
        _config(tmp_path, vertex_endpoint=ENDPOINT, vertex_traffic_split={"0": 10, "555": 80})


def test_vertex_prediction_needs_a_parent_model(tmp_path: Path) -> None:
    config = on_vertex(config_in(tmp_path, "taxi"))
    with pytest.raises(ValueError, match="set vertex.parent_model"):
        compile_pipeline(config, "prediction", "vertex", tmp_path / "p.json")


def test_monitoring_pipeline_sets_up_model_monitoring_and_gated_retraining(tmp_path: Path) -> None:
    spec = _spec(_config(tmp_path), "monitoring", tmp_path)
    tasks = spec["root"]["dag"]["tasks"]
    assert {"vertex-model-monitoring", "monitor", "retrain-decision"} <= set(tasks)
    (condition,) = [name for name in tasks if name.startswith("condition")]
    assert "retrain-decision-Output'] == true" in tasks[condition]["triggerPolicy"]["condition"]
    inner = spec["components"][f"comp-{condition}"]["dag"]["tasks"]
    launch = inner["launch-training"]["inputs"]["parameters"]
    assert launch["target"]["runtimeValue"]["constant"] == "vertex"
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert {"source", "endpoint_resource", "training_template_uri", "reference_json"} <= set(
        parameters
    )


def test_local_variants_compile(tmp_path: Path) -> None:
    config = config_in(tmp_path, "penguins")
    prediction = json.loads(
        compile_pipeline(config, "prediction", "local", tmp_path / "p.json").read_text()
    )
    assert set(prediction["root"]["dag"]["tasks"]) == {"deploy-local", "batch-predict-local"}
    monitoring = json.loads(
        compile_pipeline(config, "monitoring", "local", tmp_path / "m.json").read_text()
    )
    assert "monitor" in monitoring["root"]["dag"]["tasks"]


def test_request_logging_update_request(tmp_path: Path) -> None:
    from google.cloud.aiplatform_v1 import EndpointServiceClient

    from components.deploy import enable_vertex_request_logging

    config = _config(
        tmp_path,
        bigquery_log_table="bq://my-project.serving.requests",
        request_log_sample_rate=0.25,
    )
    with mock.patch.object(EndpointServiceClient, "update_endpoint") as update:
        enable_vertex_request_logging(config, ENDPOINT, credentials=AnonymousCredentials())
    request = update.call_args.kwargs
    logging = request["endpoint"].predict_request_response_logging_config
    assert request["endpoint"].name == ENDPOINT
    assert logging.enabled and logging.sampling_rate == pytest.approx(0.25)
    assert logging.bigquery_destination.output_uri == "bq://my-project.serving.requests"
    assert list(request["update_mask"].paths) == ["predict_request_response_logging_config"]


def test_model_monitoring_job_request_carries_the_thresholds(tmp_path: Path) -> None:
    from google.cloud.aiplatform_v1.services.job_service import JobServiceClient
    from google.cloud.aiplatform_v1.types import ModelDeploymentMonitoringJob

    from components.monitor import setup_vertex_model_monitoring

    config = _config(tmp_path)
    monitoring = config.monitoring.model_dump()
    monitoring["skew"]["per_feature"] = {"fare": 0.05}
    monitoring["alert_emails"] = ["ml-team@example.com"]
    config = config.with_overrides(monitoring=monitoring)
    created = ModelDeploymentMonitoringJob(
        name="projects/my-project/locations/europe-west4/modelDeploymentMonitoringJobs/7"
    )
    with (
        mock.patch.object(
            JobServiceClient, "create_model_deployment_monitoring_job", return_value=created
        ) as create,
        mock.patch("google.cloud.aiplatform.Endpoint") as endpoint_class,
    ):
        endpoint_class.return_value.resource_name = ENDPOINT
        endpoint_class.return_value.list_models.return_value = [mock.Mock(id="99")]
        endpoint_class.return_value.gca_resource.deployed_models = [mock.Mock(id="99")]
        setup_vertex_model_monitoring(
            config, ENDPOINT, "gs://bucket/taxi.csv", credentials=AnonymousCredentials()
        )
    job = create.call_args.kwargs["model_deployment_monitoring_job"]
    objective = job.model_deployment_monitoring_objective_configs[0].objective_config
    skew = objective.training_prediction_skew_detection_config.skew_thresholds
    assert skew["fare"].value == pytest.approx(0.05)
    assert skew["trip_miles"].value == pytest.approx(config.monitoring.skew.numeric_jsd)
    assert skew["payment_type"].value == pytest.approx(config.monitoring.skew.categorical_linf)
    assert objective.training_dataset.gcs_source.uris == ["gs://bucket/taxi.csv"]
    assert objective.training_dataset.target_field == "big_tipper"
    assert job.logging_sampling_strategy.random_sample_config.sample_rate == pytest.approx(0.8)
    assert list(job.model_monitoring_alert_config.email_alert_config.user_emails) == [
        "ml-team@example.com"
    ]


def test_cli_dry_run_submits_the_prediction_pipeline_with_parameters(
    tmp_path: Path, capsys
) -> None:
    from pipelines import cli

    config_file = tmp_path / "config.json"
    config_file.write_text(_config(tmp_path).to_json())
    code = cli.main(
        [
            "submit",
            "--config-json",
            str(config_file),
            "--pipeline",
            "prediction",
            "--project",
            "my-project",
            "--pipeline-root",
            "gs://bucket/root",
            "--param",
            "batch_input=gs://bucket/rows.jsonl",
            "--param",
            "id_column=trip_id",
            "--dry-run",
        ]
    )
    assert code == 0
    described = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert described["display_name"] == "taxi-prediction"
    assert described["parameters"] == {
        "batch_input": "gs://bucket/rows.jsonl",
        "id_column": "trip_id",
    }
    assert {"model-deploy", "model-batch-predict"} <= set(described["tasks"])


def test_prediction_resources_are_encrypted_with_the_configured_key(tmp_path: Path) -> None:
    key = "projects/my-project/locations/europe-west4/keyRings/ring/cryptoKeys/key"
    config = _config(tmp_path)
    config = config.with_overrides(vertex={**config.vertex.model_dump(), "encryption_key": key})
    tasks = _spec(config, "prediction", tmp_path)["root"]["dag"]["tasks"]
    for name in ("endpoint-create", "model-batch-predict"):
        parameters = tasks[name]["inputs"]["parameters"]
        assert parameters["encryption_spec_key_name"]["runtimeValue"]["constant"] == key
        assert parameters["location"]["runtimeValue"]["constant"] == "europe-west4"
