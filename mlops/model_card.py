"""Model cards for registered versions, in the Model Card Toolkit's JSON schema (model_details,
model_parameters, quantitative_analysis, considerations) plus an HTML page: intended use from the
framing, the data and its fingerprint, metrics overall and by slice, baselines, fairness, the top
attributions and the limitations the gates found."""

from __future__ import annotations

import html
import json
from typing import Any

from mlops.config import PipelineConfig
from mlops.report_html import html_page, html_table

SCHEMA_VERSION = "0.0.2"  # model-card-toolkit's model_card.schema.json


def build_model_card(
    config: PipelineConfig,
    version: int | str,
    evaluation: dict[str, Any],
    explanations: dict[str, Any] | None,
    data: dict[str, Any],
    model_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`model_info` (the model's model_info.json) adds the family and the edge (TFLite) models."""
    metrics = evaluation.get("metrics", {})
    performance = [
        {"type": name, "value": str(round(value, 4)), "slice": slice_name}
        for slice_name, values in metrics.items()
        for name, value in values.items()
        if name != "example_count"
    ]
    performance += [
        {
            "type": f"{name} (baseline: {baseline})",
            "value": str(round(value, 4)),
            "slice": "overall",
        }
        for baseline, values in evaluation.get("baselines", {}).items()
        for name, value in values.items()
    ]
    limitations = [
        {"description": f"gate '{g['name']}' failed: {g['detail']}"}
        for g in evaluation.get("gates", [])
        if not g["passed"]
    ]
    for feature, fair in (evaluation.get("fairness") or {}).items():
        for metric, gap in fair.get("gaps", {}).items():
            limitations.append(
                {
                    "description": f"{metric} differs by {gap['gap']} between {feature} groups "
                    f"{gap['highest']!r} and {gap['lowest']!r} on the test split"
                }
            )
    limitations.append(
        {
            "description": "Evaluated on one held-out test split of "
            f"{evaluation.get('examples', '?')} rows from {config.data.source}; data unlike it "
            "(other places, times or populations) may behave differently."
        }
    )
    top = (explanations or {}).get("top_features", [])
    return {
        "schema_version": SCHEMA_VERSION,
        "model_details": {
            "name": config.name,
            "overview": config.framing.objective,
            "version": {"name": str(version)},
            "references": [],
        },
        "model_parameters": {
            "model_architecture": _architecture(config, model_info or {}),
            "input_format": "raw features: " + ", ".join(config.features.raw_features),
            "output_format": f"class probabilities for {config.data.label!r}",
            "data": [
                {
                    "name": "train/eval/test splits",
                    "link": config.data.source,
                    "sensitive": {
                        "sensitive_data": sorted(data.get("personal_data", {}))
                        + list(config.fairness.sensitive_features)
                    },
                    "description": json.dumps(
                        {"rows": data.get("rows"), "fingerprint": data.get("fingerprint")}
                    ),
                }
            ],
        },
        "quantitative_analysis": {"performance_metrics": performance},
        "considerations": {
            "users": [{"description": "teams consuming the predictions of this pipeline"}],
            "use_cases": [
                {
                    "description": f"{config.framing.objective} Success means "
                    f"{config.framing.success_metric} >= {config.framing.success_threshold}."
                }
            ],
            "limitations": limitations,
            "ethical_considerations": [
                {
                    "name": "fairness across "
                    + (", ".join(config.fairness.sensitive_features) or "no declared groups"),
                    "mitigation_strategy": f"gate: largest gap <= {config.fairness.max_gap}"
                    if config.fairness.sensitive_features
                    else "declare fairness.sensitive_features to measure it",
                }
            ],
        },
        # Not part of the toolkit's schema: what drives predictions, and the blessing.
        "top_attributions": top,
        "blessed": bool(evaluation.get("blessed")),
        "edge_models": _edge_models((model_info or {}).get("tflite")),
    }


_FAMILY_TEXT = {
    "linear": "Keras linear (softmax regression) model",
    "dnn": "Keras DNN",
    "wide_deep": "Keras wide & deep model",
}


def _architecture(config: PipelineConfig, model_info: dict[str, Any]) -> str:
    family = model_info.get("model_family", config.training.model)
    text = f"{_FAMILY_TEXT.get(family, family)} on TensorFlow Transform features"
    if family != "linear":
        text += f" (hidden units {config.training.hidden_units})"
    regularisation = model_info.get("regularisation") or {}
    if regularisation.get("l2") or regularisation.get("dropout"):
        text += f"; L2 {regularisation.get('l2', 0)}, dropout {regularisation.get('dropout', 0)}"
    return text


def _edge_models(tflite: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The TFLite models beside the SavedModel: size and test accuracy next to the full model."""
    if not tflite:
        return []
    return [
        {
            "variant": variant,
            "file": model["file"],
            "bytes": model["bytes"],
            "test_accuracy": model["test_accuracy"],
            "full_model_test_accuracy": tflite["keras_test_accuracy"],
            "inputs": tflite["inputs"],
        }
        for variant, model in tflite["models"].items()
    ]


def model_card_html(card: dict[str, Any]) -> str:
    details = card["model_details"]
    parts = [
        f"<h1>Model card: {html.escape(details['name'])} version "
        f"{html.escape(details['version']['name'])}</h1>",
        f"<p>{html.escape(details['overview'])}</p>",
        "<p>Blessed: " + ("yes" if card["blessed"] else "no") + "</p>",
        "<h2>Intended use</h2>",
        "".join(
            f"<p>{html.escape(u['description'])}</p>" for u in card["considerations"]["use_cases"]
        ),
        "<h2>Data</h2>",
        html_table(
            ["data", "source", "details"],
            [[d["name"], d["link"], d["description"]] for d in card["model_parameters"]["data"]],
        ),
        "<h2>Performance</h2>",
        html_table(
            ["metric", "slice", "value"],
            [
                [m["type"], m["slice"], m["value"]]
                for m in card["quantitative_analysis"]["performance_metrics"]
            ],
        ),
        "<h2>Edge models (TFLite)</h2>",
        html_table(
            ["variant", "file", "bytes", "test accuracy", "full model", "inputs"],
            [
                [
                    m["variant"],
                    m["file"],
                    m["bytes"],
                    m["test_accuracy"],
                    m["full_model_test_accuracy"],
                    m["inputs"],
                ]
                for m in card.get("edge_models", [])
            ],
        )
        if card.get("edge_models")
        else "<p>None exported (training.export_tflite is off).</p>",
        "<h2>Top attributions</h2>",
        f"<p>{html.escape(', '.join(card['top_attributions']) or 'not computed')}</p>",
        "<h2>Limitations</h2>",
        "<ul>"
        + "".join(
            f"<li>{html.escape(item['description'])}</li>"
            for item in card["considerations"]["limitations"]
        )
        + "</ul>",
    ]
    return html_page(f"{details['name']} model card", "\n".join(parts))
