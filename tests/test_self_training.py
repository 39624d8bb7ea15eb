"""Self-training: ingest keeps the rows without a label apart, training pseudo-labels the ones
it is confident about and refits, recording every round against labelled-only training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from mlops.artifacts import read_model_info, read_split
from mlops.self_training import select_pseudo_labels
from tests.conftest import config_in

CLASSES = ["Adelie", "Chinstrap", "Gentoo"]


def test_pseudo_labels_are_the_rows_at_or_above_the_confidence() -> None:
    probabilities = np.array(
        [
            [0.95, 0.03, 0.02],  # Adelie, sure
            [0.50, 0.45, 0.05],  # unsure
            [0.05, 0.05, 0.90],  # Gentoo, exactly at the threshold
            [0.10, 0.89, 0.01],  # Chinstrap, just under
            [0.01, 0.01, 0.98],  # Gentoo, sure
        ]
    )
    rows, ids, counts = select_pseudo_labels(probabilities, 0.9, CLASSES)
    assert rows.tolist() == [0, 2, 4]
    assert ids.tolist() == [0, 2, 2]
    assert counts == {"Adelie": 1, "Chinstrap": 0, "Gentoo": 2}
    rows, _, counts = select_pseudo_labels(probabilities, 0.99, CLASSES)
    assert rows.tolist() == [] and counts == dict.fromkeys(CLASSES, 0)
    with pytest.raises(ValueError, match="rows x 3 classes"):
        select_pseudo_labels(probabilities[:, :2], 0.9, CLASSES)


def test_self_training_needs_the_unlabeled_rows_kept(tmp_path) -> None:
    config = config_in(tmp_path, "penguins")
    training = {**config.training.model_dump(), "self_training": {"enabled": True}}
    with pytest.raises(ValidationError, match="needs data.unlabeled: keep"):
        config.with_overrides(training=training)
    with pytest.raises(ValidationError, match="confidence"):
        config.with_overrides(
            training={**training, "self_training": {"enabled": True, "confidence": 1.5}}
        )


def _penguins_with_blank_train_labels(tmp_path, blank_fraction: float):
    """Penguins as a CSV whose split is by an `id` column, with `blank_fraction` of the train
    rows' labels emptied (eval and test keep theirs); the config that reads it."""
    from palmerpenguins import load_penguins

    from components.ingest import assign_splits

    frame = load_penguins().dropna(subset=["species"]).reset_index(drop=True)
    frame.insert(0, "id", np.arange(len(frame)))
    config = config_in(tmp_path, "penguins")
    split = {**config.data.split.model_dump(), "key_columns": ["id"]}
    source = tmp_path / "penguins.csv"
    data = {**config.data.model_dump(), "source": str(source), "split": split, "unlabeled": "keep"}
    config = config.with_overrides(
        data=data,
        training={**config.training.model_dump(), "self_training": {"enabled": True}},
    )
    splits = assign_splits(frame[["id"]], config.data)
    train_rows = np.flatnonzero(splits.to_numpy() == "train")
    blanked = np.random.default_rng(0).choice(
        train_rows, int(blank_fraction * len(train_rows)), replace=False
    )
    frame.loc[blanked, "species"] = None
    frame.to_csv(source, index=False)
    return config, splits, len(blanked)


def test_ingest_keeps_unlabeled_rows_apart(tmp_path) -> None:
    from components.ingest import run_ingest

    config, splits, blanked = _penguins_with_blank_train_labels(tmp_path, 0.85)
    summary = run_ingest(config, tmp_path / "data")
    assert summary["rows_unlabeled"] == blanked and summary["rows_dropped"] == 0
    unlabeled = read_split(tmp_path / "data", "unlabeled")
    assert len(unlabeled) == blanked and unlabeled["species"].isna().all()
    for name in ("eval", "test"):
        part = read_split(tmp_path / "data", name)
        assert sorted(part["id"]) == sorted(np.flatnonzero(splits.to_numpy() == name))
        assert part["species"].notna().all()
    assert read_split(tmp_path / "data", "train")["species"].notna().all()

    # The default drops them as bad rows, as before: past the allowed fraction, ingest fails.
    dropping = config.with_overrides(
        data={**config.data.model_dump(), "unlabeled": "drop"},
        training={**config.training.model_dump(), "self_training": {"enabled": False}},
    )
    with pytest.raises(Exception, match="label 'species' is empty"):
        run_ingest(dropping, tmp_path / "dropped")


@pytest.mark.slow
def test_self_training_adds_pseudo_labels_and_records_each_round(tmp_path) -> None:
    from components.ingest import run_ingest
    from components.train import run_train
    from components.transform import run_transform

    config, _, blanked = _penguins_with_blank_train_labels(tmp_path, 0.85)
    run_ingest(config, tmp_path / "data")
    run_transform(config, tmp_path / "data", tmp_path / "transform")
    result = run_train(config, tmp_path / "data", tmp_path / "transform", tmp_path / "model")

    record = read_model_info(tmp_path / "model")["self_training"]
    assert record == result["self_training"]
    assert record["unlabeled_rows"] == blanked
    rounds = record["rounds"]
    assert [r["round"] for r in rounds] == list(range(len(rounds)))
    assert 2 <= len(rounds) <= config.training.self_training.max_rounds + 1
    assert rounds[0]["pseudo_labels"] == 0  # round 0 is labelled-only training
    assert rounds[1]["pseudo_labels"] > 0
    assert sum(rounds[1]["pseudo_labels_per_class"].values()) == rounds[1]["pseudo_labels"]
    assert all(r["pseudo_labels"] <= blanked for r in rounds)
    assert all(0 <= r["eval_accuracy"] <= 1 for r in rounds)
    assert rounds[-1]["eval_accuracy"] == pytest.approx(result["eval_accuracy"])
    assert record["gain"]["eval_accuracy"] == pytest.approx(
        result["eval_accuracy"] - rounds[0]["eval_accuracy"]
    )
    print("self-training rounds:", pd.DataFrame(rounds).to_string())


def test_report_shows_each_round_and_the_gain() -> None:
    from components.report import _self_training_html
    from mlops.self_training import finish_rounds

    record = {
        "confidence": 0.9,
        "max_rounds": 1,
        "labelled_rows": 30,
        "unlabeled_rows": 170,
        "rounds": [
            {
                "round": 0,
                "pseudo_labels": 0,
                "pseudo_labels_per_class": dict.fromkeys(CLASSES, 0),
                "eval_loss": 0.2,
                "eval_accuracy": 0.9,
            }
        ],
        "final_pseudo_labels": {"Adelie": 80, "Chinstrap": 20, "Gentoo": 60},
    }
    finished = finish_rounds(record, eval_loss=0.1, eval_accuracy=0.95)
    assert [r["pseudo_labels"] for r in finished["rounds"]] == [0, 160]
    assert finished["gain"]["eval_accuracy"] == pytest.approx(0.05)
    assert finished["labelled_only"] == {"eval_loss": 0.2, "eval_accuracy": 0.9}
    page = _self_training_html(finished)
    assert "Adelie 80, Chinstrap 20, Gentoo 60" in page
    assert "accuracy +0.0500" in page and "170 unlabeled" in page
