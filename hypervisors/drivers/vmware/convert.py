"""vSphere managed objects' properties to base.py's dataclasses (hosts, VMs,
templates), and the power states and property paths they are read from."""

from __future__ import annotations

from typing import Any

from pyVmomi import vim

from .. import base
from .devices import _disks, _macs

_VM_PROPS = (
    "name runtime.powerState runtime.host config.template config.hardware.numCPU "
    "config.hardware.memoryMB config.hardware.device config.guestFullName"
).split()
_POWER = {
    "poweredOn": base.PowerState.RUNNING,
    "poweredOff": base.PowerState.STOPPED,
    "suspended": base.PowerState.PAUSED,
}


def _is_template(props: dict[str, Any]) -> bool:
    return bool(props.get("config.template"))


def _host(host: vim.HostSystem, p: dict[str, Any], cluster: str) -> base.Host:
    hardware, stats = p.get("summary.hardware"), p.get("summary.quickStats")
    return base.Host(
        name=p["name"],
        cluster=cluster,
        cpus=hardware.numCpuThreads if hardware else 0,
        memory_mib=hardware.memorySize // 2**20 if hardware else 0,
        memory_used_mib=(stats.overallMemoryUsage or 0) if stats else 0,
        state=str(p.get("runtime.connectionState", "")),
    )


def _vm(vm: vim.VirtualMachine, p: dict[str, Any], host_names: dict[str, str]) -> base.VM:
    host = p.get("runtime.host")
    return base.VM(
        id=vm._moId,
        name=p.get("name", ""),
        power=_POWER.get(str(p.get("runtime.powerState")), base.PowerState.UNKNOWN),
        macs=_macs(p.get("config.hardware.device")),
        cpus=p.get("config.hardware.numCPU") or 0,
        memory_mib=p.get("config.hardware.memoryMB") or 0,
        host=host_names.get(host._moId, "") if host else "",
    )


def _template(vm: vim.VirtualMachine, p: dict[str, Any]) -> base.Template:
    disks = _disks(p.get("config.hardware.device"))
    return base.Template(
        id=vm._moId,
        name=p.get("name", ""),
        cpus=p.get("config.hardware.numCPU") or 0,
        memory_mib=p.get("config.hardware.memoryMB") or 0,
        disk_bytes=sum(d.capacityInBytes or (d.capacityInKB or 0) * 1024 for d in disks),
        os=p.get("config.guestFullName") or "",
    )
