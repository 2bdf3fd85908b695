"""``audit_verify`` and ``verify_chain``: intact chains pass, tampering is named."""

from __future__ import annotations

import pytest
from conftest import insert_raw, raw_fields
from django.core.management import CommandError, call_command
from django.db import connection

from audit.db import unlocked
from audit.hashing import GENESIS_HASH, compute_hash
from audit.models import AuditEvent
from audit.services import verify_chain

pytestmark = pytest.mark.django_db


def _tip() -> AuditEvent:
    return AuditEvent.objects.order_by("-seq").first()


def test_intact_chain_exits_zero(make_events, capsys):
    make_events(7)
    call_command("audit_verify", chunk_size=3)  # crosses batch boundaries
    assert "audit chain intact: 7 events, last seq 7" in capsys.readouterr().out


def test_empty_chain_is_intact(capsys):
    call_command("audit_verify")
    assert "audit chain intact: 0 events, last seq 0" in capsys.readouterr().out


def test_forged_hash_is_named(make_events):
    make_events(3)
    insert_raw(raw_fields(4, _tip().hash, hash="f" * 64))
    with pytest.raises(CommandError, match=r"seq 4: hash mismatch"):
        call_command("audit_verify")


def test_gap_is_named(make_events):
    make_events(3)
    insert_raw(raw_fields(5, _tip().hash))  # correctly hashed and linked, but seq 4 is missing
    with pytest.raises(CommandError, match=r"seq 5: gap after seq 3"):
        call_command("audit_verify")


def test_broken_link_is_named(make_events):
    make_events(2)
    insert_raw(raw_fields(3, "a" * 64))
    report = verify_chain()
    assert (report.bad_seq, report.count, report.last_seq) == (3, 2, 2)
    assert report.reason.startswith("broken link")


def test_modified_row_is_named(make_events):
    make_events(5)
    with unlocked(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET actor = 'user:mallory' WHERE seq = 2")
    with pytest.raises(CommandError, match=r"seq 2: hash mismatch"):
        call_command("audit_verify", chunk_size=2)


def test_rehashed_modified_row_breaks_the_next_link(make_events):
    """Recomputing the tampered row's own hash only moves the failure to the next row."""
    make_events(3)
    row = AuditEvent.objects.get(seq=2)
    row.actor = "user:mallory"
    forged_hash = compute_hash(row, row.prev_hash)
    with unlocked(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE audit_auditevent SET actor = %s, hash = %s WHERE seq = 2",
            [row.actor, forged_hash],
        )
    report = verify_chain()
    assert (report.bad_seq, report.reason[:11]) == (3, "broken link")


def test_chain_must_start_at_seq_1():
    insert_raw(raw_fields(2, GENESIS_HASH))
    with pytest.raises(CommandError, match=r"seq 2: chain starts at seq 2, expected 1"):
        call_command("audit_verify")


def test_bad_chunk_size_is_refused():
    with pytest.raises(CommandError, match="chunk-size"):
        call_command("audit_verify", chunk_size=0)
