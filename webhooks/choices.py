"""The webhook event types and delivery states."""

from __future__ import annotations

from django.db import models


class EventType(models.TextChoices):
    """What a subscription can ask for; each comes from audit trail actions (see events.py)."""

    NODE_TRANSITION = "node.transition", "A node changed lifecycle state"
    INSTALL_SUCCEEDED = "install.succeeded", "An install finished"
    INSTALL_FAILED = "install.failed", "An install failed"
    APPROVAL_REQUESTED = "approval.requested", "A four-eye request was filed"
    APPROVAL_DECIDED = "approval.decided", "A four-eye request was approved, rejected or closed"
    WIPE_CERTIFICATE = "wipe.certificate", "A signed wipe certificate was issued"


# Sent only by the "test" action, never subscribed to.
PING = "ping"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
