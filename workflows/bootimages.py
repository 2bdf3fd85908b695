"""Registering a boot image: its files into the boot root and its row, together or not at all.

Used by ``import_iso`` (files extracted from an installer ISO) and by
``build_agent`` (the agent's kernel and initramfs). The files are staged in
a folder beside their final place; the row and the audit event are written
and the folder swapped in inside one transaction, and a failure puts the
old folder back, so a machine never boots half an image.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.db import transaction

from audit import services as audit

from .models import BootImage


class BootImageExists(Exception):
    """A boot image of that name exists and replacing it was not asked for."""


class BootImageFolderTaken(Exception):
    """The boot root already holds something of that name that is no boot image.

    The bootloaders (``grub/``, ``grub-arm64/``, ``rpi/``, ``pxelinux.cfg/``),
    the NFS roots' kernels (``nfsroot/``) and an operator's own files live
    beside the boot images; importing over them would delete them.
    """


def install_boot_image(
    *,
    name: str,
    family: str,
    version: str,
    arch: str,
    files: dict[str, dict],
    source: str,
    volume_id: str = "",
    staging: Path | None = None,
    sources: dict[str, Path] | None = None,
    replace: bool = False,
) -> BootImage:
    """Register ``name``: files from ``staging`` (a folder in the boot root) or ``sources``
    (role -> file, copied in under the name ``files[role]["name"]``)."""
    boot_root = Path(settings.PUREBOOT_BOOT_ROOT)
    boot_root.mkdir(parents=True, exist_ok=True)
    existing = BootImage.objects.filter(name=name).first()
    if existing and not replace:
        raise BootImageExists(name)
    check_folder_free(name, existing is not None)
    with tempfile.TemporaryDirectory(dir=boot_root, prefix=".import-") as work:
        if staging is None:
            staging = Path(work) / "files"
            staging.mkdir()
            for role, path in (sources or {}).items():
                shutil.copyfile(path, staging / files[role]["name"])
        return _swap_in(
            boot_root, name, staging, existing, family, version, arch, volume_id, files, source
        )


def check_folder_free(name: str, registered: bool) -> None:
    """Raise BootImageFolderTaken when ``<boot root>/<name>`` exists but is no boot image."""
    target = Path(settings.PUREBOOT_BOOT_ROOT) / name
    if not registered and (target.exists() or target.is_symlink()):
        raise BootImageFolderTaken(
            f"{target} exists and is not a boot image (bootloaders, NFS root kernels or an "
            "operator's files live there); choose another name"
        )


def _swap_in(boot_root, name, staging, existing, family, version, arch, volume_id, files, source):
    target = boot_root / name
    old = boot_root / f".old-{name}"
    shutil.rmtree(old, ignore_errors=True)
    moved_old = swapped = False
    try:
        with transaction.atomic():
            if existing:
                existing.delete()
            image = BootImage.objects.create(
                name=name,
                family=family,
                version=version,
                arch=arch,
                volume_id=volume_id,
                files=files,
                source=source,
                author_name="system",
            )
            audit.record(
                actor="system",
                action="bootimage.replace" if existing else "bootimage.import",
                object_type="workflows.bootimage",
                object_id=image.pk,
                details={
                    "name": name,
                    "family": family,
                    "version": version,
                    "files": {r: f["sha256"] for r, f in files.items()},
                },
            )
            # Swap the folder last, still inside the transaction.
            if target.exists():
                target.rename(old)
                moved_old = True
            staging.rename(target)
            swapped = True
    except Exception:
        # Put the files back as they were: the row was rolled back too.
        if swapped:
            target.rename(staging)
        if moved_old:
            old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return image
