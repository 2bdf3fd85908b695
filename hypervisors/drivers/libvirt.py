"""KVM/QEMU (and any libvirt hypervisor) through ``libvirt-python``.

``endpoint`` is a libvirt connection URI: ``qemu:///system``,
``qemu+ssh://user@host/system``, ``qemu+tls://host/system``, an embedded
driver ``qemu:///embed?root=DIR``, or libvirt's own ``test:///default``,
which lets anyone try PureBoot's hypervisor features without a hypervisor.
A username and password, when the credential has them, answer libvirt's
authentication callback (SASL on ``qemu+tcp``/``qemu+tls``); SSH logins use
the SSH agent or keys of the user PureBoot runs as, as ``virsh`` does.

libvirt has no templates of its own. PureBoot's are the volumes of one
storage pool, named by the ``template_pool`` option; cloning one copies it
into a new volume (``virStorageVolCreateXMLFrom``) that becomes the VM's
first disk. The volumes PureBoot makes for a VM are recorded in the domain's
``<metadata>``, so deleting the VM removes exactly those.

Options: ``template_pool``, ``storage_pool`` (default ``default``, where new
disks go unless a disk names its pool), ``domain_type`` (default: ``kvm`` if
the host offers it, else ``qemu``; the test driver's ``test``), ``machine``.
NICs name a libvirt network, or ``bridge:NAME`` for a host bridge, or
``ethernet:TAP`` for a tap device made beforehand.
"""

from __future__ import annotations

import re
import threading
import xml.etree.ElementTree as ET
from typing import Any, ClassVar
from xml.sax.saxutils import quoteattr

import libvirt

from . import base
from .base import Capability as C

_NS = "https://pureboot.dev/xmlns/libvirt/vm/1"
_VOLUME_FORMAT = "qcow2"
_STATES = {
    libvirt.VIR_DOMAIN_RUNNING: base.PowerState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: base.PowerState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: base.PowerState.PAUSED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: base.PowerState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: base.PowerState.RUNNING,
    libvirt.VIR_DOMAIN_SHUTOFF: base.PowerState.STOPPED,
    libvirt.VIR_DOMAIN_CRASHED: base.PowerState.STOPPED,
}
_NOT_FOUND = {
    libvirt.VIR_ERR_NO_DOMAIN,
    libvirt.VIR_ERR_NO_STORAGE_POOL,
    libvirt.VIR_ERR_NO_STORAGE_VOL,
    libvirt.VIR_ERR_NO_NETWORK,
}
_TRANSIENT = {
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_SYSTEM_ERROR,
    libvirt.VIR_ERR_OPERATION_TIMEOUT,
    libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
}
# libvirt reports its own errors to stderr unless a handler takes them.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def _error(exc: libvirt.libvirtError, what: str) -> base.HypervisorError:
    code = exc.get_error_code()
    message = f"{what}: {exc.get_error_message() or exc}"
    if code in _NOT_FOUND:
        return base.NotFound(message)
    if code == libvirt.VIR_ERR_AUTH_FAILED:
        return base.AuthenticationFailed(message)
    if "certificate" in message.lower() and code in _TRANSIENT | {libvirt.VIR_ERR_INTERNAL_ERROR}:
        return base.TLSFailed(message)
    if code in _TRANSIENT:
        return base.TransientError(message)
    if code in (libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_XML_ERROR):
        return base.InvalidRequest(message)
    return base.PermanentError(message)


class LibvirtDriver(base.Driver):
    """libvirt: KVM/QEMU hosts, or the test driver."""

    name = "libvirt"
    label = "KVM/libvirt"
    capabilities: ClassVar[frozenset[C]] = frozenset(
        {C.HEALTH, C.INVENTORY, C.CREATE_VM, C.CLONE_TEMPLATE, C.POWER, C.DELETE_VM}
        | {C.TEMPLATE_SYNC}
    )

    honours: ClassVar[frozenset[str]] = frozenset({"nic_model"})
    options: ClassVar[dict[str, str]] = {
        "template_pool": "Storage pool whose volumes are the templates",
        "storage_pool": "Storage pool for new disks (default: default)",
        "domain_type": "kvm, qemu or test (default: kvm if the host offers it, else qemu)",
        "machine": "QEMU machine type, e.g. q35 (default: the host's)",
        "host_networks": "Comma-separated bridge:NAME / ethernet:TAP a VM may use besides "
        "libvirt's networks (none unless listed)",
        "console_log_dir": "A directory on the host: each VM's serial console is written to "
        "<dir>/<vm name>.log (default: a pty)",
    }

    def __init__(self, connection: base.Connection) -> None:
        super().__init__(connection)
        self._conn: libvirt.virConnect | None = None

    # --- connection ---------------------------------------------------------

    def _open(self) -> libvirt.virConnect:
        if self._conn is not None:
            return self._conn
        uri = self.connection.endpoint
        auth = [
            [libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE],
            self._answer,
            None,
        ]
        result: dict[str, Any] = {}

        def connect() -> None:
            try:
                result["conn"] = libvirt.openAuth(uri, auth, 0)
            except libvirt.libvirtError as exc:
                result["error"] = exc

        # libvirt has no connect timeout of its own (an SSH or TLS handshake
        # to a dead host can hang): the attempt runs in a thread and is given up.
        thread = threading.Thread(target=connect, daemon=True, name="libvirt-connect")
        thread.start()
        thread.join(self.connection.timeout)
        if thread.is_alive():
            raise base.TransientError(
                f"libvirt: no connection to {uri} within {self.connection.timeout:g} s"
            )
        if "error" in result:
            raise _error(result["error"], f"libvirt: cannot connect to {uri}")
        conn = result["conn"]
        if not uri.startswith("test:") and "+" in uri.split(":", 1)[0]:
            # Remote connections notice a dead peer instead of blocking forever.
            conn.setKeepAlive(5, 3)
        self._conn = conn
        return conn

    def _answer(self, credentials: list, _data: object) -> int:
        for credential in credentials:
            if credential[0] == libvirt.VIR_CRED_AUTHNAME:
                credential[4] = self.connection.username
            elif credential[0] == libvirt.VIR_CRED_PASSPHRASE:
                credential[4] = self.connection.password
        return 0

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except libvirt.libvirtError:
                pass
            self._conn = None

    def _call(self, what: str, fn, *args):
        try:
            return fn(*args)
        except libvirt.libvirtError as exc:
            raise _error(exc, f"libvirt: {what}") from None

    # --- health and inventory ------------------------------------------------

    def health(self) -> base.Health:
        conn = self._open()
        version = self._call("version", conn.getVersion)
        major, minor, micro = version // 1_000_000, version // 1000 % 1000, version % 1000
        kind = self._call("type", conn.getType)
        return base.Health(ok=True, version=f"{kind} {major}.{minor}.{micro}")

    def inventory(self) -> base.Inventory:
        conn = self._open()
        info = self._call("host info", conn.getInfo)
        free = self._call("free memory", conn.getFreeMemory) // (1024 * 1024)
        host = base.Host(
            name=self._call("hostname", conn.getHostname),
            cpus=info[2],
            memory_mib=info[1],
            memory_used_mib=max(info[1] - free, 0),
            state="up",
        )
        storage = []
        for pool in self._call("storage pools", conn.listAllStoragePools):
            _state, capacity, _allocation, available = self._call("pool info", pool.info)
            kind = ET.fromstring(pool.XMLDesc()).get("type", "")
            storage.append(base.Storage(pool.name(), capacity, available, kind))
        networks = tuple(n.name() for n in self._call("networks", conn.listAllNetworks))
        vms = tuple(self._vm(d) for d in self._call("domains", conn.listAllDomains))
        return base.Inventory(
            hosts=(host,),
            storage=tuple(storage),
            networks=networks,
            templates=self.templates(),
            vms=vms,
        )

    def templates(self) -> tuple[base.Template, ...]:
        name = self.connection.options.get("template_pool")
        if not name:
            return ()
        pool = self._pool(name)
        self._call("refresh pool", pool.refresh, 0)
        found = []
        for volume in self._call("volumes", pool.listAllVolumes):
            _type, capacity, _allocation = volume.info()
            found.append(base.Template(id=volume.key(), name=volume.name(), disk_bytes=capacity))
        return tuple(sorted(found, key=lambda t: t.name))

    def _vm(self, domain: libvirt.virDomain) -> base.VM:
        xml = ET.fromstring(self._call("domain XML", domain.XMLDesc, 0))
        state = self._call("domain state", domain.state)[0]
        macs = tuple(m.get("address", "") for m in xml.findall("./devices/interface/mac"))
        memory = int(xml.findtext("memory", "0"))
        unit = xml.find("memory").get("unit", "KiB") if xml.find("memory") is not None else "KiB"
        memory_mib = memory * {"KiB": 1, "MiB": 1024, "GiB": 1024 * 1024}.get(unit, 1) // 1024
        return base.VM(
            id=domain.UUIDString(),
            name=domain.name(),
            power=_STATES.get(state, base.PowerState.UNKNOWN),
            macs=macs,
            cpus=int(xml.findtext("vcpu", "0")),
            memory_mib=memory_mib,
            host=self._call("hostname", self._open().getHostname),
        )

    def _domain(self, vm_id: str) -> libvirt.virDomain:
        return self._call(f"VM {vm_id}", self._open().lookupByUUIDString, vm_id)

    def get_vm(self, vm_id: str) -> base.VM:
        return self._vm(self._domain(vm_id))

    def _pool(self, name: str) -> libvirt.virStoragePool:
        return self._call(f"storage pool {name!r}", self._open().storagePoolLookupByName, name)

    # --- create --------------------------------------------------------------

    def create_vm(self, spec: base.VMSpec) -> base.VM:
        conn = self._open()
        made: list[libvirt.virStorageVol] = []
        try:
            disks = self._volumes(spec, made)
            xml = self._domain_xml(spec, disks)
            domain = self._call(f"define VM {spec.name!r}", conn.defineXML, xml)
        except base.HypervisorError:
            self._remove_volumes(made)
            raise
        return self._vm(domain)

    def _volumes(self, spec: base.VMSpec, made: list) -> list[tuple[str, str]]:
        """Make the VM's volumes; returns (pool, volume) pairs, the first disk first."""
        default_pool = self.connection.options.get("storage_pool", "default")
        disks: list[tuple[str, str]] = []
        if spec.template:
            template = self._template_volume(spec.template)
            pool = self._pool(default_pool)
            size = template.info()[1]
            name = f"{spec.name}-disk0.{_VOLUME_FORMAT}"
            volume = self._call(
                f"clone template {spec.template!r}",
                pool.createXMLFrom,
                _volume_xml(name, size),
                template,
                0,
            )
            made.append(volume)
            disks.append((pool.name(), name))
        for index, disk in enumerate(spec.disks, start=len(disks)):
            pool = self._pool(disk.storage or default_pool)
            name = f"{spec.name}-disk{index}.{_VOLUME_FORMAT}"
            volume = self._call(
                f"create disk {name!r}", pool.createXML, _volume_xml(name, disk.size_bytes), 0
            )
            made.append(volume)
            disks.append((pool.name(), name))
        return disks

    def _template_volume(self, wanted: str) -> libvirt.virStorageVol:
        pool_name = self.connection.options.get("template_pool")
        if not pool_name:
            raise base.NotFound(
                f"libvirt: template {wanted!r}: no template pool is configured "
                "(the hypervisor's template_pool option)"
            )
        pool = self._pool(pool_name)
        for volume in self._call("volumes", pool.listAllVolumes):
            if wanted in (volume.name(), volume.key()):
                return volume
        raise base.NotFound(f"libvirt: template {wanted!r} is not in pool {pool_name!r}")

    def _remove_volumes(self, volumes: list) -> None:
        leftovers = []
        for volume in volumes:
            try:
                volume.delete(0)
            except libvirt.libvirtError:
                leftovers.append(volume.name())
        if leftovers:
            raise base.PermanentError(
                f"libvirt: could not remove the volumes made for a failed create: {leftovers}"
            )

    def _domain_type(self) -> str:
        wanted = self.connection.options.get("domain_type")
        if wanted:
            return str(wanted)
        caps = self._call("capabilities", self._open().getCapabilities)
        types = set(re.findall(r"<domain type='(\w+)'", caps))
        for choice in ("kvm", "qemu", "test"):
            if choice in types:
                return choice
        raise base.PermanentError("libvirt: the host offers no KVM or QEMU guests")

    def _domain_xml(self, spec: base.VMSpec, disks: list[tuple[str, str]]) -> str:
        dtype = self._domain_type()
        machine = self.connection.options.get("machine", "")
        machine_attr = f" machine={quoteattr(machine)}" if machine else ""
        firmware = " firmware='efi'" if spec.firmware == "uefi" and dtype != "test" else ""
        parts = [
            f"<domain type={quoteattr(dtype)}>",
            f"<name>{_text(spec.name)}</name>",
            f"<metadata><pureboot:vm xmlns:pureboot='{_NS}'>",
            *(f"<pureboot:volume pool={quoteattr(p)} name={quoteattr(v)}/>" for p, v in disks),
            "</pureboot:vm></metadata>",
            f"<memory unit='MiB'>{int(spec.memory_mib)}</memory>",
            f"<vcpu>{int(spec.cpus)}</vcpu>",
            f"<os{firmware}><type arch={quoteattr(spec.arch)}{machine_attr}>hvm</type></os>",
            "<features><acpi/><apic/></features>",
            "<on_reboot>restart</on_reboot>",
            "<devices>",
        ]
        # Network first, then the first disk: the VM asks PureBoot before its disk.
        for index, nic in enumerate(spec.nics):
            parts.append(_interface_xml(nic, boot=1 if index == 0 else None))
        for index, (pool, volume) in enumerate(disks):
            boot = "<boot order='2'/>" if index == 0 else ""
            parts.append(
                "<disk type='volume' device='disk'>"
                f"<driver name='qemu' type='{_VOLUME_FORMAT}'/>"
                f"<source pool={quoteattr(pool)} volume={quoteattr(volume)}/>"
                f"<target dev='vd{chr(ord('a') + index)}' bus='virtio'/>{boot}</disk>"
            )
        if dtype != "test":
            log_dir = self.connection.options.get("console_log_dir")
            if log_dir:
                path = quoteattr(f"{str(log_dir).rstrip('/')}/{spec.name}.log")
                parts.append(
                    f"<serial type='file'><source path={path}/></serial>"
                    "<console type='file'><target type='serial'/>"
                    f"<source path={path}/></console>"
                )
            else:
                parts.append("<serial type='pty'/><console type='pty'/>")
        parts.append("</devices></domain>")
        return "".join(parts)

    # --- power and delete ----------------------------------------------------

    def power_state(self, vm_id: str) -> base.PowerState:
        state = self._call("domain state", self._domain(vm_id).state)[0]
        return _STATES.get(state, base.PowerState.UNKNOWN)

    def power(self, vm_id: str, action: base.PowerAction) -> None:
        domain = self._domain(vm_id)
        running = bool(self._call("domain state", domain.isActive))
        action = base.PowerAction(action)
        if action == base.PowerAction.ON and not running:
            self._call(f"start VM {vm_id}", domain.create)
        elif action == base.PowerAction.OFF and running:
            self._call(f"power off VM {vm_id}", domain.destroy)
        elif action == base.PowerAction.REBOOT:
            if running:
                self._call(f"reset VM {vm_id}", domain.reset, 0)
            else:
                self._call(f"start VM {vm_id}", domain.create)

    def delete_vm(self, vm_id: str) -> None:
        domain = self._domain(vm_id)
        xml = ET.fromstring(self._call("domain XML", domain.XMLDesc, 0))
        if self._call("domain state", domain.isActive):
            self._call(f"power off VM {vm_id}", domain.destroy)
        flags = libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
        try:
            domain.undefineFlags(flags)
        except libvirt.libvirtError:
            self._call(f"undefine VM {vm_id}", domain.undefine)
        volumes = []
        for made in xml.iter(f"{{{_NS}}}volume"):
            try:
                pool = self._pool(made.get("pool", ""))
                volumes.append(pool.storageVolLookupByName(made.get("name", "")))
            except (base.NotFound, libvirt.libvirtError):
                continue  # already gone: nothing to remove
        self._remove_volumes(volumes)


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _volume_xml(name: str, size_bytes: int) -> str:
    return (
        f"<volume><name>{_text(name)}</name>"
        f"<capacity unit='bytes'>{int(size_bytes)}</capacity>"
        f"<target><format type='{_VOLUME_FORMAT}'/></target></volume>"
    )


def _interface_xml(nic: base.Nic, boot: int | None) -> str:
    kind, _, name = nic.network.partition(":")
    if not name:
        kind, name = "network", nic.network
    if kind == "network":
        source = f"<source network={quoteattr(name)}/>"
    elif kind == "bridge":
        source = f"<source bridge={quoteattr(name)}/>"
    elif kind == "ethernet":
        source = f"<target dev={quoteattr(name)} managed='no'/>"
    else:
        raise base.InvalidRequest(
            f"libvirt: NIC network {nic.network!r}: use a network name, bridge:NAME or ethernet:TAP"
        )
    boot_xml = f"<boot order='{boot}'/>" if boot else ""
    return (
        f"<interface type={quoteattr(kind)}><mac address={quoteattr(nic.mac)}/>{source}"
        f"<model type={quoteattr(nic.model or 'virtio')}/>{boot_xml}</interface>"
    )
