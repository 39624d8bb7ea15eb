"""Schema inference from statistics, as TFDV's `infer_schema` does."""

from __future__ import annotations

from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from mlops.tfdv.statistics import common_statistics, feature_name, split_statistics

_FNS = statistics_pb2.FeatureNameStatistics
_EPS = 1e-12


# --------------------------------------------------------------------------- #
# Schema inference
# --------------------------------------------------------------------------- #


def infer_schema(
    train_stats: statistics_pb2.DatasetFeatureStatistics
    | statistics_pb2.DatasetFeatureStatisticsList,
    *,
    max_string_domain_size: int = 100,
    required_fraction_threshold: float = 1.0,
    infer_feature_shape: bool = True,
) -> schema_pb2.Schema:
    """Infer a schema from training statistics, as ``tfdv.infer_schema`` does.

    A feature present in at least ``required_fraction_threshold`` of the examples
    gets ``presence.min_fraction`` equal to that threshold (1.0: always present).
    String features with at most ``max_string_domain_size`` distinct values get a
    schema-level ``string_domain`` named after the feature.
    """
    if isinstance(train_stats, statistics_pb2.DatasetFeatureStatisticsList):
        if len(train_stats.datasets) == 1:
            train_stats = train_stats.datasets[0]
        else:
            train_stats = split_statistics(train_stats, "train")
    if not 0.0 < required_fraction_threshold <= 1.0:
        raise ValueError("required_fraction_threshold must be in (0, 1]")

    schema = schema_pb2.Schema()
    num_examples = train_stats.num_examples
    for fs in train_stats.features:
        name = feature_name(fs)
        feature = schema.feature.add(name=name)
        if fs.type == _FNS.INT:
            feature.type = schema_pb2.INT
        elif fs.type == _FNS.FLOAT:
            feature.type = schema_pb2.FLOAT
        elif fs.type in (_FNS.STRING, _FNS.BYTES):
            feature.type = schema_pb2.BYTES
        else:
            feature.type = schema_pb2.STRUCT
        common = common_statistics(fs)
        present = common.num_non_missing
        fraction = present / num_examples if num_examples else 0.0
        if present and fraction >= required_fraction_threshold - _EPS:
            feature.presence.min_fraction = 1.0 if fraction == 1.0 else required_fraction_threshold
        feature.presence.min_count = 1 if present else 0
        if infer_feature_shape and present == num_examples and present:
            feature.shape.dim.add(size=1)
        else:
            feature.value_count.min = 1
            feature.value_count.max = 1

        if fs.WhichOneof("stats") in ("string_stats", "bytes_stats"):
            ss = fs.string_stats if fs.HasField("string_stats") else fs.bytes_stats
            values = [b.label for b in ss.rank_histogram.buckets]
            if 0 < ss.unique <= max_string_domain_size and len(values) == ss.unique:
                schema.string_domain.add(name=name, value=sorted(values))
                feature.domain = name
    return schema
