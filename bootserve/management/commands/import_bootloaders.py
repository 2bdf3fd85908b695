"""Copy the network bootloaders from Debian's packages into the boot root.

x86: iPXE, PXELINUX and GRUB from the host's packages. ARM64 (``--arm64``):
GRUB's arm64-efi modules from Debian's ``grub-efi-arm64-bin:arm64``, fetched
with ``apt-get download`` (apt checks it against the signed index; no arm64
package is installed) or read from ``--arm64-grub DIR``, then made into
``grubnetaa64.efi`` by the host's ``grub-mknetdir``, which builds for the
platform of the modules it is given. Its prefix is ``/grub-arm64``, so every
config it asks for names its architecture (``bootserve.grub``). Debian
bookworm's ipxe package has no arm64 EFI binary, so ARM64 machines get GRUB.

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

from bootserve.grub import ARM64_PREFIX as GRUB_ARM64_PREFIX
from bootserve.raspberrypi import FIRMWARE_DIR

# Where Debian bookworm's packages install the files (module constants so that
# tests can point them elsewhere).
IPXE_DIR = Path("/usr/lib/ipxe")
PXELINUX_DIR = Path("/usr/lib/PXELINUX")
SYSLINUX_BIOS_DIR = Path("/usr/lib/syslinux/modules/bios")
GRUB_EFI_DIR = Path("/usr/lib/grub/x86_64-efi")
GRUB_SIGNED = Path("/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed")
GRUB_MKNETDIR = "grub-mknetdir"
# ARM64: a native arm64 host's own modules, else Debian's arm64 package.
GRUB_ARM64_DIR = Path("/usr/lib/grub/arm64-efi")
GRUB_ARM64_PACKAGE = "grub-efi-arm64-bin"
ARM64_FILE = "grubnetaa64.efi"

MANIFEST = "bootloaders.json"
GRUB_SUBDIR = "grub"  # grubnetx64.efi's prefix is /grub
GRUB_ARM64_SUBDIR = GRUB_ARM64_PREFIX  # grubnetaa64.efi's prefix is /grub-arm64
PI_DIR = FIRMWARE_DIR  # where the TFTP daemon looks for Pi firmware
PI_REQUIRED = ("start4.elf", "fixup4.dat")
PI3_FILES = ("bootcode.bin", "start.elf", "fixup.dat")
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
    return _mknetdir(GRUB_EFI_DIR, GRUB_SUBDIR, "grubnetx64.efi", "grub-efi-amd64-bin", workdir)


def _mknetdir(
    modules: Path, subdir: str, image: str, package: str, workdir: Path, preload: str = ""
) -> list[Source]:
    """A GRUB network image built by grub-mknetdir from ``modules``, and those modules.

    The image is placed as ``image`` at the root; the modules under
    ``<subdir>/<platform>/``, where its prefix (``/<subdir>``) finds them.
    ``preload`` names modules built into the image.
    """
    platform = modules.name  # x86_64-efi, arm64-efi
    net = workdir / platform
    args = [shutil.which(GRUB_MKNETDIR) or GRUB_MKNETDIR, f"--net-directory={net}"]
    args += [f"--subdir={subdir}", f"--directory={modules}"]
    if preload:
        args.append(f"--modules={preload}")
    args += ["--locales=", "--themes=", "--fonts="]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    platform_dir = net / subdir / platform
    if done.returncode != 0 or not (platform_dir / "core.efi").is_file():
        raise CommandError(f"grub-mknetdir failed: {(done.stderr or done.stdout).strip()}")
    sources = [Source(package, platform_dir / "core.efi", image)]
    for path in sorted(platform_dir.iterdir()):
        # core.efi is placed as the image. Its grub.cfg is left out: the signed
        # x86 image reads /grub/x86_64-efi/grub.cfg before /grub/grub.cfg, so a
        # stale one would shadow PureBoot's answers after a switch to it.
        if path.is_file() and path.name not in ("core.efi", "grub.cfg"):
            sources.append(Source(package, path, f"{subdir}/{platform}/{path.name}"))
    return sources


def _arm64_modules(given: Path | None, workdir: Path) -> Path:
    """The folder of GRUB's arm64-efi modules: given, the host's own, or Debian's package.

    Raises CommandError saying what to do when none can be had.
    """
    if given is not None:
        folder = given / "usr/lib/grub/arm64-efi" if (given / "usr").is_dir() else given
        if not (folder / "normal.mod").is_file() or folder.name != "arm64-efi":
            raise CommandError(
                f"--arm64-grub {given}: not GRUB's arm64-efi module folder (no "
                "arm64-efi/normal.mod); give usr/lib/grub/arm64-efi of an unpacked "
                f"{GRUB_ARM64_PACKAGE} arm64 package"
            )
        return folder
    if (GRUB_ARM64_DIR / "normal.mod").is_file():
        return GRUB_ARM64_DIR
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise CommandError(
            f"--arm64 needs Debian's {GRUB_ARM64_PACKAGE}:arm64 and this host has no apt-get "
            "or dpkg-deb: unpack that package elsewhere and give --arm64-grub DIR"
        )
    download = workdir / "deb"
    download.mkdir()
    done = subprocess.run(
        ["apt-get", "download", f"{GRUB_ARM64_PACKAGE}:arm64"],
        cwd=download,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    debs = sorted(download.glob("*.deb"))
    if done.returncode != 0 or not debs:
        raise CommandError(
            f"apt-get download {GRUB_ARM64_PACKAGE}:arm64 failed: "
            f"{(done.stderr or done.stdout).strip()[-400:]}. Enable the architecture first: "
            "dpkg --add-architecture arm64 && apt-get update (nothing arm64 is installed)"
        )
    unpacked = workdir / "arm64"
    done = subprocess.run(
        ["dpkg-deb", "-x", str(debs[0]), str(unpacked)], capture_output=True, text=True
    )
    folder = unpacked / "usr/lib/grub/arm64-efi"
    if done.returncode != 0 or not (folder / "normal.mod").is_file():
        raise CommandError(f"{debs[0].name}: no usr/lib/grub/arm64-efi/normal.mod inside")
    return folder


RASPI_FIRMWARE_DIR = "usr/lib/raspi-firmware"  # where Debian's raspi-firmware puts it


def _pi_folder(given: Path, workdir: Path) -> Path:
    """The firmware folder: ``given``, or the files inside Debian's raspi-firmware .deb."""
    if given.is_file() and given.suffix == ".deb":
        unpacked = workdir / "raspi-firmware"
        done = subprocess.run(
            ["dpkg-deb", "-x", str(given), str(unpacked)], capture_output=True, text=True
        )
        folder = unpacked / RASPI_FIRMWARE_DIR
        if done.returncode != 0 or not folder.is_dir():
            raise CommandError(
                f"--pi-firmware {given}: not Debian's raspi-firmware package (no "
                f"{RASPI_FIRMWARE_DIR} inside) {done.stderr.strip()[-200:]}"
            )
        return folder
    return given


def _plain(path: Path) -> bool:
    """A regular file, not a link: a firmware bundle's link could name any file here,
    which would then be served to anyone over TFTP."""
    return path.is_file() and not path.is_symlink()


def _pi_sources(folder: Path) -> list[Source]:
    """Raspberry Pi network-boot firmware (Pi 3 and 4; a Pi 5 loads none) from a folder."""
    if not folder.is_dir():
        raise CommandError(
            f"--pi-firmware {folder}: not a folder (or Debian's raspi-firmware .deb)"
        )
    absent = [name for name in PI_REQUIRED if not _plain(folder / name)]
    if absent:
        raise CommandError(
            f"--pi-firmware {folder}: no {' or '.join(absent)}; give the boot folder of the "
            "Raspberry Pi firmware (github.com/raspberrypi/firmware, boot/), which holds "
            f"{', '.join(PI_REQUIRED)}"
        )
    # The Pi 4 firmware, and the Pi 3's (bootcode.bin, start.elf, fixup.dat) when present.
    names = [*PI_REQUIRED, *PI3_FILES] + sorted(p.name for p in folder.glob("*.dtb"))
    sources = [Source(PI_ORIGIN, folder / n, f"{PI_DIR}/{n}") for n in names if _plain(folder / n)]
    if _plain(folder / "bootcode.bin"):
        # A Pi 3's boot ROM asks for it at the TFTP root, before any folder.
        sources.append(Source(PI_ORIGIN, folder / "bootcode.bin", "bootcode.bin"))
    overlays = folder / "overlays"
    if overlays.is_dir():
        for path in sorted(overlays.rglob("*")):
            if _plain(path):
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


def import_bootloaders(
    root: Path,
    pi_firmware: Path | None = None,
    *,
    arm64: bool = False,
    arm64_grub: Path | None = None,
) -> dict[str, bool]:
    """Import every bootloader into ``root``; map of placed path -> whether it changed.

    ``arm64`` (or ``arm64_grub``, a folder of GRUB arm64-efi modules) adds
    ``grubnetaa64.efi``. Raises CommandError naming the Debian packages (and
    the apt-get command) when files are missing, before anything is written.
    """
    sources = _package_sources()
    missing: dict[str, list[str]] = {}
    for source in sources:
        if not source.path.is_file():
            missing.setdefault(source.package, []).append(str(source.path))
    build = _grub_build(missing)
    if missing:
        raise _missing_error(missing)
    changed: dict[str, bool] = {}
    entries: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="pureboot-grub-") as workdir:
        work = Path(workdir)
        pi = _pi_sources(_pi_folder(pi_firmware, work)) if pi_firmware is not None else []
        sources = sources + _grub_sources(build, work) + pi
        if arm64 or arm64_grub is not None:
            modules = _arm64_modules(arm64_grub, work)
            # With http built in: loaded by UEFI HTTP Boot, GRUB's root is the
            # controller over HTTP, and it fetches its modules and configs there.
            sources += _mknetdir(
                modules, GRUB_ARM64_SUBDIR, ARM64_FILE, GRUB_ARM64_PACKAGE, work, preload="http"
            )
        for source in sources:
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
        "PUREBOOT_BOOT_ROOT, recording SHA-256 sums in bootloaders.json. --arm64 adds "
        "grubnetaa64.efi for ARM64 UEFI machines; --pi-firmware adds Raspberry Pi firmware."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--pi-firmware",
            type=Path,
            metavar="DIR_OR_DEB",
            help="Raspberry Pi firmware: a boot folder, or Debian's raspi-firmware .deb "
            "(`apt-get download raspi-firmware`, component non-free-firmware). start4.elf, "
            "fixup4.dat (Pi 4), bootcode.bin, start.elf, fixup.dat (Pi 3), *.dtb and "
            "overlays/ are copied into <boot root>/rpi/, and bootcode.bin also to the root",
        )
        parser.add_argument(
            "--arm64",
            action="store_true",
            help="also build grubnetaa64.efi (ARM64 UEFI PXE and HTTP Boot) from Debian's "
            f"{GRUB_ARM64_PACKAGE}:arm64, fetched with apt-get download (needs "
            "`dpkg --add-architecture arm64` and `apt-get update`; installs nothing)",
        )
        parser.add_argument(
            "--arm64-grub",
            type=Path,
            metavar="DIR",
            help="build grubnetaa64.efi from this folder instead of downloading: an unpacked "
            f"{GRUB_ARM64_PACKAGE} arm64 package, or its usr/lib/grub/arm64-efi",
        )

    def handle(
        self,
        *args: Any,
        pi_firmware: Path | None,
        arm64: bool,
        arm64_grub: Path | None,
        **options: Any,
    ) -> None:
        root = Path(settings.PUREBOOT_BOOT_ROOT)
        changed = import_bootloaders(root, pi_firmware, arm64=arm64, arm64_grub=arm64_grub)
        verbosity = options["verbosity"]
        for dest, did_change in changed.items():
            # GRUB's modules and the Pi overlays are hundreds of files: listed at -v 2.
            bulk = dest.startswith(
                (f"{GRUB_SUBDIR}/x86_64-efi/", f"{GRUB_ARM64_SUBDIR}/", f"{PI_DIR}/overlays/")
            )
            if verbosity > 1 or (did_change and verbosity == 1 and not bulk):
                self.stdout.write(f"{'updated' if did_change else 'unchanged'}  {dest}")
        if verbosity:
            self.stdout.write(
                f"{sum(changed.values())} of {len(changed)} files updated in {root}; "
                f"SHA-256 sums in {root / MANIFEST}"
            )
