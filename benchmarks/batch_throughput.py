"""Batch prediction throughput: the batch job (read CSV -> convert -> batch -> SavedModel -> write
JSON Lines; with the default local runner its DoFns run in process, see
`components.batch_predict._runs_in_process`) against raw `serving_default` calls on arrays built
beforehand from the same rows, in the same batch size. Goal (issue "Speed and scale"): the job at
>= 50% of the raw calls' rows/s. The job's figure includes loading the model; the raw one does not,
so a second line (not the goal figure) shows the job less one model load timed apart in the same run
(the job overlaps part of its load with reading, so that line flatters it a little).

    .venv/bin/python benchmarks/batch_throughput.py [MODEL_DIR] [--rows 1000000] [--batch-size 1024]

Rows are the penguins test split repeated to --rows, with an id column. Without MODEL_DIR a
penguins model is trained first into a temporary dir. Both variants run in this process after
TensorFlow is imported, so neither pays the import.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.serving_latency import _config, _rows, _train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir", nargs="?")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()

    import pandas as pd
    import tensorflow as tf

    from components.batch_predict import read_predictions, run_batch_predict
    from mlops.features import frame_to_arrays
    from mlops.serving.server import load_model

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        config = _config(tmp / "root")
        test = _rows(config, tmp)
        model_dir = Path(args.model_dir) if args.model_dir else _train(config, tmp)
        frame = pd.concat([test] * (args.rows // len(test) + 1), ignore_index=True).head(args.rows)
        frame.insert(0, "row_id", range(len(frame)))
        source = tmp / "rows.csv"
        frame.to_csv(source, index=False)

        loaded = tf.saved_model.load(str(model_dir))
        signature = loaded.signatures["serving_default"]
        arrays = frame_to_arrays(frame, config.features)
        started = time.perf_counter()
        for start in range(0, len(frame), args.batch_size):
            batch = {k: tf.constant(v[start : start + args.batch_size]) for k, v in arrays.items()}
            signature(**batch)["probabilities"].numpy()
        raw_s = time.perf_counter() - started

        started = time.perf_counter()
        summary = run_batch_predict(
            config, model_dir, str(source), tmp / "out", "row_id", batch_size=args.batch_size
        )
        job_s = time.perf_counter() - started
        assert summary["rows"] == len(frame) == len(read_predictions(tmp / "out"))
        started = time.perf_counter()
        load_model(model_dir)  # the job's one fixed cost the raw calls do not have
        load_s = time.perf_counter() - started

        print(f"machine: {os.cpu_count()} CPUs; {len(frame)} rows, batch size {args.batch_size}")
        print(f"  raw serving_default calls : {raw_s:7.2f}s  {len(frame) / raw_s:9.0f} rows/s")
        print(f"  batch job (CSV->JSONL)     : {job_s:7.2f}s  {len(frame) / job_s:9.0f} rows/s")
        share = raw_s / job_s
        print(
            f"  batch job throughput / raw : {share:.0%} (goal >= 50%: {'met' if share >= 0.5 else 'NOT met'})"
        )
        rest_s = job_s - load_s
        print(
            f"  (not the goal figure) job less one model load timed apart ({load_s:.2f}s): "
            f"{rest_s:.2f}s  {len(frame) / rest_s:.0f} rows/s, {raw_s / rest_s:.0%} of raw"
        )
        if hasattr(os, "getloadavg"):  # on a shared machine the figures move with the load
            print(f"  load average (1 min)       : {os.getloadavg()[0]:.2f}")
    sys.stdout.flush()
    os._exit(0)  # TFT/Beam can crash the interpreter at teardown; the figures are printed


if __name__ == "__main__":
    main()
