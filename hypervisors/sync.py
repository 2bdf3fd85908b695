"""Recording what a hypervisor holds: inventory, templates and VMs.

A VM PureBoot knew that the platform no longer lists is marked ``vanished``
(with its node's history saying so), never deleted from the records; one
that comes back is ``present`` again. A VM seen for the first time is
recorded unmanaged and linked to no node: a hypervisor's word is not enough
to hand it a machine PureBoot knows (its MAC could be anyone's).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.db import transaction
from django.utils import timezone

from nodes.identifiers import normalize_mac

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
        "hosts": [_bounded(asdict(h)) for h in found.hosts],
        "clusters": [_text(c, 200) for c in found.clusters],
        "storage": [_bounded(asdict(s)) for s in found.storage],
        "networks": [_text(n, 200) for n in found.networks],
    }
    with transaction.atomic():
        locked = Hypervisor.objects.select_for_update().get(pk=hypervisor.pk)
        locked.inventory = summary
        locked.version = health.version[:200]
        locked.health = "ok"
        locked.health_message = _text(health.message, 2000)
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
    return {**templates, **vms}


def _text(value: object, limit: int) -> str:
    return str(value or "")[:limit]


def _bounded(item: dict[str, Any]) -> dict[str, Any]:
    """A host or storage entry with its texts cut short and its numbers clamped."""
    return {
        key: _count(value, 2**63 - 1) if isinstance(value, int | float) else _text(value, 200)
        for key, value in item.items()
    }


def _count(value: object, limit: int = 2**31 - 1) -> int:
    """A hypervisor's number, clamped to what the records hold (0 for nonsense)."""
    try:
        number = int(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0
    return min(max(number, 0), limit)


def _usable_ids(items, limit: int) -> tuple[list, int]:
    """The items with an id PureBoot can key them by: not empty, not longer than its
    column, not listed twice (a hostile or broken listing must not wedge every sync)."""
    seen: set[str] = set()
    usable, skipped = [], 0
    for item in items:
        key = str(item.id or "")
        if not key or len(key) > limit or key in seen:
            skipped += 1
            continue
        seen.add(key)
        usable.append(item)
    return usable, skipped


def _templates(hypervisor: Hypervisor, found: tuple[base.Template, ...], now) -> dict[str, int]:
    usable, skipped = _usable_ids(found, 500)
    for template in usable:
        HypervisorTemplate.objects.update_or_create(
            hypervisor=hypervisor,
            platform_id=template.id,
            defaults={
                "name": _text(template.name, 200),
                "cpus": _count(template.cpus),
                "memory_mib": _count(template.memory_mib),
                "disk_bytes": _count(template.disk_bytes, 2**63 - 1),
                "os": _text(template.os, 200),
                "present": True,
                "last_seen_at": now,
            },
        )
    hypervisor.templates.exclude(platform_id__in=[t.id for t in usable]).update(present=False)
    return {"templates": len(usable), "templates_skipped": skipped}


def _macs(macs) -> list[str]:
    out = []
    for mac in list(macs or ())[:16]:
        try:
            out.append(normalize_mac(mac))
        except ValueError:
            continue  # not a MAC: not recorded
    return out


def _vms(hypervisor: Hypervisor, found: tuple[base.VM, ...], now) -> dict[str, int]:
    usable, skipped = _usable_ids(found, 200)
    known = {vm.platform_id: vm for vm in hypervisor.vms.exclude(platform_id="")}
    # VMs being created carry their MACs before the platform returns their id:
    # the create operation records them, not this sync.
    creating = {
        mac
        for macs in hypervisor.vms.filter(status=VMStatus.CREATING, platform_id="").values_list(
            "macs", flat=True
        )
        for mac in macs
    }
    counts = {"vms": len(usable), "vms_skipped": skipped, "new": 0, "vanished": 0, "returned": 0}
    for item in usable:
        macs = _macs(item.macs)
        fields = {
            "name": _text(item.name, 200),
            "power": _text(getattr(item.power, "value", item.power), 16),
            "cpus": _count(item.cpus),
            "memory_mib": _count(item.memory_mib),
            "host": _text(item.host, 200),
            "macs": macs,
            "ha": bool(item.ha),
            "last_seen_at": now,
        }
        vm = known.pop(item.id, None)
        if vm is None:
            if creating & set(macs):
                continue
            VirtualMachine.objects.create(
                hypervisor=hypervisor, platform_id=item.id, status=VMStatus.PRESENT, **fields
            )
            counts["new"] += 1
            continue
        if vm.status == VMStatus.VANISHED:
            fields["status"] = VMStatus.PRESENT
            counts["returned"] += 1
            node_note(vm, f"VM is back on {hypervisor.name}")
        VirtualMachine.objects.filter(pk=vm.pk, status__in=SETTLED).update(**fields)
    for vm in known.values():
        if vm.status == VMStatus.PRESENT:
            # Only a settled VM vanishes: one being deleted belongs to its operation.
            if VirtualMachine.objects.filter(pk=vm.pk, status=VMStatus.PRESENT).update(
                status=VMStatus.VANISHED
            ):
                node_note(vm, f"VM vanished from {hypervisor.name} outside PureBoot")
                counts["vanished"] += 1
    return counts


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
