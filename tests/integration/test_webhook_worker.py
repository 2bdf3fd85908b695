"""Webhooks through a real Celery worker on Redis: the periodic dispatch turns a
transition into a delivery, the worker POSTs it to a real receiver that answers
500 and then 200, and the retry comes from the state kept in the database."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from nodes import services as node_services
from nodes.transitions import SYSTEM
from tests.factories import make_node, make_workflow
from tests.webhooks.receiver import Receiver
from webhooks import services
from webhooks.models import Delivery
from webhooks.tasks import dispatch

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def wait_until(check, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.2)


def test_worker_delivers_signed_and_retries_after_a_500(celery_worker_process):
    receiver = Receiver().start()
    try:
        made, receiver.secret = services.create_subscription(
            SYSTEM,
            {"name": "worker-hook", "url": f"{receiver.base}/flaky", "events": ["node.transition"]},
        )
        node = make_node()
        node_services.perform(node.pk, "assign", SYSTEM, workflow=make_workflow())

        dispatch.delay().get(timeout=30)
        wait_until(lambda: Delivery.objects.filter(attempts=1, response_code=500).exists())
        first = Delivery.objects.get(subscription=made)
        assert first.status == "pending" and first.next_attempt_at > timezone.now()

        # As if the backoff had elapsed (a worker restart in between changes nothing).
        Delivery.objects.filter(pk=first.pk).update(next_attempt_at=timezone.now())
        dispatch.delay().get(timeout=30)
        wait_until(lambda: Delivery.objects.get(pk=first.pk).status == "succeeded")

        done = Delivery.objects.get(pk=first.pk)
        assert done.status == "succeeded" and done.attempts == 2, celery_worker_process.log_tail()
        assert [r.verified for r in receiver.requests] == [True, True]
        assert receiver.requests[1].json["audit"]["action"] == "node.assign"
    finally:
        receiver.stop()
