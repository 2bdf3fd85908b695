"""Running the calls PureBoot makes to hypervisors (inside a Celery worker).

Each :class:`~hypervisors.models.HypervisorOperation` is run by
:func:`run`: the credential is revealed for that call only (audited as the
task), the driver called, and the outcome stored. A transient failure (the
endpoint unreachable, a timeout, the platform busy) is retried with
exponential backoff by :func:`retry_due` (a periodic task), up to
``PUREBOOT_HYPERVISOR_MAX_ATTEMPTS``; a permanent one (bad credentials, a
certificate that does not verify, a missing template, a quota) stops at once
with its reason on the operation, the VM and the node's history.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from audit import services as audit
from credentials import services as credentials
from nodes import services as node_services
from nodes.choices import NodeState
from nodes.transitions import SYSTEM

from . import services
from . import sync as inventory_sync
from .choices import Health, OperationKind, OperationStatus, VMStatus
from .drivers import base
from .history import node_note
from .models import Hypervisor, HypervisorOperation, VirtualMachine

log = logging.getLogger(__name__)

FINAL = (OperationStatus.SUCCEEDED, OperationStatus.FAILED)


def connection(hypervisor: Hypervisor, operation: HypervisorOperation) -> base.Connection:
    """The driver's connection, with the credential revealed for this call only."""
    asked_at = operation.params.get("endpoint")
    if asked_at is not None and asked_at != hypervisor.endpoint:
        raise base.PermanentError(
            f"the hypervisor's endpoint changed since this was asked ({asked_at} -> "
            f"{hypervisor.endpoint}): ask again"
        )
    username = password = token = ""
    if hypervisor.credential_id:
        try:
            services.check_scope(hypervisor.credential, hypervisor.endpoint)
        except ValidationError as exc:
            raise base.AuthenticationFailed(
                "; ".join(m for ms in exc.message_dict.values() for m in ms)
            ) from None
        secret = credentials.reveal(
            hypervisor.credential_id,
            f"task:hypervisors.run_operation#{operation.pk}",
            f"{operation.get_kind_display()} on hypervisor {hypervisor.name}",
        )
        username, password, token = secret.username, secret.password, secret.private_key
    return base.Connection(
        endpoint=hypervisor.endpoint,
        username=username,
        password=password,
        token=token,
        verify_tls=hypervisor.verify_tls,
        ca_pem=hypervisor.ca_certificate,
        timeout=float(settings.PUREBOOT_HYPERVISOR_TIMEOUT),
        options=dict(hypervisor.options or {}),
    )


@contextmanager
def driver_for(hypervisor: Hypervisor, operation: HypervisorOperation) -> Iterator[base.Driver]:
    driver = services.driver_class(hypervisor)(connection(hypervisor, operation))
    try:
        yield driver
    finally:
        driver.close()


def _claim(operation_id: int) -> HypervisorOperation | None:
    with transaction.atomic():
        operation = (
            HypervisorOperation.objects.select_for_update(of=("self",))
            .select_related("hypervisor", "vm")
            .filter(pk=operation_id)
            .first()
        )
        if operation is None or operation.status in FINAL:
            return None
        if operation.status == OperationStatus.RUNNING and not _lost(operation):
            return None  # another worker has it
        operation.status = OperationStatus.RUNNING
        operation.attempts += 1
        operation.started_at = timezone.now()
        operation.save(update_fields=["status", "attempts", "started_at"])
        return operation


def _lost(operation: HypervisorOperation) -> bool:
    # Past the task's hard limit and a margin: the worker that had it is gone
    # (Celery killed it); before that it may still be inside a blocking call.
    limit = timedelta(seconds=settings.PUREBOOT_HYPERVISOR_TASK_LIMIT + 300)
    return operation.started_at is None or timezone.now() - operation.started_at > limit


def run(operation_id: int) -> str:
    """Run one operation; returns its status afterwards."""
    operation = _claim(operation_id)
    if operation is None:
        return "skipped"
    handler = HANDLERS[operation.kind]
    try:
        with driver_for(operation.hypervisor, operation) as driver:
            result = handler(driver, operation)
    except base.HypervisorError as exc:
        return _failed(operation, exc)
    except credentials.CredentialError as exc:
        return _failed(operation, base.AuthenticationFailed(f"credential: {exc}"))
    except Exception as exc:  # a driver bug must not leave the operation running forever
        log.exception("hypervisor operation %s crashed", operation.pk)
        return _failed(operation, base.PermanentError(f"internal error: {type(exc).__name__}"))
    with transaction.atomic():
        # Fenced by the attempt this worker claimed: a worker taken for lost and
        # overtaken by another records nothing.
        HypervisorOperation.objects.filter(pk=operation.pk, attempts=operation.attempts).update(
            status=OperationStatus.SUCCEEDED,
            result=result or {},
            error="",
            error_code="",
            finished_at=timezone.now(),
        )
        _health(operation.hypervisor, Health.OK, "")
    return OperationStatus.SUCCEEDED


def _failed(operation: HypervisorOperation, exc: base.HypervisorError) -> str:
    message = str(exc)[:4000]
    retry = exc.transient and operation.attempts < settings.PUREBOOT_HYPERVISOR_MAX_ATTEMPTS
    status = OperationStatus.RETRYING if retry else OperationStatus.FAILED
    with transaction.atomic():
        HypervisorOperation.objects.filter(pk=operation.pk, attempts=operation.attempts).update(
            status=status,
            error=message,
            error_code=exc.code,
            finished_at=None if retry else timezone.now(),
        )
        # Reachability and sign-in are the hypervisor's health; a missing
        # template or a quota is the operation's own failure.
        if isinstance(exc, base.TransientError | base.AuthenticationFailed | base.TLSFailed):
            _health(
                operation.hypervisor,
                Health.UNREACHABLE if exc.transient else Health.FAILED,
                message,
            )
        if not retry:
            FAILED_HOOKS.get(operation.kind, _nothing)(operation, message)
    return status


def _nothing(operation: HypervisorOperation, message: str) -> None:
    pass


def _health(hypervisor: Hypervisor, health: str, message: str) -> None:
    Hypervisor.objects.filter(pk=hypervisor.pk).update(
        health=health, health_message=message, last_error=message
    )


def backoff(attempts: int) -> timedelta:
    """Seconds to wait after ``attempts`` tries: 30 s doubling, at most 30 minutes."""
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 1800))


def retry_due(now=None) -> list[int]:
    """Operation ids to run again: retrying ones whose backoff elapsed, and
    running ones whose worker died (older than the task limit)."""
    now = now or timezone.now()
    due = []
    for operation in HypervisorOperation.objects.filter(
        status__in=(OperationStatus.RETRYING, OperationStatus.RUNNING, OperationStatus.QUEUED)
    ).only("pk", "status", "attempts", "started_at", "created_at"):
        if operation.status == OperationStatus.RETRYING:
            started = operation.started_at or operation.created_at
            if now - started >= backoff(operation.attempts):
                due.append(operation.pk)
        elif operation.status == OperationStatus.RUNNING and _lost(operation):
            due.append(operation.pk)
        elif operation.status == OperationStatus.QUEUED and now - operation.created_at > timedelta(
            minutes=5
        ):
            due.append(operation.pk)  # its queue message was lost
    return due


# --- what each kind does ----------------------------------------------------------


def _sync(driver: base.Driver, operation: HypervisorOperation) -> dict[str, Any]:
    health = driver.health()
    found = driver.inventory()
    return inventory_sync.apply(operation.hypervisor, health, found)


def _create(driver: base.Driver, operation: HypervisorOperation) -> dict[str, Any]:
    vm = VirtualMachine.objects.get(pk=operation.vm_id)
    if not vm.platform_id:
        made = driver.create_vm(inventory_sync.spec_of(vm))
        with transaction.atomic():
            VirtualMachine.objects.filter(pk=vm.pk).update(
                platform_id=made.id[:200],
                status=VMStatus.PRESENT,
                power=made.power,
                macs=list(made.macs)[:16],
                host=made.host[:200],
                error="",
                last_seen_at=timezone.now(),
            )
            vm.platform_id = made.id[:200]
            node_note(
                vm,
                f"VM created on {operation.hypervisor.name} (id {made.id})",
                actor=operation.actor,
                id=made.id,
            )
            audit.record(
                actor=operation.actor,
                action="vm.create",
                object_type="hypervisors.virtualmachine",
                object_id=vm.pk,
                details={
                    "hypervisor": operation.hypervisor.name,
                    "platform_id": made.id,
                    "node": vm.node_id,
                    "operation": operation.pk,
                },
            )
    # A retry after a transient failure resumes here: the VM exists already.
    if operation.params.get("power_on"):
        driver.power(vm.platform_id, base.PowerAction.ON)
        state = driver.power_state(vm.platform_id)
        VirtualMachine.objects.filter(pk=vm.pk).update(power=state)
        node_note(vm, "VM powered on: it network-boots PureBoot", actor=operation.actor)
    return {"platform_id": vm.platform_id}


def _create_failed(operation: HypervisorOperation, message: str) -> None:
    vm = VirtualMachine.objects.get(pk=operation.vm_id)
    if vm.platform_id:
        # It was made; only a later step failed: it stays usable (power, delete).
        VirtualMachine.objects.filter(pk=vm.pk).update(status=VMStatus.PRESENT, error=message)
        node_note(vm, f"VM made, but not powered on: {message}", actor=operation.actor)
        return
    VirtualMachine.objects.filter(pk=vm.pk).update(status=VMStatus.FAILED, error=message)
    node_note(vm, f"VM creation failed: {message}", actor=operation.actor)


def _power(driver: base.Driver, operation: HypervisorOperation) -> dict[str, Any]:
    vm = operation.vm
    action = base.PowerAction(operation.params["action"])
    driver.power(vm.platform_id, action)
    state = driver.power_state(vm.platform_id)
    with transaction.atomic():
        VirtualMachine.objects.filter(pk=vm.pk).update(power=state, last_seen_at=timezone.now())
        node_note(vm, f"VM power {action.value}: now {state.value}", actor=operation.actor)
    return {"power": state.value}


def _delete(driver: base.Driver, operation: HypervisorOperation) -> dict[str, Any]:
    vm = operation.vm
    try:
        driver.delete_vm(vm.platform_id)
    except base.NotFound:
        pass  # gone already: what was asked is true
    with transaction.atomic():
        VirtualMachine.objects.filter(pk=vm.pk).update(
            status=VMStatus.DELETED, power="stopped", last_seen_at=timezone.now()
        )
        node_note(vm, f"VM deleted from {operation.hypervisor.name}", actor=operation.actor)
        if vm.managed and vm.node_id and vm.node.state != NodeState.RETIRED:
            # The machine is gone: its node is retired with it (system-only action).
            node_services.perform(
                vm.node_id,
                "vm_deleted",
                SYSTEM,
                reason=f"its VM was deleted from {operation.hypervisor.name} "
                f"(operation #{operation.pk})",
            )
        audit.record(
            actor=operation.actor,
            action="vm.deleted",
            object_type="hypervisors.virtualmachine",
            object_id=vm.pk,
            details={
                "hypervisor": operation.hypervisor.name,
                "platform_id": vm.platform_id,
                "node": vm.node_id,
                "operation": operation.pk,
            },
        )
    return {"deleted": vm.platform_id}


def _delete_failed(operation: HypervisorOperation, message: str) -> None:
    VirtualMachine.objects.filter(pk=operation.vm_id, status=VMStatus.DELETING).update(
        status=VMStatus.PRESENT, error=message
    )
    node_note(operation.vm, f"VM deletion failed: {message}", actor=operation.actor)


def _migrate(driver: base.Driver, operation: HypervisorOperation) -> dict[str, Any]:
    vm = operation.vm
    driver.migrate_vm(vm.platform_id, operation.params["host"])
    moved = driver.get_vm(vm.platform_id)
    VirtualMachine.objects.filter(pk=vm.pk).update(host=moved.host, power=moved.power)
    node_note(vm, f"VM live-migrated to {moved.host}", actor=operation.actor)
    return {"host": moved.host}


def _ha(driver: base.Driver, operation: HypervisorOperation) -> dict[str, Any]:
    vm = operation.vm
    enabled = bool(operation.params["enabled"])
    driver.set_ha(vm.platform_id, enabled)
    VirtualMachine.objects.filter(pk=vm.pk).update(ha=enabled)
    node_note(vm, f"VM high availability {'on' if enabled else 'off'}", actor=operation.actor)
    return {"ha": enabled}


HANDLERS: dict[str, Callable[[base.Driver, HypervisorOperation], dict[str, Any]]] = {
    OperationKind.SYNC: _sync,
    OperationKind.CREATE: _create,
    OperationKind.POWER: _power,
    OperationKind.DELETE: _delete,
    OperationKind.MIGRATE: _migrate,
    OperationKind.HA: _ha,
}
FAILED_HOOKS: dict[str, Callable[[HypervisorOperation, str], None]] = {
    OperationKind.CREATE: _create_failed,
    OperationKind.DELETE: _delete_failed,
}
