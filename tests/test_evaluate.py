"""Evaluate step: TFMA on the test split, value thresholds and a change threshold against the champion decide the blessing."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.evaluate import run_evaluate
from mlops.artifacts import read_split


def test_tfma_result_loads_and_blesses(penguins_chain) -> None:
    import tensorflow_model_analysis as tfma

    config, paths, results = penguins_chain
    evaluation = results["evaluate"]
    assert evaluation["blessed"] is True and evaluation["has_baseline"] is False
    assert evaluation["metrics"]["overall"]["accuracy"] >= 0.95
    assert tfma.load_validation_result(str(paths["evaluation"])).validation_ok
    result = tfma.load_eval_result(str(paths["evaluation"]))
    slices = {tuple(key) for key, _ in result.slicing_metrics}
    assert (("island", "Biscoe"),) in slices and (("sex", "female"),) in slices
    test_rows = len(read_split(paths["data"], "test"))
    assert sum(map(sum, evaluation["confusion_matrix"])) == test_rows
    assert evaluation["metrics"]["overall"]["example_count"] == test_rows


def test_change_threshold_against_a_champion(penguins_chain, tmp_path: Path) -> None:
    config, paths, _ = penguins_chain
    same = run_evaluate(config, paths["data"], paths["model"], tmp_path / "vs-self", paths["model"])
    assert same["has_baseline"] and same["blessed"]
    assert same["baseline_metrics"]["accuracy"] == pytest.approx(
        same["metrics"]["overall"]["accuracy"]
    )


def test_unmet_value_threshold_refuses_the_blessing(penguins_chain, tmp_path: Path) -> None:
    config, paths, _ = penguins_chain
    evaluation = config.evaluation.model_dump()
    evaluation["thresholds"] = [{"metric": "accuracy", "lower_bound": 1.0}]
    strict = config.with_overrides(evaluation=evaluation)
    result = run_evaluate(strict, paths["data"], paths["model"], tmp_path / "strict")
    if result["metrics"]["overall"]["accuracy"] < 1.0:
        assert result["blessed"] is False
        assert any("accuracy" in failure for failure in result["failures"])
    else:  # a perfect model passes any bound; the gate itself is then untestable on this split
        assert result["blessed"] is True


def test_every_gate_is_recorded_with_its_numbers(penguins_chain) -> None:
    config, paths, results = penguins_chain
    evaluation = results["evaluate"]
    gates = {g["name"]: g for g in evaluation["gates"]}
    assert list(gates) == [
        "evaluation thresholds",
        "success criterion",
        "beats baselines",
        "fairness",
    ]
    assert evaluation["blessed"] == all(g["passed"] for g in gates.values())
    assert set(evaluation["baselines"]) == {"majority class", "linear model"}
    majority = evaluation["baselines"]["majority class"]["accuracy"]
    assert 0.3 < majority < 0.6  # Adelie's share of the test split
    assert (
        gates["success criterion"]["values"]["value"]
        == evaluation["metrics"]["overall"]["accuracy"]
    )
    sexes = evaluation["fairness"]["sex"]["groups"]
    assert {"male", "female"} <= set(sexes)
    assert sum(group["rows"] for group in sexes.values()) == evaluation["examples"]


def test_fairness_groups_from_tfma_match_the_models_own_predictions(penguins_chain) -> None:
    """Per-sex accuracy as TFMA sliced it equals a hand count over the served signature's
    predictions; three species: TFMA's fairness rates are binary, so accuracy is all there is."""
    import numpy as np

    from mlops.features import category_text, encode_labels, frame_to_arrays
    from mlops.serving.server import load_model

    config, paths, results = penguins_chain
    evaluation = results["evaluate"]
    test = read_split(paths["data"], "test")
    arrays = frame_to_arrays(test, config.features)
    predicted = load_model(paths["model"]).predict_raw(arrays)["probabilities"].argmax(axis=1)
    labels = np.array(encode_labels(test[config.data.label].tolist(), evaluation["classes"], "t"))
    groups = test["sex"].map(category_text).replace("", "(missing)").to_numpy()
    sexes = evaluation["fairness"]["sex"]["groups"]
    assert set(sexes) == set(groups)
    for sex, metrics in sexes.items():
        rows = groups == sex
        assert set(metrics) == {"rows", "accuracy"}
        assert metrics["rows"] == rows.sum()
        assert metrics["accuracy"] == pytest.approx(np.mean(predicted[rows] == labels[rows]))
    accuracy = [
        m["accuracy"] for m in sexes.values() if m["rows"] >= config.fairness.min_group_size
    ]
    gap = evaluation["fairness"]["sex"]["gaps"]["accuracy"]["gap"]
    assert gap == pytest.approx(max(accuracy) - min(accuracy), abs=1e-4)


def test_fixed_batches_give_the_metrics_of_tfma_defaults(penguins_chain, tmp_path: Path) -> None:
    """The step feeds the model fixed batches (INFERENCE_BATCH_SIZE); TFMA's own
    run_model_analysis (adaptive batches from one row up) writes the same metrics and plots
    for every slice on the same examples (to float32 precision)."""
    import tensorflow_model_analysis as tfma

    from components.evaluate import CANDIDATE, analyze, build_eval_config

    config, paths, results = penguins_chain
    eval_config = build_eval_config(config, len(results["evaluate"]["classes"]), False)
    examples = paths["evaluation"] / "test_examples.tfrecord"
    analyze(eval_config, {CANDIDATE: paths["model"]}, examples, tmp_path, config.beam_args, None)
    ours = tfma.load_eval_result(str(paths["evaluation"]))
    defaults = tfma.load_eval_result(str(tmp_path))
    assert len(ours.slicing_metrics) > 5  # overall, per island, per sex, per group
    for name in ("slicing_metrics", "plots"):
        # keyed by slice: the order TFMA writes slices in is not part of the result
        expected, got = _leaves(dict(getattr(defaults, name))), _leaves(dict(getattr(ours, name)))
        assert got.keys() == expected.keys(), name
        numbers = {key for key, value in expected.items() if isinstance(value, float)}
        assert numbers, name
        # float32 model outputs can move by an ulp with the batch shape: 1e-6, not exact
        assert {k: got[k] for k in numbers} == pytest.approx(
            {k: expected[k] for k in numbers}, rel=1e-6, abs=1e-9, nan_ok=True
        )
        assert {k: got[k] for k in got.keys() - numbers} == {
            k: expected[k] for k in expected.keys() - numbers
        }


def _leaves(value, path: tuple = ()) -> dict[tuple, object]:
    """{path: value} of every leaf in TFMA's nested per-slice dicts and lists; numbers as floats."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _leaves(item, (*path, key)).items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _leaves(item, (*path, i)).items()}
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {path: float(value)}
    return {path: value}
