"""Who holds which role, and when an account may approve.

Roles are Django groups (:mod:`accounts.roles`). Giving someone a role that
can approve (:data:`~accounts.roles.APPROVER_ROLES`) makes them a possible
second person, so it must not be one person's decision:

- once two people can approve, granting such a role is four-eye
  (:func:`set_roles` raises ``gate.ApprovalRequired``; the face files it);
- before that (a fresh install, a homelab) it is done only on the host, with
  ``manage.py grant_role``, and audited;
- taking roles away needs nobody else's approval.

An account approves only after ``approver_cooling_off_hours`` since it was
made or last given an approving role (:func:`may_approve_from`); a
superuser has no bypass.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit import services as audit
from pureboot import gate
from systemsettings import config

from .models import ApproverStanding
from .roles import APPROVER_ROLES, ROLES

ROLE_CHANGE = "role.grant"
HOST_ONLY = (
    "Until two people can approve, a role that can approve is given only on the PureBoot "
    "host: manage.py grant_role USERNAME ROLE."
)


def approvers():
    """Active accounts that can approve someone else's request now or after cooling off."""
    return (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(is_superuser=True) | Q(groups__name__in=APPROVER_ROLES))
        .distinct()
    )


def may_approve_from(user) -> datetime:
    """When ``user``'s cooling-off ends (it may approve from then on)."""
    standing = ApproverStanding.objects.filter(user=user).values_list("since", flat=True).first()
    since = max(filter(None, (standing, user.date_joined)))
    return since + timedelta(hours=config.get("approver_cooling_off_hours"))


def roles_of(user) -> set[str]:
    return set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))


def binding(user) -> str:
    """What a role-change approval is bound to: the account's roles and status now."""
    return gate.binding(
        {"roles": sorted(roles_of(user)), "active": user.is_active, "super": user.is_superuser}
    )


def clean_roles(roles) -> set[str]:
    if not isinstance(roles, list | tuple | set) or not all(isinstance(r, str) for r in roles):
        raise ValidationError({"roles": "A list of role names."})
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise ValidationError({"roles": f"Unknown role {unknown[0]!r}; roles: {', '.join(ROLES)}."})
    return set(roles)


def set_roles(
    user_id: int,
    roles,
    actor: str,
    *,
    requester=None,
    host: bool = False,
    reason: str = "",
    approval: gate.Approval | None = None,
) -> set[str]:
    """Give account ``user_id`` exactly ``roles``; returns the roles added.

    ``requester`` is the person asking (None with ``host=True``, the
    ``grant_role`` command). Adding an approving role needs a second person
    once two people can approve (ApprovalRequired), and is refused to a
    person before that (only the host may). Raises ``gate.Forbidden``.
    """
    wanted = clean_roles(roles)
    User = get_user_model()
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user_id)
        before = roles_of(user)
        added, removed = wanted - before, before - wanted
        promotes = bool(added & set(APPROVER_ROLES))
        if requester is not None:
            if not requester.has_perm("accounts.grant_role") and approval is None:
                raise gate.Forbidden("You may not change roles.")
            if requester.pk == user.pk and added and approval is None:
                raise gate.Forbidden("You cannot give yourself a role.")
        if promotes:
            if host:
                if approvers().exclude(pk=user.pk).count() >= 2:
                    raise gate.Forbidden(
                        "Two people can approve already: ask for this role change through "
                        "PureBoot (a second person approves it)."
                    )
            else:
                verdict = gate.decide(
                    requester,
                    action=ROLE_CHANGE,
                    target=f"user:{user.pk}",
                    permission="accounts.grant_role",
                    four_eye=True,
                    bound_to=binding(user),
                    approval=approval,
                )
                if verdict is gate.NEEDS_APPROVAL:
                    if approvers().exclude(pk=user.pk).count() < 2:
                        raise gate.Forbidden(HOST_ONLY)
                    raise gate.ApprovalRequired(
                        gate.Proposal(
                            ROLE_CHANGE, "user", str(user.pk), {"roles": sorted(wanted)}, reason
                        )
                    )
        if not (added or removed):
            return set()
        user.groups.remove(*Group.objects.filter(name__in=removed))
        user.groups.add(*Group.objects.filter(name__in=added))
        if bool(wanted) != user.is_staff and not user.is_superuser:
            user.is_staff = bool(wanted)
            user.save(update_fields=["is_staff"])
        if promotes:
            ApproverStanding.objects.update_or_create(user=user, defaults={"since": timezone.now()})
        audit.record(
            actor=actor,
            action="auth.roles_changed",
            object_type="auth.user",
            object_id=user.pk,
            changes={"roles": {"before": sorted(before), "after": sorted(wanted)}},
            message=reason,
            details={
                "username": user.get_username(),
                "from_host": host,
                **({"approval_request": approval.request_id} if approval else {}),
            },
        )
    return added
