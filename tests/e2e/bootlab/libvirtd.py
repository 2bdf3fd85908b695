"""A libvirt daemon of the lab's own: the real QEMU driver (TCG) inside the lab's
network namespace, in a private mount namespace so it shares no state with a
libvirtd of the host. Its socket lies in the lab's folder, so the controller
reaches it with ``qemu:///system?socket=...``.
"""

from __future__ import annotations

import time
from pathlib import Path

import libvirt
import pytest

from .artifacts import tool

# QEMU runs as root with no per-VM namespaces or labels: the lab has no
# libvirt-qemu-owned folders, and its disks live in the lab's temporary folder.
QEMU_CONF = """\
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
stdio_handler = "file"
"""
STATE_DIRS = ("/etc/libvirt", "/var/lib/libvirt", "/run/libvirt", "/var/cache/libvirt",
              "/var/log/libvirt")  # fmt: skip


def start(lab) -> str:
    """Start the daemon in the lab; returns the URI the controller connects with."""
    home = lab.dir / "libvirt"
    sockets = home / "sock"
    for path in (home, sockets, home / "pool", home / "templates", home / "consoles"):
        path.mkdir(parents=True, exist_ok=True)
    (home / "qemu.conf").write_text(QEMU_CONF)
    (home / "libvirtd.conf").write_text(
        f'unix_sock_dir = "{sockets}"\nunix_sock_rw_perms = "0700"\n'
        'auth_unix_rw = "none"\nauth_unix_ro = "none"\n'
        f'log_outputs = "3:file:{lab.logs / "libvirtd-internal.log"}"\n'
    )
    mounts = "; ".join(f"mkdir -p {d} && mount -t tmpfs -o mode=0755 tmpfs {d}" for d in STATE_DIRS)
    script = (
        f"set -e; {mounts}; cp {home / 'qemu.conf'} /etc/libvirt/qemu.conf; "
        f"exec {tool('libvirtd')} -f {home / 'libvirtd.conf'}"
    )
    lab.spawn("libvirtd", [tool("unshare"), "-m", "--propagation", "private", "sh", "-c", script])
    socket = sockets / "libvirt-sock"
    deadline = time.monotonic() + 30
    while not socket.exists():
        if time.monotonic() > deadline or lab.procs["libvirtd"].poll() is not None:
            pytest.fail(f"boot lab: libvirtd did not start:\n{lab.log('libvirtd')}")
        time.sleep(0.2)
    uri = f"qemu:///system?socket={socket}"
    conn = libvirt.open(uri)
    try:
        for name, folder in (("default", home / "pool"), ("templates", home / "templates")):
            pool = conn.storagePoolDefineXML(
                f"<pool type='dir'><name>{name}</name><target><path>{folder}</path></target></pool>"
            )
            pool.create(0)
    finally:
        conn.close()
    return uri


def consoles(lab) -> Path:
    return lab.dir / "libvirt" / "consoles"


def stop(lab, uri: str) -> None:
    """Power off what is left (libvirtd leaves QEMU running when it stops), then stop it."""
    if "libvirtd" in lab.procs and lab.procs["libvirtd"].poll() is None:
        try:
            conn = libvirt.open(uri)
            for domain in conn.listAllDomains():
                if domain.isActive():
                    domain.destroy()
            conn.close()
        except libvirt.libvirtError:
            pass
    lab.stop("libvirtd")
