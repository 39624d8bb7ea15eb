"""Personal data at ingest: detected by column name or sampled values, blocked by default with a
message naming the column and the kind, dropped or replaced by a salted hash by policy, and never
written to the splits."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from components.ingest import IngestError, run_ingest
from mlops.config import ConfigError, PipelineConfig, PrivacyConfig
from mlops.privacy import (
    LogRedactor,
    detect_personal_data,
    hash_token,
    redact_text,
    salted_hash,
)
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


@pytest.mark.parametrize(
    "text, redacted",
    [
        ("write to jane.doe@example.com today", "write to [REDACTED:email] today"),
        ("card 4111-1111-1111-1111, thanks", "card [REDACTED:payment card number], thanks"),
        ("call +44 20 7946 0018.", "call [REDACTED:phone number]."),
        (
            "from 192.168.0.7 or fe80::1ff:fe23:4567:890a",
            "from [REDACTED:IP address] or [REDACTED:IP address]",
        ),
        ("ssn 123-45-6789", "ssn [REDACTED:national id]"),
        # what is no personal data stays readable
        ("order 4111111111111112", "order 4111111111111112"),
        ("2013-01-05 10:30:00, 12.50 USD, 999.1.1.1", "2013-01-05 10:30:00, 12.50 USD, 999.1.1.1"),
    ],
)
def test_redact_text_finds_personal_data_inside_free_text(text: str, redacted: str) -> None:
    assert redact_text(text) == redacted


def test_log_redactor_applies_the_ingest_policies_and_scans_every_string() -> None:
    settings = PrivacyConfig(columns={"phone": "drop", "client": "hash", "name": "block"})
    redactor = LogRedactor(settings, salt="pepper")
    instance = {
        "phone": "+44 20 7946 0018",
        "client": "10.0.0.1",
        "name": "Jane",
        "note": {"bob@example.org": ["x bob@example.org", 3.5, True, None]},
        "island": "Biscoe",
        "mass": 3750,
    }
    assert redactor.instance(instance) == {
        "client": hash_token("10.0.0.1", "pepper"),  # as at ingest: joins training data
        "name": "[REDACTED:privacy.columns.name]",
        "note": {"[REDACTED:email]": ["x [REDACTED:email]", 3.5, True, None]},
        "island": "Biscoe",
        "mass": 3750,
    }
    assert salted_hash(pd.Series(["10.0.0.1"]), "pepper")[0] == hash_token("10.0.0.1", "pepper")
    unsalted = LogRedactor(settings, salt="").instance({"client": "10.0.0.1"})
    assert unsalted == {"client": "[REDACTED:privacy.columns.client]"}, "never logged in clear"


def _dlp_response(findings: list[tuple[str, str]]) -> object:
    """A real InspectContentResponse: one finding per (column, info type)."""
    from google.cloud import dlp_v2

    return dlp_v2.InspectContentResponse(
        result=dlp_v2.InspectResult(
            findings=[
                dlp_v2.Finding(
                    info_type=dlp_v2.InfoType(name=info_type),
                    likelihood=dlp_v2.Likelihood.VERY_LIKELY,
                    location=dlp_v2.Location(
                        content_locations=[
                            dlp_v2.ContentLocation(
                                record_location=dlp_v2.RecordLocation(
                                    field_id=dlp_v2.FieldId(name=column)
                                )
                            )
                        ]
                    ),
                )
                for column, info_type in findings
            ]
        )
    )


def test_cloud_dlp_findings_join_the_personal_data_decision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from unittest import mock

    from google.cloud import dlp_v2

    from tests.vertex_fakes import default_credentials

    frame = _frame()[["species", "culmen_length_mm", "culmen_depth_mm", "flipper_length_mm"]]
    frame["body_mass_g"] = _frame()["body_mass_g"]
    # Free text our whole-value detector does not flag; DLP does.
    frame["notes"] = [f"ring me, Ann Lee, on {i}" for i in range(len(frame))]
    requests: list[dlp_v2.InspectContentRequest] = []

    def inspect_content(self, request=None, **_):  # noqa: ANN001, ANN202 - the client's own
        requests.append(dlp_v2.InspectContentRequest(request))
        return _dlp_response([("notes", "PERSON_NAME"), ("notes", "PERSON_NAME")])

    dlp = {"enabled": True, "info_types": ["PERSON_NAME", "EMAIL_ADDRESS"], "sample_rows": 50}
    config = _config(tmp_path, frame)
    config = config.with_overrides(
        vertex={**config.vertex.model_dump(), "project": "my-project"},
        privacy={"columns": {}, "dlp": dlp},
    )
    with (
        default_credentials(),
        mock.patch.object(dlp_v2.DlpServiceClient, "inspect_content", inspect_content),
    ):
        with pytest.raises(
            IngestError, match=r"column 'notes' looks like personal data \(PERSON_NAME \(Cloud DLP"
        ):
            run_ingest(config, tmp_path / "blocked")
        monkeypatch.setenv("MLOPS_PII_SALT", "s3cret")
        hashed = run_ingest(
            config.with_overrides(privacy={"columns": {"notes": "hash"}, "dlp": dlp}),
            tmp_path / "hashed",
        )
        dropped = run_ingest(
            config.with_overrides(privacy={"columns": {"notes": "drop"}, "dlp": dlp}),
            tmp_path / "dropped",
        )
    request = requests[0]
    assert request.parent == "projects/my-project/locations/global"
    assert [h.name for h in request.item.table.headers] == list(frame.columns)
    assert len(request.item.table.rows) == 50
    assert request.item.table.rows[0].values[-1].string_value == "ring me, Ann Lee, on 0"
    assert [t.name for t in request.inspect_config.info_types] == ["PERSON_NAME", "EMAIL_ADDRESS"]
    assert not request.inspect_config.include_quote
    assert hashed["personal_data"] == {"notes": "hash (PERSON_NAME (Cloud DLP))"}
    written = pd.read_parquet(tmp_path / "hashed" / "train.parquet")["notes"]
    assert not written.str.contains("Ann Lee").any() and written.str.len().eq(16).all()
    assert dropped["personal_data"] == {"notes": "drop (PERSON_NAME (Cloud DLP))"}
    assert "notes" not in pd.read_parquet(tmp_path / "dropped" / "train.parquet").columns


def test_cloud_dlp_needs_the_vertex_project(tmp_path: Path) -> None:
    config = config_in(tmp_path, "penguins_tfx")
    with pytest.raises((ConfigError, ValueError), match="privacy.dlp.enabled needs vertex.project"):
        config.with_overrides(privacy={"dlp": {"enabled": True}})
