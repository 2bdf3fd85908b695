"""Kernel modules for the agent, with their dependencies, in load order.

Dependencies come from each module's own ``.modinfo`` section (``depends=``),
read with pyelftools, so no ``depmod``/``modinfo`` of the build host is
needed and an arm64 kernel's modules are read the same way on x86.
"""

from __future__ import annotations

import io
import lzma
import subprocess
from pathlib import Path

from elftools.elf.elffile import ELFFile

from . import BuildError

MODULES = {
    "x86_64": (
        "virtio_pci virtio_net virtio_blk virtio_scsi sd_mod nvme ahci ata_piix e1000 e1000e "
        "igb ixgbe r8169 tg3 bnxt_en crc32c_intel crc32c_generic iscsi_tcp mmc_block sdhci_pci "
        "xhci_pci usb_storage vfat nls_cp437 nls_iso8859_1 nls_utf8 ext4 af_packet"
    ).split(),
    "aarch64": (
        "virtio_pci virtio_mmio virtio_net virtio_blk virtio_scsi sd_mod nvme ahci crc32c_generic "
        "iscsi_tcp mmc_block sdhci_iproc genet broadcom xhci_pci usb_storage vfat nls_cp437 "
        "nls_iso8859_1 nls_utf8 ext4 af_packet"
    ).split(),
}


def _key(name: str) -> str:
    return name.replace("-", "_")


def index(moddir: Path) -> dict[str, Path]:
    """Module name -> file, for every module of the kernel."""
    found = {}
    for path in moddir.rglob("*.ko*"):
        found[_key(path.name.split(".ko")[0])] = path
    return found


def builtin(moddir: Path) -> set[str]:
    listing = moddir / "modules.builtin"
    if not listing.exists():
        return set()
    return {_key(Path(line).name.split(".ko")[0]) for line in listing.read_text().split()}


def _elf_bytes(path: Path) -> bytes:
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(path.read_bytes())
    if path.name.endswith(".ko.zst"):
        done = subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=False)
        if done.returncode != 0:
            raise BuildError(f"{path.name}: zstd cannot decompress it (apt-get install zstd)")
        return done.stdout
    return path.read_bytes()


def depends(data: bytes) -> list[str]:
    elf = ELFFile(io.BytesIO(data))
    section = elf.get_section_by_name(".modinfo")
    if section is None:
        return []
    for item in section.data().split(b"\0"):
        if item.startswith(b"depends="):
            value = item[len(b"depends=") :].decode()
            return [_key(d) for d in value.split(",") if d]
    return []


def select(moddir: Path, wanted: list[str]) -> list[tuple[str, bytes]]:
    """[(relative path, plain .ko bytes)] of ``wanted`` and their dependencies, deps first."""
    available = index(moddir)
    inside = builtin(moddir)
    order: list[tuple[str, bytes]] = []
    done: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in done or name in inside:
            return
        if name in chain:
            raise BuildError(f"kernel modules depend on each other in a loop: {chain}")
        path = available.get(name)
        if path is None:
            raise BuildError(
                f"the kernel has no module {name!r} (neither a file nor built in); "
                "remove it from the agent's module list"
            )
        data = _elf_bytes(path)
        for dep in depends(data):
            visit(dep, (*chain, name))
        done.add(name)
        rel = path.relative_to(moddir).as_posix().split(".ko")[0] + ".ko"
        order.append((rel, data))

    for name in wanted:
        visit(_key(name), ())
    return order
