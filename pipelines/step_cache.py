"""Resume for local runs: a step that completed before for the same inputs is reused, not rerun.

kfp.local (2.17) has a task cache (`kfp.local.cache.LocalCache`, consulted and filled by
`kfp.local.orchestrator.task_executor.execute_single_task`), but its key cannot hit across our
runs: it hashes every task argument, and `step_log` names the run's own folder; `config_json` is
the whole config, so a changed training parameter would invalidate ingest too; and it ignores
the code the step imports and the data file the config names. `StepCache` keeps kfp's mechanism
(where it asks, what it stores: output artifacts by URI) and replaces the key and the entry:

* key = the step, kfp's own command, image and arguments, minus `step_log`, with `config_json`
  cut to the config sections the step reads (`STEP_CONFIG_SECTIONS`; every other step keys on the
  whole config), plus the content of the files the config points the step at (data.source,
  validation.schema_path) and the code version (the source of the step's module and everything
  it imports from this repository, and requirements.lock);
* the entry is written last, after the task succeeded and its step record was logged, by a temp
  file renamed into place; it lists each output file's size and mtime, and an entry whose outputs
  changed since (or that does not parse) is ignored and the step reruns;
* a hit appends a CACHED record (with the run the outputs come from) to this run's step log, so
  run.json and the terminal say which steps were reused.

Outputs are reused where they are (the earlier run's artifact folder); nothing is copied. Runs
are never rewritten (a run id must be new), so a listed output only changes by damage, which the
size/mtime check catches. Only the training pipeline is cached; in it, `find_champion` and
`register` read and move shared registry state, so they run every time (the pipeline disables
caching on them); register re-checks idempotently (a model registered before is not registered
again).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from kfp.local import cache as kfp_cache

from mlops.config import REPO_ROOT, local_path
from mlops.io import write_json_atomic
from mlops.steps import append_step_record, read_step_log
from mlops.tabular import PACKAGED_PENGUINS

ENTRY_FORMAT = 1
CACHED = "CACHED"
# The config sections a step reads (checked against its code by tests/test_resume.py); a step
# not listed keys on the whole config. train is not listed: the model embeds the whole config,
# which serving reads back.
STEP_CONFIG_SECTIONS = {
    "ingest": ("data", "features", "privacy", "vertex", "beam_args"),  # vertex.project: DLP
    "validate_data": ("data", "features", "validation", "beam_args"),
    "transform": ("data", "features", "beam_args"),
}
# The module holding each cacheable step's logic (its code version is this module's source and
# what it imports from the repository).
STEP_MODULES = {
    "ingest": "components.ingest",
    "validate_data": "components.validate",
    "transform": "components.transform",
    "tune": "components.tune",
    "train": "components.train",
    "evaluate": "components.evaluate",
    "explain": "components.explain",
    "report": "components.report",
}
_UNCACHEABLE = "uncacheable:"
_REPOSITORY_PACKAGES = ("mlops", "components")


class UncacheableInput(ValueError):
    """The step reads something whose content cannot be checked here (a remote data source)."""


def step_of_component(component_name: str) -> str:
    """`comp-validate-data` -> `validate_data` (kfp names a component after its function)."""
    return component_name.removeprefix("comp-").replace("-", "_")


def _module_file(name: str) -> Path | None:
    base = REPO_ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] in _REPOSITORY_PACKAGES}


def code_files(module: str) -> list[Path]:
    """The module's file and every repository module it imports, directly or not."""
    seen: dict[str, Path] = {}
    pending = [module]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None:
            continue
        seen[name] = path
        parts = name.split(".")
        pending.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # package __init__s
        pending.extend(_imported_modules(path))
    return sorted(set(seen.values()))


def code_version(step: str) -> str:
    digest = hashlib.sha256()
    module = STEP_MODULES.get(step)
    files = [*code_files(module)] if module else []
    files += [REPO_ROOT / "requirements.lock", REPO_ROOT / "pyproject.toml"]
    for path in files:
        if path.is_file():
            digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_fingerprint(value: str) -> str:
    """The content of a file the config names, as a digest (a SQLite database's file too); the
    package's version for the packaged penguins; UncacheableInput for a URI (its content is not
    checked from here)."""
    if value == PACKAGED_PENGUINS:
        return f"{PACKAGED_PENGUINS}=={importlib_metadata.version(PACKAGED_PENGUINS)}"
    if value.lower().startswith("sqlite:///"):  # a SQLite database is a file: its content counts
        from sqlalchemy.engine import make_url

        return source_fingerprint(make_url(value).database or "")
    if "://" in value:
        raise UncacheableInput(f"{value} is remote")
    path = Path(local_path(value))
    if path.is_file():
        return _file_digest(path)
    if path.is_dir():
        return hashlib.sha256(
            "".join(
                f"{p.relative_to(path)}:{_file_digest(p)}\n"
                for p in sorted(path.rglob("*"))
                if p.is_file()
            ).encode()
        ).hexdigest()
    return "missing"  # the step reports it; a later run with the file has another key


def referenced_files(step: str, config: dict[str, Any]) -> dict[str, str]:
    """Fingerprints of the files the config points `step` at."""
    files = {}
    if step == "ingest":
        files["data.source"] = source_fingerprint(config["data"]["source"])
    if step == "validate_data" and config["validation"].get("schema_path"):
        files["validation.schema_path"] = source_fingerprint(config["validation"]["schema_path"])
    return files


def step_config(step: str, config_json: str) -> dict[str, Any]:
    config = json.loads(config_json)
    sections = STEP_CONFIG_SECTIONS.get(step)
    return config if sections is None else {name: config.get(name) for name in sections}


def output_fingerprint(uri: str) -> list[list[Any]] | None:
    """Each file of an output (a file or a folder) with its size and mtime; None if it does not
    exist (an output a step leaves unwritten, e.g. a Metrics artifact)."""
    path = Path(uri)
    if path.is_file():
        stat = path.stat()
        return [[".", stat.st_size, stat.st_mtime_ns]]
    if not path.is_dir():
        return None
    rows = []
    for child in sorted(path.rglob("*")):
        if child.is_file():
            stat = child.stat()
            rows.append([str(child.relative_to(path)), stat.st_size, stat.st_mtime_ns])
    return rows


def _artifacts(outputs: dict[str, Any]) -> dict[str, Any]:
    from kfp import dsl

    found = {}
    for name, value in outputs.items():
        values = value if isinstance(value, list) else [value]
        for index, item in enumerate(values):
            if isinstance(item, dsl.Artifact) and "://" not in item.uri:
                found[f"{name}[{index}]"] = item.uri
    return found


class StepCache(kfp_cache.LocalCache):
    """kfp.local's cache with our key and entries (see the module docstring). `reuse=False`
    (`mlops run --no-cache`) recomputes every step and still records the new entries."""

    def __init__(self, cache_root: str | Path, run_id: str, step_log: str, reuse: bool = True):
        super().__init__(str(cache_root))
        self.run_id = run_id
        self.step_log = step_log
        self.reuse = reuse
        self._entry_lock = threading.Lock()
        self._steps: dict[str, str] = {}  # key -> step

    def compute_key(
        self,
        component_name: str,
        image: str,
        full_command: list[str],
        arguments: dict[str, Any],
        env_vars: dict[str, str] | None = None,
        custom_cache_key: str | None = None,
    ) -> str:
        step = step_of_component(component_name)
        arguments = {k: v for k, v in arguments.items() if k != "step_log"}
        try:
            if "config_json" in arguments:
                config_json = arguments.pop("config_json")
                arguments["config"] = step_config(step, config_json)
                arguments["files"] = referenced_files(step, json.loads(config_json))
        except (UncacheableInput, OSError):  # an unreadable data file: the step says why
            return f"{_UNCACHEABLE}{step}"
        payload = {
            "step": step,
            "component": component_name,
            "image": image,
            "command": list(full_command),
            "arguments": self._serialize_value_for_key(arguments),
            "env": dict(env_vars or {}),
            "custom_key": custom_cache_key or "",
            "code": code_version(step),
        }
        key = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
        with self._entry_lock:
            self._steps[key] = step
        return key

    def get(self, key: str) -> dict[str, Any] | None:
        if key.startswith(_UNCACHEABLE) or not self.reuse:
            return None
        path = Path(self._entry_path(key))
        if not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text())
            problem = self._problem(entry, key)
            outputs = {name: self._load_output(value) for name, value in entry["outputs"].items()}
            record = dict(entry["record"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            problem = f"unreadable ({type(exc).__name__}: {exc})"
        step = self._steps.get(key, "?")
        if problem:
            print(f"[mlops] cache entry {path.name} for {step} ignored: {problem}", flush=True)
            return None
        try:  # without its record run.json could not say the step was reused: run it instead
            append_step_record(
                self.step_log,
                {
                    "step": step,
                    "status": CACHED,
                    "cached_from": entry["run_id"],
                    "started": time.time(),
                    "duration_s": 0.0,
                    "original_duration_s": record.get("duration_s"),
                    "result": record.get("result"),
                    "outputs": record.get("outputs") or [],
                },
            )
        except OSError as exc:
            print(f"[mlops] cache entry {path.name} for {step} not used: {exc}", flush=True)
            return None
        print(f"[mlops] step {step}: cached from run {entry['run_id']}", flush=True)
        return outputs

    def _problem(self, entry: dict[str, Any], key: str) -> str | None:
        if entry.get("format") != ENTRY_FORMAT or entry.get("key") != key:
            return "not an entry for this key"
        for name, (uri, fingerprint) in entry["artifacts"].items():
            if output_fingerprint(uri) != fingerprint:
                return f"output {name} ({uri}) changed or is missing since run {entry['run_id']}"
        return None

    @staticmethod
    def _load_output(value: Any) -> Any:
        from kfp.dsl import executor

        def artifact(data: dict[str, Any]) -> Any:
            return executor.create_artifact_instance(
                {
                    "name": data.get("name", ""),
                    "uri": data.get("uri", ""),
                    "metadata": data.get("metadata") or {},
                    "type": {"schemaTitle": data.get("schema_title", "system.Artifact")},
                }
            )

        if isinstance(value, dict) and value.get(kfp_cache._ARTIFACT_MARKER):
            return artifact(value)
        if isinstance(value, dict) and value.get(kfp_cache._ARTIFACT_LIST_MARKER):
            return [artifact(item) for item in value.get("artifacts", [])]
        return value

    def put(self, key: str, outputs: dict[str, Any]) -> None:
        """Record a step that just succeeded: called by kfp.local after the task process exited
        with success, so every output is complete; the entry file appears last, whole."""
        if key.startswith(_UNCACHEABLE):
            return
        step = self._steps.get(key)
        records = [
            r
            for r in read_step_log(self.step_log)
            if r["step"] == step and r["status"] == "SUCCEEDED"
        ]
        if not records:
            return  # no record of it finishing in this run: nothing trustworthy to reuse
        record = records[-1]
        entry = {
            "format": ENTRY_FORMAT,
            "key": key,
            "step": step,
            "run_id": self.run_id,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "record": {k: record.get(k) for k in ("result", "duration_s", "outputs")},
            "outputs": self._serialize_outputs(outputs),
            "artifacts": {
                name: [uri, output_fingerprint(uri)] for name, uri in _artifacts(outputs).items()
            },
        }
        write_json_atomic(self._entry_path(key), entry)


@contextlib.contextmanager
def step_cache(
    cache_root: str | Path, run_id: str, step_log: str, reuse: bool = True
) -> Iterator[StepCache]:
    """Make kfp.local consult a StepCache for this run (it asks `kfp.local.cache.
    get_local_cache()` per task; the pipeline's tasks have caching enabled unless they opt out)."""
    cache = StepCache(cache_root, run_id, step_log, reuse)
    original = kfp_cache.get_local_cache
    kfp_cache.get_local_cache = lambda: cache
    try:
        yield cache
    finally:
        kfp_cache.get_local_cache = original
