"""Emergency access: a role for one user, for a limited time, after approval.

The grant's permissions count only inside its window, checked by
:class:`EmergencyAccessBackend` on every permission check of every request
(session or token), so the rights end when the window does, whether or not
the periodic task has run. The first check after the end, or the periodic
task, whichever comes first, records the end on the audit trail.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import BaseBackend
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from audit import services as audit
from pureboot import gate
from systemsettings import config

from .models import EmergencyGrant
from .roles import ROLES

log = logging.getLogger(__name__)
_CACHE = "_pureboot_emergency_perms"


class EmergencyAccessBackend(BaseBackend):
    """Adds the permissions of a user's active emergency roles; signs nobody in."""

    def authenticate(self, request, **credentials):
        return None

    def get_group_permissions(self, user_obj, obj=None) -> set[str]:
        if obj is not None or not getattr(user_obj, "is_active", False):
            return set()
        if user_obj.is_anonymous:
            return set()
        cached = getattr(user_obj, _CACHE, None)
        if cached is None:
            now = timezone.now()
            grants = EmergencyGrant.objects.filter(
                user=user_obj, starts_at__lte=now, ended_at__isnull=True
            ).values_list("pk", "role", "ends_at")
            roles = []
            for pk, role, ends_at in grants:
                if ends_at > now:
                    roles.append(role)
                else:
                    _end([pk], "system", "expired")  # over: record it once
            cached = set()
            if roles:
                perms = Permission.objects.filter(group__name__in=roles).values_list(
                    "content_type__app_label", "codename"
                )
                cached = {f"{app}.{codename}" for app, codename in perms}
            setattr(user_obj, _CACHE, cached)
        return cached

    def get_all_permissions(self, user_obj, obj=None) -> set[str]:
        return self.get_group_permissions(user_obj, obj)

    def has_perm(self, user_obj, perm, obj=None) -> bool:
        return perm in self.get_all_permissions(user_obj, obj)


def clean_request(user, role: str, hours) -> tuple[str, int]:
    if role not in ROLES:
        raise ValidationError({"role": f"One of {', '.join(ROLES)}."})
    limit = config.get("emergency_max_hours")
    if isinstance(hours, bool) or not isinstance(hours, int) or not 1 <= hours <= limit:
        raise ValidationError({"hours": f"A whole number of hours from 1 to {limit}."})
    if not user.is_active:
        raise ValidationError({"user": "That account is disabled."})
    return role, hours


def binding(user_id) -> str:
    """What an approved grant is bound to: the account still enabled."""
    user = get_user_model().objects.select_for_update().filter(pk=user_id).first()
    return "active" if user is not None and user.is_active else "disabled"


def grant(
    user_id: int, role: str, hours: int, request, actor: str, *, approval: gate.Approval
) -> str:
    """Start a grant now, only with ``approval`` sealed for this account as it is."""
    gate.verify(
        approval, action="access.grant", target=f"access:{user_id}", bound_to=binding(user_id)
    )
    user = get_user_model().objects.get(pk=user_id)
    if not user.is_active:
        raise ValidationError(f"{user.get_username()}'s account is disabled; nothing granted.")
    now = timezone.now()
    record = EmergencyGrant.objects.create(
        user=user, role=role, starts_at=now, ends_at=now + timedelta(hours=hours), request=request
    )
    audit.record(
        actor=actor,
        action="access.grant",
        object_type="accounts.emergencygrant",
        object_id=record.pk,
        message=f"{role} for {user.get_username()} until {record.ends_at:%Y-%m-%d %H:%M %Z}",
        details={"user": user.get_username(), "role": role, "ends_at": record.ends_at.isoformat()},
    )
    return f"{user.get_username()} holds {role} until {record.ends_at:%Y-%m-%d %H:%M %Z}"


def _end(pks, actor: str, why: str) -> int:
    ended = 0
    for pk in pks:
        with transaction.atomic():
            record = (
                EmergencyGrant.objects.select_for_update()
                .select_related("user")
                .filter(pk=pk, ended_at__isnull=True)
                .first()
            )
            if record is None:
                continue
            record.ended_at, record.ended_by = timezone.now(), actor
            record.save(update_fields=("ended_at", "ended_by"))
            audit.record(
                actor=actor,
                action=f"access.{why}",
                object_type="accounts.emergencygrant",
                object_id=record.pk,
                message=f"{record.role} for {record.user.get_username()} {why}",
                details={"user": record.user.get_username(), "role": record.role},
            )
            ended += 1
    return ended


def end_overdue() -> int:
    """Record the end of every grant whose window is over (periodic task)."""
    due = EmergencyGrant.objects.filter(ended_at__isnull=True, ends_at__lte=timezone.now())
    return _end(list(due.values_list("pk", flat=True)), "system", "expired")


def revoke(grant_id: int, actor: str) -> bool:
    """End a grant early (anyone holding grant_emergency_access, or its holder)."""
    return _end([grant_id], actor, "revoked") == 1
