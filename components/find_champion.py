"""Find the champion: the registered model version aliased `champion`, the baseline the candidate
is evaluated against. Local target: `mlops.registry.LocalModelRegistry`. Vertex target: Vertex AI
Model Registry."""

from __future__ import annotations

from typing import Any

from mlops.config import PipelineConfig
from mlops.paths import registry_root
from mlops.registry import CHAMPION, LocalModelRegistry


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
