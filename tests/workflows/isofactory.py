"""Build small ISOs with the real directory layouts of installer media.

Each builder writes an ISO with pycdlib and returns a BuiltIso: its path and
the bytes each boot file role must come out as. Files are given by their real
(lower-case, long) names; the ISO 9660 names are derived from them with the
level-3 rules (upper case, d-characters, ``;1``), while Rock Ridge, Joliet
and UDF carry the real names, as on real media.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pycdlib


@dataclass
class BuiltIso:
    path: Path
    payloads: dict[str, bytes] = field(default_factory=dict)  # role -> expected bytes

    def sha256(self, role: str) -> str:
        return hashlib.sha256(self.payloads[role]).hexdigest()


def payload(label: str, size: int) -> bytes:
    """Deterministic fake file content of ``size`` bytes, different for each label."""
    seed = hashlib.sha256(label.encode()).digest()
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


def _iso9660_name(name: str, is_dir: bool) -> str:
    clean = re.sub(r"[^A-Z0-9_.]", "_", name.upper())
    if is_dir:
        return clean.replace(".", "_")[:31]
    stem, dot, ext = clean.rpartition(".")
    if not dot:
        stem, ext = clean, ""
    stem = stem.replace(".", "_") or "_"
    return f"{stem[:26]}.{ext[:3]};1"


def build_iso(
    dest: Path,
    files: Mapping[str, bytes],
    *,
    vol_ident: str = "CDROM",
    rock_ridge: bool = True,
    joliet: bool = True,
    udf: bool = False,
    iso9660: bool = True,
) -> Path:
    """Write an ISO holding ``files`` (real path -> content) to ``dest``.

    ``iso9660=False`` leaves the files out of the ISO 9660 tree, as Windows
    media do (their ISO 9660 side holds only a README): UDF then has the only
    names. That needs ``udf``.
    """
    iso = pycdlib.PyCdlib()
    iso.new(
        interchange_level=3,
        vol_ident="CDROM",
        joliet=3 if joliet else None,
        rock_ridge="1.09" if rock_ridge else None,
        udf="2.60" if udf else None,
    )
    # The Joliet volume id holds only 16 characters; real media carry a longer
    # ISO 9660 one (e.g. "Ubuntu-Server 24.04 LTS amd64"), so set it directly.
    iso.pvd.volume_identifier = vol_ident.encode("ascii").ljust(32)[:32]

    made: dict[str, str] = {"/": "/"}  # real dir -> iso9660 dir

    def names(real: str, is_dir: bool) -> dict[str, str]:
        parent, base = posixpath.split(real)
        kw = {}
        if iso9660:
            kw["iso_path"] = posixpath.join(made[parent], _iso9660_name(base, is_dir))
        if rock_ridge:
            kw["rr_name"] = base
        if joliet:
            kw["joliet_path"] = real
        if udf:
            kw["udf_path"] = real
        return kw

    def ensure_dir(real: str) -> None:
        if real in made:
            return
        ensure_dir(posixpath.dirname(real))
        kw = names(real, True)
        iso.add_directory(**kw)
        made[real] = kw.get("iso_path", "")

    for real, data in files.items():
        ensure_dir(posixpath.dirname(real))
        kw = names(real, False)
        iso.add_fp(io.BytesIO(data), len(data), **kw)
    if not iso9660:
        readme = b'This disc contains a "UDF" file system and requires an operating system\n'
        iso.add_fp(io.BytesIO(readme), len(readme), "/README.TXT;1")
    iso.write(str(dest))
    iso.close()
    return dest


def _built(dest: Path, files: dict[str, bytes], roles: dict[str, str], **kw) -> BuiltIso:
    build_iso(dest, files, **kw)
    return BuiltIso(dest, {role: files[path] for role, path in roles.items()})


def ubuntu_live_server(dest: Path, version: str = "24.04", arch: str = "amd64") -> BuiltIso:
    files = {
        "/.disk/info": (
            f'Ubuntu-Server {version} LTS "Noble Numbat" - Release {arch} (20240423)'
        ).encode(),
        "/casper/vmlinuz": payload("ubuntu kernel", 9000),
        "/casper/initrd": payload("ubuntu initrd", 21000),
        "/casper/ubuntu-server-minimal.squashfs": payload("squashfs", 3000),
        "/boot/grub/grub.cfg": b"menuentry 'Try or Install Ubuntu Server' {}\n",
        "/EFI/boot/bootx64.efi": payload("shim", 1000),
    }
    return _built(
        dest,
        files,
        {"kernel": "/casper/vmlinuz", "initrd": "/casper/initrd"},
        vol_ident=f"Ubuntu-Server {version} LTS {arch}",
    )


def debian_netinst(dest: Path, version: str = "12.5.0", arch: str = "amd64") -> BuiltIso:
    subdir = {"amd64": "install.amd", "arm64": "install.a64"}[arch]
    files = {
        "/.disk/info": (
            f'Debian GNU/Linux {version} "Bookworm" - Official {arch} NETINST with firmware'
            " 20240210-11:27"
        ).encode(),
        f"/{subdir}/vmlinuz": payload(f"debian {arch} kernel", 7000),
        f"/{subdir}/initrd.gz": payload(f"debian {arch} initrd", 15000),
        f"/{subdir}/gtk/vmlinuz": payload("debian gtk kernel", 100),
        "/dists/bookworm/Release": b"Origin: Debian\n",
        "/md5sum.txt": b"",
    }
    return _built(
        dest,
        files,
        {"kernel": f"/{subdir}/vmlinuz", "initrd": f"/{subdir}/initrd.gz"},
        vol_ident=f"Debian {version} {arch} n",
    )


def treeinfo_tree(
    dest: Path,
    *,
    family: str,
    short: str,
    version: str,
    arch: str = "x86_64",
    variant: str = "BaseOS",
    vol_ident: str = "LINUX",
    kernel: str = "images/pxeboot/vmlinuz",
    initrd: str = "images/pxeboot/initrd.img",
) -> BuiltIso:
    """A Fedora/Rocky/Alma install tree with a productmd .treeinfo."""
    treeinfo = f"""[header]
type = productmd.treeinfo
version = 1.2

[release]
name = {family}
short = {short}
version = {version}

[general]
arch = {arch}
family = {family}
name = {family} {version}
platforms = {arch},xen
variant = {variant}
version = {version}

[images-{arch}]
efiboot.img = images/efiboot.img
initrd = {initrd}
kernel = {kernel}

[stage2]
mainimage = images/install.img

[tree]
arch = {arch}
platforms = {arch},xen
variants = {variant}
"""
    kernel_at = posixpath.normpath("/" + kernel) if ".." not in kernel else None
    initrd_at = posixpath.normpath("/" + initrd) if ".." not in initrd else None
    files = {
        "/.treeinfo": treeinfo.encode(),
        "/.discinfo": f"1699998480.0\n{family} {version}\n{arch}\n".encode(),
        "/images/pxeboot/vmlinuz": payload(f"{short} kernel", 8000),
        "/images/pxeboot/initrd.img": payload(f"{short} initrd", 19000),
        "/images/install.img": payload(f"{short} stage2", 2000),
        "/EFI/BOOT/BOOTX64.EFI": payload("shim", 500),
    }
    # A .treeinfo naming other paths gets distinct files there, so a test can
    # tell which of the two the recogniser took.
    if kernel_at:
        files.setdefault(kernel_at, payload(f"{short} treeinfo kernel", 8100))
    if initrd_at:
        files.setdefault(initrd_at, payload(f"{short} treeinfo initrd", 19100))
    return _built(
        dest,
        files,
        {
            "kernel": kernel_at or "/images/pxeboot/vmlinuz",
            "initrd": initrd_at or "/images/pxeboot/initrd.img",
            "stage2": "/images/install.img",
        },
        vol_ident=vol_ident,
    )


def archlinux(dest: Path, version: str = "2024.11.01") -> BuiltIso:
    rootfs = payload("arch rootfs", 4000)
    files = {
        "/arch/version": f"{version}\n".encode(),
        "/arch/boot/x86_64/vmlinuz-linux": payload("arch kernel", 6000),
        "/arch/boot/x86_64/initramfs-linux.img": payload("arch initramfs", 17000),
        "/arch/boot/intel-ucode.img": payload("intel ucode", 300),
        "/arch/boot/amd-ucode.img": payload("amd ucode", 200),
        "/arch/x86_64/airootfs.sfs": rootfs,
        # As mkarchiso writes them: sha512sum's line, and a CMS signature.
        "/arch/x86_64/airootfs.sha512": (
            f"{hashlib.sha512(rootfs).hexdigest()}  airootfs.sfs\n".encode()
        ),
        "/arch/x86_64/airootfs.sfs.cms.sig": payload("arch rootfs signature", 1500),
        "/arch/pkglist.x86_64.txt": b"linux 6.11.5\n",
    }
    year, month = version.split(".")[:2]
    return _built(
        dest,
        files,
        {
            "kernel": "/arch/boot/x86_64/vmlinuz-linux",
            "initrd": "/arch/boot/x86_64/initramfs-linux.img",
            "ucode_intel": "/arch/boot/intel-ucode.img",
            "ucode_amd": "/arch/boot/amd-ucode.img",
            "rootfs": "/arch/x86_64/airootfs.sfs",
            "rootfs_sha512": "/arch/x86_64/airootfs.sha512",
            "rootfs_cms_sig": "/arch/x86_64/airootfs.sfs.cms.sig",
        },
        vol_ident=f"ARCH_{year}{month}",
    )


WINDOWS_EDITIONS = ("Windows 11 Home", "Windows 11 Education", "Windows 11 Pro")
# WINDOWS/EDITIONID and WINDOWS/ARCH as Microsoft's images carry them.
_EDITION_IDS = {"Windows 11 Home": "Core", "Windows 11 Education": "Education"}
_WIM_ARCH = {"amd64": "9", "arm64": "12"}


def real_wim(dest: Path, editions=WINDOWS_EDITIONS, arch: str = "amd64") -> bytes:
    """A real WIM (wimlib) with one small image per edition name, as install.wim holds."""
    wimlib = shutil.which("wimlib-imagex")
    if wimlib is None:
        raise AssertionError("wimlib-imagex not found (Debian package: wimtools)")
    tree = dest.with_suffix(".tree")
    (tree / "Windows" / "System32").mkdir(parents=True, exist_ok=True)
    (tree / "Windows" / "System32" / "config.txt").write_text("PureBoot test image\n")
    for number, name in enumerate(editions, 1):
        verb = "capture" if number == 1 else "append"
        subprocess.run([wimlib, verb, str(tree), str(dest), name], check=True, capture_output=True)
        edition = _EDITION_IDS.get(name, name.rsplit(" ", 1)[-1].replace("Pro", "Professional"))
        subprocess.run(
            [
                wimlib,
                "info",
                str(dest),
                str(number),
                f"--image-property=WINDOWS/EDITIONID={edition}",
                f"--image-property=WINDOWS/ARCH={_WIM_ARCH[arch]}",
            ],
            check=True,
            capture_output=True,
        )
    shutil.rmtree(tree)
    return dest.read_bytes()


def windows(
    dest: Path,
    build: str = "26100",
    arch: str = "amd64",
    udf: bool = True,
    install: bytes | None = None,
    install_name: str = "install.wim",
    boot: bytes | None = None,
) -> BuiltIso:
    """Windows installer media, mixed case as on real discs.

    With ``udf`` (as Microsoft ships them) only the UDF tree has the names;
    without, a plain ISO 9660 image whose 8.3 names must serve. ``install``:
    the install image's bytes (default: a real WIM of WINDOWS_EDITIONS; b"":
    none, as on a WinPE-only disc), stored as ``/sources/<install_name>``;
    ``boot``: boot.wim's bytes (default: stand-in bytes, not a WIM).
    """
    if install is None:
        install = real_wim(dest.with_name(dest.stem + "-install.wim"), arch=arch)
    loader = {"amd64": "bootx64.efi", "arm64": "bootaa64.efi"}[arch]
    volarch = {"amd64": "X64", "arm64": "A64"}[arch]
    files = {
        "/bootmgr": payload("bootmgr", 4000),
        "/bootmgr.efi": payload("bootmgr.efi", 900),
        "/Boot/BCD": payload("bcd", 2500),
        "/Boot/boot.sdi": payload("boot.sdi", 3100),
        "/efi/boot/" + loader.upper(): payload("bootmgfw", 1800),
        "/efi/microsoft/boot/BCD": payload("efi bcd", 2500),
        "/sources/BOOT.WIM": boot if boot is not None else payload("boot.wim", 33000),
        "/sources/idwbinfo.txt": (
            "[BUILDINFO]\r\n"
            f"BuildArch={arch}\r\n"
            "BuildBranch=ge_release\r\n"
            "BuildType=fre\r\n"
            f"BuildLab={build}.ge_release.240331-1435\r\n"
            f"BuildLabEx={build}.1.{arch}fre.ge_release.240331-1435\r\n"
        ).encode(),
        "/setup.exe": payload("setup", 700),
    }
    roles = {
        "bootmgr": "/bootmgr",
        "bcd": "/Boot/BCD",
        "boot_sdi": "/Boot/boot.sdi",
        "boot_wim": "/sources/BOOT.WIM",
        "bootmgr_efi": "/efi/boot/" + loader.upper(),
    }
    if install:
        files[f"/sources/{install_name}"] = install
        roles["install_wim"] = f"/sources/{install_name}"
    return _built(
        dest,
        files,
        roles,
        vol_ident=f"CCCOMA_{volarch}FRE_EN-US_DV9",
        rock_ridge=False,
        joliet=False,
        udf=udf,
        iso9660=not udf,
    )


def unrecognised(dest: Path) -> BuiltIso:
    """A valid ISO with a layout no installer has."""
    files = {
        "/photos/holiday.jpg": payload("jpeg", 5000),
        "/docs/readme.txt": b"just some files\n",
        "/boot/vmlinuz": payload("stray kernel", 1000),
    }
    return _built(dest, files, {}, vol_ident="BACKUP_2024")
