from celery import shared_task

from . import services


@shared_task(name="approvals.expire_requests", ignore_result=True)
def expire_requests() -> int:
    """Mark pending approval requests past their window expired."""
    return services.expire_requests()
