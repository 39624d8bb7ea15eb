"""Statistics, schema and validation step: per-split statistics, a schema (curated or inferred from
train), anomalies of eval/test against it and train-vs-eval skew, all in TFDV's proto formats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tensorflow_metadata.proto.v0 import schema_pb2

from components import data_validation as dv
from components.ingest import SPLITS, read_split
from mlops.config import PipelineConfig
from mlops.io import atomic_dir, write_json_atomic

SCHEMA_FILE = "schema.pbtxt"
SUMMARY_FILE = "validation.json"
TRAINING, SERVING = "TRAINING", "SERVING"
# New, rare categories map to the out-of-vocabulary bucket; only a real shift should block.
INFERRED_MIN_DOMAIN_MASS = 0.99


class DataValidationError(ValueError):
    """Blocking anomalies; the message lists feature, value and rule for each."""


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
    result = dv.set_comparator_thresholds(
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
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    for name, info in anomalies.anomaly_info.items():
        if name not in used:
            info.severity = anomalies_pb2.AnomalyInfo.WARNING
    return anomalies


def run_data_validation(
    config: PipelineConfig,
    dataset_dir: str | Path,
    statistics_dir: str | Path,
    schema_dir: str | Path,
    anomalies_dir: str | Path,
) -> dict[str, Any]:
    """Write statistics (`FeatureStats.pb`), the schema (`schema.pbtxt`) and anomalies
    (`Split-<name>/SchemaDiff.pb`, `Skew/SchemaDiff.pb`); raise DataValidationError on blocking
    anomalies when `validation.fail_on_anomalies` (after writing everything, for inspection)."""
    frames = {split: read_split(dataset_dir, split) for split in SPLITS}
    stats = dv.compute_statistics(frames, label=config.data.label)
    if config.validation.schema_path:
        schema = dv.load_schema(config.validation.schema_path)
        schema_source = config.validation.schema_path
    else:
        inferred = dv.infer_schema(
            dv.split_statistics(stats, "train"),
            max_string_domain_size=config.validation.max_string_domain_size,
        )
        schema = prepare_inferred_schema(inferred, config)
        schema_source = "inferred from train"
    schema = schema_with_thresholds(apply_domains(schema, config), config)
    environment = TRAINING if list(schema.default_environment) else None

    used = {*config.features.raw_features, config.data.label}
    split_anomalies = {
        split: unused_columns_as_warnings(
            dv.validate_statistics(
                dv.split_statistics(stats, split), schema, environment=environment
            ),
            used,
        )
        for split in ("eval", "test")
    }
    skew = dv.compare_distributions(
        dv.split_statistics(stats, "train"),
        dv.split_statistics(stats, "eval"),
        schema=schema,
        kind="skew",
    )
    blocking = [
        f"{split}: {message}"
        for split, anomalies in split_anomalies.items()
        for message in dv.blocking_anomalies(anomalies)
    ] + [f"train vs eval skew: {message}" for message in dv.blocking_anomalies(skew)]
    summary = {
        "schema_source": schema_source,
        "anomalies": {split: dv.anomalies_to_dict(a) for split, a in split_anomalies.items()},
        "skew": dv.anomalies_to_dict(skew),
        "blocking": blocking,
    }
    with atomic_dir(statistics_dir) as out:
        dv.write_statistics(stats, out / "FeatureStats.pb")
        for split in SPLITS:
            single = type(stats)(datasets=[dv.split_statistics(stats, split)])
            dv.write_statistics(single, out / f"Split-{split}" / "FeatureStats.pb")
    with atomic_dir(schema_dir) as out:
        dv.write_schema(schema, out / SCHEMA_FILE)
    with atomic_dir(anomalies_dir) as out:
        for split, anomalies in split_anomalies.items():
            dv.write_anomalies(anomalies, out / f"Split-{split}" / "SchemaDiff.pb")
        dv.write_anomalies(skew, out / "Skew" / "SchemaDiff.pb")
        write_json_atomic(out / SUMMARY_FILE, summary)
    if blocking and config.validation.fail_on_anomalies:
        raise DataValidationError(
            "data validation found blocking anomalies (set validation.fail_on_anomalies: false to "
            "only report them):\n  " + "\n  ".join(blocking)
        )
    return summary
