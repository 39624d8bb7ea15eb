"""Tests for the report figures built from statistics protos."""

from __future__ import annotations

import base64
import re
import sys
from pathlib import Path

import matplotlib
import palmerpenguins
import pandas as pd
import pytest

from mlops import report_html as rp
from mlops import tfdv as dv

DATA = Path(__file__).resolve().parents[1] / "data"
TAXI_CSV = DATA / "chicago_taxi" / "big_tipper.csv"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMG_RE = re.compile(r'^<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">$')


def _png(img: str) -> bytes:
    match = IMG_RE.match(img)
    assert match, img[:80]
    data = base64.b64decode(match.group(1))
    assert data.startswith(PNG_MAGIC)
    return data


@pytest.fixture(scope="module")
def penguin_stats():
    df = palmerpenguins.load_penguins()
    train = df.sample(frac=0.7, random_state=1)
    return dv.compute_statistics(
        {"eval": df.drop(train.index), "train": train, "serving": df.drop(columns="species")},
        label="species",
    )


def test_feature_figures_cover_every_feature(penguin_stats):
    backend = dict.__getitem__(matplotlib.rcParams, "backend")
    figures = rp.feature_distribution_figures(penguin_stats)
    assert dict.__getitem__(matplotlib.rcParams, "backend") == backend
    assert list(figures) == [
        "species",
        "island",
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "sex",
        "year",
    ]
    sizes = [len(_png(img)) for img in figures.values()]
    # 4x2.5 in at 80 dpi: small enough for a 20-feature report well under 2 MB.
    assert max(sizes) < 40_000
    assert sum(len(img) for img in figures.values()) < 8 * 60_000
    assert 'alt="top values of species"' in figures["species"]
    assert 'alt="distribution of body_mass_g"' in figures["body_mass_g"]


def test_feature_subset_and_unknown_feature(penguin_stats):
    figures = rp.feature_distribution_figures(penguin_stats, features=["sex", "bill_depth_mm"])
    assert list(figures) == ["sex", "bill_depth_mm"]
    with pytest.raises(KeyError, match="nope"):
        rp.feature_distribution_figures(penguin_stats, features=["nope"])


def test_taxi_figures_with_missing_and_many_categories():
    taxi = pd.read_csv(TAXI_CSV)
    stats = dv.compute_statistics(
        {"train": taxi.iloc[:10_000], "eval": taxi.iloc[10_000:]}, label="big_tipper"
    )
    figures = rp.feature_distribution_figures(stats)
    # pickup_census_tract's single non-missing value is in eval: no train histogram to draw.
    assert set(figures) == set(taxi.columns) - {"pickup_census_tract"}
    for img in figures.values():
        _png(img)
    assert sum(len(img) for img in figures.values()) < 2_000_000


def test_constant_and_empty_features():
    df = pd.DataFrame({"c": [3.0, 3.0, 3.0], "empty": [None, None, None], "s": ["x", "x", None]})
    figures = rp.feature_distribution_figures(dv.compute_statistics({"train": df}))
    assert set(figures) == {"c", "s"}  # nothing to draw for an all-missing column


def test_does_not_import_pyplot(penguin_stats):
    already_imported = "matplotlib.pyplot" in sys.modules
    rp.feature_distribution_figures(penguin_stats, features=["island"])
    if not already_imported:  # another test module may have imported it
        assert "matplotlib.pyplot" not in sys.modules


def test_bar_chart_html():
    img = rp.bar_chart_html(
        'accuracy by "island" <slice>',
        ["Biscoe", "Dream", "Torgersen"],
        {"model": [0.9, 0.95, 1.0], "baseline": [0.8, 0.85, 0.7]},
    )
    _png(img)
    assert "&quot;island&quot; &lt;slice&gt;" in img
    with pytest.raises(ValueError, match="baseline"):
        rp.bar_chart_html("t", ["a", "b"], {"baseline": [1.0]})


def test_empty_statistics_give_no_figures():
    assert rp.feature_distribution_figures(dv.compute_statistics({"train": pd.DataFrame()})) == {}
