from __future__ import annotations

from pathlib import Path

import pytest

from mlops.config import CONFIG_DIR, PipelineConfig, load_config

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
TAXI_CSV = SHARED_DATA / "chicago_taxi" / "big_tipper.csv"
TAXI_SCHEMA = SHARED_DATA / "chicago_taxi" / "tfx_schema.pbtxt"


def config_in(tmp: Path, name: str = "penguins", **overrides) -> PipelineConfig:
    """A repo config whose runs and registry live under `tmp`."""
    config = load_config(CONFIG_DIR / f"{name}.yaml")
    local = config.local.model_copy(update={"root": str(tmp / "mlops-root")})
    return config.model_copy(update={"local": local, **overrides})


@pytest.fixture
def penguins_config(tmp_path: Path) -> PipelineConfig:
    return config_in(tmp_path, "penguins")


@pytest.fixture
def taxi_config(tmp_path: Path) -> PipelineConfig:
    return config_in(tmp_path, "taxi")


_exit_status = 0


def pytest_sessionfinish(session, exitstatus) -> None:  # noqa: ANN001
    global _exit_status
    _exit_status = int(exitstatus)


def pytest_unconfigure(config) -> None:  # noqa: ANN001
    """Leave without native teardown: after TFT/Beam ran in-process, interpreter shutdown can
    segfault (exit 139) although every test passed. Reports are written by now."""
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status)
