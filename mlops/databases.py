"""Database sources for ingest: BigQuery (`bq://PROJECT.DATASET.TABLE`, or `bq://PROJECT` with
`data.query`) and SQL databases through SQLAlchemy URLs (`sqlite:///rows.db`, `postgresql://...`)
with `data.table` or `data.query`.

Both are read as Arrow record batches of raw values, so memory is bounded by a batch: BigQuery
through the google-cloud-bigquery client (one Storage Read API stream, whose batches the service
sizes, when `data.bigquery.storage_api`; else result pages of `data.batch_rows` over REST), SQL
databases through a server-side cursor (`yield_per`, `data.batch_rows` rows at a time). Columns keep the database's types where a column of a batch has
one (numbers stay numbers); text is treated as CSV cells are: empty text or one of
`data.na_values` is missing. `beam_bigquery_batches` reads BigQuery inside a Beam pipeline
(`ReadFromBigQuery`) for the Beam ingest on Dataflow, which reads a SQL database with
`iter_database_batches` on one worker.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from mlops.config import DataConfig, bigquery_parts, database_kind, local_path
from mlops.tabular import IngestError

if TYPE_CHECKING:
    import apache_beam as beam
    from google.cloud import bigquery
    from sqlalchemy.engine import URL

# Set by the BigQuery client library itself to reach an emulator (or a local fake): no
# credentials are needed then, and results come over REST.
BIGQUERY_EMULATOR_HOST = "BIGQUERY_EMULATOR_HOST"
# What to install for a database driver module SQLAlchemy could not import.
DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "MySQLdb": "mysqlclient",
    "pyodbc": "pyodbc",
    "oracledb": "oracledb",
}


class DatabaseError(IngestError):
    """A database source cannot be read; the message names the source, table or query."""


def describe(data: DataConfig) -> str:
    """The source as messages name it: URL without its password, and the table or query."""
    source = data.source
    if database_kind(source) == "sql":
        source = _render(_url(source))
    if data.table is not None:
        return f"{source} table {data.table!r}"
    if data.query is not None:
        query = " ".join(data.query.split())
        return f"{source} query {query[:80] + ('...' if len(query) > 80 else '')!r}"
    return source


def iter_database_batches(data: DataConfig) -> Iterator[pa.RecordBatch]:
    """The configured database source as record batches of raw values (see the module)."""
    if database_kind(data.source) == "bigquery":
        yield from bigquery_batches(data)
    else:
        yield from sql_batches(data)


# ---------------------------------------------------------------------------------------------
# Values to Arrow


def _cell_text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    return str(value)


def column_array(values: Sequence[Any], na_values: frozenset[str]) -> pa.Array:
    """One column of a batch of rows: its Arrow type where every value has one (ints, floats,
    decimals, booleans, dates), else text as a CSV cell would hold it; empty text or one of
    `na_values` is null, as in a CSV. A column with no value at all is null text."""
    try:
        array = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        # mixed types (SQLite stores what it is given): every value as text
        array = pa.array([None if v is None else _cell_text(v) for v in values], pa.string())
    if pa.types.is_null(array.type):
        return pa.nulls(len(values), pa.string())
    return _text_nulls(array, na_values)


def _text_nulls(array: pa.Array, na_values: frozenset[str]) -> pa.Array:
    """Text with null where it is empty or one of na_values (other types as they are)."""
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        return array
    import pyarrow.compute as pc

    missing = pa.array(["", *sorted(na_values)], array.type)
    return pc.if_else(pc.is_in(array, value_set=missing), pa.scalar(None, array.type), array)


def rows_batch(
    names: Sequence[str], rows: Sequence[Sequence[Any]], na_values: Sequence[str]
) -> pa.RecordBatch:
    """A record batch from rows (tuples in `names` order)."""
    missing = frozenset(na_values)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = [column_array(values, missing) for values in columns]
    return pa.RecordBatch.from_arrays(arrays, names=list(names))


def _check_names(names: Sequence[str], where: str) -> None:
    """Every result column needs a distinct name (a CSV header gets the same check)."""
    from collections import Counter

    unnamed = [i + 1 for i, name in enumerate(names) if not str(name).strip()]
    duplicates = sorted(str(n) for n, count in Counter(map(str, names)).items() if count > 1)
    if unnamed or duplicates:
        problem = f"column(s) {unnamed} have no name" if unnamed else f"names {duplicates} twice"
        raise DatabaseError(
            f"{where}: the result {problem}; give every column a distinct name (SELECT ... AS name)"
        )


def flat(batch: pa.RecordBatch, where: str) -> pa.RecordBatch:
    """The batch, if every column holds one value per row (ingest types scalars, as a CSV has)."""
    nested = [field.name for field in batch.schema if pa.types.is_nested(field.type)]
    if nested:
        raise DatabaseError(
            f"{where}: columns {nested} hold arrays or records; select scalar columns instead "
            "(e.g. UNNEST, or record.field AS name, in data.query)"
        )
    return batch


def text_nulls(batch: pa.RecordBatch, na_values: Sequence[str]) -> pa.RecordBatch:
    """A batch whose text columns hold null where the text is empty or one of na_values."""
    missing = frozenset(na_values)
    arrays = [_text_nulls(array, missing) for array in batch.columns]
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


# ---------------------------------------------------------------------------------------------
# SQL databases (SQLAlchemy)


def _url(source: str) -> URL:
    """The SQLAlchemy URL; a relative SQLite path is relative to the repo root, as other
    relative paths in a config are."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(source)
    except ArgumentError as exc:
        raise DatabaseError(
            f"data.source {source!r} is not a SQLAlchemy URL ({exc}); write it as "
            "dialect+driver://user:password@host/database, e.g. sqlite:///data/rows.db"
        ) from exc
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        url = url.set(database=local_path(url.database))
    return url


def _render(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _engine(data: DataConfig):
    import sqlalchemy
    from sqlalchemy.exc import NoSuchModuleError

    url = _url(data.source)
    backend = url.get_backend_name()
    if backend == "sqlite":
        from pathlib import Path

        database = url.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise DatabaseError(
                f"data.source {data.source!r} names no SQLite file; write sqlite:///path/to.db "
                "(relative to the repo root) or sqlite:////absolute/path.db"
            )
        if not Path(database).is_file():  # connecting would create an empty database
            raise DatabaseError(f"data.source {data.source!r}: no SQLite file at {database}")
    if data.password_env is not None:
        import os

        password = os.environ.get(data.password_env)
        if password is None:
            raise DatabaseError(
                f"data.source {_render(url)!r}: data.password_env names the environment "
                f"variable {data.password_env!r}, which is not set; export it with the "
                "database password before running"
            )
        url = url.set(password=password)
    try:
        return sqlalchemy.create_engine(url)
    except NoSuchModuleError as exc:
        raise DatabaseError(
            f"data.source {_render(url)!r}: SQLAlchemy has no dialect or driver "
            f"{url.drivername!r} ({exc}); use one of sqlite, postgresql, mysql, mariadb, mssql, "
            "oracle (with +driver to pick a driver)"
        ) from exc
    except ImportError as exc:
        module = exc.name or str(exc)
        installed = " (PyMySQL is installed: mysql+pymysql://...)" if backend == "mysql" else ""
        raise DatabaseError(
            f"data.source {_render(url)!r}: the database driver {module!r} is not installed; "
            f"install it (pip install {DRIVER_PACKAGES.get(module, module)}) or name an "
            f"installed driver in the URL ({backend}+DRIVER://...){installed}"
        ) from exc


def _statement(data: DataConfig):
    import sqlalchemy

    if data.query is not None:
        return sqlalchemy.text(data.query)
    schema, _, name = data.table.rpartition(".")  # type: ignore[union-attr]
    table = sqlalchemy.table(name, schema=schema or None)
    return sqlalchemy.select(sqlalchemy.literal_column("*")).select_from(table)


def sql_batches(data: DataConfig) -> Iterator[pa.RecordBatch]:
    """Rows of data.table or data.query streamed from the database (a server-side cursor where
    the driver has one), data.batch_rows at a time."""
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    engine = _engine(data)
    where = describe(data)
    try:
        try:
            connecting = engine.connect()
        except DBAPIError as exc:
            message = str(getattr(exc, "orig", None) or exc).strip()
            raise DatabaseError(
                f"data.source {_render(engine.url)!r}: cannot connect ({message}); check the "
                "host, port, database, user and that the database accepts connections from here"
            ) from exc
        with connecting as connection:
            options = connection.execution_options(stream_results=True, yield_per=data.batch_rows)
            try:
                result = options.execute(_statement(data))
            except DBAPIError as exc:
                raise DatabaseError(_sql_error(data, where, exc)) from exc
            if not result.returns_rows:
                raise DatabaseError(f"{where}: returns no rows; data.query must be a SELECT")
            names = list(result.keys())
            _check_names(names, where)
            for rows in result.partitions():
                yield flat(rows_batch(names, rows, data.na_values), where)
    except DatabaseError:
        raise
    except DBAPIError as exc:
        raise DatabaseError(_sql_error(data, where, exc)) from exc
    except SQLAlchemyError as exc:
        raise DatabaseError(f"{where}: {exc}") from exc
    finally:
        engine.dispose()


def _sql_error(data: DataConfig, where: str, exc: Exception) -> str:
    message = str(getattr(exc, "orig", None) or exc).strip()
    if data.table is None:
        return f"{where}: the database refused it: {message}; check data.query against the database"
    hint = "check data.table and that the user may read it"
    schema, _, name = data.table.rpartition(".")
    tables = _tables(data)
    if tables is not None and name not in tables:
        shown = ", ".join(tables[:20]) + (", ..." if len(tables) > 20 else "")
        hint = f"check data.table (tables{f' in {schema}' if schema else ''}: {shown or 'none'})"
    return f"{where}: the database refused it: {message}; {hint}"


def _tables(data: DataConfig) -> list[str] | None:
    """The tables of data.table's schema (the default one without a dot), None if they cannot
    be listed (the error being reported says more)."""
    import sqlalchemy
    from sqlalchemy.exc import SQLAlchemyError

    schema = data.table.rpartition(".")[0] if data.table else ""  # type: ignore[union-attr]
    engine = _engine(data)
    try:
        return sorted(sqlalchemy.inspect(engine).get_table_names(schema=schema or None))
    except SQLAlchemyError:
        return None
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------------
# BigQuery


def _credentials(source: str):
    """Default credentials, or one clear error now (the client would retry for minutes)."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    from mlops.gcs import LOGIN_HINT

    try:
        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
    except DefaultCredentialsError as exc:
        raise DatabaseError(
            f"cannot read {source}: no Google Cloud credentials on this machine. Run "
            f"{LOGIN_HINT}, or export the data to a file and point data.source at it"
        ) from exc
    return credentials


def bigquery_client(data: DataConfig) -> tuple[bigquery.Client, Any]:
    """(BigQuery client billed to the source's project, Storage Read client or None). With
    BIGQUERY_EMULATOR_HOST set (read by the client library too) the client talks to that host
    with anonymous credentials and over REST."""
    from google.cloud import bigquery

    project, _, _ = bigquery_parts(data.source)
    emulator = os.environ.get(BIGQUERY_EMULATOR_HOST)
    if emulator:
        from google.auth.credentials import AnonymousCredentials

        client = bigquery.Client(
            project=project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": emulator},
        )
        return client, None
    credentials = _credentials(data.source)
    client = bigquery.Client(project=project, credentials=credentials)
    storage = None
    if data.bigquery.storage_api:
        from google.cloud import bigquery_storage

        storage = bigquery_storage.BigQueryReadClient(credentials=credentials)
    return client, storage


def bigquery_batches(
    data: DataConfig, client: bigquery.Client | None = None, storage: Any = None
) -> Iterator[pa.RecordBatch]:
    """The table (list_rows) or the query's result (query_and_wait) as record batches: pages
    of data.batch_rows rows over REST, or Storage Read API streams when `storage` is given.
    `client`/`storage` default to `bigquery_client(data)`."""
    from google.api_core import exceptions as api

    if client is None:
        client, storage = bigquery_client(data)
    project, dataset, table = bigquery_parts(data.source)
    where = describe(data)
    try:
        if data.query is not None:
            rows = client.query_and_wait(data.query, project=project, page_size=data.batch_rows)
        else:
            from google.cloud.bigquery import DatasetReference, TableReference

            reference = TableReference(DatasetReference(project, dataset), table)
            rows = client.list_rows(reference, page_size=data.batch_rows)
        names = [field.name for field in rows.schema]
        _check_names(names, where)
        # One Storage API stream: rows in the table's order, memory bounded by its batches.
        for batch in rows.to_arrow_iterable(bqstorage_client=storage, max_stream_count=1):
            if batch.num_rows:
                yield flat(text_nulls(batch, data.na_values), where)
    except api.NotFound as exc:
        what = "data.query names a table or dataset" if data.query else "data.source names a table"
        raise DatabaseError(f"{where}: {what} that does not exist ({exc.message})") from exc
    except api.Forbidden as exc:
        raise DatabaseError(
            f"{where}: permission denied ({exc.message}); the credentials need BigQuery Data "
            "Viewer on the data and BigQuery Job User (and Read Session User for the Storage "
            "API, or set data.bigquery.storage_api: false) on the project"
        ) from exc
    except api.BadRequest as exc:
        field = "data.query" if data.query else "data.source"
        raise DatabaseError(f"{where}: BigQuery refused it ({exc.message}); check {field}") from exc
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------
# Beam


def _beam_rows_batches(
    rows: list[dict[str, Any]], na_values: Sequence[str], where: str
) -> pa.RecordBatch:
    names = list(rows[0])
    batch = rows_batch(names, [tuple(row.get(name) for name in names) for row in rows], na_values)
    return flat(batch, where)


def bigquery_read_transform(data: DataConfig):
    """`beam.io.ReadFromBigQuery` for the configured table or query (rows as Python dicts)."""
    from apache_beam.io.gcp.bigquery import ReadFromBigQuery
    from apache_beam.io.gcp.internal.clients import bigquery as beam_bigquery

    project, dataset, table = bigquery_parts(data.source)
    options = data.bigquery
    kwargs: dict[str, Any] = {"method": options.beam_method, "output_type": "PYTHON_DICT"}
    if options.beam_method == "EXPORT" and options.gcs_location:
        kwargs["gcs_location"] = options.gcs_location
    if data.query is not None:
        kwargs.update(query=data.query, use_standard_sql=True, project=project)
        if options.temp_dataset:
            temp_project, temp_dataset = options.temp_dataset.rsplit(".", 1)
            kwargs["temp_dataset"] = beam_bigquery.DatasetReference(
                projectId=temp_project, datasetId=temp_dataset
            )
    else:
        kwargs.update(project=project, dataset=dataset, table=table)
    return ReadFromBigQuery(**kwargs)


def beam_bigquery_batches(pipeline: beam.Pipeline, data: DataConfig) -> beam.PCollection:
    """The configured BigQuery table or query in a Beam pipeline, as record batches of raw values
    (as `iter_database_batches` gives), in no particular order: `ReadFromBigQuery`
    (data.bigquery.beam_method; EXPORT stages Avro files in data.bigquery.gcs_location or the
    pipeline's --temp_location), rows batched up to data.batch_rows. The Beam ingest
    (components/ingest_beam.py) numbers them; a SQL database is read there in order, by one
    worker, with `iter_database_batches`."""
    import apache_beam as beam

    na_values = list(data.na_values)
    return (
        pipeline
        | "ReadFromBigQuery" >> bigquery_read_transform(data)
        | "BatchRows" >> beam.BatchElements(min_batch_size=1, max_batch_size=data.batch_rows)
        | "ToRecordBatches" >> beam.Map(_beam_rows_batches, na_values, describe(data))
    )
