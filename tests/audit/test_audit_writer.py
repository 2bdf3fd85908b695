"""The writer: a linked chain, redaction, request context, JSON-ready values."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import transaction

from audit import context
from audit.hashing import GENESIS_HASH, compute_hash
from audit.models import AuditEvent
from audit.services import record, verify_chain

pytestmark = pytest.mark.django_db


def test_writer_builds_a_linked_chain_from_seq_1(make_events):
    make_events(5)
    events = list(AuditEvent.objects.all())
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS_HASH
    for before, after in zip(events, events[1:], strict=False):
        assert after.prev_hash == before.hash
        assert after.timestamp >= before.timestamp
    for event in events:
        assert event.hash == compute_hash(event, event.prev_hash)
    assert verify_chain().intact


def test_stored_values_hash_the_same_after_a_round_trip():
    """What is read back from the database hashes to what the writer hashed."""
    written = record(
        actor="user:alice",
        action="node.update",
        object_type="nodes.node",
        object_id=42,
        changes={"hostname": {"before": "a", "after": "b"}},
        message="rename \x00 with a NUL",
        details={
            "when": datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
            "uuid": uuid.UUID(int=1),
            "price": Decimal("1.50"),
            "tags": ("x", "y"),
            3: "int key",
            "big": 1e20,
            "neg_zero": -0.0,
            "ratio": 0.1,
            "unicode": "é ✓",
        },
    )
    stored = AuditEvent.objects.get(pk=written.pk)
    assert stored.object_id == "42"
    assert stored.details["when"] == "2024-05-06T07:08:09+00:00"
    assert stored.details["uuid"] == str(uuid.UUID(int=1))
    assert stored.details["price"] == "1.50"
    assert stored.details["tags"] == ["x", "y"]
    assert stored.details["3"] == "int key"
    assert "\x00" not in stored.message
    assert stored.hash == written.hash == compute_hash(stored, stored.prev_hash)


def test_secrets_are_redacted_at_any_depth():
    event = record(
        actor="user:alice",
        action="node.update",
        changes={
            "root_password": {"before": "old-secret", "after": "new-secret"},
            "hostname": {"before": "a", "after": "b"},
        },
        details={
            "API_KEY": "k1",
            "nested": {"join": {"Password": "p", "user": "u"}, "items": [{"token": "t"}]},
            "private_key": {"pem": "-----BEGIN"},
            "db_credentials": ["x"],
            "secret": None,
        },
    )
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.changes["root_password"] == {"before": "[redacted]", "after": "[redacted]"}
    assert stored.changes["hostname"] == {"before": "a", "after": "b"}
    assert stored.details == {
        "API_KEY": "[redacted]",
        "nested": {
            "join": {"Password": "[redacted]", "user": "u"},
            "items": [{"token": "[redacted]"}],
        },
        "private_key": "[redacted]",
        "db_credentials": "[redacted]",
        "secret": "[redacted]",
    }
    for secret in ("old-secret", "new-secret", "k1", "-----BEGIN"):
        assert secret not in str(stored.changes) + str(stored.details)


def test_source_ip_and_request_id_come_from_the_request_context():
    token = context.set_current(context.RequestContext("req-123", "2001:DB8:0:0:0:0:0:1"))
    try:
        event = record(actor="system", action="test.ctx")
    finally:
        context.reset(token)
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.request_id == "req-123"
    assert stored.source_ip == "2001:db8::1"
    assert stored.hash == compute_hash(stored, stored.prev_hash)


def test_event_rolls_back_with_the_callers_transaction(make_events):
    make_events(1)
    with pytest.raises(RuntimeError), transaction.atomic():
        record(actor="system", action="test.rolled_back")
        raise RuntimeError("the change failed")
    nxt = record(actor="system", action="test.after")
    assert nxt.seq == 2
    assert verify_chain().intact


@pytest.mark.parametrize(
    ("details", "error"),
    [({"x": object()}, TypeError), ({"x": float("nan")}, ValueError)],
)
def test_values_that_cannot_be_json_are_refused(details, error):
    with pytest.raises(error):
        record(actor="system", action="test.bad", details=details)
    assert not AuditEvent.objects.exists()


def test_actor_and_action_are_required():
    with pytest.raises(ValueError):
        record(actor="", action="x")
    with pytest.raises(ValueError):
        record(actor="system", action="")


def test_str_names_seq_actor_action_and_object():
    event = record(actor="user:bob", action="node.assign", object_type="nodes.node", object_id=7)
    assert str(event) == "#1 user:bob node.assign nodes.node:7"
