"""Directory sign-in (LDAP / Active Directory, OpenID Connect, SAML): the rules they share.

A directory decides which of the four roles (:mod:`accounts.roles`) a person
holds. On every directory sign-in the person's role groups are set to exactly
what the directory says: a role whose directory group the person left is gone
at their next sign-in, Django groups that are not roles are left alone, and a
change is an audit event (``auth.roles_synced``). Role holders get
``is_staff`` so they can use the admin; ``is_superuser`` is never given here.

A directory never signs anyone into a local account: a user with a usable
local password (made in the admin or by ``bootstrap``) is refused, with an
audit event (``auth.directory_refused``).

The role maps themselves are parsed while settings load, in
:mod:`accounts.rolemap`.
"""

from __future__ import annotations

import logging

from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from audit import services as audit

from .models import ApproverStanding
from .rolemap import RoleMap, parse_role_map, roles_for
from .roles import APPROVER_ROLES, ROLES

__all__ = ["RoleMap", "RolesMissing", "parse_role_map", "roles_for", "refuse", "sync_roles"]

log = logging.getLogger(__name__)


class RolesMissing(Exception):
    """A role's Django group is gone (deleted by hand): the sign-in cannot set roles."""


def is_local_account(user) -> bool:
    """A saved user with a local password: directories must not sign into it."""
    return user.pk is not None and user.has_usable_password()


def refuse(username: str, *, source: str, reason: str) -> None:
    """Record that a directory sign-in was refused (the caller then returns no user)."""
    log.warning("%s sign-in refused for %r: %s", source, username, reason)
    with transaction.atomic():
        audit.record(
            actor=f"directory:{source}",
            action="auth.directory_refused",
            object_type="auth.user",
            object_id=username[:150],
            message=reason,
            details={"source": source, "username": username[:150]},
        )


def sync_roles(user, roles: set[str], *, source: str) -> bool:
    """Set ``user``'s role groups to exactly ``roles``; audit a change. Returns whether it changed.

    Runs in the caller's transaction if there is one. Also sets ``is_staff``
    to whether any role is held; other groups and ``is_superuser`` are kept.
    Raises :class:`RolesMissing` when a role's group does not exist.
    """
    unknown = roles - set(ROLES)
    if unknown:
        raise ValueError(f"not roles: {sorted(unknown)}")
    with transaction.atomic():
        # The row lock orders two sign-ins of one person (PostgreSQL; SQLite
        # serialises writers anyway).
        type(user).objects.select_for_update().filter(pk=user.pk).first()
        before = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        staff = bool(roles)
        if before == roles and user.is_staff == staff:
            return False
        groups = {g.name: g for g in Group.objects.filter(name__in=roles)}
        missing = roles - set(groups)
        if missing:
            # The roles migration creates them; a missing one is a broken install.
            raise RolesMissing(f"role groups missing: {sorted(missing)}; run manage.py bootstrap")
        user.groups.remove(*Group.objects.filter(name__in=before - roles))
        user.groups.add(*(groups[name] for name in roles - before))
        if (roles - before) & set(APPROVER_ROLES):
            # The directory made this person a possible second approver: the
            # cooling-off period starts now (accounts.services.may_approve_from).
            ApproverStanding.objects.update_or_create(user=user, defaults={"since": timezone.now()})
        staff_before = user.is_staff
        if staff_before != staff:
            user.is_staff = staff
            user.save(update_fields=["is_staff"])
        audit.record(
            actor=f"directory:{source}",
            action="auth.roles_synced",
            object_type="auth.user",
            object_id=user.pk,
            changes={
                "roles": {"before": sorted(before), "after": sorted(roles)},
                **(
                    {"is_staff": {"before": staff_before, "after": staff}}
                    if staff_before != staff
                    else {}
                ),
            },
            message=f"Roles of {user.get_username()} set from {source}.",
            details={"source": source, "username": user.get_username()},
        )
    return True
