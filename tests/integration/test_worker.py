"""Smoke tests for the real Celery worker fixture (Redis broker, test database)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from pureboot.celery import app

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def test_worker_answers_ping(celery_worker_process):
    replies = app.control.ping(destination=[celery_worker_process.hostname], timeout=5.0)

    assert replies == [{celery_worker_process.hostname: {"ok": "pong"}}]


def test_task_round_trip_uses_the_test_database(celery_worker_process):
    get_user_model().objects.create_user("worker-probe")

    result = app.send_task("pureboot_tests.db_probe", args=["worker-probe"])

    assert result.get(timeout=30) == {
        "database": connection.settings_dict["NAME"],
        "user_exists": True,
    }
