"""Unauthenticated discovery is bounded: a rate per source and a cap on ``discovered``.

Anyone on the boot network can present a MAC PureBoot has never seen, and
every such request would register a node. ``admit`` says whether one more
may be registered now: at most ``PUREBOOT_DISCOVERY_RATE`` registrations a
minute from one source address, and none while ``PUREBOOT_DISCOVERY_MAX``
nodes are ``discovered`` (an operator assigns or retires them first). A
refused machine is answered as an unknown machine with discovery off (no
answer), nothing is stored, and the refusal is counted (``refused_count``)
and logged once a minute per source. The counters live in the shared cache
(Redis or the database table), so every web worker and the TFTP helper count
together.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.cache import cache

from nodes.choices import NodeState
from nodes.models import Node

log = logging.getLogger(__name__)
REFUSED = "unknown machine: not registered (discovery limit reached)"
_TOTAL = "pureboot:discovery:refused"


def admit(source: str) -> bool:
    """Whether an unknown machine asking from ``source`` may be registered now."""
    source = (source or "unknown")[:64]
    minute = int(time.time() // 60)
    rate = settings.PUREBOOT_DISCOVERY_RATE
    if rate:
        key = f"pureboot:discovery:{source}:{minute}"
        cache.add(key, 0, timeout=120)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=120)
            count = 1
        if count > rate:
            return _refuse(source, minute, f"more than {rate} new machines a minute from it")
    cap = settings.PUREBOOT_DISCOVERY_MAX
    if cap and Node.objects.filter(state=NodeState.DISCOVERED).count() >= cap:
        return _refuse(source, minute, f"{cap} nodes are discovered already")
    return True


def _refuse(source: str, minute: int, why: str) -> bool:
    cache.add(_TOTAL, 0, timeout=None)
    try:
        cache.incr(_TOTAL)
    except ValueError:
        cache.set(_TOTAL, 1, timeout=None)
    if cache.add(f"pureboot:discovery:logged:{source}:{minute}", 1, timeout=120):
        log.warning("discovery: not registering a new machine from %s: %s", source, why)
    return False


def refused_count() -> int:
    """Discovery requests refused since the counter's store was last emptied."""
    return int(cache.get(_TOTAL) or 0)
