"""Register: find the current champion (the baseline for evaluation) and register a new version,
moving the `champion` alias only when the candidate is blessed.

Local target: `mlops.registry.LocalModelRegistry`. Vertex target: Vertex AI Model Registry, looked
up here and written by GCPC's `ModelUploadOp` in the pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.evaluate import METRICS_FILE
from mlops.config import PipelineConfig
from mlops.io import read_json
from mlops.registry import CHAMPION, LocalModelRegistry


def registry_root(config: PipelineConfig) -> Path:
    return Path(config.local.root) / "registry"


def find_champion_local(config: PipelineConfig) -> str:
    """The champion's SavedModel directory, or "" when no model is blessed yet."""
    champion = LocalModelRegistry(registry_root(config)).find(config.name, CHAMPION)
    return str(champion.model_dir) if champion else ""


def vertex_model_display_name(config: PipelineConfig) -> str:
    return config.vertex.model_display_name or config.name


def find_champion_vertex(config: PipelineConfig, credentials: Any = None) -> str:
    """The artifact URI of the Vertex AI model version aliased `champion`, or ""."""
    from google.cloud import aiplatform

    vertex = config.vertex
    models = aiplatform.Model.list(
        filter=f'display_name="{vertex_model_display_name(config)}"',
        project=vertex.project,
        location=vertex.region,
        credentials=credentials,
    )
    if not models:
        return ""
    parent = models[0].resource_name
    try:
        champion = aiplatform.Model(
            model_name=f"{parent}@{CHAMPION}",
            project=vertex.project,
            location=vertex.region,
            credentials=credentials,
        )
    except Exception as exc:  # NotFound when no version carries the alias yet
        if type(exc).__name__ == "NotFound":
            return ""
        raise
    return champion.uri or ""


def run_register_local(
    config: PipelineConfig,
    model_dir: str | Path,
    evaluation_dir: str | Path,
    run_id: str,
    data_uri: str = "",
    statistics_dir: str | Path = "",
    schema_dir: str | Path = "",
) -> dict[str, Any]:
    """Register the candidate as a new version; alias it `champion` only if evaluation blessed it."""
    evaluation = read_json(Path(evaluation_dir) / METRICS_FILE)
    blessed = bool(evaluation["blessed"])
    registry = LocalModelRegistry(registry_root(config))
    previous = registry.find(config.name, CHAMPION)
    version = registry.register(
        config.name,
        model_dir,
        metadata={
            "blessed": blessed,
            "metrics": evaluation["metrics"].get("overall", {}),
            "evaluation_failures": evaluation["failures"],
            "baseline_version": previous.version if previous else None,
            "run_id": run_id,
            "data_source": config.data.source,
            "data_uri": data_uri,
            "evaluation_dir": str(evaluation_dir),
            # What monitoring compares serving data with (training statistics and schema).
            "statistics_dir": str(statistics_dir),
            "schema_dir": str(schema_dir),
            "config": config.model_dump(mode="json"),
        },
        aliases=[CHAMPION] if blessed else [],
    )
    return {
        "model": config.name,
        "version": version.version,
        "blessed": blessed,
        "champion": version.version if blessed else (previous.version if previous else None),
        "path": str(version.path),
    }
