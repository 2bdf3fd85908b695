"""Shared test set-up.

Markers:
- ``postgres``: needs DATABASE_URL on PostgreSQL (row locks, concurrent writers).
- ``redis``: needs REDIS_URL and starts a real Celery worker.

Such tests are deselected, with a printed line saying so, when their service
is not configured (the plain SQLite run of ``make test``). With
PUREBOOT_REQUIRE_SERVICES=1 a deselection is an error: CI's PostgreSQL/Redis
leg must run them all.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

BOOTLAB_WHY = "the boot lab runs in its own leg: `make lab` (PUREBOOT_BOOTLAB=1)"


def _db_is_postgres() -> bool:
    from django.conf import settings

    # django.db.backends.postgresql, or django-prometheus' wrapper of it.
    return settings.DATABASES["default"]["ENGINE"].endswith(".postgresql")


def pytest_configure(config):
    config.addinivalue_line("markers", "postgres: needs DATABASE_URL on PostgreSQL")
    config.addinivalue_line("markers", "redis: needs REDIS_URL and a real Celery worker")
    config.addinivalue_line("markers", "browser: drives the Debian chromium with Playwright")
    config.addinivalue_line(
        "markers",
        "lab: real daemons (dnsmasq) in a private network namespace; fails, never skips, "
        "without its tools",
    )
    config.addinivalue_line(
        "markers",
        "bootlab: QEMU machines boot through the whole controller (tests/e2e/bootlab); "
        "runs with PUREBOOT_BOOTLAB=1 (`make lab`, CI's lab leg)",
    )


def pytest_collection_modifyitems(config, items):
    missing = []
    if not _db_is_postgres():
        missing.append(("postgres", "DATABASE_URL is not PostgreSQL"))
    if not os.environ.get("REDIS_URL"):
        missing.append(("redis", "REDIS_URL is not set"))
    if os.environ.get("PUREBOOT_BOOTLAB") != "1":
        missing.append(("bootlab", BOOTLAB_WHY))
    if not missing:
        return
    keep, dropped = [], {}
    for item in items:
        for marker, why in missing:
            if item.get_closest_marker(marker):
                dropped.setdefault(why, []).append(item)
                break
        else:
            keep.append(item)
    if not dropped:
        return
    items[:] = keep
    config.hook.pytest_deselected(items=[i for group in dropped.values() for i in group])
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    for why, group in dropped.items():
        line = f"deselected {len(group)} tests because {why}"
        if reporter:
            reporter.write_line(line)
    services = [why for why in dropped if why != BOOTLAB_WHY]
    if os.environ.get("PUREBOOT_REQUIRE_SERVICES") == "1" and services:
        raise pytest.UsageError("PUREBOOT_REQUIRE_SERVICES=1 but: " + "; ".join(services))


@pytest.fixture
def keep_test_connection():
    """Django's WSGI handler closes the connection per request; a test calling the
    WSGI application itself keeps it (its transaction must stay), as Django's test
    client does around its requests."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


# --- the shared cache starts empty for every test --------------------------------
# With REDIS_URL the throttle and discovery counters live in Redis, which a
# test's rollback does not undo: clear PureBoot's keys (only those: Celery's
# queues share the server) so one test's sign-ins never throttle the next.
@pytest.fixture(autouse=True)
def _fresh_shared_cache():
    from django.core.cache import cache

    backend = getattr(cache, "_cache", None)
    if backend is None or not hasattr(backend, "get_client"):
        yield  # the database cache: rolled back with each test
        return
    client = backend.get_client(None, write=True)
    keys = list(client.scan_iter("pureboot:*"))
    if keys:
        client.delete(*keys)
    yield


# --- own files: nothing beside the repository is read -----------------------
# Every open() of a path beside the repository (in a folder next to the
# checkout) is recorded for the whole session, and any fails the run
# (pytest_sessionfinish below; tests/test_own_files.py checks the code too).
# Temporary and var folders, the virtualenv and hidden folders beside it are
# where tests are meant to write, so they are not watched.
_ROOT = Path(__file__).resolve().parent.parent
_NOT_WATCHED = tuple(
    str(Path(p).resolve())
    for p in (
        tempfile.gettempdir(),
        os.environ.get("PUREBOOT_VAR_DIR") or _ROOT / "var",
        sys.prefix,
    )
)
_OUTSIDE_READS: set[str] = set()


def _watch_opens(event: str, args: tuple) -> None:
    if event != "open" or not args or not isinstance(args[0], str):
        return
    path = os.path.abspath(args[0])
    if not path.startswith(str(_ROOT.parent) + os.sep) or path.startswith(str(_ROOT) + os.sep):
        return
    if path.startswith(_NOT_WATCHED) or path[len(str(_ROOT.parent)) + 1 :].startswith("."):
        return
    _OUTSIDE_READS.add(path)


sys.addaudithook(_watch_opens)


def pytest_sessionfinish(session, exitstatus):
    """Fail the run, naming the files, if anything beside the repository was opened."""
    if not _OUTSIDE_READS:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter:
        reporter.write_line(
            "FAILED own files: opened beside the repository: " + ", ".join(sorted(_OUTSIDE_READS))
        )
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


# --- audit: let test-database flushes through the append-only triggers ------
# Transactional tests end with a flush (DELETE/TRUNCATE of every table), which
# the audit table's triggers refuse. Run that flush, and only that, unlocked.
@pytest.fixture(scope="session", autouse=True)
def _audit_unlocked_flush():
    from contextlib import ExitStack

    from django.test.testcases import TransactionTestCase

    from audit.db import unlocked

    original = TransactionTestCase._fixture_teardown

    def _fixture_teardown(self):
        with ExitStack() as stack:
            for alias in self._databases_names(include_mirrors=False):
                stack.enter_context(unlocked(alias))
            original(self)

    TransactionTestCase._fixture_teardown = _fixture_teardown
    yield
    TransactionTestCase._fixture_teardown = original


@pytest.fixture
def api():
    """An API client factory: ``api(user)`` is authenticated as ``user``."""
    from rest_framework.test import APIClient

    def make(user=None):
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def site_a(db):
    from tests.factories import SiteFactory

    return SiteFactory(name="Site A", slug="site-a")


@pytest.fixture
def site_b(db):
    from tests.factories import SiteFactory

    return SiteFactory(name="Site B", slug="site-b")
