"""Thin Celery tasks: they call services."""

from celery import shared_task

from . import services


@shared_task(name="configmgmt.reconcile", ignore_result=True)
def reconcile() -> dict:
    """Run due config_run steps; keep Salt keys and Chef registrations in step."""
    return services.reconcile()
