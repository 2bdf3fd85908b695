"""The four-eye rules, the same for every interface (API, admin, pages, commands).

- Destructive node actions (``Action.destructive``; retire only of an
  installed or active node), credential changes, system settings, audit
  clearing and emergency access (see :mod:`approvals.kinds`) create an
  ApprovalRequest instead of acting.
- The requester never approves their own request, superusers included.
- An approver needs the action's permission and, for node actions, access to
  the node's site; nobody approves emergency access for themselves.
- Each person counts once; rejecting needs a comment; an expired request can
  no longer be decided (``expire_requests`` marks them, and every decision
  checks the clock itself).
- Execution happens once, when the last needed approval arrives, under a row
  lock on the request; the target must still be as it was when the request
  was made (the node in the same state, the credential unchanged, ...), or
  execution fails with the reason instead of acting on something that moved on.
- Secret parameters are sealed with the credential keys and wiped when the
  request closes.
- Every request, decision, expiry, cancellation and execution is an AuditEvent.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts import services as accounts
from audit import services as audit
from credentials import services as credentials
from credentials.models import Credential
from nodes import lifecycle as lc
from nodes import services as node_services
from nodes.models import Node
from nodes.permissions import can_access_node, scope_nodes
from pureboot import gate
from systemsettings import config
from workflows.models import Workflow

from .kinds import KINDS, Kind
from .models import ApprovalRequest, Decision, Status

log = logging.getLogger(__name__)
MAX_COMMENT = 2000


# Every refusal a face may show: the approval rules' and the lifecycle's.
Refused = node_services.TransitionError


class ApprovalError(node_services.TransitionError):
    """A decision the rules refuse; the message says which rule."""


class NotAllowed(ApprovalError):
    pass


class NotPending(ApprovalError):
    pass


def window(action_name: str) -> timedelta:
    hours = config.get("approval_windows").get(action_name) or config.get("approval_hours")
    return timedelta(hours=hours)


def _audit(request: ApprovalRequest, actor: str, what: str, message: str, **details) -> None:
    audit.record(
        actor=actor,
        action=f"approval.{what}",
        object_type="approvals.approvalrequest",
        object_id=request.pk,
        message=message,
        details={
            "action": request.action,
            "target": f"{request.target_type}:{request.target_id}",
            "target_label": request.target_label,
            **details,
        },
    )


def _check_text(value: str, field: str, limit: int) -> str:
    value = (value or "").strip()
    if "\x00" in value:
        raise ValidationError({field: "Must not contain NUL characters."})
    if len(value) > limit:
        raise ValidationError({field: f"At most {limit} characters."})
    return value


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


def _draft(
    kind: Kind,
    user,
    *,
    target_id: str,
    target_label: str,
    params: dict[str, Any],
    reason: str = "",
    node: Node | None = None,
) -> ApprovalRequest:
    """An unsaved request with the target's snapshot read by the kind itself
    (call inside a transaction: kinds lock what they read)."""
    now = timezone.now()
    draft = ApprovalRequest(
        action=kind.name,
        target_type=kind.target_type,
        target_id=str(target_id),
        target_label=target_label[:255],
        node=node,
        node_state=node.state if node is not None else "",
        params=params,
        reason=reason,
        requested_by=user,
        created_at=now,
        expires_at=now + window(kind.name),
        required_approvals=config.get("approvals_required"),
    )
    if kind.check:
        kind.check(draft)
    draft.snapshot = kind.current(draft)
    return draft


def submit(
    kind: Kind,
    user,
    *,
    target_id: str,
    target_label: str,
    params: dict[str, Any],
    reason: str,
    secrets: dict[str, str] | None = None,
    node: Node | None = None,
) -> ApprovalRequest:
    """Record a request of ``kind``; nothing happens to the target yet.

    Callers check what is specific to the target (and lock it) first; this
    checks the requester's permission, seals ``secrets``, and refuses a
    second pending request for the same target.
    """

    reason = _check_text(reason, "reason", node_services.MAX_REASON_LENGTH)
    if not (user and user.is_authenticated and user.is_active):
        raise node_services.TransitionForbidden("Sign in to make requests.")
    try:
        with transaction.atomic():
            request = _draft(
                kind,
                user,
                target_id=target_id,
                target_label=target_label,
                params=params,
                reason=reason,
                node=node,
            )
            request.sealed = credentials.encrypt(json.dumps(secrets)) if secrets else ""
            request.save(force_insert=True)
            _audit(
                request,
                node_services.Actor.of(user).label,
                "request",
                reason,
                plainly=kind.describe(request),
                params=params,
                secrets_sealed=sorted(secrets or {}),
                expires_at=request.expires_at.isoformat(),
                **(
                    {
                        "node": node.pk,
                        "from_state": node.state,
                        "to_state": lc.ACTIONS[kind.name].target
                        if kind.name in lc.ACTIONS
                        else node.state,
                    }
                    if node is not None
                    else {}
                ),
            )
    except IntegrityError:
        pending = ApprovalRequest.objects.filter(
            target_type=kind.target_type, target_id=str(target_id), status=Status.PENDING
        ).first()
        raise NotPending(
            f"{target_label} already has a pending request"
            + (f" (#{pending.pk}, {pending.action})." if pending else ".")
        ) from None
    log.info("approval #%s: %s asked for %s on %s", request.pk, user, kind.name, target_label)
    return request


def request_transition(
    node_id: int,
    action: lc.Action,
    actor: node_services.Actor,
    *,
    reason: str,
    params: dict[str, Any],
) -> ApprovalRequest:
    """Record a request for ``action`` on the node; nothing happens to the node yet."""
    stored = {k: getattr(v, "name", v) for k, v in params.items()}  # a Workflow by name
    with transaction.atomic():
        node = Node.objects.select_for_update(of=("self",)).get(pk=node_id)
        _check_requester(node, action, actor)
        return submit(
            KINDS[action.name],
            actor.user,
            target_id=str(node.pk),
            target_label=str(node),
            params=stored,
            reason=reason,
            node=node,
        )


def file(proposal: gate.Proposal, user) -> ApprovalRequest:
    """Record what a domain service refused to do alone (``gate.ApprovalRequired``).

    The faces (API, admin, commands) call this when a service raises
    ApprovalRequired; the node is locked and the requester checked again.
    """
    if proposal.action == accounts.ROLE_CHANGE:
        return request_role_change(int(proposal.target_id), user, proposal.params, proposal.reason)
    if proposal.target_type != "node":
        kind = KINDS.get(proposal.action)
        if kind is None or kind.target_type != proposal.target_type:
            raise ValueError(f"no proposals of {proposal.target_type} are filed here")
        return request_other(
            kind.name,
            user,
            target_id=proposal.target_id,
            target_label=proposal.target_label or f"{proposal.target_type} {proposal.target_id}",
            params=proposal.params,
            reason=proposal.reason,
        )
    actor = node_services.Actor.of(user)
    if proposal.action == lc.IDENTITY_CHANGE:
        return request_identity_change(int(proposal.target_id), actor, params=proposal.params)
    params = dict(proposal.params)
    if "workflow" in params:
        params["workflow"] = Workflow.objects.get(name=params["workflow"])
    return request_transition(
        int(proposal.target_id),
        lc.ACTIONS[proposal.action],
        actor,
        reason=proposal.reason,
        params=params,
    )


def request_identity_change(
    node_id: int, actor: node_services.Actor, *, params: dict[str, Any], reason: str = ""
) -> ApprovalRequest:
    """Record a request to change what a node is recognised by (MACs, UUID, serial)."""
    with transaction.atomic():
        node = Node.objects.select_for_update(of=("self",)).get(pk=node_id)
        user = actor.user
        if not (
            actor.is_person and user.has_perm("nodes.change_node") and can_access_node(user, node)
        ):
            raise node_services.TransitionForbidden(f"You may not change node {node.pk}.")
        return submit(
            KINDS[lc.IDENTITY_CHANGE],
            user,
            target_id=str(node.pk),
            target_label=str(node),
            params=params,
            reason=reason,
            node=node,
        )


def request_role_change(target_id: int, user, params: dict[str, Any], reason: str = ""):
    """Record a request to give account ``target_id`` roles that can approve."""
    kind = KINDS[accounts.ROLE_CHANGE]
    _may_ask(kind, user)
    with transaction.atomic():
        target = get_user_model().objects.select_for_update().get(pk=target_id)
        return submit(
            kind,
            user,
            target_id=str(target.pk),
            target_label=target.get_username(),
            params=params,
            reason=reason,
        )


def _may_ask(kind: Kind, user, permission: str | None = None) -> None:
    permission = permission or kind.permission
    if not (user and user.is_authenticated and user.is_active and user.has_perm(permission)):
        raise node_services.TransitionForbidden(f"You do not have permission to ask: {kind.label}.")


def request_other(
    kind_name: str, user, *, dry_run: bool = False, permission: str | None = None, **fields: Any
) -> ApprovalRequest | dict[str, Any]:
    """A request for a non-node kind, after checking the requester's permission.

    ``permission`` replaces the kind's own for asking (emergency access for
    oneself). With ``dry_run`` nothing is created: the answer says what the
    request would do.
    """
    kind = KINDS[kind_name]
    _may_ask(kind, user, permission)
    if not dry_run:
        return submit(kind, user, **fields)
    with transaction.atomic():
        draft = _draft(
            kind,
            user,
            target_id=fields["target_id"],
            target_label=fields["target_label"],
            params=fields["params"],
        )
    return {
        "dry_run": True,
        "action": kind.name,
        "target": f"{draft.target_type}:{draft.target_id}",
        "target_label": draft.target_label,
        "what": kind.describe(draft),
        "needs_approval": True,
        "expires_in_hours": (draft.expires_at - draft.created_at).total_seconds() / 3600,
        "required_approvals": draft.required_approvals,
    }


def request_credential(
    kind_name: str,
    user,
    credential: Credential | None,
    fields: dict[str, Any],
    secrets: dict[str, str],
    *,
    reason: str = "",
    dry_run: bool = False,
) -> ApprovalRequest | dict[str, Any]:
    """Ask for ``credential.create|change|delete`` (API and admin alike).

    The change waits for a second person; ``secrets`` stay sealed in the
    request until then. Returns the ApprovalRequest (or, with ``dry_run``,
    what it would ask for). Raises ValidationError for a name already taken.
    """
    name = fields.get("name")
    taken = Credential.objects.filter(name=name)
    if credential is not None:
        taken = taken.exclude(pk=credential.pk)
    if name and taken.exists():
        raise ValidationError({"name": ["A credential with this name already exists."]})
    return request_other(
        kind_name,
        user,
        dry_run=dry_run,
        target_id=str(credential.pk) if credential else f"new:{name}",
        target_label=credential.name if credential else name,
        params={"fields": fields, "secrets_set": sorted(secrets)},
        secrets=secrets,
        reason=reason,
    )


def rotate_sealed(reencrypt) -> int:
    """Re-encrypt the sealed secrets of pending requests under the primary key.

    Called by ``rotate_keys`` inside its transaction with
    :func:`credentials.services.reencrypt`; returns how many it re-encrypted.
    """
    count = 0
    pending = ApprovalRequest.objects.select_for_update().filter(status=Status.PENDING)
    for request in pending.exclude(sealed=""):
        fresh = reencrypt(request.sealed, f"Approval request #{request.pk}'s sealed secrets")
        if fresh is not None:
            request.sealed = fresh
            request.save(update_fields=("sealed",))
            count += 1
    return count


def _expire_if_due(request_id: int) -> bool:
    """Mark the request expired, in its own transaction, if its window ended."""
    with transaction.atomic():
        request = ApprovalRequest.objects.select_for_update().filter(pk=request_id).first()
        if request is None or not request.is_expired:
            return False
        _close(request, Status.EXPIRED, "system", "The approval window ended.")
        return True


def _locked(request_id: int) -> ApprovalRequest:
    """The request under a row lock, if still pending (call ``_expire_if_due`` first)."""
    request = (
        ApprovalRequest.objects.select_for_update(of=("self",))
        .select_related("node", "requested_by")
        .get(pk=request_id)
    )
    if request.status == Status.EXPIRED or request.is_expired:
        raise NotPending(f"Request #{request.pk} expired at {request.expires_at:%Y-%m-%d %H:%M}.")
    if request.status != Status.PENDING:
        raise NotPending(f"Request #{request.pk} is {request.status}, not pending.")
    return request


def _close(request: ApprovalRequest, status: str, actor: str, message: str) -> None:
    request.status = status
    request.closed_at = timezone.now()
    request.result = message
    request.sealed = ""  # secrets leave with the request
    request.save(update_fields=("status", "closed_at", "result", "sealed"))
    _audit(request, actor, status, message)


def can_decide(request: ApprovalRequest, user) -> str | None:
    """Why ``user`` may not decide ``request``, or None if they may."""
    if not (user and user.is_authenticated and user.is_active):
        return "Sign in to decide requests."
    if request.requested_by_id == user.pk:
        return "You cannot approve or reject your own request."
    kind = KINDS[request.action]
    if not user.has_perm(kind.permission):
        return f"You do not have permission to decide: {kind.label}."
    approves_from = accounts.may_approve_from(user)
    if timezone.now() < approves_from:
        return (
            f"Your account may approve from {approves_from:%Y-%m-%d %H:%M %Z} (a cooling-off "
            "period after an account is made or given a role that can approve)."
        )
    return kind.approver_check(request, user) if kind.approver_check else None


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
        approvers = [d.user for d in request.decisions.filter(approve=True).select_related("user")]
        if len(approvers) >= request.required_approvals:
            _execute(request, approvers)
    return request


def _unseal(request: ApprovalRequest) -> dict[str, str]:
    return json.loads(credentials.reveal_sealed(request.sealed)) if request.sealed else {}


def _execute(request: ApprovalRequest, approvers: list) -> None:
    """Run the approved action; failures are stored on the request, not raised."""
    kind = KINDS[request.action]
    requester = node_services.Actor.of(request.requested_by).label
    names = ", ".join(u.get_username() for u in approvers)
    try:
        with transaction.atomic():
            now = kind.current(request)
            if now != request.snapshot:
                raise node_services.TransitionError(_changed(request, now))
            approval = gate.seal(
                request.pk,
                kind.name,
                f"{request.target_type}:{request.target_id}",
                request.snapshot,
                tuple(u.get_username() for u in approvers),
            )
            result = kind.execute(request, _unseal(request), requester, names, approval)
    except Exception as exc:  # noqa: BLE001 - any failure is stored on the request
        message = str(exc) if not isinstance(exc, ValidationError) else "; ".join(exc.messages)
        _close(request, Status.FAILED, "system", f"Execution failed: {message}")
        log.warning("approval #%s: execution failed: %s", request.pk, message)
        return
    _close(request, Status.EXECUTED, "system", result)


def _changed(request: ApprovalRequest, now: str) -> str:
    if request.target_type == "node":
        current = json.loads(now) if now.startswith("{") else {"state": now}
        state = current.get("state")
        if state != request.node_state:
            return (
                f"node {request.node_id} is {state} now, not {request.node_state} as when the "
                "request was made; nothing was done"
            )
        if "target" in current and current["target"] != json.loads(request.snapshot).get("target"):
            return (
                f"the machine to migrate onto (node {request.params.get('target')}) changed state "
                "or identities since the request was made, or is gone; nothing was done"
            )
        return (
            f"node {request.node_id}'s identities (MAC, system UUID, serial) changed since "
            "the request was made; nothing was done"
        )
    return (
        f"{request.target_label} changed since the request was made; nothing was done "
        "(ask again to act on it as it is now)"
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
    """Requests the user may see.

    Node requests on nodes in the user's site scope (for holders of the view
    permission); other requests for those who may decide that kind; auditors
    see everything; everyone sees their own requests and grants for them.
    """
    if not (user and user.is_authenticated and user.is_active):
        return ApprovalRequest.objects.none()
    if user.has_perm("audit.view_auditevent"):
        return ApprovalRequest.objects.all()
    mine = Q(requested_by=user) | Q(target_type="access", target_id=str(user.pk))
    visible = mine
    for kind in KINDS.values():
        if kind.target_type != "node" and user.has_perm(kind.permission):
            scope = kind.visible_to(user) if kind.visible_to else Q()
            visible |= Q(action=kind.name) & scope
    if user.has_perm("approvals.view_approvalrequest"):
        visible |= Q(target_type="node", node__in=scope_nodes(user))
    return ApprovalRequest.objects.filter(visible)


def awaiting(user) -> Q:
    """Pending requests ``user`` may still decide: of kinds they hold the permission
    for, not their own, not for themselves, not yet decided by them (site scope
    comes from :func:`visible_requests`)."""
    kinds = [k.name for k in KINDS.values() if user.has_perm(k.permission)]
    return (
        Q(status=Status.PENDING, action__in=kinds)
        & ~Q(requested_by=user)
        & ~Q(target_type__in=("access", "user"), target_id=str(user.pk))
        & ~Q(decisions__user=user)
    )


def expire_requests() -> int:
    """Mark pending requests past their window expired (periodic task)."""
    due = ApprovalRequest.objects.filter(status=Status.PENDING, expires_at__lte=timezone.now())
    return sum(_expire_if_due(pk) for pk in due.values_list("pk", flat=True))
