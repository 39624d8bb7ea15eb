"""Register: find the current champion (the baseline for evaluation) and register a new version,
moving the `champion` alias only when the candidate is blessed.

Local target: `mlops.registry.LocalModelRegistry`. Vertex target: Vertex AI Model Registry, looked
up here and written by GCPC's `ModelUploadOp` in the pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlops.artifacts import (
    EXPLANATIONS_FILE,
    INGEST_SUMMARY_FILE,
    METRICS_FILE,
    MODEL_CARD_FILE,
    MODEL_CARD_HTML,
)
from mlops.config import PipelineConfig
from mlops.io import read_json
from mlops.model_card import build_model_card, model_card_html
from mlops.paths import registry_root
from mlops.registry import CHAMPION, LocalModelRegistry


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
    may have moved the alias since: then the candidate is registered unblessed, with the reason)."""
    evaluation = read_json(Path(evaluation_dir) / METRICS_FILE)
    blessed = bool(evaluation["blessed"])
    registry = LocalModelRegistry(registry_root(config))
    previous = registry.find(config.name, CHAMPION)
    compared_with = evaluation.get("baseline_model_dir") or None
    explanation_file = Path(explanation_dir) / EXPLANATIONS_FILE if explanation_dir else None
    explanations = (
        read_json(explanation_file) if explanation_file and explanation_file.is_file() else None
    )
    ingest_file = Path(data_uri) / INGEST_SUMMARY_FILE if data_uri else None
    data = read_json(ingest_file) if ingest_file and ingest_file.is_file() else {}

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
        card = build_model_card(config, number, evaluation, explanations, data)
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
    )
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
