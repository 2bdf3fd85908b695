"""Unpacking a root file system archive on the controller without trusting it.

The archive comes from an operator but is unpacked as root, so it is read as
hostile: a member named with ``..`` or an absolute path, one written through
a symbolic link (``etc -> /etc`` then ``etc/passwd``), a relative link that
climbs out of the root, a device node, a FIFO, a hard link to anything but a
file met earlier, a member whose path an earlier member already holds (only
a folder may be listed again over a folder, for its metadata), more members
than MAX_ARCHIVE_FILES, a long-name or pax header over MAX_HEADER_BYTES, or
more bytes than MAX_EXPANSION times the archive's size (a decompression
bomb, counted on the decompressed stream itself, headers included) refuses
the whole archive. Absolute symbolic links are kept as they are: they mean
something only on the node, inside its own root, and nothing on the
controller follows one. Owners, modes (set-id bits included), times and
extended attributes (file capabilities) are kept, since the tree is a
system that boots.

Nothing is ever replaced or removed while unpacking, so a folder once made
stays a folder; still, every write goes through descriptors opened from the
root with O_NOFOLLOW|O_DIRECTORY, one path component at a time, and every
chown, chmod and utime is made on a descriptor or without following links.
The archive is read once, through one descriptor, and hashed as it is read:
the SHA-256 returned is that of the bytes unpacked.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import stat
import tarfile
import zlib
from pathlib import Path
from typing import BinaryIO, NamedTuple

import zstandard

from .imagefiles import CHUNK, MAX_ARCHIVE_FILES, MAX_EXPANSION

# Below this an archive may always unpack to (a small archive of a real root
# file system packs 2-5 times; the expansion bound is for big ones).
MIN_UNPACK_LIMIT = 2**30
# tarfile reads a GNU long-name or pax header whole into memory: real ones
# hold a path and a few attributes (xattrs at most some KiB).
MAX_HEADER_BYTES = 2**20
PATH_MAX = 4096
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Errors of the compressed stream or of the tar format, as opposed to the tree's.
_STREAM_ERRORS = (
    tarfile.TarError,
    EOFError,
    zstandard.ZstdError,
    zlib.error,
    gzip.BadGzipFile,
)
_EXTENDED = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)


class RootfsError(Exception):
    """The archive or the request cannot become a template; the message says why."""


class Unpacked(NamedTuple):
    size: int  # bytes of regular files
    files: int  # regular files, hard links included
    sha256: str  # of the archive, as read while unpacking


def archive_format(path: Path) -> str:
    """``tar.gz`` or ``tar.zst``, from the file's first bytes (not its name)."""
    with path.open("rb") as fh:
        return _format(path, fh.read(4))


def _format(path: Path, head: bytes) -> str:
    if head[:2] == b"\x1f\x8b":
        return "tar.gz"
    if head == b"\x28\xb5\x2f\xfd":
        return "tar.zst"
    raise RootfsError(f"{path} is neither gzip nor zstd data: give a .tar.gz or .tar.zst")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _bomb(limit: int) -> RootfsError:
    return RootfsError(
        f"it unpacks to more than {limit} bytes ({MAX_EXPANSION} times its "
        "size, or 1 GiB): a decompression bomb, not a root file system"
    )


class _Hashing:
    """The archive's bytes as read, hashed on the way."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.digest.update(data)
        return data


class _Capped:
    """The decompressed stream, refused once more than ``limit`` bytes came out of it."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(CHUNK), b""))
        data = self.stream.read(size)
        self.count += len(data)
        if self.count > self.limit:
            raise _bomb(self.limit)
        return data


class _Header(tarfile.TarInfo):
    """Refuses an oversized long-name or pax header before tarfile reads it whole."""

    def _proc_member(self, archive):  # tarfile's own hook, called for each header block
        used = getattr(archive, "_pureboot_header_bytes", None)
        if used is None:
            used = archive._pureboot_header_bytes = {"global": 0, "pending": 0}
        if self.type in _EXTENDED:
            # Headers chain (a long name, a long link, a pax header, ...) and
            # global ones accumulate: count them until the member they describe.
            key = "global" if self.type == tarfile.XGLTYPE else "pending"
            used[key] += self.size
            if used[key] > MAX_HEADER_BYTES:
                raise RootfsError(
                    f"a long-name or pax header of {self.size} bytes (more than "
                    f"{MAX_HEADER_BYTES} in all for one member): not a root file system"
                )
        else:
            used["pending"] = 0
        return super()._proc_member(archive)


def _open_tar(stream: _Capped) -> tarfile.TarFile:
    return tarfile.open(fileobj=stream, mode="r|", tarinfo=_Header)


def member_parts(name: str) -> tuple[str, ...]:
    """A member's path below the root as parts; RootfsError for ``..`` or an absolute name."""
    if name.startswith("/"):
        raise RootfsError(f"{name!r} is an absolute name: an archive's names are relative")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise RootfsError(f"{name!r} climbs out of the root with '..'")
    return parts


def _climbs_out(parts: tuple[str, ...], target: str) -> bool:
    """Whether relative link ``target`` of the member at ``parts`` leads above the root."""
    depth = len(parts) - 1  # the link's folder
    for piece in target.split("/"):
        if piece in ("", "."):
            continue
        depth = depth - 1 if piece == ".." else depth + 1
        if depth < 0:
            return True
    return False


class _Unpacker:
    """Writes members under ``root`` without ever following a link on the controller."""

    def __init__(self, root: Path, limit: int) -> None:
        self.root = root
        self.limit = limit
        self.size = 0
        # Regular files written, with (st_dev, st_ino): the only hard-link targets.
        self.files: dict[tuple[str, ...], tuple[int, int]] = {}
        self.dirs: dict[tuple[str, ...], tarfile.TarInfo] = {}
        self.as_root = os.geteuid() == 0
        self._cached: tuple[tuple[str, ...], int] | None = None  # the last parent folder

    def close(self) -> None:
        if self._cached is not None:
            os.close(self._cached[1])
            self._cached = None

    def walk(self, parts: tuple[str, ...], name: str, *, create: bool) -> int:
        """A descriptor of folder ``parts``, each component a real folder (made if ``create``).

        Opened one component at a time from the root with O_NOFOLLOW|O_DIRECTORY,
        so a symbolic link or a file anywhere on the way is refused, never followed.
        """
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for index, part in enumerate(parts):
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(part, 0o755, dir_fd=fd)
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    mode = os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode
                    if stat.S_ISLNK(mode):
                        where = "/".join(parts[: index + 1])
                        raise RootfsError(
                            f"{name!r} would be written through the symbolic link {where!r}"
                        ) from None
                    raise RootfsError(f"{name!r} lies under a file, not a folder") from None
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def parent(self, parts: tuple[str, ...], name: str) -> int:
        """The member's folder, made as needed; the descriptor stays the unpacker's.

        Nothing is ever replaced while unpacking, so a folder stays the folder
        its descriptor was opened on, and consecutive members share it.
        """
        folder = parts[:-1]
        if self._cached is not None and self._cached[0] == folder:
            return self._cached[1]
        fd = self.walk(folder, name, create=True)
        self.close()
        self._cached = (folder, fd)
        return fd

    def add(self, archive: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = member.name
        if len(name) > PATH_MAX or len(member.linkname) > PATH_MAX:
            raise RootfsError(f"{name[:100]!r}...: a name or link longer than {PATH_MAX}")
        if "\x00" in name or "\x00" in member.linkname:
            raise RootfsError(f"{name!r}: a name or link with a NUL byte")
        parts = member_parts(name)
        if member.ischr() or member.isblk():
            raise RootfsError(
                f"{name!r} is a device node: a template carries none (the node's "
                "kernel mounts devtmpfs on /dev); pack it without ./dev/*"
            )
        if not (member.isdir() or member.isreg() or member.issym() or member.islnk()):
            raise RootfsError(f"{name!r} is neither a file, a folder nor a link (a FIFO or socket)")
        if not parts:
            if member.isdir():
                self.dirs[parts] = member
                return
            raise RootfsError(f"{name!r} names the root itself, which is a folder")
        folder, leaf = self.parent(parts, name), parts[-1]
        try:
            there = os.stat(leaf, dir_fd=folder, follow_symlinks=False).st_mode
        except FileNotFoundError:
            there = None
        if there is not None:
            if member.isdir() and stat.S_ISDIR(there):
                self.dirs[parts] = member  # listed again: its metadata only
                return
            raise RootfsError(
                f"{name!r} appears twice: it would replace an earlier member of that path "
                "(an archive lists each path once)"
            )
        if member.isdir():
            os.mkdir(leaf, 0o755, dir_fd=folder)
            self.dirs[parts] = member
        elif member.isreg():
            if self.size + member.size > self.limit:
                raise _bomb(self.limit)
            self._write(archive, member, folder, leaf, parts)
            self.size += member.size
        elif member.issym():
            target = member.linkname
            if not target or (not target.startswith("/") and _climbs_out(parts, target)):
                raise RootfsError(f"symbolic link {name!r} -> {target!r} leads out of the root")
            os.symlink(target, leaf, dir_fd=folder)
            if self.as_root:
                os.chown(leaf, member.uid, member.gid, dir_fd=folder, follow_symlinks=False)
            mtime = (member.mtime, member.mtime)
            os.utime(leaf, mtime, dir_fd=folder, follow_symlinks=False)
        else:
            self._link(member, folder, leaf, parts)

    def _link(self, member: tarfile.TarInfo, folder: int, leaf: str, parts: tuple) -> None:
        """A hard link: only to a regular file this archive wrote, still the same inode."""
        target = member_parts(member.linkname)
        recorded = self.files.get(target)
        if recorded is None:
            raise RootfsError(
                f"hard link {member.name!r} points at {member.linkname!r}, which is not "
                "a file earlier in the archive"
            )
        source = self.walk(target[:-1], member.name, create=False)
        try:
            found = os.stat(target[-1], dir_fd=source, follow_symlinks=False)
            if not stat.S_ISREG(found.st_mode) or (found.st_dev, found.st_ino) != recorded:
                raise RootfsError(
                    f"hard link {member.name!r} points at {member.linkname!r}, which is no "
                    "longer the file the archive wrote there"
                )
            os.link(target[-1], leaf, src_dir_fd=source, dst_dir_fd=folder, follow_symlinks=False)
        finally:
            os.close(source)
        self.files[parts] = recorded  # it shares the inode (and metadata) of its target

    def _write(
        self,
        archive: tarfile.TarFile,
        member: tarfile.TarInfo,
        folder: int,
        leaf: str,
        parts: tuple[str, ...],
    ) -> None:
        source = archive.extractfile(member)
        fd = os.open(leaf, _FILE_FLAGS, 0o600, dir_fd=folder)
        with os.fdopen(fd, "wb") as out:
            while source is not None and (chunk := source.read(CHUNK)):
                out.write(chunk)
            out.flush()
            self._metadata(fd, member)
            found = os.fstat(fd)
        self.files[parts] = (found.st_dev, found.st_ino)

    def _metadata(self, fd: int, member: tarfile.TarInfo) -> None:
        """Owner, mode, xattrs and times of a file or folder, on its descriptor."""
        if self.as_root:
            os.fchown(fd, member.uid, member.gid)
        os.fchmod(fd, member.mode & 0o7777)  # after chown, which clears set-id bits
        for key, value in member.pax_headers.items():
            # File capabilities (ping's cap_net_raw) and ACLs travel as xattrs.
            if key.startswith("SCHILY.xattr."):
                try:
                    raw = value.encode("utf-8", "surrogateescape")
                    os.setxattr(fd, key[len("SCHILY.xattr.") :], raw)
                except OSError:
                    pass  # a file system or user that cannot hold it: the file still is
        os.utime(fd, (member.mtime, member.mtime))

    def finish(self) -> None:
        """Folders' metadata, deepest first, each through a descriptor walked from the root.

        Last, since a read-only folder would refuse its children and each child
        written changed its folder's mtime.
        """
        self.close()
        for parts in sorted(self.dirs, key=len, reverse=True):
            member = self.dirs[parts]
            try:
                fd = self.walk(parts, member.name, create=False)
                try:
                    self._metadata(fd, member)
                finally:
                    os.close(fd)
            except (OSError, ValueError, OverflowError) as exc:
                raise RootfsError(f"folder {member.name!r} cannot be set up: {exc}") from None


def unpack(archive: Path, root: Path) -> Unpacked:
    """Unpack ``archive`` into the empty folder ``root``, hashing it as it is read.

    Raises RootfsError for a hostile, broken or unreadable archive; the caller
    removes ``root``.
    """
    with archive.open("rb") as raw:
        fmt = _format(archive, raw.read(4))
        raw.seek(0)
        limit = max(os.fstat(raw.fileno()).st_size * MAX_EXPANSION, MIN_UNPACK_LIMIT)
        hashing = _Hashing(raw)
        if fmt == "tar.zst":
            stream = zstandard.ZstdDecompressor().stream_reader(hashing, read_across_frames=True)
        else:
            stream = gzip.GzipFile(fileobj=hashing, mode="rb")
        unpacker = _Unpacker(root, limit)
        members = 0
        try:
            with stream, _open_tar(_Capped(stream, limit)) as tar:
                while (member := tar.next()) is not None:
                    tar.members.clear()  # tarfile keeps every header otherwise
                    members += 1
                    if members > MAX_ARCHIVE_FILES:
                        raise RootfsError(f"more than {MAX_ARCHIVE_FILES} archive members")
                    _add(unpacker, tar, member)
            if members == 0:
                raise RootfsError("the archive is empty")
            unpacker.finish()
            while hashing.read(CHUNK):
                pass  # what follows the tar's end: hashed, so that the sum is the file's
        except _STREAM_ERRORS as exc:
            raise RootfsError(f"not a complete {fmt} archive: {exc}") from None
        except OSError as exc:
            raise RootfsError(f"{archive} cannot be read: {exc}") from None
        finally:
            unpacker.close()
    return Unpacked(unpacker.size, len(unpacker.files), hashing.digest.hexdigest())


def _add(unpacker: _Unpacker, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
    """One member; an error of the tree (not of the stream) names the member."""
    try:
        unpacker.add(tar, member)
    except _STREAM_ERRORS:
        raise
    except (OSError, ValueError, OverflowError) as exc:
        raise RootfsError(f"{member.name!r} cannot be unpacked: {exc}") from None
