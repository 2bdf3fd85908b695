"""The four-eye rules, one by one, through the service functions and the API."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.utils import timezone

from approvals import services
from approvals.models import ApprovalRequest
from audit.models import AuditEvent
from nodes import services as node_services
from nodes.models import Node
from tests.factories import make_node, make_user

pytestmark = pytest.mark.django_db


def ask(node, user, action="reprovision", reason="disk replaced") -> ApprovalRequest:
    with pytest.raises(node_services.ApprovalRequired) as exc:
        node_services.perform(node.pk, action, node_services.Actor.of(user), reason=reason)
    return services.file(exc.value.proposal, user)


@pytest.fixture
def alice():
    return make_user("Admin", username="alice")


@pytest.fixture
def bob():
    return make_user("Admin", username="bob")


def test_a_destructive_action_becomes_a_request_and_waits(alice):
    node = make_node("installed")
    request = ask(node, alice)
    node.refresh_from_db()
    assert node.state == "installed"  # nothing happened yet
    assert request.status == "pending" and request.node_state == "installed"
    assert request.expires_at - request.created_at == timedelta(hours=4)
    event = AuditEvent.objects.get(action="approval.request")
    assert event.actor == "user:alice" and event.details["to_state"] == "reprovision"


def test_the_second_person_executes_it_once(alice, bob):
    node = make_node("installed")
    request = services.approve(ask(node, alice).pk, bob, "checked with the rack owner")
    request.refresh_from_db()
    assert request.status == "executed"
    assert Node.objects.get(pk=node.pk).state == "reprovision"
    assert AuditEvent.objects.filter(action="approval.approve", actor="user:bob").exists()
    assert AuditEvent.objects.filter(action="approval.executed").count() == 1
    transition = AuditEvent.objects.get(action="node.reprovision")
    assert transition.actor == "user:alice" and "approved by bob" in transition.message
    with pytest.raises(services.NotPending):
        services.approve(request.pk, make_user("Admin"))  # executed: never twice


def test_the_requester_never_approves_their_own_request_superuser_too(alice):
    root = User.objects.create_superuser("root", password="x" * 20)
    node = make_node("installed")
    for requester in (alice, root):
        request = ask(node, requester)
        with pytest.raises(services.NotAllowed, match="your own request"):
            services.approve(request.pk, requester)
        services.cancel(request.pk, requester)
    assert Node.objects.get(pk=node.pk).state == "installed"


def test_an_approver_needs_the_permission_and_the_site(alice, site_a, site_b):
    node = make_node("installed", site=site_a)
    request = ask(node, alice)
    viewer = make_user("User", sites=[site_a])
    with pytest.raises(services.NotAllowed, match="permission to decide: Reprovision"):
        services.approve(request.pk, viewer)
    # An Operator holds the permission, but not for this node's site: refused.
    other = make_user("Operator", sites=[site_b])
    with pytest.raises(services.NotAllowed, match="no access"):
        services.approve(request.pk, other)
    # An Operator of the node's site may approve.
    services.approve(request.pk, make_user("Operator", sites=[site_a]))
    assert Node.objects.get(pk=node.pk).state == "reprovision"


def test_each_person_counts_once(alice, bob, settings):
    settings.PUREBOOT_APPROVALS_REQUIRED = 2
    node = make_node("installed")
    request = ask(node, alice)
    services.approve(request.pk, bob)
    with pytest.raises(services.NotAllowed, match="counts once"):
        services.approve(request.pk, bob)
    assert Node.objects.get(pk=node.pk).state == "installed"
    services.approve(request.pk, make_user("Admin"))
    assert Node.objects.get(pk=node.pk).state == "reprovision"


def test_an_expired_request_cannot_be_approved(alice, bob):
    node = make_node("installed")
    request = ask(node, alice)
    ApprovalRequest.objects.filter(pk=request.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    with pytest.raises(services.NotPending, match="expired"):
        services.approve(request.pk, bob)
    request.refresh_from_db()
    assert request.status == "expired"
    assert Node.objects.get(pk=node.pk).state == "installed"


def test_the_periodic_task_marks_expired_requests(alice, settings):
    settings.PUREBOOT_APPROVAL_WINDOWS = {"retire": 24}
    node, other = make_node("installed"), make_node("active")
    old, fresh = ask(node, alice), ask(other, alice, action="retire")
    assert fresh.expires_at - fresh.created_at == timedelta(hours=24)
    ApprovalRequest.objects.filter(pk=old.pk).update(expires_at=timezone.now())
    assert services.expire_requests() == 1
    assert ApprovalRequest.objects.get(pk=old.pk).status == "expired"
    assert ApprovalRequest.objects.get(pk=fresh.pk).status == "pending"
    assert AuditEvent.objects.filter(action="approval.expired", actor="system").count() == 1


def test_rejecting_needs_a_comment(alice, bob):
    node = make_node("installed")
    request = ask(node, alice)
    with pytest.raises(ValidationError):
        services.reject(request.pk, bob, "  ")
    services.reject(request.pk, bob, "wrong rack")
    request.refresh_from_db()
    assert request.status == "rejected" and request.result == "wrong rack"
    assert Node.objects.get(pk=node.pk).state == "installed"


def test_a_node_that_moved_on_is_not_acted_on(alice, bob):
    node = make_node("installed")
    request = ask(node, alice)
    node_services.perform(node.pk, "activate", node_services.SYSTEM)  # installed -> active
    services.approve(request.pk, bob)
    request.refresh_from_db()
    assert request.status == "failed"
    assert "is active now, not installed" in request.result
    assert Node.objects.get(pk=node.pk).state == "active"


def test_one_pending_request_per_node(alice):
    node = make_node("installed")
    first = ask(node, alice)
    with pytest.raises(services.NotPending, match=f"#{first.pk}"):
        ask(node, alice, "deprovision")


def test_the_system_alone_cannot_destroy(alice):
    node = make_node("active")
    with pytest.raises(node_services.TransitionForbidden, match="needs a person"):
        node_services.perform(node.pk, "retire", node_services.SYSTEM)
    # Retiring a machine with no installed system needs no second person.
    spare = make_node("discovered")
    assert node_services.perform(spare.pk, "retire", node_services.Actor.of(alice)).state == (
        "retired"
    )


# --- the API ---------------------------------------------------------------------


def test_api_flow_with_filters(api, alice, bob):
    node = make_node("installed")
    resp = api(alice).patch(
        f"/api/v1/nodes/{node.pk}/state", {"state": "reprovision", "reason": "r"}, format="json"
    )
    assert resp.status_code == 202, resp.content
    request_id = resp.json()["approval_request"]["id"]
    assert api(alice).get("/api/v1/approvals?mine=true").json()["count"] == 1
    assert api(alice).get("/api/v1/approvals?awaiting_me=true").json()["count"] == 0
    assert api(bob).get("/api/v1/approvals?awaiting_me=true").json()["count"] == 1
    mine = api(alice).post(f"/api/v1/approvals/{request_id}/approve")
    assert mine.status_code == 403 and "your own request" in mine.json()["detail"]
    again = api(alice).patch(
        f"/api/v1/nodes/{node.pk}/state", {"state": "reprovision"}, format="json"
    )
    assert again.status_code == 409
    done = api(bob).post(f"/api/v1/nodes/{node.pk}/approve", {"comment": "ok"}, format="json")
    assert done.status_code == 200, done.content
    body = done.json()
    assert body["status"] == "executed" and body["approvals"] == 1
    assert body["decisions"][0]["user"] == "bob"
    assert Node.objects.get(pk=node.pk).state == "reprovision"
    assert api(bob).post(f"/api/v1/approvals/{request_id}/approve").status_code == 409
    assert api(bob).post(f"/api/v1/nodes/{node.pk}/approve").status_code == 404  # none pending


def test_api_reject_without_comment_is_400_and_scope_hides_other_sites(
    api, alice, bob, site_a, site_b
):
    node = make_node("installed", site=site_a)
    request = ask(node, alice)
    assert api(bob).post(f"/api/v1/approvals/{request.pk}/reject").status_code == 400
    outsider = make_user("Operator", sites=[site_b])
    assert api(outsider).get(f"/api/v1/approvals/{request.pk}").status_code == 404
    assert api(outsider).get("/api/v1/approvals").json()["count"] == 0
    assert api(None).get("/api/v1/approvals").status_code in (401, 403)
    rejected = api(bob).post(
        f"/api/v1/approvals/{request.pk}/reject", {"comment": "no"}, format="json"
    )
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"


@pytest.mark.parametrize("junk", ["abc", "99999999999999999999999"])
def test_api_bad_ids_are_404(api, alice, junk):
    assert api(alice).get(f"/api/v1/approvals/{junk}").status_code == 404
    assert api(alice).post(f"/api/v1/approvals/{junk}/approve").status_code == 404


def test_dry_run_shows_what_would_happen_and_creates_nothing(api, alice):
    node = make_node("installed", metadata={"disks": ["/dev/sda", "/dev/nvme0n1"]})
    resp = api(alice).patch(
        f"/api/v1/nodes/{node.pk}/state?dry_run=1", {"state": "deprovisioning"}, format="json"
    )
    assert resp.status_code == 200, resp.content
    assert resp.json() == {
        "dry_run": True,
        "node": node.pk,
        "hostname": str(node),
        "action": "deprovision",
        "from_state": "installed",
        "to_state": "deprovisioning",
        "workflow": None,
        "needs_approval": True,
        "disks_to_wipe": ["/dev/sda", "/dev/nvme0n1"],
    }
    assert not ApprovalRequest.objects.exists()
    assert Node.objects.get(pk=node.pk).state == "installed"
    wrong = api(alice).patch(
        f"/api/v1/nodes/{node.pk}/state?dry_run=1", {"state": "pending"}, format="json"
    )
    assert wrong.status_code in (400, 409)
