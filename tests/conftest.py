from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mlops.config import CONFIG_DIR, PipelineConfig, load_config

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
TAXI_CSV = DATA / "chicago_taxi" / "big_tipper.csv"
TAXI_SCHEMA = DATA / "chicago_taxi" / "tfx_schema.pbtxt"


# Images as Cloud Build pushes them: pinned by digest (the CPU build and the CUDA build).
IMAGE = "europe-docker.pkg.dev/my-project/mlops/mlops-template@sha256:" + "1" * 64
GPU_IMAGE = "europe-docker.pkg.dev/my-project/mlops/mlops-template-gpu@sha256:" + "2" * 64


def on_vertex(config: PipelineConfig, **vertex) -> PipelineConfig:
    """`config` ready for the Vertex target (real images instead of the placeholder), with
    further `vertex` section overrides."""
    images = {"image": IMAGE, "gpu_image": GPU_IMAGE}
    return config.with_overrides(vertex={**config.vertex.model_dump(), **images, **vertex})


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fake_model(tmp: Path, name: str) -> Path:
    """A stand-in model directory (a registry copies it; nothing loads it)."""
    path = tmp / name
    path.mkdir()
    (path / "saved_model.pb").write_text(name)
    return path


def assert_load_refused(path: Path, expected: list[str]) -> None:
    """Loading the config file at `path` fails with a ConfigError naming the file and holding
    every text in `expected`."""
    from mlops.config import ConfigError

    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert str(path) in message
    for part in expected:
        assert part in message


def config_in(tmp: Path, name: str = "penguins", **overrides) -> PipelineConfig:
    """A repo config whose runs and registry live under `tmp`."""
    config = load_config(CONFIG_DIR / f"{name}.yaml")
    local = config.local.model_copy(update={"root": str(tmp / "mlops-root")})
    return config.model_copy(update={"local": local, **overrides})


@pytest.fixture(scope="session")
def penguins_chain(tmp_path_factory):
    """ingest -> validate -> transform -> train -> evaluate on penguins as plain functions, once
    per session: (config, paths, results)."""
    from components.evaluate import run_evaluate
    from components.ingest import run_ingest
    from components.train import run_train
    from components.transform import run_transform
    from components.validate import run_data_validation

    tmp = tmp_path_factory.mktemp("chain")
    config = config_in(tmp, "penguins")
    names = (
        "data",
        "statistics",
        "schema",
        "anomalies",
        "transform",
        "model",
        "logs",
        "evaluation",
    )
    paths = {name: tmp / name for name in names}
    run_ingest(config, paths["data"])
    run_data_validation(
        config, paths["data"], paths["statistics"], paths["schema"], paths["anomalies"]
    )
    transform = run_transform(config, paths["data"], paths["transform"])
    training = run_train(config, paths["data"], paths["transform"], paths["model"], paths["logs"])
    evaluation = run_evaluate(config, paths["data"], paths["model"], paths["evaluation"])
    return config, paths, {"transform": transform, "train": training, "evaluate": evaluation}


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
