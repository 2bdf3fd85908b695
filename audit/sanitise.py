"""Make audit payloads safe to store and stable to hash.

Two jobs, both done before hashing so the stored JSON and the hashed JSON
are the same value:

- secrets never enter the log: values under a key that looks like a secret
  become ``"[redacted]"``;
- values become plain JSON that survives a round trip through SQLite's JSON
  text and PostgreSQL's ``jsonb`` unchanged.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import re
import uuid
from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from django.utils.functional import Promise

REDACTED = "[redacted]"
SECRET_KEY_RE = re.compile(
    r"password|passwd|secret|token|api_key|apikey|private_key|credential", re.IGNORECASE
)
# jsonb prints integral floats from 1e16 up as integers, so 1e16 would come
# back as 10000000000000000 and hash differently; store such values as ints.
_FLOAT_AS_INT_FROM = 1e16


def clean_text(value: str) -> str:
    """Drop what PostgreSQL cannot store: NUL characters and lone surrogates."""
    value = value.replace("\x00", "\ufffd")
    return value.encode("utf-8", "replace").decode("utf-8")


def jsonable(value: Any) -> Any:
    """Return ``value`` as JSON-ready data (dict/list/str/int/float/bool/None).

    Datetimes, dates, times, UUIDs, Decimals, IP addresses and enums become
    strings; tuples and sets become lists; mapping keys become strings.
    Raises ``TypeError`` for anything else and ``ValueError`` for NaN/inf.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)  # IntEnum and friends become plain ints
    if isinstance(value, str):
        return clean_text(str(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("audit payloads cannot hold NaN or infinity")
        if value == 0:
            return 0.0  # -0.0 does not survive jsonb
        if value.is_integer() and abs(value) >= _FLOAT_AS_INT_FROM:
            return int(value)
        return value
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, Promise):
        return clean_text(str(value))
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, Mapping):
        return {clean_text(str(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((jsonable(v) for v in value), key=repr)
    raise TypeError(f"audit payload value of type {type(value).__name__} is not JSON-serialisable")


def redact(value: Any) -> Any:
    """Replace, at any depth, the value of every key that names a secret."""
    if isinstance(value, Mapping):
        return {
            k: REDACTED if SECRET_KEY_RE.search(str(k)) else redact(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def redact_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Like :func:`redact`, but a secret field keeps its before/after shape.

    ``{"password": {"before": "a", "after": "b"}}`` becomes
    ``{"password": {"before": "[redacted]", "after": "[redacted]"}}`` so readers
    still see that the field changed.
    """
    out: dict[str, Any] = {}
    for field, change in changes.items():
        if SECRET_KEY_RE.search(str(field)):
            if isinstance(change, Mapping):
                out[field] = {k: REDACTED for k in change}
            else:
                out[field] = REDACTED
        else:
            out[field] = redact(change)
    return out
