"""The real processes the metrics tests scrape: gunicorn, a Celery worker, the boot daemon.

They share one SQLite database file (migrated once per test module) in a
temporary PUREBOOT_VAR_DIR, as the processes of one host share theirs, and
each serves /metrics on a free port. Missing programs fail the test naming
the Debian package that provides them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], bool], seconds: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    pytest.fail(f"{what} not ready within {seconds:.0f}s\n{tail}")


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - test URL
            return True
    except (OSError, urllib.error.URLError):
        return False


def require(program: str, package: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"{program} is missing: install the Debian package {package}")
    return path


def base_env(var_dir: Path) -> dict[str, str]:
    """The environment of a PureBoot process on the shared database, without the test's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR"}
        and not k.startswith("PUREBOOT_")
    }
    env.update(
        PUREBOOT_VAR_DIR=str(var_dir),
        DJANGO_SETTINGS_MODULE="pureboot.settings",
        PYTHONPATH=os.pathsep.join([str(HERE), str(BASE_DIR)]),
    )
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
