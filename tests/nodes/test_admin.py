"""The Django admin as operators use it."""

import pytest

from nodes.models import Node
from tests.factories import make_node, make_user, make_workflow

pytestmark = pytest.mark.django_db


def _staff(role, sites=()):
    user = make_user(role, sites=sites)
    user.is_staff = True
    user.save()
    return user


def test_changelist_badges_filters_search(client, site_a):
    make_node("active", site=site_a, hostname="web01", macs=["52:54:00:ab:cd:ef"])
    make_node(
        "failed", site=site_a, hostname="db01", system_uuid="4c4c4544-0042-3510-8052-b7c04f4e3732"
    )
    client.force_login(_staff("Admin"))
    resp = client.get("/admin/nodes/node/")
    assert resp.status_code == 200
    html = resp.content.decode()
    assert "pb-state-active" in html and "pb-state-failed" in html
    resp = client.get("/admin/nodes/node/?q=52:54:00:ab:cd:ef")
    assert "web01" in resp.content.decode() and "db01" not in resp.content.decode()
    resp = client.get("/admin/nodes/node/?q=b7c04f4e3732")
    assert "db01" in resp.content.decode() and "web01" not in resp.content.decode()
    resp = client.get("/admin/nodes/node/?state__exact=failed")
    assert "db01" in resp.content.decode() and "web01" not in resp.content.decode()


def test_change_page_shows_only_permitted_transitions_and_history(client, site_a):
    node = make_node("installed", site=site_a, hostname="n1")
    client.force_login(_staff("Operator", sites=[site_a]))
    html = client.get(f"/admin/nodes/node/{node.pk}/change/").content.decode()
    assert 'id="pb-transition-activate"' in html
    # Operators may ask for destructive actions; a second person approves them.
    assert 'id="pb-transition-reprovision"' in html and 'id="pb-transition-retire"' in html
    assert 'name="state"' not in html  # state is not an editable field
    resp = client.post(
        f"/admin/nodes/node/{node.pk}/transition/", {"action": "activate", "reason": "burn-in ok"}
    )
    assert resp.status_code == 302
    assert Node.objects.get(pk=node.pk).state == "active"
    html = client.get(f"/admin/nodes/node/{node.pk}/change/").content.decode()
    assert "burn-in ok" in html and "installed &rarr; active" in html
    # a destructive action the operator does not hold is refused, not performed
    client.post(f"/admin/nodes/node/{node.pk}/transition/", {"action": "retire"})
    assert Node.objects.get(pk=node.pk).state == "active"


def test_admin_assign_with_workflow(client):
    node = make_node()
    wf = make_workflow(name="rocky-9")
    client.force_login(_staff("Admin"))
    client.post(f"/admin/nodes/node/{node.pk}/transition/", {"action": "assign"})
    assert Node.objects.get(pk=node.pk).state == "discovered"
    client.post(f"/admin/nodes/node/{node.pk}/transition/", {"action": "assign", "workflow": wf.pk})
    node = Node.objects.get(pk=node.pk)
    assert node.state == "pending" and node.workflow == wf


def test_admin_site_scoping(client, site_a, site_b):
    theirs = make_node(site=site_b, hostname="theirs")
    make_node(site=site_a, hostname="mine")
    client.force_login(_staff("Operator", sites=[site_a]))
    html = client.get("/admin/nodes/node/").content.decode()
    assert "mine" in html and "theirs" not in html
    assert client.get(f"/admin/nodes/node/{theirs.pk}/change/").status_code in (302, 404)
    resp = client.post(f"/admin/nodes/node/{theirs.pk}/transition/", {"action": "retire"})
    assert resp.status_code == 404


def test_admin_edit_goes_through_service(client):
    node = make_node(hostname="old", macs=["52:54:00:00:aa:01"])
    client.force_login(_staff("Admin"))
    iface = node.interfaces.get()
    resp = client.post(
        f"/admin/nodes/node/{node.pk}/change/",
        {
            "hostname": "new",
            "arch": "x86_64",
            "firmware": "uefi",
            "metadata": "{}",
            "interfaces-TOTAL_FORMS": "1",
            "interfaces-INITIAL_FORMS": "1",
            "interfaces-MIN_NUM_FORMS": "0",
            "interfaces-MAX_NUM_FORMS": "1000",
            "interfaces-0-id": iface.pk,
            "interfaces-0-node": node.pk,
            "interfaces-0-mac": "52:54:00:00:aa:01",
            "interfaces-0-name": "eno1",
            "interfaces-0-is_primary": "on",
        },
    )
    assert resp.status_code == 302, resp.content.decode()[:2000]
    node = Node.objects.get(pk=node.pk)
    assert node.hostname == "new"
    assert node.interfaces.get().name == "eno1"
    assert node.events.filter(kind="edited").exists()


def test_admin_add_node(client):
    client.force_login(_staff("Admin"))
    resp = client.post(
        "/admin/nodes/node/add/",
        {
            "hostname": "fresh",
            "arch": "x86_64",
            "firmware": "bios",
            "metadata": "{}",
            "interfaces-TOTAL_FORMS": "1",
            "interfaces-INITIAL_FORMS": "0",
            "interfaces-MIN_NUM_FORMS": "0",
            "interfaces-MAX_NUM_FORMS": "1000",
            "interfaces-0-mac": "AA-BB-CC-00-11-22",
            "interfaces-0-name": "eth0",
        },
    )
    assert resp.status_code == 302, resp.content.decode()[:3000]
    node = Node.objects.get(hostname="fresh")
    assert node.interfaces.get().mac == "aa:bb:cc:00:11:22"
    assert node.events.filter(kind="created").exists()


def test_nodes_cannot_be_deleted_in_admin(client):
    node = make_node()
    client.force_login(_staff("Admin"))
    assert client.get(f"/admin/nodes/node/{node.pk}/delete/").status_code == 403


def test_admin_changes_to_users_groups_and_sites_are_audited(client):
    from django.contrib.auth.models import Group, User

    from audit.models import AuditEvent

    client.force_login(_staff("Admin", sites=()))
    admin = User.objects.get(groups__name="Admin")
    admin.is_superuser = True
    admin.save()
    resp = client.post("/admin/nodes/site/add/", {"name": "Lab", "slug": "lab"})
    assert resp.status_code == 302
    event = AuditEvent.objects.get(action="site.create")
    assert event.actor == f"user:{admin.username}"
    assert event.changes["slug"]["after"] == "lab"

    bob = User.objects.create_user("bob", password="pw-123456-long")
    user_role = Group.objects.get(name="User")
    resp = client.post(
        f"/admin/auth/user/{bob.pk}/change/",
        {
            "username": "bob",
            "first_name": "Bob",
            "is_active": "on",
            "roles": ["User"],  # roles change through accounts.services.set_roles
            "groups": [Group.objects.get(name="Admin").pk],  # not editable here: ignored
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            "initial-date_joined_0": "2026-01-01",
            "initial-date_joined_1": "00:00:00",
        },
    )
    assert resp.status_code == 302, resp.content.decode()[:2000]
    event = AuditEvent.objects.get(action="user.update", object_id=str(bob.pk))
    assert event.changes["first_name"] == {"before": "", "after": "Bob"}
    assert "password" not in event.details["values"]
    roles = AuditEvent.objects.get(action="auth.roles_changed", object_id=str(bob.pk))
    assert roles.changes["roles"] == {"before": [], "after": ["User"]}
    assert list(bob.groups.all()) == [user_role]


def test_site_grants_in_admin_are_audited(client, site_a):
    from django.contrib.auth.models import User

    from audit.models import AuditEvent

    admin = _staff("Admin")
    admin.is_superuser = True  # guardian's grant pages need its own model permissions
    admin.save()
    client.force_login(admin)
    bob = User.objects.create_user("bob")
    resp = client.post(
        f"/admin/nodes/site/{site_a.pk}/permissions/user-manage/{bob.pk}/",
        {"permissions": ["operate_site"]},
    )
    assert resp.status_code == 302, resp.content.decode()[:1500]
    assert bob.has_perm("nodes.operate_site", site_a)
    event = AuditEvent.objects.get(action="site.permissions")
    assert event.changes == {"user:bob": {"before": [], "after": ["operate_site"]}}
