"""Test-only Celery tasks for the worker metrics test, loaded with ``--include``.

The test process sends them by name and never imports this module; production
workers never register them.
"""

from __future__ import annotations

from celery import shared_task


@shared_task(name="pureboot_tests.metrics_ok")
def metrics_ok() -> str:
    return "ok"


@shared_task(name="pureboot_tests.metrics_fail")
def metrics_fail() -> None:
    raise RuntimeError("failing on purpose")


@shared_task(name="pureboot_tests.metrics_retry_once", bind=True, max_retries=1)
def metrics_retry_once(self) -> str:
    if self.request.retries == 0:
        raise self.retry(countdown=0)
    return "retried"
