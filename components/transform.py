"""Transform: analyze the train split with TensorFlow Transform on Beam.

The output is a standard TFT directory (`transform_fn/`, `transformed_metadata/`) plus
`label_classes.json`. Training applies the transform graph inside TensorFlow and the exported
model embeds it, so training and serving preprocess identically. Only the analysis is a Beam job:
transformed data is never materialised (it would cost a second pass and disk for nothing).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mlops.artifacts import LABEL_CLASSES_FILE
from mlops.config import FeatureConfig, PipelineConfig
from mlops.features import category_text, coerce_record, model_input_names
from mlops.io import (
    atomic_uri_dir,
    is_remote,
    join_uri,
    open_uri,
    remove_uri_tree,
    require_complete_uri,
    to_beam_uri,
    write_uri_text,
)

CROSS_SEPARATOR = "\x1f"


def z_name(feature: str) -> str:
    return f"{feature}_z"


def missing_name(feature: str) -> str:
    return f"{feature}_missing"


def bucket_name(feature: str) -> str:
    return f"{feature}_bucket"


def id_name(feature: str) -> str:
    return f"{feature}_id"


def cross_name(cross: list[str]) -> str:
    return "cross_" + "_x_".join(cross)


def pixels_name(feature: str) -> str:
    return f"{feature}_pixels"


def transformed_names(features: FeatureConfig) -> dict[str, list[str]]:
    """{output of the transform: the raw columns (as written) it comes from}, checked unique.
    Outputs are named after the columns' internal names, so a column named like another's output
    cannot clash with it; only crosses can ("a_x_b" x "c" and "a" x "b_x_c"), and then the error
    names both."""
    names = model_input_names(features)
    outputs: list[tuple[str, list[str]]] = []
    for column in features.numeric:
        outputs += [(z_name(names[column]), [column]), (missing_name(names[column]), [column])]
        if column in features.bucketize:
            outputs.append((bucket_name(names[column]), [column]))
    outputs += [(id_name(names[column]), [column]) for column in features.categorical]
    outputs += [(cross_name([names[c] for c in cross]), list(cross)) for cross in features.crosses]
    if features.image is not None:
        outputs.append((pixels_name(names[features.image.column]), [features.image.column]))
    sources: dict[str, list[str]] = {}
    for output, columns in outputs:
        if output in sources:
            raise ValueError(
                f"features {sources[output]} and {columns} would both become the transformed "
                f"feature {output!r}; rename a column or drop one of the crosses"
            )
        sources[output] = columns
    return sources


def _raw_model_inputs(
    record: dict[str, Any], features: FeatureConfig, names: dict[str, str]
) -> dict[str, Any]:
    # `names` (model_input_names) is worked out once per pipeline, not once per row
    return {names[name]: value for name, value in coerce_record(record, features).items()}


def build_preprocessing_fn(features: FeatureConfig) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """TFT preprocessing from config: impute + z-score, bucketize, vocabularies, hashed crosses,
    and images decoded, resized and scaled to float [H, W, C] (`mlops.images.decode_images`).

    Every analyzer reads raw inputs, so TFT runs a single analysis phase. Numeric statistics skip
    missing values (z-scoring the present values and filling the gaps with 0 is mean imputation)
    and a `<name>_missing` indicator keeps the fact that a value was absent. Inputs, outputs and
    vocabularies go by internal names (`mlops.names.safe_name`).
    """
    names = model_input_names(features)
    transformed_names(features)  # fails early, naming the columns, if two outputs would clash

    def preprocessing_fn(inputs: dict[str, Any]) -> dict[str, Any]:
        import tensorflow as tf
        import tensorflow_transform as tft

        outputs: dict[str, Any] = {}
        crossable: dict[str, Any] = {}
        for column_name in features.numeric:
            name = names[column_name]
            column = tf.expand_dims(inputs[name], 1)
            present = tf.logical_not(tf.math.is_nan(column))
            indices = tf.where(present)
            sparse = tf.SparseTensor(
                indices, tf.gather_nd(column, indices), tf.shape(column, out_type=tf.int64)
            )
            scaled = tft.scale_to_z_score(sparse)
            outputs[z_name(name)] = tf.squeeze(tf.sparse.to_dense(scaled, default_value=0.0), 1)
            outputs[missing_name(name)] = tf.squeeze(1.0 - tf.cast(present, tf.float32), 1)
            if column_name in features.bucketize:
                count = features.bucketize[column_name]
                buckets = tft.bucketize(sparse, count, name=f"bucketize_{name}")
                # Missing values get a bucket of their own, `count`.
                dense = tf.squeeze(tf.sparse.to_dense(buckets, default_value=count), 1)
                outputs[bucket_name(name)] = dense
                crossable[column_name] = tf.strings.as_string(dense)
        for column_name in features.categorical:
            name = names[column_name]
            outputs[id_name(name)] = tft.compute_and_apply_vocabulary(
                inputs[name],
                frequency_threshold=features.vocab_frequency_threshold,
                num_oov_buckets=features.oov_buckets,
                vocab_filename=name,
            )
            crossable[column_name] = inputs[name]
        if features.image is not None:  # decode + resize + scale to [0, 1]: no analyzer
            from mlops.images import decode_images

            name = names[features.image.column]
            outputs[pixels_name(name)] = decode_images(inputs[name], features.image)
        for cross in features.crosses:
            joined = tf.strings.join([crossable[name] for name in cross], separator=CROSS_SEPARATOR)
            outputs[cross_name([names[name] for name in cross])] = tf.strings.to_hash_bucket_fast(
                joined, features.cross_hash_buckets
            )
        return outputs

    return preprocessing_fn


def categorical_sizes(features: FeatureConfig, tft_output: Any) -> dict[str, int]:
    """Number of distinct ids of every integer output of the transform (embedding sizes)."""
    names = model_input_names(features)
    sizes: dict[str, int] = {}
    for column in features.categorical:
        name = names[column]
        sizes[id_name(name)] = tft_output.vocabulary_size_by_name(name) + features.oov_buckets
    for column, count in features.bucketize.items():
        sizes[bucket_name(names[column])] = count + 1
    for cross in features.crosses:
        sizes[cross_name([names[column] for column in cross])] = features.cross_hash_buckets
    return sizes


def label_classes(labels: Any) -> list[str]:
    """Sorted class names of the label (as text, so 0/1 labels read "0"/"1")."""
    classes = sorted({category_text(v) for v in labels if category_text(v) != ""})
    if len(classes) < 2:
        raise ValueError(f"the label needs at least two classes in train, found {classes}")
    return classes


@contextlib.contextmanager
def _tft_temp_dir(options: Any) -> Iterator[str]:
    """TFT's temporary directory: under the pipeline's --temp_location when it has one (on
    Dataflow, a gs:// place every worker reaches), else a local one removed afterwards."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    temp_location = options.view_as(GoogleCloudOptions).temp_location
    if temp_location:
        yield f"{temp_location.rstrip('/')}/tft-{uuid.uuid4().hex}"
        return
    with tempfile.TemporaryDirectory() as local:
        yield local


def _read_train_labels(dataset_dir: str | Path, label: str) -> list[Any]:
    """The label column of the train split (a local, /gcs/ or gs:// dataset directory)."""
    import pandas as pd

    path = join_uri(require_complete_uri(dataset_dir), "train.parquet")
    with open_uri(path) as handle:
        return pd.read_parquet(handle, columns=[label])[label].tolist()


def run_transform(
    config: PipelineConfig, dataset_dir: str | Path, output_dir: str | Path
) -> dict[str, Any]:
    """Analyze train with TFT on Beam (runner from `config.beam_args`) into `output_dir`.

    Both may be local paths, /gcs/ paths (a step on Vertex AI) or gs:// URIs; on Cloud Storage
    the output is complete once its `_SUCCESS` marker exists (`mlops.io.atomic_uri_dir`)."""
    import apache_beam as beam
    import tensorflow as tf
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    features = config.features
    labels = _read_train_labels(dataset_dir, config.data.label)
    classes = label_classes(labels)
    names = model_input_names(features)
    raw_spec = {names[name]: tf.io.FixedLenFeature([], tf.float32) for name in features.numeric}
    raw_spec.update(
        {names[name]: tf.io.FixedLenFeature([], tf.string) for name in features.categorical}
    )
    if features.image is not None:
        raw_spec[names[features.image.column]] = tf.io.FixedLenFeature([], tf.string)
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(raw_spec))
    # Beam (on Dataflow: its workers) reads and writes /gcs/ paths as gs:// URIs.
    train_path = to_beam_uri(join_uri(dataset_dir, "train.parquet"))
    options = beam.options.pipeline_options.PipelineOptions(config.beam_args)

    with atomic_uri_dir(output_dir) as out, _tft_temp_dir(options) as tft_tmp:
        # force_tf_compat_v1 traces the graph once in TF1 mode: measurably faster here, and the
        # result still loads with TFTransformOutput in TF2.
        with (
            beam.Pipeline(options=options) as pipeline,
            tft_beam.Context(temp_dir=tft_tmp, force_tf_compat_v1=True),
        ):
            rows = (
                pipeline
                | "ReadTrain" >> beam.io.ReadFromParquet(train_path, columns=features.raw_features)
                | "ToRawFeatures" >> beam.Map(_raw_model_inputs, features, names)
            )
            transform_fn = (rows, metadata) | "Analyze" >> tft_beam.AnalyzeDataset(
                build_preprocessing_fn(features)
            )
            _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(to_beam_uri(out))
        write_uri_text(join_uri(out, LABEL_CLASSES_FILE), json.dumps(classes))
        if is_remote(tft_tmp):
            remove_uri_tree(tft_tmp)  # only after success: a failed run's leftovers stay to look at
    return {"label_classes": classes, "train_rows": len(labels)}
