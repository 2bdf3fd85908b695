"""The approval queue for Prometheus, read from the database at scrape time.

How many four-eye requests wait and how long the oldest has waited, by
action: right across every web and worker process, since the database is the
only place the queue lives. A request past its expiry that the periodic task
has not closed yet is not waiting any more and is not counted.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from .models import ApprovalRequest, Status


class ApprovalQueueCollector:
    """``pureboot_approvals_pending`` and ``pureboot_approvals_oldest_pending_age_seconds``."""

    def describe(self) -> list[Metric]:
        return []  # read at scrape time

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        pending = GaugeMetricFamily(
            "pureboot_approvals_pending", "Approval requests waiting, by action.", labels=["action"]
        )
        oldest = GaugeMetricFamily(
            "pureboot_approvals_oldest_pending_age_seconds",
            "How long the oldest waiting approval request has waited, by action.",
            labels=["action"],
        )
        rows = (
            ApprovalRequest.objects.filter(status=Status.PENDING, expires_at__gt=now)
            .values("action")
            .annotate(n=Count("pk"), first=Min("created_at"))
            .order_by()
        )
        for row in rows:
            pending.add_metric([row["action"]], row["n"])
            oldest.add_metric([row["action"]], (now - row["first"]).total_seconds())
        yield pending
        yield oldest
