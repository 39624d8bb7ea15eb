"""Run a pipeline on this machine with kfp.local's SubprocessRunner; every run writes under its
own run id and leaves a `run.json` manifest and an HTML report."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops.artifacts import PIPELINE_LOG_FILE, REPORT_FILE, RUN_MANIFEST_FILE, STEP_LOG_FILE
from mlops.config import ConfigError, PipelineConfig
from mlops.io import write_json_atomic
from mlops.paths import run_dir as run_dir_of
from mlops.paths import step_cache_root
from mlops.runs import config_hash, new_run_id
from mlops.steps import read_step_log
from pipelines.builders import build_pipeline
from pipelines.progress import quiet_output, strip_ansi
from pipelines.step_cache import CACHED, step_cache
from pipelines.warm_worker import warm_tasks

STEP_ORDERS = {
    "training": [
        "ingest",
        "validate_data",
        "transform",
        "tune",
        "train",
        "evaluate",
        "explain",
        "register",
        "report",
    ],
    "prediction": ["deploy", "batch_predict"],
    "monitoring": ["monitor", "launch_training"],
}


@dataclass(frozen=True)
class RunResult:
    run_id: str
    run_dir: Path
    manifest: dict[str, Any]

    @property
    def succeeded(self) -> bool:
        return self.manifest["status"] == "SUCCEEDED"


def replace_python_in_launcher_only(full_command: list[str], new_executable: str) -> list[str]:
    """kfp.local (2.17) swaps every "python3" in a task's whole command line for the current
    interpreter, including the task's arguments: a data path, the local root or the config JSON
    that contains "python3" arrives rewritten. Swap it only in the launcher's shell scripts, up to
    the element that writes the component's code; the code and its arguments stay verbatim."""
    launcher_end = next(
        (i for i, part in enumerate(full_command) if "ephemeral_component.py" in part),
        len(full_command) - 1,
    )
    return [
        part.replace("python3", new_executable) if i <= launcher_end else part
        for i, part in enumerate(full_command)
    ]


def _use_verbatim_task_arguments() -> None:
    from kfp.local import subprocess_task_handler

    subprocess_task_handler.replace_python_executable = replace_python_in_launcher_only


class LocalRootError(ConfigError):
    """The run directory cannot be created under local.root (read-only, full, not a folder)."""


@contextlib.contextmanager
def _run_temp_dir(path: Path) -> Iterator[None]:
    """Every task's temporary files (kfp.local's per-task code folder, Beam's and TFT's temp
    dirs) under the run, removed when the run ends, instead of left behind in /tmp."""
    path.mkdir(parents=True, exist_ok=True)
    previous = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(path)
    tempfile.tempdir = None  # recomputed from TMPDIR
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = previous
        tempfile.tempdir = None
        shutil.rmtree(path, ignore_errors=True)


def run_training_locally(
    config: PipelineConfig,
    run_id: str | None = None,
    verbose: bool = True,
    cache: bool = True,
    warm_worker: bool = True,
) -> RunResult:
    """Run the training pipeline locally; never raises for a failed step (the manifest says).
    Steps that completed before for the same inputs are reused unless `cache` is False."""
    return run_locally(
        config, "training", run_id=run_id, verbose=verbose, cache=cache, warm_worker=warm_worker
    )


# Set aside when a run starts and freed just before its final run.json is written, so a disk
# that fills up during the run still has room for the manifest that says what happened.
MANIFEST_RESERVE_BYTES = 256 << 10
_RESERVE_FILE = ".manifest-reserve"


def _reserve_space(path: Path, size: int) -> None:
    with open(path, "wb") as handle:
        if hasattr(os, "posix_fallocate"):  # not on macOS
            os.posix_fallocate(handle.fileno(), 0, size)
        else:  # written zeros take real blocks too (a sparse seek would not)
            handle.write(bytes(size))
            handle.flush()
            os.fsync(handle.fileno())


@contextlib.contextmanager
def _no_cache() -> Iterator[None]:
    yield


def mark_interrupted_runs(runs_root: Path) -> list[str]:
    """Runs still RUNNING whose process is gone (killed, the machine rebooted) become
    INTERRUPTED, and what they left to clean up (their temporary folder, the room reserved for
    their run.json) is removed. Returns their ids."""
    interrupted = []
    host = socket.gethostname()
    for manifest_path in sorted(runs_root.glob(f"*/{RUN_MANIFEST_FILE}")):
        try:
            manifest = json.loads(manifest_path.read_text())
            process = manifest.get("process") or {}
            if manifest.get("status") != "RUNNING" or process.get("host") != host:
                continue
            os.kill(int(process["pid"]), 0)  # still alive: ProcessLookupError if not
        except ProcessLookupError:
            run_dir = manifest_path.parent
            shutil.rmtree(run_dir / "tmp", ignore_errors=True)
            (run_dir / _RESERVE_FILE).unlink(missing_ok=True)
            manifest.update(status="INTERRUPTED", error="its process ended before the run did")
            with contextlib.suppress(OSError):
                write_json_atomic(manifest_path, manifest)
            interrupted.append(manifest["run_id"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not ours to judge: unreadable, or another user's process
    return interrupted


def run_locally(
    config: PipelineConfig,
    kind: str,
    run_id: str | None = None,
    verbose: bool = True,
    cache: bool = True,
    warm_worker: bool = True,
    **parameters,
) -> RunResult:
    """Run one of the pipelines with kfp.local; a failed step is reported in the manifest.
    Unless `verbose`, task output goes to <run dir>/pipeline.log and the terminal shows a line
    per step. The training pipeline reuses steps completed before for the same inputs
    (`pipelines.step_cache`); `cache=False` recomputes them (and records the new results).
    Other pipelines deploy or read changing state (request logs), so they always run.
    With `warm_worker` each task runs in a fork of one process that imported TensorFlow, TFT,
    TFMA, Beam and the steps once for the run (`pipelines.warm_worker`); without it (or when
    that process cannot start) each task is its own subprocess, as kfp.local runs it."""
    from kfp import local

    _use_verbatim_task_arguments()
    run_id = run_id or new_run_id(config)
    run_dir = run_dir_of(config, run_id)
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        raise LocalRootError(
            f"run {run_id} exists already in {run_dir.parent}: pick a new id"
        ) from None
    except OSError as exc:
        raise LocalRootError(
            f"cannot create the run directory {run_dir} ({exc.strerror}): make local.root "
            f"({config.local.root}) a writable folder with free space"
        ) from None
    step_log = run_dir / STEP_LOG_FILE
    started = time.time()
    mark_interrupted_runs(run_dir.parent)
    try:  # run.json exists from the start, so a run that dies still leaves one
        write_json_atomic(
            run_dir / RUN_MANIFEST_FILE,
            {
                **build_manifest(config, run_id, run_dir, [], started, None, kind, "RUNNING"),
                "process": {"host": socket.gethostname(), "pid": os.getpid()},
            },
        )
        _reserve_space(run_dir / _RESERVE_FILE, MANIFEST_RESERVE_BYTES)
    except OSError as exc:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise LocalRootError(
            f"cannot start run {run_id} in {run_dir} ({exc.strerror}): make local.root "
            f"({config.local.root}) a writable folder with free space"
        ) from None
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(run_dir / "artifacts"),
        raise_on_error=True,
    )
    pipeline = build_pipeline(config, kind, target="local")
    if kind == "training":
        parameters["run_id"] = run_id
    caching = (
        step_cache(step_cache_root(config), run_id, str(step_log), reuse=cache)
        if kind == "training"
        else _no_cache()
    )
    error = error_traceback = None
    log_path = run_dir / PIPELINE_LOG_FILE
    with (
        quiet_output(log_path, verbose),
        _run_temp_dir(run_dir / "tmp"),
        caching,
        warm_tasks(enabled=warm_worker),
    ):
        try:
            pipeline(config_json=config.to_json(), step_log=str(step_log), **parameters)
        except Exception as exc:  # kfp.local raises RuntimeError naming the failed task
            error = strip_ansi(f"{type(exc).__name__}: {exc}")
            error_traceback = traceback.format_exc()
    manifest = build_manifest(
        config, run_id, run_dir, read_step_log(step_log), started, error, kind
    )
    manifest["log"] = None if verbose else str(log_path)
    manifest["out_of_space"] = out_of_space(manifest, run_dir)
    (run_dir / _RESERVE_FILE).unlink(missing_ok=True)  # the room for run.json
    try:
        write_json_atomic(run_dir / RUN_MANIFEST_FILE, manifest)
        report = manifest.get("report")
        if report and Path(report).is_file():
            shutil.copyfile(report, run_dir / REPORT_FILE)
            manifest["report"] = str(run_dir / REPORT_FILE)
            write_json_atomic(run_dir / RUN_MANIFEST_FILE, manifest)
    except OSError as exc:  # a full disk must not hide how the run went
        (run_dir / REPORT_FILE).unlink(missing_ok=True)
        manifest["manifest_error"] = f"{RUN_MANIFEST_FILE} or {REPORT_FILE}: {exc}"
    if error_traceback:  # after run.json: the log may be on the disk that filled up
        with contextlib.suppress(OSError), open(log_path, "a") as log:
            log.write(f"\n[mlops] the run stopped:\n{error_traceback}")
    return RunResult(run_id, run_dir, manifest)


# Less free space than this where the run writes, at the end of a failed run: the disk filled up
# (a step's own error saying so may be lost with the disk: its log lines could not be written).
FULL_DISK_BYTES = 64 << 10
_NO_SPACE = ("No space left on device", "[Errno 28]", "File too large", "[Errno 27]")
_FAILED_TASK = re.compile(r"Inner task failed: '?([\w-]+)")


def failed_step(manifest: dict[str, Any]) -> str | None:
    """The step a failed run stopped in: the one recorded as failed, else the task kfp.local
    names (a step that could not even record its failure, e.g. on a full disk)."""
    for name, step in manifest["steps"].items():
        if step["status"] == "FAILED":
            return name
    match = _FAILED_TASK.search(manifest.get("error") or "")
    if not match:
        return None
    task = match.group(1).replace("-", "_")
    return task.removesuffix("_local").removesuffix("_vertex")


def out_of_space(manifest: dict[str, Any], run_dir: Path) -> dict[str, Any] | None:
    """For a failed run: where the space ran out (the free bytes left there), if it did."""
    if manifest["status"] != "FAILED":
        return None
    errors = [manifest.get("error") or ""] + [
        s.get("error", "") for s in manifest["steps"].values()
    ]
    said_so = any(marker in text for text in errors for marker in _NO_SPACE)
    try:
        free = shutil.disk_usage(run_dir).free
    except OSError:
        free = None
    if said_so or (free is not None and free < FULL_DISK_BYTES):
        return {"path": str(run_dir), "free_bytes": free, "step": failed_step(manifest)}
    return None


def out_of_space_advice(manifest: dict[str, Any], local_root: str) -> str | None:
    """One paragraph for a run that failed because the disk under local.root filled up."""
    full = manifest.get("out_of_space")
    if not full:
        return None
    step = full.get("step") or "a step"
    return (
        f"Step {step} failed: no space left on the device that holds local.root ({local_root}; "
        f"{full.get('free_bytes')} bytes free when the run ended). The steps that completed are "
        "kept and the next run reuses them. Free space there (old runs under runs/, cache "
        "entries under cache/) or set local.root in the config to a folder on a larger disk, "
        f"then run `mlops run` again. Details: {manifest.get('log') or 'the output above'}; "
        f"the run's record: {Path(manifest['run_dir']) / RUN_MANIFEST_FILE}."
    )


def build_manifest(
    config: PipelineConfig,
    run_id: str,
    run_dir: Path,
    records: list[dict[str, Any]],
    started: float,
    error: str | None,
    kind: str = "training",
    status: str | None = None,
) -> dict[str, Any]:
    steps: dict[str, dict[str, Any]] = {}
    for record in records:
        steps[record["step"]] = {
            "status": record["status"],
            "duration_s": record["duration_s"],
            **({"cached_from": record["cached_from"]} if record.get("cached_from") else {}),
            **({"outputs": record["outputs"]} if record.get("outputs") else {}),
            **({"error": strip_ansi(record["error"])} if record.get("error") else {}),
        }
    # tune only runs when tuning is enabled
    order = [s for s in STEP_ORDERS[kind] if s != "tune" or config.tuning.enabled]
    for name in order:
        steps.setdefault(name, {"status": "NOT_RUN"})
    results = {r["step"]: r.get("result") for r in records if r["status"] in ("SUCCEEDED", CACHED)}
    evaluation = results.get("evaluate") or {}
    registration = results.get("register") or {}
    failed = error is not None or any(s["status"] == "FAILED" for s in steps.values())
    return {
        "run_id": run_id,
        "pipeline": f"{config.name}-{kind}",
        "config_hash": config_hash(config),
        "data_fingerprint": (results.get("ingest") or {}).get("fingerprint"),
        "config": config.model_dump(mode="json"),
        "target": "local",
        "status": status or ("FAILED" if failed else "SUCCEEDED"),
        "error": error,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "run_dir": str(run_dir),
        "steps": {name: steps[name] for name in [*order, *sorted(set(steps) - set(order))]},
        "reused_steps": {
            name: step["cached_from"] for name, step in steps.items() if step.get("cached_from")
        },
        "results": {name: result for name, result in results.items() if kind != "training"},
        "data": (results.get("ingest") or {}).get("rows"),
        "tuning": results.get("tune"),
        "metrics": (evaluation.get("metrics") or {}).get("overall", {}),
        "baseline_metrics": evaluation.get("baseline_metrics", {}),
        "blessed": evaluation.get("blessed"),
        "blessing_failures": evaluation.get("failures", []),
        "gates": evaluation.get("gates", []),
        "baselines": evaluation.get("baselines", {}),
        "readiness": (results.get("validate_data") or {}).get("readiness"),
        "fit_diagnosis": ((results.get("train") or {}).get("fit_diagnosis") or {}).get("text"),
        "registered_version": registration.get("version"),
        "champion_version": registration.get("champion"),
        "success_criterion": {
            "metric": config.framing.success_metric,
            "threshold": config.framing.success_threshold,
            "value": (evaluation.get("metrics") or {})
            .get("overall", {})
            .get(config.framing.success_metric),
        },
        "report": (results.get("report") or {}).get("path"),
    }


def summarize(manifest: dict[str, Any]) -> str:
    """A short human summary of a run manifest."""
    lines = [f"run {manifest['run_id']}: {manifest['status']} in {manifest['duration_s']}s"]
    for name, step in manifest["steps"].items():
        duration = f"{step['duration_s']:>6.1f}s" if "duration_s" in step else "       "
        detail = step.get("error", "")
        if step.get("cached_from"):
            detail = f"reused from run {step['cached_from']}"
        lines.append(f"  {name:<14} {step['status']:<10} {duration}  {detail}")
    if manifest.get("data"):
        lines.append("  rows: " + ", ".join(f"{k} {v}" for k, v in manifest["data"].items()))
    if manifest.get("tuning"):
        tuning = manifest["tuning"]
        lines.append(
            f"  tuning: trial {tuning['best_trial']} best of {tuning['finished_trials']} "
            f"(eval {tuning['metric']} {tuning['best_value']:.4f}): {tuning['best_params']}"
        )
    if manifest.get("metrics"):
        shown = {k: v for k, v in manifest["metrics"].items() if k != "example_count"}
        lines.append("  test metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))
    if manifest.get("baseline_metrics"):
        shown = {k: v for k, v in manifest["baseline_metrics"].items() if k != "example_count"}
        lines.append("  champion:     " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))
    if manifest.get("fit_diagnosis"):
        lines.append(f"  fit:          {manifest['fit_diagnosis']}")
    criterion = manifest.get("success_criterion") or {}
    if criterion.get("value") is not None:
        met = "met" if criterion["value"] >= criterion["threshold"] else "NOT met"
        lines.append(
            f"  success criterion {criterion['metric']} >= {criterion['threshold']}: {met} "
            f"({criterion['value']:.4f})"
        )
    for gate in manifest.get("gates") or []:
        mark = "pass" if gate["passed"] else "FAIL"
        lines.append(f"  gate {gate['name']:<22} {mark}  {gate['detail']}")
    if manifest.get("blessed") is not None:
        verdict = "BLESSED" if manifest["blessed"] else "NOT BLESSED"
        lines.append(f"  blessing: {verdict}")
    if manifest.get("registered_version") is not None:
        lines.append(
            f"  registered version {manifest['registered_version']}; champion is version "
            f"{manifest['champion_version']}"
        )
    failed_steps = [n for n, step in manifest["steps"].items() if step.get("error")]
    if manifest.get("error") and not failed_steps:
        lines.append(f"  error: {manifest['error'][:2000]}")
    if manifest.get("report"):
        lines.append(f"  report: {manifest['report']}")
    if manifest.get("log"):
        lines.append(
            f"  log: {manifest['log']} (every step's full output; --verbose shows it live)"
        )
    lines.append(f"  manifest: {Path(manifest['run_dir']) / RUN_MANIFEST_FILE}")
    if manifest.get("manifest_error"):
        lines.append(f"  (not updated at the end: {manifest['manifest_error']})")
    return "\n".join(lines)
