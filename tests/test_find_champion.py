"""Find-champion step: the model version aliased `champion` (the evaluation baseline), or "" when
nothing is blessed yet. The Vertex half is checked with the contract tests
(test_vertex_contract.py::test_find_champion_vertex_asks_for_the_champion_alias)."""

from __future__ import annotations

from pathlib import Path

from components.find_champion import find_champion_local
from mlops.paths import registry_root
from mlops.registry import CHAMPION, LocalModelRegistry
from tests.conftest import fake_model


def test_no_champion_until_a_version_is_blessed(penguins_config, tmp_path: Path) -> None:
    registry = LocalModelRegistry(registry_root(penguins_config))
    assert find_champion_local(penguins_config) == ""
    registry.register("penguins", fake_model(tmp_path, "unblessed"), {})
    assert find_champion_local(penguins_config) == ""
    registry.register("penguins", fake_model(tmp_path, "blessed"), {}, aliases=[CHAMPION])
    champion = Path(find_champion_local(penguins_config))
    assert (champion / "saved_model.pb").read_text() == "blessed"


def test_champion_of_another_model_is_not_ours(penguins_config, tmp_path: Path) -> None:
    registry = LocalModelRegistry(registry_root(penguins_config))
    registry.register("taxi", fake_model(tmp_path, "taxi"), {}, aliases=[CHAMPION])
    assert find_champion_local(penguins_config) == ""
