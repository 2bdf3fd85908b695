"""Proxmox VE through ``proxmoxer``'s HTTPS backend (the PVE API2 JSON REST API).

``endpoint`` is the address of any node of the cluster:
``https://pve.example:8006`` (port 8006 unless given; a path, as behind a
reverse proxy, is kept). Authentication is either

- a ticket: username ``root@pam`` (any ``USER@REALM``) and its password;
  ``POST /access/ticket`` returns the ticket and the CSRF token that every
  write carries, or
- an API token: username ``USER@REALM!TOKENID`` and the token's secret as
  the credential's token (``Authorization: PVEAPIToken=...``).

One endpoint is one cluster (or one standalone node): VMs are found on
whichever node holds them, new VMs go to ``spec.host`` or else the ``node``
option (default: the first online node by name), and the storage and bridges
that inventory reports are that node's. A VM's platform id is its VMID
(``"100"``). Templates are QEMU VMs with ``template: 1``; cloning one makes a
full clone (independent disks) on the template's node, on the ``storage``
option or else the template's own storage, then migrates it offline to the
wanted node if that is another (PVE clones across nodes only from shared
storage). A clone keeps its template's firmware and disk bus. Blank disks
are allocated as ``STORAGE:GiB``, so sizes round up to whole GiB. NICs name
a bridge (``vmbr0``). HA is the cluster's HA resource ``vm:VMID``.

Long operations (create, clone, start, stop, reset, destroy, migrate) are
PVE tasks (UPIDs). The driver waits for each within the connection timeout
and turns a failed task's ``exitstatus`` into an error naming the task.

The driver is a package: :mod:`.session` logs in, maps errors and waits for
tasks, :mod:`.config` reads VM configurations, :mod:`.vms` reads and runs
VMs; this module holds :class:`ProxmoxDriver` and VM creation.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from .. import base
from ..base import Capability as C
from .config import _BUSES, _DEFAULT_STORAGE, _GIB, _NET_KEY, _NIC_MODELS, _boot_disk
from .vms import ProxmoxVMs


class ProxmoxDriver(ProxmoxVMs):
    """Proxmox VE clusters and standalone nodes: QEMU VMs, templates, HA, live migration."""

    name = "proxmox"
    label = "Proxmox VE"
    capabilities: ClassVar[frozenset[C]] = frozenset(
        {C.HEALTH, C.INVENTORY, C.CREATE_VM, C.CLONE_TEMPLATE, C.POWER, C.DELETE_VM}
        | {C.TEMPLATE_SYNC, C.LIVE_MIGRATE, C.HA}
    )
    honours: ClassVar[frozenset[str]] = frozenset({"host", "disk_interface", "nic_model"})
    options: ClassVar[dict[str, str]] = {
        "node": "Node new VMs go to unless the request names a host (default: first online)",
        "storage": f"Storage for new disks and clones (default: {_DEFAULT_STORAGE}; "
        "clones: the template's)",
    }

    # --- create --------------------------------------------------------------------

    def create_vm(self, spec: base.VMSpec) -> base.VM:
        """Create (not start) a VM: network first in the boot order, then its first
        disk. A half-made VM is destroyed before raising; if that fails too, the
        error names its VMID."""
        if not spec.nics:
            raise base.InvalidRequest("proxmox: a VM needs a NIC to network-boot from")
        nodes = self._nodes()
        node = spec.host or self._default_node(nodes)
        if node not in {n["node"] for n in nodes}:
            raise base.NotFound(f"proxmox: node {node!r} is not in the cluster")
        self._check_targets(node, spec)
        template = self._template(spec.template) if spec.template else None
        for attempt in range(3):
            vmid = int(self._get("cluster/nextid", "next free VM id"))
            what = f"create VM {spec.name!r} ({vmid})"
            if template is None:
                path, params = f"nodes/{node}/qemu", self._params(vmid, spec)
            else:
                path = f"nodes/{template['node']}/qemu/{template['vmid']}/clone"
                params = {"newid": vmid, "name": spec.name, "full": 1}
                if self.connection.options.get("storage"):
                    params["storage"] = self._storage()
            try:
                upid = self._call("post", path, what, **params)
            except base.HypervisorError as exc:
                if "already exists" in str(exc) and attempt < 2:
                    continue  # another client took the id between nextid and create
                self._undo(vmid, spec.name, exc)  # an answer lost on the way may hide a VM
                raise
            break
        try:
            self._wait(upid, what)
            if template is not None and node != template["node"]:
                # Cloning straight onto another node (``target``) works only from
                # shared storage; an offline migration also copies local disks.
                path = f"nodes/{template['node']}/qemu/{vmid}/migrate"
                self._run("post", path, f"move VM {vmid} to {node}", target=node)
            if template is not None:
                self._configure_clone(vmid, node, spec)
            if spec.ha:
                self.set_ha(str(vmid), True)
        except base.HypervisorError as exc:
            self._undo(vmid, spec.name, exc)
            raise
        return self.get_vm(str(vmid))

    def _check_targets(self, node: str, spec: base.VMSpec) -> None:
        """Refuse missing bridges and storage up front: PVE itself would notice
        a missing bridge only when the VM starts."""
        bridges = {b["iface"] for b in self._get(f"nodes/{node}/network", "networks")}
        for nic in spec.nics:
            if nic.network not in bridges:
                raise base.NotFound(f"proxmox: bridge {nic.network!r} does not exist on {node}")
            if (nic.model or "virtio") not in _NIC_MODELS:
                raise base.InvalidRequest(f"proxmox: NIC model {nic.model!r}: use {_NIC_MODELS}")
        wanted = {d.storage or self._storage() for d in spec.disks}
        if self.connection.options.get("storage") or (
            spec.firmware == "uefi" and not spec.template
        ):
            wanted.add(self._storage())
        storage = self._get(f"nodes/{node}/storage", "storage", content="images")
        missing = wanted - {s["storage"] for s in storage}
        if missing:
            raise base.NotFound(
                f"proxmox: storage {sorted(missing)} does not exist on {node} (or holds no images)"
            )

    def _storage(self) -> str:
        return str(self.connection.options.get("storage") or _DEFAULT_STORAGE)

    def _template(self, wanted: str) -> dict[str, Any]:
        for r in self._get("cluster/resources", "templates", type="vm"):
            if (
                r.get("type") == "qemu"
                and r.get("template")
                and wanted in (str(r["vmid"]), r.get("name"))
            ):
                return r
        raise base.NotFound(f"proxmox: template {wanted!r} does not exist")

    def _nic_params(self, spec: base.VMSpec) -> dict[str, str]:
        return {
            f"net{i}": f"{nic.model or 'virtio'}={nic.mac.upper()},bridge={nic.network}"
            for i, nic in enumerate(spec.nics)
        }

    def _disk_params(self, disks: Any, used: set[str]) -> dict[str, str]:
        params = {}
        for disk in disks:
            bus = disk.interface or "virtio"
            if bus not in _BUSES:
                raise base.InvalidRequest(f"proxmox: disk interface {bus!r}: use {sorted(_BUSES)}")
            free = [i for i in range(_BUSES[bus]) if f"{bus}{i}" not in used]
            if not free:
                raise base.InvalidRequest(f"proxmox: no free {bus} slot for another disk")
            key = f"{bus}{free[0]}"
            used.add(key)
            gib = max(1, math.ceil(disk.size_bytes / _GIB))
            params[key] = f"{disk.storage or self._storage()}:{gib}"
        return params

    def _params(self, vmid: int, spec: base.VMSpec) -> dict[str, Any]:
        disks = self._disk_params(spec.disks, set())
        params: dict[str, Any] = {
            "vmid": vmid,
            "name": spec.name,
            "cores": spec.cpus,
            "sockets": 1,
            "memory": spec.memory_mib,
            **self._nic_params(spec),
            **disks,
            "boot": ";".join(["order=net0", *list(disks)[:1]]),
        }
        if any(key.startswith("scsi") for key in disks):
            params["scsihw"] = "virtio-scsi-single"
        if spec.firmware == "uefi":
            params["bios"] = "ovmf"
            params["efidisk0"] = f"{self._storage()}:1,efitype=4m"  # keeps the UEFI variables
        if spec.arch == "aarch64":
            params["arch"] = "aarch64"
        return params

    def _configure_clone(self, vmid: int, node: str, spec: base.VMSpec) -> None:
        """Give the clone the spec's CPUs, memory, NICs (their MACs: PVE made new
        ones), extra disks and a network-first boot order."""
        path = f"nodes/{node}/qemu/{vmid}/config"
        config = self._get(path, f"configuration of VM {vmid}")
        nics = self._nic_params(spec)
        stale = sorted(k for k in config if _NET_KEY.match(k) and k not in nics)
        disks = self._disk_params(spec.disks, set(config))
        first = _boot_disk(config) or next(iter(disks), "")
        params: dict[str, Any] = {
            "cores": spec.cpus,
            "sockets": 1,
            "memory": spec.memory_mib,
            **nics,
            **disks,
            "boot": ";".join(["order=net0", first] if first else ["order=net0"]),
            "digest": config.get("digest"),
        }
        if stale:
            params["delete"] = ",".join(stale)
        if any(key.startswith("scsi") for key in disks) and "scsihw" not in config:
            params["scsihw"] = "virtio-scsi-single"
        self._run("post", path, f"configure VM {vmid}", **params)

    def _undo(self, vmid: int, name: str, error: base.HypervisorError) -> None:
        """Destroy what a failed create left under ``vmid``: only a VM of that name
        or one still locked by the create or clone, never someone else's."""
        try:
            resource = self._find(vmid)
            if resource is None:
                return
            config = self._config(resource)
            if config.get("name") != name and config.get("lock") not in ("create", "clone"):
                return
            if resource.get("status") == "running":
                self._stop(resource)
            params: dict[str, Any] = {"purge": 1, "destroy-unreferenced-disks": 1}
            if self.connection.username == "root@pam" and not self.connection.token:
                params["skiplock"] = 1  # a half-made VM keeps its create/clone lock
            path = f"nodes/{resource['node']}/qemu/{vmid}"
            self._run("delete", path, f"remove half-made VM {vmid}", **params)
        except base.HypervisorError as cleanup:
            raise base.PermanentError(
                f"{error}; the half-made VM {vmid} is left on the cluster and could not be "
                f"removed: {cleanup}"
            ) from None
