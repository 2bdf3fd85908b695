from celery import shared_task

from . import emergency


@shared_task(name="accounts.end_emergency_access", ignore_result=True)
def end_emergency_access() -> int:
    """Record (and audit) the end of emergency grants whose window is over.

    The rights themselves end on time without this: every permission check
    looks at the clock.
    """
    return emergency.end_overdue()
