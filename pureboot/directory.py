"""Directory sign-in (LDAP / Active Directory, OpenID Connect): the rules both share.

A directory decides which of the four roles (:mod:`pureboot.roles`) a person
holds. On every directory sign-in the person's role groups are set to exactly
what the directory says: a role whose directory group the person left is gone
at their next sign-in, Django groups that are not roles are left alone, and a
change is an audit event (``auth.roles_synced``). Role holders get
``is_staff`` so they can use the admin; ``is_superuser`` is never given here.

A directory never signs anyone into a local account: a user with a usable
local password (made in the admin or by ``bootstrap``) is refused, with an
audit event (``auth.directory_refused``).

The parsing helpers run while settings load, so models are imported inside
the functions that need them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from .roles import ROLES

log = logging.getLogger(__name__)

# role name -> the directory groups (LDAP DNs, OIDC claim values) that give it
RoleMap = dict[str, tuple[str, ...]]


class RolesMissing(Exception):
    """A role's Django group is gone (deleted by hand): the sign-in cannot set roles."""


def parse_role_map(name: str, raw: str, *, fold_case: bool) -> RoleMap:
    """Parse ``{"Admin": "cn=admins,...", "Operator": ["g1", "g2"]}`` from variable ``name``.

    Keys must be role names; values a group or a list of groups. LDAP DNs
    compare case-insensitively (``fold_case``), OIDC claim values exactly.
    Raises ``ImproperlyConfigured`` naming the variable.
    """
    if not raw.strip():
        return {}
    example = f'{name}: a JSON object of role -> group(s), e.g. {{"Admin": ["group"]}}'
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{example}; not valid JSON") from exc
    if not isinstance(data, dict):
        raise ImproperlyConfigured(example)
    result: RoleMap = {}
    for role, groups in data.items():
        if role not in ROLES:
            raise ImproperlyConfigured(
                f"{name}: unknown role {role!r}; roles are {', '.join(ROLES)}"
            )
        if isinstance(groups, str):
            groups = [groups]
        if not isinstance(groups, list) or not all(
            isinstance(g, str) and g.strip() for g in groups
        ):
            raise ImproperlyConfigured(f"{name}: {role} must map to a group or a list of groups")
        result[role] = tuple(g.strip().lower() if fold_case else g.strip() for g in groups)
    return result


def roles_for(memberships: Iterable[str], role_map: Mapping[str, Iterable[str]]) -> set[str]:
    """The roles whose mapped groups intersect ``memberships`` (already case-folded if needed)."""
    held = set(memberships)
    return {role for role, groups in role_map.items() if held.intersection(groups)}


def is_local_account(user) -> bool:
    """A saved user with a local password: directories must not sign into it."""
    return user.pk is not None and user.has_usable_password()


def refuse(username: str, *, source: str, reason: str) -> None:
    """Record that a directory sign-in was refused (the caller then returns no user)."""
    log.warning("%s sign-in refused for %r: %s", source, username, reason)
    with transaction.atomic():
        from audit import services as audit

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
    from django.contrib.auth.models import Group

    from audit import services as audit

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
