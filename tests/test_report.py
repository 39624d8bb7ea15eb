"""Report step: one HTML page with the blessing, metrics by slice, training curves, anomalies, skew
and the feature distributions of every split."""

from __future__ import annotations

import re

from components.explain import run_explain
from components.report import run_report


def test_report_shows_blessing_metrics_curves_and_distributions(penguins_chain, tmp_path) -> None:
    config, paths, results = penguins_chain
    run_explain(
        config.with_overrides(explain={"rows": 20, "paths": 4, "seed": 0}),
        paths["data"],
        paths["model"],
        tmp_path / "explanation",
    )
    output = tmp_path / "report" / "report.html"
    run_report(
        config,
        paths["statistics"],
        paths["anomalies"],
        paths["model"],
        paths["evaluation"],
        tmp_path / "explanation",
        output,
    )
    page = output.read_text()
    verdict = "BLESSED" if results["evaluate"]["blessed"] else "NOT BLESSED"
    assert verdict in page
    assert "accuracy" in page and "Train vs eval skew" in page
    for section in ("Gates", "beats baselines", "success criterion", "Fairness by sex"):
        assert section in page
    assert "Data readiness" in page and "single-feature AUC" in page
    assert "Feature attributions" in page and "sex=female" in page
    images = re.findall(r'<img [^>]*src="data:image/png;base64,', page)
    # one figure per raw feature and the label, plus the training curves
    assert len(images) >= len(config.features.raw_features) + 1 + 1
    for feature in config.features.raw_features:
        assert feature in page
    assert not list(output.parent.glob("*.tmp*")), "a temp file was left beside the report"
