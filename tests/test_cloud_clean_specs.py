"""Every compiled Vertex spec is cloud-clean: it carries no path of the machine that compiled it
(no absolute local path, no `..`, not the repository's location) and runs every step in the
configured image, pinned by digest (the GPU build for a training custom job with accelerators).

Every shipped config, every pipeline. The configs are loaded as shipped (their relative paths and
`local.root` as written); only the images are set, as `mlops compile --image` would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops.config import CONFIG_DIR, PLACEHOLDER_IMAGE, PipelineConfig, load_config
from pipelines.builders import PIPELINES
from pipelines.vertex import compile_pipeline
from tests.conftest import GPU_IMAGE, IMAGE, REPO, on_vertex

GCPC_IMAGE = "gcr.io/ml-pipeline/google-cloud-pipeline-components:"
LOCAL_PREFIXES = ("/tmp", "/home", "/work", "/root", "/Users", "/var", str(REPO))
PARENT_SEGMENT = re.compile(r"(^|[/\\\s\"'=])\.\.([/\\]|$)")


def _strings(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every string in a JSON document, with where it is; JSON held in a string (the config
    parameter) is opened too."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key, f"{where}/<key>")
            yield from _strings(item, f"{where}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{where}[{index}]")
    elif isinstance(value, str):
        yield where, value
        if value.startswith("{"):
            try:
                inner = json.loads(value)
            except ValueError:
                return
            yield from _strings(inner, f"{where}<json>")


def local_path_offenders(spec: dict) -> list[str]:
    offenders = []
    for where, text in _strings(spec):
        if text.startswith("/") and not text.startswith("/gcs/"):
            offenders.append(f"{where}: absolute path {text[:120]!r}")
        elif any(prefix + "/" in text or text == prefix for prefix in LOCAL_PREFIXES):
            offenders.append(f"{where}: local path in {text[:120]!r}")
        elif PARENT_SEGMENT.search(text):
            offenders.append(f"{where}: '..' in {text[:120]!r}")
    return offenders


def _vertex_ready(name: str) -> PipelineConfig:
    config = load_config(CONFIG_DIR / f"{name}.yaml")
    return on_vertex(config)


CASES = [
    (name, kind) for name in sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")) for kind in PIPELINES
]


@pytest.fixture(scope="module")
def specs(tmp_path_factory) -> dict[tuple[str, str], dict]:
    out = tmp_path_factory.mktemp("specs")
    return {
        (name, kind): json.loads(
            compile_pipeline(
                _vertex_ready(name), kind, "vertex", out / f"{name}-{kind}.json"
            ).read_text()
        )
        for name, kind in CASES
    }


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_spec_carries_no_local_path(specs, name: str, kind: str) -> None:
    spec = specs[(name, kind)]
    assert local_path_offenders(spec) == []
    default = spec["root"]["inputDefinitions"]["parameters"]["config_json"]["defaultValue"]
    config = PipelineConfig.from_json(default)
    assert not Path(config.local.root).is_absolute()
    assert PLACEHOLDER_IMAGE not in json.dumps(spec)


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_every_step_runs_in_the_configured_digest_image(specs, name: str, kind: str) -> None:
    spec = specs[(name, kind)]
    config = _vertex_ready(name)
    images = []
    for label, executor in spec["deploymentSpec"]["executors"].items():
        if "importer" in executor:
            continue
        image = executor["container"]["image"]
        if image.startswith(GCPC_IMAGE):  # Google's launchers (custom job, upload, deploy, ...)
            continue
        images.append((label, image))
    if kind != "prediction":  # without request logging, prediction is Google's ops only
        assert images, "no step runs in the project image"
    assert all(image == IMAGE for _, image in images), images
    assert re.search(r"@sha256:[0-9a-f]{64}$", IMAGE)
    if kind == "training":
        inputs = spec["components"]["comp-train"]["inputDefinitions"]["parameters"]
        (pool,) = inputs["worker_pool_specs"]["defaultValue"]
        expected = GPU_IMAGE if config.vertex.training.accelerator_type else IMAGE
        assert pool["container_spec"]["image_uri"] == expected
        (condition,) = [n for n in spec["root"]["dag"]["tasks"] if n.startswith("condition")]
        serving = spec["components"][f"comp-{condition}"]["dag"]["tasks"]["vertex-serving-model"]
        assert serving["inputs"]["parameters"]["serving_image"]["runtimeValue"] == {
            "constant": IMAGE
        }


def test_the_scan_finds_local_paths() -> None:
    """The scanner is not vacuous: paths of this machine are caught wherever they hide."""
    leaky = {
        "a": str(REPO / "data" / "x.csv"),
        "b": json.dumps({"local": {"root": "/tmp/run/.mlops"}}),
        "c": ["data/../../etc/passwd"],
        "d": "file is at /home/me/x",
    }
    found = {
        offender.split(":")[0].split("<")[0].split("[")[0]
        for offender in local_path_offenders(leaky)
    }
    assert found == {"/a", "/b", "/c", "/d"}
    clean = {"a": "/gcs/bucket/x", "b": "gs://bucket/x", "c": "data/taxi.csv", "d": "a...b"}
    assert local_path_offenders(clean) == []
