"""The whole transition table, allowed and refused, through the service."""

import pytest
from django.core.exceptions import ValidationError

from audit.models import AuditEvent
from nodes import lifecycle as lc
from nodes import services
from nodes.choices import NodeState
from nodes.models import Node, NodeEvent
from tests.factories import make_node, make_user, make_workflow, perform_approved

EXPECTED = {
    # action: (sources, target) exactly as the lifecycle table in the issue
    "assign": ({"discovered", "failed"}, "pending"),
    "unassign": ({"pending"}, "discovered"),
    "start_install": ({"pending", "reprovision"}, "installing"),
    "complete_install": ({"installing"}, "installed"),
    "fail": ({"installing", "deprovisioning", "migrating"}, "failed"),
    "activate": ({"installed"}, "active"),
    "reprovision": ({"installed", "active", "failed"}, "reprovision"),
    "deprovision": ({"discovered", "installed", "active", "failed"}, "deprovisioning"),
    "migrate": ({"active"}, "migrating"),
    "receive_migration": ({"discovered"}, "migrating"),
    "complete_migration": ({"migrating"}, "active"),
    "release_hardware": ({"migrating"}, "discovered"),
    "cancel_migration": ({"migrating"}, "active"),
    "complete_wipe": ({"deprovisioning"}, "retired"),
    "retire": (set(NodeState.values) - {"retired"}, "retired"),
    "rediscover": ({"retired"}, "discovered"),
    "vm_deleted": (set(NodeState.values) - {"retired"}, "retired"),
}
SYSTEM_ONLY = {
    "start_install",
    "complete_install",
    "fail",
    "receive_migration",
    "complete_migration",
    "release_hardware",
    "complete_wipe",
    "vm_deleted",
}
CASES = [(a, s) for a in EXPECTED for s in NodeState.values]


def test_declarations_match_the_table():
    assert set(lc.ACTIONS) == set(EXPECTED)
    for name, (sources, target) in EXPECTED.items():
        assert set(lc.ACTIONS[name].sources) == sources, name
        assert lc.ACTIONS[name].target == target, name
    assert {a.name for a in lc.ACTIONS.values() if a.system_only} == SYSTEM_ONLY
    assert {a.name for a in lc.ACTIONS.values() if a.destructive} == {
        "reprovision",
        "deprovision",
        "migrate",
        "retire",
    }


def _params(action):
    if action == "migrate":
        return {"target": make_node("discovered").pk}
    return {"workflow": make_workflow()} if action == "assign" else {}


@pytest.mark.django_db
@pytest.mark.parametrize("action,state", CASES)
def test_transition_table_as_system(action, state):
    node = make_node(state)
    sources, target = EXPECTED[action]
    if state in sources and lc.ACTIONS[action].needs_second_person(state, node.ever_installed):
        # Destructive: a person requests, another approves; never the system alone.
        with pytest.raises(services.TransitionForbidden, match="needs a person"):
            services.perform(node.pk, action, services.SYSTEM, reason="t", **_params(action))
        node.refresh_from_db()
        assert node.state == state
        assert not NodeEvent.objects.filter(node=node, kind="transition").exists()
    elif state in sources:
        result = services.perform(node.pk, action, services.SYSTEM, reason="t", **_params(action))
        assert result.state == target
        node.refresh_from_db()
        assert node.state == target
        event = NodeEvent.objects.get(node=node, kind="transition")
        assert (event.from_state, event.to_state, event.actor) == (state, target, "system")
        audit = AuditEvent.objects.get(object_type="nodes.node", action=f"node.{action}")
        assert audit.changes["state"] == {"before": state, "after": target}
        assert audit.object_id == str(node.pk)
    else:
        with pytest.raises(services.IllegalTransition) as exc:
            services.perform(node.pk, action, services.SYSTEM, **_params(action))
        assert exc.value.current == state
        node.refresh_from_db()
        assert node.state == state
        assert not NodeEvent.objects.filter(node=node, kind="transition").exists()
        assert not AuditEvent.objects.filter(action=f"node.{action}").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("action", sorted(SYSTEM_ONLY))
def test_people_cannot_perform_system_transitions(action):
    admin = make_user("Admin")
    superuser = make_user()
    superuser.is_superuser = True
    superuser.save()
    state = sorted(EXPECTED[action][0])[0]
    node = make_node(state)
    for person in (admin, superuser):
        with pytest.raises(services.TransitionForbidden):
            services.perform(node.pk, action, services.Actor.of(person))
    node.refresh_from_db()
    assert node.state == state


@pytest.mark.django_db
def test_state_field_is_protected():
    node = make_node()
    with pytest.raises(AttributeError):
        node.state = "active"


@pytest.mark.django_db
def test_assign_needs_a_workflow_and_sets_it():
    node = make_node()
    with pytest.raises(ValidationError) as exc:
        services.perform(node.pk, "assign", services.SYSTEM)
    assert "workflow" in exc.value.message_dict
    wf = make_workflow(name="debian-12")
    node = services.perform(node.pk, "assign", services.SYSTEM, workflow=wf)
    assert node.workflow == wf
    node = services.perform(node.pk, "unassign", services.SYSTEM)
    assert node.workflow is None


@pytest.mark.django_db
def test_install_attempts_counted_and_reset_by_reprovision():
    wf = make_workflow()
    node = make_node()
    services.perform(node.pk, "assign", services.SYSTEM, workflow=wf)
    node = services.perform(node.pk, "start_install", services.SYSTEM)
    assert node.install_attempts == 1
    services.perform(node.pk, "complete_install", services.SYSTEM)
    node = perform_approved(node.pk, "reprovision", make_user("Admin"), make_user("Admin"))
    assert node.install_attempts == 0
    node = services.perform(node.pk, "start_install", services.SYSTEM)
    assert node.install_attempts == 1


@pytest.mark.django_db
def test_unknown_action_and_stray_parameters_are_refused():
    node = make_node()
    with pytest.raises(ValidationError):
        services.perform(node.pk, "explode", services.SYSTEM)
    with pytest.raises(ValidationError) as exc:
        services.perform(node.pk, "retire", services.SYSTEM, workflow=make_workflow())
    assert "workflow" in exc.value.message_dict


@pytest.mark.django_db
def test_fail_stuck_installs_fails_only_old_installs():
    from datetime import timedelta

    from django.utils import timezone

    old = make_node("installing")
    fresh = make_node("installing")
    other = make_node("pending")
    Node.objects.filter(pk__in=[old.pk, other.pk]).update(
        state_changed_at=timezone.now() - timedelta(hours=5)
    )
    assert services.fail_stuck_installs(timeout_minutes=60) == [old.pk]
    assert Node.objects.get(pk=old.pk).state == "failed"
    assert Node.objects.get(pk=fresh.pk).state == "installing"
    assert Node.objects.get(pk=other.pk).state == "pending"
    event = NodeEvent.objects.get(node=old, kind="transition")
    assert event.actor == "system" and "60 minutes" in event.message


def test_docs_lifecycle_matches_code():
    from pathlib import Path

    from nodes.lifecycle_doc import render

    doc = Path(__file__).resolve().parents[2] / "docs" / "lifecycle.md"
    assert doc.read_text() == render(), "run: python manage.py lifecycle_doc > docs/lifecycle.md"


@pytest.mark.django_db
def test_transition_is_atomic_with_its_audit_entry(monkeypatch):
    node = make_node()

    def broken(**kwargs):
        raise RuntimeError("audit store unavailable")

    monkeypatch.setattr(services.audit, "record", broken)
    with pytest.raises(RuntimeError):
        services.perform(node.pk, "retire", services.SYSTEM)
    node.refresh_from_db()
    assert node.state == "discovered"
    assert not NodeEvent.objects.filter(node=node, kind="transition").exists()
