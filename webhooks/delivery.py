"""Turning new audit events into deliveries, and sending them.

:func:`dispatch` (periodic) reads the audit trail past a cursor and writes
one :class:`~webhooks.models.Delivery` per matching enabled subscription,
advancing the cursor in the same transaction. Audit seqs are assigned under
a lock held until their transaction commits, so they become visible in
order and the cursor never skips one.

:func:`queue_due` marks the due deliveries queued (holding each back for a
lease, so later dispatch runs do not queue it again) and :func:`send` makes
one attempt: it claims the delivery by moving its ``next_attempt_at`` past
the attempt's deadline (the claim: no other worker takes it meanwhile, and
only the claimant records the outcome), POSTs the signed body without
following redirects, and records the outcome. Any failure (no complete
answer in time, a non-2xx status, a redirect, an unreadable answer, any
error) is retried with exponential backoff until
``PUREBOOT_WEBHOOK_MAX_ATTEMPTS``; all of it lives in the database, so
retries survive a worker restart.
"""

from __future__ import annotations

import json
import logging
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from urllib3.exceptions import ReadTimeoutError
from urllib3.util import Timeout

from audit.models import AuditEvent

from . import events, services, signing
from .choices import DeliveryStatus
from .models import Delivery, DispatchCursor, Subscription

log = logging.getLogger(__name__)

BATCH = 500
EXCERPT_CHARS = 500
ERROR_CHARS = 1000
READ_CAP = 64 * 1024
MAX_BACKOFF_SECONDS = 3600
USER_AGENT = "PureBoot-Webhook/1"


def _cursor() -> DispatchCursor:
    # One row, always pk 1: two first dispatchers racing to make it find the same row.
    cursor, _ = DispatchCursor.objects.select_for_update().get_or_create(pk=1)
    return cursor


def dispatch(batch: int = BATCH) -> tuple[int, bool]:
    """Write the deliveries for audit events past the cursor.

    Handles at most ``batch`` events per call; returns how many deliveries
    were made and whether events are left for another call. Subscriptions
    get only events after their creation, only of the types they ask for, and
    with a site only events of that site's nodes; a disabled one gets none.
    """
    with transaction.atomic():
        cursor = _cursor()
        subscriptions = list(Subscription.objects.filter(enabled=True))
        tip = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
        if not subscriptions:
            cursor.last_seq = max(cursor.last_seq, tip)
            cursor.save(update_fields=["last_seq", "updated_at"])
            return 0, False
        floor = max(cursor.last_seq, min(s.start_seq for s in subscriptions))
        batch_events = list(
            AuditEvent.objects.filter(seq__gt=floor, action__in=events.MAPPED_ACTIONS).order_by(
                "seq"
            )[:batch]
        )
        # Nothing mapped past the floor in this batch: everything up to the tip is done.
        last = batch_events[-1].seq if len(batch_events) == batch else tip
        facts = events.nodes_of(batch_events)
        rows = []
        for event in batch_events:
            types = events.types_of(event)
            node = facts.get(events.node_id_of(event))
            for subscription in subscriptions:
                if event.seq <= subscription.start_seq:
                    continue
                chosen = next((t for t in types if t in subscription.events), None)
                if chosen is None:
                    continue
                if subscription.site_id is not None and (
                    node is None or node.site_id != subscription.site_id
                ):
                    continue
                rows.append(
                    Delivery(
                        subscription=subscription,
                        audit_seq=event.seq,
                        event_type=chosen,
                        payload=events.payload(event, chosen, node),
                    )
                )
        Delivery.objects.bulk_create(rows, ignore_conflicts=True)
        cursor.last_seq = max(cursor.last_seq, last)
        cursor.save(update_fields=["last_seq", "updated_at"])
    return len(rows), len(batch_events) == batch


def dispatch_all(batch: int = BATCH, max_batches: int = 20) -> int:
    """:func:`dispatch` until caught up (or ``max_batches``: the next run goes on)."""
    made = 0
    for _ in range(max_batches):
        count, more = dispatch(batch)
        made += count
        if not more:
            break
    return made


def due(limit: int = BATCH) -> list[int]:
    """Pending deliveries whose time has come, of enabled subscriptions, oldest first."""
    return list(
        Delivery.objects.filter(
            status=DeliveryStatus.PENDING,
            next_attempt_at__lte=timezone.now(),
            subscription__enabled=True,
        )
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )


def queue_due(limit: int = BATCH) -> list[tuple[int, str]]:
    """Mark the due deliveries queued; returns (id, token) for one message each.

    Each is held back for :func:`lease` (its ``next_attempt_at`` moved there,
    the token): the next dispatch runs do not queue it again, only the
    message carrying the token may claim it early, and a message that is lost
    (a worker restart) leaves it due again once that time has passed.
    """
    with transaction.atomic():
        ids = list(
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(
                status=DeliveryStatus.PENDING,
                next_attempt_at__lte=timezone.now(),
                subscription__enabled=True,
            )
            .order_by("next_attempt_at", "pk")
            .values_list("pk", flat=True)[:limit]
        )
        until = timezone.now() + lease()
        Delivery.objects.filter(pk__in=ids).update(next_attempt_at=until)
    return [(pk, until.isoformat()) for pk in ids]


def prune() -> int:
    """Delete finished deliveries last attempted over PUREBOOT_WEBHOOK_DELIVERY_DAYS ago."""
    cutoff = timezone.now() - timedelta(days=settings.PUREBOOT_WEBHOOK_DELIVERY_DAYS)
    deleted, _ = (
        Delivery.objects.filter(status__in=(DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED))
        .filter(
            Q(last_attempt_at__lt=cutoff) | Q(last_attempt_at__isnull=True, created_at__lt=cutoff)
        )
        .delete()
    )
    return deleted


def backoff(attempts: int) -> timedelta:
    """Wait after the ``attempts``-th failed attempt: the base, doubling, at most an hour."""
    base = settings.PUREBOOT_WEBHOOK_RETRY_SECONDS
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS))


def lease() -> timedelta:
    """How long a queued or claimed attempt keeps others off: its deadline and a margin."""
    return timedelta(seconds=2 * settings.PUREBOOT_WEBHOOK_TIMEOUT + 60)


def body_of(delivery: Delivery) -> bytes:
    """The exact bytes sent (and signed): compact JSON, keys sorted, with the delivery's id."""
    return json.dumps(
        {**delivery.payload, "delivery": delivery.pk},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")


def clean(text: str, limit: int) -> str:
    """Without NUL, other control characters (tab and newline kept) and lone surrogates,
    at most ``limit`` characters: storable in any database."""
    return "".join(
        ch for ch in text if ch in "\t\n" or unicodedata.category(ch) not in ("Cc", "Cs")
    )[:limit]


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None = None
    excerpt: str = ""
    error: str = ""


def post(url: str, body: bytes, headers: dict[str, str]) -> Outcome:
    """One POST: no redirects followed, within one deadline, a capped excerpt of the answer kept.

    Connecting and each wait for the receiver are limited to the timeout; the
    body is read in pieces of at most ``EXCERPT_CHARS`` bytes until it ends,
    ``READ_CAP`` bytes were read or the timeout has passed since the start
    (then the attempt failed). Any error is a failed :class:`Outcome`.
    """
    timeout = settings.PUREBOOT_WEBHOOK_TIMEOUT
    deadline = time.monotonic() + timeout
    try:
        with requests.post(
            url,
            data=body,
            headers=headers,
            timeout=Timeout(connect=timeout, read=timeout, total=timeout),
            allow_redirects=False,
            stream=True,
        ) as response:
            code = response.status_code
            kept = b""
            read = 0
            while read < READ_CAP:
                if time.monotonic() > deadline:
                    return Outcome(
                        False, code, _excerpt(kept), f"No complete answer within {timeout} s."
                    )
                chunk = response.raw.read1(EXCERPT_CHARS, decode_content=True)
                if not chunk:
                    break
                read += len(chunk)
                kept = (kept + chunk)[:EXCERPT_CHARS]
            excerpt = _excerpt(kept)
    except (requests.Timeout, ReadTimeoutError):
        return Outcome(False, error=f"No answer within {timeout} s.")
    except Exception as exc:  # noqa: BLE001 - any failure is a failed attempt, recorded
        return Outcome(False, error=clean(f"{type(exc).__name__}: {exc}", ERROR_CHARS))
    if 200 <= code < 300:
        return Outcome(True, code, excerpt)
    if 300 <= code < 400:
        return Outcome(False, code, excerpt, f"HTTP {code}: redirects are not followed.")
    return Outcome(False, code, excerpt, f"HTTP {code} from the receiver.")


def _excerpt(raw: bytes) -> str:
    return clean(raw.decode("utf-8", errors="replace"), EXCERPT_CHARS)


def _claim(delivery_id: int, token: str | None) -> tuple[Delivery | None, str]:
    """Claim a due delivery for one attempt: (it, its claim) or (None, why not).

    Due means its ``next_attempt_at`` has passed, or equals ``token`` (the
    time :func:`queue_due` set for the message carrying it). The claim is the
    new ``next_attempt_at``; only its holder records the outcome. A delivery
    whose attempts already reached PUREBOOT_WEBHOOK_MAX_ATTEMPTS (an attempt
    that never recorded one) is marked failed instead.
    """
    queued = datetime.fromisoformat(token) if token else None
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(of=("self",))
            .select_related("subscription")
            .filter(pk=delivery_id, status=DeliveryStatus.PENDING)
            .first()
        )
        now = timezone.now()
        if (
            delivery is None
            or not delivery.subscription.enabled
            or (
                delivery.next_attempt_at is not None
                and delivery.next_attempt_at > now
                and delivery.next_attempt_at != queued
            )
        ):
            return None, "skipped"
        if delivery.attempts >= settings.PUREBOOT_WEBHOOK_MAX_ATTEMPTS:
            delivery.status = DeliveryStatus.FAILED
            delivery.next_attempt_at = None
            delivery.error = delivery.error or (
                f"Attempt {delivery.attempts} recorded no outcome (the worker stopped); "
                "no attempts left."
            )
            delivery.save(update_fields=["status", "next_attempt_at", "error"])
            return None, delivery.status
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.next_attempt_at = now + lease()
        delivery.save(update_fields=["attempts", "last_attempt_at", "next_attempt_at"])
        return delivery, ""


def send(delivery_id: int, token: str | None = None) -> str:
    """Make one attempt at a due delivery; returns its status afterwards.

    "skipped" when it is not due (or claimed by another), "superseded" when
    it was claimed anew (redelivered) during the attempt: that outcome is
    not recorded.
    """
    delivery, why = _claim(delivery_id, token)
    if delivery is None:
        return why
    claim = delivery.next_attempt_at
    subscription = delivery.subscription
    try:
        body = body_of(delivery)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            signing.EVENT_HEADER: delivery.event_type,
            signing.DELIVERY_HEADER: str(delivery.pk),
            signing.SIGNATURE_HEADER: signing.sign(services.secret_of(subscription), body),
        }
        outcome = post(subscription.url, body, headers)
    except Exception as exc:  # noqa: BLE001 - e.g. SoftTimeLimitExceeded: a failed attempt
        outcome = Outcome(False, error=clean(f"{type(exc).__name__}: {exc}", ERROR_CHARS))
    now = timezone.now()
    delivery.response_code = outcome.status_code
    delivery.response_excerpt = clean(outcome.excerpt, EXCERPT_CHARS)
    delivery.error = clean(outcome.error, ERROR_CHARS)
    if outcome.ok:
        delivery.status = DeliveryStatus.SUCCEEDED
        delivery.delivered_at = now
        delivery.next_attempt_at = None
    elif delivery.attempts >= settings.PUREBOOT_WEBHOOK_MAX_ATTEMPTS:
        delivery.status = DeliveryStatus.FAILED
        delivery.next_attempt_at = None
    else:
        delivery.next_attempt_at = now + backoff(delivery.attempts)
    recorded = Delivery.objects.filter(
        pk=delivery.pk, status=DeliveryStatus.PENDING, next_attempt_at=claim
    ).update(
        status=delivery.status,
        response_code=delivery.response_code,
        response_excerpt=delivery.response_excerpt,
        error=delivery.error,
        delivered_at=delivery.delivered_at,
        next_attempt_at=delivery.next_attempt_at,
    )
    log.info(
        "webhook delivery %s (%s) to %s, attempt %s: %s %s",
        delivery.pk,
        delivery.event_type,
        subscription.name,
        delivery.attempts,
        delivery.status if recorded else "superseded (claimed anew meanwhile; not recorded)",
        delivery.error or outcome.status_code,
    )
    return delivery.status if recorded else "superseded"
