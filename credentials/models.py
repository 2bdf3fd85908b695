"""Stored credentials: logins PureBoot uses on someone's behalf."""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models


class CredentialKind(models.TextChoices):
    HYPERVISOR = "hypervisor", "Hypervisor login"
    DOMAIN_JOIN = "domain_join", "Domain-join account"
    BMC = "bmc", "BMC login"
    WINDOWS_ADMIN = "windows_admin", "Windows local administrator"
    PRODUCT_KEY = "product_key", "Windows product key"


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
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def has_password(self) -> bool:
        return bool(self.password_ciphertext)

    @property
    def has_private_key(self) -> bool:
        return bool(self.private_key_ciphertext)
