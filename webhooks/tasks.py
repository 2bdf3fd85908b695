"""Thin Celery tasks of the webhooks app."""

from celery import shared_task
from django.conf import settings

from . import delivery


@shared_task(
    name="webhooks.deliver",
    soft_time_limit=2 * settings.PUREBOOT_WEBHOOK_TIMEOUT + 30,
    time_limit=2 * settings.PUREBOOT_WEBHOOK_TIMEOUT + 50,
)
def deliver(delivery_id: int, token: str | None = None) -> str:
    return delivery.send(delivery_id, token)


@shared_task(name="webhooks.dispatch")
def dispatch() -> list[int]:
    """Turn new audit events into deliveries, then queue each due one once (periodic)."""
    delivery.dispatch_all()
    queued = delivery.queue_due()
    for delivery_id, token in queued:
        deliver.delay(delivery_id, token)
    return [delivery_id for delivery_id, _ in queued]


@shared_task(name="webhooks.prune")
def prune() -> int:
    """Delete finished deliveries older than PUREBOOT_WEBHOOK_DELIVERY_DAYS (hourly)."""
    return delivery.prune()
