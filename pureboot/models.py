"""Project-wide records that belong to no single app: stored credentials,
run-time system settings, emergency access grants and OIDC identities."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models


class CredentialKind(models.TextChoices):
    HYPERVISOR = "hypervisor", "Hypervisor login"
    DOMAIN_JOIN = "domain_join", "Domain-join account"
    BMC = "bmc", "BMC login"


class Credential(models.Model):
    """A login PureBoot uses on someone's behalf (hypervisor, domain join, BMC).

    The secrets are stored only as Fernet tokens (``*_ciphertext``), written
    and read through :mod:`pureboot.credentials`; nothing else decrypts
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


class SystemSetting(models.Model):
    """A system-wide setting changed at run time (through an approved request).

    The environment gives each setting its default (see :mod:`pureboot.config`);
    a row here overrides it. Rows are written only by an executed approval
    request, never directly.
    """

    key = models.CharField(max_length=64, unique=True)
    value = models.JSONField()
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=150, editable=False)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.key} = {self.value!r}"


class EmergencyGrant(models.Model):
    """A role held by one user for a limited time, granted by an approved request.

    The role's permissions count only while ``starts_at <= now < ends_at``
    (checked on every permission check by
    :class:`pureboot.emergency.EmergencyAccessBackend`); ``ended_at`` records
    when the end was noticed and audited, or when it was revoked.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="emergency_grants"
    )
    role = models.CharField(max_length=32)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.CharField(max_length=150, blank=True)
    request = models.OneToOneField(
        "approvals.ApprovalRequest", on_delete=models.PROTECT, related_name="grant"
    )

    class Meta:
        ordering = ["-starts_at", "-pk"]
        permissions = [
            ("request_emergency_access", "Can ask for emergency access for oneself"),
            ("grant_emergency_access", "Can request and approve emergency access for anyone"),
        ]

    def __str__(self) -> str:
        return f"{self.role} for {self.user_id} until {self.ends_at:%Y-%m-%d %H:%M}"


class OIDCIdentity(models.Model):
    """The OpenID Connect subject (issuer + ``sub``) a user signs in as.

    Sign-ins find their user by this pair, never by a name or e-mail address
    the provider may let people change; see :mod:`pureboot.oidc`.
    """

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="oidc_identities")
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["issuer", "subject"]
        verbose_name = "OIDC identity"
        verbose_name_plural = "OIDC identities"
        constraints = [
            models.UniqueConstraint(
                fields=["issuer", "subject"], name="oidcidentity_unique_subject"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"
