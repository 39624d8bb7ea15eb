"""Fit diagnosis: read the train and eval curves of one training and say in words whether the
model overfits, underfits, fits well or was still improving when training stopped.

The checks, in this order (the first that holds is the verdict):

1. overfitting: eval loss rose by more than `rise_tolerance` (relative) above its best while the
   train loss kept falling, or the eval loss at the best epoch exceeds the train loss there by
   more than `gap_tolerance` (relative); either change must also exceed `min_change`.
2. still improving: training used every configured epoch and the eval loss fell by more than
   `improving_tolerance` (relative) over the last `window` epochs: raise `training.epochs`.
3. underfitting: the best eval loss keeps more than `underfit_ratio` of the loss of the class
   prior (a model that predicts the label frequencies), or the final train accuracy is within
   `accuracy_margin` of always predicting the majority class.
4. good fit otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ACCURACY = "sparse_categorical_accuracy"


@dataclass(frozen=True)
class FitThresholds:
    rise_tolerance: float = 0.10
    gap_tolerance: float = 0.50
    improving_tolerance: float = 0.01
    window: int = 3
    loss_floor: float = 0.05
    min_change: float = 0.02
    underfit_ratio: float = 0.50
    accuracy_margin: float = 0.02


@dataclass(frozen=True)
class FitWords:
    """How the advice names a family's steps and settings (Keras epochs by default)."""

    step: str = "epoch"
    budget: str = "training.epochs"
    regularise: str = "add regularisation (training.l2, training.dropout) or data"
    larger: str = "use a larger model, better features or a higher learning rate"


# Gradient-boosted trees (mlops/trees.py): a step is a boosting stage.
GBT_WORDS = FitWords(
    step="stage",
    budget="training.gbt.n_estimators",
    regularise="lower training.gbt.max_depth or learning_rate, raise min_samples_leaf, or add data",
    larger="raise training.gbt.max_depth, or use better features",
)


def prior_baseline(label_ids: Sequence[int], num_classes: int) -> dict[str, float]:
    """Loss (cross-entropy) and accuracy of predicting the train label frequencies for every row:
    the level a model that learned nothing reaches."""
    counts = np.bincount(np.asarray(label_ids, dtype=np.int64), minlength=num_classes)
    freq = counts / counts.sum()
    present = freq[freq > 0]
    return {
        "loss": float(-(present * np.log(present)).sum()),
        "accuracy": float(freq.max()),
    }


def diagnose_fit(
    curves: dict[str, list[float]],
    epochs_configured: int,
    baseline: dict[str, float],
    thresholds: FitThresholds = FitThresholds(),
    words: FitWords = FitWords(),
) -> dict[str, Any]:
    """{"verdict": "overfitting" | "underfitting" | "good fit" | "still improving",
    "text": one sentence with the numbers, "numbers": {...}} from Keras history curves
    (`loss`, `val_loss`, optionally `sparse_categorical_accuracy`); `words` name the steps
    (epochs, boosting stages) and settings the advice points to."""
    for key in ("loss", "val_loss"):
        if not curves.get(key):
            raise ValueError(
                f"fit diagnosis needs the {key!r} curve; the history has {sorted(curves)}"
            )
    train = [float(v) for v in curves["loss"]]
    val = [float(v) for v in curves["val_loss"]]
    epochs = len(val)
    best = int(np.argmin(val))
    best_val = val[best]
    numbers: dict[str, Any] = {
        "epochs_run": epochs,
        "epochs_configured": epochs_configured,
        "best_epoch": best + 1,
        "best_eval_loss": round(best_val, 4),
        "final_eval_loss": round(val[-1], 4),
        "train_loss_at_best": round(train[best], 4),
        "final_train_loss": round(train[-1], 4),
        "prior_loss": round(baseline["loss"], 4),
    }
    accuracy = curves.get(ACCURACY)
    if accuracy:
        numbers["final_train_accuracy"] = round(float(accuracy[-1]), 4)
        numbers["prior_accuracy"] = round(baseline["accuracy"], 4)

    # Relative changes of losses near 0 are noise: they are taken against at least `loss_floor`
    # and must also exceed `min_change` in absolute terms.
    rise = val[-1] - best_val
    train_fell = train[-1] < train[best]
    gap = best_val - train[best]
    numbers["eval_loss_rise"] = round(rise, 4)
    numbers["eval_train_gap"] = round(gap, 4)
    if (
        train_fell
        and rise > thresholds.min_change
        and rise / max(best_val, thresholds.loss_floor) > thresholds.rise_tolerance
    ):
        return _verdict(
            "overfitting",
            f"eval loss rose from its best {best_val:.4f} ({words.step} {best + 1}) to "
            f"{val[-1]:.4f} while train loss fell from {train[best]:.4f} to {train[-1]:.4f}: "
            f"{words.regularise}",
            numbers,
        )
    if (
        gap > thresholds.min_change
        and gap / max(train[best], thresholds.loss_floor) > thresholds.gap_tolerance
    ):
        return _verdict(
            "overfitting",
            f"eval loss {best_val:.4f} at its best {words.step} {best + 1} is {gap:.4f} above "
            f"the train loss {train[best]:.4f}: {words.regularise}",
            numbers,
        )

    window = min(thresholds.window, epochs - 1)
    if epochs >= epochs_configured and window > 0:
        before = val[-1 - window]
        drop = (before - val[-1]) / max(before, thresholds.loss_floor)
        numbers["last_window_eval_drop"] = round(drop, 4)
        if (
            best == epochs - 1
            and drop > thresholds.improving_tolerance
            and before - val[-1] > thresholds.min_change
            and best_val > thresholds.loss_floor  # near 0 more epochs gain nothing
        ):
            return _verdict(
                "still improving",
                f"eval loss was still falling at the last of {epochs} {words.step}s "
                f"({before:.4f} -> {val[-1]:.4f}, {drop:.1%} over {window} {words.step}s): "
                f"raise {words.budget}",
                numbers,
            )

    kept = best_val / max(baseline["loss"], 1e-8)
    numbers["eval_loss_vs_prior"] = round(kept, 4)
    if kept > thresholds.underfit_ratio:
        return _verdict(
            "underfitting",
            f"best eval loss {best_val:.4f} is {kept:.0%} of the {baseline['loss']:.4f} a model "
            f"predicting only the class frequencies reaches: {words.larger}",
            numbers,
        )
    if accuracy and float(accuracy[-1]) <= baseline["accuracy"] + thresholds.accuracy_margin:
        return _verdict(
            "underfitting",
            f"train accuracy {float(accuracy[-1]):.4f} is no better than always predicting the "
            f"majority class ({baseline['accuracy']:.4f}): {words.larger}",
            numbers,
        )
    return _verdict(
        "good fit",
        f"best eval loss {best_val:.4f} at {words.step} {best + 1} of {epochs} (train loss there "
        f"{train[best]:.4f}), {kept:.0%} of the class-prior loss {baseline['loss']:.4f}",
        numbers,
    )


def _verdict(verdict: str, text: str, numbers: dict[str, Any]) -> dict[str, Any]:
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in numbers.items()}
    return {"verdict": verdict, "text": f"{verdict}: {text}", "numbers": clean}
