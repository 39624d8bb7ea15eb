"""Our I/O stack against `gs://` offline: google-cloud-storage, Beam's GCS filesystem and sinks,
tf.io.gfile / SavedModel and pyarrow, all on the emulator from tests/gcs_emulator.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.gcs_emulator import GcsEmulator, gcs_emulator

BEAM_ARGS = ["--runner=FnApiRunner"]  # as config.beam_args runs locally


@pytest.fixture(scope="module")
def gcs() -> GcsEmulator:
    with gcs_emulator() as emulator:
        yield emulator


def test_the_environment_is_set_inside_and_restored_after(monkeypatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://before")
    monkeypatch.delenv("https_proxy", raising=False)
    with gcs_emulator("env-bucket") as emulator:
        assert os.environ["STORAGE_EMULATOR_HOST"] == emulator.endpoint
        assert os.environ["https_proxy"].startswith("http://127.0.0.1:")
        assert "token" in Path(os.environ["GOOGLE_APPLICATION_CREDENTIALS"]).read_text()
        assert emulator.client().bucket("env-bucket").exists()
    assert os.environ["STORAGE_EMULATOR_HOST"] == "http://before"
    assert "https_proxy" not in os.environ


def test_google_cloud_storage_round_trip(gcs: GcsEmulator) -> None:
    from google.auth.credentials import AnonymousCredentials

    client = gcs.client()
    assert isinstance(client._credentials, AnonymousCredentials)
    bucket = client.bucket(gcs.bucket)
    bucket.blob("gcs/a.txt").upload_from_string(b"hello ")
    bucket.blob("gcs/b.txt").upload_from_string(b"world")
    bucket.blob("gcs/sub/c.txt").upload_from_string(b"")

    listing = client.list_blobs(gcs.bucket, prefix="gcs/", delimiter="/")
    assert sorted(blob.name for blob in listing) == ["gcs/a.txt", "gcs/b.txt"]
    assert listing.prefixes == {"gcs/sub/"}
    assert bucket.blob("gcs/a.txt").download_as_bytes(start=1, end=3) == b"ell"
    assert bucket.get_blob("gcs/sub/c.txt").size == 0

    bucket.copy_blob(bucket.blob("gcs/a.txt"), bucket, "gcs/copy.txt")
    token, written, total = bucket.blob("gcs/rewritten.txt").rewrite(bucket.blob("gcs/b.txt"))
    assert (token, written, total) == (None, 5, 5)
    composed = bucket.blob("gcs/composed.txt")
    composed.compose([bucket.blob("gcs/copy.txt"), bucket.blob("gcs/rewritten.txt")])
    assert composed.download_as_bytes() == b"hello world"

    with client.batch():  # what Beam's delete_batch / copy_batch use
        bucket.delete_blob("gcs/copy.txt")
        bucket.delete_blob("gcs/rewritten.txt")
    assert not bucket.blob("gcs/copy.txt").exists()
    assert bucket.blob("gcs/composed.txt").exists()


def test_beam_filesystems_on_gs(gcs: GcsEmulator) -> None:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(gcs.uri("fs/a.txt")) as handle:
        handle.write(b"line 1\nline 2\n")
    with FileSystems.open(gcs.uri("fs/a.txt")) as handle:
        assert handle.read() == b"line 1\nline 2\n"
    FileSystems.copy([gcs.uri("fs/a.txt")], [gcs.uri("fs/b.txt")])
    FileSystems.rename([gcs.uri("fs/b.txt")], [gcs.uri("fs/c.txt")])  # copy + delete, batched
    matched = FileSystems.match([gcs.uri("fs/*")])[0].metadata_list
    assert sorted((m.path, m.size_in_bytes) for m in matched) == [
        (gcs.uri("fs/a.txt"), 14),
        (gcs.uri("fs/c.txt"), 14),
    ]
    FileSystems.delete([gcs.uri("fs/c.txt")])
    assert FileSystems.exists(gcs.uri("fs/a.txt"))
    assert not FileSystems.exists(gcs.uri("fs/c.txt"))


def test_beam_writes_and_reads_text_parquet_and_tfrecord_on_gs(gcs: GcsEmulator) -> None:
    import apache_beam as beam
    import pyarrow as pa
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.util import assert_that, equal_to

    rows = [{"id": i, "name": f"n{i}", "x": i / 2} for i in range(50)]
    schema = pa.schema([("id", pa.int64()), ("name", pa.string()), ("x", pa.float64())])
    with beam.Pipeline(options=PipelineOptions(BEAM_ARGS)) as pipeline:
        created = pipeline | beam.Create(rows)
        _ = (
            created
            | beam.Map(json.dumps, sort_keys=True)
            | "Text" >> beam.io.WriteToText(gcs.uri("beam/rows"), ".jsonl", num_shards=2)
        )
        _ = created | "Parquet" >> beam.io.WriteToParquet(
            gcs.uri("beam/rows"), schema, file_name_suffix=".parquet", num_shards=2
        )
        _ = (
            created
            | beam.Map(lambda row: json.dumps(row).encode())
            | "TFRecord"
            >> beam.io.WriteToTFRecord(gcs.uri("beam/rows"), file_name_suffix=".tfrecord.gz")
        )

    names = sorted(b.name for b in gcs.client().list_blobs(gcs.bucket, prefix="beam/"))
    assert names == [
        "beam/rows-00000-of-00001.tfrecord.gz",
        "beam/rows-00000-of-00002.jsonl",
        "beam/rows-00000-of-00002.parquet",
        "beam/rows-00001-of-00002.jsonl",
        "beam/rows-00001-of-00002.parquet",
    ]  # no beam-temp-* left behind
    with beam.Pipeline(options=PipelineOptions(BEAM_ARGS)) as pipeline:
        text = pipeline | "ReadText" >> beam.io.ReadFromText(gcs.uri("beam/rows-*.jsonl"))
        parquet = pipeline | "ReadParquet" >> beam.io.ReadFromParquet(gcs.uri("beam/*.parquet"))
        tfrecord = pipeline | "ReadTFRecord" >> beam.io.ReadFromTFRecord(gcs.uri("beam/*.gz"))
        assert_that(text | "ParseText" >> beam.Map(json.loads), equal_to(rows), label="text")
        assert_that(parquet, equal_to(rows), label="parquet")
        assert_that(tfrecord | beam.Map(json.loads), equal_to(rows), label="tfrecord")


def test_tf_gfile_on_gs_reaches_the_emulator(gcs: GcsEmulator) -> None:
    import tensorflow as tf

    bucket = gcs.client().bucket(gcs.bucket)
    bucket.blob("tf/from-python.txt").upload_from_string(b"written by google-cloud-storage")
    assert tf.io.gfile.exists(gcs.uri("tf/from-python.txt"))
    assert not tf.io.gfile.exists(gcs.uri("tf/missing.txt"))
    with tf.io.gfile.GFile(gcs.uri("tf/from-python.txt"), "rb") as handle:
        assert handle.read() == b"written by google-cloud-storage"

    payload = os.urandom(300_000)  # several chunks of TF's chunked upload
    with tf.io.gfile.GFile(gcs.uri("tf/from-tf.bin"), "wb") as handle:
        handle.write(payload)
    assert bucket.blob("tf/from-tf.bin").download_as_bytes() == payload

    tf.io.gfile.makedirs(gcs.uri("tf/dir/sub"))  # empty `dir/` marker objects
    tf.io.gfile.rename(gcs.uri("tf/from-tf.bin"), gcs.uri("tf/dir/moved.bin"))
    assert sorted(tf.io.gfile.listdir(gcs.uri("tf/dir"))) == ["moved.bin", "sub/"]
    assert tf.io.gfile.glob(gcs.uri("tf/*.txt")) == [gcs.uri("tf/from-python.txt")]
    with tf.io.TFRecordWriter(gcs.uri("tf/records.tfrecord")) as writer:
        for i in range(5):
            writer.write(b"record %d" % i)
    dataset = tf.data.TFRecordDataset(gcs.uri("tf/records.tfrecord"))
    assert [r.numpy() for r in dataset] == [b"record %d" % i for i in range(5)]
    tf.io.gfile.rmtree(gcs.uri("tf/dir"))
    assert not any(b.name.startswith("tf/dir") for b in bucket.list_blobs(prefix="tf/"))


def test_a_saved_model_saves_to_and_loads_from_gs(gcs: GcsEmulator) -> None:
    import tensorflow as tf

    module = tf.Module()
    module.scale = tf.Variable(3.0)
    module.call = tf.function(
        lambda x: x * module.scale, input_signature=[tf.TensorSpec([], tf.float32)]
    )
    tf.saved_model.save(module, gcs.uri("models/m1"))
    names = {b.name for b in gcs.client().list_blobs(gcs.bucket, prefix="models/m1/")}
    assert {"models/m1/saved_model.pb", "models/m1/variables/variables.index"} <= names
    loaded = tf.saved_model.load(gcs.uri("models/m1"))
    assert float(loaded.call(tf.constant(2.0))) == 6.0


def test_pyarrow_and_pandas_through_the_arrow_filesystem(gcs: GcsEmulator) -> None:
    import pandas as pd

    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    filesystem = gcs.arrow_filesystem()
    frame.to_parquet(f"{gcs.bucket}/arrow/frame.parquet", filesystem=filesystem)
    assert pd.read_parquet(f"{gcs.bucket}/arrow/frame.parquet", filesystem=filesystem).equals(frame)
    with filesystem.open_output_stream(f"{gcs.bucket}/arrow/frame.csv") as handle:
        handle.write(frame.to_csv(index=False).encode())
    with filesystem.open_input_file(f"{gcs.bucket}/arrow/frame.csv") as handle:
        assert pd.read_csv(handle).equals(frame)
    blob = gcs.client().bucket(gcs.bucket).get_blob("arrow/frame.parquet")
    assert blob.size > 0


@pytest.mark.slow
def test_tft_analyzes_and_writes_its_transform_fn_to_gs(gcs: GcsEmulator) -> None:
    import apache_beam as beam
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    spec = {"x": tf.io.FixedLenFeature([], tf.float32), "c": tf.io.FixedLenFeature([], tf.string)}
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    rows = [{"x": float(i), "c": "ab"[i % 2]} for i in range(20)]

    def preprocessing_fn(inputs):  # noqa: ANN001, ANN202
        return {
            "x_z": tft.scale_to_z_score(inputs["x"]),
            "c_id": tft.compute_and_apply_vocabulary(inputs["c"], vocab_filename="c"),
        }

    output = gcs.uri("tft/output")  # as components/transform.py runs it (force_tf_compat_v1)
    with (
        beam.Pipeline(options=PipelineOptions(BEAM_ARGS)) as pipeline,
        tft_beam.Context(temp_dir=gcs.uri("tft/tmp"), force_tf_compat_v1=True),
    ):
        transform_fn = (pipeline | beam.Create(rows), metadata) | tft_beam.AnalyzeDataset(
            preprocessing_fn
        )
        _ = transform_fn | tft_beam.WriteTransformFn(output)

    transform_output = tft.TFTransformOutput(output)
    assert sorted(transform_output.vocabulary_by_name("c")) == [b"a", b"b"]
    layer = transform_output.transform_features_layer()
    out = layer({"x": tf.constant([0.0, 19.0]), "c": tf.constant(["a", "b"])})
    assert out["x_z"].numpy()[0] < 0 < out["x_z"].numpy()[1]
    assert sorted(out["c_id"].numpy().tolist()) == [0, 1]
