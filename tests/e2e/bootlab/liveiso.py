"""A small Ubuntu live-server ISO for the boot lab, written with pycdlib.

It has the layout ``manage.py import_iso`` recognises as Ubuntu live-server
(workflows/isoimport/detect.py ``_ubuntu``): ``/casper/vmlinuz`` (the lab's
real x86 kernel), ``/casper/initrd`` (busybox and ``live-init.sh``, which
plays casper: it downloads the ISO named by ``url=``), ``/.disk/info`` and an
Ubuntu volume id. Rock Ridge carries the real (lower-case) names (a Joliet volume id holds only
16 characters, too few for Ubuntu's).
"""

from __future__ import annotations

import io
import lzma
import shutil
import tempfile
from pathlib import Path

import pycdlib

from agent.build import cpio

from . import artifacts

HERE = Path(__file__).parent
DISK_INFO = 'Ubuntu-Server 24.04.1 LTS "Noble Numbat" - Release amd64 (20240827)'
VOLUME_ID = "Ubuntu-Server 24.04.1 LTS amd64"
IMAGE_NAME = "ubuntu-24.04.1-live-server-amd64"  # the name import_iso derives


def initrd(out: Path) -> Path:
    """busybox, the virtio network modules of the lab kernel and live-init.sh as /init."""
    _, moddir = artifacts.kernel()
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        root = Path(tmp)
        for d in ("bin", "dev", "proc", "sys", "tmp", "modules"):
            (root / d).mkdir()
        shutil.copyfile(artifacts.tool("busybox"), root / "bin" / "busybox")
        (root / "bin" / "busybox").chmod(0o755)
        shutil.copyfile(HERE / "live-init.sh", root / "init")
        shutil.copyfile(HERE / "udhcpc.sh", root / "udhcpc.sh")
        (root / "init").chmod(0o755)
        (root / "udhcpc.sh").chmod(0o755)
        names = []
        for path in artifacts.module_order(moddir, ("virtio_pci", "virtio_net")):
            name = path.name.split(".ko")[0]
            data = path.read_bytes()
            if path.name.endswith(".xz"):
                data = lzma.decompress(data)
            (root / "modules" / f"{name}.ko").write_bytes(data)
            names.append(name)
        (root / "modules.order").write_text("\n".join(names) + "\n")
        cpio.write(root, out, 1700000000)
    return out


def build(path: Path) -> Path:
    """Write the ISO to ``path``; returns it."""
    vmlinuz, _ = artifacts.kernel()
    ramdisk = initrd(path.parent / "live-initrd.gz")
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident=VOLUME_ID, rock_ridge="1.09")
    iso.add_directory("/CASPER", rr_name="casper")
    iso.add_directory("/DISK", rr_name=".disk")
    iso.add_file(str(vmlinuz), "/CASPER/VMLINUZ.;1", rr_name="vmlinuz")
    iso.add_file(str(ramdisk), "/CASPER/INITRD.;1", rr_name="initrd")
    info = (DISK_INFO + "\n").encode()
    iso.add_fp(io.BytesIO(info), len(info), "/DISK/INFO.;1", rr_name="info")
    iso.write(str(path))
    iso.close()
    return path
