"""Import an installer ISO (or Debian's netboot.tar.gz): recognise it, extract its
boot files, register a boot image."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from workflows import isoimport, wim
from workflows.bootimages import BootImageFolderTaken, check_folder_free, install_boot_image
from workflows.models import BootImage

_SHA_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


def _is_url(source: str) -> bool:
    return urlparse(source).scheme in {"http", "https"}


def _record_sources(files: dict[str, dict], info: isoimport.IsoInfo) -> None:
    """Record beside each boot file where it came from in the ISO or archive ("from"),
    and the installer flavour (Debian: "cd" or "netboot"), which the save-time check
    reads (workflows.installer_media)."""
    for bf in info.files:
        files[bf.role]["from"] = bf.iso_path
        if info.details.get("flavour"):
            files[bf.role]["flavour"] = info.details["flavour"]


def _record_editions(files: dict[str, dict], paths: dict[str, Path], source: str) -> None:
    """Record the editions of a Windows image's install.wim (or .esd) under
    ``files["install_wim"]["images"]``: a workflow's ``edition`` is checked against them."""
    role = "install_wim" if "install_wim" in files else "install_esd"
    try:
        found = wim.images(paths[role])
    except wim.WimError as exc:
        raise CommandError(f"{source}: {exc}") from None
    files["install_wim"] = {**files.pop(role), "images": [i.as_dict() for i in found]}


class Command(BaseCommand):
    help = (
        "Read an installer ISO (Ubuntu live-server, Debian, Fedora/Rocky/Alma, Arch, "
        "Windows) without mounting it, extract its kernel/initrd or WinPE files (and what "
        "the installer fetches at boot: Arch's root file system, Anaconda's runtime image, "
        "an Ubuntu live-server ISO itself) into the boot root and register a boot image "
        "that workflows can name. For a Debian network install, give Debian's "
        "netboot.tar.gz (or mini.iso): a netinst or DVD ISO holds the CD installer, which "
        "cannot install over the network. A URL needs --sha256."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "source", help="path to an ISO or a Debian netboot.tar.gz, or an http(s) URL"
        )
        parser.add_argument("--sha256", default="", help="expected SHA-256 (required for URLs)")
        parser.add_argument("--name", default="", help="boot image name (default: from the ISO)")
        parser.add_argument(
            "--replace", action="store_true", help="replace an existing boot image of that name"
        )
        parser.add_argument(
            "--max-bytes",
            type=int,
            default=16 * 1024**3,
            help="largest ISO to download, or to keep in the boot root (bytes)",
        )

    def handle(self, *args, source, sha256, name, replace, max_bytes, **options):
        boot_root = Path(settings.PUREBOOT_BOOT_ROOT)
        boot_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=boot_root, prefix=".import-") as work:
            work_dir = Path(work)
            iso_path = self._fetch(source, sha256, max_bytes, work_dir)
            try:
                info = isoimport.recognise(iso_path)
            except isoimport.IsoImportError as exc:
                raise CommandError(f"{source}: {exc}") from None
            name = name or info.name
            if not _NAME_RE.match(name):
                raise CommandError(f"--name {name!r}: use lower-case letters, digits, . _ -")
            existing = BootImage.objects.filter(name=name).first()
            if existing and not replace:
                raise CommandError(f"boot image {name} exists; use --replace to replace it")
            try:
                check_folder_free(name, existing is not None)
            except BootImageFolderTaken as exc:
                raise CommandError(f"--name {name}: {exc}") from None
            staging = work_dir / "files"
            staging.mkdir()
            try:
                extraction = isoimport.extract(iso_path, info, staging)
                paths, digests = dict(extraction.paths), dict(extraction.sha256)
                if info.keeps_iso:
                    paths["iso"], digests["iso"] = isoimport.keep_iso(
                        iso_path,
                        info,
                        staging,
                        max_bytes=max_bytes,
                        # A download is ours, and verified: moved, not copied.
                        verified_sha256=sha256.lower() if _is_url(source) else "",
                    )
            except isoimport.IsoImportError as exc:
                raise CommandError(f"{source}: {exc}") from None
            files = {
                role: {
                    # Relative to the image's folder: some roles live in sub-folders.
                    "name": path.relative_to(staging).as_posix(),
                    "sha256": digests[role],
                    "size": path.stat().st_size,
                }
                for role, path in paths.items()
            }
            _record_sources(files, info)
            if info.family == "windows":
                _record_editions(files, paths, source)
            self._install(boot_root, name, staging, info, files, source, existing)
        flavour = f", {info.details['flavour']} installer" if info.details.get("flavour") else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"imported {info.family} {info.version} ({info.arch}{flavour}) as {name}"
            )
        )
        for role, meta in sorted(files.items()):
            self.stdout.write(
                f"  {role:14} /boot/files/{name}/{meta['name']}  sha256 {meta['sha256']}"
            )
        for image in files.get("install_wim", {}).get("images", []):
            self.stdout.write(f"  edition {image['index']}: {image['name']}")

    def _fetch(self, source: str, sha256: str, max_bytes: int, work_dir: Path) -> Path:
        if _is_url(source):
            if not _SHA_RE.match(sha256):
                raise CommandError("a URL needs --sha256 with the file's 64-hex-digit SHA-256")
            try:
                return isoimport.download(
                    source,
                    # Recognised by its content: an ISO or a netboot.tar.gz alike.
                    work_dir / "download",
                    sha256.lower(),
                    max_bytes=max_bytes,
                    timeout=60,
                )
            except isoimport.IsoImportError as exc:
                raise CommandError(str(exc)) from None
        path = Path(source)
        if not path.is_file():
            raise CommandError(f"{source}: no such file")
        return path

    def _install(self, boot_root, name, staging, info, files, source, existing) -> None:
        install_boot_image(
            name=name,
            family=info.family,
            version=info.version,
            arch=info.arch,
            volume_id=info.volume_id,
            files=files,
            source=isoimport.redact_url(source) if "://" in source else source,
            staging=staging,
            replace=True,  # the caller checked --replace
        )
