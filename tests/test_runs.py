"""`mlops runs`: local runs listed with config hash, data fingerprint and metrics, and two runs
compared key by key."""

from __future__ import annotations

import json
import os
import socket

import pytest

from mlops.paths import run_dir, step_cache_root
from mlops.runs import RunInProgress, compare_runs, config_hash, list_runs, prune_runs
from pipelines import cli
from tests.conftest import config_in


def _write_run(config, run_id: str, accuracy: float, fingerprint: str) -> None:
    path = run_dir(config, run_id)
    path.mkdir(parents=True)
    manifest = {
        "run_id": run_id,
        "status": "SUCCEEDED",
        "config_hash": config_hash(config),
        "config": config.model_dump(mode="json"),
        "data_fingerprint": fingerprint,
        "metrics": {"accuracy": accuracy},
        "blessed": True,
        "registered_version": 1,
    }
    (path / "run.json").write_text(json.dumps(manifest))


def test_runs_are_listed_and_compared(tmp_path, capsys) -> None:
    first = config_in(tmp_path, "penguins")
    second = first.with_overrides(training={**first.training.model_dump(), "learning_rate": 0.05})
    assert config_hash(first) != config_hash(second)
    _write_run(first, "penguins-20260101-000000-aaaa", 0.97, "sha256:one")
    _write_run(second, "penguins-20260102-000000-bbbb", 0.99, "sha256:one")
    (run_dir(first, "penguins-20260103-000000-cccc")).mkdir()  # a run killed before run.json
    runs = list_runs(first)
    assert [r["status"] for r in runs] == ["SUCCEEDED", "SUCCEEDED", "UNKNOWN"]
    diff = compare_runs(runs[0], runs[1])
    assert diff["config"] == {"training.learning_rate": [first.training.learning_rate, 0.05]}
    assert diff["metrics"] == {"accuracy": [0.97, 0.99]}
    assert diff["data_fingerprint"] == ["sha256:one", "sha256:one"]

    config_file = tmp_path / "config.json"
    config_file.write_text(first.to_json())
    assert cli.main(["runs", "--config-json", str(config_file)]) == 0
    listed = capsys.readouterr().out
    assert "penguins-20260102-000000-bbbb" in listed and config_hash(second) in listed
    args = ["runs", "--config-json", str(config_file), "--compare"]
    assert cli.main([*args, "penguins-20260101-000000-aaaa", "penguins-20260102-000000-bbbb"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["training.learning_rate"] == [
        first.training.learning_rate,
        0.05,
    ]
    assert cli.main([*args, "penguins-20260101-000000-aaaa", "nope"]) == 2


def test_prune_keeps_the_newest_runs_and_drops_their_cache_entries(tmp_path, capsys) -> None:
    config = config_in(tmp_path, "penguins")
    ids = [f"penguins-2026010{day}-000000-aaaa" for day in range(1, 6)]
    for run_id in ids:
        _write_run(config, run_id, 0.9, "sha256:one")
        (run_dir(config, run_id) / "artifacts").mkdir()
        (run_dir(config, run_id) / "artifacts" / "model.bin").write_bytes(b"x" * 1000)
    other = config.with_overrides(name="taxi")
    _write_run(other, "taxi-20260101-000000-cccc", 0.8, "sha256:two")  # another config's
    cache = step_cache_root(config)
    cache.mkdir(parents=True)
    for index, run_id in enumerate(ids):
        (cache / f"key{index}.json").write_text(json.dumps({"run_id": run_id}))
    (cache / "broken.json").write_text("{")
    config_file = tmp_path / "config.json"
    config_file.write_text(config.to_json())
    prune = ["runs", "--config-json", str(config_file), "--prune"]

    # A run in progress may be reusing any older run's outputs: nothing is pruned meanwhile.
    manifest_path = run_dir(config, ids[4]) / "run.json"
    live = {**json.loads(manifest_path.read_text()), "status": "RUNNING"}
    live["process"] = {"pid": os.getpid(), "host": socket.gethostname()}
    manifest_path.write_text(json.dumps(live))
    assert cli.main([*prune, "2"]) == 2
    assert f"run {ids[4]} is in progress" in capsys.readouterr().err
    assert len(list_runs(config)) == 5
    # Another host's running run is not ours to judge.
    manifest_path.write_text(json.dumps({**live, "process": {"pid": 1, "host": "elsewhere"}}))
    with pytest.raises(RunInProgress):
        prune_runs(config, 2)
    # A run whose process is gone is marked INTERRUPTED first, and then no longer blocks.
    manifest_path.write_text(json.dumps({**live, "process": {**live["process"], "pid": 2**22 + 1}}))
    assert cli.main([*prune, "2"]) == 0
    assert "removed 3 run(s) of 'penguins'" in capsys.readouterr().out
    assert json.loads(manifest_path.read_text())["status"] == "INTERRUPTED"
    assert [r["run_id"] for r in list_runs(config)] == ids[3:]
    assert sorted(p.name for p in cache.iterdir()) == ["key3.json", "key4.json"]
    assert [r["run_id"] for r in list_runs(other)] == ["taxi-20260101-000000-cccc"]
    assert not list(run_dir(config, ids[0]).parent.glob(".pruning-*"))

    result = prune_runs(config, 1)
    assert result.removed == [ids[3]] and result.kept == [ids[4]] and result.bytes_freed > 1000
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*prune, "0"])
    assert exit_info.value.code == 2
    assert "expected a whole number of runs >= 1, got '0'" in capsys.readouterr().err
