"""What a Windows install's templates need beyond the usual node context.

``windows``: where Setup reads ``install.wim`` (the boot image's folder on the
SMB share PUREBOOT_WINDOWS_SHARE names), the processor architecture and
firmware the unattend is written for, whether the boot image carries drivers,
and the local Administrator password and product key from the credential
store. The secrets are revealed (and audited, naming the node and its run)
only when the files are served to the node itself; the preview and the
save-time check see placeholders.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from credentials import services as credentials
from credentials.models import Credential, CredentialKind
from nodes.models import Node

from .models import BootImage, WorkflowRun, WorkflowVersion
from .rendering import RenderError

#: What a secret reads as wherever the node itself is not the reader.
PREVIEW_SECRET = "[revealed only to the node]"

# Node.arch -> Windows' processorArchitecture.
PROCESSOR_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def install_share(image_name: str) -> str:
    """The UNC folder holding the boot image's install.wim, or "" when no share is set."""
    share = settings.PUREBOOT_WINDOWS_SHARE.rstrip("\\")
    return f"{share}\\{image_name}" if share else ""


def _boot_image(version: WorkflowVersion) -> BootImage | None:
    task = next((t for t in version.tasks if t["type"] == "pxe_boot"), None)
    name = (task or {}).get("boot_image")
    return BootImage.objects.filter(name=name).first() if name else None


def _secret(
    name: str, kind: str, field: str, node: Node, run: WorkflowRun | None, served: bool
) -> str:
    """The password of credential ``name`` (of ``kind``), revealed for the node's own files."""
    if not name:
        return ""
    credential = Credential.objects.filter(name=name).first()
    if credential is None or credential.kind != kind:
        raise RenderError(
            f"windows_install: params.{field}: no credential {name!r} of kind {kind} is stored"
        )
    if not served:
        return PREVIEW_SECRET
    reason = f"Windows unattend for node {node.pk} ({node}), install run {run.pk if run else '-'}"
    try:
        return credentials.reveal(credential, f"node:{node.pk}", reason).password
    except credentials.CredentialError as exc:  # a store down or refusing: the caller's 409
        raise RenderError(f"windows_install: params.{field}: credential {name}: {exc}") from None


def windows_context(
    node: Node,
    version: WorkflowVersion,
    params: dict[str, Any],
    *,
    run: WorkflowRun | None = None,
    served: bool = False,
) -> dict[str, Any]:
    """The ``windows`` context of a windows_install task (``params``) for ``node``."""
    image = _boot_image(version)
    if image is None:
        raise RenderError("windows_install: the workflow's pxe_boot names no imported boot image")
    share = install_share(image.name)
    if not share:
        raise RenderError(
            "windows_install: PUREBOOT_WINDOWS_SHARE is not set: Windows Setup reads "
            "install.wim from the boot root exported over SMB (manage.py smb_config)"
        )
    return {
        "install_share": share,
        "install_file": image.files.get("install_wim", {}).get("name", "install.wim"),
        "arch": PROCESSOR_ARCH.get(node.arch, "amd64"),
        "firmware": "uefi" if node.firmware == "uefi" else "bios",
        "drivers": bool(image.files.get("boot_wim", {}).get("drivers")),
        "admin_password": _secret(
            params.get("admin_credential", ""),
            CredentialKind.WINDOWS_ADMIN,
            "admin_credential",
            node,
            run,
            served,
        ),
        "product_key": _secret(
            params.get("product_key_credential", ""),
            CredentialKind.PRODUCT_KEY,
            "product_key_credential",
            node,
            run,
            served,
        ),
        "share_username": "",
        "share_password": "",
    }
