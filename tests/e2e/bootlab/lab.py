"""The boot lab: a whole PureBoot controller and real firmware in a private network namespace.

Inside one namespace (never routed anywhere): a bridge with 10.99.0.1/24 and
an IPv6 ULA (router advertisements keep iPXE from waiting for IPv6), the
PureBoot web app (``runserver``), the TFTP daemon (``manage.py bootserve``)
on port 69, and dnsmasq running the configuration ``manage.py dhcp_config``
writes, with the hosts directory the controller keeps in step with the
lifecycle. QEMU VMs (SeaBIOS with the iPXE NIC ROM, or OVMF) sit on tap
devices on the bridge. Everything is PureBoot's own code path: the test only
drives the API and powers VMs on, as an operator would.

The controller uses its embedded defaults (SQLite under its own var dir, no
Redis: Celery tasks run in-process), like ``make run``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from . import artifacts
from .artifacts import tool

ROOT = Path(__file__).resolve().parents[3]
ADDRESS = "10.99.0.1"
HTTP_PORT = 8080
BASE = f"http://{ADDRESS}:{HTTP_PORT}"
BRIDGE = "pbbr0"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")


class Lab:
    def __init__(self, workdir: Path, **settings: str) -> None:
        artifacts.require_tools()
        self.dir = workdir
        self.ns = f"pblab-{uuid.uuid4().hex[:8]}"
        self.var = workdir / "var"
        self.boot_root = workdir / "boot"
        self.hosts = workdir / "dhcp-hosts"
        self.leases = workdir / "dnsmasq.leases"
        self.logs = workdir / "logs"
        for d in (self.var, self.boot_root, self.hosts, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}
        self.created = False
        self.token = ""
        self.taps = 0
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PUREBOOT_", "DATABASE_URL", "REDIS_URL", "DJANGO_"))
        }
        self.env.update(
            {
                "PUREBOOT_VAR_DIR": str(self.var),
                "PUREBOOT_BOOT_ROOT": str(self.boot_root),
                "PUREBOOT_PUBLIC_URL": BASE,
                "PUREBOOT_ALLOWED_HOSTS": f"{ADDRESS},127.0.0.1,localhost",
                "PUREBOOT_DHCP_HOSTSDIR": str(self.hosts),
                "PUREBOOT_DHCP_MODE": "full",
                "PUREBOOT_DHCP_LEASEFILE": str(self.leases),
                "PUREBOOT_BOOT_POLL_SECONDS": "2",
                "PUREBOOT_BOOT_WAIT_SECONDS": "20",
                "PUREBOOT_MAX_INSTALL_ATTEMPTS": "2",
                # The lab's machines reboot within seconds: each boot is a new
                # attempt, and its two admins were made minutes ago.
                "PUREBOOT_BOOT_SESSION_SECONDS": "5",
                "PUREBOOT_APPROVER_COOLING_OFF_HOURS": "0",
                "PUREBOOT_THROTTLE_REPORT": "10000/min",
                "PUREBOOT_THROTTLE_ANON": "10000/min",
                "PUREBOOT_THROTTLE_USER": "10000/min",
                **settings,
            }
        )

    # --- processes ---------------------------------------------------------

    def manage(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )
        if done.returncode != 0:
            pytest.fail(f"boot lab: manage.py {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [tool("ip"), "-n", self.ns, *args], capture_output=True, text=True, timeout=30
        )
        if check and done.returncode != 0:
            pytest.fail(f"boot lab: ip {' '.join(args)}: {done.stderr.strip()}")
        return done

    def in_ns(self, *args: str) -> list[str]:
        return [tool("ip"), "netns", "exec", self.ns, *args]

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            self.in_ns(*args), env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
        self.procs[name] = proc
        return proc

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # --- set-up -------------------------------------------------------------

    def up(self) -> None:
        made = subprocess.run([tool("ip"), "netns", "add", self.ns], capture_output=True, text=True)
        if made.returncode != 0:
            pytest.fail(f"boot lab: `ip netns add` failed: {made.stderr.strip()}")
        self.created = True
        self.ip("link", "set", "lo", "up")
        self.ip("link", "add", BRIDGE, "type", "bridge")
        self.ip("addr", "add", f"{ADDRESS}/24", "dev", BRIDGE)
        self.ip("addr", "add", "fd00:99::1/64", "dev", BRIDGE)
        self.ip("link", "set", BRIDGE, "up")
        # A plain interface on the bridge for protocol-level clients (udhcpc, curl).
        self.ip("link", "add", "pbv0", "type", "veth", "peer", "name", "pbc0")
        self.ip("link", "set", "pbv0", "master", BRIDGE)
        self.ip("link", "set", "pbv0", "up")
        self.ip("link", "set", "pbc0", "up")
        self.sercon = self.dir / "sercon-port"
        self.sercon.write_bytes((0x3F8).to_bytes(2, "little"))
        self.manage("migrate", "--noinput", "-v", "0")
        self.manage("bootstrap")
        password = (self.var / "initial_admin_password").read_text().strip()
        self.manage("import_bootloaders")
        artifacts.build(self.boot_root, self.dir / "build")
        self.os_image = self.dir / "build" / "os.img"
        self.start_controller()
        self.start_dhcp()
        self.token = self.api(
            "POST", "/api/v1/auth/token", {"username": "admin", "password": password}
        )["access"]

    def start_controller(self) -> None:
        self.spawn(
            "web",
            [
                sys.executable,
                str(ROOT / "manage.py"),
                "runserver",
                f"{ADDRESS}:{HTTP_PORT}",
                "--noreload",
            ],
        )
        self.spawn(
            "tftp",
            [
                sys.executable,
                str(ROOT / "manage.py"),
                "bootserve",
                "--address",
                ADDRESS,
                "--port",
                "69",
            ],
        )
        deadline = time.monotonic() + 60
        while self.curl("-o", "/dev/null", "-w", "%{http_code}", f"{BASE}/api/v1/") == "000":
            if time.monotonic() > deadline or self.procs["web"].poll() is not None:
                pytest.fail(f"boot lab: the web app did not start:\n{self.log('web')}")
            time.sleep(0.3)

    def stop_controller(self) -> None:
        self.stop("web")
        self.stop("tftp")

    def restart_dhcp(self, **options: str) -> None:
        self.stop("dnsmasq")
        (self.logs / "dnsmasq.log").rename(self.logs / f"dnsmasq-{time.time_ns()}.log")
        self.start_dhcp(**options)

    def start_dhcp(self, **options: str) -> None:
        conf = self.dir / "dnsmasq.conf"
        args = [
            "dhcp_config",
            "--interface",
            BRIDGE,
            "--mode",
            "full",
            "--range",
            "10.99.0.100,10.99.0.199",
            "--netmask",
            "255.255.255.0",
            "--tftp-server",
            ADDRESS,
            "--http-base",
            BASE,
            "--ipv6-ra",
            "--log-dhcp",
            "--leasefile",
            str(self.leases),
            "--output",
            str(conf),
        ]
        for key, value in options.items():
            args += [f"--{key.replace('_', '-')}", value]
        self.manage(*args)
        self.manage("dhcp_sync")
        # dnsmasq drops to `nobody`: it must still read the hosts dir.
        for path in (self.dir, self.hosts):
            path.chmod(0o755)
        self.spawn(
            "dnsmasq",
            [
                tool("dnsmasq"),
                "--keep-in-foreground",
                f"--conf-file={conf}",
                "--log-facility=-",
                f"--pid-file={self.dir / 'dnsmasq.pid'}",
            ],
        )
        deadline = time.monotonic() + 15
        while "DHCP, IP range" not in self.log("dnsmasq"):
            if time.monotonic() > deadline or self.procs["dnsmasq"].poll() is not None:
                pytest.fail(f"boot lab: dnsmasq did not start:\n{self.log('dnsmasq')}")
            time.sleep(0.2)

    def down(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        if self.created:
            subprocess.run([tool("ip"), "netns", "del", self.ns], capture_output=True)

    # --- the operator's side: the REST API ------------------------------------

    def curl(self, *args: str) -> str:
        done = subprocess.run(
            self.in_ns(tool("curl"), "-s", "-m", "30", *args),
            capture_output=True,
            text=True,
            timeout=40,
        )
        return done.stdout

    def second_admin_token(self) -> str:
        """A JWT for a second administrator (four-eye approvals need two people).

        Each call signs the same ``approver`` in with a new password.
        """
        password = uuid.uuid4().hex
        self.manage(
            "shell",
            "-c",
            "from django.contrib.auth.models import Group, User; "
            "u, _ = User.objects.get_or_create(username='approver'); "
            f"u.set_password('{password}'); u.save(); "
            "u.groups.add(Group.objects.get(name='Admin'))",
        )
        token = self.token
        self.token = ""
        try:
            data = {"username": "approver", "password": password}
            return self.api("POST", "/api/v1/auth/token", data)["access"]
        finally:
            self.token = token

    def api(
        self, method: str, path: str, data: dict | None = None, token: str | None = None
    ) -> dict:
        args = ["-X", method, "-H", "Accept: application/json", "-w", "\n%{http_code}"]
        token = self.token if token is None else token
        if token:
            args += ["-H", f"Authorization: Bearer {token}"]
        if data is not None:
            args += ["-H", "Content-Type: application/json", "--data", json.dumps(data)]
        out = self.curl(*args, BASE + path)
        body, _, status = out.rpartition("\n")
        if not status.startswith("2"):
            pytest.fail(f"boot lab: {method} {path} -> {status}: {body[:2000]}")
        return json.loads(body) if body else {}

    def node(self, mac: str) -> dict | None:
        nodes = self.api("GET", f"/api/v1/nodes?mac={mac}")["results"]
        return nodes[0] if nodes else None

    def wait_node(self, mac: str, timeout: float = 60, **expect) -> dict:
        deadline = time.monotonic() + timeout
        node = None
        while time.monotonic() < deadline:
            node = self.node(mac)
            if node and all(node.get(k) == v for k, v in expect.items()):
                return node
            time.sleep(1)
        pytest.fail(f"boot lab: node {mac} never had {expect}; last seen: {node}")

    def events(self, node_id: int) -> list[dict]:
        return self.api("GET", f"/api/v1/nodes/{node_id}/events")["results"]

    def change_state(self, node_id: int, state: str, **extra) -> dict:
        return self.api("PATCH", f"/api/v1/nodes/{node_id}/state", {"state": state, **extra})

    def tftp(self, path: str) -> int:
        """curl's exit code fetching ``path`` from the TFTP daemon: 0 ok, 68 not found."""
        done = subprocess.run(
            self.in_ns(
                tool("curl"), "-s", "-m", "20", "-o", "/dev/null", f"tftp://{ADDRESS}/{path}"
            ),
            capture_output=True,
            timeout=30,
        )
        return done.returncode

    def tftp_get(self, path: str) -> bytes:
        out = self.dir / "tftp-download"
        done = subprocess.run(
            self.in_ns(tool("curl"), "-s", "-m", "30", "-o", str(out), f"tftp://{ADDRESS}/{path}"),
            capture_output=True,
            timeout=40,
        )
        if done.returncode != 0:
            pytest.fail(f"boot lab: TFTP {path}: curl exit {done.returncode}")
        return out.read_bytes()

    def dhcp(self, mac: str, *options: str) -> dict[str, str] | None:
        """One DHCP exchange from the lab's client interface with ``mac``: the lease, or None."""
        self.ip("link", "set", "pbc0", "down")
        self.ip("link", "set", "pbc0", "address", mac)
        self.ip("link", "set", "pbc0", "up")
        script = self.dir / "udhcpc-env.sh"
        lease = self.dir / "udhcpc-lease"
        script.write_text(f'#!/bin/sh\n[ "$1" = bound ] && env > {lease}\nexit 0\n')
        script.chmod(0o755)
        lease.unlink(missing_ok=True)
        subprocess.run(
            self.in_ns(
                tool("busybox"),
                "udhcpc",
                "-n",
                "-q",
                "-f",
                "-i",
                "pbc0",
                "-t",
                "4",
                "-T",
                "2",
                "-s",
                str(script),
                *options,
            ),
            capture_output=True,
            timeout=40,
        )
        if not lease.exists():
            return None
        return dict(line.split("=", 1) for line in lease.read_text().splitlines() if "=" in line)

    def dhcp_log(self) -> str:
        return self.log("dnsmasq")

    # --- machines ---------------------------------------------------------------

    def tap(self) -> str:
        self.taps += 1
        name = f"pbtap{self.taps}"
        self.ip("tuntap", "add", "dev", name, "mode", "tap")
        self.ip("link", "set", name, "master", BRIDGE)
        self.ip("link", "set", name, "up")
        return name

    def vm(
        self,
        name: str,
        mac: str,
        firmware: str = "bios",
        *,
        disk: str = "blank",
        system_uuid: str | None = None,
        pxe: bool = True,
    ) -> VM:
        return VM(self, name, mac, firmware, disk=disk, system_uuid=system_uuid, pxe=pxe)


class VM:
    """One QEMU machine on the lab bridge; its disk and UEFI variables survive power cycles."""

    def __init__(
        self,
        lab: Lab,
        name: str,
        mac: str,
        firmware: str,
        *,
        disk: str,
        system_uuid: str | None,
        pxe: bool = True,
    ) -> None:
        self.lab, self.name, self.mac, self.firmware = lab, name, mac, firmware
        self.pxe = pxe  # UEFI: False switches OVMF's PXE off, leaving HTTP Boot
        self.uuid = system_uuid or str(uuid.uuid4())
        self.dir = lab.dir / "vms" / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.disk = self.dir / "disk.img"
        if disk == "os":  # an old OS already on the disk
            shutil.copyfile(lab.os_image, self.disk)
        else:
            with self.disk.open("wb") as f:
                f.truncate(artifacts.DISK_MB * 1024 * 1024)
        if firmware == "uefi":
            shutil.copyfile(OVMF_VARS, self.dir / "vars.fd")
        self.tap = lab.tap()
        self.proc: subprocess.Popen | None = None
        self.boots = 0
        self.console = self.dir / "console-0.log"

    def command(self) -> list[str]:
        cmd = [
            tool("qemu-system-x86_64"),
            "-m",
            "512",
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
            "-serial",
            f"file:{self.console}",
            "-smbios",
            f"type=1,uuid={self.uuid}",
            "-netdev",
            f"tap,id=n0,ifname={self.tap},script=no,downscript=no",
            "-drive",
            f"file={self.disk},if=none,id=d0,format=raw",
            "-device",
            "virtio-blk-pci,drive=d0,bootindex=2",
        ]
        if self.firmware == "uefi":
            cmd += [
                "-machine",
                "q35",
                "-drive",
                f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
                "-drive",
                f"if=pflash,format=raw,file={self.dir / 'vars.fd'}",
                "-fw_cfg",
                "name=opt/org.tianocore/IPv6PXESupport,string=n",
                "-fw_cfg",
                f"name=opt/org.tianocore/IPv4PXESupport,string={'y' if self.pxe else 'n'}",
                # OVMF's own virtio-net driver and PXE, as on a real UEFI machine.
                "-device",
                f"virtio-net-pci,netdev=n0,mac={self.mac},bootindex=1,romfile=",
            ]
        else:
            cmd += [
                "-machine",
                "pc",
                # SeaBIOS mirrors the screen to COM1 (a little-endian port number),
                # so iPXE's messages are readable.
                "-fw_cfg",
                f"name=etc/sercon-port,file={self.lab.sercon}",
                "-device",
                f"virtio-net-pci,netdev=n0,mac={self.mac},bootindex=1",
            ]
        return cmd

    def power_on(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.boots += 1
        self.console = self.dir / f"console-{self.boots}.log"
        self.console.write_bytes(b"")
        self.proc = subprocess.Popen(
            self.lab.in_ns(*self.command()),
            stdout=(self.dir / f"qemu-{self.boots}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        text = self.console.read_bytes().decode("utf-8", "replace")
        text = re.sub(r"\x1b(\[[0-9;?]*[A-Za-z]|c)", "", text)
        return text.replace("\r", "").replace("\b \b", "")

    def wait_for(self, marker: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.output()
            if marker in text:
                return text
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        self.kill()
        pytest.fail(
            f"boot lab: {self.name} (boot {self.boots}) never printed {marker!r}; "
            f"console tail:\n{self.output()[-3000:]}"
        )

    def wait_off(self, timeout: float = 120) -> str:
        """Wait for the VM to power off or reboot (QEMU runs with -no-reboot)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(
                f"boot lab: {self.name} (boot {self.boots}) still running after {timeout}s; "
                f"console tail:\n{self.output()[-3000:]}"
            )
        return self.output()

    def boot(self, timeout: float = 120) -> str:
        """One power cycle: on, run until it powers off or reboots, return the console."""
        self.power_on()
        return self.wait_off(timeout)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
