"""A real OpenSSH server (Debian openssh-server) on a free loopback port, for one test."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.processes import stop

SSHD = "/usr/sbin/sshd"


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def local_address() -> str:
    """One of this machine's IPv4 addresses that is not loopback (config_run refuses those)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.254", 9))  # no packet is sent: this only picks a route
            found = s.getsockname()[0]
        except OSError:
            found = ""
    if not found or found.startswith("127."):
        pytest.fail("the tests need a non-loopback IPv4 address on this machine")
    return found


def keypair(folder: Path, name: str) -> tuple[str, str]:
    """(private key PEM text, public key line) made by ssh-keygen."""
    path = folder / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True
    )
    return path.read_text(), (folder / f"{name}.pub").read_text()


class Sshd:
    """sshd accepting one user key for the user running the tests."""

    def __init__(self, folder: Path, authorized_key: str, address: str = "") -> None:
        if not os.path.exists(SSHD):
            pytest.fail("sshd is not installed (Debian package openssh-server)")
        self.folder = folder
        self.address = address or local_address()
        self.port = free_port(self.address)
        keypair(folder, "host_key")
        (folder / "authorized_keys").write_text(authorized_key)
        (folder / "authorized_keys").chmod(0o600)
        config = folder / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress {self.address}\nHostKey {folder / 'host_key'}\n"
            f"PidFile {folder / 'sshd.pid'}\nAuthorizedKeysFile {folder / 'authorized_keys'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "StrictModes no\nPermitRootLogin prohibit-password\n"
            "Subsystem sftp /usr/lib/openssh/sftp-server\n"
        )
        versions = Path.home() / ".pyenv" / "versions"
        if versions.is_dir():
            # The test user's shell start-up may put pyenv's shims first on PATH; every
            # shim Ansible's interpreter discovery may pick must then find its Python.
            names = ":".join(["system", *sorted(p.name for p in versions.iterdir())])
            with config.open("a") as fh:
                fh.write(f"SetEnv PYENV_VERSION={names}\n")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation
        self.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=open(folder / "sshd.log", "wb"),  # noqa: SIM115 - closed with the process
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.address, self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail(f"sshd did not start: {(folder / 'sshd.log').read_text()[-2000:]}")

    def stop(self) -> None:
        stop(self.process)
