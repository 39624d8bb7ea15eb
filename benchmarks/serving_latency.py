"""Latency and throughput of the prediction server against the model call it wraps.

    .venv/bin/python benchmarks/serving_latency.py [MODEL_DIR] [--requests 300] [--clients 1 8]

Starts `python -m components.serving` on loopback (request log on, sample rate 1.0, as the default
config serves), sends 1-row requests from 1 and 8 concurrent clients (one keep-alive connection
each) and prints p50/p99 latency and throughput; then calls `serving_default` in-process on the
same rows (the floor: 1-row tensors built beforehand, outputs fetched to numpy) and prints the
server/floor ratio. Without MODEL_DIR a penguins model is trained first into a temporary dir.
Clients, server and floor share this machine's CPUs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HEALTH = "/health"
PREDICT = "/predict"


def _config(root: Path):
    from mlops.config import CONFIG_DIR, load_config

    config = load_config(CONFIG_DIR / "penguins.yaml")
    return config.model_copy(update={"local": config.local.model_copy(update={"root": str(root)})})


def _rows(config: Any, tmp: Path) -> Any:
    from components.ingest import run_ingest
    from mlops.artifacts import read_split

    run_ingest(config, tmp / "data")
    return read_split(tmp / "data", "test")


def _train(config: Any, tmp: Path) -> Path:
    from components.train import run_train
    from components.transform import run_transform

    started = time.perf_counter()
    run_transform(config, tmp / "data", tmp / "transform")
    run_train(config, tmp / "data", tmp / "transform", tmp / "model")
    print(f"trained a penguins model in {time.perf_counter() - started:.1f}s", flush=True)
    return tmp / "model"


def _instances(frame: Any, features: Any) -> list[dict[str, Any]]:
    import pandas as pd

    out = []
    for record in frame[features.raw_features].to_dict("records"):
        row = {}
        for name, value in record.items():
            if value is None or value is pd.NA or (isinstance(value, float) and value != value):
                row[name] = None
            elif name in features.numeric:
                row[name] = value.item() if hasattr(value, "item") else value
            else:
                row[name] = str(value)
        out.append(row)
    return out


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    import numpy as np

    ms = np.array(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(config: Any, model_dir: Path, tmp: Path) -> tuple[subprocess.Popen, int]:
    config_file = tmp / "serving-config.json"
    config_file.write_text(config.to_json())
    port = _free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    for name in ("AIP_HEALTH_ROUTE", "AIP_PREDICT_ROUTE", "AIP_STORAGE_URI"):
        env.pop(name, None)
    command = [
        sys.executable,
        "-m",
        "components.serving",
        "--config-json",
        str(config_file),
        "--model-dir",
        str(model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--request-log",
        str(tmp / "requests.jsonl"),
        "--log-level",
        "WARNING",
    ]
    output = open(tmp / "server.out", "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
    started = time.perf_counter()
    while time.perf_counter() - started < 180:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {(tmp / 'server.out').read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", HEALTH)
            if conn.getresponse().status == 200:
                print(f"server healthy after {time.perf_counter() - started:.1f}s", flush=True)
                return proc, port
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not become healthy in 180s")


def _load(port: int, bodies: list[bytes], requests: int, clients: int) -> dict[str, float]:
    per_client = requests // clients
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def client(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Content-Type": "application/json"}
        for i in range(5):  # connect and warm this connection up, untimed
            conn.request("POST", PREDICT, bodies[(offset + i) % len(bodies)], headers)
            conn.getresponse().read()
        mine = []
        barrier.wait()
        for i in range(per_client):
            body = bodies[(offset + i) % len(bodies)]
            t = time.perf_counter()
            conn.request("POST", PREDICT, body, headers)
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - t)
            if response.status != 200:
                with lock:
                    failures.append(str(response.status))
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(k * 7,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} requests failed: {failures[:5]}")
    p50, p99 = _percentiles(latencies)
    return {"p50": p50, "p99": p99, "rps": len(latencies) / wall, "n": len(latencies)}


def _floor(model_dir: Path, frame: Any, features: Any, requests: int) -> dict[str, float]:
    import tensorflow as tf

    from mlops.features import frame_to_arrays

    signature = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    rows = []
    for i in range(len(frame)):
        arrays = frame_to_arrays(frame.iloc[[i]], features)
        rows.append({name: tf.constant(values) for name, values in arrays.items()})
    for i in range(20):
        signature(**rows[i % len(rows)])
    latencies = []
    for i in range(requests):
        t = time.perf_counter()
        out = signature(**rows[i % len(rows)])
        {name: value.numpy() for name, value in out.items()}
        latencies.append(time.perf_counter() - t)
    p50, p99 = _percentiles(latencies)
    return {"p50": p50, "p99": p99}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir", nargs="?", help="penguins SavedModel (default: train one)")
    parser.add_argument("--requests", type=int, default=300, help="timed requests per setting")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        config = _config(tmp / "mlops-root")
        frame = _rows(config, tmp)
        model_dir = Path(args.model_dir) if args.model_dir else _train(config, tmp)
        bodies = [
            json.dumps({"instances": [row]}).encode() for row in _instances(frame, config.features)
        ]
        proc, port = _start_server(config, model_dir, tmp)
        try:
            results = {c: _load(port, bodies, args.requests, c) for c in args.clients}
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)
        floor = _floor(model_dir, frame, config.features, args.requests)

    print(
        f"\nmachine: {os.cpu_count()} CPUs; 1-row requests over keep-alive HTTP on loopback; "
        f"{len(bodies)} distinct test rows; server exit code after SIGTERM: {code}"
    )
    print(f"  {'setting':<28} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    for clients, r in results.items():
        label = f"server, {clients} client{'s' if clients > 1 else ''}"
        print(f"  {label:<28} {r['n']:>5} {r['p50']:>8.2f} {r['p99']:>8.2f} {r['rps']:>8.0f}")
    print(
        f"  {'floor: serving_default':<28} {args.requests:>5} {floor['p50']:>8.2f} "
        f"{floor['p99']:>8.2f} {1000 / floor['p50']:>8.0f}"
    )
    for clients, r in results.items():
        print(
            f"  server/floor, {clients} client(s): p50 {r['p50'] / floor['p50']:.1f}x, "
            f"p99 {r['p99'] / floor['p99']:.1f}x"
        )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # TFT/Beam ran in this process and can crash the interpreter at teardown


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
