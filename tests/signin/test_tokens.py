"""Tokens die with trust: a password change, deactivation or a role taken away ends
that user's JWT access and refresh tokens and sessions at once.

Red team: JWT access and refresh tokens kept working after the password changed.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.contrib.sessions.models import Session

from accounts import services as accounts
from audit.models import AuditEvent
from tests.factories import make_user

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery-9"


@pytest.fixture
def olivia():
    user = make_user("Operator", username="olivia")
    user.set_password(PASSWORD)
    user.save()
    return User.objects.get(pk=user.pk)


def _tokens(client, password=PASSWORD):
    resp = client.post(
        "/api/v1/auth/token",
        {"username": "olivia", "password": password},
        content_type="application/json",
    )
    assert resp.status_code == 200, resp.content
    return resp.json()["access"], resp.json()["refresh"]


def _works(client, access, refresh) -> tuple[int, int]:
    api = client.get("/api/v1/nodes", HTTP_AUTHORIZATION=f"Bearer {access}").status_code
    fresh = client.post(
        "/api/v1/auth/token/refresh", {"refresh": refresh}, content_type="application/json"
    ).status_code
    return api, fresh


def _change_password(user):
    user.set_password("another-horse-battery-10")
    user.save()


def _deactivate(user):
    user.is_active = False
    user.save()


def _take_role(user):
    accounts.set_roles(user.pk, [], "user:admin", requester=make_user("Admin"))


def _take_role_from_the_group_side(user):
    Group.objects.get(name="Operator").user_set.remove(user)


@pytest.mark.parametrize(
    "change", [_change_password, _deactivate, _take_role, _take_role_from_the_group_side]
)
def test_every_token_and_session_ends_at_once(client, olivia, change):
    access, refresh = _tokens(client)
    assert _works(client, access, refresh) == (200, 200)
    browser = type(client)()
    browser.force_login(olivia)
    assert Session.objects.count() == 1
    change(User.objects.get(pk=olivia.pk))
    assert _works(client, access, refresh) == (401, 401)
    assert Session.objects.count() == 0
    event = AuditEvent.objects.filter(action="auth.tokens_revoked").latest("seq")
    assert event.object_id == str(olivia.pk)


def test_new_tokens_work_after_the_change(client, olivia):
    old_access, _ = _tokens(client)
    _change_password(User.objects.get(pk=olivia.pk))
    access, refresh = _tokens(client, "another-horse-battery-10")
    assert _works(client, access, refresh) == (200, 200)
    assert client.get("/api/v1/nodes", HTTP_AUTHORIZATION=f"Bearer {old_access}").status_code == 401


def test_unrelated_saves_revoke_nothing(client, olivia):
    access, refresh = _tokens(client)
    before = AuditEvent.objects.filter(action="auth.tokens_revoked").count()
    user = User.objects.get(pk=olivia.pk)
    user.first_name = "Olivia"
    user.save()
    user.groups.add(Group.objects.get(name="User"))  # gaining a role revokes nothing
    assert _works(client, access, refresh) == (200, 200)
    assert AuditEvent.objects.filter(action="auth.tokens_revoked").count() == before
