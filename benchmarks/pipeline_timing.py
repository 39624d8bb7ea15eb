"""Time the training pipeline per step and in total: through KFP (kfp.local; each task in a fork
of the run's warm worker, pipelines/warm_worker.py) and as the same plain functions called in one
process, and print the ratio next to the goals (penguins: at most 60 s, at most 1.5x the plain
functions). `--subprocess` also times kfp.local's own launch, a fresh interpreter per task.

    .venv/bin/python benchmarks/pipeline_timing.py [penguins taxi] [--subprocess]

Each variant runs in a fresh process with its own temporary registry, so each pays its imports.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _config(name: str, root: Path):
    from mlops.config import CONFIG_DIR, load_config

    config = load_config(CONFIG_DIR / f"{name}.yaml")
    return config.model_copy(update={"local": config.local.model_copy(update={"root": str(root)})})


GOAL_WALL_S = {"penguins": 60.0}
GOAL_RATIO = 1.5


def run_kfp(name: str, root: Path, warm_worker: bool = True) -> dict:
    from pipelines.local import run_training_locally

    started = time.perf_counter()
    result = run_training_locally(_config(name, root), warm_worker=warm_worker)
    wall = time.perf_counter() - started
    steps = {step: info.get("duration_s") for step, info in result.manifest["steps"].items()}
    return {
        "wall_s": wall,
        "steps": steps,
        "status": result.manifest["status"],
        "metrics": result.manifest["metrics"],
    }


def run_in_process(name: str, root: Path) -> dict:
    """The same step functions, one process, no KFP (imports counted inside the steps)."""
    started = time.perf_counter()
    from components.evaluate import run_evaluate
    from components.explain import run_explain
    from components.find_champion import find_champion_local
    from components.ingest import run_ingest
    from components.register import run_register_local
    from components.report import run_report
    from components.train import run_train
    from components.transform import run_transform
    from components.validate import run_data_validation

    config = _config(name, root)
    out = root / "in-process"
    timings: dict[str, float] = {}

    def timed(step: str, func, *args):
        t = time.perf_counter()
        result = func(*args)
        timings[step] = round(time.perf_counter() - t, 2)
        return result

    timed("ingest", run_ingest, config, out / "data")
    timed(
        "validate_data",
        run_data_validation,
        config,
        out / "data",
        out / "stats",
        out / "schema",
        out / "anomalies",
    )
    timed("transform", run_transform, config, out / "data", out / "transform")
    timed("train", run_train, config, out / "data", out / "transform", out / "model", out / "logs")
    baseline = find_champion_local(config) or None
    evaluation = timed(
        "evaluate", run_evaluate, config, out / "data", out / "model", out / "evaluation", baseline
    )
    timed("explain", run_explain, config, out / "data", out / "model", out / "explanation")
    timed("register", run_register_local, config, out / "model", out / "evaluation", "bench")
    timed(
        "report",
        run_report,
        config,
        out / "stats",
        out / "anomalies",
        out / "model",
        out / "evaluation",
        out / "explanation",
        out / "report.html",
    )
    return {
        "wall_s": time.perf_counter() - started,
        "steps": timings,
        "metrics": evaluation["metrics"]["overall"],
    }


def _child(variant: str, name: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        completed = subprocess.run(
            [sys.executable, __file__, "--child", variant, name, tmp],
            capture_output=True,
            text=True,
            check=False,
        )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    if completed.returncode not in (0,) or not lines:
        sys.stderr.write(completed.stdout[-3000:] + completed.stderr[-3000:])
        raise SystemExit(f"{variant} run of {name} failed (exit {completed.returncode})")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("configs", nargs="*", default=["penguins", "taxi"])
    parser.add_argument(
        "--subprocess",
        action="store_true",
        help="also time kfp.local's own launch (a fresh interpreter per task, no warm worker)",
    )
    parser.add_argument(
        "--child", nargs=3, metavar=("VARIANT", "CONFIG", "ROOT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        variant, name, root = args.child
        if variant == "in-process":
            result = run_in_process(name, Path(root))
        else:
            result = run_kfp(name, Path(root), warm_worker=variant == "kfp")
        print("RESULT " + json.dumps(result), flush=True)
        os._exit(0)  # TFT/Beam can crash the interpreter at teardown; the result is printed

    from pipelines.local import STEP_ORDERS  # the training steps, in the order they run

    print(f"machine: {os.cpu_count()} CPUs; each variant in a fresh process")
    print(f"load average before: {_loadavg()}\n")
    for name in args.configs:
        kfp = _child("kfp", name)
        plain = _child("in-process", name)
        subprocesses = _child("kfp-subprocess", name) if args.subprocess else None
        metrics = json.dumps({k: round(v, 4) for k, v in kfp["metrics"].items()})
        print(f"== {name} ({kfp['status']}; test metrics {metrics})")
        columns = [("kfp.local s", kfp), ("in-process s", plain)]
        if subprocesses:
            columns.append(("no warm worker s", subprocesses))
        print(f"  {'step':<14}" + "".join(f" {title:>16}" for title, _ in columns))
        for step in STEP_ORDERS["training"]:
            print(
                f"  {step:<14}"
                + "".join(f" {variant['steps'].get(step) or 0:>16.1f}" for _, variant in columns)
            )
        sums = [sum(v or 0 for v in variant["steps"].values()) for _, variant in columns]
        print(f"  {'sum of steps':<14}" + "".join(f" {value:>16.1f}" for value in sums))
        print(
            f"  {'total wall':<14}"
            + "".join(f" {variant['wall_s']:>16.1f}" for _, variant in columns)
        )
        ratio = kfp["wall_s"] / plain["wall_s"]
        print(
            f"  KFP / in-process wall ratio: {ratio:.2f} (goal <= {GOAL_RATIO}: "
            f"{ratio / GOAL_RATIO:.2f} of it)"
        )
        if name in GOAL_WALL_S:
            goal = GOAL_WALL_S[name]
            print(
                f"  KFP wall: {kfp['wall_s']:.1f}s (goal <= {goal:.0f}s: "
                f"{kfp['wall_s'] / goal:.2f} of it)"
            )
        if subprocesses:
            print(
                f"  no warm worker / warm worker wall: {subprocesses['wall_s'] / kfp['wall_s']:.2f}"
            )
        print(
            f"  (kfp.local wall outside its steps: {kfp['wall_s'] - sums[0]:.1f}s: the worker's "
            f"imports, kfp's orchestration; steps started beside the imports overlap them)"
        )
        print(f"  load average after: {_loadavg()}\n")


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "unknown"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
