"""Vertex AI pipeline schedules: one `aiplatform.PipelineJobSchedule` per config and pipeline,
found by display name and created or updated in place, so that re-running a release points the
same schedule at the new template instead of adding a second one."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlops.config import ConfigError, PipelineConfig
from mlops.vertex_jobs import SubmitSettings, build_pipeline_job

# minute hour day-of-month month day-of-week, optionally after TZ=<zone> or CRON_TZ=<zone>
CRON_PATTERN = re.compile(
    r"^(?:(?:CRON_)?TZ=[A-Za-z0-9_+/-]+ )?(?:[0-9*/,A-Za-z-]+ ){4}[0-9*/,A-Za-z-]+$"
)
# The fields an update replaces; the schedule's name, state and run history stay.
UPDATED_FIELDS = ("cron", "max_concurrent_run_count", "create_pipeline_job_request")


def check_cron(cron: str) -> str:
    if not CRON_PATTERN.match(cron.strip()):
        raise ConfigError(
            f"--cron must be five cron fields (optionally after TZ=<zone>), got {cron!r}"
        )
    return cron.strip()


def schedule_display_name(config: PipelineConfig, kind: str) -> str:
    return f"{config.name}-{kind}-schedule"


@dataclass(frozen=True)
class ScheduleResult:
    action: str  # "created", "updated" or "dry run"
    display_name: str
    resource_name: str
    cron: str
    template: str
    # for a dry run: where the scheduled runs would go and with which parameters
    request: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def build_schedule(
    config: PipelineConfig,
    template: str | Path,
    settings: SubmitSettings,
    kind: str,
    parameters: dict[str, str] | None = None,
    credentials: Any = None,
) -> Any:
    """The `PipelineJobSchedule` for the same PipelineJob `mlops submit` sends (constructing it
    sends nothing; a registry or gs:// template is read)."""
    from google.cloud import aiplatform

    job = build_pipeline_job(
        config, template, settings, credentials=credentials, kind=kind, parameters=parameters
    )
    return aiplatform.PipelineJobSchedule(
        pipeline_job=job,
        display_name=schedule_display_name(config, kind),
        credentials=credentials,
        project=settings.project,
        location=settings.region,
    )


def find_schedule(
    display_name: str, settings: SubmitSettings, credentials: Any = None
) -> Any | None:
    """The newest schedule with this display name that can still be updated, or None."""
    from google.cloud import aiplatform
    from google.cloud.aiplatform.compat.types import schedule as gca_schedule

    usable = {gca_schedule.Schedule.State.ACTIVE, gca_schedule.Schedule.State.PAUSED}
    found = [
        schedule
        for schedule in aiplatform.PipelineJobSchedule.list(
            filter=f'display_name="{display_name}"',
            project=settings.project,
            location=settings.region,
            credentials=credentials,
        )
        if schedule._gca_resource.display_name == display_name
        and schedule._gca_resource.state in usable
    ]
    found.sort(key=lambda s: s._gca_resource.create_time, reverse=True)
    return found[0] if found else None


def upsert_schedule(
    config: PipelineConfig,
    template: str | Path,
    settings: SubmitSettings,
    kind: str,
    cron: str,
    parameters: dict[str, str] | None = None,
    credentials: Any = None,
    max_concurrent_run_count: int = 1,
    dry_run: bool = False,
) -> ScheduleResult:
    """Create the schedule, or point the existing one at `template` with `cron`."""
    from google.protobuf import field_mask_pb2

    cron = check_cron(cron)
    schedule = build_schedule(config, template, settings, kind, parameters, credentials)
    request = schedule._gca_resource.create_pipeline_job_request
    if settings.service_account:
        request.pipeline_job.service_account = settings.service_account
    if settings.network:  # runs peer with the configured VPC, as a submitted job does
        request.pipeline_job.network = settings.network
    name = schedule_display_name(config, kind)
    if dry_run:
        runtime = request.pipeline_job.runtime_config
        sent = {
            "parent": request.parent,
            "service_account": request.pipeline_job.service_account,
            "pipeline_root": runtime.gcs_output_directory,
            "parameter_names": sorted(runtime.parameter_values),
            "parameters": {k: v for k, v in runtime.parameter_values.items() if k != "config_json"},
        }
        return ScheduleResult("dry run", name, "", cron, str(template), sent)
    existing = find_schedule(name, settings, credentials)
    if existing is None:
        schedule.create(
            cron=cron,
            max_concurrent_run_count=max_concurrent_run_count,
            service_account=settings.service_account,
            network=settings.network,
        )
        return ScheduleResult("created", name, schedule._gca_resource.name, cron, str(template))
    resource = existing._gca_resource
    resource.cron = cron
    resource.max_concurrent_run_count = max_concurrent_run_count
    resource.create_pipeline_job_request = request
    existing.api_client.update_schedule(
        schedule=resource, update_mask=field_mask_pb2.FieldMask(paths=list(UPDATED_FIELDS))
    )
    return ScheduleResult("updated", name, resource.name, cron, str(template))
