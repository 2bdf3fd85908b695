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
"""

from __future__ import annotations

import io
import json
import math
import operator
import os
import re
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar
from urllib.parse import urlencode, urlsplit

import ovirtsdk4 as sdk
import pycurl
from ovirtsdk4 import types

from . import base
from .base import Capability as C

_MIB = 1024**2
_BLANK = "00000000-0000-0000-0000-000000000000"
_ID = re.compile(r"^[0-9A-Za-z-]{1,64}$")  # engine ids are UUIDs; never a path
_UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_S = types.VmStatus
_VM_NET = types.NetworkUsage.VM
_BY_NAME = operator.attrgetter("name")
_RUNNING = {_S(s) for s in "up powering_up wait_for_launch reboot_in_progress migrating".split()}
_RUNNING |= {_S.POWERING_DOWN, _S.SAVING_STATE, _S.RESTORING_STATE}
# A suspended (hibernated) VM resumes where it was: paused, not stopped.
_POWER = {_S.DOWN: base.PowerState.STOPPED, _S.PAUSED: base.PowerState.PAUSED}
_POWER |= {_S.SUSPENDED: base.PowerState.PAUSED} | dict.fromkeys(_RUNNING, base.PowerState.RUNNING)
_NIC_MODELS = {m: types.NicInterface(m) for m in ("virtio", "e1000", "e1000e", "rtl8139")}
_DISK_BUSES = {b: types.DiskInterface(b) for b in ("virtio", "virtio_scsi", "sata", "ide")}
_DISK_BUSES["scsi"] = types.DiskInterface.VIRTIO_SCSI
# libcurl's error numbers for a TLS failure (certificate, handshake, CA file).
_CURL_TLS = {35, 51, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91}
# The SDK reports curl failures as text: "(7, 'Failed to connect ...')" or
# "[(<pycurl.Curl ...>, 60, 'SSL certificate problem: ...')]".
_CURL_IN_TEXT = re.compile(r"(?:\(|, )(\d+), (['\"])(.*?)\2\)")
# The engine refuses with 409 "[Cannot ... . <why>]": the why tells a full
# domain or a busy VM from a refusal that will not change.
_QUOTA = re.compile(r"low disk space|not enough|no host that satisfies|quota|insufficient", re.I)
_BUSY = re.compile(r"in progress|try again|is locked|being (created|removed)", re.I)
_NOT_FOUND = re.compile(r"entity not found|does not exist|doesn't exist|not found", re.I)


def _classify(message: str, default: type[base.HypervisorError]) -> base.HypervisorError:
    if _QUOTA.search(message):
        return base.QuotaExceeded(message)
    if _BUSY.search(message):
        return base.TransientError(message)
    if _NOT_FOUND.search(message):
        return base.NotFound(message)
    return default(message)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _cpus(cpu: types.Cpu | None) -> int:
    topology = cpu.topology if cpu else None
    if topology is None:
        return 0
    return (topology.cores or 1) * (topology.sockets or 1) * (topology.threads or 1)


def _host(h: types.Host, clusters: dict[str, str]) -> base.Host:
    memory = h.memory or 0
    # "Used" is what the scheduler can no longer place on the host.
    used = max(0, memory - (h.max_scheduling_memory or 0))
    cluster = clusters.get(h.cluster.id, "") if h.cluster else ""
    state = h.status.value if h.status else ""
    return base.Host(h.name, cluster, _cpus(h.cpu), memory // _MIB, used // _MIB, state)


def _storage(d: types.StorageDomain) -> base.Storage:
    kind = d.storage.type.value if d.storage and d.storage.type else ""
    return base.Storage(d.name, (d.available or 0) + (d.used or 0), d.available or 0, kind)


def _template(t: types.Template) -> base.Template:
    disks = sum(a.disk.provisioned_size or 0 for a in t.disk_attachments or () if a.disk)
    os_type = (t.os.type or "") if t.os else ""
    return base.Template(t.id, t.name, _cpus(t.cpu), (t.memory or 0) // _MIB, disks, os_type)


def _version(template: types.Template) -> int:
    return (template.version.version_number or 0) if template.version else 0


def _in_dc(ref: types.DataCenter | None, dc: str | None) -> bool:
    """Whether an object's data center is ``dc`` (or either is not told)."""
    return dc is None or ref is None or ref.id == dc


def _name_query(name: str) -> str:
    """An engine search for ``name``; the caller still compares names exactly,
    since ``*`` is the search's wildcard."""
    return f'name="{name}"' if re.search(r"\s", name) else f"name={name}"


class OvirtDriver(base.Driver):
    """oVirt / RHV engines: VMs from templates or blank, power, live migration, HA."""

    name = "ovirt"
    label = "oVirt/RHV"
    capabilities: ClassVar[frozenset[C]] = frozenset(
        {C.HEALTH, C.INVENTORY, C.CREATE_VM, C.CLONE_TEMPLATE, C.POWER, C.DELETE_VM}
        | {C.TEMPLATE_SYNC, C.LIVE_MIGRATE, C.HA}
    )
    options: ClassVar[dict[str, str]] = {
        "cluster": "Cluster new VMs go to unless the request names one (default: the only one)",
        "storage_domain": "Data domain for new blank disks unless the disk names one "
        "(default: the one with the most free space)",
    }

    def __init__(self, connection: base.Connection) -> None:
        super().__init__(connection)
        self._sdk: sdk.Connection | None = None
        self._ca_file: str | None = None
        self._ca_cleanup: weakref.finalize | None = None
        self._tokens: list[str] = []  # SSO tokens this driver was given: redacted everywhere

    # --- connection ------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        """Belt and braces: no library message may carry the password or a token."""
        for secret in (self.connection.password, self.connection.token, *self._tokens):
            if secret:
                text = text.replace(secret, "[redacted]")
        return " ".join(text.split())[:400]

    def _urls(self) -> tuple[str, str]:
        """(origin, API URL) from the endpoint."""
        c = self.connection
        parts = urlsplit(c.endpoint if "://" in c.endpoint else f"https://{c.endpoint}")
        if parts.scheme != "https" or not parts.hostname:
            raise base.InvalidRequest(
                f"ovirt: endpoint {c.endpoint!r}: use https://ENGINE/ovirt-engine/api"
            )
        origin = f"https://{parts.netloc}"
        return origin, origin + (parts.path.rstrip("/") or "/ovirt-engine/api")

    def _curl_failure(self, errno: int, text: str, what: str) -> base.HypervisorError:
        where = self.connection.endpoint
        detail = self._scrub(text)
        if errno in _CURL_TLS:
            return base.TLSFailed(f"ovirt: TLS with {where} failed: {detail}")
        # Refused, reset, name not resolved, timed out.
        return base.TransientError(f"ovirt: {what}: {where} unreachable: {detail} (curl {errno})")

    def _sdk_error(self, exc: sdk.Error, what: str) -> base.HypervisorError:
        fault = exc.fault
        if fault is not None and (fault.reason or fault.detail):
            detail = ": ".join(str(x) for x in (fault.reason, fault.detail) if x)
        else:
            detail = str(exc)
        code = exc.code
        message = f"ovirt: {what}: {self._scrub(detail)}" + (f" (HTTP {code})" if code else "")
        if not code:
            curl = _CURL_IN_TEXT.search(str(exc))
            if curl:
                return self._curl_failure(int(curl[1]), curl[3], what)
            if isinstance(exc, sdk.AuthError):
                return base.AuthenticationFailed(message)
            # E.g. an HTML page where XML was due: not an engine API at that path.
            return base.PermanentError(message)
        if code in (401, 403):
            return base.AuthenticationFailed(message)
        if code == 404:
            return base.NotFound(message)
        if code >= 500 or code in (408, 429):
            return _classify(message, base.TransientError)
        if code == 400:
            return _classify(message, base.InvalidRequest)
        return _classify(message, base.PermanentError)

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """Turn the SDK's and pycurl's exceptions into base.py's. ``from None``
        drops the original, whose text or traceback might hold a secret."""
        try:
            yield
        except base.HypervisorError:
            raise
        except sdk.Error as exc:
            raise self._sdk_error(exc, what) from None
        except pycurl.error as exc:
            errno, text = (exc.args + (0, ""))[:2]
            raise self._curl_failure(int(errno), str(text), what) from None

    def _tls(self, curl: pycurl.Curl) -> None:
        verify = self.connection.verify_tls
        curl.setopt(pycurl.SSL_VERIFYPEER, 1 if verify else 0)
        curl.setopt(pycurl.SSL_VERIFYHOST, 2 if verify else 0)
        if verify and self._ca_path():
            curl.setopt(pycurl.CAINFO, self._ca_path())

    def _ca_path(self) -> str | None:
        """A private file holding ca_pem (libcurl reads CAs from files), or None
        for the system's CAs."""
        if not self.connection.verify_tls or not self.connection.ca_pem:
            return None
        if self._ca_file is None:
            fd, path = tempfile.mkstemp(prefix="pureboot-ovirt-ca-", suffix=".pem")  # 0600
            with os.fdopen(fd, "w") as file:
                file.write(self.connection.ca_pem)
            # Deleted on close(), or when the driver is collected if nobody closes it.
            self._ca_cleanup = weakref.finalize(self, _remove, path)
            self._ca_file = path
        return self._ca_file

    def _sso(self, url: str, form: dict[str, str], what: str) -> dict[str, Any]:
        """One SSO call (form in, JSON out), within the connection timeout."""
        curl = pycurl.Curl()
        body = io.BytesIO()
        try:
            curl.setopt(pycurl.URL, url)
            curl.setopt(pycurl.POST, 1)
            curl.setopt(pycurl.COPYPOSTFIELDS, urlencode(form))
            curl.setopt(pycurl.HTTPHEADER, ["Accept: application/json"])
            curl.setopt(pycurl.TIMEOUT_MS, max(1, int(self.connection.timeout * 1000)))
            curl.setopt(pycurl.NOSIGNAL, 1)
            curl.setopt(pycurl.WRITEDATA, body)
            self._tls(curl)
            with self._calling(what):
                curl.perform()
            status = int(curl.getinfo(pycurl.RESPONSE_CODE))
            content_type = str(curl.getinfo(pycurl.CONTENT_TYPE) or "")
        finally:
            curl.close()
        if "json" not in content_type:
            message = f"ovirt: {what}: HTTP {status} ({content_type or 'no content type'})"
            if status >= 500:
                raise base.TransientError(message)
            raise base.InvalidRequest(f"{message}: is {url} an oVirt engine's SSO?")
        try:
            answer = json.loads(body.getvalue().decode())
        except ValueError:
            raise base.TransientError(f"ovirt: {what}: the answer is not JSON") from None
        if isinstance(answer, list):
            answer = answer[0] if answer else {}
        if isinstance(answer, dict) and "error" in answer:
            # OpenID errors have error/error_description, the engine's error_code/error.
            code = answer.get("error_code") or answer.get("error")
            text = answer.get("error_description") or answer.get("error")
            message = f"ovirt: {what}: {self._scrub(f'{code}: {text}')} (HTTP {status})"
            if status >= 500:
                raise base.TransientError(message)
            raise base.AuthenticationFailed(message)
        return answer if isinstance(answer, dict) else {}

    def _open(self) -> sdk.Connection:
        if self._sdk is not None:
            return self._sdk
        c = self.connection
        origin, api = self._urls()
        if not c.username or not c.password:
            raise base.AuthenticationFailed("ovirt: the credential needs a username and password")
        form = {
            "grant_type": "password",
            "scope": "ovirt-app-api",
            "username": c.username,
            "password": c.password,
        }
        login = f"log in to {origin} as {c.username}"
        token = self._sso(f"{origin}/ovirt-engine/sso/oauth/token", form, login).get("access_token")
        if not isinstance(token, str) or not token:
            raise base.TransientError(f"ovirt: {login}: the SSO answer holds no access token")
        self._tokens.append(token)
        with self._calling(f"connect to {api}"):
            self._sdk = sdk.Connection(
                url=api,
                # Kept for the SDK's one retry when the engine drops the token.
                username=c.username,
                password=c.password,
                token=token,
                insecure=not c.verify_tls,
                ca_file=self._ca_path(),
                timeout=max(1, math.ceil(c.timeout)),  # whole seconds, 0 would be forever
                sso_url=f"{origin}/ovirt-engine/sso/oauth/token",
                sso_revoke_url=f"{origin}/ovirt-engine/services/sso-logout",
            )
        return self._sdk

    def close(self) -> None:
        """Revoke the SSO token (within the timeout), drop the connection and the CA file."""
        if self._sdk is not None:
            connection, self._sdk = self._sdk, None
            try:
                # The current token (the SDK renews it once if the engine drops it);
                # revoked here rather than by the SDK, whose revoke has no timeout.
                token = connection.authenticate()
                connection.close(logout=False)
            except Exception:  # noqa: BLE001 - close() never raises
                token = None
            if token:
                try:
                    origin, _api = self._urls()
                    form = {"scope": "ovirt-app-api", "token": token}
                    self._sso(f"{origin}/ovirt-engine/services/sso-logout", form, "log out")
                except base.HypervisorError:
                    pass  # the token expires on its own
        if self._ca_cleanup is not None:
            self._ca_cleanup()
            self._ca_file = self._ca_cleanup = None

    def _system(self) -> Any:
        return self._open().system_service()

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        self._open()
        with self._calling(what):
            return call()

    def _until(self, what: str, done: Callable[[], bool]) -> None:
        """Poll ``done`` until it holds, within the connection timeout."""
        deadline = time.monotonic() + self.connection.timeout
        delay = 0.05
        while not done():
            if time.monotonic() + delay > deadline:
                raise base.TransientError(
                    f"ovirt: {what}: not done after {self.connection.timeout:g} s"
                )
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    # --- health and inventory ----------------------------------------------------

    def health(self) -> base.Health:
        """Log in through SSO and read the engine's product name and version."""
        api = self._call("read the engine's version", lambda: self._system().get())
        info = api.product_info
        version = info.version if info else None
        text = ""
        if version is not None:
            parts = (version.major, version.minor, version.build)
            text = version.full_version or ".".join(str(p) for p in parts if p is not None)
        return base.Health(ok=True, version=text, message=(info.name or "") if info else "")

    def inventory(self) -> base.Inventory:
        """Hosts, clusters, data domains, VM networks, templates and VMs."""
        system = self._system()
        what = "read the inventory"
        clusters = self._call(what, lambda: system.clusters_service().list())
        hosts = self._call(what, lambda: system.hosts_service().list())
        domains = self._call(what, lambda: system.storage_domains_service().list())
        networks = self._call(what, lambda: system.networks_service().list())
        vms = self._call(what, lambda: system.vms_service().list(follow="nics"))
        cluster_names = {c.id: c.name for c in clusters}
        # Only VM networks (usage "vm") carry vNICs; ISO and export domains hold no disks.
        usable = {n.name for n in networks if n.usages is None or _VM_NET in n.usages}
        data = [d for d in domains if d.type == types.StorageDomainType.DATA]
        host_names = {h.id: h.name for h in hosts}
        return base.Inventory(
            hosts=tuple(_host(h, cluster_names) for h in sorted(hosts, key=_BY_NAME)),
            clusters=tuple(sorted(cluster_names.values())),
            storage=tuple(_storage(d) for d in sorted(data, key=_BY_NAME)),
            networks=tuple(sorted(usable)),
            templates=self.templates(),
            vms=tuple(self._vm(v, host_names) for v in sorted(vms, key=_BY_NAME)),
        )

    def templates(self) -> tuple[base.Template, ...]:
        """The engine's templates but Blank, with their disks' provisioned sizes."""
        service = self._system().templates_service()
        found = self._call("list templates", lambda: service.list(follow="disk_attachments.disk"))
        found.sort(key=lambda t: (t.name, _version(t), t.id))
        return tuple(_template(t) for t in found if t.id != _BLANK)

    def _vm(self, vm: types.Vm, host_names: dict[str, str]) -> base.VM:
        nics = sorted(vm.nics or (), key=lambda n: n.name or "")
        return base.VM(
            id=vm.id,
            name=vm.name,
            power=_POWER.get(vm.status, base.PowerState.UNKNOWN),
            macs=tuple(n.mac.address.lower() for n in nics if n.mac and n.mac.address),
            cpus=_cpus(vm.cpu),
            memory_mib=(vm.memory or 0) // _MIB,
            host=host_names.get(vm.host.id, vm.host.id) if vm.host else "",
            ha=bool(vm.high_availability and vm.high_availability.enabled),
        )

    def _service(self, vm_id: str) -> Any:
        if not _ID.match(str(vm_id)):
            raise base.NotFound(f"ovirt: no VM {vm_id!r}: oVirt VM ids are UUIDs")
        return self._system().vms_service().vm_service(str(vm_id))

    def _get(self, vm_id: str, follow: str | None = None) -> types.Vm:
        service = self._service(vm_id)
        return self._call(f"read VM {vm_id}", lambda: service.get(follow=follow))

    def get_vm(self, vm_id: str) -> base.VM:
        """The VM with this UUID; :class:`NotFound` if it is gone."""
        vm = self._get(vm_id, follow="nics")
        names = {}
        if vm.host is not None:
            host = self._system().hosts_service().host_service(vm.host.id)
            names[vm.host.id] = self._call(f"read VM {vm_id}'s host", host.get).name
        return self._vm(vm, names)

    # --- create --------------------------------------------------------------------

    def _named(self, service: Any, name: str, what: str) -> list[Any]:
        """The objects of a collection named exactly ``name``, found by search."""
        found = self._call(what, lambda: service.list(search=_name_query(name)))
        return [obj for obj in found if obj.name == name]

    def _the(self, service: Any, kind: str, name: str) -> Any:
        found = self._named(service, name, f"find {kind} {name!r}")
        if not found:
            raise base.NotFound(f"ovirt: {kind} {name!r} does not exist")
        return found[0]

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

    def _host(self, name: str) -> types.Host:
        return self._the(self._system().hosts_service(), "host", name)

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

    # --- power, delete, migrate, HA ----------------------------------------------

    def _wait_status(self, vm_id: str, wanted: set[Any], what: str) -> types.Vm:
        seen: list[types.Vm] = []

        def done() -> bool:
            seen.append(self._get(vm_id))
            return seen[-1].status in wanted

        self._until(what, done)
        return seen[-1]

    def power_state(self, vm_id: str) -> base.PowerState:
        """running (also while starting, migrating or stopping), stopped, paused
        (also suspended), or unknown (locked, not responding)."""
        return _POWER.get(self._get(vm_id).status, base.PowerState.UNKNOWN)

    def power(self, vm_id: str, action: base.PowerAction) -> None:
        """Start (no-op if running), hard stop (no-op if down), or reset (start if
        down); each waits until the VM is up or down."""
        action = base.PowerAction(action)
        status = self._get(vm_id).status
        service = self._service(vm_id)
        if action == base.PowerAction.OFF:
            if status != _S.DOWN:
                self._stop(vm_id)
            return
        if status == _S.POWERING_DOWN:  # finishing a stop: let it, then act
            status = self._wait_status(vm_id, {_S.DOWN}, f"wait for VM {vm_id} to stop").status
        if status in _RUNNING and action == base.PowerAction.ON:
            return
        if status in _RUNNING:
            self._call(f"reset VM {vm_id}", service.reset)
        else:
            self._call(f"start VM {vm_id}", service.start)
        self._wait_status(vm_id, {_S.UP}, f"wait for VM {vm_id} to come up")

    def _stop(self, vm_id: str) -> None:
        self._call(f"stop VM {vm_id}", self._service(vm_id).stop)
        self._wait_status(vm_id, {_S.DOWN}, f"wait for VM {vm_id} to stop")

    def _remove(self, vm_id: str) -> None:
        """Stop, remove with its disks, and wait until the engine has let it go."""
        vm = self._wait_status(vm_id, set(_S) - {_S.IMAGE_LOCKED}, f"wait for VM {vm_id}")
        if vm.status != _S.DOWN:
            self._stop(vm_id)
        self._call(f"delete VM {vm_id}", lambda: self._service(vm_id).remove(detach_only=False))

        def gone() -> bool:
            try:
                self._get(vm_id)
            except base.NotFound:
                return True
            return False

        self._until(f"wait for VM {vm_id} to be deleted", gone)

    def delete_vm(self, vm_id: str) -> None:
        """Stop the VM and delete it with its disks; :class:`NotFound` if it is gone."""
        self._remove(vm_id)

    def migrate_vm(self, vm_id: str, host: str) -> None:
        """Live-migrate a running VM to host ``host`` of its cluster; no-op if there."""
        vm = self._get(vm_id)
        target = self._host(host)
        if vm.host is not None and vm.host.id == target.id:
            return
        if vm.status != _S.UP:
            raise base.InvalidRequest(f"ovirt: VM {vm_id} is {vm.status.value}, not up")
        service = self._service(vm_id)
        self._call(
            f"migrate VM {vm_id} to {host}",
            lambda: service.migrate(host=types.Host(id=target.id)),
        )

        seen: set[Any] = set()

        def arrived() -> bool:
            now = self._get(vm_id)
            seen.add(now.status)
            here = now.host is not None and now.host.id == target.id
            if now.status == _S.UP and not here and _S.MIGRATING in seen:
                raise base.PermanentError(f"ovirt: VM {vm_id} did not migrate to {host}")
            return now.status == _S.UP and here

        self._until(f"wait for VM {vm_id} to reach {host}", arrived)

    def set_ha(self, vm_id: str, enabled: bool) -> None:
        """Turn the VM's high availability (restart elsewhere if its host fails) on or off."""
        vm = self._get(vm_id)
        if bool(vm.high_availability and vm.high_availability.enabled) == enabled:
            return
        body = types.Vm(high_availability=types.HighAvailability(enabled=enabled))
        service = self._service(vm_id)
        self._call(f"set HA of VM {vm_id}", lambda: service.update(body))
