"""Batch prediction step: Beam over CSV / JSON Lines / Parquet; batch and online predictions agree for the same rows."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.batch_predict import BatchPredictError, read_predictions, run_batch_predict
from mlops.artifacts import read_split
from mlops.features import frame_to_arrays
from tests.conftest import REPO, free_port


@pytest.fixture(scope="module")
def batch_input(penguins_chain, tmp_path_factory) -> Path:
    _, paths, _ = penguins_chain
    frame = read_split(paths["data"], "test")
    frame.insert(0, "penguin_id", [f"p{i:03d}" for i in range(len(frame))])
    path = tmp_path_factory.mktemp("batch") / "penguins.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_batch_predictions_match_the_model(
    penguins_chain, batch_input, tmp_path: Path, fmt
) -> None:
    import tensorflow as tf

    config, paths, _ = penguins_chain
    frame = pd.read_csv(batch_input)
    source = tmp_path / f"input.{fmt}"
    if fmt == "csv":
        source = batch_input
    elif fmt == "jsonl":
        frame.to_json(source, orient="records", lines=True)
    else:
        frame.to_parquet(source, index=False)
    summary = run_batch_predict(config, paths["model"], str(source), tmp_path / "out", "penguin_id")
    assert summary["rows"] == len(frame)
    rows = {row["penguin_id"]: row for row in read_predictions(tmp_path / "out")}
    loaded = tf.saved_model.load(str(paths["model"]))
    expected = loaded.signatures["serving_default"](
        **{k: tf.constant(v) for k, v in frame_to_arrays(frame, config.features).items()}
    )
    for i, row_id in enumerate(frame["penguin_id"]):
        got = rows[row_id]
        assert got["label"] == expected["predicted_label"].numpy()[i].decode()
        # Same values up to float32 summation order (batches are sized differently).
        np.testing.assert_allclose(
            list(got["probabilities"].values()), expected["probabilities"].numpy()[i], atol=1e-6
        )


def test_batch_input_without_id_column_is_refused(penguins_chain, tmp_path: Path) -> None:
    config, paths, _ = penguins_chain
    source = tmp_path / "no_id.csv"
    read_split(paths["data"], "test").to_csv(source, index=False)
    with pytest.raises(BatchPredictError, match="columns \\['row_id'\\] are missing"):
        run_batch_predict(config, paths["model"], str(source), tmp_path / "out", "row_id")
    assert not (tmp_path / "out").exists()


def test_batch_and_online_predictions_are_identical(
    penguins_chain, batch_input, tmp_path: Path
) -> None:
    config, paths, _ = penguins_chain
    run_batch_predict(config, paths["model"], str(batch_input), tmp_path / "out", "penguin_id")
    batch = {row["penguin_id"]: row for row in read_predictions(tmp_path / "out")}
    config_file = tmp_path / "config.json"
    config_file.write_text(config.to_json())
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlops.serving",
            "--config-json",
            str(config_file),
            "--model-dir",
            str(paths["model"]),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < deadline, "server did not become healthy"
            time.sleep(0.5)
        frame = pd.read_csv(batch_input)
        features = config.features.raw_features
        instances = json.loads(frame[features].to_json(orient="records"))
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            data=json.dumps({"instances": instances}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            online = json.loads(reply.read())["predictions"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert len(online) == len(frame)
    for row_id, prediction in zip(frame["penguin_id"], online, strict=True):
        assert prediction["label"] == batch[row_id]["label"]
        assert prediction["probabilities"].keys() == batch[row_id]["probabilities"].keys()
        # Identical conversion and signature; float32 sums may differ in the last bits when the
        # rows are grouped into batches of other sizes.
        np.testing.assert_allclose(
            list(prediction["probabilities"].values()),
            list(batch[row_id]["probabilities"].values()),
            atol=1e-6,
        )


def test_vectorised_category_texts_equal_the_scalar_rule() -> None:
    from mlops.features import category_text, category_texts

    columns = {
        "int": pd.Series([8, -3, 0, 12345678901234]),
        "float with nan": pd.Series([8.0, float("nan"), 2.5, -0.0, 1e20, 3.0]),
        "strings": pd.Series(["Dream", "", "île", "8"]),
        "mixed object": pd.Series(
            ["a", None, float("nan"), 7, 7.0, b"x", pd.NA, True], dtype=object
        ),
        "nullable int": pd.Series([1, None, 3], dtype="Int64"),
        "bool": pd.Series([True, False]),
        "pandas strings": pd.Series(["x", None], dtype="string"),
    }
    for name, column in columns.items():
        expected = [category_text(v) for v in column.tolist()]
        assert category_texts(column).tolist() == expected, name


@pytest.mark.parametrize(
    "ids",
    [
        np.array([7, 12345678901], dtype=np.int64),
        np.array(["p001", "île-2"], dtype=object),
        np.array(['id "1"', "back\\slash"], dtype=object),  # escaped: the per-row path
        np.array([1.5, 2.0]),  # neither integer nor text: the per-row path
    ],
)
def test_batch_prediction_text_is_json_lines_with_sorted_keys(ids) -> None:
    from components.batch_predict import prediction_text

    names = ["yes", "no"]
    probabilities = np.array([[0.25, 0.75], [1e-7, 0.9999999]], dtype=np.float32)
    text = prediction_text("a_id", ids, ["no", "yes"], names, probabilities)
    lines = text.split("\n")
    assert len(lines) == 2
    for line, row_id, label, row in zip(
        lines, ids.tolist(), ["no", "yes"], probabilities.tolist(), strict=True
    ):
        expected = {
            "a_id": row_id,
            "label": label,
            "probabilities": dict(zip(names, row, strict=True)),
        }
        assert line == json.dumps(expected, sort_keys=True) or json.loads(line) == expected
        assert list(json.loads(line)) == ["a_id", "label", "probabilities"]
        assert list(json.loads(line)["probabilities"]) == ["no", "yes"]
    with_nan = np.array([[np.nan, 1.0], [0.5, 0.5]], dtype=np.float32)
    first = json.loads(prediction_text("a_id", ids, ["no", "yes"], names, with_nan).split("\n")[0])
    assert first["probabilities"]["yes"] is None  # JSON has no NaN


def test_batch_input_with_text_in_a_numeric_column_names_row_and_value(
    penguins_chain, batch_input, tmp_path: Path
) -> None:
    config, paths, _ = penguins_chain
    frame = pd.read_csv(batch_input)
    frame["bill_length_mm"] = frame["bill_length_mm"].astype(object)
    frame.loc[3, "bill_length_mm"] = "forty"
    source = tmp_path / "rows.csv"
    frame.to_csv(source, index=False)
    with pytest.raises(
        Exception, match=r"row 'p003': feature 'bill_length_mm' is 'forty', not a number"
    ):
        run_batch_predict(config, paths["model"], str(source), tmp_path / "out", "penguin_id")
    assert not (tmp_path / "out").exists()


def test_batch_input_glob_and_gzip(penguins_chain, batch_input, tmp_path: Path) -> None:
    import gzip

    config, paths, _ = penguins_chain
    frame = pd.read_csv(batch_input)
    half = len(frame) // 2
    frame.head(half).to_csv(tmp_path / "part-0.csv", index=False)
    with gzip.open(tmp_path / "part-1.csv.gz", "wt") as handle:
        frame.tail(len(frame) - half).to_csv(handle, index=False)
    summary = run_batch_predict(
        config, paths["model"], str(tmp_path / "part-*"), tmp_path / "out", "penguin_id"
    )
    assert summary["rows"] == len(frame)
    assert {r["penguin_id"] for r in read_predictions(tmp_path / "out")} == set(frame["penguin_id"])


def test_in_process_job_writes_what_the_beam_pipeline_writes(
    penguins_chain, batch_input, tmp_path: Path
) -> None:
    """The local one-worker job skips the runner; its file is the Beam pipeline's, byte for byte
    (several chunks of several model calls each, so chunk order and joins are covered)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from components.batch_predict import (
        PredictChunks,
        ReadChunks,
        _predict_on_beam,
        _runs_in_process,
    )
    from mlops.io import to_beam_uri

    config, paths, _ = penguins_chain
    summary = run_batch_predict(
        config,
        paths["model"],
        str(batch_input),
        tmp_path / "local",
        "penguin_id",
        batch_size=7,
        chunk_rows=30,
    )
    features = config.features
    reader = ReadChunks("csv", 30, ["penguin_id", *features.raw_features])
    predictor = PredictChunks(to_beam_uri(paths["model"]), features, "penguin_id", 7)
    (tmp_path / "beam").mkdir()
    options = PipelineOptions(["--runner=FnApiRunner"])
    _predict_on_beam(options, [str(batch_input)], reader, predictor, tmp_path / "beam")
    assert summary["files"] == ["predictions-00000-of-00001.jsonl"]
    local = (tmp_path / "local" / summary["files"][0]).read_bytes()
    beam_lines = (tmp_path / "beam" / summary["files"][0]).read_bytes().splitlines()
    # Reshuffle may reorder whole chunks; the lines themselves are identical.
    assert sorted(local.splitlines()) == sorted(beam_lines)
    assert local.count(b"\n") == len(pd.read_csv(batch_input)) and local.endswith(b"\n")

    assert _runs_in_process(options)
    assert _runs_in_process(PipelineOptions([]))
    assert not _runs_in_process(PipelineOptions(["--runner=DataflowRunner"]))
    assert not _runs_in_process(PipelineOptions(["--runner=FnApiRunner", "--direct_num_workers=2"]))


def test_chunk_text_equals_the_text_of_each_slice() -> None:
    from components.batch_predict import chunk_text, prediction_text

    classes = np.array([[b"yes", b"no"]] * 3, dtype=object)

    def out(labels: list[bytes], probabilities: list[list[float]]) -> dict[str, np.ndarray]:
        return {
            "predicted_label": np.array(labels, dtype=object),
            "classes": classes[: len(labels)],
            "probabilities": np.array(probabilities, dtype=np.float32),
        }

    for ids, second in [
        (np.array([4, 5, 6], dtype=np.int64), [[0.5, 0.5]]),  # one column-wise call
        (np.array([4, 5, 6], dtype=np.int64), [[np.nan, 0.5]]),  # a slice with NaN
        (np.array(["a", 'b"', "c"], dtype=object), [[0.1, 0.9]]),  # an id to escape
    ]:
        outputs = [out([b"yes", b"no"], [[0.75, 0.25], [1e-7, 0.9999999]]), out([b"no"], second)]
        expected = "\n".join(
            prediction_text(
                "id",
                ids[start:stop],
                [v.decode() for v in o["predicted_label"]],
                ["yes", "no"],
                o["probabilities"],
            )
            for (start, stop), o in zip([(0, 2), (2, 3)], outputs, strict=True)
        )
        assert chunk_text("id", ids, outputs) == expected


def test_chunk_text_from_predicted_indices_equals_the_text_from_labels() -> None:
    """After a chunk's first slice the model is asked for the predicted index only: the lines
    are those the labels give, and a first slice whose index does not name its label makes
    the chunk use the labels."""
    from components.batch_predict import _labels_are_indexed, chunk_text

    names = np.array([b"yes", b"no", b"maybe"], dtype=object)

    def out(index: list[int], probabilities: list[list[float]]) -> dict[str, np.ndarray]:
        chosen = np.array(index, dtype=np.int64)
        return {
            "predicted_label": names[chosen],
            "predicted_index": chosen,
            "classes": np.tile(names, (len(index), 1)),
            "probabilities": np.array(probabilities, dtype=np.float32),
        }

    first = out([0, 2], [[0.75, 0.05, 0.2], [0.1, 0.2, 0.7]])
    assert _labels_are_indexed(first)
    for ids, second in [
        (np.array([4, 5, 6], dtype=np.int64), out([1], [[0.1, 0.5, 0.4]])),  # column-wise
        (np.array([4, 5, 6], dtype=np.int64), out([1], [[np.nan, 0.5, 0.4]])),  # per row
        (np.array(["a", 'b"', "c"], dtype=object), out([2], [[0.1, 0.2, 0.7]])),  # per row
    ]:
        expected = chunk_text("id", ids, [first, second])
        lean = {k: second[k] for k in ("probabilities", "predicted_index")}
        assert chunk_text("id", ids, [first, lean]) == expected
        assert (
            chunk_text("id", ids[2:], [lean | {"classes": second["classes"]}])
            == (expected.split("\n", 2)[2])
        )
    wrong = first | {"predicted_index": np.array([1, 2], dtype=np.int64)}
    assert not _labels_are_indexed(wrong)
    assert not _labels_are_indexed(first | {"predicted_index": np.array([0, 3])})
    assert not _labels_are_indexed({k: v for k, v in first.items() if k != "predicted_index"})
    ids = np.array([4, 5, 6], dtype=np.int64)
    lean = {"probabilities": second["probabilities"], "predicted_label": second["predicted_label"]}
    assert chunk_text("id", ids, [wrong, lean]).startswith('{"id": 4, "label": "yes"')


def test_model_returns_only_the_outputs_asked_for(penguins_chain, batch_input) -> None:
    from components.batch_predict import _labels_are_indexed
    from mlops.serving.server import load_model

    config, paths, _ = penguins_chain
    model = load_model(paths["model"])
    arrays = frame_to_arrays(pd.read_csv(batch_input), config.features)
    full = model.predict_raw(arrays)
    some = model.predict_raw(arrays, {"probabilities", "predicted_index"})
    assert set(some) == {"probabilities", "predicted_index"} < set(full)
    for name, values in some.items():
        assert np.array_equal(values, full[name]), name
    assert _labels_are_indexed(full)  # what the exported signature promises


def test_errors_in_the_reading_and_writing_threads_stop_the_job(
    penguins_chain, batch_input, tmp_path: Path
) -> None:
    """A bad value in a later chunk (read and converted in its own thread) and a value the
    JSON writer refuses (written in its own thread) fail the job as before, with every thread
    ended and no output."""
    import threading

    config, paths, _ = penguins_chain
    frame = pd.read_csv(batch_input)
    frame["bill_length_mm"] = frame["bill_length_mm"].astype(object)
    frame.loc[25, "bill_length_mm"] = "forty"
    source = tmp_path / "rows.csv"
    frame.to_csv(source, index=False)
    with pytest.raises(Exception, match=r"row 'p025': feature 'bill_length_mm' is 'forty'"):
        run_batch_predict(
            config, paths["model"], str(source), tmp_path / "out", "penguin_id", 4, chunk_rows=8
        )
    lines = pd.read_csv(batch_input).to_json(orient="records", lines=True).splitlines()
    lines[20] = lines[20].replace('"penguin_id":"p020"', '"penguin_id":' + str(2**70))
    source = tmp_path / "rows.jsonl"
    source.write_text("\n".join(lines) + "\n")
    with pytest.raises(TypeError, match="64-bit"):  # orjson's error, as before the threads
        run_batch_predict(
            config, paths["model"], str(source), tmp_path / "out", "penguin_id", 4, chunk_rows=8
        )
    assert not (tmp_path / "out").exists()
    assert not [t for t in threading.enumerate() if t.name.startswith("batch-predict")]
