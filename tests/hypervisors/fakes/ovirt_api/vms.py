"""The fake engine's VMs: add (from a template, cloning its disks, or from
Blank), update, the start/stop/reset/migrate actions, removal, NICs and disk
attachments, with the engine's validations and its asynchronous statuses."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET

from .render import flag, number, reference, text
from .state import (
    BUSY,
    Attachment,
    Disk,
    EngineState,
    Fault,
    Nic,
    Vm,
    cannot,
    incomplete,
    missing,
)

_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
_NIC_MODELS = {"virtio", "e1000", "e1000e", "rtl8139"}
_DISK_BUSES = {"virtio", "virtio_scsi", "sata", "ide"}
_BOOT_DEVICES = {"hd", "network", "cdrom"}
_RUNNING = {"up", "powering_up", "wait_for_launch", "reboot_in_progress", "migrating"}


class FakeEngine(EngineState):
    """An oVirt engine in memory (see the package docstring)."""

    def vm(self, vm_id: str) -> Vm:
        if vm_id not in self.vms:
            raise missing("VM", f"id={vm_id}")
        return self.vms[vm_id]

    def _unlocked(self, vm: Vm, action: str) -> None:
        if vm.status == "image_locked" or vm.removing_at:
            raise cannot(action, BUSY)

    # --- add and update ---------------------------------------------------------------

    def add_vm_from(self, body: ET.Element, clone: bool) -> Vm:
        """``POST /vms``: a new VM from a template (its disks copied, its NICs given
        fresh MACs from the pool), locked while the disks are copied."""
        name = text(body, "name")
        if not name:
            raise incomplete("Vm [name]")
        cluster = self.find(self.clusters, "Cluster", *reference(body, "cluster"))
        if cluster is None:
            raise incomplete("Vm [cluster.id|name]")
        template = self.find(self.templates, "Template", *reference(body, "template"))
        if template is None:
            raise incomplete("Vm [template.id|name]")
        if any(v.name == name for v in self.vms.values()):
            raise cannot("add VM", "Name is already used in the system")
        if template.cluster and template.cluster != cluster.id:
            raise cannot("add VM", "Template is not available in the VM's cluster")
        vm = Vm(
            name,
            cluster.id,
            template.id,
            cores=template.cores,
            sockets=template.sockets,
            memory=template.memory,
            max_memory=4 * template.memory,
            os_type=template.os_type,
            boot=list(template.boot),
            bios=template.bios,
            cloned=clone,
        )
        self._apply(vm, body, "add VM")
        # The request may move the template's disks to other storage domains.
        targets = {}
        for item in body.findall("disk_attachments/disk_attachment/disk"):
            domain_id, domain_name = reference(item, "storage_domains/storage_domain")
            domain = self.find(self.domains, "StorageDomain", domain_id, domain_name)
            if item.get("id") and domain is not None:
                targets[item.get("id")] = domain
        now = time.monotonic()
        for source in template.attachments:
            original = self.disks[source.disk]
            domain = targets.get(original.id, self.domains[original.domain])
            self.allocate(domain, original.size, "add VM")
            copy = Disk(
                original.name, original.size, domain.id, "locked", ready_at=now + self.delay
            )
            self.disks[copy.id] = copy
            vm.attachments.append(Attachment(copy.id, source.interface, source.bootable))
        for source in template.nics:
            vm.nics.append(Nic(source.name, self.new_mac(), source.profile, source.interface))
        if vm.attachments:
            vm.status = "image_locked"
            vm.later.append((now + self.delay, "down", ""))
        self.vms[vm.id] = vm
        return vm

    def update_vm(self, vm: Vm, body: ET.Element) -> Vm:
        """``PUT /vms/{id}``."""
        self._unlocked(vm, "edit VM")
        new_name = text(body, "name")
        if new_name and any(v.name == new_name and v is not vm for v in self.vms.values()):
            raise cannot("edit VM", "Name is already used in the system")
        self._apply(vm, body, "edit VM")
        if new_name:
            vm.name = new_name
        return vm

    def _apply(self, vm: Vm, body: ET.Element, action: str) -> None:
        """The settable fields of ``<vm>``, checked as the engine checks them."""
        topology = body.find("cpu/topology")
        for key in ("cores", "sockets", "threads"):
            value = number(topology, key)
            if value is not None:
                if value < 1:
                    raise cannot(action, f"The number of CPU {key} must be at least 1")
                setattr(vm, key, value)
        memory = number(body, "memory")
        if memory is not None:
            vm.memory = memory
            vm.max_memory = max(vm.max_memory, memory) if vm.max_memory else 4 * memory
        maximum = number(body, "memory_policy/max")
        if maximum is not None:
            vm.max_memory = maximum
        if vm.max_memory < vm.memory:
            raise cannot(action, "Maximum memory size cannot be less than memory size")
        devices = body.find("os/boot/devices")
        if devices is not None:
            boot = [(d.text or "").strip() for d in devices.findall("device")]
            if not boot or set(boot) - _BOOT_DEVICES:
                raise Fault(400, f"Invalid boot devices {boot}", reason="Invalid value")
            vm.boot = boot
        os_type = text(body, "os/type")
        if os_type:
            vm.os_type = os_type
        bios = text(body, "bios/type")
        if bios:
            vm.bios = bios
        enabled = flag(body, "high_availability/enabled")
        if enabled is not None:
            vm.ha = enabled
        priority = number(body, "high_availability/priority")
        if priority is not None:
            vm.ha_priority = priority
        hosts = body.find("placement_policy/hosts")
        if hosts is not None:
            pinned = []
            for item in hosts.findall("host"):
                found = self.find(self.hosts, "Host", item.get("id"), text(item, "name"))
                if found.cluster != vm.cluster:
                    raise cannot(action, f"Host {found.name} is not in the VM's cluster")
                pinned.append(found.id)
            vm.pinned = pinned

    # --- actions ----------------------------------------------------------------------

    def act(self, vm: Vm, name: str, body: ET.Element) -> None:
        """``POST /vms/{id}/{start,stop,reset,migrate}``."""
        now = time.monotonic()
        if name == "start":
            if vm.status in ("paused", "suspended"):
                vm.status = "up"
                return
            self._unlocked(vm, "run VM")
            if vm.status != "down":
                raise cannot("run VM", "VM is running")
            if any(self.disks[a.disk].status == "locked" for a in vm.attachments):
                raise cannot("run VM", "Disk is locked. Please try again later")
            host = self._place(vm)
            vm.status, vm.host, vm.starts = "wait_for_launch", host, vm.starts + 1
            vm.later = [(now + self.delay / 2, "powering_up", ""), (now + self.delay, "up", "")]
        elif name == "stop":
            if vm.status == "down":
                raise cannot("stop VM", "VM is not running")
            self._unlocked(vm, "stop VM")
            vm.status = "powering_down"
            vm.later = [(now + self.delay / 2, "down", "")]
        elif name == "reset":
            if vm.status != "up":
                raise cannot("reset VM", "VM is not running")
            vm.resets += 1
            vm.status = "reboot_in_progress"
            vm.later = [(now + self.delay / 2, "up", "")]
        elif name == "migrate":
            self._migrate(vm, body, now)
        else:
            raise Fault(404, f"Action '{name}' is not supported by the fake", "Not found")

    def _place(self, vm: Vm) -> str:
        """The engine's scheduler, reduced: a pinned host if it is up, else the
        first host of the cluster that is up and has the memory."""
        candidates = [self.hosts[h] for h in vm.pinned] or sorted(
            (h for h in self.hosts.values() if h.cluster == vm.cluster), key=lambda h: h.name
        )
        for host in candidates:
            if host.status == "up" and host.free_memory >= vm.memory:
                return host.id
        raise cannot(
            "run VM",
            "There is no host that satisfies current scheduling constraints. See below for "
            "details:, The host did not satisfy internal filter Memory",
        )

    def _migrate(self, vm: Vm, body: ET.Element, now: float) -> None:
        if vm.status != "up":
            raise cannot("migrate VM", "VM is not running")
        target = self.find(self.hosts, "Host", *reference(body, "host"))
        if target is None:
            target = next(
                (h for h in self.hosts.values() if h.cluster == vm.cluster and h.id != vm.host),
                None,
            )
        if target is None or target.status != "up":
            raise cannot("migrate VM", "There is no host that satisfies current constraints")
        if target.id == vm.host:
            raise cannot("migrate VM", "VM is already running on the destination host")
        if target.cluster != vm.cluster:
            raise cannot("migrate VM", "The destination host is in another cluster")
        vm.status = "migrating"
        vm.later = [(now + self.delay, "up", target.id)]

    # --- removal ----------------------------------------------------------------------

    def remove_vm(self, vm: Vm, detach_only: bool) -> None:
        """``DELETE /vms/{id}``: with disks, the VM stays locked while they go."""
        self._unlocked(vm, "remove VM")
        if vm.status != "down":
            raise cannot("remove VM", "VM is running")
        vm.detach_on_remove = detach_only
        if vm.attachments and not detach_only:
            vm.status = "image_locked"
            vm.removing_at = time.monotonic() + self.delay
        else:
            self.forget_vm(vm)

    # --- NICs -------------------------------------------------------------------------

    def add_nic(self, vm: Vm, body: ET.Element) -> Nic:
        """``POST /vms/{id}/nics``: a MAC from the request, or the next from the pool."""
        self._unlocked(vm, "add Interface")
        name = text(body, "name")
        if not name:
            raise incomplete("Nic [name]")
        if any(n.name == name for n in vm.nics):
            raise cannot("add Interface", "The VM Network Interface name is already in use")
        nic = Nic(name, "", "", "virtio")
        self._set_nic(vm, nic, body, "add Interface")
        if not nic.mac:
            nic.mac = self.new_mac()
        vm.nics.append(nic)
        return nic

    def update_nic(self, vm: Vm, nic: Nic, body: ET.Element) -> Nic:
        self._unlocked(vm, "edit Interface")
        if vm.status != "down" and text(body, "mac/address"):
            raise cannot("edit Interface", "The MAC of a plugged Interface cannot change")
        self._set_nic(vm, nic, body, "edit Interface")
        nic.name = text(body, "name") or nic.name
        return nic

    def _set_nic(self, vm: Vm, nic: Nic, body: ET.Element, action: str) -> None:
        interface = text(body, "interface")
        if interface is not None:
            if interface not in _NIC_MODELS:
                raise Fault(400, f"Invalid value '{interface}' for interface", "Invalid value")
            nic.interface = interface
        mac = text(body, "mac/address")
        if mac is not None:
            mac = mac.lower()
            if not _MAC.match(mac) or int(mac[:2], 16) & 1:
                raise cannot(action, f"MAC Address {mac} is invalid")
            if self.mac_in_use(mac, nic.id):
                raise cannot(action, f"MAC Address {mac} is already in use")
            nic.mac = mac
        profile_id, profile_name = reference(body, "vnic_profile")
        if profile_id or profile_name:
            profile = self.find(self.profiles, "VnicProfile", profile_id, profile_name)
            if self.networks[profile.network].dc != self.clusters[vm.cluster].dc:
                raise cannot(action, "The network is not in the VM's data center")
            nic.profile = profile.id

    def remove_nic(self, vm: Vm, nic: Nic) -> None:
        self._unlocked(vm, "remove Interface")
        if vm.status in _RUNNING:
            raise cannot("remove Interface", "The Network Interface is plugged to a running VM")
        vm.nics.remove(nic)

    # --- disk attachments -------------------------------------------------------------

    def add_attachment(self, vm: Vm, body: ET.Element) -> Attachment:
        """``POST /vms/{id}/diskattachments`` with a new disk (made ``locked``,
        ``ok`` once created) or an existing floating one."""
        self._unlocked(vm, "add Virtual Disk")
        interface = text(body, "interface")
        if not interface:
            raise incomplete("DiskAttachment [interface]")
        if interface not in _DISK_BUSES:
            raise Fault(400, f"Invalid value '{interface}' for interface", "Invalid value")
        bootable = bool(flag(body, "bootable"))
        if bootable and any(a.bootable for a in vm.attachments):
            raise cannot("add Virtual Disk", "The VM already has a bootable disk")
        spec = body.find("disk")
        if spec is None:
            raise incomplete("DiskAttachment [disk]")
        if spec.get("id"):
            disk = self.disks.get(spec.get("id"))
            if disk is None:
                raise missing("Disk", f"id={spec.get('id')}")
        else:
            disk = self._new_disk(vm, spec)
        attachment = Attachment(disk.id, interface, bootable, flag(body, "active") is not False)
        vm.attachments.append(attachment)
        return attachment

    def _new_disk(self, vm: Vm, spec: ET.Element) -> Disk:
        size = number(spec, "provisioned_size")
        if not size:
            raise incomplete("Disk [provisionedSize|size]")
        domain = self.find(
            self.domains, "StorageDomain", *reference(spec, "storage_domains/storage_domain")
        )
        if domain is None:
            raise incomplete("Disk [storageDomain]")
        if domain.dc != self.clusters[vm.cluster].dc:
            raise cannot("add Virtual Disk", "Storage Domain is not in the VM's data center")
        disk_format = text(spec, "format") or "cow"
        if disk_format not in ("cow", "raw"):
            raise Fault(400, f"Invalid value '{disk_format}' for format", "Invalid value")
        self.allocate(domain, size, "add Virtual Disk")
        name = text(spec, "name") or f"{vm.name}_Disk{len(vm.attachments) + 1}"
        disk = Disk(name, size, domain.id, "locked", disk_format, flag(spec, "sparse") is not False)
        disk.ready_at = time.monotonic() + self.delay
        self.disks[disk.id] = disk
        return disk
