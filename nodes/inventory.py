"""Recording the hardware inventory the PureBoot agent reports.

The inventory is stored whole on the node. For a node still ``discovered``
(nothing installed, nothing guarded) it also completes the identities the
machine is recognised by: the SMBIOS system UUID and serial when the node
has none, and the MACs of its NICs that no node holds yet. In any other
state identities stay as they are (changing them needs a second person);
a disagreement is written to the node's history for an operator to see.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from audit import services as audit

from .choices import EventKind, NodeState
from .identifiers import normalize_mac, normalize_uuid
from .models import NetworkInterface, Node, NodeEvent
from .services import Actor


def record_inventory(node_id: int, inventory: dict[str, Any], actor: Actor) -> list[str]:
    """Store ``inventory`` (already validated) on the node; returns what it noticed."""
    notes: list[str] = []
    with transaction.atomic():
        node = Node.objects.select_for_update(of=("self",)).get(pk=node_id)
        system = inventory.get("system") or {}
        uuid = _uuid(system.get("uuid"))
        serial = (system.get("serial") or "").strip()
        known_macs = set(node.interfaces.values_list("mac", flat=True))
        reported_macs = {
            mac for mac in (_mac(nic.get("mac")) for nic in inventory.get("nics") or []) if mac
        }
        if node.state == NodeState.DISCOVERED:
            if uuid and not node.system_uuid:
                node.system_uuid = uuid
                notes.append(f"system UUID {uuid} recorded")
            if serial and not node.serial and len(serial) <= 64:
                node.serial = serial
                notes.append(f"serial {serial} recorded")
            taken = set(
                NetworkInterface.objects.filter(mac__in=reported_macs).values_list("mac", flat=True)
            )
            for mac in sorted(reported_macs - taken):
                NetworkInterface.objects.create(node=node, mac=mac)
                notes.append(f"interface {mac} added")
            for mac in sorted((reported_macs & taken) - known_macs):
                notes.append(f"interface {mac} is registered to another node; not added")
        else:
            if uuid and node.system_uuid and str(node.system_uuid) != uuid:
                notes.append(f"reported system UUID {uuid} differs from the node's")
            if serial and node.serial and node.serial != serial:
                notes.append(f"reported serial {serial} differs from the node's")
        if not node.vendor and system.get("vendor"):
            node.vendor = str(system["vendor"])[: Node._meta.get_field("vendor").max_length]
        if not node.model and system.get("product"):
            node.model = str(system["product"])[: Node._meta.get_field("model").max_length]
        node.inventory = inventory
        node.inventory_at = timezone.now()
        node.save()
        NodeEvent.objects.create(
            node=node,
            kind=EventKind.REPORT,
            actor=actor.label,
            from_state=node.state,
            to_state=node.state,
            message="hardware inventory reported" + (f": {'; '.join(notes)}" if notes else ""),
            details={"disks": len(inventory.get("disks") or []), "notes": notes},
        )
        audit.record(
            actor=actor.label,
            action="node.inventory",
            object_type="nodes.node",
            object_id=node.pk,
            details={"notes": notes, "disks": len(inventory.get("disks") or [])},
        )
    return notes


def _uuid(value: Any) -> str | None:
    try:
        return normalize_uuid(value) if value else None
    except ValueError:
        return None


def _mac(value: Any) -> str | None:
    try:
        return normalize_mac(value) if value else None
    except ValueError:
        return None
