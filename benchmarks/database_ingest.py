"""Ingest from a SQL database against ingest of the same rows from CSV.

    .venv/bin/python benchmarks/database_ingest.py [--rows 200000] [--batch-rows 50000]

Builds a taxi CSV of --rows rows (as benchmarks/ingest_stats.py does) and a SQLite file holding
the same rows (pandas `to_sql`: typed REAL/INTEGER/TEXT columns), then times `run_ingest` of each
in a fresh process (imports not counted) with configs/taxi.yaml, checks that both wrote the same
split contents, and prints seconds, rows/s, peak RSS and the ratio database/CSV
next to the goal (<= 2x: a database driver hands over Python objects per cell where the CSV
reader parses text in C). The figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.ingest_stats import TAXI_CONFIG, build_csv  # noqa: E402

GOAL_RATIO = 2.0


def _config(source: str, batch_rows: int):
    from mlops.config import load_config

    config = load_config(TAXI_CONFIG)
    database = {"table": "taxi", "batch_rows": batch_rows} if "://" in source else {}
    return config.with_overrides(data={**config.data.model_dump(), "source": source, **database})


def phase(source: str, batch_rows: int, out: Path) -> dict:
    config = _config(source, batch_rows)
    from components.ingest import run_ingest

    started = time.perf_counter()
    summary = run_ingest(config, out)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": summary["rows"]}


def run_phase(source: str, batch_rows: int, out: Path) -> dict:
    command = [sys.executable, __file__, "--phase", source, "--batch-rows", str(batch_rows)]
    output = subprocess.run(
        [*command, "--out", str(out)], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-rows", type=int, default=50_000)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        result = phase(args.phase, args.batch_rows, args.out)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        csv = tmp / "taxi.csv"
        size = build_csv(args.rows, csv)
        database = tmp / "taxi.db"
        with sqlite3.connect(database) as connection:
            # round_trip: pandas' default float parser can be an ulp off the CSV's text
            frame = pd.read_csv(csv, float_precision="round_trip")
            frame.to_sql("taxi", connection, index=False, chunksize=50_000)
        print(
            f"{args.rows} taxi rows ({size / 1e6:.0f} MB CSV, {database.stat().st_size / 1e6:.0f}"
            f" MB SQLite), batch_rows {args.batch_rows}, {os.cpu_count()} CPUs, load "
            f"{os.getloadavg()[0]:.1f} (on a shared machine the figures are noisy)"
        )
        results = {
            "csv": run_phase(str(csv), args.batch_rows, tmp / "from_csv"),
            "sqlite": run_phase(f"sqlite:///{database}", args.batch_rows, tmp / "from_sqlite"),
        }
        # The same rows and values; the files' bytes differ where row groups break differently.
        from mlops.artifacts import SPLITS, read_split

        same = all(
            read_split(tmp / "from_csv", split).equals(read_split(tmp / "from_sqlite", split))
            for split in SPLITS
        )
    for name, result in results.items():
        print(
            f"  ingest from {name:<7} {result['seconds']:6.1f} s  "
            f"{args.rows / result['seconds']:9,.0f} rows/s  peak RSS {result['peak_rss_mb']:5.0f} MB"
        )
    ratio = results["sqlite"]["seconds"] / results["csv"]["seconds"]
    verdict = "met" if ratio <= GOAL_RATIO else "NOT met"
    print(f"  SQLite / CSV {ratio:.2f}x, goal <= {GOAL_RATIO:.0f}x: {verdict}")
    print(f"  same split contents: {same} ({results['sqlite']['rows']})")


if __name__ == "__main__":
    main()
