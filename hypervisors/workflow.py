"""Reading a workflow's VM step into a VM request.

A workflow's first step may be ``vm_create`` (or ``ovirt_vm_create``): it
says what VM to make for a node that installs with the workflow. The API's
``POST /api/v1/hypervisors/{id}/vms`` takes a workflow and fills in from its
step what the request leaves out.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

from workflows.models import Workflow
from workflows.vmsteps import VM_CREATE_TYPES

from . import vms
from .models import Hypervisor


def vm_step(workflow: Workflow | None) -> dict[str, Any] | None:
    """The workflow's current version's VM step, if it has one."""
    if workflow is None:
        return None
    version = workflow.latest_version
    if version is None or not version.tasks:
        return None
    first = version.tasks[0]
    return first if first.get("type") in VM_CREATE_TYPES else None


def _nic(hypervisor: Hypervisor, nic: dict[str, Any], index: int) -> dict[str, Any]:
    network = nic.get("network") or nic.get("name")
    profile = nic.get("profile")
    if profile:
        # An oVirt vNIC profile of that network: the oVirt driver takes network/profile.
        if hypervisor.type != "ovirt":
            raise ValidationError(
                {
                    f"networks[{index}].profile": "a vNIC profile is oVirt's; "
                    f"{hypervisor.name} is {hypervisor.get_type_display()}"
                }
            )
        network = f"{network}/{profile}"
    return {"network": network, "model": nic.get("model", "virtio")}


def request_for(hypervisor: Hypervisor, data: dict[str, Any]) -> vms.Request:
    """A VM request from the API's fields, completed from the workflow's VM step."""
    workflow = data.get("workflow")
    step = vm_step(workflow) or {}
    if step:
        if step["type"] == "ovirt_vm_create" and hypervisor.type != "ovirt":
            raise ValidationError(
                {
                    "workflow": f"{workflow.name} creates an oVirt/RHV VM; {hypervisor.name} is "
                    f"{hypervisor.get_type_display()}."
                }
            )
        if step.get("hypervisor") and step["hypervisor"] != hypervisor.name:
            raise ValidationError(
                {
                    "workflow": f"{workflow.name} creates its VM on {step['hypervisor']!r}, "
                    f"not on {hypervisor.name!r}."
                }
            )
    disks = data.get("disks")
    if disks is None:
        disks = [
            {
                "size": d["size"],
                "storage": d.get("storage") or d.get("storage_domain") or "",
                "interface": d.get("interface", "virtio"),
            }
            for d in step.get("disks", [])
        ]
    networks = data.get("networks")
    if networks is None:
        networks = [_nic(hypervisor, n, i) for i, n in enumerate(step.get("networks", []))]
    cpus = data.get("cpus") or step.get("cores")
    memory = data.get("memory_mib") or step.get("memory")
    missing = [name for name, value in (("cpus", cpus), ("memory_mib", memory)) if not value]
    if missing:
        raise ValidationError(
            {m: "Required (or a workflow whose vm_create step gives it)." for m in missing}
        )
    if not networks:
        raise ValidationError({"networks": "Required: the first NIC network-boots PureBoot."})
    return vms.Request(
        name=data["name"],
        cpus=int(cpus),
        memory_mib=int(memory),
        disks=[
            {
                "size_bytes": vms.size_bytes(d["size"], f"disks[{i}].size"),
                "storage": d.get("storage", ""),
                "interface": d.get("interface", "virtio"),
            }
            for i, d in enumerate(disks)
        ],
        networks=networks,
        template=data.get("template", step.get("template", "")) or "",
        cluster=data.get("cluster", step.get("cluster", "")) or "",
        host=data.get("host", "") or "",
        firmware=data.get("firmware") or step.get("firmware") or "bios",
        arch=data.get("arch") or "x86_64",
        power_on=data.get("power_on", step.get("power_on", True)),
        ha=data.get("ha", step.get("ha", False)),
        workflow=workflow,
    )
