"""The fleet's Prometheus metrics: transitions and installs counted, the fleet read at scrape time.

Counters are incremented where a transition executes (``nodes.transitions.record``),
once its transaction commits, so a rolled-back transition counts nothing.
Installs are transitions too: ``-> installing`` from another state starts
one, ``installing -> installed`` is a success, ``installing -> failed`` a
failure; the duration is the time since the node entered ``installing``.

Gauges (nodes by state and site, installs running and stuck) are read from
the database by :class:`FleetCollector` when Prometheus scrapes, so they are
right however many processes changed the nodes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from . import lifecycle as lc
from .choices import NodeState
from .models import Node

TRANSITIONS = Counter(
    "pureboot_node_transitions",
    "Lifecycle transitions committed, by the state left and the state entered.",
    ["from_state", "to_state"],
)
INSTALLS_STARTED = Counter(
    "pureboot_installs_started", "Installs started (a node entered installing)."
)
INSTALLS_SUCCEEDED = Counter(
    "pureboot_installs_succeeded", "Installs that ended installed (installing -> installed)."
)
INSTALLS_FAILED = Counter(
    "pureboot_installs_failed",
    "Installs that ended failed (installing -> failed: a failure report, the attempt limit, "
    "the install timeout).",
)
INSTALL_DURATION = Histogram(
    "pureboot_install_duration_seconds",
    "Time from entering installing to leaving it, by how the install ended.",
    ["result"],
    buckets=(60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200, 10800, 21600),
)

# Every declared transition's series exists from the start, at zero: rate()
# and increase() see the first one, and a dashboard lists them all.
for _action in lc.ACTIONS.values():
    for _source in _action.sources:
        TRANSITIONS.labels(_source, _action.target)
for _result in ("succeeded", "failed"):
    INSTALL_DURATION.labels(_result)


def count_transition(before: str, after: str, entered_before_at: datetime | None) -> None:
    """Count one committed transition (and the install it starts or ends)."""
    TRANSITIONS.labels(before, after).inc()
    if after == NodeState.INSTALLING and before != NodeState.INSTALLING:
        INSTALLS_STARTED.inc()
    if before != NodeState.INSTALLING or after not in (NodeState.INSTALLED, NodeState.FAILED):
        return
    result = "succeeded" if after == NodeState.INSTALLED else "failed"
    (INSTALLS_SUCCEEDED if after == NodeState.INSTALLED else INSTALLS_FAILED).inc()
    if entered_before_at is not None:
        seconds = max((timezone.now() - entered_before_at).total_seconds(), 0.0)
        INSTALL_DURATION.labels(result).observe(seconds)


class FleetCollector:
    """Nodes by state and site, installs running, stuck and the oldest one's age (two queries)."""

    def describe(self) -> list[Metric]:
        return []  # read at scrape time; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        nodes = GaugeMetricFamily(
            "pureboot_nodes", "Nodes by lifecycle state and site.", labels=["state", "site"]
        )
        for row in Node.objects.values("state", "site__name").annotate(n=Count("pk")).order_by():
            nodes.add_metric([row["state"], row["site__name"] or ""], row["n"])
        yield nodes
        now = timezone.now()
        cutoff = now - timedelta(minutes=settings.PUREBOOT_INSTALL_TIMEOUT_MINUTES)
        installing = Node.objects.filter(state=NodeState.INSTALLING).aggregate(
            running=Count("pk"),
            stuck=Count("pk", filter=Q(state_changed_at__lt=cutoff)),
            oldest=Min("state_changed_at"),
        )
        yield GaugeMetricFamily(
            "pureboot_installs_in_progress", "Nodes installing now.", value=installing["running"]
        )
        yield GaugeMetricFamily(
            "pureboot_installs_stuck",
            "Nodes installing for longer than PUREBOOT_INSTALL_TIMEOUT_MINUTES (the periodic "
            "task fails them; more than zero for long means no worker or beat runs it).",
            value=installing["stuck"],
        )
        oldest = installing["oldest"]
        yield GaugeMetricFamily(
            "pureboot_install_oldest_age_seconds",
            "How long the longest-running install has been running (0: none running).",
            value=(now - oldest).total_seconds() if oldest else 0.0,
        )
