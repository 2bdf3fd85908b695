"""Recording what a hypervisor holds: inventory, templates and VMs.

A VM PureBoot knew that the platform no longer lists is marked ``vanished``
(with its node's history saying so), never deleted from the records; one
that comes back is ``present`` again. A VM seen for the first time is
recorded unmanaged, and linked to the node whose MAC it carries.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.db import transaction
from django.utils import timezone

from nodes.models import NetworkInterface

from .choices import VMStatus
from .drivers import base
from .history import node_note
from .models import Hypervisor, HypervisorTemplate, VirtualMachine

# Statuses a sync may change: creating/deleting belong to their operation.
SETTLED = (VMStatus.PRESENT, VMStatus.VANISHED)
# What one sync records at most: a hypervisor that answers with more is refused
# (a runaway or hostile endpoint must not fill the database).
MAX_ITEMS = 20000


def apply(hypervisor: Hypervisor, health: base.Health, found: base.Inventory) -> dict[str, Any]:
    for what in ("hosts", "storage", "networks", "templates", "vms", "clusters"):
        if len(getattr(found, what)) > MAX_ITEMS:
            raise base.PermanentError(
                f"{hypervisor.name} lists more than {MAX_ITEMS} {what}; PureBoot records at "
                "most that many"
            )
    now = timezone.now()
    summary = {
        "hosts": [asdict(h) for h in found.hosts],
        "clusters": list(found.clusters),
        "storage": [asdict(s) for s in found.storage],
        "networks": list(found.networks),
    }
    with transaction.atomic():
        locked = Hypervisor.objects.select_for_update().get(pk=hypervisor.pk)
        locked.inventory = summary
        locked.version = health.version[:200]
        locked.health = "ok"
        locked.health_message = health.message
        locked.last_sync_at = now
        locked.last_error = ""
        locked.save(
            update_fields=[
                "inventory",
                "version",
                "health",
                "health_message",
                "last_sync_at",
                "last_error",
            ]
        )
        templates = _templates(locked, found.templates, now)
        vms = _vms(locked, found.vms, now)
    return {"templates": templates, **vms}


def _templates(hypervisor: Hypervisor, found: tuple[base.Template, ...], now) -> int:
    seen = set()
    for template in found:
        seen.add(template.id)
        HypervisorTemplate.objects.update_or_create(
            hypervisor=hypervisor,
            platform_id=template.id[:500],
            defaults={
                "name": template.name[:200],
                "cpus": template.cpus,
                "memory_mib": template.memory_mib,
                "disk_bytes": template.disk_bytes,
                "os": template.os[:200],
                "present": True,
                "last_seen_at": now,
            },
        )
    hypervisor.templates.exclude(platform_id__in=seen).update(present=False)
    return len(seen)


def _vms(hypervisor: Hypervisor, found: tuple[base.VM, ...], now) -> dict[str, int]:
    known = {vm.platform_id: vm for vm in hypervisor.vms.exclude(platform_id="")}
    counts = {"vms": len(found), "new": 0, "vanished": 0, "returned": 0}
    for item in found:
        fields = {
            "name": item.name[:200],
            "power": item.power.value if hasattr(item.power, "value") else str(item.power),
            "cpus": item.cpus,
            "memory_mib": item.memory_mib,
            "host": item.host[:200],
            "macs": list(item.macs),
            "ha": item.ha,
            "last_seen_at": now,
        }
        vm = known.pop(item.id, None)
        if vm is None:
            vm = VirtualMachine.objects.create(
                hypervisor=hypervisor,
                platform_id=item.id[:200],
                status=VMStatus.PRESENT,
                node_id=_node_for(item.macs),
                **fields,
            )
            counts["new"] += 1
            continue
        if vm.status == VMStatus.VANISHED:
            fields["status"] = VMStatus.PRESENT
            counts["returned"] += 1
            node_note(vm, f"VM is back on {hypervisor.name}")
        VirtualMachine.objects.filter(pk=vm.pk).update(**fields)
    for vm in known.values():
        if vm.status in SETTLED and vm.status != VMStatus.VANISHED:
            VirtualMachine.objects.filter(pk=vm.pk).update(status=VMStatus.VANISHED)
            node_note(vm, f"VM vanished from {hypervisor.name} outside PureBoot")
            counts["vanished"] += 1
    return counts


def _node_for(macs: tuple[str, ...]) -> int | None:
    """The node a newly seen VM belongs to, by MAC, if it has no VM yet."""
    normal = [m.lower() for m in macs if m]
    if not normal:
        return None
    interface = (
        NetworkInterface.objects.filter(mac__in=normal, node__vm__isnull=True)
        .order_by("pk")
        .first()
    )
    return interface.node_id if interface else None


def spec_of(vm: VirtualMachine) -> base.VMSpec:
    """The driver's VM spec from what PureBoot recorded when asked to create it."""
    spec = vm.spec
    return base.VMSpec(
        name=vm.name,
        cpus=int(spec["cpus"]),
        memory_mib=int(spec["memory_mib"]),
        nics=tuple(
            base.Nic(n["network"], n["mac"], n.get("model", "virtio")) for n in spec["nics"]
        ),
        disks=tuple(
            base.Disk(int(d["size_bytes"]), d.get("storage", ""), d.get("interface", "virtio"))
            for d in spec.get("disks", [])
        ),
        template=spec.get("template", ""),
        cluster=spec.get("cluster", ""),
        host=spec.get("host", ""),
        firmware=spec.get("firmware", "bios"),
        arch=spec.get("arch", "x86_64"),
        ha=bool(spec.get("ha", False)),
    )
