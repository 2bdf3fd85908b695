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
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
from proxmoxer import ProxmoxAPI, ResourceException
from proxmoxer.core import AuthenticationError

from . import base
from .base import Capability as C

_MIB = 1024**2
_GIB = 1024**3
_DEFAULT_STORAGE = "local-lvm"  # the VM-disk storage of a default PVE install
_BUSES = {"virtio": 16, "scsi": 31, "sata": 6, "ide": 4}  # bus -> number of slots
_NIC_MODELS = {"virtio", "e1000", "rtl8139", "vmxnet3"}
_BOOT_DISK = re.compile(r"^(virtio|scsi|sata|ide)\d+$")
_NET_KEY = re.compile(r"^net(\d+)$")
_MAC = re.compile(r"=((?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2})")
# PVE answers most refusals with HTTP 500 and a message: the message tells
# a missing object or a full storage from a passing hitch.
_NOT_FOUND = re.compile(r"does not exist|no such|not found|unable to find|hostname lookup", re.I)
_QUOTA = re.compile(r"insufficient|not enough|no space left|quota|out of memory", re.I)
_BUSY = re.compile(r"is locked|got timeout|can't lock|try again|timed out", re.I)


def _classify(message: str, default: type[base.HypervisorError]) -> base.HypervisorError:
    if _NOT_FOUND.search(message):
        return base.NotFound(message)
    if _QUOTA.search(message):
        return base.QuotaExceeded(message)
    if _BUSY.search(message):
        return base.TransientError(message)
    return default(message)


def _api_error(exc: ResourceException, what: str) -> base.HypervisorError:
    detail = " ".join(str(exc.content or exc.status_message or "").split())
    if isinstance(exc.errors, dict) and exc.errors:
        detail += " (" + "; ".join(f"{k}: {str(v).strip()}" for k, v in exc.errors.items()) + ")"
    message = f"proxmox: {what}: {detail} (HTTP {exc.status_code})"
    if exc.status_code in (401, 403):
        return base.AuthenticationFailed(message)
    if exc.status_code == 400:
        return base.InvalidRequest(message)
    # 5xx (500 for most refusals, 595/596 for an unreachable cluster peer) is
    # worth retrying unless the message says otherwise; 501 is an unknown call.
    transient = exc.status_code >= 500 and exc.status_code != 501
    return _classify(message, base.TransientError if transient else base.PermanentError)


def _vmid(vm_id: str | int) -> int:
    text = str(vm_id).strip()
    if not text.isdigit():
        raise base.NotFound(f"proxmox: no VM {vm_id!r}: Proxmox VM ids are numbers")
    return int(text)


def _memory_mib(config: dict[str, Any]) -> int:
    # ``memory`` is a number, or since PVE 8.1 may read ``current=2048,...``.
    match = re.match(r"(?:current=)?(\d+)", str(config.get("memory", "0")))
    return int(match[1]) if match else 0


def _macs(config: dict[str, Any]) -> tuple[str, ...]:
    nets = sorted((int(m[1]), k) for k in config if (m := _NET_KEY.match(k)))
    found = (_MAC.search(str(config[key])) for _, key in nets)
    return tuple(m[1].lower() for m in found if m)


def _boot_disk(config: dict[str, Any]) -> str:
    """The disk a (template's) config boots from, or ""."""

    def usable(key: str) -> bool:
        return bool(_BOOT_DISK.match(key)) and key in config and "media=cdrom" not in config[key]

    order = str(config.get("boot", ""))
    keys = order[len("order=") :].split(";") if order.startswith("order=") else []
    keys.append(str(config.get("bootdisk", "")))  # the pre-6.2 form
    keys += sorted(config)
    return next((key for key in keys if usable(key)), "")


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class ProxmoxDriver(base.Driver):
    """Proxmox VE clusters and standalone nodes: QEMU VMs, templates, HA, live migration."""

    name = "proxmox"
    label = "Proxmox VE"
    capabilities: ClassVar[frozenset[C]] = frozenset(
        {C.HEALTH, C.INVENTORY, C.CREATE_VM, C.CLONE_TEMPLATE, C.POWER, C.DELETE_VM}
        | {C.TEMPLATE_SYNC, C.LIVE_MIGRATE, C.HA}
    )
    options: ClassVar[dict[str, str]] = {
        "node": "Node new VMs go to unless the request names a host (default: first online)",
        "storage": f"Storage for new disks and clones (default: {_DEFAULT_STORAGE}; "
        "clones: the template's)",
    }

    def __init__(self, connection: base.Connection) -> None:
        super().__init__(connection)
        self._api: ProxmoxAPI | None = None
        self._ca_cleanup: weakref.finalize | None = None

    # --- connection ------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        """Belt and braces: no library message may carry the password or token."""
        for secret in (self.connection.password, self.connection.token):
            if secret:
                text = text.replace(secret, "[redacted]")
        return text

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """Turn proxmoxer's and requests' exceptions into base.py's. ``from None``
        drops the original, whose text or traceback might hold a secret."""
        where = self.connection.endpoint
        try:
            yield
        except base.HypervisorError:
            raise
        except ResourceException as exc:
            raise _api_error(exc, self._scrub(what)) from None
        except AuthenticationError as exc:
            code = re.search(r"code: (\d+)", str(exc))
            status = int(code[1]) if code else 0
            message = f"proxmox: {self.connection.username} could not log in to {where}"
            if status in (401, 403):
                raise base.AuthenticationFailed(f"{message} (HTTP {status})") from None
            raise base.TransientError(f"{message}: HTTP {status or 'error'}") from None
        except requests.exceptions.SSLError as exc:
            reason = re.search(r"certificate verify failed[^'\")]*", str(exc))
            detail = reason[0] if reason else self._scrub(str(exc))[:300]
            raise base.TLSFailed(f"proxmox: TLS with {where} failed: {detail}") from None
        except requests.exceptions.RequestException as exc:
            # Refused, reset, DNS failure, connect or read timeout.
            detail = self._scrub(str(exc))[:300]
            raise base.TransientError(f"proxmox: {what}: {where} unreachable: {detail}") from None
        except ValueError as exc:
            # http.client refuses header values with control characters and
            # quotes the value in its message: never pass that text on.
            raise base.InvalidRequest(f"proxmox: {what}: {self._scrub(str(exc))[:200]}") from None

    def _verify(self) -> bool | str:
        """requests' ``verify``: off, the system CAs, or a private file holding ca_pem."""
        if not self.connection.verify_tls:
            return False
        if not self.connection.ca_pem:
            return True
        fd, path = tempfile.mkstemp(prefix="pureboot-pve-ca-", suffix=".pem")  # mode 0600
        with os.fdopen(fd, "w") as file:
            file.write(self.connection.ca_pem)
        # Deleted on close(), or when the driver is collected if nobody closes it.
        self._ca_cleanup = weakref.finalize(self, _remove, path)
        return path

    def _open(self) -> ProxmoxAPI:
        if self._api is not None:
            return self._api
        c = self.connection
        parts = urlsplit(c.endpoint if "://" in c.endpoint else f"https://{c.endpoint}")
        if parts.scheme != "https" or not parts.hostname:
            raise base.InvalidRequest(
                f"proxmox: endpoint {c.endpoint!r}: use https://HOST[:PORT] (PVE speaks only HTTPS)"
            )
        if any(ch.isspace() or ord(ch) < 32 for ch in c.username + c.token):
            raise base.AuthenticationFailed(
                "proxmox: the username or API token holds characters HTTP cannot carry"
            )
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        kwargs: dict[str, Any] = {
            "host": host,
            "port": parts.port or 8006,
            "path_prefix": parts.path.strip("/") or None,
            "backend": "https",
            "service": "PVE",
            "timeout": c.timeout,
        }
        if c.token:
            user, bang, token_name = c.username.partition("!")
            if not (user and bang and token_name):
                raise base.AuthenticationFailed(
                    "proxmox: an API token needs the username USER@REALM!TOKENID"
                )
            kwargs.update(user=user, token_name=token_name, token_value=c.token)
        elif c.password:
            kwargs.update(user=c.username, password=c.password)
        else:
            raise base.AuthenticationFailed("proxmox: the credential has no password or token")
        kwargs["verify_ssl"] = self._verify()
        with self._calling(f"log in to {c.endpoint}"):
            # With a password this logs in (POST /access/ticket) at once.
            self._api = ProxmoxAPI(**kwargs)
        return self._api

    def close(self) -> None:
        if self._api is not None:
            # proxmoxer has no close(); its requests session is in _store.
            session = getattr(self._api, "_store", {}).get("session")
            if session is not None:
                session.close()
            self._api = None
        if self._ca_cleanup is not None:
            self._ca_cleanup()

    def _call(self, method: str, path: str, what: str, **params: Any) -> Any:
        api = self._open()
        with self._calling(what):
            return getattr(api(path), method)(**params)

    def _get(self, path: str, what: str, **params: Any) -> Any:
        return self._call("get", path, what, **params)

    def _wait(self, upid: Any, what: str) -> None:
        """Wait for a task within the connection timeout; raise if it failed."""
        if not (isinstance(upid, str) and upid.startswith("UPID:")):
            return  # a synchronous answer: done already
        node, kind = upid.split(":")[1], upid.split(":")[5]
        deadline = time.monotonic() + self.connection.timeout
        delay = 0.05
        while True:
            status = self._get(f"nodes/{node}/tasks/{upid}/status", f"{what}: task status")
            if status.get("status") != "running":
                break
            if time.monotonic() + delay > deadline:
                raise base.TransientError(
                    f"proxmox: {what}: task {kind} {upid} still running after "
                    f"{self.connection.timeout:g} s"
                )
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        exit_status = str(status.get("exitstatus", ""))
        # "WARNINGS: n" is a task that succeeded with warnings in its log.
        if exit_status != "OK" and not exit_status.startswith("WARNINGS"):
            message = f"proxmox: {what}: task {kind} {upid} failed: {self._scrub(exit_status)}"
            raise _classify(message, base.PermanentError)

    def _run(self, method: str, path: str, what: str, **params: Any) -> None:
        self._wait(self._call(method, path, what, **params), what)

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
