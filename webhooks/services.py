"""Managing webhook subscriptions: every change in one transaction with its audit event.

The signing secret is generated here (never chosen by a client), stored
only as a Fernet token, and handed back once: by :func:`create_subscription`
and :func:`rotate_secret`. Audit events say that a secret was set, never
its value.
"""

from __future__ import annotations

import secrets
from typing import Any

from celery import current_app
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from audit import services as audit
from audit.models import AuditEvent
from credentials import services as credentials
from nodes.permissions import accessible_sites, sees_all_sites
from nodes.transitions import Actor

from .choices import PING, DeliveryStatus
from .models import Delivery, Subscription

EDITABLE_FIELDS = ("name", "url", "events", "site", "enabled", "description")
SECRET_BYTES = 32


class WebhookError(Exception):
    """A refused webhook operation (answered 409)."""


def scope(user, queryset: QuerySet | None = None) -> QuerySet:
    """Subscriptions ``user`` may see: all for all-sites holders, else their sites' ones."""
    qs = Subscription.objects.all() if queryset is None else queryset
    if sees_all_sites(user):
        return qs
    return qs.filter(site__in=accessible_sites(user))


def scope_deliveries(user, queryset: QuerySet | None = None) -> QuerySet:
    """Deliveries of the subscriptions ``user`` may see."""
    qs = Delivery.objects.all() if queryset is None else queryset
    if sees_all_sites(user):
        return qs
    return qs.filter(subscription__site__in=accessible_sites(user))


def _metadata(subscription: Subscription) -> dict[str, Any]:
    return {
        "name": subscription.name,
        "url": subscription.url,
        "events": list(subscription.events),
        "site": subscription.site.slug if subscription.site_id else None,
        "enabled": subscription.enabled,
        "description": subscription.description,
    }


def _record(actor: Actor, action: str, subscription: Subscription, **kw: Any) -> None:
    audit.record(
        actor=actor.label,
        action=action,
        object_type="webhooks.subscription",
        object_id=subscription.pk,
        **kw,
    )


def _tip() -> int:
    return AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


def create_subscription(actor: Actor, fields: dict[str, Any]) -> tuple[Subscription, str]:
    """Create a subscription; returns it and its new secret (shown this once).

    It receives events appended to the audit trail after its creation.
    Raises Django's ``ValidationError`` for invalid fields.
    """
    secret = secrets.token_urlsafe(SECRET_BYTES)
    subscription = Subscription(**{k: v for k, v in fields.items() if k in EDITABLE_FIELDS})
    subscription.created_by = actor.label
    subscription.secret_ciphertext = credentials.encrypt(secret)
    subscription.full_clean()
    with transaction.atomic():
        subscription.start_seq = _tip()
        subscription.save(force_insert=True)
        after = _metadata(subscription)
        _record(
            actor,
            "webhook.create",
            subscription,
            changes={k: {"before": None, "after": v} for k, v in after.items()},
            details={"secret": "set"},
        )
    return subscription, secret


def update_subscription(pk: int, actor: Actor, fields: dict[str, Any]) -> Subscription:
    """Change a subscription's fields (not its secret: see :func:`rotate_secret`)."""
    with transaction.atomic():
        subscription = (
            Subscription.objects.select_for_update(of=("self",)).select_related("site").get(pk=pk)
        )
        before = _metadata(subscription)
        for key, value in fields.items():
            if key in EDITABLE_FIELDS:
                setattr(subscription, key, value)
        subscription.full_clean()
        subscription.save()
        after = _metadata(subscription)
        changes = {
            k: {"before": before[k], "after": after[k]} for k in after if before[k] != after[k]
        }
        if changes:
            _record(actor, "webhook.update", subscription, changes=changes)
    return subscription


def delete_subscription(pk: int, actor: Actor) -> None:
    """Delete a subscription and its delivery records; the audit keeps its settings."""
    with transaction.atomic():
        subscription = (
            Subscription.objects.select_for_update(of=("self",)).select_related("site").get(pk=pk)
        )
        _record(
            actor,
            "webhook.delete",
            subscription,
            changes={k: {"before": v, "after": None} for k, v in _metadata(subscription).items()},
            details={"deliveries": subscription.deliveries.count()},
        )
        subscription.delete()


def rotate_secret(pk: int, actor: Actor) -> tuple[Subscription, str]:
    """Replace the signing secret; returns the new one (shown this once).

    Deliveries sent from now on, retries included, are signed with it.
    """
    secret = secrets.token_urlsafe(SECRET_BYTES)
    with transaction.atomic():
        subscription = Subscription.objects.select_for_update().get(pk=pk)
        subscription.secret_ciphertext = credentials.encrypt(secret)
        subscription.secret_rotated_at = timezone.now()
        subscription.save(update_fields=["secret_ciphertext", "secret_rotated_at", "updated_at"])
        _record(
            actor,
            "webhook.rotate_secret",
            subscription,
            changes={"secret": {"before": "[old]", "after": "[new]"}},
        )
    return subscription, secret


def rotate_sealed(reencrypt) -> int:
    """Re-encrypt every signing secret under the primary Fernet key.

    Called by ``manage.py rotate_keys`` inside its transaction with
    :func:`credentials.services.reencrypt`; returns how many it re-encrypted.
    """
    count = 0
    for subscription in Subscription.objects.select_for_update().order_by("pk"):
        fresh = reencrypt(
            subscription.secret_ciphertext, f"Webhook {subscription.name!r}'s signing secret"
        )
        if fresh is not None:
            Subscription.objects.filter(pk=subscription.pk).update(secret_ciphertext=fresh)
            count += 1
    return count


def queue(delivery_pk: int) -> None:
    """Send a delivery from a worker once the caller's transaction commits.

    A queueing failure is logged, never undoing the committed change: the
    periodic dispatch picks up every due delivery anyway.
    """
    send = current_app.signature("webhooks.deliver", args=[delivery_pk])
    transaction.on_commit(send.delay, robust=True)


def secret_of(subscription: Subscription) -> str:
    """The signing secret in clear, for signing one delivery (never logged or shown)."""
    return credentials.decrypt(subscription.secret_ciphertext)


def ping(pk: int, actor: Actor) -> Delivery:
    """Queue a ``ping`` delivery, so an operator can see the receiver accept a signed POST.

    Raises :class:`WebhookError` when the subscription is disabled.
    """
    with transaction.atomic():
        subscription = Subscription.objects.select_for_update().get(pk=pk)
        if not subscription.enabled:
            raise WebhookError(f"Webhook {subscription.name} is disabled; enable it first.")
        delivery = Delivery.objects.create(
            subscription=subscription,
            audit_seq=None,
            event_type=PING,
            payload={
                "type": PING,
                "occurred_at": timezone.now().isoformat(timespec="microseconds"),
                "webhook": subscription.name,
                "requested_by": actor.label,
            },
        )
        _record(actor, "webhook.test", subscription, details={"delivery": delivery.pk})
    return delivery


def redeliver(delivery_pk: int, actor: Actor, queryset=None) -> Delivery:
    """Send a delivery again from its first attempt (same payload, signed anew).

    ``queryset`` narrows where it is looked up (the caller's scope). Raises
    :class:`WebhookError` while it is still pending or its subscription is disabled.
    """
    source = Delivery.objects.all() if queryset is None else queryset
    with transaction.atomic():
        delivery = (
            source.select_for_update(of=("self",))
            .select_related("subscription")
            .get(pk=delivery_pk)
        )
        if delivery.status == DeliveryStatus.PENDING:
            raise WebhookError(f"Delivery #{delivery.pk} is still pending; it will be sent.")
        if not delivery.subscription.enabled:
            raise WebhookError(
                f"Webhook {delivery.subscription.name} is disabled; enable it first."
            )
        previous = delivery.status
        delivery.status = DeliveryStatus.PENDING
        delivery.attempts = 0
        delivery.next_attempt_at = timezone.now()
        delivery.error = ""
        delivery.save(update_fields=["status", "attempts", "next_attempt_at", "error"])
        _record(
            actor,
            "webhook.redeliver",
            delivery.subscription,
            details={"delivery": delivery.pk, "previous_status": previous},
        )
    return delivery
