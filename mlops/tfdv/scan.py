"""One streamed pass over each split's Parquet file for data validation: record batch by record
batch, the statistics sketches (`sketch_stats.SplitAccumulator`) and the row-level readiness
accumulators (`mlops.data_checks.ReadinessAccumulator`) are fed from the same batch, so memory is
bounded by the sketches and the readiness tables, not by the data (plus 8 bytes a row of train
and test for the shared-rows check, and one of train's numeric columns at a time for its exact
quantile bins).

Columns are typed as validation's pandas frames typed them (`read_split(arrow_strings=True)`
then `statistics.frame_to_arrow`): a column that Arrow and pandas type alike goes through as it
is; an integer column with missing values and no nullable pandas type becomes float64, as pandas
makes it; anything else (and every column of an image dataset, whose bytes are replaced by their
content hashes) is converted through pandas batch by batch, as before.

Splits (and train's numeric columns) are read on a small thread pool: Parquet decoding, the
sketches and most numpy work release the GIL, so two cores overlap them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tensorflow_metadata.proto.v0 import statistics_pb2

from mlops.data_checks import (
    ReadinessAccumulator,
    arrow_numbers,
    arrow_text_groups,
    label_classes,
    numeric_tables,
    quantile_edges,
    table_auc,
)
from mlops.tfdv.sketch_stats import SplitAccumulator, StatsOptions
from mlops.tfdv.statistics import column_to_arrow, frame_to_arrow

BATCH_ROWS = 1 << 17  # what ingest writes per row group; a bigger row group is read in parts

_NULLABLE_PANDAS = ("Int", "UInt", "boolean")
_ARROW_TEXT = pd.StringDtype("pyarrow")  # text as validation's frames held it


@dataclass
class ReadinessSpec:
    """What the readiness checks read: the label, the features (numeric ones by quantile bins)
    and the columns two rows must share to count as the same row."""

    label: str
    features: list[str]
    numeric: set[str]
    row_columns: list[str]


@dataclass
class ScanResult:
    """Statistics (None when computed elsewhere), readiness accumulators per split and the
    single-feature AUC table (feature -> AUC on eval, or on train when eval is empty)."""

    statistics: statistics_pb2.DatasetFeatureStatisticsList | None
    readiness: dict[str, ReadinessAccumulator]
    leakage: dict[str, float]


def _column_converters(schema: pa.Schema, metadata: pq.FileMetaData, path: Path) -> list:
    """Per column, how its Arrow batches become what validation's pandas frames held: None (as
    it is), "float64" (an integer column with missing values that pandas makes float64), or
    "pandas" (convert through pandas)."""
    names = schema.names
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ValueError(f"{path} has duplicated columns {duplicated}")
    pandas_types = {
        column.get("name"): str(column.get("numpy_type"))
        for column in (schema.pandas_metadata or {}).get("columns", [])
    }
    converters: list = []
    for index, field in enumerate(schema):
        kind = field.type
        if pa.types.is_string(kind) or pa.types.is_floating(kind):
            converters.append(None)
        elif pa.types.is_integer(kind) or pa.types.is_boolean(kind):
            nullable = pandas_types.get(field.name, "").startswith(_NULLABLE_PANDAS)
            if nullable or not _may_have_nulls(metadata, index):
                converters.append(None)
            else:
                converters.append("float64" if pa.types.is_integer(kind) else "pandas")
        else:
            converters.append("pandas")
    return converters


def _may_have_nulls(metadata: pq.FileMetaData, index: int) -> bool:
    """Whether the file's column may hold a null (from the row groups' statistics; a row group
    without them may)."""
    for group in range(metadata.num_row_groups):
        statistics = metadata.row_group(group).column(index).statistics
        if statistics is None or not statistics.has_null_count or statistics.null_count:
            return True
    return False


def _typed_batches(path: Path, *, image: bool) -> Any:
    """The file's record batches, typed as the statistics read validation's frames."""
    handle = pq.ParquetFile(path)
    schema = handle.schema_arrow
    converters = _column_converters(schema, handle.metadata, path)
    text = {pa.string(): _ARROW_TEXT, pa.large_string(): _ARROW_TEXT}
    empty = pa.RecordBatch.from_arrays([pa.array([], type=f.type) for f in schema], schema=schema)
    batches = handle.iter_batches(batch_size=BATCH_ROWS) if handle.metadata.num_rows else [empty]
    for batch in batches:
        if image:
            from mlops.images import content_keys

            frame = pa.Table.from_batches([batch]).to_pandas(types_mapper=text.get)
            yield frame_to_arrow(content_keys(frame))
            continue
        if all(converter is None for converter in converters):
            yield batch
            continue
        columns = []
        for array, converter in zip(batch.columns, converters, strict=True):
            if converter == "float64":
                array = pc.cast(array, pa.float64())
            elif converter == "pandas":
                array = column_to_arrow(array.to_pandas(types_mapper=text.get))
            columns.append(array)
        yield pa.RecordBatch.from_arrays(columns, names=schema.names)


def _scan_split(
    path: Path,
    options: StatsOptions | None,
    readiness: ReadinessAccumulator,
    *,
    image: bool,
) -> tuple[SplitAccumulator | None, ReadinessAccumulator]:
    statistics = SplitAccumulator(options) if options is not None else None
    for batch in _typed_batches(path, image=image):
        if statistics is not None:
            statistics.add_batch(batch)
        readiness.add_batch(batch)
    return statistics, readiness


def _train_numeric_columns(
    path: Path, spec: ReadinessSpec, *, image: bool
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Train's numeric features' exact quantile edges and (bin, label text) tables: each column's
    present values are gathered (8 bytes a row of train, one column at a time) for its exact
    quantiles, then the columns are read again batch by batch and binned."""
    handle = pq.ParquetFile(path)
    names = handle.schema_arrow.names
    wanted = [f for f in spec.features if f in spec.numeric and f in names]
    if not wanted:
        return {}, {}
    if image:  # image datasets are small: their typed batches, concatenated
        table = pa.Table.from_batches(list(_typed_batches(path, image=True)))
        label = table.column(spec.label)
        columns = {f: arrow_numbers(table.column(f).combine_chunks()) for f in wanted}
        groups, texts = arrow_text_groups(label)
        return numeric_tables(columns, groups, texts)
    rows = handle.metadata.num_rows
    edges = {}
    for feature in wanted:
        present = np.empty(rows, dtype="float64")
        filled = 0
        for batch in handle.iter_batches(batch_size=BATCH_ROWS, columns=[feature]):
            values = arrow_numbers(batch.column(0))
            values = values[~np.isnan(values)]
            present[filled : filled + len(values)] = values
            filled += len(values)
        edges[feature] = quantile_edges(present[:filled], reorder=True)
        del present
    tables: dict[str, Any] = {feature: Counter() for feature in wanted}
    for batch in handle.iter_batches(batch_size=BATCH_ROWS, columns=[*wanted, spec.label]):
        groups, texts = arrow_text_groups(batch.column(len(wanted)))
        for index, feature in enumerate(wanted):
            values = arrow_numbers(batch.column(index))
            one_edges, one_table = numeric_tables({feature: values}, groups, texts, edges[feature])
            tables[feature].update(one_table[feature])
    return edges, tables


class _InPlace:
    """An executor that runs each task as it is submitted (one worker: no thread at all)."""

    def __enter__(self) -> _InPlace:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def submit(self, function: Callable, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(function(*args, **kwargs))
        except BaseException as exc:  # handed to whoever asks for the result, as a pool does
            future.set_exception(exc)
        return future


def scan_splits(
    paths: Mapping[str, Path],
    spec: ReadinessSpec,
    *,
    options: StatsOptions | None,
    image: bool = False,
    workers: int = 2,
) -> ScanResult:
    """Stream each split once: statistics (unless `options` is None: computed elsewhere, e.g. on
    Dataflow) and the readiness accumulators; train's numeric columns are read once more, one at
    a time, for their exact quantile bins. `paths` must hold train, eval and test."""
    text_features = [f for f in spec.features if f not in spec.numeric]

    def accumulator(**extra) -> ReadinessAccumulator:
        return ReadinessAccumulator(label=spec.label, text_features=text_features, **extra)

    with ThreadPoolExecutor(max_workers=workers) if workers > 1 else _InPlace() as pool:
        run: Callable = pool.submit
        numeric = run(_train_numeric_columns, paths["train"], spec, image=image)
        train = run(
            _scan_split,
            paths["train"],
            options,
            accumulator(
                missing_features=list(spec.features),
                identifiers=True,
                hash_columns=spec.row_columns,
            ),
            image=image,
        )
        test = run(
            _scan_split,
            paths["test"],
            options,
            ReadinessAccumulator(label=spec.label, hash_columns=spec.row_columns),
            image=image,
        )

        def scan_eval():
            edges, _ = numeric.result()
            return _scan_split(
                paths["eval"], options, accumulator(numeric_edges=edges), image=image
            )

        evaluation = run(scan_eval)
        (train_stats, train_ready), (eval_stats, eval_ready), (test_stats, test_ready) = (
            train.result(),
            evaluation.result(),
            test.result(),
        )
        _, train_numeric = numeric.result()
    train_ready.tables.update(train_numeric)
    other = eval_ready if eval_ready.rows else train_ready
    classes = label_classes(train_ready.classes)
    leakage: dict[str, float] = {}
    for feature in spec.features:
        if feature in train_ready.tables:
            auc = table_auc(train_ready.tables[feature], other.tables.get(feature, {}), classes)
            if auc is not None:
                leakage[feature] = round(auc, 4)
    statistics = None
    if options is not None:
        statistics = statistics_pb2.DatasetFeatureStatisticsList()
        for split, stats in (("train", train_stats), ("eval", eval_stats), ("test", test_stats)):
            statistics.datasets.append(stats.to_proto(split))
    readiness = {"train": train_ready, "eval": eval_ready, "test": test_ready}
    return ScanResult(statistics=statistics, readiness=readiness, leakage=leakage)
