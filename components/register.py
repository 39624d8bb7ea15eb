"""Register: find the current champion (the baseline for evaluation) and register a new version,
moving the `champion` alias only when the candidate is blessed.

Local target: `mlops.registry.LocalModelRegistry`. Vertex target: Vertex AI Model Registry through
`aiplatform.Model.upload`: the version goes under the parent model found by label (or a new
model when there is none), carries the labels the lookups use and the `champion` alias, and its
`version_description` is a JSON record of what monitoring needs (statistics, schema, evaluation,
model and training data URIs). Its model card (JSON and HTML) is written to Cloud Storage as the
step's `model_card` HTML artifact (shown in the Vertex pipeline UI) and referenced from the
version's description and version record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components.find_champion import MODEL_LABEL, label_value
from mlops.artifacts import (
    EXPLANATIONS_FILE,
    INGEST_SUMMARY_FILE,
    METRICS_FILE,
    MODEL_CARD_FILE,
    MODEL_CARD_HTML,
    MODEL_INFO_FILE,
    model_extra_path,
    read_split,
)
from mlops.config import PipelineConfig
from mlops.io import open_uri, read_json
from mlops.model_card import build_model_card, model_card_html
from mlops.paths import registry_root
from mlops.registry import CHAMPION, LocalModelRegistry


def card_inputs(
    evaluation_dir: str | Path,
    explanation_dir: str | Path = "",
    data_dir: str | Path = "",
    model_dir: str | Path = "",
) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any], dict[str, Any] | None]:
    """What a model card is built from: the evaluation summary, the explanations, the ingest
    summary and what training recorded beside the model (the last three optional)."""
    evaluation = read_json(Path(evaluation_dir) / METRICS_FILE)
    explanation_file = Path(explanation_dir) / EXPLANATIONS_FILE if explanation_dir else None
    explanations = (
        read_json(explanation_file) if explanation_file and explanation_file.is_file() else None
    )
    ingest_file = Path(data_dir) / INGEST_SUMMARY_FILE if data_dir else None
    data = read_json(ingest_file) if ingest_file and ingest_file.is_file() else {}
    info_file = model_extra_path(model_dir, MODEL_INFO_FILE) if model_dir else None
    model_info = read_json(info_file) if info_file and info_file.is_file() else None
    return evaluation, explanations, data, model_info


def run_register_local(
    config: PipelineConfig,
    model_dir: str | Path,
    evaluation_dir: str | Path,
    run_id: str,
    data_uri: str = "",
    statistics_dir: str | Path = "",
    schema_dir: str | Path = "",
    explanation_dir: str | Path = "",
) -> dict[str, Any]:
    """Register the candidate as a new version with its model card; alias it `champion` only if
    evaluation blessed it against the version that is champion at this moment (a concurrent run
    may have moved the alias since: then the candidate is registered unblessed, with the reason).
    A model registered before (the same model directory) is returned as it is, not registered
    again."""
    evaluation, explanations, data, model_info = card_inputs(
        evaluation_dir, explanation_dir, data_uri, model_dir
    )
    blessed = bool(evaluation["blessed"])
    registry = LocalModelRegistry(registry_root(config))
    previous = registry.find(config.name, CHAMPION)
    compared_with = evaluation.get("baseline_model_dir") or None

    def champion_unchanged(aliases: dict[str, int]) -> str | None:
        current = aliases.get(CHAMPION)
        current_dir = str(registry.get(config.name, version=current).model_dir) if current else None
        if current_dir != compared_with:
            return (
                f"evaluated against {compared_with or 'no champion'}, but the champion is now "
                f"{current_dir or 'none'} (another run registered meanwhile): rerun to compare"
            )
        return None

    def documents(number: int) -> dict[str, str]:
        card = build_model_card(config, number, evaluation, explanations, data, model_info)
        return {MODEL_CARD_FILE: json.dumps(card, indent=2), MODEL_CARD_HTML: model_card_html(card)}

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
        alias_guard=champion_unchanged,
        documents=documents,
        # A rerun that reused an earlier run's model (a cached train step) registers nothing new:
        # that model is a version already, and its champion decision was made when it registered.
        once=True,
    )
    if version.metadata.get("already_registered"):
        return {
            "model": config.name,
            "version": version.version,
            "blessed": bool(version.metadata.get("blessed")),
            "champion": previous.version if previous else None,
            "path": str(version.path),
            "model_card": str(version.path / MODEL_CARD_HTML),
            "already_registered": True,
        }
    refused = version.metadata.get("aliases_refused")
    champion = registry.find(config.name, CHAMPION)
    return {
        "model": config.name,
        "version": version.version,
        "blessed": blessed and not refused,
        "champion": champion.version if champion else None,
        "path": str(version.path),
        "model_card": str(version.path / MODEL_CARD_HTML),
        **({"champion_refused": refused} if refused else {}),
    }


# Where the register step writes the training split for Vertex AI Model Monitoring's skew
# baseline when the configured source is not in Cloud Storage or BigQuery.
TRAINING_DATA_FILE = "train.csv"
MONITORABLE_SOURCES = ("gs://", "bq://")


def write_vertex_model_card(
    config: PipelineConfig,
    run_id: str,
    html_uri: str,
    evaluation_dir: str | Path,
    explanation_dir: str | Path = "",
    data_dir: str | Path = "",
    model_dir: str | Path = "",
) -> dict[str, str]:
    """Write the model card as HTML at `html_uri` (the step's HTML artifact) and as JSON beside it;
    returns {"model_card_html": uri, "model_card_json": uri} for the version record. The version
    number Vertex assigns is known only after the upload, so the card names the run."""
    card = build_model_card(
        config, run_id, *card_inputs(evaluation_dir, explanation_dir, data_dir, model_dir)
    )
    uris = {"model_card_html": html_uri, "model_card_json": f"{html_uri}.json"}
    # A Cloud Storage object appears whole or not at all, so these writes need no temp file.
    for key, text in (
        ("model_card_json", json.dumps(card, indent=2)),
        ("model_card_html", model_card_html(card)),
    ):
        with open_uri(uris[key], "wb") as out:
            out.write(text.encode("utf-8"))
    return uris


def vertex_labels(config: PipelineConfig, run_id: str) -> dict[str, str]:
    """Labels of every uploaded version: `mlops_model` finds the model (champion, parent)."""
    return {MODEL_LABEL: label_value(config.name), "mlops_run": label_value(run_id)}


def monitoring_training_data(
    config: PipelineConfig, dataset_dir: str | Path, output_dir: str | Path, output_uri: str
) -> str:
    """The training data Vertex AI Model Monitoring compares serving data with: the configured
    source when Vertex can read it (gs:// CSV or JSON Lines, bq://), else the ingested train split
    written as CSV to output_dir (returned as output_uri/train.csv)."""
    source = config.data.source
    bigquery_table = source.startswith("bq://") and config.data.query is None  # not a query
    if bigquery_table or (source.startswith("gs://") and source.endswith((".csv", ".jsonl"))):
        return source
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    read_split(dataset_dir, "train").to_csv(output_dir / TRAINING_DATA_FILE, index=False)
    return f"{output_uri.rstrip('/')}/{TRAINING_DATA_FILE}"


def vertex_version_record(
    config: PipelineConfig,
    run_id: str,
    model_uri: str,
    evaluation_uri: str,
    statistics_uri: str,
    schema_uri: str,
    training_data_uri: str,
    model_card: dict[str, str] | None = None,
) -> dict[str, str]:
    """What the version's `version_description` holds (as JSON), read back by
    `components.find_champion.reference_from_version` for monitoring; with the model card's
    URIs (`write_vertex_model_card`) when given."""
    return {
        **(model_card or {}),
        "statistics_dir": statistics_uri,
        "schema_dir": schema_uri,
        "model_dir": model_uri,
        "evaluation_dir": evaluation_uri,
        "data_source": config.data.source,
        "training_data_uri": training_data_uri,
        "run_id": run_id,
    }


def _description(config: PipelineConfig, record: dict[str, str]) -> str:
    card = record.get("model_card_html")
    return config.framing.objective + (f" Model card: {card}" if card else "")


def run_register_vertex(
    config: PipelineConfig,
    parent_model: str,
    container_spec: dict[str, Any],
    record: dict[str, str],
    credentials: Any = None,
    explanation_baseline: dict[str, Any] | None = None,
) -> Any:
    """Upload the blessed model as a new version of `parent_model` ("" creates the model), the
    default version, aliased `champion`, labelled, with `record` as its version description and,
    given the explanation baseline, the explanation spec the endpoint's `explain` uses."""
    from google.cloud import aiplatform

    from mlops.attributions import vertex_explanation

    explanation = {}
    if explanation_baseline is not None:
        metadata, parameters = vertex_explanation(config, explanation_baseline)
        explanation = {"explanation_metadata": metadata, "explanation_parameters": parameters}

    vertex = config.vertex
    ports = [port["containerPort"] for port in container_spec.get("ports", [])]
    return aiplatform.Model.upload(
        display_name=vertex.model_display_name or config.name,
        artifact_uri=record["model_dir"],
        parent_model=parent_model or None,
        is_default_version=True,
        version_aliases=[CHAMPION],
        version_description=json.dumps(record, sort_keys=True),
        description=_description(config, record),
        labels=vertex_labels(config, record["run_id"]),
        serving_container_image_uri=container_spec["imageUri"],
        serving_container_command=container_spec.get("command"),
        serving_container_args=container_spec.get("args"),
        serving_container_health_route=container_spec.get("healthRoute"),
        serving_container_predict_route=container_spec.get("predictRoute"),
        serving_container_ports=ports or None,
        **explanation,
        encryption_spec_key_name=vertex.encryption_key,
        project=vertex.project,
        location=vertex.region,
        credentials=credentials,
    )
