"""Deploy: point an endpoint at a registered model version (with an optional canary split).

Local target: an endpoint record (`mlops.endpoints.LocalEndpoints`) that the local prediction
server honours. Vertex target: GCPC's EndpointCreateOp / ModelDeployOp in the pipeline, plus
request-response logging to BigQuery configured here through the Vertex AI API.
"""

from __future__ import annotations

from typing import Any

from mlops.config import PipelineConfig
from mlops.endpoints import LocalEndpoints
from mlops.paths import endpoints_root, registry_root
from mlops.registry import CHAMPION, LocalModelRegistry, resolve_version


def run_deploy_local(
    config: PipelineConfig, version_ref: str = CHAMPION, canary_percent: int | None = None
) -> dict[str, Any]:
    """Deploy a version to the local endpoint named after the config; returns the record."""
    version = resolve_version(config, version_ref)
    canary = config.serving.canary_percent if canary_percent is None else canary_percent
    return LocalEndpoints(endpoints_root(config)).deploy(
        config.name,
        LocalModelRegistry(registry_root(config)),
        config.name,
        version.version,
        canary_percent=canary,
    )


def enable_vertex_request_logging(
    config: PipelineConfig, endpoint_resource_name: str, credentials: Any = None
) -> Any:
    """Turn on the endpoint's request-response logging to `serving.bigquery_log_table`, sampled
    at `serving.request_log_sample_rate` (the same rate as local request logs)."""
    from google.api_core.client_options import ClientOptions
    from google.cloud.aiplatform_v1 import EndpointServiceClient
    from google.cloud.aiplatform_v1.types import endpoint as endpoint_types
    from google.cloud.aiplatform_v1.types import io as io_types
    from google.protobuf import field_mask_pb2

    serving = config.serving
    if not serving.bigquery_log_table:
        raise ValueError("serving.bigquery_log_table is not set: nothing to log to")
    client = EndpointServiceClient(
        credentials=credentials,
        client_options=ClientOptions(
            api_endpoint=f"{config.vertex.region}-aiplatform.googleapis.com"
        ),
    )
    endpoint = endpoint_types.Endpoint(
        name=endpoint_resource_name,
        predict_request_response_logging_config=endpoint_types.PredictRequestResponseLoggingConfig(
            enabled=True,
            sampling_rate=serving.request_log_sample_rate,
            bigquery_destination=io_types.BigQueryDestination(
                output_uri=serving.bigquery_log_table
            ),
        ),
    )
    return client.update_endpoint(
        endpoint=endpoint,
        update_mask=field_mask_pb2.FieldMask(paths=["predict_request_response_logging_config"]),
    )
