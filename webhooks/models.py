"""Webhook subscriptions, their deliveries, and how far the audit trail was dispatched.

A delivery names its audit event by ``audit_seq`` rather than a foreign key:
an approved clearing of the audit trail deletes events, and the record of
what was sent must outlive them (as the trail itself holds no foreign keys).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from .choices import DeliveryStatus, EventType

NAME_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
    "Letters, digits, dots, dashes and underscores; starting with a letter or digit.",
)
MAX_URL_CHARS = 2000


def validate_url(value: str) -> None:
    """http(s) only, with a host, without credentials or a fragment.

    Credentials in the URL would be shown by the API and the admin, where the
    signing secret is not; a receiver authenticates the sender by the signature.
    """
    if len(value) > MAX_URL_CHARS:
        raise ValidationError(f"At most {MAX_URL_CHARS} characters.")
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in value):
        raise ValidationError("No spaces or control characters.")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValidationError("Not a valid URL.") from None
    if parts.scheme not in ("http", "https"):
        raise ValidationError("Only http:// and https:// URLs can receive webhooks.")
    if not parts.hostname:
        raise ValidationError("The URL needs a host.")
    if parts.username is not None or parts.password is not None:
        raise ValidationError(
            "No user or password in the URL: receivers check the X-PureBoot-Signature header."
        )
    if parts.fragment:
        raise ValidationError("No #fragment: it is never sent.")
    if port == 0:
        raise ValidationError("Port 0 is not a port.")


class Subscription(models.Model):
    """A URL that receives signed POSTs for the event types it names.

    The signing secret is stored only as a Fernet token (``secret_ciphertext``)
    and shown once, when it is made (at creation or by rotating it).
    """

    name = models.CharField(max_length=100, unique=True, validators=[NAME_VALIDATOR])
    url = models.CharField(
        max_length=MAX_URL_CHARS,
        validators=[validate_url],
        verbose_name="URL",
        help_text="http:// or https://; redirects are not followed.",
    )
    events = models.JSONField(default=list, help_text="Event types to send, e.g. node.transition")
    site = models.ForeignKey(
        "nodes.Site",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="webhook_subscriptions",
        help_text="Only events of this site's nodes; empty: every event.",
    )
    enabled = models.BooleanField(default=True)
    description = models.TextField(blank=True, max_length=2000)
    secret_ciphertext = models.TextField(editable=False)
    start_seq = models.BigIntegerField(
        default=0,
        editable=False,
        help_text="Audit events up to this seq (the trail when it was made) are not sent.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.CharField(max_length=150, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    secret_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ("name",)
        permissions = [("test_subscription", "Can send test pings and redeliver")]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        events = self.events
        if not isinstance(events, list) or not events:
            raise ValidationError({"events": "A non-empty list of event types."})
        unknown = [e for e in events if e not in EventType.values]
        if unknown:
            raise ValidationError(
                {
                    "events": f"Unknown event types: {', '.join(map(str, unknown))[:200]}. "
                    f"Known: {', '.join(EventType.values)}."
                }
            )
        if len(set(events)) != len(events):
            raise ValidationError({"events": "Each event type once."})


class Delivery(models.Model):
    """One event sent (or to be sent) to one subscription, with its outcome.

    ``next_attempt_at`` is when a worker may next pick it up: set ahead by the
    worker that claims it (so no second worker sends it meanwhile) and to the
    backoff after a failed attempt, so retries survive a worker restart.
    ``error`` says why an attempt failed; it never holds a secret.
    """

    subscription = models.ForeignKey(
        "webhooks.Subscription", on_delete=models.CASCADE, related_name="deliveries"
    )
    audit_seq = models.BigIntegerField(
        null=True, blank=True, help_text="The audit event sent; empty for a test ping."
    )
    event_type = models.CharField(max_length=32)
    payload = models.JSONField(default=dict)
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True, max_length=1000)
    next_attempt_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "audit_seq"], name="webhook_delivery_once_per_event"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=DeliveryStatus.values),
                name="webhook_delivery_status_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} #{self.pk} to {self.subscription_id}: {self.status}"


class DispatchCursor(models.Model):
    """The last audit seq turned into deliveries (one row, made on first dispatch)."""

    last_seq = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "dispatch cursor"

    def __str__(self) -> str:
        return f"dispatched through seq {self.last_seq}"
