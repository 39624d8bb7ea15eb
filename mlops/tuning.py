"""The `tuning.search_space` in its two dialects, Optuna's suggestions for the local search and
Vertex Vizier's study spec for a hyperparameter tuning job, and the one rule that turns a trial's
parameter values into the training config, so both searches train the same model."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from mlops.config import ConfigError, ParameterSpec, PipelineConfig, TuningConfig

# Vizier's search algorithms by our names (ALGORITHM_UNSPECIFIED is Vizier's Bayesian default).
VERTEX_ALGORITHMS = {
    "bayesian": "ALGORITHM_UNSPECIFIED",
    "random": "RANDOM_SEARCH",
    "grid": "GRID_SEARCH",
}


def direction(tuning: TuningConfig) -> str:
    return "minimize" if tuning.metric == "loss" else "maximize"


def grid_values(spec: ParameterSpec) -> list[Any]:
    """Every value a grid search visits for one parameter (not defined for doubles)."""
    if spec.type == "integer":
        return list(range(int(spec.min), int(spec.max) + 1))
    return list(spec.values)


def optuna_sampler(tuning: TuningConfig) -> Any:
    import optuna

    if tuning.algorithm == "random":
        return optuna.samplers.RandomSampler(seed=tuning.seed)
    if tuning.algorithm == "grid":
        space = {name: grid_values(spec) for name, spec in tuning.search_space.items()}
        return optuna.samplers.GridSampler(space, seed=tuning.seed)
    return optuna.samplers.TPESampler(seed=tuning.seed)


def suggest(trial: Any, tuning: TuningConfig) -> dict[str, Any]:
    """One point of the search space from an Optuna trial."""
    params: dict[str, Any] = {}
    for name, spec in tuning.search_space.items():
        log = spec.scale == "log"
        if spec.type == "double":
            params[name] = trial.suggest_float(name, spec.min, spec.max, log=log)
        elif spec.type == "integer":
            params[name] = trial.suggest_int(name, int(spec.min), int(spec.max), log=log)
        else:
            params[name] = trial.suggest_categorical(name, list(spec.values))
    return params


def study_spec_parameters(tuning: TuningConfig) -> list[str]:
    """The search space as GCPC's hyperparameter tuning op takes it (serialised StudySpec
    ParameterSpecs)."""
    from google.cloud.aiplatform import hyperparameter_tuning as hpt
    from google_cloud_pipeline_components.v1.hyperparameter_tuning_job import (
        serialize_parameters,
    )

    specs: dict[str, Any] = {}
    for name, spec in tuning.search_space.items():
        if spec.type == "double":
            specs[name] = hpt.DoubleParameterSpec(min=spec.min, max=spec.max, scale=spec.scale)
        elif spec.type == "integer":
            specs[name] = hpt.IntegerParameterSpec(
                min=int(spec.min), max=int(spec.max), scale=spec.scale
            )
        elif spec.type == "discrete":
            specs[name] = hpt.DiscreteParameterSpec(values=list(spec.values), scale="linear")
        else:
            specs[name] = hpt.CategoricalParameterSpec(values=list(spec.values))
    return serialize_parameters(specs)


def study_spec_metrics(tuning: TuningConfig) -> list[str]:
    from google_cloud_pipeline_components.v1.hyperparameter_tuning_job import serialize_metrics

    return serialize_metrics({tuning.metric: direction(tuning)})


def parse_trial_arguments(arguments: list[str], tuning: TuningConfig) -> dict[str, Any]:
    """The `--name=value` arguments Vizier appends to a trial's command, typed by the space."""
    params: dict[str, Any] = {}
    for argument in arguments:
        name, sep, text = argument.removeprefix("--").partition("=")
        spec = tuning.search_space.get(name)
        if not argument.startswith("--") or not sep or spec is None:
            raise ConfigError(
                f"trial argument {argument!r} is not --<parameter>=<value> for a parameter of "
                f"tuning.search_space {sorted(tuning.search_space)}"
            )
        if spec.type == "categorical":
            params[name] = text
        elif spec.type == "integer":
            params[name] = int(float(text))
        else:
            params[name] = float(text)
    return params


def _training_value(name: str, value: Any) -> Any:
    if name == "hidden_units" and isinstance(value, str):
        try:
            return [int(units) for units in value.split(",")]
        except ValueError:
            raise ConfigError(
                f"tuning.search_space.hidden_units value {value!r}: expected layer sizes "
                'separated by commas, e.g. "64,32"'
            ) from None
    if isinstance(value, float) and value.is_integer() and name in ("batch_size", "embedding_dim"):
        return int(value)
    return value


def apply_parameters(config: PipelineConfig, params: dict[str, Any]) -> PipelineConfig:
    """The config with `params` set in `training`, validated again (what the best trial's
    parameters give the training step)."""
    training = config.training.model_dump()
    training.update({name: _training_value(name, value) for name, value in params.items()})
    try:
        return config.with_overrides(training=training)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})"
            for e in exc.errors()
        )
        raise ConfigError(
            f"tuning parameters {params} give an invalid config: {problems}"
        ) from None


def trial_config(config: PipelineConfig, params: dict[str, Any]) -> PipelineConfig:
    """The config of one trial: the parameters, and `tuning.epochs` when set."""
    tuned = apply_parameters(config, params)
    if config.tuning.epochs is None:
        return tuned
    return tuned.with_overrides(
        training={**tuned.training.model_dump(), "epochs": config.tuning.epochs}
    )
