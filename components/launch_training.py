"""Launch training when monitoring decided to retrain: run the local training pipeline in its own
process (target `local`) or submit the compiled training template to Vertex AI Pipelines (target
`vertex`), and record the launch so the retraining cool-down holds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mlops.config import PipelineConfig
from mlops.monitoring import record_retrain
from mlops.paths import retrain_state_path, run_manifest_path


def launch_training(
    config: PipelineConfig,
    target: str,
    reasons: list[str],
    template_path: str = "",
    now: datetime | None = None,
) -> dict[str, Any]:
    """Run (local) or submit (vertex) the training pipeline on the configured data, and record
    the launch so the cool-down holds."""
    now = now or datetime.now(UTC)
    if target == "local":
        launched = {"target": "local", **_run_training_process(config)}
    elif target == "vertex":
        from mlops.vertex_jobs import SubmitSettings, build_pipeline_job, submit

        if not template_path:
            raise ValueError("launching training on Vertex needs the compiled template's URI")
        settings = SubmitSettings.resolve(config)
        job = build_pipeline_job(config, template_path, settings)
        submit(job, settings)
        launched = {"target": "vertex", "job": job.resource_name}
    else:
        raise ValueError(f"target must be 'local' or 'vertex', not {target!r}")
    record_retrain(retrain_state_path(config), now, reasons)
    return launched


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
    command = [sys.executable, "-m", "pipelines.cli", "run", "--config-json", handle.name]
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
