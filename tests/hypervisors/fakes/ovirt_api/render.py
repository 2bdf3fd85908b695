"""The fake engine's XML: objects as the v4 API represents them (elements in the
model's names, ``href``/``id`` attributes on every object and reference,
``<link rel=...>`` to sub-collections, sub-collections inlined on ``follow``),
and the helpers that read request bodies."""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from typing import Any

from .state import (
    BLANK_ID,
    Attachment,
    Cluster,
    Disk,
    EngineState,
    Fault,
    Host,
    Network,
    Nic,
    Profile,
    StorageDomain,
    Template,
    Vm,
)

API = "/ovirt-engine/api"
_STARTED = datetime.datetime(2024, 5, 1, 9, 30, tzinfo=datetime.UTC)


def document(element: ET.Element) -> bytes:
    return b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' + ET.tostring(element)


def sub(parent: ET.Element, tag: str, value: Any = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    if isinstance(value, bool):
        element.text = "true" if value else "false"
    elif value is not None:
        element.text = str(value)
    return element


def ref(parent: ET.Element, tag: str, collection: str, obj_id: str) -> ET.Element:
    return ET.SubElement(parent, tag, href=f"{API}/{collection}/{obj_id}", id=obj_id)


def root(tag: str, collection: str, obj_id: str) -> ET.Element:
    return ET.Element(tag, href=f"{API}/{collection}/{obj_id}", id=obj_id)


def links(element: ET.Element, base: str, rels: list[str]) -> None:
    for rel in rels:
        ET.SubElement(element, "link", href=f"{API}/{base}/{rel}", rel=rel)


def collection(tag: str, items: list[ET.Element]) -> ET.Element:
    element = ET.Element(tag)
    element.extend(items)
    return element


def fault(exc: Fault) -> ET.Element:
    element = ET.Element("fault")
    sub(element, "detail", exc.detail)
    sub(element, "reason", exc.reason)
    return element


def action(status: str = "complete") -> ET.Element:
    element = ET.Element("action")
    sub(element, "status", status)
    return element


def _topology(parent: ET.Element, cores: int, sockets: int, threads: int) -> None:
    topology = sub(sub(parent, "cpu"), "topology")
    sub(topology, "cores", cores)
    sub(topology, "sockets", sockets)
    sub(topology, "threads", threads)


def _os(parent: ET.Element, os_type: str, boot: list[str]) -> None:
    os_element = sub(parent, "os")
    devices = sub(sub(os_element, "boot"), "devices")
    for device in boot:
        sub(devices, "device", device)
    sub(os_element, "type", os_type)


def api_root(engine: EngineState) -> ET.Element:
    element = ET.Element("api")
    for rel in ("clusters", "hosts", "networks", "storagedomains", "templates", "vms"):
        ET.SubElement(element, "link", href=f"{API}/{rel}", rel=rel)
    ET.SubElement(element, "link", href=f"{API}/vnicprofiles", rel="vnicprofiles")
    info = sub(element, "product_info")
    sub(info, "name", "oVirt Engine")
    sub(info, "vendor", "ovirt.org")
    version = sub(info, "version")
    major, minor, build = (engine.version.split(".") + ["0", "0"])[:3]
    sub(version, "build", build)
    sub(version, "full_version", f"{engine.version}-1.el8")
    sub(version, "major", major)
    sub(version, "minor", minor)
    sub(version, "revision", 0)
    special = sub(element, "special_objects")
    ref(special, "blank_template", "templates", BLANK_ID)
    summary = sub(element, "summary")
    for kind, count in (("hosts", len(engine.hosts)), ("vms", len(engine.vms))):
        counts = sub(summary, kind)
        sub(counts, "active", count)
        sub(counts, "total", count)
    sub(element, "time", datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"))
    return element


def cluster(c: Cluster) -> ET.Element:
    element = root("cluster", "clusters", c.id)
    sub(element, "name", c.name)
    cpu = sub(element, "cpu")
    sub(cpu, "architecture", c.arch)
    sub(cpu, "type", "Intel Icelake Server Family")
    version = sub(element, "version")
    sub(version, "major", 4)
    sub(version, "minor", 7)
    ref(element, "data_center", "datacenters", c.dc)
    links(element, f"clusters/{c.id}", ["networks", "permissions"])
    return element


def host(h: Host) -> ET.Element:
    element = root("host", "hosts", h.id)
    sub(element, "name", h.name)
    sub(element, "address", f"{h.name}.lab.example")
    cpu = sub(element, "cpu")
    topology = sub(cpu, "topology")
    sub(topology, "cores", h.cores)
    sub(topology, "sockets", h.sockets)
    sub(topology, "threads", h.threads)
    sub(cpu, "name", "Intel(R) Xeon(R) Gold 6330 CPU @ 2.00GHz")
    sub(element, "max_scheduling_memory", h.free_memory)
    sub(element, "memory", h.memory)
    sub(element, "status", h.status)
    sub(element, "type", "rhel")
    ref(element, "cluster", "clusters", h.cluster)
    links(element, f"hosts/{h.id}", ["nics", "statistics"])
    return element


def storage_domain(d: StorageDomain) -> ET.Element:
    element = root("storage_domain", "storagedomains", d.id)
    sub(element, "name", d.name)
    sub(element, "available", d.available)
    sub(element, "committed", d.used)
    sub(element, "external_status", "ok")
    sub(element, "master", d.type == "data")
    storage = sub(element, "storage")
    sub(storage, "address", "nfs.lab.example")
    sub(storage, "path", f"/exports/{d.name}")
    sub(storage, "type", d.storage_type)
    sub(element, "storage_format", "v5")
    sub(element, "type", d.type)
    sub(element, "used", d.used)
    ref(sub(element, "data_centers"), "data_center", "datacenters", d.dc)
    links(element, f"storagedomains/{d.id}", ["disks", "permissions"])
    return element


def network(n: Network) -> ET.Element:
    element = root("network", "networks", n.id)
    sub(element, "name", n.name)
    sub(element, "mtu", 0)
    usages = sub(element, "usages")
    sub(usages, "usage", "vm" if n.vm_network else "migration")
    ref(element, "data_center", "datacenters", n.dc)
    links(element, f"networks/{n.id}", ["vnicprofiles"])
    return element


def vnic_profile(p: Profile) -> ET.Element:
    element = root("vnic_profile", "vnicprofiles", p.id)
    sub(element, "name", p.name)
    sub(sub(element, "pass_through"), "mode", "disabled")
    sub(element, "port_mirroring", False)
    ref(element, "network", "networks", p.network)
    return element


def disk(d: Disk) -> ET.Element:
    element = root("disk", "disks", d.id)
    sub(element, "name", d.name)
    sub(element, "alias", d.name)
    sub(element, "actual_size", d.size if not d.sparse else min(d.size, 2 * 1024**2))
    sub(element, "content_type", "data")
    sub(element, "format", d.format)
    sub(element, "provisioned_size", d.size)
    sub(element, "sparse", d.sparse)
    sub(element, "status", d.status)
    sub(element, "storage_type", "image")
    sub(element, "total_size", d.size)
    ref(sub(element, "storage_domains"), "storage_domain", "storagedomains", d.domain)
    return element


def attachment(
    engine: EngineState, a: Attachment, owner: str, owner_id: str, follow_disk: bool
) -> ET.Element:
    """A disk attachment of a VM (``owner`` "vms") or a template ("templates")."""
    element = root("disk_attachment", f"{owner}/{owner_id}/diskattachments", a.disk)
    sub(element, "active", a.active)
    sub(element, "bootable", a.bootable)
    sub(element, "interface", a.interface)
    sub(element, "pass_discard", False)
    sub(element, "read_only", False)
    sub(element, "uses_scsi_reservation", False)
    if follow_disk and a.disk in engine.disks:
        element.append(disk(engine.disks[a.disk]))
    else:
        ref(element, "disk", "disks", a.disk)
    ref(element, owner[:-1], owner, owner_id)
    return element


def nic(n: Nic, owner: str, owner_id: str) -> ET.Element:
    element = root("nic", f"{owner}/{owner_id}/nics", n.id)
    sub(element, "name", n.name)
    sub(element, "interface", n.interface)
    sub(element, "linked", True)
    if n.mac:
        sub(sub(element, "mac"), "address", n.mac)
    sub(element, "plugged", True)
    if n.profile:
        ref(element, "vnic_profile", "vnicprofiles", n.profile)
    ref(element, owner[:-1], owner, owner_id)
    return element


def _inline(
    engine: EngineState, element: ET.Element, obj: Template | Vm, owner: str, follow: set[str]
) -> None:
    if "nics" in follow:
        element.append(collection("nics", [nic(n, owner, obj.id) for n in obj.nics]))
    if follow & {"disk_attachments", "disk_attachments.disk"}:
        deep = "disk_attachments.disk" in follow
        items = [attachment(engine, a, owner, obj.id, deep) for a in obj.attachments]
        element.append(collection("disk_attachments", items))


def template(engine: EngineState, t: Template, follow: set[str]) -> ET.Element:
    element = root("template", "templates", t.id)
    sub(element, "name", t.name)
    sub(sub(element, "bios"), "type", t.bios)
    _topology(element, t.cores, t.sockets, 1)
    sub(element, "creation_time", _STARTED.isoformat())
    sub(element, "memory", t.memory)
    _os(element, t.os_type, t.boot)
    sub(element, "status", "ok")
    sub(element, "type", "server")
    version = sub(element, "version")
    sub(version, "version_name", t.version_name or "base version")
    sub(version, "version_number", t.version)
    ref(version, "base_template", "templates", t.base or t.id)
    if t.cluster:
        ref(element, "cluster", "clusters", t.cluster)
    _inline(engine, element, t, "templates", follow)
    links(element, f"templates/{t.id}", ["diskattachments", "nics", "permissions"])
    return element


def vm(engine: EngineState, v: Vm, follow: set[str]) -> ET.Element:
    element = root("vm", "vms", v.id)
    sub(element, "name", v.name)
    sub(sub(element, "bios"), "type", v.bios)
    _topology(element, v.cores, v.sockets, v.threads)
    sub(element, "creation_time", _STARTED.isoformat())
    ha = sub(element, "high_availability")
    sub(ha, "enabled", v.ha)
    sub(ha, "priority", v.ha_priority)
    sub(element, "memory", v.memory)
    policy = sub(element, "memory_policy")
    sub(policy, "guaranteed", v.memory)
    sub(policy, "max", v.max_memory)
    _os(element, v.os_type, v.boot)
    placement = sub(element, "placement_policy")
    sub(placement, "affinity", "migratable")
    if v.pinned:
        hosts = sub(placement, "hosts")
        for host_id in v.pinned:
            ref(hosts, "host", "hosts", host_id)
    sub(element, "status", v.status)
    sub(element, "type", "server")
    ref(element, "cluster", "clusters", v.cluster)
    if v.host:
        ref(element, "host", "hosts", v.host)
    ref(element, "template", "templates", v.template)
    _inline(engine, element, v, "vms", follow)
    links(element, f"vms/{v.id}", ["diskattachments", "nics", "permissions", "statistics"])
    return element


# --- request bodies -------------------------------------------------------------------


def parse(body: bytes, tag: str) -> ET.Element:
    try:
        element = ET.fromstring(body)
    except ET.ParseError as exc:
        raise Fault(400, f"Request body is not valid XML: {exc}", reason="Bad request") from None
    if element.tag != tag:
        raise Fault(400, f"Expected <{tag}>, got <{element.tag}>", reason="Bad request")
    return element


def text(element: ET.Element | None, path: str) -> str | None:
    if element is None:
        return None
    found = element.find(path)
    return found.text.strip() if found is not None and found.text is not None else None


def number(element: ET.Element | None, path: str) -> int | None:
    value = text(element, path)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise Fault(400, f"Value '{value}' of {path} is not a number", "Bad request") from None


def flag(element: ET.Element | None, path: str) -> bool | None:
    value = text(element, path)
    return None if value is None else value.lower() == "true"


def reference(element: ET.Element | None, path: str) -> tuple[str | None, str | None]:
    """``<cluster id="..."/>`` or ``<cluster><name>..</name></cluster>`` -> (id, name)."""
    found = element.find(path) if element is not None else None
    if found is None:
        return None, None
    return found.get("id"), text(found, "name")
