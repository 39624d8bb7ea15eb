"""Ingest: read CSV / JSON Lines / Parquet (or the packaged penguins set), type the columns and
split the rows deterministically into train/eval/test Parquet files."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops.artifacts import INGEST_SUMMARY_FILE, SPLITS, UNLABELED
from mlops.config import DataConfig, PipelineConfig
from mlops.images import is_image_source, read_images
from mlops.io import atomic_dir, write_json_atomic
from mlops.privacy import PersonalDataError, apply_privacy
from mlops.tabular import (
    PACKAGED_PENGUINS,
    BadRow,
    IngestError,
    detect_format,
    read_source,
    spelling_hints,
    type_columns,
)


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
    from mlops.images import content_keys  # image bytes are keyed by their SHA-256

    joined = content_keys(frame[keys]).astype("string").fillna("<NA>").agg("\x1f".join, axis=1)
    fraction = joined.map(lambda text: int(hashlib.md5(text.encode()).hexdigest()[:8], 16) / 2**32)
    labels = np.where(
        fraction < split.test_fraction,
        "test",
        np.where(fraction < split.test_fraction + split.eval_fraction, "eval", "train"),
    )
    return pd.Series(labels, index=frame.index)


def run_ingest(config: PipelineConfig, output_dir: str | Path) -> dict[str, Any]:
    """Read, type and split the configured data into `output_dir/{train,eval,test}.parquet`
    (and, with data.unlabeled keep, the rows without a label into `unlabeled.parquet`).

    Returns a summary (rows per split, dropped rows, column types), also written as ingest.json.
    """
    data = config.data
    frame, bad = read_images(config) if is_image_source(config) else read_source(data)
    if frame.empty or len(frame.columns) == 0:
        raise IngestError(f"{data.source}: no rows to ingest")
    columns = list(frame.columns)
    if data.label not in frame.columns:
        raise IngestError(
            f"{data.source}: label column {data.label!r} (data.label) is missing; columns are "
            f"{columns}{spelling_hints([data.label], columns)}"
        )
    missing_features = [f for f in config.features.raw_features if f not in frame.columns]
    if missing_features:
        raise IngestError(
            f"{data.source}: feature columns {missing_features} (features.*) are missing; columns "
            f"are {columns}{spelling_hints(missing_features, columns)}"
        )
    frame = frame.drop(columns=[c for c in data.exclude_columns if c in frame.columns])
    # Image bytes are no text to scan for personal data: held out of the checks, put back after.
    images = frame.pop(config.features.image.column) if is_image_source(config) else None
    found_by_dlp = {}
    if config.privacy.dlp.enabled:
        from mlops.dlp import dlp_findings

        found_by_dlp = dlp_findings(frame, config.privacy.dlp, config.vertex.project)
    try:
        frame, privacy = apply_privacy(frame, config.privacy, data.source, data.label, found_by_dlp)
    except PersonalDataError as exc:
        raise IngestError(str(exc)) from exc
    if images is not None:
        frame.insert(0, images.name, images)
    read_rows = len(frame) + len(bad)
    is_csv = (
        data.source != PACKAGED_PENGUINS
        and not is_image_source(config)
        and detect_format(data.source, data.format) == "csv"
    )
    line_offset = 2 if is_csv else 1  # CSV line 1 is the header

    frame, typing_bad = type_columns(frame, config, line_offset)
    bad.extend(typing_bad)
    label_missing = frame[data.label].isna()
    typing_lines = {b.line - line_offset for b in typing_bad}
    # data.unlabeled keep: rows without a label are set aside for self-training, not bad rows.
    keep_unlabeled = data.unlabeled == "keep"
    unlabeled_lines = set(np.flatnonzero(label_missing.to_numpy())) - typing_lines
    unlabeled = frame.iloc[sorted(unlabeled_lines) if keep_unlabeled else []]
    for index in [] if keep_unlabeled else np.flatnonzero(label_missing.to_numpy())[:1000]:
        bad.append(BadRow(line=int(index) + line_offset, reason=f"label {data.label!r} is empty"))
    bad_lines = typing_lines | set(np.flatnonzero(label_missing.to_numpy()))
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
        "personal_data": privacy,
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
        written = list(SPLITS)
        if keep_unlabeled:
            unlabeled.reset_index(drop=True).to_parquet(tmp / f"{UNLABELED}.parquet", index=False)
            summary["rows_unlabeled"] = len(unlabeled)
            written.append(UNLABELED)
        digest = hashlib.sha256()
        for name in written:
            digest.update((tmp / f"{name}.parquet").read_bytes())
        summary["fingerprint"] = "sha256:" + digest.hexdigest()
        write_json_atomic(tmp / INGEST_SUMMARY_FILE, summary)
    return summary
