"""The Celery application shared by the web process and the workers."""

import logging
import logging.config
import os
from datetime import timedelta
from logging.handlers import WatchedFileHandler

from celery import Celery, signals

from .logredact import RedactSecrets

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pureboot.settings")

app = Celery("pureboot")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.setup_logging.connect
def _log_through_django(loglevel=None, logfile=None, **_kwargs) -> None:
    """Workers and beat log through settings.LOGGING, whose handler redacts secrets.

    Left to itself, Celery adds handlers of its own (the task loggers', the
    pool's, ``--logfile``'s) that no redaction filter guards. The worker's
    ``--loglevel`` still sets the level and ``--logfile`` still adds a file,
    redacted like the rest.
    """
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    root = logging.getLogger()
    if loglevel:
        root.setLevel(loglevel)
    if logfile and isinstance(logfile, str):
        handler = WatchedFileHandler(logfile, encoding="utf-8")
        handler.setFormatter(logging.Formatter(settings.LOGGING["formatters"]["plain"]["format"]))
        handler.addFilter(RedactSecrets())
        root.addHandler(handler)


@signals.worker_ready.connect
def _sweep_at_start(sender, **_kwargs) -> None:
    """A worker that starts (after a crash, a reboot) sweeps abandoned uploads at
    once, not only at the first beat; ``manage.py bootstrap`` does it too."""
    sender.app.signature("workflows.sweep_incoming").delay()


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
        sender.signature("workflows.wipe_offline_joins"),
        name="wipe offline domain-join blobs of ended install runs",
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
    sender.add_periodic_task(
        timedelta(seconds=60),
        sender.signature("agent.fail_lost_jobs"),
        name="fail agent jobs whose agent went silent",
    )
    sender.add_periodic_task(
        timedelta(minutes=15),
        sender.signature("agent.sweep_migration_luns"),
        name="remove migration LUNs that outlived their migration",
    )
    sender.add_periodic_task(
        timedelta(seconds=30),
        sender.signature("hypervisors.retry_operations"),
        name="retry hypervisor calls whose backoff elapsed",
    )
    sender.add_periodic_task(
        timedelta(seconds=60),
        sender.signature("hypervisors.sync_due"),
        name="sync hypervisors whose interval elapsed",
    )
    sender.add_periodic_task(
        timedelta(seconds=60),
        sender.signature("bootserve.sync_nfs_exports"),
        name="follow diskless nodes' leases in the NFS exports",
    )
    sender.add_periodic_task(
        timedelta(seconds=settings.PUREBOOT_WEBHOOK_DISPATCH_SECONDS),
        sender.signature("webhooks.dispatch"),
        name="turn new audit events into webhook deliveries and send due ones",
    )
    if settings.PUREBOOT_SYSLOG_URL:
        sender.add_periodic_task(
            timedelta(seconds=settings.PUREBOOT_SYSLOG_INTERVAL_SECONDS),
            sender.signature("audit.forward_syslog"),
            name="forward new audit events to the syslog collector",
        )
