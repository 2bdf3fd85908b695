"""Offline domain-join blobs: one per Windows install run that joins a domain offline.

The blob (``net offlinejoin provision``'s output, the base64 text unattend's
``AccountData`` takes) holds the new computer account's password, so it is
kept only as a Fernet token, handed only to the run it was made for while
that run is running, and wiped when the run ends. Written only through
:mod:`workflows.domainjoin`.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class OfflineJoinStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    READY = "ready", "Ready"
    SERVED = "served", "Served to its node"
    FAILED = "failed", "Failed"
    WIPED = "wiped", "Wiped"


#: States in which a join still belongs to its run (one such join per run).
LIVE_STATES = (OfflineJoinStatus.PENDING, OfflineJoinStatus.READY, OfflineJoinStatus.SERVED)


class OfflineJoin(models.Model):
    """A computer account prestaged in Active Directory and its offline-join blob."""

    node = models.ForeignKey("nodes.Node", on_delete=models.CASCADE, related_name="offline_joins")
    run = models.ForeignKey(
        "workflows.WorkflowRun",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="offline_joins",
    )
    credential = models.ForeignKey(
        "credentials.Credential",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The domain_join credential the account is created with",
    )
    domain = models.CharField(max_length=255, help_text="The domain's DNS name")
    machine_name = models.CharField(max_length=15, help_text="The computer's NetBIOS name")
    ou = models.CharField(
        max_length=1000, blank=True, help_text="Where the account is made (empty: CN=Computers)"
    )
    dc = models.CharField(
        max_length=255,
        blank=True,
        help_text="The domain controller asked (empty: the domain's name, found through DNS)",
    )
    blob_ciphertext = models.TextField(blank=True, editable=False)
    status = models.CharField(
        max_length=8, choices=OfflineJoinStatus.choices, default=OfflineJoinStatus.PENDING
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(
        null=True, blank=True, help_text="When a worker started provisioning it"
    )
    ready_at = models.DateTimeField(null=True, blank=True)
    served_at = models.DateTimeField(null=True, blank=True)
    wiped_at = models.DateTimeField(null=True, blank=True)
    account_removed_at = models.DateTimeField(
        null=True, blank=True, help_text="When its computer account was deleted (approved)"
    )

    class Meta:
        ordering = ("-created_at", "-id")
        permissions = [
            (
                "remove_computer_account",
                "Can ask for (and approve) deleting a node's Active Directory computer account",
            )
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["run"],
                condition=models.Q(status__in=["pending", "ready", "served"]),
                name="offlinejoin_one_live_per_run",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=OfflineJoinStatus.values),
                name="offlinejoin_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.machine_name} in {self.domain} ({self.status})"
