"""The four-eye kinds beyond node actions: system settings, emergency access and
audit clearing, through the API as an automation client would use them."""

from __future__ import annotations

import json
import os
import stat
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.utils import timezone

from accounts.models import EmergencyGrant
from approvals import services
from approvals.models import ApprovalRequest
from audit import clearing
from audit.models import AuditEvent
from audit.services import record, verify_chain
from tests.factories import make_node, make_user, sealed

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice():
    return make_user("Admin", username="alice")


@pytest.fixture
def bob():
    return make_user("Admin", username="bob")


def fresh(user):
    """The user as the next request loads it (permission caches live on the object)."""
    return type(user).objects.get(pk=user.pk)


def approve_via_api(api, user, response):
    assert response.status_code == 202, response.content
    request_id = response.data["approval_request"]["id"]
    done = api(user).post(f"/api/v1/approvals/{request_id}/approve", {})
    assert done.status_code == 200, done.content
    return done.data


# --- system settings -----------------------------------------------------------


def test_changing_the_approval_policy_needs_a_second_person(api, alice, bob):
    client = api(alice)
    listed = {s["key"]: s for s in client.get("/api/v1/settings").data}
    assert listed["approval_hours"]["value"] == 4
    assert listed["approval_hours"]["source"] == "environment"
    preview = client.patch("/api/v1/settings/approval_hours?dry_run=1", {"value": 8}, format="json")
    assert preview.status_code == 200 and "from 4 to 8" in preview.data["what"]
    asked = client.patch(
        "/api/v1/settings/approval_hours", {"value": 8, "reason": "night shift"}, format="json"
    )
    assert client.get("/api/v1/settings/approval_hours").data["value"] == 4  # not yet
    own = client.post(f"/api/v1/approvals/{asked.data['approval_request']['id']}/approve", {})
    assert own.status_code == 403
    done = approve_via_api(api, bob, asked)
    assert done["status"] == "executed", done["result"]
    now = client.get("/api/v1/settings/approval_hours").data
    assert now["value"] == 8 and now["source"] == "database"
    # The new policy applies to the next request.
    node = make_node("installed")
    asked = client.patch(f"/api/v1/nodes/{node.pk}/state", {"action": "reprovision"}, format="json")
    request = ApprovalRequest.objects.get(pk=asked.data["approval_request"]["id"])
    assert request.expires_at - request.created_at == timedelta(hours=8)
    change = AuditEvent.objects.get(action="setting.change")
    assert change.changes == {"approval_hours": {"before": 4, "after": 8}}
    assert change.actor == "user:alice" and "approved by bob" in change.message


@pytest.mark.parametrize(
    "key,value",
    [
        ("approval_hours", 0),
        ("approval_hours", "8"),
        ("approval_hours", True),
        ("approvals_required", 99),
        ("approval_windows", {"no-such-action": 3}),
        ("approval_windows", [1, 2]),
    ],
)
def test_bad_setting_values_are_400(api, alice, key, value):
    response = api(alice).patch(f"/api/v1/settings/{key}", {"value": value}, format="json")
    assert response.status_code == 400, response.content
    assert not ApprovalRequest.objects.exists()


def test_settings_unknown_key_is_404_and_operators_cannot_change(api, alice):
    assert api(alice).patch("/api/v1/settings/nope", {"value": 1}, format="json").status_code == 404
    operator = make_user("Operator")
    assert api(operator).get("/api/v1/settings").status_code == 403
    response = api(operator).patch("/api/v1/settings/approval_hours", {"value": 5}, format="json")
    assert response.status_code == 403


def test_a_setting_changed_meanwhile_fails_the_older_request(api, alice, bob):
    first = api(alice).patch("/api/v1/settings/approvals_required", {"value": 2}, format="json")
    from systemsettings import config

    with transaction.atomic():
        bound = config.binding("approvals_required")
    config.apply(
        "approvals_required",
        3,
        "user:carol",
        approval=sealed("setting.change", "setting:approvals_required", bound),
    )
    done = approve_via_api(api, bob, first)
    assert done["status"] == "failed" and "changed since the request" in done["result"]
    assert config.get("approvals_required") == 3


# --- emergency access ---------------------------------------------------------------


def test_emergency_access_is_granted_by_another_and_ends_on_time(api, bob):
    oscar = make_user("Operator", username="oscar")
    node = make_node("installed")
    assert not oscar.has_perm("nodes.rediscover_node")
    asked = api(oscar).post(
        "/api/v1/emergency-access",
        {"role": "Admin", "hours": 1, "reason": "night incident #42"},
        format="json",
    )
    assert asked.status_code == 202, asked.content
    assert "Give oscar the Admin role for 1 hours" in asked.data["approval_request"]["what"]
    # Another operator neither sees nor grants it; the requester may not approve it.
    other_op = make_user("Operator", username="olga")
    request_id = asked.data["approval_request"]["id"]
    assert api(other_op).post(f"/api/v1/approvals/{request_id}/approve").status_code == 404
    assert api(oscar).post(f"/api/v1/approvals/{request_id}/approve").status_code == 403
    done = approve_via_api(api, bob, asked)
    assert done["status"] == "executed", done["result"]
    # The role counts at once, on the next request, in the API.
    assert api(fresh(oscar)).get("/api/v1/audit").status_code == 200
    grant = EmergencyGrant.objects.get(user=oscar)
    assert grant.role == "Admin" and grant.ends_at - grant.starts_at == timedelta(hours=1)
    # The window ends (moved close to now): the next request has no Admin rights,
    # with no periodic task run in between.
    EmergencyGrant.objects.filter(pk=grant.pk).update(ends_at=timezone.now() + timedelta(seconds=1))
    time.sleep(1.2)
    assert api(fresh(oscar)).get("/api/v1/audit").status_code == 403
    grant.refresh_from_db()
    assert grant.ended_at is not None and grant.ended_by == "system"
    ended = AuditEvent.objects.get(action="access.expired")
    assert ended.details == {"user": "oscar", "role": "Admin"}
    # Asked by someone else for a third person: that person cannot approve it.
    asked = api(bob).post(
        "/api/v1/emergency-access",
        {"user": "oscar", "role": "Auditor", "hours": 2, "reason": "audit help"},
        format="json",
    )
    assert asked.status_code == 202
    refused = api(oscar).post(f"/api/v1/approvals/{asked.data['approval_request']['id']}/approve")
    assert refused.status_code == 403
    assert node.pk  # the node was only a bystander


def test_emergency_access_revoked_early_and_limits(api, alice, bob):
    oscar = make_user("Operator", username="oscar")
    client = api(oscar)
    too_long = client.post(
        "/api/v1/emergency-access", {"role": "Admin", "hours": 9, "reason": "x"}, format="json"
    )
    assert too_long.status_code == 400 and "hours" in too_long.data
    for body in (
        {"role": "Root", "hours": 1, "reason": "x"},
        {"role": "Admin", "hours": 1},
        {"role": "Admin", "hours": "1; drop", "reason": "x"},
    ):
        assert client.post("/api/v1/emergency-access", body, format="json").status_code == 400
    # An operator cannot ask on someone else's behalf.
    response = client.post(
        "/api/v1/emergency-access",
        {"user": "alice", "role": "Admin", "hours": 1, "reason": "x"},
        format="json",
    )
    assert response.status_code == 403
    approve_via_api(
        api,
        bob,
        client.post(
            "/api/v1/emergency-access", {"role": "Admin", "hours": 2, "reason": "x"}, format="json"
        ),
    )
    grant = EmergencyGrant.objects.get(user=oscar)
    assert api(fresh(oscar)).get("/api/v1/audit").status_code == 200
    assert [g["id"] for g in client.get("/api/v1/emergency-access").data["results"]] == [grant.pk]
    revoked = client.post(f"/api/v1/emergency-access/{grant.pk}/revoke")
    assert revoked.status_code == 200 and revoked.data["active"] is False
    assert api(fresh(oscar)).get("/api/v1/audit").status_code == 403
    assert client.post(f"/api/v1/emergency-access/{grant.pk}/revoke").status_code == 409
    assert AuditEvent.objects.filter(action="access.revoked").count() == 1


def test_the_periodic_task_records_ended_grants(bob):
    from accounts.tasks import end_emergency_access

    oscar = make_user("Operator", username="oscar")
    request = services.request_other(
        "access.grant",
        oscar,
        permission="accounts.request_emergency_access",
        target_id=str(oscar.pk),
        target_label="oscar",
        params={"role": "Admin", "hours": 1},
        reason="x",
    )
    services.approve(request.pk, bob)
    EmergencyGrant.objects.update(ends_at=timezone.now() - timedelta(seconds=1))
    assert end_emergency_access() == 1
    assert end_emergency_access() == 0
    assert AuditEvent.objects.filter(action="access.expired").count() == 1


# --- audit clearing ---------------------------------------------------------------------


@pytest.fixture
def export_dir(settings, tmp_path):
    settings.PUREBOOT_AUDIT_EXPORT_DIR = str(tmp_path / "exports")
    return Path(settings.PUREBOOT_AUDIT_EXPORT_DIR)


def _events(n):
    for i in range(n):
        record(actor="system", action="test.event", message=f"event {i}")


def test_clearing_exports_then_keeps_a_checkpoint_and_verify_still_passes(api, alice, export_dir):
    auditor = make_user("Auditor", username="audrey")
    _events(20)
    client = api(alice)
    preview = client.post("/api/v1/audit/clear?dry_run=1", {"through_seq": 15, "reason": "r"})
    assert preview.status_code == 200 and "Export audit events 1 to 15" in preview.data["what"]
    asked = client.post("/api/v1/audit/clear", {"through_seq": 15, "reason": "retention: 1 year"})
    assert AuditEvent.objects.filter(seq__lte=15).count() == 15  # not yet
    done = approve_via_api(api, auditor, asked)
    assert done["status"] == "executed", done["result"]
    assert not AuditEvent.objects.filter(seq__lte=15).exists()
    files = list(export_dir.iterdir())
    assert len(files) == 1 and stat.S_IMODE(os.stat(files[0]).st_mode) == 0o600
    lines = files[0].read_text().splitlines()
    assert json.loads(lines[0])["through_seq"] == 15 and len(lines) == 16
    assert json.loads(lines[1])["seq"] == 1 and "hash" in json.loads(lines[1])
    checkpoint = AuditEvent.objects.get(action="audit.checkpoint")
    assert checkpoint.details["cleared_through_seq"] == 15
    assert checkpoint.details["export_file"] == files[0].name
    report = verify_chain()
    assert report.intact, report
    assert report.first_seq == 16
    call_command("audit_verify")  # the command agrees
    assert clearing.verify_export(files[0]).intact
    call_command("audit_verify", "--export", str(files[0]))
    # Both people and the time are on the record.
    approve_event = AuditEvent.objects.get(action="approval.approve")
    assert approve_event.actor == "user:audrey"
    # A tampered export is caught.
    tampered = files[0].with_name("tampered.jsonl")
    tampered.write_text("\n".join([lines[0], lines[1].replace("event 0", "event X"), *lines[2:]]))
    assert not clearing.verify_export(tampered).intact
    with pytest.raises(CommandError, match="hash mismatch at seq 1"):
        call_command("audit_verify", "--export", str(tampered))
    garbage = files[0].with_name("garbage.jsonl")
    garbage.write_bytes(b"\xff\x00not json")
    assert not clearing.verify_export(garbage).intact


def test_deleting_events_without_a_checkpoint_is_still_detected(export_dir):
    from audit.db import unlocked

    _events(5)
    with unlocked():
        AuditEvent.objects.filter(seq__lte=2).delete()
    report = verify_chain()
    assert not report.intact and "no audit.checkpoint" in report.reason
    with pytest.raises(CommandError):
        call_command("audit_verify")


@pytest.mark.parametrize("through", [0, 999, "three", None, 2**70])
def test_clearing_bad_points_are_400(api, alice, export_dir, through):
    _events(5)
    response = api(alice).post(
        "/api/v1/audit/clear", {"through_seq": through, "reason": "r"}, format="json"
    )
    assert response.status_code == 400, response.content
    assert not ApprovalRequest.objects.exists()


def test_operators_cannot_ask_to_clear(api, export_dir):
    _events(3)
    operator = make_user("Operator")
    response = api(operator).post("/api/v1/audit/clear", {"through_seq": 1, "reason": "r"})
    assert response.status_code == 403


def test_admin_shows_requests_settings_and_grants_read_only_without_sealed_secrets(
    client, api, alice, bob, settings
):
    from cryptography.fernet import Fernet

    settings.PUREBOOT_FERNET_KEYS = [Fernet.generate_key().decode()]
    asked = api(alice).post(
        "/api/v1/credentials",
        {"name": "bmc-a", "kind": "bmc", "username": "root", "password": "pl41n-s3cret"},
        format="json",
    )
    pending = ApprovalRequest.objects.get(pk=asked.data["approval_request"]["id"])
    approve_via_api(
        api, bob, api(alice).patch("/api/v1/settings/approval_hours", {"value": 6}, format="json")
    )
    bob.is_staff = True
    bob.save()
    client.force_login(bob)
    for url in (
        "/admin/approvals/approvalrequest/",
        f"/admin/approvals/approvalrequest/{pending.pk}/change/",
        "/admin/systemsettings/systemsetting/",
        "/admin/accounts/emergencygrant/",
    ):
        page = client.get(url)
        assert page.status_code == 200, url
        body = page.content.decode()
        assert pending.sealed not in body and "pl41n-s3cret" not in body
    assert "approval_hours" in client.get("/admin/systemsettings/systemsetting/").content.decode()
    assert client.get("/admin/systemsettings/systemsetting/add/").status_code == 403


def test_awaiting_me_lists_only_what_i_may_decide(api, alice, bob):
    viewer = make_user("User", username="vera")
    node = make_node("installed")
    api(alice).patch(f"/api/v1/nodes/{node.pk}/state", {"action": "reprovision"}, format="json")
    api(alice).patch("/api/v1/settings/approval_hours", {"value": 5}, format="json")
    api(bob).post(
        "/api/v1/emergency-access",
        {"user": "vera", "role": "Operator", "hours": 1, "reason": "cover"},
        format="json",
    )

    def awaiting(user):
        rows = api(user).get("/api/v1/approvals?awaiting_me=true").data["results"]
        return sorted(r["action"] for r in rows)

    assert awaiting(bob) == ["reprovision", "setting.change"]
    assert awaiting(alice) == ["access.grant"]
    assert awaiting(viewer) == []  # sees her grant request, cannot decide anything
    assert [r["action"] for r in api(viewer).get("/api/v1/approvals").data["results"]] == [
        "access.grant"
    ]


def test_approval_texts_promise_only_what_happens():
    """Red team: the approval page said "Its disks will be wiped"; nothing wiped them.

    Now the agent wipes them: the text says how (the category asked), what
    proves it, and where the node ends (tests/agent/ run the whole wipe).
    """
    from approvals.kinds import NODE_WORDS, _node_words

    migrate = _node_words("migrate", {"target": 10**9, "disk": "serial:X1"})
    assert "node #1000000000 (gone)" in migrate and "the disk matching 'serial:X1'" in migrate
    assert "SHA-256" in migrate and "its wipe needs its own approval" in migrate
    purge = _node_words("deprovision", {"category": "purge", "after": "discovered"})
    assert "Purge only" in purge and "discovered again" in purge and "reads each disk back" in purge
    best = _node_words("deprovision", {})
    assert "strongest method" in best and "becomes retired" in best
    for words in NODE_WORDS.values():
        assert "will be wiped" not in words and "will be moved" not in words
