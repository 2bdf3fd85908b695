"""LDAP sign-in against a real OpenLDAP server (slapd) that the tests start and fill.

The settings below are what pureboot/settings.py builds from the
PUREBOOT_LDAP_* variables (test_settings_env.py checks that path).
"""

from __future__ import annotations

import secrets

import ldap
import pytest
from django.contrib.auth.models import Group, User
from django_auth_ldap.config import GroupOfNamesType, LDAPSearch

from audit.models import AuditEvent
from tests.signin.slapd import GROUPS, PEOPLE, Slapd, require_tools

pytestmark = pytest.mark.django_db

PEOPLE_PASSWORDS = {uid: secrets.token_urlsafe(12) for uid in ("ada", "otto", "nina", "aude")}
LDAP_BACKEND = "accounts.ldap_backend.PureBootLDAPBackend"


@pytest.fixture
def slapd(tmp_path):
    require_tools()
    server = Slapd(tmp_path / "slapd")
    server.start()
    try:
        server.populate(
            PEOPLE_PASSWORDS,
            {
                "pureboot-admins": ["ada"],
                "pureboot-operators": ["otto"],
                "pureboot-auditors": ["aude"],
                "staff": ["ada", "otto", "aude"],
                "unrelated": ["nina"],
            },
        )
        yield server
    finally:
        server.stop()


def configure(settings, server: Slapd, **extra) -> None:
    settings.AUTH_LDAP_SERVER_URI = server.uri
    settings.AUTH_LDAP_BIND_DN = server.admin_dn
    settings.AUTH_LDAP_BIND_PASSWORD = server.admin_password
    settings.AUTH_LDAP_USER_SEARCH = LDAPSearch(PEOPLE, ldap.SCOPE_SUBTREE, "(uid=%(user)s)")
    settings.AUTH_LDAP_GROUP_SEARCH = LDAPSearch(
        GROUPS, ldap.SCOPE_SUBTREE, "(objectClass=groupOfNames)"
    )
    settings.AUTH_LDAP_GROUP_TYPE = GroupOfNamesType()
    settings.AUTH_LDAP_USER_ATTR_MAP = {
        "first_name": "givenName",
        "last_name": "sn",
        "email": "mail",
    }
    settings.AUTH_LDAP_ALWAYS_UPDATE_USER = True
    settings.AUTH_LDAP_REQUIRE_GROUP = extra.get("require_group")
    settings.AUTH_LDAP_CONNECTION_OPTIONS = {
        ldap.OPT_NETWORK_TIMEOUT: 2,
        ldap.OPT_TIMEOUT: 2,
        ldap.OPT_REFERRALS: 0,
    }
    settings.PUREBOOT_LDAP_ROLE_GROUPS = {
        "Admin": (server.group_dn("pureboot-admins").lower(),),
        "Operator": (server.group_dn("pureboot-operators").lower(),),
        "Auditor": (server.group_dn("pureboot-auditors").lower(),),
    }
    backends = list(settings.AUTHENTICATION_BACKENDS)
    if LDAP_BACKEND not in backends:
        backends.insert(-1, LDAP_BACKEND)
    settings.AUTHENTICATION_BACKENDS = backends


@pytest.fixture
def directory(settings, slapd):
    configure(settings, slapd)
    return slapd


def admin_login(client, username, password, ip="10.1.0.1"):
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=ip,
    )


def roles(username: str) -> set[str]:
    return set(
        User.objects.get(username=username)
        .groups.filter(name__in=["Admin", "Operator", "Auditor", "User"])
        .values_list("name", flat=True)
    )


def test_a_directory_admin_signs_into_the_admin_with_the_admin_role(client, directory):
    resp = admin_login(client, "ada", PEOPLE_PASSWORDS["ada"])
    assert resp.status_code == 302 and resp["Location"] == "/admin/"
    user = User.objects.get(username="ada")
    assert roles("ada") == {"Admin"}
    assert user.is_staff and not user.is_superuser
    assert not user.has_usable_password()  # the directory holds the password
    assert (user.email, user.first_name) == ("ada@example.org", "Ada")
    assert client.get("/admin/").status_code == 200
    event = AuditEvent.objects.get(action="auth.roles_synced")
    assert event.changes["roles"] == {"before": [], "after": ["Admin"]}
    assert event.actor == "directory:ldap" and event.object_id == str(user.pk)
    # A second sign-in with nothing changed writes no event.
    client.logout()
    assert admin_login(client, "ada", PEOPLE_PASSWORDS["ada"]).status_code == 302
    assert AuditEvent.objects.filter(action="auth.roles_synced").count() == 1


def test_an_operator_and_an_auditor_get_their_roles(client, directory):
    assert admin_login(client, "otto", PEOPLE_PASSWORDS["otto"]).status_code == 302
    assert admin_login(client, "aude", PEOPLE_PASSWORDS["aude"]).status_code == 302
    assert roles("otto") == {"Operator"}
    assert roles("aude") == {"Auditor"}


def test_a_person_in_no_mapped_group_gets_no_role(client, directory):
    resp = admin_login(client, "nina", PEOPLE_PASSWORDS["nina"])
    # Signed in to no avail: the admin wants staff, and nina holds no role.
    assert resp.status_code == 200
    assert b"staff account" in resp.content
    assert roles("nina") == set()
    assert not User.objects.get(username="nina").is_staff


def test_require_group_refuses_people_outside_it(client, settings, slapd):
    configure(settings, slapd, require_group=slapd.group_dn("staff"))
    assert admin_login(client, "nina", PEOPLE_PASSWORDS["nina"]).status_code == 200
    assert not User.objects.filter(username="nina").exists()
    assert admin_login(client, "otto", PEOPLE_PASSWORDS["otto"]).status_code == 302


def test_leaving_a_directory_group_removes_the_role_at_the_next_sign_in(client, directory):
    assert admin_login(client, "ada", PEOPLE_PASSWORDS["ada"]).status_code == 302
    oncall = Group.objects.create(name="oncall")  # not a role: left alone
    User.objects.get(username="ada").groups.add(oncall)
    directory.set_members("pureboot-admins", ["otto"])
    directory.set_members("pureboot-operators", ["otto", "ada"])
    client.logout()

    assert admin_login(client, "ada", PEOPLE_PASSWORDS["ada"]).status_code == 302
    assert roles("ada") == {"Operator"}
    assert User.objects.get(username="ada").groups.filter(name="oncall").exists()
    last = AuditEvent.objects.filter(action="auth.roles_synced").order_by("seq").last()
    assert last.changes["roles"] == {"before": ["Admin"], "after": ["Operator"]}

    # Out of every mapped group: no role and no admin at all.
    directory.set_members("pureboot-operators", ["otto"])
    client.logout()
    assert admin_login(client, "ada", PEOPLE_PASSWORDS["ada"]).status_code == 200
    assert roles("ada") == set()
    assert not User.objects.get(username="ada").is_staff


def test_a_wrong_password_is_refused_and_counted_towards_the_lockout(client, directory):
    for _ in range(4):
        resp = admin_login(client, "ada", "not-the-password", ip="10.1.0.9")
        assert resp.status_code == 200 and b"correct username and password" in resp.content
    assert admin_login(client, "ada", "still-wrong", ip="10.1.0.9").status_code == 429
    # Locked out from that address: even the directory's right password does not get in.
    assert admin_login(client, "ada", PEOPLE_PASSWORDS["ada"], ip="10.1.0.9").status_code == 429
    assert AuditEvent.objects.filter(action="auth.lockout").exists()
    assert not client.session.get("_auth_user_id")
    # Ada herself, from her own address, is not locked out by someone guessing.
    assert admin_login(client, "ada", PEOPLE_PASSWORDS["ada"], ip="10.1.0.10").status_code == 302


def test_the_api_token_endpoint_takes_directory_credentials(client, directory):
    resp = client.post(
        "/api/v1/auth/token",
        {"username": "otto", "password": PEOPLE_PASSWORDS["otto"]},
        content_type="application/json",
    )
    assert resp.status_code == 200, resp.content
    access = resp.json()["access"]
    nodes = client.get("/api/v1/nodes", HTTP_AUTHORIZATION=f"Bearer {access}")
    assert nodes.status_code == 200
    assert roles("otto") == {"Operator"}
    bad = client.post(
        "/api/v1/auth/token",
        {"username": "otto", "password": "wrong"},
        content_type="application/json",
    )
    assert bad.status_code == 401


def test_a_directory_that_is_down_fails_the_sign_in_cleanly(client, directory):
    from tests.factories import make_user

    local = make_user("Admin", username="breakglass")
    local.is_staff = True
    local.set_password("local-Pa55word-x")
    local.save()
    directory.stop()
    resp = admin_login(client, "ada", PEOPLE_PASSWORDS["ada"])
    assert resp.status_code == 200 and b"correct username and password" in resp.content
    token = client.post(
        "/api/v1/auth/token",
        {"username": "ada", "password": PEOPLE_PASSWORDS["ada"]},
        content_type="application/json",
    )
    assert token.status_code == 401
    # The local break-glass account still signs in.
    assert admin_login(client, "breakglass", "local-Pa55word-x").status_code == 302


def test_the_directory_never_signs_into_a_local_account(client, directory):
    from tests.factories import make_user

    local = make_user("User", username="ada")
    local.set_password("local-Pa55word-y")
    local.save()
    resp = admin_login(client, "ada", PEOPLE_PASSWORDS["ada"])
    assert resp.status_code == 200  # refused: not the local password
    assert roles("ada") == {"User"}  # untouched
    refused = AuditEvent.objects.get(action="auth.directory_refused")
    assert refused.details == {"source": "ldap", "username": "ada"}
    assert not AuditEvent.objects.filter(action="auth.roles_synced").exists()


def test_two_first_sign_ins_at_once_share_one_account(client, directory, monkeypatch):
    """The other sign-in creates the account between our lookup and our save."""
    from django_auth_ldap.backend import LDAPBackend

    original = LDAPBackend.get_or_build_user

    def racing(self, username, ldap_user):
        user, built = original(self, username, ldap_user)
        if built:
            other = User(username=username)
            other.set_unusable_password()
            other.save()
        return user, built

    monkeypatch.setattr(LDAPBackend, "get_or_build_user", racing)
    resp = admin_login(client, "otto", PEOPLE_PASSWORDS["otto"])
    assert resp.status_code == 302, resp.content.decode()[:500]
    assert User.objects.filter(username="otto").count() == 1
    assert roles("otto") == {"Operator"}
