"""VMware vSphere (a vCenter Server, or one ESXi host) through ``pyVmomi``.

``endpoint`` is the SDK URL (``https://vcenter.example/sdk``) or a host
(``vcenter.example[:port]``). The credential's username and password log in;
:meth:`close` logs out. TLS verifies against ``ca_pem``, else the system CAs,
unless ``verify_tls`` is off. VM and template ids are managed object ids.

Options, all names: ``datacenter`` (default: the first), ``cluster`` (for
new VMs unless the spec names one or a host; default: the first cluster,
else a standalone host), ``datastore`` (for VM files and the disks naming
none; default: the cluster's first), ``folder`` (a VM folder path such as
``pureboot/lab``), ``guest_id`` (default ``otherGuest64``), ``task_timeout``
(seconds a task may take, default 1800; ``connection.timeout`` bounds calls).

NICs name a standard network or a distributed port group; their model is
``vmxnet3`` (also for ``virtio``), ``e1000`` or ``e1000e``, and their MAC is
``manual`` (vCenter takes 00:50:56:00:00:00-00:50:56:3F:FF:FF). Disks hang off
one paravirtual SCSI controller. Network boot comes first, then the first
disk: ``bootOrder`` names devices by the keys vSphere assigns as it adds
them, so a ``ReconfigVM_Task`` sets it once the VM exists.

The driver is a package: :mod:`.session` logs in, maps faults and waits for
tasks, :mod:`.convert` turns managed objects into base.py's dataclasses,
:mod:`.devices` builds device specs; this module holds :class:`VMwareDriver`
(lookups, inventory, creation, power).
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, ClassVar

from pyVmomi import vim, vmodl

from .. import base
from ..base import Capability as C
from .convert import _POWER, _VM_PROPS, _host, _is_template, _template, _vm
from .devices import _DEV, _OP, _boot_options, _change, _disk_changes, _macs, _nic_device
from .session import VMwareSession

_PC = vmodl.query.PropertyCollector
_BY_NAME = attrgetter("name")


class VMwareDriver(VMwareSession):
    """vSphere: VMs on a vCenter's clusters (or an ESXi host), cloned from its templates."""

    name = "vmware"
    label = "VMware vSphere"
    capabilities: ClassVar[frozenset[C]] = frozenset(
        {C.HEALTH, C.INVENTORY, C.CREATE_VM, C.CLONE_TEMPLATE, C.POWER, C.DELETE_VM}
        | {C.TEMPLATE_SYNC, C.LIVE_MIGRATE}
    )
    honours: ClassVar[frozenset[str]] = frozenset({"cluster", "host", "nic_model"})
    options: ClassVar[dict[str, str]] = {
        "datacenter": "Datacenter name (default: the first)",
        "cluster": "Cluster for new VMs (default: the first)",
        "datastore": "Datastore for VM files and disks (default: the cluster's first)",
        "folder": "VM folder path under the datacenter's VM folder, e.g. pureboot/lab",
        "guest_id": "Guest OS identifier of blank VMs (default: otherGuest64)",
        "task_timeout": "Seconds to wait for a vSphere task (default: 1800)",
    }

    # --- lookups ------------------------------------------------------------

    def _collect(self, root: vim.ManagedEntity, kind: type, paths: list[str]) -> list[tuple]:
        """(object, {path: value}) for every ``kind`` under ``root``, in one
        property-collector pass over a container view."""
        content = self._content()
        view = self._call(
            "container view", content.viewManager.CreateContainerView, root, [kind], True
        )
        try:
            traverse = _PC.TraversalSpec(path="view", skip=False, type=vim.view.ContainerView)
            start = _PC.ObjectSpec(obj=view, skip=True, selectSet=[traverse])
            wanted = _PC.PropertySpec(type=kind, pathSet=paths)
            spec = _PC.FilterSpec(objectSet=[start], propSet=[wanted])
            collector = content.propertyCollector
            what = f"list {kind.__name__}"
            page = self._call(what, collector.RetrievePropertiesEx, [spec], _PC.RetrieveOptions())
            found = []
            while page is not None:
                found += [(o.obj, {p.name: p.val for p in o.propSet}) for o in page.objects]
                if not page.token:
                    break
                page = self._call(what, collector.ContinueRetrievePropertiesEx, page.token)
            return found
        finally:
            try:
                view.Destroy()
            except Exception:  # noqa: BLE001 - the view expires with the session anyway
                pass

    def _datacenter(self) -> vim.Datacenter:
        if self._dc is not None:
            return self._dc
        wanted = self.connection.options.get("datacenter")
        for dc, props in self._collect(self._content().rootFolder, vim.Datacenter, ["name"]):
            if not wanted or props.get("name") == wanted:
                self._dc = dc
                return dc
        raise base.NotFound(f"vSphere: datacenter {wanted or '(any)'!r} not found")

    def _named(self, kind: type, name: str, what: str) -> vim.ManagedEntity:
        for obj, props in self._collect(self._datacenter(), kind, ["name"]):
            if props.get("name") == name:
                return obj
        raise base.NotFound(f"vSphere: {what} {name!r} not found")

    def _compute(self, spec: base.VMSpec) -> tuple[vim.ResourcePool, vim.HostSystem | None]:
        """The resource pool (and host, if the spec names one) a new VM goes to."""
        if spec.host:
            host = self._named(vim.HostSystem, spec.host, "host")
            return self._call("host's pool", lambda: host.parent.resourcePool), host
        cluster = spec.cluster or self.connection.options.get("cluster")
        if cluster:
            found = self._named(vim.ClusterComputeResource, cluster, "cluster")
            return self._call("cluster's pool", lambda: found.resourcePool), None
        resources = self._collect(self._datacenter(), vim.ComputeResource, ["resourcePool"])
        # Clusters first: a standalone host is only the fallback.
        resources.sort(key=lambda r: not isinstance(r[0], vim.ClusterComputeResource))
        if not resources:
            raise base.NotFound("vSphere: the datacenter has no cluster or host")
        return resources[0][1]["resourcePool"], None

    def _datastore_name(self, pool: vim.ResourcePool, wanted: str = "") -> str:
        wanted = wanted or self.connection.options.get("datastore", "")
        if wanted:
            self._named(vim.Datastore, wanted, "datastore")
            return wanted
        stores = self._call("datastores", lambda: pool.owner.datastore)
        if not stores:
            raise base.NotFound("vSphere: the cluster has no datastore")
        return self._call("datastore name", lambda: stores[0].name)

    def _folder(self) -> vim.Folder:
        folder = self._call("VM folder", lambda: self._datacenter().vmFolder)
        for part in filter(None, self.connection.options.get("folder", "").split("/")):
            children = self._call("folders", lambda f=folder: list(f.childEntity))
            match = [c for c in children if isinstance(c, vim.Folder) and c.name == part]
            if not match:
                raise base.NotFound(
                    f"vSphere: VM folder {self.connection.options['folder']!r} not found"
                )
            folder = match[0]
        return folder

    def _network_backing(self, name: str) -> vim.vm.device.VirtualDevice.BackingInfo:
        network = self._named(vim.Network, name, "network")
        if isinstance(network, vim.dvs.DistributedVirtualPortgroup):
            key, switch = self._call(
                f"port group {name!r}",
                lambda: (network.key, network.config.distributedVirtualSwitch.uuid),
            )
            port = vim.dvs.PortConnection(portgroupKey=key, switchUuid=switch)
            return _DEV.VirtualEthernetCard.DistributedVirtualPortBackingInfo(port=port)
        return _DEV.VirtualEthernetCard.NetworkBackingInfo(deviceName=name, network=network)

    def _vm_ref(self, vm_id: str) -> vim.VirtualMachine:
        return vim.VirtualMachine(vm_id, self._service()._stub)

    def _props(self, obj: vim.ManagedEntity, paths: list[str], what: str) -> dict[str, Any]:
        """Some properties of one object; :class:`NotFound` if it is gone."""
        spec = _PC.FilterSpec(
            objectSet=[_PC.ObjectSpec(obj=obj, skip=False)],
            propSet=[_PC.PropertySpec(type=type(obj), pathSet=paths)],
        )
        collector = self._content().propertyCollector
        page = self._call(what, collector.RetrievePropertiesEx, [spec], _PC.RetrieveOptions())
        if page is None or not page.objects:
            raise base.NotFound(f"vSphere: {what}: not found")
        return {p.name: p.val for p in page.objects[0].propSet}

    # --- health and inventory ------------------------------------------------

    def health(self) -> base.Health:
        """Log in and read the vCenter's (or ESXi host's) product name and version."""
        about = self._content().about
        return base.Health(ok=True, version=f"{about.fullName} (API {about.apiVersion})")

    def inventory(self) -> base.Inventory:
        """The datacenter's hosts, clusters, datastores, networks, templates and VMs."""
        dc = self._datacenter()
        clusters = self._collect(dc, vim.ClusterComputeResource, ["name", "host"])
        cluster_of = {h._moId: p["name"] for _c, p in clusters for h in p.get("host", [])}
        paths = ["name", "summary.hardware", "summary.quickStats", "runtime.connectionState"]
        found_hosts = self._collect(dc, vim.HostSystem, paths)
        hosts = [_host(h, p, cluster_of.get(h._moId, "")) for h, p in found_hosts]
        summaries = [p["summary"] for _d, p in self._collect(dc, vim.Datastore, ["summary"])]
        storage = [base.Storage(s.name, s.capacity, s.freeSpace, s.type) for s in summaries]
        # A distributed switch's uplink port group carries no VM traffic.
        switches = self._collect(dc, vim.DistributedVirtualSwitch, ["config.uplinkPortgroup"])
        uplinks = {g._moId for _s, p in switches for g in p.get("config.uplinkPortgroup", [])}
        networks = self._collect(dc, vim.Network, ["name"])
        host_names = {h._moId: p["name"] for h, p in found_hosts}
        machines = self._collect(dc, vim.VirtualMachine, _VM_PROPS)
        templates = [_template(vm, p) for vm, p in machines if _is_template(p)]
        vms = [_vm(vm, p, host_names) for vm, p in machines if not _is_template(p)]
        return base.Inventory(
            hosts=tuple(sorted(hosts, key=_BY_NAME)),
            clusters=tuple(sorted(p["name"] for _c, p in clusters)),
            storage=tuple(sorted(storage, key=_BY_NAME)),
            networks=tuple(sorted(p["name"] for n, p in networks if n._moId not in uplinks)),
            templates=tuple(sorted(templates, key=_BY_NAME)),
            vms=tuple(sorted(vms, key=_BY_NAME)),
        )

    def templates(self) -> tuple[base.Template, ...]:
        """The datacenter's VMs marked as templates (``config.template``)."""
        machines = self._collect(self._datacenter(), vim.VirtualMachine, _VM_PROPS)
        found = [_template(vm, p) for vm, p in machines if _is_template(p)]
        return tuple(sorted(found, key=_BY_NAME))

    def get_vm(self, vm_id: str) -> base.VM:
        """One VM by its managed object id; :class:`NotFound` if it is gone."""
        ref = self._vm_ref(vm_id)
        props = self._props(ref, _VM_PROPS, f"VM {vm_id}")
        host = props.get("runtime.host")
        names = {host._moId: self._call("host name", lambda: host.name)} if host else {}
        return _vm(ref, props, names)

    def _template_ref(self, wanted: str) -> vim.VirtualMachine:
        paths = ["name", "config.template"]
        for vm, p in self._collect(self._datacenter(), vim.VirtualMachine, paths):
            if _is_template(p) and wanted in (vm._moId, p.get("name")):
                return vm
        raise base.NotFound(f"vSphere: template {wanted!r} not found")

    # --- create --------------------------------------------------------------

    def create_vm(self, spec: base.VMSpec) -> base.VM:
        """Create (not start) a VM, blank or cloned from ``spec.template``, with
        the spec's MACs and network boot first. A VM made before a later step
        failed is destroyed before the error is raised; if that fails too, the
        error names it."""
        if not spec.nics:
            raise base.InvalidRequest("vSphere: a VM needs a NIC: it network-boots PureBoot")
        # Resolve every name first: a missing one fails before anything is made.
        pool, host = self._compute(spec)
        folder = self._folder()
        backings = [self._network_backing(nic.network) for nic in spec.nics]
        stores = [self._datastore_name(pool, d.storage) if d.storage else "" for d in spec.disks]
        if spec.template:
            template = self._template_ref(spec.template)
            vm = self._clone(spec, template, folder, pool, host, backings, stores)
        else:
            vm = self._create_blank(spec, folder, pool, host, backings, stores)
        try:
            self._finish(vm, spec)
        except base.HypervisorError as exc:
            try:
                self._run("remove the half-made VM", vm.Destroy_Task)
            except base.HypervisorError as left:
                raise base.PermanentError(
                    f"{exc}; the half-made VM {vm._moId} is left behind: {left}"
                ) from None
            raise
        return self.get_vm(vm._moId)

    def _create_blank(self, spec, folder, pool, host, backings, stores) -> vim.VirtualMachine:
        changes = _disk_changes(spec.disks, stores, [])
        for i, (nic, backing) in enumerate(zip(spec.nics, backings, strict=True)):
            changes.append(_change(_OP.add, _nic_device(nic, backing, -(300 + i))))
        config = vim.vm.ConfigSpec(
            name=spec.name,
            numCPUs=spec.cpus,
            memoryMB=spec.memory_mib,
            guestId=self.connection.options.get("guest_id", "otherGuest64"),
            firmware="efi" if spec.firmware == "uefi" else "bios",
            files=vim.vm.FileInfo(vmPathName=f"[{self._datastore_name(pool)}]"),
            deviceChange=changes,
        )
        what = f"create VM {spec.name!r}"
        return self._run(what, folder.CreateVM_Task, config=config, pool=pool, host=host)

    def _clone(self, spec, template, folder, pool, host, backings, stores) -> vim.VirtualMachine:
        paths = ["config.hardware.device"]
        devices = self._props(template, paths, "template").get(paths[0], [])
        nics = [d for d in devices if isinstance(d, _DEV.VirtualEthernetCard)]
        changes = [_change(_OP.remove, extra) for extra in nics[len(spec.nics) :]]
        for i, (nic, backing) in enumerate(zip(spec.nics, backings, strict=True)):
            if i >= len(nics):
                changes.append(_change(_OP.add, _nic_device(nic, backing, -(300 + i))))
                continue
            # The template's own NIC (its key, model and slot), with our MAC.
            nics[i].addressType, nics[i].macAddress = "manual", nic.mac.lower()
            nics[i].backing = backing
            changes.append(_change(_OP.edit, nics[i]))
        changes += _disk_changes(spec.disks, stores, devices)
        location = vim.vm.RelocateSpec(pool=pool, host=host)
        if self.connection.options.get("datastore"):
            name = self.connection.options["datastore"]
            location.datastore = self._named(vim.Datastore, name, "datastore")
        boot = _boot_options(devices, spec.nics[0].mac)
        clone = vim.vm.CloneSpec(
            location=location,
            powerOn=False,
            template=False,
            config=vim.vm.ConfigSpec(deviceChange=changes, bootOptions=boot),
        )
        what = f"clone template {spec.template!r} to {spec.name!r}"
        return self._run(what, template.CloneVM_Task, folder=folder, name=spec.name, spec=clone)

    def _finish(self, vm: vim.VirtualMachine, spec: base.VMSpec) -> None:
        """Size the VM and put network boot first, by the device keys vSphere
        assigned; then check that the VM carries exactly the spec's MACs."""
        what, paths = f"configure VM {spec.name!r}", ["config.hardware.device"]
        devices = self._props(vm, paths, what).get(paths[0], [])
        boot = _boot_options(devices, spec.nics[0].mac)
        config = vim.vm.ConfigSpec(numCPUs=spec.cpus, memoryMB=spec.memory_mib, bootOptions=boot)
        self._run(what, vm.ReconfigVM_Task, spec=config)
        have = _macs(self._props(vm, paths, what).get(paths[0], []))
        want = tuple(nic.mac.lower() for nic in spec.nics)
        if have != want:
            raise base.PermanentError(f"vSphere: {what}: its MACs are {have}, not {want}")

    # --- power, delete, migrate ---------------------------------------------

    def power_state(self, vm_id: str) -> base.PowerState:
        """The VM's power state: running, stopped or paused (suspended)."""
        props = self._props(self._vm_ref(vm_id), ["runtime.powerState"], f"VM {vm_id}")
        return _POWER.get(str(props.get("runtime.powerState")), base.PowerState.UNKNOWN)

    def power(self, vm_id: str, action: base.PowerAction) -> None:
        """Power on (no-op if running), hard power off (no-op if stopped) or reset
        (a stopped VM is powered on)."""
        state, vm = self.power_state(vm_id), self._vm_ref(vm_id)
        action = base.PowerAction(action)
        if action == base.PowerAction.OFF:
            if state != base.PowerState.STOPPED:
                self._run(f"power off VM {vm_id}", vm.PowerOffVM_Task)
        elif state != base.PowerState.RUNNING:
            self._run(f"power on VM {vm_id}", vm.PowerOnVM_Task)
        elif action == base.PowerAction.REBOOT:
            self._run(f"reset VM {vm_id}", vm.ResetVM_Task)

    def delete_vm(self, vm_id: str) -> None:
        """Power off and destroy the VM; vSphere deletes its disks with it."""
        self.power(vm_id, base.PowerAction.OFF)
        self._run(f"delete VM {vm_id}", self._vm_ref(vm_id).Destroy_Task)

    def migrate_vm(self, vm_id: str, host: str) -> None:
        """vMotion the VM, running, to ``host`` (and that host's resource pool)."""
        target = self._named(vim.HostSystem, host, "host")
        pool = self._call("host's pool", lambda: target.parent.resourcePool)
        self._run(
            f"migrate VM {vm_id} to {host!r}",
            self._vm_ref(vm_id).RelocateVM_Task,
            spec=vim.vm.RelocateSpec(host=target, pool=pool),
            priority=vim.VirtualMachine.MovePriority.defaultPriority,
        )
