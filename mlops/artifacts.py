"""File names inside the artifacts steps hand to each other, and the readers more than one step
uses. One definition each: a step that writes a file and a step that reads it name it from here.
The readers refuse a directory output on Cloud Storage that has no completion marker
(`mlops.io.require_complete`): its writer failed or is still writing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlops.io import require_complete

SPLITS = ("train", "eval", "test")
# ingest with data.unlabeled: keep: the rows without a label, beside the splits (never a split)
UNLABELED = "unlabeled"

# ingest: <dataset>/<split>.parquet and a summary
INGEST_SUMMARY_FILE = "ingest.json"
# statistics, schema and anomalies, as TFX writes them (also per `Split-<name>/` and `Skew/`)
STATS_FILE = "FeatureStats.pb"
SCHEMA_FILE = "schema.pbtxt"
ANOMALIES_FILE = "SchemaDiff.pb"
VALIDATION_SUMMARY_FILE = "validation.json"
# transform
LABEL_CLASSES_FILE = "label_classes.json"
# model: <SavedModel>/assets.extra/...
MODEL_EXTRA_DIR = "assets.extra"
MODEL_INFO_FILE = "model_info.json"
MODEL_CONFIG_FILE = "pipeline_config.json"
KERAS_WEIGHTS_FILE = "keras.weights.h5"  # what a warm start loads
TFLITE_DIR = "tflite"  # the edge models: float and dynamic-range quantised
TFLITE_FLOAT_FILE = "model.tflite"
TFLITE_QUANTIZED_FILE = "model_dynamic_range.tflite"
# tune: every trial, and the best parameters with the config they give
TRIALS_FILE = "trials.json"
TUNED_CONFIG_FILE = "tuned_config.json"
# evaluate, explain
METRICS_FILE = "metrics.json"
EXPLANATIONS_FILE = "explanations.json"
# registry version documents
MODEL_CARD_FILE = "model_card.json"
MODEL_CARD_HTML = "model_card.html"
# batch prediction
PREDICTIONS_PREFIX = "predictions"
BATCH_SUMMARY_FILE = "batch_predict.json"
# monitoring
MONITORING_SUMMARY_FILE = "monitoring.json"
DECISION_FILE = "decision.json"
RETRAIN_STATE_FILE = "retrain_state.json"
# runs and reports
REPORT_FILE = "report.html"
RUN_MANIFEST_FILE = "run.json"
STEP_LOG_FILE = "steps.jsonl"
PIPELINE_LOG_FILE = "pipeline.log"


def split_path(dataset_dir: str | Path, split: str) -> Path:
    """The Parquet file of one split of an ingested dataset (checked to exist)."""
    path = require_complete(dataset_dir) / f"{split}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"split {split!r} not found at {path}")
    return path


def read_split(dataset_dir: str | Path, split: str, *, arrow_strings: bool = False):
    """One split of an ingested dataset as a pandas frame. With `arrow_strings`, text columns
    keep their Arrow buffers (`string[pyarrow]`) instead of becoming a Python string per value
    (the same values, read 2-5x faster; for code that only compares, counts and hashes them)."""
    import pandas as pd

    path = split_path(dataset_dir, split)
    if not arrow_strings:
        return pd.read_parquet(path)
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = pd.StringDtype("pyarrow")
    return pq.read_table(path).to_pandas(
        types_mapper={pa.string(): text, pa.large_string(): text}.get
    )


def model_extra_path(model_dir: str | Path, name: str) -> Path:
    return Path(model_dir) / MODEL_EXTRA_DIR / name


def read_model_info(model_dir: str | Path) -> dict[str, Any]:
    """What training recorded beside the SavedModel: classes, features, curves, metrics."""
    require_complete(model_dir)
    return json.loads(model_extra_path(model_dir, MODEL_INFO_FILE).read_text())


def read_label_classes(transform_dir: str | Path) -> list[str]:
    return json.loads((require_complete(transform_dir) / LABEL_CLASSES_FILE).read_text())


def read_decision(monitoring_dir: str | Path) -> dict[str, Any]:
    """The monitoring step's result: {"decision": {"retrain", "reasons", ...}, "findings", ...}."""
    return json.loads((require_complete(monitoring_dir) / DECISION_FILE).read_text())
