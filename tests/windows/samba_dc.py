"""A real Samba Active Directory domain controller for the tests, in its own namespaces.

The DC (``samba``, Debian package samba-ad-dc) runs in a private network
namespace joined to the host by a veth pair (host 10.231.N.1, DC 10.231.N.2),
and in a private mount namespace with tmpfs over Samba's fixed run/state
folders (smbd finds winbindd only at the compiled-in socket path). Tests in
the host namespace reach it by address; PureBoot's samba-tool and net calls
also need the domain's names, so :attr:`SambaDC.command_prefix` (given to
PUREBOOT_SAMBA_COMMAND_PREFIX) runs each command in a throwaway mount
namespace whose /etc/resolv.conf names the DC's DNS and whose /etc/hosts
names the DC. Simple LDAP binds without TLS are allowed
(``ldap server require strong auth = no``) for the sign-in test.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REALM = "CORP.EXAMPLE.TEST"
DOMAIN = REALM.lower()
WORKGROUP = "CORP"
BASE_DN = "DC=corp,DC=example,DC=test"
HOSTNAME = "dc1"

# tool -> Debian package
TOOLS = {
    "samba": "samba-ad-dc",
    "samba-tool": "samba-common-bin",
    "net": "samba-common-bin",
    "smbclient": "smbclient",
    "ip": "iproute2",
    "unshare": "util-linux",
    "mount": "mount",
}


def require_tools() -> None:
    """Fail (never skip) naming the Debian package that is missing."""
    for tool, package in TOOLS.items():
        if not shutil.which(tool):
            pytest.fail(f"{tool} not found (Debian package: {package})")
    if os.geteuid() != 0:
        pytest.fail("the Samba DC tests need root (network and mount namespaces)")


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw)


class SambaDC:
    def __init__(self, root: Path) -> None:
        self.root = root
        tag = secrets.token_hex(3)
        self.netns = f"pbdj-{tag}"
        self.veth_host, self.veth_ns = f"pbdj{tag}h", f"pbdj{tag}n"
        self.subnet = 10 + secrets.randbelow(240)
        self.ip = f"10.231.{self.subnet}.2"
        self.admin_password = "Adm1n-" + secrets.token_urlsafe(12)
        self.fqdn = f"{HOSTNAME}.{DOMAIN}"
        self.conf = root / "dc" / "etc" / "smb.conf"
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"ldap://{self.ip}"

    @property
    def command_prefix(self) -> list[str]:
        script = (
            f"mount --bind {self.root}/resolv.conf /etc/resolv.conf && "
            f'mount --bind {self.root}/hosts /etc/hosts && exec "$@"'
        )
        return ["unshare", "-m", "--", "sh", "-c", script, "sh"]

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        dc = self.root / "dc"
        (self.root / "empty.conf").write_text("")
        done = _run(
            [
                "samba-tool", "domain", "provision",
                f"--realm={REALM}", f"--domain={WORKGROUP}", "--server-role=dc",
                "--dns-backend=SAMBA_INTERNAL", f"--adminpass={self.admin_password}",
                f"--targetdir={dc}", f"--host-name={HOSTNAME}", f"--host-ip={self.ip}",
                "-s", str(self.root / "empty.conf"),
            ]
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        self._configure(dc)
        (self.root / "resolv.conf").write_text(f"nameserver {self.ip}\n")
        (self.root / "hosts").write_text(f"127.0.0.1 localhost\n{self.ip} {self.fqdn} {HOSTNAME}\n")
        self._network()
        start = (
            "set -e; for d in /run/samba /var/lib/samba /var/cache/samba /var/log/samba; do "
            "mkdir -p $d; mount -t tmpfs tmpfs $d; done; "
            f"exec samba -s {self.conf} -i"
        )
        log = open(self.root / "samba.log", "wb")  # noqa: SIM115 - kept open while it runs
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "unshare", "-m", "sh", "-c", start],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()

    def _configure(self, dc: Path) -> None:
        text = self.conf.read_text()
        keep = [
            line
            for line in text.splitlines()
            if not line.strip().startswith(("log file", "dns forwarder"))
        ]
        extra = (
            f"\tpid directory = {dc}/run\n"
            f"\tncalrpc dir = {dc}/run/ncalrpc\n"
            f"\tntp signd socket directory = {dc}/run/ntp_signd\n"
            f"\tlog file = {dc}/log.%m\n"
            f"\tinterfaces = {self.ip} lo\n"
            "\tbind interfaces only = yes\n"
            "\tldap server require strong auth = no\n"
            "\tdns forwarder = 127.0.0.9\n"
        )
        out = "\n".join(keep).replace("[global]", "[global]\n" + extra.rstrip("\n"), 1)
        self.conf.write_text(out + "\n")
        (dc / "run").mkdir(exist_ok=True)

    def _network(self) -> None:
        host_ip = f"10.231.{self.subnet}.1/24"
        for argv in (
            ["ip", "netns", "add", self.netns],
            ["ip", "link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_ns],
            ["ip", "link", "set", self.veth_ns, "netns", self.netns],
            ["ip", "addr", "add", host_ip, "dev", self.veth_host],
            ["ip", "link", "set", self.veth_host, "up"],
            ["ip", "-n", self.netns, "addr", "add", f"{self.ip}/24", "dev", self.veth_ns],
            ["ip", "-n", self.netns, "link", "set", self.veth_ns, "up"],
            ["ip", "-n", self.netns, "link", "set", "lo", "up"],
        ):
            done = _run(argv)
            assert done.returncode == 0, (argv, done.stderr)

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.root / "samba.log").read_text()[-3000:]
            if all(self._open(port) for port in (88, 389, 445)):
                # smbd answers NTLM only once winbindd is up: wait for a real sign-in.
                if self.tool("user", "show", "Administrator").returncode == 0 and (self.smb_ok()):
                    return
            time.sleep(0.2)
        raise AssertionError("the Samba DC did not start: " + (self.root / "samba.log").read_text())

    def _open(self, port: int) -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex((self.ip, port)) == 0

    def smb_ok(self) -> bool:
        auth = self.root / "admin.auth"
        if not auth.exists():
            fd = os.open(auth, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(f"username = Administrator@{REALM}\npassword = {self.admin_password}\n")
        empty = str(self.root / "empty.conf")
        done = _run(["smbclient", "-L", f"//{self.ip}", "-A", str(auth), "-s", empty])
        return done.returncode == 0

    def _pids(self) -> list[int]:
        """Every process in the DC's network namespace (smbd starts samba-dcerpcd in
        a session of its own, outside our process group)."""
        done = _run(["ip", "netns", "pids", self.netns])
        return [int(p) for p in done.stdout.split()] if done.returncode == 0 else []

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self._pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 5
            while self._pids() and time.monotonic() < deadline:
                time.sleep(0.1)
        _run(["ip", "netns", "del", self.netns])
        _run(["ip", "link", "del", self.veth_host])

    # --- administration as Administrator ---------------------------------------

    def tool(self, *args: str) -> subprocess.CompletedProcess:
        """samba-tool against the DC as Administrator (password from a 0600 file)."""
        pw = self.root / "admin.pw"
        if not pw.exists():
            fd = os.open(pw, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(self.admin_password + "\n")
        env = {"PATH": os.environ["PATH"], "PASSWD_FILE": str(pw), "HOME": str(self.root)}
        return _run(
            [
                "samba-tool", *args, "-H", self.uri, "-U", f"Administrator@{REALM}",
                "-s", str(self.root / "empty.conf"),
            ],
            env=env,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def must(self, *args: str) -> str:
        done = self.tool(*args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout

    def computer_dn(self, machine: str) -> str | None:
        done = self.tool("computer", "show", machine, "--attributes=distinguishedName")
        if done.returncode != 0:
            assert "Unable to find computer" in done.stderr + done.stdout, done.stderr
            return None
        return next(
            line.split(":", 1)[1].strip()
            for line in done.stdout.splitlines()
            if line.startswith("distinguishedName:")
        )

    def member(self, machine: str) -> Member:
        return Member(self, machine)


class Member:
    """A Samba domain member with its own smb.conf and private folders (no daemons)."""

    def __init__(self, dc: SambaDC, machine: str) -> None:
        self.dc = dc
        self.dir = dc.root / f"member-{machine.lower()}"
        for sub in ("private", "state", "cache", "lock", "run"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        d = self.dir
        self.conf = d / "smb.conf"
        self.conf.write_text(
            "[global]\n"
            f"\tworkgroup = {WORKGROUP}\n\trealm = {REALM}\n\tnetbios name = {machine}\n"
            "\tsecurity = ads\n"
            f"\tprivate dir = {d}/private\n\tstate directory = {d}/state\n"
            f"\tcache directory = {d}/cache\n\tlock directory = {d}/lock\n"
            f"\tpid directory = {d}/run\n\tncalrpc dir = {d}/run/ncalrpc\n"
            f"\tlog file = {d}/log.%m\n"
        )

    def net(self, *args: str) -> subprocess.CompletedProcess:
        return _run([*self.dc.command_prefix, "net", *args, "-s", str(self.conf)])
