"""Atomic writes give artifacts the usual permissions, not tempfile's private ones."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mlops.io import atomic_dir, usual_mode, write_json_atomic, write_text_atomic


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
