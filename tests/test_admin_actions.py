"""Every admin action reports what actually happened.

Red team: an admin bulk delete of a protected credential reported
"Successfully deleted" (the delete had only become an approval request). This
runs every action of every registered admin on an object of its model, and
checks that a success message about deleting is given only for what is gone.
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.messages import get_messages
from django.test import RequestFactory
from django.utils import timezone

from credentials import services as credentials
from credentials.models import Credential
from tests.factories import make_node, make_user, make_workflow, sealed

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(site_a, settings):
    settings.PUREBOOT_FERNET_KEYS = ["ZmVybmV0LWtleS1mb3ItdGVzdHMtb25seS0wMDAwMDA="]
    make_node("installed", site=site_a, hostname="kept01")  # the site is in use
    make_workflow("wf-one")
    credentials.create_credential(
        "user:setup",
        {"name": "bmc-rack1", "kind": "bmc", "username": "root"},
        {"password": "s3cret"},
        approval=sealed("credential.create", "credential:new:bmc-rack1", ""),
    )
    make_user("Admin")  # a second approver exists


def _superuser():
    user = make_user("Admin", username="root-admin")
    user.is_staff = user.is_superuser = True
    user.save()
    return user


def _said(resp) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in get_messages(resp.wsgi_request)]


def test_every_action_tells_the_truth(client, world):
    """Each action of each registered admin, confirmed, on an object of its model:
    what is gone is reported deleted; what is kept is never reported deleted, and
    the answer says why (a message, or the admin's "Cannot delete" page naming
    what protects it) instead of a bare refusal."""
    user = _superuser()
    client.force_login(user)
    request = RequestFactory().get("/admin/")
    request.user = user
    ran = set()
    for model, model_admin in admin.site._registry.items():
        obj = model_admin.get_queryset(request).exclude(pk=user.pk).order_by("pk").first()
        if obj is None:
            continue
        opts = model._meta
        url = f"/admin/{opts.app_label}/{opts.model_name}/"
        for name in model_admin.get_actions(request):
            if not model._default_manager.filter(pk=obj.pk).exists():
                break
            resp = client.post(
                url,
                {"action": name, "_selected_action": [obj.pk], "post": "yes"},
                follow=True,
            )
            where = (opts.label, name)
            assert resp.status_code == 200, where  # never a bare 403 or a 500
            said = _said(resp)
            gone = not model._default_manager.filter(pk=obj.pk).exists()
            if gone:
                assert any(level == "success" for level, _ in said), (where, said)
            else:
                assert not any("Successfully deleted" in text for _, text in said), where
                explained = any(level in ("error", "warning") for level, _ in said)
                assert explained or "Cannot delete" in resp.content.decode(), (where, said)
            ran.add(opts.label)
    assert {"auth.Group", "auth.User", "credentials.Credential", "nodes.Site"} <= ran


def test_a_bulk_delete_of_role_groups_says_which_were_refused_and_why(client, world):
    from django.contrib.auth.models import Group

    client.force_login(_superuser())
    role, spare = Group.objects.get(name="Operator"), Group.objects.create(name="spare")
    selected = {"action": "delete_selected", "_selected_action": [role.pk, spare.pk]}
    resp = client.post("/admin/auth/group/", selected, follow=True)
    assert resp.status_code == 200
    said = " ".join(text for _, text in _said(resp))
    assert "Not deleted: Operator: a role's group is never deleted" in said
    assert b"spare" in resp.content and b"Are you sure" in resp.content  # the rest: confirm
    resp = client.post(
        "/admin/auth/group/",
        {"action": "delete_selected", "_selected_action": [spare.pk], "post": "yes"},
        follow=True,
    )
    assert "Successfully deleted 1 group." in " ".join(text for _, text in _said(resp))
    assert Group.objects.filter(pk=role.pk).exists()
    assert not Group.objects.filter(pk=spare.pk).exists()
    only_roles = {"action": "delete_selected", "_selected_action": [role.pk], "post": "yes"}
    resp = client.post("/admin/auth/group/", only_roles, follow=True)
    assert resp.status_code == 200 and Group.objects.filter(pk=role.pk).exists()
    assert any(level == "error" for level, _ in _said(resp))


@pytest.mark.parametrize("outcome", ["in use", "archived"])
def test_a_workflow_delete_reports_what_the_service_did(client, world, monkeypatch, outcome):
    """The admin's confirmation can be overtaken (a node assigned in between): the
    service then refuses or archives, and the admin must not say "deleted"."""
    from django.contrib.admin.models import DELETION, LogEntry

    from workflows import admin as workflow_admin
    from workflows.models import Workflow
    from workflows.services import WorkflowInUse

    workflow = Workflow.objects.get(name="wf-one")

    def overtaken(workflow_id, actor):
        if outcome == "in use":
            raise WorkflowInUse(workflow, [41])
        Workflow.objects.filter(pk=workflow_id).update(archived_at=timezone.now())
        return "archived"

    monkeypatch.setattr(workflow_admin, "delete_workflow", overtaken)
    client.force_login(_superuser())
    resp = client.post(
        f"/admin/workflows/workflow/{workflow.pk}/delete/", {"post": "yes"}, follow=True
    )
    said = " ".join(text for _, text in _said(resp))
    assert resp.status_code == 200 and "deleted successfully" not in said
    assert "Not deleted" in said and Workflow.objects.filter(pk=workflow.pk).exists()
    assert not LogEntry.objects.filter(action_flag=DELETION, object_id=str(workflow.pk)).exists()


def test_a_workflow_delete_that_happens_says_so(client, world):
    from workflows.models import Workflow

    workflow = Workflow.objects.get(name="wf-one")
    client.force_login(_superuser())
    resp = client.post(
        f"/admin/workflows/workflow/{workflow.pk}/delete/", {"post": "yes"}, follow=True
    )
    assert "was deleted successfully" in " ".join(text for _, text in _said(resp))
    assert not Workflow.objects.filter(pk=workflow.pk).exists()


def test_a_credential_bulk_delete_says_it_waits_for_approval(client, world):
    client.force_login(_superuser())
    credential = Credential.objects.get()
    resp = client.post(
        "/admin/credentials/credential/",
        {"action": "ask_to_delete", "_selected_action": [credential.pk]},
        follow=True,
    )
    said = " ".join(str(m) for m in get_messages(resp.wsgi_request))
    assert "waits for a second person" in said and "nothing is changed" in said
    assert Credential.objects.filter(pk=credential.pk).exists()
    actions = client.get("/admin/credentials/credential/").content.decode()
    assert 'value="delete_selected"' not in actions
