"""Find-champion step: the model version aliased `champion` (the evaluation baseline), or "" when
nothing is blessed yet. Locally from the registry; on Vertex by the `mlops_model` label, against
the Model Registry faked at its API boundary (`ModelServiceClient`, tests/vertex_fakes.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials

from components.find_champion import (
    VertexModelLookupError,
    champion_reference,
    find_champion_local,
    find_champion_vertex,
    label_value,
    vertex_parent_model,
)
from mlops.paths import registry_root
from mlops.registry import CHAMPION, LocalModelRegistry
from tests.conftest import config_in, fake_model
from tests.vertex_fakes import PROJECT, REGION, FakeModelRegistry

ANON = AnonymousCredentials()
RECORD = {
    "statistics_dir": "gs://b/run/validate/statistics",
    "schema_dir": "gs://b/run/validate/schema",
    "model_dir": "gs://b/run/train/model",
    "evaluation_dir": "gs://b/run/evaluate/evaluation",
    "training_data_uri": "gs://b/run/register/training_data/train.csv",
}


def _taxi_on_vertex(tmp_path: Path, **vertex):
    config = config_in(tmp_path, "taxi")
    return config.with_overrides(
        vertex={**config.vertex.model_dump(), "project": PROJECT, "region": REGION, **vertex}
    )


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


def test_vertex_champion_by_label_none_one_and_ambiguous(tmp_path: Path) -> None:
    config = _taxi_on_vertex(tmp_path)
    registry = FakeModelRegistry()
    registry.add("5", display_name="taxi", labels={"mlops_model": "penguins"})  # not ours
    registry.add("6", display_name="taxi")  # same display name, no label: not ours either
    with registry.serving():
        assert vertex_parent_model(config, ANON) == ""
        assert find_champion_vertex(config, ANON) == ""
        ours = registry.add(
            "7",
            labels={"mlops_model": "taxi"},
            version_aliases=["champion"],
            artifact_uri="gs://b/models/7",
        )
        assert vertex_parent_model(config, ANON) == ours
        assert find_champion_vertex(config, ANON) == "gs://b/models/7"
        registry.add("8", labels={"mlops_model": "taxi"})
        with pytest.raises(VertexModelLookupError, match=r"2 Vertex AI models carry the label"):
            find_champion_vertex(config, ANON)
    assert {r["filter"] for r in registry.list_requests} == {'labels.mlops_model="taxi"'}
    assert {r["parent"] for r in registry.list_requests} == {
        f"projects/{PROJECT}/locations/{REGION}"
    }


def test_a_labelled_model_without_a_champion_version_is_no_baseline(tmp_path: Path) -> None:
    config = _taxi_on_vertex(tmp_path)
    registry = FakeModelRegistry()
    parent = registry.add("7", labels={"mlops_model": "taxi"}, artifact_uri="gs://b/models/7")
    with registry.serving():
        assert vertex_parent_model(config, ANON) == parent  # new versions still go under it
        assert find_champion_vertex(config, ANON) == ""


def test_configured_parent_model_is_used_without_listing(tmp_path: Path) -> None:
    registry = FakeModelRegistry()
    parent = registry.add("42", version_aliases=["champion"], artifact_uri="gs://b/models/42")
    config = _taxi_on_vertex(tmp_path, parent_model=parent)
    with registry.serving():
        assert vertex_parent_model(config, ANON) == parent
        assert find_champion_vertex(config, ANON) == "gs://b/models/42"
    assert registry.list_requests == []


def test_champion_reference_is_read_from_the_version_description(tmp_path: Path) -> None:
    config = _taxi_on_vertex(tmp_path)
    registry = FakeModelRegistry()
    parent = registry.add(
        "7",
        labels={"mlops_model": "taxi"},
        version_aliases=["champion"],
        version_description=json.dumps(RECORD),
    )
    with registry.serving():
        reference = champion_reference(config, ANON)
    assert reference == {**RECORD, "model_version": "1", "model_resource": f"{parent}@1"}


def test_champion_reference_refuses_a_version_without_a_record(tmp_path: Path) -> None:
    config = _taxi_on_vertex(tmp_path)
    registry = FakeModelRegistry()
    with registry.serving():
        with pytest.raises(VertexModelLookupError, match="run the training pipeline first"):
            champion_reference(config, ANON)
        registry.add(
            "7",
            labels={"mlops_model": "taxi"},
            version_aliases=["champion"],
            version_description="uploaded by hand",
        )
        with pytest.raises(VertexModelLookupError, match=r"models/7@1 has no training record"):
            champion_reference(config, ANON)


def test_label_values_follow_vertex_rules() -> None:
    assert label_value("taxi") == "taxi"
    assert label_value("Taxi Run/2026.11") == "taxi-run-2026-11"
    assert len(label_value("x" * 100)) == 63
