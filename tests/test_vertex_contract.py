"""Offline contract tests of the Vertex AI variant: compiled structure, PipelineJob construction
with anonymous credentials, and the requests that would reach Google's APIs."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
from google.auth.credentials import AnonymousCredentials

from mlops.config import PipelineConfig
from mlops.vertex_jobs import SubmitSettings, build_pipeline_job, vertex_runtime_config
from pipelines import cli
from pipelines.vertex import compile_training_pipeline
from tests.conftest import IMAGE, config_in, on_vertex

PARENT = "projects/my-project/locations/europe-west4/models/1234"


def _vertex_config(tmp_path: Path, **vertex) -> PipelineConfig:
    return on_vertex(config_in(tmp_path, "taxi"), **vertex)


@pytest.fixture
def taxi_vertex(tmp_path: Path) -> tuple[PipelineConfig, dict]:
    config = _vertex_config(
        tmp_path,
        project="my-project",
        region="europe-west4",
        image="europe-docker.pkg.dev/my-project/mlops/image:1.0",
        gpu_image="europe-docker.pkg.dev/my-project/mlops/image-gpu:1.0",
        parent_model=PARENT,
    )
    path = compile_training_pipeline(config, "vertex", tmp_path / "taxi.json")
    return config, json.loads(path.read_text())


def _executor_of(spec: dict, component: str) -> dict:
    executor = spec["components"][component]["executorLabel"]
    return spec["deploymentSpec"]["executors"][executor]


def test_training_becomes_a_custom_job_with_configured_resources(taxi_vertex) -> None:
    config, spec = taxi_vertex
    executor = _executor_of(spec, "comp-train")
    assert "google_cloud_pipeline_components" in " ".join(executor["container"]["command"])
    assert "CustomJob" in executor["container"]["args"]
    inputs = spec["components"]["comp-train"]["inputDefinitions"]["parameters"]
    (pool,) = inputs["worker_pool_specs"]["defaultValue"]
    assert pool["machine_spec"] == {
        "machine_type": "n1-standard-8",
        "accelerator_type": "NVIDIA_TESLA_T4",
        "accelerator_count": 1.0,
    }
    assert pool["replica_count"] == 1.0
    # Accelerators: the custom job runs the CUDA build of the project image.
    assert pool["container_spec"]["image_uri"] == config.vertex.gpu_image
    assert "def train(" in pool["container_spec"]["command"][-1]


def test_model_upload_is_gated_by_the_blessing_and_finds_its_parent_at_run_time(
    taxi_vertex,
) -> None:
    config, spec = taxi_vertex
    root_tasks = spec["root"]["dag"]["tasks"]
    (condition,) = [name for name in root_tasks if name.startswith("condition")]
    assert "evaluate-blessed'] == true" in root_tasks[condition]["triggerPolicy"]["condition"]
    inner = spec["components"][f"comp-{condition}"]["dag"]["tasks"]
    assert set(inner) == {"vertex-serving-model", "vertex-parent-model", "register-vertex"}
    upload = inner["register-vertex"]
    assert _executor_of(spec, upload["componentRef"]["name"])["container"]["image"] == (
        config.vertex.image
    )
    parameters = upload["inputs"]["parameters"]
    assert parameters["parent_model"]["taskOutputParameter"]["producerTask"] == (
        "vertex-parent-model"
    )
    assert parameters["run_id"]["componentInputParameter"] == "pipelinechannel--run_id"
    artifacts = upload["inputs"]["artifacts"]
    assert (
        artifacts["unmanaged_model"]["taskOutputArtifact"]["producerTask"] == "vertex-serving-model"
    )
    # What monitoring reads back from the version, and the model card, come from these
    # upstream artifacts.
    producers = {
        name: artifact["componentInputArtifact"]
        for name, artifact in artifacts.items()
        if "componentInputArtifact" in artifact
    }
    assert set(producers) == {"dataset", "evaluation", "statistics", "schema", "explanation"}
    # The model card is an HTML artifact of the step: the Vertex pipeline UI shows it.
    outputs = spec["components"][upload["componentRef"]["name"]]["outputDefinitions"]
    assert outputs["artifacts"]["model_card"]["artifactType"]["schemaTitle"] == "system.HTML"
    assert not upload["cachingOptions"].get("enableCache")


def test_upload_request_carries_labels_parent_aliases_and_the_training_record(
    tmp_path: Path,
) -> None:
    from components.find_champion import champion_reference, vertex_parent_model
    from components.register import run_register_vertex, vertex_version_record
    from tests.vertex_fakes import FakeModelRegistry

    config = _vertex_config(tmp_path, project="my-project", region="europe-west4")
    spec = {
        "imageUri": "europe-docker.pkg.dev/p/mlops/image:1.0",
        "command": ["python", "-m", "mlops.serving"],
        "args": ["--config-json", "{}"],
        "healthRoute": "/health",
        "predictRoute": "/predict",
        "ports": [{"containerPort": 8080}],
    }
    credentials = AnonymousCredentials()
    registry = FakeModelRegistry()

    def upload(run: str) -> dict:
        record = vertex_version_record(
            config,
            run,
            model_uri=f"gs://b/{run}/model",
            evaluation_uri=f"gs://b/{run}/evaluation",
            statistics_uri=f"gs://b/{run}/statistics",
            schema_uri=f"gs://b/{run}/schema",
            training_data_uri=f"gs://b/{run}/train.csv",
        )
        parent = vertex_parent_model(config, credentials)
        baseline = {name: 1.5 for name in config.features.numeric}
        baseline.update({name: "Cash" for name in config.features.categorical})
        run_register_vertex(
            config, parent, spec, record, credentials, explanation_baseline=baseline
        )
        return record

    with registry.serving():
        upload("taxi-training-1")
        second = upload("taxi-training-2")
        reference = champion_reference(config, credentials)
    first_request, second_request = registry.upload_requests
    assert first_request.parent_model == ""  # the first upload creates the model
    (parent,) = registry.versions
    assert second_request.parent_model == parent  # later ones are versions under it
    for request in registry.upload_requests:
        model = request.model
        assert request.parent == "projects/my-project/locations/europe-west4"
        assert dict(model.labels)["mlops_model"] == "taxi"
        assert list(model.version_aliases) == ["champion", "default"]
        assert model.display_name == "taxi"
        assert model.container_spec.image_uri == spec["imageUri"]
        assert model.container_spec.health_route == "/health"
        assert [p.container_port for p in model.container_spec.ports] == [8080]
        # Vertex Explainable AI: the same method, paths and raw-feature baseline as our step
        explanation = model.explanation_spec
        assert explanation.parameters.sampled_shapley_attribution.path_count == config.explain.paths
        inputs = explanation.metadata.inputs
        assert set(inputs) == set(config.features.raw_features)
        assert inputs["fare"].input_baselines[0] == 1.5
        assert inputs["payment_type"].input_baselines[0] == "Cash"
        assert explanation.metadata.outputs["probabilities"].output_tensor_name == "probabilities"
    assert second_request.model.artifact_uri == "gs://b/taxi-training-2/model"
    assert dict(second_request.model.labels)["mlops_run"] == "taxi-training-2"
    # The champion alias moved to version 2, whose description is read back for monitoring.
    assert reference == {**second, "model_version": "2", "model_resource": f"{parent}@2"}
    assert [list(v.version_aliases) for v in registry.versions[parent]] == [
        [],
        ["champion", "default"],
    ]


def test_training_data_for_model_monitoring_is_written_when_the_source_is_local(
    tmp_path: Path,
) -> None:
    import pandas as pd

    from components.register import monitoring_training_data

    config = _vertex_config(tmp_path)
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    pd.DataFrame({"fare": [1.0, 2.0], "big_tipper": [0, 1]}).to_parquet(dataset / "train.parquet")
    uri = monitoring_training_data(
        config, dataset, tmp_path / "training_data", "gs://b/run/training_data"
    )
    assert uri == "gs://b/run/training_data/train.csv"
    assert pd.read_csv(tmp_path / "training_data" / "train.csv")["fare"].tolist() == [1.0, 2.0]
    remote = config.with_overrides(
        data={**config.data.model_dump(), "source": "gs://bucket/taxi/trips.csv"}
    )
    assert monitoring_training_data(remote, dataset, tmp_path / "x", "gs://b/x") == (
        "gs://bucket/taxi/trips.csv"
    )
    assert not (tmp_path / "x").exists()


def test_steps_run_in_the_project_image_and_config_is_a_parameter(taxi_vertex) -> None:
    config, spec = taxi_vertex
    for component in ("comp-ingest", "comp-validate-data", "comp-transform", "comp-evaluate"):
        assert _executor_of(spec, component)["container"]["image"] == config.vertex.image
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert set(parameters) == {"config_json", "step_log", "run_id"}
    assert PipelineConfig.from_json(parameters["config_json"]["defaultValue"]) == config
    assert "find-champion-vertex" in spec["root"]["dag"]["tasks"]
    assert "register-local" not in spec["root"]["dag"]["tasks"]


def test_local_target_compiles_with_local_registry(tmp_path: Path) -> None:
    config = config_in(tmp_path, "penguins")
    spec = json.loads(compile_training_pipeline(config, "local", tmp_path / "p.json").read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert {"register-local", "find-champion-local", "train"} <= set(tasks)
    assert "CustomJob" not in json.dumps(spec["deploymentSpec"]["executors"]["exec-train"])


def _cloud_data(config: PipelineConfig) -> PipelineConfig:
    return config.with_overrides(
        data={**config.data.model_dump(), "source": "gs://bucket/data/taxi.csv"}
    )


def test_pipeline_job_is_constructed_offline(taxi_vertex, tmp_path: Path) -> None:
    config, _ = taxi_vertex
    config = _cloud_data(config)
    template = compile_training_pipeline(config, "vertex", tmp_path / "t.json")
    settings = SubmitSettings.resolve(
        config,
        pipeline_root="gs://bucket/pipelines",
        service_account="sa@p.iam.gserviceaccount.com",
    )
    job = build_pipeline_job(config, template, settings, credentials=AnonymousCredentials())
    resource = job._gca_resource
    assert resource.display_name == "taxi-training"
    assert resource.runtime_config.gcs_output_directory == "gs://bucket/pipelines"
    sent = PipelineConfig.from_json(resource.runtime_config.parameter_values["config_json"])
    # On Google Cloud the Beam steps run on Dataflow.
    assert sent.beam_args[0] == "--runner=DataflowRunner"
    assert "--temp_location=gs://bucket/pipelines/dataflow/temp" in sent.beam_args
    assert job.project == "my-project" and job.location == "europe-west4"


def test_submit_sends_one_create_request(taxi_vertex, tmp_path: Path) -> None:
    from google.cloud.aiplatform_v1.services.pipeline_service import PipelineServiceClient
    from google.cloud.aiplatform_v1.types import PipelineJob

    config, _ = taxi_vertex
    config = _cloud_data(config)
    template = compile_training_pipeline(config, "vertex", tmp_path / "t.json")
    settings = SubmitSettings.resolve(
        config, pipeline_root="gs://bucket/root", service_account="sa@p.iam.gserviceaccount.com"
    )
    job = build_pipeline_job(config, template, settings, credentials=AnonymousCredentials())
    created = PipelineJob(
        name=f"projects/my-project/locations/europe-west4/pipelineJobs/{job.job_id}"
    )
    from google.cloud import storage
    from google.cloud.aiplatform.utils import resource_manager_utils

    def bucket_metadata(self, client=None):  # Cloud Storage's answer: the bucket's owner
        self._properties["projectNumber"] = "123"

    # submit() first checks that the pipeline root's bucket exists and belongs to the project
    # (Cloud Storage and Resource Manager APIs), then creates the job (Vertex AI API).
    with (
        mock.patch.object(storage.Bucket, "exists", return_value=True) as bucket_exists,
        mock.patch.object(storage.Bucket, "reload", bucket_metadata),
        mock.patch.object(resource_manager_utils, "get_project_number", return_value=123),
        mock.patch.object(
            PipelineServiceClient, "create_pipeline_job", return_value=created
        ) as create,
    ):
        job.submit(service_account=settings.service_account)
    bucket_exists.assert_called_once()
    create.assert_called_once()
    request = create.call_args.kwargs
    assert request["parent"] == "projects/my-project/locations/europe-west4"
    assert request["pipeline_job"].service_account == "sa@p.iam.gserviceaccount.com"
    assert request["pipeline_job"].runtime_config.gcs_output_directory == "gs://bucket/root"


def test_submit_needs_project_and_pipeline_root(tmp_path: Path) -> None:
    from mlops.config import ConfigError

    config = _vertex_config(tmp_path)
    with pytest.raises(ConfigError, match="--project or vertex.project"):
        SubmitSettings.resolve(config, pipeline_root="gs://b/r")
    with pytest.raises(ConfigError, match="must be a gs:// URI"):
        SubmitSettings.resolve(config, project="p", pipeline_root="/tmp/x")


def test_cli_dry_run_prints_the_job_and_sends_nothing(tmp_path: Path, capsys) -> None:
    from google.cloud.aiplatform_v1.services.pipeline_service import PipelineServiceClient

    with mock.patch.object(PipelineServiceClient, "create_pipeline_job") as create:
        code = cli.main(
            [
                "submit",
                "--config",
                "configs/penguins.yaml",
                "--project",
                "p",
                "--pipeline-root",
                "gs://b/r",
                "--image",
                IMAGE,
                "--template",
                str(
                    compile_training_pipeline(
                        on_vertex(config_in(tmp_path)), "vertex", tmp_path / "p.json"
                    )
                ),
                "--dry-run",
            ]
        )
    assert code == 0
    create.assert_not_called()
    printed = capsys.readouterr().out
    assert "nothing was sent" in printed
    described = json.loads(printed.split("\n", 1)[1])
    assert described["project"] == "p" and described["pipeline_root"] == "gs://b/r"
    assert "train" in described["tasks"]


def test_runtime_config_keeps_local_runner_when_configured(tmp_path: Path) -> None:
    config = _vertex_config(tmp_path, beam_runner="DirectRunner")
    settings = SubmitSettings("p", "r", "gs://b", None)
    assert vertex_runtime_config(config, settings).beam_args == ["--runner=DirectRunner"]


KEY = "projects/my-project/locations/europe-west4/keyRings/ring/cryptoKeys/key"
NETWORK = "projects/123456/global/networks/vpc"
SUBNETWORK = "regions/europe-west4/subnetworks/dataflow"


def test_dataflow_args_ship_the_image_and_read_everything_from_config(tmp_path: Path) -> None:
    from apache_beam.options.pipeline_options import PipelineOptions

    config = _vertex_config(
        tmp_path,
        region="europe-west4",
        encryption_key=KEY,
        network=NETWORK,
        subnetwork=SUBNETWORK,
        dataflow={
            "machine_type": "n2-standard-8",
            "max_num_workers": 25,
            "disk_size_gb": 50,
            "use_public_ips": False,
        },
    )
    settings = SubmitSettings.resolve(
        config,
        project="my-project",
        pipeline_root="gs://bucket/root/",
        service_account="sa@my-project.iam.gserviceaccount.com",
    )
    args = vertex_runtime_config(config, settings).beam_args
    assert args == [
        "--runner=DataflowRunner",
        "--project=my-project",
        "--region=europe-west4",
        "--temp_location=gs://bucket/root/dataflow/temp",
        "--staging_location=gs://bucket/root/dataflow/staging",
        f"--sdk_container_image={IMAGE}",
        "--sdk_location=container",
        "--experiments=use_runner_v2",
        "--machine_type=n2-standard-8",
        "--max_num_workers=25",
        "--disk_size_gb=50",
        "--service_account_email=sa@my-project.iam.gserviceaccount.com",
        f"--dataflow_kms_key={KEY}",
        f"--subnetwork={SUBNETWORK}",
        "--no_use_public_ips",
    ]
    # Every option is one Beam knows (an unknown one would be dropped silently).
    options = PipelineOptions(args).get_all_options(retain_unknown_options=True)
    assert options["sdk_container_image"] == IMAGE
    assert options["dataflow_kms_key"] == KEY
    assert options["use_public_ips"] is False
    assert options["machine_type"] == "n2-standard-8"
    assert options["experiments"] == ["use_runner_v2"]
    # Without a subnetwork the network goes by name; public IPs are the default.
    plain = _vertex_config(tmp_path, network=NETWORK)
    args = vertex_runtime_config(
        plain, SubmitSettings("p", "us-central1", "gs://b", None)
    ).beam_args
    assert "--network=vpc" in args
    assert not any(arg.startswith(("--subnetwork", "--no_use_public_ips")) for arg in args)


def test_region_flag_moves_every_resource(tmp_path: Path) -> None:
    config = _vertex_config(tmp_path, project="p")
    settings = SubmitSettings.resolve(config, region="asia-east1", pipeline_root="gs://b/r")
    sent = vertex_runtime_config(config, settings)
    assert sent.vertex.region == "asia-east1"
    assert "--region=asia-east1" in sent.beam_args
    # `submit` compiles from the config with the flags applied: every task's location follows.
    spec = json.loads(
        compile_training_pipeline(settings.apply(config), "vertex", tmp_path / "t.json").read_text()
    )
    locations = [
        task["inputs"]["parameters"]["location"]["runtimeValue"]["constant"]
        for component in [spec["root"], *spec["components"].values()]
        for task in component.get("dag", {}).get("tasks", {}).values()
        if "location" in task.get("inputs", {}).get("parameters", {})
    ]
    # GCPC tasks with a location say the job's; the custom job takes the job's location, and
    # the register step uploads to the config's region.
    assert set(locations) <= {"asia-east1"}
    default = spec["root"]["inputDefinitions"]["parameters"]["config_json"]["defaultValue"]
    assert PipelineConfig.from_json(default).vertex.region == "asia-east1"


def test_vertex_target_refuses_the_placeholder_image_but_local_compiles(tmp_path: Path) -> None:
    from mlops.config import PLACEHOLDER_IMAGE, ConfigError

    config = config_in(tmp_path, "penguins")
    assert config.vertex.image == PLACEHOLDER_IMAGE
    compile_training_pipeline(config, "local", tmp_path / "local.json")
    with pytest.raises(ConfigError, match=r"vertex\.image .*--image"):
        compile_training_pipeline(config, "vertex", tmp_path / "vertex.json")
    code = cli.main(
        ["compile", "--config", "configs/penguins.yaml", "-o", str(tmp_path / "v.json")]
    )
    assert code == 2
    code = cli.main(
        [
            "compile",
            "--config",
            "configs/penguins.yaml",
            "--image",
            IMAGE,
            "-o",
            str(tmp_path / "v.json"),
        ]
    )
    assert code == 0
    with pytest.raises(ValueError, match="vertex.image"):
        on_vertex(config, image="not an image")


def test_accelerators_need_the_gpu_image(tmp_path: Path) -> None:
    from mlops.config import ConfigError

    config = _vertex_config(tmp_path, gpu_image=None)
    assert config.vertex.training.accelerator_type
    with pytest.raises(ConfigError, match=r"vertex\.gpu_image .*--gpu-image"):
        compile_training_pipeline(config, "vertex", tmp_path / "t.json")


def test_cmek_and_network_reach_every_resource(tmp_path: Path) -> None:
    config = _vertex_config(
        tmp_path, project="my-project", region="europe-west4", encryption_key=KEY, network=NETWORK
    )
    config = _cloud_data(config)
    spec = json.loads(compile_training_pipeline(config, "vertex", tmp_path / "t.json").read_text())
    train = spec["components"]["comp-train"]["inputDefinitions"]["parameters"]
    assert train["encryption_spec_key_name"]["defaultValue"] == KEY
    assert train["network"]["defaultValue"] == NETWORK
    # The register step uploads the model version with the key, in the region.
    from google.cloud import aiplatform

    from components.register import run_register_vertex

    with mock.patch.object(aiplatform.Model, "upload") as upload:
        run_register_vertex(
            config,
            "",
            {"imageUri": IMAGE},
            {"model_dir": "gs://bucket/root/model", "run_id": "run-1"},
            credentials=AnonymousCredentials(),
        )
    assert upload.call_args.kwargs["encryption_spec_key_name"] == KEY
    assert upload.call_args.kwargs["location"] == "europe-west4"
    settings = SubmitSettings.resolve(config, pipeline_root="gs://bucket/root")
    job = build_pipeline_job(
        config, tmp_path / "t.json", settings, credentials=AnonymousCredentials()
    )
    assert job._gca_resource.encryption_spec.kms_key_name == KEY
    with mock.patch.object(type(job), "submit") as submit_job:
        from mlops.vertex_jobs import submit

        submit(job, settings, "taxi-training")
    assert submit_job.call_args.kwargs["network"] == NETWORK
    assert submit_job.call_args.kwargs["experiment"] == "taxi-training"


def test_cmek_key_and_subnetwork_must_be_in_the_region(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one region"):
        _vertex_config(tmp_path, region="us-central1", encryption_key=KEY)
    with pytest.raises(ValueError, match="one region"):
        _vertex_config(tmp_path, region="us-central1", subnetwork=SUBNETWORK)
    with pytest.raises(ValueError, match="encryption_key"):
        _vertex_config(tmp_path, encryption_key="my-key")


def test_submit_refuses_data_on_this_machine(taxi_vertex, tmp_path: Path) -> None:
    from mlops.config import ConfigError

    config, _ = taxi_vertex
    template = compile_training_pipeline(config, "vertex", tmp_path / "t.json")
    settings = SubmitSettings.resolve(config, pipeline_root="gs://bucket/root")
    with pytest.raises(ConfigError, match=r"data\.source .*gs://"):
        build_pipeline_job(config, template, settings, credentials=AnonymousCredentials())


def test_submit_without_credentials_says_how_to_log_in(tmp_path: Path, monkeypatch, capsys) -> None:
    import google.auth._default

    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    # No metadata server either (as on a laptop): the GCE check answers "not on GCE".
    monkeypatch.setattr(google.auth._default, "_get_gce_credentials", lambda *a, **k: (None, None))
    # aiplatform caches the credentials an earlier test found (faked) in its global config.
    from google.cloud.aiplatform import initializer

    monkeypatch.setattr(initializer.global_config, "_credentials", None)
    config_file = tmp_path / "config.json"
    config_file.write_text(
        on_vertex(config_in(tmp_path, "penguins"), project="p", pipeline_root="gs://b/r").to_json()
    )
    code = cli.main(["submit", "--config-json", str(config_file)])
    assert code == 2
    captured = capsys.readouterr()
    assert "gcloud auth application-default login" in captured.err
    assert "Traceback" not in captured.err + captured.out


def test_spec_compiled_with_project_and_root_defaults_to_dataflow(tmp_path: Path) -> None:
    config = _vertex_config(tmp_path, project="my-project", pipeline_root="gs://bucket/root")
    spec = json.loads(compile_training_pipeline(config, "vertex", tmp_path / "t.json").read_text())
    default = spec["root"]["inputDefinitions"]["parameters"]["config_json"]["defaultValue"]
    beam_args = PipelineConfig.from_json(default).beam_args
    assert beam_args[0] == "--runner=DataflowRunner"
    assert f"--sdk_container_image={IMAGE}" in beam_args
    assert "--staging_location=gs://bucket/root/dataflow/staging" in beam_args


def test_region_flag_away_from_the_cmek_key_is_a_config_error(tmp_path: Path) -> None:
    from mlops.config import ConfigError

    config = _vertex_config(tmp_path, project="p", region="europe-west4", encryption_key=KEY)
    settings = SubmitSettings.resolve(config, region="us-east1", pipeline_root="gs://b/r")
    with pytest.raises(ConfigError, match="one region"):
        settings.apply(config)


def test_submit_refuses_a_local_curated_schema(taxi_vertex, tmp_path: Path) -> None:
    from mlops.config import ConfigError
    from mlops.vertex_jobs import check_cloud_inputs

    config, _ = taxi_vertex
    config = _cloud_data(config)
    local_schema = config.with_overrides(
        validation={**config.validation.model_dump(), "schema_path": "data/schema.pbtxt"}
    )
    with pytest.raises(ConfigError, match=r"validation\.schema_path"):
        check_cloud_inputs(local_schema, "training", {})
    check_cloud_inputs(local_schema, "prediction", {"batch_input": "gs://b/rows.jsonl"})
    with pytest.raises(ConfigError, match="batch_input"):
        check_cloud_inputs(config, "prediction", {"batch_input": "rows.jsonl"})
    check_cloud_inputs(config, "monitoring", {"training_data_uri": "gs://b/train.csv"})
