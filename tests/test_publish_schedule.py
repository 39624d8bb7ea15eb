"""Offline proof of `mlops publish` and `mlops schedule`: the KFP RegistryClient runs for real
with only its HTTP calls (the `requests` functions it calls) faked, and the schedules run through
`aiplatform.PipelineJobSchedule` with only the Vertex AI ScheduleService methods faked."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
import requests
from google.auth.credentials import AnonymousCredentials

from mlops import templates
from mlops.config import ConfigError, PipelineConfig
from mlops.schedules import UPDATED_FIELDS, schedule_display_name, upsert_schedule
from mlops.vertex_jobs import SubmitSettings
from pipelines import cli
from pipelines.vertex import compile_pipeline
from tests.conftest import config_in

HOST = "https://europe-west4-kfp.pkg.dev/my-project/pipelines"
AR_API = "https://artifactregistry.googleapis.com/v1/projects/my-project/locations/europe-west4"
VERSION = "sha256:" + "b" * 64
DIGEST_IMAGE = "europe-west4-docker.pkg.dev/my-project/mlops/mlops-template@sha256:" + "a" * 64


def _response(body: str | dict, status: int = 200) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = (body if isinstance(body, str) else json.dumps(body)).encode()
    return response


@pytest.fixture
def taxi(tmp_path: Path) -> PipelineConfig:
    config = config_in(tmp_path, "taxi")
    return config.with_overrides(
        vertex={
            **config.vertex.model_dump(),
            "project": "my-project",
            "region": "europe-west4",
            "image": DIGEST_IMAGE,
            # taxi trains on a GPU: its custom job needs the CUDA build of the image
            "gpu_image": DIGEST_IMAGE.replace("mlops-template@", "mlops-template-gpu@"),
        },
        # on Vertex the steps read their data from Cloud Storage
        data={**config.data.model_dump(), "source": "gs://bucket/data/big_tipper.csv"},
    )


@pytest.fixture
def training_spec(taxi: PipelineConfig, tmp_path: Path) -> Path:
    return compile_pipeline(taxi, "training", "vertex", tmp_path / "taxi-training-vertex.json")


# --- publish ----------------------------------------------------------------------------------


def test_upload_posts_the_spec_with_its_tags(training_spec: Path) -> None:
    sent = {}

    def post(url, data=None, headers=None, files=None, auth=None):
        sent.update(url=url, data=data, headers=headers, content=files["content"].read())
        return _response(f"taxi-training/{VERSION}")

    with mock.patch.object(requests, "post", side_effect=post) as posted:
        published = templates.upload(
            HOST + "/",
            training_spec,
            ["sha-0123abc", "latest"],
            auth=AnonymousCredentials(),
            extra_headers={"description": "main"},
        )
    posted.assert_called_once()
    assert sent["url"] == HOST
    assert sent["data"] == {"tags": "sha-0123abc,latest"}
    assert sent["headers"] == {"description": "main"}
    assert sent["content"] == training_spec.read_bytes()
    assert json.loads(sent["content"])["pipelineInfo"]["name"] == "taxi-training"
    assert published.package == "taxi-training" and published.version == VERSION
    assert published.template_uri == f"{HOST}/taxi-training/{VERSION}"


def test_upload_refuses_bad_input_before_sending(training_spec: Path, tmp_path: Path) -> None:
    with mock.patch.object(requests, "post") as posted:
        with pytest.raises(ConfigError, match="kfp.pkg.dev"):
            templates.upload("https://example.com/x", training_spec, ["t"])
        with pytest.raises(ConfigError, match="not an Artifact Registry tag"):
            templates.upload(HOST, training_spec, ["sha256:abc"], auth=AnonymousCredentials())
        (tmp_path / "x.json").write_text("{}")
        with pytest.raises(ConfigError, match="pipelineInfo.name"):
            templates.upload(HOST, tmp_path / "x.json", ["t"], auth=AnonymousCredentials())
    posted.assert_not_called()


def test_promote_resolves_a_tag_then_creates_new_tags_and_moves_existing_ones() -> None:
    package_api = f"{AR_API}/repositories/pipelines/packages/taxi-training"
    version_name = f"projects/my-project/locations/europe-west4/repositories/pipelines/packages/taxi-training/versions/{VERSION}"
    calls = []

    def fake(method):
        def call(url, data=None, headers=None, auth=None):
            calls.append((method, url, json.loads(data) if data else None))
            if method == "get" and url == f"{package_api}/tags/sha-0123abc":
                return _response({"name": "sha-0123abc", "version": version_name})
            if method == "get" and url == f"{package_api}/tags/release":
                return _response({"name": "release", "version": "older"})
            if method == "get":
                return _response({"error": {"code": 404}}, status=404)
            return _response({"name": "ok"})

        return call

    with (
        mock.patch.object(requests, "get", side_effect=fake("get")),
        mock.patch.object(requests, "post", side_effect=fake("post")),
        mock.patch.object(requests, "patch", side_effect=fake("patch")),
    ):
        published = templates.promote(
            HOST, "taxi-training", "sha-0123abc", ["v1.2.0", "release"], AnonymousCredentials()
        )
    assert published.version == VERSION
    assert published.template_uri == f"{HOST}/taxi-training/{VERSION}"
    assert [url for method, url, _ in calls if method == "get"] == [
        f"{package_api}/tags/sha-0123abc",
        f"{package_api}/tags/v1.2.0",
        f"{package_api}/tags/release",
    ]
    writes = [call for call in calls if call[0] != "get"]
    assert writes == [
        ("post", f"{package_api}/tags?tagId=v1.2.0", {"name": "", "version": version_name}),
        (
            "patch",
            f"{package_api}/tags/release?updateMask=version",
            {"name": "", "version": version_name},
        ),
    ]


def test_promote_stops_on_a_registry_error_other_than_not_found() -> None:
    forbidden = _response({"error": {"code": 403}}, status=403)
    with (
        mock.patch.object(requests, "get", return_value=forbidden),
        mock.patch.object(requests, "post") as posted,
        mock.patch.object(requests, "patch") as patched,
        pytest.raises(requests.HTTPError, match="403"),
    ):
        templates.promote(HOST, "taxi-training", VERSION, ["release"], AnonymousCredentials())
    posted.assert_not_called()
    patched.assert_not_called()


def test_cli_publish_uploads_each_template_and_writes_what_it_published(
    taxi: PipelineConfig, tmp_path: Path, capsys
) -> None:
    specs = [
        compile_pipeline(taxi, kind, "vertex", tmp_path / f"taxi-{kind}-vertex.json")
        for kind in ("training", "monitoring")
    ]
    uploaded = []

    def post(url, data=None, headers=None, files=None, auth=None):
        name = json.loads(files["content"].read())["pipelineInfo"]["name"]
        uploaded.append((name, data["tags"]))
        return _response(f"{name}/{VERSION}")

    out = tmp_path / "published.json"
    # No Google credentials here: the registry client's default-credential lookup answers
    # anonymous credentials; every HTTP call goes to the fake.
    with (
        mock.patch("google.auth.default", return_value=(AnonymousCredentials(), "my-project")),
        mock.patch.object(requests, "post", side_effect=post),
    ):
        code = cli.main(
            [
                "publish",
                "--host",
                HOST,
                "--template",
                *map(str, specs),
                "--tag",
                "sha-0123abc",
                "--tag",
                "latest",
                "--output-json",
                str(out),
            ]
        )
    assert code == 0
    assert uploaded == [
        ("taxi-training", "sha-0123abc,latest"),
        ("taxi-monitoring", "sha-0123abc,latest"),
    ]
    written = json.loads(out.read_text())
    assert [item["template_uri"] for item in written] == [
        f"{HOST}/taxi-training/{VERSION}",
        f"{HOST}/taxi-monitoring/{VERSION}",
    ]
    assert f"published taxi-training {VERSION}" in capsys.readouterr().out


def test_cli_publish_needs_a_tag_and_something_to_publish(capsys) -> None:
    assert cli.main(["publish", "--host", HOST, "--template", "x.json"]) == 2
    assert cli.main(["publish", "--host", HOST, "--tag", "t"]) == 2
    assert cli.main(["publish", "--host", HOST, "--tag", "t", "--promote", "sha-1"]) == 2
    assert "--promote needs --package" in capsys.readouterr().err


# --- compile --image ---------------------------------------------------------------------------


def test_compile_image_flag_rejects_malformed_references(tmp_path: Path, capsys) -> None:
    for image in ("mlops-template", "repo/name@sha256:abc", "Repo/Name:1", "r/n:"):
        code = cli.main(["compile", "--image", image, "--output", str(tmp_path / "x.json")])
        assert code == 2, image
    assert "--image must be" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
    assert templates.check_image("us-docker.pkg.dev/p/r/mlops-template:v1.2.0")
    assert templates.check_image(DIGEST_IMAGE)
    assert templates.check_image("localhost:5000/team/app:latest")


# --- schedules ---------------------------------------------------------------------------------


def _spec(job) -> dict:
    """The PipelineSpec a schedule's PipelineJob carries, as plain JSON."""
    return type(job).to_dict(job)["pipeline_spec"]


def _settings() -> SubmitSettings:
    return SubmitSettings(
        "my-project",
        "europe-west4",
        "gs://bucket/root",
        "runner@my-project.iam.gserviceaccount.com",
    )


@pytest.fixture
def schedule_api():
    """The Vertex AI ScheduleService, faked at its API methods; `existing` is what it lists."""
    from google.cloud.aiplatform_v1.services.schedule_service import ScheduleServiceClient
    from google.cloud.aiplatform_v1.types import Schedule

    api = mock.Mock(existing=[])
    parent = "projects/my-project/locations/europe-west4"

    def create_schedule(parent, schedule, timeout=None):
        return Schedule(schedule, name=f"{parent}/schedules/new", state=Schedule.State.ACTIVE)

    with (
        mock.patch.object(
            ScheduleServiceClient, "list_schedules", side_effect=lambda request: api.existing
        ) as listing,
        mock.patch.object(
            ScheduleServiceClient, "create_schedule", side_effect=create_schedule
        ) as create,
        mock.patch.object(ScheduleServiceClient, "update_schedule") as update,
    ):
        api.list, api.create, api.update, api.parent = listing, create, update, parent
        yield api


def test_schedule_is_created_when_none_has_its_name(
    taxi: PipelineConfig, training_spec: Path, schedule_api
) -> None:
    result = upsert_schedule(
        taxi,
        training_spec,
        _settings(),
        "training",
        "0 3 * * 1",
        credentials=AnonymousCredentials(),
    )
    request = schedule_api.list.call_args.kwargs["request"]
    assert request["parent"] == schedule_api.parent
    assert request["filter"] == 'display_name="taxi-training-schedule"'
    schedule_api.update.assert_not_called()
    schedule_api.create.assert_called_once()
    sent = schedule_api.create.call_args.kwargs
    assert sent["parent"] == schedule_api.parent
    schedule = sent["schedule"]
    assert schedule.display_name == "taxi-training-schedule"
    assert schedule.cron == "0 3 * * 1"
    assert schedule.max_concurrent_run_count == 1
    job = schedule.create_pipeline_job_request.pipeline_job
    assert schedule.create_pipeline_job_request.parent == schedule_api.parent
    assert job.service_account == "runner@my-project.iam.gserviceaccount.com"
    assert job.runtime_config.gcs_output_directory == "gs://bucket/root"
    sent_config = PipelineConfig.from_json(job.runtime_config.parameter_values["config_json"])
    assert sent_config.beam_args[0] == "--runner=DataflowRunner"
    executors = json.dumps(_spec(job)["deploymentSpec"])
    assert DIGEST_IMAGE in executors
    assert result.action == "created"
    assert result.resource_name == f"{schedule_api.parent}/schedules/new"


def test_scheduled_runs_are_encrypted_and_peered_like_submitted_ones(
    taxi: PipelineConfig, training_spec: Path, schedule_api
) -> None:
    key = "projects/my-project/locations/europe-west4/keyRings/ring/cryptoKeys/key"
    network = "projects/123456/global/networks/vpc"
    config = taxi.with_overrides(
        vertex={**taxi.vertex.model_dump(), "encryption_key": key, "network": network}
    )
    settings = SubmitSettings.resolve(config, pipeline_root="gs://bucket/root")
    upsert_schedule(
        config, training_spec, settings, "training", "0 3 * * 1", credentials=AnonymousCredentials()
    )
    job = schedule_api.create.call_args.kwargs["schedule"].create_pipeline_job_request.pipeline_job
    assert job.encryption_spec.kms_key_name == key
    assert job.network == network


def test_schedule_with_the_same_name_is_updated_in_place(
    taxi: PipelineConfig, tmp_path: Path, schedule_api
) -> None:
    from google.cloud.aiplatform_v1.types import Schedule

    name = f"{schedule_api.parent}/schedules/42"
    schedule_api.existing = [
        Schedule(
            name=f"{schedule_api.parent}/schedules/7",
            display_name=schedule_display_name(taxi, "monitoring"),
            state=Schedule.State.COMPLETED,  # finished schedules are not reused
            cron="0 * * * *",
        ),
        Schedule(
            name=name,
            display_name=schedule_display_name(taxi, "monitoring"),
            state=Schedule.State.ACTIVE,
            cron="0 * * * *",
            max_concurrent_run_count=1,
        ),
    ]
    template = compile_pipeline(taxi, "monitoring", "vertex", tmp_path / "m.json")
    result = upsert_schedule(
        taxi,
        template,
        _settings(),
        "monitoring",
        "TZ=Europe/Amsterdam 30 6 * * *",
        parameters={"training_template_uri": f"{HOST}/taxi-training/{VERSION}"},
        credentials=AnonymousCredentials(),
    )
    schedule_api.create.assert_not_called()
    schedule_api.update.assert_called_once()
    sent = schedule_api.update.call_args.kwargs
    assert list(sent["update_mask"].paths) == list(UPDATED_FIELDS)
    schedule = sent["schedule"]
    assert schedule.name == name
    assert schedule.cron == "TZ=Europe/Amsterdam 30 6 * * *"
    job = schedule.create_pipeline_job_request.pipeline_job
    assert job.service_account == "runner@my-project.iam.gserviceaccount.com"
    parameters = job.runtime_config.parameter_values
    assert parameters["training_template_uri"] == f"{HOST}/taxi-training/{VERSION}"
    assert _spec(job)["pipelineInfo"]["name"] == "taxi-monitoring"
    assert (result.action, result.resource_name) == ("updated", name)


def test_schedule_from_a_registry_template_reads_it_and_keeps_its_uri(
    taxi: PipelineConfig, training_spec: Path, schedule_api
) -> None:
    uri = f"{HOST}/taxi-training/{VERSION}"
    with mock.patch(
        "urllib.request.urlopen", return_value=mock.Mock(read=training_spec.read_bytes)
    ) as fetched:
        upsert_schedule(
            taxi, uri, _settings(), "training", "0 3 * * *", credentials=AnonymousCredentials()
        )
    assert fetched.call_args.args[0].full_url == uri
    schedule = schedule_api.create.call_args.kwargs["schedule"]
    assert schedule.create_pipeline_job_request.pipeline_job.template_uri == uri


def test_schedule_refuses_a_bad_cron_before_any_request(
    taxi: PipelineConfig, training_spec: Path, schedule_api
) -> None:
    for cron in ("daily", "0 3 * *", "0 3 * * * *"):
        with pytest.raises(ConfigError, match="--cron"):
            upsert_schedule(taxi, training_spec, _settings(), "training", cron)
    schedule_api.list.assert_not_called()
    schedule_api.create.assert_not_called()


def test_cli_schedule_dry_run_sends_nothing(
    taxi: PipelineConfig, training_spec: Path, tmp_path: Path, capsys, schedule_api
) -> None:
    # The runs read Cloud Storage data and ship the project image to Dataflow: a config that
    # has both (the shipped taxi.yaml reads a local file and has the placeholder image).
    config_file = tmp_path / "taxi.json"
    config_file.write_text(taxi.to_json())
    code = cli.main(
        [
            "schedule",
            "--config-json",
            str(config_file),
            "--region",
            "us-central1",
            "--project",
            "p",
            "--pipeline-root",
            "gs://b/r",
            "--cron",
            "0 3 * * *",
            "--template",
            str(training_spec),
            "--dry-run",
        ]
    )
    assert code == 0
    schedule_api.list.assert_not_called()
    schedule_api.create.assert_not_called()
    printed = capsys.readouterr().out
    assert "nothing was sent" in printed
    described = json.loads(printed.split("\n", 1)[1])
    assert described["display_name"] == "taxi-training-schedule"
    assert described["cron"] == "0 3 * * *"
    assert described["request"]["parent"] == "projects/p/locations/us-central1"
    assert described["request"]["pipeline_root"] == "gs://b/r"
    assert "config_json" in described["request"]["parameter_names"]
