"""Streaming ingest: a source read in many small record batches gives the same splits, types,
bad rows and summary as the same source read in one batch, whatever the batch boundaries hide
(a column that turns to text or to fractions only in a late batch, a JSON key first seen late)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import mlops.tabular as tabular
from components.ingest import IngestError, assign_splits, run_ingest
from mlops.artifacts import SPLITS, read_split
from mlops.config import PipelineConfig
from mlops.tabular import parse_numbers

SMALL_BLOCK = 1024  # bytes of CSV per batch: the 344 penguins rows become about 20 batches


def _with_data(config: PipelineConfig, **data) -> PipelineConfig:
    return config.model_copy(update={"data": config.data.model_copy(update=data)})


def _penguins() -> pd.DataFrame:
    import palmerpenguins

    frame = palmerpenguins.load_penguins()
    # "tag" looks numeric for 340 rows; its last rows make it text. "weight" is whole numbers
    # until its last row has a fraction.
    frame["tag"] = [str(i) for i in range(len(frame) - 4)] + ["x1", "x2", "007", "8"]
    frame["weight"] = [float(i % 50) for i in range(len(frame) - 1)] + [2.5]
    return frame


def _splits(out: Path) -> dict[str, pd.DataFrame]:
    return {split: read_split(out, split) for split in SPLITS}


def _same_output(first: Path, second: Path, first_summary: dict, second_summary: dict) -> None:
    assert first_summary == second_summary  # rows, bad rows, column types, fingerprint
    for split in SPLITS:
        pd.testing.assert_frame_equal(read_split(first, split), read_split(second, split))


def _ingest_in_batches(
    config: PipelineConfig, tmp: Path, monkeypatch: pytest.MonkeyPatch, **sizes: int
) -> tuple[dict, dict]:
    """(summary read in one batch, summary read in small batches) into tmp/whole, tmp/batches."""
    whole = run_ingest(config, tmp / "whole")
    monkeypatch.setattr(tabular, "CSV_BLOCK_BYTES", sizes.get("csv", SMALL_BLOCK))
    monkeypatch.setattr(tabular, "JSON_CHUNK_LINES", sizes.get("json", 16))
    monkeypatch.setattr(tabular, "PARQUET_BATCH_ROWS", sizes.get("parquet", 16))
    batches = run_ingest(config, tmp / "batches")
    return whole, batches


def test_types_are_decided_over_all_batches(penguins_config, tmp_path, monkeypatch) -> None:
    source = tmp_path / "penguins.csv.gz"
    source.write_bytes(gzip.compress(_penguins().to_csv(index=False).encode()))
    config = _with_data(penguins_config, source=str(source))
    whole, batches = _ingest_in_batches(config, tmp_path, monkeypatch)
    _same_output(tmp_path / "whole", tmp_path / "batches", whole, batches)
    assert batches["columns"]["tag"] == "string"
    assert batches["columns"]["weight"] == "float64"
    assert batches["columns"]["year"] == "Int64"
    rows = pd.concat(_splits(tmp_path / "batches").values())
    # text as written, also in the batches read before the column turned out to be text
    assert {"0", "17", "x1", "007"} <= set(rows["tag"])
    assert rows["weight"].max() == 49.0 and 2.5 in set(rows["weight"])


def test_hash_split_matches_the_whole_frame_rule(penguins_config, tmp_path, monkeypatch) -> None:
    """Every row lands where `assign_splits` on the whole typed frame puts it."""
    source = tmp_path / "penguins.csv"
    _penguins().to_csv(source, index=False)
    config = _with_data(penguins_config, source=str(source))
    _, summary = _ingest_in_batches(config, tmp_path, monkeypatch)
    parts = _splits(tmp_path / "batches")
    frame = pd.concat(parts.values(), ignore_index=True)
    expected = assign_splits(frame, config.data)
    written = np.repeat(list(parts), [len(parts[s]) for s in parts])
    assert (expected.to_numpy() == written).all()
    assert summary["rows"] == {s: len(parts[s]) for s in SPLITS}


def test_time_split_ranks_rows_across_batches(taxi_config, tmp_path, monkeypatch) -> None:
    from tests.conftest import TAXI_CSV

    frame = pd.read_csv(TAXI_CSV).head(3000)
    source = tmp_path / "taxi.csv"
    frame.to_csv(source, index=False)
    config = _with_data(taxi_config, source=str(source))
    whole, batches = _ingest_in_batches(config, tmp_path, monkeypatch, csv=16 * 1024)
    _same_output(tmp_path / "whole", tmp_path / "batches", whole, batches)
    parts = _splits(tmp_path / "batches")
    time = "trip_start_timestamp"
    assert parts["train"][time].max() <= parts["eval"][time].min()
    assert parts["eval"][time].max() <= parts["test"][time].min()


def test_bad_rows_in_a_late_batch_name_their_lines(penguins_config, tmp_path, monkeypatch) -> None:
    frame = _penguins().drop(columns=["tag", "weight"])
    lines = frame.to_csv(index=False).splitlines()
    lines[300] = lines[300].replace(lines[300].split(",")[2], "forty", 1)  # file line 301
    lines.insert(320, "Adelie,Dream,1,2")  # file line 321: too few fields
    source = tmp_path / "bad.csv"
    source.write_text("\n".join(lines) + "\n")
    config = _with_data(penguins_config, source=str(source), max_bad_row_fraction=0.05)
    whole, batches = _ingest_in_batches(config, tmp_path, monkeypatch)
    _same_output(tmp_path / "whole", tmp_path / "batches", whole, batches)
    assert batches["rows_dropped"] == 2
    assert "line 321: 4 fields, header has 8" in batches["dropped_examples"]
    assert (
        "line 301: column 'bill_length_mm': 'forty' is not a number"
        in (batches["dropped_examples"])
    )
    strict = _with_data(config, max_bad_row_fraction=0.0)
    with pytest.raises(IngestError, match="2 of 345 rows cannot be used.*line 321: 4 fields"):
        run_ingest(strict, tmp_path / "strict")


def test_json_key_first_seen_in_a_late_batch(penguins_config, tmp_path, monkeypatch) -> None:
    frame = _penguins().drop(columns=["tag", "weight"])
    records = json.loads(frame.to_json(orient="records"))
    for number, record in enumerate(records):
        if number >= 300:
            record["note"] = f"n{number % 3}"
    source = tmp_path / "penguins.jsonl"
    source.write_text("".join(json.dumps(record) + "\n" for record in records))
    config = _with_data(penguins_config, source=str(source))
    whole, batches = _ingest_in_batches(config, tmp_path, monkeypatch)
    _same_output(tmp_path / "whole", tmp_path / "batches", whole, batches)
    rows = pd.concat(_splits(tmp_path / "batches").values())
    assert batches["columns"]["note"] == "string"
    assert rows["note"].isna().sum() == 300 and rows["note"].notna().sum() == 44


def test_parquet_row_groups_give_the_csv_splits(penguins_config, tmp_path, monkeypatch) -> None:
    frame = _penguins().drop(columns=["tag"])
    csv_source, parquet_source = tmp_path / "p.csv", tmp_path / "p.parquet"
    frame.to_csv(csv_source, index=False)
    pa.parquet.write_table(pa.Table.from_pandas(frame), parquet_source, row_group_size=50)
    from_csv = run_ingest(_with_data(penguins_config, source=str(csv_source)), tmp_path / "csv")
    config = _with_data(penguins_config, source=str(parquet_source))
    _, batches = _ingest_in_batches(config, tmp_path, monkeypatch)
    assert batches["rows"] == from_csv["rows"] and batches["columns"] == from_csv["columns"]
    for split in SPLITS:
        pd.testing.assert_frame_equal(
            read_split(tmp_path / "batches", split), read_split(tmp_path / "csv", split)
        )


@pytest.mark.parametrize(
    "texts",
    [
        ["1", "2.5", "-3", "+4", ".5", "5.", "00012", "-0", None],
        ["0.26909090909090905", "0.41666666666666685", "1e-30", "1.5E+300", "123456789012345678"],
        [" 3", "3 ", "inf", "-inf", "Infinity", "nan", "1e400", "1_0", "0x10", "1,5", "forty"],
    ],
)
def test_numbers_parse_as_pandas_to_numeric_reads_them(texts: list[str | None]) -> None:
    """Ingest has always typed with pandas.to_numeric; the vectorised reader gives the same
    float64 bits (pandas reads long decimals and exponents differently from pyarrow)."""
    expected = pd.to_numeric(pd.Series(texts, dtype=object), errors="coerce").astype("float64")
    got = parse_numbers(pa.array(texts, pa.string()))
    np.testing.assert_array_equal(got, expected.to_numpy())
