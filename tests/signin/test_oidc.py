"""OpenID Connect sign-in against a real OpenID provider (django-oidc-provider).

PureBoot runs as pytest-django's live server; a person is played by a
``requests`` session that follows the real flow: /oidc/authenticate/ ->
the provider's sign-in form -> its consent page -> PureBoot's callback.
"""

from __future__ import annotations

import secrets
import time
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from django.contrib.auth.models import Group, Permission, User
from django.contrib.sessions.backends.db import SessionStore

from accounts import oidc
from accounts.models import OIDCIdentity
from accounts.roles import sync_roles
from audit.models import AuditEvent
from tests.signin.provider import OpenIDProvider

pytestmark = pytest.mark.django_db(transaction=True)

OIDC_BACKEND = "accounts.oidc.PureBootOIDCBackend"
CLIENT_ID = "pureboot"
CLIENT_SECRET = secrets.token_urlsafe(24)
HS_CLIENT_SECRET = secrets.token_urlsafe(24)
PASSWORDS = {
    name: secrets.token_urlsafe(12) for name in ("olga", "oscar", "nobody", "localname", "hugo")
}
ROLE_GROUPS = {"Admin": ("pb-admins",), "Operator": ("pb-operators",)}
ENDPOINT_KEYS = ("authorization", "token", "userinfo", "jwks")


@pytest.fixture(scope="module")
def provider(live_server, tmp_path_factory):
    op = OpenIDProvider(tmp_path_factory.mktemp("op"))
    callback = f"{live_server.url}/oidc/callback/"
    groups = {"olga": ["pb-admins", "wiki"], "oscar": ["pb-operators"], "hugo": ["pb-admins"]}
    op.start(
        clients=[
            {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uri": callback},
            # Signs its ID tokens with HS256 (the client secret): PureBoot must refuse them.
            {
                "client_id": "hs-client",
                "client_secret": HS_CLIENT_SECRET,
                "redirect_uri": callback,
                "jwt_alg": "HS256",
            },
        ],
        users=[
            {
                "username": name,
                "password": password,
                "email": f"{name}@example.org",
                "first_name": name.title(),
                "groups": groups.get(name, []),
            }
            for name, password in PASSWORDS.items()
        ],
    )
    yield op
    op.stop()


@pytest.fixture
def sso(settings, provider):
    settings.PUREBOOT_OIDC_ENABLED = True
    settings.PUREBOOT_OIDC_ISSUER = provider.issuer
    settings.PUREBOOT_OIDC_ENDPOINTS = dict.fromkeys(
        ("authorization", "token", "userinfo", "jwks"), ""
    )
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
    settings.OIDC_RP_SCOPES = "openid email profile groups"
    settings.PUREBOOT_OIDC_ROLE_GROUPS = ROLE_GROUPS
    settings.PUREBOOT_OIDC_REQUIRE_GROUP = ""
    backends = list(settings.AUTHENTICATION_BACKENDS)
    if OIDC_BACKEND not in backends:
        backends.insert(-1, OIDC_BACKEND)
    settings.AUTHENTICATION_BACKENDS = backends
    # Transactional tests start from an empty database: put the role groups back.
    sync_roles(Group, Permission)
    oidc._discovery.clear()
    yield provider
    oidc._discovery.clear()


class FormParser(HTMLParser):
    """The first form's action and its named inputs (submit buttons included)."""

    def __init__(self):
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._in_form = False
        self._done = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and not self._done:
            self._in_form = True
            self.action = attrs.get("action") or ""
        elif tag == "input" and self._in_form and attrs.get("name"):
            self.fields[attrs["name"]] = attrs.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "form" and self._in_form:
            self._in_form, self._done = False, True


def form_of(response: requests.Response) -> tuple[str, dict[str, str]]:
    parser = FormParser()
    parser.feed(response.text)
    assert parser.action is not None, f"no form on {response.url}: {response.text[:500]}"
    return urljoin(response.url, parser.action), parser.fields


def sign_in_at_provider(browser: requests.Session, base: str, username: str) -> str:
    """Run the flow up to the provider's redirect back; return PureBoot's callback URL."""
    page = browser.get(f"{base}/oidc/authenticate/?next=/admin/", timeout=30)
    assert page.status_code == 200 and "op-login" in page.text, page.text[:500]
    action, fields = form_of(page)
    fields.update(username=username, password=PASSWORDS[username])
    consent = browser.post(action, data=fields, timeout=30)
    assert consent.status_code == 200 and "allow" in consent.text, consent.text[:500]
    action, fields = form_of(consent)
    back = browser.post(action, data=fields, allow_redirects=False, timeout=30)
    assert back.status_code == 302, back.text[:500]
    callback = back.headers["Location"]
    assert callback.startswith(f"{base}/oidc/callback/?"), callback
    return callback


def full_sign_in(browser, base, username) -> requests.Response:
    callback = sign_in_at_provider(browser, base, username)
    return browser.get(callback, timeout=30)


def roles(username: str) -> set[str]:
    return set(
        User.objects.get(username=username)
        .groups.filter(name__in=["Admin", "Operator", "Auditor", "User"])
        .values_list("name", flat=True)
    )


def test_the_sign_in_page_offers_single_sign_on_only_when_configured(client, settings):
    settings.PUREBOOT_OIDC_ENABLED = False
    assert b"single sign-on" not in client.get("/admin/login/").content
    assert client.get("/oidc/authenticate/").status_code == 404
    settings.PUREBOOT_OIDC_ENABLED = True
    page = client.get("/admin/login/?next=/approvals/")
    assert b'href="/oidc/authenticate/?next=/approvals/"' in page.content


def test_a_provider_admin_signs_in_with_the_admin_role(live_server, sso):
    browser = requests.Session()
    final = full_sign_in(browser, live_server.url, "olga")
    assert final.status_code == 200 and final.url == f"{live_server.url}/admin/"
    assert "Site administration" in final.text or "Provisioning" in final.text
    user = User.objects.get(username="olga")
    assert roles("olga") == {"Admin"}  # "wiki" maps to no role
    assert user.is_staff and not user.is_superuser and not user.has_usable_password()
    assert (user.email, user.first_name) == ("olga@example.org", "Olga")
    identity = OIDCIdentity.objects.get(user=user)
    assert identity.issuer == sso.issuer and identity.subject
    event = AuditEvent.objects.get(action="auth.roles_synced", object_id=str(user.pk))
    assert event.changes["roles"] == {"before": [], "after": ["Admin"]}
    assert event.actor == "directory:oidc"


def test_roles_follow_the_provider_at_the_next_sign_in(live_server, sso):
    sso.set_groups("oscar", "pb-operators")
    assert full_sign_in(requests.Session(), live_server.url, "oscar").status_code == 200
    assert roles("oscar") == {"Operator"}
    sso.set_groups("oscar", "pb-admins")
    assert full_sign_in(requests.Session(), live_server.url, "oscar").status_code == 200
    assert roles("oscar") == {"Admin"}
    assert User.objects.filter(username__startswith="oscar").count() == 1  # same account
    sso.set_groups("oscar")
    final = full_sign_in(requests.Session(), live_server.url, "oscar")
    assert roles("oscar") == set() and not User.objects.get(username="oscar").is_staff
    assert "/admin/login/" in final.url  # signed in, but the admin is for role holders


def test_a_person_in_no_mapped_group_gets_no_role(live_server, sso):
    browser = requests.Session()
    final = full_sign_in(browser, live_server.url, "nobody")
    assert final.status_code == 200 and "/admin/login/" in final.url
    assert "not authorized" in final.text  # Django's "authenticated as ..., but ..."
    assert roles("nobody") == set() and not User.objects.get(username="nobody").is_staff


def test_require_group_refuses_people_outside_it(live_server, sso, settings):
    settings.PUREBOOT_OIDC_REQUIRE_GROUP = "pb-operators"
    final = full_sign_in(requests.Session(), live_server.url, "nobody")
    assert final.url.endswith("/admin/login/?sso=failed")
    assert "Single sign-on did not sign you in" in final.text
    assert not User.objects.filter(username="nobody").exists()


def test_a_tampered_state_is_refused_and_a_callback_works_once(live_server, sso):
    browser = requests.Session()
    callback = sign_in_at_provider(browser, live_server.url, "olga")
    query = parse_qs(urlsplit(callback).query)
    state = query["state"][0]
    # Change the first character to one it is not (a fixed "x" left 1 state in 64 unchanged).
    tampered = callback.replace(state, ("y" if state[0] == "x" else "x") + state[1:])
    assert tampered != callback
    resp = browser.get(tampered, timeout=30)
    assert resp.status_code == 400
    assert "unknown or already used" in resp.text
    assert browser.get(f"{live_server.url}/admin/", allow_redirects=False).status_code == 302
    # The genuine callback still works, once.
    assert browser.get(callback, timeout=30).url == f"{live_server.url}/admin/"
    assert browser.get(callback, timeout=30).status_code == 400


def test_an_expired_sign_in_is_refused(live_server, sso):
    browser = requests.Session()
    callback = sign_in_at_provider(browser, live_server.url, "olga")
    state = parse_qs(urlsplit(callback).query)["state"][0]
    session = SessionStore(session_key=browser.cookies["sessionid"])
    session["oidc_states"][state]["added_on"] = time.time() - oidc.STATE_MAX_AGE_SECONDS - 5
    session.save()
    resp = browser.get(callback, timeout=30)
    assert resp.status_code == 400 and "took too long" in resp.text
    assert not User.objects.filter(username="olga").exists()


def test_id_tokens_not_signed_with_rs256_are_refused(live_server, sso, settings, caplog):
    settings.OIDC_RP_CLIENT_ID = "hs-client"
    settings.OIDC_RP_CLIENT_SECRET = HS_CLIENT_SECRET
    final = full_sign_in(requests.Session(), live_server.url, "hugo")
    assert final.url.endswith("/admin/login/?sso=failed")
    assert not User.objects.filter(username="hugo").exists()
    assert "token signed with 'HS256', not RS256" in caplog.text
    assert HS_CLIENT_SECRET not in caplog.text


def test_single_sign_on_never_takes_over_a_local_account(live_server, sso):
    local = User.objects.create_user("localname", password="local-Pa55word-z")
    final = full_sign_in(requests.Session(), live_server.url, "localname")
    assert final.url.endswith("/admin/login/?sso=failed")
    assert not OIDCIdentity.objects.filter(user=local).exists()
    refused = AuditEvent.objects.get(action="auth.directory_refused")
    assert refused.details == {"source": "oidc", "username": "localname"}


def test_a_provider_that_is_down_gets_a_clear_page(live_server, sso, settings):
    with socket_closed_port() as port:
        settings.PUREBOOT_OIDC_ISSUER = f"http://127.0.0.1:{port}/openid"
        resp = requests.get(f"{live_server.url}/oidc/authenticate/", timeout=30)
    assert resp.status_code == 503
    assert "cannot be reached" in resp.text


def socket_closed_port():
    """A loopback port with nothing listening on it (bound, never listened)."""
    import contextlib
    import socket

    @contextlib.contextmanager
    def held():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            yield s.getsockname()[1]

    return held()


def test_explicit_endpoints_need_no_discovery(live_server, sso, settings, monkeypatch):
    sso.set_groups("oscar", "pb-operators")
    settings.PUREBOOT_OIDC_ENDPOINTS = {
        "authorization": f"{sso.issuer}/authorize",
        "token": f"{sso.issuer}/token",
        "userinfo": f"{sso.issuer}/userinfo",
        "jwks": f"{sso.issuer}/jwks",
    }

    def no_discovery(*args, **kwargs):
        raise AssertionError("discovery document fetched")

    real_get = requests.get
    monkeypatch.setattr(
        oidc.requests,
        "get",
        lambda url, *a, **kw: no_discovery() if "well-known" in url else real_get(url, *a, **kw),
    )
    final = full_sign_in(requests.Session(), live_server.url, "oscar")
    assert final.url == f"{live_server.url}/admin/"
    assert roles("oscar") == {"Operator"}
    assert oidc._discovery == {}


def test_guessing_other_accounts_does_not_lock_single_sign_on_out(live_server, sso, settings):
    """Lockout is per account and address: failed guesses at other accounts from this
    address lock those accounts (from here), not olga's single sign-on."""
    browser = requests.Session()
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        page = browser.get(f"{live_server.url}/admin/login/", timeout=30)
        action, fields = form_of(page)
        fields.update(username="guessed", password=f"wrong{attempt}")
        last = browser.post(action, data=fields, timeout=30)
    assert last.status_code == 429 and last.headers["Retry-After"]
    final = full_sign_in(requests.Session(), live_server.url, "olga")
    assert final.status_code == 200
    assert User.objects.filter(username="olga").exists()
    assert AuditEvent.objects.filter(action="auth.lockout").exists()
