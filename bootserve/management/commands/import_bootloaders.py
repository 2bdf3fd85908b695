"""Copy the network bootloaders from Debian's packages into the boot root.

Every file is written atomically (a temporary file in the same folder, then
``os.replace``), so the TFTP daemon never serves half a bootloader, and only
when its content changed, so a second run changes nothing. The SHA-256 of each
file placed is recorded in ``<boot root>/bootloaders.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bootserve.raspberrypi import FIRMWARE_DIR

# Where Debian bookworm's packages install the files (module constants so that
# tests can point them elsewhere).
IPXE_DIR = Path("/usr/lib/ipxe")
PXELINUX_DIR = Path("/usr/lib/PXELINUX")
SYSLINUX_BIOS_DIR = Path("/usr/lib/syslinux/modules/bios")
GRUB_EFI_DIR = Path("/usr/lib/grub/x86_64-efi")
GRUB_SIGNED = Path("/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed")
GRUB_MKNETDIR = "grub-mknetdir"

MANIFEST = "bootloaders.json"
GRUB_SUBDIR = "grub"  # grubnetx64.efi's prefix is /grub
PI_DIR = FIRMWARE_DIR  # where the TFTP daemon looks for Pi firmware
PI_REQUIRED = ("start4.elf", "fixup4.dat")
PI_ORIGIN = "Raspberry Pi firmware"


@dataclass(frozen=True)
class Source:
    """One file to import: where a Debian package puts it and where it goes."""

    package: str  # the Debian package, or "Raspberry Pi firmware"
    path: Path
    dest: str  # relative to the boot root


def _package_sources() -> list[Source]:
    sources = [
        Source("ipxe", IPXE_DIR / n, n) for n in ("undionly.kpxe", "ipxe.efi", "snponly.efi")
    ]
    sources += [Source("pxelinux", PXELINUX_DIR / n, n) for n in ("pxelinux.0", "lpxelinux.0")]
    # ldlinux.c32 is what (l)pxelinux.0 loads first; the menu modules and their
    # libraries let an operator's own configs use UI menu.c32 / vesamenu.c32.
    modules = ("ldlinux.c32", "libcom32.c32", "libutil.c32", "menu.c32", "vesamenu.c32")
    sources += [Source("syslinux-common", SYSLINUX_BIOS_DIR / n, n) for n in modules]
    return sources


def _missing_error(missing: dict[str, list[str]]) -> CommandError:
    packages = sorted(missing)
    detail = "; ".join(f"{p} (no {', '.join(missing[p])})" for p in packages)
    return CommandError(
        f"Missing Debian package(s): {detail}. Install with: "
        f"apt-get install -y {' '.join(packages)}"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write(dest: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``dest`` through a temporary file in its folder and ``os.replace``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def install_file(src: Path, dest: Path) -> tuple[str, bool]:
    """Copy ``src`` to ``dest`` atomically unless identical; (sha256, whether it changed)."""
    digest = _sha256(src)
    if dest.is_file() and not dest.is_symlink() and _sha256(dest) == digest:
        return digest, False

    def copy(handle: IO[bytes]) -> None:
        with src.open("rb") as source:
            shutil.copyfileobj(source, handle, 1 << 20)

    _atomic_write(dest, copy)
    return digest, True


def _grub_build(missing: dict[str, list[str]]) -> str:
    """How grubnetx64.efi is made: "signed" (Debian's signed build) or "mknetdir".

    Records in ``missing`` the packages the grub-mknetdir build lacks.
    """
    if GRUB_SIGNED.is_file():
        return "signed"
    if shutil.which(GRUB_MKNETDIR) is None:
        missing.setdefault("grub-common", []).append(GRUB_MKNETDIR)
    if not (GRUB_EFI_DIR / "normal.mod").is_file():
        missing.setdefault("grub-efi-amd64-bin", []).append(str(GRUB_EFI_DIR / "normal.mod"))
    return "mknetdir"


def _grub_sources(build: str, workdir: Path) -> list[Source]:
    """grubnetx64.efi, and for the grub-mknetdir build the modules it loads.

    The signed image carries its modules inside; the grub-mknetdir build loads
    them from its prefix, ``/grub/x86_64-efi/``, so they are imported there.
    """
    if build == "signed":
        return [Source("grub-efi-amd64-signed", GRUB_SIGNED, "grubnetx64.efi")]
    args = [shutil.which(GRUB_MKNETDIR) or GRUB_MKNETDIR, f"--net-directory={workdir}"]
    args += [f"--subdir={GRUB_SUBDIR}", f"--directory={GRUB_EFI_DIR}"]
    args += ["--locales=", "--themes=", "--fonts="]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    platform_dir = workdir / GRUB_SUBDIR / "x86_64-efi"
    if done.returncode != 0 or not (platform_dir / "core.efi").is_file():
        raise CommandError(f"grub-mknetdir failed: {(done.stderr or done.stdout).strip()}")
    sources = [Source("grub-efi-amd64-bin", platform_dir / "core.efi", "grubnetx64.efi")]
    for path in sorted(platform_dir.iterdir()):
        # core.efi is placed as grubnetx64.efi. Its grub.cfg is left out: the
        # signed image reads /grub/x86_64-efi/grub.cfg before /grub/grub.cfg, so
        # a stale one would shadow PureBoot's answers after a switch to it.
        if path.is_file() and path.name not in ("core.efi", "grub.cfg"):
            dest = f"{GRUB_SUBDIR}/x86_64-efi/{path.name}"
            sources.append(Source("grub-efi-amd64-bin", path, dest))
    return sources


def _pi_sources(folder: Path) -> list[Source]:
    """Raspberry Pi 4 network-boot firmware from an operator-supplied folder."""
    if not folder.is_dir():
        raise CommandError(f"--pi-firmware {folder}: not a folder")
    absent = [name for name in PI_REQUIRED if not (folder / name).is_file()]
    if absent:
        raise CommandError(
            f"--pi-firmware {folder}: no {' or '.join(absent)}; give the boot folder of the "
            "Raspberry Pi firmware (github.com/raspberrypi/firmware, boot/), which holds "
            f"{', '.join(PI_REQUIRED)}"
        )
    names = [*PI_REQUIRED, "bootcode.bin"] + sorted(p.name for p in folder.glob("*.dtb"))
    sources = [
        Source(PI_ORIGIN, folder / n, f"{PI_DIR}/{n}") for n in names if (folder / n).is_file()
    ]
    overlays = folder / "overlays"
    if overlays.is_dir():
        for path in sorted(overlays.rglob("*")):
            if path.is_file():
                dest = f"{PI_DIR}/{path.relative_to(folder).as_posix()}"
                sources.append(Source(PI_ORIGIN, path, dest))
    return sources


def _write_manifest(root: Path, entries: dict[str, dict[str, str]]) -> bool:
    """Merge ``entries`` into the manifest, dropping files no longer there."""
    manifest = root / MANIFEST
    old: Any = {}
    if manifest.is_file():
        try:
            old = json.loads(manifest.read_text())
        except ValueError:
            pass  # rewritten below from what this run placed
    recorded = old.get("files") if isinstance(old, dict) else None
    files = {
        k: v for k, v in (recorded or {}).items() if isinstance(k, str) and (root / k).is_file()
    }
    files.update(entries)
    text = json.dumps({"files": dict(sorted(files.items()))}, indent=2) + "\n"
    if manifest.is_file() and manifest.read_text() == text:
        return False
    _atomic_write(manifest, lambda handle: handle.write(text.encode()))
    return True


def import_bootloaders(root: Path, pi_firmware: Path | None = None) -> dict[str, bool]:
    """Import every bootloader into ``root``; map of placed path -> whether it changed.

    Raises CommandError naming the Debian packages (and the apt-get command)
    when files are missing, before anything is written.
    """
    sources = _package_sources()
    missing: dict[str, list[str]] = {}
    for source in sources:
        if not source.path.is_file():
            missing.setdefault(source.package, []).append(str(source.path))
    build = _grub_build(missing)
    if missing:
        raise _missing_error(missing)
    pi = _pi_sources(pi_firmware) if pi_firmware is not None else []
    changed: dict[str, bool] = {}
    entries: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="pureboot-grub-") as workdir:
        for source in sources + _grub_sources(build, Path(workdir)) + pi:
            digest, did_change = install_file(source.path, root / source.dest)
            changed[source.dest] = did_change
            entries[source.dest] = {"sha256": digest, "origin": source.package}
    _write_manifest(root, entries)
    return changed


class Command(BaseCommand):
    help = (
        "Copy undionly.kpxe, ipxe.efi, snponly.efi (Debian ipxe), pxelinux.0, lpxelinux.0 "
        "(pxelinux) with ldlinux.c32 and menu modules (syslinux-common) and grubnetx64.efi "
        "(grub-efi-amd64-signed, else built with grub-mknetdir from grub-efi-amd64-bin) into "
        "PUREBOOT_BOOT_ROOT, recording SHA-256 sums in bootloaders.json."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--pi-firmware",
            type=Path,
            metavar="DIR",
            help="Raspberry Pi firmware boot folder: start4.elf, fixup4.dat, bootcode.bin, "
            "*.dtb and overlays/ are copied into <boot root>/rpi/",
        )

    def handle(self, *args: Any, pi_firmware: Path | None, **options: Any) -> None:
        root = Path(settings.PUREBOOT_BOOT_ROOT)
        changed = import_bootloaders(root, pi_firmware)
        verbosity = options["verbosity"]
        for dest, did_change in changed.items():
            # GRUB's modules and the Pi overlays are hundreds of files: listed at -v 2.
            bulk = dest.startswith((f"{GRUB_SUBDIR}/x86_64-efi/", f"{PI_DIR}/overlays/"))
            if verbosity > 1 or (did_change and verbosity == 1 and not bulk):
                self.stdout.write(f"{'updated' if did_change else 'unchanged'}  {dest}")
        if verbosity:
            self.stdout.write(
                f"{sum(changed.values())} of {len(changed)} files updated in {root}; "
                f"SHA-256 sums in {root / MANIFEST}"
            )
