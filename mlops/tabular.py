"""Reading tabular sources (CSV, JSON Lines, Parquet, the packaged penguins set) and typing their
columns, shared by ingest (training data) and monitoring (serving data)."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import itertools
import json
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mlops.config import DataConfig, database_kind, local_path
from mlops.io import open_uri, uri_exists

PACKAGED_PENGUINS = "palmerpenguins"


class IngestError(ValueError):
    """The input cannot be ingested; the message names the source, row and column."""


@dataclass(frozen=True)
class BadRow:
    line: int  # 1-based line in the file (header is line 1 for CSV)
    reason: str


COMPRESSED_SUFFIXES = (".gz", ".gzip")
GZIP_MAGIC = b"\x1f\x8b"


def detect_format(source: str, declared: str) -> str:
    """csv, jsonl or parquet: `declared` unless it is "auto", else from the extension (a `.gz`
    suffix is looked through: `rows.csv.gz` is CSV); "bigquery" or "sql" for a database."""
    if declared != "auto":
        return declared
    kind = database_kind(source)
    if kind is not None:  # not a file: mlops/databases.py reads it
        return kind
    name = source.lower()
    for suffix in COMPRESSED_SUFFIXES:
        name = name.removesuffix(suffix)
    suffix = name.rsplit(".", 1)[-1]
    formats = {"csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl"}
    formats.update({"parquet": "parquet", "pq": "parquet"})
    if suffix not in formats:
        raise IngestError(
            f"cannot tell the format of {source!r} from its extension; set data.format to one of "
            "csv, jsonl, parquet"
        )
    return formats[suffix]


def _decompress(raw: bytes, source: str) -> bytes:
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise IngestError(f"{source}: a gzip file that cannot be decompressed ({exc})") from exc


def check_header(header: list[str], source: str) -> None:
    """Every column needs a name, and a name only once: pandas would silently rename the second
    `fare` to `fare.1` and train on it."""
    unnamed = [i + 1 for i, name in enumerate(header) if not name.strip()]
    if unnamed:
        raise IngestError(
            f"{source}: column(s) {unnamed} of the header have no name; give every column a name"
        )
    counts = Counter(header)
    duplicates = sorted(name for name, count in counts.items() if count > 1)
    if duplicates:
        raise IngestError(
            f"{source}: the header names {duplicates} more than once; give every column a "
            "distinct name"
        )


def spelling_hints(wanted: list[str], columns: list[str]) -> str:
    """ " (did you mean ...)" for each wanted name that is not a column but matches one when case,
    spacing and punctuation are ignored (config "Body Mass (g)", header "body mass g"); else ""."""
    from mlops.names import ColumnNameError, safe_name

    def key(name: str) -> str | None:
        try:
            return safe_name(name).casefold()
        except ColumnNameError:
            return None

    by_key: dict[str | None, str] = {key(column): column for column in reversed(columns)}
    hints = [
        f"{name!r} -> {by_key[key(name)]!r}"
        for name in wanted
        if name not in columns and key(name) is not None and key(name) in by_key
    ]
    return (
        f" (did you mean {', '.join(hints)}? names must match the header exactly)" if hints else ""
    )


CSV_BLOCK_BYTES = 8 << 20  # bytes of CSV text parsed per record batch
JSON_CHUNK_LINES = 50_000  # JSON records per record batch
PARQUET_BATCH_ROWS = 65_536
# Sources that are not files but frames shipped in a package, read whole by `read_source`.
PACKAGED_SOURCES = frozenset({PACKAGED_PENGUINS})


class _Prefixed(io.RawIOBase):
    """A readable stream of `head` followed by the rest of `stream` (whose head was read)."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self.head, self.stream = head, stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.head:
            size = min(len(buffer), len(self.head))
            buffer[:size], self.head = self.head[:size], self.head[size:]
            return size
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


@contextlib.contextmanager
def _open_decompressed(source: str) -> Iterator[IO[bytes]]:
    """The source's bytes, gzip-decompressed on the fly when they start with the gzip magic."""
    with open_uri(source) as handle:
        head = handle.read(2)
        stream = io.BufferedReader(_Prefixed(head, handle), buffer_size=1 << 20)
        if head == GZIP_MAGIC:
            with gzip.GzipFile(fileobj=stream) as unzipped:
                yield unzipped
        else:
            yield stream


def _csv_header(source: str) -> list[str]:
    with _open_decompressed(source) as raw:
        # a byte-order mark (Excel) is not part of the first name
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        header = next(csv.reader(text), None)
    if not header:
        raise IngestError(f"{source}: the file is empty")
    check_header(header, source)
    return header


def _csv_batches(source: str, bad: list[BadRow], na_values: list[str]) -> Iterator[pa.RecordBatch]:
    """Record batches of the CSV's cells as text (an empty cell or one of `na_values` is null);
    a row whose field count differs from the header's is skipped and listed in `bad`."""
    import pyarrow.csv as pacsv

    header = _csv_header(source)

    def ragged(row: Any) -> str:
        reason = f"{row.actual_columns} fields, header has {len(header)}"
        bad.append(BadRow(line=row.number, reason=reason))
        return "skip"

    # One thread: measured faster than the threaded reader on 2 cores, and it numbers the rows.
    read = pacsv.ReadOptions(
        column_names=header, skip_rows=1, block_size=CSV_BLOCK_BYTES, use_threads=False
    )
    parse = pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=ragged)
    convert = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in header},
        null_values=["", *na_values],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    with _open_decompressed(source) as raw:
        yield from pacsv.open_csv(
            raw, read_options=read, parse_options=parse, convert_options=convert
        )


def _json_records(source: str, bad: list[BadRow]) -> Iterator[list[dict[str, Any]]]:
    """Lists of records from JSON Lines (one object per line, read line by line) or from one
    JSON array of objects (read whole); lines that are not JSON objects go to `bad`."""
    with _open_decompressed(source) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig")
        head: list[str] = []
        for line in text:
            head.append(line)
            if line.strip():
                break
        if "".join(head).lstrip().startswith("["):
            try:
                array = json.loads("".join(head) + text.read())
            except json.JSONDecodeError as exc:
                raise IngestError(
                    f"{source}: starts like a JSON array but is not valid JSON ({exc.msg} at line "
                    f"{exc.lineno}); write one JSON object per line (JSON Lines) or a valid array"
                ) from exc
            items: Iterable[tuple[int, Any]] = enumerate(array, start=1)
            where = "element"
        else:
            items = _json_lines(itertools.chain(head, text), bad)
            where = "line"
        records: list[dict[str, Any]] = []
        for number, record in items:
            if not isinstance(record, dict):
                kind = type(record).__name__
                reason = f"{where} {number}: expected a JSON object, got {kind}"
                bad.append(BadRow(line=number, reason=reason))
                continue
            records.append(record)
            if len(records) >= JSON_CHUNK_LINES:
                yield records
                records = []
        if records:
            yield records


def _json_lines(lines: Iterable[str], bad: list[BadRow]) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append(BadRow(line=number, reason=f"not JSON: {exc.msg}"))


def _json_text(value: Any, na_values: frozenset[str]) -> str | None:
    """A JSON value as the text ingest types: null, NaN or one of the NA strings is missing;
    true/false are 1/0 (pandas reads a column of booleans as numbers)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, str):
        return None if value in na_values else value
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def json_batch(records: list[dict[str, Any]], na_values: list[str]) -> pa.RecordBatch:
    """A chunk of JSON records as a record batch of text columns, in first-seen key order."""
    names: dict[Any, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    missing = frozenset(na_values)
    arrays = [
        pa.array([_json_text(record.get(name), missing) for record in records], pa.string())
        for name in names
    ]
    return pa.RecordBatch.from_arrays(arrays, names=[str(name) for name in names])


def _parquet_batches(source: str) -> Iterator[pa.RecordBatch]:
    """Record batches of a Parquet file, row group by row group (read whole when gzipped)."""
    with open_uri(source) as handle:
        raw: IO[bytes] = handle
        seekable = getattr(handle, "seekable", lambda: False)()
        head = handle.read(2)
        if head == GZIP_MAGIC or not seekable:  # Parquet needs random access: read it whole
            raw = io.BytesIO(_decompress(head + handle.read(), source))
        else:
            handle.seek(0)
        parquet = parquet_file(raw, source)
        yield from parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS)


def parquet_file(raw: IO[bytes], source: str) -> Any:
    """A `pyarrow.parquet.ParquetFile` over a seekable stream of the source, its header checked."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(raw)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise IngestError(f"{source}: not a readable Parquet file: {exc}") from exc
    check_header(parquet.schema_arrow.names, source)
    return parquet


def check_file_source(source: str) -> None:
    _check_cloud_credentials(source)
    if "://" not in source and Path(source).is_dir():
        raise IngestError(
            f"data.source {source!r} is a directory; name one file in it (CSV, JSON Lines or "
            "Parquet, optionally gzip-compressed)"
        )
    if not uri_exists(source):
        raise IngestError(f"data.source {source!r} does not exist")


@contextlib.contextmanager
def reading_errors(source: str, fmt: str) -> Iterator[None]:
    """What the readers raise, as IngestErrors that name the file."""
    try:
        yield
    except PermissionError as exc:
        raise IngestError(f"data.source {source!r} cannot be read: permission denied") from exc
    except UnicodeDecodeError as exc:
        raise IngestError(f"{source}: not UTF-8 text ({exc}); re-save the file as UTF-8") from exc
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise IngestError(f"{source}: a gzip file that cannot be decompressed ({exc})") from exc
    except pa.ArrowInvalid as exc:
        if "invalid UTF8" in str(exc):
            raise IngestError(
                f"{source}: not UTF-8 text ({exc}); re-save the file as UTF-8"
            ) from exc
        if fmt == "parquet":
            raise IngestError(f"{source}: not a readable Parquet file: {exc}") from exc
        raise IngestError(f"{source}: cannot be read as {fmt}: {exc}") from exc


def iter_source_batches(data: DataConfig, bad: list[BadRow]) -> Iterator[pa.RecordBatch]:
    """The configured source as Arrow record batches of raw values, read incrementally (memory
    bounded by a batch): CSV and JSON cells as text, null where empty or one of data.na_values;
    Parquet columns as stored; database columns as the database types them (text as CSV cells,
    mlops/databases.py). Rows that cannot be parsed go to `bad`. JSON batches hold the keys
    their records have (a key may first appear in a later batch)."""
    source = local_path(data.source)
    if source in PACKAGED_SOURCES:
        frame, found = read_source(data)
        bad.extend(found)
        yield from pa.Table.from_pandas(frame, preserve_index=False).to_batches()
        return
    if database_kind(source) is not None:  # BigQuery or a SQL database (row N is result row N)
        from mlops.databases import iter_database_batches

        yield from iter_database_batches(data)
        return
    check_file_source(source)
    fmt = detect_format(source, data.format)
    with reading_errors(source, fmt):
        if fmt == "csv":
            yield from _csv_batches(source, bad, data.na_values)
        elif fmt == "jsonl":
            for records in _json_records(source, bad):
                yield json_batch(records, data.na_values)
        else:
            yield from _parquet_batches(source)


def _check_cloud_credentials(source: str) -> None:
    """Without credentials a gs:// read retries for minutes and ends in a RetryError that names
    no file: say so at once. (An emulator, STORAGE_EMULATOR_HOST, needs none.)"""
    import os

    if not source.startswith("gs://") or os.environ.get("STORAGE_EMULATOR_HOST"):
        return
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    from mlops.gcs import LOGIN_HINT

    try:
        google.auth.default()
    except DefaultCredentialsError as exc:
        raise IngestError(
            f"cannot read {source}: no Google Cloud credentials on this machine. Run "
            f"{LOGIN_HINT}, or copy the data locally and point data.source at it"
        ) from exc


def read_source(data: DataConfig) -> tuple[pd.DataFrame, list[BadRow]]:
    """Read the configured source whole into an untyped frame plus the rows that could not be
    parsed (serving data for monitoring; ingest streams with `iter_source_batches`)."""
    source = local_path(data.source)
    if source == PACKAGED_PENGUINS:
        import palmerpenguins

        return palmerpenguins.load_penguins(), []
    if database_kind(source) is not None:
        # batches may type a column differently (SQLite): concatenated as frames
        frames = [batch.to_pandas() for batch in iter_source_batches(data, [])]
        return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), []
    check_file_source(source)
    fmt = detect_format(source, data.format)
    bad: list[BadRow] = []
    with reading_errors(source, fmt):
        if fmt == "jsonl":
            # pandas types all records at once (numbers stay numbers, booleans booleans)
            records = [record for chunk in _json_records(source, bad) for record in chunk]
            frame = pd.DataFrame.from_records(records)
            if data.na_values and len(frame):
                frame = frame.replace({value: None for value in data.na_values})
        else:
            reader = _csv_batches(source, bad, data.na_values) if fmt == "csv" else None
            batches = list(reader if reader is not None else _parquet_batches(source))
            frame = pa.Table.from_batches(batches).to_pandas() if batches else pd.DataFrame()
    frame.columns = [str(name) for name in frame.columns]
    return frame, bad


# Plain decimal text: pyarrow reads it (correctly rounded); text it cannot read goes to pandas.
_PLAIN_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)$"
# pandas reads a decimal of at most 15 digits without an exponent correctly rounded too (one
# exact division); longer ones or exponents it reads its own way, which ingest has always used.
_EXACT_DIGITS = 15


def as_text(values: pa.Array) -> pa.Array:
    """Values as an Arrow string array (dictionary-encoded and other types decoded/rendered)."""
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_string(values.type):
        return values
    return values.cast(pa.string())


def is_number_type(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)


def _read_alike(text: pa.Array) -> np.ndarray:
    """Per value, whether pyarrow and pandas read it to the same number for certain: at most
    15 digits and no exponent (whether it is a number at all is decided by the reader). Checked
    on the whole buffer first: numbers as CSV files write them are short and have no "e"."""
    import pyarrow.compute as pc

    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)
    offsets = offsets[text.offset : text.offset + len(text) + 1]
    data = text.buffers()[2]
    chars = np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]] if data else b""
    short = len(text) == 0 or int(np.diff(offsets).max()) <= _EXACT_DIGITS
    if short and not (np.isin(chars, (ord("e"), ord("E"))).any() if len(chars) else False):
        return np.ones(len(text), dtype=bool)
    alike = ~(
        pc.fill_null(pc.match_substring(text, "e"), False).to_numpy(zero_copy_only=False)
        | pc.fill_null(pc.match_substring(text, "E"), False).to_numpy(zero_copy_only=False)
    )
    long_at = np.flatnonzero((np.diff(offsets) > _EXACT_DIGITS) & alike)
    if len(long_at):
        digits = pc.count_substring_regex(text.take(long_at), "[0-9]").to_numpy()
        alike[long_at[digits > _EXACT_DIGITS]] = False
    return alike


def parse_numbers(values: pa.Array) -> np.ndarray:
    """float64 per value, NaN where missing or not a number: exactly what
    `pandas.to_numeric(errors="coerce")` gives (ingest's typing since the start), vectorised:
    short plain decimals are read by pyarrow (the same numbers), the rest by pandas."""
    import pyarrow.compute as pc

    if is_number_type(values.type) or pa.types.is_decimal(values.type):
        return values.cast(pa.float64()).to_numpy(zero_copy_only=False)
    text = as_text(values)
    alike = _read_alike(text)
    if alike.all():
        try:
            return text.cast(pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # some text is no number: read value by value below
    plain = pc.fill_null(pc.match_substring_regex(text, _PLAIN_NUMBER), False)
    fast = plain.to_numpy(zero_copy_only=False) & alike
    numbers = np.full(len(text), np.nan)
    fast_at = np.flatnonzero(fast)
    numbers[fast_at] = text.take(fast_at).cast(pa.float64()).to_numpy(zero_copy_only=False)
    other_at = np.flatnonzero(~fast & text.is_valid().to_numpy(zero_copy_only=False))
    if len(other_at):
        raw = pd.Series(text.take(other_at).to_pylist(), dtype=object)
        numbers[other_at] = pd.to_numeric(raw, errors="coerce").astype("float64").to_numpy()
    return numbers


def looks_numeric(column: pd.Series) -> bool:
    present = column.dropna()
    return len(present) > 0 and bool(pd.to_numeric(present, errors="coerce").notna().all())


def narrow_integers(values: pd.Series) -> pd.Series:
    present = values.dropna()
    if len(present) and present.mod(1).eq(0).all() and present.abs().max() < 2**53:
        return values.astype("Int64")
    return values
