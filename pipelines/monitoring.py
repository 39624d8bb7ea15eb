"""The monitoring pipeline, written once for both targets: compare serving data with training data
(skew), with the previous window (drift) and with the schema; check prediction drift and, when
labels arrived, quality; decide whether to retrain and, if so, launch the training pipeline.

Local target: serving data is the local request log (or a batch file), the reference is the local
registry's `model_version`, and retraining runs the local training pipeline. Vertex target: the
same monitoring step on a batch file in Cloud Storage against an explicit `reference_json`, Vertex
AI Model Monitoring set up on the endpoint with the same thresholds, and retraining submitted as a
Vertex pipeline job from the compiled training template.
"""

from kfp import dsl

from components.ops import make_ops
from mlops.config import PipelineConfig
from mlops.registry import CHAMPION
from pipelines.builders import check_target


def monitoring_pipeline_name(config: PipelineConfig) -> str:
    return f"{config.name}-monitoring"


def build_monitoring_pipeline(config: PipelineConfig, target: str = "local"):
    check_target(target)
    ops = make_ops(config.vertex.image)
    on_vertex = target == "vertex"

    @dsl.pipeline(
        name=monitoring_pipeline_name(config),
        description=f"Skew, drift and retraining decision for '{config.name}'"
        + (" on Vertex AI" if on_vertex else ""),
    )
    def monitoring_pipeline(
        config_json: str = config.to_json(),
        step_log: str = "",
        source: str = "",
        previous_source: str = "",
        model_version: str = CHAMPION,
        reference_json: str = "",
        endpoint_resource: str = "",
        training_data_uri: str = config.data.source,
        training_template_uri: str = "",
    ) -> None:
        common = {"config_json": config_json, "step_log": step_log}
        if on_vertex:
            ops.vertex_model_monitoring(
                config_json=config_json,
                endpoint_resource=endpoint_resource,
                training_data_uri=training_data_uri,
            ).set_display_name("vertex-model-monitoring")
        monitor = ops.monitor(
            source=source,
            previous_source=previous_source,
            model_version=model_version,
            reference_json=reference_json,
            **common,
        ).set_display_name("monitor")
        decision = ops.retrain_decision(monitoring=monitor.outputs["monitoring"])
        decision.set_display_name("retrain-decision")
        with dsl.If(decision.output == True, name="retrain"):  # noqa: E712
            launch = ops.launch_training(
                target=target,
                monitoring=monitor.outputs["monitoring"],
                template_path=training_template_uri,
                **common,
            ).set_display_name("launch-training")
        if not on_vertex:  # local state (registry, request logs) changes between runs
            for task in (monitor, decision, launch):
                task.set_caching_options(False)

    return monitoring_pipeline
