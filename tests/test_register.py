"""Register step: a new version per run; the champion alias moves only when the candidate is blessed."""

from __future__ import annotations

import json
from pathlib import Path

from components.explain import run_explain
from components.find_champion import find_champion_local
from components.register import run_register_local
from mlops.paths import registry_root
from mlops.registry import LocalModelRegistry
from tests.conftest import fake_model


def _evaluation(
    tmp_path: Path, blessed: bool, accuracy: float, compared_with: str | None = None
) -> Path:
    path = tmp_path / f"eval-{accuracy}"
    path.mkdir()
    summary = {
        "blessed": blessed,
        "metrics": {"overall": {"accuracy": accuracy}},
        "failures": [],
        "baseline_model_dir": compared_with,
    }
    (path / "metrics.json").write_text(json.dumps(summary))
    return path


def test_register_step_moves_champion_only_when_blessed(penguins_config, tmp_path: Path) -> None:
    assert find_champion_local(penguins_config) == ""
    first = run_register_local(
        penguins_config, fake_model(tmp_path, "a"), _evaluation(tmp_path, True, 0.97), "run-1"
    )
    assert {k: first[k] for k in ("model", "version", "blessed", "champion")} == {
        "model": "penguins",
        "version": 1,
        "blessed": True,
        "champion": 1,
    }
    champion_dir = find_champion_local(penguins_config)
    assert Path(champion_dir, "saved_model.pb").read_text() == "a"
    second = run_register_local(
        penguins_config,
        fake_model(tmp_path, "b"),
        _evaluation(tmp_path, False, 0.5, compared_with=champion_dir),
        "run-2",
    )
    assert (second["version"], second["champion"]) == (2, 1)
    assert find_champion_local(penguins_config) == champion_dir
    record = LocalModelRegistry(registry_root(penguins_config)).get("penguins", version=2)
    assert record.metadata["run_id"] == "run-2"
    assert record.metadata["baseline_version"] == 1
    assert record.metadata["metrics"] == {"accuracy": 0.5}


def test_a_candidate_compared_with_a_replaced_champion_is_not_promoted(
    penguins_config, tmp_path: Path
) -> None:
    """Two runs evaluated against the same champion: the first to register moves the alias; the
    second was never compared with the new champion, so it is registered unblessed, with why."""
    run_register_local(
        penguins_config, fake_model(tmp_path, "a"), _evaluation(tmp_path, True, 0.9), "r1"
    )
    champion_dir = find_champion_local(penguins_config)
    run_b = _evaluation(tmp_path, True, 0.95, compared_with=champion_dir)
    run_c = _evaluation(tmp_path, True, 0.96, compared_with=champion_dir)
    b = run_register_local(penguins_config, fake_model(tmp_path, "b"), run_b, "r2")
    c = run_register_local(penguins_config, fake_model(tmp_path, "c"), run_c, "r3")
    assert (b["blessed"], b["champion"]) == (True, 2)
    assert (c["blessed"], c["champion"]) == (False, 2)
    assert "another run registered meanwhile" in c["champion_refused"]
    record = LocalModelRegistry(registry_root(penguins_config)).get("penguins", version=3)
    assert record.metadata["blessed"] is False and record.metadata["aliases_refused"]


def test_every_version_carries_a_model_card(penguins_chain, tmp_path: Path) -> None:
    config, paths, results = penguins_chain
    config = config.with_overrides(local={"root": str(tmp_path / "root")})
    run_explain(
        config.with_overrides(explain={"rows": 10, "paths": 3, "seed": 0}),
        paths["data"],
        paths["model"],
        tmp_path / "explanation",
    )
    result = run_register_local(
        config,
        paths["model"],
        paths["evaluation"],
        "run-1",
        str(paths["data"]),
        paths["statistics"],
        paths["schema"],
        tmp_path / "explanation",
    )
    version = Path(result["path"])
    card = json.loads((version / "model_card.json").read_text())
    assert card["model_details"]["name"] == "penguins"
    assert card["model_details"]["version"]["name"] == str(result["version"])
    assert card["blessed"] == results["evaluate"]["blessed"]
    metrics = {
        (m["type"], m["slice"]) for m in card["quantitative_analysis"]["performance_metrics"]
    }
    assert ("accuracy", "overall") in metrics and (
        "accuracy (baseline: linear model)",
        "overall",
    ) in metrics
    data = json.loads(card["model_parameters"]["data"][0]["description"])
    assert data["fingerprint"].startswith("sha256:") and data["rows"]["test"] > 0
    assert len(card["top_attributions"]) == 5
    assert "sex" in card["model_parameters"]["data"][0]["sensitive"]["sensitive_data"]
    page = (version / "model_card.html").read_text()
    assert "Model card: penguins" in page and "Limitations" in page
