"""Accounts: emergency access grants, single sign-on identities and used SAML assertions."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class EmergencyGrant(models.Model):
    """A role held by one user for a limited time, granted by an approved request.

    The role's permissions count only while ``starts_at <= now < ends_at``
    (checked on every permission check by
    :class:`accounts.emergency.EmergencyAccessBackend`); ``ended_at`` records
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
        db_table = "pureboot_emergencygrant"  # the table predates this app
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
    the provider may let people change; see :mod:`accounts.oidc`.
    """

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="oidc_identities")
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "pureboot_oidcidentity"  # the table predates this app
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


class ApproverStanding(models.Model):
    """Since when a user holds a role that can approve four-eye requests.

    Set whenever a role that can approve (:data:`accounts.roles.APPROVER_ROLES`)
    is granted; an account approves only once the cooling-off period
    (``approver_cooling_off_hours``) has passed since then, or since the
    account was made when it has no standing row.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="approver_standing"
    )
    since = models.DateTimeField()

    class Meta:
        ordering = ["-since"]
        permissions = [("grant_role", "Can ask for and approve role changes")]

    def __str__(self) -> str:
        return f"{self.user_id} approver since {self.since:%Y-%m-%d %H:%M}"


class TokenEpoch(models.Model):
    """The generation of a user's API tokens and sessions.

    Every JWT carries the generation it was issued under; raising it (a
    password change, deactivation, a role taken away: :mod:`accounts.tokens`)
    makes every access and refresh token issued before fail at once.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="token_epoch"
    )
    value = models.PositiveBigIntegerField(default=0)
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["user"]

    def __str__(self) -> str:
        return f"{self.user_id} tokens generation {self.value}"


class SAMLIdentity(models.Model):
    """The SAML subject (identity provider + username attribute) a user signs in as.

    Sign-ins find their user by this pair (:mod:`accounts.saml`), so a local
    account or an LDAP or OIDC account of the same name is never taken over.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saml_identities"
    )
    idp = models.CharField("identity provider", max_length=255)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["idp", "subject"]
        verbose_name = "SAML identity"
        verbose_name_plural = "SAML identities"
        constraints = [
            models.UniqueConstraint(fields=["idp", "subject"], name="samlidentity_unique_subject"),
        ]

    def __str__(self) -> str:
        return f"{self.subject} at {self.idp}"


class SAMLAssertionUse(models.Model):
    """A SAML assertion that has signed someone in: each one is accepted once.

    Kept until the assertion itself expires (``expires_at``, its
    NotOnOrAfter plus the allowed clock skew); older rows are deleted when
    the next assertion is recorded, since an expired assertion is refused
    anyway.
    """

    idp = models.CharField("identity provider", max_length=255)
    assertion_id = models.CharField(max_length=255)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-used_at"]
        verbose_name = "used SAML assertion"
        constraints = [
            models.UniqueConstraint(
                fields=["idp", "assertion_id"], name="samlassertionuse_unique_assertion"
            ),
        ]
        indexes = [models.Index(fields=["expires_at"], name="samlassertionuse_expires")]

    def __str__(self) -> str:
        return f"{self.assertion_id} from {self.idp}"
