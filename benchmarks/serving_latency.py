"""Latency, throughput and cold start of the prediction server, each next to its goal.

    .venv/bin/python benchmarks/serving_latency.py [MODEL_DIR] [--seconds 10] [--rates 200 500]

Starts `python -m mlops.serving` on loopback (request log on, sample rate 1.0, as the default
config serves) and times spawn -> first health 200 (cold start). Then offers 1-row requests
open loop (a fixed schedule, not waiting for answers; latency counts from the scheduled send
time, so a server that falls behind shows it) at each rate, over a pool of keep-alive
connections, and prints p50/p99, the rate actually served and the server's CPU time per
request (from /proc: steadier than latency on a shared machine). Then it sends 1000-instance
requests back to back and prints rows/s. Finally it calls `serving_default` in-process on the
same rows (1-row and 1000-row tensors built beforehand, outputs fetched to numpy): the floor
each server figure is divided by. Without MODEL_DIR a penguins model is trained first into a
temporary dir. The load generator, the server and the floor share this machine's CPUs; every
ratio compares figures measured in this one run.

Goals (issue "Speed and scale"): p99 <= 10 ms at 500 requests/s offered; p50 within 2x the
in-process call; cold start <= 10 s; many-instance requests approach batch throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HEALTH = "/health"
PREDICT = "/predict"
GOAL_P99_MS = 10.0
GOAL_P50_RATIO = 2.0
GOAL_COLD_START_S = 10.0
BATCH_ROWS = 1000
MAX_CONNECTIONS = 128


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


def _import_tensorflow_s() -> tuple[float, float]:
    """(seconds, CPU seconds) for a fresh interpreter to `import tensorflow`, for scale: what
    a server that imports TensorFlow as usual pays before it even loads a model."""
    import resource

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tensorflow"], env=env, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu


def _start_server(
    config: Any, model_dir: Path, tmp: Path
) -> tuple[subprocess.Popen, int, float, float]:
    """(process, port, seconds from spawn to the first health 200, CPU seconds it used)."""
    config_file = tmp / "serving-config.json"
    config_file.write_text(config.to_json())
    port = _free_port()
    env = dict(os.environ)
    for name in (
        "AIP_HEALTH_ROUTE",
        "AIP_PREDICT_ROUTE",
        "AIP_STORAGE_URI",
        "TF_CPP_MIN_LOG_LEVEL",
    ):
        env.pop(name, None)
    command = [
        sys.executable,
        "-m",
        "mlops.serving",
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
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
    while time.perf_counter() - started < 180:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {(tmp / 'server.out').read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", HEALTH)
            if conn.getresponse().status == 200:
                cold, cpu = time.perf_counter() - started, _cpu_s(proc.pid)
                print(f"server healthy {cold:.1f}s after spawn", flush=True)
                return proc, port, cold, cpu
        except OSError:
            pass
        time.sleep(0.02)
    proc.kill()
    raise SystemExit("server did not become healthy in 180s")


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _http_request(body: bytes) -> bytes:
    head = (
        f"POST {PREDICT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes):
    """Send one request, read one response: (status, keep the connection)."""
    writer.write(data)
    status = int((await reader.readline()).split()[1])
    length, keep = 0, True
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            keep = False
    await reader.readexactly(length)
    return status, keep


async def _open_loop(port: int, requests: list[bytes], rate: float, count: int) -> dict[str, Any]:
    """`count` requests at `rate`/s on a fixed schedule over at most MAX_CONNECTIONS keep-alive
    connections; latency runs from each request's scheduled time to its response's last byte."""
    loop = asyncio.get_running_loop()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    available = asyncio.Semaphore(MAX_CONNECTIONS)
    latencies: list[float] = []
    failures: list[str] = []
    done_at: list[float] = []
    for _ in range(16):  # connect beforehand, as a client with a connection pool would
        idle.append(await asyncio.open_connection("127.0.0.1", port))

    async def one(data: bytes, scheduled: float) -> None:
        async with available:
            conn = idle.pop() if idle else await asyncio.open_connection("127.0.0.1", port)
            try:
                status, keep = await _exchange(*conn, data)
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
                failures.append(type(exc).__name__)
                conn[1].close()
                return
            now = loop.time()
            latencies.append(now - scheduled)
            done_at.append(now)
            if status != 200:
                failures.append(str(status))
            if keep:
                idle.append(conn)
            else:
                conn[1].close()

    start = loop.time() + 0.05
    tasks = []
    for i in range(count):
        scheduled = start + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(requests[i % len(requests)], scheduled)))
    await asyncio.gather(*tasks)
    for _, writer in idle:
        writer.close()
    p50, p99 = _percentiles(latencies) if latencies else (float("nan"), float("nan"))
    served = len(latencies) / (max(done_at) - start) if done_at else 0.0
    return {"n": len(latencies), "p50": p50, "p99": p99, "served": served, "failures": failures}


def _load(pid: int, port: int, bodies: list[bytes], rate: float, seconds: float) -> dict[str, Any]:
    requests = [_http_request(body) for body in bodies]
    asyncio.run(_open_loop(port, requests, rate, max(1, int(rate))))  # 1 s warm-up, untimed
    server_cpu, client_cpu = _cpu_s(pid), time.process_time()
    result = asyncio.run(_open_loop(port, requests, rate, int(rate * seconds)))
    # CPU per request varies far less with the machine's other load than latency does.
    result["server_cpu_ms"] = (_cpu_s(pid) - server_cpu) * 1000 / max(1, result["n"])
    result["client_cpu_ms"] = (time.process_time() - client_cpu) * 1000 / max(1, result["n"])
    if result["failures"]:
        print(f"  {len(result['failures'])} failures at {rate:g}/s: {result['failures'][:5]}")
    return result


def _many(pid: int, port: int, body: bytes, requests: int) -> tuple[float, float]:
    """(rows/s, server CPU ms per 1000 rows) for `BATCH_ROWS`-instance requests sent back to
    back on one connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Content-Type": "application/json"}
    for _ in range(2):
        conn.request("POST", PREDICT, body, headers)
        conn.getresponse().read()
    started, cpu = time.perf_counter(), _cpu_s(pid)
    for _ in range(requests):
        conn.request("POST", PREDICT, body, headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"{BATCH_ROWS}-instance request failed: {response.status}")
    conn.close()
    rows_per_s = requests * BATCH_ROWS / (time.perf_counter() - started)
    return rows_per_s, (_cpu_s(pid) - cpu) * 1000 / (requests * BATCH_ROWS / 1000)


def _floor(model_dir: Path, frame: Any, features: Any, requests: int) -> dict[str, float]:
    """In-process `serving_default`: 1-row p50/p99 and 1000-row rows/s."""
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

    big = frame.iloc[[i % len(frame) for i in range(BATCH_ROWS)]]
    batch = {k: tf.constant(v) for k, v in frame_to_arrays(big, features).items()}
    for _ in range(2):
        signature(**batch)
    calls = 20
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        out = signature(**batch)
        {name: value.numpy() for name, value in out.items()}
    rows_per_s = calls * BATCH_ROWS / (time.perf_counter() - started)
    batch_cpu_ms = (time.process_time() - cpu) * 1000 / (calls * BATCH_ROWS / 1000)
    # CPU of a 1-row call, for comparison with the server's CPU per request.
    cpu = time.process_time()
    for i in range(requests):
        out = signature(**rows[i % len(rows)])
        {name: value.numpy() for name, value in out.items()}
    row_cpu_ms = (time.process_time() - cpu) * 1000 / requests
    return {
        "p50": p50,
        "p99": p99,
        "rows_per_s": rows_per_s,
        "batch_cpu_ms": batch_cpu_ms,
        "row_cpu_ms": row_cpu_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir", nargs="?", help="penguins SavedModel (default: train one)")
    parser.add_argument("--seconds", type=float, default=10, help="timed seconds per rate")
    parser.add_argument("--rates", type=float, nargs="+", default=[200, 500])
    parser.add_argument("--batch-requests", type=int, default=20)
    args = parser.parse_args()

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        config = _config(tmp / "mlops-root")
        frame = _rows(config, tmp)
        model_dir = Path(args.model_dir) if args.model_dir else _train(config, tmp)
        instances = _instances(frame, config.features)
        bodies = [json.dumps({"instances": [row]}).encode() for row in instances]
        big = [instances[i % len(instances)] for i in range(BATCH_ROWS)]
        big_body = json.dumps({"instances": big}).encode()
        import_tf, import_tf_cpu = _import_tensorflow_s()
        proc, port, cold, cold_cpu = _start_server(config, model_dir, tmp)
        try:
            results = {
                rate: _load(proc.pid, port, bodies, rate, args.seconds) for rate in args.rates
            }
            many, many_cpu = _many(proc.pid, port, big_body, args.batch_requests)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)
        floor = _floor(model_dir, frame, config.features, 1000)

    print(
        f"\nmachine: {os.cpu_count()} CPUs, shared by load generator, server and floor; "
        f"1-row requests open loop over keep-alive HTTP on loopback; {len(bodies)} distinct "
        f"test rows; server exit code after SIGTERM: {code}"
    )
    # Other processes on a shared machine move latency more than anything here: say how busy.
    print(
        "load average (1, 5, 15 min) before the run: {:.2f} {:.2f} {:.2f}; after: "
        "{:.2f} {:.2f} {:.2f}".format(*load_before, *os.getloadavg())
    )
    print(
        f"  {'setting':<34} {'n':>6} {'p50 ms':>8} {'p99 ms':>9} {'served/s':>9} "
        f"{'CPU ms/req':>11} {'client CPU':>11}"
    )
    for rate, r in results.items():
        label = f"server, {rate:g} req/s offered"
        print(
            f"  {label:<34} {r['n']:>6} {r['p50']:>8.2f} {r['p99']:>9.2f} {r['served']:>9.0f} "
            f"{r['server_cpu_ms']:>11.2f} {r['client_cpu_ms']:>11.2f}"
        )
    print(
        f"  {'in-process serving_default, 1 row':<34} {1000:>6} {floor['p50']:>8.2f} "
        f"{floor['p99']:>9.2f} {'':>9} {floor['row_cpu_ms']:>11.2f}"
    )
    print("\nagainst the goals (ratio <= 1 meets the goal):")
    for rate, r in results.items():
        print(
            f"  p99 at {rate:g} req/s: {r['p99']:.2f} ms / {GOAL_P99_MS:g} ms goal = "
            f"{r['p99'] / GOAL_P99_MS:.2f}; served {r['served']:.0f}/s of {rate:g}/s offered "
            f"({r['served'] / rate:.2f})"
        )
    for rate, r in results.items():
        ratio = r["p50"] / floor["p50"]
        print(
            f"  p50 at {rate:g} req/s / in-process p50: {r['p50']:.2f} / {floor['p50']:.2f} ms = "
            f"{ratio:.2f}x; / {GOAL_P50_RATIO:g}x goal = {ratio / GOAL_P50_RATIO:.2f}"
        )
    print(
        f"  cold start (spawn -> health 200): {cold:.1f} s / {GOAL_COLD_START_S:g} s goal = "
        f"{cold / GOAL_COLD_START_S:.2f}; {cold_cpu:.1f} CPU s (a bare `import tensorflow` took "
        f"{import_tf:.1f} s, {import_tf_cpu:.1f} CPU s)"
    )
    print(
        f"  {BATCH_ROWS}-instance requests: {many:.0f} rows/s / in-process {BATCH_ROWS}-row "
        f"batch {floor['rows_per_s']:.0f} rows/s = {many / floor['rows_per_s']:.2f}; CPU per "
        f"1000 rows {many_cpu:.1f} ms / {floor['batch_cpu_ms']:.1f} ms in-process"
    )
    print(
        "  (CPU ms/req: the server process's CPU per request, all threads; it varies less with "
        "the machine's other load than latency does)"
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # TFT/Beam ran in this process and can crash the interpreter at teardown


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
