"""Every KFP component run once through kfp.local's SubprocessRunner, each on its own inputs.

kfp.local cannot hand artifacts to a lone task, so one pipeline imports ready-made inputs (made by
the plain functions in `penguins_chain`) with `dsl.importer` and runs every component on them.
"""

import json
from pathlib import Path

import pytest
from kfp import dsl

from components.ops import make_ops
from mlops.steps import read_step_log

pytestmark = pytest.mark.slow


def _executor_outputs(pipeline_root: Path) -> dict[str, dict]:
    """task name -> the executor_output.json kfp.local wrote for it (artifact metadata)."""
    return {
        path.parent.name: json.loads(path.read_text())
        for path in pipeline_root.rglob("executor_output.json")
    }


@pytest.fixture(scope="module")
def component_run(penguins_chain, tmp_path_factory):
    from kfp import local

    config, paths, _ = penguins_chain
    tmp = tmp_path_factory.mktemp("components")
    local_config = config.local.model_copy(update={"root": str(tmp / "root")})
    config = config.model_copy(update={"local": local_config})
    ops = make_ops(config.vertex.image)
    step_log = tmp / "steps.jsonl"

    def imported(name: str, artifact_class=dsl.Artifact):
        return dsl.importer(artifact_uri=str(paths[name]), artifact_class=artifact_class).output

    @dsl.pipeline(name="components")
    def each_component(config_json: str, step_log: str) -> None:
        common = {"config_json": config_json, "step_log": step_log}
        dataset = imported("data", dsl.Dataset)
        model = imported("model", dsl.Model)
        evaluation = imported("evaluation")
        ops.ingest(**common)
        ops.validate_data(dataset=dataset, **common)
        ops.transform(dataset=dataset, schema=imported("schema"), **common)
        ops.train(dataset=dataset, transform_graph=imported("transform"), **common)
        champion = ops.find_champion_local(config_json=config_json)
        evaluate = ops.evaluate(
            baseline_model_uri=champion.output, dataset=dataset, model=model, **common
        )
        explanation = ops.explain(dataset=dataset, model=model, **common)
        ops.register_local(
            run_id="component-test",
            dataset=dataset,
            model=model,
            evaluation=evaluation,
            statistics=imported("statistics"),
            schema=imported("schema"),
            explanation=explanation.outputs["explanation"],
            **common,
        ).after(evaluate)  # so find-champion looks before anything is registered
        ops.report(
            statistics=imported("statistics"),
            anomalies=imported("anomalies"),
            model=model,
            evaluation=evaluation,
            explanation=explanation.outputs["explanation"],
            **common,
        )

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp / "kfp-root"),
        raise_on_error=True,
    )
    each_component(config_json=config.to_json(), step_log=str(step_log))
    return config, read_step_log(step_log), _executor_outputs(tmp / "kfp-root")


def test_every_component_ran_and_logged(component_run) -> None:
    _, records, _ = component_run
    assert sorted(r["step"] for r in records) == sorted(
        [
            "ingest",
            "validate_data",
            "transform",
            "train",
            "evaluate",
            "explain",
            "register",
            "report",
        ]
    )
    assert {r["status"] for r in records} == {"SUCCEEDED"}, records


def _artifact(outputs: dict, task: str, name: str) -> dict:
    return outputs[task]["artifacts"][name]["artifacts"][0]


def test_component_outputs_carry_metadata(component_run) -> None:
    _, _, outputs = component_run
    rows = _artifact(outputs, "ingest", "dataset")["metadata"]["rows"]
    assert sum(rows.values()) == 344
    assert Path(_artifact(outputs, "ingest", "dataset")["uri"], "train.parquet").is_file()
    schema_source = _artifact(outputs, "validate-data", "anomalies")["metadata"]["schema_source"]
    assert schema_source == "inferred from train"
    transform_graph = _artifact(outputs, "transform", "transform_graph")
    assert Path(transform_graph["uri"], "transform_fn", "saved_model.pb").is_file()
    assert transform_graph["metadata"]["label_classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert Path(_artifact(outputs, "train", "model")["uri"], "saved_model.pb").is_file()
    assert _artifact(outputs, "train", "training_metrics")["metadata"]["eval_accuracy"] > 0.9


def test_evaluate_component_exposes_kfp_metrics_and_blessing(component_run) -> None:
    _, _, outputs = component_run
    assert outputs["find-champion-local"]["parameterValues"]["Output"] == ""
    evaluate = outputs["evaluate"]
    assert evaluate["parameterValues"]["blessed"] is True
    assert _artifact(outputs, "evaluate", "metrics")["metadata"]["accuracy"] >= 0.95
    confusion = _artifact(outputs, "evaluate", "confusion")["metadata"]["confusionMatrix"]
    assert [c["displayName"] for c in confusion["annotationSpecs"]] == [
        "Adelie",
        "Chinstrap",
        "Gentoo",
    ]


def test_register_and_report_components(component_run) -> None:
    config, _, outputs = component_run
    registered = json.loads(outputs["register-local"]["parameterValues"]["Output"])
    assert registered["version"] == 1 and registered["champion"] == 1
    assert Path(registered["path"]).is_relative_to(config.local.root)
    page = Path(_artifact(outputs, "report", "report")["uri"]).read_text()
    assert "<img" in page and "BLESSED" in page
