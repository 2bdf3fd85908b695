"""The admin shows the trail read-only: no add, change or delete."""

from __future__ import annotations

import pytest

from audit.services import record

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_with_event(client, admin_user):
    client.force_login(admin_user)
    event = record(actor="user:alice", action="node.create", object_type="nodes.node", object_id=5)
    return client, event


def test_changelist_and_search(admin_client_with_event):
    client, _ = admin_client_with_event
    response = client.get("/admin/audit/auditevent/", {"q": "alice"})
    assert response.status_code == 200
    assert b"nodes.node:5" in response.content


def test_detail_is_read_only(admin_client_with_event):
    client, event = admin_client_with_event
    url = f"/admin/audit/auditevent/{event.pk}/change/"
    response = client.get(url)
    assert response.status_code == 200
    assert b'name="actor"' not in response.content  # shown, not editable
    assert client.post(url, {"actor": "user:mallory"}).status_code == 403


def test_add_and_delete_are_refused(admin_client_with_event):
    client, event = admin_client_with_event
    assert client.get("/admin/audit/auditevent/add/").status_code == 403
    assert client.get(f"/admin/audit/auditevent/{event.pk}/delete/").status_code == 403
