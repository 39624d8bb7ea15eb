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
    split_path,
)
from mlops.config import PipelineConfig, local_path, on_dataflow
from mlops.data_checks import count_shared
from mlops.io import atomic_dir, write_json_atomic
from mlops.tfdv.beam_stats import statistics_of_parquet
from mlops.tfdv.config_rules import (
    TRAINING,
    apply_domains,
    prepare_inferred_schema,
    schema_with_thresholds,
    unused_columns_as_warnings,
)
from mlops.tfdv.readiness import readiness_problems
from mlops.tfdv.scan import ReadinessSpec, ScanResult, scan_splits
from mlops.tfdv.sketch_stats import StatsOptions


class DataValidationError(ValueError):
    """Blocking anomalies; the message lists feature, value and rule for each."""


def _readiness(
    scan: ScanResult, stats: Any, config: PipelineConfig
) -> tuple[dict[str, Any], list[str]]:
    """The data readiness report (rows and classes per split, missing rates, identifier-like
    columns, rows shared by train and test, each feature's predictive power alone) and the
    problems in it that stop the pipeline."""
    features, label = config.features, config.data.label
    validation = config.validation
    ready = scan.readiness
    train, test = ready["train"], ready["test"]
    problems = readiness_problems(stats, config)
    used = features.raw_features
    leakage = scan.leakage
    for feature, auc in leakage.items():
        if (
            auc >= validation.leakage_max_auc
            and feature not in validation.acknowledged_strong_features
        ):
            problems.append(
                f"feature {feature!r} alone predicts {label!r} with AUC {auc:.3f} on eval "
                f"(>= validation.leakage_max_auc {validation.leakage_max_auc}): it probably leaks "
                "the label (known only after the outcome). Drop it (data.exclude_columns), or list "
                "it in validation.acknowledged_strong_features if it is truly known at prediction time"
            )
    identifiers = train.identifier_like_columns()
    for feature in sorted(set(identifiers) & set(features.categorical)):
        problems.append(
            f"feature {feature!r} is identifier-like (a distinct value in almost every row): "
            "the model would memorise rows; remove it from features.categorical"
        )
    shared = count_shared(train.row_hashes(), test.row_hashes())
    if test.rows and shared / test.rows > validation.max_shared_row_fraction:
        problems.append(
            f"{shared} of {test.rows} test rows also appear in train "
            f"(> validation.max_shared_row_fraction {validation.max_shared_row_fraction}): the test "
            "split would overstate quality; deduplicate the data or split by key columns"
        )
    report = {
        "rows": {split: ready[split].rows for split in SPLITS},
        "classes": {split: dict(sorted(ready[split].classes.items())) for split in SPLITS},
        "missing_rate": {
            f: round(train.missing[f] / train.rows if train.rows else float("nan"), 4)
            for f in used
            if f in train.columns
        },
        "identifier_like_columns": identifiers,
        "test_rows_in_train": shared,
        "single_feature_auc": leakage,
    }
    return report, problems


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
    paths = {split: split_path(dataset_dir, split) for split in SPLITS}
    label, features = config.data.label, config.features
    spec = ReadinessSpec(
        label=label,
        features=list(features.raw_features),
        numeric=set(features.numeric),
        row_columns=[*features.raw_features, label],
    )
    # Image bytes are validated as their SHA-256 text: missing images, duplicates across splits
    # (test rows in train) and skew of repeated images are checked; pixel statistics are not
    # computed (a binary column has no statistics of its own in the sketches).
    image = features.image is not None
    # The same sketches either way: on Beam when Beam runs on Dataflow (Vertex), where the data
    # may outgrow one machine; here in the pass that streams each split once for the readiness
    # checks too, which saves a local Beam pipeline's start-up (seconds per run).
    statistics_on_beam = on_dataflow(config.beam_args) and not image
    scan = scan_splits(
        paths, spec, options=None if statistics_on_beam else StatsOptions(label=label), image=image
    )
    with atomic_dir(statistics_dir) as out:
        if statistics_on_beam:
            stats = statistics_of_parquet(
                paths, out / STATS_FILE, label=label, beam_args=config.beam_args
            )
        else:
            stats = scan.statistics
            dv.write_statistics(stats, out / STATS_FILE)
        for split in SPLITS:
            single = type(stats)(datasets=[dv.split_statistics(stats, split)])
            dv.write_statistics(single, out / f"Split-{split}" / STATS_FILE)
    readiness, not_ready = _readiness(scan, stats, config)
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
        "readiness": readiness,
        "not_ready": not_ready,
    }
    with atomic_dir(schema_dir) as out:
        dv.write_schema(schema, out / SCHEMA_FILE)
    with atomic_dir(anomalies_dir) as out:
        for split, anomalies in split_anomalies.items():
            dv.write_anomalies(anomalies, out / f"Split-{split}" / ANOMALIES_FILE)
        dv.write_anomalies(skew, out / "Skew" / ANOMALIES_FILE)
        write_json_atomic(out / VALIDATION_SUMMARY_FILE, summary)
    if not_ready:
        raise DataValidationError(
            "the data is not ready for training:\n  " + "\n  ".join(not_ready)
        )
    if blocking and config.validation.fail_on_anomalies:
        raise DataValidationError(
            "data validation found blocking anomalies (set validation.fail_on_anomalies: false to "
            "only report them):\n  " + "\n  ".join(blocking)
        )
    return summary
