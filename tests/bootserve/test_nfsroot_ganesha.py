"""The real nfs-ganesha serving PureBoot's NFS roots, in a private network namespace.

ganesha runs with the config PureBoot writes (``nfsroot.apply_exports``) on a
high port, in its own network namespace and with its NFSv4 recovery state on
a private tmpfs (a fresh server with no clients to wait for leaves its grace
period at once, and the host's /var/lib/nfs/ganesha stays untouched). The
client is libnfs (``nfs-cp``, ``nfs-cat``, ``nfs-ls``, Debian libnfs-utils)
in the same namespace: this sandbox's kernel has no NFS client (no ``nfs4``
in /proc/filesystems, no modules to load), so ``mount -t nfs4`` cannot run
here; the boot lab's QEMU guest mounts with the kernel's.

Needs root (network and mount namespaces) and the Debian packages
nfs-ganesha, nfs-ganesha-vfs, libnfs-utils and iproute2; without them it
fails naming them, never skips.
"""

from __future__ import annotations

import glob
import io
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from django.core.management import call_command

from bootserve import nfsroot
from bootserve.tasks import sync_nfs_root
from nodes import services as node_services
from nodes.models import Node
from tests.workflows.test_rootfs import _info, make_archive, system_members
from workflows import services as workflow_services

from .test_nfsroot import diskless_node

TOOLS = {
    "ganesha.nfsd": "nfs-ganesha",
    "nfs-cp": "libnfs-utils",
    "nfs-cat": "libnfs-utils",
    "nfs-ls": "libnfs-utils",
    "ip": "iproute2",
    "unshare": "util-linux",
}
VFS_FSAL = "/usr/lib/*/ganesha/libfsalvfs.so"
RECOVERY = "/var/lib/nfs/ganesha"


def _tools() -> dict[str, str]:
    found = {
        name: shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin") for name in TOOLS
    }
    missing = sorted({TOOLS[name] for name, path in found.items() if not path})
    if not glob.glob(VFS_FSAL):
        missing.append("nfs-ganesha-vfs")
    if missing:
        pytest.fail(
            "nfs-ganesha test: missing Debian packages: apt-get install -y "
            f"--no-install-recommends {' '.join(sorted(set(missing)))}"
        )
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Ganesha:
    """ganesha.nfsd in a private network namespace, and a libnfs client beside it."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.tools = _tools()
        self.dir = workdir
        self.port = port
        self.ns = f"pbnfs-{uuid.uuid4().hex[:10]}"
        self.config = workdir / "ganesha.conf"
        self.pidfile = workdir / "ganesha.pid"
        self.log = workdir / "ganesha.log"
        self.proc: subprocess.Popen | None = None
        self.made_ns = False

    def start(self) -> None:
        ip = self.tools["ip"]
        made = subprocess.run([ip, "netns", "add", self.ns], capture_output=True, text=True)
        if made.returncode != 0:
            pytest.fail(f"nfs-ganesha test: `ip netns add` failed (needs root): {made.stderr}")
        self.made_ns = True
        subprocess.run([ip, "-n", self.ns, "link", "set", "lo", "up"], check=True)
        # Private recovery state: nothing of the host's, no grace period to wait out.
        script = (
            f"mkdir -p {RECOVERY} && mount -t tmpfs pureboot-ganesha {RECOVERY} && "
            f'exec "$0" -F -f {self.config} -L {self.log} -p {self.pidfile}'
        )
        self.proc = subprocess.Popen(
            [ip, "netns", "exec", self.ns, self.tools["unshare"], "-m", "sh", "-c", script,
             self.tools["ganesha.nfsd"]],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while not self.client("nfs-ls", "/pureboot").returncode == 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ganesha did not start:\n{self.logged()}")
            time.sleep(0.3)

    def url(self, path: str) -> str:
        return f"nfs://127.0.0.1{path}?version=4&nfsport={self.port}"

    def client(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        """Run a libnfs tool in the namespace; paths starting with /pureboot become URLs."""
        argv = [self.url(a) if a.startswith("/pureboot") else a for a in args]
        return subprocess.run(
            [self.tools["ip"], "netns", "exec", self.ns, self.tools[tool], *argv],
            capture_output=True,
            text=True,
            timeout=30,
        )

    def wait_for(self, check, what: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                pytest.fail(f"ganesha: {what} within {timeout} s:\n{self.logged()}")
            time.sleep(0.3)

    def logged(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text[-4000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.made_ns:
            subprocess.run([self.tools["ip"], "netns", "del", self.ns], capture_output=True)


@pytest.mark.lab
def test_the_lab_fails_rather_than_skips_without_ganesha(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y .*nfs-ganesha"):
        _tools()


@pytest.mark.lab
@pytest.mark.django_db
def test_real_ganesha_serves_templates_read_only_and_each_overlay_to_its_node(settings, tmp_path):
    _tools()
    port = _free_port()
    settings.PUREBOOT_NFSROOT_DIR = tmp_path / "nfsroot"
    settings.PUREBOOT_BOOT_ROOT = tmp_path / "boot"
    settings.PUREBOOT_NFS_SERVER = "127.0.0.1"
    settings.PUREBOOT_NFS_PORT = port
    settings.PUREBOOT_NFS_CLIENTS = []
    settings.PUREBOOT_NFS_GANESHA_CONFIG = str(tmp_path / "ganesha.conf")
    settings.PUREBOOT_NFS_GANESHA_PIDFILE = str(tmp_path / "ganesha.pid")
    # The nodes' leases: the first holds the namespace's client address, the second another.
    leases = tmp_path / "leases"
    leases.write_text(
        "0 52:54:00:0b:00:01 127.0.0.1 pi-1 *\n0 52:54:00:0b:00:02 127.0.0.2 pi-2 *\n"
    )
    settings.PUREBOOT_DHCP_LEASEFILE = str(leases)

    archive = make_archive(tmp_path / "rpi.tar.gz", system_members())
    call_command("import_rootfs", "rpi-os", str(archive), "--arch", "aarch64", stdout=io.StringIO())
    mine = diskless_node(macs=["52:54:00:0b:00:01"])
    other = diskless_node(macs=["52:54:00:0b:00:02"])
    for node in (mine, other):
        workflow_services.start_install(node.pk)
        assert sync_nfs_root(node.pk) == "created"  # writes the config; nothing to reload yet
    overlay = tmp_path / "nfsroot" / "nodes" / str(mine.pk)
    assert f"NFS_Port = {port};" in (tmp_path / "ganesha.conf").read_text()

    lab = Ganesha(tmp_path, port)
    try:
        lab.start()
        upload = tmp_path / "upload"
        upload.write_bytes(b"written over NFS\n")

        # The template: readable, and read-only whatever the client's uid (root here).
        read = lab.client("nfs-cat", "/pureboot/templates/rpi-os/etc/hostname")
        assert (read.returncode, read.stdout) == (0, "template\n"), read.stderr
        refused = lab.client("nfs-cp", str(upload), "/pureboot/templates/rpi-os/etc/evil")
        assert refused.returncode != 0 and "NFS4ERR_ROFS" in refused.stderr, refused.stderr
        assert not (tmp_path / "nfsroot/templates/rpi-os/etc/evil").exists()

        # Its own overlay: seeded from the template, and written through to the server.
        seeded = lab.client("nfs-cat", f"/pureboot/nodes/{mine.pk}/etc/hostname")
        assert seeded.stdout == "template\n", seeded.stderr
        wrote = lab.client("nfs-cp", str(upload), f"/pureboot/nodes/{mine.pk}/etc/written")
        assert wrote.returncode == 0, wrote.stderr + lab.logged()
        assert (overlay / "etc" / "written").read_bytes() == b"written over NFS\n"
        assert (overlay / "etc" / "written").stat().st_uid == 0  # No_Root_Squash: root's own

        # Another node's overlay is exported to that node's address only.
        theirs = lab.client("nfs-cp", str(upload), f"/pureboot/nodes/{other.pk}/etc/written")
        assert theirs.returncode != 0, theirs.stdout
        assert not (tmp_path / f"nfsroot/nodes/{other.pk}/etc/written").exists()

        # Retired: the export goes with a reload, then the folder.
        node_services.perform(mine.pk, "retire", node_services.SYSTEM, reason="test")
        assert sync_nfs_root(mine.pk) == "removed"
        assert not overlay.exists()
        lab.wait_for(
            lambda: lab.client("nfs-ls", f"/pureboot/nodes/{mine.pk}").returncode != 0,
            "the retired node's export is gone after SIGHUP",
        )
        gone = lab.client("nfs-cp", str(upload), f"/pureboot/nodes/{mine.pk}/etc/again")
        assert gone.returncode != 0

        # A node whose install starts later (leased the address the retired node held) is
        # exported on SIGHUP, without a restart.
        late = diskless_node(macs=["52:54:00:0b:00:03"])
        leases.write_text(leases.read_text().replace("52:54:00:0b:00:01", "52:54:00:0b:00:03"))
        workflow_services.start_install(late.pk)
        assert sync_nfs_root(late.pk) == "created"
        lab.wait_for(
            lambda: (
                lab.client("nfs-cat", f"/pureboot/nodes/{late.pk}/etc/hostname").returncode == 0
            ),
            "the new overlay is exported after SIGHUP",
        )
        # Reprovisioned: a fresh copy at the same path, withdrawn and exported again.
        wrote = lab.client("nfs-cp", str(upload), f"/pureboot/nodes/{late.pk}/etc/written")
        assert wrote.returncode == 0, wrote.stderr
        Node.objects.filter(pk=late.pk).update(state="reprovision")
        workflow_services.start_install(late.pk)
        assert sync_nfs_root(late.pk) == "created"
        fresh = lab.client("nfs-ls", f"/pureboot/nodes/{late.pk}/etc")
        assert fresh.returncode == 0 and "hostname" in fresh.stdout, fresh.stderr
        assert "written" not in fresh.stdout

        # A template replaced under a running ganesha is served from its new tree.
        other_archive = make_archive(tmp_path / "deb.tar.gz", system_members())
        call_command("import_rootfs", "deb", str(other_archive), "--arch", "aarch64")
        assert lab.client("nfs-cat", "/pureboot/templates/deb/etc/hostname").stdout == "template\n"
        newer = make_archive(
            tmp_path / "deb2.tar.gz", system_members((_info("etc/motd"), b"version 2\n"))
        )
        call_command("import_rootfs", "deb", str(newer), "--arch", "aarch64", "--replace")
        read = lab.client("nfs-cat", "/pureboot/templates/deb/etc/motd")
        assert (read.returncode, read.stdout) == (0, "version 2\n"), read.stderr

        assert "SIGHUP" in lab.logged() and "Reread exports complete" in lab.logged()
        assert lab.proc.poll() is None  # reloaded, never restarted
        assert int((tmp_path / "ganesha.pid").read_text()) == lab.proc.pid
        assert nfsroot.apply_exports() is False  # in step: nothing rewritten, no reload
    finally:
        lab.stop()
    assert not os.path.exists(f"/run/netns/{lab.ns}")
