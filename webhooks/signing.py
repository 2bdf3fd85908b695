"""The webhook signature: ``X-PureBoot-Signature: t=<unix time>,v1=<hex>``.

``v1`` is HMAC-SHA256 keyed with the subscription's secret over
``f"{t}.".encode() + body``. A receiver recomputes it over the raw body it
received, compares in constant time, and refuses a ``t`` too far from its
own clock, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-PureBoot-Signature"
EVENT_HEADER = "X-PureBoot-Event"
DELIVERY_HEADER = "X-PureBoot-Delivery"
DEFAULT_TOLERANCE = 300


def digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(
        secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256
    ).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header value for ``body`` sent now (or at ``timestamp``)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={digest(secret, t, body)}"


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within ``tolerance`` seconds.

    What a receiver written in Python would run; the README shows the same
    steps for any language.
    """
    fields: dict[str, list[str]] = {}
    for part in (header or "").split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields.get("t", [""])[0])
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = digest(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in fields.get("v1", []))
