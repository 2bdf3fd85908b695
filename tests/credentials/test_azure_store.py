"""Credentials kept in Azure Key Vault, read through the Azure SDK from a FAKE Key Vault.

No Key Vault runs outside Azure: :mod:`tests.credentials.fake_azure` is a
local HTTPS server speaking Key Vault's documented secrets REST and the
Entra ID token endpoint, so the real SDK (azure-identity's
ClientSecretCredential, azure-keyvault-secrets' SecretClient) goes through
its challenge, sign-in and calls.
"""

from __future__ import annotations

import socket

import pytest

from audit.models import AuditEvent
from credentials import services as credentials
from credentials import storeconfig
from credentials.models import Credential
from tests.factories import make_user, sealed

from .fake_azure import CLIENT_ID, TENANT, VAULT_HOST, FakeAzure

pytestmark = pytest.mark.django_db

URL = "/api/v1/credentials"


@pytest.fixture(scope="module")
def fake_azure(tmp_path_factory):
    server = FakeAzure(tmp_path_factory.mktemp("fake-azure")).start()
    yield server
    server.stop()


@pytest.fixture
def azure(fake_azure, settings, tmp_path, keys, monkeypatch):
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):  # the fake's name, as /etc/hosts would have it
        return real("127.0.0.1" if host == VAULT_HOST else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    secret_file = tmp_path / "client-secret"
    secret_file.write_text(fake_azure.client_secret)
    settings.PUREBOOT_AZURE_KEYVAULT = storeconfig.azure_config(
        {
            "PUREBOOT_AZURE_KEYVAULT_URL": fake_azure.url,
            "PUREBOOT_AZURE_TENANT_ID": TENANT,
            "PUREBOOT_AZURE_CLIENT_ID": CLIENT_ID,
            "PUREBOOT_AZURE_CLIENT_SECRET_FILE": str(secret_file),
            "PUREBOOT_AZURE_AUTHORITY_HOST": fake_azure.url,
            "PUREBOOT_AZURE_CA_FILE": str(fake_azure.cert_file),
        }
    )
    return fake_azure


def _make(name: str, secret: str, **extra) -> Credential:
    return credentials.create_credential(
        "user:setup",
        {
            "name": name,
            "kind": "domain_join",
            "username": "CORP\\svc-join",
            "store": "azure",
            "external_path": secret,
            **extra,
        },
        approval=sealed("credential.create", f"credential:new:{name}", ""),
    )


def test_reveal_reads_key_vault_and_rotation_sets_a_new_version(azure, api, admin_user):
    first = azure.put("corp-join", "j0in-1")
    credential = _make("corp-join", "corp-join")
    assert credentials.reveal(credential, "task:test", "join").password == "j0in-1"
    event = AuditEvent.objects.filter(action="credential.reveal").latest("pk")
    assert event.details["reference"] == "corp-join" and event.details["store_version"] == first
    azure.put("corp-join", "j0in-2")
    assert credentials.reveal(credential, "task:test", "join").password == "j0in-2"
    pinned = _make("pinned-join", "corp-join", external_version=first)
    assert credentials.reveal(pinned, "task:test", "join").password == "j0in-1"

    asked = api(admin_user).patch(f"{URL}/{pinned.pk}", {"password": "r0t"}, format="json")
    assert asked.status_code == 202, asked.content
    second = make_user("Admin", username="bert-admin")
    done = api(second).post(f"/api/v1/approvals/{asked.data['approval_request']['id']}/approve")
    assert done.data["status"] == "executed", done.data["result"]
    pinned.refresh_from_db()
    assert pinned.external_version == azure.secrets["corp-join"][-1][0] != first
    assert azure.secrets["corp-join"][-1][1] == "r0t"
    assert credentials.reveal(pinned, "task:test", "join").password == "r0t"
    update = AuditEvent.objects.filter(action="credential.update").latest("pk")
    assert update.details["store_version"] == pinned.external_version
    assert "r0t" not in str(update.details)


def test_missing_forbidden_and_bad_sign_in_are_clear_errors(azure, api, admin_user, settings):
    body = {"name": "nope", "kind": "bmc", "username": "u", "store": "azure"}
    missing = api(admin_user).post(URL, {**body, "external_path": "not-there"}, format="json")
    assert missing.status_code == 400 and "no such secret" in str(missing.data)
    hostile = api(admin_user).post(URL, {**body, "external_path": "../keys/x"}, format="json")
    assert hostile.status_code == 400 and "external_path" in hostile.data
    azure.put("locked", "v")
    made = _make("locked", "locked")
    azure.forbidden.add("locked")
    with pytest.raises(credentials.StoreError) as denied:
        credentials.reveal(made, "task:test", "check")
    assert "Azure Key Vault locked" in str(denied.value) and "permission denied" in str(
        denied.value
    )
    azure.forbidden.discard("locked")
    # A wrong client secret: sign-in refused, the secret never in the message.
    with open(settings.PUREBOOT_AZURE_KEYVAULT["client_secret_file"], "w") as fh:
        fh.write("wrong-client-secret")
    with pytest.raises(credentials.StoreError) as refused:
        credentials.reveal(made, "task:test", "check")
    assert "sign-in refused" in str(refused.value)
    assert "wrong-client-secret" not in str(refused.value)
    assert azure.client_secret not in str(refused.value)
