"""The chain's hash: one function shared by the writer and the verifier.

``hash = sha256(prev_hash + canonical_json(entry))`` where ``entry`` holds the
fields listed in :data:`HASHED_FIELDS`. Canonical JSON sorts keys and has no
whitespace, so the same entry always hashes the same on every database.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64

HASHED_FIELDS = (
    "seq",
    "timestamp",
    "actor",
    "action",
    "object_type",
    "object_id",
    "changes",
    "message",
    "details",
    "source_ip",
    "request_id",
)


def canonical_json(value: Any) -> str:
    """Serialise ``value`` the one way that is hashed (sorted keys, no spaces)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def format_timestamp(value: datetime | str) -> str:
    """ISO 8601 in UTC with microseconds, e.g. ``2025-01-02T03:04:05.000006+00:00``."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _entry(event_or_fields: Any) -> dict[str, Any]:
    if isinstance(event_or_fields, Mapping):
        raw = {name: event_or_fields[name] for name in HASHED_FIELDS}
    else:
        raw = {name: getattr(event_or_fields, name) for name in HASHED_FIELDS}
    raw["timestamp"] = format_timestamp(raw["timestamp"])
    raw["object_id"] = str(raw["object_id"])
    raw["source_ip"] = raw["source_ip"] or None
    return raw


def compute_hash(event_or_fields: Any, prev_hash: str) -> str:
    """Return the hex SHA-256 of ``prev_hash`` followed by the entry's canonical JSON.

    ``event_or_fields`` is an :class:`~audit.models.AuditEvent` or a mapping
    with every name in :data:`HASHED_FIELDS`; values must already be
    JSON-ready (see :func:`audit.sanitise.jsonable`).
    """
    payload = prev_hash + canonical_json(_entry(event_or_fields))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
