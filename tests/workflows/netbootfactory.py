"""Build small netboot.tar.gz archives with the member layout of Debian's real one.

debian-installer's build packs its netboot folder with ``cd DIR && find . |
LC_ALL=C sort | tar -T -`` (util/gen-tarball), after writing version.info
(build/Makefile, target ``$(NETBOOT_TAR)``) and, on amd64, linking
pxelinux.0, ldlinux.c32 and pxelinux.cfg at the root into
debian-installer/amd64/ (build/config/x86.cfg, ``arch_netboot_dir``). So the
members are named ``./...``, sorted, with symbolic links among them and
version.info last. The files are tiny fakes; hostile variants are built by
editing the member list (``members()``) before ``write()``.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .isofactory import BuiltIso, payload

DIR, FILE, LINK, CHR = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE


@dataclass
class Member:
    name: str
    data: bytes = b""
    type: bytes = FILE
    linkname: str = ""
    size: int | None = None  # a header claiming another size than its data (hostile)


def version_info(version: str = "12", codename: str = "bookworm", build: str = "") -> bytes:
    build = build or "20230607+deb12u10"
    return f"Debian version:  {version} ({codename})\nInstaller build: {build}\n".encode()


def members(
    arch: str = "amd64", *, version: str = "12", codename: str = "bookworm"
) -> list[Member]:
    """The members of Debian's netboot.tar.gz for ``arch``, in the archive's order."""
    di = f"./debian-installer/{arch}"
    efi = {"amd64": "x64", "arm64": "aa64"}.get(arch, arch)
    platform = {"amd64": "x86_64-efi", "arm64": "arm64-efi"}.get(arch, f"{arch}-efi")
    out = [
        Member(".", type=DIR),
        Member("./debian-installer", type=DIR),
        Member(di, type=DIR),
        Member(f"{di}/bootnet{efi}.efi", payload(f"bootnet {arch}", 300)),
    ]
    if arch == "amd64":
        out += [Member(f"{di}/boot-screens", type=DIR)]
        out += [
            Member(f"{di}/boot-screens/{name}", payload(name, 64))
            for name in ("f1.txt", "ldlinux.c32", "menu.cfg", "splash.png", "syslinux.cfg")
        ]
        out += [Member(f"{di}/boot-screens/vesamenu.c32", payload("vesamenu", 64))]
    out += [
        Member(f"{di}/grub", type=DIR),
        Member(f"{di}/grub/{platform}", type=DIR),
        Member(f"{di}/grub/{platform}/linux.mod", payload("grub linux.mod", 200)),
        Member(f"{di}/grub/font.pf2", payload("font", 100)),
        Member(f"{di}/grub/grub.cfg", f"linux /{di[2:]}/linux\n".encode()),
        Member(f"{di}/grub{efi}.efi", payload(f"grub {arch}", 300)),
        Member(f"{di}/initrd.gz", payload(f"debian netboot {arch} initrd", 15000)),
        Member(f"{di}/linux", payload(f"debian netboot {arch} kernel", 7000)),
    ]
    if arch == "amd64":
        out += [
            Member(f"{di}/pxelinux.0", payload("pxelinux.0", 100)),
            Member(f"{di}/pxelinux.cfg", type=DIR),
            Member(
                f"{di}/pxelinux.cfg/default", type=LINK, linkname="../boot-screens/syslinux.cfg"
            ),
            Member("./ldlinux.c32", type=LINK, linkname=f"{di[2:]}/boot-screens/ldlinux.c32"),
            Member("./pxelinux.0", type=LINK, linkname=f"{di[2:]}/pxelinux.0"),
            Member("./pxelinux.cfg", type=LINK, linkname=f"{di[2:]}/pxelinux.cfg"),
        ]
    out.append(Member("./version.info", version_info(version, codename)))
    return out


def tar_bytes(entries: list[Member]) -> bytes:
    """The uncompressed tar of ``entries`` (GNU format, as GNU tar writes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = entry.type
            info.linkname = entry.linkname
            info.mode = 0o755 if entry.type == DIR else 0o644
            info.mtime = 1686096000
            if entry.type == FILE:
                info.size = len(entry.data) if entry.size is None else entry.size
                if entry.size is not None and entry.size != len(entry.data):
                    # Only the header (and what data there is): the rest never comes.
                    buf.write(info.tobuf(tarfile.GNU_FORMAT) + entry.data)
                    return buf.getvalue()
                tar.addfile(info, io.BytesIO(entry.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def write(dest: Path, entries: list[Member]) -> Path:
    dest.write_bytes(gzip.compress(tar_bytes(entries), mtime=0))
    return dest


def debian_netboot(
    dest: Path, arch: str = "amd64", *, version: str = "12", codename: str = "bookworm"
) -> BuiltIso:
    """A netboot.tar.gz at ``dest``; payloads are what the kernel and initrd roles hold."""
    entries = members(arch, version=version, codename=codename)
    data = {e.name: e.data for e in entries}
    write(dest, entries)
    di = f"./debian-installer/{arch}"
    return BuiltIso(dest, {"kernel": data[f"{di}/linux"], "initrd": data[f"{di}/initrd.gz"]})
