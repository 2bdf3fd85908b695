"""What configuration-management tools are told about the fleet.

Ansible's dynamic inventory (the JSON ``ansible-inventory --list`` reads
from an inventory script) and Puppet's external node classifier answer are
built here from the nodes one user may see: the same scope as the node API.

Nothing secret is in either answer: host variables are the node's identity,
state and hardware facts, never its free-form metadata (which may hold
anything) except the few keys documented below.
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


def node_addresses(node: Node) -> list[str]:
    """The node's IP addresses PureBoot knows, in order of preference.

    ``metadata["addresses"]`` (a list set by an operator or automation)
    first, then the address the PureBoot agent reported on the provisioning
    network (its last inventory). Anything that is not an IP address is left out.
    """
    found: list[str] = []
    listed = (node.metadata or {}).get("addresses")
    candidates = list(listed) if isinstance(listed, list) else []
    network = (node.inventory or {}).get("network") or {}
    if isinstance(network, dict) and isinstance(network.get("address"), str):
        candidates.append(network["address"].split("/", 1)[0])
    for value in candidates:
        try:
            address = str(ipaddress.ip_address(str(value).strip()))
        except ValueError:
            continue
        if address not in found:
            found.append(address)
    return found


def ansible_host(node: Node) -> str:
    """Where Ansible connects: the node's first known address, else its host name."""
    addresses = node_addresses(node)
    return addresses[0] if addresses else node.hostname


def inventory_name(node: Node) -> str:
    """The node's name in every inventory: its host name, else ``node-<id>``."""
    return node.hostname or f"node-{node.pk}"


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


def host_vars(node: Node) -> dict[str, Any]:
    """The Ansible host variables of one node (all ``pureboot_*`` but ``ansible_host``)."""
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
        if name in hostvars:  # a host name that looks like another node's node-<id>
            name = f"{name}-id{node.pk}"
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
