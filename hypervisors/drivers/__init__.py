"""Hypervisor drivers: one module per platform behind :mod:`.base`'s interface.

``DRIVERS`` maps a hypervisor's type to its driver class.
"""

from __future__ import annotations

from .base import Capability, Connection, Driver
from .libvirt import LibvirtDriver

DRIVERS: dict[str, type[Driver]] = {driver.name: driver for driver in (LibvirtDriver,)}


def driver_class(type_name: str) -> type[Driver]:
    return DRIVERS[type_name]


__all__ = ["DRIVERS", "Capability", "Connection", "Driver", "driver_class"]
