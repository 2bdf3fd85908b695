"""A real Celery worker for integration tests.

Use it from tests under ``tests/integration/`` like this::

    pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

    def test_something(celery_worker_process):
        result = some_task.delay(pk)
        assert result.get(timeout=30) == ...

``transaction=True`` matters: the worker is another process with its own
database connection, so it only sees rows that the test has committed.

pytest-django runs the suite against a separate test database (``test_...``);
the worker is pointed at that same database, not at the one in DATABASE_URL.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.processes import stop

START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class WorkerProcess:
    """A running ``celery worker`` subprocess and how to reach it."""

    hostname: str
    log_path: Path
    database_url: str
    process: subprocess.Popen

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no worker log)"
        return "\n".join(text.splitlines()[-lines:])


def _test_database_url() -> str:
    """DATABASE_URL for the worker, naming the test database pytest-django created."""
    from django.db import connection

    name = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        if connection.is_in_memory_db():
            message = (
                "celery_worker_process needs a test database another process can open; "
                "the SQLite test database is in memory. Set DATABASE_URL to PostgreSQL."
            )
            if os.environ.get("PUREBOOT_REQUIRE_SERVICES") == "1":
                pytest.fail(message)
            pytest.skip(message)
        return f"sqlite:///{name}"
    source = os.environ.get("DATABASE_URL", "")
    parts = urlsplit(source)
    # Keep the credentials, host and query options; swap only the database name.
    return urlunsplit(parts._replace(path=f"/{name}"))


def _ping(app, hostname: str) -> bool:
    try:
        return bool(app.control.ping(destination=[hostname], timeout=1.0))
    except Exception:  # broker not reachable yet: keep waiting
        return False


def _stop(process: subprocess.Popen) -> None:
    stop(process, timeout=STOP_TIMEOUT)  # SIGTERM: Celery's warm shutdown


@pytest.fixture(scope="session")
def celery_worker_process(
    django_db_setup, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """Start ``celery -A pureboot worker`` on the test database; stop it after the session."""
    if not os.environ.get("REDIS_URL"):
        pytest.fail("celery_worker_process needs REDIS_URL; mark the test @pytest.mark.redis")

    from django.conf import settings

    from pureboot.celery import app

    database_url = _test_database_url()
    hostname = f"pureboot-test-{os.getpid()}@{socket.gethostname()}"
    log_path = tmp_path_factory.mktemp("celery-worker") / "worker.log"
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE=os.environ.get("DJANGO_SETTINGS_MODULE", "pureboot.settings"),
        PUREBOOT_VAR_DIR=str(settings.VAR_DIR),
        # worker_tasks.py (test-only tasks) is imported as a top-level module.
        PYTHONPATH=os.pathsep.join(
            p for p in (str(HERE), str(settings.BASE_DIR), env.get("PYTHONPATH")) if p
        ),
    )
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "pureboot",
        "worker",
        "--pool=solo",
        "--concurrency=1",
        "--loglevel=INFO",
        "-Q",
        "celery",
        "-n",
        hostname,
        "--include",
        "worker_tasks",
        "--without-mingle",
        "--without-gossip",
    ]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            cwd=settings.BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    worker = WorkerProcess(hostname, log_path, database_url, process)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _ping(app, hostname):
            if process.poll() is not None:
                pytest.fail(
                    f"Celery worker exited with {process.returncode} before answering ping:\n"
                    + worker.log_tail()
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"Celery worker {hostname} did not answer ping within {START_TIMEOUT:.0f}s:\n"
                    + worker.log_tail()
                )
            time.sleep(0.5)
        yield worker
    finally:
        _stop(process)
