"""The AutoML challenger (components/automl.py): its Vertex wiring in the compiled spec, the
split export, reading AutoML's batch prediction output, evaluating it with the evaluate step's
code (same numbers as our model's TFMA evaluation on the same predictions) and the comparison
that blesses the better model."""

import json
import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from google.auth.credentials import AnonymousCredentials

from components.automl import (
    AUTOML_SPLIT_VALUES,
    ROW_ID_COLUMN,
    SPLIT_COLUMN,
    AutoMLPredictionError,
    automl_columns,
    compare_with_challenger,
    export_automl_splits,
    read_automl_predictions,
    run_compare,
    run_evaluate_challenger,
)
from mlops.artifacts import SPLITS, read_label_classes, read_split
from mlops.config import ConfigError, PipelineConfig
from mlops.features import category_text
from pipelines.builders import build_pipeline
from pipelines.vertex import compile_training_pipeline
from tests.conftest import config_in, on_vertex

CHALLENGER_TASKS = {
    "automl-export",
    "tabular-dataset-create",
    "automl-tabular-training-job",
    "model-batch-predict",
    "evaluate-challenger",
    "compare-challenger",
}
WHERE = {"project": "my-project", "region": "europe-west4", "pipeline_root": "gs://b/root"}


def _compiled(tmp_path: Path, name: str, **challenger) -> tuple[PipelineConfig, dict]:
    config = on_vertex(config_in(tmp_path, "penguins"), **WHERE, automl_challenger=challenger)
    path = compile_training_pipeline(config, "vertex", tmp_path / f"{name}.json")
    return config, json.loads(path.read_text())


def _executor(spec: dict, task: dict) -> dict:
    label = spec["components"][task["componentRef"]["name"]]["executorLabel"]
    return spec["deploymentSpec"]["executors"][label]


def _constant(task: dict, name: str):  # noqa: ANN202
    return task["inputs"]["parameters"][name]["runtimeValue"]["constant"]


def _producer(task: dict, name: str, kind: str = "parameters") -> tuple[str, str]:
    source = task["inputs"][kind][name]
    source = source.get("taskOutputParameter") or source.get("taskOutputArtifact")
    key = source.get("outputParameterKey") or source.get("outputArtifactKey")
    return source["producerTask"], key


def test_vertex_spec_trains_automl_on_our_split_and_gates_registration_on_the_comparison(
    tmp_path: Path,
) -> None:
    config, spec = _compiled(
        tmp_path,
        "on",
        enabled=True,
        budget_milli_node_hours=2000,
        optimization_objective="minimize-log-loss",
    )
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) >= CHALLENGER_TASKS
    # No path of this machine in the spec.
    assert str(Path(__file__).resolve().parents[1]) not in json.dumps(spec)
    # GCPC's own ops, run by GCPC's launcher: the dataset, the training job, batch prediction.
    gcpc = {
        "tabular-dataset-create": "TabularDataset",
        "automl-tabular-training-job": "AutoMLTabularTrainingJob",
        "model-batch-predict": "batch_prediction_job",
    }
    for name, what in gcpc.items():
        container = _executor(spec, tasks[name])["container"]
        assert "google_cloud_pipeline_components" in " ".join(container["command"]), name
        assert what in " ".join(container["command"] + container.get("args", [])), name
    # Our steps run in the project image.
    for name in ("automl-export", "evaluate-challenger", "compare-challenger"):
        assert _executor(spec, tasks[name])["container"]["image"] == config.vertex.image

    assert _producer(tasks["automl-export"], "dataset", "artifacts") == ("ingest", "dataset")
    dataset = tasks["tabular-dataset-create"]
    assert _producer(dataset, "gcs_source") == ("automl-export", "training_uri")
    assert _constant(dataset, "project") == "my-project"
    assert _constant(dataset, "location") == "europe-west4"

    train = tasks["automl-tabular-training-job"]
    assert _producer(train, "dataset", "artifacts") == ("tabular-dataset-create", "dataset")
    assert _constant(train, "predefined_split_column_name") == SPLIT_COLUMN
    assert _constant(train, "budget_milli_node_hours") == 2000
    assert _constant(train, "optimization_objective") == "minimize-log-loss"
    assert _constant(train, "optimization_prediction_type") == "classification"
    assert _constant(train, "target_column") == "species"
    assert _constant(train, "column_specs") == {
        **{name: "numeric" for name in config.features.numeric},
        **{name: "categorical" for name in config.features.categorical},
    }
    assert _constant(train, "model_labels") == {"mlops_challenger": "penguins"}

    predict = tasks["model-batch-predict"]
    assert _producer(predict, "model", "artifacts") == ("automl-tabular-training-job", "model")
    assert _producer(predict, "gcs_source_uris") == ("automl-export", "test_uris")
    assert _producer(predict, "gcs_destination_output_uri_prefix") == (
        "automl-export",
        "predictions_prefix",
    )
    assert _constant(predict, "instances_format") == "csv"
    assert _constant(predict, "predictions_format") == "jsonl"

    evaluate = tasks["evaluate-challenger"]
    assert _producer(evaluate, "predictions", "artifacts") == (
        "model-batch-predict",
        "gcs_output_directory",
    )
    assert _producer(evaluate, "dataset", "artifacts") == ("ingest", "dataset")
    assert _producer(evaluate, "transform_graph", "artifacts") == ("transform", "transform_graph")
    compare = tasks["compare-challenger"]
    assert _producer(compare, "evaluation", "artifacts") == ("evaluate", "evaluation")
    assert _producer(compare, "challenger_evaluation", "artifacts") == (
        "evaluate-challenger",
        "evaluation",
    )
    # Our registration waits for the comparison: the challenger's win withdraws our blessing.
    (condition,) = [name for name in tasks if name.startswith("condition")]
    assert (
        "compare-challenger-model_blessed'] == true"
        in (tasks[condition]["triggerPolicy"]["condition"])
    )

    # The spec loads into a PipelineJob offline.
    from mlops.vertex_jobs import SubmitSettings, build_pipeline_job

    settings = SubmitSettings.resolve(config)
    job = build_pipeline_job(
        config, tmp_path / "on.json", settings, credentials=AnonymousCredentials()
    )
    assert job._gca_resource.runtime_config.gcs_output_directory == "gs://b/root"


def test_with_the_option_off_our_path_is_unchanged(tmp_path: Path) -> None:
    _, on = _compiled(tmp_path, "on", enabled=True)
    _, off = _compiled(tmp_path, "off", enabled=False, budget_milli_node_hours=5000)
    off_tasks, on_tasks = off["root"]["dag"]["tasks"], on["root"]["dag"]["tasks"]
    assert set(on_tasks) == set(off_tasks) | CHALLENGER_TASKS
    assert not CHALLENGER_TASKS & set(off_tasks)
    (condition,) = [name for name in off_tasks if name.startswith("condition")]
    assert "evaluate-blessed'] == true" in off_tasks[condition]["triggerPolicy"]["condition"]
    for name, task in off_tasks.items():
        if name == condition:
            continue
        # Every step of our path is the same task, with the same component, in both specs.
        assert on_tasks[name] == task, name
        assert _executor(on, task) == _executor(off, task), name
    # Inside the gate, the same registration steps.
    component = f"comp-{condition}"
    assert on["components"][component]["dag"] == off["components"][component]["dag"]


def test_enabling_it_without_project_or_pipeline_root_is_refused_at_compile(
    tmp_path: Path,
) -> None:
    config = on_vertex(config_in(tmp_path, "penguins"), automl_challenger={"enabled": True})
    with pytest.raises(ConfigError, match=r"vertex\.project .* and vertex\.pipeline_root"):
        build_pipeline(config, "training", "vertex")
    with pytest.raises(ValueError, match="budget_milli_node_hours"):
        config.with_overrides(
            vertex={
                **config.vertex.model_dump(),
                "automl_challenger": {"budget_milli_node_hours": 999},
            }
        )


def test_the_local_pipeline_runs_without_the_challenger_and_says_so(tmp_path: Path) -> None:
    from kfp import compiler

    config = config_in(tmp_path, "penguins")
    enabled = config.with_overrides(
        vertex={**config.vertex.model_dump(), "automl_challenger": {"enabled": True}}
    )
    with pytest.warns(UserWarning, match="AutoML Tabular exists on Vertex AI only"):
        pipeline = build_pipeline(enabled, "training", "local")
    compiler.Compiler().compile(pipeline, str(tmp_path / "local.json"))
    tasks = json.loads((tmp_path / "local.json").read_text())["root"]["dag"]["tasks"]
    compiler.Compiler().compile(
        build_pipeline(config, "training", "local"), str(tmp_path / "b.json")
    )
    assert set(tasks) == set(json.loads((tmp_path / "b.json").read_text())["root"]["dag"]["tasks"])


def test_the_csv_export_keeps_exactly_our_split_rows(penguins_chain, tmp_path: Path) -> None:
    config, paths, _ = penguins_chain
    summary = export_automl_splits(
        config, paths["data"], tmp_path / "training.csv", tmp_path / "test.csv"
    )
    names = automl_columns(config)
    training = pd.read_csv(tmp_path / "training.csv", keep_default_na=False, dtype=str)
    test_csv = pd.read_csv(tmp_path / "test.csv", keep_default_na=False, dtype=str)

    def as_cells(frame: pd.DataFrame, with_label: bool) -> list[tuple]:
        columns = [*config.features.raw_features] + ([config.data.label] if with_label else [])
        rows = []
        for record in frame.to_dict("records"):
            cells = []
            for name in columns:
                value = record[name]
                if name in config.features.numeric:
                    missing = value is None or (isinstance(value, float) and math.isnan(value))
                    cells.append(None if missing else float(value))
                else:
                    cells.append(category_text(value))
            rows.append(tuple(cells))
        return rows

    def csv_cells(frame: pd.DataFrame, with_label: bool) -> list[tuple]:
        columns = [*config.features.raw_features] + ([config.data.label] if with_label else [])
        return [
            tuple(
                (float(row[names[n]]) if row[names[n]] != "" else None)
                if n in config.features.numeric
                else row[names[n]]
                for n in columns
            )
            for row in frame.to_dict("records")
        ]

    assert set(training[SPLIT_COLUMN]) == set(AUTOML_SPLIT_VALUES.values())
    for split in SPLITS:
        ours = read_split(paths["data"], split)
        exported = training[training[SPLIT_COLUMN] == AUTOML_SPLIT_VALUES[split]]
        assert summary["rows"][split] == len(ours) == len(exported)
        assert csv_cells(exported, True) == as_cells(ours, True), split
    test = read_split(paths["data"], "test")
    assert test_csv[ROW_ID_COLUMN].astype(int).tolist() == list(range(len(test)))
    assert config.data.label not in test_csv.columns and SPLIT_COLUMN not in test_csv.columns
    assert csv_cells(test_csv, False) == as_cells(test, False)
    # Penguins has missing values: they are empty cells, not "nan".
    assert (training == "").any().any() and not (training == "nan").any().any()


def _write_batch_output(
    config: PipelineConfig,
    directory: Path,
    probabilities: np.ndarray,
    classes: list[str],
    test: pd.DataFrame,
) -> None:
    """What a Vertex batch prediction job of an AutoML tabular classification model writes for
    CSV instances with predictions_format jsonl: shards of {"instance", "prediction"} lines in
    no particular order (the CSV's cells as text), AutoML's own class order, an errors file."""
    directory.mkdir()
    names = automl_columns(config)
    order = list(range(len(test)))
    random.Random(3).shuffle(order)
    theirs = list(reversed(classes))
    records = test.to_dict("records")
    shards = [order[::2], order[1::2]]
    for index, rows in enumerate(shards):
        lines = []
        for row in rows:
            instance = {ROW_ID_COLUMN: str(row)}
            for name in config.features.raw_features:
                instance[names[name]] = category_text(records[row][name])
            scores = [float(probabilities[row][classes.index(name)]) for name in theirs]
            prediction = {"classes": theirs, "scores": scores}
            lines.append(json.dumps({"instance": instance, "prediction": prediction}))
        shard = directory / f"prediction.results-{index:05d}-of-{len(shards):05d}"
        shard.write_text("\n".join(lines) + "\n")
    (directory / "prediction.errors_stats-00000-of-00001").write_text("")


@pytest.fixture(scope="module")
def automl_predictions(penguins_chain, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A batch prediction output directory in Vertex's format holding our model's own
    predictions of the test rows (what TFMA computed through the signature it calls), as if
    AutoML had made them; and those probabilities."""
    config, paths, _ = penguins_chain
    classes = read_label_classes(paths["transform"])
    test = read_split(paths["data"], "test")
    probabilities = _model_probabilities(paths["model"], paths["evaluation"])
    directory = tmp_path_factory.mktemp("automl") / "predictions"
    _write_batch_output(config, directory, probabilities, classes, test)
    return directory, probabilities


def test_automl_predictions_evaluate_to_our_models_tfma_numbers(
    penguins_chain, automl_predictions, tmp_path: Path
) -> None:
    config, paths, results = penguins_chain
    ours = results["evaluate"]
    classes = read_label_classes(paths["transform"])
    test = read_split(paths["data"], "test")
    predictions, probabilities = automl_predictions
    assert np.allclose(read_automl_predictions(predictions, classes, len(test)), probabilities)

    challenger = run_evaluate_challenger(
        config, paths["data"], paths["transform"], predictions, tmp_path / "challenger"
    )
    assert challenger["examples"] == ours["examples"] == len(test)
    assert set(challenger["metrics"]) == set(ours["metrics"])  # overall and every slice
    for slice_name, metrics in ours["metrics"].items():
        assert challenger["metrics"][slice_name] == pytest.approx(metrics, abs=1e-6), slice_name
    assert challenger["confusion_matrix"] == ours["confusion_matrix"]
    assert challenger["baselines"] == ours["baselines"]
    assert challenger["fairness"] == ours["fairness"]
    assert challenger["gates"] == ours["gates"]
    assert challenger["blessed"] == ours["blessed"]

    # Same figures on the same rows: a tie keeps our model.
    tie = run_compare(config, paths["evaluation"], tmp_path / "challenger", tmp_path / "cmp")
    assert tie["winner"] == "ours" and tie["model_blessed"] and not tie["challenger_blessed"]
    assert json.loads((tmp_path / "cmp" / "comparison.json").read_text()) == tie


def _model_probabilities(model_dir: Path, evaluation_dir: Path) -> np.ndarray:
    """Our SavedModel's probabilities on the examples the evaluate step wrote, through the
    `serving_tf_example` signature TFMA calls."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(model_dir))
    examples = tf.data.TFRecordDataset(str(evaluation_dir / "test_examples.tfrecord")).batch(1000)
    signature = loaded.signatures["serving_tf_example"]
    return np.concatenate(
        [signature(examples=batch)["probabilities"].numpy() for batch in examples]
    )


def _summary(
    blessed: bool, value: float | None, failure: str = "", champion: float | None = None
) -> dict:
    overall = {} if value is None else {"accuracy": value}
    summary = {"blessed": blessed, "metrics": {"overall": overall}, "failures": [failure]}
    if not blessed:
        return summary
    summary["failures"] = []
    if champion is not None:
        summary.update(has_baseline=True, baseline_metrics={"accuracy": champion})
    return summary


def test_the_comparison_blesses_the_better_model(tmp_path: Path) -> None:
    config = config_in(tmp_path, "penguins")  # success metric: accuracy
    better = compare_with_challenger(config, _summary(True, 0.95), _summary(True, 0.97), "m@1")
    assert better["winner"] == "challenger" and better["challenger_blessed"]
    assert not better["model_blessed"]
    assert better["challenger"] == {"blessed": True, "accuracy": 0.97, "model": "m@1", "gates": []}
    assert "AutoML accuracy 0.9700 > ours 0.9500" in better["detail"]
    worse = compare_with_challenger(config, _summary(True, 0.97), _summary(True, 0.95))
    assert worse["winner"] == "ours" and worse["model_blessed"]
    tie = compare_with_challenger(config, _summary(True, 0.97), _summary(True, 0.97))
    assert tie["winner"] == "ours"
    # The challenger must pass its own gates, however good its figure.
    failed = compare_with_challenger(
        config, _summary(True, 0.9), _summary(False, 0.99, "fairness: gap 0.3")
    )
    assert failed["winner"] == "ours" and "fairness: gap 0.3" in failed["detail"]
    ours_failed = compare_with_challenger(
        config, _summary(False, 0.99, "beats baselines: no"), _summary(True, 0.9)
    )
    assert ours_failed["winner"] == "challenger" and not ours_failed["model_blessed"]
    neither = compare_with_challenger(config, _summary(False, 0.5, "x"), _summary(False, 0.6, "y"))
    assert neither["winner"] == "neither" and not neither["model_blessed"]
    assert not neither["challenger_blessed"]
    undefined = compare_with_challenger(config, _summary(True, 0.9), _summary(True, None))
    assert undefined["winner"] == "ours"


def test_the_challenger_must_not_fall_below_the_champion_either(tmp_path: Path) -> None:
    """Penguins: evaluation.change_threshold accuracy, max_degradation 0.02. Our evaluation
    measured the champion on the same rows; the challenger gets the same change threshold."""
    config = config_in(tmp_path, "penguins")
    # Our model failed its gates (it fell below the champion); AutoML is better than ours but
    # 0.05 below the champion: neither is blessed.
    ours = _summary(False, 0.90, "evaluation thresholds: accuracy change")
    ours.update(has_baseline=True, baseline_metrics={"accuracy": 0.99})
    result = compare_with_challenger(config, ours, _summary(True, 0.94))
    assert result["winner"] == "neither" and not result["challenger_blessed"]
    (gate,) = [g for g in result["challenger"]["gates"] if g["name"] == "change vs champion"]
    assert not gate["passed"] and "AutoML accuracy 0.9400 vs champion 0.9900" in gate["detail"]
    # Within the allowed degradation, the better model is the challenger.
    within = compare_with_challenger(
        config, _summary(True, 0.97, champion=0.98), _summary(True, 0.975)
    )
    assert within["winner"] == "challenger"
    assert within["challenger"]["gates"][-1]["passed"]


def _line(row: object, classes: list[str], scores: list[float]) -> str:
    return json.dumps(
        {"instance": {ROW_ID_COLUMN: row}, "prediction": {"classes": classes, "scores": scores}}
    )


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["{not json"], r"prediction\.results-00000-of-00001:1: not JSON"),
        (['{"prediction": {}}'], r":1: expected an object with 'instance' and 'prediction'"),
        (
            [_line(0, ["a", "b"], [0.5, 0.5]), _line("x", ["a", "b"], [1, 0])],
            r":2: mlops_row_id is 'x'",
        ),
        (
            [_line(0, ["a", "b"], [0.5, 0.5]), _line(0, ["a", "b"], [1, 0])],
            r":2: row 0 was already predicted at .*:1",
        ),
        ([_line(0, ["a", "c"], [0.5, 0.5])], r":1: no score for classes \['b'\]"),
        (
            [_line(0, ["a", "b"], [0.5])],
            r":1: 'classes' and 'scores' must be lists of the same length",
        ),
        ([_line(0, ["a", "b"], [0.5, "high"])], r":1: score of class 'b' is 'high'"),
        (
            [_line(5, ["a", "b"], [0.5, 0.5])],
            r":1: mlops_row_id 5 is not a row of the test split \(2 rows\)",
        ),
        (
            [_line(0, ["a", "b"], [0.5, 0.5])],
            r"no prediction for 1 of 2 test rows \(mlops_row_id \[1\]\)",
        ),
    ],
)
def test_malformed_prediction_files_name_the_file_and_line(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    (tmp_path / "prediction.results-00000-of-00001").write_text("\n".join(lines) + "\n")
    with pytest.raises(AutoMLPredictionError, match=message):
        read_automl_predictions(tmp_path, ["a", "b"], 2)


def test_failed_rows_and_a_missing_output_are_errors(tmp_path: Path) -> None:
    with pytest.raises(AutoMLPredictionError, match=r"no prediction\.results-\* files in"):
        read_automl_predictions(tmp_path, ["a", "b"], 1)
    (tmp_path / "prediction.results-00000-of-00001").write_text(_line("0", ["b", "a"], [0.2, 0.8]))
    assert read_automl_predictions(tmp_path, ["a", "b"], 1).tolist() == [[0.8, 0.2]]
    errors = tmp_path / "prediction.errors_stats-00000-of-00001"
    errors.write_text('{"errorMessage": "bad value", "count": 1}\n')
    with pytest.raises(
        AutoMLPredictionError, match=r"errors_stats-00000-of-00001:1: batch prediction failed"
    ):
        read_automl_predictions(tmp_path, ["a", "b"], 1)


@pytest.mark.slow
def test_the_challenger_components_run_through_kfp_local(
    penguins_chain, automl_predictions, tmp_path: Path
) -> None:
    """Our three challenger components (the GCPC ops between them need Vertex) as KFP tasks on
    the chain's outputs and the prediction files."""
    from google_cloud_pipeline_components.types.artifact_types import VertexModel
    from kfp import dsl, local

    from components.ops import make_ops

    config, paths, _ = penguins_chain
    ops = make_ops(config.vertex.image)
    resource = "projects/p/locations/europe-west4/models/7@1"

    def imported(path: Path, artifact_class=dsl.Artifact):  # noqa: ANN001, ANN202
        return dsl.importer(artifact_uri=str(path), artifact_class=artifact_class).output

    @dsl.pipeline(name="automl-challenger-components")
    def challenger_components(config_json: str) -> None:
        dataset = imported(paths["data"], dsl.Dataset)
        ops.automl_export(config_json=config_json, dataset=dataset)
        evaluated = ops.evaluate_challenger(
            config_json=config_json,
            step_log="",
            dataset=dataset,
            transform_graph=imported(paths["transform"]),
            predictions=imported(automl_predictions[0]),
        )
        model = dsl.importer(
            artifact_uri=f"https://europe-west4-aiplatform.googleapis.com/v1/{resource}",
            artifact_class=VertexModel,
            metadata={"resourceName": resource},
        ).output
        ops.compare_challenger(
            config_json=config_json,
            evaluation=imported(paths["evaluation"]),
            challenger_evaluation=evaluated.outputs["evaluation"],
            challenger_model=model,
        )

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "kfp-root"),
        raise_on_error=True,
    )
    challenger_components(config_json=config.to_json())
    outputs = {
        path.parent.name: json.loads(path.read_text())
        for path in (tmp_path / "kfp-root").rglob("executor_output.json")
    }
    exported = outputs["automl-export"]["parameterValues"]
    assert exported["training_uri"].endswith("/training_csv/automl_training.csv")
    assert Path(exported["training_uri"]).is_file()
    (test_uri,) = exported["test_uris"]
    assert test_uri.endswith("/test_csv/automl_test.csv") and Path(test_uri).is_file()
    assert exported["predictions_prefix"].endswith("/automl-predictions")
    assert outputs["evaluate-challenger"]["parameterValues"]["blessed"] is True
    compared = outputs["compare-challenger"]
    assert compared["parameterValues"]["model_blessed"] is True  # a tie keeps ours
    comparison = compared["artifacts"]["comparison"]["artifacts"][0]
    assert comparison["metadata"]["winner"] == "ours"
    result = json.loads(Path(comparison["uri"], "comparison.json").read_text())
    assert result["challenger"]["model"] == resource
