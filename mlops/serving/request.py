"""Validation of online prediction requests (Vertex AI's `{"instances": [...]}` body).

Pure functions, no TensorFlow: a request either becomes raw-feature arrays that follow
`mlops.features`' contract, or a `RequestError` whose status is 4xx and whose message
names the instance index and the field at fault.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from mlops.config import FeatureConfig
from mlops.features import coerce_record

JSON_CONTENT_TYPE = "application/json"
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_ALLOWED_TOP_LEVEL = ("instances", "parameters")
_NUMBER_TYPES = frozenset({int, float, type(None)})
_TEXT_TYPES = frozenset({str, type(None)})
_CATEGORY_TYPES = frozenset({str, int, type(None)})


class RequestError(Exception):
    """A bad request: `status` is the HTTP status (4xx), `message` says what was expected."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def describe(value: Any, limit: int = 40) -> str:
    """`string 'heavy'`, `boolean true`, `array` ...: the value as a client would recognise it."""
    kind = json_type(value)
    if isinstance(value, list | dict):
        return kind
    text = json.dumps(value) if isinstance(value, bool) or value is None else repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{kind} {text}"


def check_content_type(content_type: str | None) -> None:
    """Only JSON is accepted; an absent content type is taken to be JSON."""
    if not content_type or not content_type.strip():
        return
    media_type, _, params = content_type.partition(";")
    if media_type.strip().lower() != JSON_CONTENT_TYPE:
        raise RequestError(
            415, f"unsupported content type '{media_type.strip()}'; expected {JSON_CONTENT_TYPE}"
        )
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise RequestError(415, f"unsupported charset '{value.strip()}'; expected utf-8")


def _reject_constant(name: str) -> Any:
    raise RequestError(400, f"body is not valid JSON: {name} is not a JSON value")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)  # one C call per object; the key-by-key loop only to name a duplicate
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise RequestError(
                    400, f"body is not valid JSON for a request: duplicate key '{key}'"
                )
            seen.add(key)
    return obj


# An integer of 19 digits or more may not fit in 64 bits: orjson reads it as a float, json as an
# int. Runs of digits are found by mapping every digit to "0" and searching (a regex takes 100x
# as long); a run right after "." or before "."/"e" is part of a float, which both read alike.
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_DIGITS = b"0" * 19


def _long_integer(body: bytes) -> bool:
    """Whether `body` may hold an integer of 19 digits or more (also inside a string: then the
    json path reads it, which costs time, not correctness)."""
    digits = body.translate(_DIGITS_AS_ZERO)
    start = digits.find(_LONG_DIGITS)
    while start != -1:
        begin, end = start, start + len(_LONG_DIGITS)
        while begin > 0 and digits[begin - 1] == 0x30:
            begin -= 1
        while end < len(digits) and digits[end] == 0x30:
            end += 1
        if digits[begin - 1 : begin] != b"." and digits[end : end + 1] not in (b".", b"e", b"E"):
            return True
        start = digits.find(_LONG_DIGITS, end)
    return False


def _shallow_keys(value: Any) -> int:
    """Keys of `value` (a dict), of the dicts among its values and of the dicts in its lists."""
    if type(value) is not dict:
        return 0
    count = len(value)
    for item in value.values():
        if type(item) is dict:
            count += len(item)
        elif type(item) is list:
            if set(map(type, item)) == {dict}:  # C loops for the common list of instances
                count += sum(map(len, item))
            else:
                count += sum([len(x) for x in item if type(x) is dict])
    return count


def _parse_fast(body: bytes) -> tuple[bool, Any]:
    """(True, the value) when orjson reads `body` exactly as `parse_json`'s json path would,
    else (False, None). orjson is ~10x faster but keeps the last of duplicate keys, reads
    integers beyond 64 bits as floats and rejects lone surrogates and numbers beyond a double
    (which json reads as inf): those bodies take the json path, which also writes every error
    message. Duplicates are ruled out by counting: each key-value pair in the text has a colon,
    so a body with no more colons than the keys orjson kept (counted among the dicts of the
    first two levels; deeper ones only make the count fall short) holds no duplicate and no
    deeper object."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False, None
    if body.count(b":") != _shallow_keys(value) or _long_integer(body):
        return False, None
    return True, value


def parse_json(body: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity literals, no duplicate keys."""
    exact, value = _parse_fast(body)
    if exact:
        return value
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"body is not valid UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise RequestError(400, 'body is empty; expected a JSON object {"instances": [...]}')
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_object)
    except json.JSONDecodeError as exc:
        raise RequestError(
            400, f"body is not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise RequestError(400, "body is not valid JSON for a request: nested too deeply") from None


def _numeric(value: Any, where: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(400, f"{where}: expected a number or null, got {describe(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or abs(number) > _FLOAT32_MAX:
        raise RequestError(
            400,
            f"{where}: expected a finite number within float32 range (|x| <= {_FLOAT32_MAX:.4g}) "
            f"or null, got {describe(value)}",
        )


def _categorical(value: Any, where: str, text_only: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise RequestError(
                400, f"{where}: string is not valid Unicode (it holds a lone surrogate)"
            ) from None
        return
    if text_only:
        hint = " (the model was trained on text values for it)" if _is_integer(value) else ""
        raise RequestError(400, f"{where}: expected a string or null{hint}, got {describe(value)}")
    if not _is_integer(value):
        raise RequestError(
            400, f"{where}: expected a string, an integer or null, got {describe(value)}"
        )


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class RequestSchema:
    """What an instance may hold, worked out once per model rather than per request: exactly
    the raw features; numbers (or null) for numeric ones; strings (or null) for categorical
    ones, and integers too where the feature is integer-coded.

    `categorical_types` is what training recorded per categorical feature (`model_info.json`
    `raw_features.categorical_types`: "string", "integer" or "number"). A feature recorded as
    "string" takes no integers; one not recorded (a model trained before the types were kept)
    takes them, as it always did.
    """

    def __init__(
        self, features: FeatureConfig, categorical_types: Mapping[str, str] | None = None
    ) -> None:
        self.features = features
        self.numeric = tuple(features.numeric)
        self.categorical = tuple(features.categorical)
        self.expected = list(features.raw_features)
        self.expected_set = frozenset(self.expected)
        # An instance's values in `expected` order, in one call (a tuple even for one feature).
        if len(self.expected) == 1:
            only = self.expected[0]
            self.getter = lambda instance: (instance[only],)
        else:
            self.getter = itemgetter(*self.expected)
        types = dict(categorical_types or {})
        self.text_only = frozenset(name for name in self.categorical if types.get(name) == "string")
        self.image = features.image


def request_schema(
    features: FeatureConfig | RequestSchema, categorical_types: Mapping[str, str] | None = None
) -> RequestSchema:
    if isinstance(features, RequestSchema):
        return features
    return RequestSchema(features, categorical_types)


def _names(names: list[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def check_instance(instance: Any, index: int, features: FeatureConfig | RequestSchema) -> None:
    """One instance: exactly the raw features, each of an accepted JSON type."""
    schema = request_schema(features)
    features = schema.features
    where = f"instances[{index}]"
    if not isinstance(instance, dict):
        raise RequestError(
            400,
            f"{where}: expected an object mapping feature names to values, got {describe(instance)}",
        )
    expected = features.raw_features
    missing = [name for name in expected if name not in instance]
    unknown = sorted(key for key in instance if key not in set(expected))
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing feature(s) {_names(missing)}")
        if unknown:
            parts.append(f"unknown feature(s) {_names(unknown)}")
        raise RequestError(
            400,
            f"{where}: {'; '.join(parts)} (every instance must have exactly: {_names(expected)};"
            " use null for a missing value)",
        )
    for name in features.numeric:
        _numeric(instance[name], f"{where}.{name}")
    for name in features.categorical:
        _categorical(instance[name], f"{where}.{name}", name in schema.text_only)
    if features.image is not None:
        image_bytes(instance[features.image.column], f"{where}.{features.image.column}", features)


def image_bytes(value: Any, where: str, features: FeatureConfig) -> bytes:
    """An image sent as {"b64": "<base64 of PNG/JPEG bytes>"} (Vertex's binary convention),
    decoded and checked to be an image, or a 400 naming the instance and field."""
    from mlops.images import ImageError, check_image, decode_b64

    try:
        data = decode_b64(value, where)
        check_image(data, features.image, where, exact=False)
    except ImageError as exc:
        raise RequestError(400, str(exc)) from None
    return data


def parse_request(
    body: bytes,
    content_type: str | None,
    features: FeatureConfig | RequestSchema,
    max_instances: int,
    categorical_types: Mapping[str, str] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """A request body as (the instances as received, raw-feature arrays for `serving_default`).

    Arrays match `features.frame_to_arrays`: float32 with NaN for missing numbers, object
    arrays of str with "" for missing categories. `categorical_types` (or a `RequestSchema`
    as `features`) says which categories take integers.
    """
    schema = request_schema(features, categorical_types)
    features = schema.features
    check_content_type(content_type)
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise RequestError(
            400,
            f'body must be a JSON object {{"instances": [...]}}, got {json_type(payload)}',
        )
    unknown = sorted(key for key in payload if key not in _ALLOWED_TOP_LEVEL)
    if unknown:
        raise RequestError(
            400,
            f"unknown top-level key(s) {_names(unknown)}; allowed: {_names(list(_ALLOWED_TOP_LEVEL))}",
        )
    if "parameters" in payload and not isinstance(payload["parameters"], dict):
        raise RequestError(
            400, f"parameters: expected an object, got {describe(payload['parameters'])}"
        )
    if "instances" not in payload:
        raise RequestError(400, "instances: required; expected a non-empty list of objects")
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise RequestError(
            400, f"instances: expected a non-empty list of objects, got {describe(instances)}"
        )
    if not instances:
        raise RequestError(400, "instances: expected a non-empty list of objects, got []")
    if len(instances) > max_instances:
        raise RequestError(
            400,
            f"instances: at most {max_instances} instances per request (serving.max_instances), "
            f"got {len(instances)}",
        )
    arrays = _columns(instances, schema)
    if arrays is None:
        # Something is off: the per-instance checks name the first instance and field at fault.
        for index, instance in enumerate(instances):
            check_instance(instance, index, schema)
        arrays = instances_to_arrays(instances, features)
    return instances, arrays


def _columns(instances: list[Any], schema: RequestSchema) -> dict[str, np.ndarray] | None:
    """The arrays `instances_to_arrays` would build, a column at a time; None unless every
    instance is valid (the caller then finds the error). Every instance is read in one C call
    (`itemgetter`), the columns come out of one transpose, and each column's values are checked
    by the set of their types, by numpy for range, and by one encode for Unicode."""
    if schema.image is not None or not schema.expected:  # images: decoded one by one
        return None
    if set(map(type, instances)) != {dict} or set(map(len, instances)) != {len(schema.expected)}:
        return None
    try:  # as many keys as expected, and every expected one: exactly the expected keys
        rows = list(map(schema.getter, instances))
    except KeyError:
        return None
    columns = dict(zip(schema.expected, zip(*rows, strict=True), strict=True))
    arrays: dict[str, np.ndarray] = {}
    for name in schema.numeric:
        column = columns[name]
        if not _NUMBER_TYPES.issuperset(map(type, column)):
            return None
        try:
            values = np.array(column, dtype=np.float64)  # None -> NaN
        except OverflowError:
            return None
        if (np.abs(values) > _FLOAT32_MAX).any():  # also inf; NaN compares False
            return None
        arrays[name] = values.astype(np.float32)
    for name in schema.categorical:
        column = columns[name]
        types = set(map(type, column))
        if not (_TEXT_TYPES if name in schema.text_only else _CATEGORY_TYPES).issuperset(types):
            return None
        if int in types:
            column = [v if type(v) is str else "" if v is None else str(v) for v in column]
        elif type(None) in types:
            column = ["" if v is None else v for v in column]
        try:
            "".join(column).encode("utf-8")  # a lone surrogate cannot be sent to the model
        except UnicodeEncodeError:
            return None
        arrays[name] = np.array(column, dtype=object)
    return arrays


def instances_to_arrays(
    instances: list[dict[str, Any]], features: FeatureConfig
) -> dict[str, np.ndarray]:
    """Validated instances as the model's raw inputs, through `coerce_record`."""
    rows = [coerce_record(instance, features) for instance in instances]
    arrays: dict[str, np.ndarray] = {}
    for name in features.numeric:
        arrays[name] = np.array([row[name] for row in rows], dtype=np.float32)
    for name in features.categorical:
        arrays[name] = np.array([row[name] for row in rows], dtype=object)
    if features.image is not None:
        name = features.image.column
        arrays[name] = np.array(
            [
                image_bytes(instance[name], f"instances[{i}].{name}", features)
                for i, instance in enumerate(instances)
            ],
            dtype=object,
        )
    return arrays
