from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from components.ingest import IngestError, run_ingest
from mlops.artifacts import read_split
from mlops.config import PipelineConfig
from tests.conftest import TAXI_CSV


def _with_data(config: PipelineConfig, **data) -> PipelineConfig:
    return config.model_copy(update={"data": config.data.model_copy(update=data)})


def test_penguins_split_is_deterministic_and_complete(penguins_config, tmp_path: Path) -> None:
    first = run_ingest(penguins_config, tmp_path / "a")
    second = run_ingest(penguins_config, tmp_path / "b")
    assert first["rows"] == second["rows"]
    assert sum(first["rows"].values()) == 344
    for split in ("train", "eval", "test"):
        assert read_split(tmp_path / "a", split).equals(read_split(tmp_path / "b", split))
    train = read_split(tmp_path / "a", "train")
    assert str(train["species"].dtype) == "string"
    assert str(train["bill_length_mm"].dtype) == "float64"
    assert json.loads((tmp_path / "a" / "ingest.json").read_text())["rows"] == first["rows"]
    # Missing values survive ingest (the model imputes them).
    total_missing_sex = sum(
        read_split(tmp_path / "a", s)["sex"].isna().sum() for s in first["rows"]
    )
    assert total_missing_sex == 11


def test_taxi_time_split_orders_train_before_test(taxi_config, tmp_path: Path) -> None:
    summary = run_ingest(taxi_config, tmp_path / "out")
    assert summary["rows"] == {"train": 10501, "eval": 2250, "test": 2251}
    train, test = read_split(tmp_path / "out", "train"), read_split(tmp_path / "out", "test")
    assert train["trip_start_timestamp"].max() <= test["trip_start_timestamp"].min()
    assert "tips" not in train.columns  # excluded as a label leak
    assert str(train["pickup_community_area"].dtype) == "Int64"


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_formats_give_the_same_splits(penguins_config, tmp_path: Path, fmt: str) -> None:
    import palmerpenguins

    frame = palmerpenguins.load_penguins()
    path = tmp_path / f"penguins.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)
    summary = run_ingest(_with_data(penguins_config, source=str(path)), tmp_path / fmt)
    reference = run_ingest(penguins_config, tmp_path / "reference")
    assert summary["rows"] == reference["rows"]
    pd.testing.assert_frame_equal(
        read_split(tmp_path / fmt, "test"), read_split(tmp_path / "reference", "test")
    )


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data.csv"
    path.write_text(text)
    return path


HEADER = "species,island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex,year\n"
GOOD = "Adelie,Torgersen,39.1,18.7,181,3750,male,2007\n"


def test_empty_file_is_a_clear_error(penguins_config, tmp_path: Path) -> None:
    config = _with_data(penguins_config, source=str(_csv(tmp_path, "")))
    with pytest.raises(IngestError, match="empty"):
        run_ingest(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_header_only_is_a_clear_error(penguins_config, tmp_path: Path) -> None:
    config = _with_data(penguins_config, source=str(_csv(tmp_path, HEADER)))
    with pytest.raises(IngestError, match="no rows"):
        run_ingest(config, tmp_path / "out")


def test_missing_label_column_names_it(penguins_config, tmp_path: Path) -> None:
    text = HEADER.replace("species,", "") + GOOD.replace("Adelie,", "") * 30
    config = _with_data(penguins_config, source=str(_csv(tmp_path, text)))
    with pytest.raises(IngestError, match="label column 'species'"):
        run_ingest(config, tmp_path / "out")


def test_unparseable_rows_name_line_and_column(penguins_config, tmp_path: Path) -> None:
    text = HEADER + GOOD * 30 + "Adelie,Dream,forty,18.7,181,3750,male,2007\n" + GOOD * 5
    config = _with_data(penguins_config, source=str(_csv(tmp_path, text)))
    with pytest.raises(IngestError) as error:
        run_ingest(config, tmp_path / "out")
    assert "line 32" in str(error.value)
    assert "'bill_length_mm'" in str(error.value) and "'forty'" in str(error.value)
    assert not (tmp_path / "out").exists()


def test_ragged_rows_are_reported(penguins_config, tmp_path: Path) -> None:
    text = HEADER + GOOD * 30 + "Adelie,Dream,1,2\n"
    config = _with_data(penguins_config, source=str(_csv(tmp_path, text)))
    with pytest.raises(IngestError, match="line 32: 4 fields, header has 8"):
        run_ingest(config, tmp_path / "out")


def test_bad_rows_within_tolerance_are_dropped(penguins_config, tmp_path: Path) -> None:
    lines = [
        GOOD.replace("2007", str(2000 + i % 10)).replace("39.1", f"3{i % 10}.{i}")
        for i in range(99)
    ]
    text = HEADER + "".join(lines) + "Adelie,Dream,forty,18.7,181,3750,male,2007\n"
    config = _with_data(
        penguins_config, source=str(_csv(tmp_path, text)), max_bad_row_fraction=0.05
    )
    summary = run_ingest(config, tmp_path / "out")
    assert summary["rows_dropped"] == 1
    assert sum(summary["rows"].values()) == 99


def test_missing_label_value_is_a_bad_row(penguins_config, tmp_path: Path) -> None:
    text = HEADER + GOOD * 30 + ",Dream,40.1,18.7,181,3750,male,2007\n"
    config = _with_data(penguins_config, source=str(_csv(tmp_path, text)))
    with pytest.raises(IngestError, match="label 'species' is empty"):
        run_ingest(config, tmp_path / "out")


def test_bad_jsonl_line_is_reported(penguins_config, tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    good = json.dumps(dict(zip(HEADER.strip().split(","), GOOD.strip().split(","), strict=True)))
    path.write_text(good + "\n" + "{not json\n" + good + "\n")
    config = _with_data(penguins_config, source=str(path))
    with pytest.raises(IngestError, match="line 2: not JSON"):
        run_ingest(config, tmp_path / "out")


def test_missing_source_and_unknown_extension(penguins_config, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="does not exist"):
        run_ingest(_with_data(penguins_config, source=str(tmp_path / "nope.csv")), tmp_path / "o")
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    with pytest.raises(IngestError, match="set data.format"):
        run_ingest(_with_data(penguins_config, source=str(odd)), tmp_path / "o")


def test_failed_ingest_keeps_previous_output(penguins_config, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_ingest(penguins_config, out)
    before = read_split(out, "train")
    broken = _with_data(penguins_config, source=str(_csv(tmp_path, HEADER)))
    with pytest.raises(IngestError):
        run_ingest(broken, out)
    pd.testing.assert_frame_equal(read_split(out, "train"), before)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_taxi_csv_reads_real_missing_values(taxi_config, tmp_path: Path) -> None:
    summary = run_ingest(taxi_config, tmp_path / "out")
    assert summary["rows_read"] == 15002 and summary["rows_dropped"] == 0
    frame = pd.concat(read_split(tmp_path / "out", s) for s in ("train", "eval", "test"))
    assert frame["company"].isna().mean() == pytest.approx(
        pd.read_csv(TAXI_CSV)["company"].isna().mean()
    )
