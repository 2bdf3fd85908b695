"""What the controller did in configuration-management systems for each node."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class ConfigRun(models.Model):
    """One ``config_run`` step of an install, run once by the worker after ``installed``.

    The unique (run, step) pair is what makes it run once: the reconcile
    loop creates the row before it starts the tool, so a second worker
    racing it gets an IntegrityError and leaves it alone.
    """

    node = models.ForeignKey("nodes.Node", on_delete=models.CASCADE, related_name="config_runs")
    workflow_run = models.ForeignKey(
        "workflows.WorkflowRun", on_delete=models.CASCADE, related_name="config_runs"
    )
    step = models.PositiveSmallIntegerField(help_text="The config_run task's index")
    tool = models.CharField(max_length=16)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    output = models.TextField(blank=True, help_text="The tool's output (its end), redacted")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-started_at", "-id")
        constraints = [
            models.UniqueConstraint(
                fields=["workflow_run", "step"], name="configrun_once_per_step"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tool} run for node {self.node_id} ({self.status})"


class System(models.TextChoices):
    SALT = "salt", "Salt minion key"
    CHEF = "chef", "Chef node and client"


class Registration(models.Model):
    """A node's entry in Salt or Chef, as the reconcile loop last left it.

    ``present`` is what PureBoot made true (key accepted / node created);
    ``error`` the last failure, shown to operators and retried next pass.
    ``name`` is the name it was registered under: a rename, a reinstall, a
    retirement or the node's deletion removes that name's entry, unless
    ``preexisting`` (it was already accepted / created when PureBoot first
    looked: not PureBoot's to delete). A deleted node's registration stays
    (``node`` empty) until the next pass has removed its entry.
    """

    node = models.ForeignKey(
        "nodes.Node",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="cm_registrations",
    )
    system = models.CharField(max_length=8, choices=System.choices)
    name = models.CharField(max_length=253, help_text="Minion id / Chef node name")
    present = models.BooleanField(default=False)
    preexisting = models.BooleanField(
        default=False,
        help_text="Already accepted / created when PureBoot first looked: never deleted by it",
    )
    install_run = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="The install (WorkflowRun id) it was registered after"
    )
    error = models.TextField(blank=True)
    client_key_ciphertext = models.TextField(
        blank=True,
        editable=False,
        help_text="Chef: the new client's private key, encrypted (credentials' keys)",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("system", "name")
        constraints = [
            models.UniqueConstraint(fields=["node", "system"], name="registration_one_per_system"),
        ]

    def __str__(self) -> str:
        return f"{self.system} {self.name} ({'present' if self.present else 'absent'})"
