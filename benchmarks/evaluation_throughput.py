"""Evaluation throughput: the evaluate step's TFMA analysis on the taxi test split, with TFMA's
default settings (`tfma.run_model_analysis`) and with ours (`components.evaluate.analyze` at
INFERENCE_BATCH_SIZE), in the same process on the same examples and EvalConfig.

    .venv/bin/python benchmarks/evaluation_throughput.py [MODEL_DIR] [--repeat 1] [--champion]
        [--batch-size N] [--profile FILE]

Without MODEL_DIR a taxi model is trained first (3 epochs: the figures measure evaluation, not
the model). --repeat writes the test split N times over; --champion evaluates with the model as
its own champion (two models, as when a champion exists). Throughput is examples / wall seconds
of one whole analysis (Beam pipeline, model loads, metrics, writing the output). A small warm-up
analysis runs first so neither variant pays TFMA's lazy imports. The metrics must be identical:
every metric and plot value of every slice of every model, to a relative 1e-6 (so exact for
counts; the model's float32 outputs can move by an ulp with the batch shape); the largest
difference seen is printed. Then each of TFMA's per-example metric combiners for the step's
EvalConfig is fed one row at a time, as TFMA's evaluator feeds it once per slice of a row and
model, and its cost per row is printed beside the measured analysis: the part of the time that
no batching or Beam setting can remove while TFMA computes the metrics. With --profile the
fast variant runs once more under cProfile and the top functions by cumulative time are
printed (cProfile slows Python-heavy code such as TFMA's per-example combiners more than the
rest: read it for shares, not seconds).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOAL = 5.0
# The model computes in float32 and its kernels sum in an order that depends on the batch
# shape: a prediction can move by one float32 ulp (~6e-8 relative) with the batch size.
RELATIVE_TOLERANCE = 1e-6


def _config(root: Path) -> Any:
    from mlops.config import CONFIG_DIR, load_config

    config = load_config(CONFIG_DIR / "taxi.yaml")
    config = config.model_copy(
        update={"local": config.local.model_copy(update={"root": str(root)})}
    )
    return config.with_overrides(training={**config.training.model_dump(), "epochs": 3})


def _train(config: Any, tmp: Path) -> Path:
    from components.train import run_train
    from components.transform import run_transform

    started = time.perf_counter()
    run_transform(config, tmp / "data", tmp / "transform")
    run_train(config, tmp / "data", tmp / "transform", tmp / "model")
    print(f"trained a taxi model in {time.perf_counter() - started:.1f}s", flush=True)
    return tmp / "model"


def _leaves(value: Any, path: tuple = ()) -> dict[tuple, Any]:
    """{path: value} of every leaf of TFMA's nested per-slice dicts and lists; numbers as floats."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _leaves(item, (*path, key)).items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _leaves(item, (*path, i)).items()}
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {path: float(value)}
    return {path: value}


def _results(output_dir: Path, model_names: list[str | None]) -> dict[tuple, Any]:
    """Every metric and plot value TFMA wrote, keyed by (model, metrics|plots, slice, ...)."""
    import tensorflow_model_analysis as tfma

    values: dict[tuple, Any] = {}
    for name in model_names:
        result = tfma.load_eval_result(str(output_dir), model_name=name)
        for kind in ("slicing_metrics", "plots"):
            # keyed by slice: the order TFMA writes slices in is not part of the result
            values.update(_leaves(dict(getattr(result, kind)), (name, kind)))
    return values


def _compare(reference: dict[tuple, Any], ours: dict[tuple, Any]) -> tuple[int, float]:
    """(numbers compared, largest relative difference); raises on a missing, extra or
    differing value."""
    if set(reference) != set(ours):
        missing, extra = set(reference) - set(ours), set(ours) - set(reference)
        raise AssertionError(
            f"results differ: missing {sorted(missing)[:3]}, extra {sorted(extra)[:3]}"
        )
    largest, numbers = 0.0, 0
    for key, expected in reference.items():
        got = ours[key]
        if isinstance(expected, float) and isinstance(got, float):
            numbers += 1
            if math.isnan(expected) and math.isnan(got):
                continue
            if not math.isclose(expected, got, rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-9):
                raise AssertionError(f"{key}: default {expected!r} != ours {got!r}")
            largest = max(largest, abs(expected - got) / max(abs(expected), 1e-12))
        elif expected != got:
            raise AssertionError(f"{key}: default {expected!r} != ours {got!r}")
    return numbers, largest


def _combiner_costs(eval_config: Any, num_classes: int, rows: int = 2000) -> dict[str, float]:
    """{combiner: seconds per row} of TFMA's per-example metric combiners for `eval_config`
    (one model), each fed `rows` StandardMetricInputs one at a time as TFMA's evaluator does
    (seeded random labels and class probabilities: the cost does not depend on the values)."""
    import numpy as np
    from tensorflow_model_analysis.metrics import metric_specs, metric_types
    from tensorflow_model_analysis.proto import config_pb2

    single = config_pb2.EvalConfig()
    single.CopyFrom(eval_config)
    del single.model_specs[1:]
    for spec in single.metrics_specs:
        for metric in spec.metrics:
            metric.ClearField("per_slice_thresholds")  # change thresholds need the baseline
    computations = [
        computation
        for computation in metric_specs.to_computations(list(single.metrics_specs), single)
        if isinstance(computation, metric_types.MetricComputation)
    ]
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(num_classes), rows).astype(np.float32)
    inputs = [
        metric_types.StandardMetricInputs(
            labels=np.array([rng.integers(num_classes)]),
            predictions=row,
            example_weights=None,
        )
        for row in probabilities
    ]
    costs: dict[str, float] = {}
    for computation in computations:
        combiner = computation.combiner
        combiner.setup()
        accumulator = combiner.create_accumulator()
        started = time.perf_counter()
        for item in inputs:
            accumulator = combiner.add_input(accumulator, item)
        name = type(combiner).__name__.strip("_")
        costs[name] = costs.get(name, 0.0) + (time.perf_counter() - started) / rows
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir", nargs="?")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--champion", action="store_true")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--profile")
    args = parser.parse_args()

    from components.evaluate import (
        BASELINE,
        CANDIDATE,
        INFERENCE_BATCH_SIZE,
        analyze,
        build_eval_config,
        write_examples,
    )
    from components.ingest import run_ingest
    from mlops.artifacts import read_model_info, read_split

    batch_size = args.batch_size or INFERENCE_BATCH_SIZE
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        config = _config(tmp / "root")
        run_ingest(config, tmp / "data")
        model_dir = Path(args.model_dir) if args.model_dir else _train(config, tmp)
        import pandas as pd

        test = read_split(tmp / "data", "test")
        frame = pd.concat([test] * args.repeat, ignore_index=True)
        classes = read_model_info(model_dir)["classes"]
        examples = tmp / "test_examples.tfrecord"
        rows = write_examples(config, frame, classes, examples)
        warm_up = tmp / "warm_up.tfrecord"
        write_examples(config, test.head(50), classes, warm_up)
        eval_config = build_eval_config(config, len(classes), has_baseline=args.champion)
        models = {CANDIDATE: model_dir, **({BASELINE: model_dir} if args.champion else {})}
        names = list(models) if args.champion else [None]
        analyze(eval_config, models, warm_up, tmp / "warm_up", config.beam_args, batch_size)

        seconds = {}
        for label, size in (("TFMA defaults", None), ("ours", batch_size)):
            started = time.perf_counter()
            analyze(eval_config, models, examples, tmp / label, config.beam_args, size)
            seconds[label] = time.perf_counter() - started
        numbers, largest = _compare(
            _results(tmp / "TFMA defaults", names), _results(tmp / "ours", names)
        )

        print(
            f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {rows} examples"
            f" (taxi test split x{args.repeat}),"
            f" {'candidate + champion' if args.champion else 'candidate only'}"
        )
        for label, spent in seconds.items():
            print(f"  {label:<22}: {spent:7.2f}s  {rows / spent:9.0f} examples/s")
        ratio = seconds["TFMA defaults"] / seconds["ours"]
        print(
            f"  ours (batch size {batch_size}) / defaults: {ratio:.1f}x (goal >= {GOAL:.0f}x:"
            f" {'met' if ratio >= GOAL else 'NOT met'})"
        )
        print(
            f"  metrics identical: {numbers} numbers (every metric and plot of every slice)"
            f" within rel. {RELATIVE_TOLERANCE:g}; largest difference {largest:.2g}"
        )
        costs = _combiner_costs(eval_config, len(classes))
        fanout = len(eval_config.slicing_specs) * len(models)
        floor = sum(costs.values()) * fanout * rows
        print(
            "  TFMA's per-example metric combiners (one row, one slice, one model):"
            + "".join(f"\n    {name:<36}: {cost * 1e6:6.0f} us" for name, cost in costs.items())
        )
        print(
            f"  x {len(eval_config.slicing_specs)} slices x {len(models)} model(s) per row:"
            f" {floor:.2f}s of the {rows} rows, {floor / seconds['ours']:.0%} of ours,"
            f" so at most {seconds['ours'] / floor:.1f}x faster with every other cost removed"
        )
        if args.profile:
            import cProfile
            import pstats

            cProfile.runctx(
                "analyze(eval_config, models, examples, tmp / 'profiled', config.beam_args,"
                " batch_size)",
                globals(),
                {**locals()},
                args.profile,
            )
            pstats.Stats(args.profile).sort_stats("cumulative").print_stats(40)
    sys.stdout.flush()
    os._exit(0)  # TF/Beam can crash the interpreter at teardown; the figures are printed


if __name__ == "__main__":
    main()
