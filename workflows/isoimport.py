"""Recognise installer ISOs and extract their boot files, without mounting.

A pure library (no Django models, no root, no loop devices): pycdlib reads
the ISO 9660 / Joliet / Rock Ridge / UDF structures straight from the file.

Public API
    recognise(path, *, max_file_bytes) -> IsoInfo
        Which distribution an ISO holds (from its real directory layout) and
        where its boot files are.
    extract(path, info, dest_dir, *, max_file_bytes) -> Extraction
        Stream those boot files into dest_dir under fixed, role-based names,
        each written to a temporary name and renamed into place, with its
        SHA-256 computed on the way.
    download(url, dest, sha256, *, max_bytes, timeout) -> Path
        Fetch an ISO over http(s), verifying its SHA-256 before it appears.

Errors all derive from IsoImportError: InvalidIso (not an ISO, truncated,
corrupt; FileTooLarge is a kind of it), UnrecognisedIso (a valid ISO of no
known layout), DownloadError (ChecksumMismatch and DownloadTooLarge are kinds
of it). recognise() lets no other exception escape for a malformed file.

Names found inside an ISO are only ever used to look things up inside that
ISO; the files written to disk get names from a fixed table of roles.
"""

from __future__ import annotations

import configparser
import hashlib
import os
import posixpath
import re
import stat
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import Any, BinaryIO

import pycdlib

DEFAULT_MAX_FILE_BYTES = 4 * 1024**3
_MAX_TEXT_BYTES = 1024 * 1024  # .disk/info, .treeinfo and friends are a few KiB
_CHUNK = 1024 * 1024
_SECTOR = 2048
_MIN_ISO_BYTES = 18 * _SECTOR  # 16 system-area sectors, a PVD and a terminator

ARCHES = {
    "amd64": "x86_64",
    "x86_64": "x86_64",
    "x64": "x86_64",
    "arm64": "aarch64",
    "aarch64": "aarch64",
    "a64": "aarch64",
}

# Role -> file name in dest_dir. "bootmgr_efi" is named after the architecture.
_ROLE_FILENAMES = {
    "kernel": "vmlinuz",
    "initrd": "initrd",
    "ucode_intel": "intel-ucode.img",
    "ucode_amd": "amd-ucode.img",
    "bootmgr": "bootmgr",
    "bcd": "BCD",
    "boot_sdi": "boot.sdi",
    "boot_wim": "boot.wim",
}
_EFI_LOADERS = {"x86_64": "bootx64.efi", "aarch64": "bootaa64.efi"}


class IsoImportError(Exception):
    """Base class of everything this module raises on purpose."""


class InvalidIso(IsoImportError):
    """The file is not a readable ISO image (missing, not ISO 9660, truncated, corrupt)."""


class FileTooLarge(InvalidIso):
    """A file inside the ISO is larger than the caller's max_file_bytes."""


class UnrecognisedIso(IsoImportError):
    """A valid ISO whose layout matches no supported installer."""


class DownloadError(IsoImportError):
    """An ISO could not be downloaded (HTTP error, unreachable, refused URL)."""


class DownloadTooLarge(DownloadError):
    """The download is, or announced itself as, larger than max_bytes."""


class ChecksumMismatch(DownloadError):
    """The downloaded bytes do not have the expected SHA-256; nothing was kept."""

    def __init__(self, url: str, expected: str, actual: str) -> None:
        super().__init__(f"SHA-256 mismatch for {url}: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class BootFile:
    """One file to take out of the ISO: its role, its path inside the ISO, its size."""

    role: str
    iso_path: str
    size: int


@dataclass(frozen=True)
class IsoInfo:
    """What recognise() found. ``details`` holds family-specific extras."""

    family: str
    name: str
    version: str
    arch: str
    volume_id: str
    files: tuple[BootFile, ...]
    details: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Extraction:
    """What extract() wrote: role -> path, and role -> lower-case hex SHA-256."""

    paths: dict[str, Path]
    sha256: dict[str, str]


def dest_filename(role: str, arch: str) -> str:
    """The fixed file name a role is written under; ValueError for an unknown role."""
    if role == "bootmgr_efi":
        name = _EFI_LOADERS.get(arch)
    else:
        name = _ROLE_FILENAMES.get(role)
    if name is None:
        raise ValueError(f"no file name for boot file role {role!r} (arch {arch!r})")
    return name


# --------------------------------------------------------------------------- reading


@contextmanager
def _parsing(what: str) -> Iterator[None]:
    # pycdlib parses untrusted bytes and, on malformed input, raises not only
    # PyCdlibException but also struct.error, IndexError, KeyError,
    # UnicodeDecodeError... Only pycdlib calls run inside this block, so any
    # exception here is a fact about the file, not a bug of ours.
    try:
        yield
    except IsoImportError:
        raise
    except Exception as exc:
        raise InvalidIso(f"{what}: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class _Entry:
    path: str  # the real path in the reader's namespace, as pycdlib wants it
    is_dir: bool
    size: int


_NS_KEYWORDS = {"rr": "rr_path", "udf": "udf_path", "joliet": "joliet_path", "iso9660": "iso_path"}
_VERSION_SUFFIX = re.compile(r";\d*$")


class _IsoReader:
    """Case-insensitive, read-only view of one namespace of an ISO.

    The namespace is the one with real file names: Rock Ridge, else UDF
    (Windows media), else Joliet, else plain ISO 9660 (8.3 upper-case names,
    matched without their ``;1`` version and trailing dot).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._iso = pycdlib.PyCdlib()
        self._dirs: dict[str, dict[str, _Entry]] = {}
        self._fp: BinaryIO | None = None
        try:
            st = os.stat(path)
        except OSError as exc:
            raise InvalidIso(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from exc
        if not stat.S_ISREG(st.st_mode):
            raise InvalidIso(f"{os.fspath(path)} is not a regular file")
        if st.st_size < _MIN_ISO_BYTES:
            raise InvalidIso(
                f"{os.fspath(path)} is {st.st_size} bytes, smaller than the smallest ISO 9660"
                f" image ({_MIN_ISO_BYTES} bytes)"
            )
        try:
            self._fp = open(path, "rb")  # noqa: SIM115 - closed by close()
            with _parsing("not a readable ISO 9660 image"):
                self._iso.open_fp(self._fp)
                declared = self._iso.pvd.space_size * self._iso.logical_block_size
                self.volume_id = self._iso.pvd.volume_identifier.decode("ascii", "replace")
                if self._iso.has_rock_ridge():
                    self.namespace = "rr"
                elif self._iso.has_udf():
                    self.namespace = "udf"
                elif self._iso.has_joliet():
                    self.namespace = "joliet"
                else:
                    self.namespace = "iso9660"
            self.volume_id = self.volume_id.strip(" \x00")
            if st.st_size < declared:
                raise InvalidIso(
                    f"truncated: the file has {st.st_size} bytes but its volume descriptor"
                    f" declares {declared}"
                )
        except OSError as exc:
            self.close()
            raise InvalidIso(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from exc
        except BaseException:
            self.close()
            raise
        self._kw = _NS_KEYWORDS[self.namespace]

    def close(self) -> None:
        if self._fp is not None:
            self._fp.close()
            self._fp = None

    def __enter__(self) -> _IsoReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _name(self, child: Any) -> str | None:
        if child is None or child.is_dot() or child.is_dotdot() or child.is_symlink():
            return None
        if self.namespace == "rr":
            rr = child.rock_ridge
            if rr is None:
                return None
            name = rr.name().decode("utf-8", "replace")
        elif self.namespace == "udf":
            ident = child.file_ident
            encoding = ident.encoding if ident is not None else "utf-8"
            name = child.file_identifier().decode(encoding, "replace")
        elif self.namespace == "joliet":
            name = child.file_identifier().decode("utf-16_be", "replace")
        else:
            name = child.file_identifier().decode("latin-1")
        if not name or "/" in name or "\x00" in name or name in (".", ".."):
            return None
        return name

    def _fold(self, name: str) -> str:
        if self.namespace in ("iso9660", "joliet"):
            name = _VERSION_SUFFIX.sub("", name)
        if self.namespace == "iso9660":
            name = name.rstrip(".")
        return name.casefold()

    def _children(self, dir_path: str) -> dict[str, _Entry]:
        listing = self._dirs.get(dir_path)
        if listing is None:
            listing = {}
            with _parsing(f"reading directory {dir_path}"):
                for child in self._iso.list_children(**{self._kw: dir_path}):
                    name = self._name(child)
                    if name is None:
                        continue
                    listing.setdefault(
                        self._fold(name),
                        _Entry(
                            posixpath.join(dir_path, name), child.is_dir(), child.get_data_length()
                        ),
                    )
            self._dirs[dir_path] = listing
        return listing

    def find(self, path: str) -> _Entry | None:
        """The entry at ``path`` (case-insensitive), or None."""
        entry = _Entry("/", True, 0)
        for part in path.strip("/").split("/"):
            if not part:
                continue
            if not entry.is_dir:
                return None
            entry = self._children(entry.path).get(self._fold(part))
            if entry is None:
                return None
        return entry

    def find_file(self, path: str) -> _Entry | None:
        entry = self.find(path)
        return entry if entry is not None and not entry.is_dir else None

    def exists(self, path: str) -> bool:
        return self.find_file(path) is not None

    def copy(self, entry: _Entry, out: _CountingWriter) -> None:
        """Stream one file into ``out``; errors of ``out`` itself are re-raised as they are."""
        try:
            with _parsing(f"reading {entry.path}"):
                self._iso.get_file_from_iso_fp(out, blocksize=_CHUNK, **{self._kw: entry.path})
        except InvalidIso:
            if out.error is not None:
                raise out.error from None
            raise

    def read_text(self, path: str) -> str | None:
        """A small text file's content, or None when absent."""
        entry = self.find_file(path)
        if entry is None:
            return None
        if entry.size > _MAX_TEXT_BYTES:
            raise InvalidIso(f"{entry.path} is {entry.size} bytes; expected a small text file")
        out = _CountingWriter(None, _MAX_TEXT_BYTES)
        self.copy(entry, out)
        return bytes(out.buffer).decode("utf-8", "replace")


class _CountingWriter:
    """File-like sink that hashes, counts and bounds what pycdlib writes into it."""

    def __init__(self, fp: BinaryIO | None, limit: int) -> None:
        self._fp = fp
        self._limit = limit
        self.buffer = bytearray()
        self.count = 0
        self.sha256 = hashlib.sha256()
        self.error: BaseException | None = None

    def write(self, data: bytes) -> int:
        try:
            self.count += len(data)
            if self.count > self._limit:
                raise FileTooLarge(f"file data exceeds the limit of {self._limit} bytes")
            self.sha256.update(data)
            if self._fp is None:
                self.buffer += data
            else:
                self._fp.write(data)
        except BaseException as exc:
            self.error = exc
            raise
        return len(data)


# --------------------------------------------------------------------------- recognising


def _arch(token: str | None) -> str | None:
    return ARCHES.get((token or "").strip().lower())


def _efi_arch(iso: _IsoReader) -> str | None:
    for arch, loader in _EFI_LOADERS.items():
        if iso.exists(f"/efi/boot/{loader}"):
            return arch
    return None


def _slug(*parts: str) -> str:
    """Join the non-empty parts with '-', keeping only characters safe in a name."""
    return "-".join(re.sub(r"[^A-Za-z0-9._-]+", "_", p).strip("_") for p in parts if p)


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


def _unsupported_arch(family: str, seen: str | None) -> UnrecognisedIso:
    return UnrecognisedIso(
        f"{family} media for architecture {seen or 'unknown'!r}; supported: x86_64, aarch64"
    )


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
    details = {"disk_info": info, "media": match["media"] if match else ""}
    if match:
        details.update(codename=match["codename"], build=match["build"] or "")
    return IsoInfo("debian", name, version, arch, iso.volume_id, (kernel, initrd), details)


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
    variant = get("variant", "general") or get("variant", "release")
    name = _slug(family, version, arch, variant.lower())
    details = {"family_label": label, "variant": variant, "stage2": get("mainimage", "stage2")}
    return IsoInfo(family, name, version, arch, iso.volume_id, (kernel, initrd), details)


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
    rootfs = iso.find_file("/arch/x86_64/airootfs.sfs")
    details = {"rootfs": rootfs.path if rootfs else ""}
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
    files = [wim, bcd, sdi]
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
    ("Arch Linux: /arch/boot/x86_64/vmlinuz-linux, initramfs-linux.img", _archlinux),
)


def recognise(
    path: str | os.PathLike[str], *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> IsoInfo:
    """Tell which installer an ISO holds, from its directory layout.

    Raises InvalidIso (not an ISO, truncated, corrupt), FileTooLarge (a boot
    file over max_file_bytes) or UnrecognisedIso (no known layout).
    """
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
        if bf.size > max_file_bytes:
            raise FileTooLarge(
                f"boot file {bf.iso_path} ({bf.role}) is {bf.size} bytes,"
                f" over the limit of {max_file_bytes}"
            )
    return info


# --------------------------------------------------------------------------- extracting


def extract(
    path: str | os.PathLike[str],
    info: IsoInfo,
    dest_dir: str | os.PathLike[str],
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> Extraction:
    """Copy each of info.files into dest_dir under its role's fixed name.

    Each file streams through a SHA-256 into a temporary file in dest_dir and
    is renamed into place only when complete, so a failure leaves no partial
    file (files finished before it stay). Returns an Extraction with
    role -> path and role -> SHA-256. Raises InvalidIso if the ISO no longer
    matches ``info`` (file gone, size changed, short read), FileTooLarge, and
    OSError for trouble writing dest_dir.
    """
    targets: dict[str, str] = {}
    for bf in info.files:
        if bf.role in targets:
            raise ValueError(f"boot file role {bf.role!r} appears twice")
        targets[bf.role] = dest_filename(bf.role, info.arch)
        if bf.size > max_file_bytes:
            raise FileTooLarge(
                f"boot file {bf.iso_path} ({bf.role}) is {bf.size} bytes,"
                f" over the limit of {max_file_bytes}"
            )
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    digests: dict[str, str] = {}
    with _IsoReader(path) as iso:
        for bf in info.files:
            entry = iso.find_file(bf.iso_path)
            if entry is None or entry.size != bf.size:
                raise InvalidIso(
                    f"{bf.iso_path} is {'missing' if entry is None else f'{entry.size} bytes'}"
                    f" in {os.fspath(path)}, expected {bf.size} bytes; was the ISO replaced?"
                )
            target = dest / targets[bf.role]

            def fill(out: _CountingWriter, entry: _Entry = entry, size: int = bf.size) -> None:
                iso.copy(entry, out)
                if out.count != size:
                    raise InvalidIso(
                        f"short read: got {out.count} of {size} bytes of {entry.path};"
                        " the ISO is truncated"
                    )

            digests[bf.role] = _write_atomically(target, bf.size, fill)
            paths[bf.role] = target
    return Extraction(paths, digests)


def _write_atomically(target: Path, limit: int, fill: Callable[[_CountingWriter], None]) -> str:
    """Let ``fill`` write (at most ``limit`` bytes) into a temporary file beside
    ``target``, then rename it into place; return its SHA-256. If ``fill``
    raises, the temporary file is removed and ``target`` is left as it was."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fp:
            out = _CountingWriter(fp, limit)
            fill(out)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return out.sha256.hexdigest()


# --------------------------------------------------------------------------- downloading


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise DownloadError(f"refusing redirect to non-http(s) URL {_redact(newurl)}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
        parts = parts._replace(netloc=netloc)
    return urllib.parse.urlunsplit(parts)


def download(
    url: str, dest: str | os.PathLike[str], sha256: str, *, max_bytes: int, timeout: float
) -> Path:
    """Download url (http or https only) to dest, verifying its SHA-256.

    Streams into a temporary file beside dest and renames it into place only
    once the digest matches; on any failure nothing is left at a new name and
    an existing dest is untouched. ``timeout`` bounds the connection and each
    read, in seconds. Raises ValueError for a malformed sha256, DownloadError
    (HTTP errors, unreachable host, non-http(s) URL or redirect),
    DownloadTooLarge (over max_bytes, announced or actual) and
    ChecksumMismatch; OSError for trouble writing dest.
    """
    expected = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    if max_bytes <= 0:
        raise ValueError("max_bytes must be positive")
    shown = _redact(url)
    if urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
        raise DownloadError(f"only http and https URLs can be downloaded, not {shown}")
    target = Path(dest)
    opener = urllib.request.build_opener(_HttpOnlyRedirects)

    def fill(out: _CountingWriter) -> None:
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "PureBoot-isoimport"})
            with opener.open(request, timeout=timeout) as resp:
                announced = resp.headers.get("Content-Length")
                if announced and announced.isdigit() and int(announced) > max_bytes:
                    raise DownloadTooLarge(
                        f"{shown} is {announced} bytes, over the limit of {max_bytes}"
                    )
                while chunk := resp.read(_CHUNK):
                    if out.count + len(chunk) > max_bytes:
                        raise DownloadTooLarge(
                            f"{shown} is larger than the limit of {max_bytes} bytes"
                        )
                    out.write(chunk)
                if announced and announced.isdigit() and out.count != int(announced):
                    raise DownloadError(f"{shown}: got {out.count} of {announced} bytes")
        except urllib.error.HTTPError as exc:
            exc.close()
            raise DownloadError(f"HTTP {exc.code} {exc.reason} for {shown}") from exc
        except urllib.error.URLError as exc:
            raise DownloadError(f"cannot fetch {shown}: {exc.reason}") from exc
        except (HTTPException, TimeoutError, ConnectionError) as exc:
            raise DownloadError(f"cannot fetch {shown}: {type(exc).__name__}: {exc}") from exc
        actual = out.sha256.hexdigest()
        if actual != expected:
            raise ChecksumMismatch(shown, expected, actual)

    target.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(target, max_bytes, fill)
    return target
