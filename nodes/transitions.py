"""One lifecycle transition, recorded: who performs it, and what it leaves behind.

``record`` moves a locked, checked node by one action and writes its history
(NodeEvent), its audit event and its DHCP entry's refresh. ``nodes.services``
(one node) and ``nodes.migration`` (two nodes moving together) decide, under
the row locks, whether a transition may happen; both record it here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit import services as audit
from pureboot import gate

from . import lifecycle as lc
from . import metrics
from .choices import EventKind
from .models import Node, NodeEvent

log = logging.getLogger(__name__)

MAX_REASON_LENGTH = 1000


@dataclass(frozen=True)
class Actor:
    """Who performs an operation: a person, a node (its token) or the system."""

    label: str
    user: Any = None

    @classmethod
    def of(cls, user) -> Actor:
        return cls(f"user:{user.get_username()}", user)

    @classmethod
    def for_node(cls, node_id: int) -> Actor:
        return cls(f"node:{node_id}")

    @property
    def is_person(self) -> bool:
        return self.user is not None


SYSTEM = Actor("system")


class TransitionError(Exception):
    """Base for refused lifecycle changes."""


@dataclass
class IllegalTransition(TransitionError):
    """The node's current state does not allow the requested change (HTTP 409)."""

    node_id: int
    current: str
    requested: str
    allowed: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        allowed = ", ".join(self.allowed) or "none"
        return (
            f"Node {self.node_id} is {self.current}; it cannot go to {self.requested}. "
            f"Allowed targets for you now: {allowed}."
        )


class TransitionForbidden(TransitionError):
    """The actor may not perform this change (HTTP 403)."""


def binding(node: Node) -> str:
    """What an approval for ``node`` is bound to: its state and every identity it boots by.

    An approval made for one machine is void once a MAC, UUID or serial (or
    the state) changed: it can never hit another machine.
    """
    return gate.binding(identity_fields(node))


def identity_fields(node: Node) -> dict[str, Any]:
    return {
        "state": node.state,
        "serial": node.serial,
        "system_uuid": str(node.system_uuid) if node.system_uuid else "",
        "macs": sorted(node.interfaces.values_list("mac", flat=True)),
    }


def record(
    node: Node,
    action: lc.Action,
    actor: Actor,
    reason: str,
    kwargs: dict[str, Any] | None = None,
    approval: gate.Approval | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Move ``node`` (locked, checked) by ``action``: its history, audit event and DHCP entry."""
    kwargs = kwargs or {}
    before = snapshot(node)
    entered_before_at = node.state_changed_at
    if node.state in lc.HOLDS_INSTALLED_SYSTEM:
        node.ever_installed = True  # whatever way it got there
    getattr(node, action.name)(**pin_version(node, action, kwargs))
    node.state_changed_at = timezone.now()
    node.save()
    after = snapshot(node)
    changes = diff(before, after)
    NodeEvent.objects.create(
        node=node,
        kind=EventKind.TRANSITION,
        actor=actor.label,
        user=actor.user,
        from_state=before["state"],
        to_state=node.state,
        message=reason or action.label,
        details={
            "action": action.name,
            **json_params(kwargs),
            **(details or {}),
            **(
                {"approval": approval.request_id, "approvers": list(approval.approvers)}
                if approval
                else {}
            ),
        },
    )
    audit.record(
        actor=actor.label,
        action=f"node.{action.name}",
        object_type="nodes.node",
        object_id=node.pk,
        changes=changes,
        message=reason,
    )
    queue_dhcp_sync(node.pk)
    queue_nfsroot_sync(node.pk)
    # Counted on commit: a transition rolled back (a later check, a lost race) never happened.
    state_left, state_entered = before["state"], node.state
    transaction.on_commit(
        lambda: metrics.count_transition(state_left, state_entered, entered_before_at)
    )
    log.info(
        "node %s: %s -> %s by %s",
        node.pk,
        state_left,
        state_entered,
        actor.label,
        extra={"node": node.pk, "actor": actor.label},
    )


def queue_dhcp_sync(node_id: int) -> None:
    """DHCP answers follow the lifecycle (Rule E): rewrite the node's dnsmasq host entry.

    Queued by name on commit (the boot server app owns the task); a queueing
    failure is logged, never undoing a committed change. Off while
    PUREBOOT_DHCP_HOSTSDIR is empty.
    """
    if settings.PUREBOOT_DHCP_HOSTSDIR:
        sync = current_app.signature("bootserve.sync_dhcp_host", args=[node_id])
        transaction.on_commit(sync.delay, robust=True)


def queue_nfsroot_sync(node_id: int) -> None:
    """A diskless node's NFS overlay follows the lifecycle: made when its install starts,
    removed when it is retired or deprovisioned (``bootserve.nfsroot``).

    Queued by name on commit, like the DHCP sync; the task decides from the
    node's state at the time it runs, so it is queued for every transition
    and does nothing for a node without an nfs_root workflow. Off while
    PUREBOOT_NFS_SERVER is empty.
    """
    if settings.PUREBOOT_NFS_SERVER:
        sync = current_app.signature("bootserve.sync_nfs_root", args=[node_id])
        transaction.on_commit(sync.delay, robust=True)


def pin_version(node: Node, action: lc.Action, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Assigning pins the workflow's current version: later edits never touch this node."""
    if action.name != "assign":
        return kwargs
    version = kwargs["workflow"].check_assignable(node)
    return {**kwargs, "version": version}


def json_params(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) for k, v in kwargs.items()}


def snapshot(node: Node) -> dict[str, Any]:
    """The node's audited fields as JSON values."""
    data: dict[str, Any] = {
        "hostname": node.hostname,
        "site": node.site.slug if node.site_id else None,
        "serial": node.serial,
        "system_uuid": str(node.system_uuid) if node.system_uuid else None,
        "arch": node.arch,
        "firmware": node.firmware,
        "vendor": node.vendor,
        "model": node.model,
        "metadata": node.metadata,
        "state": node.state,
        "workflow": node.workflow.name if node.workflow_id else None,
        "workflow_version": node.workflow_version.number if node.workflow_version_id else None,
        "install_attempts": node.install_attempts,
    }
    if node.pk:
        data["interfaces"] = sorted(
            f"{i.mac}{' (primary)' if i.is_primary else ''}" for i in node.interfaces.all()
        )
        data["tags"] = sorted(t.name for t in node.tags.all())
    return data


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        key: {"before": before.get(key), "after": after.get(key)}
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    }
