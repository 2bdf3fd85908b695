"""Debian's netboot.tar.gz: recognised by its members, its kernel and initrd streamed out.

Debian publishes the netboot flavour of its installer, the one whose initrd
fetches the rest of the installer from a mirror, as
``dists/<suite>/main/installer-<debarch>/current/images/netboot/netboot.tar.gz``.
debian-installer's build (build/Makefile, target ``$(NETBOOT_TAR)``;
build/config/x86.cfg and arm.cfg, ``arch_netboot_dir``; util/gen-tarball)
packs a folder with ``cd DIR && find . | tar -T -``, so the members are named
``./...``:

    ./version.info                       "Debian version:  12 (bookworm)"
                                         "Installer build: 20230607+deb12u10"
    ./debian-installer/<debarch>/linux   the kernel
    ./debian-installer/<debarch>/initrd.gz
    ./debian-installer/<debarch>/...     grub/, *.efi; on amd64 also pxelinux.0,
                                         boot-screens/, pxelinux.cfg/default (a link)
    ./pxelinux.0, ./ldlinux.c32, ./pxelinux.cfg   (amd64) symbolic links into it

The archive is read as a stream, twice (recognise, then extract), through a
bound on the bytes it unpacks to. Every member is checked on the way: an
absolute name, a ``..`` component, a device or a FIFO anywhere refuses the
whole archive. Symbolic links are normal here (see above) and are neither
followed nor written: nothing is ever written under a name from the archive.
The three members read (version.info, linux, initrd.gz) must each be a
regular file, present once. After the last member the rest of the stream is
read to its end, so that gzip checks its length and CRC: a truncated or
corrupt download is refused, not half-read.
"""

from __future__ import annotations

import gzip
import os
import re
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from .errors import FileTooLarge, InvalidIso, IsoImportError, UnrecognisedIso
from .info import DEBIAN_ARCHES, DEFAULT_MAX_FILE_BYTES, BootFile, IsoInfo, _slug, _unsupported_arch
from .reader import _CHUNK, _CountingWriter

_GZIP_MAGIC = b"\x1f\x8b"
_USTAR = (257, b"ustar")
_MAX_MEMBERS = 20_000  # a real netboot.tar.gz has a few hundred (GRUB's modules)
# What the members besides the kernel and the initrd may unpack to, at most
# (GRUB's modules, fonts, boot screens: a few MB in a real one); with the two
# boot files at max_file_bytes each, the bound on the whole stream (a gzip bomb).
_OTHER_MEMBERS_BYTES = 256 * 1024**2
_MAX_VERSION_INFO = 64 * 1024
_VERSION_INFO = "version.info"
_BOOT_MEMBER = re.compile(r"debian-installer/(?P<debarch>[^/]+)/(?P<file>linux|initrd\.gz)")
_ROLES = {"linux": "kernel", "initrd.gz": "initrd"}
_DEBIAN_VERSION = re.compile(
    r"^Debian version:[ \t]*(?P<version>[0-9A-Za-z][0-9A-Za-z.~+-]{0,31})"
    r"(?:[ \t]+\((?P<codename>[A-Za-z0-9-]{1,32})\))?[ \t]*$",
    re.M,
)
_INSTALLER_BUILD = re.compile(r"^Installer build:[ \t]*(?P<build>\S{1,64})[ \t]*$", re.M)
_LOOKED_FOR = "version.info, debian-installer/<amd64|arm64>/linux and initrd.gz"


def is_archive(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` starts like a gzip file or a tar archive (not an ISO)."""
    try:
        with open(path, "rb") as fp:
            head = fp.read(512)
    except OSError:
        return False  # the ISO reader says why, as for any unreadable file
    return head.startswith(_GZIP_MAGIC) or head[_USTAR[0] : _USTAR[0] + 5] == _USTAR[1]


class _Bounded:
    """The unpacked stream, failing with FileTooLarge past ``limit`` bytes (a gzip bomb)."""

    def __init__(self, fp: BinaryIO, limit: int, shown: str) -> None:
        self._fp, self._limit, self._shown = fp, limit, shown
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._fp.read(size if size >= 0 else _CHUNK)
        self.count += len(data)
        if self.count > self._limit:
            raise FileTooLarge(f"{self._shown} unpacks to more than {self._limit} bytes")
        return data


class _Archive:
    """One streamed pass over a gzip-compressed tar archive.

    Every error of reading or unpacking it comes out as InvalidIso (FileTooLarge
    for the bound); errors of whatever the caller writes to are its own.
    """

    def __init__(self, path: str | os.PathLike[str], unpacked_limit: int) -> None:
        self.shown = os.fspath(path)
        with self._reading("cannot read the archive"):
            self._raw = open(path, "rb")  # noqa: SIM115 - closed by close()
        try:
            with self._reading("cannot read the archive"):
                magic = self._raw.read(2)
                self._raw.seek(0)
            if magic != _GZIP_MAGIC:
                raise InvalidIso(
                    f"{self.shown} is an uncompressed tar archive; Debian publishes its"
                    " netboot installer as netboot.tar.gz (gzip)"
                )
            self._gzip = gzip.GzipFile(fileobj=self._raw, mode="rb")
            self._stream = _Bounded(self._gzip, unpacked_limit, self.shown)
            with self._reading("not a gzip-compressed tar archive"):
                self._tar = tarfile.open(fileobj=self._stream, mode="r|")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for name in ("_gzip", "_raw"):
            fp = getattr(self, name, None)
            if fp is not None:
                fp.close()

    def __enter__(self) -> _Archive:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        # tarfile, gzip and zlib raise a zoo of exceptions on bad input (ReadError,
        # EOFError, BadGzipFile, zlib.error, struct and Unicode errors...). Only
        # reading runs in here, so each is a fact about the file.
        try:
            yield
        except IsoImportError:
            raise
        except Exception as exc:
            reason = "truncated" if isinstance(exc, EOFError) else type(exc).__name__
            raise InvalidIso(f"{self.shown}: {what}: {reason}: {exc}") from exc

    def members(self) -> Iterator[tuple[str, tarfile.TarInfo]]:
        """Each member with its normalised name (no ``./``), refusing an unsafe one;
        then the rest of the stream, so that gzip checks its length and CRC."""
        count = 0
        iterator = iter(self._tar)
        while True:
            with self._reading("reading the archive"):
                member = next(iterator, None)
            if member is None:
                break
            count += 1
            if count > _MAX_MEMBERS:
                raise InvalidIso(f"{self.shown} has more than {_MAX_MEMBERS} members")
            yield _checked_name(self.shown, member), member
        with self._reading("reading the end of the archive"):
            while self._stream.read(_CHUNK):
                pass

    def copy(self, member: tarfile.TarInfo, out: _CountingWriter) -> None:
        """Stream the current member's data into ``out``; ``out``'s errors pass as they are."""
        with self._reading(f"reading {member.name}"):
            data = self._tar.extractfile(member)
        if data is None:
            raise InvalidIso(f"{self.shown}: {member.name} has no data")
        while True:
            with self._reading(f"reading {member.name}"):
                chunk = data.read(_CHUNK)
            if not chunk:
                return
            out.write(chunk)


def _unpacked_limit(max_file_bytes: int) -> int:
    return 2 * max_file_bytes + _OTHER_MEMBERS_BYTES


def _checked_name(shown: str, member: tarfile.TarInfo) -> str:
    raw = member.name
    if raw.startswith("/") or "\\" in raw:
        raise InvalidIso(f"{shown}: member {raw!r} has an absolute or Windows path")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidIso(f"{shown}: member {raw!r} climbs out of the archive (..)")
    if member.ischr() or member.isblk() or member.isfifo():
        raise InvalidIso(f"{shown}: member {raw!r} is a device or FIFO, not a file")
    return "/".join(parts)


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"hard link (to {member.linkname!r})"
    if member.isdir():
        return "directory"
    return "sparse file" if member.issparse() else "special member"


def _take(shown: str, name: str, member: tarfile.TarInfo, taken: dict[str, Any]) -> None:
    """Refuse a member PureBoot reads that is not one plain regular file."""
    if name in taken:
        raise InvalidIso(f"{shown}: {name} appears twice")
    if not member.isreg() or member.issparse():
        raise InvalidIso(f"{shown}: {name} is a {_kind(member)}, not a regular file")
    taken[name] = member


def recognise(
    path: str | os.PathLike[str], *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> IsoInfo:
    """Recognise Debian's netboot.tar.gz: its version, architecture, kernel and initrd.

    Raises InvalidIso (not a gzip-compressed tar, truncated, corrupt, an unsafe
    member, a member read that is a link or appears twice), FileTooLarge (a
    boot file over max_file_bytes, or the archive unpacking to more than twice
    that plus _OTHER_MEMBERS_BYTES) and UnrecognisedIso (a tar archive without
    the netboot layout, or for an architecture other than amd64 and arm64).
    """
    shown = os.fspath(path)
    taken: dict[str, tarfile.TarInfo] = {}
    version_info: str | None = None
    with _Archive(path, _unpacked_limit(max_file_bytes)) as archive:
        for name, member in archive.members():
            if name != _VERSION_INFO and not _BOOT_MEMBER.fullmatch(name):
                continue
            _take(shown, name, member, taken)
            if name == _VERSION_INFO:
                if member.size > _MAX_VERSION_INFO:
                    raise InvalidIso(f"{shown}: version.info is {member.size} bytes")
                out = _CountingWriter(None, _MAX_VERSION_INFO)
                archive.copy(member, out)
                version_info = bytes(out.buffer).decode("utf-8", "replace")
            elif member.size > max_file_bytes:
                raise FileTooLarge(
                    f"boot file {name} is {member.size} bytes, over the limit of {max_file_bytes}"
                )
    debarch = _debarch(shown, taken)
    if version_info is None:
        raise UnrecognisedIso(
            f"{shown} looks like Debian's netboot archive (debian-installer/{debarch}/) but"
            " has no version.info to say which release it installs"
        )
    found = _DEBIAN_VERSION.search(version_info)
    if found is None:
        raise UnrecognisedIso(
            f"{shown}: version.info names no Debian version ({version_info[:80]!r})"
        )
    build = _INSTALLER_BUILD.search(version_info)
    files = []
    for file, role in _ROLES.items():
        member = taken[f"debian-installer/{debarch}/{file}"]
        if member.size <= 0:
            raise InvalidIso(f"boot file debian-installer/{debarch}/{file} ({role}) is empty")
        files.append(BootFile(role, f"debian-installer/{debarch}/{file}", member.size))
    version = found["version"]
    details = {
        "flavour": "netboot",
        "medium": "netboot.tar.gz",
        "codename": found["codename"] or "",
        "build": build["build"] if build else "",
        "version_info": version_info.strip()[:200],
    }
    return IsoInfo(
        "debian",
        _slug("debian", version, "netboot", debarch),
        version,
        DEBIAN_ARCHES[debarch],
        "",
        tuple(files),
        details,
        container="tar",
    )


def _debarch(shown: str, taken: dict[str, tarfile.TarInfo]) -> str:
    """The one architecture the archive holds a kernel and an initrd for."""
    dirs: dict[str, set[str]] = {}
    for name in taken:
        if match := _BOOT_MEMBER.fullmatch(name):
            dirs.setdefault(match["debarch"], set()).add(match["file"])
    complete = sorted(d for d, files in dirs.items() if files == set(_ROLES))
    if not complete:
        if not dirs:
            raise UnrecognisedIso(
                f"{shown} is a tar archive, but not Debian's netboot.tar.gz: looked for "
                + _LOOKED_FOR
            )
        debarch, present = sorted(dirs.items())[0]
        missing = sorted(set(_ROLES) - present)
        raise UnrecognisedIso(
            f"{shown} looks like Debian's netboot archive but has no debian-installer/"
            f"{debarch}/{missing[0]}"
        )
    supported = [d for d in complete if d in DEBIAN_ARCHES]
    if not supported:
        raise _unsupported_arch("Debian netboot", complete[0])
    if len(supported) > 1:
        raise UnrecognisedIso(
            f"{shown} holds installers for several architectures ({', '.join(supported)})"
        )
    return supported[0]


def extract_members(
    path: str | os.PathLike[str],
    info: IsoInfo,
    sinks: dict[str, Callable[[Callable[[_CountingWriter], None]], str]],
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> dict[str, str]:
    """Hand each of info.files to ``sinks[role]``, as a function that streams the
    member's data into a _CountingWriter; return role -> what the sink returned.

    The archive is checked as in recognise(); a member read must still be the
    regular file of the size recognise() saw. Raises InvalidIso if the archive
    no longer matches ``info`` or is unsafe, truncated or corrupt.
    """
    shown = os.fspath(path)
    wanted = {bf.iso_path: bf for bf in info.files}
    taken: dict[str, tarfile.TarInfo] = {}
    results: dict[str, str] = {}
    with _Archive(path, _unpacked_limit(max_file_bytes)) as archive:
        for name, member in archive.members():
            bf = wanted.get(name)
            if bf is None:
                continue
            _take(shown, name, member, taken)
            if member.size != bf.size:
                raise InvalidIso(
                    f"{name} is {member.size} bytes in {shown}, expected {bf.size} bytes;"
                    " was the archive replaced?"
                )

            def copy(out: _CountingWriter, member: tarfile.TarInfo = member) -> None:
                archive.copy(member, out)

            results[bf.role] = sinks[bf.role](copy)
    missing = sorted(set(wanted) - set(taken))
    if missing:
        raise InvalidIso(f"{', '.join(missing)} missing from {shown}; was the archive replaced?")
    return results
