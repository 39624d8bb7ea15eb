"""Checks on the split rows themselves (the statistics cannot tell): target leakage measured as
each feature's predictive power on its own, identifier-like columns, and rows shared by train and
test. Used by data validation before anything is trained."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlops.features import category_texts
from mlops.metrics import binary_auc

_BINS = 20


def _codes(train: pd.Series, other: pd.Series, numeric: bool) -> tuple[pd.Series, pd.Series]:
    """Group keys: quantile bins of train for numbers, the category text otherwise; missing
    values form their own group."""
    if numeric:
        values = pd.to_numeric(train, errors="coerce").astype("float64")
        present = values.dropna().to_numpy()
        edges = (
            np.unique(np.quantile(present, np.linspace(0, 1, _BINS + 1)[1:-1]))
            if len(present)
            else np.array([])
        )

        def bins(column: pd.Series) -> pd.Series:
            numbers = pd.to_numeric(column, errors="coerce").astype("float64").to_numpy()
            keys = np.where(np.isnan(numbers), -1, np.searchsorted(edges, numbers))
            return pd.Series(keys, index=column.index)

        return bins(train), bins(other)
    return category_texts(train), category_texts(other)


def single_feature_auc(
    train: pd.DataFrame, other: pd.DataFrame, feature: str, label: str, numeric: bool
) -> float | None:
    """How well `feature` alone predicts the label on `other`: the label rate per value (per
    quantile bin for numbers) learned on train, scored as AUC on `other`; one-vs-rest averaged over
    classes for multi-class labels, the positive class for binary ones. 0.5 is no signal, 1.0
    means the feature alone determines the label."""
    labels = category_texts(train[label]), category_texts(other[label])
    return _feature_auc(labels, _codes(train[feature], other[feature], numeric))


def _feature_auc(
    labels: tuple[pd.Series, pd.Series], keys: tuple[pd.Series, pd.Series]
) -> float | None:
    """`single_feature_auc` from the label texts and group keys of (train, other)."""
    train_labels, other_labels = labels
    classes = sorted(set(train_labels) - {""})
    if len(classes) < 2:
        return None
    # Integer group ids shared by both splits: the per-group label rate is then a bincount.
    groups, _ = pd.factorize(pd.concat([keys[0], keys[1]], ignore_index=True))
    train_groups, other_groups = groups[: len(keys[0])], groups[len(keys[0]) :]
    sizes = np.bincount(train_groups, minlength=groups.max() + 1)
    seen = sizes[other_groups] > 0
    train_text, other_text = train_labels.to_numpy(), other_labels.to_numpy()
    aucs = []
    for positive in classes[1:] if len(classes) == 2 else classes:
        is_positive = (train_text == positive).astype("float64")
        positives = np.bincount(train_groups, weights=is_positive, minlength=len(sizes))
        rate = positives[other_groups] / np.maximum(sizes[other_groups], 1)
        scores = np.where(seen, rate, is_positive.mean())
        auc = binary_auc(scores, other_text == positive)
        if auc is not None:
            aucs.append(auc)
    return float(np.mean(aucs)) if aucs else None


def identifier_like(frame: pd.DataFrame, column: str, min_rows: int = 50) -> bool:
    """A text column whose every value is (nearly) unique names rows, it does not describe them."""
    values = frame[column].dropna()
    if len(values) < min_rows or pd.api.types.is_float_dtype(values):
        return False
    return values.nunique() >= 0.95 * len(values)


def shared_rows(train: pd.DataFrame, test: pd.DataFrame, columns: list[str]) -> int:
    """Test rows that appear in train with the same values in `columns`."""
    if test.empty:
        return 0

    def keys(frame: pd.DataFrame) -> np.ndarray:
        # A 64-bit hash of each row's values (vectorised; a collision among a million rows has
        # odds of about 1e-8). Splits of one ingest share their column types, so equal values
        # are equal rows.
        return pd.util.hash_pandas_object(frame[columns], index=False).to_numpy()

    return int(np.isin(keys(test), keys(train)).sum())


def leakage_table(
    frames: dict[str, pd.DataFrame], features: list[str], numeric: set[str], label: str
) -> dict[str, float]:
    """feature -> single-feature AUC on the eval split (train when eval is empty)."""
    train = frames["train"]
    other = frames.get("eval")
    other = other if other is not None and len(other) else train
    table: dict[str, Any] = {}
    labels = category_texts(train[label]), category_texts(other[label])  # once, not per feature
    for feature in features:
        if feature in train.columns:
            auc = _feature_auc(labels, _codes(train[feature], other[feature], feature in numeric))
            if auc is not None:
                table[feature] = round(auc, 4)
    return table
