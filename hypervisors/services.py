"""Hypervisor connections: who sees them, registering, changing and removing
them, and queuing the calls PureBoot makes to them (run by
:mod:`hypervisors.operations` in a Celery worker)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from celery import current_app
from cryptography import x509
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from audit import services as audit
from nodes.permissions import accessible_sites, can_access_site, sees_all_sites
from nodes.transitions import SYSTEM, Actor, TransitionForbidden
from pureboot import gate

from .choices import IN_PROGRESS, OperationKind, VMStatus
from .drivers import Capability, Missing, base
from .drivers import driver_class as _driver_class
from .models import Hypervisor, HypervisorOperation, VirtualMachine

EDITABLE = (
    "name",
    "type",
    "endpoint",
    "site",
    "credential",
    "verify_tls",
    "ca_certificate",
    "options",
    "sync_interval_minutes",
)
DELETE = "hypervisor.delete"
CHANGE = "hypervisor.change_connection"
# Where and how PureBoot connects: changing them on a hypervisor with a
# credential or VMs is four-eye (update_hypervisor).
CONNECTION_FIELDS = ("type", "endpoint", "credential", "verify_tls", "ca_certificate")
MAX_REASON = 1000


class CapabilityMissing(TransitionForbidden):
    """The hypervisor's driver cannot do what was asked (HTTP 409)."""


def scope(user, queryset: QuerySet | None = None) -> QuerySet:
    """The hypervisors ``user`` may see: all for all-sites holders, else their sites'."""
    qs = Hypervisor.objects.all() if queryset is None else queryset
    if sees_all_sites(user):
        return qs
    return qs.filter(site__in=accessible_sites(user))


def can_access(user, hypervisor: Hypervisor) -> bool:
    return can_access_site(user, hypervisor.site) if hypervisor.site_id else sees_all_sites(user)


def driver_class(hypervisor: Hypervisor) -> type[base.Driver]:
    try:
        return _driver_class(hypervisor.type)
    except KeyError:
        raise ValidationError({"type": f"No driver for {hypervisor.type!r} is built."}) from None
    except Missing as exc:
        raise ValidationError({"type": str(exc)}) from None


def capabilities(hypervisor: Hypervisor) -> list[str]:
    return sorted(c.value for c in driver_class(hypervisor).capabilities)


def require(hypervisor: Hypervisor, capability: Capability) -> None:
    """Refuse (409) what the hypervisor's driver cannot do, naming both."""
    driver = driver_class(hypervisor)
    if capability not in driver.capabilities:
        raise CapabilityMissing(
            f"{driver.label} hypervisor {hypervisor.name!r} cannot {capability.value}: "
            f"its driver offers {', '.join(sorted(c.value for c in driver.capabilities))}."
        )


def check_person(actor: Actor, permission: str, hypervisor: Hypervisor | None = None) -> None:
    """A person needs ``permission`` and, with ``hypervisor``, access to its site
    (TransitionForbidden otherwise); the system acts as the lifecycle lets it."""
    if not actor.is_person:
        return
    if not actor.user.has_perm(permission):
        raise TransitionForbidden(f"You do not have permission {permission}.")
    if hypervisor is not None and not can_access(actor.user, hypervisor):
        raise TransitionForbidden("You have no access to this hypervisor's site.")


def _clean(hypervisor: Hypervisor) -> None:
    driver = driver_class(hypervisor)
    if not isinstance(hypervisor.options, dict):
        raise ValidationError({"options": "A JSON object of driver options."})
    unknown = sorted(set(hypervisor.options or {}) - set(driver.options))
    if unknown:
        known = ", ".join(sorted(driver.options)) or "none"
        raise ValidationError(
            {"options": f"Unknown option {unknown[0]!r} for {driver.label}; its options: {known}."}
        )
    if not all(isinstance(v, str | int | bool) for v in (hypervisor.options or {}).values()):
        raise ValidationError({"options": "Option values are text, numbers or true/false."})
    if (
        any(len(str(v)) > 1000 for v in (hypervisor.options or {}).values())
        or len(hypervisor.options or {}) > 50
    ):
        raise ValidationError({"options": "At most 50 options of at most 1000 characters."})
    hypervisor.full_clean()
    _check_endpoint(hypervisor)
    _check_ca(hypervisor.ca_certificate)


def _check_endpoint(hypervisor: Hypervisor) -> None:
    """No password in the endpoint, and a credential only for the endpoint it names.

    A credential's ``scope`` says where it may be sent: the endpoint must start
    with it. Setting a credential's scope is a four-eye change, so nobody alone
    can send a stored password to an endpoint of their choosing.
    """
    endpoint = hypervisor.endpoint.strip()
    if any(c.isspace() or ord(c) < 32 for c in endpoint):
        raise ValidationError({"endpoint": "No spaces or control characters."})
    try:
        parsed = urlsplit(endpoint)
    except ValueError:
        raise ValidationError({"endpoint": "Not a valid URL or libvirt URI."}) from None
    if not parsed.scheme:
        raise ValidationError({"endpoint": "A URL (https://…) or a libvirt URI (qemu:///system)."})
    if parsed.password is not None:
        raise ValidationError(
            {"endpoint": "Put the password in a credential, not in the endpoint."}
        )
    if parsed.username is not None and hypervisor.type != "libvirt":
        # Only libvirt's SSH URIs name a login in the URI (user@host).
        raise ValidationError({"endpoint": "No user@ in the endpoint: the credential names it."})
    try:
        parsed.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValidationError({"endpoint": "The port is not a number."}) from None
    credential = hypervisor.credential
    if credential is not None:
        check_scope(credential, endpoint)
        if not hypervisor.verify_tls and parsed.scheme.lower() == "https":
            raise ValidationError(
                {
                    "verify_tls": "With a stored credential TLS is verified: give the "
                    "endpoint's CA in ca_certificate instead of turning verification off."
                }
            )


def _place(url: str) -> tuple:
    parts = urlsplit(url.strip())
    return (
        parts.scheme.lower(),
        parts.username,
        (parts.hostname or "").lower(),
        parts.port,
    )


def check_scope(credential, endpoint: str) -> None:
    """Refuse (ValidationError) to send ``credential`` anywhere but where its scope says.

    The scope and the endpoint must have the same scheme, login, host and port
    (compared parsed, not as text: ``vc.example.com.evil.net`` is another host),
    and the endpoint's path must be the scope's path or below it. Setting a
    credential's scope is a four-eye change, so nobody alone can send a stored
    password to an endpoint of their choosing. Checked when a hypervisor is
    saved and again before each call reveals the secret.
    """
    scope = credential.scope.strip()
    if not scope:
        raise ValidationError(
            {
                "credential": f"Credential {credential.name} has no scope: set its scope to this "
                "hypervisor's endpoint first (a four-eye change), so its secret is only ever "
                "sent there."
            }
        )
    try:
        same_place = _place(scope) == _place(endpoint)
        base_path = urlsplit(scope).path.rstrip("/")
        path = urlsplit(endpoint.strip()).path
    except ValueError:
        same_place = False
    inside = same_place and (not base_path or path == base_path or path.startswith(base_path + "/"))
    if not inside:
        raise ValidationError(
            {
                "credential": f"Credential {credential.name} may be sent only to {scope!r} "
                "(same scheme, host and port, that path or below)."
            }
        )


def _check_ca(pem: str) -> None:
    if not pem.strip():
        return
    try:
        found = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        found = []
    if not found:
        raise ValidationError({"ca_certificate": "Not a PEM certificate (or bundle)."})


def _values(hypervisor: Hypervisor) -> dict[str, Any]:
    values = {f: getattr(hypervisor, f) for f in EDITABLE}
    values["site"] = hypervisor.site_id
    values["credential"] = hypervisor.credential_id
    return values


def create_hypervisor(actor: Actor, fields: dict[str, Any]) -> Hypervisor:
    """Register a hypervisor and queue its first sync; validates or saves nothing."""
    hypervisor = Hypervisor(**{k: v for k, v in fields.items() if k in EDITABLE})
    if actor.is_person and not can_access_site(actor.user, hypervisor.site):
        raise TransitionForbidden("You may not register hypervisors at that site.")
    check_person(actor, "hypervisors.add_hypervisor")
    _clean(hypervisor)
    try:
        with transaction.atomic():
            hypervisor.save()
            _created(hypervisor, actor)
    except IntegrityError:
        raise ValidationError({"name": "A hypervisor with this name exists."}) from None
    return hypervisor


def _created(hypervisor: Hypervisor, actor: Actor) -> None:
    audit.record(
        actor=actor.label,
        action="hypervisor.create",
        object_type="hypervisors.hypervisor",
        object_id=hypervisor.pk,
        changes={k: {"before": None, "after": v} for k, v in _values(hypervisor).items()},
    )
    queue(hypervisor, OperationKind.SYNC, actor)


def connection_binding(hypervisor: Hypervisor) -> str:
    """What a connection-change approval is bound to: the connection as it is now."""
    return gate.binding(
        {
            "id": hypervisor.pk,
            **{f: getattr(hypervisor, f) for f in CONNECTION_FIELDS if f != "credential"},
            "credential": hypervisor.credential_id,
            "vms": live_vms(hypervisor).count(),
        }
    )


def update_hypervisor(
    pk: int,
    actor: Actor,
    fields: dict[str, Any],
    *,
    reason: str = "",
    approval: gate.Approval | None = None,
) -> Hypervisor:
    """Change a hypervisor. Changing where and how PureBoot connects (type,
    endpoint, credential, TLS) of one that holds a credential or VMs is four-eye:
    it decides where a stored secret goes, and which machine a VM id names."""
    with transaction.atomic():
        hypervisor = Hypervisor.objects.select_for_update().get(pk=pk)
        check_person(actor, "hypervisors.change_hypervisor", hypervisor)
        before = _values(hypervisor)
        bound_to = connection_binding(hypervisor)
        guarded = bool(hypervisor.credential_id) or live_vms(hypervisor).exists()
        for name, value in fields.items():
            if name in EDITABLE:
                setattr(hypervisor, name, value)
        if hypervisor.type != before["type"] and hypervisor.vms.exists():
            raise ValidationError(
                {"type": "It has VMs on record: register the other platform as a new hypervisor."}
            )
        if actor.is_person and not can_access_site(actor.user, hypervisor.site):
            raise TransitionForbidden("You may not move hypervisors to that site.")
        _clean(hypervisor)
        moved = {f: _values(hypervisor)[f] for f in CONNECTION_FIELDS
                 if _values(hypervisor)[f] != before[f]}  # fmt: skip
        if moved:
            decide(
                actor,
                gate.Proposal(CHANGE, "hypervisor", str(pk), moved, reason, hypervisor.name),
                permission="hypervisors.change_hypervisor",
                four_eye=guarded,
                bound_to=bound_to,
                approval=approval,
            )
        try:
            with transaction.atomic():
                hypervisor.save()
        except IntegrityError:
            raise ValidationError({"name": "A hypervisor with this name exists."}) from None
        after = _values(hypervisor)
        changes = {k: {"before": before[k], "after": v} for k, v in after.items() if before[k] != v}
        if changes:
            audit.record(
                actor=actor.label,
                action="hypervisor.update",
                object_type="hypervisors.hypervisor",
                object_id=hypervisor.pk,
                changes=changes,
            )
    return hypervisor


def binding(hypervisor: Hypervisor) -> str:
    """What a removal approval is bound to: the endpoint and the nodes on it."""
    nodes = sorted(hypervisor.vms.exclude(node=None).values_list("node_id", flat=True))
    return gate.binding(
        {
            "id": hypervisor.pk,
            "type": hypervisor.type,
            "endpoint": hypervisor.endpoint,
            "nodes": nodes,
        }
    )


def delete_hypervisor(
    pk: int, actor: Actor, *, reason: str = "", approval: gate.Approval | None = None
) -> str:
    """Forget a hypervisor (its VMs stay on the platform). With nodes on it,
    a second person must approve (``gate.ApprovalRequired``)."""
    with transaction.atomic():
        hypervisor = Hypervisor.objects.select_for_update().get(pk=pk)
        if actor.is_person and not can_access(actor.user, hypervisor):
            raise TransitionForbidden("You have no access to this hypervisor's site.")
        nodes = list(hypervisor.vms.exclude(node=None).values_list("node_id", flat=True))
        decide(
            actor,
            gate.Proposal(DELETE, "hypervisor", str(pk), {"nodes": nodes}, reason, hypervisor.name),
            permission="hypervisors.delete_hypervisor",
            four_eye=bool(nodes),
            bound_to=binding(hypervisor),
            approval=approval,
        )
        name = hypervisor.name
        VirtualMachine.objects.filter(hypervisor=hypervisor).delete()
        hypervisor.delete()
        audit.record(
            actor=actor.label,
            action=DELETE,
            object_type="hypervisors.hypervisor",
            object_id=pk,
            message=reason[:MAX_REASON],
            details={"name": name, "nodes": nodes, **_approval_details(approval)},
        )
    return f"hypervisor {name} removed; the VMs of nodes {nodes or 'none'} stay on the platform"


def decide(
    actor: Actor,
    proposal: gate.Proposal,
    *,
    permission: str,
    four_eye: bool,
    bound_to: str,
    approval: gate.Approval | None,
) -> None:
    """Ask the gate whether ``actor`` may do ``proposal`` now; raises
    ``gate.ApprovalRequired`` (carrying the proposal) when a second person must
    approve, ``TransitionForbidden`` when the actor may not."""
    try:
        verdict = gate.decide(
            actor.user,
            action=proposal.action,
            target=f"{proposal.target_type}:{proposal.target_id}",
            permission=permission,
            four_eye=four_eye,
            bound_to=bound_to,
            approval=approval,
            system=not actor.is_person,
        )
    except gate.Forbidden as exc:
        raise TransitionForbidden(str(exc)) from exc
    if verdict is gate.NEEDS_APPROVAL:
        raise gate.ApprovalRequired(proposal)


def _approval_details(approval: gate.Approval | None) -> dict[str, Any]:
    if approval is None:
        return {}
    return {"approval_request": approval.request_id, "approved_by": list(approval.approvers)}


# --- operations ----------------------------------------------------------------


def queue(
    hypervisor: Hypervisor,
    kind: str,
    actor: Actor = SYSTEM,
    *,
    vm: VirtualMachine | None = None,
    params: dict[str, Any] | None = None,
) -> HypervisorOperation:
    """Record a call to make and have a worker make it once this transaction commits."""
    operation = HypervisorOperation.objects.create(
        hypervisor=hypervisor,
        vm=vm,
        kind=kind,
        # The endpoint it was asked for: the worker refuses to run it elsewhere.
        params={**(params or {}), "endpoint": hypervisor.endpoint},
        actor=actor.label,
        requested_by=actor.user,
    )
    run = current_app.signature("hypervisors.run_operation", args=[operation.pk])
    transaction.on_commit(run.delay, robust=True)
    return operation


def request_sync(hypervisor_id: int, actor: Actor) -> HypervisorOperation:
    with transaction.atomic():
        hypervisor = Hypervisor.objects.select_for_update().get(pk=hypervisor_id)
        check_person(actor, "hypervisors.sync_hypervisor", hypervisor)
        busy = hypervisor.operations.filter(
            kind=OperationKind.SYNC,
            status__in=IN_PROGRESS,
        ).first()
        if busy is not None:
            return busy  # one sync at a time: the queued one reads everything anyway
        return queue(hypervisor, OperationKind.SYNC, actor)


def due_for_sync(now=None) -> list[int]:
    """Hypervisors whose periodic sync is due (and none is queued)."""
    now = now or timezone.now()
    due = []
    for hypervisor in Hypervisor.objects.filter(sync_interval_minutes__gt=0):
        last = hypervisor.last_sync_at
        if last and (now - last).total_seconds() < hypervisor.sync_interval_minutes * 60:
            continue
        due.append(hypervisor.pk)
    return due


def live_vms(hypervisor: Hypervisor) -> QuerySet:
    return hypervisor.vms.exclude(status=VMStatus.DELETED)
