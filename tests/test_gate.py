"""Every four-eye service acts only on an approval sealed for exactly that action and target."""

from __future__ import annotations

import pytest
from django.db import transaction

from accounts import emergency
from audit import clearing
from credentials import services as credentials
from pureboot import gate
from systemsettings import config
from tests.factories import make_user, sealed, sealed_credential

pytestmark = pytest.mark.django_db


def test_a_forged_approval_is_refused():
    forged = gate.Approval(1, "setting.change", "setting:approval_hours", "4", ("x",), "nope")
    with pytest.raises(gate.InvalidApproval, match="not one PureBoot sealed"):
        config.apply("approval_hours", 5, "user:x", approval=forged)
    assert config.get("approval_hours") != 5


def test_an_altered_approval_is_refused():
    with transaction.atomic():
        good = sealed("setting.change", "setting:approval_hours", config.binding("approval_hours"))
    altered = gate.Approval(
        good.request_id,
        good.action,
        "setting:approvals_required",
        good.binding,
        good.approvers,
        good.signature,
    )
    with pytest.raises(gate.InvalidApproval, match="altered"):
        config.apply("approvals_required", 3, "user:x", approval=altered)


def test_an_approval_for_another_target_or_action_is_refused(credential):
    other = credentials.create_credential(
        "user:setup",
        {"name": "bmc-rack1", "kind": "bmc", "username": "root"},
        {},
        approval=sealed("credential.create", "credential:new:bmc-rack1", ""),
    )
    for_other = sealed_credential("credential.delete", other.pk)
    with pytest.raises(gate.InvalidApproval, match="not credential.delete on credential:"):
        credentials.delete_credential(credential.pk, "user:x", approval=for_other)
    change = sealed_credential("credential.change", credential.pk)
    with pytest.raises(gate.InvalidApproval, match="not credential.delete"):
        credentials.delete_credential(credential.pk, "user:x", approval=change)


def test_an_approval_for_a_target_that_changed_is_refused(credential):
    stale = sealed_credential("credential.change", credential.pk)
    credentials.update_credential(
        credential.pk,
        "user:x",
        {"description": "moved"},
        approval=sealed_credential("credential.change", credential.pk),
    )
    with pytest.raises(gate.InvalidApproval, match="changed since"):
        credentials.update_credential(credential.pk, "user:x", {"scope": "x"}, approval=stale)


def test_audit_clearing_and_emergency_grants_need_their_own_approval():
    user = make_user("Operator")
    wrong = sealed("access.grant", f"access:{user.pk + 1}", "active")
    with transaction.atomic(), pytest.raises(gate.InvalidApproval):
        emergency.grant(user.pk, "Admin", 1, None, "user:x", approval=wrong)
    with transaction.atomic(), pytest.raises(gate.InvalidApproval):
        clearing.clear_through(1, "user:x", approval=sealed("audit.clear", "audit:trail", "-1"))


@pytest.fixture
def credential(db, settings):
    settings.PUREBOOT_FERNET_KEYS = ["ZmVybmV0LWtleS1mb3ItdGVzdHMtb25seS0wMDAwMDA="]
    return credentials.create_credential(
        "user:setup",
        {"name": "ovirt-prod", "kind": "hypervisor", "username": "admin@internal"},
        {"password": "s3cret"},
        approval=sealed("credential.create", "credential:new:ovirt-prod", ""),
    )
