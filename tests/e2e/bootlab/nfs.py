"""NFS roots in the boot lab: nfs-ganesha in the lab's namespace, and a diskless ARM64 guest.

ganesha (Debian ``nfs-ganesha nfs-ganesha-vfs``) runs with the config
PureBoot renders (``bootserve.ganesha.render_ganesha_config``) for exports
the test makes: a template tree and one node's overlay. The guest's
initramfs holds busybox, the arm64 kernel's NFSv4 client modules and
PureBoot's own boot script (``templates/nfsroot/pureboot-nfsroot.sh``),
which ``nfs-init.sh`` runs as initramfs-tools would.
"""

from __future__ import annotations

import glob
import time
from pathlib import Path

import pytest

from bootserve import ganesha

from . import arm64
from .lab import ADDRESS, ROOT, Lab

HERE = Path(__file__).parent
BOOT_SCRIPT = ROOT / "templates" / "nfsroot" / "pureboot-nfsroot.sh"
FSAL_VFS = "/usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so"
TOOLS = {"ganesha.nfsd": "nfs-ganesha"}
# The NFSv4 client and the NIC; the rest (nfs, sunrpc, netfs, fscache, ...)
# comes in as their dependencies. No overlayfs: NFS cannot be its upper layer,
# so PureBoot binds the overlay folders instead.
MODULES = ["virtio_pci", "virtio_net", "nfsv4"]


def require() -> None:
    arm64.require(TOOLS, {})
    if not glob.glob("/usr/lib/*/ganesha/libfsalvfs.so"):
        pytest.fail("boot lab: ganesha's VFS backend is missing: apt-get install nfs-ganesha-vfs")


def initramfs(out: Path) -> Path:
    return arm64.initramfs(
        out,
        (HERE / "nfs-init.sh").read_bytes(),
        MODULES,
        {
            "scripts/pureboot": BOOT_SCRIPT.read_bytes(),
            "udhcpc.sh": (HERE / "udhcpc.sh").read_bytes(),
        },
    )


def start_ganesha(lab: Lab, exports: list[ganesha.Export]) -> str:
    """Run ganesha.nfsd in the lab's namespace on PureBoot's rendered config; returns it."""
    require()
    recovery = lab.dir / "ganesha-recovery"
    recovery.mkdir(exist_ok=True)
    text = ganesha.render_ganesha_config(
        exports, bind_address=ADDRESS, graceless=True, recovery_root=recovery
    )
    conf = lab.dir / "ganesha.conf"
    conf.write_text(text)
    own_log = lab.logs / "ganesha-own.log"
    lab.spawn(
        "ganesha",
        [
            arm64.which("ganesha.nfsd"),
            "-F",
            "-f", str(conf),
            "-L", str(own_log),
            "-p", str(lab.dir / "ganesha.pid"),
            "-N", "NIV_EVENT",
        ],
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while "NFS SERVER INITIALIZED" not in (own_log.read_text() if own_log.exists() else ""):
        if time.monotonic() > deadline or lab.procs["ganesha"].poll() is not None:
            lab.stop("ganesha")
            pytest.fail(
                f"boot lab: ganesha did not start:\n{lab.log('ganesha')}\n"
                f"{own_log.read_text() if own_log.exists() else ''}"
            )
        time.sleep(0.3)
    return text
