"""Vertex AI Pipelines jobs: resolve where to submit (flags over config), build the
`aiplatform.PipelineJob` for a compiled template, describe it for a dry run, and submit it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops.config import ConfigError, PipelineConfig


@dataclass(frozen=True)
class SubmitSettings:
    project: str
    region: str
    pipeline_root: str
    service_account: str | None

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
        )


def vertex_runtime_config(config: PipelineConfig, settings: SubmitSettings) -> PipelineConfig:
    """The config as it runs on Google Cloud: Beam steps go to `vertex.beam_runner` (Dataflow)."""
    beam_args = [f"--runner={config.vertex.beam_runner}"]
    if config.vertex.beam_runner == "DataflowRunner":
        beam_args += [
            f"--project={settings.project}",
            f"--region={settings.region}",
            f"--temp_location={settings.pipeline_root.rstrip('/')}/beam-temp",
        ]
        if settings.service_account:
            beam_args.append(f"--service_account_email={settings.service_account}")
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
        labels={"pipeline": display_name},
    )


def describe_job(job: Any, settings: SubmitSettings) -> str:
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
            "parameter_names": sorted(parameters),
            "parameters": {k: v for k, v in parameters.items() if k != "config_json"},
            "pipeline_name": job._gca_resource.pipeline_spec.get("pipelineInfo", {}).get("name"),
            "tasks": sorted(
                job._gca_resource.pipeline_spec.get("root", {}).get("dag", {}).get("tasks", {})
            ),
        },
        indent=2,
    )


def submit(job: Any, settings: SubmitSettings) -> None:
    job.submit(service_account=settings.service_account)
