"""Ingest: read CSV / JSON Lines / Parquet (or the packaged penguins set), type the columns and
split the rows deterministically into train/eval/test Parquet files."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops.config import DataConfig, PipelineConfig
from mlops.io import atomic_dir, open_uri, uri_exists, write_json_atomic

SPLITS = ("train", "eval", "test")
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
    if not uri_exists(data.source):
        raise IngestError(f"data.source {data.source!r} does not exist")
    fmt = detect_format(data.source, data.format)
    with open_uri(data.source) as handle:
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


def _categorical_text(value: Any) -> str:
    # Integer-coded categories (e.g. community area 8) must read "8", never "8.0".
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def assign_splits(frame: pd.DataFrame, data: DataConfig) -> pd.Series:
    """Deterministic split per row: by hash of key columns or by position in time."""
    split = data.split
    if split.method == "time":
        column = split.time_column
        if column not in frame.columns:
            raise IngestError(f"data.split.time_column {column!r} is not a column of the data")
        times = pd.to_numeric(frame[column], errors="coerce")
        if times.isna().any():
            raise IngestError(
                f"data.split.time_column {column!r} has missing or non-numeric values"
            )
        # Rank with ties broken by original order, so equal timestamps never straddle randomly.
        position = times.rank(method="first").to_numpy() / len(frame)
        train_end = 1 - split.eval_fraction - split.test_fraction
        labels = np.where(
            position <= train_end,
            "train",
            np.where(position <= 1 - split.test_fraction, "eval", "test"),
        )
        return pd.Series(labels, index=frame.index)
    keys = split.key_columns or list(frame.columns)
    missing = [k for k in keys if k not in frame.columns]
    if missing:
        raise IngestError(f"data.split.key_columns {missing} are not columns of the data")
    joined = frame[keys].astype("string").fillna("<NA>").agg("\x1f".join, axis=1)
    fraction = joined.map(lambda text: int(hashlib.md5(text.encode()).hexdigest()[:8], 16) / 2**32)
    labels = np.where(
        fraction < split.test_fraction,
        "test",
        np.where(fraction < split.test_fraction + split.eval_fraction, "eval", "train"),
    )
    return pd.Series(labels, index=frame.index)


def run_ingest(config: PipelineConfig, output_dir: str | Path) -> dict[str, Any]:
    """Read, type and split the configured data into `output_dir/{train,eval,test}.parquet`.

    Returns a summary (rows per split, dropped rows, column types), also written as ingest.json.
    """
    data = config.data
    frame, bad = read_source(data)
    if frame.empty or len(frame.columns) == 0:
        raise IngestError(f"{data.source}: no rows to ingest")
    if data.label not in frame.columns:
        raise IngestError(
            f"{data.source}: label column {data.label!r} (data.label) is missing; columns are "
            f"{list(frame.columns)}"
        )
    missing_features = [f for f in config.features.raw_features if f not in frame.columns]
    if missing_features:
        raise IngestError(
            f"{data.source}: feature columns {missing_features} (features.*) are missing; columns "
            f"are {list(frame.columns)}"
        )
    frame = frame.drop(columns=[c for c in data.exclude_columns if c in frame.columns])
    read_rows = len(frame) + len(bad)
    is_csv = data.source != PACKAGED_PENGUINS and detect_format(data.source, data.format) == "csv"
    line_offset = 2 if is_csv else 1  # CSV line 1 is the header

    frame, typing_bad = type_columns(frame, config, line_offset)
    bad.extend(typing_bad)
    label_missing = frame[data.label].isna()
    for index in np.flatnonzero(label_missing.to_numpy())[:1000]:
        bad.append(BadRow(line=int(index) + line_offset, reason=f"label {data.label!r} is empty"))
    bad_lines = {b.line - line_offset for b in typing_bad} | set(
        np.flatnonzero(label_missing.to_numpy())
    )
    if bad_lines:
        frame = frame.drop(index=frame.index[sorted(bad_lines)])
    bad_fraction = len(bad) / max(read_rows, 1)
    if bad and bad_fraction > data.max_bad_row_fraction:
        shown = "; ".join(f"line {b.line}: {b.reason}" for b in bad[:5])
        raise IngestError(
            f"{data.source}: {len(bad)} of {read_rows} rows cannot be used ({bad_fraction:.1%}, "
            f"data.max_bad_row_fraction is {data.max_bad_row_fraction:.1%}): {shown}"
        )
    if frame.empty:
        raise IngestError(f"{data.source}: no usable rows left after dropping bad rows")
    frame = frame.reset_index(drop=True)
    splits = assign_splits(frame, data)
    summary: dict[str, Any] = {
        "source": data.source,
        "rows_read": read_rows,
        "rows_dropped": len(bad),
        "dropped_examples": [f"line {b.line}: {b.reason}" for b in bad[:20]],
        "columns": {name: str(dtype) for name, dtype in frame.dtypes.items()},
        "rows": {},
    }
    with atomic_dir(output_dir) as tmp:
        for name in SPLITS:
            part = frame[splits == name].reset_index(drop=True)
            if part.empty:
                raise IngestError(
                    f"{data.source}: split {name!r} is empty ({len(frame)} rows); give more data or "
                    "larger data.split fractions"
                )
            part.to_parquet(tmp / f"{name}.parquet", index=False)
            summary["rows"][name] = len(part)
        write_json_atomic(tmp / "ingest.json", summary)
    return summary


def read_split(dataset_dir: str | Path, split: str) -> pd.DataFrame:
    path = Path(dataset_dir) / f"{split}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"split {split!r} not found at {path}")
    return pd.read_parquet(path)
