"""Monitor: compare serving data with what the model was trained on and decide whether to retrain.

Local half: `run_monitor_step` reads the local request log's latest window (or a batch file),
compares it with the champion's training statistics (skew), the previous window (drift) and the
schema, using `mlops.monitoring`, and applies the retraining policy. Vertex half:
`setup_vertex_model_monitoring` asks Vertex AI Model Monitoring to watch an endpoint with the same
thresholds. Launching the retraining is the next step, `components.launch_training`.
"""

from __future__ import annotations

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
) -> dict[str, Any]:
    """Monitor serving data against the model's training data: the local registry's
    `model_version`, or an explicit `reference` (statistics_dir, schema_dir, model_dir,
    evaluation_dir; gs:// URIs allowed) on Vertex. Returns {"decision", "findings", ...}, also
    written to output_dir/decision.json."""
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
        config, summary, last_retrain_at=read_last_retrain(retrain_state_path(config)), now=now
    )
    result = {
        "model_version": reference.get("model_version", reference["model_dir"]),
        "source": description,
        "decision": decision,
        "findings": summary.get("findings", []),
        "report": str(Path(output_dir) / REPORT_FILE),
    }
    write_json_atomic(Path(output_dir) / DECISION_FILE, result)
    return result


def setup_vertex_model_monitoring(
    config: PipelineConfig,
    endpoint_resource_name: str,
    training_data_uri: str,
    credentials: Any = None,
) -> Any:
    """Create a Vertex AI model deployment monitoring job on the endpoint with this config's skew
    and drift thresholds, sampling rate, schedule and alert e-mails."""
    from google.cloud import aiplatform
    from google.cloud.aiplatform import model_monitoring

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
    return aiplatform.ModelDeploymentMonitoringJob.create(
        display_name=f"{config.name}-monitoring",
        endpoint=endpoint_resource_name,
        logging_sampling_strategy=model_monitoring.RandomSampleConfig(
            sample_rate=monitoring.vertex_sample_rate
        ),
        schedule_config=model_monitoring.ScheduleConfig(
            monitor_interval=monitoring.vertex_interval_hours
        ),
        alert_config=model_monitoring.EmailAlertConfig(user_emails=monitoring.alert_emails),
        objective_configs=objective,
        project=config.vertex.project,
        location=config.vertex.region,
        credentials=credentials,
    )
