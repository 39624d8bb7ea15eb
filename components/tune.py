"""Tune: search `tuning.search_space` for the training parameters that do best on the eval split,
and hand the training step the config with the best trial's parameters.

Locally the search is an Optuna study whose trials call the training function itself. On Vertex
it is a hyperparameter tuning job (Vizier) whose trials run this module in the project image
(`python -m components.tune ...`, Vizier appending `--<parameter>=<value>`) and report their figure
through `cloudml-hypertune`; `vertex_tuning_result` then reads the trials back from the job. Both
write the same `trials.json` and `tuned_config.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mlops.artifacts import TRIALS_FILE, TUNED_CONFIG_FILE
from mlops.config import PipelineConfig
from mlops.io import atomic_dir, write_json_atomic
from mlops.tuning import (
    apply_parameters,
    direction,
    optuna_sampler,
    parse_trial_arguments,
    suggest,
    trial_config,
)


class TuningError(RuntimeError):
    """The search produced no usable trial; the message says what failed and what to change."""


def train_trial(config: PipelineConfig, dataset_dir: str, transform_dir: str) -> dict[str, Any]:
    """Train once with `config` (a trial's) and return training's summary; the model is thrown
    away: the training step retrains with the best parameters on the same data."""
    from components.train import run_train

    with tempfile.TemporaryDirectory(prefix="mlops-trial-") as scratch:
        return run_train(config, dataset_dir, transform_dir, Path(scratch) / "model")


def write_tuning(
    output_dir: str | Path, config: PipelineConfig, trials: list[dict[str, Any]]
) -> dict[str, Any]:
    """Pick the best finished trial, write every trial and the tuned config, return a summary."""
    tuning = config.tuning
    finished = [t for t in trials if t["state"] == "COMPLETE" and t["value"] is not None]
    if not finished:
        states = sorted({t["state"] for t in trials}) or ["no trials"]
        raise TuningError(
            f"none of the {len(trials)} tuning trials finished ({', '.join(states)}); see the "
            "step log for the first failure, and narrow tuning.search_space"
        )
    pick = min if direction(tuning) == "minimize" else max
    best = pick(finished, key=lambda t: t["value"])
    tuned = apply_parameters(config, best["params"])
    summary = {
        "metric": tuning.metric,
        "direction": direction(tuning),
        "best_trial": best["number"],
        "best_value": best["value"],
        "best_params": best["params"],
        "trials": len(trials),
        "finished_trials": len(finished),
    }
    with atomic_dir(output_dir) as out:
        write_json_atomic(out / TRIALS_FILE, {**summary, "trial_list": trials})
        (out / TUNED_CONFIG_FILE).write_text(tuned.to_json())
    return summary


def tuned_config_json(output_dir: str | Path) -> str:
    """The config (JSON) the best trial's parameters give, as the tune step wrote it."""
    return (Path(output_dir) / TUNED_CONFIG_FILE).read_text()


def run_tuning(
    config: PipelineConfig,
    dataset_dir: str | Path,
    transform_dir: str | Path,
    output_dir: str | Path,
) -> dict[str, Any]:
    """The local search: `tuning.max_trials` Optuna trials, one after another, each a real
    training on the train split judged on the eval split."""
    import optuna

    tuning = config.tuning
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=direction(tuning), sampler=optuna_sampler(tuning))
    trials: list[dict[str, Any]] = []

    def objective(trial: Any) -> float:
        params = suggest(trial, tuning)
        started = time.time()
        result = train_trial(trial_config(config, params), str(dataset_dir), str(transform_dir))
        value = float(result[f"eval_{tuning.metric}"])
        trials.append(
            {
                "number": trial.number,
                "params": params,
                "value": value,
                "state": "COMPLETE",
                "epochs_run": result["epochs_run"],
                "seconds": round(time.time() - started, 2),
            }
        )
        print(
            f"[mlops] tune: trial {trial.number + 1}/{tuning.max_trials} "
            f"{tuning.metric}={value:.4f} {params}",
            flush=True,
        )
        return value

    # A grid smaller than max_trials stops when every point has been tried.
    study.optimize(objective, n_trials=tuning.max_trials)
    return write_tuning(output_dir, config, trials)


# --- Vertex AI: trials as a hyperparameter tuning job -------------------------------------------


def vertex_trial_worker_pool_specs(
    config: PipelineConfig, dataset_path: str, transform_path: str
) -> list[dict[str, Any]]:
    """The worker pool each trial runs in: the training machine and image, this module as the
    command, the step's inputs on the Cloud Storage FUSE mount that custom jobs have at /gcs/."""
    vertex = config.vertex
    pool = vertex.training
    machine: dict[str, Any] = {"machine_type": pool.machine_type}
    if pool.accelerator_type:
        machine.update(
            accelerator_type=pool.accelerator_type, accelerator_count=pool.accelerator_count
        )
    return [
        {
            "machine_spec": machine,
            "replica_count": 1,
            "container_spec": {
                "image_uri": vertex.training_image,
                "command": ["python", "-m", "components.tune"],
                "args": [
                    "--config-json",
                    config.to_json(),
                    "--dataset",
                    dataset_path,
                    "--transform",
                    transform_path,
                ],
            },
        }
    ]


def _job_name(gcp_resources: str) -> str:
    """The tuning job's resource name from GCPC's `gcp_resources` output."""
    try:
        resources = json.loads(gcp_resources)["resources"]
        uri = next(
            r["resourceUri"] for r in resources if r["resourceType"] == "HyperparameterTuningJob"
        )
    except (json.JSONDecodeError, KeyError, TypeError, StopIteration):
        raise TuningError(
            f"gcp_resources {gcp_resources[:200]!r} names no HyperparameterTuningJob"
        ) from None
    return uri[uri.index("projects/") :]


def _trial_record(trial: Any, metric: str) -> dict[str, Any]:
    from google.cloud.aiplatform_v1.types import Trial

    measured = {m.metric_id: m.value for m in trial.final_measurement.metrics}
    complete = trial.state == Trial.State.SUCCEEDED and metric in measured
    return {
        "number": int(trial.id),
        "params": {p.parameter_id: p.value for p in trial.parameters},
        "value": measured.get(metric) if complete else None,
        "state": "COMPLETE" if complete else Trial.State(trial.state).name,
    }


def vertex_tuning_result(
    config: PipelineConfig, gcp_resources: str, output_dir: str | Path, credentials: Any = None
) -> dict[str, Any]:
    """Read the finished tuning job's trials back and write them as the local search does."""
    from google.cloud import aiplatform

    job = aiplatform.HyperparameterTuningJob.get(
        _job_name(gcp_resources),
        project=config.vertex.project,
        location=config.vertex.region,
        credentials=credentials,
    )
    trials = [_trial_record(trial, config.tuning.metric) for trial in job.trials]
    return write_tuning(output_dir, config, trials)


def run_vertex_trial(argv: list[str]) -> float:
    """One Vizier trial inside the project image: train with the suggested parameters, report
    the eval figure to the tuning service."""
    parser = argparse.ArgumentParser(prog="python -m components.tune")
    parser.add_argument("--config-json", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--transform", required=True)
    known, parameter_args = parser.parse_known_args(argv)
    config = PipelineConfig.from_json(known.config_json)
    params = parse_trial_arguments(parameter_args, config.tuning)
    result = train_trial(trial_config(config, params), known.dataset, known.transform)
    value = float(result[f"eval_{config.tuning.metric}"])
    import hypertune

    hypertune.HyperTune().report_hyperparameter_tuning_metric(
        hyperparameter_metric_tag=config.tuning.metric,
        metric_value=value,
        global_step=int(result["epochs_run"]),
    )
    print(f"trial {params}: {config.tuning.metric}={value:.4f}", flush=True)
    return value


if __name__ == "__main__":
    run_vertex_trial(sys.argv[1:])
