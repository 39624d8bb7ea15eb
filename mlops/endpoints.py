"""Local endpoints: which registered model versions serve, with what share of traffic.

An endpoint record is one JSON file, replaced atomically, that the local prediction server reads:

    {"name": "penguins", "traffic": {"3": 90, "4": 10}, "models": {"3": ".../model", ...},
     "updated_at": "...", "history": [{"at": ..., "traffic": {...}}, ...]}
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mlops.io import read_json, write_json_atomic
from mlops.registry import LocalModelRegistry


class EndpointError(LookupError):
    pass


class LocalEndpoints:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, name: str) -> Path:
        return self.root / f"{name}.json"

    def get(self, name: str) -> dict[str, Any]:
        path = self.path(name)
        if not path.is_file():
            known = sorted(p.stem for p in self.root.glob("*.json")) if self.root.is_dir() else []
            raise EndpointError(
                f"no endpoint {name!r} in {self.root} (endpoints: {known or 'none'}); "
                "deploy a model first with `mlops deploy`"
            )
        return read_json(path)

    def find(self, name: str) -> dict[str, Any] | None:
        try:
            return self.get(name)
        except EndpointError:
            return None

    def deploy(
        self,
        name: str,
        registry: LocalModelRegistry,
        model: str,
        version: int,
        canary_percent: int = 0,
    ) -> dict[str, Any]:
        """Route traffic to `version`: all of it, or `canary_percent` while the version that
        served most traffic so far keeps the rest."""
        if not 0 <= canary_percent <= 100:
            raise ValueError(f"canary_percent must be within 0..100, got {canary_percent}")
        new = registry.get(model, version=version)
        record = self.find(name) or {"name": name, "models": {}, "traffic": {}, "history": []}
        current = max(record["traffic"].items(), key=lambda kv: kv[1], default=(None, 0))[0]
        if current is not None and current != str(version) and 0 < canary_percent < 100:
            traffic = {current: 100 - canary_percent, str(version): canary_percent}
        else:
            traffic = {str(version): 100}
        models = {v: record["models"][v] for v in traffic if v in record["models"]}
        models[str(version)] = str(new.model_dir)
        record.update(
            {
                "model": model,
                "traffic": traffic,
                "models": models,
                "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
        record["history"] = [*record["history"], {"at": record["updated_at"], "traffic": traffic}][
            -50:
        ]
        write_json_atomic(self.path(name), record)
        return record
