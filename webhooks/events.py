"""Which audit events become which webhook events, and what a payload holds.

Every lifecycle transition, approval step and wipe certificate already
writes an audit event in the same transaction as the change, so webhooks are
derived from the trail after it commits: a delivery never holds up a
transition, and an event is never lost because a receiver was down. A
payload carries the audit event's own fields (already redacted by the audit
writer) and the node's id, hostname and site: nothing the trail does not
show, and no secret.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from audit.hashing import HASHED_FIELDS, format_timestamp
from audit.models import AuditEvent
from nodes import lifecycle as lc
from nodes.choices import NodeState
from nodes.models import Node

from .choices import EventType

TRANSITION_ACTIONS = frozenset(f"node.{name}" for name in lc.ACTIONS)
APPROVAL_REQUESTED = frozenset({"approval.request"})
# A person's approval, and every way a request closes (see approvals.models.Status).
APPROVAL_DECIDED = frozenset(
    {
        "approval.approve",
        "approval.rejected",
        "approval.executed",
        "approval.failed",
        "approval.expired",
        "approval.cancelled",
    }
)
WIPE_CERTIFIED = "node.wipe_certified"
# Every audit action that can become a webhook event (others are skipped at once).
MAPPED_ACTIONS = TRANSITION_ACTIONS | APPROVAL_REQUESTED | APPROVAL_DECIDED | {WIPE_CERTIFIED}

# The audit fields a payload carries: everything the hash covers (the
# timestamp is formatted on its own), and the chain's two hashes.
AUDIT_FIELDS = tuple(name for name in HASHED_FIELDS if name != "timestamp") + (
    "prev_hash",
    "hash",
)


def types_of(event: AuditEvent) -> tuple[str, ...]:
    """The webhook event types ``event`` stands for, most specific first (may be empty).

    A finished install is both ``install.succeeded`` and ``node.transition``;
    a subscription asking for both gets it once, as the first it asks for.
    """
    action = event.action
    if action in TRANSITION_ACTIONS:
        state = (event.changes or {}).get("state") or {}
        if action == f"node.{lc.COMPLETE_INSTALL.name}":
            return (EventType.INSTALL_SUCCEEDED, EventType.NODE_TRANSITION)
        if action == f"node.{lc.FAIL.name}" and state.get("before") == NodeState.INSTALLING:
            return (EventType.INSTALL_FAILED, EventType.NODE_TRANSITION)
        return (EventType.NODE_TRANSITION,)
    if action in APPROVAL_REQUESTED:
        return (EventType.APPROVAL_REQUESTED,)
    if action in APPROVAL_DECIDED:
        return (EventType.APPROVAL_DECIDED,)
    if action == WIPE_CERTIFIED:
        return (EventType.WIPE_CERTIFICATE,)
    return ()


def node_id_of(event: AuditEvent) -> int | None:
    """The node an event is about: its object, or the node an approval request targets."""
    raw: Any = None
    if event.object_type == "nodes.node":
        raw = event.object_id
    elif event.object_type == "approvals.approvalrequest" and isinstance(event.details, dict):
        raw = event.details.get("node")
    try:
        return int(raw) if raw not in (None, "") else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class NodeFacts:
    id: int
    hostname: str
    site_id: int | None
    site: str | None


def nodes_of(events: Iterable[AuditEvent]) -> dict[int, NodeFacts]:
    """The nodes ``events`` are about, as they are now, in one query."""
    ids = {n for n in (node_id_of(e) for e in events) if n is not None}
    rows = Node.objects.filter(pk__in=ids).values_list("pk", "hostname", "site_id", "site__slug")
    return {pk: NodeFacts(pk, hostname, site_id, slug) for pk, hostname, site_id, slug in rows}


def payload(event: AuditEvent, event_type: str, node: NodeFacts | None) -> dict[str, Any]:
    """The JSON body sent for ``event`` as ``event_type``."""
    audit = {name: getattr(event, name) for name in AUDIT_FIELDS}
    audit["timestamp"] = format_timestamp(event.timestamp)
    return {
        "type": event_type,
        "occurred_at": audit["timestamp"],
        "audit": audit,
        "node": (
            {"id": node.id, "hostname": node.hostname, "site": node.site}
            if node is not None
            else None
        ),
    }
