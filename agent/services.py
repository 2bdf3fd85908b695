"""The agent's jobs: made under the node's lock, advanced by the agent's reports.

The agent asks for its job with its token, runs the first step that has not
succeeded, reports it started, sends heartbeats while it runs, and reports
the result. Only results move a node on: the last step of a wipe, verified,
completes the wipe; a failed step, an unverifiable result or an agent that
goes silent fails the job and the node, with the reason and the step it
stopped at. A machine that lost power asks again and re-runs the step it was
in (wiping again is safe). Nothing here trusts the agent's word for more
than its own node: every call names the job, and the job must belong to the
token's node and its current state episode.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from nodes import agent_tokens
from nodes import migration as node_migration
from nodes import services as node_services
from nodes.choices import NodeState
from nodes.inventory import record_inventory
from nodes.models import Migration, Node
from workflows import services as workflow_services
from workflows.choices import RunStatus
from workflows.models import WorkflowRun

from . import certificates, deploy, migration, wipe
from .choices import MIGRATION_KINDS, JobKind, JobStatus, StepStatus
from .models import AgentJob, AgentLogLine
from .steps import JobError, new_step, wipe_request

log = logging.getLogger(__name__)

MAX_LOG_LINES_PER_JOB = 20000
MAX_LOG_LINE = 2000


def _new_job(node: Node) -> AgentJob | None:
    if node.state == NodeState.DEPROVISIONING:
        request = wipe_request(node)
        return AgentJob.objects.create(
            node=node,
            kind=JobKind.WIPE,
            episode=agent_tokens.episode(node),
            params={"request": request, "verify": settings.PUREBOOT_WIPE_VERIFY},
            steps=[new_step("inventory", "inventory")],
        )
    if node.state == NodeState.MIGRATING:
        moving = node_migration.running(node.pk)
        if moving is None:
            return None
        return AgentJob.objects.create(
            node=node,
            kind=JobKind.MIGRATE_OUT if moving.source_id == node.pk else JobKind.MIGRATE_IN,
            episode=agent_tokens.episode(node),
            params={"migration": moving.pk},
            steps=[new_step("inventory", "inventory")],
        )
    if node.state == NodeState.DISCOVERED and wants_inventory(node):
        return AgentJob.objects.create(
            node=node,
            kind=JobKind.INVENTORY,
            episode=agent_tokens.episode(node),
            steps=[new_step("inventory", "inventory")],
        )
    return None


def wants_inventory(node: Node) -> bool:
    """A discovered machine boots the agent once to report its hardware (a setting)."""
    return settings.PUREBOOT_AGENT_INVENTORY and node.inventory_at is None


def resolve(token: str) -> tuple[Node, WorkflowRun | None]:
    """The node an agent's token belongs to, and the install run for an image deployment.

    A lifecycle job's agent holds an agent token (nodes.agent_tokens); an
    image deployment's agent holds the install's own token, which is good
    while that install runs. Raises AgentTokenInvalid otherwise.
    """
    try:
        return agent_tokens.resolve(token), None
    except agent_tokens.AgentTokenInvalid as lifecycle_error:
        try:
            run = workflow_services.resolve_token(token)
        except workflow_services.TokenInvalid:
            raise lifecycle_error from None
        if deploy_task(run) is None:
            raise agent_tokens.AgentTokenInvalid("this install deploys no image") from None
        return run.node, run


def deploy_task(run: WorkflowRun) -> dict[str, Any] | None:
    return next((t for t in run.version.tasks if t["type"] == "image_deploy"), None)


def job_for(token: str, source: str = "") -> tuple[Node, AgentJob | None]:
    """The job the agent holding ``token`` (at address ``source``) should run, or None.

    Made now if due. Raises AgentTokenInvalid for a token that is forged or
    whose episode ended.
    """
    node, run = resolve(token)
    if run is not None:
        return _deploy_job(node, run, token)
    claims = agent_tokens.claims(token)
    with transaction.atomic():
        node = _lock(node.pk)
        if not agent_tokens.still_current(node, claims):
            raise agent_tokens.AgentTokenInvalid(f"node {node.pk} is {node.state} now")
        job = AgentJob.objects.filter(node=node, status=JobStatus.RUNNING).first()
        if job is not None and job.episode != agent_tokens.episode(node):
            _close(job, JobStatus.CANCELLED, f"node {node.pk} left that state; now {node.state}")
            job = None
        if job is None:
            if AgentJob.objects.filter(node=node, episode=agent_tokens.episode(node)).exists():
                return node, None  # this episode's job already ended
            job = _new_job(node)
        if job is not None and job.kind in MIGRATION_KINDS and job.status == JobStatus.RUNNING:
            migration.check_address(job, source)
            if job.kind == JobKind.MIGRATE_IN:
                problem = migration.prepare_restore(job, node, source)
                if problem:
                    _fail(job, node, problem)
        return node, job


def _lock(node_id: int) -> Node:
    """Lock the node (and the other machine of its running migration, in id order)."""
    partner = node_migration.running(node_id)
    node_migration.lock_nodes(node_id, partner.other(node_id) if partner else None)
    return Node.objects.select_for_update(of=("self",)).get(pk=node_id)


def _deploy_job(node: Node, run: WorkflowRun, token: str) -> tuple[Node, AgentJob | None]:
    with transaction.atomic():
        node = Node.objects.select_for_update(of=("self",)).get(pk=node.pk)
        run = WorkflowRun.objects.select_for_update().get(pk=run.pk)
        if run.status != RunStatus.RUNNING or node.state != NodeState.INSTALLING:
            raise agent_tokens.AgentTokenInvalid("the install this token belonged to has ended")
        job = AgentJob.objects.filter(node=node, status=JobStatus.RUNNING).first()
        if job is not None and job.run_id != run.pk:
            _close(job, JobStatus.CANCELLED, f"superseded by install run {run.pk}")
            job = None
        if job is None:
            if AgentJob.objects.filter(run=run).exists():
                return node, None
            job = AgentJob.objects.create(
                node=node,
                kind=JobKind.DEPLOY,
                run=run,
                episode=f"run:{run.pk}",
                params={"task": deploy_task(run)},
                steps=[new_step("inventory", "inventory")],
            )
        return node, job


def _current(job: AgentJob, node: Node) -> bool:
    """Whether the node is still where the job was made for."""
    if job.kind == JobKind.DEPLOY:
        return (
            node.state == NodeState.INSTALLING
            and WorkflowRun.objects.filter(pk=job.run_id, status=RunStatus.RUNNING).exists()
        )
    return job.episode == agent_tokens.episode(node)


def instructions(job: AgentJob | None, reason: str) -> dict[str, Any]:
    """What the agent should do now: run the next step, power off, or (after a
    deployment) reboot into the system it has just written."""
    step = next_step(job) if job is not None else None
    action = "run" if step else "poweroff"
    if step and step["action"] == "restore" and not step["params"]:
        action, step = "wait", None  # the source has not finished its copy
        reason = f"waiting for the source machine's copy: {reason}"
    reboots = (JobKind.DEPLOY, JobKind.MIGRATE_IN)
    if job is not None and job.kind in reboots and job.status == JobStatus.SUCCEEDED:
        action = "reboot"
    return {
        "action": action,
        "job": job.pk if job is not None else None,
        "kind": job.kind if job is not None else None,
        "step": step,
        "heartbeat_seconds": settings.PUREBOOT_AGENT_HEARTBEAT_SECONDS,
        "reason": reason,
    }


def next_step(job: AgentJob) -> dict[str, Any] | None:
    index = job.current_index
    if job.status != JobStatus.RUNNING or index is None:
        return None
    step = job.steps[index]
    params = step["params"]
    if step["action"] in ("copy_out", "restore") and params:
        params = {**params, "chap": migration.chap_for(job)}
    return {
        "index": index,
        "name": step["name"],
        "action": step["action"],
        "params": params,
        "resume": step["status"] == StepStatus.STARTED,
    }


def _locked_job(node: Node, job_id: int) -> AgentJob:
    """Lock the node, then the job; the job must be this node's, running, in this episode."""
    node = _lock(node.pk)
    job = AgentJob.objects.select_for_update().filter(pk=job_id, node=node).first()
    if job is None:
        raise JobError(f"node {node.pk} has no job {job_id}", status=404, code="not_found")
    if job.status != JobStatus.RUNNING:
        raise JobError(f"job {job.pk} has ended ({job.status}): {job.error or 'done'}")
    if not _current(job, node):
        _close(job, JobStatus.CANCELLED, f"node {node.pk} left that state; now {node.state}")
        raise JobError(f"node {node.pk} is {node.state} now; job {job.pk} has ended")
    return job


def report_step(
    node: Node, job_id: int, index: int, status: str, detail: str, result: Any, source: str = ""
) -> AgentJob:
    """The agent reports step ``index`` started, succeeded or failed (from address ``source``)."""
    now = timezone.now().isoformat()
    with transaction.atomic():
        job = _locked_job(node, job_id)
        current = job.current_index
        if index != current:
            raise JobError(
                f"step {index} is not the step to run; job {job.pk} is at "
                f"{'its end' if current is None else f'step {current}'}"
            )
        migration.check_address(job, source)
        steps = job.steps
        step = steps[index]
        step["detail"] = detail[:2000]
        job.last_heartbeat_at = timezone.now()
        if status == StepStatus.STARTED:
            step.update(status=StepStatus.STARTED, started_at=now, ended_at=None)
            step["attempts"] = int(step.get("attempts", 0)) + 1
            job.save(update_fields=["steps", "last_heartbeat_at"])
            return job
        if step["status"] != StepStatus.STARTED:
            raise JobError(f"step {index} ({step['name']}) was never reported started")
        step["ended_at"] = now
        step["reported_from"] = source[:64]
        if status == StepStatus.FAILED:
            step["status"] = StepStatus.FAILED
            _fail(job, node, f"step {index + 1} ({step['name']}) failed: {detail[:1000]}")
            return job
        problem = _accept(job, node, step, result, source)
        if problem:
            step["status"] = StepStatus.FAILED
            step["detail"] = problem[:2000]
            _fail(job, node, f"step {index + 1} ({step['name']}): {problem}")
            return job
        step["status"] = StepStatus.SUCCEEDED
        job.save(update_fields=["steps", "params", "last_heartbeat_at"])
        if job.current_index is None:
            _finish(job, node)
        elif job.kind == JobKind.MIGRATE_IN:
            problem = migration.prepare_restore(job, node, source)
            if problem:
                _fail(job, node, problem)
        return job


def _accept(
    job: AgentJob, node: Node, step: dict[str, Any], result: Any, source: str = ""
) -> str | None:
    """Take a step's result; the reason it proves nothing, or None."""
    if step["action"] == "inventory":
        if not isinstance(result, dict):
            return "no inventory in the result"
        record_inventory(node.pk, result, node_services.Actor.for_node(node.pk))
        if job.kind == JobKind.WIPE:
            return _plan_wipe(job, result)
        if job.kind == JobKind.DEPLOY:
            return deploy.plan(job, node, result)
        if job.kind == JobKind.MIGRATE_OUT:
            return migration.plan_copy(job, result, source)
        if job.kind == JobKind.MIGRATE_IN:
            # Planned when the source's copy is on the controller (see _prepare_restore).
            job.steps = job.steps + [new_step("restore the copy", "restore")]
        return None
    if step["action"] in ("copy_out", "restore"):
        return migration.accept_copy(job, step, result)
    if step["action"] == "deploy_files":
        return deploy.accept_files(step, result)
    if step["action"] == "deploy":
        expected = step["params"]["sha256"]
        if not isinstance(result, dict) or result.get("sha256") != expected:
            got = result.get("sha256") if isinstance(result, dict) else None
            return f"the disk read back SHA-256 {got!r}, the image is {expected}"
        step["result"] = {
            k: result.get(k) for k in ("sha256", "bytes", "write_seconds", "seed_partition")
        }
        return None
    if step["action"] == "wipe":
        problem = wipe.check_result(step["params"], result)
        if problem:
            return problem
        step["result"] = {
            "verification": result["verification"],
            "output": str(result.get("output", ""))[-2000:],
        }
        node = Node.objects.get(pk=node.pk)
        cert = certificates.issue(job, node, step, result)
        step["certificate"] = str(cert.uuid)
        return None
    return f"unknown step action {step['action']!r}"


def _plan_wipe(job: AgentJob, inventory: dict[str, Any]) -> str | None:
    disks = inventory.get("disks") or []
    if not disks:
        return (
            "the agent found no disks (a controller without a driver in the agent?); "
            "nothing was wiped"
        )
    request = job.params.get("request", {})
    category = request.get("category", "best")
    passes = int(request.get("passes", 1))
    planned = []
    for disk in disks:
        try:
            planned.append({**wipe.plan(disk, category, passes), "verify": job.params["verify"]})
        except wipe.WipeImpossible as exc:
            return str(exc)
    job.steps = job.steps + [new_step(f"wipe {p['disk']['name']}", "wipe", p) for p in planned]
    return None


def _finish(job: AgentJob, node: Node) -> None:
    if job.kind == JobKind.DEPLOY:
        step = job.steps[-1]
        workflow_services.handle_report(
            job.run_id,
            {
                "status": "installed",
                "progress": 100,
                "logs": [
                    f"agent: {step['params']['image']} written to {step['params']['disk']['name']} "
                    f"and read back (SHA-256 {step['params']['sha256']})"
                ],
            },
        )
    if job.kind == JobKind.MIGRATE_IN:
        migration.complete(job)
    if job.kind == JobKind.WIPE:
        after = job.params.get("request", {}).get("after", "retired")
        count = sum(1 for s in job.steps if s["action"] == "wipe")
        node_services.perform(
            node.pk,
            "complete_wipe",
            node_services.SYSTEM,
            reason=f"{count} disk(s) wiped and verified; certificates issued",
        )
        if after == NodeState.DISCOVERED:
            node_services.perform(
                node.pk, "rediscover", node_services.SYSTEM, reason="wiped for reuse"
            )
    _close(job, JobStatus.SUCCEEDED, "")


def _fail(job: AgentJob, node: Node, reason: str) -> None:
    _close(job, JobStatus.FAILED, reason)
    if job.kind == JobKind.DEPLOY:
        run = WorkflowRun.objects.filter(pk=job.run_id, status=RunStatus.RUNNING).first()
        if run is not None:
            workflow_services.handle_report(run.pk, {"status": "failed", "logs": [reason[:1000]]})
        return
    if job.kind in MIGRATION_KINDS:
        node_migration.end(
            job.params["migration"], Migration.Status.FAILED, f"node {node.pk}: {reason}"
        )
        return
    current = Node.objects.get(pk=node.pk)
    if current.state == NodeState.DEPROVISIONING:
        node_services.perform(node.pk, "fail", node_services.SYSTEM, reason=reason[:1000])


def _close(job: AgentJob, status: str, error: str) -> None:
    job.status = status
    job.error = error[:4000]
    job.finished_at = timezone.now()
    job.save()


def heartbeat(node: Node, job_id: int, data: dict[str, Any], source: str = "") -> AgentJob:
    with transaction.atomic():
        job = _locked_job(node, job_id)
        migration.check_address(job, source)
        job.last_heartbeat_at = timezone.now()
        job.heartbeat = {**data, "at": job.last_heartbeat_at.isoformat()}
        job.save(update_fields=["last_heartbeat_at", "heartbeat"])
    return job


def append_log(node: Node, job_id: int, lines: list[str], source: str = "") -> int:
    """Store log lines (bounded per job); returns how many were kept."""
    with transaction.atomic():
        job = _locked_job(node, job_id)
        migration.check_address(job, source)
        room = MAX_LOG_LINES_PER_JOB - job.log_lines.count()
        kept = [line[:MAX_LOG_LINE] for line in lines[: max(room, 0)]]
        if len(kept) < len(lines) and room > 0:
            kept[-1] = f"[log limit of {MAX_LOG_LINES_PER_JOB} lines reached; later lines dropped]"
        AgentLogLine.objects.bulk_create(AgentLogLine(job=job, line=line) for line in kept)
        job.last_heartbeat_at = timezone.now()
        job.save(update_fields=["last_heartbeat_at"])
    return len(kept)


def fail_lost_jobs(minutes: int | None = None) -> list[int]:
    """Fail every running job whose agent has been silent too long; returns their ids."""
    minutes = minutes or settings.PUREBOOT_AGENT_LOST_MINUTES
    cutoff = timezone.now() - timedelta(minutes=minutes)
    lost = (
        AgentJob.objects.filter(status=JobStatus.RUNNING)
        .annotate(last_word=Coalesce("last_heartbeat_at", "created_at"))
        .filter(Q(last_word__lt=cutoff))
        .values_list("pk", "node_id")
    )
    failed = []
    for job_id, node_id in list(lost):
        with transaction.atomic():
            node = _lock(node_id)  # with the other machine of a migration, in id order
            job = AgentJob.objects.select_for_update().get(pk=job_id)
            if job.status != JobStatus.RUNNING:
                continue
            last = job.last_heartbeat_at or job.created_at
            if last >= cutoff:
                continue
            if not _current(job, node):
                _close(job, JobStatus.CANCELLED, f"node left that state; now {node.state}")
                continue
            _fail(
                job,
                node,
                f"no word from the agent for {minutes} minutes (last at {last.isoformat()}), "
                f"stopped at {job.where}",
            )
        failed.append(job_id)
    return failed
