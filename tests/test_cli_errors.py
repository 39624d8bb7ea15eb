"""The CLI on bad input, for real (a subprocess per case): one clear message, no traceback on the
terminal, the full output in the run's log and a run.json whatever happened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "_KFP_RUNTIME"}
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _config(tmp_path: Path, replace: tuple[str, str], root: Path | None = None) -> Path:
    text = (REPO / "configs" / "penguins_tfx.yaml").read_text().replace(*replace)
    text += f"\nlocal: {{root: {root or tmp_path / 'root'}}}\n"
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_a_failing_step_prints_one_line_and_keeps_the_traceback_in_the_log(tmp_path: Path) -> None:
    config = _config(
        tmp_path, ("data/penguins_tfx/penguins_processed.csv", str(tmp_path / "missing.csv"))
    )
    result = _cli("run", "--config", str(config))
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert "Traceback" not in out and "\x1b[" not in out
    assert f"IngestError: data.source '{tmp_path / 'missing.csv'}' does not exist" in out
    (run,) = (tmp_path / "root" / "runs").iterdir()
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["steps"]["ingest"]["status"] == "FAILED"
    assert "\x1b[" not in json.dumps(manifest)
    assert "Traceback" in (run / "pipeline.log").read_text()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_local_root_is_one_message(tmp_path: Path) -> None:
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o500)
    result = _cli("run", "--config", str(_config(tmp_path, ("", ""), root=root)))
    assert result.returncode == 2 and "cannot create the run directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_local_root_that_is_a_file_is_one_message(tmp_path: Path) -> None:
    root = tmp_path / "a-file"
    root.write_text("not a folder")
    result = _cli("run", "--config", str(_config(tmp_path, ("", ""), root=root)))
    assert result.returncode == 2
    assert "cannot create the run directory" in result.stderr and "local.root" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_config_that_is_not_utf8_is_one_message(tmp_path: Path) -> None:
    config = tmp_path / "latin1.yaml"
    config.write_bytes(
        (REPO / "configs" / "penguins.yaml").read_bytes() + "# caf\xe9\n".encode("latin-1")
    )
    result = _cli("run", "--config", str(config))
    assert result.returncode == 2
    assert "not UTF-8" in result.stderr and "Traceback" not in result.stderr
