"""Readable values for the agent's jobs and steps."""

from django.db import models

from workflows.choices import RunStatus


class JobKind(models.TextChoices):
    INVENTORY = "inventory", "Hardware inventory"
    WIPE = "wipe", "Secure wipe"
    DEPLOY = "deploy", "Image deployment"
    MIGRATE_OUT = "migrate_out", "Migration: copy the disk out"
    MIGRATE_IN = "migrate_in", "Migration: restore the copy"


MIGRATION_KINDS = (JobKind.MIGRATE_OUT, JobKind.MIGRATE_IN)


# A job ends the way an install run does: the same four statuses.
JobStatus = RunStatus


class StepStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    STARTED = "started", "Started"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Category(models.TextChoices):
    """NIST SP 800-88 Rev. 1 sanitization categories PureBoot can perform."""

    CLEAR = "clear", "Clear"
    PURGE = "purge", "Purge"
