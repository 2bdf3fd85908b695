"""A real OpenID provider for the sign-in tests: django-oidc-provider in a subprocess.

The provider is the small Django project in ``op/`` (its own SQLite file, an
RSA signing key made by django-oidc-provider's ``creatersakey``, clients and
users from the test), served by Django's ``runserver`` on a free loopback
port. Its groups claim is the user's groups there (``op/op_claims.py``).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.processes import stop

OP_DIR = Path(__file__).resolve().parent / "op"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OpenIDProvider:
    """Start with :meth:`start`, stop with :meth:`stop`; ``issuer`` is its issuer URL."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.issuer = f"{self.url}/openid"
        self.log = self.dir / "op.log"
        self.proc: subprocess.Popen | None = None
        self.env = {
            **os.environ,
            "PYTHONPATH": str(OP_DIR),
            "DJANGO_SETTINGS_MODULE": "op_settings",
            "OP_SECRET_KEY": secrets.token_urlsafe(40),
            "OP_DB": str(self.dir / "op.sqlite3"),
            "OP_URL": self.url,
        }

    def _seed(self, *args: str, stdin: str | None = None) -> None:
        result = subprocess.run(
            [sys.executable, str(OP_DIR / "op_seed.py"), *args],
            input=stdin,
            env=self.env,
            cwd=OP_DIR,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise AssertionError(f"op_seed {args[0]} failed: {result.stdout}{result.stderr}")

    def start(self, clients: list[dict], users: list[dict]) -> None:
        self._seed("setup", stdin=json.dumps({"clients": clients, "users": users}))
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "django",
                    "runserver",
                    f"127.0.0.1:{self.port}",
                    "--noreload",
                    "--skip-checks",
                ],
                env=self.env,
                cwd=OP_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the OpenID provider exited: {self.log.read_text()}")
            try:
                r = requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=2)
                if r.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the OpenID provider did not start: {self.log.read_text()}")

    def set_groups(self, username: str, *groups: str) -> None:
        self._seed("groups", username, *groups)

    def stop(self) -> None:
        stop(self.proc)
