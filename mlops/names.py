"""Column names as the user writes them, and the identifiers the model uses for them inside.

A config names columns exactly as the data does ("Culmen Length (mm)", "île", "1st flag"). Inside
the model (TFT inputs and vocabularies, Keras inputs, SavedModel signature keys, tf.Example keys
for TFMA) every name must be a TensorFlow identifier, so each raw feature gets an internal name
from `safe_name`. Everything a user sees (statistics, schema, report, model card, attributions,
serving requests and responses) keeps the name as written.

A name that already is an identifier is its own internal name, so configs that worked before
map to exactly the same model.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable

# Valid as a TF op/placeholder name, a Keras layer name, a SavedModel signature key, a TFT
# vocabulary file name and a Python keyword argument (signatures are called with keywords).
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
# Sanitised names are cut to this (sanitising can make a name several times longer), so that
# `<name>_missing` and a vocabulary file named after it stay far below file-name limits.
_MAX_LENGTH = 64


class ColumnNameError(ValueError):
    """A column name cannot be used: empty, or it collides with another one inside the model."""


def safe_name(name: str) -> str:
    """The internal identifier of column `name` (`[A-Za-z][A-Za-z0-9_]*`), deterministic.

    Letters with accents lose them ("île" -> "ile"), other non-ASCII letters become their code
    point ("東京" -> "u6771_u4eac"), every other run of characters becomes one "_" ("body.mass/g"
    -> "body_mass_g"), and a name that starts with a digit gets an "f_" prefix ("1st flag" ->
    "f_1st_flag"). Names over 64 characters are cut and end in a hash of the whole name.
    """
    if not isinstance(name, str) or not name.strip():
        raise ColumnNameError(f"a column name must be non-empty text, got {name!r}")
    if _IDENTIFIER.match(name):
        return name
    parts: list[str] = []
    for char in unicodedata.normalize("NFKD", name):
        if char.isascii() and char.isalnum():
            parts.append(char)
        elif unicodedata.combining(char):
            continue  # the accent of a decomposed letter
        elif char.isalnum():
            parts.append(f"_u{ord(char):04x}_")
        else:
            parts.append("_")
    text = re.sub(r"_+", "_", "".join(parts)).strip("_")
    if not text:  # only punctuation, e.g. "%": spell out its bytes
        text = name.encode("utf-8").hex()
    if not text[0].isalpha():
        text = f"f_{text}"
    if len(text) > _MAX_LENGTH:
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
        text = f"{text[: _MAX_LENGTH - 9].rstrip('_')}_{digest}"
    return text


def internal_names(names: Iterable[str]) -> dict[str, str]:
    """{name as written: internal name} for `names`; a clear error when two different names
    would be the same inside the model ("body mass" and "body_mass")."""
    mapping: dict[str, str] = {}
    written_by_internal: dict[str, str] = {}
    for name in names:
        internal = safe_name(name)
        other = written_by_internal.setdefault(internal, name)
        if other != name:
            raise ColumnNameError(
                f"columns {other!r} and {name!r} would both be {internal!r} inside the model; "
                "rename one of them (in the data and in the config)"
            )
        mapping[name] = internal
    return mapping
