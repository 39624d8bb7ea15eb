"""Monitor: compare serving data with what the model was trained on and decide whether to retrain.

Local half: `run_monitor_step` reads the local request log's latest window (or a batch file),
compares it with the champion's training statistics (skew), the previous window (drift) and the
schema, using `mlops.monitoring`, and applies the retraining policy. Vertex half: the same step
on a batch file in Cloud Storage against the champion's recorded training data
(`vertex_reference`, read from the Vertex model version by label), with the cool-down state in
Cloud Storage; and `setup_vertex_model_monitoring` keeps one Vertex AI Model Monitoring job per
model (`<name>-monitoring`: created once, updated after) watching the endpoint with the same
thresholds. Launching the retraining is the next step, `components.launch_training`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from mlops.artifacts import DECISION_FILE, METRICS_FILE, REPORT_FILE, SCHEMA_FILE, STATS_FILE
from mlops.config import PipelineConfig
from mlops.io import read_json, write_json_atomic
from mlops.monitoring import (
    decide_retrain,
    load_serving_data,
    read_last_retrain,
    run_monitoring,
)
from mlops.paths import retrain_state_path
from mlops.registry import CHAMPION, resolve_version


def serving_windows(
    config: PipelineConfig, source: str, previous_source: str, now: datetime
) -> tuple[pd.DataFrame, pd.DataFrame | None, str]:
    """(current, previous, description): a directory of request logs is cut into the last
    `monitoring.window_hours` and the window before; a file is one batch (previous optional)."""
    features, label = config.features, config.data.label
    if Path(source).is_dir():
        from mlops.serving.server import read_request_log

        logs = sorted(str(p) for p in Path(source).glob("*.jsonl"))
        if not logs:
            raise FileNotFoundError(f"no request logs (*.jsonl) in {source}")
        window = timedelta(hours=config.monitoring.window_hours)
        current = read_request_log(logs, since=now - window, until=now)
        previous = read_request_log(logs, since=now - 2 * window, until=now - window)
        description = f"request logs in {source}, window of {config.monitoring.window_hours}h"
        return current, (previous if len(previous) else None), description
    current = load_serving_data(source, features=features, label=label)
    previous = (
        load_serving_data(previous_source, features=features, label=label)
        if previous_source
        else None
    )
    return current, previous, f"batch file {source}"


def _mounted(uri: str) -> str:
    # Vertex AI Pipelines mounts Cloud Storage at /gcs/ (Cloud Storage FUSE).
    return "/gcs/" + uri[len("gs://") :] if uri.startswith("gs://") else uri


def training_reference(config: PipelineConfig, model_version: str) -> dict[str, str]:
    """Where the registered version's training statistics, schema, model and evaluation are."""
    version = resolve_version(config, model_version)
    record = version.metadata
    if not record.get("statistics_dir") or not record.get("schema_dir"):
        raise ValueError(
            f"model {config.name!r} version {version.version} has no training statistics in "
            "the registry (registered before monitoring existed?); retrain it first"
        )
    return {
        "model_version": str(version.version),
        "statistics_dir": record["statistics_dir"],
        "schema_dir": record["schema_dir"],
        "model_dir": str(version.model_dir),
        "evaluation_dir": record["evaluation_dir"],
    }


def run_monitor_step(
    config: PipelineConfig,
    source: str,
    output_dir: str | Path,
    previous_source: str = "",
    model_version: str = CHAMPION,
    now: datetime | None = None,
    reference: dict[str, str] | None = None,
    state_uri: str = "",
) -> dict[str, Any]:
    """Monitor serving data against the model's training data: the local registry's
    `model_version`, or an explicit `reference` (statistics_dir, schema_dir, model_dir,
    evaluation_dir; gs:// URIs allowed) on Vertex. The cool-down is read from `state_uri` (a
    local path or gs:// URI; empty: the local state file). Returns {"decision", "findings", ...},
    also written to output_dir/decision.json."""
    now = now or datetime.now(UTC)
    reference = {
        k: _mounted(v) for k, v in (reference or training_reference(config, model_version)).items()
    }
    current, previous, description = serving_windows(
        config, _mounted(source), _mounted(previous_source), now
    )
    baseline = read_json(Path(reference["evaluation_dir"]) / METRICS_FILE)["metrics"].get("overall")
    summary = run_monitoring(
        config,
        training_statistics=str(Path(reference["statistics_dir"]) / STATS_FILE),
        schema=str(Path(reference["schema_dir"]) / SCHEMA_FILE),
        current=current,
        previous=previous,
        model_dir=reference["model_dir"],
        output_dir=str(output_dir),
        baseline_metrics=baseline,
    )
    decision = decide_retrain(
        config,
        summary,
        last_retrain_at=read_last_retrain(state_uri or retrain_state_path(config)),
        now=now,
    )
    abstained = int(current["__abstained__"].sum()) if "__abstained__" in current else 0
    result = {
        "model_version": reference.get("model_version", reference["model_dir"]),
        "source": description,
        "decision": decision,
        "findings": summary.get("findings", []),
        "abstentions": {"count": abstained, "of": len(current)},
        "report": str(Path(output_dir) / REPORT_FILE),
    }
    write_json_atomic(Path(output_dir) / DECISION_FILE, result)
    return result


def monitoring_job_display_name(config: PipelineConfig) -> str:
    return f"{config.name}-monitoring"


def vertex_reference(
    config: PipelineConfig,
    reference_json: str = "",
    training_data_uri: str = "",
    credentials: Any = None,
) -> dict[str, str]:
    """The reference the Vertex monitoring run compares with: `reference_json` when given (an
    override), else the champion's record read from its Vertex model version (found by label).
    `training_data_uri` (override) > the record's training data > a gs:// or bq:// data source."""
    from components.find_champion import REFERENCE_KEYS, champion_reference

    if reference_json:
        reference = json.loads(reference_json)
        missing = [key for key in REFERENCE_KEYS if not reference.get(key)]
        if missing:
            raise ValueError(f"reference_json lacks {missing} (needs {list(REFERENCE_KEYS)})")
    else:
        reference = champion_reference(config, credentials)
    source = config.data.source
    remote = source.startswith(("gs://", "bq://")) and config.data.query is None  # a query isn't
    remote_source = source if remote else ""
    reference["training_data_uri"] = (
        training_data_uri or reference.get("training_data_uri") or remote_source
    )
    return reference


def vertex_endpoint_resource(config: PipelineConfig, credentials: Any = None) -> str:
    """The endpoint to watch: `serving.vertex_endpoint`, else the one endpoint the prediction
    pipeline created (display name `<name>-endpoint`)."""
    if config.serving.vertex_endpoint:
        return config.serving.vertex_endpoint
    from google.cloud import aiplatform

    display_name = f"{config.name}-endpoint"
    endpoints = aiplatform.Endpoint.list(
        filter=f'display_name="{display_name}"',
        project=config.vertex.project,
        location=config.vertex.region,
        credentials=credentials,
    )
    if len(endpoints) != 1:
        found = [e.resource_name for e in endpoints]
        raise LookupError(
            f"expected one Vertex AI endpoint named {display_name!r}, found {found or 'none'}: "
            "run the prediction pipeline first, or pass endpoint_resource / set "
            "serving.vertex_endpoint"
        )
    return endpoints[0].resource_name


def setup_vertex_model_monitoring(
    config: PipelineConfig,
    endpoint_resource_name: str,
    training_data_uri: str,
    credentials: Any = None,
) -> Any:
    """Keep one Vertex AI model deployment monitoring job, `<name>-monitoring`, watching the
    endpoint with this config's skew and drift thresholds, sampling rate, schedule and alert
    e-mails: created on the first run, updated on later ones (found by display name)."""
    from google.cloud import aiplatform
    from google.cloud.aiplatform import model_monitoring

    if not training_data_uri.startswith(("gs://", "bq://")):
        raise ValueError(
            "Vertex AI Model Monitoring compares serving data with training data in Cloud "
            f"Storage or BigQuery, got training_data_uri={training_data_uri!r}: the champion's "
            "upload records it (training_data_uri in its version description), or pass the "
            "training_data_uri parameter"
        )
    monitoring = config.monitoring
    features = config.features.raw_features

    def thresholds(comparator) -> dict[str, float]:  # noqa: ANN001
        result = {}
        for name in features:
            default = (
                comparator.categorical_linf
                if name in config.features.categorical
                else comparator.numeric_jsd
            )
            value = comparator.per_feature.get(name, default)
            if value is not None:
                result[name] = value
        return result

    data_format = "csv" if training_data_uri.endswith(".csv") else "jsonl"
    if training_data_uri.startswith("bq://"):
        data_format = "bigquery"
    objective = model_monitoring.ObjectiveConfig(
        skew_detection_config=model_monitoring.SkewDetectionConfig(
            data_source=training_data_uri,
            skew_thresholds=thresholds(monitoring.skew),
            target_field=config.data.label,
            data_format=data_format,
        ),
        drift_detection_config=model_monitoring.DriftDetectionConfig(
            drift_thresholds=thresholds(monitoring.drift)
        ),
    )
    settings = {
        "logging_sampling_strategy": model_monitoring.RandomSampleConfig(
            sample_rate=monitoring.vertex_sample_rate
        ),
        "schedule_config": model_monitoring.ScheduleConfig(
            monitor_interval=monitoring.vertex_interval_hours
        ),
        "alert_config": model_monitoring.EmailAlertConfig(user_emails=monitoring.alert_emails),
        "objective_configs": objective,
    }
    location = {
        "project": config.vertex.project,
        "location": config.vertex.region,
        "credentials": credentials,
    }
    display_name = monitoring_job_display_name(config)
    existing = [
        job
        for job in aiplatform.ModelDeploymentMonitoringJob.list(
            filter=f'display_name="{display_name}"', **location
        )
        if job.display_name == display_name and job.gca_resource.endpoint == endpoint_resource_name
    ]
    if len(existing) > 1:
        raise LookupError(
            f"{len(existing)} model monitoring jobs named {display_name!r} watch "
            f"{endpoint_resource_name}: {[job.resource_name for job in existing]}; delete all "
            "but one"
        )
    if existing:
        return existing[0].update(**settings)
    return aiplatform.ModelDeploymentMonitoringJob.create(
        display_name=display_name, endpoint=endpoint_resource_name, **settings, **location
    )
