"""The fake PVE's QEMU routes: create, clone, config, power, destroy, migrate,
tasks and HA resources (see the package docstring)."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from typing import Any

from .state import (
    DISK,
    GIB,
    NET,
    NET_VALUE,
    NEW_VOLUME,
    NUMERIC,
    ApiError,
    PVEState,
    TaskFailed,
    Vm,
    param_error,
    route,
)


class FakePVE(PVEState):
    """A two-node PVE cluster, in memory: what :class:`.server.Handler` serves."""

    def __init__(self, password: str, tokens: dict[str, tuple[str, bool]]) -> None:
        super().__init__(password, tokens)
        self.routes = [
            ("GET", route("/version"), self.get_version),
            ("GET", route("/nodes"), self.get_nodes),
            ("GET", route("/nodes/{node}/status"), self.get_node_status),
            ("GET", route("/cluster/status"), self.get_cluster_status),
            ("GET", route("/cluster/resources"), self.get_resources),
            ("GET", route("/cluster/nextid"), self.get_nextid),
            ("GET", route("/nodes/{node}/storage"), self.get_storage),
            ("GET", route("/nodes/{node}/storage/{sid}/status"), self.get_storage_status),
            ("GET", route("/nodes/{node}/network"), self.get_network),
            ("GET", route("/nodes/{node}/qemu"), self.get_qemu),
            ("POST", route("/nodes/{node}/qemu"), self.create_qemu),
            ("POST", route("/nodes/{node}/qemu/{vmid}/clone"), self.clone),
            ("GET", route("/nodes/{node}/qemu/{vmid}/config"), self.get_config),
            ("POST", route("/nodes/{node}/qemu/{vmid}/config"), self.set_config),
            ("PUT", route("/nodes/{node}/qemu/{vmid}/config"), self.put_config),
            ("GET", route("/nodes/{node}/qemu/{vmid}/status/current"), self.get_status),
            ("POST", route("/nodes/{node}/qemu/{vmid}/status/{action}"), self.power),
            ("DELETE", route("/nodes/{node}/qemu/{vmid}"), self.destroy),
            ("POST", route("/nodes/{node}/qemu/{vmid}/migrate"), self.migrate),
            ("GET", route("/nodes/{node}/tasks/{upid}/status"), self.get_task),
            ("GET", route("/cluster/ha/resources"), self.get_ha),
            ("POST", route("/cluster/ha/resources"), self.add_ha),
            ("DELETE", route("/cluster/ha/resources/{sid}"), self.delete_ha),
        ]

    # --- routes: VMs -------------------------------------------------------------

    def get_qemu(self, node: str, params: dict[str, str], user: str) -> list[dict[str, Any]]:
        self._node(node)
        return [
            {k: v for k, v in self.resource(vm).items() if k not in ("id", "type", "node")}
            for vm in self.vms.values()
            if vm.node == node
        ]

    def create_qemu(self, node: str, params: dict[str, str], user: str) -> str:
        self._node(node)
        if not params.get("vmid", "").isdigit():
            raise param_error("vmid", "property is missing and it is not optional")
        vmid = int(params["vmid"])
        self._check(params)
        if vmid in self.vms:
            raise ApiError(500, f"VM {vmid} already exists on node '{self.vms[vmid].node}'")

        def work() -> None:
            vm = Vm(vmid, node, {"lock": "create"})
            try:
                self._apply(vm, params)
            except TaskFailed as exc:
                for volid in self.volumes_of(vmid):  # PVE frees what it allocated
                    del self.volumes[volid]
                raise TaskFailed(f"unable to create VM {vmid} - {exc}") from None
            del vm.config["lock"]
            self.vms[vmid] = vm

        def partial(message: str) -> None:
            vm = self.vms[vmid] = Vm(vmid, node, {"lock": "create", "name": params.get("name", "")})
            disk = next((k for k in params if DISK.match(k)), None)
            if disk:
                self._apply(vm, {disk: params[disk]})
            raise TaskFailed(f"unable to create VM {vmid} - {message}")

        return self._task(node, "qmcreate", vmid, user, work, partial)

    def clone(self, node: str, vmid: str, params: dict[str, str], user: str) -> str:
        source = self._vm(node, vmid)
        if not params.get("newid", "").isdigit():
            raise param_error("newid", "property is missing and it is not optional")
        newid, target = int(params["newid"]), params.get("target") or node
        template = source.config.get("template") == "1"
        full = params.get("full", "0" if template else "1") == "1"
        storage = params.get("storage")
        if storage and not full:
            raise ApiError(500, "parameter 'storage' not allowed for linked clones")
        if target not in self.nodes:
            raise ApiError(500, f"no such cluster node '{target}'")
        if newid in self.vms:
            raise ApiError(500, f"unable to create VM {newid}: config file already exists")
        disks = sorted(k for k in source.config if DISK.match(k) and not k.startswith("unused"))
        stores = {storage} if storage else {source.config[k].split(":")[0] for k in disks}
        if target != node and not all(self.storages[s].get("cluster_wide") for s in stores):
            raise ApiError(500, f"can't clone VM to node '{target}' (VM uses local storage)")
        if "name" in params:
            self._check({"name": params["name"]})

        def copy(vm: Vm, disks: list[str]) -> None:
            for key in disks:
                volid = source.config[key].split(",")[0]
                sid, _, volname = volid.partition(":")
                if full:
                    size = max(self.volumes.get(volid, GIB) // GIB, 1)
                    match = NEW_VOLUME.match(f"{storage or sid}:{size}")
                    assert match is not None
                    vm.config[key] = self._allocate(match, newid)
                else:  # a linked clone: a child of the template's base volume
                    child = f"{sid}:{volname}/vm-{newid}-disk-{len(self.volumes_of(newid))}"
                    self.volumes[child] = 0
                    vm.config[key] = f"{child},size={source.config[key].rsplit('size=', 1)[-1]}"

        def work() -> None:
            vm = Vm(newid, target, {"lock": "clone"})
            self.vms[newid] = vm
            try:
                for key, value in source.config.items():
                    if NET.match(key):  # a clone gets new MAC addresses
                        mac = "BC:24:11:" + ":".join(f"{b:02X}" for b in secrets.token_bytes(3))
                        value = re.sub(r"=([0-9A-Fa-f:]{17})", "=" + mac, value, count=1)
                    if key not in ("template", "lock") and key not in disks:
                        vm.config[key] = value
                vm.config["name"] = params.get("name") or f"Copy-of-VM-{source.config['name']}"
                copy(vm, disks)
            except TaskFailed as exc:
                for volid in self.volumes_of(newid):
                    del self.volumes[volid]
                del self.vms[newid]
                raise TaskFailed(f"clone failed: {exc}") from None
            del vm.config["lock"]

        def partial(message: str) -> None:
            # The worker died after writing the temporary config and one disk.
            vm = self.vms[newid] = Vm(newid, target, {"lock": "clone"})
            copy(vm, disks[:1])
            raise TaskFailed(f"clone failed: {message}")

        return self._task(node, "qmclone", vmid, user, work, partial)

    def get_config(self, node: str, vmid: str, params: dict[str, str], user: str) -> Any:
        vm = self._vm(node, vmid)
        view: dict[str, Any] = {
            k: int(v) if k in NUMERIC and v.isdigit() else v for k, v in vm.config.items()
        }
        view["digest"] = hashlib.sha1(json.dumps(sorted(vm.config.items())).encode()).hexdigest()
        return view

    def set_config(self, node: str, vmid: str, params: dict[str, str], user: str) -> Any:
        vm = self._vm(node, vmid)
        self._check(params)
        self._root_only(params, user)
        digest = params.get("digest")
        if digest and digest != self.get_config(node, vmid, {}, user)["digest"]:
            raise ApiError(
                500, "detected modified configuration - file changed by other user? Try again."
            )
        if "lock" in vm.config and params.get("skiplock") != "1":
            raise ApiError(500, f"VM is locked ({vm.config['lock']})")

        def work() -> None:
            self._apply(vm, params)

        return self._task(node, "qmconfig", vmid, user, work)

    def put_config(self, node: str, vmid: str, params: dict[str, str], user: str) -> None:
        """The synchronous form: answers null, or fails with the worker's error."""
        status = self.tasks.pop(self.set_config(node, vmid, params, user)).exitstatus
        if status != "OK":
            raise ApiError(500, status)

    def get_status(self, node: str, vmid: str, params: dict[str, str], user: str) -> Any:
        vm = self._vm(node, vmid)
        entry = self.resource(vm)
        return {
            **entry,
            "qmpstatus": vm.status,
            "cpus": entry["maxcpu"],
            "ha": {"managed": int(f"vm:{vm.vmid}" in self.ha)},
        }

    def power(self, node: str, vmid: str, action: str, params: dict[str, str], user: str) -> str:
        vm = self._vm(node, vmid)
        if action not in ("start", "stop", "shutdown", "reboot", "reset"):
            raise ApiError(
                501, f"Method 'POST /nodes/{node}/qemu/{vmid}/status/{action}' not implemented"
            )
        if action in ("reboot", "reset") and vm.status != "running":
            raise ApiError(500, f"VM {vmid} not running")

        def work() -> None:
            self._locked(vm, params)
            if action == "start":
                if vm.config.get("template") == "1":
                    raise TaskFailed("you can't start a vm if it's a template")
                if vm.status == "running":
                    raise TaskFailed(f"VM {vmid} already running")
                for key, value in vm.config.items():
                    net = NET_VALUE.match(value) if NET.match(key) else None
                    if net and net["bridge"] not in self.bridges:
                        raise TaskFailed(f"bridge '{net['bridge']}' does not exist")
                vm.status = "running"
            elif action in ("stop", "shutdown"):
                vm.status = "stopped"
            else:
                vm.resets += 1

        kind = {"start": "qmstart", "stop": "qmstop", "shutdown": "qmshutdown"}
        return self._task(node, kind.get(action, f"qm{action}"), vmid, user, work)

    def destroy(self, node: str, vmid: str, params: dict[str, str], user: str) -> str:
        vm = self._vm(node, vmid)
        self._root_only(params, user)
        managed = f"vm:{vm.vmid}" in self.ha
        if managed and params.get("purge") != "1":
            raise ApiError(
                500,
                f"unable to remove VM {vmid} - used in HA resources and purge parameter not set.",
            )
        if vm.status == "running":
            raise ApiError(500, f"VM {vmid} is running - destroy failed")

        def work() -> None:
            self._locked(vm, params)
            for key, value in vm.config.items():
                volid = value.split(",")[0]
                if DISK.match(key) and re.search(rf"[:/](vm|base)-{vm.vmid}-disk-\d+$", volid):
                    self.volumes.pop(volid, None)
            if params.get("destroy-unreferenced-disks") == "1":
                for volid in self.volumes_of(vm.vmid):
                    del self.volumes[volid]
            if params.get("purge") == "1":
                self.ha.pop(f"vm:{vm.vmid}", None)
            del self.vms[vm.vmid]

        return self._task(node, "qmdestroy", vmid, user, work)

    def migrate(self, node: str, vmid: str, params: dict[str, str], user: str) -> str:
        target = params.get("target", "")
        if target == node:
            raise param_error("target", "target is local node.")
        if target not in self.nodes:
            raise ApiError(500, f"no such cluster node '{target}'")
        vm = self._vm(node, vmid)
        if "lock" in vm.config:
            raise ApiError(500, f"VM is locked ({vm.config['lock']})")
        if vm.status == "running" and params.get("online") != "1":
            raise ApiError(500, "can't migrate running VM without --online")

        def work() -> None:
            vm.node = target

        return self._task(node, "qmigrate", vmid, user, work)

    def get_task(self, node: str, upid: str, params: dict[str, str], user: str) -> Any:
        task = self.tasks.get(upid)
        if task is None or task.node != node:
            raise ApiError(500, f"unable to parse worker upid '{upid}'")
        answer = {
            "upid": upid,
            "node": node,
            "type": task.type,
            "id": task.id,
            "user": task.user,
            "starttime": task.starttime,
            "pid": 1,
        }
        if task.hang or task.polls_left > 0:
            task.polls_left -= 1
            return {**answer, "status": "running"}
        return {**answer, "status": "stopped", "exitstatus": task.exitstatus}

    def get_ha(self, params: dict[str, str], user: str) -> list[dict[str, Any]]:
        return [
            {"sid": sid, "type": "vm", "state": state, "max_restart": 1, "max_relocate": 1}
            for sid, state in self.ha.items()
        ]

    def add_ha(self, params: dict[str, str], user: str) -> None:
        sid = params.get("sid", "")
        sid = f"vm:{sid}" if sid.isdigit() else sid
        if not re.match(r"^vm:\d+$", sid):
            raise param_error("sid", f"unable to parse service id '{sid}'")
        if sid in self.ha:
            raise ApiError(500, f"resource ID '{sid}' already defined")
        if int(sid[3:]) not in self.vms:
            raise ApiError(500, f"unable to find configuration file for VM {sid[3:]}")
        self.ha[sid] = params.get("state", "started")

    def delete_ha(self, sid: str, params: dict[str, str], user: str) -> None:
        if sid not in self.ha:
            raise ApiError(500, f"no such resource '{sid}'")
        del self.ha[sid]
