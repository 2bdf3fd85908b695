"""Readable string choices for the node registry."""

from django.db import models


class NodeState(models.TextChoices):
    DISCOVERED = "discovered", "Discovered"
    PENDING = "pending", "Pending"
    INSTALLING = "installing", "Installing"
    INSTALLED = "installed", "Installed"
    ACTIVE = "active", "Active"
    REPROVISION = "reprovision", "Reprovision"
    DEPROVISIONING = "deprovisioning", "Deprovisioning"
    MIGRATING = "migrating", "Migrating"
    RETIRED = "retired", "Retired"
    FAILED = "failed", "Failed"


class Arch(models.TextChoices):
    X86_64 = "x86_64", "x86_64"
    AARCH64 = "aarch64", "aarch64 (ARM 64-bit)"
    ARMHF = "armhf", "armhf (ARM 32-bit)"


class Firmware(models.TextChoices):
    BIOS = "bios", "BIOS"
    UEFI = "uefi", "UEFI"
    PI = "pi", "Raspberry Pi"


class EventKind(models.TextChoices):
    CREATED = "created", "Created"
    EDITED = "edited", "Edited"
    TRANSITION = "transition", "Transition"
    REPORT = "report", "Report"
    HYPERVISOR = "hypervisor", "Hypervisor"
