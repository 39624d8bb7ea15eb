"""The modelling section of the run report, the model card's architecture line and the fit line
of the run summary, from model_info records."""

from __future__ import annotations

from components.report import modelling_html
from mlops.model_card import build_model_card, model_card_html
from pipelines.local import summarize

INFO = {
    "model_family": "wide_deep",
    "regularisation": {"l2": 0.001, "dropout": 0.2},
    "epochs_run": 7,
    "eval_accuracy": 0.97,
    "eval_loss": 0.11,
    "family_comparison": [
        {
            "family": "linear",
            "eval_accuracy": 0.95,
            "eval_loss": 0.2,
            "epochs_run": 9,
            "params": 117,
            "chosen": False,
        },
        {
            "family": "wide_deep",
            "eval_accuracy": 0.97,
            "eval_loss": 0.11,
            "epochs_run": 7,
            "params": 824,
            "chosen": True,
        },
    ],
    "fit_diagnosis": {
        "verdict": "overfitting",
        "text": "overfitting: eval loss rose from its best 0.1100 (epoch 4) to 0.2000",
        "numbers": {},
    },
    "warm_start": {
        "applied": True,
        "note": "started from the champion's weights (wide_deep)",
        "champion_eval_accuracy": 0.96,
        "champion_eval_loss": 0.13,
        "champion_epochs_run": 30,
    },
}


def test_modelling_section_shows_family_comparison_diagnosis_and_warm_start() -> None:
    section = modelling_html(INFO)
    assert "<b>wide_deep</b>" in section and "L2 0.001" in section
    assert "Families compared" in section and "824" in section
    assert 'class="bad">overfitting' in section and "0.1100 (epoch 4)" in section
    assert "champion (when it was trained)" in section and "this run (warm)" in section
    assert "Edge export" not in section  # no TFLite models in this record


def test_model_card_names_the_family_and_regularisation(penguins_config) -> None:
    card = build_model_card(penguins_config, 3, {"metrics": {}}, None, {}, INFO)
    architecture = card["model_parameters"]["model_architecture"]
    assert architecture.startswith("Keras wide & deep model")
    assert "L2 0.001, dropout 0.2" in architecture
    assert card["edge_models"] == []
    assert "training.export_tflite is off" in model_card_html(card)
    # Without a model record (an old version) the configured family is described.
    legacy = build_model_card(penguins_config, 3, {"metrics": {}}, None, {})
    assert legacy["model_parameters"]["model_architecture"].startswith("Keras DNN")


def test_run_summary_has_the_fit_line() -> None:
    manifest = {
        "run_id": "r1",
        "status": "SUCCEEDED",
        "duration_s": 1.0,
        "steps": {},
        "fit_diagnosis": INFO["fit_diagnosis"]["text"],
        "run_dir": "/tmp/r1",
    }
    assert "fit:          overfitting: eval loss rose" in summarize(manifest)


def test_gbt_section_says_what_the_trees_are_not_l2_and_dropout() -> None:
    info = {
        "model_family": "gbt",
        "regularisation": {"l2": 0.0, "dropout": 0.0},
        "epochs_run": 124,
        "eval_accuracy": 1.0,
        "eval_loss": 0.02,
        "gbt": {
            "stages": 124,
            "stages_fitted": 144,
            "trees": 372,
            "nodes": 5246,
            "max_depth": 3,
            "learning_rate": 0.1,
        },
        "curves": {"loss": [0.9, 0.5], "val_loss": [0.95, 0.6]},
    }
    section = modelling_html(info)
    assert "<b>gbt</b>; 124 boosting stages kept of 144 fitted, 372 trees, 5246 nodes" in section
    assert "dropout" not in section
