"""The results of recognising and extracting, and the fixed names boot files get.

Names found inside an ISO are only ever used to look things up inside that
ISO; the files written to disk get names from the role table here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_MAX_FILE_BYTES = 4 * 1024**3

ARCHES = {
    "amd64": "x86_64",
    "x86_64": "x86_64",
    "x64": "x86_64",
    "arm64": "aarch64",
    "aarch64": "aarch64",
    "a64": "aarch64",
}

# Role -> file name in dest_dir. "bootmgr_efi" is named after the architecture.
_ROLE_FILENAMES = {
    "kernel": "vmlinuz",
    "initrd": "initrd",
    "ucode_intel": "intel-ucode.img",
    "ucode_amd": "amd-ucode.img",
    "bootmgr": "bootmgr",
    "bcd": "BCD",
    "boot_sdi": "boot.sdi",
    "boot_wim": "boot.wim",
}
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


@dataclass(frozen=True)
class Extraction:
    """What extract() wrote: role -> path, and role -> lower-case hex SHA-256."""

    paths: dict[str, Path]
    sha256: dict[str, str]


def dest_filename(role: str, arch: str) -> str:
    """The fixed file name a role is written under; ValueError for an unknown role."""
    if role == "bootmgr_efi":
        name = _EFI_LOADERS.get(arch)
    else:
        name = _ROLE_FILENAMES.get(role)
    if name is None:
        raise ValueError(f"no file name for boot file role {role!r} (arch {arch!r})")
    return name
