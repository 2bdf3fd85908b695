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


def test_every_action_tells_the_truth(client, world):
    user = _superuser()
    client.force_login(user)
    request = RequestFactory().get("/admin/")
    request.user = user
    ran = 0
    for model, model_admin in admin.site._registry.items():
        obj = model_admin.get_queryset(request).order_by("pk").first()
        if obj is None:
            continue
        opts = model._meta
        url = f"/admin/{opts.app_label}/{opts.model_name}/"
        for name in model_admin.get_actions(request):
            resp = client.post(
                url,
                {"action": name, "_selected_action": [obj.pk], "post": "yes"},
                follow=True,
            )
            assert resp.status_code < 500, (opts.label, name)
            said = " ".join(str(m) for m in get_messages(resp.wsgi_request))
            gone = not model._default_manager.filter(pk=obj.pk).exists()
            if not gone:
                assert "Successfully deleted" not in said, (opts.label, name, said)
            ran += 1
    assert ran >= 3


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
