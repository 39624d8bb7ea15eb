"""Online prediction server that honours Vertex AI's custom-container contract.

Vertex tells the container where to listen and what to answer through environment variables,
read when the server starts (never at import): `AIP_HTTP_PORT` (default 8080), `AIP_HEALTH_ROUTE`
(default /health), `AIP_PREDICT_ROUTE` (default /predict), and `AIP_STORAGE_URI`, the model
directory (labelled `AIP_DEPLOYED_MODEL_ID`, or "vertex").

    python -m mlops.serving --config configs/penguins.yaml --model-dir MODEL_DIR --port 8080

`POST <predict route>` takes `{"instances": [{feature: value, ...}, ...], "parameters": {...}}`
and answers `{"predictions": [{"label", "probabilities"}], "model_version", "request_id"}`.
Bad requests get a 4xx with `{"error": ...}` naming the instance and field (see
`mlops.serving.request`). Several model versions can be served at once, with a weighted
random split of the traffic (a local canary); a sample of requests and their predictions is
appended to a JSON Lines request log that `read_request_log` turns back into raw features.

The socket is bound first; the models load in a background thread (TensorFlow imported without
Keras), and health answers 503 until they have. Concurrent requests to one version are merged
into one model call (`MicroBatcher`). A request is converted a column at a time
(`mlops.serving.request`) and its predictions are written column-wise (`encode_predictions`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import email.parser
import gc
import http.client
import json
import logging
import os
import random
import re
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import numpy as np
import orjson

from mlops.config import FeatureConfig, PipelineConfig, load_config
from mlops.images import IMAGE_EXPLAIN_NOTE
from mlops.privacy import LogRedactor, redact_text
from mlops.serving.request import RequestError, RequestSchema, parse_request

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8080
DEFAULT_HEALTH_ROUTE = "/health"
DEFAULT_PREDICT_ROUTE = "/predict"
VERTEX_VERSION_LABEL = "vertex"
LOCAL_VERSION_LABEL = "local"
META_COLUMNS = (
    "__request_id__",
    "__timestamp__",
    "__model_version__",
    "__predicted_label__",
    "__abstained__",
)

# A client that stalls mid-request must not hold a server thread forever.
_SOCKET_TIMEOUT_S = 30.0
# A body over serving.max_body_bytes is read and discarded (up to this much, for at most this
# long) before the 413 goes out, so that a client that sends its whole body before reading the
# answer (http.client, requests, curl) gets to read it instead of a broken pipe.
_DISCARD_LIMIT_BYTES = 64 * 1024 * 1024
_DISCARD_TIMEOUT_S = 60.0
# Unread request bytes are drained (up to this much) before closing, so that the kernel does not
# answer them with a reset that can destroy the error response the client has yet to read.
_DRAIN_LIMIT_BYTES = 16 * 1024 * 1024
_DRAIN_TIMEOUT_S = 2.0
# Pending connections the listening socket holds (socketserver's default, 5, resets the
# connections a burst of new clients opens).
_LISTEN_BACKLOG = 512
_SHUTDOWN_GRACE_S = 10.0


# --------------------------------------------------------------------------------------------
# Model


def import_tensorflow() -> Any:
    """`import tensorflow`, without the Keras import TensorFlow does eagerly when it is first
    imported: serving a SavedModel needs no Keras, and Keras (with the pandas and IPython it pulls
    in) is about half of TensorFlow's import time. TensorFlow itself carries on when that import
    fails; a later `import keras` works as usual. A process that imported TensorFlow or Keras
    already is left as it is."""
    if "tensorflow" in sys.modules or "keras" in sys.modules:
        import tensorflow as tf

        return tf
    blocked = "keras.src.optimizers"
    sys.modules[blocked] = None  # type: ignore[assignment]  # import fails fast: ImportError
    try:
        import tensorflow as tf
    finally:
        if sys.modules.get(blocked, 0) is None:
            del sys.modules[blocked]
    return tf


def _read_model_text(model_dir: str, name: str) -> str | None:
    """A file under the model's `assets.extra/`, or None when absent (gs:// through TF)."""
    from mlops.artifacts import MODEL_EXTRA_DIR

    path = f"{model_dir.rstrip('/')}/{MODEL_EXTRA_DIR}/{name}"
    if "://" not in path:
        return Path(path).read_text(encoding="utf-8") if Path(path).is_file() else None
    tf = import_tensorflow()
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as handle:
        return handle.read()


class LoadedModel:
    """A SavedModel's raw-feature `serving_default` signature, under a version label.

    `categorical_types` is what training recorded about each raw categorical feature
    ("string", "integer" or "number"; empty for a model trained before it was recorded).
    `input_names` maps each raw feature as written to its key in the signature (training's
    `model_input_names`); inputs are passed and `input_specs` keyed by the names as written."""

    def __init__(
        self,
        version: str,
        model_dir: str,
        loaded: Any,
        signature: Any,
        categorical_types: Mapping[str, str] | None = None,
        input_names: Mapping[str, str] | None = None,
    ) -> None:
        self.version = version
        self.model_dir = model_dir
        # The signature's variables live on the loaded object; dropping it breaks the signature.
        self._loaded = loaded
        self._signature = signature
        written = {internal: name for name, internal in (input_names or {}).items()}
        specs = signature.structured_input_signature[1]
        # signature key -> name as written (the same for names that were already identifiers)
        self._written_names = {key: written.get(key, key) for key in specs}
        self._signature_keys = {name: key for key, name in self._written_names.items()}
        self.input_specs: dict[str, Any] = {self._written_names[k]: v for k, v in specs.items()}
        self.categorical_types: dict[str, str] = dict(categorical_types or {})
        # (name, numpy dtype, TF dtype enum) in the order of the signature's flat inputs, once
        # `enable_flat_call` has checked that calling it flat gives what the keyword call gives.
        self._flat_inputs: list[tuple[str, Any, int]] | None = None

    def check_features(self, features: FeatureConfig) -> None:
        """Fail unless the signature takes exactly the config's raw features, with their dtypes."""
        import tensorflow as tf

        expected = {name: tf.float32 for name in features.numeric}
        expected.update({name: tf.string for name in features.categorical})
        if features.image is not None:  # encoded image bytes
            expected[features.image.column] = tf.string
        actual = {name: spec.dtype for name, spec in self.input_specs.items()}
        if actual != expected:
            show = lambda specs: {k: v.name for k, v in sorted(specs.items())}  # noqa: E731
            raise ValueError(
                f"model version '{self.version}' ({self.model_dir}) takes inputs {show(actual)}, "
                f"but config.features expects {show(expected)}"
            )

    def predict_raw(
        self, arrays: Mapping[str, np.ndarray], outputs: Collection[str] | None = None
    ) -> dict[str, np.ndarray]:
        """The signature's outputs as numpy arrays; only those named in `outputs` when given
        (copying a text output out of TensorFlow costs a Python object per value)."""
        import tensorflow as tf

        missing = [name for name in self.input_specs if name not in arrays]
        if missing:
            raise ValueError(
                f"missing model inputs {sorted(missing)}; expected {sorted(self.input_specs)}"
            )
        if self._flat_inputs is not None:
            # The eager tensor built directly, as tf.constant ends up doing for a numpy array
            # (without its copy and wrappers: ~15 us per input, a tenth of a 1-row call).
            from tensorflow.python.eager import context
            from tensorflow.python.framework import ops

            device = context.context().device_name
            tensors = [
                ops.EagerTensor(np.asarray(arrays[name], dtype), device, enum)
                for name, dtype, enum in self._flat_inputs
            ]
            out = self._signature._call_flat(tensors, self._signature.captured_inputs)
        else:
            out = self._signature(
                **{
                    self._signature_keys[name]: tf.constant(arrays[name], dtype=spec.dtype)
                    for name, spec in self.input_specs.items()
                }
            )
        return {
            name: value.numpy() for name, value in out.items() if outputs is None or name in outputs
        }

    def enable_flat_call(self) -> bool:
        """Call the signature with its flat list of tensors, as its keyword call ends up doing,
        without re-binding and re-checking the keywords on every call: that is about half the
        cost of a 1-row call. TensorFlow's entry point for it is private, so it is used only
        after a probe gives exactly the keyword call's outputs; True if it is in use."""
        import tensorflow as tf

        self._flat_inputs = None
        try:
            names = [
                self._written_names.get(key, key)
                for key in self._signature.function_type.parameters
            ]
            if sorted(names) != sorted(self.input_specs):
                return False
            probe: dict[str, np.ndarray] = {}
            for i, (name, spec) in enumerate(sorted(self.input_specs.items())):
                if spec.dtype == tf.string:
                    probe[name] = np.array([f"probe-{i}", ""], dtype=object)
                else:
                    probe[name] = np.array([0.5 + i, np.nan], dtype=spec.dtype.as_numpy_dtype)
            expected = self.predict_raw(probe)
            self._flat_inputs = [
                (
                    name,
                    self.input_specs[name].dtype.as_numpy_dtype,
                    self.input_specs[name].dtype.as_datatype_enum,
                )
                for name in names
            ]
            got = self.predict_raw(probe)
            same = set(got) == set(expected) and all(
                np.array_equal(got[k], expected[k]) for k in expected
            )
        except Exception:  # an older or newer TensorFlow: the keyword call it is
            logger.debug("model version '%s': flat signature call unavailable", self.version)
            same = False
        if not same:
            self._flat_inputs = None
        return same

    def predict(self, arrays: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
        """Per row `{"label": str, "probabilities": {class_name: float}}` (unrounded)."""
        out = self.predict_raw(arrays)
        probabilities = out["probabilities"]
        if len(probabilities) == 0:
            return []
        # Every row carries the same class names (tiled by the signature).
        names = [name.decode("utf-8") for name in out["classes"][0].tolist()]
        labels = [label.decode("utf-8") for label in out["predicted_label"].tolist()]
        if probabilities.shape != (len(labels), len(names)):
            raise ValueError(
                f"model outputs disagree: {len(labels)} labels, probabilities "
                f"{probabilities.shape}, {len(names)} classes"
            )
        rows = probabilities.tolist()  # Python floats, as float(p) gives
        return [
            {"label": label, "probabilities": dict(zip(names, row, strict=True))}
            for label, row in zip(labels, rows, strict=True)
        ]


def load_model(model_dir: str | Path, version: str | None = None) -> LoadedModel:
    """Load a SavedModel (local path or gs:// URI); `version` defaults to the directory's name.
    Reads the categorical feature types training recorded in `model_info.json`, if any."""
    from mlops.artifacts import MODEL_INFO_FILE

    tf = import_tensorflow()
    model_dir = str(model_dir)
    loaded = tf.saved_model.load(model_dir)
    if "serving_default" not in loaded.signatures:
        raise ValueError(
            f"{model_dir} has no 'serving_default' signature (has {sorted(loaded.signatures)})"
        )
    info_text = _read_model_text(model_dir, MODEL_INFO_FILE)
    info = json.loads(info_text) if info_text else {}
    types = (info.get("raw_features") or {}).get("categorical_types") or {}
    label = version if version is not None else Path(model_dir.rstrip("/")).name
    model = LoadedModel(
        label,
        model_dir,
        loaded,
        loaded.signatures["serving_default"],
        types,
        input_names=info.get("model_input_names"),
    )
    model.enable_flat_call()
    return model


class MicroBatcher:
    """Runs concurrent predict calls as one model call (micro-batching, as TF Serving does),
    with no thread or timer of its own. The first caller to find the model idle calls it on
    everything queued (up to `max_rows` rows); alone, it just calls the model, so a lone request
    waits for nobody. Callers that arrive meanwhile queue; when the model call ends, the oldest
    of them calls the model on all that queued in the meantime. Under load a model call thus
    serves many requests, and the fixed cost of each call is shared. If a merged call fails,
    each request in it is tried on its own, so that one request cannot fail the others."""

    class _Job:
        __slots__ = ("arrays", "rows", "wake", "finished", "result", "error")

        def __init__(self, arrays: Mapping[str, np.ndarray], rows: int) -> None:
            self.arrays = arrays
            self.rows = rows
            self.wake = threading.Event()
            self.finished = False
            self.result: list[Any] = []
            self.error: BaseException | None = None

    def __init__(self, run: Callable[[Mapping[str, np.ndarray]], list[Any]], max_rows: int) -> None:
        self._run = run
        self._max_rows = max_rows
        self._lock = threading.Lock()
        self._queue: deque[MicroBatcher._Job] = deque()
        self._busy = False

    def __call__(self, arrays: Mapping[str, np.ndarray], rows: int) -> list[Any]:
        """`run(arrays)` for these `rows` rows, possibly batched with other callers'."""
        job = self._Job(arrays, rows)
        with self._lock:
            self._queue.append(job)
            lead = not self._busy
            self._busy = True
        if not lead:
            job.wake.wait()
        if not job.finished:  # first in an idle batcher, or handed the next batch
            self._lead()
        if job.error is not None:
            raise job.error
        return job.result

    def _call(self, arrays: Mapping[str, np.ndarray], rows: int) -> list[Any]:
        results = self._run(arrays)
        if len(results) != rows:
            raise ValueError(f"model returned {len(results)} predictions for {rows} rows")
        return results

    def _lead(self) -> None:
        # The caller's job is first in the queue: the batcher was idle, or it was handed over.
        with self._lock:
            batch = [self._queue.popleft()]
            rows = batch[0].rows
            while self._queue and rows + self._queue[0].rows <= self._max_rows:
                rows += self._queue[0].rows
                batch.append(self._queue.popleft())
        delivered = False
        try:
            if len(batch) == 1:
                merged = batch[0].arrays
            else:
                merged = {
                    name: np.concatenate([job.arrays[name] for job in batch])
                    for name in batch[0].arrays
                }
            try:
                results = self._call(merged, rows)
                offset = 0
                for job in batch:
                    job.result = results[offset : offset + job.rows]
                    offset += job.rows
            except Exception as exc:
                if len(batch) == 1:
                    batch[0].error = exc
                else:  # one request's rows must not fail the others': each on its own
                    for job in batch:
                        try:
                            job.result = self._call(job.arrays, job.rows)
                        except Exception as own:
                            job.error = own
            delivered = True
        finally:
            with self._lock:
                successor = self._queue[0] if self._queue else None
                if successor is None:
                    self._busy = False
            for job in batch:
                if not delivered:
                    job.error = RuntimeError("the model call was interrupted")
                job.finished = True
                job.wake.set()
            if successor is not None:
                successor.wake.set()  # it runs the next batch


def _warm_up(model: LoadedModel, features: FeatureConfig) -> None:
    """One all-missing row, so the first real request does not pay for tracing."""
    arrays: dict[str, np.ndarray] = {
        name: np.full(1, np.nan, np.float32) for name in features.numeric
    }
    arrays.update({name: np.array([""], dtype=object) for name in features.categorical})
    if features.image is not None:  # a blank image: "" does not decode
        from mlops.images import blank_png

        arrays[features.image.column] = np.array([blank_png(features.image)], dtype=object)
    model.predict(arrays)


# --------------------------------------------------------------------------------------------
# Service: routing, health and request logging, independent of HTTP


class Reply:
    """A response: `status`, the JSON `body` and extra `headers`. `encoded` is the body as JSON
    bytes when it was encoded already (predictions are encoded once, column-wise, for the
    response and the request log alike); `body` is then decoded from it only if asked for."""

    __slots__ = ("status", "_body", "headers", "encoded")

    def __init__(
        self,
        status: int,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        encoded: bytes | None = None,
    ) -> None:
        if body is None and encoded is None:
            raise ValueError("a Reply needs a body or its encoding")
        self.status = status
        self._body = body
        self.headers = headers if headers is not None else {}
        self.encoded = encoded

    @property
    def body(self) -> dict[str, Any]:
        if self._body is None:
            self._body = json.loads(self.encoded)
        return self._body

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body!r}, {self.headers!r})"


def _json(value: Any) -> str:
    return json.dumps(value, allow_nan=False, ensure_ascii=False)


def _json_bytes(value: Any) -> bytes:
    """`value` as UTF-8 JSON, through orjson (the predictions of a 1000-instance request encode
    ~10x faster than with json). Only for values without NaN or infinity, which orjson would
    write as null where `_json` refuses them: callers check their floats first. What orjson
    cannot encode (a lone surrogate, a non-string key, a huge integer) goes through `_json`,
    so the outcome is json's."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return _json(value).encode("utf-8")


class ModelOutputs:
    """The serving signature's outputs for some rows (numpy arrays, a row per input row), sliced
    by rows: what `MicroBatcher` hands each request of a merged model call."""

    __slots__ = ("arrays",)

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays["probabilities"])

    def __getitem__(self, rows: slice) -> ModelOutputs:
        return ModelOutputs({name: values[rows] for name, values in self.arrays.items()})


def predict_outputs(model: LoadedModel, arrays: Mapping[str, np.ndarray]) -> ModelOutputs:
    """`model.predict_raw`, checked as `LoadedModel.predict` checks it (a label per row and a
    probability per row and class), kept as arrays: `encode_predictions` writes them."""
    out = model.predict_raw(arrays)
    probabilities, labels = out["probabilities"], out["predicted_label"]
    if len(probabilities) and probabilities.shape != (len(labels), out["classes"].shape[1]):
        raise ValueError(
            f"model outputs disagree: {len(labels)} labels, probabilities "
            f"{probabilities.shape}, {out['classes'].shape[1]} classes"
        )
    return ModelOutputs(out)


def encode_predictions(
    outputs: Mapping[str, np.ndarray], min_confidence: float, fallback: str | None
) -> bytes:
    """The predictions as the JSON array `_json_bytes(abstain(model.predict(...), ...))` writes,
    byte for byte, built a column at a time: orjson writes every probability in one call, and
    the rows are the join of one object array whose columns are the fixed pieces of text, the
    labels (each distinct one encoded once) and the probabilities. A dict per row cost more
    than the model call for a 1000-instance request. Raises ValueError for a NaN or infinite
    probability (a model bug; JSON cannot say it)."""
    probabilities = outputs["probabilities"]
    if len(probabilities) == 0:
        return b"[]"
    names = [name.decode("utf-8") for name in outputs["classes"][0].tolist()]
    labels = outputs["predicted_label"].tolist()
    # float(p) of each float32 probability, as the per-row dicts held them
    values = probabilities.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"non-finite probability in the model's outputs: {values.tolist()}")
    texts = {label: _json_bytes(label.decode("utf-8")) for label in set(labels)}
    if not names or len(set(names)) != len(names):  # the dicts' own way with such classes
        predictions = [
            {"label": label.decode("utf-8"), "probabilities": dict(zip(names, row, strict=True))}
            for label, row in zip(labels, values.tolist(), strict=True)
        ]
        return _json_bytes(abstain(predictions, min_confidence, fallback))
    rows, classes = values.shape
    numbers = orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)
    numbers = numbers.replace(b"[", b"").replace(b"]", b"").split(b",")
    cells = np.empty((rows, 2 * classes + 3), dtype=object)
    cells[:, 0] = b',{"label":'
    cells[0, 0] = b'{"label":'
    cells[:, 1] = [texts[label] for label in labels]
    for i, name in enumerate(names):
        cells[:, 2 + 2 * i] = (b',"probabilities":{' if i == 0 else b",") + _json_bytes(name) + b":"
    cells[:, 3 : 2 + 2 * classes : 2] = np.array(numbers, dtype=object).reshape(rows, classes)
    cells[:, -1] = b"}}"
    if min_confidence > 0:
        abstained = np.flatnonzero(values.max(axis=1) < min_confidence)
        if len(abstained):
            cells[abstained, 1] = _json_bytes(fallback)
            cells[abstained, -1] = [
                b'},"model_label":' + texts[labels[i]] + b',"abstained":true}'
                for i in abstained.tolist()
            ]
    return b"".join((b"[", *cells.ravel().tolist(), b"]"))


def request_schema_for(features: FeatureConfig, models: Iterable[LoadedModel]) -> RequestSchema:
    """What requests may hold for these models: a categorical feature takes JSON integers
    unless a served version was trained on text values for it."""
    types: dict[str, str] = {}
    for model in models:
        for name, kind in model.categorical_types.items():
            if kind == "string" or name not in types:
                types[name] = kind
    return RequestSchema(features, types)


def check_traffic(models: Mapping[str, str], traffic: Mapping[str, int]) -> dict[str, int]:
    """Percent per version, every model included (absent = 0); they must sum to 100."""
    if not models:
        raise ValueError("models is empty; expected at least one {version label: model dir}")
    unknown = sorted(set(traffic) - set(models))
    if unknown:
        raise ValueError(
            f"traffic names version(s) {unknown} that are not among the models {sorted(models)}"
        )
    split: dict[str, int] = {}
    for version in models:
        percent = traffic.get(version, 0)
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise ValueError(
                f"traffic['{version}'] must be an integer percent in [0, 100], got {percent!r}"
            )
        split[version] = percent
    total = sum(split.values())
    if total != 100:
        raise ValueError(f"traffic percentages must sum to 100, got {total} ({split})")
    return split


class PredictionService:
    """Routes each request to a model version by weighted random choice, predicts, and logs a
    sample of requests. Models load in a background thread (`start`); until every model is
    loaded, health and predict answer 503."""

    # Freeze the garbage collector's view of everything loaded (the server process sets this).
    freeze_gc = False

    def __init__(
        self,
        models: Mapping[str, str],
        traffic: Mapping[str, int],
        config: PipelineConfig,
        request_log: str | Path | None,
        seed: int | None = None,
    ) -> None:
        self.models = {str(version): str(path) for version, path in models.items()}
        self.traffic = check_traffic(self.models, {str(k): v for k, v in traffic.items()})
        self.config = config
        self.request_log = Path(request_log) if request_log else None
        self._versions = [v for v, percent in self.traffic.items() if percent > 0]
        self._weights = [self.traffic[v] for v in self._versions]
        # Separate streams: whether a request is logged must not change where later ones go.
        self._route_rng = random.Random(seed)
        self._log_rng = random.Random(None if seed is None else seed + 1)
        self._rng_lock = threading.Lock()
        self._log_lock = threading.Lock()
        self._log_file: IO[bytes] | None = None
        # Personal data never reaches the request log (privacy.columns policies, then detection).
        self._redactor = LogRedactor(config.privacy)
        self._plain_features: bool | None = None  # see `_redaction_changes_nothing`
        self._loaded: dict[str, LoadedModel] = {}
        self._batchers: dict[str, MicroBatcher] = {}
        self._schema = RequestSchema(config.features)
        self._error: str | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    # -- loading ------------------------------------------------------------------------------

    def start(self, on_ready: Callable[[], None] | None = None) -> threading.Thread:
        """Load every model in a background thread; `on_ready` runs once all are loaded."""

        def run() -> None:
            self.load()
            if self.ready and on_ready is not None:
                on_ready()

        self._thread = threading.Thread(target=run, name="model-loader", daemon=True)
        self._thread.start()
        return self._thread

    def load(self) -> None:
        """Load (and warm up) every model now; a failure is kept and reported by `health`."""
        current = "?"
        try:
            started = time.perf_counter()
            loaded = {}
            for version, model_dir in self.models.items():
                current = version
                model = load_model(model_dir, version)
                model.check_features(self.config.features)
                _warm_up(model, self.config.features)
                loaded[version] = model
            self._schema = request_schema_for(self.config.features, loaded.values())
            max_rows = self.config.serving.max_instances
            self._batchers = {
                version: MicroBatcher(
                    lambda arrays, model=model: predict_outputs(model, arrays), max_rows
                )
                for version, model in loaded.items()
            }
            if self.freeze_gc:
                # What TensorFlow and the models hold (~300k objects) lives as long as the
                # server: out of the cyclic collector's view, or every full collection walks it
                # all (a 1000-instance request took 4x as long). Done before health says ready.
                # The server process starts with the collector off (`mlops.serving.__main__`),
                # so the import and the load never walk it either; the little garbage they left
                # is frozen with it rather than collected (a full collection here is ~0.5 s of
                # cold start).
                gc.freeze()
                gc.enable()
            self._loaded = loaded
            logger.info(
                "loaded model version(s) %s in %.1fs; traffic %s",
                sorted(loaded),
                time.perf_counter() - started,
                self.traffic,
            )
        except Exception as exc:
            self._error = f"loading model version '{current}' failed: {type(exc).__name__}: {exc}"
            logger.exception("loading model version '%s' failed", current)
        finally:
            if self.freeze_gc:
                gc.enable()  # also when loading failed: the server still answers health
            self._done.set()

    @property
    def ready(self) -> bool:
        return self._done.is_set() and self._error is None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until loading ends; True if every model is loaded."""
        self._done.wait(timeout)
        return self.ready

    def model(self, version: str) -> LoadedModel:
        return self._loaded[version]

    # -- requests -----------------------------------------------------------------------------

    def health(self) -> Reply:
        if self.ready:
            return Reply(200, {"status": "ready", "traffic": self.traffic})
        if self._error is not None:
            return Reply(503, {"status": "failed", "error": self._error})
        return Reply(503, {"status": "loading", "error": "models are still loading"})

    def choose_version(self) -> str:
        with self._rng_lock:
            return self._route_rng.choices(self._versions, weights=self._weights)[0]

    def predict(self, body: bytes, content_type: str | None, request_id: str) -> Reply:
        """Answer one predict request; never raises for bad input (4xx) or model errors (500)."""
        if not self.ready:
            return self.health()
        serving = self.config.serving
        try:
            instances, arrays = parse_request(
                body, content_type, self._schema, serving.max_instances
            )
        except RequestError as exc:
            return Reply(exc.status, {"error": exc.message})
        version = self.choose_version()
        try:
            outputs = self._batchers[version](arrays, len(instances))
        except Exception:
            logger.exception("request %s: model version '%s' failed", request_id, version)
            return Reply(
                500,
                {"error": f"internal error while predicting; see the server log ({request_id})"},
            )
        try:
            predictions_json = encode_predictions(
                outputs.arrays, serving.min_confidence, serving.abstain_label
            )
        except ValueError:  # e.g. a NaN probability: a model bug, not the client's
            logger.exception("request %s: predictions are not valid JSON", request_id)
            return Reply(500, {"error": f"internal error; see the server log ({request_id})"})
        try:
            self._maybe_log(request_id, version, instances, predictions_json, arrays)
        except (OSError, ValueError):
            # Monitoring loses this row; the client still gets its prediction.
            logger.exception("request %s: could not write the request log", request_id)
        encoded = b"".join(
            (
                b'{"predictions":',
                predictions_json,
                b',"model_version":',
                _json_bytes(version),
                b',"request_id":',
                _json_bytes(request_id),
                b"}",
            )
        )
        return Reply(200, None, {"X-Model-Version": version}, encoded)

    def explain(self, body: bytes, content_type: str | None, request_id: str) -> Reply:
        """Sampled Shapley attributions for each instance, in the shape of Vertex AI's `explain`
        response (`explanations[i].attributions[0].featureAttributions`, baseline and instance
        output values), with the predictions beside them."""
        if not self.ready:
            return self.health()
        import pandas as pd

        from mlops.artifacts import read_model_info
        from mlops.attributions import sampled_shapley

        try:
            instances, arrays = parse_request(
                body, content_type, self._schema, self.config.serving.max_instances
            )
        except RequestError as exc:
            return Reply(exc.status, {"error": exc.message})
        if self.config.features.image is not None:
            return Reply(501, {"error": IMAGE_EXPLAIN_NOTE})
        version = self.choose_version()
        model = self._loaded[version]
        info = read_model_info(model.model_dir)
        baseline = info.get("explanation_baseline")
        if baseline is None:
            return Reply(
                501, {"error": f"model version '{version}' records no explanation baseline"}
            )
        features = self.config.features
        rows = pd.DataFrame({name: list(arrays[name]) for name in features.raw_features})
        try:
            attributions, index, base = sampled_shapley(
                lambda a: model.predict_raw(a)["probabilities"],
                rows,
                {k: (float("nan") if v is None else v) for k, v in baseline.items()},
                features,
                paths=self.config.explain.paths,
            )
            predictions = model.predict(arrays)
        except Exception:
            logger.exception("request %s: explaining with version '%s' failed", request_id, version)
            return Reply(500, {"error": f"internal error; see the server log ({request_id})"})
        classes = info["classes"]
        explanations = []
        for i, prediction in enumerate(predictions):
            output = prediction["probabilities"][classes[int(index[i])]]
            explanations.append(
                {
                    "attributions": [
                        {
                            "baselineOutputValue": float(base[i]),
                            "instanceOutputValue": float(output),
                            "featureAttributions": dict(
                                zip(features.raw_features, attributions[i].tolist(), strict=True)
                            ),
                            "outputIndex": [int(index[i])],
                            "outputDisplayName": classes[int(index[i])],
                            "outputName": "probabilities",
                            "approximationError": 0.0,
                        }
                    ]
                }
            )
        return Reply(
            200,
            {
                "explanations": explanations,
                "predictions": predictions,
                "deployedModelId": version,
                "request_id": request_id,
            },
        )

    def _maybe_log(
        self,
        request_id: str,
        version: str,
        instances: list[dict[str, Any]],
        predictions_json: bytes,
        arrays: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        if self.request_log is None:
            return
        rate = self.config.serving.request_log_sample_rate
        with self._rng_lock:
            sampled = self._log_rng.random() < rate
        if not sampled:
            return
        if arrays is None or not self._redaction_changes_nothing(arrays):
            instances = [self._redactor.instance(instance) for instance in instances]
        record = {
            "request_id": request_id,
            "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
            "model_version": version,
            "instances": instances,
        }
        # The record with "predictions" last, without encoding them again. Its numbers are
        # the request's, finite once parsed, so orjson writes what json would.
        line = b"".join((_json_bytes(record)[:-1], b',"predictions":', predictions_json, b"}\n"))
        with self._log_lock:
            if self._log_file is None:
                self.request_log.parent.mkdir(parents=True, exist_ok=True)
                self._log_file = open(self.request_log, "ab")  # noqa: SIM115
            self._log_file.write(line)
            self._log_file.flush()

    def _redaction_changes_nothing(self, arrays: Mapping[str, np.ndarray]) -> bool:
        """True when the redactor would log a valid request's instances exactly as received:
        no feature has a privacy policy or a name to redact, there is no image, and no text
        among the request's categories (each distinct one checked once; `arrays` holds every
        string of the instances as sent) holds personal data. Numbers pass the redactor as
        they are. Saves a dict per instance."""
        if self._plain_features is None:
            features = self.config.features
            self._plain_features = features.image is None and all(
                name not in self._redactor.policies and redact_text(name) == name
                for name in features.raw_features
            )
        if not self._plain_features:
            return False
        for name in self.config.features.categorical:
            for text in set(arrays[name].tolist()):
                if redact_text(text) != text:
                    return False
        return True

    def close(self) -> None:
        with self._log_lock:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None


def abstain(
    predictions: list[dict[str, Any]], min_confidence: float, fallback: str | None
) -> list[dict[str, Any]]:
    """Below `min_confidence` the model abstains: the prediction keeps its probabilities and
    the model's choice (`model_label`) but its `label` is the configured fallback."""
    if min_confidence <= 0:
        return predictions
    out = []
    for prediction in predictions:
        confidence = max(prediction["probabilities"].values(), default=0.0)
        if confidence < min_confidence:
            prediction = {
                **prediction,
                "label": fallback,
                "model_label": prediction["label"],
                "abstained": True,
            }
        out.append(prediction)
    return out


# --------------------------------------------------------------------------------------------
# HTTP


@dataclass(frozen=True)
class Routes:
    health: str = DEFAULT_HEALTH_ROUTE
    predict: str = DEFAULT_PREDICT_ROUTE
    # Vertex serves `explain` itself from the model's explanation spec; this route is the local
    # server's equivalent, with the same response shape.
    explain: str = "/explain"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Routes:
        env = os.environ if env is None else env
        return cls(
            health=env.get("AIP_HEALTH_ROUTE") or DEFAULT_HEALTH_ROUTE,
            predict=env.get("AIP_PREDICT_ROUTE") or DEFAULT_PREDICT_ROUTE,
        )


def env_port(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    raw = env.get("AIP_HTTP_PORT") or str(DEFAULT_PORT)
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(f"AIP_HTTP_PORT must be a port number, got {raw!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"AIP_HTTP_PORT must be in [0, 65535], got {port}")
    return port


class PredictionServer(ThreadingHTTPServer):
    """One thread per connection; keeps count of requests in flight for a graceful stop."""

    daemon_threads = True
    request_queue_size = _LISTEN_BACKLOG

    def __init__(
        self, address: tuple[str, int], service: PredictionService, routes: Routes
    ) -> None:
        super().__init__(address, _Handler)
        self.service = service
        self.routes = routes
        self._in_flight = 0
        self._idle = threading.Condition()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def request_started(self) -> None:
        with self._idle:
            self._in_flight += 1

    def request_finished(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)


# Request ids: 128 random bits as 32 hex digits, like uuid4().hex, without a system call each.
_request_ids = random.Random()


# A header line email's parser reads as `name: value` and nothing more: a name of printable
# characters other than ":" (its headerRE), no "From " line, no folding, no CR or LF inside.
_PLAIN_HEADER = re.compile(r"(?!From )([\x21-\x39\x3b-\x7e]+):([^\r\n]*)\r?\n")


def _read_headers(rfile: Any, message_class: Any) -> Any:
    """`http.client.parse_headers(rfile, _class=message_class)`, line limits and errors
    included, without email's parser where every line is plain: each becomes the
    (name, value) pair that parser's compat32 policy stores for it (value without the spaces
    and tabs after the colon)."""
    lines = []
    while True:
        line = rfile.readline(http.client._MAXLINE + 1)
        if len(line) > http.client._MAXLINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > http.client._MAXHEADERS:
            raise http.client.HTTPException(f"got more than {http.client._MAXHEADERS} headers")
        if line in (b"\r\n", b"\n", b""):
            break
    text = b"".join(lines).decode("iso-8859-1")
    if lines[-1] != b"":
        pairs = [_PLAIN_HEADER.fullmatch(line.decode("iso-8859-1")) for line in lines[:-1]]
        if all(pairs):
            message = message_class()
            for match in pairs:
                message.set_raw(match.group(1), match.group(2).lstrip(" \t"))
            return message
    return email.parser.Parser(_class=message_class).parsestr(text)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mlops-serving/1"
    timeout = _SOCKET_TIMEOUT_S
    # Headers and body are two writes; with Nagle on, the second waits for the client's delayed
    # ACK (~40 ms per request).
    disable_nagle_algorithm = True
    server: PredictionServer

    def parse_request(self) -> bool:
        """http.server's `parse_request` (Python 3.11), but for how it reads the headers:
        plain `Name: value` lines go straight into the same `HTTPMessage` that email's parser
        would build from them (that parser took a tenth of a 1-row request); anything else
        (folded lines, odd names, a stray CR) goes through email's parser as before."""
        self.command = None
        self.request_version = version = self.default_request_version
        self.close_connection = True
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        self.requestline = requestline
        words = requestline.split()
        if len(words) == 0:
            return False
        if len(words) >= 3:  # enough to determine the protocol version
            version = words[-1]
            try:
                if not version.startswith("HTTP/"):
                    raise ValueError
                base_version_number = version.split("/", 1)[1]
                numbers = base_version_number.split(".")
                if len(numbers) != 2:
                    raise ValueError
                if any(not part.isdigit() or len(part) > 10 for part in numbers):
                    raise ValueError
                version_number = int(numbers[0]), int(numbers[1])
            except (ValueError, IndexError):
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({version!r})")
                return False
            if version_number >= (1, 1) and self.protocol_version >= "HTTP/1.1":
                self.close_connection = False
            if version_number >= (2, 0):
                self.send_error(
                    HTTPStatus.HTTP_VERSION_NOT_SUPPORTED,
                    f"Invalid HTTP version ({base_version_number})",
                )
                return False
            self.request_version = version
        if not 2 <= len(words) <= 3:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({requestline!r})")
            return False
        command, path = words[:2]
        if len(words) == 2:
            self.close_connection = True
            if command != "GET":
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad HTTP/0.9 request type ({command!r})")
                return False
        self.command, self.path = command, path
        if self.path.startswith("//"):  # gh-87389: no open redirect through "//path"
            self.path = "/" + self.path.lstrip("/")
        try:
            self.headers = _read_headers(self.rfile, self.MessageClass)
        except http.client.LineTooLong as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", str(err))
            return False
        except http.client.HTTPException as err:
            self.send_error(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers", str(err)
            )
            return False
        conntype = self.headers.get("Connection", "").lower()
        if conntype == "close":
            self.close_connection = True
        elif conntype == "keep-alive" and self.protocol_version >= "HTTP/1.1":
            self.close_connection = False
        expect = self.headers.get("Expect", "")
        if (
            expect.lower() == "100-continue"
            and self.protocol_version >= "HTTP/1.1"
            and self.request_version >= "HTTP/1.1"
        ):
            return self.handle_expect_100()
        return True

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch()

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch()

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch()

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._dispatch()

    def _dispatch(self) -> None:
        self.server.request_started()
        request_id = f"{_request_ids.getrandbits(128):032x}"
        # Bytes of the request body not read yet (None: unknown, e.g. chunked).
        self._unread: int | None = self._declared_length()
        try:
            reply = self._route(request_id)
        except RequestError as exc:
            reply = Reply(exc.status, {"error": exc.message})
        except TimeoutError:
            reply = Reply(408, {"error": "timed out reading the request body"})
            self._unread = None
        except Exception:
            logger.exception("request %s failed", request_id)
            reply = Reply(
                500, {"error": f"internal server error; see the server log ({request_id})"}
            )
        try:
            self._send(reply, request_id)
            if self._unread != 0:
                self._linger()
        except OSError:
            self.close_connection = True  # the client went away
        finally:
            self.server.request_finished()

    def _route(self, request_id: str) -> Reply:
        routes = self.server.routes
        path = urlsplit(self.path).path
        method = self.command
        if path == routes.health:
            if method not in ("GET", "HEAD"):
                raise _method_not_allowed(method, path, "GET")
            return self.server.service.health()
        if path == routes.predict:
            if method != "POST":
                raise _method_not_allowed(method, path, "POST")
            body = self._read_body()
            return self.server.service.predict(body, self.headers.get("Content-Type"), request_id)
        if path == routes.explain:
            if method != "POST":
                raise _method_not_allowed(method, path, "POST")
            body = self._read_body()
            return self.server.service.explain(body, self.headers.get("Content-Type"), request_id)
        raise RequestError(
            404,
            f"unknown route '{path}'; routes: GET {routes.health} (health), "
            f"POST {routes.predict} (predict), POST {routes.explain} (explain)",
        )

    def _declared_length(self) -> int | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return None
        raw = self.headers.get("Content-Length")
        if raw is None:
            return 0
        try:
            length = int(raw)
        except ValueError:
            return None
        return length if length >= 0 else None

    def _read_body(self) -> bytes:
        limit = self.server.service.config.serving.max_body_bytes
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise RequestError(
                411, "Content-Length required; chunked transfer encoding is not supported"
            )
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise RequestError(411, "Content-Length required")
        length = self._unread
        if length is None:
            raise RequestError(
                400, f"invalid Content-Length {raw!r}; expected a non-negative integer"
            )
        if length > limit:
            # Read the body before answering: a client that sends all of it before it reads
            # (most do) would otherwise get a broken pipe instead of this 413.
            if length <= _DISCARD_LIMIT_BYTES:
                self._discard_body()
            self.close_connection = True
            raise RequestError(
                413,
                f"body of {length} bytes exceeds the limit of {limit} bytes "
                "(serving.max_body_bytes); send fewer instances per request",
            )
        body = self.rfile.read(length)
        self._unread = 0
        if len(body) != length:
            self.close_connection = True
            raise RequestError(400, f"body ended after {len(body)} of {length} bytes")
        return body

    def _discard_body(self) -> None:
        """Read and drop the declared body (as long as the client keeps sending, up to
        `_DISCARD_TIMEOUT_S` in all); `_unread` keeps what is left if it stops early."""
        deadline = time.monotonic() + _DISCARD_TIMEOUT_S
        while self._unread and time.monotonic() < deadline:
            try:
                chunk = self.rfile.read1(min(self._unread, 65536))
            except TimeoutError:  # the client stalled: answer 413 all the same
                break
            if not chunk:
                break
            self._unread -= len(chunk)

    def _send(self, reply: Reply, request_id: str) -> None:
        try:
            if reply.encoded is not None:
                data = reply.encoded
            else:
                body = dict(reply.body)
                if reply.status >= 400:
                    body.setdefault("request_id", request_id)
                data = _json(body).encode("utf-8")
        except ValueError:  # e.g. a NaN probability: a model bug, not the client's
            logger.exception("request %s: response is not valid JSON", request_id)
            reply = Reply(500, {"error": f"internal error; see the server log ({request_id})"})
            data = json.dumps({**reply.body, "request_id": request_id}).encode("utf-8")
        if self._unread != 0:
            self.close_connection = True
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Request-Id", request_id)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        # Headers and body in one write (http.server's end_headers, plus the body).
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(data)
        self.flush_headers()

    def _linger(self) -> None:
        """Close after the response without resetting the connection: stop writing, then read
        and discard what the client still sends (bounded in bytes and time)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_WR)
            budget = _DRAIN_LIMIT_BYTES if self._unread is None else self._unread
            budget = min(budget, _DRAIN_LIMIT_BYTES)
            deadline = time.monotonic() + _DRAIN_TIMEOUT_S
            self.connection.settimeout(_DRAIN_TIMEOUT_S)
            while budget > 0 and time.monotonic() < deadline:
                chunk = self.rfile.read1(min(budget, 65536))
                if not chunk:
                    break
                budget -= len(chunk)
        except OSError:
            pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (malformed request line, unknown method, ...) as JSON 4xx."""
        if code == 501:  # unknown method: a client error, not a missing server feature
            code, message = 405, f"method {self.command!r} is not allowed"
        elif code >= 500:
            code = 400
        self.close_connection = True
        data = json.dumps({"error": message or explain or "bad request"}).encode("utf-8")
        try:
            self.send_response(code, message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD" and code >= 200 and code not in (204, 304):
                self.wfile.write(data)
        except OSError:
            pass

    _date: tuple[int, str] = (0, "")

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header, formatted once per second rather than per response."""
        if timestamp is not None:
            return super().date_time_string(timestamp)
        now = int(time.time())
        second, text = _Handler._date
        if second != now:
            text = super().date_time_string(now)
            _Handler._date = (now, text)
        return text

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s - %s", self.address_string(), format % args)


def _method_not_allowed(method: str, path: str, allowed: str) -> RequestError:
    return RequestError(405, f"method {method} is not allowed on {path}; use {allowed}")


def make_server(
    service: PredictionService, host: str, port: int, routes: Routes | None = None
) -> PredictionServer:
    """Bind the HTTP server (port 0 picks a free one); `serve_forever` it; start the service."""
    return PredictionServer((host, port), service, routes or Routes.from_env())


def _ensure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")


def serve(
    models: Mapping[str, str],
    traffic: Mapping[str, int],
    config: PipelineConfig,
    host: str = "0.0.0.0",
    port: int | None = None,
    request_log: str | Path | None = None,
    ready_event: threading.Event | None = None,
    *,
    seed: int | None = None,
    routes: Routes | None = None,
    stop_event: threading.Event | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (handled when called from the main thread) or `stop_event`.

    `port` None reads `AIP_HTTP_PORT`; routes come from `AIP_HEALTH_ROUTE`/`AIP_PREDICT_ROUTE`
    unless given. `ready_event` is set once every model is loaded (health answers 200); it stays
    unset if loading fails (health then answers 503 with the error).
    """
    _ensure_logging()
    service = PredictionService(models, traffic, config, request_log, seed)
    server = make_server(service, host, env_port() if port is None else port, routes)
    routes = server.routes
    previous: dict[int, Any] = {}

    def stop(signum: int, _frame: Any) -> None:
        logger.info("received %s; shutting down", signal.Signals(signum).name)
        # shutdown() waits for serve_forever, which runs in this (the signalled) thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, stop)
    finished = threading.Event()
    if stop_event is not None:

        def watch() -> None:
            while not finished.is_set():
                if stop_event.wait(0.2):
                    server.shutdown()
                    return

        threading.Thread(target=watch, name="stop-watcher", daemon=True).start()
    try:
        # The port actually bound (port 0 picks one); health answers 503 until models load.
        logger.info(
            "serving on http://%s:%d (health %s, predict %s)",
            host,
            server.port,
            routes.health,
            routes.predict,
        )
        logger.info("loading models %s; traffic %s", service.models, service.traffic)
        service.freeze_gc = True
        service.start(on_ready=ready_event.set if ready_event is not None else None)
        server.serve_forever(poll_interval=0.2)
    finally:
        finished.set()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if not server.wait_idle(_SHUTDOWN_GRACE_S):
            logger.warning("stopping with requests still in flight")
        server.server_close()
        service.close()
        logger.info("stopped")


# --------------------------------------------------------------------------------------------
# Request log


def _as_utc(value: str | dt.datetime | None) -> Any:
    import pandas as pd

    if value is None:
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _log_files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    files: list[Path] = []
    for item in map(Path, items):
        files.extend(sorted(item.glob("*.jsonl")) if item.is_dir() else [item])
    return files


def read_request_log(
    paths: str | Path | Iterable[str | Path],
    since: str | dt.datetime | None = None,
    until: str | dt.datetime | None = None,
    *,
    features: FeatureConfig | None = None,
) -> Any:
    """Logged requests as a pandas DataFrame, one row per instance, in [since, until).

    Columns: the raw features as received (given `features`: exactly those, numeric as float64
    with NaN, categorical as str with "" per `raw_features`), then `__request_id__`,
    `__timestamp__` (UTC), `__model_version__` and `__predicted_label__`. `paths` may be files
    or directories of `*.jsonl`; naive `since`/`until` are taken as UTC.
    """
    import pandas as pd

    from mlops.features import category_text

    start, end = _as_utc(since), _as_utc(until)
    rows: list[dict[str, Any]] = []
    for path in _log_files(paths):
        lines = path.read_text(encoding="utf-8").split("\n")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                if number == len(lines):
                    continue  # a last line cut short by a crash mid-write
                raise ValueError(f"{path}:{number}: not a request log record: {exc}") from None
            stamp = _as_utc(record["timestamp"])
            if (start is not None and stamp < start) or (end is not None and stamp >= end):
                continue
            for instance, prediction in zip(
                record["instances"], record["predictions"], strict=True
            ):
                rows.append(
                    {
                        **instance,
                        "__request_id__": record["request_id"],
                        "__timestamp__": stamp,
                        "__model_version__": record["model_version"],
                        "__predicted_label__": prediction["label"],
                        "__abstained__": bool(prediction.get("abstained", False)),
                    }
                )
    frame = pd.DataFrame(rows)
    if features is None:
        names = [c for c in frame.columns if c not in META_COLUMNS]
    else:
        names = features.raw_features
        for name in names:
            if name not in frame:
                frame[name] = None
        for name in features.numeric:
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
        for name in features.categorical:
            frame[name] = [category_text(v) for v in frame[name].tolist()]
    for name in META_COLUMNS:
        if name not in frame:
            frame[name] = pd.Series(dtype="datetime64[ns, UTC]" if "timestamp" in name else object)
    return frame[[*names, *META_COLUMNS]].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Command line


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"{flag} expects VERSION=VALUE, got {item!r}")
        out[key] = value
    return out


def _config_from_args(args: argparse.Namespace, models: Mapping[str, str]) -> PipelineConfig:
    if args.config_json:
        text = args.config_json
        if not text.lstrip().startswith("{"):
            text = Path(text).read_text(encoding="utf-8")
        return PipelineConfig.from_json(text)
    if args.config:
        return load_config(args.config)
    return config_from_model(next(iter(models.values())))


def config_from_model(model_dir: str) -> PipelineConfig:
    """The pipeline config that training saved in the model (works for gs:// model dirs too;
    a local one is read without importing TensorFlow)."""
    from mlops.artifacts import MODEL_CONFIG_FILE, MODEL_EXTRA_DIR

    text = _read_model_text(str(model_dir), MODEL_CONFIG_FILE)
    if text is None:
        path = f"{str(model_dir).rstrip('/')}/{MODEL_EXTRA_DIR}/{MODEL_CONFIG_FILE}"
        raise ValueError(f"no --config given and the model has no saved config at {path}")
    return PipelineConfig.from_json(text)


def _models_from_args(
    args: argparse.Namespace, env: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, int]]:
    deployed = env.get("AIP_DEPLOYED_MODEL_ID")
    if args.model:
        models = _pairs(args.model, "--model")
    elif args.model_dir:
        models = {args.model_version or deployed or LOCAL_VERSION_LABEL: args.model_dir}
    elif env.get("AIP_STORAGE_URI"):
        models = {args.model_version or deployed or VERTEX_VERSION_LABEL: env["AIP_STORAGE_URI"]}
    else:
        raise ValueError(
            "no model: pass --model-dir DIR (or --model VERSION=DIR) or set AIP_STORAGE_URI"
        )
    if args.traffic:
        traffic = {}
        for version, percent in _pairs(args.traffic, "--traffic").items():
            try:
                traffic[version] = int(percent)
            except ValueError:
                raise ValueError(
                    f"--traffic {version}={percent}: expected an integer percent"
                ) from None
    elif len(models) == 1:
        traffic = {next(iter(models)): 100}
    else:
        raise ValueError(f"several models {sorted(models)} need --traffic VERSION=PERCENT for each")
    return models, traffic


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; reads the AIP_* environment variables when it runs."""
    parser = argparse.ArgumentParser(
        prog="python -m mlops.serving",
        description="Online prediction server (Vertex AI custom-container contract).",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--config",
        help="pipeline config YAML (e.g. configs/penguins.yaml); default: the config saved "
        "inside the (first) model directory by training",
    )
    source.add_argument("--config-json", help="pipeline config as JSON text or a JSON file path")
    parser.add_argument("--model-dir", help="SavedModel dir (default: $AIP_STORAGE_URI)")
    parser.add_argument(
        "--model-version",
        help="version label for --model-dir (default: $AIP_DEPLOYED_MODEL_ID, else 'local', "
        "or 'vertex' for $AIP_STORAGE_URI)",
    )
    parser.add_argument(
        "--model", action="append", default=[], metavar="VERSION=DIR", help="serve several versions"
    )
    parser.add_argument(
        "--traffic", action="append", default=[], metavar="VERSION=PERCENT", help="traffic split"
    )
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, help=f"default: $AIP_HTTP_PORT or {DEFAULT_PORT}")
    parser.add_argument("--request-log", help="JSON Lines file for sampled requests")
    parser.add_argument("--seed", type=int, help="seed for traffic routing and log sampling")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    # TensorFlow's C++ INFO lines (CUDA probing, CPU features) say nothing to a server operator.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    # Hand the GIL between threads every 1 ms instead of 5 ms: a request thread waiting for the
    # GIL while another thread runs Python waits up to this long.
    sys.setswitchinterval(0.001)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    env = os.environ
    try:
        models, traffic = _models_from_args(args, env)
        config = _config_from_args(args, models)
        port = env_port(env) if args.port is None else args.port
        check_traffic(models, traffic)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    serve(models, traffic, config, args.host, port, args.request_log, seed=args.seed)
    return 0
