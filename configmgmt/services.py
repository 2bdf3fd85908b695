"""The reconcile loop: after-install config runs, Salt keys and Chef registrations.

One periodic task (``configmgmt.reconcile``, every minute) compares the
lifecycle with the outside systems and closes the gap, so a transition
never waits for (or fails because of) Salt, Chef or a playbook:

- every ``config_run`` step of a node's latest install that succeeded in
  the last day runs once, when the node is ``installed`` or ``active``;
- Salt (PUREBOOT_SALT_API_URL): the waiting key of an installed or active
  node's minion (its id is the node's host name) is accepted; the key of a
  retired node's minion is deleted;
- Chef (PUREBOOT_CHEF_SERVER_URL): an installed or active node gets a Chef
  node and API client; a retired node's are deleted.

Each change is on the audit trail with the actor ``task:configmgmt.reconcile``;
failures are kept on the Registration / ConfigRun for operators and retried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import services as audit
from credentials import services as credentials
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


def reconcile() -> dict[str, Any]:
    """One pass of every integration; what it did, for the task's result and tests."""
    return {"config_runs": run_due_config_steps(), "salt": sync_salt(), "chef": sync_chef()}


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
    node = run.node
    try:
        with transaction.atomic():
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
    except ConfigMgmtError as exc:
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
def _wanted(system: str) -> tuple[list[Node], list[Node]]:
    """(nodes to register, registered nodes to remove) that differ from what is recorded."""
    present = set(
        Registration.objects.filter(system=system, present=True).values_list("node_id", flat=True)
    )
    named = Node.objects.exclude(hostname="").order_by("pk")
    add = [n for n in named.filter(state__in=LIVE_STATES) if n.pk not in present]
    remove = list(named.filter(state=NodeState.RETIRED, pk__in=present))
    return add, remove


def _record(node: Node, system: str, *, present: bool, error: str = "", key: str = "") -> None:
    with transaction.atomic():
        registration, _ = Registration.objects.select_for_update().get_or_create(
            node=node, system=system, defaults={"name": node.hostname}
        )
        changed = registration.present != present
        registration.name = node.hostname
        registration.present = present
        registration.error = error[:MAX_ERROR_CHARS]
        if key or not present:
            registration.client_key_ciphertext = credentials.encrypt(key)
        registration.save()
        if changed or error:
            audit.record(
                actor=ACTOR,
                action=f"configmgmt.{system}."
                + ("failed" if error else ("registered" if present else "removed")),
                object_type="nodes.node",
                object_id=node.pk,
                message=error[:MAX_ERROR_CHARS],
                details={"name": node.hostname},
            )


def sync_salt() -> dict[str, list[str]]:
    """Accept waiting keys of live nodes' minions, delete retired nodes' keys."""
    add, remove = _wanted(System.SALT)
    done: dict[str, list[str]] = {"accepted": [], "deleted": [], "waiting": []}
    if not (add or remove):
        return done
    try:
        api = salt.connect(ACTOR)
        if api is None:
            return done
        keys = api.keys()
    except ConfigMgmtError as exc:
        log.warning("salt-api: %s", exc)
        return done
    accepted, waiting = set(keys.get("minions", [])), set(keys.get("minions_pre", []))
    every = set().union(*keys.values()) if keys else set()
    for node in add:
        try:
            if node.hostname in waiting:
                api.accept(node.hostname)
                done["accepted"].append(node.hostname)
            elif node.hostname not in accepted:
                done["waiting"].append(node.hostname)  # its minion has not asked yet
                continue
            _record(node, System.SALT, present=True)
        except ConfigMgmtError as exc:
            _record(node, System.SALT, present=False, error=str(exc))
    for node in remove:
        try:
            if node.hostname in every:
                api.delete(node.hostname)
                done["deleted"].append(node.hostname)
            _record(node, System.SALT, present=False)
        except ConfigMgmtError as exc:
            _record(node, System.SALT, present=True, error=str(exc))
    return done


def sync_chef() -> dict[str, list[str]]:
    """Create a Chef node and client for live nodes; delete retired nodes' pair."""
    add, remove = _wanted(System.CHEF)
    done: dict[str, list[str]] = {"created": [], "deleted": []}
    if not (add or remove):
        return done
    try:
        server = chef.connect(ACTOR)
    except ConfigMgmtError as exc:
        log.warning("Chef: %s", exc)
        return done
    if server is None:
        return done
    for node in add:
        try:
            server.create_node(node.hostname, inventory.host_vars(node))
            key = server.create_client(node.hostname)
            _record(node, System.CHEF, present=True, key=key)
            done["created"].append(node.hostname)
        except ConfigMgmtError as exc:
            _record(node, System.CHEF, present=False, error=str(exc))
    for node in remove:
        try:
            server.delete_node(node.hostname)
            server.delete_client(node.hostname)
            _record(node, System.CHEF, present=False)
            done["deleted"].append(node.hostname)
        except ConfigMgmtError as exc:
            _record(node, System.CHEF, present=True, error=str(exc))
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
