"""Report: one self-contained HTML page per run with the data (distributions train vs eval,
anomalies, skew), the training curves and the evaluation (metrics by slice, blessing)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from mlops import tfdv as dv
from mlops.artifacts import (
    EXPLANATIONS_FILE,
    METRICS_FILE,
    STATS_FILE,
    TRIALS_FILE,
    VALIDATION_SUMMARY_FILE,
    read_model_info,
)
from mlops.config import PipelineConfig
from mlops.io import read_json, write_text_atomic
from mlops.report_html import (
    bar_chart_html,
    cell_text,
    feature_distribution_figures,
    figure_grid,
    figure_to_img,
    html_page,
    html_table,
)


def _curves_html(curves: dict[str, list[float]], step: str = "epoch") -> str:
    """Train and eval loss and accuracy per `step` (epochs; boosting stages for gbt)."""
    figures = []
    for metric in ("loss", "sparse_categorical_accuracy"):
        if metric not in curves:
            continue
        fig = Figure(figsize=(4.0, 2.5))
        ax = fig.add_axes((0.15, 0.2, 0.8, 0.7))
        ax.plot(curves[metric], label="train")
        if f"val_{metric}" in curves:
            ax.plot(curves[f"val_{metric}"], label="eval")
        ax.set_title(metric.replace("sparse_categorical_", ""), fontsize=9)
        ax.set_xlabel(step, fontsize=8)
        ax.legend(fontsize=7)
        figures.append(figure_to_img(fig, f"training {metric}"))
    return figure_grid(figures)


def _tuning_html(tuning_dir: str | Path) -> str:
    tuning = read_json(Path(tuning_dir) / TRIALS_FILE)
    trials = tuning["trial_list"]
    names = sorted({name for t in trials for name in t["params"]})
    sign = 1 if tuning["direction"] == "minimize" else -1
    ranked = sorted(trials, key=lambda t: (t["value"] is None, sign * (t["value"] or 0)))
    parts = [
        "<h2>Hyperparameter tuning</h2>",
        f"<p>{tuning['finished_trials']} of {tuning['trials']} trials finished; the best "
        f"(trial {tuning['best_trial']}) has eval {tuning['metric']} "
        f"{cell_text(tuning['best_value'])} ({tuning['direction']}d), and its parameters trained "
        "the model below.</p>",
        html_table(
            ["trial", f"eval {tuning['metric']}", "state", *names],
            [
                [t["number"], t["value"], t["state"], *(t["params"].get(n) for n in names)]
                for t in ranked
            ],
        ),
    ]
    done = [t for t in trials if t["value"] is not None]
    parts.append(
        bar_chart_html(
            f"eval {tuning['metric']} per trial",
            [str(t["number"]) for t in done],
            {tuning["metric"]: [t["value"] for t in done]},
        )
    )
    return "\n".join(parts)


def modelling_html(info: dict[str, Any]) -> str:
    """The model family (and the comparison when several were trained), regularisation, the fit
    diagnosis, the warm start and the TFLite export, from `model_info.json`."""
    parts = []
    regularisation = info.get("regularisation") or {}
    family = info.get("model_family", "dnn")
    trees = info.get("gbt") if family == "gbt" else None
    if trees:  # boosted trees have no L2 or dropout: say what the trees are
        detail = (
            f"{trees['stages']} boosting stages kept of {trees['stages_fitted']} fitted, "
            f"{trees['trees']} trees, {trees['nodes']} nodes, depth up to {trees['max_depth']}, "
            f"learning rate {cell_text(trees['learning_rate'])}"
        )
    else:
        detail = (
            f"L2 {cell_text(regularisation.get('l2', 0.0))}, "
            f"dropout {cell_text(regularisation.get('dropout', 0.0))}"
        )
    parts.append(f"<p>Model family: <b>{html.escape(family)}</b>; {detail}.</p>")
    comparison = info.get("family_comparison")
    if comparison:
        parts.append("<p>Families compared on the eval split (the best is exported):</p>")
        parts.append(
            html_table(
                ["family", "eval accuracy", "eval loss", "epochs run", "parameters", "exported"],
                [
                    [
                        row["family"],
                        row["eval_accuracy"],
                        row["eval_loss"],
                        row["epochs_run"],
                        row["params"],
                        "yes" if row["chosen"] else "",
                    ]
                    for row in comparison
                ],
            )
        )
    diagnosis = info.get("fit_diagnosis")
    if diagnosis:
        css = "ok" if diagnosis["verdict"] == "good fit" else "bad"
        parts.append(
            f'<p>Fit diagnosis: <span class="{css}">{html.escape(diagnosis["verdict"])}</span>'
            f" — {html.escape(diagnosis['text'])}</p>"
        )
    transfer = info.get("transfer")
    if transfer and transfer.get("source_task"):  # image models (mlops/image_models.py)
        parts.append(_transfer_html(transfer))
    warm = info.get("warm_start")
    if warm:
        parts.append(f"<p>Warm start: {html.escape(warm['note'])}.</p>")
        if warm.get("champion_eval_accuracy") is not None:
            parts.append(
                html_table(
                    ["", "epochs run", "eval accuracy", "eval loss"],
                    [
                        [
                            "champion (when it was trained)",
                            warm.get("champion_epochs_run"),
                            warm.get("champion_eval_accuracy"),
                            warm.get("champion_eval_loss"),
                        ],
                        [
                            "this run" + (" (warm)" if warm["applied"] else " (cold)"),
                            info["epochs_run"],
                            info["eval_accuracy"],
                            info["eval_loss"],
                        ],
                    ],
                )
            )
    tflite = info.get("tflite")
    if tflite:
        parts.append(
            f"<p>Edge export (TFLite, inputs: {html.escape(tflite['inputs'])}); accuracy on the "
            f"{tflite['test_rows']} test rows, Keras model {cell_text(tflite['keras_test_accuracy'])}"
            ":</p>"
        )
        parts.append(
            html_table(
                ["variant", "file", "bytes", "test accuracy", "max |Δ probability| vs Keras"],
                [
                    [name, m["file"], m["bytes"], m["test_accuracy"], m["max_probability_gap"]]
                    for name, m in tflite["models"].items()
                ],
            )
        )
    return "\n".join(parts)


def _transfer_html(transfer: dict[str, Any]) -> str:
    """Transfer learning: the source task, then the fine-tuned net against the same net trained
    from scratch for the same epochs (eval split)."""
    source = transfer["source_task"]
    rows = [
        [
            f"source task: {source['task']} ({source['description']})",
            source["epochs"],
            source["eval_accuracy"],
        ],
        ["fine-tuned on the label", "", transfer["fine_tuned_eval_accuracy"]],
    ]
    scratch = transfer.get("scratch")
    if scratch:
        rows.append(["same net from scratch", scratch["epochs_run"], scratch["eval_accuracy"]])
    note = (
        f" Gain of transfer over scratch: {transfer['gain_over_scratch']:+.4f}."
        if scratch
        else " (no from-scratch comparison: pretrain.compare_with_scratch is off)"
    )
    return (
        f"<p>Transfer learning: conv base pretrained on the source task (chance accuracy "
        f"{source['chance_accuracy']:.2f}), then {transfer['frozen_epochs']} epochs with it frozen "
        f"and the rest at learning rate {transfer['fine_tune_learning_rate']:g}.{note}</p>"
        + html_table(["model", "epochs", "eval accuracy"], rows)
    )


def _self_training_html(record: dict[str, Any]) -> str:
    """Pseudo-labels and eval metrics per self-training round; round 0 is labelled-only."""
    rows = [
        [
            r["round"],
            r["pseudo_labels"],
            ", ".join(f"{name} {count}" for name, count in r["pseudo_labels_per_class"].items()),
            r["eval_accuracy"],
            r["eval_loss"],
        ]
        for r in record["rounds"]
    ]
    gain = record["gain"]
    return (
        f"<p>Self-training: {record['labelled_rows']} labelled and {record['unlabeled_rows']} "
        f"unlabeled train rows, confidence {record['confidence']}. Round 0 is labelled-only "
        f"training; gain of the final model over it on eval: accuracy {gain['eval_accuracy']:+.4f}, "
        f"loss {gain['eval_loss']:+.4f}.</p>"
        + html_table(["round", "pseudo-labels", "per class", "eval accuracy", "eval loss"], rows)
    )


def build_report(
    config: PipelineConfig,
    statistics_dir: str | Path,
    anomalies_dir: str | Path,
    model_dir: str | Path,
    evaluation_dir: str | Path,
    explanation_dir: str | Path,
    tuning_dir: str | Path | None = None,
) -> str:
    stats = dv.read_statistics(Path(statistics_dir) / STATS_FILE)
    validation = read_json(Path(anomalies_dir) / VALIDATION_SUMMARY_FILE)
    evaluation = read_json(Path(evaluation_dir) / METRICS_FILE)
    info = read_model_info(model_dir)
    blessed = evaluation["blessed"]
    parts = [
        f"<h1>{html.escape(config.name)}: training run report</h1>",
        f"<p>{html.escape(config.framing.objective)}</p>",
        "<p>Blessing: "
        + (
            '<span class="ok">BLESSED</span>'
            if blessed
            else '<span class="bad">NOT BLESSED</span> — '
            + html.escape("; ".join(evaluation["failures"]))
        )
        + f" · success criterion {config.framing.success_metric} ≥ "
        f"{config.framing.success_threshold}: "
        f"{cell_text(evaluation['metrics'].get('overall', {}).get(config.framing.success_metric))}</p>",
    ]

    parts.append("<h2>Gates</h2>")
    parts.append(
        html_table(
            ["gate", "result", "detail"],
            [
                [g["name"], "pass" if g["passed"] else "FAIL", g["detail"]]
                for g in evaluation.get("gates", [])
            ],
        )
    )
    metric = config.framing.success_metric
    overall = evaluation["metrics"].get("overall", {})
    comparison = {"model": overall, **evaluation.get("baselines", {})}
    parts.append(f"<p>The model against its baselines on the test split ({metric} gates):</p>")
    parts.append(
        html_table(
            ["", "accuracy", "auc"],
            [[name, m.get("accuracy"), m.get("auc")] for name, m in comparison.items()],
        )
    )
    parts.append(
        bar_chart_html(
            f"{metric}: model vs baselines",
            list(comparison),
            {metric: [m.get(metric, 0.0) for m in comparison.values()]},
        )
    )
    for feature, fair in (evaluation.get("fairness") or {}).items():
        groups = fair["groups"]
        columns = sorted({k for g in groups.values() for k in g} - {"rows"})
        parts.append(f"<p>Fairness by {html.escape(feature)} (test split):</p>")
        parts.append(
            html_table(
                ["group", "rows", *columns],
                [[name, g["rows"], *(g.get(c) for c in columns)] for name, g in groups.items()],
            )
        )
    readiness = validation.get("readiness") or {}
    if readiness.get("single_feature_auc"):
        aucs = readiness["single_feature_auc"]
        parts.append("<h2>Data readiness</h2>")
        parts.append(
            "<p>Rows per split: "
            + html.escape(", ".join(f"{k} {v}" for k, v in readiness["rows"].items()))
            + f"; test rows also in train: {readiness['test_rows_in_train']}; identifier-like "
            f"columns: {html.escape(', '.join(readiness['identifier_like_columns']) or 'none')}."
            " Each feature's predictive power on its own (single-feature AUC on eval; "
            f"validation.leakage_max_auc {config.validation.leakage_max_auc} flags leakage):</p>"
        )
        ordered = sorted(aucs, key=aucs.get, reverse=True)
        parts.append(
            bar_chart_html("single-feature AUC", ordered, {"auc": [aucs[f] for f in ordered]})
        )

    explanations = read_json(Path(explanation_dir) / EXPLANATIONS_FILE)
    importance = explanations["importance"]
    ordered = sorted(importance["overall"], key=importance["overall"].get, reverse=True)
    parts.append("<h2>Feature attributions</h2>")
    if explanations.get("skipped"):  # image models (mlops/images.py)
        parts.append(f"<p>Skipped: {html.escape(explanations['skipped'])}.</p>")
    else:
        parts.append(
            f"<p>Sampled Shapley on raw features ({explanations['paths']} paths, "
            f"{explanations['rows']} test rows): mean absolute attribution to the predicted class's "
            "probability, overall and per slice.</p>"
        )
        groups = [g for g in importance if g != "overall"]
        parts.append(
            figure_grid(
                [
                    bar_chart_html(
                        "overall",
                        ordered,
                        {"mean |attribution|": [importance["overall"][f] for f in ordered]},
                    )
                ]
                + [
                    bar_chart_html(
                        group,
                        ordered,
                        {"mean |attribution|": [importance[group][f] for f in ordered]},
                    )
                    for group in groups[:8]
                ]
            )
        )

    parts.append("<h2>Evaluation (test split, TFMA)</h2>")
    metrics = evaluation["metrics"]
    slices = list(metrics)
    names = ["accuracy", "auc", "precision", "recall"]
    parts.append(
        html_table(
            ["slice", "examples", *names],
            [
                [s, metrics[s].get("example_count"), *(metrics[s].get(n) for n in names)]
                for s in slices
            ],
        )
    )
    if evaluation.get("baseline_metrics"):
        base = evaluation["baseline_metrics"]
        parts.append("<p>Champion (baseline) on the same test split:</p>")
        parts.append(html_table(names, [[base.get(n) for n in names]]))
    parts.append(
        figure_grid(
            [
                bar_chart_html(
                    f"{name} by slice", slices, {name: [metrics[s].get(name, 0.0) for s in slices]}
                )
                for name in ("accuracy", "auc")
            ]
        )
    )

    parts.append("<h2>Training</h2>")
    parts.append(
        html_table(
            ["epochs run", "eval accuracy", "eval loss", "strategy"],
            [[info["epochs_run"], info["eval_accuracy"], info["eval_loss"], info["strategy"]]],
        )
    )
    step = "boosting stage" if info.get("model_family") == "gbt" else "epoch"
    parts.append(_curves_html(info.get("curves", {}), step))
    parts.append(modelling_html(info))
    if info.get("self_training"):
        parts.append(_self_training_html(info["self_training"]))
    if tuning_dir:
        parts.append(_tuning_html(tuning_dir))

    parts.append("<h2>Data validation</h2>")
    parts.append(f"<p>Schema: {html.escape(validation['schema_source'])}</p>")
    rows = []
    for split, summary in validation["anomalies"].items():
        for feature, detail in summary["features"].items():
            rows.append([split, feature, detail["severity"], detail["description"]])
    parts.append(
        html_table(["split", "feature", "severity", "anomaly"], rows)
        if rows
        else "<p>No anomalies.</p>"
    )
    skew_rows = [
        [
            feature,
            m["type"],
            m["value"],
            m["threshold"],
            "yes" if m["value"] > m["threshold"] else "",
        ]
        for feature, measurements in validation["skew"]["drift_skew"].items()
        for m in measurements
    ]
    parts.append("<p>Train vs eval skew:</p>")
    parts.append(html_table(["feature", "measure", "distance", "threshold", "flagged"], skew_rows))
    features = [*config.features.raw_features, config.data.label]
    figures = feature_distribution_figures(stats, features)
    parts.append(figure_grid(list(figures.values())))
    return html_page(f"{config.name} run", "\n".join(parts))


def run_report(
    config: PipelineConfig,
    statistics_dir: str | Path,
    anomalies_dir: str | Path,
    model_dir: str | Path,
    evaluation_dir: str | Path,
    explanation_dir: str | Path,
    output_path: str | Path,
    tuning_dir: str | Path | None = None,
) -> dict[str, Any]:
    page = build_report(
        config,
        statistics_dir,
        anomalies_dir,
        model_dir,
        evaluation_dir,
        explanation_dir,
        tuning_dir,
    )
    write_text_atomic(output_path, page)
    return {"path": str(output_path), "bytes": len(page)}
