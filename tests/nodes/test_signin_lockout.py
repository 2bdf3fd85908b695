"""Failed sign-ins are rate-limited per username and per address; lockouts are audited."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from tests.factories import make_user

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery-9"


@pytest.fixture
def alice():
    user = make_user("Admin", username="alice")
    user.is_staff = True
    user.set_password(PASSWORD)
    user.save()
    return user


def token(client, username, password, ip="10.0.0.7"):
    return client.post(
        "/api/v1/auth/token",
        {"username": username, "password": password},
        content_type="application/json",
        REMOTE_ADDR=ip,
    )


def test_a_username_is_locked_out_after_the_limit_even_with_the_right_password(
    client, alice, settings
):
    assert settings.AXES_FAILURE_LIMIT == 5
    for _ in range(5):
        assert token(client, "alice", "wrong").status_code == 401
    assert token(client, "alice", PASSWORD).status_code in (401, 403, 429)
    # From another address too: the username itself is locked.
    assert token(client, "alice", PASSWORD, ip="10.0.0.8").status_code in (401, 403, 429)
    # Each locked-out attempt is on the record, with the username and address.
    events = list(AuditEvent.objects.filter(action="auth.lockout").order_by("seq"))
    assert len(events) >= 2
    assert events[0].details == {"username": "alice", "ip_address": "10.0.0.7"}
    assert events[0].actor == "anonymous@10.0.0.7"
    assert events[-1].details == {"username": "alice", "ip_address": "10.0.0.8"}


def test_an_address_is_locked_out_across_usernames(client, alice):
    for name in ("bob", "carol", "dave", "erin", "frank"):
        assert token(client, name, "guess", ip="10.0.0.9").status_code == 401
    assert token(client, "alice", PASSWORD, ip="10.0.0.9").status_code in (401, 403, 429)
    assert token(client, "alice", PASSWORD, ip="10.0.0.10").status_code == 200


def test_the_admin_sign_in_page_locks_out_too(client, alice):
    for _ in range(4):
        resp = client.post(
            "/admin/login/", {"username": "alice", "password": "nope"}, REMOTE_ADDR="10.0.0.11"
        )
        assert resp.status_code == 200  # the form again, with an error
    resp = client.post(
        "/admin/login/", {"username": "alice", "password": "nope"}, REMOTE_ADDR="10.0.0.11"
    )
    assert resp.status_code == 429  # the fifth failure locks
    resp = client.post(
        "/admin/login/", {"username": "alice", "password": PASSWORD}, REMOTE_ADDR="10.0.0.12"
    )
    assert resp.status_code == 429
    assert not client.session.get("_auth_user_id")


def test_below_the_limit_the_right_password_still_works(client, alice):
    for _ in range(4):
        assert token(client, "alice", "wrong").status_code == 401
    assert token(client, "alice", PASSWORD).status_code == 200
    assert not AuditEvent.objects.filter(action="auth.lockout").exists()
