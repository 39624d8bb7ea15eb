"""Thin KFP lightweight components over the step functions.

Each body parses the config, calls one plain function and adapts its result to KFP outputs; the
logic lives in the step modules. `make_ops(image)` turns them into components whose `base_image`
is the project image (it has this package installed, hence `install_kfp_package=False`).
Bodies are serialised into the pipeline spec, so they import what they use; KFP reads the
annotations at definition time, so this module must not use `from __future__ import annotations`.
"""

from typing import NamedTuple

from google_cloud_pipeline_components.types.artifact_types import (
    UnmanagedContainerModel,
    VertexEndpoint,
    VertexModel,
)
from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output


def ingest(config_json: str, step_log: str, dataset: Output[Dataset]) -> None:
    from components.ingest import run_ingest
    from mlops.config import PipelineConfig
    from mlops.steps import run_step

    config = PipelineConfig.from_json(config_json)
    summary = run_step(step_log, "ingest", run_ingest, config, dataset.path)
    dataset.metadata.update({"rows": summary["rows"], "source": summary["source"]})


def validate_data(
    config_json: str,
    step_log: str,
    dataset: Input[Dataset],
    statistics: Output[Artifact],
    schema: Output[Artifact],
    anomalies: Output[Artifact],
) -> None:
    from components.validate import run_data_validation
    from mlops.config import PipelineConfig
    from mlops.steps import run_step

    config = PipelineConfig.from_json(config_json)
    summary = run_step(
        step_log,
        "validate_data",
        run_data_validation,
        config,
        dataset.path,
        statistics.path,
        schema.path,
        anomalies.path,
    )
    anomalies.metadata["schema_source"] = summary["schema_source"]


def transform(
    config_json: str,
    step_log: str,
    dataset: Input[Dataset],
    schema: Input[Artifact],
    transform_graph: Output[Artifact],
) -> None:
    from components.transform import run_transform
    from mlops.config import PipelineConfig
    from mlops.steps import exit_without_teardown, run_step

    config = PipelineConfig.from_json(config_json)
    summary = run_step(
        step_log, "transform", run_transform, config, dataset.path, transform_graph.path
    )
    transform_graph.metadata.update(summary)
    # TFT/Beam can crash the interpreter at shutdown after all output is written.
    exit_without_teardown()


def train(
    config_json: str,
    step_log: str,
    dataset: Input[Dataset],
    transform_graph: Input[Artifact],
    model: Output[Model],
    training_logs: Output[Artifact],
    training_metrics: Output[Metrics],
    champion_model_uri: str = "",
) -> None:
    from components.train import run_train
    from mlops.config import PipelineConfig
    from mlops.steps import exit_without_teardown, run_step

    config = PipelineConfig.from_json(config_json)
    summary = run_step(
        step_log,
        "train",
        run_train,
        config,
        dataset.path,
        transform_graph.path,
        model.path,
        training_logs.path,
        champion_model_uri or None,  # what training.warm_start starts from
    )
    model.metadata.update({"framework": "tensorflow", "classes": summary["classes"]})
    for key in ("eval_accuracy", "eval_loss", "epochs_run"):
        training_metrics.log_metric(key, summary[key])
    exit_without_teardown()


def tune(
    config_json: str,
    step_log: str,
    dataset: Input[Dataset],
    transform_graph: Input[Artifact],
    tuning: Output[Artifact],
) -> str:
    from components.tune import run_tuning, tuned_config_json
    from mlops.config import PipelineConfig
    from mlops.steps import exit_without_teardown, run_step

    config = PipelineConfig.from_json(config_json)
    summary = run_step(
        step_log, "tune", run_tuning, config, dataset.path, transform_graph.path, tuning.path
    )
    tuning.metadata.update(summary)
    exit_without_teardown()
    return tuned_config_json(tuning.path)


def vertex_tuning_specs(
    config_json: str, dataset: Input[Dataset], transform_graph: Input[Artifact]
) -> NamedTuple("TuningSpecs", [("worker_pool_specs", list), ("base_output_directory", str)]):
    """What the hyperparameter tuning job needs that is only known at run time: where the
    step's inputs are, and a directory for the trials beside the run's other outputs."""
    from collections import namedtuple

    from components.tune import vertex_trial_worker_pool_specs
    from mlops.config import PipelineConfig

    config = PipelineConfig.from_json(config_json)
    specs = vertex_trial_worker_pool_specs(config, dataset.path, transform_graph.path)
    outputs = namedtuple("TuningSpecs", ["worker_pool_specs", "base_output_directory"])
    return outputs(specs, dataset.uri.rsplit("/", 2)[0] + "/tuning-trials")


def vertex_tuning_result(config_json: str, gcp_resources: str, tuning: Output[Artifact]) -> str:
    from components.tune import tuned_config_json
    from components.tune import vertex_tuning_result as read_result
    from mlops.config import PipelineConfig

    summary = read_result(PipelineConfig.from_json(config_json), gcp_resources, tuning.path)
    tuning.metadata.update(summary)
    return tuned_config_json(tuning.path)


def find_champion_local(config_json: str) -> str:
    from components.find_champion import find_champion_local as find
    from mlops.config import PipelineConfig

    return find(PipelineConfig.from_json(config_json))


def find_champion_vertex(config_json: str) -> str:
    from components.find_champion import find_champion_vertex as find
    from mlops.config import PipelineConfig

    return find(PipelineConfig.from_json(config_json))


def evaluate(
    config_json: str,
    step_log: str,
    baseline_model_uri: str,
    dataset: Input[Dataset],
    model: Input[Model],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
) -> NamedTuple("EvaluateOutputs", [("blessed", bool)]):
    from collections import namedtuple

    from components.evaluate import log_evaluation, run_evaluate
    from mlops.config import PipelineConfig
    from mlops.steps import exit_without_teardown, run_step

    config = PipelineConfig.from_json(config_json)
    summary = run_step(
        step_log,
        "evaluate",
        run_evaluate,
        config,
        dataset.path,
        model.path,
        evaluation.path,
        baseline_model_uri or None,
    )
    log_evaluation(summary, evaluation, metrics, confusion)
    exit_without_teardown()
    return namedtuple("EvaluateOutputs", ["blessed"])(bool(summary["blessed"]))


def explain(
    config_json: str,
    step_log: str,
    dataset: Input[Dataset],
    model: Input[Model],
    explanation: Output[Artifact],
) -> None:
    from components.explain import run_explain
    from mlops.config import PipelineConfig
    from mlops.steps import exit_without_teardown, run_step

    config = PipelineConfig.from_json(config_json)
    summary = run_step(
        step_log, "explain", run_explain, config, dataset.path, model.path, explanation.path
    )
    explanation.metadata.update(summary)
    exit_without_teardown()


def register_local(
    config_json: str,
    step_log: str,
    run_id: str,
    dataset: Input[Dataset],
    model: Input[Model],
    evaluation: Input[Artifact],
    statistics: Input[Artifact],
    schema: Input[Artifact],
    explanation: Input[Artifact],
) -> str:
    import json

    from components.register import run_register_local
    from mlops.config import PipelineConfig
    from mlops.steps import run_step

    config = PipelineConfig.from_json(config_json)
    result = run_step(
        step_log,
        "register",
        run_register_local,
        config,
        model.path,
        evaluation.path,
        run_id,
        dataset.path,
        statistics.path,
        schema.path,
        explanation.path,
    )
    return json.dumps(result)


def vertex_parent_model(config_json: str) -> str:
    """The Vertex model new versions go under (found by label), or "" before the first upload."""
    from components.find_champion import vertex_parent_model as find
    from mlops.config import PipelineConfig

    return find(PipelineConfig.from_json(config_json))


def register_vertex(
    config_json: str,
    run_id: str,
    parent_model: str,
    dataset: Input[Dataset],
    evaluation: Input[Artifact],
    statistics: Input[Artifact],
    schema: Input[Artifact],
    explanation: Input[Artifact],
    unmanaged_model: Input[UnmanagedContainerModel],
    vertex_model: Output[VertexModel],
    training_data: Output[Dataset],
    model_card: Output[HTML],
) -> None:
    """Upload the blessed model to Vertex AI Model Registry (under parent_model when not ""),
    labelled, aliased champion, with what monitoring needs and its model card's URIs recorded in
    its version description; the card is this step's HTML artifact."""
    from components.register import (
        monitoring_training_data,
        run_register_vertex,
        vertex_version_record,
        write_vertex_model_card,
    )
    from mlops.config import PipelineConfig

    config = PipelineConfig.from_json(config_json)
    card = write_vertex_model_card(
        config,
        run_id,
        model_card.uri,
        evaluation.path,
        explanation.path,
        dataset.path,
        unmanaged_model.path,  # the SavedModel, with what training recorded beside it
    )
    record = vertex_version_record(
        config,
        run_id,
        model_uri=unmanaged_model.uri,
        evaluation_uri=evaluation.uri,
        statistics_uri=statistics.uri,
        schema_uri=schema.uri,
        training_data_uri=monitoring_training_data(
            config, dataset.path, training_data.path, training_data.uri
        ),
        model_card=card,
    )
    from mlops.artifacts import read_split
    from mlops.attributions import baseline_row

    baseline = baseline_row(read_split(dataset.path, "train"), config.features)
    uploaded = run_register_vertex(
        config,
        parent_model,
        unmanaged_model.metadata["containerSpec"],
        record,
        explanation_baseline=baseline,
    )
    resource = f"{uploaded.resource_name}@{uploaded.version_id}"
    vertex_model.uri = f"https://{config.vertex.region}-aiplatform.googleapis.com/v1/{resource}"
    vertex_model.metadata.update({"resourceName": resource, **record})


def vertex_champion_model(config_json: str, model: Output[VertexModel]) -> None:
    """The Vertex model version aliased champion (found by label), as a `google.VertexModel` for
    GCPC's deploy and batch-prediction ops; pinned to its version id for the whole run."""
    from components.find_champion import vertex_champion
    from mlops.config import PipelineConfig
    from mlops.registry import CHAMPION

    config = PipelineConfig.from_json(config_json)
    champion = vertex_champion(config)
    if champion is None:
        raise LookupError(
            f"no Vertex AI model version of {config.name!r} is aliased {CHAMPION!r}: run the "
            "training pipeline on Vertex first"
        )
    resource = f"{champion.resource_name}@{champion.version_id}"
    model.uri = f"https://{config.vertex.region}-aiplatform.googleapis.com/v1/{resource}"
    model.metadata["resourceName"] = resource


def vertex_serving_model(
    config_json: str,
    serving_image: str,
    model: Input[Model],
    unmanaged_model: Output[UnmanagedContainerModel],
) -> None:
    """Point a `google.UnmanagedContainerModel` at the SavedModel, with the serving container the
    upload (`register_vertex`) gives Vertex: our prediction server, the model arriving as
    AIP_STORAGE_URI."""
    unmanaged_model.uri = model.uri
    unmanaged_model.metadata["containerSpec"] = {
        "imageUri": serving_image,
        "command": ["python", "-m", "mlops.serving"],
        "args": ["--config-json", config_json],  # the run's config (also saved in the model)
        "healthRoute": "/health",
        "predictRoute": "/predict",
        "ports": [{"containerPort": 8080}],
    }


def report(
    config_json: str,
    step_log: str,
    statistics: Input[Artifact],
    anomalies: Input[Artifact],
    model: Input[Model],
    evaluation: Input[Artifact],
    explanation: Input[Artifact],
    report: Output[HTML],
    tuning: Input[Artifact] = None,
) -> None:
    from components.report import run_report
    from mlops.config import PipelineConfig
    from mlops.steps import run_step

    config = PipelineConfig.from_json(config_json)
    run_step(
        step_log,
        "report",
        run_report,
        config,
        statistics.path,
        anomalies.path,
        model.path,
        evaluation.path,
        explanation.path,
        report.path,
        tuning.path if tuning is not None else None,
    )


def deploy_local(config_json: str, step_log: str, model_version: str, canary_percent: int) -> str:
    import json

    from components.deploy import run_deploy_local
    from mlops.config import PipelineConfig
    from mlops.steps import run_step

    config = PipelineConfig.from_json(config_json)
    canary = None if canary_percent < 0 else canary_percent
    record = run_step(step_log, "deploy", run_deploy_local, config, model_version, canary)
    return json.dumps(record["traffic"])


def batch_predict_local(
    config_json: str,
    step_log: str,
    model_version: str,
    source: str,
    id_column: str,
    predictions: Output[Dataset],
) -> None:
    from components.batch_predict import run_batch_predict
    from mlops.config import PipelineConfig
    from mlops.registry import resolve_version
    from mlops.steps import exit_without_teardown, run_step

    config = PipelineConfig.from_json(config_json)
    version = resolve_version(config, model_version)
    summary = run_step(
        step_log,
        "batch_predict",
        run_batch_predict,
        config,
        str(version.model_dir),
        source,
        predictions.path,
        id_column,
    )
    predictions.metadata.update({"rows": summary["rows"], "model_version": version.version})
    exit_without_teardown()


def vertex_request_logging(config_json: str, endpoint: Input[VertexEndpoint]) -> None:
    from components.deploy import enable_vertex_request_logging
    from mlops.config import PipelineConfig

    config = PipelineConfig.from_json(config_json)
    enable_vertex_request_logging(config, endpoint.metadata["resourceName"])


def monitor(
    config_json: str,
    step_log: str,
    target: str,
    source: str,
    previous_source: str,
    model_version: str,
    reference_json: str,
    pipeline_root: str,
    monitoring: Output[Artifact],
) -> None:
    import json

    from components.monitor import run_monitor_step
    from mlops.config import PipelineConfig
    from mlops.paths import retrain_state_uri
    from mlops.steps import exit_without_teardown, run_step

    config = PipelineConfig.from_json(config_json)
    result = run_step(
        step_log,
        "monitor",
        run_monitor_step,
        config,
        source,
        monitoring.path,
        previous_source,
        model_version,
        reference=json.loads(reference_json) if reference_json else None,
        state_uri=retrain_state_uri(config, target, pipeline_root),
    )
    decision = result["decision"]
    monitoring.metadata.update({"retrain": decision["retrain"], "findings": result["findings"]})
    exit_without_teardown()


def vertex_reference(config_json: str, reference_json: str, training_data_uri: str) -> NamedTuple(
    "VertexReference", [("reference_json", str), ("training_data_uri", str)]
):
    """The champion's training record read from its Vertex model version (reference_json, when
    given, overrides it) and the training data Model Monitoring compares with."""
    import json
    from collections import namedtuple

    from components.monitor import vertex_reference as resolve
    from mlops.config import PipelineConfig

    config = PipelineConfig.from_json(config_json)
    reference = resolve(config, reference_json, training_data_uri)
    outputs = namedtuple("VertexReference", ["reference_json", "training_data_uri"])
    return outputs(json.dumps(reference), reference["training_data_uri"])


def retrain_decision(monitoring: Input[Artifact]) -> bool:
    """The monitoring step's decision as a task's single output (kfp.local resolves `dsl.If`
    conditions only on a task's `Output`)."""
    from mlops.artifacts import read_decision

    return bool(read_decision(monitoring.path)["decision"]["retrain"])


def launch_training(
    config_json: str,
    step_log: str,
    target: str,
    monitoring: Input[Artifact],
    template_path: str,
    project: str,
    region: str,
    pipeline_root: str,
    service_account: str,
) -> str:
    import json

    from components.launch_training import launch_training as launch
    from mlops.artifacts import read_decision
    from mlops.config import PipelineConfig
    from mlops.steps import exit_without_teardown, run_step

    config = PipelineConfig.from_json(config_json)
    decision = read_decision(monitoring.path)["decision"]
    launched = run_step(
        step_log,
        "launch_training",
        launch,
        config,
        target,
        decision["reasons"],
        template_path,
        project=project,
        region=region,
        pipeline_root=pipeline_root,
        service_account=service_account,
    )
    exit_without_teardown()
    return json.dumps(launched)


def vertex_model_monitoring(
    config_json: str, endpoint_resource: str, training_data_uri: str
) -> str:
    from components.monitor import setup_vertex_model_monitoring, vertex_endpoint_resource
    from mlops.config import PipelineConfig

    config = PipelineConfig.from_json(config_json)
    endpoint = endpoint_resource or vertex_endpoint_resource(config)
    job = setup_vertex_model_monitoring(config, endpoint, training_data_uri)
    return job.resource_name


def automl_export(
    config_json: str,
    dataset: Input[Dataset],
    training_csv: Output[Dataset],
    test_csv: Output[Dataset],
) -> NamedTuple(
    "AutoMLExport", [("training_uri", str), ("test_uris", list), ("predictions_prefix", str)]
):
    """Our splits as CSV for the AutoML challenger (`components.automl.export_automl_splits`),
    their gs:// URIs for the dataset and the batch prediction job, and where that job writes
    (beside this step's outputs, so each run has its own)."""
    from collections import namedtuple

    from components.automl import TEST_CSV, TRAINING_CSV, export_automl_splits
    from mlops.config import PipelineConfig

    config = PipelineConfig.from_json(config_json)
    # Each output is a folder holding one .csv file, as AutoML's importers expect.
    training = f"{training_csv.path}/{TRAINING_CSV}"
    summary = export_automl_splits(config, dataset.path, training, f"{test_csv.path}/{TEST_CSV}")
    training_csv.metadata.update(summary)
    outputs = namedtuple("AutoMLExport", ["training_uri", "test_uris", "predictions_prefix"])
    prefix = training_csv.uri.rsplit("/", 1)[0] + "/automl-predictions"
    return outputs(f"{training_csv.uri}/{TRAINING_CSV}", [f"{test_csv.uri}/{TEST_CSV}"], prefix)


def evaluate_challenger(
    config_json: str,
    step_log: str,
    dataset: Input[Dataset],
    transform_graph: Input[Artifact],
    predictions: Input[Artifact],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
) -> NamedTuple("ChallengerOutputs", [("blessed", bool)]):
    """The evaluate step's evaluation and gates on AutoML's batch predictions of the test split
    (`predictions`: the job's output directory)."""
    from collections import namedtuple

    from components.automl import run_evaluate_challenger
    from components.evaluate import log_evaluation
    from mlops.config import PipelineConfig
    from mlops.steps import exit_without_teardown, run_step

    config = PipelineConfig.from_json(config_json)
    summary = run_step(
        step_log,
        "evaluate_challenger",
        run_evaluate_challenger,
        config,
        dataset.path,
        transform_graph.path,
        predictions.path,
        evaluation.path,
    )
    log_evaluation(summary, evaluation, metrics, confusion)
    exit_without_teardown()
    return namedtuple("ChallengerOutputs", ["blessed"])(bool(summary["blessed"]))


def compare_challenger(
    config_json: str,
    evaluation: Input[Artifact],
    challenger_evaluation: Input[Artifact],
    challenger_model: Input[VertexModel],
    comparison: Output[Artifact],
    metrics: Output[Metrics],
) -> NamedTuple("Comparison", [("model_blessed", bool)]):
    """Our model or the AutoML challenger, whichever is better on the same test rows
    (`components.automl.compare_with_challenger`); `model_blessed` gates our registration."""
    from collections import namedtuple

    from components.automl import run_compare
    from mlops.config import PipelineConfig

    config = PipelineConfig.from_json(config_json)
    model = challenger_model.metadata.get("resourceName") or challenger_model.uri
    result = run_compare(
        config, evaluation.path, challenger_evaluation.path, comparison.path, model
    )
    metric = result["metric"]
    for side in ("ours", "challenger"):
        if result[side][metric] is not None:
            metrics.log_metric(f"{side}_{metric}", result[side][metric])
    metrics.log_metric("challenger_won", float(result["challenger_blessed"]))
    comparison.metadata.update({"winner": result["winner"], "detail": result["detail"]})
    return namedtuple("Comparison", ["model_blessed"])(bool(result["model_blessed"]))


STEP_FUNCTIONS = {
    "ingest": ingest,
    "validate_data": validate_data,
    "transform": transform,
    "train": train,
    "tune": tune,
    "vertex_tuning_specs": vertex_tuning_specs,
    "vertex_tuning_result": vertex_tuning_result,
    "find_champion_local": find_champion_local,
    "find_champion_vertex": find_champion_vertex,
    "evaluate": evaluate,
    "explain": explain,
    "register_local": register_local,
    "vertex_parent_model": vertex_parent_model,
    "register_vertex": register_vertex,
    "vertex_champion_model": vertex_champion_model,
    "vertex_serving_model": vertex_serving_model,
    "report": report,
    "deploy_local": deploy_local,
    "batch_predict_local": batch_predict_local,
    "vertex_request_logging": vertex_request_logging,
    "monitor": monitor,
    "vertex_reference": vertex_reference,
    "retrain_decision": retrain_decision,
    "launch_training": launch_training,
    "vertex_model_monitoring": vertex_model_monitoring,
    "automl_export": automl_export,
    "evaluate_challenger": evaluate_challenger,
    "compare_challenger": compare_challenger,
}


class Ops(dict):
    """name -> KFP component, all in one image."""

    def __getattr__(self, name: str):
        return self[name]


def make_op(name: str, image: str):
    """The step `name` as a KFP component running in `image`."""
    return dsl.component(STEP_FUNCTIONS[name], base_image=image, install_kfp_package=False)


def make_ops(image: str) -> Ops:
    return Ops({name: make_op(name, image) for name in STEP_FUNCTIONS})
