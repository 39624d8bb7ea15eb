"""The readiness checks over whole pandas frames: the reference that validation's streamed,
mergeable form (mlops/data_checks.py, fed by mlops/tfdv/scan.py) is tested against. Validation
used these before it streamed the splits."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlops.data_checks import _BINS
from mlops.features import category_text
from mlops.metrics import binary_auc


def _codes(train: pd.Series, other: pd.Series, numeric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Integer group keys of (train, other), shared by both: quantile bins of train for numbers,
    the category text otherwise; missing values form their own group."""
    if numeric:
        values = pd.to_numeric(train, errors="coerce").astype("float64").to_numpy()
        present = values[~np.isnan(values)]
        edges = (
            np.unique(np.quantile(present, np.linspace(0, 1, _BINS + 1)[1:-1]))
            if len(present)
            else np.array([])
        )

        def bins(numbers: np.ndarray) -> np.ndarray:
            # 0 is missing, 1 + the bin otherwise.
            return np.where(np.isnan(numbers), 0, np.searchsorted(edges, numbers) + 1)

        other_values = pd.to_numeric(other, errors="coerce").astype("float64").to_numpy()
        return bins(values), bins(other_values)
    groups, _ = _text_groups(pd.concat([train, other], ignore_index=True))
    return groups[: len(train)], groups[len(train) :]


def _text_groups(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Each row's group of equal category text, and the texts of the groups. Without a Python
    string per row: the distinct raw values are factorized, then those whose texts are equal
    (1 and 1.0, None and NaN) merged into one group."""
    codes, uniques = pd.factorize(column)
    texts = [category_text(value) for value in uniques] + [category_text(None)]
    text_groups, group_texts = pd.factorize(np.array(texts, dtype=object))
    # Code -1 (missing) picks the last text, category_text(None), as category_texts does.
    return text_groups[codes], np.asarray(group_texts, dtype=object)


def _label_codes(train: pd.Series, other: pd.Series) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The label's classes (the sorted texts seen in train, the missing text "" excluded) and
    each row's index in them (-1 for a missing label or a class train does not have)."""
    groups, texts = _text_groups(pd.concat([train, other], ignore_index=True))
    in_train = np.unique(groups[: len(train)])
    classes = sorted({str(texts[g]) for g in in_train} - {""})
    index = np.array([classes.index(t) if t in classes else -1 for t in texts], dtype=np.int64)
    codes = index[groups]
    return classes, codes[: len(train)], codes[len(train) :]


def single_feature_auc(
    train: pd.DataFrame, other: pd.DataFrame, feature: str, label: str, numeric: bool
) -> float | None:
    """How well `feature` alone predicts the label on `other`: the label rate per value (per
    quantile bin for numbers) learned on train, scored as AUC on `other`; one-vs-rest averaged over
    classes for multi-class labels, the positive class for binary ones. 0.5 is no signal, 1.0
    means the feature alone determines the label."""
    labels = _label_codes(train[label], other[label])
    return _feature_auc(labels, _codes(train[feature], other[feature], numeric))


def _feature_auc(
    labels: tuple[list[str], np.ndarray, np.ndarray], keys: tuple[np.ndarray, np.ndarray]
) -> float | None:
    """`single_feature_auc` from the label classes and codes (`_label_codes`) and the integer
    group keys (`_codes`) of (train, other)."""
    classes, train_labels, other_labels = labels
    if len(classes) < 2:
        return None
    train_groups, other_groups = keys
    groups = int(max(train_groups.max(initial=0), other_groups.max(initial=0))) + 1
    sizes = np.bincount(train_groups, minlength=groups)
    seen = sizes[other_groups] > 0
    aucs = []
    for positive in range(1, len(classes)) if len(classes) == 2 else range(len(classes)):
        is_positive = (train_labels == positive).astype("float64")
        positives = np.bincount(train_groups, weights=is_positive, minlength=len(sizes))
        rate = positives[other_groups] / np.maximum(sizes[other_groups], 1)
        scores = np.where(seen, rate, is_positive.mean())
        auc = binary_auc(scores, other_labels == positive)
        if auc is not None:
            aucs.append(auc)
    return float(np.mean(aucs)) if aucs else None


def identifier_like(frame: pd.DataFrame, column: str, min_rows: int = 50) -> bool:
    """A text column whose every value is (nearly) unique names rows, it does not describe them."""
    if pd.api.types.is_float_dtype(frame[column]):
        return False
    values = frame[column].dropna()
    if len(values) < min_rows:
        return False
    return values.nunique() >= 0.95 * len(values)


def shared_rows(train: pd.DataFrame, test: pd.DataFrame, columns: list[str]) -> int:
    """Test rows that appear in train with the same values in `columns`."""
    if test.empty:
        return 0
    train_part, test_part = train[columns].copy(deep=False), test[columns].copy(deep=False)
    for column in columns:
        if _arrow_text(train[column]) or _arrow_text(test[column]):
            # Arrow-backed text hashes through Python strings; its codes in one factorization
            # of both splits (equal texts, equal codes; missing -1 in both) hash as integers.
            both = pd.concat([train[column], test[column]], ignore_index=True)
            codes, _ = pd.factorize(both)
            train_part[column], test_part[column] = codes[: len(train)], codes[len(train) :]

    def keys(frame: pd.DataFrame) -> np.ndarray:
        # A 64-bit hash of each row's values (vectorised; a collision among a million rows has
        # odds of about 1e-8). Splits of one ingest share their column types, so equal values
        # are equal rows.
        return pd.util.hash_pandas_object(frame, index=False).to_numpy()

    # A hash-table lookup (pandas' isin) rather than numpy's sort-based one.
    return int(pd.Series(keys(test_part)).isin(pd.Series(keys(train_part))).sum())


def _arrow_text(column: pd.Series) -> bool:
    return isinstance(column.dtype, pd.StringDtype) and column.dtype.storage == "pyarrow"


def leakage_table(
    frames: dict[str, pd.DataFrame], features: list[str], numeric: set[str], label: str
) -> dict[str, float]:
    """feature -> single-feature AUC on the eval split (train when eval is empty)."""
    train = frames["train"]
    other = frames.get("eval")
    other = other if other is not None and len(other) else train
    table: dict[str, Any] = {}
    labels = _label_codes(train[label], other[label])  # once, not per feature
    for feature in features:
        if feature in train.columns:
            auc = _feature_auc(labels, _codes(train[feature], other[feature], feature in numeric))
            if auc is not None:
                table[feature] = round(auc, 4)
    return table


# --------------------------------------------------------------------------- #
# The same checks streamed: mergeable accumulators over Arrow record batches
# --------------------------------------------------------------------------- #
#
# Validation reads each split's Parquet file batch by batch once (`mlops.tfdv.scan`) and feeds
# these next to the statistics sketches. What they keep grows with the distinct values, not the
# rows: per feature a (group, label text) -> count table, per non-float train column its distinct
# value keys, and one 64-bit hash per train and test row (8 bytes a row) for the shared rows. The
# numeric features' groups are quantile bins of train, so they need train's exact quantiles
# first (`numeric_tables` reads train's numeric columns one at a time for them). The results are
# those of the frame functions above (tests/test_validation_streaming.py holds them equal).
