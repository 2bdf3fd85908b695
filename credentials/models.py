"""Stored credentials: logins PureBoot uses on someone's behalf."""

from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

MAX_REFERENCE_PATH = 255
# A Vault path: segments of letters, digits, ".", "_", "-", each starting with
# a letter or digit, so "..", ".", "//", a leading "/" and "%2e" never pass.
_VAULT_PATH = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9][A-Za-z0-9._-]{0,127}){0,15}"
_VAULT_MOUNT = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
_VAULT_KEY = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"
# Azure: secret names are 1-127 letters, digits and dashes; versions 32 hex digits.
_AZURE_NAME = r"[0-9A-Za-z-]{1,127}"
_AZURE_VERSION = r"[0-9a-f]{32}"


class CredentialKind(models.TextChoices):
    HYPERVISOR = "hypervisor", "Hypervisor login"
    DOMAIN_JOIN = "domain_join", "Domain-join account"
    BMC = "bmc", "BMC login"
    WINDOWS_ADMIN = "windows_admin", "Windows local administrator"
    PRODUCT_KEY = "product_key", "Windows product key"


class SecretStore(models.TextChoices):
    LOCAL = "local", "Stored here (encrypted)"
    VAULT = "vault", "HashiCorp Vault / OpenBao (KV v2)"
    AZURE = "azure", "Azure Key Vault"


REFERENCE_FIELDS = ("external_mount", "external_path", "external_key", "external_version")


class Credential(models.Model):
    """A secret PureBoot uses on someone's behalf (hypervisor, domain join, BMC, Windows).

    The secrets are stored only as Fernet tokens (``*_ciphertext``), written
    and read through :mod:`credentials.services`; nothing else decrypts
    them, and neither the API nor the admin ever shows them.
    """

    name = models.CharField(
        max_length=100,
        unique=True,
        validators=[
            RegexValidator(
                r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                "Letters, digits, dots, dashes and underscores; starting with a letter or digit.",
            )
        ],
        help_text="Unique name other records refer to, e.g. ovirt-prod-api.",
    )
    kind = models.CharField(max_length=20, choices=CredentialKind.choices)
    username = models.CharField(max_length=255)
    scope = models.CharField(
        max_length=255,
        blank=True,
        help_text="Where it applies: a hypervisor URL, an AD domain, a BMC subnet.",
    )
    description = models.TextField(blank=True, max_length=2000)
    store = models.CharField(
        max_length=10,
        choices=SecretStore.choices,
        default=SecretStore.LOCAL,
        help_text="Where the password lives: here (encrypted) or in an external store, "
        "PureBoot keeping only the reference below. Fixed once the credential exists.",
    )
    external_mount = models.CharField(
        max_length=64, blank=True, help_text="Vault/OpenBao: the KV v2 mount, e.g. secret."
    )
    external_path = models.CharField(
        max_length=MAX_REFERENCE_PATH,
        blank=True,
        help_text="Vault/OpenBao: the secret's path under the mount (e.g. pureboot/win-admin); "
        "Azure Key Vault: the secret's name.",
    )
    external_key = models.CharField(
        max_length=128,
        blank=True,
        help_text="Vault/OpenBao: the field of the secret that holds the password "
        "(empty: password).",
    )
    external_version = models.CharField(
        max_length=32,
        blank=True,
        help_text="The version to read (Vault: a number; Azure: the 32-hex version); "
        "empty reads the latest. Rotating a pinned credential moves the pin to the new version.",
    )
    password_ciphertext = models.TextField(blank=True, editable=False)
    private_key_ciphertext = models.TextField(
        blank=True, editable=False, help_text="Encrypted private key or API token."
    )
    secret_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=150, editable=False)

    class Meta:
        db_table = "pureboot_credential"  # the table predates this app
        ordering = ["name"]
        permissions = [("view_credential_names", "Can list credential names and kinds")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=CredentialKind.values), name="credential_kind_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(store__in=SecretStore.values), name="credential_store_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_external(self) -> bool:
        return self.store != SecretStore.LOCAL

    @property
    def has_password(self) -> bool:
        return self.is_external or bool(self.password_ciphertext)

    @property
    def vault_key(self) -> str:
        return self.external_key or "password"

    @property
    def reference(self) -> str:
        """Where the secret lives, for messages and the audit trail ('' for local ones)."""
        if self.store == SecretStore.VAULT:
            where = f"{self.external_mount}/{self.external_path}#{self.vault_key}"
        elif self.store == SecretStore.AZURE:
            where = self.external_path
        else:
            return ""
        return where + (f"@{self.external_version}" if self.external_version else "")

    def clean(self) -> None:
        """Check the reference's shape and that it stays inside what the settings allow.

        Whether the secret exists is asked of the store by the services, not here.
        """
        super().clean()
        errors: dict[str, str] = {}
        if self.store == SecretStore.LOCAL:
            for field in REFERENCE_FIELDS:
                if getattr(self, field):
                    errors[field] = "Only a credential kept in an external store has a reference."
        elif self.store == SecretStore.VAULT:
            errors.update(self._vault_errors())
        elif self.store == SecretStore.AZURE:
            errors.update(self._azure_errors())
        if self.is_external and (self.password_ciphertext or self.private_key_ciphertext):
            errors["store"] = "A credential kept in an external store holds no local secret."
        if errors:
            raise ValidationError(errors)

    def _vault_errors(self) -> dict[str, str]:
        config = settings.PUREBOOT_VAULT
        if not config:
            return {"store": "HashiCorp Vault/OpenBao is not configured (PUREBOOT_VAULT_URL)."}
        errors = {}
        if not re.fullmatch(_VAULT_MOUNT, self.external_mount):
            errors["external_mount"] = "A KV v2 mount name (letters, digits, _ and -)."
        elif self.external_mount not in config["mounts"]:
            errors["external_mount"] = (
                f"Mount {self.external_mount!r} is not one PureBoot may read "
                f"(PUREBOOT_VAULT_MOUNTS: {', '.join(config['mounts'])})."
            )
        if not re.fullmatch(_VAULT_PATH, self.external_path):
            errors["external_path"] = (
                "A relative path of segments made of letters, digits, '.', '_' and '-', "
                "each starting with a letter or digit (no '..', no leading '/')."
            )
        elif not self.external_path.startswith(config["path_prefix"]):
            errors["external_path"] = (
                f"The path must start with {config['path_prefix']!r} (PUREBOOT_VAULT_PATH_PREFIX)."
            )
        if self.external_key and not re.fullmatch(_VAULT_KEY, self.external_key):
            errors["external_key"] = "A field name: letters, digits, '.', '_' and '-'."
        if self.external_version and not re.fullmatch(r"[1-9][0-9]{0,9}", self.external_version):
            errors["external_version"] = "A KV v2 version number (1, 2, ...) or empty for latest."
        return errors

    def _azure_errors(self) -> dict[str, str]:
        if not settings.PUREBOOT_AZURE_KEYVAULT:
            return {"store": "Azure Key Vault is not configured (PUREBOOT_AZURE_KEYVAULT_URL)."}
        errors = {}
        if self.external_mount or self.external_key:
            errors["external_mount"] = "Azure Key Vault references have no mount or key."
        if not re.fullmatch(_AZURE_NAME, self.external_path):
            errors["external_path"] = "An Azure Key Vault secret name: 1-127 letters, digits, -."
        if self.external_version and not re.fullmatch(_AZURE_VERSION, self.external_version):
            errors["external_version"] = "An Azure Key Vault version: 32 hex digits, or empty."
        return errors

    @property
    def has_private_key(self) -> bool:
        return bool(self.private_key_ciphertext)
