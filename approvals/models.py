"""Four-eye approval requests: destructive node actions, credential changes,
system settings, audit clearing and emergency access.

Every request names its target (``target_type``/``target_id``, and ``node``
for node actions) and a ``snapshot`` of that target when it was asked for:
execution re-checks it, so an approval never acts on something that changed
since. Secret parameters (a credential's new password) are kept sealed with
the credential keys and wiped when the request closes.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Status(models.TextChoices):
    PENDING = "pending", "Pending"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"
    EXECUTED = "executed", "Executed"
    FAILED = "failed", "Failed"


OPEN = (Status.PENDING,)


class ApprovalRequest(models.Model):
    """One person's request for an action a second person must approve.

    The node's state at request time is kept: execution re-checks it, so an
    approval never acts on a machine that moved on since it was asked for.
    """

    action = models.CharField(max_length=32)
    target_type = models.CharField(max_length=16, default="node")
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=255, blank=True)
    node = models.ForeignKey(
        "nodes.Node",
        on_delete=models.PROTECT,
        related_name="approval_requests",
        null=True,
        blank=True,
    )
    node_state = models.CharField(
        max_length=16, blank=True, help_text="The node's state when requested."
    )
    snapshot = models.TextField(
        blank=True, help_text="The target as it was when requested; re-checked at execution."
    )
    params = models.JSONField(default=dict, blank=True)
    sealed = models.TextField(
        blank=True, editable=False, help_text="Encrypted secret parameters; wiped on closing."
    )
    reason = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="approval_requests"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    required_approvals = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    closed_at = models.DateTimeField(null=True, blank=True)
    result = models.TextField(blank=True, help_text="What execution did, or why it failed.")

    class Meta:
        ordering = ("-created_at", "-pk")
        indexes = [models.Index(fields=("status", "expires_at"))]
        constraints = [
            # At most one open request per target: approvers see one thing to decide.
            models.UniqueConstraint(
                fields=("target_type", "target_id"),
                condition=models.Q(status="pending"),
                name="approvals_one_pending_per_target",
            )
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.action} {self.target_type} {self.target_id} ({self.status})"

    @property
    def kind_label(self) -> str:
        from .kinds import KINDS

        kind = KINDS.get(self.action)
        return kind.label if kind else self.action

    @property
    def what(self) -> str:
        """What approving will do, in plain words."""
        from .kinds import KINDS

        kind = KINDS.get(self.action)
        return kind.describe(self) if kind else self.action

    @property
    def is_expired(self) -> bool:
        return self.status == Status.PENDING and self.expires_at <= timezone.now()


class Decision(models.Model):
    """One person's approval or rejection of a request; each person counts once."""

    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="decisions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    approve = models.BooleanField()
    comment = models.TextField(blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("at", "pk")
        constraints = [
            models.UniqueConstraint(fields=("request", "user"), name="approvals_one_vote_each")
        ]

    def __str__(self) -> str:
        return f"{'approve' if self.approve else 'reject'} #{self.request_id} by {self.user_id}"
