"""1:1 hardware migration: two nodes move together, under both row locks.

The node row ``source`` is the identity that moves; ``target`` is the
discovered machine it moves onto. ``nodes.services.perform`` starts a
migration (the ``migrate`` action, four-eye, bound to both machines) and
closes a running one whenever either node leaves ``migrating`` some other
way; the agent app ends it with ``complete`` (the copy is checked: the rows
swap their hardware) or ``end`` (failed or cancelled: the source goes back to
``active``, untouched).
"""

from __future__ import annotations

import re
from typing import Any

from celery import current_app
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit import services as audit
from pureboot import gate

from . import lifecycle as lc
from .choices import Firmware, NodeState
from .models import Migration, NetworkInterface, Node
from .permissions import can_access_node
from .transitions import (
    MAX_REASON_LENGTH,
    SYSTEM,
    Actor,
    TransitionError,
    binding,
    identity_fields,
    record,
)


def running(node_id: int) -> Migration | None:
    """The migration ``node_id`` is the source or the target of, while it runs."""
    return (
        Migration.objects.filter(status__in=Migration.RUNNING)
        .filter(Q(source_id=node_id) | Q(target_id=node_id))
        .first()
    )


def partners(node_id: int) -> tuple[int, ...]:
    migration = running(node_id)
    return (migration.other(node_id),) if migration else ()


def lock_nodes(*node_ids: int | None) -> None:
    """Lock node rows in id order (two transactions locking a pair never deadlock)."""
    ids = sorted({i for i in node_ids if i is not None})
    list(Node.objects.select_for_update(of=("self",)).filter(pk__in=ids).order_by("pk"))


def check_target(node: Node, actor: Actor, kwargs: dict[str, Any]) -> Node:
    """The machine ``node`` would migrate to (locked): a discovered node the actor may see."""
    target = Node.objects.select_for_update(of=("self",)).filter(pk=kwargs["target"]).first()
    if target is None or (actor.is_person and not can_access_node(actor.user, target)):
        raise ValidationError({"target": f"No node {kwargs['target']} visible to you."})
    if target.pk == node.pk:
        raise ValidationError({"target": "A node cannot migrate onto itself."})
    if target.state != NodeState.DISCOVERED:
        raise ValidationError(
            {
                "target": f"Node {target.pk} is {target.state}; a migration moves only onto a "
                "discovered machine (one that holds nothing PureBoot manages)."
            }
        )
    if node.firmware == Firmware.PI or target.firmware == Firmware.PI:
        raise ValidationError(
            {"target": "Raspberry Pis cannot migrate yet: the agent has no Raspberry Pi boot."}
        )
    if target.arch != node.arch:
        raise ValidationError(
            {
                "target": f"Node {target.pk} is {target.arch}; "
                f"node {node.pk}'s system is {node.arch}."
            }
        )
    return target


def approval_binding(node: Node, action: str, params: dict[str, Any]) -> str:
    """What a four-eye request on ``node`` is bound to; a migration's, to both machines."""
    if action != lc.MIGRATE.name:
        return binding(node)
    target_id = params.get("target")
    target_id = target_id if isinstance(target_id, int) else None
    lock_nodes(node.pk, target_id)  # both rows, in id order, as perform() locks them
    return bound_to(node, Node.objects.filter(pk=target_id).first())


def bound_to(node: Node, target: Node | None) -> str:
    return gate.binding(
        {**identity_fields(node), "target": identity_fields(target) if target else None}
    )


def start(
    node: Node,
    target: Node,
    actor: Actor,
    reason: str,
    kwargs: dict[str, Any],
    approval: gate.Approval | None,
) -> None:
    record(
        target,
        lc.RECEIVE_MIGRATION,
        actor,
        f"taking over node {node} (#{node.pk}) by migration" + (f": {reason}" if reason else ""),
        approval=approval,
        details={"source": node.pk},
    )
    Migration.objects.create(
        source=node,
        target=target,
        disk=kwargs.get("disk", ""),
        requested_by=actor.label,
        approval=approval.request_id if approval else None,
        reason=reason,
    )


def close(migration: Migration, status: str, reason: str) -> None:
    """End a running migration (both rows locked): the source back to active, untouched;
    the target failed (or, when cancelled, discovered again); the LUN torn down."""
    migration.status = status
    migration.error = reason[:4000]
    migration.finished_at = timezone.now()
    migration.save(update_fields=["status", "error", "finished_at"])
    words = f"migration {migration.pk} {status}: {reason}"[:MAX_REASON_LENGTH]
    source = Node.objects.select_for_update(of=("self",)).get(pk=migration.source_id)
    if source.state == NodeState.MIGRATING:
        record(source, lc.CANCEL_MIGRATION, SYSTEM, words)
    target = Node.objects.select_for_update(of=("self",)).get(pk=migration.target_id)
    if target.state == NodeState.MIGRATING:
        action = lc.FAIL if status == Migration.Status.FAILED else lc.RELEASE_HARDWARE
        record(target, action, SYSTEM, words)
    _queue_teardown(migration.pk)


def end(migration_id: int, status: str, reason: str) -> Migration:
    """Fail or cancel a running migration; nothing is done if it has already ended."""
    with transaction.atomic():
        migration = Migration.objects.get(pk=migration_id)
        lock_nodes(migration.source_id, migration.target_id)
        migration = Migration.objects.select_for_update().get(pk=migration_id)
        if migration.running:
            close(migration, status, reason)
    return migration


HARDWARE_FIELDS = (
    "serial",
    "system_uuid",
    "arch",
    "firmware",
    "vendor",
    "model",
    "inventory",
    "inventory_at",
)


def complete(migration_id: int, reason: str) -> Migration:
    """The copy is on the target and checked: the node takes over the target's machine.

    The two rows swap their hardware (interfaces, system UUID, serial,
    inventory); the node (``source``) becomes active on the new machine with
    everything that names it unchanged (id, host name, workflow, site,
    owner, credentials, DHCP entry, history), and ``target`` now describes
    the old machine, handed back as discovered. Raises TransitionError when
    the migration has ended or a node left it meanwhile.
    """
    with transaction.atomic():
        migration = Migration.objects.get(pk=migration_id)
        lock_nodes(migration.source_id, migration.target_id)
        migration = Migration.objects.select_for_update().get(pk=migration_id)
        source = Node.objects.get(pk=migration.source_id)
        target = Node.objects.get(pk=migration.target_id)
        if not migration.running or {source.state, target.state} != {NodeState.MIGRATING}:
            raise TransitionError(f"migration {migration.pk} has ended ({migration.status})")
        old = _hardware(source)
        new = _hardware(target)
        _swap_hardware(source, target)
        migration.status = Migration.Status.SUCCEEDED
        migration.finished_at = timezone.now()
        migration.save(update_fields=["status", "finished_at"])
        record(source, lc.COMPLETE_MIGRATION, SYSTEM, reason)
        target.refresh_from_db()
        target.site_id = source.site_id  # the old machine stands where the node stood
        target.save(update_fields=["site"])
        record(
            target,
            lc.RELEASE_HARDWARE,
            SYSTEM,
            f"the old machine of node {source} (#{source.pk}), whose system moved by migration "
            f"{migration.pk}; it still holds that system until it is deprovisioned",
        )
        audit.record(
            actor=SYSTEM.label,
            action="node.migrated",
            object_type="nodes.node",
            object_id=source.pk,
            changes={"hardware": {"from": old, "to": new}, "old_hardware_node": target.pk},
            message=reason,
        )
        _queue_teardown(migration.pk)
    return migration


def _hardware(node: Node) -> dict[str, Any]:
    return {
        "macs": sorted(node.interfaces.values_list("mac", flat=True)),
        "serial": node.serial,
        "system_uuid": str(node.system_uuid) if node.system_uuid else "",
    }


def _swap_hardware(source: Node, target: Node) -> None:
    ifaces = {
        n.pk: list(n.interfaces.values_list("mac", "name", "is_primary")) for n in (source, target)
    }
    NetworkInterface.objects.filter(node__in=(source, target)).delete()
    values = {f: (getattr(source, f), getattr(target, f)) for f in HARDWARE_FIELDS}
    # Unique fields (system UUID, a Pi's serial) are cleared on one row first.
    target.system_uuid = None
    target.serial = ""
    target.save(update_fields=["system_uuid", "serial"])
    for field_name, (of_source, of_target) in values.items():
        setattr(source, field_name, of_target)
        setattr(target, field_name, of_source)
    source.save(update_fields=list(HARDWARE_FIELDS))
    target.save(update_fields=list(HARDWARE_FIELDS))
    NetworkInterface.objects.bulk_create(
        [
            NetworkInterface(node=owner, mac=mac, name=name, is_primary=primary)
            for owner, donor in ((source, target), (target, source))
            for mac, name, primary in ifaces[donor.pk]
        ]
    )


def _queue_teardown(migration_id: int) -> None:
    """The migration's temporary iSCSI LUN is removed by the agent app's task, on commit."""
    teardown = current_app.signature("agent.teardown_migration", args=[migration_id])
    transaction.on_commit(teardown.delay, robust=True)


def kwargs_of(params: dict[str, Any]) -> dict[str, Any]:
    target = params.get("target")
    if isinstance(target, Node):
        target = target.pk
    try:
        target = int(target)
        if not 0 < target < 2**63:
            raise ValueError
    except (TypeError, ValueError):
        raise ValidationError(
            {"target": "migrate needs the id of the discovered node to move onto."}
        ) from None
    disk = params.get("disk") or ""
    if (
        not isinstance(disk, str)
        or len(disk) > 200
        or not re.fullmatch(r"|smallest|largest|serial:[\x21-\x7e]{1,128}|/dev/[\w./-]{1,64}", disk)
    ):
        raise ValidationError(
            {
                "disk": "A disk rule: smallest, largest, serial:SERIAL or /dev/NAME (or empty "
                "when the machine has one disk)."
            }
        )
    return {"target": target, "disk": disk}
