"""Recognising an installer ISO from its real directory layout: one recogniser per family.

A gzip-compressed tar archive is not an ISO: recognise() hands it to
workflows.isoimport.netboot (Debian's netboot.tar.gz).
"""

from __future__ import annotations

import configparser
import os
import posixpath
import re
from collections.abc import Callable

from . import netboot
from .errors import FileTooLarge, InvalidIso, UnrecognisedIso
from .info import (
    _EFI_LOADERS,
    DEBIAN_ARCHES,
    DEFAULT_MAX_FILE_BYTES,
    BootFile,
    IsoInfo,
    _arch,
    _slug,
    _unsupported_arch,
    file_limit,
)
from .reader import _IsoReader


def _efi_arch(iso: _IsoReader) -> str | None:
    for arch, loader in _EFI_LOADERS.items():
        if iso.exists(f"/efi/boot/{loader}"):
            return arch
    return None


def _boot_file(iso: _IsoReader, role: str, *candidates: str) -> BootFile | None:
    for candidate in candidates:
        entry = iso.find_file(candidate)
        if entry is not None:
            return BootFile(role, entry.path, entry.size)
    return None


def _require(found: BootFile | None, family: str, *candidates: str) -> BootFile:
    if found is None:
        raise UnrecognisedIso(f"looks like {family} media but has none of {', '.join(candidates)}")
    return found


_UBUNTU_INFO = re.compile(
    r'^(?P<product>\S+)\s+(?P<version>\d+\.\d+(?:\.\d+)?)(?:\s+LTS)?\s+"(?P<codename>[^"]*)"'
    r"\s+-\s+(?P<kind>\S+)\s+(?P<arch>\S+)(?:\s+\((?P<build>[^)]*)\))?"
)
_UBUNTU_VOLID = re.compile(
    r"^(?P<product>\S+)\s+(?P<version>\d+\.\d+(?:\.\d+)?)\b.*?(?P<arch>\S+)$"
)


def _ubuntu(iso: _IsoReader) -> IsoInfo | None:
    kernel = _boot_file(iso, "kernel", "/casper/vmlinuz")
    if kernel is None:
        return None
    initrds = ("/casper/initrd", "/casper/initrd.gz", "/casper/initrd.lz", "/casper/initrd.img")
    initrd = _require(_boot_file(iso, "initrd", *initrds), "Ubuntu", *initrds)
    info = (iso.read_text("/.disk/info") or "").strip()
    match = _UBUNTU_INFO.match(info) or _UBUNTU_VOLID.match(iso.volume_id)
    if match is None or "ubuntu" not in match["product"].lower():
        # Other casper-based distributions (Linux Mint, Pop!_OS...) land here.
        raise UnrecognisedIso(
            f"casper layout (/casper/vmlinuz) but no Ubuntu release in /.disk/info"
            f" ({info[:80]!r}) or the volume id ({iso.volume_id!r})"
        )
    product, version = match["product"], match["version"]
    arch = _arch(match["arch"]) or _efi_arch(iso)
    if arch is None:
        raise _unsupported_arch("Ubuntu", match["arch"])
    edition = "live-server" if "server" in product.lower() else "desktop"
    debarch = "amd64" if arch == "x86_64" else "arm64"
    details = {"product": product, "disk_info": info}
    if "codename" in match.groupdict():
        details.update(codename=match["codename"], build=match["build"] or "")
    return IsoInfo(
        "ubuntu",
        _slug("ubuntu", version, edition, debarch),
        version,
        arch,
        iso.volume_id,
        (kernel, initrd),
        details,
        # Netbooted, the live-server initrd fetches the whole ISO (url=) and
        # installs from it; a desktop ISO is not an autoinstall medium.
        keeps_iso=edition == "live-server",
    )


_DEBIAN_INFO = re.compile(
    r'^Debian GNU/Linux\s+(?P<version>\S+)\s+"(?P<codename>[^"]*)"\s+-\s+(?P<kind>\S+)\s+'
    r"(?P<arch>\S+)\s+(?P<media>.*?)\s*(?P<build>\d{8}-\d\d:\d\d)?$"
)
_DEBIAN_VOLID = re.compile(r"^Debian\s+(?P<version>\S+)\s+(?P<arch>\S+)")
_DEBIAN_DIRS = {"/install.amd": "x86_64", "/install.a64": "aarch64"}


def _debian(iso: _IsoReader) -> IsoInfo | None:
    present = [d for d in _DEBIAN_DIRS if iso.exists(f"{d}/vmlinuz")]
    if not present:
        if iso.exists("/install.386/vmlinuz"):
            raise _unsupported_arch("Debian", "i386")
        return None
    info = (iso.read_text("/.disk/info") or "").strip()
    match = _DEBIAN_INFO.match(info)
    vol = _DEBIAN_VOLID.match(iso.volume_id)
    labelled = match or vol
    wanted = _arch(labelled["arch"]) if labelled else None
    directory = next((d for d in present if _DEBIAN_DIRS[d] == wanted), present[0])
    arch = _DEBIAN_DIRS[directory]
    kernel = _require(
        _boot_file(iso, "kernel", f"{directory}/vmlinuz"), "Debian", f"{directory}/vmlinuz"
    )
    initrd = _require(
        _boot_file(iso, "initrd", f"{directory}/initrd.gz"), "Debian", f"{directory}/initrd.gz"
    )
    version = labelled["version"] if labelled else ""
    if not version:
        raise UnrecognisedIso(
            f"Debian layout ({directory}/) but no version in /.disk/info ({info[:80]!r})"
            f" or the volume id ({iso.volume_id!r})"
        )
    media = (match["media"] if match else "").upper()
    debarch = "amd64" if arch == "x86_64" else "arm64"
    kind = ""
    if "NETINST" in media:
        kind = "netinst"
    elif m := re.search(r"\b(DVD|CD|BD)\b.*?(\d+)", media):
        kind = f"{m[1]}-{m[2]}"
    name = _slug("debian", version, debarch, kind)
    # The initrd of a netinst/DVD ISO is debian-installer's CD flavour: netbooted,
    # it looks for its CD (Debian bug 724931). Recorded so that a network install
    # naming it is refused at save (workflows.installer_media).
    details = {"disk_info": info, "media": match["media"] if match else "", "flavour": "cd"}
    if match:
        details.update(codename=match["codename"], build=match["build"] or "")
    return IsoInfo("debian", name, version, arch, iso.volume_id, (kernel, initrd), details)


# /.disk/info of Debian's mini.iso, as debian-installer's build writes it
# (build/config/x86.cfg and arm.cfg, arch_miniiso):
# "Debian GNU/Linux $(DEBIAN_VERSION) $(ARCH) - netboot mini.iso $(BUILD_DATE)",
# DEBIAN_VERSION being e.g. "12 (bookworm)".
_DEBIAN_MINI_INFO = re.compile(
    r"^Debian GNU/Linux\s+(?P<version>[0-9A-Za-z][0-9A-Za-z.~+-]{0,31})"
    r"(?:\s+\((?P<codename>[^)]*)\))?\s+(?P<arch>\S+)\s+-\s+netboot mini\.iso"
    r"(?:\s+(?P<build>\S+))?\s*$"
)


def _debian_mini(iso: _IsoReader) -> IsoInfo | None:
    """Debian's mini.iso: the netboot flavour of the installer, /linux and /initrd.gz."""
    kernel = _boot_file(iso, "kernel", "/linux")
    initrd = _boot_file(iso, "initrd", "/initrd.gz")
    if kernel is None or initrd is None:
        return None
    info = (iso.read_text("/.disk/info") or "").strip()
    match = _DEBIAN_MINI_INFO.match(info)
    if match is None:
        return None  # the same root layout without Debian's label: not ours to guess
    arch = DEBIAN_ARCHES.get(match["arch"])
    if arch is None:
        raise _unsupported_arch("Debian mini.iso", match["arch"])
    details = {
        "disk_info": info,
        "flavour": "netboot",
        "medium": "mini.iso",
        "codename": match["codename"] or "",
        "build": match["build"] or "",
    }
    name = _slug("debian", match["version"], "mini", match["arch"])
    return IsoInfo("debian", name, match["version"], arch, iso.volume_id, (kernel, initrd), details)


_TREEINFO_FAMILIES = ("fedora", "rocky", "alma")  # matched inside e.g. "Rocky Linux"


def _treeinfo(iso: _IsoReader) -> IsoInfo | None:
    text = iso.read_text("/.treeinfo")
    if text is None:
        if iso.exists("/images/pxeboot/vmlinuz"):
            raise UnrecognisedIso(
                "has /images/pxeboot/vmlinuz but no /.treeinfo to tell Fedora, Rocky or Alma apart"
            )
        return None
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text, source="/.treeinfo")
    except configparser.Error as exc:
        raise InvalidIso(f"/.treeinfo cannot be parsed: {exc}") from exc

    def get(option: str, *sections: str) -> str:
        for section in sections:
            value = parser.get(section, option, fallback="").strip()
            if value:
                return value
        return ""

    label = get("family", "general") or get("name", "release") or get("short", "release")
    family = next((f for f in _TREEINFO_FAMILIES if f in label.lower()), None)
    if family is None:
        raise UnrecognisedIso(
            f"/.treeinfo names family {label!r}; supported: Fedora, Rocky Linux, AlmaLinux"
        )
    version = get("version", "release", "general")
    seen_arch = get("arch", "tree", "general")
    arch = _arch(seen_arch)
    if arch is None:
        raise _unsupported_arch(label, seen_arch)

    def from_treeinfo(key: str, default: str) -> tuple[str, ...]:
        value = get(key, f"images-{seen_arch}")
        # Paths are relative to the tree's root; normalising keeps "../" inside the ISO.
        listed = posixpath.normpath("/" + value.lstrip("/")) if value else None
        return tuple(p for p in (listed, default) if p)

    kernels = from_treeinfo("kernel", "/images/pxeboot/vmlinuz")
    initrds = from_treeinfo("initrd", "/images/pxeboot/initrd.img")
    kernel = _require(_boot_file(iso, "kernel", *kernels), label, *kernels)
    initrd = _require(_boot_file(iso, "initrd", *initrds), label, *initrds)
    files = [kernel, initrd]
    # The installer runtime (stage2) of the same build as this kernel and
    # initrd: served beside them, so inst.stage2 never mixes releases.
    mainimage = get("mainimage", "stage2")
    listed = posixpath.normpath("/" + mainimage.lstrip("/")) if mainimage else None
    stages = tuple(p for p in (listed, "/images/install.img") if p)
    if stage2 := _boot_file(iso, "stage2", *stages):
        files.append(stage2)
    variant = get("variant", "general") or get("variant", "release")
    name = _slug(family, version, arch, variant.lower())
    details = {"family_label": label, "variant": variant, "stage2": mainimage}
    return IsoInfo(family, name, version, arch, iso.volume_id, tuple(files), details)


_ARCH_VOLID = re.compile(r"^ARCH_(?P<year>\d{4})(?P<month>\d{2})")


def _archlinux(iso: _IsoReader) -> IsoInfo | None:
    kernel = _boot_file(iso, "kernel", "/arch/boot/x86_64/vmlinuz-linux")
    if kernel is None:
        return None
    initrd = _require(
        _boot_file(iso, "initrd", "/arch/boot/x86_64/initramfs-linux.img"),
        "Arch Linux",
        "/arch/boot/x86_64/initramfs-linux.img",
    )
    version = (iso.read_text("/arch/version") or "").strip().splitlines()
    version = version[0].strip() if version else ""
    if not re.fullmatch(r"[0-9][0-9A-Za-z._-]{0,39}", version):
        vol = _ARCH_VOLID.match(iso.volume_id)
        version = f"{vol['year']}.{vol['month']}" if vol else ""
    files = [kernel, initrd]
    for role, ucode in (("ucode_intel", "intel-ucode.img"), ("ucode_amd", "amd-ucode.img")):
        if found := _boot_file(iso, role, f"/arch/boot/{ucode}"):
            files.append(found)
    # archiso netbooted over HTTP (archiso_http_srv=) fetches its root file
    # system, and with checksum=y/verify=y the checksum and signature, itself.
    rootfs = _boot_file(iso, "rootfs", "/arch/x86_64/airootfs.sfs")
    if rootfs is not None:
        files.append(rootfs)
        for role, name in (
            ("rootfs_sha512", "airootfs.sha512"),
            ("rootfs_sig", "airootfs.sfs.sig"),
            ("rootfs_cms_sig", "airootfs.sfs.cms.sig"),
        ):
            if found := _boot_file(iso, role, f"/arch/x86_64/{name}"):
                files.append(found)
    details = {"rootfs": rootfs.iso_path if rootfs else ""}
    name = _slug("archlinux", version, "x86_64")
    return IsoInfo("arch", name, version, "x86_64", iso.volume_id, tuple(files), details)


_WIN_VOLID_ARCH = re.compile(r"_(?P<arch>X64|A64|X86)FRE", re.IGNORECASE)


def _windows(iso: _IsoReader) -> IsoInfo | None:
    wim = _boot_file(iso, "boot_wim", "/sources/boot.wim")
    if wim is None:
        return None
    bcd = _require(_boot_file(iso, "bcd", "/boot/bcd"), "Windows", "/boot/bcd")
    sdi = _require(_boot_file(iso, "boot_sdi", "/boot/boot.sdi"), "Windows", "/boot/boot.sdi")
    build = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        build.read_string(iso.read_text("/sources/idwbinfo.txt") or "")
    except configparser.Error:
        pass  # informational only; the volume id and EFI loader still tell the arch
    seen_arch = build.get("BUILDINFO", "BuildArch", fallback="").strip()
    volid_arch = _WIN_VOLID_ARCH.search(iso.volume_id)
    arch = _arch(seen_arch) or _efi_arch(iso) or _arch(volid_arch["arch"] if volid_arch else "")
    if arch is None:
        raise _unsupported_arch("Windows", seen_arch or (volid_arch and volid_arch["arch"]))
    install = _boot_file(iso, "install_wim", "/sources/install.wim") or _boot_file(
        iso, "install_esd", "/sources/install.esd"
    )
    if install is None:
        raise UnrecognisedIso(
            "looks like Windows media but has neither /sources/install.wim nor "
            "/sources/install.esd (a WinPE-only ISO cannot install Windows)"
        )
    files = [wim, bcd, sdi, install]
    loaders = [f"/efi/boot/{_EFI_LOADERS[arch]}"]
    for role, candidates in (("bootmgr", ["/bootmgr"]), ("bootmgr_efi", loaders)):
        if found := _boot_file(iso, role, *candidates):
            files.append(found)
    if not {"bootmgr", "bootmgr_efi"} & {f.role for f in files}:
        raise UnrecognisedIso(f"looks like Windows media but has neither /bootmgr nor {loaders[0]}")
    lab = build.get("BUILDINFO", "BuildLab", fallback="").strip()
    version = m[0] if (m := re.match(r"\d+", lab)) else ""
    name = _slug("windows", version or iso.volume_id, arch)
    details = {
        "build_lab": lab,
        "build_lab_ex": build.get("BUILDINFO", "BuildLabEx", fallback="").strip(),
    }
    return IsoInfo("windows", name, version, arch, iso.volume_id, tuple(files), details)


# Order matters: Windows media and .treeinfo trees are the most specific.
_DETECTORS: tuple[tuple[str, Callable[[_IsoReader], IsoInfo | None]], ...] = (
    ("Windows: /sources/boot.wim, /boot/bcd, /boot/boot.sdi", _windows),
    ("Fedora/Rocky/Alma: /.treeinfo (+ images/pxeboot/vmlinuz, initrd.img)", _treeinfo),
    ("Ubuntu: /casper/vmlinuz, /casper/initrd", _ubuntu),
    ("Debian: /install.amd/ or /install.a64/ vmlinuz, initrd.gz", _debian),
    ("Debian mini.iso: /linux, /initrd.gz, /.disk/info '... netboot mini.iso'", _debian_mini),
    ("Arch Linux: /arch/boot/x86_64/vmlinuz-linux, initramfs-linux.img", _archlinux),
)


def recognise(
    path: str | os.PathLike[str], *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> IsoInfo:
    """Tell which installer an ISO holds, from its directory layout.

    Raises InvalidIso (not an ISO, truncated, corrupt), FileTooLarge (a boot
    file over max_file_bytes) or UnrecognisedIso (no known layout). A gzip or
    tar file is read as Debian's netboot.tar.gz instead (netboot.recognise()).
    """
    if netboot.is_archive(path):
        return netboot.recognise(path, max_file_bytes=max_file_bytes)
    with _IsoReader(path) as iso:
        info = None
        for _, detect in _DETECTORS:
            info = detect(iso)
            if info is not None:
                break
        if info is None:
            raise UnrecognisedIso(
                f"{os.fspath(path)} (volume {iso.volume_id!r}) matches no supported installer;"
                " looked for " + "; ".join(label for label, _ in _DETECTORS)
            )
        info.details.setdefault("namespace", iso.namespace)
    for bf in info.files:
        if bf.size <= 0:
            raise InvalidIso(f"boot file {bf.iso_path} ({bf.role}) is empty")
        if bf.size > file_limit(bf.role, max_file_bytes):
            raise FileTooLarge(
                f"boot file {bf.iso_path} ({bf.role}) is {bf.size} bytes,"
                f" over the limit of {file_limit(bf.role, max_file_bytes)}"
            )
    return info
