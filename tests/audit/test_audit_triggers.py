"""The database refuses UPDATE and DELETE on the audit table unless unlocked."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from audit.db import unlocked
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def _execute(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_auditevent SET actor = 'user:mallory'",
        "DELETE FROM audit_auditevent",
        "DELETE FROM audit_auditevent WHERE seq = 1",
    ],
)
def test_raw_update_and_delete_are_refused(make_events, sql):
    make_events(2)
    # The savepoint keeps the test's transaction usable after the refusal.
    with pytest.raises(DatabaseError, match="audit log is append-only"), transaction.atomic():
        _execute(sql)
    assert list(AuditEvent.objects.values_list("actor", flat=True)) == ["system", "system"]


def test_orm_update_and_delete_are_refused(make_events):
    (event,) = make_events(1)
    event.actor = "user:mallory"
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        event.save()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get().actor == "system"


@pytest.mark.postgres
def test_truncate_is_refused_on_postgres(make_events):
    make_events(1)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        _execute("TRUNCATE audit_auditevent")
    assert AuditEvent.objects.count() == 1


def test_unlocked_lets_writes_through_and_locks_again(make_events):
    make_events(3)
    with unlocked():
        with unlocked():  # nested blocks keep the table open until the outermost exits
            _execute("UPDATE audit_auditevent SET message = 'x' WHERE seq = 1")
        _execute("DELETE FROM audit_auditevent WHERE seq = 3")
    assert AuditEvent.objects.count() == 2
    assert AuditEvent.objects.get(seq=1).message == "x"
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        _execute("DELETE FROM audit_auditevent")
    assert AuditEvent.objects.count() == 2


def test_unlocked_relocks_when_its_block_fails(make_events):
    make_events(1)
    with pytest.raises(RuntimeError), unlocked():
        raise RuntimeError("boom")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        _execute("DELETE FROM audit_auditevent")


@pytest.mark.django_db(transaction=True)
def test_transactional_tests_can_still_be_flushed(make_events):
    """Runs with a flush afterwards; the conftest fixture unlocks that flush."""
    make_events(2)
    assert AuditEvent.objects.count() == 2
