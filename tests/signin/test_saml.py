"""SAML 2.0 sign-in against a real identity provider (pysaml2's IdP, tests/signin/saml_idp.py).

PureBoot runs as pytest-django's live server; a person is played by a
``requests`` session that follows the real flow: /saml/login/ -> the IdP's
sign-in form (after it checked our signed AuthnRequest) -> the IdP's
auto-posting form -> PureBoot's /saml/acs/.
"""

from __future__ import annotations

import base64
import secrets
import threading
from html.parser import HTMLParser
from urllib.parse import urljoin

import pytest
import requests
from django.contrib.auth.models import Group, Permission, User

from accounts import saml
from accounts.models import SAMLAssertionUse, SAMLIdentity
from accounts.roles import sync_roles
from audit.models import AuditEvent
from tests.signin.saml_idp import (
    IdentityProvider,
    MetadataServer,
    Person,
    make_keypair,
    xmlsec1,
)

pytestmark = pytest.mark.django_db(transaction=True)

SAML_BACKEND = "accounts.saml.PureBootSAMLBackend"
ROLE_GROUPS = {"Admin": ("pb-admins",), "Operator": ("pb-operators",)}
PEOPLE = {
    "sara": (["pb-admins", "wiki"], "sara@example.org"),
    "sam": (["pb-operators"], ""),
    "nobody": (["wiki"], ""),
    "localname": (["pb-admins"], ""),
}


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    provider = IdentityProvider(tmp_path_factory.mktemp("idp"))
    provider.start()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def sp_keys(tmp_path_factory):
    return make_keypair(tmp_path_factory.mktemp("sp"), "sp")


@pytest.fixture
def sso(settings, idp, sp_keys, live_server):
    settings.PUREBOOT_SAML_ENABLED = True
    settings.PUREBOOT_SAML_IDP_METADATA_FILE = str(idp.metadata_file)
    settings.PUREBOOT_SAML_IDP_METADATA_URL = ""
    settings.PUREBOOT_SAML_SP_ENTITY_ID = f"{live_server.url}/saml/metadata/"
    settings.PUREBOOT_SAML_SP_BASE_URL = live_server.url
    settings.PUREBOOT_SAML_SP_KEY_FILE = str(sp_keys[0])
    settings.PUREBOOT_SAML_SP_CERT_FILE = str(sp_keys[1])
    settings.PUREBOOT_SAML_USERNAME_ATTRIBUTE = "uid"
    settings.PUREBOOT_SAML_EMAIL_ATTRIBUTE = "mail"
    settings.PUREBOOT_SAML_GROUPS_ATTRIBUTE = "groups"
    settings.PUREBOOT_SAML_ROLE_GROUPS = ROLE_GROUPS
    settings.PUREBOOT_SAML_ALLOW_UNSOLICITED = False
    settings.PUREBOOT_SAML_CLOCK_SKEW_SECONDS = 60
    settings.PUREBOOT_SAML_XMLSEC_BINARY = xmlsec1()
    backends = list(settings.AUTHENTICATION_BACKENDS)
    if SAML_BACKEND not in backends:
        backends.insert(-1, SAML_BACKEND)
    settings.AUTHENTICATION_BACKENDS = backends
    # Transactional tests start from an empty database: put the role groups back.
    sync_roles(Group, Permission)
    saml.clear_cache()
    # The IdP trusts PureBoot's own metadata, as an operator would set it up.
    metadata = requests.get(f"{live_server.url}/saml/metadata/", timeout=30)
    assert metadata.status_code == 200, metadata.text[:500]
    idp.sp_metadata_file.write_text(metadata.text)
    idp.people = {
        name: Person(secrets.token_urlsafe(12), list(groups), email)
        for name, (groups, email) in PEOPLE.items()
    }
    idp.sign_assertion, idp.encrypt_assertion, idp.lifetime_minutes = True, False, 15
    yield idp
    saml.clear_cache()


class FormParser(HTMLParser):
    """The first form's action and its named inputs."""

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


def answer_from_idp(
    browser: requests.Session, base: str, idp: IdentityProvider, username: str, next_="/admin/"
) -> tuple[str, dict[str, str]]:
    """Run the flow up to the IdP's answer; return the ACS URL and the form it would post."""
    page = browser.get(f"{base}/saml/login/", params={"next": next_}, timeout=30)
    assert page.status_code == 200 and "idp-login" in page.text, page.text[:500]
    action, fields = form_of(page)
    fields.update(username=username, password=idp.people[username].password)
    answer = browser.post(action, data=fields, timeout=30)
    assert answer.status_code == 200, answer.text[:500]
    action, fields = form_of(answer)
    assert action == f"{base}/saml/acs/" and "SAMLResponse" in fields, answer.text[:500]
    return action, fields


def full_sign_in(browser, base, idp, username, next_="/admin/") -> requests.Response:
    action, fields = answer_from_idp(browser, base, idp, username, next_)
    return browser.post(action, data=fields, timeout=30)


def roles(username: str) -> set[str]:
    return set(
        User.objects.get(username=username)
        .groups.filter(name__in=["Admin", "Operator", "Auditor", "User"])
        .values_list("name", flat=True)
    )


def signed_in(browser: requests.Session, base: str) -> bool:
    return browser.get(f"{base}/admin/", allow_redirects=False, timeout=30).status_code == 200


def test_saml_is_off_unless_configured(client, settings):
    settings.PUREBOOT_SAML_ENABLED = False
    assert b"Sign in with SAML" not in client.get("/admin/login/").content
    assert client.get("/saml/login/").status_code == 404
    assert client.post("/saml/acs/", {"SAMLResponse": "x"}).status_code == 404
    assert client.get("/saml/metadata/").status_code == 404
    settings.PUREBOOT_SAML_ENABLED = True
    page = client.get("/admin/login/?next=/approvals/")
    assert b'href="/saml/login/?next=/approvals/">Sign in with SAML' in page.content


def test_the_metadata_names_our_entity_acs_and_certificate(live_server, sso, sp_keys):
    xml = requests.get(f"{live_server.url}/saml/metadata/", timeout=30).text
    assert f'entityID="{live_server.url}/saml/metadata/"' in xml
    assert f'Location="{live_server.url}/saml/acs/"' in xml
    assert 'AuthnRequestsSigned="true"' in xml and 'WantAssertionsSigned="true"' in xml
    cert_body = "".join(sp_keys[1].read_text().strip().splitlines()[1:-1])
    assert cert_body in xml.replace("\n", "")
    assert "PRIVATE KEY" not in xml


def test_an_idp_admin_signs_in_with_the_admin_role(live_server, sso):
    browser = requests.Session()
    final = full_sign_in(browser, live_server.url, sso, "sara")
    assert final.status_code == 200 and final.url == f"{live_server.url}/admin/"
    user = User.objects.get(username="sara")
    assert roles("sara") == {"Admin"}  # "wiki" maps to no role
    assert user.is_staff and not user.is_superuser and not user.has_usable_password()
    assert user.email == "sara@example.org"
    identity = SAMLIdentity.objects.get(user=user)
    assert (identity.idp, identity.subject) == (sso.entity_id, "sara")
    event = AuditEvent.objects.get(action="auth.roles_synced", object_id=str(user.pk))
    assert event.changes["roles"] == {"before": [], "after": ["Admin"]}
    assert event.actor == "directory:saml"
    assert SAMLAssertionUse.objects.filter(idp=sso.entity_id).count() == 1


def test_an_encrypted_assertion_is_decrypted_with_the_sp_key(live_server, sso):
    sso.encrypt_assertion = True
    browser = requests.Session()
    action, fields = answer_from_idp(browser, live_server.url, sso, "sam")
    xml = base64.b64decode(fields["SAMLResponse"]).decode()
    assert "EncryptedAssertion" in xml and "pb-operators" not in xml
    assert browser.post(action, data=fields, timeout=30).url == f"{live_server.url}/admin/"
    assert roles("sam") == {"Operator"}


def test_an_encrypted_but_unsigned_assertion_is_refused(live_server, sso):
    sso.encrypt_assertion, sso.sign_assertion = True, False
    resp = full_sign_in(requests.Session(), live_server.url, sso, "sam")
    assert resp.status_code == 400 and "was refused" in resp.text
    assert not User.objects.filter(username="sam").exists()


def test_roles_follow_the_idp_at_each_sign_in(live_server, sso):
    assert full_sign_in(requests.Session(), live_server.url, sso, "sam").status_code == 200
    assert roles("sam") == {"Operator"}
    sso.people["sam"].groups = ["pb-admins"]
    assert full_sign_in(requests.Session(), live_server.url, sso, "sam").status_code == 200
    assert roles("sam") == {"Admin"}
    assert User.objects.filter(username__startswith="sam").count() == 1  # same account
    sso.people["sam"].groups = []
    browser = requests.Session()
    final = full_sign_in(browser, live_server.url, sso, "sam")
    assert roles("sam") == set() and not User.objects.get(username="sam").is_staff
    assert "/admin/login/" in final.url and not signed_in(browser, live_server.url)


def test_a_person_in_no_mapped_group_gets_no_access(live_server, sso):
    browser = requests.Session()
    final = full_sign_in(browser, live_server.url, sso, "nobody")
    assert final.status_code == 200 and "/admin/login/" in final.url
    assert "not authorized" in final.text  # Django's "authenticated as ..., but ..."
    assert roles("nobody") == set() and not User.objects.get(username="nobody").is_staff
    assert not signed_in(browser, live_server.url)
    assert browser.get(f"{live_server.url}/api/v1/nodes/", timeout=30).status_code == 403


def test_an_unsigned_assertion_is_refused(live_server, sso):
    sso.sign_assertion = False
    browser = requests.Session()
    resp = full_sign_in(browser, live_server.url, sso, "sara")
    assert resp.status_code == 400 and "was refused" in resp.text
    assert not User.objects.filter(username="sara").exists()
    assert not signed_in(browser, live_server.url)


def test_a_tampered_response_is_refused(live_server, sso):
    browser = requests.Session()
    action, fields = answer_from_idp(browser, live_server.url, sso, "sam")
    xml = base64.b64decode(fields["SAMLResponse"]).decode()
    assert "pb-operators" in xml
    fields["SAMLResponse"] = base64.b64encode(xml.replace("pb-operators", "pb-admins").encode())
    resp = browser.post(action, data=fields, timeout=30)
    assert resp.status_code == 400 and "was refused" in resp.text
    assert not User.objects.filter(username="sam").exists()


def test_a_response_is_accepted_once(live_server, sso, settings):
    browser = requests.Session()
    action, fields = answer_from_idp(browser, live_server.url, sso, "sara")
    assert browser.post(action, data=fields, timeout=30).url == f"{live_server.url}/admin/"
    # Replayed from another browser: no request of its own -> unsolicited.
    other = requests.Session()
    resp = other.post(action, data=fields, timeout=30)
    assert resp.status_code == 400 and not signed_in(other, live_server.url)
    # Even where unsolicited answers are allowed, one assertion signs in once.
    settings.PUREBOOT_SAML_ALLOW_UNSOLICITED = True
    saml.clear_cache()
    resp = other.post(action, data=fields, timeout=30)
    assert resp.status_code == 400 and not signed_in(other, live_server.url)
    refused = AuditEvent.objects.get(action="auth.directory_refused")
    assert "replayed" in refused.message and refused.details["source"] == "saml"


def test_a_response_for_another_service_provider_is_refused(live_server, sso, settings):
    browser = requests.Session()
    action, fields = answer_from_idp(browser, live_server.url, sso, "sara")
    settings.PUREBOOT_SAML_SP_ENTITY_ID = "https://other-sp.example.org/saml/metadata/"
    saml.clear_cache()
    resp = browser.post(action, data=fields, timeout=30)
    assert resp.status_code == 400 and "was refused" in resp.text
    assert not User.objects.filter(username="sara").exists()


def test_an_expired_assertion_is_refused(live_server, sso):
    sso.lifetime_minutes = -5  # expired 5 minutes ago; the allowed skew is 1 minute
    resp = full_sign_in(requests.Session(), live_server.url, sso, "sara")
    assert resp.status_code == 400 and "was refused" in resp.text
    assert not User.objects.filter(username="sara").exists()


def test_unsolicited_responses_are_refused_unless_allowed(live_server, sso, settings):
    action, fields = answer_from_idp(requests.Session(), live_server.url, sso, "sara")
    stranger = requests.Session()  # never asked: holds no request cookie
    assert stranger.post(action, data=fields, timeout=30).status_code == 400
    assert not User.objects.filter(username="sara").exists()
    settings.PUREBOOT_SAML_ALLOW_UNSOLICITED = True
    saml.clear_cache()
    fields["RelayState"] = "https://evil.example.org/steal"
    final = stranger.post(action, data=fields, allow_redirects=False, timeout=30)
    # Signed in, but sent to PureBoot's own start page, not the other host.
    assert final.status_code == 302 and final.headers["Location"] == "/admin/"
    assert signed_in(stranger, live_server.url)


def test_sign_in_goes_only_to_local_pages(live_server, sso):
    browser = requests.Session()
    for hostile in ("https://evil.example.org/", "//evil.example.org/x", "/\\evil.example.org"):
        resp = browser.get(f"{live_server.url}/saml/login/", params={"next": hostile}, timeout=30)
        assert resp.status_code == 400 and "own pages" in resp.text
    # A RelayState changed on the way back does not move the browser elsewhere.
    action, fields = answer_from_idp(browser, live_server.url, sso, "sara", next_="/approvals/")
    fields["RelayState"] = "https://evil.example.org/"
    final = browser.post(action, data=fields, allow_redirects=False, timeout=30)
    assert final.status_code == 302 and final.headers["Location"] == "/approvals/"


def test_the_request_cookie_survives_the_cross_site_post_over_https(live_server, sso, settings):
    url = f"{live_server.url}/saml/login/"
    plain = requests.get(url, allow_redirects=False, timeout=30).headers["Set-Cookie"]
    assert "pureboot_saml=" in plain and "SameSite=Lax" in plain and "Secure" not in plain
    # Browsers reach PureBoot over HTTPS (a proxy in front): SameSite=None; Secure.
    settings.PUREBOOT_SAML_SP_BASE_URL = "https://pureboot.example.org"
    saml.clear_cache()
    tls = requests.get(url, allow_redirects=False, timeout=30)
    assert tls.status_code == 302
    cookie = tls.headers["Set-Cookie"]
    assert "SameSite=None" in cookie and "Secure" in cookie and "HttpOnly" in cookie
    assert "Path=/saml/" in cookie


def test_saml_never_takes_over_a_local_account(live_server, sso):
    local = User.objects.create_user("localname", password="local-Pa55word-z")
    final = full_sign_in(requests.Session(), live_server.url, sso, "localname")
    assert final.url.endswith("/admin/login/?sso=failed")
    assert "Single sign-on did not sign you in" in final.text
    assert not SAMLIdentity.objects.filter(user=local).exists()
    assert roles("localname") == set()
    refused = AuditEvent.objects.get(action="auth.directory_refused")
    assert refused.details == {"source": "saml", "username": "localname"}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"SAMLResponse": "%%% not base64 %%%"},
        {"SAMLResponse": base64.b64encode(b"<not-xml").decode()},
        {
            "SAMLResponse": base64.b64encode(
                b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
                b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><r>&b;&b;&b;</r>'
            ).decode()
        },
        # Over PUREBOOT_MAX_REQUEST_BYTES (2 MiB): Django refuses the body itself.
        {"SAMLResponse": base64.b64encode(b"A" * 1_700_000).decode()},
    ],
    ids=["missing", "not-base64", "not-xml", "entities", "oversized"],
)
def test_malformed_answers_get_a_400(live_server, sso, body):
    resp = requests.post(f"{live_server.url}/saml/acs/", data=body, timeout=30)
    assert resp.status_code == 400
    if not body:
        assert "No SAML response was sent" in resp.text
    elif len(body["SAMLResponse"]) < 2_000_000:
        assert "answer was refused" in resp.text
    assert not User.objects.exists()


@pytest.mark.postgres
def test_two_racing_posts_of_one_answer_sign_in_once(live_server, sso):
    """The same answer posted twice at once (a double click, or a stolen copy).

    PostgreSQL: the test database of the SQLite run is an in-memory shared
    cache, whose table locks do not wait like a SQLite file's do.
    """
    browser = requests.Session()
    action, fields = answer_from_idp(browser, live_server.url, sso, "sara")
    twins = [requests.Session() for _ in range(2)]
    for twin in twins:
        twin.cookies.update(browser.cookies)
    results: list[int] = []

    def post(session):
        resp = session.post(action, data=fields, allow_redirects=False, timeout=30)
        results.append(resp.status_code)

    threads = [threading.Thread(target=post, args=(twin,)) for twin in twins]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [302, 400]
    assert SAMLAssertionUse.objects.count() == 1
    assert User.objects.filter(username="sara").count() == 1


def test_acs_takes_only_post(live_server, sso):
    assert requests.get(f"{live_server.url}/saml/acs/", timeout=30).status_code == 405


def test_idp_metadata_from_an_https_url(live_server, sso, settings, monkeypatch):
    server = MetadataServer(sso)
    try:
        settings.PUREBOOT_SAML_IDP_METADATA_FILE = ""
        settings.PUREBOOT_SAML_IDP_METADATA_URL = server.url
        # A server certificate nobody vouches for: no metadata, no sign-in.
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        saml.clear_cache()
        resp = requests.get(f"{live_server.url}/saml/login/", timeout=30)
        assert resp.status_code == 503 and "cannot be used now" in resp.text
        # Trusted (as an operator would install the IdP's CA): the whole sign-in works.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_file))
        saml.clear_cache()
        final = full_sign_in(requests.Session(), live_server.url, sso, "sara")
        assert final.url == f"{live_server.url}/admin/" and roles("sara") == {"Admin"}
    finally:
        server.stop()


def test_refused_saml_sign_ins_do_not_lock_others_out(live_server, sso, settings):
    """Refusals by the backend count as failed sign-ins for django-axes, per person and
    address: the refused person is locked out, the next person at the address is not."""
    User.objects.create_user("localname", password="local-Pa55word-z")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        final = full_sign_in(requests.Session(), live_server.url, sso, "localname")
        assert final.url.endswith("/admin/login/?sso=failed")
    assert full_sign_in(requests.Session(), live_server.url, sso, "localname").status_code == 429
    assert AuditEvent.objects.filter(action="auth.lockout", object_id="localname").exists()
    final = full_sign_in(requests.Session(), live_server.url, sso, "sara")
    assert final.url == f"{live_server.url}/admin/" and roles("sara") == {"Admin"}
