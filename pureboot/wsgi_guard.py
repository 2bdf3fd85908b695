"""Refuse requests whose declared charset Django would choke on.

Django decodes the query string and form bodies with the charset named in
``Content-Type`` and accepts any codec Python can look up, including ones
that are not text encodings (``rot13``, ``zlib``, ``idna``...). Those raise
before any middleware runs, so the client would get a bare 500. Only the
text charsets HTTP clients actually send are let through.
"""

from __future__ import annotations

import json
from email.message import Message

ALLOWED_CHARSETS = frozenset(
    {"utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1", "iso8859-1"}
)


def _charset(content_type: str) -> str | None:
    if "charset" not in content_type.lower():
        return None
    msg = Message()
    msg["content-type"] = content_type
    charset = msg.get_param("charset")
    return str(charset).strip().lower() if charset else ""


class CharsetGuard:
    """WSGI wrapper: 400 for a request that declares an unsupported charset."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        charset = _charset(environ.get("CONTENT_TYPE", ""))
        if charset is not None and charset not in ALLOWED_CHARSETS:
            body = json.dumps(
                {"detail": "Unsupported charset in Content-Type; use utf-8.", "code": "bad_charset"}
            ).encode()
            start_response(
                "400 Bad Request",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        return self.app(environ, start_response)
