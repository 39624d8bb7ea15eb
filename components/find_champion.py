"""Find the champion: the registered model version aliased `champion`, the baseline the candidate
is evaluated against. Local target: `mlops.registry.LocalModelRegistry`. Vertex target: Vertex AI
Model Registry, where our models are found by their label `mlops_model=<config name>` (or by
`vertex.parent_model` when the config names one), never by display name."""

from __future__ import annotations

import json
import re
from typing import Any

from mlops.config import PipelineConfig
from mlops.paths import registry_root
from mlops.registry import CHAMPION, LocalModelRegistry

# The label every model version this template uploads carries; its value is the config's name.
# (An underscore key: Vertex filters read `labels.<key>`, and a key without `-` needs no quoting.)
MODEL_LABEL = "mlops_model"
# Keys of the JSON a version's `version_description` holds: where monitoring finds what the
# version was trained on (see components.register.vertex_version_record).
REFERENCE_KEYS = ("statistics_dir", "schema_dir", "model_dir", "evaluation_dir")


class VertexModelLookupError(LookupError):
    """The label matches more than one Vertex model, or a version lacks its training record."""


def find_champion_local(config: PipelineConfig) -> str:
    """The champion's SavedModel directory, or "" when no model is blessed yet."""
    champion = LocalModelRegistry(registry_root(config)).find(config.name, CHAMPION)
    return str(champion.model_dir) if champion else ""


def vertex_model_display_name(config: PipelineConfig) -> str:
    return config.vertex.model_display_name or config.name


def label_value(text: str) -> str:
    """`text` as a Vertex label value: lowercase letters, digits, `_` and `-`, at most 63
    characters (anything else becomes `-`)."""
    value = re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]
    return value or "-"


def model_label_filter(config: PipelineConfig) -> str:
    return f'labels.{MODEL_LABEL}="{label_value(config.name)}"'


def _location(config: PipelineConfig, credentials: Any) -> dict[str, Any]:
    vertex = config.vertex
    return {"project": vertex.project, "location": vertex.region, "credentials": credentials}


def vertex_parent_model(config: PipelineConfig, credentials: Any = None) -> str:
    """The resource name of the Vertex model new versions go under: `vertex.parent_model` when
    set, else the one model labelled `mlops_model=<name>`, or "" when there is none yet (the
    first upload creates it). More than one labelled model is an error, not a guess."""
    if config.vertex.parent_model:
        return config.vertex.parent_model
    from google.cloud import aiplatform

    models = aiplatform.Model.list(
        filter=model_label_filter(config), **_location(config, credentials)
    )
    parents = sorted({model.resource_name for model in models})
    if len(parents) > 1:
        raise VertexModelLookupError(
            f"{len(parents)} Vertex AI models carry the label {MODEL_LABEL}="
            f"{label_value(config.name)}: {parents}. Set vertex.parent_model to the one new "
            "versions go under, or remove the label from the others"
        )
    return parents[0] if parents else ""


def vertex_champion(config: PipelineConfig, credentials: Any = None) -> Any:
    """The `aiplatform.Model` version aliased `champion` under the parent model, or None."""
    from google.cloud import aiplatform

    parent = vertex_parent_model(config, credentials)
    if not parent:
        return None
    try:
        return aiplatform.Model(model_name=f"{parent}@{CHAMPION}", **_location(config, credentials))
    except Exception as exc:  # NotFound when no version carries the alias yet
        if type(exc).__name__ == "NotFound":
            return None
        raise


def find_champion_vertex(config: PipelineConfig, credentials: Any = None) -> str:
    """The artifact URI (SavedModel) of the Vertex AI model version aliased `champion`, or ""."""
    champion = vertex_champion(config, credentials)
    return (champion.uri or "") if champion is not None else ""


def champion_reference(config: PipelineConfig, credentials: Any = None) -> dict[str, str]:
    """Where the Vertex champion's training statistics, schema, model and evaluation are (gs://
    URIs), and its training data, as its upload recorded them in the version's description."""
    champion = vertex_champion(config, credentials)
    if champion is None:
        raise VertexModelLookupError(
            f"no Vertex AI model version of {config.name!r} is aliased {CHAMPION!r} (label "
            f"{MODEL_LABEL}={label_value(config.name)}): run the training pipeline first, or "
            "pass reference_json"
        )
    return reference_from_version(champion)


def reference_from_version(model: Any) -> dict[str, str]:
    """The training record (JSON in `version_description`) of an `aiplatform.Model` version."""
    name = f"{model.resource_name}@{model.version_id}"
    try:
        record = json.loads(model.version_description or "")
    except json.JSONDecodeError:
        record = None
    if not isinstance(record, dict) or any(not record.get(k) for k in REFERENCE_KEYS):
        raise VertexModelLookupError(
            f"Vertex AI model version {name} has no training record in its version description "
            f"(JSON with {list(REFERENCE_KEYS)}); was it uploaded by this template's training "
            "pipeline? Retrain, or pass reference_json"
        )
    return {
        **{key: str(value) for key, value in record.items() if isinstance(value, str)},
        "model_version": str(model.version_id),
        "model_resource": name,
    }
