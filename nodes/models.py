"""The node registry: sites, nodes, their network interfaces, tags and history."""

from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from . import lifecycle as lc
from .choices import Arch, EventKind, Firmware, NodeState
from .identifiers import normalize_mac, normalize_pi_serial, normalize_serial, normalize_uuid
from .permissions import transition_permission
from .validators import validate_metadata, validate_no_control_characters

_HOSTNAME_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", re.IGNORECASE | re.ASCII)


def validate_hostname(value: str) -> None:
    """RFC 1123 host name: dot-separated labels of letters, digits and hyphens."""
    if not value:
        return
    if len(value) > 253 or not all(_HOSTNAME_LABEL.match(p) for p in value.split(".")):
        raise ValidationError(
            "A host name is up to 253 characters of dot-separated labels, each 1-63 "
            "letters, digits or hyphens, not starting or ending with a hyphen.",
            code="invalid_hostname",
        )


class Site(models.Model):
    """A location or boot network; operators can be limited to some sites."""

    name = models.CharField(
        max_length=100, unique=True, validators=[validate_no_control_characters]
    )
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True, validators=[validate_no_control_characters])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("name",)
        permissions = (
            ("access_all_sites", "Can see and manage nodes at every site"),
            ("operate_site", "Can see and manage this site's nodes"),
        )

    def __str__(self) -> str:
        return self.name


class SiteUserObjectPermission(UserObjectPermissionBase):
    """Per-user site grants (guardian direct foreign key: removed with the site)."""

    content_object = models.ForeignKey("nodes.Site", on_delete=models.CASCADE)


class SiteGroupObjectPermission(GroupObjectPermissionBase):
    """Per-group site grants (guardian direct foreign key: removed with the site)."""

    content_object = models.ForeignKey("nodes.Site", on_delete=models.CASCADE)


class Tag(models.Model):
    """A free label for grouping nodes (rack, role, owner, ...)."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.CharField(
        max_length=200, blank=True, validators=[validate_no_control_characters]
    )

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name


def is_pi_with_serial(firmware: str | None, serial: str | None) -> bool:
    """A Raspberry Pi that presents its serial: recognised without a MAC."""
    return firmware == Firmware.PI and bool((serial or "").strip())


class Node(ConcurrentTransitionMixin, models.Model):
    """One machine that PureBoot provisions.

    ``state`` is protected: only the transitions below change it, and only
    ``nodes.services`` calls them (with the row locked, a NodeEvent and an
    AuditEvent written in the same transaction).
    """

    hostname = models.CharField(max_length=253, blank=True, validators=[validate_hostname])
    site = models.ForeignKey(
        "nodes.Site", on_delete=models.PROTECT, null=True, blank=True, related_name="nodes"
    )
    serial = models.CharField(
        max_length=128,
        blank=True,
        help_text="Hardware serial number; for Raspberry Pis the 8-hex-digit board serial.",
    )
    system_uuid = models.UUIDField(null=True, blank=True, verbose_name="system UUID")
    arch = models.CharField(max_length=16, choices=Arch.choices, default=Arch.X86_64)
    firmware = models.CharField(max_length=16, choices=Firmware.choices, default=Firmware.UEFI)
    vendor = models.CharField(
        max_length=100, blank=True, validators=[validate_no_control_characters]
    )
    model = models.CharField(
        max_length=100, blank=True, validators=[validate_no_control_characters]
    )
    tags = models.ManyToManyField("nodes.Tag", blank=True, related_name="nodes")
    workflow = models.ForeignKey(
        "workflows.Workflow",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="nodes",
    )
    workflow_version = models.ForeignKey(
        "workflows.WorkflowVersion",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="nodes",
        help_text="The version pinned when the workflow was assigned.",
    )
    metadata = models.JSONField(default=dict, blank=True, validators=[validate_metadata])
    state = FSMField(
        max_length=32, choices=NodeState.choices, default=NodeState.DISCOVERED, protected=True
    )
    state_changed_at = models.DateTimeField(default=timezone.now)
    install_attempts = models.PositiveIntegerField(default=0)
    install_attempt_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When the current install attempt began: boot requests within the boot "
        "session window (PUREBOOT_BOOT_SESSION_SECONDS) belong to it and count no new attempt.",
    )
    ever_installed = models.BooleanField(
        default=False,
        editable=False,
        help_text="Once PureBoot installed this machine, assigning it a workflow again "
        "reinstalls it: that needs a second person.",
    )
    last_seen_at = models.DateTimeField(null=True, blank=True)
    inventory = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="The hardware inventory the PureBoot agent last reported "
        "(CPUs, memory, disks, NICs, firmware, SMBIOS identity).",
    )
    inventory_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("hostname", "id")
        permissions = lc.NODE_PERMISSIONS
        constraints = [
            models.UniqueConstraint(
                Lower("hostname"),
                condition=~models.Q(hostname=""),
                name="node_hostname_unique",
                violation_error_message="A node with this host name already exists.",
            ),
            models.UniqueConstraint(
                fields=["system_uuid"],
                name="node_system_uuid_unique",
                violation_error_message="A node with this system UUID already exists.",
            ),
            models.UniqueConstraint(
                fields=["serial"],
                condition=models.Q(firmware=Firmware.PI) & ~models.Q(serial=""),
                name="node_pi_serial_unique",
                violation_error_message="A Raspberry Pi with this serial already exists.",
            ),
        ]
        indexes = [
            models.Index(fields=["state"], name="node_state_idx"),
            models.Index(fields=["serial"], name="node_serial_idx"),
        ]

    def __str__(self) -> str:
        return self.hostname or f"node-{self.pk}"

    @property
    def needs_interface(self) -> bool:
        """Whether a MAC is what recognises this node when it boots.

        Every node but a Raspberry Pi with its board serial: the Pi's
        bootloader asks for its TFTP files under its serial, which is enough.
        """
        return not is_pi_with_serial(self.firmware, self.serial)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        self.hostname = (self.hostname or "").strip().lower()
        try:
            if self.firmware == Firmware.PI and self.serial:
                self.serial = normalize_pi_serial(self.serial)
            else:
                self.serial = normalize_serial(self.serial or "")
        except ValueError as exc:
            errors["serial"] = str(exc)
        if self.system_uuid:
            try:
                self.system_uuid = normalize_uuid(self.system_uuid)
            except ValueError as exc:
                errors["system_uuid"] = str(exc)
        if self.firmware == Firmware.PI and self.arch == Arch.X86_64:
            errors["arch"] = "A Raspberry Pi is aarch64 or armhf, not x86_64."
        if errors:
            raise ValidationError(errors)

    # --- transitions: state changes only; services do locking, history, audit.
    def _fsm(action: lc.Action):  # noqa: N805 - decorator factory used in the class body
        return transition(
            field="state",
            source=list(action.sources),
            target=action.target,
            permission=transition_permission(action),
        )

    @_fsm(lc.ASSIGN)
    def assign(self, workflow, version=None) -> None:
        self.workflow = workflow
        self.workflow_version = version

    @_fsm(lc.UNASSIGN)
    def unassign(self) -> None:
        self.workflow = None
        self.workflow_version = None

    @_fsm(lc.START_INSTALL)
    def start_install(self) -> None:
        self.install_attempts += 1
        self.install_attempt_at = timezone.now()

    @_fsm(lc.COMPLETE_INSTALL)
    def complete_install(self) -> None:
        self.ever_installed = True

    @_fsm(lc.FAIL)
    def fail(self) -> None:
        pass

    @_fsm(lc.ACTIVATE)
    def activate(self) -> None:
        pass

    @_fsm(lc.REPROVISION)
    def reprovision(self) -> None:
        self.install_attempts = 0

    @_fsm(lc.DEPROVISION)
    def deprovision(self, after: str = "retired", category: str = "best") -> None:
        # The wipe's parameters travel in the transition's NodeEvent; the agent
        # reads them from there when it starts the wipe.
        pass

    @_fsm(lc.MIGRATE)
    def migrate(self, target=None, disk: str = "") -> None:
        # nodes.services moves the target with it and records the Migration.
        pass

    @_fsm(lc.RECEIVE_MIGRATION)
    def receive_migration(self) -> None:
        pass

    @_fsm(lc.COMPLETE_MIGRATION)
    def complete_migration(self) -> None:
        pass

    @_fsm(lc.RELEASE_HARDWARE)
    def release_hardware(self) -> None:
        self.workflow = None
        self.workflow_version = None
        self.install_attempts = 0

    @_fsm(lc.CANCEL_MIGRATION)
    def cancel_migration(self) -> None:
        pass

    @_fsm(lc.COMPLETE_WIPE)
    def complete_wipe(self) -> None:
        pass

    @_fsm(lc.RETIRE)
    def retire(self) -> None:
        pass

    @_fsm(lc.REDISCOVER)
    def rediscover(self) -> None:
        self.workflow = None
        self.workflow_version = None
        self.install_attempts = 0

    @_fsm(lc.VM_DELETED)
    def vm_deleted(self) -> None:
        pass

    del _fsm


class NetworkInterface(models.Model):
    """A network interface of a node; its MAC identifies the node at boot."""

    node = models.ForeignKey("nodes.Node", on_delete=models.CASCADE, related_name="interfaces")
    mac = models.CharField("MAC address", max_length=17, unique=True)
    name = models.CharField(max_length=32, blank=True, help_text="e.g. eno1, eth0")
    is_primary = models.BooleanField(default=False)

    class Meta:
        ordering = ("node", "-is_primary", "mac")
        constraints = [
            models.UniqueConstraint(
                fields=["node"],
                condition=models.Q(is_primary=True),
                name="interface_one_primary_per_node",
                violation_error_message="A node has exactly one primary interface.",
            ),
        ]

    def __str__(self) -> str:
        return self.mac

    def clean(self) -> None:
        try:
            self.mac = normalize_mac(self.mac)
        except ValueError as exc:
            raise ValidationError({"mac": str(exc)}) from exc


class NodeEvent(models.Model):
    """One entry of a node's history: transitions, reports and edits, for humans."""

    node = models.ForeignKey("nodes.Node", on_delete=models.CASCADE, related_name="events")
    timestamp = models.DateTimeField(default=timezone.now, db_index=True)
    kind = models.CharField(max_length=16, choices=EventKind.choices)
    actor = models.CharField(max_length=150, help_text="user:<name>, node:<id> or system")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    from_state = models.CharField(max_length=32, blank=True)
    to_state = models.CharField(max_length=32, blank=True)
    message = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ("-timestamp", "-id")
        indexes = [models.Index(fields=["node", "-timestamp"], name="nodeevent_node_time_idx")]

    def __str__(self) -> str:
        return f"{self.node_id} {self.kind} {self.timestamp:%Y-%m-%d %H:%M:%S}"


class Migration(models.Model):
    """A 1:1 hardware migration: ``source``'s system and identity move to ``target``'s machine.

    The node row ``source`` is the identity (name, workflow, site, owner,
    credentials, DHCP entry, history); ``target`` is the discovered machine
    it moves to. When the copy has been restored and checked, the two rows
    swap their hardware (MACs, system UUID, serial, inventory): ``source``
    becomes active on the new machine and ``target`` now describes the old
    one, handed back as discovered with a deprovision request filed for it.
    The transfer goes through a temporary iSCSI LUN on the controller;
    ``transfer`` holds its address and the copy's checksums, and the CHAP
    secret is kept encrypted (credentials' keys) in ``chap_secret``.
    """

    class Status(models.TextChoices):
        COPYING = "copying", "Copying the source's disk to the controller"
        RESTORING = "restoring", "Restoring the copy onto the target"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    RUNNING = (Status.COPYING, Status.RESTORING)
    # What people may read of a migration (API and admin): never the CHAP secret.
    PUBLIC_FIELDS = (
        "source",
        "target",
        "status",
        "disk",
        "requested_by",
        "approval",
        "reason",
        "transfer",
        "error",
        "created_at",
        "finished_at",
    )

    source = models.ForeignKey(
        "nodes.Node", on_delete=models.PROTECT, related_name="migrations_out"
    )
    target = models.ForeignKey("nodes.Node", on_delete=models.PROTECT, related_name="migrations_in")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COPYING)
    disk = models.CharField(
        max_length=200,
        blank=True,
        help_text="Which of the source's disks moves (a disk rule: smallest, largest, "
        "serial:SERIAL, /dev/NAME); empty: the source must have exactly one disk.",
    )
    requested_by = models.CharField(max_length=150, blank=True)
    approval = models.PositiveBigIntegerField(null=True, blank=True)
    reason = models.TextField(blank=True)
    transfer = models.JSONField(default=dict, blank=True)
    chap_secret = models.TextField(blank=True, editable=False)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [
            models.UniqueConstraint(
                fields=["source"],
                condition=models.Q(status__in=("copying", "restoring")),
                name="migration_one_running_per_source",
            ),
            models.UniqueConstraint(
                fields=["target"],
                condition=models.Q(status__in=("copying", "restoring")),
                name="migration_one_running_per_target",
            ),
        ]

    def __str__(self) -> str:
        return (
            f"migration {self.pk}: node {self.source_id} -> node {self.target_id} ({self.status})"
        )

    @property
    def running(self) -> bool:
        return self.status in self.RUNNING

    def other(self, node_id: int) -> int:
        return self.target_id if node_id == self.source_id else self.source_id
