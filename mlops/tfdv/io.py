"""Read and write TFDV's files: `FeatureStats.pb`, `schema.pbtxt`, `SchemaDiff.pb`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from google.protobuf import message as pb_message
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from mlops.io import usual_mode

# --------------------------------------------------------------------------- #
# File IO
# --------------------------------------------------------------------------- #


def _atomic_write(path: str | os.PathLike[str], data: bytes) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, usual_mode())  # readable like any file (the image's user reads models)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _read_binary(path: str | os.PathLike[str], message: pb_message.Message):
    data = Path(path).read_bytes()
    try:
        message.ParseFromString(data)
    except pb_message.DecodeError as exc:
        raise ValueError(f"{path}: not a binary {message.DESCRIPTOR.full_name}: {exc}") from exc
    return message


def write_statistics(
    stats: statistics_pb2.DatasetFeatureStatisticsList, path: str | os.PathLike[str]
) -> Path:
    """Atomically write binary statistics (TFX names the file ``FeatureStats.pb``)."""
    return _atomic_write(path, stats.SerializeToString(deterministic=True))


def read_statistics(path: str | os.PathLike[str]) -> statistics_pb2.DatasetFeatureStatisticsList:
    """Read a binary ``DatasetFeatureStatisticsList``."""
    return _read_binary(path, statistics_pb2.DatasetFeatureStatisticsList())


def write_anomalies(anomalies: anomalies_pb2.Anomalies, path: str | os.PathLike[str]) -> Path:
    """Atomically write binary anomalies (TFX names the file ``SchemaDiff.pb``)."""
    return _atomic_write(path, anomalies.SerializeToString(deterministic=True))


def read_anomalies(path: str | os.PathLike[str]) -> anomalies_pb2.Anomalies:
    """Read a binary ``Anomalies`` proto."""
    return _read_binary(path, anomalies_pb2.Anomalies())


def load_schema(path: str | os.PathLike[str]) -> schema_pb2.Schema:
    """Load a text-format ``Schema`` (a local path or a gs:// URI); a malformed file raises
    ValueError naming it."""
    from mlops.io import open_uri

    try:
        with open_uri(os.fspath(path)) as handle:
            text = handle.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"cannot parse schema {path}: not UTF-8 text ({exc})") from exc
    try:
        return text_format.Parse(text, schema_pb2.Schema())
    except text_format.ParseError as exc:
        raise ValueError(f"cannot parse schema {path}: {exc}") from exc


def write_schema(schema: schema_pb2.Schema, path: str | os.PathLike[str]) -> Path:
    """Atomically write a text-format ``Schema``."""
    return _atomic_write(path, text_format.MessageToString(schema).encode("utf-8"))
