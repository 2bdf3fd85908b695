"""Limits that hold in production: several gunicorn workers behind the shipped nginx.

Red team: rate limits trusted X-Forwarded-For from anyone and lived in a
per-process cache, so N workers gave N times the limit; one client address
could lock out every account; the token endpoint answered a lockout with 401.
Here clients come from their own loopback addresses (127.0.0.2, ...) to the
shipped nginx, which forwards to three gunicorn workers with
PUREBOOT_TRUSTED_PROXIES naming nginx. With REDIS_URL set (CI's services leg)
the throttle counters live in that Redis, else in the database table.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_nginx import running_stack

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct-horse-battery-9"
LIMIT = 5
AUTH_RATE = 12


@pytest.fixture(scope="module")
def stack():
    env = {
        "PUREBOOT_TRUSTED_PROXIES": "127.0.0.1",
        "PUREBOOT_LOGIN_FAILURE_LIMIT": str(LIMIT),
        "PUREBOOT_THROTTLE_AUTH": f"{AUTH_RATE}/min",
    }
    with running_stack(workers=3, env=env) as running:
        script = (
            "from django.contrib.auth.models import User\n"
            "for name in ('alice', 'bob'):\n"
            f"    User.objects.create_user(name, password={PASSWORD!r})\n"
        )
        subprocess.run(
            [sys.executable, str(REPO / "manage.py"), "shell", "-c", script],
            env=running.env,
            cwd=REPO,
            check=True,
        )
        yield int(running.web.rsplit(":", 1)[1])


def token(port: int, source: str, username: str, password: str, **headers):
    """POST /api/v1/auth/token from ``source`` (a loopback address) through nginx.

    A new connection each time, so nginx spreads the requests over the workers.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    body = json.dumps({"username": username, "password": password})
    conn.request(
        "POST",
        "/api/v1/auth/token",
        body=body,
        headers={"Content-Type": "application/json", **headers},
    )
    resp = conn.getresponse()
    result = resp.status, dict(resp.getheaders()), resp.read()
    conn.close()
    return result


def test_a_lockout_counts_across_workers_and_ignores_forged_addresses(stack):
    statuses = []
    for attempt in range(LIMIT + 2):
        # Each request claims another address: nginx appends the real one, and
        # only nginx is trusted, so every attempt counts against 127.0.0.2.
        status, headers, _ = token(
            stack, "127.0.0.2", "alice", "wrong", **{"X-Forwarded-For": f"203.0.113.{attempt}"}
        )
        statuses.append(status)
        if status == 429:
            assert int(headers["Retry-After"]) > 0
    # Locked at the limit (the fifth failure), not at three workers times five.
    assert statuses == [401] * (LIMIT - 1) + [429] * 3, statuses
    status, headers, _ = token(stack, "127.0.0.2", "alice", PASSWORD)
    assert status == 429 and int(headers["Retry-After"]) > 0
    # One address cannot lock every account; the owner elsewhere is not locked out.
    assert token(stack, "127.0.0.2", "bob", PASSWORD)[0] == 200
    assert token(stack, "127.0.0.3", "alice", PASSWORD)[0] == 200


def test_the_sign_in_throttle_is_shared_by_every_worker(stack):
    # Another name each time: the per-account lockout never bites, only the throttle.
    statuses = [token(stack, "127.0.0.4", f"nobody{i}", "guess")[0] for i in range(AUTH_RATE + 6)]
    allowed = [s for s in statuses if s != 429]
    # Per-process counters would let up to three times the rate through.
    assert len(allowed) <= AUTH_RATE, statuses
    assert statuses[-1] == 429 and set(allowed) == {401}
