"""Ingest plus statistics and validation at scale, against reading the same CSV with pyarrow.

    .venv/bin/python benchmarks/ingest_stats.py [--rows 1000000]

Builds a taxi CSV of --rows rows in a temporary directory by repeating data/chicago_taxi rows
(each copy shifted later in time and its fares by a cent, so copies are distinct rows that the
time split keeps together), then times, each in a fresh process so that neither pays the other's
imports or memory: `pyarrow.csv.read_csv` of the file; our ingest (`run_ingest`, streaming the
CSV in record batches); our statistics and validation (`run_data_validation`: the sketches
in-process locally, on Beam when the config's runner is Dataflow, plus the readiness checks);
the Beam ingest that runs on Dataflow (`run_ingest_beam`) on the local FnApiRunner, as a ratio
to the in-process ingest.
Prints each figure, the ratio to the pyarrow read, the goal (<= 3x), each process's peak RSS and
the machine's load average. Import time is not counted. The figures depend on the machine and
its load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TAXI_CSV = ROOT / "data" / "chicago_taxi" / "big_tipper.csv"
TAXI_CONFIG = ROOT / "configs" / "taxi.yaml"
GOAL_RATIO = 3.0


def build_csv(rows: int, path: Path) -> int:
    """Repeat the taxi rows to `rows`; returns the file size in bytes."""
    import pandas as pd

    taxi = pd.read_csv(TAXI_CSV)
    span = int(taxi["trip_start_timestamp"].max() - taxi["trip_start_timestamp"].min()) + 1
    copies = []
    for copy in range(rows // len(taxi) + 1):
        part = taxi.copy()
        part["trip_start_timestamp"] += copy * span
        part["fare"] = (part["fare"] + copy * 0.01).round(2)
        copies.append(part)
    pd.concat(copies, ignore_index=True).head(rows).to_csv(path, index=False)
    return path.stat().st_size


def _config(source: Path):
    from mlops.config import load_config

    config = load_config(TAXI_CONFIG)
    data = config.data.model_copy(update={"source": str(source)})
    return config.model_copy(update={"data": data})


def phase(name: str, source: Path, work: Path) -> dict:
    """Run one measured phase in this process; returns seconds and what it produced."""
    if name == "pyarrow":
        import pyarrow.csv

        started = time.perf_counter()
        table = pyarrow.csv.read_csv(source)
        return {"seconds": time.perf_counter() - started, "rows": table.num_rows}
    config = _config(source)
    if name == "ingest":
        from components.ingest import run_ingest

        started = time.perf_counter()
        summary = run_ingest(config, work / "dataset")
        return {"seconds": time.perf_counter() - started, "rows": summary["rows"]}
    if name == "ingest_beam":  # the Beam ingest (Dataflow's) on the local FnApiRunner
        from components.ingest_beam import run_ingest_beam

        config = config.model_copy(update={"beam_args": ["--runner=FnApiRunner"]})
        started = time.perf_counter()
        summary = run_ingest_beam(config, work / "dataset-beam")
        return {"seconds": time.perf_counter() - started, "rows": summary["rows"]}
    if name == "validate":
        import apache_beam  # noqa: F401  (imported before timing, as the others' libraries)

        from components.validate import DataValidationError, run_data_validation

        started = time.perf_counter()
        outcome = "passed"
        try:
            run_data_validation(
                config,
                work / "dataset",
                work / "statistics",
                work / "schema",
                work / "anomalies",
            )
        except DataValidationError as exc:  # the work is done; say what it found
            outcome = "blocked: " + str(exc).splitlines()[1].strip()
        return {"seconds": time.perf_counter() - started, "outcome": outcome}
    raise ValueError(f"unknown phase {name!r}")


def run_phase(name: str, source: Path, work: Path) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--phase", name, "--source", str(source), "--work", str(work)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        result = phase(args.phase, args.source, args.work)
        # ru_maxrss is in KiB on Linux.
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        source = tmp / "taxi.csv"
        size = build_csv(args.rows, source)
        print(
            f"{args.rows} taxi rows, {size / 1e6:.0f} MB CSV, {os.cpu_count()} CPUs "
            "(on a shared machine the figures are noisy)"
        )
        before = os.getloadavg()[0]
        phases = ("pyarrow", "ingest", "validate", "ingest_beam")
        results = {name: run_phase(name, source, tmp) for name in phases}
        print(f"  load average (1 min) {before:.1f} before, {os.getloadavg()[0]:.1f} after")
    base = results["pyarrow"]["seconds"]
    for name, label in (
        ("pyarrow", "pyarrow.csv.read_csv"),
        ("ingest", "ingest (run_ingest)"),
        ("validate", "statistics + validation"),
        ("ingest_beam", "ingest on Beam (FnApiRunner)"),
    ):
        result = results[name]
        print(
            f"  {label:<30} {result['seconds']:7.1f} s  {result['seconds'] / base:5.1f}x  "
            f"peak RSS {result['peak_rss_mb']:6.0f} MB"
        )
    beam = results["ingest_beam"]["seconds"] / results["ingest"]["seconds"]
    print(
        f"  ingest on Beam {beam:.1f}x the in-process ingest (one process each; Dataflow adds workers)"
    )
    total = results["ingest"]["seconds"] + results["validate"]["seconds"]
    ratio = total / base
    verdict = "met" if ratio <= GOAL_RATIO else "NOT met"
    print(f"  ingest + statistics + validation {total:.1f} s = {ratio:.1f}x the pyarrow read")
    print(f"  goal <= {GOAL_RATIO:.0f}x: {verdict}; validation {results['validate']['outcome']}")


if __name__ == "__main__":
    main()
