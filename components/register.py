"""Register: find the current champion (the baseline for evaluation) and register a new version,
moving the `champion` alias only when the candidate is blessed.

Local target: `mlops.registry.LocalModelRegistry`. Vertex target: Vertex AI Model Registry, looked
up here and written by GCPC's `ModelUploadOp` in the pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlops.artifacts import METRICS_FILE
from mlops.config import PipelineConfig
from mlops.io import read_json
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
