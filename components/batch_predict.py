"""Batch prediction: a Beam pipeline over CSV / JSON Lines / Parquet that writes one JSON line per
input row, keyed by the row's id, converting rows and calling the model with the online server's
own code (so batch and online predictions agree)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import apache_beam as beam

from mlops.artifacts import BATCH_SUMMARY_FILE, PREDICTIONS_PREFIX
from mlops.config import FeatureConfig, PipelineConfig, local_path
from mlops.io import atomic_dir, to_beam_uri, uri_exists, write_json_atomic
from mlops.serving.request import instances_to_arrays
from mlops.tabular import detect_format


class BatchPredictError(ValueError):
    pass


class PredictBatches(beam.DoFn):
    """Loads the SavedModel once per worker and predicts lists of (id, raw record) rows through
    the server's code: `instances_to_arrays` converts, `LoadedModel.predict` calls the model."""

    def __init__(self, model_dir: str, features: FeatureConfig, id_column: str) -> None:
        self._model_dir = model_dir
        self._features = features
        self._id_column = id_column

    def setup(self) -> None:
        from mlops.serving.server import load_model

        self._model = load_model(self._model_dir)

    def process(self, batch: list[tuple[Any, dict[str, Any]]]):
        arrays = instances_to_arrays([record for _, record in batch], self._features)
        for (row_id, _), prediction in zip(batch, self._model.predict(arrays), strict=True):
            yield {self._id_column: row_id, **prediction}


def _read_rows(pipeline: beam.Pipeline, source: str, fmt: str) -> beam.PCollection:
    if fmt == "parquet":
        return pipeline | "ReadParquet" >> beam.io.ReadFromParquet(source)
    if fmt == "jsonl":
        return (
            pipeline
            | "ReadJsonLines" >> beam.io.ReadFromText(source)
            | "ParseJson" >> beam.Filter(str.strip)
            | "Loads" >> beam.Map(json.loads)
        )
    # Not beam.io.ReadFromCsv: it makes each row a named tuple, which only takes identifiers as
    # column names ("Culmen Length (mm)" fails). The same pandas reader, rows as plain dicts:
    from apache_beam.dataframe import convert
    from apache_beam.dataframe.io import read_csv

    frames = pipeline | "ReadCsv" >> read_csv(source)
    return convert.to_pcollection(frames, yield_elements="pandas", label="CsvFrames") | (
        "AsDicts" >> beam.FlatMap(lambda frame: frame.to_dict("records"))
    )


def _keyed(record: dict[str, Any], id_column: str, features: FeatureConfig) -> tuple[Any, dict]:
    if id_column not in record:
        raise BatchPredictError(
            f"input row has no id column {id_column!r} (columns: {sorted(record)})"
        )
    row_id = record[id_column]
    if hasattr(row_id, "item"):  # numpy scalars from pandas-backed readers
        row_id = row_id.item()
    missing = [name for name in features.raw_features if name not in record]
    if missing:
        raise BatchPredictError(f"row {row_id!r}: feature columns {missing} are missing")
    return row_id, record


def _check_header(source: str, fmt: str, id_column: str, features: FeatureConfig) -> None:
    """Fail before launching workers when the columns are wrong (CSV/Parquet headers)."""
    columns: list[str] | None = None
    if "://" in source:
        return
    if fmt == "csv":
        import csv

        with open(source, newline="") as handle:
            columns = next(csv.reader(handle), [])
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        columns = pq.read_schema(source).names
    if columns is None:
        return
    missing = [c for c in [id_column, *features.raw_features] if c not in columns]
    if missing:
        raise BatchPredictError(
            f"{source}: columns {missing} are missing (id column {id_column!r} and the raw "
            f"features are required); columns are {columns}"
        )


def run_batch_predict(
    config: PipelineConfig,
    model_dir: str | Path,
    source: str,
    output_dir: str | Path,
    id_column: str,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Predict every row of `source` into `output_dir/predictions-*.jsonl` (Beam, runner from
    `config.beam_args`); returns {rows, files, model_dir}. Beam gets /gcs/ paths as gs:// URIs,
    which Dataflow workers can open."""
    source = local_path(source)
    if not uri_exists(source):
        raise BatchPredictError(f"batch input {source!r} does not exist")
    fmt = detect_format(source, "auto")
    features = config.features
    _check_header(source, fmt, id_column, features)
    options = beam.options.pipeline_options.PipelineOptions(config.beam_args)
    with atomic_dir(output_dir) as out:
        with beam.Pipeline(options=options) as pipeline:
            predictions = (
                _read_rows(pipeline, to_beam_uri(source), fmt)
                | "KeyById" >> beam.Map(_keyed, id_column, features)
                | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=batch_size)
                | "Predict"
                >> beam.ParDo(PredictBatches(to_beam_uri(model_dir), features, id_column))
            )
            _ = (
                predictions
                | "ToJson" >> beam.Map(json.dumps, sort_keys=True)
                | "Write"
                >> beam.io.WriteToText(
                    to_beam_uri(out / PREDICTIONS_PREFIX), file_name_suffix=".jsonl"
                )
            )
        files = sorted(p.name for p in out.glob(f"{PREDICTIONS_PREFIX}*.jsonl"))
        rows = sum(1 for name in files for line in (out / name).open() if line.strip())
        summary = {"rows": rows, "files": files, "model_dir": str(model_dir), "source": source}
        write_json_atomic(out / BATCH_SUMMARY_FILE, summary)
    return summary


def read_predictions(output_dir: str | Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(Path(output_dir).glob(f"{PREDICTIONS_PREFIX}*.jsonl")):
        rows.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return rows
