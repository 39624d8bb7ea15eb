"""Personal data at ingest: detected by column name or sampled values, blocked by default with a
message naming the column and the kind, dropped or replaced by a salted hash by policy, and never
written to the splits."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from components.ingest import IngestError, run_ingest
from mlops.config import ConfigError, PipelineConfig
from mlops.privacy import detect_personal_data
from tests.conftest import DATA, config_in

PERSONAL = {
    "contact": ("alice{i}@example.com", "email"),
    "mobile_no": ("+44 20 7946 {i:04d}", "phone number"),
    "card": ("4111 1111 1111 1111", "payment card number"),
    "client": ("192.168.{j}.{k}", "IP address"),
    "ssn_like": ("123-45-{i:04d}", "national id"),
}


def _frame(n: int = 120) -> pd.DataFrame:
    frame = pd.read_csv(DATA / "penguins_tfx" / "penguins_processed.csv").head(n)
    for column, (pattern, _) in PERSONAL.items():
        frame[column] = [pattern.format(i=i + 1, j=i // 250, k=i % 250 + 1) for i in range(n)]
    return frame


def test_each_kind_is_detected_from_values_and_names() -> None:
    found = detect_personal_data(_frame())
    assert found == {column: kind for column, (_, kind) in PERSONAL.items()}
    by_name = pd.DataFrame({"Email Address": ["n/a"] * 5, "phone": ["x"] * 5, "notes": ["y"] * 5})
    assert detect_personal_data(by_name) == {"Email Address": "email", "phone": "phone number"}


def test_real_data_raises_no_false_alarm() -> None:
    taxi = pd.read_csv(DATA / "chicago_taxi" / "big_tipper.csv", dtype=str)
    assert detect_personal_data(taxi) == {}
    dates = pd.DataFrame({"day": ["2013-01-05"] * 20, "amount": ["12.50"] * 20})
    assert detect_personal_data(dates) == {}
    card_like = pd.DataFrame({"order": [str(4111111111111112 + i * 10) for i in range(20)]})
    assert detect_personal_data(card_like) == {}, "16 digits failing the Luhn check are no card"


def _config(tmp: Path, frame: pd.DataFrame, **privacy) -> PipelineConfig:
    source = tmp / "people.csv"
    frame.to_csv(source, index=False)
    config = config_in(tmp, "penguins_tfx")
    return config.with_overrides(
        data={**config.data.model_dump(), "source": str(source)},
        privacy={"columns": {}, **privacy},
    )


def test_personal_data_stops_ingest_by_default_naming_column_and_kind(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        _frame()[
            [
                "species",
                "culmen_length_mm",
                "culmen_depth_mm",
                "flipper_length_mm",
                "body_mass_g",
                "contact",
            ]
        ],
    )
    with pytest.raises(IngestError, match=r"column 'contact' looks like personal data \(email\)"):
        run_ingest(config, tmp_path / "dataset")
    assert not (tmp_path / "dataset").exists()


def test_drop_and_hash_policies_keep_values_out_of_the_splits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_PII_SALT", "s3cret")
    policy = {column: "drop" for column in PERSONAL} | {"contact": "hash"}
    config = _config(tmp_path, _frame(), columns=policy)
    summary = run_ingest(config, tmp_path / "dataset")
    assert summary["personal_data"]["contact"] == "hash (email)"
    assert summary["personal_data"]["card"] == "drop (payment card number)"
    written = pd.concat(pd.read_parquet(p) for p in (tmp_path / "dataset").glob("*.parquet"))
    assert set(PERSONAL) - {"contact"} & set(written.columns) == set()
    tokens = written["contact"].to_numpy()
    assert not any("@" in t for t in tokens) and len(set(tokens)) == len(tokens)
    raw = b"".join(p.read_bytes() for p in (tmp_path / "dataset").iterdir())
    assert b"example.com" not in raw and b"4111" not in raw


def test_hash_without_a_salt_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_PII_SALT", raising=False)
    frame = _frame()[
        [
            "species",
            "culmen_length_mm",
            "culmen_depth_mm",
            "flipper_length_mm",
            "body_mass_g",
            "contact",
        ]
    ]
    config = _config(tmp_path, frame, columns={"contact": "hash"})
    with pytest.raises(IngestError, match=r"\$MLOPS_PII_SALT is empty"):
        run_ingest(config, tmp_path / "dataset")


def test_dropping_a_feature_is_a_config_error(tmp_path: Path) -> None:
    config = config_in(tmp_path, "penguins_tfx")
    with pytest.raises((ConfigError, ValueError), match="privacy.columns drops"):
        config.with_overrides(privacy={"columns": {"body_mass_g": "drop"}})
