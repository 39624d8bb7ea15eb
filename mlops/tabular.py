"""Reading tabular sources (CSV, JSON Lines, Parquet, the packaged penguins set) and typing their
columns, shared by ingest (training data) and monitoring (serving data)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
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


def detect_format(source: str, declared: str) -> str:
    if declared != "auto":
        return declared
    suffix = source.lower().rsplit(".", 1)[-1]
    formats = {"csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl"}
    formats.update({"parquet": "parquet", "pq": "parquet"})
    if suffix not in formats:
        raise IngestError(
            f"cannot tell the format of {source!r} from its extension; set data.format to one of "
            "csv, jsonl, parquet"
        )
    return formats[suffix]


def _read_csv(raw: bytes, bad: list[BadRow]) -> pd.DataFrame:
    text = raw.decode("utf-8")
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if not header:
        raise IngestError("the file is empty")
    # Number rows whose field count differs from the header (record number = line for plain CSV).
    for number, row in enumerate(rows, start=2):
        if row and len(row) != len(header):
            bad.append(BadRow(line=number, reason=f"{len(row)} fields, header has {len(header)}"))
    frame = pd.read_csv(
        io.StringIO(text), dtype=str, keep_default_na=False, on_bad_lines="skip", engine="python"
    )
    return frame.replace({"": None})


def _read_jsonl(raw: bytes, bad: list[BadRow]) -> pd.DataFrame:
    records: list[dict[str, Any]] = []
    for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append(BadRow(line=number, reason=f"not JSON: {exc.msg}"))
            continue
        if not isinstance(record, dict):
            bad.append(
                BadRow(line=number, reason=f"expected a JSON object, got {type(record).__name__}")
            )
            continue
        records.append(record)
    return pd.DataFrame.from_records(records)


def _read_parquet(raw: bytes) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(io.BytesIO(raw)).to_pandas()
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise IngestError(f"not a readable Parquet file: {exc}") from exc


def read_source(data: DataConfig) -> tuple[pd.DataFrame, list[BadRow]]:
    """Read the configured source into an untyped frame plus the rows that could not be parsed."""
    if data.source == PACKAGED_PENGUINS:
        import palmerpenguins

        return palmerpenguins.load_penguins(), []
    source = local_path(data.source)
    if not uri_exists(source):
        raise IngestError(f"data.source {data.source!r} does not exist")
    fmt = detect_format(source, data.format)
    with open_uri(source) as handle:
        raw = handle.read()
    bad: list[BadRow] = []
    try:
        if fmt == "csv":
            frame = _read_csv(raw, bad)
        elif fmt == "jsonl":
            frame = _read_jsonl(raw, bad)
        else:
            frame = _read_parquet(raw)
    except UnicodeDecodeError as exc:
        raise IngestError(f"{data.source}: not UTF-8 text ({exc})") from exc
    except pd.errors.EmptyDataError as exc:
        raise IngestError(f"{data.source}: the file is empty") from exc
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
    return values.astype("float64")


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
    for name in frame.columns:
        column = frame[name]
        if name in config.features.numeric:
            typed[name] = narrow_integers(_to_numeric(column, name, bad, line_offset))
        elif pd.api.types.is_numeric_dtype(column) or looks_numeric(column):
            typed[name] = narrow_integers(pd.to_numeric(column, errors="coerce").astype("float64"))
        else:
            typed[name] = column.astype("string")
    return pd.DataFrame(typed, index=frame.index), bad


def narrow_integers(values: pd.Series) -> pd.Series:
    present = values.dropna()
    if len(present) and present.mod(1).eq(0).all() and present.abs().max() < 2**53:
        return values.astype("Int64")
    return values
