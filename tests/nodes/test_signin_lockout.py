"""Failed sign-ins lock an account out from one address (never everyone); 429 with
Retry-After on every sign-in path; lockouts are audited."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from pureboot import clientip
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


def test_an_account_is_locked_out_from_an_address_after_the_limit_even_with_the_right_password(
    client, alice, settings
):
    assert settings.AXES_FAILURE_LIMIT == 5
    for _ in range(4):
        assert token(client, "alice", "wrong").status_code == 401
    locked = token(client, "alice", "wrong")  # the fifth failure locks
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
    assert locked.json()["code"] == "locked_out"
    again = token(client, "alice", PASSWORD)
    assert again.status_code == 429 and again["Retry-After"]
    # Each locked-out attempt is on the record, with the username and address.
    events = list(AuditEvent.objects.filter(action="auth.lockout").order_by("seq"))
    assert events and events[0].details == {"username": "alice", "ip_address": "10.0.0.7"}
    assert events[0].actor == "anonymous@10.0.0.7"


def test_one_address_cannot_lock_everyone_out(client, alice):
    """Lockout is per account and address: the attacker locks only themselves out."""
    for name in ("bob", "carol", "dave", "erin", "frank"):
        for _ in range(5):
            token(client, name, "guess", ip="10.0.0.9")
        assert token(client, name, "guess", ip="10.0.0.9").status_code == 429
    # alice was never guessed from there: her right password works, from anywhere.
    assert token(client, "alice", PASSWORD, ip="10.0.0.10").status_code == 200


def test_the_owner_signs_in_from_elsewhere_while_an_attacker_is_locked_out(client, alice):
    for _ in range(6):
        token(client, "alice", "wrong", ip="10.0.0.66")
    assert token(client, "alice", PASSWORD, ip="10.0.0.66").status_code == 429
    assert token(client, "alice", PASSWORD, ip="10.0.0.8").status_code == 200


def test_the_admin_sign_in_page_locks_out_too(client, alice, settings):
    for _ in range(4):
        resp = client.post(
            "/admin/login/", {"username": "alice", "password": "nope"}, REMOTE_ADDR="10.0.0.11"
        )
        assert resp.status_code == 200  # the form again, with an error
    resp = client.post(
        "/admin/login/", {"username": "alice", "password": "nope"}, REMOTE_ADDR="10.0.0.11"
    )
    assert resp.status_code == 429  # the fifth failure locks
    assert int(resp["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
    resp = client.post(
        "/admin/login/", {"username": "alice", "password": PASSWORD}, REMOTE_ADDR="10.0.0.11"
    )
    assert resp.status_code == 429
    assert not client.session.get("_auth_user_id")


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(client, alice, settings):
    """A client cannot choose the address its lockout is counted against."""
    for i in range(6):
        # A direct client sending a fresh forged header each time: still one address.
        client.post(
            "/api/v1/auth/token",
            {"username": "alice", "password": "wrong"},
            content_type="application/json",
            REMOTE_ADDR="10.0.0.50",
            HTTP_X_FORWARDED_FOR=f"192.0.2.{i}",
        )
    assert token(client, "alice", PASSWORD, ip="10.0.0.50").status_code == 429
    # Behind a trusted proxy the forwarded address is the client's.
    settings.PUREBOOT_TRUSTED_PROXIES = ["127.0.0.1"]
    via_proxy = client.post(
        "/api/v1/auth/token",
        {"username": "alice", "password": PASSWORD},
        content_type="application/json",
        REMOTE_ADDR="127.0.0.1",
        HTTP_X_FORWARDED_FOR="10.0.0.51",
    )
    assert via_proxy.status_code == 200
    forged_through_proxy = client.post(
        "/api/v1/auth/token",
        {"username": "alice", "password": PASSWORD},
        content_type="application/json",
        REMOTE_ADDR="127.0.0.1",
        HTTP_X_FORWARDED_FOR="10.0.0.51, 10.0.0.50",  # the proxy appended the real one
    )
    assert forged_through_proxy.status_code == 429


def test_below_the_limit_the_right_password_still_works(client, alice):
    for _ in range(4):
        assert token(client, "alice", "wrong").status_code == 401
    assert token(client, "alice", PASSWORD).status_code == 200
    assert not AuditEvent.objects.filter(action="auth.lockout").exists()


def test_a_padded_forwarded_header_cannot_choose_the_client_address(settings):
    """The client writes the left of X-Forwarded-For; the proxy appends on the right."""
    settings.PUREBOOT_TRUSTED_PROXIES = ["127.0.0.1"]
    padded = ", ".join(["10.9.9.9"] * 32 + ["203.0.113.7"])
    meta = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": padded}
    assert clientip.client_address(meta) == "203.0.113.7"
    loopback = ", ".join(["127.0.0.1"] * 40 + ["198.51.100.4"])
    assert clientip.client_address({**meta, "HTTP_X_FORWARDED_FOR": loopback}) == "198.51.100.4"
