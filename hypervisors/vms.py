"""Asking for VMs: create one for a node, power it, move it, delete it.

Each request checks the asker's permission and site, the driver's capability
and the VM's state under the row locks (the node's first, then the VM's),
then records a :class:`~hypervisors.models.HypervisorOperation` that a worker
runs. Deleting a VM, and powering off a VM whose node is active, need a
second person (:mod:`pureboot.gate`); the API and admin file the request.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet

from audit import services as audit
from nodes import services as node_services
from nodes.choices import NodeState
from nodes.models import NetworkInterface, Node
from nodes.transitions import Actor, TransitionForbidden
from pureboot import gate

from . import services
from .choices import IN_PROGRESS, OperationKind, VMStatus
from .drivers import Capability, base
from .history import node_note
from .models import Hypervisor, HypervisorOperation, HypervisorTemplate, VirtualMachine

POWER_OFF = "vm.power_off"
RESET = "vm.power_reboot"
DELETE = "vm.delete"
MAX_CPUS, MAX_MEMORY_MIB, MAX_DISKS, MAX_NICS = 512, 16 * 1024 * 1024, 16, 8
MAX_DISK_BYTES = 64 * 2**40
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|K|KB|KiB|M|MB|MiB|G|GB|GiB|T|TB|TiB)?\s*$", re.I)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 2**10,
    "kib": 2**10,
    "kb": 10**3,
    "m": 2**20,
    "mib": 2**20,
    "mb": 10**6,
    "g": 2**30,
    "gib": 2**30,
    "gb": 10**9,
    "t": 2**40,
    "tib": 2**40,
    "tb": 10**12,
}
# The hypervisor's own MAC ranges, so a VM's MAC reads as what it is.
MAC_PREFIX = {"vmware": "00:50:56", "hyperv": "00:15:5d"}


def scope(user, queryset: QuerySet | None = None) -> QuerySet:
    qs = VirtualMachine.objects.all() if queryset is None else queryset
    return qs.filter(hypervisor__in=services.scope(user))


def size_bytes(value: Any, field: str) -> int:
    """``20GB``, ``512MiB`` or a whole number of bytes."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValidationError({field: "A size such as 20GiB or a number of bytes."})
    match = _SIZE.match(str(value))
    if not match:
        raise ValidationError({field: f"A size such as 20GiB or 512MiB; got {str(value)[:40]!r}."})
    if len(match.group(1)) > 24:
        raise ValidationError({field: "Between 1 MiB and 64 TiB."})
    size = int(Decimal(match.group(1)) * _UNITS[(match.group(2) or "").lower()])
    if not 1 << 20 <= size <= MAX_DISK_BYTES:
        raise ValidationError({field: "Between 1 MiB and 64 TiB."})
    return size


def new_mac(hypervisor: Hypervisor) -> str:
    """A MAC no node has, in the platform's range (VMware: its manual range)."""
    prefix = MAC_PREFIX.get(hypervisor.type, "52:54:00")
    for _ in range(50):
        tail = secrets.token_bytes(3)
        if hypervisor.type == "vmware":
            tail = bytes([tail[0] & 0x3F]) + tail[1:]
        mac = prefix + ":" + ":".join(f"{b:02x}" for b in tail)
        if not NetworkInterface.objects.filter(mac=mac).exists():
            return mac
    raise ValidationError("Could not find a free MAC address; try again.")


@dataclass(frozen=True)
class Request:
    """A cleaned request to create a VM."""

    name: str
    cpus: int
    memory_mib: int
    disks: list[dict[str, Any]]
    networks: list[dict[str, Any]]
    template: str = ""
    cluster: str = ""
    host: str = ""
    firmware: str = "bios"
    arch: str = "x86_64"
    power_on: bool = True
    ha: bool = False
    workflow: Any = None


def _check(hypervisor: Hypervisor, request: Request) -> None:
    services.require(hypervisor, Capability.CREATE_VM)
    errors: dict[str, str] = {}
    if not 1 <= request.cpus <= MAX_CPUS:
        errors["cpus"] = f"Between 1 and {MAX_CPUS}."
    if not 64 <= request.memory_mib <= MAX_MEMORY_MIB:
        errors["memory_mib"] = "Between 64 MiB and 16 TiB."
    if not 1 <= len(request.networks) <= MAX_NICS:
        errors["networks"] = f"Between 1 and {MAX_NICS} NICs; the first one network-boots."
    if len(request.disks) > MAX_DISKS:
        errors["disks"] = f"At most {MAX_DISKS} disks."
    if not request.disks and not request.template:
        errors["disks"] = "A VM needs a disk to install to: give disks or a template."
    if request.ha:
        try:
            services.require(hypervisor, Capability.HA)
        except services.CapabilityMissing as exc:
            errors["ha"] = str(exc)
    if errors:
        raise ValidationError(errors)
    if request.template:
        services.require(hypervisor, Capability.CLONE_TEMPLATE)
        if not HypervisorTemplate.objects.filter(
            hypervisor=hypervisor, present=True, name=request.template
        ).exists():
            raise ValidationError(
                {
                    "template": f"{hypervisor.name} has no template {request.template!r} as of its "
                    "last sync (POST /api/v1/hypervisors/{id}/sync to read it again)."
                }
            )
    _check_honoured(hypervisor, request)
    known = set((hypervisor.inventory or {}).get("networks") or ())
    host_networks = {
        n.strip()
        for n in str((hypervisor.options or {}).get("host_networks", "")).split(",")
        if n.strip()
    }
    for index, nic in enumerate(request.networks):
        network = nic["network"]
        if not isinstance(network, str) or not network.strip():
            raise ValidationError({f"networks[{index}].network": "Name a network."})
        if ":" in network and network not in host_networks:
            # A host bridge or tap is the hypervisor admin's to offer, not the requester's.
            raise ValidationError(
                {
                    f"networks[{index}].network": f"{network!r} is not among {hypervisor.name}'s "
                    "host_networks option."
                }
            )
        if known and network not in known and ":" not in network:
            raise ValidationError(
                {
                    f"networks[{index}].network": f"{hypervisor.name} has no network {network!r} "
                    f"(known: {', '.join(sorted(known))})."
                }
            )


def _check_honoured(hypervisor: Hypervisor, request: Request) -> None:
    """Refuse what the driver would ignore: a request is done as asked or not at all."""
    driver = services.driver_class(hypervisor)
    asked = {
        "cluster": bool(request.cluster),
        "host": bool(request.host),
        "disk_interface": any(d.get("interface", "virtio") != "virtio" for d in request.disks),
        "nic_model": any(n.get("model", "virtio") != "virtio" for n in request.networks),
    }
    ignored = sorted(k for k, wanted in asked.items() if wanted and k not in driver.honours)
    if ignored:
        raise ValidationError(
            {
                ignored[0]: f"The {driver.label} driver does not choose the {ignored[0]} of a "
                "VM: leave it out (its own default is used)."
            }
        )


def create(hypervisor_id: int, actor: Actor, request: Request) -> VirtualMachine:
    """Register a node for the VM (its MAC known before the VM first boots), record
    the VM, and queue its creation (and power-on). Nothing is made if anything is wrong."""
    with transaction.atomic():
        hypervisor = Hypervisor.objects.select_for_update().get(pk=hypervisor_id)
        services.check_person(actor, "hypervisors.operate_vm", hypervisor)
        if request.workflow is not None and actor.is_person:
            if not actor.user.has_perm("nodes.assign_node"):
                raise TransitionForbidden("You do not have permission to assign workflows.")
        _check(hypervisor, request)
        macs = [new_mac(hypervisor) for _ in request.networks]
        node = node_services.create_node(
            actor,
            {
                "hostname": request.name,
                "site": hypervisor.site,
                "arch": request.arch,
                "firmware": request.firmware,
                "vendor": services.driver_class(hypervisor).label,
                "model": "virtual machine",
            },
            [{"mac": mac, "is_primary": i == 0} for i, mac in enumerate(macs)],
        )
        vm = VirtualMachine.objects.create(
            hypervisor=hypervisor,
            node=node,
            name=request.name,
            managed=True,
            status=VMStatus.CREATING,
            cpus=request.cpus,
            memory_mib=request.memory_mib,
            macs=macs,
            template=request.template,
            ha=request.ha,
            spec={
                "cpus": request.cpus,
                "memory_mib": request.memory_mib,
                "nics": [
                    {"network": n["network"], "mac": mac, "model": n.get("model", "virtio")}
                    for n, mac in zip(request.networks, macs, strict=True)
                ],
                "disks": request.disks,
                "template": request.template,
                "cluster": request.cluster,
                "host": request.host,
                "firmware": request.firmware,
                "arch": request.arch,
                "ha": request.ha,
            },
        )
        if request.workflow is not None:
            # After the VM's record: a workflow that creates a VM is assigned to
            # a node that has one.
            node_services.perform(
                node.pk,
                "assign",
                actor,
                reason="VM created for this workflow",
                workflow=request.workflow,
            )
        node_note(
            vm,
            f"VM requested on {hypervisor.name}; MACs {', '.join(macs)} registered",
            actor=actor.label,
        )
        audit.record(
            actor=actor.label,
            action="vm.request_create",
            object_type="hypervisors.virtualmachine",
            object_id=vm.pk,
            details={"hypervisor": hypervisor.name, "node": node.pk, "spec": vm.spec},
        )
        services.queue(
            hypervisor, OperationKind.CREATE, actor, vm=vm, params={"power_on": request.power_on}
        )
    return vm


# --- acting on a VM ------------------------------------------------------------------


def locked(vm_id: int) -> tuple[VirtualMachine, Node | None]:
    """The VM and its node, locked node first (the order every node path locks in)."""
    node_id = VirtualMachine.objects.filter(pk=vm_id).values_list("node_id", flat=True).first()
    node = Node.objects.select_for_update().get(pk=node_id) if node_id else None
    vm = (
        VirtualMachine.objects.select_for_update(of=("self",))
        .select_related("hypervisor")
        .get(pk=vm_id)
    )
    if vm.node_id != node_id:  # relinked meanwhile: take the locks again
        return locked(vm_id)
    return vm, node


def binding(vm: VirtualMachine, node: Node | None) -> str:
    """What a VM approval is bound to: the VM, where it is, and its node's state."""
    return gate.binding(
        {
            "vm": vm.pk,
            "hypervisor": vm.hypervisor_id,
            "endpoint": vm.hypervisor.endpoint,
            "platform_id": vm.platform_id,
            "status": vm.status,
            "node": node.pk if node else None,
            "node_state": node.state if node else None,
        }
    )


def _usable(vm: VirtualMachine) -> None:
    if vm.status != VMStatus.PRESENT or not vm.platform_id:
        raise ValidationError(
            {"vm": f"VM {vm.name} is {vm.get_status_display().lower()}: nothing to act on."}
        )
    busy = vm.operations.filter(status__in=IN_PROGRESS).exclude(kind=OperationKind.SYNC)
    if busy.exists():
        raise ValidationError({"vm": f"VM {vm.name} has an operation in progress; wait for it."})


def _decide(actor, vm, node, *, action, permission, four_eye, approval, reason, params):
    services.check_person(actor, permission, vm.hypervisor)
    services.decide(
        actor,
        gate.Proposal(action, "vm", str(vm.pk), params, reason, target_label=vm.name),
        permission=permission,
        four_eye=four_eye,
        bound_to=binding(vm, node),
        approval=approval,
    )


def power(
    vm_id: int,
    actor: Actor,
    action: str,
    *,
    reason: str = "",
    approval: gate.Approval | None = None,
) -> HypervisorOperation:
    """Power a VM on, off or reset it. Off and reset of an active node's VM are
    four-eye: both are a pulled plug to the system running on it."""
    action = base.PowerAction(action)
    with transaction.atomic():
        vm, node = locked(vm_id)
        services.require(vm.hypervisor, Capability.POWER)
        _usable(vm)
        abrupt = action in (base.PowerAction.OFF, base.PowerAction.REBOOT)
        _decide(
            actor,
            vm,
            node,
            action=f"vm.power_{action.value}",
            permission="hypervisors.operate_vm",
            four_eye=abrupt and node is not None and node.state == NodeState.ACTIVE,
            approval=approval,
            reason=reason,
            params={"action": action.value},
        )
        _audit(actor, "vm.power", vm, approval, power=action.value, reason=reason)
        return services.queue(
            vm.hypervisor, OperationKind.POWER, actor, vm=vm, params={"action": action.value}
        )


def delete(
    vm_id: int, actor: Actor, *, reason: str = "", approval: gate.Approval | None = None
) -> HypervisorOperation:
    """Delete a VM and the disks made for it: always a second person's decision."""
    with transaction.atomic():
        vm, node = locked(vm_id)
        services.require(vm.hypervisor, Capability.DELETE_VM)
        _usable(vm)
        _decide(
            actor,
            vm,
            node,
            action=DELETE,
            permission="hypervisors.delete_vm",
            four_eye=True,
            approval=approval,
            reason=reason,
            params={},
        )
        VirtualMachine.objects.filter(pk=vm.pk).update(status=VMStatus.DELETING)
        _audit(actor, DELETE, vm, approval, reason=reason)
        return services.queue(vm.hypervisor, OperationKind.DELETE, actor, vm=vm)


def migrate(vm_id: int, actor: Actor, host: str) -> HypervisorOperation:
    """Live-migrate a running VM to another host of its hypervisor."""
    with transaction.atomic():
        vm, node = locked(vm_id)
        services.require(vm.hypervisor, Capability.LIVE_MIGRATE)
        _usable(vm)
        hosts = {h.get("name") for h in (vm.hypervisor.inventory or {}).get("hosts", [])}
        if host not in hosts:
            raise ValidationError({"host": f"{vm.hypervisor.name} has no host {host!r}."})
        if host == vm.host:
            raise ValidationError({"host": f"VM {vm.name} already runs on {host}."})
        _decide(
            actor,
            vm,
            node,
            action="vm.migrate",
            permission="hypervisors.operate_vm",
            four_eye=False,
            approval=None,
            reason="",
            params={"host": host},
        )
        _audit(actor, "vm.migrate", vm, None, host=host)
        return services.queue(
            vm.hypervisor, OperationKind.MIGRATE, actor, vm=vm, params={"host": host}
        )


def set_ha(vm_id: int, actor: Actor, enabled: bool) -> HypervisorOperation:
    with transaction.atomic():
        vm, node = locked(vm_id)
        services.require(vm.hypervisor, Capability.HA)
        _usable(vm)
        _decide(
            actor,
            vm,
            node,
            action="vm.ha",
            permission="hypervisors.operate_vm",
            four_eye=False,
            approval=None,
            reason="",
            params={"enabled": enabled},
        )
        _audit(actor, "vm.ha", vm, None, enabled=enabled)
        return services.queue(
            vm.hypervisor, OperationKind.HA, actor, vm=vm, params={"enabled": enabled}
        )


def _audit(actor: Actor, what: str, vm: VirtualMachine, approval, **details: Any) -> None:
    extra = (
        {"approval_request": approval.request_id, "approved_by": list(approval.approvers)}
        if approval
        else {}
    )
    audit.record(
        actor=actor.label,
        action=what,
        object_type="hypervisors.virtualmachine",
        object_id=vm.pk,
        message=str(details.pop("reason", ""))[:1000],
        details={
            "vm": vm.name,
            "hypervisor": vm.hypervisor.name,
            "node": vm.node_id,
            **details,
            **extra,
        },
    )
