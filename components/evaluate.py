"""Evaluate: TensorFlow Model Analysis on the test split, overall and per slice, with value
thresholds and (when a champion exists) a change threshold against it; then the gates that
TFMA cannot express: the framing's success criterion, beating the baselines (majority class, a
linear model, rules from config) and fairness across groups. The model is blessed only if every
gate passes; each gate is recorded with its numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mlops.artifacts import METRICS_FILE, read_model_info, read_split
from mlops.baselines import classification_metrics, fit_baselines
from mlops.config import FeatureConfig, PipelineConfig
from mlops.features import category_text, encode_labels, model_input_names
from mlops.gates import baselines_gate, fairness, gate, success_criterion_gate
from mlops.io import atomic_dir, to_beam_uri, write_json_atomic

LABEL_INDEX_KEY = "__label_index__"
PREDICTION_KEY = "probabilities"
# Each sensitive feature is written again under this prefix as text, "(missing)" for no value,
# and TFMA slices on it: every row falls in a group, model input or not.
GROUP_KEY_PREFIX = "__group__"
MISSING_GROUP = "(missing)"
# Served labels are the argmax, which for two classes is P(class 1) > 0.5: the fairness rates
# use the same decision.
DECISION_THRESHOLD = 0.5
# TFMA metric class -> the name the fairness gate reads per group (binary tasks).
FAIRNESS_RATES = {
    "PredictedPositiveRate": "positive_rate",
    "TPR": "true_positive_rate",
    "FPR": "false_positive_rate",
}
CANDIDATE = "candidate"
BASELINE = "baseline"
SIGNATURE = "serving_tf_example"
# Rows per batch from the reader into the model. run_model_analysis lets Beam size batches,
# starting at one row and growing with measured timings, so a test split of a few thousand rows
# goes through the model mostly in tiny batches, each a full signature call.
INFERENCE_BATCH_SIZE = 1000


def write_examples(
    config: PipelineConfig,
    frame: Any,
    classes: list[str],
    path: Path,
    probabilities: Any = None,
) -> int:
    """Write rows as TFRecord tf.Examples: raw features under their internal names (the keys
    `serving_tf_example` parses; missing values omitted), the label index, each sensitive
    feature's group, and (for an evaluation without a model) given predictions."""
    import tensorflow as tf

    labels = encode_labels(frame[config.data.label].tolist(), classes, "test")
    features = config.features
    sensitive = [f for f in config.fairness.sensitive_features if f in frame.columns]
    internal = model_input_names(features)
    count = 0
    with tf.io.TFRecordWriter(str(path)) as writer:
        for index, (row, label) in enumerate(zip(frame.to_dict("records"), labels, strict=True)):
            feature = {
                LABEL_INDEX_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))
            }
            for name in sensitive:
                group = category_text(row.get(name)) or MISSING_GROUP
                feature[GROUP_KEY_PREFIX + name] = tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[group.encode()])
                )
            if probabilities is not None:
                feature[PREDICTION_KEY] = tf.train.Feature(
                    float_list=tf.train.FloatList(value=list(map(float, probabilities[index])))
                )
            for name in features.numeric:
                value = row.get(name)
                if value is not None and not (isinstance(value, float) and math.isnan(value)):
                    feature[internal[name]] = tf.train.Feature(
                        float_list=tf.train.FloatList(value=[value])
                    )
            for name in features.categorical:
                text = category_text(row.get(name))
                if text:
                    feature[internal[name]] = tf.train.Feature(
                        bytes_list=tf.train.BytesList(value=[text.encode()])
                    )
            if features.image is not None and row.get(features.image.column):
                feature[internal[features.image.column]] = tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[row[features.image.column]])
                )
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())
            count += 1
    return count


def build_eval_config(
    config: PipelineConfig, num_classes: int, has_baseline: bool, with_model: bool = True
) -> Any:
    """The EvalConfig of the step; `with_model=False` reads the predictions from the examples
    (PREDICTION_KEY) instead of running the model: for predictions made elsewhere (an AutoML
    challenger) and for checking the metrics on known predictions."""
    from google.protobuf import wrappers_pb2
    from tensorflow_model_analysis.proto import config_pb2

    evaluation = config.evaluation
    model_specs = [
        config_pb2.ModelSpec(
            name=CANDIDATE,
            signature_name=SIGNATURE if with_model else "",
            label_key=LABEL_INDEX_KEY,
            prediction_key=PREDICTION_KEY,
        )
    ]
    if has_baseline:
        model_specs.append(
            config_pb2.ModelSpec(
                name=BASELINE,
                signature_name=SIGNATURE,
                label_key=LABEL_INDEX_KEY,
                prediction_key="probabilities",
                is_baseline=True,
            )
        )

    def gate(metric: str) -> list[Any]:
        """Thresholds for `metric`, applied to the overall slice only (small slices must not
        veto a model; they are reported and plotted instead)."""
        threshold = config_pb2.MetricThreshold()
        for rule in evaluation.thresholds:
            if rule.metric == metric:
                threshold.value_threshold.lower_bound.value = rule.lower_bound
        change = evaluation.change_threshold
        if has_baseline and change and change.metric == metric:
            threshold.change_threshold.direction = config_pb2.MetricDirection.HIGHER_IS_BETTER
            threshold.change_threshold.absolute.value = -change.max_degradation
        if not threshold.ByteSize():
            return []
        return [
            config_pb2.PerSliceMetricThreshold(
                slicing_specs=[config_pb2.SlicingSpec()], threshold=threshold
            )
        ]

    def metric(class_name: str, name: str, gated: str | None = None) -> Any:
        return config_pb2.MetricConfig(
            class_name=class_name,
            config=json.dumps({"name": name}),
            per_slice_thresholds=gate(gated) if gated else [],
        )

    overall = config_pb2.MetricsSpec(
        metrics=[
            config_pb2.MetricConfig(class_name="ExampleCount"),
            metric("SparseCategoricalAccuracy", "accuracy", gated="accuracy"),
            config_pb2.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
        ]
    )
    # AUC one-vs-rest: the positive class of a binary task, macro-averaged over classes otherwise.
    per_class = config_pb2.MetricsSpec(
        metrics=[
            metric("AUC", "auc", gated="auc"),
            metric("Precision", "precision"),
            metric("Recall", "recall"),
        ],
    )
    if num_classes == 2:
        per_class.binarize.class_ids.values.append(1)
        # Plots cannot be macro-averaged, so the calibration plot is for binary tasks only.
        per_class.metrics.append(config_pb2.MetricConfig(class_name="CalibrationPlot"))
    else:
        per_class.binarize.class_ids.values.extend(range(num_classes))
        per_class.aggregate.macro_average = True
        for class_id in range(num_classes):
            per_class.aggregate.class_weights[class_id] = 1.0
    # TFMA slices the examples, whose keys are the internal names (see `write_examples`).
    internal = model_input_names(config.features)
    slicing = [config_pb2.SlicingSpec()] + [
        config_pb2.SlicingSpec(feature_keys=[internal[name]]) for name in evaluation.slices
    ]
    metrics_specs = [overall, per_class]
    sensitive = config.fairness.sensitive_features
    slicing += [config_pb2.SlicingSpec(feature_keys=[GROUP_KEY_PREFIX + f]) for f in sensitive]
    if sensitive and num_classes == 2:
        # What TFMA's Fairness Indicators compute (that metric now lives in the separate
        # fairness-indicators package), at the served decision threshold, for class 1.
        fairness_rates = config_pb2.MetricsSpec(
            metrics=[
                config_pb2.MetricConfig(
                    class_name=class_name,
                    config=json.dumps({"name": name, "thresholds": [DECISION_THRESHOLD]}),
                )
                for class_name, name in FAIRNESS_RATES.items()
            ]
        )
        fairness_rates.binarize.class_ids.values.append(1)
        metrics_specs.append(fairness_rates)
    return config_pb2.EvalConfig(
        model_specs=model_specs,
        metrics_specs=metrics_specs,
        slicing_specs=slicing,
        # Every slice is reported, however small; only the overall slice gates (see gate()).
        # (A larger TFMA min_slice_size turns small slices into errors that fail validation.)
        options=config_pb2.Options(min_slice_size=wrappers_pb2.Int32Value(value=1)),
    )


def _slice_name(slice_key: tuple, written_names: dict[str, str]) -> str:
    if not slice_key:
        return "overall"
    return ",".join(f"{written_names.get(column, column)}={value}" for column, value in slice_key)


def summarize_metrics(
    eval_result: Any, num_classes: int, features: FeatureConfig | None = None
) -> dict[str, dict[str, float]]:
    """Flatten TFMA's slicing metrics to {slice: {accuracy, auc, precision, recall, example_count}};
    binary tasks report the positive class, multi-class tasks the macro average over classes.
    Slices are named by the columns as written in `features` (TFMA knows the internal names)."""
    written_names = (
        {internal: name for name, internal in model_input_names(features).items()}
        if features is not None
        else {}
    )
    wanted = {"accuracy", "auc", "precision", "recall", "example_count"}
    summary: dict[str, dict[str, float]] = {}
    for slice_key, outputs in eval_result.slicing_metrics:
        if _group_slice(slice_key):
            continue  # fairness groups: see fairness_groups
        values: dict[str, float] = {}
        for sub_key, metrics in outputs.get("", {}).items():
            if sub_key not in ("", "classId:1" if num_classes == 2 else ""):
                continue
            for key, value in metrics.items():
                # Macro averages appear as "macro_average: true\n_auc".
                name = key.rsplit("\n_", 1)[-1] if key.startswith("macro_average") else key
                # An undefined metric (precision when nothing is predicted positive) is NaN in
                # TFMA: it is left out, so it reads as undefined, never as a number.
                if name in wanted and "doubleValue" in value:
                    number = float(value["doubleValue"])
                    if math.isfinite(number):
                        values[name] = number
        summary[_slice_name(slice_key, written_names)] = values
    return summary


def _group_slice(slice_key: tuple) -> tuple[str, str] | None:
    """(sensitive feature, group) for a slice on a GROUP_KEY_PREFIX key, else None."""
    if len(slice_key) == 1 and str(slice_key[0][0]).startswith(GROUP_KEY_PREFIX):
        column, value = slice_key[0]
        group = value.decode() if isinstance(value, bytes) else str(value)
        return column[len(GROUP_KEY_PREFIX) :], group
    return None


def fairness_groups(eval_result: Any, num_classes: int) -> dict[str, dict[str, dict[str, float]]]:
    """{sensitive feature: {group: {rows, accuracy[, positive_rate, true_positive_rate,
    false_positive_rate]}}} from TFMA's per-slice results. Multi-class tasks get accuracy only
    (TFMA's fairness rates are binary). A rate TFMA leaves undefined (TPR of a group without
    positives) is left out."""
    wanted = {"example_count", "accuracy", *FAIRNESS_RATES.values()}
    groups: dict[str, dict[str, dict[str, float]]] = {}
    for slice_key, outputs in eval_result.slicing_metrics:
        found = _group_slice(slice_key)
        if not found:
            continue
        feature, group = found
        values: dict[str, float] = {}
        for sub_key, metrics in outputs.get("", {}).items():
            if sub_key not in ("", "classId:1" if num_classes == 2 else ""):
                continue
            for name, value in metrics.items():
                number = float(value.get("doubleValue", math.nan))
                if name in wanted and math.isfinite(number):
                    # TFMA's accuracy is float32: 0.4 reads 0.40000000596
                    values[name] = round(number, 6)
        rows = int(values.pop("example_count", 0))
        groups.setdefault(feature, {})[group] = {"rows": rows, **values}
    return {feature: dict(sorted(table.items())) for feature, table in groups.items()}


def overall_confusion_matrix(eval_result: Any, num_classes: int) -> list[list[int]]:
    """Counts [actual][predicted] of the overall slice, from TFMA's confusion matrix plot."""
    matrix = [[0] * num_classes for _ in range(num_classes)]
    for slice_key, plots in eval_result.plots:
        if slice_key:
            continue
        plot = plots.get("", {}).get("", {}).get("multiClassConfusionMatrixAtThresholds", {})
        for entry in (plot.get("matrices") or [{}])[0].get("entries", []):
            # Proto JSON omits zero fields: class id 0 is an absent key.
            actual = int(entry.get("actualClassId", 0))
            predicted = int(entry.get("predictedClassId", 0))
            if 0 <= actual < num_classes and 0 <= predicted < num_classes:
                matrix[actual][predicted] += int(entry.get("numWeightedExamples", 0))
    return matrix


def log_evaluation(summary: dict[str, Any], evaluation: Any, metrics: Any, confusion: Any) -> None:
    """What an evaluate step shows in the KFP / Vertex UI: its overall metrics and blessing as
    metrics, the test split's confusion matrix, and `blessed` on the evaluation artifact."""
    for name, value in summary["metrics"].get("overall", {}).items():
        metrics.log_metric(name, value)
    metrics.log_metric("blessed", float(summary["blessed"]))
    classes, matrix = confusion_matrix(evaluation.path)
    confusion.log_confusion_matrix(classes, matrix)
    evaluation.metadata["blessed"] = summary["blessed"]


def confusion_matrix(evaluation_dir: str | Path) -> tuple[list[str], list[list[int]]]:
    summary = json.loads((Path(evaluation_dir) / METRICS_FILE).read_text())
    return summary["classes"], summary["confusion_matrix"]


def compare_with_baselines(
    config: PipelineConfig,
    dataset_dir: str | Path,
    classes: list[str],
    test: Any,
) -> dict[str, dict[str, float]]:
    """The baselines' metrics on the test split."""
    train = read_split(dataset_dir, "train")
    label = config.data.label
    train_ids = encode_labels(train[label].tolist(), classes, "train")
    test_ids = encode_labels(test[label].tolist(), classes, "test")
    baselines = fit_baselines(train, train_ids, classes, config.features, config.baselines.rules)
    return {b.name: classification_metrics(b.predict_proba(test), test_ids) for b in baselines}


def _load_eval_result(output_dir: str, model_name: str, single_model: bool) -> Any:
    import tensorflow_model_analysis as tfma

    # With one model TFMA records no model name.
    return tfma.load_eval_result(output_dir, model_name=None if single_model else model_name)


def analyze(
    eval_config: Any,
    model_dirs: dict[str, str | Path],
    data_path: str | Path,
    output_dir: str | Path,
    beam_args: list[str],
    batch_size: int | None = INFERENCE_BATCH_SIZE,
) -> None:
    """TFMA's extract, evaluate and write on the tf.Examples at `data_path`, one model per
    ModelSpec name in `model_dirs`, into `output_dir`. With no models (`{}`) TFMA reads the
    predictions from the examples (model-agnostic, see `build_eval_config(with_model=False)`).

    With `batch_size` the reader hands the model fixed batches of that many rows; None runs
    `tfma.run_model_analysis` as it is, with Beam's adaptive batching (the reference the
    evaluation benchmark compares against: both write the same metrics)."""
    import apache_beam as beam
    import tensorflow_model_analysis as tfma

    models = [
        tfma.default_eval_shared_model(
            to_beam_uri(directory), eval_config=eval_config, model_name=name
        )
        for name, directory in model_dirs.items()
    ] or None
    # Beam (on Dataflow: its workers) reads and writes /gcs/ paths as gs:// URIs.
    data_uri, output_uri = to_beam_uri(data_path), to_beam_uri(output_dir)
    options = beam.options.pipeline_options.PipelineOptions(beam_args)
    if batch_size is None:
        tfma.run_model_analysis(
            eval_shared_model=models,
            eval_config=eval_config,
            data_location=data_uri,
            output_path=output_uri,
            pipeline_options=options,
        )
        return
    from tfx_bsl.public import tfxio

    # What run_model_analysis builds for TFRecords of tf.Example without a schema, but with a
    # fixed batch size on the source.
    examples = tfxio.TFExampleRecord(
        file_pattern=data_uri,
        raw_record_column_name=tfma.ARROW_INPUT_COLUMN,
        telemetry_descriptors=["StandaloneTFMA"],
    )
    with beam.Pipeline(options=options) as pipeline:
        _ = (
            pipeline
            | "ReadFromTFRecordToArrow" >> examples.BeamSource(batch_size=batch_size)
            | "ExtractEvaluateAndWriteResults"
            >> tfma.ExtractEvaluateAndWriteResults(
                eval_config=eval_config,
                eval_shared_model=models,
                output_path=output_uri,
                display_only_data_location=data_uri,
                display_only_file_format="tfrecords",
            )
        )


def run_evaluate(
    config: PipelineConfig,
    dataset_dir: str | Path,
    model_dir: str | Path,
    output_dir: str | Path,
    baseline_model_dir: str | Path | None = None,
) -> dict[str, Any]:
    """TFMA on the test split; returns {blessed, metrics, baseline_metrics, failures}.

    `output_dir` holds TFMA's output (loadable with `tfma.load_eval_result` and
    `tfma.load_validation_result`), the test examples, and metrics.json.
    """
    classes = read_model_info(model_dir)["classes"]
    return evaluate_test_split(
        config,
        dataset_dir,
        classes,
        output_dir,
        model_dir=model_dir,
        baseline_model_dir=baseline_model_dir,
    )


def evaluate_test_split(
    config: PipelineConfig,
    dataset_dir: str | Path,
    classes: list[str],
    output_dir: str | Path,
    *,
    model_dir: str | Path | None = None,
    probabilities: Any = None,
    baseline_model_dir: str | Path | None = None,
) -> dict[str, Any]:
    """The evaluation and gates of the evaluate step on the test split, for our model
    (`model_dir`, run by TFMA, against the champion at `baseline_model_dir` when given) or for
    predictions made elsewhere (`probabilities`, one row per test row in the test split's order,
    one column per class of `classes`; TFMA reads them from the examples). TFMA 0.52 takes a
    baseline only as a loaded model beside a loaded candidate, so given predictions have none:
    their change threshold against the champion is the caller's (`components.automl`)."""
    import tensorflow_model_analysis as tfma

    if (model_dir is None) == (probabilities is None):
        raise ValueError("evaluate_test_split needs exactly one of model_dir and probabilities")
    if probabilities is not None and baseline_model_dir:
        raise ValueError("evaluate_test_split takes no baseline for given probabilities")
    test = read_split(dataset_dir, "test")
    has_baseline = bool(baseline_model_dir)
    with_model = model_dir is not None
    eval_config = build_eval_config(config, len(classes), has_baseline, with_model=with_model)
    with atomic_dir(output_dir) as out:
        data_path = out / "test_examples.tfrecord"
        rows = write_examples(config, test, classes, data_path, probabilities)
        model_dirs = {CANDIDATE: model_dir} if with_model else {}
        if has_baseline:
            model_dirs[BASELINE] = baseline_model_dir
        analyze(eval_config, model_dirs, data_path, out, config.beam_args)
        eval_result = _load_eval_result(str(out), CANDIDATE, single_model=not has_baseline)
        validation = tfma.load_validation_result(str(out))
        metrics = summarize_metrics(eval_result, len(classes), config.features)
        baseline_metrics = {}
        if has_baseline:
            baseline_result = _load_eval_result(str(out), BASELINE, single_model=False)
            baseline_metrics = summarize_metrics(baseline_result, len(classes)).get("overall", {})
        tfma_failures = [
            f"{failure.metric_key.name}: {failure.message}"
            for failed_slice in validation.metric_validations_per_slice
            for failure in failed_slice.failures
        ]
        overall = metrics.get("overall", {})
        baselines = compare_with_baselines(config, dataset_dir, classes, test)
        groups = fairness_groups(eval_result, len(classes))
        fairness_report, fairness_gate = fairness(
            config,
            {
                f: groups.get(f, {}) if f in test.columns else None
                for f in config.fairness.sensitive_features
            },
        )
        gates = [
            gate(
                "evaluation thresholds",
                bool(validation.validation_ok),
                "; ".join(tfma_failures) or "every TFMA threshold met",
            ),
            success_criterion_gate(config, overall),
            baselines_gate(config, overall, baselines),
        ]
        if fairness_gate:
            gates.append(fairness_gate)
        failed = [g for g in gates if not g["passed"]]
        summary = {
            "blessed": not failed,
            "examples": rows,
            "classes": classes,
            "metrics": metrics,
            "baseline_metrics": baseline_metrics,
            "has_baseline": has_baseline,
            "baseline_model_dir": str(baseline_model_dir) if has_baseline else None,
            "gates": gates,
            "failures": [f"{g['name']}: {g['detail']}" for g in failed],
            "baselines": baselines,
            "fairness": fairness_report,
            "confusion_matrix": overall_confusion_matrix(eval_result, len(classes)),
        }
        write_json_atomic(out / METRICS_FILE, summary)
    return summary
