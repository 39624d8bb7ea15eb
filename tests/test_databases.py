"""Database sources (mlops/databases.py): SQLite end to end through ingest against the same rows
as CSV, clear errors for bad tables, queries, columns, URLs and drivers, BigQuery through its
REST API answered by a local fake (the client library itself is real), and the Beam reads."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest

from components.ingest import IngestError, run_ingest
from mlops.artifacts import SPLITS, read_split
from mlops.config import DataConfig, PipelineConfig
from mlops.databases import (
    DatabaseError,
    beam_bigquery_batches,
    bigquery_batches,
    bigquery_client,
    bigquery_read_transform,
    sql_batches,
)
from mlops.tabular import iter_source_batches, read_source
from tests.conftest import TAXI_CSV

PROJECT = "test-project"


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    import palmerpenguins

    return palmerpenguins.load_penguins()


def _with_data(config: PipelineConfig, **data: Any) -> PipelineConfig:
    """`config` with data fields replaced, validated again (as a loaded config is)."""
    return config.with_overrides(data={**config.data.model_dump(), **data})


def _sqlite(path: Path, frame: pd.DataFrame, table: str = "penguins") -> str:
    with sqlite3.connect(path) as connection:
        frame.to_sql(table, connection, index=False)
    return f"sqlite:///{path}"


def _same_splits(a: Path, b: Path) -> None:
    for split in SPLITS:
        left, right = read_split(a, split), read_split(b, split)
        pd.testing.assert_frame_equal(left, right)


# ---------------------------------------------------------------------------------------------
# SQL databases


def test_sqlite_ingest_gives_the_same_splits_as_csv(penguins_config, penguins, tmp_path) -> None:
    """Typed SQLite columns (REAL, INTEGER, TEXT, NULL) and the same rows written to CSV ingest to
    the same split files, read in several batches; a query works as a table does."""
    frame = penguins.copy()
    frame.loc[3, "island"] = "NA"  # one of data.na_values: missing in CSV and in the database
    frame.loc[5, "sex"] = ""  # empty text: missing in both
    csv = tmp_path / "penguins.csv"
    frame.to_csv(csv, index=False)
    url = _sqlite(tmp_path / "penguins.db", frame)
    reference = run_ingest(_with_data(penguins_config, source=str(csv)), tmp_path / "csv")
    from_table = _with_data(penguins_config, source=url, table="penguins", batch_rows=100)
    summary = run_ingest(from_table, tmp_path / "table")
    query = "SELECT * FROM penguins -- every row"
    from_query = _with_data(penguins_config, source=url, query=query, batch_rows=1000)
    by_query = run_ingest(from_query, tmp_path / "query")
    assert summary["table"] == "penguins" and "query" not in summary  # what selected the rows
    assert by_query["query"] == query and "table" not in by_query
    assert "table" not in reference and "query" not in reference
    assert summary["rows"] == reference["rows"]
    assert summary["columns"] == reference["columns"]
    assert summary["columns"]["year"] == "Int64"
    assert summary["columns"]["flipper_length_mm"] == "Int64"  # REAL 181.0 as "181.0" in CSV
    _same_splits(tmp_path / "csv", tmp_path / "table")
    _same_splits(tmp_path / "csv", tmp_path / "query")
    assert summary["fingerprint"] == reference["fingerprint"]
    assert sum(read_split(tmp_path / "table", s)["island"].isna().sum() for s in SPLITS) == 1


def test_sqlite_taxi_time_split_gives_the_same_splits_as_csv(taxi_config, tmp_path) -> None:
    """The taxi rows in SQLite (an all-empty column, integers, a time split) ingest to the CSV's
    splits. (Written with pandas' round-trip float parser: its default can be an ulp off.)"""
    frame = pd.read_csv(TAXI_CSV, float_precision="round_trip")
    url = _sqlite(tmp_path / "taxi.db", frame, table="trips")
    reference = run_ingest(taxi_config, tmp_path / "csv")
    summary = run_ingest(_with_data(taxi_config, source=url, table="trips"), tmp_path / "sql")
    assert summary["rows"] == reference["rows"] == {"train": 10501, "eval": 2250, "test": 2251}
    assert summary["fingerprint"] == reference["fingerprint"]


def test_mixed_sqlite_column_is_typed_like_csv_and_bad_rows_name_the_row(
    penguins_config, penguins, tmp_path
) -> None:
    """SQLite stores what it is given: a text value in a numeric column makes that batch text,
    and ingest counts it as a bad row by its row number in the result, as CSV does by line."""
    frame = penguins.astype({"bill_length_mm": object})
    frame.loc[6, "bill_length_mm"] = "long"  # row 7 of the result
    url = _sqlite(tmp_path / "mixed.db", frame)
    config = _with_data(penguins_config, source=url, table="penguins", batch_rows=50)
    with pytest.raises(IngestError, match=r"row 7: column 'bill_length_mm': 'long' is not a"):
        run_ingest(config, tmp_path / "strict")
    lenient = {"max_bad_row_fraction": 0.01}
    summary = run_ingest(
        _with_data(penguins_config, source=url, table="penguins", **lenient), tmp_path / "sql"
    )
    csv = tmp_path / "mixed.csv"
    frame.to_csv(csv, index=False)
    reference = run_ingest(_with_data(penguins_config, source=str(csv), **lenient), tmp_path / "c")
    assert summary["rows_dropped"] == reference["rows_dropped"] == 1
    assert summary["dropped_examples"] == ["row 7: column 'bill_length_mm': 'long' is not a number"]
    assert reference["dropped_examples"] == [
        "line 8: column 'bill_length_mm': 'long' is not a number"
    ]
    assert summary["columns"] == reference["columns"]
    _same_splits(tmp_path / "c", tmp_path / "sql")


def test_sql_batches_are_bounded_and_typed(penguins, tmp_path) -> None:
    url = _sqlite(tmp_path / "p.db", penguins)
    data = DataConfig(source=url, table="penguins", label="species", batch_rows=100)
    batches = list(sql_batches(data))
    assert [b.num_rows for b in batches] == [100, 100, 100, 44]
    types = {field.name: str(field.type) for field in batches[0].schema}
    assert types["species"] == "string" and types["bill_length_mm"] == "double"
    assert types["year"] == "int64"
    # a table in a schema: SQLite's attached database "main"
    data = DataConfig(source=url, table="main.penguins", label="species")
    assert sum(b.num_rows for b in sql_batches(data)) == 344
    # read whole, as monitoring reads serving data
    frame, bad = read_source(data)
    assert bad == [] and len(frame) == 344 and list(frame.columns) == list(penguins.columns)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"table": "pengiuns"}, r"no such table: pengiuns; check data.table \(tables: penguins\)"),
        ({"query": "SELECT nope FROM penguins"}, r"no such column: nope; check data.query"),
        ({"query": "SELECT * FORM penguins"}, r"syntax error; check data.query"),
    ],
)
def test_bad_table_or_query_is_named(penguins, tmp_path, fields, message) -> None:
    url = _sqlite(tmp_path / "p.db", penguins)
    with pytest.raises(DatabaseError, match=message):
        list(sql_batches(DataConfig(source=url, label="species", **fields)))


def test_array_column_is_refused_with_what_to_select(penguins, tmp_path) -> None:
    from mlops.databases import flat, rows_batch

    batch = rows_batch(["species", "tags"], [("Adelie", [1, 2]), ("Gentoo", None)], [])
    with pytest.raises(DatabaseError, match=r"columns \['tags'\] hold arrays or records"):
        flat(batch, "bq://p.d.t")


def test_missing_label_column_in_a_query_is_named(penguins_config, penguins, tmp_path) -> None:
    url = _sqlite(tmp_path / "p.db", penguins)
    config = _with_data(penguins_config, source=url, query="SELECT island, year FROM penguins")
    with pytest.raises(IngestError, match=r"label column 'species' \(data.label\) is missing"):
        run_ingest(config, tmp_path / "out")


def test_duplicate_result_column_is_refused(penguins, tmp_path) -> None:
    url = _sqlite(tmp_path / "p.db", penguins)
    data = DataConfig(source=url, query="SELECT year, year FROM penguins", label="species")
    with pytest.raises(
        DatabaseError, match=r"the result names \['year'\] twice; give every column a distinct name"
    ):
        list(sql_batches(data))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("sqlite:///no/such/file.db", r"no SQLite file at .*no/such/file.db"),
        ("sqlite://", r"names no SQLite file"),
        (
            "postgresql://user@db.example/rows",
            r"'postgresql://user@db.example/rows': the database driver 'psycopg' is "
            r"not installed; install it \(pip install psycopg\[binary\]\)",
        ),
        ("mysql://user@db.example/rows", r"driver 'MySQLdb'.*mysql\+pymysql://"),
        ("postgresql+nodriver://db.example/rows", r"SQLAlchemy has no dialect or driver"),
        (  # PyMySQL is in the lock; nothing listens on port 1
            "mysql+pymysql://reader@127.0.0.1:1/zoo",
            r"'mysql\+pymysql://reader@127.0.0.1:1/zoo': cannot connect \(.*check the host",
        ),
    ],
)
def test_bad_url_or_missing_driver_is_named(source, message) -> None:
    with pytest.raises(DatabaseError, match=message):
        list(sql_batches(DataConfig(source=source, table="rows", label="y")))


def test_the_password_comes_from_the_environment_never_the_config(monkeypatch) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="data.source has a password in it"):
        DataConfig(source="mysql+pymysql://reader:secret@127.0.0.1:1/zoo", table="t", label="y")
    data = DataConfig(
        source="mysql+pymysql://reader@127.0.0.1:1/zoo",
        table="t",
        label="y",
        password_env="ZOO_DB_PASSWORD",
    )
    monkeypatch.delenv("ZOO_DB_PASSWORD", raising=False)
    with pytest.raises(DatabaseError, match="'ZOO_DB_PASSWORD', which is not set"):
        list(sql_batches(data))
    monkeypatch.setenv("ZOO_DB_PASSWORD", "secret")
    # The password is used (the URL now has one) and never shown.
    with pytest.raises(DatabaseError, match=r"'mysql\+pymysql://reader:\*\*\*@127.0.0.1:1/zoo'"):
        list(sql_batches(data))
    with pytest.raises(ValidationError, match="data.password_env applies to database sources"):
        DataConfig(source="rows.csv", label="y", password_env="ZOO_DB_PASSWORD")
    with pytest.raises(ValidationError, match="data.password_env is for SQL databases"):
        DataConfig(source="bq://my-project.ds.t", label="y", password_env="ZOO_DB_PASSWORD")


def test_relative_sqlite_path_is_relative_to_the_repo(penguins) -> None:
    """As other relative paths in a config are (the config is read from the repo root)."""
    data = DataConfig(source="sqlite:///no_such_dir/rows.db", table="rows", label="y")
    repo = Path(__file__).resolve().parents[1]
    with pytest.raises(DatabaseError, match=re.escape(str(repo / "no_such_dir" / "rows.db"))):
        list(sql_batches(data))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"source": "rows.csv", "query": "SELECT 1"}, "data.query applies to database sources"),
        ({"source": "sqlite:///r.db"}, "give data.table .* or data.query"),
        ({"source": "sqlite:///r.db", "table": "t", "query": "SELECT 1"}, "exactly one"),
        ({"source": "sqlite:///r.db", "query": "DROP TABLE t"}, "data.query must be a SELECT"),
        ({"source": "sqlite:///r.db", "table": "t", "format": "csv"}, "remove data.format"),
        ({"source": "bq://my-project"}, "names a project only: add data.query"),
        ({"source": "bq://my-project.ds"}, r"is not bq://PROJECT.DATASET.TABLE"),
        ({"source": "bq://my-project.ds.t", "query": "SELECT 1"}, "names a table and data.query"),
        ({"source": "bq://my-project.ds.t", "table": "t"}, "name a BigQuery table in data.source"),
        (
            {"source": "bq://my-project.ds.t", "bigquery": {"temp_dataset": "staging"}},
            "must be PROJECT.DATASET",
        ),
    ],
)
def test_config_errors_name_the_field(fields, message) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        DataConfig.model_validate({"label": "y", **fields})


# ---------------------------------------------------------------------------------------------
# BigQuery: the real client library against a local fake of the REST API


def _bq_type(dtype: Any) -> str:
    if pd.api.types.is_integer_dtype(dtype):
        return "INTEGER"
    return "FLOAT" if pd.api.types.is_float_dtype(dtype) else "STRING"


def _bq_value(value: Any) -> str | None:
    """A cell as tabledata.list sends it: text, or null."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return repr(value) if isinstance(value, float) else str(value)


class FakeBigQuery(ThreadingHTTPServer):
    """Answers tables.get, tabledata.list, jobs.query, jobs.get and jobs.getQueryResults for
    in-memory tables; a query is answered with the table it is registered for."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tables: dict[str, pd.DataFrame] = {}
        self.queries: dict[str, str] = {}  # query text -> table it returns
        self.jobs: dict[str, str] = {}  # job id -> table of its results
        self.calls: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeBigQuery

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _error(self, status: int, reason: str, message: str) -> None:
        error = {"code": status, "message": message, "errors": [{"reason": reason}]}
        self._send(status, {"error": error})

    def _table(self, key: str) -> pd.DataFrame | None:
        frame = self.server.tables.get(key)
        if frame is None:
            self._error(404, "notFound", f"Not found: Table {key.replace('.', ':', 1)}")
        return frame

    @staticmethod
    def _schema(frame: pd.DataFrame) -> dict[str, Any]:
        fields = [
            {"name": name, "type": _bq_type(frame[name].dtype), "mode": "NULLABLE"}
            for name in frame.columns
        ]
        return {"fields": fields}

    def _page(self, frame: pd.DataFrame, query: dict[str, list[str]]) -> dict[str, Any]:
        start = int(query.get("pageToken", ["0"])[0])
        size = int(query.get("maxResults", [str(len(frame))])[0])
        part = frame.iloc[start : start + size]
        rows = [
            {"f": [{"v": _bq_value(value)} for value in row]}
            for row in part.itertuples(index=False)
        ]
        page: dict[str, Any] = {"totalRows": str(len(frame)), "rows": rows}
        if start + size < len(frame):
            page["pageToken"] = str(start + size)
        return page

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        self.server.calls.append(f"GET {url.path}")
        table = re.fullmatch(r"/bigquery/v2/projects/(.+)/datasets/(.+)/tables/([^/]+)", url.path)
        data = re.fullmatch(r"/bigquery/v2/projects/(.+)/datasets/(.+)/tables/(.+)/data", url.path)
        job = re.fullmatch(r"/bigquery/v2/projects/(.+)/(jobs|queries)/([^/]+)", url.path)
        if data:
            frame = self._table(".".join(data.groups()))
            if frame is not None:
                self._send(200, self._page(frame, query))
        elif table:
            frame = self._table(".".join(table.groups()))
            if frame is not None:
                project, dataset, name = table.groups()
                reference = {"projectId": project, "datasetId": dataset, "tableId": name}
                resource = {"tableReference": reference, "schema": self._schema(frame)}
                self._send(200, {**resource, "numRows": str(len(frame)), "type": "TABLE"})
        elif job:
            project, kind, job_id = job.groups()
            key = self.server.jobs[job_id]
            frame = self.server.tables[key]
            reference = {"projectId": project, "jobId": job_id, "location": "US"}
            if kind == "jobs":  # jobs.get: done, results in a destination table
                destination = dict(
                    zip(("projectId", "datasetId", "tableId"), key.split("."), strict=True)
                )
                configuration = {"query": {"query": "", "destinationTable": destination}}
                body = {"jobReference": reference, "configuration": configuration}
                self._send(200, {**body, "status": {"state": "DONE"}})
            else:  # jobs.getQueryResults
                page = self._page(frame, query)
                body = {"jobReference": reference, "jobComplete": True}
                self._send(200, {**body, "schema": self._schema(frame), **page})
        else:
            self._error(404, "notFound", f"no such API: {url.path}")

    def do_POST(self) -> None:
        url = urlparse(self.path)
        self.server.calls.append(f"POST {url.path}")
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        match = re.fullmatch(r"/bigquery/v2/projects/(.+)/queries", url.path)
        if not match:
            self._error(404, "notFound", f"no such API: {url.path}")
            return
        key = self.server.queries.get(body["query"])
        if key is None:
            self._error(400, "invalidQuery", "Syntax error: Unexpected end of script at [1:14]")
            return
        job_id = f"job_{len(self.server.jobs)}"
        self.server.jobs[job_id] = key
        frame = self.server.tables[key]
        page = self._page(frame, {"maxResults": [str(body.get("maxResults", len(frame)))]})
        reference = {"projectId": match.group(1), "jobId": job_id, "location": "US"}
        response = {"jobReference": reference, "jobComplete": True, **page}
        self._send(200, {**response, "schema": self._schema(frame), "queryId": job_id})


@pytest.fixture
def fake_bigquery(monkeypatch, penguins) -> Iterator[FakeBigQuery]:
    """The fake, and BIGQUERY_EMULATOR_HOST pointing the client library at it."""
    server = FakeBigQuery()
    server.tables[f"{PROJECT}.zoo.penguins"] = penguins
    server.queries["SELECT * FROM zoo.penguins"] = f"{PROJECT}.zoo.penguins"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", server.url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    yield server
    server.shutdown()
    server.server_close()


def test_bigquery_table_ingests_like_csv(penguins_config, penguins, fake_bigquery, tmp_path):
    """bq://PROJECT.DATASET.TABLE through run_ingest: tables.get then tabledata.list in pages of
    data.batch_rows, over REST (no Storage API at an emulator); the same splits as CSV."""
    csv = tmp_path / "penguins.csv"
    penguins.to_csv(csv, index=False)
    reference = run_ingest(_with_data(penguins_config, source=str(csv)), tmp_path / "csv")
    source = f"bq://{PROJECT}.zoo.penguins"
    summary = run_ingest(
        _with_data(penguins_config, source=source, batch_rows=100), tmp_path / "bq"
    )
    assert summary["rows"] == reference["rows"]
    assert summary["columns"] == reference["columns"]
    _same_splits(tmp_path / "csv", tmp_path / "bq")
    table = f"/bigquery/v2/projects/{PROJECT}/datasets/zoo/tables/penguins"
    assert fake_bigquery.calls == [f"GET {table}"] + [f"GET {table}/data"] * 4


def test_bigquery_query_pages_through_results(fake_bigquery) -> None:
    """bq://PROJECT with data.query: jobs.query answers the first page, later pages come from
    the query's job; every batch is at most data.batch_rows rows."""
    data = DataConfig(
        source=f"bq://{PROJECT}",
        query="SELECT * FROM zoo.penguins",
        label="species",
        batch_rows=150,
    )
    batches = list(iter_source_batches(data, []))
    assert sum(b.num_rows for b in batches) == 344
    assert max(b.num_rows for b in batches) <= 150
    assert str(batches[0].schema.field("year").type) == "int64"
    first, *later = fake_bigquery.calls
    assert first == f"POST /bigquery/v2/projects/{PROJECT}/queries"
    assert later and all(
        re.match(rf"GET /bigquery/v2/projects/{PROJECT}/(jobs|queries)/", c) for c in later
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"source": f"bq://{PROJECT}.zoo.pengiuns"},
            r"data.source names a table that does not exist \(.*Not found: Table",
        ),
        (
            {"source": f"bq://{PROJECT}", "query": "SELECT * FROM"},
            r"BigQuery refused it \(.*Syntax error.*\); check data.query",
        ),
    ],
)
def test_bigquery_errors_name_the_table_or_query(fake_bigquery, fields, message) -> None:
    with pytest.raises(DatabaseError, match=message):
        list(bigquery_batches(DataConfig(label="species", **fields)))


def test_bigquery_without_credentials_fails_at_once(monkeypatch, tmp_path) -> None:
    """No emulator and no credentials: one clear error before any request (the client would
    otherwise retry for minutes)."""
    monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud login either
    monkeypatch.setenv("NO_GCE_CHECK", "true")  # and no metadata server
    data = DataConfig(source=f"bq://{PROJECT}.zoo.penguins", label="species")
    with pytest.raises(DatabaseError, match="no Google Cloud credentials on this machine"):
        bigquery_client(data)


@pytest.mark.parametrize("storage_api", [True, False])
def test_bigquery_uses_the_storage_api_with_credentials(monkeypatch, storage_api) -> None:
    """With credentials (faked where google.auth finds them) ingest reads over the Storage Read
    API unless data.bigquery.storage_api is false; both clients carry those credentials."""
    from unittest import mock

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery_storage

    monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
    credentials = AnonymousCredentials()
    data = DataConfig(
        source=f"bq://{PROJECT}.zoo.penguins",
        label="species",
        bigquery={"storage_api": storage_api},
    )
    with mock.patch("google.auth.default", return_value=(credentials, None)):
        client, storage = bigquery_client(data)
    assert client.project == PROJECT and client._credentials is credentials
    if storage_api:
        assert isinstance(storage, bigquery_storage.BigQueryReadClient)
        assert storage._transport._credentials is credentials
    else:
        assert storage is None


# ---------------------------------------------------------------------------------------------
# Beam


@pytest.mark.parametrize("method", ["DIRECT_READ", "EXPORT"])
def test_beam_bigquery_read_is_built_from_config(method) -> None:
    """What only a real project proves: that ReadFromBigQuery reads the data. Here: the table or
    query, the billing project, method, staging and batching the transform is built with, and
    that it expands into a pipeline offline (nothing is sent)."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    table = DataConfig(
        source="bq://my-project.zoo.penguins",
        label="species",
        bigquery={"beam_method": method, "gcs_location": "gs://bucket/bq"},
    )
    read = bigquery_read_transform(table)
    assert read.method == method and read.output_type == "PYTHON_DICT"
    assert read._kwargs == {"project": "my-project", "dataset": "zoo", "table": "penguins"}
    assert (read.gcs_location is not None) == (method == "EXPORT")

    query = DataConfig(
        source="bq://billing-project",
        query="SELECT * FROM `other.zoo.penguins`",
        label="species",
        bigquery={"beam_method": method, "temp_dataset": "billing-project.staging"},
    )
    read = bigquery_read_transform(query)
    assert read._kwargs["query"] == "SELECT * FROM `other.zoo.penguins`"
    assert read._kwargs["use_standard_sql"] and read._kwargs["project"] == "billing-project"
    staging = read._kwargs["temp_dataset"]
    assert (staging.projectId, staging.datasetId) == ("billing-project", "staging")

    options = PipelineOptions(["--project=billing-project", "--temp_location=gs://bucket/tmp"])
    pipeline = beam.Pipeline(options=options)
    batches = beam_bigquery_batches(pipeline, query)
    labels = [node.full_label for node in pipeline.transforms_stack[0].parts]
    assert labels == ["ReadFromBigQuery", "BatchRows", "ToRecordBatches"]
    assert batches.pipeline is pipeline


# ---------------------------------------------------------------------------------------------
# On Vertex


@pytest.mark.parametrize(
    ("fields", "refused"),
    [
        ({"source": "bq://my-project.zoo.penguins"}, False),
        ({"source": "bq://my-project", "query": "SELECT * FROM zoo.penguins"}, False),
        ({"source": "postgresql+pg8000://db.internal/zoo", "table": "penguins"}, False),
        ({"source": "sqlite:///data/zoo.db", "table": "penguins"}, True),
    ],
)
def test_submit_accepts_database_sources_the_steps_can_reach(penguins_config, fields, refused):
    """BigQuery and a database server are read from the steps on Vertex; SQLite is a file here."""
    from mlops.config import ConfigError
    from mlops.vertex_jobs import check_cloud_inputs

    config = _with_data(penguins_config, **fields)
    if refused:
        with pytest.raises(ConfigError, match=r"data.source is 'sqlite:///data/zoo.db', a path"):
            check_cloud_inputs(config, "training", {})
    else:
        check_cloud_inputs(config, "training", {})


def test_monitoring_baseline_is_a_bigquery_table_not_a_query(penguins_config, tmp_path) -> None:
    """Vertex Model Monitoring reads a bq:// table as training data; a query's billing project
    is no table, so the ingested train split is written for it instead."""
    from components.register import monitoring_training_data

    data = tmp_path / "data"
    data.mkdir()
    pd.DataFrame({"species": ["Adelie"], "island": ["Dream"]}).to_parquet(data / "train.parquet")
    table = _with_data(penguins_config, source="bq://my-project.zoo.penguins")
    assert monitoring_training_data(table, data, tmp_path / "a", "gs://b/a") == table.data.source
    query = _with_data(penguins_config, source="bq://my-project", query="SELECT * FROM zoo.t")
    assert monitoring_training_data(query, data, tmp_path / "b", "gs://b/b") == "gs://b/b/train.csv"
    assert (tmp_path / "b" / "train.csv").read_text().startswith("species,island")
