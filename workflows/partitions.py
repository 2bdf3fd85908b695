"""The ``partition`` step's layout: read, checked and made concrete for the agent.

A layout is a list of partitions, each with a ``role`` and a ``size``::

    - {role: esp, size: 256M}          # FAT32, mounted at /boot/efi
    - {role: swap, size: 2G}
    - {role: root, size: rest}         # ext4, mounted at /
    - {role: data, size: 20G, mount: /srv}

Roles fix the partition type and the defaults: ``esp`` (vfat, /boot/efi),
``boot`` (ext4, /boot), ``root`` (ext4, /), ``swap``, ``data`` (ext4 or
vfat, a mount point required). Sizes are whole MiB or GiB (``M``/``G``);
``rest`` (only the last partition) takes what is left. The agent lays the
table out with sfdisk and makes the file systems; the file-level image is
then unpacked onto them.
"""

from __future__ import annotations

import re
from typing import Any

ROLES = ("esp", "boot", "root", "swap", "data")
DEFAULTS = {
    "esp": ("vfat", "/boot/efi"),
    "boot": ("ext4", "/boot"),
    "root": ("ext4", "/"),
    "swap": ("swap", ""),
    "data": ("ext4", ""),
}
FILESYSTEMS = {"esp": ("vfat",), "boot": ("ext4",), "root": ("ext4",), "swap": ("swap",)}
FILESYSTEMS["data"] = ("ext4", "vfat")
GPT_TYPES = {
    "esp": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
    "swap": "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
    "root": {
        "x86_64": "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
        "aarch64": "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
    },
    "other": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
}
MBR_TYPES = {"esp": "ef", "swap": "82", "other": "83"}
_SIZE = re.compile(r"^([1-9][0-9]{0,6})([MG])$")
_MOUNT = re.compile(r"^/[A-Za-z0-9._/-]{0,200}$")
_LABEL = re.compile(r"^[A-Za-z0-9_-]{1,11}$")
MAX_PARTITIONS = 16
MIN_ESP_MIB = 33  # FAT32's smallest


class LayoutError(ValueError):
    """The layout cannot be laid out as written; ``field`` says where."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse(params: dict[str, Any], arch: str = "x86_64") -> list[dict[str, Any]]:
    """The layout as concrete partitions; raises LayoutError naming the field."""
    if params.get("layout", "direct") != "direct":
        raise LayoutError(
            "layout", f"{params['layout']} layouts are not built yet; use direct (plain partitions)"
        )
    items = params.get("partitions") or []
    if not items:
        raise LayoutError("partitions", "list at least a root partition")
    if len(items) > MAX_PARTITIONS:
        raise LayoutError("partitions", f"at most {MAX_PARTITIONS} partitions")
    table = params.get("table", "gpt")
    if table == "msdos" and len(items) > 4:
        raise LayoutError("partitions", "an msdos table holds 4 primary partitions; use gpt")
    out = []
    mounts: set[str] = set()
    for index, item in enumerate(items):
        out.append(_partition(item, index, len(items), table, arch, mounts))
    roles = [p["role"] for p in out]
    if roles.count("root") != 1:
        raise LayoutError("partitions", "exactly one partition has role root")
    for role in ("esp", "boot"):
        if roles.count(role) > 1:
            raise LayoutError("partitions", f"at most one {role} partition")
    return out


def _partition(
    item: Any, index: int, count: int, table: str, arch: str, mounts: set[str]
) -> dict[str, Any]:
    field = f"partitions[{index}]"
    if not isinstance(item, dict):
        raise LayoutError(field, "a partition is a mapping with role and size")
    unknown = set(item) - {"role", "size", "fs", "mount", "label"}
    if unknown:
        raise LayoutError(field, f"unknown keys {', '.join(sorted(map(str, unknown)))}")
    role = item.get("role")
    if role not in ROLES:
        raise LayoutError(f"{field}.role", f"one of {', '.join(ROLES)}")
    size = str(item.get("size", ""))
    if size == "rest":
        if index != count - 1:
            raise LayoutError(f"{field}.size", "only the last partition can take the rest")
        mib = None
    else:
        match = _SIZE.match(size)
        if not match:
            raise LayoutError(f"{field}.size", "whole MiB or GiB such as 512M or 20G, or rest")
        mib = int(match.group(1)) * (1024 if match.group(2) == "G" else 1)
        if role == "esp" and mib < MIN_ESP_MIB:
            raise LayoutError(f"{field}.size", f"an EFI system partition needs {MIN_ESP_MIB}M")
    fs, mount = DEFAULTS[role]
    fs = item.get("fs", fs)
    if fs not in FILESYSTEMS[role]:
        raise LayoutError(f"{field}.fs", f"a {role} partition is {' or '.join(FILESYSTEMS[role])}")
    if role == "data":
        mount = item.get("mount", "")
        if not isinstance(mount, str) or not _MOUNT.match(mount) or mount == "/":
            raise LayoutError(f"{field}.mount", "a data partition needs a mount point such as /srv")
        parts = mount.split("/")[1:]
        if any(p in ("", ".", "..") for p in parts):
            raise LayoutError(
                f"{field}.mount", "a plain absolute path: no '.', '..' or empty components"
            )
    elif "mount" in item and item["mount"] != mount:
        raise LayoutError(f"{field}.mount", f"a {role} partition is mounted at {mount or 'none'}")
    if mount:
        if mount in mounts:
            raise LayoutError(f"{field}.mount", f"{mount} is mounted twice")
        mounts.add(mount)
    label = item.get("label", "")
    if label and (not isinstance(label, str) or not _LABEL.match(label)):
        raise LayoutError(f"{field}.label", "1-11 letters, digits, '-' or '_'")
    if table == "gpt":
        kind = GPT_TYPES.get(role, GPT_TYPES["other"])
        kind = kind.get(arch, GPT_TYPES["other"]) if isinstance(kind, dict) else kind
    else:
        kind = MBR_TYPES.get(role, MBR_TYPES["other"])
    return {"role": role, "mib": mib, "fs": fs, "mount": mount, "label": label, "type": kind}


def needed_bytes(layout: list[dict[str, Any]], unpacked: int) -> int:
    """The smallest disk that holds the layout, the unpacked files in the rest, and the
    partition table (1 MiB before the first partition and the GPT backup at the end)."""
    fixed = sum(p["mib"] or 0 for p in layout) * 2**20
    rest = 0
    if any(p["mib"] is None for p in layout):
        rest = max(unpacked + unpacked // 10, 0) + 64 * 2**20
    return fixed + rest + 2 * 2**20
