"""The reconcile loop: after-install config runs, Salt keys and Chef registrations.

One periodic task (``configmgmt.reconcile``, every minute) compares the
lifecycle with the outside systems and closes the gap, so a transition
never waits for (or fails because of) Salt, Chef or a playbook:

- every ``config_run`` step of a node's latest install that succeeded in
  the last day runs once, when the node is ``installed`` or ``active``;
- a run still ``running`` long after its timeout (its worker died) is marked failed;
- Salt (PUREBOOT_SALT_API_URL): the waiting key of an installed or active
  node's minion (its id is the node's host name) is accepted; the key
  PureBoot accepted is deleted, by the name it was accepted under, when the
  node is retired, deleted, renamed or reinstalled (then the new install's
  key is accepted). A key already accepted when PureBoot first looked is
  recorded as ``preexisting`` and never deleted;
- Chef (PUREBOOT_CHEF_SERVER_URL): an installed or active node gets a Chef
  node and API client; the same events delete the pair PureBoot created.

Each change is on the audit trail with the actor ``task:configmgmt.reconcile``;
failures are kept on the Registration / ConfigRun for operators and retried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from audit import services as audit
from credentials import services as credentials
from credentials.errors import CredentialError
from nodes.choices import EventKind, NodeState
from nodes.models import Node, NodeEvent
from workflows import services as workflows
from workflows.choices import RunStatus as InstallStatus
from workflows.choices import StepStatus
from workflows.configsteps import CONFIG_RUN
from workflows.models import WorkflowRun

from . import ansible, chef, inventory, salt
from .errors import ConfigMgmtError
from .models import ConfigRun, Registration, RunStatus, System

log = logging.getLogger(__name__)

ACTOR = "task:configmgmt.reconcile"
LIVE_STATES = (NodeState.INSTALLED, NodeState.ACTIVE)
# Installs that ended longer ago than this get no config run (an upgrade
# does not run the playbooks of every machine installed in the past).
CONFIG_RUN_WINDOW = timedelta(days=1)
MAX_ERROR_CHARS = 2000
# What a tool, a server, the credential store (StoreError, UndecryptableSecret)
# or a missing file (a CA bundle) raises: recorded, and the pass goes on.
PASS_ERRORS = (ConfigMgmtError, CredentialError, OSError)
# A run still ``running`` this long after its timeout lost its worker.
STALE_MARGIN = timedelta(minutes=10)


def reconcile() -> dict[str, Any]:
    """One pass of every integration; what it did, for the task's result and tests.

    One integration failing (even unexpectedly) never stops the others.
    """
    done: dict[str, Any] = {}
    passes: dict[str, Callable[[], Any]] = {
        "stale_runs": fail_stale_runs,
        "config_runs": run_due_config_steps,
        "salt": sync_salt,
        "chef": sync_chef,
    }
    for name, one_pass in passes.items():
        try:
            done[name] = one_pass()
        except Exception:  # noqa: BLE001 - the next integration still runs
            log.exception("configmgmt reconcile: the %s pass failed", name)
            done[name] = None
    return done


def fail_stale_runs() -> list[int]:
    """Mark failed (run and step) every run ``running`` longer than its timeout + margin.

    Its worker died (or was killed) mid-run: nothing else would ever finish it.
    """
    now = timezone.now()
    stale = []
    running = ConfigRun.objects.filter(status=RunStatus.RUNNING).select_related(
        "workflow_run__version"
    )
    for config_run in running:
        tasks = config_run.workflow_run.version.tasks
        step = tasks[config_run.step] if config_run.step < len(tasks) else {}
        timeout = timedelta(seconds=int(step.get("timeout") or 1800))
        if config_run.started_at + timeout + STALE_MARGIN > now:
            continue
        with transaction.atomic():
            marked = ConfigRun.objects.filter(pk=config_run.pk, status=RunStatus.RUNNING).update(
                status=RunStatus.FAILED,
                output=(config_run.output + "\nthe worker running it stopped; marked failed")[
                    -ansible.MAX_OUTPUT_CHARS :
                ],
                finished_at=now,
            )
            if not marked:
                continue
            audit.record(
                actor=ACTOR,
                action="configmgmt.config_run.failed",
                object_type="nodes.node",
                object_id=config_run.node_id,
                message="still running long after its timeout: its worker stopped",
                details={"run": config_run.workflow_run_id, "step": config_run.step},
            )
        workflows.mark_step(config_run.workflow_run_id, config_run.step, StepStatus.FAILED)
        stale.append(config_run.pk)
    return stale


# --- config_run steps --------------------------------------------------------
def due_config_steps() -> list[tuple[WorkflowRun, int, dict[str, Any]]]:
    """(install run, step index, step) of every config_run step that has not run yet."""
    since = timezone.now() - CONFIG_RUN_WINDOW
    runs = (
        WorkflowRun.objects.filter(
            status=InstallStatus.SUCCEEDED, finished_at__gte=since, node__state__in=LIVE_STATES
        )
        .select_related("node", "version")
        .order_by("finished_at")
    )
    due = []
    for run in runs:
        steps = [(i, t) for i, t in enumerate(run.version.tasks) if t["type"] == CONFIG_RUN]
        if not steps or run.node.runs.values_list("pk", flat=True).first() != run.pk:
            continue  # nothing to run, or a newer install superseded this one
        done = set(run.config_runs.values_list("step", flat=True))
        due.extend((run, index, step) for index, step in steps if index not in done)
    return due


def run_due_config_steps() -> list[int]:
    """Run every due config_run step, in order; the ConfigRun ids it started."""
    started = []
    for run, index, step in due_config_steps():
        config_run = run_config_step(run, index, step)
        if config_run is not None:
            started.append(config_run.pk)
    return started


TOOLS: dict[str, Callable[[Node, dict[str, Any]], str]] = {
    "ansible": lambda node, step: ansible.run_playbook(node, step, ACTOR),
    "salt": lambda node, step: _salt_state(node, step),
}


def _salt_state(node: Node, step: dict[str, Any]) -> str:
    api = salt.connect(ACTOR)
    if api is None:
        raise ConfigMgmtError("config_run with salt needs PUREBOOT_SALT_API_URL")
    return api.apply_state(inventory.inventory_name(node), step["state"], step["timeout"])


def run_config_step(run: WorkflowRun, index: int, step: dict[str, Any]) -> ConfigRun | None:
    """Run one step once; None when another worker claimed it first."""
    try:
        with transaction.atomic():
            # The node may have left installed/active since the due list was read.
            node = Node.objects.select_for_update().filter(pk=run.node_id).first()
            if node is None or node.state not in LIVE_STATES:
                return None
            config_run = ConfigRun.objects.create(
                node=node, workflow_run=run, step=index, tool=step["tool"]
            )
            audit.record(
                actor=ACTOR,
                action="configmgmt.config_run.start",
                object_type="nodes.node",
                object_id=node.pk,
                details={"run": run.pk, "step": index, "tool": step["tool"]},
            )
    except IntegrityError:
        return None
    workflows.mark_step(run.pk, index, StepStatus.RUNNING)
    try:
        output, ok = TOOLS[step["tool"]](node, step), True
    except PASS_ERRORS as exc:
        output, ok = str(exc), False
    except Exception:  # noqa: BLE001 - recorded as the run's failure, not lost in a worker log
        log.exception("config_run %s of node %s", step["tool"], node.pk)
        output, ok = f"config_run {step['tool']} failed unexpectedly; see the worker log", False
    status = RunStatus.SUCCEEDED if ok else RunStatus.FAILED
    with transaction.atomic():
        ConfigRun.objects.filter(pk=config_run.pk).update(
            status=status, output=output[-ansible.MAX_OUTPUT_CHARS :], finished_at=timezone.now()
        )
        NodeEvent.objects.create(
            node=node,
            kind=EventKind.REPORT,
            actor=ACTOR,
            from_state=node.state,
            to_state=node.state,
            message=f"config_run {step['tool']} {status}",
            details={"config_run": config_run.pk, "step": index},
        )
        audit.record(
            actor=ACTOR,
            action=f"configmgmt.config_run.{status}",
            object_type="nodes.node",
            object_id=node.pk,
            details={"run": run.pk, "step": index, "tool": step["tool"]},
        )
    workflows.mark_step(run.pk, index, StepStatus.DONE if ok else StepStatus.FAILED)
    config_run.refresh_from_db()
    return config_run


# --- registrations -----------------------------------------------------------
REINSTALL_STATES = (NodeState.INSTALLING, NodeState.REPROVISION)


def _latest_runs() -> dict[int, int]:
    """Each node's latest install (WorkflowRun id)."""
    rows = WorkflowRun.objects.values("node_id").annotate(latest=Max("pk"))
    return {row["node_id"]: row["latest"] for row in rows}


def _plan(system: str) -> tuple[list[Registration], list[Node]]:
    """(registrations whose entry must go, live nodes to register).

    An entry goes when its node was deleted, retired, is being reinstalled,
    was renamed, or was installed again since it was registered; a live
    named node is registered when it has no present registration (or its
    entry is going).
    """
    latest = _latest_runs()
    release: list[Registration] = []
    kept: set[int] = set()
    for registration in Registration.objects.filter(system=system, present=True).select_related(
        "node"
    ):
        node = registration.node
        gone = (
            node is None
            or node.state == NodeState.RETIRED
            or node.state in REINSTALL_STATES
            or node.hostname != registration.name
            or (
                registration.install_run is not None
                and latest.get(node.pk, registration.install_run) != registration.install_run
            )
        )
        if gone:
            release.append(registration)
        else:
            kept.add(node.pk)
    add = [
        n
        for n in Node.objects.exclude(hostname="").filter(state__in=LIVE_STATES).order_by("pk")
        if n.pk not in kept
    ]
    return release, add


def _audit(system: str, outcome: str, object_id: Any, name: str, error: str = "") -> None:
    audit.record(
        actor=ACTOR,
        action=f"configmgmt.{system}.{outcome}",
        object_type="nodes.node",
        object_id=object_id,
        message=error[:MAX_ERROR_CHARS],
        details={"name": name},
    )


def _record(
    node: Node,
    system: str,
    *,
    present: bool,
    error: str = "",
    key: str = "",
    preexisting: bool = False,
) -> None:
    """What registering ``node`` (under its host name) came to."""
    with transaction.atomic():
        registration, _ = Registration.objects.select_for_update().get_or_create(
            node=node, system=system, defaults={"name": node.hostname}
        )
        changed = registration.present != present
        registration.error = error[:MAX_ERROR_CHARS]
        if not error:
            registration.name = node.hostname
            registration.present = present
            registration.preexisting = preexisting
            registration.install_run = _latest_runs().get(node.pk)
            registration.client_key_ciphertext = credentials.encrypt(key) if key else ""
        registration.save()
        if changed or error:
            outcome = "failed" if error else ("registered" if present else "removed")
            _audit(system, outcome, node.pk, node.hostname, error)


def _released(registration: Registration, error: str = "") -> None:
    """Its entry is gone (or, with ``error``, could not be removed: retried next pass)."""
    with transaction.atomic():
        fresh = Registration.objects.select_for_update().get(pk=registration.pk)
        fresh.error = error[:MAX_ERROR_CHARS]
        if not error:
            fresh.present = False
            fresh.client_key_ciphertext = ""
        fresh.save()
        _audit(
            fresh.system,
            "failed" if error else "removed",
            fresh.node_id,
            fresh.name,
            error,
        )
        if not error and fresh.node_id is None:
            fresh.delete()


def _failed_pass(system: str, release: list[Registration], add: list[Node], error: str) -> None:
    """The system could not be reached: every registration it owes records why."""
    log.warning("%s: %s", system, error)
    for registration in release:
        _released(registration, error)
    for node in add:
        _record(node, system, present=False, error=error)


def sync_salt() -> dict[str, list[str]]:
    """Accept waiting keys of live nodes' minions; delete the keys PureBoot accepted that
    belong to retired, deleted, renamed or reinstalled nodes (by their registered name)."""
    release, add = _plan(System.SALT)
    done: dict[str, list[str]] = {"accepted": [], "deleted": [], "waiting": []}
    if not (add or release):
        return done
    try:
        api = salt.connect(ACTOR)
        if api is None:
            return done
    except PASS_ERRORS as exc:
        _failed_pass(System.SALT, release, add, str(exc))
        return done
    for registration in release:
        try:
            if not registration.preexisting:
                api.delete(registration.name)
                done["deleted"].append(registration.name)
            _released(registration)
        except PASS_ERRORS as exc:
            _released(registration, str(exc))
    try:
        keys = api.keys()
    except PASS_ERRORS as exc:
        _failed_pass(System.SALT, [], add, str(exc))
        return done
    accepted, waiting = set(keys.get("minions", [])), set(keys.get("minions_pre", []))
    for node in add:
        try:
            if node.hostname in waiting:
                api.accept(node.hostname)
                done["accepted"].append(node.hostname)
                _record(node, System.SALT, present=True)
            elif node.hostname in accepted:  # accepted before PureBoot looked: not ours
                _record(node, System.SALT, present=True, preexisting=True)
            else:
                done["waiting"].append(node.hostname)  # its minion has not asked yet
        except PASS_ERRORS as exc:
            _record(node, System.SALT, present=False, error=str(exc))
    return done


def sync_chef() -> dict[str, list[str]]:
    """Create a Chef node and client for live nodes; delete the pairs PureBoot created for
    retired, deleted, renamed or reinstalled nodes (by their registered name)."""
    release, add = _plan(System.CHEF)
    done: dict[str, list[str]] = {"created": [], "deleted": []}
    if not (add or release):
        return done
    try:
        server = chef.connect(ACTOR)
    except PASS_ERRORS as exc:
        _failed_pass(System.CHEF, release, add, str(exc))
        return done
    if server is None:
        return done
    for registration in release:
        try:
            if not registration.preexisting:
                server.delete_node(registration.name)
                server.delete_client(registration.name)
                done["deleted"].append(registration.name)
            _released(registration)
        except PASS_ERRORS as exc:
            _released(registration, str(exc))
    for node in add:
        try:
            created = server.create_node(node.hostname, inventory.host_facts(node))
            key = server.create_client(node.hostname)
            preexisting = not (created and key)
            _record(node, System.CHEF, present=True, key=key, preexisting=preexisting)
            done["created"].append(node.hostname)
        except PASS_ERRORS as exc:
            _record(node, System.CHEF, present=False, error=str(exc))
    return done


def rotate_sealed(reencrypt) -> int:
    """Re-encrypt stored Chef client keys under the primary key (for ``rotate_keys``)."""
    count = 0
    for registration in Registration.objects.select_for_update().exclude(client_key_ciphertext=""):
        fresh = reencrypt(
            registration.client_key_ciphertext, f"Chef client key of {registration.name}"
        )
        if fresh is not None:
            registration.client_key_ciphertext = fresh
            registration.save(update_fields=("client_key_ciphertext",))
            count += 1
    return count
