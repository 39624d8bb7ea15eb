"""Multi-worker training for real: two processes on loopback with TF_CONFIG as Vertex AI sets it
for a multi-replica worker pool, each running the train step's function."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlops.artifacts import read_model_info, read_split
from mlops.features import frame_to_arrays
from tests.conftest import REPO, config_in, free_port

# One worker process: train with the TF_CONFIG it was started with, write what run_train returns.
WORKER = """
import json, sys
from components.train import run_train
from mlops.config import PipelineConfig
config = PipelineConfig.from_json(open(sys.argv[1]).read())
info = run_train(config, sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[6])
open(sys.argv[5], "w").write(json.dumps(info, default=str))
"""


@pytest.fixture(scope="module")
def penguins_transformed(tmp_path_factory):
    from components.ingest import run_ingest
    from components.transform import run_transform

    tmp = tmp_path_factory.mktemp("multiworker")
    config = config_in(tmp, "penguins")
    run_ingest(config, tmp / "data")
    run_transform(config, tmp / "data", tmp / "transform")
    return config, tmp


@pytest.mark.slow
def test_two_workers_train_and_only_the_chief_saves(penguins_transformed, tmp_path) -> None:
    import tensorflow as tf

    config, shared = penguins_transformed
    config_file = tmp_path / "config.json"
    config_file.write_text(config.to_json())
    cluster = {
        "chief": [f"127.0.0.1:{free_port()}"],
        "worker": [f"127.0.0.1:{free_port()}"],
    }
    tasks = {"chief": ("chief", 0), "worker": ("worker", 0)}
    processes = {}
    for name, (kind, index) in tasks.items():
        scratch = tmp_path / f"tmp-{name}"
        scratch.mkdir()
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}}),
            "TMPDIR": str(scratch),  # where a non-chief saves its throwaway copy
            "CUDA_VISIBLE_DEVICES": "",
            "PYTHONPATH": str(REPO),
        }
        # Each worker gets its own model_dir so the test sees who wrote what (on Vertex they
        # share AIP_MODEL_DIR).
        args = [
            sys.executable,
            "-c",
            WORKER,
            str(config_file),
            str(shared / "data"),
            str(shared / "transform"),
            str(tmp_path / f"model-{name}"),
            str(tmp_path / f"result-{name}.json"),
            str(tmp_path / f"logs-{name}"),
        ]
        log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed below
        processes[name] = (subprocess.Popen(args, env=env, cwd=REPO, stdout=log, stderr=log), log)
    for name, (process, log) in processes.items():
        try:
            code = process.wait(timeout=900)
        finally:
            if process.poll() is None:
                process.kill()
            log.close()
        tail = (tmp_path / f"{name}.log").read_text()[-3000:]
        assert code == 0, f"{name} exited {code}:\n{tail}"

    results = {n: json.loads((tmp_path / f"result-{n}.json").read_text()) for n in tasks}
    assert {r["strategy"] for r in results.values()} == {"MultiWorkerMirroredStrategy"}
    # The replicas stay in sync: same epochs, same eval metrics on every worker.
    assert results["chief"]["epochs_run"] == results["worker"]["epochs_run"]
    assert results["chief"]["eval_loss"] == pytest.approx(results["worker"]["eval_loss"], rel=1e-4)

    assert not (tmp_path / "model-worker").exists()
    # TensorBoard: only the chief writes (on Vertex every worker gets the same log dir).
    assert list((tmp_path / "logs-chief").rglob("events.out.tfevents*"))
    assert not list((tmp_path / "logs-worker").rglob("events.out.tfevents*"))
    assert not list((tmp_path / "tmp-worker").glob("mlops-nonchief-model-*"))
    model_dir = tmp_path / "model-chief"
    assert read_model_info(model_dir)["strategy"] == "MultiWorkerMirroredStrategy"

    test = read_split(shared / "data", "test")
    loaded = tf.saved_model.load(str(model_dir))
    arrays = frame_to_arrays(test, config.features)
    outputs = loaded.signatures["serving_default"](
        **{name: tf.constant(values) for name, values in arrays.items()}
    )
    predicted = [label.decode() for label in outputs["predicted_label"].numpy()]
    accuracy = float(np.mean(np.array(predicted) == test[config.data.label].to_numpy()))
    assert accuracy >= 0.9, accuracy


def test_chief_is_the_chief_task_or_worker_zero_without_one() -> None:
    from mlops.distribute import is_chief

    def env(cluster, kind, index):
        return {
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})
        }

    with_chief = {"chief": ["a:1"], "worker": ["b:1", "c:1"]}
    assert is_chief(env(with_chief, "chief", 0))
    assert not is_chief(env(with_chief, "worker", 0))
    workers_only = {"worker": ["b:1", "c:1"]}
    assert is_chief(env(workers_only, "worker", 0))
    assert not is_chief(env(workers_only, "worker", 1))
    assert is_chief({})
    with pytest.raises(ValueError, match="TF_CONFIG is not JSON"):
        is_chief({"TF_CONFIG": "{cluster"})


def test_non_chief_saves_into_a_directory_that_is_then_deleted(tmp_path: Path) -> None:
    from mlops.distribute import save_dir
    from mlops.io import atomic_dir

    worker = {
        "TF_CONFIG": json.dumps(
            {
                "cluster": {"chief": ["a:1"], "worker": ["b:1"]},
                "task": {"type": "worker", "index": 0},
            }
        )
    }
    with save_dir(tmp_path / "model", atomic_dir, worker) as out:
        (out / "saved_model.pb").write_text("x")
        scratch = out
    assert not scratch.exists() and not (tmp_path / "model").exists()
    with save_dir(tmp_path / "model", atomic_dir, {}) as out:
        (out / "saved_model.pb").write_text("x")
    assert (tmp_path / "model" / "saved_model.pb").read_text() == "x"
