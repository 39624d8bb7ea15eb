"""The prediction pipeline: deploy a registered model to an endpoint and batch-predict a file.

Local target: the endpoint record the local server honours (with a canary split) and a Beam batch
job. Vertex target: EndpointCreateOp (or an existing endpoint from config) -> ModelDeployOp (machine
type, replicas, traffic split from config) of the champion version, found at run time by its
label, request-response logging to BigQuery, and ModelBatchPredictOp on the same version.
"""

from kfp import dsl

from components.ops import make_ops
from mlops.config import PipelineConfig
from mlops.registry import CHAMPION
from pipelines.builders import check_target


def prediction_pipeline_name(config: PipelineConfig) -> str:
    return f"{config.name}-prediction"


def build_prediction_pipeline(config: PipelineConfig, target: str = "local"):
    check_target(target)
    ops = make_ops(config.vertex.image)
    serving, vertex = config.serving, config.vertex
    on_vertex = target == "vertex"
    if on_vertex:
        from google_cloud_pipeline_components.types.artifact_types import VertexEndpoint
        from google_cloud_pipeline_components.v1.batch_predict_job import ModelBatchPredictOp
        from google_cloud_pipeline_components.v1.endpoint import EndpointCreateOp, ModelDeployOp

        location = {
            "location": vertex.region,
            **({"project": vertex.project} if vertex.project else {}),
        }
        encryption = {"encryption_spec_key_name": vertex.encryption_key or ""}

    @dsl.pipeline(
        name=prediction_pipeline_name(config),
        description=f"Deploy and batch-predict for '{config.name}'"
        + (" on Vertex AI" if on_vertex else ""),
    )
    def prediction_pipeline(
        config_json: str = config.to_json(),
        step_log: str = "",
        model_version: str = CHAMPION,
        canary_percent: int = -1,
        batch_input: str = serving.batch_input or "",
        id_column: str = serving.batch_id_column or "",
        batch_output: str = "",
    ) -> None:
        common = {"config_json": config_json, "step_log": step_log}
        if not on_vertex:
            # Local: the endpoint record the local server honours, then a Beam batch job that
            # writes into this run's artifacts.
            ops.deploy_local(
                model_version=model_version, canary_percent=canary_percent, **common
            ).set_display_name("deploy").set_caching_options(False)
            ops.batch_predict_local(
                model_version=model_version, source=batch_input, id_column=id_column, **common
            ).set_display_name("batch-predict").set_caching_options(False)
            return
        # Vertex: the registry's champion, found at run time by label (vertex.parent_model when
        # set) and pinned to its version, deployed with the configured split, then
        # ModelBatchPredictOp into batch_output. (model_version and canary_percent are the local
        # runner's; on Vertex the split is serving.vertex_traffic_split.)
        model = ops.vertex_champion_model(config_json=config_json)
        model.set_display_name("champion-model").set_caching_options(False)
        if serving.vertex_endpoint:
            endpoint = dsl.importer(
                artifact_uri=f"https://{vertex.region}-aiplatform.googleapis.com/v1/"
                f"{serving.vertex_endpoint}",
                artifact_class=VertexEndpoint,
                metadata={"resourceName": serving.vertex_endpoint},
            ).set_display_name("existing-endpoint")
            endpoint_artifact = endpoint.output
        else:
            endpoint = EndpointCreateOp(
                display_name=f"{config.name}-endpoint", **location, **encryption
            ).set_display_name("endpoint-create")
            endpoint_artifact = endpoint.outputs["endpoint"]
        ModelDeployOp(
            model=model.outputs["model"],
            endpoint=endpoint_artifact,
            deployed_model_display_name=config.name,
            traffic_split=dict(serving.vertex_traffic_split) or {"0": 100},
            dedicated_resources_machine_type=serving.machine_type,
            dedicated_resources_min_replica_count=serving.min_replicas,
            dedicated_resources_max_replica_count=serving.max_replicas,
            service_account=vertex.service_account or "",
        ).set_display_name("model-deploy")
        if serving.bigquery_log_table:
            ops.vertex_request_logging(
                config_json=config_json, endpoint=endpoint_artifact
            ).set_display_name("request-logging")
        ModelBatchPredictOp(
            job_display_name=f"{config.name}-batch-predict",
            model=model.outputs["model"],
            gcs_source_uris=[batch_input],
            instances_format="jsonl",
            predictions_format="jsonl",
            key_field=id_column,
            gcs_destination_output_uri_prefix=batch_output,
            machine_type=serving.machine_type,
            starting_replica_count=serving.min_replicas,
            max_replica_count=serving.max_replicas,
            service_account=vertex.service_account or "",
            **location,
            **encryption,
        ).set_display_name("batch-predict")

    return prediction_pipeline
