"""The CLI on bad input, for real (a subprocess per case): one clear message, no traceback on the
terminal, the full output in the run's log and a run.json whatever happened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "_KFP_RUNTIME"}
    env["TMPDIR"] = str(_TMP)  # what the run leaves behind in the temporary folder shows here
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


_TMP = Path(tempfile.mkdtemp(prefix="cli-errors-tmp-"))


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
    assert not list(_TMP.iterdir()), "tasks left temporary folders behind"
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["steps"]["ingest"]["status"] == "FAILED"
    assert "\x1b[" not in json.dumps(manifest)
    assert "Traceback" in (run / "pipeline.log").read_text()
    assert not (run / "tmp").exists(), "the run's temporary files are removed"


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


@pytest.mark.parametrize(
    "args, message",
    [
        (["deploy", "--version", "7"], "error: model 'penguins-tfx' has no version 7"),
        (["deploy", "--version", "banana"], "error: model 'penguins-tfx' has no alias 'banana'"),
        (["serve", "--version", "7"], "error: model 'penguins-tfx' has no version 7"),
        (["deploy", "--canary", "150"], "expected a whole percent from 0 to 100, got '150'"),
    ],
)
def test_an_unknown_model_version_or_percent_is_one_message(
    tmp_path: Path, args: list[str], message: str
) -> None:
    from mlops.config import load_config
    from mlops.paths import registry_root
    from mlops.registry import LocalModelRegistry

    config_path = _config(tmp_path, ("", ""))
    model_dir = tmp_path / "model"
    (model_dir / "variables").mkdir(parents=True)
    (model_dir / "saved_model.pb").write_bytes(b"")
    config = load_config(config_path)
    LocalModelRegistry(registry_root(config)).register(
        config.name, model_dir, metadata={}, aliases=["champion"]
    )
    result = _cli(*args, "--config", str(config_path))
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["monitor"], "has no alias 'champion' (aliases: none): train and register a model first"),
        (
            ["compile", "--target", "local", "--output", "/proc/self/no/spec.json"],
            "cannot write the compiled pipeline to /proc/self/no/spec.json",
        ),
    ],
)
def test_nothing_to_monitor_or_nowhere_to_write_is_one_message_at_once(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = _cli(*args, "--config", str(_config(tmp_path, ("", ""))))
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "root" / "runs").exists()  # refused before any run started
