from celery import shared_task

from . import services


@shared_task(name="approvals.expire_requests", ignore_result=True)
def expire_requests() -> int:
    """Mark pending approval requests past their window expired."""
    return services.expire_requests()


@shared_task(name="approvals.end_emergency_access", ignore_result=True)
def end_emergency_access() -> int:
    """Record (and audit) the end of emergency grants whose window is over.

    The rights themselves end on time without this: every permission check
    looks at the clock.
    """
    from pureboot import emergency

    return emergency.end_overdue()
