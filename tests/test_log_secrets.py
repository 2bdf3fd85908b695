"""No secret in a log: every token-bearing request through Django, and Celery's logging.

Red team: node install tokens appeared in the web log on 404s. Here every
handler any logger has (Django's own defaults included: a console handler
when DEBUG is on, mail to ADMINS) writes into one buffer while node-token
URLs are requested answered, refused, with a bad token, with ``?token=``,
failing with a server error, and while passwords and credential values are
posted; neither the buffer nor any mail holds the token or a password. The
nginx and gunicorn logs are grepped in tests/e2e/test_nginx.py and
tests/e2e/test_nginx_logs.py.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core import mail
from django.test import Client

from nodes import services as node_services
from pureboot.celery import app
from pureboot.logredact import RedactSecrets
from tests.factories import make_node, make_user, make_workflow
from workflows import services
from workflows.api import views as workflow_views

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "Sekrit-Pa55word-For-Logs"


def _loggers():
    yield logging.getLogger()
    for logger in list(logging.root.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            yield logger


def _ours(handler: logging.Handler) -> bool:
    """A handler PureBoot's configuration (or a library's) installed, not pytest's capture."""
    return not type(handler).__module__.startswith("_pytest") and not isinstance(
        handler, logging.NullHandler
    )


# The loggers requests, tasks and sign-ins write through: PureBoot's apps and
# the frameworks that carry their data. Some libraries add handlers of their own
# to private loggers while this test process runs (pyasn1's debug printer after
# the LDAP tests, a "push_response" logger with Redis): not PureBoot's
# configuration, and nothing of a request reaches them.
WATCHED = (
    "", "django", "celery", "kombu", "gunicorn", "axes", "rest_framework",
    "mozilla_django_oidc", "django_auth_ldap", "pureboot", "accounts", "approvals",
    "audit", "bootserve", "credentials", "hypervisors", "nodes", "systemsettings",
    "workflows",
)  # fmt: skip


def _watched(name: str) -> bool:
    return name == "root" or any(name == w or name.startswith(w + ".") for w in WATCHED if w)


def test_every_handler_of_every_logger_redacts():
    bare = [
        f"{logger.name}: {handler!r}"
        for logger in _loggers()
        if _watched(logger.name)
        for handler in logger.handlers
        if _ours(handler) and not any(isinstance(f, RedactSecrets) for f in handler.filters)
    ]
    assert not bare, "handlers that write unredacted lines: " + ", ".join(bare)


@pytest.fixture
def written():
    """Everything every configured stream handler writes while the test runs."""
    buffer = io.StringIO()
    swapped = []
    for logger in _loggers():
        for handler in logger.handlers:
            if _ours(handler) and isinstance(handler, logging.StreamHandler):
                if not isinstance(handler, logging.FileHandler):
                    swapped.append((handler, handler.setStream(buffer)))
    yield buffer
    for handler, stream in swapped:
        handler.setStream(stream)


@pytest.fixture
def token(db):
    node = make_node(hostname="logcheck01")
    node_services.perform(node.pk, "assign", node_services.SYSTEM, workflow=make_workflow())
    return services.start_install(node.pk)[2]


@pytest.mark.parametrize("debug", [False, True], ids=["production", "debug"])
def test_no_token_or_password_reaches_a_django_log(settings, written, token, monkeypatch, debug):
    settings.DEBUG = debug
    settings.ADMINS = [("Ops", "ops@example.org")]  # Django would mail its 500s there
    client = Client(raise_request_exception=False)
    install = f"/api/v1/install/{token}"
    assert client.get(f"{install}/user-data").status_code in (200, 404)
    assert client.get(f"{install}/no-such-file").status_code == 404
    assert client.get(f"{install}/no-such-file?token={token}").status_code == 404
    assert client.get(f"/api/v1/install/{token}x/user-data").status_code == 404
    assert client.get(f"/api/v1/install/{token[:-4]}/meta-data").status_code == 404
    for header in (f"Node {token}", f"Node {token}x", f"Bearer {token}"):
        client.post(
            "/api/v1/report",
            {"status": "nonsense"},
            content_type="application/json",
            HTTP_AUTHORIZATION=header,
        )
    assert client.get(f"/api/v1/nodes?token={token}").status_code == 401

    def fails(run, token, request=None):
        raise RuntimeError(f"cannot render the installer files for {token}")

    # An install that serves user-data, whose rendering breaks: a 500 Django logs.
    monkeypatch.setattr(workflow_views.preview, "file_names", lambda run: ["user-data"])
    monkeypatch.setattr(workflow_views.preview, "render_for_run", fails)
    assert client.get(f"{install}/user-data").status_code == 500

    # Passwords: sign-in bodies and credential values are never logged.
    for url in ("/api/v1/auth/token", "/admin/login/"):
        client.post(url, {"username": "nobody", "password": PASSWORD})
    admin = make_user("Admin", username="cred-admin")
    client.force_login(admin)
    client.post(
        "/api/v1/credentials",
        {"name": "bmc-x", "kind": "bmc", "username": "root", "password": PASSWORD},
        content_type="application/json",
    )

    seen = written.getvalue() + "".join(f"{m.subject}\n{m.body}" for m in mail.outbox)
    assert "Not Found: /api/v1/install/[redacted]/no-such-file" in seen  # logged...
    assert "Internal Server Error: /api/v1/install/[redacted]/user-data" in seen
    assert token not in seen and token[:20] not in seen  # ...without the token
    assert PASSWORD not in seen


# --- Celery ---------------------------------------------------------------------

CELERY_WORKER = """
import logging, sys
from celery.utils.log import get_task_logger
from pureboot.celery import app
from pureboot.logredact import RedactSecrets

logfile, token = sys.argv[1], sys.argv[2]
# What `celery worker --loglevel INFO --logfile ...` does before it runs a task.
app.log.setup(loglevel="INFO", logfile=logfile, redirect_stdouts=False, hostname="w@test")
loggers = [logging.getLogger()] + [
    lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)
]
for lg in loggers:
    for h in lg.handlers:
        if not isinstance(h, logging.NullHandler) and not any(
            isinstance(f, RedactSecrets) for f in h.filters
        ):
            print("BARE", lg.name, h)

@app.task(name="tests.refuses")
def refuses(value):
    get_task_logger(__name__).warning("Not Found: /api/v1/install/%s/user-data", value)
    raise ValueError(f"refused {value}")

refuses.apply(args=(token,), throw=False)
"""


def test_celery_workers_log_through_the_redacting_handler(tmp_path):
    token = "eyJyIjo0MiwibiI6NywieCI6ImFiYyJ9:Qm9ndXMtc2lnbmF0dXJlLWZvci10aGUtdGVzdDAx"
    logfile = tmp_path / "worker.log"
    env = os.environ | {
        "DJANGO_SETTINGS_MODULE": "pureboot.settings",
        "PUREBOOT_VAR_DIR": str(tmp_path / "var"),
        "PYTHONPATH": str(REPO),
    }
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", CELERY_WORKER, str(logfile), token],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr + logfile.read_text()
    assert "BARE" not in done.stdout, done.stdout
    assert "tests.refuses" in out and "/api/v1/install/[redacted]/user-data" in out, out
    assert token not in out and token[:20] not in out


def test_celery_tasks_take_primary_keys_only():
    """A task's arguments travel through the broker and the worker's logs: PureBoot
    tasks take primary keys (or nothing), never a secret."""
    import inspect

    app.loader.import_default_modules()
    apps = ("accounts", "approvals", "bootserve", "credentials", "hypervisors", "nodes")
    apps += ("workflows", "audit", "systemsettings", "pureboot")
    ours = {
        name: task for name, task in app.tasks.items() if task.run.__module__.split(".")[0] in apps
    }
    assert len(ours) >= 5
    for name, task in ours.items():
        for param in inspect.signature(task.run).parameters.values():
            assert param.annotation in (int, "int"), (name, param)
