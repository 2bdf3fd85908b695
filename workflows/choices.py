from django.db import models


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class StepStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class ReportStatus(models.TextChoices):
    INSTALLING = "installing", "Installing"
    INSTALLED = "installed", "Installed"
    # The installer wrote the disk and continues from it (Windows Setup after WinPE).
    DISK_WRITTEN = "disk_written", "Continues from the local disk"
    FAILED = "failed", "Failed"
    ACTIVE = "active", "Active (first boot)"
