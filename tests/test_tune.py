"""Tune step: the search space in config, Optuna locally, a Vertex hyperparameter tuning job
(Vizier) on Vertex, and the best trial's parameters feeding training."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
from google.auth.credentials import AnonymousCredentials

from components.tune import (
    TuningError,
    run_tuning,
    run_vertex_trial,
    tuned_config_json,
    vertex_trial_worker_pool_specs,
    vertex_tuning_result,
    write_tuning,
)
from mlops.artifacts import TRIALS_FILE
from mlops.config import ConfigError, PipelineConfig, load_config
from mlops.tuning import apply_parameters, parse_trial_arguments, study_spec_parameters
from tests.conftest import on_vertex

SPACE = {
    "learning_rate": {"type": "double", "min": 0.001, "max": 0.1, "scale": "log"},
    "hidden_units": {"type": "categorical", "values": ["8", "16,8"]},
    "batch_size": {"type": "discrete", "values": [16, 64]},
}


def _tuning(config: PipelineConfig, **tuning) -> PipelineConfig:
    settings = {"enabled": True, "search_space": SPACE, "max_trials": 3, "epochs": 3, **tuning}
    return config.with_overrides(tuning=settings)


def test_search_space_errors_name_the_parameter(penguins_config, tmp_path: Path) -> None:
    bad_spaces = {
        "momentum": ({"momentum": {"type": "double", "min": 0, "max": 1}}, "momentum"),
        "min>max": ({"dropout": {"type": "double", "min": 0.5, "max": 0.1}}, "min < max"),
        "log at 0": (
            {"learning_rate": {"type": "double", "min": 0, "max": 1, "scale": "log"}},
            "min > 0",
        ),
        "numbers as categories": (
            {"hidden_units": {"type": "categorical", "values": [8, 16]}},
            "two strings",
        ),
    }
    for name, (space, expected) in bad_spaces.items():
        path = tmp_path / f"{name}.yaml"
        raw = json.loads(penguins_config.to_json())
        raw["tuning"] = {"enabled": True, "search_space": space}
        path.write_text(json.dumps(raw))
        with pytest.raises(ConfigError, match=r"  tuning[.:]") as error:
            load_config(path)
        assert expected in str(error.value), name
    with pytest.raises(ValueError, match="needs a search_space"):
        penguins_config.with_overrides(tuning={"enabled": True})
    with pytest.raises(ValueError, match="grid search"):
        _tuning(penguins_config, algorithm="grid")


def test_trial_parameters_become_the_training_config(penguins_config) -> None:
    config = _tuning(penguins_config)
    tuned = apply_parameters(config, {"hidden_units": "16,8", "batch_size": 64.0, "dropout": 0.2})
    assert tuned.training.hidden_units == [16, 8]
    assert tuned.training.batch_size == 64 and tuned.training.dropout == 0.2
    with pytest.raises(ConfigError, match="hidden_units value 'wide'"):
        apply_parameters(config, {"hidden_units": "wide"})
    with pytest.raises(ConfigError, match="dropout"):
        apply_parameters(config, {"dropout": 1.5})
    # Vizier appends --name=value; values are typed by the search space
    args = ["--learning_rate=0.01", "--hidden_units=16,8", "--batch_size=64"]
    assert parse_trial_arguments(args, config.tuning) == {
        "learning_rate": 0.01,
        "hidden_units": "16,8",
        "batch_size": 64.0,
    }
    with pytest.raises(ConfigError, match="--epochs=3"):
        parse_trial_arguments(["--epochs=3"], config.tuning)


def test_study_spec_is_what_vertex_accepts(penguins_config) -> None:
    from google.cloud.aiplatform_v1.types import StudySpec

    specs = [
        StudySpec.ParameterSpec.from_json(s if isinstance(s, str) else json.dumps(s))
        for s in study_spec_parameters(_tuning(penguins_config).tuning)
    ]
    by_id = {spec.parameter_id: spec for spec in specs}
    assert by_id["learning_rate"].double_value_spec.min_value == 0.001
    assert by_id["learning_rate"].scale_type == StudySpec.ParameterSpec.ScaleType.UNIT_LOG_SCALE
    assert list(by_id["hidden_units"].categorical_value_spec.values) == ["8", "16,8"]
    assert list(by_id["batch_size"].discrete_value_spec.values) == [16, 64]


def test_local_search_trains_every_trial_and_picks_the_best(penguins_chain, tmp_path: Path) -> None:
    base, paths, _ = penguins_chain
    config = _tuning(base)
    summary = run_tuning(config, paths["data"], paths["transform"], tmp_path / "tuning")
    record = json.loads((tmp_path / "tuning" / TRIALS_FILE).read_text())
    trials = record["trial_list"]
    assert len(trials) == 3 and summary["finished_trials"] == 3
    assert all(1 <= t["epochs_run"] <= 3 for t in trials)  # tuning.epochs, not training.epochs
    values = [t["value"] for t in trials]
    assert summary["best_value"] == min(values)  # loss is minimised
    best = next(t for t in trials if t["value"] == min(values))
    tuned = PipelineConfig.from_json(tuned_config_json(tmp_path / "tuning"))
    assert tuned.training.learning_rate == pytest.approx(best["params"]["learning_rate"])
    assert tuned.training.epochs == base.training.epochs  # the final training keeps its epochs
    assert len({t["params"]["learning_rate"] for t in trials}) == 3  # a real search


def test_no_finished_trial_is_a_clear_error(penguins_config, tmp_path: Path) -> None:
    config = _tuning(penguins_config)
    failed = [{"number": 1, "params": {}, "value": None, "state": "FAILED"}]
    with pytest.raises(TuningError, match="none of the 1 tuning trials finished"):
        write_tuning(tmp_path / "out", config, failed)
    assert not (tmp_path / "out").exists()


def test_vertex_trial_reports_its_metric_to_the_tuning_service(
    penguins_chain, tmp_path: Path, monkeypatch
) -> None:
    base, paths, _ = penguins_chain
    config = _tuning(base, metric="accuracy")
    metric_file = tmp_path / "hypertune" / "output.metrics"
    monkeypatch.setenv("CLOUD_ML_HP_METRIC_FILE", str(metric_file))
    monkeypatch.setenv("CLOUD_ML_TRIAL_ID", "7")
    (spec,) = vertex_trial_worker_pool_specs(config, str(paths["data"]), str(paths["transform"]))
    command = spec["container_spec"]["command"]
    assert command == ["python", "-m", "components.tune"]
    argv = [*spec["container_spec"]["args"], "--learning_rate=0.02", "--hidden_units=8"]
    argv.append("--batch_size=16")
    value = run_vertex_trial(argv)
    (reported,) = [json.loads(line) for line in metric_file.read_text().splitlines()]
    assert reported["trial"] == "7" and float(reported["accuracy"]) == pytest.approx(value)
    assert 0.5 < value <= 1.0


def test_vertex_result_reads_the_trials_back(penguins_config, tmp_path: Path) -> None:
    from google.cloud import aiplatform_v1
    from google.cloud.aiplatform_v1.services.job_service import JobServiceClient
    from google.cloud.aiplatform_v1.types import Measurement, Trial
    from google.protobuf import struct_pb2

    config = on_vertex(_tuning(penguins_config), project="my-project", region="europe-west4")
    name = "projects/my-project/locations/europe-west4/hyperparameterTuningJobs/42"

    def trial(number: int, state, loss: float | None, rate: float) -> Trial:
        metrics = [] if loss is None else [Measurement.Metric(metric_id="loss", value=loss)]
        return Trial(
            id=str(number),
            state=state,
            parameters=[
                Trial.Parameter(
                    parameter_id="learning_rate", value=struct_pb2.Value(number_value=rate)
                ),
                Trial.Parameter(
                    parameter_id="hidden_units", value=struct_pb2.Value(string_value="16,8")
                ),
            ],
            final_measurement=Measurement(metrics=metrics),
        )

    job = aiplatform_v1.HyperparameterTuningJob(
        name=name,
        display_name="penguins-tune",
        state=aiplatform_v1.JobState.JOB_STATE_SUCCEEDED,
        trials=[
            trial(1, Trial.State.SUCCEEDED, 0.30, 0.01),
            trial(2, Trial.State.SUCCEEDED, 0.12, 0.05),
            trial(3, Trial.State.INFEASIBLE, None, 0.09),
        ],
    )
    resources = {
        "resources": [
            {
                "resourceType": "HyperparameterTuningJob",
                "resourceUri": f"https://europe-west4-aiplatform.googleapis.com/v1/{name}",
            }
        ]
    }
    with mock.patch.object(
        JobServiceClient, "get_hyperparameter_tuning_job", return_value=job
    ) as get:
        summary = vertex_tuning_result(
            config, json.dumps(resources), tmp_path / "tuning", credentials=AnonymousCredentials()
        )
    assert get.call_args.kwargs["name"] == name
    assert summary["best_trial"] == 2 and summary["finished_trials"] == 2
    tuned = PipelineConfig.from_json(tuned_config_json(tmp_path / "tuning"))
    assert tuned.training.learning_rate == 0.05 and tuned.training.hidden_units == [16, 8]
    states = [
        t["state"]
        for t in json.loads((tmp_path / "tuning" / TRIALS_FILE).read_text())["trial_list"]
    ]
    assert states == ["COMPLETE", "COMPLETE", "INFEASIBLE"]
    with pytest.raises(TuningError, match="names no HyperparameterTuningJob"):
        vertex_tuning_result(config, "{}", tmp_path / "other", credentials=AnonymousCredentials())


def test_compiled_vertex_pipeline_tunes_with_vizier_before_training(
    penguins_config, tmp_path: Path
) -> None:
    from pipelines.vertex import compile_pipeline

    config = on_vertex(
        _tuning(penguins_config, max_trials=12, parallel_trials=3, algorithm="random"),
        service_account="pipelines@my-project.iam.gserviceaccount.com",
    )
    spec = json.loads(
        json.dumps(
            __import__("yaml").safe_load(
                compile_pipeline(config, "training", "vertex", tmp_path / "t.yaml").read_text()
            )
        )
    )
    tasks = spec["root"]["dag"]["tasks"]
    tune = tasks["hyperparameter-tuning-job"]
    params = tune["inputs"]["parameters"]
    assert params["max_trial_count"]["runtimeValue"]["constant"] == 12
    assert params["parallel_trial_count"]["runtimeValue"]["constant"] == 3
    assert params["study_spec_algorithm"]["runtimeValue"]["constant"] == "RANDOM_SEARCH"
    ids = {
        json.loads(p)["parameter_id"] if isinstance(p, str) else p["parameter_id"]
        for p in params["study_spec_parameters"]["runtimeValue"]["constant"]
    }
    assert ids == set(SPACE)
    assert (
        params["worker_pool_specs"]["taskOutputParameter"]["producerTask"] == "vertex-tuning-specs"
    )
    # training (the custom job) and every later step get the tuned config
    for step in ("train", "evaluate", "explain", "report"):
        tuned = tasks[step]["inputs"]["parameters"]["config_json"]["taskOutputParameter"]
        assert tuned["producerTask"] == "vertex-tuning-result", step
    assert "v1.custom_job.launcher" in json.dumps(spec["deploymentSpec"]["executors"]["exec-train"])


# The local pipeline tuning then training with the best trial runs in
# tests/test_pipeline_local.py (the second penguins run tunes).
