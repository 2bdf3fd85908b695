"""Image template versions: upload, conversion and deletion rules."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from audit import services as audit
from nodes import services as node_services
from nodes.choices import NodeState
from nodes.models import Node

from . import imagefiles
from .definitions import ARCHES
from .models import ImageTemplate, ImageTemplateVersion

log = logging.getLogger(__name__)
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
# States in which a node's workflow is about to use, or is using, its images.
BUSY_STATES = (NodeState.PENDING, NodeState.INSTALLING, NodeState.REPROVISION)


@dataclass(frozen=True)
class UploadResult:
    template: ImageTemplate
    version: ImageTemplateVersion
    created: bool


class TemplateInUse(Exception):
    def __init__(self, template: ImageTemplate, node_ids: list[int]) -> None:
        self.node_ids = node_ids
        super().__init__(
            f"Template {template.name} is used by the workflows of nodes "
            f"{', '.join(map(str, node_ids[:20]))} (pending or installing)."
        )


def upload_version(
    *,
    name: str,
    fmt: str,
    arch: str,
    description: str,
    upload: imagefiles.HashedTemporaryFile,
    actor: node_services.Actor,
) -> UploadResult:
    """Check an uploaded file and store it as the template's next version.

    The temporary file is consumed: moved into storage, or deleted when
    anything is wrong. Raises ValidationError, FormatMismatch or ToolMissing.
    """
    temp = Path(upload.temporary_file_path())
    try:
        errors = {}
        if not _NAME_RE.match(name or ""):
            errors["name"] = "1-100 lower-case letters, digits, '.', '_' or '-'."
        if fmt not in imagefiles.FORMATS:
            errors["format"] = f"One of {', '.join(imagefiles.FORMATS)}."
        if arch not in ARCHES:
            errors["arch"] = f"One of {', '.join(ARCHES)}."
        if errors:
            raise ValidationError(errors)
        upload.file.close()
        facts = imagefiles.check_format(temp, fmt)
        existing = ImageTemplate.objects.filter(name=name).first()
        if existing and existing.kind != imagefiles.kind_of(fmt):
            raise ValidationError(
                {"format": f"{name} holds {existing.kind}-level images; {fmt} is not one."}
            )
        latest = existing.latest_version if existing else None
        if latest and latest.sha256 == upload.sha256 and latest.format == fmt:
            return UploadResult(existing, latest, False)
        relative = imagefiles.store(temp, upload.sha256, fmt)
    finally:
        temp.unlink(missing_ok=True)
    try:
        with transaction.atomic():
            template, created = ImageTemplate.objects.select_for_update().get_or_create(
                name=name,
                defaults={"kind": imagefiles.kind_of(fmt), "description": description or ""},
            )
            latest = template.latest_version
            version = ImageTemplateVersion.objects.create(
                template=template,
                number=(latest.number if latest else 0) + 1,
                format=fmt,
                arch=arch,
                size=upload.size,
                sha256=upload.sha256,
                path=relative,
                virtual_size=facts.get("virtual_size"),
                content_sha256=facts.get("content_sha256", ""),
                files=facts.get("files"),
                author=actor.user,
                author_name=actor.user.get_username() if actor.user else actor.label,
                conversion="pending" if fmt in ("qcow2", "vhdx") else "none",
            )
            audit.record(
                actor=actor.label,
                action="template.create" if created else "template.version",
                object_type="workflows.imagetemplate",
                object_id=template.pk,
                changes={
                    "version": {
                        "before": latest.number if latest else None,
                        "after": version.number,
                    }
                },
                details={"name": name, "format": fmt, "sha256": upload.sha256, "size": upload.size},
            )
            if version.conversion == "pending":
                from .tasks import convert_template_version

                transaction.on_commit(lambda: convert_template_version.delay(version.pk))
    except Exception:
        _remove_unreferenced(relative)
        raise
    return UploadResult(template, version, True)


def convert_version(version_id: int) -> ImageTemplateVersion:
    """Give a qcow2/VHDX version its raw copy (idempotent)."""
    version = ImageTemplateVersion.objects.get(pk=version_id)
    if version.conversion != "pending":
        return version
    source = imagefiles.image_root() / version.path
    try:
        relative, size, digest = imagefiles.convert_to_raw(source, version.format)
    except (imagefiles.FormatMismatch, imagefiles.ToolMissing, OSError) as exc:
        version.conversion, version.error = "failed", str(exc)[:2000]
        version.save(update_fields=["conversion", "error"])
        log.warning("converting %s failed: %s", version, exc)
        return version
    version.raw_path, version.raw_size, version.raw_sha256 = relative, size, digest
    version.conversion = "done"
    version.save(update_fields=["raw_path", "raw_size", "raw_sha256", "conversion"])
    return version


def nodes_using(template: ImageTemplate) -> list[int]:
    """Nodes about to install or installing with a workflow that deploys this template."""
    names = {template.name}
    users = []
    nodes = Node.objects.filter(state__in=BUSY_STATES, workflow_version__isnull=False)
    for node in nodes.select_related("workflow_version"):
        for task in node.workflow_version.tasks:
            if task["type"] != "image_deploy":
                continue
            image = str(task.get("image", ""))
            if image.split("@", 1)[0] in names:
                users.append(node.pk)
                break
    return sorted(users)


def delete_template(template_id: int, actor: node_services.Actor) -> None:
    with transaction.atomic():
        template = ImageTemplate.objects.select_for_update().get(pk=template_id)
        busy = nodes_using(template)
        if busy:
            raise TemplateInUse(template, busy)
        paths = []
        for version in template.versions.all():
            paths += [p for p in (version.path, version.raw_path) if p]
        audit.record(
            actor=actor.label,
            action="template.delete",
            object_type="workflows.imagetemplate",
            object_id=template.pk,
            details={"name": template.name, "versions": template.versions.count()},
        )
        template.delete()
        transaction.on_commit(lambda: [_remove_unreferenced(p) for p in paths])


def _remove_unreferenced(relative: str) -> None:
    """Delete a stored file unless another version still points at it."""
    from django.db.models import Q

    if ImageTemplateVersion.objects.filter(Q(path=relative) | Q(raw_path=relative)).exists():
        return
    (imagefiles.image_root() / relative).unlink(missing_ok=True)


class DeployImpossible(Exception):
    """The image cannot go onto this machine as asked; nothing was written."""


def deployable_version(task: dict[str, Any]) -> ImageTemplateVersion:
    """The template version a workflow's image_deploy step names, ready to stream."""
    template = ImageTemplate.objects.filter(name=task["image"]).first()
    if template is None:
        raise DeployImpossible(f"image template {task['image']!r} does not exist")
    versions = template.versions.all()
    version = (
        versions.filter(number=task["version"]).first()
        if task.get("version")
        else versions.order_by("-number").first()
    )
    if version is None:
        raise DeployImpossible(f"image template {template.name!r} has no such version")
    if version.format == "wim":
        raise DeployImpossible(
            f"{version} is a WIM image: WIM images are applied by the Windows path, which is "
            "not built yet"
        )
    if version.format == "squashfs":
        raise DeployImpossible(
            f"{version} is a squashfs image, which cannot be unpacked from a stream: "
            "upload the same tree as tar.zst or tar.gz"
        )
    if version.format in imagefiles.ARCHIVE_FORMATS and not version.content_sha256:
        raise DeployImpossible(
            f"{version} was uploaded before PureBoot recorded archives' file manifests: "
            "upload it again"
        )
    if version.format in ("qcow2", "vhdx") and version.conversion != "done":
        raise DeployImpossible(
            f"{version} has no raw copy yet (conversion {version.conversion}"
            f"{': ' + version.error if version.error else ''})"
        )
    return version


def raw_file(version: ImageTemplateVersion) -> tuple[str, int, str]:
    """(path under the image root, size, SHA-256) of the bytes the agent streams: a block
    image's raw bytes, or an archive as uploaded."""
    if version.format in ("raw", *imagefiles.ARCHIVE_FORMATS):
        return version.path, version.size, version.sha256
    return version.raw_path, int(version.raw_size or 0), version.raw_sha256
