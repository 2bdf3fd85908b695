"""PUREBOOT_LOG_FORMAT=json: one JSON object per event, with request id, actor, node, client."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from types import SimpleNamespace

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import AnonymousUser
from django.utils.functional import SimpleLazyObject

from audit import context
from audit.logformat import JsonFormatter, RequestContextFilter
from pureboot.logredact import RedactSecrets
from tests.factories import make_node, make_user

from .processes import BASE_DIR, base_env


@pytest.fixture
def json_lines():
    """The console handler as settings.LOGGING builds it for json, writing to a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(RequestContextFilter())
    handler.addFilter(RedactSecrets())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_settings_build_the_json_handler_when_asked(tmp_path):
    """The real settings with PUREBOOT_LOG_FORMAT=json: a log call prints one JSON line."""
    env = base_env(tmp_path / "var")
    env["PUREBOOT_LOG_FORMAT"] = "json"
    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('pureboot.test').warning('hello %s', 'there', extra={'node': 3})"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=BASE_DIR, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    event = json.loads(lines[0])
    assert event["message"] == "hello there" and event["node"] == 3
    assert event["level"] == "WARNING" and event["logger"] == "pureboot.test"
    assert set(event) == {"time", "level", "logger", "message", "node"}


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("PUREBOOT_LOG_FORMAT", "xml"),
        ("PUREBOOT_METRICS_ALLOW", "10.0.0.0/33"),
        ("PUREBOOT_METRICS_TOKEN", "short"),
        ("PUREBOOT_METRICS_TOKEN", "has a space " + "x" * 40),
        ("PUREBOOT_WORKER_METRICS_PORT", "70000"),
        ("PUREBOOT_WORKER_METRICS_ADDRESS", "localhost"),
    ],
)
def test_malformed_settings_stop_the_start_naming_the_variable(tmp_path, name, raw):
    env = base_env(tmp_path / "var")
    env[name] = raw
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr and name in done.stderr


@pytest.mark.django_db
def test_a_request_logs_one_json_line_per_event_with_its_request_id_actor_and_node(
    client, json_lines
):
    admin = make_user("Admin", username="ada")
    node = make_node("installed")
    client.force_login(admin)
    response = client.patch(
        f"/api/v1/nodes/{node.pk}/state",
        {"state": "active"},
        content_type="application/json",
        HTTP_X_REQUEST_ID="req-logs-1",
    )
    assert response.status_code == 200, response.content
    events = [e for e in json_lines() if e["logger"] == "nodes.transitions"]
    assert len(events) == 1
    assert events[0] == {
        "time": events[0]["time"],
        "level": "INFO",
        "logger": "nodes.transitions",
        "message": f"node {node.pk}: installed -> active by user:ada",
        "request_id": "req-logs-1",
        "actor": "user:ada",
        "node": node.pk,
        "client": "127.0.0.1",
    }
    # A page that needs a signed-in user: Django's own "Not Found" line names the actor.
    assert client.get("/approvals/999999/", HTTP_X_REQUEST_ID="req-logs-2").status_code == 404
    not_found = [e for e in json_lines() if e.get("request_id") == "req-logs-2"]
    assert not_found and all(e["actor"] == "user:ada" for e in not_found)


@pytest.mark.django_db
def test_a_secret_in_a_message_or_an_exception_stays_redacted(client, json_lines):
    log = logging.getLogger("pureboot.test")
    token = "eyJub2RlIjo0Mn0:1uXyZa:AbCdEfGhIjKlMnOpQrStUvWxYz012345"
    log.warning("installer fetched /api/v1/install/%s/preseed.cfg password=hunter2", token)
    try:
        raise ValueError(f"Authorization: Bearer {token}")
    except ValueError:
        log.exception("report failed")
    text = json.dumps(json_lines())
    assert token not in text and "hunter2" not in text
    assert text.count("[redacted]") >= 3


def test_the_actor_is_never_looked_up_by_the_log_call():
    """A lazy user nobody evaluated stays unevaluated: no query inside a log call."""
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "m", (), None)

    def evaluate():
        raise AssertionError("the log filter evaluated the lazy user")

    lazy = SimpleNamespace(user=SimpleLazyObject(evaluate))
    token = context.set_current(context.RequestContext("r1", "192.0.2.1", lazy))
    try:
        RequestContextFilter().filter(record)
    finally:
        context.reset(token)
    assert not hasattr(record, "actor")
    assert record.request_id == "r1" and record.client == "192.0.2.1"

    anonymous = SimpleNamespace(user=AnonymousUser())
    token = context.set_current(context.RequestContext("r2", None, anonymous))
    try:
        record = logging.LogRecord("t", logging.INFO, __file__, 1, "m", (), None)
        RequestContextFilter().filter(record)
    finally:
        context.reset(token)
    assert record.actor == "anonymous"
    assert JsonFormatter().format(record).count("\n") == 0


def test_the_text_format_is_the_default():
    assert django_settings.PUREBOOT_LOG_FORMAT == "text"
    assert django_settings.LOGGING["handlers"]["console"]["formatter"] == "text"
