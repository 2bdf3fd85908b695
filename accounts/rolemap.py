"""Role maps from the environment: which directory groups give which role.

Read while settings load (``PUREBOOT_LDAP_ROLE_GROUPS``,
``PUREBOOT_OIDC_ROLE_GROUPS``), so this module imports no models.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from django.core.exceptions import ImproperlyConfigured

from .roles import ROLES

# role name -> the directory groups (LDAP DNs, OIDC claim values) that give it
RoleMap = dict[str, tuple[str, ...]]


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
