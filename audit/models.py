"""The append-only, hash-chained audit trail.

Rows are written only by :func:`audit.services.record`; the database refuses
UPDATE and DELETE on the table (see migration 0002). Nothing here is a
foreign key, so the trail outlives the users and nodes it talks about.
"""

from __future__ import annotations

from django.db import models


class AuditEvent(models.Model):
    """One entry of the audit trail, linked to its predecessor by ``prev_hash``."""

    seq = models.BigIntegerField(
        editable=False, help_text="Position in the chain, contiguous from 1."
    )
    timestamp = models.DateTimeField(editable=False, help_text="Set by the writer, in UTC.")
    actor = models.CharField(max_length=150, help_text="user:<username>, node:<id> or system.")
    action = models.CharField(max_length=64, help_text="Verb such as node.assign.")
    object_type = models.CharField(max_length=64, blank=True, help_text="e.g. nodes.node")
    object_id = models.CharField(max_length=64, blank=True)
    changes = models.JSONField(
        default=dict, blank=True, help_text='{"field": {"before": x, "after": y}}'
    )
    message = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    prev_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, editable=False)

    class Meta:
        ordering = ["seq"]
        # The log cannot be added to, changed or deleted through Django's
        # permission system; reading it is the only grantable right.
        default_permissions = ("view",)
        # Clearing goes through an approved request that exports first.
        permissions = [("clear_auditevent", "Can request and approve clearing the audit trail")]
        verbose_name = "audit event"
        constraints = [
            models.UniqueConstraint(fields=["seq"], name="audit_event_seq_unique"),
            models.UniqueConstraint(fields=["hash"], name="audit_event_hash_unique"),
            models.CheckConstraint(condition=models.Q(seq__gte=1), name="audit_event_seq_positive"),
        ]
        indexes = [
            models.Index(fields=["object_type", "object_id"], name="audit_event_object_idx"),
            models.Index(fields=["actor"], name="audit_event_actor_idx"),
            models.Index(fields=["action"], name="audit_event_action_idx"),
            models.Index(fields=["timestamp"], name="audit_event_timestamp_idx"),
        ]

    def __str__(self) -> str:
        target = f" {self.object_type}:{self.object_id}" if self.object_type else ""
        return f"#{self.seq} {self.actor} {self.action}{target}"


class ForwardCursor(models.Model):
    """How far the audit trail was forwarded to one destination (the syslog collector).

    ``last_seq`` moves only after the collector has read a batch; a
    forwarder holds ``lease_until`` while sending, so two forwarders (the
    periodic task and ``manage.py audit_forward``) never send the same events.
    """

    name = models.CharField(max_length=32, unique=True)
    last_seq = models.BigIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_token = models.CharField(max_length=32, blank=True)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "audit forwarding cursor"

    def __str__(self) -> str:
        return f"{self.name}: forwarded through seq {self.last_seq}"
