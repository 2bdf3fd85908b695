"""Which audit events become which webhook events: four-eye requests and decisions
made the real way, wipe certificates as the agent records them."""

from __future__ import annotations

import pytest

from audit import services as audit
from tests.factories import make_node, make_user, perform_approved

from .conftest import run_due

pytestmark = pytest.mark.django_db


def test_approval_requested_and_decided(subscribe, receiver, site_a):
    subscribe(events=["approval.requested", "approval.decided", "node.transition"])
    node = make_node("installed", site=site_a, hostname="db-1")
    requester, approver = make_user("Operator", sites=[site_a]), make_user("Admin")

    perform_approved(node.pk, "reprovision", requester, approver, reason="new image")
    run_due()

    got = [(r.json["type"], r.json["audit"]["action"]) for r in receiver.requests]
    assert got == [
        ("approval.requested", "approval.request"),
        ("approval.decided", "approval.approve"),
        ("node.transition", "node.reprovision"),
        ("approval.decided", "approval.executed"),
    ]
    request = receiver.requests[0].json
    assert request["node"] == {"id": node.pk, "hostname": "db-1", "site": "site-a"}
    assert request["audit"]["actor"] == f"user:{requester.username}"
    assert all(r.verified for r in receiver.requests)


def test_approvals_of_another_sites_node_stay_out_of_a_site_subscription(
    subscribe, receiver, site_a, site_b
):
    subscribe(events=["approval.requested"], site="site-a")
    node = make_node("installed", site=site_b)
    requester, approver = make_user("Operator", sites=[site_b]), make_user("Admin")

    perform_approved(node.pk, "reprovision", requester, approver)
    run_due()

    assert receiver.requests == []


def test_wipe_certificate_carries_what_the_trail_holds_and_no_secret(subscribe, receiver, site_a):
    subscribe(events=["wipe.certificate"])
    node = make_node("deprovisioning", site=site_a)
    audit.record(
        actor=f"node:{node.pk}",
        action="node.wipe_certified",
        object_type="nodes.node",
        object_id=node.pk,
        details={"certificate": "c-1", "disk_serial": "S1", "token": "do-not-send"},
    )

    run_due()

    (got,) = receiver.requests
    assert got.json["type"] == "wipe.certificate"
    assert got.json["audit"]["details"] == {
        "certificate": "c-1",
        "disk_serial": "S1",
        "token": "[redacted]",
    }
    assert b"do-not-send" not in got.body


def test_other_audit_events_are_not_sent(subscribe, receiver):
    subscribe(events=["node.transition", "approval.decided"])
    audit.record(actor="user:x", action="credential.reveal", message="secret stuff")
    audit.record(actor="user:x", action="webhook.update")

    run_due()

    assert receiver.requests == []
