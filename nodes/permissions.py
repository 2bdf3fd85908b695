"""Who may see and act on which nodes.

Two layers:
- model permissions from the role (Admin, Operator, Auditor, User) say what
  a person may do;
- site scope says where: holders of ``nodes.access_all_sites`` (Admin,
  Auditor) see every node; everyone else sees only the nodes of sites on
  which they (or one of their groups) hold the guardian object permission
  ``nodes.operate_site``. A node without a site is visible to all-sites
  holders only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet
from guardian.shortcuts import get_objects_for_user

if TYPE_CHECKING:
    from .lifecycle import Action
    from .models import Node


def sees_all_sites(user) -> bool:
    return bool(
        user
        and user.is_authenticated
        and user.is_active
        and (user.is_superuser or user.has_perm("nodes.access_all_sites"))
    )


def accessible_sites(user) -> QuerySet:
    from .models import Site

    if sees_all_sites(user):
        return Site.objects.all()
    if not (user and user.is_authenticated and user.is_active):
        return Site.objects.none()
    return get_objects_for_user(
        user, "nodes.operate_site", klass=Site, accept_global_perms=False, with_superuser=False
    )


def scope_nodes(user, queryset: QuerySet | None = None) -> QuerySet:
    """Restrict a Node queryset to what ``user`` may see."""
    from .models import Node

    qs = Node.objects.all() if queryset is None else queryset
    if sees_all_sites(user):
        return qs
    return qs.filter(site__in=accessible_sites(user))


def can_access_node(user, node: Node) -> bool:
    if sees_all_sites(user):
        return True
    if node.site_id is None or not (user and user.is_authenticated and user.is_active):
        return False
    return user.has_perm("nodes.operate_site", node.site)


def can_access_site(user, site) -> bool:
    if sees_all_sites(user):
        return True
    if site is None:
        return False
    return bool(user and user.is_active and user.has_perm("nodes.operate_site", site))


def transition_permission(action: Action):
    """The django-fsm ``permission=`` callable for one lifecycle action."""

    def check(node: Node, user) -> bool:
        if action.permission is None:  # system-only: no person performs it
            return False
        if not (user and user.is_authenticated and user.is_active):
            return False
        return user.has_perm(action.permission) and can_access_node(user, node)

    check.__name__ = f"may_{action.name}"
    return check
