"""Hypervisor connections, the VMs and templates PureBoot knows on them, and the
calls it made to them."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from .choices import Health, HypervisorType, OperationKind, OperationStatus, VMStatus

NAME_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
    "Letters, digits, dots, dashes and underscores; starting with a letter or digit.",
)


class Hypervisor(models.Model):
    """One hypervisor endpoint (a libvirt URI, a vCenter, a Proxmox or oVirt API,
    a Hyper-V host) and what PureBoot last learned from it."""

    name = models.CharField(max_length=100, unique=True, validators=[NAME_VALIDATOR])
    type = models.CharField(max_length=16, choices=HypervisorType.choices)
    endpoint = models.CharField(
        max_length=1000, help_text="A libvirt URI, or the API's https:// URL."
    )
    site = models.ForeignKey(
        "nodes.Site", on_delete=models.PROTECT, null=True, blank=True, related_name="hypervisors"
    )
    credential = models.ForeignKey(
        "credentials.Credential",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="hypervisors",
        help_text="A hypervisor login from the credential store (none for a local libvirt).",
    )
    verify_tls = models.BooleanField(default=True, verbose_name="verify TLS")
    ca_certificate = models.TextField(
        blank=True, max_length=65536, help_text="PEM CA bundle to trust instead of the system's."
    )
    options = models.JSONField(default=dict, blank=True, help_text="Driver options")
    sync_interval_minutes = models.PositiveIntegerField(
        default=15,
        validators=[MaxValueValidator(7 * 24 * 60)],
        help_text="How often the inventory is read; 0 turns periodic sync off.",
    )
    health = models.CharField(max_length=16, choices=Health.choices, default=Health.UNKNOWN)
    health_message = models.TextField(blank=True)
    version = models.CharField(max_length=200, blank=True)
    inventory = models.JSONField(
        default=dict, blank=True, help_text="Hosts, clusters, storage and networks at last sync"
    )
    last_sync_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name",)
        permissions = [
            ("sync_hypervisor", "Can sync a hypervisor's inventory and templates"),
            ("operate_vm", "Can create VMs and power them"),
            ("delete_vm", "Can ask for (and approve) deleting a VM"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(type__in=HypervisorType.values), name="hypervisor_type_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if not isinstance(self.options, dict):
            raise ValidationError({"options": "A JSON object of driver options."})
        if self.credential_id and self.credential.kind != "hypervisor":
            raise ValidationError({"credential": "Choose a credential of kind 'hypervisor'."})


class VirtualMachine(models.Model):
    """A VM on a hypervisor: one PureBoot made (``managed``) or found at sync.

    A VM that disappears outside PureBoot is marked ``vanished``, never
    deleted here, so its node's history keeps it.
    """

    hypervisor = models.ForeignKey(
        "hypervisors.Hypervisor", on_delete=models.PROTECT, related_name="vms"
    )
    node = models.OneToOneField(
        "nodes.Node",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="vm",
    )
    platform_id = models.CharField(max_length=200, blank=True, help_text="The VM's id there")
    name = models.CharField(max_length=200)
    managed = models.BooleanField(default=False, help_text="Created by PureBoot")
    status = models.CharField(max_length=16, choices=VMStatus.choices, default=VMStatus.PRESENT)
    power = models.CharField(max_length=16, default="unknown")
    cpus = models.PositiveIntegerField(default=0)
    memory_mib = models.PositiveIntegerField(default=0)
    host = models.CharField(max_length=200, blank=True)
    macs = models.JSONField(default=list, blank=True)
    template = models.CharField(max_length=200, blank=True)
    ha = models.BooleanField(default=False)
    spec = models.JSONField(default=dict, blank=True, help_text="What PureBoot asked for")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("hypervisor", "name")
        constraints = [
            models.UniqueConstraint(
                fields=["hypervisor", "platform_id"],
                condition=~models.Q(platform_id=""),
                name="vm_unique_platform_id",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=VMStatus.values), name="vm_status_valid"
            ),
        ]

    # What the API and the admin show of a VM (its spec and ids stay inside).
    PUBLIC_FIELDS = (
        "hypervisor",
        "node",
        "platform_id",
        "name",
        "managed",
        "status",
        "power",
        "cpus",
        "memory_mib",
        "host",
        "macs",
        "template",
        "ha",
        "error",
        "created_at",
        "last_seen_at",
    )

    def __str__(self) -> str:
        return f"{self.name} on {self.hypervisor_id}"


class HypervisorTemplate(models.Model):
    """A template on a hypervisor, as last synced; workflows name it."""

    hypervisor = models.ForeignKey(
        "hypervisors.Hypervisor", on_delete=models.CASCADE, related_name="templates"
    )
    platform_id = models.CharField(max_length=500)
    name = models.CharField(max_length=200)
    cpus = models.PositiveIntegerField(default=0)
    memory_mib = models.PositiveIntegerField(default=0)
    disk_bytes = models.PositiveBigIntegerField(default=0)
    os = models.CharField(max_length=200, blank=True)
    present = models.BooleanField(default=True, help_text="Seen at the last sync")
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("hypervisor", "name")
        constraints = [
            models.UniqueConstraint(
                fields=["hypervisor", "platform_id"], name="template_unique_platform_id"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class HypervisorOperation(models.Model):
    """One call PureBoot makes to a hypervisor, run by a Celery worker.

    ``error`` holds the reason of a permanent failure (or of the last
    transient one while it retries); it never holds a secret.
    """

    hypervisor = models.ForeignKey(
        "hypervisors.Hypervisor", on_delete=models.CASCADE, related_name="operations"
    )
    vm = models.ForeignKey(
        "hypervisors.VirtualMachine",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="operations",
    )
    kind = models.CharField(max_length=16, choices=OperationKind.choices)
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16, choices=OperationStatus.choices, default=OperationStatus.QUEUED
    )
    attempts = models.PositiveIntegerField(default=0, validators=[MinValueValidator(0)])
    error = models.TextField(blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    result = models.JSONField(default=dict, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    actor = models.CharField(max_length=150, help_text="user:<name> or system")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")
        indexes = [models.Index(fields=["status", "created_at"], name="hvop_status_idx")]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} on {self.hypervisor_id}: {self.status}"
