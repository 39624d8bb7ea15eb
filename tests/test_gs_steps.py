"""Our steps on Cloud Storage, offline: the data source and the batch input as `gs://` URIs on
the emulator (tests/gcs_emulator.py), read exactly as on Vertex (through Beam's GCS filesystem),
with the same result as the same files on local disk; and the transform step reading its dataset
from and writing its TFT output (and TFT's temporary files) to `gs://`."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.batch_predict import read_predictions, run_batch_predict
from components.ingest import run_ingest
from mlops.artifacts import LABEL_CLASSES_FILE, read_split
from mlops.io import (
    COMPLETE_MARKER,
    IncompleteOutputError,
    atomic_uri_dir,
    read_uri_bytes,
    require_complete_uri,
    write_uri_text,
)
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


def _upload_dir(gcs: GcsEmulator, local: Path, prefix: str, marker: bool = True) -> str:
    """A directory output as a step on Vertex leaves it: its files, then the completion marker."""
    bucket = gcs.client().bucket(gcs.bucket)
    for path in sorted(local.iterdir()):
        bucket.blob(f"{prefix}/{path.name}").upload_from_filename(str(path))
    if marker:
        bucket.blob(f"{prefix}/{COMPLETE_MARKER}").upload_from_string(b"")
    return gcs.uri(prefix)


def _objects(gcs: GcsEmulator, prefix: str) -> dict[str, object]:
    blobs = gcs.client().list_blobs(gcs.bucket, prefix=prefix + "/")
    return {blob.name[len(prefix) + 1 :]: blob for blob in blobs}


def _transformed(output: str, config, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    import tensorflow as tf
    import tensorflow_transform as tft

    from mlops.features import frame_to_arrays

    layer = tft.TFTransformOutput(output).transform_features_layer()
    raw = {name: tf.constant(v) for name, v in frame_to_arrays(rows, config.features).items()}
    return {name: tensor.numpy() for name, tensor in layer(raw).items()}


@pytest.mark.slow  # ~30 s: TFT analysis and two transform graphs loaded through the emulator
def test_transform_reads_and_writes_gs_like_a_local_run(gcs, penguins_chain, tmp_path) -> None:
    import tensorflow_transform as tft

    from components.transform import run_transform

    config, paths, results = penguins_chain
    dataset = _upload_dir(gcs, paths["data"], "run-1/ingest/dataset")
    output = gcs.uri("run-1/transform/transform_graph")
    # A failed earlier attempt left a file behind: the retry starts clean.
    gcs.client().bucket(gcs.bucket).blob(
        "run-1/transform/transform_graph/stale.txt"
    ).upload_from_string(b"x")
    # As on Vertex: Beam's temp location (where TFT puts its temporary files) is on gs://.
    temp = gcs.uri("run-1/dataflow/temp")
    on_gs = config.model_copy(update={"beam_args": [*config.beam_args, f"--temp_location={temp}"]})

    summary = run_transform(on_gs, dataset, output)

    assert summary == results["transform"]
    written = _objects(gcs, "run-1/transform/transform_graph")
    assert "stale.txt" not in written
    assert {COMPLETE_MARKER, LABEL_CLASSES_FILE, "transform_fn/saved_model.pb"} <= set(written)
    assert any(name.startswith("transformed_metadata/") for name in written)
    assert not [name for name in written if name.startswith("transform_tmp/")]
    # The marker is the last object written: before it exists, readers see an incomplete output.
    marker_time = written[COMPLETE_MARKER].time_created
    assert all(blob.time_created <= marker_time for blob in written.values())
    left = [name for name in _objects(gcs, "run-1/dataflow/temp") if name.startswith("tft-")]
    assert not left, "TFT's temporary files were left behind"
    # Read back from the emulator: the same vocabularies, classes and transformed values.
    assert (
        json.loads(read_uri_bytes(f"{output}/{LABEL_CLASSES_FILE}"))
        == (results["transform"]["label_classes"])
    )
    remote, local = tft.TFTransformOutput(output), tft.TFTransformOutput(str(paths["transform"]))
    for name in config.features.categorical:
        assert remote.vocabulary_by_name(name) == local.vocabulary_by_name(name)
    rows = read_split(paths["data"], "eval")
    from_gs = _transformed(output, config, rows)
    from_disk = _transformed(str(paths["transform"]), config, rows)
    assert sorted(from_gs) == sorted(from_disk)
    # Float32 statistics from two Beam runs may differ in the last bit (summation order).
    for name, values in from_disk.items():
        np.testing.assert_allclose(from_gs[name], values, rtol=1e-5, atol=1e-6, err_msg=name)


def test_transform_refuses_a_gs_dataset_without_its_marker(gcs, penguins_chain, tmp_path) -> None:
    from components.transform import run_transform

    config, paths, _ = penguins_chain
    dataset = _upload_dir(gcs, paths["data"], "run-2/ingest/dataset", marker=False)
    with pytest.raises(IncompleteOutputError, match=f"run-2/ingest/dataset .*{COMPLETE_MARKER}"):
        run_transform(config, dataset, gcs.uri("run-2/transform/transform_graph"))


def test_a_gs_directory_output_is_complete_only_with_its_marker_written_last(gcs) -> None:
    output = gcs.uri("run-3/step/out")
    with atomic_uri_dir(output) as out:
        write_uri_text(f"{out}/part-0.json", "{}")
        with pytest.raises(IncompleteOutputError, match=COMPLETE_MARKER):
            require_complete_uri(output)  # being written: readers refuse it
    assert require_complete_uri(output) == output
    assert set(_objects(gcs, "run-3/step/out")) == {"part-0.json", COMPLETE_MARKER}
    # A retry that fails: the earlier output and marker are gone, nothing claims completeness.
    with pytest.raises(RuntimeError, match="step failed"), atomic_uri_dir(output) as out:
        write_uri_text(f"{out}/part-1.json", "{}")
        raise RuntimeError("step failed")
    assert set(_objects(gcs, "run-3/step/out")) == {"part-1.json"}
    with pytest.raises(IncompleteOutputError):
        require_complete_uri(output)
