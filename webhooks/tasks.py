"""Thin Celery tasks of the webhooks app."""

from celery import shared_task
from django.conf import settings

from . import delivery


@shared_task(
    name="webhooks.deliver",
    soft_time_limit=3 * settings.PUREBOOT_WEBHOOK_TIMEOUT + 30,
    time_limit=3 * settings.PUREBOOT_WEBHOOK_TIMEOUT + 50,
)
def deliver(delivery_id: int) -> str:
    return delivery.send(delivery_id)


@shared_task(name="webhooks.dispatch")
def dispatch() -> list[int]:
    """Turn new audit events into deliveries, then queue every due one (periodic)."""
    delivery.dispatch_all()
    due = delivery.due()
    for delivery_id in due:
        deliver.delay(delivery_id)
    return due
