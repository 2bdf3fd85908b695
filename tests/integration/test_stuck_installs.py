"""The periodic stuck-install task, executed by a real Celery worker on Redis."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from nodes.models import Node
from nodes.tasks import fail_stuck_installs
from tests.factories import make_node

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def test_worker_fails_stuck_installs(celery_worker_process, settings):
    stuck = make_node("installing", hostname="stuck")
    fresh = make_node("installing", hostname="fresh")
    Node.objects.filter(pk=stuck.pk).update(
        state_changed_at=timezone.now()
        - timedelta(minutes=settings.PUREBOOT_INSTALL_TIMEOUT_MINUTES + 5)
    )

    result = fail_stuck_installs.delay()
    result.get(timeout=30)  # raises if the task failed in the worker

    deadline = time.monotonic() + 10
    while Node.objects.get(pk=stuck.pk).state != "failed" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert Node.objects.get(pk=stuck.pk).state == "failed"
    assert Node.objects.get(pk=fresh.pk).state == "installing"
    event = AuditEvent.objects.get(action="node.fail", object_id=str(stuck.pk))
    assert event.actor == "system"


def test_periodic_schedule_registered():
    from pureboot.celery import app

    app.loader.import_default_modules()
    app.finalize()
    names = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert "nodes.fail_stuck_installs" in names
