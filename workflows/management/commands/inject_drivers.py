"""Make a Windows boot image for one hardware model: boot.wim with its INF drivers added."""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from workflows import wim
from workflows.bootimages import BootImageExists, BootImageFolderTaken, install_boot_image
from workflows.models import BootImage
from workflows.rootfs_archive import sha256_file

MAX_FILES = 10_000
MAX_BYTES = 2 * 1024**3
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")


def model_slug(model: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")[:40].strip("-")
    if not slug:
        raise CommandError(f"--model {model!r}: name a hardware model (letters or digits)")
    return slug


def _unreadable(exc: OSError) -> None:
    raise CommandError(f"{exc.filename}: {exc.strerror}")


def driver_files(folder: Path) -> list[Path]:
    """Every regular file under ``folder`` (relative), refusing links and special files."""
    if not folder.is_dir() or folder.is_symlink():
        raise CommandError(f"{folder}: not a folder")
    found, total = [], 0
    for top, dirs, names in os.walk(folder, onerror=_unreadable):
        for name in dirs + names:
            path = Path(top) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise CommandError(f"{path}: a link; copy the driver files themselves")
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise CommandError(f"{path}: not a regular file")
            if stat.S_ISREG(mode):
                found.append(path.relative_to(folder))
                total += path.lstat().st_size
        if len(found) > MAX_FILES:
            raise CommandError(f"{folder}: more than {MAX_FILES} files")
        if total > MAX_BYTES:
            raise CommandError(f"{folder}: more than {MAX_BYTES} bytes")
    if not any(p.suffix.lower() == ".inf" for p in found):
        raise CommandError(f"{folder}: no .inf file; give the folder of INF drivers (unpacked)")
    return found


def _copy_regular(src: Path, dst: Path, budget: int) -> int:
    """Copy ``src`` if it is still a regular file (not swapped for a link since it was
    checked) and no larger than ``budget``; return its size."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise CommandError(f"{src}: {exc.strerror} (changed while being read?)") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise CommandError(f"{src}: not a regular file")
        size = 0
        with dst.open("wb") as out:
            for block in iter(lambda: handle.read(1 << 20), b""):
                size += len(block)
                if size > budget:
                    raise CommandError(f"{src.parent}: more than {MAX_BYTES} bytes of drivers")
                out.write(block)
    return size


class Command(BaseCommand):
    help = (
        "Copy a Windows boot image (import_iso) into a new boot image whose boot.wim holds "
        "an INF driver folder under \\Drivers\\<model> in its boot index (wimlib). WinPE "
        "loads them with drvload before Setup, and Setup adds them to Windows. The source "
        "image is not changed; a workflow names the new image for that hardware model."
    )

    def add_arguments(self, parser):
        parser.add_argument("image", help="a Windows boot image (family windows)")
        parser.add_argument("drivers", help="folder of unpacked INF drivers")
        parser.add_argument(
            "--model", required=True, help="the hardware model, e.g. 'OptiPlex 7010'"
        )
        parser.add_argument("--name", default="", help="new image's name (default IMAGE-<model>)")
        parser.add_argument("--replace", action="store_true", help="replace that image")

    def handle(self, *args, image: str, drivers: str, model: str, name: str, replace, **options):
        source = BootImage.objects.filter(name=image).first()
        if source is None or source.family != "windows":
            raise CommandError(
                f"{image}: no Windows boot image of that name (manage.py import_iso)"
            )
        slug = model_slug(model)
        name = name or f"{image}-{slug}"[:100]
        if not _NAME.fullmatch(name):
            raise CommandError(f"--name {name!r}: use lower-case letters, digits, . _ -")
        folder = Path(drivers)
        files_found = driver_files(folder)
        boot_root = Path(settings.PUREBOOT_BOOT_ROOT)
        with tempfile.TemporaryDirectory(dir=boot_root, prefix=".import-") as work:
            staging = Path(work) / "files"
            staging.mkdir()
            frozen = Path(work) / "drivers" / slug
            copied = 0
            for relative in files_found:  # what was checked, copied before wimlib reads it
                (frozen / relative).parent.mkdir(parents=True, exist_ok=True)
                copied += _copy_regular(folder / relative, frozen / relative, MAX_BYTES - copied)
            files = self._copy_image(source, boot_root / source.name, staging)
            boot_wim = staging / files["boot_wim"]["name"]
            try:
                wim.inject_drivers(boot_wim, frozen, slug)
            except wim.WimError as exc:
                raise CommandError(str(exc)) from None
            infs = sorted(p.as_posix() for p in files_found if p.suffix.lower() == ".inf")
            files["boot_wim"] = {
                **files["boot_wim"],
                "sha256": sha256_file(boot_wim),
                "size": boot_wim.stat().st_size,
                "drivers": {"model": model, "folder": f"Drivers/{slug}", "infs": infs},
            }
            try:
                install_boot_image(
                    name=name,
                    family=source.family,
                    version=source.version,
                    arch=source.arch,
                    volume_id=source.volume_id,
                    files=files,
                    source=f"{source.name} + drivers for {model} from {folder}",
                    staging=staging,
                    replace=replace,
                )
            except BootImageExists:
                raise CommandError(f"boot image {name} exists; use --replace") from None
            except BootImageFolderTaken as exc:
                raise CommandError(str(exc)) from None
        self.stdout.write(
            self.style.SUCCESS(f"{name}: {source.name} with {len(infs)} INF file(s) for {model}")
        )

    def _copy_image(self, source: BootImage, folder: Path, staging: Path) -> dict[str, dict]:
        """The source image's files in ``staging``: hard links (copies across file
        systems), boot.wim always copied since it is changed."""
        files = {role: dict(meta) for role, meta in source.files.items()}
        if "boot_wim" not in files:
            raise CommandError(f"{source.name} has no boot.wim")
        for role, meta in files.items():
            src, dst = folder / meta["name"], staging / meta["name"]
            if not src.is_file() or src.is_symlink():
                raise CommandError(f"{src}: missing from the boot root; re-import {source.name}")
            dst.parent.mkdir(parents=True, exist_ok=True)
            if role == "boot_wim":
                shutil.copyfile(src, dst)
                continue
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
        return files
