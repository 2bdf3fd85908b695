"""A node's history in one list: transitions and reports, audit events, boots,
installs and their log lines, and approval requests, newest first.

Each kind of entry lives in its own table, so the timeline is a merge: every
source is read newest first from a keyset cursor and the pages are merged in
Python. The cursor is the last entry's (time, source rank, id), which makes a
page cost one bounded query per source however deep the reader pages, and
keeps the order stable when new entries arrive meanwhile.

What each reader gets is scoped: the caller has already checked that the user
may see the node; audit events need ``audit.view_auditevent``, installs and
their logs the workflows view permissions, boot records follow
``bootserve.records.scope_records`` (the site a record happened at) and
approval requests the approvals app's own visibility rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Q, QuerySet

from approvals import services as approvals
from approvals.models import ApprovalRequest, Decision
from audit.models import AuditEvent
from bootserve import records as boot_records
from bootserve.models import BootRecord
from nodes.models import Node, NodeEvent
from workflows.models import RunLogLine, WorkflowRun

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = re.compile(r"^(\d{1,18})\.(\d{1,2})\.(\d{1,18})$")


class BadCursor(ValueError):
    """The ``before`` cursor is not one this module made."""


@dataclass(frozen=True)
class Entry:
    """One line of the timeline, whatever table it came from."""

    at: datetime
    source: str
    kind: str
    rank: int
    id: int
    actor: str
    summary: str
    state: str = ""
    url: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[int, int, int]:
        return (micros(self.at), self.rank, self.id)

    @property
    def cursor(self) -> str:
        return "{}.{}.{}".format(*self.key)


@dataclass
class Page:
    entries: list[Entry]
    next_cursor: str | None


@dataclass(frozen=True)
class Source:
    """One table the timeline reads: how to query it for a node, and how to show a row."""

    name: str
    rank: int
    time_field: str
    rows: Callable[[Node, Any], QuerySet | None]
    entry: Callable[[Any, int], Entry]


def micros(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def parse_cursor(value: str) -> tuple[int, int, int]:
    """(microseconds since the epoch, source rank, id); BadCursor unless well-formed
    and within what a date and a database id can hold."""
    match = _CURSOR.match(value or "")
    if not match:
        raise BadCursor("'before' is a cursor from a previous page's 'next' link.")
    try:
        _EPOCH + timedelta(microseconds=int(match[1]))
    except OverflowError:
        raise BadCursor("'before' names a time no entry can have.") from None
    return int(match[1]), int(match[2]), int(match[3])


def _after(source: Source, cursor: tuple[int, int, int] | None) -> Q:
    """Rows that come after ``cursor`` in (time, rank, id) descending order."""
    if cursor is None:
        return Q()
    t, rank, pk = cursor
    at = _EPOCH + timedelta(microseconds=t)
    older = Q(**{f"{source.time_field}__lt": at})
    same = Q(**{source.time_field: at})
    if source.rank < rank:
        return older | same
    if source.rank == rank:
        return older | (same & Q(pk__lt=pk))
    return older


# --- the sources -------------------------------------------------------------


def _node_events(node: Node, user) -> QuerySet | None:
    if not user.has_perm("nodes.view_nodeevent"):
        return None
    return NodeEvent.objects.filter(node=node)


def _node_event_entry(event: NodeEvent, rank: int) -> Entry:
    if event.kind == "transition":
        summary = f"{event.from_state} → {event.to_state}: {event.message}"
    else:
        summary = event.message
    return Entry(
        at=event.timestamp,
        source="event",
        kind=event.kind,
        rank=rank,
        id=event.pk,
        actor=event.actor,
        summary=summary,
        state=event.to_state,
        details={k: v for k, v in (event.details or {}).items() if k in _EVENT_DETAILS},
    )


# What of a NodeEvent's details a reader sees: the action and its plain parameters.
_EVENT_DETAILS = ("action", "workflow", "run", "progress", "approval", "approvers", "after")


def _audit_events(node: Node, user) -> QuerySet | None:
    if not user.has_perm("audit.view_auditevent"):
        return None
    return AuditEvent.objects.filter(object_type="nodes.node", object_id=str(node.pk))


def _audit_entry(event: AuditEvent, rank: int) -> Entry:
    return Entry(
        at=event.timestamp,
        source="audit",
        kind=event.action,
        rank=rank,
        id=event.pk,
        actor=event.actor,
        summary=f"{event.action}" + (f": {event.message}" if event.message else ""),
        details={"seq": event.seq, "changed": sorted(event.changes or {})},
    )


def _boots(node: Node, user) -> QuerySet | None:
    # The boot records' own scope: a record keeps the site it happened at.
    return boot_records.scope_records(user, BootRecord.objects.filter(node=node))


def _boot_entry(record: BootRecord, rank: int) -> Entry:
    repeats = f" (×{record.repeats})" if record.repeats > 1 else ""
    return Entry(
        at=record.created,
        source="boot",
        kind=record.outcome,
        rank=rank,
        id=record.pk,
        actor=record.mac or str(record.client_address or ""),
        summary=f"{record.get_protocol_display()} {record.asked}: "
        f"{record.get_outcome_display()}"
        + (f" ({record.answer})" if record.answer else "")
        + repeats,
        state=record.node_state,
        details={"protocol": record.protocol, "repeats": record.repeats},
    )


def _runs(node: Node, user) -> QuerySet | None:
    if not user.has_perm("workflows.view_workflowrun"):
        return None
    return WorkflowRun.objects.filter(node=node).select_related("version__workflow")


def _finished_runs(node: Node, user) -> QuerySet | None:
    runs = _runs(node, user)
    return None if runs is None else runs.filter(finished_at__isnull=False)


def _run_started_entry(run: WorkflowRun, rank: int) -> Entry:
    return Entry(
        at=run.started_at,
        source="install",
        kind="started",
        rank=rank,
        id=run.pk,
        actor=f"node:{run.node_id}",
        summary=f"Install started: {run.version} (run #{run.pk})",
        details={"run": run.pk, "workflow": str(run.version)},
    )


def _run_finished_entry(run: WorkflowRun, rank: int) -> Entry:
    error = f": {run.error}" if run.error else ""
    return Entry(
        at=run.finished_at,
        source="install",
        kind=run.status,
        rank=rank,
        id=run.pk,
        actor=f"node:{run.node_id}",
        summary=f"Install {run.get_status_display().lower()} (run #{run.pk}, "
        f"{run.progress}%){error}",
        details={"run": run.pk, "status": run.status, "progress": run.progress},
    )


def _log_lines(node: Node, user) -> QuerySet | None:
    if not user.has_perm("workflows.view_runlogline"):
        return None
    return RunLogLine.objects.filter(run__node=node)


def _log_entry(line: RunLogLine, rank: int) -> Entry:
    return Entry(
        at=line.timestamp,
        source="log",
        kind="installer",
        rank=rank,
        id=line.pk,
        actor=f"run:{line.run_id}",
        summary=line.line,
        details={"run": line.run_id},
    )


def _requests(node: Node, user) -> QuerySet:
    return approvals.visible_requests(user).filter(node=node)


def _closed_requests(node: Node, user) -> QuerySet:
    return _requests(node, user).filter(closed_at__isnull=False)


def _decisions(node: Node, user) -> QuerySet:
    return Decision.objects.filter(request__in=_requests(node, user)).select_related(
        "user", "request"
    )


def _requested_entry(request: ApprovalRequest, rank: int) -> Entry:
    return Entry(
        at=request.created_at,
        source="approval",
        kind="requested",
        rank=rank,
        id=request.pk,
        actor=f"user:{request.requested_by.get_username()}",
        summary=f"Approval request #{request.pk} filed: {request.kind_label}"
        + (f" ({request.reason})" if request.reason else ""),
        state=request.node_state,
        url=f"/approvals/{request.pk}/",
        details={"request": request.pk, "action": request.action},
    )


def _decision_entry(decision: Decision, rank: int) -> Entry:
    verb = "approved" if decision.approve else "rejected"
    return Entry(
        at=decision.at,
        source="approval",
        kind=verb,
        rank=rank,
        id=decision.pk,
        actor=f"user:{decision.user.get_username()}",
        summary=f"Approval request #{decision.request_id} {verb}"
        + (f": {decision.comment}" if decision.comment else ""),
        url=f"/approvals/{decision.request_id}/",
        details={"request": decision.request_id},
    )


def _closed_entry(request: ApprovalRequest, rank: int) -> Entry:
    return Entry(
        at=request.closed_at,
        source="approval",
        kind=request.status,
        rank=rank,
        id=request.pk,
        actor="system",
        summary=f"Approval request #{request.pk} {request.get_status_display().lower()}"
        + (f": {request.result}" if request.result else ""),
        url=f"/approvals/{request.pk}/",
        details={"request": request.pk, "status": request.status},
    )


SOURCES: tuple[Source, ...] = (
    Source("event", 0, "timestamp", _node_events, _node_event_entry),
    Source("audit", 1, "timestamp", _audit_events, _audit_entry),
    Source("boot", 2, "created", _boots, _boot_entry),
    Source("install", 3, "started_at", _runs, _run_started_entry),
    Source("install", 4, "finished_at", _finished_runs, _run_finished_entry),
    Source("log", 5, "timestamp", _log_lines, _log_entry),
    Source(
        "approval",
        6,
        "created_at",
        lambda n, u: _requests(n, u).select_related("requested_by"),
        _requested_entry,
    ),
    Source("approval", 7, "at", _decisions, _decision_entry),
    Source("approval", 8, "closed_at", _closed_requests, _closed_entry),
)
SOURCE_NAMES: tuple[str, ...] = tuple(dict.fromkeys(s.name for s in SOURCES))


def parse_sources(values: Iterable[str]) -> set[str] | None:
    """``?source=event,boot`` (repeatable) as a set; None means all. Unknown names raise."""
    names = {v.strip() for value in values for v in value.split(",") if v.strip()}
    unknown = names - set(SOURCE_NAMES)
    if unknown:
        raise ValueError(
            f"Unknown source {sorted(unknown)[0][:40]!r}; known: {', '.join(SOURCE_NAMES)}."
        )
    return names or None


def page(
    node: Node,
    user,
    *,
    before: str | None = None,
    limit: int = DEFAULT_LIMIT,
    sources: set[str] | None = None,
) -> Page:
    """One page of ``node``'s timeline for ``user``, newest first.

    The caller checks that ``user`` may see ``node``. ``before`` is the
    ``next_cursor`` of the previous page (BadCursor if malformed).
    """
    cursor = parse_cursor(before) if before else None
    limit = max(1, min(limit, MAX_LIMIT))
    entries: list[Entry] = []
    for source in SOURCES:
        if sources is not None and source.name not in sources:
            continue
        rows = source.rows(node, user)
        if rows is None:
            continue
        rows = rows.filter(_after(source, cursor)).order_by(f"-{source.time_field}", "-pk")[
            : limit + 1
        ]
        entries.extend(source.entry(row, source.rank) for row in rows)
    entries.sort(key=lambda e: e.key, reverse=True)
    more = len(entries) > limit
    entries = entries[:limit]
    return Page(entries, entries[-1].cursor if more and entries else None)
