"""Small matplotlib figures for HTML reports, embedded as base64 PNG ``<img>`` tags, and the page
pieces (style, tables, figure grids) the run and monitoring reports share.

Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas directly,
so nothing here touches pyplot's global state or the process-wide backend.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tensorflow_metadata.proto.v0 import statistics_pb2

from mlops import tfdv as dv

__all__ = [
    "feature_distribution_figures",
    "bar_chart_html",
    "figure_to_img",
    "cell_text",
    "html_table",
    "figure_grid",
    "html_page",
]

PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { border: 1px solid #ddd;
padding: 0.25em 0.6em; text-align: left; } th { background: #f4f4f4; }
.grid { display: flex; flex-wrap: wrap; gap: 0.5em; } .grid figure { margin: 0; }
.ok { color: #17692e; font-weight: bold; } .bad { color: #a11; font-weight: bold; }
"""


def cell_text(value: object) -> str:
    """A value as a report shows it: floats to 4 decimals, True as "yes", None/False empty."""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def html_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """An HTML table; floats to 4 decimals, True as "yes", None and False as empty cells."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell_text(c))}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def figure_grid(images: Sequence[str]) -> str:
    """`<img>` tags laid out side by side, wrapping."""
    return '<div class="grid">' + "".join(f"<figure>{img}</figure>" for img in images) + "</div>"


def html_page(title: str, body: str) -> str:
    """A self-contained report page."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{PAGE_STYLE}</style></head><body>{body}</body></html>"
    )


FIGSIZE = (4.0, 2.5)
DPI = 80
MAX_CATEGORIES = 10
MAX_BAR_LABELS = 30
_LABEL_CHARS = 18


def figure_to_img(fig: Figure, alt: str) -> str:
    """Render a figure to an ``<img>`` tag holding a base64 PNG."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def _new_figure(*, rotated_labels: bool = False) -> tuple[Figure, object]:
    # Fixed margins: a layout engine would double the drawing time of these small figures.
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    fig.subplots_adjust(left=0.16, right=0.97, top=0.88, bottom=0.36 if rotated_labels else 0.14)
    return fig, fig.add_subplot()


def _short(label: str) -> str:
    return label if len(label) <= _LABEL_CHARS else label[: _LABEL_CHARS - 1] + "\u2026"


def _grouped_bars(ax, labels: Sequence[str], series: Mapping[str, Sequence[float]]) -> None:
    n = max(len(series), 1)
    width = 0.8 / n
    x = np.arange(len(labels))
    for i, (name, values) in enumerate(series.items()):
        ax.bar(x + (i - (n - 1) / 2) * width, values, width=width, label=name)
    ax.set_xticks(x, [_short(str(lbl)) for lbl in labels], rotation=45, ha="right", fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    if len(series) > 1:
        ax.legend(fontsize=7)


def bar_chart_html(title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]]) -> str:
    """Grouped bar chart (one bar group per label, one colour per series) as ``<img>``."""
    labels = list(labels)[:MAX_BAR_LABELS]
    for name, values in series.items():
        if len(values) < len(labels):
            raise ValueError(f"series {name!r} has {len(values)} values for {len(labels)} labels")
    trimmed = {name: [float(v) for v in values][: len(labels)] for name, values in series.items()}
    fig, ax = _new_figure(rotated_labels=True)
    _grouped_bars(ax, labels, trimmed)
    ax.set_title(title, fontsize=9)
    return figure_to_img(fig, title)


def _reference_split(
    stats: statistics_pb2.DatasetFeatureStatisticsList,
) -> statistics_pb2.DatasetFeatureStatistics:
    for ds in stats.datasets:
        if ds.name == "train":
            return ds
    return stats.datasets[0]


def _numeric_figure(name: str, ref_fs, per_split: dict[str, object]) -> str | None:
    hist = dv.numeric_histogram(ref_fs, statistics_pb2.Histogram.STANDARD)
    if hist is None:
        return None
    edges = np.unique([v for b in hist.buckets for v in (b.low_value, b.high_value)])
    edges = edges[np.isfinite(edges)]
    if len(edges) < 2:
        # A constant feature: show a single bar per split.
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5]) if len(edges) else np.array([0.0, 1.0])
    fig, ax = _new_figure()
    centers = (edges[:-1] + edges[1:]) / 2
    widths = np.diff(edges)
    for split, fs in per_split.items():
        try:
            masses = dv.histogram_masses(fs, edges)
        except LookupError:
            continue
        total = masses.sum()
        if total <= 0:
            continue
        # Mass outside the train range is folded into the end buckets so it stays visible.
        inner = masses[1:-1].copy()
        inner[0] += masses[0]
        inner[-1] += masses[-1]
        ax.bar(centers, inner / total, width=widths, alpha=0.45, label=split, align="center")
    ax.set_title(name, fontsize=9)
    ax.set_ylabel("fraction", fontsize=7)
    ax.tick_params(labelsize=7)
    if len(per_split) > 1:
        ax.legend(fontsize=7)
    return figure_to_img(fig, f"distribution of {name}")


def _categorical_figure(name: str, ref_fs, per_split: dict[str, object]) -> str | None:
    ref_counts = dv.value_counts(ref_fs)
    if not ref_counts:
        return None
    top = sorted(ref_counts, key=lambda v: (-ref_counts[v], v))[:MAX_CATEGORIES]
    series = {}
    for split, fs in per_split.items():
        counts = dv.value_counts(fs)
        if counts is None:
            continue
        total = float(dv.common_statistics(fs).num_non_missing) or 1.0
        series[split] = [counts.get(v, 0.0) / total for v in top]
    fig, ax = _new_figure(rotated_labels=True)
    _grouped_bars(ax, top, series)
    ax.set_title(name, fontsize=9)
    ax.set_ylabel("fraction", fontsize=7)
    return figure_to_img(fig, f"top values of {name}")


def feature_distribution_figures(
    stats: statistics_pb2.DatasetFeatureStatisticsList, features: list[str] | None = None
) -> dict[str, str]:
    """Per feature, an ``<img>`` comparing the splits' distributions.

    Numeric features: overlaid histograms over the train split's STANDARD
    buckets (other splits re-binned from their own histograms). String features
    and INT features with few distinct values: grouped bars of the train split's
    top values, as fractions of each split's non-missing values.
    """
    if not stats.datasets:
        return {}
    ref = _reference_split(stats)
    ref_features = dv.features_by_name(ref)
    names = list(ref_features) if features is None else list(features)
    unknown = [n for n in names if n not in ref_features]
    if unknown:
        raise KeyError(f"features not in split {ref.name!r}: {unknown}")
    by_split = {ds.name: dv.features_by_name(ds) for ds in stats.datasets}
    figures = {}
    for name in names:
        ref_fs = ref_features[name]
        per_split = {split: feats[name] for split, feats in by_split.items() if name in feats}
        counts = dv.value_counts(ref_fs)
        categorical = ref_fs.type in (
            statistics_pb2.FeatureNameStatistics.STRING,
            statistics_pb2.FeatureNameStatistics.BYTES,
        ) or (
            ref_fs.type == statistics_pb2.FeatureNameStatistics.INT
            and counts is not None
            and len(counts) <= MAX_CATEGORIES
        )
        img = (
            _categorical_figure(name, ref_fs, per_split)
            if categorical
            else _numeric_figure(name, ref_fs, per_split)
        )
        if img is not None:
            figures[name] = img
    return figures
