"""Thin Celery tasks of the agent app."""

from celery import shared_task

from . import services


@shared_task(name="agent.fail_lost_jobs")
def fail_lost_jobs() -> list[int]:
    return services.fail_lost_jobs()
