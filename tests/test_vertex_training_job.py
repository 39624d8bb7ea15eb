"""The training custom job as Vertex AI receives it: worker pools for chief and workers with the
right image and accelerators (GPU build on GPUs, a TPU image on TPUs), compiled from config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlops.config import ConfigError
from pipelines.vertex import compile_pipeline
from tests.conftest import GPU_IMAGE, IMAGE, on_vertex

TPU_IMAGE = "europe-docker.pkg.dev/my-project/mlops/mlops-template-tpu@sha256:" + "3" * 64


def _pools(config, tmp_path: Path) -> list[dict]:
    spec = yaml.safe_load(
        compile_pipeline(config, "training", "vertex", tmp_path / "t.yaml").read_text()
    )
    inputs = spec["components"]["comp-train"]["inputDefinitions"]["parameters"]
    return inputs["worker_pool_specs"]["defaultValue"]


def _with_pool(config, **pool):
    vertex = config.vertex.model_dump()
    vertex["training"] = {**vertex["training"], **pool}
    return config.with_overrides(vertex=vertex)


def test_gpu_job_with_three_replicas_has_a_chief_and_two_workers(
    penguins_config, tmp_path: Path
) -> None:
    config = _with_pool(
        on_vertex(penguins_config),
        machine_type="n1-standard-8",
        accelerator_type="NVIDIA_TESLA_T4",
        accelerator_count=2,
        replica_count=3,
    )
    chief, workers = _pools(config, tmp_path)
    assert chief["replica_count"] == 1 and workers["replica_count"] == 2
    for pool in (chief, workers):
        assert pool["container_spec"]["image_uri"] == GPU_IMAGE
        machine = pool["machine_spec"]
        assert machine["machine_type"] == "n1-standard-8"
        assert machine["accelerator_type"] == "NVIDIA_TESLA_T4"
        assert machine["accelerator_count"] == 2
    # Vertex sets TF_CONFIG from these pools; train's choose_strategy turns it into
    # MultiWorkerMirroredStrategy (tests/test_multiworker.py runs two such workers locally).
    assert chief["container_spec"]["args"] == workers["container_spec"]["args"]


def test_cpu_job_runs_the_cpu_image_on_one_pool(penguins_config, tmp_path: Path) -> None:
    (pool,) = _pools(on_vertex(penguins_config), tmp_path)
    assert pool["container_spec"]["image_uri"] == IMAGE
    assert pool["replica_count"] == 1
    assert "accelerator_type" not in pool["machine_spec"]


def test_tpu_settings_compile_with_a_tpu_image_and_are_refused_without(
    penguins_config, tmp_path: Path
) -> None:
    tpu = {"machine_type": "cloud-tpu", "accelerator_type": "TPU_V3", "accelerator_count": 8}
    config = _with_pool(on_vertex(penguins_config, tpu_image=TPU_IMAGE), **tpu)
    (pool,) = _pools(config, tmp_path)
    assert pool["container_spec"]["image_uri"] == TPU_IMAGE  # never the CUDA build
    assert pool["machine_spec"] == {
        "machine_type": "cloud-tpu",
        "accelerator_type": "TPU_V3",
        "accelerator_count": 8,
    }
    with pytest.raises(ConfigError, match="vertex.tpu_image is not set"):
        _pools(_with_pool(on_vertex(penguins_config), **tpu), tmp_path)
