"""A real Salt master, salt-api (rest_cherrypy) and minion on loopback ports, for one test.

Salt pins libraries differently from the controller, so it lives in its own
virtualenv: PUREBOOT_TEST_SALT_BIN names its bin folder (``make test``
builds ``.venv-salt``). salt-api logs in with Salt's ``file`` eauth (a
text file of ``user:password``), the account allowed ``@wheel`` and ``.*``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from .sshd import free_port

REPO = Path(__file__).resolve().parents[2]


def salt_bin(name: str) -> str:
    folder = Path(os.environ.get("PUREBOOT_TEST_SALT_BIN") or REPO / ".venv-salt" / "bin")
    path = folder / name
    if not path.exists():
        pytest.fail(f"{name} is not installed in {folder} (pip install salt CherryPy there)")
    return str(path)


def _wait_port(port: int, what: str, log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{what} did not start: {log.read_text()[-3000:] if log.exists() else ''}")


class SaltStack:
    """Master + salt-api; minions are started on demand with :meth:`minion`."""

    def __init__(self, folder: Path, username: str, password: str) -> None:
        self.folder = folder
        # Salt's IPC sockets live under the root folders: short paths (AF_UNIX limit).
        self.short = Path(tempfile.mkdtemp(prefix="salt-", dir="/tmp"))
        self.username, self.password = username, password
        self.processes: list[subprocess.Popen] = []
        self.publish_port, self.ret_port, self.api_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        (folder / "eauth.txt").write_text(f"{username}:{password}\n")
        (folder / "states").mkdir()
        conf = folder / "master-conf"
        conf.mkdir()
        master = {
            "root_dir": str(self.short / "m"),
            "user": "root",
            "interface": "127.0.0.1",
            "publish_port": self.publish_port,
            "ret_port": self.ret_port,
            "file_roots": {"base": [str(folder / "states")]},
            "external_auth": {
                "file": {
                    "^filename": str(folder / "eauth.txt"),
                    "^filetype": "text",
                    username: ["@wheel", ".*"],
                }
            },
            "rest_cherrypy": {"host": "127.0.0.1", "port": self.api_port, "disable_ssl": True},
            "netapi_enable_clients": ["local", "wheel"],
            "log_file": str(folder / "master.log"),
            "log_level_logfile": "info",
        }
        (conf / "master").write_text(json.dumps(master))  # JSON is YAML
        self._start(["salt-master", "-c", str(conf), "-l", "warning"], "master")
        _wait_port(self.ret_port, "salt-master", folder / "master.log")
        self._start(["salt-api", "-c", str(conf), "-l", "warning"], "api")
        _wait_port(self.api_port, "salt-api", folder / "api.out")

    def _start(self, command: list[str], name: str) -> None:
        out = open(self.folder / f"{name}.out", "wb")  # noqa: SIM115 - closed at exit
        self.processes.append(
            subprocess.Popen(
                [salt_bin(command[0]), *command[1:]],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                start_new_session=True,  # its own process group: stopped with its workers
            )
        )

    def minion(self, minion_id: str) -> None:
        """Start a minion with ``minion_id``; it submits its key to the master."""
        conf = self.folder / f"minion-{minion_id}"
        conf.mkdir()
        minion = {
            "root_dir": str(self.short / minion_id.split(".")[0]),
            "id": minion_id,
            "master": "127.0.0.1",
            "master_port": self.ret_port,
            "publish_port": self.publish_port,
            "log_file": str(self.folder / f"minion-{minion_id}.log"),
            "acceptance_wait_time": 1,
            "acceptance_wait_time_max": 1,
        }
        (conf / "minion").write_text(json.dumps(minion))
        self._start(["salt-minion", "-c", str(conf), "-l", "warning"], f"minion-{minion_id}")

    def _call(self, lowstate: dict) -> object:
        """One lowstate chunk through the test's own salt-api login."""
        session = requests.Session()
        token = session.post(
            f"{self.url}/login",
            json={"username": self.username, "password": self.password, "eauth": "file"},
            timeout=30,
        ).json()["return"][0]["token"]
        answer = session.post(
            self.url,
            json=[lowstate],
            headers={"X-Auth-Token": token, "Accept": "application/json"},
            timeout=60,
        )
        return answer.json()["return"][0]

    def keys(self) -> dict[str, list[str]]:
        """What ``salt-key -L`` would list."""
        return self._call({"client": "wheel", "fun": "key.list_all"})["data"]["return"]

    def wait_for_ping(self, minion_id: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            answer = self._call({"client": "local", "tgt": minion_id, "fun": "test.ping"})
            if answer.get(minion_id) is True:
                return
            time.sleep(0.5)
        pytest.fail(f"minion {minion_id} does not answer test.ping")

    def wait_for_key(self, minion_id: str, where: str = "minions_pre", seconds: float = 60):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if minion_id in self.keys().get(where, []):
                return
            time.sleep(0.5)
        pytest.fail(f"minion {minion_id} never showed up in {where}")

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        shutil.rmtree(self.short, ignore_errors=True)
