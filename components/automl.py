"""The AutoML challenger (Vertex AI only): AutoML Tabular trained on our split, evaluated with our
evaluation and gates on our test rows, and compared with our model.

On Vertex the training pipeline, with `vertex.automl_challenger.enabled`, runs beside our model:

1. `export_automl_splits`: our ingest splits as CSV on the pipeline root, with a predefined split
   column (train -> training, eval -> validation, test -> test), and the test split alone with a
   row id for batch prediction;
2. GCPC's `TabularDatasetCreateOp` -> `AutoMLTabularTrainingJobRunOp` (the predefined split, the
   budget and objective from config) -> `ModelBatchPredictOp` on the test CSV (JSON Lines out);
3. `run_evaluate_challenger`: reads the batch prediction output and evaluates it with the evaluate
   step's code (`evaluate_test_split`: TFMA on the same examples, same metrics, slices,
   thresholds, change threshold against the champion, baselines and fairness gate);
4. `compare_with_challenger`: the better of the two on `framing.success_metric` is blessed. When
   the challenger wins, our model's blessing is withdrawn (it is not registered and the champion
   alias stays where it was); the AutoML model stays in Vertex AI Model Registry, where its
   training job put it, labelled `mlops_challenger=<name>`, and the comparison names it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mlops.artifacts import METRICS_FILE, SPLITS, read_label_classes, read_split
from mlops.config import PipelineConfig
from mlops.features import category_texts
from mlops.io import require_complete, write_json_atomic
from mlops.names import internal_names

# Columns we add to the CSVs. AutoML column names: letters, digits and underscores, not starting
# with an underscore (our internal names are such identifiers).
SPLIT_COLUMN = "mlops_split"
ROW_ID_COLUMN = "mlops_row_id"
# Our split -> the value of AutoML's predefined split column (PredefinedSplit.key: "must be one
# of {training, validation, test}").
AUTOML_SPLIT_VALUES = {"train": "training", "eval": "validation", "test": "test"}
TRAINING_CSV = "automl_training.csv"
TEST_CSV = "automl_test.csv"
COMPARISON_FILE = "comparison.json"
# Batch prediction output files in the job's output directory (JSON Lines: one
# {"instance": {...}, "prediction": {"classes": [...], "scores": [...]}} per line).
RESULTS_GLOB = "prediction.results-*"
ERRORS_GLOB = "prediction.errors_stats-*"
CHALLENGER_LABEL = "mlops_challenger"


class AutoMLPredictionError(ValueError):
    """AutoML's batch prediction output cannot be read as predictions of our test rows."""


def automl_columns(config: PipelineConfig) -> dict[str, str]:
    """{column as written: its AutoML column name} for the features and the label (the
    identifiers the model uses inside, `mlops.names.safe_name`)."""
    names = internal_names([*config.features.raw_features, config.data.label])
    taken = {ROW_ID_COLUMN, SPLIT_COLUMN} & set(names.values())
    if taken:
        raise ValueError(
            f"column names {sorted(taken)} are reserved for the AutoML challenger's CSVs: "
            "rename those columns (in the data and in the config)"
        )
    return names


def column_specs(config: PipelineConfig) -> dict[str, str]:
    """AutoML's column_specs: our features only, typed as we type them. Columns not named (the
    split column, the row id) are not features."""
    names = automl_columns(config)
    specs = {names[name]: "numeric" for name in config.features.numeric}
    specs.update({names[name]: "categorical" for name in config.features.categorical})
    return specs


def target_column(config: PipelineConfig) -> str:
    return automl_columns(config)[config.data.label]


def _csv_frame(config: PipelineConfig, frame: Any, with_label: bool) -> Any:
    """Features (and the label) under their AutoML names, as AutoML reads CSV cells: numbers
    as written, categories as our category text, a missing value as an empty cell."""
    import pandas as pd

    names = automl_columns(config)
    columns: dict[str, Any] = {}
    for name in config.features.numeric:
        columns[names[name]] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    for name in config.features.categorical:
        columns[names[name]] = category_texts(frame[name])
    if with_label:
        columns[names[config.data.label]] = category_texts(frame[config.data.label])
    return pd.DataFrame(columns, index=frame.index)


def export_automl_splits(
    config: PipelineConfig,
    dataset_dir: str | Path,
    training_csv: str | Path,
    test_csv: str | Path,
) -> dict[str, Any]:
    """Write our splits for AutoML: `training_csv` holds every row of train, eval and test with
    the split column (so AutoML trains, validates and tests on exactly our rows), `test_csv`
    the test split's features with a row id (its position in the test split), which batch
    prediction copies into each output line. Returns the rows per split."""
    import pandas as pd

    parts, rows = [], {}
    for split in SPLITS:
        frame = read_split(dataset_dir, split)
        part = _csv_frame(config, frame, with_label=True)
        part.insert(0, SPLIT_COLUMN, AUTOML_SPLIT_VALUES[split])
        parts.append(part)
        rows[split] = len(frame)
    test = read_split(dataset_dir, "test")
    test_part = _csv_frame(config, test, with_label=False)
    test_part.insert(0, ROW_ID_COLUMN, range(len(test)))
    for path, frame in ((training_csv, pd.concat(parts, ignore_index=True)), (test_csv, test_part)):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False, na_rep="")
    return {"rows": rows, "columns": column_specs(config), "target_column": target_column(config)}


def _row_id(instance: Any, where: str) -> int:
    if not isinstance(instance, dict) or ROW_ID_COLUMN not in instance:
        raise AutoMLPredictionError(
            f"{where}: 'instance' has no {ROW_ID_COLUMN!r}: expected the test CSV's row id "
            "copied into each prediction"
        )
    value = instance[ROW_ID_COLUMN]
    try:
        number = float(value)  # CSV instances carry every cell as text
    except (TypeError, ValueError):
        number = math.nan
    if not number.is_integer() or number < 0:
        raise AutoMLPredictionError(
            f"{where}: {ROW_ID_COLUMN} is {value!r}, expected a row number of the test split"
        )
    return int(number)


def _scores(prediction: Any, classes: list[str], where: str) -> list[float]:
    """The scores of `prediction` in the order of `classes` (AutoML orders its classes itself)."""
    if not isinstance(prediction, dict) or not {"classes", "scores"} <= set(prediction):
        raise AutoMLPredictionError(
            f"{where}: 'prediction' must hold 'classes' and 'scores' (AutoML tabular "
            f"classification), got {json.dumps(prediction)[:200]}"
        )
    names, scores = prediction["classes"], prediction["scores"]
    if not isinstance(names, list) or not isinstance(scores, list) or len(names) != len(scores):
        raise AutoMLPredictionError(
            f"{where}: 'classes' and 'scores' must be lists of the same length, got "
            f"{len(names) if isinstance(names, list) else names!r} classes and "
            f"{len(scores) if isinstance(scores, list) else scores!r} scores"
        )
    by_class = dict(zip(map(str, names), scores, strict=True))
    missing = [name for name in classes if name not in by_class]
    if missing:
        raise AutoMLPredictionError(
            f"{where}: no score for classes {missing}; AutoML predicted classes {names}, our "
            f"model's classes are {classes}"
        )
    values = []
    for name in classes:
        score = by_class[name]
        if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
            raise AutoMLPredictionError(
                f"{where}: score of class {name!r} is {score!r}, expected a number in [0, 1]"
            )
        values.append(float(score))
    return values


def read_automl_predictions(directory: str | Path, classes: list[str], rows: int) -> Any:
    """The (rows, classes) scores AutoML's batch prediction wrote into `directory` (its
    `prediction.results-*` files), one row per test row in the test split's order and one column
    per class of `classes`. Failed rows (`prediction.errors_stats-*`), a malformed line, a row
    predicted twice or not at all are errors naming the file and line."""
    import numpy as np

    directory = Path(directory)
    files = sorted(directory.glob(RESULTS_GLOB))
    if not files:
        raise AutoMLPredictionError(
            f"no {RESULTS_GLOB} files in {directory}: expected the output directory of a batch "
            "prediction job with predictions_format jsonl"
        )
    for path in sorted(directory.glob(ERRORS_GLOB)):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                raise AutoMLPredictionError(
                    f"{path}:{number}: batch prediction failed on rows: {line.strip()[:300]}"
                )
    scores = np.full((rows, len(classes)), np.nan)
    seen: dict[int, str] = {}
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise AutoMLPredictionError(f"{where}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict) or not {"instance", "prediction"} <= set(record):
                raise AutoMLPredictionError(
                    f"{where}: expected an object with 'instance' and 'prediction'"
                )
            row = _row_id(record["instance"], where)
            if row >= rows:
                raise AutoMLPredictionError(
                    f"{where}: {ROW_ID_COLUMN} {row} is not a row of the test split ({rows} rows)"
                )
            if row in seen:
                raise AutoMLPredictionError(
                    f"{where}: row {row} was already predicted at {seen[row]}"
                )
            seen[row] = where
            scores[row] = _scores(record["prediction"], classes, where)
    missing = sorted(set(range(rows)) - set(seen))
    if missing:
        raise AutoMLPredictionError(
            f"{directory}: no prediction for {len(missing)} of {rows} test rows "
            f"({ROW_ID_COLUMN} {missing[:10]}{' ...' if len(missing) > 10 else ''})"
        )
    return scores


def run_evaluate_challenger(
    config: PipelineConfig,
    dataset_dir: str | Path,
    transform_dir: str | Path,
    predictions_dir: str | Path,
    output_dir: str | Path,
) -> dict[str, Any]:
    """The evaluate step's evaluation and gates (`evaluate_test_split`) on AutoML's predictions
    of our test split, with our label classes (from transform, as our model has them). Same
    output as the evaluate step; the change threshold against the champion is applied by
    `compare_with_challenger` (TFMA takes a baseline only as a loaded model)."""
    from components.evaluate import evaluate_test_split

    classes = read_label_classes(transform_dir)
    rows = len(read_split(dataset_dir, "test"))
    probabilities = read_automl_predictions(predictions_dir, classes, rows)
    return evaluate_test_split(
        config, dataset_dir, classes, output_dir, probabilities=probabilities
    )


def champion_gate(
    config: PipelineConfig, ours: dict[str, Any], challenger: dict[str, Any]
) -> dict[str, Any] | None:
    """`evaluation.change_threshold` for the challenger, as TFMA applies it to our model
    (absolute, higher is better): against the champion's figure our evaluation measured on the
    same rows. None without a change threshold or a champion."""
    from mlops.gates import gate

    change = config.evaluation.change_threshold
    if not change or not ours.get("has_baseline"):
        return None
    champion = ours.get("baseline_metrics", {}).get(change.metric)
    theirs = challenger.get("metrics", {}).get("overall", {}).get(change.metric)
    if champion is None or theirs is None:
        return gate(
            "change vs champion",
            False,
            f"{change.metric} undefined (AutoML {_shown(theirs)}, champion {_shown(champion)})",
        )
    passed = theirs - champion >= -change.max_degradation
    return gate(
        "change vs champion",
        passed,
        f"AutoML {change.metric} {theirs:.4f} vs champion {champion:.4f} "
        f"(evaluation.change_threshold.max_degradation {change.max_degradation})",
    )


def compare_with_challenger(
    config: PipelineConfig,
    ours: dict[str, Any],
    challenger: dict[str, Any],
    challenger_model: str = "",
) -> dict[str, Any]:
    """Which of our model and the AutoML challenger is blessed, from their evaluations (the
    evaluate step's metrics.json, on the same test rows). The challenger is blessed only when
    its own gates pass (with the change threshold against the champion, `champion_gate`) and
    ours fail or it is better on `framing.success_metric`; a tie keeps ours. Returns
    {model_blessed, challenger_blessed, winner, metric, ours, challenger, detail}."""
    metric = config.framing.success_metric

    def figure(summary: dict[str, Any]) -> float | None:
        value = summary.get("metrics", {}).get("overall", {}).get(metric)
        return float(value) if value is not None and math.isfinite(value) else None

    ours_value, theirs_value = figure(ours), figure(challenger)
    extra = champion_gate(config, ours, challenger)
    failures = list(challenger.get("failures", []))
    if extra and not extra["passed"]:
        failures.append(f"{extra['name']}: {extra['detail']}")
    ours_ok, theirs_ok = bool(ours["blessed"]), bool(challenger["blessed"]) and not failures
    if not theirs_ok:
        winner = "ours" if ours_ok else "neither"
        why = "the AutoML challenger failed its gates: " + "; ".join(failures)
    elif not ours_ok:
        winner = "challenger"
        why = "our model failed its gates: " + "; ".join(ours["failures"])
    elif theirs_value is not None and (ours_value is None or theirs_value > ours_value):
        winner = "challenger"
        why = f"AutoML {metric} {theirs_value:.4f} > ours {_shown(ours_value)}"
    else:
        winner = "ours"
        why = f"ours {metric} {_shown(ours_value)} >= AutoML {_shown(theirs_value)}"
    return {
        "model_blessed": winner == "ours",
        "challenger_blessed": winner == "challenger",
        "winner": winner,
        "metric": metric,
        "ours": {"blessed": ours_ok, metric: ours_value},
        "challenger": {
            "blessed": theirs_ok,
            metric: theirs_value,
            "model": challenger_model,
            "gates": [*challenger.get("gates", []), *([extra] if extra else [])],
        },
        "detail": why,
    }


def _shown(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"


def run_compare(
    config: PipelineConfig,
    evaluation_dir: str | Path,
    challenger_evaluation_dir: str | Path,
    output_dir: str | Path,
    challenger_model: str = "",
) -> dict[str, Any]:
    """`compare_with_challenger` on the two evaluate outputs, written to
    `<output_dir>/comparison.json`."""

    def summary(directory: str | Path) -> dict[str, Any]:
        return json.loads((require_complete(directory) / METRICS_FILE).read_text())

    result = compare_with_challenger(
        config, summary(evaluation_dir), summary(challenger_evaluation_dir), challenger_model
    )
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(output_dir) / COMPARISON_FILE, result)
    return result
