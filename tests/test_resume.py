"""Resume: a local run reuses the steps that completed before for the same inputs, config and
code (`pipelines.step_cache`), and recomputes the rest.

The first tests drive the cache the way kfp.local does (compute_key, get, put) on real files; the
slow ones run the real CLI on penguins: a rerun, and a run killed during training and resumed.
They assert on the step statuses in run.json, never on time."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kfp import dsl

from mlops.config import REPO_ROOT, load_config
from mlops.paths import registry_root, step_cache_root
from mlops.registry import LocalModelRegistry
from mlops.steps import append_step_record, read_step_log
from pipelines.local import mark_interrupted_runs
from pipelines.step_cache import (
    CACHED,
    STEP_CONFIG_SECTIONS,
    STEP_MODULES,
    StepCache,
    code_files,
)
from tests.conftest import REPO

PENGUINS = load_config(REPO / "configs" / "penguins.yaml")


def _config_json(**overrides: object) -> str:
    return PENGUINS.with_overrides(**overrides).to_json() if overrides else PENGUINS.to_json()


def _training(**changes: object) -> dict:
    return {**PENGUINS.training.model_dump(), **changes}


def _key(cache: StepCache, component: str, config_json: str, **arguments: object) -> str:
    return cache.compute_key(
        component_name=component,
        image="python:3.11",
        full_command=["python3", "-c", "body"],
        arguments={"config_json": config_json, "step_log": cache.step_log, **arguments},
    )


def _cache(tmp_path: Path, run_id: str, reuse: bool = True) -> StepCache:
    run = tmp_path / "runs" / run_id
    run.mkdir(parents=True, exist_ok=True)
    return StepCache(tmp_path / "cache", run_id, str(run / "steps.jsonl"), reuse=reuse)


def _finished_step(tmp_path: Path, cache: StepCache, component: str, step: str) -> tuple:
    """Run a fake step the way kfp.local would: outputs written, a SUCCEEDED record, put."""
    out = tmp_path / "runs" / cache.run_id / "artifacts" / step
    (out / "nested").mkdir(parents=True)
    (out / "nested" / "data.bin").write_bytes(b"x" * 100)
    artifact = dsl.Dataset(name=step, uri=str(out), metadata={"rows": 3})
    key = _key(cache, component, _config_json())
    append_step_record(
        cache.step_log,
        {"step": step, "status": "SUCCEEDED", "duration_s": 1.5, "result": {"rows": 3}},
    )
    cache.put(key, {"dataset": artifact, "count": 3})
    return key, out


def test_the_key_ignores_the_run_and_the_config_sections_a_step_does_not_read(
    tmp_path: Path,
) -> None:
    first, second = _cache(tmp_path, "run-a"), _cache(tmp_path, "run-b")
    more_epochs = _config_json(training=_training(epochs=61))
    # step_log (the run's own folder) differs between the two caches
    assert _key(first, "comp-ingest", _config_json()) == _key(second, "comp-ingest", more_epochs)
    assert _key(first, "comp-transform", _config_json()) == _key(
        second, "comp-transform", more_epochs
    )
    assert _key(first, "comp-train", _config_json()) != _key(second, "comp-train", more_epochs)
    other_features = _config_json(
        features={**PENGUINS.features.model_dump(), "cross_hash_buckets": 32}
    )
    assert _key(first, "comp-transform", _config_json()) != _key(
        first, "comp-transform", other_features
    )
    upstream = dsl.Dataset(name="dataset", uri="/runs/a/dataset", metadata={})
    moved = dsl.Dataset(name="dataset", uri="/runs/b/dataset", metadata={})
    assert _key(first, "comp-train", _config_json(), dataset=upstream) != _key(
        first, "comp-train", _config_json(), dataset=moved
    )


def test_the_key_follows_the_data_file_content(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    config = _config_json(data={**PENGUINS.data.model_dump(), "source": str(data)})
    cache = _cache(tmp_path, "run-a")
    before = _key(cache, "comp-ingest", config)
    assert _key(cache, "comp-ingest", config) == before
    data.write_text("a,b\n1,3\n")
    assert _key(cache, "comp-ingest", config) != before


def test_the_key_follows_a_sqlite_database_and_ignores_a_server(tmp_path: Path) -> None:
    import sqlite3

    database = tmp_path / "zoo.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE penguins (species TEXT)")
    data = {**PENGUINS.data.model_dump(), "source": f"sqlite:///{database}", "table": "penguins"}
    config = _config_json(data=data)
    cache = _cache(tmp_path, "run-a")
    before = _key(cache, "comp-ingest", config)
    assert _key(cache, "comp-ingest", config) == before and not before.startswith("uncacheable")
    with sqlite3.connect(database) as connection:
        connection.execute("INSERT INTO penguins VALUES ('Adelie')")
    assert _key(cache, "comp-ingest", config) != before
    server = _config_json(data={**data, "source": "postgresql://reader@db.internal/zoo"})
    assert _key(cache, "comp-ingest", server).startswith("uncacheable")


def test_a_remote_source_is_never_reused(tmp_path: Path) -> None:
    config = _config_json(data={**PENGUINS.data.model_dump(), "source": "gs://bucket/x.csv"})
    cache = _cache(tmp_path, "run-a")
    key = _key(cache, "comp-ingest", config)
    cache.put(key, {"count": 1})
    assert cache.get(key) is None
    assert not list((tmp_path / "cache").glob("*.json"))


def test_the_step_sections_cover_every_config_read_in_the_steps_code() -> None:
    """A step keyed on part of the config must not read another part (else a change there would
    reuse a stale result): every `config.<section>` in the step's module and what it imports."""
    for step, sections in STEP_CONFIG_SECTIONS.items():
        read = set()
        for path in code_files(STEP_MODULES[step]):
            if path != REPO_ROOT / "mlops" / "config.py":
                read |= set(re.findall(r"\bconfig\.(\w+)", path.read_text()))
        assert read <= set(sections), f"{step} reads config sections {read - set(sections)}"
    assert REPO_ROOT / "components" / "transform.py" in code_files("components.train")


def test_a_completed_step_is_reused_by_a_later_run_with_its_record(tmp_path: Path) -> None:
    key, out = _finished_step(tmp_path, _cache(tmp_path, "run-a"), "comp-ingest", "ingest")
    later = _cache(tmp_path, "run-b")
    assert _key(later, "comp-ingest", _config_json()) == key
    outputs = later.get(key)
    assert outputs["dataset"].uri == str(out) and outputs["dataset"].metadata == {"rows": 3}
    assert outputs["count"] == 3
    (record,) = read_step_log(later.step_log)
    assert record["status"] == CACHED and record["cached_from"] == "run-a"
    assert record["result"] == {"rows": 3} and record["original_duration_s"] == 1.5


def test_a_step_without_a_success_record_leaves_no_entry(tmp_path: Path) -> None:
    cache = _cache(tmp_path, "run-a")
    cache.put(_key(cache, "comp-ingest", _config_json()), {"count": 3})
    assert not list((tmp_path / "cache").glob("*.json"))


@pytest.mark.parametrize(
    "damage", ["truncated entry", "not an entry", "changed output", "missing output"]
)
def test_a_damaged_entry_or_output_is_ignored(tmp_path: Path, damage: str) -> None:
    key, out = _finished_step(tmp_path, _cache(tmp_path, "run-a"), "comp-ingest", "ingest")
    (entry,) = (tmp_path / "cache").glob("*.json")
    assert entry.name == f"{key}.json" and not list((tmp_path / "cache").glob(".*"))
    if damage == "truncated entry":
        entry.write_text(entry.read_text()[:50])
    elif damage == "not an entry":
        entry.write_text("[]")
    elif damage == "changed output":
        (out / "nested" / "data.bin").write_bytes(b"x" * 10)
    else:
        (out / "nested" / "data.bin").unlink()
    later = _cache(tmp_path, "run-b")
    assert later.get(_key(later, "comp-ingest", _config_json())) is None
    assert read_step_log(later.step_log) == []


def test_no_cache_recomputes_but_records(tmp_path: Path) -> None:
    key, _ = _finished_step(tmp_path, _cache(tmp_path, "run-a"), "comp-ingest", "ingest")
    forced = _cache(tmp_path, "run-b", reuse=False)
    assert forced.get(_key(forced, "comp-ingest", _config_json())) is None
    assert _cache(tmp_path, "run-c").get(key) is not None


def test_a_run_whose_process_is_gone_is_marked_interrupted(tmp_path: Path) -> None:
    ended = subprocess.Popen(["true"])
    ended.wait()
    for run_id, pid in (("gone", ended.pid), ("alive", os.getpid())):
        (tmp_path / run_id / "tmp" / "task").mkdir(parents=True)
        manifest = {"run_id": run_id, "status": "RUNNING"}
        manifest["process"] = {"host": socket.gethostname(), "pid": pid}
        (tmp_path / run_id / "run.json").write_text(json.dumps(manifest))
    assert mark_interrupted_runs(tmp_path) == ["gone"]
    assert json.loads((tmp_path / "gone" / "run.json").read_text())["status"] == "INTERRUPTED"
    assert not (tmp_path / "gone" / "tmp").exists()
    assert json.loads((tmp_path / "alive" / "run.json").read_text())["status"] == "RUNNING"
    assert (tmp_path / "alive" / "tmp" / "task").is_dir()


# --- the real CLI on penguins ----------------------------------------------------------------

DATA_STEPS = ("ingest", "validate_data", "transform")


def _write_config(path: Path, root: Path, epochs: int | None = None) -> Path:
    text = (REPO / "configs" / "penguins.yaml").read_text()
    if epochs is not None:
        text = text.replace("  epochs: 60\n", f"  epochs: {epochs}\n")
    path.write_text(text + f"\nlocal: {{root: {root}}}\n")
    return path


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "_KFP_RUNTIME"}
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )


def _manifest(root: Path, run_id: str) -> dict:
    return json.loads((root / "runs" / run_id / "run.json").read_text())


def _statuses(manifest: dict) -> dict[str, str]:
    return {name: step["status"] for name, step in manifest["steps"].items()}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A first run and a plain rerun of the same config, in a fresh local.root."""
    tmp = tmp_path_factory.mktemp("resume")
    root = tmp / "root"
    config = _write_config(tmp / "penguins.yaml", root)
    first = _cli("--config", str(config), "--run-id", "penguins-first")
    assert first.returncode == 0, first.stdout + first.stderr
    versions = LocalModelRegistry(root / "registry").versions("penguins")
    second = _cli("--config", str(config), "--run-id", "penguins-second")
    assert second.returncode == 0, second.stdout + second.stderr
    return {"root": root, "tmp": tmp, "versions_after_first": versions, "second": second}


@pytest.mark.slow
@pytest.mark.timeout(2400)  # whole pipeline runs, on a busy machine
def test_a_rerun_reuses_data_transform_and_train(two_runs: dict) -> None:
    root = two_runs["root"]
    first, second = _manifest(root, "penguins-first"), _manifest(root, "penguins-second")
    assert CACHED not in _statuses(first).values()
    statuses = _statuses(second)
    for step in (*DATA_STEPS, "train"):
        assert statuses[step] == CACHED, statuses
        assert second["steps"][step]["cached_from"] == "penguins-first"
        assert second["reused_steps"][step] == "penguins-first"
    assert second["status"] == "SUCCEEDED" and second["data"] == first["data"]
    assert second["data_fingerprint"] == first["data_fingerprint"]
    assert statuses["register"] == "SUCCEEDED"  # always runs: it reads the registry
    # the reused model is a version already: no second copy of it in the registry
    registry = LocalModelRegistry(registry_root(load_config(two_runs["tmp"] / "penguins.yaml")))
    assert registry.versions("penguins") == two_runs["versions_after_first"]
    out = two_runs["second"].stdout
    assert "transform        cached    (from run penguins-first)" in out
    assert "reused from run penguins-first" in out


@pytest.mark.slow
@pytest.mark.timeout(2400)  # whole pipeline runs, on a busy machine
def test_a_run_killed_in_training_resumes_from_train(two_runs: dict) -> None:
    """More epochs (a training parameter): ingest/validate/transform come from the first run.
    The run is killed (SIGKILL, the whole process group) while training; the rerun recomputes
    train, since a step killed half-way never leaves a cache entry."""
    root, tmp = two_runs["root"], two_runs["tmp"]
    config = _write_config(tmp / "more-epochs.yaml", root, epochs=61)
    cache_root = step_cache_root(load_config(config))
    entries_before = set(cache_root.glob("*.json"))
    env = {k: v for k, v in os.environ.items() if k != "_KFP_RUNTIME"}
    killed = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "run", "--config", str(config)]
        + ["--run-id", "penguins-killed"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    log = root / "runs" / "penguins-killed" / "pipeline.log"
    deadline = time.time() + 900
    while "[mlops] step train: started" not in (log.read_text() if log.is_file() else ""):
        assert killed.poll() is None and time.time() < deadline, "train never started"
        time.sleep(0.5)
    time.sleep(3)  # well inside training
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    killed_manifest = _manifest(root, "penguins-killed")
    assert killed_manifest["status"] == "RUNNING"  # written at start: a crashed run still has one
    new_entries = {json.loads(p.read_text())["step"] for p in set(cache_root.glob("*.json"))}
    new_entries -= {json.loads(p.read_text())["step"] for p in entries_before}
    assert "train" not in new_entries

    resumed = _cli("--config", str(config), "--run-id", "penguins-resumed")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    manifest = _manifest(root, "penguins-resumed")
    statuses = _statuses(manifest)
    for step in DATA_STEPS:
        assert statuses[step] == CACHED and manifest["reused_steps"][step] == "penguins-first"
    for step in ("train", "evaluate", "explain", "register", "report"):
        assert statuses[step] == "SUCCEEDED", statuses
    killed_manifest = _manifest(root, "penguins-killed")
    assert killed_manifest["status"] == "INTERRUPTED"  # found by the next run, its tmp removed
    assert not (root / "runs" / "penguins-killed" / "tmp").exists()
    assert manifest["config"]["training"]["epochs"] == 61


def test_no_cache_flag_turns_reuse_off() -> None:
    """`mlops run --no-cache` reaches the runner as cache=False; what a run with cache=False does
    is shown end to end by tests/test_pipeline_local.py, whose second run trains anew."""
    from pipelines.cli import build_parser

    assert build_parser().parse_args(["run", "--no-cache"]).cache is False
    assert build_parser().parse_args(["run"]).cache is True
