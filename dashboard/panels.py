"""What each dashboard panel shows, scoped to the viewer.

Every panel is a function of the user: it reads only what that user may see
(the node API's site scope, the approvals app's own visibility rule, the
hypervisors' site scope) and says which actions to offer from the user's
permissions. Each costs a fixed number of queries, whatever the fleet's size:
lists are capped, and a log tail is one windowed query for all shown runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, F, OuterRef, Subquery, Window
from django.db.models.functions import RowNumber

from approvals import services as approvals
from bootserve import records as boot_records
from hypervisors import services as hypervisors
from hypervisors.choices import Health
from nodes.choices import NodeState
from nodes.models import Node, NodeEvent
from nodes.permissions import accessible_sites, scope_nodes, sees_all_sites
from workflows.choices import RunStatus, StepStatus
from workflows.models import RunLogLine, WorkflowRun

from . import lifecycle_svg

# How many rows a panel lists; the rest is a count and a link to the full list.
MAX_INSTALLS = 20
LOG_TAIL_LINES = 5
MAX_APPROVALS = 10
MAX_HYPERVISORS = 50
MAX_FAILURES = 10
MAX_BOOTS = 15


@dataclass
class SiteRow:
    site_id: int | None
    name: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class Fleet:
    """Nodes by lifecycle state and site, and the lifecycle diagram with those counts."""

    states: list[tuple[str, str]]
    rows: list[SiteRow]
    totals: dict[str, int]
    svg: Any
    may_add: bool

    @property
    def total(self) -> int:
        return sum(self.totals.values())


def fleet(user) -> Fleet:
    counts = (
        scope_nodes(user)
        .order_by()
        .values("site_id", "site__name", "state")
        .annotate(n=Count("id"))
    )
    rows: dict[int | None, SiteRow] = {}
    totals = dict.fromkeys(NodeState.values, 0)
    for row in counts:
        site = rows.setdefault(
            row["site_id"],
            SiteRow(row["site_id"], row["site__name"] or "(no site)", {}),
        )
        site.counts[row["state"]] = row["n"]
        totals[row["state"]] = totals.get(row["state"], 0) + row["n"]
    ordered = sorted(rows.values(), key=lambda r: (r.site_id is None, r.name.lower()))
    for row in ordered:
        row.counts = {state: row.counts.get(state, 0) for state in NodeState.values}
    return Fleet(
        states=list(NodeState.choices),
        rows=ordered,
        totals=totals,
        svg=lifecycle_svg.render(totals),
        may_add=user.has_perm("nodes.add_node"),
    )


@dataclass
class Install:
    run: WorkflowRun
    step: str
    step_number: int
    steps: int
    log_tail: list[str] = field(default_factory=list)


@dataclass
class Installs:
    items: list[Install]
    total: int
    may_view_logs: bool


def _current_step(run: WorkflowRun) -> tuple[str, int]:
    """The step the installer works on: the running one, else the first not done."""
    steps = run.steps or []
    for wanted in (StepStatus.RUNNING, StepStatus.FAILED, StepStatus.PENDING):
        for step in steps:
            if step.get("status") == wanted:
                return str(step.get("type", "?")), int(step.get("index", 0)) + 1
    return ("done" if steps else "-"), len(steps)


def installs(user) -> Installs | None:
    if not user.has_perm("workflows.view_workflowrun"):
        return None
    running = WorkflowRun.objects.filter(
        status=RunStatus.RUNNING, node__in=scope_nodes(user)
    ).select_related("node", "version__workflow")
    runs = list(running.order_by("-started_at", "-id")[:MAX_INSTALLS])
    total = len(runs) if len(runs) < MAX_INSTALLS else running.count()
    may_view_logs = user.has_perm("workflows.view_runlogline")
    tails: dict[int, list[str]] = {run.pk: [] for run in runs}
    if runs and may_view_logs:
        # One query for every shown run's last lines (a window per run).
        lines = (
            RunLogLine.objects.filter(run_id__in=list(tails))
            .annotate(back=Window(RowNumber(), partition_by=[F("run_id")], order_by=F("id").desc()))
            .filter(back__lte=LOG_TAIL_LINES)
            .order_by("run_id", "id")
            .values_list("run_id", "line")
        )
        for run_id, line in lines:
            tails[run_id].append(line)
    items = []
    for run in runs:
        step, number = _current_step(run)
        items.append(Install(run, step, number, len(run.steps or []), tails[run.pk]))
    return Installs(items, total, may_view_logs)


@dataclass
class Approvals:
    items: list[Any]
    total: int


def awaiting_approvals(user) -> Approvals:
    """Pending requests this user may decide (never their own): the approvals queue's rule."""
    pending = (
        approvals.visible_requests(user)
        .filter(approvals.awaiting(user))
        .distinct()
        .select_related("node", "requested_by")
    )
    items = list(pending.order_by("expires_at", "pk")[:MAX_APPROVALS])
    total = len(items) if len(items) < MAX_APPROVALS else pending.count()
    return Approvals(items, total)


@dataclass
class Hypervisors:
    items: list[Any]
    unhealthy: int
    may_sync: bool


def hypervisor_health(user) -> Hypervisors | None:
    if not user.has_perm("hypervisors.view_hypervisor"):
        return None
    items = list(hypervisors.scope(user).select_related("site").order_by("name")[:MAX_HYPERVISORS])
    return Hypervisors(
        items,
        sum(1 for h in items if h.health in (Health.UNREACHABLE, Health.FAILED)),
        user.has_perm("hypervisors.sync_hypervisor"),
    )


@dataclass
class Failures:
    nodes: list[Node]
    failed_nodes: int
    runs: list[WorkflowRun]
    may_retry: bool


def failures(user) -> Failures:
    """Failed nodes with why they failed (their last transition into ``failed``),
    and the latest failed installs."""
    why = (
        NodeEvent.objects.filter(node=OuterRef("pk"), to_state=NodeState.FAILED)
        .order_by("-timestamp", "-id")
        .values("message")[:1]
    )
    failed = scope_nodes(user).filter(state=NodeState.FAILED)
    nodes = list(
        failed.select_related("site")
        .annotate(reason=Subquery(why))
        .order_by("-state_changed_at", "-id")[:MAX_FAILURES]
    )
    count = len(nodes) if len(nodes) < MAX_FAILURES else failed.count()
    runs: list[WorkflowRun] = []
    if user.has_perm("workflows.view_workflowrun"):
        runs = list(
            WorkflowRun.objects.filter(status=RunStatus.FAILED, node__in=scope_nodes(user))
            .select_related("node", "version__workflow")
            .order_by("-finished_at", "-id")[:MAX_FAILURES]
        )
    may_retry = user.has_perm("nodes.assign_node") or user.has_perm("nodes.reprovision_node")
    return Failures(nodes, count, runs, may_retry)


@dataclass
class Boots:
    # (record, its node if the viewer may see that node now, else None)
    items: list[tuple[Any, Node | None]]


def recent_boots(user) -> Boots:
    """Who asked the boot services (DHCP, TFTP, HTTP) for what, and what they got.

    Scoped by the boot records' own rule (``bootserve.records.scope_records``:
    the site a record happened at). A node that has moved to a site the viewer
    may not see since is not named.
    """
    records = boot_records.recent_boots(user, MAX_BOOTS)
    if sees_all_sites(user):
        return Boots([(r, r.node) for r in records])
    sites = set(accessible_sites(user).values_list("pk", flat=True)) if records else set()
    return Boots([(r, r.node if r.node and r.node.site_id in sites else None) for r in records])


def scope_note(user) -> str:
    """Which sites the numbers cover, said on the page."""
    if sees_all_sites(user):
        return "all sites"
    return "the sites granted to you"


# name -> (template, context builder); the page and the fragment endpoint use the same.
PANELS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "fleet": ("dashboard/panels/fleet.html", fleet),
    "installs": ("dashboard/panels/installs.html", installs),
    "boots": ("dashboard/panels/boots.html", recent_boots),
    "approvals": ("dashboard/panels/approvals.html", awaiting_approvals),
    "hypervisors": ("dashboard/panels/hypervisors.html", hypervisor_health),
    "failures": ("dashboard/panels/failures.html", failures),
}
