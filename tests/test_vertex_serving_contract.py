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
        "vertex-champion-model",
        "endpoint-create",
        "model-deploy",
        "vertex-request-logging",
        "model-batch-predict",
    }
    for consumer in ("model-deploy", "model-batch-predict"):
        model = tasks[consumer]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]
        assert model == {"outputArtifactKey": "model", "producerTask": "vertex-champion-model"}
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


@pytest.mark.parametrize("name", ["penguins", "penguins_tfx", "taxi"])
def test_vertex_pipelines_compile_from_shipped_configs_without_a_parent_model(
    tmp_path: Path, name: str
) -> None:
    config = on_vertex(config_in(tmp_path, name))
    assert config.vertex.parent_model is None
    for kind in ("prediction", "monitoring"):
        spec = _spec(config, kind, tmp_path)
        tasks = spec["root"]["dag"]["tasks"]
        assert {"prediction": "vertex-champion-model", "monitoring": "vertex-reference"}[kind] in (
            tasks
        )
        assert "importer" not in json.dumps(spec["deploymentSpec"])


def test_champion_model_is_resolved_by_label_and_pinned_to_its_version(tmp_path: Path) -> None:
    from google_cloud_pipeline_components.types.artifact_types import VertexModel

    from components.ops import vertex_champion_model
    from tests.vertex_fakes import FakeModelRegistry

    config = config_in(tmp_path, "taxi")
    config = config.with_overrides(
        vertex={**config.vertex.model_dump(), "project": "my-project", "region": "europe-west4"}
    )
    registry = FakeModelRegistry()
    output = VertexModel(name="model", uri="", metadata={})
    with registry.serving():
        with pytest.raises(LookupError, match="run the training pipeline on Vertex first"):
            vertex_champion_model(config.to_json(), output)
        parent = registry.add("7", labels={"mlops_model": "taxi"}, version_aliases=["champion"])
        vertex_champion_model(config.to_json(), output)
    assert output.metadata["resourceName"] == f"{parent}@1"
    assert output.uri == f"https://europe-west4-aiplatform.googleapis.com/v1/{parent}@1"


def test_monitoring_pipeline_sets_up_model_monitoring_and_gated_retraining(tmp_path: Path) -> None:
    spec = _spec(_config(tmp_path), "monitoring", tmp_path)
    tasks = spec["root"]["dag"]["tasks"]
    assert {"vertex-reference", "vertex-model-monitoring", "monitor", "retrain-decision"} <= set(
        tasks
    )
    # The champion's recorded reference feeds both the monitor step and Model Monitoring;
    # reference_json and training_data_uri are overrides only.
    reference = tasks["vertex-reference"]["inputs"]["parameters"]
    assert reference["reference_json"]["componentInputParameter"] == "reference_json"
    assert reference["training_data_uri"]["componentInputParameter"] == "training_data_uri"
    monitor = tasks["monitor"]["inputs"]["parameters"]
    assert monitor["reference_json"]["taskOutputParameter"] == {
        "outputParameterKey": "reference_json",
        "producerTask": "vertex-reference",
    }
    assert monitor["pipeline_root"]["componentInputParameter"] == "pipeline_root"
    assert monitor["target"]["runtimeValue"]["constant"] == "vertex"
    watch = tasks["vertex-model-monitoring"]["inputs"]["parameters"]
    assert watch["training_data_uri"]["taskOutputParameter"]["producerTask"] == "vertex-reference"
    (condition,) = [name for name in tasks if name.startswith("condition")]
    assert "retrain-decision-Output'] == true" in tasks[condition]["triggerPolicy"]["condition"]
    inner = spec["components"][f"comp-{condition}"]["dag"]["tasks"]
    launch = inner["launch-training"]["inputs"]["parameters"]
    assert launch["target"]["runtimeValue"]["constant"] == "vertex"
    for name in ("project", "region", "pipeline_root", "service_account"):
        assert launch[name]["componentInputParameter"] == f"pipelinechannel--{name}"
    assert launch["template_path"]["componentInputParameter"] == (
        "pipelinechannel--training_template_uri"
    )
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["training_data_uri"]["defaultValue"] == ""
    assert parameters["region"]["defaultValue"] == "europe-west4"
    for name in ("vertex-reference", "vertex-model-monitoring", "monitor"):
        assert not tasks[name]["cachingOptions"].get("enableCache"), name


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


def test_model_monitoring_job_is_created_once_then_updated(tmp_path: Path) -> None:
    from components.monitor import setup_vertex_model_monitoring
    from tests.vertex_fakes import FakeMonitoringJobs

    config = _config(tmp_path)
    monitoring = config.monitoring.model_dump()
    monitoring["skew"]["per_feature"] = {"fare": 0.05}
    monitoring["alert_emails"] = ["ml-team@example.com"]
    config = config.with_overrides(monitoring=monitoring)
    service = FakeMonitoringJobs(ENDPOINT)
    credentials = AnonymousCredentials()
    with service.serving():
        first = setup_vertex_model_monitoring(
            config, ENDPOINT, "gs://bucket/taxi.csv", credentials=credentials
        )
        stricter = config.monitoring.model_dump()
        stricter["skew"]["per_feature"] = {"fare": 0.01}
        stricter["vertex_sample_rate"] = 0.5
        second = setup_vertex_model_monitoring(
            config.with_overrides(monitoring=stricter),
            ENDPOINT,
            "gs://bucket/run-2/train.csv",
            credentials=credentials,
        )
    (created,) = service.created
    assert len(service.updated) == 1, "the second run updates, never creates another job"
    assert first.resource_name == second.resource_name == created.name
    assert created.display_name == "taxi-monitoring" and created.endpoint == ENDPOINT
    objective = created.model_deployment_monitoring_objective_configs[0].objective_config
    skew = objective.training_prediction_skew_detection_config.skew_thresholds
    assert skew["fare"].value == pytest.approx(0.05)
    assert skew["trip_miles"].value == pytest.approx(config.monitoring.skew.numeric_jsd)
    assert skew["payment_type"].value == pytest.approx(config.monitoring.skew.categorical_linf)
    assert objective.training_dataset.gcs_source.uris == ["gs://bucket/taxi.csv"]
    assert objective.training_dataset.target_field == "big_tipper"
    assert created.logging_sampling_strategy.random_sample_config.sample_rate == pytest.approx(0.8)
    assert list(created.model_monitoring_alert_config.email_alert_config.user_emails) == [
        "ml-team@example.com"
    ]
    updated, mask = service.updated[0]
    assert {
        "model_deployment_monitoring_objective_configs",
        "logging_sampling_strategy",
        "model_deployment_monitoring_schedule_config",
        "model_monitoring_alert_config",
    } <= set(mask)
    (config_for_99,) = updated.model_deployment_monitoring_objective_configs
    assert config_for_99.deployed_model_id == "99"
    objective = config_for_99.objective_config
    skew = objective.training_prediction_skew_detection_config.skew_thresholds
    assert skew["fare"].value == pytest.approx(0.01)
    assert objective.training_dataset.gcs_source.uris == ["gs://bucket/run-2/train.csv"]
    assert updated.logging_sampling_strategy.random_sample_config.sample_rate == pytest.approx(0.5)


def test_model_monitoring_needs_training_data_in_cloud_storage(tmp_path: Path) -> None:
    from components.monitor import setup_vertex_model_monitoring

    with pytest.raises(ValueError, match="Cloud Storage or BigQuery.*training_data_uri"):
        setup_vertex_model_monitoring(_config(tmp_path), ENDPOINT, "data/chicago_taxi/x.csv")


def test_monitored_endpoint_is_the_one_the_prediction_pipeline_created(tmp_path: Path) -> None:
    from google.cloud.aiplatform_v1.services.endpoint_service import EndpointServiceClient
    from google.cloud.aiplatform_v1.types import Endpoint

    from components.monitor import vertex_endpoint_resource

    config = _config(tmp_path)
    listed = [Endpoint(name=ENDPOINT, display_name="taxi-endpoint")]
    with (
        mock.patch.object(EndpointServiceClient, "list_endpoints", return_value=listed) as ask,
        mock.patch.object(EndpointServiceClient, "get_endpoint", return_value=listed[0]),
    ):
        assert vertex_endpoint_resource(config, AnonymousCredentials()) == ENDPOINT
    assert ask.call_args.kwargs["request"]["filter"] == 'display_name="taxi-endpoint"'
    with (
        mock.patch.object(EndpointServiceClient, "list_endpoints", return_value=[]),
        pytest.raises(LookupError, match="run the prediction pipeline first"),
    ):
        vertex_endpoint_resource(config, AnonymousCredentials())
    configured = _config(tmp_path, vertex_endpoint=ENDPOINT)
    assert vertex_endpoint_resource(configured) == ENDPOINT


def test_cli_dry_run_fills_the_monitoring_pipelines_settings_parameters(
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
            "monitoring",
            "--project",
            "my-project",
            "--pipeline-root",
            "gs://bucket/root",
            "--service-account",
            "sa@my-project.iam.gserviceaccount.com",
            "--param",
            "source=gs://bucket/serving/batch.csv",
            "--param",
            "training_template_uri=https://europe-west4-kfp.pkg.dev/my-project/repo/taxi-training/v1",
            "--dry-run",
        ]
    )
    assert code == 0
    described = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert described["parameters"] == {
        "project": "my-project",
        "region": "europe-west4",
        "pipeline_root": "gs://bucket/root",
        "service_account": "sa@my-project.iam.gserviceaccount.com",
        "source": "gs://bucket/serving/batch.csv",
        "training_template_uri": "https://europe-west4-kfp.pkg.dev/my-project/repo/taxi-training/v1",
    }


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
