"""The Proxmox driver's reading and running of VMs: nodes, health, inventory,
power, delete, live migration and HA."""

from __future__ import annotations

import time
from typing import Any

from .. import base
from .config import _MIB, _macs, _memory_mib, _vmid
from .session import ProxmoxSession


class ProxmoxVMs(ProxmoxSession):
    """PVE VMs once they exist, wherever they run, and the cluster's inventory."""

    # --- health and inventory ----------------------------------------------------

    def _nodes(self) -> list[dict[str, Any]]:
        return sorted(self._get("nodes", "list nodes"), key=lambda n: n["node"])

    def _default_node(self, nodes: list[dict[str, Any]]) -> str:
        names = [n["node"] for n in nodes]
        wanted = self.connection.options.get("node")
        if wanted:
            if wanted not in names:
                raise base.NotFound(f"proxmox: node {wanted!r} (the node option) is not in {names}")
            return str(wanted)
        online = [n["node"] for n in nodes if n.get("status") == "online"]
        if not online:
            raise base.TransientError("proxmox: no node of the cluster is online")
        return online[0]

    def health(self) -> base.Health:
        """Log in, read the version and the status of the node new VMs go to."""
        version = self._get("version", "version")
        node = self._default_node(self._nodes())
        status = self._get(f"nodes/{node}/status", f"status of node {node}")
        return base.Health(
            ok=True,
            version=str(version.get("version", "")),
            message=f"node {node}: {status.get('pveversion', '')}".strip(),
        )

    def inventory(self) -> base.Inventory:
        """Nodes, the cluster, the default node's VM storage and bridges, templates, VMs."""
        nodes = self._nodes()
        node = self._default_node(nodes)
        status = self._get("cluster/status", "cluster status")
        cluster = next((e.get("name", "") for e in status if e.get("type") == "cluster"), "")
        hosts = tuple(
            base.Host(
                name=n["node"],
                cluster=cluster,
                cpus=int(n.get("maxcpu", 0)),
                memory_mib=int(n.get("maxmem", 0)) // _MIB,
                memory_used_mib=int(n.get("mem", 0)) // _MIB,
                state=str(n.get("status", "")),
            )
            for n in nodes
        )
        storage = tuple(
            base.Storage(s["storage"], int(s.get("total", 0)), int(s.get("avail", 0)), s["type"])
            for s in self._get(f"nodes/{node}/storage", "storage", content="images", enabled=1)
        )
        bridges = self._get(f"nodes/{node}/network", "networks", type="any_bridge")
        resources = self._get("cluster/resources", "VMs", type="vm")
        # An offline node cannot answer for its VMs' configs (PVE: HTTP 595).
        online = {n["node"] for n in nodes if n.get("status") == "online"}
        vms = tuple(
            self._vm(r, self._config(r) if r["node"] in online else {})
            for r in resources
            if r.get("type") == "qemu" and not r.get("template")
        )
        return base.Inventory(
            hosts=hosts,
            clusters=(cluster,) if cluster else (),
            storage=storage,
            networks=tuple(sorted(b["iface"] for b in bridges)),
            templates=self._templates(resources, online),
            vms=tuple(sorted(vms, key=lambda v: int(v.id))),
        )

    def templates(self) -> tuple[base.Template, ...]:
        """The cluster's QEMU templates (VMs with ``template: 1``), by VMID."""
        online = {n["node"] for n in self._nodes() if n.get("status") == "online"}
        return self._templates(self._get("cluster/resources", "templates", type="vm"), online)

    def _templates(
        self, resources: list[dict[str, Any]], online: set[str]
    ) -> tuple[base.Template, ...]:
        found = [
            base.Template(
                id=str(r["vmid"]),
                name=str(r.get("name", "")),
                cpus=int(r.get("maxcpu", 0)),
                memory_mib=int(r.get("maxmem", 0)) // _MIB,
                disk_bytes=int(r.get("maxdisk", 0)),
                os=str(self._config(r).get("ostype", "")) if r["node"] in online else "",
            )
            for r in resources
            if r.get("type") == "qemu" and r.get("template")
        ]
        return tuple(sorted(found, key=lambda t: int(t.id)))

    def _config(self, resource: dict[str, Any]) -> dict[str, Any]:
        path = f"nodes/{resource['node']}/qemu/{resource['vmid']}/config"
        return self._get(path, f"configuration of VM {resource['vmid']}")

    def _vm(
        self, resource: dict[str, Any], config: dict[str, Any], paused: bool = False
    ) -> base.VM:
        state = {"running": base.PowerState.RUNNING, "stopped": base.PowerState.STOPPED}
        power = state.get(str(resource.get("status")), base.PowerState.UNKNOWN)
        return base.VM(
            id=str(resource["vmid"]),
            name=str(config.get("name", resource.get("name", ""))),
            power=base.PowerState.PAUSED if paused else power,
            macs=_macs(config),
            cpus=int(config.get("cores", 1)) * int(config.get("sockets", 1))
            if config
            else int(resource.get("maxcpu", 0)),
            memory_mib=_memory_mib(config) or int(resource.get("maxmem", 0)) // _MIB,
            host=str(resource["node"]),
            ha=bool(resource.get("hastate")),
        )

    def _find(self, vmid: int) -> dict[str, Any] | None:
        for resource in self._get("cluster/resources", f"find VM {vmid}", type="vm"):
            if resource.get("type") == "qemu" and int(resource.get("vmid", -1)) == vmid:
                return resource
        return None

    def _locate(self, vm_id: str) -> dict[str, Any]:
        resource = self._find(_vmid(vm_id))
        if resource is None:
            raise base.NotFound(f"proxmox: VM {vm_id} does not exist")
        return resource

    def _status(self, resource: dict[str, Any]) -> dict[str, Any]:
        path = f"nodes/{resource['node']}/qemu/{resource['vmid']}/status/current"
        return self._get(path, f"status of VM {resource['vmid']}")

    def get_vm(self, vm_id: str) -> base.VM:
        """The VM with this VMID, wherever it runs; :class:`NotFound` if it is gone."""
        resource = self._locate(vm_id)
        status = self._status(resource)
        resource = {**resource, "status": status.get("status")}
        return self._vm(resource, self._config(resource), status.get("qmpstatus") == "paused")

    # --- power, delete, migrate, HA ----------------------------------------------------

    def power_state(self, vm_id: str) -> base.PowerState:
        """running, stopped or paused, from ``status/current``."""
        status = self._status(self._locate(vm_id))
        if status.get("qmpstatus") == "paused":
            return base.PowerState.PAUSED
        state = {"running": base.PowerState.RUNNING, "stopped": base.PowerState.STOPPED}
        return state.get(str(status.get("status")), base.PowerState.UNKNOWN)

    def power(self, vm_id: str, action: base.PowerAction) -> None:
        """Start (no-op if running), hard stop (no-op if stopped), or reset (start if stopped)."""
        resource = self._locate(vm_id)
        running = self._status(resource).get("status") == "running"
        path = f"nodes/{resource['node']}/qemu/{resource['vmid']}/status"
        action = base.PowerAction(action)
        if action == base.PowerAction.OFF:
            if running:
                self._stop(resource)
        elif action == base.PowerAction.REBOOT and running:
            self._run("post", f"{path}/reset", f"reset VM {vm_id}")
        elif not running:
            self._run("post", f"{path}/start", f"start VM {vm_id}")

    def _stop(self, resource: dict[str, Any]) -> None:
        vmid = resource["vmid"]
        path = f"nodes/{resource['node']}/qemu/{vmid}/status"
        self._run("post", f"{path}/stop", f"stop VM {vmid}")
        # An HA-managed VM is stopped by the HA manager after the task returns.
        deadline = time.monotonic() + self.connection.timeout
        while self._status(resource).get("status") == "running":
            if time.monotonic() > deadline:
                raise base.TransientError(f"proxmox: VM {vmid} still running after its stop")
            time.sleep(0.2)

    def delete_vm(self, vm_id: str) -> None:
        """Stop the VM, then destroy it with its disks and its HA entry. Templates
        are refused: they are not PureBoot's to delete."""
        resource = self._locate(vm_id)
        if resource.get("template"):
            raise base.InvalidRequest(f"proxmox: VM {vm_id} is a template; not deleting it")
        if self._status(resource).get("status") == "running":
            self._stop(resource)
        self._run(
            "delete",
            f"nodes/{resource['node']}/qemu/{resource['vmid']}",
            f"delete VM {vm_id}",
            **{"purge": 1, "destroy-unreferenced-disks": 1},
        )

    def migrate_vm(self, vm_id: str, host: str) -> None:
        """Live-migrate (online, with local disks) to node ``host``; no-op if it is there."""
        resource = self._locate(vm_id)
        if resource["node"] == host:
            return
        nodes = {n["node"]: n for n in self._nodes()}
        if host not in nodes:
            raise base.NotFound(f"proxmox: node {host!r} is not in the cluster")
        params: dict[str, Any] = {"target": host, "with-local-disks": 1}
        if resource.get("status") == "running":
            params["online"] = 1
        path = f"nodes/{resource['node']}/qemu/{resource['vmid']}/migrate"
        self._run("post", path, f"migrate VM {vm_id} to {host}", **params)

    def set_ha(self, vm_id: str, enabled: bool) -> None:
        """Add the VM to (or remove it from) the cluster's HA resources; the HA
        state follows its power now, so adding it neither starts nor stops it."""
        resource = self._locate(vm_id)
        sid = f"vm:{resource['vmid']}"
        present = any(r.get("sid") == sid for r in self._get("cluster/ha/resources", "HA"))
        if enabled and not present:
            state = "started" if resource.get("status") == "running" else "stopped"
            self._call(
                "post", "cluster/ha/resources", f"enable HA for VM {vm_id}", sid=sid, state=state
            )
        elif not enabled and present:
            self._call("delete", f"cluster/ha/resources/{sid}", f"disable HA for VM {vm_id}")
