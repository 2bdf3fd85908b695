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
        f"Authorization: Node {TOKEN}",
        f"cannot render the installer files for {TOKEN}",  # a token anywhere, by its shape
        f"an access JWT eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjo1fQ.{TOKEN} in a message",
    ],
)
def test_every_shape_of_secret_is_redacted(line):
    assert TOKEN not in redact(line) and "SIGNATURE" not in redact(line)
    assert "[redacted]" in redact(line)


PLAIN = "hunter2-Plain-Secret"


@pytest.mark.parametrize(
    "line",
    [
        f"POST /x?token={PLAIN}&a=1",
        f'{{"new_password": "{PLAIN}", "old_password": "{PLAIN}"}}',
        f"client_secret={PLAIN}&grant_type=authorization_code",
        f"private_key: {PLAIN}",
        f"{{'HTTP_AUTHORIZATION': 'Node {PLAIN}'}}",
        f"authorization: Basic {PLAIN}",
        f"GET /oidc/callback/?code={PLAIN}&state={PLAIN} HTTP/1.1",
    ],
)
def test_a_named_secret_is_redacted_whatever_it_looks_like(line):
    assert PLAIN not in redact(line) and "[redacted]" in redact(line)


@pytest.mark.parametrize(
    "line",
    [
        "GET /boot/ipxe?mac=52:54:00:12:34:56&platform=efi HTTP/1.1",
        "node 3 kept01: installing -> installed by node:3",
        "Node webserver01 failed: error code: 42",
        "approval #7: admin asked for retire on node:web01",
        "Task workflows.convert_template_version[6a1f0c] received",
    ],
)
def test_ordinary_lines_are_left_alone(line):
    assert redact(line) == line


def test_gunicorn_access_log_redacts_whatever_its_format_names(tmp_path):
    """A node's report carries its token in ``Authorization: Node``; an access log
    format naming that header (or the referrer, or the query) logs it redacted."""
    from datetime import timedelta
    from types import SimpleNamespace

    from gunicorn.config import Config

    from pureboot.gunicorn_logging import RedactingLogger

    cfg = Config()
    cfg.set("accesslog", str(tmp_path / "access.log"))
    cfg.set(
        "access_log_format",
        '%(h)s "%(r)s" %(s)s "%(f)s" "%({authorization}i)s" "%({x-install-url}i)s" %(q)s',
    )
    logger = RedactingLogger(cfg)
    environ = {
        "REQUEST_METHOD": "POST",
        "RAW_URI": f"/api/v1/install/{TOKEN}/user-data?token={TOKEN}",
        "PATH_INFO": f"/api/v1/install/{TOKEN}/user-data",
        "QUERY_STRING": f"token={TOKEN}",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "192.0.2.7",
        "HTTP_REFERER": f"http://pureboot/api/v1/install/{TOKEN}/meta-data",
    }
    headers = [
        ("Authorization", f"Node {TOKEN}"),
        ("X-Install-Url", f"http://pureboot/api/v1/install/{TOKEN}/"),
    ]
    resp = SimpleNamespace(status="404 Not Found", sent=10, headers=[])
    logger.access(resp, SimpleNamespace(headers=headers), environ, timedelta(seconds=0))
    for handler in logger.access_log.handlers:
        handler.flush()
    line = (tmp_path / "access.log").read_text()
    assert "192.0.2.7" in line and "/api/v1/install/[redacted]/user-data" in line
    assert TOKEN not in line and "SIGNATURE" not in line
