"""The VM steps of a workflow (``vm_create``, ``ovirt_vm_create``): their
parameters and the rules across them. The hypervisors app reads the step when
it creates the node's VM; hypervisor, template, network and storage names are
checked against the hypervisor's last sync then."""

from __future__ import annotations

from typing import Any

from .params import Param, ParamError

VM_CREATE_TYPES = ("vm_create", "ovirt_vm_create")

VM_DISK_KEYS = ("size", "storage", "storage_domain", "interface")
VM_NIC_KEYS = ("network", "name", "model", "profile")


def vm_params(cluster: str) -> tuple[Param, ...]:
    return (
        Param("hypervisor", "str", default="", max_length=100, help="Hypervisor name"),
        Param("template", "str", default="", max_length=200),
        Param("cluster", "str", default=cluster, max_length=200),
        Param("memory", "int", required=True, minimum=64, maximum=16 * 1024 * 1024, help="MiB"),
        Param("cores", "int", default=1, minimum=1, maximum=512),
        Param("disks", "list[dict]", default=()),
        Param("networks", "list[dict]", default=()),
        Param("firmware", "choice", default="bios", choices=("bios", "uefi")),
        Param("power_on", "bool", default=True),
        Param("ha", "bool", default=False),
    )


VM_DISK_INTERFACES = ("virtio", "virtio_scsi", "scsi", "sata", "ide")
VM_NIC_MODELS = ("virtio", "e1000", "e1000e", "vmxnet3", "rtl8139")


def _vm_text(value: Any, path: str, choices: tuple[str, ...] = ()) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise ParamError(path, "must be a name of 1 to 200 characters")
    if choices and value not in choices:
        raise ParamError(path, f"must be one of {', '.join(choices)}; got {value!r}")


def check_vm_hardware(params: dict[str, Any], path: str) -> None:
    if len(params["disks"]) > 16 or len(params["networks"]) > 8:
        raise ParamError(f"{path}.disks", "a VM has at most 16 disks and 8 NICs")
    for index, disk in enumerate(params["disks"]):
        where = f"{path}.disks[{index}]"
        unknown = sorted(set(disk) - set(VM_DISK_KEYS))
        if unknown:
            raise ParamError(
                f"{where}.{unknown[0]}", f"unknown; a disk has {', '.join(VM_DISK_KEYS)}"
            )
        Param("size", "size", required=True, max_length=32).clean(
            disk.get("size", ""), f"{where}.size"
        )
        for key in ("storage", "storage_domain"):
            if key in disk:
                _vm_text(disk[key], f"{where}.{key}")
        if "interface" in disk:
            _vm_text(disk["interface"], f"{where}.interface", VM_DISK_INTERFACES)
    if not params["networks"]:
        raise ParamError(f"{path}.networks", "the VM needs a network to boot PureBoot from")
    for index, nic in enumerate(params["networks"]):
        where = f"{path}.networks[{index}]"
        unknown = sorted(set(nic) - set(VM_NIC_KEYS))
        if unknown:
            raise ParamError(
                f"{where}.{unknown[0]}", f"unknown; a NIC has {', '.join(VM_NIC_KEYS)}"
            )
        _vm_text(nic.get("network", nic.get("name")), f"{where}.network")
        if "profile" in nic:
            _vm_text(nic["profile"], f"{where}.profile")
        if "model" in nic:
            _vm_text(nic["model"], f"{where}.model", VM_NIC_MODELS)
    if not params["disks"] and not params["template"]:
        raise ParamError(f"{path}.disks", "the VM needs a disk to install to, or a template")


def check_no_wait_for_ip(params: dict[str, Any], path: str) -> None:
    if params["wait_for_ip"]:
        raise ParamError(
            f"{path}.wait_for_ip",
            "not built: PureBoot follows the VM through its network boot and reports, "
            "not its guest agent's address",
        )
