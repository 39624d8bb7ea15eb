"""The blessing's gates and baselines as plain functions: the success criterion (undefined metrics
fail, never crash), beating the best baseline by the configured margin, fairness gaps between
groups, and the baselines themselves (majority class, linear model, rules)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

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


def test_fairness_gap_between_groups_fails_the_gate(tmp_path) -> None:
    config = config_in(tmp_path, "taxi").with_overrides(
        fairness={"sensitive_features": ["group"], "max_gap": 0.2, "min_group_size": 10}
    )
    labels = np.array([1, 0] * 50)
    test = pd.DataFrame({"group": ["a"] * 50 + ["b"] * 50 + []})
    # right on every row of group a, wrong on half of group b
    predicted = labels.copy()
    predicted[50:75] = 1 - predicted[50:75]
    probabilities = np.eye(2)[predicted]
    report, gate = fairness(config, test, probabilities, labels)
    assert not gate["passed"]
    assert report["group"]["gaps"]["accuracy"] == {"gap": 0.5, "highest": "a", "lowest": "b"}
    assert report["group"]["groups"]["a"]["true_positive_rate"] == 1.0
    fair, gate = fairness(config, test, np.eye(2)[labels], labels)
    assert gate["passed"] and fair["group"]["gaps"]["accuracy"]["gap"] == 0.0
    small = config.with_overrides(
        fairness={"sensitive_features": ["group"], "max_gap": 0.2, "min_group_size": 60}
    )
    assert fairness(small, test, probabilities, labels)[1]["passed"], "small groups are not gated"


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


def test_undefined_auc_is_left_out_not_nan() -> None:
    metrics = classification_metrics(np.eye(2)[[1, 1, 1]], np.array([1, 1, 1]))
    assert metrics == {"accuracy": 1.0}
