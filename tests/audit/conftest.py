"""Fixtures for the audit tests: users with and without the audit right, raw rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection

from audit.hashing import compute_hash
from audit.services import record


@pytest.fixture
def auditor(db) -> User:
    user = User.objects.create_user("auditor", password="x-unused-x")
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="audit", codename="view_auditevent")
    )
    return user


@pytest.fixture
def plain_user(db) -> User:
    return User.objects.create_user("plain", password="x-unused-x")


@pytest.fixture
def admin_user(db) -> User:
    return User.objects.create_superuser("root", password="x-unused-x")


@pytest.fixture
def make_events(db) -> Callable[[int], list]:
    """Append ``n`` simple events through the real writer."""

    def make(n: int, **kwargs: Any) -> list:
        return [
            record(actor="system", action="test.event", object_id=str(i), **kwargs)
            for i in range(n)
        ]

    return make


def raw_fields(seq: int, prev_hash: str, **overrides: Any) -> dict[str, Any]:
    """A complete row for raw SQL, hashed correctly unless ``hash`` is given."""
    fields: dict[str, Any] = {
        "seq": seq,
        "timestamp": datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        "actor": "system",
        "action": "test.raw",
        "object_type": "",
        "object_id": "",
        "changes": {},
        "message": "",
        "details": {},
        "source_ip": None,
        "request_id": "",
    }
    fields.update(overrides)
    fields.setdefault("hash", compute_hash(fields, prev_hash))
    fields["prev_hash"] = prev_hash
    return fields


def insert_raw(fields: dict[str, Any]) -> None:
    """INSERT a row with plain SQL, as someone bypassing the writer would."""
    values = dict(fields)
    values["timestamp"] = connection.ops.adapt_datetimefield_value(values["timestamp"])
    values["changes"] = json.dumps(values["changes"])
    values["details"] = json.dumps(values["details"])
    columns = ", ".join(values)
    placeholders = ", ".join(["%s"] * len(values))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO audit_auditevent ({columns}) VALUES ({placeholders})",
            list(values.values()),
        )
