"""No secret in a log: what Django's own loggers and the development server write."""

from __future__ import annotations

import logging

import pytest

from pureboot.logredact import RedactSecrets, redact

TOKEN = "eyJyIjoxLCJuIjoyfQ:SIGNATURE-abcdefghijklmnop"


def _configured_handlers():
    """The handlers settings.LOGGING installed (not pytest's own capture handlers)."""
    loggers = (logging.getLogger(), logging.getLogger("django.server"))
    return [h for lg in loggers for h in lg.handlers if type(h).__module__.startswith("logging")]


@pytest.mark.parametrize("name", ["django.request", "django.server", "celery.app.trace"])
def test_every_configured_handler_writes_lines_redacted(name):
    handlers = _configured_handlers()
    assert handlers, "settings.LOGGING installed no handler"
    for handler in handlers:
        assert any(isinstance(f, RedactSecrets) for f in handler.filters), handler
        record = logging.getLogger(name).makeRecord(
            name,
            logging.WARNING,
            __file__,
            1,
            "Not Found: /api/v1/install/%s/user-data",
            (TOKEN,),
            None,
        )
        assert handler.filter(record)
        line = handler.format(record)
        assert "/api/v1/install/[redacted]/user-data" in line and TOKEN not in line


@pytest.mark.parametrize(
    "line",
    [
        f"GET /api/v1/install/{TOKEN}/meta-data HTTP/1.1",
        f"POST /x?token={TOKEN}&a=1",
        f'{{"username": "u", "password": "{TOKEN}"}}',
        f"Authorization: Bearer {TOKEN}",
        f"refresh={TOKEN}",
    ],
)
def test_every_shape_of_secret_is_redacted(line):
    assert TOKEN not in redact(line) and "SIGNATURE" not in redact(line)
    assert "[redacted]" in redact(line)


def test_ordinary_lines_are_left_alone():
    line = "GET /boot/ipxe?mac=52:54:00:12:34:56&platform=efi HTTP/1.1"
    assert redact(line) == line
