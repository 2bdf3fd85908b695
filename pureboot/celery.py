"""The Celery application shared by the web process and the workers."""

import logging
import logging.config
import os
from datetime import timedelta
from logging.handlers import WatchedFileHandler

from celery import Celery, signals
from django.conf import settings
from prometheus_client import start_http_server

from . import metrics
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
    logging.config.dictConfig(settings.LOGGING)
    root = logging.getLogger()
    if loglevel:
        root.setLevel(loglevel)
    if logfile and isinstance(logfile, str):
        handler = WatchedFileHandler(logfile, encoding="utf-8")
        # The console handler's formatter and filters (text or JSON, context, redaction).
        console = next((h for h in root.handlers if h.name == "console"), None)
        if console is not None:
            handler.setFormatter(console.formatter)
            for log_filter in console.filters:
                handler.addFilter(log_filter)
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())
        root.addHandler(handler)


# Task outcomes by task name, for Prometheus (pureboot.metrics). Counted in
# the process that ran the task: the worker (its /metrics), or the web process
# when tasks run eagerly (the embedded set-up).
@signals.task_success.connect
def _count_success(sender=None, **_kwargs) -> None:
    metrics.TASK_SUCCEEDED.labels(getattr(sender, "name", "unknown")).inc()


@signals.task_failure.connect
def _count_failure(sender=None, **_kwargs) -> None:
    metrics.TASK_FAILED.labels(getattr(sender, "name", "unknown")).inc()


@signals.task_retry.connect
def _count_retry(sender=None, **_kwargs) -> None:
    metrics.TASK_RETRIED.labels(getattr(sender, "name", "unknown")).inc()


# Pools whose tasks run in the worker's own process (celery.concurrency.<module>
# or the --pool name); prefork's run in children.
IN_PROCESS_POOLS = ("solo", "thread", "eventlet", "gevent")


@signals.worker_init.connect
def _serve_worker_metrics(sender=None, **_kwargs) -> None:
    """PUREBOOT_WORKER_METRICS_PORT: the worker's /metrics, from its main process.

    Prefork children count in their own memory; only prometheus-client's
    multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set before the worker starts)
    lets the main process serve their sum, so without it a prefork worker
    serves nothing and says why.
    """
    port = settings.PUREBOOT_WORKER_METRICS_PORT
    if not port:
        return
    pool = getattr(sender, "pool_cls", None)
    pool_name = pool.__module__ if isinstance(pool, type) else str(pool or "prefork")
    in_process = any(name in pool_name for name in IN_PROCESS_POOLS)
    if not in_process and not metrics.multiprocess_dir():
        logging.getLogger(__name__).error(
            "PUREBOOT_WORKER_METRICS_PORT is set but this worker's pool (%s) runs tasks in "
            "child processes: set PROMETHEUS_MULTIPROC_DIR (an empty directory) or use "
            "--pool=solo/threads; not serving metrics",
            pool_name,
        )
        return
    for name in sender.app.tasks if sender else ():
        if not name.startswith("celery."):  # every task's series exists from the start
            for counter in (metrics.TASK_SUCCEEDED, metrics.TASK_FAILED, metrics.TASK_RETRIED):
                counter.labels(name)
    address = settings.PUREBOOT_WORKER_METRICS_ADDRESS
    try:
        start_http_server(port, addr=address, registry=metrics.process_registry())
    except OSError as exc:
        logging.getLogger(__name__).error(
            "cannot serve worker metrics on %s:%s: %s", address, port, exc
        )
        return
    logging.getLogger(__name__).info("worker metrics on http://%s:%s/metrics", address, port)


@signals.worker_ready.connect
def _sweep_at_start(sender, **_kwargs) -> None:
    """A worker that starts (after a crash, a reboot) sweeps abandoned uploads at
    once, not only at the first beat; ``manage.py bootstrap`` does it too."""
    sender.app.signature("workflows.sweep_incoming").delay()


@app.on_after_finalize.connect
def _periodic_tasks(sender: Celery, **_kwargs) -> None:
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
        sender.signature("configmgmt.reconcile"),
        name="configuration management: config runs, Salt keys, Chef registrations",
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
        timedelta(hours=1),
        sender.signature("bootserve.prune_boot_records"),
        name="delete boot records older than PUREBOOT_BOOT_RECORD_DAYS",
    )
    sender.add_periodic_task(
        timedelta(seconds=settings.PUREBOOT_WEBHOOK_DISPATCH_SECONDS),
        sender.signature("webhooks.dispatch"),
        name="turn new audit events into webhook deliveries and send due ones",
    )
    sender.add_periodic_task(
        timedelta(hours=1),
        sender.signature("webhooks.prune"),
        name="delete finished webhook deliveries older than PUREBOOT_WEBHOOK_DELIVERY_DAYS",
    )
    if settings.PUREBOOT_SYSLOG_URL:
        sender.add_periodic_task(
            timedelta(seconds=settings.PUREBOOT_SYSLOG_INTERVAL_SECONDS),
            sender.signature("audit.forward_syslog"),
            name="forward new audit events to the syslog collector",
        )
