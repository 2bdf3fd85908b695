"""Deliveries end to end: audit events become signed POSTs to a real receiver,
with retries, timeouts, redirects refused, site filters and disabled
subscriptions honoured."""

from __future__ import annotations

import logging

import pytest
from django.utils import timezone

from nodes import services as node_services
from nodes.transitions import SYSTEM
from pureboot.celery import app
from tests.factories import make_node, make_workflow
from webhooks import delivery
from webhooks.models import Delivery, Subscription

from .conftest import run_due

pytestmark = pytest.mark.django_db


def install(node) -> None:
    """Assign a workflow, start and finish an install, as the boot path does."""
    node_services.perform(node.pk, "assign", SYSTEM, workflow=make_workflow())
    node_services.perform(node.pk, "start_install", SYSTEM)
    node_services.perform(node.pk, "complete_install", SYSTEM)


def make_due(*deliveries: Delivery) -> None:
    Delivery.objects.filter(pk__in=[d.pk for d in deliveries], status="pending").update(
        next_attempt_at=timezone.now()
    )


def test_transitions_arrive_signed_in_order(subscribe, receiver, site_a):
    hook = subscribe(events=["install.succeeded", "node.transition"])
    node = make_node(site=site_a, hostname="web-1")

    install(node)
    run_due()

    got = [r for r in receiver.requests]
    assert [r.json["type"] for r in got] == [
        "node.transition",
        "node.transition",
        "install.succeeded",
    ]
    assert all(r.verified for r in got)
    seqs = [r.json["audit"]["seq"] for r in got]
    assert seqs == sorted(seqs)
    last = got[-1]
    assert last.headers["X-PureBoot-Event"] == "install.succeeded"
    assert last.json["node"] == {"id": node.pk, "hostname": "web-1", "site": "site-a"}
    assert last.json["audit"]["action"] == "node.complete_install"
    assert last.json["audit"]["changes"]["state"] == {"before": "installing", "after": "installed"}
    delivered = Delivery.objects.get(pk=int(last.headers["X-PureBoot-Delivery"]))
    assert delivered.status == "succeeded" and delivered.response_code == 200
    assert delivered.subscription_id == hook["id"] and delivered.attempts == 1


def test_a_failed_install_is_install_failed(subscribe, receiver, site_a):
    subscribe(events=["install.failed"])
    node = make_node(site=site_a)
    node_services.perform(node.pk, "assign", SYSTEM, workflow=make_workflow())
    node_services.perform(node.pk, "start_install", SYSTEM)
    node_services.perform(node.pk, "fail", SYSTEM, reason="disk full")

    run_due()

    assert [r.json["type"] for r in receiver.requests] == ["install.failed"]
    assert receiver.requests[0].json["audit"]["message"] == "disk full"


def test_500_is_retried_with_backoff_until_it_succeeds(subscribe, receiver, site_a, settings):
    settings.PUREBOOT_WEBHOOK_RETRY_SECONDS = 30
    subscribe("/flaky")
    node = make_node(site=site_a)
    node_services.perform(node.pk, "assign", SYSTEM, workflow=make_workflow())

    before = timezone.now()
    run_due()
    first = Delivery.objects.get()
    assert first.status == "pending" and first.attempts == 1 and first.response_code == 500
    assert first.error == "HTTP 500 from the receiver."
    assert len(first.response_excerpt) == 500  # the receiver's 2000 bytes, capped
    # The backoff lives in the database: a restarted worker finds it.
    assert (first.next_attempt_at - before).total_seconds() >= 29
    run_due()
    assert len(receiver.requests) == 1  # not due yet

    make_due(first)
    run_due()

    again = Delivery.objects.get()
    assert again.status == "succeeded" and again.attempts == 2 and again.response_code == 200
    assert [r.verified for r in receiver.requests] == [True, True]
    assert receiver.requests[0].body == receiver.requests[1].body


def test_backoff_doubles_and_stops_at_max_attempts(subscribe, receiver, site_a, settings):
    settings.PUREBOOT_WEBHOOK_MAX_ATTEMPTS = 3
    settings.PUREBOOT_WEBHOOK_RETRY_SECONDS = 10
    assert [delivery.backoff(n).total_seconds() for n in (1, 2, 3, 20)] == [10, 20, 40, 3600]
    subscribe("/redirect")
    node = make_node(site=site_a)
    node_services.perform(node.pk, "assign", SYSTEM, workflow=make_workflow())

    for _ in range(4):
        make_due(*Delivery.objects.all())
        run_due()

    sent = Delivery.objects.get()
    assert sent.status == "failed" and sent.attempts == 3 and sent.next_attempt_at is None
    assert sent.response_code == 302 and "redirects are not followed" in sent.error
    # Never followed: only /redirect was asked, three times.
    assert [r.path for r in receiver.requests] == ["/redirect"] * 3


def test_a_receiver_that_hangs_times_out(subscribe, receiver, site_a, settings):
    settings.PUREBOOT_WEBHOOK_TIMEOUT = 1
    receiver.hang_seconds = 3
    subscribe("/hang")
    node = make_node(site=site_a)
    node_services.perform(node.pk, "assign", SYSTEM, workflow=make_workflow())

    started = timezone.now()
    run_due()

    sent = Delivery.objects.get()
    assert (timezone.now() - started).total_seconds() < 2.9
    assert sent.status == "pending" and sent.attempts == 1
    assert sent.error == "No answer within 1 s." and sent.response_code is None


def test_an_unreachable_receiver_is_recorded_and_retried(admin_api, site_a):
    answer = admin_api.post(
        "/api/v1/webhooks",
        {"name": "gone", "url": "http://127.0.0.1:9/x", "events": ["node.transition"]},
        format="json",
    )
    assert answer.status_code == 201
    node = make_node(site=site_a)
    node_services.perform(node.pk, "assign", SYSTEM, workflow=make_workflow())

    run_due()

    sent = Delivery.objects.get()
    assert sent.status == "pending" and sent.error.startswith("ConnectionError")


def test_site_filter_sends_only_that_sites_nodes(subscribe, receiver, site_a, site_b):
    subscribe(site="site-a")
    mine, other, siteless = make_node(site=site_a), make_node(site=site_b), make_node()
    for node in (mine, other, siteless):
        node_services.perform(node.pk, "assign", SYSTEM, workflow=make_workflow())

    run_due()

    assert [r.json["node"]["id"] for r in receiver.requests] == [mine.pk]


def test_disabled_subscription_gets_nothing(subscribe, receiver, admin_api, site_a):
    hook = subscribe()
    assert (
        admin_api.patch(
            f"/api/v1/webhooks/{hook['id']}", {"enabled": False}, format="json"
        ).status_code
        == 200
    )
    node = make_node(site=site_a)
    node_services.perform(node.pk, "assign", SYSTEM, workflow=make_workflow())

    run_due()

    assert receiver.requests == [] and not Delivery.objects.exists()
    answer = admin_api.post(f"/api/v1/webhooks/{hook['id']}/test")
    assert answer.status_code == 409 and answer.data["code"] == "conflict"


def test_events_before_a_subscription_and_unsubscribed_types_are_not_sent(
    subscribe, receiver, site_a
):
    node = make_node(site=site_a)
    node_services.perform(node.pk, "assign", SYSTEM, workflow=make_workflow())
    subscribe(events=["wipe.certificate"])
    node_services.perform(node.pk, "start_install", SYSTEM)

    run_due()

    assert receiver.requests == []


def test_each_event_is_delivered_once_however_often_dispatch_runs(subscribe, receiver, site_a):
    subscribe()
    node = make_node(site=site_a)
    node_services.perform(node.pk, "assign", SYSTEM, workflow=make_workflow())

    for _ in range(3):
        delivery.dispatch_all()
    run_due()
    run_due()

    assert Delivery.objects.count() == 1 and len(receiver.requests) == 1


def test_a_claimed_delivery_is_not_sent_twice(subscribe, receiver, site_a):
    subscribe()
    node = make_node(site=site_a)
    node_services.perform(node.pk, "assign", SYSTEM, workflow=make_workflow())
    delivery.dispatch_all()
    pending = Delivery.objects.get()

    assert delivery.send(pending.pk) == "succeeded"
    assert delivery.send(pending.pk) == "skipped"
    assert len(receiver.requests) == 1


def test_the_secret_is_encrypted_at_rest_and_never_logged(
    subscribe, receiver, site_a, caplog, admin_api
):
    caplog.set_level(logging.DEBUG)
    hook = subscribe("/flaky")
    secret = hook["secret"]
    stored = Subscription.objects.get(pk=hook["id"])
    assert secret not in stored.secret_ciphertext
    node = make_node(site=site_a)
    node_services.perform(node.pk, "assign", SYSTEM, workflow=make_workflow())
    run_due()
    make_due(*Delivery.objects.all())
    run_due()

    assert secret not in caplog.text
    assert "webhook delivery" in caplog.text
    for url in (
        "/api/v1/webhooks",
        f"/api/v1/webhooks/{hook['id']}",
        "/api/v1/webhooks/deliveries",
    ):
        assert secret not in admin_api.get(url).content.decode()
    assert secret not in str(list(Delivery.objects.values()))


def test_beat_runs_the_dispatch():
    app.loader.import_default_modules()
    app.finalize()
    names = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert "webhooks.dispatch" in names
