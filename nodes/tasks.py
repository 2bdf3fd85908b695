"""Thin Celery tasks: they call services."""

from celery import shared_task

from . import services


@shared_task(name="nodes.fail_stuck_installs", ignore_result=True)
def fail_stuck_installs() -> list[int]:
    """Fail nodes stuck in ``installing`` past PUREBOOT_INSTALL_TIMEOUT_MINUTES."""
    return services.fail_stuck_installs()
