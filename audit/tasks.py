"""Thin Celery tasks of the audit app."""

from celery import shared_task

from . import forwarding


@shared_task(name="audit.forward_syslog")
def forward_syslog() -> str:
    """Forward new audit events to the syslog collector (periodic, while configured).

    A collector that is down is logged and recorded on the cursor, and the
    next run sends the same events again.
    """
    try:
        return str(forwarding.forward())
    except forwarding.ForwardError as exc:
        return f"not forwarded: {exc}"
