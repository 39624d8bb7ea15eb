"""Checks on the split rows themselves (the statistics cannot tell): target leakage measured as
each feature's predictive power on its own, identifier-like columns, and rows shared by train and
test. Used by data validation before anything is trained.

Mergeable accumulators over Arrow record batches (`ReadinessAccumulator`, `table_auc`,
`count_shared`), which validation feeds while it streams each split once (`mlops.tfdv.scan`).
The same checks over whole pandas frames, the reference they are tested against, are in
tests/readiness_reference.py."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlops.features import category_text

_BINS = 20


def arrow_text_groups(array: Any) -> tuple[np.ndarray, list[str]]:
    """Each row's group of equal category text, and the texts of the groups, for an Arrow array
    (as `_text_groups` for a pandas column: a Python call per distinct value, not per row)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    encoded = pc.dictionary_encode(array)
    dictionary = encoded.dictionary.to_pylist()
    indices = encoded.indices.fill_null(len(dictionary)).to_numpy(zero_copy_only=False)
    texts = [category_text(value) for value in dictionary] + [category_text(None)]
    groups, group_texts = pd.factorize(np.array(texts, dtype=object))
    return groups[indices], [str(text) for text in group_texts]


def arrow_numbers(array: Any) -> np.ndarray:
    """An Arrow array as float64 with NaN for missing (`pd.to_numeric(errors="coerce")` for
    anything that is not a number already)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return pc.cast(array, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    series = pd.to_numeric(array.to_pandas(), errors="coerce")
    return series.astype("float64").to_numpy()


def _pair_counts(
    keys: np.ndarray, key_values: list, labels: np.ndarray, label_texts: list[str], into: Counter
) -> None:
    """Add the count of each (key, label text) pair of these rows to `into`."""
    if not len(keys):
        return
    width = len(label_texts)
    # Keys and labels are small dense codes: a bincount, not a sort or a hash table per row.
    counts = np.bincount(keys.astype(np.int64) * width + labels.astype(np.int64))
    for pair in np.flatnonzero(counts).tolist():
        into[(key_values[pair // width], label_texts[pair % width])] += int(counts[pair])


def quantile_edges(values: np.ndarray, *, reorder: bool = False) -> np.ndarray:
    """The numeric groups' edges: train's exact 5%..95% quantiles of its present values. With
    `reorder`, `values` holds present values only and may be reordered in place (no copy)."""
    present = values if reorder else values[~np.isnan(values)]
    if not len(present):
        return np.array([])
    fractions = np.linspace(0, 1, _BINS + 1)[1:-1]
    return np.unique(np.quantile(present, fractions, overwrite_input=True))


def _bins(numbers: np.ndarray, edges: np.ndarray) -> np.ndarray:
    # 0 is missing, 1 + the bin otherwise (as `_codes`).
    return np.where(np.isnan(numbers), 0, np.searchsorted(edges, numbers) + 1)


def text_hashes(array: Any) -> tuple[np.ndarray, np.ndarray]:
    """(a 64-bit hash of each value's text, whether it is missing) for a text or bytes array,
    hashing each distinct value of the batch once (the same text hashes the same in every batch
    and split)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    encoded = pc.dictionary_encode(array)
    dictionary = encoded.dictionary.to_numpy(zero_copy_only=False)
    hashes = np.append(pd.util.hash_array(np.asarray(dictionary, dtype=object)), np.uint64(0))
    indices = encoded.indices.fill_null(len(dictionary)).to_numpy(zero_copy_only=False)
    return hashes[indices], indices == len(dictionary)


def _value_keys(array: Any) -> np.ndarray | None:
    """Keys of the present values that are equal exactly when the values are (64-bit text hashes
    for text), for counting distinct values; None for a float column (never identifier-like)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if pa.types.is_floating(kind):
        return None
    present = pc.drop_null(array)
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return pc.cast(present, pa.int64(), safe=False).to_numpy(zero_copy_only=False)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind):
        return text_hashes(present)[0]
    return pd.util.hash_pandas_object(present.to_pandas(), index=False).to_numpy()


_MISSING_HASH = np.uint64(0x9E3779B97F4A7C15)  # a missing value's hash, apart from any value's


def batch_row_hashes(batch: Any, columns: list[str]) -> np.ndarray:
    """A 64-bit hash of each row's values in `columns`: equal rows hash equal in every batch and
    split (a missing value hashes apart from any value; text by its bytes). The column hashes
    are combined as pandas' `hash_pandas_object` combines them, without building a frame."""
    import pyarrow as pa

    names = batch.schema.names
    combined = np.full(batch.num_rows, 0x345678, dtype=np.uint64)
    multiplier = np.uint64(1000003)
    for position, column in enumerate(columns):
        if column not in names:
            raise ValueError(f"column {column!r} is missing from the split (has {names})")
        array = batch.column(names.index(column))
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        kind = array.type
        if pa.types.is_floating(kind):  # NaN and null alike, as in pandas' float64 column
            hashes = pd.util.hash_array(array.to_numpy(zero_copy_only=False).astype("float64"))
        elif pa.types.is_integer(kind) or pa.types.is_boolean(kind):
            values = array.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
            missing = np.asarray(array.is_null().to_numpy(zero_copy_only=False))
            hashes = np.where(missing, _MISSING_HASH, pd.util.hash_array(values))
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind):
            values, missing = text_hashes(array)
            hashes = np.where(missing, _MISSING_HASH, values)
        else:
            series = array.to_pandas()
            hashes = np.where(
                series.isna().to_numpy(),
                _MISSING_HASH,
                pd.util.hash_pandas_object(series, index=False).to_numpy(),
            )
        remaining = len(columns) - position
        combined ^= hashes
        combined *= multiplier
        multiplier += np.uint64(82520 + 2 * remaining)
    return combined + np.uint64(97531)


@dataclass
class ReadinessAccumulator:
    """The row-level readiness checks of one split so far, fed Arrow record batches typed as the
    statistics read them (see `mlops.tfdv.scan`); `merge` adds another of the same split.

    `tables` holds, per feature in `text_features` (and in `numeric_edges`, binned on those
    edges), the count of each (group, label text) pair; `distinct` the distinct value keys of every
    non-float column but the label when `identifiers`; `hashes` the row hashes over
    `hash_columns`."""

    label: str
    text_features: list[str] = field(default_factory=list)
    numeric_edges: dict[str, np.ndarray] = field(default_factory=dict)
    missing_features: list[str] = field(default_factory=list)
    identifiers: bool = False
    hash_columns: list[str] = field(default_factory=list)
    rows: int = 0
    columns: list[str] = field(default_factory=list)
    classes: Counter = field(default_factory=Counter)
    missing: Counter = field(default_factory=Counter)
    tables: dict[str, Counter] = field(default_factory=dict)
    present: Counter = field(default_factory=Counter)
    distinct: dict[str, list[np.ndarray] | None] = field(default_factory=dict)
    hashes: list[np.ndarray] = field(default_factory=list)

    def add_batch(self, batch: Any) -> ReadinessAccumulator:
        names = batch.schema.names
        self.rows += batch.num_rows
        self.columns = self.columns or list(names)
        if self.label not in names:
            raise ValueError(f"label column {self.label!r} is missing from the split ({names})")
        label_groups, label_texts = arrow_text_groups(batch.column(names.index(self.label)))
        counts = np.bincount(label_groups, minlength=len(label_texts)).tolist()
        self.classes.update({t: n for t, n in zip(label_texts, counts, strict=True) if n})
        for feature in self.text_features:
            if feature in names:
                groups, texts = arrow_text_groups(batch.column(names.index(feature)))
                table = self.tables.setdefault(feature, Counter())
                _pair_counts(groups, texts, label_groups, label_texts, table)
        for feature, edges in self.numeric_edges.items():
            if feature in names:
                keys = _bins(arrow_numbers(batch.column(names.index(feature))), edges)
                table = self.tables.setdefault(feature, Counter())
                _pair_counts(keys, list(range(len(edges) + 2)), label_groups, label_texts, table)
        for feature in self.missing_features:
            if feature in names:
                self.missing[feature] += missing_count(batch.column(names.index(feature)))
        if self.identifiers:
            for name, array in zip(names, batch.columns, strict=True):
                if name == self.label or (name in self.distinct and self.distinct[name] is None):
                    continue
                keys = _value_keys(array)
                if keys is None:  # a float column
                    self.distinct[name] = None
                    continue
                self.present[name] += len(keys)
                self.distinct[name] = _add_distinct(self.distinct.get(name) or [], keys)
        if self.hash_columns and batch.num_rows:
            self.hashes.append(batch_row_hashes(batch, self.hash_columns))
        return self

    def merge(self, other: ReadinessAccumulator) -> ReadinessAccumulator:
        self.rows += other.rows
        self.columns = self.columns or other.columns
        self.classes.update(other.classes)
        self.missing.update(other.missing)
        for feature, table in other.tables.items():
            self.tables.setdefault(feature, Counter()).update(table)
        self.present.update(other.present)
        for name, keys in other.distinct.items():
            if name not in self.distinct:
                self.distinct[name] = keys
            elif self.distinct[name] is None or keys is None:
                self.distinct[name] = None
            else:
                for part in keys:
                    self.distinct[name] = _add_distinct(self.distinct[name], part)
        self.hashes.extend(other.hashes)
        return self

    def identifier_like_columns(self, min_rows: int = 50) -> list[str]:
        """As the whole-frame `identifier_like` (tests/readiness_reference.py) for each column, in
        the order the columns came."""
        return [
            name
            for name, keys in self.distinct.items()
            if keys is not None
            and self.present[name] >= min_rows
            and sum(len(part) for part in keys) >= 0.95 * self.present[name]
        ]

    def row_hashes(self) -> np.ndarray:
        return np.concatenate(self.hashes) if self.hashes else np.array([], dtype=np.uint64)


def _add_distinct(parts: list[np.ndarray], keys: np.ndarray) -> list[np.ndarray]:
    """Distinct keys kept as disjoint sorted parts: the batch's keys not in any part become a
    new part, so nothing is copied but the batch (8 bytes per distinct value in all). Sorting,
    not numpy's hash-based `unique` (several times slower on 64-bit keys)."""
    fresh = np.sort(keys)
    if len(fresh):
        fresh = fresh[np.concatenate([[True], fresh[1:] != fresh[:-1]])]
    for part in parts:
        if not len(fresh):
            break
        at = np.minimum(np.searchsorted(part, fresh), len(part) - 1)
        fresh = fresh[part[at] != fresh]
    if len(fresh):
        parts.append(fresh)
    return parts


def missing_count(array: Any) -> int:
    """Missing values (null, or NaN in a float column), as pandas' `isna` counts them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    missing = array.null_count
    if pa.types.is_floating(array.type):
        missing += int(pc.sum(pc.is_nan(array)).as_py() or 0)
    return missing


def numeric_tables(
    columns: dict[str, np.ndarray],
    label_groups: np.ndarray,
    label_texts: list[str],
    edges: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Counter]]:
    """Train's numeric features: the quantile edges of each (`edges` when given: those of the
    whole column, these rows being part of it) and its (bin, label text) counts (`columns`:
    feature -> float64 values with NaN for missing), binned a slice at a time so that the
    temporaries stay small."""
    given, edges, tables = edges, {}, {}
    step = 1 << 17
    for feature, values in columns.items():
        edges[feature] = quantile_edges(values) if given is None else given
        tables[feature] = Counter()
        key_values = list(range(len(edges[feature]) + 2))
        for start in range(0, len(values), step):
            keys = _bins(values[start : start + step], edges[feature])
            labels = label_groups[start : start + step]
            _pair_counts(keys, key_values, labels, label_texts, tables[feature])
    return edges, tables


def table_auc(train: Counter, other: Counter, classes: list[str]) -> float | None:
    """`single_feature_auc` from (group, label text) counts of train and of the scored split:
    each group's score is its train label rate (train's overall rate for a group train lacks),
    and the AUC over the scored rows is counted per score (ties share their average rank) in
    integers, so it equals the per-row computation to the last bit."""
    if len(classes) < 2:
        return None
    keys = list(dict.fromkeys([key for key, _ in train] + [key for key, _ in other]))
    index = {key: i for i, key in enumerate(keys)}
    slot = {text: i for i, text in enumerate(classes)}
    counts = []
    for table in (train, other):
        matrix = np.zeros((len(keys), len(classes) + 1), dtype=np.int64)
        for (key, text), count in table.items():
            matrix[index[key], slot.get(text, len(classes))] += count
        counts.append(matrix)
    train_counts, other_counts = counts
    sizes = train_counts.sum(axis=1)
    scored = other_counts.sum(axis=1)
    aucs = []
    for positive in range(1, len(classes)) if len(classes) == 2 else range(len(classes)):
        positives = train_counts[:, positive]
        prior = positives.sum() / sizes.sum()
        rate = positives.astype("float64") / np.maximum(sizes, 1)
        scores = np.where(sizes > 0, rate, prior)
        hits = other_counts[:, positive]
        n_pos, n_neg = int(hits.sum()), int(scored.sum() - hits.sum())
        if n_pos == 0 or n_neg == 0:
            continue
        values, inverse = np.unique(scores, return_inverse=True)
        pos = np.zeros(len(values), dtype=np.int64)
        tot = np.zeros(len(values), dtype=np.int64)
        np.add.at(pos, inverse, hits)
        np.add.at(tot, inverse, scored)
        before = np.cumsum(tot) - tot
        # Twice the rank sum of the positives: a tie of t rows after r others ranks r + (t+1)/2.
        twice_rank_sum = sum(
            p * (2 * r + t + 1)
            for p, r, t in zip(pos.tolist(), before.tolist(), tot.tolist(), strict=True)
        )
        aucs.append((twice_rank_sum - n_pos * (n_pos + 1)) / (2 * n_pos * n_neg))
    return float(np.mean(aucs)) if aucs else None


def count_shared(train_hashes: np.ndarray, test_hashes: np.ndarray) -> int:
    """Test rows whose hash is among train's (a hash-table lookup, as the whole-frame `shared_rows` in
    tests/readiness_reference.py)."""
    if not len(test_hashes):
        return 0
    return int(pd.Series(test_hashes).isin(pd.Series(train_hashes)).sum())


def label_classes(train_classes: Counter) -> list[str]:
    """The label's classes: the sorted texts seen in train, the missing text excluded."""
    return sorted(set(train_classes) - {category_text(None)})
