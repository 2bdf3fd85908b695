"""Scope everything: a user of site A finds none of site B's objects anywhere.

Red team: the admin's approval-request pages were not site-scoped (an Operator
or User of site A saw site B's requests), and a MAC-conflict error named
another site's node. This walks every registered admin model and every API
list operation, so a model or endpoint added later is covered too.
"""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.test import RequestFactory
from drf_spectacular.generators import SchemaGenerator

from approvals import services as approvals
from nodes import services as node_services
from nodes.models import Node, Site
from tests.factories import make_node, make_user, make_workflow
from workflows import services as workflow_services

pytestmark = pytest.mark.django_db

SCOPED_ROLES = ("Operator", "User")
B_HOST, B_MAC = "secret-b-db01", "52:54:00:bb:00:01"


@pytest.fixture
def world(site_a, site_b):
    """Objects of every kind that hangs off a site, in site B (and a few in A)."""
    admin_b, other = make_user("Admin"), make_user("Admin")
    node_b = make_node("pending", site=site_b, hostname=B_HOST, macs=[B_MAC])
    node_services.perform(node_b.pk, "unassign", node_services.SYSTEM)
    node_services.perform(
        node_b.pk, "assign", node_services.SYSTEM, workflow=make_workflow("wf-shared")
    )
    workflow_services.start_install(node_b.pk)  # a run, events, a token
    installed_b = make_node("installed", site=site_b, hostname="secret-b-web02")
    with pytest.raises(node_services.ApprovalRequired) as exc:
        node_services.perform(installed_b.pk, "reprovision", node_services.Actor.of(admin_b))
    request_b = approvals.file(exc.value.proposal, admin_b)
    node_a = make_node("discovered", site=site_a, hostname="mine-a01")
    del other
    return {"node_b": node_b, "request_b": request_b, "node_a": node_a, "site_b": site_b}


def _site_of(obj):
    """The site an object belongs to, by its foreign keys (None: not site-bound)."""
    if isinstance(obj, Site):
        return obj
    if isinstance(obj, Node):
        return obj.site
    for name in ("node", "site"):
        related = getattr(obj, name, None)
        if isinstance(related, Node | Site):
            return _site_of(related)
    return None


def _staff(role, site):
    user = make_user(role, sites=[site])
    user.is_staff = True
    user.save()
    return user


def _b_markers(world) -> list[str]:
    return [B_HOST, B_MAC, "secret-b-web02", world["site_b"].slug]


@pytest.mark.parametrize("role", SCOPED_ROLES)
def test_every_admin_changelist_and_change_page_hides_site_b(client, world, site_a, role):
    user = _staff(role, site_a)
    client.force_login(user)
    request = RequestFactory().get("/admin/")
    request.user = user
    checked = 0
    for model, model_admin in admin.site._registry.items():
        queryset = model_admin.get_queryset(request)
        leaked = [o for o in queryset if _site_of(o) == world["site_b"]]
        assert not leaked, f"{model.__name__} admin shows site B's {leaked}"
        opts = model._meta
        changelist = client.get(f"/admin/{opts.app_label}/{opts.model_name}/")
        if changelist.status_code == 200:
            html = changelist.content.decode()
            for marker in _b_markers(world):
                assert marker not in html, f"{opts.label} changelist shows {marker}"
        else:
            assert changelist.status_code in (302, 403), (opts.label, changelist.status_code)
        for obj in model._default_manager.all():
            if _site_of(obj) != world["site_b"]:
                continue
            for page in ("change", "history", "delete"):
                resp = client.get(f"/admin/{opts.app_label}/{opts.model_name}/{obj.pk}/{page}/")
                assert resp.status_code in (302, 403, 404), (opts.label, page, resp.status_code)
                body = resp.content.decode()
                assert B_HOST not in body and B_MAC not in body, (opts.label, page)
            checked += 1
    assert checked >= 5  # node, event(s), run, approval request, site B itself


def _list_paths() -> list[str]:
    generator = SchemaGenerator()
    generator.parse(None, True)
    paths = []
    for path, _pattern, method, _view in generator.endpoints:
        if method == "GET" and "{" not in path:
            paths.append(path)
    return sorted(set(paths))


def _detail_paths(world) -> list[str]:
    generator = SchemaGenerator()
    generator.parse(None, True)
    ids = {
        "nodes": world["node_b"].pk,
        "approvals": world["request_b"].pk,
    }
    out = []
    for path, _pattern, method, _view in generator.endpoints:
        match = re.fullmatch(r"/api/v1/(nodes|approvals)/\{(id|pk)\}/?(.*)", path)
        if method == "GET" and match and "{" not in match.group(3):
            out.append(path.replace("{" + match.group(2) + "}", str(ids[match.group(1)])))
    return sorted(set(out))


@pytest.mark.parametrize("role", SCOPED_ROLES)
def test_every_api_list_and_detail_hides_site_b(api, world, site_a, role):
    user = make_user(role, sites=[site_a])
    client = api(user)
    lists = _list_paths()
    assert "/api/v1/nodes" in lists and "/api/v1/approvals" in lists
    for path in lists:
        resp = client.get(path)
        assert resp.status_code < 500, (path, resp.status_code)
        body = resp.content.decode()
        for marker in _b_markers(world):
            assert marker not in body, f"GET {path} shows {marker}"
    details = _detail_paths(world)
    assert any(p.startswith("/api/v1/nodes/") for p in details)
    for path in details:
        resp = client.get(path)
        # 404, not 403: not even the object's existence is revealed.
        assert resp.status_code == 404, (path, resp.status_code)


def test_the_api_conflict_error_does_not_name_a_hidden_node(api, world, site_a):
    user = make_user("Operator", sites=[site_a])
    resp = api(user).patch(
        f"/api/v1/nodes/{world['node_a'].pk}", {"interfaces": [{"mac": B_MAC}]}, format="json"
    )
    assert resp.status_code == 400
    assert str(world["node_b"].pk) not in resp.content.decode().replace(B_MAC, "")
