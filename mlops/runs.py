"""Run identity: every local run writes under its own id, `<local.root>/runs/<run id>/`."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops.artifacts import RUN_MANIFEST_FILE
from mlops.config import PipelineConfig
from mlops.paths import runs_root, step_cache_root


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


@dataclass
class PruneResult:
    removed: list[str] = field(default_factory=list)  # run ids, oldest first
    kept: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    cache_entries_removed: int = 0


def _size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # removed meanwhile
                total += (Path(root) / name).lstat().st_size
    return total


class RunInProgress(ValueError):
    """Pruning waits for running runs: one may be reading an older run's cached outputs."""


def prune_runs(config: PipelineConfig, keep: int) -> PruneResult:
    """Delete the config's local runs except the newest `keep`, and the step-cache entries whose
    outputs lived in them, so that disk use stops growing with every run. Registered models are
    copies (the registry keeps them), so no model is lost; a later run recomputes the steps
    whose cached outputs were removed. Refused while a run of the config is RUNNING (mark dead
    ones first: `pipelines.local.mark_interrupted_runs`), since it may be reusing outputs of
    any older run.

    A run is first renamed out of the runs folder (one atomic step, after which it is no longer
    listed or reused), then deleted, so an interruption never leaves half a run behind."""
    if keep < 1:
        raise ValueError(f"keep at least 1 run (got {keep}): the newest run is never pruned")
    result = PruneResult()
    runs = list_runs(config)
    running = [run["run_id"] for run in runs if run.get("status") == "RUNNING"]
    if running:
        raise RunInProgress(
            f"run {running[0]} is in progress and may be reusing an older run's outputs; prune "
            "when it has finished"
        )
    result.kept = [run["run_id"] for run in runs[-keep:]]
    root = runs_root(config)
    for run in runs[:-keep]:
        run_id = run["run_id"]
        path = root / run_id
        trash = root / f".pruning-{run_id}"
        result.bytes_freed += _size(path)
        path.rename(trash)
        shutil.rmtree(trash)
        result.removed.append(run_id)
    # A leftover of an interrupted prune.
    for trash in root.glob(f".pruning-{config.name}-*") if root.is_dir() else []:
        shutil.rmtree(trash, ignore_errors=True)
    removed = set(result.removed)
    cache = step_cache_root(config)
    for entry_path in sorted(cache.glob("*.json")) if cache.is_dir() else []:
        try:
            run_id = json.loads(entry_path.read_text()).get("run_id")
        except (OSError, ValueError, AttributeError):
            # Unreadable: the cache ignores it too; it holds nothing to keep.
            entry_path.unlink(missing_ok=True)
            result.cache_entries_removed += 1
            continue
        if run_id in removed:
            entry_path.unlink(missing_ok=True)
            result.cache_entries_removed += 1
    return result
