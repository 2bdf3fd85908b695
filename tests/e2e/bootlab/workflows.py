"""The lab's workflows: the tiny Linux as the installer, the lab OS image as what it writes."""

from __future__ import annotations

from pathlib import Path

from .lab import BASE

INSTALL = f"""\
name: lab-install
description: "Boot lab - the tiny installer writes the lab OS image and reports"
arch: [x86_64]
firmware: [bios, uefi]
tasks:
  - type: pxe_boot
    kernel: lab/vmlinuz
    initrd: lab/initrd.gz
    cmdline: console=ttyS0 panic=-1 pb.mode=install pb.image={BASE}/boot/files/lab/os.img.gz
  - type: cloud_init
    username: lab
"""

CRASH = INSTALL.replace("name: lab-install", "name: lab-crash").replace(
    "pb.mode=install", "pb.mode=install pb.crash=1"
)

PI = """\
name: lab-pi
description: "Boot lab - a Raspberry Pi 4 install, served over TFTP under its serial"
arch: [aarch64]
firmware: [pi]
tasks:
  - type: pxe_boot
    kernel: lab/vmlinuz
    initrd: lab/initrd.gz
    cmdline: console=serial0,115200 pb.mode=install
  - type: cloud_init
    username: lab
"""


def write(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lab-install.yaml").write_text(INSTALL)
    (folder / "lab-crash.yaml").write_text(CRASH)
    (folder / "lab-pi.yaml").write_text(PI)
    return folder
