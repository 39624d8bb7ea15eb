"""The blessing's gates and baselines as plain functions: the success criterion (undefined metrics
fail, never crash), beating the best baseline by the configured margin, fairness gaps between
groups, and the baselines themselves (majority class, linear model, rules)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from mlops.baselines import (
    RuleError,
    classification_metrics,
    fit_baselines,
    linear_model,
    majority_class,
    parse_rule,
)
from mlops.config import FeatureConfig, RuleConfig
from mlops.gates import baselines_gate, fairness, success_criterion_gate
from tests.conftest import config_in


def test_success_criterion_passes_fails_and_refuses_undefined_metrics(tmp_path) -> None:
    config = config_in(tmp_path, "penguins")  # accuracy >= 0.95
    assert success_criterion_gate(config, {"accuracy": 0.97})["passed"]
    failed = success_criterion_gate(config, {"accuracy": 0.91})
    assert not failed["passed"] and "0.9100 < 0.95" in failed["detail"]
    for undefined in ({}, {"accuracy": math.nan}):
        gate = success_criterion_gate(config, undefined)
        assert not gate["passed"] and "undefined" in gate["detail"]


def test_the_model_must_reach_the_best_baseline_plus_the_margin(tmp_path) -> None:
    config = config_in(tmp_path, "taxi")  # auc, margin 0
    baselines = {"majority class": {"auc": 0.5}, "rule: cards": {"auc": 0.906}}
    assert baselines_gate(config, {"auc": 0.94}, baselines)["passed"]
    lost = baselines_gate(config, {"auc": 0.90}, baselines)
    assert not lost["passed"] and "'rule: cards'" in lost["detail"]
    strict = config.with_overrides(baselines={"margin": 0.05, "rules": []})
    assert not baselines_gate(strict, {"auc": 0.94}, baselines)["passed"]
    tolerant = config.with_overrides(baselines={"margin": -0.02, "rules": []})
    assert baselines_gate(tolerant, {"auc": 0.89}, baselines)["passed"]
    assert not baselines_gate(config, {}, baselines)["passed"]


def _tfma_fairness_groups(config, test: pd.DataFrame, probabilities, out) -> dict:
    """The evaluate step's EvalConfig and per-group reading, run by TFMA on given predictions."""
    import apache_beam as beam
    import tensorflow_model_analysis as tfma

    from components.evaluate import build_eval_config, fairness_groups, write_examples

    eval_config = build_eval_config(config, 2, has_baseline=False, with_model=False)
    data = out / "examples.tfrecord"
    out.mkdir()
    write_examples(config, test, ["0", "1"], data, probabilities)
    tfma.run_model_analysis(
        eval_config=eval_config,
        data_location=str(data),
        output_path=str(out / "tfma"),
        pipeline_options=beam.options.pipeline_options.PipelineOptions(config.beam_args),
    )
    return fairness_groups(tfma.load_eval_result(str(out / "tfma")), 2)


def _by_hand(predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    positive, actual = predicted == 1, labels == 1
    return {
        "rows": len(labels),
        "accuracy": float(np.mean(predicted == labels)),
        "positive_rate": float(positive.mean()),
        "true_positive_rate": float(positive[actual].mean()),
        "false_positive_rate": float(positive[~actual].mean()),
    }


def test_fairness_gate_reads_tfma_per_group_rates_equal_to_a_hand_computation(tmp_path) -> None:
    config = config_in(tmp_path, "taxi").with_overrides(
        fairness={"sensitive_features": ["group"], "max_gap": 0.2, "min_group_size": 10}
    )
    rng = np.random.default_rng(7)
    labels = np.array([1, 0] * 53)
    # rows without a group form "(missing)", reported but too small (6 rows) to be gated
    groups = np.array(["a"] * 50 + ["b"] * 50 + [None] * 6, dtype=object)
    # right on every row of group a; in group b wrong on half the rows, mostly false positives
    predicted = labels.copy()
    flip = np.r_[np.zeros(50, bool), rng.random(50) < 0.5, np.zeros(6, bool)]
    predicted[flip] = 1 - predicted[flip]
    p_one = np.where(predicted == 1, rng.uniform(0.51, 1, 106), rng.uniform(0, 0.49, 106))
    test = pd.DataFrame({"group": groups, "big_tipper": labels})
    table = _tfma_fairness_groups(config, test, np.c_[1 - p_one, p_one], tmp_path / "tfma")

    expected = {
        "a": _by_hand(predicted[:50], labels[:50]),
        "b": _by_hand(predicted[50:100], labels[50:100]),
        "(missing)": _by_hand(predicted[100:], labels[100:]),
    }
    assert set(table["group"]) == set(expected)
    for group, metrics in expected.items():
        assert table["group"][group] == pytest.approx(metrics, abs=1e-6), group

    report, gate = fairness(config, table)
    b = expected["b"]
    assert report["group"]["gaps"]["accuracy"] == {
        "gap": round(1 - b["accuracy"], 4),
        "highest": "a",
        "lowest": "b",
    }
    assert not gate["passed"] and "accuracy gap" in gate["detail"]
    assert {"accuracy", "positive_rate", "true_positive_rate", "false_positive_rate"} == set(
        report["group"]["gaps"]
    )
    tolerant = config.with_overrides(
        fairness={"sensitive_features": ["group"], "max_gap": 0.99, "min_group_size": 10}
    )
    assert fairness(tolerant, table)[1]["passed"]
    small = config.with_overrides(
        fairness={"sensitive_features": ["group"], "max_gap": 0.2, "min_group_size": 60}
    )
    report, gate = fairness(small, table)
    assert gate["passed"] and report["group"]["gaps"] == {}, "small groups are not gated"
    assert report["group"]["groups"]["b"]["rows"] == 50, "but still reported"
    _, gate = fairness(config.with_overrides(fairness={"sensitive_features": ["age"]}), {})
    assert not gate["passed"] and "'age' is not a column" in gate["detail"]


def test_baselines_majority_linear_and_rules() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=400),
            "colour": rng.choice(["red", "blue"], size=400),
        }
    )
    labels = ((frame["x"] > 0) & (frame["colour"] == "red")).astype(int).to_numpy()
    features = FeatureConfig(numeric=["x"], categorical=["colour"])
    majority = classification_metrics(majority_class(labels, 2).predict_proba(frame), labels)
    assert majority["accuracy"] == pytest.approx(1 - labels.mean()) and majority["auc"] == 0.5
    linear = linear_model(frame, labels, 2, features)
    assert classification_metrics(linear.predict_proba(frame), labels)["auc"] > 0.9
    rule = RuleConfig(
        name="red and positive", when="colour == 'red' and x > 0", predict="1", otherwise="0"
    )
    (_, _, by_rule) = fit_baselines(frame, labels, ["0", "1"], features, [rule])
    assert classification_metrics(by_rule.predict_proba(frame), labels)["accuracy"] == 1.0


@pytest.mark.parametrize(
    "rule, message",
    [
        ("__import__('os').system('true')", "only `column <op> literal`"),
        ("colour == 'red' +", "not an expression"),
        ("shade == 'red'", "'shade', which is not a column"),
        ("colour < x", "only `column <op> literal`"),
    ],
)
def test_rules_are_comparisons_only_never_code(rule: str, message: str) -> None:
    with pytest.raises(RuleError, match=message):
        parse_rule(rule, {"colour", "x"})


def test_rules_name_columns_in_backticks_and_take_literals_on_either_side() -> None:
    frame = pd.DataFrame({"trip miles": [1.0, 5.0, None, 3.0], "colour": ["a", "b", "a", "b"]})
    columns = set(frame.columns)
    matches = parse_rule("`trip miles` > 2 and not colour == 'a'", columns)
    assert matches(frame).tolist() == [False, True, False, True]
    assert parse_rule("2 < `trip miles`", columns)(frame).tolist() == [False, True, False, True]
    assert parse_rule("'a' == colour", columns)(frame).tolist() == [True, False, True, False]
    with pytest.raises(RuleError, match="'trip mile', which is not a column"):
        parse_rule("`trip mile` > 2", columns)


@pytest.mark.parametrize(
    "when, message",
    [
        ("fare + 1 > 2", "only `column <op> literal`"),
        ("`trip miles > 2", "unclosed backtick"),
        ("`` > 2", "empty column name"),
        ("fare == None", "only `column <op> literal`"),
        ("fare >", "not an expression"),
    ],
)
def test_a_malformed_rule_is_refused_when_the_config_loads(when: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RuleConfig(name="r", when=when, predict="1", otherwise="0")


def test_undefined_auc_is_left_out_not_nan() -> None:
    metrics = classification_metrics(np.eye(2)[[1, 1, 1]], np.array([1, 1, 1]))
    assert metrics == {"accuracy": 1.0}
