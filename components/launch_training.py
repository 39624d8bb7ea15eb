"""Launch training when monitoring decided to retrain: run the local training pipeline in its own
process (target `local`) or submit the compiled training template to Vertex AI Pipelines (target
`vertex`, with the project, region, pipeline root and service account the monitoring run was
given), and record the launch so the retraining cool-down holds (locally under `local.root`, on
Vertex in Cloud Storage: `mlops.paths.retrain_state_uri`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mlops.config import PipelineConfig
from mlops.monitoring import record_retrain
from mlops.paths import retrain_state_uri, run_manifest_path


def launch_training(
    config: PipelineConfig,
    target: str,
    reasons: list[str],
    template_path: str = "",
    now: datetime | None = None,
    project: str = "",
    region: str = "",
    pipeline_root: str = "",
    service_account: str = "",
    credentials: Any = None,
) -> dict[str, Any]:
    """Run (local) or submit (vertex) the training pipeline on the configured data, and record
    the launch so the cool-down holds. On Vertex, `template_path` is the compiled training
    template (gs:// or an Artifact Registry https://...-kfp.pkg.dev/... URI); project, region,
    pipeline root and service account are explicit (empty: the config's `vertex:` values)."""
    now = now or datetime.now(UTC)
    if target == "local":
        state = retrain_state_uri(config, target)
        launched = {"target": "local", **_run_training_process(config)}
    elif target == "vertex":
        from mlops.vertex_jobs import (
            SubmitSettings,
            build_pipeline_job,
            experiment_name,
            submit,
        )

        if not template_path:
            raise ValueError(
                "launching training on Vertex needs the compiled training template's URI (the "
                "monitoring pipeline's training_template_uri: gs://... or "
                "https://REGION-kfp.pkg.dev/...)"
            )
        settings = SubmitSettings.resolve(
            config, project or None, region or None, pipeline_root or None, service_account or None
        )
        state = retrain_state_uri(config, target, settings.pipeline_root)
        job = build_pipeline_job(config, template_path, settings, credentials=credentials)
        experiment = experiment_name(config, "training")
        submit(job, settings, experiment)
        launched = {
            "target": "vertex",
            "job": job.resource_name,
            "template": template_path,
            "experiment": experiment,
        }
    else:
        raise ValueError(f"target must be 'local' or 'vertex', not {target!r}")
    record_retrain(state, now, reasons)
    return {**launched, "retrain_state": state}


def _run_training_process(config: PipelineConfig) -> dict[str, Any]:
    """Run the local training pipeline in its own process, as `mlops run` would (a KFP task's
    runtime has no pipeline-building DSL, and the training run must not share this step's process
    state), then read that run's manifest by its run id."""
    import os
    import subprocess
    import sys
    import tempfile

    from mlops.io import read_json
    from mlops.runs import new_run_id

    run_id = new_run_id(config)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        handle.write(config.to_json())
    env = {k: v for k, v in os.environ.items() if k != "_KFP_RUNTIME"}
    # Monitoring decided the model must be retrained: train, do not reuse the last run's steps.
    command = [sys.executable, "-m", "pipelines.cli", "run", "--no-cache"]
    command += ["--config-json", handle.name]
    try:
        completed = subprocess.run(
            [*command, "--run-id", run_id],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        os.unlink(handle.name)
    manifest_path = run_manifest_path(config, run_id)
    if not manifest_path.is_file():
        raise RuntimeError(
            f"the training run {run_id} wrote no manifest (exit {completed.returncode}): "
            + completed.stderr[-2000:]
        )
    manifest = read_json(manifest_path)
    if manifest["status"] != "SUCCEEDED":
        failed = [
            f"{name}: {step.get('error', '')}"
            for name, step in manifest["steps"].items()
            if step["status"] == "FAILED"
        ]
        raise RuntimeError(
            f"the training run {run_id} failed: {'; '.join(failed) or manifest.get('error')} "
            f"(manifest {manifest_path})"
        )
    return {
        "status": manifest["status"],
        "run_id": run_id,
        "manifest": str(manifest_path),
        "registered_version": manifest.get("registered_version"),
        "blessed": manifest.get("blessed"),
    }
