"""No secret in a log: node tokens, passwords and bearer tokens are redacted.

A node's install token travels in its installer URLs
(``/api/v1/install/<token>/<file>``) and in its reports' ``Authorization:
Node <token>`` header; a request that fails is logged with its path by Django
(``django.request``), the development server (``django.server``), gunicorn's
access log and nginx's. Every log line PureBoot's processes write passes
:class:`RedactSecrets` (settings.LOGGING puts it on every handler; Celery
workers log through those handlers, see ``pureboot/celery.py``); gunicorn's
logs use :mod:`pureboot.gunicorn_logging`; the shipped nginx configuration
logs the path through the same rule (``deploy/nginx/pureboot.conf.template``).

The rules are by place (an install URL's token segment; the value of a
``token``/``password``/``secret``-like field; an ``Authorization`` value) and
by shape (a signed node token or a JWT anywhere in a line), so a secret is
caught even in a message nobody wrote with it in mind.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
_B64 = r"[A-Za-z0-9_-]"
_RULES = (
    # /api/v1/install/<token>/<file>: the token is the path segment after install/.
    (re.compile(r"(/install/)[^/\s?#\"']+"), rf"\g<1>{REDACTED}"),
    # The shapes of our tokens wherever they stand: a node token is Django's
    # signed JSON (eyJ...:signature), a JWT is eyJ...eyJ...signature.
    (re.compile(rf"\beyJ{_B64}{{4,}}(?:[.:]{_B64}{{8,}})+"), REDACTED),
    # An Authorization value (Bearer <jwt>, Node <node token>, Basic <user:password>),
    # as a header line, a WSGI key or a JSON field; and a bearer token on its own.
    (
        re.compile(
            r"((?:HTTP_)?authorization[\"']?\s*[=:]\s*[\"']?(?:\w+\s+)?)[^\s\"',;}]+",
            re.IGNORECASE,
        ),
        rf"\g<1>{REDACTED}",
    ),
    (re.compile(r"\b(Bearer\s+)[A-Za-z0-9._~+/=:-]+", re.IGNORECASE), rf"\g<1>{REDACTED}"),
    # ?token=…, &password=…, "new_password": "…", client_secret=…, private_key=…,
    # access/refresh JWTs, in a query string, a form body or JSON.
    (
        re.compile(
            r"((?:^|[?&\s;,{(\"'])"
            r"(?:\w*(?:token|password|passwd|secret|private_key|api_?key)\w*|access|refresh)"
            r"[\"']?\s*[=:]\s*[\"']?)"
            r"[^&\s\"',;})]+",
            re.IGNORECASE,
        ),
        rf"\g<1>{REDACTED}",
    ),
    # The single-sign-on callback's one-time authorization code.
    (re.compile(r"([?&](?:code|state)=)[^&\s\"'#]+"), rf"\g<1>{REDACTED}"),
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
        # The arguments go too: a formatter or handler that reads them (a JSON
        # formatter, Celery's "received" line with its task arguments) must not
        # find what the message no longer shows.
        record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
