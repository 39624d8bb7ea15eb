"""File helpers: URIs through Beam's filesystems (local, gs://), directory outputs that are never
seen half-written (atomic rename locally; a completion marker written last on Cloud Storage, by
the /gcs/ mount or by gs:// URI), and atomic file writes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def open_uri(uri: str, mode: str = "rb") -> IO[bytes]:
    """Open a local path or a URI that Beam's filesystems understand (gs://, ...)."""
    if "://" not in uri:
        return open(uri, mode)  # noqa: SIM115 - returned to the caller's context manager
    from apache_beam.io.filesystems import FileSystems  # heavy import, only for remote URIs

    return FileSystems.open(uri) if "r" in mode else FileSystems.create(uri)


def uri_exists(uri: str) -> bool:
    if "://" not in uri:
        return Path(uri).exists()
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.exists(uri)


def is_remote(location: str | Path) -> bool:
    """Whether `location` is a URI (gs://...) rather than a path of this machine's filesystem
    (which includes the /gcs/ FUSE mount)."""
    return "://" in str(location)


def join_uri(base: str | Path, *parts: str) -> str:
    """`base/part/...` for a local path or a URI (`Path` would fold gs:// into gs:/)."""
    if is_remote(base):
        return "/".join([str(base).rstrip("/"), *(part.strip("/") for part in parts)])
    return str(Path(base, *parts))


def read_uri_bytes(uri: str | Path) -> bytes:
    with open_uri(str(uri)) as handle:
        return handle.read()


def write_uri_text(uri: str | Path, text: str) -> None:
    """Write a text file whole: locally through a temporary file and a rename; at a URI as one
    object, which Cloud Storage shows only once its upload completes."""
    if not is_remote(uri):
        write_text_atomic(uri, text)
        return
    with open_uri(str(uri), "wb") as handle:
        handle.write(text.encode())


def remove_uri_tree(uri: str) -> None:
    """Delete every object under the prefix `uri/` (nothing there is fine)."""
    from apache_beam.io.filesystems import FileSystems

    prefix = uri.rstrip("/") + "/"
    if FileSystems.match([prefix + "**"])[0].metadata_list:
        FileSystems.delete([prefix])


def _umask() -> int:
    """The process umask, read without changing it where Linux tells it (threads may be writing)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def usual_mode(directory: bool = False) -> int:
    """The mode `open()`/`mkdir()` would give under the current umask (tempfile's are private:
    0o700 and 0o600). Atomic writes use it, so an artifact is as readable as a plainly written
    one: for example a model directory served by the image's non-root user from a bind mount."""
    return (0o777 if directory else 0o666) & ~_umask()


# Cloud Storage as KFP mounts it in a step on Vertex AI (Cloud Storage FUSE): /gcs/<bucket>/...
GCS_FUSE_ROOT = "/gcs/"
# Written last into a directory output on Cloud Storage: without it the directory is incomplete.
COMPLETE_MARKER = "_SUCCESS"


class IncompleteOutputError(RuntimeError):
    """A directory output on Cloud Storage has no completion marker: its writer failed or is
    still writing."""


def on_cloud_storage(path: str | Path) -> bool:
    """Whether `path` is on Cloud Storage (a gs:// URI or the /gcs/ FUSE mount), where a
    directory cannot be renamed atomically."""
    text = str(path)
    return text.startswith(("gs://", GCS_FUSE_ROOT))


def to_beam_uri(path: str | Path) -> str:
    """`path` as Beam workers elsewhere (Dataflow) can open it: /gcs/<bucket>/x -> gs://<bucket>/x;
    anything else unchanged."""
    text = str(path)
    if text.startswith(GCS_FUSE_ROOT):
        return "gs://" + text[len(GCS_FUSE_ROOT) :]
    return text


def is_complete(directory: str | Path, cloud: bool | None = None) -> bool:
    """Whether a directory output is whole: on Cloud Storage it needs its completion marker;
    locally it was renamed into place whole, so existing is enough."""
    directory = Path(directory)
    if cloud if cloud is not None else on_cloud_storage(directory):
        return (directory / COMPLETE_MARKER).is_file()
    return directory.is_dir()


def require_complete_uri(directory: str | Path) -> str:
    """`require_complete` for a local path or a URI: the directory as a string, or
    IncompleteOutputError. A gs:// directory is whole when its completion marker exists."""
    if not is_remote(directory):
        return str(require_complete(directory))
    if not uri_exists(join_uri(directory, COMPLETE_MARKER)):
        raise IncompleteOutputError(
            f"{directory} is incomplete or absent: no {COMPLETE_MARKER} marker (its writer "
            "failed, is still writing, or never ran)"
        )
    return str(directory)


def require_complete(directory: str | Path, cloud: bool | None = None) -> Path:
    """`directory`, or IncompleteOutputError if it is on Cloud Storage without its completion
    marker. (A local directory output is whole whenever it exists; its reader reports a missing
    one.)"""
    if (cloud if cloud is not None else on_cloud_storage(directory)) and not is_complete(
        directory, True
    ):
        raise IncompleteOutputError(
            f"{directory} is incomplete: no {COMPLETE_MARKER} marker (its writer failed or is "
            "still writing)"
            if Path(directory).is_dir()
            else f"{directory} does not exist"
        )
    return Path(directory)


@contextlib.contextmanager
def atomic_dir(final: str | Path, cloud: bool | None = None) -> Iterator[Path]:
    """Yield the directory to write a directory output into; it is only ever seen whole.

    Locally: a temporary directory beside `final`, moved into place only if the block succeeds,
    so a failure leaves `final` as it was (or absent). On Cloud Storage (`cloud`, by default
    `on_cloud_storage(final)`), which cannot rename a directory atomically: `final` itself,
    emptied first, with `COMPLETE_MARKER` written last when the block succeeds; readers
    (`require_complete`) treat it as incomplete without the marker.
    """
    if cloud if cloud is not None else on_cloud_storage(final):
        with _marked_dir(Path(final)) as out:
            yield out
        return
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    os.chmod(tmp, usual_mode(directory=True))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        if final.is_dir() and not any(final.iterdir()):
            final.rmdir()  # KFP creates output directories up front
        else:
            backup = final.with_name(f".{final.name}.old-{os.getpid()}")
            final.rename(backup)
            tmp.rename(final)
            shutil.rmtree(backup, ignore_errors=True)
            return
    tmp.rename(final)


@contextlib.contextmanager
def _marked_dir(final: Path) -> Iterator[Path]:
    final.mkdir(parents=True, exist_ok=True)
    # A retried step: its earlier attempt's marker goes first, so no reader takes the directory
    # for complete while it is rewritten; then whatever that attempt left.
    (final / COMPLETE_MARKER).unlink(missing_ok=True)
    for child in list(final.iterdir()):
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    yield final  # a failure leaves no marker: the directory stays incomplete
    (final / COMPLETE_MARKER).write_text("")


@contextlib.contextmanager
def atomic_uri_dir(final: str | Path) -> Iterator[str]:
    """`atomic_dir` for a local path, a /gcs/ path or a gs:// URI, yielding where to write as a
    string. At a URI (no directory rename there, and no local mount to write through) the
    marker protocol runs through Beam's filesystems: the earlier marker goes first, then what an
    earlier attempt left, and `COMPLETE_MARKER` is written last when the block succeeds."""
    if not is_remote(final):
        with atomic_dir(final) as out:
            yield str(out)
        return
    from apache_beam.io.filesystems import FileSystems

    final = str(final).rstrip("/")
    marker = join_uri(final, COMPLETE_MARKER)
    if FileSystems.exists(marker):
        FileSystems.delete([marker])
    remove_uri_tree(final)
    yield final  # a failure leaves no marker: the directory stays incomplete
    write_uri_text(marker, "")


def write_text_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        os.fchmod(fd, usual_mode())
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def json_value(value: Any) -> Any:
    """A scalar as JSON can hold it: NaN (a missing number) as null, numpy scalars as Python."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


_DONE = object()


def read_ahead(items: Iterator[Any], depth: int = 4) -> Iterator[Any]:
    """`items`, produced by a background thread up to `depth` ahead of the consumer, so reading
    and parsing (pyarrow's readers let go of the GIL) overlap the consumer's work on the other
    core. An exception in the producer is raised here, where it would have been; a consumer
    that stops early (closes the generator) stops the producer at its next item."""
    import queue
    import threading

    handoff: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as exc:  # handed to the consumer
            put((None, exc))

    producer = threading.Thread(target=produce, name="read-ahead", daemon=True)
    producer.start()
    try:
        while True:
            item, error = handoff.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        producer.join()
