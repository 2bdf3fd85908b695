"""The results of recognising and extracting, the fixed names boot files get, and
the naming helpers the recognisers share.

Names found inside an ISO (or a netboot archive) are only ever used to look
things up inside it; the files written to disk get names from the role table
here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UnrecognisedIso

DEFAULT_MAX_FILE_BYTES = 4 * 1024**3
# Windows' install image is larger than any boot file (about 5 GB for Windows 11).
INSTALL_IMAGE_ROLES = frozenset({"install_wim", "install_esd"})
INSTALL_IMAGE_MAX_BYTES = 16 * 1024**3


def file_limit(role: str, max_file_bytes: int) -> int:
    """The largest file of ``role`` an import takes."""
    if role in INSTALL_IMAGE_ROLES:
        return max(max_file_bytes, INSTALL_IMAGE_MAX_BYTES)
    return max_file_bytes


ARCHES = {
    "amd64": "x86_64",
    "x86_64": "x86_64",
    "x64": "x86_64",
    "arm64": "aarch64",
    "aarch64": "aarch64",
    "a64": "aarch64",
}

# Debian's architecture names (installer-<debarch>/, debian-installer/<debarch>/).
DEBIAN_ARCHES = {"amd64": "x86_64", "arm64": "aarch64"}

# Role -> path in dest_dir. "bootmgr_efi" is named after the architecture.
# Some paths have folders because the installer asks for them by that path
# below the URL it is given: archiso fetches <archiso_http_srv>arch/x86_64/
# airootfs.sfs, and Anaconda's dracut reads <inst.stage2>/.treeinfo, then
# the runtime image that names.
_ROLE_FILENAMES = {
    "kernel": "vmlinuz",
    "initrd": "initrd",
    "ucode_intel": "intel-ucode.img",
    "ucode_amd": "amd-ucode.img",
    "bootmgr": "bootmgr",
    # Windows Setup's install image (read by Setup from the SMB share, not booted).
    "install_wim": "install.wim",
    "install_esd": "install.esd",
    "bcd": "BCD",
    "boot_sdi": "boot.sdi",
    "boot_wim": "boot.wim",
    # The ISO itself, for installers that download it whole (Ubuntu's casper
    # url=, which insists on a name ending in .iso).
    "iso": "install.iso",
    # Arch Linux: the live system's root file system and its checksum/signatures.
    "rootfs": "arch/x86_64/airootfs.sfs",
    "rootfs_sha512": "arch/x86_64/airootfs.sha512",
    "rootfs_sig": "arch/x86_64/airootfs.sfs.sig",
    "rootfs_cms_sig": "arch/x86_64/airootfs.sfs.cms.sig",
    # Anaconda: its runtime image, and the .treeinfo PureBoot writes to point at it.
    "stage2": "images/install.img",
    "treeinfo": ".treeinfo",
}

# The .treeinfo written beside an extracted Anaconda runtime image. PureBoot
# writes it (rather than copying the ISO's) so that it names the runtime at
# the fixed path above, whatever path the ISO kept it at.
STAGE2_TREEINFO = (
    "[header]\n"
    "type = productmd.treeinfo\n"
    "version = 1.2\n"
    "\n"
    "[stage2]\n"
    f"mainimage = {_ROLE_FILENAMES['stage2']}\n"
)
_EFI_LOADERS = {"x86_64": "bootx64.efi", "aarch64": "bootaa64.efi"}


@dataclass(frozen=True)
class BootFile:
    """One file to take out of the ISO: its role, its path inside the ISO, its size."""

    role: str
    iso_path: str
    size: int


@dataclass(frozen=True)
class IsoInfo:
    """What recognise() found. ``details`` holds family-specific extras."""

    family: str
    name: str
    version: str
    arch: str
    volume_id: str
    files: tuple[BootFile, ...]
    details: dict[str, Any] = field(default_factory=dict, hash=False)
    # The installer downloads the whole ISO at boot (Ubuntu live-server: casper's
    # url=), so an import keeps the ISO itself beside the boot files.
    keeps_iso: bool = False
    # What the boot files are read from: "iso", or "tar" (Debian's netboot.tar.gz,
    # workflows.isoimport.netboot); BootFile.iso_path is then a member's name.
    container: str = "iso"


@dataclass(frozen=True)
class Extraction:
    """What extract() wrote: role -> path, and role -> lower-case hex SHA-256."""

    paths: dict[str, Path]
    sha256: dict[str, str]


def dest_filename(role: str, arch: str) -> str:
    """The fixed path (relative to the image's folder, ``/``-separated) a role is
    written under; ValueError for an unknown role."""
    if role == "bootmgr_efi":
        name = _EFI_LOADERS.get(arch)
    else:
        name = _ROLE_FILENAMES.get(role)
    if name is None:
        raise ValueError(f"no file name for boot file role {role!r} (arch {arch!r})")
    return name


def _arch(token: str | None) -> str | None:
    return ARCHES.get((token or "").strip().lower())


def _slug(*parts: str) -> str:
    """Join the non-empty parts with '-', keeping only characters safe in a name."""
    return "-".join(re.sub(r"[^A-Za-z0-9._-]+", "_", p).strip("_") for p in parts if p)


def _unsupported_arch(family: str, seen: str | None) -> UnrecognisedIso:
    return UnrecognisedIso(
        f"{family} media for architecture {seen or 'unknown'!r}; supported: x86_64, aarch64"
    )
