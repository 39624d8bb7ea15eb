"""The training pipeline, written once: ingest -> validate -> transform -> train -> evaluate
(against the champion) -> explain -> register -> report, for the `local` and `vertex` targets.

Steps that only exist on Google Cloud are chosen here, at build time, with the same inputs and
outputs as their local twins: training becomes a Vertex custom job (machine type, accelerators and
replicas from config) and registration uploads to Vertex AI Model Registry under the parent model
found by label, with the `champion` alias. With `vertex.automl_challenger.enabled`, an AutoML
Tabular model trained on the same split is evaluated the same way and the better one is blessed
(`_automl_challenger`); AutoML exists on Vertex only, so the local pipeline runs without it and
says so when it is built.
"""

import warnings

from kfp import dsl

from components.ops import make_op, make_ops
from mlops.config import PipelineConfig
from pipelines.builders import check_target

LOCAL_WITHOUT_CHALLENGER = (
    "vertex.automl_challenger.enabled: AutoML Tabular exists on Vertex AI only, so the local "
    "pipeline trains, evaluates and blesses our model alone (compile with --target vertex for "
    "the challenger)"
)


def pipeline_name(config: PipelineConfig) -> str:
    return f"{config.name}-training"


def build_training_pipeline(config: PipelineConfig, target: str = "local"):
    """Return the `@dsl.pipeline` for `config` on `target`. The config is the default of the
    `config_json` parameter, so a compiled template can be rerun with another config."""
    check_target(target)
    ops = make_ops(config.vertex.image)
    vertex = config.vertex
    challenger = target == "vertex" and vertex.automl_challenger.enabled
    if vertex.automl_challenger.enabled and target != "vertex":
        warnings.warn(LOCAL_WITHOUT_CHALLENGER, stacklevel=2)

    if target == "vertex":
        from google_cloud_pipeline_components.v1.custom_job import (
            create_custom_training_job_from_component,
        )

        pool = vertex.training
        # The custom job's project and location default to the pipeline job's: one region.
        train_op = create_custom_training_job_from_component(
            make_op("train", vertex.training_image),  # the GPU image when accelerators are set
            display_name=f"{config.name}-train",
            machine_type=pool.machine_type,
            accelerator_type=pool.accelerator_type or "",
            accelerator_count=pool.accelerator_count if pool.accelerator_type else 1,
            replica_count=pool.replica_count,
            service_account=vertex.service_account or "",
            network=vertex.network or "",
            encryption_spec_key_name=vertex.encryption_key or "",
            # Vertex AI TensorBoard needs the job's service account (check_vertex_ready); the
            # job then sets AIP_TENSORBOARD_LOG_DIR under its base output directory.
            tensorboard=vertex.tensorboard or "",
        )
    else:
        train_op = ops.train

    @dsl.pipeline(
        name=pipeline_name(config),
        description=f"Training pipeline for '{config.name}': {config.framing.objective}",
    )
    def training_pipeline(
        config_json: str = config.to_json(),
        step_log: str = "",
        run_id: str = dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
    ) -> None:
        common = {"config_json": config_json, "step_log": step_log}
        ingest = ops.ingest(**common).set_display_name("ingest")
        dataset = ingest.outputs["dataset"]
        validate = ops.validate_data(dataset=dataset, **common).set_display_name("validate-data")
        transform = ops.transform(
            dataset=dataset, schema=validate.outputs["schema"], **common
        ).set_display_name("transform")
        transform_graph = transform.outputs["transform_graph"]
        tuning = None
        if config.tuning.enabled:
            # From here on the steps get the config with the best trial's parameters.
            tuned = _tune(config, target, ops, dataset, transform_graph, **common)
            tuning = tuned.outputs["tuning"]
            common = {**common, "config_json": tuned.outputs["Output"]}
        train_args = {}
        if target == "vertex" and vertex.tensorboard:
            # One directory per run under the pipeline root, so runs' logs never mix.
            root = str(vertex.pipeline_root).rstrip("/")
            train_args["base_output_directory"] = f"{root}/tensorboard/{run_id}"
        if target == "vertex":
            champion = ops.find_champion_vertex(config_json=common["config_json"])
        else:
            champion = ops.find_champion_local(config_json=common["config_json"])
        champion.set_display_name("find-champion").set_caching_options(False)
        if config.training.warm_start:
            # What training starts from; only then, so a new champion does not make the
            # cached train step of a cold-start config stale.
            train_args["champion_model_uri"] = champion.output
        train = train_op(
            dataset=dataset, transform_graph=transform_graph, **train_args, **common
        ).set_display_name("train")
        model = train.outputs["model"]
        evaluate = ops.evaluate(
            baseline_model_uri=champion.output, dataset=dataset, model=model, **common
        ).set_display_name("evaluate")
        evaluation = evaluate.outputs["evaluation"]
        explanation = ops.explain(dataset=dataset, model=model, **common)
        explanation = explanation.set_display_name("explain").outputs["explanation"]
        blessed = evaluate.outputs["blessed"]
        if challenger:
            blessed = _automl_challenger(
                config, ops, dataset, transform_graph, evaluation, **common
            )
        if target == "vertex":
            _register_on_vertex(
                config,
                ops,
                model,
                blessed,
                common["config_json"],
                run_id=run_id,
                dataset=dataset,
                evaluation=evaluation,
                statistics=validate.outputs["statistics"],
                schema=validate.outputs["schema"],
                explanation=explanation,
            )
        else:
            ops.register_local(
                run_id=run_id,
                dataset=dataset,
                model=model,
                evaluation=evaluation,
                statistics=validate.outputs["statistics"],
                schema=validate.outputs["schema"],
                explanation=explanation,
                **common,
            ).set_display_name("register").set_caching_options(False)
        ops.report(
            statistics=validate.outputs["statistics"],
            anomalies=validate.outputs["anomalies"],
            model=model,
            evaluation=evaluation,
            explanation=explanation,
            **({"tuning": tuning} if tuning is not None else {}),
            **common,
        ).set_display_name("report")

    return training_pipeline


def _register_on_vertex(  # noqa: ANN001
    config: PipelineConfig, ops, model, blessed, config_json, **record
) -> None:
    """Upload the blessed model to Vertex AI Model Registry as a new version aliased champion.

    The parent model is looked up at run time by label (`vertex_parent_model`: "" before the first
    upload, which creates the model), and the upload is our own thin op over
    `aiplatform.Model.upload` rather than GCPC's `ModelUploadOp`: that op takes the parent as an
    optional `VertexModel` artifact, which a run-time "maybe" cannot feed without two gated copies
    of the upload, and it has neither `version_description` nor `is_default_version`, where the
    version records (as JSON) the statistics, schema, evaluation and training data URIs that
    monitoring reads back. `record` holds run_id, dataset, evaluation, statistics, schema and
    explanation (the model card is built from them)."""
    vertex = config.vertex
    with dsl.If(blessed == True, name="blessed"):  # noqa: E712 - KFP builds a condition from ==
        serving = ops.vertex_serving_model(
            config_json=config_json, serving_image=vertex.serving_image or vertex.image, model=model
        ).set_display_name("serving-model")
        parent = ops.vertex_parent_model(config_json=config_json)
        parent.set_display_name("parent-model").set_caching_options(False)
        ops.register_vertex(
            config_json=config_json,
            parent_model=parent.output,
            unmanaged_model=serving.outputs["unmanaged_model"],
            **record,
        ).set_display_name("register").set_caching_options(False)


def _tune(config: PipelineConfig, target: str, ops, dataset, transform_graph, **common):  # noqa: ANN001, ANN202
    """The tuning task whose `Output` is the tuned config JSON and `tuning` the trials: an
    Optuna search in one step locally; on Vertex a hyperparameter tuning job (Vizier) whose
    trials run `components.tune` in the project image, read back by a small step."""
    if target != "vertex":
        return ops.tune(
            dataset=dataset, transform_graph=transform_graph, **common
        ).set_display_name("tune")
    from google_cloud_pipeline_components.v1.hyperparameter_tuning_job import (
        HyperparameterTuningJobRunOp,
    )

    from mlops.tuning import VERTEX_ALGORITHMS, study_spec_metrics, study_spec_parameters

    tuning, vertex = config.tuning, config.vertex
    specs = ops.vertex_tuning_specs(
        config_json=common["config_json"], dataset=dataset, transform_graph=transform_graph
    ).set_display_name("tuning-specs")
    job = HyperparameterTuningJobRunOp(
        display_name=f"{config.name}-tune",
        base_output_directory=specs.outputs["base_output_directory"],
        worker_pool_specs=specs.outputs["worker_pool_specs"],
        study_spec_metrics=study_spec_metrics(tuning),
        study_spec_parameters=study_spec_parameters(tuning),
        study_spec_algorithm=VERTEX_ALGORITHMS[tuning.algorithm],
        max_trial_count=tuning.max_trials,
        parallel_trial_count=tuning.parallel_trials,
        location=vertex.region,
        service_account=vertex.service_account or "",
        network=vertex.network or "",
        encryption_spec_key_name=vertex.encryption_key or "",
    ).set_display_name("tune")
    return ops.vertex_tuning_result(
        config_json=common["config_json"], gcp_resources=job.outputs["gcp_resources"]
    ).set_display_name("tuning-result")


def _automl_challenger(  # noqa: ANN202
    config: PipelineConfig,
    ops,  # noqa: ANN001
    dataset,  # noqa: ANN001
    transform_graph,  # noqa: ANN001
    evaluation,  # noqa: ANN001
    config_json,  # noqa: ANN001
    step_log,  # noqa: ANN001
):
    """AutoML Tabular on our split, evaluated like our model; returns the channel of our model's
    final blessing (withdrawn when the challenger is better).

    Our splits go to Cloud Storage as CSV with a predefined split column; GCPC creates the
    tabular dataset, trains AutoML on it (our features only, typed as ours, with the budget and
    objective from config) and batch-predicts the test split; `evaluate_challenger` runs the
    evaluate step's code on those predictions and `compare_challenger` applies the change
    threshold against the champion (from our evaluation's figures of it) and picks the better
    model on `framing.success_metric`."""
    from google_cloud_pipeline_components.v1.automl.training_job import (
        AutoMLTabularTrainingJobRunOp,
    )
    from google_cloud_pipeline_components.v1.batch_predict_job import ModelBatchPredictOp
    from google_cloud_pipeline_components.v1.dataset import TabularDatasetCreateOp

    from components.automl import (
        CHALLENGER_LABEL,
        SPLIT_COLUMN,
        column_specs,
        target_column,
    )

    vertex, settings = config.vertex, config.vertex.automl_challenger
    name = f"{config.name}-automl"
    labels = {CHALLENGER_LABEL: config.name}
    where = {"project": vertex.project, "location": vertex.region}
    key = vertex.encryption_key or ""
    export = ops.automl_export(config_json=config_json, dataset=dataset)
    export.set_display_name("automl-export")
    created = TabularDatasetCreateOp(
        display_name=name,
        gcs_source=export.outputs["training_uri"],
        labels=labels,
        **({"encryption_spec_key_name": key} if key else {}),
        **where,
    ).set_display_name("automl-dataset")
    objective = (
        {"optimization_objective": settings.optimization_objective}
        if settings.optimization_objective
        else {}
    )
    keys = (
        {"training_encryption_spec_key_name": key, "model_encryption_spec_key_name": key}
        if key
        else {}
    )
    trained = AutoMLTabularTrainingJobRunOp(
        display_name=name,
        optimization_prediction_type="classification",
        dataset=created.outputs["dataset"],
        target_column=target_column(config),
        column_specs=column_specs(config),
        predefined_split_column_name=SPLIT_COLUMN,
        budget_milli_node_hours=settings.budget_milli_node_hours,
        model_display_name=name,
        labels=labels,
        model_labels=labels,
        **objective,
        **keys,
        **where,
    ).set_display_name("automl-train")
    predicted = ModelBatchPredictOp(
        job_display_name=f"{name}-test",
        model=trained.outputs["model"],
        instances_format="csv",
        predictions_format="jsonl",
        gcs_source_uris=export.outputs["test_uris"],
        gcs_destination_output_uri_prefix=export.outputs["predictions_prefix"],
        service_account=vertex.service_account or "",
        encryption_spec_key_name=key,
        labels=labels,
        **where,
    ).set_display_name("automl-batch-predict")
    evaluated = ops.evaluate_challenger(
        config_json=config_json,
        step_log=step_log,
        dataset=dataset,
        transform_graph=transform_graph,
        predictions=predicted.outputs["gcs_output_directory"],
    ).set_display_name("evaluate-automl")
    compared = ops.compare_challenger(
        config_json=config_json,
        evaluation=evaluation,
        challenger_evaluation=evaluated.outputs["evaluation"],
        challenger_model=trained.outputs["model"],
    ).set_display_name("compare-challenger")
    return compared.outputs["model_blessed"]
