"""In-memory stand-ins for Google's services at their API boundary, for offline tests: the Vertex
AI Model Registry behind `ModelServiceClient` (list_models with a label filter, get_model by
version or alias, upload_model with parent model, aliases and default version), the model
monitoring jobs behind `JobServiceClient` and endpoints behind `EndpointServiceClient`, and Cloud
Storage objects behind `google.cloud.storage.Blob`. Our code and the `aiplatform` SDK run for real
on top of them; each fake records the requests it received."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from unittest import mock

from google.api_core.exceptions import NotFound
from google.auth.credentials import AnonymousCredentials

PROJECT, REGION = "my-project", "europe-west4"
LOCATION = f"projects/{PROJECT}/locations/{REGION}"


def _operation(name: str, result: Any) -> Any:
    """A finished long-running operation as the SDK reads it (`.operation.name`, `.result()`)."""
    return SimpleNamespace(operation=SimpleNamespace(name=name), result=lambda timeout=None: result)


@contextlib.contextmanager
def default_credentials() -> Iterator[None]:
    """`google.auth.default()` answers anonymous credentials (the SDK asks for them where a call
    passes none, e.g. on the model `Model.upload` returns)."""
    import google.auth

    with mock.patch.object(google.auth, "default", return_value=(AnonymousCredentials(), PROJECT)):
        yield


class FakeModelRegistry:
    """Vertex AI Model Registry: models with versions, aliases and labels."""

    def __init__(self) -> None:
        self.versions: dict[str, list[Any]] = {}  # model resource name -> Model protos
        self.list_requests: list[Any] = []
        self.upload_requests: list[Any] = []

    def add(self, model_id: str, **fields: Any) -> str:
        """A model uploaded by hand (or by someone else): one version, the default."""
        from google.cloud.aiplatform_v1.types import Model

        name = f"{LOCATION}/models/{model_id}"
        aliases = list(fields.pop("version_aliases", []))
        self.versions[name] = [
            Model(name=name, version_id="1", version_aliases=["default", *aliases], **fields)
        ]
        return name

    def _default(self, name: str) -> Any:
        return next(v for v in self.versions[name] if "default" in v.version_aliases)

    # --- ModelServiceClient methods -------------------------------------------------------
    def list_models(self, request: Any = None, **_: Any) -> list[Any]:
        self.list_requests.append(request)
        wanted = re.fullmatch(r'labels\.([a-z0-9_-]+)="([^"]*)"', request["filter"])
        assert wanted, f"unexpected filter {request['filter']!r}"
        key, value = wanted.groups()
        defaults = [self._default(name) for name in self.versions]
        return [m for m in defaults if m.labels.get(key) == value]

    def get_model(self, name: str = "", request: Any = None, **_: Any) -> Any:
        name = name or request["name"]
        model, _, ref = name.partition("@")
        for version in self.versions.get(model, []):
            if ref in (version.version_id, *version.version_aliases) or (
                not ref and "default" in version.version_aliases
            ):
                return version
        raise NotFound(f"model {name} not found")

    def upload_model(self, request: Any = None, **_: Any) -> Any:
        from google.cloud.aiplatform_v1.types import Model, UploadModelResponse

        self.upload_requests.append(request)
        parent = request.parent_model or f"{LOCATION}/models/{1000 + len(self.versions)}"
        versions = self.versions.setdefault(parent, [])
        for alias in request.model.version_aliases:  # an alias names one version at a time
            for version in versions:
                if alias in version.version_aliases:
                    version.version_aliases = [a for a in version.version_aliases if a != alias]
        version = Model(request.model)
        version.name = parent
        version.version_id = str(len(versions) + 1)
        versions.append(version)
        return _operation(
            f"{parent}/operations/{version.version_id}",
            UploadModelResponse(model=parent, model_version_id=version.version_id),
        )

    @contextlib.contextmanager
    def serving(self) -> Iterator[FakeModelRegistry]:
        from google.cloud.aiplatform_v1.services.model_service import ModelServiceClient

        with (
            default_credentials(),
            mock.patch.object(ModelServiceClient, "list_models", self._bound("list_models")),
            mock.patch.object(ModelServiceClient, "get_model", self._bound("get_model")),
            mock.patch.object(ModelServiceClient, "upload_model", self._bound("upload_model")),
        ):
            yield self

    def _bound(self, method: str) -> Any:
        fake = getattr(self, method)
        return lambda client, *args, **kwargs: fake(*args, **kwargs)


class FakeMonitoringJobs:
    """Vertex AI model deployment monitoring jobs, and the endpoint they watch."""

    def __init__(self, endpoint: str, deployed_model_ids: tuple[str, ...] = ("99",)) -> None:
        self.endpoint = endpoint
        self.deployed_model_ids = deployed_model_ids
        self.jobs: dict[str, Any] = {}
        self.created: list[Any] = []
        self.updated: list[Any] = []

    def list_model_deployment_monitoring_jobs(self, request: Any = None, **_: Any) -> list[Any]:
        wanted = re.fullmatch(r'display_name="([^"]*)"', request.get("filter") or "")
        return [j for j in self.jobs.values() if not wanted or j.display_name == wanted.group(1)]

    def create_model_deployment_monitoring_job(
        self, parent: str = "", model_deployment_monitoring_job: Any = None, **_: Any
    ) -> Any:
        from google.cloud.aiplatform_v1.types import ModelDeploymentMonitoringJob

        job = ModelDeploymentMonitoringJob(model_deployment_monitoring_job)
        job.name = f"{parent}/modelDeploymentMonitoringJobs/{len(self.jobs) + 7}"
        self.jobs[job.name] = job
        self.created.append(job)
        return job

    def get_model_deployment_monitoring_job(self, name: str = "", **_: Any) -> Any:
        if name not in self.jobs:
            raise NotFound(name)
        return self.jobs[name]

    def update_model_deployment_monitoring_job(
        self, model_deployment_monitoring_job: Any = None, update_mask: Any = None, **_: Any
    ) -> Any:
        job = model_deployment_monitoring_job
        self.updated.append((job, list(update_mask.paths)))
        self.jobs[job.name] = job
        return _operation(f"{job.name}/operations/u{len(self.updated)}", job)

    def get_endpoint(self, name: str = "", **_: Any) -> Any:
        from google.cloud.aiplatform_v1.types import DeployedModel, Endpoint

        if name != self.endpoint:
            raise NotFound(name)
        return Endpoint(
            name=name,
            display_name="taxi-endpoint",
            deployed_models=[DeployedModel(id=i) for i in self.deployed_model_ids],
        )

    @contextlib.contextmanager
    def serving(self) -> Iterator[FakeMonitoringJobs]:
        from google.cloud.aiplatform_v1.services.endpoint_service import EndpointServiceClient
        from google.cloud.aiplatform_v1.services.job_service import JobServiceClient

        names = (
            "list_model_deployment_monitoring_jobs",
            "create_model_deployment_monitoring_job",
            "get_model_deployment_monitoring_job",
            "update_model_deployment_monitoring_job",
        )
        with contextlib.ExitStack() as stack:
            stack.enter_context(default_credentials())
            for name in names:
                fake = getattr(self, name)
                stack.enter_context(
                    mock.patch.object(
                        JobServiceClient, name, lambda c, *a, _f=fake, **k: _f(*a, **k)
                    )
                )
            stack.enter_context(
                mock.patch.object(
                    EndpointServiceClient,
                    "get_endpoint",
                    lambda c, *a, **k: self.get_endpoint(*a, **k),
                )
            )
            yield self


class FakeBucket:
    """Cloud Storage objects behind `google.cloud.storage.Blob` (download and upload)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.uploads: list[str] = []

    @contextlib.contextmanager
    def serving(self) -> Iterator[FakeBucket]:
        from google.cloud import storage

        objects, uploads = self.objects, self.uploads

        def download_as_bytes(blob, *args: Any, **kwargs: Any) -> bytes:  # noqa: ANN001
            uri = f"gs://{blob.bucket.name}/{blob.name}"
            if uri not in objects:
                raise NotFound(f"GET {uri}: No such object")
            return objects[uri]

        def upload_from_string(blob, data, content_type=None, *args, **kwargs) -> None:  # noqa: ANN001
            uri = f"gs://{blob.bucket.name}/{blob.name}"
            objects[uri] = data if isinstance(data, bytes) else data.encode()
            uploads.append(uri)

        with (
            default_credentials(),
            mock.patch.object(storage.Blob, "download_as_bytes", download_as_bytes),
            mock.patch.object(storage.Blob, "upload_from_string", upload_from_string),
        ):
            yield self


class FakeMetadataStore:
    """Vertex ML Metadata behind `MetadataServiceClient`: the location's default store (absent
    until created, as in a project that never ran a pipeline), contexts (experiments, pipeline
    runs) by resource name, and which child contexts were added to which."""

    def __init__(self) -> None:
        self.store: str | None = None
        self.contexts: dict[str, Any] = {}
        self.store_requests: list[str] = []
        self.created_contexts: list[Any] = []
        self.children: list[tuple[str, list[str]]] = []

    def get_metadata_store(self, name: str = "", **_: Any) -> Any:
        from google.cloud.aiplatform_v1.types import MetadataStore

        self.store_requests.append(f"get {name}")
        if name != self.store:
            raise NotFound(f"metadata store {name} not found")
        return MetadataStore(name=name)

    def create_metadata_store(
        self, parent: str = "", metadata_store: Any = None, metadata_store_id: str = "", **_: Any
    ) -> Any:
        self.store_requests.append(f"create {parent}/metadataStores/{metadata_store_id}")
        self.store = f"{parent}/metadataStores/{metadata_store_id}"
        return _operation(f"{self.store}/operations/1", metadata_store)

    def get_context(self, name: str = "", **_: Any) -> Any:
        if name not in self.contexts:
            raise NotFound(f"context {name} not found")
        return self.contexts[name]

    def create_context(
        self, parent: str = "", context: Any = None, context_id: str = "", **_: Any
    ) -> Any:
        from google.api_core.exceptions import AlreadyExists
        from google.cloud.aiplatform_v1.types import Context

        assert parent == self.store, f"context created outside the default store: {parent}"
        created = Context(context)
        created.name = f"{parent}/contexts/{context_id}"
        if created.name in self.contexts:
            raise AlreadyExists(created.name)
        self.contexts[created.name] = created
        self.created_contexts.append(created)
        return created

    def add_context_children(self, context: str = "", child_contexts: Any = None, **_: Any) -> Any:
        assert context in self.contexts, f"no such context {context}"
        self.children.append((context, list(child_contexts)))

    def pipeline_run_context(self, job_name: str) -> Any:
        """The `system.PipelineRun` context Vertex creates for a new pipeline job."""
        from google.cloud.aiplatform_v1.types import Context

        run_id = job_name.rsplit("/", 1)[-1]
        context = Context(
            name=f"{LOCATION}/metadataStores/default/contexts/{run_id}",
            schema_title="system.PipelineRun",
            display_name=run_id,
        )
        self.contexts[context.name] = context
        return context

    METHODS = (
        "get_metadata_store",
        "create_metadata_store",
        "get_context",
        "create_context",
        "add_context_children",
    )


@contextlib.contextmanager
def vertex_pipelines(
    metadata: FakeMetadataStore | None = None,
) -> Iterator[tuple[Any, FakeBucket]]:
    """What submitting a pipeline job talks to: credentials and Cloud Storage objects (a
    FakeBucket), the pipeline root's bucket metadata, Resource Manager, the Vertex AI pipeline
    service (`create_pipeline_job`, a mock recording the request; `get_pipeline_job` answers the
    job running, with its pipeline-run context) and Vertex ML Metadata (`metadata`, where the
    SDK gets or creates the run's experiment and adds the run to it). Yields (create, bucket)."""
    from google.cloud import storage
    from google.cloud.aiplatform.utils import resource_manager_utils
    from google.cloud.aiplatform_v1.services.metadata_service import MetadataServiceClient
    from google.cloud.aiplatform_v1.services.pipeline_service import PipelineServiceClient
    from google.cloud.aiplatform_v1.types import PipelineJob, PipelineJobDetail, PipelineState

    metadata = metadata or FakeMetadataStore()
    jobs: dict[str, Any] = {}

    def bucket_metadata(self, client=None):  # Cloud Storage's answer: the bucket's owner
        self._properties["projectNumber"] = "123"

    def create_pipeline_job(client, parent="", pipeline_job=None, **_):  # noqa: ANN001
        name = f"{parent}/pipelineJobs/{pipeline_job.display_name}-1"
        created = PipelineJob(pipeline_job)
        created.name = name
        created.state = PipelineState.PIPELINE_STATE_PENDING
        jobs[name] = created
        return PipelineJob(name=name)

    def get_pipeline_job(client, name="", **_):  # noqa: ANN001 - running, context created
        job = PipelineJob(jobs[name])
        job.state = PipelineState.PIPELINE_STATE_RUNNING
        job.job_detail = PipelineJobDetail(pipeline_run_context=metadata.pipeline_run_context(name))
        return job

    with contextlib.ExitStack() as stack:
        bucket = stack.enter_context(FakeBucket().serving())
        stack.enter_context(mock.patch.object(storage.Bucket, "exists", return_value=True))
        stack.enter_context(mock.patch.object(storage.Bucket, "reload", bucket_metadata))
        stack.enter_context(
            mock.patch.object(resource_manager_utils, "get_project_number", return_value=123)
        )
        create = stack.enter_context(
            mock.patch.object(
                PipelineServiceClient,
                "create_pipeline_job",
                autospec=True,
                side_effect=create_pipeline_job,
            )
        )
        stack.enter_context(
            mock.patch.object(PipelineServiceClient, "get_pipeline_job", get_pipeline_job)
        )
        for name in FakeMetadataStore.METHODS:
            fake = getattr(metadata, name)
            stack.enter_context(
                mock.patch.object(
                    MetadataServiceClient, name, lambda c, *a, _f=fake, **k: _f(*a, **k)
                )
            )
        yield create, bucket
