"""The approval pages: queue, detail, approve/reject/cancel, with the same rules as the API."""

from __future__ import annotations

import pytest

from approvals import services as approvals
from approvals.models import ApprovalRequest
from nodes import services as node_services
from nodes.models import Node
from tests.factories import make_node, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def pending(db):
    alice, bob = make_user("Admin", username="alice"), make_user("Admin", username="bob")
    node = make_node("installed", hostname="db01")
    with pytest.raises(node_services.ApprovalRequired) as exc:
        node_services.perform(node.pk, "reprovision", node_services.Actor.of(alice), reason="r")
    return alice, bob, node, approvals.file(exc.value.proposal, alice)


def test_pages_need_a_sign_in(client, pending):
    *_, req = pending
    for url in ("/approvals/", f"/approvals/{req.pk}/"):
        resp = client.get(url)
        assert resp.status_code == 302 and resp["Location"].startswith("/admin/login/")


def test_queue_shows_what_awaits_me(client, pending):
    alice, bob, node, req = pending
    client.force_login(bob)
    page = client.get("/approvals/").content.decode()
    assert f"#{req.pk}" in page and "db01" in page
    client.force_login(alice)
    assert "Nothing here." in client.get("/approvals/").content.decode()  # not her own
    assert f"#{req.pk}" in client.get("/approvals/?view=mine").content.decode()
    assert client.get("/approvals/?view=bogus").status_code == 200


def test_detail_says_plainly_what_will_happen_and_approving_executes(client, pending):
    alice, bob, node, req = pending
    client.force_login(bob)
    page = client.get(f"/approvals/{req.pk}/").content.decode()
    assert "installed → reprovision" in page
    assert "what is on its disk now is lost" in page and "minutes left" in page
    resp = client.post(f"/approvals/{req.pk}/decide", {"decision": "approve"}, follow=True)
    assert "is now executed" in resp.content.decode()
    assert Node.objects.get(pk=node.pk).state == "reprovision"


def test_the_requester_sees_why_she_cannot_approve_and_a_forged_post_is_refused(client, pending):
    alice, bob, node, req = pending
    client.force_login(alice)
    page = client.get(f"/approvals/{req.pk}/").content.decode()
    assert "You cannot approve or reject your own request." in page
    assert 'id="approve"' not in page and 'id="cancel"' in page
    resp = client.post(f"/approvals/{req.pk}/decide", {"decision": "approve"}, follow=True)
    assert "your own request" in resp.content.decode()
    assert ApprovalRequest.objects.get(pk=req.pk).status == "pending"
    client.post(f"/approvals/{req.pk}/decide", {"decision": "cancel"})
    assert ApprovalRequest.objects.get(pk=req.pk).status == "cancelled"


def test_rejecting_without_a_comment_is_refused_on_the_page(client, pending):
    alice, bob, node, req = pending
    client.force_login(bob)
    resp = client.post(f"/approvals/{req.pk}/decide", {"decision": "reject"}, follow=True)
    assert "rejecting needs a comment" in resp.content.decode()
    client.post(f"/approvals/{req.pk}/decide", {"decision": "reject", "comment": "wrong node"})
    assert ApprovalRequest.objects.get(pk=req.pk).status == "rejected"
    assert Node.objects.get(pk=node.pk).state == "installed"


def test_unknown_or_invisible_requests_are_404(client, pending, site_b):
    *_, req = pending
    client.force_login(make_user("Operator", sites=[site_b]))
    assert client.get(f"/approvals/{req.pk}/").status_code == 404
    assert client.get("/approvals/999999/").status_code == 404
    assert client.post(f"/approvals/{req.pk}/decide", {"decision": "approve"}).status_code == 404


def test_the_node_admin_page_links_its_pending_request(client, pending):
    alice, bob, node, req = pending
    bob.is_staff = True
    bob.save()
    client.force_login(bob)
    page = client.get(f"/admin/nodes/node/{node.pk}/change/").content.decode()
    assert f'href="/approvals/{req.pk}/"' in page
