"""The monitoring pipeline, written once for both targets: compare serving data with training data
(skew), with the previous window (drift) and with the schema; check prediction drift and, when
labels arrived, quality; decide whether to retrain and, if so, launch the training pipeline.

Local target: serving data is the local request log (or a batch file), the reference is the local
registry's `model_version`, the cool-down state is under `local.root`, and retraining runs the
local training pipeline. Vertex target: the reference is the champion's training record, read at
run time from its Vertex model version found by label (`reference_json` overrides it); Vertex AI
Model Monitoring's one `<name>-monitoring` job is created or updated on the endpoint with the same
thresholds and the champion's recorded training data; the monitoring step runs on a batch file in
Cloud Storage with the cool-down state in Cloud Storage (under `pipeline_root`, or
`monitoring.state_uri`); and retraining submits the compiled training template
(`training_template_uri`) with the project, region, pipeline root and service account that
`mlops submit` fills in.
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
        training_data_uri: str = "",
        training_template_uri: str = "",
        project: str = config.vertex.project or "",
        region: str = config.vertex.region,
        pipeline_root: str = config.vertex.pipeline_root or "",
        service_account: str = config.vertex.service_account or "",
    ) -> None:
        common = {"config_json": config_json, "step_log": step_log}
        if on_vertex:
            reference = ops.vertex_reference(
                config_json=config_json,
                reference_json=reference_json,
                training_data_uri=training_data_uri,
            ).set_display_name("vertex-reference")
            reference.set_caching_options(False)  # the champion moves between runs
            reference_json = reference.outputs["reference_json"]
            ops.vertex_model_monitoring(
                config_json=config_json,
                endpoint_resource=endpoint_resource,
                training_data_uri=reference.outputs["training_data_uri"],
            ).set_display_name("vertex-model-monitoring").set_caching_options(False)
        monitor = ops.monitor(
            target=target,
            source=source,
            previous_source=previous_source,
            model_version=model_version,
            reference_json=reference_json,
            pipeline_root=pipeline_root,
            **common,
        ).set_display_name("monitor")
        decision = ops.retrain_decision(monitoring=monitor.outputs["monitoring"])
        decision.set_display_name("retrain-decision")
        with dsl.If(decision.output == True, name="retrain"):  # noqa: E712
            launch = ops.launch_training(
                target=target,
                monitoring=monitor.outputs["monitoring"],
                template_path=training_template_uri,
                project=project,
                region=region,
                pipeline_root=pipeline_root,
                service_account=service_account,
                **common,
            ).set_display_name("launch-training")
        # State (registry, request logs, cool-down) changes between runs on both targets.
        for task in (monitor, decision, launch):
            task.set_caching_options(False)

    return monitoring_pipeline
