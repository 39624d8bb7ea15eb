"""Our steps on Cloud Storage, offline: the data source and the batch input as `gs://` URIs on
the emulator (tests/gcs_emulator.py), read exactly as on Vertex (through Beam's GCS filesystem),
with the same result as the same files on local disk."""

from __future__ import annotations

import gzip

import pandas as pd
import pytest

from components.batch_predict import read_predictions, run_batch_predict
from components.ingest import run_ingest
from mlops.artifacts import read_split
from tests.conftest import DATA, config_in
from tests.gcs_emulator import GcsEmulator, gcs_emulator

TFX_CSV = DATA / "penguins_tfx" / "penguins_processed.csv"


@pytest.fixture(scope="module")
def gcs() -> GcsEmulator:
    with gcs_emulator() as emulator:
        yield emulator


def _upload(gcs: GcsEmulator, name: str, data: bytes) -> str:
    gcs.client().bucket(gcs.bucket).blob(name).upload_from_string(data)
    return gcs.uri(name)


@pytest.mark.parametrize("name", ["penguins.csv", "penguins.csv.gz"])
def test_ingest_reads_a_gs_source_like_the_local_file(gcs, tmp_path, name: str) -> None:
    raw = TFX_CSV.read_bytes()
    uri = _upload(gcs, f"data/{name}", gzip.compress(raw) if name.endswith(".gz") else raw)
    config = config_in(tmp_path, "penguins_tfx")
    remote = config.with_overrides(data={**config.data.model_dump(), "source": uri})
    local = config.with_overrides(data={**config.data.model_dump(), "source": str(TFX_CSV)})
    from_gs = run_ingest(remote, tmp_path / "from-gs")
    from_disk = run_ingest(local, tmp_path / "from-disk")
    assert from_gs["rows"] == from_disk["rows"] and from_gs["source"] == uri
    for split in ("train", "eval", "test"):
        pd.testing.assert_frame_equal(
            read_split(tmp_path / "from-gs", split), read_split(tmp_path / "from-disk", split)
        )


def test_batch_prediction_reads_its_input_from_gs(gcs, penguins_chain, tmp_path) -> None:
    config, paths, _ = penguins_chain
    rows = read_split(paths["data"], "test").head(25)
    rows.insert(0, "penguin_id", [f"p{i}" for i in range(len(rows))])
    uri = _upload(gcs, "batch/rows.jsonl", rows.to_json(orient="records", lines=True).encode())
    summary = run_batch_predict(config, str(paths["model"]), uri, tmp_path / "out", "penguin_id")
    predictions = read_predictions(tmp_path / "out")
    assert summary["rows"] == 25 and summary["source"] == uri
    assert sorted(p["penguin_id"] for p in predictions) == sorted(rows["penguin_id"])
