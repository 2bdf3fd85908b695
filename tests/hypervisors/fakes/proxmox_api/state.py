"""The fake PVE's state: nodes, storage, bridges, VMs, tasks, HA, logins, and
the cluster and node routes (see the package docstring)."""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

GIB = 1024**3
MIB = 1024**2
DISK = re.compile(r"^(scsi|virtio|sata|ide|efidisk|unused)\d+$")
NET = re.compile(r"^net\d+$")
NET_VALUE = re.compile(
    r"^(virtio|e1000|rtl8139|vmxnet3)(=(?P<mac>([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}))?"
    r",bridge=(?P<bridge>[\w.-]+)(,.*)?$"
)
NEW_VOLUME = re.compile(r"^(?P<sid>[\w.-]+):(?P<gib>\d+(\.\d+)?)(,.*)?$")
_DNS_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")
_SETTABLE = {
    "name",
    "cores",
    "sockets",
    "memory",
    "boot",
    "bios",
    "ostype",
    "scsihw",
    "arch",
    "machine",
    "agent",
    "description",
    "onboot",
    "cpu",
    "vga",
    "serial0",
}
_CONTROL = {"delete", "digest", "skiplock", "vmid", "node"}
NUMERIC = {"cores", "sockets", "memory", "template", "onboot"}
_SCHEMA_ERROR = (
    "property is not defined in schema and the schema does not allow additional properties"
)


class ApiError(Exception):
    """A call refused before any task ran: an HTTP status and PVE's message."""

    def __init__(self, code: int, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.errors = code, message, errors


def param_error(name: str, message: str) -> ApiError:
    return ApiError(400, "Parameter verification failed.", {name: message})


class TaskFailed(Exception):
    """A worker's ``die``: its text becomes the task's ``exitstatus``."""


@dataclass
class Vm:
    vmid: int
    node: str
    config: dict[str, str]
    status: str = "stopped"
    resets: int = 0


@dataclass
class Task:
    upid: str
    node: str
    type: str
    id: str
    user: str
    exitstatus: str = "OK"
    polls_left: int = 1
    hang: bool = False
    starttime: int = field(default_factory=lambda: int(time.time()))


def route(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + pattern.replace("{", "(?P<").replace("}", ">[^/]+)") + "$")


class PVEState:
    """The cluster's state, logins, the helpers the routes share and the
    cluster and node routes; one lock serialises every call."""

    def __init__(self, password: str, tokens: dict[str, tuple[str, bool]]) -> None:
        self.lock = threading.RLock()
        self.version, self.release, self.cluster = "8.2.4", "8.2", "lab"
        self.nodes = {
            "pve1": {"maxcpu": 16, "maxmem": 64 * GIB, "mem": 12 * GIB, "status": "online"},
            "pve2": {"maxcpu": 8, "maxmem": 32 * GIB, "mem": 4 * GIB, "status": "online"},
        }
        self.bridges = ["vmbr0", "vmbr1"]
        self.storages: dict[str, dict[str, Any]] = {
            "local": {"type": "dir", "content": "iso,vztmpl,backup", "total": 50 * GIB},
            "local-lvm": {"type": "lvmthin", "content": "images,rootdir", "total": 100 * GIB},
            # cluster_wide: what PVE answers as the storage flag of that name (below).
            "ceph": {"type": "rbd", "content": "images", "total": 500 * GIB, "cluster_wide": 1},
        }
        self.volumes: dict[str, int] = {}  # volid -> bytes
        self.vms: dict[int, Vm] = {}
        self.tasks: dict[str, Task] = {}
        self.ha: dict[str, str] = {}  # "vm:ID" -> requested state
        self.users = {"root@pam": password}
        self.tokens = tokens  # "user@realm!id" -> (secret, may write)
        self.tickets: dict[str, tuple[str, str]] = {}  # ticket -> (user, CSRF token)
        self.failures: dict[str, str] = {}  # task type -> error of the next such task
        self.hangs: set[str] = set()
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._pid = 4000
        self.routes: list[tuple[str, re.Pattern[str], Callable[..., Any]]] = []

    # --- set-up and test controls --------------------------------------------

    def add_vm(self, vmid: int, node: str, template: bool = False, **config: str) -> Vm:
        """A VM (or a template) made out of band; ``STORAGE:GiB`` disks are allocated."""
        with self.lock:
            for key, value in list(config.items()):
                if DISK.match(key) and (match := NEW_VOLUME.match(value)):
                    config[key] = self._allocate(match, vmid, "base" if template else "vm")
            if template:
                config["template"] = "1"
            vm = self.vms[vmid] = Vm(vmid, node, dict(config))
            return vm

    def fail_task(self, task_type: str, message: str) -> None:
        """Make the next task of ``task_type`` (``qmclone``, ``qmdestroy``, ...) fail."""
        self.failures[task_type] = message

    def hang_task(self, task_type: str) -> None:
        """Make every later task of ``task_type`` stay ``running``."""
        self.hangs.add(task_type)

    def volumes_of(self, vmid: int) -> list[str]:
        return sorted(v for v in self.volumes if re.search(rf"[:/]vm-{vmid}-disk-\d+$", v))

    def free(self, sid: str) -> int:
        used = sum(size for volid, size in self.volumes.items() if volid.startswith(f"{sid}:"))
        return int(self.storages[sid]["total"]) - used

    # --- authentication --------------------------------------------------------

    def ticket(self, params: dict[str, str]) -> dict[str, Any]:
        user, password = params.get("username", ""), params.get("password", "")
        known = self.users.get(user)
        renewing = self.tickets.get(password, ("",))[0] == user  # a ticket renews itself
        if not renewing and (known is None or not secrets.compare_digest(known, password)):
            raise ApiError(401, "authentication failure")
        ticket = f"PVE:{user}:{int(time.time()):08X}::{secrets.token_urlsafe(24)}"
        csrf = f"{int(time.time()):08X}:{secrets.token_urlsafe(16)}"
        self.tickets[ticket] = (user, csrf)
        return {
            "username": user,
            "ticket": ticket,
            "CSRFPreventionToken": csrf,
            "clustername": self.cluster,
            "cap": {"vms": {"VM.Allocate": 1}},
        }

    def authenticate(self, method: str, path: str, headers: Any) -> str:
        auth = headers.get("Authorization", "")
        if auth.startswith("PVEAPIToken="):
            token_id, _, secret = auth[len("PVEAPIToken=") :].partition("=")
            known = self.tokens.get(token_id)
            if known is None or not secrets.compare_digest(known[0], secret):
                raise ApiError(401, "invalid token value!")
            if method != "GET" and not known[1]:
                raise ApiError(403, f"Permission check failed ({path}, VM.Allocate)")
            return token_id
        cookies = dict(p.strip().partition("=")[::2] for p in headers.get("Cookie", "").split(";"))
        session = self.tickets.get(cookies.get("PVEAuthCookie", ""))
        if session is None:
            raise ApiError(401, "No ticket")
        # PVE wants the CSRF token on every write made with a ticket cookie.
        if method != "GET" and headers.get("CSRFPreventionToken") != session[1]:
            raise ApiError(401, "Permission denied - invalid csrf token")
        return session[0]

    def dispatch(self, method: str, path: str, params: dict[str, str], user: str) -> Any:
        for verb, pattern, route in self.routes:
            if verb == method and (match := pattern.match(path)):
                return route(params=params, user=user, **match.groupdict())
        raise ApiError(501, f"Method '{method} {path}' not implemented")

    # --- helpers -----------------------------------------------------------------

    def _node(self, node: str) -> None:
        if node not in self.nodes:
            raise ApiError(
                500,
                f"hostname lookup '{node}' failed - failed to get address "
                f"info for: {node}: Name or service not known",
            )
        if self.nodes[node]["status"] != "online":  # pveproxy cannot reach it
            raise ApiError(595, "No route to host")

    def _vm(self, node: str, vmid: str) -> Vm:
        self._node(node)
        vm = self.vms.get(int(vmid)) if vmid.isdigit() else None
        if vm is None or vm.node != node:
            raise ApiError(
                500, f"Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"
            )
        return vm

    def _task(
        self,
        node: str,
        kind: str,
        ident: object,
        user: str,
        work: Callable[[], None],
        partial: Callable[[str], None] | None = None,
    ) -> str:
        """Run a worker now; its task says ``running`` on the first poll, then its end.
        An injected failure runs ``partial`` (the half done before dying) instead."""
        self._pid += 1
        now = int(time.time())
        upid = f"UPID:{node}:{self._pid:08X}:{self._pid * 7:08X}:{now:08X}:{kind}:{ident}:{user}:"
        task = self.tasks[upid] = Task(upid, node, kind, str(ident), user, hang=kind in self.hangs)
        try:
            if (failure := self.failures.pop(kind, None)) is not None:
                if partial is not None:
                    partial(failure)
                raise TaskFailed(failure)
            work()
        except TaskFailed as exc:
            task.exitstatus = str(exc)
        return upid

    def _allocate(self, match: re.Match[str], vmid: int, prefix: str = "vm") -> str:
        sid, size = match["sid"], int(float(match["gib"]) * GIB)
        if sid not in self.storages:
            raise TaskFailed(f"storage '{sid}' does not exist")
        if "images" not in self.storages[sid]["content"]:
            raise TaskFailed(f"storage '{sid}' does not support vm images")
        if size > self.free(sid):
            raise TaskFailed(
                f"lvcreate 'pve/{prefix}-{vmid}-disk' error:   Volume group "
                f'"pve" has insufficient free space ({self.free(sid) // (4 * MIB)} '
                f"extents): {size // (4 * MIB)} required."
            )
        index = 0
        while any(re.search(rf"[:/](vm|base)-{vmid}-disk-{index}$", v) for v in self.volumes):
            index += 1
        volid = f"{sid}:{prefix}-{vmid}-disk-{index}"
        self.volumes[volid] = size
        return f"{volid},size={size // GIB}G" if size >= GIB else f"{volid},size={size // MIB}M"

    def _check(self, params: dict[str, str]) -> None:
        """PVE's parameter verification: a 400 naming each bad parameter."""
        errors = {}
        for key, value in params.items():
            if NET.match(key) and not NET_VALUE.match(value):
                errors[key] = f"unable to parse network options: '{value}'"
            elif key == "name" and not _DNS_NAME.match(value):
                errors[key] = f"value '{value}' does not look like a valid DNS name"
            elif key in NUMERIC and not value.isdigit():
                errors[key] = f"type check ('integer') failed - got '{value}'"
            elif key == "boot" and not re.match(r"^order=[\w;]+$", value):
                errors[key] = f"invalid format - format error: {value}"
            elif not (DISK.match(key) or NET.match(key) or key in _SETTABLE | _CONTROL):
                errors[key] = _SCHEMA_ERROR
        if errors:
            raise ApiError(400, "Parameter verification failed.", errors)

    def _apply(self, vm: Vm, params: dict[str, str]) -> None:
        """Set config keys as ``qm set`` does: ``STORAGE:GiB`` allocates a volume."""
        for key in filter(None, params.get("delete", "").split(",")):
            vm.config.pop(key, None)
        for key, value in params.items():
            if key in _CONTROL:
                continue
            if DISK.match(key) and (match := NEW_VOLUME.match(value)):
                value = self._allocate(match, vm.vmid)
            vm.config[key] = value

    def _locked(self, vm: Vm, params: dict[str, str]) -> None:
        if "lock" in vm.config and params.get("skiplock") != "1":
            raise TaskFailed(f"VM is locked ({vm.config['lock']})")

    def _root_only(self, params: dict[str, str], user: str) -> None:
        if params.get("skiplock") == "1" and user != "root@pam":
            raise param_error("skiplock", "Only root may use this option.")

    def resource(self, vm: Vm) -> dict[str, Any]:
        cfg = vm.config
        disks = [v for k, v in cfg.items() if DISK.match(k) and not k.startswith("unused")]
        size = re.search(r"size=(\d+)([GM])", disks[0]) if disks else None
        running = vm.status == "running"
        entry = {
            "id": f"qemu/{vm.vmid}",
            "type": "qemu",
            "vmid": vm.vmid,
            "node": vm.node,
            "name": cfg.get("name", ""),
            "status": vm.status,
            "template": int(cfg.get("template", "0")),
            "maxcpu": int(cfg.get("cores", "1")) * int(cfg.get("sockets", "1")),
            "maxmem": int(cfg.get("memory", "512")) * MIB,
            "mem": int(cfg.get("memory", "512")) * MIB // 2 if running else 0,
            "maxdisk": int(size[1]) * (GIB if size[2] == "G" else MIB) if size else 0,
            "uptime": 42 if running else 0,
            "cpu": 0.01 if running else 0,
        }
        if f"vm:{vm.vmid}" in self.ha:
            entry["hastate"] = self.ha[f"vm:{vm.vmid}"]
        return entry

    def _storage_entry(self, sid: str) -> dict[str, Any]:
        s = self.storages[sid]
        total, free = int(s["total"]), self.free(sid)
        return dict(
            storage=sid,
            type=s["type"],
            content=s["content"],
            active=1,
            enabled=1,
            shared=s.get("cluster_wide", 0),
            total=total,
            used=total - free,
            avail=free,
        )

    # --- routes: cluster and nodes --------------------------------------------

    def get_version(self, params: dict[str, str], user: str) -> dict[str, str]:
        return {"version": self.version, "release": self.release, "repoid": "ec5affc9e41f1d79"}

    def get_nodes(self, params: dict[str, str], user: str) -> list[dict[str, Any]]:
        return [
            {"node": n, "id": f"node/{n}", "type": "node", "level": "", "uptime": 3600, **v}
            for n, v in self.nodes.items()
        ]

    def get_node_status(self, node: str, params: dict[str, str], user: str) -> dict[str, Any]:
        self._node(node)
        n = self.nodes[node]
        return {
            "cpuinfo": {"cpus": n["maxcpu"], "sockets": 1, "model": "Fake CPU"},
            "memory": {"total": n["maxmem"], "used": n["mem"], "free": n["maxmem"] - n["mem"]},
            "pveversion": f"pve-manager/{self.version}/ec5affc9e41f1d79",
            "kversion": "Linux 6.8.12-1-pve",
            "uptime": 3600,
        }

    def get_cluster_status(self, params: dict[str, str], user: str) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = [
            {
                "type": "cluster",
                "id": "cluster",
                "name": self.cluster,
                "nodes": len(self.nodes),
                "quorate": 1,
                "version": 2,
            }
        ]
        for i, (name, node) in enumerate(self.nodes.items(), 1):
            online = int(node["status"] == "online")
            entries.append(
                {
                    "type": "node",
                    "id": f"node/{name}",
                    "name": name,
                    "nodeid": i,
                    "online": online,
                    "ip": f"192.0.2.{i}",
                }
            )
        return entries

    def get_resources(self, params: dict[str, str], user: str) -> list[dict[str, Any]]:
        kind = params.get("type", "")
        found: list[dict[str, Any]] = []
        if kind in ("", "vm"):
            found += [self.resource(vm) for vm in self.vms.values()]
        if kind in ("", "node"):
            found += [
                {"id": f"node/{n}", "type": "node", "node": n, **v} for n, v in self.nodes.items()
            ]
        return found

    def get_nextid(self, params: dict[str, str], user: str) -> str:
        return str(next(i for i in range(100, 1_000_000) if i not in self.vms))

    def get_storage(self, node: str, params: dict[str, str], user: str) -> list[dict[str, Any]]:
        self._node(node)
        content = params.get("content")
        return [
            self._storage_entry(sid)
            for sid, s in self.storages.items()
            if not content or content in s["content"].split(",")
        ]

    def get_storage_status(self, node: str, sid: str, params: dict[str, str], user: str) -> Any:
        self._node(node)
        if sid not in self.storages:
            raise ApiError(500, f"storage '{sid}' does not exist")
        return self._storage_entry(sid)

    def get_network(self, node: str, params: dict[str, str], user: str) -> list[dict[str, Any]]:
        self._node(node)
        ifaces = [{"iface": "eno1", "type": "eth", "active": 1, "method": "manual"}]
        ifaces += [
            {
                "iface": b,
                "type": "bridge",
                "active": 1,
                "autostart": 1,
                "bridge_ports": "eno1" if b == "vmbr0" else "",
                "method": "manual",
            }
            for b in self.bridges
        ]
        wanted = {"any_bridge": "bridge"}.get(params.get("type", ""), params.get("type"))
        return [i for i in ifaces if not wanted or i["type"] == wanted]
