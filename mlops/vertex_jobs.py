"""Vertex AI Pipelines jobs: resolve where to submit (flags over config), build the
`aiplatform.PipelineJob` for a compiled template, describe it for a dry run, and submit it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mlops.config import (
    PACKAGED_SOURCES,
    PLACEHOLDER_IMAGE,
    ConfigError,
    PipelineConfig,
    database_kind,
)

# Where data may come from when steps run on Google Cloud (the packaged dataset ships in the
# image); a relative or absolute path is a file on the machine that compiled the spec.
CLOUD_DATA_PREFIXES = ("gs://",)
PACKAGED_DATA = PACKAGED_SOURCES


def check_vertex_ready(config: PipelineConfig) -> None:
    """Refuse to build a Vertex pipeline that cannot run on a real project: the placeholder
    image, or accelerators without a GPU image."""
    vertex = config.vertex
    if vertex.image == PLACEHOLDER_IMAGE:
        raise ConfigError(
            f"vertex.image is still the placeholder {PLACEHOLDER_IMAGE!r}: set vertex.image in "
            "the config (or pass --image) to the project image Cloud Build pushed, pinned by "
            "digest (HOST/PATH@sha256:<64 hex>)"
        )
    accelerator = vertex.training.accelerator_type or ""
    if accelerator.startswith("TPU_") and not vertex.tpu_image:
        raise ConfigError(
            f"vertex.training asks for {vertex.training.accelerator_count} x {accelerator} but "
            "vertex.tpu_image is not set: TPUs need an image with TensorFlow's TPU runtime "
            "(libtpu), which the project's CPU and CUDA images lack; build one and set it"
        )
    if accelerator and not accelerator.startswith("TPU_") and not vertex.gpu_image:
        raise ConfigError(
            f"vertex.training asks for {vertex.training.accelerator_count} x "
            f"{vertex.training.accelerator_type} but vertex.gpu_image is not set: set it (or pass "
            "--gpu-image) to the CUDA build of the image (Dockerfile --build-arg ACCELERATOR=gpu)"
        )
    if vertex.automl_challenger.enabled:
        # The challenger's dataset, training job and batch prediction are resources of a
        # project, read CSVs from the pipeline root and write predictions under it.
        needs = _unset(
            vertex,
            project="the AutoML dataset, training job and batch prediction live in it",
            pipeline_root="the split CSVs and AutoML's predictions are written under it",
        )
        if needs:
            raise ConfigError(
                "vertex.automl_challenger.enabled needs "
                + " and ".join(needs)
                + f": set {'them' if len(needs) > 1 else 'it'} in the config's vertex: section "
                "(mlops submit also takes --project and --pipeline-root)"
            )
    if vertex.tensorboard:
        # Vertex AI refuses a custom job with a TensorBoard but no service account, and the
        # job's logs need a Cloud Storage home (its base output directory).
        needs = _unset(
            vertex,
            service_account="Vertex AI TensorBoard runs the training job as it",
            pipeline_root="the training job's base output directory goes under it",
        )
        if needs:
            raise ConfigError(
                f"vertex.tensorboard is {vertex.tensorboard!r}, which needs "
                + " and ".join(needs)
                + ": set it in the config (mlops submit: --service-account / --pipeline-root)"
            )


def _unset(vertex: Any, **why: str) -> list[str]:
    """`vertex.<name> (<why it is needed>)` for each named vertex field the config leaves unset."""
    return [
        f"vertex.{name} ({reason})" for name, reason in why.items() if not getattr(vertex, name)
    ]


def check_cloud_inputs(config: PipelineConfig, kind: str, parameters: dict[str, str]) -> None:
    """Refuse to submit a run whose steps would read a file of this machine: on Google Cloud,
    data comes from Cloud Storage (or, for Vertex Model Monitoring's training data, BigQuery)."""

    def local(value: str, allowed: tuple[str, ...] = CLOUD_DATA_PREFIXES) -> bool:
        return bool(value) and value not in PACKAGED_DATA and not value.startswith(allowed)

    checks: list[tuple[str, str, tuple[str, ...]]] = []
    if kind == "training":
        # BigQuery, or a SQL database server the steps reach (vertex.network); SQLite is a file
        source = config.data.source
        server = database_kind(source) == "sql" and not source.startswith("sqlite")
        checks.append(("data.source", "" if server else source, (*CLOUD_DATA_PREFIXES, "bq://")))
        checks.append(
            ("validation.schema_path", config.validation.schema_path or "", CLOUD_DATA_PREFIXES)
        )
    if kind == "monitoring":
        checks.append(("the source parameter", parameters.get("source", ""), CLOUD_DATA_PREFIXES))
        checks.append(
            (
                "the training_data_uri parameter",
                parameters.get("training_data_uri", ""),
                (*CLOUD_DATA_PREFIXES, "bq://"),
            )
        )
    if kind == "prediction":
        checks.append(
            (
                "the batch_input parameter (or serving.batch_input)",
                parameters.get("batch_input") or config.serving.batch_input or "",
                CLOUD_DATA_PREFIXES,
            )
        )
    for name, value, allowed in checks:
        if local(value, allowed):
            raise ConfigError(
                f"{name} is {value!r}, a path on this machine; steps on Vertex AI read "
                f"{' or '.join(allowed)} URIs: upload it and name it by URI"
            )


@dataclass(frozen=True)
class SubmitSettings:
    project: str
    region: str
    pipeline_root: str
    service_account: str | None
    network: str | None = None
    encryption_key: str | None = None

    @classmethod
    def resolve(
        cls,
        config: PipelineConfig,
        project: str | None = None,
        region: str | None = None,
        pipeline_root: str | None = None,
        service_account: str | None = None,
    ) -> SubmitSettings:
        """Flags override config; a missing project or pipeline root is an error saying where
        to set it."""
        vertex = config.vertex
        project = project or vertex.project
        pipeline_root = pipeline_root or vertex.pipeline_root
        missing = [
            f"{name} (--{flag} or vertex.{name} in the config)"
            for name, flag, value in (
                ("project", "project", project),
                ("pipeline_root", "pipeline-root", pipeline_root),
            )
            if not value
        ]
        if missing:
            raise ConfigError("cannot submit to Vertex AI without " + " and ".join(missing))
        if not str(pipeline_root).startswith("gs://"):
            raise ConfigError(f"pipeline_root must be a gs:// URI, got {pipeline_root!r}")
        return cls(
            project=project,
            region=region or vertex.region,
            pipeline_root=pipeline_root,
            service_account=service_account or vertex.service_account,
            network=vertex.network,
            encryption_key=vertex.encryption_key,
        )

    def apply(self, config: PipelineConfig) -> PipelineConfig:
        """The config with these settings in its vertex section, so a spec compiled from it puts
        every resource in the same project and region as the job."""
        vertex = config.vertex.model_dump()
        vertex.update(
            project=self.project,
            region=self.region,
            pipeline_root=self.pipeline_root,
            service_account=self.service_account,
        )
        try:
            return config.with_overrides(vertex=vertex)
        except ValidationError as exc:  # e.g. --region away from the CMEK key's region
            problems = "; ".join(item["msg"] for item in exc.errors())
            raise ConfigError(f"the submit settings do not fit the config: {problems}") from None


def dataflow_args(config: PipelineConfig, settings: SubmitSettings) -> list[str]:
    """Beam pipeline options for Dataflow: the project image as the workers' SDK container (so
    they import our code), staging and temp under the pipeline root, and the project, region,
    service account, CMEK key, network and worker shape from config."""
    vertex, dataflow = config.vertex, config.vertex.dataflow
    root = settings.pipeline_root.rstrip("/")
    args = [
        "--runner=DataflowRunner",
        f"--project={settings.project}",
        f"--region={settings.region}",
        f"--temp_location={root}/dataflow/temp",
        f"--staging_location={root}/dataflow/staging",
        f"--sdk_container_image={vertex.image}",
        # The SDK is in the image: do not stage (download) another one.
        "--sdk_location=container",
        "--experiments=use_runner_v2",
        f"--machine_type={dataflow.machine_type}",
        f"--max_num_workers={dataflow.max_num_workers}",
    ]
    if dataflow.disk_size_gb:
        args.append(f"--disk_size_gb={dataflow.disk_size_gb}")
    if settings.service_account:
        args.append(f"--service_account_email={settings.service_account}")
    if vertex.encryption_key:
        args.append(f"--dataflow_kms_key={vertex.encryption_key}")
    if vertex.subnetwork:
        # Dataflow infers the network from the subnetwork (a shared VPC's network lives in
        # another project, so naming it here as well would name the wrong one).
        args.append(f"--subnetwork={vertex.subnetwork}")
    elif vertex.network:
        args.append(f"--network={vertex.network.rsplit('/', 1)[-1]}")
    if not dataflow.use_public_ips:
        args.append("--no_use_public_ips")
    return args


def vertex_runtime_config(config: PipelineConfig, settings: SubmitSettings) -> PipelineConfig:
    """The config as it runs on Google Cloud: Beam steps go to `vertex.beam_runner` (Dataflow,
    with `dataflow_args`), in the settings' project and region."""
    config = settings.apply(config)
    if config.vertex.beam_runner == "DataflowRunner":
        beam_args = dataflow_args(config, settings)
    else:
        beam_args = [f"--runner={config.vertex.beam_runner}"]
    return config.model_copy(update={"beam_args": beam_args})


# Pipeline parameters saying where jobs run, declared by a pipeline that submits another one (the
# monitoring pipeline launches training) and filled from the submit settings.
SETTINGS_PARAMETERS = ("project", "region", "pipeline_root", "service_account")
PIPELINES_WITH_SETTINGS = ("monitoring",)


def settings_parameters(settings: SubmitSettings) -> dict[str, str]:
    return {name: getattr(settings, name) or "" for name in SETTINGS_PARAMETERS}


def build_pipeline_job(
    config: PipelineConfig,
    template_path: str | Path,
    settings: SubmitSettings,
    credentials: Any = None,
    run_id: str | None = None,
    kind: str = "training",
    parameters: dict[str, str] | None = None,
) -> Any:
    """An `aiplatform.PipelineJob` for a compiled template (training, prediction or monitoring);
    `parameters` are further pipeline parameters. The monitoring pipeline also gets the settings
    (project, region, pipeline root, service account) as parameters, for the training job it
    may submit and its state in Cloud Storage; `parameters` win. Constructing it sends nothing."""
    from google.cloud import aiplatform

    check_vertex_ready(config)
    check_cloud_inputs(config, kind, parameters or {})
    values = {
        "config_json": vertex_runtime_config(config, settings).to_json(),
        **(settings_parameters(settings) if kind in PIPELINES_WITH_SETTINGS else {}),
        **(parameters or {}),
    }
    display_name = f"{config.name}-{kind}"
    return aiplatform.PipelineJob(
        display_name=display_name,
        template_path=str(template_path),
        job_id=run_id,
        pipeline_root=settings.pipeline_root,
        parameter_values=values,
        project=settings.project,
        location=settings.region,
        credentials=credentials,
        enable_caching=False,
        encryption_spec_key_name=settings.encryption_key,
        labels={"pipeline": display_name},
    )


def experiment_name(config: PipelineConfig, kind: str) -> str:
    """The Vertex AI experiment a pipeline run joins: `vertex.experiment`, else the pipeline's
    name (`<name>-<kind>`, already a valid experiment id: the config name's pattern is
    stricter)."""
    return config.vertex.experiment or f"{config.name}-{kind}"


def describe_job(job: Any, settings: SubmitSettings, experiment: str | None = None) -> str:
    """What `submit` would send, for --dry-run."""
    runtime = job._gca_resource.runtime_config
    parameters = {key: value for key, value in runtime.parameter_values.items()}
    return json.dumps(
        {
            "project": settings.project,
            "location": settings.region,
            "display_name": job._gca_resource.display_name,
            "pipeline_root": runtime.gcs_output_directory,
            "service_account": settings.service_account,
            "network": settings.network,
            "experiment": experiment,
            "encryption_key": job._gca_resource.encryption_spec.kms_key_name or None,
            "parameter_names": sorted(parameters),
            "parameters": {k: v for k, v in parameters.items() if k != "config_json"},
            "pipeline_name": job._gca_resource.pipeline_spec.get("pipelineInfo", {}).get("name"),
            "tasks": sorted(
                job._gca_resource.pipeline_spec.get("root", {}).get("dag", {}).get("tasks", {})
            ),
        },
        indent=2,
    )


def submit(job: Any, settings: SubmitSettings, experiment: str) -> None:
    """Create the pipeline job and add it to `experiment` (`experiment_name`): the SDK gets or
    creates the experiment's metadata context, creates the job, then adds the job's run context
    to the experiment, so its parameters and `Metrics` artifacts show in Vertex AI Experiments."""
    job.submit(
        service_account=settings.service_account, network=settings.network, experiment=experiment
    )
