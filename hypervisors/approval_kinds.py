"""The hypervisors app's four-eye actions, declared to the approvals app
(found at start-up like ``admin.py``; see ``approvals.apps``)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import CharField, Q
from django.db.models.functions import Cast

from approvals.kinds import Kind, approved_reason, register
from credentials.models import Credential
from nodes.permissions import can_access_node
from nodes.transitions import Actor

from . import services, vms
from .models import Hypervisor, VirtualMachine


def _requester(request) -> Actor:
    return Actor.of(get_user_model().objects.get(pk=request.requested_by_id))


def _sees_hypervisor(hypervisor: Hypervisor | None, user) -> str | None:
    if hypervisor is None or not services.can_access(user, hypervisor):
        return "You have no access to this hypervisor's site."
    return None


def _vm_current(request) -> str:
    vm, node = vms.locked(int(request.target_id))
    return vms.binding(vm, node)


def _vm_approver(request, user) -> str | None:
    vm = (
        VirtualMachine.objects.select_related("hypervisor", "node")
        .filter(pk=request.target_id)
        .first()
    )
    if vm is not None and vm.node_id and not can_access_node(user, vm.node):
        return "You have no access to the site of this VM's node."
    return _sees_hypervisor(vm.hypervisor if vm else None, user)


def _ids(queryset) -> Q:
    """Requests whose target is one of ``queryset``'s objects (target ids are text)."""
    return Q(target_id__in=queryset.annotate(text_id=Cast("pk", CharField())).values("text_id"))


def _vm_words(request, what: str) -> str:
    vm = (
        VirtualMachine.objects.select_related("hypervisor", "node")
        .filter(pk=request.target_id)
        .first()
    )
    if vm is None:
        return f"{what} VM #{request.target_id} (it no longer exists)."
    node = f" (node {vm.node} #{vm.node_id}, {vm.node.state})" if vm.node_id else ""
    return (
        f"{what} VM {vm.name}{node}, id {vm.platform_id} on "
        f"{vm.hypervisor.get_type_display()} {vm.hypervisor} ({vm.hypervisor.endpoint})"
    )


def _execute_delete(request, secrets, requester, approvers, approval) -> str:
    vms.delete(
        int(request.target_id),
        _requester(request),
        reason=approved_reason(request, approvers),
        approval=approval,
    )
    return f"VM {request.target_label} deletion queued, approved by {approvers}"


def _power(action: str):
    def execute(request, secrets, requester, approvers, approval) -> str:
        vms.power(
            int(request.target_id),
            _requester(request),
            action,
            reason=approved_reason(request, approvers),
            approval=approval,
        )
        return f"VM {request.target_label} power {action} queued, approved by {approvers}"

    return execute


def _execute_remove(request, secrets, requester, approvers, approval) -> str:
    return services.delete_hypervisor(
        int(request.target_id),
        _requester(request),
        reason=approved_reason(request, approvers),
        approval=approval,
    )


register(
    Kind(
        name=vms.DELETE,
        label="Delete VM",
        target_type="vm",
        permission="hypervisors.delete_vm",
        describe=lambda r: (
            _vm_words(r, "Delete")
            + ": it is powered off and deleted with the disks PureBoot made for it; everything on "
            "them is lost. Its node is retired (kept, with its history)."
        ),
        current=_vm_current,
        execute=_execute_delete,
        approver_check=_vm_approver,
        visible_to=lambda user: _ids(vms.scope(user)),
    )
)


def _power_kind(name: str, action: str, label: str, verb: str, words: str) -> Kind:
    return Kind(
        name=name,
        label=label,
        target_type="vm",
        permission="hypervisors.operate_vm",
        describe=lambda r: _vm_words(r, verb) + words,
        current=_vm_current,
        execute=_power(action),
        approver_check=_vm_approver,
        visible_to=lambda user: _ids(vms.scope(user)),
    )


register(
    _power_kind(
        vms.POWER_OFF,
        "off",
        "Power off VM",
        "Power off",
        ": a hard power-off, as pulling the plug; what the VM had not written is lost.",
    )
)
register(
    _power_kind(
        vms.RESET,
        "reboot",
        "Reset VM",
        "Reset",
        ": a hard reset, as pulling the plug and putting it back; what the VM had not "
        "written is lost, and it boots again (its disk, while its node is active).",
    )
)
register(
    Kind(
        name=services.DELETE,
        label="Remove hypervisor",
        target_type="hypervisor",
        permission="hypervisors.delete_hypervisor",
        describe=lambda r: (
            f"Remove hypervisor {r.target_label} from PureBoot. Its VMs stay on the platform, "
            f"but PureBoot can no longer power, sync or delete the VMs of nodes "
            f"{r.params.get('nodes')}."
        ),
        current=lambda r: services.binding(Hypervisor.objects.get(pk=r.target_id)),
        execute=_execute_remove,
        visible_to=lambda user: _ids(services.scope(user)),
        approver_check=lambda r, user: _sees_hypervisor(
            Hypervisor.objects.filter(pk=r.target_id).first(), user
        ),
    )
)


def _execute_change(request, secrets, requester, approvers, approval) -> str:
    fields = dict(request.params)
    if "credential" in fields:
        fields["credential"] = (
            Credential.objects.get(pk=fields["credential"]) if fields["credential"] else None
        )
    services.update_hypervisor(
        int(request.target_id),
        _requester(request),
        fields,
        reason=approved_reason(request, approvers),
        approval=approval,
    )
    return f"hypervisor {request.target_label}: {', '.join(request.params)} changed"


def _change_words(request) -> str:
    shown = []
    for field, value in request.params.items():
        if field == "credential":
            value = Credential.objects.filter(pk=value).values_list("name", flat=True).first()
        if field == "ca_certificate":
            value = "a new CA bundle" if value else "none (the system's)"
        shown.append(f"{field} → {value!r}")
    return (
        f"Change how PureBoot connects to hypervisor {request.target_label}: "
        f"{'; '.join(shown)}. Its stored credential is then sent there, and the ids of its "
        "VMs are looked up there."
    )


register(
    Kind(
        name=services.CHANGE,
        label="Change hypervisor connection",
        target_type="hypervisor",
        permission="hypervisors.change_hypervisor",
        describe=_change_words,
        current=lambda r: services.connection_binding(
            Hypervisor.objects.select_for_update().get(pk=r.target_id)
        ),
        execute=_execute_change,
        approver_check=lambda r, user: _sees_hypervisor(
            Hypervisor.objects.filter(pk=r.target_id).first(), user
        ),
        visible_to=lambda user: _ids(services.scope(user)),
    )
)
