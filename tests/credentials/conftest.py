import pytest
from cryptography.fernet import Fernet

from credentials import storeconfig
from tests.factories import make_user, sealed

from .openbao import OpenBao

PLAINTEXT = "s3cret-Pässwörd-💥-xyzzy"
STORED = "st0re-Pässwörd-🔑"
PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA-plainkey\n"


@pytest.fixture
def keys(settings):
    """A fresh single-key set for each test (never the developer's var/ key)."""
    settings.PUREBOOT_FERNET_KEYS = [Fernet.generate_key().decode()]
    return settings.PUREBOOT_FERNET_KEYS


@pytest.fixture
def credential(db, keys):
    from credentials import services as credentials

    return credentials.create_credential(
        "user:setup",
        {"name": "ovirt-prod", "kind": "hypervisor", "username": "admin@internal"},
        {"password": PLAINTEXT, "private_key": PRIVATE_KEY},
        approval=sealed("credential.create", "credential:new:ovirt-prod", ""),
    )


@pytest.fixture
def admin_user(db):
    return make_user("Admin", username="alice-admin")


@pytest.fixture
def operator(db):
    return make_user("Operator", username="oscar-op")


@pytest.fixture
def auditor(db):
    return make_user("Auditor", username="audrey-aud")


@pytest.fixture
def plain_user(db):
    return make_user("User", username="ursula-user")


@pytest.fixture(scope="session")
def openbao(tmp_path_factory):
    """One real OpenBao dev server for the session's store tests."""
    server = OpenBao(tmp_path_factory.mktemp("openbao")).start()
    yield server
    server.stop()


@pytest.fixture
def vault(openbao, settings, tmp_path, keys, request):
    """PureBoot pointed at the OpenBao with a token file; a secret of this test's own.

    Returns the secret's path (under the ``pureboot/`` prefix, mount ``secret``).
    """
    token_file = tmp_path / "vault-token"
    token_file.write_text(openbao.root_token + "\n")
    settings.PUREBOOT_VAULT = storeconfig.vault_config(
        {
            "PUREBOOT_VAULT_URL": openbao.url,
            "PUREBOOT_VAULT_TOKEN_FILE": str(token_file),
            "PUREBOOT_VAULT_PATH_PREFIX": "pureboot/",
        }
    )
    path = f"pureboot/{request.node.name[:60]}"
    path = "".join(c if c.isalnum() or c in "._-/" else "-" for c in path)
    openbao.root().secrets.kv.v2.create_or_update_secret(
        path=path, secret={"password": STORED, "other": "x"}, mount_point="secret"
    )
    return path
