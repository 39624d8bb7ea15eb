"""Is the data fit to train on? Problems that would only surface minutes later (a single-class
label at transform, an empty feature in training, a tiny split in evaluation) read off the
statistics before anything is trained, each named with the split, the column and what to do."""

from __future__ import annotations

from tensorflow_metadata.proto.v0 import statistics_pb2

from mlops.config import PipelineConfig
from mlops.tfdv.statistics import common_statistics, features_by_name, value_counts


def _distinct(fs: statistics_pb2.FeatureNameStatistics) -> tuple[int | None, str]:
    """(number of distinct present values or None if unknown, an example value)."""
    counts = value_counts(fs)
    if counts is not None:
        example = next(iter(counts), "")
        return len(counts), example
    if fs.WhichOneof("stats") == "num_stats":
        stats = fs.num_stats
        if stats.common_stats.num_non_missing == 0:
            return 0, ""
        if stats.min == stats.max:
            return 1, f"{stats.min:g}"
        return None, ""
    if fs.WhichOneof("stats") == "string_stats":
        return int(fs.string_stats.unique), ""
    return None, ""


def readiness_problems(
    stats: statistics_pb2.DatasetFeatureStatisticsList, config: PipelineConfig
) -> list[str]:
    """One message per problem that makes training pointless or impossible."""
    problems: list[str] = []
    splits = {ds.name: ds for ds in stats.datasets}
    minimum = config.validation.min_rows_per_split
    for name, ds in splits.items():
        if ds.num_examples < minimum:
            problems.append(
                f"split {name!r} has {ds.num_examples} rows; at least {minimum} are needed "
                "(validation.min_rows_per_split): give more data or change data.split"
            )
    train = splits.get("train")
    if train is None:
        return problems
    features = features_by_name(train)
    label = config.data.label
    if label in features:
        classes, example = _distinct(features[label])
        if classes is not None and classes < 2:
            problems.append(
                f"label {label!r} has {classes} class in train ({example!r}); a classifier "
                "needs at least two: check data.label and the split"
            )
        train_classes = value_counts(features[label])
        for name in ("eval", "test"):
            other = splits.get(name)
            other_label = features_by_name(other).get(label) if other else None
            other_classes = value_counts(other_label) if other_label is not None else None
            if train_classes is not None and other_classes is not None:
                unseen = sorted(set(other_classes) - set(train_classes))
                if unseen:
                    problems.append(
                        f"split {name!r} has label values {unseen[:5]} that train never has; "
                        "the model cannot predict them: use a hash split or more data"
                    )
    for feature in config.features.raw_features:
        fs = features.get(feature)
        if fs is None:
            continue
        common = common_statistics(fs)
        kind = "numeric" if feature in config.features.numeric else "categorical"
        if common.num_non_missing == 0:
            problems.append(
                f"feature {feature!r} is empty in train (every value is missing): remove it from "
                f"features.{kind} or fix the source"
            )
            continue
        distinct, example = _distinct(fs)
        if distinct == 1 and common.num_missing == 0:
            problems.append(
                f"feature {feature!r} is constant in train (always {example!r}): it cannot "
                f"inform the model; remove it from features.{kind}"
            )
    return problems
