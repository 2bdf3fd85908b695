"""Readable string choices of the hypervisors app."""

from django.db import models


class HypervisorType(models.TextChoices):
    LIBVIRT = "libvirt", "KVM/libvirt"
    VMWARE = "vmware", "VMware vSphere"
    PROXMOX = "proxmox", "Proxmox VE"
    OVIRT = "ovirt", "oVirt/RHV"
    HYPERV = "hyperv", "Microsoft Hyper-V"


class Health(models.TextChoices):
    UNKNOWN = "unknown", "Not checked yet"
    OK = "ok", "Reachable"
    UNREACHABLE = "unreachable", "Unreachable (will retry)"
    FAILED = "failed", "Refused (needs a person)"


class VMStatus(models.TextChoices):
    CREATING = "creating", "Being created"
    PRESENT = "present", "Present"
    VANISHED = "vanished", "Vanished outside PureBoot"
    FAILED = "failed", "Failed"
    DELETING = "deleting", "Being deleted"
    DELETED = "deleted", "Deleted"


class OperationKind(models.TextChoices):
    SYNC = "sync", "Sync inventory and templates"
    CREATE = "create", "Create VM"
    POWER = "power", "Power"
    DELETE = "delete", "Delete VM"
    MIGRATE = "migrate", "Live-migrate VM"
    HA = "ha", "Set HA"


class OperationStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    RETRYING = "retrying", "Waiting to retry"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


IN_PROGRESS = (OperationStatus.QUEUED, OperationStatus.RUNNING, OperationStatus.RETRYING)
