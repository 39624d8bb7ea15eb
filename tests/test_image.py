"""The project image, built and run for real: with Docker when an engine answers, otherwise with
buildah (chroot isolation, a local Debian base), both through `scripts/image.sh`.

It proves offline that the Dockerfile builds from the locks, that the image's default command
serves a model trained here under the Vertex AI custom-container contract, and that a compiled
Vertex pipeline step runs in it. Nothing names a module inside the image: the server is the
image's default command, and the step is the command the compiler put in the pipeline spec.

Slow (a cold build takes minutes; with the build cache warm, seconds). Skipped where no engine can
be used, for example without Docker and without root; pytest does not install buildah
(`make image` does, as root).
"""

from __future__ import annotations

import http.client
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "image.sh"
IMAGE = os.environ.get("MLOPS_TEST_IMAGE", "localhost/mlops-template:dev")
HEALTH_ROUTE = "/v1/models/penguins/health"
PREDICT_ROUTE = "/v1/models/penguins:predict"
BUILD_TIMEOUT_S = 1800
# The server binds at once, then imports TensorFlow and loads the model (20-30 s on 2 cores).
HEALTHY_TIMEOUT_S = 300
UNAVAILABLE = 3  # scripts/image.sh's exit status when no engine can be used

pytestmark = [pytest.mark.slow, pytest.mark.image, pytest.mark.timeout(BUILD_TIMEOUT_S + 900)]


def _script(*args: str, timeout: float, **kwargs: Any) -> subprocess.CompletedProcess:
    env = {**os.environ, "IMAGE": IMAGE, "IMAGE_INSTALL": "0"}
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


def _tail(text: str, chars: int = 4000) -> str:
    return text[-chars:]


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> str:
    """Build (or update: unchanged steps come from the build cache) the image from this checkout."""
    ready = _script("ready", timeout=120)
    if ready.returncode == UNAVAILABLE:
        pytest.skip(ready.stderr.strip().removeprefix("image.sh: "))
    assert ready.returncode == 0, ready.stderr
    log = tmp_path_factory.mktemp("image") / "build.log"
    started = time.monotonic()
    with open(log, "w") as sink:
        build = subprocess.run(
            ["bash", str(SCRIPT), "build"],
            env={**os.environ, "IMAGE": IMAGE, "IMAGE_INSTALL": "0"},
            stdout=sink,
            stderr=subprocess.STDOUT,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
    output = log.read_text(errors="replace")
    assert build.returncode == 0, f"image build failed:\n{_tail(output)}"
    print(f"image {IMAGE} built in {time.monotonic() - started:.0f} s with {ready.stdout.strip()}")
    return ready.stdout.split()[0]


def _writable_dir(path: Path) -> Path:
    """A host directory the image's non-root user can write through a bind mount."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def _readable_copy(source: Path, target: Path) -> Path:
    """A copy the image's non-root user can read whatever the umask it was written with."""
    shutil.copytree(source, target)
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _http(
    port: int, method: str, path: str, body: Any = None, timeout: float = 30
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        conn.close()


def _instances(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> list[dict]:
    """Rows as a client sends them: JSON numbers and strings, null for a missing value."""
    rows = []
    for record in frame[numeric + categorical].to_dict("records"):
        row = {}
        for name, value in record.items():
            if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
                row[name] = None
            elif name in numeric:
                row[name] = float(value)
            else:
                row[name] = str(value)
        rows.append(row)
    return rows


def _containers(engine: str) -> str:
    if engine == "docker":
        command = ["docker", "ps", "-a", "--format", "{{.Names}}"]
    else:
        command = ["buildah", "containers", "--format", "{{.ContainerName}}"]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def test_default_command_serves_a_trained_model_under_the_vertex_contract(
    engine, penguins_chain, tmp_path
) -> None:
    config, paths, _ = penguins_chain
    label = config.data.label
    test_rows = pd.read_parquet(paths["data"] / "test.parquet").head(20)
    classes = set(pd.read_parquet(paths["data"] / "train.parquet")[label].astype(str))
    instances = _instances(test_rows, config.features.numeric, config.features.categorical)
    assert any(v is None for row in instances for v in row.values())  # rows with missing values

    port = _free_port()
    output = tmp_path / "server.out"
    command = ["bash", str(SCRIPT), "run"]
    for name, value in {
        "AIP_STORAGE_URI": "/model",
        "AIP_HTTP_PORT": str(port),
        "AIP_HEALTH_ROUTE": HEALTH_ROUTE,
        "AIP_PREDICT_ROUTE": PREDICT_ROUTE,
    }.items():
        command += ["-e", f"{name}={value}"]
    model = _readable_copy(paths["model"], tmp_path / "model")
    command += ["-v", f"{model}:/model:ro"]  # and no command: the image's default one
    with open(output, "wb") as sink:
        proc = subprocess.Popen(
            command,
            env={**os.environ, "IMAGE": IMAGE, "IMAGE_INSTALL": "0"},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the script, the engine and the server: one process group
        )
    container = f"mlops-run-{proc.pid}"  # the name scripts/image.sh gives it

    def tail() -> str:
        return _tail(output.read_text(errors="replace"))

    try:
        started = time.monotonic()
        seen: list[int | str] = []
        while True:
            assert proc.poll() is None, f"container exited with {proc.returncode}:\n{tail()}"
            elapsed = time.monotonic() - started
            assert elapsed < HEALTHY_TIMEOUT_S, f"never healthy ({seen}):\n{tail()}"
            try:
                status, _ = _http(port, "GET", HEALTH_ROUTE, timeout=5)
            except OSError:
                status = "refused"
            if not seen or seen[-1] != status:
                seen.append(status)
            if status == 200:
                break
            time.sleep(0.2)
        print(f"healthy after {elapsed:.1f} s: {seen}")

        status, body = _http(port, "POST", PREDICT_ROUTE, {"instances": instances})
        assert status == 200, (body, tail())
        predictions = body["predictions"]
        assert len(predictions) == len(instances)
        for prediction in predictions:
            probabilities = prediction["probabilities"]
            assert prediction["label"] in classes
            assert set(probabilities) == classes
            assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
            assert max(probabilities, key=probabilities.get) == prediction["label"]
        truth = test_rows[label].astype(str).tolist()
        correct = sum(p["label"] == t for p, t in zip(predictions, truth, strict=True))
        assert correct >= 0.8 * len(truth), (correct, predictions)

        status, body = _http(port, "POST", PREDICT_ROUTE, {"instances": [{"colour": "red"}]})
        assert status == 400 and "instances[0]" in body["error"], body
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
    with pytest.raises(OSError):  # the server is gone with its container
        _http(port, "GET", HEALTH_ROUTE, timeout=5)
    assert container not in _containers(engine).split(), f"{container} was left behind"


def test_cli_and_a_compiled_vertex_step_run_in_the_image(engine, penguins_chain, tmp_path) -> None:
    _, paths, _ = penguins_chain
    help_ = _script("run", "--", "mlops", "--help", timeout=300)
    assert help_.returncode == 0, help_.stderr
    assert "compile" in help_.stdout and "serve" in help_.stdout

    # The image compiles the training pipeline for Vertex with its own CLI (working dir /app)...
    out = _writable_dir(tmp_path / "out")
    compiled = _script(
        "run",
        "-v",
        f"{out}:/out",
        "--",
        "mlops",
        "compile",
        "--config",
        "configs/penguins.yaml",
        "--target",
        "vertex",
        "--image",  # Vertex specs name a real image; the step below runs in this one
        IMAGE,
        "--output",
        "/out/training.json",
        timeout=600,
    )
    assert compiled.returncode == 0, _tail(compiled.stdout + compiled.stderr)
    spec = json.loads((out / "training.json").read_text())

    # ...and runs the ingest task as Vertex would: the spec's container command and arguments,
    # with the executor input Vertex substitutes for {{$}}, and Cloud Storage as a /gcs mount.
    container = spec["deploymentSpec"]["executors"]["exec-ingest"]["container"]
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    gcs = _writable_dir(tmp_path / "gcs")
    _writable_dir(gcs / "run" / "ingest")
    executor_input = {
        "inputs": {
            "parameterValues": {
                "config_json": parameters["config_json"]["defaultValue"],
                "step_log": "",
            }
        },
        "outputs": {
            "artifacts": {
                "dataset": {
                    "artifacts": [
                        {
                            "name": "dataset",
                            "type": {"schemaTitle": "system.Dataset"},
                            "uri": "gs://mlops-test/run/ingest/dataset",
                            "metadata": {},
                        }
                    ]
                }
            },
            "outputFile": "/gcs/mlops-test/run/ingest/executor_output.json",
        },
    }
    args = [json.dumps(executor_input) if a == "{{$}}" else a for a in container["args"]]
    step = _script(
        "run", "-v", f"{gcs}:/gcs/mlops-test", "--", *container["command"], *args, timeout=600
    )
    assert step.returncode == 0, _tail(step.stdout + step.stderr)
    assert "step ingest: done" in step.stdout, _tail(step.stdout + step.stderr)

    dataset = gcs / "run" / "ingest" / "dataset"
    for split in ("train", "eval", "test"):
        in_image = pd.read_parquet(dataset / f"{split}.parquet")
        on_host = pd.read_parquet(paths["data"] / f"{split}.parquet")
        assert len(in_image) > 0
        pd.testing.assert_frame_equal(in_image, on_host)  # the same deterministic split
    executor_output = json.loads((gcs / "run" / "ingest" / "executor_output.json").read_text())
    metadata = executor_output["artifacts"]["dataset"]["artifacts"][0]["metadata"]
    assert metadata["rows"] == {
        split: len(pd.read_parquet(dataset / f"{split}.parquet"))
        for split in ("train", "eval", "test")
    }, metadata
