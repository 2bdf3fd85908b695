"""The four-eye rules, the same for every interface (API, admin, pages, commands).

- Destructive node actions (``Action.destructive``; retire only of an
  installed or active node) create an ApprovalRequest instead of acting.
- The requester never approves their own request, superusers included.
- An approver needs the action's permission and access to the node's site.
- Each person counts once; rejecting needs a comment; an expired request can
  no longer be decided (``expire_requests`` marks them, and every decision
  checks the clock itself).
- Execution happens once, when the last needed approval arrives, under a row
  lock on the request; the node must still be in the state it was in when the
  request was made, or execution fails with the reason instead of acting on a
  machine that moved on.
- Every request, decision, expiry, cancellation and execution is an AuditEvent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from audit import services as audit
from nodes import lifecycle as lc
from nodes import services as node_services
from nodes.choices import NodeState as S
from nodes.models import Node
from nodes.permissions import can_access_node, scope_nodes

from .models import ApprovalRequest, Decision, Status

log = logging.getLogger(__name__)
MAX_COMMENT = 2000


class ApprovalError(node_services.TransitionError):
    """A decision the rules refuse; the message says which rule."""


class NotAllowed(ApprovalError):
    pass


class NotPending(ApprovalError):
    pass


def needs_approval(action: lc.Action, state: str) -> bool:
    if not action.destructive:
        return False
    if action.name == "retire":
        return state in (S.INSTALLED, S.ACTIVE)
    return True


def window(action_name: str) -> timedelta:
    hours = settings.PUREBOOT_APPROVAL_WINDOWS.get(action_name, settings.PUREBOOT_APPROVAL_HOURS)
    return timedelta(hours=hours)


def _audit(request: ApprovalRequest, actor: str, what: str, message: str, **details) -> None:
    audit.record(
        actor=actor,
        action=f"approval.{what}",
        object_type="approvals.approvalrequest",
        object_id=request.pk,
        message=message,
        details={"node": request.node_id, "action": request.action, **details},
    )


def _check_text(value: str, field: str, limit: int) -> str:
    value = (value or "").strip()
    if "\x00" in value:
        raise ValidationError({field: "Must not contain NUL characters."})
    if len(value) > limit:
        raise ValidationError({field: f"At most {limit} characters."})
    return value


@dataclass(frozen=True)
class Preview:
    """What a request would do (``?dry_run=1``): nothing is created."""

    node: int
    hostname: str
    action: str
    from_state: str
    to_state: str
    workflow: str | None
    needs_approval: bool


def preview(node_id: int, action: lc.Action, actor: node_services.Actor, params) -> Preview:
    node = Node.objects.select_related("workflow").get(pk=node_id)
    _check_requester(node, action, actor)
    workflow = params.get("workflow") or (node.workflow.name if node.workflow else None)
    return Preview(
        node=node.pk,
        hostname=str(node),
        action=action.name,
        from_state=node.state,
        to_state=action.target,
        workflow=str(workflow) if workflow else None,
        needs_approval=needs_approval(action, node.state),
    )


def _check_requester(node: Node, action: lc.Action, actor: node_services.Actor) -> None:
    node_services.check_source(node, action, actor)
    if not actor.is_person:
        raise node_services.TransitionForbidden(
            f"{action.name} of a {node.state} node needs a person to request it and another "
            "to approve it."
        )
    user = actor.user
    if not (user.has_perm(action.permission) and can_access_node(user, node)):
        raise node_services.TransitionForbidden(
            f"You do not have permission to {action.name} node {node.pk}."
        )


def request_transition(
    node_id: int,
    action: lc.Action,
    actor: node_services.Actor,
    *,
    reason: str,
    params: dict[str, Any],
) -> ApprovalRequest:
    """Record a request for ``action`` on the node; nothing happens to the node yet."""
    reason = _check_text(reason, "reason", node_services.MAX_REASON_LENGTH)
    stored = {k: getattr(v, "name", v) for k, v in params.items()}  # a Workflow by name
    try:
        with transaction.atomic():
            node = Node.objects.select_for_update(of=("self",)).get(pk=node_id)
            _check_requester(node, action, actor)
            now = timezone.now()
            request = ApprovalRequest.objects.create(
                action=action.name,
                node=node,
                node_state=node.state,
                params=stored,
                reason=reason,
                requested_by=actor.user,
                created_at=now,
                expires_at=now + window(action.name),
                required_approvals=settings.PUREBOOT_APPROVALS_REQUIRED,
            )
            _audit(
                request,
                actor.label,
                "request",
                reason,
                from_state=node.state,
                to_state=action.target,
                params=stored,
                expires_at=request.expires_at.isoformat(),
            )
    except IntegrityError:
        pending = ApprovalRequest.objects.filter(node_id=node_id, status=Status.PENDING).first()
        raise NotPending(
            f"Node {node_id} already has a pending request"
            + (f" (#{pending.pk}, {pending.action})." if pending else ".")
        ) from None
    log.info("approval #%s: %s asked to %s node %s", request.pk, actor.label, action.name, node_id)
    return request


def _expire_if_due(request_id: int) -> None:
    """Mark the request expired first, in its own transaction, if its window ended."""
    with transaction.atomic():
        request = ApprovalRequest.objects.select_for_update().filter(pk=request_id).first()
        if request and request.status == Status.PENDING and request.expires_at <= timezone.now():
            _close(request, Status.EXPIRED, "system", "The approval window ended.")


def _locked(request_id: int) -> ApprovalRequest:
    """The request under a row lock, if still pending (call ``_expire_if_due`` first)."""
    request = (
        ApprovalRequest.objects.select_for_update(of=("self",))
        .select_related("node", "requested_by")
        .get(pk=request_id)
    )
    if request.status == Status.EXPIRED or (
        request.status == Status.PENDING and request.expires_at <= timezone.now()
    ):
        raise NotPending(f"Request #{request.pk} expired at {request.expires_at:%Y-%m-%d %H:%M}.")
    if request.status != Status.PENDING:
        raise NotPending(f"Request #{request.pk} is {request.status}, not pending.")
    return request


def _close(request: ApprovalRequest, status: str, actor: str, message: str) -> None:
    request.status = status
    request.closed_at = timezone.now()
    request.result = message
    request.save(update_fields=("status", "closed_at", "result"))
    _audit(request, actor, status, message)


def can_decide(request: ApprovalRequest, user) -> str | None:
    """Why ``user`` may not decide ``request``, or None if they may."""
    if not (user and user.is_authenticated and user.is_active):
        return "Sign in to decide requests."
    if request.requested_by_id == user.pk:
        return "You cannot approve or reject your own request."
    action = lc.ACTIONS[request.action]
    if not user.has_perm(action.permission):
        return f"You do not have permission to {action.name} nodes."
    if not can_access_node(user, request.node):
        return f"You have no access to node {request.node_id}'s site."
    return None


def approve(request_id: int, user, comment: str = "") -> ApprovalRequest:
    """Approve; the last needed approval executes the action, exactly once."""
    comment = _check_text(comment, "comment", MAX_COMMENT)
    _expire_if_due(request_id)
    with transaction.atomic():
        request = _locked(request_id)
        refusal = can_decide(request, user)
        if refusal:
            raise NotAllowed(refusal)
        if request.decisions.filter(user=user).exists():
            raise NotAllowed("You already decided this request; each person counts once.")
        Decision.objects.create(request=request, user=user, approve=True, comment=comment)
        _audit(request, node_services.Actor.of(user).label, "approve", comment)
        if request.decisions.filter(approve=True).count() >= request.required_approvals:
            _execute(request, approvers=[user])
    return request


def _execute(request: ApprovalRequest, approvers: list) -> None:
    """Run the approved action; failures are stored on the request, not raised."""
    action = lc.ACTIONS[request.action]
    params = dict(request.params)
    requester = node_services.Actor.of(request.requested_by)
    names = ", ".join(u.get_username() for u in approvers)
    try:
        with transaction.atomic():
            node = Node.objects.select_for_update(of=("self",)).get(pk=request.node_id)
            if node.state != request.node_state:
                raise node_services.TransitionError(
                    f"node {node.pk} is {node.state} now, not {request.node_state} as when the "
                    "request was made; nothing was done"
                )
            if "workflow" in params:
                from workflows.models import Workflow

                params["workflow"] = Workflow.objects.get(name=params["workflow"])
            node_services.execute_approved(
                node.pk,
                action,
                requester,
                reason=f"{request.reason} (request #{request.pk}, approved by {names})".strip(),
                params=params,
            )
    except Exception as exc:  # noqa: BLE001 - any failure is stored on the request
        message = str(exc) if not isinstance(exc, ValidationError) else "; ".join(exc.messages)
        _close(request, Status.FAILED, "system", f"Execution failed: {message}")
        log.warning("approval #%s: execution failed: %s", request.pk, message)
        return
    _close(
        request,
        Status.EXECUTED,
        "system",
        f"{action.name}: node {request.node_id} {request.node_state} -> {action.target}",
    )


def reject(request_id: int, user, comment: str) -> ApprovalRequest:
    comment = _check_text(comment, "comment", MAX_COMMENT)
    if not comment:
        raise ValidationError({"comment": "Say why: rejecting needs a comment."})
    _expire_if_due(request_id)
    with transaction.atomic():
        request = _locked(request_id)
        refusal = can_decide(request, user)
        if refusal:
            raise NotAllowed(refusal)
        Decision.objects.create(request=request, user=user, approve=False, comment=comment)
        _close(request, Status.REJECTED, node_services.Actor.of(user).label, comment)
    return request


def cancel(request_id: int, user) -> ApprovalRequest:
    _expire_if_due(request_id)
    with transaction.atomic():
        request = _locked(request_id)
        if request.requested_by_id != user.pk and not user.is_superuser:
            raise NotAllowed("Only the requester (or an administrator) cancels a request.")
        _close(request, Status.CANCELLED, node_services.Actor.of(user).label, "Cancelled.")
    return request


def visible_requests(user):
    """Requests on nodes the user can see (site scope), for holders of the view permission."""
    if not user.has_perm("approvals.view_approvalrequest"):
        return ApprovalRequest.objects.none()
    return ApprovalRequest.objects.filter(node__in=scope_nodes(user))


def awaiting(user) -> Q:
    """Pending requests ``user`` may still decide: not their own, not yet decided by them."""
    return Q(status=Status.PENDING) & ~Q(requested_by=user) & ~Q(decisions__user=user)


def expire_requests() -> int:
    """Mark pending requests past their window expired (periodic task)."""
    count = 0
    due = ApprovalRequest.objects.filter(status=Status.PENDING, expires_at__lte=timezone.now())
    for pk in due.values_list("pk", flat=True):
        with transaction.atomic():
            request = ApprovalRequest.objects.select_for_update().get(pk=pk)
            if request.status == Status.PENDING and request.expires_at <= timezone.now():
                _close(request, Status.EXPIRED, "system", "The approval window ended.")
                count += 1
    return count
