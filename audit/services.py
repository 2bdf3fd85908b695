"""The audit trail's one writer and its verifier.

Callers pass the actor explicitly and call :func:`record` inside the same
``transaction.atomic()`` as the change it describes, so the change and its
audit entry commit or roll back together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django.utils.ipv6 import clean_ipv6_address

from . import context
from .hashing import GENESIS_HASH, HASHED_FIELDS, compute_hash
from .models import AuditEvent
from .sanitise import clean_text, jsonable, redact, redact_changes

# Key of the PostgreSQL advisory lock that serialises appends ("PUREAUDT").
APPEND_LOCK_ID = 0x5055524541554454


def _lock_chain() -> None:
    """Serialise appenders until the surrounding transaction ends.

    On SQLite the settings use ``BEGIN IMMEDIATE``, so the transaction that
    reaches this point already holds the database's single write lock.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [APPEND_LOCK_ID])


def _normalise_ip(value: str | None) -> str | None:
    # Store the IP in the form the database hands back, or the hash would differ.
    if not value:
        return None
    return clean_ipv6_address(value) if ":" in value else value


def record(
    *,
    actor: str,
    action: str,
    object_type: str = "",
    object_id: str | int = "",
    changes: dict | None = None,
    message: str = "",
    details: dict | None = None,
) -> AuditEvent:
    """Append one event to the audit trail and return it.

    Call inside the caller's ``transaction.atomic()``; this opens a nested
    atomic block of its own. Appends are serialised by a lock held until the
    caller's transaction ends, so call this after taking any row locks
    (ideally as the transaction's last write): taking row locks after it
    can deadlock with another writer and holds up every other appender.
    ``source_ip`` and ``request_id`` come from
    :func:`audit.context.current`. Values under secret-looking keys in
    ``changes`` and ``details`` are stored as ``"[redacted]"``.

    Raises ``TypeError``/``ValueError`` when a value cannot be stored as JSON.
    """
    if not actor:
        raise ValueError("audit events need an actor")
    if not action:
        raise ValueError("audit events need an action")
    ctx = context.current()
    fields: dict[str, Any] = {
        "actor": clean_text(actor),
        "action": clean_text(action),
        "object_type": clean_text(object_type),
        "object_id": clean_text(str(object_id)),
        "changes": redact_changes(jsonable(changes or {})),
        "message": clean_text(message),
        "details": redact(jsonable(details or {})),
        "source_ip": _normalise_ip(ctx.source_ip),
        "request_id": clean_text(ctx.request_id),
    }
    with transaction.atomic():
        _lock_chain()
        # Read the tip only once the lock is held, so no other writer can
        # append between this read and our insert.
        last = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
        seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
        fields["seq"] = seq
        fields["timestamp"] = timezone.now()
        event = AuditEvent(**fields, prev_hash=prev_hash)
        event.hash = compute_hash(fields, prev_hash)
        event.save(force_insert=True)
    return event


@dataclass(frozen=True)
class ChainReport:
    """Outcome of :func:`verify_chain`.

    ``count`` and ``last_seq`` cover the intact prefix (0 when empty);
    ``bad_seq`` and ``reason`` name the first bad event, if any.
    """

    count: int
    last_seq: int
    bad_seq: int | None = None
    reason: str = ""
    first_seq: int = 1

    @property
    def intact(self) -> bool:
        return self.bad_seq is None

    def __str__(self) -> str:
        if self.intact:
            cleared = f" (events before seq {self.first_seq} cleared)" if self.first_seq > 1 else ""
            return f"audit chain intact: {self.count} events, last seq {self.last_seq}{cleared}"
        return f"audit chain broken at seq {self.bad_seq}: {self.reason}"


CHECKPOINT_ACTION = "audit.checkpoint"


def _start_after_clearing(first_seq: int) -> str | None:
    """The last cleared hash for a chain whose events up to ``first_seq - 1`` were cleared.

    An approved clearing leaves an ``audit.checkpoint`` event (itself inside
    the chain, so hashed like any other) naming the last cleared event and
    its hash: the remaining chain must continue exactly from there.
    """
    checkpoint = (
        AuditEvent.objects.filter(
            action=CHECKPOINT_ACTION, details__cleared_through_seq=first_seq - 1
        )
        .order_by("-seq")
        .first()
    )
    if checkpoint is None:
        return None
    return str(checkpoint.details.get("cleared_through_hash", ""))


def verify_chain(*, chunk_size: int = 2000) -> ChainReport:
    """Walk the whole chain in seq order and report the first bad event.

    Recomputes every hash, checks that ``prev_hash`` links to the previous
    event and that seq runs 1, 2, 3, ... without gaps; after an approved
    clearing, the chain starts where its checkpoint says the export ended.
    Streams rows in ``chunk_size`` batches, so memory stays constant however
    long the trail.
    """
    expected_seq, prev_hash, count = 1, GENESIS_HASH, 0
    first = AuditEvent.objects.order_by("seq").values_list("seq", flat=True).first()
    if first is not None and first != 1:
        start = _start_after_clearing(first)
        if start is None:
            return ChainReport(
                0,
                0,
                bad_seq=first,
                reason=f"chain starts at seq {first}, expected 1, and no audit.checkpoint "
                f"accounts for events 1-{first - 1}",
            )
        expected_seq, prev_hash = first, start
    rows = (
        AuditEvent.objects.order_by("seq")
        .only(*HASHED_FIELDS, "prev_hash", "hash")
        .iterator(chunk_size=chunk_size)
    )
    for event in rows:
        problem = ""
        if event.seq != expected_seq:
            problem = (
                f"gap after seq {expected_seq - 1}"
                if count
                else f"chain starts at seq {event.seq}, expected {expected_seq}"
            )
        elif event.prev_hash != prev_hash:
            problem = (
                "broken link: prev_hash does not match the previous event's hash"
                if count or expected_seq == 1
                else "broken link: the first event does not continue the cleared chain's "
                "last hash recorded by its checkpoint"
            )
        elif compute_hash(event, event.prev_hash) != event.hash:
            problem = "hash mismatch: the event's content does not match its hash"
        if problem:
            return ChainReport(count, expected_seq - 1, bad_seq=event.seq, reason=problem)
        expected_seq, prev_hash, count = event.seq + 1, event.hash, count + 1
    return ChainReport(count, expected_seq - 1, first_seq=first or 1)
