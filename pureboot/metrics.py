"""Prometheus exposition: the web app's ``/metrics``, who may scrape it, and the task counters.

Metrics come from three kinds of sources:

- counters and histograms that each process increments in memory
  (django-prometheus' requests, latencies and database calls; the apps'
  ``metrics.py`` counters; the Celery task counters below);
- collectors that read the database when Prometheus scrapes (nodes by
  state, the approval queue): right whichever process did the work, so they
  are served by the web app only;
- with several processes (gunicorn's workers, a prefork Celery worker), the
  per-process values of the first kind are summed by prometheus-client's
  multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is set (each process
  writes its values to files there; the scrape reads them all).

Who may scrape the web app's ``/metrics``: loopback, the networks in
``PUREBOOT_METRICS_ALLOW``, or anyone presenting ``Authorization: Bearer
<PUREBOOT_METRICS_TOKEN>``; everyone else, and anyone presenting other
credentials, gets a 403. The address is the one
``pureboot.clientip`` resolved (X-Forwarded-For only from trusted proxies).

This module is in the project's base: it imports no app. The database
collectors are handed to :class:`MetricsView` by ``pureboot.urls``.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterable, Iterator
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import View
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

LOOPBACK = ("127.0.0.0/8", "::1/128")

# Celery task outcomes by task name (the names are the registered tasks', a
# bounded set). Wired to Celery's signals in pureboot/celery.py.
TASK_SUCCEEDED = Counter(
    "pureboot_celery_task_successes", "Celery tasks that returned, by task name.", ["task"]
)
TASK_FAILED = Counter(
    "pureboot_celery_task_failures",
    "Celery tasks that raised (and were not retried), by task name.",
    ["task"],
)
TASK_RETRIED = Counter(
    "pureboot_celery_task_retries", "Celery task retries scheduled, by task name.", ["task"]
)


def multiprocess_dir() -> str:
    """``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client reads it itself), or ''."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()


def process_registry() -> CollectorRegistry:
    """What this process counted: every process's values in multiprocess mode, else its own."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry
    return REGISTRY


class Combined:
    """Several collectors scraped as one registry (``generate_latest`` only calls ``collect``)."""

    def __init__(self, sources: Iterable[Collector]) -> None:
        self.sources = tuple(sources)

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()


@lru_cache(maxsize=8)
def _networks(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in (*LOOPBACK, *spec))


def may_scrape(address: str, authorization: str) -> bool:
    """Whether a scrape from ``address`` carrying ``authorization`` is answered.

    A request that presents credentials is judged by them alone: a wrong
    token is refused even from loopback (behind a proxy that is not in
    PUREBOOT_TRUSTED_PROXIES every request looks like loopback; the shipped
    nginx passes /metrics on only with an Authorization header).
    """
    if authorization:
        token = settings.PUREBOOT_METRICS_TOKEN
        scheme, _, presented = authorization.partition(" ")
        return bool(
            token
            and scheme.lower() == "bearer"
            # Constant time: the comparison must not tell how much of a guess was right.
            and hmac.compare_digest(presented.strip().encode("utf-8", "replace"), token.encode())
        )
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in _networks(tuple(settings.PUREBOOT_METRICS_ALLOW)))


class MetricsView(View):
    """``GET /metrics``: the Prometheus text exposition of this process (or all its siblings)
    and of the database collectors; 403 for a client that may not scrape."""

    http_method_names = ["get", "head"]
    collectors: tuple[Collector, ...] = ()

    def get(self, request: HttpRequest) -> HttpResponse:
        if not may_scrape(
            request.META.get("REMOTE_ADDR", ""), request.headers.get("Authorization", "")
        ):
            return JsonResponse(
                {
                    "detail": "Metrics are served to loopback, PUREBOOT_METRICS_ALLOW networks "
                    "and PUREBOOT_METRICS_TOKEN holders only.",
                    "code": "permission_denied",
                },
                status=403,
            )
        body = generate_latest(Combined((process_registry(), *self.collectors)))
        response = HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
        response["Cache-Control"] = "no-store"
        return response
