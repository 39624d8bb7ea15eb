"""`mlops runs`: local runs listed with config hash, data fingerprint and metrics, and two runs
compared key by key."""

from __future__ import annotations

import json

from mlops.paths import run_dir
from mlops.runs import compare_runs, config_hash, list_runs
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
