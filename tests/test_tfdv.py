"""Tests for the TFDV-compatible statistics, schema, validation and skew code."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import palmerpenguins
import pandas as pd
import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from mlops import tfdv as dv
from mlops.tfdv.sketch_stats import CDF_POINTS, QUANTILES_EPSILON
from mlops.tfdv.statistics import all_integral

DATA = Path(__file__).resolve().parents[1] / "data"
TAXI_CSV = DATA / "chicago_taxi" / "big_tipper.csv"
TAXI_SCHEMA = DATA / "chicago_taxi" / "tfx_schema.pbtxt"
PENGUINS_CLEAN = DATA / "penguins_tfx" / "penguins_processed.csv"
PENGUINS_SKEWED = DATA / "penguins_tfx" / "penguins_processed_skewed.csv"
PENGUIN_FEATURES = ["culmen_length_mm", "culmen_depth_mm", "flipper_length_mm", "body_mass_g"]

Info = anomalies_pb2.AnomalyInfo
FNS = statistics_pb2.FeatureNameStatistics


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    return palmerpenguins.load_penguins()


@pytest.fixture(scope="module")
def penguin_stats(penguins) -> statistics_pb2.DatasetFeatureStatisticsList:
    return dv.compute_statistics({"train": penguins}, label="species")


@pytest.fixture(scope="module")
def taxi() -> pd.DataFrame:
    return pd.read_csv(TAXI_CSV)


@pytest.fixture(scope="module")
def taxi_anomalies(taxi) -> anomalies_pb2.Anomalies:
    stats = dv.compute_statistics({"train": taxi}, label="big_tipper")
    return dv.validate_statistics(stats.datasets[0], dv.load_schema(TAXI_SCHEMA))


@pytest.fixture(scope="module")
def tfx_penguins() -> dict[str, pd.DataFrame]:
    clean = pd.read_csv(PENGUINS_CLEAN)
    return {
        "clean": clean,
        "skewed": pd.read_csv(PENGUINS_SKEWED),
        "resample": clean.sample(frac=0.5, replace=True, random_state=0),
    }


# Rank error the sketched quantities may have (see mlops.tfdv.sketch_stats).
RANK_TOLERANCE = QUANTILES_EPSILON + 1 / CDF_POINTS


def assert_quantile(values: pd.Series, fraction: float, got: float) -> None:
    """`got` is a value whose rank is within RANK_TOLERANCE of `fraction`."""
    low = np.quantile(values, max(fraction - RANK_TOLERANCE, 0.0), method="lower")
    high = np.quantile(values, min(fraction + RANK_TOLERANCE, 1.0), method="higher")
    assert low <= got <= high, (fraction, low, got, high)


def assert_standard_histogram(values: pd.Series, hist: statistics_pb2.Histogram) -> None:
    """Each cumulative bucket count within RANK_TOLERANCE * n of numpy's exact one."""
    edges = [hist.buckets[0].low_value] + [b.high_value for b in hist.buckets]
    exact = np.cumsum(np.histogram(values, bins=edges)[0])
    got = np.cumsum([b.sample_count for b in hist.buckets])
    np.testing.assert_allclose(got, exact, atol=RANK_TOLERANCE * len(values) + 1e-9)


def _summary(anomalies: anomalies_pb2.Anomalies) -> dict[str, tuple[str, list[str]]]:
    return {
        name: (Info.Severity.Name(info.severity), [Info.Type.Name(r.type) for r in info.reason])
        for name, info in anomalies.anomaly_info.items()
    }


def _skew_values(anomalies: anomalies_pb2.Anomalies, kind: str = "skew") -> dict[str, float]:
    return {
        ".".join(d.path.step): getattr(d, f"{kind}_measurements")[0].value
        for d in anomalies.drift_skew_info
    }


def _penguin_skew_schema(train: statistics_pb2.DatasetFeatureStatistics, threshold: float):
    schema = dv.infer_schema(train)
    species = next(f for f in schema.feature if f.name == "species")
    species.int_domain.is_categorical = True
    return dv.set_comparator_thresholds(
        schema, kind="skew", default_categorical=threshold, default_numeric=threshold
    )


# --------------------------------------------------------------------------- statistics


def test_numeric_statistics_match_pandas(penguins, penguin_stats):
    ds = penguin_stats.datasets[0]
    assert ds.name == "train"
    assert ds.num_examples == len(penguins) == 344
    feats = dv.features_by_name(ds)
    assert list(feats) == list(penguins.columns)
    for column in ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]:
        fs = feats[column]
        assert list(fs.path.step) == [column]
        values = penguins[column].dropna()
        num = fs.num_stats
        common = num.common_stats
        assert common.num_non_missing == len(values)
        assert common.num_missing == penguins[column].isna().sum()
        assert common.tot_num_values == len(values)
        assert (common.min_num_values, common.max_num_values, common.avg_num_values) == (1, 1, 1)
        assert num.mean == pytest.approx(values.mean())
        assert num.std_dev == pytest.approx(values.std(ddof=0))
        assert num.min == values.min() and num.max == values.max()
        assert_quantile(values, 0.5, num.median)
        assert num.num_zeros == (values == 0).sum()
        std, quant = num.histograms
        assert std.type == statistics_pb2.Histogram.STANDARD and len(std.buckets) == 10
        assert sum(b.sample_count for b in std.buckets) == len(values)
        assert std.buckets[0].low_value == values.min()
        assert std.buckets[-1].high_value == values.max()
        assert_standard_histogram(values, std)
        assert quant.type == statistics_pb2.Histogram.QUANTILES and len(quant.buckets) == 10
        assert sum(b.sample_count for b in quant.buckets) == pytest.approx(len(values))
        got = [quant.buckets[0].low_value] + [b.high_value for b in quant.buckets]
        assert got[0] == values.min() and got[-1] == values.max()
        for fraction, value in zip(np.linspace(0, 1, 11), got, strict=True):
            assert_quantile(values, fraction, value)
        assert std.num_nan == 0  # pandas NaN means missing, counted in num_missing
    assert feats["year"].type == FNS.INT
    assert feats["body_mass_g"].type == FNS.FLOAT
    # Integral floats (body mass with NaN) are marked so they can satisfy INT features.
    assert all_integral(feats["body_mass_g"]) and not all_integral(feats["bill_length_mm"])
    assert dv.value_counts(feats["year"]) == {"2009": 120, "2008": 114, "2007": 110}


def test_string_statistics_match_pandas(penguins, penguin_stats):
    feats = dv.features_by_name(penguin_stats.datasets[0])
    for column in ["species", "island", "sex"]:
        fs = feats[column]
        assert fs.type == FNS.STRING
        ss = fs.string_stats
        values = penguins[column].dropna()
        counts = values.value_counts()
        assert ss.common_stats.num_non_missing == len(values)
        assert ss.common_stats.num_missing == penguins[column].isna().sum()
        assert ss.unique == len(counts)
        assert ss.avg_length == pytest.approx(values.str.len().mean())
        assert [(b.label, b.sample_count) for b in ss.rank_histogram.buckets] == [
            (k, v) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        assert [b.low_rank for b in ss.rank_histogram.buckets] == list(range(len(counts)))
        assert [(t.value, t.frequency) for t in ss.top_values] == [
            (b.label, b.sample_count) for b in ss.rank_histogram.buckets
        ]
    assert feats["sex"].string_stats.common_stats.num_missing == 11


def test_statistics_are_deterministic_and_typed_by_dtype():
    df = pd.DataFrame(
        {
            "flag": [True, False, True, True],
            "nullable_int": pd.array([1, None, 3, 3], dtype="Int64"),
            "text": pd.array(["b", "a", None, "c"], dtype="string"),
            "cat": pd.Categorical(["x", "y", "x", "y"]),
            "tie": ["b", "a", "b", "a"],
            "const": [2.5, 2.5, 2.5, 2.5],
        }
    )
    first = dv.compute_statistics({"train": df, "eval": df.iloc[:2]})
    second = dv.compute_statistics({"train": df, "eval": df.iloc[:2]})
    assert first.SerializeToString(deterministic=True) == second.SerializeToString(
        deterministic=True
    )
    assert [d.name for d in first.datasets] == ["train", "eval"]
    feats = dv.features_by_name(first.datasets[0])
    assert [feats[c].type for c in df.columns] == [
        FNS.INT,
        FNS.INT,
        FNS.STRING,
        FNS.STRING,
        FNS.STRING,
        FNS.FLOAT,
    ]
    assert feats["flag"].num_stats.mean == 0.75
    assert feats["nullable_int"].num_stats.common_stats.num_missing == 1
    assert feats["text"].string_stats.common_stats.num_missing == 1
    # Ties are broken by value.
    assert [b.label for b in feats["tie"].string_stats.rank_histogram.buckets] == ["a", "b"]
    const_hist = feats["const"].num_stats.histograms[0]
    assert [(b.low_value, b.high_value, b.sample_count) for b in const_hist.buckets] == [
        (2.5, 2.5, 4)
    ]


def test_statistics_reject_unsupported_dtypes_and_unknown_label():
    with pytest.raises(TypeError, match="when"):
        dv.compute_statistics({"train": pd.DataFrame({"when": pd.to_datetime(["2024-01-01"])})})
    with pytest.raises(ValueError, match="label column 'y'"):
        dv.compute_statistics({"train": pd.DataFrame({"x": [1]})}, label="y")


def test_statistics_file_roundtrip(tmp_path, penguin_stats):
    path = dv.write_statistics(penguin_stats, tmp_path / "stats" / dv.STATS_FILE)
    assert path.name == "FeatureStats.pb"
    assert dv.read_statistics(path) == penguin_stats
    parsed = statistics_pb2.DatasetFeatureStatisticsList.FromString(path.read_bytes())
    assert parsed.datasets[0].num_examples == 344
    # Overwrite in place, leaving no temporary files behind.
    dv.write_statistics(penguin_stats, path)
    assert [p.name for p in path.parent.iterdir()] == ["FeatureStats.pb"]


def test_read_statistics_rejects_garbage(tmp_path):
    bad = tmp_path / "FeatureStats.pb"
    bad.write_bytes(b"\xff\xff\xff not a proto")
    with pytest.raises(ValueError, match="FeatureStats.pb"):
        dv.read_statistics(bad)


# --------------------------------------------------------------------------- schema


def test_infer_schema_follows_tfdv_semantics(penguin_stats):
    schema = dv.infer_schema(penguin_stats)  # a list with one split is accepted too
    features = {f.name: f for f in schema.feature}
    assert list(features) == [
        "species",
        "island",
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "sex",
        "year",
    ]
    species = features["species"]
    assert species.type == schema_pb2.BYTES
    assert species.presence.min_fraction == 1.0 and species.presence.min_count == 1
    assert [d.size for d in species.shape.dim] == [1]
    assert species.domain == "species"
    domains = {d.name: list(d.value) for d in schema.string_domain}
    assert domains == {
        "species": ["Adelie", "Chinstrap", "Gentoo"],
        "island": ["Biscoe", "Dream", "Torgersen"],
        "sex": ["female", "male"],
    }
    bill = features["bill_length_mm"]
    assert bill.type == schema_pb2.FLOAT
    assert not bill.presence.HasField("min_fraction") and bill.presence.min_count == 1
    assert (bill.value_count.min, bill.value_count.max) == (1, 1)
    assert features["year"].type == schema_pb2.INT
    # The training data is valid against its own schema.
    assert not dv.validate_statistics(penguin_stats.datasets[0], schema).anomaly_info
    assert not dv.validate_statistics(penguin_stats, schema).anomaly_info  # one-split list

    small = dv.infer_schema(penguin_stats.datasets[0], max_string_domain_size=2)
    assert [d.name for d in small.string_domain] == ["sex"]
    relaxed = dv.infer_schema(penguin_stats.datasets[0], required_fraction_threshold=0.9)
    relaxed_bill = next(f for f in relaxed.feature if f.name == "bill_length_mm")
    assert relaxed_bill.presence.min_fraction == pytest.approx(0.9)


def test_schema_text_roundtrip(tmp_path, penguin_stats):
    schema = dv.infer_schema(penguin_stats.datasets[0])
    path = dv.write_schema(schema, tmp_path / dv.SCHEMA_FILE)
    assert dv.load_schema(path) == schema
    assert text_format.Parse(path.read_text(), schema_pb2.Schema()) == schema


def test_bad_schema_file_raises_clear_error(tmp_path):
    bad = tmp_path / "schema.pbtxt"
    bad.write_text('feature {\n  name: "x"\n  type: NOT_A_TYPE\n}\n')
    with pytest.raises(ValueError, match=r"schema\.pbtxt.*NOT_A_TYPE") as info:
        dv.load_schema(bad)
    assert str(bad) in str(info.value)
    binary = tmp_path / "binary.pbtxt"
    binary.write_bytes(b"\x80\x81\x82")
    with pytest.raises(ValueError, match="binary.pbtxt"):
        dv.load_schema(binary)


# --------------------------------------------------------------------------- validation


def test_tfx_taxi_schema_loads(taxi_anomalies):
    schema = dv.load_schema(TAXI_SCHEMA)
    assert len(schema.feature) == 18
    assert [d.name for d in schema.string_domain] == ["company", "payment_type"]
    assert taxi_anomalies.baseline == schema
    assert taxi_anomalies.anomaly_name_format == anomalies_pb2.Anomalies.SERIALIZED_PATH


def test_taxi_data_against_tfx_schema(taxi_anomalies):
    # pickup_census_tract is 15001/15002 missing but the schema asks for min_count 0;
    # the INT features read by pandas as float64 (NaNs) hold only integers, so pass;
    # every payment_type value is in its domain.
    assert _summary(taxi_anomalies) == {
        "big_tipper": ("WARNING", ["SCHEMA_NEW_COLUMN"]),
        "company": ("ERROR", ["ENUM_TYPE_UNEXPECTED_STRING_VALUES"]),
        "pickup_community_area": ("ERROR", ["FEATURE_TYPE_LOW_FRACTION_PRESENT"]),
        "pickup_latitude": ("ERROR", ["FEATURE_TYPE_LOW_FRACTION_PRESENT"]),
        "pickup_longitude": ("ERROR", ["FEATURE_TYPE_LOW_FRACTION_PRESENT"]),
    }
    company = taxi_anomalies.anomaly_info["company"]
    assert list(company.path.step) == ["company"]
    # 14 of 9862 non-missing company values (11 distinct) are not in the domain.
    assert company.description.startswith("0.142% of values outside the schema domain")
    assert "'1085 - 72312 N and W Cab Co' (0.0304%)" in company.description
    assert "and 1 more" in company.description
    messages = dv.blocking_anomalies(taxi_anomalies)
    assert len(messages) == 4
    assert messages[1] == (
        "feature 'pickup_community_area': present in 100% of examples (2 of 15002 missing), "
        "below presence min_fraction 1"
    )


def test_min_domain_mass_and_ignore_features(taxi):
    schema = dv.load_schema(TAXI_SCHEMA)
    company = next(f for f in schema.feature if f.name == "company")
    company.distribution_constraints.min_domain_mass = 0.998
    stats = dv.compute_statistics({"train": taxi}).datasets[0]
    anomalies = dv.validate_statistics(
        stats, schema, ignore_features={"pickup_latitude", "big_tipper"}
    )
    assert set(anomalies.anomaly_info) == {"pickup_community_area", "pickup_longitude"}
    # 0.142% of the values are outside the domain, so 99.858% is below 0.999.
    company.distribution_constraints.min_domain_mass = 0.999
    anomalies = dv.validate_statistics(stats, schema)
    assert "(min_domain_mass 0.999)" in anomalies.anomaly_info["company"].description


def test_type_checks_accept_integral_floats():
    schema = text_format.Parse(
        'feature { name: "n" type: INT presence { min_count: 1 } }'
        'feature { name: "x" type: FLOAT } feature { name: "s" type: BYTES }',
        schema_pb2.Schema(),
    )
    ok = pd.DataFrame({"n": [1.0, np.nan, 3.0], "x": [1, 2, 3], "s": ["a", "b", None]})
    assert not dv.validate_statistics(
        dv.compute_statistics({"t": ok}).datasets[0], schema
    ).anomaly_info
    bad = pd.DataFrame({"n": [1.5, 2.0, 3.0], "x": ["a", "b", "c"], "s": [1, 2, 3]})
    anomalies = dv.validate_statistics(dv.compute_statistics({"t": bad}).datasets[0], schema)
    assert _summary(anomalies) == {
        name: ("ERROR", ["UNEXPECTED_DATA_TYPE"]) for name in ("n", "x", "s")
    }
    assert anomalies.anomaly_info["n"].description == (
        "expected data of type INT but got FLOAT with non-integral values"
    )


def test_missing_columns_and_presence(penguins):
    stats = dv.compute_statistics({"train": penguins}).datasets[0]
    schema = dv.infer_schema(stats)
    serving = penguins.drop(columns=["species", "bill_length_mm"])
    serving.loc[:9, "island"] = None
    anomalies = dv.validate_statistics(dv.compute_statistics({"s": serving}).datasets[0], schema)
    assert _summary(anomalies) == {
        "species": ("ERROR", ["SCHEMA_MISSING_COLUMN"]),
        "bill_length_mm": ("ERROR", ["SCHEMA_MISSING_COLUMN"]),
        "island": ("ERROR", ["FEATURE_TYPE_LOW_FRACTION_PRESENT"]),
    }
    all_missing = penguins.assign(sex=None)
    anomalies = dv.validate_statistics(
        dv.compute_statistics({"s": all_missing}).datasets[0], schema
    )
    assert _summary(anomalies) == {"sex": ("ERROR", ["FEATURE_TYPE_LOW_NUMBER_PRESENT"])}
    assert (
        "present in 0 examples, below presence min_count 1" in dv.blocking_anomalies(anomalies)[0]
    )


def test_environments(penguins):
    train = dv.compute_statistics({"train": penguins}).datasets[0]
    schema = dv.infer_schema(train)
    schema.default_environment.extend(["TRAINING", "SERVING"])
    next(f for f in schema.feature if f.name == "species").not_in_environment.append("SERVING")
    serving = dv.compute_statistics({"serving": penguins.drop(columns="species")}).datasets[0]
    assert not dv.validate_statistics(serving, schema, environment="SERVING").anomaly_info
    at_training = dv.validate_statistics(serving, schema, environment="TRAINING")
    assert _summary(at_training) == {"species": ("ERROR", ["SCHEMA_MISSING_COLUMN"])}
    with pytest.raises(ValueError, match="PREDICT"):
        dv.validate_statistics(serving, schema, environment="PREDICT")


def test_empty_data_is_blocking():
    stats = dv.compute_statistics({"train": pd.DataFrame({"x": pd.Series([], dtype=float)})})
    schema = text_format.Parse('feature { name: "x" type: FLOAT }', schema_pb2.Schema())
    anomalies = dv.validate_statistics(stats.datasets[0], schema)
    assert anomalies.data_missing
    assert dv.blocking_anomalies(anomalies) == ["dataset: no examples (data missing)"]
    schema.dataset_constraints.min_examples_count = 10
    small = dv.compute_statistics({"train": pd.DataFrame({"x": [1.0]})}).datasets[0]
    anomalies = dv.validate_statistics(small, schema)
    assert anomalies.dataset_anomaly_info.reason[0].type == Info.DATASET_LOW_NUM_EXAMPLES
    assert dv.blocking_anomalies(anomalies) == [
        "dataset: 1 examples, below dataset_constraints min_examples_count 10"
    ]


def test_numeric_domains_from_clean_penguins_flag_skewed_file(tfx_penguins):
    stats = dv.compute_statistics(
        {"train": tfx_penguins["clean"], "skewed": tfx_penguins["skewed"]}, label="species"
    )
    train, skewed = stats.datasets
    schema = dv.infer_schema(train)
    train_feats = dv.features_by_name(train)
    for feature in schema.feature:
        num = train_feats[feature.name].num_stats
        if feature.type == schema_pb2.INT:
            feature.int_domain.min, feature.int_domain.max = int(num.min), int(num.max)
        else:
            feature.float_domain.min, feature.float_domain.max = num.min, num.max
    assert not dv.validate_statistics(train, schema).anomaly_info
    anomalies = dv.validate_statistics(skewed, schema)
    assert _summary(anomalies) == {"culmen_length_mm": ("ERROR", ["FLOAT_TYPE_SMALL_FLOAT"])}
    assert dv.blocking_anomalies(anomalies) == [
        "feature 'culmen_length_mm': value -1 below float_domain min 0"
    ]


def test_named_numeric_domain_and_dangling_domain():
    schema = text_format.Parse(
        'feature { name: "n" type: INT domain: "small" } int_domain { name: "small" max: 5 }'
        'feature { name: "s" type: BYTES domain: "nope" }',
        schema_pb2.Schema(),
    )
    stats = dv.compute_statistics({"t": pd.DataFrame({"n": [1, 7], "s": ["a", "b"]})})
    anomalies = dv.validate_statistics(stats.datasets[0], schema)
    assert _summary(anomalies) == {
        "n": ("ERROR", ["INT_TYPE_BIG_INT"]),
        "s": ("ERROR", ["INVALID_DOMAIN_SPECIFICATION"]),
    }
    assert dv.blocking_anomalies(anomalies) == [
        "feature 'n': value 7 above int_domain max 5",
        "feature 's': domain 'nope' is not defined in the schema",
    ]


# --------------------------------------------------------------------------- skew / drift


def test_hand_computed_distances():
    value, where = dv.l_infinity_distance({"a": 3, "b": 1}, {"a": 1, "b": 1, "c": 2})
    assert (value, where) == (pytest.approx(0.5), "a")
    assert dv.l_infinity_distance({"a": 1}, {"a": 5}) == (0.0, None)
    # Truncated counts: totals include values the counts do not list.
    value, _ = dv.l_infinity_distance({"a": 5}, {"a": 5}, base_total=10, other_total=20)
    assert value == pytest.approx(0.25)
    assert dv.js_divergence([1, 0], [0, 1]) == pytest.approx(1.0)
    assert dv.js_divergence([2, 2], [3, 3]) == pytest.approx(0.0)
    # m = (0.75, 0.25); KL(p|m) = .5 log2(.5/.75) + .5 log2(.5/.25); KL(q|m) = log2(1/.75)
    expected = 0.5 * (0.5 * math.log2(0.5 / 0.75) + 0.5 * 1.0) + 0.5 * math.log2(1 / 0.75)
    assert dv.js_divergence([0.5, 0.5], [1, 0]) == pytest.approx(expected)
    assert expected == pytest.approx(0.311278, abs=1e-6)
    with pytest.raises(ValueError):
        dv.js_divergence([1, 2], [1, 2, 3])


def test_distances_from_statistics_match_hand_computation():
    base = pd.DataFrame({"x": np.arange(100.0), "c": ["a"] * 75 + ["b"] * 25})
    half = pd.DataFrame({"x": np.arange(50.0), "c": ["a"] * 25 + ["b"] * 25})
    far = pd.DataFrame({"x": np.arange(100.0) + 1000, "c": ["z"] * 100})
    stats = dv.compute_statistics({"base": base, "half": half, "far": far, "same": base})
    schema = dv.infer_schema(stats.datasets[0])
    schema = dv.set_comparator_thresholds(
        schema, kind="skew", default_categorical=0.2, default_numeric=0.2
    )
    b, h, f, s = stats.datasets
    # base deciles of 0..99 put 10% in each bucket; "half" puts 20% in the first five:
    # JSD = 0.311278 as for p=(.5,.5), q=(1,0) above, up to the histogram approximation.
    half_values = _skew_values(dv.compare_distributions(b, h, schema=schema, kind="skew"))
    assert half_values["x"] == pytest.approx(0.311278, abs=0.01)
    assert half_values["c"] == pytest.approx(0.25)  # |0.75 - 0.5|
    far_values = _skew_values(dv.compare_distributions(b, f, schema=schema, kind="skew"))
    assert far_values == {"x": pytest.approx(1.0), "c": pytest.approx(1.0)}
    assert _skew_values(dv.compare_distributions(b, s, schema=schema, kind="skew")) == {
        "x": 0.0,
        "c": 0.0,
    }


def test_tfx_skewed_penguins_distances(tfx_penguins):
    # The TFX "skewed" file differs from the clean one in one value (-1 in
    # culmen_length_mm, 1 of 334 rows): far below any useful distribution threshold,
    # which is why the domain check above is what catches it.
    stats = dv.compute_statistics(
        {"train": tfx_penguins["clean"], "skewed": tfx_penguins["skewed"]}, label="species"
    )
    train, skewed = stats.datasets
    anomalies = dv.compare_distributions(
        train, skewed, schema=_penguin_skew_schema(train, 0.1), kind="skew"
    )
    values = _skew_values(anomalies)
    assert values["culmen_length_mm"] == pytest.approx(0.0015, abs=0.0005)
    assert {k: v for k, v in values.items() if k != "culmen_length_mm"} == {
        "species": 0.0,
        "culmen_depth_mm": 0.0,
        "flipper_length_mm": 0.0,
        "body_mass_g": 0.0,
    }
    assert not anomalies.anomaly_info
    sensitive = dv.compare_distributions(
        train, skewed, schema=_penguin_skew_schema(train, 0.001), kind="skew"
    )
    assert _summary(sensitive) == {
        "culmen_length_mm": ("ERROR", ["COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH"])
    }


def test_resample_of_clean_data_is_not_flagged(tfx_penguins):
    stats = dv.compute_statistics(
        {"train": tfx_penguins["clean"], "resample": tfx_penguins["resample"]}, label="species"
    )
    train, resample = stats.datasets
    anomalies = dv.compare_distributions(
        train, resample, schema=_penguin_skew_schema(train, 0.1), kind="skew"
    )
    values = _skew_values(anomalies)
    assert set(values) == {"species", *PENGUIN_FEATURES}
    assert all(0 < v < 0.05 for v in values.values()), values
    assert not anomalies.anomaly_info
    assert not dv.blocking_anomalies(anomalies)
    measurement = anomalies.drift_skew_info[0].skew_measurements[0]
    assert measurement.type == anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY
    assert measurement.threshold == pytest.approx(0.1)


def test_real_drift_between_islands_is_flagged(penguins):
    stats = dv.compute_statistics(
        {
            island: penguins[penguins.island == island].drop(columns="island")
            for island in ("Biscoe", "Dream")
        }
    )
    biscoe, dream = stats.datasets
    schema = dv.set_comparator_thresholds(
        dv.infer_schema(biscoe),
        kind="drift",
        default_categorical=0.1,
        default_numeric=0.1,
        per_feature={"bill_depth_mm": 0.5},
    )
    anomalies = dv.compare_distributions(biscoe, dream, schema=schema, kind="drift")
    assert not any(d.skew_measurements for d in anomalies.drift_skew_info)
    values = _skew_values(anomalies, kind="drift")
    # Biscoe is 124/168 Gentoo, Dream has none.
    assert values["species"] == pytest.approx(124 / 168)
    assert _summary(anomalies) == {
        "species": ("ERROR", ["COMPARATOR_L_INFTY_HIGH"]),
        "flipper_length_mm": ("ERROR", ["COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH"]),
        "body_mass_g": ("ERROR", ["COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH"]),
    }
    messages = dv.blocking_anomalies(anomalies)
    assert messages[-1] == (
        "feature 'species': L-infinity distance between previous and current is 0.7381 "
        "(largest difference at value 'Gentoo'), above the drift_comparator infinity_norm "
        "threshold 0.1"
    )
    assert messages[0].startswith(
        "feature 'body_mass_g': approximate Jensen-Shannon divergence between previous and "
        "current is 0.4"
    )


def test_compare_reports_missing_data_and_bad_kind(penguin_stats, penguins):
    train = penguin_stats.datasets[0]
    schema = dv.set_comparator_thresholds(
        dv.infer_schema(train), kind="skew", default_categorical=0.1, default_numeric=0.1
    )
    serving = dv.compute_statistics({"s": penguins.drop(columns="sex")}).datasets[0]
    anomalies = dv.compare_distributions(train, serving, schema=schema, kind="skew")
    assert _summary(anomalies) == {"sex": ("WARNING", ["COMPARATOR_TREATMENT_DATA_MISSING"])}
    # No drift comparator is configured, so nothing is compared.
    assert not dv.compare_distributions(train, serving, schema=schema, kind="drift").drift_skew_info
    with pytest.raises(ValueError, match="kind"):
        dv.compare_distributions(train, serving, schema=schema, kind="bias")


def test_set_comparator_thresholds(penguin_stats):
    schema = dv.infer_schema(penguin_stats.datasets[0])
    next(f for f in schema.feature if f.name == "year").int_domain.is_categorical = True
    updated = dv.set_comparator_thresholds(
        schema,
        kind="drift",
        default_categorical=0.2,
        default_numeric=None,
        per_feature={"body_mass_g": 0.05, "island": 0.3},
    )
    assert not any(f.HasField("drift_comparator") for f in schema.feature)  # copy, not mutated
    feats = {f.name: f for f in updated.feature}
    assert feats["species"].drift_comparator.infinity_norm.threshold == pytest.approx(0.2)
    assert feats["island"].drift_comparator.infinity_norm.threshold == pytest.approx(0.3)
    assert feats["year"].drift_comparator.infinity_norm.threshold == pytest.approx(0.2)
    assert feats["body_mass_g"].drift_comparator.jensen_shannon_divergence.threshold == 0.05
    assert not feats["bill_length_mm"].HasField("drift_comparator")
    assert not feats["species"].HasField("skew_comparator")
    with pytest.raises(ValueError, match="not_a_feature"):
        dv.set_comparator_thresholds(schema, kind="skew", per_feature={"not_a_feature": 0.1})
    with pytest.raises(ValueError, match="kind"):
        dv.set_comparator_thresholds(schema, kind="other")


# --------------------------------------------------------------------------- summaries / IO


def test_anomalies_file_roundtrip_and_summary(tmp_path, taxi_anomalies):
    path = dv.write_anomalies(taxi_anomalies, tmp_path / dv.ANOMALIES_FILE)
    assert path.name == "SchemaDiff.pb"
    assert dv.read_anomalies(path) == taxi_anomalies
    parsed = anomalies_pb2.Anomalies.FromString(path.read_bytes())
    assert set(parsed.anomaly_info) == set(taxi_anomalies.anomaly_info)
    summary = dv.anomalies_to_dict(taxi_anomalies)
    json.dumps(summary)
    assert summary["blocking"] is True
    assert (summary["num_errors"], summary["num_warnings"]) == (4, 1)
    assert summary["features"]["big_tipper"] == {
        "severity": "WARNING",
        "types": ["SCHEMA_NEW_COLUMN"],
        "description": "column is in the data but not in the schema",
    }
    assert summary["dataset"] is None and summary["data_missing"] is False


def test_drift_summary_is_json_friendly(tfx_penguins):
    stats = dv.compute_statistics({"a": tfx_penguins["clean"], "b": tfx_penguins["resample"]})
    a, b = stats.datasets
    schema = dv.set_comparator_thresholds(dv.infer_schema(a), kind="drift", default_numeric=0.1)
    summary = dv.anomalies_to_dict(dv.compare_distributions(a, b, schema=schema, kind="drift"))
    assert json.loads(json.dumps(summary))["drift_skew"]["body_mass_g"][0]["type"] == (
        "JENSEN_SHANNON_DIVERGENCE"
    )
    assert summary["blocking"] is False
    with pytest.raises(TypeError, match="split_statistics"):
        dv.validate_statistics(stats, schema)
