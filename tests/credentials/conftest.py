import pytest
from cryptography.fernet import Fernet

from tests.factories import make_user, sealed

PLAINTEXT = "s3cret-Pässwörd-💥-xyzzy"
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
