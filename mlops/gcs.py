"""Small state files that must outlive a container: read and written in Cloud Storage for gs://
URIs (google-cloud-storage, one object per file), as local files otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# How to give this machine Google Cloud credentials, for every "no credentials" message.
LOGIN_HINT = (
    "`gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS to a "
    "service-account key file)"
)


def is_gcs(uri: str | Path) -> bool:
    return str(uri).startswith("gs://")


def _blob(uri: str, client: Any = None) -> Any:
    from google.cloud import storage

    return storage.Blob.from_string(uri, client=client or storage.Client())


def read_bytes(uri: str | Path, client: Any = None) -> bytes | None:
    """The file's content, or None when it does not exist."""
    if not is_gcs(uri):
        path = Path(uri)
        return path.read_bytes() if path.is_file() else None
    from google.api_core.exceptions import NotFound

    try:
        return _blob(str(uri), client).download_as_bytes()
    except NotFound:
        return None


def write_bytes(
    uri: str | Path, data: bytes, content_type: str = "application/json", client: Any = None
) -> None:
    """Replace the file (a Cloud Storage object upload is atomic; a local file is written beside
    and renamed)."""
    if is_gcs(uri):
        _blob(str(uri), client).upload_from_string(data, content_type=content_type)
        return
    from mlops.io import write_text_atomic

    write_text_atomic(uri, data.decode())
