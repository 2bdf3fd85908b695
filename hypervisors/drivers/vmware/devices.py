"""vSphere device specs for the VMware driver: NICs with manual MACs, thin disks
on a paravirtual SCSI controller, and a network-first boot order; and the MACs
and disks read back from a VM's devices."""

from __future__ import annotations

from pyVmomi import vim

from .. import base

_DEV = vim.vm.device
_OP = _DEV.VirtualDeviceSpec.Operation
_NIC_MODELS = {
    "virtio": _DEV.VirtualVmxnet3,
    "vmxnet3": _DEV.VirtualVmxnet3,
    "e1000": _DEV.VirtualE1000,
    "e1000e": _DEV.VirtualE1000e,
}


def _macs(devices) -> tuple[str, ...]:
    nics = [d for d in devices or [] if isinstance(d, _DEV.VirtualEthernetCard)]
    return tuple((d.macAddress or "").lower() for d in nics)


def _disks(devices) -> list[vim.vm.device.VirtualDisk]:
    return sorted(
        (d for d in devices or [] if isinstance(d, _DEV.VirtualDisk)), key=lambda d: d.key
    )


def _change(operation: str, device, create: bool = False) -> vim.vm.device.VirtualDeviceSpec:
    change = _DEV.VirtualDeviceSpec(operation=operation, device=device)
    if create:
        change.fileOperation = _DEV.VirtualDeviceSpec.FileOperation.create
    return change


def _nic_device(nic: base.Nic, backing, key: int) -> vim.vm.device.VirtualEthernetCard:
    kind = _NIC_MODELS.get(nic.model or "virtio")
    if kind is None:
        models = ", ".join(sorted(_NIC_MODELS))
        raise base.InvalidRequest(f"vSphere: NIC model {nic.model!r}: use one of {models}")
    connect = _DEV.VirtualDevice.ConnectInfo(startConnected=True, allowGuestControl=True)
    return kind(
        key=key,
        addressType="manual",
        macAddress=nic.mac.lower(),
        backing=backing,
        connectable=connect,
    )


def _disk_changes(disks, stores: list[str], devices) -> list[vim.vm.device.VirtualDeviceSpec]:
    """Add ``disks`` (datastore names in ``stores``, "" for the VM's own) to the
    first SCSI controller of ``devices``, or to a new paravirtual one."""
    if not disks:
        return []
    changes = []
    controllers = [d for d in devices if isinstance(d, _DEV.VirtualSCSIController)]
    if controllers:
        controller = controllers[0].key
        taken = {d.unitNumber for d in devices if d.controllerKey == controller}
    else:
        controller, taken = -100, set()
        scsi = _DEV.ParaVirtualSCSIController(key=controller, busNumber=0, sharedBus="noSharing")
        changes.append(_change(_OP.add, scsi))
    taken.add(7)  # the controller's own SCSI id
    units = [u for u in range(16) if u not in taken]
    if len(units) < len(disks):
        raise base.InvalidRequest("vSphere: more disks than one SCSI controller holds")
    for index, (disk, store, unit) in enumerate(zip(disks, stores, units, strict=False)):
        kib = -(-int(disk.size_bytes) // 1024)
        backing = _DEV.VirtualDisk.FlatVer2BackingInfo(
            diskMode="persistent", thinProvisioned=True, fileName=f"[{store}]" if store else ""
        )
        device = _DEV.VirtualDisk(
            key=-(200 + index),
            controllerKey=controller,
            unitNumber=unit,
            capacityInKB=kib,
            capacityInBytes=kib * 1024,
            backing=backing,
        )
        changes.append(_change(_OP.add, device, create=True))
    return changes


def _boot_options(devices, first_mac: str) -> vim.vm.BootOptions:
    """Network first (the NIC with ``first_mac``, else the first NIC), then the
    first disk, naming the devices by the keys they have."""
    nics = [d for d in devices or [] if isinstance(d, _DEV.VirtualEthernetCard)]
    nics.sort(key=lambda d: (d.macAddress or "").lower() != first_mac.lower())
    order: list[vim.vm.BootOptions.BootableDevice] = []
    if nics:
        order.append(vim.vm.BootOptions.BootableEthernetDevice(deviceKey=nics[0].key))
    if disks := _disks(devices):
        order.append(vim.vm.BootOptions.BootableDiskDevice(deviceKey=disks[0].key))
    return vim.vm.BootOptions(bootOrder=order)
