"""Ingest on Beam (components/ingest_beam.py) writes what the in-process ingest writes: the same
split files (equal tables, types included, and the same bytes: equal fingerprints), the same
ingest.json and the same IngestError texts, on sources read in many small batches (so the
global combines, the samples' order and the time split's tie-break across batches are used).
Run on the FnApiRunner; `run_ingest` picks the Beam path when the runner is Dataflow."""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import palmerpenguins
import pandas as pd
import pyarrow.parquet as pq
import pytest

import mlops.tabular as tabular
from components.ingest import IngestError, ingest_on_beam, run_ingest
from components.ingest_beam import run_ingest_beam
from mlops.artifacts import INGEST_SUMMARY_FILE, SPLITS, UNLABELED
from mlops.config import PipelineConfig, beam_runner_name
from tests.conftest import config_in, on_vertex

BEAM = ["--runner=FnApiRunner"]


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read the 344 penguins rows in about 20 batches (of CSV text, JSON lines, Parquet rows)."""
    monkeypatch.setattr(tabular, "CSV_BLOCK_BYTES", 1024)
    monkeypatch.setattr(tabular, "JSON_CHUNK_LINES", 16)
    monkeypatch.setattr(tabular, "PARQUET_BATCH_ROWS", 16)


def _config(tmp: Path, source: Path | str, name: str = "penguins", **data) -> PipelineConfig:
    config = config_in(tmp, name)
    data = {**config.data.model_dump(), "source": str(source), **data}
    return config.with_overrides(data=data).model_copy(update={"beam_args": BEAM})


def _penguins() -> pd.DataFrame:
    frame = palmerpenguins.load_penguins()
    frame["tag"] = [str(i) for i in range(len(frame) - 3)] + ["x1", "007", "8"]  # text late
    return frame


def _same(config: PipelineConfig, tmp: Path) -> dict:
    """Ingest in-process and on Beam; assert the outputs are the same; return the summary."""
    local = run_ingest(config, tmp / "local")
    beam = run_ingest_beam(config, tmp / "beam")
    assert beam == local  # rows, bad rows, types, personal data, and the fingerprint
    files = sorted(p.name for p in (tmp / "local").iterdir())
    assert sorted(p.name for p in (tmp / "beam").iterdir()) == files
    for name in [*SPLITS, UNLABELED]:
        if f"{name}.parquet" in files:
            expected = pq.read_table(tmp / "local" / f"{name}.parquet")
            got = pq.read_table(tmp / "beam" / f"{name}.parquet")
            assert got.equals(expected, check_metadata=True), name
    summaries = [json.loads((tmp / d / INGEST_SUMMARY_FILE).read_text()) for d in ("local", "beam")]
    assert summaries[0] == summaries[1]
    return local


def _same_error(config: PipelineConfig, tmp: Path) -> str:
    with pytest.raises(IngestError) as local:
        run_ingest(config, tmp / "local-error")
    with pytest.raises(IngestError) as beam:
        run_ingest_beam(config, tmp / "beam-error")
    assert str(beam.value) == str(local.value)
    assert not (tmp / "beam-error").exists()  # nothing half-written is left
    assert not list(tmp.glob(".beam-error*"))
    return str(beam.value)


def test_csv_with_bad_rows_and_na_values(tmp_path: Path, small_batches) -> None:
    lines = _penguins().to_csv(index=False).splitlines()
    lines[40] = lines[40].replace(lines[40].split(",")[2], "forty", 1)  # not a number
    lines[150] = lines[150].replace(lines[150].split(",")[3], "inf", 1)  # not finite
    lines[200] = "," + lines[200].split(",", 1)[1]  # no label
    lines[250] = lines[250].replace(lines[250].split(",")[1], "?", 1)  # na_values: missing
    lines.insert(320, "Adelie,Dream,1,2")  # too few fields
    source = tmp_path / "bad.csv"
    source.write_text("\n".join(lines) + "\n")
    config = _config(tmp_path, source, max_bad_row_fraction=0.05, na_values=["?", "NA"])
    summary = _same(config, tmp_path / "ok")
    assert summary["rows_dropped"] == 4
    assert (
        "line 41: column 'bill_length_mm': 'forty' is not a number" in (summary["dropped_examples"])
    )
    assert summary["columns"]["tag"] == "string"
    strict = config.with_overrides(data={**config.data.model_dump(), "max_bad_row_fraction": 0})
    message = _same_error(strict, tmp_path / "strict")
    assert message.startswith(f"{source}: 4 of 345 rows cannot be used")


def test_json_lines_with_a_key_seen_late_and_a_bad_line(tmp_path: Path, small_batches) -> None:
    records = json.loads(_penguins().to_json(orient="records"))
    for number, record in enumerate(records):
        if number >= 300:
            record["note"] = f"n{number % 3}"
    lines = [json.dumps(record) for record in records]
    lines.insert(100, "{not json")
    source = tmp_path / "penguins.jsonl.gz"
    source.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    summary = _same(_config(tmp_path, source, max_bad_row_fraction=0.01), tmp_path)
    assert summary["columns"]["note"] == "string" and summary["rows_dropped"] == 1


@pytest.mark.parametrize("name", ["penguins.parquet", "penguins.parquet.gz"])
def test_parquet_with_a_hash_split_on_key_columns(tmp_path: Path, small_batches, name) -> None:
    """Read one row group per worker; gzipped, start to end by one worker."""
    source = tmp_path / name
    _penguins().to_parquet(tmp_path / "raw.parquet", index=False, row_group_size=50)  # 7 groups
    raw = (tmp_path / "raw.parquet").read_bytes()
    source.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    config = _config(tmp_path, source)
    split = {**config.data.split.model_dump(), "key_columns": ["island", "bill_length_mm"]}
    config = config.with_overrides(data={**config.data.model_dump(), "split": split})
    assert sum(_same(config, tmp_path)["rows"].values()) == 344


def test_time_split_with_ties_across_batches_keeping_unlabeled_rows(
    tmp_path: Path, small_batches
) -> None:
    frame = _penguins()
    frame["t"] = [(i * 7919) % 23 for i in range(len(frame))]  # 23 times, each in many batches
    frame.loc[[5, 77, 300], "species"] = None
    source = tmp_path / "ties.csv"
    frame.to_csv(source, index=False)
    split = {"method": "time", "time_column": "t", "eval_fraction": 0.2, "test_fraction": 0.15}
    config = _config(tmp_path, source, split=split, unlabeled="keep")
    summary = _same(config, tmp_path)
    assert summary["rows_unlabeled"] == 3 and sum(summary["rows"].values()) == 341


@pytest.mark.parametrize("rows", [1, 2, 7, 100, 1001])
def test_time_cutoffs_give_the_in_process_ranks(rows: int) -> None:
    """Global cut-offs (a time and how many of its ties) split rows as ranking them all does,
    batch by batch, with ties counted across batches."""
    import numpy as np

    from components.ingest import time_split_codes
    from components.ingest_beam import Plan, merge_histograms, time_codes, time_cutoffs

    times = np.random.default_rng(rows).integers(0, 1 + rows // 5, rows).astype(np.float64)
    for fractions in ((0.15, 0.15), (0.2, 0.1), (0.3, 0.5)):
        data = _config(Path("."), "rows.csv").data
        split = {"eval_fraction": fractions[0], "test_fraction": fractions[1]}
        data = data.model_copy(update={"split": data.split.model_copy(update=split)})
        parts = np.array_split(times, 3)
        histogram = merge_histograms(*(np.unique(p, return_counts=True) for p in parts))
        plan = Plan(cutoffs=time_cutoffs(histogram, rows, data))
        codes, before = [], np.zeros(2, dtype=int)
        for part in parts:
            codes.append(time_codes(plan, part, tuple(before)))
            before += [int((part == value).sum()) for value, _ in plan.cutoffs]
        assert np.array_equal(np.concatenate(codes), time_split_codes(times, data))


def test_taxi_time_split(tmp_path: Path) -> None:
    config = config_in(tmp_path, "taxi").model_copy(update={"beam_args": BEAM})
    assert _same(config, tmp_path)["rows"] == {"train": 10501, "eval": 2250, "test": 2251}


def test_hashed_personal_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_PII_SALT", "s3cret")
    frame = _penguins()
    frame["contact"] = [f"person{i}@example.com" for i in range(len(frame))]
    source = tmp_path / "contacts.csv"
    frame.to_csv(source, index=False)
    config = _config(tmp_path, source).with_overrides(privacy={"columns": {"contact": "hash"}})
    summary = _same(config, tmp_path)
    assert summary["personal_data"] == {"contact": "hash (email)"}


def test_cloud_dlp_sees_the_same_first_rows(
    tmp_path: Path, small_batches, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows sent to Cloud DLP (the first rows, across several batches) and what its finding
    does are the same (the client faked at its API boundary, as in test_privacy.py)."""
    from unittest import mock

    from google.cloud import dlp_v2

    from tests.vertex_fakes import default_credentials

    frame = _penguins()
    frame["notes"] = [f"ring me, Ann Lee, on {i}" for i in range(len(frame))]
    source = tmp_path / "notes.csv"
    frame.to_csv(source, index=False)
    requests: list[dlp_v2.InspectContentRequest] = []
    finding = dlp_v2.Finding(
        info_type=dlp_v2.InfoType(name="PERSON_NAME"),
        likelihood=dlp_v2.Likelihood.VERY_LIKELY,
        location=dlp_v2.Location(
            content_locations=[
                dlp_v2.ContentLocation(
                    record_location=dlp_v2.RecordLocation(field_id=dlp_v2.FieldId(name="notes"))
                )
            ]
        ),
    )

    def inspect_content(self, request=None, **_):  # noqa: ANN001, ANN202 - the client's own
        requests.append(dlp_v2.InspectContentRequest(request))
        response = dlp_v2.InspectContentResponse(
            result=dlp_v2.InspectResult(findings=[finding, finding])
        )
        return response

    config = _config(tmp_path, source)
    dlp = {"enabled": True, "info_types": ["PERSON_NAME"], "sample_rows": 50}
    config = config.with_overrides(
        vertex={**config.vertex.model_dump(), "project": "my-project"},
        privacy={"columns": {"notes": "drop"}, "dlp": dlp},
    )
    with (
        default_credentials(),
        mock.patch.object(dlp_v2.DlpServiceClient, "inspect_content", inspect_content),
    ):
        summary = _same(config, tmp_path)
    assert summary["personal_data"] == {"notes": "drop (PERSON_NAME (Cloud DLP))"}
    local, beam = requests
    assert len(beam.item.table.rows) == 50 and beam.item.table == local.item.table


@pytest.mark.parametrize(
    "case",
    ["no label column", "personal data", "time column text", "empty split", "late bad bytes"],
)
def test_errors_are_the_in_process_errors(tmp_path: Path, small_batches, case: str) -> None:
    frame = _penguins()
    data: dict = {}
    if case == "no label column":
        frame = frame.drop(columns=["species"])
    elif case == "personal data":
        frame["contact"] = [f"person{i}@example.com" for i in range(len(frame))]
    elif case == "time column text":
        data["split"] = {"method": "time", "time_column": "tag"}
    elif case == "empty split":
        frame = frame.head(3)
    source = tmp_path / "rows.csv"
    frame.to_csv(source, index=False)
    if case == "late bad bytes":  # the reader fails after many batches went downstream
        source.write_bytes(
            source.read_bytes().replace(b"Chinstrap,Dream", b"Chin\xffstrap,Dream", 1)
        )
    message = _same_error(_config(tmp_path, source, **data), tmp_path)
    assert case != "late bad bytes" or "not UTF-8 text" in message


def test_run_ingest_goes_to_beam_when_the_runner_is_dataflow(tmp_path: Path) -> None:
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    from mlops.vertex_jobs import SubmitSettings, vertex_runtime_config

    def on(config: PipelineConfig, source: str) -> PipelineConfig:
        return config.with_overrides(data={**config.data.model_dump(), "source": source})

    config = on_vertex(_config(tmp_path, "gs://my-bucket/data/rows.csv"))
    assert not ingest_on_beam(config)  # FnApiRunner: in-process
    settings = SubmitSettings(
        project="my-project",
        region="europe-west4",
        pipeline_root="gs://my-bucket/root",
        service_account=None,
    )
    cloud = vertex_runtime_config(config, settings)  # as `mlops submit` runs it
    options = PipelineOptions(cloud.beam_args)
    assert options.view_as(StandardOptions).runner == beam_runner_name(cloud.beam_args)
    assert beam_runner_name(cloud.beam_args) == "DataflowRunner" and ingest_on_beam(cloud)
    assert options.get_all_options()["sdk_container_image"] == config.vertex.image
    assert ingest_on_beam(on(cloud, "/gcs/my-bucket/data/rows.csv"))
    # Read in-process even on Dataflow: a file in the image, the packaged set.
    assert not ingest_on_beam(on(cloud, "data/chicago_taxi/big_tipper.csv"))
    assert not ingest_on_beam(on(cloud, "palmerpenguins"))
    # Databases: BigQuery and a SQL server are read on Dataflow; a SQLite file in-process.
    bigquery = cloud.with_overrides(
        data={**cloud.data.model_dump(), "source": "bq://my-project.zoo.penguins"}
    )
    assert ingest_on_beam(bigquery)
    server = {"source": "postgresql://reader@db.internal/zoo", "table": "penguins"}
    assert ingest_on_beam(cloud.with_overrides(data={**cloud.data.model_dump(), **server}))
    sqlite = {**server, "source": "sqlite:///data/zoo.db"}
    assert not ingest_on_beam(cloud.with_overrides(data={**cloud.data.model_dump(), **sqlite}))
    for args in (["--runner", "DataflowRunner"], ["--runner=FnApiRunner"], []):
        assert beam_runner_name(args) == (
            PipelineOptions(args).view_as(StandardOptions).runner or ""
        )
    # run_ingest takes the Beam path: Dataflow workers cannot write this machine's disk, which
    # that path says before anything starts (the in-process path would have written it).
    with pytest.raises(IngestError, match=r"the output '.*local' is not on Cloud Storage"):
        run_ingest(cloud, tmp_path / "local")
    assert not (tmp_path / "local").exists()


def test_gs_source_and_output_on_the_emulator(tmp_path: Path) -> None:
    """The source and the output directory as gs:// URIs (Beam's GCS filesystem against the
    emulator): the same files as the local Beam run; complete only once marked."""
    from apache_beam.io.filesystems import FileSystems

    from mlops.io import COMPLETE_MARKER, read_uri_bytes, require_complete_uri
    from tests.gcs_emulator import gcs_emulator

    source = tmp_path / "rows.csv"
    _penguins().to_csv(source, index=False)
    with gcs_emulator() as gcs:
        gcs.client().bucket(gcs.bucket).blob("data/rows.csv").upload_from_filename(str(source))
        remote = _config(tmp_path, gcs.uri("data/rows.csv"))
        out = gcs.uri("runs/1/dataset")
        summary = run_ingest_beam(remote, out)
        local = run_ingest_beam(_config(tmp_path, source), tmp_path / "local")
        assert summary == {**local, "source": gcs.uri("data/rows.csv")}
        require_complete_uri(out)
        names = {
            m.path.rsplit("/", 1)[-1] for m in FileSystems.match([out + "/*"])[0].metadata_list
        }
        assert names == {*(f"{s}.parquet" for s in SPLITS), INGEST_SUMMARY_FILE, COMPLETE_MARKER}
        for split in SPLITS:
            path = f"{out}/{split}.parquet"
            assert read_uri_bytes(path) == (tmp_path / "local" / f"{split}.parquet").read_bytes()


def test_a_sql_database_on_beam(tmp_path: Path) -> None:
    """Read in order by one worker, as a text file is: the in-process splits, bad rows named
    `row N`, and the same strict-limit error."""
    import sqlite3

    frame = _penguins()
    frame.loc[[5, 200], "bill_length_mm"] = None
    frame["bill_depth_mm"] = frame["bill_depth_mm"].astype(object)
    frame.loc[7, "bill_depth_mm"] = "deep"  # a text value in a numeric feature: a bad row
    with sqlite3.connect(tmp_path / "zoo.db") as connection:
        frame.to_sql("penguins", connection, index=False)
    source = f"sqlite:///{tmp_path / 'zoo.db'}"
    config = _config(tmp_path, source, table="penguins", batch_rows=32, max_bad_row_fraction=0.1)
    summary = _same(config, tmp_path / "ok")
    assert summary["dropped_examples"][0].startswith("row 8: column 'bill_depth_mm'")
    strict = _config(tmp_path, source, table="penguins", batch_rows=32)
    assert "row 8: column 'bill_depth_mm'" in _same_error(strict, tmp_path / "strict")


def test_batches_read_in_no_order_are_numbered_by_content() -> None:
    """A parallel read (BigQuery) gives batches in any order, equal ones possibly: every row gets
    one position, 0..n-1, and the same batches get the same positions whatever their order."""
    import apache_beam as beam
    import pyarrow as pa

    from components.ingest_beam import NumberBatches

    batches = [pa.record_batch({"x": list(range(i, i + 3 + i % 4))}) for i in range(0, 40, 5)]
    batches += [batches[2], batches[2]]  # equal content three times

    def numbered(order: list[int], out: Path) -> list[tuple[int, list[int]]]:
        with beam.Pipeline(options=beam.options.pipeline_options.PipelineOptions(BEAM)) as p:
            _ = (
                p
                | beam.Create([batches[i] for i in order], reshuffle=False)
                | NumberBatches()
                | beam.MapTuple(lambda first, batch: (first, batch.column("x").to_pylist()))
                | beam.combiners.ToList()
                | beam.Map(lambda rows: out.write_text(json.dumps(sorted(rows))))
            )
        return [tuple(row) for row in json.loads(out.read_text())]

    forward = numbered(list(range(len(batches))), Path(tempfile.mkdtemp()) / "a.json")
    backward = numbered(list(reversed(range(len(batches)))), Path(tempfile.mkdtemp()) / "b.json")
    assert forward == backward
    positions = [first + i for first, values in forward for i in range(len(values))]
    assert sorted(positions) == list(range(sum(b.num_rows for b in batches)))
    assert sorted(values for _, values in forward) == sorted(
        b.column("x").to_pylist() for b in batches
    )
