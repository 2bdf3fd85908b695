"""The agent's side of a 1:1 migration: the copy out, the wait, the restore, the hand-over.

``nodes.migration`` moves the two node rows; this module plans the agents'
steps, makes and admits the iSCSI LUN (``iscsi``), checks each side's
SHA-256 (and hashes the copy on the controller itself), and files the old
machine's deprovision request once the node has taken over the new one.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from celery import current_app
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from approvals import services as approvals
from nodes import lifecycle as lc
from nodes import migration as node_migration
from nodes import services as node_services
from nodes.models import Migration, Node
from workflows.images import DeployImpossible

from . import deploy, iscsi
from .choices import MIGRATION_KINDS, StepStatus
from .models import AgentJob
from .steps import JobError, disk_words, new_step

log = logging.getLogger(__name__)


def chap_for(job: AgentJob) -> dict[str, str]:
    """The CHAP account for this job's agent: kept encrypted on the migration, handed
    only to the agent whose step it is, never stored in the job."""
    return iscsi.chap(Migration.objects.get(pk=job.params["migration"]))


def check_address(job: AgentJob, source: str) -> None:
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


def plan_copy(job: AgentJob, inventory: dict[str, Any], source: str) -> str | None:
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
    firmware = (inventory.get("firmware") or {}).get("mode") or ""
    migration.transfer = {**transfer, "source_disk": disk_words(disk), "source_firmware": firmware}
    migration.save(update_fields=["transfer", "chap_secret"])
    params = {
        **{k: transfer[k] for k in ("portal", "port", "iqn", "lun", "size")},
        "disk": disk_words(disk),
        "initiator": initiator(job),
    }
    job.steps = job.steps + [new_step(f"copy {disk['name']} to the controller", "copy_out", params)]
    return None


def prepare_restore(job: AgentJob, node: Node, source: str) -> str | None:
    """Once the source's copy is on the controller, plan the target's restore (both locked).

    Returns why the restore cannot happen (the caller fails the job), or None.
    """
    index = job.current_index
    if index is None or job.steps[index]["action"] != "restore" or job.steps[index]["params"]:
        return None
    migration = Migration.objects.select_for_update().get(pk=job.params["migration"])
    if migration.status != Migration.Status.RESTORING:
        job.last_heartbeat_at = timezone.now()  # waiting is not being lost
        job.save(update_fields=["last_heartbeat_at"])
        return None
    size = int(migration.transfer["size"])
    problem = None
    inventory = Node.objects.get(pk=node.pk).inventory or {}
    theirs = migration.transfer.get("source_firmware") or ""
    ours = (inventory.get("firmware") or {}).get("mode") or ""
    if theirs and ours and theirs != ours:
        # The copied system boots the way its old machine did: a UEFI system on a BIOS
        # machine (or the reverse) would be checked, handed over and never boot.
        job.steps[index].update(status=StepStatus.FAILED)
        return (
            f"step {index + 1} (restore the copy): the source machine boots {theirs}, this one "
            f"{ours}; the copied system would not boot here. Nothing was written."
        )
    try:
        disk = deploy.choose_disk(inventory.get("disks") or [], "smallest", size)
        iscsi.admit(migration, source)
    except DeployImpossible as exc:
        problem = f"no disk of this machine holds the source's {size} bytes: {exc}"
    except iscsi.IscsiError as exc:
        problem = f"the controller cannot admit this machine to the migration's LUN: {exc}"
    if problem:
        job.steps[index].update(status=StepStatus.FAILED, detail=problem)
        return f"step {index + 1} (restore the copy): {problem}"
    migration.transfer = {**migration.transfer, "target_disk": disk_words(disk)}
    migration.save(update_fields=["transfer"])
    job.steps[index]["name"] = f"restore the copy to {disk['name']}"
    job.steps[index]["params"] = {
        **{k: migration.transfer[k] for k in ("portal", "port", "iqn", "lun", "size", "sha256")},
        "disk": disk_words(disk),
        "initiator": initiator(job),
    }
    job.last_heartbeat_at = timezone.now()
    job.save(update_fields=["steps", "last_heartbeat_at"])
    return None


def accept_copy(job: AgentJob, step: dict[str, Any], result: Any) -> str | None:
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


def complete(job: AgentJob) -> None:
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


def initiator(job: AgentJob) -> str:
    """The initiator name the agent logs in with (names the node, for tgt's logs)."""
    return f"{settings.PUREBOOT_ISCSI_IQN_PREFIX}:agent-node-{job.node_id}"


def check_copy(migration_id: int) -> str:
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


def teardown(migration_id: int) -> bool:
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


def plan(source_id: int, target: int, disk: str = "") -> dict[str, Any]:
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
    plan["disk_to_copy"] = disk_words(chosen)
    target_disks = (Node.objects.get(pk=target).inventory or {}).get("disks")
    if not target_disks:
        plan["problem"] = "the target's disks are known once the agent has run on it"
        return plan
    try:
        plan["disk_to_overwrite"] = disk_words(
            deploy.choose_disk(target_disks, "smallest", int(chosen["size"]))
        )
    except DeployImpossible as exc:
        plan["problem"] = f"the target has no disk large enough: {exc}"
    return plan


def sweep() -> list[int]:
    """Remove the LUN of every migration that has ended but still has one (a teardown
    lost with its task, or tgtd down when it ran); returns the ids removed."""
    ended = set(
        Migration.objects.filter(pk__in=iscsi.leftovers())
        .exclude(status__in=Migration.RUNNING)
        .values_list("pk", flat=True)
    )
    return [pk for pk in sorted(ended) if teardown(pk)]
