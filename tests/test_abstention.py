"""Abstention at serving: below serving.min_confidence the prediction says it abstained and
carries the fallback; the request log keeps the flag so monitoring can count abstentions."""

from __future__ import annotations

import json

import pytest

from mlops.serving.server import abstain, read_request_log

PREDICTIONS = [
    {"label": "Adelie", "probabilities": {"Adelie": 0.95, "Gentoo": 0.05}},
    {"label": "Gentoo", "probabilities": {"Adelie": 0.45, "Gentoo": 0.55}},
]


def test_unsure_predictions_abstain_with_the_fallback() -> None:
    assert abstain(PREDICTIONS, 0.0, None) == PREDICTIONS  # off by default
    sure, unsure = abstain(PREDICTIONS, 0.8, "ask a human")
    assert sure == PREDICTIONS[0]
    assert unsure["abstained"] is True and unsure["label"] == "ask a human"
    assert unsure["model_label"] == "Gentoo" and unsure["probabilities"]["Gentoo"] == 0.55
    assert abstain(PREDICTIONS, 0.8, None)[1]["label"] is None


def test_the_request_log_keeps_the_abstention_for_monitoring(tmp_path) -> None:
    log = tmp_path / "requests.jsonl"
    record = {
        "request_id": "r1",
        "timestamp": "2026-03-01T12:00:00+00:00",
        "model_version": "1",
        "instances": [{"island": "Dream"}, {"island": "Biscoe"}],
        "predictions": abstain(PREDICTIONS, 0.8, None),
    }
    log.write_text(json.dumps(record) + "\n")
    frame = read_request_log([log])
    assert frame["__abstained__"].tolist() == [False, True]
    assert frame["__predicted_label__"].tolist()[0] == "Adelie"


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_min_confidence_is_a_probability(tmp_path, value: float) -> None:
    from tests.conftest import config_in

    config = config_in(tmp_path, "penguins")
    with pytest.raises(ValueError, match="min_confidence"):
        config.with_overrides(serving={**config.serving.model_dump(), "min_confidence": value})
