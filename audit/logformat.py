"""Structured logs: one JSON object per line, with who asked and about what.

``PUREBOOT_LOG_FORMAT=json`` makes the console handler (settings.LOGGING)
write each event as one line of JSON for ELK or Loki::

    {"time": "2026-12-04T22:40:01.123+00:00", "level": "INFO", "logger": "nodes.transitions",
     "message": "node 7: pending -> installing by system", "request_id": "3f2a...",
     "actor": "user:alice", "node": 7, "client": "192.0.2.10"}

``request_id``, ``client`` and ``actor`` come from the web request being
served (``audit.middleware``; ``actor`` once authentication has run:
``user:<username>`` as the audit trail writes it, or ``anonymous``);
``node`` and ``actor`` may also be given by the caller
(``log.info(..., extra={"node": pk})``). Keys with no value are left out.
Events outside a request (Celery tasks, commands) carry what their callers
give.

The redaction filter (``pureboot.logredact``) runs before this formatter on
the same handler and rewrites the message and the exception text, so the
JSON holds only redacted text; no other attribute of a record is written.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from django.utils.functional import empty

from . import context

# The record attributes written, besides time, level, logger and message.
CONTEXT_KEYS = ("request_id", "actor", "node", "client")


def _actor_of(request) -> str:
    """The request's user if authentication already ran, else ''. Never queries.

    AuthenticationMiddleware sets a lazy ``user``; DRF replaces it with the
    user its authenticators found. Reading an unevaluated lazy user here
    would run the session query inside a log call, so such a user is left out.
    """
    user = getattr(request, "__dict__", {}).get("user")
    if user is None:
        return ""
    wrapped = getattr(user, "_wrapped", None) if hasattr(user, "_setupfunc") else user
    if wrapped is None or wrapped is empty:
        return ""
    if not getattr(wrapped, "is_authenticated", False):
        return "anonymous"
    return f"user:{wrapped.get_username()}"  # the audit trail's actor label


class RequestContextFilter(logging.Filter):
    """Adds the request's id, client address and actor to a record (never drops it).

    The request is the one being served, or the one a record carries itself:
    Django logs a 4xx/5xx answer (``django.request``) after the middleware
    has returned, with the request in the record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        current = context.current()
        request = getattr(record, "request", None) or current.request
        if not getattr(record, "request_id", None):
            request_id = current.request_id or getattr(request, "request_id", "")
            if request_id:
                record.request_id = request_id
        if not getattr(record, "client", None):
            meta = getattr(request, "META", None)
            client = current.source_ip or (meta.get("REMOTE_ADDR") if meta else None)
            if client:
                record.client = client
        if not getattr(record, "actor", None):
            actor = _actor_of(request)
            if actor:
                record.actor = actor
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per event, on one line (newlines in messages are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        event = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value not in (None, ""):
                event[key] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            event["exception"] = record.exc_text
        if record.stack_info:
            event["stack"] = record.stack_info
        return json.dumps(event, ensure_ascii=False)
