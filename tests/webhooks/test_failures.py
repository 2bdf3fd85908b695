"""Attempts that go wrong in every way end as recorded failed attempts (never an
exception escaping, never a delivery claimed forever), each due delivery is
queued once, only the claimant records an outcome, the signed body names the
delivery, and old finished deliveries are pruned."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from nodes import services as node_services
from nodes.transitions import SYSTEM
from pureboot.celery import app
from tests.factories import make_node, make_workflow
from webhooks import delivery, signing, tasks
from webhooks.models import Delivery

from .conftest import run_due

pytestmark = pytest.mark.django_db

CONTROL = [chr(c) for c in range(32) if chr(c) not in "\t\n"] + ["\x7f"]


def one_event(site) -> None:
    node = make_node(site=site)
    node_services.perform(node.pk, "assign", SYSTEM, workflow=make_workflow())


def make_due() -> None:
    Delivery.objects.filter(status="pending").update(next_attempt_at=timezone.now())


def test_a_200_with_a_body_that_is_not_gzip_is_a_failed_attempt_then_failed(
    subscribe, receiver, site_a, settings
):
    settings.PUREBOOT_WEBHOOK_MAX_ATTEMPTS = 2
    subscribe("/gzip-garbage")
    one_event(site_a)

    assert run_due() == ["pending"]
    first = Delivery.objects.get()
    assert first.attempts == 1 and "DecodeError" in first.error
    make_due()
    assert run_due() == ["failed"]
    last = Delivery.objects.get()
    assert last.status == "failed" and last.attempts == 2 and last.next_attempt_at is None
    assert len(receiver.requests) == 2


def test_a_body_that_trickles_in_stops_at_the_deadline(subscribe, receiver, site_a, settings):
    settings.PUREBOOT_WEBHOOK_TIMEOUT = 1
    settings.PUREBOOT_WEBHOOK_MAX_ATTEMPTS = 1
    receiver.hang_seconds = 6  # a byte every 0.5 s: no single wait reaches the timeout
    subscribe("/stall-body")
    one_event(site_a)

    started = timezone.now()
    assert run_due() == ["failed"]

    assert (timezone.now() - started).total_seconds() < 3
    sent = Delivery.objects.get()
    assert sent.error == "No complete answer within 1 s." and sent.response_code == 200


@pytest.mark.parametrize("path,status", [("/nul", "pending"), ("/nul-ok", "succeeded")])
def test_control_characters_in_the_answer_are_not_stored(subscribe, receiver, site_a, path, status):
    subscribe(path)
    one_event(site_a)

    assert run_due() == [status]

    sent = Delivery.objects.get()
    assert sent.response_excerpt == "badbody[31m end"
    assert not any(ch in sent.response_excerpt + sent.error for ch in CONTROL)


def test_any_exception_while_sending_is_a_recorded_failed_attempt(
    subscribe, receiver, site_a, settings, monkeypatch
):
    settings.PUREBOOT_WEBHOOK_MAX_ATTEMPTS = 2
    subscribe()
    one_event(site_a)

    def time_is_up(*args, **kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(delivery, "post", time_is_up)
    assert run_due() == ["pending"]
    sent = Delivery.objects.get()
    assert sent.error.startswith("SoftTimeLimitExceeded") and sent.attempts == 1

    def broken(*args, **kwargs):
        raise ValueError("a NUL \x00 in a message")

    monkeypatch.undo()
    monkeypatch.setattr(delivery.requests, "post", broken)
    make_due()
    assert run_due() == ["failed"]
    sent = Delivery.objects.get()
    assert sent.status == "failed" and sent.attempts == 2
    assert sent.error == "ValueError: a NUL  in a message"


def test_a_delivery_out_of_attempts_is_failed_not_claimed(subscribe, receiver, site_a, settings):
    settings.PUREBOOT_WEBHOOK_MAX_ATTEMPTS = 3
    subscribe()
    one_event(site_a)
    delivery.dispatch_all()
    # Its third attempt was claimed, then the worker died without recording an outcome.
    Delivery.objects.update(attempts=3, next_attempt_at=timezone.now())

    assert run_due() == ["failed"]

    gone = Delivery.objects.get()
    assert gone.status == "failed" and gone.attempts == 3 and gone.next_attempt_at is None
    assert "recorded no outcome" in gone.error
    assert receiver.requests == []


def test_dispatch_queues_a_due_delivery_once(subscribe, receiver, site_a, monkeypatch):
    queued: list[tuple] = []
    monkeypatch.setattr(tasks.deliver, "delay", lambda *args: queued.append(args))
    subscribe()
    one_event(site_a)

    first = tasks.dispatch()
    assert tasks.dispatch() == [] and tasks.dispatch() == []
    assert len(first) == 1 and len(queued) == 1
    pk, token = queued[0]

    # Only the queued message may claim it before its lease ends.
    assert delivery.send(pk) == "skipped"
    assert delivery.send(pk, "2000-01-01T00:00:00+00:00") == "skipped"
    assert delivery.send(pk, token) == "succeeded"
    assert delivery.send(pk, token) == "skipped"


def test_a_lost_message_is_queued_again_after_its_lease(subscribe, receiver, site_a, monkeypatch):
    queued: list[tuple] = []
    monkeypatch.setattr(tasks.deliver, "delay", lambda *args: queued.append(args))
    subscribe()
    one_event(site_a)
    tasks.dispatch()
    # The worker restarted and the message is gone: the lease runs out.
    Delivery.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))

    tasks.dispatch()

    assert [pk for pk, _ in queued] == [Delivery.objects.get().pk] * 2
    assert delivery.send(*queued[-1]) == "succeeded"
    assert delivery.send(*queued[0]) == "skipped"


def test_a_stale_attempt_does_not_overwrite_a_fresh_one(subscribe, receiver, site_a, monkeypatch):
    subscribe()
    one_event(site_a)
    delivery.dispatch_all()
    pk = Delivery.objects.get().pk
    real_post = delivery.post
    stale: list[str] = []
    nested: list[bool] = []

    def slow_then_500(url, body, headers):
        if nested:
            return real_post(url, body, headers)
        nested.append(True)
        # While this attempt hangs, its claim runs out and the delivery is sent
        # again from attempt 1 (redelivered), which succeeds.
        Delivery.objects.filter(pk=pk).update(attempts=0, next_attempt_at=timezone.now())
        stale.append(delivery.send(pk))
        return delivery.Outcome(False, 500, "", "HTTP 500 from the receiver.")

    monkeypatch.setattr(delivery, "post", slow_then_500)
    assert delivery.send(pk) == "superseded"

    assert stale == ["succeeded"]
    fresh = Delivery.objects.get()
    assert fresh.status == "succeeded" and fresh.attempts == 1 and fresh.response_code == 200
    assert fresh.error == ""


def test_the_signed_body_names_the_delivery(subscribe, receiver, site_a):
    subscribe()
    one_event(site_a)

    run_due()

    (got,) = receiver.requests
    assert got.verified
    assert got.json["delivery"] == int(got.headers["X-PureBoot-Delivery"])
    forged = got.body.replace(
        f'"delivery":{got.json["delivery"]}'.encode(),
        f'"delivery":{got.json["delivery"] + 1}'.encode(),
    )
    assert forged != got.body
    assert not signing.verify(receiver.secret, forged, got.headers["X-PureBoot-Signature"])


def test_prune_deletes_only_old_finished_deliveries(subscribe, receiver, site_a, settings):
    settings.PUREBOOT_WEBHOOK_DELIVERY_DAYS = 30
    subscribe()
    for _ in range(5):
        one_event(site_a)
    delivery.dispatch_all()
    old = timezone.now() - timedelta(days=31)
    recent = timezone.now() - timedelta(days=29)
    rows = list(Delivery.objects.order_by("pk"))
    assert len(rows) == 5
    states = [
        ("succeeded", old, old),  # deleted
        ("failed", old, old),  # deleted
        ("pending", old, old),  # still to be sent: kept
        ("succeeded", old, recent),  # redelivered lately: kept
        ("failed", old, None),  # (never attempted) made long ago: deleted
    ]
    for row, (status, created, attempted) in zip(rows, states, strict=True):
        Delivery.objects.filter(pk=row.pk).update(
            status=status, created_at=created, last_attempt_at=attempted
        )

    assert tasks.prune() == 3

    assert list(Delivery.objects.order_by("pk").values_list("pk", flat=True)) == [
        rows[2].pk,
        rows[3].pk,
    ]


def test_beat_prunes_deliveries_hourly():
    app.loader.import_default_modules()
    app.finalize()
    entries = [e for e in app.conf.beat_schedule.values() if e["task"] == "webhooks.prune"]
    assert len(entries) == 1 and entries[0]["schedule"] == timedelta(hours=1)
