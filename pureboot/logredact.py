"""No secret in a log: node tokens, passwords and bearer tokens are redacted.

A node's install token travels in its installer URLs
(``/api/v1/install/<token>/<file>``); a request that fails is logged with its
path by Django (``django.request``), the development server
(``django.server``), gunicorn's access log and nginx's. Every log line
PureBoot's processes write passes :class:`RedactSecrets` (settings.LOGGING
puts it on every handler, Celery workers included); gunicorn's access log
uses :mod:`pureboot.gunicorn_logging`; the shipped nginx configuration logs
the path through the same rule (``deploy/nginx/pureboot.conf.template``).
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
_RULES = (
    # /api/v1/install/<token>/<file>: the token is the path segment after install/.
    (re.compile(r"(/install/)[^/\s?#\"']+"), rf"\g<1>{REDACTED}"),
    # ?token=…, &password=…, access/refresh JWTs in a query string or form body.
    (
        re.compile(
            r"((?:^|[?&\s;,{(\"'])(?:token|password|access|refresh|secret)[\"']?\s*[=:]\s*[\"']?)"
            r"[^&\s\"',;})]+",
            re.IGNORECASE,
        ),
        rf"\g<1>{REDACTED}",
    ),
    # Authorization: Bearer <jwt>
    (re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=:-]+", re.IGNORECASE), rf"\g<1>{REDACTED}"),
)


def redact(text: str) -> str:
    """``text`` with every token, password and bearer token replaced by [redacted]."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """A handler filter: the record's message (and exception text) leave redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is logged as it is
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
