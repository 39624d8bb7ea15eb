"""Batch prediction: a Beam pipeline over CSV / JSON Lines / Parquet files that writes one JSON
line per input row, keyed by the row's id. Rows move in columnar chunks, are converted by the
raw-feature contract training used (`frame_to_arrays`) and reach the model through the online
server's loader, so batch and online predictions agree."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np

from mlops.artifacts import BATCH_SUMMARY_FILE, PREDICTIONS_PREFIX
from mlops.config import FeatureConfig, PipelineConfig, local_path
from mlops.io import atomic_dir, to_beam_uri, uri_exists, write_json_atomic
from mlops.tabular import detect_format


class BatchPredictError(ValueError):
    pass


class ReadChunks(beam.DoFn):
    """One input file as frames of `chunk_rows` rows, streamed (memory is one chunk, not the
    file): pandas' CSV parser as Beam's own CSV reader uses it, Parquet record batches, and JSON
    Lines parsed line by line, where a row missing a feature is an error, not a missing value."""

    def __init__(self, fmt: str, chunk_rows: int, required: list[str]) -> None:
        self._fmt = fmt
        self._chunk_rows = chunk_rows
        self._required = required

    def process(self, path: str):
        import pandas as pd
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.open(path) as handle:  # gzip is undone by the file's extension
            if self._fmt == "csv":
                yield from pd.read_csv(handle, chunksize=self._chunk_rows)
            elif self._fmt == "parquet":
                import pyarrow.parquet as pq

                for batch in pq.ParquetFile(handle).iter_batches(batch_size=self._chunk_rows):
                    yield batch.to_pandas()
            else:
                records: list[dict[str, Any]] = []
                for line in handle:
                    if line.strip():
                        records.append(_json_row(line, self._required))
                    if len(records) == self._chunk_rows:
                        yield pd.DataFrame.from_records(records)
                        records = []
                if records:
                    yield pd.DataFrame.from_records(records)


def _json_row(line: bytes, required: list[str]) -> dict[str, Any]:
    record = json.loads(line)
    if not isinstance(record, dict):
        raise BatchPredictError(f"a JSON Lines row is {type(record).__name__}, not an object")
    missing = [name for name in required if name not in record]
    if missing:
        raise BatchPredictError(
            f"row {record.get(required[0])!r}: columns {missing} are missing (the id column "
            f"{required[0]!r} and the raw features are required)"
        )
    return record


def _check_numbers(
    frame: Any, arrays: dict[str, np.ndarray], features: FeatureConfig, ids: np.ndarray
) -> None:
    """A numeric feature's value that is not a number fails the job naming the row, rather
    than being predicted as missing."""
    import pandas as pd

    for name in features.numeric:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column.dtype):
            continue
        bad = np.flatnonzero(column.notna().to_numpy() & np.isnan(arrays[name]))
        if len(bad):
            first = int(bad[0])
            row_id = ids[first].item() if hasattr(ids[first], "item") else ids[first]
            raise BatchPredictError(
                f"row {row_id!r}: feature {name!r} is {column.iloc[first]!r}, not a number "
                f"({len(bad)} such value(s) in this chunk); fix or blank them"
            )


class PredictChunks(beam.DoFn):
    """Loads the SavedModel once per worker, converts each frame with the raw-feature contract
    training and the server use (`frame_to_arrays`), calls the model on slices of `batch_size`
    rows and yields each chunk's predictions as JSON Lines text."""

    def __init__(
        self, model_dir: str, features: FeatureConfig, id_column: str, batch_size: int
    ) -> None:
        self._model_dir = model_dir
        self._features = features
        self._id_column = id_column
        self._batch_size = batch_size

    def setup(self) -> None:
        from mlops.serving.server import load_model

        self._model = load_model(self._model_dir)

    @property
    def id_column(self) -> str:
        return self._id_column

    def process(self, frame: Any):
        predicted = self.predict(*self.prepare(frame))
        if predicted is not None:
            yield chunk_text(self._id_column, *predicted)

    def prepare(self, frame: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The frame's ids and model inputs (`frame_to_arrays`), checked."""
        from mlops.features import frame_to_arrays

        missing = [c for c in [self._id_column, *self._features.raw_features] if c not in frame]
        if missing:
            raise BatchPredictError(
                f"input columns {missing} are missing (the id column {self._id_column!r} and "
                f"the raw features are required); columns are {list(frame.columns)}"
            )
        ids = frame[self._id_column].to_numpy()
        arrays = frame_to_arrays(frame, self._features)
        _check_numbers(frame, arrays, self._features, ids)
        return ids, arrays

    def predict(
        self, ids: np.ndarray, arrays: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, list[dict[str, np.ndarray]]] | None:
        """The ids and the model's outputs for consecutive `batch_size` slices (None when there
        are no rows). The first slice brings every output; the others only the probabilities
        and the predicted class's index when the first shows that the label is the class at
        that index (copying the tiled class names and the labels out of TensorFlow costs a
        Python object per value), else the probabilities and the labels."""
        size = self._batch_size
        if not len(ids):
            return None
        first = self._model.predict_raw({name: values[:size] for name, values in arrays.items()})
        wanted = {"probabilities", _INDEX if _labels_are_indexed(first) else _LABEL}
        outputs = [first] + [
            self._model.predict_raw(
                {name: values[start : start + size] for name, values in arrays.items()}, wanted
            )
            for start in range(size, len(ids), size)
        ]
        return ids, outputs


_LABEL = "predicted_label"
_INDEX = "predicted_index"


def _labels_are_indexed(out: dict[str, np.ndarray]) -> bool:
    """True when the model's label is its class name at `predicted_index` on every row of
    `out` (so the index alone gives the label)."""
    index = out.get(_INDEX)
    if index is None or index.ndim != 1 or index.dtype.kind not in "iu" or not len(index):
        return False
    classes = out["classes"][0]
    if index.min() < 0 or index.max() >= len(classes):
        return False
    return np.array_equal(classes[index], out[_LABEL])


def chunk_text(id_column: str, ids: np.ndarray, outputs: list[dict[str, np.ndarray]]) -> str:
    """The JSON Lines of one chunk (no final newline) from the model's outputs for its
    consecutive slices."""
    return b"\n".join(chunk_blocks(id_column, ids, outputs)).decode("utf-8")


def chunk_blocks(
    id_column: str, ids: np.ndarray, outputs: list[dict[str, np.ndarray]]
) -> list[bytes | memoryview]:
    """`chunk_text` as UTF-8 blocks to join with newlines, left in Arrow's buffer where it built
    them: one block over the whole chunk when every slice would take its column-wise path (the
    lines are the same, a call per slice costs more), else one per slice. A slice's labels are
    its `predicted_index` into the first slice's class names where it has one (see
    `PredictChunks.predict`), else its `predicted_label`."""
    class_names = [name.decode("utf-8") for name in outputs[0]["classes"][0].tolist()]
    probabilities = [out["probabilities"] for out in outputs]
    id_text = _json_id_column(ids)
    if id_text is not None and all(np.isfinite(p).all() for p in probabilities):
        if all(_INDEX in out for out in outputs):
            import pyarrow as pa
            import pyarrow.compute as pc

            index = np.concatenate([out[_INDEX] for out in outputs])
            label_text = pc.take(pa.array([json.dumps(n) for n in class_names]), pa.array(index))
        else:
            labels = np.concatenate([_labels(out, class_names) for out in outputs])
            label_text = _label_text(_decoded(labels))
        return [
            _prediction_bytes(
                id_column, id_text, label_text, class_names, np.concatenate(probabilities)
            )
        ]
    blocks: list[bytes | memoryview] = []
    start = 0
    for out in outputs:
        stop = start + len(out["probabilities"])
        blocks.append(
            prediction_bytes(
                id_column,
                ids[start:stop],
                _decoded(_labels(out, class_names)),
                class_names,  # one model: every slice has the same classes
                out["probabilities"],
            )
        )
        start = stop
    return blocks


def _labels(out: dict[str, np.ndarray], class_names: list[str]) -> np.ndarray:
    """A slice's labels as UTF-8 bytes: its `predicted_label`, else the class names at its
    `predicted_index`."""
    if _LABEL in out:
        return out[_LABEL]
    names = np.array([n.encode("utf-8") for n in class_names], dtype=object)
    return names[out[_INDEX]]


def _decoded(labels: np.ndarray) -> np.ndarray:
    """UTF-8 bytes labels as an object array of str, decoded once per distinct label."""
    import pandas as pd

    codes, uniques = pd.factorize(labels)
    return np.array([u.decode("utf-8") for u in uniques], dtype=object)[codes]


def prediction_text(
    id_column: str,
    ids: np.ndarray,
    labels: list[str] | np.ndarray,
    class_names: list[str],
    probabilities: np.ndarray,
) -> str:
    """`prediction_bytes` as text."""
    return bytes(prediction_bytes(id_column, ids, labels, class_names, probabilities)).decode()


def prediction_bytes(
    id_column: str,
    ids: np.ndarray,
    labels: list[str] | np.ndarray,
    class_names: list[str],
    probabilities: np.ndarray,
) -> bytes | memoryview:
    """One JSON object per row and line, `{id_column: id, "label": ..., "probabilities":
    {class: p}}` with sorted keys, as `json.dumps(..., sort_keys=True)` writes it. The lines are
    assembled column-wise by Arrow: serialising a dict per row would cost more than the model
    call. Values Arrow's plain formatting cannot write as JSON (NaN, ids that need escaping or are
    neither integers nor text) take the per-row path."""
    id_text = _json_id_column(ids)
    if id_text is None or not np.isfinite(probabilities).all():
        return "\n".join(
            _prediction_lines(id_column, ids.tolist(), labels, class_names, probabilities)
        ).encode("utf-8")
    return _prediction_bytes(id_column, id_text, _label_text(labels), class_names, probabilities)


def _label_text(labels: list[str] | np.ndarray) -> Any:
    """The labels as JSON strings in an Arrow array, each distinct one written once."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    inverse, unique = pd.factorize(np.asarray(labels, dtype=object))
    return pc.take(pa.array([json.dumps(str(u)) for u in unique]), pa.array(inverse))


def _prediction_bytes(
    id_column: str,
    id_text: Any,
    label_text: Any,
    class_names: list[str],
    probabilities: np.ndarray,
) -> memoryview:
    """`prediction_bytes`' column-wise path, for finite probabilities: `id_text` and
    `label_text` hold each row's id and label as JSON (`_json_id_column`, `_label_text`)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    order = sorted(range(len(class_names)), key=class_names.__getitem__)
    inner: list[Any] = []
    for position, i in enumerate(order):
        inner.append(("{" if position == 0 else ", ") + json.dumps(class_names[i]) + ": ")
        inner.append(pc.cast(pa.array(probabilities[:, i].astype(np.float64)), pa.string()))
    inner.append("}")
    fields = {id_column: [id_text], "label": [label_text], "probabilities": inner}
    parts: list[Any] = []
    for position, key in enumerate(sorted(fields)):
        parts.append(("{" if position == 0 else ", ") + json.dumps(key) + ": ")
        parts.extend(fields[key])
    parts.append("}\n")
    joined = pc.binary_join_element_wise(
        *(pa.scalar(p) if isinstance(p, str) else p for p in parts), ""
    )
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int32)
    data = joined.buffers()[2]
    return memoryview(data)[offsets[0] : offsets[len(joined)] - 1]  # UTF-8, no final newline


def _json_id_column(ids: np.ndarray) -> Any:
    """The ids as JSON text, column-wise, or None when some id needs the per-row path."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if ids.dtype.kind in "iu":
        return pc.cast(pa.array(ids), pa.string())
    if ids.dtype == object and all(type(v) is str for v in ids):
        text = pa.array(ids, pa.string())
        if pc.any(pc.match_substring_regex(text, r'["\\\x00-\x1f\x7f]')).as_py():
            return None
        return pc.binary_join_element_wise(pa.scalar('"'), text, pa.scalar('"'), "")
    return None


def _prediction_lines(
    id_column: str,
    ids: list[Any],
    labels: list[str],
    class_names: list[str],
    probabilities: np.ndarray,
) -> list[str]:
    """One JSON object per row, `{id_column: id, "label": ..., "probabilities": {class: p}}`
    with sorted keys (NaN, which JSON lacks, as null)."""
    import orjson

    option = orjson.OPT_SORT_KEYS
    return [
        orjson.dumps(
            {
                id_column: row_id,
                "label": label,
                "probabilities": dict(zip(class_names, row, strict=True)),
            },
            option=option,
        ).decode()
        for row_id, label, row in zip(ids, labels, probabilities.tolist(), strict=True)
    ]


def _check_header(source: str, fmt: str, id_column: str, features: FeatureConfig) -> None:
    """Fail before launching workers when the columns are wrong (CSV/Parquet headers)."""
    columns: list[str] | None = None
    if "://" in source:
        return
    if fmt == "csv":
        import csv

        with open(source, newline="") as handle:
            columns = next(csv.reader(handle), [])
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        columns = pq.read_schema(source).names
    if columns is None:
        return
    missing = [c for c in [id_column, *features.raw_features] if c not in columns]
    if missing:
        raise BatchPredictError(
            f"{source}: columns {missing} are missing (id column {id_column!r} and the raw "
            f"features are required); columns are {columns}"
        )


def run_batch_predict(
    config: PipelineConfig,
    model_dir: str | Path,
    source: str,
    output_dir: str | Path,
    id_column: str,
    batch_size: int = 1024,
    chunk_rows: int = 16384,
) -> dict[str, Any]:
    """Predict every row of `source` (a file or a glob of files) into
    `output_dir/predictions-*.jsonl` (Beam, runner from `config.beam_args`; Beam's local
    runners on one worker run the same DoFns in this process, see `_runs_in_process`); returns
    {rows, files, model_dir}. Rows travel in chunks of `chunk_rows` and reach the model `batch_size` at
    a time, so the only per-row work is writing the JSON line. `batch_size` is kept as given:
    float32 outputs move in the last bits with the rows a call groups. Beam gets /gcs/ paths as
    gs:// URIs, which Dataflow workers can open."""
    from apache_beam.io.filesystems import FileSystems

    source = local_path(source)
    pattern = any(c in source for c in "*?[")
    if not pattern and not uri_exists(source):
        raise BatchPredictError(f"batch input {source!r} does not exist")
    files = sorted(m.path for m in FileSystems.match([to_beam_uri(source)])[0].metadata_list)
    if not files:
        raise BatchPredictError(f"batch input {source!r} matches no file")
    formats = {path: detect_format(path, "auto") for path in files}
    if len(set(formats.values())) > 1:
        raise BatchPredictError(
            f"batch input {source!r} mixes formats {sorted(set(formats.values()))}: {formats}"
        )
    fmt = formats[files[0]]
    features = config.features
    if not pattern:
        _check_header(source, fmt, id_column, features)
    options = beam.options.pipeline_options.PipelineOptions(config.beam_args)
    reader = ReadChunks(fmt, chunk_rows, [id_column, *features.raw_features])
    predictor = PredictChunks(to_beam_uri(model_dir), features, id_column, batch_size)
    with atomic_dir(output_dir) as out, _unwrapped_errors():
        if _runs_in_process(options):
            rows = _predict_in_process(files, reader, predictor, out / _SINGLE_SHARD)
        else:
            _predict_on_beam(options, files, reader, predictor, out)
            rows = None
        names = sorted(p.name for p in out.glob(f"{PREDICTIONS_PREFIX}*.jsonl"))
        if rows is None:  # the lines WriteToText wrote
            rows = sum(_count_lines(out / name) for name in names)
        summary = {
            "rows": rows,
            "files": names,
            "model_dir": str(model_dir),
            "source": source,
        }
        write_json_atomic(out / BATCH_SUMMARY_FILE, summary)
    return summary


# The one file WriteToText names when it writes a single shard.
_SINGLE_SHARD = f"{PREDICTIONS_PREFIX}-00000-of-00001.jsonl"
_IN_PROCESS_RUNNERS = {"DirectRunner", "FnApiRunner", "BundleBasedDirectRunner"}


def _runs_in_process(options: Any) -> bool:
    """True for Beam's local runners on one worker: there the job runs its DoFns itself
    (`_predict_in_process`) rather than through a runner, whose per-bundle setup, pickled
    chunks and Reshuffle spread nothing over one worker. Dataflow and any runner asked for more
    workers get the Beam pipeline."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    name = runner if isinstance(runner, str) else type(runner).__name__
    workers = options.view_as(DirectOptions).direct_num_workers
    return name.rsplit(".", 1)[-1] in _IN_PROCESS_RUNNERS and workers in (None, 1)


def _predict_in_process(
    files: list[str], reader: ReadChunks, predictor: PredictChunks, path: Path
) -> int:
    """The pipeline's DoFns without a runner, writing what WriteToText writes for one shard
    (each chunk's text and a newline, in input order); returns the number of lines. Three
    threads pass chunks along bounded queues (at most a dozen chunks are in memory): one reads
    and converts them (`ReadChunks`, `PredictChunks.prepare`), this one loads the model and
    then calls it, and one writes each chunk's JSON Lines. Pandas' and Arrow's parsers, Arrow's
    kernels and TensorFlow let go of the GIL, so reading and converting overlap the model load,
    and writing chunk k overlaps the model calls of chunk k+1. An error in any thread stops the
    others and is raised here, the first in input order for bad input (chunks are read and
    converted in order)."""
    import threading

    from apache_beam.io.filesystems import FileSystems

    stop = threading.Event()
    prepared = _Handoff(stop, 8)  # read ahead while the model loads
    predicted = _Handoff(stop)
    lines = 0
    failed: list[BaseException] = []

    def read() -> None:
        try:
            for name in files:
                for frame in reader.process(name):
                    if not prepared.put(predictor.prepare(frame)):
                        return
            prepared.put(_END)
        except BaseException as exc:  # raised again by the model's thread
            prepared.put(exc)

    def write(handle: Any) -> None:
        nonlocal lines
        try:
            while (item := predicted.get()) is not _END:
                if item is None:  # stopped
                    return
                for block in chunk_blocks(predictor.id_column, *item):
                    handle.write(block)
                    handle.write(b"\n")
                lines += len(item[0])
        except BaseException as exc:  # raised again by the model's thread
            failed.append(exc)
            stop.set()

    reading = threading.Thread(target=read, name="batch-predict-read", daemon=True)
    reading.start()
    try:
        predictor.setup()
        with FileSystems.create(to_beam_uri(path)) as handle:
            writing = threading.Thread(
                target=write, args=(handle,), name="batch-predict-write", daemon=True
            )
            writing.start()
            try:
                while (item := prepared.get()) is not _END:
                    if isinstance(item, BaseException):
                        raise item
                    if item is None:  # the writer stopped
                        break
                    result = predictor.predict(*item)
                    if result is not None and not predicted.put(result):
                        break
                predicted.put(_END)
            except BaseException:
                stop.set()
                raise
            finally:  # the writer is done with the file before it is closed
                writing.join()
            if failed:
                raise failed[0]
    finally:
        stop.set()
        reading.join()
    return lines


_END = object()


class _Handoff:
    """A bounded queue between two of `_predict_in_process`' threads that gives up once `stop`
    is set: `put` then returns False and `get` None."""

    def __init__(self, stop: Any, size: int = 4) -> None:
        import queue

        self._queue: queue.Queue[Any] = queue.Queue(maxsize=size)
        self._stop = stop

    def put(self, item: Any) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(self) -> Any:
        import queue

        while not self._stop.is_set():
            try:
                return self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
        return None


def _predict_on_beam(
    options: Any, files: list[str], reader: ReadChunks, predictor: PredictChunks, out: Path
) -> None:
    with beam.Pipeline(options=options) as pipeline:
        _ = (
            pipeline
            | "Files" >> beam.Create(files)
            | "ReadChunks" >> beam.ParDo(reader)
            | "Spread" >> beam.Reshuffle()  # one big file's chunks over every worker
            | "Predict" >> beam.ParDo(predictor)
            | "Write"
            >> beam.io.WriteToText(to_beam_uri(out / PREDICTIONS_PREFIX), file_name_suffix=".jsonl")
        )


@contextlib.contextmanager
def _unwrapped_errors():
    """Our own error raised on a Beam worker, as itself: the runner wraps it in its own
    exception with the worker's traceback around the one line that matters."""
    try:
        yield
    except BatchPredictError:
        raise
    except Exception as exc:
        found = re.search(r"BatchPredictError: (.+)", str(exc))
        if found is None:
            raise
        raise BatchPredictError(found.group(1).strip()) from exc


def _count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))


def read_predictions(output_dir: str | Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(Path(output_dir).glob(f"{PREDICTIONS_PREFIX}*.jsonl")):
        rows.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return rows
