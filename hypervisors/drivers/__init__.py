"""Hypervisor drivers: one module per platform behind :mod:`.base`'s interface.

:func:`driver_class` maps a hypervisor's type to its driver. The modules are
imported when first used: the libvirt and oVirt drivers need client
libraries that build from source against Debian's development packages (the
``libvirt`` and ``ovirt`` extras), and a controller without them still runs
the other drivers; asking for a missing one is refused naming what to install.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

from .base import Capability, Connection, Driver


class Missing(Exception):
    """The driver's client library is not installed here."""


class _Entry(NamedTuple):
    module: str
    cls: str
    install: str


DRIVERS: dict[str, _Entry] = {
    "libvirt": _Entry(
        "libvirt", "LibvirtDriver",
        "pip install 'pureboot[libvirt]' (libvirt-python; it builds against Debian's "
        "libvirt-dev and pkg-config)",
    ),
    "vmware": _Entry("vmware", "VMwareDriver", "pip install pyvmomi"),
    "proxmox": _Entry("proxmox", "ProxmoxDriver", "pip install proxmoxer"),
    "ovirt": _Entry(
        "ovirt", "OvirtDriver",
        "pip install 'pureboot[ovirt]' (ovirt-engine-sdk-python; it builds against "
        "Debian's libcurl4-openssl-dev and libxml2-dev)",
    ),
    "hyperv": _Entry("hyperv", "HyperVDriver", "pip install pywinrm"),
}  # fmt: skip


def driver_class(type_name: str) -> type[Driver]:
    """The driver of hypervisor type ``type_name``; raises KeyError for an unknown
    type and :class:`Missing` when its client library is not installed."""
    entry = DRIVERS[type_name]
    try:
        module = importlib.import_module(f"{__name__}.{entry.module}")
    except ImportError as exc:
        raise Missing(
            f"The {type_name} driver's client library is not installed ({exc.name}): "
            f"{entry.install}."
        ) from None
    return getattr(module, entry.cls)


__all__ = ["DRIVERS", "Capability", "Connection", "Driver", "Missing", "driver_class"]
