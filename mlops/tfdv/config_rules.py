"""How the pipeline's config shapes a TFDV schema: environments, domains from config, skew
thresholds, integer-coded categories, and columns the model never reads. Used by data validation
at training time and by monitoring at serving time."""

from __future__ import annotations

from typing import Any

from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2

from mlops.config import PipelineConfig
from mlops.tfdv.distances import set_comparator_thresholds

TRAINING, SERVING = "TRAINING", "SERVING"
# New, rare categories map to the out-of-vocabulary bucket; only a real shift should block.
INFERRED_MIN_DOMAIN_MASS = 0.99


def prepare_inferred_schema(schema: schema_pb2.Schema, config: PipelineConfig) -> schema_pb2.Schema:
    """Adjust a schema inferred from train to what this template's model tolerates: missing feature
    values are imputed, so only the label must always be present; the label is absent at serving."""
    schema = schema_pb2.Schema.FromString(schema.SerializeToString())
    del schema.default_environment[:]
    schema.default_environment.extend([TRAINING, SERVING])
    for feature in schema.feature:
        if feature.name == config.data.label:
            feature.not_in_environment.append(SERVING)
            continue
        feature.presence.ClearField("min_fraction")
        if feature.domain:
            feature.distribution_constraints.min_domain_mass = INFERRED_MIN_DOMAIN_MASS
    return schema


def apply_domains(schema: schema_pb2.Schema, config: PipelineConfig) -> schema_pb2.Schema:
    """Add the configured valid ranges (validation.domains) as float_domain / int_domain."""
    result = schema_pb2.Schema.FromString(schema.SerializeToString())
    features = {feature.name: feature for feature in result.feature}
    for name, domain in config.validation.domains.items():
        if name not in features:
            raise ValueError(
                f"validation.domains names '{name}', which is not a column of the data "
                f"(columns: {sorted(features)})"
            )
        feature = features[name]
        target = feature.int_domain if feature.type == schema_pb2.INT else feature.float_domain
        if domain.min is not None:
            target.min = int(domain.min) if feature.type == schema_pb2.INT else domain.min
        if domain.max is not None:
            target.max = int(domain.max) if feature.type == schema_pb2.INT else domain.max
    return result


def mark_integer_categories(schema: schema_pb2.Schema, config: PipelineConfig) -> None:
    """Integer-coded categorical features (e.g. community areas) get `int_domain.is_categorical`,
    so comparators treat them as categories (L-infinity), not numbers."""
    for feature in schema.feature:
        if (
            feature.name in config.features.categorical
            and feature.type != schema_pb2.BYTES
            and feature.WhichOneof("domain_info") in (None, "int_domain")
        ):
            feature.int_domain.is_categorical = True


def schema_with_thresholds(schema: schema_pb2.Schema, config: PipelineConfig) -> schema_pb2.Schema:
    """Skew thresholds from config, on the features the model uses (a curated schema's own
    thresholds stay where config sets none)."""
    skew = config.validation.skew
    marked = schema_pb2.Schema.FromString(schema.SerializeToString())
    mark_integer_categories(marked, config)
    result = set_comparator_thresholds(
        marked,
        kind="skew",
        default_categorical=skew.categorical_linf,
        default_numeric=skew.numeric_jsd,
        per_feature=skew.per_feature,
    )
    used = set(config.features.raw_features)
    for feature in result.feature:
        if feature.name not in used and feature.name not in skew.per_feature:
            feature.ClearField("skew_comparator")
    return result


def unused_columns_as_warnings(anomalies: Any, used: set[str]) -> Any:
    """Columns the model never reads cannot break it: their anomalies are reported, not blocking."""
    for name, info in anomalies.anomaly_info.items():
        if name not in used:
            info.severity = anomalies_pb2.AnomalyInfo.WARNING
    return anomalies
