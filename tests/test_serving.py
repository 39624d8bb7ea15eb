"""Online prediction server: request validation (in-process, no TF), a real server process on
loopback configured through Vertex's AIP_* variables, traffic split and request logging."""

from __future__ import annotations

import http.client
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops.config import FeatureConfig, PipelineConfig
from mlops.features import frame_to_arrays
from mlops.serving.request import RequestError, parse_request
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[1]
HEALTH_ROUTE = "/v1/models/penguins/health"
PREDICT_ROUTE = "/v1/models/penguins:predict"
DEPLOYED_ID = "7"
MAX_INSTANCES = 20
MAX_BODY = 64 * 1024

FEATURES = FeatureConfig(
    numeric=["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"],
    categorical=["island", "sex"],
)
GOOD = {
    "bill_length_mm": 39.1,
    "bill_depth_mm": 18.7,
    "flipper_length_mm": 181,
    "body_mass_g": 3750,
    "year": 2007,
    "island": "Torgersen",
    "sex": "male",
}
ALL_NULL = dict.fromkeys(GOOD)


def _body(instances: list[Any], **extra: Any) -> bytes:
    return json.dumps({"instances": instances, **extra}).encode()


def _with(index: int, count: int = 4, **changes: Any) -> bytes:
    """`count` good instances, the one at `index` changed (a value of ... removes the key)."""
    rows = [dict(GOOD) for _ in range(count)]
    for key, value in changes.items():
        if value is ...:
            del rows[index][key]
        else:
            rows[index][key] = value
    return _body(rows)


def _instances(frame: pd.DataFrame, features: FeatureConfig) -> list[dict[str, Any]]:
    """Rows as a client would send them: JSON values, null for missing."""
    out = []
    for record in frame[features.raw_features].to_dict("records"):
        row = {}
        for name, value in record.items():
            if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
                row[name] = None
            elif name in features.numeric:
                row[name] = value.item() if hasattr(value, "item") else value
            else:
                row[name] = str(value)
        out.append(row)
    return out


# ---------------------------------------------------------------------------------------------
# Validation, in-process (no TensorFlow)


def test_parse_request_builds_raw_feature_arrays_like_frame_to_arrays() -> None:
    rows = [GOOD, ALL_NULL, {**GOOD, "island": 8, "body_mass_g": 4000.5}]
    instances, arrays = parse_request(
        _body(rows, parameters={"x": 1}), "application/json; charset=utf-8", FEATURES, 10
    )
    assert instances == rows
    expected = frame_to_arrays(pd.DataFrame(rows), FEATURES)
    assert set(arrays) == set(expected)
    for name in FEATURES.numeric:
        assert arrays[name].dtype == np.float32
        np.testing.assert_array_equal(arrays[name], expected[name])
    for name in FEATURES.categorical:
        assert arrays[name].tolist() == expected[name].tolist()
    assert arrays["island"].tolist() == ["Torgersen", "", "8"]
    assert math.isnan(arrays["body_mass_g"][1])


def test_parse_request_accepts_a_missing_content_type_and_rejects_others() -> None:
    parse_request(_body([GOOD]), None, FEATURES, 1)
    with pytest.raises(RequestError) as info:
        parse_request(_body([GOOD]), "text/csv", FEATURES, 1)
    assert info.value.status == 415 and "application/json" in info.value.message


def test_categories_take_integers_only_where_training_saw_integers() -> None:
    types = {"island": "string", "sex": "integer"}
    rows = [GOOD, {**GOOD, "sex": 2}, {**GOOD, "island": 12345}]
    with pytest.raises(RequestError) as info:
        parse_request(_body(rows), None, FEATURES, 10, types)
    assert info.value.status == 400
    assert info.value.message.startswith("instances[2].island: expected a string or null")
    assert info.value.message.endswith("got number 12345")

    _, arrays = parse_request(_body(rows[:2]), None, FEATURES, 10, types)
    assert arrays["sex"].tolist() == ["male", "2"]  # integer-coded: 2 is the category "2"
    # A model trained before the types were recorded keeps accepting integers.
    _, arrays = parse_request(_body(rows), None, FEATURES, 10, {})
    assert arrays["island"].tolist() == ["Torgersen", "Torgersen", "12345"]


def test_request_schema_joins_the_served_versions_types() -> None:
    from types import SimpleNamespace

    from mlops.serving.server import request_schema_for

    old = SimpleNamespace(categorical_types={})
    new = SimpleNamespace(categorical_types={"island": "string", "sex": "integer"})
    assert request_schema_for(FEATURES, [old]).text_only == frozenset()
    assert request_schema_for(FEATURES, [old, new]).text_only == {"island"}
    recoded = SimpleNamespace(categorical_types={"island": "integer", "sex": "string"})
    assert request_schema_for(FEATURES, [new, recoded]).text_only == {"island", "sex"}


def test_column_conversion_matches_the_per_instance_conversion() -> None:
    """parse_request builds arrays a column at a time; batch prediction converts per instance
    (`instances_to_arrays`). Both must give the model the same inputs."""
    import random

    from mlops.serving.request import instances_to_arrays

    rng = random.Random(0)
    numbers = [None, 0, -3, 2.5, 181, 1e-40, 3.4e38, 10**20, 16777217]
    categories = [None, "", "Dream", "é", 7, -1]
    for _ in range(300):
        rows = [
            {
                **{name: rng.choice(numbers) for name in FEATURES.numeric},
                **{name: rng.choice(categories) for name in FEATURES.categorical},
            }
            for _ in range(rng.randint(1, 6))
        ]
        _, arrays = parse_request(_body(rows), None, FEATURES, 10)
        expected = instances_to_arrays(rows, FEATURES)
        for name, values in expected.items():
            assert arrays[name].dtype == values.dtype
            np.testing.assert_array_equal(arrays[name], values)


def _json_reference(body: bytes) -> Any:
    """What the strict json path reads (duplicate keys refused), or the RequestError's text."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({key for key, _ in pairs}) != len(pairs):
            raise ValueError("duplicate")
        return dict(pairs)

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(body.decode("utf-8"), object_pairs_hook=unique, parse_constant=refuse)
    except ValueError:
        return "error"


def test_fast_json_reads_exactly_what_json_reads() -> None:
    """parse_json reads bodies with orjson only where json would read the same values (ints stay
    ints, no duplicate key slips through); the rest, errors included, take the json path."""
    import random

    from mlops.serving.request import _parse_fast, parse_json

    def parsed(body: bytes) -> Any:
        try:
            return parse_json(body)
        except RequestError as exc:
            return "error" if exc.status == 400 else exc

    rng = random.Random(1)
    numbers = [repr(rng.uniform(-1e6, 1e6)) for _ in range(200)]
    numbers += [repr(rng.random() * 10 ** rng.randint(-40, 38)) for _ in range(200)]
    numbers += [str(rng.randint(-(10**18) + 1, 10**18 - 1)) for _ in range(100)]
    numbers += [f"{rng.randint(1, 99999)}e{rng.randint(-30, 30)}" for _ in range(100)]
    numbers += ["-0", "-0.0", "1E+2", "0.1", "999999999999999999", "1.0000000000000000000001"]
    fast = [f'{{"instances": [{{"a": {n}, "b": "x"}}], "parameters": {{}}}}' for n in numbers]
    fast += ['{"instances": [{"a": "\\ud83d\\ude00", "b": null}]}', "[1, 2]", '"x"', "3"]
    # Long runs of digits in floats: both read the same double.
    fast += ['{"a": 123456789012345678901234567890.5, "b": 1234567890123456789012e-3}']
    fast += ['{"a": 0.0000000000000000000000001, "b": 1.0000000000000000000001}']
    slow = [
        '{"instances": [{"a": 1, "a": 2}]}',  # a duplicate: json's 400
        '{"instances": [], "instances": [1]}',
        '{"parameters": {"p": {"q": 1, "q": 2}}, "instances": []}',  # deeper: the json path
        '{"instances": [{"a": {"b": 1, "b": 2}}]}',
        '{"instances": [{"a": "10:30"}]}',  # a colon inside a string: the json path, same value
        '{"instances": [{"a": "4111111111111111111"}]}',  # so are 19 digits in a string
        '{"instances": [{"a": 18446744073709551616, "b": -9223372036854775809}]}',
        '{"instances": [{"a": 1000000000000000000}]}',  # 19 digits: the json path, same int
        '{"instances": [{"a": 1e400, "b": "\\ud800"}]}',
        '{"instances": [{"a": ' + "9" * 400 + "}]}",
        '\ufeff{"instances": []}',
        '{"instances": [{"a": NaN}]}',
        '{"instances": [1,]}',
        "   ",
    ]
    for text in fast + slow:
        body = text.encode("utf-8")
        expected, got = _json_reference(body), parsed(body)
        assert repr(got) == repr(expected), text  # repr: 1 and 1.0 differ
        assert _parse_fast(body)[0] == (text in fast), text
    with pytest.raises(RequestError, match="duplicate key 'a'"):
        parse_json(slow[0].encode())


def test_predictions_are_encoded_column_wise_as_the_per_row_dicts_were() -> None:
    """encode_predictions writes, byte for byte, what orjson wrote for the per-row dicts of
    LoadedModel.predict after abstain: labels, class names that need escaping or hold '%',
    probabilities of 0 and 1, abstentions with and without a fallback, repeated class names."""
    import random

    import orjson

    from mlops.serving.server import abstain, encode_predictions

    rng = np.random.default_rng(0)
    pick = random.Random(0)
    for trial in range(200):
        rows, width = int(rng.integers(1, 30)), int(rng.integers(1, 5))
        names = [
            pick.choice(["Adelie", 'Chin"strap', "Gé%ntoo", "a\\b", "x\u2028"]) + str(i)
            for i in range(width)
        ]
        if trial % 10 == 0:
            names[0] = names[-1]
        probabilities = rng.dirichlet(np.ones(width), size=rows).astype(np.float32)
        probabilities[0, 0] = 1.0 if trial % 3 == 0 else 1e-8
        labels = [pick.choice(names).encode() for _ in range(rows)]
        outputs = {
            "probabilities": probabilities,
            "predicted_label": np.array(labels, dtype=object),
            "classes": np.array([[name.encode() for name in names]] * rows, dtype=object),
        }
        confidence, fallback = pick.choice([0.0, 0.5, 0.8, 0.99]), pick.choice([None, "ask"])
        per_row = [
            {"label": label.decode(), "probabilities": dict(zip(names, row, strict=True))}
            for label, row in zip(labels, probabilities.tolist(), strict=True)
        ]
        expected = orjson.dumps(abstain(per_row, confidence, fallback))
        assert encode_predictions(outputs, confidence, fallback) == expected
    outputs["probabilities"] = np.full_like(outputs["probabilities"], np.nan)
    with pytest.raises(ValueError, match="non-finite"):
        encode_predictions(outputs, 0.0, None)


def test_model_outputs_slice_by_rows() -> None:
    from mlops.serving.server import ModelOutputs

    outputs = ModelOutputs({"probabilities": np.eye(4), "predicted_label": np.arange(4)})
    assert len(outputs) == 4
    part = outputs[1:3]
    assert len(part) == 2 and part.arrays["predicted_label"].tolist() == [1, 2]
    np.testing.assert_array_equal(part.arrays["probabilities"], np.eye(4)[1:3])


def test_request_log_keeps_instances_as_sent_only_when_redaction_changes_nothing(
    penguins_config, tmp_path
) -> None:
    """A clean request is logged as received without a dict per instance; personal data or a
    privacy policy on a feature takes the redactor's per-instance path. Either way the log
    holds exactly what the redactor makes of each instance."""
    from mlops.privacy import LogRedactor
    from mlops.serving.server import PredictionService

    features = penguins_config.features
    clean = [GOOD, ALL_NULL, {**GOOD, "island": "Dream"}]
    personal = [GOOD, {**GOOD, "island": "call +44 20 7946 0958", "sex": "jo@example.com"}]
    privacy = penguins_config.privacy.model_copy(update={"columns": {"island": "block"}})
    for config, rows, as_sent in [
        (penguins_config, clean, True),
        (penguins_config, personal, False),
        (penguins_config.model_copy(update={"privacy": privacy}), clean, False),
    ]:
        log = tmp_path / f"log-{len(rows)}-{as_sent}.jsonl"
        service = PredictionService({"1": "/m"}, {"1": 100}, config, log, seed=0)
        _, arrays = parse_request(_body(rows), None, features, 10)
        assert service._redaction_changes_nothing(arrays) is as_sent
        service._maybe_log("r", "1", rows, b"[]", arrays)
        service.close()
        logged = json.loads(log.read_text())["instances"]
        redactor = LogRedactor(config.privacy, salt="")
        assert logged == [redactor.instance(row) for row in rows]
        assert (logged == rows) is as_sent


def test_request_headers_are_read_as_http_client_reads_them() -> None:
    """The server reads plain header lines itself; the message it builds holds what
    http.client.parse_headers (email's parser) makes of the same lines, odd ones included."""
    import io

    from mlops.serving.server import _read_headers

    blocks = [
        b"Host: a\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n",
        b"host:a\nCONTENT-length:  \t 7 \r\nX-Empty:\r\nX-Dup: 1\r\nX-Dup: 2\r\n\n",
        b"X-Folded: a\r\n  b\r\nHost: h\r\n\r\n",  # folding: email's parser
        b"X-Odd: a\rb\r\nHost: h\r\n\r\n",  # a stray CR: email's parser
        b"From someone\r\nHost: h\r\n\r\n",
        b"Bad Name: x\r\nHost: h\r\n\r\n",
        b": no name\r\nHost: h\r\n\r\n",
        b"X-Latin: caf\xe9\r\n\r\n",
        b"\r\n",
        b"Host: cut short",
    ]
    for block in blocks:
        ours = _read_headers(io.BytesIO(block), http.client.HTTPMessage)
        theirs = http.client.parse_headers(io.BytesIO(block))
        assert ours.items() == theirs.items(), block
        assert ours.get("content-length") == theirs.get("content-length")
    with pytest.raises(http.client.HTTPException, match="got more than 100 headers"):
        _read_headers(io.BytesIO(b"X: 1\r\n" * 101 + b"\r\n"), http.client.HTTPMessage)
    with pytest.raises(http.client.LineTooLong):
        _read_headers(io.BytesIO(b"X: " + b"y" * 70000 + b"\r\n\r\n"), http.client.HTTPMessage)


def test_micro_batcher_runs_concurrent_calls_as_one_model_call() -> None:
    from mlops.serving.server import MicroBatcher

    calls: list[int] = []
    started = threading.Event()
    release = threading.Event()

    def run(arrays):
        calls.append(len(arrays["x"]))
        if len(calls) == 1:
            started.set()
            release.wait(10)
        if (arrays["x"] < 0).any():
            raise RuntimeError("negative")
        return [float(v) * 10 for v in arrays["x"]]

    batcher = MicroBatcher(run, max_rows=5)
    results: dict[int, Any] = {}

    def call(key: int, values: list[float]) -> None:
        try:
            results[key] = batcher({"x": np.array(values, np.float32)}, len(values))
        except RuntimeError as exc:
            results[key] = str(exc)

    first = threading.Thread(target=call, args=(0, [1.0]))
    first.start()
    assert started.wait(10)
    # While the model runs, three callers queue; the next call takes the first two (4 rows),
    # as 3 more would pass max_rows=5.
    queued = [
        threading.Thread(target=call, args=(1, [2.0, 3.0])),
        threading.Thread(target=call, args=(2, [4.0, 5.0])),
        threading.Thread(target=call, args=(3, [6.0, 7.0, 8.0])),
    ]
    for thread in queued:
        thread.start()
        time.sleep(0.1)  # queue in this order
    release.set()
    for thread in [first, *queued]:
        thread.join(10)
    assert calls == [1, 4, 3]
    assert results == {0: [10.0], 1: [20.0, 30.0], 2: [40.0, 50.0], 3: [60.0, 70.0, 80.0]}

    # A failing model call fails its request, and the batcher keeps working.
    assert batcher({"x": np.array([1.0], np.float32)}, 1) == [10.0]
    with pytest.raises(RuntimeError, match="negative"):
        batcher({"x": np.array([-1.0], np.float32)}, 1)
    assert batcher({"x": np.array([2.0], np.float32)}, 1) == [20.0]

    # A request whose rows fail a merged call fails alone: the others are retried on their own.
    calls.clear()
    started.clear()
    release.clear()
    results.clear()
    first = threading.Thread(target=call, args=(0, [1.0]))
    first.start()
    assert started.wait(10)
    queued = [
        threading.Thread(target=call, args=(1, [2.0])),
        threading.Thread(target=call, args=(2, [-3.0])),
        threading.Thread(target=call, args=(3, [4.0])),
    ]
    for thread in queued:
        thread.start()
        time.sleep(0.1)
    release.set()
    for thread in [first, *queued]:
        thread.join(10)
    assert calls == [1, 3, 1, 1, 1]
    assert results == {0: [10.0], 1: [20.0], 2: "negative", 3: [40.0]}


# ---------------------------------------------------------------------------------------------
# A real server process, configured as Vertex configures a custom container


def _request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    content_length: bool = True,
    timeout: float = 30,
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """(status, headers, JSON body); `content_length=False` omits the header entirely."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        headers = {"Content-Type": "application/json", **(headers or {})}
        for name, value in headers.items():
            if value is not None:
                conn.putheader(name, value)
        if body is not None and content_length and "Content-Length" not in headers:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
        return response.status, dict(response.getheaders()), json.loads(data) if data else {}
    finally:
        conn.close()


class Server:
    def __init__(self, proc: subprocess.Popen, port: int, log: Path, output: Path) -> None:
        self.proc, self.port, self.log, self.output = proc, port, log, output
        self.health_seen: list[int | str] = []

    def tail(self) -> str:
        return self.output.read_text(errors="replace")[-3000:]

    def predict(self, body: bytes, **kwargs: Any) -> tuple[int, dict[str, str], dict[str, Any]]:
        return _request(self.port, "POST", PREDICT_ROUTE, body, **kwargs)


@pytest.fixture(scope="module")
def server(penguins_chain, tmp_path_factory):
    config, paths, _ = penguins_chain
    tmp = tmp_path_factory.mktemp("serving")
    serving = config.serving.model_copy(
        update={
            "max_instances": MAX_INSTANCES,
            "max_body_bytes": MAX_BODY,
            "request_log_sample_rate": 1.0,
        }
    )
    config_file = tmp / "config.json"
    config_file.write_text(config.model_copy(update={"serving": serving}).to_json())
    port = free_port()
    env = {
        **os.environ,
        "AIP_HTTP_PORT": str(port),
        "AIP_HEALTH_ROUTE": HEALTH_ROUTE,
        "AIP_PREDICT_ROUTE": PREDICT_ROUTE,
        "AIP_STORAGE_URI": str(paths["model"]),
        "AIP_DEPLOYED_MODEL_ID": DEPLOYED_ID,
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    log, output = tmp / "requests.jsonl", tmp / "server.out"
    command = [
        sys.executable,
        "-m",
        "mlops.serving",
        "--config-json",
        str(config_file),
        "--host",
        "127.0.0.1",
        "--request-log",
        str(log),
        "--seed",
        "0",
    ]
    with open(output, "wb") as sink:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
    srv = Server(proc, port, log, output)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, f"server exited with {proc.returncode}:\n{srv.tail()}"
            assert time.monotonic() < deadline, f"server never became healthy:\n{srv.tail()}"
            try:
                status, _, _ = _request(port, "GET", HEALTH_ROUTE, timeout=5)
            except OSError:
                status = "refused"
            if not srv.health_seen or srv.health_seen[-1] != status:
                srv.health_seen.append(status)
            if status == 200:
                break
            time.sleep(0.05)
        yield srv
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_health_is_503_while_loading_then_200(server) -> None:
    # The server binds before TensorFlow is even imported, so loading takes seconds to observe.
    assert 503 in server.health_seen, server.health_seen
    assert server.health_seen[-1] == 200
    assert server.health_seen.index(503) < server.health_seen.index(200)
    status, _, body = _request(server.port, "GET", HEALTH_ROUTE)
    assert status == 200 and body["status"] == "ready"
    assert body["traffic"] == {DEPLOYED_ID: 100}


def test_predictions_equal_the_in_process_serving_signature(server, penguins_chain) -> None:
    import tensorflow as tf

    from mlops.artifacts import read_split

    config, paths, _ = penguins_chain
    frame = read_split(paths["data"], "test").head(15)
    instances = _instances(frame, config.features)
    assert any(v is None for row in instances for v in row.values())  # some rows lack values

    status, headers, body = server.predict(_body(instances))
    assert status == 200, body
    assert headers["X-Model-Version"] == body["model_version"] == DEPLOYED_ID
    assert headers["X-Request-Id"] == body["request_id"] and len(body["request_id"]) == 32

    signature = tf.saved_model.load(str(paths["model"])).signatures["serving_default"]
    arrays = frame_to_arrays(frame, config.features)
    out = signature(**{name: tf.constant(values) for name, values in arrays.items()})
    classes = [c.decode() for c in out["classes"].numpy()[0]]
    labels = [label.decode() for label in out["predicted_label"].numpy()]
    probabilities = out["probabilities"].numpy()
    assert len(body["predictions"]) == len(frame)
    for i, prediction in enumerate(body["predictions"]):
        assert prediction["label"] == labels[i]
        assert list(prediction["probabilities"]) == classes
        for k, name in enumerate(classes):
            assert abs(prediction["probabilities"][name] - float(probabilities[i, k])) <= 1e-6


def test_flat_signature_call_gives_the_keyword_calls_outputs(penguins_chain) -> None:
    from mlops.artifacts import read_split
    from mlops.serving.server import load_model

    config, paths, _ = penguins_chain
    model = load_model(paths["model"])
    assert model.enable_flat_call()  # this TensorFlow has the entry point, and it agrees
    arrays = frame_to_arrays(read_split(paths["data"], "test").head(20), config.features)
    flat = model.predict_raw(arrays)
    model._flat_inputs = None
    keywords = model.predict_raw(arrays)
    assert set(flat) == set(keywords)
    for name, values in keywords.items():
        np.testing.assert_array_equal(flat[name], values)


def test_training_records_each_categorical_features_raw_type(penguins_chain) -> None:
    from components.train import categorical_types
    from mlops.artifacts import read_model_info

    config, paths, _ = penguins_chain
    info = read_model_info(paths["model"])
    assert info["raw_features"]["categorical_types"] == {"island": "string", "sex": "string"}
    frame = pd.DataFrame(
        {
            "island": pd.array(["a", None], dtype="string"),
            "sex": pd.array([3, None], dtype="Int64"),
        }
    )
    assert categorical_types(frame, FEATURES) == {"island": "string", "sex": "integer"}


def test_rows_with_null_values_predict(server) -> None:
    rows = [ALL_NULL, {**GOOD, "sex": None, "body_mass_g": None}, {**GOOD, "island": "Biscoe"}]
    status, _, body = server.predict(_body(rows, parameters={}))
    assert status == 200, body
    assert len(body["predictions"]) == 3
    for prediction in body["predictions"]:
        assert prediction["label"] in {"Adelie", "Chinstrap", "Gentoo"}
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_exactly_max_instances_is_accepted(server) -> None:
    status, _, body = server.predict(_body([GOOD] * MAX_INSTANCES))
    assert status == 200, body
    assert len(body["predictions"]) == MAX_INSTANCES


def _raw(text: str) -> bytes:
    return text.encode()


GOOD_JSON = json.dumps(GOOD)
# (id, method, path, body, headers, send Content-Length, status, message substring)
BAD_REQUESTS = [
    ("not_json", "POST", PREDICT_ROUTE, _raw('{"instances": ['), {}, True, 400, "not valid JSON"),
    (
        "nan_literal",
        "POST",
        PREDICT_ROUTE,
        _raw(GOOD_JSON.replace("39.1", "NaN").join(['{"instances": [', "]}"])),
        {},
        True,
        400,
        "NaN is not a JSON value",
    ),
    (
        "infinity_literal",
        "POST",
        PREDICT_ROUTE,
        _raw(GOOD_JSON.replace("3750", "-Infinity").join(['{"instances": [', "]}"])),
        {},
        True,
        400,
        "-Infinity is not a JSON value",
    ),
    ("empty_body", "POST", PREDICT_ROUTE, b"", {}, True, 400, "body is empty"),
    ("not_utf8", "POST", PREDICT_ROUTE, b'{"instances": ["\xff"]}', {}, True, 400, "UTF-8"),
    ("top_level_array", "POST", PREDICT_ROUTE, _raw("[1, 2]"), {}, True, 400, "got array"),
    (
        "no_instances",
        "POST",
        PREDICT_ROUTE,
        _raw('{"parameters": {}}'),
        {},
        True,
        400,
        "instances: required",
    ),
    (
        "instances_not_a_list",
        "POST",
        PREDICT_ROUTE,
        _raw(f'{{"instances": {GOOD_JSON}}}'),
        {},
        True,
        400,
        "instances: expected a non-empty list of objects, got object",
    ),
    ("no_rows", "POST", PREDICT_ROUTE, _body([]), {}, True, 400, "got []"),
    (
        "unknown_top_level_key",
        "POST",
        PREDICT_ROUTE,
        _body([GOOD], inputs=[]),
        {},
        True,
        400,
        "unknown top-level key(s) 'inputs'; allowed: 'instances', 'parameters'",
    ),
    (
        "parameters_not_object",
        "POST",
        PREDICT_ROUTE,
        _body([GOOD], parameters=[1]),
        {},
        True,
        400,
        "parameters: expected an object, got array",
    ),
    (
        "instance_not_object",
        "POST",
        PREDICT_ROUTE,
        _body([GOOD, [1, 2]]),
        {},
        True,
        400,
        "instances[1]: expected an object mapping feature names to values, got array",
    ),
    (
        "missing_feature",
        "POST",
        PREDICT_ROUTE,
        _with(3, sex=...),
        {},
        True,
        400,
        "instances[3]: missing feature(s) 'sex'",
    ),
    (
        "unknown_feature",
        "POST",
        PREDICT_ROUTE,
        _with(2, colour="red"),
        {},
        True,
        400,
        "instances[2]: unknown feature(s) 'colour' (every instance must have exactly: "
        "'bill_length_mm'",
    ),
    (
        "misspelt_feature",
        "POST",
        PREDICT_ROUTE,
        _with(0, bill_length_mm=..., bill_lenght_mm=40.0),
        {},
        True,
        400,
        "instances[0]: missing feature(s) 'bill_length_mm'; unknown feature(s) 'bill_lenght_mm'",
    ),
    (
        "numeric_string",
        "POST",
        PREDICT_ROUTE,
        _with(3, body_mass_g="heavy"),
        {},
        True,
        400,
        "instances[3].body_mass_g: expected a number or null, got string 'heavy'",
    ),
    (
        "numeric_text_number",
        "POST",
        PREDICT_ROUTE,
        _with(1, year="2007"),
        {},
        True,
        400,
        "instances[1].year: expected a number or null, got string '2007'",
    ),
    (
        "numeric_bool",
        "POST",
        PREDICT_ROUTE,
        _with(0, flipper_length_mm=True),
        {},
        True,
        400,
        "instances[0].flipper_length_mm: expected a number or null, got boolean true",
    ),
    (
        "numeric_array",
        "POST",
        PREDICT_ROUTE,
        _with(2, bill_depth_mm=[18.7]),
        {},
        True,
        400,
        "instances[2].bill_depth_mm: expected a number or null, got array",
    ),
    (
        "numeric_beyond_float32",
        "POST",
        PREDICT_ROUTE,
        _with(1, body_mass_g=1e39),
        {},
        True,
        400,
        "instances[1].body_mass_g: expected a finite number within float32 range",
    ),
    (
        "numeric_overflows_to_inf",
        "POST",
        PREDICT_ROUTE,
        _raw(GOOD_JSON.replace("3750", "1e400").join(['{"instances": [', "]}"])),
        {},
        True,
        400,
        "instances[0].body_mass_g: expected a finite number",
    ),
    (
        "numeric_huge_integer",
        "POST",
        PREDICT_ROUTE,
        _raw(GOOD_JSON.replace("2007", "9" * 400).join(['{"instances": [', "]}"])),
        {},
        True,
        400,
        "instances[0].year: expected a finite number",
    ),
    (
        "categorical_float",
        "POST",
        PREDICT_ROUTE,
        _with(3, island=1.5),
        {},
        True,
        400,
        "instances[3].island: expected a string or null, got number 1.5",
    ),
    (
        "categorical_bool",
        "POST",
        PREDICT_ROUTE,
        _with(1, sex=False),
        {},
        True,
        400,
        "instances[1].sex: expected a string or null, got boolean false",
    ),
    (
        "categorical_object",
        "POST",
        PREDICT_ROUTE,
        _with(0, sex={"value": "male"}),
        {},
        True,
        400,
        "instances[0].sex: expected a string or null, got object",
    ),
    (
        # Training saw text islands: an integer is a client bug, not the category "12345".
        "categorical_integer_for_text",
        "POST",
        PREDICT_ROUTE,
        _with(2, island=12345),
        {},
        True,
        400,
        "instances[2].island: expected a string or null (the model was trained on text values "
        "for it), got number 12345",
    ),
    (
        "categorical_lone_surrogate",
        "POST",
        PREDICT_ROUTE,
        _raw(GOOD_JSON.replace("Torgersen", "\\ud800").join(['{"instances": [', "]}"])),
        {},
        True,
        400,
        "instances[0].island: string is not valid Unicode",
    ),
    (
        "duplicate_key",
        "POST",
        PREDICT_ROUTE,
        _raw(GOOD_JSON.replace('"sex": "male"', '"sex": "male", "sex": "female"')).join(
            [b'{"instances": [', b"]}"]
        ),
        {},
        True,
        400,
        "duplicate key 'sex'",
    ),
    (
        "too_many_instances",
        "POST",
        PREDICT_ROUTE,
        _body([GOOD] * (MAX_INSTANCES + 1)),
        {},
        True,
        400,
        f"at most {MAX_INSTANCES} instances per request (serving.max_instances), got 21",
    ),
    (
        "body_too_large",
        "POST",
        PREDICT_ROUTE,
        _with(0, island="x" * MAX_BODY),
        {},
        True,
        413,
        f"exceeds the limit of {MAX_BODY} bytes (serving.max_body_bytes)",
    ),
    (
        "content_type_text",
        "POST",
        PREDICT_ROUTE,
        _body([GOOD]),
        {"Content-Type": "text/plain"},
        True,
        415,
        "unsupported content type 'text/plain'; expected application/json",
    ),
    (
        "content_type_form",
        "POST",
        PREDICT_ROUTE,
        _body([GOOD]),
        {"Content-Type": "application/x-www-form-urlencoded"},
        True,
        415,
        "expected application/json",
    ),
    (
        "charset_latin1",
        "POST",
        PREDICT_ROUTE,
        _body([GOOD]),
        {"Content-Type": "application/json; charset=latin-1"},
        True,
        415,
        "unsupported charset 'latin-1'",
    ),
    ("no_content_length", "POST", PREDICT_ROUTE, None, {}, False, 411, "Content-Length required"),
    (
        "chunked_body",
        "POST",
        PREDICT_ROUTE,
        b"5\r\nhello\r\n0\r\n\r\n",
        {"Transfer-Encoding": "chunked"},
        False,
        411,
        "chunked transfer encoding is not supported",
    ),
    (
        "bad_content_length",
        "POST",
        PREDICT_ROUTE,
        None,
        {"Content-Length": "ten"},
        False,
        400,
        "invalid Content-Length 'ten'",
    ),
    ("default_predict_route", "POST", "/predict", _body([GOOD]), {}, True, 404, "unknown route"),
    ("unknown_route", "GET", "/v1/models/other", None, {}, True, 404, PREDICT_ROUTE),
    ("get_predict", "GET", PREDICT_ROUTE, None, {}, True, 405, "use POST"),
    ("post_health", "POST", HEALTH_ROUTE, _body([GOOD]), {}, True, 405, "use GET"),
    ("unknown_method", "BREW", PREDICT_ROUTE, None, {}, True, 405, "'BREW' is not allowed"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "content_length", "status", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_REQUESTS],
)
def test_bad_request_gets_a_4xx_naming_the_problem(
    server, method, path, body, headers, content_length, status, message
) -> None:
    got, response_headers, answer = _request(
        server.port, method, path, body, headers, content_length=content_length
    )
    assert got == status, answer
    assert message in answer["error"], answer["error"]
    assert server.proc.poll() is None


def test_server_keeps_serving_after_the_bad_requests(server) -> None:
    assert len(BAD_REQUESTS) >= 20
    assert len({case[0] for case in BAD_REQUESTS}) == len(BAD_REQUESTS)
    status, _, body = server.predict(_body([GOOD]))
    assert status == 200, body
    assert body["predictions"][0]["label"] == "Adelie"


def test_start_line_names_the_bound_address_and_routes(server) -> None:
    line = (
        f"serving on http://127.0.0.1:{server.port} "
        f"(health {HEALTH_ROUTE}, predict {PREDICT_ROUTE})"
    )
    assert line in server.output.read_text(), server.tail()


def _assert_413(status: int, body: dict[str, Any]) -> None:
    assert status == 413, body
    assert f"exceeds the limit of {MAX_BODY} bytes (serving.max_body_bytes)" in body["error"]


def test_a_body_far_over_the_limit_gets_a_413_that_http_client_reads(server) -> None:
    # Bigger than any socket buffer: the client is still sending when the server decides.
    body = b"x" * (20 * 1024 * 1024)
    status, headers, answer = server.predict(body)
    _assert_413(status, answer)
    assert headers["Connection"] == "close"


def test_a_slowly_sent_body_over_the_limit_gets_a_413_after_it_is_sent(server) -> None:
    import socket

    size, pieces = 2 * MAX_BODY, 16
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            f"POST {PREDICT_ROUTE} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n".encode()
        )
        for _ in range(pieces):  # ~3 s in all, longer than the server ever lingered before
            sock.sendall(b"y" * (size // pieces))
            time.sleep(0.2)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, payload = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), head
    _assert_413(413, json.loads(payload))


def test_concurrent_clients_are_all_answered(server) -> None:
    results: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(5):
            status, _, _ = server.predict(_body([GOOD]))
            with lock:
                results.append(status)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [200] * 40


def test_request_log_round_trips_to_raw_features(server, penguins_chain) -> None:
    from mlops.serving.server import load_model, read_request_log

    config, paths, _ = penguins_chain
    rows = [GOOD, ALL_NULL, {**GOOD, "island": "Dream", "sex": None, "year": 2009}]
    status, _, body = server.predict(_body(rows))
    assert status == 200, body
    request_id = body["request_id"]

    lines = [json.loads(line) for line in server.log.read_text().splitlines()]
    record = next(line for line in lines if line["request_id"] == request_id)
    assert record["model_version"] == DEPLOYED_ID
    assert record["instances"] == rows
    assert record["predictions"] == body["predictions"]
    assert all(line["model_version"] == DEPLOYED_ID for line in lines)

    frame = read_request_log(server.log, features=config.features)
    assert list(frame.columns) == [
        *config.features.raw_features,
        "__request_id__",
        "__timestamp__",
        "__model_version__",
        "__predicted_label__",
        "__abstained__",
    ]
    ours = frame[frame["__request_id__"] == request_id].reset_index(drop=True)
    assert len(ours) == 3
    assert ours["__model_version__"].tolist() == [DEPLOYED_ID] * 3
    assert ours["__predicted_label__"].tolist() == [p["label"] for p in body["predictions"]]
    assert ours["island"].tolist() == ["Torgersen", "", "Dream"]
    assert ours["sex"].tolist() == ["male", "", ""]
    assert ours["year"].tolist()[::2] == [2007.0, 2009.0] and math.isnan(ours["year"][1])

    # Logged rows are raw features again: the model predicts the same labels from them.
    model = load_model(paths["model"], DEPLOYED_ID)
    again = model.predict(frame_to_arrays(ours, config.features))
    assert [p["label"] for p in again] == ours["__predicted_label__"].tolist()

    # Every good request so far was logged (rate 1.0); the bad ones were not.
    assert frame["__request_id__"].nunique() == len(lines)
    stamp = ours["__timestamp__"][0]
    assert str(stamp.tz) == "UTC"
    window = read_request_log(server.log, since=stamp, until=stamp + pd.Timedelta(microseconds=1))
    assert window["__request_id__"].unique().tolist() == [request_id]
    assert read_request_log([server.log], since="2999-01-01").empty
    assert len(read_request_log(server.log, until=stamp)) == len(frame) - len(
        frame[frame["__timestamp__"] >= stamp]
    )


def test_personal_data_in_requests_never_reaches_the_request_log(server) -> None:
    email, card = "jane.doe@example.com", "4111 1111 1111 1111"
    # Unseen categories are served (out of vocabulary), so these requests are logged.
    personal = {**GOOD, "island": f"contact {email}", "sex": card}
    status, _, body = server.predict(_body([personal]))
    assert status == 200, body
    # A rejected request (unknown field) is answered 400 and must not leak either.
    status, _, rejected = server.predict(_body([{**GOOD, "email": email}]))
    assert status == 400 and "unknown feature" in rejected["error"]
    lines = [json.loads(line) for line in server.log.read_text().splitlines()]
    record = next(line for line in lines if line["request_id"] == body["request_id"])
    assert record["instances"][0]["island"] == "contact [REDACTED:email]"
    assert record["instances"][0]["sex"] == "[REDACTED:payment card number]"
    assert record["instances"][0]["bill_length_mm"] == GOOD["bill_length_mm"]
    for text in (server.log.read_text(), server.output.read_text(errors="replace")):
        assert email not in text and card not in text and "4111111111111111" not in text


def test_explain_route_answers_in_the_shape_of_vertex_explain(server) -> None:
    """POST /explain: sampled Shapley attributions per instance; each adds up (with the baseline
    output) to the probability of the class it explains."""
    second = {**GOOD, "island": "Biscoe", "flipper_length_mm": 230, "bill_depth_mm": 14.0}
    status, _, body = _request(server.port, "POST", "/explain", _body([GOOD, second]))
    assert status == 200, body
    assert len(body["explanations"]) == 2 and len(body["predictions"]) == 2
    for explanation, prediction in zip(body["explanations"], body["predictions"], strict=True):
        (attribution,) = explanation["attributions"]
        assert set(attribution["featureAttributions"]) == set(GOOD) - {"species"}
        assert attribution["outputDisplayName"] == prediction["label"]
        total = attribution["baselineOutputValue"] + sum(
            attribution["featureAttributions"].values()
        )
        assert total == pytest.approx(attribution["instanceOutputValue"], abs=1e-4)
        assert attribution["instanceOutputValue"] == pytest.approx(
            prediction["probabilities"][prediction["label"]], abs=1e-6
        )
    status, _, body = _request(server.port, "POST", "/explain", _body([{**GOOD, "island": 7}]))
    assert status == 400 and "instances[0].island" in body["error"]
    status, _, _ = _request(server.port, "GET", "/explain")
    assert status == 405


def test_sigterm_stops_the_server_cleanly(server) -> None:
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0, server.tail()
    assert "received SIGTERM" in server.tail()
    with pytest.raises(OSError):
        _request(server.port, "GET", HEALTH_ROUTE, timeout=2)


# ---------------------------------------------------------------------------------------------
# PredictionService in-process: traffic split, sampling, failures


def _serving_config(config: PipelineConfig, **serving: Any) -> PipelineConfig:
    return config.model_copy(update={"serving": config.serving.model_copy(update=serving)})


def test_traffic_must_name_served_versions_and_sum_to_100(penguins_config) -> None:
    from mlops.serving.server import PredictionService

    models = {"1": "/m1", "2": "/m2"}
    for traffic, message in [
        ({"1": 90, "2": 20}, "must sum to 100, got 110"),
        ({"1": 90}, "must sum to 100, got 90"),
        ({"1": 100, "3": 0}, "version(s) ['3'] that are not among the models ['1', '2']"),
        ({"1": 110, "2": -10}, "integer percent in [0, 100], got 110"),
        ({"1": 50.5, "2": 49.5}, "integer percent"),
    ]:
        with pytest.raises(ValueError, match=None) as info:
            PredictionService(models, traffic, penguins_config, None)
        assert message in str(info.value)
    with pytest.raises(ValueError, match="at least one"):
        PredictionService({}, {}, penguins_config, None)


def test_service_routes_a_seeded_90_10_split_and_100_0(penguins_chain, tmp_path) -> None:
    from mlops.serving.server import PredictionService

    config, paths, _ = penguins_chain
    model = str(paths["model"])
    log = tmp_path / "requests.jsonl"
    service = PredictionService({"1": model, "2": model}, {"1": 90, "2": 10}, config, log, seed=3)
    assert service.health().status == 503 and service.health().body["status"] == "loading"
    service.start()
    assert service.wait(120), service.health().body
    assert service.health().status == 200

    counts = {"1": 0, "2": 0}
    for i in range(400):
        reply = service.predict(_body([GOOD]), "application/json", f"r{i}")
        assert reply.status == 200, reply.body
        assert reply.headers["X-Model-Version"] == reply.body["model_version"]
        counts[reply.body["model_version"]] += 1
    assert 320 <= counts["1"] <= 390, counts  # expected 360, sd 6
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(logged) == 400  # default sample rate 1.0
    assert {line["model_version"] for line in logged} == {"1", "2"}

    # Same seed, same routes.
    twin = PredictionService({"1": model, "2": model}, {"1": 90, "2": 10}, config, None, seed=3)
    assert [twin.choose_version() for _ in range(400)] == [line["model_version"] for line in logged]

    # 100/0: the second version is loaded (health needs it) but never gets a request.
    everything = PredictionService({"1": model, "2": model}, {"1": 100, "2": 0}, config, None)
    everything.load()
    assert everything.health().status == 200
    versions = {
        everything.predict(_body([GOOD]), None, "x").body["model_version"] for _ in range(100)
    }
    assert versions == {"1"}
    service.close()


def test_sample_rate_0_logs_nothing_and_half_logs_about_half(penguins_chain, tmp_path) -> None:
    from mlops.serving.server import PredictionService

    config, paths, _ = penguins_chain
    model = {"5": str(paths["model"])}
    silent = PredictionService(
        model, {"5": 100}, _serving_config(config, request_log_sample_rate=0.0), tmp_path / "a"
    )
    silent.load()
    for i in range(50):
        assert silent.predict(_body([GOOD]), None, str(i)).status == 200
    silent.close()
    assert not (tmp_path / "a").exists()

    half = PredictionService(
        model,
        {"5": 100},
        _serving_config(config, request_log_sample_rate=0.5),
        tmp_path / "b",
        seed=1,
    )
    half.load()
    for i in range(200):
        assert half.predict(_body([GOOD]), None, str(i)).status == 200
    half.close()
    assert 70 <= len((tmp_path / "b").read_text().splitlines()) <= 130


def test_load_failures_answer_503_with_the_error(penguins_chain, tmp_path) -> None:
    from mlops.serving.server import PredictionService

    config, paths, _ = penguins_chain
    missing = PredictionService({"9": str(tmp_path / "nowhere")}, {"9": 100}, config, None)
    missing.load()
    health = missing.health()
    assert health.status == 503 and health.body["status"] == "failed"
    assert "loading model version '9' failed" in health.body["error"]
    assert missing.predict(_body([GOOD]), None, "x").status == 503

    other = config.features.model_copy(update={"numeric": ["bill_length_mm"]})
    wrong = PredictionService(
        {"1": str(paths["model"])}, {"1": 100}, config.model_copy(update={"features": other}), None
    )
    wrong.load()
    assert "but config.features expects" in wrong.health().body["error"]


def test_model_errors_are_a_generic_500(penguins_chain, monkeypatch, tmp_path) -> None:
    from mlops.serving.server import PredictionService

    config, paths, _ = penguins_chain
    # A request log that cannot be written costs monitoring a row, not the client its answer.
    service = PredictionService({"1": str(paths["model"])}, {"1": 100}, config, tmp_path)
    service.load()
    assert service.predict(_body([GOOD]), None, "ok").status == 200

    def broken(arrays):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(service.model("1"), "predict_raw", broken)
    reply = service.predict(_body([GOOD]), None, "abc")
    assert reply.status == 500
    assert "internal error" in reply.body["error"] and "secret" not in reply.body["error"]


def test_a_nan_probability_is_a_500_not_a_null(penguins_chain, monkeypatch, tmp_path) -> None:
    # orjson would write NaN as null: the service must refuse it as json's allow_nan=False did.
    from mlops.serving.server import PredictionService

    config, paths, _ = penguins_chain
    log = tmp_path / "requests.jsonl"
    service = PredictionService({"1": str(paths["model"])}, {"1": 100}, config, log)
    service.load()
    model = service.model("1")
    real = model.predict_raw

    def adelie_nan(arrays):
        out = real(arrays)
        probabilities = out["probabilities"].copy()
        probabilities[:, 0] = math.nan  # the first class, Adelie
        return {**out, "probabilities": probabilities}

    monkeypatch.setattr(model, "predict_raw", adelie_nan)
    reply = service.predict(_body([GOOD]), None, "abc")
    assert reply.status == 500 and "internal error" in reply.body["error"]
    assert not log.exists() or log.read_text() == ""


def test_encoded_predictions_and_log_lines_are_what_json_writes(penguins_chain, tmp_path) -> None:
    from mlops.serving.server import PredictionService, _json, _json_bytes

    config, paths, _ = penguins_chain
    log = tmp_path / "requests.jsonl"
    serving = config.serving.model_copy(update={"request_log_sample_rate": 1.0})
    config = config.model_copy(update={"serving": serving})
    service = PredictionService({"1": str(paths["model"])}, {"1": 100}, config, log)
    service.load()
    instances = [GOOD, {**GOOD, "island": "Ærø ☃ \u2028", "year": None}]
    reply = service.predict(_body(instances), None, "req-1")
    assert reply.status == 200
    assert json.loads(reply.encoded) == json.loads(_json(reply.body))
    record = json.loads(log.read_text(encoding="utf-8"))
    assert record["instances"] == instances and record["request_id"] == "req-1"
    assert record["predictions"] == reply.body["predictions"]
    # What orjson cannot encode goes through json: the same text or the same error.
    for value in ({1: [2**70, 0.1]}, {"label": "é", "p": 1e-05}):
        assert json.loads(_json_bytes(value)) == json.loads(_json(value))
    with pytest.raises(UnicodeEncodeError):  # a lone surrogate cannot be UTF-8, as before
        _json_bytes({"a": "\ud800"})
    assert _json_bytes({1: 2}) == b'{"1": 2}'


def test_the_server_process_collects_no_garbage_until_loaded(penguins_chain) -> None:
    import gc

    from mlops.serving.server import PredictionService

    config, paths, _ = penguins_chain
    service = PredictionService({"1": str(paths["model"])}, {"1": 100}, config, None)
    service.freeze_gc = True
    gc.disable()  # as `python -m mlops.serving` starts
    try:
        service.load()
        assert service.ready and gc.isenabled() and gc.get_freeze_count() > 0
        failed = PredictionService({"1": "/nonexistent"}, {"1": 100}, config, None)
        failed.freeze_gc = True
        gc.disable()
        failed.load()
        assert not failed.ready and gc.isenabled()  # health still answers, collector on
    finally:
        gc.enable()
        gc.unfreeze()


def test_serve_in_a_thread_sets_ready_event_and_stops_on_stop_event(penguins_chain, caplog) -> None:
    import logging
    import re

    from mlops.serving.server import Routes, serve

    config, paths, _ = penguins_chain
    caplog.set_level(logging.INFO, logger="mlops.serving.server")
    ready, stop = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=serve,
        args=({"4": str(paths["model"])}, {"4": 100}, config, "127.0.0.1", 0, None, ready),
        kwargs={"stop_event": stop, "routes": Routes()},
        daemon=True,
    )
    thread.start()
    assert ready.wait(120)
    # Port 0 binds a free port; the start line names it.
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("serving on")]
    match = re.fullmatch(
        r"serving on http://127\.0\.0\.1:(\d+) \(health /health, predict /predict\)", lines[0]
    )
    assert match, lines
    port = int(match.group(1))
    assert port != 0
    status, headers, body = _request(port, "POST", "/predict", _body([GOOD]))
    assert status == 200 and headers["X-Model-Version"] == "4", body
    stop.set()
    thread.join(20)
    assert not thread.is_alive()


def test_routes_and_port_come_from_the_environment_at_run_time() -> None:
    from mlops.serving.server import Routes, _models_from_args, env_port, main

    assert Routes.from_env({}) == Routes("/health", "/predict")
    assert Routes.from_env({"AIP_PREDICT_ROUTE": "/p", "AIP_HEALTH_ROUTE": "/h"}) == Routes(
        "/h", "/p"
    )
    assert env_port({}) == 8080 and env_port({"AIP_HTTP_PORT": "9000"}) == 9000
    with pytest.raises(ValueError, match="AIP_HTTP_PORT"):
        env_port({"AIP_HTTP_PORT": "http"})

    import argparse

    args = argparse.Namespace(model=[], model_dir=None, model_version=None, traffic=[])
    env = {"AIP_STORAGE_URI": "gs://b/model", "AIP_DEPLOYED_MODEL_ID": "123"}
    assert _models_from_args(args, env) == ({"123": "gs://b/model"}, {"123": 100})
    assert _models_from_args(args, {"AIP_STORAGE_URI": "/m"}) == ({"vertex": "/m"}, {"vertex": 100})
    canary = argparse.Namespace(
        model=["1=/a", "2=/b"], model_dir=None, model_version=None, traffic=["1=90", "2=10"]
    )
    assert _models_from_args(canary, {}) == ({"1": "/a", "2": "/b"}, {"1": 90, "2": 10})
    with pytest.raises(ValueError, match="no model"):
        _models_from_args(args, {})
    with pytest.raises(SystemExit):
        main(["--config", str(REPO / "configs" / "penguins.yaml")])
