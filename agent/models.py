"""The agent's jobs on nodes, their log, and the wipe certificates they earn."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from .choices import JobKind, JobStatus


class AgentJob(models.Model):
    """One piece of work the agent does on one machine, as a list of steps.

    A lifecycle job belongs to the node's state episode it was created in
    (``episode``: when the node entered that state); a node that leaves the
    state ends the job. Steps are ``[{name, action, params, status,
    started_at, ended_at, detail, result}]``; the agent runs the first step
    not yet succeeded, so a machine that lost power re-runs the step it was
    in, and the node is only marked done when the last step's result arrived.
    """

    node = models.ForeignKey("nodes.Node", on_delete=models.CASCADE, related_name="agent_jobs")
    kind = models.CharField(max_length=16, choices=JobKind.choices)
    run = models.ForeignKey(
        "workflows.WorkflowRun",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="agent_jobs",
        help_text="The install this job deploys the image of (image deployment only)",
    )
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.RUNNING)
    episode = models.CharField(max_length=40, help_text="The node's state_changed_at when made")
    params = models.JSONField(default=dict, blank=True)
    steps = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    heartbeat = models.JSONField(
        default=dict, blank=True, help_text="The agent's last heartbeat: step, progress, detail"
    )

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [
            models.UniqueConstraint(
                fields=["node"],
                condition=models.Q(status="running"),
                name="agentjob_one_running_per_node",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} job {self.pk} on node {self.node_id} ({self.status})"

    @property
    def current_index(self) -> int | None:
        """The first step not yet succeeded, or None when every step has."""
        for index, step in enumerate(self.steps):
            if step.get("status") != "succeeded":
                return index
        return None

    @property
    def where(self) -> str:
        """Where the job is (or stopped), for people."""
        index = self.current_index
        if index is None:
            return f"all {len(self.steps)} steps done"
        step = self.steps[index]
        return f"step {index + 1} of {len(self.steps)}: {step['name']} ({step['status']})"


class AgentLogLine(models.Model):
    """A line of the agent's log, streamed while a job runs."""

    job = models.ForeignKey("agent.AgentJob", on_delete=models.CASCADE, related_name="log_lines")
    timestamp = models.DateTimeField(default=timezone.now)
    line = models.TextField()

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return self.line[:80]


class WipeCertificate(models.Model):
    """A signed statement that one disk of one machine was sanitized and verified.

    ``document`` is the exact JSON text that was signed (Ed25519); it names
    the machine, the disk, the method and category, the verification, who
    asked and who approved, and the audit event recorded for it. It outlives
    the node.
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    node = models.ForeignKey(
        "nodes.Node",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="wipe_certificates",
    )
    job = models.ForeignKey(
        "agent.AgentJob", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    disk_serial = models.CharField(max_length=128, blank=True)
    disk_model = models.CharField(max_length=128, blank=True)
    method = models.CharField(max_length=32)
    category = models.CharField(max_length=8)
    document = models.TextField(help_text="The signed JSON document, byte for byte")
    signature = models.CharField(max_length=128, help_text="Ed25519 signature, base64")
    key_id = models.CharField(max_length=64, help_text="SHA-256 of the public key, hex")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-created_at", "-id")
        permissions = (("verify_wipecertificate", "Can verify wipe certificates"),)

    def __str__(self) -> str:
        return f"wipe certificate {self.uuid} ({self.disk_model} {self.disk_serial})"
