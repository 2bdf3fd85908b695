"""The four-eye gate: the one question domain code asks before it acts.

"May this actor do this action to this object now?" Domain services (nodes,
credentials, settings, accounts) call :func:`decide` inside their
transaction, after locking the object and reading its state. The answer is
one of:

- :class:`Forbidden` raised: the actor may not do it at all;
- ``NEEDS_APPROVAL``: it needs a second person. The service changes nothing
  and raises :class:`ApprovalRequired` with a :class:`Proposal`; the face
  that called it (API, admin, command) files the proposal as an approval
  request through the approvals app;
- ``ALLOWED``: go ahead.

A four-eye action is allowed only with an :class:`Approval` for exactly that
action, target and binding (the object's identity and state when the request
was made). Approvals are sealed by the approvals app when the last needed
person approves (:func:`seal`), signed with the installation's secret key,
and checked here, so a service cannot be handed an approval for another
object, another action, or an object that changed since.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

from django.core import signing

_SALT = "pureboot.gate.approval"


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    NEEDS_APPROVAL = "needs_approval"


ALLOWED = Verdict.ALLOWED
NEEDS_APPROVAL = Verdict.NEEDS_APPROVAL


class Forbidden(Exception):
    """The actor may not perform the action (HTTP 403)."""


class InvalidApproval(Forbidden):
    """An approval that does not match what it is used for (forged, another target, stale)."""


@dataclass(frozen=True)
class Proposal:
    """What would need a second person: handed to the approvals app by the face."""

    action: str
    target_type: str
    target_id: str
    params: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    target_label: str = ""


class ApprovalRequired(Exception):
    """The action needs a second person; nothing was changed.

    ``proposal`` says what to ask for; once the face filed it, ``request`` is
    the approval request (the API answers 202 naming it).
    """

    def __init__(self, proposal: Proposal, request: Any = None) -> None:
        super().__init__(
            f"{proposal.action} on {proposal.target_type} {proposal.target_id} "
            "needs a second person's approval."
        )
        self.proposal = proposal
        self.request = request


@dataclass(frozen=True)
class Approval:
    """A sealed, approved action: only :func:`seal` makes a valid one."""

    request_id: int
    action: str
    target: str
    binding: str
    approvers: tuple[str, ...]
    signature: str

    def payload(self) -> str:
        return _payload(self.request_id, self.action, self.target, self.binding, self.approvers)


def _payload(request_id, action, target, binding, approvers) -> str:
    return json.dumps([request_id, action, target, binding, list(approvers)], sort_keys=True)


def binding(value: Any) -> str:
    """A stable text form of what an approval is bound to (identities, state)."""
    return json.dumps(value, sort_keys=True, default=str)


def seal(
    request_id: int, action: str, target: str, bound_to: str, approvers: tuple[str, ...]
) -> Approval:
    """Seal an approved request (called by the approvals app only, when it executes)."""
    signature = signing.Signer(salt=_SALT).sign(
        _payload(request_id, action, target, bound_to, approvers)
    )
    return Approval(request_id, action, target, bound_to, tuple(approvers), signature)


def verify(approval: Approval, *, action: str, target: str, bound_to: str) -> None:
    """Raise :class:`InvalidApproval` unless ``approval`` is for exactly this."""
    try:
        signed = signing.Signer(salt=_SALT).unsign(approval.signature)
    except signing.BadSignature:
        raise InvalidApproval("The approval is not one PureBoot sealed.") from None
    if signed != approval.payload():
        raise InvalidApproval("The approval was altered after it was sealed.")
    if approval.action != action or approval.target != target:
        raise InvalidApproval(
            f"Approval request #{approval.request_id} is for {approval.action} on "
            f"{approval.target}, not {action} on {target}."
        )
    if approval.binding != bound_to:
        raise InvalidApproval(
            f"{target} changed since approval request #{approval.request_id} was made "
            "(its identity or state is not what was approved); nothing was done."
        )


def is_person(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active)


def decide(
    user,
    *,
    action: str,
    target: str,
    permission: str | None,
    four_eye: bool,
    bound_to: str = "",
    approval: Approval | None = None,
    system: bool = False,
) -> Verdict:
    """May ``user`` (or the system, with ``system=True``) do ``action`` to ``target`` now?

    ``permission`` is the model permission a person needs (object scope, such
    as a node's site, is the caller's to check). ``four_eye`` says whether
    the action, on the target as it is now, needs a second person;
    ``bound_to`` is what an approval must have been made for.
    Raises :class:`Forbidden` or :class:`InvalidApproval`.
    """
    if approval is not None:
        verify(approval, action=action, target=target, bound_to=bound_to)
        return ALLOWED
    if system:
        if four_eye:
            raise Forbidden(f"{action} on {target} needs a person to ask and another to approve.")
        return ALLOWED
    if not is_person(user):
        raise Forbidden("Sign in first.")
    if permission and not user.has_perm(permission):
        raise Forbidden(f"You do not have permission to {action} {target}.")
    return NEEDS_APPROVAL if four_eye else ALLOWED
