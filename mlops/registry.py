"""Local model registry: numbered versions with metadata, and aliases (e.g. `champion`) that move
atomically. Layout, one directory per model name:

    <root>/<model>/versions/<n>/model/        the SavedModel, copied in
    <root>/<model>/versions/<n>/version.json  metadata: metrics, data, lineage to the run
    <root>/<model>/aliases.json               {"champion": n, ...}, replaced atomically

A lock file serialises writers, so concurrent runs never allocate the same version.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops.config import PipelineConfig
from mlops.io import read_json, write_json_atomic
from mlops.paths import registry_root

CHAMPION = "champion"


class RegistryError(LookupError):
    pass


@dataclass(frozen=True)
class ModelVersion:
    model: str
    version: int
    path: Path  # the version directory
    metadata: dict[str, Any]

    @property
    def model_dir(self) -> Path:
        return self.path / "model"


class LocalModelRegistry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _model_root(self, model: str) -> Path:
        return self.root / model

    @contextlib.contextmanager
    def _locked(self, model: str) -> Iterator[Path]:
        model_root = self._model_root(model)
        (model_root / "versions").mkdir(parents=True, exist_ok=True)
        with open(model_root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield model_root
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def versions(self, model: str) -> list[int]:
        versions_dir = self._model_root(model) / "versions"
        if not versions_dir.is_dir():
            return []
        return sorted(
            int(p.name)
            for p in versions_dir.iterdir()
            if p.name.isdigit() and (p / "version.json").is_file()
        )

    def get(self, model: str, version: int | None = None, alias: str | None = None) -> ModelVersion:
        if (version is None) == (alias is None):
            raise ValueError("give exactly one of version or alias")
        if alias is not None:
            aliases = self.aliases(model)
            if alias not in aliases:
                raise RegistryError(
                    f"model {model!r} has no alias {alias!r} (aliases: {sorted(aliases) or 'none'})"
                )
            version = aliases[alias]
        path = self._model_root(model) / "versions" / str(version)
        if not (path / "version.json").is_file():
            raise RegistryError(
                f"model {model!r} has no version {version} (versions: {self.versions(model)})"
            )
        return ModelVersion(model, int(version), path, read_json(path / "version.json"))

    def find(self, model: str, alias: str) -> ModelVersion | None:
        try:
            return self.get(model, alias=alias)
        except RegistryError:
            return None

    def aliases(self, model: str) -> dict[str, int]:
        path = self._model_root(model) / "aliases.json"
        return read_json(path) if path.is_file() else {}

    def register(
        self,
        model: str,
        model_dir: str | Path,
        metadata: dict[str, Any],
        aliases: list[str] = (),  # type: ignore[assignment]
        alias_guard: Callable[[dict[str, int]], str | None] | None = None,
        documents: Callable[[int], dict[str, str]] | None = None,
        once: bool = False,
    ) -> ModelVersion:
        """Copy `model_dir` in as the next version; then point `aliases` at it.

        With `once`, a version already registered from the same `model_dir` is returned as it is
        (its metadata with `already_registered: True`), decided under the lock, so two runs that
        reuse one cached model never register it twice.

        Under the registry's lock, `alias_guard(current aliases)` may refuse the alias move by
        returning the reason (recorded as `aliases_refused`): a candidate compared with a
        champion that another run has replaced since must not become champion. `documents(version)`
        returns extra files (name -> text, e.g. the model card) written with the version."""
        with self._locked(model) as model_root:
            for number in self.versions(model) if once else []:
                known = self.get(model, version=number)
                if known.metadata.get("source_model_dir") == str(model_dir):
                    metadata = {**known.metadata, "already_registered": True}
                    return ModelVersion(model, known.version, known.path, metadata)
            version = max(self.versions(model), default=0) + 1
            if alias_guard and aliases:
                current_path = model_root / "aliases.json"
                refused = alias_guard(read_json(current_path) if current_path.is_file() else {})
                if refused:
                    metadata = {**metadata, "aliases_refused": refused, "blessed": False}
                    aliases = []
            final = model_root / "versions" / str(version)
            staging = model_root / "versions" / f".staging-{version}"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(model_dir, staging / "model")
            record = {
                **metadata,
                "model": model,
                "version": version,
                "registered_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "source_model_dir": str(model_dir),
            }
            write_json_atomic(staging / "version.json", record)
            for name, text in (documents(version) if documents else {}).items():
                (staging / name).write_text(text, encoding="utf-8")
            staging.rename(final)  # the version appears whole or not at all
            self._set_aliases(model_root, {alias: version for alias in aliases})
        return ModelVersion(model, version, final, record)

    def set_alias(self, model: str, alias: str, version: int) -> None:
        with self._locked(model) as model_root:
            if version not in self.versions(model):
                raise RegistryError(f"model {model!r} has no version {version}")
            self._set_aliases(model_root, {alias: version})

    def _set_aliases(self, model_root: Path, updates: dict[str, int]) -> None:
        if not updates:
            return
        path = model_root / "aliases.json"
        aliases = read_json(path) if path.is_file() else {}
        aliases.update(updates)
        write_json_atomic(path, aliases)

    def describe(self, model: str) -> list[dict[str, Any]]:
        aliases = self.aliases(model)
        rows = []
        for version in self.versions(model):
            record = self.get(model, version=version).metadata
            rows.append(
                {
                    "version": version,
                    "aliases": sorted(a for a, v in aliases.items() if v == version),
                    "blessed": record.get("blessed"),
                    "metrics": record.get("metrics", {}),
                    "run_id": record.get("run_id"),
                    "registered_at": record.get("registered_at"),
                }
            )
        return rows


def dump(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2)


def resolve_version(config: PipelineConfig, ref: str = CHAMPION) -> ModelVersion:
    """A version of the config's model in the local registry, from an alias ("champion") or a
    version number."""
    registry = LocalModelRegistry(registry_root(config))
    ref = str(ref).strip()
    if ref.isdigit():
        return registry.get(config.name, version=int(ref))
    return registry.get(config.name, alias=ref)
