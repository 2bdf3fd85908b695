"""The roles matrix and site scoping, exercised through the API."""

import pytest
from guardian.shortcuts import assign_perm

from accounts.roles import ROLES
from nodes import lifecycle as lc
from nodes.models import Node
from tests.factories import make_node, make_user, make_workflow

pytestmark = pytest.mark.django_db


def test_roles_exist_with_exact_permissions():
    from django.contrib.auth.models import Group

    for name, perms in ROLES.items():
        group = Group.objects.get(name=name)
        got = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()}
        assert got == set(perms), name


# (role, may list, may create, may assign, may retire, may read audit)
MATRIX = [
    ("Admin", True, True, True, True, True),
    ("Operator", True, True, True, True, False),
    ("Auditor", True, False, False, False, True),
    ("User", True, False, False, False, False),
]


@pytest.mark.parametrize("role,list_,create,assign,retire,audit", MATRIX)
def test_roles_matrix(api, site_a, role, list_, create, assign, retire, audit):
    user = make_user(role, sites=[site_a])
    client = api(user)
    node = make_node(site=site_a)
    make_workflow(name="wf")

    assert (client.get("/api/v1/nodes").status_code == 200) is list_
    resp = client.post(
        "/api/v1/nodes",
        {"site": "site-a", "interfaces": [{"mac": "52:54:00:99:00:01"}]},
        format="json",
    )
    assert (resp.status_code == 201) is create, resp.content
    if not create:
        assert resp.status_code == 403
    resp = client.patch(
        f"/api/v1/nodes/{node.pk}/state", {"state": "pending", "workflow": "wf"}, format="json"
    )
    assert (resp.status_code == 200) is assign, resp.content
    if not assign:
        assert resp.status_code == 403
    resp = client.patch(f"/api/v1/nodes/{node.pk}/state", {"state": "retired"}, format="json")
    assert (resp.status_code == 200) is retire, resp.content
    resp = client.get("/api/v1/audit")
    assert (resp.status_code == 200) is audit
    if not audit:
        assert resp.status_code == 403


def test_user_without_role_sees_nothing(api, site_a):
    make_node(site=site_a)
    user = make_user(None, sites=[site_a])
    assert api(user).get("/api/v1/nodes").status_code == 403


def test_operator_of_site_a_neither_sees_nor_changes_site_b(api, operator_a, site_a, site_b):
    mine = make_node(site=site_a, hostname="mine")
    theirs = make_node(site=site_b, hostname="theirs")
    orphan = make_node(hostname="no-site")
    client = api(operator_a)
    listed = [n["hostname"] for n in client.get("/api/v1/nodes").json()["results"]]
    assert listed == ["mine"]
    for node in (theirs, orphan):
        assert client.get(f"/api/v1/nodes/{node.pk}").status_code == 404
        assert (
            client.patch(
                f"/api/v1/nodes/{node.pk}", {"hostname": "hijacked"}, format="json"
            ).status_code
            == 404
        )
        assert (
            client.patch(
                f"/api/v1/nodes/{node.pk}/state", {"state": "pending"}, format="json"
            ).status_code
            == 404
        )
        assert client.get(f"/api/v1/nodes/{node.pk}/events").status_code == 404
    assert Node.objects.get(pk=theirs.pk).hostname == "theirs"
    # cannot register or move a node into site B either
    resp = client.post(
        "/api/v1/nodes",
        {"site": "site-b", "interfaces": [{"mac": "52:54:00:99:00:02"}]},
        format="json",
    )
    assert resp.status_code == 400 and "site" in resp.json()
    resp = client.patch(f"/api/v1/nodes/{mine.pk}", {"site": "site-b"}, format="json")
    assert resp.status_code == 400
    assert [s["slug"] for s in client.get("/api/v1/sites").json()["results"]] == ["site-a"]


def test_site_grant_through_a_group(api, site_b):
    from django.contrib.auth.models import Group

    team = Group.objects.create(name="team-b")
    assign_perm("nodes.operate_site", team, site_b)
    user = make_user("Operator")
    user.groups.add(team)
    make_node(site=site_b, hostname="b-node")
    listed = [n["hostname"] for n in api(user).get("/api/v1/nodes").json()["results"]]
    assert listed == ["b-node"]


def test_auditor_sees_all_sites_but_changes_nothing(api, site_a, site_b):
    auditor = make_user("Auditor")
    node = make_node(site=site_b)
    client = api(auditor)
    assert client.get(f"/api/v1/nodes/{node.pk}").status_code == 200
    assert (
        client.patch(f"/api/v1/nodes/{node.pk}", {"hostname": "x"}, format="json").status_code
        == 403
    )
    assert client.delete(f"/api/v1/nodes/{node.pk}").status_code == 403


def test_sites_managed_by_admin_only(api, admin_user, operator_a):
    resp = api(operator_a).post("/api/v1/sites", {"name": "C", "slug": "c"}, format="json")
    assert resp.status_code == 403
    resp = api(admin_user).post("/api/v1/sites", {"name": "C", "slug": "c"}, format="json")
    assert resp.status_code == 201
    make_node(site=Node._meta.get_field("site").related_model.objects.get(slug="c"))
    assert api(admin_user).delete("/api/v1/sites/c").status_code == 409


ACTIONS_BY_ROLE = {
    "Admin": {
        "activate",
        "reprovision",
        "deprovision",
        "migrate",
        "cancel_migration",
        "rediscover",
    },
    # Operators ask for destructive actions; another holder approves.
    "Operator": {"activate", "reprovision", "deprovision", "migrate", "cancel_migration"},
    "Auditor": set(),
    "User": set(),
}
# (action, the state it starts from)
GUARDED = [
    ("activate", "installed"),
    ("reprovision", "installed"),
    ("deprovision", "installed"),
    ("migrate", "active"),
    ("cancel_migration", "migrating"),
    ("rediscover", "retired"),
]


@pytest.mark.parametrize("role", sorted(ACTIONS_BY_ROLE))
@pytest.mark.parametrize("action,state", GUARDED)
def test_lifecycle_actions_by_role(api, site_a, role, action, state):
    client = api(make_user(role, sites=[site_a]))
    node = make_node(state, site=site_a)
    allowed = action in ACTIONS_BY_ROLE[role]
    listed = {t["action"] for t in client.get(f"/api/v1/nodes/{node.pk}/transitions").json()}
    assert (action in listed) is allowed
    body = {"action": action}
    if action == "migrate":
        body["target"] = make_node("discovered", site=site_a).pk
    resp = client.patch(f"/api/v1/nodes/{node.pk}/state", body, format="json")
    if allowed and lc.ACTIONS[action].destructive:
        # Accepted as a request: a second person must approve; the node waits.
        assert resp.status_code == 202, resp.content
        assert resp.json()["approval_request"]["status"] == "pending"
        assert Node.objects.get(pk=node.pk).state == state
        return
    assert resp.status_code == (200 if allowed else 403), resp.content
    assert (Node.objects.get(pk=node.pk).state != state) is allowed
