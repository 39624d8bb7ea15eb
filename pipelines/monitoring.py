"""The monitoring pipeline: compare serving data with training data (skew), with the previous
window (drift) and with the schema; check prediction drift and, when labels arrived, quality;
decide whether to retrain and, if so, launch the training pipeline.

Local target: serving data is the local request log (or a batch file); retraining runs the local
training pipeline. Vertex target: the same monitoring step on a batch file in Cloud Storage, Vertex
AI Model Monitoring set up on the endpoint with the same thresholds, and retraining submitted as a
Vertex pipeline job from the compiled training template.
"""

from kfp import dsl

from components.ops import make_ops
from mlops.config import PipelineConfig
from mlops.registry import CHAMPION

TARGETS = ("local", "vertex")


def monitoring_pipeline_name(config: PipelineConfig) -> str:
    return f"{config.name}-monitoring"


def build_monitoring_pipeline(config: PipelineConfig, target: str = "local"):
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, not {target!r}")
    ops = make_ops(config.vertex.image)

    if target == "local":

        @dsl.pipeline(
            name=monitoring_pipeline_name(config),
            description=f"Skew, drift and retraining decision for '{config.name}'",
        )
        def local_monitoring(
            config_json: str = config.to_json(),
            step_log: str = "",
            source: str = "",
            previous_source: str = "",
            model_version: str = CHAMPION,
        ) -> None:
            common = {"config_json": config_json, "step_log": step_log}
            monitor = (
                ops.monitor(
                    source=source,
                    previous_source=previous_source,
                    model_version=model_version,
                    reference_json="",
                    **common,
                )
                .set_display_name("monitor")
                .set_caching_options(False)
            )
            decision = ops.retrain_decision(monitoring=monitor.outputs["monitoring"])
            decision.set_display_name("retrain-decision").set_caching_options(False)
            with dsl.If(decision.output == True, name="retrain"):  # noqa: E712
                ops.launch_training(
                    target="local",
                    monitoring=monitor.outputs["monitoring"],
                    template_path="",
                    **common,
                ).set_display_name("launch-training").set_caching_options(False)

        return local_monitoring

    @dsl.pipeline(
        name=monitoring_pipeline_name(config),
        description=f"Skew, drift and retraining decision for '{config.name}' on Vertex AI",
    )
    def vertex_monitoring(
        config_json: str = config.to_json(),
        source: str = "",
        previous_source: str = "",
        reference_json: str = "",
        endpoint_resource: str = "",
        training_data_uri: str = config.data.source,
        training_template_uri: str = "",
    ) -> None:
        common = {"config_json": config_json, "step_log": ""}
        ops.vertex_model_monitoring(
            config_json=config_json,
            endpoint_resource=endpoint_resource,
            training_data_uri=training_data_uri,
        ).set_display_name("vertex-model-monitoring")
        monitor = ops.monitor(
            source=source,
            previous_source=previous_source,
            model_version="",
            reference_json=reference_json,
            **common,
        ).set_display_name("monitor")
        decision = ops.retrain_decision(monitoring=monitor.outputs["monitoring"])
        decision.set_display_name("retrain-decision")
        with dsl.If(decision.output == True, name="retrain"):  # noqa: E712
            ops.launch_training(
                target="vertex",
                monitoring=monitor.outputs["monitoring"],
                template_path=training_template_uri,
                **common,
            ).set_display_name("launch-training")

    return vertex_monitoring
