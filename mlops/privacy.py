"""Personal data in tabular sources: detect it from column names and sampled values, and apply the
configured policy per column (block, drop, or salted hash) before anything is written.

Detected kinds: e-mail addresses, phone numbers, payment card numbers (Luhn checksum), IP
addresses and national-id-like numbers (US social security numbers). Detection samples values, so
it is a safety net, not a guarantee: name personal columns in `privacy.columns` explicitly.

The prediction server's request log goes through `LogRedactor`: the same column policies, and
the same kinds redacted wherever they appear inside a logged string (`redact_text`).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from mlops.config import PrivacyConfig

if TYPE_CHECKING:  # the server imports this module for LogRedactor and must not load pandas
    import pandas as pd

_SAMPLE = 1000
_MIN_SHARE = 0.5  # of the sampled non-empty values

_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
_PHONE = re.compile(r"^\+?\(?\d{1,4}\)?([ -]?\(?\d{2,4}\)?){2,4}$")
_SSN = re.compile(r"^(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}$")
_CARD = re.compile(r"^\d(?:[ -]?\d){12,18}$")

_NAME_HINTS = {
    "email": ("email", "e_mail", "mail_address"),
    "phone number": ("phone", "mobile", "telephone", "msisdn"),
    "payment card number": ("card_number", "credit_card", "cc_number", "pan"),
    "IP address": ("ip_address", "ipaddr", "client_ip", "ip"),
    "national id": ("ssn", "social_security", "national_id", "passport", "tax_id"),
}


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card(text: str) -> bool:
    if not _CARD.match(text):
        return False
    digits = re.sub(r"\D", "", text)
    return 13 <= len(digits) <= 19 and _luhn(digits)


def _ip(text: str) -> bool:
    if ":" not in text and text.count(".") != 3:
        return False  # neither IPv6 nor dotted IPv4: skip the (slow) parse
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _phone(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    # a space, dash, parenthesis or leading + tells a phone number from a plain number
    return 10 <= len(digits) <= 15 and bool(_PHONE.match(text)) and not text.isdigit()


VALUE_DETECTORS: dict[str, Callable[[str], bool]] = {
    "email": lambda t: bool(_EMAIL.match(t)),
    "payment card number": _card,
    "national id": lambda t: bool(_SSN.match(t)),
    "IP address": _ip,
    "phone number": _phone,
}


def _name_kind(column: str) -> str | None:
    words = re.split(r"[^a-z0-9]+", column.lower())
    joined = "_".join(w for w in words if w)
    for kind, hints in _NAME_HINTS.items():
        if any(
            joined == h or joined.startswith(h + "_") or joined.endswith("_" + h) for h in hints
        ):
            return kind
    return None


def detect_personal_data(frame: pd.DataFrame, skip: set[str] = frozenset()) -> dict[str, str]:
    """column -> kind of personal data, from its name or from most of its sampled text values."""
    import pandas as pd

    found: dict[str, str] = {}
    for column in frame.columns:
        if column in skip:
            continue
        kind = _name_kind(str(column))
        values = frame[column].dropna()
        if kind is None and len(values) and not pd.api.types.is_numeric_dtype(values):
            sample = values.astype(str).str.strip()
            sample = sample[sample != ""].head(_SAMPLE)
            for candidate, matches in VALUE_DETECTORS.items():
                if len(sample) and sample.map(matches).mean() >= _MIN_SHARE:
                    kind = candidate
                    break
        if kind:
            found[str(column)] = kind
    return found


class PersonalDataError(ValueError):
    """A column holds personal data and the config says nothing (or "block") about it."""


def hash_token(value: object, salt: str) -> object:
    """The same value always maps to the same token (joins and categories still work); the value
    itself cannot be read back without the salt. Missing stays missing."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return hashlib.sha256((salt + str(value)).encode()).hexdigest()[:16]


def salted_hash(values: pd.Series, salt: str) -> pd.Series:
    return values.map(lambda value: hash_token(value, salt))


def hash_salt(settings: PrivacyConfig, column: str) -> str:
    """The salt for hashing `column` (read from the environment when ingest runs)."""
    salt = os.environ.get(settings.hash_salt_env, "")
    if not salt:
        raise PersonalDataError(
            f"privacy.columns.{column} is 'hash' but ${settings.hash_salt_env} is empty: "
            "set it to a secret salt (the same one for training and serving)"
        )
    return salt


def apply_privacy(
    frame: pd.DataFrame,
    settings: PrivacyConfig,
    source: str,
    label: str,
    found_elsewhere: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Apply the per-column policy to detected and declared personal columns, and to those
    `found_elsewhere` ({column: kind}, e.g. by Cloud DLP). Returns the frame and {column: what
    was done}. Raises PersonalDataError for a column to block."""
    detected = detect_personal_data(frame, skip={label})
    for column, kind in (found_elsewhere or {}).items():
        if column != label and column in frame.columns:
            detected.setdefault(column, kind)
    declared = {c: "declared in privacy.columns" for c in settings.columns if c in frame.columns}
    actions: dict[str, str] = {}
    for column in sorted({*detected, *declared}):
        kind = detected.get(column, declared.get(column))
        policy = settings.columns.get(column, "block")
        if policy == "block":
            raise PersonalDataError(
                f"{source}: column {column!r} looks like personal data ({kind}). Set "
                f"privacy.columns.{column} to 'drop' (remove it), 'hash' (salted hash, salt from "
                f"${settings.hash_salt_env}) or 'keep' (you have a legal basis to process it)"
            )
        if policy == "drop":
            frame = frame.drop(columns=[column])
        elif policy == "hash":
            salt = hash_salt(settings, column)
            frame = frame.assign(**{column: salted_hash(frame[column], salt)})
        actions[column] = f"{policy} ({kind})"
    return frame, actions


# -- Redaction of free text (request logs) ----------------------------------------------------
# The same kinds as VALUE_DETECTORS, found anywhere inside a string rather than as the whole
# value; each candidate is confirmed by the whole-value detector (Luhn for cards, ipaddress for
# IPs) so plain numbers stay readable. Each pattern runs only on strings holding the character
# it needs ("@", ":", a digit): most category values hold none and cost one scan.
_EMBEDDED_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_EMBEDDED_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_EMBEDDED_NUMBERS = re.compile(
    r"(?P<ipv4>(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w.]))"
    # not part of a time or a decimal number ("2013-01-05 10:30:00", "12.5")
    r"|(?P<digits>(?<![\w+:.])\+?\(?\d[\d ()-]{7,22}\d(?![\w:]|\.\d))"
)
_DIGIT = re.compile(r"\d")


def _redact_ip(match: re.Match[str]) -> str:
    return "[REDACTED:IP address]" if _ip(match.group(0)) else match.group(0)


def _redact_number(match: re.Match[str]) -> str:
    text = match.group(0)
    if match.lastgroup == "ipv4":
        return _redact_ip(match)
    for kind in ("payment card number", "national id", "phone number"):
        if VALUE_DETECTORS[kind](text):
            return f"[REDACTED:{kind}]"
    return text


@functools.lru_cache(maxsize=8192)  # field names and category values repeat request after request
def redact_text(text: str) -> str:
    """`text` with every e-mail, card (Luhn), national id, IP and phone number inside it replaced
    by "[REDACTED:<kind>]"."""
    if "@" in text:
        text = _EMBEDDED_EMAIL.sub("[REDACTED:email]", text)
    if ":" in text:
        text = _EMBEDDED_IPV6.sub(_redact_ip, text)
    if _DIGIT.search(text):
        text = _EMBEDDED_NUMBERS.sub(_redact_number, text)
    return text


class LogRedactor:
    """Makes request-log records safe to write: columns whose policy is drop are removed, hash
    are hashed with the ingest salt (so logged values still match the training data), block are
    replaced; in everything else (any field, any nesting, field names too) personal data found in
    strings is redacted. Numbers and booleans pass untouched: only strings are scanned."""

    def __init__(self, settings: PrivacyConfig, salt: str | None = None) -> None:
        self.policies = {c: p for c, p in settings.columns.items() if p != "keep"}
        # Read when the server starts (never at import); without a salt, hashed columns are
        # redacted whole rather than written in clear.
        self.salt = os.environ.get(settings.hash_salt_env, "") if salt is None else salt

    def value(self, value: object) -> object:
        if isinstance(value, str):
            return redact_text(value)
        if isinstance(value, dict):
            return {redact_text(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value

    def instance(self, instance: object) -> object:
        if not isinstance(instance, dict) or not self.policies:
            return self.value(instance)
        safe: dict[str, object] = {}
        for key, item in instance.items():
            policy = self.policies.get(key)
            if policy == "drop":
                continue
            if policy == "hash" and self.salt and item is not None:
                item = hash_token(item, self.salt)
            elif policy in ("hash", "block") and item is not None:
                item = f"[REDACTED:privacy.columns.{key}]"
            safe[redact_text(str(key))] = self.value(item)
        return safe
