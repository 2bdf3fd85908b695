"""Reading PVE VM configurations (memory, MACs, boot disk) and VMIDs, and the
device vocabulary (disk buses, NIC models) that the Proxmox driver writes."""

from __future__ import annotations

import re
from typing import Any

from .. import base

_MIB = 1024**2
_GIB = 1024**3
_DEFAULT_STORAGE = "local-lvm"  # the VM-disk storage of a default PVE install
_BUSES = {"virtio": 16, "scsi": 31, "sata": 6, "ide": 4}  # bus -> number of slots
_NIC_MODELS = {"virtio", "e1000", "rtl8139", "vmxnet3"}
_BOOT_DISK = re.compile(r"^(virtio|scsi|sata|ide)\d+$")
_NET_KEY = re.compile(r"^net(\d+)$")
_MAC = re.compile(r"=((?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2})")


def _vmid(vm_id: str | int) -> int:
    text = str(vm_id).strip()
    if not text.isdigit():
        raise base.NotFound(f"proxmox: no VM {vm_id!r}: Proxmox VM ids are numbers")
    return int(text)


def _memory_mib(config: dict[str, Any]) -> int:
    # ``memory`` is a number, or since PVE 8.1 may read ``current=2048,...``.
    match = re.match(r"(?:current=)?(\d+)", str(config.get("memory", "0")))
    return int(match[1]) if match else 0


def _macs(config: dict[str, Any]) -> tuple[str, ...]:
    nets = sorted((int(m[1]), k) for k in config if (m := _NET_KEY.match(k)))
    found = (_MAC.search(str(config[key])) for _, key in nets)
    return tuple(m[1].lower() for m in found if m)


def _boot_disk(config: dict[str, Any]) -> str:
    """The disk a (template's) config boots from, or ""."""

    def usable(key: str) -> bool:
        return bool(_BOOT_DISK.match(key)) and key in config and "media=cdrom" not in config[key]

    order = str(config.get("boot", ""))
    keys = order[len("order=") :].split(";") if order.startswith("order=") else []
    keys.append(str(config.get("bootdisk", "")))  # the pre-6.2 form
    keys += sorted(config)
    return next((key for key in keys if usable(key)), "")
