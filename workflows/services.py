"""Saving workflow versions, starting installs, node tokens and installer reports."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from django.core import signing
from django.db import transaction
from django.db.models import ProtectedError
from django.utils import timezone

from audit import services as audit
from nodes import services as node_services
from nodes.choices import EventKind, NodeState
from nodes.models import Node, NodeEvent

from . import domainjoin
from .checks import check_definition
from .choices import ReportStatus, RunStatus, StepStatus
from .configsteps import CONFIG_RUN
from .definitions import Definition, content_hash, parse
from .models import RunLogLine, Workflow, WorkflowRun, WorkflowVersion
from .registry import CONTROLLER, TASK_TYPES

log = logging.getLogger(__name__)

TOKEN_SALT = "pureboot.node-token"
# How long after a successful install the run's token may still report the
# node's first boot (installed -> active).
FIRST_BOOT_WINDOW_SECONDS = 24 * 3600
MAX_LOG_LINES_PER_REPORT = 200
MAX_LOG_LINE_LENGTH = 2000


@dataclass(frozen=True)
class SaveResult:
    workflow: Workflow
    version: WorkflowVersion
    created: bool  # False: the content was unchanged, no new version
    warnings: tuple[str, ...] = ()  # e.g. a checker missing on this machine


class WorkflowInUse(Exception):
    """A workflow pinned by nodes that are not retired cannot be deleted."""

    def __init__(self, workflow: Workflow, node_ids: list[int]) -> None:
        self.workflow = workflow
        self.node_ids = node_ids
        shown = ", ".join(str(n) for n in node_ids[:20])
        more = f" and {len(node_ids) - 20} more" if len(node_ids) > 20 else ""
        super().__init__(
            f"Workflow {workflow.name} is pinned by nodes {shown}{more}; "
            "unassign or retire them first."
        )


class TokenInvalid(Exception):
    """The node token is unknown, tampered with, or no longer valid."""


# --- workflow versions -------------------------------------------------------


def save_workflow(
    content: str | bytes,
    actor: node_services.Actor,
    *,
    expected_name: str | None = None,
    definition: Definition | None = None,
) -> SaveResult:
    """Validate ``content`` and store it as the workflow's next version.

    Unchanged content (same hash as the latest version) creates nothing.
    ``expected_name`` guards edits of an existing workflow against renaming.
    Raises DefinitionError (nothing saved) or ValueError for a rename.
    """
    definition = definition or parse(content)
    text = content.decode("utf-8") if isinstance(content, bytes) else content
    warnings = tuple(check_definition(definition).warnings)
    if expected_name is not None and definition.name != expected_name:
        raise ValueError(
            f"The document names workflow {definition.name!r}, not {expected_name!r}; "
            "renaming a workflow is not supported (create a new one)."
        )
    digest = content_hash(text)
    with transaction.atomic():
        workflow, created_workflow = Workflow.objects.select_for_update().get_or_create(
            name=definition.name, defaults={"description": definition.description}
        )
        latest = workflow.latest_version
        if latest is not None and latest.content_hash == digest and not workflow.archived_at:
            return SaveResult(workflow, latest, False, warnings)
        number = (latest.number if latest else 0) + 1
        user = actor.user
        version = WorkflowVersion.objects.create(
            workflow=workflow,
            number=number,
            content=text,
            definition=definition.as_dict(),
            content_hash=digest,
            author=user,
            author_name=user.get_username() if user else actor.label,
        )
        workflow.description = definition.description
        workflow.archived_at = None
        workflow.save(update_fields=["description", "archived_at", "updated_at"])
        audit.record(
            actor=actor.label,
            action="workflow.create" if created_workflow else "workflow.version",
            object_type="workflows.workflow",
            object_id=workflow.pk,
            changes={
                "version": {"before": latest.number if latest else None, "after": number},
                "content_hash": {
                    "before": latest.content_hash if latest else None,
                    "after": digest,
                },
            },
            details={"name": workflow.name},
        )
    return SaveResult(workflow, version, True, warnings)


def delete_workflow(workflow_id: int, actor: node_services.Actor) -> str:
    """Delete a workflow no live node uses. Returns "deleted" or "archived".

    A workflow that only retired nodes still reference is archived, not
    deleted, so their history keeps pointing at what they ran.
    Raises WorkflowInUse naming the nodes that pin it.
    """
    with transaction.atomic():
        workflow = Workflow.objects.select_for_update().get(pk=workflow_id)
        referencing = Node.objects.filter(workflow=workflow) | Node.objects.filter(
            workflow_version__workflow=workflow
        )
        live = sorted(
            set(referencing.exclude(state=NodeState.RETIRED).values_list("pk", flat=True))
        )
        if live:
            raise WorkflowInUse(workflow, live)
        used = (
            referencing.exists() or WorkflowRun.objects.filter(version__workflow=workflow).exists()
        )
        if used:
            workflow.archived_at = timezone.now()
            workflow.save(update_fields=["archived_at", "updated_at"])
            outcome = "archived"
        else:
            try:
                with transaction.atomic():
                    workflow.delete()
            except ProtectedError as exc:
                raise WorkflowInUse(workflow, sorted(o.pk for o in exc.protected_objects)) from None
            outcome = "deleted"
        audit.record(
            actor=actor.label,
            action=f"workflow.{'archive' if outcome == 'archived' else 'delete'}",
            object_type="workflows.workflow",
            object_id=workflow_id,
            details={"name": workflow.name},
        )
    return outcome


# --- installs and tokens ---------------------------------------------------


def start_install(node_id: int, actor: node_services.Actor = node_services.SYSTEM):
    """Move a pending/reprovision node to installing and open its WorkflowRun.

    Returns ``(node, run, token)``. The boot path calls this when the machine
    fetches its installer. The token is what the node's installer configs
    embed; it stops working when the run ends.
    """
    with transaction.atomic():
        node = node_services.perform(node_id, "start_install", actor)
        if node.workflow_version_id is None:
            raise node_services.TransitionForbidden(
                f"Node {node_id} has no pinned workflow version."
            )
        WorkflowRun.objects.filter(node=node, status=RunStatus.RUNNING).update(
            status=RunStatus.CANCELLED, finished_at=timezone.now(), error="superseded"
        )
        version = node.workflow_version
        run = WorkflowRun.objects.create(
            node=node,
            version=version,
            token_nonce=secrets.token_hex(16),
            steps=[
                {"index": i, "type": t["type"], "status": _first_status(t["type"])}
                for i, t in enumerate(version.tasks)
            ],
        )
        # An offline domain join's blob is made by a worker while the machine boots WinPE.
        domainjoin.request_offline_join(run)
    return node, run, issue_token(run)


def _first_status(task_type: str) -> str:
    # Controller steps (creating the VM) ran before the machine could boot;
    # config_run runs after the install (configmgmt marks it with mark_step).
    if TASK_TYPES[task_type].runs_on == CONTROLLER and task_type != CONFIG_RUN:
        return StepStatus.DONE
    return StepStatus.PENDING


def mark_step(run_pk: int, index: int, status: str) -> None:
    """Record the status of a step the controller runs after the install (config_run)."""
    if status not in StepStatus.values:
        raise ValueError(f"unknown step status {status!r}")
    with transaction.atomic():
        run = WorkflowRun.objects.select_for_update().get(pk=run_pk)
        steps = list(run.steps)
        for step in steps:
            if step["index"] == index:
                step["status"] = status
        run.steps = steps
        run.save(update_fields=["steps"])


def issue_token(run: WorkflowRun) -> str:
    """A signed token naming the run; nothing secret is stored server-side."""
    # No timestamp: every boot request of one install gets the same token (and
    # so the same answer); the run's status and nonce decide how long it is good.
    return signing.Signer(salt=TOKEN_SALT).sign_object(
        {"r": run.pk, "n": run.node_id, "x": run.token_nonce}
    )


def resolve_token(token: str, *, for_first_boot: bool = False) -> WorkflowRun:
    """The run a node token belongs to, if the token is still valid.

    Valid while the run is running; after a successful install, only for the
    first-boot report and only within FIRST_BOOT_WINDOW_SECONDS.
    """
    if not token or len(token) > 512:
        raise TokenInvalid("no token")
    try:
        data = signing.Signer(salt=TOKEN_SALT).unsign_object(token)
    except signing.BadSignature:
        try:  # a token issued before tokens dropped their timestamp
            data = signing.loads(token, salt=TOKEN_SALT)
        except signing.BadSignature:
            raise TokenInvalid("bad signature") from None
    except ValueError:
        raise TokenInvalid("malformed token") from None
    if not isinstance(data, dict) or not isinstance(data.get("r"), int):
        raise TokenInvalid("malformed token")
    run = (
        WorkflowRun.objects.select_related("node", "version__workflow")
        .filter(pk=data["r"], node_id=data.get("n"), token_nonce=data.get("x"))
        .first()
    )
    if run is None:
        raise TokenInvalid("unknown run")
    if run.status == RunStatus.RUNNING:
        if run.node.state == NodeState.INSTALLING:
            return run
        # The node left `installing` some other way (timeout, retire, a new
        # request): the install is over, and so is its token.
        close_run(run, f"node is {run.node.state}; the install ended without a report")
        raise TokenInvalid("the install this token belonged to has ended")
    if (
        for_first_boot
        and run.status == RunStatus.SUCCEEDED
        and run.finished_at
        and (timezone.now() - run.finished_at).total_seconds() < FIRST_BOOT_WINDOW_SECONDS
        and run.node.state == NodeState.INSTALLED
    ):
        return run
    raise TokenInvalid("the install this token belonged to has ended")


def close_run(run: WorkflowRun, reason: str) -> None:
    """Mark a still-running run as failed: its node is no longer installing."""
    WorkflowRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
        status=RunStatus.FAILED, finished_at=timezone.now(), error=reason[:2000]
    )


def close_stale_runs() -> int:
    """Close every running run whose node left `installing`; returns how many."""
    stale = WorkflowRun.objects.filter(status=RunStatus.RUNNING).exclude(
        node__state=NodeState.INSTALLING
    )
    count = 0
    for run in stale.select_related("node"):
        close_run(run, f"node is {run.node.state}; the install ended without a report")
        count += 1
    return count


def handle_report(run_id: int, report: dict[str, Any]) -> WorkflowRun:
    """Apply an installer's report: progress, logs, and the lifecycle move it implies.

    Everything happens in one transaction: a report whose lifecycle move is
    refused (say the node was retired meanwhile) changes nothing and raises
    IllegalTransition.
    """
    status = report["status"]
    with transaction.atomic():
        node_id = WorkflowRun.objects.values_list("node_id", flat=True).get(pk=run_id)
        # Lock order everywhere: node row, then its runs, then the audit chain.
        node = Node.objects.select_for_update(of=("self",)).get(pk=node_id)
        run = WorkflowRun.objects.select_for_update().get(pk=run_id)
        actor = node_services.Actor.for_node(node.pk)
        now = timezone.now()
        lines = [str(line)[:MAX_LOG_LINE_LENGTH] for line in report.get("logs", [])]
        RunLogLine.objects.bulk_create(
            RunLogLine(run=run, timestamp=now, line=line)
            for line in lines[:MAX_LOG_LINES_PER_REPORT]
        )
        running = run.status == RunStatus.RUNNING
        if report.get("progress") is not None and running:
            run.progress = max(run.progress, report["progress"])
        if report.get("step") is not None and running:
            _mark_steps(run, report["step"], status)
        run.last_report_at = now
        Node.objects.filter(pk=node.pk).update(last_seen_at=now)
        if status == ReportStatus.INSTALLED and running:
            run.status, run.finished_at, run.progress = RunStatus.SUCCEEDED, now, 100
            run.save()
            node_services.perform(
                node.pk, "complete_install", actor, reason="Installer reported completion"
            )
            domainjoin.wipe_for_run(run, actor.label)
        elif status == ReportStatus.FAILED and running:
            run.status, run.finished_at = RunStatus.FAILED, now
            run.error = "; ".join(lines[-3:]) or "Installer reported failure"
            run.save()
            node_services.perform(node.pk, "fail", actor, reason=run.error[:1000])
            domainjoin.wipe_for_run(run, actor.label)
        elif status == ReportStatus.DISK_WRITTEN and running:
            # The installer goes on from the disk it wrote (Windows Setup after
            # WinPE): from now on this node's boots get its local disk.
            first = run.disk_written_at is None
            run.disk_written_at = run.disk_written_at or now
            run.save()
            NodeEvent.objects.create(
                node=node,
                kind=EventKind.REPORT,
                actor=actor.label,
                to_state=node.state,
                message=f"{run.progress}%: the installer continues from the local disk"
                + (f": {lines[-1][:200]}" if lines else ""),
                details={"run": run.pk, "progress": run.progress, "disk_written": first},
            )
        elif status == ReportStatus.ACTIVE:
            run.save()
            node_services.perform(node.pk, "activate", actor, reason="First boot reported")
        else:
            run.save()
            NodeEvent.objects.create(
                node=node,
                kind=EventKind.REPORT,
                actor=actor.label,
                to_state=node.state,
                message=f"{run.progress}%" + (f": {lines[-1][:200]}" if lines else ""),
                details={"run": run.pk, "progress": run.progress, "lines": len(lines)},
            )
    return run


def _mark_steps(run: WorkflowRun, index: int, status: str) -> None:
    steps = list(run.steps)
    for step in steps:
        if step["index"] < index:
            step["status"] = StepStatus.DONE
        elif step["index"] == index:
            step["status"] = (
                StepStatus.FAILED
                if status == ReportStatus.FAILED
                else (StepStatus.DONE if status == ReportStatus.INSTALLED else StepStatus.RUNNING)
            )
    run.steps = steps
