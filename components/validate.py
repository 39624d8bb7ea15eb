"""Statistics, schema and validation step: per-split statistics, a schema (curated or inferred from
train), anomalies of eval/test against it and train-vs-eval skew, all in TFDV's proto formats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlops import tfdv as dv
from mlops.artifacts import (
    ANOMALIES_FILE,
    SCHEMA_FILE,
    SPLITS,
    STATS_FILE,
    VALIDATION_SUMMARY_FILE,
    read_split,
)
from mlops.config import PipelineConfig, local_path
from mlops.io import atomic_dir, write_json_atomic
from mlops.tfdv.config_rules import (
    TRAINING,
    apply_domains,
    prepare_inferred_schema,
    schema_with_thresholds,
    unused_columns_as_warnings,
)


class DataValidationError(ValueError):
    """Blocking anomalies; the message lists feature, value and rule for each."""


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
        schema = dv.load_schema(local_path(config.validation.schema_path))
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
        dv.write_statistics(stats, out / STATS_FILE)
        for split in SPLITS:
            single = type(stats)(datasets=[dv.split_statistics(stats, split)])
            dv.write_statistics(single, out / f"Split-{split}" / STATS_FILE)
    with atomic_dir(schema_dir) as out:
        dv.write_schema(schema, out / SCHEMA_FILE)
    with atomic_dir(anomalies_dir) as out:
        for split, anomalies in split_anomalies.items():
            dv.write_anomalies(anomalies, out / f"Split-{split}" / ANOMALIES_FILE)
        dv.write_anomalies(skew, out / "Skew" / ANOMALIES_FILE)
        write_json_atomic(out / VALIDATION_SUMMARY_FILE, summary)
    if blocking and config.validation.fail_on_anomalies:
        raise DataValidationError(
            "data validation found blocking anomalies (set validation.fail_on_anomalies: false to "
            "only report them):\n  " + "\n  ".join(blocking)
        )
    return summary
