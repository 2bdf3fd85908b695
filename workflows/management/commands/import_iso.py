"""Import an installer ISO: recognise it, extract its boot files, register a boot image."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from workflows import isoimport
from workflows.bootimages import install_boot_image
from workflows.models import BootImage

_SHA_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


class Command(BaseCommand):
    help = (
        "Read an installer ISO (Ubuntu live-server, Debian, Fedora/Rocky/Alma, Arch, "
        "Windows) without mounting it, extract its kernel/initrd or WinPE files into the "
        "boot root and register a boot image that workflows can name. A URL needs --sha256."
    )

    def add_arguments(self, parser):
        parser.add_argument("source", help="path to an ISO, or an http(s) URL")
        parser.add_argument("--sha256", default="", help="expected SHA-256 (required for URLs)")
        parser.add_argument("--name", default="", help="boot image name (default: from the ISO)")
        parser.add_argument(
            "--replace", action="store_true", help="replace an existing boot image of that name"
        )
        parser.add_argument(
            "--max-bytes",
            type=int,
            default=16 * 1024**3,
            help="largest ISO to download (bytes)",
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
            staging = work_dir / "files"
            staging.mkdir()
            try:
                extraction = isoimport.extract(iso_path, info, staging)
            except isoimport.IsoImportError as exc:
                raise CommandError(f"{source}: {exc}") from None
            files = {
                role: {
                    "name": path.name,
                    "sha256": extraction.sha256[role],
                    "size": path.stat().st_size,
                }
                for role, path in extraction.paths.items()
            }
            self._install(boot_root, name, staging, info, files, source, existing)
        self.stdout.write(
            self.style.SUCCESS(f"imported {info.family} {info.version} ({info.arch}) as {name}")
        )
        for role, meta in sorted(files.items()):
            self.stdout.write(
                f"  {role:10} /boot/files/{name}/{meta['name']}  sha256 {meta['sha256']}"
            )

    def _fetch(self, source: str, sha256: str, max_bytes: int, work_dir: Path) -> Path:
        if urlparse(source).scheme in {"http", "https"}:
            if not _SHA_RE.match(sha256):
                raise CommandError("a URL needs --sha256 with the ISO's 64-hex-digit SHA-256")
            try:
                return isoimport.download(
                    source,
                    work_dir / "download.iso",
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
