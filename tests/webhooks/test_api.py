"""The webhook API: who may do what, the secret shown once, and every refusal."""

from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from audit.models import AuditEvent
from nodes import services as node_services
from nodes.transitions import SYSTEM
from tests.factories import make_node, make_user, make_workflow
from webhooks import delivery
from webhooks.models import Delivery, Subscription

from .conftest import run_due

pytestmark = pytest.mark.django_db

BODY = {"name": "siem", "url": "https://hooks.example.com/pureboot", "events": ["node.transition"]}


def test_admin_creates_and_sees_the_secret_once(admin_api):
    made = admin_api.post("/api/v1/webhooks", BODY, format="json")

    assert made.status_code == 201
    secret = made.data["secret"]
    assert len(secret) >= 40
    assert made.data["created_by"].startswith("user:admin")
    shown = admin_api.get(f"/api/v1/webhooks/{made.data['id']}")
    assert shown.status_code == 200 and "secret" not in shown.data
    assert secret not in admin_api.get("/api/v1/webhooks").content.decode()
    event = AuditEvent.objects.filter(action="webhook.create").get()
    assert event.changes["url"]["after"] == BODY["url"] and secret not in str(event.details)


def test_rotate_secret_returns_a_new_one_and_signs_with_it(admin_api, subscribe, receiver, site_a):
    hook = subscribe()
    rotated = admin_api.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret")

    assert rotated.status_code == 200
    assert rotated.data["secret"] != hook["secret"]
    assert AuditEvent.objects.filter(action="webhook.rotate_secret").count() == 1
    receiver.secret = rotated.data["secret"]
    node = make_node(site=site_a)
    node_services.perform(node.pk, "assign", SYSTEM, workflow=make_workflow())
    run_due()
    assert [r.verified for r in receiver.requests] == [True]


BAD_INPUT = [
    ({"url": "ftp://hooks.example.com/x"}, "url"),
    ({"url": "file:///etc/passwd"}, "url"),
    ({"url": "javascript:alert(1)"}, "url"),
    ({"url": "https://user:pw@hooks.example.com/x"}, "url"),
    ({"url": "https:///no-host"}, "url"),
    ({"url": "https://hooks.example.com/a b"}, "url"),
    ({"url": "https://hooks.example.com:99999/x"}, "url"),
    ({"url": "https://hooks.example.com/" + "a" * 2001}, "url"),
    ({"events": []}, "events"),
    ({"events": ["node.deleted"]}, "events"),
    ({"events": "node.transition"}, "events"),
    ({"events": ["node.transition"] * 7}, "events"),
    ({"name": "bad name"}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"description": "d" * 2001}, "description"),
    ({"site": "nowhere"}, "site"),
    ({"secret": "mine"}, "secret"),
    ({"enabled": "maybe"}, "enabled"),
]


def test_bad_input_is_a_400_naming_the_field(admin_api):
    for change, field in BAD_INPUT:
        answer = admin_api.post("/api/v1/webhooks", {**BODY, **change}, format="json")
        assert answer.status_code == 400, (change, answer.data)
        assert field in answer.data, (change, answer.data)
    assert not Subscription.objects.exists()
    made = admin_api.post("/api/v1/webhooks", BODY, format="json").data
    for change, field in BAD_INPUT[:-1]:
        answer = admin_api.patch(f"/api/v1/webhooks/{made['id']}", change, format="json")
        assert answer.status_code == 400 and field in answer.data, (change, answer.data)
    assert Subscription.objects.get().url == BODY["url"]


def test_a_duplicate_name_is_a_400(admin_api):
    assert admin_api.post("/api/v1/webhooks", BODY, format="json").status_code == 201
    again = admin_api.post("/api/v1/webhooks", BODY, format="json")
    assert again.status_code == 400 and "name" in again.data


def test_malformed_json_is_a_400(admin_api):
    answer = admin_api.post("/api/v1/webhooks", "{not json", content_type="application/json")
    assert answer.status_code == 400


def test_updates_and_deletes_are_audited(admin_api):
    made = admin_api.post("/api/v1/webhooks", BODY, format="json").data

    changed = admin_api.patch(
        f"/api/v1/webhooks/{made['id']}", {"events": ["install.failed"]}, format="json"
    )
    gone = admin_api.delete(f"/api/v1/webhooks/{made['id']}")

    assert changed.status_code == 200 and changed.data["events"] == ["install.failed"]
    assert gone.status_code == 204
    update = AuditEvent.objects.get(action="webhook.update")
    assert update.changes == {
        "events": {"before": ["node.transition"], "after": ["install.failed"]}
    }
    assert AuditEvent.objects.get(action="webhook.delete").changes["name"]["before"] == "siem"


@pytest.mark.parametrize("role", ["Operator", "User", None])
def test_non_admins_cannot_see_or_manage_webhooks(api, admin_api, role):
    made = admin_api.post("/api/v1/webhooks", BODY, format="json").data
    client = api(make_user(role))

    for method, url in (
        ("get", "/api/v1/webhooks"),
        ("get", f"/api/v1/webhooks/{made['id']}"),
        ("post", "/api/v1/webhooks"),
        ("patch", f"/api/v1/webhooks/{made['id']}"),
        ("delete", f"/api/v1/webhooks/{made['id']}"),
        ("post", f"/api/v1/webhooks/{made['id']}/rotate-secret"),
        ("post", f"/api/v1/webhooks/{made['id']}/test"),
        ("get", "/api/v1/webhooks/deliveries"),
    ):
        answer = getattr(client, method)(url, BODY, format="json")
        assert answer.status_code == 403, (method, url, answer.status_code)
        assert answer.data["code"] in ("permission_denied", "not_authenticated")
    assert Subscription.objects.get().name == "siem"


def test_unauthenticated_is_refused(api):
    assert api().get("/api/v1/webhooks").status_code in (401, 403)


def test_auditor_reads_but_cannot_change(api, subscribe, site_a):
    hook = subscribe()
    node = make_node(site=site_a)
    node_services.perform(node.pk, "assign", SYSTEM, workflow=make_workflow())
    run_due()
    auditor = api(make_user("Auditor"))

    assert auditor.get("/api/v1/webhooks").data["results"][0]["name"] == hook["name"]
    listed = auditor.get("/api/v1/webhooks/deliveries")
    assert listed.status_code == 200 and listed.data["results"][0]["status"] == "succeeded"
    sent = listed.data["results"][0]["id"]
    assert auditor.post("/api/v1/webhooks", BODY, format="json").status_code == 403
    assert auditor.patch(f"/api/v1/webhooks/{hook['id']}", {"enabled": False}).status_code == 403
    assert auditor.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret").status_code == 403
    assert auditor.post(f"/api/v1/webhooks/deliveries/{sent}/redeliver").status_code == 403


def test_test_ping_is_signed_and_recorded(admin_api, subscribe, receiver):
    hook = subscribe()

    answer = admin_api.post(f"/api/v1/webhooks/{hook['id']}/test")

    assert answer.status_code == 202 and answer.data["event_type"] == "ping"
    delivery.send(answer.data["id"])  # what the queued task does once the request commits
    (got,) = receiver.requests
    assert got.verified and got.json["type"] == "ping"
    assert got.headers["X-PureBoot-Event"] == "ping"
    shown = admin_api.get(f"/api/v1/webhooks/deliveries/{answer.data['id']}").data
    assert shown["status"] == "succeeded" and shown["response_excerpt"] == "thanks"
    assert AuditEvent.objects.filter(action="webhook.test").count() == 1


def test_redeliver_sends_a_finished_delivery_again(admin_api, subscribe, receiver, site_a):
    subscribe()
    node = make_node(site=site_a)
    node_services.perform(node.pk, "assign", SYSTEM, workflow=make_workflow())
    delivery.dispatch_all()
    pending = Delivery.objects.get()

    refused = admin_api.post(f"/api/v1/webhooks/deliveries/{pending.pk}/redeliver")
    assert refused.status_code == 409 and "still pending" in refused.data["detail"]
    delivery.send(pending.pk)

    again = admin_api.post(f"/api/v1/webhooks/deliveries/{pending.pk}/redeliver")
    assert again.status_code == 202 and again.data["status"] == "pending"
    delivery.send(pending.pk)

    assert len(receiver.requests) == 2 and all(r.verified for r in receiver.requests)
    assert Delivery.objects.get().attempts == 1
    assert admin_api.post("/api/v1/webhooks/deliveries/999999/redeliver").status_code == 404
    assert admin_api.get("/api/v1/webhooks/deliveries?status=bogus").status_code == 400


def test_unknown_ids_are_404(admin_api):
    for url in ("/api/v1/webhooks/424242", "/api/v1/webhooks/deliveries/424242"):
        answer = admin_api.get(url)
        assert answer.status_code == 404 and answer.data["detail"]


def test_rotate_keys_reencrypts_signing_secrets(admin_api, settings):
    made = admin_api.post("/api/v1/webhooks", BODY, format="json").data
    old = Subscription.objects.get().secret_ciphertext
    new_key = Fernet.generate_key().decode()
    settings.PUREBOOT_FERNET_KEYS = [new_key, *settings.PUREBOOT_FERNET_KEYS]

    call_command("rotate_keys", stdout=io.StringIO())

    stored = Subscription.objects.get().secret_ciphertext
    assert stored != old
    assert Fernet(new_key).decrypt(stored.encode()).decode() == made["secret"]
