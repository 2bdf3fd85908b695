"""oVirt / Red Hat Virtualization 4.4+ through ``ovirtsdk4`` (the engine's v4 REST API, XML).

``endpoint`` is the engine's API URL, ``https://engine.example/ovirt-engine/api``
(a bare ``https://engine.example`` gets that path). The username carries its
profile: ``admin@internal`` (``admin@ovirt@internalsso`` on 4.5 with
Keycloak). The driver logs in through the engine's SSO
(``/ovirt-engine/sso/oauth/token``) itself, within the connection timeout,
because the SDK's own SSO request has none; the SDK then uses that token,
and :meth:`OvirtDriver.close` revokes it.

One endpoint is one engine. New VMs go to ``spec.cluster``, else the
``cluster`` option, else the engine's only cluster. A VM's platform id is
its UUID. Templates are the engine's templates (by UUID or name; a name
picks the newest template version); a VM made from one is a full clone
(``clone=true``: independent disks on the template's storage domains).
Without a template a VM starts from ``Blank`` and gets ``spec.disks`` as new
thin (COW) disks on ``Disk.storage``, else the ``storage_domain`` option,
else the data domain of the cluster's data center with the most free space.
``Nic.network`` names a logical network (its vNIC profile of the same name,
else its only profile) or ``network/profile``. ``spec.host`` becomes the
VM's preferred host (placement policy); oVirt places VMs when they start.
HA is the VM's ``high_availability``.

The engine works asynchronously: a clone keeps the VM ``image_locked``,
start/stop/migrate/remove return before they are done. The driver polls
until each is, within the connection timeout.

The driver is a package: :mod:`.session` logs in and maps errors,
:mod:`.convert` turns SDK objects into base.py's, :mod:`.vms` reads and runs
VMs; this module holds :class:`OvirtDriver` and VM creation.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from ovirtsdk4 import types

from .. import base
from ..base import Capability as C
from .convert import _BLANK, _MIB, _S, _version
from .vms import OvirtVMs

_UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_NIC_MODELS = {m: types.NicInterface(m) for m in ("virtio", "e1000", "e1000e", "rtl8139")}
_DISK_BUSES = {b: types.DiskInterface(b) for b in ("virtio", "virtio_scsi", "sata", "ide")}
_DISK_BUSES["scsi"] = types.DiskInterface.VIRTIO_SCSI


def _in_dc(ref: types.DataCenter | None, dc: str | None) -> bool:
    """Whether an object's data center is ``dc`` (or either is not told)."""
    return dc is None or ref is None or ref.id == dc


class OvirtDriver(OvirtVMs):
    """oVirt / RHV engines: VMs from templates or blank, power, live migration, HA."""

    name = "ovirt"
    label = "oVirt/RHV"
    capabilities: ClassVar[frozenset[C]] = frozenset(
        {C.HEALTH, C.INVENTORY, C.CREATE_VM, C.CLONE_TEMPLATE, C.POWER, C.DELETE_VM}
        | {C.TEMPLATE_SYNC, C.LIVE_MIGRATE, C.HA}
    )
    honours: ClassVar[frozenset[str]] = frozenset(
        {"cluster", "host", "disk_interface", "nic_model"}
    )
    options: ClassVar[dict[str, str]] = {
        "cluster": "Cluster new VMs go to unless the request names one (default: the only one)",
        "storage_domain": "Data domain for new blank disks unless the disk names one "
        "(default: the one with the most free space)",
    }

    # --- create --------------------------------------------------------------------

    def _cluster(self, wanted: str) -> types.Cluster:
        service = self._system().clusters_service()
        wanted = wanted or str(self.connection.options.get("cluster") or "")
        if wanted:
            return self._the(service, "cluster", wanted)
        found = self._call("list clusters", service.list)
        if len(found) != 1:
            names = ", ".join(sorted(c.name for c in found)) or "none"
            raise base.InvalidRequest(
                f"ovirt: the engine has clusters {names}: name one (the cluster option)"
            )
        return found[0]

    def _template(self, wanted: str) -> types.Template:
        service = self._system().templates_service()
        if _UUID.match(wanted):
            try:
                return self._call(f"read template {wanted}", service.template_service(wanted).get)
            except base.NotFound:
                pass  # a template may be named like a UUID
        found = self._named(service, wanted, f"find template {wanted!r}")
        if not found:
            raise base.NotFound(f"ovirt: template {wanted!r} does not exist")
        # Versions of a template share its name: the newest is what users mean.
        return max(found, key=_version)

    def _profiles(self, cluster: types.Cluster, nics: Any) -> list[types.VnicProfile]:
        """Each NIC's vNIC profile: ``network`` (its profile of that name, else its
        only one) or ``network/profile``, among the cluster's data center's networks."""
        system = self._system()
        networks = self._call("list networks", system.networks_service().list)
        profiles = self._call("list vNIC profiles", system.vnic_profiles_service().list)
        dc = cluster.data_center.id if cluster.data_center else None
        chosen = []
        for nic in nics:
            net_name, _, profile_name = nic.network.partition("/")
            nets = [n.id for n in networks if n.name == net_name and _in_dc(n.data_center, dc)]
            if not nets:
                raise base.NotFound(f"ovirt: network {net_name!r} does not exist in {cluster.name}")
            own = [p for p in profiles if p.network and p.network.id == nets[0]]
            pick = [p for p in own if p.name == (profile_name or net_name)]
            if not pick and not profile_name and len(own) == 1:
                pick = own
            if not pick:
                raise base.NotFound(f"ovirt: network {nic.network!r} has no such vNIC profile")
            chosen.append(pick[0])
        return chosen

    def _domain(self, name: str, cluster: types.Cluster) -> types.StorageDomain:
        service = self._system().storage_domains_service()
        name = name or str(self.connection.options.get("storage_domain") or "")
        if name:
            found = self._the(service, "storage domain", name)
            if found.type != types.StorageDomainType.DATA:
                raise base.InvalidRequest(f"ovirt: storage domain {name!r} holds no VM disks")
            return found
        dc = cluster.data_center.id if cluster.data_center else None
        data = [
            d
            for d in self._call("list storage domains", service.list)
            if d.type == types.StorageDomainType.DATA
            and any(_in_dc(x, dc) for x in d.data_centers or [None])
        ]
        if not data:
            raise base.NotFound(f"ovirt: no data domain serves cluster {cluster.name}")
        return max(data, key=lambda d: d.available or 0)

    def create_vm(self, spec: base.VMSpec) -> base.VM:
        """Create (not start) a VM: network first in the boot order, then its disk;
        the spec's MACs on its NICs. A half-made VM is removed before raising; if
        that fails too, the error names its id."""
        if not spec.nics:
            raise base.InvalidRequest("ovirt: a VM needs a NIC to network-boot from")
        models = [_NIC_MODELS.get(n.model or "virtio") for n in spec.nics]
        buses = [_DISK_BUSES.get(d.interface or "virtio") for d in spec.disks]
        if None in models or None in buses or any(d.size_bytes <= 0 for d in spec.disks):
            raise base.InvalidRequest(
                f"ovirt: NIC models are {sorted(_NIC_MODELS)}, disk interfaces "
                f"{sorted(_DISK_BUSES)}, disk sizes positive"
            )
        cluster = self._cluster(spec.cluster)
        arch = cluster.cpu.architecture if cluster.cpu else None
        if arch and arch.value != spec.arch:
            raise base.InvalidRequest(f"ovirt: cluster {cluster.name} runs {arch.value} VMs")
        host = self._host(spec.host) if spec.host else None
        if host and (not host.cluster or host.cluster.id != cluster.id):
            raise base.InvalidRequest(f"ovirt: host {spec.host!r} is not in {cluster.name}")
        template = self._template(spec.template) if spec.template else None
        profiles = self._profiles(cluster, spec.nics)
        domains = [self._domain(d.storage, cluster) for d in spec.disks]
        vms = self._system().vms_service()
        what = f"create VM {spec.name!r}"
        if self._named(vms, spec.name, what):
            raise base.InvalidRequest(f"ovirt: a VM named {spec.name!r} exists already")
        memory = spec.memory_mib * _MIB
        vm = types.Vm(
            name=spec.name,
            cluster=types.Cluster(id=cluster.id),
            template=types.Template(id=template.id if template else _BLANK),
            cpu=types.Cpu(topology=types.CpuTopology(cores=spec.cpus, sockets=1, threads=1)),
            memory=memory,
            memory_policy=types.MemoryPolicy(guaranteed=memory, max=4 * memory),
            os=types.OperatingSystem(
                boot=types.Boot(devices=[types.BootDevice.NETWORK, types.BootDevice.HD])
            ),
            high_availability=types.HighAvailability(enabled=spec.ha),
            bios=types.Bios(type=types.BiosType.Q35_OVMF) if spec.firmware == "uefi" else None,
            placement_policy=types.VmPlacementPolicy(
                hosts=[types.Host(id=host.id)], affinity=types.VmAffinity.MIGRATABLE
            )
            if host
            else None,
        )
        try:
            # clone: the disks are copies, independent of the template.
            made = self._call(what, lambda: vms.add(vm, clone=True if template else None))
        except base.TransientError as exc:
            # The engine may have made the VM and lost the answer: the name was free.
            for leftover in self._named(vms, spec.name, what):
                self._undo(leftover.id, exc)
            raise
        try:
            self._wait_status(made.id, {_S.DOWN}, f"wait for VM {spec.name!r} to be made")
            self._set_nics(made.id, spec, profiles, models)
            self._add_disks(made.id, spec, domains, buses)
        except base.HypervisorError as exc:
            self._undo(made.id, exc)
            raise
        return self.get_vm(made.id)

    def _set_nics(self, vm_id: str, spec: base.VMSpec, profiles: list, models: list) -> None:
        """Give the template's NICs (in name order) the spec's MACs and networks,
        add the rest, remove the template's extras."""
        service = self._service(vm_id).nics_service()
        what = f"set the NICs of VM {vm_id}"
        existing = sorted(self._call(what, service.list), key=lambda n: n.name or "")
        taken = {n.name for n in existing}
        for i, nic in enumerate(spec.nics):
            body = types.Nic(
                mac=types.Mac(address=nic.mac.lower()),
                interface=models[i],
                vnic_profile=types.VnicProfile(id=profiles[i].id),
            )
            if i < len(existing):
                one = service.nic_service(existing[i].id)
                self._call(what, lambda one=one, body=body: one.update(body))
                continue
            body.name = next(f"nic{n}" for n in range(1, 99) if f"nic{n}" not in taken)
            taken.add(body.name)
            self._call(what, lambda body=body: service.add(body))
        for extra in existing[len(spec.nics) :]:
            self._call(what, service.nic_service(extra.id).remove)

    def _add_disks(self, vm_id: str, spec: base.VMSpec, domains: list, buses: list) -> None:
        service = self._service(vm_id).disk_attachments_service()
        what = f"add disks to VM {vm_id}"
        has_boot = any(a.bootable for a in self._call(what, service.list))
        made = []
        for i, disk in enumerate(spec.disks):
            body = types.DiskAttachment(
                disk=types.Disk(
                    name=f"{spec.name}_disk{i + 1}",
                    format=types.DiskFormat.COW,
                    sparse=True,
                    provisioned_size=disk.size_bytes,
                    storage_domains=[types.StorageDomain(id=domains[i].id)],
                ),
                interface=buses[i],
                bootable=not has_boot and i == 0,
                active=True,
            )
            made.append(self._call(what, lambda body=body: service.add(body)).disk.id)
        disks = self._system().disks_service()
        for disk_id in made:
            one = disks.disk_service(disk_id)
            self._until(
                f"wait for disk {disk_id} of VM {vm_id}",
                lambda one=one: self._call(what, one.get).status == types.DiskStatus.OK,
            )

    def _undo(self, vm_id: str, error: base.HypervisorError) -> None:
        """Remove what a failed create made; name the VM if that fails too."""
        try:
            self._remove(vm_id)
        except base.NotFound:
            pass
        except base.HypervisorError as cleanup:
            raise base.PermanentError(
                f"{error}; the half-made VM {vm_id} is left on the engine and could not be "
                f"removed: {cleanup}"
            ) from None
