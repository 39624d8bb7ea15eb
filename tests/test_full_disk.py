"""A full disk during a local run, for real: local.root on a small tmpfs (mounted here, as root)
that fills up in the middle of the pipeline. The CLI says which step failed, that no space is
left and what to do, without a traceback; run.json is written; the registry is untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops.registry import LocalModelRegistry
from pipelines.local import STEP_ORDERS
from tests.conftest import REPO

SIZE = 1 << 20
# Room for the run's start (run.json and 256 KB kept for the final one) and about ingest's
# outputs and log (~60 KB, varying): the disk fills up in ingest or, mostly, validation.
FREE_AT_START = 400 << 10


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def _run_on(root: Path, tmp_path: Path, timeout: int) -> subprocess.CompletedProcess:
    """`mlops run` on penguins with local.root at `root`, as a user would start it."""
    config = tmp_path / "penguins.yaml"
    config.write_text(
        (REPO / "configs" / "penguins.yaml").read_text() + f"\nlocal: {{root: {root}}}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "_KFP_RUNTIME"}
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", "--config", str(config)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def small_disk(tmp_path: Path):
    mount_point = tmp_path / "root"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.mark.slow
def test_a_disk_that_fills_up_mid_run(tmp_path: Path, small_disk: Path) -> None:
    registry = LocalModelRegistry(small_disk / "registry")
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"m" * 1000)
    registry.register("penguins", model, metadata={"blessed": True}, aliases=["champion"])
    registry_before = _tree(small_disk / "registry")
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    (small_disk / "filler").write_bytes(b"\0" * (free - FREE_AT_START))

    result = _run_on(small_disk, tmp_path, timeout=900)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Traceback" not in out, out
    (run,) = (small_disk / "runs").iterdir()
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["status"] == "FAILED", manifest
    step = manifest["out_of_space"]["step"]
    # find_champion runs beside the data steps (train waits for it), so the disk may fill there
    assert step in [*STEP_ORDERS["training"], "find_champion"], manifest["out_of_space"]
    assert f"Step {step} failed: no space left on the device that holds local.root" in (
        result.stderr
    )
    assert "set local.root in the config to a folder on a larger disk" in result.stderr
    assert manifest["steps"]["register"]["status"] == "NOT_RUN"
    assert _tree(small_disk / "registry") == registry_before
    assert not (run / "tmp").exists() and not (run / ".manifest-reserve").exists()


def test_a_full_disk_before_the_run_starts_is_one_error_line(
    tmp_path: Path, small_disk: Path
) -> None:
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    (small_disk / "filler").write_bytes(b"\0" * (free - (64 << 10)))  # less than the reserve
    result = _run_on(small_disk, tmp_path, timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert "error: cannot start run" in result.stderr
    assert "No space left on device" in result.stderr and "with free space" in result.stderr
    assert list((small_disk / "runs").iterdir()) == []  # nothing half-started is left
