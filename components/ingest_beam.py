"""Ingest as a Beam pipeline, for data larger than one machine: `run_ingest` (components/ingest.py)
runs it when `config.beam_args` select Dataflow, and it writes what the in-process ingest writes
(`train/eval/test(/unlabeled).parquet` as single files, the same column types, split assignment,
bad rows, errors and `ingest.json`).

The stages, each over the source's record batches keyed by their first row:

1. scan: one global combine of `ColumnScan`s per column (does every value parse as a number,
   integral, the first bad values, the personal-data samples), the first rows without a label
   and the first rows for Cloud DLP; the reader's bad rows are counted (first few kept).
2. plan: the column types, privacy decisions and the bad rows to show, as the in-process path
   decides them (the same functions), then the count of rows each batch drops and, for a time
   split, a count per distinct timestamp of the usable rows: from it the global cut-offs.
3. write: each batch typed, split and written as Arrow pieces (in parallel); one last step
   appends the pieces of each split in row order to one Parquet file with the same row groups
   as the in-process writer, so the files (and the fingerprint) are byte for byte the same.
   That step is one worker writing each split in turn, a sequential copy: single files keep
   every reader of the splits unchanged. Where that copy is too slow, sharded split files
   (`train-*.parquet`) are the next step, and every reader would change with them.

Memory on a worker is bounded by a batch plus side inputs of bounded size: per column the first
`SHOWN_BAD_ROWS` bad values and `PRIVACY_SAMPLE` sample values, one count per batch, and for a
time split one count per distinct timestamp (the in-process path holds 8 bytes per row there).
Errors are the in-process path's IngestErrors with the same text: the pipeline carries an error
as data to its end (no half-written output is kept) and the driver raises it.

Reading: each source file is read in order by one worker (`source_batches`): CSV and JSON Lines
through `mlops.tabular`'s streaming readers over Beam's filesystems (gs:// works), since a line
number in a bad-row message and the time split's tie-break need every row's position, and a CSV
cell may hold a newline, so a file cannot be cut at arbitrary byte offsets. Parquet is read in
parallel, one row group per worker, each knowing its first row from the file's footer. A SQL
database is read in order by one worker, as a text file is; BigQuery in parallel through Beam's
`ReadFromBigQuery`, its batches then numbered in an order fixed by their content
(`NumberBatches`). The batches are then reshuffled, so typing and splitting run on all workers.

Image sources and the packaged penguins set stay in-process (they fit one machine).
"""

from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from components.ingest import (
    PRIVACY_SAMPLE,
    SHOWN_BAD_ROWS,
    SPLIT_CODES,
    ColumnScan,
    SplitWriter,
    bad_row_text,
    check_bad_fraction,
    check_columns,
    clean_times,
    column_dtypes,
    empty_split,
    fingerprint,
    hash_codes,
    label_bad,
    line_offset,
    missing_times,
    no_usable_rows,
    number_problems,
    privacy_decisions,
    source_summary,
    split_keys,
    split_schema,
    time_column_error,
    typed_table,
)
from mlops.artifacts import INGEST_SUMMARY_FILE, SPLITS, UNLABELED
from mlops.config import DataConfig, PipelineConfig, database_kind, local_path, on_dataflow
from mlops.databases import beam_bigquery_batches
from mlops.io import (
    atomic_uri_dir,
    is_remote,
    join_uri,
    on_cloud_storage,
    open_uri,
    to_beam_uri,
    write_json_atomic,
    write_uri_text,
)
from mlops.tabular import (
    GZIP_MAGIC,
    PARQUET_BATCH_ROWS,
    BadRow,
    IngestError,
    check_file_source,
    detect_format,
    is_number_type,
    iter_source_batches,
    parquet_file,
    parse_numbers,
    reading_errors,
)

PIECES = "_pieces"  # per batch and split, removed once the split files are written
RESULT = "_ingest_result.json"  # the summary or the error, read by the driver and removed


# ---------------------------------------------------------------------------------------------
# Reading


class Source(NamedTuple):
    """A source read on Beam: (first row, record batch of raw values) in `batches`; the rows the
    reader could not parse in `bad` (BadRow); a reading IngestError's text in `errors`."""

    batches: beam.PCollection
    bad: beam.PCollection
    errors: beam.PCollection


class _ReadInOrder(beam.DoFn):
    """One file read start to end with `mlops.tabular`'s streaming reader: its batches numbered
    by their first row, its bad rows as they are found."""

    def process(self, data: DataConfig):
        bad: list[BadRow] = []
        first = 0
        try:
            for batch in iter_source_batches(data, bad):
                yield from (beam.pvalue.TaggedOutput("bad", row) for row in bad)
                bad.clear()
                if batch.num_rows:
                    yield first, batch
                    first += batch.num_rows
            yield from (beam.pvalue.TaggedOutput("bad", row) for row in bad)
        except IngestError as exc:
            yield beam.pvalue.TaggedOutput("errors", str(exc))


class _ParquetRowGroups(beam.DoFn):
    """(row group, its first row) for each row group of a Parquet file, from its footer."""

    def process(self, source: str):
        try:
            with reading_errors(source, "parquet"), open_uri(source) as handle:
                metadata = parquet_file(handle, source).metadata
                first = 0
                for index in range(metadata.num_row_groups):
                    yield index, first
                    first += metadata.row_group(index).num_rows
        except IngestError as exc:
            yield beam.pvalue.TaggedOutput("errors", str(exc))


class _ReadRowGroup(beam.DoFn):
    def __init__(self, source: str):
        self._source = source

    def process(self, group: tuple[int, int]):
        index, first = group
        try:
            with reading_errors(self._source, "parquet"), open_uri(self._source) as handle:
                parquet = parquet_file(handle, self._source)
                for batch in parquet.iter_batches(
                    batch_size=PARQUET_BATCH_ROWS, row_groups=[index]
                ):
                    if batch.num_rows:
                        yield first, batch
                        first += batch.num_rows
        except IngestError as exc:
            yield beam.pvalue.TaggedOutput("errors", str(exc))


def _parallel_parquet(source: str) -> bool:
    """Whether workers can read the Parquet file's row groups on their own (not gzipped)."""
    with open_uri(source) as handle:
        return handle.read(2) != GZIP_MAGIC


def source_batches(pipeline: beam.Pipeline, data: DataConfig) -> Source:
    """The configured source on Beam as (first row, record batch of raw values), dispatching on
    its format, reshuffled so that later stages run on every worker. A new kind of source adds
    one branch here yielding the same (first row, batch) pairs (row numbers in a deterministic
    order: they name bad rows and break ties in a time split)."""
    kind = database_kind(data.source)
    if kind == "bigquery":
        # Beam's BigQuery IO reads in parallel, in no order: the batches are numbered by content.
        batches = (
            beam_bigquery_batches(pipeline, data)
            | "NonEmpty" >> beam.Filter(lambda batch: batch.num_rows > 0)
            | "Number" >> NumberBatches()
        )
        no_bad = pipeline | "NoBadRows" >> beam.Create([])
        return Source(batches, no_bad, pipeline | "NoReadErrors" >> beam.Create([]))
    if kind is None:
        source = to_beam_uri(local_path(data.source))
        check_file_source(source)  # a missing file: the in-process error, before workers start
        data = data.model_copy(update={"source": source})
    # A SQL database is read in order like a text file: one worker streams the query's result.
    source = data.source
    fmt = detect_format(source, data.format)
    if fmt == "parquet" and _parallel_parquet(source):
        groups = (
            pipeline
            | "Source" >> beam.Create([source])
            | "RowGroups" >> beam.ParDo(_ParquetRowGroups()).with_outputs("errors", main="groups")
        )
        read = (
            groups.groups
            | "SpreadRowGroups" >> beam.Reshuffle()
            | "ReadRowGroup"
            >> beam.ParDo(_ReadRowGroup(source)).with_outputs("errors", main="batches")
        )
        errors = (groups.errors, read.errors) | "ReadErrors" >> beam.Flatten()
        bad = pipeline | "NoBadRows" >> beam.Create([])
        batches = read.batches
    else:
        read = (
            pipeline
            | "Source" >> beam.Create([data])
            | "Read" >> beam.ParDo(_ReadInOrder()).with_outputs("bad", "errors", main="batches")
        )
        batches, bad, errors = read.batches, read.bad, read.errors
    return Source(batches | "Spread" >> beam.Reshuffle(), bad, errors)


def _content_key(batch: pa.RecordBatch) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def _first_rows(sizes: list[tuple[str, int]]) -> dict[str, int]:
    """Each content key's first row, the keys in sorted order (a fixed order of the batches)."""
    firsts, first = {}, 0
    for key, rows in sorted(sizes):
        firsts[key] = first
        first += rows
    return firsts


def _numbered(group: tuple[str, Any], firsts: dict[str, int]):
    key, batches = group
    first = firsts[key]
    for batch in batches:  # equal batches (the same content) take consecutive ranges
        yield first, batch
        first += batch.num_rows


class NumberBatches(beam.PTransform):
    """Record batches that arrive in no particular order (a parallel read) -> (first row, batch):
    rows numbered 0..n-1, batches ordered by a hash of their content, so every row has one
    position as the stages after the read need (bad rows' numbers, a time split's ties). The
    group by content also spreads the batches over the workers."""

    def expand(self, batches):
        grouped = (
            batches
            | "KeyByContent" >> beam.Map(lambda batch: (_content_key(batch), batch))
            | "GroupEqual" >> beam.GroupByKey()
        )
        firsts = (
            grouped
            | "Rows" >> beam.MapTuple(lambda key, group: (key, sum(b.num_rows for b in group)))
            | "AllRows" >> beam.combiners.ToList()
            | "FirstRows" >> beam.Map(_first_rows)
        )
        return grouped | "Numbered" >> beam.FlatMap(_numbered, beam.pvalue.AsSingleton(firsts))


# ---------------------------------------------------------------------------------------------
# Stage 1: the scan


def _first(items: list, limit: int, key=None) -> list:
    return sorted(items, key=key)[:limit]


@dataclass
class Scan:
    """What the in-process scan learns (components.ingest.SourceScan), mergeable: per column a
    ColumnScan holding the first bad values only, samples as (first row, values) parts."""

    rows: int = 0
    columns: dict[str, ColumnScan] = field(default_factory=dict)
    seen: dict[str, tuple[int, int]] = field(default_factory=dict)  # (batch's first row, index)
    samples: dict[str, list[tuple[int, list]]] = field(default_factory=dict)
    label_null: list[int] = field(default_factory=list)  # the first rows only
    label_infinite: list[int] = field(default_factory=list)
    head: list[tuple[int, pa.RecordBatch]] = field(default_factory=list)

    def merge(self, other: Scan, head_rows: int) -> Scan:
        self.rows += other.rows
        for name, column in other.columns.items():
            mine = self.columns.setdefault(name, column)
            if mine is not column:
                _merge_column(mine, column)
            self.seen[name] = min(self.seen.get(name, other.seen[name]), other.seen[name])
        for name, parts in other.samples.items():
            self.samples[name] = _first_parts(self.samples.get(name, []) + parts, PRIVACY_SAMPLE)
        self.label_null = _first(self.label_null + other.label_null, SHOWN_BAD_ROWS)
        self.label_infinite = _first(self.label_infinite + other.label_infinite, SHOWN_BAD_ROWS)
        self.head = _first_parts(self.head, head_rows, other.head)
        return self

    def column_order(self) -> list[str]:
        """Columns in the order the in-process scan meets them (batch by batch)."""
        return sorted(self.columns, key=lambda name: self.seen[name])

    def sampled(self) -> dict[str, ColumnScan]:
        """The columns with their personal-data samples filled in (first values in row order)."""
        for name, column in self.columns.items():
            values = [value for _, part in sorted(self.samples.get(name, [])) for value in part]
            column.sample = values[:PRIVACY_SAMPLE]
        return self.columns


def _first_parts(parts: list, limit: int, more: list | None = None) -> list:
    """(first row, sized part) pairs in row order, keeping only those that hold the first
    `limit` items."""
    kept, total = [], 0
    for first, part in sorted((parts + (more or [])), key=lambda item: item[0]):
        if total >= limit:
            break
        kept.append((first, part))
        total += len(part)
    return kept


def _merge_column(into: ColumnScan, other: ColumnScan) -> None:
    if other.native_number is not None:
        into.native_number = (
            other.native_number
            if into.native_number is None
            else into.native_number and other.native_number
        )
    into.parses = into.parses and other.parses
    into.present += other.present
    into.integral = into.integral and other.integral
    into.max_abs = max(into.max_abs, other.max_abs)
    into.unparsed = _first(into.unparsed + other.unparsed, SHOWN_BAD_ROWS, key=lambda x: x[0])
    into.infinite = _first(into.infinite + other.infinite, SHOWN_BAD_ROWS, key=lambda x: x[0])


def scan_batch(config: PipelineConfig, first: int, batch: pa.RecordBatch) -> Scan:
    """What one batch tells (the in-process `scan_source` for one batch, via ColumnScan)."""
    data = config.data
    scan = Scan(rows=batch.num_rows)
    numbers_needed = {data.split.time_column if data.split.method == "time" else None}
    for index, (name, values) in enumerate(zip(batch.schema.names, batch.columns, strict=True)):
        numeric_feature = name in config.features.numeric
        column = ColumnScan(name, numeric_feature, numeric_feature or name in numbers_needed)
        scan.columns[name], scan.seen[name] = column, (first, index)
        if name in data.exclude_columns:
            continue
        if not column.scan_numbers and _first_values_not_numbers(values):
            # Text for certain: what the in-process scan knows once a value failed to parse
            # (then it stops parsing the column; nothing that parse learns is used).
            column.parses = False
        numbers = column.observe(values, first)
        column.bad_rows = []  # counted batch by batch in stage 2, never collected
        column.unparsed = column.unparsed[:SHOWN_BAD_ROWS]
        column.infinite = column.infinite[:SHOWN_BAD_ROWS]
        if column.sample:
            scan.samples[name] = [(first, column.sample)]
        column.sample = []
        if name == data.label:
            null = values.is_null().to_numpy(zero_copy_only=False)
            scan.label_null = [first + int(r) for r in np.flatnonzero(null)[:SHOWN_BAD_ROWS]]
            if numbers is not None:
                infinite = np.flatnonzero(np.isinf(numbers))[:SHOWN_BAD_ROWS]
                scan.label_infinite = [first + int(r) for r in infinite]
    if data.label not in batch.schema.names:  # a JSON key first seen in a later batch
        scan.label_null = list(range(first, first + min(batch.num_rows, SHOWN_BAD_ROWS)))
    head_rows = config.privacy.dlp.sample_rows if config.privacy.dlp.enabled else 0
    if head_rows:
        scan.head = [(first, batch.slice(0, head_rows))]
    return scan


def _first_values_not_numbers(values: pa.Array, count: int = 16) -> bool:
    if is_number_type(values.type):
        return False
    head = values.drop_null().slice(0, count)
    return bool(np.isnan(parse_numbers(head)).any())


class ScanCombineFn(beam.CombineFn):
    """(first row, batch) pairs -> one Scan of the whole data."""

    def __init__(self, config: PipelineConfig):
        self._config = config
        dlp = config.privacy.dlp
        self._head_rows = dlp.sample_rows if dlp.enabled else 0

    def create_accumulator(self) -> Scan:
        return Scan()

    def add_input(self, accumulator: Scan, element: tuple[int, pa.RecordBatch]) -> Scan:
        return accumulator.merge(scan_batch(self._config, *element), self._head_rows)

    def merge_accumulators(self, accumulators) -> Scan:
        accumulators = iter(accumulators)
        merged = next(accumulators)
        for other in accumulators:
            merged.merge(other, self._head_rows)
        return merged

    def extract_output(self, accumulator: Scan) -> Scan:
        return accumulator


class ReadingBad(beam.CombineFn):
    """BadRows of the reader -> (how many, the first SHOWN_BAD_ROWS by line)."""

    def create_accumulator(self) -> tuple[int, list]:
        return 0, []

    def add_input(self, accumulator, row: BadRow):
        count, first = accumulator
        return count + 1, _first([*first, row], SHOWN_BAD_ROWS, key=lambda b: b.line)

    def merge_accumulators(self, accumulators):
        count, first = 0, []
        for other_count, other_first in accumulators:
            count += other_count
            first = _first(first + other_first, SHOWN_BAD_ROWS, key=lambda b: b.line)
        return count, first

    def extract_output(self, accumulator):
        return accumulator


# ---------------------------------------------------------------------------------------------
# Stage 2: the plan


@dataclass
class Plan:
    """What every batch needs to be typed and split, decided once from the whole data."""

    error: str | None = None
    columns: list[str] = field(default_factory=list)
    typed: dict[str, ColumnScan] = field(default_factory=dict)
    hashed: dict[str, str] = field(default_factory=dict)
    schema: pa.Schema | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    bad_shown: list[BadRow] = field(default_factory=list)
    reading_bad: int = 0
    rows: int = 0
    checked: list[str] = field(default_factory=list)  # numeric features whose bad rows drop
    label_numeric: bool = False
    keep_unlabeled: bool = False
    keys: list[str] = field(default_factory=list)
    time_column: str | None = None  # a time split's column (typed, or hashed: all missing)
    usable: int = 0
    cutoffs: list[tuple[float, int]] = field(default_factory=list)  # (time, ties below) x 2


def make_plan(
    scan: Scan, reading: tuple[int, list[BadRow]], errors: list[str], config: PipelineConfig
) -> Plan:
    """The in-process decisions (same functions, same order of checks) from the whole scan;
    an IngestError becomes the plan's error."""
    if errors:
        return Plan(error=errors[0])  # the reader stopped: in-process nothing else is checked
    try:
        return _plan(scan, reading, config)
    except IngestError as exc:
        return Plan(error=str(exc))


def _plan(scan: Scan, reading: tuple[int, list[BadRow]], config: PipelineConfig) -> Plan:
    data = config.data
    reading_bad, bad = reading[0], list(reading[1])
    samples = scan.sampled()
    columns = check_columns(config, scan.rows, scan.column_order())
    head = [batch for _, batch in sorted(scan.head, key=lambda item: item[0])]
    dropped_columns, hashed, privacy = privacy_decisions(config, samples, head, columns)
    columns = [c for c in columns if c not in dropped_columns]
    offset = line_offset(config)
    typed = {name: scan.columns[name] for name in columns if name not in hashed}
    for column in typed.values():
        bad.extend(column.typing_bad(offset))
    label = typed.get(data.label)
    label_numeric = label is not None and label.numeric
    missing = sorted(set(scan.label_null) | set(scan.label_infinite if label_numeric else []))
    keep_unlabeled = data.unlabeled == "keep"
    if not keep_unlabeled:
        bad.extend(label_bad(missing[:SHOWN_BAD_ROWS], data.label, offset))
    dtypes = column_dtypes(columns, typed, None)
    for column in typed.values():
        column.sample = []  # the plan travels to every worker: no samples
    time_column = data.split.time_column if data.split.method == "time" else None
    return Plan(
        columns=columns,
        typed=typed,
        hashed=hashed,
        schema=split_schema(dtypes, None),
        summary={
            **source_summary(data),
            "rows_read": scan.rows + reading_bad,
            "columns": dtypes,
            "personal_data": privacy,
            "dropped_examples": [bad_row_text(data, b) for b in bad[:SHOWN_BAD_ROWS]],
        },
        bad_shown=bad[:SHOWN_BAD_ROWS],
        reading_bad=reading_bad,
        rows=scan.rows,
        checked=[name for name, column in typed.items() if column.numeric_feature],
        label_numeric=label_numeric,
        keep_unlabeled=keep_unlabeled,
        time_column=time_column,
    )


@dataclass
class Rows:
    """Which rows of one batch are dropped (a bad number in a numeric feature, no label) and
    which of those are set aside unlabeled."""

    dropped: np.ndarray
    typing: np.ndarray
    unlabeled: np.ndarray


def batch_rows(plan: Plan, batch: pa.RecordBatch, label: str) -> Rows:
    typing = np.zeros(batch.num_rows, dtype=bool)
    for name in plan.checked:
        index = batch.schema.get_field_index(name)
        if index >= 0:
            values = batch.column(index)
            unparsed, infinite = number_problems(values, parse_numbers(values))
            typing |= unparsed | infinite
    index = batch.schema.get_field_index(label)
    if index < 0:
        missing = np.ones(batch.num_rows, dtype=bool)
    else:
        values = batch.column(index)
        missing = values.is_null().to_numpy(zero_copy_only=False)
        if plan.label_numeric:
            missing = missing | np.isinf(parse_numbers(values))
    unlabeled = missing & ~typing if plan.keep_unlabeled else np.zeros_like(missing)
    return Rows(dropped=typing | missing, typing=typing, unlabeled=unlabeled)


def batch_times(plan: Plan, batch: pa.RecordBatch, rows: Rows) -> np.ndarray:
    """The time column of the batch's usable rows, as the in-process time split sees it."""
    index = batch.schema.get_field_index(plan.time_column)
    times = np.full(batch.num_rows, np.nan) if index < 0 else parse_numbers(batch.column(index))
    return clean_times(times[~rows.dropped], plan.typed.get(plan.time_column))


def _no_times() -> tuple[np.ndarray, np.ndarray]:
    return np.empty(0, dtype=np.float64), np.empty(0, dtype=np.int64)


def merge_histograms(*histograms: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, count of each) of several such histograms together."""
    values = np.concatenate([h[0] for h in histograms])
    counts = np.concatenate([h[1] for h in histograms])
    distinct, where = np.unique(values, return_inverse=True)
    return distinct, np.bincount(where, weights=counts, minlength=len(distinct)).astype(np.int64)


@dataclass
class Counts:
    """Rows dropped and unusable; for a time split, a histogram of the usable rows' times as
    arrays (Beam measures a side input object by object: a dict of 10^5 times costs seconds)."""

    dropped: int = 0
    unusable: int = 0
    unknown_times: int = 0
    times: tuple[np.ndarray, np.ndarray] = field(default_factory=_no_times)


def count_batch(element: tuple[int, pa.RecordBatch], plan: Plan, label: str) -> Counts:
    """How many of one batch's rows are dropped and unusable; a time split's times."""
    if plan.error:
        return Counts()
    _, batch = element
    rows = batch_rows(plan, batch, label)
    unusable = rows.typing if plan.keep_unlabeled else rows.dropped
    counts = Counts(dropped=int(rows.dropped.sum()), unusable=int(unusable.sum()))
    if plan.time_column is not None and plan.time_column in plan.columns:
        times = batch_times(plan, batch, rows)
        counts.unknown_times = int(np.isnan(times).sum())
        counts.times = np.unique(times[~np.isnan(times)], return_counts=True)
    return counts


class CountCombineFn(beam.CombineFn):
    def create_accumulator(self) -> Counts:
        return Counts()

    def add_input(self, accumulator: Counts, counts: Counts) -> Counts:
        accumulator.dropped += counts.dropped
        accumulator.unusable += counts.unusable
        accumulator.unknown_times += counts.unknown_times
        if len(counts.times[0]):
            accumulator.times = merge_histograms(accumulator.times, counts.times)
        return accumulator

    def merge_accumulators(self, accumulators) -> Counts:
        merged = Counts()
        for other in accumulators:
            self.add_input(merged, other)
        return merged

    def extract_output(self, accumulator: Counts) -> Counts:
        return accumulator


def rank_cutoff(fraction: float, rows: int) -> int:
    """How many of `rows` rows ranked in time have rank / rows <= fraction (what the in-process
    `time_split_codes` compares, in the same float arithmetic)."""
    k = min(max(int(fraction * rows), 0), rows)
    while k < rows and (k + 1) / rows <= fraction:
        k += 1
    while k > 0 and k / rows > fraction:
        k -= 1
    return k


def time_cutoffs(
    times: tuple[np.ndarray, np.ndarray], rows: int, data: DataConfig
) -> list[tuple[float, int]]:
    """For train and eval, the (time, ties) a row must not exceed to fall at or below the cut:
    rows earlier than `time` do, and of the rows at `time` the first `ties` in row order."""
    split = data.split
    ranks = [
        rank_cutoff(1 - split.eval_fraction - split.test_fraction, rows),
        rank_cutoff(1 - split.test_fraction, rows),
    ]
    values, counts = times
    through = np.cumsum(counts)  # rows at or before each distinct time
    cutoffs = []
    for rank in ranks:
        if rank == 0:
            cutoffs.append((-np.inf, 0))
            continue
        at = int(np.searchsorted(through, rank))  # the first time whose rows reach the rank
        below = int(through[at] - counts[at])
        cutoffs.append((float(values[at]), rank - below))
    return cutoffs


def complete_plan(plan: Plan, counts: Counts, config: PipelineConfig) -> Plan:
    """The checks the in-process path makes once it knows every dropped row, in its order,
    and the time split's cut-offs."""
    if plan.error:
        return plan
    data = config.data
    unusable = plan.reading_bad + counts.unusable
    try:
        check_bad_fraction(data, plan.bad_shown, unusable, plan.summary["rows_read"])
        usable = plan.rows - counts.dropped
        if usable == 0:
            raise no_usable_rows(data)
        if data.split.method == "time":
            error = time_column_error(data, plan.columns)
            if error is not None:
                raise error
            if counts.unknown_times:
                raise missing_times(data)
            plan.cutoffs = time_cutoffs(counts.times, usable, data)
        else:
            plan.keys = split_keys(data, plan.columns)
    except IngestError as exc:
        plan.error = str(exc)
        return plan
    plan.usable = usable
    plan.summary["rows_dropped"] = unusable
    return plan


# ---------------------------------------------------------------------------------------------
# Stage 3: typing, splitting, writing


def tie_counts(element: tuple[int, pa.RecordBatch], plan: Plan, label: str):
    """(first row, usable rows at each cut-off's time) for a time split."""
    first, batch = element
    if plan.error or not plan.cutoffs:
        return first, (0, 0)
    times = batch_times(plan, batch, batch_rows(plan, batch, label))
    return first, tuple(int((times == value).sum()) for value, _ in plan.cutoffs)


def ties_before(counts: list[tuple[int, tuple[int, int]]]) -> tuple[list[int], list[tuple]]:
    """Sorted batch first rows and, per batch, the rows at each cut-off time in earlier batches."""
    counts = sorted(counts)
    firsts, before, total = [], [], (0, 0)
    for first, count in counts:
        firsts.append(first)
        before.append(total)
        total = (total[0] + count[0], total[1] + count[1])
    return firsts, before


def time_codes(plan: Plan, times: np.ndarray, earlier: tuple[int, int]) -> np.ndarray:
    """Split codes of a batch's usable rows from the global cut-offs (and the rows at each
    cut-off time in earlier batches, which come first in the tie-break)."""
    within = []
    for (value, ties), before in zip(plan.cutoffs, earlier, strict=True):
        at = times == value
        order = before + np.cumsum(at)  # 1-based place among the rows at the cut-off time
        within.append((times < value) | (at & (order <= ties)))
    return np.where(
        within[0],
        SPLIT_CODES["train"],
        np.where(within[1], SPLIT_CODES["eval"], SPLIT_CODES["test"]),
    ).astype(np.uint8)


def _piece_path(work: str, name: str, first: int) -> str:
    return join_uri(work, PIECES, f"{name}-{first:015d}.arrow")


def write_pieces(
    element: tuple[int, pa.RecordBatch], plan: Plan, ties, work: str, data: DataConfig
):
    """Type and split one batch; write each split's rows as an Arrow piece; yield
    (split, first row, piece, rows)."""
    if plan.error:
        return
    first, batch = element
    rows = batch_rows(plan, batch, data.label)
    table = typed_table(batch, plan.schema, plan.typed, plan.hashed, None)
    parts = {}
    if plan.keep_unlabeled:
        parts[UNLABELED] = table.filter(pa.array(rows.unlabeled))
    table = table.filter(pa.array(~rows.dropped))
    if plan.cutoffs:
        firsts, before = ties
        earlier = before[bisect.bisect_left(firsts, first)]
        codes = time_codes(plan, batch_times(plan, batch, rows), earlier)
    else:
        codes = hash_codes(table, plan.keys, data)
    for name in SPLITS:
        parts[name] = table.filter(pa.array(codes == SPLIT_CODES[name]))
    for name, part in parts.items():
        if part.num_rows == 0:
            continue
        path = _piece_path(work, name, first)
        with FileSystems.create(path) as handle, pa.ipc.new_file(handle, part.schema) as writer:
            writer.write_table(part)
        yield name, first, path, part.num_rows


def finish(pieces: list[tuple[str, int, str, int]], plan: Plan, work: str, data: DataConfig):
    """Append each split's pieces in row order to `<split>.parquet` (the in-process writer's
    row groups), check no split is empty, fingerprint the files and write the result (the
    summary, or the error) for the driver."""
    result = _finish(pieces, plan, work, data) if not plan.error else {"error": plan.error}
    with FileSystems.create(join_uri(work, RESULT)) as handle:
        handle.write(json.dumps(result).encode())
    if FileSystems.match([join_uri(work, PIECES) + "/*"])[0].metadata_list:
        FileSystems.delete([join_uri(work, PIECES)])


def _finish(pieces, plan: Plan, work: str, data: DataConfig) -> dict[str, Any]:
    written = list(SPLITS) + ([UNLABELED] if plan.keep_unlabeled else [])
    by_split: dict[str, list[tuple[int, str]]] = {name: [] for name in written}
    for name, first, path, _ in pieces:
        by_split[name].append((first, path))
    rows = {}
    for name in written:
        with FileSystems.create(join_uri(work, f"{name}.parquet")) as handle:
            writer = SplitWriter(handle, plan.schema)
            for _, path in sorted(by_split[name]):
                with FileSystems.open(path) as piece:
                    writer.write(pa.ipc.open_file(pa.BufferReader(piece.read())).read_all())
            writer.close()
        rows[name] = writer.rows
    for name in SPLITS:
        if rows[name] == 0:
            return {"error": str(empty_split(data, name, plan.usable))}
    summary = dict(plan.summary)
    summary["rows"] = {name: rows[name] for name in SPLITS}
    if plan.keep_unlabeled:
        summary["rows_unlabeled"] = rows[UNLABELED]
    summary["fingerprint"] = fingerprint([join_uri(work, f"{n}.parquet") for n in written])
    return summary


# ---------------------------------------------------------------------------------------------
# The pipeline


def ingest_pipeline(pipeline: beam.Pipeline, config: PipelineConfig, work: str) -> None:
    """The stages on `pipeline`, writing the splits and the result under `work` (a URI or a
    path the workers can write)."""
    data = config.data
    source = source_batches(pipeline, data)
    batches = source.batches
    scan = batches | "Scan" >> beam.CombineGlobally(ScanCombineFn(config))
    reading = source.bad | "ReadingBad" >> beam.CombineGlobally(ReadingBad())
    errors = source.errors | "Errors" >> beam.combiners.ToList()
    plan = scan | "Plan" >> beam.Map(
        make_plan,
        beam.pvalue.AsSingleton(reading),
        beam.pvalue.AsSingleton(errors),
        config,
    )
    counts = (
        batches
        | "CountDropped" >> beam.Map(count_batch, beam.pvalue.AsSingleton(plan), data.label)
        | "SumDropped" >> beam.CombineGlobally(CountCombineFn())
    )
    plan = plan | "CompletePlan" >> beam.Map(complete_plan, beam.pvalue.AsSingleton(counts), config)
    ties = (
        batches
        | "TieCounts" >> beam.Map(tie_counts, beam.pvalue.AsSingleton(plan), data.label)
        | "CollectTies" >> beam.combiners.ToList()
        | "TiesBefore" >> beam.Map(ties_before)
    )
    pieces = batches | "Write" >> beam.FlatMap(
        write_pieces,
        beam.pvalue.AsSingleton(plan),
        beam.pvalue.AsSingleton(ties),
        work,
        data,
    )
    _ = (
        pieces
        | "CollectPieces" >> beam.combiners.ToList()
        | "Finish" >> beam.Map(finish, beam.pvalue.AsSingleton(plan), work, data)
    )


def check_worker_locations(config: PipelineConfig, output_dir: str | Path) -> None:
    """On Dataflow the workers read the source and write the splits: both must be on Cloud
    Storage (gs:// or the /gcs/ mount), not on this machine's disk."""
    if not on_dataflow(config.beam_args):
        return
    places = [("the output", str(output_dir))]
    if database_kind(config.data.source) is None:  # a database is reached over the network
        places.insert(0, ("data.source", config.data.source))
    for what, where in places:
        if not on_cloud_storage(where):
            raise IngestError(
                f"ingest on Dataflow: {what} {where!r} is not on Cloud Storage; Dataflow workers "
                "read and write gs:// (or /gcs/) only. Put the data in a bucket, or run the Beam "
                "steps locally (vertex.beam_runner: DirectRunner)"
            )


def run_ingest_beam(config: PipelineConfig, output_dir: str | Path) -> dict[str, Any]:
    """`run_ingest` as a Beam pipeline (runner from `config.beam_args`): the same files, types,
    splits, summary and errors. The output directory is written as every directory output is
    (`mlops.io.atomic_uri_dir`: a temporary sibling renamed into place locally; on Cloud Storage
    emptied first and marked complete last), so a failed run leaves nothing a reader takes for
    whole."""
    check_worker_locations(config, output_dir)
    with atomic_uri_dir(output_dir) as out:
        work = to_beam_uri(out)
        with beam.Pipeline(options=PipelineOptions(list(config.beam_args))) as pipeline:
            ingest_pipeline(pipeline, config, work)
        result_uri = join_uri(work, RESULT)
        with FileSystems.open(result_uri) as handle:
            result = json.loads(handle.read())
        FileSystems.delete([result_uri])
        if "error" in result:
            raise IngestError(result["error"])
        summary_uri = join_uri(out, INGEST_SUMMARY_FILE)
        text = json.dumps(result, indent=2, sort_keys=True, default=str) + "\n"
        if is_remote(out):
            write_uri_text(summary_uri, text)
        else:
            write_json_atomic(summary_uri, result)
    return result
