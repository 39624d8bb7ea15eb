"""A catalogue of bad and awkward inputs, as real files through ingest and validation: every bad
input stops before training with one message naming the file, column or value and what to do;
every awkward but valid input just works."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.ingest import IngestError, run_ingest
from components.validate import DataValidationError, run_data_validation
from mlops.config import PipelineConfig
from tests.conftest import DATA, config_in

NUMERIC = ["culmen_length_mm", "culmen_depth_mm", "flipper_length_mm", "body_mass_g"]


def _frame() -> pd.DataFrame:
    frame = pd.read_csv(DATA / "penguins_tfx" / "penguins_processed.csv")
    frame["colour"] = np.where(np.arange(len(frame)) % 3 == 0, "red", "blue")
    return frame


def _config(tmp: Path, source: Path | str, **data) -> PipelineConfig:
    config = config_in(tmp, "penguins_tfx")
    features = {**config.features.model_dump(), "categorical": ["colour"]}
    return config.with_overrides(
        data={**config.data.model_dump(), "source": str(source), **data}, features=features
    )


def _run(config: PipelineConfig, tmp: Path) -> dict:
    summary = run_ingest(config, tmp / "dataset")
    run_data_validation(config, tmp / "dataset", tmp / "stats", tmp / "schema", tmp / "anomalies")
    return summary


def _csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


# ---- awkward but valid: each must just work -------------------------------------------------


def _gzip_csv(tmp: Path) -> Path:
    path = tmp / "rows.csv.gz"
    path.write_bytes(gzip.compress(_frame().to_csv(index=False).encode()))
    return path


def _json_array(tmp: Path) -> Path:
    path = tmp / "rows.json"
    path.write_text(_frame().to_json(orient="records"))
    return path


def _gzip_jsonl(tmp: Path) -> Path:
    path = tmp / "rows.jsonl.gz"
    path.write_bytes(gzip.compress(_frame().to_json(orient="records", lines=True).encode()))
    return path


def _r_style_na(tmp: Path) -> Path:
    frame = _frame().astype({"body_mass_g": object})
    frame.loc[::10, "body_mass_g"] = "NA"
    return _csv(frame, tmp / "r.csv")


def _byte_order_mark(tmp: Path) -> Path:
    path = tmp / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + _frame().to_csv(index=False).encode())
    return path


def _parquet(tmp: Path) -> Path:
    path = tmp / "rows.parquet"
    _frame().to_parquet(path, index=False)
    return path


VALID: dict[str, Callable[[Path], Path]] = {
    "gzip-compressed CSV": _gzip_csv,
    "gzip-compressed JSON Lines": _gzip_jsonl,
    "one JSON array of objects": _json_array,
    "R-style NA cells in a numeric column": _r_style_na,
    "CSV with a byte-order mark": _byte_order_mark,
    "Parquet": _parquet,
}


@pytest.mark.parametrize("case", sorted(VALID))
def test_awkward_but_valid_input_just_works(case: str, tmp_path: Path) -> None:
    config = _config(tmp_path, VALID[case](tmp_path))
    summary = _run(config, tmp_path)
    assert sum(summary["rows"].values()) == len(_frame())
    assert summary["rows_dropped"] == 0
    assert "culmen_length_mm" in summary["columns"]  # the BOM is not part of the first name


def test_r_style_na_counts_as_missing_not_as_a_bad_number(tmp_path: Path) -> None:
    config = _config(tmp_path, _r_style_na(tmp_path))
    run_ingest(config, tmp_path / "dataset")
    frames = [pd.read_parquet(tmp_path / "dataset" / f"{s}.parquet") for s in ("train", "eval")]
    missing = sum(int(f["body_mass_g"].isna().sum()) for f in frames)
    assert missing > 0


# Column names as spreadsheets have them; "Culmen_Length_mm_z" is also the internal name of the
# z-scored "Culmen Length (mm)". The model uses identifiers inside (mlops.names.safe_name).
AWKWARD_NAMES = {
    "species": "species label",
    "culmen_length_mm": "Culmen Length (mm)",
    "culmen_depth_mm": "Culmen_Length_mm_z",
    "flipper_length_mm": "1st flipper/mm",
    "body_mass_g": "body.mass/g",
    "colour": "île colour",
}


def _awkward_names_config(tmp: Path, header: dict[str, str] = AWKWARD_NAMES) -> PipelineConfig:
    source = _csv(_frame().rename(columns=header), tmp / "awkward names.csv")
    config = _config(tmp, source, label=AWKWARD_NAMES["species"])
    validation = config.validation.model_dump()
    validation["domains"] = {AWKWARD_NAMES[k]: v for k, v in validation["domains"].items()}
    return config.with_overrides(
        features={
            **config.features.model_dump(),
            "numeric": [AWKWARD_NAMES[name] for name in NUMERIC],
            "categorical": [AWKWARD_NAMES["colour"]],
        },
        validation=validation,
    )


def test_awkward_column_names_just_work_and_are_shown_as_written(tmp_path: Path) -> None:
    from tensorflow_metadata.proto.v0 import statistics_pb2

    summary = _run(_awkward_names_config(tmp_path), tmp_path)
    assert sum(summary["rows"].values()) == len(_frame()) and summary["rows_dropped"] == 0
    assert set(AWKWARD_NAMES.values()) <= set(summary["columns"])
    stats_file = tmp_path / "stats" / "FeatureStats.pb"
    stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(stats_file.read_bytes())
    assert set(AWKWARD_NAMES.values()) <= {f.path.step[0] for f in stats.datasets[0].features}
    schema = (tmp_path / "schema" / "schema.pbtxt").read_text(encoding="utf-8")
    assert 'name: "body.mass/g"' in schema


def test_a_config_name_spelled_unlike_the_header_gets_a_hint(tmp_path: Path) -> None:
    # the header says "body mass g" where the config says "body.mass/g"
    header = {**AWKWARD_NAMES, "body_mass_g": "Body Mass G"}
    config = _awkward_names_config(tmp_path, header)
    with pytest.raises(IngestError, match=r"did you mean 'body.mass/g' -> 'Body Mass G'"):
        run_ingest(config, tmp_path / "dataset")


# ---- bad input: one clear error, before any model is trained --------------------------------


def _duplicate_columns(tmp: Path) -> Path:
    path = tmp / "dup.csv"
    text = _frame().to_csv(index=False).splitlines()
    text[0] = text[0].replace("body_mass_g", "culmen_depth_mm")
    path.write_text("\n".join(text) + "\n")
    return path


def _unnamed_column(tmp: Path) -> Path:
    path = tmp / "unnamed.csv"
    text = _frame().to_csv(index=False).splitlines()
    text[0] = text[0].replace("colour", "")
    path.write_text("\n".join(text) + "\n")
    return path


def _infinity(tmp: Path) -> Path:
    frame = _frame().astype({"flipper_length_mm": object})
    frame.loc[5, "flipper_length_mm"] = "inf"
    return _csv(frame, tmp / "inf.csv")


def _single_class(tmp: Path) -> Path:
    return _csv(_frame().assign(species=1), tmp / "one_class.csv")


def _empty_feature(tmp: Path) -> Path:
    return _csv(_frame().assign(body_mass_g=None), tmp / "empty_feature.csv")


def _constant_feature(tmp: Path) -> Path:
    return _csv(_frame().assign(colour="red"), tmp / "constant.csv")


def _too_few_rows(tmp: Path) -> Path:
    return _csv(_frame().head(30), tmp / "tiny.csv")


def _not_utf8(tmp: Path) -> Path:
    path = tmp / "latin1.csv"
    path.write_bytes(_frame().assign(colour="rouge\xe9").to_csv(index=False).encode("latin-1"))
    return path


def _empty_file(tmp: Path) -> Path:
    path = tmp / "empty.csv"
    path.write_text("")
    return path


def _directory(tmp: Path) -> Path:
    path = tmp / "parts"
    path.mkdir()
    _csv(_frame(), path / "part-0.csv")
    return path


def _missing_label(tmp: Path) -> Path:
    return _csv(_frame().drop(columns=["species"]), tmp / "nolabel.csv")


def _corrupt_gzip(tmp: Path) -> Path:
    path = tmp / "broken.csv.gz"
    path.write_bytes(gzip.compress(b"species,colour\n1,red\n" * 50)[:40])
    return path


def _broken_json_array(tmp: Path) -> Path:
    path = tmp / "broken.json"
    path.write_text('[{"species": 1, "colour": "red"},')
    return path


def _unknown_extension(tmp: Path) -> Path:
    return _csv(_frame(), tmp / "rows.txt")


def _not_parquet(tmp: Path) -> Path:
    path = tmp / "fake.parquet"
    path.write_text("species,colour\n1,red\n")
    return path


def _label_only_in_test(tmp: Path) -> Path:
    frame = _frame()
    frame["t"] = np.random.default_rng(0).permutation(len(frame))
    # a time split puts the latest rows, and with them the unseen class, in test
    frame.loc[frame["t"] >= len(frame) - 3, "species"] = 9
    return _csv(frame, tmp / "late_class.csv")


def _identifier_feature(tmp: Path) -> Path:
    frame = _frame()
    return _csv(frame.assign(colour=[f"row-{i}" for i in range(len(frame))]), tmp / "ids.csv")


def _leaky_feature(tmp: Path) -> Path:
    frame = _frame()
    # "colour" written after the fact: it is the species itself, spelled out
    return _csv(frame.assign(colour=frame["species"].map({0: "a", 1: "b", 2: "c"})), tmp / "l.csv")


def _rows_copied_into_test(tmp: Path) -> Path:
    frame = _frame()
    frame["t"] = np.arange(len(frame))
    copies = frame.sample(n=80, random_state=1).assign(t=lambda f: f["t"] + 10_000)
    return _csv(pd.concat([frame, copies]), tmp / "copies.csv")


TIME_SPLIT = {
    "split": {"method": "time", "time_column": "t", "eval_fraction": 0.2, "test_fraction": 0.2}
}

BAD: dict[str, tuple[Callable[[Path], Path], dict, type, str]] = {
    "two columns with one name": (
        _duplicate_columns,
        {},
        IngestError,
        "'culmen_depth_mm'.*more than once",
    ),
    "a column without a name": (_unnamed_column, {}, IngestError, "no name"),
    "infinity in a numeric feature": (
        _infinity,
        {},
        IngestError,
        "'flipper_length_mm': 'inf' is not a finite",
    ),
    "a single-class label": (_single_class, {}, DataValidationError, "label 'species' has 1 class"),
    "an empty feature column": (
        _empty_feature,
        {},
        DataValidationError,
        "'body_mass_g' is empty in train",
    ),
    "a constant feature": (_constant_feature, {}, DataValidationError, "'colour' is constant"),
    "too few rows for a split": (
        _too_few_rows,
        {},
        DataValidationError,
        r"split '\w+' has \d+ rows",
    ),
    "a file that is not UTF-8": (_not_utf8, {}, IngestError, "not UTF-8"),
    "an empty file": (_empty_file, {}, IngestError, "empty"),
    "a directory as source": (_directory, {}, IngestError, "is a directory"),
    "no label column": (_missing_label, {}, IngestError, "label column 'species'"),
    "a corrupt gzip file": (_corrupt_gzip, {}, IngestError, "gzip"),
    "a broken JSON array": (_broken_json_array, {}, IngestError, "JSON array"),
    "an unknown file extension": (_unknown_extension, {}, IngestError, "data.format"),
    "a text file named .parquet": (_not_parquet, {}, IngestError, "not a readable Parquet"),
    "an identifier-like categorical feature": (
        _identifier_feature,
        {},
        DataValidationError,
        "'colour' is identifier-like",
    ),
    "a feature that is the label in disguise": (
        _leaky_feature,
        {},
        DataValidationError,
        "'colour' alone predicts 'species' with AUC 1.000",
    ),
    "train rows copied into test": (
        _rows_copied_into_test,
        TIME_SPLIT,
        DataValidationError,
        r"\d+ of \d+ test rows also appear in train",
    ),
    "a label value only in test": (
        _label_only_in_test,
        {
            "split": {
                "method": "time",
                "time_column": "t",
                "eval_fraction": 0.2,
                "test_fraction": 0.2,
            }
        },
        DataValidationError,
        r"split 'test' has label values \['9'\]",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_stops_before_training_with_one_clear_error(case: str, tmp_path: Path) -> None:
    make, data, error, message = BAD[case]
    source = make(tmp_path)
    config = _config(tmp_path, source, **data)
    with pytest.raises(error, match=message) as raised:
        _run(config, tmp_path)
    if error is IngestError:
        assert str(source) in str(raised.value) or source.name in str(raised.value)
    assert "Traceback" not in str(raised.value)
    assert not (tmp_path / "dataset").exists() or error is DataValidationError


def test_gs_source_without_credentials_fails_at_once_naming_the_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST", "CLOUDSDK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no gcloud application-default credentials
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # no metadata server either
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    config = _config(tmp_path, "gs://no-such-bucket/rows.csv")
    with pytest.raises(IngestError, match=r"gs://no-such-bucket/rows\.csv.*gcloud auth"):
        run_ingest(config, tmp_path / "dataset")


def test_the_catalogue_is_not_empty() -> None:
    assert len(VALID) + len(BAD) >= 20
    assert json.dumps(sorted(BAD))  # case names are plain text for the report
