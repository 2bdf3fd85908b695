"""Webhooks in the admin: saved through the audited services, the secret shown once
on its own page and never again, deliveries read-only."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from nodes.transitions import SYSTEM
from tests.factories import make_user
from webhooks.models import Delivery, Subscription
from webhooks.services import ping

pytestmark = pytest.mark.django_db


def staff(role: str):
    user = make_user(role)
    user.is_staff = True
    user.save()
    return user


FORM = {
    "name": "siem",
    "url": "https://hooks.example.com/in",
    "events": ["node.transition", "install.failed"],
    "site": "",
    "enabled": "on",
    "description": "",
}


def test_adding_shows_the_secret_once_and_audits(client):
    client.force_login(staff("Admin"))

    page = client.post("/admin/webhooks/subscription/add/", FORM)

    assert page.status_code == 200, page.content[:500]
    made = Subscription.objects.get()
    secret = page.context["secret"]
    assert secret in page.content.decode() and "no-store" in page["Cache-Control"]
    assert made.events == ["node.transition", "install.failed"]
    assert AuditEvent.objects.filter(action="webhook.create").count() == 1
    change = client.get(f"/admin/webhooks/subscription/{made.pk}/change/").content.decode()
    listing = client.get("/admin/webhooks/subscription/").content.decode()
    assert secret not in change and secret not in listing
    assert made.secret_ciphertext not in change
    assert 'id="pb-webhook-rotate"' in change


def test_a_bad_url_is_refused_in_the_form(client):
    client.force_login(staff("Admin"))

    page = client.post("/admin/webhooks/subscription/add/", {**FORM, "url": "gopher://x/"})

    assert page.status_code == 200 and "Only http:// and https://" in page.content.decode()
    assert not Subscription.objects.exists()


def test_rotating_in_the_admin_shows_the_new_secret(client):
    client.force_login(staff("Admin"))
    first = client.post("/admin/webhooks/subscription/add/", FORM).context["secret"]
    made = Subscription.objects.get()

    assert client.get(f"/admin/webhooks/subscription/{made.pk}/rotate-secret/").status_code == 405
    page = client.post(f"/admin/webhooks/subscription/{made.pk}/rotate-secret/")

    assert page.status_code == 200 and page.context["secret"] != first
    assert AuditEvent.objects.filter(action="webhook.rotate_secret").count() == 1


def test_auditors_read_but_cannot_add_change_or_rotate(client):
    client.force_login(staff("Admin"))
    client.post("/admin/webhooks/subscription/add/", FORM)
    made = Subscription.objects.get()
    ping(made.pk, SYSTEM)
    client.force_login(staff("Auditor"))

    assert client.get("/admin/webhooks/subscription/").status_code == 200
    assert client.get("/admin/webhooks/delivery/").status_code == 200
    assert client.get("/admin/webhooks/subscription/add/").status_code == 403
    assert client.post(f"/admin/webhooks/subscription/{made.pk}/change/", FORM).status_code == 403
    assert client.post(f"/admin/webhooks/subscription/{made.pk}/rotate-secret/").status_code == 403
    delivery = Delivery.objects.get()
    page = client.get(f"/admin/webhooks/delivery/{delivery.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content


def test_operators_see_no_webhooks(client):
    client.force_login(staff("Operator"))
    assert client.get("/admin/webhooks/subscription/").status_code == 403
    assert client.get("/admin/webhooks/delivery/").status_code == 403
