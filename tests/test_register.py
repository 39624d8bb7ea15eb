"""Register step: a new version per run; the champion alias moves only when the candidate is blessed."""

from __future__ import annotations

import json
from pathlib import Path

from components.explain import run_explain
from components.find_champion import find_champion_local
from components.register import run_register_local
from mlops.paths import registry_root
from mlops.registry import LocalModelRegistry
from tests.conftest import fake_model, on_vertex


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


def test_vertex_upload_stores_the_model_card_on_cloud_storage_and_references_it(
    penguins_chain, tmp_path: Path
) -> None:
    from google.auth.credentials import AnonymousCredentials

    from components.register import (
        run_register_vertex,
        vertex_version_record,
        write_vertex_model_card,
    )
    from tests.gcs_emulator import gcs_emulator
    from tests.vertex_fakes import FakeModelRegistry

    config, paths, results = penguins_chain
    config = on_vertex(config, project="my-project", region="europe-west4")
    spec = {"imageUri": "europe-docker.pkg.dev/p/mlops/image:1.0", "args": ["--config-json", "{}"]}
    registry = FakeModelRegistry()
    with gcs_emulator() as gcs:
        # The step's HTML artifact URI, as Vertex gives it under the pipeline root.
        html_uri = gcs.uri("root/run-1/register/model_card")
        card_uris = write_vertex_model_card(
            config, "run-1", html_uri, paths["evaluation"], "", paths["data"]
        )
        record = vertex_version_record(
            config,
            "run-1",
            model_uri=gcs.uri("root/run-1/train/model"),
            evaluation_uri=gcs.uri("root/run-1/evaluate/evaluation"),
            statistics_uri=gcs.uri("root/run-1/validate/statistics"),
            schema_uri=gcs.uri("root/run-1/validate/schema"),
            training_data_uri=gcs.uri("root/run-1/register/train.csv"),
            model_card=card_uris,
        )
        with registry.serving():
            run_register_vertex(config, "", spec, record, AnonymousCredentials())
        bucket = gcs.client().bucket(gcs.bucket)

        def stored(uri: str) -> str:
            return bucket.blob(uri.split(f"gs://{gcs.bucket}/", 1)[1]).download_as_text()

        (request,) = registry.upload_requests
        described = json.loads(request.model.version_description)
        card = json.loads(stored(described["model_card_json"]))
        page = stored(described["model_card_html"])
    assert described["model_card_html"] == html_uri
    assert described["model_card_json"] == html_uri + ".json"
    assert f"Model card: {html_uri}" in request.model.description
    assert card["model_details"]["version"]["name"] == "run-1"
    assert card["blessed"] == results["evaluate"]["blessed"]
    assert "Model card: penguins" in page and "Limitations" in page
