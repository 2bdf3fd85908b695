"""No second person is a sock puppet.

Red team: a superuser created a second account and approved their own request
with it; an Admin alone rediscovered a retired, installed machine and assigned
it a workflow (a reinstall with no second person).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts import services as accounts
from accounts.models import ApproverStanding
from accounts.roles import APPROVER_ROLES, ROLES
from approvals import services as approvals
from approvals.kinds import KINDS
from approvals.models import ApprovalRequest
from audit.models import AuditEvent
from nodes import services as node_services
from nodes.models import Node
from pureboot import gate
from tests.factories import make_node, make_user, make_workflow, perform_approved

pytestmark = pytest.mark.django_db


def _ask_reprovision(user) -> ApprovalRequest:
    node = make_node("installed")
    with pytest.raises(node_services.ApprovalRequired) as exc:
        node_services.perform(node.pk, "reprovision", node_services.Actor.of(user), reason="r")
    return approvals.file(exc.value.proposal, user)


def test_a_fresh_second_account_cannot_approve_even_a_superusers_request():
    boss = make_user("Admin")
    boss.is_superuser = True
    boss.save()
    puppet = User.objects.create_superuser("puppet", password="pw-long-enough-1")
    puppet.groups.add(Group.objects.get(name="Admin"))
    request = _ask_reprovision(boss)
    with pytest.raises(approvals.NotAllowed, match="cooling-off"):
        approvals.approve(request.pk, User.objects.get(pk=puppet.pk))
    assert ApprovalRequest.objects.get(pk=request.pk).status == "pending"


def test_cooling_off_counts_from_the_last_promotion_and_is_a_setting(settings):
    requester = make_user("Admin")
    veteran = make_user("Admin")  # joined 30 days ago
    ApproverStanding.objects.create(user=veteran, since=timezone.now() - timedelta(hours=2))
    request = _ask_reprovision(requester)
    with pytest.raises(approvals.NotAllowed, match="cooling-off"):
        approvals.approve(request.pk, veteran)
    settings.PUREBOOT_APPROVER_COOLING_OFF_HOURS = 1
    approvals.approve(request.pk, veteran)
    assert ApprovalRequest.objects.get(pk=request.pk).status == "executed"


def test_before_two_approvers_a_role_is_given_only_on_the_host():
    admin = make_user("Admin")
    newcomer = make_user()
    with pytest.raises(gate.Forbidden, match="grant_role"):
        accounts.set_roles(newcomer.pk, ["Operator"], "user:x", requester=admin)
    assert accounts.roles_of(newcomer) == set()
    call_command("grant_role", newcomer.username, "Operator", reason="second on-call")
    assert accounts.roles_of(newcomer) == {"Operator"}
    event = AuditEvent.objects.filter(action="auth.roles_changed").latest("seq")
    assert event.actor.startswith("host:") and event.details["from_host"] is True
    assert ApproverStanding.objects.filter(user=newcomer).exists()


def test_with_two_approvers_a_role_grant_is_a_four_eye_request():
    alice, bob, _carol = make_user("Admin"), make_user("Admin"), make_user("Operator")
    newcomer = make_user()
    with pytest.raises(gate.ApprovalRequired) as exc:
        accounts.set_roles(newcomer.pk, ["Admin"], "user:alice", requester=alice)
    assert accounts.roles_of(newcomer) == set()
    request = approvals.file(exc.value.proposal, alice)
    assert request.action == "role.grant"
    with pytest.raises(approvals.NotAllowed):
        approvals.approve(request.pk, alice)  # not your own
    approvals.approve(request.pk, bob)
    request.refresh_from_db()
    assert request.status == "executed", request.result
    assert accounts.roles_of(newcomer) == {"Admin"}
    # ... and the host command no longer hands out approving roles.
    other = make_user()
    with pytest.raises(CommandError, match="Two people can approve"):
        call_command("grant_role", other.username, "Auditor")


def test_nobody_approves_a_role_for_themselves():
    alice, _bob = make_user("Admin"), make_user("Admin")
    newcomer = make_user()
    newcomer.groups.add(Group.objects.get(name="User"))
    with pytest.raises(gate.ApprovalRequired) as exc:
        accounts.set_roles(newcomer.pk, ["User", "Auditor"], "user:alice", requester=alice)
    request = approvals.file(exc.value.proposal, alice)
    newcomer.groups.add(Group.objects.get(name="Admin"))  # say they were an admin already
    reason = approvals.can_decide(request, User.objects.get(pk=newcomer.pk))
    assert reason and "yourself" in reason


def test_taking_roles_away_needs_nobody_else():
    admin = make_user("Admin")
    leaving = make_user("Operator")
    accounts.set_roles(leaving.pk, [], "user:admin", requester=admin)
    assert accounts.roles_of(leaving) == set()


def test_the_admin_user_form_never_edits_groups_or_superuser_directly(client):
    admin = make_user("Admin")
    admin.is_staff = admin.is_superuser = True
    admin.save()
    _second = make_user("Admin")
    victim = make_user()
    client.force_login(admin)
    resp = client.post(
        f"/admin/auth/user/{victim.pk}/change/",
        {
            "username": victim.username,
            "is_active": "on",
            "is_superuser": "on",
            "groups": [Group.objects.get(name="Admin").pk],
            "roles": ["Admin"],
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        },
        follow=True,
    )
    assert resp.status_code == 200
    victim.refresh_from_db()
    assert not victim.is_superuser
    assert accounts.roles_of(victim) == set()
    request = ApprovalRequest.objects.get(action="role.grant", target_id=str(victim.pk))
    assert request.status == "pending"


def test_every_approvable_kind_is_decided_only_by_approver_roles():
    from accounts.roles import ROLES as role_perms

    for kind in KINDS.values():
        holders = {role for role, perms in role_perms.items() if kind.permission in perms}
        assert holders <= set(APPROVER_ROLES), (kind.name, holders)
    assert set(APPROVER_ROLES) < set(ROLES)


def test_reassigning_a_machine_that_was_ever_installed_needs_a_second_person():
    admin, other = make_user("Admin"), make_user("Admin")
    node = make_node("active")
    perform_approved(node.pk, "retire", admin, other)
    node_services.perform(node.pk, "rediscover", node_services.Actor.of(admin))
    workflow = make_workflow()
    with pytest.raises(node_services.ApprovalRequired):
        node_services.perform(node.pk, "assign", node_services.Actor.of(admin), workflow=workflow)
    assert Node.objects.get(pk=node.pk).state == "discovered"
    perform_approved(node.pk, "assign", admin, other, workflow=workflow)
    assert Node.objects.get(pk=node.pk).state == "pending"


def test_a_never_installed_machine_is_assigned_at_once():
    admin = make_user("Admin")
    node = make_node("discovered")
    node_services.perform(
        node.pk, "assign", node_services.Actor.of(admin), workflow=make_workflow()
    )
    assert Node.objects.get(pk=node.pk).state == "pending"


def test_completing_an_install_marks_the_machine_ever_installed():
    node = make_node("installing")
    node_services.perform(node.pk, "complete_install", node_services.SYSTEM)
    assert Node.objects.get(pk=node.pk).ever_installed


def test_a_role_request_reads_plainly_on_its_page_and_in_the_api(client, api):
    alice, bob, _carol = make_user("Admin"), make_user("Admin"), make_user("Admin")
    newcomer = make_user(username="newcomer")
    with pytest.raises(gate.ApprovalRequired) as exc:
        accounts.set_roles(newcomer.pk, ["Operator"], "user:alice", requester=alice)
    request = approvals.file(exc.value.proposal, alice)
    client.force_login(bob)
    page = client.get(f"/approvals/{request.pk}/")
    assert page.status_code == 200 and "newcomer" in page.content.decode()
    body = api(bob).get(f"/api/v1/approvals/{request.pk}").json()
    assert body["action"] == "role.grant" and "Operator" in body["what"]
