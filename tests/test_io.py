"""Directory outputs are never seen half-written: locally they are renamed into place whole; on
Cloud Storage (no atomic directory rename) they are written in place with a completion marker
written last, and readers refuse them without it.

Atomic writes also give artifacts the usual permissions, not tempfile's private ones.

Cloud Storage is simulated by a directory whose path starts with /gcs/ only where the check is
the path itself (`on_cloud_storage`); the writing and reading behaviour is exercised on a real
directory by passing `cloud=True`, the value `on_cloud_storage` gives for /gcs/ paths."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mlops.artifacts import read_split
from mlops.io import (
    COMPLETE_MARKER,
    IncompleteOutputError,
    atomic_dir,
    is_complete,
    on_cloud_storage,
    require_complete,
    to_beam_uri,
    usual_mode,
    write_json_atomic,
    write_text_atomic,
)


def test_cloud_storage_paths_are_recognised() -> None:
    assert on_cloud_storage("/gcs/bucket/run/model")
    assert on_cloud_storage("gs://bucket/run/model")
    assert not on_cloud_storage("/tmp/gcs/bucket")
    assert not on_cloud_storage(Path("relative/gcs"))
    assert to_beam_uri("/gcs/bucket/run/model") == "gs://bucket/run/model"
    assert to_beam_uri(Path("/tmp/x")) == "/tmp/x"
    assert to_beam_uri("gs://bucket/x") == "gs://bucket/x"


def test_local_output_is_renamed_into_place_whole(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with atomic_dir(final) as out:
        assert out != final and not final.exists()  # written beside, not in place
        (out / "a.txt").write_text("a")
    assert (final / "a.txt").read_text() == "a"
    assert not (final / COMPLETE_MARKER).exists()  # the rename is the completion
    with pytest.raises(RuntimeError), atomic_dir(final) as out:
        (out / "b.txt").write_text("half")
        raise RuntimeError("step failed")
    assert sorted(p.name for p in final.iterdir()) == ["a.txt"]  # the old output, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary left behind


def test_cloud_output_is_written_in_place_with_the_marker_last(tmp_path: Path) -> None:
    final = tmp_path / "gcs" / "bucket" / "model"
    with atomic_dir(final, cloud=True) as out:
        assert out == final  # no rename on Cloud Storage: straight into the final directory
        (out / "saved_model.pb").write_text("model")
        (out / "variables").mkdir()
        # While the step writes, readers see an incomplete directory.
        assert not is_complete(final, cloud=True)
        with pytest.raises(IncompleteOutputError, match=COMPLETE_MARKER):
            require_complete(final, cloud=True)
    assert (final / COMPLETE_MARKER).is_file()
    assert is_complete(final, cloud=True)
    assert require_complete(final, cloud=True) == final


def test_a_failed_cloud_write_stays_incomplete_and_a_retry_starts_clean(tmp_path: Path) -> None:
    final = tmp_path / "gcs" / "bucket" / "dataset"
    with atomic_dir(final, cloud=True) as out:
        (out / "old.parquet").write_text("first attempt")
    with pytest.raises(RuntimeError), atomic_dir(final, cloud=True) as out:
        assert not (out / COMPLETE_MARKER).exists()  # the old marker goes first
        assert not (out / "old.parquet").exists()  # then the old attempt's files
        (out / "half.parquet").write_text("half")
        raise RuntimeError("step failed")
    assert not is_complete(final, cloud=True)
    with atomic_dir(final, cloud=True) as out:
        (out / "new.parquet").write_text("whole")
    assert sorted(p.name for p in final.iterdir()) == [COMPLETE_MARKER, "new.parquet"]


def test_readers_refuse_a_dataset_on_cloud_storage_without_the_marker(monkeypatch) -> None:
    import mlops.io

    checked = []

    def marker_missing(directory, cloud=None):  # the FUSE mount is not here: answer for it
        checked.append(str(directory))
        return False

    monkeypatch.setattr(mlops.io, "is_complete", marker_missing)
    with pytest.raises(IncompleteOutputError, match="/gcs/bucket/run/dataset"):
        read_split("/gcs/bucket/run/dataset", "train")
    assert checked == ["/gcs/bucket/run/dataset"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_atomic_writes_honour_the_umask_like_open_and_mkdir(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        with atomic_dir(tmp_path / "model") as tmp:
            (tmp / "saved_model.pb").write_bytes(b"x")
        write_text_atomic(tmp_path / "report.html", "<html/>")
        write_json_atomic(tmp_path / "model" / "info.json", {"a": 1})
        (tmp_path / "plain").mkdir()
        (tmp_path / "plain.txt").write_text("x")
        assert usual_mode(directory=True) == 0o777 & ~umask
    finally:
        os.umask(old)
    assert _mode(tmp_path / "model") == _mode(tmp_path / "plain") == 0o777 & ~umask
    for name in ("report.html", "model/info.json", "model/saved_model.pb"):
        assert _mode(tmp_path / name) == _mode(tmp_path / "plain.txt") == 0o666 & ~umask, name


def test_read_ahead_keeps_order_raises_where_the_error_was_and_stops_when_closed() -> None:
    import threading

    from mlops.io import read_ahead

    assert list(read_ahead(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield from range(5)
        raise ValueError("bad row 6")

    seen = []
    with pytest.raises(ValueError, match="bad row 6"):
        for item in read_ahead(failing(), depth=2):
            seen.append(item)
    assert seen == [0, 1, 2, 3, 4]

    produced = []

    def endless():
        number = 0
        while True:
            produced.append(number)
            yield number
            number += 1

    items = read_ahead(endless(), depth=2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()  # the consumer stops early: so does the producer, and its thread ends
    assert len(produced) <= 3 + 2 + 2
    assert not [t for t in threading.enumerate() if t.name == "read-ahead"]
