"""Credentials kept in HashiCorp Vault/OpenBao, tested against a real OpenBao (``bao -dev``).

PureBoot keeps a reference (mount, path, field, optional version); the
password is read from the store at every reveal (audited as a local one),
a rotation writes a new KV v2 version, and a reference must point at a
secret that exists, inside the mounts and path prefix the settings allow.
Only Admins create or change references, and a second Admin approves.
"""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError

from approvals.models import ApprovalRequest
from audit.models import AuditEvent
from credentials import services as credentials
from credentials import storeconfig
from credentials.models import Credential
from credentials.stores import vault as vault_client
from tests.factories import make_user, sealed, sealed_credential

from .conftest import STORED

pytestmark = pytest.mark.django_db

URL = "/api/v1/credentials"


def _make(name: str, path: str, **extra) -> Credential:
    return credentials.create_credential(
        "user:setup",
        {
            "name": name,
            "kind": "windows_admin",
            "username": "Administrator",
            "store": "vault",
            "external_mount": "secret",
            "external_path": path,
            **extra,
        },
        approval=sealed("credential.create", f"credential:new:{name}", ""),
    )


def _approve(api, response):
    assert response.status_code == 202, response.content
    request_id = response.data["approval_request"]["id"]
    second = make_user("Admin", username="bert-admin")
    done = api(second).post(f"/api/v1/approvals/{request_id}/approve", {})
    assert done.status_code == 200, done.content
    assert done.data["status"] == "executed", done.data["result"]


def test_reveal_reads_the_store_at_use_time_and_is_audited(vault, openbao):
    credential = _make("win-admin", vault)
    assert not credential.password_ciphertext and credential.has_password
    secret = credentials.reveal(credential, "task:test", "unattend for node 7")
    assert secret.password == STORED and secret.username == "Administrator"
    event = AuditEvent.objects.filter(action="credential.reveal").latest("pk")
    assert event.actor == "task:test" and event.message == "unattend for node 7"
    assert event.details["reference"] == f"secret/{vault}#password"
    assert event.details["store_version"] == "1"
    assert STORED not in str(event.details) + event.message
    # Changed in the store: the next reveal reads the new value.
    openbao.root().secrets.kv.v2.create_or_update_secret(
        path=vault, secret={"password": "second"}, mount_point="secret"
    )
    assert credentials.reveal(credential, "task:test", "again").password == "second"


def test_a_pinned_version_and_a_named_field(vault, openbao):
    openbao.root().secrets.kv.v2.create_or_update_secret(
        path=vault, secret={"password": "newer", "admin_pw": "field"}, mount_point="secret"
    )
    pinned = _make("pinned", vault, external_version="1")
    assert credentials.reveal(pinned, "task:test", "check").password == STORED
    keyed = _make("keyed", vault, external_key="admin_pw")
    assert credentials.reveal(keyed, "task:test", "check").password == "field"


def test_rotation_writes_a_new_version_and_moves_a_pin(vault, openbao, api, admin_user):
    credential = _make("rotated", vault, external_version="1")
    asked = api(admin_user).patch(
        f"{URL}/{credential.pk}", {"password": "r0tated", "reason": "yearly"}, format="json"
    )
    assert "r0tated" not in asked.content.decode()
    pending = ApprovalRequest.objects.get(pk=asked.data["approval_request"]["id"])
    assert pending.sealed and "r0tated" not in pending.sealed
    _approve(api, asked)
    stored = openbao.root().secrets.kv.v2.read_secret_version(
        path=vault, mount_point="secret", raise_on_deleted_version=True
    )["data"]
    assert stored["metadata"]["version"] == 2
    assert stored["data"] == {"password": "r0tated", "other": "x"}  # other fields kept
    credential.refresh_from_db()
    assert credential.external_version == "2" and credential.secret_changed_at
    assert credentials.reveal(credential, "task:test", "check").password == "r0tated"
    event = AuditEvent.objects.filter(action="credential.update").latest("pk")
    assert event.details["store_version"] == "2" and event.details["fields_changed"] == ["password"]
    assert "r0tated" not in str(event.details) + str(event.changes)


def test_api_creates_a_reference_only_to_an_existing_secret(vault, api, admin_user):
    client = api(admin_user)
    body = {
        "name": "from-store",
        "kind": "windows_admin",
        "username": "Administrator",
        "store": "vault",
        "external_mount": "secret",
        "external_path": vault,
    }
    missing = client.post(URL, {**body, "external_path": "pureboot/nothing-here"}, format="json")
    assert missing.status_code == 400, missing.content
    assert "no such secret" in str(missing.data) and "pureboot/nothing-here" in str(missing.data)
    no_field = client.post(URL, {**body, "external_key": "nope"}, format="json")
    assert no_field.status_code == 400 and "no text field 'nope'" in str(no_field.data)
    with_password = client.post(URL, {**body, "password": "x"}, format="json")
    assert with_password.status_code == 400 and "already exists there" in str(with_password.data)
    _approve(api, client.post(URL, body, format="json"))
    made = Credential.objects.get(name="from-store")
    shown = client.get(f"{URL}/{made.pk}")
    assert shown.data["store"] == "vault" and shown.data["external_path"] == vault
    assert shown.data["has_password"] is True and STORED not in shown.content.decode()
    # The store is fixed; a private key or an emptied password are refused.
    for change, field in (
        ({"store": "local"}, "store"),
        ({"private_key": "k"}, "private_key"),
        ({"password": ""}, "password"),
    ):
        refused = client.patch(f"{URL}/{made.pk}", change, format="json")
        assert refused.status_code == 400 and field in refused.data, refused.content


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"external_path": "pureboot/../admin/root"}, "external_path"),
        ({"external_path": "/pureboot/x"}, "external_path"),
        ({"external_path": "pureboot//x"}, "external_path"),
        ({"external_path": "pureboot/%2e%2e/x"}, "external_path"),
        ({"external_path": "other-team/db-root"}, "external_path"),  # outside the prefix
        ({"external_path": "pureboot/" + "a" * 300}, "external_path"),
        ({"external_mount": "sys"}, "external_mount"),  # not an allowed mount
        ({"external_key": "x" * 500}, "external_key"),
        ({"external_version": "-1"}, "external_version"),
        ({"external_path": ["pureboot/a"]}, "external_path"),
    ],
)
def test_hostile_references_are_refused(vault, api, admin_user, change, field):
    body = {
        "name": "hostile",
        "kind": "bmc",
        "username": "root",
        "store": "vault",
        "external_mount": "secret",
        "external_path": vault,
        **change,
    }
    refused = api(admin_user).post(URL, body, format="json")
    assert refused.status_code == 400, refused.content
    assert field in refused.data
    assert not ApprovalRequest.objects.exists()


def test_operators_cannot_point_a_credential_at_the_store(vault, api, operator):
    body = {
        "name": "sneaky",
        "kind": "windows_admin",
        "username": "x",
        "store": "vault",
        "external_mount": "secret",
        "external_path": vault,
    }
    assert api(operator).post(URL, body, format="json").status_code == 403
    credential = _make("existing", vault)
    repoint = api(operator).patch(
        f"{URL}/{credential.pk}", {"external_path": "pureboot/other"}, format="json"
    )
    assert repoint.status_code == 403
    listed = api(operator).get(f"{URL}/{credential.pk}")
    assert set(listed.data) == {"id", "name", "kind"}  # no reference shown either
    assert not ApprovalRequest.objects.exists()


def test_store_down_or_denying_is_a_clear_error_without_the_token(vault, openbao, settings):
    credential = _make("guarded", vault)
    # A token whose policy reads nothing: permission denied, naming store and path.
    weak = openbao.root().auth.token.create(policies=["default"], ttl="10m")["auth"]["client_token"]
    token_file = settings.PUREBOOT_VAULT["token_file"]
    with open(token_file, "w") as fh:
        fh.write(weak)
    with pytest.raises(credentials.StoreError) as denied:
        credentials.reveal(credential, "task:test", "check")
    message = str(denied.value)
    assert "permission denied" in message and f"secret/{vault}" in message
    assert weak not in message and openbao.root_token not in message
    # Nothing answers at the URL: unreachable, also without the token.
    settings.PUREBOOT_VAULT = {**settings.PUREBOOT_VAULT, "url": "http://127.0.0.1:9"}
    with pytest.raises(credentials.CredentialError) as down:
        credentials.reveal(credential, "task:test", "check")
    assert "unreachable" in str(down.value) and vault in str(down.value)
    assert weak not in str(down.value)
    # An unreadable token file names the file, never a value.
    settings.PUREBOOT_VAULT = {**settings.PUREBOOT_VAULT, "token_file": "/nonexistent/token"}
    with pytest.raises(credentials.StoreError, match="cannot read PUREBOOT_VAULT_TOKEN_FILE"):
        credentials.reveal(credential, "task:test", "check")
    assert not AuditEvent.objects.filter(action="credential.reveal").exists()


def test_approle_sign_in(vault, openbao, settings, tmp_path):
    root = openbao.root()
    if "approle/" not in root.sys.list_auth_methods()["data"]:
        root.sys.enable_auth_method("approle")
    root.sys.create_or_update_policy(
        "pureboot-read", 'path "secret/data/pureboot/*" { capabilities = ["read"] }'
    )
    root.auth.approle.create_or_update_approle("pureboot", token_policies=["pureboot-read"])
    role_id = root.auth.approle.read_role_id("pureboot")["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id("pureboot")["data"]["secret_id"]
    secret_file = tmp_path / "secret-id"
    secret_file.write_text(secret_id)
    credential = _make("approle", vault)
    settings.PUREBOOT_VAULT = storeconfig.vault_config(
        {
            "PUREBOOT_VAULT_URL": openbao.url,
            "PUREBOOT_VAULT_ROLE_ID": role_id,
            "PUREBOOT_VAULT_SECRET_ID_FILE": str(secret_file),
        }
    )
    assert credentials.reveal(credential, "task:test", "check").password == STORED
    secret_file.write_text("not-the-secret-id")
    with pytest.raises(credentials.StoreError, match="AppRole sign-in failed") as refused:
        credentials.reveal(credential, "task:test", "check")
    assert "not-the-secret-id" not in str(refused.value)


def test_local_credentials_are_unchanged(credential):
    assert credential.store == "local" and credential.reference == ""
    assert credentials.reveal(credential, "task:test", "check").password
    event = AuditEvent.objects.filter(action="credential.reveal").latest("pk")
    assert "reference" not in event.details


def test_a_reference_without_a_configured_store_is_refused(settings, keys, api, admin_user):
    settings.PUREBOOT_VAULT = {}
    body = {"name": "x", "kind": "bmc", "username": "u", "store": "vault"}
    body |= {"external_mount": "secret", "external_path": "a/b"}
    refused = api(admin_user).post(URL, body, format="json")
    assert refused.status_code == 400 and "PUREBOOT_VAULT_URL" in str(refused.data["store"])
    local = {"name": "y", "kind": "bmc", "username": "u", "external_path": "a/b"}
    assert api(admin_user).post(URL, local, format="json").status_code == 400


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PUREBOOT_VAULT_TOKEN_FILE": "/t"}, "PUREBOOT_VAULT_URL is not"),
        ({"PUREBOOT_VAULT_URL": "vault:8200"}, "http(s) URL"),
        ({"PUREBOOT_VAULT_URL": "http://v"}, "one way to sign in"),
        (
            {"PUREBOOT_VAULT_URL": "http://v", "PUREBOOT_VAULT_TOKEN_FILE": "token"},
            "absolute path",
        ),
        (
            {"PUREBOOT_VAULT_URL": "http://v", "PUREBOOT_VAULT_ROLE_ID": "r"},
            "go together",
        ),
        (
            {
                "PUREBOOT_VAULT_URL": "http://v",
                "PUREBOOT_VAULT_TOKEN_FILE": "/t",
                "PUREBOOT_VAULT_PATH_PREFIX": "../x",
            },
            "PUREBOOT_VAULT_PATH_PREFIX",
        ),
        (
            {
                "PUREBOOT_VAULT_URL": "http://v",
                "PUREBOOT_VAULT_TOKEN_FILE": "/t",
                "PUREBOOT_VAULT_MOUNTS": "secret,../sys",
            },
            "PUREBOOT_VAULT_MOUNTS",
        ),
        ({"PUREBOOT_AZURE_KEYVAULT_URL": "http://kv"}, "https://"),
        (
            {"PUREBOOT_AZURE_KEYVAULT_URL": "https://kv", "PUREBOOT_AZURE_TENANT_ID": "t"},
            "go together",
        ),
        (
            {
                "PUREBOOT_SECRET_STORE_TIMEOUT": "0",
                "PUREBOOT_VAULT_URL": "http://v",
                "PUREBOOT_VAULT_TOKEN_FILE": "/t",
            },
            "1-300",
        ),
    ],
)
def test_malformed_store_settings_stop_start_up(env, message):
    with pytest.raises(ImproperlyConfigured, match=re.escape(message)):
        storeconfig.vault_config(env)
        storeconfig.azure_config(env)


def test_an_approved_change_rechecks_the_store(vault, openbao):
    credential = _make("moved", vault)
    openbao.root().secrets.kv.v2.delete_metadata_and_all_versions(path=vault, mount_point="secret")
    with pytest.raises(ValidationError, match="no such secret"):
        credentials.update_credential(
            credential.pk,
            "user:setup",
            {"external_key": "other"},
            approval=sealed_credential("credential.change", credential.pk),
        )


def test_a_concurrent_writer_in_the_store_is_not_overwritten(vault, openbao, monkeypatch):
    """Rotation writes with check-and-set on the version it read: a racing write wins."""
    credential = _make("raced", vault)
    real = vault_client._read_version

    def read_then_someone_writes(client, credential, version):
        data = real(client, credential, version)
        openbao.root().secrets.kv.v2.create_or_update_secret(
            path=credential.external_path, secret={"password": "theirs"}, mount_point="secret"
        )
        return data

    monkeypatch.setattr(vault_client, "_read_version", read_then_someone_writes)
    with pytest.raises(credentials.StoreError, match="writing a new version: the store refused"):
        credentials.update_credential(
            credential.pk,
            "user:setup",
            {},
            {"password": "mine"},
            approval=sealed_credential("credential.change", credential.pk),
        )
    monkeypatch.undo()
    assert credentials.reveal(credential, "task:test", "check").password == "theirs"
    credential.refresh_from_db()
    assert credential.secret_changed_at is None
    assert not AuditEvent.objects.filter(action="credential.update").exists()


def test_admin_form_takes_a_reference_and_checks_the_store(vault, client, admin_user):
    admin_user.is_staff = True
    admin_user.save()
    client.force_login(admin_user)
    page = client.get("/admin/credentials/credential/add/").content.decode()
    assert 'name="external_path"' in page and 'name="store"' in page
    body = {
        "name": "admin-made",
        "kind": "windows_admin",
        "username": "Administrator",
        "store": "vault",
        "external_mount": "secret",
        "external_path": "pureboot/absent",
    }
    refused = client.post("/admin/credentials/credential/add/", body)
    assert refused.status_code == 200 and "no such secret" in refused.content.decode()
    assert not ApprovalRequest.objects.exists()
    traversal = client.post(
        "/admin/credentials/credential/add/", {**body, "external_path": "pureboot/../x"}
    )
    assert traversal.status_code == 200 and not ApprovalRequest.objects.exists()
    asked = client.post("/admin/credentials/credential/add/", {**body, "external_path": vault})
    assert asked.status_code == 302, asked.content.decode()[:3000]
    pending = ApprovalRequest.objects.get(action="credential.create")
    assert pending.params["fields"]["external_path"] == vault
    made = _make("shown", vault)
    change = client.get(f"/admin/credentials/credential/{made.pk}/change/").content.decode()
    assert vault in change and STORED not in change
