"""Import wimboot, the boot loader through which iPXE boots WinPE (operator-supplied)."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from workflows.bootimages import BootImageExists, BootImageFolderTaken, install_boot_image

NAME = FAMILY = "wimboot"
RELEASES = "https://github.com/ipxe/wimboot/releases"
# wimboot is about 60 KB; the bound only keeps an import from reading anything at all.
MAX_BYTES = 16 * 1024 * 1024
# wimboot is one file for both firmware: a PE image (UEFI) that is also a Linux
# bzImage (BIOS: iPXE boots it through the Linux boot protocol, "HdrS" at 0x202).
PE_MAGIC, BZIMAGE_MAGIC, BZIMAGE_OFFSET = b"MZ", b"HdrS", 0x202


def check(data: bytes, shown: str) -> None:
    """Refuse what iPXE could not boot as wimboot on both BIOS and UEFI."""
    get = f"download the file named wimboot from {RELEASES}"
    if not data:
        raise CommandError(f"{shown} is empty; {get}")
    if len(data) > MAX_BYTES:
        raise CommandError(f"{shown} is over {MAX_BYTES} bytes; wimboot is about 60 KB ({get})")
    if not data.startswith(PE_MAGIC):
        raise CommandError(f"{shown} is not a PE image (no 'MZ' header), so not wimboot; {get}")
    if data[BZIMAGE_OFFSET : BZIMAGE_OFFSET + 4] != BZIMAGE_MAGIC:
        raise CommandError(
            f"{shown} has no bzImage header ('HdrS' at 0x202): iPXE could not boot it on BIOS; "
            f"{get}"
        )


class Command(BaseCommand):
    help = (
        "Import wimboot (operator-supplied: the file named wimboot from "
        f"{RELEASES}), which Windows workflows boot WinPE through. The check is of the "
        "file's format only (a PE image that is also a Linux bzImage, at most 16 MiB), as "
        "iPXE needs it on BIOS and UEFI; a Linux kernel passes it too."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="the wimboot file")
        parser.add_argument("--replace", action="store_true", help="replace the imported one")

    def handle(self, *args, path: str, replace: bool, **options):
        source = Path(path)
        if not source.is_file():
            raise CommandError(f"{path}: no such file; download wimboot from {RELEASES}")
        with source.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
        check(data, path)
        digest = hashlib.sha256(data).hexdigest()
        files = {"wimboot": {"name": "wimboot", "sha256": digest, "size": len(data)}}
        try:
            with tempfile.TemporaryDirectory() as work:
                checked = Path(work) / "wimboot"
                checked.write_bytes(data)  # what was checked, not the file as it is now
                install_boot_image(
                    name=NAME,
                    family=FAMILY,
                    version="",
                    arch="x86_64",
                    files=files,
                    source=str(source),
                    sources={"wimboot": checked},
                    replace=replace,
                )
        except BootImageExists:
            raise CommandError("wimboot is imported already; use --replace to replace it") from None
        except BootImageFolderTaken as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"imported wimboot ({len(data)} bytes, {digest})"))
