"""Joining Windows installs to Active Directory (the ``domain_join`` task).

Online: unattend carries the join credential and Windows joins during
specialize. Offline: when the install starts, :func:`request_offline_join`
records an :class:`OfflineJoin` and queues ``workflows.provision_offline_join``,
which prestages the computer account (``samba-tool computer``) and makes the
offline-join blob (``net offlinejoin provision``); unattend's ``AccountData``
then carries the blob and Windows never needs the credential. The blob is
stored encrypted, served only to its own run while that run is running, and
wiped when the run ends (:func:`wipe_for_run`, and :func:`sweep_ended` for
runs that ended without a report).

Deleting a computer account is a four-eye action (approval kind
``windows.computer_remove``, see :func:`remove_computer_account`).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from celery import current_app
from django.db import transaction
from django.utils import timezone

from audit import services as audit
from credentials import services as credentials
from credentials.models import Credential, CredentialKind
from nodes import services as node_services
from nodes.models import Node
from pureboot import gate

from .choices import RunStatus
from .domainjoin_models import LIVE_STATES, OfflineJoin, OfflineJoinStatus
from .models import WorkflowRun
from .samba_tools import SambaError, Session, ou_dn

log = logging.getLogger(__name__)

TASK_ACTOR = "task:workflows.provision_offline_join"
REMOVE_ACTION = "windows.computer_remove"
#: What a secret reads as in the preview and the save-time check.
PREVIEW_SECRET = "[hidden in the preview]"
# A claimed join whose worker vanished may be claimed again after this long.
CLAIM_SECONDS = 600
_NETBIOS = re.compile(r"[A-Z0-9][A-Z0-9-]{0,14}")
_OBJECT = "workflows.offlinejoin"


class DomainJoinError(Exception):
    """A domain join that cannot be done as asked; the message says why."""


class JoinNotReady(DomainJoinError):
    """The offline-join blob is not made yet: ask again shortly (HTTP 409)."""


class JoinFailed(DomainJoinError):
    """Making the offline-join blob failed; the message holds the reason."""


class JoinRefused(DomainJoinError):
    """The blob is not (or no longer) this run's to have."""


# --- names and tasks ---------------------------------------------------------------


def machine_name(node: Node, tasks: list[dict[str, Any]]) -> str:
    """The computer name Windows gets: windows_install's computer_name, else the
    node's hostname (first label), upper-cased."""
    install = next((t for t in tasks if t.get("type") == "windows_install"), {})
    name = (install.get("computer_name") or "").strip()
    if not name:
        name = (node.hostname or f"node-{node.pk}").partition(".")[0]
    return name.upper()


def check_machine_name(name: str) -> str | None:
    """Why ``name`` cannot be a computer account's NetBIOS name, or None."""
    if not _NETBIOS.fullmatch(name) or name.isdigit():
        return (
            f"computer name {name!r} is not a NetBIOS name: 1-15 letters, digits and dashes, "
            "not only digits"
        )
    return None


def _join_task(tasks: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((t for t in tasks if t.get("type") == "domain_join"), None)


def join_scope_problem(credential: Credential, domain: str) -> str:
    """Why ``credential`` may not be used to join ``domain`` ("" when it may).

    Its scope must name that domain: the join account's password goes to that
    domain's controllers (offline) or into the unattend of its machines
    (online), and nobody alone may send a stored password where they choose
    (a credential's scope is changed by a four-eye request)."""
    scope = (credential.scope or "").strip().lower().rstrip(".")
    if scope != domain.strip().lower().rstrip("."):
        return (
            f"credential {credential.name!r} has the scope {credential.scope or '(none)'!r}; "
            f"a domain_join credential is used only for the domain its scope names, and this "
            f"join is for {domain!r} (set the credential's scope to it: a four-eye change)"
        )
    return ""


def _credential(name: str, domain: str) -> Credential:
    credential = Credential.objects.filter(name=name).first() if name else None
    if credential is None or credential.kind != CredentialKind.DOMAIN_JOIN:
        raise DomainJoinError(
            f"domain_join: no credential {name!r} of kind {CredentialKind.DOMAIN_JOIN} is stored"
        )
    if problem := join_scope_problem(credential, domain):
        raise DomainJoinError(f"domain_join: {problem}")
    return credential


# --- prestaging and provisioning ----------------------------------------------------


def prestage_computer(
    credential: credentials.Secret, *, domain: str, machine: str, ou: str, dc: str = ""
) -> str:
    """Create computer account ``machine`` in ``ou`` (empty: CN=Computers) over LDAP.

    An account that already exists is accepted only when it is a computer
    account in that OU. Returns the account's DN. Raises
    :class:`samba_tools.SambaError` (the DC refused, or is unreachable) and
    :class:`DomainJoinError` (the name is taken by something else).
    """
    with Session(domain, credential.username, credential.password, dc=dc) as session:
        return _prestage(session, machine, ou_dn(ou, domain))


def _prestage(session: Session, machine: str, target_ou: str, *, reuse: bool = True) -> str:
    """``reuse``: an existing computer account of that name in that OU may be taken
    (``net offlinejoin provision reuse`` then sets a new password on it). An install
    passes it only for an account PureBoot made for the same node before
    (:func:`_made_for_node`): anyone else's account would be taken over."""
    wanted = f"CN={machine},{target_ou}"
    existing = session.show_computer(machine)
    if existing is None:
        session.create_computer(machine, target_ou)
        return wanted
    dn = (existing.get("distinguishedName") or [""])[0]
    classes = {c.lower() for c in existing.get("objectClass", [])}
    if "computer" not in classes or dn.lower() != wanted.lower():
        raise DomainJoinError(
            f"{machine}$ already exists in {session.domain} as {dn or 'another object'}, "
            f"not as a computer account in {target_ou}; nothing was changed"
        )
    if not reuse:
        raise DomainJoinError(
            f"computer account {machine}$ already exists in {session.domain} and PureBoot did "
            "not make it for this node; taking it over would cut off the machine that holds "
            "it. Remove it in Active Directory (or through PureBoot, four-eye) or give this "
            "node another computer name; nothing was changed"
        )
    return dn


def _made_for_node(join: OfflineJoin) -> bool:
    """Whether an earlier offline join of the same node made this account (and nobody
    removed it since): only then may an install take it again."""
    return (
        OfflineJoin.objects.filter(
            node_id=join.node_id,
            domain__iexact=join.domain,
            machine_name__iexact=join.machine_name,
            ready_at__isnull=False,
            account_removed_at__isnull=True,
        )
        .exclude(pk=join.pk)
        .exists()
    )


def _other_node_joining(join: OfflineJoin) -> OfflineJoin | None:
    """A live join of another node for the same account: the two would take it in turn."""
    return (
        OfflineJoin.objects.filter(
            domain__iexact=join.domain,
            machine_name__iexact=join.machine_name,
            status__in=LIVE_STATES,
        )
        .exclude(node_id=join.node_id)
        .first()
    )


def request_offline_join(run: WorkflowRun) -> OfflineJoin | None:
    """Record the offline join of ``run`` (if its workflow joins a domain offline) and
    have a worker make its blob once this transaction commits. Returns the live
    join (an existing one is kept), or None when the run joins no domain offline.
    """
    task = _join_task(run.version.tasks)
    if task is None or task.get("mode") != "offline":
        return None
    with transaction.atomic():
        live = OfflineJoin.objects.filter(run=run, status__in=LIVE_STATES).first()
        if live is not None:
            return live
        name = machine_name(run.node, run.version.tasks)
        credential = Credential.objects.filter(name=task.get("credential") or "").first()
        join = OfflineJoin.objects.create(
            node=run.node,
            run=run,
            credential=credential,
            domain=str(task.get("domain", "")).strip().lower(),
            machine_name=name[:15],
            ou=task.get("ou") or "",
            dc=task.get("dc") or "",
        )
        audit.record(
            actor="system",
            action="windows.odj.request",
            object_type=_OBJECT,
            object_id=join.pk,
            message=f"offline domain join of node {run.node_id} as {name} in {join.domain}",
            details={"node": run.node_id, "run": run.pk, "machine": name, "ou": join.ou},
        )
        refusal = check_machine_name(name)
        if refusal:
            _fail(join, refusal)
        else:
            job = current_app.signature("workflows.provision_offline_join", args=[join.pk])
            transaction.on_commit(job.delay, robust=True)
    return join


def _fail(join: OfflineJoin, reason: str) -> None:
    OfflineJoin.objects.filter(pk=join.pk).update(status=OfflineJoinStatus.FAILED, error=reason)
    join.status, join.error = OfflineJoinStatus.FAILED, reason
    audit.record(
        actor=TASK_ACTOR,
        action="windows.odj.fail",
        object_type=_OBJECT,
        object_id=join.pk,
        message=reason,
        details={"node": join.node_id, "run": join.run_id, "machine": join.machine_name},
    )


def _fail_install(join_id: int, reason: str) -> None:
    """Store why the join failed, and fail its install with that reason: the node then
    waits as failed with it on screen instead of asking for its files again and again."""
    with transaction.atomic():
        join = OfflineJoin.objects.filter(pk=join_id, status=OfflineJoinStatus.PENDING).first()
        if join is None:
            return
        _fail(join, reason)
        run_id, node_id = join.run_id, join.node_id
    if run_id is None:
        return
    run = WorkflowRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).first()
    if run is None:
        return
    why = f"offline domain join failed: {reason}"[:1000]
    WorkflowRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
        status=RunStatus.FAILED, finished_at=timezone.now(), error=why
    )
    try:
        node_services.perform(node_id, "fail", node_services.Actor(TASK_ACTOR), reason=why)
    except node_services.TransitionError as exc:  # not installing any more: nothing to end
        log.info("offline join %s: node %s not failed: %s", join_id, node_id, exc)


def _claim(join_id: int) -> OfflineJoin | None:
    """Mark a pending join as being provisioned by this worker (None: nothing to do)."""
    with transaction.atomic():
        join = OfflineJoin.objects.select_for_update().filter(pk=join_id).first()
        if join is None or join.status != OfflineJoinStatus.PENDING:
            return None
        now = timezone.now()
        if join.claimed_at and (now - join.claimed_at).total_seconds() < CLAIM_SECONDS:
            return None  # another worker is on it
        join.claimed_at = now
        join.save(update_fields=["claimed_at"])
    return join


def provision_offline_join(join_id: int) -> str:
    """Prestage the account and make the blob of join ``join_id``; returns its status.

    Failures are stored on the join (``failed`` with the reason), never raised:
    the node then gets a clear error instead of waiting forever.
    """
    join = _claim(join_id)
    if join is None:
        return "skipped"
    try:
        other = _other_node_joining(join)
        if other is not None:
            raise DomainJoinError(
                f"node {other.node_id} is joining {join.domain} as {join.machine_name} too "
                f"(offline join {other.pk}); give one of them another computer name"
            )
        credential = _credential(join.credential.name if join.credential_id else "", join.domain)
        node = join.node
        secret = credentials.reveal(
            credential,
            TASK_ACTOR,
            f"offline domain join of node {node.pk} ({node}) as {join.machine_name} in "
            f"{join.domain}, install run {join.run_id or '-'}",
        )
        with Session(join.domain, secret.username, secret.password, dc=join.dc) as session:
            target_ou = ou_dn(join.ou, join.domain)
            _prestage(session, join.machine_name, target_ou, reuse=_made_for_node(join))
            blob = session.provision(join.machine_name, target_ou)
    except Exception as exc:  # noqa: BLE001 (stored as the join's reason; the install fails)
        known = (DomainJoinError, SambaError, credentials.CredentialError)
        reason = str(exc) if isinstance(exc, known) else f"unexpected {type(exc).__name__}"
        if not isinstance(exc, known):
            log.exception("offline join %s: provisioning failed", join_id)
        _fail_install(join_id, reason)
        return OfflineJoinStatus.FAILED
    with transaction.atomic():
        join = OfflineJoin.objects.select_for_update().get(pk=join_id)
        if join.status != OfflineJoinStatus.PENDING:
            return join.status  # wiped while we worked: the blob is dropped
        join.blob_ciphertext = credentials.encrypt(blob)
        join.status, join.ready_at, join.error = OfflineJoinStatus.READY, timezone.now(), ""
        join.save(update_fields=["blob_ciphertext", "status", "ready_at", "error"])
        audit.record(
            actor=TASK_ACTOR,
            action="windows.odj.provision",
            object_type=_OBJECT,
            object_id=join.pk,
            message=f"computer account {join.machine_name} prestaged in "
            f"{ou_dn(join.ou, join.domain)}; offline-join blob stored encrypted",
            details={"node": join.node_id, "run": join.run_id, "blob_chars": len(blob)},
        )
    return OfflineJoinStatus.READY


# --- serving and wiping --------------------------------------------------------------


def serve(join: OfflineJoin | int, run: WorkflowRun, actor: str) -> str:
    """The blob of ``join`` for ``run``'s node: only its own run, only while it runs.

    Marks the join served (audited ``windows.odj.serve``). Raises
    :class:`JoinNotReady`, :class:`JoinFailed` and :class:`JoinRefused`.
    """
    pk = join.pk if isinstance(join, OfflineJoin) else join
    with transaction.atomic():
        join = OfflineJoin.objects.select_for_update().get(pk=pk)
        current = WorkflowRun.objects.filter(pk=run.pk).values_list("status", flat=True).first()
        if join.run_id != run.pk:
            raise JoinRefused(f"offline join {join.pk} belongs to another install run")
        if current != RunStatus.RUNNING:
            raise JoinRefused(f"install run {run.pk} is {current or 'gone'}, not running")
        if join.status == OfflineJoinStatus.PENDING:
            raise JoinNotReady(
                f"the offline-join blob of {join.machine_name} is being made; ask again shortly"
            )
        if join.status == OfflineJoinStatus.FAILED:
            raise JoinFailed(f"the offline join of {join.machine_name} failed: {join.error}")
        if join.status == OfflineJoinStatus.WIPED or not join.blob_ciphertext:
            raise JoinRefused(f"the offline-join blob of {join.machine_name} was wiped")
        blob = credentials.decrypt(join.blob_ciphertext)
        first = join.status == OfflineJoinStatus.READY
        join.status = OfflineJoinStatus.SERVED
        join.served_at = join.served_at or timezone.now()
        join.save(update_fields=["status", "served_at"])
        audit.record(
            actor=actor,
            action="windows.odj.serve",
            object_type=_OBJECT,
            object_id=join.pk,
            message=f"offline-join blob of {join.machine_name} served to node {join.node_id}, "
            f"install run {run.pk}" + ("" if first else " (again)"),
            details={"node": join.node_id, "run": run.pk},
        )
    return blob


def join_context(
    task: dict[str, Any], node: Node, run: WorkflowRun | None, *, reveal: bool
) -> dict[str, Any] | None:
    """The ``join`` context of a Windows install's unattend, from its domain_join ``task``.

    Secrets (the online password, the offline blob) only with ``reveal``:
    that is the node fetching its own files for ``run``, and each reveal is
    audited; otherwise they read :data:`PREVIEW_SECRET`. Raises
    :class:`DomainJoinError` (no such credential), :class:`JoinNotReady`
    (offline blob still being made: the node asks again),
    :class:`JoinFailed` and :class:`JoinRefused`.
    """
    if not task:
        return None
    mode = task.get("mode") or "online"
    join: dict[str, Any] = {
        "mode": mode,
        "domain": str(task.get("domain", "")).strip(),
        "ou": task.get("ou") or "",
    }
    if mode == "online":
        credential = _credential(task.get("credential") or "", join["domain"])
        join["username"] = credential.username
        join["password"] = PREVIEW_SECRET
        if reveal:
            reason = (
                f"online domain join of node {node.pk} ({node}) in {join['domain']}, "
                f"install run {run.pk if run else '-'}"
            )
            try:
                secret = credentials.reveal(credential, f"node:{node.pk}", reason)
            except credentials.CredentialError as exc:  # a store down or refusing
                raise DomainJoinError(f"credential {credential.name}: {exc}") from None
            join["username"], join["password"] = secret.username, secret.password
        return join
    if not reveal:
        join["account_data"] = PREVIEW_SECRET
        return join
    if run is None:
        raise JoinRefused("an offline-join blob is served only to an install run")
    live = OfflineJoin.objects.filter(run=run).exclude(status=OfflineJoinStatus.WIPED).first()
    if live is None:
        request_offline_join(run)
        raise JoinNotReady("the offline-join blob is being made; ask again shortly")
    join["account_data"] = serve(live, run, f"node:{node.pk}")
    # The blob is for this name: the unattend's ComputerName must be it, even if the
    # node was renamed since the install started.
    join["computer_name"] = live.machine_name
    return join


def wipe_for_run(run: WorkflowRun | int, actor: str = "system") -> int:
    """Clear the blobs of ``run`` (it ended); returns how many joins were wiped."""
    run_id = run.pk if isinstance(run, WorkflowRun) else run
    wiped = 0
    with transaction.atomic():
        joins = OfflineJoin.objects.select_for_update().filter(run_id=run_id)
        for join in joins.exclude(status=OfflineJoinStatus.WIPED).exclude(
            status=OfflineJoinStatus.FAILED, blob_ciphertext=""
        ):
            before = join.status
            join.blob_ciphertext, join.status = "", OfflineJoinStatus.WIPED
            join.wiped_at = timezone.now()
            join.save(update_fields=["blob_ciphertext", "status", "wiped_at"])
            audit.record(
                actor=actor,
                action="windows.odj.wipe",
                object_type=_OBJECT,
                object_id=join.pk,
                message=f"offline-join blob of {join.machine_name} wiped ({before}): "
                f"install run {run_id} ended",
                details={"node": join.node_id, "run": run_id, "was": before},
            )
            wiped += 1
    return wiped


def sweep_ended() -> int:
    """Wipe the blobs of every run that is no longer running (periodic task)."""
    ended = (
        OfflineJoin.objects.exclude(status=OfflineJoinStatus.WIPED)
        .exclude(status=OfflineJoinStatus.FAILED, blob_ciphertext="")
        .exclude(run__status=RunStatus.RUNNING)
    )
    run_ids = set(ended.values_list("run_id", flat=True))
    wiped = sum(wipe_for_run(pk, "task:workflows.wipe_offline_joins") for pk in run_ids if pk)
    # A join whose run was deleted has no run to end: wipe it too.
    for join in ended.filter(run__isnull=True):
        with transaction.atomic():
            OfflineJoin.objects.filter(pk=join.pk).update(
                blob_ciphertext="", status=OfflineJoinStatus.WIPED, wiped_at=timezone.now()
            )
            audit.record(
                actor="task:workflows.wipe_offline_joins",
                action="windows.odj.wipe",
                object_type=_OBJECT,
                object_id=join.pk,
                message=f"offline-join blob of {join.machine_name} wiped: its run is gone",
            )
            wiped += 1
    return wiped


# --- removing the computer account (four-eye) ---------------------------------------


def removal_binding(pk: int | str) -> str:
    """What an approved removal of join ``pk``'s account is bound to (locks the row)."""
    join = OfflineJoin.objects.select_for_update().filter(pk=pk).first()
    if join is None:
        return "deleted"
    return gate.binding(
        [join.pk, join.node_id, join.domain, join.machine_name, join.ou, join.account_removed_at]
    )


def remove_computer_account(
    join: OfflineJoin | int, actor: credentials.ActorLike, *, approval: gate.Approval
) -> str:
    """Delete the join's computer account from its domain (``samba-tool computer delete``).

    Only with ``approval`` sealed for this join as it is now, and only an
    account that is a computer account in the join's OU (an account of the
    same name elsewhere is not touched). Returns what was done. Raises
    ``gate.InvalidApproval``, :class:`DomainJoinError` and
    :class:`samba_tools.SambaError`.
    """
    label = actor if isinstance(actor, str) else actor.label
    pk = join.pk if isinstance(join, OfflineJoin) else int(join)
    with transaction.atomic():
        gate.verify(
            approval,
            action=REMOVE_ACTION,
            target=f"offline_join:{pk}",
            bound_to=removal_binding(pk),
        )
        join = OfflineJoin.objects.select_for_update().get(pk=pk)
        if join.account_removed_at:
            raise DomainJoinError(f"{join.machine_name}'s computer account was already removed")
        credential = _credential(join.credential.name if join.credential_id else "", join.domain)
        secret = credentials.reveal(
            credential,
            label,
            f"delete computer account {join.machine_name} of node {join.node_id} from "
            f"{join.domain} (approval request #{approval.request_id})",
        )
        target_ou = ou_dn(join.ou, join.domain)
        with Session(join.domain, secret.username, secret.password, dc=join.dc) as session:
            existing = session.show_computer(join.machine_name)
            if existing is not None:
                dn = (existing.get("distinguishedName") or [""])[0]
                if dn.lower() != f"CN={join.machine_name},{target_ou}".lower():
                    raise DomainJoinError(
                        f"{join.machine_name}$ is {dn or 'another object'} now, not the "
                        f"account made in {target_ou}; nothing was deleted"
                    )
                session.delete_computer(join.machine_name)
        join.account_removed_at = timezone.now()
        join.save(update_fields=["account_removed_at"])
        done = (
            f"computer account {join.machine_name} deleted from {join.domain}"
            if existing is not None
            else f"computer account {join.machine_name} was already gone from {join.domain}"
        )
        audit.record(
            actor=label,
            action=REMOVE_ACTION,
            object_type=_OBJECT,
            object_id=join.pk,
            message=done,
            details={
                "node": join.node_id,
                "machine": join.machine_name,
                "ou": target_ou,
                "approval_request": approval.request_id,
                "approvers": list(approval.approvers),
            },
        )
    return done
