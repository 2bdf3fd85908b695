"""Reading a Prometheus text exposition the way Prometheus does (prometheus-client's parser)."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def families(text: str) -> dict:
    """Metric families by name; a counter's family is named without ``_total``."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(text: str, sample: str, **labels: str) -> float:
    """The value of the sample named ``sample`` with exactly ``labels``; 0 when absent."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and s.labels == labels:
                return s.value
    return 0.0


def names(text: str) -> set[str]:
    """Every family and sample name in the exposition (counters with and without _total)."""
    found = set()
    for family in text_string_to_metric_families(text):
        found.add(family.name)
        if family.type == "counter":
            found.add(f"{family.name}_total")
        found.update(s.name for s in family.samples)
    return found


def get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - test URL
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return response.read().decode()
