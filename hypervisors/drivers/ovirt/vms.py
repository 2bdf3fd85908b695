"""The oVirt driver's reading and running of VMs: health, inventory, lookups by
name, power, delete, live migration and HA."""

from __future__ import annotations

import operator
import re
from typing import Any

from ovirtsdk4 import types

from .. import base
from .convert import (
    _BLANK,
    _MIB,
    _POWER,
    _RUNNING,
    _S,
    _cpus,
    _host,
    _storage,
    _template,
    _version,
)
from .session import OvirtSession

_ID = re.compile(r"^[0-9A-Za-z-]{1,64}$")  # engine ids are UUIDs; never a path
_VM_NET = types.NetworkUsage.VM
_BY_NAME = operator.attrgetter("name")


def _name_query(name: str) -> str:
    """An engine search for ``name``; the caller still compares names exactly,
    since ``*`` is the search's wildcard."""
    return f'name="{name}"' if re.search(r"\s", name) else f"name={name}"


class OvirtVMs(OvirtSession):
    """oVirt VMs once they exist, and the engine's inventory."""

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

    # --- lookups ------------------------------------------------------------------

    def _named(self, service: Any, name: str, what: str) -> list[Any]:
        """The objects of a collection named exactly ``name``, found by search."""
        found = self._call(what, lambda: service.list(search=_name_query(name)))
        return [obj for obj in found if obj.name == name]

    def _the(self, service: Any, kind: str, name: str) -> Any:
        found = self._named(service, name, f"find {kind} {name!r}")
        if not found:
            raise base.NotFound(f"ovirt: {kind} {name!r} does not exist")
        return found[0]

    def _host(self, name: str) -> types.Host:
        return self._the(self._system().hosts_service(), "host", name)

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
