"""Run identity: every local run writes under its own id, `<local.root>/runs/<run id>/`."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

from mlops.artifacts import RUN_MANIFEST_FILE
from mlops.config import PipelineConfig
from mlops.paths import runs_root


def new_run_id(config: PipelineConfig) -> str:
    """`<name>-<UTC date>-<time>-<4 hex>`: sortable by start time, unique across concurrent runs."""
    return f"{config.name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"


def config_hash(config: PipelineConfig) -> str:
    """A short fingerprint of everything the config says (two runs with the same hash ran the
    same pipeline settings)."""
    return "sha256:" + hashlib.sha256(config.to_json().encode()).hexdigest()[:16]


def list_runs(config: PipelineConfig) -> list[dict[str, Any]]:
    """The config's local runs, oldest first, each as its run.json manifest (unreadable or
    missing manifests are listed with status UNKNOWN)."""
    runs = []
    root = runs_root(config)
    for path in sorted(root.glob(f"{config.name}-*")) if root.is_dir() else []:
        manifest_path = path / RUN_MANIFEST_FILE
        try:
            runs.append(json.loads(manifest_path.read_text()))
        except (OSError, ValueError):
            runs.append({"run_id": path.name, "status": "UNKNOWN", "run_dir": str(path)})
    return runs


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(_flatten(inner, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def compare_runs(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """What differs between two run manifests: config keys, data, metrics, gates and outcome."""
    config_a = _flatten(first.get("config") or {})
    config_b = _flatten(second.get("config") or {})
    return {
        "runs": [first.get("run_id"), second.get("run_id")],
        "config": {
            key: [config_a.get(key), config_b.get(key)]
            for key in sorted(set(config_a) | set(config_b))
            if config_a.get(key) != config_b.get(key)
        },
        "data_fingerprint": [first.get("data_fingerprint"), second.get("data_fingerprint")],
        "metrics": {
            key: [(first.get("metrics") or {}).get(key), (second.get("metrics") or {}).get(key)]
            for key in sorted(set(first.get("metrics") or {}) | set(second.get("metrics") or {}))
        },
        "blessed": [first.get("blessed"), second.get("blessed")],
        "registered_version": [first.get("registered_version"), second.get("registered_version")],
    }
