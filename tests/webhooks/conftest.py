"""A signature-checking receiver and an admin's API client for the webhook tests."""

from __future__ import annotations

import itertools

import pytest

from tests.factories import make_user
from webhooks import delivery

from .receiver import Receiver

_names = itertools.count(1)


def run_due() -> list[str]:
    """What the periodic ``webhooks.dispatch`` task does, with each send run here
    rather than queued (the Redis leg runs Celery tasks in a worker, not in-process)."""
    delivery.dispatch_all()
    return [delivery.send(pk, token) for pk, token in delivery.queue_due()]


@pytest.fixture
def receiver():
    running = Receiver().start()
    yield running
    running.stop()


@pytest.fixture
def admin_user(db):
    return make_user("Admin")


@pytest.fixture
def admin_api(api, admin_user):
    return api(admin_user)


@pytest.fixture
def subscribe(admin_api, receiver):
    """Create a subscription through the API; the receiver learns its secret."""

    def make(path: str = "/ok", **extra) -> dict:
        body = {"name": f"hook-{next(_names)}", "url":
                f"{receiver.base}{path}", "events": ["node.transition"], **extra}  # fmt: skip
        answer = admin_api.post("/api/v1/webhooks", body, format="json")
        assert answer.status_code == 201, answer.data
        receiver.secret = answer.data["secret"]
        return answer.data

    return make
