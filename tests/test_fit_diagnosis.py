"""Fit diagnosis from training curves: each verdict from a built history, and a real training."""

from __future__ import annotations

import numpy as np
import pytest

from mlops.fit_diagnosis import diagnose_fit, prior_baseline

# Three balanced classes: predicting the frequencies costs ln 3 = 1.0986, accuracy 1/3.
BASELINE = {"loss": float(np.log(3)), "accuracy": 1 / 3}


def _curves(train: list[float], val: list[float], accuracy: float = 0.95) -> dict:
    return {
        "loss": train,
        "val_loss": val,
        "sparse_categorical_accuracy": [accuracy] * len(train),
    }


def test_prior_baseline_is_entropy_and_majority_rate() -> None:
    baseline = prior_baseline([0, 0, 1, 2], 3)
    assert baseline["accuracy"] == pytest.approx(0.5)
    assert baseline["loss"] == pytest.approx(-(0.5 * np.log(0.5) + 2 * 0.25 * np.log(0.25)))


def test_eval_loss_rising_while_train_falls_is_overfitting() -> None:
    train = [1.0, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05]
    val = [1.0, 0.7, 0.5, 0.45, 0.5, 0.6, 0.7]
    result = diagnose_fit(_curves(train, val), epochs_configured=20, baseline=BASELINE)
    assert result["verdict"] == "overfitting"
    assert "0.4500" in result["text"] and "0.7000" in result["text"]
    assert result["numbers"]["best_epoch"] == 4


def test_large_gap_between_eval_and_train_is_overfitting() -> None:
    train = [0.5, 0.2, 0.1, 0.1]
    val = [0.8, 0.6, 0.55, 0.56]
    result = diagnose_fit(_curves(train, val), epochs_configured=20, baseline=BASELINE)
    assert result["verdict"] == "overfitting"
    assert result["numbers"]["eval_train_gap"] == pytest.approx(0.45)


def test_poor_plateau_near_the_class_prior_is_underfitting() -> None:
    train = [1.1, 1.0, 0.98, 0.97, 0.97, 0.97]
    val = [1.1, 1.0, 0.99, 0.98, 0.98, 0.98]
    result = diagnose_fit(_curves(train, val, 0.45), epochs_configured=20, baseline=BASELINE)
    assert result["verdict"] == "underfitting"
    assert "1.0986" in result["text"]


def test_train_accuracy_at_majority_rate_is_underfitting() -> None:
    train = [0.5, 0.4, 0.35, 0.35]
    val = [0.5, 0.42, 0.4, 0.4]
    result = diagnose_fit(_curves(train, val, 0.34), epochs_configured=20, baseline=BASELINE)
    assert result["verdict"] == "underfitting"
    assert "majority" in result["text"]


def test_loss_still_falling_at_the_last_configured_epoch_says_raise_epochs() -> None:
    train = [1.0, 0.8, 0.6, 0.45, 0.35]
    val = [1.0, 0.85, 0.65, 0.5, 0.4]
    result = diagnose_fit(_curves(train, val), epochs_configured=5, baseline=BASELINE)
    assert result["verdict"] == "still improving"
    assert "training.epochs" in result["text"]
    # The same curves cut short by early stopping (20 configured) are not "still improving".
    stopped = diagnose_fit(_curves(train, val), epochs_configured=20, baseline=BASELINE)
    assert stopped["verdict"] != "still improving"


def test_low_converged_losses_are_a_good_fit() -> None:
    train = [0.9, 0.4, 0.2, 0.12, 0.1, 0.1, 0.1]
    val = [0.9, 0.45, 0.22, 0.14, 0.12, 0.12, 0.125]
    result = diagnose_fit(_curves(train, val), epochs_configured=20, baseline=BASELINE)
    assert result["verdict"] == "good fit"
    assert "0.1200" in result["text"]


def test_missing_curve_names_what_the_history_has() -> None:
    with pytest.raises(ValueError, match=r"'val_loss'.*\['loss'\]"):
        diagnose_fit({"loss": [1.0]}, epochs_configured=5, baseline=BASELINE)


def test_real_penguins_training_is_diagnosed(penguins_chain) -> None:
    from mlops.artifacts import read_model_info

    config, paths, results = penguins_chain
    diagnosis = results["train"]["fit_diagnosis"]
    info = read_model_info(paths["model"])
    assert info["fit_diagnosis"] == diagnosis
    # Penguins separate almost perfectly: far below the class-prior loss, so no underfitting.
    assert diagnosis["verdict"] in {"good fit", "overfitting", "still improving"}
    assert diagnosis["numbers"]["best_eval_loss"] < 0.5 * diagnosis["numbers"]["prior_loss"]
    assert diagnosis["numbers"]["epochs_run"] == info["epochs_run"]
    assert diagnosis["text"].startswith(diagnosis["verdict"])
