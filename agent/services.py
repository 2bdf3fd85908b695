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

import hashlib
import logging
from datetime import timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from approvals import services as approvals
from approvals.models import ApprovalRequest
from nodes import agent_tokens
from nodes import lifecycle as lc
from nodes import migration as node_migration
from nodes import services as node_services
from nodes.choices import EventKind, NodeState
from nodes.inventory import record_inventory
from nodes.models import Migration, Node, NodeEvent
from workflows import partitions
from workflows import services as workflow_services
from workflows.choices import RunStatus
from workflows.context import public_base_url
from workflows.images import DeployImpossible, deployable_version, raw_file
from workflows.models import WorkflowRun

from . import certificates, deploy, iscsi, wipe
from .choices import MIGRATION_KINDS, JobKind, JobStatus, StepStatus
from .models import AgentJob, AgentLogLine

log = logging.getLogger(__name__)

MAX_LOG_LINES_PER_JOB = 20000
MAX_LOG_LINE = 2000


class JobError(Exception):
    """A report the job cannot take; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 409, code: str = "conflict") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _step(name: str, action: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "action": action,
        "params": params or {},
        "status": StepStatus.PENDING,
        "started_at": None,
        "ended_at": None,
        "attempts": 0,
        "detail": "",
    }


def _wipe_request(node: Node, into=(NodeState.DEPROVISIONING,)) -> dict[str, Any]:
    """Who asked for this wipe, who approved it, and how (from the history of the
    transition into ``into``: deprovisioning, or the assignment whose workflow wipes)."""
    event = (
        NodeEvent.objects.filter(node=node, kind=EventKind.TRANSITION, to_state__in=into)
        .order_by("-id")
        .first()
    )
    details = (event.details if event else None) or {}
    request: dict[str, Any] = {
        "after": details.get("after", "retired"),
        "category": details.get("category", "best"),
        "transition_by": event.actor if event else "",
        "approval_request": details.get("approval"),
        "approved_by": details.get("approvers", []),
        "requested_by": event.actor if event else "",
        "reason": event.message if event else "",
    }
    if details.get("approval"):
        approval = (
            ApprovalRequest.objects.select_related("requested_by")
            .filter(pk=details["approval"])
            .first()
        )
        if approval is not None:
            who = approval.requested_by
            request["requested_by"] = f"user:{who.get_username()}" if who else ""
            request["reason"] = approval.reason
    return request


def _new_job(node: Node) -> AgentJob | None:
    if node.state == NodeState.DEPROVISIONING:
        request = _wipe_request(node)
        return AgentJob.objects.create(
            node=node,
            kind=JobKind.WIPE,
            episode=agent_tokens.episode(node),
            params={"request": request, "verify": settings.PUREBOOT_WIPE_VERIFY},
            steps=[_step("inventory", "inventory")],
        )
    if node.state == NodeState.MIGRATING:
        migration = node_migration.running(node.pk)
        if migration is None:
            return None
        source = migration.source_id == node.pk
        return AgentJob.objects.create(
            node=node,
            kind=JobKind.MIGRATE_OUT if source else JobKind.MIGRATE_IN,
            episode=agent_tokens.episode(node),
            params={"migration": migration.pk},
            steps=[_step("inventory", "inventory")],
        )
    if node.state == NodeState.DISCOVERED and wants_inventory(node):
        return AgentJob.objects.create(
            node=node,
            kind=JobKind.INVENTORY,
            episode=agent_tokens.episode(node),
            steps=[_step("inventory", "inventory")],
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
            _check_address(job, source)
            if job.kind == JobKind.MIGRATE_IN:
                _prepare_restore(job, node, source)
        return node, job


def _check_address(job: AgentJob, source: str) -> None:
    """A migration job belongs to the address that first spoke for it (the LUN admits
    that address only): a second host with a copy of the token is refused."""
    if job.kind not in MIGRATION_KINDS or not source:
        return
    pinned = job.params.get("address")
    if pinned is None:
        job.params = {**job.params, "address": source}
        job.save(update_fields=["params"])
    elif pinned != source:
        raise JobError(
            f"job {job.pk} belongs to the machine at {pinned}; {source} is refused",
            status=403,
            code="permission_denied",
        )


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
                steps=[_step("inventory", "inventory")],
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
        # The CHAP secret is kept encrypted on the migration, handed only to its agent.
        migration = Migration.objects.get(pk=job.params["migration"])
        params = {**params, "chap": iscsi.chap(migration)}
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
        _check_address(job, source)
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
            _prepare_restore(job, node, source)
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
            return _plan_deploy(job, node, result)
        if job.kind == JobKind.MIGRATE_OUT:
            return _plan_copy(job, result, source)
        if job.kind == JobKind.MIGRATE_IN:
            # Planned when the source's copy is on the controller (see _prepare_restore).
            job.steps = job.steps + [_step("restore the copy", "restore")]
        return None
    if step["action"] in ("copy_out", "restore"):
        return _accept_copy(job, step, result)
    if step["action"] == "deploy_files":
        return _accept_files(step, result)
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
    job.steps = job.steps + [_step(f"wipe {p['disk']['name']}", "wipe", p) for p in planned]
    return None


def _plan_deploy(job: AgentJob, node: Node, inventory: dict[str, Any]) -> str | None:
    task = job.params["task"]
    node = Node.objects.get(pk=node.pk)
    try:
        version = deployable_version(task)
        _, size, sha = raw_file(version)
        problem = _plan_workflow_wipe(job, node, inventory)
        if problem:
            return problem
        if version.template.kind == "file":
            layout_task = next((t for t in job.run.version.tasks if t["type"] == "partition"), None)
            if layout_task is None:
                raise DeployImpossible(
                    f"{version} is a file-level image and the workflow lays out no disk"
                )
            return _plan_files(job, node, inventory, task, version, layout_task)
        # Room after the image for the first-boot partition and a GPT backup header.
        disk = deploy.choose_disk(
            inventory.get("disks") or [], task.get("target", ""), size + deploy.SEED_BYTES + 2**20
        )
    except DeployImpossible as exc:
        return str(exc)
    token = workflow_services.issue_token(job.run)
    params = {
        "url": f"/api/v1/agent/jobs/{job.pk}/image",
        "image": str(version),
        "size": size,
        "sha256": sha,
        "disk": _disk_words(disk),
        "seed": deploy.seed(node, token, public_base_url(), task, inventory),
    }
    job.params = {**job.params, "version": version.pk}
    job.steps = job.steps + [_step(f"deploy {version} to {disk['name']}", "deploy", params)]
    return None


def _plan_workflow_wipe(job: AgentJob, node: Node, inventory: dict[str, Any]) -> str | None:
    """The workflow's disk_wipe step: the disks it names (or all) wiped before the write."""
    task = next((t for t in job.run.version.tasks if t["type"] == "disk_wipe"), None)
    if task is None:
        return None
    disks = inventory.get("disks") or []
    if not disks:
        return "the agent found no disks; nothing was wiped or written"
    chosen: dict[str, dict[str, Any]] = {}
    for rule in task.get("disks") or []:
        disk = deploy.choose_disk(disks, rule, 0)
        chosen[disk["path"]] = disk
    targets = list(chosen.values()) if task.get("disks") else disks
    request = _wipe_request(node, into=(NodeState.PENDING, NodeState.REPROVISION))
    request.update(category=task.get("category", "best"), after=NodeState.INSTALLED)
    request["reason"] = f"workflow {job.run.version} step disk_wipe: {request['reason']}".strip()
    job.params = {**job.params, "request": request, "verify": settings.PUREBOOT_WIPE_VERIFY}
    planned = []
    for disk in targets:
        try:
            planned.append(
                {
                    **wipe.plan(disk, task.get("category", "best"), int(task.get("passes", 1))),
                    "verify": settings.PUREBOOT_WIPE_VERIFY,
                }
            )
        except wipe.WipeImpossible as exc:
            return str(exc)
    job.steps = job.steps + [_step(f"wipe {p['disk']['name']}", "wipe", p) for p in planned]
    return None


def _plan_files(job, node, inventory, task, version, layout_task) -> None:
    """A file-level image: the disk laid out as the partition step says, the archive
    unpacked onto it, every file read back against the archive's manifest."""
    firmware = (inventory.get("firmware") or {}).get("mode")
    if firmware == "bios":
        raise DeployImpossible(
            f"this machine boots BIOS; {version} is a file-level image, which boots by the UEFI "
            "loader it brings (PureBoot installs no boot loader): use a block image"
        )
    try:
        layout = partitions.parse(layout_task, node.arch)
    except partitions.LayoutError as exc:
        raise DeployImpossible(f"the partition step: {exc}") from None
    unpacked = int(version.virtual_size or 0)
    root = next(p for p in layout if p["role"] == "root")
    if root["mib"] is not None and root["mib"] * 2**20 < unpacked + unpacked // 10:
        raise DeployImpossible(
            f"the root partition ({root['mib']} MiB) is smaller than {version} unpacked "
            f"({unpacked} bytes, and a tenth more for the file system)"
        )
    needed = partitions.needed_bytes(layout, unpacked)
    disk = deploy.choose_disk(inventory.get("disks") or [], layout_task.get("disk", ""), needed)
    token = workflow_services.issue_token(job.run)
    _, size, sha = raw_file(version)
    params = {
        "url": f"/api/v1/agent/jobs/{job.pk}/image",
        "image": str(version),
        "format": version.format,
        "size": size,
        "sha256": sha,
        "files_sha256": version.content_sha256,
        "files": version.files,
        "disk": _disk_words(disk),
        "table": layout_task.get("table", "gpt"),
        "partitions": layout,
        "seed": deploy.seed(node, token, public_base_url(), task, inventory),
    }
    job.params = {**job.params, "version": version.pk}
    name = f"partition {disk['name']} and unpack {version}"
    job.steps = job.steps + [_step(name, "deploy_files", params)]
    return None


def _accept_files(step: dict[str, Any], result: Any) -> str | None:
    """The archive arrived whole, and every file read back from the disk is the archive's."""
    if not isinstance(result, dict):
        return "no result"
    params = step["params"]
    if result.get("sha256") != params["sha256"]:
        got = result.get("sha256")
        return f"the archive streamed had SHA-256 {got!r}, the image is {params['sha256']}"
    if result.get("files_sha256") != params["files_sha256"]:
        return (
            f"the files read back from the disk ({result.get('files')!r} files) have manifest "
            f"SHA-256 {result.get('files_sha256')!r}, the image's ({params['files']} files) is "
            f"{params['files_sha256']}"
        )
    step["result"] = {
        k: result.get(k) for k in ("sha256", "files_sha256", "files", "write_seconds", "partitions")
    }
    return None


def _plan_copy(job: AgentJob, inventory: dict[str, Any], source: str) -> str | None:
    """The source's disk to move, and the LUN it is copied into (admitting only this machine)."""
    migration = Migration.objects.select_for_update().get(pk=job.params["migration"])
    disks = inventory.get("disks") or []
    if not migration.disk and len(disks) != 1:
        return (
            f"the source machine has {len(disks)} disks; a migration without a disk rule moves "
            "a machine with exactly one (ask again with disk=serial:SERIAL, /dev/NAME, smallest or "
            "largest)"
        )
    try:
        disk = deploy.choose_disk(disks, migration.disk or "smallest", 1)
    except DeployImpossible as exc:
        return str(exc)
    try:
        transfer = iscsi.create(migration, int(disk["size"]), source)
    except iscsi.IscsiError as exc:
        return f"the controller cannot make the migration's iSCSI LUN: {exc}"
    migration.transfer = {**transfer, "source_disk": _disk_words(disk)}
    migration.save(update_fields=["transfer", "chap_secret"])
    params = {
        **{k: transfer[k] for k in ("portal", "port", "iqn", "lun", "size")},
        "disk": _disk_words(disk),
        "initiator": _initiator(job),
    }
    job.steps = job.steps + [_step(f"copy {disk['name']} to the controller", "copy_out", params)]
    return None


def _prepare_restore(job: AgentJob, node: Node, source: str) -> None:
    """Once the source's copy is on the controller, plan the target's restore (both locked)."""
    index = job.current_index
    if index is None or job.steps[index]["action"] != "restore" or job.steps[index]["params"]:
        return
    migration = Migration.objects.select_for_update().get(pk=job.params["migration"])
    if migration.status != Migration.Status.RESTORING:
        job.last_heartbeat_at = timezone.now()  # waiting is not being lost
        job.save(update_fields=["last_heartbeat_at"])
        return
    size = int(migration.transfer["size"])
    problem = None
    try:
        disk = deploy.choose_disk(
            (Node.objects.get(pk=node.pk).inventory or {}).get("disks") or [], "smallest", size
        )
        iscsi.admit(migration, source)
    except DeployImpossible as exc:
        problem = f"no disk of this machine holds the source's {size} bytes: {exc}"
    except iscsi.IscsiError as exc:
        problem = f"the controller cannot admit this machine to the migration's LUN: {exc}"
    if problem:
        job.steps[index].update(status=StepStatus.FAILED, detail=problem)
        _fail(job, node, f"step {index + 1} (restore the copy): {problem}")
        return
    migration.transfer = {**migration.transfer, "target_disk": _disk_words(disk)}
    migration.save(update_fields=["transfer"])
    job.steps[index]["name"] = f"restore the copy to {disk['name']}"
    job.steps[index]["params"] = {
        **{k: migration.transfer[k] for k in ("portal", "port", "iqn", "lun", "size", "sha256")},
        "disk": _disk_words(disk),
        "initiator": _initiator(job),
    }
    job.last_heartbeat_at = timezone.now()
    job.save(update_fields=["steps", "last_heartbeat_at"])


def _accept_copy(job: AgentJob, step: dict[str, Any], result: Any) -> str | None:
    """A copy (source to LUN) or a restore (LUN to target), checked by its SHA-256."""
    if not isinstance(result, dict):
        return "no result"
    sha = str(result.get("sha256", ""))
    size = step["params"]["size"]
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        return f"no SHA-256 in the result ({sha[:80]!r})"
    if result.get("bytes") != size:
        return f"{result.get('bytes')!r} bytes were copied, the disk is {size}"
    migration = Migration.objects.select_for_update().get(pk=job.params["migration"])
    if not migration.running:
        return f"migration {migration.pk} has ended ({migration.status})"
    if step["action"] == "copy_out":
        if result.get("lun_sha256") != sha:
            return (
                f"the copy on the controller reads SHA-256 {result.get('lun_sha256')!r}, the "
                f"source disk {sha}"
            )
        # The controller hashes the LUN file itself before the target may restore it.
        migration.transfer = {**migration.transfer, "sha256": sha, "controller_check": "pending"}
        migration.save(update_fields=["transfer"])
        check = current_app.signature("agent.check_migration_copy", args=[migration.pk])
        transaction.on_commit(check.delay, robust=True)
    elif sha != step["params"]["sha256"]:
        wanted = step["params"]["sha256"]
        return f"the target's disk reads back SHA-256 {sha}, the source's was {wanted}"
    else:
        migration.transfer = {**migration.transfer, "target_sha256": sha}
        migration.save(update_fields=["transfer"])
    step["result"] = {k: result.get(k) for k in ("sha256", "bytes", "seconds")}
    return None


def _complete_migration(job: AgentJob) -> None:
    """The target holds the checked copy: the node takes it over, the old machine is
    handed back and a deprovision request is filed for it (its own approval)."""
    migration = node_migration.complete(
        job.params["migration"],
        f"migration {job.params['migration']}: the disk was copied and restored, SHA-256 "
        f"{job.steps[-1]['params']['sha256']} on both machines",
    )
    migration.transfer = {**migration.transfer, **_file_deprovision(migration)}
    migration.save(update_fields=["transfer"])


def _file_deprovision(migration: Migration) -> dict[str, Any]:
    """Ask, in the requester's name, for the old machine's secure wipe."""
    name = migration.requested_by.removeprefix("user:")
    user = get_user_model().objects.filter(username=name, is_active=True).first()
    if user is None:
        return {"deprovision_request": None, "deprovision_error": f"no active user {name!r}"}
    try:
        request = approvals.request_transition(
            migration.target_id,
            lc.DEPROVISION,
            node_services.Actor.of(user),
            reason=f"the old machine of node {migration.source_id} after migration {migration.pk}",
            params={"after": "retired", "category": "best"},
        )
    except (node_services.TransitionError, ValidationError) as exc:
        log.warning("migration %s: no deprovision request filed: %s", migration.pk, exc)
        return {"deprovision_request": None, "deprovision_error": str(exc)[:500]}
    return {"deprovision_request": request.pk}


def _disk_words(disk: dict[str, Any]) -> dict[str, Any]:
    return {k: disk.get(k) for k in ("name", "path", "model", "serial", "size", "transport")}


def _initiator(job: AgentJob) -> str:
    """The initiator name the agent logs in with (names the node, for tgt's logs)."""
    return f"{settings.PUREBOOT_ISCSI_IQN_PREFIX}:agent-node-{job.node_id}"


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
        _complete_migration(job)
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


def heartbeat(node: Node, job_id: int, data: dict[str, Any]) -> AgentJob:
    with transaction.atomic():
        job = _locked_job(node, job_id)
        job.last_heartbeat_at = timezone.now()
        job.heartbeat = {**data, "at": job.last_heartbeat_at.isoformat()}
        job.save(update_fields=["last_heartbeat_at", "heartbeat"])
    return job


def append_log(node: Node, job_id: int, lines: list[str]) -> int:
    """Store log lines (bounded per job); returns how many were kept."""
    with transaction.atomic():
        job = _locked_job(node, job_id)
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
            node = Node.objects.select_for_update(of=("self",)).get(pk=node_id)
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


def teardown_migration(migration_id: int) -> bool:
    """Remove the iSCSI target and LUN file of a migration that has ended; True if removed."""
    migration = Migration.objects.filter(pk=migration_id).first()
    if migration is None or migration.running:
        return False
    try:
        iscsi.destroy(migration)
    except iscsi.IscsiError as exc:
        log.error("migration %s: its iSCSI LUN could not be removed: %s", migration_id, exc)
        return False
    return True


def migration_plan(source_id: int, target: int, disk: str = "") -> dict[str, Any]:
    """For a dry run: the source disk that would move and the target disk it would land on,
    from the machines' last inventories (None where no inventory says yet)."""
    plan: dict[str, Any] = {"disk_to_copy": None, "disk_to_overwrite": None, "problem": None}
    disks = (Node.objects.get(pk=source_id).inventory or {}).get("disks")
    if not disks:
        plan["problem"] = "the source's disks are known once the agent has run on it"
        return plan
    if not disk and len(disks) != 1:
        plan["problem"] = f"the source has {len(disks)} disks: name one with a disk rule"
        return plan
    try:
        chosen = deploy.choose_disk(disks, disk or "smallest", 1)
    except DeployImpossible as exc:
        plan["problem"] = str(exc)
        return plan
    plan["disk_to_copy"] = _disk_words(chosen)
    target_disks = (Node.objects.get(pk=target).inventory or {}).get("disks")
    if not target_disks:
        plan["problem"] = "the target's disks are known once the agent has run on it"
        return plan
    try:
        plan["disk_to_overwrite"] = _disk_words(
            deploy.choose_disk(target_disks, "smallest", int(chosen["size"]))
        )
    except DeployImpossible as exc:
        plan["problem"] = f"the target has no disk large enough: {exc}"
    return plan


def check_migration_copy(migration_id: int) -> str:
    """Hash the migration's LUN file on the controller; only a copy whose hash is the
    source's own moves the migration on to the restore. Returns what was decided."""
    migration = Migration.objects.filter(pk=migration_id).first()
    if migration is None or migration.status != Migration.Status.COPYING:
        return "not copying"
    wanted = migration.transfer.get("sha256")
    size = int(migration.transfer.get("size") or 0)
    digest = hashlib.sha256()
    try:
        with iscsi.backing_file(migration).open("rb") as handle:
            left = size
            while left > 0:
                chunk = handle.read(min(left, 1 << 20))
                if not chunk:
                    break
                digest.update(chunk)
                left -= len(chunk)
        got = digest.hexdigest() if left == 0 else f"short by {left} bytes"
    except OSError as exc:
        got = f"unreadable ({exc.strerror})"
    with transaction.atomic():
        node_migration.lock_nodes(migration.source_id, migration.target_id)
        migration = Migration.objects.select_for_update().get(pk=migration_id)
        if migration.status != Migration.Status.COPYING:
            return "not copying"
        if got != wanted:
            node_migration.end(
                migration.pk,
                Migration.Status.FAILED,
                f"the copy on the controller hashes {got}; the source reported {wanted}",
            )
            return "failed"
        migration.transfer = {**migration.transfer, "controller_check": got}
        migration.status = Migration.Status.RESTORING
        migration.save(update_fields=["transfer", "status"])
    return "restoring"
