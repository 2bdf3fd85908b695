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
    FAILED = "failed", "Failed"
    ACTIVE = "active", "Active (first boot)"
