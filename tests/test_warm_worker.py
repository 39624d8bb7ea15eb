"""The warm worker (pipelines/warm_worker.py): kfp.local tasks run in forks of one process that
imported the libraries once, with the same outputs as kfp's own subprocess per task, and fall
back to subprocesses when the worker cannot start.

The worker here preloads a light module list (the mechanism is the same as the real run's
TensorFlow/TFT/TFMA preload; the whole runs in test_pipeline_local/test_resume use that one).
No `from __future__ import annotations` here: KFP reads the components' annotations."""

import json
import os
from pathlib import Path

import pytest
from kfp import dsl, local
from kfp.dsl import Dataset, Output

from pipelines.local import _use_verbatim_task_arguments
from pipelines.warm_worker import parse_task_command, warm_tasks

LIGHT_PRELOAD = ("kfp.dsl.executor_main", "xml.dom.minidom")


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def facts(text: str, table: Output[Dataset]) -> str:
    import json
    import os
    import sys

    with open(table.path, "w") as handle:
        handle.write(text.upper())
    table.metadata["length"] = len(text)
    print(f"task output line for {text}", flush=True)
    return json.dumps(
        {
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "preloaded": "xml.dom.minidom" in sys.modules,
            "kfp_runtime": os.environ.get("_KFP_RUNTIME"),
            "tmpdir": os.environ.get("TMPDIR"),
            "text": text,
        }
    )


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def fail(code: int) -> None:
    import sys

    if code:
        sys.exit(code)
    raise ValueError("this step fails on purpose")


@dsl.pipeline
def facts_pipeline(text: str) -> str:
    first = facts(text=text)
    return facts(text=first.outputs["Output"]).outputs["Output"]


def _init(root: Path) -> None:
    _use_verbatim_task_arguments()
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root),
        raise_on_error=True,
    )


def _outputs(task) -> tuple[dict, str, dict]:
    table = task.outputs["table"]
    return json.loads(task.outputs["Output"]), Path(table.path).read_text(), table.metadata


def test_tasks_run_in_forks_of_the_worker_with_the_same_outputs_as_subprocesses(
    tmp_path: Path, capfd, monkeypatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    _init(tmp_path / "subprocess")
    plain = facts(text="python3 says hi")
    _init(tmp_path / "warm")
    with warm_tasks(preload=LIGHT_PRELOAD) as launcher:
        warm = facts(text="python3 says hi")
        chained = facts_pipeline(text="abc")
    assert launcher.forked_tasks == 3
    plain_facts, plain_table, plain_meta = _outputs(plain)
    warm_facts, warm_table, warm_meta = _outputs(warm)
    # forks of the worker, which had imported its preload before the task started
    assert warm_facts.pop("ppid") == launcher.worker.pid != os.getpid()
    assert warm_facts.pop("preloaded") is True
    assert plain_facts.pop("ppid") != launcher.worker.pid
    assert plain_facts.pop("preloaded") is False
    assert warm_facts.pop("pid") != plain_facts.pop("pid")
    # everything else the same: the environment the task sees, its outputs and their metadata
    assert warm_facts == plain_facts
    assert (
        (warm_table, warm_meta) == (plain_table, plain_meta) == ("PYTHON3 SAYS HI", {"length": 15})
    )
    assert json.loads(json.loads(chained.output)["text"])["text"] == "abc"
    out = capfd.readouterr().out
    assert out.count("task output line for python3 says hi") == 2  # the task's output, both ways
    assert "warm worker unavailable" not in out


def test_a_failing_task_fails_the_same_way(tmp_path: Path) -> None:
    _init(tmp_path)
    with warm_tasks(preload=LIGHT_PRELOAD) as launcher:
        with pytest.raises(RuntimeError, match="fail.*FAILURE"):
            fail(code=0)
        with pytest.raises(RuntimeError, match="fail.*FAILURE"):
            fail(code=3)
        assert launcher.forked_tasks == 2
        assert launcher.worker is not None  # a failed task does not take the worker down
        assert json.loads(facts(text="after").outputs["Output"])["ppid"] == launcher.worker.pid


def test_a_worker_that_cannot_start_falls_back_to_subprocesses_with_one_line(
    tmp_path: Path, capfd
) -> None:
    _init(tmp_path)
    with warm_tasks(preload=("kfp.dsl.executor_main", "no_such_module_here")) as launcher:
        first = json.loads(facts(text="one").outputs["Output"])
        second = json.loads(facts(text="two").outputs["Output"])
    assert launcher.forked_tasks == 0 and launcher.worker is None
    # kfp's own subprocesses: each under its own launcher shell, nothing preloaded
    assert first["ppid"] != second["ppid"]
    assert not first["preloaded"] and not second["preloaded"]
    out = capfd.readouterr().out
    lines = [line for line in out.splitlines() if "warm worker unavailable" in line]
    assert len(lines) == 1, out
    assert "No module named 'no_such_module_here'" in lines[0]
    assert "each step runs in its own process" in lines[0]


def test_only_kfps_own_launcher_is_run_in_the_worker() -> None:
    from kfp.dsl import component_factory

    def probe() -> None:
        pass

    command, args = component_factory._get_command_and_args_for_lightweight_component(probe)
    ours = [*command[:2], command[2].replace("python3", "/venv/bin/python"), *command[3:], *args]
    task = parse_task_command(ours, "/venv/bin/python")
    assert task is not None and task.source == command[3] and task.arguments == args
    assert parse_task_command(ours, "/other/python") is None  # another interpreter (use_venv)
    changed = [*ours[:2], ours[2].replace("mktemp -d", "mktemp -d -p /x"), *ours[3:]]
    assert parse_task_command(changed, "/venv/bin/python") is None
    assert parse_task_command(["python", "-c", "print(1)", "x"], "/venv/bin/python") is None


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def kill_worker() -> str:
    import os
    import signal

    os.kill(os.getppid(), signal.SIGKILL)  # the worker this task was forked from
    return "done"


def test_a_worker_lost_mid_task_fails_that_task_and_later_ones_run_as_subprocesses(
    tmp_path: Path, capfd
) -> None:
    """The task's exit status died with the worker: it must not count as succeeded (its step
    cache entry would be written); the next task cannot be started there and runs as kfp's
    own subprocess."""
    _init(tmp_path)
    with warm_tasks(preload=LIGHT_PRELOAD) as launcher:
        with pytest.raises(RuntimeError, match="kill-worker.*FAILURE"):
            kill_worker()
        after = json.loads(facts(text="after").outputs["Output"])
    assert launcher.forked_tasks == 1 and launcher.worker is None  # only the lost one forked
    assert not after["preloaded"]
    out = capfd.readouterr().out
    assert "warm worker lost during the task" in out
    assert len([line for line in out.splitlines() if "warm worker unavailable" in line]) == 1
