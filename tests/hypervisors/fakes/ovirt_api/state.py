"""The fake engine's inventory, its logins, its clock and its search (see the
package docstring). VM routes live in :mod:`.vms`."""

from __future__ import annotations

import fnmatch
import re
import secrets
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

GIB = 1024**3
MIB = 1024**2
BLANK_ID = "00000000-0000-0000-0000-000000000000"  # every engine's Blank template
_MAC_PREFIX = "56:6f:1a:2b"  # the engine's default MAC pool starts with 56:6f


def new_id() -> str:
    return str(uuid.uuid4())


class Fault(Exception):
    """What the engine answers as ``<fault><reason/><detail/></fault>``. Refused
    validations ("Cannot add VM. ...") are HTTP 409 with reason "Operation
    Failed"; malformed requests are 400 "Incomplete parameters"."""

    def __init__(self, code: int, detail: str, reason: str = "Operation Failed") -> None:
        super().__init__(detail)
        self.code, self.detail, self.reason = code, detail, reason


def cannot(action: str, why: str) -> Fault:
    """A failed validation, in the engine's own shape."""
    return Fault(409, f"[Cannot {action}. {why}]")


def missing(kind: str, key: str) -> Fault:
    return Fault(404, f"Entity not found: {kind}: {key}")


def incomplete(what: str) -> Fault:
    return Fault(400, f"{what} required for add", reason="Incomplete parameters")


BUSY = "Related operation is currently in progress. Please try again later."


@dataclass
class Cluster:
    name: str
    dc: str
    arch: str = "x86_64"
    id: str = field(default_factory=new_id)


@dataclass
class Host:
    name: str
    cluster: str
    cores: int = 8
    sockets: int = 2
    threads: int = 2
    memory: int = 256 * GIB
    free_memory: int = 200 * GIB  # what the scheduler may still place
    status: str = "up"
    id: str = field(default_factory=new_id)


@dataclass
class StorageDomain:
    name: str
    dc: str
    available: int
    used: int
    storage_type: str = "nfs"
    type: str = "data"
    id: str = field(default_factory=new_id)


@dataclass
class Network:
    name: str
    dc: str
    vm_network: bool = True
    id: str = field(default_factory=new_id)


@dataclass
class Profile:
    name: str
    network: str
    id: str = field(default_factory=new_id)


@dataclass
class Disk:
    name: str
    size: int
    domain: str
    status: str = "ok"
    format: str = "cow"
    sparse: bool = True
    ready_at: float = 0.0
    id: str = field(default_factory=new_id)


@dataclass
class Attachment:
    disk: str
    interface: str = "virtio"
    bootable: bool = False
    active: bool = True


@dataclass
class Nic:
    name: str
    mac: str
    profile: str = ""
    interface: str = "virtio"
    id: str = field(default_factory=new_id)


@dataclass
class Template:
    name: str
    cores: int = 1
    sockets: int = 1
    memory: int = GIB
    os_type: str = "other"
    boot: list[str] = field(default_factory=lambda: ["hd"])
    bios: str = "cluster_default"
    cluster: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    nics: list[Nic] = field(default_factory=list)
    version: int = 1
    version_name: str = ""
    base: str = ""
    id: str = field(default_factory=new_id)


@dataclass
class Vm:
    name: str
    cluster: str
    template: str
    cores: int = 1
    sockets: int = 1
    threads: int = 1
    memory: int = GIB
    max_memory: int = 4 * GIB
    os_type: str = "other"
    boot: list[str] = field(default_factory=lambda: ["hd"])
    bios: str = "cluster_default"
    ha: bool = False
    ha_priority: int = 0
    status: str = "down"
    host: str = ""
    pinned: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    nics: list[Nic] = field(default_factory=list)
    cloned: bool = False
    starts: int = 0
    resets: int = 0
    # (when, status, host) still to come: the engine's asynchronous side
    later: list[tuple[float, str, str]] = field(default_factory=list)
    removing_at: float = 0.0
    detach_on_remove: bool = False
    id: str = field(default_factory=new_id)


@dataclass
class Refusal:
    """A one-shot refusal a test plants: the next matching call gets this fault."""

    method: str
    path: re.Pattern[str]
    fault: Fault


_TERM = re.compile(r'^([\w.]+)\s*(!=|=)\s*(?:"([^"]*)"|(\S+))$')


def parse_search(query: str) -> list[tuple[str, bool, str]]:
    """``name=web* and status=up`` -> [(field, negated, pattern)]: the part of the
    engine's search language the driver uses."""
    terms = []
    for part in re.split(r"\s+and\s+", query.strip(), flags=re.I) if query.strip() else []:
        match = _TERM.match(part.strip())
        if not match:
            raise Fault(400, f"Search query '{query}' is invalid", reason="Invalid search")
        value = match[3] if match[3] is not None else match[4]
        terms.append((match[1].lower(), match[2] == "!=", value))
    return terms


class EngineState:
    """The engine's objects by id, its SSO tokens, and the request log."""

    def __init__(self, users: dict[str, str], version: str = "4.5.5", delay: float = 0.1) -> None:
        self.lock = threading.RLock()
        self.users = dict(users)
        self.version = version
        self.delay = delay  # how long the engine's asynchronous steps take
        self.tokens: dict[str, str] = {}
        self.revoked: list[str] = []
        self.requests: list[tuple[str, str]] = []  # (method, path?query): no bodies, no secrets
        self.bodies: list[str] = []  # API request bodies (XML: never a password)
        self.refusals: list[Refusal] = []
        self.datacenter = new_id()
        self.clusters: dict[str, Cluster] = {}
        self.hosts: dict[str, Host] = {}
        self.domains: dict[str, StorageDomain] = {}
        self.networks: dict[str, Network] = {}
        self.profiles: dict[str, Profile] = {}
        self.disks: dict[str, Disk] = {}
        self.templates: dict[str, Template] = {BLANK_ID: Template("Blank", id=BLANK_ID)}
        self.vms: dict[str, Vm] = {}
        self._next_mac = 0x10

    # --- setting up a lab ----------------------------------------------------------

    def add_cluster(self, name: str, arch: str = "x86_64") -> Cluster:
        cluster = Cluster(name, self.datacenter, arch)
        self.clusters[cluster.id] = cluster
        return cluster

    def add_host(self, name: str, cluster: Cluster, **fields: Any) -> Host:
        host = Host(name, cluster.id, **fields)
        self.hosts[host.id] = host
        return host

    def add_domain(self, name: str, available: int, used: int, **fields: Any) -> StorageDomain:
        domain = StorageDomain(name, self.datacenter, available, used, **fields)
        self.domains[domain.id] = domain
        return domain

    def add_network(self, name: str, vm_network: bool = True) -> Network:
        """A logical network and, as the engine makes it, its default vNIC profile."""
        network = Network(name, self.datacenter, vm_network)
        self.networks[network.id] = network
        if vm_network:
            profile = Profile(name, network.id)
            self.profiles[profile.id] = profile
        return network

    def profile_of(self, network: str) -> Profile:
        return next(p for p in self.profiles.values() if self.networks[p.network].name == network)

    def add_template(
        self,
        name: str,
        disks: Sequence[tuple[int, StorageDomain]] = (),
        nets: Sequence[str] = (),
        **fields,
    ) -> Template:
        template = Template(name, **fields)
        for i, (size, domain) in enumerate(disks):
            disk = Disk(f"{name}_Disk{i + 1}", size, domain.id)
            self.disks[disk.id] = disk
            template.attachments.append(Attachment(disk.id, bootable=i == 0))
        for i, net in enumerate(nets):
            template.nics.append(Nic(f"nic{i + 1}", "", self.profile_of(net).id))
        self.templates[template.id] = template
        return template

    def add_vm(
        self, name: str, cluster: Cluster, status: str = "down", host: Host | None = None, **fields
    ) -> Vm:
        vm = Vm(name, cluster.id, BLANK_ID, status=status, host=host.id if host else "", **fields)
        self.vms[vm.id] = vm
        return vm

    def refuse(self, method: str, path: str, fault: Fault) -> None:
        """Make the next ``method`` on a path matching the regex ``path`` fail."""
        self.refusals.append(Refusal(method, re.compile(path), fault))

    def check_refusals(self, method: str, path: str) -> None:
        for refusal in self.refusals:
            if refusal.method == method and refusal.path.search(path):
                self.refusals.remove(refusal)
                raise refusal.fault

    # --- SSO -----------------------------------------------------------------------

    def sso_token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """``POST /ovirt-engine/sso/oauth/token``: the OAuth password grant."""
        if form.get("grant_type") != "password":
            return 400, {"error_code": "unsupported_grant_type", "error": "Unsupported grant"}
        if "ovirt-app-api" not in form.get("scope", "").split():
            return 400, {"error_code": "invalid_scope", "error": "The scope is not allowed"}
        user, password = form.get("username", ""), form.get("password", "")
        if user not in self.users or not secrets.compare_digest(self.users[user], password):
            return 400, {
                "error_code": "access_denied",
                "error": f"Cannot authenticate user '{user}': The username or password is "
                "incorrect..",
            }
        token = secrets.token_urlsafe(48)
        self.tokens[token] = user
        expires = int((time.time() + 3600) * 1000)
        return 200, {
            "access_token": token,
            "scope": "ovirt-app-api",
            "exp": str(expires),
            "token_type": "bearer",
        }

    def sso_logout(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """``POST /ovirt-engine/services/sso-logout``: revoke a token."""
        token = form.get("token", "")
        if self.tokens.pop(token, None) is not None:
            self.revoked.append(token)
        return 200, {}

    def user_of(self, authorization: str) -> str | None:
        scheme, _, token = authorization.partition(" ")
        return self.tokens.get(token) if scheme.lower() == "bearer" else None

    # --- time and lookups -------------------------------------------------------------

    def tick(self) -> None:
        """Let the engine's asynchronous work (clones, starts, stops, migrations,
        disk creation, removals) catch up with the clock."""
        now = time.monotonic()
        for disk in self.disks.values():
            if disk.status == "locked" and disk.ready_at <= now:
                disk.status = "ok"
        for vm in list(self.vms.values()):
            while vm.later and vm.later[0][0] <= now:
                _, status, host = vm.later.pop(0)
                vm.status = status
                vm.host = "" if status == "down" else (host or vm.host)
            if vm.removing_at and vm.removing_at <= now:
                self.forget_vm(vm)

    def forget_vm(self, vm: Vm) -> None:
        if not vm.detach_on_remove:
            for attachment in vm.attachments:
                self.free_disk(attachment.disk)
        del self.vms[vm.id]

    def free_disk(self, disk_id: str) -> None:
        disk = self.disks.pop(disk_id, None)
        if disk is not None and disk.domain in self.domains:
            domain = self.domains[disk.domain]
            domain.available += disk.size
            domain.used -= disk.size

    def allocate(self, domain: StorageDomain, size: int, action: str) -> None:
        """Take ``size`` bytes of a data domain. The fake counts a thin disk's full
        size (a real engine counts what is written, and refuses only when the
        domain would fall under its free-space threshold)."""
        if domain.type != "data":
            raise cannot(action, f"Storage Domain {domain.name} cannot hold disk images")
        if size > domain.available:
            raise cannot(action, f"Low disk space on Storage Domain {domain.name}")
        domain.available -= size
        domain.used += size

    def mac_in_use(self, mac: str, except_nic: str = "") -> bool:
        return any(n.mac == mac and n.id != except_nic for vm in self.vms.values() for n in vm.nics)

    def new_mac(self) -> str:
        while True:
            self._next_mac += 1
            mac = f"{_MAC_PREFIX}:{self._next_mac >> 8 & 0xFF:02x}:{self._next_mac & 0xFF:02x}"
            if not self.mac_in_use(mac):
                return mac

    def find(self, table: dict[str, Any], kind: str, key_id: str | None, name: str | None) -> Any:
        """An object referenced by ``id`` or ``name``, as the engine resolves links."""
        if key_id:
            if key_id not in table:
                raise missing(kind, f"id={key_id}")
            return table[key_id]
        if name:
            for obj in table.values():
                if obj.name == name:
                    return obj
            raise missing(kind, f"name={name}")
        return None

    def search(self, objects: list[Any], query: str, fields: Any) -> list[Any]:
        """Filter by the ``search`` parameter; ``fields(obj)`` gives the searchable
        fields of one object (``*`` is the wildcard, as in the engine)."""
        terms = parse_search(query)
        found = []
        for obj in objects:
            values = fields(obj)
            for name, negated, pattern in terms:
                if name not in values:
                    raise Fault(400, f"Search query '{query}' is invalid", reason="Invalid search")
                hit = fnmatch.fnmatchcase(str(values[name]), pattern)
                if hit == negated:
                    break
            else:
                found.append(obj)
        return found
