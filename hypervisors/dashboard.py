"""What the hypervisor dashboard shows: per hypervisor, health, capacity, VMs
by state, last sync and errors, and the actions the viewer may take."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet

from . import services
from .choices import OperationStatus, VMStatus
from .drivers import Capability
from .models import Hypervisor


@dataclass
class Card:
    hypervisor: Hypervisor
    capabilities: list[str]
    cpus: int = 0
    memory_mib: int = 0
    memory_used_mib: int = 0
    storage_total: int = 0
    storage_free: int = 0
    vms_by_power: dict[str, int] = field(default_factory=dict)
    vms_by_status: dict[str, int] = field(default_factory=dict)
    failed_operations: list[Any] = field(default_factory=list)
    may_sync: bool = False
    may_change: bool = False

    @property
    def memory_percent(self) -> int:
        return round(100 * self.memory_used_mib / self.memory_mib) if self.memory_mib else 0

    @property
    def storage_used(self) -> int:
        return max(self.storage_total - self.storage_free, 0)

    @property
    def storage_percent(self) -> int:
        return round(100 * self.storage_used / self.storage_total) if self.storage_total else 0


def cards(user, hypervisors: QuerySet | None = None) -> list[Card]:
    """One card per hypervisor the user sees."""
    qs = services.scope(user, hypervisors).select_related("site").order_by("name")
    out = []
    for hypervisor in qs:
        inventory = hypervisor.inventory or {}
        hosts = inventory.get("hosts") or []
        storage = inventory.get("storage") or []
        live = services.live_vms(hypervisor).exclude(status=VMStatus.VANISHED)
        try:
            capabilities = services.capabilities(hypervisor)
        except Exception:  # noqa: BLE001 - a type without a driver offers no action
            capabilities = []
        out.append(
            Card(
                hypervisor=hypervisor,
                capabilities=capabilities,
                cpus=sum(int(h.get("cpus") or 0) for h in hosts),
                memory_mib=sum(int(h.get("memory_mib") or 0) for h in hosts),
                memory_used_mib=sum(int(h.get("memory_used_mib") or 0) for h in hosts),
                storage_total=sum(int(s.get("total_bytes") or 0) for s in storage),
                storage_free=sum(int(s.get("free_bytes") or 0) for s in storage),
                vms_by_power=dict(Counter(live.values_list("power", flat=True))),
                vms_by_status=dict(Counter(hypervisor.vms.values_list("status", flat=True))),
                failed_operations=list(
                    hypervisor.operations.filter(status=OperationStatus.FAILED).order_by(
                        "-created_at"
                    )[:3]
                ),
                may_sync=user.has_perm("hypervisors.sync_hypervisor")
                and Capability.INVENTORY.value in capabilities,
                may_change=user.has_perm("hypervisors.change_hypervisor"),
            )
        )
    return out
