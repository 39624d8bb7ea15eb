"""Ingest: stream CSV / JSON Lines / Parquet (or the packaged penguins set) in record batches, type
the columns over the whole data and split the rows deterministically into train/eval/test Parquet
files.

Two passes with memory bounded by a record batch (plus a few bytes per row for the split plan):
the first reads the source once, spills its raw batches to local Arrow files and learns what
typing needs (does every value of a column parse as a number, are they all integers, which rows
hold bad values, the time column for a time split, samples for the personal-data checks); the
second types each spilled batch the same way, assigns splits and appends to one Parquet writer
per split.

When the Beam runner is Dataflow and the source is on Cloud Storage, `run_ingest` runs the same
decisions as a Beam pipeline instead (components/ingest_beam.py, same output); the functions
below that both paths call are the shared rules.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mlops.artifacts import INGEST_SUMMARY_FILE, SPLITS, UNLABELED
from mlops.config import DataConfig, PipelineConfig, database_kind, local_path, on_dataflow
from mlops.images import content_key, is_image_source, read_images
from mlops.io import atomic_dir, on_cloud_storage, open_uri, read_ahead, write_json_atomic
from mlops.privacy import PersonalDataError, apply_privacy, hash_salt, hash_token
from mlops.tabular import (
    PACKAGED_PENGUINS,
    PACKAGED_SOURCES,
    BadRow,
    IngestError,
    as_text,
    detect_format,
    is_number_type,
    iter_source_batches,
    parse_numbers,
    spelling_hints,
)

EXAMPLES_PER_COLUMN = 1000  # bad values listed per column and kind
SHOWN_BAD_ROWS = 20  # bad rows ingest.json lists (dropped_examples)
PRIVACY_SAMPLE = 1000  # values per column the personal-data detector sees (mlops.privacy._SAMPLE)
ROW_GROUP_ROWS = 131_072  # rows buffered per split before a Parquet row group is written
SPLIT_CODES = {name: code for code, name in enumerate(SPLITS)}


def split_fractions(texts: list[str], data: DataConfig) -> np.ndarray:
    """Split code per row from the row's key text: the first 8 hex digits of its MD5 as a
    fraction of 2**32, test below test_fraction, then eval, then train."""
    split = data.split
    fraction = (
        np.fromiter(
            (int.from_bytes(hashlib.md5(text.encode()).digest()[:4], "big") for text in texts),
            dtype=np.float64,
            count=len(texts),
        )
        / 2**32
    )
    return np.where(
        fraction < split.test_fraction,
        SPLIT_CODES["test"],
        np.where(
            fraction < split.test_fraction + split.eval_fraction,
            SPLIT_CODES["eval"],
            SPLIT_CODES["train"],
        ),
    ).astype(np.uint8)


def time_split_codes(times: np.ndarray, data: DataConfig) -> np.ndarray:
    """Split code per row by its rank in time: ties broken by the rows' order, so equal
    timestamps never straddle randomly; the oldest go to train, the newest to test."""
    split = data.split
    rank = np.empty(len(times), dtype=np.float64)
    rank[np.argsort(times, kind="stable")] = np.arange(1, len(times) + 1)
    position = rank / len(times)
    train_end = 1 - split.eval_fraction - split.test_fraction
    return np.where(
        position <= train_end,
        SPLIT_CODES["train"],
        np.where(position <= 1 - split.test_fraction, SPLIT_CODES["eval"], SPLIT_CODES["test"]),
    ).astype(np.uint8)


def assign_splits(frame: pd.DataFrame, data: DataConfig) -> pd.Series:
    """Deterministic split per row of a typed frame: by hash of key columns or by position in
    time (the same rule ingest applies batch by batch)."""
    split = data.split
    if split.method == "time":
        column = split.time_column
        if column not in frame.columns:
            raise IngestError(f"data.split.time_column {column!r} is not a column of the data")
        times = pd.to_numeric(frame[column], errors="coerce").astype("float64").to_numpy()
        if np.isnan(times).any():
            raise IngestError(
                f"data.split.time_column {column!r} has missing or non-numeric values"
            )
        codes = time_split_codes(times, data)
    else:
        keys = split.key_columns or list(frame.columns)
        missing = [k for k in keys if k not in frame.columns]
        if missing:
            raise IngestError(f"data.split.key_columns {missing} are not columns of the data")
        table = pa.Table.from_pandas(frame[keys], preserve_index=False)
        texts = key_texts([table.column(k).combine_chunks() for k in keys])
        codes = split_fractions(texts, data)
    return pd.Series(np.asarray(SPLITS)[codes], index=frame.index)


def key_texts(columns: list[pa.Array]) -> list[str]:
    """Per row, its typed key values as text joined by \\x1f: what pandas'
    `astype("string").fillna("<NA>")` writes (integers without ".0", floats as Python's repr)."""
    import pyarrow.compute as pc

    texts = []
    for values in columns:
        if pa.types.is_floating(values.type):
            rendered = pd.Series(values.to_numpy(zero_copy_only=False)).astype("string")
            text = pa.array(rendered.fillna("<NA>"), pa.string())
        elif pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type):
            # Image bytes are keyed by their content, as mlops.images.content_keys does.
            digests = [None if v is None else content_key(v) for v in values.to_pylist()]
            text = pc.fill_null(pa.array(digests, pa.string()), "<NA>")
        else:
            text = pc.fill_null(as_text(values), "<NA>")
        texts.append(text)
    return pc.binary_join_element_wise(*texts, "\x1f").to_pylist()


def number_problems(values: pa.Array, numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(present but not a number, infinite) per value of a column, from its parsed `numbers`:
    the values that make a row of a numeric feature unusable."""
    valid = values.is_valid().to_numpy(zero_copy_only=False)
    return np.isnan(numbers) & valid, np.isinf(numbers)


@dataclass
class ColumnScan:
    """What the first pass learns about one raw column."""

    name: str
    numeric_feature: bool  # config features.numeric: every value must be a finite number
    scan_numbers: bool  # read every batch's numbers (numeric features, the time column)
    native_number: bool | None = None  # every batch held it as numbers (Parquet), not text
    parses: bool = True  # every present value parses as a number
    present: int = 0
    integral: bool = True
    max_abs: float = 0.0
    unparsed: list[tuple[int, str]] = field(default_factory=list)  # (row, value as written)
    infinite: list[tuple[int, str]] = field(default_factory=list)
    bad_rows: list[np.ndarray] = field(default_factory=list)  # rows whose value is unusable
    sample: list[Any] = field(default_factory=list)  # for the personal-data detector

    @property
    def numeric(self) -> bool:
        return (
            self.numeric_feature or bool(self.native_number) or (self.present > 0 and self.parses)
        )

    @property
    def dtype(self) -> str:
        if not self.numeric:
            return "string"
        return "Int64" if self.present and self.integral and self.max_abs < 2**53 else "float64"

    def observe(self, values: pa.Array, first_row: int) -> np.ndarray | None:
        """Learn from one batch; returns its values as numbers when they were parsed."""
        native = is_number_type(values.type)
        self.native_number = native if self.native_number is None else self.native_number and native
        if not native and len(self.sample) < PRIVACY_SAMPLE:
            for value in as_text(values).drop_null().slice(0, 4 * PRIVACY_SAMPLE).to_pylist():
                if value.strip():
                    self.sample.append(value.strip())
                    if len(self.sample) == PRIVACY_SAMPLE:
                        break
        if not (self.scan_numbers or native or self.parses):
            return None  # text that is known not to be numeric: nothing more to learn
        numbers = parse_numbers(values)
        unparsed, infinite = number_problems(values, numbers)
        self.present += len(values) - values.null_count
        self.parses = self.parses and not unparsed.any()
        finite = numbers[np.isfinite(numbers)]
        if len(finite):
            self.integral = self.integral and bool((np.mod(finite, 1) == 0).all())
            self.max_abs = max(self.max_abs, float(np.abs(finite).max()))
        if self.numeric_feature and (unparsed.any() or infinite.any()):
            for kind, where in ((self.unparsed, unparsed), (self.infinite, infinite)):
                for row in np.flatnonzero(where)[: EXAMPLES_PER_COLUMN - len(kind)]:
                    kind.append((first_row + int(row), values[int(row)].as_py()))
            self.bad_rows.append(first_row + np.flatnonzero(unparsed | infinite))
        return numbers

    def typing_bad(self, line_offset: int) -> list[BadRow]:
        return [
            BadRow(
                line=row + line_offset, reason=f"column {self.name!r}: {value!r} is not a number"
            )
            for row, value in self.unparsed
        ] + [
            BadRow(
                line=row + line_offset,
                reason=f"column {self.name!r}: {value!r} is not a finite number",
            )
            for row, value in self.infinite
        ]

    def sample_series(self) -> pd.Series:
        if self.native_number:
            return pd.Series([], dtype="float64")
        return pd.Series(self.sample, dtype=object)

    def typed(self, values: pa.Array) -> pa.Array:
        """One batch of this column typed as the whole column is: nullable integers when every
        value is integral, float64 otherwise (infinities missing), or text."""
        dtype = self.dtype
        if dtype == "string":
            return as_text(values)
        numbers = parse_numbers(values)
        missing = ~np.isfinite(numbers)
        if dtype == "Int64":
            return pa.array(np.where(missing, 0, numbers).astype(np.int64), mask=missing)
        return pa.array(np.where(missing, np.nan, numbers), pa.float64(), from_pandas=True)


@dataclass
class SourceScan:
    """The first pass over a source: its batches spilled to `spill` and what typing needs."""

    spill: Path
    batches: int = 0
    rows: int = 0
    columns: dict[str, ColumnScan] = field(default_factory=dict)
    head: list[pa.RecordBatch] = field(default_factory=list)  # first rows, for Cloud DLP
    label_null: list[np.ndarray] = field(default_factory=list)
    label_infinite: list[np.ndarray] = field(default_factory=list)
    time_parts: list[tuple[int, np.ndarray]] = field(default_factory=list)

    def times(self) -> np.ndarray:
        """The time column as numbers for every row (NaN where missing or not a number)."""
        values = np.full(self.rows, np.nan)
        for first, part in self.time_parts:
            values[first : first + len(part)] = part
        return values

    def batch_path(self, number: int) -> Path:
        return self.spill / f"{number:06d}.arrow"

    def spilled(self) -> Iterator[tuple[int, pa.RecordBatch]]:
        """(first row, batch) for each spilled batch, in order."""
        first = 0
        for number in range(self.batches):
            with pa.memory_map(str(self.batch_path(number))) as source:
                batch = pa.ipc.open_file(source).get_batch(0)
                yield first, batch
                first += batch.num_rows


def scan_source(config: PipelineConfig, spill: Path, bad: list[BadRow]) -> SourceScan:
    """The first pass: read the source once, spill each raw batch to `spill`, and learn per
    column what typing needs (rows the source reader could not parse go to `bad`)."""
    data = config.data
    scan = SourceScan(spill=spill)
    # Image bytes are kept as they are: nothing to type or to scan for personal data.
    image = image_column(config)
    excluded = set(data.exclude_columns) | ({image} if image else set())
    numbers_needed = {data.split.time_column if data.split.method == "time" else None}
    head_rows = config.privacy.dlp.sample_rows if config.privacy.dlp.enabled else 0
    # Reading and parsing the next batches overlap this loop's checks and spilling.
    for batch in read_ahead(_source_batches(config, bad)):
        if batch.num_rows == 0:
            continue
        path = str(scan.batch_path(scan.batches))
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, batch.schema) as writer:
            writer.write_batch(batch)
        scan.batches += 1
        first = scan.rows
        scan.rows += batch.num_rows
        for name, values in zip(batch.schema.names, batch.columns, strict=True):
            column = scan.columns.get(name)
            if column is None:
                numeric_feature = name in config.features.numeric
                column = ColumnScan(
                    name, numeric_feature, numeric_feature or name in numbers_needed
                )
                scan.columns[name] = column
            if name in excluded:
                continue
            numbers = column.observe(values, first)
            if name == data.label:
                null = first + np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))
                scan.label_null.append(null)
                if numbers is not None:  # (None: text, so an infinity there is no number)
                    scan.label_infinite.append(first + np.flatnonzero(np.isinf(numbers)))
            if data.split.method == "time" and name == data.split.time_column:
                scan.time_parts.append((first, numbers))
        if data.label not in batch.schema.names:  # a JSON key first seen in a later batch
            scan.label_null.append(np.arange(first, scan.rows))
        if sum(b.num_rows for b in scan.head) < head_rows:
            scan.head.append(batch.slice(0, head_rows))
    return scan


def image_column(config: PipelineConfig) -> str | None:
    return config.features.image.column if config.features.image is not None else None


def _source_batches(config: PipelineConfig, bad: list[BadRow]) -> Iterator[pa.RecordBatch]:
    """The source's record batches; an image source (mlops/images.py) is read whole, as rows of
    encoded image bytes and their label (a bad image stops ingest, naming the file)."""
    if not is_image_source(config):
        yield from iter_source_batches(config.data, bad)
        return
    frame, image_bad = read_images(config)
    bad.extend(image_bad)
    image = image_column(config)
    schema = pa.Schema.from_pandas(frame, preserve_index=False)
    schema = schema.set(schema.get_field_index(image), pa.field(image, pa.binary()))
    yield from pa.Table.from_pandas(frame, schema=schema, preserve_index=False).to_batches()


def _rows(parts: list[np.ndarray]) -> np.ndarray:
    return np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)


def head_frame(head: list[pa.RecordBatch], columns: list[str], rows: int) -> pd.DataFrame:
    """The first `rows` rows of the data (its first batches) as a frame of `columns`."""
    frames = [pa.Table.from_batches([b]).to_pandas() for b in head]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return frame.reindex(columns=columns).head(rows)


def privacy_decisions(
    config: PipelineConfig,
    samples: dict[str, ColumnScan],
    head: list[pa.RecordBatch],
    columns: list[str],
) -> tuple[set[str], dict[str, str], dict[str, str]]:
    """(columns to drop, {column: salt} to hash, {column: what was done}) from the
    personal-data checks on the first values of each column (`samples`: each column's scan)
    and, with Cloud DLP, on the data's first rows (`head`)."""
    data = config.data
    found_by_dlp = {}
    if config.privacy.dlp.enabled:
        from mlops.dlp import dlp_findings

        frame = head_frame(head, columns, config.privacy.dlp.sample_rows)
        found_by_dlp = dlp_findings(frame, config.privacy.dlp, config.vertex.project)
    sample = pd.DataFrame({name: samples[name].sample_series() for name in columns})
    try:
        kept, actions = apply_privacy(sample, config.privacy, data.source, data.label, found_by_dlp)
        hashed = {
            name: hash_salt(config.privacy, name)
            for name, action in actions.items()
            if action.startswith("hash")
        }
    except PersonalDataError as exc:
        raise IngestError(str(exc)) from exc
    return set(columns) - set(kept.columns), hashed, actions


def check_columns(config: PipelineConfig, rows: int, columns: list[str]) -> list[str]:
    """The columns ingest writes (before the privacy checks), or an IngestError when there are
    no rows or the label or a configured feature is not a column of the data."""
    data = config.data
    if rows == 0 or not columns:
        raise IngestError(f"{data.source}: no rows to ingest")
    if data.label not in columns:
        raise IngestError(
            f"{data.source}: label column {data.label!r} (data.label) is missing; columns are "
            f"{columns}{spelling_hints([data.label], columns)}"
        )
    missing_features = [f for f in config.features.raw_features if f not in columns]
    if missing_features:
        raise IngestError(
            f"{data.source}: feature columns {missing_features} (features.*) are missing; columns "
            f"are {columns}{spelling_hints(missing_features, columns)}"
        )
    return [c for c in columns if c not in data.exclude_columns]


def line_offset(config: PipelineConfig) -> int:
    """What turns a 0-based row into the line a person finds it on: CSV line 1 is the header."""
    data = config.data
    is_csv = (
        data.source != PACKAGED_PENGUINS
        and not is_image_source(config)
        and detect_format(data.source, data.format) == "csv"
    )
    return 2 if is_csv else 1


def source_summary(data: DataConfig) -> dict[str, str]:
    """What ingest.json records of where the rows came from: the source, and for a database the
    table or query that selected them (lineage: the same URL can hold other data)."""
    summary = {"source": data.source}
    for name in ("table", "query"):
        if getattr(data, name) is not None:
            summary[name] = getattr(data, name)
    return summary


def bad_row_text(data: DataConfig, bad: BadRow) -> str:
    """`line N: reason` (a file's line) or `row N: reason` (a database result has no lines)."""
    return f"{'row' if database_kind(data.source) else 'line'} {bad.line}: {bad.reason}"


def label_bad(rows: Iterable[int], label: str, offset: int) -> list[BadRow]:
    return [BadRow(line=int(row) + offset, reason=f"label {label!r} is empty") for row in rows]


def check_bad_fraction(data: DataConfig, bad: list[BadRow], unusable: int, read_rows: int) -> None:
    """IngestError when more rows than data.max_bad_row_fraction cannot be used (`bad`: the
    bad rows in the order they are reported, at least the first five)."""
    bad_fraction = unusable / max(read_rows, 1)
    if bad and bad_fraction > data.max_bad_row_fraction:
        shown = "; ".join(bad_row_text(data, b) for b in bad[:5])
        raise IngestError(
            f"{data.source}: {unusable} of {read_rows} rows cannot be used ({bad_fraction:.1%}, "
            f"data.max_bad_row_fraction is {data.max_bad_row_fraction:.1%}): {shown}"
        )


def no_usable_rows(data: DataConfig) -> IngestError:
    return IngestError(f"{data.source}: no usable rows left after dropping bad rows")


def split_keys(data: DataConfig, columns: list[str]) -> list[str]:
    """The columns a hash split hashes (data.split.key_columns, or every column)."""
    keys = data.split.key_columns or columns
    missing = [k for k in keys if k not in columns]
    if missing:
        raise IngestError(f"data.split.key_columns {missing} are not columns of the data")
    return keys


def time_column_error(data: DataConfig, columns: list[str]) -> IngestError | None:
    column = data.split.time_column
    if column not in columns:
        return IngestError(f"data.split.time_column {column!r} is not a column of the data")
    return None


def missing_times(data: DataConfig) -> IngestError:
    column = data.split.time_column
    return IngestError(f"data.split.time_column {column!r} has missing or non-numeric values")


def clean_times(times: np.ndarray, scanned: ColumnScan | None) -> np.ndarray:
    """The time column's numbers as the split uses them: NaN where a typed column would hold no
    number (an infinity), everywhere when the column is hashed (`scanned` None)."""
    if scanned is None:
        return np.full(len(times), np.nan)  # hashed: no longer a number
    if scanned.numeric:
        return np.where(np.isinf(times), np.nan, times)  # a typed column holds no infinities
    return times


def column_dtypes(columns: list[str], typed: dict[str, ColumnScan], image: str | None) -> dict:
    """{column: dtype} as ingest.json reports it: typed columns as scanned, hashed ones text."""
    return {
        name: typed[name].dtype if name in typed else "binary" if name == image else "string"
        for name in columns
    }


def split_schema(dtypes: dict[str, str], image: str | None) -> pa.Schema:
    """The Arrow schema (with pandas metadata) of every split file."""
    empty = pd.DataFrame(
        {
            name: pd.Series([], dtype=object if dtype == "binary" else dtype)
            for name, dtype in dtypes.items()
        }
    )
    schema = pa.Schema.from_pandas(empty, preserve_index=False)
    if image is not None:
        schema = schema.set(schema.get_field_index(image), pa.field(image, pa.binary()))
    return schema


def typed_table(
    batch: pa.RecordBatch,
    schema: pa.Schema,
    typed: dict[str, ColumnScan],
    hashed: dict[str, str],
    image: str | None,
) -> pa.Table:
    """One raw batch as the split files hold it: each column of `schema` typed as its scan
    decided, hashed, or image bytes (a column the batch lacks is missing throughout)."""
    arrays = []
    for name in schema.names:
        values = _column(batch, name)
        if name in hashed:
            tokens = [hash_token(v, hashed[name]) for v in values.to_pylist()]
            arrays.append(pa.array(tokens, pa.string()))
        elif name == image:
            arrays.append(values.cast(pa.binary()))
        else:
            arrays.append(typed[name].typed(values))
    return pa.Table.from_arrays(arrays, schema=schema)


def hash_codes(table: pa.Table, keys: list[str], data: DataConfig) -> np.ndarray:
    """Hash-split code per row of a typed table."""
    return split_fractions(key_texts([table.column(k).combine_chunks() for k in keys]), data)


def empty_split(data: DataConfig, name: str, usable: int) -> IngestError:
    return IngestError(
        f"{data.source}: split {name!r} is empty ({usable} rows); give more data or "
        "larger data.split fractions"
    )


class SplitWriter:
    """Appends typed rows to a Parquet file (a path, or a file open for writing) in row groups
    of about ROW_GROUP_ROWS rows."""

    def __init__(self, path: Path | Any, schema: pa.Schema) -> None:
        import pyarrow.parquet as pq

        self.schema = schema
        self.writer = pq.ParquetWriter(path, schema)
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self.pending.append(table)
        self.pending_rows += table.num_rows
        self.rows += table.num_rows
        if self.pending_rows >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.writer.write_table(pa.concat_tables(self.pending), row_group_size=ROW_GROUP_ROWS)
        self.pending, self.pending_rows = [], 0

    def close(self) -> None:
        self.flush()
        self.writer.close()


def ingest_on_beam(config: PipelineConfig) -> bool:
    """Whether ingest runs as a Beam pipeline (components/ingest_beam.py): when config.beam_args
    select Dataflow and the source is a file on Cloud Storage, where Dataflow workers read it, or
    a database (BigQuery, a SQL server).
    A file on this machine (or in the image, as the shipped configs' data), an image folder and
    the packaged penguins set are read in-process."""
    if not on_dataflow(config.beam_args):
        return False
    source = config.data.source
    kind = database_kind(source)
    if kind is not None:  # BigQuery, or a database server the workers reach (not a SQLite file)
        return kind == "bigquery" or not source.lower().startswith("sqlite")
    return (
        on_cloud_storage(source)
        and not is_image_source(config)
        and local_path(source) not in PACKAGED_SOURCES
    )


def run_ingest(config: PipelineConfig, output_dir: str | Path) -> dict[str, Any]:
    """Read, type and split the configured data into `output_dir/{train,eval,test}.parquet`
    (and, with data.unlabeled keep, the rows without a label into `unlabeled.parquet`).
    In-process, or on Beam (Dataflow) when `ingest_on_beam(config)`: the same output either way.

    Returns a summary (rows per split, dropped rows, column types), also written as ingest.json.
    """
    if ingest_on_beam(config):
        from components.ingest_beam import run_ingest_beam

        return run_ingest_beam(config, output_dir)
    with tempfile.TemporaryDirectory(prefix="mlops-ingest-") as spill:
        return _ingest(config, output_dir, Path(spill))


def _ingest(config: PipelineConfig, output_dir: str | Path, spill: Path) -> dict[str, Any]:
    data = config.data
    bad: list[BadRow] = []
    scan = scan_source(config, spill, bad)
    columns = check_columns(config, scan.rows, list(scan.columns))
    image = image_column(config)
    dropped_columns, hashed, privacy = privacy_decisions(
        config, scan.columns, scan.head, [c for c in columns if c != image]
    )
    columns = [c for c in columns if c not in dropped_columns]
    reading_bad = len(bad)
    read_rows = scan.rows + reading_bad
    offset = line_offset(config)

    typed = {name: scan.columns[name] for name in columns if name not in hashed and name != image}
    for column in typed.values():
        bad.extend(column.typing_bad(offset))
    typing_rows = _rows([rows for column in typed.values() for rows in column.bad_rows])
    label = typed.get(data.label)
    label_parts = list(scan.label_null)
    if label is not None and label.numeric:
        label_parts += scan.label_infinite  # an infinite label is a missing one
    label_missing = _rows(label_parts)
    # data.unlabeled keep: rows without a label are set aside for self-training, not bad rows.
    keep_unlabeled = data.unlabeled == "keep"
    unlabeled_rows = (
        np.setdiff1d(label_missing, typing_rows) if keep_unlabeled else label_missing[:0]
    )
    if not keep_unlabeled:
        bad.extend(label_bad(label_missing[:EXAMPLES_PER_COLUMN], data.label, offset))
    dropped_rows = np.union1d(typing_rows, label_missing)
    unusable = reading_bad + len(
        np.union1d(typing_rows, label_missing[:0] if keep_unlabeled else label_missing)
    )
    check_bad_fraction(data, bad, unusable, read_rows)
    usable = scan.rows - len(dropped_rows)
    if usable == 0:
        raise no_usable_rows(data)
    time_codes = _time_codes(data, scan, columns, typed, dropped_rows)
    keys = split_keys(data, columns) if time_codes is None else []

    dtypes = column_dtypes(columns, typed, image)
    schema = split_schema(dtypes, image)
    summary: dict[str, Any] = {
        **source_summary(data),
        "rows_read": read_rows,
        "rows_dropped": unusable,
        "dropped_examples": [bad_row_text(data, b) for b in bad[:SHOWN_BAD_ROWS]],
        "columns": dtypes,
        "personal_data": privacy,
        "rows": {},
    }
    with atomic_dir(output_dir) as tmp:
        written = list(SPLITS) + ([UNLABELED] if keep_unlabeled else [])
        writers = {name: SplitWriter(tmp / f"{name}.parquet", schema) for name in written}

        def split_tables() -> Iterator[dict[str, pa.Table]]:
            """Each spilled batch typed and cut into its splits' rows, in order."""
            done = 0  # usable rows so far (the time split's plan is indexed by them)
            for first, batch in scan.spilled():
                rows = np.arange(first, first + batch.num_rows)
                table = typed_table(batch, schema, typed, hashed, image)
                keep = (
                    ~np.isin(rows, dropped_rows, assume_unique=True) if len(dropped_rows) else None
                )
                parts = {}
                if keep_unlabeled:
                    aside = np.isin(rows, unlabeled_rows, assume_unique=True)  # none: 0 rows
                    parts[UNLABELED] = table.filter(pa.array(aside))
                table = table.filter(pa.array(keep)) if keep is not None else table
                if time_codes is not None:
                    codes = time_codes[done : done + table.num_rows]
                else:
                    codes = hash_codes(table, keys, data)
                done += table.num_rows
                for name in SPLITS:
                    parts[name] = table.filter(pa.array(codes == SPLIT_CODES[name]))
                yield parts

        # Typing the next batches overlaps writing (and compressing) this one's row groups.
        for parts in read_ahead(split_tables()):
            for name, part in parts.items():
                writers[name].write(part)
        for writer in writers.values():
            writer.close()
        for name in SPLITS:
            if writers[name].rows == 0:
                raise empty_split(data, name, usable)
            summary["rows"][name] = writers[name].rows
        if keep_unlabeled:
            summary["rows_unlabeled"] = writers[UNLABELED].rows
        summary["fingerprint"] = fingerprint([str(tmp / f"{name}.parquet") for name in written])
        write_json_atomic(tmp / INGEST_SUMMARY_FILE, summary)
    return summary


def fingerprint(paths: list[str]) -> str:
    """SHA-256 of the split files' bytes, one after the other (local paths or URIs)."""
    digest = hashlib.sha256()
    for path in paths:
        with open_uri(path) as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _column(batch: pa.RecordBatch, name: str) -> pa.Array:
    index = batch.schema.get_field_index(name)
    return batch.column(index) if index >= 0 else pa.nulls(batch.num_rows, pa.string())


def _time_codes(
    data: DataConfig,
    scan: SourceScan,
    columns: list[str],
    typed: dict[str, ColumnScan],
    dropped_rows: np.ndarray,
) -> np.ndarray | None:
    """Split code per usable row for a time split (None for a hash split)."""
    if data.split.method != "time":
        return None
    error = time_column_error(data, columns)
    if error is not None:
        raise error
    times = clean_times(np.delete(scan.times(), dropped_rows), typed.get(data.split.time_column))
    if np.isnan(times).any():
        raise missing_times(data)
    return time_split_codes(times, data)
