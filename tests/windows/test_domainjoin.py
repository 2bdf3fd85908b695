"""Active Directory domain join against a real Samba AD DC (see samba_dc.py).

Proves: prestaging a computer account, making an offline-join blob, serving
it once to its own run and wiping it, a Samba member joining with the blob
(``net offlinejoin requestodj`` then ``net ads testjoin``), deleting the
account through a four-eye approval, and LDAP sign-in of AD users with
their mapped roles (simple bind without TLS: the test DC sets
``ldap server require strong auth = no``).
"""

from __future__ import annotations

import base64
import secrets

import ldap
import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import User
from django_auth_ldap.config import LDAPSearch, NestedActiveDirectoryGroupType

from approvals import services as approvals
from approvals.models import ApprovalRequest
from audit.models import AuditEvent
from credentials import services as credentials
from nodes.models import Node
from tests.factories import make_node, make_user, sealed
from tests.windows.samba_dc import BASE_DN, DOMAIN, REALM, SambaDC, require_tools
from workflows import domainjoin, samba_tools, tasks
from workflows.models import OfflineJoin, Workflow, WorkflowRun, WorkflowVersion
from workflows.samba_tools import MAX_BLOB_BYTES, SambaError, normalise_blob

OU = f"OU=Workstations,{BASE_DN}"
PEOPLE = {name: "Pw-" + secrets.token_urlsafe(10) + "a1!" for name in ("ada", "otto", "nina")}
LDAP_BACKEND = "accounts.ldap_backend.PureBootLDAPBackend"


@pytest.fixture(scope="module")
def dc(tmp_path_factory):
    require_tools()
    server = SambaDC(tmp_path_factory.mktemp("samba-dc"))
    try:
        server.start()
        server.must("ou", "create", OU)
        for group, members in (("pureboot-admins", ["ada"]), ("pureboot-operators", ["otto"])):
            server.must("group", "add", group)
            for member in members:
                server.must("user", "create", member, PEOPLE[member])
            server.must("group", "addmembers", group, ",".join(members))
        server.must("user", "create", "nina", PEOPLE["nina"])
        yield server
    finally:
        server.stop()


@pytest.fixture
def ad(dc, settings, db):
    settings.PUREBOOT_FERNET_KEYS = [Fernet.generate_key().decode()]
    settings.PUREBOOT_SAMBA_COMMAND_PREFIX = dc.command_prefix
    settings.PUREBOOT_SAMBA_TIMEOUT = 20
    return dc


def _credential(dc: SambaDC, name: str = "corp-join", password: str | None = None):
    return credentials.create_credential(
        "user:setup",
        {"name": name, "kind": "domain_join", "username": "Administrator", "scope": DOMAIN},
        {"password": password or dc.admin_password},
        approval=sealed("credential.create", f"credential:new:{name}", ""),
    )


def _run(hostname: str, credential: str = "corp-join", site=None) -> WorkflowRun:
    """A running install of a workflow that joins the domain offline (set-up only)."""
    node = make_node("installing", site=site, hostname=f"{hostname}.{DOMAIN}")
    workflow = Workflow.objects.create(name=f"win-{hostname}")
    task = {"type": "domain_join", "domain": DOMAIN, "mode": "offline", "ou": OU}
    version = WorkflowVersion.objects.create(
        workflow=workflow,
        number=1,
        content="test",
        definition={"tasks": [{"type": "windows_install"}, {**task, "credential": credential}]},
        content_hash="0" * 64,
    )
    return WorkflowRun.objects.create(node=node, version=version, token_nonce="n")


def _provisioned(run: WorkflowRun, capture) -> OfflineJoin:
    with capture(execute=False) as queued:
        join = domainjoin.request_offline_join(run)
    assert join.status == "pending" and len(queued) == 1  # the task waits for the commit
    assert tasks.provision_offline_join.apply(args=[join.pk]).get() == "ready"
    join.refresh_from_db()
    return join


def _task(run: WorkflowRun) -> dict:
    return next(t for t in run.version.tasks if t["type"] == "domain_join")


def test_prestage_creates_the_account_once_and_refuses_a_name_taken_elsewhere(ad):
    secret = credentials.Secret("Administrator", ad.admin_password, "")
    dn = domainjoin.prestage_computer(secret, domain=DOMAIN, machine="PRE01", ou=OU, dc=ad.fqdn)
    assert dn == f"CN=PRE01,{OU}" and ad.computer_dn("PRE01") == dn
    # Again: the same account in the same OU is fine.
    assert domainjoin.prestage_computer(secret, domain=DOMAIN, machine="PRE01", ou=OU) == dn
    ad.must("computer", "create", "ELSEWHERE")  # in CN=Computers
    with pytest.raises(domainjoin.DomainJoinError, match="not as a computer account in OU="):
        domainjoin.prestage_computer(secret, domain=DOMAIN, machine="ELSEWHERE", ou=OU)
    wrong = credentials.Secret("Administrator", "not-the-password", "")
    with pytest.raises(SambaError) as refused:
        domainjoin.prestage_computer(wrong, domain=DOMAIN, machine="PRE02", ou=OU)
    assert "not-the-password" not in str(refused.value)
    assert ad.computer_dn("PRE02") is None


def test_offline_join_blob_joins_a_member_once_and_is_wiped(
    ad, django_capture_on_commit_callbacks, tmp_path
):
    _credential(ad)
    run = _run("ws-odj1")
    join = _provisioned(run, django_capture_on_commit_callbacks)
    assert join.machine_name == "WS-ODJ1" and ad.computer_dn("WS-ODJ1") == f"CN=WS-ODJ1,{OU}"
    blob = credentials.decrypt(join.blob_ciphertext)
    assert base64.b64decode(blob, validate=True) and blob not in join.blob_ciphertext
    reveal = AuditEvent.objects.get(action="credential.reveal")
    assert reveal.actor == "task:workflows.provision_offline_join"
    assert f"node {run.node_id}" in reveal.message

    preview = domainjoin.join_context(_task(run), run.node, run, reveal=False)
    assert preview == {
        "mode": "offline",
        "domain": DOMAIN,
        "ou": OU,
        "account_data": domainjoin.PREVIEW_SECRET,
    }
    served = domainjoin.join_context(_task(run), run.node, run, reveal=True)
    assert served["account_data"] == blob
    join.refresh_from_db()
    assert join.status == "served" and join.served_at
    assert AuditEvent.objects.filter(action="windows.odj.serve", object_id=str(join.pk)).exists()
    trail = [f"{e.message}{e.details}{e.changes}" for e in AuditEvent.objects.all()]
    assert not [t for t in trail if blob[:40] in t]

    # A Samba member loads the blob as Windows would (UTF-16LE with a BOM, as djoin
    # writes it) and its secure channel to the DC works.
    member = ad.member("WS-ODJ1")
    saved = tmp_path / "ws-odj1.txt"
    saved.write_bytes(b"\xff\xfe" + blob.encode("utf-16-le"))
    done = member.net("offlinejoin", "requestodj", f"loadfile={saved}")
    assert done.returncode == 0, done.stdout + done.stderr
    done = member.net("ads", "testjoin")
    assert done.returncode == 0 and "Join is OK" in done.stdout, done.stdout + done.stderr

    # Single use: another run never gets it, and once the run ends it is gone.
    other = _run("ws-other")
    with pytest.raises(domainjoin.JoinRefused, match="another install run"):
        domainjoin.serve(join, other, "node:x")
    WorkflowRun.objects.filter(pk=run.pk).update(status="succeeded")
    with pytest.raises(domainjoin.JoinRefused, match="not running"):
        domainjoin.serve(join, run, "node:x")
    assert domainjoin.wipe_for_run(run) == 1
    join.refresh_from_db()
    assert (join.status, join.blob_ciphertext) == ("wiped", "") and join.wiped_at
    WorkflowRun.objects.filter(pk=run.pk).update(status="running")
    with pytest.raises(domainjoin.JoinRefused, match="wiped"):
        domainjoin.serve(join, run, "node:x")


def test_the_sweep_wipes_blobs_of_ended_runs(ad, django_capture_on_commit_callbacks):
    _credential(ad)
    run = _run("ws-sweep")
    join = _provisioned(run, django_capture_on_commit_callbacks)
    assert tasks.wipe_offline_joins.apply().get() == 0  # still running
    WorkflowRun.objects.filter(pk=run.pk).update(status="failed")
    assert tasks.wipe_offline_joins.apply().get() == 1
    join.refresh_from_db()
    assert join.status == "wiped" and not join.blob_ciphertext


def test_not_ready_then_failed_with_a_clear_reason(ad, django_capture_on_commit_callbacks):
    _credential(ad, "bad-join", password="Wrong-password-1")
    run = _run("ws-bad", credential="bad-join")
    with django_capture_on_commit_callbacks(execute=False):
        join = domainjoin.request_offline_join(run)
    with pytest.raises(domainjoin.JoinNotReady):
        domainjoin.join_context(_task(run), run.node, run, reveal=True)
    assert tasks.provision_offline_join.apply(args=[join.pk]).get() == "failed"
    join.refresh_from_db()
    assert join.status == "failed" and "WS-BAD" in join.error and join.blob_ciphertext == ""
    assert "Wrong-password-1" not in join.error
    # The install ends failed with the reason (the node shows it), not retried forever.
    run.refresh_from_db()
    assert run.status == "failed" and join.error in run.error
    assert Node.objects.get(pk=run.node_id).state == "failed"
    with pytest.raises(domainjoin.JoinRefused, match="is failed, not running"):
        domainjoin.join_context(_task(run), run.node, run, reveal=True)
    # A name Windows cannot take fails at once, with no task queued.
    node_run = _run("this-name-is-far-too-long")
    with django_capture_on_commit_callbacks(execute=False) as queued:
        bad = domainjoin.request_offline_join(node_run)
    assert bad.status == "failed" and "NetBIOS" in bad.error and not queued


def test_online_join_reveals_the_credential_only_to_the_node(ad):
    credential = _credential(ad)
    node = make_node("installing", hostname="ws-online")
    task = {"type": "domain_join", "domain": DOMAIN, "mode": "online", "ou": OU}
    task["credential"] = credential.name
    preview = domainjoin.join_context(task, node, None, reveal=False)
    assert preview["password"] == domainjoin.PREVIEW_SECRET
    assert not AuditEvent.objects.filter(action="credential.reveal").exists()
    served = domainjoin.join_context(task, node, None, reveal=True)
    assert (served["username"], served["password"]) == ("Administrator", ad.admin_password)
    assert AuditEvent.objects.get(action="credential.reveal").actor == f"node:{node.pk}"
    with pytest.raises(domainjoin.DomainJoinError, match="no credential 'nope'"):
        domainjoin.join_context({**task, "credential": "nope"}, node, None, reveal=False)


def test_removing_the_account_needs_a_second_person(
    ad, api, site_a, site_b, django_capture_on_commit_callbacks, tmp_path
):
    _credential(ad)
    run = _run("ws-rm", site=site_a)
    join = _provisioned(run, django_capture_on_commit_callbacks)
    member = ad.member("WS-RM")
    saved = tmp_path / "ws-rm.txt"
    saved.write_text(credentials.decrypt(join.blob_ciphertext))  # plain base64 loads too
    assert member.net("offlinejoin", "requestodj", f"loadfile={saved}").returncode == 0
    assert member.net("ads", "testjoin").returncode == 0

    asker, approver = make_user("Operator", sites=[site_a]), make_user("Operator", sites=[site_a])
    outsider = make_user("Operator", sites=[site_b])
    url = f"/api/v1/offline-joins/{join.pk}/remove-account"
    assert api(outsider).post(url, {}, format="json").status_code == 404
    assert api(make_user("User", sites=[site_a])).post(url, {}, format="json").status_code == 403
    answer = api(asker).post(url, {"reason": "machine scrapped"}, format="json")
    assert answer.status_code == 202, answer.content
    assert answer.json()["code"] == "approval_required"
    assert api(asker).post(url, {}, format="json").status_code == 409  # already pending
    assert ad.computer_dn("WS-RM") is not None  # nothing happened yet

    request_id = answer.json()["approval_request"]["id"]
    with pytest.raises(approvals.NotAllowed):
        approvals.approve(request_id, outsider)  # no access to the node's site
    approvals.approve(request_id, approver)
    request = ApprovalRequest.objects.get(pk=request_id)
    assert request.status == "executed", request.result
    assert ad.computer_dn("WS-RM") is None
    assert member.net("ads", "testjoin").returncode != 0
    event = AuditEvent.objects.get(action="windows.computer_remove")
    assert event.actor == f"user:{asker.username}" or asker.username in event.actor
    join.refresh_from_db()
    assert join.account_removed_at
    again = api(asker).post(url, {}, format="json")
    assert again.status_code == 400 and "already removed" in again.content.decode()


def test_offline_join_api_is_scoped_and_never_shows_the_blob(
    ad, api, site_a, site_b, django_capture_on_commit_callbacks
):
    _credential(ad)
    mine = _provisioned(_run("ws-api", site=site_a), django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False):
        theirs = domainjoin.request_offline_join(_run("ws-theirs", site=site_b))
    client = api(make_user("User", sites=[site_a]))
    listed = client.get("/api/v1/offline-joins").json()["results"]
    assert [j["id"] for j in listed] == [mine.pk]
    assert "blob" not in str(listed) and credentials.decrypt(mine.blob_ciphertext) not in str(
        listed
    )
    assert client.get(f"/api/v1/offline-joins/{mine.pk}").json()["machine_name"] == "WS-API"
    assert client.get(f"/api/v1/offline-joins/{theirs.pk}").status_code == 404
    assert api(make_user(None, sites=[site_a])).get("/api/v1/offline-joins").status_code == 403
    schema = client.get("/api/v1/schema?format=json").json()
    assert "/api/v1/offline-joins/{id}/remove-account" in schema["paths"]


def test_blob_files_are_normalised_and_bounded():
    text = base64.b64encode(b"\x01" * 90).decode()
    assert normalise_blob(b"\xff\xfe" + (text + "\x00").encode("utf-16-le")) == text
    assert normalise_blob(text.encode() + b"\r\n") == text
    with pytest.raises(SambaError, match="not base64"):
        normalise_blob("not base64!".encode("utf-16"))
    with pytest.raises(SambaError, match="over"):
        normalise_blob(b"A" * (MAX_BLOB_BYTES + 4))


def _configure_ldap(settings, dc: SambaDC) -> None:
    settings.AUTH_LDAP_SERVER_URI = dc.uri
    settings.AUTH_LDAP_BIND_DN = f"CN=Administrator,CN=Users,{BASE_DN}"
    settings.AUTH_LDAP_BIND_PASSWORD = dc.admin_password
    settings.AUTH_LDAP_USER_SEARCH = LDAPSearch(
        f"CN=Users,{BASE_DN}", ldap.SCOPE_SUBTREE, "(sAMAccountName=%(user)s)"
    )
    settings.AUTH_LDAP_GROUP_SEARCH = LDAPSearch(BASE_DN, ldap.SCOPE_SUBTREE, "(objectClass=group)")
    settings.AUTH_LDAP_GROUP_TYPE = NestedActiveDirectoryGroupType()
    settings.AUTH_LDAP_USER_ATTR_MAP = {"first_name": "givenName", "last_name": "sn"}
    settings.AUTH_LDAP_ALWAYS_UPDATE_USER = True
    settings.AUTH_LDAP_REQUIRE_GROUP = None
    settings.AUTH_LDAP_CONNECTION_OPTIONS = {
        ldap.OPT_NETWORK_TIMEOUT: 5,
        ldap.OPT_TIMEOUT: 5,
        ldap.OPT_REFERRALS: 0,
    }
    settings.PUREBOOT_LDAP_ROLE_GROUPS = {
        "Admin": (f"cn=pureboot-admins,cn=users,{BASE_DN}".lower(),),
        "Operator": (f"cn=pureboot-operators,cn=users,{BASE_DN}".lower(),),
    }
    backends = list(settings.AUTHENTICATION_BACKENDS)
    if LDAP_BACKEND not in backends:
        backends.insert(-1, LDAP_BACKEND)
    settings.AUTHENTICATION_BACKENDS = backends


def _roles(username: str) -> set[str]:
    return set(User.objects.get(username=username).groups.values_list("name", flat=True))


def test_ad_users_sign_in_with_their_mapped_roles(ad, client, settings):
    _configure_ldap(settings, ad)
    for name, role in (("ada", "Admin"), ("otto", "Operator")):
        resp = client.post(
            "/admin/login/?next=/admin/",
            {"username": name, "password": PEOPLE[name], "next": "/admin/"},
            REMOTE_ADDR="10.1.0.1",
        )
        assert resp.status_code == 302 and resp["Location"] == "/admin/", (name, resp.status_code)
        assert _roles(name) == {role}
        assert not User.objects.get(username=name).has_usable_password()
        client.logout()
    wrong = client.post(
        "/admin/login/?next=/admin/",
        {"username": "ada", "password": "wrong-" + PEOPLE["ada"], "next": "/admin/"},
        REMOTE_ADDR="10.1.0.2",
    )
    assert wrong.status_code == 200  # the form again: refused
    assert REALM  # the realm the users live in


def test_an_install_never_takes_over_a_computer_account_it_did_not_make(
    ad, django_capture_on_commit_callbacks
):
    """Same name, another node: refused (its install fails, naming why); the same node
    installed again takes its own account back."""
    _credential(ad)
    first = _run("ws-take")
    made = _provisioned(first, django_capture_on_commit_callbacks)
    # While the first is live, a second node joining as WS-TAKE is refused outright.
    other = make_node("installing", hostname="ws-take.elsewhere.test")
    rival = WorkflowRun.objects.create(node=other, version=first.version, token_nonce="r")
    with django_capture_on_commit_callbacks(execute=False):
        join = domainjoin.request_offline_join(rival)
    assert tasks.provision_offline_join.apply(args=[join.pk]).get() == "failed"
    join.refresh_from_db()
    assert f"node {first.node_id} is joining" in join.error
    domainjoin.wipe_for_run(first)
    # Once the first is done, the account is still not the second node's to take.
    again = WorkflowRun.objects.create(node=other, version=first.version, token_nonce="r2")
    with django_capture_on_commit_callbacks(execute=False):
        join = domainjoin.request_offline_join(again)
    assert tasks.provision_offline_join.apply(args=[join.pk]).get() == "failed"
    join.refresh_from_db()
    assert "PureBoot did not make it for this node" in join.error
    again.refresh_from_db()
    other.refresh_from_db()
    assert again.status == "failed" and other.state == "failed"
    assert "offline domain join failed" in again.error
    # The node it was made for may take it again (a reinstall).
    WorkflowRun.objects.filter(pk=first.pk).update(status="succeeded")
    reinstall = WorkflowRun.objects.create(node=first.node, version=first.version, token_nonce="s")
    assert _provisioned(reinstall, django_capture_on_commit_callbacks).status == "ready"
    assert made.machine_name == "WS-TAKE"


def test_a_session_that_cannot_be_set_up_leaves_no_password_file(tmp_path, monkeypatch):
    """A full disk (or any failure) while the files are written removes the folder."""
    monkeypatch.setattr(samba_tools.tempfile, "tempdir", str(tmp_path))
    calls = []

    def fail_on_second(self, name, text):
        calls.append(name)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        original(self, name, text)

    original = samba_tools.Session._write
    monkeypatch.setattr(samba_tools.Session, "_write", fail_on_second)
    with pytest.raises(OSError, match="No space left"):
        with samba_tools.Session(DOMAIN, "Administrator", "Secret-Pa55", dc=""):
            pass
    assert calls[:2] == ["password", "auth"]
    assert list(tmp_path.iterdir()) == []
