"""Thin Celery tasks of the hypervisors app."""

from celery import shared_task
from django.conf import settings

from nodes.transitions import SYSTEM

from . import operations, services


@shared_task(
    name="hypervisors.run_operation",
    soft_time_limit=settings.PUREBOOT_HYPERVISOR_TASK_LIMIT,
    time_limit=settings.PUREBOOT_HYPERVISOR_TASK_LIMIT + 30,
)
def run_operation(operation_id: int) -> str:
    return operations.run(operation_id)


@shared_task(name="hypervisors.retry_operations")
def retry_operations() -> list[int]:
    """Run again what failed transiently once its backoff elapsed (periodic)."""
    due = operations.retry_due()
    for operation_id in due:
        run_operation.delay(operation_id)
    return due


@shared_task(name="hypervisors.sync_due")
def sync_due() -> list[int]:
    """Queue a sync of every hypervisor whose interval elapsed (periodic)."""
    due = services.due_for_sync()
    for hypervisor_id in due:
        services.request_sync(hypervisor_id, SYSTEM)
    return due
