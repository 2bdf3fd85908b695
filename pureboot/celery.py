"""The Celery application shared by the web process and the workers."""

import os
from datetime import timedelta

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pureboot.settings")

app = Celery("pureboot")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _periodic_tasks(sender: Celery, **_kwargs) -> None:
    from django.conf import settings

    sender.add_periodic_task(
        timedelta(seconds=settings.PUREBOOT_INSTALL_CHECK_SECONDS),
        sender.signature("nodes.fail_stuck_installs"),
        name="fail stuck installs",
    )
    sender.add_periodic_task(
        timedelta(seconds=settings.PUREBOOT_INSTALL_CHECK_SECONDS),
        sender.signature("workflows.close_stale_runs"),
        name="close stale install runs",
    )
    sender.add_periodic_task(
        timedelta(minutes=15),
        sender.signature("workflows.sweep_incoming"),
        name="sweep abandoned upload files",
    )
    sender.add_periodic_task(
        timedelta(seconds=60),
        sender.signature("approvals.expire_requests"),
        name="expire approval requests",
    )
    sender.add_periodic_task(
        timedelta(seconds=60),
        sender.signature("accounts.end_emergency_access"),
        name="record the end of emergency access",
    )
