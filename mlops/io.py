"""File helpers: URIs through Beam's filesystems (local, gs://) and atomic writes."""

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


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside `final`; move it into place only if the block succeeds.

    A failure leaves `final` as it was (or absent), never half-written.
    """
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


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())
