"""Workflows, their immutable versions, and the runs that install nodes."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from .choices import RunStatus
from .domainjoin_models import OfflineJoin, OfflineJoinStatus  # noqa: F401 (registers the model)
from .vmsteps import VM_CREATE_TYPES


class Workflow(models.Model):
    """A named provisioning workflow; its content lives in immutable versions."""

    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    archived_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Set when a workflow still referenced by retired nodes is deleted.",
    )

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name

    @property
    def latest_version(self) -> WorkflowVersion | None:
        return self.versions.order_by("-number").first()

    def check_assignable(self, node) -> WorkflowVersion:
        """The version a node gets when assigned now; ValidationError if it does not fit.

        Locks the workflow row (call inside the assigning transaction), so a
        concurrent delete either sees this node or happens before it.
        """
        current = type(self).objects.select_for_update().filter(pk=self.pk).first()
        if current is None:
            raise ValidationError({"workflow": f"Workflow {self.name} no longer exists."})
        if current.archived_at:
            raise ValidationError({"workflow": f"Workflow {self.name} is archived."})
        version = self.latest_version
        if version is None:
            raise ValidationError({"workflow": f"Workflow {self.name} has no version yet."})
        definition = version.definition
        if node.arch not in definition.get("arch", []):
            raise ValidationError(
                {
                    "workflow": f"Workflow {self.name} is for {', '.join(definition['arch'])}; "
                    f"node {node.pk} is {node.arch}."
                }
            )
        if node.firmware not in definition.get("firmware", []):
            raise ValidationError(
                {
                    "workflow": f"Workflow {self.name} is for firmware "
                    f"{', '.join(definition['firmware'])}; node {node.pk} has {node.firmware}."
                }
            )
        tasks = version.tasks or []
        # ``vm`` is the hypervisors app's one-to-one link to a node's VM (that app
        # sits above this one; the reverse accessor needs no import of it).
        if tasks and tasks[0].get("type") in VM_CREATE_TYPES and not hasattr(node, "vm"):
            raise ValidationError(
                {
                    "workflow": f"Workflow {self.name} creates the node's VM: ask for the VM with "
                    "POST /api/v1/hypervisors/{id}/vms and this workflow instead."
                }
            )
        return version


class WorkflowVersion(models.Model):
    """One immutable revision of a workflow: the YAML as saved, and its parsed form."""

    workflow = models.ForeignKey(
        "workflows.Workflow", on_delete=models.CASCADE, related_name="versions"
    )
    number = models.PositiveIntegerField()
    content = models.TextField(help_text="The YAML document as saved.")
    definition = models.JSONField(help_text="The validated definition, defaults applied.")
    content_hash = models.CharField(max_length=64, help_text="SHA-256 of content")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    author_name = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("workflow", "-number")
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "number"], name="workflowversion_unique_number"
            )
        ]

    def __str__(self) -> str:
        return f"{self.workflow.name} v{self.number}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ValidationError("Workflow versions are immutable; save a new version.")
        super().save(*args, **kwargs)

    @property
    def tasks(self) -> list[dict]:
        return self.definition.get("tasks", [])


class WorkflowRun(models.Model):
    """One install of one node with one pinned workflow version."""

    node = models.ForeignKey("nodes.Node", on_delete=models.CASCADE, related_name="runs")
    version = models.ForeignKey(
        "workflows.WorkflowVersion", on_delete=models.PROTECT, related_name="runs"
    )
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    progress = models.PositiveSmallIntegerField(default=0)
    steps = models.JSONField(default=list, help_text="[{index, type, status}] per task")
    error = models.TextField(blank=True)
    token_nonce = models.CharField(max_length=32)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_report_at = models.DateTimeField(null=True, blank=True)
    disk_written_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the installer reported that it continues from the local disk "
        "(Windows Setup after its WinPE phase): from then on this node boots its disk",
    )

    class Meta:
        ordering = ("-started_at", "-id")
        constraints = [
            models.UniqueConstraint(
                fields=["node"],
                condition=models.Q(status="running"),
                name="workflowrun_one_running_per_node",
            ),
            models.CheckConstraint(
                condition=models.Q(progress__lte=100), name="workflowrun_progress_max_100"
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of node {self.node_id} ({self.status})"


class RunLogLine(models.Model):
    """A log line reported by the installer."""

    run = models.ForeignKey("workflows.WorkflowRun", on_delete=models.CASCADE, related_name="logs")
    timestamp = models.DateTimeField(default=timezone.now)
    line = models.TextField()

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return self.line[:80]


class ImageTemplate(models.Model):
    """A deployable OS image (block or file level) with immutable versions."""

    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    kind = models.CharField(
        max_length=8, choices=(("block", "Block level"), ("file", "File level"))
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name

    @property
    def latest_version(self) -> ImageTemplateVersion | None:
        return self.versions.order_by("-number").first()


class ImageTemplateVersion(models.Model):
    """One uploaded image file; content never changes once stored."""

    CONVERSION_FIELDS = frozenset({"raw_path", "raw_size", "raw_sha256", "conversion", "error"})

    template = models.ForeignKey(
        "workflows.ImageTemplate", on_delete=models.CASCADE, related_name="versions"
    )
    number = models.PositiveIntegerField()
    format = models.CharField(max_length=16)
    arch = models.CharField(max_length=16)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    path = models.CharField(max_length=255, help_text="Relative to PUREBOOT_IMAGE_ROOT")
    virtual_size = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Block images: the disk size; archives: the unpacked size"
    )
    content_sha256 = models.CharField(
        max_length=64,
        blank=True,
        help_text="Archives: the SHA-256 of their file manifest (every file's SHA-256 and "
        "path), which the agent proves by reading the files back from the disk",
    )
    files = models.PositiveIntegerField(null=True, blank=True, help_text="Archives: regular files")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    author_name = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    conversion = models.CharField(
        max_length=12,
        default="none",
        choices=(
            ("none", "Not needed"),
            ("pending", "Pending"),
            ("done", "Done"),
            ("failed", "Failed"),
        ),
        help_text="qcow2 and VHDX get a raw copy a node can stream to disk.",
    )
    raw_path = models.CharField(max_length=255, blank=True)
    raw_size = models.PositiveBigIntegerField(null=True, blank=True)
    raw_sha256 = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ("template", "-number")
        constraints = [
            models.UniqueConstraint(
                fields=["template", "number"], name="imagetemplateversion_unique_number"
            )
        ]

    def __str__(self) -> str:
        return f"{self.template.name} v{self.number} ({self.format})"

    def save(self, *args, **kwargs):
        update_fields = kwargs.get("update_fields")
        if not self._state.adding and not (
            update_fields and set(update_fields) <= self.CONVERSION_FIELDS
        ):
            raise ValidationError("Template versions are immutable; upload a new version.")
        super().save(*args, **kwargs)


class BootImage(models.Model):
    """Kernel/initrd (or WinPE files) extracted from an installer ISO, served to nodes."""

    name = models.SlugField(max_length=100, unique=True)
    family = models.CharField(max_length=32)
    version = models.CharField(max_length=64, blank=True)
    arch = models.CharField(max_length=16)
    volume_id = models.CharField(max_length=64, blank=True)
    files = models.JSONField(
        default=dict, help_text="{role: {name, sha256, size}}; files live under the boot root"
    )
    source = models.CharField(max_length=1000, help_text="The ISO's path or URL")
    author_name = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return f"{self.name} ({self.family} {self.version} {self.arch})"


class RootFilesystem(models.Model):
    """A read-only root file system template that diskless nodes boot over NFS.

    Imported from a tar archive by ``manage.py import_rootfs`` into
    ``<PUREBOOT_NFSROOT_DIR>/templates/<name>/``; its kernel and initramfs are
    copied into the boot root (``nfsroot/<name>/``), because a Raspberry Pi
    fetches them over TFTP and never sees the NFS export. A workflow's
    ``nfs_root`` task names it.
    """

    name = models.SlugField(max_length=100, unique=True)
    arch = models.CharField(max_length=16)
    size = models.PositiveBigIntegerField(help_text="Unpacked bytes of its regular files")
    files = models.PositiveIntegerField(help_text="Regular files")
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of the archive it came from")
    source = models.CharField(max_length=1000, help_text="The archive's path when imported")
    kernel = models.CharField(max_length=255, help_text="The kernel's path inside the template")
    initrd = models.CharField(max_length=255, help_text="The initramfs's path inside the template")
    author_name = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return f"{self.name} ({self.arch})"

    @property
    def kernel_file(self) -> str:
        """The kernel under the boot root, as TFTP and /boot/files/ serve it."""
        return f"nfsroot/{self.name}/{self.kernel.rsplit('/', 1)[-1]}"

    @property
    def initrd_file(self) -> str:
        return f"nfsroot/{self.name}/{self.initrd.rsplit('/', 1)[-1]}"
