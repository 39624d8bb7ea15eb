"""TFDV-compatible statistics, schema inference, validation and skew/drift checks.

TensorFlow Data Validation cannot be installed in this project, so this module
re-implements the parts the pipeline needs on top of pyarrow/numpy and the
sketches tfx_bsl ships (statistics: ``sketch_stats``, on Beam: ``beam_stats``),
reading and writing TFDV's own proto formats from ``tensorflow_metadata``:

* ``DatasetFeatureStatisticsList`` (TFX ``FeatureStats.pb``),
* ``Schema`` (text format, TFX ``schema.pbtxt``),
* ``Anomalies`` (TFX ``SchemaDiff.pb``).

Conventions that differ from, or are not covered by, TFDV:

* Every column is a scalar feature (one value per example). A pandas missing
  value (NaN/None/NA) is a *missing* feature, as an empty CSV cell is for TFDV,
  so histogram ``num_nan`` is always 0.
* Features are identified by ``path.step`` (what current TFDV writes); ``name``
  shares a oneof with ``path`` so both cannot be set. Readers accept either.
* INT columns, and FLOAT columns whose values are all integral, carry their
  value counts in ``custom_stats`` (``rank_histogram``) so that categorical INT
  features can be compared with the L-infinity distance. FLOAT columns also
  carry ``all_integral_values`` (1 or 0): pandas stores integers with missing
  values as float64, and such a column must still satisfy an INT feature.
* Rank histograms keep the ``num_rank_histogram_buckets`` (default 1000, as in
  TFDV) most frequent values. When a feature has more distinct values, values
  outside the histogram are unknown: domain checks count that remainder as out
  of domain, and the L-infinity distance ignores it (each ignored value has at
  most the frequency of the rarest kept value, which bounds the error). Counts
  come from a Misra-Gries sketch: exact up to its size (4x the buckets), upper
  bounds above it (see ``sketch_stats`` for every sketch's error).
* The numeric Jensen-Shannon divergence is computed from the stats alone:
  both samples are re-binned onto the base sample's quantile boundaries plus
  two open tails, assuming values are uniform inside each source bucket and
  zero-width buckets are point masses.
"""

from mlops.artifacts import ANOMALIES_FILE, SCHEMA_FILE, STATS_FILE
from mlops.tfdv.distances import (
    compare_distributions,
    histogram_masses,
    js_divergence,
    l_infinity_distance,
    set_comparator_thresholds,
)
from mlops.tfdv.io import (
    load_schema,
    read_anomalies,
    read_statistics,
    write_anomalies,
    write_schema,
    write_statistics,
)
from mlops.tfdv.schema import infer_schema
from mlops.tfdv.statistics import (
    ALL_INTEGRAL_STAT,
    RANK_HISTOGRAM_STAT,
    common_statistics,
    compute_statistics,
    features_by_name,
    numeric_histogram,
    split_statistics,
    value_counts,
)
from mlops.tfdv.validation import (
    anomalies_to_dict,
    blocking_anomalies,
    resolve_domain,
    validate_statistics,
)

__all__ = [
    "ALL_INTEGRAL_STAT",
    "ANOMALIES_FILE",
    "RANK_HISTOGRAM_STAT",
    "SCHEMA_FILE",
    "STATS_FILE",
    "anomalies_to_dict",
    "blocking_anomalies",
    "common_statistics",
    "compare_distributions",
    "compute_statistics",
    "features_by_name",
    "histogram_masses",
    "infer_schema",
    "js_divergence",
    "l_infinity_distance",
    "load_schema",
    "numeric_histogram",
    "read_anomalies",
    "read_statistics",
    "resolve_domain",
    "set_comparator_thresholds",
    "split_statistics",
    "validate_statistics",
    "value_counts",
    "write_anomalies",
    "write_schema",
    "write_statistics",
]
