"""The raw-feature contract shared by transform, training, evaluation and serving.

Numeric features enter the model as float32 with NaN for a missing value; categorical features as
text with "" for a missing value (an integer-coded category 8 reads "8"). Every consumer converts
with these functions, so training and serving see identical inputs.

Python-side records and arrays are keyed by the names as written in the data and config; the
TensorFlow side (TFT inputs, the SavedModel signatures, tf.Examples) by their internal names
(`mlops.names.safe_name`), and `to_model_inputs` is the one crossing between the two.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from mlops.config import FeatureConfig
from mlops.names import internal_names

if TYPE_CHECKING:
    import pandas as pd

MISSING_CATEGORY = ""


def _is_pandas_na(value: Any) -> bool:
    # pandas is imported only where frames are used (the prediction server never needs it);
    # without pandas loaded, no value can be pd.NA.
    pandas = sys.modules.get("pandas")
    return pandas is not None and value is pandas.NA


def category_text(value: Any) -> str:
    if value is None:
        return MISSING_CATEGORY
    if isinstance(value, float):
        if math.isnan(value):
            return MISSING_CATEGORY
        if value.is_integer():
            return str(int(value))
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if _is_pandas_na(value):
        return MISSING_CATEGORY
    return str(value)


def numeric_value(value: Any) -> float:
    if value is None or _is_pandas_na(value):
        return math.nan
    return float(value)


def coerce_record(record: Mapping[str, Any], features: FeatureConfig) -> dict[str, Any]:
    """One row as the model's raw inputs (features absent from the record count as missing)."""
    row: dict[str, Any] = {}
    for name in features.numeric:
        row[name] = np.float32(numeric_value(record.get(name)))
    for name in features.categorical:
        row[name] = category_text(record.get(name))
    if features.image is not None:  # encoded image bytes, b"" when absent
        row[features.image.column] = record.get(features.image.column) or b""
    return row


def frame_to_arrays(frame: pd.DataFrame, features: FeatureConfig) -> dict[str, np.ndarray]:
    """A whole frame as the model's raw inputs: float32 arrays and arrays of Python str."""
    import pandas as pd

    arrays: dict[str, np.ndarray] = {}
    for name in features.numeric:
        arrays[name] = (
            pd.to_numeric(frame[name], errors="coerce")
            .astype("float64")
            .to_numpy(dtype=np.float32, na_value=np.nan)
        )
    for name in features.categorical:
        arrays[name] = category_texts(frame[name]).to_numpy()
    if features.image is not None:
        column = features.image.column
        arrays[column] = np.array([v or b"" for v in frame[column]], dtype=object)
    return arrays


def model_input_names(features: FeatureConfig) -> dict[str, str]:
    """{raw feature as written: its name inside the model}; the identity for names that are
    already identifiers."""
    return internal_names(features.raw_features)


def to_model_inputs(values: Mapping[str, Any], features: FeatureConfig) -> dict[str, Any]:
    """Per-feature `values` (a record or arrays keyed by the names as written) keyed by the
    model's internal names instead; other keys are left out."""
    return {internal: values[name] for name, internal in model_input_names(features).items()}


def category_texts(column: pd.Series) -> pd.Series:
    """`category_text` of every value, computed once per distinct value (a Python call per row
    costs seconds per million rows)."""
    import pandas as pd

    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    texts = np.array([category_text(value) for value in uniques] + [category_text(None)], object)
    return pd.Series(texts[codes], index=column.index, dtype=object)


def tf_input_signature(features: FeatureConfig) -> dict[str, Any]:
    """`tf.TensorSpec`s of the raw-feature serving signature (one value per row), by internal
    name."""
    import tensorflow as tf

    names = model_input_names(features)
    spec = {
        names[name]: tf.TensorSpec([None], tf.float32, name=names[name])
        for name in features.numeric
    }
    spec.update(
        {
            names[name]: tf.TensorSpec([None], tf.string, name=names[name])
            for name in features.categorical
        }
    )
    if features.image is not None:  # encoded PNG/JPEG bytes
        spec[names[features.image.column]] = tf.TensorSpec(
            [None], tf.string, name=names[features.image.column]
        )
    return spec


def tf_example_spec(features: FeatureConfig) -> dict[str, Any]:
    """Parsing spec for serialized tf.Example inputs keyed by internal name; absent values become
    NaN / ""."""
    import tensorflow as tf

    names = model_input_names(features)
    spec = {
        names[name]: tf.io.FixedLenFeature([], tf.float32, default_value=math.nan)
        for name in features.numeric
    }
    spec.update(
        {
            names[name]: tf.io.FixedLenFeature([], tf.string, default_value=MISSING_CATEGORY)
            for name in features.categorical
        }
    )
    if features.image is not None:
        spec[names[features.image.column]] = tf.io.FixedLenFeature([], tf.string, default_value="")
    return spec


def encode_labels(values: Any, classes: list[str], split: str) -> np.ndarray:
    index = {name: i for i, name in enumerate(classes)}
    texts = [category_text(v) for v in values]
    unknown = sorted({t for t in texts if t not in index})
    if unknown:
        raise ValueError(
            f"{split} split has label values {unknown[:5]} not seen in train (classes {classes})"
        )
    return np.array([index[t] for t in texts], dtype=np.int64)
