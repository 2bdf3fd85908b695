"""Boot records: the one write path, its flood bounds, and the scoped reads.

``record_boot`` writes every boot record but DHCP's (``record_dhcp_event``,
run by ``manage.py record_dhcp_event``, off the boot path). It is called on
the boot path (``services.handle_boot``, the fast path, the HTTP boot views)
and by the TFTP daemon's database helper (``tftp_files.record``). On the hot path it costs at most
one INSERT (none for a repeat) and never fails the boot: any error is
logged and swallowed, and the machine gets its answer as if nothing had
been recorded.

Bounds, per process (each web worker and the TFTP helper keeps its own):

- **coalescing**: a request identical to one recorded less than
  PUREBOOT_BOOT_RECORD_COALESCE_SECONDS ago (same protocol, address, MAC,
  node, what was asked and what it got) costs no statement at all: it is
  counted in memory, and the count is added to that row's ``repeats`` (and
  its ``last_at`` moved) by one UPDATE when the same request comes again
  after the window, just before that request's new row. A machine polling
  ``/boot/ipxe`` every 10 s while it waits is one row a minute and two
  statements a minute, not six rows. The repeats of a machine's last window
  are written only if it asks again (or lost with the process), so
  ``repeats`` is a lower bound.
- **per-address cap**: at most PUREBOOT_BOOT_RECORD_RATE new rows a minute
  from one client address. Past it nothing is written for that address until
  the next minute (no query at all); the number left out is carried in the
  ``suppressed`` field of the address's next row, and logged once a minute.
- **per-process cap**: at most MAX_ROWS_PER_MINUTE new rows a minute from all
  addresses together, and at most MAX_SOURCES addresses counted in one minute
  (a new address past that is left out for the minute): many addresses (spoofed
  TFTP sources, an IPv6 prefix) cannot grow the table faster than one.
- The iPXE wait loop's poll counter (``round=``) is not part of what was
  asked, so a waiting machine's polls fold into one row.
- **retention**: ``prune`` (the ``bootserve.prune_boot_records`` beat task
  and ``manage.py prune_boot_records``) deletes rows older than
  PUREBOOT_BOOT_RECORD_DAYS.

Who sees what (``scope_records``): a record is visible where its node is:
everyone with ``nodes.view_node`` sees the records of the sites they may see
(the site is the node's site when the request came); records without a site
(unknown machines, discovered nodes, nodes without a site) are visible to
those who see every site (Admins and Auditors), the same people who see the
discovered nodes themselves.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import BooleanField, Case, F, Q, QuerySet, Value, When
from django.utils import timezone

from nodes.identifiers import normalize_mac
from nodes.models import Node
from nodes.permissions import accessible_sites, sees_all_sites

from .engine import Decision, Kind, Step
from .models import ANSWER_MAX, ASKED_MAX, BootRecord, Outcome, Protocol

log = logging.getLogger(__name__)

# Control characters (NUL too), and the Unicode direction and zero-width
# controls that would make a hostile row read differently on a page.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
# The iPXE wait loop's counter (bootserve.views.poll_url): not part of what was asked.
_POLL_COUNTER = re.compile(r"(?<=[?&])round=[^&]*(&|$)")
MAX_REMEMBERED = 10_000  # coalescing keys one process keeps (cleared when full)
MAX_SOURCES = 4_096  # addresses one process counts in one minute
MAX_ROWS_PER_MINUTE = 6_000  # new rows one process writes a minute, all addresses together
PRUNE_BATCH = 5_000  # rows one retention statement deletes (short write locks)
MAX_LIMIT = 500  # the most rows recent_boots returns

# key -> [primary key, monotonic time until which repeats fold into it,
#         repeats not written yet, when the latest of them came]
_recent: dict[tuple, list] = {}
# address -> [minute, rows written this minute, requests left out since the last row]
_sources: dict[str, list[int]] = {}
# [minute, rows written this minute by this process, requests left out this minute]
_budget: list[int] = [0, 0, 0]
_lock = threading.Lock()  # threaded servers (runserver, gthread) share the two dicts

DECISION_OUTCOMES = {
    Kind.INSTALL: Outcome.INSTALL,
    Kind.LOCAL: Outcome.LOCAL_DISK,
    Kind.AGENT: Outcome.AGENT,
    Kind.IGNORE: Outcome.NO_ANSWER,
    Kind.WAIT: Outcome.WAIT,
}


def decision_outcome(decision: Decision) -> str:
    """The record outcome of a boot decision (a registration is ``discovered``)."""
    if decision.step == Step.REGISTER:
        return Outcome.DISCOVERED
    return DECISION_OUTCOMES[decision.kind]


def clean_text(value: object, limit: int) -> str:
    """``value`` as text a column takes: control and direction characters as ``?``, capped."""
    text = value if isinstance(value, str) else str(value or "")
    text = _CONTROL.sub("?", text[: limit * 2])
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clean_mac(value: object) -> str:
    """The normalised MAC, or "" for anything that is not one."""
    try:
        return normalize_mac(value) if value else ""
    except ValueError:
        return ""


def clean_address(value: object) -> str | None:
    """The client address as the column stores it, or None for anything else."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        ip = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped  # a dual-stack listener reports ::ffff:10.0.0.5
    return str(ip)


def record_boot(
    protocol: str,
    outcome: str,
    *,
    address: str = "",
    mac: str = "",
    node_id: int | None = None,
    site_id: int | None = None,
    node_state: str = "",
    asked: str = "",
    answer: str = "",
) -> None:
    """Record one boot request and its answer; never raises.

    Usually one statement (an INSERT) or none (a repeat within the window,
    an address past its cap); once per window, a request that repeats an
    earlier one also writes that row's count first (see the module docstring).
    Every argument may be hostile text: it is cleaned and capped here.
    """
    try:
        _record(protocol, outcome, address, mac, node_id, site_id, node_state, asked, answer)
    except Exception:  # the boot answer goes out whatever happens here
        log.warning(
            "boot record not written (%s %s from %s)",
            protocol,
            outcome,
            clean_text(address, 64),
            exc_info=True,
        )


def _record(
    protocol: str,
    outcome: str,
    address: str,
    mac: str,
    node_id: int | None,
    site_id: int | None,
    node_state: str,
    asked: str,
    answer: str,
) -> None:
    address = clean_address(address)
    mac = clean_mac(mac)
    asked = clean_text(_POLL_COUNTER.sub("", asked).rstrip("?&"), ASKED_MAX)
    answer = clean_text(answer, ANSWER_MAX)
    node_state = clean_text(node_state, 32)
    key = (protocol, address, mac, node_id, asked, outcome)
    now = time.monotonic()
    window = settings.PUREBOOT_BOOT_RECORD_COALESCE_SECONDS
    with _lock:
        known = _recent.get(key)
        if known is not None and known[1] > now:
            known[2] += 1  # a repeat within the window: counted, no statement
            known[3] = timezone.now()
            return
        ended = _recent.pop(key, None)
        suppressed = _admit(address or "unknown", now)
        entry = None
        if suppressed is not None and window:
            # Claimed before the INSERT: a racing identical request (another
            # thread) counts itself as a repeat of this row instead of adding one.
            if len(_recent) >= MAX_REMEMBERED:
                _recent.clear()
            entry = _recent[key] = [None, now + window, 0, timezone.now()]
    # Single statements, each committed by itself: the callers write no other
    # rows in the same breath (handle_boot records after its transaction), so
    # there is no transaction of theirs for a failed INSERT to spoil.
    if ended is not None and ended[0] is not None and ended[2]:
        BootRecord.objects.filter(pk=ended[0]).update(
            repeats=F("repeats") + ended[2], last_at=ended[3]
        )
    if suppressed is None:
        return
    stamp = timezone.now()
    try:
        row = BootRecord.objects.create(
            created=stamp,
            last_at=stamp,
            protocol=protocol,
            client_address=address,
            mac=mac,
            node_id=node_id,
            site_id=site_id,
            asked=asked,
            outcome=outcome,
            answer=answer,
            node_state=node_state,
            suppressed=suppressed,
        )
    except Exception:
        with _lock:
            if _recent.get(key) is entry:
                _recent.pop(key, None)  # nothing to count repeats on
        raise
    if entry is not None:
        with _lock:
            entry[0] = row.pk


def _admit(address: str, now: float) -> int | None:
    """Whether ``address`` may have one more row this minute: the count left out, or None.

    Called with ``_lock`` held.
    """
    rate = settings.PUREBOOT_BOOT_RECORD_RATE
    minute = int(now // 60)
    if _budget[0] != minute:
        if _budget[2]:
            log.warning(
                "boot records: %d requests left out last minute past %d rows a minute "
                "(all addresses together)",
                _budget[2],
                MAX_ROWS_PER_MINUTE,
            )
        _budget[:] = [minute, 0, 0]
    counts = _sources.get(address)
    if counts is None and len(_sources) >= MAX_SOURCES:
        # Forget only the addresses of earlier minutes: clearing everything
        # would give every address (the flooding ones too) a fresh cap.
        for stale in [key for key, value in _sources.items() if value[0] != minute]:
            del _sources[stale]
        if len(_sources) >= MAX_SOURCES:
            _budget[2] += 1  # too many addresses this minute: this one is left out
            return None
    if counts is None or counts[0] != minute:
        left_out = counts[2] if counts is not None else 0
        counts = _sources[address] = [minute, 0, left_out]
    if (rate and counts[1] >= rate) or _budget[1] >= MAX_ROWS_PER_MINUTE:
        if counts[2] == 0 or counts[2] % 1000 == 0:
            log.warning(
                "boot records: %s passed %d records a minute (PUREBOOT_BOOT_RECORD_RATE) or "
                "this process its %d; its further requests this minute are counted, not recorded",
                address,
                rate,
                MAX_ROWS_PER_MINUTE,
            )
        counts[2] += 1
        _budget[2] += 1
        return None
    counts[1] += 1
    _budget[1] += 1
    left_out, counts[2] = counts[2], 0
    return left_out


def forget() -> None:
    """Drop the coalescing and cap memory (the tests start each from nothing)."""
    with _lock:
        _recent.clear()
        _sources.clear()
        _budget[:] = [0, 0, 0]


def record_decision(
    protocol: str,
    decision: Decision,
    node,
    *,
    address: str,
    asked: str,
    via: str,
    mac: str = "",
) -> None:
    """Record a boot decision for ``node`` (a Node, or None for an unknown machine)."""
    record_boot(
        protocol,
        decision_outcome(decision),
        address=address,
        mac=mac,
        node_id=node.pk if node is not None else None,
        site_id=node.site_id if node is not None else None,
        node_state=node.state if node is not None else "",
        asked=asked,
        answer=f"{via}: {decision.reason}",
    )


# --- DHCP ------------------------------------------------------------------

#: dnsmasq's lease events (its dhcp-script's first argument) and what they record.
DHCP_ACTIONS = {
    "add": (Outcome.DHCP_LEASE, "granted"),
    "old": (Outcome.DHCP_RENEW, "renewed"),
    "del": (Outcome.DHCP_RELEASE, "ended"),
}


def record_dhcp_event(
    action: str,
    mac: str,
    address: str,
    *,
    vendor_class: str = "",
    tags: str = "",
    hostname: str = "",
    remaining: str = "",
) -> BootRecord:
    """Record one dnsmasq lease event; the row written.

    Raises ValueError naming what is wrong with the action, MAC or address: this
    is the script's command line, not the boot path, so a bad call is an error.
    One query finds the node by its MAC, one writes the row. Each event comes in
    its own process (dnsmasq runs the script once per event), so events are not
    coalesced; dnsmasq itself bounds them (one per lease granted, renewed or
    ended, and each lease is an address of the range).
    """
    if action not in DHCP_ACTIONS:
        raise ValueError(
            f"dnsmasq event {clean_text(action, 40)!r} is not recorded "
            f"(only {', '.join(DHCP_ACTIONS)})"
        )
    outcome, verb = DHCP_ACTIONS[action]
    normalised = normalize_mac(mac)  # ValueError names the value
    leased = clean_address(address)
    if leased is None:
        raise ValueError(f"{clean_text(address, 64)!r} is not an IP address")
    node = (
        Node.objects.filter(interfaces__mac=normalised)
        .values("id", "site_id", "state")
        .order_by("pk")
        .first()
    )
    asked = "; ".join(
        part
        for part in (
            f"vendor class {vendor_class}" if vendor_class else "",
            f"tags {tags}" if tags else "",
            f"host name {hostname}" if hostname else "",
        )
        if part
    )
    until = f" for {remaining} s" if remaining.isdigit() and action != "del" else ""
    stamp = timezone.now()
    with transaction.atomic():
        return BootRecord.objects.create(
            created=stamp,
            last_at=stamp,
            protocol=Protocol.DHCP,
            client_address=leased,
            mac=normalised,
            node_id=node["id"] if node else None,
            site_id=node["site_id"] if node else None,
            node_state=node["state"] if node else "",
            asked=clean_text(asked or "DHCP lease", ASKED_MAX),
            outcome=outcome,
            answer=clean_text(f"DHCP lease {leased} {verb}{until}", ANSWER_MAX),
        )


# --- reads -------------------------------------------------------------------


def scope_records(user, queryset: QuerySet | None = None) -> QuerySet:
    """``queryset`` (all records by default) narrowed to what ``user`` may see."""
    qs = BootRecord.objects.all() if queryset is None else queryset
    if not (user and user.is_authenticated and user.is_active and user.has_perm("nodes.view_node")):
        return qs.none()
    if sees_all_sites(user):
        return qs
    return qs.filter(site__in=accessible_sites(user))


def with_node_shown(user, queryset: QuerySet) -> QuerySet:
    """``queryset`` with ``node_shown``: whether ``user`` may see the record's node now."""
    if sees_all_sites(user):
        shown = Q(node__isnull=False)
    else:
        shown = Q(node__site_id=F("site_id")) | Q(node__site__in=accessible_sites(user))
    return queryset.annotate(
        node_shown=Case(
            When(shown, then=Value(True)), default=Value(False), output_field=BooleanField()
        )
    )


def recent_boots(user, limit: int = 50, node=None) -> list[BootRecord]:
    """The newest boot records ``user`` may see, at most ``limit`` (capped at 500).

    ``node``: only that node's records (a Node or its id); for the dashboard
    and the node timeline.
    """
    qs = scope_records(user).select_related("node", "site")
    if node is not None:
        qs = qs.filter(node=node)
    return list(qs[: max(0, min(int(limit), MAX_LIMIT))])


def prune(days: int | None = None, *, now: datetime | None = None) -> int:
    """Delete records older than ``days`` (PUREBOOT_BOOT_RECORD_DAYS); how many went.

    In batches of PRUNE_BATCH rows, each its own short statement, so that the
    boot path's INSERTs never wait behind one huge delete (SQLite locks the
    whole database while it writes).
    """
    days = settings.PUREBOOT_BOOT_RECORD_DAYS if days is None else days
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deleted = 0
    while True:
        batch = list(
            BootRecord.objects.filter(last_at__lt=cutoff)
            .order_by("pk")
            .values_list("pk", flat=True)[:PRUNE_BATCH]
        )
        if not batch:
            return deleted
        with transaction.atomic():
            count, _ = BootRecord.objects.filter(pk__in=batch).delete()
        deleted += count
