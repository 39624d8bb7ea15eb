from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from components.register import find_champion_local, registry_root, run_register_local
from mlops.registry import CHAMPION, LocalModelRegistry, RegistryError


def _model(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    (path / "saved_model.pb").write_text(name)
    return path


def test_versions_count_up_and_aliases_move(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path / "registry")
    first = registry.register("m", _model(tmp_path, "a"), {"blessed": True}, aliases=[CHAMPION])
    second = registry.register("m", _model(tmp_path, "b"), {"blessed": False})
    assert (first.version, second.version) == (1, 2)
    assert registry.get("m", alias=CHAMPION).version == 1  # not moved by an unblessed version
    registry.set_alias("m", CHAMPION, 2)
    champion = registry.get("m", alias=CHAMPION)
    assert champion.version == 2
    assert (champion.model_dir / "saved_model.pb").read_text() == "b"
    assert registry.versions("m") == [1, 2]


def test_unknown_alias_and_version_say_what_exists(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path)
    registry.register("m", _model(tmp_path, "a"), {})
    with pytest.raises(RegistryError, match=r"no alias 'champion' \(aliases: none\)"):
        registry.get("m", alias=CHAMPION)
    with pytest.raises(RegistryError, match=r"no version 7 \(versions: \[1\]\)"):
        registry.get("m", version=7)
    assert registry.find("m", CHAMPION) is None


def test_concurrent_registrations_get_distinct_versions(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path / "registry")
    source = _model(tmp_path, "a")
    threads = [
        threading.Thread(target=registry.register, args=("m", source, {"i": i})) for i in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert registry.versions("m") == [1, 2, 3, 4, 5, 6]
    assert sorted(registry.get("m", version=v).metadata["i"] for v in range(1, 7)) == list(range(6))


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
        penguins_config, _model(tmp_path, "a"), _evaluation(tmp_path, True, 0.97), "run-1"
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
        penguins_config, _model(tmp_path, "b"), _evaluation(tmp_path, False, 0.5), "run-2"
    )
    assert (second["version"], second["champion"]) == (2, 1)
    assert find_champion_local(penguins_config) == champion_dir
    record = LocalModelRegistry(registry_root(penguins_config)).get("penguins", version=2)
    assert record.metadata["run_id"] == "run-2"
    assert record.metadata["baseline_version"] == 1
    assert record.metadata["metrics"] == {"accuracy": 0.5}
