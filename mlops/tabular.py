"""Reading tabular sources (CSV, JSON Lines, Parquet, the packaged penguins set) and typing their
columns, shared by ingest (training data) and monitoring (serving data)."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops.config import DataConfig, PipelineConfig, local_path
from mlops.io import open_uri, uri_exists

PACKAGED_PENGUINS = "palmerpenguins"


class IngestError(ValueError):
    """The input cannot be ingested; the message names the source, row and column."""


@dataclass(frozen=True)
class BadRow:
    line: int  # 1-based line in the file (header is line 1 for CSV)
    reason: str


COMPRESSED_SUFFIXES = (".gz", ".gzip")
_GZIP_MAGIC = b"\x1f\x8b"


def detect_format(source: str, declared: str) -> str:
    """csv, jsonl or parquet: `declared` unless it is "auto", else from the extension (a `.gz`
    suffix is looked through: `rows.csv.gz` is CSV)."""
    if declared != "auto":
        return declared
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
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    import gzip
    import zlib

    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise IngestError(f"{source}: a gzip file that cannot be decompressed ({exc})") from exc


def _check_header(header: list[str], source: str) -> None:
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


def _read_csv(raw: bytes, bad: list[BadRow], source: str, na_values: list[str]) -> pd.DataFrame:
    text = raw.decode("utf-8-sig")  # a byte-order mark (Excel) is not part of the first name
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if not header:
        raise IngestError(f"{source}: the file is empty")
    _check_header(header, source)
    # Number rows whose field count differs from the header (record number = line for plain CSV).
    for number, row in enumerate(rows, start=2):
        if row and len(row) != len(header):
            bad.append(BadRow(line=number, reason=f"{len(row)} fields, header has {len(header)}"))
    frame = pd.read_csv(
        io.StringIO(text), dtype=str, keep_default_na=False, on_bad_lines="skip", engine="python"
    )
    return frame.replace({value: None for value in ["", *na_values]})


def _read_json(raw: bytes, bad: list[BadRow], source: str, na_values: list[str]) -> pd.DataFrame:
    """JSON Lines (one object per line), or one JSON array of objects."""
    text = raw.decode("utf-8-sig")
    records: list[dict[str, Any]] = []
    if text.lstrip().startswith("["):
        try:
            array = json.loads(text)
        except json.JSONDecodeError as exc:
            raise IngestError(
                f"{source}: starts like a JSON array but is not valid JSON ({exc.msg} at line "
                f"{exc.lineno}); write one JSON object per line (JSON Lines) or a valid array"
            ) from exc
        lines = [(number, item) for number, item in enumerate(array, start=1)]
        where = "element"
    else:
        lines = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                lines.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                bad.append(BadRow(line=number, reason=f"not JSON: {exc.msg}"))
        where = "line"
    for number, record in lines:
        if not isinstance(record, dict):
            bad.append(
                BadRow(
                    line=number,
                    reason=f"{where} {number}: expected a JSON object, got {type(record).__name__}",
                )
            )
            continue
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    if na_values and len(frame):
        frame = frame.replace({value: None for value in na_values})
    return frame


def _read_parquet(raw: bytes, source: str) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(raw))
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise IngestError(f"{source}: not a readable Parquet file: {exc}") from exc
    _check_header(table.column_names, source)
    return table.to_pandas()


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
    """Read the configured source into an untyped frame plus the rows that could not be parsed."""
    source = local_path(data.source)
    if source == PACKAGED_PENGUINS:
        import palmerpenguins

        return palmerpenguins.load_penguins(), []
    _check_cloud_credentials(source)
    if "://" not in source and Path(source).is_dir():
        raise IngestError(
            f"data.source {source!r} is a directory; name one file in it (CSV, JSON Lines or "
            "Parquet, optionally gzip-compressed)"
        )
    if not uri_exists(source):
        raise IngestError(f"data.source {source!r} does not exist")
    fmt = detect_format(source, data.format)
    try:
        with open_uri(source) as handle:
            raw = _decompress(handle.read(), source)
    except PermissionError as exc:
        raise IngestError(f"data.source {source!r} cannot be read: permission denied") from exc
    bad: list[BadRow] = []
    try:
        if fmt == "csv":
            frame = _read_csv(raw, bad, source, data.na_values)
        elif fmt == "jsonl":
            frame = _read_json(raw, bad, source, data.na_values)
        else:
            frame = _read_parquet(raw, source)
    except UnicodeDecodeError as exc:
        raise IngestError(f"{source}: not UTF-8 text ({exc}); re-save the file as UTF-8") from exc
    except pd.errors.EmptyDataError as exc:
        raise IngestError(f"{source}: the file is empty") from exc
    frame.columns = [str(name) for name in frame.columns]
    return frame, bad


def _to_numeric(column: pd.Series, name: str, bad: list[BadRow], line_offset: int) -> pd.Series:
    values = pd.to_numeric(column, errors="coerce")
    unparsed = values.isna() & column.notna()
    for index in np.flatnonzero(unparsed.to_numpy())[:1000]:
        bad.append(
            BadRow(
                line=int(index) + line_offset,
                reason=f"column {name!r}: {column.iloc[index]!r} is not a number",
            )
        )
    infinite = np.isinf(values.to_numpy(dtype="float64", na_value=np.nan))
    for index in np.flatnonzero(infinite)[:1000]:
        bad.append(
            BadRow(
                line=int(index) + line_offset,
                reason=f"column {name!r}: {column.iloc[index]!r} is not a finite number",
            )
        )
    return values.astype("float64").mask(infinite)


def looks_numeric(column: pd.Series) -> bool:
    present = column.dropna()
    return len(present) > 0 and bool(pd.to_numeric(present, errors="coerce").notna().all())


def type_columns(
    frame: pd.DataFrame, config: PipelineConfig, line_offset: int
) -> tuple[pd.DataFrame, list[BadRow]]:
    """Type each column as the source means it: numbers become nullable Int64 when every value is
    integral and float64 otherwise, everything else string. Numeric features must parse as numbers;
    integer-coded categorical features stay integers (the model reads categories as text)."""
    bad: list[BadRow] = []
    typed: dict[str, pd.Series] = {}
    image = config.features.image
    for name in frame.columns:
        column = frame[name]
        if image is not None and name == image.column:
            typed[name] = column  # encoded image bytes (mlops/images.py), kept as they are
        elif name in config.features.numeric:
            typed[name] = narrow_integers(_to_numeric(column, name, bad, line_offset))
        elif pd.api.types.is_numeric_dtype(column) or looks_numeric(column):
            values = pd.to_numeric(column, errors="coerce").astype("float64")
            # A column no feature reads keeps its rows; its infinities become missing values.
            typed[name] = narrow_integers(values.mask(np.isinf(values.to_numpy())))
        else:
            typed[name] = column.astype("string")
    return pd.DataFrame(typed, index=frame.index), bad


def narrow_integers(values: pd.Series) -> pd.Series:
    present = values.dropna()
    if len(present) and present.mod(1).eq(0).all() and present.abs().max() < 2**53:
        return values.astype("Int64")
    return values
