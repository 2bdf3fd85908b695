"""Operations on nodes that need a row lock, history and an audit entry.

Everything that changes a node goes through here, whoever asks: the API, the
admin, the boot path, installer reports, Celery tasks and commands. Each
operation runs in one transaction that locks the node row, checks the
actor's permission again inside it, changes the node, and writes a NodeEvent
(for humans) and an AuditEvent (for auditors) before committing.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_fsm import has_transition_perm

from audit import services as audit
from pureboot import gate

from . import lifecycle as lc
from . import migration
from .choices import EventKind, NodeState
from .identifiers import normalize_mac
from .models import Migration, NetworkInterface, Node, NodeEvent, Site, Tag, is_pi_with_serial
from .permissions import can_access_node, can_access_site
from .transitions import (  # noqa: F401  (names callers know from nodes.services)
    MAX_REASON_LENGTH,
    SYSTEM,
    Actor,
    IllegalTransition,
    TransitionError,
    TransitionForbidden,
    binding,
    diff,
    json_params,
    pin_version,
    queue_dhcp_sync,
    record,
    snapshot,
)

log = logging.getLogger(__name__)

NEEDS_INTERFACE = (
    "A node needs at least one network interface (a Raspberry Pi may give its serial instead)."
)
EDITABLE_FIELDS = (
    "hostname",
    "site",
    "serial",
    "system_uuid",
    "arch",
    "firmware",
    "vendor",
    "model",
    "metadata",
)


# --- queries -----------------------------------------------------------------


def available_actions(node: Node, actor: Actor) -> list[lc.Action]:
    """The actions ``actor`` may perform on ``node`` in its current state."""
    result = []
    for action in lc.ACTIONS.values():
        if node.state not in action.sources:
            continue
        if actor.is_person:
            if not has_transition_perm(getattr(node, action.name), actor.user):
                continue
        elif not action.system_allowed:
            continue
        result.append(action)
    return result


def resolve_action(node: Node, target: str, actor: Actor) -> lc.Action:
    """Pick the action that takes ``node`` from its state to ``target``."""
    candidates = [a for a in lc.ACTIONS.values() if node.state in a.sources and a.target == target]
    if actor.is_person:
        for action in candidates:
            if not action.system_only:
                return action
        if candidates:
            raise TransitionForbidden(
                f"{node.state} -> {target} happens only when the system reports it "
                f"({', '.join(a.name for a in candidates)}); no person can request it."
            )
    elif candidates:
        return candidates[0]
    raise illegal(node, target, actor)


def illegal(node: Node, target: str, actor: Actor) -> IllegalTransition:
    """The error for a change ``node``'s state does not allow, naming what it does allow."""
    return IllegalTransition(
        node.pk, node.state, target, sorted({a.target for a in available_actions(node, actor)})
    )


def check_source(node: Node, action: lc.Action, actor: Actor) -> None:
    """Raise IllegalTransition unless ``action`` may start from the node's state."""
    if node.state not in action.sources:
        raise illegal(node, action.target, actor)


# --- lifecycle -------------------------------------------------------------


def perform(
    node_id: int,
    action_name: str,
    actor: Actor,
    *,
    reason: str = "",
    approval: gate.Approval | None = None,
    **params: Any,
) -> Node:
    """Run one lifecycle action on a node; the only entry point for state changes.

    The node row is locked first; its state is read and the decision made
    under that lock (by :mod:`pureboot.gate` for four-eye actions). Raises
    IllegalTransition (wrong state), TransitionForbidden (no permission, or
    a system-only action asked by a person), ApprovalRequired (a second
    person must approve: nothing changed; the caller files the proposal) and
    ValidationError (bad parameters). ``approval`` is the sealed approval the
    approvals app passes when it executes an approved request.
    """
    action = lc.ACTIONS.get(action_name)
    if action is None:
        raise ValidationError(
            {"action": f"Unknown action {action_name!r}; known: {', '.join(lc.ACTIONS)}."}
        )
    return _execute(node_id, action, actor, reason=reason, params=params, approval=approval)


ApprovalRequired = gate.ApprovalRequired


def target(node_id: int) -> str:
    return f"node:{node_id}"


def _four_eye(
    node: Node,
    action_name: str,
    actor: Actor,
    *,
    bound_to: str,
    approval: gate.Approval | None,
    proposal: gate.Proposal,
) -> None:
    """Ask the gate about a four-eye change of ``node`` (locked); raise unless allowed."""
    try:
        verdict = gate.decide(
            actor.user,
            action=action_name,
            target=target(node.pk),
            permission=None,  # the caller checked the action's own permission
            four_eye=True,
            bound_to=bound_to,
            approval=approval,
            system=not actor.is_person,
        )
    except gate.Forbidden as exc:
        raise TransitionForbidden(str(exc)) from None
    if verdict is gate.NEEDS_APPROVAL:
        raise ApprovalRequired(proposal)


def preview_transition(
    node_id: int, action_name: str, actor: Actor, **params: Any
) -> dict[str, Any]:
    """What ``perform`` would do (``?dry_run=1``), checked the same way; changes nothing."""
    action = lc.ACTIONS.get(action_name)
    if action is None:
        raise ValidationError({"action": f"Unknown action {action_name!r}."})
    node = Node.objects.select_related("workflow").get(pk=node_id)
    check_source(node, action, actor)
    if actor.is_person and not has_transition_perm(getattr(node, action.name), actor.user):
        raise TransitionForbidden(f"You do not have permission to {action.name} node {node.pk}.")
    workflow = params.get("workflow") or node.workflow
    needs = action.needs_second_person(node.state, node.ever_installed)
    disks = (node.metadata or {}).get("disks", []) if action.name == "deprovision" else []
    return {
        "dry_run": True,
        "node": node.pk,
        "hostname": str(node),
        "action": action.name,
        "from_state": node.state,
        "to_state": action.target,
        "workflow": getattr(workflow, "name", None),
        "needs_approval": needs,
        "disks_to_wipe": disks if isinstance(disks, list) else [],
    }


def preview_migration(node_id: int, actor: Actor, **params: Any) -> dict[str, Any]:
    """``perform(node_id, "migrate", …)``'s checks without doing anything (a dry run)."""
    preview = preview_transition(node_id, lc.MIGRATE.name, actor)
    kwargs = _transition_kwargs(lc.MIGRATE, params)
    with transaction.atomic():
        node = Node.objects.get(pk=node_id)
        target = migration.check_target(node, actor, kwargs)
    return {**preview, "target": target.pk, "target_hostname": str(target), **kwargs}


def _execute(
    node_id: int,
    action: lc.Action,
    actor: Actor,
    *,
    reason: str,
    params: dict[str, Any],
    approval: gate.Approval | None = None,
) -> Node:
    reason = (reason or "").strip()
    if "\x00" in reason:
        raise ValidationError({"reason": "Must not contain NUL characters."})
    if len(reason) > MAX_REASON_LENGTH:
        raise ValidationError({"reason": f"At most {MAX_REASON_LENGTH} characters."})
    kwargs = _transition_kwargs(action, params)
    with transaction.atomic():
        # A migration moves two nodes: both rows are locked, in id order, first.
        migration.lock_nodes(node_id, kwargs.get("target"), *migration.partners(node_id))
        node = (
            Node.objects.select_for_update(of=("self",))
            .select_related("workflow", "workflow_version")
            .get(pk=node_id)
        )
        check_source(node, action, actor)
        if actor.is_person:
            if action.system_only:
                raise TransitionForbidden(
                    f"{action.name} is performed by the system only, not by a person."
                )
            if not has_transition_perm(getattr(node, action.name), actor.user):
                raise TransitionForbidden(
                    f"You do not have permission to {action.name} node {node.pk}."
                )
        elif not action.system_allowed:
            raise TransitionForbidden(f"{action.name} needs a person.")
        running = migration.running(node.pk) if node.state == NodeState.MIGRATING else None
        if action is lc.CANCEL_MIGRATION and running and running.target_id == node.pk:
            raise TransitionError(
                f"Node {node.pk} is the machine migration {running.pk} moves to; cancel the "
                f"migration on its source, node {running.source_id}."
            )
        target = migration.check_target(node, actor, kwargs) if action is lc.MIGRATE else None
        if action.needs_second_person(node.state, node.ever_installed) or approval:
            _four_eye(
                node,
                action.name,
                actor,
                bound_to=migration.bound_to(node, target) if target else binding(node),
                approval=approval,
                proposal=gate.Proposal(
                    action.name,
                    "node",
                    str(node.pk),
                    {k: getattr(v, "name", v) for k, v in kwargs.items()},  # a Workflow by name
                    reason,
                ),
            )
        record(node, action, actor, reason, kwargs, approval)
        if target is not None:
            migration.start(node, target, actor, reason, kwargs, approval)
        if running is not None:
            running.refresh_from_db()
            if running.running:  # the node left the migration some other way than its end
                status = (
                    Migration.Status.CANCELLED
                    if action is lc.CANCEL_MIGRATION
                    else Migration.Status.FAILED
                )
                migration.close(running, status, reason or action.label)
    return node


def _transition_kwargs(action: lc.Action, params: dict[str, Any]) -> dict[str, Any]:
    unexpected = set(params) - set(action.params)
    if unexpected:
        raise ValidationError(
            {name: f"{action.name} takes no parameter {name!r}." for name in sorted(unexpected)}
        )
    kwargs = {}
    if "workflow" in action.params:
        workflow = params.get("workflow")
        if workflow is None:
            raise ValidationError({"workflow": f"{action.name} needs a workflow."})
        kwargs["workflow"] = workflow
    if action.name == "deprovision":
        after = params.get("after") or "retired"
        category = params.get("category") or "best"
        errors = {}
        if after not in lc.DEPROVISION_AFTER:
            errors["after"] = f"One of {', '.join(lc.DEPROVISION_AFTER)}, not {after!r}."
        if category not in lc.WIPE_CATEGORIES:
            errors["category"] = f"One of {', '.join(lc.WIPE_CATEGORIES)}, not {category!r}."
        if errors:
            raise ValidationError(errors)
        kwargs.update(after=after, category=category)
    if action is lc.MIGRATE:
        kwargs.update(migration.kwargs_of(params))
    return kwargs


def fail_stuck_installs(timeout_minutes: int | None = None) -> list[int]:
    """Fail every node that has been ``installing`` longer than the timeout.

    Returns the ids of the nodes failed. A node that moved on meanwhile is
    skipped, not failed.
    """
    minutes = timeout_minutes or settings.PUREBOOT_INSTALL_TIMEOUT_MINUTES
    cutoff = timezone.now() - timedelta(minutes=minutes)
    stuck = Node.objects.filter(
        state=NodeState.INSTALLING, state_changed_at__lt=cutoff
    ).values_list("pk", flat=True)
    failed = []
    for node_id in list(stuck):
        try:
            perform(
                node_id,
                "fail",
                SYSTEM,
                reason=f"No install report for more than {minutes} minutes.",
            )
        except IllegalTransition:
            continue
        failed.append(node_id)
    return failed


# --- registry edits ----------------------------------------------------------


def create_node(
    actor: Actor,
    fields: dict[str, Any],
    interfaces: list[dict[str, Any]],
    tags: list[str] | None = None,
) -> Node:
    """Register a node with its interfaces; validates everything or saves nothing."""
    _check_fields(fields)
    if not interfaces and not is_pi_with_serial(fields.get("firmware"), fields.get("serial")):
        raise ValidationError({"interfaces": NEEDS_INTERFACE})
    if actor.is_person and not can_access_site(actor.user, fields.get("site")):
        raise TransitionForbidden("You may not register nodes at that site.")
    try:
        with transaction.atomic():
            node = Node(**fields)
            node.full_clean(exclude=["state"])
            node.save()
            if interfaces:
                _set_interfaces(node, _clean_interfaces(interfaces), actor)
            if tags is not None:
                node.tags.set(_tags(tags))
            after = snapshot(node)
            NodeEvent.objects.create(
                node=node,
                kind=EventKind.CREATED,
                actor=actor.label,
                user=actor.user,
                to_state=node.state,
                message="Registered",
            )
            audit.record(
                actor=actor.label,
                action="node.create",
                object_type="nodes.node",
                object_id=node.pk,
                changes={k: {"before": None, "after": v} for k, v in after.items()},
            )
            queue_dhcp_sync(node.pk)
    except IntegrityError as exc:
        raise ValidationError(
            "Another change registered the same identifier at the same moment; retry."
        ) from exc
    return node


def update_node(
    node_id: int,
    actor: Actor,
    fields: dict[str, Any],
    interfaces: list[dict[str, Any]] | None = None,
    tags: list[str] | None = None,
    *,
    approval: gate.Approval | None = None,
) -> Node:
    """Edit a node's registry fields (never its state); one history entry per edit.

    Changing what the machine is recognised by (a MAC, the system UUID, the
    serial) while the node is in a guarded state (``lc.IDENTITY_GUARDED_STATES``)
    is a four-eye change: ApprovalRequired is raised with the whole edit as the
    proposal, and nothing is saved until a second person approves it.
    """
    _check_fields(fields)
    wanted = _clean_interfaces(interfaces) if interfaces is not None else None
    try:
        with transaction.atomic():
            node = Node.objects.select_for_update().get(pk=node_id)
            if actor.is_person:
                if not can_access_node(actor.user, node):
                    raise TransitionForbidden("You may not change this node.")
                if "site" in fields and not can_access_site(actor.user, fields["site"]):
                    raise TransitionForbidden("You may not move nodes to that site.")
            bound_to = binding(node)
            before = snapshot(node)
            before_identity = _identity(node, None)
            for name, value in fields.items():
                setattr(node, name, value)
            node.full_clean(exclude=["state"])
            if wanted is not None:
                _check_conflicts(node, wanted, actor)  # before asking anyone to approve
            if node.state in lc.IDENTITY_GUARDED_STATES and (
                _identity(node, wanted) != before_identity or approval is not None
            ):
                _four_eye(
                    node,
                    lc.IDENTITY_CHANGE,
                    actor,
                    bound_to=bound_to,
                    approval=approval,
                    proposal=gate.Proposal(
                        lc.IDENTITY_CHANGE,
                        "node",
                        str(node.pk),
                        {
                            "fields": _json_fields(fields),
                            "interfaces": interfaces,
                            "tags": tags,
                        },
                    ),
                )
            node.save()
            if wanted is not None:
                _set_interfaces(node, wanted, actor)
            if node.needs_interface and not node.interfaces.exists():
                # Also when an edit turns a Pi known by its serial into another machine.
                raise ValidationError({"interfaces": NEEDS_INTERFACE})
            if tags is not None:
                node.tags.set(_tags(tags))
            changes = diff(before, snapshot(node))
            if changes:
                NodeEvent.objects.create(
                    node=node,
                    kind=EventKind.EDITED,
                    actor=actor.label,
                    user=actor.user,
                    message="Edited " + ", ".join(sorted(changes)),
                    details={"changes": changes},
                )
                audit.record(
                    actor=actor.label,
                    action="node.update",
                    object_type="nodes.node",
                    object_id=node.pk,
                    changes=changes,
                    details={"approval_request": approval.request_id} if approval else None,
                )
                if "interfaces" in changes:
                    queue_dhcp_sync(node.pk)
    except IntegrityError as exc:
        raise ValidationError(
            "Another change registered the same identifier at the same moment; retry."
        ) from exc
    return node


def _identity(node: Node, wanted: dict[str, dict[str, Any]] | None) -> tuple:
    """What the machine is recognised by: serial, UUID and MACs (``wanted`` if given)."""
    macs = (
        sorted(wanted)
        if wanted is not None
        else sorted(node.interfaces.values_list("mac", flat=True))
    )
    return (node.serial, str(node.system_uuid) if node.system_uuid else "", tuple(macs))


def _json_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """An edit as JSON for a proposal (a site by its primary key)."""
    out = {}
    for name, value in fields.items():
        if name == "site":
            value = value.pk if value is not None else None
        elif name == "system_uuid" and value is not None:
            value = str(value)
        out[name] = value
    return out


def fields_from_json(data: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`_json_fields`, for executing an approved edit."""
    out = dict(data)
    if "site" in out and out["site"] is not None:
        out["site"] = Site.objects.get(pk=out["site"])
    return out


def _check_fields(fields: dict[str, Any]) -> None:
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValidationError(
            {name: "This field is not editable; use the lifecycle." for name in sorted(unknown)}
        )


def _tags(names: list[str]) -> list[Tag]:
    tags = []
    for name in names:
        tag = Tag(name=name)
        tag.full_clean(validate_unique=False)
        tags.append(Tag.objects.get_or_create(name=name)[0])
    return tags


def _clean_interfaces(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``items`` ({mac, name, is_primary}) by normalised MAC; ValidationError if malformed."""
    errors: list[str] = []
    wanted: dict[str, dict[str, Any]] = {}
    for index, item in enumerate(items):
        try:
            mac = normalize_mac(item.get("mac"))
        except ValueError as exc:
            errors.append(f"interfaces[{index}].mac: {exc}")
            continue
        if mac in wanted:
            errors.append(f"interfaces[{index}].mac: {mac} is listed twice.")
        wanted[mac] = item
    if errors:
        raise ValidationError({"interfaces": errors})
    if len([mac for mac, item in wanted.items() if item.get("is_primary")]) > 1:
        raise ValidationError({"interfaces": "Only one interface can be primary."})
    return wanted


def _check_conflicts(node: Node, wanted: dict[str, dict[str, Any]], actor: Actor) -> None:
    """Refuse MACs registered to another node, naming it only to someone who may see it."""
    taken = (
        NetworkInterface.objects.filter(mac__in=wanted).exclude(node=node).select_related("node")
    )
    conflicts = []
    for iface in taken:
        if actor.is_person and not can_access_node(actor.user, iface.node):
            conflicts.append(f"MAC {iface.mac} is already registered to another node.")
        else:
            conflicts.append(f"MAC {iface.mac} is already on node {iface.node_id}.")
    if conflicts:
        raise ValidationError({"interfaces": conflicts})


def _set_interfaces(node: Node, wanted: dict[str, dict[str, Any]], actor: Actor) -> None:
    """Replace a node's interfaces with ``wanted`` (from :func:`_clean_interfaces`).

    A MAC registered to another node is refused, never moved: it leaves its
    node only by an edit of that node. The error names the other node only to
    someone who may see it.
    """
    primaries = [mac for mac, item in wanted.items() if item.get("is_primary")]
    primary = primaries[0] if primaries else next(iter(wanted), None)
    _check_conflicts(node, wanted, actor)
    node.interfaces.exclude(mac__in=wanted).delete()
    node.interfaces.update(is_primary=False)
    for mac, item in wanted.items():
        iface = NetworkInterface(
            node=node, mac=mac, name=(item.get("name") or "").strip(), is_primary=mac == primary
        )
        iface.full_clean(exclude=["node", "mac"], validate_unique=False)
        NetworkInterface.objects.update_or_create(
            node=node, mac=mac, defaults={"name": iface.name, "is_primary": iface.is_primary}
        )


# --- audit snapshots ---------------------------------------------------------
