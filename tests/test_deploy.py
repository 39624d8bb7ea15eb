"""Deploy step: local endpoint records with canary splits (the Vertex half is in the contract tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.deploy import run_deploy_local
from mlops.endpoints import EndpointError, LocalEndpoints
from mlops.paths import registry_root
from mlops.registry import CHAMPION, LocalModelRegistry
from tests.conftest import config_in, fake_model


def test_deploy_canary_then_promote(tmp_path: Path) -> None:
    config = config_in(tmp_path, "penguins")
    registry = LocalModelRegistry(registry_root(config))
    registry.register("penguins", fake_model(tmp_path, "a"), {}, aliases=[CHAMPION])
    registry.register("penguins", fake_model(tmp_path, "b"), {})
    first = run_deploy_local(config, CHAMPION)
    assert first["traffic"] == {"1": 100}
    canary = run_deploy_local(config, "2", canary_percent=10)
    assert canary["traffic"] == {"1": 90, "2": 10}
    assert set(canary["models"]) == {"1", "2"}
    promoted = run_deploy_local(config, "2", canary_percent=0)
    assert promoted["traffic"] == {"2": 100} and set(promoted["models"]) == {"2"}
    assert [h["traffic"] for h in promoted["history"]] == [
        {"1": 100},
        {"1": 90, "2": 10},
        {"2": 100},
    ]


def test_unknown_endpoint_and_version_errors(tmp_path: Path) -> None:
    config = config_in(tmp_path, "penguins")
    with pytest.raises(EndpointError, match="deploy a model first"):
        LocalEndpoints(tmp_path / "endpoints").get("penguins")
    with pytest.raises(LookupError, match="no alias 'champion'"):
        run_deploy_local(config, CHAMPION)
