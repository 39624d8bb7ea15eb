"""Where local state lives under `local.root`: runs, the model registry, endpoints, request logs,
monitoring state and compiled specs. Every local path is computed here, nowhere else (and the
retraining state's Cloud Storage location on Vertex, beside its local twin)."""

from __future__ import annotations

from pathlib import Path

from mlops.artifacts import RETRAIN_STATE_FILE, RUN_MANIFEST_FILE
from mlops.config import PipelineConfig, local_path


def local_root(config: PipelineConfig) -> Path:
    return Path(local_path(config.local.root))


def runs_root(config: PipelineConfig) -> Path:
    return local_root(config) / "runs"


def run_dir(config: PipelineConfig, run_id: str) -> Path:
    return runs_root(config) / run_id


def run_manifest_path(config: PipelineConfig, run_id: str) -> Path:
    return run_dir(config, run_id) / RUN_MANIFEST_FILE


def step_cache_root(config: PipelineConfig) -> Path:
    """Local runs' step cache: one entry per completed step, keyed by what the step read."""
    return local_root(config) / "cache" / config.name


def registry_root(config: PipelineConfig) -> Path:
    return local_root(config) / "registry"


def endpoints_root(config: PipelineConfig) -> Path:
    return local_root(config) / "endpoints"


def request_log_dir(config: PipelineConfig) -> Path:
    return local_root(config) / "request_logs" / config.name


def monitoring_root(config: PipelineConfig) -> Path:
    return local_root(config) / "monitoring" / config.name


def retrain_state_path(config: PipelineConfig) -> Path:
    return monitoring_root(config) / RETRAIN_STATE_FILE


def retrain_state_uri(config: PipelineConfig, target: str, pipeline_root: str = "") -> str:
    """Where the retraining cool-down state is read and written: `monitoring.state_uri` when set;
    on Vertex under the pipeline root (Cloud Storage outlives the step's container); locally
    `retrain_state_path`."""
    if config.monitoring.state_uri:
        return config.monitoring.state_uri
    if target != "vertex":
        return str(retrain_state_path(config))
    if not pipeline_root.startswith("gs://"):
        raise ValueError(
            "on Vertex the retraining cool-down state lives in Cloud Storage: pass the "
            f"pipeline_root parameter (a gs:// URI, got {pipeline_root!r}; `mlops submit` fills "
            "it) or set monitoring.state_uri"
        )
    return f"{pipeline_root.rstrip('/')}/state/{config.name}/{RETRAIN_STATE_FILE}"


def compiled_spec_path(config: PipelineConfig, pipeline: str, target: str) -> Path:
    return local_root(config) / "compiled" / f"{config.name}-{pipeline}-{target}.json"
