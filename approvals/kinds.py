"""What can be asked for: every action that needs a second person.

Each kind says who may ask and approve (``permission``), how to read its
target now (``current``, compared at execution with the request's
``snapshot``), what the approval will do in plain words (``describe``) and
how to do it (``execute``, inside the request's transaction; its return
value is stored as the request's result).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import CharField, Q
from django.db.models.functions import Cast

from accounts import emergency
from accounts import services as accounts
from audit import clearing
from credentials import services as credentials
from nodes import lifecycle as lc
from nodes import migration as node_migration
from nodes import services as node_services
from nodes.models import Node
from nodes.permissions import can_access_node, scope_nodes
from pureboot.gate import Approval
from systemsettings import config
from workflows import domainjoin
from workflows.models import OfflineJoin, Workflow

if TYPE_CHECKING:
    from .models import ApprovalRequest


@dataclass(frozen=True)
class Kind:
    name: str
    label: str
    target_type: str
    permission: str
    describe: Callable[[ApprovalRequest], str]
    current: Callable[[ApprovalRequest], str]
    # Runs the approved action with the sealed approval (see pureboot.gate).
    execute: Callable[[ApprovalRequest, dict[str, str], str, str, Approval], str]
    # Beyond the permission: why this user may not decide this request, or None.
    approver_check: Callable[[ApprovalRequest, Any], str | None] | None = None
    # Checks a request's parameters when it is made (raises ValidationError).
    check: Callable[[ApprovalRequest], None] | None = None
    # Which of this kind's requests a holder of its permission sees (a Q on
    # ApprovalRequest, e.g. the targets of their sites); None: all of them.
    visible_to: Callable[[Any], Q] | None = None


def approved_reason(request: ApprovalRequest, approvers: str) -> str:
    """The reason an executed request passes on to the audit trail."""
    return f"{request.reason} (request #{request.pk}, approved by {approvers})".strip()


def _fields_words(request: ApprovalRequest) -> str:
    fields = request.params.get("fields", {})
    return ", ".join(f"{k}={v!r}" for k, v in fields.items()) or "no fields"


# --- node actions -------------------------------------------------------------

NODE_WORDS = {
    "deprovision": "At its next network boot it starts the PureBoot agent (once "
    "manage.py build_agent has imported one for its architecture; until then it boots its "
    "own disk and nothing is wiped), which lists its "
    "disks and sanitizes every one of them ({category}), then reads each disk back to prove "
    "it; PureBoot signs a wipe certificate per disk and the node becomes {after}. Everything "
    "on its disks is lost. If a disk cannot be wiped as asked, or the read-back finds data, "
    "the node fails with the reason and nothing more is written.",
    "reprovision": "It will be installed again; what is on its disk now is lost.",
    "retire": "It will no longer be answered by PureBoot.",
    "migrate": "Its system moves to {target}. At their next network boots both machines "
    "start the PureBoot agent (once manage.py build_agent has imported one for their "
    "architecture; until then nothing moves). The agent on this machine copies {disk} over "
    "iSCSI (CHAP, only this machine's address admitted) to a temporary LUN on the controller "
    "and checks the copy by SHA-256; this machine's disk is only read. The agent on {target} "
    "checks that one of its disks is large enough, overwrites that disk with the copy "
    "(everything on it is lost) and checks it by SHA-256. Then this node's name, workflow, "
    "site, credentials and DHCP entry move to the new machine, which becomes active and boots "
    "the copied system; the old machine is handed back as a discovered node holding the old "
    "system, and a deprovision request is filed for it (its wipe needs its own approval). The "
    "LUN is deleted. If any step fails, this node goes back to active on its own machine, "
    "untouched, and the other machine is failed with the reason.",
    "assign": "PureBoot installed this machine before: assigning a workflow installs it "
    "again, and what is on its disk now is lost.",
}


CATEGORY_WORDS = {
    "best": "by the strongest method each disk offers: a NIST SP 800-88 Purge command where "
    "the disk has one, otherwise Clear by overwriting every block",
    "purge": "by NIST SP 800-88 Purge only: a disk without a Purge command fails the wipe "
    "before anything is written",
    "clear": "by the strongest method each disk offers, at least NIST SP 800-88 Clear",
}


def _node_words(action: str, params: dict) -> str:
    words = NODE_WORDS.get(action, "")
    if action == "deprovision":
        category = params.get("category") or "best"
        after = params.get("after") or "retired"
        after_words = "retired" if after == "retired" else "discovered again, ready for reuse"
        return words.format(category=CATEGORY_WORDS.get(category, category), after=after_words)
    if action == "migrate":
        target = Node.objects.filter(pk=params.get("target")).prefetch_related("interfaces").first()
        target_words = (
            f"node {target} (#{target.pk}, MAC "
            f"{', '.join(i.mac for i in target.interfaces.all()) or 'none'})"
            if target
            else f"node #{params.get('target')} (gone)"
        )
        disk = params.get("disk")
        disk_words = f"the disk matching {disk!r}" if disk else "its only disk"
        return words.format(target=target_words, disk=disk_words)
    return words


def _node_kind(action: lc.Action) -> Kind:
    def describe(request: ApprovalRequest) -> str:
        return (
            f"{action.label} node {request.target_label} (#{request.node_id}): "
            f"{request.node_state} → {action.target}. {_node_words(action.name, request.params)}"
        ).strip()

    def execute(
        request: ApprovalRequest, secrets: dict, requester: str, approvers: str, approval: Approval
    ) -> str:
        params = dict(request.params)
        if "workflow" in params:
            params["workflow"] = Workflow.objects.get(name=params["workflow"])
        node_services.perform(
            request.node_id,
            action.name,
            node_services.Actor.of(_requester(request)),
            reason=approved_reason(request, approvers),
            approval=approval,
            **params,
        )
        return f"{action.name}: node {request.node_id} {request.node_state} -> {action.target}"

    return Kind(
        name=action.name,
        label=action.label,
        target_type="node",
        permission=action.permission,
        describe=describe,
        current=_node_binding,
        execute=execute,
        approver_check=_node_site,
    )


def _node_binding(request: ApprovalRequest) -> str:
    """The node's state and identities now, under its row lock (a migration's: both
    machines' rows, locked in id order as every migration path locks them)."""
    target = request.params.get("target")
    if request.action == lc.MIGRATE.name and isinstance(target, int):
        node_migration.lock_nodes(request.node_id, target)
    node = Node.objects.select_for_update(of=("self",)).get(pk=request.node_id)
    return node_migration.approval_binding(node, request.action, request.params)


def _requester(request: ApprovalRequest):
    return get_user_model().objects.get(pk=request.requested_by_id)


def _node_site(request: ApprovalRequest, user) -> str | None:
    if not can_access_node(user, request.node):
        return f"You have no access to node {request.node_id}'s site."
    if request.action == lc.MIGRATE.name:
        # A migration hands the node to another machine: the approver sees both.
        target = Node.objects.filter(pk=request.params.get("target")).first()
        if target is None or not can_access_node(user, target):
            return "You have no access to the site of the machine this migration moves onto."
    return None


def _identity_change() -> Kind:
    def describe(request: ApprovalRequest) -> str:
        params = request.params
        words = [f"fields {_fields_words(request)}"] if params.get("fields") else []
        if params.get("interfaces") is not None:
            macs = ", ".join(str(i.get("mac")) for i in params["interfaces"]) or "none"
            words.append(f"interfaces: {macs}")
        return (
            f"Change what node {request.target_label} (#{request.node_id}, "
            f"{request.node_state}) is recognised by: {'; '.join(words)}. The machine "
            "presenting these identities will boot what this node is given."
        )

    def execute(
        request: ApprovalRequest, secrets: dict, requester: str, approvers: str, approval: Approval
    ) -> str:
        params = request.params
        node_services.update_node(
            request.node_id,
            node_services.Actor.of(_requester(request)),
            node_services.fields_from_json(params.get("fields") or {}),
            params.get("interfaces"),
            params.get("tags"),
            approval=approval,
        )
        return f"node {request.node_id}: identities changed, approved by {approvers}"

    return Kind(
        name=lc.IDENTITY_CHANGE,
        label="Change node identity",
        target_type="node",
        permission="nodes.change_node",
        describe=describe,
        current=_node_binding,
        execute=execute,
        approver_check=_node_site,
    )


# --- credentials ----------------------------------------------------------------


def _secret_words(request: ApprovalRequest) -> str:
    names = request.params.get("secrets_set", [])
    return f" Secrets set: {', '.join(names)} (values sealed, never shown)." if names else ""


def _credential_create() -> Kind:
    def current(request: ApprovalRequest) -> str:
        return credentials.name_binding(request.params["fields"]["name"])

    def execute(
        request: ApprovalRequest, secrets: dict, requester: str, approvers: str, approval: Approval
    ) -> str:
        made = credentials.create_credential(
            requester, request.params["fields"], secrets, approval=approval
        )
        return f"credential {made.name} created (#{made.pk}), approved by {approvers}"

    return Kind(
        name="credential.create",
        label="Create credential",
        target_type="credential",
        permission="credentials.add_credential",
        describe=lambda r: (
            f"Create credential {r.target_label} with {_fields_words(r)}.{_secret_words(r)}"
        ),
        current=current,
        execute=execute,
    )


def _credential_change() -> Kind:
    def execute(
        request: ApprovalRequest, secrets: dict, requester: str, approvers: str, approval: Approval
    ) -> str:
        credentials.update_credential(
            int(request.target_id),
            requester,
            request.params.get("fields", {}),
            secrets,
            approval=approval,
        )
        return f"credential {request.target_label} changed, approved by {approvers}"

    return Kind(
        name="credential.change",
        label="Change credential",
        target_type="credential",
        permission="credentials.change_credential",
        describe=lambda r: (
            f"Change credential {r.target_label}: {_fields_words(r)}.{_secret_words(r)}"
        ),
        current=lambda r: credentials.binding(r.target_id),
        execute=execute,
    )


def _credential_delete() -> Kind:
    def execute(
        request: ApprovalRequest, secrets: dict, requester: str, approvers: str, approval: Approval
    ) -> str:
        credentials.delete_credential(int(request.target_id), requester, approval=approval)
        return f"credential {request.target_label} deleted, approved by {approvers}"

    return Kind(
        name="credential.delete",
        label="Delete credential",
        target_type="credential",
        permission="credentials.delete_credential",
        describe=lambda r: (
            f"Delete credential {r.target_label}; what uses it can no longer sign in with it."
        ),
        current=lambda r: credentials.binding(r.target_id),
        execute=execute,
    )


# --- system settings, audit trail, emergency access --------------------------------


def _setting_change() -> Kind:
    def current(request: ApprovalRequest) -> str:
        return config.binding(request.target_id)

    def execute(
        request: ApprovalRequest, secrets: dict, requester: str, approvers: str, approval: Approval
    ) -> str:
        return config.apply(
            request.target_id,
            request.params["value"],
            requester,
            reason=approved_reason(request, approvers),
            approval=approval,
        )

    def check(request: ApprovalRequest) -> None:
        if request.target_id != "approval_windows":
            return
        unknown = sorted(set(request.params["value"]) - set(KINDS))
        if unknown:
            raise ValidationError(
                {"value": f"Unknown action {unknown[0]!r}; known: {', '.join(KINDS)}."}
            )

    return Kind(
        name="setting.change",
        label="Change system setting",
        target_type="setting",
        permission="systemsettings.change_systemsetting",
        describe=lambda r: (
            f"Set {r.target_id} from {json.loads(r.snapshot)!r} to {r.params['value']!r}."
        ),
        current=current,
        execute=execute,
        check=check,
    )


def _audit_clear() -> Kind:
    def current(request: ApprovalRequest) -> str:
        return clearing.binding()

    def execute(
        request: ApprovalRequest, secrets: dict, requester: str, approvers: str, approval: Approval
    ) -> str:
        return clearing.clear_through(
            request.params["through_seq"],
            requester,
            approval=approval,
            reason=approved_reason(request, approvers),
        )

    return Kind(
        name="audit.clear",
        label="Clear audit trail",
        target_type="audit",
        permission="audit.clear_auditevent",
        describe=lambda r: (
            f"Export audit events {r.snapshot} to {r.params['through_seq']} to a file with "
            "their chain hashes, delete them from the database and leave a checkpoint event "
            "so audit_verify still proves the rest."
        ),
        current=current,
        execute=execute,
    )


def _access_grant() -> Kind:
    def current(request: ApprovalRequest) -> str:
        return emergency.binding(request.target_id)

    def execute(
        request: ApprovalRequest, secrets: dict, requester: str, approvers: str, approval: Approval
    ) -> str:
        params = request.params
        return emergency.grant(
            int(request.target_id),
            params["role"],
            params["hours"],
            request,
            requester,
            approval=approval,
        )

    def not_the_grantee(request: ApprovalRequest, user) -> str | None:
        if str(user.pk) == request.target_id:
            return "You cannot approve emergency access for yourself."
        return None

    return Kind(
        name="access.grant",
        label="Emergency access",
        target_type="access",
        permission="accounts.grant_emergency_access",
        describe=lambda r: (
            f"Give {r.target_label} the {r.params['role']} role for {r.params['hours']} hours "
            "from approval; it ends by itself."
        ),
        current=current,
        execute=execute,
        approver_check=not_the_grantee,
    )


def _role_grant() -> Kind:
    def current(request: ApprovalRequest) -> str:
        user = get_user_model().objects.select_for_update().filter(pk=request.target_id).first()
        return accounts.binding(user) if user is not None else "deleted"

    def execute(
        request: ApprovalRequest, secrets: dict, requester: str, approvers: str, approval: Approval
    ) -> str:
        added = accounts.set_roles(
            int(request.target_id),
            request.params["roles"],
            requester,
            requester=_requester(request),
            reason=approved_reason(request, approvers),
            approval=approval,
        )
        return (
            f"{request.target_label}: roles now {', '.join(request.params['roles']) or 'none'}"
            + (f" (added {', '.join(sorted(added))})" if added else "")
        )

    def not_the_grantee(request: ApprovalRequest, user) -> str | None:
        if str(user.pk) == request.target_id:
            return "You cannot approve a role for yourself."
        return None

    return Kind(
        name=accounts.ROLE_CHANGE,
        label="Give a role that can approve",
        target_type="user",
        permission="accounts.grant_role",
        describe=lambda r: (
            f"Give {r.target_label} the roles {', '.join(r.params['roles']) or 'none'}: they "
            "can then approve other people's requests (after the cooling-off period)."
        ),
        current=current,
        execute=execute,
        approver_check=not_the_grantee,
    )


# --- Windows: Active Directory computer accounts --------------------------------


def _computer_remove() -> Kind:
    def describe(request: ApprovalRequest) -> str:
        join = OfflineJoin.objects.filter(pk=request.target_id).first()
        if join is None:
            return f"Delete computer account {request.target_label} (its record is gone)."
        return (
            f"Delete computer account {join.machine_name} (node #{join.node_id}) from "
            f"{join.domain}, if it is still the computer account in "
            f"{domainjoin.ou_dn(join.ou, join.domain)}; the machine can then no longer sign "
            "in to the domain."
        )

    def execute(
        request: ApprovalRequest, secrets: dict, requester: str, approvers: str, approval: Approval
    ) -> str:
        done = domainjoin.remove_computer_account(
            int(request.target_id), requester, approval=approval
        )
        return f"{done}, approved by {approvers}"

    def approver_check(request: ApprovalRequest, user) -> str | None:
        join = OfflineJoin.objects.select_related("node").filter(pk=request.target_id).first()
        if join is None or not can_access_node(user, join.node):
            return "You have no access to this computer's node's site."
        return None

    def visible_to(user) -> Q:
        joins = OfflineJoin.objects.filter(node__in=scope_nodes(user))
        return Q(target_id__in=joins.annotate(text_id=Cast("pk", CharField())).values("text_id"))

    return Kind(
        name=domainjoin.REMOVE_ACTION,
        label="Delete AD computer account",
        target_type="offline_join",
        permission="workflows.remove_computer_account",
        describe=describe,
        current=lambda r: domainjoin.removal_binding(r.target_id),
        execute=execute,
        approver_check=approver_check,
        visible_to=visible_to,
    )


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        *(_node_kind(a) for a in lc.ACTIONS.values() if a.may_need_second_person),
        _identity_change(),
        _credential_create(),
        _credential_change(),
        _credential_delete(),
        _setting_change(),
        _audit_clear(),
        _access_grant(),
        _role_grant(),
        _computer_remove(),
    )
}


def register(kind: Kind) -> Kind:
    """Add the kind of an app above this one (its ``approval_kinds`` module, found
    at start-up like ``admin.py``): approvals executes it without importing it."""
    if kind.name in KINDS:
        raise ValueError(f"approval kind {kind.name!r} is declared twice")
    KINDS[kind.name] = kind
    return kind
