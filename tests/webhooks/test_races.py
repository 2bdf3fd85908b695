"""Racing dispatchers and senders on PostgreSQL: every event becomes one delivery,
and each delivery is POSTed once, however many run at the same moment."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from audit import services as audit
from nodes.transitions import SYSTEM
from tests.webhooks.receiver import Receiver
from webhooks import delivery, services
from webhooks.models import Delivery

THREADS = 6

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def together(work) -> list[object]:
    barrier = threading.Barrier(THREADS)
    results: list[object] = []

    def run() -> None:
        try:
            barrier.wait(timeout=30)
            results.append(work())
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            results.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_racing_dispatchers_and_senders_deliver_each_event_once():
    receiver = Receiver().start()
    try:
        _, receiver.secret = services.create_subscription(
            SYSTEM, {"name": "race", "url": f"{receiver.base}/ok", "events": ["approval.decided"]}
        )
        for n in range(20):
            audit.record(actor="system", action="approval.expired", object_id=n)

        made = together(delivery.dispatch_all)
        assert not [r for r in made if isinstance(r, BaseException)], made
        assert Delivery.objects.count() == 20

        first = Delivery.objects.order_by("audit_seq").first()
        sent = together(lambda: delivery.send(first.pk))
        assert sorted(map(str, sent)) == ["skipped"] * (THREADS - 1) + ["succeeded"]
        assert len(receiver.requests) == 1
    finally:
        receiver.stop()
