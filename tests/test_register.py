"""Register step: a new version per run; the champion alias moves only when the candidate is blessed."""

from __future__ import annotations

import json
from pathlib import Path

from components.find_champion import find_champion_local
from components.register import run_register_local
from mlops.paths import registry_root
from mlops.registry import LocalModelRegistry
from tests.conftest import fake_model


def _evaluation(tmp_path: Path, blessed: bool, accuracy: float) -> Path:
    path = tmp_path / f"eval-{accuracy}"
    path.mkdir()
    (path / "metrics.json").write_text(
        json.dumps(
            {"blessed": blessed, "metrics": {"overall": {"accuracy": accuracy}}, "failures": []}
        )
    )
    return path


def test_register_step_moves_champion_only_when_blessed(penguins_config, tmp_path: Path) -> None:
    assert find_champion_local(penguins_config) == ""
    first = run_register_local(
        penguins_config, fake_model(tmp_path, "a"), _evaluation(tmp_path, True, 0.97), "run-1"
    )
    assert first == {
        "model": "penguins",
        "version": 1,
        "blessed": True,
        "champion": 1,
        "path": first["path"],
    }
    champion_dir = find_champion_local(penguins_config)
    assert Path(champion_dir, "saved_model.pb").read_text() == "a"
    second = run_register_local(
        penguins_config, fake_model(tmp_path, "b"), _evaluation(tmp_path, False, 0.5), "run-2"
    )
    assert (second["version"], second["champion"]) == (2, 1)
    assert find_champion_local(penguins_config) == champion_dir
    record = LocalModelRegistry(registry_root(penguins_config)).get("penguins", version=2)
    assert record.metadata["run_id"] == "run-2"
    assert record.metadata["baseline_version"] == 1
    assert record.metadata["metrics"] == {"accuracy": 0.5}
