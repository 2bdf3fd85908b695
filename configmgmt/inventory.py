"""What configuration-management tools are told about the fleet.

Ansible's dynamic inventory (the JSON ``ansible-inventory --list`` reads
from an inventory script) and Puppet's external node classifier answer are
built here from the nodes one user may see: the same scope as the node API.

Nothing secret is in either answer: host variables are the node's identity,
state and hardware facts, never its free-form metadata (which may hold
anything) except the few keys documented below.

Much of what a host variable holds was reported by the node itself (its
vendor, model, serial, hardware), so every string in the Ansible host
variables is marked unsafe the way Ansible reads it from JSON inventories,
``{"__ansible_unsafe": "..."}``: Ansible never templates it, so
``{{ lookup('pipe', ...) }}`` in a disk model stays text.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from nodes.models import Node, validate_hostname
from nodes.permissions import scope_nodes

# Ansible's rule for group names (TRANSFORM_INVALID_GROUP_CHARS): letters,
# digits and underscores, not starting with a digit.
_NOT_GROUP_CHAR = re.compile(r"[^A-Za-z0-9_]")
# Puppet class names: lowercase segments separated by ``::``.
_PUPPET_CLASS = re.compile(r"^(::)?[a-z][a-z0-9_]*(::[a-z][a-z0-9_]*)*$")
_PUPPET_ENVIRONMENT = re.compile(r"^[a-z0-9_]{1,64}$")
_PUPPET_PARAMETER = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_CERTNAME = 253


class EncError(ValueError):
    """A node's stored Puppet classification cannot be turned into an ENC answer."""


def group_name(prefix: str, value: str) -> str:
    """``prefix_value`` with every character Ansible refuses in a group name made ``_``."""
    return _NOT_GROUP_CHAR.sub("_", f"{prefix}_{value}")


def visible_nodes(user) -> QuerySet:
    """The nodes ``user`` may see, with what the inventory reads of them."""
    qs = Node.objects.select_related("site", "workflow").prefetch_related("interfaces", "tags")
    return scope_nodes(user, qs).order_by("hostname", "id")


UNSAFE = "__ansible_unsafe"


def mark_unsafe(value: Any) -> Any:
    """``value`` with every string (in nested dicts and lists too) marked unsafe for Ansible.

    A string becomes ``{"__ansible_unsafe": string}``, which Ansible's JSON
    inventory and variable files read back as text it never templates.
    Dictionary keys are left as they are; numbers, booleans and None too.
    """
    if isinstance(value, str):
        return {UNSAFE: value}
    if isinstance(value, dict):
        if set(value) == {UNSAFE}:
            return value  # already marked
        return {key: mark_unsafe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [mark_unsafe(item) for item in value]
    return value


def parse_ip(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(str(value).strip().split("/", 1)[0])
    except ValueError:
        return None


def _listed_addresses(node: Node) -> list[str]:
    listed = (node.metadata or {}).get("addresses")
    values = listed if isinstance(listed, list) else []
    return [str(ip) for ip in (parse_ip(v) for v in values) if ip]


def _reported_address(node: Node) -> str:
    network = (node.inventory or {}).get("network") or {}
    if isinstance(network, dict) and isinstance(network.get("address"), str):
        found = parse_ip(network["address"])
        return str(found) if found else ""
    return ""


def node_addresses(node: Node) -> list[str]:
    """The node's IP addresses PureBoot knows, in order of preference.

    ``metadata["addresses"]`` (a list set by an operator or automation)
    first, then the address the PureBoot agent reported on the provisioning
    network (its last inventory). Anything that is not an IP address is left out.
    """
    found: list[str] = []
    for address in [*_listed_addresses(node), _reported_address(node)]:
        if address and address not in found:
            found.append(address)
    return found


def connectable(address: str) -> bool:
    """False for a loopback, link-local, multicast, unspecified or reserved address."""
    ip = parse_ip(address)
    return ip is not None and not (
        ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved
    )


def ansible_host(node: Node) -> str:
    """Where Ansible connects; empty when PureBoot knows no address it may use.

    The first of ``metadata["addresses"]`` (set by an operator) that is not
    a loopback, link-local, multicast, unspecified or reserved address. The
    address the agent reported (the node's own word) only when
    ``metadata["addresses"]`` is not set at all, and never a special one.
    Else the node's host name (resolved by DNS on the worker).
    """
    listed = _listed_addresses(node)
    candidates = listed if listed else [_reported_address(node)]
    for address in candidates:
        if address and connectable(address):
            return address
    return "" if listed else node.hostname


def inventory_name(node: Node) -> str:
    """The node's name in every inventory: its host name, else ``node_<id>``.

    A host name never holds ``_``, so an unnamed node's name cannot be a
    named node's.
    """
    return node.hostname or f"node_{node.pk}"


def _hardware(node: Node) -> dict[str, Any]:
    inventory = node.inventory or {}
    disks = inventory.get("disks") or []
    return {
        "cpus": inventory.get("cpus") or {},
        "memory_bytes": inventory.get("memory_bytes"),
        "disks": [
            {k: disk.get(k) for k in ("path", "model", "size", "rotational", "transport")}
            for disk in disks
            if isinstance(disk, dict)
        ],
        "nics": [
            {k: nic.get(k) for k in ("name", "mac", "speed_mbps", "driver")}
            for nic in inventory.get("nics") or []
            if isinstance(nic, dict)
        ],
        "firmware": inventory.get("firmware") or {},
    }


def host_facts(node: Node) -> dict[str, Any]:
    """What PureBoot tells about one node (all ``pureboot_*`` but ``ansible_host``), as is."""
    hostvars: dict[str, Any] = {
        "pureboot_id": node.pk,
        "pureboot_name": inventory_name(node),
        "pureboot_hostname": node.hostname,
        "pureboot_macs": [i.mac for i in node.interfaces.all()],
        "pureboot_addresses": node_addresses(node),
        "pureboot_state": node.state,
        "pureboot_site": node.site.slug if node.site else None,
        "pureboot_tags": sorted(t.name for t in node.tags.all()),
        "pureboot_workflow": node.workflow.name if node.workflow else None,
        "pureboot_arch": node.arch,
        "pureboot_firmware": node.firmware,
        "pureboot_vendor": node.vendor,
        "pureboot_model": node.model,
        "pureboot_serial": node.serial,
        "pureboot_system_uuid": str(node.system_uuid) if node.system_uuid else None,
        "pureboot_hardware": _hardware(node),
    }
    host = ansible_host(node)
    if host:
        hostvars["ansible_host"] = host
    return hostvars


def host_vars(node: Node) -> dict[str, Any]:
    """The Ansible host variables of one node: :func:`host_facts` with every string unsafe."""
    return mark_unsafe(host_facts(node))


def node_groups(node: Node) -> list[str]:
    """The Ansible groups a node belongs to: by site, state, tag and workflow."""
    groups = [group_name("state", node.state)]
    if node.site:
        groups.append(group_name("site", node.site.slug))
    groups.extend(group_name("tag", tag.name) for tag in node.tags.all())
    if node.workflow:
        groups.append(group_name("workflow", node.workflow.name))
    return groups


def ansible_inventory(user) -> dict[str, Any]:
    """The dynamic-inventory JSON of every node ``user`` may see.

    The shape ``ansible-inventory`` expects from an inventory script's
    ``--list``: one key per group with its ``hosts``, and ``_meta.hostvars``
    holding every host's variables (so Ansible does not call ``--host`` per host).
    """
    groups: dict[str, list[str]] = {}
    hostvars: dict[str, dict[str, Any]] = {}
    for node in visible_nodes(user):
        name = inventory_name(node)
        hostvars[name] = host_vars(node)
        for group in node_groups(node):
            groups.setdefault(group, []).append(name)
    answer: dict[str, Any] = {name: {"hosts": hosts} for name, hosts in sorted(groups.items())}
    answer["all"] = {"children": ["ungrouped", *sorted(groups)]}
    answer["_meta"] = {"hostvars": hostvars}
    return answer


def check_certname(certname: str) -> str:
    """A Puppet certname PureBoot can look up: a host name. ``ValueError`` otherwise."""
    if not certname or len(certname) > MAX_CERTNAME:
        raise ValueError(f"A certname is 1 to {MAX_CERTNAME} characters.")
    try:
        validate_hostname(certname)
    except ValidationError as exc:
        raise ValueError(
            "A certname is a host name: dot-separated labels of letters, digits and hyphens."
        ) from exc
    return certname.lower()


def puppet_node(user, certname: str) -> Node | None:
    """The visible node whose host name is ``certname`` (already checked), or None."""
    return visible_nodes(user).filter(hostname__iexact=certname).first()


def puppet_classification(node: Node) -> dict[str, Any]:
    """The ENC answer for ``node``: classes, parameters and environment.

    Classes and extra parameters come from the node's ``metadata["puppet"]``:
    ``{"classes": [...] or {class: {param: value}}, "parameters": {...},
    "environment": "..."}``. PureBoot adds the parameters ``pureboot_site``,
    ``pureboot_state``, ``pureboot_tags`` and ``pureboot_workflow``. Raises
    :class:`EncError` when the stored classification is malformed.
    """
    stored = (node.metadata or {}).get("puppet") or {}
    if not isinstance(stored, dict):
        raise EncError("metadata.puppet must be an object")
    unknown = sorted(set(stored) - {"classes", "parameters", "environment"})
    if unknown:
        raise EncError(f"metadata.puppet.{unknown[0]} is not a Puppet ENC key")
    raw_classes = stored.get("classes") or []
    if isinstance(raw_classes, list):
        classes: list[str] | dict[str, Any] = [str(c) for c in raw_classes]
        names = list(classes)
    elif isinstance(raw_classes, dict):
        for value in raw_classes.values():
            if value is not None and not isinstance(value, dict):
                raise EncError("metadata.puppet.classes values are parameter objects")
        classes = {str(k): (v or {}) for k, v in raw_classes.items()}
        names = list(classes)
    else:
        raise EncError("metadata.puppet.classes is a list of class names or an object")
    for name in names:
        if not _PUPPET_CLASS.match(name):
            raise EncError(f"metadata.puppet.classes: {name[:80]!r} is not a Puppet class name")
    parameters = stored.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise EncError("metadata.puppet.parameters must be an object")
    for key in parameters:
        if not _PUPPET_PARAMETER.match(key):
            raise EncError(f"metadata.puppet.parameters: {key[:80]!r} is not a variable name")
    environment = stored.get("environment") or "production"
    if not isinstance(environment, str) or not _PUPPET_ENVIRONMENT.match(environment):
        raise EncError("metadata.puppet.environment is a Puppet environment name")
    return {
        "classes": classes,
        "parameters": {
            **parameters,
            "pureboot_site": node.site.slug if node.site else "",
            "pureboot_state": node.state,
            "pureboot_tags": sorted(t.name for t in node.tags.all()),
            "pureboot_workflow": node.workflow.name if node.workflow else "",
        },
        "environment": environment,
    }
