"""Statistics as a Beam pipeline: record batches keyed by split go through a CombineFn of the
mergeable sketches in `sketch_stats` into one `DatasetFeatureStatisticsList`, written as TFX's
`FeatureStats.pb`. The runner comes from the Beam arguments (FnApiRunner locally, Dataflow on
Vertex), and memory is bounded by the sketch sizes, not by the data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from tensorflow_metadata.proto.v0 import statistics_pb2

from mlops.io import to_beam_uri
from mlops.tfdv.sketch_stats import SplitAccumulator, StatsOptions


class StatisticsCombineFn(beam.CombineFn):
    """Arrow record batches (or tables) of one split -> that split's statistics (unnamed)."""

    def __init__(self, options: StatsOptions):
        self._options = options

    def create_accumulator(self) -> SplitAccumulator:
        return SplitAccumulator(self._options)

    def add_input(self, accumulator: SplitAccumulator, batch) -> SplitAccumulator:
        return accumulator.add_batch(batch)

    def merge_accumulators(self, accumulators) -> SplitAccumulator:
        accumulators = iter(accumulators)
        merged = next(accumulators)
        for other in accumulators:
            merged.merge(other)
        return merged

    def compact(self, accumulator: SplitAccumulator) -> SplitAccumulator:
        return accumulator.compact()

    def extract_output(self, accumulator: SplitAccumulator):
        return accumulator.to_proto("")


def _named(split: str, stats: statistics_pb2.DatasetFeatureStatistics):
    stats.name = split
    return stats


def _in_order(
    datasets: list[statistics_pb2.DatasetFeatureStatistics], splits: Sequence[str]
) -> statistics_pb2.DatasetFeatureStatisticsList:
    """One dataset per split in `splits` order; a split without batches has no examples."""
    by_name = {ds.name: ds for ds in datasets}
    result = statistics_pb2.DatasetFeatureStatisticsList()
    for split in splits:
        result.datasets.append(
            by_name.get(split, statistics_pb2.DatasetFeatureStatistics(name=split))
        )
    return result


class GenerateStatistics(beam.PTransform):
    """(split, record batch) pairs -> one DatasetFeatureStatisticsList with a dataset per split,
    in `splits` order."""

    def __init__(self, splits: Sequence[str], options: StatsOptions):
        super().__init__()
        self._splits = list(splits)
        self._options = options

    def expand(self, keyed_batches):
        return (
            keyed_batches
            | "CombinePerSplit" >> beam.CombinePerKey(StatisticsCombineFn(self._options))
            | "Name" >> beam.MapTuple(_named)
            | "Collect" >> beam.combiners.ToList()
            | "InSplitOrder" >> beam.Map(_in_order, self._splits)
        )


def _write_statistics(stats: statistics_pb2.DatasetFeatureStatisticsList, uri: str) -> str:
    """Write to a temporary name, then rename, so a reader never sees a partial file."""
    temporary = f"{uri}.tmp"
    with FileSystems.create(temporary) as handle:
        handle.write(stats.SerializeToString(deterministic=True))
    FileSystems.rename([temporary], [uri])
    return uri


def statistics_of_parquet(
    splits: Mapping[str, str | Path],
    output_path: str | Path,
    *,
    label: str | None,
    beam_args: Sequence[str],
) -> statistics_pb2.DatasetFeatureStatisticsList:
    """Statistics of Parquet files (one per split) on Beam, written to `output_path`
    (`FeatureStats.pb`, a local path, a /gcs/ mount path or a gs:// URI) and returned."""
    options = StatsOptions(label=label)
    uri = to_beam_uri(output_path)
    with beam.Pipeline(options=PipelineOptions(list(beam_args))) as pipeline:
        keyed = [
            pipeline
            | f"Read[{split}]" >> beam.io.ReadFromParquetBatched(to_beam_uri(path))
            | f"Key[{split}]" >> beam.Map(lambda table, split=split: (split, table))
            for split, path in splits.items()
        ]
        _ = (
            keyed
            | "Flatten" >> beam.Flatten()
            | "Statistics" >> GenerateStatistics(list(splits), options)
            | "Write" >> beam.Map(_write_statistics, uri)
        )
    with FileSystems.open(uri) as handle:
        return statistics_pb2.DatasetFeatureStatisticsList.FromString(handle.read())
