"""Stored credentials: the only code that encrypts or decrypts their secrets.

A credential kept in an external store (Vault/OpenBao, Azure Key Vault) has
no local secret: :func:`reveal` reads it from the store through
:mod:`credentials.stores`, and a changed password is written there as a new
version.

Every write runs in one transaction with its AuditEvent; the audit entry
says which secret changed, never its value. :func:`reveal` is the one way
to get a secret back, and each call is on the audit trail with who (or
which task) asked and why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from audit import services as audit
from pureboot import gate

from . import stores
from .errors import CredentialError, StoreError
from .models import REFERENCE_FIELDS, Credential

SECRET_FIELDS = ("password", "private_key")
EDITABLE_FIELDS = ("name", "kind", "username", "scope", "description", "store", *REFERENCE_FIELDS)
MAX_PASSWORD_CHARS = 1024
MAX_PRIVATE_KEY_CHARS = 16384
MAX_REASON_CHARS = 1000


class HasLabel(Protocol):
    label: str


ActorLike = str | HasLabel


class UndecryptableSecret(CredentialError):
    """No configured key decrypts a stored secret (a key was removed too early)."""


@dataclass(frozen=True)
class Secret:
    """What :func:`reveal` hands back. ``repr`` hides the values."""

    username: str
    password: str
    private_key: str

    def __repr__(self) -> str:
        return f"Secret(username={self.username!r}, password=***, private_key=***)"


def _label(actor: ActorLike) -> str:
    label = actor if isinstance(actor, str) else actor.label
    if not label:
        raise ValueError("credential operations need an actor")
    return label


def _fernets() -> list[Fernet]:
    return [Fernet(k) for k in settings.PUREBOOT_FERNET_KEYS]


def _multi() -> MultiFernet:
    return MultiFernet(_fernets())


def encrypt(plaintext: str) -> str:
    """A Fernet token for ``plaintext`` under the primary key ('' stays '')."""
    if plaintext == "":
        return ""
    return _multi().encrypt(plaintext.encode("utf-8")).decode("ascii")


def _decrypt(token: str) -> str:
    if token == "":
        return ""
    try:
        return _multi().decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise UndecryptableSecret(
            "No key in PUREBOOT_FERNET_KEYS (or the key file) decrypts this secret; "
            "put back the key it was encrypted with."
        ) from None


def decrypt(token: str) -> str:
    """A secret PureBoot keeps for its own use (a migration's iSCSI CHAP secret), in clear.

    Callers hand it only to the machine that needs it, never to a log or a person.
    """
    return _decrypt(token)


def reveal_sealed(token: str) -> str:
    """Open an approval request's sealed secrets, only to store them in a credential.

    Called by the execution of an approved credential request, whose
    ``credential.create``/``credential.update`` audit event (in the same
    transaction) records that the secrets were set; the plaintext goes
    nowhere else.
    """
    return _decrypt(token)


def _set_secrets(credential: Credential, secrets: dict[str, str]) -> list[str]:
    changed = []
    for field in SECRET_FIELDS:
        if field in secrets:
            setattr(credential, f"{field}_ciphertext", encrypt(secrets[field]))
            changed.append(field)
    if changed:
        credential.secret_changed_at = timezone.now()
    return changed


def _secret_changes(changed: list[str]) -> dict[str, Any]:
    # The audit writer redacts values under secret-looking keys anyway; no
    # value, not even ciphertext, is passed to it: only that the field changed.
    return {field: {"before": "[old]", "after": "[new]"} for field in changed}


def _metadata(credential: Credential) -> dict[str, Any]:
    return {f: getattr(credential, f) for f in EDITABLE_FIELDS}


def binding(pk) -> str:
    """What an approved change of credential ``pk`` is bound to (lock it first)."""
    row = Credential.objects.select_for_update().filter(pk=pk).first()
    if row is None:
        return "deleted"
    return gate.binding([row.updated_at, row.secret_changed_at])


def name_binding(name: str) -> str:
    """What an approved creation of credential ``name`` is bound to: the name still free."""
    return "exists" if Credential.objects.filter(name=name).exists() else ""


def _refuse_local_secrets(credential: Credential, secrets: dict[str, str], creating: bool) -> None:
    """An external credential's password is the store's; the rules for what may be sent."""
    if not credential.is_external:
        return
    if creating and secrets:
        raise ValidationError(
            {
                "password": "A credential kept in an external store is created from a secret "
                "that already exists there; send no password or private key."
            }
        )
    if "private_key" in secrets:
        raise ValidationError(
            {"private_key": "A credential kept in an external store has no private key here."}
        )
    if secrets.get("password") == "":
        raise ValidationError(
            {"password": "The password of an external credential cannot be removed here."}
        )


def _check_in_store(credential: Credential) -> None:
    """ValidationError (a 400 for the API) unless the referenced secret can be read."""
    try:
        stores.check(credential)
    except StoreError as exc:
        raise ValidationError({"external_path": str(exc)}) from None


def check_reference(
    fields: dict[str, Any], secrets: dict[str, str], credential: Credential | None = None
) -> None:
    """Check a requested create/change before it waits for approval.

    The reference's shape, the settings' bounds and that the secret exists
    in the store (asked now, and again when the approved change is made);
    the password/private key rules of an external credential; and that the
    store of an existing credential does not change. Raises ValidationError.
    """
    if credential is not None and "store" in fields and fields["store"] != credential.store:
        raise ValidationError(
            {"store": "The store of a credential is fixed; create a new credential instead."}
        )
    current = {f: getattr(credential, f) for f in EDITABLE_FIELDS} if credential else {}
    candidate = Credential(**current)
    for key, value in fields.items():
        if key in EDITABLE_FIELDS:
            setattr(candidate, key, value)
    _refuse_local_secrets(candidate, secrets, creating=credential is None)
    if not candidate.is_external and not any(f in fields for f in REFERENCE_FIELDS):
        return
    exclude = [f.name for f in Credential._meta.fields if f.name not in (*REFERENCE_FIELDS,)]
    candidate.clean_fields(exclude=exclude)
    candidate.clean()
    if candidate.is_external and (credential is None or any(f in fields for f in REFERENCE_FIELDS)):
        _check_in_store(candidate)


def create_credential(
    actor: ActorLike,
    fields: dict[str, Any],
    secrets: dict[str, str] | None = None,
    *,
    approval: gate.Approval,
) -> Credential:
    """Create a credential from metadata ``fields`` and plaintext ``secrets``.

    Only with ``approval`` sealed for creating this name (a four-eye action).
    Raises Django's ``ValidationError`` when the fields are invalid and
    ``gate.InvalidApproval`` when the approval does not fit.
    """
    label = _label(actor)
    name = str(fields.get("name", ""))
    gate.verify(
        approval,
        action="credential.create",
        target=f"credential:new:{name}",
        bound_to=name_binding(name),
    )
    credential = Credential(**{k: v for k, v in fields.items() if k in EDITABLE_FIELDS})
    credential.created_by = credential.updated_by = label
    _refuse_local_secrets(credential, secrets or {}, creating=True)
    changed = _set_secrets(credential, secrets or {})
    credential.full_clean()
    if credential.is_external:
        _check_in_store(credential)
    with transaction.atomic():
        credential.save(force_insert=True)
        audit.record(
            actor=label,
            action="credential.create",
            object_type="credentials.credential",
            object_id=credential.pk,
            changes={k: {"before": None, "after": v} for k, v in _metadata(credential).items()},
            details={"fields_set": changed, **_store_details(credential)},
        )
    return credential


def update_credential(
    pk: int,
    actor: ActorLike,
    fields: dict[str, Any],
    secrets: dict[str, str] | None = None,
    *,
    approval: gate.Approval,
) -> Credential:
    """Change metadata ``fields`` and/or replace ``secrets`` ('' clears one).

    Only with ``approval`` sealed for changing this credential as it is now.
    """
    label = _label(actor)
    with transaction.atomic():
        gate.verify(
            approval, action="credential.change", target=f"credential:{pk}", bound_to=binding(pk)
        )
        credential = Credential.objects.select_for_update().get(pk=pk)
        before = _metadata(credential)
        if "store" in fields and fields["store"] != credential.store:
            raise ValidationError({"store": "The store of a credential is fixed."})
        for key, value in fields.items():
            if key in EDITABLE_FIELDS:
                setattr(credential, key, value)
        secrets = secrets or {}
        _refuse_local_secrets(credential, secrets, creating=False)
        credential.updated_by = label
        if credential.is_external:
            credential.full_clean()
            if any(before[f] != getattr(credential, f) for f in REFERENCE_FIELDS):
                _check_in_store(credential)
            changed, version = _rotate_in_store(credential, secrets)
        else:
            changed, version = _set_secrets(credential, secrets), ""
            credential.full_clean()
        credential.save()
        after = _metadata(credential)
        changes = {
            k: {"before": before[k], "after": after[k]} for k in after if before[k] != after[k]
        }
        changes.update(_secret_changes(changed))
        audit.record(
            actor=label,
            action="credential.update",
            object_type="credentials.credential",
            object_id=credential.pk,
            changes=changes,
            message=("Secret changed: " + ", ".join(changed)) if changed else "",
            details={"fields_changed": changed, **_store_details(credential, version)},
        )
    return credential


def _rotate_in_store(credential: Credential, secrets: dict[str, str]) -> tuple[list[str], str]:
    """Write a new password as a new version in the store: (fields changed, version written).

    A pinned reference moves its pin to the version written, so the new
    password is the one read from now on.
    """
    if "password" not in secrets:
        return [], ""
    version = stores.write(credential, secrets["password"])
    if credential.external_version:
        credential.external_version = version
    credential.secret_changed_at = timezone.now()
    return ["password"], version


def _store_details(credential: Credential, version: str = "") -> dict[str, Any]:
    """What the audit trail says about where an external secret lives (never the value)."""
    if not credential.is_external:
        return {}
    details = {"store": credential.store, "reference": credential.reference}
    if version:
        details["store_version"] = version
    return details


def delete_credential(pk: int, actor: ActorLike, *, approval: gate.Approval) -> None:
    """Delete a credential (with ``approval`` sealed for it); the audit keeps its metadata."""
    label = _label(actor)
    with transaction.atomic():
        gate.verify(
            approval, action="credential.delete", target=f"credential:{pk}", bound_to=binding(pk)
        )
        credential = Credential.objects.select_for_update().get(pk=pk)
        audit.record(
            actor=label,
            action="credential.delete",
            object_type="credentials.credential",
            object_id=credential.pk,
            changes={k: {"before": v, "after": None} for k, v in _metadata(credential).items()},
        )
        credential.delete()


def reveal(credential: Credential | int, actor: ActorLike, reason: str) -> Secret:
    """Decrypt a credential's secrets for ``actor`` (a user or ``task:<name>``).

    Writes a ``credential.reveal`` AuditEvent naming the actor and the
    reason in the same transaction. A credential kept in an external store
    is read from the store now (the audit event names the reference and the
    version read). Raises ``ValueError`` without a reason,
    ``Credential.DoesNotExist``, :class:`UndecryptableSecret` and
    :class:`StoreError` (the store down, refusing, or without the secret).
    """
    label = _label(actor)
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("revealing a credential needs a reason")
    pk = credential.pk if isinstance(credential, Credential) else credential
    with transaction.atomic():
        stored = Credential.objects.get(pk=pk)
        version = ""
        if stored.is_external:
            password, version = stores.read(stored)
            secret = Secret(username=stored.username, password=password, private_key="")
        else:
            secret = Secret(
                username=stored.username,
                password=_decrypt(stored.password_ciphertext),
                private_key=_decrypt(stored.private_key_ciphertext),
            )
        audit.record(
            actor=label,
            action="credential.reveal",
            object_type="credentials.credential",
            object_id=stored.pk,
            message=reason[:MAX_REASON_CHARS],
            details={
                "name": stored.name,
                "reason": reason[:MAX_REASON_CHARS],
                **_store_details(stored, version),
            },
        )
    return secret


@dataclass(frozen=True)
class RotationReport:
    credentials: int
    reencrypted: int
    already_current: int

    def __str__(self) -> str:
        return (
            f"{self.credentials} credentials: {self.reencrypted} secrets re-encrypted "
            f"under the primary key, {self.already_current} already current"
        )


def reencrypt(token: str, what: str) -> str | None:
    """``token`` under the primary key, or None when it already is.

    Raises :class:`UndecryptableSecret` naming ``what`` when no configured key
    decrypts it. Used by :func:`rotate_keys` and by other stores of sealed
    tokens (approval requests' secrets) that rotate in the same transaction.
    """
    fernets = _fernets()
    try:
        fernets[0].decrypt(token.encode("ascii"))
        return None
    except InvalidToken:
        pass
    try:
        return MultiFernet(fernets).rotate(token.encode("ascii")).decode("ascii")
    except InvalidToken:
        raise UndecryptableSecret(
            f"{what}: no configured key decrypts it; nothing was re-encrypted."
        ) from None


SealedStore = Callable[[Callable[[str, str], "str | None"]], int]


def rotate_keys(
    actor: ActorLike, *, new_key_added: bool = False, also: Sequence[SealedStore] = ()
) -> RotationReport:
    """Re-encrypt every secret that the primary key does not already encrypt.

    ``also`` are other stores of tokens sealed with the same keys; each is
    called with :func:`reencrypt` inside the same transaction and returns how
    many tokens it re-encrypted. One transaction: either every secret moves
    to the primary key or none does. Running it again re-encrypts nothing.
    Raises :class:`UndecryptableSecret` (and changes nothing) when some
    secret is readable by no configured key.
    """
    label = _label(actor)
    keys_configured = len(_fernets())
    reencrypted = current = 0
    with transaction.atomic():
        rows = list(Credential.objects.select_for_update().order_by("pk"))
        for credential in rows:
            fresh = {}
            for field in SECRET_FIELDS:
                token = getattr(credential, f"{field}_ciphertext")
                if not token:
                    continue
                rotated = reencrypt(token, f"Credential {credential.name!r} ({field})")
                if rotated is None:
                    current += 1
                else:
                    fresh[f"{field}_ciphertext"] = rotated
            if fresh:
                Credential.objects.filter(pk=credential.pk).update(**fresh)
                reencrypted += len(fresh)
        for store in also:
            reencrypted += store(reencrypt)
        report = RotationReport(len(rows), reencrypted, current)
        audit.record(
            actor=label,
            action="credential.rotate_keys",
            object_type="credentials.credential",
            message=str(report),
            details={
                "count": report.credentials,
                "reencrypted": report.reencrypted,
                "already_current": report.already_current,
                "keys_configured": keys_configured,
                "new_key_generated": new_key_added,
            },
        )
    return report
