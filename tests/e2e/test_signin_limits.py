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
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.e2e.test_nginx import _free_port, _nginx, _wait, render_template
from tests.processes import stop

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct-horse-battery-9"
LIMIT = 5
AUTH_RATE = 12


@pytest.fixture(scope="module")
def stack():
    nginx = _nginx()
    work = Path(tempfile.mkdtemp(prefix="pureboot-limits-"))
    os.chmod(work, 0o755)
    for sub in ("var", "var/static", "boot", "images", "tmp"):
        (work / sub).mkdir(parents=True)
        os.chmod(work / sub, 0o755)
    os.chmod(work / "tmp", 0o777)
    app_port, web_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {
        "PUREBOOT_VAR_DIR": str(work / "var"),
        "PUREBOOT_BOOT_ROOT": str(work / "boot"),
        "PUREBOOT_IMAGE_ROOT": str(work / "images"),
        "PUREBOOT_TRUSTED_PROXIES": "127.0.0.1",
        "PUREBOOT_LOGIN_FAILURE_LIMIT": str(LIMIT),
        "PUREBOOT_THROTTLE_AUTH": f"{AUTH_RATE}/min",
        "PUREBOOT_LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "pureboot.settings",
        "PYTHONPATH": str(REPO),
    }
    manage = [sys.executable, str(REPO / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, cwd=REPO, check=True)
    script = (
        "from django.contrib.auth.models import User\n"
        "for name in ('alice', 'bob'):\n"
        f"    User.objects.create_user(name, password={PASSWORD!r})\n"
    )
    subprocess.run([*manage, "shell", "-c", script], env=env, cwd=REPO, check=True)
    conf = render_template(
        {
            "PUREBOOT_NGINX_LISTEN": f"127.0.0.1:{web_port}",
            "PUREBOOT_UPSTREAM": f"127.0.0.1:{app_port}",
            "PUREBOOT_BOOT_ROOT": str(work / "boot"),
            "PUREBOOT_IMAGE_ROOT": str(work / "images"),
            "PUREBOOT_STATIC_ROOT": str(work / "var" / "static"),
            "PUREBOOT_NGINX_ACCESS_LOG": str(work / "pureboot.access.log"),
        }
    )
    (work / "pureboot.conf").write_text(conf)
    temp = "".join(
        f"{kind}_temp_path {work}/tmp/{kind}; "
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (work / "nginx.conf").write_text(
        f"daemon off; worker_processes 1; pid {work}/nginx.pid;\n"
        f"error_log {work}/nginx.log warn;\n"
        "events { worker_connections 256; }\n"
        f"http {{ access_log {work}/access.log; {temp}\n"
        f"  include {work}/pureboot.conf;\n}}\n"
    )
    gunicorn = Path(sys.executable).with_name("gunicorn")
    app_log = (work / "gunicorn.log").open("ab")
    procs = [
        subprocess.Popen(
            [str(gunicorn), "-c", str(REPO / "deploy" / "gunicorn.conf.py"), "--workers", "3"]
            + ["--bind", f"127.0.0.1:{app_port}", "pureboot.wsgi"],
            env=env,
            cwd=REPO,
            stdout=app_log,
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [nginx, "-c", str(work / "nginx.conf"), "-e", str(work / "nginx.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        ),
    ]
    try:
        _wait(f"http://127.0.0.1:{app_port}/boot/ipxe", procs[0], work / "gunicorn.log")
        _wait(f"http://127.0.0.1:{web_port}/boot/ipxe", procs[1], work / "nginx.log")
        yield web_port
    finally:
        for proc in procs:
            stop(proc)
        app_log.close()
        shutil.rmtree(work, ignore_errors=True)


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
