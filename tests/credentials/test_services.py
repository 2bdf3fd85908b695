"""Encryption at rest, audited reveal, key loading and key rotation."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection

from audit.models import AuditEvent
from credentials import keys as fernet_keys
from credentials import services as credentials
from credentials.models import Credential
from tests.factories import sealed_credential

from .conftest import PLAINTEXT, PRIVATE_KEY

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def _raw_columns(pk: int) -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT password_ciphertext, private_key_ciphertext FROM pureboot_credential "
            "WHERE id = %s",
            [pk],
        )
        return cursor.fetchone()


def test_round_trip(credential):
    secret = credentials.reveal(credential, "user:alice", "check the hypervisor login")
    assert secret.password == PLAINTEXT
    assert secret.private_key == PRIVATE_KEY
    assert secret.username == "admin@internal"
    assert PLAINTEXT not in repr(secret)


def test_raw_column_holds_ciphertext_not_plaintext(credential):
    password, private_key = _raw_columns(credential.pk)
    assert password and private_key
    assert PLAINTEXT not in password and "plainkey" not in private_key
    Fernet(django_settings.PUREBOOT_FERNET_KEYS[0]).decrypt(password.encode())


def test_dumpdata_and_database_file_hold_no_plaintext(credential):
    out = io.StringIO()
    call_command("dumpdata", stdout=out)
    dump = out.getvalue()
    assert "ovirt-prod" in dump  # the credential is in the dump...
    assert PLAINTEXT not in dump and "plainkey" not in dump  # ...its secrets are not
    if connection.vendor != "sqlite":
        return
    # The database file's bytes, free pages included (the test database lives
    # in memory; serialize() gives exactly what it would write to disk).
    connection.ensure_connection()
    data = connection.connection.serialize()
    assert b"ovirt-prod" in data
    assert PLAINTEXT.encode() not in data and b"plainkey" not in data


def test_reveal_is_audited_with_actor_and_reason(credential):
    before = AuditEvent.objects.count()
    credentials.reveal(credential.pk, "task:hypervisors.sync", "sync VM inventory")
    event = AuditEvent.objects.order_by("-seq").first()
    assert AuditEvent.objects.count() == before + 1
    assert event.action == "credential.reveal"
    assert event.actor == "task:hypervisors.sync"
    assert event.object_id == str(credential.pk)
    assert event.details["reason"] == "sync VM inventory"
    assert PLAINTEXT not in str(event.details) + event.message


def test_reveal_needs_a_reason(credential):
    before = AuditEvent.objects.count()
    with pytest.raises(ValueError, match="reason"):
        credentials.reveal(credential, "user:alice", "  ")
    assert AuditEvent.objects.count() == before


def test_create_update_delete_are_audited_without_secrets(credential):
    created = AuditEvent.objects.get(action="credential.create")
    assert created.details == {"fields_set": ["password", "private_key"]}
    credentials.update_credential(
        credential.pk,
        "user:alice",
        {"description": "prod"},
        {"password": "n3w-Secret!"},
        approval=sealed_credential("credential.change", credential.pk),
    )
    updated = AuditEvent.objects.get(action="credential.update")
    assert updated.changes["description"] == {"before": "", "after": "prod"}
    assert updated.changes["password"] == {"before": "[redacted]", "after": "[redacted]"}
    assert "password" in updated.message
    credentials.delete_credential(
        credential.pk, "user:alice", approval=sealed_credential("credential.delete", credential.pk)
    )
    deleted = AuditEvent.objects.get(action="credential.delete")
    assert deleted.changes["name"] == {"before": "ovirt-prod", "after": None}
    everything = "".join(
        str(e.changes) + str(e.details) + e.message for e in AuditEvent.objects.all()
    )
    for secret in (PLAINTEXT, "n3w-Secret!", "plainkey"):
        assert secret not in everything
    assert not Credential.objects.exists()


def test_empty_secret_clears_it(credential):
    credentials.update_credential(
        credential.pk,
        "user:alice",
        {},
        {"private_key": ""},
        approval=sealed_credential("credential.change", credential.pk),
    )
    credential.refresh_from_db()
    assert credential.has_password and not credential.has_private_key


def test_rotation_then_old_key_removed(credential, settings):
    old = settings.PUREBOOT_FERNET_KEYS[0]
    new = Fernet.generate_key().decode()
    settings.PUREBOOT_FERNET_KEYS = [new, old]
    out = io.StringIO()
    call_command("rotate_keys", stdout=out)
    assert "2 secrets re-encrypted" in out.getvalue()
    out = io.StringIO()
    call_command("rotate_keys", stdout=out)  # idempotent
    assert "0 secrets re-encrypted" in out.getvalue()
    assert "2 already current" in out.getvalue()
    settings.PUREBOOT_FERNET_KEYS = [new]
    assert credentials.reveal(credential, "user:alice", "after rotation").password == PLAINTEXT
    events = AuditEvent.objects.filter(action="credential.rotate_keys").order_by("seq")
    assert [e.details["reencrypted"] for e in events] == [2, 0]


def test_rotation_with_new_key_in_key_file(credential, settings, tmp_path):
    path = tmp_path / "fernet_keys"
    old = settings.PUREBOOT_FERNET_KEYS[0]
    path.write_text(old + "\n")
    settings.PUREBOOT_FERNET_KEYS_SOURCE = str(path)
    call_command("rotate_keys", "--new-key", stdout=io.StringIO())
    lines = path.read_text().split()
    assert len(lines) == 2 and lines[1] == old
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    settings.PUREBOOT_FERNET_KEYS = [lines[0]]  # the old key is no longer needed
    assert credentials.reveal(credential, "user:alice", "after rotation").password == PLAINTEXT


def test_new_key_refused_when_keys_come_from_the_environment(credential, settings):
    settings.PUREBOOT_FERNET_KEYS_SOURCE = fernet_keys.ENV_VAR
    with pytest.raises(CommandError, match="PUREBOOT_FERNET_KEYS is set"):
        call_command("rotate_keys", "--new-key")


def test_rotation_without_the_needed_key_changes_nothing(credential, settings):
    stored = _raw_columns(credential.pk)
    settings.PUREBOOT_FERNET_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CommandError, match="no configured key decrypts"):
        call_command("rotate_keys")
    assert _raw_columns(credential.pk) == stored
    with pytest.raises(credentials.UndecryptableSecret):
        credentials.reveal(credential, "user:alice", "wrong key")


@pytest.mark.parametrize(
    "raw",
    ["not-a-key", "", " , ", Fernet.generate_key().decode() + ",short"],
)
def test_bad_key_set_is_a_clear_error(raw):
    with pytest.raises(ImproperlyConfigured, match="PUREBOOT_FERNET_KEYS") as excinfo:
        fernet_keys.parse(raw)
    assert "short" not in str(excinfo.value) and "not-a-key" not in str(excinfo.value)


def test_key_file_is_created_with_mode_600(tmp_path, monkeypatch):
    monkeypatch.delenv(fernet_keys.ENV_VAR, raising=False)
    keys, source = fernet_keys.load_keys(tmp_path)
    path = tmp_path / "fernet_keys"
    assert source == str(path) and len(keys) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert fernet_keys.load_keys(tmp_path)[0] == keys  # read back, not regenerated
    path.write_text("garbage\n")
    with pytest.raises(ImproperlyConfigured, match="fernet_keys"):
        fernet_keys.load_keys(tmp_path)


def test_bad_environment_key_stops_manage_py(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PUREBOOT_VAR_DIR": str(tmp_path),
        "PUREBOOT_FERNET_KEYS": "definitely-not-a-fernet-key",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "PUREBOOT_FERNET_KEYS: key 1 of 1 is not a valid Fernet key" in result.stderr
    assert "definitely-not-a-fernet-key" not in result.stderr


def _ask_to_change(credential, secret: str):
    from approvals import services as approvals
    from tests.factories import make_user

    return approvals.request_other(
        "credential.change",
        make_user("Admin", username="asker"),
        target_id=str(credential.pk),
        target_label=credential.name,
        params={"fields": {}, "secrets_set": ["password"]},
        secrets={"password": secret},
        reason="rotate the hypervisor password",
    )


def test_a_pending_request_holds_its_secret_sealed_and_rotation_moves_it(credential, settings):
    from approvals import services as approvals
    from approvals.models import ApprovalRequest
    from tests.factories import make_user

    pending = _ask_to_change(credential, "next-" + PLAINTEXT)
    out = io.StringIO()
    call_command("dumpdata", stdout=out)
    assert "next-" + PLAINTEXT not in out.getvalue()
    assert pending.sealed and pending.sealed in out.getvalue()  # only the sealed form
    old = settings.PUREBOOT_FERNET_KEYS[0]
    new = Fernet.generate_key().decode()
    settings.PUREBOOT_FERNET_KEYS = [new, old]
    call_command("rotate_keys", stdout=io.StringIO())
    settings.PUREBOOT_FERNET_KEYS = [new]  # the old key is gone: the request still opens
    done = approvals.approve(pending.pk, make_user("Admin", username="second"))
    done = ApprovalRequest.objects.get(pk=done.pk)
    assert done.status == "executed", done.result
    assert done.sealed == ""
    assert credentials.reveal(credential, "user:alice", "check").password == "next-" + PLAINTEXT
