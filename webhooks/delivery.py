"""Turning new audit events into deliveries, and sending them.

:func:`dispatch` (periodic) reads the audit trail past a cursor and writes
one :class:`~webhooks.models.Delivery` per matching enabled subscription,
advancing the cursor in the same transaction. Audit seqs are assigned under
a lock held until their transaction commits, so they become visible in
order and the cursor never skips one.

:func:`send` makes one attempt: it claims the delivery by moving its
``next_attempt_at`` past the attempt's time limit (so no other worker takes
it meanwhile), POSTs the signed body without following redirects, and
records the outcome. A failure (no answer in time, a non-2xx status, a
redirect) is retried with exponential backoff until
``PUREBOOT_WEBHOOK_MAX_ATTEMPTS``; all of it lives in the database, so
retries survive a worker restart.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent

from . import events, services, signing
from .choices import DeliveryStatus
from .models import Delivery, DispatchCursor, Subscription

log = logging.getLogger(__name__)

BATCH = 500
EXCERPT_CHARS = 500
ERROR_CHARS = 1000
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


def backoff(attempts: int) -> timedelta:
    """Wait after the ``attempts``-th failed attempt: the base, doubling, at most an hour."""
    base = settings.PUREBOOT_WEBHOOK_RETRY_SECONDS
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS))


def lease() -> timedelta:
    """How long a claimed attempt keeps others off: its timeouts and a margin."""
    return timedelta(seconds=3 * settings.PUREBOOT_WEBHOOK_TIMEOUT + 60)


def body_of(delivery: Delivery) -> bytes:
    """The exact bytes sent (and signed): compact JSON, keys sorted."""
    return json.dumps(
        delivery.payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None = None
    excerpt: str = ""
    error: str = ""


def post(url: str, body: bytes, headers: dict[str, str]) -> Outcome:
    """One POST: no redirects followed, a capped excerpt of the answer kept."""
    timeout = settings.PUREBOOT_WEBHOOK_TIMEOUT
    try:
        with requests.post(
            url,
            data=body,
            headers=headers,
            timeout=(timeout, timeout),
            allow_redirects=False,
            stream=True,
        ) as response:
            raw = response.raw.read(EXCERPT_CHARS, decode_content=True) or b""
            excerpt = raw.decode("utf-8", errors="replace")[:EXCERPT_CHARS]
            code = response.status_code
    except requests.Timeout:
        return Outcome(False, error=f"No answer within {timeout} s.")
    except requests.RequestException as exc:
        return Outcome(False, error=f"{type(exc).__name__}: {exc}"[:ERROR_CHARS])
    if 200 <= code < 300:
        return Outcome(True, code, excerpt)
    if 300 <= code < 400:
        return Outcome(False, code, excerpt, f"HTTP {code}: redirects are not followed.")
    return Outcome(False, code, excerpt, f"HTTP {code} from the receiver.")


def _claim(delivery_id: int) -> Delivery | None:
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
            or (delivery.next_attempt_at is not None and delivery.next_attempt_at > now)
        ):
            return None
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.next_attempt_at = now + lease()
        delivery.save(update_fields=["attempts", "last_attempt_at", "next_attempt_at"])
        return delivery


def send(delivery_id: int) -> str:
    """Make one attempt at a due delivery; returns its status afterwards ("skipped" if not due)."""
    delivery = _claim(delivery_id)
    if delivery is None:
        return "skipped"
    subscription = delivery.subscription
    body = body_of(delivery)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        signing.EVENT_HEADER: delivery.event_type,
        signing.DELIVERY_HEADER: str(delivery.pk),
        signing.SIGNATURE_HEADER: signing.sign(services.secret_of(subscription), body),
    }
    outcome = post(subscription.url, body, headers)
    now = timezone.now()
    delivery.response_code = outcome.status_code
    delivery.response_excerpt = outcome.excerpt
    delivery.error = outcome.error
    if outcome.ok:
        delivery.status = DeliveryStatus.SUCCEEDED
        delivery.delivered_at = now
        delivery.next_attempt_at = None
    elif delivery.attempts >= settings.PUREBOOT_WEBHOOK_MAX_ATTEMPTS:
        delivery.status = DeliveryStatus.FAILED
        delivery.next_attempt_at = None
    else:
        delivery.next_attempt_at = now + backoff(delivery.attempts)
    Delivery.objects.filter(pk=delivery.pk, attempts=delivery.attempts).update(
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
        delivery.status,
        outcome.error or outcome.status_code,
    )
    return delivery.status
